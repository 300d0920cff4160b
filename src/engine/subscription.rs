//! A subscription and the target it delivers to: a client connection now; routes, leafnodes
//! and the server's own internal subscribers (the system account's services, imports between
//! accounts, later JetStream) beside it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::connection::Connection;
use super::deliver::{Deliveries, Message};
use super::leaf::Leaf;
use super::route::Route;
use super::stats::SubSnapshot;

/// Where a subscription's messages go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A client connection: `MSG`/`HMSG` appended to its outbound queue.
    Client(Arc<Connection>),
    /// The server itself: a callback run by the publisher, which must not block.
    Internal(Arc<dyn Internal>),
    /// Another server of the cluster: one `RMSG` per message (see `deliver::deliver_all`).
    Route(Arc<Route>),
    /// A leafnode connection: one `LMSG` per message.
    Leaf(Arc<Leaf>),
}

/// A subscriber inside the server. `deliver` runs on the publisher's task, inline: it hands
/// the message on (to another account, or to a queue a task of its own drains) and returns
/// whether anyone took it.
pub trait Internal: Send + Sync + fmt::Debug {
    /// Takes one message; true when it reached someone.
    fn deliver(&self, sub: &Subscription, msg: &Message<'_>, out: &mut Deliveries) -> bool;

    /// A trace-only message (`Nats-Trace-Only`) reaching this subscriber: notes in
    /// `out.msg_trace` what it would have done (an import's `se`/`si` event), and does nothing.
    fn trace_only(&self, _msg: &Message<'_>, _out: &mut Deliveries) {}

    /// Whether routes are told of this subscription, as of a client's. nats-server tells them
    /// of the system account's own services (so that every server of the cluster answers
    /// `$SYS.REQ.SERVER.PING`), not of imports' subscriptions.
    fn announced(&self) -> bool {
        false
    }
}

/// Longest text (subject, sid and queue group together) of a client's subscription kept in
/// one allocation with its `Bytes` header (two beyond).
const INLINE_TEXT: usize = 64;

/// A client subscription's subject, sid and queue group, back to back.
struct InlineText {
    len: usize,
    bytes: [u8; INLINE_TEXT],
}

impl AsRef<[u8]> for InlineText {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// One SUB: who subscribed, to what, and its auto-unsubscribe state.
#[derive(Debug)]
pub struct Subscription {
    /// The subscriber.
    pub target: Target,
    /// The filter, as sent.
    pub subject: Bytes,
    /// The queue group, if any.
    pub queue: Option<Bytes>,
    /// The client's id for this subscription.
    pub sid: Bytes,
    /// Deliveries after which the subscription ends (`UNSUB <sid> <max>`); 0 for none.
    pub max: AtomicU64,
    /// Messages delivered so far.
    pub delivered: AtomicU64,
    /// Set once the subscription is removed; a publisher holding an older match result skips it.
    pub closed: AtomicBool,
    /// How many members a route's queue subscription stands for (1 for everyone else): the
    /// cluster-wide choice of a queue member weighs it this many times.
    pub weight: AtomicU32,
    /// The leaf cluster the interest comes from (a leafnode's, or a route's `LS+`): no leaf of
    /// that cluster hears of it.
    pub origin: Option<Bytes>,
}

impl Subscription {
    /// A new, open subscription of a client (its SUB). The subject, queue group and sid share
    /// one buffer (one allocation for all three up to [`INLINE_TEXT`] bytes), so cloning the sid as the
    /// key of the connection's sid map costs no allocation either.
    pub fn new(conn: Arc<Connection>, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) -> Self {
        let queue_text = queue.unwrap_or_default();
        let sid_end = subject.len() + sid.len();
        let len = sid_end + queue_text.len();
        let text = if len <= INLINE_TEXT {
            let mut bytes = [0; INLINE_TEXT];
            bytes[..subject.len()].copy_from_slice(subject);
            bytes[subject.len()..sid_end].copy_from_slice(sid);
            bytes[sid_end..len].copy_from_slice(queue_text);
            Bytes::from_owner(InlineText { len, bytes })
        } else {
            Bytes::from_owner([subject, sid, queue_text].concat())
        };
        let mut rest = text;
        let subject = rest.split_to(subject.len());
        let sid = rest.split_to(sid.len());
        Self::with_target(Target::Client(conn), subject, queue.map(|_| rest), sid)
    }

    /// A new, open subscription of the server itself.
    pub fn internal(internal: Arc<dyn Internal>, subject: &str, queue: Option<&str>) -> Self {
        Self::with_target(
            Target::Internal(internal),
            Bytes::copy_from_slice(subject.as_bytes()),
            queue.map(|q| Bytes::copy_from_slice(q.as_bytes())),
            Bytes::new(),
        )
    }

    /// A new, open subscription delivering to `target`.
    pub fn with_target(target: Target, subject: Bytes, queue: Option<Bytes>, sid: Bytes) -> Self {
        Subscription {
            target,
            subject,
            queue,
            sid,
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            weight: AtomicU32::new(1),
            origin: None,
        }
    }

    /// What monitoring shows about this subscription.
    pub fn snapshot(&self) -> SubSnapshot {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        // `claim_delivery` also counts the attempts refused past `max`.
        let delivered = self.delivered.load(Ordering::Relaxed);
        let msgs = match self.max.load(Ordering::Relaxed) {
            0 => delivered,
            max => delivered.min(max),
        };
        SubSnapshot {
            subject: text(&self.subject),
            queue: self.queue.as_ref().map(text),
            sid: text(&self.sid),
            msgs,
            cid: match &self.target {
                Target::Client(conn) => conn.cid,
                Target::Route(route) => route.conn.cid,
                Target::Leaf(leaf) => leaf.conn.cid,
                Target::Internal(_) => 0,
            },
        }
    }

    /// Whether routes are told of this subscription: a client's, or an internal one that
    /// says so ([`Internal::announced`]).
    pub fn announced(&self) -> bool {
        match &self.target {
            Target::Client(_) => true,
            Target::Internal(internal) => internal.announced(),
            Target::Route(_) | Target::Leaf(_) => false,
        }
    }

    /// The client connection this subscription delivers to, if it is a client's.
    pub fn client(&self) -> Option<&Arc<Connection>> {
        match &self.target {
            Target::Client(conn) => Some(conn),
            Target::Internal(_) | Target::Route(_) | Target::Leaf(_) => None,
        }
    }

    /// Claims one delivery. Returns `None` when the subscription is closed or its maximum is
    /// reached, otherwise whether this delivery is its last (the caller then unsubscribes it).
    pub fn claim_delivery(&self) -> Option<bool> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let max = self.max.load(Ordering::Relaxed);
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if max == 0 {
            return Some(false);
        }
        if n > max {
            return None;
        }
        Some(n == max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::account::Account;

    #[test]
    fn a_client_subscription_keeps_its_three_texts_apart() {
        let account = Arc::new(Account::new("A"));
        let addr = "127.0.0.1:4222".parse().expect("an address");
        let conn = Arc::new(Connection::new(1, 1 << 20, "test", addr, account));
        let long = "x".repeat(100);
        let cases = [
            ("foo.bar", None, "1"),
            ("foo.*", Some("workers"), "22"),
            (">", Some("q"), "sid"),
            (&long[..], Some(&long[..90]), &long[..80]),
        ];
        for (subject, queue, sid) in cases {
            let sub = Subscription::new(
                conn.clone(),
                subject.as_bytes(),
                queue.map(str::as_bytes),
                sid.as_bytes(),
            );
            assert_eq!(&sub.subject[..], subject.as_bytes());
            assert_eq!(sub.queue.as_deref(), queue.map(str::as_bytes));
            assert_eq!(&sub.sid[..], sid.as_bytes());
            // The sid outlives the subscription (as a key of the sid map may).
            let sid_key = sub.sid.clone();
            drop(sub);
            assert_eq!(&sid_key[..], sid.as_bytes());
        }
    }
}
