//! Message tracing, as nats-server 2.11+ does it: a message published with a
//! `Nats-Trace-Dest: <subject>` header makes each server it passes through publish one trace
//! event to that subject, listing what happened to the message there (ingress, subject
//! mapping, egress to each subscriber and route). `Nats-Trace-Only: true` traces without
//! delivering to applications (routes still carry the message, so the next server reports
//! too); each route egress adds `Nats-Trace-Hop: <n>` (`<incoming>.<n>` past the first
//! server) so the events of one message can be put back together as a tree.
//!
//! Only a message with headers can ask for a trace: the check is made only where a header
//! block exists, so a message without one pays nothing. The events are gathered here while
//! the message is delivered; the system services put the server block on them and publish
//! them (see `sys::trace`).

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use memchr::memmem;

use super::account::Account;
use crate::proto::subject;

/// The header that asks for a trace, naming where the events go.
pub const TRACE_DEST: &str = "Nats-Trace-Dest";
/// The header that asks for a trace without delivery.
pub const TRACE_ONLY: &str = "Nats-Trace-Only";
/// The header a route egress sets, so the next server's event can be linked to this one.
pub const TRACE_HOP: &str = "Nats-Trace-Hop";
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
    pub headers: Vec<(String, Vec<String>)>,
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

/// What a header block asks for, found without allocating unless it asks for a trace.
pub fn requested(header_block: &[u8]) -> bool {
    memmem::find(header_block, TRACE_DEST.as_bytes()).is_some()
}

impl MsgTrace {
    /// The trace a message asks for, if it does: `header_block` holds its `Nats-Trace-Dest`
    /// header. `None` also when the destination is not a valid publish subject and the message
    /// is not trace-only (then it is delivered untraced, as by nats-server); a trace-only
    /// message with a bad destination is still held back, with no event sent.
    pub fn from_headers(
        header_block: &[u8],
        size: usize,
        account: Arc<Account>,
        log: bool,
    ) -> Option<MsgTrace> {
        if !requested(header_block) {
            return None;
        }
        let headers = parse_headers(header_block);
        let first = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.first())
                .map(String::as_str)
        };
        let dest = first(TRACE_DEST)?.to_string();
        if dest == TRACE_DISABLED {
            return None;
        }
        let only = matches!(
            first(TRACE_ONLY).map(str::to_ascii_lowercase).as_deref(),
            Some("1" | "true" | "on")
        );
        let valid = subject::is_valid_literal(dest.as_bytes());
        if !valid && !only {
            return None;
        }
        let hop = first(TRACE_HOP).map(str::to_string);
        Some(MsgTrace {
            dest: if valid { dest } else { String::new() },
            only,
            account,
            headers,
            size,
            hop,
            hops: 0,
            events: Vec::new(),
            log,
            js: None,
        })
    }

    /// Whether the event can be sent (a trace-only message with a bad destination cannot).
    pub fn has_dest(&self) -> bool {
        !self.dest.is_empty()
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
    /// stream sends it once done ([`JsTrace::stored`]). Nothing without a destination.
    pub fn finish(mut self: Box<Self>, send: impl FnOnce(Box<MsgTrace>)) {
        if !self.has_dest() {
            return;
        }
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

/// The header block with its `Nats-Trace-Dest` value replaced by `dest`, in its place.
pub fn with_dest(header_block: &[u8], dest: &str) -> Vec<u8> {
    set_header(header_block, TRACE_DEST, dest, true)
}

/// The header block with `name: value`: in place of the line it had (`in_place`), or, without
/// it, at the end.
fn set_header(header_block: &[u8], name: &str, value: &str, in_place: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_block.len() + name.len() + value.len() + 4);
    let body = header_block
        .strip_suffix(b"\r\n\r\n")
        .unwrap_or(header_block);
    let line_of =
        |out: &mut Vec<u8>| out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let key = line.split(|&b| b == b':').next().unwrap_or_default();
        if i > 0 && key.trim_ascii() == name.as_bytes() {
            if in_place {
                line_of(&mut out);
            }
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    if !in_place {
        line_of(&mut out);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `Name: value` lines after the status line: names kept as written, values trimmed, repeated
/// names collected in order (what nats-server puts in the event's `request.header`).
fn parse_headers(block: &[u8]) -> Vec<(String, Vec<String>)> {
    let text = String::from_utf8_lossy(block);
    let mut headers: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let value = value.trim_matches([' ', '\t']).to_string();
        match headers.iter_mut().find(|(k, _)| k == name) {
            Some((_, values)) => values.push(value),
            None => headers.push((name.to_string(), vec![value])),
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Arc<Account> {
        Arc::new(Account::new("A"))
    }

    #[test]
    fn only_a_valid_destination_starts_a_trace() {
        let block = b"NATS/1.0\r\nNats-Trace-Dest: t.x\r\nA: 1\r\na: 2\r\nA: 3\r\n\r\n";
        let trace = MsgTrace::from_headers(block, 50, account(), false).unwrap();
        assert_eq!(trace.dest, "t.x");
        assert!(!trace.only);
        assert_eq!(
            trace.headers[1],
            ("A".to_string(), vec!["1".to_string(), "3".to_string()])
        );
        assert_eq!(trace.headers[2].0, "a");
        assert!(MsgTrace::from_headers(b"NATS/1.0\r\nX: 1\r\n\r\n", 1, account(), false).is_none());
        let bad = b"NATS/1.0\r\nNats-Trace-Dest: t.*\r\n\r\n";
        assert!(MsgTrace::from_headers(bad, 1, account(), false).is_none());
        let bad_only = b"NATS/1.0\r\nNats-Trace-Dest: t.*\r\nNats-Trace-Only: On\r\n\r\n";
        let trace = MsgTrace::from_headers(bad_only, 1, account(), false).unwrap();
        assert!(trace.only && !trace.has_dest());
    }

    #[test]
    fn hops_number_from_the_incoming_hop() {
        let block = b"NATS/1.0\r\nNats-Trace-Dest: t\r\nNats-Trace-Hop: 1\r\n\r\n";
        let mut trace = MsgTrace::from_headers(block, 1, account(), false).unwrap();
        assert_eq!(trace.next_hop(), "1.1");
        assert_eq!(trace.next_hop(), "1.2");
        let rewritten = with_hop(block, "1.2");
        assert_eq!(
            &rewritten[..],
            b"NATS/1.0\r\nNats-Trace-Dest: t\r\nNats-Trace-Hop: 1.2\r\n\r\n"
        );
        let disabled = with_dest(block, TRACE_DISABLED);
        assert_eq!(
            &disabled[..],
            b"NATS/1.0\r\nNats-Trace-Dest: trace disabled\r\nNats-Trace-Hop: 1\r\n\r\n"
        );
        assert!(MsgTrace::from_headers(&disabled, 1, account(), false).is_none());
    }
}
