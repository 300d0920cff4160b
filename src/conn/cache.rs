//! What a publishing connection caches so that the common case takes no shared lock: match
//! results per subject (valid while no change of the account's sublist could alter them) and
//! publish permission decisions.

use std::collections::HashMap;

use crate::engine::account::{Account, Matches};
use crate::engine::connection::Connection;
use crate::engine::generation::Stamp;
use crate::engine::permissions::Permissions;

/// Match results cached per connection (nats-server keeps 512, pruning randomly).
const MATCH_CACHE_SIZE: usize = 512;

/// Publish decisions cached per connection (nats-server's `maxPermCacheSize`).
const PUB_CACHE_SIZE: usize = 128;

/// Whether the user may publish to `subject`: the cached decision, else the lists (cached), else
/// a reply it was sent under `allow_responses` (counted, never cached), as nats-server's
/// `pubAllowedFullCheck`.
pub fn publish_allowed(
    cache: &mut HashMap<Box<[u8]>, bool, ahash::RandomState>,
    perms: &Permissions,
    conn: &Connection,
    subject: &[u8],
) -> bool {
    if !perms.restricts_publish() {
        return true;
    }
    if let Some(&allowed) = cache.get(subject) {
        return allowed;
    }
    let allowed = perms.can_publish(subject);
    if !allowed {
        if let Some(resp) = &perms.response {
            return conn.take_reply(subject, resp);
        }
    }
    if cache.len() >= PUB_CACHE_SIZE {
        let evict: Vec<Box<[u8]>> = cache.keys().take(PUB_CACHE_SIZE / 4).cloned().collect();
        for key in evict {
            cache.remove(&key);
        }
    }
    cache.insert(subject.into(), allowed);
    allowed
}

/// Cached match results by subject. Each is valid while no change of the account's sublist
/// could have altered it: checked with one load while the account's generation has not moved
/// since the entry was last found valid, else against the generation buckets of its subject
/// (see `engine::generation`), so that a SUB or UNSUB elsewhere in the subject space does not
/// send the publisher back to the sublist.
#[derive(Default)]
pub struct MatchCache {
    entries: HashMap<Box<[u8]>, Entry, ahash::RandomState>,
    /// The latest generation a lookup saw.
    seen: u64,
    /// The generation at which the entries no longer valid were last dropped.
    swept: u64,
}

struct Entry {
    matches: Matches,
    /// The generation the result was computed under.
    base: u64,
    /// The latest generation at which the result was known to hold.
    checked: u64,
    /// The generation buckets of the subject, computed at the first check (a subject
    /// published to once, or in a calm account, never needs them).
    stamp: Option<Stamp>,
}

/// Changes of the account's sublist after which the entries no longer valid are dropped at the
/// next lookup (releasing the subscriptions they hold, which a subject no longer published to
/// would keep otherwise).
const SWEEP_AFTER: u64 = 4096;

impl MatchCache {
    #[inline]
    pub fn lookup(&mut self, account: &Account, subject: &[u8]) -> Matches {
        self.with(account, subject, Matches::clone)
    }

    /// Runs `f` on the match result for `subject`, borrowed from the cache: no reference
    /// count taken and dropped per message, as [`MatchCache::lookup`] does.
    #[inline]
    pub fn with<R>(
        &mut self,
        account: &Account,
        subject: &[u8],
        f: impl FnOnce(&Matches) -> R,
    ) -> R {
        let generation = account.generation();
        if generation != self.seen {
            self.moved_to(account, generation);
        }
        if let Some(entry) = self.entries.get_mut(subject) {
            if entry.checked != generation {
                entry.recheck(account, subject, generation);
            }
            return f(&entry.matches);
        }
        let found = account.matches(subject);
        let result = f(&found);
        self.insert(subject, found, generation);
        result
    }

    /// The account's sublist changed since the last lookup: drops the entries no longer valid
    /// every [`SWEEP_AFTER`] changes.
    #[inline(never)]
    fn moved_to(&mut self, account: &Account, generation: u64) {
        self.seen = generation;
        if generation.wrapping_sub(self.swept) >= SWEEP_AFTER {
            self.swept = generation;
            self.entries.retain(|subject, e| {
                let valid = e.unchanged(account, subject);
                e.checked = generation;
                valid
            });
        }
    }

    /// Caches a match result fetched from the account under `generation`.
    #[inline(never)]
    fn insert(&mut self, subject: &[u8], found: Matches, generation: u64) {
        if self.entries.len() >= MATCH_CACHE_SIZE {
            // Drop every other entry (an arbitrary half, as the table orders them): one pass
            // per MATCH_CACHE_SIZE / 2 misses and no allocation, where evicting a few keys at
            // a time cost a key list per few misses when every publish misses (the load
            // generator's distinct-subjects scenario).
            let mut keep = false;
            self.entries.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        let entry = Entry {
            matches: found,
            base: generation,
            checked: generation,
            stamp: None,
        };
        self.entries.insert(subject.into(), entry);
    }
}

impl Entry {
    /// The account's sublist changed since this entry was last found valid: keeps the result
    /// if no change touched its subject, else matches again.
    #[inline(never)]
    fn recheck(&mut self, account: &Account, subject: &[u8], generation: u64) {
        if !self.unchanged(account, subject) {
            self.matches = account.matches(subject);
            self.base = generation;
        }
        self.checked = generation;
    }

    /// Whether no change since the result was computed could alter it.
    fn unchanged(&mut self, account: &Account, subject: &[u8]) -> bool {
        let stamp = self.stamp.get_or_insert_with(|| account.stamp(subject));
        account.unchanged_since(stamp, self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::deliver::{Deliveries, Message};
    use crate::engine::sublist::tests::{filter, token};
    use crate::engine::subscription::{Internal, Subscription};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    #[derive(Debug)]
    struct Nobody;

    impl Internal for Nobody {
        fn deliver(&self, _: &Subscription, _: &Message<'_>, _: &mut Deliveries) -> bool {
            false
        }
    }

    fn sub(filter: &str, queue: Option<&str>) -> Arc<Subscription> {
        Arc::new(Subscription::internal(Arc::new(Nobody), filter, queue))
    }

    type Shape = (BTreeSet<usize>, BTreeMap<Vec<u8>, BTreeSet<usize>>);

    /// A match result as sets of subscription identities.
    fn shape(m: &Matches) -> Shape {
        let id = |s: &Arc<Subscription>| Arc::as_ptr(s) as usize;
        let plain = m.psubs.iter().map(id).collect();
        let groups = m
            .qsubs
            .iter()
            .map(|g| (g.name.to_vec(), g.members.iter().map(id).collect()))
            .collect();
        (plain, groups)
    }

    #[test]
    fn a_change_elsewhere_keeps_a_cached_result() {
        let account = Account::new("A");
        let mut cache = MatchCache::default();
        account.subscribe(sub("orders.new", None));
        cache.lookup(&account, b"orders.new");
        let matched = |a: &Account| a.sublist_counts().matches;
        let before = matched(&account);
        // Each unrelated subject shares a bucket with the cached one by chance (3 in 256).
        let mut rematched = 0;
        for i in 0..20 {
            let other = sub(&format!("churn.{i}.x"), None);
            account.subscribe(other.clone());
            account.unsubscribe(&other);
            let at = matched(&account);
            assert_eq!(cache.lookup(&account, b"orders.new").psubs.len(), 1);
            rematched += matched(&account) - at;
        }
        assert!(
            rematched < 5,
            "{rematched} of 20 unrelated changes re-matched"
        );
        assert!(matched(&account) - before < 5);
        // A wildcard that matches it does invalidate it.
        let wild = sub("orders.*", None);
        account.subscribe(wild.clone());
        assert_eq!(cache.lookup(&account, b"orders.new").psubs.len(), 2);
        let all = sub(">", Some("q"));
        account.subscribe(all.clone());
        assert_eq!(cache.lookup(&account, b"orders.new").qsubs.len(), 1);
        account.unsubscribe_all(&[wild, all]);
        let m = cache.lookup(&account, b"orders.new");
        assert_eq!((m.psubs.len(), m.qsubs.len()), (1, 0));
    }

    #[test]
    fn entries_no_longer_valid_are_dropped_after_a_while() {
        let account = Account::new("A");
        let mut cache = MatchCache::default();
        let gone = sub("gone", None);
        account.subscribe(gone.clone());
        account.subscribe(sub("kept", None));
        cache.lookup(&account, b"gone");
        cache.lookup(&account, b"kept");
        account.unsubscribe(&gone);
        let other = sub("other", None);
        for _ in 0..SWEEP_AFTER / 2 {
            account.subscribe(other.clone());
            account.unsubscribe(&other);
            other
                .closed
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        cache.lookup(&account, b"kept");
        // The stale entry held the last reference to the subscription besides ours.
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(Arc::strong_count(&gone), 1);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Subscribe(String, Option<String>),
        Unsubscribe(usize),
        /// A closing connection's subscriptions: every one whose index is a multiple of n.
        UnsubscribeAll(usize),
        Publish(String),
    }

    /// Mostly short subjects; some past the tokens a stamp follows.
    fn literal() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::collection::vec(token(), 1..4),
            1 => prop::collection::vec(token(), 6..10),
        ]
        .prop_map(|t| t.join("."))
    }

    fn step() -> impl Strategy<Value = Step> {
        let queue = prop::option::weighted(0.2, Just("q".to_string()));
        prop_oneof![
            3 => (filter(), queue).prop_map(|(f, q)| Step::Subscribe(f, q)),
            2 => any::<usize>().prop_map(Step::Unsubscribe),
            1 => (2..5usize).prop_map(Step::UnsubscribeAll),
            6 => literal().prop_map(Step::Publish),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Through any sequence of changes, the cached result for a subject is the one the
        /// sublist gives uncached.
        #[test]
        fn agrees_with_the_sublist(steps in prop::collection::vec(step(), 1..120)) {
            let account = Account::new("A");
            let mut cache = MatchCache::default();
            let mut live: Vec<Arc<Subscription>> = Vec::new();
            for step in steps {
                match step {
                    Step::Subscribe(f, q) => {
                        let s = sub(&f, q.as_deref());
                        account.subscribe(s.clone());
                        live.push(s);
                    }
                    Step::Unsubscribe(i) if !live.is_empty() => {
                        let s = live.swap_remove(i % live.len());
                        account.unsubscribe(&s);
                    }
                    Step::Unsubscribe(_) => {}
                    Step::UnsubscribeAll(n) => {
                        let mut i = 0;
                        let (gone, kept): (Vec<_>, Vec<_>) = live.drain(..).partition(|_| {
                            i += 1;
                            i % n == 0
                        });
                        live = kept;
                        account.unsubscribe_all(&gone);
                    }
                    Step::Publish(subject) => {
                        let cached = cache.lookup(&account, subject.as_bytes());
                        let fresh = account.matches(subject.as_bytes());
                        prop_assert_eq!(shape(&cached), shape(&fresh), "{}", subject);
                    }
                }
            }
        }
    }
}
