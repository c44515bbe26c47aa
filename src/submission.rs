//! What a client submitted, validated against a form schema: the raw fields
//! ([`RawValue`]), the validator and its [`Rejection`]s, and the
//! [`Submission`] that passed.
//!
//! Both body formats (urlencoded and the API's JSON) decode into the same
//! list of raw fields (`submission/decode.rs`), and one validator checks
//! them against the form: known names only, no duplicates, required fields
//! present, lengths, kinds and options. The result is a [`Submission`]
//! whose values live in [`Zeroizing`] buffers.
//!
//! A [`Rejection`] never carries a submitted value, and names a field only
//! when it is one of the form's own (a client-chosen name is never echoed).

mod decode;

use std::fmt;

use zeroize::Zeroizing;

pub use decode::{decode_json, decode_urlencoded};

use crate::config::{FieldConfig, FieldKind, FormConfig};
use crate::mime::{EnvelopeField, FieldValue};

/// Most fields a body may carry before decoding stops: generous for any real
/// form, tiny next to "ten thousand fields".
pub const MAX_RAW_FIELDS: usize = 256;

/// A value as decoded from the body, before validation.
pub enum RawValue {
    /// A string.
    Text(Zeroizing<String>),
    /// A JSON boolean.
    Bool(bool),
    /// Any other JSON value (number, null, array, object).
    Other,
}

/// A validated value.
pub enum Value {
    /// Text, as typed (never empty).
    Text(Zeroizing<String>),
    /// A checkbox.
    Checked(bool),
}

/// Why a submission was refused. Carries no submitted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The body could not be decoded at all.
    Malformed(&'static str),
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// More than [`MAX_RAW_FIELDS`] fields.
    TooManyFields,
    /// A name that is not one of the form's fields.
    UnknownField,
    /// A field given twice.
    DuplicateField(String),
    /// A required field is absent or blank.
    Missing(String),
    /// A value longer than the field's `max_len`.
    TooLong(String, usize),
    /// A value of the wrong JSON type.
    WrongType(String),
    /// A `select` value that is not one of its options.
    InvalidOption(String),
    /// An `email` value that is not `local@domain`.
    InvalidEmail(String),
    /// Control characters where they are not allowed.
    InvalidCharacters(String),
    /// Text sent for a `file` field: it takes an upload.
    ExpectedFile(String),
}

impl Rejection {
    /// Machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::TooManyFields => "too_many_fields",
            Rejection::UnknownField => "unknown_field",
            Rejection::DuplicateField(_) => "duplicate_field",
            Rejection::Missing(_) => "missing_field",
            Rejection::TooLong(..) => "too_long",
            Rejection::WrongType(_) => "wrong_type",
            Rejection::InvalidOption(_) => "invalid_option",
            Rejection::InvalidEmail(_) => "invalid_email",
            Rejection::InvalidCharacters(_) => "invalid_characters",
            Rejection::ExpectedFile(_) => "expected_file",
        }
    }

    /// Whether the body itself is malformed (400) rather than failing the
    /// form's rules (422).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Rejection::Malformed(_)
                | Rejection::InvalidUtf8
                | Rejection::TooManyFields
                | Rejection::DuplicateField(_)
        )
    }

    /// The form field concerned, if any (always a schema name).
    pub fn field(&self) -> Option<&str> {
        match self {
            Rejection::DuplicateField(f)
            | Rejection::Missing(f)
            | Rejection::TooLong(f, _)
            | Rejection::WrongType(f)
            | Rejection::InvalidOption(f)
            | Rejection::InvalidEmail(f)
            | Rejection::InvalidCharacters(f)
            | Rejection::ExpectedFile(f) => Some(f),
            _ => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(what) => write!(f, "the request body is malformed: {what}"),
            Rejection::InvalidUtf8 => f.write_str("the request body is not valid UTF-8 text"),
            Rejection::TooManyFields => write!(f, "too many fields (at most {MAX_RAW_FIELDS})"),
            Rejection::UnknownField => {
                f.write_str("the request names a field this form does not have")
            }
            Rejection::DuplicateField(n) => write!(f, "field `{n}` is given more than once"),
            Rejection::Missing(n) => write!(f, "field `{n}` is required"),
            Rejection::TooLong(n, max) => write!(f, "field `{n}` is longer than {max} characters"),
            Rejection::WrongType(n) => write!(
                f,
                "field `{n}` must be a string (or a boolean for a checkbox)"
            ),
            Rejection::InvalidOption(n) => {
                write!(f, "field `{n}` must be one of its listed options")
            }
            Rejection::InvalidEmail(n) => write!(
                f,
                "field `{n}` must be an email address like name@example.org"
            ),
            Rejection::InvalidCharacters(n) => write!(f, "field `{n}` contains control characters"),
            Rejection::ExpectedFile(n) => {
                write!(f, "field `{n}` takes a file, sent as multipart/form-data")
            }
        }
    }
}

/// A submission that passed its form's rules: one slot per form field, in
/// the form's order.
pub struct Submission {
    values: Vec<Option<Value>>,
}

impl Submission {
    /// Checks `raw` against `form` (a submission without files); the first
    /// problem found is the answer.
    pub fn validate(
        form: &FormConfig,
        raw: Vec<(String, RawValue)>,
    ) -> Result<Submission, Rejection> {
        Submission::check(form, raw, &[], true).map_err(first)
    }

    /// Checks `raw` against `form` and reports every problem (never an empty
    /// list): at most one per form field, in the order they were found, so a
    /// page can mark each field. A malformed body or an unknown field stops
    /// the check at once and is the only entry.
    pub fn validate_all(
        form: &FormConfig,
        raw: Vec<(String, RawValue)>,
    ) -> Result<Submission, Vec<Rejection>> {
        Submission::check(form, raw, &[], true)
    }

    /// Checks `raw` against `form` when `files[i]` files were attached to
    /// form field `i` (a missing entry counts as none): a required `file`
    /// field needs at least one.
    pub fn validate_with_files(
        form: &FormConfig,
        raw: Vec<(String, RawValue)>,
        files: &[usize],
    ) -> Result<Submission, Rejection> {
        Submission::check(form, raw, files, true).map_err(first)
    }

    /// Checks the fields in `raw` without asking for the required ones: in a
    /// streamed upload they may still come after the files.
    pub fn validate_partial(
        form: &FormConfig,
        raw: Vec<(String, RawValue)>,
    ) -> Result<Submission, Rejection> {
        Submission::check(form, raw, &[], false).map_err(first)
    }

    fn check(
        form: &FormConfig,
        raw: Vec<(String, RawValue)>,
        files: &[usize],
        require: bool,
    ) -> Result<Submission, Vec<Rejection>> {
        let mut values: Vec<Option<Value>> = form.fields.iter().map(|_| None).collect();
        let mut seen = vec![false; form.fields.len()];
        let mut problems = Vec::new();
        for (name, raw) in raw {
            let Some(i) = form.fields.iter().position(|f| f.name == name) else {
                return Err(vec![Rejection::UnknownField]);
            };
            let field = &form.fields[i];
            if std::mem::replace(&mut seen[i], true) {
                return Err(vec![Rejection::DuplicateField(field.name.clone())]);
            }
            match check_value(field, raw) {
                Ok(value) => values[i] = value,
                Err(problem) => problems.push(problem),
            }
        }
        for (i, (field, value)) in form.fields.iter().zip(&values).enumerate() {
            let filled = match value {
                None if field.kind == FieldKind::File => files.get(i).is_some_and(|&n| n > 0),
                None => false,
                Some(Value::Checked(c)) => *c,
                Some(Value::Text(_)) => true,
            };
            let already = problems.iter().any(|p| p.field() == Some(&field.name));
            if require && field.required && !filled && !already {
                problems.push(Rejection::Missing(field.name.clone()));
            }
        }
        if problems.is_empty() {
            Ok(Submission { values })
        } else {
            Err(problems)
        }
    }

    /// The fields as the envelope writes them: every checkbox, and every text
    /// field that was filled, in the form's order.
    pub fn envelope_fields<'a>(&'a self, form: &'a FormConfig) -> Vec<EnvelopeField<'a>> {
        form.fields
            .iter()
            .zip(&self.values)
            .filter_map(|(field, value)| {
                let value = match (field.kind, value) {
                    (_, Some(Value::Text(t))) => FieldValue::Text(t),
                    (_, Some(Value::Checked(c))) => FieldValue::Checked(*c),
                    (FieldKind::Checkbox, None) => FieldValue::Checked(false),
                    (_, None) => return None,
                };
                Some(EnvelopeField {
                    name: &field.name,
                    label: &field.label,
                    value,
                })
            })
            .collect()
    }

    /// The value of form field number `i`, if filled (for re-rendering).
    pub fn value(&self, i: usize) -> Option<&Value> {
        self.values.get(i).and_then(Option::as_ref)
    }
}

/// The first of a non-empty list of problems.
fn first(mut all: Vec<Rejection>) -> Rejection {
    all.swap_remove(0)
}

/// One raw value against its field: `None` for blank text.
fn check_value(field: &FieldConfig, raw: RawValue) -> Result<Option<Value>, Rejection> {
    let fname = || field.name.clone();
    match (field.kind, raw) {
        (FieldKind::File, _) => Err(Rejection::ExpectedFile(fname())),
        (FieldKind::Checkbox, RawValue::Bool(b)) => Ok(Some(Value::Checked(b))),
        (FieldKind::Checkbox, RawValue::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" | "1" => Ok(Some(Value::Checked(true))),
            "" | "off" | "no" | "false" | "0" => Ok(Some(Value::Checked(false))),
            _ => Err(Rejection::WrongType(fname())),
        },
        (_, RawValue::Text(t)) => {
            if t.trim().is_empty() {
                Ok(None)
            } else {
                check_text(field, &t)?;
                Ok(Some(Value::Text(t)))
            }
        }
        (_, RawValue::Bool(_) | RawValue::Other) => Err(Rejection::WrongType(fname())),
    }
}

fn check_text(field: &FieldConfig, t: &str) -> Result<(), Rejection> {
    let name = || field.name.clone();
    let max_len = field.max_len();
    if t.chars().count() > max_len {
        return Err(Rejection::TooLong(name(), max_len));
    }
    let multiline = field.kind == FieldKind::Textarea;
    let bad_char = t
        .chars()
        .any(|c| c.is_control() && !(c == '\t' || (multiline && (c == '\n' || c == '\r'))));
    if bad_char {
        return Err(Rejection::InvalidCharacters(name()));
    }
    match field.kind {
        FieldKind::Email if !looks_like_email(t) => Err(Rejection::InvalidEmail(name())),
        FieldKind::Select if !field.options.iter().any(|o| o == t) => {
            Err(Rejection::InvalidOption(name()))
        }
        _ => Ok(()),
    }
}

/// `local@domain`, no spaces, a dot in the domain: what a person can check by
/// eye, not RFC 5321 in full.
fn looks_like_email(t: &str) -> bool {
    let t = t.trim();
    match t.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !t.chars().any(char::is_whitespace)
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    /// A form with a field of each kind, for the tests here and in
    /// `submission/decode.rs`.
    pub(super) fn form() -> FormConfig {
        let text = r#"
[server]
data_dir = "d"
keys_dir = "k"
[[forms]]
id = "f"
title = "F"
[[forms.fields]]
name = "name"
label = "Name"
kind = "text"
max_len = 5
[[forms.fields]]
name = "msg"
label = "Message"
kind = "textarea"
required = true
[[forms.fields]]
name = "mail"
label = "Mail"
kind = "email"
[[forms.fields]]
name = "pick"
label = "Pick"
kind = "select"
options = ["a", "b"]
[[forms.fields]]
name = "ok"
label = "OK"
kind = "checkbox"
"#;
        Config::parse(text, Path::new("t.toml"))
            .expect("config")
            .forms
            .remove(0)
    }

    fn urlencoded(body: &str) -> Result<Submission, Rejection> {
        Submission::validate(&form(), decode_urlencoded(body.as_bytes())?)
    }

    #[test]
    fn bad_submissions_are_refused_with_the_right_rejection() {
        let cases: &[(&str, Rejection)] = &[
            ("", Rejection::Missing("msg".into())),
            ("msg=+++", Rejection::Missing("msg".into())),
            ("msg=hi&name=toolong", Rejection::TooLong("name".into(), 5)),
            ("msg=hi&msg=again", Rejection::DuplicateField("msg".into())),
            ("msg=hi&evil=1", Rejection::UnknownField),
            ("msg=%FF", Rejection::InvalidUtf8),
            ("msg=hi&mail=nope", Rejection::InvalidEmail("mail".into())),
            ("msg=hi&pick=c", Rejection::InvalidOption("pick".into())),
            (
                "msg=hi&name=a%0Ab",
                Rejection::InvalidCharacters("name".into()),
            ),
            ("msg=a%00b", Rejection::InvalidCharacters("msg".into())),
            ("msg=hi&ok=maybe", Rejection::WrongType("ok".into())),
        ];
        for (body, want) in cases {
            match urlencoded(body) {
                Err(got) => assert_eq!(&got, want, "{body}"),
                Ok(_) => panic!("{body} was accepted"),
            }
        }
        let many = "a=1&".repeat(10_000);
        assert_eq!(urlencoded(&many).err(), Some(Rejection::TooManyFields));
    }

    #[test]
    fn every_problem_is_reported_once_per_field_in_the_order_found() {
        let raw = decode_urlencoded(b"name=toolong&mail=nope&pick=c").expect("decode");
        let all = Submission::validate_all(&form(), raw)
            .err()
            .expect("rejected");
        assert_eq!(
            all,
            [
                Rejection::TooLong("name".into(), 5),
                Rejection::InvalidEmail("mail".into()),
                Rejection::InvalidOption("pick".into()),
                Rejection::Missing("msg".into()),
            ]
        );
        let raw = decode_urlencoded(b"name=toolong&evil=1").expect("decode");
        let all = Submission::validate_all(&form(), raw)
            .err()
            .expect("rejected");
        assert_eq!(all, [Rejection::UnknownField]);
    }

    #[test]
    fn a_valid_submission_keeps_values_in_form_order() {
        let s = urlencoded("ok=on&msg=line1%0D%0Aline2&pick=b&mail=a%40b.org").expect("valid");
        let f = form();
        let fields = s.envelope_fields(&f);
        let names: Vec<_> = fields.iter().map(|f| f.name).collect();
        assert_eq!(names, ["msg", "mail", "pick", "ok"]);
        assert!(matches!(
            fields[0].value,
            FieldValue::Text("line1\r\nline2")
        ));
    }
}
