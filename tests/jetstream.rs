//! JetStream: enabling it as nats-server 2.15.1 does (flags, the `jetstream` block, the start-up
//! lines harnesses parse, INFO), side by side with the reference server.

mod common;

use std::io::BufReader;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use common::process::{
    json_shape, listening_port, read_line, reference_server, run, start_with_ports, Process,
    Scratch, WAIT,
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

/// Starts `binary` with JetStream (its store under `dir`) on random ports; returns the process
/// and its client address.
fn start_js_server(binary: &Path, dir: &Path) -> (Process, String) {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("js.conf");
    std::fs::write(
        &config,
        format!(
            "jetstream {{ store_dir: '{}' }}\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    let (process, addr, _) = start_with_ports(binary, &config, &dir.join("ports"));
    (process, addr)
}

/// A request's response as JSON, with what differs between two servers or two runs by nature
/// (times, the server's name, its version metadata and API level) replaced by its type.
async fn call(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let msg = client
        .request(subject.to_string(), body.to_string().into())
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    let mut value: Value = serde_json::from_slice(&msg.payload).unwrap();
    normalise(&mut value);
    value
}

fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match key.as_str() {
                    "created" | "ts" | "first_ts" | "last_ts" | "time" | "leader"
                    | "_nats.level" | "_nats.ver" | "level" => {
                        *item = Value::String(format!("<{}>", kind(item)));
                    }
                    _ => normalise(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
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
    ("$JS.API.STREAM.PURGE.S", ""),
    ("$JS.API.STREAM.PURGE.X", ""),
    ("$JS.API.STREAM.INFO.S", ""),
    ("$JS.API.STREAM.DELETE.S", ""),
    ("$JS.API.STREAM.DELETE.S", ""),
    ("$JS.API.STREAM.DELETE.L", ""),
    (
        "$JS.API.STREAM.CREATE.DP",
        r#"{"name":"DP","storage":"memory","deny_purge":true,"max_msg_size":3}"#,
    ),
    ("DP", "12345"),
    ("DP", "123"),
    ("$JS.API.STREAM.PURGE.DP", ""),
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
    ("$JS.API.STREAM.INFO.H", &[], ""),
    ("$JS.API.STREAM.DELETE.H", &[], ""),
];

#[tokio::test]
async fn stream_api_side_by_side_with_nats_server() {
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-api");
    let (_tern, tern_addr) = start_js_server(&scratch.nats_server(), &scratch.0.join("tern"));
    let (_ns, ns_addr) = start_js_server(&reference, &scratch.0.join("ref"));
    let tern = async_nats::connect(&tern_addr).await.unwrap();
    let ns = async_nats::connect(&ns_addr).await.unwrap();
    for (subject, body) in CALLS {
        let (ours, theirs) = (
            call(&tern, subject, body).await,
            call(&ns, subject, body).await,
        );
        assert_eq!(
            json_shape(&ours),
            json_shape(&theirs),
            "{subject} {body}:\ntern {ours}\nnats-server {theirs}"
        );
        assert_eq!(ours, theirs, "{subject} {body}");
    }
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
