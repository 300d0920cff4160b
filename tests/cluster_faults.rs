//! Clusters under faults: a node killed with SIGKILL while clients publish and subscribe through
//! the others, a route cut and restored many times through a fault-injecting proxy, and five
//! nodes carrying 100,000 subscriptions. Every server is a real tern process on loopback ports,
//! killed when the test ends; every wait is bounded.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{
    client, converge, monitor_json, node, node_routed, node_with, until_routed, Node, SETTLE, TERN,
};
use common::process::Scratch;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const MONITOR: &str = "http: \"127.0.0.1:-1\"";

/// Receives `count` messages numbered `0..count` on `sub`, each exactly once and in order,
/// then the `end` marker: none lost, none duplicated.
async fn receive_sequence(sub: &mut async_nats::Subscriber, count: u32, what: &str) {
    for n in 0..count {
        let msg = tokio::time::timeout(SETTLE, sub.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: message {n} never arrived"))
            .unwrap();
        assert_eq!(msg.payload, n.to_string(), "{what}: lost or duplicated");
    }
    let msg = tokio::time::timeout(SETTLE, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.payload, "end", "{what}: a duplicate arrived");
}

/// Publishes `0..count` then `end` on `subject`, flushing now and then.
async fn publish_sequence(client: async_nats::Client, subject: &'static str, count: u32) {
    for n in 0..count {
        client.publish(subject, n.to_string().into()).await.unwrap();
        if n % 500 == 0 {
            client.flush().await.unwrap();
        }
    }
    client.publish(subject, "end".into()).await.unwrap();
    client.flush().await.unwrap();
}

/// One of three nodes dies with SIGKILL while messages flow between the other two in both
/// directions: none of them is lost or duplicated, and a client of the dead node reconnects
/// to another node through the `connect_urls` it was told and gets messages there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_between_the_others() {
    let scratch = Scratch::new("faults-kill");
    let tern = PathBuf::from(TERN);
    let n1 = node(&scratch, &tern, "T1", &[]);
    let n2 = node(&scratch, &tern, "T2", &[&n1]);
    let mut n3 = node(&scratch, &tern, "T3", &[&n1]);

    // The client of T3 fails over to the nodes its INFO named (`connect_urls`); async-nats
    // reads them at connect only, so it connects once T3 has been told of every node.
    let c3 = told_of_every_node(&n3, 3).await;
    let mut dead_sub = c3.subscribe("dead.sub").await.unwrap();
    c3.flush().await.unwrap();
    let c1 = client(&n1).await;
    let c2 = client(&n2).await;
    until_routed(&c1, &mut dead_sub, "dead.sub").await;

    let mut forth = c2.subscribe("live.forth").await.unwrap();
    let mut back = c1.subscribe("live.back").await.unwrap();
    c1.flush().await.unwrap();
    c2.flush().await.unwrap();
    until_routed(&c1, &mut forth, "live.forth").await;
    until_routed(&c2, &mut back, "live.back").await;

    let count = 20_000;
    let forth_task = tokio::spawn(publish_sequence(c1.clone(), "live.forth", count));
    let back_task = tokio::spawn(publish_sequence(c2.clone(), "live.back", count));
    // The first messages have arrived: kill T3 in the middle of the flow.
    for n in 0..1000u32 {
        let msg = tokio::time::timeout(SETTLE, forth.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload, n.to_string());
    }
    n3.process.0.kill().unwrap();
    let _ = n3.process.0.wait();
    // The rest of the forward stream, then all of the backward one.
    for n in 1000..count {
        let msg = tokio::time::timeout(SETTLE, forth.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload, n.to_string(), "live.forth: lost or duplicated");
    }
    let msg = tokio::time::timeout(SETTLE, forth.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.payload, "end", "live.forth: a duplicate arrived");
    receive_sequence(&mut back, count, "live.back").await;
    forth_task.await.unwrap();
    back_task.await.unwrap();

    // The client of the dead node is now on another node, with its subscription.
    let dead_port: u16 = n3.client.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Instant::now() + SETTLE;
    while c3.server_info().port == dead_port
        || c3.connection_state() != async_nats::connection::State::Connected
    {
        assert!(Instant::now() < deadline, "the client never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now_on = c3.server_info().port;
    assert!(
        [&n1, &n2]
            .iter()
            .any(|n| n.client.ends_with(&format!(":{now_on}"))),
        "reconnected to {now_on}"
    );
    until_routed(&c2, &mut dead_sub, "dead.sub").await;
}

/// A client of `node` whose INFO named `nodes` client URLs: reconnects until the node has
/// heard of the whole mesh.
async fn told_of_every_node(node: &Node, nodes: usize) -> async_nats::Client {
    let deadline = Instant::now() + SETTLE;
    loop {
        let c = client(node).await;
        if c.server_info().connect_urls.len() >= nodes {
            return c;
        }
        assert!(Instant::now() < deadline, "{:?}", c.server_info());
        drop(c);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy that can cut every connection through it and refuse new ones until restored.
struct Proxy {
    addr: String,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, links) = (up.clone(), links.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    // Down: the connection is accepted and closed at once.
                    if !up.load(Ordering::SeqCst) {
                        continue;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let link = tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Proxy {
            addr,
            up,
            links,
            accept,
        }
    }

    /// Drops every connection through the proxy (both ends see the close) and refuses new
    /// ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The subscription counts a route flap must leave as they were: each node's `/subsz` and
/// its routes' `/routez` `subscriptions`.
fn interest_counts(nodes: &[&Node]) -> Vec<u64> {
    let mut counts = Vec::new();
    for node in nodes {
        counts.push(
            monitor_json(node, "/subsz")["num_subscriptions"]
                .as_u64()
                .unwrap(),
        );
        let routez = monitor_json(node, "/routez");
        for route in routez["routes"].as_array().unwrap() {
            counts.push(route["subscriptions"].as_u64().unwrap());
        }
    }
    counts
}

/// The route between two nodes runs through a proxy that cuts it and restores it many times,
/// while interest changes on both sides during the cuts: after each restore the interest is
/// resynchronised (new subscriptions reachable, plain and queue deliveries exactly once), and
/// at the end no remote subscription has leaked (`/subsz` and `/routez` counts as before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_flaps_resynchronise_interest_without_leaks() {
    let scratch = Scratch::new("faults-flap");
    let tern = PathBuf::from(TERN);
    let n1 = node_with(&scratch, &tern, "T1", &[], MONITOR);
    let proxy = Proxy::start(n1.route.clone()).await;
    let n2 = node_routed(&scratch, &tern, "T2", &[&proxy.addr], MONITOR);
    let c1 = client(&n1).await;
    let c2 = client(&n2).await;
    let mut data = c2.subscribe("flap.data").await.unwrap();
    let mut queue2 = c2.queue_subscribe("flap.q", "g".into()).await.unwrap();
    let mut queue1 = c1.queue_subscribe("flap.q", "g".into()).await.unwrap();
    c1.flush().await.unwrap();
    c2.flush().await.unwrap();
    until_routed(&c1, &mut data, "flap.data").await;
    let nodes = [&n1, &n2];
    let baseline = tokio::task::block_in_place(|| interest_counts(&nodes));

    let flaps = 15;
    let mut churn1: Option<async_nats::Subscriber> = None;
    let mut churn2: Option<async_nats::Subscriber> = None;
    for flap in 0..flaps {
        proxy.cut();
        // Interest changes on both sides while the route is down.
        if let Some(mut old) = churn2.take() {
            old.unsubscribe().await.unwrap();
        }
        if let Some(mut old) = churn1.take() {
            old.unsubscribe().await.unwrap();
        }
        let mut new2 = c2.subscribe(format!("churn2.{flap}")).await.unwrap();
        let mut new1 = c1.subscribe(format!("churn1.{flap}")).await.unwrap();
        c1.flush().await.unwrap();
        c2.flush().await.unwrap();
        proxy.restore();
        until_routed(&c1, &mut new2, &format!("churn2.{flap}")).await;
        until_routed(&c2, &mut new1, &format!("churn1.{flap}")).await;
        churn1 = Some(new1);
        churn2 = Some(new2);

        // Plain delivery exactly once, in order.
        let count = 50;
        publish_sequence(c1.clone(), "flap.data", count).await;
        receive_sequence(&mut data, count, "flap.data").await;
        // The queue group: each message once, across both members.
        for n in 0..count {
            c1.publish("flap.q", n.to_string().into()).await.unwrap();
        }
        c1.flush().await.unwrap();
        let mut seen = HashSet::new();
        let deadline = Instant::now() + SETTLE;
        while seen.len() < count as usize {
            for sub in [&mut queue1, &mut queue2] {
                while let Ok(Some(msg)) =
                    tokio::time::timeout(Duration::from_millis(20), sub.next()).await
                {
                    let n = String::from_utf8(msg.payload.to_vec()).unwrap();
                    assert!(seen.insert(n.clone()), "flap {flap}: {n} delivered twice");
                }
            }
            assert!(
                Instant::now() < deadline,
                "flap {flap}: {} of {count}",
                seen.len()
            );
        }
    }
    for sub in [churn1.take(), churn2.take()].into_iter().flatten() {
        let mut sub = sub;
        sub.unsubscribe().await.unwrap();
    }
    c1.flush().await.unwrap();
    c2.flush().await.unwrap();
    let counts = tokio::task::block_in_place(|| converge(&baseline, || interest_counts(&nodes)));
    assert_eq!(counts, baseline, "remote subscriptions leaked or lost");
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A raw client: SUBs in bulk, then the subjects of the MSGs it gets until a `fence`.
struct RawSubscriber {
    reader: BufReader<TcpStream>,
}

impl RawSubscriber {
    fn connect(node: &Node, subjects: impl Iterator<Item = String>) -> RawSubscriber {
        let stream = TcpStream::connect(&node.client).unwrap();
        stream.set_read_timeout(Some(SETTLE)).unwrap();
        let mut writer = BufWriter::new(stream.try_clone().unwrap());
        writer
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB fence 0\r\n")
            .unwrap();
        for (sid, subject) in subjects.enumerate() {
            write!(writer, "SUB {subject} {}\r\n", sid + 1).unwrap();
        }
        writer.write_all(b"PING\r\n").unwrap();
        writer.flush().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while line != "PONG\r\n" {
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(!line.is_empty() && !line.starts_with("-ERR"), "{line}");
        }
        RawSubscriber { reader }
    }

    /// Subjects of the messages received (with how many times each) until `fences` fences.
    fn until_fences(&mut self, fences: usize) -> BTreeMap<String, usize> {
        let mut got = BTreeMap::new();
        let mut seen = 0;
        let mut line = String::new();
        while seen < fences {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "closed");
            if line == "PING\r\n" {
                self.reader.get_mut().write_all(b"PONG\r\n").unwrap();
                continue;
            }
            let Some(rest) = line.strip_prefix("MSG ") else {
                continue;
            };
            let subject = rest.split(' ').next().unwrap().to_string();
            // The payload line.
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if subject == "fence" {
                seen += 1;
            } else {
                *got.entry(subject).or_insert(0) += 1;
            }
        }
        got
    }
}

/// Five tern nodes, 100,000 subscriptions spread over four of them (the fifth holds only
/// remote ones): every publish, from two nodes, reaches exactly its subscriber and no other;
/// prints the memory each node grew by, and per remote subscription on the fifth.
#[test]
fn five_nodes_carry_100k_subscriptions() {
    let scratch = Scratch::new("faults-100k");
    let tern = PathBuf::from(TERN);
    let seed = node_with(&scratch, &tern, "N0", &[], MONITOR);
    let mut nodes = vec![seed];
    for i in 1..5 {
        let n = node_with(&scratch, &tern, &format!("N{i}"), &[&nodes[0]], MONITOR);
        nodes.push(n);
    }
    for n in &nodes {
        let routes = converge(&4, || {
            monitor_json(n, "/routez")["num_routes"].as_u64().unwrap()
        });
        assert_eq!(routes, 4, "{}: the mesh never formed", n.name);
    }
    let subs_before: Vec<u64> = nodes
        .iter()
        .map(|n| {
            monitor_json(n, "/subsz")["num_subscriptions"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let rss_before: Vec<u64> = nodes.iter().map(|n| rss_kib(n.process.0.id())).collect();

    let per_node = 25_000;
    let mut subscribers: Vec<RawSubscriber> = (0..4)
        .map(|k| {
            RawSubscriber::connect(&nodes[k], (0..per_node).map(move |i| format!("s.{k}.{i}")))
        })
        .collect();
    // Every node holds all of it: 100,000 subscriptions and a fence from each of four nodes
    // (counted once per route: the fence's interest from each node).
    let total = 4 * (per_node as u64 + 1);
    for (n, before) in nodes.iter().zip(&subs_before) {
        let want = before + total;
        let got = converge(&want, || {
            monitor_json(n, "/subsz")["num_subscriptions"]
                .as_u64()
                .unwrap()
        });
        assert_eq!(got, want, "{}: interest never arrived", n.name);
    }
    let rss_after: Vec<u64> = nodes.iter().map(|n| rss_kib(n.process.0.id())).collect();
    for (i, n) in nodes.iter().enumerate() {
        println!(
            "{}: VmRSS {} KiB -> {} KiB (+{} KiB)",
            n.name,
            rss_before[i],
            rss_after[i],
            rss_after[i].saturating_sub(rss_before[i])
        );
    }
    let remote_only = rss_after[4].saturating_sub(rss_before[4]) * 1024;
    println!(
        "memory per remote subscription (N4, remote interest only): {} bytes",
        remote_only / total
    );

    // Every 50th subject of each subscriber, published from N4 and from N0, plus subjects
    // nobody wants; then a fence from each publisher.
    let sample: Vec<(usize, usize)> = (0..4)
        .flat_map(|k| (0..per_node).step_by(50).map(move |i| (k, i)))
        .collect();
    // Kept open until every fence has arrived (closing a socket with the server's INFO unread
    // resets the connection, and the server may lose what it had not read yet).
    let mut publishers = Vec::new();
    for publisher in [&nodes[4], &nodes[0]] {
        let stream = TcpStream::connect(&publisher.client).unwrap();
        publishers.push(stream.try_clone().unwrap());
        let mut writer = BufWriter::new(stream);
        writer
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
            .unwrap();
        for (k, i) in &sample {
            write!(writer, "PUB s.{k}.{i} 2\r\nhi\r\nPUB s.x.{i} 2\r\nno\r\n").unwrap();
        }
        writer.write_all(b"PUB fence 0\r\n\r\n").unwrap();
        writer.flush().unwrap();
    }
    for (k, subscriber) in subscribers.iter_mut().enumerate() {
        let got = subscriber.until_fences(2);
        let want: BTreeMap<String, usize> = sample
            .iter()
            .filter(|(owner, _)| *owner == k)
            .map(|(_, i)| (format!("s.{k}.{i}"), 2))
            .collect();
        assert_eq!(got.len(), want.len(), "subscriber on N{k}");
        assert!(
            got == want,
            "subscriber on N{k}: wrong or duplicate deliveries"
        );
    }
    drop(publishers);
}
