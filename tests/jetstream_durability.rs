//! The durability promise, tested the hard way: tern runs as a real process on a store
//! directory, several clients publish with acknowledgements while a durable pull consumer
//! reads and acknowledges, and the process is killed with SIGKILL at a random moment; then it
//! is restarted on the same directory, and every acknowledged message must be there, byte for
//! byte and in order, and the consumer must carry on without skipping one (it may deliver a
//! message again, never lose one).
//!
//! The number of kill/restart rounds is `TERN_DURABILITY_LOOPS` (3 by default, so that
//! `cargo test` stays quick; run it with e.g. `TERN_DURABILITY_LOOPS=50 cargo test --release
//! --test jetstream_durability` for a longer soak).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, context::Publish, stream};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use common::process::{listening_port, Process, Scratch};

const LOOPS_VAR: &str = "TERN_DURABILITY_LOOPS";
const PUBLISHERS: usize = 4;
/// Publishes each publisher keeps in flight.
const WINDOW: usize = 16;
const STREAM: &str = "DURABLE";
const CONSUMER: &str = "reader";
const ACK_WAIT: Duration = Duration::from_secs(1);

/// What a publisher sent: its subject, the optional `X-N` header and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    subject: String,
    header: Option<String>,
    payload: Vec<u8>,
}

/// The message publisher `client` sends `n`-th in `round`: the payload names all three (so
/// that order and uniqueness can be checked from the stream alone) and is padded to a size
/// between 0 and 2 KiB that depends on them.
fn message(round: usize, client: usize, n: u64) -> Sent {
    let mut payload = format!("r{round}-c{client}-n{n}-").into_bytes();
    let pad = (n as usize * 7919 + client * 104_729 + round * 31) % 2048;
    payload.extend((0..pad).map(|i| b'a' + ((i + n as usize) % 26) as u8));
    Sent {
        subject: format!("dur.{client}"),
        header: (n % 3 == 0).then(|| format!("{round}/{client}/{n}")),
        payload,
    }
}

/// (round, client, n) from a payload `message` made.
fn origin(payload: &[u8]) -> Option<(usize, usize, u64)> {
    let text = std::str::from_utf8(payload.get(..payload.len().min(40))?).ok()?;
    let mut parts = text.split('-');
    let round = parts.next()?.strip_prefix('r')?.parse().ok()?;
    let client = parts.next()?.strip_prefix('c')?.parse().ok()?;
    let n = parts.next()?.strip_prefix('n')?.parse().ok()?;
    Some((round, client, n))
}

fn start(store: &Path, log: &Path) -> (Process, String) {
    let (process, text) = Process::start(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-l"])
            .arg(log)
            .arg("-sd")
            .arg(store),
        log,
    );
    let port = listening_port(&text).expect("listening line");
    (process, format!("127.0.0.1:{port}"))
}

/// Shared between the load tasks of one round and the test.
#[derive(Default)]
struct Round {
    /// Publishes acknowledged: seq -> what was sent.
    acked: Mutex<Vec<(u64, Sent)>>,
    /// Stream sequences the consumer received.
    delivered: Mutex<Vec<u64>>,
    /// Stream sequences whose acknowledgement was sent (the server may have taken it even
    /// when its confirmation did not come back before the kill).
    attempted: Mutex<Vec<u64>>,
    /// Stream sequences whose acknowledgement the server confirmed (double ack).
    confirmed: Mutex<Vec<u64>>,
}

async fn publisher(js: jetstream::Context, round: usize, client: usize, out: Arc<Round>) {
    let mut in_flight = FuturesUnordered::new();
    for n in 0u64.. {
        let sent = message(round, client, n);
        let mut publish = Publish::build().payload(sent.payload.clone().into());
        if let Some(value) = &sent.header {
            publish = publish.header("X-N", value.as_str());
        }
        let Ok(ack) = js.send_publish(sent.subject.clone(), publish).await else {
            return;
        };
        in_flight.push(async move { (ack.await, sent) });
        while in_flight.len() >= WINDOW {
            match in_flight.next().await {
                Some((Ok(ack), sent)) => {
                    assert!(!ack.duplicate);
                    out.acked.lock().unwrap().push((ack.sequence, sent));
                }
                _ => return,
            }
        }
    }
}

/// Fetches and acknowledges; one message in ten is left unacknowledged (it must come back
/// after `ACK_WAIT`).
async fn reader(consumer: jetstream::consumer::PullConsumer, out: Arc<Round>) {
    loop {
        let Ok(mut batch) = consumer
            .fetch()
            .max_messages(64)
            .expires(Duration::from_millis(500))
            .messages()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while let Some(Ok(msg)) = batch.next().await {
            let Ok(info) = msg.info() else { continue };
            let seq = info.stream_sequence;
            out.delivered.lock().unwrap().push(seq);
            if fastrand::u8(..10) == 0 {
                continue;
            }
            out.attempted.lock().unwrap().push(seq);
            // One in four waits for the server to confirm (a double ack), so that it can be
            // checked never to come back; the others are plain acks, quicker.
            if fastrand::u8(..4) == 0 {
                if msg.double_ack().await.is_ok() {
                    out.confirmed.lock().unwrap().push(seq);
                }
            } else if msg.ack().await.is_err() {
                return;
            }
        }
    }
}

/// Reads every message of the stream and checks it against what was acknowledged: each
/// acknowledged sequence holds exactly what was sent; nothing is stored twice; each
/// publisher's messages are in the order it sent them.
async fn verify_stream(
    js: &jetstream::Context,
    acked: &BTreeMap<u64, Sent>,
) -> BTreeMap<u64, Sent> {
    let mut stream = js.get_stream(STREAM).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let last = acked.keys().next_back().copied().unwrap_or(0);
    assert!(
        info.state.last_sequence >= last,
        "last sequence {} < last acknowledged {last}",
        info.state.last_sequence
    );
    assert_eq!(
        info.state.messages, info.state.last_sequence,
        "nothing is removed from this stream"
    );
    let reads = futures::stream::iter(1..=info.state.last_sequence)
        .map(|seq| {
            let stream = stream.clone();
            async move { (seq, stream.get_raw_message(seq).await) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let mut stored = BTreeMap::new();
    for (seq, read) in reads {
        let msg = read.unwrap_or_else(|e| panic!("sequence {seq} unreadable: {e}"));
        let header = msg.headers.get("X-N").map(|v| v.as_str().to_string());
        stored.insert(
            seq,
            Sent {
                subject: msg.subject.to_string(),
                header,
                payload: msg.payload.to_vec(),
            },
        );
    }
    for (seq, sent) in acked {
        let got = stored
            .get(seq)
            .unwrap_or_else(|| panic!("acked {seq} lost"));
        assert_eq!(got, sent, "acknowledged sequence {seq} differs");
    }
    let mut seen = BTreeSet::new();
    let mut last_of: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for (seq, msg) in &stored {
        let (round, client, n) = origin(&msg.payload).expect("a payload the test sent");
        assert_eq!(msg, &message(round, client, n), "sequence {seq} garbled");
        assert!(seen.insert((round, client, n)), "stored twice: {seq}");
        if let Some(before) = last_of.insert((round, client), n) {
            assert!(before < n, "publisher {client} out of order at {seq}");
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_kill_9() {
    let loops: usize = std::env::var(LOOPS_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let scratch = Scratch::new("js-durability");
    let store = scratch.0.join("store");
    let mut acked: BTreeMap<u64, Sent> = BTreeMap::new();
    let mut confirmed: BTreeSet<u64> = BTreeSet::new();
    let mut attempted: BTreeSet<u64> = BTreeSet::new();
    for round in 0..=loops {
        let log = scratch.0.join(format!("{round}.log"));
        let (mut server, addr) = start(&store, &log);
        let client = async_nats::connect(&addr).await.unwrap();
        let js = jetstream::new(client);
        if round == 0 {
            js.create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["dur.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        } else {
            let text = std::fs::read_to_string(&log).unwrap();
            assert!(text.contains(&format!("for stream '{STREAM}'")), "{text}");
        }
        let stored = verify_stream(&js, &acked).await;
        let stream = js.get_stream(STREAM).await.unwrap();
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .unwrap();

        if round == loops {
            drain(consumer, &stored, &confirmed, &mut attempted).await;
            break;
        }

        let state = Arc::new(Round::default());
        let mut tasks = Vec::new();
        for c in 0..PUBLISHERS {
            let client = async_nats::connect(&addr).await.unwrap();
            tasks.push(tokio::spawn(publisher(
                jetstream::new(client),
                round,
                c,
                state.clone(),
            )));
        }
        tasks.push(tokio::spawn(reader(consumer, state.clone())));
        tokio::time::sleep(Duration::from_millis(fastrand::u64(150..700))).await;
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }

        // What the consumer had confirmed before this round is never delivered again.
        let delivered = state.delivered.lock().unwrap().clone();
        let again: Vec<_> = delivered.iter().filter(|s| confirmed.contains(s)).collect();
        assert!(
            again.is_empty(),
            "acknowledged and delivered again: {again:?}"
        );
        let round_acked = std::mem::take(&mut *state.acked.lock().unwrap());
        eprintln!(
            "round {round}: {} publishes acknowledged, {} deliveries, killed",
            round_acked.len(),
            delivered.len()
        );
        for (seq, sent) in round_acked {
            assert!(
                acked.insert(seq, sent).is_none(),
                "sequence {seq} acked twice"
            );
        }
        confirmed.extend(state.confirmed.lock().unwrap().iter().copied());
        attempted.extend(state.attempted.lock().unwrap().iter().copied());
    }
    assert!(!acked.is_empty(), "nothing was acknowledged");
}

/// Reads the consumer to the end: every message in the stream must reach it and be
/// acknowledged at last (nothing skipped: a message whose acknowledgement was never sent must
/// come back), and nothing whose acknowledgement was confirmed before comes back.
async fn drain(
    consumer: jetstream::consumer::PullConsumer,
    stored: &BTreeMap<u64, Sent>,
    confirmed: &BTreeSet<u64>,
    attempted: &mut BTreeSet<u64>,
) {
    let deadline = Instant::now() + Duration::from_secs(30 + stored.len() as u64 / 500);
    while stored.keys().any(|seq| !attempted.contains(seq)) {
        assert!(
            Instant::now() < deadline,
            "skipped: never delivered, or never acknowledged and not delivered again: {:?}",
            stored
                .keys()
                .filter(|s| !attempted.contains(s))
                .take(20)
                .collect::<Vec<_>>()
        );
        let mut batch = consumer
            .fetch()
            .max_messages(256)
            .expires(ACK_WAIT)
            .messages()
            .await
            .unwrap();
        while let Some(msg) = batch.next().await {
            let msg = msg.unwrap();
            let seq = msg.info().unwrap().stream_sequence;
            assert!(!confirmed.contains(&seq), "{seq} was acknowledged before");
            assert_eq!(
                msg.payload.as_ref(),
                stored[&seq].payload.as_slice(),
                "delivered {seq} differs from the stream"
            );
            msg.ack().await.unwrap();
            attempted.insert(seq);
        }
    }
}

/// The `[FTL]` line a server printed on its standard error, without the prefix.
fn fatal_line(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find_map(|l| l.split_once("[FTL] ").map(|(_, rest)| rest.to_string()));
    line.unwrap_or_else(|| panic!("no [FTL] line in {text}"))
}

#[test]
fn an_unusable_store_directory_is_refused_as_nats_server_refuses_it() {
    let reference = common::process::reference_server();
    let scratch = Scratch::new("js-bad-store");
    let file = scratch.0.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let under_file = file.join("store");
    // sysfs refuses new directories, even to root.
    for dir in [Path::new("/sys/tern-store"), under_file.as_path()] {
        let sd = dir.to_str().unwrap();
        let args = ["-a", "127.0.0.1", "-p", "-1", "-js", "-sd", sd];
        let tern = common::process::run(Path::new(env!("CARGO_BIN_EXE_tern")), &args);
        assert_eq!(tern.status.code(), Some(1), "{tern:?}");
        let line = fatal_line(&tern);
        assert!(line.starts_with("Can't start JetStream: "), "{line}");
        if let Some(reference) = &reference {
            let ns = common::process::run(reference, &args);
            assert_eq!(ns.status.code(), Some(1));
            assert_eq!(line, fatal_line(&ns), "store directory {sd}");
        }
    }
}

/// Publishes `payload` to `subject` with a reply and returns the PubAck JSON.
async fn publish_raw(
    client: &async_nats::Client,
    subject: &str,
    payload: &[u8],
) -> serde_json::Value {
    let reply = client
        .request(subject.to_string(), payload.to_vec().into())
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// A write that fails under a running server (here the file size limit, `ulimit -f`, which
/// even root is held to): the publisher gets JetStream's store failure (503, 10077) with the
/// system's reason, the server stays up, and after a restart every acknowledged message is
/// there and publishing works again.
#[tokio::test]
async fn a_failed_write_gets_the_publisher_an_error_and_loses_nothing() {
    let scratch = Scratch::new("js-write-fail");
    let store = scratch.0.join("store");
    let log = scratch.0.join("limited.log");
    // SIGXFSZ ignored (kept across exec), so that a write past the limit fails with EFBIG.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 256; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_tern"))
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-l"])
        .arg(&log)
        .arg("-sd")
        .arg(&store);
    let (mut server, text) = Process::start(&mut command, &log);
    let addr = format!("127.0.0.1:{}", listening_port(&text).unwrap());
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "FULL".into(),
        subjects: vec!["full.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let payload = vec![b'f'; 1000];
    let mut acked = 0;
    let failure = loop {
        let ack = publish_raw(&client, "full.x", &payload).await;
        match ack.get("error") {
            None => {
                acked += 1;
                assert_eq!(ack["seq"], acked);
            }
            Some(error) => break error.clone(),
        }
        assert!(acked < 10_000, "the file size limit never hit");
    };
    assert!(acked > 10, "{acked}");
    assert_eq!(failure["code"], 503, "{failure}");
    assert_eq!(failure["err_code"], 10077, "{failure}");
    let description = failure["description"].as_str().unwrap();
    assert!(
        description.starts_with("write ") && description.ends_with("msgs.log: file too large"),
        "{description}"
    );
    // Still up, still refusing cleanly; nothing half written is left behind.
    let again = publish_raw(&client, "full.x", &payload).await;
    assert_eq!(again["error"]["err_code"], 10077, "{again}");
    let info = js
        .get_stream("FULL")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, acked);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("[ERR] Filestore [FULL] Critical write error: write "),
        "{text}"
    );

    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let (_server, addr) = start(&store, &scratch.0.join("after.log"));
    let client = async_nats::connect(&addr).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("FULL").await.unwrap();
    for seq in 1..=acked {
        let msg = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(msg.payload.as_ref(), payload.as_slice(), "{seq}");
    }
    let ack = publish_raw(&client, "full.x", b"room again").await;
    assert_eq!(ack["seq"], acked + 1, "{ack}");
}

/// State files damaged while the server was down: a torn tail on a stream's log is cut, a
/// consumer or stream whose file does not parse is left out with nats-server's warning, and
/// everything else comes back.
#[tokio::test]
async fn damaged_files_are_cut_or_left_out_with_a_warning() {
    let scratch = Scratch::new("js-damaged");
    let store = scratch.0.join("store");
    let (mut server, addr) = start(&store, &scratch.0.join("1.log"));
    let js = jetstream::new(async_nats::connect(&addr).await.unwrap());
    for name in ["KEPT", "BROKEN"] {
        let stream = js
            .create_stream(stream::Config {
                name: name.into(),
                subjects: vec![format!("{name}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
        for durable in ["whole", "torn"] {
            stream
                .create_consumer(pull::Config {
                    durable_name: Some(durable.into()),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        for n in 0..3 {
            js.publish(format!("{name}.x"), format!("m{n}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let streams = store.join("jetstream/$G/streams");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(streams.join("KEPT/msgs.log"))
        .unwrap();
    std::io::Write::write_all(&mut log, &[9, 0, 0]).unwrap();
    let torn = streams.join("KEPT/obs/torn.json");
    let json = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &json[..json.len() / 2]).unwrap();
    std::fs::write(streams.join("BROKEN/meta.json"), b"{\"created\":").unwrap();

    let log = scratch.0.join("2.log");
    let (_server, addr) = start(&store, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    for warning in [
        "[WRN] Filestore [KEPT] cut 3 bytes of a torn or corrupt record off the end of its log"
            .to_string(),
        format!(
            "[WRN]     Error unmarshalling consumer metafile {:?}: ",
            torn.display().to_string()
        ),
        format!(
            "[WRN]   Error unmarshalling stream metafile {:?}: ",
            streams.join("BROKEN/meta.json").display().to_string()
        ),
    ] {
        assert!(text.contains(&warning), "no {warning:?} in\n{text}");
    }
    let js = jetstream::new(async_nats::connect(&addr).await.unwrap());
    let mut kept = js.get_stream("KEPT").await.unwrap();
    assert_eq!(kept.info().await.unwrap().state.messages, 3);
    assert_eq!(
        kept.get_raw_message(3).await.unwrap().payload.as_ref(),
        b"m2"
    );
    assert!(kept.consumer_info("whole").await.is_ok());
    assert!(kept.consumer_info("torn").await.is_err());
    assert!(js.get_stream("BROKEN").await.is_err());
}

/// The same kill at a random moment on a stream that keeps only its last 200 messages: every
/// publish removes one, so the log is compacted again and again while the clients publish,
/// and some kills land during a compaction. After each restart the stream holds exactly its
/// last 200 messages, each acknowledged one byte for byte, and the log has stayed small.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_the_log_is_compacted() {
    const KEEP: u64 = 200;
    let scratch = Scratch::new("js-compact-kill");
    let store = scratch.0.join("store");
    let mut acked: BTreeMap<u64, Sent> = BTreeMap::new();
    let rounds = 3;
    for round in 0..=rounds {
        let (mut server, addr) = start(&store, &scratch.0.join(format!("{round}.log")));
        let js = jetstream::new(async_nats::connect(&addr).await.unwrap());
        if round == 0 {
            js.create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["dur.>".into()],
                max_messages: KEEP as i64,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let mut stream = js.get_stream(STREAM).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        assert_eq!(state.messages, state.last_sequence.min(KEEP));
        if state.last_sequence > 0 {
            let first = state.last_sequence.saturating_sub(KEEP) + 1;
            assert_eq!(state.first_sequence, first);
        }
        for (seq, sent) in acked.range(state.first_sequence..) {
            let msg = stream.get_raw_message(*seq).await.unwrap();
            assert_eq!(msg.payload.as_ref(), sent.payload.as_slice(), "{seq}");
            assert_eq!(msg.subject.as_str(), sent.subject, "{seq}");
        }
        let log = store.join(format!("jetstream/$G/streams/{STREAM}/msgs.log"));
        let len = std::fs::metadata(&log).map_or(0, |m| m.len());
        assert!(len < 8 << 20, "the log grew to {len} bytes");
        if round == rounds {
            break;
        }
        let out = Arc::new(Round::default());
        let mut tasks = Vec::new();
        for c in 0..2 {
            let client = async_nats::connect(&addr).await.unwrap();
            let js = jetstream::new(client);
            tasks.push(tokio::spawn(publisher(js, round, c, out.clone())));
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..900))).await;
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let round_acked = std::mem::take(&mut *out.acked.lock().unwrap());
        eprintln!(
            "round {round}: {} acknowledged, log {len} bytes",
            round_acked.len()
        );
        acked.extend(round_acked);
    }
}
