//! The client tools (`tern pub|sub|req|reply|bench|server|trace|kv|stream`) run as the built binary
//! against tern and against nats-server 2.15.1: they are clients, and must work with both.

mod common;

use std::future::IntoFuture;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::cluster::node;
use common::process::{listening_port, reference_server, Process, Scratch};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// Longest any one tool run may take before the test kills it and fails.
const TOOL_LIMIT: Duration = Duration::from_secs(30);

/// Two accounts, the system one with its own user.
const CONFIG: &str = r#"
accounts {
  SYS { users [{user: sys, password: sys}] }
  APP { users [{user: app, password: app}] }
}
system_account: SYS
"#;

/// A server process and its client URL.
struct Target {
    _process: Process,
    name: &'static str,
    port: u16,
}

impl Target {
    fn url(&self, user: &str) -> String {
        format!("nats://{user}:{user}@127.0.0.1:{}", self.port)
    }
}

/// tern, then nats-server 2.15.1 (unless the reference is opted out), each started with
/// `config` under `scratch`.
fn targets(scratch: &Scratch, config: &str) -> Vec<Target> {
    let conf = scratch.0.join("server.conf");
    std::fs::write(&conf, config).unwrap();
    let mut binaries = vec![("tern", PathBuf::from(TERN))];
    if let Some(reference) = reference_server() {
        binaries.push(("nats-server", reference));
    }
    binaries
        .into_iter()
        .map(|(name, binary)| start(scratch, name, &binary, &conf))
        .collect()
}

/// tern, then nats-server 2.15.1, each with JetStream in its own store directory.
fn js_targets(scratch: &Scratch) -> Vec<Target> {
    let mut binaries = vec![("tern", PathBuf::from(TERN))];
    if let Some(reference) = reference_server() {
        binaries.push(("nats-server", reference));
    }
    binaries
        .into_iter()
        .map(|(name, binary)| {
            let store = scratch.0.join(format!("{name}-js"));
            let conf = scratch.0.join(format!("{name}.conf"));
            std::fs::write(&conf, format!("jetstream {{ store_dir: {store:?} }}\n")).unwrap();
            start(scratch, name, &binary, &conf)
        })
        .collect()
}

fn start(scratch: &Scratch, name: &'static str, binary: &Path, conf: &Path) -> Target {
    let log = scratch.0.join(format!("{name}.log"));
    let (process, text) = Process::start(
        Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-c"])
            .arg(conf)
            .arg("-l")
            .arg(&log),
        &log,
    );
    let port = listening_port(&text).expect("port in log");
    Target {
        _process: process,
        name,
        port,
    }
}

/// What a tool run printed and how it ended.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `tern <args>` to the end (killed after [`TOOL_LIMIT`]).
fn tool(args: &[&str]) -> Ran {
    let child = spawn(args);
    finish(child, TOOL_LIMIT)
}

fn spawn(args: &[&str]) -> Child {
    Command::new(TERN)
        .args(args)
        .env_remove("NATS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` up to `limit`, then kills it; returns what it printed.
fn finish(mut child: Child, limit: Duration) -> Ran {
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Ran {
        code,
        stdout,
        stderr,
    }
}

/// A long-running tool (`sub`, `reply`) started and waited on until it says it listens.
fn listening(args: &[&str]) -> Child {
    let mut child = spawn(args);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        ["Subscribing on", "Listening on", "Watching bucket"]
            .iter()
            .any(|p| line.starts_with(p)),
        "{args:?}: {line}"
    );
    // Keep the rest of stderr readable by `finish`.
    child.stderr = Some(unread(stderr));
    child
}

/// Hands back the stderr pipe from its reader (nothing more was buffered after one line).
fn unread(reader: BufReader<ChildStderr>) -> ChildStderr {
    assert!(reader.buffer().is_empty());
    reader.into_inner()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// An error is one line on stderr, exit code 1, and no panic.
fn assert_one_line_error(ran: &Ran, containing: &str) {
    assert_eq!(
        ran.code, 1,
        "stdout {:?} stderr {:?}",
        ran.stdout, ran.stderr
    );
    assert_eq!(ran.stderr.lines().count(), 1, "{:?}", ran.stderr);
    assert!(ran.stderr.contains(containing), "{:?}", ran.stderr);
    assert!(!ran.stderr.contains("panicked"), "{:?}", ran.stderr);
}

#[test]
fn pub_and_sub_with_headers_on_both_servers() {
    let scratch = Scratch::new("tools-pubsub");
    for target in targets(&scratch, CONFIG) {
        let url = target.url("app");
        let sub = listening(&["sub", "orders.*", "-s", &url, "--count", "3", "--json"]);
        let ran = tool(&[
            "pub",
            "orders.new",
            "hello",
            "-s",
            &url,
            "-H",
            "Trace-Id:42",
        ]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert_eq!(ran.stdout, "Published 5 bytes to \"orders.new\"\n");
        let ran = tool(&[
            "pub",
            "orders.old",
            "x",
            "--count",
            "2",
            "--sleep",
            "20ms",
            "--server",
            &url,
        ]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        let got = finish(sub, Duration::from_secs(10));
        assert_eq!(got.code, 0, "{}: {}", target.name, got.stderr);
        let msgs = json_lines(&got.stdout);
        assert_eq!(msgs.len(), 3, "{}: {}", target.name, got.stdout);
        assert_eq!(msgs[0]["subject"], "orders.new");
        assert_eq!(msgs[0]["data"], "hello");
        assert_eq!(msgs[0]["headers"]["Trace-Id"][0], "42");
        assert_eq!(msgs[2]["subject"], "orders.old");

        // Readable output, headers on request; NATS_URL when there is no --server.
        let sub = listening(&["sub", "a", "-s", &url, "--count", "1", "--headers"]);
        let ran = Command::new(TERN)
            .args(["pub", "a", "body", "-H", "k:v"])
            .env("NATS_URL", &url)
            .output()
            .unwrap();
        assert!(ran.status.success(), "{:?}", ran);
        let got = finish(sub, Duration::from_secs(10));
        assert_eq!(
            got.stdout, "[#1] Received on \"a\"\nk: v\n\nbody\n\n",
            "{}",
            target.name
        );
    }
}

#[test]
fn request_reply_and_queue_groups_on_both_servers() {
    let scratch = Scratch::new("tools-reqrep");
    for target in targets(&scratch, CONFIG) {
        let url = target.url("app");
        let responder = listening(&["reply", "svc.time", "noon", "-s", &url, "--count", "1"]);
        let ran = tool(&["req", "svc.time", "when?", "-s", &url, "--json"]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        let answer = &json_lines(&ran.stdout)[0];
        assert_eq!(answer["data"], "noon");
        assert!(answer["rtt_us"].as_u64().is_some());
        let served = finish(responder, Duration::from_secs(10));
        assert_eq!(served.code, 0);
        assert!(served.stdout.contains("when?"), "{}", served.stdout);

        // Nobody answers now: nats-server and tern both send no-responders.
        let ran = tool(&["req", "svc.time", "again", "-s", &url]);
        assert_one_line_error(&ran, "no responders");

        // Two members of one queue group share ten messages.
        let members: Vec<Child> = (0..2)
            .map(|_| listening(&["sub", "work", "--queue", "q", "-s", &url, "--json"]))
            .collect();
        let ran = tool(&["pub", "work", "job", "--count", "10", "-s", &url]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        std::thread::sleep(Duration::from_millis(500));
        let total: usize = members
            .into_iter()
            .map(|m| json_lines(&finish(m, Duration::ZERO).stdout).len())
            .sum();
        assert_eq!(total, 10, "{}", target.name);
    }
}

#[test]
fn server_ping_and_info_through_the_system_account() {
    let scratch = Scratch::new("tools-server");
    for target in targets(&scratch, CONFIG) {
        let sys = target.url("sys");
        let ran = tool(&["server", "ping", "-s", &sys, "--expect", "1"]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert!(
            ran.stdout.contains("1 server(s) answered"),
            "{}",
            ran.stdout
        );
        let ran = tool(&["server", "info", "-s", &sys, "--expect", "1", "--json"]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        let docs: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(docs[0]["data"]["port"], target.port, "{}", target.name);
        let ran = tool(&["server", "info", "-s", &sys, "--expect", "1"]);
        assert!(ran.stdout.contains("Connections"), "{}", ran.stdout);

        // A user of another account has no system services to ask.
        let ran = tool(&["server", "ping", "-s", &target.url("app")]);
        assert_one_line_error(&ran, "system account");
    }
}

#[test]
fn bench_reports_a_sane_summary() {
    let scratch = Scratch::new("tools-bench");
    for target in targets(&scratch, CONFIG) {
        let url = target.url("app");
        let args = [
            "bench", "b", "-s", &url, "--msgs", "20000", "--pub", "2", "--sub", "2",
        ];
        let ran = tool(&[&args[..], &["--size", "64", "--json"]].concat());
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        let doc: Value = serde_json::from_str(ran.stdout.trim()).unwrap();
        assert_eq!(doc["pub"]["msgs"], 20000);
        assert_eq!(
            doc["sub"]["msgs"], 40000,
            "{}: every subscriber gets every message",
            target.name
        );
        assert!(doc["pub"]["msgs_per_sec"].as_f64().unwrap() > 0.0);
        let lat = &doc["latency_us"];
        let (p50, p99, max) = (
            lat["p50"].as_u64().unwrap(),
            lat["p99"].as_u64().unwrap(),
            lat["max"].as_u64().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max, "{lat}");
        let ran = tool(&args);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        assert!(
            ran.stdout.contains("msgs/s") && ran.stdout.contains("latency"),
            "{}",
            ran.stdout
        );
    }
}

#[test]
fn bad_input_is_one_line_and_a_failure_exit() {
    let scratch = Scratch::new("tools-bad");
    // Nothing listens on a port just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("nats://{free}");
    assert_one_line_error(&tool(&["pub", "a", "b", "-s", &nowhere]), "cannot connect");
    assert_one_line_error(&tool(&["sub", "a", "-s", &nowhere]), "cannot connect");
    assert_one_line_error(&tool(&["pub", "a", "b", "-s", "http://x"]), "scheme");
    assert_one_line_error(&tool(&["pub", "a", "b", "--nope"]), "unknown option");
    assert_one_line_error(&tool(&["pub"]), "missing argument <subject>");
    assert_one_line_error(&tool(&["bench", "a", "--msgs", "many"]), "not a number");
    for target in targets(&scratch, CONFIG) {
        let bad = format!("nats://app:wrong@127.0.0.1:{}", target.port);
        assert_one_line_error(
            &tool(&["pub", "a", "b", "-s", &bad]),
            "Authorization Violation",
        );
        let url = target.url("app");
        assert_one_line_error(&tool(&["pub", "a b", "x", "-s", &url]), "invalid subject");
        assert_one_line_error(&tool(&["pub", "a.*", "x", "-s", &url]), "invalid subject");
        assert_one_line_error(&tool(&["sub", "a..b", "-s", &url]), "invalid subject");
        let missing = scratch.0.join("missing.creds");
        let ran = tool(&[
            "pub",
            "a",
            "b",
            "-s",
            &url,
            "--creds",
            missing.to_str().unwrap(),
        ]);
        assert_one_line_error(&ran, "missing.creds");
    }
}

#[test]
fn a_closed_stdout_ends_a_tool_quietly() {
    let scratch = Scratch::new("tools-pipe");
    let target = targets(&scratch, CONFIG).remove(0);
    let url = target.url("app");
    let mut sub = listening(&["sub", "p", "-s", &url]);
    // The reader of the tool's output goes away (`tern sub p | head -1`).
    drop(sub.stdout.take());
    let ran = tool(&["pub", "p", "x", "--count", "100", "-s", &url]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = sub.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tern sub still runs");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    sub.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_server_flag_is_never_a_tool() {
    // `-p` and friends still go to the server's command line, and an unknown word is still
    // the server's error, not a tool's.
    let ran = tool(&["--version"]);
    assert!(ran.stdout.starts_with("tern: v2.15.1"), "{}", ran.stdout);
    let ran = tool(&["publish"]);
    assert_ne!(ran.code, 0);
    assert!(!ran.stderr.contains("tern pub"), "{}", ran.stderr);
    let ran = tool(&["pub", "--help"]);
    assert_eq!(ran.code, 0);
    assert!(ran.stdout.starts_with("Usage: tern pub"), "{}", ran.stdout);
    assert!(ran.stdout.contains("--creds"));
}

#[test]
fn trace_prints_the_path_on_one_server_and_across_a_mixed_cluster() {
    let scratch = Scratch::new("tools-trace");
    for target in targets(&scratch, CONFIG) {
        let url = target.url("app");
        let sub = listening(&["sub", "t.x", "-s", &url, "--count", "1", "--json"]);
        // Trace-only by default: the path is printed, the subscriber gets nothing.
        let ran = tool(&["trace", "t.x", "hi", "-s", &url]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert!(ran.stdout.contains("--> in from client"), "{}", ran.stdout);
        assert!(
            ran.stdout.contains("<-- out to client") && ran.stdout.contains("\"tern sub\""),
            "{}",
            ran.stdout
        );
        let ran = tool(&[
            "trace",
            "t.x",
            "delivered",
            "-s",
            &url,
            "--deliver",
            "--json",
        ]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        let events: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(events[0]["events"][1]["sub"], "t.x", "{}", target.name);
        let got = finish(sub, Duration::from_secs(10));
        assert_eq!(json_lines(&got.stdout)[0]["data"], "delivered");
    }
    let Some(reference) = reference_server() else {
        return;
    };
    let a = node(&scratch, Path::new(TERN), "A", &[]);
    let b = node(&scratch, &reference, "B", &[&a]);
    let sub = listening(&["sub", "t.y", "-s", &b.client, "--count", "1"]);
    // Until B's interest has crossed the route, the path ends at A.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ran = loop {
        let ran = tool(&["trace", "t.y", "-s", &a.client, "--deliver"]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        if ran.stdout.contains("out to route") || Instant::now() > deadline {
            break ran;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = &ran.stdout;
    assert!(
        text.contains("Server A ") && text.contains("Server B "),
        "{text}"
    );
    assert!(
        text.contains("<-- out to route cid") && text.contains("\"B\", hop 1"),
        "{text}"
    );
    assert!(
        text.contains("(hop 1)") && text.contains("--> in from route"),
        "{text}"
    );
    assert!(text.contains("subscription \"t.y\""), "{text}");
    assert_eq!(finish(sub, Duration::from_secs(10)).code, 0);
}

#[test]
fn creds_files_sign_the_nonce_in_operator_mode() {
    use common::jwt::{account_jwt, creds, operator_jwt, user_jwt};
    use nkeys::KeyPair;
    let scratch = Scratch::new("tools-creds");
    let operator = KeyPair::new_operator();
    let system = KeyPair::new_account();
    let app = KeyPair::new_account();
    let stranger = KeyPair::new_account();
    let config = format!(
        "operator: {op}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload {{\n  \
         {sys}: {sys_jwt}\n  {app}: {app_jwt}\n}}\n",
        op = operator_jwt(&operator, &system.public_key()),
        sys = system.public_key(),
        sys_jwt = account_jwt(&operator, &system, "SYS", serde_json::json!({})),
        app = app.public_key(),
        app_jwt = account_jwt(&operator, &app, "APP", serde_json::json!({})),
    );
    let write_creds = |name: &str, account: &KeyPair| {
        let user = KeyPair::new_user();
        let jwt = user_jwt(account, &user, serde_json::json!({}), serde_json::json!({}));
        let path = scratch.0.join(name);
        std::fs::write(&path, creds(&jwt, &user)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let app_creds = write_creds("app.creds", &app);
    let sys_creds = write_creds("sys.creds", &system);
    // Signed by an account the operator never issued.
    let stranger_creds = write_creds("stranger.creds", &stranger);
    for target in targets(&scratch, &config) {
        let url = format!("nats://127.0.0.1:{}", target.port);
        let sub = listening(&[
            "sub", "x", "-s", &url, "--creds", &app_creds, "--count", "1",
        ]);
        let ran = tool(&["pub", "x", "signed", "-s", &url, "--creds", &app_creds]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert!(finish(sub, Duration::from_secs(10))
            .stdout
            .contains("signed"));
        let ran = tool(&[
            "server", "ping", "-s", &url, "--creds", &sys_creds, "--expect", "1",
        ]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        let ran = tool(&["pub", "x", "y", "-s", &url, "--creds", &stranger_creds]);
        assert_one_line_error(&ran, "Authorization Violation");
    }
}

#[test]
fn tls_with_a_ca_and_a_client_certificate() {
    use common::pki::Pki;
    let pki = Pki::new("tools-tls");
    let scratch = Scratch::new("tools-tls-servers");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let config = format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}\n",
        path(&pki.server_cert),
        path(&pki.server_key),
        path(&pki.ca)
    );
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    for target in targets(&scratch, &config) {
        let url = format!("tls://localhost:{}", target.port);
        let tls = ["--tlsca", &ca, "--tlscert", &cert, "--tlskey", &key];
        let ran = tool(&[&["pub", "x", "over tls", "-s", &url][..], &tls].concat());
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        // No client certificate: the server refuses the handshake.
        let ran = tool(&["pub", "x", "y", "-s", &url, "--tlsca", &ca]);
        assert_eq!(ran.code, 1, "{}: {}", target.name, ran.stdout);
        assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
        // A server certificate from a CA we were not told to trust.
        let ran = tool(
            &[
                &["pub", "x", "y", "-s", &url, "--tlsca", &cert][..],
                &tls[2..],
            ]
            .concat(),
        );
        assert_one_line_error(&ran, "TLS handshake");
    }
}

/// A runtime for the async-nats client that checks what the tools did.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn kv_tools_and_an_async_nats_client_agree_on_both_servers() {
    let scratch = Scratch::new("tools-kv");
    let rt = runtime();
    for target in js_targets(&scratch) {
        let url = format!("nats://127.0.0.1:{}", target.port);
        let s = ["-s", url.as_str()];
        let kv_tool = |args: &[&str]| tool(&[&["kv"][..], args, &s].concat());
        let ran = kv_tool(&["add", "cfg", "--history", "5"]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert!(ran.stdout.contains("History: 5"), "{}", ran.stdout);
        let ran = kv_tool(&["put", "cfg", "app.color", "blue"]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert_eq!(ran.stdout, "cfg > app.color revision 1\n");

        // A real client reads what the tool wrote, and writes what the tool reads.
        let client = rt.block_on(async_nats::connect(&url)).unwrap();
        let js = async_nats::jetstream::new(client);
        let kv = rt.block_on(js.get_key_value("cfg")).unwrap();
        let got = rt.block_on(kv.get("app.color")).unwrap();
        assert_eq!(got.as_deref(), Some(&b"blue"[..]), "{}", target.name);
        rt.block_on(kv.put("app.size", "10".into())).unwrap();
        rt.block_on(kv.put("app.color", "green".into())).unwrap();
        let ran = kv_tool(&["get", "cfg", "app.color", "--raw"]);
        assert_eq!(ran.stdout, "green\n", "{}: {}", target.name, ran.stderr);
        let ran = kv_tool(&["get", "cfg", "app.size"]);
        assert!(
            ran.stdout
                .starts_with("cfg > app.size revision: 2 created @ ")
                && ran.stdout.ends_with("\n\n10\n"),
            "{}",
            ran.stdout
        );
        let ran = kv_tool(&["get", "cfg", "app.size", "--json"]);
        let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(doc["subject"], "$KV.cfg.app.size");
        assert_eq!(doc["data"], "MTA=", "{}", target.name);

        let ran = kv_tool(&["del", "cfg", "app.size"]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert_eq!(rt.block_on(kv.get("app.size")).unwrap(), None);
        assert_one_line_error(&kv_tool(&["get", "cfg", "app.size"]), "not found");

        let ran = kv_tool(&["ls"]);
        assert!(
            ran.stdout.lines().nth(1).unwrap_or("").starts_with("cfg "),
            "{}",
            ran.stdout
        );
        let ran = kv_tool(&["ls", "--json"]);
        let buckets: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(buckets[0]["config"]["name"], "KV_cfg", "{}", target.name);
        assert_eq!(
            kv_tool(&["ls", "cfg"]).stdout,
            "app.color\n",
            "{}",
            target.name
        );

        let ran = kv_tool(&["history", "cfg", "app.color", "--json"]);
        let history: Value = serde_json::from_str(&ran.stdout).unwrap();
        let values: Vec<(u64, &str)> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["revision"].as_u64().unwrap(),
                    e["value"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(values, [(1, "blue"), (3, "green")], "{}", target.name);
        let entries = rt.block_on(kv.entry("app.color")).unwrap().unwrap();
        assert_eq!(entries.revision, 3);

        // The latest value of each key (the delete too), then a change made by async-nats.
        let watch = listening(&["kv", "watch", "cfg", "--count", "3", "--json", "-s", &url]);
        rt.block_on(kv.put("app.new", "x".into())).unwrap();
        let got = finish(watch, Duration::from_secs(10));
        assert_eq!(got.code, 0, "{}: {}", target.name, got.stderr);
        let seen: Vec<(String, String, String)> = json_lines(&got.stdout)
            .iter()
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap().to_string();
                (text("key"), text("operation"), text("value"))
            })
            .collect();
        let expected = [
            ("app.color", "PUT", "green"),
            ("app.size", "DEL", ""),
            ("app.new", "PUT", "x"),
        ];
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(seen, expected, "{}", target.name);
        let ran = tool(&["kv", "watch", "cfg", "app.new", "--count", "1", "-s", &url]);
        assert!(
            ran.stdout.ends_with("] PUT cfg > app.new: x\n"),
            "{}",
            ran.stdout
        );
    }
}

#[test]
fn stream_tools_and_an_async_nats_client_agree_on_both_servers() {
    let scratch = Scratch::new("tools-stream");
    let rt = runtime();
    for target in js_targets(&scratch) {
        let url = format!("nats://127.0.0.1:{}", target.port);
        let s = ["-s", url.as_str()];
        let stream_tool = |args: &[&str]| tool(&[&["stream"][..], args, &s].concat());
        let ran = stream_tool(&[
            "add",
            "ORDERS",
            "--subjects",
            "orders.*,ship.>",
            "--storage",
            "memory",
        ]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert!(
            ran.stdout.starts_with("Stream ORDERS was created"),
            "{}",
            ran.stdout
        );

        let client = rt.block_on(async_nats::connect(&url)).unwrap();
        let js = async_nats::jetstream::new(client);
        for (subject, body) in [("orders.new", "one"), ("ship.a.b", "two")] {
            let ack = rt.block_on(js.publish(subject, body.into())).unwrap();
            rt.block_on(ack.into_future()).unwrap();
        }
        let mut stream = rt.block_on(js.get_stream("ORDERS")).unwrap();
        let info = rt.block_on(stream.info()).unwrap().clone();
        assert_eq!(
            info.config.subjects,
            ["orders.*", "ship.>"],
            "{}",
            target.name
        );
        assert_eq!(
            info.config.storage,
            async_nats::jetstream::stream::StorageType::Memory
        );

        let ran = stream_tool(&["ls"]);
        let row = ran
            .stdout
            .lines()
            .find(|l| l.starts_with("ORDERS "))
            .unwrap_or_default();
        assert!(
            row.contains(" 2 ") && row.ends_with("orders.*, ship.>"),
            "{}",
            ran.stdout
        );
        let ran = stream_tool(&["ls", "--json"]);
        let list: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(list[0]["config"]["name"], "ORDERS");
        let ran = stream_tool(&["info", "ORDERS", "--json"]);
        let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(doc["state"]["messages"], info.state.messages);
        assert_eq!(doc["state"]["last_seq"], 2, "{}", target.name);
        let ran = stream_tool(&["info", "ORDERS"]);
        assert!(
            ran.stdout.contains("Messages: 2") && ran.stdout.contains("Storage: memory"),
            "{}",
            ran.stdout
        );

        let ran = stream_tool(&["get", "ORDERS", "2"]);
        assert!(
            ran.stdout.starts_with("Item: ORDERS#2 received ")
                && ran.stdout.contains("on Subject ship.a.b"),
            "{}",
            ran.stdout
        );
        assert!(ran.stdout.ends_with("\n\ntwo\n"), "{}", ran.stdout);
        let ran = stream_tool(&["get", "ORDERS", "--last-for", "orders.new", "--json"]);
        let doc: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(doc["message"]["seq"], 1, "{}", target.name);
        assert_one_line_error(&stream_tool(&["get", "ORDERS", "9"]), "no message found");

        let ran = stream_tool(&["purge", "ORDERS", "--subject", "orders.*"]);
        assert_eq!(
            ran.stdout, "Purged 1 messages from stream ORDERS\n",
            "{}",
            target.name
        );
        let info = rt.block_on(stream.info()).unwrap();
        assert_eq!(info.state.messages, 1);
        let ran = stream_tool(&["rm", "ORDERS"]);
        assert_eq!(ran.code, 0, "{}: {}", target.name, ran.stderr);
        assert!(
            rt.block_on(js.get_stream("ORDERS")).is_err(),
            "{}",
            target.name
        );
        assert_one_line_error(&stream_tool(&["info", "ORDERS"]), "stream not found");
        assert_eq!(stream_tool(&["ls"]).stdout, "No streams defined\n");
    }
}

#[test]
fn kv_and_stream_bad_input_is_one_line_and_a_failure_exit() {
    let scratch = Scratch::new("tools-js-bad");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("nats://{free}");
    assert_one_line_error(&tool(&["kv", "ls", "-s", &nowhere]), "cannot connect");
    assert_one_line_error(&tool(&["stream", "ls", "-s", &nowhere]), "cannot connect");
    assert_one_line_error(&tool(&["kv", "add", "a.b"]), "invalid bucket name");
    assert_one_line_error(&tool(&["kv", "put", "b", ".k", "v"]), "invalid key");
    assert_one_line_error(&tool(&["kv", "watch", "b", "a b"]), "invalid key");
    assert_one_line_error(&tool(&["kv", "add", "b", "--history", "65"]), "--history");
    assert_one_line_error(&tool(&["kv", "frob"]), "unknown kv command");
    assert_one_line_error(&tool(&["stream", "add", "a b"]), "invalid stream name");
    assert_one_line_error(
        &tool(&["stream", "add", "S", "--storage", "disk"]),
        "--storage",
    );
    assert_one_line_error(
        &tool(&["stream", "get", "S", "-s", &nowhere]),
        "cannot connect",
    );
    // Servers without JetStream.
    for target in targets(&scratch, CONFIG) {
        let url = target.url("app");
        let ran = tool(&["kv", "ls", "-s", &url]);
        assert_one_line_error(&ran, "JetStream is not enabled");
        let ran = tool(&["stream", "info", "S", "-s", &url]);
        assert_one_line_error(&ran, "JetStream is not enabled");
    }
    // No such bucket, key or stream.
    let scratch = Scratch::new("tools-js-bad-js");
    for target in js_targets(&scratch) {
        let url = format!("nats://127.0.0.1:{}", target.port);
        for args in [
            &["kv", "get", "none", "k"][..],
            &["kv", "put", "none", "k", "v"],
            &["kv", "del", "none", "k"],
            &["kv", "ls", "none"],
            &["kv", "watch", "none"],
            &["kv", "history", "none", "k"],
        ] {
            let ran = tool(&[args, &["-s", url.as_str()]].concat());
            assert_one_line_error(&ran, "bucket \"none\" not found");
        }
        assert_eq!(tool(&["kv", "add", "b", "-s", &url]).code, 0);
        assert_one_line_error(
            &tool(&["kv", "get", "b", "k", "-s", &url]),
            "key \"k\" not found",
        );
        assert_one_line_error(
            &tool(&["kv", "history", "b", "k", "-s", &url]),
            "key \"k\" not found",
        );
        for args in [&["rm", "S"][..], &["purge", "S"], &["get", "S", "1"]] {
            let ran = tool(&[&["stream"][..], args, &["-s", url.as_str()]].concat());
            assert_one_line_error(&ran, "stream not found");
        }
    }
}
