//! The raw client protocol, as cheaply as the generator can speak it: pre-built batches of PUB
//! frames with a publisher id and a sequence number patched into each payload, and a reader
//! that parses MSG frames in place so that a checker can verify, per publisher, that every
//! message arrives exactly once and in order.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use memchr::memchr;
use socket2::{Domain, Protocol, Socket, Type};

pub use crate::conn::Conn;

/// How long any single read or write may block before the scenario is declared failed.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How the generator drives a server: bytes per publishing write, the socket buffer sizes
/// of every connection it opens, and how many connections share a scenario's publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tune {
    pub write: usize,
    /// `SO_SNDBUF` / `SO_RCVBUF` asked for (0: the kernel's default, autotuned).
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub pubs: usize,
}

impl Tune {
    /// The defaults: what got the most out of nats-server 2.15.1 in a sweep on this machine
    /// (BENCHMARKS.md, third session): 256 KiB writes and 4 MiB socket buffers on both sides
    /// (the kernel's autotuning stays at a few hundred KiB for a loopback publisher), one
    /// publishing connection.
    pub const DEFAULT: Tune = Tune {
        write: 256 * 1024,
        sndbuf: 4 << 20,
        rcvbuf: 4 << 20,
        pubs: 1,
    };

    /// `write 256K, sndbuf default, rcvbuf 4M, 1 pub`.
    pub fn describe(&self) -> String {
        let buf = |b: usize| {
            if b == 0 {
                "default".to_string()
            } else {
                size_text(b)
            }
        };
        format!(
            "write {}, sndbuf {}, rcvbuf {}, {} pub{}",
            size_text(self.write),
            buf(self.sndbuf),
            buf(self.rcvbuf),
            self.pubs,
            if self.pubs == 1 { "" } else { "s" }
        )
    }
}

/// `64K`, `4M`, `100`.
pub fn size_text(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}M", n >> 20)
    } else if n >= 1024 && n % 1024 == 0 {
        format!("{}K", n >> 10)
    } else {
        n.to_string()
    }
}

/// The tuning of the run in progress. The generator runs one scenario on one server at a
/// time, so one setting in force at a time is all there is.
static WRITE: AtomicUsize = AtomicUsize::new(Tune::DEFAULT.write);
static SNDBUF: AtomicUsize = AtomicUsize::new(Tune::DEFAULT.sndbuf);
static RCVBUF: AtomicUsize = AtomicUsize::new(Tune::DEFAULT.rcvbuf);
static PUBS: AtomicUsize = AtomicUsize::new(Tune::DEFAULT.pubs);

/// Puts `tune` in force for the connections and publishers made from now on.
pub fn set_tune(tune: Tune) {
    WRITE.store(tune.write.max(1), Ordering::Relaxed);
    SNDBUF.store(tune.sndbuf, Ordering::Relaxed);
    RCVBUF.store(tune.rcvbuf, Ordering::Relaxed);
    PUBS.store(tune.pubs.max(1), Ordering::Relaxed);
}

/// The tuning in force.
pub fn tune() -> Tune {
    Tune {
        write: WRITE.load(Ordering::Relaxed),
        sndbuf: SNDBUF.load(Ordering::Relaxed),
        rcvbuf: RCVBUF.load(Ordering::Relaxed),
        pubs: PUBS.load(Ordering::Relaxed),
    }
}

/// A TCP connection to `port` on loopback with the socket buffer sizes in force (set before
/// connecting, so that the window scale agreed at the handshake fits them), no Nagle, and
/// read and write timeouts.
pub fn dial(port: u16) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    let t = tune();
    if t.sndbuf > 0 {
        socket.set_send_buffer_size(t.sndbuf)?;
    }
    if t.rcvbuf > 0 {
        socket.set_recv_buffer_size(t.rcvbuf)?;
    }
    socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Publisher ids above this are taken for corrupt payloads rather than grown into.
const MAX_PUBLISHERS: usize = 4096;

/// Opens a client connection: reads INFO, sends a quiet CONNECT. Reads and writes time out.
pub fn connect(port: u16) -> io::Result<Conn> {
    connect_as(port, None)
}

/// How a scenario's clients connect.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Tcp,
    /// WebSocket clients of the `websocket` listener.
    Ws,
    /// TLS clients (`tls.rs`: the pinned protocol, cipher suite and key exchange).
    Tls,
}

/// As [`connect`], over WebSocket (`port` is then the WebSocket listener's) or TLS.
pub fn connect_to(port: u16, via: Via) -> io::Result<Conn> {
    match via {
        Via::Tcp => connect(port),
        Via::Ws => login(Conn::websocket(port)?, None),
        Via::Tls => {
            let conn = connect(port)?;
            match conn.is_tls() {
                true => Ok(conn),
                false => Err(io::Error::other("the server did not ask for TLS")),
            }
        }
    }
}

/// As [`connect`], logging in as `user` (whose password is its name) when given.
pub fn connect_as(port: u16, user: Option<&str>) -> io::Result<Conn> {
    login(Conn::tcp(port)?, user)
}

fn login(mut stream: Conn, user: Option<&str>) -> io::Result<Conn> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    // The server sends INFO and then nothing until the client speaks, so one line is all
    // there is to read.
    let mut info = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    while memchr(b'\n', &info).is_none() {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before INFO",
            ));
        }
        info.extend_from_slice(&chunk[..n]);
    }
    if !info.starts_with(b"INFO ") || !info.ends_with(b"\n") {
        return Err(io::Error::other(format!(
            "expected a lone INFO line, got {:?}",
            String::from_utf8_lossy(&info)
        )));
    }
    // A server that requires TLS waits for the client's handshake after its INFO.
    if memchr::memmem::find(&info, b"\"tls_required\":true").is_some() {
        stream.start_tls()?;
    }
    let login = user
        .map(|u| format!(",\"user\":\"{u}\",\"pass\":\"{u}\""))
        .unwrap_or_default();
    stream.write_all(
        format!("CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1{login}}}\r\n")
            .as_bytes(),
    )?;
    Ok(stream)
}

/// Sends PING and waits for the PONG on a connection that receives nothing else (answering the
/// server's own PINGs and skipping INFO, which nats-server 2.12+ sends right after the first
/// PONG; a MSG or -ERR is an error).
pub fn barrier(stream: &mut Conn) -> io::Result<()> {
    stream.write_all(b"PING\r\n")?;
    wait_pong(stream)
}

/// The second half of `barrier`, for a PING already sent.
pub fn wait_pong(stream: &mut Conn) -> io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let mut ponged = false;
    loop {
        while let Some(nl) = memchr(b'\n', &buf) {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            match trim_line(&line) {
                b"PONG" if !ponged => ponged = true,
                b"PING" => stream.write_all(b"PONG\r\n")?,
                b"+OK" => {}
                info if info.starts_with(b"INFO ") => {}
                other => {
                    return Err(io::Error::other(format!(
                        "unexpected while waiting for PONG: {:?}",
                        String::from_utf8_lossy(other)
                    )))
                }
            }
        }
        // Done at the PONG unless a line after it is still incomplete (it is read to its end
        // so that no later reader starts mid-line).
        if ponged && buf.is_empty() {
            return Ok(());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The sid of `await_interest`'s probe subscription.
const PROBE_SID: &str = "999999999";

/// Returns once the subscriptions `sub` (a connection to one node of a cluster) has made so far
/// are known on the node whose client port is `from_port`: subscribes `subject` on `sub`,
/// publishes to it on `from_port` until a probe arrives on `sub` (a node's interest travels to
/// its peer in order, over the one route connection of its account), then unsubscribes the
/// probe and reads up to a PONG, so that no probe follows. Gives up after `within`. Nothing
/// else may be delivered to `sub` meanwhile.
pub fn await_interest(
    sub: &mut Conn,
    from_port: u16,
    subject: &str,
    within: Duration,
) -> Result<(), String> {
    let e = |e: io::Error| format!("probing interest on {subject}: {e}");
    let mut publisher = connect(from_port).map_err(e)?;
    barrier(&mut publisher).map_err(e)?;
    sub.write_all(format!("SUB {subject} {PROBE_SID}\r\n").as_bytes())
        .map_err(e)?;
    let mut reader = Reader::new(sub.try_clone().map_err(e)?);
    reader
        .set_read_timeout(Duration::from_millis(20))
        .map_err(e)?;
    let deadline = Instant::now() + within;
    let probe = format!("PUB {subject} 5\r\nprobe\r\n");
    'probing: loop {
        publisher.write_all(probe.as_bytes()).map_err(e)?;
        barrier(&mut publisher).map_err(e)?;
        let wait = Instant::now() + Duration::from_millis(100);
        while Instant::now() < wait {
            match reader.next() {
                Ok(Frame::Msg { sid, .. }) if sid == PROBE_SID.as_bytes() => break 'probing,
                Ok(Frame::Msg { sid, .. }) => {
                    return Err(format!(
                        "probing interest on {subject}: a message on sid {:?}",
                        String::from_utf8_lossy(sid)
                    ))
                }
                Ok(_) => {}
                Err(err) if is_timeout(&err) => {}
                Err(err) => return Err(e(err)),
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "probing interest on {subject}: nothing published on port {from_port} \
                 arrived within {within:?}"
            ));
        }
    }
    reader.set_read_timeout(IO_TIMEOUT).map_err(e)?;
    sub.write_all(format!("UNSUB {PROBE_SID}\r\nPING\r\n").as_bytes())
        .map_err(e)?;
    loop {
        match reader.next().map_err(e)? {
            Frame::Pong => break,
            Frame::Msg { sid, .. } if sid != PROBE_SID.as_bytes() => {
                return Err(format!(
                    "probing interest on {subject}: a message on sid {:?}",
                    String::from_utf8_lossy(sid)
                ))
            }
            _ => {}
        }
    }
    // Whatever came with the PONG (an INFO the new route made the server send, say) is read
    // to its end here, so that the connection's next reader starts at a line.
    while reader.start != reader.end {
        if let Frame::Msg { .. } = reader.next().map_err(e)? {
            return Err(format!(
                "probing interest on {subject}: a message after the PONG"
            ));
        }
    }
    Ok(())
}

/// Pre-built PUB frames for one publisher, cycling over one or more subjects. Payloads of 8
/// bytes or more carry the publisher id (4 bytes, little-endian) and a sequence number (4
/// bytes) that counts every message this publisher sends, whatever its subject.
pub struct Publisher {
    id: u32,
    seq: u32,
    /// One cycle of frames.
    batch: Vec<u8>,
    /// Per frame of the cycle: where its payload starts and where the frame ends.
    frames: Vec<(usize, usize)>,
    /// The frame of the cycle to send next.
    next: usize,
    numbered: bool,
    /// Bytes per write (about).
    chunk: usize,
}

impl Publisher {
    /// Frames to `subject` (with `reply` if given) and payloads of `size` bytes.
    pub fn new(id: u32, subject: &str, reply: Option<&str>, size: usize) -> Publisher {
        let head = match reply {
            Some(reply) => format!("PUB {subject} {reply} {size}\r\n"),
            None => format!("PUB {subject} {size}\r\n"),
        };
        Publisher::repeating(id, head, size)
    }

    /// Frames that are MSG frames already (sid 1), for the relay, which passes bytes through
    /// unparsed: the subscriber reads what the publisher wrote.
    pub fn relayed(id: u32, subject: &str, size: usize) -> Publisher {
        Publisher::repeating(id, format!("MSG {subject} 1 {size}\r\n"), size)
    }

    /// One write's worth of copies of the frame with the head `head`.
    fn repeating(id: u32, head: String, size: usize) -> Publisher {
        let frame_len = head.len() + size + 2;
        let copies = (tune().write / frame_len).max(1);
        Publisher::build(id, size, (0..copies).map(|_| head.clone()))
    }

    /// Frames to each of `subjects` in turn, payloads of `size` bytes.
    pub fn cycling(id: u32, subjects: &[String], size: usize) -> Publisher {
        Publisher::build(
            id,
            size,
            subjects.iter().map(|s| format!("PUB {s} {size}\r\n")),
        )
    }

    fn build(id: u32, size: usize, heads: impl Iterator<Item = String>) -> Publisher {
        let mut batch = Vec::new();
        let mut frames = Vec::new();
        for head in heads {
            batch.extend_from_slice(head.as_bytes());
            let payload = batch.len();
            batch.resize(payload + size, b'x');
            batch.extend_from_slice(b"\r\n");
            frames.push((payload, batch.len()));
        }
        Publisher {
            id,
            seq: 0,
            batch,
            frames,
            next: 0,
            numbered: size >= 8,
            chunk: tune().write,
        }
    }

    /// Sends the next `count` messages, in writes of about the tuning's write size.
    pub fn send(&mut self, stream: &mut Conn, count: usize) -> io::Result<()> {
        let mut left = count;
        while left > 0 {
            let first = self.next;
            let from = if first == 0 {
                0
            } else {
                self.frames[first - 1].1
            };
            let mut last = first;
            loop {
                let (payload, _) = self.frames[last];
                if self.numbered {
                    self.batch[payload..payload + 4].copy_from_slice(&self.id.to_le_bytes());
                    self.batch[payload + 4..payload + 8].copy_from_slice(&self.seq.to_le_bytes());
                }
                self.seq = self.seq.wrapping_add(1);
                left -= 1;
                last += 1;
                if left == 0 || last == self.frames.len() || self.frames[last].1 - from > self.chunk
                {
                    break;
                }
            }
            stream.write_all(&self.batch[from..self.frames[last - 1].1])?;
            self.next = last % self.frames.len();
        }
        Ok(())
    }
}

/// One thing the server sent.
pub enum Frame<'a> {
    /// A MSG, or an HMSG (`headers` is then its header block, else empty).
    Msg {
        sid: &'a [u8],
        reply: Option<&'a [u8]>,
        headers: &'a [u8],
        payload: &'a [u8],
    },
    Pong,
    Other,
}

/// Parses what a connection receives, in place, answering the server's PINGs. `-ERR` from the
/// server is an error.
pub struct Reader {
    stream: Conn,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reader {
    pub fn new(stream: Conn) -> Reader {
        Reader {
            stream,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Sets how long one read may block (a timeout is an error of kind `WouldBlock` or
    /// `TimedOut`, after which reading can go on).
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }

    /// Sends PING on this connection.
    pub fn ping(&mut self) -> io::Result<()> {
        self.stream.write_all(b"PING\r\n")
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.end += n;
        Ok(())
    }

    /// The next frame.
    pub fn next(&mut self) -> io::Result<Frame<'_>> {
        loop {
            let window = &self.buf[self.start..self.end];
            let Some(nl) = memchr(b'\n', window) else {
                self.fill()?;
                continue;
            };
            let line = trim_line(&window[..=nl]);
            // `MSG <subject> <sid> [reply] <size>` or `HMSG <subject> <sid> [reply] <header
            // size> <total size>`.
            let (args, skip, fields) = match line {
                l if l.starts_with(b"MSG ") => (&l[4..], 4, 3),
                l if l.starts_with(b"HMSG ") => (&l[5..], 5, 4),
                _ => (&b""[..], 0, 0),
            };
            if fields > 0 {
                let mut tokens = [&b""[..]; 5];
                let mut n = 0;
                for token in args.split(|&b| b == b' ' || b == b'\t') {
                    if token.is_empty() {
                        continue;
                    }
                    if n == tokens.len() {
                        return Err(bad_line(line));
                    }
                    tokens[n] = token;
                    n += 1;
                }
                if n < fields || n > fields + 1 {
                    return Err(bad_line(line));
                }
                let size = parse_size(tokens[n - 1]).ok_or_else(|| bad_line(line))?;
                let header_size = match fields {
                    4 => parse_size(tokens[n - 2])
                        .filter(|h| *h <= size)
                        .ok_or_else(|| bad_line(line))?,
                    _ => 0,
                };
                let total = nl + 1 + size + 2;
                if window.len() < total {
                    self.fill()?;
                    continue;
                }
                if &window[total - 2..total] != b"\r\n" {
                    return Err(io::Error::other("MSG payload not followed by CRLF"));
                }
                let (head_len, line_len) = (nl + 1, line.len());
                let frame = self.start;
                self.start += total;
                let window = &self.buf[frame..frame + total];
                let mut args = window[skip..line_len]
                    .split(|&b| b == b' ' || b == b'\t')
                    .filter(|a| !a.is_empty());
                let _subject = args.next();
                let sid = args.next().unwrap_or_default();
                let reply = if n > fields { args.next() } else { None };
                let headers = &window[head_len..head_len + header_size];
                let payload = &window[head_len + header_size..head_len + size];
                return Ok(Frame::Msg {
                    sid,
                    reply,
                    headers,
                    payload,
                });
            }
            if line.starts_with(b"-ERR") {
                let text = String::from_utf8_lossy(line).into_owned();
                return Err(io::Error::other(format!("server sent {text}")));
            }
            let is_ping = line == b"PING";
            let is_pong = line == b"PONG";
            self.start += nl + 1;
            if is_ping {
                self.stream.write_all(b"PONG\r\n")?;
            }
            if is_pong {
                return Ok(Frame::Pong);
            }
            return Ok(Frame::Other);
        }
    }

    /// After the last expected message: PING and read up to the PONG. Any message that still
    /// arrives is one too many (a duplicate) and is an error.
    pub fn expect_no_more(&mut self) -> Result<(), String> {
        self.ping().map_err(|e| e.to_string())?;
        loop {
            match self
                .next()
                .map_err(|e| format!("waiting for the final PONG: {e}"))?
            {
                Frame::Pong => return Ok(()),
                Frame::Msg { payload, .. } => {
                    return Err(format!(
                        "an extra message after the last expected one: {}",
                        describe(payload)
                    ))
                }
                Frame::Other => {}
            }
        }
    }
}

impl Reader {
    /// For the relay: after the last expected message the connection must end (the relay
    /// closes it once the publisher has closed its own); a message before that is one too
    /// many.
    pub fn expect_end(&mut self) -> Result<(), String> {
        loop {
            match self.next() {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(format!("waiting for the relay to close: {e}")),
                Ok(Frame::Msg { payload, .. }) => {
                    return Err(format!(
                        "an extra message after the last expected one: {}",
                        describe(payload)
                    ))
                }
                Ok(_) => {}
            }
        }
    }
}

fn bad_line(line: &[u8]) -> io::Error {
    io::Error::other(format!("bad MSG line {:?}", String::from_utf8_lossy(line)))
}

fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + usize::from(d - b'0'))
    })
}

/// The publisher id and sequence number a numbered payload carries.
pub fn numbers(payload: &[u8]) -> Option<(u32, u32)> {
    let id = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?);
    let seq = u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?);
    Some((id, seq))
}

fn describe(payload: &[u8]) -> String {
    match numbers(payload) {
        Some((id, seq)) => format!("publisher {id} message {seq}"),
        None => format!("{} byte payload", payload.len()),
    }
}

/// Checks, for one subscriber, that every publisher's messages arrive exactly once and in
/// order: each publisher's sequence numbers must arrive as 0, 1, 2, ... with no gap (a loss),
/// no repeat (a duplicate) and no step back (a reordering).
#[derive(Default)]
pub struct Checker {
    next: Vec<u32>,
    pub count: u64,
}

impl Checker {
    /// Records one payload; an error names the first loss, duplicate or reordering.
    pub fn check(&mut self, payload: &[u8]) -> Result<(), String> {
        self.count += 1;
        let (id, seq) = numbers(payload)
            .ok_or_else(|| format!("payload of {} bytes has no sequence number", payload.len()))?;
        let id = id as usize;
        if id >= MAX_PUBLISHERS {
            return Err(format!("corrupt payload: publisher id {id}"));
        }
        if self.next.len() <= id {
            self.next.resize(id + 1, 0);
        }
        let want = self.next[id];
        if seq != want {
            let what = if seq > want {
                "lost or reordered"
            } else {
                "duplicated or reordered"
            };
            return Err(format!(
                "publisher {id}: got message {seq}, expected {want} ({what})"
            ));
        }
        self.next[id] = seq + 1;
        Ok(())
    }
}

/// A numeric sid.
pub fn parse_sid(sid: &[u8]) -> Option<usize> {
    parse_size(sid)
}

/// True for the error a read timeout gives.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
