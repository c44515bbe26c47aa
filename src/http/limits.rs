//! The submission routes' limits: their rate budgets ([`Budget`],
//! [`Limits::charge`]), the in-flight caps ([`Limits::enter`]), the budget
//! of fresh form tokens ([`Limits::issue_token`]) and the client a request
//! counts against ([`Client`]). Who a client is lives in [`client`], the
//! limiters themselves in [`limiter`].
//!
//! The handlers call [`Limits::charge`] themselves, once a post has passed
//! the checks that cost nothing (so a post refused anyway never spends a
//! budget real senders share), and [`Limits::enter`] before they read a
//! body. A refusal is a `Refusal` (`http/refusal.rs`). Nothing here logs,
//! stores or returns an address.

pub mod client;
pub mod limiter;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use tokio::sync::Semaphore;

pub use client::{ClientKey, ClientKeyer, ProxiedClient};
pub use limiter::{BoundedStore, GlobalLimiter, KeyedLimiter};

use super::AppState;
use super::refusal::Refusal;
use crate::config::LimitsConfig;

/// Every limiter and bound of the submission routes.
pub struct Limits {
    keyer: ClientKeyer,
    behind_tor: bool,
    form_client: KeyedLimiter<ClientKey>,
    token_client: KeyedLimiter<ClientKey>,
    form_each: Vec<GlobalLimiter>,
    form_global: GlobalLimiter,
    api_client: KeyedLimiter<ClientKey>,
    api_global: GlobalLimiter,
    inflight: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<ClientKey, usize>>>,
    max_per_client: usize,
}

/// One client's claim on a submission slot; given back on drop. The map
/// holds only clients with a submission in flight, so it is bounded by
/// `max_inflight_submissions`.
struct ClientSlot {
    map: Arc<Mutex<HashMap<ClientKey, usize>>>,
    key: ClientKey,
}

impl ClientSlot {
    fn take(
        map: &Arc<Mutex<HashMap<ClientKey, usize>>>,
        key: ClientKey,
        max: usize,
    ) -> Option<ClientSlot> {
        let mut m = map.lock().ok()?;
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            map: Arc::clone(map),
            key,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(n) = m.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.key);
                }
            }
        }
    }
}

impl Limits {
    /// The limiters `config` describes, for `forms` forms.
    pub fn new(config: &LimitsConfig, forms: usize) -> Limits {
        Limits {
            keyer: ClientKeyer::new(config.trusted_proxies.clone()),
            behind_tor: config.behind_tor,
            form_client: KeyedLimiter::new(config.form_client, config.max_tracked_clients),
            token_client: KeyedLimiter::new(config.form_page_client, config.max_tracked_clients),
            form_each: (0..forms)
                .map(|_| GlobalLimiter::new(config.form_each))
                .collect(),
            form_global: GlobalLimiter::new(config.form_global),
            api_client: KeyedLimiter::new(config.api_client, config.max_tracked_clients),
            api_global: GlobalLimiter::new(config.api_global),
            inflight: Arc::new(Semaphore::new(config.max_inflight_submissions)),
            per_client: Arc::new(Mutex::new(HashMap::new())),
            max_per_client: config.max_inflight_per_client,
        }
    }

    /// Client keys remembered by the form and API limiters.
    pub fn tracked_clients(&self) -> usize {
        self.form_client.len() + self.token_client.len() + self.api_client.len()
    }

    /// Forgets idle clients; called periodically by the server.
    pub fn retain_recent(&self) {
        self.form_client.retain_recent();
        self.token_client.retain_recent();
        self.api_client.retain_recent();
    }

    /// The client-address keyer (for other limiters, e.g. the staff API).
    pub fn keyer(&self) -> &ClientKeyer {
        &self.keyer
    }
}

/// The rate budgets a submission is charged to.
#[derive(Clone, Copy)]
pub enum Budget {
    /// An HTML form post to the form of this index: per client, per form
    /// and global.
    Form(usize),
    /// A JSON API submission: per client and global.
    Api,
    /// A post to `/replies` (read, follow up, delete): per client and
    /// global, from the budgets of the form posts.
    Replies,
}

/// A submission's claim on the in-flight caps (global, and its client's);
/// given back when dropped.
pub struct InFlight {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _slot: Option<ClientSlot>,
}

impl Limits {
    /// The client behind a request, as the per-client limits know it; `None`
    /// when clients cannot be told apart (behind Tor without a PROXY
    /// header: every peer is the tor daemon, and one key for all would let
    /// one circuit lock everyone out).
    pub fn client(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<ClientKey> {
        let proxied = extensions.get::<ProxiedClient>().map(|c| c.0);
        match (proxied, self.behind_tor) {
            // Each Tor circuit its own client.
            (Some(addr), true) => Some(self.keyer.key_of_circuit(addr)),
            // A proxy in front that speaks the PROXY protocol: its word for
            // the client, keyed like any address (X-Forwarded-For is not
            // read then).
            (Some(addr), false) => Some(self.keyer.key_of(addr)),
            (None, true) => None,
            (None, false) => {
                let peer = extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                Some(self.keyer.client_of(peer, headers))
            }
        }
    }

    /// Charges one submission to `budget`: per client first (so a client
    /// over its own limit does not use up everyone else's), then per form,
    /// then globally. Called by the handlers once a post has passed every
    /// check that costs nothing to make (form known, media type, origin;
    /// for an HTML post also its form token and honeypot): a post refused
    /// anyway spends no budget, so a flood of them cannot close a form.
    pub fn charge(&self, client: Option<ClientKey>, budget: Budget) -> Result<(), Refusal> {
        let limited = |wait| Refusal::RateLimited { wait };
        if let Some(client) = client {
            match budget {
                Budget::Form(_) | Budget::Replies => self.form_client.check(&client),
                Budget::Api => self.api_client.check(&client),
            }
            .map_err(limited)?;
        }
        if let Budget::Form(i) = budget {
            if let Some(each) = self.form_each.get(i) {
                each.check().map_err(limited)?;
            }
        }
        match budget {
            Budget::Form(_) | Budget::Replies => self.form_global.check(),
            Budget::Api => self.api_global.check(),
        }
        .map_err(limited)
    }

    /// Charges one post to the budget of the form of this index alone
    /// (`form_each`): a follow-up to a tipster's answer, which becomes a
    /// record of that form after its `/replies` post was charged to the
    /// client's and the global budgets.
    pub fn charge_form_each(&self, form_index: usize) -> Result<(), Refusal> {
        match self.form_each.get(form_index) {
            Some(each) => each.check().map_err(|wait| Refusal::RateLimited { wait }),
            None => Ok(()),
        }
    }

    /// Charges one rendered form (a fresh form token) to its client's
    /// budget. Posts without a valid token cost nothing, so the tokens
    /// themselves are what a client must be limited in.
    pub fn issue_token(&self, client: Option<ClientKey>) -> Result<(), Refusal> {
        match client {
            Some(client) => self
                .token_client
                .check(&client)
                .map_err(|wait| Refusal::TooManyFormsOpened { wait }),
            None => Ok(()),
        }
    }

    /// A slot under `max_inflight_submissions` and one of the client's
    /// `max_inflight_per_client`, taken before a body is read.
    pub fn enter(&self, client: Option<ClientKey>) -> Result<InFlight, Refusal> {
        let Ok(permit) = Arc::clone(&self.inflight).try_acquire_owned() else {
            return Err(Refusal::Busy);
        };
        let slot = match client {
            Some(key) => Some(
                ClientSlot::take(&self.per_client, key, self.max_per_client)
                    .ok_or(Refusal::TooManyAtOnce)?,
            ),
            None => None,
        };
        Ok(InFlight {
            _permit: permit,
            _slot: slot,
        })
    }
}

/// The client of a request, as the per-client limits know it (`None`
/// behind Tor).
pub struct Client(pub Option<ClientKey>);

impl axum::extract::FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Client, Self::Rejection> {
        Ok(Client(
            state.limits().client(&parts.extensions, &parts.headers),
        ))
    }
}
