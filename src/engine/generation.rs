//! The generation numbers that keep publishers' cached match results honest, per region of the
//! subject space, so that a SUB or UNSUB invalidates only the cached subjects it could match.
//!
//! The account's `current` generation grows by one at every change of its sublist. Each change
//! also records its generation in one of [`BUCKETS`] buckets, chosen by the filter:
//!
//! - a literal filter (`foo.bar`) marks the "exact" bucket of its whole subject;
//! - a filter with a wildcard marks the "prefix" bucket of the literal tokens before its first
//!   wildcard (`foo.*.baz` and `foo.>` mark `foo`; `*.bar` and `>` mark the empty prefix).
//!
//! A literal subject of n tokens can only be matched by a literal filter equal to it, or by a
//! wildcard filter whose literal prefix is one of its n proper prefixes (the empty one
//! included). So the n + 1 buckets of a subject (its [`Stamp`]) cover every change that can
//! alter its match result: when none of them moved past the generation a result was computed
//! under, the result still holds. Buckets are shared by hashing (with a random seed per account,
//! so that nobody can aim at another's bucket), which can only make a cached result look stale
//! when it is not, never the other way round.
//!
//! Ordering: a writer (holding the sublist's write lock, so one at a time) stores the new
//! generation in the bucket before it publishes it as `current` (release); a reader that loads
//! `current` (acquire) and then finds the buckets unmoved knows every change up to that
//! generation missed its subject.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::proto::subject::{FWC, PWC, SEPARATOR};

/// Buckets per account (2 KiB; a bucket's number is a `u8`). With B buckets a change of an unrelated subject invalidates a
/// cached n-token subject with probability about (n + 1) / B.
pub const BUCKETS: usize = 256;

/// Tokens of a subject a [`Stamp`] can follow; a longer subject's cached result lasts only
/// while the account's sublist does not change at all (as before per-subject generations).
const MAX_TOKENS: usize = 7;

const PREFIX_TAG: u64 = 0x9e37_79b9_7f4a_7c15;
const EXACT_TAG: u64 = 0xc2b2_ae3d_27d4_eb4f;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The buckets a literal subject depends on.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    buckets: [u8; MAX_TOKENS + 1],
    /// How many of `buckets` are used; 0 when the subject is too long to follow.
    len: u8,
}

/// An account's generations: the current one and one per bucket.
#[derive(Debug)]
pub struct Generations {
    current: AtomicU64,
    buckets: Box<[AtomicU64]>,
    seed: u64,
}

impl Default for Generations {
    fn default() -> Self {
        Self::with_seed(fastrand::u64(..))
    }
}

impl Generations {
    /// Generation 0 everywhere, buckets chosen with `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Generations {
            current: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            seed,
        }
    }

    /// The current generation: read before a match so that a result is never taken for newer
    /// than the state it saw.
    #[inline]
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// Records a change of the subscriptions of each of `filters` as one new generation. The
    /// caller holds the sublist's write lock, and made the change before calling.
    pub fn changed<'a>(&self, filters: impl IntoIterator<Item = &'a [u8]>) {
        let next = self.current.load(Ordering::Relaxed) + 1;
        for filter in filters {
            self.buckets[self.bucket_of_filter(filter)].store(next, Ordering::Relaxed);
        }
        self.current.store(next, Ordering::Release);
    }

    /// The buckets of the literal `subject`.
    pub fn stamp(&self, subject: &[u8]) -> Stamp {
        let mut stamp = Stamp {
            buckets: [0; MAX_TOKENS + 1],
            len: 0,
        };
        let mut hash = self.seed;
        let mut len = 0;
        for &b in subject {
            if b == SEPARATOR {
                if len + 1 == MAX_TOKENS {
                    // A (MAX_TOKENS + 1)th token follows.
                    return Stamp { len: 0, ..stamp };
                }
                stamp.buckets[len] = bucket(hash, PREFIX_TAG);
                len += 1;
            }
            hash = fnv(hash, b);
        }
        // The last proper prefix is in; the empty prefix and the whole subject are left.
        stamp.buckets[len] = bucket(self.seed, PREFIX_TAG);
        stamp.buckets[len + 1] = bucket(hash, EXACT_TAG);
        stamp.len = len as u8 + 2;
        stamp
    }

    /// True when no change that could alter the match result of `stamp`'s subject happened
    /// after generation `base`. Call after loading [`Generations::current`].
    #[inline]
    pub fn unchanged_since(&self, stamp: &Stamp, base: u64) -> bool {
        stamp.len > 0
            && stamp.buckets[..stamp.len as usize]
                .iter()
                .all(|&b| self.buckets[b as usize].load(Ordering::Acquire) <= base)
    }

    /// The bucket a change of `filter` marks. One pass over the bytes, as [`Generations::stamp`]
    /// hashes a subject (this runs under the sublist's write lock at every SUB and UNSUB).
    fn bucket_of_filter(&self, filter: &[u8]) -> usize {
        let mut hash = self.seed;
        // The hash of the tokens before the current one (the prefix a wildcard there ends).
        let mut prefix = self.seed;
        let mut token_start = true;
        for (i, &b) in filter.iter().enumerate() {
            if token_start
                && (b == PWC[0] || b == FWC[0])
                && filter.get(i + 1).map_or(true, |&next| next == SEPARATOR)
            {
                return bucket(prefix, PREFIX_TAG) as usize;
            }
            token_start = b == SEPARATOR;
            if token_start {
                prefix = hash;
            }
            hash = fnv(hash, b);
        }
        bucket(hash, EXACT_TAG) as usize
    }
}

#[inline]
fn fnv(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(FNV_PRIME)
}

#[inline]
fn bucket(hash: u64, tag: u64) -> u8 {
    ((hash ^ tag).wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::subject;
    use proptest::prelude::*;

    fn buckets(stamp: &Stamp) -> &[u8] {
        &stamp.buckets[..stamp.len as usize]
    }

    #[test]
    fn a_stamp_has_one_bucket_per_token_and_one_more() {
        let g = Generations::with_seed(7);
        assert_eq!(buckets(&g.stamp(b"foo")).len(), 2);
        assert_eq!(buckets(&g.stamp(b"a.b.c.d.e.f.g")).len(), 8);
        // Too long to follow: only the account-wide generation holds it.
        assert_eq!(buckets(&g.stamp(b"a.b.c.d.e.f.g.h")).len(), 0);
        assert!(!g.unchanged_since(&g.stamp(b"a.b.c.d.e.f.g.h"), 0));
        assert!(g.unchanged_since(&g.stamp(b"a.b.c.d.e.f.g"), 0));
    }

    #[test]
    fn a_change_moves_the_generation_of_what_it_matches() {
        let g = Generations::with_seed(1);
        let stamp = g.stamp(b"foo.bar");
        for filter in ["foo.bar", "foo.*", "foo.>", "*.bar", ">", "*.*"] {
            let base = g.current();
            g.changed([filter.as_bytes()]);
            assert_eq!(g.current(), base + 1);
            assert!(!g.unchanged_since(&stamp, base), "{filter}");
            assert!(g.unchanged_since(&stamp, base + 1), "{filter}");
        }
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("ab".to_string()),
            "[a-z]{1,3}",
        ]
    }

    fn literal() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..10).prop_map(|t| t.join("."))
    }

    fn filter() -> impl Strategy<Value = String> {
        let tok = prop_oneof![4 => token(), 1 => Just("*".to_string())];
        (prop::collection::vec(tok, 1..10), any::<bool>()).prop_map(|(mut t, fwc)| {
            if fwc {
                let last = t.len() - 1;
                t[last] = ">".to_string();
            }
            t.join(".")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A filter that matches a subject marks one of the subject's buckets (or the subject
        /// is too long to follow), whatever the seed.
        #[test]
        fn a_matching_filter_marks_a_bucket_of_the_subject(
            seed in any::<u64>(),
            f in filter(),
            s in literal(),
        ) {
            let g = Generations::with_seed(seed);
            let stamp = g.stamp(s.as_bytes());
            if subject::matches(f.as_bytes(), s.as_bytes()) && stamp.len > 0 {
                let marked = g.bucket_of_filter(f.as_bytes()) as u8;
                prop_assert!(buckets(&stamp).contains(&marked), "{} {}", f, s);
            }
        }

        /// The same for filters made from the subject (so that most of them match it): some
        /// tokens replaced by `*`, the tail maybe by `>`.
        #[test]
        fn a_filter_made_from_the_subject_marks_one_of_its_buckets(
            seed in any::<u64>(),
            s in literal(),
            stars in prop::collection::vec(any::<bool>(), 10),
            tail in prop::option::of(0usize..10),
        ) {
            let g = Generations::with_seed(seed);
            let mut tokens: Vec<&str> = s
                .split('.')
                .zip(&stars)
                .map(|(t, &star)| if star { "*" } else { t })
                .collect();
            if let Some(at) = tail {
                let at = at % tokens.len();
                tokens.truncate(at);
                tokens.push(">");
            }
            let f = tokens.join(".");
            let stamp = g.stamp(s.as_bytes());
            prop_assert!(subject::matches(f.as_bytes(), s.as_bytes()), "{} {}", f, s);
            if stamp.len > 0 {
                let marked = g.bucket_of_filter(f.as_bytes()) as u8;
                prop_assert!(buckets(&stamp).contains(&marked), "{} {}", f, s);
            }
        }
    }
}
