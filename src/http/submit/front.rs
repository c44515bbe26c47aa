//! What the front door works out about a submission before its body is
//! read ([`Front`], the one extractor of both submission routes), and the
//! checks that cost nothing ([`Front::check`]).

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::response::Response;

use super::origin;
use crate::http::body_kind::{API_SUBMISSIONS_ROUTE, BodyKind};
use crate::http::error::Surface;
use crate::http::limits::{Client, ClientKey};
use crate::http::refusal::{API_MEDIA_TYPES, PAGE_MEDIA_TYPES, Refusal};
use crate::http::{AppState, Segment};

/// What the front door works out about a submission before its body is
/// read: the one extractor of both submission routes.
pub struct Front {
    /// API or page: how every answer is written.
    pub surface: Surface,
    /// The form's index in the config, if the path names one.
    pub form_index: Option<usize>,
    /// What the body is.
    pub kind: BodyKind,
    /// Whether a browser said the post comes from another site (`false`
    /// when `abuse.check_origin` is off).
    pub cross_site: bool,
    /// The client, as the rate limits know it.
    pub client: Option<ClientKey>,
}

impl FromRequestParts<AppState> for Front {
    type Rejection = Response;

    /// Works out what the route, the headers and the path say: the route
    /// decides the surface (never the path's text).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Front, Response> {
        let Segment(id) = Segment::from_request_parts(parts, state).await?;
        let Client(client) = match Client::from_request_parts(parts, state).await {
            Ok(client) => client,
            Err(never) => match never {},
        };
        let surface = match parts.extensions.get::<MatchedPath>() {
            Some(route) if route.as_str() == API_SUBMISSIONS_ROUTE => Surface::Api,
            _ => Surface::Page,
        };
        let config = &state.intake().config;
        let abuse = &config.abuse;
        Ok(Front {
            surface,
            form_index: config.form_index(&id),
            kind: BodyKind::of(&parts.headers),
            cross_site: abuse.check_origin
                && origin::is_cross_site(&parts.headers, abuse.public_origin()),
            client,
        })
    }
}

impl Front {
    /// The checks that cost nothing, in the order the routes make them:
    /// the form, the media type, then the origin. JSON on the API is not
    /// checked for its origin: a browser sends it cross-site only after a
    /// CORS preflight, which this server never answers. A multipart post
    /// needs no preflight, so it is checked on both routes: no web page can
    /// make its visitors submit here.
    pub fn check(&self) -> Result<(usize, BodyKind), Refusal> {
        let form_index = self.form_index.ok_or(Refusal::UnknownForm)?;
        let (takes, expected) = match self.surface {
            Surface::Page => (
                [BodyKind::Urlencoded, BodyKind::Multipart],
                PAGE_MEDIA_TYPES,
            ),
            Surface::Api => ([BodyKind::Json, BodyKind::Multipart], API_MEDIA_TYPES),
        };
        if !takes.contains(&self.kind) {
            return Err(Refusal::UnsupportedMediaType { expected });
        }
        let checked = self.surface == Surface::Page || self.kind == BodyKind::Multipart;
        if checked && self.cross_site {
            return Err(Refusal::CrossSite);
        }
        Ok((form_index, self.kind))
    }
}
