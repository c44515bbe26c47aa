//! The configuration file: server settings and form schemas.
//!
//! It owns parsing (`serde`, unknown keys refused) and full validation at load
//! time, with errors that name the file, the key and the fix. The result is
//! loaded once and passed in; nothing here is global. It never touches keys or
//! submissions: recipient fingerprints are checked against the keyring by
//! [`crate::keys`].

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod abuse;

pub use abuse::{AbuseConfig, LimitsConfig, Rate};

/// Default path of the configuration file when neither `--config` nor
/// `$SEALFORM_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";

/// Largest `max_len` a field may declare, in characters.
pub const MAX_FIELD_LEN: usize = 1_000_000;

/// Longest attachment file name accepted, in characters (what common file
/// systems allow).
pub const MAX_FILENAME_LEN: usize = 255;

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
    /// Submissions sealed at the same time: the number of sealing threads
    /// (default: one per CPU core); more wait their turn. Uploads have
    /// their own slots (`max_concurrent_uploads`).
    #[serde(default = "default_max_concurrent_seals")]
    pub max_concurrent_seals: usize,
    /// The longest pause, in seconds, between two pieces of an upload's
    /// (`multipart/form-data`) body before it gets 408. Other bodies have
    /// `limits.body_timeout_secs` for the whole of them.
    #[serde(default = "default_upload_stall_secs")]
    pub upload_stall_secs: u64,
    /// Seconds a client has to send a whole `multipart/form-data` upload
    /// before it gets 408.
    #[serde(default = "default_upload_timeout_secs")]
    pub upload_timeout_secs: u64,
    /// The slowest an upload may arrive on average, in bytes of its fields
    /// and files per second, counted from `upload_stall_secs` after it
    /// started; 408 when it falls behind. It keeps a client that sends a
    /// byte now and then from holding an upload slot for
    /// `upload_timeout_secs`. When every upload slot is taken, the upload
    /// furthest behind this rate (counted from one second after its start)
    /// makes room for a newcomer (408). 0 turns both off.
    #[serde(default = "default_upload_min_bytes_per_sec")]
    pub upload_min_bytes_per_sec: u64,
    /// Free space (bytes) that must remain in `data_dir`: an upload that would
    /// leave less is refused or stopped with 503 and its partial file removed.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    /// Uploads (`multipart/form-data`) in progress at the same time; one more
    /// gets 503. They do not take the sealing slots of small submissions.
    #[serde(default = "default_max_concurrent_uploads")]
    pub max_concurrent_uploads: usize,
    /// Uploads one client (IPv4 address or IPv6 /64) may have in progress
    /// at once; one more gets 429. Not applied behind Tor without the PROXY
    /// protocol (no client is told apart there).
    #[serde(default = "default_max_uploads_per_client")]
    pub max_uploads_per_client: usize,
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
    /// Serve the staff API next to the public forms, on `server.listen`.
    /// Off by default: whoever reaches the forms would reach the staff API
    /// too, so it takes an explicit choice.
    #[serde(default)]
    pub on_public_listener: bool,
    /// Accepted tokens, by the `sha256:<64 hex>` hash `sealform token`
    /// prints (the tokens themselves are never stored here): each a table
    /// `{ hash, can, forms }` saying what it may do and for which forms, or
    /// a bare hash, which may do everything for every form.
    #[serde(default)]
    pub tokens: Vec<crate::staff_token::TokenEntry>,
}

impl StaffConfig {
    /// Whether a token is limited to some forms: only then does the index
    /// keep each record's form (see [`crate::intake::Intake::indexing`]).
    pub fn scopes_by_form(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, crate::staff_token::TokenEntry::Scoped(s) if s.forms.is_some()))
    }
}

impl Default for StaffConfig {
    fn default() -> Self {
        StaffConfig {
            enabled: true,
            listen: None,
            on_public_listener: false,
            tokens: Vec::new(),
        }
    }
}

/// Where the staff API is served, as [`StaffConfig::placement`] decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffPlacement {
    /// `staff.enabled = false`.
    Disabled,
    /// On its own address, `staff.listen`.
    OwnListener(SocketAddr),
    /// Next to the forms (`staff.on_public_listener = true`).
    PublicListener,
    /// Enabled, but neither `staff.listen` nor `staff.on_public_listener`
    /// is set: served nowhere.
    Nowhere,
}

impl StaffPlacement {
    /// Where the staff API is, and which key put it there, in a sentence
    /// (for `check` and the start-up log, which names no address it did not
    /// bind itself).
    pub fn explain(self) -> String {
        match self {
            StaffPlacement::Disabled => "off (staff.enabled = false)".into(),
            StaffPlacement::OwnListener(addr) => {
                format!("on its own address http://{addr}/api/v1/staff/ (staff.listen)")
            }
            StaffPlacement::PublicListener => "next to the forms, on server.listen under \
                 /api/v1/staff/ (staff.on_public_listener = true): whoever reaches the forms \
                 reaches the staff API too"
                .into(),
            StaffPlacement::Nowhere => "not served: neither staff.listen nor \
                 staff.on_public_listener = true is set (set one to fetch records with `sealform pull`)"
                .into(),
        }
    }
}

impl StaffConfig {
    /// Where the staff API is served.
    pub fn placement(&self) -> StaffPlacement {
        match (self.enabled, self.listen, self.on_public_listener) {
            (false, _, _) => StaffPlacement::Disabled,
            (true, Some(addr), _) => StaffPlacement::OwnListener(addr),
            (true, None, true) => StaffPlacement::PublicListener,
            (true, None, false) => StaffPlacement::Nowhere,
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

/// Bytes a browser may send per character of a form field: a character of
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
        self.form_index(id).map(|i| &self.forms[i])
    }

    /// The position of the form with this id in [`Config::forms`].
    pub fn form_index(&self, id: &str) -> Option<usize> {
        self.forms.iter().position(|f| f.id == id)
    }

    /// Each `staff.tokens` entry: a hash that parses and is not listed
    /// twice, at least one action, and forms that exist.
    fn validate_staff_tokens(&self) -> Result<(), ConfigError> {
        use crate::staff_token::{TokenEntry, TokenHash};
        let invalid = |key: String, problem: String| ConfigError::Invalid {
            path: self.path.clone(),
            key,
            problem,
        };
        let mut seen = Vec::new();
        for (i, t) in self.staff.tokens.iter().enumerate() {
            let at = format!("staff.tokens[{i}]");
            let key = match t {
                TokenEntry::Full(_) => at.clone(),
                TokenEntry::Scoped(_) => format!("{at}.hash"),
            };
            let Some(hash) = TokenHash::parse(t.hash()) else {
                return Err(invalid(
                    key,
                    "must be \"sha256:<64 hex digits>\" as printed by `sealform token`".into(),
                ));
            };
            if let Some(j) = seen.iter().position(|h| *h == hash) {
                return Err(invalid(
                    key,
                    format!("the same hash as staff.tokens[{j}]; list each token once"),
                ));
            }
            seen.push(hash);
            let TokenEntry::Scoped(scoped) = t else {
                continue;
            };
            if scoped.can.is_empty() {
                return Err(invalid(
                    format!("{at}.can"),
                    "must name at least one of \"list\", \"download\", \"ack\" (to revoke \
                     the token, remove its entry)"
                        .into(),
                ));
            }
            if let Some(forms) = &scoped.forms {
                if forms.is_empty() {
                    return Err(invalid(
                        format!("{at}.forms"),
                        "must name at least one form id (leave the key out for every form)".into(),
                    ));
                }
                for (k, id) in forms.iter().enumerate() {
                    if self.form(id).is_none() {
                        return Err(invalid(
                            format!("{at}.forms[{k}]"),
                            format!("{id:?} is not the id of a [[forms]] table"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid {
            path: self.path.clone(),
            key,
            problem,
        };
        let s = &self.server;
        if !(1024..=MAX_BODY_LIMIT).contains(&s.max_body_bytes) {
            return Err(invalid(
                "server.max_body_bytes".into(),
                format!(
                    "must be from 1024 to {MAX_BODY_LIMIT} (64 MiB): such a body is held in \
                     memory; files go through file fields, which max_file_bytes bounds"
                ),
            ));
        }
        if s.index_cache_bytes < 1 << 20 {
            return Err(invalid(
                "server.index_cache_bytes".into(),
                "must be at least 1048576 (1 MiB)".into(),
            ));
        }
        if !(1..=MAX_SEALING_THREADS).contains(&s.max_concurrent_seals) {
            return Err(invalid(
                "server.max_concurrent_seals".into(),
                format!("must be from 1 to {MAX_SEALING_THREADS} (one thread each)"),
            ));
        }
        // Bounded so that no deadline or semaphore can overflow.
        const WEEK: u64 = 7 * 86_400;
        let ranges = [
            ("server.upload_stall_secs", s.upload_stall_secs, WEEK),
            ("server.upload_timeout_secs", s.upload_timeout_secs, WEEK),
            (
                "server.max_concurrent_uploads",
                s.max_concurrent_uploads as u64,
                1_000_000,
            ),
            (
                "server.max_uploads_per_client",
                s.max_uploads_per_client as u64,
                1_000_000,
            ),
        ];
        for (key, n, max) in ranges {
            if !(1..=max).contains(&n) {
                return Err(invalid(key.into(), format!("must be from 1 to {max}")));
            }
        }
        if self.retention.unacked_days == Some(0) {
            return Err(invalid(
                "retention.unacked_days".into(),
                "0 would delete unread records at the first midnight after they arrive; leave \
                 the key out to keep unread records, or give the days to keep them (at least 1)"
                    .into(),
            ));
        }
        abuse::validate(&self.limits, &self.abuse)
            .map_err(|(key, problem)| invalid(key.into(), problem))?;
        if self.staff.listen.is_some() && self.staff.on_public_listener {
            return Err(invalid(
                "staff.on_public_listener".into(),
                "the staff API is served either on staff.listen or on the public listener, \
                 not both; remove one of the two keys"
                    .into(),
            ));
        }
        if self.forms.is_empty() {
            return Err(invalid(
                "forms".into(),
                "no form is configured; add at least one [[forms]] table".into(),
            ));
        }
        self.validate_staff_tokens()?;
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
            for lang in form.i18n.keys() {
                check_translation_lang(lang)
                    .map_err(|p| invalid(format!("{at}.i18n.{lang}"), p))?;
            }
            for (k, source) in form.frame_ancestors.iter().enumerate() {
                if !is_frame_source(source) {
                    return Err(invalid(
                        format!("{at}.frame_ancestors[{k}]"),
                        format!(
                            "{source:?} must be 'self' or an origin like \"https://www.example.org\" \
                             (scheme, host, optional port; no path, space, ';' or ',')"
                        ),
                    ));
                }
            }
            if form.fields.is_empty() {
                return Err(invalid(
                    format!("{at}.fields"),
                    "a form needs at least one [[forms.fields]] entry".into(),
                ));
            }
            if form.max_files == 0 || form.max_files > MAX_FILES_LIMIT {
                return Err(invalid(
                    format!("{at}.max_files"),
                    format!("must be between 1 and {MAX_FILES_LIMIT}"),
                ));
            }
            if form.max_file_bytes == 0 || form.max_total_bytes == 0 {
                return Err(invalid(
                    format!("{at}.max_file_bytes"),
                    "max_file_bytes and max_total_bytes must be at least 1".into(),
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
                for (lang, t) in &field.i18n {
                    check_translation_lang(lang)
                        .map_err(|p| invalid(format!("{at}.i18n.{lang}"), p))?;
                    if let Some(o) = &t.options {
                        if o.len() != field.options.len() {
                            return Err(invalid(
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
                    return Err(invalid(
                        format!("{at}.multiple"),
                        format!(
                            "only file fields take `multiple`, this is {}",
                            field.kind.as_str()
                        ),
                    ));
                }
                if field.kind == FieldKind::File && field.max_len.is_some() {
                    return Err(invalid(
                        format!("{at}.max_len"),
                        "a file field has no max_len; use the form's max_file_bytes".into(),
                    ));
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

/// A translation table must name a shipped language other than the base.
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
/// The most sealing threads a config may ask for.
const MAX_SEALING_THREADS: usize = 1024;

fn default_max_concurrent_seals() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}
fn default_upload_stall_secs() -> u64 {
    30
}
fn default_upload_min_bytes_per_sec() -> u64 {
    16 * 1024
}
fn default_upload_timeout_secs() -> u64 {
    3600
}
fn default_min_free_bytes() -> u64 {
    512 * 1024 * 1024
}
fn default_max_concurrent_uploads() -> usize {
    16
}
fn default_max_uploads_per_client() -> usize {
    2
}
/// Largest `server.max_body_bytes`: a non-file body is read into memory
/// whole before it is checked.
pub const MAX_BODY_LIMIT: usize = 64 << 20;

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
    fn staff_tokens_are_bare_hashes_or_scoped_tables_and_bad_ones_name_the_key() {
        use crate::staff_token::{Action, Scope, TokenEntry};
        let h = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let text = format!(
            "{MINIMAL}\n[staff]\ntokens = [\"{}\", {{ hash = \"{}\", can = [\"list\", \
             \"download\"], forms = [\"tip\"] }}]\n",
            h('a'),
            h('b')
        );
        let c = parse(&text).expect("valid");
        assert_eq!(Scope::of(&c.staff.tokens[0]), Scope::full());
        let scoped = Scope::of(&c.staff.tokens[1]);
        assert!(scoped.can(Action::Download) && !scoped.can(Action::Ack));
        assert!(scoped.covers(Some("tip")) && !scoped.covers(Some("other")));
        // The array-of-tables form is the same key.
        let text = format!(
            "{MINIMAL}\n[[staff.tokens]]\nhash = \"{}\"\ncan = [\"ack\"]\n",
            h('c')
        );
        let c = parse(&text).expect("valid");
        assert!(matches!(&c.staff.tokens[0], TokenEntry::Scoped(s) if s.forms.is_none()));

        let table = |body: &str| format!("{MINIMAL}\n[[staff.tokens]]\n{body}\n");
        let cases = [
            (
                table(&format!("hash = \"{}\"\ncan = []", h('a'))),
                "staff.tokens[0].can",
            ),
            (
                table(&format!(
                    "hash = \"{}\"\ncan = [\"list\"]\nforms = []",
                    h('a')
                )),
                "staff.tokens[0].forms",
            ),
            (
                table(&format!(
                    "hash = \"{}\"\ncan = [\"list\"]\nforms = [\"tip\", \"nope\"]",
                    h('a')
                )),
                "staff.tokens[0].forms[1]",
            ),
            (
                table("hash = \"sha256:00\"\ncan = [\"list\"]"),
                "staff.tokens[0].hash",
            ),
            (
                format!(
                    "{MINIMAL}\n[staff]\ntokens = [\"{}\", \"{}\"]\n",
                    h('a'),
                    h('a')
                ),
                "staff.tokens[1]",
            ),
            (
                format!("{MINIMAL}\n[staff]\ntokens = [\"md5:00\"]\n"),
                "staff.tokens[0]",
            ),
            // One hash both bare (every action) and scoped: which would hold?
            (
                format!(
                    "{MINIMAL}\n[staff]\ntokens = [\"{}\", {{ hash = \"{}\", can = [\"list\"] }}]\n",
                    h('a'),
                    h('a')
                ),
                "staff.tokens[1].hash",
            ),
        ];
        for (text, want) in cases {
            match parse(&text) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, want, "{text}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        // An action that does not exist, or a misspelt key, does not parse.
        for body in [
            format!("hash = \"{}\"\ncan = [\"delete\"]", h('a')),
            format!("hash = \"{}\"\ncan = [\"list\"]\nform = [\"tip\"]", h('a')),
        ] {
            assert!(parse(&table(&body)).is_err(), "{body}");
        }
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
