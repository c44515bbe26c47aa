//! The headers every response carries, whatever route or error produced it:
//! a strict CSP, no referrer, no sniffing, no caching (unless the handler
//! chose otherwise, as the stylesheet does), isolation from other origins,
//! no powerful features, and HSTS when the public address is https.
//!
//! It also removes any `Server` header; nothing here depends on the request.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::AbuseConfig;

/// Same-origin styles and images, nothing else; forms post only here; never
/// framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every feature a form page never needs, off.
pub const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), display-capture=(), \
    geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";

/// Two years, as HSTS preload lists expect.
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// The fixed set of headers, built once from the config.
#[derive(Clone)]
pub struct SecurityHeaders {
    always: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl SecurityHeaders {
    /// The headers for this deployment (HSTS only behind https).
    pub fn new(abuse: &AbuseConfig) -> SecurityHeaders {
        let mut always = vec![
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                HeaderName::from_static("permissions-policy"),
                HeaderValue::from_static(PERMISSIONS_POLICY),
            ),
        ];
        if abuse.is_https() {
            always.push((
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            ));
        }
        SecurityHeaders {
            always: Arc::new(always),
        }
    }
}

/// Middleware adding the headers to every response.
pub async fn add(State(h): State<SecurityHeaders>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    // A form route may set its own CSP, with the form's `frame-ancestors`;
    // a form that may be framed must then not be denied by the older header.
    let own_csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .map(|v| v.to_str().unwrap_or(""));
    let framable = own_csp.is_some_and(|c| !c.contains("frame-ancestors 'none'"));
    let keep_csp = own_csp.is_some();
    for (name, value) in h.always.iter() {
        if (name == header::CONTENT_SECURITY_POLICY && keep_csp)
            || (name == header::X_FRAME_OPTIONS && framable)
        {
            continue;
        }
        headers.insert(name.clone(), value.clone());
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.remove(header::SERVER);
    res
}
