//! The system account's services, as nats-server 2.15.1 runs them on one server: the
//! `$SYS.REQ.*` request endpoints ([`services`]) and the events it publishes ([`events`]):
//! client CONNECT/DISCONNECT, per-account connection counts, and the periodic `STATSZ`.
//!
//! Everything runs on one task. Connections and the request subscriptions hand their input
//! over a channel (`state::events`), so nothing here runs on a publisher's task; the task
//! builds the JSON (from the monitor's documents) and publishes it from the system account,
//! numbering every message it sends (`server.seq`).

mod claims;
pub mod events;
mod jsz;
mod remote;
pub mod services;
mod trace;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use crate::config::operator::Resolver;
use crate::engine::account::{random_token, Account};
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::subscription::Subscription;
use crate::monitor::rfc3339;
use crate::proto::protocol;
use crate::state::events::{Service, SysInput};
use crate::state::Shared;

/// The first `STATSZ` goes out this long after start; the interval then doubles up to
/// [`STATSZ_INTERVAL`] (nats-server's ramp: 7.25 s, 15.25 s, 25.25 s, ... after start).
const STATSZ_FIRST: Duration = Duration::from_millis(250);

/// The settled interval between `STATSZ` events.
const STATSZ_INTERVAL: Duration = Duration::from_secs(10);

/// How often each account with local clients has its connection count published.
const CONNS_INTERVAL: Duration = Duration::from_secs(30);

/// The server endpoints, answered on `$SYS.REQ.SERVER.PING.<X>` and `$SYS.REQ.SERVER.<id>.<X>`.
const SERVER_ENDPOINTS: [&str; 8] = [
    "VARZ", "CONNZ", "SUBSZ", "HEALTHZ", "STATSZ", "IDZ", "ACCOUNTZ", "JSZ",
];

/// The account endpoints, answered on `$SYS.REQ.ACCOUNT.<acc>.<X>`.
const ACCOUNT_ENDPOINTS: [&str; 7] = ["CONNZ", "SUBSZ", "INFO", "CONNS", "STATZ", "JSZ", "LEAFZ"];

/// The system services, subscribed and not yet running.
pub struct Services {
    sys: Sys,
    inputs: UnboundedReceiver<SysInput>,
}

impl Services {
    /// Spawns the task that answers the requests and publishes the events.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.sys.run(self.inputs))
    }
}

/// Sets up the system services when there is a system account: subscribes its endpoints at
/// once (so that they are there as soon as the server is bound); [`Services::spawn`] runs them.
pub fn start(shared: &Arc<Shared>) -> Option<Services> {
    let system = shared
        .router
        .accounts()
        .into_iter()
        .find(|a| a.is_system.load(Ordering::Relaxed))?;
    let inputs = shared.sys.take_receiver()?;
    let name = system.name.to_string();
    let subscribe = |service: Service, subject: String| {
        let sub = shared.sys.subscription(service, &name, &subject);
        system.subscribe(Arc::new(sub));
    };
    subscribe(Service::Server("STATSZ"), "$SYS.REQ.SERVER.PING".into());
    for endpoint in SERVER_ENDPOINTS {
        subscribe(
            Service::Server(endpoint),
            format!("$SYS.REQ.SERVER.PING.{endpoint}"),
        );
        subscribe(
            Service::Server(endpoint),
            format!("$SYS.REQ.SERVER.{}.{endpoint}", shared.server_id),
        );
    }
    for endpoint in ACCOUNT_ENDPOINTS {
        subscribe(
            Service::Account(endpoint),
            format!("$SYS.REQ.ACCOUNT.*.{endpoint}"),
        );
    }
    subscribe(Service::Account("USER"), "$SYS.REQ.USER.*.INFO".into());
    if shared.opts().cluster.is_some() {
        for (service, subject) in remote::subscriptions(&shared.server_id) {
            subscribe(service, subject);
        }
    }
    let mut pack_inbox = None;
    match claims::directory(shared) {
        Some((dir, kind)) => {
            claims::prepare(shared, &dir, &kind);
            subscribe(Service::Claims("UPDATE"), "$SYS.REQ.CLAIMS.UPDATE".into());
            for subject in [
                "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
                "$SYS.ACCOUNT.*.CLAIMS.UPDATE",
            ] {
                subscribe(Service::Claims("UPDATE"), subject.into());
            }
            if kind == "full" {
                subscribe(
                    Service::Claims("LOOKUP"),
                    "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP".into(),
                );
                // One server of the cluster answers each digest (nats-server's queue group).
                let responder = shared.sys.endpoint(Service::Claims("PACK"), &name);
                system.subscribe(Arc::new(Subscription::internal(
                    responder,
                    "$SYS.REQ.CLAIMS.PACK",
                    Some("responder"),
                )));
                let inbox = format!("$SYS._INBOX.{}.{}", random_token(8), random_token(8));
                subscribe(Service::Claims("MERGE"), inbox.clone());
                pack_inbox = Some(inbox);
            }
            subscribe(Service::Claims("LIST"), "$SYS.REQ.CLAIMS.LIST".into());
            subscribe(Service::Claims("DELETE"), "$SYS.REQ.CLAIMS.DELETE".into());
            if let Some(Resolver::Dir { ttl, .. }) = &shared.opts().operator.resolver {
                if kind == "cache" {
                    expire_cached(shared.clone(), dir, *ttl);
                }
            }
        }
        // The memory and URL resolvers take updates of the accounts in force.
        None if shared.opts().operator.enabled() => {
            for subject in [
                "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE",
                "$SYS.ACCOUNT.*.CLAIMS.UPDATE",
            ] {
                subscribe(Service::Claims("UPDATE"), subject.into());
            }
        }
        None => {}
    }
    let sys = Sys {
        shared: shared.clone(),
        system,
        seq: 0,
        tracked: Default::default(),
        pack_inbox,
    };
    Some(Services { sys, inputs })
}

/// The cache resolver's sweep: removes the JWT files whose time is up, every
/// `resolver::expire_every(ttl)`, until the server stops.
fn expire_cached(shared: Arc<Shared>, dir: std::path::PathBuf, ttl: std::time::Duration) {
    let every = crate::state::resolver::expire_every(ttl);
    let weak = Arc::downgrade(&shared);
    drop(shared);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(shared) = weak.upgrade() else {
                return;
            };
            crate::state::resolver::expire(&shared, &dir);
        }
    });
}

/// The services' state: what they publish from, and the sequence of what they sent.
struct Sys {
    shared: Arc<Shared>,
    system: Arc<Account>,
    /// Messages sent from the system account so far (`server.seq`).
    seq: u64,
    /// Accounts whose connection counts were asked of the other servers.
    tracked: std::collections::HashSet<Arc<str>>,
    /// Where the other servers send their packs (the full resolver's sync).
    pack_inbox: Option<String>,
}

/// Who sends, in every event and response: nats-server's `ServerInfo`.
#[derive(Debug, Serialize)]
pub struct ServerInfo {
    name: String,
    host: String,
    id: String,
    /// The cluster's name, in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    ver: &'static str,
    feature_flags: BTreeMap<&'static str, bool>,
    jetstream: bool,
    flags: u64,
    seq: u64,
    time: String,
}

/// `{"code":..,"description":..}` in an error response.
#[derive(Debug, Serialize)]
pub struct ApiError {
    /// The account a claims request was about (`n/a` when it cannot be told).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// An HTTP-like status: 400 for a bad request body, 500 otherwise.
    pub code: u16,
    /// nats-server's text.
    pub description: String,
}

/// A response: `{"server":{..},"data":{..}}` (or `statsz` instead of `data`; `data: null`
/// beside a 500 error, no `data` beside a 400).
#[derive(Debug, Serialize)]
struct Envelope {
    server: ServerInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statsz: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
}

impl Sys {
    async fn run(mut self, mut inputs: UnboundedReceiver<SysInput>) {
        let mut statsz_every = STATSZ_FIRST;
        let statsz = tokio::time::sleep(statsz_every);
        tokio::pin!(statsz);
        let mut conns =
            tokio::time::interval_at(tokio::time::Instant::now() + CONNS_INTERVAL, CONNS_INTERVAL);
        // The full resolver's sync: its directory digest goes out every `interval`.
        let sync_every = match &self.shared.opts().operator.resolver {
            Some(Resolver::Dir { interval, .. }) if self.pack_inbox.is_some() => *interval,
            _ => Duration::from_secs(24 * 3600),
        };
        let mut sync =
            tokio::time::interval_at(tokio::time::Instant::now() + sync_every, sync_every);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(SysInput::Request(request)) => self.answer(request),
                    Some(SysInput::Connected(conn)) => self.client_connected(&conn),
                    Some(SysInput::Closed(snapshot)) => self.client_closed(&snapshot),
                    Some(SysInput::Shutdown(done)) => {
                        self.publish_shutdown();
                        let _ = done.send(());
                    }
                    Some(SysInput::Trace(trace)) => self.publish_trace(&trace),
                    None => break,
                },
                _ = &mut statsz => {
                    self.publish_statsz();
                    statsz_every = (statsz_every * 2).min(STATSZ_INTERVAL);
                    statsz.as_mut().reset(tokio::time::Instant::now() + statsz_every);
                }
                _ = sync.tick(), if self.pack_inbox.is_some() => self.send_digest(),
                _ = conns.tick() => {
                    for account in self.shared.router.accounts() {
                        if account.clients.load(Ordering::Relaxed) > 0 {
                            self.publish_account_conns(&account);
                        }
                    }
                }
            }
        }
    }

    /// The sender block, numbered with the next sequence number.
    fn server_info(&mut self) -> ServerInfo {
        self.seq += 1;
        ServerInfo {
            name: self.shared.server_name.clone(),
            host: self.shared.opts().host.clone(),
            id: self.shared.server_id.clone(),
            cluster: self
                .shared
                .opts()
                .cluster
                .as_ref()
                .and_then(|c| c.name.clone()),
            ver: protocol::NATS_SERVER_VERSION,
            feature_flags: crate::monitor::varz::feature_flags(),
            jetstream: self.shared.opts().jetstream.is_some(),
            flags: 0,
            seq: self.seq,
            time: rfc3339(SystemTime::now()),
        }
    }

    /// Publishes `payload` on `subject` in `account` (the system account for events).
    fn send(&self, account: &Account, subject: &str, payload: &[u8]) {
        send(account, subject, payload);
    }

    /// Publishes a request from the system account whose answers go to `reply`.
    fn send_request(&self, subject: &str, reply: &str, payload: &[u8]) {
        publish(&self.system, subject, Some(reply.as_bytes()), payload);
    }

    /// Whether anyone in the system account subscribes to `subject` (an event nobody takes is
    /// only numbered, not built).
    fn has_interest(&self, subject: &str) -> bool {
        let matches = self.system.matches(subject.as_bytes());
        !matches.psubs.is_empty() || !matches.qsubs.is_empty()
    }

    /// Serializes a response or event, or nothing (logged) if it cannot be.
    fn encode(value: &impl Serialize) -> Option<Vec<u8>> {
        match serde_json::to_vec(value) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                tracing::error!("Error marshaling system message: {err}");
                None
            }
        }
    }
}

/// Publishes `payload` on `subject` in `account`.
fn send(account: &Account, subject: &str, payload: &[u8]) {
    publish(account, subject, None, payload);
}

/// Publishes `payload` on `subject` in `account`, answers going to `reply`.
fn publish(account: &Account, subject: &str, reply: Option<&[u8]>, payload: &[u8]) {
    let mut out = Deliveries::default();
    let msg = Message {
        subject: subject.as_bytes(),
        reply,
        header_len: None,
        message: payload,
    };
    deliver::publish(account, &msg, &mut out);
    out.flush(None);
}
