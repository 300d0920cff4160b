//! The hand-off between the rest of the server and the system account's services (the `sys`
//! layer above): connections report CONNECT and close here, and the internal subscriptions
//! behind `$SYS.REQ.*` copy each request here. One unbounded channel carries all of it, so
//! nothing on a publisher's or a connection's path waits for the services; the `sys` task
//! takes the receiving end when it starts, and until it does nothing is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::engine::connection::Connection;
use crate::engine::deliver::{Deliveries, Message};
use crate::engine::msgtrace::MsgTrace;
use crate::engine::stats::ConnSnapshot;
use crate::engine::subscription::{Internal, Subscription};

/// What the system services are told.
#[derive(Debug)]
pub enum SysInput {
    /// A client's CONNECT was accepted.
    Connected(Arc<Connection>),
    /// A client whose CONNECT had been accepted closed (its snapshot at close).
    Closed(Box<ConnSnapshot>),
    /// A request to one of the system services.
    Request(SysRequest),
    /// The server is shutting down: tell the cluster (`$SYS.SERVER.<id>.SHUTDOWN`), then
    /// answer.
    Shutdown(tokio::sync::oneshot::Sender<()>),
    /// A traced message's event, to publish to its destination.
    Trace(Box<MsgTrace>),
}

/// Which service a request subscription stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `$SYS.REQ.SERVER.PING` (`STATSZ`), `$SYS.REQ.SERVER.PING.<X>` or
    /// `$SYS.REQ.SERVER.<id>.<X>`: the server-wide endpoint X.
    Server(&'static str),
    /// `$SYS.REQ.ACCOUNT.<acc>.<X>`: the endpoint X for the account named by the subject
    /// (`USER` for `$SYS.REQ.USER.<acc>.INFO`).
    Account(&'static str),
    /// One of the imports every account gets from the system account: the endpoint X for the
    /// importing account.
    Imported(&'static str),
    /// `$SYS.REQ.USER.INFO`: who the requester is.
    UserInfo,
    /// The full account resolver's requests: `UPDATE` (`$SYS.REQ.CLAIMS.UPDATE`,
    /// `$SYS.REQ.ACCOUNT.<acc>.CLAIMS.UPDATE`), `LOOKUP` (`$SYS.REQ.ACCOUNT.<acc>.CLAIMS.LOOKUP`)
    /// `LIST` (`$SYS.REQ.CLAIMS.LIST`), `DELETE` (`$SYS.REQ.CLAIMS.DELETE`), `PACK`
    /// (`$SYS.REQ.CLAIMS.PACK`: another server's directory digest) and `MERGE` (the packs
    /// other servers send back to this one's).
    Claims(&'static str),
    /// Another server's connection counts: `CONNS` (`$SYS.SERVER.ACCOUNT.<acc>.CONNS`, and the
    /// answers to this server's requests for them) and `SHUTDOWN` (`$SYS.SERVER.<id>.SHUTDOWN`).
    Remote(&'static str),
}

/// One request, copied off the publisher's path.
#[derive(Debug)]
pub struct SysRequest {
    /// What is asked for.
    pub service: Service,
    /// The account the request was published in, where the response goes.
    pub account: Arc<str>,
    /// The request's subject there.
    pub subject: Bytes,
    /// Where to respond.
    pub reply: Bytes,
    /// The payload (headers left out): the request's options as JSON, or nothing.
    pub body: Bytes,
    /// The publishing connection's cid, when a client published it.
    pub publisher: Option<u64>,
}

/// The channel to the system services.
#[derive(Debug)]
pub struct SysChannel {
    tx: UnboundedSender<SysInput>,
    /// Taken by the services when they start.
    rx: Mutex<Option<UnboundedReceiver<SysInput>>>,
    /// Set once the services run; nothing is sent before (no one would drain it). Shared
    /// with the request subscriptions.
    running: Arc<AtomicBool>,
}

impl SysChannel {
    /// A channel nobody drains yet.
    pub fn new() -> SysChannel {
        let (tx, rx) = unbounded_channel();
        SysChannel {
            tx,
            rx: Mutex::new(Some(rx)),
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Hands the receiving end to the services (once) and starts sending.
    pub fn take_receiver(&self) -> Option<UnboundedReceiver<SysInput>> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if rx.is_some() {
            self.running.store(true, Ordering::Release);
        }
        rx
    }

    /// Sends `input` when the services run.
    pub fn send(&self, input: SysInput) {
        if self.running.load(Ordering::Acquire) {
            let _ = self.tx.send(input);
        }
    }

    /// An internal subscriber for `service` in `account`, posting its requests here.
    pub fn endpoint(&self, service: Service, account: &str) -> Arc<dyn Internal> {
        Arc::new(Endpoint {
            tx: self.tx.clone(),
            running: self.running.clone(),
            service,
            account: account.into(),
        })
    }

    /// An internal subscription to `subject` for `service` in `account`.
    pub fn subscription(&self, service: Service, account: &str, subject: &str) -> Subscription {
        Subscription::internal(self.endpoint(service, account), subject, None)
    }
}

impl Default for SysChannel {
    fn default() -> Self {
        Self::new()
    }
}

/// A subscription behind a system service: copies the request into the channel (it runs on
/// the publisher's task, so it must not do the work itself).
#[derive(Debug)]
struct Endpoint {
    tx: UnboundedSender<SysInput>,
    running: Arc<AtomicBool>,
    service: Service,
    account: Arc<str>,
}

impl Internal for Endpoint {
    fn deliver(&self, _sub: &Subscription, msg: &Message<'_>, out: &mut Deliveries) -> bool {
        // A request without a reply subject cannot be answered; nats-server drops it too.
        // Other servers' events have none and need none.
        let reply = match (msg.reply, self.service) {
            (Some(reply), _) => reply,
            (None, Service::Remote(_) | Service::Claims("MERGE")) => &[][..],
            (None, _) => return true,
        };
        if self.running.load(Ordering::Acquire) {
            let body = &msg.message[msg.header_len.unwrap_or(0).min(msg.message.len())..];
            let _ = self.tx.send(SysInput::Request(SysRequest {
                service: self.service,
                account: self.account.clone(),
                subject: Bytes::copy_from_slice(msg.subject),
                reply: Bytes::copy_from_slice(reply),
                body: Bytes::copy_from_slice(body),
                publisher: out.publisher,
            }));
        }
        true
    }

    /// The system account's own endpoints are announced to routes, so that requests and
    /// events from anywhere in the cluster reach them; those imported into other accounts
    /// are not.
    fn announced(&self) -> bool {
        matches!(
            self.service,
            Service::Server(_) | Service::Account(_) | Service::Remote(_) | Service::Claims(_)
        )
    }
}
