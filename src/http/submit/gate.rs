//! The abuse checks of an HTML form post that look at no value: the
//! honeypot must be empty and the form token good ([`check`]). A good token
//! is held for this post alone ([`Pass`]) and used up only once the post
//! has been charged to the rate budgets (and, for an upload, has its slot).

use zeroize::Zeroizing;

use crate::config::FormConfig;
use crate::http::AppState;
use crate::http::form_tokens::{HONEYPOT_FIELD, Held, TOKEN_FIELD};
use crate::http::refusal::Refusal;
use crate::submission::RawValue;

/// An HTML form post whose honeypot is empty and whose form token is good
/// (or not asked for), the token held for this post alone: [`Pass::spend`]
/// uses it up; dropped without that, the post was refused (a rate limit, no
/// upload slot) and the token is given back.
pub struct Pass<'a>(Option<Held<'a>>);

impl Pass<'_> {
    /// Uses the token up, on every node that shares the store: refused
    /// (`Replayed`) if another node used it first, or `Busy` if the shared
    /// set cannot be reached.
    pub async fn spend(self) -> Result<(), Refusal> {
        match self.0 {
            Some(held) => held.keep_everywhere().await.map_err(Refusal::Token),
            None => Ok(()),
        }
    }
}

/// The form-token and honeypot checks of an HTML form post: removes both
/// fields from `raw` and says why the post is refused, if it is. A good
/// token is taken for this post in the same step (no other post can pass
/// with it meanwhile), and used up only by [`Pass::spend`].
pub fn check<'a>(
    state: &'a AppState,
    form: &FormConfig,
    raw: &mut Vec<(String, RawValue)>,
) -> Result<Pass<'a>, Refusal> {
    let abuse = &state.intake().config.abuse;
    let token = take_text(raw, TOKEN_FIELD);
    let honeypot = take_text(raw, HONEYPOT_FIELD);
    if abuse.honeypot && honeypot.is_some_and(|h| !h.trim().is_empty()) {
        return Err(Refusal::Honeypot);
    }
    if !abuse.form_tokens {
        return Ok(Pass(None));
    }
    let presented = token.as_deref().map(|t| t.as_str());
    let tokens = state.tokens();
    tokens
        .verify(&form.id, presented)
        .and_then(|v| tokens.hold(v))
        .map(|held| Pass(Some(held)))
        .map_err(Refusal::Token)
}

/// Removes the parameter `name` (if sent once or more) and returns its last
/// text value.
pub(crate) fn take_text(
    pairs: &mut Vec<(String, RawValue)>,
    name: &str,
) -> Option<Zeroizing<String>> {
    let mut found = None;
    let mut i = 0;
    while i < pairs.len() {
        if pairs[i].0 == name {
            if let (_, RawValue::Text(t)) = pairs.remove(i) {
                found = Some(t);
            }
        } else {
            i += 1;
        }
    }
    found
}
