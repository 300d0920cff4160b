//! `tern bench <subject>`: publishers and subscribers on their own connections, a live
//! progress line on stderr, and a summary of rates and delivery latency.
//!
//! Each payload starts with the nanoseconds since the run began at the moment it was
//! published (when the size leaves room for them); publishers and subscribers share one clock
//! in this process, so a subscriber's receive time minus that stamp is the message's latency
//! through the server, queueing included.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::json;

use super::commands::{check_literal, check_size, client_timeout, connect};
use super::wire;
use super::{parse_args, Done, Outcome};

const USAGE: &str = "\
Usage: tern bench <subject> [options]
Publishes --msgs messages from --pub connections and receives them on --sub connections.
  --pub <n>            publishers (default 1)
  --sub <n>            subscribers (default 1; 0 measures publishing alone)
  --msgs <n>           messages in all, shared among the publishers (default 100000)
  --size <bytes>       payload size (default 128)
";

/// Bytes of `PUB`s a publisher writes at once.
const BATCH: usize = 32 * 1024;

/// Stamped payloads carry 8 bytes of send time.
const STAMP: usize = 8;

/// `tern bench <subject>`
pub async fn run(rest: &[String]) -> Outcome {
    let own = [("pub", true), ("sub", true), ("msgs", true), ("size", true)];
    let args = match parse_args(rest, &own, USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let subject = args.positional(0, "subject")?.to_string();
    check_literal(&subject)?;
    let publishers = args.number("pub", 1)?.max(1);
    let subscribers = args.number("sub", 1)?;
    let msgs = args.number("msgs", 100_000)?;
    let size = args.number("size", 128)? as usize;
    let json_out = args.flag("json");

    let mut subs = Vec::new();
    for _ in 0..subscribers {
        let client = connect(&args, "bench").await?;
        let sub = client.subscribe(&subject, None).await?;
        client.flush(client_timeout(&args)?).await?;
        subs.push((client, sub));
    }
    let mut pubs = Vec::new();
    for _ in 0..publishers {
        let client = connect(&args, "bench").await?;
        check_size(&client, None, size)?;
        pubs.push(client);
    }

    let epoch = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let expected_each = msgs;
    let mut sub_tasks = Vec::new();
    for (client, mut sub) in subs {
        let received = received.clone();
        sub_tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(expected_each.min(1 << 22) as usize);
            let mut count = 0u64;
            let mut last = Instant::now();
            // A subscriber gives up once nothing arrived for 5 s: the rest was lost.
            while count < expected_each {
                // A timer only when the queue is empty: not one per message.
                let next = match sub.try_next() {
                    Some(msg) => Ok(Some(msg)),
                    None => tokio::time::timeout(Duration::from_secs(5), sub.next()).await,
                };
                match next {
                    Ok(Some(msg)) => {
                        count += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                        last = Instant::now();
                        if let Some(stamp) = msg.payload.get(..STAMP) {
                            let sent = u64::from_le_bytes(stamp.try_into().unwrap_or_default());
                            let now = epoch.elapsed().as_nanos() as u64;
                            latencies.push(now.saturating_sub(sent));
                        }
                    }
                    _ => break,
                }
            }
            drop(client);
            (count, last, latencies)
        }));
    }

    let progress = tokio::spawn(show_progress(
        published.clone(),
        received.clone(),
        msgs,
        msgs * subscribers,
        json_out,
    ));
    let mut pub_tasks = Vec::new();
    for (i, client) in pubs.into_iter().enumerate() {
        let share = msgs / publishers + u64::from((i as u64) < msgs % publishers);
        let subject = subject.clone();
        let published = published.clone();
        let timeout = client_timeout(&args)?;
        pub_tasks.push(tokio::spawn(async move {
            let mut payload = vec![b'x'; size];
            let mut batch = BytesMut::with_capacity(BATCH + size + 64);
            let mut unreported = 0;
            for n in 0..share {
                if size >= STAMP {
                    let now = epoch.elapsed().as_nanos() as u64;
                    payload[..STAMP].copy_from_slice(&now.to_le_bytes());
                }
                wire::encode_pub(&mut batch, &subject, None, None, &payload);
                unreported += 1;
                if batch.len() >= BATCH || n + 1 == share {
                    client.write_raw(&batch).await?;
                    batch.clear();
                    published.fetch_add(unreported, Ordering::Relaxed);
                    unreported = 0;
                }
            }
            client.flush(timeout.max(Duration::from_secs(30))).await?;
            Ok::<_, String>(Instant::now())
        }));
    }
    let mut pub_end = epoch;
    for task in pub_tasks {
        let end = task.await.map_err(|e| e.to_string())??;
        pub_end = pub_end.max(end);
    }
    let mut sub_end = epoch;
    let mut latencies = Vec::new();
    let mut shortfall = 0;
    for task in sub_tasks {
        let (count, last, mut lat) = task.await.map_err(|e| e.to_string())?;
        shortfall += msgs - count;
        sub_end = sub_end.max(last);
        latencies.append(&mut lat);
    }
    progress.abort();
    if !json_out && std::io::stderr().is_terminal() {
        eprintln!();
    }

    let bytes = size as u64;
    let pub_secs = pub_end.duration_since(epoch).as_secs_f64().max(1e-9);
    let sub_secs = sub_end.duration_since(epoch).as_secs_f64().max(1e-9);
    let delivered = msgs * subscribers - shortfall;
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        match latencies.len() {
            0 => 0,
            n => latencies[((n as f64 * p).ceil() as usize).clamp(1, n) - 1] / 1000,
        }
    };
    if json_out {
        let mut doc = json!({
            "subject": subject, "size": size,
            "pub": {"clients": publishers, "msgs": msgs,
                    "msgs_per_sec": (msgs as f64 / pub_secs).round(),
                    "bytes_per_sec": (msgs as f64 * bytes as f64 / pub_secs).round()},
        });
        if subscribers > 0 {
            doc["sub"] = json!({"clients": subscribers, "msgs": delivered,
                "msgs_per_sec": (delivered as f64 / sub_secs).round(),
                "bytes_per_sec": (delivered as f64 * bytes as f64 / sub_secs).round()});
            if !latencies.is_empty() {
                doc["latency_us"] = json!({"p50": pct(0.5), "p90": pct(0.9),
                    "p99": pct(0.99), "max": pct(1.0)});
            }
        }
        println!("{doc}");
    } else {
        println!(
            "{:<6} {:>8} {:>12} {:>14} {:>10}",
            "", "clients", "msgs", "msgs/s", "MiB/s"
        );
        let row = |name: &str, clients: u64, count: u64, secs: f64| {
            println!(
                "{name:<6} {clients:>8} {count:>12} {:>14.0} {:>10.2}",
                count as f64 / secs,
                count as f64 * bytes as f64 / secs / (1024.0 * 1024.0)
            );
        };
        row("pub", publishers, msgs, pub_secs);
        if subscribers > 0 {
            row("sub", subscribers, delivered, sub_secs);
        }
        if !latencies.is_empty() {
            println!(
                "latency (µs): p50 {}  p90 {}  p99 {}  max {}",
                pct(0.5),
                pct(0.9),
                pct(0.99),
                pct(1.0)
            );
        }
    }
    if shortfall > 0 {
        return Err(format!(
            "{shortfall} of {} deliveries never arrived",
            msgs * subscribers
        ));
    }
    Ok(Done::Success)
}

/// Rewrites one progress line on stderr every quarter second.
async fn show_progress(
    published: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    to_publish: u64,
    to_receive: u64,
    quiet: bool,
) {
    // A line rewritten in place is for a person watching, not for a log file.
    if quiet || !std::io::stderr().is_terminal() {
        return;
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let (p, r) = (
            published.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed),
        );
        eprint!(
            "\rpublished {p}/{to_publish}  received {r}/{to_receive}  {:.0} msgs/s   ",
            (p + r) as f64 / secs
        );
    }
}
