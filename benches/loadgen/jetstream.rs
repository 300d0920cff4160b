//! The JetStream scenarios, on the raw protocol: publishing with acknowledgements (one at a
//! time, and 256 in flight), pull consumers with explicit acks, key-value put and get
//! latency, and how long a stream of many messages takes to come back after `kill -9`.
//!
//! Every request is built by hand: a JSON body published to a `$JS.API.*` subject with a
//! reply inbox, the answer checked for an `error`. Both servers run with `-js` on a fresh
//! store directory and their default `sync_interval` (2 minutes: a PubAck follows the
//! `write(2)`, not an fsync).

use crate::wire::Conn;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::scenarios::{io, metric, size_name, Better, Metric, Outcome, Scale, Scenario};
use crate::server::Server;
use crate::wire::{barrier, connect, numbers, Frame, Publisher, Reader};

/// The stream every scenario publishes to, and its one subject.
const STREAM: &str = "BENCH";
const SUBJECT: &str = "js.bench";

/// Publishes the pipelined publisher keeps unacknowledged at most, and how many it sends at
/// once when it tops the window up.
const IN_FLIGHT: usize = 256;
const TOP_UP: usize = 32;

/// How long a restarted server may take to have its stream back.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// The JetStream scenarios, in table order.
pub fn all(scale: Scale) -> Vec<Scenario> {
    let mut list = Vec::new();
    for storage in ["file", "memory"] {
        for size in [16usize, 1024] {
            for window in [1, IN_FLIGHT] {
                let how = match window {
                    1 => "1 at a time".to_string(),
                    n => format!("{n} in flight"),
                };
                list.push(js_scenario(
                    format!("js publish {}, {storage}, {how}", size_name(size)),
                    move |s, scale| publish(s, scale, storage, size, window),
                ));
            }
        }
    }
    for storage in ["file", "memory"] {
        list.push(js_scenario(
            format!("js pull consume 16 B, {storage}, batch 100, explicit acks"),
            move |s, scale| pull_consume(s, scale, storage),
        ));
    }
    list.push(js_scenario("js kv put and get 16 B, file", kv_latency));
    let n = scale.pick(RECOVERY_QUICK, RECOVERY_FULL);
    list.push(js_scenario(
        format!("js recovery after kill -9, {} messages of 16 B, file", n),
        recovery,
    ));
    list
}

const RECOVERY_QUICK: usize = 100_000;
const RECOVERY_FULL: usize = 1_000_000;

fn js_scenario(
    name: impl Into<String>,
    run: impl Fn(&Server, Scale) -> Outcome + Send + Sync + 'static,
) -> Scenario {
    Scenario {
        jetstream: true,
        ..crate::scenarios::scenario(name, run)
    }
}

/// A connection for API requests, answered one at a time on its own inbox.
struct Api {
    conn: Conn,
    reader: Reader,
    next: u64,
}

impl Api {
    fn connect(port: u16) -> Result<Api, String> {
        let mut conn = connect(port).map_err(io)?;
        conn.write_all(b"SUB _INBOX.api.* 1\r\n").map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        let reader = Reader::new(conn.try_clone().map_err(io)?);
        Ok(Api {
            conn,
            reader,
            next: 0,
        })
    }

    /// Sends `body` to `subject` and returns the JSON answer, or its `error` as an error.
    fn request(&mut self, subject: &str, body: &str) -> Result<Value, String> {
        self.next += 1;
        let frame = format!(
            "PUB {subject} _INBOX.api.{} {}\r\n{body}\r\n",
            self.next,
            body.len()
        );
        self.conn.write_all(frame.as_bytes()).map_err(io)?;
        loop {
            if let Frame::Msg { payload, .. } = self.reader.next().map_err(io)? {
                let answer: Value = serde_json::from_slice(payload)
                    .map_err(|e| format!("{subject}: answer is not JSON: {e}"))?;
                if let Some(error) = answer.get("error") {
                    return Err(format!("{subject}: {error}"));
                }
                return Ok(answer);
            }
        }
    }

    /// Creates the stream `STREAM` on `subjects` with `storage` and the `extra` fields.
    fn create_stream(&mut self, storage: &str, subjects: &str, extra: &str) -> Result<(), String> {
        let body = format!(
            r#"{{"name":"{STREAM}","subjects":[{subjects}],"storage":"{storage}"{extra}}}"#
        );
        self.request(&format!("$JS.API.STREAM.CREATE.{STREAM}"), &body)
            .map(drop)
    }

    /// How many messages the stream holds.
    fn stream_messages(&mut self) -> Result<u64, String> {
        let info = self.request(&format!("$JS.API.STREAM.INFO.{STREAM}"), "")?;
        info.pointer("/state/messages")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("stream info without state.messages: {info}"))
    }
}

/// A connection that publishes to `SUBJECT` with the reply `bench.ack` and reads the acks.
struct AckedPublisher {
    conn: Conn,
    reader: Reader,
    publisher: Publisher,
    /// The sequence the next ack must carry.
    next_seq: u64,
}

impl AckedPublisher {
    fn connect(port: u16, size: usize) -> Result<AckedPublisher, String> {
        let mut conn = connect(port).map_err(io)?;
        conn.write_all(b"SUB bench.ack 1\r\n").map_err(io)?;
        barrier(&mut conn).map_err(io)?;
        let reader = Reader::new(conn.try_clone().map_err(io)?);
        Ok(AckedPublisher {
            conn,
            reader,
            publisher: Publisher::new(0, SUBJECT, Some("bench.ack"), size),
            next_seq: 1,
        })
    }

    /// Waits for the next ack, which must be the stream's next sequence.
    fn ack(&mut self) -> Result<(), String> {
        loop {
            if let Frame::Msg { payload, .. } = self.reader.next().map_err(io)? {
                let seq = ack_seq(payload)?;
                if seq != self.next_seq {
                    return Err(format!(
                        "ack for sequence {seq}, expected {} (lost or reordered)",
                        self.next_seq
                    ));
                }
                self.next_seq += 1;
                return Ok(());
            }
        }
    }

    /// Publishes `count` messages, each after the previous one's ack; returns each round trip.
    fn one_at_a_time(&mut self, count: usize) -> Result<Vec<Duration>, String> {
        let mut rtts = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            self.publisher.send(&mut self.conn, 1).map_err(io)?;
            self.ack()?;
            rtts.push(start.elapsed());
        }
        Ok(rtts)
    }

    /// Publishes `count` messages keeping up to `IN_FLIGHT` unacknowledged.
    fn pipelined(&mut self, count: usize) -> Result<(), String> {
        let mut sent = IN_FLIGHT.min(count);
        self.publisher.send(&mut self.conn, sent).map_err(io)?;
        for acked in 1..=count {
            self.ack()?;
            if sent < count && sent - acked <= IN_FLIGHT - TOP_UP {
                let more = TOP_UP.min(count - sent);
                self.publisher.send(&mut self.conn, more).map_err(io)?;
                sent += more;
            }
        }
        Ok(())
    }
}

/// The sequence of a PubAck (`{"stream":"S","seq":N}`), or its error.
fn ack_seq(payload: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(payload);
    if text.contains("\"error\"") {
        return Err(format!("publish refused: {text}"));
    }
    let digits = text
        .split_once("\"seq\":")
        .map(|(_, rest)| rest.trim_start())
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
        })
        .unwrap_or("");
    digits.parse().map_err(|_| format!("not a PubAck: {text}"))
}

fn publish(server: &Server, scale: Scale, storage: &str, size: usize, window: usize) -> Outcome {
    Api::connect(server.port)?.create_stream(storage, &format!("\"{SUBJECT}\""), "")?;
    let mut publisher = AckedPublisher::connect(server.port, size)?;
    if window == 1 {
        let count = scale.pick(5_000, 50_000);
        let rtts = publisher.one_at_a_time(count)?;
        let elapsed: Duration = rtts.iter().sum();
        let mut metrics = vec![rate(count, elapsed)];
        metrics.extend(percentiles("ack", rtts));
        return Ok(metrics);
    }
    let count = match size {
        s if s >= 1024 => scale.pick(50_000, 200_000),
        _ => scale.pick(100_000, 500_000),
    };
    let start = Instant::now();
    publisher.pipelined(count)?;
    Ok(vec![rate(count, start.elapsed())])
}

fn rate(count: usize, elapsed: Duration) -> Metric {
    metric(
        "msgs/s",
        count as f64 / elapsed.as_secs_f64().max(1e-9),
        "msg/s",
        Better::Higher,
    )
}

/// `<what> p50` and `<what> p99` of `rtts`, in microseconds.
fn percentiles(what: &str, mut rtts: Vec<Duration>) -> Vec<Metric> {
    rtts.sort_unstable();
    let at = |q: f64| {
        let i = ((rtts.len() as f64 * q) as usize).min(rtts.len().saturating_sub(1));
        rtts.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    vec![
        metric(format!("{what} p50"), at(0.50), "µs", Better::Lower),
        metric(format!("{what} p99"), at(0.99), "µs", Better::Lower),
    ]
}

/// Fills the stream (not timed), then consumes it with a durable pull consumer: one request
/// of 100 at a time, each message acknowledged (`+ACK`, no reply) as it arrives; done once the
/// consumer's ack floor is the last message.
fn pull_consume(server: &Server, scale: Scale, storage: &str) -> Outcome {
    let count = scale.pick(100_000, 500_000) / 100 * 100;
    let mut api = Api::connect(server.port)?;
    api.create_stream(storage, &format!("\"{SUBJECT}\""), "")?;
    AckedPublisher::connect(server.port, 16)?.pipelined(count)?;
    api.request(
        &format!("$JS.API.CONSUMER.CREATE.{STREAM}.C"),
        &format!(
            r#"{{"stream_name":"{STREAM}","config":{{"durable_name":"C","name":"C","ack_policy":"explicit"}}}}"#
        ),
    )?;
    let mut conn = connect(server.port).map_err(io)?;
    conn.write_all(b"SUB _INBOX.pull 1\r\n").map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut reader = Reader::new(conn.try_clone().map_err(io)?);
    let pull =
        format!("PUB $JS.API.CONSUMER.MSG.NEXT.{STREAM}.C _INBOX.pull 13\r\n{{\"batch\":100}}\r\n");
    let mut out = Vec::with_capacity(16 * 1024);
    let mut next = 0u32;
    let start = Instant::now();
    for _ in 0..count / 100 {
        conn.write_all(pull.as_bytes()).map_err(io)?;
        let mut got = 0;
        while got < 100 {
            let Frame::Msg {
                reply,
                headers,
                payload,
                ..
            } = reader.next().map_err(io)?
            else {
                continue;
            };
            if !headers.is_empty() {
                return Err(format!(
                    "a status instead of message {next}: {}",
                    String::from_utf8_lossy(headers).trim_end()
                ));
            }
            if numbers(payload) != Some((0, next)) {
                return Err(format!(
                    "message {next} carries {:?} (lost, duplicated or reordered)",
                    numbers(payload)
                ));
            }
            let reply = reply.ok_or("a message without an ack subject")?;
            out.extend_from_slice(b"PUB ");
            out.extend_from_slice(reply);
            out.extend_from_slice(b" 4\r\n+ACK\r\n");
            next += 1;
            got += 1;
        }
        conn.write_all(&out).map_err(io)?;
        out.clear();
    }
    let consumer = format!("$JS.API.CONSUMER.INFO.{STREAM}.C");
    loop {
        let info = api.request(&consumer, "")?;
        let floor = info
            .pointer("/ack_floor/stream_seq")
            .and_then(Value::as_u64);
        if floor == Some(count as u64) {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("acks not all taken: {info}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(vec![rate(count, start.elapsed())])
}

/// Key-value bucket `bench` as the clients make it; puts to 100 keys in turn, each after the
/// previous ack, then direct gets of each key in turn, each value checked.
fn kv_latency(server: &Server, scale: Scale) -> Outcome {
    const KEYS: usize = 100;
    let mut api = Api::connect(server.port)?;
    api.request(
        "$JS.API.STREAM.CREATE.KV_bench",
        r#"{"name":"KV_bench","subjects":["$KV.bench.>"],"max_msgs_per_subject":1,"discard":"new","allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true,"storage":"file"}"#,
    )?;
    let count = scale.pick(2_000, 20_000);
    let mut conn = connect(server.port).map_err(io)?;
    conn.write_all(b"SUB _INBOX.kv 1\r\n").map_err(io)?;
    barrier(&mut conn).map_err(io)?;
    let mut reader = Reader::new(conn.try_clone().map_err(io)?);
    let mut last = [0u32; KEYS];
    let mut frame = Vec::new();
    let mut puts = Vec::with_capacity(count);
    for i in 0..count {
        frame.clear();
        frame.extend_from_slice(format!("PUB $KV.bench.k{} _INBOX.kv 16\r\n", i % KEYS).as_bytes());
        frame.extend_from_slice(&0u32.to_le_bytes());
        frame.extend_from_slice(&(i as u32).to_le_bytes());
        frame.extend_from_slice(b"vvvvvvvv\r\n");
        let start = Instant::now();
        conn.write_all(&frame).map_err(io)?;
        loop {
            if let Frame::Msg { payload, .. } = reader.next().map_err(io)? {
                ack_seq(payload)?;
                break;
            }
        }
        puts.push(start.elapsed());
        last[i % KEYS] = i as u32;
    }
    let mut gets = Vec::with_capacity(count);
    for i in 0..count {
        let key = i % KEYS;
        let request =
            format!("PUB $JS.API.DIRECT.GET.KV_bench.$KV.bench.k{key} _INBOX.kv 0\r\n\r\n");
        let start = Instant::now();
        conn.write_all(request.as_bytes()).map_err(io)?;
        loop {
            if let Frame::Msg { payload, .. } = reader.next().map_err(io)? {
                if numbers(payload) != Some((0, last[key])) {
                    return Err(format!(
                        "get of k{key}: {:?}, expected the put {}",
                        String::from_utf8_lossy(payload),
                        last[key]
                    ));
                }
                break;
            }
        }
        gets.push(start.elapsed());
    }
    let mut metrics = percentiles("put", puts);
    metrics.extend(percentiles("get", gets));
    Ok(metrics)
}

/// Fills a file stream, notes its bytes on disk per message, kills the server with SIGKILL and
/// starts it again on the same store: how long until its log says `Server is ready`, and
/// until `STREAM.INFO` answers with every message.
fn recovery(server: &Server, scale: Scale) -> Outcome {
    let count = scale.pick(RECOVERY_QUICK, RECOVERY_FULL);
    let store = server.store.clone().ok_or("no store directory")?;
    Api::connect(server.port)?.create_stream("file", &format!("\"{SUBJECT}\""), "")?;
    AckedPublisher::connect(server.port, 16)?.pipelined(count)?;
    let disk = directory_bytes(&store);
    let log = store.with_extension("restarted.log");
    let spawned = server.kill9_and_restart(&log)?;
    let ready = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Server is ready") {
            break spawned.elapsed();
        }
        if !server.is_running() || spawned.elapsed() > RECOVERY_TIMEOUT {
            return Err(format!("no `Server is ready` after the restart:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let answered = loop {
        let probe = Api::connect(server.port).and_then(|mut api| {
            // A server still recovering may not answer at all.
            api.reader
                .set_read_timeout(Duration::from_millis(100))
                .map_err(io)?;
            api.stream_messages()
        });
        match probe {
            Ok(n) if n == count as u64 => break spawned.elapsed(),
            // Not answering yet, or (were it still loading) not everything yet.
            _ if spawned.elapsed() < RECOVERY_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Ok(n) => return Err(format!("{n} of {count} messages after the restart")),
            Err(e) => return Err(format!("stream info after the restart: {e}")),
        }
    };
    let _ = std::fs::remove_file(&log);
    Ok(vec![
        metric(
            "restart to `Server is ready`",
            ready.as_secs_f64() * 1e3,
            "ms",
            Better::Lower,
        ),
        metric(
            "restart to stream info",
            answered.as_secs_f64() * 1e3,
            "ms",
            Better::Lower,
        ),
        metric(
            "disk bytes per message",
            disk as f64 / count as f64,
            "B",
            Better::Lower,
        ),
    ])
}

/// The sizes of every file under `dir`, summed.
fn directory_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => directory_bytes(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
