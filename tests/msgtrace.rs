//! Message tracing (`Nats-Trace-Dest`, and W3C `traceparent` with an account's `msg_trace`):
//! the trace events tern publishes, compared with those of nats-server 2.15.1 for the same
//! publish (ids and times normalised away), on one server and across a two-node cluster of
//! every mix of tern and nats-server; accounts from the configuration file and from JWTs.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use nkeys::KeyPair;
use serde_json::{json, Value};

use common::cluster::{logged_addr, node, node_with, standalone, until_routed, Node, SETTLE, TERN};
use common::jwt::{account_jwt, creds, memory_resolver_config, user_jwt};
use common::process::{reference_server, Process, Scratch};
use common::Raw;

/// How long to wait to be sure that nothing more arrives.
const QUIET: Duration = Duration::from_millis(400);

/// A scratch directory of its own for each run.
fn scratch() -> Scratch {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    Scratch::new(&format!(
        "msgtrace-{}",
        RUNS.fetch_add(1, Ordering::Relaxed)
    ))
}

async fn named(node: &Node, name: &str) -> async_nats::Client {
    client_at(&node.client, name).await
}

async fn client_at(addr: &str, name: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .name(name)
        .connect(format!("nats://{addr}"))
        .await
        .unwrap()
}

fn trace_headers(only: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Trace-Dest", "trace.out");
    headers.insert("App-Id", "42");
    if only {
        headers.insert("Nats-Trace-Only", "true");
    }
    headers
}

/// An event without what differs from run to run: times, cids, server identities. Egress
/// events sorted (their order among subscribers is the sublist's, not part of the format).
fn normalise(mut event: Value) -> Value {
    event.as_object_mut().unwrap().remove("server");
    let events = event["events"].as_array_mut().unwrap();
    for e in events.iter_mut() {
        let e = e.as_object_mut().unwrap();
        assert!(e.remove("ts").unwrap().is_string());
        if e["type"] == "in" || e["type"] == "eg" {
            assert!(e.remove("cid").unwrap().is_u64());
        }
    }
    // Stable: ingress and mapping keep their place ahead of the egresses.
    events.sort_by_key(|e| {
        (
            e["type"] == "eg",
            if e["type"] == "eg" {
                e.to_string()
            } else {
                String::new()
            },
        )
    });
    event
}

/// Receives trace events until none comes for [`QUIET`]; sorted by hop.
async fn events(sub: &mut async_nats::Subscriber) -> Vec<Value> {
    let mut got = Vec::new();
    let first = tokio::time::timeout(SETTLE, sub.next())
        .await
        .unwrap()
        .unwrap();
    got.push(serde_json::from_slice::<Value>(&first.payload).unwrap());
    while let Ok(Some(msg)) = tokio::time::timeout(QUIET, sub.next()).await {
        got.push(serde_json::from_slice(&msg.payload).unwrap());
    }
    got.sort_by_key(|e| {
        let hop = &e["request"]["header"]["Nats-Trace-Hop"][0];
        hop.as_str().unwrap_or_default().to_string()
    });
    got
}

/// Publishes a traced message (trace-only with `only`) on `subject`; the one event it made,
/// normalised.
async fn publish_traced(
    tracer: &async_nats::Client,
    trace_sub: &mut async_nats::Subscriber,
    subject: &str,
    only: bool,
) -> Value {
    tracer
        .publish_with_headers(subject.to_string(), trace_headers(only), "hello".into())
        .await
        .unwrap();
    tracer.flush().await.unwrap();
    let mut got = events(trace_sub).await;
    assert_eq!(got.len(), 1, "{got:?}");
    normalise(got.remove(0))
}

/// Nothing arrives on `sub` for [`QUIET`].
async fn silent(sub: &mut async_nats::Subscriber, what: &str) {
    let got = tokio::time::timeout(QUIET, sub.next()).await;
    assert!(
        got.is_err(),
        "{what} got {:?}",
        got.unwrap().map(|m| m.payload)
    );
}

/// On one server with a subject mapping: a plain subscriber, a queue group member, a
/// subscriber on the mapped-from subject (which gets nothing), with and without delivery.
async fn single_server(binary: &Path) -> Vec<Value> {
    let scratch = scratch();
    let server = node_with(
        &scratch,
        binary,
        "A",
        &[],
        "mappings { orders.in: orders.mapped }",
    );
    let plain = named(&server, "plain").await;
    let mut plain_sub = plain.subscribe("orders.*").await.unwrap();
    let member = named(&server, "member").await;
    let mut queue_sub = member
        .queue_subscribe("orders.mapped", "workers".into())
        .await
        .unwrap();
    let tracer = named(&server, "tracer").await;
    let mut trace_sub = tracer.subscribe("trace.out").await.unwrap();
    for c in [&plain, &member, &tracer] {
        c.flush().await.unwrap();
    }
    let mut out = Vec::new();
    for only in [false, true] {
        let event = publish_traced(&tracer, &mut trace_sub, "orders.in", only).await;
        if only {
            silent(&mut plain_sub, "a trace-only plain subscriber").await;
            silent(&mut queue_sub, "a trace-only queue member").await;
        } else {
            let msg = plain_sub.next().await.unwrap();
            assert_eq!(msg.subject.as_str(), "orders.mapped");
            let _ = queue_sub.next().await.unwrap();
        }
        out.push(event);
    }
    // A message without the header is not traced.
    tracer.publish("orders.in", "plain".into()).await.unwrap();
    tracer.flush().await.unwrap();
    silent(&mut trace_sub, "an untraced publish").await;
    out
}

#[tokio::test]
async fn one_server_traces_as_nats_server_does() {
    let tern = single_server(Path::new(TERN)).await;
    // The shape on its own: ingress, mapping, two egresses.
    let types: Vec<&str> = tern[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["in", "sm", "eg", "eg"], "{}", tern[0]);
    assert_eq!(tern[0]["events"][0]["name"], "tracer");
    assert_eq!(tern[0]["request"]["header"]["App-Id"][0], "42");
    let Some(reference) = reference_server() else {
        return;
    };
    let expected = single_server(&reference).await;
    assert_eq!(tern, expected);
}

/// Publishes a traced message on node A of a two-node cluster with a subscriber on each node;
/// returns both servers' events, normalised.
async fn two_nodes(a_binary: &Path, b_binary: &Path, only: bool) -> Vec<Value> {
    let scratch = scratch();
    let a = node(&scratch, a_binary, "A", &[]);
    let b = node(&scratch, b_binary, "B", &[&a]);
    across(&a.client, &b.client, only).await
}

/// With servers `from` and `to` (client `host:port`s) connected: a traced message published
/// on `from`, with a subscriber on each; both servers' events, normalised.
async fn across(from: &str, to: &str, only: bool) -> Vec<Value> {
    let local = client_at(from, "local").await;
    let mut local_sub = local.subscribe("orders.*").await.unwrap();
    let remote = client_at(to, "remote").await;
    let mut remote_sub = remote.subscribe("orders.*").await.unwrap();
    let tracer = client_at(from, "tracer").await;
    let mut trace_sub = tracer.subscribe("trace.out").await.unwrap();
    tracer.flush().await.unwrap();
    // Interest has crossed both ways: the remote subscriber seen on `from`, the trace
    // subscriber on `to`.
    until_routed(&tracer, &mut remote_sub, "orders.probe").await;
    until_routed(&remote, &mut trace_sub, "trace.out").await;
    while tokio::time::timeout(QUIET, local_sub.next()).await.is_ok() {}

    tracer
        .publish_with_headers("orders.new", trace_headers(only), "hello".into())
        .await
        .unwrap();
    tracer.flush().await.unwrap();
    let got = events(&mut trace_sub).await;
    if only {
        silent(&mut local_sub, "a trace-only local subscriber").await;
        silent(&mut remote_sub, "a trace-only remote subscriber").await;
    } else {
        assert_eq!(local_sub.next().await.unwrap().payload, "hello");
        let msg = remote_sub.next().await.unwrap();
        assert_eq!(msg.payload, "hello");
        // The remote subscriber sees the hop header the route or leafnode added.
        let hop = msg.headers.as_ref().and_then(|h| h.get("Nats-Trace-Hop"));
        assert_eq!(hop.map(|v| v.as_str()), Some("1"));
    }
    got.into_iter().map(normalise).collect()
}

#[tokio::test]
async fn a_mixed_cluster_traces_as_one() {
    let tern = PathBuf::from(TERN);
    for only in [false, true] {
        let all_tern = two_nodes(&tern, &tern, only).await;
        assert_eq!(all_tern.len(), 2, "one event per server: {all_tern:?}");
        assert_eq!(all_tern[0]["hops"], 1);
        let route_egress = all_tern[0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == 1)
            .cloned()
            .unwrap();
        assert_eq!(route_egress["hop"], "1");
        assert_eq!(route_egress["name"], "B");
        assert_eq!(all_tern[1]["events"][0]["kind"], 1);
        assert_eq!(all_tern[1]["events"][0]["name"], "A");
        assert_eq!(all_tern[1]["request"]["header"]["Nats-Trace-Hop"][0], "1");
        let Some(reference) = reference_server() else {
            continue;
        };
        let expected = two_nodes(&reference, &reference, only).await;
        assert_eq!(all_tern, expected, "tern cluster vs nats-server cluster");
        assert_eq!(
            two_nodes(&tern, &reference, only).await,
            expected,
            "tern -> nats-server"
        );
        // tern's route INFO says protocol 3 (`MsgTraceProto`): nats-server sends it
        // trace-only messages too, and its events are nats-server's.
        assert_eq!(
            two_nodes(&reference, &tern, only).await,
            expected,
            "nats-server -> tern"
        );
    }
}

/// A route peer older than message tracing (its INFO says `proto` 2) with interest in
/// `orders.*`, on a server of `binary`: a traced message published there, delivered then
/// trace-only. Returns, for each, the frames the peer got and the server's event.
async fn to_an_older_peer(binary: &Path) -> Vec<(Vec<String>, Value)> {
    let scratch = scratch();
    let server = node(&scratch, binary, "A", &[]);
    let mut peer = common::Raw::connect(server.route.parse().unwrap()).await;
    peer.send(
        "CONNECT {\"echo\":true,\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\
         \"headers\":true,\"name\":\"NOLD\",\"cluster\":\"C1\",\"lnoc\":true,\"lnocu\":true}\r\n\
         INFO {\"server_id\":\"NOLD\",\"server_name\":\"OLD\",\"version\":\"2.10.0\",\"proto\":2,\
         \"go\":\"fake\",\"host\":\"127.0.0.1\",\"port\":1,\"headers\":true,\
         \"max_payload\":1048576,\"cluster\":\"C1\",\"compression\":\"off\",\"lnoc\":true,\
         \"lnocu\":true}\r\nRS+ $G orders.*\r\n",
    )
    .await;
    let tracer = named(&server, "tracer").await;
    let mut trace_sub = tracer.subscribe("trace.out").await.unwrap();
    tracer.flush().await.unwrap();
    // The server has the peer's interest once it answers a PING sent after it.
    route_frames(&mut peer).await;
    let mut out = Vec::new();
    for only in [false, true] {
        let event = publish_traced(&tracer, &mut trace_sub, "orders.new", only).await;
        out.push((route_frames(&mut peer).await, event));
    }
    out
}

/// The messages a raw route connection got until the PONG to a PING it sends now (interest
/// and PINGs passed over), each frame as its lines.
async fn route_frames(peer: &mut common::Raw) -> Vec<String> {
    peer.send("PING\r\n").await;
    let mut frames = Vec::new();
    loop {
        let line = peer.read_line().await;
        let op = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        match op.as_str() {
            "PONG" => return frames,
            "RMSG" | "HMSG" => {
                let size: usize = line.split_whitespace().last().unwrap().parse().unwrap();
                let mut frame = line.clone();
                while frame.len() < line.len() + size + 2 {
                    frame.push_str(&peer.read_line().await);
                }
                frames.push(headers_sorted(&frame));
            }
            _ => {}
        }
    }
}

/// `frame` with its header lines in sorted order: nats-server re-encodes the headers from a
/// Go map when it adds `Nats-Trace-Hop`, so their order changes from run to run.
fn headers_sorted(frame: &str) -> String {
    let mut lines: Vec<&str> = frame.split("\r\n").collect();
    if lines.get(1) == Some(&"NATS/1.0") {
        let end = lines[2..]
            .iter()
            .position(|l| l.is_empty())
            .map_or(2, |i| i + 2);
        lines[2..end].sort_unstable();
    }
    lines.join("\r\n")
}

#[tokio::test]
async fn a_route_peer_older_than_tracing_is_traced_as_by_nats_server() {
    let tern = to_an_older_peer(Path::new(TERN)).await;
    // Delivered, with its hop, the event saying no event comes from there; trace-only: not
    // sent, the hop counted all the same.
    assert_eq!(tern[0].0.len(), 1, "{tern:?}");
    assert!(tern[0].0[0].contains("Nats-Trace-Hop: 1\r\n"), "{tern:?}");
    assert!(tern[1].0.is_empty(), "{tern:?}");
    for (i, error) in [
        "Message delivered but remote does not support message tracing so no trace event \
         generated from there",
        "Not delivered because remote does not support message tracing",
    ]
    .iter()
    .enumerate()
    {
        let event = &tern[i].1;
        let egress = event["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == 1);
        assert_eq!(egress.unwrap()["error"], *error, "{event}");
        assert_eq!(egress.unwrap()["hop"], "1", "{event}");
    }
    if let Some(reference) = reference_server() {
        assert_eq!(tern, to_an_older_peer(&reference).await);
    }
}

/// A traced publish the publisher may not make: the event's ingress carries the error.
async fn refused(binary: &Path) -> Value {
    let scratch = scratch();
    let server = node_with(
        &scratch,
        binary,
        "A",
        &[],
        "authorization { users [{user: u, password: u, \
         permissions: {publish: {deny: [\"secret.>\"]}}}] }",
    );
    let client = async_nats::ConnectOptions::with_user_and_password("u".into(), "u".into())
        .name("tracer")
        .connect(format!("nats://{}", server.client))
        .await
        .unwrap();
    let mut trace_sub = client.subscribe("trace.out").await.unwrap();
    client
        .publish_with_headers("secret.x", trace_headers(false), "hi".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut got = events(&mut trace_sub).await;
    assert_eq!(got.len(), 1);
    normalise(got.remove(0))
}

#[tokio::test]
async fn a_refused_publish_is_traced_with_its_error() {
    let tern = refused(Path::new(TERN)).await;
    assert_eq!(
        tern["events"][0]["error"],
        "Permissions Violation for Publish to \"secret.x\""
    );
    assert_eq!(tern["events"].as_array().unwrap().len(), 1);
    if let Some(reference) = reference_server() {
        assert_eq!(tern, refused(&reference).await);
    }
}

/// Accounts A (exporting a stream and a service) and B (importing both).
const ACCOUNTS: &str = "accounts {
  A: { users: [{user: a, password: a}], exports: [{stream: \"s.>\"}, {service: \"svc.>\"}] }
  B: { users: [{user: b, password: b}], imports: [
    {stream: {account: A, subject: \"s.>\"}, prefix: imp},
    {service: {account: A, subject: \"svc.>\"}, to: \"q.>\"}] }
}";

async fn user(node: &Node, user: &str, name: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
        .name(name)
        .connect(format!("nats://{}", node.client))
        .await
        .unwrap()
}

/// A traced message through a stream import (published in A, received in B) and a request
/// through a service import (published in B, answered in A), delivered and trace-only.
async fn imports(binary: &Path) -> Vec<Value> {
    let scratch = scratch();
    let server = node_with(&scratch, binary, "A", &[], ACCOUNTS);
    let a = user(&server, "a", "in-a").await;
    let b = user(&server, "b", "in-b").await;
    let mut imported = b.subscribe("imp.s.>").await.unwrap();
    let mut service = a.subscribe("svc.>").await.unwrap();
    let mut trace_a = a.subscribe("trace.a").await.unwrap();
    let mut trace_b = b.subscribe("trace.b").await.unwrap();
    // async-nats' flush only writes: a message each sends itself proves the server has
    // taken every subscription before it.
    for (client, subject) in [(&a, "synced.a"), (&b, "synced.b")] {
        let mut echo = client.subscribe(subject).await.unwrap();
        client.publish(subject, "".into()).await.unwrap();
        tokio::time::timeout(SETTLE, echo.next())
            .await
            .expect("subscriptions taken")
            .unwrap();
    }
    let mut out = Vec::new();
    for only in [false, true] {
        let mut headers = trace_headers(only);
        headers.insert("Nats-Trace-Dest", "trace.a");
        a.publish_with_headers("s.x", headers.clone(), "hi".into())
            .await
            .unwrap();
        a.flush().await.unwrap();
        let got = events(&mut trace_a).await;
        assert_eq!(got.len(), 1, "{got:?}");
        out.extend(got.into_iter().map(normalise));
        headers.insert("Nats-Trace-Dest", "trace.b");
        b.publish_with_reply_and_headers("q.y", "answer.here", headers, "req".into())
            .await
            .unwrap();
        b.flush().await.unwrap();
        let got = events(&mut trace_b).await;
        assert_eq!(got.len(), 1, "{got:?}");
        out.extend(got.into_iter().map(normalise));
        if only {
            silent(&mut imported, "a trace-only stream import").await;
            silent(&mut service, "a trace-only service import").await;
        } else {
            let msg = tokio::time::timeout(SETTLE, imported.next())
                .await
                .expect("the stream import delivered")
                .unwrap();
            assert_eq!(msg.subject.as_str(), "imp.s.x");
            let dest = msg.headers.as_ref().and_then(|h| h.get("Nats-Trace-Dest"));
            assert_eq!(dest.map(|v| v.as_str()), Some("trace.a"));
            // The responder gets the request with its trace turned off.
            let request = tokio::time::timeout(SETTLE, service.next())
                .await
                .expect("the service import delivered")
                .unwrap();
            assert_eq!(request.subject.as_str(), "svc.y");
            let dest = request
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Trace-Dest"));
            assert_eq!(dest.map(|v| v.as_str()), Some("trace disabled"));
        }
    }
    out
}

#[tokio::test]
async fn imports_trace_as_nats_server_does() {
    let tern = imports(Path::new(TERN)).await;
    let types = |e: &Value| -> Vec<String> {
        e["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(types(&tern[0]), ["in", "se"], "{}", tern[0]);
    assert_eq!(tern[0]["events"][1]["to"], "imp.s.x");
    assert_eq!(types(&tern[1]), ["in", "si"], "{}", tern[1]);
    assert_eq!(tern[1]["events"][1]["from"], "q.y");
    assert_eq!(tern[1]["events"][1]["to"], "svc.y");
    if let Some(reference) = reference_server() {
        assert_eq!(tern, imports(&reference).await);
    }
}

/// A traced message stored by a stream, then a trace-only one (not stored): the `js` event.
async fn stored(binary: &Path) -> Vec<Value> {
    let scratch = scratch();
    let store = scratch.0.join("js");
    let (_server, text) = standalone(
        &scratch,
        binary,
        "A",
        &format!("jetstream {{ store_dir: '{}' }}", store.display()),
    );
    let addr = logged_addr(&text, "Listening for client connections on ").unwrap();
    let client = client_at(&addr, "tracer").await;
    let config = r#"{"name":"ORD","subjects":["orders.>"],"storage":"memory"}"#;
    let created = client
        .request("$JS.API.STREAM.CREATE.ORD", config.into())
        .await
        .unwrap();
    assert!(!created.payload.is_empty());
    let mut trace_sub = client.subscribe("trace.out").await.unwrap();
    let mut acks = client.subscribe("acks").await.unwrap();
    client.flush().await.unwrap();
    let mut out = Vec::new();
    for only in [false, true] {
        client
            .publish_with_reply_and_headers("orders.new", "acks", trace_headers(only), "o".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        let got = events(&mut trace_sub).await;
        assert_eq!(got.len(), 1, "{got:?}");
        out.extend(got.into_iter().map(normalise));
        match only {
            true => silent(&mut acks, "a trace-only publish to a stream").await,
            false => {
                let ack: Value =
                    serde_json::from_slice(&acks.next().await.unwrap().payload).unwrap();
                assert_eq!(ack["seq"], 1, "{ack}");
            }
        }
    }
    let info = client
        .request("$JS.API.STREAM.INFO.ORD", "".into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(
        info["state"]["messages"], 1,
        "the trace-only message was not stored"
    );
    out
}

#[tokio::test]
async fn a_stream_traces_as_nats_server_does() {
    let tern = stored(Path::new(TERN)).await;
    let js = &tern[0]["events"][1];
    assert_eq!(js["type"], "js", "{}", tern[0]);
    assert_eq!(js["stream"], "ORD");
    assert_eq!(js["subject"], "orders.new");
    if let Some(reference) = reference_server() {
        assert_eq!(tern, stored(&reference).await);
    }
}

/// A hub H and its leafnode L; a traced message published on one (`up`: on L) with a
/// subscriber on each: both servers' events, normalised.
async fn over_leaf(hub_binary: &Path, leaf_binary: &Path, up: bool, only: bool) -> Vec<Value> {
    let scratch = scratch();
    let (_hub, text) = standalone(
        &scratch,
        hub_binary,
        "H",
        "leafnodes { listen: \"127.0.0.1:-1\" }",
    );
    let hub = logged_addr(&text, "Listening for client connections on ").unwrap();
    let hub_leaf = logged_addr(&text, "Listening for leafnode connections on ").unwrap();
    let (_leaf, text): (Process, String) = standalone(
        &scratch,
        leaf_binary,
        "L",
        &format!(
            "leafnodes {{ reconnect_interval: \"250ms\", remotes: [ {{ urls: [\"nats://{hub_leaf}\"] }} ] }}"
        ),
    );
    let leaf = logged_addr(&text, "Listening for client connections on ").unwrap();
    match up {
        true => across(&leaf, &hub, only).await,
        false => across(&hub, &leaf, only).await,
    }
}

#[tokio::test]
async fn leafnodes_trace_as_nats_server_does() {
    let tern = PathBuf::from(TERN);
    let reference = reference_server();
    for up in [false, true] {
        for only in [false, true] {
            let all_tern = over_leaf(&tern, &tern, up, only).await;
            assert_eq!(all_tern.len(), 2, "one event per server: {all_tern:?}");
            let egress = all_tern[0]["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["kind"] == 4)
                .cloned()
                .unwrap();
            assert_eq!(egress["hop"], "1", "{egress}");
            assert_eq!(all_tern[1]["events"][0]["kind"], 4);
            let Some(reference) = &reference else {
                continue;
            };
            let tag = format!("up {up}, trace-only {only}");
            let expected = over_leaf(reference, reference, up, only).await;
            assert_eq!(all_tern, expected, "tern pair vs nats-server pair, {tag}");
            assert_eq!(
                over_leaf(&tern, reference, up, only).await,
                expected,
                "tern hub, nats-server leaf, {tag}"
            );
            assert_eq!(
                over_leaf(reference, &tern, up, only).await,
                expected,
                "nats-server hub, tern leaf, {tag}"
            );
        }
    }
}

/// A sampled W3C trace context (flags `01`).
const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Account A traces `traceparent` messages to `acc.trace` (sampling 100%), C to the same
/// subject with the string form (sampling not set), N not at all; user `p` of A may publish
/// only to `o.>`.
const W3C_ACCOUNTS: &str = "accounts {
  A: { users: [{user: a, password: a},
               {user: p, password: p, permissions: {publish: {allow: [\"o.>\"]}}}],
       msg_trace: { dest: acc.trace, sampling: 100 } }
  C: { users: [{user: c, password: c}], msg_trace: acc.trace }
  N: { users: [{user: n, password: n}] }
}";

/// A raw connection as `user` (whose password is its name), called `name`, subscribed to
/// `subjects` (sids 1, 2, ...) once the server has answered.
async fn raw_user(addr: &str, user: &str, name: &str, subjects: &[&str]) -> Raw {
    let mut raw = Raw::connect(addr.parse().unwrap()).await;
    let connect = json!({"verbose": false, "pedantic": false, "headers": true,
                         "no_responders": true, "name": name, "user": user, "pass": user,
                         "protocol": 1});
    let mut script = format!("CONNECT {connect}\r\n");
    for (sid, subject) in subjects.iter().enumerate() {
        script += &format!("SUB {subject} {}\r\n", sid + 1);
    }
    raw.send(script + "PING\r\n").await;
    until_pong(&mut raw).await;
    raw
}

/// The lines before the next PONG, INFO and PING left out.
async fn until_pong(raw: &mut Raw) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = raw.read_line().await;
        match line.as_str() {
            "PONG\r\n" => return lines,
            "PING\r\n" => {}
            l if l.starts_with("INFO ") => {}
            _ => lines.push(line),
        }
    }
}

/// An HPUB of `hi` to `subject` with `headers`, and a PING.
fn hpub(subject: &str, headers: &[(&str, &str)]) -> String {
    let mut block = "NATS/1.0\r\n".to_string();
    for (name, value) in headers {
        block += &format!("{name}: {value}\r\n");
    }
    block += "\r\n";
    let size = block.len() + 2;
    format!(
        "HPUB {subject} {} {size}\r\n{block}hi\r\nPING\r\n",
        block.len()
    )
}

/// What arrives on `raw` until it is quiet: deliveries as they are, trace events normalised;
/// sorted (the order of a delivery and an event is not part of the format).
async fn arrivals(raw: &mut Raw) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(frame) = tokio::time::timeout(QUIET, raw.read_frame()).await {
        let (line, body) = frame.split_once("\r\n").unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "HMSG" | "MSG" if words[1].contains("trace") => {
                let event: Value = serde_json::from_str(body.trim_end()).unwrap();
                out.push(json!({"event on": words[1], "event": normalise(event)}));
            }
            "HMSG" | "MSG" => out.push(json!({"delivered": frame})),
            _ => {}
        }
    }
    out.sort_by_key(|v| v.to_string());
    out
}

/// Publishes with each kind of `traceparent` as users of A, C and N, and with a destination
/// user `p` may not publish to: per publish, the publisher's errors and what a subscriber to
/// the subject and to both trace destinations got.
async fn w3c(binary: &Path) -> Vec<Value> {
    let scratch = scratch();
    let (_server, text) = standalone(&scratch, binary, "A", W3C_ACCOUNTS);
    let addr = logged_addr(&text, "Listening for client connections on ").unwrap();
    let unsampled = SAMPLED.replace("-01", "-00");
    let high_flags = SAMPLED.replace("-01", "-ff");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("sampled", vec![("traceparent", SAMPLED), ("App-Id", "7")]),
        ("any case", vec![("TraceParent", SAMPLED)]),
        ("unsampled", vec![("traceparent", unsampled.as_str())]),
        (
            "flags not an int8",
            vec![("traceparent", high_flags.as_str())],
        ),
        (
            "three fields",
            vec![("traceparent", "00-0af7651916cd43dd-01")],
        ),
        (
            "Nats-Trace-Dest wins",
            vec![("traceparent", SAMPLED), ("Nats-Trace-Dest", "trace.out")],
        ),
        (
            "trace-only not read",
            vec![("traceparent", SAMPLED), ("Nats-Trace-Only", "true")],
        ),
        (
            "disabled",
            vec![
                ("traceparent", SAMPLED),
                ("Nats-Trace-Dest", "trace disabled"),
            ],
        ),
        ("empty value", vec![("Empty", ""), ("traceparent", SAMPLED)]),
    ];
    let mut out = Vec::new();
    for user in ["a", "c", "n"] {
        let mut sub = raw_user(&addr, user, "sub", &["o.>", "acc.trace", "trace.out"]).await;
        let mut publisher = raw_user(&addr, user, "pub", &[]).await;
        for (case, headers) in &cases {
            publisher.send(hpub("o.x", headers)).await;
            let errors = until_pong(&mut publisher).await;
            let got = arrivals(&mut sub).await;
            out.push(json!({"user": user, "case": case, "errors": errors, "got": got}));
        }
    }
    let mut sub = raw_user(&addr, "a", "sub", &["o.>", "acc.trace", "trace.out"]).await;
    let mut limited = raw_user(&addr, "p", "limited", &[]).await;
    for headers in [
        vec![("traceparent", SAMPLED)],
        vec![("Nats-Trace-Dest", "trace.out")],
    ] {
        limited.send(hpub("o.x", &headers)).await;
        let errors = until_pong(&mut limited).await;
        let got = arrivals(&mut sub).await;
        out.push(
            json!({"user": "p", "headers": format!("{headers:?}"), "errors": errors,
                        "got": got}),
        );
    }
    out
}

#[tokio::test]
async fn traceparent_traces_as_nats_server_does() {
    let tern = w3c(Path::new(TERN)).await;
    let find = |user: &str, case: &str| {
        tern.iter()
            .find(|o| o["user"] == user && o["case"] == case)
            .unwrap()
            .clone()
    };
    let events = |o: &Value| -> Vec<Value> {
        o["got"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g.get("event").is_some())
            .cloned()
            .collect()
    };
    // The shape on its own: a sampled message is traced to the account's destination.
    let sampled = events(&find("a", "sampled"));
    assert_eq!(sampled.len(), 1, "{sampled:?}");
    assert_eq!(sampled[0]["event on"], "acc.trace");
    let event = &sampled[0]["event"];
    assert_eq!(event["request"]["header"]["traceparent"][0], SAMPLED);
    assert_eq!(event["events"][0]["name"], "pub");
    assert_eq!(events(&find("c", "sampled")).len(), 1);
    assert!(events(&find("n", "sampled")).is_empty());
    assert!(events(&find("a", "unsampled")).is_empty());
    assert_eq!(
        events(&find("a", "Nats-Trace-Dest wins"))[0]["event on"],
        "trace.out"
    );
    // A destination the publisher may not publish to refuses the message.
    let limited = tern.iter().find(|o| o["user"] == "p").unwrap();
    assert_eq!(
        limited["errors"],
        json!(["-ERR 'Permissions Violation for Publish to \"acc.trace\"'\r\n"])
    );
    assert_eq!(limited["got"], json!([]));
    let Some(reference) = reference_server() else {
        return;
    };
    let expected = w3c(&reference).await;
    for (got, want) in tern.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    assert_eq!(tern.len(), expected.len());
}

/// 60 sampled messages in an account that traces 1% of them: how many were traced, and the
/// distinct deliveries of the others (marked not to be traced further on).
async fn sampling_one_percent(binary: &Path) -> (usize, Vec<String>) {
    let scratch = scratch();
    let config = "accounts { S: { users: [{user: s, password: s}], \
                  msg_trace: { dest: acc.trace, sampling: \"1%\" } } }";
    let (_server, text) = standalone(&scratch, binary, "A", config);
    let addr = logged_addr(&text, "Listening for client connections on ").unwrap();
    let mut sub = raw_user(&addr, "s", "sub", &["o.>", "acc.trace"]).await;
    let mut publisher = raw_user(&addr, "s", "pub", &[]).await;
    let mut script = String::new();
    for _ in 0..60 {
        script += &hpub("o.x", &[("traceparent", SAMPLED)]);
    }
    publisher.send(script).await;
    for _ in 0..60 {
        assert!(until_pong(&mut publisher).await.is_empty());
    }
    let got = arrivals(&mut sub).await;
    let traced = got.iter().filter(|g| g.get("event").is_some()).count();
    let delivered: Vec<&str> = got.iter().filter_map(|g| g["delivered"].as_str()).collect();
    assert_eq!(delivered.len(), 60, "every message is delivered");
    let mut untraced: Vec<String> = delivered
        .iter()
        .filter(|d| d.contains("trace disabled"))
        .map(|d| d.to_string())
        .collect();
    assert_eq!(untraced.len(), 60 - traced);
    untraced.dedup();
    (traced, untraced)
}

#[tokio::test]
async fn sampling_traces_a_share_and_marks_the_rest() {
    let block =
        format!("NATS/1.0\r\ntraceparent: {SAMPLED}\r\nNats-Trace-Dest: trace disabled\r\n\r\n");
    let want = format!(
        "HMSG o.x 1 {} {}\r\n{block}hi\r\n",
        block.len(),
        block.len() + 2
    );
    let mut binaries = vec![PathBuf::from(TERN)];
    binaries.extend(reference_server());
    for binary in binaries {
        let (traced, untraced) = sampling_one_percent(&binary).await;
        // 2% expected (a draw in 0..100 at most 1): more than 20 of 60 does not happen.
        assert!(traced < 20, "{}: {traced} traced", binary.display());
        assert_eq!(untraced, vec![want.clone()], "{}", binary.display());
    }
}

/// Account A (on every server) traces `traceparent` messages to `acc.trace`.
const A_TRACED: &str = "accounts { A: { users: [{user: a, password: a}], \
                        msg_trace: { dest: acc.trace } } }";

async fn user_at(addr: &str, name: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
        .name(name)
        .connect(format!("nats://{addr}"))
        .await
        .unwrap()
}

/// A sampled `traceparent` message published on node A of a two-node cluster, a subscriber on
/// each node: both servers' events, normalised.
async fn traceparent_two_nodes(a_binary: &Path, b_binary: &Path) -> Vec<Value> {
    let scratch = scratch();
    let a = node_with(&scratch, a_binary, "A", &[], A_TRACED);
    let b = node_with(&scratch, b_binary, "B", &[&a], A_TRACED);
    let local = user_at(&a.client, "local").await;
    let mut local_sub = local.subscribe("orders.*").await.unwrap();
    let remote = user_at(&b.client, "remote").await;
    let mut remote_sub = remote.subscribe("orders.*").await.unwrap();
    let tracer = user_at(&a.client, "tracer").await;
    let mut trace_sub = tracer.subscribe("acc.trace").await.unwrap();
    tracer.flush().await.unwrap();
    until_routed(&tracer, &mut remote_sub, "orders.probe").await;
    until_routed(&remote, &mut trace_sub, "acc.trace").await;
    while tokio::time::timeout(QUIET, local_sub.next()).await.is_ok() {}
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", SAMPLED);
    tracer
        .publish_with_headers("orders.new", headers, "hello".into())
        .await
        .unwrap();
    tracer.flush().await.unwrap();
    let got = events(&mut trace_sub).await;
    assert_eq!(local_sub.next().await.unwrap().payload, "hello");
    let msg = remote_sub.next().await.unwrap();
    let hop = msg.headers.as_ref().and_then(|h| h.get("Nats-Trace-Hop"));
    assert_eq!(hop.map(|v| v.as_str()), Some("1"));
    got.into_iter().map(normalise).collect()
}

#[tokio::test]
async fn traceparent_crosses_a_cluster_as_with_nats_server() {
    let tern = PathBuf::from(TERN);
    let all_tern = traceparent_two_nodes(&tern, &tern).await;
    assert_eq!(all_tern.len(), 2, "one event per server: {all_tern:?}");
    assert_eq!(all_tern[1]["events"][0]["kind"], 1);
    assert_eq!(all_tern[1]["request"]["header"]["traceparent"][0], SAMPLED);
    let Some(reference) = reference_server() else {
        return;
    };
    let expected = traceparent_two_nodes(&reference, &reference).await;
    assert_eq!(all_tern, expected, "tern cluster vs nats-server cluster");
    assert_eq!(
        traceparent_two_nodes(&tern, &reference).await,
        expected,
        "tern -> nats-server"
    );
    // nats-server sees tern's route as not understanding tracing (protocol 2, see above): its
    // egress says so, and tern still reports its hop.
    let from_nats = traceparent_two_nodes(&reference, &tern).await;
    assert_eq!(from_nats[1..], expected[1..], "nats-server -> tern");
}

/// Operator mode: account A's JWT traces to `acc.trace`; account B's JWT has a trace
/// destination with a wildcard (nats-jwt refuses it). Per server: A's event for a sampled
/// message, and whether a user of B could connect.
async fn jwt_traced(binary: &Path, dir: &Path, config: &str) -> (Vec<Value>, bool) {
    let scratch = scratch();
    let (_server, text) = standalone(&scratch, binary, "J", config);
    let addr = logged_addr(&text, "Listening for client connections on ").unwrap();
    let connect = |name: &str| {
        let path = dir.join(format!("{name}.creds"));
        let url = format!("nats://{addr}");
        async move {
            async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .unwrap()
                .name("pub")
                .connect(url)
                .await
        }
    };
    let a = connect("a").await.unwrap();
    let mut trace_sub = a.subscribe("acc.trace").await.unwrap();
    let mut sub = a.subscribe("o.>").await.unwrap();
    a.flush().await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", SAMPLED);
    a.publish_with_headers("o.x", headers, "hi".into())
        .await
        .unwrap();
    a.flush().await.unwrap();
    let got = events(&mut trace_sub).await;
    assert_eq!(sub.next().await.unwrap().payload, "hi");
    let b = tokio::time::timeout(Duration::from_secs(3), async {
        let b = connect("b").await.ok()?;
        b.flush().await.ok()
    })
    .await
    .ok()
    .flatten()
    .is_some();
    (got.into_iter().map(normalise).collect(), b)
}

#[tokio::test]
async fn jwt_accounts_trace_as_nats_server_does() {
    let operator = KeyPair::new_operator();
    let system = KeyPair::new_account();
    let (a, b) = (KeyPair::new_account(), KeyPair::new_account());
    let a_jwt = account_jwt(
        &operator,
        &a,
        "A",
        json!({"trace": {"dest": "acc.trace", "sampling": 100}}),
    );
    let b_jwt = account_jwt(&operator, &b, "B", json!({"trace": {"dest": "acc.*"}}));
    let config = memory_resolver_config(&operator, &system, &[(&a, &a_jwt), (&b, &b_jwt)]);
    let dir = scratch();
    for (name, account) in [("a", &a), ("b", &b)] {
        let user = KeyPair::new_user();
        let text = creds(&user_jwt(account, &user, json!({}), json!({})), &user);
        std::fs::write(dir.0.join(format!("{name}.creds")), text).unwrap();
    }
    let tern = jwt_traced(Path::new(TERN), &dir.0, &config).await;
    assert_eq!(tern.0.len(), 1, "{:?}", tern.0);
    assert_eq!(tern.0[0]["events"][0]["acc"], a.public_key());
    assert!(
        !tern.1,
        "an account JWT with a wildcard trace destination is refused"
    );
    if let Some(reference) = reference_server() {
        assert_eq!(tern, jwt_traced(&reference, &dir.0, &config).await);
    }
}

/// `msg_trace` errors: tern refuses what nats-server refuses, with the same words.
#[test]
fn msg_trace_configuration_errors_as_nats_server() {
    let scratch = scratch();
    for (i, trace) in [
        "\"t.*\"",
        "{dest: t.x, sampling: 0}",
        "{dest: t.x, sampling: \"150%\"}",
        "{dest: t.x, sampling: \"abc\"}",
        "{dest: t.x, sampling: 1.5}",
        "{dest: 5}",
        "{dest: t.x, foo: 1}",
        "true",
    ]
    .iter()
    .enumerate()
    {
        let file = scratch.0.join(format!("bad{i}.conf"));
        std::fs::write(
            &file,
            format!("accounts {{\n  A: {{\n    msg_trace: {trace}\n  }}\n}}\n"),
        )
        .unwrap();
        let run = |binary: &Path| {
            let out = std::process::Command::new(binary)
                .arg("-c")
                .arg(&file)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            (
                out.status.success(),
                text.replace(&*binary.to_string_lossy(), ""),
            )
        };
        let (ok, text) = run(Path::new(TERN));
        assert!(!ok && text.contains("bad"), "{trace}: {text}");
        if let Some(reference) = reference_server() {
            let (_, want) = run(&reference);
            let strip = |t: &str| t.split_once(": ").map(|(_, r)| r.trim().to_string());
            assert_eq!(strip(&text), strip(&want), "{trace}");
        }
    }
}

/// Traced publishes refused before delivery: to subjects the server keeps (`$NRG.` outside the
/// system account, `_GR_.`) and with a reserved reply; and the same publishes untraced.
async fn refused_publishes(binary: &Path) -> Vec<Value> {
    let scratch = scratch();
    let (_server, text) = standalone(&scratch, binary, "A", W3C_ACCOUNTS);
    let addr = logged_addr(&text, "Listening for client connections on ").unwrap();
    let mut sub = raw_user(&addr, "a", "sub", &[">"]).await;
    let mut publisher = raw_user(&addr, "a", "pub", &[]).await;
    let mut out = Vec::new();
    for script in [
        hpub("$NRG.x", &[("Nats-Trace-Dest", "trace.out")]),
        hpub("_GR_.x", &[("Nats-Trace-Dest", "trace.out")]),
        hpub("o.x", &[("Nats-Trace-Dest", "$NRG.t")]),
        hpub("o.x", &[("Nats-Trace-Dest", "trace.out")]).replace("HPUB o.x", "HPUB o.x _R_.x"),
        "PUB $NRG.x 2\r\nhi\r\nPING\r\n".to_string(),
        "PUB _GR_.x 2\r\nhi\r\nPING\r\n".to_string(),
    ] {
        publisher.send(&script).await;
        let errors = until_pong(&mut publisher).await;
        let got = arrivals(&mut sub).await;
        out.push(json!({"script": script, "errors": errors, "got": got}));
    }
    out
}

#[tokio::test]
async fn refused_publishes_as_nats_server() {
    let tern = refused_publishes(Path::new(TERN)).await;
    assert_eq!(
        tern[0]["errors"],
        json!(["-ERR 'Permissions Violation for Publish to \"$NRG.x\"'\r\n"])
    );
    assert_eq!(
        tern[0]["got"][0]["event"]["events"][0]["error"],
        "Permissions Violation for Publish to \"$NRG.x\""
    );
    if let Some(reference) = reference_server() {
        assert_eq!(tern, refused_publishes(&reference).await);
    }
}
