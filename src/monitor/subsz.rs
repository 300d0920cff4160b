//! `/subsz` (the sublist and its statistics), and the endpoints for what tern has little of:
//! `/routez` (no routes yet) and `/accountz` (the one global account).

use std::time::SystemTime;

use serde::Serialize;

use super::{bad_request, bool_param, int_param, rfc3339, GLOBAL_ACCOUNT};
use crate::monitor::http::{Request, Response};
use crate::proto::subject;
use crate::state::Shared;

/// Sublist statistics, nats-server's `SublistStats`.
#[derive(Debug, Serialize)]
struct SublistStats {
    num_subscriptions: usize,
    num_cache: u64,
    num_inserts: u64,
    num_removes: u64,
    num_matches: u64,
    cache_hit_rate: f64,
    max_fanout: u64,
    avg_fanout: f64,
}

/// The `/subsz` document.
#[derive(Debug, Serialize)]
struct Subsz {
    server_id: String,
    now: String,
    #[serde(flatten)]
    stats: SublistStats,
    total: usize,
    offset: usize,
    limit: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<SubInfo>,
}

/// One subscription in `/subsz?subs=1`.
#[derive(Debug, Serialize)]
struct SubInfo {
    account: &'static str,
    account_tag: &'static str,
    subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    qgroup: Option<String>,
    sid: String,
    msgs: u64,
    cid: u64,
}

/// The sublist's statistics. Publishers cache match results per connection, so `num_cache`
/// and `cache_hit_rate` (of a shared cache, in nats-server) are 0; `num_matches` and the
/// fan-outs count lookups that reached the shared sublist.
fn sublist_stats(shared: &Shared) -> SublistStats {
    let counts = shared.router.sublist_counts();
    SublistStats {
        num_subscriptions: shared.router.subscription_count(),
        num_cache: 0,
        num_inserts: counts.inserts,
        num_removes: counts.removes,
        num_matches: counts.matches,
        cache_hit_rate: 0.0,
        max_fanout: counts.max_fanout,
        avg_fanout: match counts.matches {
            0 => 0.0,
            n => counts.fanout as f64 / n as f64,
        },
    }
}

/// The `/subsz` response: with `subs=1`, the subscriptions (paged by `offset` and `limit`);
/// with `test=<subject>`, only those a publish to it would reach.
pub fn subsz(shared: &Shared, req: &Request) -> Response {
    let subs = match bool_param(req, "subs") {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    let (offset, limit) = match (int_param(req, "offset"), int_param(req, "limit")) {
        (Ok(o), Ok(l)) => (
            o.map_or(0, |n| n.max(0) as usize),
            match l {
                None | Some(0) => super::connz::DEFAULT_LIMIT,
                Some(n) => n.max(0) as usize,
            },
        ),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let test = req.param("test").filter(|t| !t.is_empty());
    if let Some(test) = test {
        if !subject::is_valid_literal(test.as_bytes()) {
            return bad_request(format!(
                "invalid test subject, must be valid publish subject: {test}"
            ));
        }
    }
    let stats = sublist_stats(shared);
    let (total, list) = if subs {
        let mut all = shared.router.subscriptions(test.map(str::as_bytes));
        all.sort_by(|a, b| (a.cid, &a.sid).cmp(&(b.cid, &b.sid)));
        let total = all.len();
        let page = all
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|s| SubInfo {
                account: GLOBAL_ACCOUNT,
                account_tag: GLOBAL_ACCOUNT,
                subject: s.subject,
                qgroup: s.queue,
                sid: s.sid,
                msgs: s.msgs,
                cid: s.cid,
            })
            .collect();
        (total, page)
    } else {
        (0, Vec::new())
    };
    super::json(&Subsz {
        server_id: shared.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        stats,
        total,
        offset,
        limit,
        subscriptions_list: list,
    })
}

/// The `/routez` response: tern does not cluster yet, so no routes.
pub fn routez(shared: &Shared) -> Response {
    super::json(&serde_json::json!({
        "server_id": shared.server_id,
        "server_name": shared.server_name,
        "now": rfc3339(SystemTime::now()),
        "num_routes": 0,
        "routes": [],
    }))
}

/// Details of the global account, nats-server's `AccountInfo` for `$G`.
#[derive(Debug, Serialize)]
struct AccountDetail {
    account_name: &'static str,
    update_time: String,
    expired: bool,
    complete: bool,
    jetstream_enabled: bool,
    leafnode_connections: u64,
    client_connections: usize,
    subscriptions: usize,
    name_tag: &'static str,
    sublist_stats: SublistStats,
}

/// The `/accountz` response: the accounts (only `$G` until accounts exist), or with
/// `acc=$G` its details.
pub fn accountz(shared: &Shared, req: &Request) -> Response {
    let now = rfc3339(SystemTime::now());
    match req.param("acc").filter(|a| !a.is_empty()) {
        None => super::json(&serde_json::json!({
            "server_id": shared.server_id,
            "now": now,
            "accounts": [GLOBAL_ACCOUNT],
        })),
        Some(GLOBAL_ACCOUNT) => {
            let detail = AccountDetail {
                account_name: GLOBAL_ACCOUNT,
                update_time: rfc3339(shared.start),
                expired: false,
                complete: true,
                jetstream_enabled: false,
                leafnode_connections: 0,
                client_connections: shared.router.connection_count(),
                subscriptions: shared.router.subscription_count(),
                name_tag: GLOBAL_ACCOUNT,
                sublist_stats: sublist_stats(shared),
            };
            super::json(&serde_json::json!({
                "server_id": shared.server_id,
                "now": now,
                "account_detail": detail,
            }))
        }
        Some(other) => bad_request(format!("Account {other} does not exist")),
    }
}
