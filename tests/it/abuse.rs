//! Abuse resistance and metadata: rate limits, slow clients, form tokens,
//! security headers, and what the server writes about its clients.
//!
//! One module per topic under `abuse/`; this file holds the helpers they share.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::support::*;

mod headers_and_tokens;
mod logs;
mod rate_limits;
mod slow_clients;

/// Tables for a fixture with form tokens on and the given extra lines.
fn tables(limits: &str, abuse: &str) -> String {
    format!("[limits]\n{limits}\n\n[abuse]\n{abuse}\n")
}

fn from_peer(mut req: Request<Body>, peer: &str) -> Request<Body> {
    let addr: SocketAddr = peer.parse().expect("socket address");
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

fn with_header(mut req: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    req.headers_mut()
        .append(name, value.parse().expect("header value"));
    req
}

async fn fresh_token(app: &axum::Router) -> String {
    let (res, body) = send(
        app,
        Request::get("/forms/tip").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    token_in(&body)
}

const MESSAGE: &str = "a message that is long enough";
