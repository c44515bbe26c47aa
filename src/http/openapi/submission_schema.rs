//! Each form's submission request schema, built from its configuration at
//! run time with utoipa's typed builders: one property per field, with the
//! same limits `crate::submission` (JSON) and `crate::upload` (multipart)
//! enforce, so the document says exactly what the server accepts.

use utoipa::openapi::schema::{AdditionalProperties, SchemaType};
use utoipa::openapi::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

use crate::config::{FieldConfig, FieldKind, FormConfig};

/// The request bodies a form's submission route takes, by content type:
/// JSON, and for a form with file fields also `multipart/form-data` (files
/// cannot travel in JSON).
pub(super) fn request_content(form: &FormConfig) -> Vec<(&'static str, Schema)> {
    let json = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .required("fields")
        .property("fields", fields_schema(form, false));
    let mut content = vec![("application/json", json.into())];
    if form.takes_files() {
        content.push(("multipart/form-data", fields_schema(form, true)));
    }
    content
}

/// The fields of one form as a schema: one property per field, as
/// validated; `file` fields only in the multipart form.
fn fields_schema(form: &FormConfig, multipart: bool) -> Schema {
    let mut schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
    for field in &form.fields {
        if field.kind == FieldKind::File && !multipart {
            continue;
        }
        schema = schema.property(&field.name, field_schema(form, field));
        if field.required {
            schema = schema.required(&field.name);
        }
    }
    schema.into()
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

/// One field's schema: what `crate::submission` accepts, titled with the
/// field's label. A blank value (white space only) counts as absent: an
/// optional field takes it, a required one refuses it (422). One leniency
/// is not described: an optional select also takes a blank value, which is
/// not among its options.
fn field_schema(form: &FormConfig, field: &FieldConfig) -> Schema {
    let title = Some(field.label.clone());
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
        FieldKind::File if field.multiple => files_schema(form, &field.label).into(),
        // No `type`: a part's bytes are a file whatever they hold.
        FieldKind::File => ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .title(title)
            .content_media_type("application/octet-stream")
            .into(),
        FieldKind::Checkbox => checkbox_schema(field, &blank).title(title).into(),
        FieldKind::Select => ObjectBuilder::new()
            .schema_type(Type::String)
            .title(title)
            .enum_values(Some(field.options.clone()))
            .into(),
        FieldKind::Email => {
            let local = format!("[^{WHITE}{CONTROL}]+");
            let label = format!("[^{WHITE}@.{CONTROL}]");
            let inner = format!("[^{WHITE}@{CONTROL}]*");
            let address = format!("[{SPACE}]*{local}@{label}{inner}\\.{inner}{label}[{SPACE}]*");
            ObjectBuilder::new()
                .schema_type(Type::String)
                .title(title)
                .max_length(Some(field.max_len()))
                .description(Some("local@domain"))
                .pattern(Some(whole(address)))
                .into()
        }
        FieldKind::Text | FieldKind::Textarea => {
            let control = if field.kind == FieldKind::Textarea {
                CONTROL_MULTILINE
            } else {
                CONTROL
            };
            // A required value holds a character that is neither white
            // space nor a control character somewhere among the others.
            let pattern = if field.required {
                format!("^[^{control}]*[^{WHITE}{control}][^{control}]*$")
            } else {
                whole(format!("[^{control}]*"))
            };
            ObjectBuilder::new()
                .schema_type(Type::String)
                .title(title)
                .max_length(Some(field.max_len()))
                .min_length(field.required.then_some(1))
                .pattern(Some(pattern))
                .into()
        }
    }
}

/// A checkbox: a JSON boolean, or one of the words a browser or a person
/// may send for it, surrounded by white space or not; a required one must
/// be checked.
fn checkbox_schema(field: &FieldConfig, blank: &str) -> OneOfBuilder {
    let on = "[oO][nN]|[yY][eE][sS]|[tT][rR][uU][eE]|1";
    let off = "|[oO][fF][fF]|[nN][oO]|[fF][aA][lL][sS][eE]|0|";
    let boolean = ObjectBuilder::new().schema_type(Type::Boolean);
    let (boolean, words) = if field.required {
        (boolean.enum_values(Some([true])), on.to_owned())
    } else {
        (boolean, format!("{on}{off}"))
    };
    let word = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{blank}(?:{words}){blank}$")));
    OneOfBuilder::new()
        .description(Some(
            "A boolean, or one of \"on\", \"yes\", \"true\", \"1\", \"off\", \"no\", \"false\", \
             \"0\", \"\" (any case)",
        ))
        .item(boolean)
        .item(word)
}

/// A `file` field that takes several files: one part per file, at most the
/// form's `max_files` in all. A part's bytes are a file whatever they hold,
/// so any value that is not a list is one file.
fn files_schema(form: &FormConfig, label: &str) -> OneOfBuilder {
    let file = ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .content_media_type("application/octet-stream");
    let list = ArrayBuilder::new()
        .items(file)
        .max_items(Some(form.max_files));
    let one = [
        Type::String,
        Type::Number,
        Type::Boolean,
        Type::Object,
        Type::Null,
    ];
    OneOfBuilder::new()
        .title(Some(label))
        .description(Some(format!(
            "One part per file; at most {} files in all the form's file fields (more: 413)",
            form.max_files
        )))
        .item(list)
        .item(ObjectBuilder::new().schema_type(one.into_iter().collect::<SchemaType>()))
}
