//! The `[staff]` table: where the staff API is served and which tokens it
//! accepts, each for which actions and forms.

use std::net::SocketAddr;

use serde::Deserialize;

use super::server::default_true;
use super::{FormConfig, Problem};

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
    /// Wrong or missing tokens answered 401 in a burst before the staff API
    /// answers them 429 (then one more every 6 s). A valid token always
    /// passes. Default 10; raise it only for a tester that probes the API
    /// without a token on purpose.
    #[serde(default = "default_failed_token_burst")]
    pub failed_token_burst: u32,
}

fn default_failed_token_burst() -> u32 {
    10
}

impl StaffConfig {
    /// Whether a token is limited to some forms: then (and with `[notify]`,
    /// see [`super::Config::indexes_form`]) the index keeps each record's
    /// form (see `Intake::indexing` in `src/intake/record.rs`).
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
            failed_token_burst: default_failed_token_burst(),
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

impl StaffConfig {
    /// Every problem of the table: staff.listen and
    /// staff.on_public_listener both set, and each `staff.tokens` entry: a
    /// hash that parses and is not listed twice, at least one action, and
    /// forms that exist in `forms`.
    pub(super) fn validate(&self, forms: &[FormConfig]) -> Vec<Problem> {
        use crate::staff_token::{TokenEntry, TokenHash};
        let mut problems = Vec::new();
        if self.failed_token_burst == 0 {
            problems.push(Problem::new(
                "staff.failed_token_burst",
                "must be at least 1 (wrong tokens answered 401 before 429)",
            ));
        }
        if self.listen.is_some() && self.on_public_listener {
            problems.push(Problem::new(
                "staff.on_public_listener",
                "the staff API is served either on staff.listen or on the public listener, \
                 not both; remove one of the two keys",
            ));
        }
        let mut seen = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("staff.tokens[{i}]");
            let key = match t {
                TokenEntry::Full(_) => at.clone(),
                TokenEntry::Scoped(_) => format!("{at}.hash"),
            };
            match TokenHash::parse(t.hash()) {
                None => problems.push(Problem::new(
                    key,
                    "must be \"sha256:<64 hex digits>\" as printed by `sealform token`",
                )),
                Some(hash) => {
                    if let Some(j) = seen.iter().position(|h| *h == hash) {
                        problems.push(Problem::new(
                            key,
                            format!("the same hash as staff.tokens[{j}]; list each token once"),
                        ));
                    }
                    seen.push(hash);
                }
            }
            let TokenEntry::Scoped(scoped) = t else {
                continue;
            };
            if scoped.can.is_empty() {
                problems.push(Problem::new(
                    format!("{at}.can"),
                    "must name at least one of \"list\", \"download\", \"ack\" (to revoke \
                     the token, remove its entry)",
                ));
            }
            let Some(ids) = &scoped.forms else {
                continue;
            };
            if ids.is_empty() {
                problems.push(Problem::new(
                    format!("{at}.forms"),
                    "must name at least one form id (leave the key out for every form)",
                ));
            }
            for (k, id) in ids.iter().enumerate() {
                if !forms.iter().any(|f| f.id == *id) {
                    problems.push(Problem::new(
                        format!("{at}.forms[{k}]"),
                        format!("{id:?} is not the id of a [[forms]] table"),
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigError;
    use crate::config::tests::{MINIMAL, parse};

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
}
