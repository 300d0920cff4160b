//! JetStream: enabling it as nats-server 2.15.1 does (flags, the `jetstream` block, the start-up
//! lines harnesses parse, INFO), side by side with the reference server.

mod common;

use std::io::BufReader;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use common::process::{listening_port, read_line, reference_server, run, Process, Scratch, WAIT};

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
