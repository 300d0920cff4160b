//! Helpers for tests that run the built binary as a process.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tern-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// The binary, symlinked here as `nats-server`.
    pub fn nats_server(&self) -> PathBuf {
        let link = self.0.join("nats-server");
        if !link.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tern"), &link).unwrap();
        }
        link
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server process, killed on drop if the test did not stop it.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Spawns `command` (a server logging to `log`) with its standard streams closed and
    /// waits until it logs `Server is ready`; returns it with the log so far.
    pub fn start(command: &mut Command, log: &Path) -> (Process, String) {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = Process(child);
        let text = wait_for_log(log, "Server is ready", |t| t.contains("Server is ready"));
        (process, text)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status();
        assert!(status.unwrap().success());
    }

    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code().expect("exited normally");
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Polls the log file until `done` accepts its text.
pub fn wait_for_log(log: &Path, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "log never showed {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The port from `Listening for client connections on HOST:PORT`, as harnesses parse it.
pub fn listening_port(log: &str) -> Option<u16> {
    let line = log
        .lines()
        .find(|l| l.contains("Listening for client connections on "))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

pub fn read_line(stream: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    line
}

/// A blocking `GET path` over HTTP/1.1; the status and body, or `None` if nothing listens.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    // Go's server sends a large response in chunks.
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = match chunked {
        true => dechunk(body)?,
        false => body.to_string(),
    };
    Some((status, body))
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// The `host:port` from `Starting http monitor on HOST:PORT`.
pub fn monitor_addr(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("Starting http monitor on "))?;
    Some(line.rsplit(' ').next()?.trim().to_string())
}

/// Waits for the one `*.ports` file a server writes into `dir` and returns its text.
pub fn wait_for_ports_file(dir: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let file = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".ports"));
        if let Some(text) = file.and_then(|f| std::fs::read_to_string(f.path()).ok()) {
            // Written in one call, but it may be caught half-way.
            if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no ports file in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reference server (nats-server 2.15.1) for side-by-side comparisons; `None` only when
/// `TERN_SKIP_REFERENCE=1` (see `reference`).
pub fn reference_server() -> Option<PathBuf> {
    super::reference::nats_server()
}

/// A server process started with `-c config` on random client and monitor ports, and the
/// `host:port` of each, read from its ports file in `dir`.
pub fn start_with_ports(binary: &Path, config: &Path, dir: &Path) -> (Process, String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let process = Process(
        Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-c"])
            .arg(config)
            .arg("--ports_file_dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ports: serde_json::Value =
        serde_json::from_str(&wait_for_ports_file(dir)).expect("ports file");
    let url = |key: &str| {
        let url = ports[key][0].as_str().expect("url").to_string();
        url.rsplit_once("://").expect("scheme").1.to_string()
    };
    (process, url("nats"), url("monitoring"))
}

/// Every field path of `value` with its JSON type (`connections[].cid number`), for comparing
/// documents by shape. Objects whose keys are data (`http_req_stats`) are one field.
pub fn json_shape(value: &serde_json::Value) -> std::collections::BTreeSet<String> {
    use serde_json::Value;
    fn walk(path: &str, value: &Value, out: &mut std::collections::BTreeSet<String>) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(items) => {
                for item in items {
                    walk(&format!("{path}[]"), item, out);
                }
                "array"
            }
            Value::Object(map) => {
                if !path.ends_with("http_req_stats") {
                    for (key, item) in map {
                        let child = match path {
                            "" => key.clone(),
                            _ => format!("{path}.{key}"),
                        };
                        walk(&child, item, out);
                    }
                }
                "object"
            }
        };
        if !path.is_empty() {
            out.insert(format!("{path} {kind}"));
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk("", value, &mut out);
    out
}
