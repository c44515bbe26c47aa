//! TLS to the database (`[store] sslmode`, `ca_file`), against a real
//! PostgreSQL with a certificate issued here by a throwaway CA: with
//! `verify-full` the store connects only to a server whose certificate
//! chains to `ca_file` and names the host it dialled; with `require` it
//! connects over TLS without checking; with `disable` it does not use TLS.
//! The server's own view (`pg_stat_ssl`) says which.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509Name};

use sealform::config::SslMode;
use sealform::store::postgres::PgStore;

use super::pg_config;
use crate::pg::Postgres;

/// A P-256 key.
fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey")
}

fn name(cn: &str) -> X509Name {
    let mut n = X509Name::builder().expect("name");
    n.append_entry_by_nid(Nid::COMMONNAME, cn).expect("cn");
    n.build()
}

/// A certificate for `subject` with `key`, signed by `issuer` (itself when
/// `None`): a CA, or a server certificate naming `ip` or `dns`.
fn certificate(
    subject: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    san: Option<(&str, &str)>,
) -> X509 {
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    let mut serial = BigNum::new().expect("bn");
    serial
        .rand(120, MsbOption::MAYBE_ZERO, false)
        .expect("serial");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name(subject)).expect("subject");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("not after");
    match issuer {
        None => {
            b.set_issuer_name(&name(subject)).expect("issuer");
            let ca = BasicConstraints::new().critical().ca().build().expect("bc");
            b.append_extension(ca).expect("bc");
        }
        Some((ca, _)) => {
            b.set_issuer_name(ca.subject_name()).expect("issuer");
        }
    }
    if let Some((kind, value)) = san {
        let mut alt = SubjectAlternativeName::new();
        if kind == "ip" {
            alt.ip(value);
        } else {
            alt.dns(value);
        }
        let ext = alt
            .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
            .expect("san");
        b.append_extension(ext).expect("san");
    }
    let signer = issuer.map_or(key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).expect("sign");
    b.build()
}

/// A CA: its certificate and key.
fn ca(cn: &str) -> (X509, PKey<Private>) {
    let k = key();
    (certificate(cn, &k, None, None), k)
}

/// Waits (10 s at most) until the database's other clients are `want`:
/// so many over TLS, so many without (a closed connection's backend takes
/// a moment to go).
fn expect_connections(pg: &Postgres, want: (i64, i64)) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = connections(pg);
        if seen == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connections (TLS, plain): {seen:?}, expected {want:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How many clients (other than this one) the database has over TLS, and
/// how many without.
fn connections(pg: &Postgres) -> (i64, i64) {
    let mut c = pg.client();
    let count = |c: &mut postgres::Client, ssl: bool| -> i64 {
        c.query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.backend_type = 'client backend' AND s.ssl = $1 \
             AND s.pid <> pg_backend_pid()",
            &[&ssl],
        )
        .expect("pg_stat_ssl")
        .get(0)
    };
    (count(&mut c, true), count(&mut c, false))
}

/// Opens the store on `pg` with `sslmode` and the CA `ca` (written to a
/// file) as `ca_file`.
fn open(pg: &Postgres, sslmode: SslMode, ca: Option<&X509>) -> Result<PgStore, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = pg_config(pg);
    config.sslmode = sslmode;
    if let Some(ca) = ca {
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.to_pem().expect("pem")).expect("write ca");
        config.ca_file = Some(path);
    }
    PgStore::open(&config).map_err(|e| e.to_string())
}

/// A PostgreSQL with TLS on, its certificate naming `san` (`("ip", ..)` or
/// `("dns", ..)`) and issued by a fresh CA; that CA's certificate.
fn tls_server(san: (&str, &str)) -> (Postgres, X509) {
    let pg = Postgres::start();
    let (ca_cert, ca_key) = ca("sealform test CA");
    let server_key = key();
    let server_cert = certificate(
        "database",
        &server_key,
        Some((&ca_cert, &ca_key)),
        Some(san),
    );
    pg.enable_tls(
        &server_cert.to_pem().expect("pem"),
        &server_key.private_key_to_pem_pkcs8().expect("pem"),
    );
    (pg, ca_cert)
}

#[test]
fn verify_full_connects_only_to_a_certificate_of_ca_file_naming_the_host() {
    let (pg, ca_cert) = tls_server(("ip", "127.0.0.1"));

    // The right CA: connected, over TLS.
    let store = open(&pg, SslMode::VerifyFull, Some(&ca_cert)).expect("verify-full with the CA");
    expect_connections(&pg, (1, 0));
    drop(store);

    // Another CA: refused, and the error says why.
    let (other, _) = ca("another CA");
    let err = open(&pg, SslMode::VerifyFull, Some(&other))
        .err()
        .expect("a certificate of another CA is refused");
    assert!(err.contains("certificate verify failed"), "{err}");

    // `require` takes any certificate, over TLS; `disable` goes without.
    let store = open(&pg, SslMode::Require, Some(&other)).expect("require");
    expect_connections(&pg, (1, 0));
    drop(store);
    let store = open(&pg, SslMode::Disable, None).expect("disable");
    expect_connections(&pg, (0, 1));
    drop(store);
}

#[test]
fn verify_full_refuses_a_certificate_for_another_host() {
    let (pg, ca_cert) = tls_server(("dns", "db.example.org"));
    let err = open(&pg, SslMode::VerifyFull, Some(&ca_cert))
        .err()
        .expect("a certificate for another name is refused");
    assert!(err.contains("certificate verify failed"), "{err}");
    // The same certificate is good enough for `require`.
    open(&pg, SslMode::Require, None).expect("require");
}
