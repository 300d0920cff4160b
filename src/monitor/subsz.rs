//! `/subsz`: the sublists and their statistics, all accounts' or one's.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{bad_request, bool_param, int_param, rfc3339};
use crate::engine::account::SublistCounts;
use crate::monitor::http::{Request, Response};
use crate::proto::subject;
use crate::state::Shared;

/// Sublist statistics, nats-server's `SublistStats`.
#[derive(Debug, Serialize)]
pub struct SublistStats {
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
pub struct Subsz {
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
    account: String,
    account_tag: String,
    subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    qgroup: Option<String>,
    sid: String,
    msgs: u64,
    cid: u64,
}

/// What a `/subsz` request asks for: nats-server's `SubszOptions`, with its JSON names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SubszOptions {
    /// `offset`.
    pub offset: usize,
    /// `limit` (0: the default page size).
    pub limit: usize,
    /// `subscriptions` (`subs=1`): list the subscriptions.
    pub subscriptions: bool,
    /// `account` (`acc=` over HTTP): only this account.
    pub account: String,
    /// `test`: only subscriptions a publish to this subject would reach.
    pub test: String,
}

/// Sublist statistics from the counters. Publishers cache match results per connection, so
/// `num_cache` and `cache_hit_rate` (of a shared cache, in nats-server) are 0; `num_matches`
/// and the fan-outs count lookups that reached the shared sublist.
pub fn sublist_stats(counts: SublistCounts, num_subscriptions: usize) -> SublistStats {
    SublistStats {
        num_subscriptions,
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
/// with `test=<subject>`, only those a publish to it would reach; with `acc=`, one account's.
pub fn subsz(shared: &Shared, req: &Request) -> Response {
    let subscriptions = match bool_param(req, "subs") {
        Ok(subs) => subs,
        Err(response) => return response,
    };
    let (offset, limit) = match (int_param(req, "offset"), int_param(req, "limit")) {
        (Ok(o), Ok(l)) => (
            o.map_or(0, |n| n.max(0) as usize),
            l.map_or(0, |n| n.max(0) as usize),
        ),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let opts = SubszOptions {
        offset,
        limit,
        subscriptions,
        account: req.param("acc").unwrap_or_default().to_string(),
        test: req.param("test").unwrap_or_default().to_string(),
    };
    match build(shared, &opts) {
        Ok(doc) => super::json(&doc),
        Err(text) => bad_request(text),
    }
}

/// The `/subsz` document for `q`; the error is nats-server's text for a bad test subject.
pub fn build(shared: &Shared, q: &SubszOptions) -> Result<Subsz, String> {
    let limit = match q.limit {
        0 => super::connz::DEFAULT_LIMIT,
        n => n,
    };
    let test = Some(q.test.as_str()).filter(|t| !t.is_empty());
    if let Some(test) = test {
        if !subject::is_valid_literal(test.as_bytes()) {
            return Err(format!(
                "invalid test subject, must be valid publish subject: {test}"
            ));
        }
    }
    let account = Some(q.account.as_str())
        .filter(|a| !a.is_empty())
        .and_then(|name| shared.router.account(name));
    let stats = match &account {
        Some(account) => sublist_stats(account.sublist_counts(), account.subscription_count()),
        None => sublist_stats(
            shared.router.sublist_counts(),
            shared.router.subscription_count(),
        ),
    };
    let (total, list) = if q.subscriptions {
        let mut all: Vec<(String, _)> = match (&account, test) {
            (Some(account), Some(test)) => account
                .matching_snapshots(test.as_bytes())
                .into_iter()
                .map(|s| (account.name.to_string(), s))
                .collect(),
            (Some(account), None) => shared
                .router
                .connections_snapshot()
                .iter()
                .filter(|c| Arc::ptr_eq(&c.account(), account))
                .flat_map(|c| c.sub_snapshots())
                .map(|s| (account.name.to_string(), s))
                .collect(),
            (None, Some(test)) => shared
                .router
                .accounts()
                .iter()
                .flat_map(|a| {
                    let name = a.name.to_string();
                    a.matching_snapshots(test.as_bytes())
                        .into_iter()
                        .map(move |s| (name.clone(), s))
                })
                .collect(),
            (None, None) => shared
                .router
                .connections_snapshot()
                .iter()
                .flat_map(|c| {
                    let name = c.account().name.to_string();
                    c.sub_snapshots()
                        .into_iter()
                        .map(move |s| (name.clone(), s))
                })
                .collect(),
        };
        all.sort_by(|(_, a), (_, b)| (a.cid, &a.sid).cmp(&(b.cid, &b.sid)));
        let total = all.len();
        let page = all
            .into_iter()
            .skip(q.offset)
            .take(limit)
            .map(|(account, s)| SubInfo {
                account_tag: account.clone(),
                account,
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
    Ok(Subsz {
        server_id: shared.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        stats,
        total,
        offset: q.offset,
        limit,
        subscriptions_list: list,
    })
}
