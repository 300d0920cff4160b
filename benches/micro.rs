//! Micro-benchmarks of the pure core, without a framework: `cargo bench --bench micro`.
//! Numbers are for spotting regressions on one machine, not for comparing machines; the
//! side-by-side load generator against nats-server is the judge of the server as a whole.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern::parser::{parse, Limits};
use tern::sublist::Sublist;

/// Runs `f` repeatedly for about a second and prints nanoseconds per call.
fn bench(name: &str, mut f: impl FnMut()) {
    for _ in 0..1000 {
        f();
    }
    let mut calls = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            f();
        }
        calls += 1000;
    }
    let ns = start.elapsed().as_nanos() as f64 / calls as f64;
    println!("{name:<40} {ns:>10.1} ns/op");
}

fn main() {
    let limits = Limits::default();
    let batch: Vec<u8> = "PUB orders.eu.new 16\r\n0123456789abcdef\r\n"
        .repeat(1000)
        .into_bytes();
    bench("parse a batch of 1000 PUBs of 16 B", || {
        let mut at = 0;
        while let Ok(Some((op, n))) = parse(&batch[at..], &limits) {
            black_box(op);
            at += n;
        }
    });

    let mut sublist = Sublist::new();
    for i in 0..10_000u32 {
        sublist.insert(format!("svc.{}.req", i).as_bytes(), None, Arc::new(i));
    }
    sublist.insert(b"svc.*.req", None, Arc::new(1_000_001));
    sublist.insert(b"svc.>", Some(b"q"), Arc::new(1_000_002));
    bench("sublist match, 10k subs, literal + * + >", || {
        black_box(sublist.matches(black_box(b"svc.4242.req")));
    });
    bench("sublist match, no interest", || {
        black_box(sublist.matches(black_box(b"other.subject")));
    });
}
