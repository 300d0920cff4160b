//! `/leafz`: the leafnode connections with nats-server's fields (`Leafz`, `LeafInfo` in its
//! `monitor.go`). Never compressed. And `/varz`'s `leaf` object (`LeafNodeOptsVarz`).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::http::{Request, Response};
use super::varz::cluster_write_deadline;
use super::{bool_param, go_duration, rfc3339, seconds};
use crate::config::Options;
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

/// `/varz`'s `leaf`: the leafnode port (when it listens) and the remotes, each field left out
/// when empty as Go's `omitempty` does, with the cluster's write deadline as nats-server 2.15.1
/// shows it there.
#[derive(Debug, Default, Serialize)]
pub struct LeafVarz {
    #[serde(skip_serializing_if = "String::is_empty")]
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_timeout: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_timeout: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls_verify: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remotes: Vec<RemoteVarz>,
    #[serde(flatten)]
    write_deadline: super::varz::WriteDeadlineVarz,
}

/// One remote in `/varz`'s `leaf` (`RemoteLeafOptsVarz`).
#[derive(Debug, Serialize)]
struct RemoteVarz {
    local_account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_timeout: Option<serde_json::Value>,
    /// Each URL's `host:port` (the default port when none was written).
    urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deny: Option<DenyVarz>,
}

#[derive(Debug, Serialize)]
struct DenyVarz {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    imports: Vec<String>,
}

/// `/varz`'s `leaf`; `port` is the bound leafnode port, when it listens.
pub fn varz(opts: &Options, port: Option<u16>) -> LeafVarz {
    let write_deadline = cluster_write_deadline(opts);
    let Some(leaf) = &opts.leafnodes else {
        return LeafVarz {
            write_deadline,
            ..LeafVarz::default()
        };
    };
    let listening = leaf.listens.then_some(leaf);
    let tls = leaf.tls.as_ref();
    LeafVarz {
        host: listening.map(|l| l.host.clone()).unwrap_or_default(),
        port: listening.map(|l| port.unwrap_or(l.port)),
        auth_timeout: listening.map(|l| seconds(l.auth_timeout)),
        // nats-server's default (2 s) without TLS.
        tls_timeout: listening.map(|_| seconds(tls.map_or(Duration::from_secs(2), |t| t.timeout))),
        tls_required: tls.is_some(),
        tls_verify: tls.is_some_and(|t| t.verify || t.verify_and_map),
        remotes: leaf
            .remotes
            .iter()
            .map(|r| RemoteVarz {
                local_account: r.account.clone().unwrap_or_else(|| "$G".into()),
                tls_timeout: r.tls.as_ref().map(|t| seconds(t.timeout)),
                urls: r
                    .urls
                    .iter()
                    .map(|u| match u.host.contains(':') {
                        true => format!("[{}]:{}", u.host, u.port),
                        false => format!("{}:{}", u.host, u.port),
                    })
                    .collect(),
                deny: (!r.deny_exports.is_empty() || !r.deny_imports.is_empty()).then(|| {
                    DenyVarz {
                        exports: r.deny_exports.clone(),
                        imports: r.deny_imports.clone(),
                    }
                }),
            })
            .collect(),
        write_deadline,
    }
}
