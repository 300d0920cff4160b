//! `/leafz`: the leafnode connections with nats-server's fields (`Leafz`, `LeafInfo` in its
//! `monitor.go`). Never compressed.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;

use super::http::{Request, Response};
use super::{bool_param, go_duration, rfc3339};
use crate::engine::leaf::Leaf;
use crate::state::Shared;

/// The `/leafz` document (also the `$SYS` `LEAFZ` answer).
#[derive(Serialize)]
pub struct Leafz {
    server_id: String,
    now: String,
    leafnodes: usize,
    leafs: Vec<LeafInfo>,
}

#[derive(Serialize)]
struct LeafInfo {
    id: u64,
    name: String,
    is_spoke: bool,
    account: String,
    ip: String,
    port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    rtt: String,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions_list: Option<Vec<String>>,
    compression: &'static str,
}

/// Answers `/leafz` (`subs=1` lists each leafnode's subscriptions).
pub fn leafz(shared: &Shared, req: &Request) -> Response {
    let subs = match bool_param(req, "subs") {
        Ok(subs) => subs,
        Err(bad) => return bad,
    };
    super::json(&document(shared, subs, None))
}

/// The document, for the leafnodes of `account` only when given.
pub fn document(shared: &Shared, subs: bool, account: Option<&str>) -> Leafz {
    let leafs: Vec<LeafInfo> = shared
        .leafnode
        .leafs
        .all()
        .iter()
        .filter(|l| account.map_or(true, |a| &*l.account.name == a))
        .map(|l| info(l, subs))
        .collect();
    Leafz {
        server_id: shared.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        leafnodes: leafs.len(),
        leafs,
    }
}

fn info(leaf: &Leaf, subs: bool) -> LeafInfo {
    let conn = &leaf.conn;
    let counts = conn.counts();
    LeafInfo {
        id: conn.cid,
        name: leaf.remote_name.clone(),
        is_spoke: leaf.spoke,
        account: leaf.account.name.to_string(),
        ip: conn.addr.ip().to_string(),
        port: conn.addr.port(),
        rtt: conn.stats.rtt().map(go_duration).unwrap_or_default(),
        in_msgs: counts.in_msgs,
        out_msgs: counts.out_msgs,
        in_bytes: counts.in_bytes,
        out_bytes: counts.out_bytes,
        subscriptions: leaf.remote_subs.load(Ordering::Relaxed),
        subscriptions_list: subs.then(|| leaf.remote_subjects()),
        compression: "off",
    }
}
