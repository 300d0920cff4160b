//! Micro-benchmarks of the points that every core running tern shares (BENCHMARKS.md,
//! "Cores"), each with 1, 2 and 4 threads at once: `cargo bench --bench micro_contended`
//! (add `-- --quick` for a short run, or a filter such as `-- outbound`).
//!
//! - the publisher's match cache (the account's generation, read on every publish), calm and
//!   with a SUB + UNSUB churner in the same account (every change invalidates every
//!   publisher's cache, so lookups fall through to the sublist's read lock);
//! - the sublist's read lock itself (a cache miss), calm and beside a writer;
//! - one subscriber's outbound queue (a mutex every delivery takes) appended to by several
//!   publisher threads (fan-in), against each thread its own subscriber, with a writer taking
//!   the queue as the connection's writer task does;
//! - a subscription's delivery count (an atomic every delivery adds to), shared against each
//!   thread its own;
//! - for reference, one counter all threads add to against one counter each: the pattern the
//!   monitoring counters avoid on the hot path (`engine/stats.rs`).
//!
//! Each iteration is one operation on every thread at once: the time per iteration is what
//! one operation costs a thread when the others do the same, and the throughput counts the
//! operations of all threads. On a 2-core machine 4 threads oversubscribe the cores (the
//! cost of a lock holder descheduled shows there).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use tern::conn::cache::MatchCache;
use tern::engine::account::Account;
use tern::engine::connection::Connection;
use tern::engine::outbound::Outbound;
use tern::engine::subscription::Subscription;

const THREADS: [usize; 3] = [1, 2, 4];

/// Runs `op` `iters` times on each of `threads` threads released together, each on state made
/// by `make(thread)`; returns the time from the release to the last thread's end.
fn parallel<S>(
    threads: usize,
    iters: u64,
    make: impl Fn(usize) -> S + Sync,
    op: impl Fn(&mut S, u64) + Sync,
) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let start = std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, make, op) = (&barrier, &make, &op);
            s.spawn(move || {
                let mut state = make(t);
                barrier.wait();
                for i in 0..iters {
                    op(&mut state, i);
                }
            });
        }
        barrier.wait();
        Instant::now()
    });
    start.elapsed()
}

/// Runs `body` while a thread runs `background` in a loop (until `body` returns).
fn beside<T>(background: impl Fn() + Sync, body: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                background();
            }
        });
        let out = body();
        stop.store(true, Ordering::Relaxed);
        out
    })
}

fn connection(account: &Arc<Account>, cid: u64) -> Arc<Connection> {
    Arc::new(Connection::new(
        cid,
        usize::MAX / 4,
        "bench",
        ([127, 0, 0, 1], 4222).into(),
        account.clone(),
    ))
}

fn subscription(conn: &Arc<Connection>, subject: String, sid: usize) -> Arc<Subscription> {
    Arc::new(Subscription::new(
        conn.clone(),
        subject.as_bytes(),
        None,
        sid.to_string().as_bytes(),
    ))
}

/// An account with 10,000 literal subscriptions `svc.N.req` and `svc.*.req`, and a churner:
/// one SUB + UNSUB pair of a subject no publisher uses per call.
fn account() -> (Arc<Account>, impl Fn() + Sync) {
    let account = Arc::new(Account::new("$G"));
    let conn = connection(&account, 1);
    for i in 0..10_000 {
        account.subscribe(subscription(&conn, format!("svc.{i}.req"), i));
    }
    account.subscribe(subscription(&conn, "svc.*.req".into(), 10_000));
    let churning = account.clone();
    let churn = move || {
        let sub = subscription(&conn, "churn.x".into(), 99_999);
        churning.subscribe(sub.clone());
        churning.unsubscribe(&sub);
    };
    (account, churn)
}

/// Benchmarks `run(threads, iters)` with 1, 2 and 4 threads in `group`, calm and beside a
/// thread running `churn` in a loop.
fn calm_and_churned(
    c: &mut Criterion,
    group: &str,
    churn: impl Fn() + Sync,
    run: impl Fn(usize, u64) -> Duration,
) {
    let mut group = c.benchmark_group(group);
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(BenchmarkId::new("calm", threads), |b| {
            b.iter_custom(|iters| run(threads, iters))
        });
        group.bench_function(
            BenchmarkId::new("beside a SUB+UNSUB churner", threads),
            |b| b.iter_custom(|iters| beside(&churn, || run(threads, iters))),
        );
    }
    group.finish();
}

fn match_cache(c: &mut Criterion) {
    let (account, churn) = account();
    let group = "contended: publisher match cache, 10k subscriptions";
    calm_and_churned(c, group, churn, |threads, iters| {
        parallel(
            threads,
            iters,
            |_| MatchCache::default(),
            |cache, i| {
                let subject: &[u8] = if i % 2 == 0 {
                    b"svc.42.req"
                } else {
                    b"svc.4242.req"
                };
                black_box(cache.lookup(&account, subject));
            },
        )
    });
}

fn sublist_lock(c: &mut Criterion) {
    let (account, churn) = account();
    let group = "contended: sublist match (read lock), 10k subscriptions";
    calm_and_churned(c, group, churn, |threads, iters| {
        parallel(
            threads,
            iters,
            |_| (),
            |_, _| {
                black_box(account.matches(b"svc.4242.req"));
            },
        )
    });
}

/// A 16-byte message as a subscriber's queue holds it.
const FRAME: &[u8] = b"MSG bench.fan 1 16\r\n0123456789abcdef\r\n";

/// What a connection's writer task does, without the socket: takes what is queued (here
/// every 20 µs, about what a loopback write of a batch takes) and counts it written.
fn drain(outbound: &Outbound) {
    let mut taken = BytesMut::new();
    let mut chunks = Vec::new();
    outbound.take(&mut taken, &mut chunks);
    black_box((&taken, &chunks));
    outbound.written();
    std::thread::sleep(Duration::from_micros(20));
}

fn outbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended: outbound queue append, 16 B MSG");
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        let queues: Vec<Outbound> = (0..threads)
            .map(|_| Outbound::new(usize::MAX / 4))
            .collect();
        let append = |queue: &Outbound| {
            black_box(queue.append(Some(16), |b| b.extend_from_slice(FRAME)));
        };
        group.bench_function(
            BenchmarkId::new("each publisher its own subscriber", threads),
            |b| {
                b.iter_custom(|iters| {
                    beside(
                        || queues.iter().for_each(drain),
                        || parallel(threads, iters, |t| &queues[t], |q, _| append(q)),
                    )
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("all publishers to one subscriber", threads),
            |b| {
                b.iter_custom(|iters| {
                    beside(
                        || drain(&queues[0]),
                        || parallel(threads, iters, |_| &queues[0], |q, _| append(q)),
                    )
                })
            },
        );
    }
    group.finish();
}

fn delivery_count(c: &mut Criterion) {
    let account = Arc::new(Account::new("$G"));
    let conn = connection(&account, 1);
    let mut group = c.benchmark_group("contended: subscription delivery count");
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        let subs: Vec<_> = (0..threads)
            .map(|t| subscription(&conn, format!("s.{t}"), t))
            .collect();
        group.bench_function(BenchmarkId::new("each thread its own", threads), |b| {
            b.iter_custom(|iters| {
                parallel(
                    threads,
                    iters,
                    |t| &subs[t],
                    |s, _| {
                        black_box(s.claim_delivery());
                    },
                )
            })
        });
        group.bench_function(BenchmarkId::new("one shared (fan-in)", threads), |b| {
            b.iter_custom(|iters| {
                parallel(
                    threads,
                    iters,
                    |_| &subs[0],
                    |s, _| {
                        black_box(s.claim_delivery());
                    },
                )
            })
        });
    }
    group.finish();
}

/// A counter alone on its cache line.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

fn counters(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended: a counter per message (reference)");
    for threads in THREADS {
        group.throughput(Throughput::Elements(threads as u64));
        let counters: Vec<Padded> = (0..threads).map(|_| Padded::default()).collect();
        group.bench_function(BenchmarkId::new("one per thread", threads), |b| {
            b.iter_custom(|iters| {
                parallel(
                    threads,
                    iters,
                    |t| &counters[t].0,
                    |n, _| {
                        n.fetch_add(1, Ordering::Relaxed);
                    },
                )
            })
        });
        group.bench_function(BenchmarkId::new("one shared", threads), |b| {
            b.iter_custom(|iters| {
                parallel(
                    threads,
                    iters,
                    |_| &counters[0].0,
                    |n, _| {
                        n.fetch_add(1, Ordering::Relaxed);
                    },
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = match_cache, sublist_lock, outbound, delivery_count, counters
}
criterion_main!(benches);
