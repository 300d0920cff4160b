//! The client's side of the wire: what a server sends (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`,
//! `+OK`, `-ERR`) parsed from a buffer, and the operations a client sends, encoded.
//!
//! Like the server's parser, [`parse`] is a pure function: `Ok(None)` means "need more bytes"
//! and consumes nothing, so a frame split across reads needs no special path.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use memchr::memchr;

/// Longest control line accepted from a server (nats-server's `max_control_line` default is
/// 4 KiB; INFO lines with many `connect_urls` are longer, so allow more).
const MAX_LINE: usize = 1 << 20;

/// One operation sent by a server.
#[derive(Debug)]
pub enum ServerOp {
    /// `INFO {json}`
    Info(Bytes),
    /// `MSG` or `HMSG`.
    Msg(Msg),
    /// `PING`
    Ping,
    /// `PONG`
    Pong,
    /// `+OK`
    Ok,
    /// `-ERR '<text>'`, with the quotes removed.
    Err(String),
}

/// A delivered message.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The subject it was published to.
    pub subject: String,
    /// The subscription it was delivered to.
    pub sid: u64,
    /// Where to answer, if anywhere.
    pub reply: Option<String>,
    /// The header block (`NATS/1.0 ...\r\n...\r\n\r\n`), for `HMSG`.
    pub headers: Option<Bytes>,
    /// The payload.
    pub payload: Bytes,
}

impl Msg {
    /// The status code of the header block's first line (`NATS/1.0 503` -> 503).
    pub fn status(&self) -> Option<u16> {
        let headers = self.headers.as_ref()?;
        let line = headers.split(|&b| b == b'\n').next()?;
        let text = std::str::from_utf8(line).ok()?.trim();
        text.strip_prefix("NATS/1.0")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The headers as `(name, value)` pairs, in order (status line left out).
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        let Some(headers) = &self.headers else {
            return Vec::new();
        };
        String::from_utf8_lossy(headers)
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }
}

/// A server sent something that is not the protocol.
#[derive(Debug, PartialEq, Eq)]
pub struct WireError(pub String);

/// Parses one operation from the front of `buf`.
pub fn parse(buf: &mut BytesMut) -> Result<Option<ServerOp>, WireError> {
    let Some(end) = memchr(b'\n', buf) else {
        if buf.len() > MAX_LINE {
            return Err(WireError("control line too long".into()));
        }
        return Ok(None);
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let text = std::str::from_utf8(line).map_err(|_| WireError("control line not UTF-8".into()))?;
    let (verb, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    let op = match verb.to_ascii_uppercase().as_str() {
        "PING" => ServerOp::Ping,
        "PONG" => ServerOp::Pong,
        "+OK" => ServerOp::Ok,
        "-ERR" => {
            let text = rest.trim().trim_matches('\'').to_string();
            ServerOp::Err(text)
        }
        "INFO" => {
            let json = Bytes::copy_from_slice(rest.trim().as_bytes());
            ServerOp::Info(json)
        }
        // MSG <subject> <sid> [reply-to] <#bytes>
        // HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
        "MSG" | "HMSG" => {
            let with_headers = verb.eq_ignore_ascii_case("HMSG");
            let args: Vec<&str> = rest.split_whitespace().collect();
            let fixed = if with_headers { 4 } else { 3 };
            let bad = || WireError(format!("bad {verb} line: {text}"));
            let (subject, sid, reply, sizes) = match args.len() {
                n if n == fixed => (args[0], args[1], None, &args[2..]),
                n if n == fixed + 1 => (args[0], args[1], Some(args[2]), &args[3..]),
                _ => return Err(bad()),
            };
            let number = |s: &str| s.parse::<usize>().map_err(|_| bad());
            let (header_len, total) = match sizes {
                [total] => (0, number(total)?),
                [header, total] => (number(header)?, number(total)?),
                _ => return Err(bad()),
            };
            if header_len > total {
                return Err(bad());
            }
            let sid = sid.parse().map_err(|_| bad())?;
            let need = end + 1 + total + 2;
            if buf.len() < need {
                return Ok(None);
            }
            let msg = Msg {
                subject: subject.to_string(),
                sid,
                reply: reply.map(str::to_string),
                headers: None,
                payload: Bytes::new(),
            };
            buf.advance(end + 1);
            let mut body = buf.split_to(total).freeze();
            buf.advance(2);
            let headers = with_headers.then(|| body.split_to(header_len));
            return Ok(Some(ServerOp::Msg(Msg {
                headers,
                payload: body,
                ..msg
            })));
        }
        _ => return Err(WireError(format!("unknown operation: {text}"))),
    };
    buf.advance(end + 1);
    Ok(Some(op))
}

/// `SUB <subject> [queue group] <sid>`
pub fn encode_sub(out: &mut BytesMut, subject: &str, queue: Option<&str>, sid: u64) {
    out.put_slice(b"SUB ");
    out.put_slice(subject.as_bytes());
    if let Some(queue) = queue {
        out.put_u8(b' ');
        out.put_slice(queue.as_bytes());
    }
    out.put_slice(format!(" {sid}\r\n").as_bytes());
}

/// `UNSUB <sid>`
pub fn encode_unsub(out: &mut BytesMut, sid: u64) {
    out.put_slice(format!("UNSUB {sid}\r\n").as_bytes());
}

/// `PUB <subject> [reply-to] <#bytes>` or, with headers,
/// `HPUB <subject> [reply-to] <#header bytes> <#total bytes>`, then the body.
pub fn encode_pub(
    out: &mut BytesMut,
    subject: &str,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    out.put_slice(if headers.is_some() { b"HPUB " } else { b"PUB " });
    out.put_slice(subject.as_bytes());
    if let Some(reply) = reply {
        out.put_u8(b' ');
        out.put_slice(reply.as_bytes());
    }
    let header_len = headers.map_or(0, <[u8]>::len);
    let sizes = match headers {
        Some(_) => format!(" {header_len} {}\r\n", header_len + payload.len()),
        None => format!(" {}\r\n", payload.len()),
    };
    out.put_slice(sizes.as_bytes());
    if let Some(headers) = headers {
        out.put_slice(headers);
    }
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// A header block, `NATS/1.0\r\n<name>: <value>\r\n...\r\n`.
pub fn encode_headers(pairs: &[(String, String)]) -> Vec<u8> {
    let mut block = b"NATS/1.0\r\n".to_vec();
    for (name, value) in pairs {
        block.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    block.extend_from_slice(b"\r\n");
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Vec<ServerOp> {
        let mut buf = BytesMut::from(bytes);
        let mut ops = Vec::new();
        while let Some(op) = parse(&mut buf).unwrap() {
            ops.push(op);
        }
        assert!(buf.is_empty());
        ops
    }

    #[test]
    fn parses_every_server_operation() {
        let ops = parse_all(
            b"INFO {\"a\":1} \r\nPING\r\nPONG\r\n+OK\r\n-ERR 'Authorization Violation'\r\n\
              MSG foo 1 5\r\nhello\r\nMSG foo 2 _INBOX.x 0\r\n\r\n\
              HMSG foo 3 20 22\r\nNATS/1.0\r\nA: b c\r\n\r\nhi\r\n",
        );
        assert!(matches!(&ops[0], ServerOp::Info(j) if &j[..] == b"{\"a\":1}"));
        assert!(matches!(ops[1], ServerOp::Ping));
        assert!(matches!(ops[2], ServerOp::Pong));
        assert!(matches!(ops[3], ServerOp::Ok));
        assert!(matches!(&ops[4], ServerOp::Err(t) if t == "Authorization Violation"));
        let ServerOp::Msg(m) = &ops[5] else { panic!() };
        assert_eq!(
            (m.subject.as_str(), m.sid, &m.payload[..]),
            ("foo", 1, &b"hello"[..])
        );
        let ServerOp::Msg(m) = &ops[6] else { panic!() };
        assert_eq!(m.reply.as_deref(), Some("_INBOX.x"));
        let ServerOp::Msg(m) = &ops[7] else { panic!() };
        assert_eq!(m.header_pairs(), vec![("A".into(), "b c".into())]);
        assert_eq!(&m.payload[..], b"hi");
    }

    #[test]
    fn a_frame_split_anywhere_waits_for_the_rest() {
        let whole = b"HMSG foo 3 _R 20 22\r\nNATS/1.0\r\nA: b c\r\n\r\nhi\r\n";
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert!(parse(&mut buf).unwrap().is_none());
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn reads_the_status_of_a_no_responders_message() {
        let ops = parse_all(b"HMSG _INBOX.a 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
        let ServerOp::Msg(m) = &ops[0] else { panic!() };
        assert_eq!(m.status(), Some(503));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(&mut BytesMut::from(&b"HELLO\r\n"[..])).is_err());
        assert!(parse(&mut BytesMut::from(&b"MSG a b 1\r\n"[..])).is_err());
    }

    #[test]
    fn encodes_what_the_server_parses() {
        let mut out = BytesMut::new();
        encode_pub(&mut out, "a", Some("r"), Some(b"NATS/1.0\r\n\r\n"), b"xy");
        assert_eq!(&out[..], b"HPUB a r 12 14\r\nNATS/1.0\r\n\r\nxy\r\n");
        out.clear();
        encode_sub(&mut out, "a.>", Some("q"), 7);
        assert_eq!(&out[..], b"SUB a.> q 7\r\n");
    }
}
