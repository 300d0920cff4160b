//! A client connection as the generator sees it: plain TCP, TLS over TCP once the server's
//! INFO asks for it (`tls.rs`), or WebSocket (RFC 6455) over TCP as a browser client speaks it:
//! each write goes out as one masked binary frame (so a 64 KiB batch of PUBs is one frame), and
//! reads hand back the payloads of the server's frames as one byte stream, answering its
//! pings.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use memchr::memmem;

const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;
/// Any fixed key will do for a benchmark: the server unmasks whatever it is.
const MASK_KEY: [u8; 4] = [0x5a, 0x13, 0xc7, 0x81];

/// One client connection.
pub struct Conn {
    tcp: TcpStream,
    ws: Option<Box<Frames>>,
    tls: Option<Box<rustls::ClientConnection>>,
}

/// The WebSocket state of one direction's user: frames read and not yet handed out, and the
/// buffer writes are framed in.
struct Frames {
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// Payload bytes of the current data frame not yet handed out.
    remaining: usize,
    out: Vec<u8>,
}

impl Conn {
    /// A plain TCP connection.
    pub fn tcp(port: u16) -> io::Result<Conn> {
        let tcp = crate::wire::dial(port)?;
        Ok(Conn::from(tcp))
    }

    /// Turns a plain connection into a TLS one: the handshake (`tls::client`'s pinned
    /// protocol, suite and key exchange), checked for what was negotiated.
    pub fn start_tls(&mut self) -> io::Result<()> {
        if self.ws.is_some() || self.tls.is_some() {
            return Err(io::Error::other("TLS over WebSocket or TLS"));
        }
        let mut tls = crate::tls::client()?;
        while tls.is_handshaking() {
            tls.complete_io(&mut self.tcp)?;
        }
        crate::tls::check_negotiated(&tls)?;
        self.tls = Some(Box::new(tls));
        Ok(())
    }

    /// Whether this connection runs TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A WebSocket connection: the HTTP upgrade, checked for `101`.
    pub fn websocket(port: u16) -> io::Result<Conn> {
        let mut tcp = crate::wire::dial(port)?;
        write!(
            tcp,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut frames = Frames {
            raw: vec![0; 256 * 1024],
            start: 0,
            end: 0,
            remaining: 0,
            out: Vec::with_capacity(64 * 1024 + 16),
        };
        let head = loop {
            if let Some(at) = memmem::find(&frames.raw[..frames.end], b"\r\n\r\n") {
                break at + 4;
            }
            let n = tcp.read(&mut frames.raw[frames.end..])?;
            if n == 0 || frames.end + n == frames.raw.len() {
                return Err(io::Error::other("no answer to the WebSocket upgrade"));
            }
            frames.end += n;
        };
        if !frames.raw.starts_with(b"HTTP/1.1 101 ") {
            let answer = String::from_utf8_lossy(&frames.raw[..head]).into_owned();
            return Err(io::Error::other(format!("upgrade refused: {answer:?}")));
        }
        frames.start = head;
        Ok(Conn {
            tcp,
            ws: Some(Box::new(frames)),
            tls: None,
        })
    }

    /// Another handle on the same connection, for a thread of its own. A WebSocket handle
    /// starts at a frame boundary: only clone one whose reads have ended at one (after a PONG,
    /// say), and read on one handle only.
    pub fn try_clone(&self) -> io::Result<Conn> {
        if self.tls.is_some() {
            // Two handles cannot share one TLS session's state.
            return Err(io::Error::other("a TLS connection cannot be cloned"));
        }
        Ok(Conn {
            tls: None,
            tcp: self.tcp.try_clone()?,
            ws: self.ws.as_ref().map(|f| {
                Box::new(Frames {
                    raw: vec![0; f.raw.len()],
                    start: 0,
                    end: 0,
                    remaining: 0,
                    out: Vec::with_capacity(f.out.capacity()),
                })
            }),
        })
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(timeout)
    }
}

impl From<TcpStream> for Conn {
    /// A plain connection already open.
    fn from(tcp: TcpStream) -> Conn {
        Conn {
            tcp,
            ws: None,
            tls: None,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(tls) = self.tls.as_deref_mut() {
            return rustls::Stream::new(tls, &mut self.tcp).read(buf);
        }
        let Some(frames) = self.ws.as_deref_mut() else {
            return self.tcp.read(buf);
        };
        loop {
            let available = frames.end - frames.start;
            if frames.remaining > 0 && available > 0 {
                let n = frames.remaining.min(available).min(buf.len());
                buf[..n].copy_from_slice(&frames.raw[frames.start..frames.start + n]);
                frames.start += n;
                frames.remaining -= n;
                return Ok(n);
            }
            if frames.remaining == 0 {
                if let Some((opcode, size, len)) = header(&frames.raw[frames.start..frames.end])? {
                    match opcode {
                        OP_PING | OP_CLOSE if available < size + len => {}
                        OP_PING => {
                            let at = frames.start + size;
                            let payload = frames.raw[at..at + len].to_vec();
                            frames.start += size + len;
                            send_frame(&mut self.tcp, &mut frames.out, OP_PONG, &payload)?;
                            continue;
                        }
                        OP_CLOSE => return Ok(0),
                        _ => {
                            frames.start += size;
                            frames.remaining = len;
                            continue;
                        }
                    }
                }
            }
            // More bytes are needed: make room at the end, then read.
            if frames.start > 0 {
                frames.raw.copy_within(frames.start..frames.end, 0);
                frames.end -= frames.start;
                frames.start = 0;
            }
            if frames.end == frames.raw.len() {
                let len = frames.raw.len() * 2;
                frames.raw.resize(len, 0);
            }
            let n = self.tcp.read(&mut frames.raw[frames.end..])?;
            if n == 0 {
                return Ok(0);
            }
            frames.end += n;
        }
    }
}

impl Write for Conn {
    /// Over WebSocket, all of `buf` goes out as one frame.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(tls) = self.tls.as_deref_mut() {
            return rustls::Stream::new(tls, &mut self.tcp).write(buf);
        }
        match self.ws.as_deref_mut() {
            None => self.tcp.write(buf),
            Some(frames) => {
                send_frame(&mut self.tcp, &mut frames.out, OP_BINARY, buf)?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = self.tls.as_deref_mut() {
            return rustls::Stream::new(tls, &mut self.tcp).flush();
        }
        self.tcp.flush()
    }
}

/// A server frame's header at the front of `raw`: (opcode, header size, payload length), or
/// `None` until it is whole.
fn header(raw: &[u8]) -> io::Result<Option<(u8, usize, usize)>> {
    if raw.len() < 2 {
        return Ok(None);
    }
    if raw[1] & 0x80 != 0 {
        return Err(io::Error::other("the server masked a frame"));
    }
    let (len, size) = match raw[1] & 0x7f {
        126 if raw.len() >= 4 => (u16::from_be_bytes([raw[2], raw[3]]) as usize, 4),
        127 if raw.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&raw[2..10]);
            (u64::from_be_bytes(n) as usize, 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    Ok(Some((raw[0] & 0x0f, size, len)))
}

/// Writes `payload` as one masked frame (built in `out`).
fn send_frame(
    tcp: &mut TcpStream,
    out: &mut Vec<u8>,
    opcode: u8,
    payload: &[u8],
) -> io::Result<()> {
    out.clear();
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK_KEY);
    let start = out.len();
    out.extend_from_slice(payload);
    // The server under test checks the masking: nats-server unmasks by its own code.
    tern::proto::websocket::mask(&MASK_KEY, 0, &mut out[start..]);
    tcp.write_all(out)
}
