//! The events the system account publishes: `$SYS.ACCOUNT.<acc>.CONNECT` and `.DISCONNECT`
//! (`client_connect`/`client_disconnect` advisories), the account's connection count on both
//! `$SYS.ACCOUNT.<acc>.SERVER.CONNS` and the older `$SYS.SERVER.ACCOUNT.<acc>.CONNS` (one
//! advisory, one id, two messages), and `$SYS.SERVER.<id>.STATSZ`.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;

use super::{ServerInfo, Sys};
use crate::engine::account::{random_token, Account};
use crate::engine::connection::Connection;
use crate::engine::stats::ConnSnapshot;
use crate::monitor::accountz::{account_stat, AccountStat};
use crate::monitor::{rfc3339, varz};

/// nats-server's `account_connections` advisory.
#[derive(Debug, Serialize)]
pub struct AccountConns {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    timestamp: String,
    server: ServerInfo,
    #[serde(flatten)]
    stat: AccountStat,
}

/// A connect or disconnect advisory.
#[derive(Debug, Serialize)]
struct ClientAdvisory {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    timestamp: String,
    server: ServerInfo,
    client: ClientInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent: Option<MsgBytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<MsgBytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// nats-server's `ClientInfo` as the advisories carry it.
#[derive(Debug, Serialize)]
struct ClientInfo {
    start: String,
    host: String,
    id: u64,
    acc: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ver: String,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    name_tag: String,
    kind: &'static str,
    client_type: &'static str,
}

/// A message and byte count.
#[derive(Debug, Serialize)]
struct MsgBytes {
    msgs: u64,
    bytes: u64,
}

/// The `statsz` block of `STATSZ` events and `$SYS.REQ.SERVER.PING` answers.
#[derive(Debug, Serialize)]
pub struct Statsz {
    start: String,
    mem: u64,
    cores: usize,
    cpu: f64,
    connections: usize,
    total_connections: u64,
    active_accounts: usize,
    subscriptions: usize,
    sent: MsgBytes,
    sent_to_clients: MsgBytes,
    received: MsgBytes,
    received_from_clients: MsgBytes,
    slow_consumers: u64,
    active_servers: u32,
    gomaxprocs: usize,
}

/// An advisory id: nats-server uses a NUID, 22 base-62 characters.
fn advisory_id() -> String {
    random_token(22)
}

impl ClientInfo {
    fn from_snapshot(c: &ConnSnapshot) -> ClientInfo {
        ClientInfo {
            start: c.start.map(rfc3339).unwrap_or_default(),
            host: c.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
            id: c.cid,
            acc: c.account.clone(),
            user: c.user.clone().unwrap_or_default(),
            name: c.name.clone(),
            lang: c.lang.clone(),
            ver: c.version.clone(),
            rtt: c.stop.and(c.rtt).map(|d| d.as_nanos() as u64),
            stop: c.stop.map(rfc3339),
            name_tag: c.account.clone(),
            kind: "Client",
            client_type: "nats",
        }
    }
}

impl Sys {
    /// The server's counters in the `statsz` shape.
    pub(super) fn statsz(&self) -> Statsz {
        let v = varz::build(&self.shared);
        let active_accounts = self
            .shared
            .router
            .accounts()
            .iter()
            .filter(|a| a.clients.load(Ordering::Relaxed) > 0)
            .count();
        Statsz {
            start: v.start,
            mem: v.mem,
            cores: v.cores,
            cpu: v.cpu,
            connections: v.connections,
            total_connections: v.total_connections,
            active_accounts,
            subscriptions: v.subscriptions,
            sent: MsgBytes {
                msgs: v.out_msgs,
                bytes: v.out_bytes,
            },
            sent_to_clients: MsgBytes {
                msgs: v.out_client_msgs,
                bytes: v.out_client_bytes,
            },
            received: MsgBytes {
                msgs: v.in_msgs,
                bytes: v.in_bytes,
            },
            received_from_clients: MsgBytes {
                msgs: v.in_client_msgs,
                bytes: v.in_client_bytes,
            },
            slow_consumers: v.slow_consumers,
            active_servers: 1,
            gomaxprocs: v.gomaxprocs,
        }
    }

    /// `$SYS.SERVER.<id>.STATSZ`.
    pub(super) fn publish_statsz(&mut self) {
        let statsz = self.statsz();
        let event = super::Envelope {
            server: self.server_info(),
            data: None,
            statsz: serde_json::to_value(statsz).ok(),
            error: None,
        };
        let subject = format!("$SYS.SERVER.{}.STATSZ", self.shared.server_id);
        if let Some(payload) = Sys::encode(&event) {
            self.send(&self.system.clone(), &subject, &payload);
        }
    }

    /// The `account_connections` advisory for `account`, numbered as the next message.
    pub(super) fn account_conns(&mut self, account: &Account) -> AccountConns {
        AccountConns {
            kind: "io.nats.server.advisory.v1.account_connections",
            id: advisory_id(),
            timestamp: rfc3339(SystemTime::now()),
            server: self.server_info(),
            stat: account_stat(&self.shared, account),
        }
    }

    /// The account's connection count, on both subjects nats-server uses.
    pub(super) fn publish_account_conns(&mut self, account: &Account) {
        let subjects = [
            format!("$SYS.SERVER.ACCOUNT.{}.CONNS", account.name),
            format!("$SYS.ACCOUNT.{}.SERVER.CONNS", account.name),
        ];
        // Summing an account's counters walks every connection: not for nobody.
        if !subjects.iter().any(|s| self.has_interest(s)) {
            self.seq += subjects.len() as u64;
            return;
        }
        let mut advisory = self.account_conns(account);
        let system = self.system.clone();
        for (i, subject) in subjects.iter().enumerate() {
            // Same advisory (id, timestamp); each message has its own sequence number.
            if i > 0 {
                advisory.server = self.server_info();
            }
            if let Some(payload) = Sys::encode(&advisory) {
                self.send(&system, subject, &payload);
            }
        }
    }

    /// A client's CONNECT was accepted: its account's count, then `CONNECT`.
    pub(super) fn client_connected(&mut self, conn: &Connection) {
        let account = conn.account();
        self.track_account(&account);
        self.publish_account_conns(&account);
        let subject = format!("$SYS.ACCOUNT.{}.CONNECT", account.name);
        if !self.has_interest(&subject) {
            self.seq += 1;
            return;
        }
        let snapshot = conn.snapshot(false);
        let advisory = ClientAdvisory {
            kind: "io.nats.server.advisory.v1.client_connect",
            id: advisory_id(),
            timestamp: rfc3339(SystemTime::now()),
            server: self.server_info(),
            client: ClientInfo::from_snapshot(&snapshot),
            sent: None,
            received: None,
            reason: None,
        };
        if let Some(payload) = Sys::encode(&advisory) {
            self.send(&self.system.clone(), &subject, &payload);
        }
    }

    /// A client closed: its account's count, then `DISCONNECT` with its totals and reason.
    pub(super) fn client_closed(&mut self, snapshot: &ConnSnapshot) {
        let Some(account) = self.shared.router.account(&snapshot.account) else {
            return;
        };
        self.publish_account_conns(&account);
        let subject = format!("$SYS.ACCOUNT.{}.DISCONNECT", account.name);
        if !self.has_interest(&subject) {
            self.seq += 1;
            return;
        }
        let advisory = ClientAdvisory {
            kind: "io.nats.server.advisory.v1.client_disconnect",
            id: advisory_id(),
            timestamp: snapshot
                .stop
                .map(rfc3339)
                .unwrap_or_else(|| rfc3339(SystemTime::now())),
            server: self.server_info(),
            client: ClientInfo::from_snapshot(snapshot),
            sent: Some(MsgBytes {
                msgs: snapshot.counts.out_msgs,
                bytes: snapshot.counts.out_bytes,
            }),
            received: Some(MsgBytes {
                msgs: snapshot.counts.in_msgs,
                bytes: snapshot.counts.in_bytes,
            }),
            reason: snapshot.reason,
        };
        if let Some(payload) = Sys::encode(&advisory) {
            self.send(&self.system.clone(), &subject, &payload);
        }
    }
}
