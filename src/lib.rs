//! sealform: a contact-form and tip intake server that keeps only ciphertext.
//!
//! Every submission is encrypted to the OpenPGP certificates of the people who
//! must read it the moment it arrives, then written durably as one binary
//! OpenPGP message per record. The server never holds a secret key, so a copy
//! of everything it stores (data, logs, backups) tells a thief only how many
//! records exist, their padded sizes and the day they arrived (an access log,
//! off unless `[abuse] access_log = true`, would date each request to the
//! second).
//!
//! Threat model in brief (see `ARCHITECTURE.md` and the README for the full table):
//! - *store thief*: gets `data_dir`, logs and backups; learns no plaintext byte,
//!   field, attachment name or IP address;
//! - *later server compromise*: learns nothing sent before it, as the server
//!   holds no secret key;
//! - *abusive client*: gets a clear 4xx, never a crash, a 500 or unbounded
//!   memory;
//! - *network observer*: sees no third-party request from server or page;
//! - *answers to tipsters* ([`replies`]): a copy shows how many mailboxes
//!   hold answers, their days and padded sizes, nothing that links one to a
//!   record and nothing that opens one; a live intruder reads the answers
//!   tipsters read while it watches (they are decrypted on the server).
//!
//! The pieces, in the order a submission passes through them:
//! [`config`] (the form schemas) → [`http`] (parse and validate) →
//! [`mime`] (the MIME plaintext, padded) → [`seal`] (OpenPGP encryption to
//! the recipients chosen by [`keys`]) → [`store`] (spool file, fsync, index).
//! [`intake`] drives that path for every submission; uploads with files
//! take it as a stream ([`intake::Intake::submit_stream`]).
//! Offline, a record goes back the other way: [`unseal`] (decryption with
//! staff secret keys) → [`mime`] (the envelope parsed, every byte hostile).
//! Beside them: [`receipt`] (a record's identity) and [`durable`] (private
//! files and directories, fsync), used by both sides, and [`replies`]
//! (reply codes, the mailbox and certificate they derive, answers and the
//! reply store).

pub mod api;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod durable;
pub mod harden;
pub mod http;
pub mod i18n;
pub mod intake;
pub mod keys;
pub mod mime;
pub mod notify;
pub mod receipt;
pub mod replies;
pub mod seal;
pub mod staff_token;
pub mod store;
pub mod submission;
pub mod unseal;
pub mod used_tokens;
