//! The reply routes in the OpenAPI document (`http/replies/api.rs`): a
//! tipster reads, answers and deletes the mailbox a reply code opens.

use utoipa::openapi::path::OperationBuilder;
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{Content, HttpMethod, PathItem, PathsBuilder, Required, Response};
use utoipa::{PartialSchema, ToSchema};

use super::Bodies;
use crate::api::ErrorBody;
use crate::api::forms::Submitted;
use crate::api::replies::{CodeRequest, FollowUpRequest, RepliesRead};
use crate::http::replies::{API_DELETE_ROUTE, API_FOLLOW_UP_ROUTE, API_READ_ROUTE};

/// The errors every reply route can answer, each an [`ErrorBody`].
const REPLY_ERRORS: [(&str, &str); 6] = [
    (
        "400",
        "The body is not the JSON object the route takes (malformed), or the code is not twelve \
         words of the BIP39 English list (invalid_code), or a word is mistyped and the code's \
         checksum fails (code_checksum)",
    ),
    ("408", "The request took too long to arrive"),
    ("413", "The body is larger than the reply routes take"),
    ("415", "The content type is not application/json"),
    (
        "429",
        "Too many requests, or too many in flight from one client",
    ),
    (
        "503",
        "The server is busy or cannot store anything right now",
    ),
];

/// The three reply routes, added to `paths`.
pub(super) fn paths(paths: PathsBuilder, bodies: &mut Bodies) -> PathsBuilder {
    let read = operation::<CodeRequest>(
        "Read the answers the mailbox of a reply code holds",
        "readReplies",
        bodies,
    )
    .response(
        "200",
        bodies.json::<RepliesRead>(
            "The answers, oldest first, and the newest status; the same empty body for a code \
             that opens nothing and for a mailbox with no answer yet",
        ),
    );
    let follow_up = operation::<FollowUpRequest>(
        "Send a follow-up to the newsroom that answered",
        "followUpReply",
        bodies,
    )
    .response("201", bodies.json::<Submitted>("Sealed and stored durably"))
    .response(
        "409",
        bodies.json::<ErrorBody>(
            "No answer names a form yet, or a code that opens nothing (not_answered_yet); or \
             that form takes no follow-up now (follow_up_closed)",
        ),
    )
    .response(
        "422",
        bodies.json::<ErrorBody>("The message is blank or longer than the form's message field"),
    );
    let delete = operation::<CodeRequest>(
        "Delete every answer the mailbox of a reply code holds",
        "deleteReplies",
        bodies,
    )
    .response(
        "204",
        Response::new("Deleted (the same answer when there was nothing to delete)"),
    );
    paths
        .path(API_READ_ROUTE, PathItem::new(HttpMethod::Post, read))
        .path(
            API_FOLLOW_UP_ROUTE,
            PathItem::new(HttpMethod::Post, follow_up),
        )
        .path(API_DELETE_ROUTE, PathItem::new(HttpMethod::Post, delete))
}

/// A reply operation whose JSON request body is `T`, with the errors
/// every reply route can give.
fn operation<T: ToSchema + PartialSchema>(
    summary: &str,
    id: &str,
    bodies: &mut Bodies,
) -> OperationBuilder {
    let request = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            Content::new(Some(bodies.reference::<T>())),
        )
        .build();
    let mut operation = OperationBuilder::new()
        .summary(Some(summary))
        .operation_id(Some(id))
        .request_body(Some(request));
    for (status, description) in REPLY_ERRORS {
        operation = operation.response(status, bodies.json::<ErrorBody>(description));
    }
    operation
}
