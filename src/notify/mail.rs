//! The digest as mail: its plaintext encrypted to one reader's certificate
//! (as `src/seal.rs` seals records: SEIPDv1, no compression), wrapped in a
//! PGP/MIME message (RFC 3156) whose every header is fixed text, and sent
//! through the relay of `[notify]` (or POSTed to its webhook).

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sequoia_openpgp as openpgp;
use zeroize::Zeroizing;

use crate::config::{NotifyConfig, RelayTls};
use crate::keys::{RecipientCert, Recipients};
use crate::seal::seal;

/// The subject of every digest.
pub const SUBJECT: &str = "sealform daily digest";

/// How long one SMTP or webhook exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The relay connection, ready to send.
pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// `plaintext` encrypted to `cert` alone, ASCII-armored.
pub fn encrypt(plaintext: &[u8], cert: &RecipientCert) -> Result<String, String> {
    let recipients = Recipients {
        keys: cert.encryption_keys.clone(),
        certs: vec![cert.fingerprint()],
        hidden: false,
        seipdv1_only: true,
    };
    let mut binary = Vec::new();
    seal(&mut binary, &recipients, |w| w.write_all(plaintext)).map_err(|e| e.to_string())?;
    let mut armor = openpgp::armor::Writer::new(Vec::new(), openpgp::armor::Kind::Message)
        .map_err(|e| e.to_string())?;
    armor.write_all(&binary).map_err(|e| e.to_string())?;
    let armored = armor.finalize().map_err(|e| e.to_string())?;
    String::from_utf8(armored).map_err(|e| e.to_string())
}

/// The PGP/MIME message carrying `armored` to `to`: fixed subject, `From`,
/// `To`, a `Date` at the slot's time and a random `Message-ID`, each the
/// same length every day.
pub fn message(
    notify: &NotifyConfig,
    to: &str,
    armored: &str,
    slot: SystemTime,
) -> Result<Message, String> {
    let from: Mailbox = notify
        .from
        .parse()
        .map_err(|e| format!("notify.from: {e}"))?;
    let to: Mailbox = to.parse().map_err(|e| format!("reader address: {e}"))?;
    let id = format!("<{}@{}>", random_hex(), sender_domain(notify));
    let control = SinglePart::builder()
        .header(ContentType::parse("application/pgp-encrypted").map_err(|e| e.to_string())?)
        .header(ContentTransferEncoding::SevenBit)
        .body(String::from("Version: 1\r\n"));
    // Mail lines end in CRLF; the armor writer ends them in LF.
    let crlf = armored.replace("\r\n", "\n").replace('\n', "\r\n");
    let body = Body::new_with_encoding(crlf, ContentTransferEncoding::SevenBit)
        .map_err(|_| "the armored digest is not 7-bit text".to_owned())?;
    let encrypted = SinglePart::builder()
        .header(
            ContentType::parse("application/octet-stream; name=\"encrypted.asc\"")
                .map_err(|e| e.to_string())?,
        )
        .body(body);
    let multipart = MultiPart::encrypted("application/pgp-encrypted".to_owned())
        .singlepart(control)
        .singlepart(encrypted);
    Message::builder()
        .from(from)
        .to(to)
        .subject(SUBJECT)
        .date(slot)
        .message_id(Some(id))
        .multipart(multipart)
        .map_err(|e| e.to_string())
}

/// The domain of `notify.from`: the `Message-ID`'s and the relay greeting's.
fn sender_domain(notify: &NotifyConfig) -> &str {
    notify.from.rsplit('@').next().unwrap_or("localhost")
}

/// 32 random hex digits.
fn random_hex() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    data_encoding::HEXLOWER.encode(&bytes)
}

/// The relay of `notify`, reading its password and private CA now.
pub fn transport(notify: &NotifyConfig) -> Result<Transport, String> {
    let relay = notify.relay()?;
    let mut tls_params = TlsParameters::builder(relay.host.clone());
    if let Some(ca) = &notify.tls_ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
        tls_params = tls_params.add_root_certificate(cert);
    }
    let tls = match relay.tls {
        RelayTls::Plain => Tls::None,
        mode => {
            let params = tls_params.build().map_err(|e| e.to_string())?;
            if mode == RelayTls::Wrapper {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut builder = Transport::builder_dangerous(relay.host)
        .port(relay.port)
        .tls(tls)
        .hello_name(ClientId::Domain(sender_domain(notify).to_owned()))
        .timeout(Some(EXCHANGE_TIMEOUT));
    if let (Some(user), Some(file)) = (relay.user, &notify.password_file) {
        let password = Zeroizing::new(
            std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?,
        );
        let password = password.trim_end_matches(['\r', '\n']).to_owned();
        builder = builder.credentials(Credentials::new(user, password));
    }
    Ok(builder.build())
}

/// Sends `message` through `transport`; the error is the relay's answer
/// with every address in `hide` replaced, so it can be logged.
pub async fn send(transport: &Transport, message: Message, hide: &[&str]) -> Result<(), String> {
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| redact(&e.to_string(), hide))
}

/// POSTs `armored` to `url` as `application/pgp-encrypted`, nothing else.
pub async fn post_webhook(url: &str, armored: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(EXCHANGE_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let res = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/pgp-encrypted")
        .body(armored.to_owned())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {}", res.status()))
    }
}

/// `text` with every string of `hide` replaced by `<address>`, whatever
/// the case of its ASCII letters: relays echo an address as they please
/// (`Desk@Example.ORG` for `desk@example.org`).
pub fn redact(text: &str, hide: &[&str]) -> String {
    hide.iter()
        .filter(|h| !h.is_empty())
        .fold(text.to_owned(), |t, h| replace_ignoring_case(&t, h))
}

/// `text` with every ASCII-case-insensitive occurrence of `needle` replaced
/// by `<address>`. ASCII lowercasing keeps every byte offset and character
/// boundary, so offsets found in the lowercased text cut the original.
fn replace_ignoring_case(text: &str, needle: &str) -> String {
    let (lower, needle) = (text.to_ascii_lowercase(), needle.to_ascii_lowercase());
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(at) = lower[from..].find(&needle) {
        out.push_str(&text[from..from + at]);
        out.push_str("<address>");
        from += at + needle.len();
    }
    out.push_str(&text[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_a_relay_answer_is_hidden() {
        assert_eq!(
            redact("550 <desk@example.org>: unknown", &["desk@example.org", ""]),
            "550 <<address>>: unknown"
        );
    }

    #[test]
    fn an_address_echoed_in_another_case_is_hidden_too() {
        assert_eq!(
            redact(
                "550 5.1.1 <Desk@Example.ORG> unknown; from é DESK@EXAMPLE.ORG",
                &["desk@example.org"]
            ),
            "550 5.1.1 <<address>> unknown; from é <address>"
        );
    }
}
