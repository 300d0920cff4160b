//! An account: its own subject space (a sublist and the generation number that keeps the
//! publishers' match caches honest), its subject mappings, and the responses it owes to other
//! accounts through service imports.
//!
//! Messages never cross accounts except through an import. A stream import is an internal
//! subscription in the exporting account that republishes into the importer; a service import
//! is an internal subscription in the importing account that republishes the request into the
//! exporter with its reply rewritten to `_R_.<prefix>.<id>`, remembered here until the
//! response comes back (or, for stream and chunked responses, until `response_threshold`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::deliver::{self, Deliveries, Message};
use super::generation::{Generations, Stamp};
use super::leaf::Leaf;
use super::mapping::Mapping;
use super::msgtrace::AccountTrace;
use super::outbound::CloseReason;
use super::route::{self, LocalInterest, Route, Routes};
use super::stats::{Counts, SubSnapshot, Totals};
use super::sublist::{Sublist, SublistResult};
use super::subscription::{Internal, Subscription, Target};
use crate::proto::leaf as leaf_wire;

/// A match result shared by the sublist and the publishers' caches.
pub type Matches = Arc<SublistResult<Subscription>>;

/// The global account: every connection's when no accounts are configured.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// The system account's default name.
pub const SYSTEM_ACCOUNT: &str = "$SYS";

/// The prefix of the reply subjects service imports hand to exporters.
pub const SERVICE_REPLY_PREFIX: &str = "_R_.";

/// How a service export answers: once, or with several messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseType {
    /// One response; the mapping is forgotten after it.
    #[default]
    Singleton,
    /// Any number of responses until the threshold passes.
    Stream,
    /// Any number of responses (one response in parts) until the threshold passes.
    Chunked,
}

impl ResponseType {
    /// nats-server's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseType::Singleton => "Singleton",
            ResponseType::Stream => "Stream",
            ResponseType::Chunked => "Chunked",
        }
    }
}

/// nats-server's `DEFAULT_SERVICE_EXPORT_RESPONSE_THRESHOLD`.
pub const DEFAULT_RESPONSE_THRESHOLD: Duration = Duration::from_secs(120);

/// One account.
#[derive(Debug)]
pub struct Account {
    /// The account's name (`$G`, `$SYS`, or as configured).
    pub name: Arc<str>,
    /// Every subscription in this account. Read-locked on a cache miss, write-locked by SUB
    /// and UNSUB; never held together with a connection's `subs` lock or an outbound lock.
    sublist: RwLock<Sublist<Subscription>>,
    /// Moved (inside the write lock) by every change of the sublist, account-wide and in the
    /// bucket of the filter changed: a cached match result is valid while no bucket of its
    /// subject moved past the generation it was computed under.
    generations: Generations,
    /// Sublist statistics for `/subsz`, changed under the sublist lock or on a cache miss.
    stats: SublistStats,
    /// Set when `mappings` is not empty: a publisher without mappings pays one load.
    has_mappings: AtomicBool,
    /// Subject mappings, tried in order. Guards only the `Arc`.
    mappings: RwLock<Arc<[Mapping]>>,
    /// Set when `msg_trace` names a destination: only then is a header block searched for a
    /// W3C `traceparent`.
    has_msg_trace: AtomicBool,
    /// `msg_trace`: where messages carrying a sampled `traceparent` are traced. Guards only
    /// the `Arc`.
    msg_trace: RwLock<Option<Arc<AccountTrace>>>,
    /// Live client connections bound to the account.
    pub clients: AtomicUsize,
    /// The account's client connections on other servers of the cluster, as their
    /// `$SYS.SERVER.ACCOUNT.<acc>.CONNS` events last said (nats-server's `strack`), by
    /// server id; and their sum, read at every CONNECT of a limited account.
    remote_servers: Mutex<HashMap<String, usize>>,
    remote_clients: AtomicUsize,
    /// The final counters of this account's closed connections and how many were closed as
    /// slow consumers: nats-server's account statistics outlive the connections.
    closed: Mutex<Totals>,
    /// The internal subscriptions imports installed (here and in other accounts), so that a
    /// reload can take them out. Guards only the list.
    import_subs: Mutex<Vec<(Weak<Account>, Arc<Subscription>)>>,
    /// Responses this account owes through service imports, by reply subject.
    responses: Mutex<Responses>,
    /// `_R_.<random>.`: this account's prefix for the reply subjects it is handed.
    reply_prefix: String,
    /// The internal subscription to `<reply_prefix>>`, made at the first tracked request.
    response_sub: OnceLock<Arc<Subscription>>,
    /// Set for the system account.
    pub is_system: AtomicBool,
    /// The cluster's routes, told about changes of this account's local interest.
    routes: Arc<Routes>,
    /// Queue subscriptions of routes in this account: while there are none, a queue member is
    /// drawn without weighing each one.
    route_queue_subs: AtomicUsize,
    /// Local interest by subject and queue group, kept while the server is in a cluster.
    /// Held while routes are told of a change, so that they hear changes in order; taken
    /// before a route's outbound lock.
    interest: Mutex<LocalInterest>,
    /// The leafnode connections bound to this account. Held while one is told of a change of
    /// interest (and while one that attaches is told of all of it), so that each hears every
    /// change once and in order; taken before the sublist lock.
    leafs: Mutex<Vec<Arc<Leaf>>>,
    /// `$LDS.<random>`: this account's loop detection subject.
    loop_subject: OnceLock<String>,
    /// The interest of the leafnodes whose hub we are, by their cluster: routes hear of it as
    /// leaf-origin interest (`LS+ <origin> <acc> ...`). Held while routes are told of a change.
    leaf_interest: Mutex<HashMap<Bytes, LocalInterest>>,
}

/// Responses owed through service imports.
#[derive(Debug, Default)]
struct Responses {
    by_reply: HashMap<Bytes, Response, ahash::RandomState>,
    /// When expired entries were last swept.
    swept: Option<Instant>,
}

/// Where one response goes back to.
#[derive(Debug)]
struct Response {
    /// The requester's account.
    to: Weak<Account>,
    /// The requester's reply subject in its account.
    reply: Bytes,
    kind: ResponseType,
    threshold: Duration,
    /// When the request was forwarded or, for stream and chunked responses, last answered:
    /// as in nats-server, the threshold is the longest silence a response may follow.
    touched: Instant,
}

/// Tells each leafnode in `leafs` of subscriptions added or removed.
fn tell_leafs(leafs: &[Arc<Leaf>], subs: &[&Arc<Subscription>], added: bool) {
    for leaf in leafs {
        leaf.send(|b| {
            for sub in subs {
                leaf.count(sub, added, b);
            }
        });
    }
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

/// What `/subsz` reports about the sublists.
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

impl SublistCounts {
    /// Adds another account's counts.
    pub fn add(&mut self, other: SublistCounts) {
        self.inserts += other.inserts;
        self.removes += other.removes;
        self.matches += other.matches;
        self.fanout += other.fanout;
        self.max_fanout = self.max_fanout.max(other.max_fanout);
    }
}

impl Account {
    /// An empty account outside any cluster.
    pub fn new(name: &str) -> Account {
        Self::with_routes(name, Arc::new(Routes::default()))
    }

    /// An empty account whose local interest is announced on `routes`.
    pub fn with_routes(name: &str, routes: Arc<Routes>) -> Account {
        Account {
            routes,
            route_queue_subs: AtomicUsize::new(0),
            interest: Mutex::new(LocalInterest::default()),
            leafs: Mutex::new(Vec::new()),
            loop_subject: OnceLock::new(),
            leaf_interest: Mutex::new(HashMap::new()),
            name: name.into(),
            sublist: RwLock::new(Sublist::new()),
            generations: Generations::default(),
            stats: SublistStats::default(),
            has_mappings: AtomicBool::new(false),
            mappings: RwLock::new(Arc::from(Vec::new())),
            has_msg_trace: AtomicBool::new(false),
            msg_trace: RwLock::new(None),
            clients: AtomicUsize::new(0),
            remote_servers: Mutex::new(HashMap::new()),
            remote_clients: AtomicUsize::new(0),
            closed: Mutex::new(Totals::default()),
            import_subs: Mutex::new(Vec::new()),
            responses: Mutex::new(Responses::default()),
            reply_prefix: format!("{SERVICE_REPLY_PREFIX}{}.", random_token(6)),
            response_sub: OnceLock::new(),
            is_system: AtomicBool::new(false),
        }
    }

    /// Records that server `id` has `conns` client connections in this account (each update
    /// replaces that server's last one, so none depends on another arriving).
    pub fn update_remote_server(&self, id: &str, conns: usize) {
        let mut servers = self
            .remote_servers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if conns == 0 {
            servers.remove(id);
        } else {
            servers.insert(id.to_string(), conns);
        }
        self.remote_clients
            .store(servers.values().sum(), Ordering::Relaxed);
    }

    /// Forgets server `id` (it shut down).
    pub fn remove_remote_server(&self, id: &str) {
        self.update_remote_server(id, 0);
    }

    /// Client connections in this account on the other servers of the cluster.
    /// Adds a closed connection's final counters (and its close reason) to the account's.
    pub fn add_closed(&self, counts: Counts, reason: Option<CloseReason>) {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        closed.add_closed(counts, reason);
    }

    /// The counters of the account's closed connections.
    pub fn closed_totals(&self) -> Totals {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn remote_clients(&self) -> usize {
        self.remote_clients.load(Ordering::Relaxed)
    }

    /// Adds a subscription to the sublist.
    pub fn subscribe(&self, sub: Arc<Subscription>) {
        self.track_interest(&sub, true);
        let leafs = self.leafs();
        let mut sublist = self.sublist_mut();
        sublist.insert(&sub.subject, sub.queue.as_deref(), sub.clone());
        self.generations.changed([&sub.subject[..]]);
        self.stats.inserts.fetch_add(1, Ordering::Relaxed);
        drop(sublist);
        tell_leafs(&leafs, &[&sub], true);
    }

    /// Removes a subscription from the sublist (once; later calls do nothing).
    pub fn unsubscribe(&self, sub: &Arc<Subscription>) {
        if sub.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let leafs = self.leafs();
        let mut sublist = self.sublist_mut();
        sublist.remove(&sub.subject, sub.queue.as_deref(), sub);
        self.generations.changed([&sub.subject[..]]);
        self.stats.removes.fetch_add(1, Ordering::Relaxed);
        drop(sublist);
        tell_leafs(&leafs, &[sub], false);
        drop(leafs);
        self.track_interest(sub, false);
    }

    /// Removes many subscriptions under one lock (a closing connection's).
    pub fn unsubscribe_all(&self, subs: &[Arc<Subscription>]) {
        if subs.is_empty() {
            return;
        }
        let mut removed = Vec::new();
        let leafs = self.leafs();
        let mut sublist = self.sublist_mut();
        for sub in subs {
            if !sub.closed.swap(true, Ordering::Relaxed) {
                sublist.remove(&sub.subject, sub.queue.as_deref(), sub);
                self.stats.removes.fetch_add(1, Ordering::Relaxed);
                removed.push(sub);
            }
        }
        self.generations
            .changed(removed.iter().map(|sub| &sub.subject[..]));
        drop(sublist);
        tell_leafs(&leafs, &removed, false);
        drop(leafs);
        // As nats-server closes a client: plain subscriptions one by one, then each queue
        // group once, with its weight after all of the connection's members left.
        let (queued, plain): (Vec<_>, Vec<_>) = removed
            .into_iter()
            .partition(|s| s.queue.is_some() && !matches!(s.target, Target::Leaf(_)));
        for sub in plain {
            self.track_interest(sub, false);
        }
        self.untrack_queue_members(&queued);
    }

    /// Uncounts queue members from the interest routes hear of, announcing each group's final
    /// weight once.
    fn untrack_queue_members(&self, subs: &[&Arc<Subscription>]) {
        if subs.is_empty() || !self.routes.enabled() {
            return;
        }
        let mut interest = self.interest.lock().unwrap_or_else(|p| p.into_inner());
        let mut changes: Vec<(&Subscription, u32)> = Vec::new();
        for sub in subs {
            if !matches!(sub.target, Target::Client(_)) {
                continue;
            }
            if let Some(count) = interest.remove(&sub.subject, &sub.queue) {
                match changes
                    .iter_mut()
                    .find(|(s, _)| s.subject == sub.subject && s.queue == sub.queue)
                {
                    Some((_, last)) => *last = count,
                    None => changes.push((sub, count)),
                }
            }
        }
        for (sub, count) in changes {
            route::announce(
                &self.routes,
                self.name.as_bytes(),
                &sub.subject,
                sub.queue.as_deref(),
                count,
            );
        }
    }

    /// Counts a client subscription in the interest routes hear of, and tells them when it
    /// changes. Only in a cluster; routes' own interest and the server's internal
    /// subscriptions are not announced (one hop).
    fn track_interest(&self, sub: &Subscription, added: bool) {
        if !self.routes.enabled() {
            return;
        }
        if matches!(sub.target, Target::Route(_)) && sub.queue.is_some() {
            match added {
                true => self.route_queue_subs.fetch_add(1, Ordering::Relaxed),
                false => self.route_queue_subs.fetch_sub(1, Ordering::Relaxed),
            };
        }
        if let Target::Leaf(leaf) = &sub.target {
            // A spoke's interest stays with us (its hub links each server on its own).
            if !leaf.spoke {
                self.track_leaf_interest(sub, &leaf.remote_cluster, added);
            }
            return;
        }
        if !sub.announced() {
            return;
        }
        let mut interest = self.interest.lock().unwrap_or_else(|p| p.into_inner());
        let change = match added {
            true => interest.add(&sub.subject, &sub.queue),
            false => interest.remove(&sub.subject, &sub.queue),
        };
        if let Some(count) = change {
            route::announce(
                &self.routes,
                self.name.as_bytes(),
                &sub.subject,
                sub.queue.as_deref(),
                count,
            );
        }
    }

    /// This account's loop detection subject (`$LDS.<random>`): told to every leafnode; one
    /// that comes back from a leafnode is a loop.
    pub fn loop_subject(&self) -> &str {
        self.loop_subject
            .get_or_init(|| format!("{}{}", leaf_wire::LOOP_DETECTION_PREFIX, random_token(22)))
    }

    /// A leafnode connection bound to this account starts hearing of its interest: all of it
    /// now (with the loop detection subject), then every change.
    pub fn attach_leaf(&self, leaf: &Arc<Leaf>) {
        let mut leafs = self.leafs();
        let all = self.sublist.read().unwrap_or_else(|p| p.into_inner()).all();
        let subject = self.loop_subject().to_string();
        leaf.send(|b| {
            for sub in &all {
                leaf.count_initial(sub, b);
            }
            leaf_wire::encode_sub(b, subject.as_bytes(), None);
        });
        leafs.push(leaf.clone());
    }

    /// A leafnode connection closed.
    pub fn detach_leaf(&self, leaf: &Arc<Leaf>) {
        self.leafs().retain(|l| !Arc::ptr_eq(l, leaf));
    }

    /// How many leafnode connections are bound to this account.
    pub fn leaf_count(&self) -> usize {
        self.leafs().len()
    }

    fn leafs(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Leaf>>> {
        self.leafs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a subscription of a leafnode whose hub we are in the leaf-origin interest routes
    /// hear of, and tells them when it changes (`LS+`/`LS-` with the leaf's cluster).
    fn track_leaf_interest(&self, sub: &Subscription, origin: &Bytes, added: bool) {
        let mut all = self.leaf_interest.lock().unwrap_or_else(|p| p.into_inner());
        let interest = all.entry(origin.clone()).or_default();
        let change = match added {
            true => interest.add(&sub.subject, &sub.queue),
            false => interest.remove(&sub.subject, &sub.queue),
        };
        if let Some(count) = change {
            route::announce_leaf(
                &self.routes,
                origin,
                self.name.as_bytes(),
                &sub.subject,
                sub.queue.as_deref(),
                count,
            );
        }
    }

    /// Whether some route has a queue subscription here (queue members are then weighed).
    #[inline]
    pub fn has_route_queue_subs(&self) -> bool {
        self.route_queue_subs.load(Ordering::Relaxed) > 0
    }

    /// Runs `f` on this account's local interest, locked.
    pub fn with_interest<R>(&self, f: impl FnOnce(&LocalInterest) -> R) -> R {
        f(&self.interest.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sends this account's whole local interest to a route that just registered.
    pub fn send_interest(&self, route: &Route) {
        let interest = self.interest.lock().unwrap_or_else(|p| p.into_inner());
        interest.send_all(self.name.as_bytes(), route);
        drop(interest);
        let leafs = self.leaf_interest.lock().unwrap_or_else(|p| p.into_inner());
        for (origin, interest) in leafs.iter() {
            interest.send_all_from(origin, self.name.as_bytes(), route);
        }
    }

    /// The current generation: read before `matches` so that a result is never cached under a
    /// generation newer than the state it saw. It moves at every change of the sublist.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generations.current()
    }

    /// The generation buckets a publish to the literal `subject` depends on.
    pub fn stamp(&self, subject: &[u8]) -> Stamp {
        self.generations.stamp(subject)
    }

    /// True when no change of the sublist since generation `base` could alter the match
    /// result of the subject `stamp` was made for.
    #[inline]
    pub fn unchanged_since(&self, stamp: &Stamp, base: u64) -> bool {
        self.generations.unchanged_since(stamp, base)
    }

    /// Every subscription matching the literal `subject`.
    pub fn matches(&self, subject: &[u8]) -> Matches {
        let found = {
            let sublist = self.sublist.read().unwrap_or_else(|p| p.into_inner());
            sublist.matches(subject)
        };
        // Only on a publisher's cache miss, which takes the sublist lock anyway.
        let fanout = (found.psubs.len() + found.qsubs.len()) as u64;
        let stats = &self.stats;
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

    /// Sublist statistics.
    pub fn sublist_counts(&self) -> SublistCounts {
        let s = &self.stats;
        SublistCounts {
            inserts: s.inserts.load(Ordering::Relaxed),
            removes: s.removes.load(Ordering::Relaxed),
            matches: s.matches.load(Ordering::Relaxed),
            fanout: s.fanout.load(Ordering::Relaxed),
            max_fanout: s.max_fanout.load(Ordering::Relaxed),
        }
    }

    /// Every subscription a publish to the literal `subject` would reach, for `/subsz?test=`.
    pub fn matching_snapshots(&self, subject: &[u8]) -> Vec<SubSnapshot> {
        let found = self
            .sublist
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .matches(subject);
        found
            .psubs
            .iter()
            .chain(found.qsubs.iter().flat_map(|g| g.members.iter()))
            .map(|s| s.snapshot())
            .collect()
    }

    /// Puts subject mappings in force (at start and on reload).
    pub fn set_mappings(&self, mappings: Vec<Mapping>) {
        let empty = mappings.is_empty();
        *self.mappings.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(mappings);
        self.has_mappings.store(!empty, Ordering::Release);
    }

    /// Puts the account's `msg_trace` in force (at start and on reload).
    pub fn set_msg_trace(&self, trace: Option<AccountTrace>) {
        let on = trace.is_some();
        *self.msg_trace.write().unwrap_or_else(|p| p.into_inner()) = trace.map(Arc::new);
        self.has_msg_trace.store(on, Ordering::Release);
    }

    /// Whether `msg_trace` names a destination (one load: checked for every message with
    /// headers).
    #[inline]
    pub fn has_msg_trace(&self) -> bool {
        self.has_msg_trace.load(Ordering::Acquire)
    }

    /// The account's `msg_trace`, if any.
    pub fn msg_trace(&self) -> Option<Arc<AccountTrace>> {
        self.msg_trace
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The subject a publish to `subject` goes to, when a mapping applies.
    #[inline]
    pub fn map_subject(&self, subject: &[u8]) -> Option<Vec<u8>> {
        if !self.has_mappings.load(Ordering::Acquire) {
            return None;
        }
        self.map_subject_listed(subject)
    }

    /// [`Account::map_subject`] once the account has mappings (out of line: the check above
    /// runs on every publish).
    #[inline(never)]
    fn map_subject_listed(&self, subject: &[u8]) -> Option<Vec<u8>> {
        let mappings = self
            .mappings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        mappings.iter().find_map(|m| m.apply(subject))
    }

    /// Installs an import's internal subscription in `host` (this account or the exporter),
    /// remembered so that [`Account::clear_imports`] can take it out again.
    pub fn add_import_sub(&self, host: &Arc<Account>, sub: Arc<Subscription>) {
        host.subscribe(sub.clone());
        self.import_subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Arc::downgrade(host), sub));
    }

    /// Removes every internal subscription this account's imports installed.
    pub fn clear_imports(&self) {
        let subs = std::mem::take(&mut *self.import_subs.lock().unwrap_or_else(|p| p.into_inner()));
        for (host, sub) in subs {
            if let Some(host) = host.upgrade() {
                host.unsubscribe(&sub);
            }
        }
    }

    /// Remembers that a request forwarded into this account through a service import must be
    /// answered on `reply` in `to`; returns the reply subject to hand the responder here.
    pub fn track_response(
        self: &Arc<Self>,
        to: &Arc<Account>,
        reply: &[u8],
        kind: ResponseType,
        threshold: Duration,
    ) -> Bytes {
        self.response_sub.get_or_init(|| {
            let target: Arc<dyn Internal> = Arc::new(ResponseRoute {
                exporter: Arc::downgrade(self),
            });
            let sub = Arc::new(Subscription::internal(
                target,
                &format!("{}>", self.reply_prefix),
                None,
            ));
            self.subscribe(sub.clone());
            sub
        });
        let now = Instant::now();
        let mut responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        if responses
            .swept
            .map_or(true, |at| now.duration_since(at) > Duration::from_secs(1))
        {
            responses.swept = Some(now);
            responses
                .by_reply
                .retain(|_, r| now.duration_since(r.touched) <= r.threshold);
        }
        // `_R_.<account's token>.<request's token>`, as nats-server makes them.
        let subject = loop {
            let subject = Bytes::from(format!("{}{}", self.reply_prefix, random_token(6)));
            if !responses.by_reply.contains_key(&subject) {
                break subject;
            }
        };
        responses.by_reply.insert(
            subject.clone(),
            Response {
                to: Arc::downgrade(to),
                reply: Bytes::copy_from_slice(reply),
                kind,
                threshold,
                touched: now,
            },
        );
        subject
    }

    /// Responses currently tracked (for monitoring and tests).
    pub fn tracked_responses(&self) -> usize {
        self.responses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_reply
            .len()
    }

    /// Where a response published on `subject` goes: the requester's account and reply. A
    /// singleton's mapping is used up; a stream's is kept alive by each response; an expired
    /// one is forgotten.
    fn take_response(&self, subject: &[u8]) -> Option<(Arc<Account>, Bytes)> {
        let mut responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        let entry = responses.by_reply.get_mut(subject)?;
        let now = Instant::now();
        let expired = now.duration_since(entry.touched) > entry.threshold;
        entry.touched = now;
        let found = (!expired)
            .then(|| entry.to.upgrade().map(|to| (to, entry.reply.clone())))
            .flatten();
        if expired || entry.kind == ResponseType::Singleton {
            responses.by_reply.remove(subject);
        }
        found
    }

    fn sublist_mut(&self) -> std::sync::RwLockWriteGuard<'_, Sublist<Subscription>> {
        self.sublist.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The exporter's subscription to its `_R_` replies: sends each response back to the
/// requester's account and reply subject.
#[derive(Debug)]
struct ResponseRoute {
    exporter: Weak<Account>,
}

impl Internal for ResponseRoute {
    fn deliver(&self, _sub: &Subscription, msg: &Message<'_>, out: &mut Deliveries) -> bool {
        let Some(exporter) = self.exporter.upgrade() else {
            return false;
        };
        let Some((to, reply)) = exporter.take_response(msg.subject) else {
            return false;
        };
        let response = Message {
            subject: &reply,
            ..*msg
        };
        deliver::publish(&to, &response, out)
    }
}

/// `n` random characters from nats-server's base-62 alphabet.
pub fn random_token(n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| DIGITS[fastrand::usize(..DIGITS.len())] as char)
        .collect()
}
