//! `/connz`: open and recently closed connections, with nats-server's paging (`offset`,
//! `limit`), sorting (`sort`), detail (`subs`, `auth`) and filters (`state`, `cid`, `user`).

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{bad_request, bool_param, go_duration, int_param, rfc3339, uptime};
use crate::engine::account::GLOBAL_ACCOUNT;
use crate::engine::stats::{ConnSnapshot, SubSnapshot};
use crate::monitor::http::{Request, Response};
use crate::state::Shared;

/// nats-server's default page size.
pub const DEFAULT_LIMIT: usize = 1024;

/// Which connections to list: nats-server's `ConnState` (0, 1, 2 in a JSON request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(from = "u8")]
pub enum State {
    /// Open connections (the default).
    #[default]
    Open,
    /// Recently closed connections.
    Closed,
    /// Both.
    All,
}

impl From<u8> for State {
    fn from(n: u8) -> State {
        match n {
            1 => State::Closed,
            2 => State::All,
            _ => State::Open,
        }
    }
}

/// How much of each connection's subscriptions to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subs {
    None,
    Subjects,
    Detail,
}

/// `sort=`: nats-server's sort options. `cid`, `start` and `reason` ascend; the others put the
/// largest (most recent, most idle, longest-lived) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
    Rtt,
}

impl Sort {
    /// Parses a `sort=` value.
    pub fn parse(text: &str) -> Option<Sort> {
        Some(match text {
            "" | "cid" => Sort::Cid,
            "start" => Sort::Start,
            "subs" => Sort::Subs,
            "pending" => Sort::Pending,
            "msgs_to" => Sort::MsgsTo,
            "msgs_from" => Sort::MsgsFrom,
            "bytes_to" => Sort::BytesTo,
            "bytes_from" => Sort::BytesFrom,
            "last" => Sort::Last,
            "idle" => Sort::Idle,
            "uptime" => Sort::Uptime,
            "stop" => Sort::Stop,
            "reason" => Sort::Reason,
            "rtt" => Sort::Rtt,
            _ => return None,
        })
    }
}

/// The `/connz` document. `connections` is `null` when the account asked for does not exist.
#[derive(Debug, Serialize)]
pub struct Connz {
    server_id: String,
    now: String,
    num_connections: usize,
    total: usize,
    offset: usize,
    limit: usize,
    connections: Option<Vec<ConnInfo>>,
}

/// One connection in `/connz`, nats-server's `ConnInfo` (TLS, JWT and MQTT fields are left
/// out, as nats-server leaves them out when unset).
#[derive(Debug, Serialize)]
pub struct ConnInfo {
    cid: u64,
    kind: &'static str,
    #[serde(rename = "type")]
    kind_type: &'static str,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt: Option<String>,
    uptime: String,
    idle: String,
    pending_bytes: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer_key: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list_detail: Vec<SubDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_tag: Option<String>,
}

/// One subscription in `subscriptions_list_detail`.
#[derive(Debug, Serialize)]
pub struct SubDetail {
    subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    qgroup: Option<String>,
    sid: String,
    msgs: u64,
    cid: u64,
}

impl From<&SubSnapshot> for SubDetail {
    fn from(s: &SubSnapshot) -> Self {
        SubDetail {
            subject: s.subject.clone(),
            qgroup: s.queue.clone(),
            sid: s.sid.clone(),
            msgs: s.msgs,
            cid: s.cid,
        }
    }
}

/// What a `/connz` request asks for: nats-server's `ConnzOptions`, with its JSON names (the
/// body of a `$SYS.REQ.*.CONNZ` request); the HTTP query is read into the same.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnzOptions {
    /// `sort`: one of [`Sort`]'s names (empty: by cid).
    pub sort: String,
    /// `auth`: show `authorized_user`, `account` and `name_tag`.
    pub auth: bool,
    /// `subscriptions` (`subs=1`): list each connection's subjects.
    pub subscriptions: bool,
    /// `subscriptions_detail` (`subs=detail`): list each connection's subscriptions.
    pub subscriptions_detail: bool,
    /// `offset`.
    pub offset: usize,
    /// `limit` (0: the default page size).
    pub limit: usize,
    /// `cid`: only this connection.
    pub cid: u64,
    /// `state`.
    pub state: State,
    /// `user`: only this user's connections.
    pub user: String,
    /// `acc`: only this account's connections.
    pub acc: String,
}

impl ConnzOptions {
    fn subs(&self) -> Subs {
        match (self.subscriptions_detail, self.subscriptions) {
            (true, _) => Subs::Detail,
            (false, true) => Subs::Subjects,
            _ => Subs::None,
        }
    }

    /// The query of an HTTP request, with nats-server's error texts.
    pub fn from_query(req: &Request) -> Result<ConnzOptions, Response> {
        let sort = req.param("sort").unwrap_or_default().to_string();
        let (subscriptions, subscriptions_detail) = match req.param("subs") {
            Some("detail") => (false, true),
            _ => (bool_param(req, "subs")?, false),
        };
        let state = match req.param("state").unwrap_or("open") {
            "" | "open" => State::Open,
            "closed" => State::Closed,
            "any" | "all" => State::All,
            other => {
                return Err(bad_request(format!(
                    "Error decoding state for 'state': {other:?}"
                )))
            }
        };
        let non_negative = |v: Option<i64>| v.map_or(0, |n| n.max(0) as usize);
        Ok(ConnzOptions {
            sort,
            offset: non_negative(int_param(req, "offset")?),
            limit: non_negative(int_param(req, "limit")?),
            subscriptions,
            subscriptions_detail,
            auth: bool_param(req, "auth")?,
            state,
            cid: int_param(req, "cid")?.map_or(0, |n| n.max(0) as u64),
            user: req.param("user").unwrap_or_default().to_string(),
            acc: req.param("acc").unwrap_or_default().to_string(),
        })
    }
}

/// The `/connz` response.
pub fn connz(shared: &Shared, req: &Request) -> Response {
    let built = ConnzOptions::from_query(req).and_then(|q| build(shared, &q).map_err(bad_request));
    match built {
        Ok(connz) => super::json(&connz),
        Err(response) => response,
    }
}

/// The `/connz` document for `q`; the error is nats-server's text for a bad combination.
pub fn build(shared: &Shared, q: &ConnzOptions) -> Result<Connz, String> {
    let by = Sort::parse(&q.sort).ok_or_else(|| format!("invalid sorting option: {}", q.sort))?;
    if matches!(by, Sort::Stop | Sort::Reason) && q.state != State::Closed {
        let name = if by == Sort::Stop { "stop" } else { "reason" };
        return Err(format!("sort by {name} only valid on closed connections"));
    }
    let limit = match q.limit {
        0 => DEFAULT_LIMIT,
        n => n,
    };
    let now = SystemTime::now();
    // An account that does not exist: nats-server answers before filling in its id.
    if !q.acc.is_empty() && shared.router.account(&q.acc).is_none() {
        return Ok(Connz {
            server_id: String::new(),
            now: rfc3339(now),
            num_connections: 0,
            total: 0,
            offset: q.offset,
            limit,
            connections: None,
        });
    }
    let mut conns: Vec<Arc<ConnSnapshot>> = Vec::new();
    let detail = q.subs() != Subs::None;
    match Some(q.cid).filter(|&cid| cid != 0) {
        Some(cid) => {
            if q.state != State::Closed {
                if let Some(conn) = shared.router.connection(cid) {
                    conns.push(Arc::new(conn.snapshot(detail)));
                }
            }
            if conns.is_empty() && q.state != State::Open {
                conns.extend(
                    shared
                        .closed
                        .snapshot()
                        .into_iter()
                        .filter(|c| c.cid == cid),
                );
            }
        }
        None => {
            if q.state != State::Closed {
                let live = shared.router.connections_snapshot();
                conns.extend(live.iter().map(|c| Arc::new(c.snapshot(detail))));
            }
            if q.state != State::Open {
                conns.extend(shared.closed.snapshot());
            }
        }
    }
    if !q.user.is_empty() {
        conns.retain(|c| c.user.as_deref() == Some(q.user.as_str()));
    }
    if !q.acc.is_empty() {
        conns.retain(|c| c.account == q.acc);
    }
    sort(&mut conns, by, now);
    let total = conns.len();
    let page: Vec<ConnInfo> = conns
        .iter()
        .skip(q.offset)
        .take(limit)
        .map(|c| conn_info(c, q, now))
        .collect();
    Ok(Connz {
        server_id: shared.server_id.clone(),
        now: rfc3339(now),
        num_connections: page.len(),
        total,
        offset: q.offset,
        limit,
        connections: Some(page),
    })
}

/// Sorts as nats-server does, ties broken by cid so paging is stable.
pub fn sort(conns: &mut [Arc<ConnSnapshot>], by: Sort, now: SystemTime) {
    let end = |c: &ConnSnapshot| c.stop.unwrap_or(now);
    let since = |from: Option<SystemTime>, c: &ConnSnapshot| {
        from.and_then(|t| end(c).duration_since(t).ok())
            .unwrap_or_default()
    };
    match by {
        Sort::Cid => conns.sort_by_key(|c| c.cid),
        Sort::Start => conns.sort_by_key(|c| (c.start, c.cid)),
        Sort::Subs => conns.sort_by_key(|c| (Reverse(c.subscriptions), c.cid)),
        Sort::Pending => conns.sort_by_key(|c| (Reverse(c.pending_bytes), c.cid)),
        Sort::MsgsTo => conns.sort_by_key(|c| (Reverse(c.counts.out_msgs), c.cid)),
        Sort::MsgsFrom => conns.sort_by_key(|c| (Reverse(c.counts.in_msgs), c.cid)),
        Sort::BytesTo => conns.sort_by_key(|c| (Reverse(c.counts.out_bytes), c.cid)),
        Sort::BytesFrom => conns.sort_by_key(|c| (Reverse(c.counts.in_bytes), c.cid)),
        Sort::Last => conns.sort_by_key(|c| (Reverse(c.last_activity), c.cid)),
        Sort::Idle => conns.sort_by_key(|c| (Reverse(since(c.last_activity, c)), c.cid)),
        Sort::Uptime => conns.sort_by_key(|c| (Reverse(since(c.start, c)), c.cid)),
        Sort::Stop => conns.sort_by_key(|c| (Reverse(c.stop), c.cid)),
        Sort::Reason => conns.sort_by_key(|c| (c.reason, c.cid)),
        Sort::Rtt => conns.sort_by_key(|c| (Reverse(c.rtt.unwrap_or(Duration::ZERO)), c.cid)),
    }
}

fn conn_info(c: &ConnSnapshot, q: &ConnzOptions, now: SystemTime) -> ConnInfo {
    let end = c.stop.unwrap_or(now);
    let elapsed = |from: Option<SystemTime>| {
        from.and_then(|t| end.duration_since(t).ok())
            .unwrap_or_default()
    };
    ConnInfo {
        cid: c.cid,
        kind: "Client",
        kind_type: if c.websocket { "websocket" } else { "nats" },
        ip: c.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
        port: c.addr.map_or(0, |a| a.port()),
        start: c.start.map(rfc3339).unwrap_or_default(),
        last_activity: c.last_activity.map(rfc3339).unwrap_or_default(),
        stop: c.stop.map(rfc3339),
        reason: c.reason,
        rtt: c.rtt.map(go_duration),
        uptime: uptime(elapsed(c.start)),
        idle: uptime(elapsed(c.last_activity)),
        pending_bytes: c.pending_bytes,
        in_msgs: c.counts.in_msgs,
        out_msgs: c.counts.out_msgs,
        in_bytes: c.counts.in_bytes,
        out_bytes: c.counts.out_bytes,
        subscriptions: c.subscriptions,
        name: c.name.clone(),
        lang: c.lang.clone(),
        version: c.version.clone(),
        authorized_user: c.user.clone().filter(|_| q.auth),
        // nats-server names the account unless it is the global one.
        account: (q.auth && c.account != GLOBAL_ACCOUNT).then(|| c.account.clone()),
        jwt: c.jwt.as_ref().filter(|_| q.auth).map(|j| j.jwt.clone()),
        issuer_key: c
            .jwt
            .as_ref()
            .filter(|_| q.auth)
            .map(|j| j.issuer_key.clone()),
        subscriptions_list: match q.subs() {
            Subs::Subjects => c.subs.iter().map(|s| s.subject.clone()).collect(),
            _ => Vec::new(),
        },
        subscriptions_list_detail: match q.subs() {
            Subs::Detail => c.subs.iter().map(SubDetail::from).collect(),
            _ => Vec::new(),
        },
        // nats-server shows the account tag of open connections only.
        name_tag: (q.auth && c.stop.is_none()).then(|| match &c.jwt {
            Some(j) => j.name_tag.clone(),
            None => c.account.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::Counts;
    use std::time::UNIX_EPOCH;

    fn conn(cid: u64, out_msgs: u64, start: u64, subs: usize) -> Arc<ConnSnapshot> {
        Arc::new(ConnSnapshot {
            cid,
            start: Some(UNIX_EPOCH + Duration::from_secs(start)),
            last_activity: Some(UNIX_EPOCH + Duration::from_secs(start + 1)),
            counts: Counts {
                out_msgs,
                in_msgs: cid * 10,
                ..Counts::default()
            },
            subscriptions: subs,
            ..ConnSnapshot::default()
        })
    }

    fn order(by: &str) -> Vec<u64> {
        let mut conns = vec![conn(2, 5, 30, 1), conn(1, 9, 20, 1), conn(3, 7, 10, 4)];
        let now = UNIX_EPOCH + Duration::from_secs(100);
        sort(&mut conns, Sort::parse(by).unwrap(), now);
        conns.iter().map(|c| c.cid).collect()
    }

    #[test]
    fn sort_orders() {
        assert_eq!(order("cid"), [1, 2, 3]);
        assert_eq!(order(""), [1, 2, 3]);
        assert_eq!(order("start"), [3, 1, 2]);
        assert_eq!(order("msgs_to"), [1, 3, 2]);
        assert_eq!(order("msgs_from"), [3, 2, 1]);
        assert_eq!(order("subs"), [3, 1, 2]);
        assert_eq!(order("uptime"), [3, 1, 2]);
        assert_eq!(order("last"), [2, 1, 3]);
        assert_eq!(order("idle"), [3, 1, 2]);
        assert_eq!(Sort::parse("bogus"), None);
    }
}
