//! The document names each typed body by the schema its type derives, and
//! describes each form's fields as configured.

use std::path::Path;

use serde_json::{Value, json};
use utoipa::ToSchema;

use super::describe;
use crate::api::forms::{FormList, Submitted};
use crate::api::staff::{StaffList, StaffRecord};
use crate::api::{ErrorBody, ErrorDetail};
use crate::config::Config;
use crate::config::tests::MINIMAL;

/// The smallest valid config ([`MINIMAL`]) with a checkbox and a file
/// field added.
fn forms() -> String {
    format!(
        "{MINIMAL}{}",
        r#"max_len = 300

[[forms.fields]]
name = "consent"
label = "I agree"
kind = "checkbox"
required = true

[[forms.fields]]
name = "files"
label = "Files"
kind = "file"
multiple = true
"#
    )
}

/// The document for [`forms`], with the staff API or without, as JSON.
fn document(staff: bool) -> Value {
    let config = Config::parse(&forms(), Path::new("test.toml")).expect("valid config");
    serde_json::to_value(describe(&config.forms, staff)).expect("serializes")
}

/// The schema at `pointer` of `doc`, followed through its `$ref`.
fn referenced<'a>(doc: &'a Value, pointer: &str) -> (&'a str, &'a Value) {
    let reference = doc
        .pointer(pointer)
        .and_then(|s| s["$ref"].as_str())
        .unwrap_or_else(|| panic!("no $ref at {pointer}"));
    let name = reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("{reference} is not a component"));
    (name, &doc["components"]["schemas"][name])
}

/// `T`'s own schema, as JSON.
fn schema_of<T: ToSchema>() -> Value {
    serde_json::to_value(T::schema()).expect("serializes")
}

fn assert_body<T: ToSchema>(doc: &Value, pointer: &str) {
    let (name, schema) = referenced(doc, pointer);
    assert_eq!(name, T::name(), "{pointer}");
    assert_eq!(schema, &schema_of::<T>(), "{pointer}");
}

#[test]
fn each_answer_the_document_describes_is_the_schema_of_the_type_the_handler_sends() {
    let doc = document(true);
    let json = "content/application~1json/schema";
    let submit = "/paths/~1api~1v1~1forms~1tip~1submissions/post/responses";
    assert_body::<Submitted>(&doc, &format!("{submit}/201/{json}"));
    for status in ["400", "413", "422", "429", "503"] {
        assert_body::<ErrorBody>(&doc, &format!("{submit}/{status}/{json}"));
    }
    assert_body::<FormList>(
        &doc,
        &format!("/paths/~1api~1v1~1forms/get/responses/200/{json}"),
    );
    let staff = "/paths/~1api~1v1~1staff~1submissions";
    assert_body::<StaffList>(&doc, &format!("{staff}/get/responses/200/{json}"));
    for action in ["ack", "exported"] {
        assert_body::<StaffRecord>(
            &doc,
            &format!("{staff}~1{{receipt}}~1{action}/post/responses/200/{json}"),
        );
    }
    // What those schemas refer to is in the document too.
    let (_, list) = referenced(&doc, &format!("{staff}/get/responses/200/{json}"));
    let (name, _) = referenced(list, "/properties/submissions/items");
    assert_eq!(
        doc["components"]["schemas"][name],
        schema_of::<StaffRecord>()
    );
    let (_, state) = referenced(&doc, "/components/schemas/StaffRecord/properties/state");
    assert_eq!(state["enum"], json!(["new", "exported", "acked"]));
    let (_, error) = referenced(&doc, "/components/schemas/Error/properties/error");
    assert_eq!(error, &schema_of::<ErrorDetail>());
}

#[test]
fn the_typed_bodies_keep_the_shape_the_clients_know() {
    let receipt = schema_of::<Submitted>();
    assert_eq!(receipt["required"], json!(["receipt"]));
    assert_eq!(
        receipt["properties"]["receipt"]["pattern"],
        "^[a-z2-7]{26}$"
    );
    let record = schema_of::<StaffRecord>();
    assert_eq!(
        record["required"],
        json!(["receipt", "size", "day", "state", "recipients"])
    );
    assert_eq!(record["properties"]["day"]["format"], "date");
    assert_eq!(schema_of::<ErrorBody>()["required"], json!(["error"]));
    assert_eq!(
        schema_of::<ErrorDetail>()["required"],
        json!(["code", "message"])
    );
}

#[test]
fn without_the_staff_api_the_document_names_none_of_its_routes_or_bodies() {
    let doc = document(false);
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.keys().all(|p| !p.contains("staff")), "{paths:?}");
    assert!(doc["components"]["securitySchemes"].is_null());
    assert!(doc["components"]["schemas"]["StaffRecord"].is_null());
}

#[test]
fn each_field_is_described_as_the_server_validates_it() {
    let doc = document(false);
    let body = &doc["paths"]["/api/v1/forms/tip/submissions"]["post"]["requestBody"]["content"];
    let fields = &body["application/json"]["schema"]["properties"]["fields"];
    assert_eq!(fields["required"], json!(["message", "consent"]));
    assert_eq!(fields["additionalProperties"], false);
    let message = &fields["properties"]["message"];
    assert_eq!(message["maxLength"], 300);
    assert_eq!(message["minLength"], 1);
    assert_eq!(message["title"], "Message");
    assert_eq!(
        fields["properties"]["consent"]["oneOf"][0],
        json!({ "type": "boolean", "enum": [true] })
    );
    // Files travel only in the multipart body.
    assert!(fields["properties"]["files"].is_null());
    let multipart = &body["multipart/form-data"]["schema"]["properties"];
    assert_eq!(multipart["files"]["oneOf"][0]["type"], "array");
    assert!(multipart["files"]["oneOf"][0]["maxItems"].is_u64());
}
