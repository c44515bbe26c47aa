//! Page languages: the shipped message catalogues (`i18n/<lang>.toml`) and
//! the choice of a language for a request.
//!
//! Every piece of page text comes from a catalogue, looked up by a [`Msg`]
//! key. English is the base: a message missing from another language is
//! shown in English, never as its key (a test proves English has every key).
//! Form titles, labels and hints are translated in the config instead (see
//! [`crate::config::FormConfig::i18n`]).
//!
//! The catalogue format is a flat TOML table (`key = "text"`, `{name}`
//! placeholders) rather than Fluent: the pages need no plural or gender
//! rules, TOML is already a dependency, and a translator edits one plain file.
//!
//! This module never sees a submitted value; it only reads the
//! `Accept-Language` header and the `lang` query parameter, and logs nothing.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::LazyLock;

/// A language the pages are shipped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English, the base language.
    En,
    /// Spanish.
    Es,
}

impl Lang {
    /// Every shipped language, in the switcher's order.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Es];

    /// The BCP 47 primary tag (`en`, `es`): the `lang` attribute, the
    /// `?lang=` value and the config's `i18n.<code>` table name.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }

    /// The language with this code (case-insensitive).
    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(code))
    }

    fn source(self) -> &'static str {
        match self {
            Lang::En => include_str!("../i18n/en.toml"),
            Lang::Es => include_str!("../i18n/es.toml"),
        }
    }
}

/// The language for a request: a valid `lang` query parameter (the
/// switcher's links) wins, then the best `Accept-Language` match, then
/// English.
pub fn negotiate(query: Option<&str>, accept_language: Option<&str>) -> Lang {
    query
        .and_then(lang_from_query)
        .or_else(|| accept_language.and_then(best_accepted))
        .unwrap_or(Lang::En)
}

fn lang_from_query(query: &str) -> Option<Lang> {
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("lang="))
        .find_map(Lang::from_code)
}

/// The shipped language with the highest `q` in an `Accept-Language` value;
/// on a tie the one listed first. `q=0` means "not this one".
fn best_accepted(header: &str) -> Option<Lang> {
    let mut best: Option<(Lang, f32)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let primary = tag.split('-').next().unwrap_or("");
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok());
        let (Some(lang), Some(q)) = (Lang::from_code(primary), q) else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map(|(l, _)| l)
}

macro_rules! messages {
    ($($variant:ident = $key:literal,)*) => {
        /// A message of the page catalogues.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Msg {
            $(
                #[doc = concat!("`", $key, "`")]
                $variant,
            )*
        }

        impl Msg {
            /// Every message, so a test can check the base catalogue.
            pub const ALL: &[Msg] = &[$(Msg::$variant,)*];

            /// The key in the catalogue files.
            pub fn key(self) -> &'static str {
                match self {
                    $(Msg::$variant => $key,)*
                }
            }
        }
    };
}

messages! {
    LanguageName = "language-name",
    SiteName = "site-name",
    SwitcherLabel = "switcher-label",
    FormsTitle = "forms-title",
    FormsIntro = "forms-intro",
    KeysLink = "keys-link",
    KeysTitle = "keys-title",
    KeysIntro = "keys-intro",
    BackToForms = "back-to-forms",
    RepliesLink = "replies-link",
    RepliesTitle = "replies-title",
    RepliesIntro = "replies-intro",
    RepliesCodeLabel = "replies-code-label",
    RepliesCodeHint = "replies-code-hint",
    RepliesRead = "replies-read",
    RepliesErrWords = "replies-err-words",
    RepliesErrChecksum = "replies-err-checksum",
    RepliesNothing = "replies-nothing",
    RepliesStatus = "replies-status",
    StatusReceived = "status-received",
    StatusInProgress = "status-in-progress",
    StatusAnswered = "status-answered",
    StatusClosed = "status-closed",
    RepliesAnswerOf = "replies-answer-of",
    RepliesKeepPrivate = "replies-keep-private",
    FollowUpTitle = "follow-up-title",
    FollowUpIntro = "follow-up-intro",
    FollowUpLabel = "follow-up-label",
    FollowUpSend = "follow-up-send",
    FollowUpNotYet = "follow-up-not-yet",
    FollowUpClosed = "follow-up-closed",
    FollowUpSentTitle = "follow-up-sent-title",
    FollowUpReceipt = "follow-up-receipt",
    DeleteTitle = "delete-title",
    DeleteWarning = "delete-warning",
    DeleteAsk = "delete-ask",
    DeleteConfirmTitle = "delete-confirm-title",
    DeleteConfirm = "delete-confirm",
    DeletedTitle = "deleted-title",
    Deleted = "deleted",
    RepliesAgain = "replies-again",
    Required = "required-marker",
    Limit = "limit",
    FileLimits = "file-limits",
    FileNote = "file-note",
    Choose = "choose",
    Submit = "submit",
    SafetyTitle = "safety-title",
    SafetyEncrypted = "safety-encrypted",
    SafetyNoCopy = "safety-no-copy",
    SafetyReceipt = "safety-receipt",
    RecipientsTitle = "recipients-title",
    RecipientsIntro = "recipients-intro",
    Fingerprint = "fingerprint",
    ErrorsTitle = "errors-title",
    ErrorsIntro = "errors-intro",
    ErrorPrefix = "error-prefix",
    ErrMissing = "err-missing",
    ErrMissingCheckbox = "err-missing-checkbox",
    ErrTooLong = "err-too-long",
    ErrOption = "err-option",
    ErrEmail = "err-email",
    ErrCharacters = "err-characters",
    ErrWrongType = "err-wrong-type",
    ErrUnknownField = "err-unknown-field",
    SentTitle = "sent-title",
    SentIntro = "sent-intro",
    SentSave = "sent-save",
    SentAdvice = "sent-advice",
    ReplyCodeTitle = "reply-code-title",
    ReplyCodeIntro = "reply-code-intro",
    ReplyCodeAdvice = "reply-code-advice",
    ReplyCodeWhere = "reply-code-where",
    PageNotFoundTitle = "page-not-found-title",
    UnknownForm = "unknown-form",
    NotSentTitle = "not-sent-title",
    NotSentTooLarge = "not-sent-too-large",
    NotSentUnavailable = "not-sent-unavailable",
    NotSentFailed = "not-sent-failed",
    NotSentUnreadable = "not-sent-unreadable",
    HoneypotLabel = "honeypot-label",
    RefusedTitle = "refused-title",
    RefusedAgain = "refused-again",
    RefusedKept = "refused-kept",
    FilesAgain = "files-again",
    RefusedCrossSite = "refused-cross-site",
    RefusedHoneypot = "refused-honeypot",
    RefusedTokenInvalid = "refused-token-invalid",
    RefusedTokenExpired = "refused-token-expired",
    RefusedTokenReplayed = "refused-token-replayed",
    RefusedTooFast = "refused-too-fast",
    RefusedBusy = "refused-busy",
}

/// The page text of every shipped language.
pub struct Catalogue {
    base: HashMap<String, String>,
    translations: HashMap<Lang, HashMap<String, String>>,
}

/// The catalogues compiled into the binary. Parsed on first use; a unit test
/// proves they parse and that English has every key.
static BUILTIN: LazyLock<Catalogue> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // the shipped files are checked by a unit test
    Catalogue::from_sources(Lang::ALL.iter().map(|&l| (l, l.source())))
        .expect("the shipped catalogues are valid (tested)")
});

/// The shipped catalogues.
pub fn catalogue() -> &'static Catalogue {
    &BUILTIN
}

impl Catalogue {
    /// Builds a catalogue from `(language, TOML text)` pairs. English must be
    /// among them and must have every [`Msg`]; other languages may lack some
    /// (those fall back to English) but may not have unknown keys.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (Lang, &'a str)>,
    ) -> Result<Catalogue, CatalogueError> {
        let mut base = None;
        let mut translations = HashMap::new();
        for (lang, text) in sources {
            let table: HashMap<String, String> =
                toml::from_str(text).map_err(|e| CatalogueError::Syntax {
                    lang: lang.code(),
                    message: e.to_string(),
                })?;
            if let Some(key) = table
                .keys()
                .find(|k| !Msg::ALL.iter().any(|m| m.key() == k.as_str()))
            {
                return Err(CatalogueError::UnknownKey {
                    lang: lang.code(),
                    key: key.clone(),
                });
            }
            if lang == Lang::En {
                if let Some(m) = Msg::ALL.iter().find(|m| !table.contains_key(m.key())) {
                    return Err(CatalogueError::MissingBaseKey { key: m.key() });
                }
                base = Some(table);
            } else {
                translations.insert(lang, table);
            }
        }
        Ok(Catalogue {
            base: base.ok_or(CatalogueError::MissingBaseKey {
                key: Msg::LanguageName.key(),
            })?,
            translations,
        })
    }

    /// The text of `msg` in `lang`, or in English when `lang` lacks it.
    pub fn text(&self, lang: Lang, msg: Msg) -> &str {
        self.translations
            .get(&lang)
            .and_then(|t| t.get(msg.key()))
            .or_else(|| self.base.get(msg.key()))
            .map_or("", String::as_str)
    }

    /// [`Catalogue::text`] with each `{name}` replaced by its value.
    pub fn fill(&self, lang: Lang, msg: Msg, args: &[(&str, &dyn Display)]) -> String {
        let mut out = self.text(lang, msg).to_owned();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), &value.to_string());
        }
        out
    }
}

/// Why a catalogue could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// Not a flat TOML table of strings.
    #[error("i18n/{lang}.toml: {message}")]
    Syntax {
        /// The language code.
        lang: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A key no page uses (a typo, most likely).
    #[error("i18n/{lang}.toml: unknown key `{key}`")]
    UnknownKey {
        /// The language code.
        lang: &'static str,
        /// The key.
        key: String,
    },
    /// English lacks a message, so nothing could be shown for it.
    #[error("i18n/en.toml: missing key `{key}`; English must have every message")]
    MissingBaseKey {
        /// The key.
        key: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogues_parse_and_english_has_every_message() {
        let c = Catalogue::from_sources(Lang::ALL.iter().map(|&l| (l, l.source())))
            .expect("shipped catalogues");
        for m in Msg::ALL {
            assert!(!c.text(Lang::En, *m).is_empty(), "{}", m.key());
        }
        assert_eq!(c.text(Lang::Es, Msg::Submit), "Enviar cifrado");
    }

    #[test]
    fn spanish_translates_every_message() {
        let es: HashMap<String, String> = toml::from_str(Lang::Es.source()).expect("es");
        let missing: Vec<_> = Msg::ALL
            .iter()
            .filter(|m| !es.contains_key(m.key()))
            .collect();
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn a_missing_translation_falls_back_to_english_never_to_the_key() {
        let en = Lang::En.source();
        let c = Catalogue::from_sources([(Lang::En, en), (Lang::Es, "submit = \"Enviar\"\n")])
            .expect("catalogue");
        assert_eq!(c.text(Lang::Es, Msg::Submit), "Enviar");
        assert_eq!(
            c.text(Lang::Es, Msg::SafetyTitle),
            "What happens to your message"
        );
        for m in Msg::ALL {
            assert_ne!(c.text(Lang::Es, *m), m.key(), "a key name was shown");
        }
        assert_eq!(
            c.fill(Lang::Es, Msg::Limit, &[("max", &200)]),
            "Up to 200 characters."
        );
    }

    #[test]
    fn catalogues_with_unknown_keys_or_an_incomplete_base_are_refused() {
        let cases: &[(&[(Lang, &str)], &str)] = &[
            (&[(Lang::En, "submit = \"x\"\n")], "missing key"),
            (
                &[
                    (Lang::En, Lang::En.source()),
                    (Lang::Es, "submitt = \"x\"\n"),
                ],
                "unknown key `submitt`",
            ),
            (&[(Lang::En, "submit = [1]")], "i18n/en.toml"),
            (&[(Lang::Es, Lang::Es.source())], "missing key"),
        ];
        for (sources, want) in cases {
            let e = Catalogue::from_sources(sources.iter().copied())
                .err()
                .unwrap_or_else(|| panic!("accepted: {want}"))
                .to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn the_language_comes_from_the_query_then_accept_language_then_english() {
        let cases: &[(Option<&str>, Option<&str>, Lang)] = &[
            (None, None, Lang::En),
            (None, Some("es"), Lang::Es),
            (None, Some("es-MX,es;q=0.9,en;q=0.8"), Lang::Es),
            (None, Some("en-US,en;q=0.9,es;q=0.8"), Lang::En),
            (None, Some("fr-FR,es;q=0.5"), Lang::Es),
            (None, Some("fr, de"), Lang::En),
            (None, Some("es;q=0, en;q=0.1"), Lang::En),
            (None, Some("de;q=1, es;q=0.3, en;q=0.2"), Lang::Es),
            (None, Some("*"), Lang::En),
            (None, Some(";;;,,q=,es;q=abc"), Lang::En),
            (Some("lang=es"), Some("en"), Lang::Es),
            (Some("lang=en"), Some("es"), Lang::En),
            (Some("x=1&lang=ES"), None, Lang::Es),
            (Some("lang=xx"), Some("es"), Lang::Es),
            (Some("lang="), None, Lang::En),
        ];
        for (query, header, want) in cases {
            assert_eq!(negotiate(*query, *header), *want, "{query:?} {header:?}");
        }
    }
}
