//! The route protocol's parser and encoders: what one server of a cluster says to another, as
//! nats-server 2.15.1 speaks it to a peer without route pooling (every operation names its
//! account). A route has its own operation set: a client's `PUB` or `SUB` on a route is an
//! unknown operation, as a route's `RS+` is on a client connection.
//!
//! ```text
//! RS+ <acc> <subject>[ <queue> <weight>]          LS+ <origin> <acc> <subject>[ <queue> <weight>]
//! RS- <acc> <subject>[ <queue>]                   LS- [<origin>] <acc> <subject>[ <queue>]
//! RMSG <acc> <subject> [<reply> | + <reply> <q>... | | <q>...] <size>
//! HMSG <acc> <subject> [<reply> | + <reply> <q>... | | <q>...] <header size> <total size>
//! LMSG <origin> <acc> <subject> [...] <header size> <total size>
//! CONNECT, INFO, PING, PONG, +OK, -ERR
//! ```

use bytes::{BufMut, BytesMut};
use memchr::memchr;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::proto::error::ProtocolError;
use crate::proto::protocol::{put_decimal, put_frame, Head, Sink, DECIMAL_MAX};

/// One operation received on a route. Slices borrow from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp<'a> {
    /// `CONNECT <json>`
    Connect(&'a [u8]),
    /// `INFO <json>`
    Info(&'a [u8]),
    /// `PING`
    Ping,
    /// `PONG`
    Pong,
    /// `+OK`
    Ok,
    /// `-ERR <text>`: the peer closes; so do we.
    Err(&'a [u8]),
    /// `RS+` / `LS+`: the peer has interest.
    Sub(Interest<'a>),
    /// `RS-` / `LS-`: the peer lost interest.
    Unsub(Interest<'a>),
    /// `RMSG` / `HMSG` / `LMSG`: a message for our subscribers.
    Msg(RoutedMsg<'a>),
}

/// The subject of an `RS+`/`RS-`/`LS+`/`LS-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest<'a> {
    /// The leaf cluster the interest comes from (`LS+`/`LS-` with origin).
    pub origin: Option<&'a [u8]>,
    /// The account.
    pub account: &'a [u8],
    /// The subject or filter.
    pub subject: &'a [u8],
    /// The queue group.
    pub queue: Option<&'a [u8]>,
    /// For a queue `RS+`/`LS+`: how many members the peer has (an absolute count); 0 (also for
    /// a weight that is no number) is a group never chosen, as in nats-server.
    pub weight: u32,
}

/// A routed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedMsg<'a> {
    /// The leaf cluster the message came from (`LMSG`).
    pub origin: Option<&'a [u8]>,
    /// The account.
    pub account: &'a [u8],
    /// The subject.
    pub subject: &'a [u8],
    /// The reply subject.
    pub reply: Option<&'a [u8]>,
    /// The queue groups the sender chose us for, blank-separated (see [`queue_names`]).
    pub queues: &'a [u8],
    /// The length of the header block at the start of `message` (`HMSG`/`LMSG`).
    pub header_len: Option<usize>,
    /// Headers and payload.
    pub message: &'a [u8],
}

/// A JetStream push delivery from a peer: a `$JS.ACK.` reply that carries the subject the
/// message was stored on after the first `@` that follows its eight dots
/// (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>@<subject>`). Local
/// clients get it on that subject with the reply before the `@` (nats-server's
/// `processMsgResults`). `None` for any other reply, or an `@` at the very end.
pub fn js_ack_delivery(reply: &[u8]) -> Option<(&[u8], &[u8])> {
    if !reply.starts_with(b"$JS.ACK.") {
        return None;
    }
    let mut dots = 0;
    let at = reply.iter().position(|&b| {
        if b == b'.' {
            dots += 1;
        }
        b == b'@' && dots >= 8
    })?;
    (at + 1 < reply.len()).then(|| (&reply[at + 1..], &reply[..at]))
}

/// The queue names of a routed message, one at a time.
pub fn queue_names(queues: &[u8]) -> impl Iterator<Item = &[u8]> {
    queues
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|q| !q.is_empty())
}

/// nats-server allows a server connection 16 times the client control line
/// (`overMaxControlLineLimit`).
pub const CONTROL_LINE_FACTOR: usize = 16;

/// Parses one route operation from the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse(
    buf: &[u8],
    max_control_line: usize,
    max_payload: usize,
) -> Result<Option<(RouteOp<'_>, usize)>, ProtocolError> {
    parse_for(buf, max_control_line, max_payload, false)
}

/// The whole length of the `RMSG`/`HMSG`/`LMSG` frame `buf` starts with, once its control
/// line is there: what a reader waiting for the rest should make room for.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    frame_len_for(buf, false)
}

/// Parses one leafnode operation (`proto::leaf`): the same frames without account or origin.
pub(crate) fn parse_for(
    buf: &[u8],
    max_control_line: usize,
    max_payload: usize,
    leaf: bool,
) -> Result<Option<(RouteOp<'_>, usize)>, ProtocolError> {
    let limit = max_control_line.saturating_mul(CONTROL_LINE_FACTOR);
    let scan = &buf[..buf.len().min(limit.saturating_add(64))];
    let Some(newline) = memchr(b'\n', scan) else {
        if scan.len() < buf.len() {
            return Err(ProtocolError::MaxControlLine);
        }
        return Ok(None);
    };
    let line_end = newline + 1;
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let (name, rest) = match line.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(at) => (&line[..at], trim(&line[at..])),
        None => (line, &line[line.len()..]),
    };
    if rest.len() > limit {
        return Err(ProtocolError::MaxControlLine);
    }
    // Upper-cased on the stack: every known name fits, a longer one is unknown anyway (a
    // `to_ascii_uppercase` here was an allocation per routed message).
    let mut folded = [0u8; 8];
    let upper: &[u8] = match folded.get_mut(..name.len()) {
        Some(room) => {
            room.copy_from_slice(name);
            room.make_ascii_uppercase();
            room
        }
        None => name,
    };
    // nats-server's parser wants a space after the name of an operation with arguments: a bare
    // `RS+` is an unknown operation, not bad arguments.
    let bare = line.len() == name.len();
    if bare
        && matches!(
            upper,
            b"RS+"
                | b"LS+"
                | b"RS-"
                | b"LS-"
                | b"RMSG"
                | b"HMSG"
                | b"LMSG"
                | b"SUB"
                | b"UNSUB"
                | b"PUB"
        )
    {
        return Err(ProtocolError::UnknownOperation);
    }
    let op = match upper {
        b"PING" => RouteOp::Ping,
        b"PONG" => RouteOp::Pong,
        b"+OK" => RouteOp::Ok,
        b"-ERR" => RouteOp::Err(rest),
        b"INFO" => RouteOp::Info(rest),
        b"CONNECT" => RouteOp::Connect(rest),
        // nats-server's parser reads a client's SUB/UNSUB on a route as RS+/RS- (so `SUB foo 1`
        // is interest in subject `1` of account `foo`) and a PUB as a message of no account.
        b"LS+" if leaf => RouteOp::Sub(leaf_interest(rest, true)?),
        b"LS-" if leaf => RouteOp::Unsub(leaf_interest(rest, false)?),
        b"RS+" | b"RS-" | b"RMSG" | b"SUB" | b"UNSUB" | b"PUB" if leaf => {
            return Err(ProtocolError::UnknownOperation)
        }
        b"RS+" | b"LS+" | b"SUB" => RouteOp::Sub(interest(rest, upper[0] == b'L', true)?),
        b"RS-" | b"LS-" | b"UNSUB" => RouteOp::Unsub(interest(rest, upper[0] == b'L', false)?),
        b"RMSG" | b"HMSG" | b"LMSG" | b"PUB" => {
            let parsed = match upper {
                b"PUB" => client_pub(rest),
                op if leaf => {
                    let form = MsgForm {
                        origin: false,
                        account: false,
                        headers: op == b"HMSG",
                    };
                    msg_args(rest, form)
                }
                _ => routed(rest, upper)?,
            };
            let Some((msg, size)) = parsed else {
                return Err(ProtocolError::Malformed("processRoutedMsgArgs Parse Error"));
            };
            if size > max_payload {
                return Err(ProtocolError::MaxPayload);
            }
            let end = line_end + size;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::UnknownOperation);
            }
            let message = &buf[line_end..end];
            return Ok(Some((RouteOp::Msg(RoutedMsg { message, ..msg }), end + 2)));
        }
        _ => return Err(ProtocolError::UnknownOperation),
    };
    Ok(Some((op, line_end)))
}

/// The whole length of the message frame (`RMSG`, `HMSG`, `LMSG`; for a leafnode `LMSG`,
/// `HMSG`) that `buf` starts with, once its control line is there: how much the reader should
/// make room for. `None` for anything else, or a control line that does not parse.
pub(crate) fn frame_len_for(buf: &[u8], leaf: bool) -> Option<usize> {
    let newline = memchr(b'\n', buf)?;
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let at = line.iter().position(|&b| b == b' ' || b == b'\t')?;
    let (name, rest) = (&line[..at], trim(&line[at..]));
    let is = |op: &[u8]| name.eq_ignore_ascii_case(op);
    let form = match (leaf, is(b"RMSG"), is(b"HMSG"), is(b"LMSG")) {
        (false, true, _, _) => MsgForm {
            origin: false,
            account: true,
            headers: false,
        },
        (_, _, true, _) => MsgForm {
            origin: false,
            account: !leaf,
            headers: true,
        },
        (_, _, _, true) => MsgForm {
            origin: !leaf,
            account: !leaf,
            headers: !leaf,
        },
        _ => return None,
    };
    let (_, size) = msg_args(rest, form)?;
    Some(newline + 1 + size + 2)
}

/// `PUB subj [reply] size` on a route: a message of no account, which no one gets.
fn client_pub(rest: &[u8]) -> Option<(RoutedMsg<'_>, usize)> {
    let args: SmallVec<[&[u8]; 4]> = split(rest).collect();
    let (subject, reply, size) = match args[..] {
        [subject, size] => (subject, None, size),
        [subject, reply, size] => (subject, Some(reply), size),
        _ => return None,
    };
    let msg = RoutedMsg {
        origin: None,
        account: &rest[..0],
        subject,
        reply,
        queues: &rest[..0],
        header_len: None,
        message: &rest[..0],
    };
    Some((msg, parse_size(size)?))
}

/// `RS+ acc subj [queue weight]`, `LS+ origin acc subj [queue weight]`, and the `-` forms
/// (`LS-` with or without its origin: a peer without `lnocu` leaves it out).
fn interest(rest: &[u8], leaf: bool, add: bool) -> Result<Interest<'_>, ProtocolError> {
    let err = ProtocolError::Malformed(match add {
        true => "processRemoteSub Parse Error",
        false => "processRemoteUnsub Parse Error",
    });
    let args: SmallVec<[&[u8]; 6]> = split(rest).collect();
    let (origin, args) = match (leaf, add, args.len()) {
        (false, _, _) => (None, &args[..]),
        // `LS+ origin acc subj [q w]`: 3 or 5 arguments.
        (true, true, 3 | 5) => (Some(args[0]), &args[1..]),
        // `LS- origin acc subj [q]` or, without origin, `LS- acc subj [q]`: the origin is
        // there when the count says so (4 is origin + queue, 3 is ambiguous: nats-server reads
        // it as origin acc subj).
        (true, false, 3 | 4) => (Some(args[0]), &args[1..]),
        (true, false, 2) => (None, &args[..]),
        _ => return Err(err),
    };
    let (account, subject, queue, weight) = match (add, args) {
        (_, [account, subject]) => (*account, *subject, None, 1),
        (true, [account, subject, queue, weight]) => {
            // nats-server reads a weight that is no number as -1: a member never chosen.
            let weight = parse_u32(weight).unwrap_or(0);
            (*account, *subject, Some(*queue), weight)
        }
        (false, [account, subject, queue]) => (*account, *subject, Some(*queue), 1),
        _ => return Err(err),
    };
    Ok(Interest {
        origin,
        account,
        subject,
        queue,
        weight,
    })
}

/// A leafnode's `LS+ subj [queue weight]` / `LS- subj [queue]`: no account, no origin.
fn leaf_interest(rest: &[u8], add: bool) -> Result<Interest<'_>, ProtocolError> {
    let err = ProtocolError::Malformed(match add {
        true => "processLeafSub Parse Error",
        false => "processLeafUnsub Parse Error",
    });
    let args: SmallVec<[&[u8]; 4]> = split(rest).collect();
    let (subject, queue, weight) = match (add, &args[..]) {
        (_, [subject]) => (*subject, None, 1),
        (true, [subject, queue, weight]) => {
            (*subject, Some(*queue), parse_u32(weight).unwrap_or(0))
        }
        (false, [subject, queue]) => (*subject, Some(*queue), 1),
        _ => return Err(err),
    };
    Ok(Interest {
        origin: None,
        account: &rest[..0],
        subject,
        queue,
        weight,
    })
}

/// The arguments of `RMSG`/`HMSG`/`LMSG` and the size of what follows.
fn routed<'a>(rest: &'a [u8], op: &[u8]) -> Result<Option<(RoutedMsg<'a>, usize)>, ProtocolError> {
    // (Kept fallible for the route parser's shape.)
    let form = MsgForm {
        origin: op == b"LMSG",
        account: true,
        headers: op != b"RMSG",
    };
    Ok(msg_args(rest, form))
}

/// Which arguments a message frame has before its subject, and whether it has a header size:
/// routes name the account (and, for `LMSG`, the origin); leafnodes neither.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MsgForm {
    pub origin: bool,
    pub account: bool,
    pub headers: bool,
}

/// The arguments of a message frame in `form` and the size of what follows; `None` when they
/// do not parse.
pub(crate) fn msg_args(rest: &[u8], form: MsgForm) -> Option<(RoutedMsg<'_>, usize)> {
    let args: SmallVec<[&[u8]; 8]> = split(rest).collect();
    let (origin, args) = match form.origin {
        true => {
            let (origin, rest) = args.split_first()?;
            (Some(*origin), rest)
        }
        false => (None, &args[..]),
    };
    let (account, args) = match form.account {
        true => {
            let (account, rest) = args.split_first()?;
            (*account, rest)
        }
        false => (&rest[..0], args),
    };
    let sizes = if form.headers { 2 } else { 1 };
    if args.len() < 1 + sizes {
        return None;
    }
    let subject = args[0];
    let middle = &args[1..args.len() - sizes];
    let (header_len, size) = if form.headers {
        let header = parse_size(args[args.len() - 2]);
        let total = parse_size(args[args.len() - 1]);
        match (header, total) {
            (Some(h), Some(t)) if h <= t => (Some(h), t),
            _ => return None,
        }
    } else {
        (None, parse_size(args[args.len() - 1])?)
    };
    // `LMSG` always carries a header size, 0 when there are no headers.
    let header_len = header_len.filter(|&h| h > 0);
    let (reply, queues): (Option<&[u8]>, &[&[u8]]) = match middle {
        [] => (None, &[]),
        [reply] => (Some(*reply), &[]),
        [b"+", reply, queues @ ..] if !queues.is_empty() => (Some(*reply), queues),
        [b"|", queues @ ..] if !queues.is_empty() => (None, queues),
        _ => return None,
    };
    let queues = match (queues.first(), queues.last()) {
        (Some(first), Some(last)) => span(rest, first, last),
        _ => &rest[..0],
    };
    let msg = RoutedMsg {
        origin,
        account,
        subject,
        reply,
        queues,
        header_len,
        message: &[],
    };
    Some((msg, size))
}

/// The part of `all` from the start of `first` to the end of `last` (both sub-slices of it).
fn span<'a>(all: &'a [u8], first: &[u8], last: &[u8]) -> &'a [u8] {
    let base = all.as_ptr() as usize;
    let start = first.as_ptr() as usize - base;
    let end = last.as_ptr() as usize - base + last.len();
    &all[start..end]
}

pub(crate) fn split(rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    rest.split(|&b| b == b' ' || b == b'\t')
        .filter(|a| !a.is_empty())
}

pub(crate) fn trim(args: &[u8]) -> &[u8] {
    let start = args
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(args.len());
    &args[start..]
}

pub(crate) fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

pub(crate) fn parse_u32(digits: &[u8]) -> Option<u32> {
    parse_size(digits).and_then(|n| u32::try_from(n).ok())
}

/// `RS+ <acc> <subject>[ <queue> <weight>]\r\n`
pub fn encode_sub(out: &mut BytesMut, account: &[u8], subject: &[u8], queue: Option<(&[u8], u32)>) {
    encode_interest(
        out,
        b"RS+",
        &[account, subject],
        queue.map(|(q, w)| (q, Some(w))),
    );
}

/// `RS- <acc> <subject>[ <queue>]\r\n`
pub fn encode_unsub(out: &mut BytesMut, account: &[u8], subject: &[u8], queue: Option<&[u8]>) {
    encode_interest(out, b"RS-", &[account, subject], queue.map(|q| (q, None)));
}

/// `LS+ <origin> <acc> <subject>[ <queue> <weight>]\r\n`: interest of the leaf cluster
/// `origin`.
pub fn encode_leaf_sub(
    out: &mut BytesMut,
    origin: &[u8],
    account: &[u8],
    subject: &[u8],
    queue: Option<(&[u8], u32)>,
) {
    let queue = queue.map(|(q, w)| (q, Some(w)));
    encode_interest(out, b"LS+", &[origin, account, subject], queue);
}

/// `LS- <origin> <acc> <subject>[ <queue>]\r\n`
pub fn encode_leaf_unsub(
    out: &mut BytesMut,
    origin: &[u8],
    account: &[u8],
    subject: &[u8],
    queue: Option<&[u8]>,
) {
    encode_interest(
        out,
        b"LS-",
        &[origin, account, subject],
        queue.map(|q| (q, None)),
    );
}

/// `<op> <args>...[ <queue>[ <weight>]]\r\n`
pub(crate) fn encode_interest(
    out: &mut BytesMut,
    op: &[u8],
    args: &[&[u8]],
    queue: Option<(&[u8], Option<u32>)>,
) {
    out.put_slice(op);
    for arg in args {
        out.put_u8(b' ');
        out.put_slice(arg);
    }
    if let Some((queue, weight)) = queue {
        out.put_u8(b' ');
        out.put_slice(queue);
        if let Some(weight) = weight {
            out.put_slice(format!(" {weight}").as_bytes());
        }
    }
    out.put_slice(b"\r\n");
}

/// `RMSG`/`HMSG <acc> <subject> [<reply> | + <reply> <q>... | | <q>...] [<hdr>] <size>\r\n`
/// with the message: one frame per route per message, naming every queue group the route was
/// chosen for.
pub fn encode_msg(
    out: &mut BytesMut,
    account: &[u8],
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    header_len: Option<usize>,
    message: &[u8],
) {
    let op: &[u8] = if header_len.is_some() {
        b"HMSG"
    } else {
        b"RMSG"
    };
    let frame = Frame {
        subject,
        reply,
        queues,
        header_len,
        message,
    };
    encode_frame(out, op, &[account], &frame, false);
}

/// The control line of [`encode_msg`], for a message whose payload (and CRLF) the caller
/// sends on its own.
pub fn encode_msg_head(out: &mut BytesMut, account: &[u8], frame: &Frame<'_>) {
    let op: &[u8] = match frame.header_len {
        Some(_) => b"HMSG",
        None => b"RMSG",
    };
    encode_frame_head(out, op, &[account], frame, false);
}

/// The control line of [`encode_origin_msg`], for a message whose payload (and CRLF) the
/// caller sends on its own.
pub fn encode_origin_msg_head(
    out: &mut BytesMut,
    origin: &[u8],
    account: &[u8],
    frame: &Frame<'_>,
) {
    encode_frame_head(out, b"LMSG", &[origin, account], frame, true);
}

/// `LMSG <origin> <acc> <subject> [...] <hdr> <size>\r\n`: a message that came from the leaf
/// cluster `origin`, to a route (the header size is there even when 0).
pub fn encode_origin_msg(out: &mut BytesMut, origin: &[u8], account: &[u8], frame: &Frame<'_>) {
    encode_frame(out, b"LMSG", &[origin, account], frame, true);
}

/// One message as a frame carries it.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// The queue groups the receiver was chosen for.
    pub queues: &'a [&'a [u8]],
    pub header_len: Option<usize>,
    pub message: &'a [u8],
}

/// `<op> <lead>... <subject> [<reply> | + <reply> <q>... | | <q>...] [<hdr>] <size>\r\n` and
/// the message; `always_hdr` writes a header size of 0 for a message without headers.
pub(crate) fn encode_frame(
    out: &mut BytesMut,
    op: &[u8],
    lead: &[&[u8]],
    f: &Frame<'_>,
    always_hdr: bool,
) {
    frame_parts(out, op, lead, f, always_hdr, true);
}

/// The control line alone of what [`encode_frame`] writes (the size is `f.message`'s).
pub(crate) fn encode_frame_head(
    out: &mut BytesMut,
    op: &[u8],
    lead: &[&[u8]],
    f: &Frame<'_>,
    always_hdr: bool,
) {
    frame_parts(out, op, lead, f, always_hdr, false);
}

/// [`encode_frame`], or its control line alone without `body`.
#[inline(always)]
fn frame_parts(
    out: &mut BytesMut,
    op: &[u8],
    lead: &[&[u8]],
    f: &Frame<'_>,
    always_hdr: bool,
    body: bool,
) {
    let head = FrameHead {
        op,
        lead,
        f,
        always_hdr,
    };
    if body {
        put_frame(out, &head, f.message);
    } else {
        out.reserve(head.bound());
        head.write(out);
    }
}

/// The control line [`encode_frame`] writes.
struct FrameHead<'a> {
    op: &'a [u8],
    lead: &'a [&'a [u8]],
    f: &'a Frame<'a>,
    always_hdr: bool,
}

impl Head for FrameHead<'_> {
    #[inline(always)]
    fn bound(&self) -> usize {
        let f = self.f;
        let lead: usize = self.lead.iter().map(|a| a.len() + 1).sum();
        let queues: usize = f.queues.iter().map(|q| q.len() + 1).sum();
        let reply = f.reply.map_or(0, <[u8]>::len);
        self.op.len()
            + lead
            + 1
            + f.subject.len()
            + 3
            + reply
            + 2
            + queues
            + 2 * (DECIMAL_MAX + 1)
            + 2
    }

    #[inline(always)]
    fn write<S: Sink>(&self, out: &mut S) {
        let f = self.f;
        out.put(self.op);
        for arg in self.lead {
            out.put(b" ");
            out.put(arg);
        }
        out.put(b" ");
        out.put(f.subject);
        match (f.reply, f.queues.is_empty()) {
            (Some(reply), true) => {
                out.put(b" ");
                out.put(reply);
            }
            (Some(reply), false) => {
                out.put(b" + ");
                out.put(reply);
            }
            (None, false) => out.put(b" |"),
            (None, true) => {}
        }
        for queue in f.queues {
            out.put(b" ");
            out.put(queue);
        }
        // Digits written in place: a `format!` here was an allocation per routed message.
        match (f.header_len, self.always_hdr) {
            (Some(h), _) => {
                out.put(b" ");
                put_decimal(out, h);
            }
            (None, true) => out.put(b" 0"),
            (None, false) => {}
        }
        out.put(b" ");
        put_decimal(out, f.message.len());
        out.put(b"\r\n");
    }
}

/// The route protocol tern speaks: `MsgTraceProto` (3), which adds to `RouteProtoV2`'s
/// accounts the promise to trace messages: a traced message (`Nats-Trace-Dest`) is passed
/// on with its `Nats-Trace-Hop`, a `Nats-Trace-Only` one too (delivered to no client), and
/// each server it reaches publishes its own event.
pub const ROUTE_PROTO: u8 = 3;

/// The INFO a route sends, in nats-server's field order, as a peer without pooling or
/// compression (`compression: "off"`, no `route_pool_size`) that traces messages
/// ([`ROUTE_PROTO`]). Unknown fields of the peer's INFO are ignored when read ([`PeerInfo`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteInfo {
    /// This server's id.
    pub server_id: String,
    /// This server's name.
    pub server_name: String,
    /// The nats-server version tern speaks for.
    pub version: String,
    /// [`ROUTE_PROTO`] (ours), or a gossiped server's own.
    pub proto: u8,
    /// What built the server.
    pub go: String,
    /// The cluster listen host.
    pub host: String,
    /// The cluster listen port.
    pub port: u16,
    /// Headers are supported.
    pub headers: bool,
    /// Route credentials are required.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// Routes use TLS.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// Routes verify certificates.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// The largest payload.
    pub max_payload: usize,
    /// `nats-route://host:port/` to reach this server, when advertised or gossiped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The cluster's name.
    pub cluster: String,
    /// This server's client URLs (`host:port`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// This server's WebSocket URLs (`host:port`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ws_connect_urls: Vec<String>,
    /// Lame duck mode: sent once, when this server enters it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    /// Never compressed (`off`); left out of the lame duck INFO, as nats-server does.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub compression: String,
    /// `cluster { permissions { import } }`: what this server takes from routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<PermissionJson>,
    /// `cluster { permissions { export } }`: what this server sends routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<PermissionJson>,
    /// Leaf-origin interest and messages are understood.
    pub lnoc: bool,
    /// `LS-` with origin is understood.
    pub lnocu: bool,
    /// How a gossiped route was made (see the research notes, §1.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gossip_mode: Option<u8>,
}

impl RouteInfo {
    /// `INFO {...}\r\n`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"INFO ");
        // Serializing plain strings, numbers and bools cannot fail.
        if let Ok(json) = serde_json::to_vec(self) {
            out.put_slice(&json);
        }
        out.put_slice(b"\r\n");
    }
}

/// One direction of route permissions in INFO and `/routez` (nats-server's
/// `SubjectPermission`): subjects, a queue group after a space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PermissionJson {
    /// Allowed subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Denied subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// What we read of a peer's route INFO.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PeerInfo {
    /// The peer's id.
    #[serde(default)]
    pub server_id: String,
    /// The peer's name.
    #[serde(default)]
    pub server_name: String,
    /// The cluster listen host.
    #[serde(default)]
    pub host: String,
    /// The cluster listen port.
    #[serde(default)]
    pub port: u16,
    /// Its route protocol: 3 (`MsgTraceProto`) and up trace messages.
    #[serde(default)]
    pub proto: u8,
    /// `nats-route://host:port/` to reach it (advertised, or filled in by gossip).
    #[serde(default)]
    pub ip: String,
    /// Its cluster's name.
    #[serde(default)]
    pub cluster: String,
    /// Its client URLs.
    #[serde(default)]
    pub connect_urls: Vec<String>,
    /// Its WebSocket URLs.
    #[serde(default)]
    pub ws_connect_urls: Vec<String>,
    /// A connection dedicated to one account (pooling): tern takes none.
    #[serde(default)]
    pub route_account: String,
    /// Route credentials are required (for gossiped routes).
    #[serde(default)]
    pub auth_required: bool,
    /// How the gossip came.
    #[serde(default)]
    pub gossip_mode: u8,
    /// The peer enters lame duck mode.
    #[serde(default)]
    pub ldm: bool,
    /// Headers are supported.
    #[serde(default)]
    pub headers: bool,
    /// The peer's import permissions (shown by `/routez`).
    #[serde(default)]
    pub import: Option<PermissionJson>,
    /// The peer's export permissions (shown by `/routez`).
    #[serde(default)]
    pub export: Option<PermissionJson>,
}

/// The CONNECT a route sends (`sendRouteConnect`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteConnect {
    /// Always true.
    #[serde(default)]
    pub echo: bool,
    /// Always false: `+OK` for every operation otherwise.
    #[serde(default)]
    pub verbose: bool,
    /// Always false.
    #[serde(default)]
    pub pedantic: bool,
    /// Route user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Route password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// Route TLS.
    #[serde(default)]
    pub tls_required: bool,
    /// Headers supported.
    #[serde(default)]
    pub headers: bool,
    /// The sender's server id.
    #[serde(default)]
    pub name: String,
    /// The sender's cluster name.
    #[serde(default)]
    pub cluster: String,
    /// Leaf-origin support.
    #[serde(default)]
    pub lnoc: bool,
    /// `LS-` with origin.
    #[serde(default)]
    pub lnocu: bool,
    /// Set by a client that connected to the route port by mistake.
    #[serde(default, skip_serializing)]
    pub lang: String,
    /// Set by a gateway.
    #[serde(default, skip_serializing)]
    pub gateway: String,
}

impl RouteConnect {
    /// `CONNECT {...}\r\n`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"CONNECT ");
        if let Ok(json) = serde_json::to_vec(self) {
            out.put_slice(&json);
        }
        out.put_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> RouteOp<'_> {
        let (op, n) = parse(input, 4096, 1 << 20).unwrap().unwrap();
        assert_eq!(n, input.len());
        op
    }

    #[test]
    fn jetstream_ack_replies_carry_the_subject() {
        let reply = b"$JS.ACK.S.C.1.1.1.1796124011950481133.0@orders.new";
        assert_eq!(
            js_ack_delivery(reply),
            Some((
                &b"orders.new"[..],
                &b"$JS.ACK.S.C.1.1.1.1796124011950481133.0"[..]
            ))
        );
        // Fewer than eight dots before the `@`, nothing after it, or another prefix.
        assert_eq!(js_ack_delivery(b"$JS.ACK.a.b@short"), None);
        assert_eq!(js_ack_delivery(b"$JS.ACK.S.C.1.1.1.1.0@"), None);
        assert_eq!(js_ack_delivery(b"_INBOX.a.b.c.d.e.f.g.h@x"), None);
    }

    #[test]
    fn interest_in_every_form() {
        let sub = |origin, account, subject, queue, weight| Interest {
            origin,
            account,
            subject,
            queue,
            weight,
        };
        assert_eq!(
            one(b"RS+ $G foo\r\n"),
            RouteOp::Sub(sub(None, b"$G", b"foo", None, 1))
        );
        assert_eq!(
            one(b"RS+ $G foo q 3\r\n"),
            RouteOp::Sub(sub(None, b"$G", b"foo", Some(&b"q"[..]), 3))
        );
        assert_eq!(
            one(b"RS- $G foo q\r\n"),
            RouteOp::Unsub(sub(None, b"$G", b"foo", Some(&b"q"[..]), 1))
        );
        assert_eq!(
            one(b"LS+ LC $G foo\r\n"),
            RouteOp::Sub(sub(Some(&b"LC"[..]), b"$G", b"foo", None, 1))
        );
        assert_eq!(
            one(b"LS- $G foo\r\n"),
            RouteOp::Unsub(sub(None, b"$G", b"foo", None, 1))
        );
        // A queue RS+ without its weight closes the route, as in nats-server.
        assert!(parse(b"RS+ $G foo q\r\n", 4096, 1 << 20).is_err());
        assert!(parse(b"RS+ $G\r\n", 4096, 1 << 20).is_err());
        // A client's SUB is read as RS+ (account `foo`, subject `1`), as nats-server does.
        assert_eq!(
            one(b"SUB foo 1\r\n"),
            RouteOp::Sub(sub(None, b"foo", b"1", None, 1))
        );
        assert!(parse(b"UNSUB 1\r\n", 4096, 1 << 20).is_err());
        // No space after the name: an unknown operation (-ERR), not bad arguments (silent).
        for bare in [
            &b"RS+\r\n"[..],
            b"RS-\r\n",
            b"LS+\r\n",
            b"RMSG\r\n",
            b"HMSG\r\n",
        ] {
            assert_eq!(
                parse(bare, 4096, 1 << 20),
                Err(ProtocolError::UnknownOperation)
            );
        }
        assert_ne!(
            parse(b"RS+ \r\n", 4096, 1 << 20),
            Err(ProtocolError::UnknownOperation)
        );
    }

    #[test]
    fn messages_in_every_form() {
        // As nats-server 2.15.1 sent them.
        let RouteOp::Msg(m) = one(b"RMSG $G remote.q + _INBOX.r grp 2\r\nhq\r\n") else {
            panic!()
        };
        assert_eq!(
            (m.account, m.subject, m.reply, m.queues, m.message),
            (
                &b"$G"[..],
                &b"remote.q"[..],
                Some(&b"_INBOX.r"[..]),
                &b"grp"[..],
                &b"hq"[..]
            )
        );
        let RouteOp::Msg(m) = one(b"HMSG $G remote.sub 12 14\r\nNATS/1.0\r\n\r\nhi\r\n") else {
            panic!()
        };
        assert_eq!(
            (m.header_len, m.reply, m.queues),
            (Some(12), None, &b""[..])
        );
        let RouteOp::Msg(m) = one(b"LMSG LC $G tern.sub rep 0 3\r\nabc\r\n") else {
            panic!()
        };
        assert_eq!(
            (m.origin, m.reply, m.header_len, m.message),
            (Some(&b"LC"[..]), Some(&b"rep"[..]), None, &b"abc"[..])
        );
        let RouteOp::Msg(m) = one(b"RMSG $G foo | q1 q2 1\r\nx\r\n") else {
            panic!()
        };
        assert_eq!(
            queue_names(m.queues).collect::<Vec<_>>(),
            [&b"q1"[..], b"q2"]
        );
        // Split anywhere: nothing until the whole frame is there.
        let whole = b"RMSG $G foo r 5\r\nhello\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut], 4096, 1 << 20), Ok(None), "{cut}");
        }
        assert!(parse(b"RMSG $G foo\r\n", 4096, 1 << 20).is_err());
    }

    #[test]
    fn operation_names_in_any_case() {
        // nats-server's parser takes every letter in either case.
        let RouteOp::Msg(m) = one(b"rMsG $G foo 2\r\nhi\r\n") else {
            panic!()
        };
        assert_eq!((m.subject, m.message), (&b"foo"[..], &b"hi"[..]));
        assert!(matches!(one(b"ping\r\n"), RouteOp::Ping));
        assert!(matches!(one(b"Connect {}\r\n"), RouteOp::Connect(b"{}")));
        // Longer than any operation (and than the stack buffer the name is folded in).
        for unknown in [&b"PINGPONG\r\n"[..], b"RMSGRMSGRMSG $G foo 2\r\nhi\r\n"] {
            assert_eq!(
                parse(unknown, 4096, 1 << 20),
                Err(ProtocolError::UnknownOperation)
            );
        }
    }

    #[test]
    fn encoders_round_trip() {
        let mut out = BytesMut::new();
        encode_sub(&mut out, b"$G", b"foo", Some((b"q", 2)));
        encode_unsub(&mut out, b"A", b"bar", None);
        encode_msg(
            &mut out,
            b"$G",
            b"s",
            Some(b"r"),
            &[b"q1", b"q2"],
            None,
            b"hi",
        );
        encode_msg(&mut out, b"$G", b"s", None, &[b"q1"], Some(2), b"h:x");
        encode_msg(&mut out, b"$G", b"s", None, &[], None, b"");
        assert_eq!(
            &out[..],
            &b"RS+ $G foo q 2\r\nRS- A bar\r\nRMSG $G s + r q1 q2 2\r\nhi\r\n\
               HMSG $G s | q1 2 3\r\nh:x\r\nRMSG $G s 0\r\n\r\n"[..]
        );
        let mut at = 0;
        let mut ops = 0;
        while let Some((_, n)) = parse(&out[at..], 4096, 1 << 20).unwrap() {
            at += n;
            ops += 1;
        }
        assert_eq!((at, ops), (out.len(), 5));
    }
}
