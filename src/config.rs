//! The configuration file: server settings and form schemas.
//!
//! It owns parsing (`serde`, unknown keys refused) and full validation at load
//! time, with errors that name the file, the key and the fix. The result is
//! loaded once and passed in; nothing here is global. It never touches keys or
//! submissions: recipient fingerprints are checked against the keyring by
//! [`crate::keys`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default path of the configuration file when neither `--config` nor
/// `$SEALFORM_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";

/// Largest `max_len` a field may declare, in characters.
pub const MAX_FIELD_LEN: usize = 1_000_000;

/// Everything `config.toml` says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening address, storage and key locations.
    pub server: ServerConfig,
    /// The forms this server accepts, in the order they are listed.
    #[serde(default)]
    pub forms: Vec<FormConfig>,
    /// The token-authenticated staff API.
    #[serde(default)]
    pub staff: StaffConfig,
    /// How long records are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Where the file was read from (set by [`Config::load`]).
    #[serde(skip)]
    pub path: PathBuf,
}

/// The `[server]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the spool and the index; relative paths are resolved
    /// against the directory holding the config file.
    pub data_dir: PathBuf,
    /// Directory of recipient certificates (`*.asc`, `*.pgp`, `*.gpg`);
    /// relative paths are resolved like `data_dir`.
    pub keys_dir: PathBuf,
    /// Largest request body accepted on any route, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Memory the sled index may use for its cache, in bytes.
    #[serde(default = "default_index_cache_bytes")]
    pub index_cache_bytes: u64,
    /// Refuse certificates and message formats GnuPG 2.2 cannot read.
    #[serde(default = "default_true")]
    pub gnupg_compat: bool,
    /// Submissions sealed at the same time; more wait their turn.
    #[serde(default = "default_max_concurrent_seals")]
    pub max_concurrent_seals: usize,
    /// Seconds a client has to send a whole request before it gets 408.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

/// The `[staff]` table: the API staff use to fetch and acknowledge records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffConfig {
    /// Serve the staff API at all (default true; with no token every request
    /// is refused anyway).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Serve the staff API on this address only (e.g. loopback, a VPN
    /// address, or the port an authenticated onion service points to)
    /// instead of next to the public forms.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Accepted tokens, as `sha256:<64 hex>` lines printed by
    /// `sealform token`; the tokens themselves are never stored here.
    #[serde(default)]
    pub tokens: Vec<String>,
}

impl Default for StaffConfig {
    fn default() -> Self {
        StaffConfig {
            enabled: true,
            listen: None,
            tokens: Vec::new(),
        }
    }
}

/// The `[retention]` table. Nothing is deleted unless asked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Delete the index entries of acknowledged records this many days after
    /// they were acknowledged (their files are already gone).
    #[serde(default)]
    pub acked_days: Option<u32>,
    /// Delete records never acknowledged this many days after they arrived.
    /// Off by default: an unread tip is never deleted unless the operator
    /// asks.
    #[serde(default)]
    pub unacked_days: Option<u32>,
}

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
        }
    }

    fn default_max_len(self) -> usize {
        match self {
            FieldKind::Text => 500,
            FieldKind::Textarea => 20_000,
            FieldKind::Email => 254,
            FieldKind::Select => 500,
            FieldKind::Checkbox => 3,
        }
    }
}

impl FieldConfig {
    /// The longest value accepted, in characters.
    pub fn max_len(&self) -> usize {
        self.max_len.unwrap_or_else(|| self.kind.default_max_len())
    }
}

impl Config {
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
        Ok(config)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.path = path.to_owned();
        config.validate()?;
        Ok(config)
    }

    /// The form with this id.
    pub fn form(&self, id: &str) -> Option<&FormConfig> {
        self.forms.iter().find(|f| f.id == id)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid {
            path: self.path.clone(),
            key,
            problem,
        };
        let s = &self.server;
        if s.max_body_bytes < 1024 {
            return Err(invalid(
                "server.max_body_bytes".into(),
                "must be at least 1024".into(),
            ));
        }
        if s.index_cache_bytes < 1 << 20 {
            return Err(invalid(
                "server.index_cache_bytes".into(),
                "must be at least 1048576 (1 MiB)".into(),
            ));
        }
        if s.max_concurrent_seals == 0 {
            return Err(invalid(
                "server.max_concurrent_seals".into(),
                "must be at least 1".into(),
            ));
        }
        if s.request_timeout_secs == 0 {
            return Err(invalid(
                "server.request_timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        for (i, t) in self.staff.tokens.iter().enumerate() {
            if crate::token::TokenHash::parse(t).is_none() {
                return Err(invalid(
                    format!("staff.tokens[{i}]"),
                    "must be \"sha256:<64 hex digits>\" as printed by `sealform token`".into(),
                ));
            }
        }
        if self.forms.is_empty() {
            return Err(invalid(
                "forms".into(),
                "no form is configured; add at least one [[forms]] table".into(),
            ));
        }
        let mut form_ids = HashSet::new();
        for (i, form) in self.forms.iter().enumerate() {
            let at = format!("forms[{i}]");
            if !is_slug(&form.id, '-') {
                return Err(invalid(
                    format!("{at}.id"),
                    format!(
                        "{:?} must be 1-64 lowercase letters, digits or '-'",
                        form.id
                    ),
                ));
            }
            if !form_ids.insert(&form.id) {
                return Err(invalid(
                    format!("{at}.id"),
                    format!("{:?} is used by two forms; ids must be unique", form.id),
                ));
            }
            if form.title.trim().is_empty() {
                return Err(invalid(format!("{at}.title"), "must not be empty".into()));
            }
            if form.fields.is_empty() {
                return Err(invalid(
                    format!("{at}.fields"),
                    "a form needs at least one [[forms.fields]] entry".into(),
                ));
            }
            let mut names = HashSet::new();
            for (j, field) in form.fields.iter().enumerate() {
                let at = format!("{at}.fields[{j}]");
                if !is_slug(&field.name, '_') {
                    return Err(invalid(
                        format!("{at}.name"),
                        format!(
                            "{:?} must be 1-64 lowercase letters, digits, '_' or '-'",
                            field.name
                        ),
                    ));
                }
                if !names.insert(&field.name) {
                    return Err(invalid(
                        format!("{at}.name"),
                        format!("{:?} appears twice in form {:?}", field.name, form.id),
                    ));
                }
                if field.label.trim().is_empty() {
                    return Err(invalid(format!("{at}.label"), "must not be empty".into()));
                }
                if let Some(n) = field.max_len {
                    if n == 0 || n > MAX_FIELD_LEN {
                        return Err(invalid(
                            format!("{at}.max_len"),
                            format!("must be between 1 and {MAX_FIELD_LEN}"),
                        ));
                    }
                }
                match (field.kind, field.options.is_empty()) {
                    (FieldKind::Select, true) => {
                        return Err(invalid(
                            format!("{at}.options"),
                            "a select field needs at least one option".into(),
                        ));
                    }
                    (FieldKind::Select, false) => {
                        let mut seen = HashSet::new();
                        for o in &field.options {
                            if o.trim().is_empty() || !seen.insert(o) {
                                return Err(invalid(
                                    format!("{at}.options"),
                                    "options must be non-empty and distinct".into(),
                                ));
                            }
                            if o.chars().count() > field.max_len() {
                                return Err(invalid(
                                    format!("{at}.options"),
                                    "an option is longer than the field's max_len".into(),
                                ));
                            }
                        }
                    }
                    (_, false) => {
                        return Err(invalid(
                            format!("{at}.options"),
                            format!(
                                "only select fields take options, this is {}",
                                field.kind.as_str()
                            ),
                        ));
                    }
                    (_, true) => {}
                }
            }
        }
        Ok(())
    }
}

fn is_slug(s: &str, extra: char) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == extra)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    256 * 1024
}
fn default_index_cache_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_true() -> bool {
    true
}
fn default_max_concurrent_seals() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}
fn default_request_timeout_secs() -> u64 {
    30
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
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

    fn parse(text: &str) -> Result<Config, ConfigError> {
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
                format!(
                    "{MINIMAL}\n[[forms]]\nid = \"tip\"\ntitle = \"x\"\n[[forms.fields]]\nname = \"a\"\nlabel = \"A\"\nkind = \"text\"\n"
                ),
                "forms[1].id",
            ),
        ];
        for (text, key) in cases {
            let e = parse(&text).expect_err(key).to_string();
            assert!(e.contains(key), "expected {key} in {e}");
        }
    }
}
