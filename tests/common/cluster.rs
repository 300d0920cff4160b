//! A cluster of server processes on loopback for tests: nodes of cluster `C1` started from a
//! binary (tern or nats-server), real clients on them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::process::{wait_for_log, Process, Scratch};

pub const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// How long a cluster may take to form and propagate interest.
pub const SETTLE: Duration = Duration::from_secs(20);

/// One server of a test cluster.
pub struct Node {
    pub process: Process,
    pub name: String,
    /// Client `host:port`.
    pub client: String,
    /// Route `host:port`.
    pub route: String,
    /// Monitor `host:port`, when configured.
    pub monitor: Option<String>,
}

/// Starts `binary` as server `name` of cluster `C1`, routing to `seeds`.
pub fn node(scratch: &Scratch, binary: &Path, name: &str, seeds: &[&Node]) -> Node {
    node_with(scratch, binary, name, seeds, "")
}

/// As [`node`], with `extra` lines of configuration.
pub fn node_with(
    scratch: &Scratch,
    binary: &Path,
    name: &str,
    seeds: &[&Node],
    extra: &str,
) -> Node {
    let routes: Vec<&str> = seeds.iter().map(|s| s.route.as_str()).collect();
    node_routed(scratch, binary, name, &routes, extra)
}

/// As [`node_with`], routing to the route `host:port`s in `routes`. Lines of `extra` written
/// `cluster.key: value` go into the cluster block.
pub fn node_routed(
    scratch: &Scratch,
    binary: &Path,
    name: &str,
    routes: &[&str],
    extra: &str,
) -> Node {
    let routes: Vec<String> = routes
        .iter()
        .map(|r| format!("\"nats-route://{r}\""))
        .collect();
    // Lines of `extra` written `cluster.key: value` go into the cluster block.
    let (inside, outside): (Vec<&str>, Vec<&str>) =
        extra.lines().partition(|l| l.starts_with("cluster."));
    let inside: String = inside
        .iter()
        .map(|l| format!(", {}", l.trim_start_matches("cluster.")))
        .collect();
    let config = scratch.0.join(format!("{name}.conf"));
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:-1\nserver_name: {name}\n{}\n\
             cluster {{ name: C1, listen: 127.0.0.1:-1, routes: [{}]{inside} }}\n",
            outside.join("\n"),
            routes.join(", ")
        ),
    )
    .unwrap();
    let log = scratch.0.join(format!("{name}.log"));
    let (process, _) = Process::start(
        Command::new(binary)
            .arg("-c")
            .arg(&config)
            .arg("-l")
            .arg(&log),
        &log,
    );
    let text = wait_for_log(&log, "the route listener", |t| {
        t.contains("Listening for route connections on ")
    });
    let after = |marker: &str| {
        let line = text.lines().find(|l| l.contains(marker)).unwrap();
        line.rsplit(' ').next().unwrap().trim().to_string()
    };
    Node {
        process,
        name: name.to_string(),
        client: after("Listening for client connections on "),
        route: after("Listening for route connections on "),
        monitor: text.contains("monitor on ").then(|| after("monitor on ")),
    }
}

pub async fn client(node: &Node) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .name(&node.name)
        .connect(format!("nats://{}", node.client))
        .await
        .unwrap()
}

/// Messages across every ordered pair of nodes: each arrives exactly once, in order.
pub async fn every_pair_exchanges(nodes: &[&Node]) {
    for (i, from) in nodes.iter().enumerate() {
        for (j, to) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let subject = format!("pair.{}.{}", from.name, to.name);
            let publisher = client(from).await;
            let receiver = client(to).await;
            let mut sub = receiver.subscribe(subject.clone()).await.unwrap();
            receiver.flush().await.unwrap();
            until_routed(&publisher, &mut sub, &subject).await;
            for n in 0..200u32 {
                publisher
                    .publish(subject.clone(), n.to_string().into())
                    .await
                    .unwrap();
            }
            publisher.flush().await.unwrap();
            for n in 0..200u32 {
                let msg = tokio::time::timeout(SETTLE, sub.next())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(msg.payload, n.to_string(), "{subject}");
            }
            let extra = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
            assert!(extra.is_err(), "{subject}: a duplicate arrived");
        }
    }
}

/// Publishes probes on `subject` from `publisher` until `subscriber` receives one: the
/// cluster has formed and propagated that interest. Panics after `SETTLE`.
pub async fn until_routed(
    publisher: &async_nats::Client,
    subscriber: &mut async_nats::Subscriber,
    subject: &str,
) {
    let deadline = Instant::now() + SETTLE;
    loop {
        publisher
            .publish(subject.to_string(), "probe".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(200), subscriber.next()).await
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{subject}: interest never arrived"
        );
    }
    // Drain probes still in flight.
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(300), subscriber.next()).await
    {}
}

/// A request from `from` is answered by a responder on `to` (subscribed to `subject` once
/// its interest has reached `from`'s side), and the reply comes back.
pub async fn request_across(from: &async_nats::Client, to: &async_nats::Client, subject: &str) {
    let mut service = to.subscribe(subject.to_string()).await.unwrap();
    to.flush().await.unwrap();
    until_routed(from, &mut service, subject).await;
    let responder = to.clone();
    let task = tokio::spawn(async move {
        if let Some(req) = service.next().await {
            let reply = req.reply.expect("a reply subject");
            responder.publish(reply, "pong".into()).await.unwrap();
            responder.flush().await.unwrap();
        }
    });
    let answer = tokio::time::timeout(SETTLE, from.request(subject.to_string(), "ping".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.payload, "pong");
    task.await.unwrap();
}

/// Publishes `0`, `1`, ... `count - 1` on `subject` and flushes.
pub async fn publish_numbered(publisher: &async_nats::Client, subject: &str, count: u32) {
    for n in 0..count {
        publisher
            .publish(subject.to_string(), n.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
}

/// `count` numbered messages from `publisher` on `subject` reach `sub` once each, in order,
/// and nothing more comes.
pub async fn exactly_once(
    publisher: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    subject: &str,
    count: u32,
) {
    until_routed(publisher, sub, subject).await;
    publish_numbered(publisher, subject, count).await;
    for n in 0..count {
        let msg = tokio::time::timeout(SETTLE, sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload, n.to_string(), "{subject}");
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    assert!(extra.is_err(), "{subject}: a duplicate arrived: {extra:?}");
}

/// Starts `binary` as the stand-alone server `name` (random client port) with `config`,
/// logging to `<name>.log` in `scratch`; returns it with its log so far.
pub fn standalone(scratch: &Scratch, binary: &Path, name: &str, config: &str) -> (Process, String) {
    let file = scratch.0.join(format!("{name}.conf"));
    std::fs::write(
        &file,
        format!("listen: 127.0.0.1:-1\nserver_name: {name}\n{config}\n"),
    )
    .unwrap();
    let log = scratch.0.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    Process::start(
        Command::new(binary)
            .arg("-c")
            .arg(&file)
            .arg("-l")
            .arg(&log),
        &log,
    )
}

/// The last word of the first log line containing `marker` (an address the server listens on).
pub fn logged_addr(text: &str, marker: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains(marker))?;
    Some(line.rsplit(' ').next()?.trim().to_string())
}

/// `x` and `y` (clients of two servers) each get `count` messages from the other, exactly once.
pub async fn exchange_both_ways(
    x: &async_nats::Client,
    y: &async_nats::Client,
    tag: &str,
    count: u32,
) {
    for (from, to, way) in [(x, y, "xy"), (y, x, "yx")] {
        let subject = format!("{tag}.{way}");
        let mut sub = to.subscribe(subject.clone()).await.unwrap();
        to.flush().await.unwrap();
        exactly_once(from, &mut sub, &subject, count).await;
    }
}

/// The JSON document at `path` of `node`'s monitor.
pub fn monitor_json(node: &Node, path: &str) -> serde_json::Value {
    let addr = node.monitor.as_deref().expect("a node with a monitor");
    let (status, body) = super::process::http_get(addr, path).expect("the monitor answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `probe` until it returns `want`; returns the last value (compare it with `want`).
pub fn converge<T: PartialEq>(want: &T, mut probe: impl FnMut() -> T) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        let got = probe();
        if got == *want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server of a two-node cluster in operator mode: `config` plus a cluster block listening
/// on `route_port` and routing to `routes`; `None` when it could not take its ports (another
/// test took `route_port` between [`free_port`] and the start: the caller picks new ones).
pub fn cluster_node(
    scratch: &Scratch,
    binary: &Path,
    name: &str,
    config: &str,
    route_port: u16,
    routes: &[u16],
) -> Option<(Process, String)> {
    let routes: Vec<String> = routes
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect();
    let file = scratch.0.join(format!("{name}-{route_port}.conf"));
    std::fs::write(
        &file,
        format!(
            "listen: 127.0.0.1:-1\nserver_name: {name}\n{config}\ncluster {{ name: C, listen: \
             127.0.0.1:{route_port}, routes: [{}] }}\n",
            routes.join(", ")
        ),
    )
    .unwrap();
    let log = scratch.0.join(format!("{name}-{route_port}.log"));
    let child = std::process::Command::new(binary)
        .arg("-c")
        .arg(&file)
        .arg("-l")
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let process = Process(child);
    let text = wait_for_log(&log, "Server is ready or [FTL]", |t| {
        t.contains("Server is ready") || t.contains("[FTL]")
    });
    if !text.contains("Server is ready") {
        return None;
    }
    let port = super::process::listening_port(&text).unwrap();
    Some((process, format!("127.0.0.1:{port}")))
}

/// Runs `start` with two free ports until it succeeds (a port found free may be taken by
/// another test before a server binds it).
pub fn with_free_ports<T>(mut start: impl FnMut(u16, u16) -> Option<T>) -> T {
    for _ in 0..5 {
        if let Some(started) = start(free_port(), free_port()) {
            return started;
        }
    }
    panic!("no free ports in five tries");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The two-server pairings a mixed-cluster test runs: tern with tern and, when nats-server
/// is installed, nats-server with nats-server and each mixed pair (first server, second).
pub fn pairings() -> Vec<(&'static str, std::path::PathBuf, std::path::PathBuf)> {
    let tern: std::path::PathBuf = env!("CARGO_BIN_EXE_tern").into();
    let mut pairings = vec![("tern+tern", tern.clone(), tern.clone())];
    if let Some(reference) = super::process::reference_server() {
        pairings.push(("nats+nats", reference.clone(), reference.clone()));
        pairings.push(("tern+nats", tern.clone(), reference.clone()));
        pairings.push(("nats+tern", reference, tern));
    }
    pairings
}
