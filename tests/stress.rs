//! Stress and fault tests, opt-in and bounded in time:
//!
//! ```sh
//! cargo test --release --test stress -- --ignored --test-threads=1
//! TERN_SOAK_SECS=600 cargo test --release --test stress soak -- --ignored
//! ```
//!
//! Each test runs the built `tern` binary as a process on an ephemeral loopback port with the
//! HTTP monitor on, reads `/varz` for connections, subscriptions and slow consumers, reads
//! `VmRSS` from `/proc/<pid>/status`, and kills the process when it ends. Clients speak the raw
//! protocol over tokio sockets with a publisher id and a sequence number in every payload, so
//! every message is accounted for; the ordering test also runs an `async-nats` subscriber. Every
//! test prints what it measured; assertions are on correctness and loose memory bounds, never on
//! timing, because the machine running them is shared.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{http_get, listening_port, monitor_addr, Process, Scratch};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const QUIET: &str = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
const MIB: u64 = 1024 * 1024;

/// A tern process with its monitor on, killed on drop.
struct Tern {
    process: Process,
    addr: SocketAddr,
    monitor: String,
    _scratch: Scratch,
    /// Subscriptions the server holds with no client connected (the system account's own).
    base_subscriptions: u64,
}

impl Tern {
    /// Starts the binary on 127.0.0.1 with random client and monitor ports; `conf` (if not
    /// empty) is written to a configuration file and passed with `-c`.
    fn start(name: &str, conf: &str) -> Tern {
        Tern::start_with_env(name, conf, &[])
    }

    /// As [`Tern::start`], with these variables in the server's environment.
    fn start_with_env(name: &str, conf: &str, env: &[(&str, &str)]) -> Tern {
        let scratch = Scratch::new(&format!("stress-{name}"));
        let log = scratch.0.join("server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
        command.envs(env.iter().copied());
        command.args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-l"]);
        command.arg(&log);
        if !conf.is_empty() {
            let path = scratch.0.join("server.conf");
            std::fs::write(&path, conf).unwrap();
            command.arg("-c").arg(path);
        }
        let (process, text) = Process::start(&mut command, &log);
        let port = listening_port(&text).expect("listening line");
        let mut tern = Tern {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            monitor: monitor_addr(&text).expect("monitor line"),
            _scratch: scratch,
            base_subscriptions: 0,
        };
        tern.base_subscriptions = tern.varz()["subscriptions"]
            .as_u64()
            .expect("subscriptions");
        tern
    }

    /// Client subscriptions in the server now: `/varz` `subscriptions` less the system
    /// account's own.
    fn client_subscriptions(&self) -> u64 {
        self.varz()["subscriptions"]
            .as_u64()
            .expect("subscriptions")
            - self.base_subscriptions
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// `GET path` on the monitor, as JSON.
    fn monitor(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.monitor, path).expect("monitor answers");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn varz(&self) -> Value {
        self.monitor("/varz")
    }

    /// Resident memory, from the kernel rather than the server's own report.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Polls `/varz` until `check` accepts it (panics after `within`).
    async fn wait_varz(&self, what: &str, within: Duration, check: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let varz = self.varz();
            if check(&varz) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: connections {} subscriptions {}",
                varz["connections"],
                varz["subscriptions"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no client is connected and no subscription is left.
    async fn wait_idle(&self, within: Duration) {
        let base = self.base_subscriptions;
        self.wait_varz("no connections and no subscriptions", within, |v| {
            v["connections"] == 0 && v["subscriptions"] == base
        })
        .await;
    }
}

/// Samples a server's RSS every 20 ms until dropped; `peak` is the largest sample.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(tern: &Tern) -> RssSampler {
        let pid = tern.pid();
        let peak = Arc::new(AtomicU64::new(tern.rss()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    return;
                };
                if let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) {
                    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                    p.fetch_max(kib * 1024, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Runs `test` with a deadline: a hang fails the test instead of blocking the suite.
async fn bounded<T>(limit: Duration, test: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, test)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
}

/// Raises this process's soft open-file limit to the hard limit, for tests holding thousands
/// of client sockets. libc is already a dependency of tern (the server does the same at
/// start), so this costs the test nothing new; a shell wrapper could raise the server's limit
/// but not this process's own.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// Whether the server's end of the loopback connection from `client_port` to `server_port`
/// is still ESTABLISHED (state 01 in `/proc/net/tcp`).
fn server_socket_established(server_port: u16, client_port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{server_port:04X}");
    let remote = format!(":{client_port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields[1].ends_with(&local) && fields[2].ends_with(&remote) && fields[3] == "01"
    })
}

/// A raw protocol client reading through a buffer.
struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

/// One delivered message.
#[derive(Debug)]
struct Msg {
    subject: String,
    sid: String,
    payload: Vec<u8>,
}

impl Client {
    /// Connects, reads INFO and sends a quiet CONNECT (an error after 10 s without INFO).
    async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        tokio::time::timeout(Duration::from_secs(10), Client::connect_now(addr))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    async fn connect_now(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::with_capacity(64 * 1024, read),
            writer,
        };
        let info = client.line().await?;
        assert!(info.starts_with("INFO "), "{info:?}");
        client.send(QUIET.as_bytes()).await?;
        Ok(client)
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line)
    }

    /// Sends PING and waits for the PONG, answering the server's own PINGs and failing on
    /// anything else: the server has handled everything sent before and nothing was
    /// delivered meanwhile.
    async fn barrier(&mut self) -> std::io::Result<()> {
        self.send(b"PING\r\n").await?;
        loop {
            let line = self.line().await?;
            if line == "PING\r\n" {
                self.send(b"PONG\r\n").await?;
                continue;
            }
            assert_eq!(line, "PONG\r\n");
            return Ok(());
        }
    }

    /// The next MSG, answering server PINGs on the way.
    async fn msg(&mut self) -> std::io::Result<Msg> {
        loop {
            let line = self.line().await?;
            if line == "PING\r\n" {
                self.send(b"PONG\r\n").await?;
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert!(parts.len() >= 4 && parts[0] == "MSG", "{line:?}");
            let size: usize = parts[parts.len() - 1].parse().unwrap();
            let mut payload = vec![0u8; size + 2];
            self.reader.read_exact(&mut payload).await?;
            payload.truncate(size);
            return Ok(Msg {
                subject: parts[1].to_string(),
                sid: parts[2].to_string(),
                payload,
            });
        }
    }
}

/// `PUB subject <p>.<seq>` with the payload padded to `size` bytes.
fn encode_pub(out: &mut Vec<u8>, subject: &str, publisher: usize, seq: u64, size: usize) {
    let mut payload = format!("{publisher}.{seq}");
    while payload.len() < size {
        payload.push('.');
    }
    out.extend_from_slice(format!("PUB {subject} {}\r\n{payload}\r\n", payload.len()).as_bytes());
}

/// The publisher id and sequence number of a payload made by `encode_pub`.
fn decode_payload(payload: &[u8]) -> (usize, u64) {
    let text = std::str::from_utf8(payload).unwrap();
    let mut parts = text.trim_end_matches('.').split('.');
    let publisher = parts.next().unwrap().parse().unwrap();
    let seq = parts.next().unwrap().parse().unwrap();
    (publisher, seq)
}

/// Per-publisher sequence checker: every message exactly once and in order.
struct Sequences {
    next: Vec<u64>,
}

impl Sequences {
    fn new(publishers: usize) -> Self {
        Sequences {
            next: vec![0; publishers],
        }
    }

    fn check(&mut self, who: &str, payload: &[u8]) {
        let (publisher, seq) = decode_payload(payload);
        assert_eq!(
            seq, self.next[publisher],
            "{who}: from publisher {publisher} got {seq}, expected {}",
            self.next[publisher]
        );
        self.next[publisher] += 1;
    }

    fn complete(&self, per_publisher: u64) -> bool {
        self.next.iter().all(|&n| n == per_publisher)
    }
}

// ---------------------------------------------------------------------------------------------

#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients() {
    const CLIENTS: usize = 10_000;
    const BROADCASTS: u64 = 5;
    let limit = raise_open_file_limit();
    assert!(
        limit as usize > CLIENTS + 100,
        "hard open-file limit {limit} is too low for {CLIENTS} client sockets"
    );
    let tern = Tern::start("10k", "");
    let baseline = tern.rss();
    let sampler = RssSampler::start(&tern);
    let addr = tern.addr;
    bounded(Duration::from_secs(120), async {
        // Connect in waves so the listen backlog never overflows into SYN retries.
        let started = Instant::now();
        let mut clients = Vec::with_capacity(CLIENTS);
        for wave in (0..CLIENTS).collect::<Vec<_>>().chunks(500) {
            let joined = futures::future::join_all(wave.iter().map(|&i| async move {
                let mut c = Client::connect(addr).await.expect("connect");
                c.send(format!("SUB ring.{i} 1\r\nSUB all 2\r\n").as_bytes())
                    .await
                    .unwrap();
                c.barrier().await.unwrap();
                c
            }))
            .await;
            clients.extend(joined);
            eprintln!("connected {} after {:?}", clients.len(), started.elapsed());
        }
        let connect_time = started.elapsed();
        let varz = tern.varz();
        assert_eq!(varz["connections"], CLIENTS);
        assert_eq!(
            varz["subscriptions"].as_u64().unwrap() - tern.base_subscriptions,
            2 * CLIENTS as u64
        );
        let connected_rss = tern.rss();

        // Each client publishes to the next one around the ring, and one more client
        // broadcasts to all: every client must get its neighbour's message and every
        // broadcast, in order, and nothing else.
        let started = Instant::now();
        let mut broadcaster = Client::connect(addr).await.unwrap();
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    encode_pub(&mut out, &format!("ring.{}", (i + 1) % CLIENTS), i, 0, 0);
                    c.send(&out).await.unwrap();
                    let mut ring = 0;
                    let mut broadcasts = Sequences::new(1);
                    for _ in 0..1 + BROADCASTS {
                        let msg = c.msg().await.unwrap();
                        if msg.sid == "1" {
                            let (from, seq) = decode_payload(&msg.payload);
                            assert_eq!((from, seq), ((i + CLIENTS - 1) % CLIENTS, 0));
                            ring += 1;
                        } else {
                            assert_eq!(msg.subject, "all");
                            broadcasts.check(&format!("client {i}"), &msg.payload);
                        }
                    }
                    assert_eq!(ring, 1);
                    assert!(broadcasts.complete(BROADCASTS));
                    c.barrier().await.unwrap();
                    c
                })
            })
            .collect();
        let mut out = Vec::new();
        for seq in 0..BROADCASTS {
            encode_pub(&mut out, "all", 0, seq, 16);
        }
        broadcaster.send(&out).await.unwrap();
        broadcaster.barrier().await.unwrap();
        let mut clients = Vec::with_capacity(CLIENTS);
        for task in tasks {
            clients.push(task.await.unwrap());
        }
        let exchange_time = started.elapsed();
        let varz = tern.varz();
        let delivered = (CLIENTS as u64) * (1 + BROADCASTS);
        assert!(varz["out_msgs"].as_u64().unwrap() >= delivered);

        drop(clients);
        drop(broadcaster);
        tern.wait_idle(Duration::from_secs(30)).await;
        let after = tern.rss();
        println!(
            "ten_thousand_clients: {CLIENTS} connected in {connect_time:?}; {delivered} \
             messages delivered in {exchange_time:?}; RSS baseline {}, connected {}, peak {}, \
             after disconnect {}",
            mib(baseline),
            mib(connected_rss),
            mib(sampler.peak()),
            mib(after)
        );
    })
    .await;
}

/// One publisher floods `count` messages of `size` bytes to `flood` while a fast subscriber
/// checks each arrives once and in order; with `slow`, a third client subscribes too and never
/// reads. Returns the fast subscriber's rate (messages per second) and the slow client.
async fn flood(
    tern: &Tern,
    count: u64,
    size: usize,
    slow: bool,
) -> (f64, Option<Client>, Duration) {
    let mut stuck = None;
    if slow {
        let mut c = Client::connect(tern.addr).await.unwrap();
        c.send(b"SUB flood 1\r\n").await.unwrap();
        c.barrier().await.unwrap();
        stuck = Some(c);
    }
    let mut fast = Client::connect(tern.addr).await.unwrap();
    fast.send(b"SUB flood 2\r\n").await.unwrap();
    fast.barrier().await.unwrap();
    let mut publisher = Client::connect(tern.addr).await.unwrap();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut seqs = Sequences::new(1);
        for _ in 0..count {
            let msg = fast.msg().await.expect("fast subscriber kept");
            seqs.check("fast subscriber", &msg.payload);
        }
        fast.barrier().await.unwrap();
        started.elapsed()
    });
    let mut batch = Vec::new();
    for seq in 0..count {
        encode_pub(&mut batch, "flood", 0, seq, size);
        if batch.len() >= 64 * 1024 || seq + 1 == count {
            publisher.send(&batch).await.unwrap();
            batch.clear();
        }
        if seq % 4096 == 4095 {
            // Keep the publisher within reach of the fast reader: a publisher that
            // outruns every reader by max_pending would make the fast one slow too.
            publisher.barrier().await.unwrap();
        }
    }
    publisher.barrier().await.unwrap();
    let publish_time = started.elapsed();
    let elapsed = reader.await.unwrap();
    (count as f64 / elapsed.as_secs_f64(), stuck, publish_time)
}

#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_isolation() {
    // nats-server's default max_pending (64 MiB); 256 MiB of 1 KiB messages is far past it
    // and past what the kernel's socket buffers absorb for a client that never reads.
    const COUNT: u64 = 256 * 1024;
    const SIZE: usize = 1024;
    const MAX_PENDING: u64 = 64 * MIB;
    let tern = Tern::start("slow", "");
    bounded(Duration::from_secs(120), async {
        let baseline = tern.rss();
        let (alone, _, _) = flood(&tern, COUNT, SIZE, false).await;
        let sampler = RssSampler::start(&tern);
        let (beside_slow, stuck, publish_time) = flood(&tern, COUNT, SIZE, true).await;
        let peak = sampler.peak();
        let mut stuck = stuck.unwrap();
        // Without reading (reading would let a stuck write finish), watch the server's end of
        // the slow client's socket leave ESTABLISHED: that is when the client is disconnected.
        let cut_after = Instant::now();
        let client_port = stuck.writer.local_addr().unwrap().port();
        while server_socket_established(tern.addr.port(), client_port) {
            assert!(
                cut_after.elapsed() < Duration::from_secs(30),
                "the slow consumer's socket was never closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let close_wait = cut_after.elapsed();
        let mut received = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            stuck.reader.read_to_end(&mut received),
        )
        .await
        .expect("the slow consumer's socket is closed")
        .ok();
        let text = String::from_utf8_lossy(&received);
        assert!(!text.contains("-ERR"), "a slow consumer gets no -ERR");
        // What it did get is whole messages, in order, from the start.
        let frame = format!("MSG flood 1 {SIZE}\r\n").len() + SIZE + 2;
        let whole = received.len() / frame;
        for (seq, at) in (0..whole).map(|i| (i, i * frame)) {
            let payload = &received[at + frame - SIZE - 2..at + frame - 2];
            assert_eq!(decode_payload(payload), (0, seq as u64));
        }
        let (again, _, _) = flood(&tern, COUNT, SIZE, false).await;

        // The slow consumer was cut as nats-server cuts it: counted, closed with the
        // reason nats-server gives, and no -ERR on the wire (nats-server sends none).
        let varz = tern.varz();
        assert_eq!(varz["slow_consumers"], 1);
        let closed = tern.monitor("/connz?state=closed");
        let reasons: Vec<&str> = closed["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["reason"].as_str())
            .collect();
        assert!(
            reasons.contains(&"Slow Consumer (Pending Bytes)"),
            "{reasons:?}"
        );
        tern.wait_idle(Duration::from_secs(10)).await;
        println!(
            "slow_consumer_isolation: fast subscriber {alone:.0} msg/s alone, {beside_slow:.0} \
             msg/s beside a slow consumer, {again:.0} msg/s after (ratio {:.2}); flood of \
             {COUNT} x {SIZE} B published in {publish_time:?}; the server closed the slow \
             one's socket {close_wait:?} after the flood ended; it had {} bytes \
             ({whole} whole messages) to read; RSS baseline \
             {}, peak {} (max_pending {})",
            beside_slow / alone.max(again),
            received.len(),
            mib(baseline),
            mib(peak),
            mib(MAX_PENDING)
        );
        // One slow consumer costs at most its budget (plus the batch its writer holds).
        assert!(
            peak < baseline + 3 * MAX_PENDING,
            "RSS peak {} over baseline {} + 3 x max_pending",
            mib(peak),
            mib(baseline)
        );
    })
    .await;
}

/// Publishes `count` messages from publisher `id` to `subject`, in 64 KiB writes, with a
/// PING barrier every 4096 messages so that no subscriber falls max_pending behind.
async fn publish_sequence(addr: SocketAddr, id: usize, subject: String, count: u64, size: usize) {
    let mut publisher = Client::connect(addr).await.unwrap();
    let mut batch = Vec::new();
    for seq in 0..count {
        encode_pub(&mut batch, &subject, id, seq, size);
        if batch.len() >= 64 * 1024 || seq + 1 == count {
            publisher.send(&batch).await.unwrap();
            batch.clear();
        }
        if seq % 4096 == 4095 {
            publisher.barrier().await.unwrap();
        }
    }
    publisher.barrier().await.unwrap();
}

/// Raw subscribers to `filter` that check every publisher's sequence; each returns the number
/// of messages it checked once it has all `per_publisher` from each of `publishers`.
fn sequence_checkers(
    clients: Vec<Client>,
    publishers: usize,
    per_publisher: u64,
) -> Vec<tokio::task::JoinHandle<u64>> {
    clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                let mut seqs = Sequences::new(publishers);
                let mut n = 0;
                while !seqs.complete(per_publisher) {
                    let msg = c.msg().await.expect("checker stays connected");
                    seqs.check(&format!("subscriber {i}"), &msg.payload);
                    n += 1;
                }
                c.barrier().await.unwrap();
                n
            })
        })
        .collect()
}

/// Clients that connect, subscribe to `filter`, read a few messages (or none), maybe publish
/// noise, and drop the connection mid-stream, until `stop`; returns the cycles done.
fn churners(
    addr: SocketAddr,
    tasks: usize,
    filter: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..tasks)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut cycles = 0;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = Client::connect(addr).await else {
                        continue;
                    };
                    let sub = format!("SUB {filter} 1\r\nPUB noise 5\r\nnoise\r\n");
                    if c.send(sub.as_bytes()).await.is_err() {
                        continue;
                    }
                    for _ in 0..fastrand::usize(..2000) {
                        if tokio::time::timeout(Duration::from_millis(100), c.msg())
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    cycles += 1;
                }
                cycles
            })
        })
        .collect()
}

#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_and_loss_under_churn() {
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: u64 = 100_000;
    const SUBSCRIBERS: usize = 4;
    let tern = Tern::start("order", "");
    let addr = tern.addr;
    bounded(Duration::from_secs(120), async {
        let mut subscribers = Vec::new();
        for _ in 0..SUBSCRIBERS {
            let mut c = Client::connect(addr).await.unwrap();
            c.send(b"SUB ord.* 1\r\n").await.unwrap();
            c.barrier().await.unwrap();
            subscribers.push(c);
        }
        // A real client among the checkers, with room for the whole run in its channel.
        let nats = async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 20)
            .connect(tern.addr.to_string())
            .await
            .unwrap();
        let mut nats_sub = nats.subscribe("ord.>").await.unwrap();
        nats.flush().await.unwrap();
        let nats_checker = tokio::spawn(async move {
            let mut seqs = Sequences::new(PUBLISHERS);
            while !seqs.complete(PER_PUBLISHER) {
                let msg = nats_sub.next().await.expect("async-nats subscription open");
                seqs.check("async-nats subscriber", &msg.payload);
            }
        });
        let started = Instant::now();
        let checkers = sequence_checkers(subscribers, PUBLISHERS, PER_PUBLISHER);
        let stop = Arc::new(AtomicBool::new(false));
        let churn = churners(addr, 8, "ord.*", stop.clone());
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                tokio::spawn(publish_sequence(
                    addr,
                    p,
                    format!("ord.{p}"),
                    PER_PUBLISHER,
                    32,
                ))
            })
            .collect();
        for p in publishers {
            p.await.unwrap();
        }
        let mut checked = 0;
        for c in checkers {
            checked += c.await.unwrap();
        }
        nats_checker.await.unwrap();
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut cycles = 0;
        for c in churn {
            cycles += c.await.unwrap();
        }
        drop(nats);
        tern.wait_idle(Duration::from_secs(10)).await;
        println!(
            "ordering_and_loss_under_churn: {PUBLISHERS} publishers x {PER_PUBLISHER} messages; \
             {SUBSCRIBERS} raw subscribers checked {checked} and the async-nats subscriber {} \
             exactly once and in order in {elapsed:?} while {cycles} other connections \
             subscribed and dropped mid-stream",
            PUBLISHERS as u64 * PER_PUBLISHER
        );
    })
    .await;
}

/// One bad client: what it sends, what it must get before the server closes the connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bad {
    Garbage,
    OversizePayload,
    HugeControlLine,
    HalfFrame,
    HalfControlLine,
}

impl Bad {
    fn input(self) -> Vec<u8> {
        match self {
            Bad::Garbage => (0..1024)
                .map(|_| fastrand::u8(..))
                .fold(vec![0], |mut v, b| {
                    v.push(b);
                    v
                }),
            Bad::OversizePayload => format!("{QUIET}PUB big 2000000\r\n").into_bytes(),
            // Past max_control_line (4 KiB), without an end.
            Bad::HugeControlLine => format!("PUB {}", "a".repeat(5000)).into_bytes(),
            Bad::HalfFrame => format!("{QUIET}PUB good 10\r\nabc").into_bytes(),
            Bad::HalfControlLine => b"SUB goo".to_vec(),
        }
    }

    fn answer(self) -> &'static str {
        match self {
            Bad::Garbage => "-ERR 'Unknown Protocol Operation'\r\n",
            Bad::OversizePayload => "-ERR 'Maximum Payload Violation'\r\n",
            Bad::HugeControlLine => "-ERR 'maximum control line exceeded'\r\n",
            // Silent clients are pinged (every second here) and cut when ping_max (2) PINGs
            // are unanswered.
            Bad::HalfFrame | Bad::HalfControlLine => "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n",
        }
    }
}

/// Sends one bad input and reads until the server closes; returns what arrived after INFO,
/// whether the close was a reset, and how long it took.
async fn bad_client(addr: SocketAddr, bad: Bad) -> (String, bool, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut received = Vec::new();
    let started = Instant::now();
    stream.write_all(&bad.input()).await.unwrap();
    let mut chunk = [0u8; 4096];
    let reset = loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break false,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(_) => break true,
        }
    };
    let text = String::from_utf8_lossy(&received).into_owned();
    let after_info = text
        .split_once("\r\n")
        .map_or("", |(_, rest)| rest)
        .to_string();
    (after_info, reset, started.elapsed())
}

#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_bad_input() {
    const PER_KIND: usize = 200;
    const GOOD_MESSAGES: u64 = 20_000;
    let tern = Tern::start(
        "bad",
        "ping_interval: \"1s\"\nping_max: 2\nmax_payload: 1MB\n",
    );
    let addr = tern.addr;
    bounded(Duration::from_secs(120), async {
        raise_open_file_limit();
        let baseline = tern.rss();
        let sampler = RssSampler::start(&tern);
        // Good clients (async-nats, which answers the server's PINGs) exchange a sequence
        // while the bad ones hit the server.
        let good_sub = async_nats::connect(addr.to_string()).await.unwrap();
        let mut sub = good_sub.subscribe("good").await.unwrap();
        good_sub.flush().await.unwrap();
        let good_pub = async_nats::connect(addr.to_string()).await.unwrap();
        let receiver = tokio::spawn(async move {
            let mut seqs = Sequences::new(1);
            while !seqs.complete(GOOD_MESSAGES) {
                let msg = sub.next().await.unwrap();
                seqs.check("good subscriber", &msg.payload);
            }
        });
        let kinds = [
            Bad::Garbage,
            Bad::OversizePayload,
            Bad::HugeControlLine,
            Bad::HalfFrame,
            Bad::HalfControlLine,
        ];
        let bad: Vec<_> = kinds
            .iter()
            .flat_map(|&kind| std::iter::repeat_n(kind, PER_KIND))
            .map(|kind| tokio::spawn(async move { (kind, bad_client(addr, kind).await) }))
            .collect();
        let started = Instant::now();
        for seq in 0..GOOD_MESSAGES {
            let mut payload = Vec::new();
            encode_pub(&mut payload, "x", 0, seq, 0);
            let text = String::from_utf8(payload).unwrap();
            let body = text.split("\r\n").nth(1).unwrap().to_string();
            good_pub.publish("good", body.into()).await.unwrap();
            if seq % 1000 == 999 {
                good_pub.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        good_pub.flush().await.unwrap();
        receiver.await.unwrap();
        let good_time = started.elapsed();
        let mut resets = 0;
        let mut slowest = [Duration::ZERO; 5];
        let mut fastest_stale = Duration::MAX;
        for task in bad {
            let (kind, (got, reset, took)) = task.await.unwrap();
            let i = kinds.iter().position(|&k| k == kind).unwrap();
            slowest[i] = slowest[i].max(took);
            if reset {
                // Closing a socket with unread input resets it, and a reset can discard the
                // -ERR before it is read: what did arrive must still be its beginning.
                resets += 1;
                assert!(kind.answer().starts_with(&got), "{kind:?}: {got:?}");
            } else {
                assert_eq!(got, kind.answer(), "{kind:?}");
            }
            if matches!(kind, Bad::HalfFrame | Bad::HalfControlLine) {
                fastest_stale = fastest_stale.min(took);
            }
        }
        // Two PINGs a second apart, the first after a second, must go unanswered first.
        assert!(
            fastest_stale >= Duration::from_millis(2500),
            "{fastest_stale:?}"
        );
        let peak = sampler.peak();
        tern.wait_varz("only the good clients left", Duration::from_secs(10), |v| {
            v["connections"] == 2
        })
        .await;
        println!(
            "floods_of_bad_input: {} bad connections at once ({PER_KIND} each of {kinds:?}); \
             slowest close per kind {slowest:?}, quickest stale cut {fastest_stale:?}, {resets} \
             closes were resets; the good pair exchanged {GOOD_MESSAGES} messages in order in \
             {good_time:?}; RSS baseline {}, peak {}",
            kinds.len() * PER_KIND,
            mib(baseline),
            mib(peak)
        );
        assert!(peak < baseline + 128 * MIB, "RSS peak {}", mib(peak));
    })
    .await;
}

/// `cycles` connect / subscribe / publish-to-self / disconnect cycles, `parallel` at a time.
async fn connect_cycles(addr: SocketAddr, cycles: usize, parallel: usize) {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cycles as u64 {
                        return;
                    }
                    let mut c = Client::connect(addr).await.expect("connect");
                    let ops = format!(
                        "SUB leak.{i}.x 1\r\nSUB leak.{i}.* q 2\r\nPUB leak.{i}.x 2\r\nhi\r\n"
                    );
                    c.send(ops.as_bytes()).await.unwrap();
                    for _ in 0..2 {
                        let msg = c.msg().await.unwrap();
                        assert_eq!(msg.payload, b"hi");
                    }
                    c.barrier().await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_check_connect_subscribe_disconnect() {
    const WARM_UP: usize = 20_000;
    const CYCLES: usize = 100_000;
    let tern = Tern::start("leak", "");
    let addr = tern.addr;
    bounded(Duration::from_secs(150), async {
        let baseline = tern.rss();
        // The warm-up fills the ring of recently closed connections (10,000 by default),
        // which is bounded memory, not a leak.
        connect_cycles(addr, WARM_UP, 32).await;
        tern.wait_idle(Duration::from_secs(10)).await;
        let warm = tern.rss();
        let started = Instant::now();
        connect_cycles(addr, CYCLES, 32).await;
        let took = started.elapsed();
        tern.wait_idle(Duration::from_secs(10)).await;
        let after = tern.rss();
        let subsz = tern.monitor("/subsz");
        assert_eq!(subsz["num_subscriptions"], tern.base_subscriptions);
        let varz = tern.varz();
        assert_eq!(varz["total_connections"], WARM_UP + CYCLES);
        println!(
            "leak_check_connect_subscribe_disconnect: {CYCLES} cycles in {took:?}; RSS \
             baseline {}, after {WARM_UP} warm-up cycles {}, after {CYCLES} more {}; \
             subscriptions 0, connections 0",
            mib(baseline),
            mib(warm),
            mib(after)
        );
        assert!(
            after < warm + 16 * MIB,
            "RSS grew from {} to {}",
            mib(warm),
            mib(after)
        );
    })
    .await;
}

#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_subscriptions_added_and_removed() {
    const CONNECTIONS: usize = 10;
    const PER_CONNECTION: usize = 100_000;
    // One malloc arena: with one per thread, which worker frees what varies from run to run,
    // and so does how much freed memory glibc can reuse (rounds differed by 75 to 240 MiB).
    // With one, each round costs the same and a leak stands out.
    let tern = Tern::start_with_env("million", "", &[("MALLOC_ARENA_MAX", "1")]);
    let addr = tern.addr;
    bounded(Duration::from_secs(120), async {
        let baseline = tern.rss();
        let mut after_rounds = Vec::new();
        let mut peaks = Vec::new();
        for round in 0..3 {
            let started = Instant::now();
            let mut clients = Vec::new();
            for c in 0..CONNECTIONS {
                let mut client = Client::connect(addr).await.unwrap();
                let mut batch = Vec::new();
                for i in 0..PER_CONNECTION {
                    batch.extend_from_slice(format!("SUB m.{c}.{i}.x {i}\r\n").as_bytes());
                    if batch.len() >= 64 * 1024 {
                        client.send(&batch).await.unwrap();
                        batch.clear();
                    }
                }
                client.send(&batch).await.unwrap();
                client.barrier().await.unwrap();
                clients.push(client);
            }
            let added = started.elapsed();
            assert_eq!(
                tern.client_subscriptions(),
                (CONNECTIONS * PER_CONNECTION) as u64
            );
            // Routing still works with a million subscriptions in the sublist.
            let mut probe = Client::connect(addr).await.unwrap();
            probe.send(b"PUB m.7.77777.x 2\r\nhi\r\n").await.unwrap();
            probe.barrier().await.unwrap();
            let msg = clients[7].msg().await.unwrap();
            assert_eq!(
                (msg.subject.as_str(), msg.sid.as_str()),
                ("m.7.77777.x", "77777")
            );
            peaks.push(tern.rss());
            // Half the connections unsubscribe one by one, half just disconnect.
            let started = Instant::now();
            for (c, mut client) in clients.into_iter().enumerate() {
                if c % 2 == 0 {
                    let mut batch = Vec::new();
                    for i in 0..PER_CONNECTION {
                        batch.extend_from_slice(format!("UNSUB {i}\r\n").as_bytes());
                        if batch.len() >= 64 * 1024 {
                            client.send(&batch).await.unwrap();
                            batch.clear();
                        }
                    }
                    client.send(&batch).await.unwrap();
                    client.barrier().await.unwrap();
                }
            }
            drop(probe);
            tern.wait_idle(Duration::from_secs(30)).await;
            let removed = started.elapsed();
            after_rounds.push(tern.rss());
            println!(
                "million_subscriptions_added_and_removed round {round}: 1,000,000 added in \
                 {added:?}, removed in {removed:?}; RSS {} with them, {} after",
                mib(peaks[round]),
                mib(after_rounds[round])
            );
        }
        println!(
            "million_subscriptions_added_and_removed: RSS baseline {}, after rounds {}, {}, {}",
            mib(baseline),
            mib(after_rounds[0]),
            mib(after_rounds[1]),
            mib(after_rounds[2])
        );
        // A leak of the subscriptions would add a peak's worth (about 580 MiB) per round. What
        // a round does add (about 75 MiB) is the ring of closed connections: as nats-server's,
        // it keeps the last 10,000 closed connections with their subscriptions, for
        // `/connz?state=closed&subs=1`, and each round closes five holding 100,000 each. The
        // first round is left out: the memory it frees at the top of the heap goes back to the
        // system, which later rounds' does not.
        let step = after_rounds[2].saturating_sub(after_rounds[1]);
        assert!(
            step < peaks[0] / 4,
            "the third round kept {} more than the second (peak of the first: {})",
            mib(step),
            mib(peaks[0])
        );
    })
    .await;
}

#[ignore]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    // TERN_SOAK_SECS (default 120) of everything at once: ordered publishers and checkers,
    // clients dropping mid-stream, bad input, slow consumers, connect/subscribe cycles.
    let secs: u64 = std::env::var("TERN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    const PUBLISHERS: usize = 2;
    const CHECKERS: usize = 3;
    // A small budget so the slow consumers are cut within seconds of joining.
    let tern = Tern::start("soak", "max_pending: 8MB\nping_interval: \"2s\"\n");
    let addr = tern.addr;
    raise_open_file_limit();
    bounded(Duration::from_secs(secs + 120), async move {
        let baseline = tern.rss();
        let sampler = RssSampler::start(&tern);
        let deadline = Instant::now() + Duration::from_secs(secs);
        let stop = Arc::new(AtomicBool::new(false));
        let finals: Arc<Vec<AtomicU64>> =
            Arc::new((0..PUBLISHERS).map(|_| AtomicU64::new(u64::MAX)).collect());
        // End-to-end flow control: publishers stay within WINDOW messages of the slowest
        // checker, so a checker starved of CPU on a busy machine is never a slow consumer.
        const WINDOW: u64 = 16 * 1024;
        let published = Arc::new(AtomicU64::new(0));
        let progress: Arc<Vec<AtomicU64>> =
            Arc::new((0..CHECKERS).map(|_| AtomicU64::new(0)).collect());

        let mut checkers = Vec::new();
        for i in 0..CHECKERS {
            let mut c = Client::connect(addr).await.unwrap();
            c.send(b"SUB soak.* 1\r\n").await.unwrap();
            c.barrier().await.unwrap();
            let finals = finals.clone();
            let progress = progress.clone();
            checkers.push(tokio::spawn(async move {
                let mut seqs = Sequences::new(PUBLISHERS);
                let mut n = 0u64;
                loop {
                    let done =
                        (0..PUBLISHERS).all(|p| seqs.next[p] == finals[p].load(Ordering::Relaxed));
                    if done {
                        return n;
                    }
                    let msg = c.msg().await.expect("checker stays connected");
                    if msg.subject == "soak.end" {
                        // Sent once the publishers are done: look at `finals` again.
                        continue;
                    }
                    seqs.check(&format!("checker {i}"), &msg.payload);
                    n += 1;
                    progress[i].store(n, Ordering::Relaxed);
                }
            }));
        }
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let finals = finals.clone();
                let (published, progress) = (published.clone(), progress.clone());
                tokio::spawn(async move {
                    let mut publisher = Client::connect(addr).await.unwrap();
                    let mut seq = 0;
                    let mut batch = Vec::new();
                    while Instant::now() < deadline {
                        for _ in 0..1024 {
                            encode_pub(&mut batch, &format!("soak.{p}"), p, seq, 128);
                            seq += 1;
                        }
                        publisher.send(&batch).await.unwrap();
                        batch.clear();
                        publisher.barrier().await.unwrap();
                        let total = published.fetch_add(1024, Ordering::Relaxed) + 1024;
                        let slowest = || progress.iter().map(|p| p.load(Ordering::Relaxed)).min();
                        while total > slowest().unwrap() + WINDOW && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    finals[p].store(seq, Ordering::Relaxed);
                    seq
                })
            })
            .collect();
        let churn = churners(addr, 4, "soak.*", stop.clone());
        let bad = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let kinds = [Bad::Garbage, Bad::OversizePayload, Bad::HugeControlLine];
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let kind = kinds[n % kinds.len()];
                    let (got, reset, _) = bad_client(addr, kind).await;
                    if reset {
                        assert!(kind.answer().starts_with(&got), "{kind:?}: {got:?}");
                    } else {
                        assert_eq!(got, kind.answer(), "{kind:?}");
                    }
                    n += 1;
                }
                n
            })
        };
        let cycles = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    connect_cycles(addr, 100, 4).await;
                    n += 100;
                }
                n
            })
        };
        // A slow consumer joins every few seconds and must be cut.
        let mut slow = 0;
        while Instant::now() + Duration::from_secs(5) < deadline {
            let mut c = Client::connect(addr).await.unwrap();
            c.send(b"SUB soak.* 1\r\n").await.unwrap();
            let port = c.writer.local_addr().unwrap().port();
            let joined = Instant::now();
            while server_socket_established(addr.port(), port) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if Instant::now() < deadline {
                slow += 1;
            }
            assert!(joined.elapsed() < Duration::from_secs(60));
        }
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut published = 0;
        for p in publishers {
            published += p.await.unwrap();
        }
        // Every publisher's last message was handled (its PING answered) before this one.
        let mut end = Client::connect(addr).await.unwrap();
        end.send(b"PUB soak.end 0\r\n\r\n").await.unwrap();
        end.barrier().await.unwrap();
        drop(end);
        let mut checked = 0;
        for c in checkers {
            checked += c.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let mut churned = 0;
        for c in churn {
            churned += c.await.unwrap();
        }
        let bad = bad.await.unwrap();
        let cycles = cycles.await.unwrap();
        tern.wait_idle(Duration::from_secs(30)).await;
        let varz = tern.varz();
        assert!(varz["slow_consumers"].as_u64().unwrap() >= slow);
        let peak = sampler.peak();
        let after = tern.rss();
        println!(
            "soak ({secs} s): {published} messages published, {checked} checked by \
             {CHECKERS} subscribers (each got every one, once, in order); {churned} clients \
             dropped mid-stream, {bad} bad clients cut with their error, {cycles} \
             connect/subscribe cycles, {slow} slow consumers cut ({} counted); RSS baseline {}, \
             peak {}, after {}",
            varz["slow_consumers"],
            mib(baseline),
            mib(peak),
            mib(after)
        );
        assert_eq!(checked, published * CHECKERS as u64);
        assert!(peak < baseline + 512 * MIB, "RSS peak {}", mib(peak));
    })
    .await;
}
