//! The `[limits]` and `[abuse]` tables: rate limits, connection and timing
//! bounds, how the client address is found, form tokens and process
//! hardening.
//!
//! This module only parses and validates; `http/limits.rs`,
//! `http/form_tokens.rs` and [`crate::harden`] act on it.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Problem;

/// A token bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests allowed at once.
    pub burst: u32,
    /// Requests regained per minute.
    pub per_minute: u32,
}

impl Rate {
    const fn new(burst: u32, per_minute: u32) -> Rate {
        Rate { burst, per_minute }
    }
}

/// The `[limits]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// HTML form posts per client address (IPv4 address or IPv6 /64),
    /// charged only to posts with a valid form token and an empty honeypot.
    pub form_client: Rate,
    /// Forms rendered (each with a fresh form token) per client address:
    /// `GET /forms/{form}`, and the form shown again after a refused post.
    pub form_page_client: Rate,
    /// HTML form posts per form, all clients together.
    pub form_each: Rate,
    /// HTML form posts, every form and client together.
    pub form_global: Rate,
    /// JSON API submissions per client address.
    pub api_client: Rate,
    /// JSON API submissions, all clients together.
    pub api_global: Rate,
    /// Most client addresses remembered by a limiter; clients beyond it share
    /// one bucket until idle ones are forgotten.
    pub max_tracked_clients: usize,
    /// Peers whose right-most `X-Forwarded-For` hop is taken as the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// Every peer is the local Tor daemon. Without `proxy_protocol`: no
    /// per-client limits, only the per-form and global ones. With it: each
    /// Tor circuit is a client (keyed by its whole address).
    pub behind_tor: bool,
    /// Each connection to the public listener starts with a PROXY protocol
    /// header (v1 or v2) naming the client; a connection without a valid
    /// one is closed. For Tor's `HiddenServiceExportCircuitID haproxy`.
    pub proxy_protocol: bool,
    /// Seconds a client has to send a request head; also how long a
    /// kept-alive connection may wait for its next request.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body.
    pub body_timeout_secs: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Submissions (form posts and API) being received or sealed at once;
    /// more get 503.
    pub max_inflight_submissions: usize,
    /// Submissions one client may have in flight at once; more get 429.
    pub max_inflight_per_client: usize,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            form_client: Rate::new(5, 2),
            form_page_client: Rate::new(60, 30),
            form_each: Rate::new(60, 60),
            form_global: Rate::new(200, 600),
            api_client: Rate::new(10, 6),
            api_global: Rate::new(200, 600),
            max_tracked_clients: 100_000,
            trusted_proxies: Vec::new(),
            behind_tor: false,
            proxy_protocol: false,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 512,
            max_inflight_submissions: 64,
            max_inflight_per_client: 4,
        }
    }
}

/// The `[abuse]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseConfig {
    /// HTML forms carry a signed, expiring, single-use token that a post must
    /// return. Turn off only in tests that post forms by hand.
    pub form_tokens: bool,
    /// A post sent sooner than this after its form was rendered is refused.
    pub min_fill_secs: u64,
    /// How long a rendered form stays valid.
    pub token_lifetime_secs: u64,
    /// Most used tokens remembered (to refuse replays) at once.
    pub max_tracked_tokens: usize,
    /// A file of at least 32 random bytes (raw or hex), readable by
    /// sealform only, that signs form tokens instead of a random key per
    /// process: every node given the same file accepts the forms the others
    /// render. Relative to the config file.
    pub form_token_secret_file: Option<PathBuf>,
    /// Add a hidden field that people leave empty and naive bots fill.
    pub honeypot: bool,
    /// Refuse form posts a browser marks as cross-site (`Sec-Fetch-Site`,
    /// `Origin`).
    pub check_origin: bool,
    /// The address people use, e.g. `https://tips.example.org`; an `Origin`
    /// must match it, and `https` turns on HSTS.
    pub public_url: Option<String>,
    /// One log line per request (method, route, status, duration). Off by
    /// default: the logger's timestamp on each line would date every
    /// submission to the second.
    pub access_log: bool,
    /// Lock all memory (`mlockall`) so plaintext never reaches swap; needs
    /// `LimitMEMLOCK=infinity` or `CAP_IPC_LOCK`.
    pub mlockall: bool,
}

impl Default for AbuseConfig {
    fn default() -> AbuseConfig {
        AbuseConfig {
            form_tokens: true,
            min_fill_secs: 3,
            token_lifetime_secs: 2 * 3600,
            max_tracked_tokens: 100_000,
            form_token_secret_file: None,
            honeypot: true,
            check_origin: true,
            public_url: None,
            access_log: false,
            mlockall: false,
        }
    }
}

impl AbuseConfig {
    /// `scheme://host[:port]` of `public_url`, as browsers write `Origin`.
    pub fn public_origin(&self) -> Option<String> {
        let url = self.public_url.as_deref()?;
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split('/').next()?;
        Some(format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            authority.to_ascii_lowercase()
        ))
    }

    /// `public_url` is `https://…`.
    pub fn is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }
}

/// Every problem of both tables, each with its key and the fix.
pub(super) fn validate(limits: &LimitsConfig, abuse: &AbuseConfig) -> Vec<Problem> {
    let mut problems = rate_problems(limits);
    // Counts and durations: at least 1, and bounded, so that no setting can
    // make a semaphore, a deadline or a sum of timeouts overflow.
    const COUNT: u64 = 100_000_000;
    const DAY: u64 = 86_400;
    let ranges = [
        (
            "limits.max_tracked_clients",
            limits.max_tracked_clients as u64,
            COUNT,
        ),
        (
            "limits.max_connections",
            limits.max_connections as u64,
            COUNT,
        ),
        (
            "limits.max_inflight_submissions",
            limits.max_inflight_submissions as u64,
            COUNT,
        ),
        (
            "limits.max_inflight_per_client",
            limits.max_inflight_per_client as u64,
            COUNT,
        ),
        (
            "abuse.max_tracked_tokens",
            abuse.max_tracked_tokens as u64,
            COUNT,
        ),
        (
            "abuse.token_lifetime_secs",
            abuse.token_lifetime_secs,
            30 * DAY,
        ),
        (
            "limits.header_timeout_secs",
            limits.header_timeout_secs,
            DAY,
        ),
        ("limits.body_timeout_secs", limits.body_timeout_secs, DAY),
    ];
    for (key, n, max) in ranges {
        if !(1..=max).contains(&n) {
            problems.push(Problem::new(key, format!("must be from 1 to {max}")));
        }
    }
    if abuse.min_fill_secs >= abuse.token_lifetime_secs {
        problems.push(Problem::new(
            "abuse.min_fill_secs",
            "must be shorter than abuse.token_lifetime_secs",
        ));
    }
    if let Some(url) = &abuse.public_url {
        let lower = url.to_ascii_lowercase();
        let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
            && abuse.public_origin().is_some_and(|o| !o.ends_with("://"));
        if !ok {
            problems.push(Problem::new(
                "abuse.public_url",
                "must look like https://tips.example.org",
            ));
        }
    }
    problems
}

/// The problems of the six rates of `[limits]`, one per rate at most.
fn rate_problems(limits: &LimitsConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let rates = [
        ("limits.form_client", limits.form_client),
        ("limits.form_page_client", limits.form_page_client),
        ("limits.form_each", limits.form_each),
        ("limits.form_global", limits.form_global),
        ("limits.api_client", limits.api_client),
        ("limits.api_global", limits.api_global),
    ];
    for (key, r) in rates {
        // The limiter holds burst × (a minute / per_minute) in nanoseconds:
        // above 10000000, a burst at per_minute = 1 would overflow it.
        let problem = if r.burst == 0 || r.per_minute == 0 {
            "burst and per_minute must both be at least 1"
        } else if r.per_minute > 60_000_000 {
            "per_minute must be at most 60000000"
        } else if r.burst > 10_000_000 {
            "burst must be at most 10000000"
        } else {
            continue;
        };
        problems.push(Problem::new(key, problem));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = "[server]\ndata_dir = \"d\"\nkeys_dir = \"k\"\n[[forms]]\nid = \"tip\"\ntitle = \"T\"\n[[forms.fields]]\nname = \"m\"\nlabel = \"M\"\nkind = \"text\"\n";

    fn parse(extra: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(&format!("{BASE}{extra}"), std::path::Path::new("test.toml"))
    }

    #[test]
    fn the_example_config_documents_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let text = std::fs::read_to_string(&path).expect("example config");
        let c = Config::parse(&text, &path).expect("example parses");
        let (l, d) = (&c.limits, LimitsConfig::default());
        assert_eq!(
            (
                l.form_client,
                l.form_page_client,
                l.form_each,
                l.form_global,
                l.api_client,
                l.api_global
            ),
            (
                d.form_client,
                d.form_page_client,
                d.form_each,
                d.form_global,
                d.api_client,
                d.api_global
            )
        );
        assert_eq!(
            (
                l.max_tracked_clients,
                l.header_timeout_secs,
                l.body_timeout_secs
            ),
            (
                d.max_tracked_clients,
                d.header_timeout_secs,
                d.body_timeout_secs
            )
        );
        assert_eq!(
            (
                l.max_connections,
                l.max_inflight_submissions,
                l.max_inflight_per_client,
                l.behind_tor
            ),
            (
                d.max_connections,
                d.max_inflight_submissions,
                d.max_inflight_per_client,
                d.behind_tor
            )
        );
        assert_eq!(l.proxy_protocol, d.proxy_protocol);
        let (a, d) = (&c.abuse, AbuseConfig::default());
        assert_eq!(
            (
                a.form_tokens,
                a.min_fill_secs,
                a.token_lifetime_secs,
                a.max_tracked_tokens
            ),
            (
                d.form_tokens,
                d.min_fill_secs,
                d.token_lifetime_secs,
                d.max_tracked_tokens
            )
        );
        assert_eq!(
            (a.honeypot, a.check_origin, a.access_log, a.mlockall),
            (d.honeypot, d.check_origin, d.access_log, d.mlockall)
        );
    }

    #[test]
    fn bad_limits_are_refused_naming_the_key() {
        let cases = [
            (
                "[limits]\nform_client = { burst = 0, per_minute = 1 }",
                "limits.form_client",
            ),
            ("[limits]\napi_global = { burst = 1 }", "per_minute"),
            ("[limits]\nmax_connections = 0", "limits.max_connections"),
            (
                "[limits]\nmax_connections = 2305843009213693952",
                "limits.max_connections",
            ),
            (
                "[abuse]\ntoken_lifetime_secs = 9223372036854775807",
                "abuse.token_lifetime_secs",
            ),
            (
                "[limits]\nbody_timeout_secs = 9223372036854775807",
                "limits.body_timeout_secs",
            ),
            ("[limits]\ntrusted_proxies = [\"nginx\"]", "trusted_proxies"),
            ("[limits]\nheader_timeout = 3", "header_timeout"),
            (
                "[abuse]\nmin_fill_secs = 10\ntoken_lifetime_secs = 5",
                "abuse.min_fill_secs",
            ),
            (
                "[abuse]\npublic_url = \"tips.example.org\"",
                "abuse.public_url",
            ),
            ("[abuse]\nform_token = false", "form_token"),
        ];
        for (extra, key) in cases {
            let e = parse(extra).expect_err(key).to_string();
            assert!(e.contains(key), "expected {key} in {e}");
        }
    }

    #[test]
    fn the_public_origin_is_scheme_and_authority() {
        let c =
            parse("[abuse]\npublic_url = \"HTTPS://Tips.Example.org:8443/forms/\"").expect("ok");
        assert_eq!(
            c.abuse.public_origin().as_deref(),
            Some("https://tips.example.org:8443")
        );
        assert!(c.abuse.is_https());
    }
}
