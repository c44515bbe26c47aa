//! The JSON bodies of the HTTP API, as types: the server's handlers build
//! them, the `pull` client reads them, and the OpenAPI document
//! (`http/openapi.rs`) describes them. Types only; no handler lives here.

pub mod error;
pub mod forms;
pub mod replies;
pub mod staff;

pub use error::{ErrorBody, ErrorDetail};
