//! Configuration files, reload, lame duck mode and the operational signals, with the binary run
//! as a process the way deployments and client test harnesses run nats-server.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{
    http_get, listening_port, monitor_addr, read_line, run, wait_for_log, Process, Scratch, WAIT,
};

/// Starts the binary (as `nats-server`) with `-c <config>` plus `extra`, logging to a file,
/// and waits until it is ready. Returns the process, the log path and the client port.
fn start(scratch: &Scratch, config: &Path, extra: &[&str]) -> (Process, PathBuf, u16) {
    let log = scratch.0.join("server.log");
    let (process, text) = Process::start(
        Command::new(scratch.nats_server())
            .arg("-c")
            .arg(config)
            .arg("-l")
            .arg(&log)
            .args(extra),
        &log,
    );
    let port = listening_port(&text).expect("listening line");
    (process, log, port)
}

/// A raw connection: the INFO line read, then the CONNECT sent.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    info: String,
}

impl Conn {
    fn open(port: u16, connect: &str) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let info = read_line(&mut reader);
        let mut conn = Conn {
            reader,
            writer: stream,
            info,
        };
        conn.send(&format!("CONNECT {connect}\r\n"));
        conn
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        read_line(&mut self.reader)
    }

    /// Everything until the server closes the connection.
    fn rest(&mut self) -> String {
        let mut rest = String::new();
        let _ = self.reader.read_to_string(&mut rest);
        rest
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn signal(scratch: &Scratch, which: &str, pid_file: &Path) {
    let status = Command::new(scratch.nats_server())
        .arg("--signal")
        .arg(format!("{which}={}", pid_file.display()))
        .status()
        .unwrap();
    assert!(status.success(), "--signal {which} failed");
}

#[test]
fn dash_t_checks_a_file() {
    let scratch = Scratch::new("conf-t");
    let good = scratch.0.join("good.conf");
    write(
        &good,
        "port: 4333\nmax_payload: 2MB\nping_interval: \"30s\"\n",
    );
    let out = run(
        &scratch.nats_server(),
        &["-t", "-c", good.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is valid"));

    let unknown = scratch.0.join("unknown.conf");
    write(&unknown, "port: 4333\nfoo: 1\n");
    let out = run(
        &scratch.nats_server(),
        &["-t", "-c", unknown.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown.conf:2:1: unknown field \"foo\""),
        "{stderr}"
    );

    let broken = scratch.0.join("broken.conf");
    write(&broken, "port: 4333\nauthorization {\n  user: a\n");
    let out = run(
        &scratch.nats_server(),
        &["-t", "-c", broken.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.conf:"));

    // TLS is supported: a tls block fails only for a real reason, such as a certificate file
    // that is not there (nats-server 2.15.1's text, from a `tls` block on line 2), and passes
    // with real files.
    let missing = scratch.0.join("missing.conf");
    write(
        &missing,
        "port: 4333\ntls {\n  cert_file: a.pem\n  key_file: b.pem\n}\n",
    );
    let out = run(
        &scratch.nats_server(),
        &["-t", "-c", missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some(
            format!(
                "nats-server: {}:2:1: error parsing X509 certificate/key pair: open a.pem: \
                 no such file or directory",
                missing.display()
            )
            .as_str()
        )
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let tls = scratch.0.join("tls.conf");
    write(
        &tls,
        &format!(
            "port: 4333\ntls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
            fixtures.join("rsa.pem"),
            fixtures.join("rsa-pkcs1.key")
        ),
    );
    let out = run(&scratch.nats_server(), &["-t", "-c", tls.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // nats-server follows this with ` (sha256:<digest of the configuration>)`.
    assert!(
        stderr.starts_with(&format!(
            "nats-server: configuration file {} is valid",
            tls.display()
        )),
        "{stderr}"
    );
}

#[test]
fn harness_style_config_with_ports_file() {
    // What the nats.js harness writes: unquoted values, and the blocks it always adds.
    let scratch = Scratch::new("conf-harness");
    let config = scratch.0.join("server.conf");
    let ports = scratch.0.join("ports");
    std::fs::create_dir_all(&ports).unwrap();
    write(
        &config,
        &format!(
            "host: 127.0.0.1\nport: -1\nhttp: 127.0.0.1:-1\nleafnodes {{\n  listen: 127.0.0.1:-1\n}}\n\
             server_tags [\n  \"id:abc\"\n]\nports_file_dir: {}\nmax_payload: 4KB\n\
             jetstream {{\n  store_dir: '{}'\n}}\n",
            ports.display(),
            scratch.0.join("js").display()
        ),
    );
    let (mut server, log, port) = start(&scratch, &config, &[]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Using configuration file: "), "{text}");
    // The leafnodes block is served now.
    assert!(
        text.contains("Listening for leafnode connections on 127.0.0.1:"),
        "{text}"
    );
    let ports_file = ports.join(format!("nats-server_{}.ports", server.0.id()));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ports_file).unwrap()).unwrap();
    assert_eq!(json["nats"][0], format!("nats://127.0.0.1:{port}"));
    // `http: 127.0.0.1:-1`: a random monitor port, in the ports file and the log.
    let text = std::fs::read_to_string(&log).unwrap();
    let monitor = monitor_addr(&text).expect("Starting http monitor line");
    assert_eq!(json["monitoring"][0], format!("http://{monitor}"));
    let (status, body) = http_get(&monitor, "/varz").expect("monitor answers");
    assert_eq!(status, 200);
    let varz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(varz["port"], port);
    assert_eq!(varz["max_payload"], 4096);
    let conn = Conn::open(port, "{\"verbose\":false}");
    assert!(conn.info.contains("\"max_payload\":4096"), "{}", conn.info);

    server.signal("TERM");
    assert_eq!(server.wait_exit(), 0);
    assert!(!ports_file.exists(), "the ports file is removed at exit");
}

#[test]
fn flags_override_the_file() {
    let scratch = Scratch::new("conf-flags");
    let config = scratch.0.join("server.conf");
    write(&config, "listen: 127.0.0.1:1\nserver_name: from-file\n");
    let (mut server, _, port) = start(&scratch, &config, &["-p", "-1", "-n", "from-flag"]);
    assert_ne!(port, 1);
    let conn = Conn::open(port, "{}");
    assert!(
        conn.info.contains("\"server_name\":\"from-flag\""),
        "{}",
        conn.info
    );
    server.signal("INT");
    assert_eq!(server.wait_exit(), 0);
}

#[test]
fn reload_changes_users_and_limits_for_existing_connections() {
    let scratch = Scratch::new("conf-reload");
    let config = scratch.0.join("server.conf");
    let pid = scratch.0.join("server.pid");
    let users = |list: &str, max_payload: &str| {
        format!(
            "listen: 127.0.0.1:-1\npid_file: {}\nmax_payload: {max_payload}\n\
             authorization {{\n  users = [\n{list}\n  ]\n}}\n",
            pid.display()
        )
    };
    write(
        &config,
        &users(
            "    {user: alice, password: a1}\n    {user: bob, password: b1}",
            "1MB",
        ),
    );
    let (mut server, log, port) = start(&scratch, &config, &[]);

    let mut alice = Conn::open(
        port,
        "{\"user\":\"alice\",\"pass\":\"a1\",\"verbose\":false}",
    );
    let mut bob = Conn::open(port, "{\"user\":\"bob\",\"pass\":\"b1\",\"verbose\":false}");
    bob.send("SUB big 1\r\nPING\r\n");
    assert_eq!(bob.line(), "PONG\r\n");
    alice.send("PING\r\n");
    assert_eq!(alice.line(), "PONG\r\n");

    // Alice is removed, bob's password changes, and the payload limit shrinks.
    write(
        &config,
        &users(
            "    {user: bob, password: b2}\n    {user: carol, password: c1}",
            "1KB",
        ),
    );
    signal(&scratch, "reload", &pid);
    wait_for_log(&log, "reload", |t| {
        t.contains("Reloaded server configuration")
    });
    assert_eq!(alice.rest(), "-ERR 'Authorization Violation'\r\n");
    assert_eq!(bob.rest(), "-ERR 'Authorization Violation'\r\n");

    let mut carol = Conn::open(
        port,
        "{\"user\":\"carol\",\"pass\":\"c1\",\"verbose\":false}",
    );
    assert!(
        carol.info.contains("\"max_payload\":1024"),
        "{}",
        carol.info
    );
    carol.send("PING\r\n");
    assert_eq!(carol.line(), "PONG\r\n");
    carol.send("PUB big 2000\r\n");
    assert_eq!(carol.rest(), "-ERR 'Maximum Payload Violation'\r\n");
    let mut old_bob = Conn::open(port, "{\"user\":\"bob\",\"pass\":\"b1\"}");
    assert_eq!(old_bob.rest(), "-ERR 'Authorization Violation'\r\n");

    // A broken file leaves the running configuration alone.
    write(&config, "listen: 127.0.0.1:-1\nauthorization {\n");
    signal(&scratch, "reload", &pid);
    wait_for_log(&log, "failed reload", |t| {
        t.contains("Failed to reload server configuration")
    });
    let mut carol = Conn::open(
        port,
        "{\"user\":\"carol\",\"pass\":\"c1\",\"verbose\":false}",
    );
    carol.send("PING\r\n");
    assert_eq!(carol.line(), "PONG\r\n");

    signal(&scratch, "quit", &pid);
    assert_eq!(server.wait_exit(), 0);
}

#[test]
fn reload_applies_limits_to_connections_already_open() {
    let scratch = Scratch::new("conf-reload-limits");
    let config = scratch.0.join("server.conf");
    write(
        &config,
        "listen: 127.0.0.1:-1\nmax_payload: 100\nmax_subscriptions: 10\n",
    );
    let (mut server, log, port) = start(&scratch, &config, &[]);
    let mut conn = Conn::open(port, "{\"verbose\":false}");
    conn.send("PUB a 50\r\n");
    conn.send(&format!("{}\r\nPING\r\n", "x".repeat(50)));
    assert_eq!(conn.line(), "PONG\r\n");

    // max_payload is reloadable: the open connection is held to the new limit.
    write(
        &config,
        "listen: 127.0.0.1:-1\nmax_payload: 20\nmax_subscriptions: 10\n",
    );
    server.signal("HUP");
    wait_for_log(&log, "reload", |t| {
        t.contains("Reloaded server configuration")
    });
    conn.send("PUB a 50\r\n");
    assert_eq!(conn.rest(), "-ERR 'Maximum Payload Violation'\r\n");

    // max_subscriptions is not (nats-server refuses it too): the old value stays.
    write(
        &config,
        "listen: 127.0.0.1:-1\nmax_payload: 20\nmax_subscriptions: 2\n",
    );
    server.signal("HUP");
    let text = wait_for_log(&log, "refused reload", |t| {
        t.contains("Failed to reload server configuration")
    });
    assert!(
        text.contains("config reload not supported for MaxSubs: old=10, new=2"),
        "{text}"
    );
    let mut conn = Conn::open(port, "{\"verbose\":false}");
    conn.send("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n");
    assert_eq!(conn.line(), "PONG\r\n");
    server.signal("TERM");
    assert_eq!(server.wait_exit(), 0);
}

#[test]
fn lame_duck_mode_tells_clients_and_exits() {
    let scratch = Scratch::new("conf-ldm");
    let config = scratch.0.join("server.conf");
    let pid = scratch.0.join("server.pid");
    write(
        &config,
        &format!(
            "listen: 127.0.0.1:-1\npid_file: {}\nlame_duck_grace_period: \"300ms\"\n\
             lame_duck_duration: \"1s\"\n",
            pid.display()
        ),
    );
    let (mut server, log, port) = start(&scratch, &config, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let client = runtime.block_on(async {
        async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    let _ = events.send(event);
                }
            })
            .connect(format!("nats://127.0.0.1:{port}"))
            .await
            .unwrap()
    });
    let started = Instant::now();
    signal(&scratch, "ldm", &pid);
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, seen.recv())
                .await
                .expect("no ldm event");
            if matches!(event, Some(async_nats::Event::LameDuckMode)) {
                break;
            }
        }
    });
    // No new clients once in lame duck mode.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_eq!(server.wait_exit(), 0);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "grace period honoured"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Entering lame duck mode, stop accepting new clients"),
        "{text}"
    );
    drop(client);
}

#[test]
fn sigusr1_reopens_the_log_file() {
    let scratch = Scratch::new("conf-reopen");
    let config = scratch.0.join("server.conf");
    write(&config, "listen: 127.0.0.1:-1\ndebug: true\n");
    let (mut server, log, port) = start(&scratch, &config, &[]);
    let rotated = scratch.0.join("server.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    server.signal("USR1");
    // The signal is handled asynchronously: connect until a connection is logged in the new
    // file, so a connection made before the reopen does not fail the test.
    let mut conns = Vec::new();
    let deadline = Instant::now() + WAIT;
    let text = loop {
        conns.push(Conn::open(port, "{}"));
        std::thread::sleep(Duration::from_millis(50));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Client connection created") {
            break text;
        }
        assert!(Instant::now() < deadline, "log never reopened:\n{text}");
    };
    assert!(
        !text.contains("Starting nats-server"),
        "a fresh file after rotation"
    );
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("Server is ready"));
    server.signal("TERM");
    assert_eq!(server.wait_exit(), 0);
}

#[test]
fn signal_stop_kills_by_pid_file() {
    let scratch = Scratch::new("conf-stop");
    let config = scratch.0.join("server.conf");
    let pid = scratch.0.join("server.pid");
    write(
        &config,
        &format!("listen: 127.0.0.1:-1\npid_file: {}\n", pid.display()),
    );
    let (mut server, _, _) = start(&scratch, &config, &[]);
    signal(&scratch, "stop", &pid);
    let deadline = Instant::now() + WAIT;
    while server.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `-t` on cluster blocks next to nats-server 2.15.1: the same exit code and the same line
/// (the error at its position, or `valid` with the same digest) for each form of each field.
/// Known differences, left out: tern refuses ports beyond 65535 when it reads the file, gives
/// a position where nats-server gives none, and passes files with warnings.
#[test]
fn cluster_blocks_checked_as_nats_server_checks_them() {
    let Some(reference) = common::process::reference_server() else {
        return;
    };
    let scratch = Scratch::new("conf-cluster-t");
    let tern = scratch.nats_server();
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let fields = [
        "name: c1".to_string(),
        "name: 5".into(),
        "name: \"a b\"".into(),
        "name: \"\"".into(),
        "listen: \"nats://127.0.0.1:6222\"".into(),
        "listen: \":6222\"".into(),
        "listen: \"[::1]:6222\"".into(),
        "listen: \"::1\"".into(),
        "listen: \"127.0.0.1:x\"".into(),
        "listen: true".into(),
        "listen: 127.0.0.1:-1".into(),
        "host: 5".into(),
        "advertise: 5".into(),
        "cluster_advertise: \"x:1\"".into(),
        "no_advertise: \"yes\"".into(),
        "no_advertise: yes".into(),
        "connect_retries: \"3\"".into(),
        "connect_retries: -3".into(),
        "connect_backoff: 1".into(),
        "pool_size: \"3\"".into(),
        "pool_size: -1".into(),
        "accounts: [a, b]".into(),
        "accounts: a".into(),
        "compression: {colour: red}".into(),
        "compression: 5".into(),
        "compression: bogus".into(),
        "compression: {mode: s2_auto, rtt_thresholds: [x]}".into(),
        "compression: {mode: s2_auto, rtt_thresholds: [\"10ms\", \"50ms\"]}".into(),
        "ping_interval: \"x\"".into(),
        "ping_interval: \"10s\"".into(),
        "ping_max: \"3\"".into(),
        "write_deadline: \"x\"".into(),
        "write_timeout: bogus".into(),
        "write_timeout: retry".into(),
        "authorization { user: a, password: b, timeout: 0.5 }".into(),
        "authorization { token: x }".into(),
        "authorization { users: [{user: a, password: b}] }".into(),
        "authorization { user: a, colour: red }".into(),
        "authorization { user: 5 }".into(),
        "authorization { timeout: \"x\" }".into(),
        "permissions { import: \"foo\", export: [\"bar\", \"baz.>\"] }".into(),
        "permissions { import: { allow: \"foo\", deny: \"x\" }, export: { deny: \"y\" } }".into(),
        "permissions { import: \"foo\", allow_responses: true }".into(),
        "permissions { colour: red }".into(),
        "routes: \"x\"".into(),
        "routes: [\"nats-route://a b:4\"]".into(),
        "routes: [\"://x\", \"nats://h:1\"]".into(),
        "routes: [nats://h:1, \"nats://u:p^@h:4\"]".into(),
        "routes: [\"nats://h:4/%zz\"]".into(),
        "routes: [\"nats://[::1\"]".into(),
        "routes: [foo, \"\", \"h:4\", tls://h:1, nats-route://u:p@h:2]".into(),
        "tls { colour: red }".into(),
        "tls { cert_file: /nope.pem, key_file: /nope.key }".into(),
        format!("tls {{ cert_file: {tls}/ec.pem, key_file: {tls}/ec-sec1.key, timeout: 3 }}"),
        format!("tls {{ cert_file: {tls}/ec.pem, key_file: {tls}/ec-sec1.key, insecure: true }}"),
        "colour: red".into(),
    ];
    let mut differ = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let path = scratch.0.join(format!("cluster{i}.conf"));
        write(&path, &format!("cluster {{\n  port: -1\n  {field}\n}}\n"));
        let check = |binary: &Path| {
            let out = run(binary, &["-t", "-c", path.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            (
                out.status.code(),
                stderr.lines().next().unwrap_or("").to_string(),
            )
        };
        let (theirs, ours) = (check(&reference), check(&tern));
        if theirs != ours {
            differ.push(format!(
                "{field}\n  nats-server: {theirs:?}\n  tern:        {ours:?}"
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Reload with a cluster: a new cluster port is refused in nats-server 2.15.1's words (the
/// cluster keeps running as it was), new routes and route credentials are put in force.
#[test]
fn reload_refuses_a_new_cluster_port_and_takes_new_routes() {
    let scratch = Scratch::new("conf-reload-cluster");
    let config = scratch.0.join("server.conf");
    let pid = scratch.0.join("server.pid");
    let cluster = |port: u16, extra: &str| {
        format!(
            "listen: 127.0.0.1:-1\npid_file: {}\ncluster {{\n  name: c1\n  \
             listen: 127.0.0.1:{port}\n{extra}}}\n",
            pid.display()
        )
    };
    // A free port (tern will listen on it once it has routes).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    write(&config, &cluster(port, ""));
    let (mut server, log, _port) = start(&scratch, &config, &[]);

    write(&config, &cluster(port + 1, ""));
    signal(&scratch, "reload", &pid);
    let text = wait_for_log(&log, "refused reload", |t| {
        t.contains("Failed to reload server configuration")
    });
    assert!(
        text.contains(&format!(
            "config reload not supported for cluster port: old={port}, new={}",
            port + 1
        )),
        "{text}"
    );

    write(
        &config,
        &cluster(
            port,
            "  routes: [nats-route://127.0.0.1:16309]\n  authorization { user: u, password: p }\n",
        ),
    );
    signal(&scratch, "reload", &pid);
    wait_for_log(&log, "reload", |t| {
        t.contains("Reloaded server configuration")
    });

    signal(&scratch, "quit", &pid);
    assert_eq!(server.wait_exit(), 0);
}
