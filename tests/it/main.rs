//! sealform's integration tests: one binary, one module per area.
//!
//! Most HTTP behaviour is tested in-process through `router(state)`; the
//! tests that need a real process (signals, SIGKILL, logs, `check` exit
//! codes) start the real binary on port 0. Interop tests run the real `gpg`
//! in a temporary `GNUPGHOME`.

mod support;
mod wire;

mod abuse;
mod bad_config;
mod bad_input;
mod bad_keys;
mod browser;
mod canaries;
mod durability;
mod harden;
mod nodes;
mod notify;
mod openapi;
mod pages;
mod pg;
mod props;
mod proxy_protocol;
mod replies;
mod routes;
mod sealing;
mod smoke;
mod staff;
mod store_conformance;
mod store_copy;
mod upload;
