//! The scenarios: each runs against one freshly started server and returns its metrics, or an
//! error when a message was lost, duplicated or reordered, a read timed out or the server
//! misbehaved (the scenario is then FAILED for that server).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fan::{churn, fan, routed_receiver, stuck_neighbour, Churn, Fan, Via};
use crate::server::Server;
use crate::wire::{
    await_interest, barrier, connect, connect_as, is_timeout, numbers, tune, wait_pong, Conn,
    Frame, Publisher, Reader,
};

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// Shown for each server, not compared (the generator's own CPU, say).
    Info,
}

/// One number a scenario reports.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub better: Better,
}

pub fn metric(name: impl Into<String>, value: f64, unit: &'static str, better: Better) -> Metric {
    Metric {
        name: name.into(),
        value,
        unit,
        better,
    }
}

pub type Outcome = Result<Vec<Metric>, String>;

/// The metric that tells how many messages a run published (for per-message figures).
pub const PUBLISHED: &str = "messages published";

pub fn published(n: usize) -> Metric {
    metric(PUBLISHED, n as f64, "msgs", Better::Info)
}

/// Sizes of a run: `quick` keeps the whole table under two minutes on two cores.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub quick: bool,
}

impl Scale {
    pub fn pick(self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// How many messages of `size` bytes make a run of reasonable length: `quick` or `full`,
    /// but no more payload than 64 MiB (quick) or 1 GiB (full).
    pub fn count(self, size: usize, quick: usize, full: usize) -> usize {
        let budget = self.pick(64 << 20, 1 << 30);
        self.pick(quick, full).min(budget / size.max(16)).max(32)
    }
}

pub type Run = dyn Fn(&Server, Scale) -> Outcome + Send + Sync;

/// A scenario: its name and how to run it.
pub struct Scenario {
    pub name: String,
    pub run: Arc<Run>,
    /// The configuration file the servers run with, if any.
    pub config: Option<&'static str>,
    /// Run against a cluster of two nodes of the same binary, A and B (B routing to A),
    /// rather than one server.
    pub cluster: bool,
    /// Run against a hub and a leafnode of the same binary (the leaf dialing the hub) rather
    /// than one server: `Some(true)` makes node A (the publishers' side) the leaf,
    /// `Some(false)` the hub.
    pub leaf: Option<bool>,
    /// Also run against the relay (`relay.rs`), the ceiling: a 1:1 scenario.
    pub relay: bool,
    /// Run with JetStream on (`-js`), on a fresh store directory (`server.store`).
    pub jetstream: bool,
    /// Run with the `tls` block of `tls.rs` (clients must then speak TLS).
    pub tls: bool,
    /// Run the server pinned to these CPUs (`taskset -c`), e.g. `"1"` or `"0,1"`.
    pub cpus: Option<&'static str>,
}

pub fn scenario(
    name: impl Into<String>,
    run: impl Fn(&Server, Scale) -> Outcome + Send + Sync + 'static,
) -> Scenario {
    Scenario {
        name: name.into(),
        run: Arc::new(run),
        config: None,
        cluster: false,
        leaf: None,
        relay: false,
        jetstream: false,
        tls: false,
        cpus: None,
    }
}

/// A scenario on a two-node cluster: `server.port` is node A's, `node_b(server)` node B's.
fn cluster_scenario(
    name: impl Into<String>,
    run: impl Fn(&Server, Scale) -> Outcome + Send + Sync + 'static,
) -> Scenario {
    Scenario {
        cluster: true,
        ..scenario(name, run)
    }
}

/// A scenario on a hub and its leafnode: node A (`server.port`, the publishers' side) is the
/// leaf when `a_is_leaf`, node B (`node_b(server)`) the other.
fn leaf_scenario(
    name: impl Into<String>,
    a_is_leaf: bool,
    run: impl Fn(&Server, Scale) -> Outcome + Send + Sync + 'static,
) -> Scenario {
    Scenario {
        leaf: Some(a_is_leaf),
        ..scenario(name, run)
    }
}

/// How long interest may take to cross the route in a cluster scenario.
pub const INTEREST_TIMEOUT: Duration = Duration::from_secs(10);

/// Node B's client port.
pub fn node_b(server: &Server) -> Result<u16, String> {
    if server.node_count() < 2 {
        return Err("a cluster scenario on a single server".into());
    }
    Ok(server.node_port(1))
}

/// Two accounts: A exports the service `bench.req`, B imports it; clients without
/// credentials are B's user, the responder logs in as A's.
const SERVICE_IMPORT_CONFIG: &str = r#"
accounts {
  A: { users: [{user: a, password: a}], exports: [{service: "bench.req"}] }
  B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: "bench.req"}}] }
}
no_auth_user: b
"#;

/// Every scenario, in table order.
pub fn all(scale: Scale) -> Vec<Scenario> {
    let mut list = Vec::new();
    for size in [0usize, 8, 32, 128, 256, 1024, 4096, 8192] {
        let name = format!("pub only {}", size_name(size));
        list.push(scenario(name, move |s, scale| pub_only(s, scale, size)));
    }
    for (size, same) in [(16, false), (1024, false), (16, true), (1024, true)] {
        let how = if same { "same conn" } else { "separate conns" };
        let fan_of = Fan {
            size,
            same_conn: same,
            ..Fan::default()
        };
        list.push(Scenario {
            relay: !same,
            ..scenario(
                format!("1:1 {}, {how}", size_name(size)),
                move |s, scale| fan(s, scale, fan_of).map(|f| f.metrics),
            )
        });
    }
    for subs in [4, 16] {
        let fan_of = Fan {
            subs,
            ..Fan::default()
        };
        list.push(scenario(
            format!("fan-out 1 -> {subs}, 16 B"),
            move |s, scale| fan(s, scale, fan_of).map(|f| f.metrics),
        ));
    }
    let fan_in = Fan {
        pubs: 4,
        ..Fan::default()
    };
    list.push(scenario("fan-in 4 -> 1, 16 B", move |s, scale| {
        fan(s, scale, fan_in).map(|f| f.metrics)
    }));
    list.push(scenario("queue group of 4, 16 B", queue_group));
    list.push(scenario("request/reply, 1 requester", request_latency));
    list.push(scenario("request/reply, 8 requesters", request_throughput));
    list.push(Scenario {
        config: Some(SERVICE_IMPORT_CONFIG),
        ..scenario(
            "request/reply via service import, 8 requesters",
            |s, scale| request_throughput_as(s, scale, Some("a")),
        )
    });
    list.push(scenario(
        "100k subscriptions (literal + wildcard)",
        many_subscriptions,
    ));
    list.push(scenario("5000 idle connections", idle_connections));
    for size in [64 * 1024, 1024 * 1024] {
        let fan_of = Fan {
            size,
            ..Fan::default()
        };
        list.push(Scenario {
            relay: true,
            ..scenario(format!("1:1 {}", size_name(size)), move |s, scale| {
                fan(s, scale, fan_of).map(|f| f.metrics)
            })
        });
    }
    list.push(scenario(
        "stuck subscriber beside a fast one, 1 KB",
        stuck_neighbour,
    ));
    list.push(scenario(
        "subscription churn while publishing, 16 B",
        |s, scale| churn(s, scale, Churn::Free),
    ));
    let distinct = scale.pick(DISTINCT_QUICK, DISTINCT_FULL);
    list.push(scenario(
        format!("{}k distinct subjects", distinct / 1000),
        distinct_subjects,
    ));
    // Two nodes of the same binary: publishers (requesters) on A, subscribers (the responder)
    // on B, so every message crosses the route.
    for size in [16, 1024] {
        let fan_of = Fan {
            size,
            across: true,
            ..Fan::default()
        };
        list.push(cluster_scenario(
            format!("cluster A -> B: 1:1 {}", size_name(size)),
            move |s, scale| fan(s, scale, fan_of).map(|f| f.metrics),
        ));
    }
    let fan_of = Fan {
        subs: 4,
        across: true,
        ..Fan::default()
    };
    list.push(cluster_scenario(
        "cluster A -> B: fan-out 1 -> 4, 16 B",
        move |s, scale| fan(s, scale, fan_of).map(|f| f.metrics),
    ));
    list.push(cluster_scenario(
        "cluster A -> B: request/reply, 1 requester",
        |s, scale| request_latency_across(s, scale, node_b(s)?),
    ));
    // A hub and its leafnode, the same binary: publishers on one, subscribers on the other,
    // so every message crosses the leafnode connection (LMSG), in both directions.
    for (a_is_leaf, name) in [(true, "leaf -> hub"), (false, "hub -> leaf")] {
        for size in [16, 1024] {
            let fan_of = Fan {
                size,
                across: true,
                ..Fan::default()
            };
            list.push(leaf_scenario(
                format!("leafnode {name}: 1:1 {}", size_name(size)),
                a_is_leaf,
                move |s, scale| fan(s, scale, fan_of).map(|f| f.metrics),
            ));
        }
    }
    // WebSocket clients (masked frames, one per 64 KiB write) on both sides.
    for (size, subs) in [(16, 1), (1024, 1), (16, 4)] {
        let fan_of = Fan {
            size,
            subs,
            via: Via::Ws,
            ..Fan::default()
        };
        let name = match subs {
            1 => format!("websocket: 1:1 {}", size_name(size)),
            n => format!("websocket: fan-out 1 -> {n}, {}", size_name(size)),
        };
        list.push(Scenario {
            config: Some(WEBSOCKET_CONFIG),
            ..scenario(name, move |s, scale| {
                fan(s, scale, fan_of).map(|f| f.metrics)
            })
        });
    }
    list.extend(crate::tls::all());
    list.extend(crate::scaling::all());
    list.extend(crate::jetstream::all(scale));
    list
}

/// A plain `ws://` listener on a port of the server's choosing (read from its log).
const WEBSOCKET_CONFIG: &str = r#"websocket { listen: "127.0.0.1:-1", no_tls: true }"#;

const DISTINCT_QUICK: usize = 100_000;
const DISTINCT_FULL: usize = 1_000_000;

pub fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MB", s >> 20),
        s if s >= 1024 && s % 1024 == 0 => format!("{} KB", s >> 10),
        s => format!("{s} B"),
    }
}

pub fn io(e: std::io::Error) -> String {
    e.to_string()
}

pub fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

pub fn join<T>(handle: JoinHandle<Result<T, String>>, what: &str) -> Result<T, String> {
    handle.join().map_err(|_| format!("{what} panicked"))?
}

/// Publishes `count` messages of `size` bytes split over the tuning's number of publishing
/// connections (each its own thread, its own publisher id), with no subscriber.
fn pub_only(server: &Server, scale: Scale, size: usize) -> Outcome {
    let count = scale.count(size, 1_500_000, 10_000_000);
    let pubs = tune().pubs;
    let mut conns = Vec::new();
    for id in 0..pubs {
        let mut conn = connect(server.port).map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        let share = count / pubs + usize::from(id < count % pubs);
        conns.push((
            conn,
            Publisher::new(id as u32, "bench.pub", None, size),
            share,
        ));
    }
    let start = Instant::now();
    let senders: Vec<_> = conns
        .into_iter()
        .map(|(mut conn, mut publisher, share)| {
            std::thread::spawn(move || -> Result<(), String> {
                publisher.send(&mut conn, share).map_err(io)?;
                // The PONG comes once the server has read everything before the PING.
                barrier(&mut conn).map_err(io)
            })
        })
        .collect();
    for sender in senders {
        join(sender, "publisher")?;
    }
    let elapsed = start.elapsed();
    let mut metrics = vec![metric(
        "msgs/s",
        per_second(count, elapsed),
        "msg/s",
        Better::Higher,
    )];
    if size > 0 {
        metrics.push(metric(
            "MB/s",
            per_second(count * size, elapsed) / 1e6,
            "MB/s",
            Better::Higher,
        ));
    }
    metrics.push(published(count));
    Ok(metrics)
}

fn queue_group(server: &Server, scale: Scale) -> Outcome {
    let count = scale.pick(500_000, 2_000_000);
    let members = 4;
    // Deliveries seen by all members together; a member stops reading once it reaches count.
    let total = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..members {
        let mut conn = connect(server.port).map_err(io)?;
        conn.write_all(b"SUB bench.q workers 1\r\n").map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        let total = total.clone();
        readers.push(std::thread::spawn(
            move || -> Result<(Vec<u32>, Instant), String> {
                let mut reader = Reader::new(conn);
                reader
                    .set_read_timeout(Duration::from_millis(20))
                    .map_err(io)?;
                let mut seqs = Vec::new();
                let mut last = Instant::now();
                let mut idle_since = Instant::now();
                loop {
                    match reader.next() {
                        Ok(Frame::Msg { payload, .. }) => {
                            let (_, seq) = numbers(payload).ok_or("payload without a number")?;
                            if let Some(&prev) = seqs.last() {
                                if seq <= prev {
                                    return Err(format!("a member got message {seq} after {prev}"));
                                }
                            }
                            seqs.push(seq);
                            last = Instant::now();
                            idle_since = last;
                            total.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) if is_timeout(&e) => {
                            if total.load(Ordering::Relaxed) >= count as u64 {
                                break;
                            }
                            if idle_since.elapsed() > crate::wire::IO_TIMEOUT {
                                return Err(format!(
                                    "no message for {:?} after {} of {count} in all",
                                    crate::wire::IO_TIMEOUT,
                                    total.load(Ordering::Relaxed)
                                ));
                            }
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                // Whatever still arrives before the PONG is a delivery too (and one too many).
                reader
                    .set_read_timeout(crate::wire::IO_TIMEOUT)
                    .map_err(io)?;
                reader.ping().map_err(io)?;
                loop {
                    match reader.next().map_err(io)? {
                        Frame::Msg { payload, .. } => {
                            let (_, seq) = numbers(payload).ok_or("payload without a number")?;
                            seqs.push(seq);
                        }
                        Frame::Pong => break,
                        Frame::Other => {}
                    }
                }
                Ok((seqs, last))
            },
        ));
    }
    let mut conn = connect(server.port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut publisher = Publisher::new(0, "bench.q", None, 16);
    let start = Instant::now();
    publisher.send(&mut conn, count).map_err(io)?;
    let mut per_member = Vec::new();
    let mut last = start;
    for reader in readers {
        let (seqs, at) = join(reader, "member")?;
        per_member.push(seqs);
        last = last.max(at);
    }
    let spread = check_queue(count, &per_member)?;
    let min = *spread.iter().min().unwrap_or(&0) as f64;
    let max = *spread.iter().max().unwrap_or(&0) as f64;
    Ok(vec![
        metric(
            "msgs/s",
            per_second(count, last - start),
            "msg/s",
            Better::Higher,
        ),
        metric(
            "spread: busiest / idlest member",
            max / min.max(1.0),
            "x",
            Better::Lower,
        ),
        metric(
            "idlest member's share",
            100.0 * min / count as f64,
            "%",
            Better::Higher,
        ),
    ])
}

/// Checks that messages `0..count` of one publisher went to exactly one member of the queue
/// group each (every member must also have seen its own in order); returns how many each
/// member got.
pub fn check_queue(count: usize, per_member: &[Vec<u32>]) -> Result<Vec<usize>, String> {
    let spread: Vec<usize> = per_member.iter().map(Vec::len).collect();
    for seqs in per_member {
        if let Some(w) = seqs.windows(2).find(|w| w[1] <= w[0]) {
            return Err(format!("a member got message {} after {}", w[1], w[0]));
        }
    }
    let mut all: Vec<u32> = per_member.iter().flatten().copied().collect();
    all.sort_unstable();
    let duplicates = all.windows(2).filter(|w| w[0] == w[1]).count();
    all.dedup();
    let stray = all.iter().filter(|&&s| s as usize >= count).count();
    let distinct = all.len() - stray;
    if duplicates > 0 || stray > 0 || distinct != count {
        return Err(format!(
            "{distinct} of {count} messages delivered ({} lost), {duplicates} to more than one \
             member, {stray} unknown (per member {spread:?})",
            count - distinct
        ));
    }
    Ok(spread)
}

/// A responder that answers every request with its payload, logged in as `user` if given.
/// With `requests_from`, returns once its subscription is known on the node with that client
/// port (where the requests are published).
fn responder(
    port: u16,
    user: Option<&str>,
    requests_from: Option<u16>,
) -> Result<JoinHandle<()>, String> {
    let mut conn = connect_as(port, user).map_err(io)?;
    conn.write_all(b"SUB bench.req 1\r\n").map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    if let Some(from) = requests_from {
        await_interest(&mut conn, from, "bench.probe.responder", INTEREST_TIMEOUT)?;
    }
    Ok(std::thread::spawn(move || {
        let Ok(mut writer) = conn.try_clone() else {
            return;
        };
        let mut reader = Reader::new(conn);
        let mut out = Vec::new();
        while let Ok(frame) = reader.next() {
            if let Frame::Msg {
                reply: Some(reply),
                payload,
                ..
            } = frame
            {
                out.clear();
                out.extend_from_slice(b"PUB ");
                out.extend_from_slice(reply);
                out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
                if writer.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }))
}

/// Sends `n` requests one after another, each carrying its number, and checks that each
/// reply is the echo of its own request; returns each round trip. With `replies_from`, first
/// waits until its inbox subscription is known on the node with that client port (where the
/// responder publishes the replies).
fn requester(
    port: u16,
    id: usize,
    n: usize,
    replies_from: Option<u16>,
) -> Result<Vec<Duration>, String> {
    let mut conn = connect(port).map_err(io)?;
    conn.write_all(format!("SUB _INBOX.{id}.* 1\r\n").as_bytes())
        .map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    if let Some(from) = replies_from {
        let probe = format!("bench.probe.requester{id}");
        await_interest(&mut conn, from, &probe, INTEREST_TIMEOUT)?;
    }
    let mut reader = Reader::new(conn.try_clone().map_err(io)?);
    let mut rtts = Vec::with_capacity(n);
    let mut request = Vec::new();
    for i in 0..n {
        request.clear();
        request.extend_from_slice(format!("PUB bench.req _INBOX.{id}.{i} 16\r\n").as_bytes());
        request.extend_from_slice(&(id as u32).to_le_bytes());
        request.extend_from_slice(&(i as u32).to_le_bytes());
        request.extend_from_slice(b"rrrrrrrr\r\n");
        let start = Instant::now();
        conn.write_all(&request).map_err(io)?;
        loop {
            let frame = reader.next().map_err(|e| format!("request {i}: {e}"))?;
            if let Frame::Msg { payload, .. } = frame {
                if numbers(payload) != Some((id as u32, i as u32)) {
                    return Err(format!(
                        "request {i}: reply carries {:?} (lost, duplicated or reordered)",
                        numbers(payload)
                    ));
                }
                break;
            }
        }
        rtts.push(start.elapsed());
    }
    reader.expect_no_more()?;
    Ok(rtts)
}

fn request_latency(server: &Server, scale: Scale) -> Outcome {
    let _responder = responder(server.port, None, None)?;
    let n = scale.pick(5_000, 100_000);
    latency_metrics(requester(server.port, 0, n, None)?)
}

/// One requester on node A, the responder on node B (client port `b`).
fn request_latency_across(server: &Server, scale: Scale, b: u16) -> Outcome {
    let _responder = responder(b, None, Some(server.port))?;
    let n = scale.pick(5_000, 100_000);
    latency_metrics(requester(server.port, 0, n, Some(b))?)
}

fn latency_metrics(mut rtts: Vec<Duration>) -> Outcome {
    let n = rtts.len();
    let elapsed: Duration = rtts.iter().sum();
    rtts.sort_unstable();
    let at =
        |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)].as_secs_f64() * 1e6;
    Ok(vec![
        metric("p50", at(0.50), "µs", Better::Lower),
        metric("p90", at(0.90), "µs", Better::Lower),
        metric("p99", at(0.99), "µs", Better::Lower),
        metric("p99.9", at(0.999), "µs", Better::Lower),
        metric(
            "requests/s",
            per_second(n, elapsed),
            "req/s",
            Better::Higher,
        ),
    ])
}

fn request_throughput(server: &Server, scale: Scale) -> Outcome {
    request_throughput_as(server, scale, None)
}

/// Eight requesters at once against one responder logged in as `responder_user`.
fn request_throughput_as(server: &Server, scale: Scale, responder_user: Option<&str>) -> Outcome {
    let _responder = responder(server.port, responder_user, None)?;
    let per = scale.pick(1_000, 20_000);
    let port = server.port;
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|id| std::thread::spawn(move || requester(port, id, per, None)))
        .collect();
    let mut rtts = Vec::new();
    for t in threads {
        rtts.extend(join(t, "requester")?);
    }
    let elapsed = start.elapsed();
    rtts.sort_unstable();
    let p99 = rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)].as_secs_f64() * 1e6;
    Ok(vec![
        metric(
            "requests/s",
            per_second(per * 8, elapsed),
            "req/s",
            Better::Higher,
        ),
        metric("p99", p99, "µs", Better::Lower),
    ])
}

/// Subscribes `subjects` (sids 1, 2, ...) on one new connection; returns the connection and
/// how long the server took to take them all.
fn subscribe_all(port: u16, subjects: &[String]) -> Result<(Conn, Duration), String> {
    let mut conn = connect(port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut batches = Vec::new();
    for (c, chunk) in subjects.chunks(2000).enumerate() {
        let mut batch = String::new();
        for (i, subject) in chunk.iter().enumerate() {
            batch.push_str(&format!("SUB {subject} {}\r\n", c * 2000 + i + 1));
        }
        batches.push(batch);
    }
    let start = Instant::now();
    for batch in &batches {
        conn.write_all(batch.as_bytes()).map_err(io)?;
    }
    barrier(&mut conn).map_err(io)?;
    Ok((conn, start.elapsed()))
}

/// Publishes one 16-byte message to each of `subjects` in turn, `rounds` times, from one
/// connection, and waits until `sub` (on which each subject matches exactly one subscription)
/// has received them all, checked for order, loss and duplicates.
fn publish_to_each(
    port: u16,
    sub: Conn,
    subjects: &[String],
    rounds: usize,
) -> Result<Duration, String> {
    let total = subjects.len() * rounds;
    let receiver = routed_receiver(sub, total, Some(subjects.len()));
    let mut conn = connect(port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut publisher = Publisher::cycling(0, subjects, 16);
    let start = Instant::now();
    let sent = publisher.send(&mut conn, total).map_err(io);
    let end = join(receiver, "subscriber")?;
    sent?;
    Ok(end - start)
}

fn many_subscriptions(server: &Server, scale: Scale) -> Outcome {
    let n = 100_000;
    let filters: Vec<String> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                format!("big.lit.{i}")
            } else {
                format!("big.wc.{i}.*")
            }
        })
        .collect();
    let targets: Vec<String> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                format!("big.lit.{i}")
            } else {
                format!("big.wc.{i}.x")
            }
        })
        .collect();
    settle();
    let before = server.rss_kib();
    let (sub, took) = subscribe_all(server.port, &filters)?;
    settle();
    let memory = server.rss_kib().saturating_sub(before);
    let rounds = scale.pick(1, 10);
    let elapsed = publish_to_each(server.port, sub, &targets, rounds)?;
    Ok(vec![
        metric(
            "subscribe 100k",
            took.as_secs_f64() * 1e3,
            "ms",
            Better::Lower,
        ),
        metric(
            "publish across them",
            per_second(n * rounds, elapsed),
            "msg/s",
            Better::Higher,
        ),
        metric(
            "server RSS growth for them",
            memory as f64 / 1024.0,
            "MiB",
            Better::Lower,
        ),
    ])
}

/// A pause for the server's memory figures to settle.
fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

fn idle_connections(server: &Server, _scale: Scale) -> Outcome {
    let n = 5000;
    let threads = 4;
    let port = server.port;
    settle();
    let before = server.rss_kib();
    let start = Instant::now();
    // A few threads connect at once, each pipelining its PINGs once all its connections are
    // up, so that the rate is the server's rather than one client's round trips.
    let connecting: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || -> Result<Vec<Conn>, String> {
                let mine = n / threads + usize::from(t < n % threads);
                let mut conns = Vec::with_capacity(mine);
                for _ in 0..mine {
                    conns.push(connect(port).map_err(io)?);
                }
                for conn in &mut conns {
                    conn.write_all(b"PING\r\n").map_err(io)?;
                }
                for conn in &mut conns {
                    wait_pong(conn).map_err(io)?;
                }
                Ok(conns)
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(n);
    for t in connecting {
        conns.extend(join(t, "connecting thread")?);
    }
    let took = start.elapsed();
    settle();
    let per = server.rss_kib().saturating_sub(before) as f64 / n as f64;
    // Every connection must still be alive and answering.
    for conn in &mut conns {
        conn.write_all(b"PING\r\n").map_err(io)?;
    }
    for conn in &mut conns {
        wait_pong(conn).map_err(|e| format!("an idle connection: {e}"))?;
    }
    Ok(vec![
        metric(
            "connect + CONNECT + PING/PONG rate",
            per_second(n, took),
            "conn/s",
            Better::Higher,
        ),
        metric("RSS per idle connection", per, "KiB", Better::Lower),
        metric(
            "server RSS before",
            before as f64 / 1024.0,
            "MiB",
            Better::Lower,
        ),
    ])
}

fn distinct_subjects(server: &Server, scale: Scale) -> Outcome {
    let n = scale.pick(DISTINCT_QUICK, DISTINCT_FULL);
    let subjects: Vec<String> = (0..n).map(|i| format!("d.{i}")).collect();
    settle();
    let before = server.rss_kib();
    let (sub, took) = subscribe_all(server.port, &subjects)?;
    settle();
    let memory = server.rss_kib().saturating_sub(before);
    let elapsed = publish_to_each(server.port, sub, &subjects, 1)?;
    Ok(vec![
        metric(
            "subscribe all",
            took.as_secs_f64() * 1e3,
            "ms",
            Better::Lower,
        ),
        metric(
            "publish once to each",
            per_second(n, elapsed),
            "msg/s",
            Better::Higher,
        ),
        metric(
            "server RSS growth",
            memory as f64 / 1024.0,
            "MiB",
            Better::Lower,
        ),
    ])
}
