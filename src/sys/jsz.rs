//! The system account's `JSZ` requests: `$SYS.REQ.SERVER.PING.JSZ` and
//! `$SYS.REQ.SERVER.<id>.JSZ` answer with the `/jsz` document, `$SYS.REQ.ACCOUNT.<acc>.JSZ`
//! with one account's detail (nats-server's `AccountDetail`). The accounts' detail comes from
//! the JetStream task, so these answers are built on a task of their own ([`Later`]) rather
//! than holding up the services' task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;

use super::services::{to_value, Answer};
use crate::monitor::jsz;
use crate::state::jetstream::JszDetail;
use crate::state::Shared;

/// An answer still being built.
pub(super) type Later = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// nats-server's `JSzOptions`, as a `JSZ` request's body gives them (`leader_only`, `offset`,
/// `limit`, `raft` and `stream_leader_only` are for clusters and ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct JszOptions {
    account: String,
    accounts: bool,
    streams: bool,
    consumer: bool,
    config: bool,
}

/// `$SYS.REQ.SERVER.PING.JSZ` and `$SYS.REQ.SERVER.<id>.JSZ`: the `/jsz` document, with the
/// accounts' detail when `opts` ask for it (`consumer` implies `streams`, which implies
/// `accounts`; `account` alone picks one account).
pub(super) fn server(shared: Arc<Shared>, opts: JszOptions) -> Later {
    Box::pin(async move {
        let wanted = opts.accounts || opts.streams || opts.consumer || !opts.account.is_empty();
        let detail = wanted.then(|| JszDetail {
            account: (!opts.account.is_empty()).then_some(opts.account),
            streams: opts.streams || opts.consumer,
            consumers: opts.consumer,
            config: opts.config,
        });
        Answer::Data(to_value(&jsz::build(&shared, detail).await))
    })
}

/// `$SYS.REQ.ACCOUNT.<acc>.JSZ`: the account `acc` as `/jsz` details it (its streams when
/// `opts` ask, and their consumers only with the streams), or nats-server's error when
/// JetStream is off, the account does not exist or has no JetStream.
pub(super) fn account(shared: Arc<Shared>, acc: String, opts: JszOptions) -> Later {
    Box::pin(async move {
        if shared.jetstream.config().is_none() {
            return Answer::Error(500, "jetstream not enabled".into());
        }
        if shared.router.account(&acc).is_none() {
            return Answer::Error(500, format!("account \"{acc}\" not found"));
        }
        let detail = JszDetail {
            account: Some(acc.clone()),
            streams: opts.streams,
            consumers: opts.streams && opts.consumer,
            config: opts.config,
        };
        let found = shared.jetstream.account_details(detail).await;
        match found.and_then(|details| details.into_iter().next()) {
            Some(detail) => Answer::Data(detail),
            None => Answer::Error(500, format!("account \"{acc}\" not jetstream enabled")),
        }
    })
}
