//! Imports between accounts, as internal subscribers: a stream import listens in the
//! exporting account and republishes into the importer; a service import listens in the
//! importer and republishes the request into the exporter with a tracked `_R_` reply.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::account::{Account, ResponseType};
use super::deliver::{self, Deliveries, Message};
use super::mapping::Transform;
use super::msgtrace;
use super::subscription::{Internal, Subscription};

/// A stream import's subscription in the exporting account.
#[derive(Debug)]
pub struct StreamImport {
    /// The importing account.
    pub importer: Weak<Account>,
    /// `prefix`: prepended (with a dot) to the subject.
    pub prefix: Option<String>,
    /// `to`: the subject rewritten.
    pub to: Option<Transform>,
}

impl StreamImport {
    /// The subject in the importing account, when it changes.
    fn rewrite(&self, subject: &[u8]) -> Option<Vec<u8>> {
        match (&self.prefix, &self.to) {
            (Some(prefix), _) => {
                let mut s = Vec::with_capacity(prefix.len() + 1 + subject.len());
                s.extend_from_slice(prefix.as_bytes());
                s.push(b'.');
                s.extend_from_slice(subject);
                Some(s)
            }
            (None, Some(to)) => to.apply(subject),
            (None, None) => None,
        }
    }
}

impl Internal for StreamImport {
    fn deliver(&self, _sub: &Subscription, msg: &Message<'_>, out: &mut Deliveries) -> bool {
        let Some(importer) = self.importer.upgrade() else {
            return false;
        };
        let subject = self.rewrite(msg.subject);
        let msg = match &subject {
            Some(subject) => Message { subject, ..*msg },
            None => *msg,
        };
        if out.trace {
            if let Some(trace) = out.msg_trace.as_mut() {
                trace.stream_export(&importer.name, msg.subject);
                return deliver::untraced(out, |out| deliver::publish(&importer, &msg, out));
            }
        }
        deliver::publish(&importer, &msg, out)
    }

    fn trace_only(&self, msg: &Message<'_>, out: &mut Deliveries) {
        if let (Some(importer), Some(trace)) = (self.importer.upgrade(), out.msg_trace.as_mut()) {
            let subject = self.rewrite(msg.subject);
            trace.stream_export(&importer.name, subject.as_deref().unwrap_or(msg.subject));
        }
    }
}

/// A service import's subscription in the importing account.
#[derive(Debug)]
pub struct ServiceImport {
    /// The importing account (where the requests are published).
    pub importer: Weak<Account>,
    /// The exporting account (where the service runs).
    pub exporter: Arc<Account>,
    /// From the importer's subject to the exporter's.
    pub to: Option<Transform>,
    /// How the export responds.
    pub response: ResponseType,
    /// How long its responses are waited for.
    pub threshold: Duration,
}

impl Internal for ServiceImport {
    fn deliver(&self, _sub: &Subscription, msg: &Message<'_>, out: &mut Deliveries) -> bool {
        let subject = self.to.as_ref().and_then(|t| t.apply(msg.subject));
        // A traced request is noted and passed on with its trace turned off, as nats-server
        // does: the responder's side is not traced.
        let mut untraced = None;
        if out.trace {
            if let (Some(trace), Some(h)) = (out.msg_trace.as_mut(), msg.header_len) {
                let to = subject.as_deref().unwrap_or(msg.subject);
                trace.service_import(&self.exporter.name, msg.subject, to);
                let mut message = msgtrace::with_dest(&msg.message[..h], msgtrace::TRACE_DISABLED);
                let header_len = message.len();
                message.extend_from_slice(&msg.message[h..]);
                untraced = Some((header_len, message));
            }
        }
        let msg = match &untraced {
            Some((header_len, message)) => Message {
                header_len: Some(*header_len),
                message,
                ..*msg
            },
            None => *msg,
        };
        let reply = match (msg.reply, self.importer.upgrade()) {
            (Some(reply), Some(importer)) => {
                Some(
                    self.exporter
                        .track_response(&importer, reply, self.response, self.threshold),
                )
            }
            _ => None,
        };
        // The responder learns who asks: `Nats-Request-Info: {"acc":..,"rtt":..}` is added to
        // the request's headers (a header block is made for a plain message).
        let (account, rtt) = match &out.origin {
            Some((account, rtt)) => (account.to_string(), rtt.as_nanos()),
            None => (
                self.importer
                    .upgrade()
                    .map(|a| a.name.to_string())
                    .unwrap_or_default(),
                0,
            ),
        };
        let info = format!(
            "Nats-Request-Info: {}\r\n",
            serde_json::json!({ "acc": account, "rtt": rtt })
        );
        let mut with_header = Vec::with_capacity(msg.message.len() + info.len() + 16);
        let header_len = match msg.header_len {
            Some(h) if h >= 2 => {
                with_header.extend_from_slice(&msg.message[..h - 2]);
                with_header.extend_from_slice(info.as_bytes());
                with_header.extend_from_slice(b"\r\n");
                let len = with_header.len();
                with_header.extend_from_slice(&msg.message[h..]);
                len
            }
            _ => {
                with_header.extend_from_slice(b"NATS/1.0\r\n");
                with_header.extend_from_slice(info.as_bytes());
                with_header.extend_from_slice(b"\r\n");
                let len = with_header.len();
                with_header.extend_from_slice(msg.message);
                len
            }
        };
        let request = Message {
            subject: subject.as_deref().unwrap_or(msg.subject),
            reply: reply.as_deref(),
            header_len: Some(header_len),
            message: &with_header,
        };
        match untraced {
            Some(_) => {
                deliver::untraced(out, |out| deliver::publish(&self.exporter, &request, out))
            }
            None => deliver::publish(&self.exporter, &request, out),
        }
    }

    fn trace_only(&self, msg: &Message<'_>, out: &mut Deliveries) {
        if let Some(trace) = out.msg_trace.as_mut() {
            let subject = self.to.as_ref().and_then(|t| t.apply(msg.subject));
            let to = subject.as_deref().unwrap_or(msg.subject);
            trace.service_import(&self.exporter.name, msg.subject, to);
        }
    }
}
