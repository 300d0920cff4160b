//! Micro-benchmarks of the pure core with criterion: `cargo bench --bench micro` (add
//! `-- --quick` for a short run, or a filter such as `-- sublist`).
//!
//! Numbers are for spotting regressions on one machine, not for comparing machines; the
//! side-by-side load generator against nats-server (`cargo bench --bench loadgen`) is the judge
//! of the server as a whole.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tern::engine::account::{Account, Matches};
use tern::engine::connection::Connection;
use tern::engine::sublist::Sublist;
use tern::engine::subscription::Subscription;
use tern::proto::parser::{parse, Limits};
use tern::proto::protocol::encode_msg;

/// Frames per parser batch.
const BATCH: usize = 1000;

/// Parses a whole batch; returns the operations seen (so nothing is optimised away).
fn parse_all(batch: &[u8], limits: &Limits) -> usize {
    let mut at = 0;
    let mut ops = 0;
    while let Ok(Some((op, n))) = parse(&batch[at..], limits) {
        black_box(&op);
        at += n;
        ops += 1;
    }
    assert_eq!(at, batch.len(), "the batch must parse whole");
    ops
}

fn parser(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parser");

    let pubs = "PUB orders.eu.new 16\r\n0123456789abcdef\r\n"
        .repeat(BATCH)
        .into_bytes();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("1000 PUBs of 16 B", |b| {
        b.iter(|| parse_all(black_box(&pubs), &limits))
    });

    let headers = "NATS/1.0\r\nTrace-Id: 4bf92f3577b34da6\r\n\r\n";
    let hpub = format!(
        "HPUB orders.eu.new _INBOX.abc.1 {} {}\r\n{headers}0123456789abcdef\r\n",
        headers.len(),
        headers.len() + 16
    );
    let hpubs = hpub.repeat(BATCH).into_bytes();
    group.bench_function("1000 HPUBs with reply, headers + 16 B", |b| {
        b.iter(|| parse_all(black_box(&hpubs), &limits))
    });

    let payload = "x".repeat(1024);
    let big = format!("PUB telemetry.eu.host42 1024\r\n{payload}\r\n")
        .repeat(BATCH)
        .into_bytes();
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("1000 PUBs of 1 KB (payload-heavy)", |b| {
        b.iter(|| parse_all(black_box(&big), &limits))
    });

    // What a busy service connection sends: mostly messages, with subscriptions coming and
    // going and pings in between.
    let mut mixed = String::new();
    for i in 0..BATCH / 10 {
        for _ in 0..4 {
            mixed.push_str("PUB orders.eu.new 16\r\n0123456789abcdef\r\n");
        }
        mixed.push_str(&format!(
            "PUB svc.req _INBOX.x.{i} 16\r\n0123456789abcdef\r\n"
        ));
        mixed.push_str("HPUB orders.eu.new 12 28\r\nNATS/1.0\r\n\r\n0123456789abcdef\r\n");
        mixed.push_str(&format!("SUB _INBOX.x.{i} {i}\r\n"));
        mixed.push_str(&format!("UNSUB {i} 1\r\n"));
        mixed.push_str("PING\r\n");
        mixed.push_str("PONG\r\n");
    }
    let mixed = mixed.into_bytes();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("1000 ops, message-heavy mix", |b| {
        b.iter(|| parse_all(black_box(&mixed), &limits))
    });
    group.finish();

    // The other half of every delivery: the MSG frame a subscriber is sent.
    let mut group = c.benchmark_group("protocol");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut out = BytesMut::with_capacity(64 * 1024);
    group.bench_function("encode 1000 MSGs of 16 B", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..BATCH {
                encode_msg(
                    &mut out,
                    black_box(b"orders.eu.new"),
                    black_box(b"42"),
                    None,
                    black_box(b"0123456789abcdef"),
                );
            }
            black_box(out.len())
        })
    });
    group.finish();
}

/// 10,000 literal subscriptions `svc.N.req`, plus `extra`.
fn sublist_with(extra: &[(&[u8], Option<&[u8]>)]) -> Sublist<u32> {
    let mut sublist = Sublist::new();
    for i in 0..10_000u32 {
        sublist.insert(format!("svc.{i}.req").as_bytes(), None, Arc::new(i));
    }
    for (n, (subject, queue)) in extra.iter().enumerate() {
        sublist.insert(subject, *queue, Arc::new(1_000_000 + n as u32));
    }
    sublist
}

fn sublist(c: &mut Criterion) {
    let mut group = c.benchmark_group("sublist, 10k subscriptions");

    let literal = sublist_with(&[]);
    group.bench_function("match literal", |b| {
        b.iter(|| literal.matches(black_box(b"svc.4242.req")))
    });
    group.bench_function("match nothing", |b| {
        b.iter(|| literal.matches(black_box(b"other.subject.here")))
    });

    let pwc = sublist_with(&[(b"svc.*.req", None)]);
    group.bench_function("match literal + *", |b| {
        b.iter(|| pwc.matches(black_box(b"svc.4242.req")))
    });
    group.bench_function("match * only", |b| {
        b.iter(|| pwc.matches(black_box(b"svc.new.req")))
    });

    let fwc = sublist_with(&[(b"svc.>", None), (b"svc.>", Some(b"workers"))]);
    group.bench_function("match literal + > + queue >", |b| {
        b.iter(|| fwc.matches(black_box(b"svc.4242.req")))
    });
    group.bench_function("match > only, 5 tokens", |b| {
        b.iter(|| fwc.matches(black_box(b"svc.a.b.c.d")))
    });

    let mut churn = sublist_with(&[(b"svc.*.req", None)]);
    let sub = Arc::new(7u32);
    group.bench_function("insert + remove", |b| {
        b.iter(|| {
            churn.insert(black_box(b"svc.new.req"), None, sub.clone());
            churn.remove(black_box(b"svc.new.req"), None, &sub)
        })
    });
    group.finish();
}

/// A copy of the per-connection match cache in `client.rs` (private there): results by subject,
/// valid while the account's generation is the one recorded.
struct MatchCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, Matches, ahash::RandomState>,
}

impl MatchCache {
    fn lookup(&mut self, router: &Account, subject: &[u8]) -> Matches {
        let generation = router.generation();
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        } else if let Some(found) = self.entries.get(subject) {
            return found.clone();
        }
        let found = router.matches(subject);
        self.entries.insert(subject.into(), found.clone());
        found
    }
}

fn router(c: &mut Criterion) {
    let router = Arc::new(Account::new("$G"));
    let conn = Arc::new(Connection::new(
        1,
        64 << 20,
        "bench",
        ([127, 0, 0, 1], 4222).into(),
        router.clone(),
    ));
    let subscribe = |subject: String, sid: usize| {
        router.subscribe(Arc::new(Subscription::new(
            conn.clone(),
            Bytes::from(subject),
            None,
            Bytes::from(sid.to_string()),
        )));
    };
    for i in 0..10_000 {
        subscribe(format!("svc.{i}.req"), i);
    }
    subscribe("svc.*.req".into(), 10_000);
    subscribe("svc.>".into(), 10_001);

    let mut group = c.benchmark_group("account match, 10k subscriptions");
    let mut cache = MatchCache {
        generation: router.generation(),
        entries: HashMap::default(),
    };
    cache.lookup(&router, b"svc.4242.req");
    group.bench_function("cache hit", |b| {
        b.iter(|| cache.lookup(&router, black_box(b"svc.4242.req")))
    });
    group.bench_function("cache miss (read lock, trie, Arc)", |b| {
        b.iter(|| router.matches(black_box(b"svc.4242.req")))
    });
    // A miss because a SUB or UNSUB elsewhere moved the router's generation on: the cache is
    // cleared and the match recomputed and cached again. (Forcing a stale generation stands in
    // for the SUB, whose own cost is not part of the lookup.)
    group.bench_function("cache invalidated by a SUB or UNSUB", |b| {
        b.iter(|| {
            cache.generation = u64::MAX;
            cache.lookup(&router, black_box(b"svc.4242.req"))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = parser, sublist, router
}
criterion_main!(benches);
