//! Client protocol parser: bytes in, one operation out.
//!
//! `parse` is a pure function over the unconsumed part of the read buffer. It returns
//! `Ok(Some((op, consumed)))` for a whole operation (payload included), `Ok(None)` when more bytes
//! are needed (nothing is consumed, so a frame split across reads needs no special path), or the
//! error nats-server gives for the input. Every slice in the returned operation borrows from the
//! buffer: parsing copies nothing.
//!
//! Control lines end in `\r\n` or a bare `\n`; operation names are case-insensitive; arguments
//! are separated by any run of spaces and tabs.

use memchr::memchr;

use crate::proto::error::ProtocolError;

/// One operation sent by a client. Slices borrow from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT <json>`
    Connect(&'a [u8]),
    /// `PUB <subject> [reply] <size>\r\n<payload>\r\n`
    Pub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    /// `HPUB <subject> [reply] <header size> <total size>\r\n<headers><payload>\r\n`;
    /// `message` holds headers and payload, the first `header_len` bytes being the headers.
    HPub {
        subject: &'a [u8],
        reply: Option<&'a [u8]>,
        header_len: usize,
        message: &'a [u8],
    },
    /// `SUB <subject> [queue group] <sid>`
    Sub {
        subject: &'a [u8],
        queue: Option<&'a [u8]>,
        sid: &'a [u8],
    },
    /// `UNSUB <sid> [max messages]`
    Unsub { sid: &'a [u8], max: Option<u64> },
    /// `PING`
    Ping,
    /// `PONG`
    Pong,
    /// `INFO <json>` sent by a client: checked as JSON, otherwise ignored.
    Info(&'a [u8]),
    /// `+OK` sent by a client: ignored.
    Ok,
    /// `-ERR <text>` sent by a client: nats-server closes the connection.
    Err(&'a [u8]),
}

/// The limits the parser enforces while reading.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest accepted control line (arguments), `max_control_line`.
    pub max_control_line: usize,
    /// Largest accepted PUB/HPUB size field, `max_payload`.
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// How far past `max_control_line` to look for a line end: room for the operation name, the
/// blanks after it and the CRLF. A line with no end within that many bytes is refused.
const SCAN_SLACK: usize = 64;

/// nats-server's `parseSize` refuses sizes of more than nine digits.
const MAX_SIZE_DIGITS: usize = 9;

/// Parses one operation from the start of `buf`.
pub fn parse<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(ClientOp<'a>, usize)>, ProtocolError> {
    let scan = &buf[..buf
        .len()
        .min(limits.max_control_line.saturating_add(SCAN_SLACK))];
    let Some(newline) = memchr(b'\n', scan) else {
        // An operation name that can never become valid is refused at once, as nats-server's
        // byte-at-a-time state machine does, instead of waiting for the end of the line.
        if !could_be_op(scan) {
            return Err(ProtocolError::UnknownOperation);
        }
        // So are arguments already longer than the limit: nats-server counts them as they
        // arrive, and a CR may still be the start of the line end.
        let partial_args = recognize(strip_cr(scan)).map_or(0, |(_, rest)| rest.len());
        if partial_args > limits.max_control_line || scan.len() < buf.len() {
            return Err(ProtocolError::MaxControlLine);
        }
        return Ok(None);
    };
    let line_end = newline + 1;
    let line = strip_cr(&buf[..newline]);
    let (op, rest) = recognize(line)?;
    if rest.len() > limits.max_control_line {
        return Err(ProtocolError::MaxControlLine);
    }
    match op {
        Op::Ping => Ok(Some((ClientOp::Ping, line_end))),
        Op::Pong => Ok(Some((ClientOp::Pong, line_end))),
        Op::Info => Ok(Some((ClientOp::Info(rest), line_end))),
        Op::PlusOk => Ok(Some((ClientOp::Ok, line_end))),
        Op::MinusErr => Ok(Some((ClientOp::Err(rest), line_end))),
        Op::Connect => Ok(Some((ClientOp::Connect(rest), line_end))),
        Op::Sub => {
            let args = Args::split(rest);
            let (subject, queue, sid) = match args.as_slice() {
                [subject, sid] => (*subject, None, *sid),
                [subject, queue, sid] => (*subject, Some(*queue), *sid),
                _ => return Err(ProtocolError::Malformed("processSub Parse Error")),
            };
            Ok(Some((
                ClientOp::Sub {
                    subject,
                    queue,
                    sid,
                },
                line_end,
            )))
        }
        Op::Unsub => {
            let args = Args::split(rest);
            let (sid, max) = match args.as_slice() {
                [sid] => (*sid, None),
                // nats-server treats a max it cannot parse as no max: unsubscribe now.
                [sid, max] => (*sid, Some(parse_size(max).map_or(0, |m| m as u64))),
                _ => return Err(ProtocolError::Malformed("processUnsub Parse Error")),
            };
            Ok(Some((ClientOp::Unsub { sid, max }, line_end)))
        }
        Op::Pub => {
            let args = Args::split(rest);
            let (subject, reply, size) = match args.as_slice() {
                [subject, size] => (*subject, None, *size),
                [subject, reply, size] => (*subject, Some(*reply), *size),
                _ => return Err(ProtocolError::Malformed("processPub Parse Error")),
            };
            let Some(size) = parse_size(size) else {
                return Err(ProtocolError::Malformed("processPub Bad or Missing Size"));
            };
            if size > limits.max_payload {
                return Err(ProtocolError::MaxPayload);
            }
            let Some(payload) = payload(buf, line_end, size)? else {
                return Ok(None);
            };
            Ok(Some((
                ClientOp::Pub {
                    subject,
                    reply,
                    payload,
                },
                line_end + size + 2,
            )))
        }
        Op::HPub => {
            let args = Args::split(rest);
            let (subject, reply, header_len, size) = match args.as_slice() {
                [subject, header, size] => (*subject, None, *header, *size),
                [subject, reply, header, size] => (*subject, Some(*reply), *header, *size),
                _ => return Err(ProtocolError::Malformed("processHeaderPub Parse Error")),
            };
            let Some(header_len) = parse_size(header_len) else {
                return Err(ProtocolError::Malformed(
                    "processHeaderPub Bad or Missing Header Size",
                ));
            };
            let Some(size) = parse_size(size) else {
                return Err(ProtocolError::Malformed(
                    "processHeaderPub Bad or Missing Total Size",
                ));
            };
            if header_len > size {
                return Err(ProtocolError::Malformed(
                    "processHeaderPub Header Size larger then TotalSize",
                ));
            }
            if size > limits.max_payload {
                return Err(ProtocolError::MaxPayload);
            }
            let Some(message) = payload(buf, line_end, size)? else {
                return Ok(None);
            };
            let op = ClientOp::HPub {
                subject,
                reply,
                header_len,
                message,
            };
            Ok(Some((op, line_end + size + 2)))
        }
    }
}

/// The whole length (control line, payload, CRLF) of the PUB or HPUB that `buf` starts with,
/// once its control line is complete and valid; `None` for anything else. For a reader waiting
/// on a large payload: it can make room for the frame at once and read the rest whole.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Option<usize> {
    let scan = &buf[..buf
        .len()
        .min(limits.max_control_line.saturating_add(SCAN_SLACK))];
    let newline = memchr(b'\n', scan)?;
    let (op, rest) = recognize(strip_cr(&buf[..newline])).ok()?;
    let args = Args::split(rest);
    let size = match (op, args.as_slice()) {
        (Op::Pub, [_, size] | [_, _, size]) => parse_size(size)?,
        (Op::HPub, [_, _, size] | [_, _, _, size]) => parse_size(size)?,
        _ => return None,
    };
    (size <= limits.max_payload).then_some(newline + 1 + size + 2)
}

/// The operation names a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Connect,
    Pub,
    HPub,
    Sub,
    Unsub,
    Ping,
    Pong,
    Info,
    PlusOk,
    MinusErr,
}

/// Operations recognised by their first letters alone, as nats-server's state machine does:
/// `PINGX` is a PING, `CONNECTX {}` a CONNECT whose argument is `X {}`.
const PREFIX_OPS: [(&[u8], Op); 6] = [
    (b"PING", Op::Ping),
    (b"PONG", Op::Pong),
    (b"CONNECT", Op::Connect),
    (b"INFO", Op::Info),
    (b"+OK", Op::PlusOk),
    (b"-ERR", Op::MinusErr),
];

/// Operations whose name must be followed by a space or a tab.
const ARG_OPS: [(&[u8], Op); 4] = [
    (b"PUB", Op::Pub),
    (b"HPUB", Op::HPub),
    (b"SUB", Op::Sub),
    (b"UNSUB", Op::Unsub),
];

/// Finds the operation a complete control line starts with, and its arguments (leading blanks
/// removed).
fn recognize(line: &[u8]) -> Result<(Op, &[u8]), ProtocolError> {
    // The common case first: `PUB ` as clients send it. No other operation's name starts
    // with `PUB`, so this finds what the lists below would.
    if line.len() > 4 && &line[..4] == b"PUB " {
        return Ok((Op::Pub, trim_blanks(&line[4..])));
    }
    // Then SUB and UNSUB, which a client churning subscriptions sends as often.
    if line.len() > 4 && &line[..4] == b"SUB " {
        return Ok((Op::Sub, trim_blanks(&line[4..])));
    }
    if line.len() > 6 && &line[..6] == b"UNSUB " {
        return Ok((Op::Unsub, trim_blanks(&line[6..])));
    }
    for (name, op) in PREFIX_OPS {
        if starts_with_ignore_case(line, name) {
            return Ok((op, trim_blanks(&line[name.len()..])));
        }
    }
    for (name, op) in ARG_OPS {
        if starts_with_ignore_case(line, name) && line.get(name.len()).is_some_and(|&b| is_blank(b))
        {
            return Ok((op, trim_blanks(&line[name.len()..])));
        }
    }
    Err(ProtocolError::UnknownOperation)
}

/// True while `partial` (a line whose end has not arrived) can still become a known operation.
fn could_be_op(partial: &[u8]) -> bool {
    let is_start_of = |name: &[u8]| {
        partial.len() <= name.len() && name[..partial.len()].eq_ignore_ascii_case(partial)
    };
    PREFIX_OPS
        .iter()
        .any(|(name, _)| starts_with_ignore_case(partial, name) || is_start_of(name))
        || ARG_OPS.iter().any(|(name, _)| {
            is_start_of(name)
                || (starts_with_ignore_case(partial, name) && is_blank(partial[name.len()]))
        })
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn trim_blanks(args: &[u8]) -> &[u8] {
    let start = args
        .iter()
        .position(|&b| !is_blank(b))
        .unwrap_or(args.len());
    &args[start..]
}

/// The payload of `size` bytes after the control line, checking the CRLF that must follow it.
fn payload(buf: &[u8], start: usize, size: usize) -> Result<Option<&[u8]>, ProtocolError> {
    let end = start + size;
    if buf.len() < end + 2 {
        // Refuse a wrong terminator as soon as its first byte is here.
        if buf.len() > end && buf[end] != b'\r' {
            return Err(ProtocolError::UnknownOperation);
        }
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ProtocolError::UnknownOperation);
    }
    Ok(Some(&buf[start..end]))
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// nats-server's `parseSize`: one to nine ASCII digits.
fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > MAX_SIZE_DIGITS {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

/// Where the first blank at or after `at` is (`bytes.len()` if none): eight bytes at a time,
/// since every PUB, SUB and UNSUB has an argument or two of ten bytes or more.
#[inline]
fn blank_from(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each zero byte of `v` is set; bytes above a zero one may be flagged too,
    // so only the lowest flag is exact, and it is the one used.
    let zeros = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let blanks =
            zeros(word ^ (ONES * u64::from(b' '))) | zeros(word ^ (ONES * u64::from(b'\t')));
        if blanks != 0 {
            return at + (blanks.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < bytes.len() && !is_blank(bytes[at]) {
        at += 1;
    }
    at
}

/// Up to five blank-separated arguments; more than five is reported as six so that every
/// operation's arity check fails.
struct Args<'a> {
    items: [&'a [u8]; 6],
    len: usize,
}

impl<'a> Args<'a> {
    fn split(rest: &'a [u8]) -> Args<'a> {
        let mut args = Args {
            items: [&[]; 6],
            len: 0,
        };
        // Two tight loops (skip blanks, then take an argument): `split` + `filter` cost about
        // sixteen instructions a byte, on every PUB.
        let mut at = 0;
        loop {
            while at < rest.len() && is_blank(rest[at]) {
                at += 1;
            }
            if at == rest.len() {
                return args;
            }
            let from = at;
            at = blank_from(rest, at);
            if !args.push(&rest[from..at]) {
                return args;
            }
        }
    }

    /// Adds an argument; false once all six places are taken.
    #[inline(always)]
    fn push(&mut self, arg: &'a [u8]) -> bool {
        if self.len == self.items.len() {
            return false;
        }
        self.items[self.len] = arg;
        self.len += 1;
        true
    }

    fn as_slice(&self) -> &[&'a [u8]] {
        &self.items[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Arguments split eight bytes at a time are the blank-separated words.
        #[test]
        fn arguments_are_the_blank_separated_words(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"ab \t\r\x0c.\x89\xa0\x01".to_vec()),
                0..40,
            )
        ) {
            let words: Vec<&[u8]> = bytes.split(|&b| is_blank(b)).filter(|w| !w.is_empty()).collect();
            let args = Args::split(&bytes);
            if words.len() <= 5 {
                proptest::prop_assert_eq!(args.as_slice(), &words[..]);
            } else {
                proptest::prop_assert_eq!(args.as_slice().len(), 6);
                proptest::prop_assert_eq!(&args.as_slice()[..5], &words[..5]);
            }
        }
    }

    #[test]
    fn frame_len_of_a_partial_pub() {
        let l = limits();
        // Control line complete, payload not yet here: the whole frame's length.
        assert_eq!(frame_len(b"PUB a 100\r\nxx", &l), Some(11 + 100 + 2));
        assert_eq!(frame_len(b"pub a r 5\r\n", &l), Some(11 + 5 + 2));
        assert_eq!(frame_len(b"HPUB a 2 12\r\n", &l), Some(13 + 12 + 2));
        assert_eq!(frame_len(b"HPUB a r 2 12\n", &l), Some(14 + 12 + 2));
        // Nothing to wait for: no line end yet, another operation, a bad or too large size.
        for none in [
            &b"PUB a 100"[..],
            b"SUB a 1\r\n",
            b"PING\r\n",
            b"PUB a x\r\n",
            b"PUB a 2000000\r\n",
            b"PUB\r\n",
        ] {
            assert_eq!(frame_len(none, &l), None, "{none:?}");
        }
        // It agrees with what parse consumes once the frame is whole.
        let frame = b"PUB foo bar 3\r\nabc\r\n";
        let (_, n) = parse(frame, &l).unwrap().unwrap();
        assert_eq!(frame_len(&frame[..16], &l), Some(n));
    }

    /// Parses everything in `input`, feeding it in the chunks given by `cuts`, and returns the
    /// operations (as debug strings) and the error that ended the input, if any.
    fn parse_chunked(input: &[u8], cuts: &[usize]) -> (Vec<String>, Option<ProtocolError>) {
        let mut buf = Vec::new();
        let mut ops = Vec::new();
        let mut fed = 0;
        let mut cut_points: Vec<usize> =
            cuts.iter().copied().filter(|&c| c < input.len()).collect();
        cut_points.push(input.len());
        for cut in cut_points {
            buf.extend_from_slice(&input[fed..cut.max(fed)]);
            fed = cut.max(fed);
            loop {
                match parse(&buf, &limits()) {
                    Ok(Some((op, n))) => {
                        ops.push(format!("{op:?}"));
                        buf.drain(..n);
                    }
                    Ok(None) => break,
                    Err(e) => return (ops, Some(e)),
                }
            }
        }
        (ops, None)
    }

    /// Runs `input` whole, byte by byte, and in pseudo-random chunks; all three must agree.
    fn parse_all_ways(input: &[u8]) -> (Vec<String>, Option<ProtocolError>) {
        let whole = parse_chunked(input, &[]);
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            parse_chunked(input, &bytewise),
            whole,
            "byte by byte: {input:?}"
        );
        let mut rng = fastrand::Rng::with_seed(input.len() as u64);
        for _ in 0..20 {
            let mut cuts: Vec<usize> = (0..4).map(|_| rng.usize(0..=input.len())).collect();
            cuts.sort_unstable();
            assert_eq!(
                parse_chunked(input, &cuts),
                whole,
                "chunks {cuts:?}: {input:?}"
            );
        }
        whole
    }

    fn ops(input: &str) -> Vec<String> {
        let (ops, err) = parse_all_ways(input.as_bytes());
        assert_eq!(err, None, "{input:?}");
        ops
    }

    fn err(input: &str) -> ProtocolError {
        parse_all_ways(input.as_bytes()).1.expect("an error")
    }

    fn one(input: &str) -> ClientOp<'_> {
        parse(input.as_bytes(), &limits()).unwrap().unwrap().0
    }

    #[test]
    fn pub_shapes() {
        assert_eq!(
            one("PUB foo 5\r\nhello\r\n"),
            ClientOp::Pub {
                subject: b"foo",
                reply: None,
                payload: b"hello"
            }
        );
        assert_eq!(
            one("PUB foo bar 5\r\nhello\r\n"),
            ClientOp::Pub {
                subject: b"foo",
                reply: Some(b"bar"),
                payload: b"hello"
            }
        );
        // nats-server's TestParsePubArg spellings: tabs and runs of blanks anywhere.
        for line in [
            "PUB a 2\r\nok\r\n",
            "PUB \ta 2\r\nok\r\n",
            "PUB a\t 2\r\nok\r\n",
            "PUB  a   2  \r\nok\r\n",
            "pub\ta\t2\t\r\nok\r\n",
            "Pub a 2\nok\r\n",
        ] {
            assert_eq!(
                one(line),
                ClientOp::Pub {
                    subject: b"a",
                    reply: None,
                    payload: b"ok"
                },
                "{line:?}"
            );
        }
        assert_eq!(
            one("PUB foo.bar INBOX.22 0\r\n\r\n"),
            ClientOp::Pub {
                subject: b"foo.bar",
                reply: Some(b"INBOX.22"),
                payload: b""
            }
        );
        // The payload may contain anything, CRLF included.
        assert_eq!(
            one("PUB a 4\r\n\r\n\r\n\r\n"),
            ClientOp::Pub {
                subject: b"a",
                reply: None,
                payload: b"\r\n\r\n"
            }
        );
    }

    #[test]
    fn hpub_shapes() {
        let msg = "HPUB foo 12 17\r\nNATS/1.0\r\n\r\nhello\r\n";
        assert_eq!(
            one(msg),
            ClientOp::HPub {
                subject: b"foo",
                reply: None,
                header_len: 12,
                message: b"NATS/1.0\r\n\r\nhello"
            }
        );
        let msg = "hpub foo r 12 12\r\nNATS/1.0\r\n\r\n\r\n";
        assert_eq!(
            one(msg),
            ClientOp::HPub {
                subject: b"foo",
                reply: Some(b"r"),
                header_len: 12,
                message: b"NATS/1.0\r\n\r\n"
            }
        );
    }

    #[test]
    fn sub_unsub_ping_pong_connect() {
        assert_eq!(
            one("SUB foo 1\r\n"),
            ClientOp::Sub {
                subject: b"foo",
                queue: None,
                sid: b"1"
            }
        );
        assert_eq!(
            one("sub foo\tworkers  22\n"),
            ClientOp::Sub {
                subject: b"foo",
                queue: Some(b"workers"),
                sid: b"22"
            }
        );
        assert_eq!(
            one("UNSUB 1\r\n"),
            ClientOp::Unsub {
                sid: b"1",
                max: None
            }
        );
        assert_eq!(
            one("unsub 1 10\r\n"),
            ClientOp::Unsub {
                sid: b"1",
                max: Some(10)
            }
        );
        assert_eq!(one("PING\r\n"), ClientOp::Ping);
        assert_eq!(one("ping\n"), ClientOp::Ping);
        assert_eq!(one("PoNg\r\n"), ClientOp::Pong);
        assert_eq!(
            one("CONNECT {\"verbose\":false}\r\n"),
            ClientOp::Connect(b"{\"verbose\":false}")
        );
        assert_eq!(one("connect\t {}\n"), ClientOp::Connect(b"{}"));
    }

    #[test]
    fn streams_parse_the_same_in_any_chunking() {
        let input =
            "CONNECT {\"verbose\":false}\r\nSUB foo 1\r\nSUB foo q 2\nPUB foo 5\r\nhello\r\n\
                     HPUB foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 1 3\r\nPING\r\nPONG\n";
        assert_eq!(ops(input).len(), 8);
    }

    #[test]
    fn partial_frames_consume_nothing() {
        for partial in [
            "PUB foo 5\r\nhel",
            "PUB foo 5\r\nhello",
            "PUB foo 5\r\nhello\r",
            "SUB foo",
            "P",
            "",
        ] {
            assert_eq!(
                parse(partial.as_bytes(), &limits()).unwrap(),
                None,
                "{partial:?}"
            );
        }
    }

    #[test]
    fn malformed_lines() {
        use ProtocolError::*;
        assert_eq!(err("FOO\r\n"), UnknownOperation);
        assert_eq!(err("PUBX foo 1\r\n"), UnknownOperation);
        assert_eq!(err("MSG foo 1 2\r\nhi\r\n"), UnknownOperation);
        assert_eq!(err(" PING\r\n"), UnknownOperation);
        assert_eq!(err("PIN G\r\n"), UnknownOperation);
        assert_eq!(err("P\r\n"), UnknownOperation);
        assert_eq!(err("\r\n"), UnknownOperation);
        assert_eq!(err("\n"), UnknownOperation);
        assert_eq!(err("PUB foo 3\r\nabcd\r\n"), UnknownOperation);
        assert_eq!(err("PUB foo 3\r\nabc\n"), UnknownOperation);
        assert!(matches!(err("PUB \r\n"), Malformed(_)));
        assert!(matches!(err("PUB foo\r\n"), Malformed(_)));
        assert!(matches!(err("PUB foo bar\r\n"), Malformed(_)));
        assert!(matches!(err("PUB foo -1\r\n"), Malformed(_)));
        assert!(matches!(err("PUB foo 1 2 3\r\n"), Malformed(_)));
        assert!(matches!(err("PUB foo 1234567890\r\n"), Malformed(_)));
        assert!(matches!(err("SUB foo\r\n"), Malformed(_)));
        assert!(matches!(err("SUB foo bar baz qux\r\n"), Malformed(_)));
        assert!(matches!(err("UNSUB 1 1 1\r\n"), Malformed(_)));
        assert_eq!(err("UNSUB\r\n"), UnknownOperation);
        assert_eq!(err("SUB\r\n"), UnknownOperation);
        assert_eq!(err("PUB\r\n"), UnknownOperation);
        assert!(matches!(err("HPUB foo 10 5\r\n"), Malformed(_)));
        assert!(matches!(err("HPUB foo 5\r\n"), Malformed(_)));
    }

    #[test]
    fn limits_are_enforced_before_the_payload_arrives() {
        let l = Limits {
            max_control_line: 64,
            max_payload: 10,
        };
        assert_eq!(parse(b"PUB foo 11\r\n", &l), Err(ProtocolError::MaxPayload));
        assert_eq!(
            parse(b"HPUB foo 2 11\r\n", &l),
            Err(ProtocolError::MaxPayload)
        );
        assert_eq!(parse(b"PUB foo 10\r\n", &l), Ok(None));
        let long = format!("PUB {} 1\r\n", "a".repeat(100));
        assert_eq!(
            parse(long.as_bytes(), &l),
            Err(ProtocolError::MaxControlLine)
        );
        let unterminated = format!("PUB {}", "a".repeat(100));
        assert_eq!(
            parse(unterminated.as_bytes(), &l),
            Err(ProtocolError::MaxControlLine)
        );
        let fits = format!("PUB {} 1", "a".repeat(50));
        assert_eq!(parse(fits.as_bytes(), &l), Ok(None));
    }

    #[test]
    fn control_line_limit_counts_the_arguments_exactly() {
        // nats-server: 4096 argument bytes (after the name and its blanks) pass, 4097 fail,
        // whether or not the line end has arrived.
        let l = limits();
        let args = |n: usize| format!("{} 1", "a".repeat(n - 2));
        let at_limit = format!("PUB   {}\r\n", args(4096));
        assert_eq!(
            parse(at_limit.as_bytes(), &l),
            Ok(None),
            "waits for the payload"
        );
        let over = format!("PUB {}\r\n", args(4097));
        assert_eq!(
            parse(over.as_bytes(), &l),
            Err(ProtocolError::MaxControlLine)
        );
        let partial_at_limit = format!("SUB {}", "a".repeat(4096));
        assert_eq!(parse(partial_at_limit.as_bytes(), &l), Ok(None));
        let partial_over = format!("SUB {}", "a".repeat(4097));
        assert_eq!(
            parse(partial_over.as_bytes(), &l),
            Err(ProtocolError::MaxControlLine)
        );
        let connect = format!("CONNECT {{\"name\":\"{}\"}}\r\n", "x".repeat(5000));
        assert_eq!(
            parse(connect.as_bytes(), &l),
            Err(ProtocolError::MaxControlLine)
        );
    }
}
