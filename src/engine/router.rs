//! Shared state: the sublist of every subscription, the live connections, and the generation
//! number that lets each publisher cache match results without taking a lock per message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
// tokio's clock (std's outside a runtime), so that tests can move it for reply expiry.
use tokio::time::Instant;

use crate::engine::outbound::Outbound;
use crate::engine::permissions::{Permissions, ResponsePermission};
use crate::engine::stats::{ConnSnapshot, ConnStats, Counts, SubSnapshot, Totals};
use crate::engine::sublist::{Sublist, SublistResult};

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
    /// Counters the reader publishes once per read batch, for monitoring.
    pub stats: ConnStats,
    /// What CONNECT said about the client, for monitoring. Guards only the struct.
    meta: Mutex<ClientMeta>,
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
    /// The user name it authenticated with, if any.
    pub user: Option<String>,
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
    pub fn new(cid: u64, max_pending: usize, desc: &str, addr: SocketAddr) -> Self {
        Connection {
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
    /// a subscribe deny list.
    #[inline]
    pub fn may_receive(&self, subject: &[u8]) -> bool {
        if self.perm_flags.load(Ordering::Acquire) & FILTER_DELIVERIES == 0 {
            return true;
        }
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

    /// Records what CONNECT said about the client.
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

/// One SUB: who subscribed, to what, and its auto-unsubscribe state.
#[derive(Debug)]
pub struct Subscription {
    /// The subscriber.
    pub conn: Arc<Connection>,
    /// The filter, as sent.
    pub subject: Bytes,
    /// The queue group, if any.
    pub queue: Option<Bytes>,
    /// The client's id for this subscription.
    pub sid: Bytes,
    /// Deliveries after which the subscription ends (`UNSUB <sid> <max>`); 0 for none.
    pub max: AtomicU64,
    /// Messages delivered so far.
    pub delivered: AtomicU64,
    /// Set once the subscription is removed; a publisher holding an older match result skips it.
    pub closed: AtomicBool,
}

impl Subscription {
    /// A new, open subscription.
    pub fn new(conn: Arc<Connection>, subject: Bytes, queue: Option<Bytes>, sid: Bytes) -> Self {
        Subscription {
            conn,
            subject,
            queue,
            sid,
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// What monitoring shows about this subscription.
    pub fn snapshot(&self) -> SubSnapshot {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        // `claim_delivery` also counts the attempts refused past `max`.
        let delivered = self.delivered.load(Ordering::Relaxed);
        let msgs = match self.max.load(Ordering::Relaxed) {
            0 => delivered,
            max => delivered.min(max),
        };
        SubSnapshot {
            subject: text(&self.subject),
            queue: self.queue.as_ref().map(text),
            sid: text(&self.sid),
            msgs,
            cid: self.conn.cid,
        }
    }

    /// Claims one delivery. Returns `None` when the subscription is closed or its maximum is
    /// reached, otherwise whether this delivery is its last (the caller then unsubscribes it).
    pub fn claim_delivery(&self) -> Option<bool> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let max = self.max.load(Ordering::Relaxed);
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if max == 0 {
            return Some(false);
        }
        if n > max {
            return None;
        }
        Some(n == max)
    }
}

/// A match result shared by the sublist and the publishers' caches.
pub type Matches = Arc<SublistResult<Subscription>>;

/// The shared routing state.
#[derive(Debug, Default)]
pub struct Router {
    /// Every subscription. Read-locked on a cache miss, write-locked by SUB and UNSUB; never
    /// held together with a connection's `subs` lock or an outbound lock.
    sublist: RwLock<Sublist<Subscription>>,
    /// Bumped (inside the write lock) by every change of the sublist; a cached match result is
    /// valid while the generation it was computed under is current.
    generation: AtomicU64,
    /// Live connections by cid, and the counters of closed ones. Guards only the `Live`.
    connections: Mutex<Live>,
    next_cid: AtomicU64,
    /// Sublist statistics for `/subsz`, changed under the sublist lock or on a cache miss.
    sublist_stats: SublistStats,
}

/// The live connections and what closed ones counted, changed together so that a monitor
/// reading both sees each connection counted once.
#[derive(Debug, Default)]
struct Live {
    by_cid: HashMap<u64, Arc<Connection>>,
    closed: Totals,
}

/// Counts of sublist operations (`/subsz`).
#[derive(Debug, Default)]
struct SublistStats {
    inserts: AtomicU64,
    removes: AtomicU64,
    /// Lookups in the shared sublist (publishers' cache misses).
    matches: AtomicU64,
    /// Sum of the fan-out of those lookups.
    fanout: AtomicU64,
    max_fanout: AtomicU64,
}

/// What `/subsz` reports about the sublist.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SublistCounts {
    /// Subscriptions inserted so far.
    pub inserts: u64,
    /// Subscriptions removed so far.
    pub removes: u64,
    /// Lookups in the shared sublist.
    pub matches: u64,
    /// Sum of the subscriptions those lookups found.
    pub fanout: u64,
    /// Most subscriptions one lookup found.
    pub max_fanout: u64,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next connection id (starting at 1).
    pub fn next_cid(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a live connection; refuses it when `max` connections are already live.
    pub fn add_connection(&self, conn: Arc<Connection>, max: usize) -> bool {
        let mut conns = self.connections();
        if conns.by_cid.len() >= max {
            return false;
        }
        conns.by_cid.insert(conn.cid, conn);
        true
    }

    /// Forgets a connection, adds its final counters to the closed totals, and removes all its
    /// subscriptions.
    pub fn remove_connection(&self, conn: &Connection) {
        let counts = conn.counts();
        let reason = conn.outbound.close_reason();
        {
            let mut live = self.connections();
            if live.by_cid.remove(&conn.cid).is_some() {
                live.closed.add_closed(counts, reason);
            }
        }
        let subs: Vec<Arc<Subscription>> = conn.subs().drain().map(|(_, s)| s).collect();
        if subs.is_empty() {
            return;
        }
        let mut sublist = self.sublist_mut();
        for sub in &subs {
            if !sub.closed.swap(true, Ordering::Relaxed) {
                sublist.remove(&sub.subject, sub.queue.as_deref(), sub);
                self.sublist_stats.removes.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Every live connection.
    pub fn connections_snapshot(&self) -> Vec<Arc<Connection>> {
        self.connections().by_cid.values().cloned().collect()
    }

    /// Every live connection, and the counters of every closed one, taken together.
    pub fn connections_and_closed_totals(&self) -> (Vec<Arc<Connection>>, Totals) {
        let live = self.connections();
        (live.by_cid.values().cloned().collect(), live.closed)
    }

    /// The live connection `cid`.
    pub fn connection(&self, cid: u64) -> Option<Arc<Connection>> {
        self.connections().by_cid.get(&cid).cloned()
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.connections().by_cid.len()
    }

    /// Connections accepted so far (the last cid handed out).
    pub fn total_connections(&self) -> u64 {
        self.next_cid.load(Ordering::Relaxed)
    }

    /// Sublist statistics.
    pub fn sublist_counts(&self) -> SublistCounts {
        let s = &self.sublist_stats;
        SublistCounts {
            inserts: s.inserts.load(Ordering::Relaxed),
            removes: s.removes.load(Ordering::Relaxed),
            matches: s.matches.load(Ordering::Relaxed),
            fanout: s.fanout.load(Ordering::Relaxed),
            max_fanout: s.max_fanout.load(Ordering::Relaxed),
        }
    }

    /// Every subscription in the sublist, for `/subsz?subs=1` (without `matching`) or every
    /// subscription a publish to the literal subject `matching` would reach.
    pub fn subscriptions(&self, matching: Option<&[u8]>) -> Vec<SubSnapshot> {
        let subs: Vec<Arc<Subscription>> = match matching {
            Some(subject) => {
                let found = self
                    .sublist
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .matches(subject);
                found
                    .psubs
                    .iter()
                    .chain(found.qsubs.iter().flat_map(|g| g.members.iter()))
                    .cloned()
                    .collect()
            }
            None => self
                .connections_snapshot()
                .iter()
                .flat_map(|c| c.subs().values().cloned().collect::<Vec<_>>())
                .collect(),
        };
        subs.iter().map(|s| s.snapshot()).collect()
    }

    /// Adds a subscription to the sublist.
    pub fn subscribe(&self, sub: Arc<Subscription>) {
        let mut sublist = self.sublist_mut();
        sublist.insert(&sub.subject.clone(), sub.queue.clone().as_deref(), sub);
        self.generation.fetch_add(1, Ordering::Release);
        self.sublist_stats.inserts.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a subscription from the sublist (once; later calls do nothing).
    pub fn unsubscribe(&self, sub: &Arc<Subscription>) {
        if sub.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut sublist = self.sublist_mut();
        sublist.remove(&sub.subject, sub.queue.as_deref(), sub);
        self.generation.fetch_add(1, Ordering::Release);
        self.sublist_stats.removes.fetch_add(1, Ordering::Relaxed);
    }

    /// The current generation: read before `matches` so that a result is never cached under a
    /// generation newer than the state it saw.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every subscription matching the literal `subject`.
    pub fn matches(&self, subject: &[u8]) -> Matches {
        let found = {
            let sublist = self.sublist.read().unwrap_or_else(|p| p.into_inner());
            sublist.matches(subject)
        };
        // Only on a publisher's cache miss, which takes the sublist lock anyway.
        let fanout = (found.psubs.len() + found.qsubs.len()) as u64;
        let stats = &self.sublist_stats;
        stats.matches.fetch_add(1, Ordering::Relaxed);
        stats.fanout.fetch_add(fanout, Ordering::Relaxed);
        if fanout > stats.max_fanout.load(Ordering::Relaxed) {
            stats.max_fanout.fetch_max(fanout, Ordering::Relaxed);
        }
        Arc::new(found)
    }

    /// Number of subscriptions in the sublist.
    pub fn subscription_count(&self) -> usize {
        self.sublist
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .count()
    }

    /// True when the sublist holds no subscription and no trie node at all.
    pub fn sublist_is_empty(&self) -> bool {
        self.sublist
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn sublist_mut(&self) -> std::sync::RwLockWriteGuard<'_, Sublist<Subscription>> {
        self.sublist.write().unwrap_or_else(|p| p.into_inner())
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, Live> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}
