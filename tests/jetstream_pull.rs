//! Pull batches and direct gets on file streams across a restart, on the raw protocol, side by
//! side with nats-server 2.15.1: each batch arrives complete and in order, every message with
//! its subject, headers, payload and ack subject; every key answers a direct get after the
//! store is reopened, one by one and in one `multi_last` batch.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::jetstream::start_js_server;
use common::process::{reference_server, Process, Scratch};
use common::Raw;

/// A connection that has said CONNECT (headers on) and seen its PONG.
async fn connect(addr: &str) -> Raw {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut raw = Raw::connect(addr).await;
    raw.send("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nPING\r\n")
        .await;
    raw.expect("PONG\r\n").await;
    raw
}

/// One frame split into its line's tokens, its header and its payload.
struct Frame {
    tokens: Vec<String>,
    header: String,
    payload: String,
}

fn split(frame: &str) -> Frame {
    let (line, body) = frame.split_once("\r\n").unwrap();
    let tokens: Vec<String> = line.split(' ').map(String::from).collect();
    let body = body.strip_suffix("\r\n").unwrap();
    let header_len = match tokens[0].as_str() {
        "HMSG" => tokens[tokens.len() - 2].parse().unwrap(),
        _ => 0,
    };
    Frame {
        header: body[..header_len].to_string(),
        payload: body[header_len..].to_string(),
        tokens,
    }
}

/// A request on `raw` (subscribed to `_INBOX.r` as sid 1); the answer's payload.
async fn request(raw: &mut Raw, subject: &str, body: &str) -> String {
    raw.send(format!(
        "PUB {subject} _INBOX.r {}\r\n{body}\r\n",
        body.len()
    ))
    .await;
    split(&raw.read_msgs(1).await[0]).payload
}

/// The payload of message `n`: some long enough that a batch of 100 passes 256 KiB.
fn payload(n: usize) -> String {
    let fill = if n % 7 == 0 { 20_000 } else { n % 50 };
    format!("m{n}-{}", "x".repeat(fill))
}

/// Publishes message `n` (every fifth with a header) and waits for nothing: the acks are read
/// by the caller.
fn publication(subject: &str, n: usize, data: &str) -> String {
    if n % 5 == 0 {
        let header = format!("NATS/1.0\r\nK: v{n}\r\n\r\n");
        format!(
            "HPUB {subject} ack {} {}\r\n{header}{data}\r\n",
            header.len(),
            header.len() + data.len()
        )
    } else {
        format!("PUB {subject} ack {}\r\n{data}\r\n", data.len())
    }
}

/// Stops the server with SIGTERM (it writes what it holds) and waits for it.
fn stop(mut server: Process) {
    server.signal("TERM");
    server.wait_exit();
}

/// A pull batch's messages as (subject, header, payload, ack subject with its timestamp
/// token left out), after the 100 of one `{"batch":100}` request (and its ending status when
/// there is one) arrived on sid 2.
async fn pull(raw: &mut Raw, body: &str, n: usize) -> Vec<(String, String, String, String)> {
    raw.send(format!(
        "PUB $JS.API.CONSUMER.MSG.NEXT.P.C _INBOX.p {}\r\n{body}\r\n",
        body.len()
    ))
    .await;
    let mut got = Vec::new();
    let mut acks = String::new();
    for frame in raw.read_msgs(n).await {
        let frame = split(&frame);
        let reply = match frame.tokens.len() {
            5 if frame.tokens[0] == "MSG" => frame.tokens[3].clone(),
            6 => frame.tokens[3].clone(),
            _ => String::new(),
        };
        if !reply.is_empty() {
            acks.push_str(&format!("PUB {reply} 4\r\n+ACK\r\n"));
        }
        let mut parts: Vec<&str> = reply.split('.').collect();
        if parts.len() == 9 {
            parts[7] = "<ts>";
        }
        got.push((
            frame.tokens[1].clone(),
            frame.header,
            frame.payload,
            parts.join("."),
        ));
    }
    raw.send(acks).await;
    got
}

/// Fills a file stream and a KV bucket, pulls a first batch, restarts the server on the same
/// store, pulls the rest and gets every key; returns the transcript.
async fn scenario(binary: &Path, dir: &Path) -> Vec<String> {
    let mut transcript = Vec::new();
    let (server, addr) = start_js_server(binary, dir);
    let mut api = connect(&addr).await;
    api.send("SUB _INBOX.r 1\r\n").await;
    let create = r#"{"name":"P","subjects":["p.*"],"storage":"file"}"#;
    assert!(!request(&mut api, "$JS.API.STREAM.CREATE.P", create)
        .await
        .contains("error"));
    let kv = r#"{"name":"KV_t","subjects":["$KV.t.>"],"max_msgs_per_subject":1,"discard":"new","allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true,"storage":"file"}"#;
    assert!(!request(&mut api, "$JS.API.STREAM.CREATE.KV_t", kv)
        .await
        .contains("error"));
    let consumer = r#"{"stream_name":"P","config":{"durable_name":"C","ack_policy":"explicit"}}"#;
    assert!(!request(&mut api, "$JS.API.CONSUMER.CREATE.P.C", consumer)
        .await
        .contains("error"));

    let mut publisher = connect(&addr).await;
    publisher.send("SUB ack 2\r\n").await;
    let mut frames = String::new();
    for n in 0..250 {
        frames.push_str(&publication(&format!("p.{}", n % 3), n, &payload(n)));
    }
    // 60 keys written three times each: only the last value of each is kept.
    for n in 0..180 {
        frames.push_str(&publication(
            &format!("$KV.t.k{}", n % 60),
            n,
            &payload(n * 3),
        ));
    }
    publisher.send(frames).await;
    for ack in publisher.read_msgs(430).await {
        assert!(ack.contains("\"seq\""), "{ack}");
    }

    let mut consumer = connect(&addr).await;
    consumer.send("SUB _INBOX.p 2\r\nPING\r\n").await;
    consumer.expect("PONG\r\n").await;
    let first = pull(&mut consumer, r#"{"batch":100}"#, 100).await;
    transcript.extend(first.iter().map(|m| format!("{m:?}")));
    let info = request(&mut api, "$JS.API.CONSUMER.INFO.P.C", "").await;
    assert!(info.contains("\"num_pending\":150"), "{info}");
    // The acks are taken before the stop.
    consumer.send("PING\r\n").await;
    consumer.expect("PONG\r\n").await;
    let deadline = std::time::Instant::now() + common::process::WAIT;
    loop {
        let info = request(&mut api, "$JS.API.CONSUMER.INFO.P.C", "").await;
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        if info["ack_floor"]["stream_seq"] == 100 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "acks not taken");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop(server);

    let (_server, addr) = start_js_server(binary, dir);
    let mut consumer = connect(&addr).await;
    consumer.send("SUB _INBOX.p 2\r\nPING\r\n").await;
    consumer.expect("PONG\r\n").await;
    let second = pull(&mut consumer, r#"{"batch":100}"#, 100).await;
    // The last 50, then the status that says there are no more.
    let third = pull(&mut consumer, r#"{"batch":100,"no_wait":true}"#, 51).await;
    transcript.extend(second.iter().chain(&third).map(|m| format!("{m:?}")));

    // Complete and in order, whatever the other server does: stream sequence n + 1 for
    // message n, its subject, header and payload as published, pending counting down.
    for (n, (subject, header, data, ack)) in
        first.iter().chain(&second).chain(&third[..50]).enumerate()
    {
        assert_eq!(subject, &format!("p.{}", n % 3));
        assert_eq!(data, &payload(n));
        let want_header = match n % 5 {
            0 => format!("NATS/1.0\r\nK: v{n}\r\n\r\n"),
            _ => String::new(),
        };
        assert_eq!(header, &want_header);
        let tokens: Vec<&str> = ack.split('.').collect();
        assert_eq!(tokens[..5], ["$JS", "ACK", "P", "C", "1"], "{ack}");
        assert_eq!(tokens[5], (n + 1).to_string(), "{ack}");
        assert_eq!(tokens[6], (n + 1).to_string(), "{ack}");
        assert_eq!(tokens[8], (249 - n).to_string(), "{ack}");
    }
    assert_eq!(third[50].1, "NATS/1.0 404 No Messages\r\n\r\n");

    // Every key, one get at a time, then all in one batch.
    let mut getter = connect(&addr).await;
    getter.send("SUB _INBOX.g 3\r\nPING\r\n").await;
    getter.expect("PONG\r\n").await;
    for key in 0..60 {
        getter
            .send(format!(
                "PUB $JS.API.DIRECT.GET.KV_t.$KV.t.k{key} _INBOX.g 0\r\n\r\n"
            ))
            .await;
        let frame = split(&getter.read_msgs(1).await[0]);
        let last = 120 + key;
        assert_eq!(frame.payload, payload(last * 3), "k{key}");
        transcript.push(format!("get k{key}: {}", without_time(&frame.header)));
    }
    let body = r#"{"multi_last":["$KV.t.>"]}"#;
    getter
        .send(format!(
            "PUB $JS.API.DIRECT.GET.KV_t _INBOX.g {}\r\n{body}\r\n",
            body.len()
        ))
        .await;
    for frame in getter.read_msgs(61).await {
        let frame = split(&frame);
        transcript.push(format!(
            "batch: {} {}",
            without_time(&frame.header),
            frame.payload.len()
        ));
    }
    transcript
}

/// A direct get's header without its `Nats-Time-Stamp` line.
fn without_time(header: &str) -> String {
    header
        .split("\r\n")
        .filter(|line| !line.starts_with("Nats-Time-Stamp:"))
        .collect::<Vec<_>>()
        .join("|")
}

#[tokio::test]
async fn pull_batches_and_direct_gets_across_a_restart_side_by_side_with_nats_server() {
    let scratch = Scratch::new("js-pull-restart");
    let tern = scenario(&scratch.nats_server(), &scratch.0.join("tern")).await;
    assert_eq!(tern.len(), 251 + 60 + 61);
    let Some(reference) = reference_server() else {
        return;
    };
    let ns = scenario(&reference, &scratch.0.join("ns")).await;
    for (n, (t, r)) in tern.iter().zip(&ns).enumerate() {
        assert_eq!(t, r, "line {n} differs");
    }
    assert_eq!(tern.len(), ns.len());
}
