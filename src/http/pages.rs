//! Server-rendered HTML: the form list, each form, the form again with its
//! errors, the receipt page, the key list and error pages.
//!
//! Pages need no JavaScript and load nothing from another origin; every
//! dynamic string goes through maud, which escapes it. All page text comes
//! from [`crate::i18n`] in the request's language, form text from the
//! config's translations. A receipt appears only in the body of a `no-store`
//! response, never in a URL.
//!
//! A form sent with mistakes is rendered again from memory with what the
//! person typed and the problems next to each field (422); nothing of it is
//! stored or logged. The copy kept for that ([`Echo`]) is zeroized; the
//! rendered page itself is handed to hyper and, like the request bytes,
//! cannot be.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use zeroize::Zeroizing;

use super::error::{HttpError, PageError};
use super::form_tokens::{HONEYPOT_FIELD, Held, TOKEN_FIELD, TokenError};
use super::limits::{Budget, Client, ClientKey};
use super::upload::Failed;
use super::{AppState, Segment};
use crate::config::{FieldConfig, FieldKind, FormConfig};
use crate::i18n::{Catalogue, Lang, Msg, catalogue, negotiate};
use crate::keys::RecipientCert;
use crate::receipt::Receipt;
use crate::submission::{RawValue, Rejection, Submission, decode_urlencoded};

const STYLESHEET: &str = include_str!("../../static/style.css");

/// What every page needs to speak the reader's language.
#[derive(Clone, Copy)]
struct Page<'a> {
    lang: Lang,
    cat: &'a Catalogue,
    /// The path of this page, for the language switcher's links.
    path: &'a str,
}

impl<'a> Page<'a> {
    fn new(lang: Lang, path: &'a str) -> Page<'a> {
        Page {
            lang,
            cat: catalogue(),
            path,
        }
    }

    /// The language from `?lang=` or `Accept-Language`.
    fn negotiate(headers: &HeaderMap, query: Option<&str>, path: &'a str) -> Page<'a> {
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        Page::new(negotiate(query, accept), path)
    }

    fn t(&self, msg: Msg) -> &'a str {
        self.cat.text(self.lang, msg)
    }

    fn code(&self) -> &'static str {
        self.lang.code()
    }
}

fn layout(page: Page<'_>, title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang=(page.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // Not `no-referrer`: under it a browser sends `Origin: null`
                // with our own forms' posts, which is what a sandboxed frame
                // on another site sends too. No other site gets a referrer.
                meta name="referrer" content="same-origin";
                title { (title) " · " (page.t(Msg::SiteName)) }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header {
                    a.site href={ "/?lang=" (page.code()) } target="_top" { (page.t(Msg::SiteName)) }
                    (language_switcher(page))
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// Links to this page in every language, each named in its own language:
/// plain links, so they work without JavaScript.
fn language_switcher(page: Page<'_>) -> Markup {
    html! {
        nav.langs aria-label=(page.t(Msg::SwitcherLabel)) {
            ul {
                @for lang in Lang::ALL {
                    li {
                        @if lang == page.lang {
                            a href={ (page.path) "?lang=" (lang.code()) } hreflang=(lang.code())
                                lang=(lang.code()) aria-current="page" {
                                (page.cat.text(lang, Msg::LanguageName))
                            }
                        } @else {
                            a href={ (page.path) "?lang=" (lang.code()) } hreflang=(lang.code())
                                lang=(lang.code()) {
                                (page.cat.text(lang, Msg::LanguageName))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Renders a plain error page (English: the error path does not know the
/// request's language).
pub fn error_page(title: &str, message: &str) -> String {
    let page = Page::new(Lang::En, "/");
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p { a href="/" { (page.t(Msg::BackToForms)) } }
        },
    )
}

/// A byte count for people: `2 GiB`, `300 MiB`, `512 KiB`, `12 bytes`.
fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size {
            let whole = n / size;
            let tenth = (n % size) * 10 / size;
            return if tenth == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenth} {unit}")
            };
        }
    }
    format!("{n} bytes")
}

/// Spaced groups of four, as GnuPG prints fingerprints.
fn spaced(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /`
pub async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Html<String> {
    let page = Page::negotiate(&headers, query.as_deref(), "/");
    let lang = page.code();
    let forms = &state.intake().config.forms;
    Html(layout(
        page,
        page.t(Msg::FormsTitle),
        html! {
            h1 { (page.t(Msg::FormsTitle)) }
            p { (page.t(Msg::FormsIntro)) }
            ul.forms {
                @for f in forms {
                    li {
                        a href={ "/forms/" (f.id) "?lang=" (lang) } { (f.title_in(lang)) }
                        @if !f.description_in(lang).is_empty() { p { (f.description_in(lang)) } }
                    }
                }
            }
            p { a href={ "/keys?lang=" (lang) } { (page.t(Msg::KeysLink)) } }
        },
    ))
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

/// What the person typed, per form field, kept only to render the form
/// again; zeroized when the response is built.
struct Echo(Vec<Option<Zeroizing<String>>>);

impl Echo {
    fn empty(form: &FormConfig) -> Echo {
        Echo(form.fields.iter().map(|_| None).collect())
    }

    fn of(form: &FormConfig, raw: &[(String, RawValue)]) -> Echo {
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

    /// What a form refused for `why` shows again. A person can meet most
    /// refusals (sending again within seconds of a mistake, a page left
    /// open for hours, a restart, a busy moment, autofill in the hidden
    /// field), so what they wrote comes back, as after a mistake. Not after
    /// a replay (that copy of the form reached the server before and was
    /// answered then), nor for another site's post (its words, not theirs).
    fn after_refusal(form: &FormConfig, why: Msg, raw: &[(String, RawValue)]) -> Echo {
        match why {
            Msg::RefusedTokenReplayed | Msg::RefusedCrossSite => Echo::empty(form),
            _ => Echo::of(form, raw),
        }
    }

    fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i).and_then(|v| v.as_deref().map(String::as_str))
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
) -> Result<Response, FormPageError> {
    let Some(form) = state.intake().config.form(&id) else {
        let page = Page::negotiate(&headers, query.as_deref(), "/");
        return Err(FormPageError::new(page, None, HttpError::unknown_form()));
    };
    if state.intake().config.abuse.form_tokens {
        if let Err(refused) = state.limits().issue_token(client) {
            return Ok(refused.into_response(false));
        }
    }
    let path = format!("/forms/{}", form.id);
    let page = Page::negotiate(&headers, query.as_deref(), &path);
    let html = render_form(page, &state, form, &Echo::empty(form), &[], None);
    Ok(form_response(form, StatusCode::OK, html))
}

/// An error on a form route, answered as a page in the reader's language
/// and framed like its form. The text says what happened and that nothing
/// was stored; it never echoes what was sent.
pub struct FormPageError {
    status: StatusCode,
    html: String,
    /// The form's `frame-ancestors`, when the form exists.
    frame_ancestors: Option<String>,
}

impl FormPageError {
    fn new(page: Page<'_>, form: Option<&FormConfig>, error: HttpError) -> FormPageError {
        let (title, message) = match error.status {
            StatusCode::NOT_FOUND => (Msg::PageNotFoundTitle, Msg::UnknownForm),
            StatusCode::PAYLOAD_TOO_LARGE => (Msg::NotSentTitle, Msg::NotSentTooLarge),
            StatusCode::SERVICE_UNAVAILABLE => (Msg::NotSentTitle, Msg::NotSentUnavailable),
            s if s.is_server_error() => (Msg::NotSentTitle, Msg::NotSentFailed),
            _ => (Msg::NotSentTitle, Msg::NotSentUnreadable),
        };
        let lang = page.code();
        let html = layout(
            page,
            page.t(title),
            html! {
                h1 { (page.t(title)) }
                p { (page.t(message)) }
                p { a href={ "/?lang=" (lang) } target="_top" { (page.t(Msg::BackToForms)) } }
            },
        );
        FormPageError {
            status: error.status,
            html,
            frame_ancestors: form.map(FormConfig::frame_ancestors_csp),
        }
    }
}

impl IntoResponse for FormPageError {
    fn into_response(self) -> Response {
        match &self.frame_ancestors {
            Some(sources) => framed_response(sources, self.status, self.html),
            None => (self.status, Html(self.html)).into_response(),
        }
    }
}

/// A response from a form route: `no-store`, and the form's own
/// `frame-ancestors` (the global header says `'none'`).
fn form_response(form: &FormConfig, status: StatusCode, html: String) -> Response {
    framed_response(&form.frame_ancestors_csp(), status, html)
}

/// A `no-store` page whose CSP lets `frame_ancestors` frame it.
fn framed_response(frame_ancestors: &str, status: StatusCode, html: String) -> Response {
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors {frame_ancestors}; base-uri 'none'"
    );
    let mut res = (status, Html(html)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match HeaderValue::from_str(&csp) {
        Ok(v) => {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        // Config validation only lets through header-safe sources; if that
        // ever fails, the global `'none'` policy stays (safe side).
        Err(_) => tracing::error!("a form's frame_ancestors is not a valid header value"),
    }
    res
}

/// The form, with `echo` as the values and `problems` next to their fields.
fn render_form(
    page: Page<'_>,
    state: &AppState,
    form: &FormConfig,
    echo: &Echo,
    problems: &[Rejection],
    refusal: Option<Msg>,
) -> String {
    let abuse = &state.intake().config.abuse;
    // A fresh single-use token every time the form is shown (also after a
    // mistake: the one that was sent has been spent).
    let token = abuse.form_tokens.then(|| state.tokens().issue(&form.id));
    let lang = page.code();
    let title = form.title_in(lang);
    let first_invalid = form
        .fields
        .iter()
        .position(|f| problems.iter().any(|p| p.field() == Some(&f.name)));
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            @if let Some(why) = refusal {
                (refusal_notice(page, why, echo.0.iter().any(Option::is_some)))
            }
            @if !problems.is_empty() { (error_summary(page, form, problems)) }
            @if (refusal.is_some() || !problems.is_empty())
                && form.fields.iter().any(|f| f.kind == FieldKind::File)
            {
                div.notice { p { (page.t(Msg::FilesAgain)) } }
            }
            @if !form.description_in(lang).is_empty() { p { (form.description_in(lang)) } }
            (safety_box(page))
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
            (recipients_box(page, &recipients_of(state, form)))
        },
    )
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
fn problem_text(page: Page<'_>, field: &FieldConfig, problem: &Rejection) -> String {
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
    let id = format!("f-{}", field.name);
    let hint_id = format!("{id}-hint");
    let limit_id = format!("{id}-limit");
    let error_id = format!("{id}-error");
    let max = field.max_len();
    let hint = field.hint_in(lang);
    let has_limit = !matches!(
        field.kind,
        FieldKind::Select | FieldKind::Checkbox | FieldKind::File
    );
    let mut described: Vec<&str> = Vec::new();
    if problem.is_some() {
        described.push(&error_id);
    }
    if hint.is_some() {
        described.push(&hint_id);
    }
    if has_limit {
        described.push(&limit_id);
    }
    let described = (!described.is_empty()).then(|| described.join(" "));
    let invalid = problem.is_some().then_some("true");
    let value = value.unwrap_or("");
    let label = html! {
        label for=(id) {
            (field.label_in(lang))
            @if field.required { " " span.req { "(" (page.t(Msg::Required)) ")" } }
        }
    };
    html! {
        div.field.invalid[problem.is_some()] {
            @if field.kind == FieldKind::Checkbox {
                @if let Some(p) = problem { p.error #(error_id) { (error_text(page, field, p)) } }
                @if let Some(h) = hint { p.hint #(hint_id) { (h) } }
                div.check {
                    input type="checkbox" id=(id) name=(field.name) value="on"
                        checked[is_ticked(value)] required[field.required]
                        aria-invalid=[invalid] aria-describedby=[described.as_deref()]
                        autofocus[autofocus];
                    (label)
                }
            } @else {
                (label)
                @if let Some(h) = hint { p.hint #(hint_id) { (h) } }
                @if let Some(p) = problem { p.error #(error_id) { (error_text(page, field, p)) } }
                @match field.kind {
                    FieldKind::File => {
                        // A browser never re-fills a file input: after a
                        // mistake the file has to be chosen again.
                        input type="file" id=(id) name=(field.name)
                            multiple[field.multiple] required[field.required]
                            aria-invalid=[invalid] aria-describedby=[described.as_deref()]
                            autofocus[autofocus];
                        p.limit { (page.t(Msg::FileNote)) }
                    }
                    FieldKind::Textarea => {
                        textarea id=(id) name=(field.name) rows="8" maxlength=(max)
                            required[field.required] aria-invalid=[invalid]
                            aria-describedby=[described.as_deref()] autofocus[autofocus] { (value) }
                    }
                    FieldKind::Select => {
                        select id=(id) name=(field.name) required[field.required]
                            aria-invalid=[invalid] aria-describedby=[described.as_deref()]
                            autofocus[autofocus] {
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
                            aria-invalid=[invalid] aria-describedby=[described.as_deref()]
                            autofocus[autofocus];
                    }
                }
                @if has_limit {
                    p.limit #(limit_id) { (page.cat.fill(page.lang, Msg::Limit, &[("max", &max)])) }
                }
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

/// `POST /forms/{form}` with a urlencoded body, once `upload::page_submit`
/// has checked the form, the content type and the origin: parse → form
/// token and honeypot → rate budgets → validate → seal → respond. Mistakes
/// the person can fix get the form back (422) with what they typed; anything
/// else gets a page saying that nothing was stored.
pub async fn submit(
    state: &AppState,
    form_index: usize,
    client: Option<ClientKey>,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, FormPageError> {
    let config = &state.intake().config;
    let form = &config.forms[form_index];
    let path = format!("/forms/{}", form.id);
    let page = Page::negotiate(headers, query, &path);
    let fail = |e: HttpError| FormPageError::new(page, Some(form), e);

    // Parse.
    let body = body.map_err(|e| fail(e.into()))?;
    let mut raw = decode_urlencoded(&body).map_err(|e| fail(e.into()))?;
    drop(body);

    // Abuse checks (none of them looks at what was written): the form comes
    // back with the reason, a fresh token and what was written. Only a post
    // that passes them is charged to the rate budgets, and its token is used
    // up only once the charge went through (a 429 leaves it good).
    let refusal = |(status, why): (StatusCode, Msg), raw: &[(String, RawValue)]| {
        let echo = Echo::after_refusal(form, why, raw);
        refused_form(state, client, page, form, &echo, why, status)
    };
    let pass = match gate_form_post(state, form, &mut raw) {
        Ok(pass) => pass,
        Err(why) => return Ok(refusal(why, &raw)),
    };
    if let Err(refused) = state.limits().charge(client, Budget::Form(form_index)) {
        // Dropping the pass gives the token back.
        return Ok(refused.into_response(false));
    }
    pass.spend();

    // Validate: a fixable mistake re-renders the form from memory.
    let echo = Echo::of(form, &raw);
    let submission = match Submission::validate_all(form, raw) {
        Ok(s) => s,
        Err(problems) => {
            if let Some(malformed) = problems.iter().find(|p| p.is_malformed()) {
                return Err(fail(malformed.clone().into()));
            }
            let html = render_form(page, state, form, &echo, &problems, None);
            drop(echo);
            return Ok(form_response(form, StatusCode::UNPROCESSABLE_ENTITY, html));
        }
    };
    drop(echo);

    // Seal.
    let receipt = state.seal(form_index, submission).await.map_err(fail)?;

    // Respond.
    let html = render_receipt(page, form, &receipt.to_string());
    Ok(form_response(form, StatusCode::OK, html))
}

/// The form again after an abuse check refused a post, with `why` and a
/// fresh token (charged to the client's `form_page_client` budget: past it,
/// 429 instead, so refused posts cannot mint tokens a client may not get
/// from `GET /forms/{form}`).
fn refused_form(
    state: &AppState,
    client: Option<ClientKey>,
    page: Page<'_>,
    form: &FormConfig,
    echo: &Echo,
    why: Msg,
    status: StatusCode,
) -> Response {
    if state.intake().config.abuse.form_tokens {
        if let Err(refused) = state.limits().issue_token(client) {
            return refused.into_response(false);
        }
    }
    let html = render_form(page, state, form, echo, &[], Some(why));
    form_response(form, status, html)
}

/// The answer to a cross-site post to an HTML form (403): the form, empty,
/// saying why.
pub fn cross_site_response(
    state: &AppState,
    client: Option<ClientKey>,
    form_index: usize,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response {
    let form = &state.intake().config.forms[form_index];
    let path = format!("/forms/{}", form.id);
    let page = Page::negotiate(headers, query, &path);
    refused_form(
        state,
        client,
        page,
        form,
        &Echo::empty(form),
        Msg::RefusedCrossSite,
        StatusCode::FORBIDDEN,
    )
}

/// The answer to a post to an HTML form in a content type it does not take
/// (415).
pub fn unsupported_response(
    state: &AppState,
    form_index: usize,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response {
    let form = &state.intake().config.forms[form_index];
    let path = format!("/forms/{}", form.id);
    let page = Page::negotiate(headers, query, &path);
    let e = HttpError::unsupported_media_type(
        "application/x-www-form-urlencoded or multipart/form-data",
    );
    FormPageError::new(page, Some(form), e).into_response()
}

/// The confirmation page: the receipt and what to do with it.
fn render_receipt(page: Page<'_>, form: &FormConfig, receipt: &str) -> String {
    let lang = page.code();
    let title = page.t(Msg::SentTitle);
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            p { (page.cat.fill(page.lang, Msg::SentIntro, &[("form", &form.title_in(lang))])) }
            p.receipt { code #receipt { (receipt) } }
            p { (page.t(Msg::SentSave)) }
            p { (page.t(Msg::SentAdvice)) }
            p { a href={ "/?lang=" (lang) } target="_top" { (page.t(Msg::BackToForms)) } }
        },
    )
}

/// An HTML form post whose honeypot is empty and whose form token is good
/// (or not asked for), the token held for this post alone: [`Pass::spend`]
/// uses it up; dropped without that, the post was refused (a rate limit, no
/// upload slot) and the token is given back.
pub struct Pass<'a>(Option<Held<'a>>);

impl Pass<'_> {
    /// Uses the token up.
    pub fn spend(self) {
        if let Some(held) = self.0 {
            held.keep();
        }
    }
}

/// The form-token and honeypot checks of an HTML form post: removes both
/// fields from `raw` and says why the post is refused, if it is. A good
/// token is taken for this post in the same step (no other post can pass
/// with it meanwhile), and used up only by [`Pass::spend`].
pub fn gate_form_post<'a>(
    state: &'a AppState,
    form: &FormConfig,
    raw: &mut Vec<(String, RawValue)>,
) -> Result<Pass<'a>, (StatusCode, Msg)> {
    let abuse = &state.intake().config.abuse;
    let token = take_text(raw, TOKEN_FIELD);
    let honeypot = take_text(raw, HONEYPOT_FIELD);
    if abuse.honeypot && honeypot.is_some_and(|h| !h.trim().is_empty()) {
        return Err((StatusCode::BAD_REQUEST, Msg::RefusedHoneypot));
    }
    if !abuse.form_tokens {
        return Ok(Pass(None));
    }
    let presented = token.as_deref().map(|t| t.as_str());
    let tokens = state.tokens();
    tokens
        .verify(&form.id, presented)
        .and_then(|v| tokens.hold(v))
        .map(|held| Pass(Some(held)))
        .map_err(token_refusal)
}

fn token_refusal(e: TokenError) -> (StatusCode, Msg) {
    match e {
        TokenError::Invalid => (StatusCode::BAD_REQUEST, Msg::RefusedTokenInvalid),
        TokenError::Expired => (StatusCode::BAD_REQUEST, Msg::RefusedTokenExpired),
        TokenError::Replayed => (StatusCode::BAD_REQUEST, Msg::RefusedTokenReplayed),
        TokenError::TooFast => (StatusCode::BAD_REQUEST, Msg::RefusedTooFast),
        TokenError::Busy => (StatusCode::SERVICE_UNAVAILABLE, Msg::RefusedBusy),
    }
}

/// Removes the parameter `name` (if sent once or more) and returns its last
/// text value.
fn take_text(pairs: &mut Vec<(String, RawValue)>, name: &str) -> Option<Zeroizing<String>> {
    let mut found = None;
    let mut i = 0;
    while i < pairs.len() {
        if pairs[i].0 == name {
            if let (_, RawValue::Text(t)) = pairs.remove(i) {
                found = Some(t);
            }
        } else {
            i += 1;
        }
    }
    found
}

/// A browser says this post comes from another site: `Sec-Fetch-Site` other
/// than `same-origin`/`none`, or (from a browser that does not send
/// `Sec-Fetch-Site`) an `Origin` other than this site. `Origin: null` counts
/// as another site: a sandboxed frame on any page sends it. Our own pages
/// send their real origin on a post (their referrer policy is
/// `same-origin`), or `Sec-Fetch-Site: same-origin` beside the `null`.
pub fn is_cross_site(headers: &HeaderMap, public_origin: Option<String>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let origin = origin.trim().to_ascii_lowercase();
    match public_origin {
        Some(expected) => origin != expected,
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_ascii_lowercase);
            let authority = origin.split_once("://").map(|(_, a)| a);
            host.is_none() || authority != host.as_deref()
        }
    }
}

/// The answer to a multipart `POST /forms/{form}` (streamed by
/// `http/upload.rs`): the receipt page; the form again, with the text
/// fields in `kept` (what was read of them) for a mistake or a refusal, as
/// the urlencoded path does (a chosen file cannot be put back: the page
/// asks for it again); or a page in the reader's language saying that
/// nothing was stored.
pub fn upload_response(
    state: &AppState,
    form_index: usize,
    client: Option<ClientKey>,
    headers: &HeaderMap,
    query: Option<&str>,
    outcome: Result<Receipt, Failed>,
    kept: Vec<(String, RawValue)>,
) -> Response {
    let form = &state.intake().config.forms[form_index];
    let path = format!("/forms/{}", form.id);
    let page = Page::negotiate(headers, query, &path);
    match outcome {
        Ok(receipt) => form_response(
            form,
            StatusCode::OK,
            render_receipt(page, form, &receipt.to_string()),
        ),
        Err(Failed::Invalid(r)) if !r.is_malformed() => {
            let echo = Echo::of(form, &kept);
            let html = render_form(page, state, form, &echo, &[r], None);
            drop(echo);
            form_response(form, StatusCode::UNPROCESSABLE_ENTITY, html)
        }
        Err(Failed::Refused(refused)) => refused.into_response(false),
        Err(failed) => {
            let e = HttpError::from(failed);
            match refusal_of(e.code) {
                Some(why) => {
                    let echo = Echo::after_refusal(form, why, &kept);
                    let res = refused_form(state, client, page, form, &echo, why, e.status);
                    drop(echo);
                    res
                }
                None => FormPageError::new(page, Some(form), e).into_response(),
            }
        }
    }
}

/// The refusals an upload can meet, by the code its error carries.
const REFUSALS: [(&str, Msg); 7] = [
    ("refused:cross-site", Msg::RefusedCrossSite),
    ("refused:honeypot", Msg::RefusedHoneypot),
    ("refused:token-invalid", Msg::RefusedTokenInvalid),
    ("refused:token-expired", Msg::RefusedTokenExpired),
    ("refused:token-replayed", Msg::RefusedTokenReplayed),
    ("refused:too-fast", Msg::RefusedTooFast),
    ("refused:busy", Msg::RefusedBusy),
];

/// The error code of a refusal (see [`gate_form_post`]).
pub fn refusal_code(why: Msg) -> &'static str {
    REFUSALS
        .iter()
        .find(|(_, m)| *m == why)
        .map_or("refused", |(c, _)| c)
}

fn refusal_of(code: &str) -> Option<Msg> {
    REFUSALS.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}

/// The 404 page for a form that does not exist, in the reader's language.
pub fn unknown_form_response(headers: &HeaderMap, query: Option<&str>) -> Response {
    let page = Page::negotiate(headers, query, "/");
    FormPageError::new(page, None, HttpError::unknown_form()).into_response()
}

/// `GET /keys`
pub async fn keys(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Html<String> {
    let page = Page::negotiate(&headers, query.as_deref(), "/keys");
    let certs = state.intake().keyring.certs();
    Html(layout(
        page,
        page.t(Msg::KeysTitle),
        html! {
            h1 { (page.t(Msg::KeysTitle)) }
            p { (page.t(Msg::KeysIntro)) }
            ul {
                @for c in certs {
                    @let fpr = c.fingerprint().to_hex();
                    li {
                        (c.display_name()) br;
                        a href={ "/keys/" (fpr) ".asc" } { code { (spaced(&fpr)) } }
                    }
                }
            }
        },
    ))
}

/// `GET /keys/{fingerprint}.asc`
pub async fn key_file(
    State(state): State<AppState>,
    Segment(file): Segment,
) -> Result<Response, PageError> {
    let not_found = || HttpError::new(StatusCode::NOT_FOUND, "unknown_key", "there is no such key");
    let fpr = file.strip_suffix(".asc").ok_or_else(not_found)?;
    let cert = state.intake().keyring.cert(fpr).ok_or_else(not_found)?;
    Ok((
        [(header::CONTENT_TYPE, "application/pgp-keys")],
        cert.armored.clone(),
    )
        .into_response())
}

/// `GET /static/style.css`
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        PreEscaped(STYLESHEET).0,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (request headers, configured public origin, refused as cross-site)
    type Case = (
        &'static [(&'static str, &'static str)],
        Option<String>,
        bool,
    );

    #[test]
    fn cross_site_posts_are_told_from_same_site_ones() {
        let public = || Some("https://tips.example.org".to_owned());
        let cases: [Case; 12] = [
            (&[], None, false),
            (&[("sec-fetch-site", "same-origin")], None, false),
            (&[("sec-fetch-site", "none")], None, false),
            (&[("sec-fetch-site", "same-site")], None, true),
            (
                &[("sec-fetch-site", "cross-site"), ("origin", "null")],
                None,
                true,
            ),
            // A sandboxed frame, or an older browser on another site's
            // no-referrer page.
            (&[("origin", "null")], public(), true),
            (&[("origin", "null")], None, true),
            (
                &[("origin", "null"), ("sec-fetch-site", "same-origin")],
                public(),
                false,
            ),
            (&[("origin", "https://tips.example.org")], public(), false),
            (&[("origin", "https://evil.example")], public(), true),
            (
                &[("origin", "http://a.test:8080"), ("host", "a.test:8080")],
                None,
                false,
            ),
            (
                &[("origin", "http://evil.test"), ("host", "a.test:8080")],
                None,
                true,
            ),
        ];
        for (headers, public_origin, cross) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, v.parse().expect("value"));
            }
            assert_eq!(is_cross_site(&map, public_origin), cross, "{headers:?}");
        }
    }
}
