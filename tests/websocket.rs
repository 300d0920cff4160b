//! WebSocket clients: the upgrade, frames (a PUB split across frames, many operations in one
//! frame, text and binary), masking, control frames and close codes, permessage-deflate,
//! origin checks, the handshake timeout and HTTP errors, driven byte by byte against tern and
//! nats-server 2.15.1 side by side with the same configuration; async-nats over WebSocket
//! exchanging messages with a TCP client; `wss` with certificates made at test time; the
//! WebSocket block's own authorization and cookies; `/connz` and `/varz`.

mod common;

use std::path::Path;

use bytes::BytesMut;
use common::pki::Pki;
use common::process::{http_get, start_with_ports, Process, Scratch};
use common::{TestServer, WAIT};
use futures::StreamExt;
use rustls::pki_types::ServerName;
use tern::{Options, Server};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A raw WebSocket client: it writes frames as given (masked or not) and reads the server's
/// frames back, inflating compressed messages.
struct Ws {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    /// The answer to the upgrade request (head only).
    head: String,
}

/// One frame from the server.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    opcode: u8,
    fin: bool,
    compressed: bool,
    payload: Vec<u8>,
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A frame as a client sends it: masked with a fixed key unless `mask` is false.
fn frame(opcode: u8, payload: &[u8], mask: bool, fin: bool, rsv1: bool) -> Vec<u8> {
    let mut out = vec![opcode | if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 }];
    let m = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    if mask {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn binary(payload: &[u8]) -> Vec<u8> {
    frame(2, payload, true, true, false)
}

/// Deflates `data` as a permessage-deflate message (sync flush, tail removed).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = flate2::Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::new();
    let mut rest = &input[..];
    loop {
        out.reserve(64 * 1024);
        let before = d.total_in();
        d.decompress_vec(rest, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        rest = &rest[(d.total_in() - before) as usize..];
        if rest.is_empty() && out.len() < out.capacity() {
            return out;
        }
    }
}

impl Ws {
    /// Connects and sends the upgrade request with `extra` headers; reads the answer's head.
    async fn connect(addr: &str, extra: &str) -> Ws {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Ws::over(Box::new(tcp), extra).await
    }

    async fn over(stream: Box<dyn Stream>, extra: &str) -> Ws {
        let mut ws = Ws {
            stream,
            buf: BytesMut::new(),
            head: String::new(),
        };
        ws.send(upgrade_request(extra).as_bytes()).await;
        ws.head = ws.read_head().await;
        ws
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(_) => false,
            Err(_) => panic!("nothing from the server in time; have {:?}", self.buf),
        }
    }

    /// An HTTP head (through the blank line), or what came before the connection closed.
    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = self.buf.split_to(end + 4);
                return String::from_utf8_lossy(&head).into_owned();
            }
            if !self.fill().await {
                return String::from_utf8_lossy(&self.buf.split()).into_owned();
            }
        }
    }

    /// The next frame; `None` when the connection closes first.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, n)) = parse_frame(&self.buf) {
                let _ = self.buf.split_to(n);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// NATS bytes (from data frames, inflated) until they contain `want`; control frames are
    /// collected on the way.
    async fn nats_until(&mut self, want: &str, controls: &mut Vec<Frame>) -> String {
        let mut text = String::new();
        let mut compressed = Vec::new();
        while !text.contains(want) {
            let Some(f) = self.frame().await else {
                panic!("closed before {want:?}; got {text:?}");
            };
            match f.opcode {
                0..=2 if f.compressed || !compressed.is_empty() => {
                    compressed.extend_from_slice(&f.payload);
                    if f.fin {
                        text.push_str(&String::from_utf8_lossy(&inflate(&compressed)));
                        compressed.clear();
                    }
                }
                0..=2 => text.push_str(&String::from_utf8_lossy(&f.payload)),
                _ => controls.push(f),
            }
        }
        text
    }

    /// Reads the INFO the server sends first and returns its JSON.
    async fn info(&mut self) -> serde_json::Value {
        let text = self.nats_until("\r\n", &mut Vec::new()).await;
        let json = text.trim().strip_prefix("INFO ").expect("INFO first");
        serde_json::from_str(json).unwrap()
    }

    /// Every frame until the server closes the connection.
    async fn until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = self.frame().await {
            frames.push(f);
        }
        frames
    }
}

fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    assert_eq!(buf[1] & 0x80, 0, "servers never mask");
    let payload = buf.get(at..at + len)?.to_vec();
    at += len;
    Some((
        Frame {
            opcode: buf[0] & 0x0f,
            fin: buf[0] & 0x80 != 0,
            compressed: buf[0] & 0x40 != 0,
            payload,
        },
        at,
    ))
}

fn close_frame(status: u16, reason: &str) -> Frame {
    let mut payload = status.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    Frame {
        opcode: 8,
        fin: true,
        compressed: false,
        payload,
    }
}

fn options(text: &str) -> Options {
    let file = tern::config::conf::parse_str(text, Path::new("test.conf")).expect("conf");
    let mut opts = Options::default();
    opts.apply_file(&file, &mut Vec::new()).expect("options");
    opts
}

/// A server process (tern or nats-server) started with the same configuration.
struct Running {
    name: &'static str,
    _process: Process,
    _dir: Scratch,
    ws: String,
    monitor: String,
}

/// tern and, unless `TERN_SKIP_REFERENCE=1`, nats-server 2.15.1, both with `config`.
fn both(test: &str, config: &str) -> Vec<Running> {
    let mut servers = vec![("tern", Some(env!("CARGO_BIN_EXE_tern").into()))];
    if let Some(reference) = common::process::reference_server() {
        servers.push(("nats-server", Some(reference)));
    }
    servers
        .into_iter()
        .filter_map(|(name, binary): (&str, Option<std::path::PathBuf>)| {
            let binary = binary?;
            let dir = Scratch::new(&format!("ws-{test}-{name}"));
            let conf = dir.0.join("ws.conf");
            std::fs::write(&conf, config).unwrap();
            let ports = dir.0.join("ports");
            let (process, _, monitor) = start_with_ports(&binary, &conf, &ports);
            let text = common::process::wait_for_ports_file(&ports);
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let ws = json["websocket"][0]
                .as_str()
                .expect("websocket URL in ports file");
            let ws = ws.rsplit_once("://").unwrap().1.to_string();
            Some(Running {
                name,
                _process: process,
                _dir: dir,
                ws,
                monitor,
            })
        })
        .collect()
}

const PLAIN: &str = r#"websocket { listen: "127.0.0.1:-1", no_tls: true, compression: true,
  allowed_origins: ["http://allowed.example"], handshake_timeout: "1s" }"#;

/// What a server answered, in a form both servers can be compared by: HTTP heads with the
/// date blanked, NATS text after INFO, control frames, and whether it closed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    http: String,
    nats: String,
    controls: Vec<Frame>,
}

fn blank_date(head: &str) -> String {
    head.lines()
        .map(|l| match l.starts_with("Date: ") {
            true => "Date: <now>",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Upgrades, sends `frames`, then reads NATS text until `until` and finally what comes before
/// the close when `closes`.
async fn exchange(addr: &str, frames: &[Vec<u8>], until: &str, closes: bool) -> Outcome {
    let mut ws = Ws::connect(addr, "").await;
    assert!(ws.head.starts_with("HTTP/1.1 101"), "{}", ws.head);
    ws.info().await;
    for f in frames {
        ws.send(f).await;
    }
    let mut controls = Vec::new();
    let mut nats = match until {
        "" => String::new(),
        until => ws.nats_until(until, &mut controls).await,
    };
    if closes {
        for f in ws.until_closed().await {
            match f.opcode {
                0..=2 => nats.push_str(&String::from_utf8_lossy(&f.payload)),
                _ => controls.push(f),
            }
        }
    }
    Outcome {
        http: String::new(),
        nats,
        controls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_and_close_codes_as_nats_server() {
    let servers = both("frames", PLAIN);
    let connect = br#"CONNECT {"verbose":false,"pedantic":false}"#.to_vec();
    let mut results = Vec::new();
    for s in &servers {
        let addr = s.ws.as_str();
        let mut all = Vec::new();
        // A PUB split across frames of both kinds, and many operations in one frame.
        let mut first = connect.clone();
        first.extend_from_slice(b"\r\nSUB foo 1\r\nPU");
        all.push(
            exchange(
                addr,
                &[
                    binary(&first),
                    frame(1, b"B foo 5\r\nhel", true, true, false),
                    binary(b"lo\r\nPUB foo 2\r\nhi\r\nPING\r\n"),
                ],
                "PONG\r\n",
                false,
            )
            .await,
        );
        // A message fragmented over continuation frames, with a ping between them.
        all.push(
            exchange(
                addr,
                &[
                    frame(2, b"PI", true, false, false),
                    frame(9, b"are you there", true, true, false),
                    frame(0, b"NG\r\n", true, true, false),
                ],
                "PONG\r\n",
                false,
            )
            .await,
        );
        // Close frames: echoed (status and reason), empty, and with a reason that is not
        // UTF-8; what follows a close is ignored.
        for payload in [
            b"\x03\xe8bye".to_vec(),
            Vec::new(),
            b"\x03\xe8\xff\xfe".to_vec(),
        ] {
            let close = frame(8, &payload, true, true, false);
            all.push(exchange(addr, &[close, binary(b"PING\r\n")], "", true).await);
        }
        // A payload over max_payload: the -ERR, then close 1009.
        all.push(exchange(addr, &[binary(b"PUB foo 2000000\r\n")], "", true).await);
        results.push((s.name, all));
        // An unknown operation: the -ERR, then the connection closes without a close frame
        // (nats-server's WebSocket read loop takes it as a read error, and sometimes closes
        // before its -ERR is out).
        let outcome = exchange(addr, &[binary(b"FOO\r\n")], "", true).await;
        assert!(outcome.controls.is_empty(), "{}", s.name);
        let err = "-ERR 'Unknown Protocol Operation'\r\n";
        match s.name {
            "tern" => assert_eq!(outcome.nats, err),
            _ => assert!(outcome.nats.is_empty() || outcome.nats == err, "{}", s.name),
        }
    }
    let (_, tern) = &results[0];
    assert_eq!(
        tern[0].nats,
        "MSG foo 1 5\r\nhello\r\nMSG foo 1 2\r\nhi\r\nPONG\r\n"
    );
    assert_eq!(tern[1].controls[0].payload, b"are you there");
    assert_eq!(tern[2].controls, vec![close_frame(1000, "bye")]);
    assert_eq!(
        tern[5].controls,
        vec![close_frame(1009, "Maximum Message Payload Exceeded")]
    );
    for (name, outcome) in &results[1..] {
        assert_eq!(&results[0].1, outcome, "tern vs {name}");
    }
}

/// Frame-level violations close the connection; nats-server sometimes gets its 1002 close
/// frame out first and tern always does, with the same text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_violations_close_the_connection() {
    let servers = both("violations", PLAIN);
    let cases: [(Vec<u8>, &str); 6] = [
        (
            frame(2, b"PING\r\n", false, true, false),
            "mask bit missing",
        ),
        (
            frame(9, &[b'a'; 126], true, true, false),
            "control frame length bigger than maximum allowed of 125 bytes",
        ),
        (
            frame(9, b"a", true, false, false),
            "control frame does not have final bit set",
        ),
        (frame(3, b"a", true, true, false), "unknown opcode 3"),
        (
            frame(0, b"a", true, true, false),
            "invalid continuation frame",
        ),
        (
            [
                frame(2, b"PI", true, false, false),
                frame(2, b"NG\r\n", true, true, false),
            ]
            .concat(),
            "new message started before final frame for previous message was received",
        ),
    ];
    for s in &servers {
        for (bytes, why) in &cases {
            let outcome = exchange(&s.ws, std::slice::from_ref(bytes), "", true).await;
            assert_eq!(outcome.nats, "", "{}: {why}", s.name);
            let want = vec![close_frame(1002, why)];
            match s.name {
                "tern" => assert_eq!(outcome.controls, want),
                _ => assert!(
                    outcome.controls.is_empty() || outcome.controls == want,
                    "{}: {:?}",
                    s.name,
                    outcome.controls
                ),
            }
        }
    }
}

/// Requests that are not an upgrade get the HTTP error Go's server writes for nats-server;
/// a refused origin gets 403; bytes that are not HTTP get the bare 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_as_nats_server() {
    let servers = both("http", PLAIN);
    let requests = [
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            .to_string(),
        upgrade_request("Origin: http://other.example\r\n"),
        upgrade_request("Sec-WebSocket-Extensions: x\r\n").replace("Version: 13", "Version: 8"),
        "CONNECT {}\r\n\r\n".to_string(),
    ];
    let mut answers = Vec::new();
    for s in &servers {
        let mut mine = Vec::new();
        for request in &requests {
            let mut tcp = TcpStream::connect(&s.ws).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut ws = Ws {
                stream: Box::new(tcp),
                buf: BytesMut::new(),
                head: String::new(),
            };
            let head = ws.read_head().await;
            // The body: Content-Length bytes, when there is one.
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            while ws.buf.len() < len && ws.fill().await {}
            let body = String::from_utf8_lossy(&ws.buf[..len.min(ws.buf.len())]).into_owned();
            mine.push(format!("{}{body}", blank_date(&head)));
        }
        answers.push((s.name, mine));
    }
    assert!(answers[0].1[0].starts_with("HTTP/1.1 400 Bad Request"));
    assert!(answers[0].1[1].starts_with("HTTP/1.1 405 Method Not Allowed"));
    assert!(answers[0].1[3].starts_with("HTTP/1.1 403 Forbidden"));
    for (name, mine) in &answers[1..] {
        assert_eq!(&answers[0].1, mine, "tern vs {name}");
    }
    for s in &servers {
        // After an HTTP error the connection stays open for another request, as Go's server
        // keeps it; the upgrade then succeeds on it.
        let mut ws = Ws {
            stream: Box::new(TcpStream::connect(&s.ws).await.unwrap()),
            buf: BytesMut::new(),
            head: String::new(),
        };
        ws.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
        assert!(
            ws.read_head().await.starts_with("HTTP/1.1 400"),
            "{}",
            s.name
        );
        let _ = ws.buf.split();
        ws.send(upgrade_request("").as_bytes()).await;
        // The 400's body may still be ahead of the answer.
        let mut answer = ws.read_head().await;
        if !answer.starts_with("HTTP/1.1 101") {
            answer = ws.read_head().await;
        }
        assert!(answer.contains("HTTP/1.1 101"), "{}: {answer}", s.name);
        // A frame sent with the upgrade request, before its answer: closed without a word.
        let mut early = TcpStream::connect(&s.ws).await.unwrap();
        let mut bytes = upgrade_request("").into_bytes();
        bytes.extend(binary(b"PING\r\n"));
        early.write_all(&bytes).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, early.read_to_end(&mut rest)).await;
        assert!(read.is_ok() && rest.is_empty(), "{}: {rest:?}", s.name);
    }
    // An allowed origin, and none at all, pass.
    for origin in ["Origin: http://allowed.example\r\n", ""] {
        let ws = Ws::connect(&servers[0].ws, origin).await;
        assert!(ws.head.starts_with("HTTP/1.1 101"), "{}", ws.head);
    }
}

/// Compression: the upgrade answer offers it back, the client's compressed frames are read,
/// and larger writes come back compressed (decoded the same from both servers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_negotiated_as_nats_server() {
    let servers = both("compression", PLAIN);
    let mut heads = Vec::new();
    for s in &servers {
        let mut ws = Ws::connect(
            &s.ws,
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        )
        .await;
        heads.push(ws.head.replace(KEY, ""));
        ws.info().await;
        let payload = "x".repeat(300);
        let ops = format!(
            "CONNECT {{\"verbose\":false}}\r\nSUB foo 1\r\nPUB foo 300\r\n{payload}\r\nPING\r\n"
        );
        ws.send(&frame(2, &deflate(ops.as_bytes()), true, true, true))
            .await;
        let mut controls = Vec::new();
        let text = ws.nats_until("PONG\r\n", &mut controls).await;
        assert_eq!(
            text,
            format!("MSG foo 1 300\r\n{payload}\r\nPONG\r\n"),
            "{}",
            s.name
        );
        // Again, and uncompressed from the client this time: each message starts afresh.
        for n in [100, 5000] {
            let payload = "y".repeat(n);
            ws.send(&binary(
                format!("PUB foo {n}\r\n{payload}\r\nPING\r\n").as_bytes(),
            ))
            .await;
            let text = ws.nats_until("PONG\r\n", &mut controls).await;
            assert_eq!(
                text,
                format!("MSG foo 1 {n}\r\n{payload}\r\nPONG\r\n"),
                "{}",
                s.name
            );
        }
    }
    assert!(heads[0].contains(
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
    ));
    for head in &heads[1..] {
        assert_eq!(&heads[0], head);
    }
    // Without the offer, no compression.
    let ws = Ws::connect(&servers[0].ws, "").await;
    assert!(!ws.head.contains("permessage-deflate"));
}

/// A handshake that never finishes is cut at `handshake_timeout`; `/connz` shows WebSocket
/// clients as `type: websocket`; `/varz` has the block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_connz_and_varz_as_nats_server() {
    let servers = both("monitor", PLAIN);
    let mut varz = Vec::new();
    for s in &servers {
        let mut silent = TcpStream::connect(&s.ws).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, silent.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{}: {read:?}",
            s.name
        );

        let mut ws = Ws::connect(&s.ws, "").await;
        let info = ws.info().await;
        assert_eq!(
            info["port"].as_u64(),
            s.ws.rsplit(':').next().unwrap().parse().ok()
        );
        assert_eq!(info["host"], "127.0.0.1");
        ws.send(&binary(b"CONNECT {\"name\":\"w\"}\r\nPING\r\n"))
            .await;
        ws.nats_until("PONG\r\n", &mut Vec::new()).await;
        let (_, body) = http_get(&s.monitor, "/connz").unwrap();
        let connz: serde_json::Value = serde_json::from_str(&body).unwrap();
        let conn = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "w")
            .unwrap()
            .clone();
        assert_eq!(
            (conn["kind"].as_str(), conn["type"].as_str()),
            (Some("Client"), Some("websocket"))
        );
        let (_, body) = http_get(&s.monitor, "/varz").unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut block = v["websocket"].take();
        assert!(block["port"].as_u64().unwrap() > 0);
        block["port"] = 0.into();
        varz.push(block);
    }
    for block in &varz[1..] {
        assert_eq!(&varz[0], block);
    }
}

/// The block's own `authorization` and cookies, compared: a wrong password is refused with
/// the -ERR and close 1008; the cookies stand in for CONNECT's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_authorization_and_cookies_as_nats_server() {
    let config = r#"websocket { listen: "127.0.0.1:-1", no_tls: true,
      authorization { user: wsu, password: wsp }, user_cookie: uc, pass_cookie: pc,
      headers { "X-Extra": "yes" } }"#;
    let servers = both("auth", config);
    for s in &servers {
        let mut ws = Ws::connect(&s.ws, "").await;
        assert!(ws.head.contains("X-Extra: yes\r\n"), "{}", ws.head);
        assert_eq!(ws.info().await["auth_required"], true);
        ws.send(&binary(
            b"CONNECT {\"verbose\":false,\"user\":\"wsu\",\"pass\":\"no\"}\r\n",
        ))
        .await;
        let mut controls = Vec::new();
        let text = ws.nats_until("\r\n", &mut controls).await;
        assert_eq!(text, "-ERR 'Authorization Violation'\r\n", "{}", s.name);
        let rest = ws.until_closed().await;
        assert_eq!(
            rest,
            vec![close_frame(1008, "Authentication Failure")],
            "{}",
            s.name
        );

        let mut ws = Ws::connect(&s.ws, "Cookie: uc=wsu; pc=wsp\r\n").await;
        ws.info().await;
        ws.send(&binary(b"CONNECT {\"verbose\":true}\r\nPING\r\n"))
            .await;
        let text = ws.nats_until("PONG\r\n", &mut Vec::new()).await;
        assert_eq!(text, "+OK\r\nPONG\r\n", "{}", s.name);

        let mut ws = Ws::connect(&s.ws, "").await;
        ws.info().await;
        ws.send(&binary(
            b"CONNECT {\"verbose\":false,\"user\":\"wsu\",\"pass\":\"wsp\"}\r\nPING\r\n",
        ))
        .await;
        ws.nats_until("PONG\r\n", &mut Vec::new()).await;
    }
}

fn plain_options() -> Options {
    options(r#"websocket { listen: "127.0.0.1:-1", no_tls: true }"#)
}

/// async-nats over WebSocket and async-nats over TCP exchange messages and requests through
/// tern; the WebSocket client is a client like any other.
#[tokio::test]
async fn async_nats_over_websocket_talks_to_a_tcp_client() {
    let server = TestServer::with(plain_options()).await;
    let ws_addr = server.shared.websocket_addr().expect("websocket listener");
    let ws = async_nats::connect(format!("ws://{ws_addr}"))
        .await
        .unwrap();
    let tcp = async_nats::connect(server.url()).await.unwrap();
    // nats-server's log prefix for a WebSocket client: `wid:`, after the proxy's
    // `X-Forwarded-For` address when there is one.
    let mut proxied = Ws::connect(&ws_addr.to_string(), "X-Forwarded-For: 10.1.2.3\r\n").await;
    proxied.info().await;
    common::eventually("the proxied client's log prefix", || {
        server
            .shared
            .router
            .connections_snapshot()
            .iter()
            .any(|c| c.desc().starts_with("10.1.2.3/") && c.desc().contains(" - wid:"))
    })
    .await;

    let mut from_tcp = ws.subscribe("to.ws").await.unwrap();
    let mut from_ws = tcp.subscribe("to.tcp").await.unwrap();
    ws.flush().await.unwrap();
    tcp.flush().await.unwrap();
    let big = vec![b'z'; 200 * 1024];
    tcp.publish("to.ws", "hello ws".into()).await.unwrap();
    tcp.publish("to.ws", big.clone().into()).await.unwrap();
    ws.publish("to.tcp", "hello tcp".into()).await.unwrap();
    let got = tokio::time::timeout(WAIT, from_tcp.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"hello ws");
    let got = tokio::time::timeout(WAIT, from_tcp.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.payload.len(), big.len());
    let got = tokio::time::timeout(WAIT, from_ws.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"hello tcp");

    // Request/reply both ways.
    let mut service = tcp.subscribe("svc").await.unwrap();
    let responder = tcp.clone();
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            if let Some(reply) = msg.reply {
                let _ = responder.publish(reply, msg.payload).await;
            }
        }
    });
    tcp.flush().await.unwrap();
    let answer = tokio::time::timeout(WAIT, ws.request("svc", "echo".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer.payload[..], b"echo");
    // No responders over WebSocket too.
    let err = ws.request("nobody", "x".into()).await.unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    server.shutdown().await;
}

/// `wss`: TLS on the WebSocket listener with certificates made at test time, INFO says
/// `tls_required`, and NATS flows over it.
#[tokio::test]
async fn wss_with_generated_certificates() {
    let pki = Pki::new("ws-tls");
    let text = format!(
        "websocket {{ listen: \"127.0.0.1:-1\", tls {{ cert_file: {:?}, key_file: {:?} }} }}",
        pki.server_cert, pki.server_key
    );
    let server = TestServer::with(options(&text)).await;
    let ws_addr = server.shared.websocket_addr().unwrap();
    let tcp = TcpStream::connect(ws_addr).await.unwrap();
    let tls = pki
        .connector(None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let mut ws = Ws::over(Box::new(tls), "").await;
    assert!(ws.head.starts_with("HTTP/1.1 101"));
    let info = ws.info().await;
    assert_eq!(info["tls_required"], true);
    ws.send(&binary(
        b"CONNECT {\"verbose\":false}\r\nSUB a 1\r\nPUB a 2\r\nok\r\nPING\r\n",
    ))
    .await;
    let text = ws.nats_until("PONG\r\n", &mut Vec::new()).await;
    assert_eq!(text, "MSG a 1 2\r\nok\r\nPONG\r\n");
    // A plaintext upgrade on the TLS port goes nowhere.
    let mut plain = TcpStream::connect(ws_addr).await.unwrap();
    plain
        .write_all(upgrade_request("").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, plain.read(&mut buf))
        .await
        .unwrap();
    assert!(!matches!(n, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 101")));
    server.shutdown().await;
}

/// Server shutdown sends WebSocket clients close 1001 `Server Shutdown`.
#[tokio::test]
async fn shutdown_sends_going_away() {
    let server = TestServer::with(plain_options()).await;
    let ws_addr = server.shared.websocket_addr().unwrap().to_string();
    let mut ws = Ws::connect(&ws_addr, "").await;
    ws.info().await;
    ws.send(&binary(b"CONNECT {}\r\nPING\r\n")).await;
    ws.nats_until("PONG\r\n", &mut Vec::new()).await;
    let closing = tokio::spawn(server.shutdown());
    let frames = ws.until_closed().await;
    assert_eq!(frames, vec![close_frame(1001, "Server Shutdown")]);
    closing.await.unwrap();
}

/// Without `no_tls` or `tls`, nats-server refuses to start; tern too.
#[tokio::test]
async fn websocket_requires_tls_or_no_tls() {
    let opts = options("websocket { listen: \"127.0.0.1:-1\" }");
    let err = Server::bind(opts).await.err().expect("refused");
    assert!(
        err.to_string()
            .contains("websocket requires TLS configuration"),
        "{err}"
    );
}

/// Users limited to `WEBSOCKET` connections log in over WebSocket only, `STANDARD` ones over
/// TCP only; the block's `no_auth_user` stands in for a WebSocket client without credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_types_and_no_auth_user_as_nats_server() {
    let config = r#"authorization { users = [
        {user: w, password: w, allowed_connection_types: ["WEBSOCKET"]}
        {user: s, password: s, allowed_connection_types: ["STANDARD"]}
        {user: bob, password: b}
      ] }
      websocket { listen: "127.0.0.1:-1", no_tls: true, no_auth_user: bob }"#;
    let servers = both("types", config);
    let mut seen = Vec::new();
    for s in &servers {
        let mut answers = Vec::new();
        for connect in [
            r#"{"verbose":false,"user":"w","pass":"w"}"#,
            r#"{"verbose":false,"user":"s","pass":"s"}"#,
            r#"{"verbose":false}"#,
        ] {
            let mut ws = Ws::connect(&s.ws, "").await;
            let info = ws.info().await;
            assert_eq!(info["auth_required"], true, "{}", s.name);
            ws.send(&binary(format!("CONNECT {connect}\r\nPING\r\n").as_bytes()))
                .await;
            let mut controls = Vec::new();
            let text = ws.nats_until("\r\n", &mut controls).await;
            if text.starts_with("-ERR") {
                controls.extend(ws.until_closed().await);
            }
            answers.push((text, controls));
        }
        assert_eq!(answers[0].0, "PONG\r\n", "{}", s.name);
        assert_eq!(
            answers[1],
            (
                "-ERR 'Authorization Violation'\r\n".to_string(),
                vec![close_frame(1008, "Authentication Failure")]
            ),
            "{}",
            s.name
        );
        assert_eq!(answers[2].0, "PONG\r\n", "{}", s.name);
        seen.push(answers);
    }
    for answers in &seen[1..] {
        assert_eq!(&seen[0], answers);
    }
}

/// A browser gets frames of at most 4 KiB; `Nats-No-Masking: true` lets a client send
/// unmasked frames, and the answer says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_frames_and_no_masking_as_nats_server() {
    let servers = both(
        "browser",
        r#"websocket { listen: "127.0.0.1:-1", no_tls: true }"#,
    );
    for s in &servers {
        let mut ws = Ws::connect(&s.ws, "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n").await;
        ws.info().await;
        let payload = "b".repeat(10_000);
        ws.send(&binary(
            format!("CONNECT {{\"verbose\":false}}\r\nSUB big 1\r\nPUB big 10000\r\n{payload}\r\nPING\r\n")
                .as_bytes(),
        ))
        .await;
        let mut text = String::new();
        while !text.ends_with("PONG\r\n") {
            let f = ws.frame().await.expect("frame");
            assert!(
                f.payload.len() <= 4096,
                "{}: {} bytes",
                s.name,
                f.payload.len()
            );
            text.push_str(&String::from_utf8_lossy(&f.payload));
        }
        assert_eq!(
            text,
            format!("MSG big 1 10000\r\n{payload}\r\nPONG\r\n"),
            "{}",
            s.name
        );

        let mut ws = Ws::connect(&s.ws, "Nats-No-Masking: true\r\n").await;
        assert!(
            ws.head.contains("Nats-No-Masking: true\r\n"),
            "{}: {}",
            s.name,
            ws.head
        );
        ws.info().await;
        ws.send(&frame(
            2,
            b"CONNECT {\"verbose\":false}\r\nPING\r\n",
            false,
            true,
            false,
        ))
        .await;
        ws.nats_until("PONG\r\n", &mut Vec::new()).await;
    }
}

/// The block cannot change at run time (nats-server: `config reload not supported for
/// Websocket`); the rest of a reload still applies when it is unchanged.
#[tokio::test]
async fn reload_refuses_websocket_changes() {
    let server = TestServer::with(plain_options()).await;
    let mut changed = plain_options();
    changed.host = "127.0.0.1".into();
    changed.port = 0;
    if let Some(ws) = changed.websocket.as_mut() {
        ws.compression = true;
    }
    let err = server.shared.reload(changed).unwrap_err();
    assert!(
        err.starts_with("config reload not supported for Websocket: "),
        "{err}"
    );
    let mut same = plain_options();
    same.host = "127.0.0.1".into();
    same.port = 0;
    same.max_payload = 1000;
    server.shared.reload(same).expect("reload");
    server.shutdown().await;
}

/// Lame duck mode tells WebSocket clients too, with an INFO that names the WebSocket port,
/// then closes them with 1001 `Server Shutdown`.
#[tokio::test]
async fn lame_duck_mode_tells_websocket_clients() {
    let mut opts = options(
        r#"websocket { listen: "127.0.0.1:-1", no_tls: true }
        lame_duck_grace_period: "100ms", lame_duck_duration: "200ms""#,
    );
    opts.port = 0;
    let server = TestServer::with(opts).await;
    let ws_addr = server.shared.websocket_addr().unwrap();
    let mut ws = Ws::connect(&ws_addr.to_string(), "").await;
    ws.info().await;
    ws.send(&binary(
        b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n",
    ))
    .await;
    ws.nats_until("PONG\r\n", &mut Vec::new()).await;
    server.shared.enter_lame_duck_mode();
    let text = ws.nats_until("\r\n", &mut Vec::new()).await;
    let info: serde_json::Value =
        serde_json::from_str(text.trim().strip_prefix("INFO ").expect("INFO")).unwrap();
    assert_eq!(info["ldm"], true);
    assert_eq!(info["port"].as_u64(), Some(u64::from(ws_addr.port())));
    assert!(info.get("connect_urls").is_none(), "{info}");
    let frames = ws.until_closed().await;
    assert_eq!(frames, vec![close_frame(1001, "Server Shutdown")]);
    server.shutdown().await;
}

/// The `host:port` of a cluster node's WebSocket listener, from its log.
fn ws_listen_addr(scratch: &Scratch, node: &str) -> String {
    let log = scratch.0.join(format!("{node}.log"));
    let marker = "Listening for websocket clients on ws://";
    let text =
        common::process::wait_for_log(&log, "the websocket listener", |t| t.contains(marker));
    let line = text.lines().find(|l| l.contains(marker)).unwrap();
    line.rsplit_once(marker).unwrap().1.trim().to_string()
}

/// The `connect_urls` a fresh WebSocket client of `addr` is told.
async fn ws_connect_urls(addr: &str) -> Vec<String> {
    let info = Ws::connect(addr, "").await.info().await;
    serde_json::from_value(info["connect_urls"].clone()).unwrap_or_default()
}

/// The first INFO a server sends on a connection to its route port: its `ws_connect_urls`,
/// checked to come right after `connect_urls` as nats-server writes them.
fn route_ws_urls(route: &str) -> serde_json::Value {
    let stream = std::net::TcpStream::connect(route).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let line = common::process::read_line(&mut std::io::BufReader::new(stream));
    let json = line.trim().strip_prefix("INFO ").expect("INFO");
    let info: serde_json::Value = serde_json::from_str(json).unwrap();
    let urls = serde_json::to_string(&info["connect_urls"]).unwrap();
    assert!(
        json.contains(&format!("\"connect_urls\":{urls},\"ws_connect_urls\"")),
        "{json}"
    );
    info["ws_connect_urls"].clone()
}

/// In a cluster of tern and nats-server, each with a WebSocket listener: route INFO carries
/// the server's WebSocket URL in `ws_connect_urls` (after `connect_urls`, as nats-server puts
/// it), and the WebSocket clients of either server are told both servers' WebSocket URLs in
/// `connect_urls` (their own first) while TCP clients are told the client URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_urls_cross_a_mixed_cluster() {
    use common::cluster::{node_with, TERN};
    let Some(reference) = common::process::reference_server() else {
        return;
    };
    let scratch = Scratch::new("ws-cluster-urls");
    let ws = r#"websocket { listen: "127.0.0.1:-1", no_tls: true }"#;
    let a = node_with(&scratch, Path::new(TERN), "A", &[], ws);
    let ws_a = ws_listen_addr(&scratch, "A");
    // Before any route: no `connect_urls`, as nats-server.
    assert_eq!(ws_connect_urls(&ws_a).await, Vec::<String>::new());
    assert_eq!(route_ws_urls(&a.route), serde_json::json!([ws_a]));
    // A WebSocket client that takes asynchronous INFO is told when the peer's URL comes.
    let mut early = Ws::connect(&ws_a, "").await;
    early.info().await;
    early
        .send(&binary(
            b"CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n",
        ))
        .await;
    early.nats_until("PONG\r\n", &mut Vec::new()).await;
    let b = node_with(&scratch, &reference, "B", &[&a], ws);
    let ws_b = ws_listen_addr(&scratch, "B");
    assert_eq!(route_ws_urls(&b.route), serde_json::json!([ws_b]));
    let deadline = std::time::Instant::now() + common::cluster::SETTLE;
    let (want_a, want_b) = (
        vec![ws_a.clone(), ws_b.clone()],
        vec![ws_b.clone(), ws_a.clone()],
    );
    loop {
        let (got_a, got_b) = (ws_connect_urls(&ws_a).await, ws_connect_urls(&ws_b).await);
        if got_a == want_a && got_b == want_b {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tern's WebSocket clients told {got_a:?}, nats-server's {got_b:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pushed = early.nats_until("\r\n", &mut Vec::new()).await;
    let pushed: serde_json::Value =
        serde_json::from_str(pushed.trim().strip_prefix("INFO ").expect("INFO")).unwrap();
    assert_eq!(pushed["connect_urls"], serde_json::json!(want_a));
    // TCP clients are told the client URLs only.
    let raw = common::Raw::connect(a.client.parse().unwrap()).await;
    let urls = raw.info["connect_urls"].to_string();
    assert!(urls.contains(&b.client) && !urls.contains(&ws_b), "{urls}");
}

/// What a `wss` client presenting Pki's client certificate (alice) gets for `frames` after
/// the upgrade: the upgrade's status line, the TLS fields INFO sets, then the NATS text after
/// INFO up to a PONG, or how the connection ended.
async fn wss_outcome(addr: &str, pki: &Pki, frames: &[u8]) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let identity = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let name = ServerName::try_from("localhost").unwrap();
    let Ok(tls) = pki.connector(identity).connect(name, tcp).await else {
        return "TLS handshake failed".into();
    };
    let mut ws = Ws::over(Box::new(tls), "").await;
    let mut outcome = ws.head.lines().next().unwrap_or("closed").to_string();
    if !outcome.starts_with("HTTP/1.1 101") {
        return outcome;
    }
    ws.send(&binary(frames)).await;
    let mut text = String::new();
    while !text.contains("PONG\r\n") {
        match ws.frame().await {
            Some(f) if f.opcode <= 2 => text.push_str(&String::from_utf8_lossy(&f.payload)),
            Some(f) => text.push_str(&format!("<opcode {}>", f.opcode)),
            None => {
                text.push_str("<closed>");
                break;
            }
        }
    }
    // The INFO line differs between servers but for its TLS fields; what follows must not.
    let after_info = match text.split_once("\r\n") {
        Some((info, rest)) if info.starts_with("INFO ") => {
            let json: serde_json::Value =
                serde_json::from_str(info.trim().trim_start_matches("INFO ")).unwrap();
            let fields = ["tls_required", "tls_available", "tls_verify"];
            let set: Vec<&str> = fields.into_iter().filter(|f| json[f] == true).collect();
            outcome.push_str(&format!(" | {}", set.join(", ")));
            rest
        }
        _ => &text,
    };
    outcome.push_str(" | ");
    outcome.push_str(after_info);
    outcome
}

/// `wss` with `verify_and_map` and `pinned_certs` in the websocket block's `tls` (certificates
/// made at test time): a client whose pinned certificate maps to a user gets in as that user
/// (its permissions apply), with the TLS fields of INFO as nats-server sends them. A client whose key is not pinned is refused after the TLS
/// handshake, as on the client port; nats-server 2.15.1 lets it in (it checks WebSocket pins
/// only on reload), a difference kept on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_verify_and_map_and_pinned_certs_as_nats_server() {
    let pki = Pki::new("ws-tls-map");
    let pin = |path: &Path| {
        let cert = &common::pki::certs(path)[0];
        tern::security::tls::pinned_key_id(cert).unwrap()
    };
    let config = |pinned: &str| {
        format!(
            "authorization {{ users: [{{user: \"alice@example.com\", \
             permissions: {{publish: \"allowed\"}}}}] }}\n\
             websocket {{ listen: \"127.0.0.1:-1\", tls {{ cert_file: {:?}, key_file: {:?}, \
             ca_file: {:?}, verify_and_map: true, pinned_certs: [{pinned:?}] }} }}",
            pki.server_cert, pki.server_key, pki.ca
        )
    };
    let frames = b"CONNECT {\"verbose\":false}\r\n\
                   PUB denied 1\r\nx\r\nSUB allowed 1\r\nPUB allowed 2\r\nok\r\nPING\r\n";
    let mut outcomes = Vec::new();
    for server in both("tls-map", &config(&pin(&pki.client_cert))) {
        let outcome = wss_outcome(&server.ws, &pki, frames).await;
        outcomes.push((server.name, outcome));
    }
    assert_eq!(
        outcomes[0].1,
        "HTTP/1.1 101 Switching Protocols | tls_required, tls_available | \
         -ERR 'Permissions Violation for Publish to \"denied\"'\r\nMSG allowed 1 2\r\nok\r\nPONG\r\n"
    );
    if let [(_, tern), (_, reference)] = &outcomes[..] {
        assert_eq!(tern, reference);
    }
    let mut opts = options(&config(&pin(&pki.server_cert)));
    opts.port = 0;
    let server = TestServer::with(opts).await;
    let ws_addr = server.shared.websocket_addr().unwrap().to_string();
    assert_eq!(wss_outcome(&ws_addr, &pki, frames).await, "closed");
    server.shutdown().await;
}

/// `verify_and_map` on the WebSocket listener takes the user from the certificate (alice), and
/// CONNECT's user name does not change it; but its password is checked against the mapped
/// user's, as nats-server 2.15.1 checks it: a CONNECT naming bob with bob's password is refused
/// (alice has none), one naming an unknown user without a password gets in as alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_verify_and_map_checks_the_mapped_users_password_as_nats_server() {
    let pki = Pki::new("ws-tls-map-pass");
    let config = format!(
        "authorization {{ users: [{{user: \"alice@example.com\", \
         permissions: {{publish: \"allowed\"}}}}, {{user: bob, password: pw}}] }}\n\
         websocket {{ listen: \"127.0.0.1:-1\", tls {{ cert_file: {:?}, key_file: {:?}, \
         ca_file: {:?}, verify_and_map: true }} }}",
        pki.server_cert, pki.server_key, pki.ca
    );
    let after_connect = "\r\nPUB denied 1\r\nx\r\nPING\r\n";
    let refused = "HTTP/1.1 101 Switching Protocols | tls_required, tls_available | \
                   -ERR 'Authorization Violation'\r\n<opcode 8><closed>";
    let as_alice = "HTTP/1.1 101 Switching Protocols | tls_required, tls_available | \
                    -ERR 'Permissions Violation for Publish to \"denied\"'\r\nPONG\r\n";
    let cases = [
        (r#"{"verbose":false,"user":"bob","pass":"pw"}"#, refused),
        (r#"{"verbose":false,"pass":"pw"}"#, refused),
        (r#"{"verbose":false,"user":"nobody"}"#, as_alice),
        (r#"{"verbose":false,"user":"bob"}"#, as_alice),
    ];
    for server in both("tls-map-pass", &config) {
        for (connect, want) in cases {
            let frames = format!("CONNECT {connect}{after_connect}");
            let outcome = wss_outcome(&server.ws, &pki, frames.as_bytes()).await;
            assert_eq!(outcome, want, "{} with {connect}", server.name);
        }
    }
}
