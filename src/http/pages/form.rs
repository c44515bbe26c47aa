//! A form's page: `GET /forms/{form}`, and the same form rendered again
//! after a mistake or a refusal ([`render_form`]) with what the person
//! typed ([`Echo`]) and each problem next to its field.
//!
//! The copy of what was typed is zeroized once the page is built; the
//! rendered page itself is handed to hyper and, like the request bytes,
//! cannot be. Nothing of it is stored or logged.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use zeroize::Zeroizing;

use super::layout::{Page, form_response, human_bytes, layout, not_sent, spaced};
use crate::config::{FieldConfig, FieldKind, FormConfig};
use crate::http::error::Surface;
use crate::http::form_tokens::{HONEYPOT_FIELD, TOKEN_FIELD};
use crate::http::limits::Client;
use crate::http::{AppState, Segment};
use crate::i18n::Msg;
use crate::keys::RecipientCert;
use crate::submission::{RawValue, Rejection};

/// What the person typed, per form field, kept only to render the form
/// again; zeroized when the response is built.
pub struct Echo(Vec<Option<Zeroizing<String>>>);

impl Echo {
    /// Nothing typed.
    pub fn empty(form: &FormConfig) -> Echo {
        Echo(form.fields.iter().map(|_| None).collect())
    }

    /// The text values of `raw` that name a field of `form`.
    pub fn of(form: &FormConfig, raw: &[(String, RawValue)]) -> Echo {
        let mut echo = Echo::empty(form);
        for (name, value) in raw {
            if let (Some(i), RawValue::Text(t)) =
                (form.fields.iter().position(|f| &f.name == name), value)
            {
                echo.0[i] = Some(t.clone());
            }
        }
        echo
    }

    fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i).and_then(|v| v.as_deref().map(String::as_str))
    }

    fn holds_any(&self) -> bool {
        self.0.iter().any(Option::is_some)
    }
}

/// `GET /forms/{form}`
///
/// Each form carries a fresh form token, so a client may open only so many
/// (`limits.form_page_client`): posts without a valid token are refused
/// without spending any rate budget, and the tokens are what a flood needs.
pub async fn form(
    State(state): State<AppState>,
    Segment(id): Segment,
    Client(client): Client,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(form) = state.intake().config.form(&id) else {
        let page = Page::negotiate(&headers, query.as_deref(), "/");
        return not_sent(page, None, StatusCode::NOT_FOUND);
    };
    if state.intake().config.abuse.form_tokens {
        if let Err(refused) = state.limits().issue_token(client) {
            return refused.respond(Surface::Page);
        }
    }
    let path = format!("/forms/{}", form.id);
    let page = Page::negotiate(&headers, query.as_deref(), &path);
    let html = render_form(page, &state, form, &Echo::empty(form), &[], None);
    form_response(form, StatusCode::OK, html)
}

/// The form, with `echo` as the values, `problems` next to their fields
/// and, after a refusal, why (`refusal`).
pub fn render_form(
    page: Page<'_>,
    state: &AppState,
    form: &FormConfig,
    echo: &Echo,
    problems: &[Rejection],
    refusal: Option<Msg>,
) -> String {
    let lang = page.code();
    let title = form.title_in(lang);
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            @if let Some(why) = refusal {
                (refusal_notice(page, why, echo.holds_any()))
            }
            @if !problems.is_empty() { (error_summary(page, form, problems)) }
            @if (refusal.is_some() || !problems.is_empty())
                && form.fields.iter().any(|f| f.kind == FieldKind::File)
            {
                div.notice { p { (page.t(Msg::FilesAgain)) } }
            }
            @if !form.description_in(lang).is_empty() { p { (form.description_in(lang)) } }
            (safety_box(page))
            (form_element(page, state, form, echo, problems))
            (recipients_box(page, &recipients_of(state, form)))
        },
    )
}

/// The `<form>` itself: the hidden token, the honeypot, every field and the
/// button.
fn form_element(
    page: Page<'_>,
    state: &AppState,
    form: &FormConfig,
    echo: &Echo,
    problems: &[Rejection],
) -> Markup {
    let abuse = &state.intake().config.abuse;
    // A fresh single-use token every time the form is shown (also after a
    // mistake: the one that was sent has been spent).
    let token = abuse.form_tokens.then(|| state.tokens().issue(&form.id));
    let lang = page.code();
    let first_invalid = form
        .fields
        .iter()
        .position(|f| problems.iter().any(|p| p.field() == Some(&f.name)));
    html! {
        // `novalidate`: the server checks, and answers in the page's
        // language next to each field, with or without JavaScript.
        form method="post" action={ "/forms/" (form.id) "?lang=" (lang) }
            accept-charset="utf-8" novalidate
            enctype=[form.takes_files().then_some("multipart/form-data")] {
            @if let Some(t) = &token { input type="hidden" name=(TOKEN_FIELD) value=(t); }
            @if abuse.honeypot {
                // Off-screen for people and hidden from screen readers;
                // naive bots fill every input they find.
                div.hp aria-hidden="true" {
                    label for="f-sf-homepage" { (page.t(Msg::HoneypotLabel)) }
                    input type="text" id="f-sf-homepage" name=(HONEYPOT_FIELD) value=""
                        tabindex="-1" autocomplete="off";
                }
            }
            @for (i, field) in form.fields.iter().enumerate() {
                (render_field(
                    page,
                    field,
                    echo.get(i),
                    problems.iter().find(|p| p.field() == Some(&field.name)),
                    first_invalid == Some(i),
                ))
            }
            @if form.takes_files() {
                p.limit {
                    (page.cat.fill(page.lang, Msg::FileLimits, &[
                        ("files", &form.max_files),
                        ("each", &human_bytes(form.max_file_bytes)),
                        ("total", &human_bytes(form.max_total_bytes)),
                    ]))
                }
            }
            button type="submit" { (page.t(Msg::Submit)) }
        }
    }
}

fn recipients_of<'a>(state: &'a AppState, form: &FormConfig) -> Vec<&'a RecipientCert> {
    let keyring = &state.intake().keyring;
    match keyring.for_form(&form.id) {
        Some(r) => r
            .certs
            .iter()
            .filter_map(|f| keyring.cert(&f.to_hex()))
            .collect(),
        None => Vec::new(),
    }
}

/// Why a post was refused by an abuse check, above a fresh form; `kept`:
/// the form holds what was sent.
fn refusal_notice(page: Page<'_>, why: Msg, kept: bool) -> Markup {
    html! {
        div.notice role="alert" {
            p { strong { (page.t(Msg::RefusedTitle)) } " " (page.t(why)) }
            p { (page.t(if kept { Msg::RefusedKept } else { Msg::RefusedAgain })) }
        }
    }
}

/// "What happens to your message", before the fields.
fn safety_box(page: Page<'_>) -> Markup {
    html! {
        section.safety aria-labelledby="safety-title" {
            h2 #safety-title { (page.t(Msg::SafetyTitle)) }
            ul {
                li { (page.t(Msg::SafetyEncrypted)) }
                li { (page.t(Msg::SafetyNoCopy)) }
                li { (page.t(Msg::SafetyReceipt)) }
            }
        }
    }
}

/// The recipients' names and fingerprints.
fn recipients_box(page: Page<'_>, recipients: &[&RecipientCert]) -> Markup {
    html! {
        section.recipients aria-labelledby="recipients-title" {
            h2 #recipients-title { (page.t(Msg::RecipientsTitle)) }
            p { (page.t(Msg::RecipientsIntro)) }
            ul {
                @for c in recipients {
                    li {
                        (c.display_name()) br;
                        span.fpr-label { (page.t(Msg::Fingerprint)) ": " }
                        code { (spaced(&c.fingerprint().to_hex())) }
                    }
                }
            }
        }
    }
}

/// The list of problems at the top of a form sent with mistakes, each a link
/// to its field.
fn error_summary(page: Page<'_>, form: &FormConfig, problems: &[Rejection]) -> Markup {
    let lang = page.code();
    // In the order of the fields on the page.
    let position = |p: &Rejection| {
        p.field()
            .and_then(|n| form.fields.iter().position(|f| f.name == n))
    };
    let mut problems: Vec<&Rejection> = problems.iter().collect();
    problems.sort_by_key(|p| position(p));
    html! {
        div.error-summary role="alert" aria-labelledby="error-summary-title" {
            h2 #error-summary-title { (page.t(Msg::ErrorsTitle)) }
            p { (page.t(Msg::ErrorsIntro)) }
            ul {
                @for p in problems {
                    @match p.field().and_then(|n| form.fields.iter().find(|f| f.name == n)) {
                        Some(field) => li {
                            a href={ "#f-" (field.name) } {
                                (field.label_in(lang)) ": " (problem_text(page, field, p))
                            }
                        },
                        None => li { (general_problem_text(page)) },
                    }
                }
            }
        }
    }
}

/// What to do about `problem`, in the page's language.
pub(crate) fn problem_text(page: Page<'_>, field: &FieldConfig, problem: &Rejection) -> String {
    let msg = match problem {
        Rejection::Missing(_) if field.kind == FieldKind::Checkbox => Msg::ErrMissingCheckbox,
        Rejection::Missing(_) => Msg::ErrMissing,
        Rejection::TooLong(_, max) => {
            return page.cat.fill(page.lang, Msg::ErrTooLong, &[("max", max)]);
        }
        Rejection::InvalidOption(_) => Msg::ErrOption,
        Rejection::InvalidEmail(_) => Msg::ErrEmail,
        Rejection::InvalidCharacters(_) => Msg::ErrCharacters,
        _ => Msg::ErrWrongType,
    };
    page.t(msg).to_owned()
}

fn general_problem_text(page: Page<'_>) -> &str {
    page.t(Msg::ErrUnknownField)
}

/// The ids and ARIA attributes one field's elements share.
struct FieldAttrs<'a> {
    id: String,
    hint_id: String,
    limit_id: String,
    error_id: String,
    /// `aria-describedby`: the problem, hint and limit that are shown.
    described: Option<String>,
    /// `aria-invalid`.
    invalid: Option<&'static str>,
    autofocus: bool,
    value: &'a str,
    max: usize,
}

impl<'a> FieldAttrs<'a> {
    fn new(
        field: &FieldConfig,
        hint: bool,
        value: Option<&'a str>,
        problem: bool,
        autofocus: bool,
    ) -> FieldAttrs<'a> {
        let id = format!("f-{}", field.name);
        let hint_id = format!("{id}-hint");
        let limit_id = format!("{id}-limit");
        let error_id = format!("{id}-error");
        let described = {
            let mut ids: Vec<&str> = Vec::new();
            if problem {
                ids.push(&error_id);
            }
            if hint {
                ids.push(&hint_id);
            }
            if has_limit(field) {
                ids.push(&limit_id);
            }
            (!ids.is_empty()).then(|| ids.join(" "))
        };
        FieldAttrs {
            described,
            invalid: problem.then_some("true"),
            autofocus,
            value: value.unwrap_or(""),
            max: field.max_len(),
            id,
            hint_id,
            limit_id,
            error_id,
        }
    }
}

/// Whether a field shows its character limit.
fn has_limit(field: &FieldConfig) -> bool {
    !matches!(
        field.kind,
        FieldKind::Select | FieldKind::Checkbox | FieldKind::File
    )
}

/// One field: label (with the required marker), hint, input with the value
/// the person typed, character limit, and its problem if any. Hint, limit
/// and problem are tied to the input with `aria-describedby`.
fn render_field(
    page: Page<'_>,
    field: &FieldConfig,
    value: Option<&str>,
    problem: Option<&Rejection>,
    autofocus: bool,
) -> Markup {
    let lang = page.code();
    let hint = field.hint_in(lang);
    let a = FieldAttrs::new(field, hint.is_some(), value, problem.is_some(), autofocus);
    let label = html! {
        label for=(a.id) {
            (field.label_in(lang))
            @if field.required { " " span.req { "(" (page.t(Msg::Required)) ")" } }
        }
    };
    html! {
        div.field.invalid[problem.is_some()] {
            @if field.kind == FieldKind::Checkbox {
                @if let Some(p) = problem { p.error #(a.error_id) { (error_text(page, field, p)) } }
                @if let Some(h) = hint { p.hint #(a.hint_id) { (h) } }
                div.check {
                    input type="checkbox" id=(a.id) name=(field.name) value="on"
                        checked[is_ticked(a.value)] required[field.required]
                        aria-invalid=[a.invalid] aria-describedby=[a.described.as_deref()]
                        autofocus[a.autofocus];
                    (label)
                }
            } @else {
                (label)
                @if let Some(h) = hint { p.hint #(a.hint_id) { (h) } }
                @if let Some(p) = problem { p.error #(a.error_id) { (error_text(page, field, p)) } }
                (field_input(page, field, &a))
                @if has_limit(field) {
                    p.limit #(a.limit_id) { (page.cat.fill(page.lang, Msg::Limit, &[("max", &a.max)])) }
                }
            }
        }
    }
}

/// The input of a field that is not a checkbox.
fn field_input(page: Page<'_>, field: &FieldConfig, a: &FieldAttrs<'_>) -> Markup {
    let lang = page.code();
    let (id, max, value) = (&a.id, a.max, a.value);
    let described = a.described.as_deref();
    html! {
        @match field.kind {
            FieldKind::File => {
                // A browser never re-fills a file input: after a
                // mistake the file has to be chosen again.
                input type="file" id=(id) name=(field.name)
                    multiple[field.multiple] required[field.required]
                    aria-invalid=[a.invalid] aria-describedby=[described]
                    autofocus[a.autofocus];
                p.limit { (page.t(Msg::FileNote)) }
            }
            FieldKind::Textarea => {
                textarea id=(id) name=(field.name) rows="8" maxlength=(max)
                    required[field.required] aria-invalid=[a.invalid]
                    aria-describedby=[described] autofocus[a.autofocus] { (value) }
            }
            FieldKind::Select => {
                select id=(id) name=(field.name) required[field.required]
                    aria-invalid=[a.invalid] aria-describedby=[described]
                    autofocus[a.autofocus] {
                    option value="" { (page.t(Msg::Choose)) }
                    @for (i, o) in field.options.iter().enumerate() {
                        option value=(o) selected[o == value] { (field.option_text_in(lang, i)) }
                    }
                }
            }
            _ => {
                input type=(if field.kind == FieldKind::Email { "email" } else { "text" })
                    id=(id) name=(field.name) value=(value) maxlength=(max)
                    autocomplete="off" spellcheck="false" required[field.required]
                    aria-invalid=[a.invalid] aria-describedby=[described]
                    autofocus[a.autofocus];
            }
        }
    }
}

/// The problem with its visually hidden "Error:" prefix for screen readers.
fn error_text(page: Page<'_>, field: &FieldConfig, problem: &Rejection) -> Markup {
    html! {
        span.visually-hidden { (page.t(Msg::ErrorPrefix)) " " }
        (problem_text(page, field, problem))
    }
}

/// How a browser sends a ticked box (the validator's accepted spellings).
fn is_ticked(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "on" | "yes" | "true" | "1"
    )
}
