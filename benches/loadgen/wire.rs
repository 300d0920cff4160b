//! The raw client protocol, as cheaply as the generator can speak it: pre-built batches of PUB
//! frames with a sequence number patched into each payload, and a reader that parses MSG frames
//! in place and checks, per publisher, that every message arrives once and in order.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use memchr::memchr;

/// How long any read may block before the scenario is declared failed.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a client connection: reads INFO, sends a quiet CONNECT.
pub fn connect(port: u16) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            break;
        }
    }
    stream.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n")?;
    Ok(stream)
}

/// Sends PING and waits for the PONG on a connection that receives nothing else.
pub fn barrier(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(b"PING\r\n")?;
    let mut reader = Reader::new(stream.try_clone()?);
    loop {
        if let Frame::Pong = reader.next()? {
            return Ok(());
        }
    }
}

/// PUB frames for one publisher: `count` messages to `subject`, payloads of `size` bytes whose
/// first 8 bytes (when there is room) carry the publisher id and a sequence number.
pub struct Publisher {
    id: u32,
    seq: u32,
    frame_len: usize,
    head_len: usize,
    batch: Vec<u8>,
    per_batch: usize,
}

impl Publisher {
    pub fn new(id: u32, subject: &str, reply: Option<&str>, size: usize) -> Publisher {
        let head = match reply {
            Some(reply) => format!("PUB {subject} {reply} {size}\r\n"),
            None => format!("PUB {subject} {size}\r\n"),
        };
        let mut frame = head.clone().into_bytes();
        frame.resize(head.len() + size, b'x');
        frame.extend_from_slice(b"\r\n");
        // About 64 KiB per write, as a fast client library would flush.
        let per_batch = (64 * 1024 / frame.len()).max(1);
        Publisher {
            id,
            seq: 0,
            frame_len: frame.len(),
            head_len: head.len(),
            batch: frame.repeat(per_batch),
            per_batch,
        }
    }

    /// Sends the next `count` messages.
    pub fn send(&mut self, stream: &mut TcpStream, count: usize) -> io::Result<()> {
        let mut left = count;
        while left > 0 {
            let n = left.min(self.per_batch);
            if self.frame_len - self.head_len - 2 >= 8 {
                for i in 0..n {
                    let at = i * self.frame_len + self.head_len;
                    self.batch[at..at + 4].copy_from_slice(&self.id.to_le_bytes());
                    self.batch[at + 4..at + 8].copy_from_slice(&self.seq.to_le_bytes());
                    self.seq += 1;
                }
            }
            stream.write_all(&self.batch[..n * self.frame_len])?;
            left -= n;
        }
        Ok(())
    }
}

/// One thing the server sent.
pub enum Frame<'a> {
    Msg { sid: &'a [u8], reply: Option<&'a [u8]>, payload: &'a [u8] },
    Pong,
    Other,
}

/// Parses what a connection receives, in place, answering the server's PINGs.
pub struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reader {
    pub fn new(stream: TcpStream) -> Reader {
        Reader { stream, buf: vec![0; 1 << 20], start: 0, end: 0 }
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
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        self.end += n;
        Ok(())
    }

    /// The next frame.
    pub fn next(&mut self) -> io::Result<Frame<'_>> {
        loop {
            let window = &self.buf[self.start..self.end];
            if let Some(nl) = memchr(b'\n', window) {
                let line = &window[..nl.saturating_sub(1)];
                if line.starts_with(b"MSG ") {
                    let args: Vec<&[u8]> = line[4..].split(|&b| b == b' ').filter(|a| !a.is_empty()).collect();
                    let size: usize = std::str::from_utf8(args[args.len() - 1])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| io::Error::other("bad MSG line"))?;
                    let total = nl + 1 + size + 2;
                    if window.len() < total {
                        self.fill()?;
                        continue;
                    }
                    let frame_start = self.start;
                    self.start += total;
                    let window = &self.buf[frame_start..frame_start + total];
                    let line = &window[4..nl.saturating_sub(1)];
                    let mut args = line.split(|&b| b == b' ').filter(|a| !a.is_empty());
                    let _subject = args.next();
                    let sid = args.next().unwrap_or_default();
                    let third = args.next();
                    let reply = if args.next().is_some() { third } else { None };
                    let payload = &window[nl + 1..nl + 1 + size];
                    return Ok(Frame::Msg { sid, reply, payload });
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
            self.fill()?;
        }
    }
}

/// Checks that every publisher's messages arrive exactly once and in order.
#[derive(Default)]
pub struct Checker {
    next: Vec<u32>,
    pub count: u64,
}

impl Checker {
    /// Records one payload; an error names the first loss, duplicate or reordering.
    pub fn check(&mut self, payload: &[u8]) -> Result<(), String> {
        self.count += 1;
        if payload.len() < 8 {
            return Ok(());
        }
        let id = u32::from_le_bytes(payload[0..4].try_into().unwrap_or_default()) as usize;
        let seq = u32::from_le_bytes(payload[4..8].try_into().unwrap_or_default());
        if self.next.len() <= id {
            self.next.resize(id + 1, 0);
        }
        let want = self.next[id];
        if seq != want {
            return Err(format!("publisher {id}: got message {seq}, expected {want}"));
        }
        self.next[id] = seq + 1;
        Ok(())
    }
}
