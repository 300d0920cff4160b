//! A CONNECT whose user JWT names an account the server does not hold yet, with a resolver
//! that fetches accounts (full, cache, URL): the read loop has `state::resolver` fetch it, then
//! handles the CONNECT again, once, before anything the client sent after it (nats-server's
//! read loop waits for the fetch too).

use tracing::debug;

use super::Client;
use crate::proto::error::ProtocolError;
use crate::security::auth;

/// A CONNECT waiting for its account to be fetched.
pub(super) struct PendingFetch {
    /// The account's public key.
    pub account: String,
    /// The CONNECT's JSON, handled again once the fetch is over.
    pub json: Vec<u8>,
}

impl Client {
    /// Has the resolver fetch the pending CONNECT's account, then handles the CONNECT again.
    pub(super) async fn run_fetch(&mut self, fetch: PendingFetch) -> Result<(), ProtocolError> {
        if let Err(why) = crate::state::resolver::fetch(&self.shared, &fetch.account).await {
            debug!("{} - Account JWT lookup error: {why}", self.desc);
        }
        self.refresh();
        self.connect_with(&fetch.json, false)
    }

    /// The account of CONNECT's user JWT, when the server must fetch it first: operator
    /// mode with a resolver that fetches, and an account not in force.
    pub(super) fn account_to_fetch(&self, credentials: &auth::Credentials) -> Option<String> {
        let op = &self.server.operator;
        if !op.resolver.as_ref().is_some_and(|r| r.fetches()) {
            return None;
        }
        let account = user_account(credentials)?;
        // An account that is not pinned is refused before it is looked up.
        let pinned = op.pinned.is_empty() || op.pinned.contains(&account);
        (pinned && !op.accounts.contains_key(&account)).then_some(account)
    }

    /// Whether a refused CONNECT was refused for its account not being pinned
    /// (`resolver_pinned_accounts`), which `/varz` counts.
    pub(super) fn not_pinned(&self, credentials: &auth::Credentials) -> bool {
        let pinned = &self.server.operator.pinned;
        !pinned.is_empty() && user_account(credentials).is_some_and(|a| !pinned.contains(&a))
    }
}

/// The account of CONNECT's user JWT: the issuer, or the account it signs for.
fn user_account(credentials: &auth::Credentials) -> Option<String> {
    let token = credentials.jwt.as_deref().filter(|t| !t.is_empty())?;
    let user: crate::proto::jwt::UserClaims =
        crate::proto::jwt::decode(token, crate::proto::jwt::Kind::User).ok()?;
    Some(match user.nats.issuer_account.as_str() {
        "" => user.iss,
        account => account.to_string(),
    })
}
