//! Message tracing (`Nats-Trace-Dest`): the trace events tern publishes, compared with those
//! of nats-server 2.15.1 for the same publish (ids and times normalised away), on one server
//! and across a two-node cluster of every mix of tern and nats-server.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use serde_json::Value;

use common::cluster::{logged_addr, node, node_with, standalone, until_routed, Node, SETTLE, TERN};
use common::process::{reference_server, Process, Scratch};

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
                frames.push(frame);
            }
            _ => {}
        }
    }
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
