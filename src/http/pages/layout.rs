//! What every page shares: the reader's language ([`Page`]), the frame
//! around a page's body ([`layout`]), the headers of a form route's page
//! ([`form_response`]), the error pages and the small formatters of sizes
//! and fingerprints.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::config::FormConfig;
use crate::http::secret_body;
use crate::i18n::{Catalogue, Lang, Msg, catalogue, negotiate};

/// What every page needs to speak the reader's language.
#[derive(Clone, Copy)]
pub struct Page<'a> {
    /// The reader's language.
    pub lang: Lang,
    /// The page texts.
    pub cat: &'a Catalogue,
    /// The path of this page, for the language switcher's links.
    pub path: &'a str,
}

impl<'a> Page<'a> {
    /// A page at `path` in `lang`.
    pub fn new(lang: Lang, path: &'a str) -> Page<'a> {
        Page {
            lang,
            cat: catalogue(),
            path,
        }
    }

    /// The language from `?lang=` or `Accept-Language`.
    pub fn negotiate(headers: &HeaderMap, query: Option<&str>, path: &'a str) -> Page<'a> {
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        Page::new(negotiate(query, accept), path)
    }

    /// `msg` in the page's language.
    pub fn t(&self, msg: Msg) -> &'a str {
        self.cat.text(self.lang, msg)
    }

    /// The page's language code (`en`, `de`, ...).
    pub fn code(&self) -> &'static str {
        self.lang.code()
    }
}

/// A whole page: `body` under the site's header and language switcher.
pub fn layout(page: Page<'_>, title: &str, body: Markup) -> String {
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

/// The page of a form route that failed with `status`, in the reader's
/// language and framed like its form (when the form exists). It says what
/// happened and that nothing was stored; it never echoes what was sent.
pub fn not_sent(page: Page<'_>, form: Option<&FormConfig>, status: StatusCode) -> Response {
    let (title, message) = match status {
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
    match form {
        Some(form) => form_response(form, status, html),
        None => (status, Html(html)).into_response(),
    }
}

/// A response from a form route: `no-store`, and the form's own
/// `frame-ancestors` (the global header says `'none'`).
pub fn form_response(form: &FormConfig, status: StatusCode, html: String) -> Response {
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors {}; base-uri 'none'",
        form.frame_ancestors_csp()
    );
    // A confirmation page may carry a reply code.
    let mut res = secret_body::html(status, html);
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

/// A byte count for people: `2 GiB`, `300 MiB`, `512 KiB`, `12 bytes`.
pub fn human_bytes(n: u64) -> String {
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
pub fn spaced(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
