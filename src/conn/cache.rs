//! What a publishing connection caches so that the common case takes no shared lock: match
//! results per subject (valid while the account's generation is unchanged) and publish
//! permission decisions.

use std::collections::HashMap;

use crate::engine::account::{Account, Matches};
use crate::engine::connection::Connection;
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

/// Match results by subject, valid while the router's generation is the one recorded.
#[derive(Default)]
pub struct MatchCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, Matches, ahash::RandomState>,
}

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
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        } else if let Some(found) = self.entries.get(subject) {
            return f(found);
        }
        let found = account.matches(subject);
        let result = f(&found);
        self.insert(subject, found);
        result
    }

    /// Caches a match result fetched from the account.
    #[inline(never)]
    fn insert(&mut self, subject: &[u8], found: Matches) {
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
        self.entries.insert(subject.into(), found);
    }
}
