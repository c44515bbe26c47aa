//! The staff route that stores an answer to a tipster, in the OpenAPI
//! document (`http/staff_replies.rs` serves it).

use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
use utoipa::openapi::{Content, HttpMethod, ObjectBuilder, PathItem, PathsBuilder, Required, Type};

use super::{Bodies, RECEIPT_PATTERN, path_parameter, staff_operation};
use crate::api::ErrorBody;
use crate::api::staff::PushedAnswer;
use crate::http::body_kind::ANSWER_ROUTE;

/// A mailbox address: 32 characters of lowercase base32.
const MAILBOX_PATTERN: &str = "^[a-z2-7]{32}$";

/// `PUT /api/v1/staff/mailboxes/{mailbox}/replies/{id}`
pub(super) fn answer_path(paths: PathsBuilder, bodies: &mut Bodies) -> PathsBuilder {
    // Described as octet-stream: the route takes any content type (it
    // checks the bytes, not the header), and OpenAPI tools know how to send
    // bytes under that name, not under application/pgp-encrypted.
    let message = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)));
    let request = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .description(Some(
            "The answer: an encrypted OpenPGP message (binary or armored), as `sealform reply` \
             or `gpg --encrypt` writes it",
        ))
        .content("application/octet-stream", Content::new(Some(message)))
        .build();
    let mut operation = staff_operation("Store an answer to a tipster", "staffPushAnswer")
        .description(Some(
            "Stores the answer under the mailbox, durably, with only the day. Any valid staff \
             token may push. Idempotent: the same bytes again answer 200.",
        ))
        .parameter(path_parameter("mailbox", MAILBOX_PATTERN))
        .parameter(path_parameter("id", RECEIPT_PATTERN))
        .request_body(Some(request))
        .response("201", bodies.json::<PushedAnswer>("Stored durably"))
        .response(
            "200",
            bodies.json::<PushedAnswer>("The same bytes were stored under this id before"),
        );
    for (status, description) in [
        (
            "400",
            "The mailbox or id is malformed, or the body is not an encrypted OpenPGP message",
        ),
        ("409", "Other bytes are stored under this id"),
        (
            "413",
            "The answer is larger than [replies] max_answer_bytes",
        ),
        ("422", "The mailbox holds [replies] max_per_mailbox answers"),
        (
            "503",
            "Free space in data_dir is under server.min_free_bytes (kept for submissions)",
        ),
    ] {
        operation = operation.response(status, bodies.json::<ErrorBody>(description));
    }
    paths.path(
        ANSWER_ROUTE,
        PathItem::new(HttpMethod::Put, operation.build()),
    )
}
