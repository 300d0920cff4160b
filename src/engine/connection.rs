//! A client connection as other connections see it: its outbound queue, what it negotiated
//! that matters to publishers, its subscriptions by sid, its permissions and counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
// tokio's clock (std's outside a runtime), so that tests can move it for reply expiry.
use tokio::time::Instant;

use super::account::Account;
use super::outbound::Outbound;
use super::permissions::{Permissions, ResponsePermission};
use super::stats::{ConnSnapshot, ConnStats, Counts, SubSnapshot};
use super::subscription::Subscription;

/// The part of a connection that other connections touch: its outbound queue, what it
/// negotiated that matters to publishers, and its subscriptions by sid.
#[derive(Debug)]
pub struct Connection {
    /// Connection id (`cid`), unique for the life of the server.
    pub cid: u64,
    /// Pending outbound bytes and the writer wake-up.
    pub outbound: Outbound,
    /// CONNECT set `headers`: HMSG is delivered as HMSG, otherwise the headers are stripped.
    pub headers: AtomicBool,
    /// CONNECT set `protocol` 1: the client takes INFO updates (lame duck mode).
    async_info: AtomicBool,
    /// Subscriptions by sid. Guards only the map; never held with another lock.
    pub subs: Mutex<HashMap<Bytes, Arc<Subscription>, ahash::RandomState>>,
    /// The log prefix (`IP:PORT - cid:N[ - "name"]`), for lines other connections log about
    /// this one. Guards only the string.
    desc: Mutex<Arc<str>>,
    /// `FILTER_DELIVERIES` and `TRACK_REPLIES`: read by every publisher per delivery, so that a
    /// connection without permissions costs them one load and a branch.
    perm_flags: AtomicU8,
    /// The user's permissions (`None`: everything allowed). Guards only the `Arc`.
    permissions: Mutex<Option<Arc<Permissions>>>,
    /// `allow_responses`: reply subjects this connection was sent, with when and how many
    /// responses it has published to each. Taken after `permissions`, never before.
    replies: Mutex<HashMap<Bytes, (Instant, u32)>>,
    /// The client's address.
    pub addr: SocketAddr,
    /// The account the connection is bound to (`$G` until CONNECT says otherwise). Guards
    /// only the `Arc`.
    account: Mutex<Arc<Account>>,
    /// Counted in its account's `clients`.
    counted: AtomicBool,
    /// Counters the reader publishes once per read batch, for monitoring.
    pub stats: ConnStats,
    /// What CONNECT said about the client, for monitoring. Guards only the struct.
    meta: Mutex<ClientMeta>,
    /// The client came in over WebSocket (`/connz` type `websocket`).
    websocket: AtomicBool,
}

/// What CONNECT said about the client (`/connz` shows it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMeta {
    /// CONNECT `name`.
    pub name: String,
    /// CONNECT `lang`.
    pub lang: String,
    /// CONNECT `version`.
    pub version: String,
    /// The user name it authenticated with, if any (a JWT user's public key).
    pub user: Option<String>,
    /// How a JWT user authenticated (operator mode), for `/connz?auth=1`.
    pub jwt: Option<Arc<JwtIdentity>>,
}

/// A JWT user's identity as `/connz?auth=1` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The user JWT.
    pub jwt: String,
    /// Who signed it (the account or one of its signing keys).
    pub issuer_key: String,
    /// The account's name in its JWT.
    pub name_tag: String,
}

/// Deliveries to the connection must pass its subscribe deny list (a wildcard subscription
/// overlaps it: nats-server's `mperms`).
const FILTER_DELIVERIES: u8 = 1;
/// The connection may answer requests it receives (`allow_responses`).
const TRACK_REPLIES: u8 = 2;
/// Tracked reply subjects above which expired ones are pruned (nats-server's `replyPermLimit`).
const REPLY_PRUNE_LIMIT: usize = 4096;

impl Connection {
    /// A connection with an empty outbound queue limited to `max_pending` bytes.
    pub fn new(
        cid: u64,
        max_pending: usize,
        desc: &str,
        addr: SocketAddr,
        account: Arc<Account>,
    ) -> Self {
        Connection {
            account: Mutex::new(account),
            counted: AtomicBool::new(false),
            addr,
            stats: ConnStats::new(),
            meta: Mutex::new(ClientMeta::default()),
            cid,
            outbound: Outbound::new(max_pending),
            headers: AtomicBool::new(false),
            async_info: AtomicBool::new(false),
            subs: Mutex::new(HashMap::default()),
            desc: Mutex::new(desc.into()),
            perm_flags: AtomicU8::new(0),
            permissions: Mutex::new(None),
            replies: Mutex::new(HashMap::new()),
            websocket: AtomicBool::new(false),
        }
    }

    /// Marks the connection as a WebSocket client's.
    pub fn mark_websocket(&self) {
        self.websocket.store(true, Ordering::Relaxed);
    }

    /// Whether the client came in over WebSocket.
    pub fn is_websocket(&self) -> bool {
        self.websocket.load(Ordering::Relaxed)
    }

    /// The account the connection is bound to.
    pub fn account(&self) -> Arc<Account> {
        self.account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Binds the connection to `account` (its CONNECT was accepted) and counts it there. Its
    /// subscriptions, if any, must be moved by the caller.
    pub fn bind_account(&self, account: Arc<Account>) {
        let mut current = self.account.lock().unwrap_or_else(|p| p.into_inner());
        if self.counted.swap(true, Ordering::AcqRel) {
            current.clients.fetch_sub(1, Ordering::Relaxed);
        }
        account.clients.fetch_add(1, Ordering::Relaxed);
        *current = account;
    }

    /// Whether the connection is a client counted in its account (its CONNECT was accepted
    /// and it has not closed).
    pub fn is_counted(&self) -> bool {
        self.counted.load(Ordering::Acquire)
    }

    /// Stops counting the connection in its account (it closed).
    pub fn unbind_account(&self) {
        let current = self.account.lock().unwrap_or_else(|p| p.into_inner());
        if self.counted.swap(false, Ordering::AcqRel) {
            current.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Puts the user's permissions in force (at CONNECT and on reload). Subscriptions are not
    /// touched here; the delivery filter stays on if any current one needs it.
    pub fn set_permissions(&self, perms: Option<Arc<Permissions>>) {
        let mut flags = 0;
        if let Some(p) = &perms {
            if p.response.is_some() {
                flags |= TRACK_REPLIES;
            }
            if self
                .subs()
                .values()
                .any(|s| p.needs_delivery_filter(&s.subject))
            {
                flags |= FILTER_DELIVERIES;
            }
        }
        *self.permissions.lock().unwrap_or_else(|p| p.into_inner()) = perms;
        self.perm_flags.store(flags, Ordering::Release);
    }

    /// The user's permissions, if restricted.
    pub fn permissions(&self) -> Option<Arc<Permissions>> {
        self.permissions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Turns on per-delivery checks against the subscribe deny list.
    pub fn enable_delivery_filter(&self) {
        self.perm_flags
            .fetch_or(FILTER_DELIVERIES, Ordering::AcqRel);
    }

    /// Whether a message on `subject` may be delivered here. One load for connections without
    /// a subscribe deny list; always inlined into the delivery loop (left to the compiler, it
    /// became a call per delivery once the crate grew: cachegrind counted the 1 -> 4 fan-out
    /// 7% more instructions per message, with `Outbound::append` and `Deliveries::appended`
    /// out of line too).
    #[inline(always)]
    pub fn may_receive(&self, subject: &[u8]) -> bool {
        if self.perm_flags.load(Ordering::Acquire) & FILTER_DELIVERIES == 0 {
            return true;
        }
        self.may_receive_filtered(subject)
    }

    #[inline(never)]
    fn may_receive_filtered(&self, subject: &[u8]) -> bool {
        match self.permissions() {
            Some(p) => p.may_receive(subject),
            None => true,
        }
    }

    /// Remembers that this connection was sent a request with `reply`, which it may then
    /// answer (`allow_responses`), unless it may publish there anyway.
    #[inline]
    pub fn record_reply(&self, reply: &[u8]) {
        if self.perm_flags.load(Ordering::Acquire) & TRACK_REPLIES == 0 {
            return;
        }
        let Some(perms) = self.permissions() else {
            return;
        };
        let Some(resp) = perms.response else {
            return;
        };
        if perms.can_publish(reply) {
            return;
        }
        let now = Instant::now();
        let mut replies = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        replies.insert(Bytes::copy_from_slice(reply), (now, 0));
        if replies.len() > REPLY_PRUNE_LIMIT {
            // Forget replies that are used up or too old (nats-server's `pruneReplyPerms`).
            replies.retain(|_, (at, n)| {
                let used_up = resp.max > 0 && *n >= resp.max;
                !(used_up || expired(&resp, *at, *n, now))
            });
        }
    }

    /// Claims one response to `reply` under `resp`: true while the request's response count
    /// and age are within bounds; a reply past them is forgotten.
    pub fn take_reply(&self, reply: &[u8], resp: &ResponsePermission) -> bool {
        let mut replies = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        let Some((at, n)) = replies.get_mut(reply) else {
            return false;
        };
        *n += 1;
        if expired(resp, *at, *n, Instant::now()) {
            replies.remove(reply);
            return false;
        }
        true
    }

    /// The log prefix naming this connection.
    pub fn desc(&self) -> Arc<str> {
        self.desc.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the client takes asynchronous INFO updates.
    pub fn async_info(&self) -> bool {
        self.async_info.load(Ordering::Relaxed)
    }

    /// Records whether the client takes asynchronous INFO updates (CONNECT `protocol` 1).
    pub fn set_async_info(&self, on: bool) {
        self.async_info.store(on, Ordering::Relaxed);
    }

    /// Replaces the log prefix (CONNECT named the client).
    pub fn set_desc(&self, desc: &str) {
        *self.desc.lock().unwrap_or_else(|p| p.into_inner()) = desc.into();
    }

    /// What CONNECT said about the client.
    pub fn meta(&self) -> ClientMeta {
        self.meta.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces what CONNECT said about the client.
    pub fn set_meta(&self, meta: ClientMeta) {
        *self.meta.lock().unwrap_or_else(|p| p.into_inner()) = meta;
    }

    /// Message counters: inbound as last published by the reader, outbound as counted.
    pub fn counts(&self) -> Counts {
        let (in_msgs, in_bytes) = self.stats.inbound();
        let (out_msgs, out_bytes) = self.outbound.out_stats();
        Counts {
            in_msgs,
            in_bytes,
            out_msgs,
            out_bytes,
        }
    }

    /// Every subscription of this connection, for monitoring.
    pub fn sub_snapshots(&self) -> Vec<SubSnapshot> {
        let subs: Vec<Arc<Subscription>> = self.subs().values().cloned().collect();
        subs.iter().map(|s| s.snapshot()).collect()
    }

    /// What `/connz` shows about this connection now; with `subs`, its subscriptions too.
    pub fn snapshot(&self, subs: bool) -> ConnSnapshot {
        let meta = self.meta.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let subscriptions = self.subs().len();
        ConnSnapshot {
            cid: self.cid,
            addr: Some(self.addr),
            start: Some(self.stats.start),
            last_activity: Some(self.stats.last_activity()),
            stop: None,
            reason: None,
            rtt: self.stats.rtt(),
            pending_bytes: self.outbound.pending_bytes(),
            counts: self.counts(),
            subscriptions,
            subs: if subs {
                self.sub_snapshots()
            } else {
                Vec::new()
            },
            name: meta.name,
            lang: meta.lang,
            version: meta.version,
            user: meta.user,
            jwt: meta.jwt,
            account: self.account().name.to_string(),
            websocket: self.is_websocket(),
        }
    }

    /// The snapshot kept for `/connz?state=closed` once the connection has closed.
    pub fn closed_snapshot(&self, reason: &'static str) -> ConnSnapshot {
        ConnSnapshot {
            stop: Some(SystemTime::now()),
            reason: Some(reason),
            ..self.snapshot(true)
        }
    }

    /// Locks the sid map (a poisoned map is still consistent: every change is one insert or
    /// remove).
    pub fn subs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Bytes, Arc<Subscription>, ahash::RandomState>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a tracked reply is used up: more responses than `max`, or older than `expires`.
fn expired(resp: &ResponsePermission, at: Instant, n: u32, now: Instant) -> bool {
    (resp.max > 0 && n > resp.max)
        || (!resp.expires.is_zero() && now.saturating_duration_since(at) > resp.expires)
}
