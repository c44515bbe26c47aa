//! The configuration file: server settings and form schemas.
//!
//! It owns parsing (`serde`, unknown keys refused) and full validation at load
//! time, with errors that name the file, the key and the fix. Each table has
//! its module, which declares it and checks it: `server` (`[server]`),
//! `forms` (`[[forms]]` and their fields), `abuse` (`[limits]` and
//! `[abuse]`), `staff` (`[staff]`), `retention` (`[retention]`), `replies`
//! (`[replies]`), `store` (`[store]`), `notify` (`[notify]`, the daily digest).
//! [`Config::parse`] gathers the problems of every table and refuses the
//! file with all of them at once. The result is loaded once and passed in;
//! nothing here is global. It never touches keys or submissions: recipient
//! fingerprints are checked against the keyring by [`crate::keys`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod abuse;
mod forms;
mod notify;
mod replies;
mod retention;
mod server;
mod staff;
mod store;

pub use abuse::{AbuseConfig, LimitsConfig, Rate};
pub use forms::{
    FieldConfig, FieldKind, FieldTranslation, FormConfig, FormTranslation, MAX_FIELD_LEN,
    MAX_FILENAME_LEN, MAX_FILES_LIMIT,
};
pub use notify::{NotifyConfig, ReaderConfig, Relay, RelayTls};
pub use replies::{MAX_ANSWER_BYTES_LIMIT, RepliesConfig};
pub use retention::RetentionConfig;
pub use server::{MAX_BODY_LIMIT, ServerConfig};
pub use staff::{StaffConfig, StaffPlacement};
pub use store::{SslMode, StoreBackend, StoreConfig};

/// Default path of the configuration file when neither `--config` nor
/// `$SEALFORM_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";

/// Everything `config.toml` says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening address, storage and key locations.
    pub server: ServerConfig,
    /// The forms this server accepts, in the order they are listed.
    #[serde(default)]
    pub forms: Vec<FormConfig>,
    /// Rate limits, timeouts and connection bounds (`[limits]`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Form tokens, origin checks and process hardening (`[abuse]`).
    #[serde(default)]
    pub abuse: AbuseConfig,
    /// The token-authenticated staff API.
    #[serde(default)]
    pub staff: StaffConfig,
    /// How long records are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Answers to tipsters (`[replies]`).
    #[serde(default)]
    pub replies: RepliesConfig,
    /// Which backend keeps the records (`[store]`).
    #[serde(default)]
    pub store: StoreConfig,
    /// The daily digest to staff (`[notify]`), when set.
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
    /// Where the file was read from (set by [`Config::load`]).
    #[serde(skip)]
    pub path: PathBuf,
}

/// Chinese, Japanese or Korean is 3 bytes of UTF-8, each sent as `%XX` in an
/// urlencoded post.
const URLENCODED_BYTES_PER_CHAR: usize = 9;

/// Room for the rest of an urlencoded post: the form token, the honeypot,
/// the separators.
const URLENCODED_OVERHEAD: usize = 1024;

impl Config {
    /// What is allowed but probably not meant, for `check` and `serve` to
    /// show: a form whose fields, filled to their `max_len` in a script
    /// such as Chinese, make a post larger than `server.max_body_bytes`, so
    /// that a person who stays within every field's limit is refused as
    /// too large; staff tokens for a staff API served nowhere; `behind_tor`
    /// without the PROXY protocol (no per-client limits).
    pub fn warnings(&self) -> Vec<String> {
        let limit = self.server.max_body_bytes;
        let staff = (self.staff.placement() == StaffPlacement::Nowhere
            && !self.staff.tokens.is_empty())
        .then(|| {
            "staff.tokens are set but the staff API is served nowhere: set staff.listen (its own \
             address) or staff.on_public_listener = true (next to the forms)"
                .to_owned()
        });
        let tor = (self.limits.behind_tor && !self.limits.proxy_protocol).then(|| {
            "limits.behind_tor without limits.proxy_protocol: every Tor circuit looks like the \
             same client, so the per-client rate limits and max_inflight_per_client are off and \
             one circuit can use up the per-form and global budgets and the submission slots. \
             Add `HiddenServiceExportCircuitID haproxy` to the onion service in torrc and set \
             proxy_protocol = true"
                .to_owned()
        });
        let forms = self
            .forms
            .iter()
            .filter(|f| !f.takes_files())
            .filter_map(|form| {
                let (chars, worst) = form.fields.iter().fold(
                    (0usize, URLENCODED_OVERHEAD),
                    |(chars, bytes), f| {
                        let n = f.max_len();
                        (
                            chars + n,
                            bytes + f.name.len() + 2 + n * URLENCODED_BYTES_PER_CHAR,
                        )
                    },
                );
                (worst > limit).then(|| {
                    let fix = if worst <= MAX_BODY_LIMIT {
                        format!("Raise server.max_body_bytes to {worst} or lower the fields' max_len")
                    } else {
                        format!(
                            "Lower the fields' max_len (server.max_body_bytes cannot go above \
                             {MAX_BODY_LIMIT})"
                        )
                    };
                    format!(
                        "form {:?}: its fields allow {chars} characters in all; typed in Chinese, \
                         Japanese or Korean that is up to {worst} bytes as a browser sends it, more \
                         than server.max_body_bytes ({limit}), and such a post would be refused as \
                         too large. {fix}",
                        form.id
                    )
                })
            });
        forms.chain(staff).chain(tor).collect()
    }

    /// Reads, parses and validates the file at `path`; relative directories in
    /// it are resolved against the file's own directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.server.data_dir = base.join(&config.server.data_dir);
        config.server.keys_dir = base.join(&config.server.keys_dir);
        config.store.resolve_paths(base);
        if let Some(notify) = &mut config.notify {
            notify.resolve_paths(base);
        }
        if let Some(secret) = &mut config.abuse.form_token_secret_file {
            *secret = base.join(&*secret);
        }
        Ok(config)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    /// A file with one problem is refused with [`ConfigError::Invalid`],
    /// one with more with [`ConfigError::Problems`], naming every one.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.path = path.to_owned();
        let mut problems = config.validate();
        match problems.len() {
            0 => Ok(config),
            1 => {
                let Problem { key, problem } = problems.remove(0);
                Err(ConfigError::Invalid {
                    path: config.path,
                    key,
                    problem,
                })
            }
            _ => Err(ConfigError::Problems {
                path: config.path,
                problems,
            }),
        }
    }

    /// Every problem of every table, table by table in the order of the
    /// example config. A problem that makes others meaningless (no form
    /// at all) stops its own table's checks only.
    fn validate(&self) -> Vec<Problem> {
        let mut problems = self.server.validate();
        problems.extend(self.retention.validate());
        problems.extend(self.replies.validate());
        problems.extend(self.store.validate(self.server.max_concurrent_uploads));
        problems.extend(abuse::validate(&self.limits, &self.abuse));
        problems.extend(self.staff.validate(&self.forms));
        problems.extend(forms::validate(&self.forms));
        problems.extend(self.notify.iter().flat_map(NotifyConfig::validate));
        problems
    }

    /// Whether the index keeps each record's form: when a staff token is
    /// limited to some forms, and when the digest counts records per form
    /// (`[notify]`). See `Intake::indexing` in `src/intake/record.rs`.
    pub fn indexes_form(&self) -> bool {
        self.staff.scopes_by_form() || self.notify.is_some()
    }

    /// Whether records take room in `data_dir` (the embedded store), so
    /// that uploads watch its free space (`server.min_free_bytes`); with
    /// PostgreSQL the records go to the database, and the database server
    /// watches its own disk.
    pub fn stores_in_data_dir(&self) -> bool {
        self.store.backend == StoreBackend::Fs
    }

    /// The form with this id.
    pub fn form(&self, id: &str) -> Option<&FormConfig> {
        self.form_index(id).map(|i| &self.forms[i])
    }

    /// The position of the form with this id in [`Config::forms`].
    pub fn form_index(&self, id: &str) -> Option<usize> {
        self.forms.iter().position(|f| f.id == id)
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown keys included).
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{}: `{key}` {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The dotted key, e.g. `forms[1].fields[0].max_len`.
        key: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// Several values are out of range or inconsistent: each on its own
    /// line, as [`ConfigError::Invalid`] shows one.
    #[error("{}", lines(path, problems))]
    Problems {
        /// The file.
        path: PathBuf,
        /// Every problem found, table by table.
        problems: Vec<Problem>,
    },
}

/// `file: `key` problem`, a line per problem.
fn lines(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.line(path))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// What to show, a line per problem: [`ConfigError::Problems`] gives
    /// one per problem, every other error one.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Problems { path, problems } => {
                problems.iter().map(|p| p.line(path)).collect()
            }
            e => vec![e.to_string()],
        }
    }
}

/// One thing wrong in the file: the dotted key and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key, e.g. `forms[1].fields[0].max_len`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl Problem {
    /// `file: `key` problem`, as [`ConfigError::Invalid`] shows it.
    fn line(&self, path: &Path) -> String {
        format!("{}: `{}` {}", path.display(), self.key, self.problem)
    }

    fn new(key: impl Into<String>, problem: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::server::default_listen;
    use super::*;

    /// One form with one field: the smallest valid config.
    pub(crate) const MINIMAL: &str = r#"
[server]
data_dir = "data"
keys_dir = "keys"

[[forms]]
id = "tip"
title = "Send a tip"

[[forms.fields]]
name = "message"
label = "Message"
kind = "textarea"
required = true
"#;

    /// Parses `text` as `test.toml`.
    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn a_minimal_config_parses_with_defaults() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.server.listen, default_listen());
        assert_eq!(c.forms[0].fields[0].max_len(), 20_000);
        assert!(c.server.gnupg_compat);
    }

    #[test]
    fn a_form_whose_fields_cannot_fit_the_body_limit_is_a_warning() {
        assert_eq!(
            parse(MINIMAL).expect("valid").warnings(),
            Vec::<String>::new()
        );
        let long = MINIMAL.replace("required = true", "required = true\nmax_len = 100000");
        let w = parse(&long).expect("valid, with a warning").warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("form \"tip\": its fields allow 100000 characters"),
            "{w:?}"
        );
        assert!(w[0].contains("up to 901033 bytes"), "{w:?}");
        assert!(w[0].contains("max_body_bytes (262144)"), "{w:?}");
        // Raised to what it says, the warning goes.
        let raised = long.replace("[server]", "[server]\nmax_body_bytes = 901033");
        assert!(parse(&raised).expect("valid").warnings().is_empty());
        assert!(
            w[0].ends_with("Raise server.max_body_bytes to 901033 or lower the fields' max_len")
        );
        // Beyond what max_body_bytes may be, only max_len can give.
        let longer: String = (0..8).fold(MINIMAL.to_owned(), |text, i| {
            format!("{text}\n[[forms.fields]]\nname = \"f{i}\"\nlabel = \"F\"\nkind = \"textarea\"\nmax_len = 1000000\n")
        });
        let w = parse(&longer).expect("valid, with a warning").warnings();
        assert!(
            w[0].ends_with(
                "Lower the fields' max_len (server.max_body_bytes cannot go above 67108864)"
            ),
            "{w:?}"
        );
        // A form with files is posted as multipart, under the upload limits.
        let files =
            format!("{long}\n[[forms.fields]]\nname = \"doc\"\nlabel = \"Doc\"\nkind = \"file\"\n");
        assert!(parse(&files).expect("valid").warnings().is_empty());
    }

    #[test]
    fn file_fields_and_upload_limits_parse_with_newsroom_defaults() {
        let text = MINIMAL.replace(
            "required = true",
            "required = true\n[[forms.fields]]\nname = \"docs\"\nlabel = \"Documents\"\nkind = \"file\"\nmultiple = true",
        );
        let c = parse(&text).expect("valid");
        let form = &c.forms[0];
        assert!(form.takes_files());
        assert_eq!(form.fields[1].kind, FieldKind::File);
        assert!(form.fields[1].multiple);
        assert_eq!(form.max_total_bytes, 2 << 30);
        assert_eq!(form.max_file_bytes, 2 << 30);
        assert_eq!(form.max_files, 20);
        assert_eq!(c.server.upload_timeout_secs, 3600);
        assert_eq!(c.server.upload_min_bytes_per_sec, 16 * 1024);
        assert_eq!(c.server.max_uploads_per_client, 2);
        assert!(!parse(MINIMAL).expect("valid").forms[0].takes_files());
    }

    #[test]
    fn the_example_config_documents_valid_keys() {
        let c = parse(include_str!("../config.example.toml")).expect("example parses");
        assert!(c.forms.iter().any(FormConfig::takes_files));
    }

    #[test]
    fn an_unknown_key_is_named_with_the_file() {
        let text = MINIMAL.replace("[server]", "[server]\nlisten_port = 1");
        let e = parse(&text).expect_err("unknown key").to_string();
        assert!(e.contains("test.toml") && e.contains("listen_port"), "{e}");
    }

    #[test]
    fn invalid_schemas_are_refused_naming_the_key() {
        let cases = [
            (
                MINIMAL.replace("id = \"tip\"", "id = \"Tip!\""),
                "forms[0].id",
            ),
            (
                MINIMAL.replace("name = \"message\"", "name = \"\""),
                "forms[0].fields[0].name",
            ),
            (
                MINIMAL.replace("required = true", "required = true\nmax_len = 0"),
                "forms[0].fields[0].max_len",
            ),
            (
                MINIMAL.replace("required = true", "required = true\noptions = [\"a\"]"),
                "forms[0].fields[0].options",
            ),
            (
                MINIMAL.replace("kind = \"textarea\"", "kind = \"select\""),
                "forms[0].fields[0].options",
            ),
            (
                MINIMAL.replace("required = true", "required = true\nmultiple = true"),
                "forms[0].fields[0].multiple",
            ),
            (
                MINIMAL.replace("kind = \"textarea\"", "kind = \"file\"\nmax_len = 10"),
                "forms[0].fields[0].max_len",
            ),
            (
                MINIMAL.replace(
                    "title = \"Send a tip\"",
                    "title = \"Send a tip\"\nmax_files = 0",
                ),
                "forms[0].max_files",
            ),
            (
                MINIMAL.replace(
                    "title = \"Send a tip\"",
                    "title = \"Send a tip\"\nmax_files = 1001",
                ),
                "forms[0].max_files",
            ),
            (
                MINIMAL.replace("[server]", "[server]\nupload_timeout_secs = 0"),
                "server.upload_timeout_secs",
            ),
            (
                MINIMAL.replace(
                    "[server]",
                    "[server]\nupload_timeout_secs = 9223372036854775807",
                ),
                "server.upload_timeout_secs",
            ),
            (
                MINIMAL.replace("[server]", "[server]\nmax_body_bytes = 1073741824"),
                "server.max_body_bytes",
            ),
            (
                format!(
                    "{MINIMAL}\n[limits]\nform_each = {{ burst = 400000000, per_minute = 1 }}\n"
                ),
                "limits.form_each",
            ),
            (
                format!("{MINIMAL}\n[retention]\nunacked_days = 0\n"),
                "retention.unacked_days",
            ),
            (
                MINIMAL.replace("[server]", "[server]\nmax_concurrent_seals = 0"),
                "server.max_concurrent_seals",
            ),
            (
                MINIMAL.replace("[server]", "[server]\nmax_concurrent_seals = 1025"),
                "server.max_concurrent_seals",
            ),
            (
                format!(
                    "{MINIMAL}\n[[forms]]\nid = \"tip\"\ntitle = \"x\"\n[[forms.fields]]\nname = \"a\"\nlabel = \"A\"\nkind = \"text\"\n"
                ),
                "forms[1].id",
            ),
            (
                format!("{MINIMAL}\n[forms.fields.i18n.fr]\nlabel = \"Message\"\n"),
                "forms[0].fields[0].i18n.fr",
            ),
            (
                format!("{MINIMAL}\n[forms.fields.i18n.en]\nlabel = \"Message\"\n"),
                "forms[0].fields[0].i18n.en",
            ),
            (
                format!("{MINIMAL}\n[forms.fields.i18n.es]\noptions = [\"a\"]\n"),
                "forms[0].fields[0].i18n.es.options",
            ),
            (
                MINIMAL.replace(
                    "title = \"Send a tip\"",
                    "title = \"Send a tip\"\n[forms.i18n.ES]\ntitle = \"x\"",
                ),
                "forms[0].i18n.ES",
            ),
            (
                MINIMAL.replace(
                    "title = \"Send a tip\"",
                    "title = \"Send a tip\"\nframe_ancestors = [\"https://a.org; script-src *\"]",
                ),
                "forms[0].frame_ancestors[0]",
            ),
            (
                MINIMAL.replace(
                    "title = \"Send a tip\"",
                    "title = \"Send a tip\"\nframe_ancestors = [\"*\"]",
                ),
                "forms[0].frame_ancestors[0]",
            ),
        ];
        for (text, key) in cases {
            let e = parse(&text).expect_err(key).to_string();
            assert!(e.contains(key), "expected {key} in {e}");
        }
    }

    #[test]
    fn the_example_config_parses_with_its_translations() {
        let c = parse(include_str!("../config.example.toml")).expect("example is valid");
        let form = &c.forms[0];
        assert_eq!(form.title_in("es"), "Solicite formación para su agencia");
        assert_eq!(
            form.fields[3].option_text_in("es", 0),
            "Respuesta táctica (SWAT)"
        );
        assert_eq!(
            form.fields[3].option_text_in("en", 0),
            "Tactical response (SWAT)"
        );
        assert_eq!(form.fields[1].label_in("es"), "Your name and role");
    }

    #[test]
    fn an_unknown_key_in_a_translation_table_is_refused() {
        let text = format!("{MINIMAL}\n[forms.fields.i18n.es]\nlable = \"Mensaje\"\n");
        let e = parse(&text).expect_err("typo").to_string();
        assert!(e.contains("lable"), "{e}");
    }

    #[test]
    fn translations_fall_back_to_the_base_text_piece_by_piece() {
        let text = MINIMAL.replace(
            "title = \"Send a tip\"",
            "title = \"Send a tip\"\nframe_ancestors = [\"https://news.example.org\", \"'self'\"]\n[forms.i18n.es]\ntitle = \"Envíe una pista\"",
        ) + "hint = \"Be brief\"\n[forms.fields.i18n.es]\nlabel = \"Mensaje\"\n";
        let c = parse(&text).expect("valid");
        let (form, field) = (&c.forms[0], &c.forms[0].fields[0]);
        assert_eq!(form.title_in("es"), "Envíe una pista");
        assert_eq!(form.title_in("en"), "Send a tip");
        assert_eq!(form.description_in("es"), "");
        assert_eq!(field.label_in("es"), "Mensaje");
        assert_eq!(field.hint_in("es"), Some("Be brief"));
        assert_eq!(
            form.frame_ancestors_csp(),
            "https://news.example.org 'self'"
        );
        assert_eq!(
            parse(MINIMAL).expect("valid").forms[0].frame_ancestors_csp(),
            "'none'"
        );
    }
}
