//! Shared test helpers: an in-process server on an ephemeral port, and a raw protocol client.
#![allow(dead_code)]

pub mod cluster;
pub mod jetstream;
pub mod jwt;
pub mod pki;
pub mod process;
pub mod reference;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern::server::Shared;
use tern::{Options, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single expectation may wait.
pub const WAIT: Duration = Duration::from_secs(5);

/// A tern server running in this process on 127.0.0.1 and a random port; shut down on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The HTTP monitor's address, when `http_port` was set.
    pub monitor: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::with(Options::default()).await
    }

    pub async fn with(mut opts: Options) -> TestServer {
        opts.host = "127.0.0.1".to_string();
        TestServer::on_host(opts).await
    }

    /// As [`TestServer::with`], on `opts.host` as given (the default is `0.0.0.0`).
    pub async fn on_host(mut opts: Options) -> TestServer {
        opts.port = 0;
        let server = Server::bind(opts).await.expect("bind");
        let addr = server.local_addr();
        let monitor = server.monitor_addr();
        let shared = server.shared();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            monitor,
            shared,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// A raw client that has read the INFO line.
    pub async fn raw(&self) -> Raw {
        Raw::connect(self.addr).await
    }

    /// Shuts the server down and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT * 2, task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client speaking the raw protocol.
pub struct Raw {
    pub stream: TcpStream,
    pub info: serde_json::Value,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and reads the INFO line.
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut raw = Raw {
            stream,
            info: serde_json::Value::Null,
            buf: Vec::new(),
        };
        let line = raw.read_line().await;
        let json = line.strip_prefix("INFO ").expect("INFO first").trim_end();
        raw.info = serde_json::from_str(json).expect("INFO json");
        raw
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.expect("send");
    }

    /// Reads until at least `n` bytes are buffered (panics after `WAIT`).
    async fn fill(&mut self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 65536];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out; have {:?}", String::from_utf8_lossy(&self.buf))
                })
                .expect("read");
            assert!(
                read > 0,
                "closed; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..read]);
        }
    }

    /// Reads one line (through `\n`).
    pub async fn read_line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                return String::from_utf8_lossy(&line).into_owned();
            }
            let have = self.buf.len();
            self.fill(have + 1).await;
        }
    }

    /// Asserts that the next bytes received are exactly `expected`.
    pub async fn expect(&mut self, expected: impl AsRef<[u8]>) {
        let expected = expected.as_ref();
        self.fill(expected.len()).await;
        let got: Vec<u8> = self.buf.drain(..expected.len()).collect();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "unexpected bytes from the server"
        );
    }

    /// Sends PING and asserts that everything before the PONG is exactly `expected`: proves
    /// that nothing else arrived without sleeping.
    pub async fn expect_before_pong(&mut self, expected: impl AsRef<[u8]>) {
        self.send("PING\r\n").await;
        let mut want = expected.as_ref().to_vec();
        want.extend_from_slice(b"PONG\r\n");
        self.expect(want).await;
    }

    /// Asserts that nothing arrives for `quiet` (real time). Only for checks where sending a
    /// PING as a barrier would itself change what the server does.
    pub async fn expect_nothing_for(&mut self, quiet: Duration) {
        let mut chunk = vec![0u8; 1024];
        if let Ok(read) = tokio::time::timeout(quiet, self.stream.read(&mut chunk)).await {
            let n = read.expect("read");
            panic!("unexpected {:?}", String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// Asserts that the server closes the connection after sending exactly `expected`.
    pub async fn expect_closed_after(&mut self, expected: impl AsRef<[u8]>) {
        self.expect_closed_after_pings(expected, false).await
    }

    /// As [`Raw::expect_closed_after`]; with `pings`, the server's own PINGs (its first comes
    /// two seconds after the connection, sooner than a slow machine may get through the test)
    /// are left out of what is compared.
    pub async fn expect_closed_after_pings(&mut self, expected: impl AsRef<[u8]>, pings: bool) {
        let expected = expected.as_ref();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut chunk = vec![0u8; 65536];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!("not closed; have {:?}", String::from_utf8_lossy(&self.buf))
                });
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        let got = String::from_utf8_lossy(&self.buf).into_owned();
        let got = match pings {
            true => got.replace("PING\r\n", ""),
            false => got,
        };
        assert_eq!(got, String::from_utf8_lossy(expected));
        self.buf.clear();
    }

    /// Reads one line, and for a MSG/HMSG line its payload too; returns them raw.
    pub async fn read_frame(&mut self) -> String {
        let line = self.read_line().await;
        if !(line.starts_with("MSG ") || line.starts_with("HMSG ")) {
            return line;
        }
        let size: usize = line
            .split_whitespace()
            .last()
            .and_then(|s| s.parse().ok())
            .expect("size");
        self.fill(size + 2).await;
        let body: Vec<u8> = self.buf.drain(..size + 2).collect();
        format!("{line}{}", String::from_utf8_lossy(&body))
    }

    /// Reads until `n` complete MSG/HMSG frames are buffered; returns them raw. The server's
    /// own PINGs (its first comes two seconds after the connection) are passed over.
    pub async fn read_msgs(&mut self, n: usize) -> Vec<String> {
        let mut frames = Vec::new();
        while frames.len() < n {
            let line = self.read_line().await;
            if line == "PING\r\n" {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let size: usize = parts.last().and_then(|s| s.parse().ok()).expect("size");
            self.fill(size + 2).await;
            let body: Vec<u8> = self.buf.drain(..size + 2).collect();
            frames.push(format!("{}{}", line, String::from_utf8_lossy(&body)));
        }
        frames
    }
}

/// Polls `check` until it holds (panics after `WAIT`).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Moves the runtime's clock forward by `by`, firing the server's timers, and lets time run
/// normally again. Reading sockets with the clock paused would let tokio's auto-advance race
/// the kernel's delivery of the bytes, so only the jump itself is virtual.
pub async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}
