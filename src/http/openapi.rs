//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 description of the public
//! API, generated from the running configuration so that every form's
//! submission schema (field names, kinds, lengths, options, required) is
//! exactly what the server enforces.
//!
//! The staff API (token-authenticated) is described too when this listener
//! serves it. The document describes only what the server does; it never
//! includes a recipient's key material or anything about stored records.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::AppState;
use crate::config::{FieldKind, FormConfig, StaffPlacement};

/// `GET /api/v1/openapi.json`
pub async fn document(State(state): State<AppState>) -> Json<Value> {
    let config = &state.intake().config;
    let staff_here = config.staff.placement() == StaffPlacement::PublicListener;
    Json(describe(&config.forms, staff_here))
}

/// The OpenAPI document for these forms (and the staff API, if `staff`).
pub fn describe(forms: &[FormConfig], staff: bool) -> Value {
    let mut paths = Map::new();
    let mut components = Map::new();
    let mut schemas = json!({
        "Receipt": { "type": "object", "required": ["receipt"], "properties": {
            "receipt": { "type": "string", "pattern": "^[a-z2-7]{26}$" } } },
        "Error": { "type": "object", "required": ["error"], "properties": { "error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": { "type": "string" },
                "message": { "type": "string" },
                "field": { "type": "string" } } } } },
    });
    if staff {
        describe_staff(&mut paths, &mut components, &mut schemas);
    }
    components.insert("schemas".into(), schemas);
    paths.insert(
        "/api/v1/forms".into(),
        json!({ "get": {
            "summary": "Every form's schema and recipient fingerprints",
            "operationId": "listForms",
            "responses": { "200": { "description": "The forms", "content": {
                "application/json": { "schema": { "type": "object" } } } } }
        }}),
    );
    paths.insert(
        "/healthz".into(),
        json!({ "get": {
            "summary": "Liveness check; says nothing else",
            "operationId": "health",
            "responses": { "200": { "description": "The server runs" } }
        }}),
    );
    paths.insert(
        "/keys/{fingerprint}.asc".into(),
        json!({ "get": {
            "summary": "A recipient's armored public certificate",
            "operationId": "recipientKey",
            "parameters": [{ "name": "fingerprint", "in": "path", "required": true,
                             "schema": { "type": "string", "pattern": "^[0-9A-Fa-f]{40}$" } }],
            "responses": {
                "200": { "description": "The certificate",
                         "content": { "application/pgp-keys": { "schema": { "type": "string" } } } },
                "404": { "description": "No such recipient" }
            }
        }}),
    );
    for form in forms {
        paths.insert(
            format!("/api/v1/forms/{}/submissions", form.id),
            json!({ "post": {
                "summary": format!("Submit \"{}\"", form.title),
                "description": "The submission is encrypted to the form's recipients before it is \
                    stored. A 201 means the record is durable; its receipt is the only copy the \
                    client gets.",
                "operationId": format!("submit_{}", form.id.replace('-', "_")),
                "requestBody": { "required": true, "content": request_content(form) },
                "responses": submission_responses(),
            }}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sealform",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Public API of a sealform server: form schemas and sealed submissions. \
                Errors are {\"error\": {\"code\", \"message\", \"field\"?}} and never repeat a \
                submitted value.",
        },
        "paths": paths,
        "components": components,
    })
}

/// The token-authenticated staff routes, with their security scheme and
/// schema: none of it is named where the staff API is not served.
fn describe_staff(
    paths: &mut Map<String, Value>,
    components: &mut Map<String, Value>,
    schemas: &mut Value,
) {
    components.insert(
        "securitySchemes".into(),
        json!({ "staffToken": { "type": "http", "scheme": "bearer",
            "description": "A token minted by `sealform token`; the server keeps only its hash" } }),
    );
    schemas["StaffRecord"] = json!({ "type": "object",
        "required": ["receipt", "size", "day", "state", "recipients"], "properties": {
        "receipt": { "type": "string", "pattern": "^[a-z2-7]{26}$" },
        "size": { "type": "integer", "minimum": 0 },
        "day": { "type": "string", "format": "date",
                 "description": "Day of arrival (UTC); nothing finer is kept" },
        "state": { "type": "string", "enum": ["new", "exported", "acked"] },
        "form": { "type": ["string", "null"],
                  "description": "The form's id, kept only while a staff token is limited to some \
                      forms; null otherwise, and for a record indexed again from its spool file" },
        "recipients": { "type": "array", "items": { "type": "string" } } } });
    let auth = json!([{ "staffToken": [] }]);
    let receipt = json!({ "name": "receipt", "in": "path", "required": true,
                          "schema": { "type": "string", "pattern": "^[a-z2-7]{26}$" } });
    let common = json!({
        "401": { "description": "Missing or wrong token (one answer for both)" },
        "403": { "description": "The token's scope (staff.tokens: can, forms) leaves out this \
                 action, or (for a token limited to some forms) the receipt is not a record of \
                 those forms, whether it is another form's or none; error code \"forbidden\"" },
        "429": { "description": "Too many failed token attempts" },
    });
    let with = |extra: Value| {
        let mut r = common.clone();
        if let (Value::Object(r), Value::Object(e)) = (&mut r, extra) {
            r.extend(e);
        }
        r
    };
    paths.insert(
        "/api/v1/staff/submissions".into(),
        json!({ "get": {
            "summary": "Stored records (ciphertext metadata only)",
            "operationId": "staffList",
            "security": auth,
            "parameters": [{ "name": "state", "in": "query", "required": false,
                             "schema": { "type": "string", "enum": ["new", "exported", "all"] } }],
            "responses": with(json!({ "200": { "description": "The records", "content": {
                "application/json": { "schema": { "type": "object", "properties": {
                    "submissions": { "type": "array",
                        "items": { "$ref": "#/components/schemas/StaffRecord" } } } } } } },
                "400": { "description": "`state` is none of new, exported, all" } })),
        }}),
    );
    paths.insert(
        "/api/v1/staff/submissions/{receipt}".into(),
        json!({ "get": {
            "summary": "One record: a binary OpenPGP message",
            "operationId": "staffDownload",
            "security": auth,
            "parameters": [receipt],
            "responses": with(json!({
                "200": { "description": "The record; header x-sealform-sha256 holds its SHA-256",
                         "content": { "application/pgp-encrypted": {
                             "schema": { "type": "string", "contentMediaType": "application/pgp-encrypted" } } } },
                "404": { "description": "No such record (or already acknowledged, or of a \
                                          form the token's scope leaves out)" } })),
        }}),
    );
    paths.insert(
        "/api/v1/staff/status".into(),
        json!({ "get": {
            "summary": "The daily digest per reader: last delivery, problem (never an address)",
            "operationId": "staffStatus",
            "security": auth,
            "responses": with(json!({ "200": { "description": "The digest's state", "content": {
                "application/json": { "schema": { "type": "object", "required": ["notify"],
                    "properties": { "notify": { "type": ["object", "null"] } } } } } } })),
        }}),
    );
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
        paths.insert(
            format!("/api/v1/staff/submissions/{{receipt}}/{action}"),
            json!({ "post": {
                "summary": summary,
                "operationId": id,
                "security": auth,
                "parameters": [receipt],
                "responses": with(json!({ "200": { "description": "Done" },
                                          "404": { "description": "No such record" } })),
            }}),
        );
    }
}

/// The request bodies a form's submission route takes: JSON, and for a form
/// with file fields also `multipart/form-data` (files cannot travel in JSON).
fn request_content(form: &FormConfig) -> Value {
    let mut content = Map::new();
    content.insert(
        "application/json".into(),
        json!({ "schema": { "type": "object", "additionalProperties": false,
                            "required": ["fields"],
                            "properties": { "fields": fields_schema(form, false) } } }),
    );
    if form.takes_files() {
        content.insert(
            "multipart/form-data".into(),
            json!({ "schema": fields_schema(form, true) }),
        );
    }
    Value::Object(content)
}

/// The fields of one form as a schema: one property per field, as
/// validated; `file` fields only in the multipart form.
fn fields_schema(form: &FormConfig, multipart: bool) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for field in &form.fields {
        if field.kind == FieldKind::File && !multipart {
            continue;
        }
        let mut schema = field_schema(form, field);
        if let Value::Object(m) = &mut schema {
            m.insert("title".into(), field.label.clone().into());
        }
        if field.required {
            required.push(field.name.clone());
        }
        properties.insert(field.name.clone(), schema);
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
        "required": required,
    })
}

/// Control characters `crate::submission` refuses in a one-line value (a
/// tab is allowed), as the body of a regex class.
const CONTROL: &str = "\\u0000-\\u0008\\u000A-\\u001F\\u007F-\\u009F";
/// The same for a textarea, which also takes line breaks.
const CONTROL_MULTILINE: &str = "\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F";
/// What Rust's `trim` removes (`char::is_whitespace`), spelled out: regex
/// engines disagree on what `\s` means.
const WHITE: &str = "\\t\\n\\u000B\\u000C\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";
/// White space that is not a control character (may surround an email).
const SPACE: &str = "\\t \\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";

/// One field's schema: what `crate::submission` accepts. A blank value
/// (white space only) counts as absent: an optional field takes it, a
/// required one refuses it (422). One leniency is not described: an
/// optional select also takes a blank value, which is not among its options.
fn field_schema(form: &FormConfig, field: &crate::config::FieldConfig) -> Value {
    let blank = format!("[{WHITE}]*");
    // Matches a whole value: `filled`, or a blank one when that is allowed.
    let whole = |filled: String| {
        if field.required {
            format!("^{filled}$")
        } else {
            format!("^(?:{filled}|{blank})$")
        }
    };
    match field.kind {
        // No `type`: a part's bytes are a file whatever they hold.
        FieldKind::File if field.multiple => json!({ "maxItems": form.max_files,
            "items": { "contentMediaType": "application/octet-stream" },
            "description": format!("One part per file; at most {} files in all the form's \
                file fields (more: 413)", form.max_files) }),
        FieldKind::File => json!({ "contentMediaType": "application/octet-stream" }),
        FieldKind::Checkbox => {
            let on = "[oO][nN]|[yY][eE][sS]|[tT][rR][uU][eE]|1";
            let off = "|[oO][fF][fF]|[nN][oO]|[fF][aA][lL][sS][eE]|0|";
            let (boolean, words) = if field.required {
                (json!({ "const": true }), on.to_owned())
            } else {
                (json!({ "type": "boolean" }), format!("{on}{off}"))
            };
            json!({
                "description": "A boolean, or one of \"on\", \"yes\", \"true\", \"1\", \
                    \"off\", \"no\", \"false\", \"0\", \"\" (any case)",
                "oneOf": [boolean, { "type": "string",
                                     "pattern": format!("^{blank}(?:{words}){blank}$") }],
            })
        }
        FieldKind::Select => json!({ "type": "string", "enum": field.options }),
        FieldKind::Email => {
            let local = format!("[^{WHITE}{CONTROL}]+");
            let label = format!("[^{WHITE}@.{CONTROL}]");
            let inner = format!("[^{WHITE}@{CONTROL}]*");
            let address = format!("[{SPACE}]*{local}@{label}{inner}\\.{inner}{label}[{SPACE}]*");
            json!({ "type": "string", "maxLength": field.max_len(),
                    "description": "local@domain", "pattern": whole(address) })
        }
        FieldKind::Text | FieldKind::Textarea => {
            let control = if field.kind == FieldKind::Textarea {
                CONTROL_MULTILINE
            } else {
                CONTROL
            };
            let mut schema = json!({ "type": "string", "maxLength": field.max_len(),
                                     "pattern": whole(format!("[^{control}]*")) });
            if field.required {
                schema["allOf"] = json!([{ "pattern": format!("[^{WHITE}]") }]);
            }
            schema
        }
    }
}

fn submission_responses() -> Value {
    let error = |description: &str| {
        json!({ "description": description, "content": { "application/json": {
            "schema": { "$ref": "#/components/schemas/Error" } } } })
    };
    json!({
        "201": { "description": "Sealed and stored durably", "content": { "application/json": {
            "schema": { "$ref": "#/components/schemas/Receipt" } } } },
        "400": error("The body is malformed (not JSON, duplicate or too many fields, bad UTF-8)"),
        "403": error("A multipart post that a browser says came from another web site"),
        "404": error("No such form"),
        "408": error("The request took too long to arrive, or an upload behind the minimum rate was stopped to make room for another while every upload slot was taken"),
        "413": error("The body is too large, or holds more files than the form takes"),
        "415": error("The content type is neither application/json nor multipart/form-data"),
        "422": error("A field breaks the form's rules (unknown, missing, too long, wrong type or option)"),
        "429": error("Too many requests, too many in flight from one client, or too many uploads from one client at once"),
        "503": error("The server cannot store submissions right now"),
    })
}
