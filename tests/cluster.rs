//! Clusters over nats-server's route protocol: tern nodes with each other, and mixed with
//! nats-server 2.15.1 in both roles (tern as the seed, tern joining), driven by real clients.
//! Every server is a real process on loopback ports, killed when the test ends.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{
    client, every_pair_exchanges, node, node_with, until_routed, Node, SETTLE, TERN,
};
use common::process::{reference_server, Scratch};
use futures::StreamExt;

/// A queue group with one member on each node gets each message once, cluster-wide.
async fn queue_group_across(nodes: &[&Node]) {
    let publisher = client(nodes[0]).await;
    let mut members = Vec::new();
    for node in nodes {
        let c = client(node).await;
        let sub = c.queue_subscribe("work", "workers".into()).await.unwrap();
        c.flush().await.unwrap();
        members.push((c, sub));
    }
    // Interest for the group from every node has arrived when a probe subject subscribed
    // after the group reaches the publisher's node from the last node.
    let last = client(nodes[nodes.len() - 1]).await;
    let mut probe = last.subscribe("work.probe").await.unwrap();
    last.flush().await.unwrap();
    until_routed(&publisher, &mut probe, "work.probe").await;
    let total = 300u32;
    for n in 0..total {
        publisher
            .publish("work", n.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + SETTLE;
    while seen.len() < total as usize {
        for (_, sub) in members.iter_mut() {
            while let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(20), sub.next()).await
            {
                let n: u32 = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
                assert!(seen.insert(n), "message {n} delivered twice");
            }
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {total} arrived",
            seen.len()
        );
    }
}

/// Request/reply with headers from each node to a responder on another.
async fn requests_across(nodes: &[&Node]) {
    let responder_node = nodes[nodes.len() - 1];
    let responder = client(responder_node).await;
    let mut service = responder.subscribe("svc.echo").await.unwrap();
    responder.flush().await.unwrap();
    let answering = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            if let Some(reply) = msg.reply {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    "X-Seen",
                    msg.headers
                        .as_ref()
                        .and_then(|h| h.get("X-Ask"))
                        .map(|v| v.as_str())
                        .unwrap_or("none"),
                );
                answering
                    .publish_with_headers(reply, headers, msg.payload)
                    .await
                    .unwrap();
                answering.flush().await.unwrap();
            }
        }
    });
    for node in nodes {
        let requester = client(node).await;
        let deadline = Instant::now() + SETTLE;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("X-Ask", node.name.as_str());
        let response = loop {
            let request = async_nats::Request::new()
                .payload(format!("from {}", node.name).into())
                .headers(headers.clone())
                .timeout(Some(Duration::from_millis(500)));
            match requester.send_request("svc.echo", request).await {
                Ok(response) => break response,
                Err(_) if Instant::now() < deadline => continue,
                Err(err) => panic!("request from {}: {err}", node.name),
            }
        };
        assert_eq!(response.payload, format!("from {}", node.name));
        let seen = response.headers.unwrap();
        assert_eq!(seen.get("X-Seen").unwrap().as_str(), node.name);
    }
    task.abort();
}

#[tokio::test]
async fn three_tern_nodes_form_a_full_mesh() {
    let scratch = Scratch::new("cluster-tern3");
    let tern = PathBuf::from(TERN);
    let n1 = node(&scratch, &tern, "T1", &[]);
    // Both join through the seed only: they learn of each other by gossip.
    let n2 = node(&scratch, &tern, "T2", &[&n1]);
    let n3 = node(&scratch, &tern, "T3", &[&n1]);
    let nodes = [&n1, &n2, &n3];
    every_pair_exchanges(&nodes).await;
    queue_group_across(&nodes).await;
    requests_across(&nodes).await;
}

#[tokio::test]
async fn tern_joins_a_nats_server_cluster() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-join");
    let a = node(&scratch, &reference, "A", &[]);
    let b = node(&scratch, &reference, "B", &[&a]);
    let t = node(&scratch, &PathBuf::from(TERN), "T", &[&a]);
    let nodes = [&a, &b, &t];
    every_pair_exchanges(&nodes).await;
    queue_group_across(&nodes).await;
    requests_across(&nodes).await;
}

#[tokio::test]
async fn nats_servers_join_a_tern_seed() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-seed");
    let t = node(&scratch, &PathBuf::from(TERN), "T", &[]);
    let a = node(&scratch, &reference, "A", &[&t]);
    let b = node(&scratch, &reference, "B", &[&t]);
    let nodes = [&t, &a, &b];
    every_pair_exchanges(&nodes).await;
    queue_group_across(&nodes).await;
    requests_across(&nodes).await;
}

/// Connects to a route port, sends `send` and returns everything the server wrote before it
/// closed the connection (or after two seconds).
fn route_port_answer(route: &str, send: &str) -> String {
    let mut stream = TcpStream::connect(route).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(send.as_bytes()).unwrap();
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// Bad input on the route port gets nats-server's `-ERR` and the connection closes.
#[test]
fn route_port_refuses_as_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-refuse");
    let t = node(&scratch, &PathBuf::from(TERN), "T", &[]);
    let a = node(&scratch, &reference, "A", &[]);
    let cases = [
        // A client on the route port.
        "CONNECT {\"lang\":\"go\",\"version\":\"1.0\",\"verbose\":false}\r\nPING\r\n",
        // A route from another cluster.
        "CONNECT {\"echo\":true,\"verbose\":false,\"pedantic\":false,\"headers\":true,\"name\":\"NXXX\",\"cluster\":\"OTHER\"}\r\n",
        // Anything before CONNECT.
        "PING\r\n",
    ];
    for send in cases {
        let errs = |route: &str| -> Vec<String> {
            route_port_answer(route, send)
                .lines()
                .filter(|l| l.starts_with("-ERR"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(errs(&t.route), errs(&a.route), "{send}");
    }
    // The INFO a route gets first: the fields a 2.15.1 peer reads.
    let info = |route: &str| -> serde_json::Value {
        let mut stream = BufReader::new(TcpStream::connect(route).unwrap());
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        serde_json::from_str(line.strip_prefix("INFO ").unwrap().trim()).unwrap()
    };
    let (info, reference) = (info(&t.route), info(&a.route));
    assert_eq!(info["cluster"], "C1");
    assert_eq!(info["compression"], "off");
    // `MsgTraceProto`, as nats-server says.
    assert_eq!(info["proto"], 3);
    assert_eq!(info["proto"], reference["proto"]);
    assert!(info.get("route_pool_size").is_none(), "{info}");
}

/// A raw client connection that reads the server's lines (answering its PINGs).
struct RawClient {
    name: &'static str,
    stream: BufReader<TcpStream>,
}

impl RawClient {
    /// Connects to `node` with CONNECT `protocol` and a PING, and reads up to the PONG (and,
    /// for protocol 1, the INFO that follows it).
    fn connect(name: &'static str, node: &Node, protocol: u8, log: &mut Vec<String>) -> RawClient {
        let stream = TcpStream::connect(&node.client).unwrap();
        stream.set_read_timeout(Some(SETTLE)).unwrap();
        let mut client = RawClient {
            name,
            stream: BufReader::new(stream),
        };
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"headers\":true,\"protocol\":{protocol}}}\r\nPING\r\n"
        );
        client
            .stream
            .get_mut()
            .write_all(connect.as_bytes())
            .unwrap();
        client.next_info(log);
        client.until("PONG");
        if protocol == 1 {
            client.next_info(log);
        }
        client
    }

    /// The next line that is not a PING (answered), or panics after `SETTLE`.
    fn line(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "{}: closed", self.name);
            if line == "PING\r\n" {
                self.stream.get_mut().write_all(b"PONG\r\n").unwrap();
                continue;
            }
            return line;
        }
    }

    fn until(&mut self, want: &str) {
        let line = self.line();
        assert_eq!(line.trim_end(), want, "{}", self.name);
    }

    /// Reads an INFO and logs what a client makes of it: the cluster, the nodes it may
    /// reconnect to (by name, via `names`), lame duck mode, connect_info.
    fn next_info(&mut self, log: &mut Vec<String>) -> serde_json::Value {
        let line = self.line();
        let json = line
            .strip_prefix("INFO ")
            .unwrap_or_else(|| panic!("{line}"));
        let info: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        log.push(format!(
            "{}: cluster={} urls={} ldm={} connect_info={}",
            self.name, info["cluster"], info["connect_urls"], info["ldm"], info["connect_info"]
        ));
        info
    }
}

/// What clients are told of the cluster, side by side with nats-server: `cluster` in INFO,
/// `connect_urls` (none before the first route; ours then the peers') pushed to protocol-1
/// clients when a node joins, the lame duck INFO on the node leaving (`ldm`, only the others'
/// URLs) and the others' INFO without it. Protocol-0 clients are told nothing.
#[test]
fn clients_are_told_of_the_cluster_as_by_nats_server() {
    let tern = clients_see(&PathBuf::from(TERN));
    assert_eq!(
        tern,
        [
            "x1: cluster=\"C1\" urls=null ldm=null connect_info=null",
            "x1: cluster=\"C1\" urls=null ldm=null connect_info=true",
            "x0: cluster=\"C1\" urls=null ldm=null connect_info=null",
            "x1: cluster=\"C1\" urls=[\"X\",\"Y\"] ldm=null connect_info=null",
            "y1: cluster=\"C1\" urls=[\"Y\",\"X\"] ldm=null connect_info=null",
            "y1: cluster=\"C1\" urls=[\"Y\",\"X\"] ldm=null connect_info=true",
            "y1: cluster=\"C1\" urls=[\"X\"] ldm=true connect_info=null",
            "x1: cluster=\"C1\" urls=[\"X\"] ldm=null connect_info=null",
            "x0: PONG",
        ]
    );
    if let Some(reference) = reference_server() {
        assert_eq!(tern, clients_see(&reference));
    }
}

fn clients_see(binary: &Path) -> Vec<String> {
    let scratch = Scratch::new(&format!(
        "cluster-clients-{}",
        binary.file_name().unwrap().to_string_lossy()
    ));
    let mut log = Vec::new();
    let x = node(&scratch, binary, "X", &[]);
    let mut x1 = RawClient::connect("x1", &x, 1, &mut log);
    let mut x0 = RawClient::connect("x0", &x, 0, &mut log);
    let y = node_with(
        &scratch,
        binary,
        "Y",
        &[&x],
        "lame_duck_grace_period: \"1s\"\nlame_duck_duration: \"30s\"",
    );
    x1.next_info(&mut log);
    let mut y1 = RawClient::connect("y1", &y, 1, &mut log);
    y.process.signal("USR2");
    y1.next_info(&mut log);
    x1.next_info(&mut log);
    // The protocol-0 client was told nothing: its next line answers a PING.
    x0.stream.get_mut().write_all(b"PING\r\n").unwrap();
    log.push(format!("x0: {}", x0.line().trim_end()));
    // Client URLs by node name.
    let names = [(&x.client, "X"), (&y.client, "Y")];
    log.into_iter()
        .map(|line| {
            names
                .iter()
                .fold(line, |line, (url, name)| line.replace(url.as_str(), name))
        })
        .collect()
}

/// With `cluster.no_advertise`, a server tells its clients of no other server, and its peers
/// hear no client URLs from it; side by side with nats-server.
#[test]
fn no_advertise_keeps_connect_urls_quiet() {
    let run = |binary: &Path| -> Vec<String> {
        let scratch = Scratch::new(&format!(
            "cluster-noadv-{}",
            binary.file_name().unwrap().to_string_lossy()
        ));
        let mut log = Vec::new();
        let x = node_with(&scratch, binary, "X", &[], "cluster.no_advertise: true");
        let mut x1 = RawClient::connect("x1", &x, 1, &mut log);
        let y = node(&scratch, binary, "Y", &[&x]);
        let mut y1 = RawClient::connect("y1", &y, 1, &mut log);
        // Z joins Y: X's client hears nothing, Y's client hears of Z only.
        let z = node(&scratch, binary, "Z", &[&y]);
        y1.next_info(&mut log);
        x1.stream.get_mut().write_all(b"PING\r\n").unwrap();
        log.push(format!("x1: {}", x1.line().trim_end()));
        let names = [(&x.client, "X"), (&y.client, "Y"), (&z.client, "Z")];
        log.into_iter()
            .map(|line| {
                names
                    .iter()
                    .fold(line, |line, (url, name)| line.replace(url.as_str(), name))
            })
            .collect()
    };
    let tern = run(&PathBuf::from(TERN));
    eprintln!("{tern:#?}");
    assert!(
        tern.iter().all(|l| !l.contains('X') || l.starts_with("x1")),
        "{tern:?}"
    );
    if let Some(reference) = reference_server() {
        assert_eq!(tern, run(&reference));
    }
}

/// A publisher far faster than the route to its subscriber's node: the route paces the
/// publisher (as nats-server stalls it) instead of overflowing its small `max_pending` and
/// being cut, which would lose messages. Every message arrives, once, in order.
#[tokio::test]
async fn a_fast_publisher_is_paced_by_the_route_not_cut() {
    let scratch = Scratch::new("cluster-paced");
    let tern = PathBuf::from(TERN);
    let small = "max_pending: 1MB";
    let a = node_with(&scratch, &tern, "PA", &[], small);
    let b = node_with(&scratch, &tern, "PB", &[&a], small);
    let publisher = client(&a).await;
    let receiver = client(&b).await;
    let mut sub = receiver.subscribe("flood").await.unwrap();
    receiver.flush().await.unwrap();
    until_routed(&publisher, &mut sub, "flood").await;
    let total = 20_000u32;
    let payload = vec![b'x'; 1024];
    let sending = tokio::spawn(async move {
        for n in 0..total {
            let mut body = n.to_be_bytes().to_vec();
            body.extend_from_slice(&payload);
            publisher.publish("flood", body.into()).await.unwrap();
        }
        publisher.flush().await.unwrap();
    });
    for n in 0..total {
        let msg = tokio::time::timeout(SETTLE, sub.next())
            .await
            .unwrap_or_else(|_| panic!("message {n} never arrived"))
            .unwrap();
        assert_eq!(msg.payload[..4], n.to_be_bytes(), "out of order or lost");
    }
    sending.await.unwrap();
}

/// A payload that tells where every byte of it came from: sender `tag`, message `n`, offset.
fn large_payload(tag: u8, n: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| tag ^ (n as u8).wrapping_mul(31) ^ (i as u8) ^ ((i >> 8) as u8))
        .collect()
}

/// Large messages (16 KiB and up: shared with the read buffer on tern rather than copied, on
/// the route and leafnode paths as on the client path) cross a route, a route to a
/// nats-server node, and a leafnode, in both directions and forwarded from one kind of server
/// connection to another, with and without headers, to a queue group with a reply: every one
/// arrives whole, byte for byte, in order.
#[tokio::test]
async fn large_messages_cross_routes_and_leafnodes_whole() {
    let scratch = Scratch::new("cluster-large");
    let tern = PathBuf::from(TERN);
    let a = node_with(
        &scratch,
        &tern,
        "LA",
        &[],
        "leafnodes { listen: \"127.0.0.1:-1\" }",
    );
    let b = node(&scratch, &tern, "LB", &[&a]);
    // A nats-server node in the cluster reads tern's frames, and sends its own.
    let reference = reference_server().map(|r| node(&scratch, &r, "LN", &[&a]));
    let a_log = std::fs::read_to_string(scratch.0.join("LA.log")).unwrap();
    let a_leaf =
        common::cluster::logged_addr(&a_log, "Listening for leafnode connections on ").unwrap();
    let (_leaf, leaf_log) = common::cluster::standalone(
        &scratch,
        &tern,
        "LL",
        &format!("leafnodes {{ remotes: [{{ url: \"nats-leaf://{a_leaf}\" }}] }}"),
    );
    let leaf_client =
        common::cluster::logged_addr(&leaf_log, "Listening for client connections on ").unwrap();
    let mut clients = vec![
        ("A", client(&a).await),
        ("B", client(&b).await),
        (
            "L",
            async_nats::connect(format!("nats://{leaf_client}"))
                .await
                .unwrap(),
        ),
    ];
    if let Some(n) = &reference {
        clients.push(("N", client(n).await));
    }
    let sizes = [16 * 1024, 64 * 1024 + 3, 1_000_000];
    // Publishers behind a route (B), behind the leafnode (L) and, when there is one, on the
    // nats-server node: each message reaches the others through A, read from one server
    // connection and written to another.
    for from in ["B", "L", "N"] {
        let Some(publisher) = clients
            .iter()
            .find(|(n, _)| *n == from)
            .map(|(_, c)| c.clone())
        else {
            continue;
        };
        let subject = format!("big.{from}");
        let mut subs = Vec::new();
        for (name, c) in clients.iter().filter(|(n, _)| *n != from) {
            let sub = c.subscribe(subject.clone()).await.unwrap();
            let probe = format!("{subject}.probe.{name}");
            let mut probed = c.subscribe(probe.clone()).await.unwrap();
            c.flush().await.unwrap();
            until_routed(&publisher, &mut probed, &probe).await;
            subs.push((*name, sub));
        }
        let tag = from.as_bytes()[0];
        let mut n = 0;
        for size in sizes {
            for with_headers in [false, true] {
                let payload = large_payload(tag, n, size);
                if with_headers {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("X-N", n.to_string().as_str());
                    publisher
                        .publish_with_headers(subject.clone(), headers, payload.into())
                        .await
                        .unwrap();
                } else {
                    publisher
                        .publish(subject.clone(), payload.into())
                        .await
                        .unwrap();
                }
                n += 1;
            }
        }
        publisher.flush().await.unwrap();
        for (name, sub) in &mut subs {
            let mut n = 0;
            for size in sizes {
                for with_headers in [false, true] {
                    let msg = tokio::time::timeout(SETTLE, sub.next())
                        .await
                        .unwrap_or_else(|_| panic!("{from} -> {name}: message {n} never came"))
                        .unwrap();
                    assert_eq!(msg.payload.len(), size, "{from} -> {name}: message {n}");
                    assert!(
                        msg.payload == large_payload(tag, n, size),
                        "{from} -> {name}: message {n} arrived altered"
                    );
                    let header = msg.headers.as_ref().and_then(|h| h.get("X-N"));
                    match with_headers {
                        true => assert_eq!(header.map(|v| v.to_string()), Some(n.to_string())),
                        false => assert!(header.is_none(), "{from} -> {name}: {n}"),
                    }
                    n += 1;
                }
            }
        }
    }
    // A request to a queue group whose only member is behind the route (`RMSG` with `+ reply
    // group`), from behind the leafnode, answered with a large reply.
    let responder = clients[1].1.clone();
    let mut service = responder
        .queue_subscribe("big.service", "workers".into())
        .await
        .unwrap();
    let mut probed = responder.subscribe("big.service.probe").await.unwrap();
    responder.flush().await.unwrap();
    let requester = clients[2].1.clone();
    until_routed(&requester, &mut probed, "big.service.probe").await;
    let task = tokio::spawn(async move {
        let req = service.next().await.unwrap();
        assert!(
            req.payload == large_payload(b'q', 0, 200_000),
            "request altered"
        );
        responder
            .publish(req.reply.unwrap(), large_payload(b'r', 0, 300_000).into())
            .await
            .unwrap();
        responder.flush().await.unwrap();
    });
    let answer = tokio::time::timeout(
        SETTLE,
        requester.request("big.service", large_payload(b'q', 0, 200_000).into()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        answer.payload == large_payload(b'r', 0, 300_000),
        "reply altered"
    );
    task.await.unwrap();
}
