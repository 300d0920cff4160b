//! Connection accounting across the cluster, as nats-server keeps it: every server publishes
//! each account's connection count (`$SYS.SERVER.ACCOUNT.<acc>.CONNS`) when it changes and
//! every 30 s, and every other server adds those counts to its own when it checks an account's
//! `conn` limit. The first time an account has a client here, this server asks the others for
//! their counts (`$SYS.REQ.ACCOUNT.<acc>.CONNS`, answered to `$SYS._INBOX_.<server id>`), as
//! nats-server does when it registers an account at its first use; a server that shuts down
//! (`$SYS.SERVER.<id>.SHUTDOWN`) stops counting. When an update shows the account
//! over its limit, the newest local clients are closed until it is not, as nats-server does
//! (it prefers closing too many to too few: clients reconnect).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Deserialize;
use tracing::error;

use super::Sys;
use crate::engine::account::Account;
use crate::engine::outbound::CloseReason;
use crate::proto::error::ProtocolError;
use crate::proto::protocol;
use crate::state::events::{Service, SysRequest};
use crate::state::Shared;

/// The subjects the accounting listens on, with the service each stands for.
pub(super) fn subscriptions(server_id: &str) -> [(Service, String); 3] {
    [
        (
            Service::Remote("CONNS"),
            "$SYS.SERVER.ACCOUNT.*.CONNS".into(),
        ),
        (Service::Remote("CONNS"), inbox(server_id)),
        (Service::Remote("SHUTDOWN"), "$SYS.SERVER.*.SHUTDOWN".into()),
    ]
}

/// Where other servers answer this one's requests for their counts.
fn inbox(server_id: &str) -> String {
    format!("$SYS._INBOX_.{server_id}")
}

/// What is read of an `account_connections` event (`SHUTDOWN` events only need to parse).
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default)]
    server: Option<Sender>,
    #[serde(default)]
    acc: String,
    #[serde(default)]
    conns: usize,
}

#[derive(Debug, Deserialize)]
struct Sender {
    id: String,
}

impl Sys {
    /// An event of another server about connection counts.
    pub(super) fn remote_event(&mut self, what: &str, req: &SysRequest) {
        let Ok(event) = serde_json::from_slice::<Event>(&req.body) else {
            error!("Error unmarshalling account connection event message");
            return;
        };
        // `$SYS.SERVER.<id>.SHUTDOWN` names its server in the subject, as nats-server reads it.
        let named = (what == "SHUTDOWN")
            .then(|| {
                String::from_utf8_lossy(&req.subject)
                    .split('.')
                    .nth(2)
                    .map(String::from)
            })
            .flatten();
        let sender = named.or(event.server.map(|s| s.id));
        let Some(sender) = sender.filter(|id| *id != self.shared.server_id) else {
            // Our own event, heard through our own subscription.
            return;
        };
        if what == "SHUTDOWN" {
            for account in self.shared.router.accounts() {
                account.remove_remote_server(&sender);
            }
            return;
        }
        // Only accounts that have had a client here are tracked: nats-server ignores events
        // of accounts it has not registered, which it does at their first use.
        let Some(account) = self
            .shared
            .router
            .account(&event.acc)
            .filter(|a| self.tracked.contains(&a.name))
        else {
            return;
        };
        account.update_remote_server(&sender, event.conns);
        close_over_limit(&self.shared, &account);
    }

    /// `$SYS.SERVER.<id>.SHUTDOWN`, this server's `ServerInfo` alone: the others stop counting
    /// its clients.
    pub(super) fn publish_shutdown(&mut self) {
        let subject = format!("$SYS.SERVER.{}.SHUTDOWN", self.shared.server_id);
        let info = self.server_info();
        if let Some(payload) = Sys::encode(&info) {
            self.send(&self.system.clone(), &subject, &payload);
        }
    }

    /// Asks the other servers for their counts of `account`'s clients, the first time it has
    /// one here (before this server's own count goes out, as in nats-server, where the
    /// account is registered while its first client authenticates).
    pub(super) fn track_account(&mut self, account: &Account) {
        if self.shared.opts().cluster.is_none() || !self.tracked.insert(account.name.clone()) {
            return;
        }
        let subject = format!("$SYS.REQ.ACCOUNT.{}.CONNS", account.name);
        let body = serde_json::json!({ "server": self.server_info(), "acc": &*account.name });
        if let Some(payload) = Sys::encode(&body) {
            let reply = inbox(&self.shared.server_id);
            self.send_request(&subject, &reply, &payload);
        }
    }
}

/// Closes the newest local clients of `account` while it has more connections cluster-wide
/// than its JWT's `conn` limit allows.
fn close_over_limit(shared: &Arc<Shared>, account: &Arc<Account>) {
    let limit = shared
        .opts()
        .operator
        .account(&account.name)
        .map(|a| a.claims.nats.limits.conn)
        .and_then(|conn| usize::try_from(conn).ok());
    let Some(limit) = limit else {
        return;
    };
    let local = account.clients.load(Ordering::Relaxed);
    let over = (local + account.remote_clients()).saturating_sub(limit);
    if over == 0 {
        return;
    }
    let mut clients: Vec<_> = shared
        .router
        .connections_snapshot()
        .into_iter()
        .filter(|c| c.is_counted() && Arc::ptr_eq(&c.account(), account))
        .collect();
    // Newest first: the connection ids grow with the start times.
    clients.sort_by_key(|c| std::cmp::Reverse(c.cid));
    for conn in clients.into_iter().take(over) {
        let text = ProtocolError::MaxAccountConnections.to_string();
        error!("{} - {text}", conn.desc());
        conn.outbound
            .append(None, |b| protocol::encode_err(b, &text));
        conn.outbound
            .close(CloseReason::MaxAccountConnectionsExceeded, true);
    }
}
