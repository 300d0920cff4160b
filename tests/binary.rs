//! The built binary run as a process, the way client test harnesses run nats-server: under the
//! name `nats-server`, with their flags, reading the log for the port.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use common::process::{
    http_get, listening_port, monitor_addr, read_line, reference_server, run, wait_for_log,
    Process, Scratch, WAIT,
};

#[test]
fn version_line_parses_as_nats_server() {
    let scratch = Scratch::new("version");
    let out = run(&scratch.nats_server(), &["-v"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("nats-server: v2.15.1"), "{stdout}");
    let out = run(Path::new(env!("CARGO_BIN_EXE_tern")), &["--version"]);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("tern: v2.15.1"));
}

#[test]
fn help_and_bad_flags() {
    let tern = Path::new(env!("CARGO_BIN_EXE_tern"));
    let out = run(tern, &["-h"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: nats-server [options]"));

    let out = run(tern, &["-bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "flag provided but not defined: -bogus\n"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"));

    let out = run(tern, &["--help_tls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not support yet"));

    // As nats-server 2.15.1: `nats-server: TLS Server certificate must be present and valid`.
    let out = run(tern, &["--tls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("TLS Server certificate must be present and valid"));
}

#[test]
fn serves_with_harness_flags_and_logs_like_nats_server() {
    let scratch = Scratch::new("harness");
    let log = scratch.0.join("server.log");
    let pid = scratch.0.join("server.pid");
    let store = scratch.0.join("store");
    let (mut server, text) = Process::start(
        Command::new(scratch.nats_server())
            .args(["-a", "127.0.0.1", "-p", "-1", "-DV", "-l"])
            .arg(&log)
            .arg("-P")
            .arg(&pid)
            .arg("--store_dir")
            .arg(&store),
        &log,
    );
    let port = listening_port(&text).expect("listening line");
    assert_ne!(port, 0);
    // Harnesses need the listening line before the ready line.
    assert!(
        text.find("Listening for client connections").unwrap()
            < text.find("Server is ready").unwrap()
    );
    assert!(text.contains("[INF] Starting nats-server"));
    // As nats-server, a store directory alone does not turn JetStream on.
    assert!(!text.contains("Starting JetStream"), "{text}");
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("[{}] ", server.0.id())),
        "{first}"
    );
    assert_eq!(
        std::fs::read_to_string(&pid).unwrap().trim(),
        server.0.id().to_string()
    );

    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let info = read_line(&mut reader);
    assert!(info.contains(&format!("\"port\":{port}")), "{info}");
    let mut writer = stream;
    writer.write_all(b"CONNECT {\"verbose\":false,\"name\":\"probe\"}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\nPING\r\n").unwrap();
    assert_eq!(read_line(&mut reader), "MSG foo 1 5\r\n");
    assert_eq!(read_line(&mut reader), "hello\r\n");
    assert_eq!(read_line(&mut reader), "PONG\r\n");

    let text = wait_for_log(&log, "traces", |t| t.contains("<<- [PING]"));
    assert!(text.contains("[DBG] 127.0.0.1:"), "{text}");
    assert!(text.contains(" - Client connection created"));
    assert!(text.contains("[TRC] 127.0.0.1:"));
    assert!(text.contains(" - \"probe\" - <<- [SUB foo 1]"), "{text}");
    assert!(text.contains("<<- [PUB foo 5]"));
    assert!(text.contains("<<- MSG_PAYLOAD: [\"hello\"]"));
    assert!(text.contains("->> [PONG]"));

    // SIGTERM: stop accepting, close clients, exit 0.
    server.signal("TERM");
    assert_eq!(server.wait_exit(), 0);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Trapped \"terminated\" signal"), "{text}");
    assert!(
        text.contains("Client connection closed: Server Shutdown"),
        "{text}"
    );
    assert!(text.contains("[INF] Server Exiting.."));
}

#[test]
fn sigint_flushes_and_exits_zero_logging_to_stderr() {
    let scratch = Scratch::new("sigint");
    let mut child = Command::new(scratch.nats_server())
        .args(["-a", "127.0.0.1", "-p", "-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut server = Process(child);
    let mut port = None;
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(p) = listening_port(&line) {
            port = Some(p);
        }
        if line.contains("Server is ready") {
            break;
        }
        line.clear();
    }
    let port = port.expect("listening line on stderr");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // Wait until the server has accepted the connection (its INFO is readable), so the signal
    // cannot land before the accept and leave nothing to flush.
    stream.peek(&mut [0u8; 1]).unwrap();
    server.signal("INT");
    assert_eq!(server.wait_exit(), 0);
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    assert!(
        received.starts_with(b"INFO {"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(
        rest.contains("[INF] Trapped \"interrupt\" signal"),
        "{rest}"
    );
    assert!(rest.contains("[INF] Server Exiting.."), "{rest}");
    let mut stdout = String::new();
    server
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(stdout, "", "nothing goes to stdout");
}

/// The fatal line of a server that could not bind one of its ports (the part after `[FTL] `).
fn fatal_line(program: &Path, args: &[&str]) -> String {
    let out = run(program, args);
    assert_eq!(out.status.code(), Some(1), "{}", program.display());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find_map(|line| line.split_once("[FTL] ").map(|(_, text)| text.to_string()));
    line.unwrap_or_else(|| panic!("no fatal line from {}: {stderr}", program.display()))
}

/// A busy client, route or leafnode port stops the server with nats-server's line for that port.
#[test]
fn a_busy_port_is_a_fatal_error_worded_as_nats_servers() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let scratch = Scratch::new("busy-port");
    let leaf_conf = scratch.0.join("leaf.conf");
    std::fs::write(
        &leaf_conf,
        format!("leafnodes {{ listen: 127.0.0.1:{port} }}\n"),
    )
    .unwrap();
    let route = format!("nats://127.0.0.1:{port}");
    let cases: [Vec<&str>; 3] = [
        vec!["-a", "127.0.0.1", "-p", &port],
        vec!["-a", "127.0.0.1", "-p", "-1", "--cluster", &route],
        vec![
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-c",
            leaf_conf.to_str().unwrap(),
        ],
    ];
    let tern = Path::new(env!("CARGO_BIN_EXE_tern"));
    for args in cases {
        let theirs = match reference_server() {
            Some(reference) => fatal_line(&reference, &args),
            None => continue,
        };
        assert!(theirs.contains(&port), "{theirs}");
        assert_eq!(fatal_line(tern, &args), theirs, "{args:?}");
    }
}

/// What the nats.py harness does: `-m`, then poll `GET /varz` until it answers 200, then read
/// `in_msgs` and `in_bytes` after publishing.
#[test]
fn monitor_flag_serves_varz_like_nats_server() {
    let scratch = Scratch::new("monitor");
    let log = scratch.0.join("server.log");
    let (mut server, text) = Process::start(
        Command::new(scratch.nats_server())
            .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-l"])
            .arg(&log)
            .arg("--ports_file_dir")
            .arg(&scratch.0),
        &log,
    );
    // nats-server's order: the monitor line, then the client line, then ready.
    let monitor_at = text
        .find("[INF] Starting http monitor on 127.0.0.1:")
        .unwrap();
    assert!(monitor_at < text.find("Listening for client connections").unwrap());
    let monitor = monitor_addr(&text).unwrap();
    let port = listening_port(&text).unwrap();
    let ports_file = scratch
        .0
        .join(format!("nats-server_{}.ports", server.0.id()));
    let ports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ports_file).unwrap()).unwrap();
    assert_eq!(
        ports,
        serde_json::json!({
            "nats": [format!("nats://127.0.0.1:{port}")],
            "monitoring": [format!("http://{monitor}")],
        })
    );

    let deadline = std::time::Instant::now() + WAIT;
    let varz = loop {
        if let Some((200, body)) = http_get(&monitor, "/varz") {
            break serde_json::from_str::<serde_json::Value>(&body).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "/varz never answered");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(varz["in_msgs"], 0);
    assert_eq!(varz["http_port"], -1);

    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    assert!(read_line(&mut reader).starts_with("INFO "));
    conn.write_all(b"CONNECT {\"verbose\":false}\r\nPUB a 3\r\nabc\r\nPING\r\n")
        .unwrap();
    assert_eq!(read_line(&mut reader), "PONG\r\n");
    let (_, body) = http_get(&monitor, "/varz").unwrap();
    let varz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (varz["in_msgs"].as_u64(), varz["in_bytes"].as_u64()),
        (Some(1), Some(3))
    );
    let (_, body) = http_get(&monitor, "/connz").unwrap();
    let connz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(connz["connections"][0]["in_bytes"], 3);

    server.signal("TERM");
    assert_eq!(server.wait_exit(), 0);
    assert!(!ports_file.exists());
}

/// On a wildcard address nats-server lists every interface's address in its ports file,
/// interface by interface, IPv6 in brackets; tern's file must be the same text but for ports.
#[test]
fn wildcard_ports_file_lists_every_interface_like_nats_server() {
    let Some(reference) = common::reference::nats_server() else {
        return;
    };
    let scratch = Scratch::new("ports-wildcard");
    let mut files = Vec::new();
    for (name, binary) in [
        ("nats-server", reference),
        ("tern", env!("CARGO_BIN_EXE_tern").into()),
    ] {
        let dir = scratch.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let _server = Process(
            Command::new(binary)
                .args(["-a", "0.0.0.0", "-p", "-1", "-m", "-1", "--ports_file_dir"])
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let text = common::process::wait_for_ports_file(&dir);
        // Each listener's port is random: keep everything else.
        let ports: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut text = text.clone();
        for key in ["nats", "monitoring"] {
            let url = ports[key][0].as_str().unwrap();
            let port = url.rsplit_once(':').unwrap().1;
            text = text.replace(&format!(":{port}\""), ":PORT\"");
        }
        files.push(text);
    }
    assert!(files[0].contains("127.0.0.1"), "{}", files[0]);
    assert_eq!(files[1], files[0], "tern's ports file, then nats-server's");
}

#[test]
fn https_monitoring_without_a_certificate_is_fatal_as_in_nats_server() {
    let tern = Path::new(env!("CARGO_BIN_EXE_tern"));
    let out = run(tern, &["-a", "127.0.0.1", "-p", "-1", "-ms", "-1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[FTL] Can't start monitoring: TLS cert and key required for HTTPS"),
        "{stderr}"
    );
}

#[test]
fn monitor_port_in_use_is_fatal_with_nats_server_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let tern = Path::new(env!("CARGO_BIN_EXE_tern"));
    let out = run(tern, &["-a", "127.0.0.1", "-p", "-1", "-m", &port]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "[FTL] Can't start monitoring: can't listen to the monitor port: listen tcp \
         127.0.0.1:{port}: bind: address already in use"
    );
    assert!(stderr.contains(&want), "{stderr}");
}

/// The soft and hard "Max open files" of a running process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[test]
fn raises_its_open_file_limit_like_nats_server() {
    // nats-server (the Go runtime) raises its soft limit to the hard limit; a server left at a
    // shell's soft 1024 would refuse clients long before nats-server does.
    let scratch = Scratch::new("nofile");
    let log = scratch.0.join("server.log");
    let script = format!(
        "ulimit -Sn 256 && exec {} -a 127.0.0.1 -p -1 -l {}",
        env!("CARGO_BIN_EXE_tern"),
        log.display()
    );
    let (server, _) = Process::start(Command::new("sh").args(["-c", &script]), &log);
    let (soft, hard) = open_file_limits(server.0.id());
    assert_eq!(soft, hard, "soft open-file limit left below the hard limit");
}

/// Go's net.Listen asks for net.core.somaxconn; 128 (std's and tokio's bind) makes the kernel
/// drop handshakes from a burst of a few hundred clients connecting at once. With the server
/// stopped (SIGSTOP), nothing is accepted, so every connect that completes sits in the accept
/// queue: a burst of 500 completes only if the backlog holds them all.
#[test]
fn listens_with_the_kernels_largest_backlog_like_nats_server() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("Linux: /proc/sys/net/core/somaxconn")
        .trim()
        .parse()
        .unwrap();
    let scratch = Scratch::new("backlog");
    let log = scratch.0.join("server.log");
    let (server, text) = Process::start(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["-a", "127.0.0.1", "-p", "-1", "-l"])
            .arg(&log),
        &log,
    );
    let port = listening_port(&text).unwrap();
    let burst = somaxconn.min(500);
    assert!(burst > 129, "somaxconn {somaxconn} leaves nothing to check");
    let pid = server.0.id() as i32;
    // SAFETY: kill(2) on the child this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let mut queued = Vec::new();
    for n in 0..burst {
        // A full accept queue drops the SYN, and the connect would wait for retransmits: the
        // timeout only stops the test from hanging on that.
        match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), WAIT) {
            Ok(conn) => queued.push(conn),
            Err(err) => panic!("connect {n} of {burst} with the server stopped: {err}"),
        }
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_eq!(queued.len(), burst);
}

/// Start-up and connection log lines for a secured server, as nats-server 2.15.1 prints them:
/// the plaintext password warning (before the configuration file line), the TLS line after the
/// listening line, the `"$G/user:u"` prefix once a client has authenticated (after its name),
/// and CONNECT traced with its password redacted.
#[test]
fn logs_plaintext_passwords_tls_and_the_authenticated_user() {
    let scratch = Scratch::new("secure-log");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let conf = scratch.0.join("secure.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:-1\nallow_non_tls: true\n\
             authorization {{ users: [{{user: u, password: p}}] }}\n\
             tls {{ cert_file: {:?}, key_file: {:?} }}\n",
            fixtures.join("rsa.pem"),
            fixtures.join("rsa-pkcs1.key")
        ),
    )
    .unwrap();
    let log = scratch.0.join("server.log");
    let (mut server, text) = Process::start(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["-DV", "-c"])
            .arg(&conf)
            .arg("-l")
            .arg(&log),
        &log,
    );
    let warning = text
        .find("[WRN] Plaintext passwords detected, use nkeys or bcrypt\n")
        .expect("plaintext password warning");
    assert!(warning < text.find("Using configuration file").unwrap());
    let listening = text.find("Listening for client connections").unwrap();
    let tls = text
        .find("[INF] TLS available for client connections\n")
        .expect("TLS line");
    assert!(listening < tls && tls < text.find("Server is ready").unwrap());

    let port = listening_port(&text).expect("listening line");
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert!(read_line(&mut reader).contains("\"tls_available\":true"));
    let mut writer = stream;
    writer
        .write_all(b"CONNECT {\"verbose\":false,\"name\":\"probe\",\"user\":\"u\",\"pass\":\"p\"}\r\nSUB foo 1\r\nPING\r\n")
        .unwrap();
    assert_eq!(read_line(&mut reader), "PONG\r\n");
    let text = wait_for_log(&log, "traces", |t| t.contains("<<- [PING]"));
    assert!(
        text.contains(" - cid:1 - \"probe\" - \"$G/user:u\" - <<- [SUB foo 1]"),
        "{text}"
    );
    // The password never reaches the log.
    assert!(
        text.contains(
            r#"<<- [CONNECT {"verbose":false,"name":"probe","user":"u","pass":"[REDACTED]"}]"#
        ),
        "{text}"
    );
    server.signal("TERM");
    assert_eq!(server.wait_exit(), 0);
}
