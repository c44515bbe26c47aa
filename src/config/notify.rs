//! The `[notify]` table: the daily digest's mail relay, sender, time and
//! readers, and its optional webhook. It declares and checks them; sending
//! is [`crate::notify`]'s.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Problem;

/// The `[notify]` table: once a day, at `at` (UTC), each reader gets a
/// digest encrypted to their certificate (see [`crate::notify`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The SMTP relay: `smtps://[user@]host[:465]` (TLS from the start),
    /// `smtp://[user@]host[:587]` (STARTTLS, required), or
    /// `smtp://host:port?tls=none` for a relay on loopback only.
    pub smtp_url: String,
    /// The file holding the relay's password (for the user in `smtp_url`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM certificate(s) of a private CA the relay's certificate chains to.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The digest's `From` address.
    pub from: String,
    /// The daily time, `HH:MM` or `HH:MM:SS`, UTC.
    pub at: String,
    /// Who gets the digest, each their own message.
    pub readers: Vec<ReaderConfig>,
    /// Also POST each reader's armored ciphertext here (ntfy, a Matrix
    /// bridge...), `http://` or `https://`.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// One `[[notify.readers]]` entry: an address and the certificate its
/// digest is encrypted to, by fingerprint in `keys_dir` or as a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderConfig {
    /// The mail address.
    pub address: String,
    /// The primary fingerprint of a certificate in `server.keys_dir`.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// A certificate file of its own (relative to the config file).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// TLS from the first byte (`smtps://`).
    Wrapper,
    /// STARTTLS, refusing a relay that does not offer it (`smtp://`).
    StartTls,
    /// None at all (`smtp://...?tls=none`, loopback only).
    Plain,
}

/// `smtp_url` taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The host name or address.
    pub host: String,
    /// The port (465 for `smtps://`, 587 for `smtp://` unless given).
    pub port: u16,
    /// The user to log in as, if any.
    pub user: Option<String>,
    /// The protection of the connection.
    pub tls: RelayTls,
}

impl NotifyConfig {
    /// The relay `smtp_url` names, or what is wrong with it.
    pub fn relay(&self) -> Result<Relay, String> {
        let url = reqwest::Url::parse(&self.smtp_url).map_err(|e| e.to_string())?;
        let (mut tls, default_port) = match url.scheme() {
            "smtps" => (RelayTls::Wrapper, 465),
            "smtp" => (RelayTls::StartTls, 587),
            _ => return Err("must start with smtps:// or smtp://".into()),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("names no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() || url.password().is_some() {
            return Err("must be scheme://[user@]host[:port] (the password goes in \
                        notify.password_file)"
                .into());
        }
        match url.query() {
            None => {}
            Some("tls=none") if tls == RelayTls::StartTls && is_loopback(&host) => {
                tls = RelayTls::Plain;
            }
            Some("tls=none") => {
                return Err(
                    "may drop TLS (?tls=none) only for an smtp:// relay on loopback \
                            (127.0.0.1, ::1, localhost)"
                        .into(),
                );
            }
            Some(_) => return Err("accepts no query but ?tls=none".into()),
        }
        let user = (!url.username().is_empty()).then(|| {
            percent_encoding::percent_decode_str(url.username())
                .decode_utf8_lossy()
                .into_owned()
        });
        Ok(Relay {
            host,
            port: url.port().unwrap_or(default_port),
            user,
            tls,
        })
    }

    /// Seconds after 00:00 UTC of the daily slot, or what is wrong with `at`.
    pub fn slot_secs(&self) -> Result<u32, String> {
        parse_at(&self.at)
    }

    /// Resolves the table's paths against `base`, the config's directory.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.password_file, &mut self.tls_ca_file]
            .into_iter()
            .flatten()
        {
            *p = base.join(&*p);
        }
        for r in &mut self.readers {
            if let Some(p) = &mut r.cert_file {
                *p = base.join(&*p);
            }
        }
    }

    /// Every problem of the table, each with its key and the fix.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        match self.relay() {
            Err(e) => problems.push(Problem::new("notify.smtp_url", e)),
            Ok(relay) => match (&relay.user, &self.password_file) {
                (Some(_), None) => problems.push(Problem::new(
                    "notify.password_file",
                    "is needed: notify.smtp_url names a user; put the password in a file \
                     readable by sealform only",
                )),
                (None, Some(_)) => problems.push(Problem::new(
                    "notify.smtp_url",
                    "names no user, but notify.password_file is set: write it as \
                     smtps://user@host",
                )),
                _ => {}
            },
        }
        if let Err(e) = self.slot_secs() {
            problems.push(Problem::new("notify.at", e));
        }
        if !is_address(&self.from) {
            problems.push(Problem::new(
                "notify.from",
                "must be a bare mail address, e.g. \"sealform@example.org\"",
            ));
        }
        if self.readers.is_empty() {
            problems.push(Problem::new(
                "notify.readers",
                "names nobody: add [[notify.readers]] with an address and a fingerprint \
                 (or cert_file), or remove [notify]",
            ));
        }
        for (i, r) in self.readers.iter().enumerate() {
            problems.extend(r.validate(i));
        }
        if let Some(url) = &self.webhook_url {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                problems.push(Problem::new(
                    "notify.webhook_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        problems
    }
}

impl ReaderConfig {
    fn validate(&self, i: usize) -> Vec<Problem> {
        let at = format!("notify.readers[{i}]");
        let mut problems = Vec::new();
        if !is_address(&self.address) {
            problems.push(Problem::new(
                format!("{at}.address"),
                "must be a bare mail address, e.g. \"desk@example.org\"",
            ));
        }
        match (&self.fingerprint, &self.cert_file) {
            (Some(_), Some(_)) | (None, None) => problems.push(Problem::new(
                at,
                "needs either fingerprint (a certificate in keys_dir) or cert_file, not both",
            )),
            (Some(f), None) => {
                let hex: String = f.chars().filter(|c| !c.is_whitespace()).collect();
                if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    problems.push(Problem::new(
                        format!("{at}.fingerprint"),
                        "must be a v4 primary fingerprint, 40 hex digits",
                    ));
                }
            }
            (None, Some(_)) => {}
        }
        problems
    }
}

/// `HH:MM` or `HH:MM:SS` as seconds after midnight.
fn parse_at(at: &str) -> Result<u32, String> {
    let bad = || format!("{at:?} must be a UTC time, \"HH:MM\" or \"HH:MM:SS\", e.g. \"07:00\"");
    let parts: Vec<&str> = at.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    let mut secs = 0;
    for (part, (limit, scale)) in parts.iter().zip([(24, 3600), (60, 60), (60, 1)]) {
        let n: u32 = part.parse().map_err(|_| bad())?;
        if n >= limit {
            return Err(bad());
        }
        secs += n * scale;
    }
    Ok(secs)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// `local@domain`, nothing around it (no display name: the header is fixed).
fn is_address(s: &str) -> bool {
    s.parse::<lettre::Address>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MINIMAL, parse};
    use super::*;

    const NOTIFY: &str = r#"
[notify]
smtp_url = "smtps://digest@mail.example.org"
password_file = "smtp-password"
from = "sealform@example.org"
at = "07:00"

[[notify.readers]]
address = "desk@example.org"
fingerprint = "1FD3E026AC63061BD85EA7DF271ED4D0AB3251AA"
"#;

    #[test]
    fn a_notify_table_parses_with_its_relay_and_slot() {
        let c = parse(&format!("{MINIMAL}{NOTIFY}")).expect("valid");
        let n = c.notify.expect("notify");
        assert_eq!(
            n.relay(),
            Ok(Relay {
                host: "mail.example.org".into(),
                port: 465,
                user: Some("digest".into()),
                tls: RelayTls::Wrapper,
            })
        );
        assert_eq!(n.slot_secs(), Ok(7 * 3600));
    }

    #[test]
    fn the_daily_time_takes_minutes_or_seconds() {
        assert_eq!(parse_at("00:00"), Ok(0));
        assert_eq!(parse_at("23:59:58"), Ok(86_398));
        for bad in [
            "7:00",
            "24:00",
            "07:60",
            "07:00:60",
            "07",
            "07:00:00:00",
            "aa:bb",
        ] {
            assert!(parse_at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_notify_tables_are_refused_naming_the_key() {
        let cases = [
            (NOTIFY.replace("smtps://", "http://"), "notify.smtp_url"),
            (
                NOTIFY.replace(
                    "smtps://digest@mail.example.org",
                    "smtp://mail.example.org?tls=none",
                ),
                "notify.smtp_url",
            ),
            (
                NOTIFY.replace("password_file = \"smtp-password\"\n", ""),
                "notify.password_file",
            ),
            (NOTIFY.replace("\"07:00\"", "\"7am\""), "notify.at"),
            (
                NOTIFY.replace("sealform@example.org", "Sealform <s@e.org>"),
                "notify.from",
            ),
            (
                NOTIFY.replace("desk@example.org", "desk"),
                "notify.readers[0].address",
            ),
            (
                NOTIFY.replace("1FD3E026AC63061BD85EA7DF271ED4D0AB3251AA", "1FD3"),
                "notify.readers[0].fingerprint",
            ),
            (
                NOTIFY.replace("fingerprint = ", "cert_file = \"r.asc\"\nfingerprint = "),
                "notify.readers[0]",
            ),
            (
                NOTIFY.replace(
                    "[[notify.readers]]",
                    "webhook_url = \"ftp://x\"\n[[notify.readers]]",
                ),
                "notify.webhook_url",
            ),
        ];
        for (table, key) in cases {
            let e = parse(&format!("{MINIMAL}{table}"))
                .expect_err(key)
                .to_string();
            assert!(e.contains(key), "expected {key} in {e}");
        }
    }

    #[test]
    fn plain_smtp_is_accepted_on_loopback_only() {
        let plain = NOTIFY
            .replace(
                "smtps://digest@mail.example.org",
                "smtp://127.0.0.1:2525?tls=none",
            )
            .replace("password_file = \"smtp-password\"\n", "");
        let c = parse(&format!("{MINIMAL}{plain}")).expect("valid");
        let relay = c.notify.expect("notify").relay().expect("relay");
        assert_eq!((relay.port, relay.tls), (2525, RelayTls::Plain));
    }
}
