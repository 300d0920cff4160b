//! Message tracing, as nats-server 2.11+ does it: a message published with a
//! `Nats-Trace-Dest: <subject>` header makes each server it passes through publish one trace
//! event to that subject, listing what happened to the message there (ingress, subject
//! mapping, egress to each subscriber and route). `Nats-Trace-Only: true` traces without
//! delivering to applications (routes still carry the message, so the next server reports
//! too); each route egress adds `Nats-Trace-Hop: <n>` (`<incoming>.<n>` past the first
//! server) so the events of one message can be put back together as a tree.
//!
//! An account may also set `msg_trace { dest, sampling }`: then a message without
//! `Nats-Trace-Dest` that carries a W3C `traceparent` header whose flags say "sampled" is traced
//! to `dest`, for `sampling` percent of such messages (drawn where the message enters from a
//! client; the others get `Nats-Trace-Dest: trace disabled`, so that no server further on
//! traces them). Such a trace always delivers (`Nats-Trace-Only` is not read), and each server
//! it reaches traces it to its own `msg_trace` of the account.
//!
//! Only a message with headers can ask for a trace: the check is made only where a header
//! block exists, so a message without one pays nothing, and `traceparent` is looked for only
//! in accounts with a `msg_trace`. The events are gathered here while the message is
//! delivered; the system services put the server block on them and publish them (see
//! `sys::trace`).

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use memchr::memmem;

use super::account::Account;
use crate::proto::subject::{self, go_quote};

/// The header that asks for a trace, naming where the events go.
pub const TRACE_DEST: &str = "Nats-Trace-Dest";
/// The header that asks for a trace without delivery.
pub const TRACE_ONLY: &str = "Nats-Trace-Only";
/// The header a route egress sets, so the next server's event can be linked to this one.
pub const TRACE_HOP: &str = "Nats-Trace-Hop";
/// The W3C trace context header (any case), traced to the account's `msg_trace` when sampled.
pub const TRACE_PARENT: &str = "traceparent";
/// A header of older servers; a message carrying it is not traced.
pub const TRACE_ORIGIN_ACCOUNT: &str = "Nats-Trace-Origin-Account";
/// The `Nats-Trace-Dest` value that turns tracing off (not a subject): what nats-server puts
/// in a request passed on by a service import.
pub const TRACE_DISABLED: &str = "trace disabled";

/// Connection kinds as nats-server numbers them in trace events.
pub mod kind {
    /// A client.
    pub const CLIENT: u8 = 0;
    /// A route to another server of the cluster.
    pub const ROUTER: u8 = 1;
    /// A leafnode connection.
    pub const LEAF: u8 = 4;
}

/// Egress errors, in nats-server's words.
pub mod error {
    /// The publisher asked not to get its own messages (`echo: false`).
    pub const NO_ECHO: &str = "Not delivered because of no echo";
    /// The subscriber's permissions deny the subject.
    pub const SUB_DENY: &str = "Not delivered because subscription denies this subject";
    /// The subscriber's connection is closed (or closing as a slow consumer).
    pub const CLIENT_CLOSED: &str = "Not delivered because client is closed";
    /// A route's export permissions deny the subject.
    pub const PUB_VIOLATION: &str = "Not delivered because publish denied for this subject";
    /// A trace-only message is not sent to a route whose peer does not trace (`proto` < 3).
    pub const ONLY_NO_SUPPORT: &str =
        "Not delivered because remote does not support message tracing";
    /// A message sent to a route whose peer does not trace (`proto` < 3).
    pub const NO_SUPPORT: &str = "Message delivered but remote does not support message \
        tracing so no trace event generated from there";
}

/// Header names as written, each with its values in order.
pub type Headers = Vec<(String, Vec<String>)>;

/// An account's `msg_trace`: where messages with a sampled `traceparent` are traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTrace {
    /// The subject the events are published to (a valid publish subject).
    pub dest: String,
    /// Percent of such messages traced, 1 to 100; 0 (not set) traces them all.
    pub sampling: u8,
}

/// What a message's headers ask of tracing (nats-server's `initMsgTrace`).
#[derive(Debug)]
pub enum Request {
    /// No trace: delivered as it is.
    None,
    /// Neither traced nor delivered: a trace-only message whose trace cannot be made.
    Drop,
    /// Delivered untraced with `Nats-Trace-Dest: trace disabled` (see [`disabled`]), so that
    /// no server further on traces it: a `traceparent` not drawn by the sampling, or a message
    /// carrying [`TRACE_ORIGIN_ACCOUNT`].
    Disable,
    /// Traced (the caller still checks that the publisher may publish to its destination).
    Trace(Box<MsgTrace>),
}

/// The trace of one message through this server.
#[derive(Debug)]
pub struct MsgTrace {
    /// Where the event is published.
    pub dest: String,
    /// `Nats-Trace-Only`: report, do not deliver to applications.
    pub only: bool,
    /// The account the event is published in.
    pub account: Arc<Account>,
    /// The message's headers, names as written, values in order.
    pub headers: Headers,
    /// Header block and payload, in bytes.
    pub size: usize,
    /// The hop this server is (`Nats-Trace-Hop` of the message it received), if not the first.
    pub hop: Option<String>,
    /// Route egresses so far (`hops` in the event).
    pub hops: u32,
    /// What happened to the message here, in order.
    pub events: Vec<TraceEvent>,
    /// The `-V` protocol tracing flag the delivery had before the trace took it over.
    pub(crate) log: bool,
    /// The stream storing the message, which reports last (see [`MsgTrace::finish`]).
    js: Option<Arc<JsTrace>>,
}

/// The meeting point of a traced message's delivery and the stream that stores it: whichever
/// finishes second sends the event, as nats-server sends one event, with JetStream's outcome.
#[derive(Debug, Default)]
pub struct JsTrace(Mutex<JsTraceState>);

#[derive(Debug, Default)]
struct JsTraceState {
    /// The trace, once its delivery finished.
    trace: Option<Box<MsgTrace>>,
    /// The stream's outcome, once it stored (or refused) the message: the subject stored, or
    /// the error.
    outcome: Option<Result<String, String>>,
}

impl JsTrace {
    /// The stream stored the message on `outcome`'s subject (or refused it with its error):
    /// the event goes to `send` now if the delivery is over, or when it is.
    pub fn stored(&self, outcome: Result<String, String>, send: impl FnOnce(Box<MsgTrace>)) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match state.trace.take() {
            Some(mut trace) => {
                drop(state);
                trace.jetstream_outcome(outcome);
                send(trace);
            }
            None => state.outcome = Some(outcome),
        }
    }
}

/// One thing that happened to a traced message.
#[derive(Debug, Clone)]
pub enum TraceEvent {
    /// How it came in (`in`).
    Ingress {
        /// When.
        at: SystemTime,
        /// The connection kind ([`kind`]).
        kind: u8,
        /// The connection's cid.
        cid: u64,
        /// A client's CONNECT name, a route's remote server name.
        name: String,
        /// The account it was published in.
        account: String,
        /// Its subject.
        subject: String,
        /// Why it went no further (a publish permission violation).
        error: Option<String>,
    },
    /// A subject mapping changed its subject (`sm`).
    Mapping {
        /// When.
        at: SystemTime,
        /// The subject after the mapping.
        to: String,
    },
    /// A stream import took it into another account (`se`).
    StreamExport {
        /// When.
        at: SystemTime,
        /// The importing account.
        account: String,
        /// Its subject there.
        to: String,
    },
    /// A stream captured it (`js`).
    JetStream {
        /// When (updated when the stream is done).
        at: SystemTime,
        /// The stream's name.
        stream: String,
        /// The subject it was stored with.
        subject: Option<String>,
        /// Why it was not stored.
        error: Option<String>,
    },
    /// A service import passed it on to the exporting account (`si`).
    ServiceImport {
        /// When.
        at: SystemTime,
        /// The exporting account.
        account: String,
        /// The subject in the importing account.
        from: String,
        /// The subject in the exporting account.
        to: String,
    },
    /// It went out, or would have (`eg`).
    Egress {
        /// When.
        at: SystemTime,
        /// The connection kind ([`kind`]).
        kind: u8,
        /// The connection's cid.
        cid: u64,
        /// A client's CONNECT name, a route's remote server name.
        name: String,
        /// For a route: the hop the next server reports as.
        hop: Option<String>,
        /// The subscriber's account, when not the ingress account.
        account: Option<String>,
        /// A client's subscription subject.
        subscription: Option<String>,
        /// A client's queue group.
        queue: Option<String>,
        /// Why it was not delivered.
        error: Option<&'static str>,
    },
}

/// Whether a header block published in `account` may ask for a trace (then
/// [`MsgTrace::request`] decides): it names `Nats-Trace-Dest`, or the account has a
/// `msg_trace` and it has a `traceparent` line. Allocates nothing.
#[inline]
pub fn requested(header_block: &[u8], account: &Account) -> bool {
    memmem::find(header_block, TRACE_DEST.as_bytes()).is_some()
        || (account.has_msg_trace() && has_trace_parent(header_block))
}

/// A header line named `traceparent` in any case (W3C: "vendors MUST expect the header in any
/// case").
fn has_trace_parent(header_block: &[u8]) -> bool {
    header_block
        .split(|&b| b == b'\n')
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|at| &line[..at]))
        .any(|name| name.eq_ignore_ascii_case(TRACE_PARENT.as_bytes()))
}

impl MsgTrace {
    /// What the headers of a message published in `account` ask for, as nats-server decides
    /// it; `client`: it came from a client (the sampling is drawn only there, and
    /// `Nats-Trace-Hop` is read only from routes and leafnodes). The second value is an error
    /// for the connection's log, in nats-server's words.
    pub fn request(
        header_block: &[u8],
        size: usize,
        account: &Arc<Account>,
        log: bool,
        client: bool,
    ) -> (Request, Option<String>) {
        let Some((headers, external)) = trace_headers(header_block) else {
            return (Request::None, None);
        };
        let first = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.first())
                .map(String::as_str)
        };
        // Trace-only is for `Nats-Trace-Dest` alone: a `traceparent` trace always delivers.
        let only = !external
            && matches!(
                first(TRACE_ONLY).map(str::to_ascii_lowercase).as_deref(),
                Some("1" | "true" | "on")
            );
        let held = if only { Request::Drop } else { Request::None };
        if let Some(origin) = first(TRACE_ORIGIN_ACCOUNT) {
            let why = format!(
                "Message tracing disabled because of header {} with value={}",
                go_quote(TRACE_ORIGIN_ACCOUNT.as_bytes()),
                go_quote(origin.as_bytes())
            );
            let request = if only {
                Request::Drop
            } else {
                Request::Disable
            };
            return (request, Some(why));
        }
        let hop = (!client)
            .then(|| first(TRACE_HOP).map(str::to_string))
            .flatten();
        let dest = if external {
            let Some(trace) = account.msg_trace() else {
                return (Request::None, None);
            };
            if client && !sample(trace.sampling) {
                return (Request::Disable, None);
            }
            trace.dest.clone()
        } else {
            first(TRACE_DEST).unwrap_or_default().to_string()
        };
        if !subject::is_valid_literal(dest.as_bytes()) {
            let why = format!(
                "Destination {} is not valid, won't be able to trace events",
                go_quote(dest.as_bytes())
            );
            return (held, Some(why));
        }
        let trace = MsgTrace {
            dest,
            only,
            account: account.clone(),
            headers,
            size,
            hop,
            hops: 0,
            events: Vec::new(),
            log,
            js: None,
        };
        (Request::Trace(Box::new(trace)), None)
    }

    /// Notes how the message came in.
    pub fn ingress(&mut self, kind: u8, cid: u64, name: String, account: &str, subject: &[u8]) {
        self.events.push(TraceEvent::Ingress {
            at: SystemTime::now(),
            kind,
            cid,
            name,
            account: account.to_string(),
            subject: String::from_utf8_lossy(subject).into_owned(),
            error: None,
        });
    }

    /// Notes why the message was refused where it came in.
    pub fn ingress_error(&mut self, why: String) {
        if let Some(TraceEvent::Ingress { error, .. }) = self.events.first_mut() {
            *error = Some(why);
        }
    }

    /// Notes that a subject mapping changed the subject to `to`.
    pub fn mapped(&mut self, to: &[u8]) {
        self.events.push(TraceEvent::Mapping {
            at: SystemTime::now(),
            to: String::from_utf8_lossy(to).into_owned(),
        });
    }

    /// Notes that a stream import took the message into `account` as `to`.
    pub fn stream_export(&mut self, account: &str, to: &[u8]) {
        self.events.push(TraceEvent::StreamExport {
            at: SystemTime::now(),
            account: account.to_string(),
            to: String::from_utf8_lossy(to).into_owned(),
        });
    }

    /// Notes that a service import passed the message on to `account`, from `from` to `to`.
    pub fn service_import(&mut self, account: &str, from: &[u8], to: &[u8]) {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.events.push(TraceEvent::ServiceImport {
            at: SystemTime::now(),
            account: account.to_string(),
            from: lossy(from),
            to: lossy(to),
        });
    }

    /// Notes that `stream` captured a trace-only message published to `subject` (not stored).
    pub fn jetstream_only(&mut self, stream: &str, subject: &[u8]) {
        self.events.push(TraceEvent::JetStream {
            at: SystemTime::now(),
            stream: stream.to_string(),
            subject: Some(String::from_utf8_lossy(subject).into_owned()),
            error: None,
        });
    }

    /// Notes that `stream` takes the message to store it; the event waits for its outcome,
    /// given to the returned meeting point.
    pub fn jetstream(&mut self, stream: &str) -> Arc<JsTrace> {
        self.events.push(TraceEvent::JetStream {
            at: SystemTime::now(),
            stream: stream.to_string(),
            subject: None,
            error: None,
        });
        self.js.get_or_insert_with(Default::default).clone()
    }

    fn jetstream_outcome(&mut self, outcome: Result<String, String>) {
        let last = self.events.iter_mut().rev().find_map(|e| match e {
            TraceEvent::JetStream {
                at, subject, error, ..
            } => Some((at, subject, error)),
            _ => None,
        });
        if let Some((at, subject, error)) = last {
            *at = SystemTime::now();
            match outcome {
                Ok(stored) => *subject = Some(stored),
                Err(why) => *error = Some(why),
            }
        }
    }

    /// Hands the finished trace to `send`; when a stream is still storing the message, the
    /// stream sends it once done ([`JsTrace::stored`]).
    pub fn finish(mut self: Box<Self>, send: impl FnOnce(Box<MsgTrace>)) {
        let Some(js) = self.js.take() else {
            return send(self);
        };
        let mut state = js.0.lock().unwrap_or_else(|p| p.into_inner());
        match state.outcome.take() {
            Some(outcome) => {
                drop(state);
                self.jetstream_outcome(outcome);
                send(self);
            }
            None => state.trace = Some(self),
        }
    }

    /// The account the message came in on, as the ingress event names it.
    fn ingress_account(&self) -> Option<&str> {
        self.events.iter().find_map(|e| match e {
            TraceEvent::Ingress { account, .. } => Some(account.as_str()),
            _ => None,
        })
    }

    /// Notes a delivery to a client's subscription (or why there was none).
    #[allow(clippy::too_many_arguments)]
    pub fn client_egress(
        &mut self,
        cid: u64,
        name: String,
        account: &str,
        subscription: &[u8],
        queue: Option<&[u8]>,
        error: Option<&'static str>,
    ) {
        let account = (self.ingress_account() != Some(account)).then(|| account.to_string());
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.events.push(TraceEvent::Egress {
            at: SystemTime::now(),
            kind: kind::CLIENT,
            cid,
            name,
            hop: None,
            account,
            subscription: Some(lossy(subscription)),
            queue: queue.map(lossy),
            error,
        });
    }

    /// The hop the next route egress gives the message (`Nats-Trace-Hop`), counting it.
    pub fn next_hop(&mut self) -> String {
        self.hops += 1;
        match &self.hop {
            Some(hop) => format!("{hop}.{}", self.hops),
            None => self.hops.to_string(),
        }
    }

    /// Notes a delivery to a route or leafnode (`kind`), as hop `hop` (or why there was none).
    pub fn peer_egress(
        &mut self,
        kind: u8,
        cid: u64,
        name: String,
        hop: Option<String>,
        error: Option<&'static str>,
    ) {
        self.events.push(TraceEvent::Egress {
            at: SystemTime::now(),
            kind,
            cid,
            name,
            hop,
            account: None,
            subscription: None,
            queue: None,
            error,
        });
    }
}

/// The header block with `Nats-Trace-Hop: <hop>` in place of any it had (at the end).
pub fn with_hop(header_block: &[u8], hop: &str) -> Bytes {
    Bytes::from(set_header(header_block, TRACE_HOP, hop, false))
}

/// The header block with its `Nats-Trace-Dest` value replaced by `dest`, in its place (at the
/// end when it had none).
pub fn with_dest(header_block: &[u8], dest: &str) -> Vec<u8> {
    set_header(header_block, TRACE_DEST, dest, true)
}

/// The header block of a message that must not be traced further on: `Nats-Trace-Dest: trace
/// disabled` (see [`Request::Disable`]).
pub fn disabled(header_block: &[u8]) -> Vec<u8> {
    with_dest(header_block, TRACE_DISABLED)
}

/// The header block with `name: value`: in place of the line it had (`in_place`), or, without
/// one, at the end.
fn set_header(header_block: &[u8], name: &str, value: &str, in_place: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_block.len() + name.len() + value.len() + 4);
    let body = header_block
        .strip_suffix(b"\r\n\r\n")
        .unwrap_or(header_block);
    let line_of =
        |out: &mut Vec<u8>| out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    let mut replaced = false;
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let key = line.split(|&b| b == b':').next().unwrap_or_default();
        if i > 0 && key.trim_ascii() == name.as_bytes() {
            if in_place {
                line_of(&mut out);
                replaced = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    if !replaced {
        line_of(&mut out);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The headers of a block that asks for a trace, and whether it is external (a sampled
/// `traceparent`, no `Nats-Trace-Dest`); `None` when it asks for none, or when its
/// `Nats-Trace-Dest` says [`TRACE_DISABLED`]. Read as nats-server reads them: after the
/// `NATS/1.0` line, `name: value` up to each CRLF, names kept as written, values trimmed of
/// blanks, lines with an empty name or value left out, repeated names collected in order
/// (what the event's `request.header` lists).
fn trace_headers(block: &[u8]) -> Option<(Headers, bool)> {
    const STATUS_LINE: &[u8] = b"NATS/1.0\r\n";
    if !block.starts_with(STATUS_LINE) {
        return None;
    }
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let mut headers: Headers = Vec::new();
    let (mut dest_found, mut parent_found) = (false, false);
    let mut i = STATUS_LINE.len();
    while i < block.len() {
        let Some(colon) = memchr::memchr(b':', &block[i..]) else {
            break;
        };
        let name = &block[i..i + colon];
        i += colon + 1;
        while i < block.len() && blank(&block[i]) {
            i += 1;
        }
        let Some(eol) = memmem::find(&block[i..], b"\r\n") else {
            break;
        };
        let mut value = &block[i..i + eol];
        while let Some((last, rest)) = value.split_last() {
            if !blank(last) {
                break;
            }
            value = rest;
        }
        i += eol + 2;
        if name.is_empty() || value.is_empty() {
            continue;
        }
        if !parent_found && name.eq_ignore_ascii_case(TRACE_PARENT.as_bytes()) {
            parent_found = sampled(value);
        } else if !dest_found && name == TRACE_DEST.as_bytes() {
            if value == TRACE_DISABLED.as_bytes() {
                return None;
            }
            dest_found = true;
        }
        let name = String::from_utf8_lossy(name);
        let value = String::from_utf8_lossy(value).into_owned();
        match headers.iter_mut().find(|(k, _)| *k == name) {
            Some((_, values)) => values.push(value),
            None => headers.push((name.into_owned(), vec![value])),
        }
    }
    (dest_found || parent_found).then_some((headers, !dest_found))
}

/// Whether a `traceparent` value's flags say "sampled": four `-`-separated fields, the last
/// two characters read as a signed 8-bit hexadecimal number (so `80` and above are not
/// numbers, as for nats-server) with its lowest bit set. Nothing else of the value is checked.
fn sampled(value: &[u8]) -> bool {
    let fields: Vec<&[u8]> = value.split(|&b| b == b'-').collect();
    let [_, _, _, flags] = fields[..] else {
        return false;
    };
    flags.len() == 2
        && std::str::from_utf8(flags)
            .ok()
            .and_then(|f| i8::from_str_radix(f, 16).ok())
            .is_some_and(|f| f & 1 == 1)
}

/// Whether a message is traced under an account's `sampling` (percent; 0 or 100 and above:
/// always): a draw in 0..100 at most `sampling`, as nats-server draws it.
fn sample(sampling: u8) -> bool {
    sampling == 0 || sampling >= 100 || fastrand::u8(0..100) <= sampling
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Arc<Account> {
        Arc::new(Account::new("A"))
    }

    fn traced(block: &[u8], account: &Arc<Account>, client: bool) -> Box<MsgTrace> {
        match MsgTrace::request(block, block.len(), account, false, client) {
            (Request::Trace(trace), None) => trace,
            other => panic!("{other:?}"),
        }
    }

    fn request(block: &[u8], account: &Arc<Account>) -> (Request, Option<String>) {
        MsgTrace::request(block, block.len(), account, false, true)
    }

    #[test]
    fn only_a_valid_destination_starts_a_trace() {
        let block = b"NATS/1.0\r\nNats-Trace-Dest: t.x\r\nA: 1\r\na: 2\r\nA: 3\r\nE:\r\n\r\n";
        let trace = traced(block, &account(), true);
        assert_eq!(trace.dest, "t.x");
        assert!(!trace.only);
        assert_eq!(
            trace.headers[1],
            ("A".to_string(), vec!["1".to_string(), "3".to_string()])
        );
        assert_eq!(trace.headers[2].0, "a");
        // A header without a value is not listed, as by nats-server.
        assert_eq!(trace.headers.len(), 3);
        let plain = b"NATS/1.0\r\nX: 1\r\n\r\n";
        assert!(matches!(request(plain, &account()), (Request::None, None)));
        let bad = b"NATS/1.0\r\nNats-Trace-Dest: t.*\r\n\r\n";
        let (req, why) = request(bad, &account());
        assert!(matches!(req, Request::None));
        assert_eq!(
            why.as_deref(),
            Some("Destination \"t.*\" is not valid, won't be able to trace events")
        );
        let bad_only = b"NATS/1.0\r\nNats-Trace-Dest: t.*\r\nNats-Trace-Only: On\r\n\r\n";
        assert!(matches!(request(bad_only, &account()).0, Request::Drop));
        // The name is matched exactly.
        let lower = b"NATS/1.0\r\nnats-trace-dest: t.x\r\n\r\n";
        assert!(matches!(request(lower, &account()).0, Request::None));
    }

    #[test]
    fn hops_number_from_the_incoming_hop() {
        let block = b"NATS/1.0\r\nNats-Trace-Dest: t\r\nNats-Trace-Hop: 1\r\n\r\n";
        let mut trace = traced(block, &account(), false);
        assert_eq!(trace.next_hop(), "1.1");
        assert_eq!(trace.next_hop(), "1.2");
        // A client's hop header is not read.
        assert_eq!(traced(block, &account(), true).hop, None);
        let rewritten = with_hop(block, "1.2");
        assert_eq!(
            &rewritten[..],
            b"NATS/1.0\r\nNats-Trace-Dest: t\r\nNats-Trace-Hop: 1.2\r\n\r\n"
        );
        let disabled = disabled(block);
        assert_eq!(
            &disabled[..],
            b"NATS/1.0\r\nNats-Trace-Dest: trace disabled\r\nNats-Trace-Hop: 1\r\n\r\n"
        );
        assert!(matches!(request(&disabled, &account()).0, Request::None));
    }

    #[test]
    fn sampled_flags_as_nats_server_reads_them() {
        let id = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331";
        for (flags, want) in [
            ("01", true),
            ("03", true),
            ("7f", true),
            ("+1", true),
            ("00", false),
            ("02", false),
            ("ff", false),
            ("81", false),
            ("0g", false),
            ("1", false),
            ("001", false),
        ] {
            let value = format!("{id}-{flags}");
            assert_eq!(sampled(value.as_bytes()), want, "{value}");
        }
        assert!(sampled(b"a-b-c-01"));
        assert!(!sampled(b"00-0af7651916cd43dd8448eb211c80319c-01"));
        assert!(!sampled(b"00-a-b-01-x"));
    }

    #[test]
    fn traceparent_traces_to_the_account_destination() {
        let account = account();
        let block = b"NATS/1.0\r\nTraceParent: 00-a-b-01\r\nNats-Trace-Only: true\r\n\r\n";
        assert!(!requested(block, &account));
        assert!(matches!(request(block, &account).0, Request::None));
        account.set_msg_trace(Some(AccountTrace {
            dest: "acc.trace".into(),
            sampling: 100,
        }));
        assert!(requested(block, &account));
        let trace = traced(block, &account, true);
        assert_eq!(trace.dest, "acc.trace");
        // Trace-only is not read for a `traceparent` trace; the name is kept as written.
        assert!(!trace.only);
        assert_eq!(trace.headers[0].0, "TraceParent");
        // Unsampled: no trace, nothing to do.
        let unsampled = b"NATS/1.0\r\ntraceparent: 00-a-b-00\r\n\r\n";
        assert!(requested(unsampled, &account));
        assert!(matches!(request(unsampled, &account).0, Request::None));
        // `Nats-Trace-Dest` wins.
        let both = b"NATS/1.0\r\ntraceparent: 00-a-b-01\r\nNats-Trace-Dest: mine\r\n\r\n";
        assert_eq!(traced(both, &account, true).dest, "mine");
        // Turned off further on.
        let off = b"NATS/1.0\r\ntraceparent: 00-a-b-01\r\nNats-Trace-Dest: trace disabled\r\n\r\n";
        assert!(matches!(request(off, &account).0, Request::None));
        let origin = b"NATS/1.0\r\ntraceparent: 00-a-b-01\r\nNats-Trace-Origin-Account: B\r\n\r\n";
        let (req, why) = request(origin, &account);
        assert!(matches!(req, Request::Disable));
        assert_eq!(
            why.as_deref(),
            Some(
                "Message tracing disabled because of header \"Nats-Trace-Origin-Account\" \
                 with value=\"B\""
            )
        );
        account.set_msg_trace(None);
        assert!(!requested(block, &account));
    }

    #[test]
    fn sampling_draws_a_share() {
        assert!((0..1000).all(|_| sample(0) && sample(100)));
        let drawn = (0..1000).filter(|_| sample(10)).count();
        assert!((20..300).contains(&drawn), "{drawn}");
        let untraced = b"NATS/1.0\r\ntraceparent: 00-a-b-01\r\n\r\n";
        assert_eq!(
            &disabled(untraced)[..],
            b"NATS/1.0\r\ntraceparent: 00-a-b-01\r\nNats-Trace-Dest: trace disabled\r\n\r\n"
        );
    }
}
