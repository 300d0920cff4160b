//! Imports between accounts, as internal subscribers: a stream import listens in the
//! exporting account and republishes into the importer; a service import listens in the
//! importer and republishes the request into the exporter with a tracked `_R_` reply.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::account::{Account, ResponseType};
use super::deliver::{self, Deliveries, Message};
use super::mapping::Transform;
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

impl Internal for StreamImport {
    fn deliver(&self, _sub: &Subscription, msg: &Message<'_>, out: &mut Deliveries) -> bool {
        let Some(importer) = self.importer.upgrade() else {
            return false;
        };
        let subject = match (&self.prefix, &self.to) {
            (Some(prefix), _) => {
                let mut s = Vec::with_capacity(prefix.len() + 1 + msg.subject.len());
                s.extend_from_slice(prefix.as_bytes());
                s.push(b'.');
                s.extend_from_slice(msg.subject);
                Some(s)
            }
            (None, Some(to)) => to.apply(msg.subject),
            (None, None) => None,
        };
        let msg = match &subject {
            Some(subject) => Message { subject, ..*msg },
            None => *msg,
        };
        deliver::publish(&importer, &msg, out)
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
        deliver::publish(&self.exporter, &request, out)
    }
}
