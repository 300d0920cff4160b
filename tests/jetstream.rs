//! JetStream: enabling it as nats-server 2.15.1 does (flags, the `jetstream` block, the start-up
//! lines harnesses parse, INFO), side by side with the reference server.

mod common;

use std::io::BufReader;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use common::jetstream::{call, normalise, raw_reply, start_js_server, start_js_server_with};
use common::process::{
    json_shape, listening_port, read_line, reference_server, run, Process, Scratch, WAIT,
};
use serde_json::Value;

/// Starts `binary` with `-js -sd <dir>` (and a log file), as the nats.py harness does; returns
/// the process, its log and its INFO line.
fn start_with_jetstream(binary: &Path, scratch: &Scratch, name: &str) -> (Process, String, String) {
    let log = scratch.0.join(format!("{name}.log"));
    let store = scratch.0.join(format!("{name}-store"));
    let (process, text) = Process::start(
        Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-l"])
            .arg(&log)
            .arg(format!("-sd={}", store.display())),
        &log,
    );
    let port = listening_port(&text).expect("listening line");
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let info = read_line(&mut BufReader::new(stream));
    (process, text, info)
}

/// The part of each JetStream start-up line after the log prefix, with the sizes that depend
/// on the machine (free disk space moves between two starts) left out.
fn jetstream_lines(log: &str) -> Vec<String> {
    let start = log.find("Starting JetStream").expect("Starting JetStream");
    let end = log
        .find("to start JetStream")
        .expect("Took ... to start JetStream");
    log[start..end]
        .lines()
        .map(|line| match line.find("[INF] ") {
            Some(at) => line[at + 6..].to_string(),
            None => line.to_string(),
        })
        .filter(|line| !line.starts_with("Took") && !line.contains("Max Storage:"))
        .collect()
}

#[test]
fn enabled_with_flags_like_nats_server() {
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-enable");
    let (_tern, tern_log, tern_info) =
        start_with_jetstream(&scratch.nats_server(), &scratch, "tern");
    let (_ns, ns_log, ns_info) = start_with_jetstream(&reference, &scratch, "ref");

    // Harnesses (async-nats) find the store directory in this exact line.
    let store = scratch.0.join("tern-store").join("jetstream");
    let expected = format!("  Store Directory: \"{}\"", store.display());
    assert!(tern_log.contains(&expected), "{tern_log}");
    assert!(store.is_dir());
    // The same lines in the same order, but for the directory and the API level (tern
    // advertises the level of the features it has).
    let normalise = |lines: Vec<String>, name: &str, level: &str| -> Vec<String> {
        lines
            .into_iter()
            .map(|l| l.replace(&format!("{name}-store"), "STORE"))
            .map(|l| l.replace(&format!("API Level:       {level}"), "API Level:       N"))
            .collect()
    };
    assert_eq!(
        normalise(jetstream_lines(&tern_log), "tern", "0"),
        normalise(jetstream_lines(&ns_log), "ref", "5")
    );
    assert!(
        tern_log.find("to start JetStream").unwrap()
            < tern_log.find("Listening for client connections").unwrap()
    );

    for info in [&tern_info, &ns_info] {
        assert!(info.contains("\"jetstream\":true"), "{info}");
    }
    // tern has no API level to announce yet (nats-server's `api_lvl` is omitted when 0).
    assert!(!tern_info.contains("api_lvl"), "{tern_info}");
}

#[test]
fn jetstream_block_and_cluster_refusal() {
    let scratch = Scratch::new("js-block");
    let log = scratch.0.join("server.log");
    let config = scratch.0.join("js.conf");
    let store = scratch.0.join("store");
    // What the async-nats harness writes.
    std::fs::write(
        &config,
        format!(
            "jetstream: {{strict: true, max_mem_store: 64MiB, max_file_store: 10GiB, \
             store_dir: '{}'}}\n",
            store.display()
        ),
    )
    .unwrap();
    let (mut server, text) = Process::start(
        Command::new(scratch.nats_server())
            .args(["-a", "127.0.0.1", "-p", "-1", "-l"])
            .arg(&log)
            .arg("-c")
            .arg(&config),
        &log,
    );
    assert!(text.contains("  Max Memory:      64.00 MB"), "{text}");
    assert!(text.contains("  Max Storage:     10.00 GB"), "{text}");
    server.signal("TERM");
    assert_eq!(server.wait_exit(), 0);

    // nats-server would start a clustered JetStream; tern refuses plainly instead.
    std::fs::write(
        &config,
        "jetstream: enabled\ncluster { listen: 127.0.0.1:-1 }\n",
    )
    .unwrap();
    let out = run(
        &scratch.nats_server(),
        &["-p", "-1", "-c", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("[FTL] Can't start JetStream: tern does not support JetStream in a cluster"),
        "{stderr}"
    );
}

/// The calls compared side by side: stream lifecycle, publishing, errors.
const CALLS: &[(&str, &str)] = &[
    ("$JS.API.INFO", ""),
    (
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
    ),
    (
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
    ),
    (
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.*"],"storage":"memory"}"#,
    ),
    (
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"S","storage":"memory"}"#,
    ),
    (
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":["s.a"],"storage":"memory"}"#,
    ),
    (
        "$JS.API.STREAM.CREATE.L",
        r#"{"name":"L","subjects":["l"],"storage":"memory","max_msgs":2,"discard":"new","max_age":60000000000}"#,
    ),
    (
        "$JS.API.STREAM.CREATE.R",
        r#"{"name":"R","storage":"memory","num_replicas":3}"#,
    ),
    ("$JS.API.STREAM.CREATE.U", "{"),
    ("s.a", "one"),
    ("s.b", "two"),
    ("s.a", "three"),
    ("l", "1"),
    ("l", "2"),
    ("l", "3"),
    ("$JS.API.STREAM.INFO.S", ""),
    ("$JS.API.STREAM.INFO.L", ""),
    ("$JS.API.STREAM.INFO.X", ""),
    ("$JS.API.STREAM.MSG.GET.S", r#"{"seq":2}"#),
    ("$JS.API.STREAM.MSG.GET.S", r#"{"last_by_subj":"s.a"}"#),
    ("$JS.API.STREAM.MSG.GET.S", r#"{"seq":9}"#),
    ("$JS.API.STREAM.MSG.GET.X", r#"{"seq":1}"#),
    ("$JS.API.STREAM.NAMES", ""),
    ("$JS.API.STREAM.NAMES", r#"{"subject":"l"}"#),
    ("$JS.API.STREAM.NAMES", "{"),
    ("$JS.API.STREAM.LIST", "{"),
    ("$JS.API.CONSUMER.NAMES.X", ""),
    ("$JS.API.CONSUMER.LIST.X", ""),
    ("$JS.API.STREAM.LIST", ""),
    (
        "$JS.API.STREAM.UPDATE.L",
        r#"{"name":"L","subjects":["l","m"],"storage":"memory","max_msgs":5,"discard":"new","max_age":60000000000}"#,
    ),
    ("m", "4"),
    (
        "$JS.API.STREAM.UPDATE.X",
        r#"{"name":"X","storage":"memory"}"#,
    ),
    ("$JS.API.STREAM.MSG.DELETE.S", r#"{"seq":2}"#),
    ("$JS.API.STREAM.MSG.DELETE.S", r#"{"seq":2}"#),
    ("$JS.API.STREAM.MSG.DELETE.S", r#"{"seq":99}"#),
    ("$JS.API.STREAM.MSG.DELETE.S", ""),
    ("$JS.API.STREAM.MSG.DELETE.X", r#"{"seq":1}"#),
    ("$JS.API.STREAM.INFO.S", ""),
    ("s.a", "four"),
    ("s.b", "five"),
    ("$JS.API.STREAM.PURGE.S", r#"{"filter":"s.a","keep":1}"#),
    ("$JS.API.STREAM.PURGE.S", r#"{"seq":5,"keep":1}"#),
    ("$JS.API.STREAM.PURGE.S", r#"{"seq":5}"#),
    ("$JS.API.STREAM.INFO.S", ""),
    ("$JS.API.STREAM.PURGE.S", ""),
    ("$JS.API.STREAM.PURGE.X", ""),
    ("$JS.API.STREAM.INFO.S", ""),
    ("$JS.API.STREAM.DELETE.S", ""),
    ("$JS.API.STREAM.DELETE.S", ""),
    ("$JS.API.STREAM.DELETE.L", ""),
    (
        "$JS.API.STREAM.CREATE.F",
        r#"{"name":"F","subjects":["f.>"]}"#,
    ),
    ("f.a", "on disk"),
    ("f.b", ""),
    ("f.a", "again"),
    ("$JS.API.STREAM.MSG.DELETE.F", r#"{"seq":2}"#),
    ("$JS.API.STREAM.PURGE.F", r#"{"filter":"f.a","keep":1}"#),
    ("$JS.API.STREAM.INFO.F", ""),
    ("$JS.API.INFO", ""),
    ("$JS.API.STREAM.MSG.GET.F", r#"{"seq":1}"#),
    ("$JS.API.STREAM.PURGE.F", ""),
    ("$JS.API.STREAM.DELETE.F", ""),
    (
        "$JS.API.STREAM.CREATE.DP",
        r#"{"name":"DP","storage":"memory","deny_purge":true,"max_msg_size":3,"deny_delete":true}"#,
    ),
    ("DP", "12345"),
    ("DP", "123"),
    ("$JS.API.STREAM.PURGE.DP", ""),
    ("$JS.API.STREAM.MSG.DELETE.DP", r#"{"seq":1}"#),
    ("$JS.API.STREAM.DELETE.DP", ""),
    ("$JS.API.STREAM.NAMES", ""),
    ("$JS.API.INFO", ""),
];

/// A subject, its headers and its body.
type HeaderCall = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Publishes with headers, compared side by side: duplicates and the `Nats-Expected-*` checks.
const HEADER_CALLS: &[HeaderCall] = &[
    (
        "$JS.API.STREAM.CREATE.H",
        &[],
        r#"{"name":"H","subjects":["h.*"],"storage":"memory","duplicate_window":60000000000}"#,
    ),
    ("h.a", &[("Nats-Msg-Id", "1")], "x"),
    ("h.a", &[("Nats-Msg-Id", "1")], "x"),
    ("h.a", &[("Nats-Expected-Last-Sequence", "5")], "x"),
    ("h.a", &[("Nats-Expected-Last-Sequence", "1")], "x"),
    ("h.b", &[("Nats-Expected-Last-Subject-Sequence", "0")], "x"),
    ("h.b", &[("Nats-Expected-Last-Subject-Sequence", "0")], "x"),
    ("h.a", &[("Nats-Expected-Stream", "X")], "x"),
    ("h.a", &[("Nats-Expected-Stream", "H")], "x"),
    ("h.a", &[("Nats-Expected-Last-Msg-Id", "2")], "x"),
    (
        "h.a",
        &[("Nats-Expected-Last-Msg-Id", "1"), ("Nats-Msg-Id", "2")],
        "x",
    ),
    ("h.a", &[("Nats-TTL", "1s")], "x"),
    ("h.a", &[("Nats-Rollup", "sub")], "x"),
    ("$JS.API.STREAM.MSG.GET.H", &[], r#"{"seq":1}"#),
    (
        "$JS.API.STREAM.CREATE.LV",
        &[("Nats-Required-Api-Level", "9")],
        r#"{"name":"LV","storage":"memory"}"#,
    ),
    (
        "$JS.API.STREAM.INFO.H",
        &[("Nats-Required-Api-Level", "9")],
        "",
    ),
    (
        "$JS.API.STREAM.CREATE.LV",
        &[("Nats-Required-Api-Level", "0")],
        r#"{"name":"LV","storage":"memory"}"#,
    ),
    ("$JS.API.STREAM.DELETE.LV", &[], ""),
    ("$JS.API.STREAM.INFO.H", &[], ""),
    ("$JS.API.STREAM.DELETE.H", &[], ""),
];

/// Sends each `(subject, body)` request to tern and to nats-server: the answers must be the
/// same JSON (shape first, for a readable difference).
async fn same_answers(tern: &async_nats::Client, ns: &async_nats::Client, calls: &[(&str, &str)]) {
    for (subject, body) in calls {
        let (ours, theirs) = (
            call(tern, subject, body).await,
            call(ns, subject, body).await,
        );
        assert_eq!(
            json_shape(&ours),
            json_shape(&theirs),
            "{subject} {body}:\ntern {ours}\nnats-server {theirs}"
        );
        assert_eq!(ours, theirs, "{subject} {body}");
    }
}

/// tern and nats-server 2.15.1 with JetStream, each in its part of a scratch directory, and a
/// client on each: (what to keep alive, tern's client, nats-server's).
async fn side_by_side(
    name: &str,
) -> (
    (Process, Process, Scratch),
    async_nats::Client,
    async_nats::Client,
) {
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new(name);
    let (tern, tern_addr) = start_js_server(&scratch.nats_server(), &scratch.0.join("tern"));
    let (ns, ns_addr) = start_js_server(&reference, &scratch.0.join("ref"));
    let tern_client = async_nats::connect(&tern_addr).await.unwrap();
    let ns_client = async_nats::connect(&ns_addr).await.unwrap();
    ((tern, ns, scratch), tern_client, ns_client)
}

#[tokio::test]
async fn stream_api_side_by_side_with_nats_server() {
    let (_servers, tern, ns) = side_by_side("js-api").await;
    same_answers(&tern, &ns, CALLS).await;
    for (subject, headers, body) in HEADER_CALLS {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers.iter() {
            map.insert(*name, *value);
        }
        let mut answers = Vec::new();
        for client in [&tern, &ns] {
            let msg = client
                .request_with_headers(subject.to_string(), map.clone(), body.to_string().into())
                .await
                .unwrap_or_else(|e| panic!("{subject}: {e}"));
            let mut value: Value = serde_json::from_slice(&msg.payload).unwrap();
            normalise(&mut value);
            answers.push(value);
        }
        assert_eq!(answers[0], answers[1], "{subject} {headers:?}");
    }
}

#[tokio::test]
async fn async_nats_jetstream_client_streams() {
    use async_nats::jetstream::{self, context::Publish, stream};

    let scratch = Scratch::new("js-client");
    let (_tern, addr) = start_js_server(&scratch.nats_server(), &scratch.0);
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client);

    let account = js.query_account().await.unwrap();
    assert_eq!(account.streams, 0);
    let mut orders = js
        .get_or_create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            storage: stream::StorageType::Memory,
            max_messages_per_subject: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    for n in 1..=3u64 {
        let ack = js
            .publish("orders.new", format!("order {n}").into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!((ack.stream.as_str(), ack.sequence), ("ORDERS", n));
    }
    // Duplicates within the window are acknowledged with the first sequence, not stored.
    let with_id = || Publish::build().message_id("once").payload("paid".into());
    let first = js
        .send_publish("orders.paid", with_id())
        .await
        .unwrap()
        .await
        .unwrap();
    let again = js
        .send_publish("orders.paid", with_id())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((first.sequence, first.duplicate), (4, false));
    assert_eq!((again.sequence, again.duplicate), (4, true));

    let info = orders.info().await.unwrap();
    // Two per subject: `orders.new` 1 went when 3 came.
    assert_eq!(info.state.messages, 3);
    assert_eq!(
        (info.state.first_sequence, info.state.last_sequence),
        (2, 4)
    );
    let msg = orders.get_raw_message(3).await.unwrap();
    assert_eq!(
        (msg.subject.as_str(), &msg.payload[..]),
        ("orders.new", &b"order 3"[..])
    );
    let last = orders
        .get_last_raw_message_by_subject("orders.paid")
        .await
        .unwrap();
    assert_eq!(last.sequence, 4);
    assert!(orders.get_raw_message(1).await.is_err());

    // Opening it again finds it.
    let again = js.get_or_create_stream("ORDERS").await;
    assert!(again.is_ok());
    assert_eq!(js.query_account().await.unwrap().streams, 1);
    assert!(js.delete_stream("ORDERS").await.unwrap().success);
    assert!(js.get_stream("ORDERS").await.is_err());
}

/// A memory stream with limits retention has its payloads packed into shared chunks as they
/// are read; every payload and header must come back byte for byte, across chunk boundaries,
/// after the oldest were dropped, and after an update that stops the packing.
#[tokio::test]
async fn memory_stream_payloads_come_back_byte_for_byte() {
    use async_nats::jetstream::{self, stream};

    let scratch = Scratch::new("js-packed");
    let (_tern, addr) = start_js_server(&scratch.nats_server(), &scratch.0);
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client);
    let mut config = stream::Config {
        name: "PACKED".into(),
        subjects: vec!["packed.>".into()],
        storage: stream::StorageType::Memory,
        max_messages: 150,
        ..Default::default()
    };
    let stream = js.create_stream(config.clone()).await.unwrap();
    // Sizes around the packing limit (4 KiB) and enough of ~1 KiB to fill several 64 KiB chunks.
    let sizes = [0usize, 1, 100, 1000, 4095, 4096, 4097, 20_000];
    let payload = |n: u64| -> Vec<u8> {
        let size = sizes[n as usize % sizes.len()].max(if n % 3 == 0 { 1000 } else { 0 });
        (0..size).map(|i| (i as u64 * 31 + n) as u8).collect()
    };
    let publish = |n: u64| {
        let js = js.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            if n % 2 == 0 {
                headers.insert("Order", n.to_string().as_str());
            }
            js.publish_with_headers(format!("packed.{}", n % 7), headers, payload(n).into())
                .await
                .unwrap()
                .await
                .unwrap()
                .sequence
        }
    };
    for n in 1..=400u64 {
        assert_eq!(publish(n).await, n);
    }
    // Per-subject history: no longer packed; the packed ones stay readable.
    config.max_messages_per_subject = 100;
    js.update_stream(config).await.unwrap();
    for n in 401..=450u64 {
        assert_eq!(publish(n).await, n);
    }
    let info = js.get_stream("PACKED").await.unwrap().cached_info().clone();
    assert_eq!(
        (
            info.state.first_sequence,
            info.state.last_sequence,
            info.state.messages
        ),
        (301, 450, 150)
    );
    for n in 301..=450u64 {
        let msg = stream.get_raw_message(n).await.unwrap();
        assert_eq!(msg.subject.as_str(), format!("packed.{}", n % 7));
        assert_eq!(&msg.payload[..], &payload(n)[..], "payload of {n}");
        let order = msg.headers.get("Order").map(|v| v.to_string());
        assert_eq!(order, (n % 2 == 0).then(|| n.to_string()), "header of {n}");
    }
}

#[tokio::test]
async fn async_nats_pull_consumers() {
    use async_nats::jetstream::{self, consumer::pull, stream, AckKind};
    use futures::StreamExt;

    let scratch = Scratch::new("js-pull");
    let (_tern, addr) = start_js_server(&scratch.nats_server(), &scratch.0);
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    for n in 1..=5 {
        js.publish(format!("events.{n}"), format!("event {n}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let batch = stream
        .create_consumer(pull::Config {
            durable_name: Some("worker".into()),
            ack_wait: std::time::Duration::from_millis(500),
            max_deliver: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .fetch()
        .max_messages(3)
        .messages()
        .await
        .unwrap();
    let got: Vec<_> = batch.collect().await;
    assert_eq!(got.len(), 3);
    for (n, msg) in got.into_iter().enumerate() {
        let msg = msg.unwrap();
        assert_eq!(msg.subject.as_str(), format!("events.{}", n + 1));
        let info = msg.info().unwrap();
        assert_eq!((info.stream, info.consumer), ("EVENTS", "worker"));
        assert_eq!((info.stream_sequence, info.delivered), (n as u64 + 1, 1));
        assert_eq!(info.pending, 4 - n as u64);
        if n == 1 {
            msg.ack_with(AckKind::Nak(None)).await.unwrap();
        } else {
            msg.double_ack().await.unwrap();
        }
    }
    // The NAKed message comes again first, then the rest; one is left unacknowledged.
    let consumer: jetstream::consumer::PullConsumer = stream.get_consumer("worker").await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let msg = messages.next().await.unwrap().unwrap();
        let info = msg.info().unwrap();
        seen.push((info.stream_sequence, info.delivered));
        if info.stream_sequence != 5 {
            msg.ack().await.unwrap();
        }
    }
    // 5 was not acknowledged within ack_wait (500 ms): it comes back.
    assert_eq!(seen, [(2, 2), (4, 1), (5, 1), (5, 2)]);
    let msg = messages.next().await.unwrap().unwrap();
    assert_eq!(msg.info().unwrap().delivered, 3);
    msg.double_ack().await.unwrap();
    drop(messages);

    let mut consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("worker").await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_pending, 0);
    assert_eq!(info.delivered.stream_sequence, 5);

    // An ephemeral consumer, and deleting.
    let ephemeral: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            filter_subject: "events.4".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = ephemeral.fetch().max_messages(5).messages().await.unwrap();
    let msg = batch.next().await.unwrap().unwrap();
    assert_eq!(msg.subject.as_str(), "events.4");
    assert!(
        batch.next().await.is_none(),
        "no_wait: done after what there is"
    );
    assert!(stream.delete_consumer("worker").await.unwrap().success);
    assert!(stream.get_consumer::<pull::Config>("worker").await.is_err());
}

/// Consumer requests compared side by side (ephemeral names are random in both, so the
/// consumers here are named).
const CONSUMER_CALLS: &[(&str, &str)] = &[
    (
        "$JS.API.STREAM.CREATE.C",
        r#"{"name":"C","subjects":["c.*"],"storage":"memory"}"#,
    ),
    ("c.a", "1"),
    ("c.b", "2"),
    ("c.a", "3"),
    (
        "$JS.API.CONSUMER.DURABLE.CREATE.C.D",
        r#"{"stream_name":"C","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.C.D",
        r#"{"stream_name":"C","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.C.D",
        r#"{"stream_name":"C","config":{"durable_name":"D","ack_policy":"none"},"action":"create"}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.C.N.c.a",
        r#"{"stream_name":"C","config":{"name":"N","filter_subject":"c.a","ack_policy":"all","deliver_policy":"last","max_deliver":5,"ack_wait":5000000000}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.C.P",
        r#"{"stream_name":"C","config":{"durable_name":"P"}}"#,
    ),
    ("$JS.API.CONSUMER.DELETE.C.P", ""),
    (
        "$JS.API.CONSUMER.CREATE.C.M",
        r#"{"stream_name":"C","config":{"durable_name":"M","ack_policy":"explicit","max_ack_pending":-1}}"#,
    ),
    ("$JS.API.CONSUMER.DELETE.C.M", ""),
    (
        "$JS.API.CONSUMER.CREATE.C.U",
        r#"{"stream_name":"C","config":{"name":"U"},"action":"update"}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.C.E",
        r#"{"stream_name":"X","config":{"name":"E"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.X.E",
        r#"{"stream_name":"X","config":{"name":"E"}}"#,
    ),
    (
        "$JS.API.CONSUMER.DURABLE.CREATE.C.F",
        r#"{"stream_name":"C","config":{"durable_name":"G"}}"#,
    ),
    ("$JS.API.CONSUMER.INFO.C.D", ""),
    ("$JS.API.CONSUMER.INFO.C.N", ""),
    ("$JS.API.CONSUMER.INFO.C.X", ""),
    ("$JS.API.CONSUMER.NAMES.C", ""),
    ("$JS.API.CONSUMER.LIST.C", ""),
    ("$JS.API.STREAM.INFO.C", ""),
    ("$JS.API.CONSUMER.DELETE.C.N", ""),
    ("$JS.API.CONSUMER.DELETE.C.N", ""),
    ("$JS.API.INFO", ""),
    (
        "$JS.API.STREAM.CREATE.WQ",
        r#"{"name":"WQ","subjects":["wq.*"],"storage":"memory","retention":"workqueue"}"#,
    ),
    ("wq.a", "1"),
    ("wq.b", "2"),
    ("wq.a", "3"),
    (
        "$JS.API.CONSUMER.CREATE.WQ.A",
        r#"{"stream_name":"WQ","config":{"durable_name":"A","ack_policy":"none"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.WQ.A",
        r#"{"stream_name":"WQ","config":{"durable_name":"A","ack_policy":"explicit","deliver_policy":"last"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.WQ.A",
        r#"{"stream_name":"WQ","config":{"durable_name":"A","ack_policy":"explicit","filter_subject":"wq.a"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.WQ.B",
        r#"{"stream_name":"WQ","config":{"durable_name":"B","ack_policy":"explicit","filter_subject":"wq.a"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.WQ.B",
        r#"{"stream_name":"WQ","config":{"durable_name":"B","ack_policy":"explicit"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.WQ.C",
        r#"{"stream_name":"WQ","config":{"durable_name":"C","ack_policy":"all","filter_subject":"wq.b"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.WQ.C",
        r#"{"stream_name":"WQ","config":{"durable_name":"C","ack_policy":"explicit","filter_subject":"wq.b"}}"#,
    ),
    (
        "$JS.API.CONSUMER.CREATE.WQ.E",
        r#"{"stream_name":"WQ","config":{"durable_name":"E","ack_policy":"explicit","filter_subject":"wq.>"}}"#,
    ),
    (
        "$JS.API.STREAM.UPDATE.WQ",
        r#"{"name":"WQ","subjects":["wq.*"],"storage":"memory","retention":"limits"}"#,
    ),
];

/// A pull request's answers: each message's subject, its status line or payload, and its
/// ack reply with the timestamp token left out.
async fn pull(client: &async_nats::Client, subject: &str, body: &str, n: usize) -> Vec<String> {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subject.to_string(), inbox, body.to_string().into())
        .await
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let msg = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        let ack = msg.reply.as_ref().map(|r| {
            let mut tokens: Vec<&str> = r.split('.').collect();
            if tokens.len() > 7 {
                tokens[7] = "TS";
            }
            tokens.join(".")
        });
        let status = msg.status.map(|s| {
            format!(
                "{} {}",
                s.as_u16(),
                msg.description.clone().unwrap_or_default()
            )
        });
        let headers = msg.headers.as_ref().map(|h| {
            let mut pairs: Vec<String> = h
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(",")
                    )
                })
                .collect();
            pairs.sort();
            pairs.join(";")
        });
        let subject = match msg.subject.starts_with("_INBOX.") {
            true => "<inbox>",
            false => msg.subject.as_str(),
        };
        out.push(format!(
            "{} {:?} {:?} {:?} {:?}",
            subject,
            status,
            headers,
            String::from_utf8_lossy(&msg.payload),
            ack
        ));
    }
    out
}

/// Pulls one message from `next` (`$JS.API.CONSUMER.MSG.NEXT...`) to a new inbox: the
/// inbox's subscription, the inbox and the message.
async fn pull_one(
    client: &async_nats::Client,
    next: &str,
) -> (async_nats::Subscriber, String, async_nats::Message) {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(next.to_string(), inbox.clone(), "1".into())
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    (sub, inbox, msg)
}

#[tokio::test]
async fn consumer_api_side_by_side_with_nats_server() {
    let (_servers, tern, ns) = side_by_side("js-consumer-api").await;
    same_answers(&tern, &ns, CONSUMER_CALLS).await;
    // Pull requests: messages with their ack subjects, then the status messages.
    let next = "$JS.API.CONSUMER.MSG.NEXT.C.D";
    for (body, n) in [
        (r#"{"batch":2}"#, 2),
        (r#"{"batch":5,"no_wait":true}"#, 2),
        (r#"{"no_wait":true}"#, 1),
        (r#"{"batch":3,"expires":200000000}"#, 1),
        (
            r#"{"batch":1,"expires":1000000000,"idle_heartbeat":600000000}"#,
            1,
        ),
        (r#"{"batch":1,"min_pending":3}"#, 1),
        (r#"{"batch":1,"idle_heartbeat":600000000}"#, 1),
    ] {
        let (ours, theirs) = (
            pull(&tern, next, body, n).await,
            pull(&ns, next, body, n).await,
        );
        assert_eq!(ours, theirs, "{body}");
    }
    // A consumer that does not exist: no responders.
    for client in [&tern, &ns] {
        let err = client
            .request("$JS.API.CONSUMER.MSG.NEXT.C.X", "".into())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    }
    let (ours, theirs) = (
        call(&tern, "$JS.API.CONSUMER.INFO.C.D", "").await,
        call(&ns, "$JS.API.CONSUMER.INFO.C.D", "").await,
    );
    assert_eq!(ours, theirs);
    // Deleting a consumer tells the requests waiting on it.
    let mut answers = Vec::new();
    for client in [&tern, &ns] {
        use futures::StreamExt;
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await.unwrap();
        let body = r#"{"batch":1,"expires":5000000000}"#;
        client
            .publish_with_reply(next, inbox, body.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        // nats-server queues pull requests apart from API requests: without this pause its
        // delete can overtake the request, which is then dropped without a word.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        call(client, "$JS.API.CONSUMER.DELETE.C.D", "").await;
        let msg = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no 409 from server {}", answers.len()))
            .unwrap();
        answers.push((msg.status.map(|s| s.as_u16()), msg.description));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, Some(409));

    // A work queue: what is acknowledged or terminated leaves the stream.
    for client in [&tern, &ns] {
        for (consumer, verb) in [("A", "+TERM"), ("A", "+ACK"), ("C", "-NAK")] {
            // Messages come under their own subject, so not through the request muxer.
            let next = format!("$JS.API.CONSUMER.MSG.NEXT.WQ.{consumer}");
            let (_, _, msg) = pull_one(client, &next).await;
            let ack = msg.reply.clone().expect("an ack subject");
            client.request(ack, verb.into()).await.unwrap();
        }
    }
    for subject in ["$JS.API.STREAM.INFO.WQ", "$JS.API.CONSUMER.INFO.WQ.A"] {
        let (ours, theirs) = (call(&tern, subject, "").await, call(&ns, subject, "").await);
        assert_eq!(ours, theirs, "{subject}");
    }
}

/// Requests about what a single server has not got: leaders and peers (clustered JetStream)
/// and priority groups (`CONSUMER.UNPIN`), each answered with nats-server's error in its
/// order of checks (body, group name, stream, consumer, group).
const CLUSTERED_AND_UNPIN_CALLS: &[(&str, &str)] = &[
    (
        "$JS.API.STREAM.CREATE.U",
        r#"{"name":"U","subjects":["u.*"],"storage":"memory"}"#,
    ),
    (
        "$JS.API.CONSUMER.DURABLE.CREATE.U.D",
        r#"{"stream_name":"U","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
    ),
    ("$JS.API.STREAM.LEADER.STEPDOWN.U", ""),
    ("$JS.API.STREAM.LEADER.STEPDOWN.NOPE", ""),
    ("$JS.API.STREAM.PEER.REMOVE.U", r#"{"peer":"x"}"#),
    ("$JS.API.CONSUMER.LEADER.STEPDOWN.U.D", ""),
    ("$JS.API.CONSUMER.LEADER.STEPDOWN.U.NOPE", ""),
    ("$JS.API.CONSUMER.UNPIN.U.D", ""),
    ("$JS.API.CONSUMER.UNPIN.U.D", "{"),
    ("$JS.API.CONSUMER.UNPIN.NOPE.D", ""),
    ("$JS.API.CONSUMER.UNPIN.U.D", "{}"),
    ("$JS.API.CONSUMER.UNPIN.U.D", "null"),
    ("$JS.API.CONSUMER.UNPIN.U.D", r#"{"group":null}"#),
    ("$JS.API.CONSUMER.UNPIN.NOPE.D", r#"{"group":""}"#),
    ("$JS.API.CONSUMER.UNPIN.NOPE.D", r#"{"group":"bad.name"}"#),
    (
        "$JS.API.CONSUMER.UNPIN.U.D",
        r#"{"group":"ABCDEFGHIJKLMNOPQ"}"#,
    ),
    ("$JS.API.CONSUMER.UNPIN.U.D", r#"{"group":"a+b"}"#),
    ("$JS.API.CONSUMER.UNPIN.NOPE.D", r#"{"group":"g"}"#),
    ("$JS.API.CONSUMER.UNPIN.U.NOPE", r#"{"group":"g"}"#),
    ("$JS.API.CONSUMER.UNPIN.U.D", r#"{"group":"a/b=c_d-e"}"#),
    (
        "$JS.API.CONSUMER.UNPIN.U.D",
        r#"{"group":"ABCDEFGHIJKLMNOP","x":1}"#,
    ),
    ("$JS.API.INFO", ""),
];

/// `discard_new_per_subject`: its configuration errors, and a subject at its
/// `max_msgs_per_subject` refusing the next message while other subjects still take theirs.
const DISCARD_NEW_PER_SUBJECT_CALLS: &[(&str, &str)] = &[
    (
        "$JS.API.STREAM.CREATE.P",
        r#"{"name":"P","subjects":["p.*"],"storage":"memory","discard_new_per_subject":true,"max_msgs_per_subject":2}"#,
    ),
    (
        "$JS.API.STREAM.CREATE.P",
        r#"{"name":"P","subjects":["p.*"],"storage":"memory","discard_new_per_subject":true,"discard":"new"}"#,
    ),
    (
        "$JS.API.STREAM.CREATE.P",
        r#"{"name":"P","subjects":["p.*"],"storage":"file","discard_new_per_subject":true,"discard":"new","max_msgs_per_subject":2,"max_msgs":4}"#,
    ),
    ("p.a", "1"),
    ("p.a", "2"),
    ("p.a", "3"),
    ("p.b", "4"),
    ("p.b", "5"),
    ("p.c", "6"),
    ("$JS.API.STREAM.INFO.P", ""),
    ("$JS.API.STREAM.MSG.DELETE.P", r#"{"seq":1}"#),
    ("p.a", "7"),
    ("p.a", "8"),
    (
        "$JS.API.STREAM.UPDATE.P",
        r#"{"name":"P","subjects":["p.*"],"storage":"file","discard":"new","max_msgs_per_subject":2,"max_msgs":4}"#,
    ),
    ("p.a", "9"),
    ("$JS.API.STREAM.INFO.P", ""),
    // `discard: new` with a full stream: a subject at its limit replaces its oldest message,
    // which makes room for a new one no larger than it.
    (
        "$JS.API.STREAM.CREATE.Q",
        r#"{"name":"Q","subjects":["q.*"],"storage":"memory","discard":"new","max_msgs_per_subject":1,"max_bytes":60}"#,
    ),
    ("q.a", "xxxxxxxxxx"),
    ("q.b", "xxxxxxxxxx"),
    ("q.c", "x"),
    ("q.a", "yyyyy"),
    ("q.a", "zzzzzzzzzzzzzzzzzzzz"),
    ("$JS.API.STREAM.INFO.Q", ""),
];

#[tokio::test]
async fn discard_new_per_subject_side_by_side_with_nats_server() {
    let (_servers, tern, ns) = side_by_side("js-discard-per-subject").await;
    same_answers(&tern, &ns, DISCARD_NEW_PER_SUBJECT_CALLS).await;
}

#[tokio::test]
async fn clustered_and_unpin_requests_side_by_side_with_nats_server() {
    let (_servers, tern, ns) = side_by_side("js-unpin").await;
    same_answers(&tern, &ns, CLUSTERED_AND_UNPIN_CALLS).await;
}

/// `max_bytes` in pull requests: what a delivery weighs (subject, ack reply, headers,
/// payload), the `409` that ends a request the next message does not fit, a request that
/// ends silently when its bytes run out exactly, no limit when negative, and a redelivery
/// that did not fit going to the next request; side by side with nats-server.
#[tokio::test]
async fn pull_max_bytes_side_by_side_with_nats_server() {
    use futures::StreamExt;
    let (_servers, tern, ns) = side_by_side("js-max-bytes").await;
    let next = "$JS.API.CONSUMER.MSG.NEXT.S.D";
    for client in [&tern, &ns] {
        call(
            client,
            "$JS.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
        )
        .await;
        call(
            client,
            "$JS.API.CONSUMER.CREATE.S.D",
            r#"{"stream_name":"S","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
        )
        .await;
        for _ in 0..5 {
            client.publish("s.a", "0123456789".into()).await.unwrap();
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("H", "v");
        client
            .publish_with_headers("s.b", headers, "0123456789".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
    }
    for (body, n) in [
        (r#"{"batch":1,"max_bytes":5}"#, 1),
        (r#"{"batch":2,"max_bytes":104}"#, 2),
        (r#"{"batch":10,"max_bytes":104,"expires":300000000}"#, 2),
        (r#"{"batch":3,"max_bytes":-1,"expires":300000000}"#, 3),
        (r#"{"batch":5,"max_bytes":60,"no_wait":true}"#, 1),
        (r#"{"batch":5,"max_bytes":500,"expires":300000000}"#, 1),
    ] {
        let (ours, theirs) = (
            pull(&tern, next, body, n).await,
            pull(&ns, next, body, n).await,
        );
        assert_eq!(ours, theirs, "{body}");
    }
    // A batch done with bytes to spare: the message, then "409 Batch Completed".
    for client in [&tern, &ns] {
        client.request("s.d", "0123456789".into()).await.unwrap();
    }
    let body = r#"{"batch":1,"max_bytes":500}"#;
    let (ours, theirs) = (
        pull(&tern, next, body, 2).await,
        pull(&ns, next, body, 2).await,
    );
    assert_eq!(ours, theirs, "{body}");
    assert!(ours[1].contains("409"), "{ours:?}");
    // A request still waiting when the next message does not fit it: 409, and the message
    // (a redelivery here) goes to the request after it.
    let mut seen = Vec::new();
    for client in [&tern, &ns] {
        client.publish("s.c", "0123456789".into()).await.unwrap();
        let (mut sub, inbox, msg) = pull_one(client, next).await;
        let waiting = r#"{"batch":2,"max_bytes":40,"expires":2000000000}"#;
        client
            .publish_with_reply(next, inbox.clone(), waiting.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        client
            .publish_with_reply(next, inbox, r#"{"batch":1,"expires":2000000000}"#.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        client
            .request(msg.reply.clone().unwrap(), "-NAK".into())
            .await
            .unwrap();
        for _ in 0..2 {
            let msg = tokio::time::timeout(WAIT, sub.next())
                .await
                .unwrap()
                .unwrap();
            let ack = msg.reply.as_deref().unwrap_or_default();
            let ack: Vec<&str> = ack.split('.').take(7).collect();
            seen.push(format!("{} {}", raw_reply(&msg), ack.join(".")));
        }
    }
    assert_eq!(seen[..2], seen[2..]);
    assert!(
        seen[0].contains("409 Message Size Exceeds MaxBytes"),
        "{seen:?}"
    );
    let (ours, theirs) = (
        call(&tern, "$JS.API.CONSUMER.INFO.S.D", "").await,
        call(&ns, "$JS.API.CONSUMER.INFO.S.D", "").await,
    );
    assert_eq!(ours, theirs);

    // async-nats: a fetch bounded by bytes.
    let js = async_nats::jetstream::new(tern.clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .create_consumer_on_stream(
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("F".into()),
                ..Default::default()
            },
            "S",
        )
        .await
        .unwrap();
    let mut got = 0;
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .max_bytes(120)
        .messages()
        .await
        .unwrap();
    while let Some(msg) = tokio::time::timeout(WAIT, messages.next()).await.unwrap() {
        if msg.is_ok() {
            got += 1;
        }
    }
    assert_eq!(got, 2);
}

/// A consumer's limits on pull requests (`max_batch`, `max_expires`, `max_bytes`): how they are
/// kept and shown, and the `409 Exceeded ...` a request past one gets; side by side with
/// nats-server.
#[tokio::test]
async fn consumer_pull_limits_side_by_side_with_nats_server() {
    let (_servers, tern, ns) = side_by_side("js-pull-limits").await;
    let create = |name: &str, config: &str| {
        (
            format!("$JS.API.CONSUMER.CREATE.L.{name}"),
            format!(r#"{{"stream_name":"L","config":{{"durable_name":"{name}",{config}}}}}"#),
        )
    };
    let mut calls = vec![(
        "$JS.API.STREAM.CREATE.L".to_string(),
        r#"{"name":"L","subjects":["l"],"storage":"memory"}"#.to_string(),
    )];
    for (name, config) in [
        (
            "A",
            r#""ack_policy":"explicit","max_batch":2,"max_expires":1500000000,"max_bytes":1000"#,
        ),
        ("N", r#""max_batch":-3,"max_expires":-1,"max_bytes":-5"#),
        (
            "P",
            r#""deliver_subject":"dl","max_batch":4,"max_bytes":50"#,
        ),
        ("E", r#""max_expires":1000"#),
        // An update may change them.
        (
            "A",
            r#""ack_policy":"explicit","max_batch":3,"max_expires":1500000000,"max_bytes":1000"#,
        ),
    ] {
        calls.push(create(name, config));
    }
    let calls: Vec<(&str, &str)> = calls
        .iter()
        .map(|(s, b)| (s.as_str(), b.as_str()))
        .collect();
    same_answers(&tern, &ns, &calls).await;
    for client in [&tern, &ns] {
        for _ in 0..4 {
            client.request("l", "0123456789".into()).await.unwrap();
        }
    }
    let next = "$JS.API.CONSUMER.MSG.NEXT.L.A";
    for (body, n) in [
        (r#"{"batch":4}"#, 1),
        ("9", 1),
        (r#"{"batch":1,"expires":2000000000}"#, 1),
        (r#"{"batch":1,"max_bytes":2000}"#, 1),
        (r#"{"batch":1,"expires":1500000000,"max_bytes":1000}"#, 2),
        (r#"{"batch":3,"no_wait":true}"#, 3),
    ] {
        let (ours, theirs) = (
            pull(&tern, next, body, n).await,
            pull(&ns, next, body, n).await,
        );
        assert_eq!(ours, theirs, "{body}");
    }
    let (ours, theirs) = (
        call(&tern, "$JS.API.CONSUMER.INFO.L.A", "").await,
        call(&ns, "$JS.API.CONSUMER.INFO.L.A", "").await,
    );
    assert_eq!(ours, theirs);
}

#[tokio::test]
async fn ack_next_acknowledges_and_pulls() {
    use async_nats::jetstream::{self, consumer::pull, stream, AckKind};
    use futures::StreamExt;

    let scratch = Scratch::new("js-nxt");
    let (_tern, addr) = start_js_server(&scratch.nats_server(), &scratch.0);
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "Q".into(),
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    for n in 1..=3 {
        js.publish("Q", format!("{n}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("W".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let first = batch.next().await.unwrap().unwrap();
    assert_eq!(&first.payload[..], b"1");
    // `+NXT`: the ack and a pull for one more, answered on the ack's reply subject.
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    let ack = first.reply.clone().unwrap();
    client
        .publish_with_reply(ack, inbox, AckKind::Next.into())
        .await
        .unwrap();
    let second = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&second.payload[..], b"2");
    let info = consumer.clone().info().await.unwrap().clone();
    assert_eq!(
        (info.ack_floor.stream_sequence, info.num_ack_pending),
        (1, 1)
    );
}

/// Starts tern with `-js` on the store in `store`, logging to `log`; returns it with its
/// client URL.
fn start_tern_on(scratch: &Scratch, store: &Path, log: &Path) -> (Process, String) {
    let (process, text) = Process::start(
        Command::new(scratch.nats_server())
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-l"])
            .arg(log)
            .arg("-sd")
            .arg(store),
        log,
    );
    let port = listening_port(&text).expect("listening line");
    (process, format!("127.0.0.1:{port}"))
}

#[tokio::test]
async fn file_streams_survive_kill_9() {
    use async_nats::jetstream::{self, context::Publish, stream};
    use futures::StreamExt;

    let scratch = Scratch::new("js-kill");
    let store = scratch.0.join("store");
    let (mut server, addr) = start_tern_on(&scratch, &store, &scratch.0.join("1.log"));
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name: "DURABLE".into(),
        subjects: vec!["d.>".into()],
        max_messages_per_subject: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut acks = Vec::new();
    for n in 0..300u64 {
        let publish = Publish::build()
            .message_id(format!("id-{n}"))
            .payload(format!("payload {n}").into());
        let ack = js
            .send_publish(format!("d.{}", n % 3), publish)
            .await
            .unwrap()
            .await
            .unwrap();
        acks.push(ack.sequence);
    }
    assert_eq!(acks, (1..=300).collect::<Vec<_>>());
    // Half removed by the per-subject limit: removal records in the log.
    let info = js
        .get_stream("DURABLE")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 150);

    // A durable consumer: two messages acknowledged (synchronously), one not.
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream("DURABLE")
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("reader".into()),
            ack_wait: std::time::Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(3).messages().await.unwrap();
    for n in 0..3 {
        let msg = batch.next().await.unwrap().unwrap();
        if n < 2 {
            msg.double_ack().await.unwrap();
        }
    }

    // SIGKILL: no chance to flush anything the acks did not already wait for.
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let log = scratch.0.join("2.log");
    let (_server, addr) = start_tern_on(&scratch, &store, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Restored 150 messages for stream 'DURABLE'"),
        "{text}"
    );
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream("DURABLE").await.unwrap();
    let after = stream.info().await.unwrap().clone();
    assert_eq!(after.state.messages, 150);
    assert_eq!(after.state.bytes, info.state.bytes);
    assert_eq!(after.state.first_sequence, 151);
    assert_eq!(after.state.last_sequence, 300);
    assert_eq!(after.created, info.created);
    for seq in [151, 200, 300] {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(&msg.payload[..], format!("payload {}", seq - 1).as_bytes());
        assert_eq!(msg.subject.as_str(), format!("d.{}", (seq - 1) % 3));
    }
    // The duplicate window survives, and sequences carry on.
    let dup = js
        .send_publish(
            "d.0",
            Publish::build()
                .message_id("id-299")
                .payload("again".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((dup.sequence, dup.duplicate), (300, true));
    let next = js
        .publish("d.1", "new".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(next.sequence, 301);
    // The consumer is back where it was: the next message comes at once, and the one not
    // acknowledged again once ack_wait has passed since the restart.
    let mut consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("reader").await.unwrap();
    let info = consumer.info().await.unwrap().clone();
    assert_eq!(info.delivered.stream_sequence, 153);
    assert_eq!(info.ack_floor.stream_sequence, 152);
    assert_eq!(info.num_ack_pending, 1);
    let mut batch = consumer
        .batch()
        .max_messages(200)
        .expires(std::time::Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let msg = batch.next().await.expect("153 again").unwrap();
        let info = msg.info().unwrap();
        got.push((info.stream_sequence, info.delivered));
        if info.stream_sequence == 153 {
            break;
        }
    }
    let expected: Vec<(u64, i64)> = (154..=301).map(|seq| (seq, 1)).chain([(153, 2)]).collect();
    assert_eq!(got, expected);
    // A deleted stream stays deleted.
    js.delete_stream("DURABLE").await.unwrap();
    assert!(!store
        .join("jetstream")
        .join("$G")
        .join("streams")
        .join("DURABLE")
        .exists());
}

#[tokio::test]
async fn direct_get_and_rollups_side_by_side_with_nats_server() {
    let (_servers, tern, ns) = side_by_side("js-direct").await;
    let create = r#"{"name":"DG","subjects":["dg.*"],"storage":"memory","allow_direct":true,"allow_rollup_hdrs":true}"#;
    let headers = |pairs: &[(&str, &str)]| {
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, *v);
        }
        map
    };
    let steps: &[HeaderCall] = &[
        ("$JS.API.STREAM.CREATE.DG", &[], create),
        ("dg.a", &[], "one"),
        ("dg.a", &[("Foo", "bar")], "two"),
        ("dg.b", &[], "three"),
        ("$JS.API.DIRECT.GET.DG", &[], r#"{"seq":1}"#),
        ("$JS.API.DIRECT.GET.DG", &[], r#"{"last_by_subj":"dg.a"}"#),
        ("$JS.API.DIRECT.GET.DG.dg.b", &[], ""),
        ("$JS.API.DIRECT.GET.DG.dg.c", &[], ""),
        ("$JS.API.DIRECT.GET.DG", &[], r#"{"seq":9}"#),
        ("$JS.API.DIRECT.GET.DG", &[], ""),
        (
            "$JS.API.DIRECT.GET.DG",
            &[],
            r#"{"next_by_subj":"dg.b","seq":1}"#,
        ),
        ("$JS.API.DIRECT.GET.DG", &[], "{bad"),
        (
            "$JS.API.STREAM.MSG.GET.DG",
            &[],
            r#"{"next_by_subj":"dg.a","seq":2}"#,
        ),
        ("dg.a", &[("Nats-Rollup", "sub")], "four"),
        ("$JS.API.STREAM.INFO.DG", &[], ""),
        ("dg.b", &[("Nats-Rollup", "all")], "five"),
        ("$JS.API.STREAM.INFO.DG", &[], ""),
        ("dg.b", &[("Nats-Rollup", "bogus")], "six"),
        (
            "$JS.API.STREAM.CREATE.NR",
            &[],
            r#"{"name":"NR","storage":"memory","allow_rollup_hdrs":true,"deny_purge":true}"#,
        ),
        ("$JS.API.STREAM.DELETE.DG", &[], ""),
    ];
    for (subject, pairs, body) in steps {
        let mut answers = Vec::new();
        for client in [&tern, &ns] {
            let msg = client
                .request_with_headers(subject.to_string(), headers(pairs), body.to_string().into())
                .await
                .unwrap_or_else(|e| panic!("{subject}: {e}"));
            answers.push(match serde_json::from_slice::<Value>(&msg.payload) {
                Ok(mut json) => {
                    normalise(&mut json);
                    json.to_string()
                }
                Err(_) => raw_reply(&msg),
            });
        }
        assert_eq!(answers[0], answers[1], "{subject} {pairs:?} {body}");
    }
    // Without the stream, or without allow_direct: no responders, from both.
    for client in [&tern, &ns] {
        let err = client
            .request("$JS.API.DIRECT.GET.DG", r#"{"seq":1}"#.into())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    }
}

#[tokio::test]
async fn async_nats_key_value_without_watchers() {
    use async_nats::jetstream::{self, kv, stream::StorageType};

    let scratch = Scratch::new("js-kv");
    let (_tern, addr) = start_js_server(&scratch.nats_server(), &scratch.0);
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client);
    let kv = js
        .create_key_value(kv::Config {
            bucket: "settings".into(),
            history: 3,
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let first = kv.put("color", "red".into()).await.unwrap();
    let second = kv.put("color", "blue".into()).await.unwrap();
    assert_eq!(kv.get("color").await.unwrap().unwrap(), "blue");
    let entry = kv.entry("color").await.unwrap().unwrap();
    assert_eq!(entry.revision, second);
    assert_eq!(
        kv.entry_for_revision("color", first)
            .await
            .unwrap()
            .unwrap()
            .value,
        "red"
    );
    // update needs the current revision; create needs the key to be absent.
    assert!(kv.update("color", "green".into(), first).await.is_err());
    let third = kv.update("color", "green".into(), second).await.unwrap();
    assert!(kv.create("color", "x".into()).await.is_err());
    assert!(kv.create("size", "large".into()).await.is_ok());
    // Deleted keys read as absent, and can be created again.
    kv.delete("color").await.unwrap();
    assert!(kv.get("color").await.unwrap().is_none());
    assert!(kv.create("color", "white".into()).await.unwrap() > third);
    // Purge keeps only the marker.
    kv.purge("size").await.unwrap();
    assert!(kv.get("size").await.unwrap().is_none());
    let status = kv.status().await.unwrap();
    assert_eq!(status.history(), 3);
    assert!(js.get_key_value("nope").await.is_err());
}

#[tokio::test]
async fn only_accounts_with_jetstream_enabled_have_it() {
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-accounts");
    let mut answers = Vec::new();
    for (name, binary) in [("tern", scratch.nats_server()), ("ref", reference)] {
        let accounts = "accounts {\n  A { jetstream: enabled, users: [{user: a, password: a}] }\n  B { users: [{user: b, password: b}] }\n}";
        let (process, addr, _) = start_js_server_with(&binary, &scratch.0.join(name), accounts);
        let mut seen = Vec::new();
        for user in ["a", "b"] {
            let client =
                async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
                    .connect(&addr)
                    .await
                    .unwrap();
            for (subject, body) in [
                ("$JS.API.INFO", ""),
                ("$JS.API.STREAM.NAMES", ""),
                (
                    "$JS.API.STREAM.CREATE.S",
                    r#"{"name":"S","storage":"memory"}"#,
                ),
            ] {
                seen.push(call(&client, subject, body).await);
            }
        }
        answers.push(seen);
        drop(process);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][3]["error"]["err_code"], 10039);
}

#[tokio::test]
async fn system_events_say_jetstream_is_on() {
    let scratch = Scratch::new("js-sys");
    let system = "accounts { SYS { users: [{user: s, password: s}] } }\nsystem_account: SYS";
    let (_process, addr, _) = start_js_server_with(&scratch.nats_server(), &scratch.0, system);
    let client = async_nats::ConnectOptions::with_user_and_password("s".into(), "s".into())
        .connect(&addr)
        .await
        .unwrap();
    let msg = client
        .request("$SYS.REQ.SERVER.PING.VARZ", "".into())
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(json["server"]["jetstream"], true, "{json}");
}

/// `jetstream { domain: hub }`: the start-up line, INFO, the API under `$JS.hub.API.>`, the
/// PubAck and account info naming the domain, `/varz`, and an async-nats context bound to the
/// domain, side by side with nats-server 2.15.1; and the same refusal of a domain that cannot
/// go into a subject.
#[tokio::test]
async fn domain_side_by_side_with_nats_server() {
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-domain");
    let start = |binary: &Path, name: &str| {
        let dir = scratch.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("js.conf");
        let store = dir.join("store");
        std::fs::write(
            &config,
            format!(
                "jetstream {{ store_dir: '{}', domain: hub }}\n",
                store.display()
            ),
        )
        .unwrap();
        let log = dir.join("server.log");
        let (process, text) = Process::start(
            Command::new(binary)
                .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-l"])
                .arg(&log)
                .arg("-c")
                .arg(&config),
            &log,
        );
        let port = listening_port(&text).expect("listening line");
        let monitor = common::process::monitor_addr(&text).expect("monitor line");
        (process, text, port, monitor)
    };
    let (_tern, tern_log, tern_port, tern_monitor) = start(&scratch.nats_server(), "tern");
    let (_ns, ns_log, ns_port, ns_monitor) = start(&reference, "ref");

    let lines = |log: &str, name: &str| -> Vec<String> {
        jetstream_lines(log)
            .into_iter()
            .map(|l| l.replace(&scratch.0.join(name).display().to_string(), "DIR"))
            .map(|l| l.replace("API Level:       0", "API Level:       N"))
            .map(|l| l.replace("API Level:       5", "API Level:       N"))
            .collect()
    };
    let tern_lines = lines(&tern_log, "tern");
    assert!(tern_lines.contains(&"  Domain:          hub".to_string()));
    assert_eq!(tern_lines, lines(&ns_log, "ref"));

    let mut answers = Vec::new();
    for (port, monitor) in [(tern_port, &tern_monitor), (ns_port, &ns_monitor)] {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let info = read_line(&mut BufReader::new(stream));
        assert!(
            info.contains(r#""client_ip":"127.0.0.1","domain":"hub""#),
            "{info}"
        );

        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let account = call(&client, "$JS.hub.API.INFO", "").await;
        assert_eq!(account["domain"], "hub", "{account}");
        let created = call(
            &client,
            "$JS.hub.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
        )
        .await;
        assert!(created.get("error").is_none(), "{created}");
        let mut acks = Vec::new();
        for id in ["1", "1", ""] {
            let mut headers = async_nats::HeaderMap::new();
            if !id.is_empty() {
                headers.insert("Nats-Msg-Id", id);
            }
            let msg = client
                .request_with_headers("s.x", headers, "hello".into())
                .await
                .unwrap();
            acks.push(String::from_utf8_lossy(&msg.payload).into_owned());
        }
        // A refused publish names no domain, as nats-server's.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Stream", "T");
        let refused = client
            .request_with_headers("s.x", headers, "x".into())
            .await
            .unwrap();
        acks.push(String::from_utf8_lossy(&refused.payload).into_owned());

        // A client bound to the domain.
        let js = async_nats::jetstream::with_domain(client.clone(), "hub");
        let ack = js
            .publish("s.y", "bound".into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!((ack.sequence, ack.domain.as_str()), (3, "hub"));
        let info = js.get_stream("S").await.unwrap().cached_info().clone();
        assert_eq!(info.state.messages, 3);

        let (_, varz) = common::process::http_get(monitor, "/varz").unwrap();
        let varz: Value = serde_json::from_str(&varz).unwrap();
        assert_eq!(varz["jetstream"]["config"]["domain"], "hub", "{varz}");
        answers.push((account, acks));
    }
    let (tern_answers, ns_answers) = (&answers[0], &answers[1]);
    assert_eq!(
        tern_answers.1[0],
        r#"{"stream":"S","domain":"hub","seq":1}"#
    );
    assert_eq!(tern_answers.1, ns_answers.1);
    assert_eq!(tern_answers.0, ns_answers.0);

    // A domain that cannot go into a subject.
    let config = scratch.0.join("bad.conf");
    std::fs::write(&config, "jetstream { domain: \"a.b\" }\n").unwrap();
    for binary in [scratch.nats_server(), reference.clone()] {
        let out = run(&binary, &["-p", "-1", "-c", config.to_str().unwrap()]);
        assert_ne!(out.status.code(), Some(0));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            said.contains("invalid domain name: may not contain ., * or >"),
            "{binary:?}: {said}"
        );
    }
}
