//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 description of the public
//! API, generated from the running configuration so that every form's
//! submission schema (field names, kinds, lengths, options, required) is
//! exactly what the server enforces.
//!
//! The document is built with utoipa's typed builders, never from JSON
//! text: every JSON body's schema is derived from its type in
//! [`crate::api`] (the same types the handlers answer with and the `pull`
//! client reads), the routes are the table below, and each form's request
//! schema is built from its configuration at run time
//! (`http/openapi/submission_schema.rs`).
//!
//! The staff API (token-authenticated) is described too when this listener
//! serves it. The document describes only what the server does; it never
//! includes a recipient's key material or anything about stored records.

mod replies;
mod staff_replies;
mod submission_schema;

use axum::Json;
use axum::extract::State;
use utoipa::openapi::path::{
    Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, Content, HttpMethod, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
    PathItem, PathsBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Schema,
    SecurityRequirement, Type,
};
use utoipa::{PartialSchema, ToSchema};

use super::AppState;
use crate::api::ErrorBody;
use crate::api::forms::{FormList, Submitted};
use crate::api::staff::{ListState, StaffList, StaffRecord, StaffStatus};
use crate::config::{FormConfig, StaffPlacement};

/// `GET /api/v1/openapi.json`
pub async fn document(State(state): State<AppState>) -> Json<OpenApi> {
    let config = &state.intake().config;
    let staff_here = config.staff.placement() == StaffPlacement::PublicListener;
    Json(describe(&config.forms, staff_here))
}

/// The name of the security scheme of the staff routes.
const STAFF_TOKEN: &str = "staffToken";

/// A receipt as text: 26 characters of lowercase base32.
const RECEIPT_PATTERN: &str = "^[a-z2-7]{26}$";

/// The OpenAPI document for these forms (and the staff API, if `staff`).
pub fn describe(forms: &[FormConfig], staff: bool) -> OpenApi {
    let mut bodies = Bodies::default();
    let mut paths = PathsBuilder::new()
        .path(
            "/api/v1/forms",
            get(OperationBuilder::new()
                .summary(Some("Every form's schema and recipient fingerprints"))
                .operation_id(Some("listForms"))
                .response("200", bodies.json::<FormList>("The forms"))),
        )
        .path(
            "/healthz",
            get(OperationBuilder::new()
                .summary(Some("Liveness check; says nothing else"))
                .operation_id(Some("health"))
                .response("200", Response::new("The server runs"))),
        )
        .path("/keys/{fingerprint}.asc", get(recipient_key()));
    for form in forms {
        paths = paths.path(
            format!("/api/v1/forms/{}/submissions", form.id),
            PathItem::new(HttpMethod::Post, submit(form, &mut bodies)),
        );
    }
    paths = replies::paths(paths, &mut bodies);
    let mut components = ComponentsBuilder::new();
    if staff {
        paths = staff_paths(paths, &mut bodies);
        components = components.security_scheme(
            STAFF_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token minted by `sealform token`; the server keeps only its hash",
                    ))
                    .build(),
            ),
        );
    }
    let info = InfoBuilder::new()
        .title("sealform")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Public API of a sealform server: form schemas and sealed submissions. Errors are \
             {\"error\": {\"code\", \"message\", \"field\"?}} and never repeat a submitted value.",
        ));
    OpenApiBuilder::new()
        .info(info)
        .paths(paths)
        .components(Some(components.schemas_from_iter(bodies.schemas).build()))
        .build()
}

/// The schemas of the bodies the document names, gathered as it is built
/// so that every `$ref` it writes has its target.
#[derive(Default)]
struct Bodies {
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Bodies {
    /// A reference to `T`'s schema, which (with the schemas it refers to)
    /// goes into the document's components.
    fn reference<T: ToSchema>(&mut self) -> Ref {
        let name = T::name();
        if !self.schemas.iter().any(|(n, _)| *n == name) {
            self.schemas.push((name.to_string(), T::schema()));
            T::schemas(&mut self.schemas);
        }
        Ref::from_schema_name(name)
    }

    /// A response described by `description` whose body is JSON of type `T`.
    fn json<T: ToSchema>(&mut self, description: &str) -> Response {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(self.reference::<T>())),
            )
            .build()
    }
}

/// A path item with one `GET` operation.
fn get(operation: OperationBuilder) -> PathItem {
    PathItem::new(HttpMethod::Get, operation)
}

/// A string path parameter that must match `pattern`.
fn path_parameter(name: &str, pattern: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern)),
        ))
        .build()
}

/// `GET /keys/{fingerprint}.asc`
fn recipient_key() -> OperationBuilder {
    OperationBuilder::new()
        .summary(Some("A recipient's armored public certificate"))
        .operation_id(Some("recipientKey"))
        .parameter(path_parameter("fingerprint", "^[0-9A-Fa-f]{40}$"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The certificate")
                .content(
                    "application/pgp-keys",
                    Content::new(Some(ObjectBuilder::new().schema_type(Type::String))),
                ),
        )
        .response("404", Response::new("No such recipient"))
}

/// `POST /api/v1/forms/{form}/submissions` for `form`: its request bodies
/// and every answer the submission route gives.
fn submit(form: &FormConfig, bodies: &mut Bodies) -> Operation {
    let mut request = RequestBodyBuilder::new().required(Some(Required::True));
    for (content_type, schema) in submission_schema::request_content(form) {
        request = request.content(content_type, Content::new(Some(schema)));
    }
    let mut operation = OperationBuilder::new()
        .summary(Some(format!("Submit \"{}\"", form.title)))
        .description(Some(
            "The submission is encrypted to the form's recipients before it is stored. A 201 \
             means the record is durable; its receipt is the only copy the client gets.",
        ))
        .operation_id(Some(format!("submit_{}", form.id.replace('-', "_"))))
        .request_body(Some(request.build()))
        .response("201", bodies.json::<Submitted>("Sealed and stored durably"));
    for (status, description) in SUBMISSION_ERRORS {
        operation = operation.response(status, bodies.json::<ErrorBody>(description));
    }
    operation.build()
}

/// Every error status of the submission routes, with what it means; each
/// answers an [`ErrorBody`].
const SUBMISSION_ERRORS: [(&str, &str); 9] = [
    (
        "400",
        "The body is malformed (not JSON, duplicate or too many fields, bad UTF-8)",
    ),
    (
        "403",
        "A multipart post that a browser says came from another web site",
    ),
    ("404", "No such form"),
    (
        "408",
        "The request took too long to arrive, or an upload behind the minimum rate was stopped \
         to make room for another while every upload slot was taken",
    ),
    (
        "413",
        "The body is too large, or holds more files than the form takes",
    ),
    (
        "415",
        "The content type is neither application/json nor multipart/form-data",
    ),
    (
        "422",
        "A field breaks the form's rules (unknown, missing, too long, wrong type or option)",
    ),
    (
        "429",
        "Too many requests, too many in flight from one client, or too many uploads from one \
         client at once",
    ),
    ("503", "The server cannot store submissions right now"),
];

/// The answers every staff route can give besides its own.
const STAFF_ERRORS: [(&str, &str); 3] = [
    ("401", "Missing or wrong token (one answer for both)"),
    (
        "403",
        "The token's scope (staff.tokens: can, forms) leaves out this action, or (for a token \
         limited to some forms) the receipt is not a record of those forms, whether it is \
         another form's or none; error code \"forbidden\"",
    ),
    ("429", "Too many failed token attempts"),
];

/// A staff operation: behind the token, with the staff errors.
fn staff_operation(summary: &str, id: &str) -> OperationBuilder {
    let mut operation = OperationBuilder::new()
        .summary(Some(summary))
        .operation_id(Some(id))
        .security(SecurityRequirement::new(STAFF_TOKEN, Vec::<String>::new()));
    for (status, description) in STAFF_ERRORS {
        operation = operation.response(status, Response::new(description));
    }
    operation
}

/// The token-authenticated staff routes (`http/staff.rs`, and
/// `http/staff_replies.rs` in `openapi/staff_replies.rs`); none of them is
/// named where the staff API is not served.
fn staff_paths(paths: PathsBuilder, bodies: &mut Bodies) -> PathsBuilder {
    let receipt = || path_parameter("receipt", RECEIPT_PATTERN);
    let state = ParameterBuilder::new()
        .name("state")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(ListState::schema()))
        .build();
    let list = staff_operation("Stored records (ciphertext metadata only)", "staffList")
        .parameter(state)
        .response("200", bodies.json::<StaffList>("The records"))
        .response(
            "400",
            Response::new("`state` is none of new, exported, all"),
        );
    let download = staff_operation("One record: a binary OpenPGP message", "staffDownload")
        .parameter(receipt())
        .response(
            "200",
            ResponseBuilder::new()
                .description("The record; header x-sealform-sha256 holds its SHA-256")
                .content(
                    "application/pgp-encrypted",
                    Content::new(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .content_media_type("application/pgp-encrypted"),
                    )),
                ),
        )
        .response(
            "404",
            Response::new(
                "No such record (or already acknowledged, or of a form the token's scope \
                 leaves out)",
            ),
        );
    let status = staff_operation(
        "The daily digest per reader: last delivery, problem (never an address)",
        "staffStatus",
    )
    .response("200", bodies.json::<StaffStatus>("The digest's state"));
    let mut paths = paths
        .path("/api/v1/staff/submissions", get(list))
        .path("/api/v1/staff/submissions/{receipt}", get(download))
        .path("/api/v1/staff/status", get(status));
    for (action, summary, id) in [
        (
            "exported",
            "Mark a record as copied into a bundle",
            "staffMarkExported",
        ),
        (
            "ack",
            "Acknowledge a record: the server deletes its copy",
            "staffAck",
        ),
    ] {
        let change = staff_operation(summary, id)
            .parameter(receipt())
            .response(
                "200",
                bodies.json::<StaffRecord>("Done: the record's metadata after the change"),
            )
            .response("404", Response::new("No such record"));
        paths = paths.path(
            format!("/api/v1/staff/submissions/{{receipt}}/{action}"),
            PathItem::new(HttpMethod::Post, change),
        );
    }
    staff_replies::answer_path(paths, bodies)
}

#[cfg(test)]
mod tests;
