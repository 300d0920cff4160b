//! The system account side by side with nats-server 2.15.1: both run the same configuration,
//! get the same `$SYS` requests (as the system user and as a normal account's user), the same
//! client connects and closes under a system-account subscriber, and the same monitoring
//! requests; every JSON answer must have the same fields with the same types (values such as
//! ids, times and counters legitimately differ), errors the same texts. The reference is
//! required: without it the test fails.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::process::{http_get, json_shape, reference_server, start_with_ports, Scratch};

/// Accounts as in the recorded observations: a system account with a user, an exporting and an
/// importing account, and one nobody connects to.
const CONFIG: &str = r#"
server_name: side-by-side
accounts {
  SYS: { users: [{user: sys, password: sys}] }
  A: { users: [{user: a, password: a}, {user: a2, password: a2}], exports: [{service: "req"}, {stream: "ev.>"}] }
  B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: "req"}}] }
  C: { users: [{user: c, password: c}] }
}
system_account: SYS
"#;

/// How long a request may wait for its answer; a request nats-server leaves unanswered costs
/// this much.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// What came back for a request.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// A JSON document.
    Json(Value),
    /// A `503` status: nobody serves the subject.
    NoResponders,
    /// Nothing within [`ANSWER_WAIT`].
    Nothing,
}

/// One delivered message.
#[derive(Debug)]
struct Msg {
    subject: String,
    status: Option<String>,
    payload: Vec<u8>,
}

/// A blocking raw-protocol client.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    inbox: bool,
}

impl Wire {
    /// Connects as `user` (password = user name; `""` for no credentials) and waits for the
    /// first PONG.
    fn connect(addr: &str, user: &str) -> Wire {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut wire = Wire {
            stream,
            buf: Vec::new(),
            inbox: false,
        };
        let credentials = match user {
            "" => String::new(),
            user => format!(",\"user\":\"{user}\",\"pass\":\"{user}\""),
        };
        wire.send(&format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"headers\":true,\
             \"no_responders\":true,\"name\":\"{user}-client\",\"lang\":\"rust\",\
             \"version\":\"1\"{credentials}}}\r\nPING\r\n"
        ));
        wire.until_pong();
        wire
    }

    fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).expect("send");
    }

    /// Sends PING and reads until its PONG (messages before it are dropped).
    fn until_pong(&mut self) {
        self.send("PING\r\n");
        let deadline = Instant::now() + ANSWER_WAIT * 2;
        loop {
            if let Some(at) = find(&self.buf, b"PONG\r\n") {
                self.buf.drain(..at + 6);
                return;
            }
            assert!(Instant::now() < deadline, "no PONG");
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }

    /// The next MSG or HMSG within `wait`, answering the server's PINGs on the way.
    fn next_msg(&mut self, wait: Duration) -> Option<Msg> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(at) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                let parts: Vec<&str> = line.split_whitespace().collect();
                let (is_msg, is_hmsg) = (
                    parts.first() == Some(&"MSG"),
                    parts.first() == Some(&"HMSG"),
                );
                if !is_msg && !is_hmsg {
                    self.buf.drain(..at + 2);
                    if line == "PING" {
                        self.send("PONG\r\n");
                    }
                    continue;
                }
                let total: usize = parts.last().and_then(|n| n.parse().ok()).expect("size");
                if self.buf.len() < at + 2 + total + 2 {
                    break;
                }
                let body: Vec<u8> = self.buf[at + 2..at + 2 + total].to_vec();
                self.buf.drain(..at + 2 + total + 2);
                let (status, payload) = if is_hmsg {
                    let hlen: usize = parts[parts.len() - 2].parse().expect("header size");
                    let headers = String::from_utf8_lossy(&body[..hlen]).into_owned();
                    let status = headers.lines().next().unwrap_or_default().to_string();
                    (Some(status), body[hlen..].to_vec())
                } else {
                    (None, body)
                };
                return Some(Msg {
                    subject: parts[1].to_string(),
                    status,
                    payload,
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.fill();
        }
    }

    /// Publishes a request with `body` and reads its answer.
    fn request(&mut self, subject: &str, body: &str) -> Outcome {
        if !self.inbox {
            self.send("SUB _INBOX.r.1 99\r\n");
            self.inbox = true;
        }
        self.send(&format!(
            "PUB {subject} _INBOX.r.1 {}\r\n{body}\r\n",
            body.len()
        ));
        match self.next_msg(ANSWER_WAIT) {
            None => Outcome::Nothing,
            Some(msg) if msg.status.as_deref().is_some_and(|s| s.contains("503")) => {
                Outcome::NoResponders
            }
            Some(msg) => Outcome::Json(serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
                panic!(
                    "{subject}: not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&msg.payload)
                )
            })),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Everything one server answered, by label.
type Observed = Vec<(String, Outcome)>;

/// Runs the whole scenario against one server binary.
fn observe(binary: &Path, scratch: &Scratch, name: &str) -> Observed {
    let config = scratch.0.join("sys.conf");
    std::fs::write(&config, CONFIG).unwrap();
    let (_server, client, monitor) = start_with_ports(binary, &config, &scratch.0.join(name));
    let mut seen = Observed::new();

    // Clients as in the observations: A subscribes, B imports A's service.
    let mut a = Wire::connect(&client, "a");
    a.send("SUB foo 1\r\nSUB req 2\r\n");
    a.until_pong();
    let mut b = Wire::connect(&client, "b");
    b.send("SUB bar q1 1\r\n");
    b.until_pong();

    let mut sys = Wire::connect(&client, "sys");
    let id = match sys.request("$SYS.REQ.SERVER.PING.IDZ", "") {
        Outcome::Json(idz) => idz["id"].as_str().expect("id").to_string(),
        other => panic!("{name}: IDZ gave {other:?}"),
    };
    let by_id = |endpoint: &str| format!("$SYS.REQ.SERVER.{id}.{endpoint}");
    let as_sys: Vec<(String, &str)> = vec![
        ("$SYS.REQ.SERVER.PING".into(), ""),
        ("$SYS.REQ.SERVER.PING.VARZ".into(), ""),
        ("$SYS.REQ.SERVER.PING.CONNZ".into(), ""),
        ("$SYS.REQ.SERVER.PING.SUBSZ".into(), ""),
        ("$SYS.REQ.SERVER.PING.HEALTHZ".into(), ""),
        ("$SYS.REQ.SERVER.PING.STATSZ".into(), ""),
        ("$SYS.REQ.SERVER.PING.IDZ".into(), ""),
        ("$SYS.REQ.SERVER.PING.ACCOUNTZ".into(), ""),
        (by_id("VARZ"), ""),
        (by_id("IDZ"), ""),
        (by_id("CONNZ"), r#"{"subscriptions":true,"auth":true}"#),
        (
            "$SYS.REQ.SERVER.PING.CONNZ".into(),
            r#"{"acc":"A","auth":true}"#,
        ),
        (
            "$SYS.REQ.SERVER.PING.CONNZ".into(),
            r#"{"subscriptions":true,"acc":"A"}"#,
        ),
        (
            "$SYS.REQ.SERVER.PING.CONNZ".into(),
            r#"{"subscriptions_detail":true,"acc":"A"}"#,
        ),
        ("$SYS.REQ.SERVER.PING.CONNZ".into(), r#"{"acc":"NOPE"}"#),
        ("$SYS.REQ.SERVER.PING.CONNZ".into(), "not json"),
        (
            "$SYS.REQ.SERVER.PING.SUBSZ".into(),
            r#"{"subscriptions":true,"account":"A"}"#,
        ),
        ("$SYS.REQ.SERVER.PING.ACCOUNTZ".into(), r#"{"account":"A"}"#),
        ("$SYS.REQ.ACCOUNT.A.CONNZ".into(), ""),
        ("$SYS.REQ.ACCOUNT.A.SUBSZ".into(), ""),
        ("$SYS.REQ.ACCOUNT.A.INFO".into(), ""),
        ("$SYS.REQ.ACCOUNT.B.INFO".into(), ""),
        ("$SYS.REQ.ACCOUNT.A.CONNS".into(), ""),
        ("$SYS.REQ.ACCOUNT.C.CONNS".into(), ""),
        ("$SYS.REQ.ACCOUNT.A.STATZ".into(), ""),
        ("$SYS.REQ.ACCOUNT.A.JSZ".into(), ""),
        ("$SYS.REQ.ACCOUNT.A.LEAFZ".into(), ""),
        ("$SYS.REQ.ACCOUNT.NOPE.INFO".into(), ""),
        ("$SYS.REQ.ACCOUNT.NOPE.CONNZ".into(), ""),
        ("$SYS.REQ.ACCOUNT.PING.CONNZ".into(), ""),
        ("$SYS.REQ.ACCOUNT.PING.STATZ".into(), ""),
        (
            "$SYS.REQ.ACCOUNT.PING.STATZ".into(),
            r#"{"accounts":["A"],"include_unused":true}"#,
        ),
        ("$SYS.REQ.ACCOUNT.C.STATZ".into(), ""),
        (
            "$SYS.REQ.ACCOUNT.C.STATZ".into(),
            r#"{"include_unused":true}"#,
        ),
        (
            "$SYS.REQ.SERVER.PING.ACCOUNTZ".into(),
            r#"{"account":"NOPE"}"#,
        ),
        ("$SYS.REQ.SERVER.PING.CONNZ".into(), r#"{"sort":"stop"}"#),
        ("$SYS.REQ.SERVER.PING.CONNZ".into(), r#"{"sort":"bogus"}"#),
        (
            "$SYS.REQ.SERVER.PING.CONNZ".into(),
            r#"{"state":2,"sort":"reason"}"#,
        ),
        ("$SYS.REQ.USER.INFO".into(), ""),
        ("$SYS.REQ.USER.A.INFO".into(), ""),
        ("$SYS.REQ.SERVER.PING.NOSUCH".into(), ""),
        ("$SYS.REQ.SERVER.NOSUCHSERVER.VARZ".into(), ""),
    ];
    for (subject, body) in &as_sys {
        let label = format!("sys {} {body}", subject.replace(&id, "<id>"));
        seen.push((label, sys.request(subject, body)));
    }
    let mut requester = Wire::connect(&client, "a");
    for subject in [
        "$SYS.REQ.USER.INFO",
        "$SYS.REQ.ACCOUNT.PING.CONNZ",
        "$SYS.REQ.SERVER.PING.CONNZ",
        "$SYS.REQ.ACCOUNT.PING.STATZ",
        "$SYS.REQ.SERVER.PING",
        "$SYS.REQ.SERVER.PING.VARZ",
        "$SYS.REQ.ACCOUNT.A.CONNZ",
        "$SYS.REQ.USER.A.INFO",
    ] {
        seen.push((format!("a {subject}"), requester.request(subject, "")));
    }

    // Events: a client of A connects and closes under a system-account subscriber.
    sys.send("SUB $SYS.ACCOUNT.> 5\r\nSUB $SYS.SERVER.ACCOUNT.> 6\r\n");
    sys.until_pong();
    let passing = Wire::connect(&client, "a2");
    drop(passing);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut events: Vec<(String, Value)> = Vec::new();
    while events.len() < 6 && Instant::now() < deadline {
        if let Some(msg) = sys.next_msg(Duration::from_millis(200)) {
            let value = serde_json::from_slice(&msg.payload).expect("event JSON");
            events.push((msg.subject, value));
        }
    }
    for (subject, value) in events {
        seen.push((format!("event {subject}"), Outcome::Json(value)));
    }

    // Monitoring with accounts.
    get_all(
        &monitor,
        &[
            "/varz",
            "/accountz",
            "/accountz?acc=A",
            "/accountz?acc=B",
            "/accountz?acc=SYS",
            "/accountz?acc=NOPE",
            "/accstatz",
            "/accstatz?unused=1",
            "/connz?acc=A",
            "/connz?auth=1&subs=1",
            "/subsz?subs=1&acc=B",
        ],
        &mut seen,
    );
    drop((a, b));
    seen
}

/// `GET`s each path, recording its JSON (or status and text when it is not JSON).
fn get_all(monitor: &str, paths: &[&str], seen: &mut Observed) {
    for path in paths {
        let (status, body) = http_get(monitor, path).expect("monitor answers");
        let outcome = match serde_json::from_str::<Value>(&body) {
            Ok(mut json) => {
                // nats-server lists the reply routes of its streamed system exports under the
                // system account's `responses`; tern answers imported system requests directly.
                if let Some(detail) = json["account_detail"].as_object_mut() {
                    detail.remove("responses");
                }
                Outcome::Json(json)
            }
            Err(_) => Outcome::Json(Value::String(format!("{status} {body}"))),
        };
        seen.push((format!("GET {path}"), outcome));
    }
}

/// Without accounts: `$SYS` is made, nobody can log in to it, and `$G` has the imports.
fn observe_default(binary: &Path, scratch: &Scratch, name: &str) -> Observed {
    let config = scratch.0.join("default.conf");
    std::fs::write(&config, "# nothing: the defaults\n").unwrap();
    let (_server, client, monitor) = start_with_ports(binary, &config, &scratch.0.join(name));
    let mut seen = Observed::new();
    let mut anonymous = Wire::connect(&client, "");
    anonymous.send("SUB foo 1\r\n");
    for subject in [
        "$SYS.REQ.USER.INFO",
        "$SYS.REQ.SERVER.PING.CONNZ",
        "$SYS.REQ.ACCOUNT.PING.CONNZ",
        "$SYS.REQ.ACCOUNT.PING.STATZ",
        "$SYS.REQ.SERVER.PING",
    ] {
        seen.push((format!("$G {subject}"), anonymous.request(subject, "")));
    }
    get_all(
        &monitor,
        &[
            "/varz",
            "/accountz",
            "/accountz?acc=%24SYS",
            "/accountz?acc=%24G",
            "/accstatz?unused=1",
            "/connz?auth=1",
            "/subsz?subs=1&acc=%24G",
        ],
        &mut seen,
    );
    seen
}

#[test]
fn default_system_account_matches_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("sys-default-side-by-side");
    let theirs = observe_default(&reference, &scratch, "nats-server");
    let ours = observe_default(Path::new(env!("CARGO_BIN_EXE_tern")), &scratch, "tern");
    assert_eq!(theirs.len(), ours.len());
    compare(&theirs, &ours);
}

/// Keeps what the two servers must agree on exactly: shapes, errors, and bare strings.
fn comparable(outcome: &Outcome) -> (Option<std::collections::BTreeSet<String>>, Value, String) {
    match outcome {
        Outcome::Json(Value::String(text)) => (None, Value::Null, text.clone()),
        Outcome::Json(json) => (Some(json_shape(json)), json["error"].clone(), String::new()),
        other => (None, Value::Null, format!("{other:?}")),
    }
}

#[test]
fn system_account_matches_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("sys-side-by-side");
    let theirs = observe(&reference, &scratch, "nats-server");
    let ours = observe(&PathBuf::from(env!("CARGO_BIN_EXE_tern")), &scratch, "tern");
    let labels = |seen: &Observed| seen.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>();
    let mut their_labels = labels(&theirs);
    let mut our_labels = labels(&ours);
    // Events of one kind may interleave differently; what matters is that the same ones came.
    their_labels.sort();
    our_labels.sort();
    assert_eq!(their_labels, our_labels, "different answers or events");
    for event in ["CONNECT", "DISCONNECT", "SERVER.CONNS"] {
        let label = format!("event $SYS.ACCOUNT.A.{event}");
        assert!(our_labels.contains(&label), "no {label}: {our_labels:#?}");
    }
    let answered = |seen: &Observed| {
        seen.iter()
            .filter(|(_, o)| matches!(o, Outcome::Json(Value::Object(_))))
            .count()
    };
    assert_eq!(answered(&theirs), answered(&ours));
    assert!(answered(&ours) >= 50, "only {} documents", answered(&ours));
    compare(&theirs, &ours);
}

/// Asserts that every answer has the same fields and types, errors the same texts.
fn compare(theirs: &Observed, ours: &Observed) {
    let mut differences = Vec::new();
    for (label, outcome) in theirs {
        let mine = &ours
            .iter()
            .find(|(l, _)| l == label)
            .expect("same labels")
            .1;
        let ((their_shape, their_error, their_text), (my_shape, my_error, my_text)) =
            (comparable(outcome), comparable(mine));
        if their_error != my_error || their_text != my_text {
            differences.push(format!("{label}: {outcome:?}\n  tern: {mine:?}"));
            continue;
        }
        if let (Some(theirs), Some(mine)) = (their_shape, my_shape) {
            let missing: Vec<_> = theirs.difference(&mine).collect();
            let extra: Vec<_> = mine.difference(&theirs).collect();
            if !missing.is_empty() || !extra.is_empty() {
                differences.push(format!("{label}: missing {missing:?}, extra {extra:?}"));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

// In-process: values that follow from the situation, with real clients.

fn options(text: &str) -> tern::Options {
    let file = tern::config::conf::parse_str(text, Path::new("sys.conf")).expect("conf");
    let mut opts = tern::Options::default();
    opts.apply_file(&file, &mut Vec::new()).expect("options");
    opts
}

/// A raw client of the system account, subscribed to `subjects` (sids from 1).
async fn sys_subscriber(server: &common::TestServer, subjects: &[&str]) -> common::Raw {
    let mut raw = server.raw().await;
    raw.send("CONNECT {\"verbose\":false,\"user\":\"sys\",\"pass\":\"sys\"}\r\n")
        .await;
    for (sid, subject) in subjects.iter().enumerate() {
        raw.send(format!("SUB {subject} {}\r\n", sid + 1)).await;
    }
    raw.expect_before_pong("").await;
    raw
}

/// The next `n` messages' subjects and JSON payloads.
async fn events(raw: &mut common::Raw, n: usize) -> Vec<(String, Value)> {
    raw.read_msgs(n)
        .await
        .into_iter()
        .map(|frame| {
            let (line, payload) = frame.split_once("\r\n").expect("MSG line");
            let subject = line.split_whitespace().nth(1).expect("subject").to_string();
            let json = serde_json::from_str(payload.trim_end()).expect("event JSON");
            (subject, json)
        })
        .collect()
}

#[tokio::test]
async fn connect_and_disconnect_events_follow_a_client() {
    let server = common::TestServer::with(options(CONFIG)).await;
    // Account A's events only: the subscriber's own CONNECT may be published after its SUBs.
    let mut sys = sys_subscriber(&server, &["$SYS.ACCOUNT.A.>", "$SYS.SERVER.ACCOUNT.A.>"]).await;
    let client = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
        .name("watched")
        .connect(server.url())
        .await
        .expect("connect as a");
    client.publish("foo", "hi".into()).await.unwrap();
    client.flush().await.unwrap();
    let connected = events(&mut sys, 3).await;
    let subjects: Vec<&str> = connected.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "$SYS.SERVER.ACCOUNT.A.CONNS",
            "$SYS.ACCOUNT.A.SERVER.CONNS",
            "$SYS.ACCOUNT.A.CONNECT"
        ]
    );
    let (conns, legacy) = (&connected[1].1, &connected[0].1);
    assert_eq!(
        conns["type"],
        "io.nats.server.advisory.v1.account_connections"
    );
    assert_eq!(
        (conns["acc"].as_str(), conns["conns"].as_u64()),
        (Some("A"), Some(1))
    );
    assert_eq!(conns["id"], legacy["id"], "one advisory on two subjects");
    let connect = &connected[2].1;
    assert_eq!(connect["type"], "io.nats.server.advisory.v1.client_connect");
    let info = &connect["client"];
    assert_eq!(info["acc"], "A");
    assert_eq!(info["user"], "a");
    assert_eq!(info["name"], "watched");
    assert_eq!(info["kind"], "Client");
    assert_eq!(info["client_type"], "nats");
    assert!(info.get("stop").is_none());

    drop(client);
    let closed = events(&mut sys, 3).await;
    assert_eq!(closed[1].0, "$SYS.ACCOUNT.A.SERVER.CONNS");
    assert_eq!(closed[1].1["conns"], 0);
    let (subject, disconnect) = &closed[2];
    assert_eq!(subject, "$SYS.ACCOUNT.A.DISCONNECT");
    assert_eq!(
        disconnect["type"],
        "io.nats.server.advisory.v1.client_disconnect"
    );
    assert_eq!(disconnect["reason"], "Client Closed");
    assert_eq!(disconnect["client"]["id"], info["id"]);
    assert!(disconnect["client"]["stop"].is_string());
    assert_eq!(disconnect["received"]["msgs"], 1);
    assert_eq!(disconnect["received"]["bytes"], 2);
    // Every message from the system account has the next sequence number.
    let seqs: Vec<u64> = connected
        .iter()
        .chain(&closed)
        .map(|(_, e)| e["server"]["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn statsz_is_published_from_the_start() {
    let server = common::TestServer::with(options(CONFIG)).await;
    let mut sys = sys_subscriber(&server, &["$SYS.SERVER.*.STATSZ"]).await;
    // The interval starts small and doubles, so two arrive soon after start.
    let statsz = events(&mut sys, 2).await;
    let id = &server.shared.server_id;
    for (subject, event) in &statsz {
        assert_eq!(subject, &format!("$SYS.SERVER.{id}.STATSZ"));
        assert_eq!(event["server"]["id"], id.as_str());
        assert_eq!(event["statsz"]["connections"], 1);
        assert_eq!(event["statsz"]["active_accounts"], 1);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn account_users_reach_their_own_account_through_the_imports() {
    let server = common::TestServer::with(options(CONFIG)).await;
    let _b = async_nats::ConnectOptions::with_user_and_password("b".into(), "b".into())
        .connect(server.url())
        .await
        .unwrap();
    let a = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
        .connect(server.url())
        .await
        .unwrap();
    let ask = |subject: &'static str| {
        let a = a.clone();
        async move {
            let reply = tokio::time::timeout(common::WAIT, a.request(subject, "".into()))
                .await
                .expect("answered in time");
            reply.map(|m| serde_json::from_slice::<Value>(&m.payload).expect("JSON"))
        }
    };
    let info = ask("$SYS.REQ.USER.INFO").await.expect("USER.INFO");
    assert_eq!(
        info["data"],
        serde_json::json!({"user": "a", "account": "A", "account_name": "A"})
    );
    // `SERVER.PING.CONNZ` from an account is that account's CONNZ: B's client is not listed.
    let connz = ask("$SYS.REQ.SERVER.PING.CONNZ").await.expect("CONNZ");
    assert_eq!(connz["data"]["num_connections"], 1);
    let statz = ask("$SYS.REQ.ACCOUNT.PING.STATZ").await.expect("STATZ");
    assert_eq!(statz["data"]["account_statz"][0]["acc"], "A");
    let refused = ask("$SYS.REQ.SERVER.PING.VARZ").await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{refused:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_global_account_asks_as_nobody() {
    let server = common::TestServer::start().await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let reply = tokio::time::timeout(
        common::WAIT,
        client.request("$SYS.REQ.USER.INFO", "".into()),
    )
    .await
    .expect("answered in time")
    .expect("USER.INFO");
    let info: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        info["data"],
        serde_json::json!({"user": "", "account": "$G", "account_name": "$G"})
    );
    assert_eq!(info["server"]["name"], server.shared.server_name.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn the_imports_survive_a_reload() {
    let server = common::TestServer::with(options(CONFIG)).await;
    let mut reloaded = options(CONFIG);
    reloaded.host = "127.0.0.1".into();
    reloaded.port = 0;
    server.shared.reload(reloaded).expect("reload");
    let client = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
        .connect(server.url())
        .await
        .unwrap();
    let reply = tokio::time::timeout(
        common::WAIT,
        client.request("$SYS.REQ.USER.INFO", "".into()),
    )
    .await
    .expect("answered in time")
    .expect("USER.INFO after reload");
    let info: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(info["data"]["account"], "A");
    // The four imports, installed once (not twice), and the requester's inbox subscription.
    let a = server.shared.router.account("A").unwrap();
    assert_eq!(a.subscription_count(), 5);
    server.shutdown().await;
}
