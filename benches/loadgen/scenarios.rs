//! The scenarios: each runs against one freshly started server and returns its metrics, or an
//! error when a message was lost, duplicated or reordered (the scenario is then FAILED).

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::server::Server;
use crate::wire::{barrier, connect, Checker, Frame, Publisher, Reader};

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One number a scenario reports.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub better: Better,
}

fn metric(name: impl Into<String>, value: f64, unit: &'static str, better: Better) -> Metric {
    Metric { name: name.into(), value, unit, better }
}

pub type Outcome = Result<Vec<Metric>, String>;

/// Sizes of a run: `quick` keeps the whole table under two minutes.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub quick: bool,
}

impl Scale {
    fn pick(self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// How many messages of `size` bytes make a run of reasonable length.
    fn count(self, size: usize, quick: usize, full: usize) -> usize {
        let budget = self.pick(128 << 20, 1 << 30);
        self.pick(quick, full).min(budget / size.max(16)).max(100)
    }
}

/// A scenario: its name and how to run it.
pub struct Scenario {
    pub name: String,
    pub run: Box<dyn Fn(&Server, Scale) -> Outcome>,
}

fn scenario(name: impl Into<String>, run: impl Fn(&Server, Scale) -> Outcome + 'static) -> Scenario {
    Scenario { name: name.into(), run: Box::new(run) }
}

/// Every scenario, in table order.
pub fn all() -> Vec<Scenario> {
    let mut list = Vec::new();
    for size in [0usize, 8, 32, 128, 256, 1024, 4096, 8192] {
        list.push(scenario(format!("pub only {size} B"), move |s, scale| pub_only(s, scale, size)));
    }
    for (size, same) in [(16, false), (1024, false), (16, true), (1024, true)] {
        let how = if same { "same conn" } else { "separate conns" };
        list.push(scenario(format!("1:1 {size} B, {how}"), move |s, scale| {
            fan(s, scale, Fan { size, pubs: 1, subs: 1, same_conn: same, ..Fan::default() })
        }));
    }
    for subs in [4, 16] {
        list.push(scenario(format!("fan-out 1 -> {subs}, 16 B"), move |s, scale| {
            fan(s, scale, Fan { size: 16, pubs: 1, subs, ..Fan::default() })
        }));
    }
    list.push(scenario("fan-in 4 -> 1, 16 B", |s, scale| {
        fan(s, scale, Fan { size: 16, pubs: 4, subs: 1, ..Fan::default() })
    }));
    list.push(scenario("queue group of 4, 16 B", queue_group));
    list.push(scenario("request/reply latency", request_latency));
    list.push(scenario("request/reply, 8 requesters", request_throughput));
    list.push(scenario("100k subscriptions", many_subscriptions));
    list.push(scenario("5000 idle connections", idle_connections));
    for size in [64 * 1024, 1024 * 1024] {
        list.push(scenario(format!("1:1 {} KB", size / 1024), move |s, scale| {
            fan(s, scale, Fan { size, pubs: 1, subs: 1, ..Fan::default() })
        }));
    }
    list.push(scenario("stuck subscriber beside a fast one", stuck_neighbour));
    list.push(scenario("subscription churn while publishing", churn));
    list.push(scenario("1M distinct subjects", distinct_subjects));
    list
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn pub_only(server: &Server, scale: Scale, size: usize) -> Outcome {
    let count = scale.count(size, 1_000_000, 5_000_000);
    let mut conn = connect(server.port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut publisher = Publisher::new(0, "bench.pub", None, size);
    let start = Instant::now();
    publisher.send(&mut conn, count).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let elapsed = start.elapsed();
    Ok(vec![
        metric("msgs/s", per_second(count, elapsed), "msg/s", Better::Higher),
        metric("MB/s", per_second(count * size, elapsed) / 1e6, "MB/s", Better::Higher),
    ])
}

#[derive(Clone, Copy)]
struct Fan {
    size: usize,
    pubs: usize,
    subs: usize,
    same_conn: bool,
    /// Also subscribe a connection that never reads.
    stuck: bool,
    /// Subscribe and unsubscribe continuously on another connection meanwhile.
    churn: bool,
    /// Messages per publisher (0: chosen by size).
    count: usize,
}

impl Default for Fan {
    fn default() -> Self {
        Fan { size: 16, pubs: 1, subs: 1, same_conn: false, stuck: false, churn: false, count: 0 }
    }
}

/// Starts a thread that reads `expected` messages on `stream`, checking them; returns when the
/// last arrives.
fn receiver(stream: TcpStream, expected: usize) -> JoinHandle<Result<Instant, String>> {
    std::thread::spawn(move || {
        let mut reader = Reader::new(stream);
        let mut checker = Checker::default();
        while (checker.count as usize) < expected {
            match reader.next().map_err(|e| format!("after {} messages: {e}", checker.count))? {
                Frame::Msg { payload, .. } => checker.check(payload)?,
                Frame::Pong | Frame::Other => {}
            }
        }
        Ok(Instant::now())
    })
}

fn fan(server: &Server, scale: Scale, fan: Fan) -> Outcome {
    let count = if fan.count > 0 { fan.count } else { scale.count(fan.size, 1_000_000, 5_000_000) };
    let expected = count * fan.pubs;
    let mut receivers = Vec::new();
    let mut same = None;
    for _ in 0..fan.subs {
        let mut conn = connect(server.port).map_err(io)?;
        conn.write_all(b"SUB bench.fan 1\r\n").map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        if fan.same_conn {
            same = Some(conn.try_clone().map_err(io)?);
        }
        receivers.push(receiver(conn, expected));
    }
    let _stuck = if fan.stuck {
        let mut conn = connect(server.port).map_err(io)?;
        conn.write_all(b"SUB bench.fan 9\r\n").map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        Some(conn)
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let churner = if fan.churn { Some(start_churn(server.port, stop.clone())?) } else { None };
    let mut publishers = Vec::new();
    for id in 0..fan.pubs {
        let mut conn = match (&same, id) {
            (Some(conn), 0) => conn.try_clone().map_err(io)?,
            _ => connect(server.port).map_err(io)?,
        };
        if same.is_none() {
            barrier(&mut conn).map_err(io)?;
        }
        publishers.push((conn, Publisher::new(id as u32, "bench.fan", None, fan.size)));
    }
    let start = Instant::now();
    let senders: Vec<_> = publishers
        .into_iter()
        .map(|(mut conn, mut publisher)| {
            std::thread::spawn(move || publisher.send(&mut conn, count).map_err(io))
        })
        .collect();
    for sender in senders {
        sender.join().map_err(|_| "publisher panicked")??;
    }
    let mut last = start;
    for receiver in receivers {
        last = last.max(receiver.join().map_err(|_| "subscriber panicked")??);
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(churner) = churner {
        churner.join().map_err(|_| "churn panicked")??;
    }
    let elapsed = last - start;
    let delivered = expected * fan.subs;
    Ok(vec![
        metric("msgs/s delivered", per_second(delivered, elapsed), "msg/s", Better::Higher),
        metric("MB/s delivered", per_second(delivered * fan.size, elapsed) / 1e6, "MB/s", Better::Higher),
    ])
}

fn start_churn(port: u16, stop: Arc<AtomicBool>) -> Result<JoinHandle<Result<(), String>>, String> {
    let mut conn = connect(port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    Ok(std::thread::spawn(move || {
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut batch = String::new();
            for i in 0..100 {
                let sid = round * 100 + i;
                batch.push_str(&format!("SUB churn.{sid}.x {sid}\r\nUNSUB {sid}\r\n"));
            }
            conn.write_all(batch.as_bytes()).map_err(io)?;
            barrier(&mut conn).map_err(io)?;
            round += 1;
        }
        Ok(())
    }))
}

fn queue_group(server: &Server, scale: Scale) -> Outcome {
    let count = scale.pick(500_000, 2_000_000);
    let members = 4;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..members {
        let mut conn = connect(server.port).map_err(io)?;
        conn.write_all(b"SUB bench.q workers 1\r\n").map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        conn.set_read_timeout(Some(Duration::from_millis(200))).map_err(io)?;
        let done = done.clone();
        readers.push(std::thread::spawn(move || -> Result<(Vec<u32>, Instant), String> {
            let mut reader = Reader::new(conn);
            let mut seqs = Vec::new();
            let mut last = Instant::now();
            loop {
                match reader.next() {
                    Ok(Frame::Msg { payload, .. }) => {
                        let seq = u32::from_le_bytes(payload[4..8].try_into().unwrap_or_default());
                        if seqs.last().is_some_and(|&l| seq <= l) {
                            return Err(format!("member saw {seq} after {:?}", seqs.last()));
                        }
                        seqs.push(seq);
                        last = Instant::now();
                    }
                    Ok(_) => {}
                    Err(_) if done.load(Ordering::Relaxed) => return Ok((seqs, last)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        }));
    }
    let mut conn = connect(server.port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut publisher = Publisher::new(0, "bench.q", None, 16);
    let start = Instant::now();
    publisher.send(&mut conn, count).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    // Members stop once idle after everything was published.
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let mut all = Vec::with_capacity(count);
    let mut spread = Vec::new();
    let mut last = start;
    for reader in readers {
        let (seqs, at) = reader.join().map_err(|_| "member panicked")??;
        spread.push(seqs.len());
        all.extend(seqs);
        last = last.max(at);
    }
    all.sort_unstable();
    if all.len() != count || all.iter().enumerate().any(|(i, &s)| s as usize != i) {
        return Err(format!("{} deliveries for {count} messages (spread {spread:?})", all.len()));
    }
    let min = *spread.iter().min().unwrap_or(&0) as f64;
    let max = *spread.iter().max().unwrap_or(&0) as f64;
    Ok(vec![
        metric("msgs/s", per_second(count, last - start), "msg/s", Better::Higher),
        metric("spread max/min", max / min.max(1.0), "x", Better::Lower),
    ])
}

/// A responder that answers every request with its payload.
fn responder(port: u16) -> Result<JoinHandle<()>, String> {
    let mut conn = connect(port).map_err(io)?;
    conn.write_all(b"SUB bench.req 1\r\n").map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    Ok(std::thread::spawn(move || {
        let Ok(mut writer) = conn.try_clone() else { return };
        let mut reader = Reader::new(conn);
        let mut out = Vec::new();
        while let Ok(frame) = reader.next() {
            if let Frame::Msg { reply: Some(reply), payload, .. } = frame {
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

/// Sends `n` requests one after another; returns each round trip.
fn requester(port: u16, id: usize, n: usize) -> Result<Vec<Duration>, String> {
    let mut conn = connect(port).map_err(io)?;
    conn.write_all(format!("SUB _INBOX.{id}.* 1\r\n").as_bytes()).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut reader = Reader::new(conn.try_clone().map_err(io)?);
    let mut rtts = Vec::with_capacity(n);
    let payload = "r".repeat(16);
    for i in 0..n {
        let request = format!("PUB bench.req _INBOX.{id}.{i} 16\r\n{payload}\r\n");
        let start = Instant::now();
        conn.write_all(request.as_bytes()).map_err(io)?;
        loop {
            if let Frame::Msg { .. } = reader.next().map_err(io)? {
                break;
            }
        }
        rtts.push(start.elapsed());
    }
    Ok(rtts)
}

fn request_latency(server: &Server, scale: Scale) -> Outcome {
    let _responder = responder(server.port)?;
    let n = scale.pick(5_000, 50_000);
    let mut rtts = requester(server.port, 0, n)?;
    rtts.sort_unstable();
    let at = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)].as_secs_f64() * 1e6;
    Ok(vec![
        metric("p50", at(0.50), "µs", Better::Lower),
        metric("p90", at(0.90), "µs", Better::Lower),
        metric("p99", at(0.99), "µs", Better::Lower),
        metric("p99.9", at(0.999), "µs", Better::Lower),
    ])
}

fn request_throughput(server: &Server, scale: Scale) -> Outcome {
    let _responder = responder(server.port)?;
    let per = scale.pick(2_000, 20_000);
    let port = server.port;
    let start = Instant::now();
    let threads: Vec<_> = (0..8).map(|id| std::thread::spawn(move || requester(port, id, per))).collect();
    for t in threads {
        t.join().map_err(|_| "requester panicked")??;
    }
    Ok(vec![metric("requests/s", per_second(per * 8, start.elapsed()), "req/s", Better::Higher)])
}

/// Subscribes `subjects` on one connection; returns the connection and how long the server
/// took to take them all.
fn subscribe_all(port: u16, subjects: &[String]) -> Result<(TcpStream, Duration), String> {
    let mut conn = connect(port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let start = Instant::now();
    for chunk in subjects.chunks(1000) {
        let mut batch = String::new();
        for (i, subject) in chunk.iter().enumerate() {
            batch.push_str(&format!("SUB {subject} {i}\r\n"));
        }
        conn.write_all(batch.as_bytes()).map_err(io)?;
    }
    barrier(&mut conn).map_err(io)?;
    Ok((conn, start.elapsed()))
}

/// Publishes one 16-byte message to each of `subjects`, `rounds` times, and waits until `sub`
/// has received them all.
fn publish_to_each(port: u16, sub: TcpStream, subjects: &[String], rounds: usize, expected: usize) -> Result<Duration, String> {
    let receiver = receiver(sub, expected * rounds);
    let mut conn = connect(port).map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut batch = Vec::new();
    for subject in subjects {
        batch.extend_from_slice(format!("PUB {subject} 16\r\n0123456789abcdef\r\n").as_bytes());
    }
    let start = Instant::now();
    for _ in 0..rounds {
        for chunk in batch.chunks(64 * 1024) {
            conn.write_all(chunk).map_err(io)?;
        }
    }
    let end = receiver.join().map_err(|_| "subscriber panicked")??;
    Ok(end - start)
}

fn many_subscriptions(server: &Server, scale: Scale) -> Outcome {
    let n = 100_000;
    let before = server.rss_kib();
    let subjects: Vec<String> = (0..n)
        .map(|i| if i % 2 == 0 { format!("big.lit.{i}") } else { format!("big.wc.{i}.*") })
        .collect();
    let (sub, took) = subscribe_all(server.port, &subjects)?;
    let memory = server.rss_kib().saturating_sub(before);
    let targets: Vec<String> =
        (0..n).map(|i| if i % 2 == 0 { format!("big.lit.{i}") } else { format!("big.wc.{i}.x") }).collect();
    let rounds = scale.pick(3, 10);
    let elapsed = publish_to_each(server.port, sub, &targets, rounds, n)?;
    Ok(vec![
        metric("subscribe 100k", took.as_secs_f64() * 1e3, "ms", Better::Lower),
        metric("publish across them", per_second(n * rounds, elapsed), "msg/s", Better::Higher),
        metric("server memory for them", memory as f64 / 1024.0, "MiB", Better::Lower),
    ])
}

fn idle_connections(server: &Server, _scale: Scale) -> Outcome {
    let n = 5000;
    std::thread::sleep(Duration::from_millis(100));
    let before = server.rss_kib();
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(connect(server.port).map_err(io)?);
    }
    for conn in &mut conns {
        barrier(conn).map_err(io)?;
    }
    let took = start.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let per = server.rss_kib().saturating_sub(before) as f64 / n as f64;
    Ok(vec![
        metric("connects/s", per_second(n, took), "conn/s", Better::Higher),
        metric("RSS per idle connection", per, "KiB", Better::Lower),
        metric("idle server RSS", before as f64 / 1024.0, "MiB", Better::Lower),
    ])
}

fn stuck_neighbour(server: &Server, scale: Scale) -> Outcome {
    // Enough to pass tern's and nats-server's 64 MiB pending limit in a full run.
    let count = scale.pick(30_000, 120_000);
    let alone = Fan { size: 1024, count, ..Fan::default() };
    let base = fan(server, scale, alone)?;
    let with = fan(server, scale, Fan { stuck: true, ..alone })?;
    let ratio = with[0].value / base[0].value;
    Ok(vec![
        metric("fast sub msgs/s, stuck neighbour", with[0].value, "msg/s", Better::Higher),
        metric("vs without it", ratio, "x", Better::Higher),
    ])
}

fn churn(server: &Server, scale: Scale) -> Outcome {
    let count = scale.pick(1_000_000, 5_000_000);
    let calm = Fan { size: 16, count, ..Fan::default() };
    let base = fan(server, scale, calm)?;
    let churned = fan(server, scale, Fan { churn: true, ..calm })?;
    Ok(vec![
        metric("msgs/s with churn", churned[0].value, "msg/s", Better::Higher),
        metric("vs without churn", churned[0].value / base[0].value, "x", Better::Higher),
    ])
}

fn distinct_subjects(server: &Server, scale: Scale) -> Outcome {
    let n = scale.pick(200_000, 1_000_000);
    let subjects: Vec<String> = (0..n).map(|i| format!("d.{i}")).collect();
    let before = server.rss_kib();
    let (sub, took) = subscribe_all(server.port, &subjects)?;
    let memory = server.rss_kib().saturating_sub(before);
    let elapsed = publish_to_each(server.port, sub, &subjects, 1, n)?;
    Ok(vec![
        metric("subscribe all", took.as_secs_f64() * 1e3, "ms", Better::Lower),
        metric("publish once to each", per_second(n, elapsed), "msg/s", Better::Higher),
        metric("server memory", memory as f64 / 1024.0, "MiB", Better::Lower),
    ])
}
