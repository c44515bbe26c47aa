//! The `[[forms]]` tables and their `[[forms.fields]]`: the schemas of the
//! forms, their translations and upload bounds, and their validation.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::Problem;

/// Largest `max_len` a field may declare, in characters.
pub const MAX_FIELD_LEN: usize = 1_000_000;

/// Longest attachment file name accepted, in characters (what common file
/// systems allow).
pub const MAX_FILENAME_LEN: usize = 255;

/// One `[[forms]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormConfig {
    /// URL segment and record header value: lowercase letters, digits, `-`.
    pub id: String,
    /// Shown as the page title and used as the record's `Subject`.
    pub title: String,
    /// A paragraph shown above the form.
    #[serde(default)]
    pub description: String,
    /// Primary-key fingerprints of the certificates to encrypt to; empty means
    /// every certificate in `keys_dir`.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Write wildcard key IDs instead of the recipients' key IDs.
    #[serde(default)]
    pub hide_recipients: bool,
    /// The fields, in display order.
    #[serde(default)]
    pub fields: Vec<FieldConfig>,
    /// Translations of the title and description, by language code
    /// (`[forms.i18n.es]`); a missing one shows the English text.
    #[serde(default)]
    pub i18n: BTreeMap<String, FormTranslation>,
    /// Origins allowed to show this form in a frame (CSP `frame-ancestors`),
    /// e.g. `["https://www.example.org"]`; empty means no one may.
    #[serde(default)]
    pub frame_ancestors: Vec<String>,
    /// Largest single attached file, in bytes.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Most files one submission may attach.
    #[serde(default = "default_max_files")]
    pub max_files: usize,
    /// Largest sum of all attached files of one submission, in bytes.
    #[serde(default = "default_max_total_bytes")]
    pub max_total_bytes: u64,
    /// Give each submitter a reply code to read staff answers with
    /// (`src/replies.rs`). Off by default.
    #[serde(default)]
    pub replies: bool,
}

impl FormConfig {
    /// Whether the form has a `file` field (and so takes
    /// `multipart/form-data`).
    pub fn takes_files(&self) -> bool {
        self.fields.iter().any(|f| f.kind == FieldKind::File)
    }
}

/// A `[forms.i18n.<lang>]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormTranslation {
    /// The form's title in this language.
    pub title: Option<String>,
    /// The form's description in this language.
    pub description: Option<String>,
}

/// A `[forms.fields.i18n.<lang>]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTranslation {
    /// The label in this language.
    pub label: Option<String>,
    /// The hint in this language.
    pub hint: Option<String>,
    /// What a `select` shows for each option, in the same order as
    /// `options` (the submitted value stays the untranslated option).
    pub options: Option<Vec<String>>,
}

/// One `[[forms.fields]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// Form parameter and JSON key: lowercase letters, digits, `_`, `-`.
    pub name: String,
    /// What the person filling the form reads.
    pub label: String,
    /// The kind of input.
    pub kind: FieldKind,
    /// A short help text shown under the label.
    #[serde(default)]
    pub hint: Option<String>,
    /// The field must be filled (a checkbox must be ticked).
    #[serde(default)]
    pub required: bool,
    /// Longest value accepted, in characters; defaults per kind.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// The choices of a `select` field.
    #[serde(default)]
    pub options: Vec<String>,
    /// Translations of the label, hint and option texts, by language code
    /// (`[forms.fields.i18n.es]`); a missing one shows the English text.
    #[serde(default)]
    pub i18n: BTreeMap<String, FieldTranslation>,
    /// A `file` field may carry several files.
    #[serde(default)]
    pub multiple: bool,
}

/// The kinds of form field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// One line of text.
    Text,
    /// Several lines of text.
    Textarea,
    /// An email address (checked loosely: `local@domain`).
    Email,
    /// One of the field's `options`.
    Select,
    /// Ticked or not.
    Checkbox,
    /// An attached file (several with `multiple = true`), sent as
    /// `multipart/form-data` and sealed as a MIME attachment.
    File,
}

impl FieldKind {
    /// The name used in the config file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Textarea => "textarea",
            FieldKind::Email => "email",
            FieldKind::Select => "select",
            FieldKind::Checkbox => "checkbox",
            FieldKind::File => "file",
        }
    }

    fn default_max_len(self) -> usize {
        match self {
            FieldKind::Text => 500,
            FieldKind::Textarea => 20_000,
            FieldKind::Email => 254,
            FieldKind::Select => 500,
            FieldKind::Checkbox => 3,
            // The length of a file name, in characters.
            FieldKind::File => MAX_FILENAME_LEN,
        }
    }
}

impl FieldConfig {
    /// The longest value accepted, in characters.
    pub fn max_len(&self) -> usize {
        self.max_len.unwrap_or_else(|| self.kind.default_max_len())
    }

    /// The label in language `lang`, or the base label.
    pub fn label_in(&self, lang: &str) -> &str {
        self.i18n
            .get(lang)
            .and_then(|t| t.label.as_deref())
            .unwrap_or(&self.label)
    }

    /// The hint in language `lang`, or the base hint.
    pub fn hint_in(&self, lang: &str) -> Option<&str> {
        self.i18n
            .get(lang)
            .and_then(|t| t.hint.as_deref())
            .or(self.hint.as_deref())
    }

    /// What option number `i` shows in language `lang`, or the option itself.
    pub fn option_text_in(&self, lang: &str, i: usize) -> &str {
        self.i18n
            .get(lang)
            .and_then(|t| t.options.as_ref())
            .and_then(|o| o.get(i))
            .or_else(|| self.options.get(i))
            .map_or("", String::as_str)
    }
}

impl FormConfig {
    /// The title in language `lang`, or the base title.
    pub fn title_in(&self, lang: &str) -> &str {
        self.i18n
            .get(lang)
            .and_then(|t| t.title.as_deref())
            .unwrap_or(&self.title)
    }

    /// The description in language `lang`, or the base description.
    pub fn description_in(&self, lang: &str) -> &str {
        self.i18n
            .get(lang)
            .and_then(|t| t.description.as_deref())
            .unwrap_or(&self.description)
    }

    /// The CSP `frame-ancestors` sources for this form's pages.
    pub fn frame_ancestors_csp(&self) -> String {
        if self.frame_ancestors.is_empty() {
            "'none'".to_owned()
        } else {
            self.frame_ancestors.join(" ")
        }
    }
}

fn check_translation_lang(lang: &str) -> Result<(), String> {
    match crate::i18n::Lang::from_code(lang) {
        Some(crate::i18n::Lang::En) => Err(
            "English is the base text (title, label, ...); translate into another language".into(),
        ),
        Some(l) if l.code() == lang => Ok(()),
        _ => {
            let codes: Vec<_> = crate::i18n::Lang::ALL
                .iter()
                .skip(1)
                .map(|l| l.code())
                .collect();
            Err(format!(
                "is not a shipped page language; use one of: {}",
                codes.join(", ")
            ))
        }
    }
}

/// `'self'` or `scheme://host[:port]` with a host of letters, digits, `-`,
/// `.` (optionally a leading `*.`): enough for CSP, nothing that could end
/// the directive or add another.
fn is_frame_source(s: &str) -> bool {
    if s == "'self'" {
        return true;
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    matches!(scheme, "https" | "http")
        && !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

fn is_slug(s: &str, extra: char) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == extra)
}

/// Most files a form may accept per submission. Each file is one MIME part
/// of the record, and `decrypt` refuses records of more than
/// [`crate::mime::MAX_PARTS`] parts; this keeps every record a form can
/// make well inside that.
pub const MAX_FILES_LIMIT: usize = 1000;

// A record has at most two text parts and one JSON part besides its files.
const _: () = assert!(MAX_FILES_LIMIT + 3 <= crate::mime::MAX_PARTS);

fn default_max_files() -> usize {
    20
}
fn default_max_file_bytes() -> u64 {
    2 * 1024 * 1024 * 1024
}
fn default_max_total_bytes() -> u64 {
    2 * 1024 * 1024 * 1024
}

/// Every problem of the forms: none at all, or each form's (see
/// [`validate_form`]).
pub(super) fn validate(forms: &[FormConfig]) -> Vec<Problem> {
    if forms.is_empty() {
        return vec![Problem::new(
            "forms",
            "no form is configured; add at least one [[forms]] table",
        )];
    }
    let mut ids = HashSet::new();
    let mut problems = Vec::new();
    for (i, form) in forms.iter().enumerate() {
        problems.extend(validate_form(i, form, &mut ids));
    }
    problems
}

/// The problems of `forms[i]` and of its fields; `ids` holds the ids of
/// the forms before it.
fn validate_form<'a>(i: usize, form: &'a FormConfig, ids: &mut HashSet<&'a str>) -> Vec<Problem> {
    let at = format!("forms[{i}]");
    let mut problems = Vec::new();
    if !is_slug(&form.id, '-') {
        problems.push(Problem::new(
            format!("{at}.id"),
            format!(
                "{:?} must be 1-64 lowercase letters, digits or '-'",
                form.id
            ),
        ));
    } else if !ids.insert(&form.id) {
        problems.push(Problem::new(
            format!("{at}.id"),
            format!("{:?} is used by two forms; ids must be unique", form.id),
        ));
    }
    if form.title.trim().is_empty() {
        problems.push(Problem::new(format!("{at}.title"), "must not be empty"));
    }
    for lang in form.i18n.keys() {
        if let Err(p) = check_translation_lang(lang) {
            problems.push(Problem::new(format!("{at}.i18n.{lang}"), p));
        }
    }
    for (k, source) in form.frame_ancestors.iter().enumerate() {
        if !is_frame_source(source) {
            problems.push(Problem::new(
                format!("{at}.frame_ancestors[{k}]"),
                format!(
                    "{source:?} must be 'self' or an origin like \"https://www.example.org\" \
                     (scheme, host, optional port; no path, space, ';' or ',')"
                ),
            ));
        }
    }
    if form.fields.is_empty() {
        problems.push(Problem::new(
            format!("{at}.fields"),
            "a form needs at least one [[forms.fields]] entry",
        ));
    }
    if form.max_files == 0 || form.max_files > MAX_FILES_LIMIT {
        problems.push(Problem::new(
            format!("{at}.max_files"),
            format!("must be between 1 and {MAX_FILES_LIMIT}"),
        ));
    }
    if form.max_file_bytes == 0 || form.max_total_bytes == 0 {
        problems.push(Problem::new(
            format!("{at}.max_file_bytes"),
            "max_file_bytes and max_total_bytes must be at least 1",
        ));
    }
    problems.extend(check_replies(&at, form));
    let mut names = HashSet::new();
    for (j, field) in form.fields.iter().enumerate() {
        let at = format!("{at}.fields[{j}]");
        if !is_slug(&field.name, '_') {
            problems.push(Problem::new(
                format!("{at}.name"),
                format!(
                    "{:?} must be 1-64 lowercase letters, digits, '_' or '-'",
                    field.name
                ),
            ));
        } else if !names.insert(&field.name) {
            problems.push(Problem::new(
                format!("{at}.name"),
                format!("{:?} appears twice in form {:?}", field.name, form.id),
            ));
        }
        problems.extend(validate_field(&at, field));
    }
    problems
}

/// A form with replies needs a text or textarea field `message` and no other
/// required field: a tipster's follow-up is sealed into it alone, as a
/// submission of that form.
fn check_replies(at: &str, form: &FormConfig) -> Option<Problem> {
    let fits = form
        .fields
        .iter()
        .any(|f| f.name == "message" && matches!(f.kind, FieldKind::Text | FieldKind::Textarea));
    let others_required = form
        .fields
        .iter()
        .any(|f| f.required && f.name != "message");
    (form.replies && (!fits || others_required)).then(|| {
        Problem::new(
            format!("{at}.replies"),
            "a form with replies needs a text or textarea field named \"message\" and no other \
             required field (a tipster's follow-up is stored in \"message\" alone); fix the \
             fields or set replies = false",
        )
    })
}

/// The problems of one field (`at` is its key, e.g. `forms[0].fields[2]`)
/// apart from its name.
fn validate_field(at: &str, field: &FieldConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if field.label.trim().is_empty() {
        problems.push(Problem::new(format!("{at}.label"), "must not be empty"));
    }
    if let Some(n) = field.max_len {
        if n == 0 || n > MAX_FIELD_LEN {
            problems.push(Problem::new(
                format!("{at}.max_len"),
                format!("must be between 1 and {MAX_FIELD_LEN}"),
            ));
        }
    }
    for (lang, t) in &field.i18n {
        if let Err(p) = check_translation_lang(lang) {
            problems.push(Problem::new(format!("{at}.i18n.{lang}"), p));
        }
        if let Some(o) = &t.options {
            if o.len() != field.options.len() {
                problems.push(Problem::new(
                    format!("{at}.i18n.{lang}.options"),
                    format!(
                        "has {} entries but the field has {} options; give one text per option, in order",
                        o.len(),
                        field.options.len()
                    ),
                ));
            }
        }
    }
    if field.multiple && field.kind != FieldKind::File {
        problems.push(Problem::new(
            format!("{at}.multiple"),
            format!(
                "only file fields take `multiple`, this is {}",
                field.kind.as_str()
            ),
        ));
    }
    if field.kind == FieldKind::File && field.max_len.is_some() {
        problems.push(Problem::new(
            format!("{at}.max_len"),
            "a file field has no max_len; use the form's max_file_bytes",
        ));
    }
    problems.extend(validate_options(at, field));
    problems
}

/// The problems of a field's `options`: a select field needs distinct,
/// non-empty ones that fit its `max_len`; no other field takes any.
fn validate_options(at: &str, field: &FieldConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let options = format!("{at}.options");
    match (field.kind, field.options.is_empty()) {
        (FieldKind::Select, true) => {
            problems.push(Problem::new(
                options,
                "a select field needs at least one option",
            ));
        }
        (FieldKind::Select, false) => {
            let mut seen = HashSet::new();
            if field
                .options
                .iter()
                .any(|o| o.trim().is_empty() || !seen.insert(o))
            {
                problems.push(Problem::new(
                    options.clone(),
                    "options must be non-empty and distinct",
                ));
            }
            if field
                .options
                .iter()
                .any(|o| o.chars().count() > field.max_len())
            {
                problems.push(Problem::new(
                    options,
                    "an option is longer than the field's max_len",
                ));
            }
        }
        (_, false) => {
            problems.push(Problem::new(
                options,
                format!(
                    "only select fields take options, this is {}",
                    field.kind.as_str()
                ),
            ));
        }
        (_, true) => {}
    }
    problems
}
