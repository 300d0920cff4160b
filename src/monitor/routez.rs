//! `/routez`: the cluster's routes with nats-server's fields (`Routez`, `RouteInfo` in its
//! `monitor.go`). tern keeps one route per server, uncompressed.

use std::time::SystemTime;

use serde::Serialize;

use super::http::{Request, Response};
use super::{bool_param, go_duration, rfc3339, uptime};
use crate::engine::route::Route;
use crate::proto::route::PermissionJson;
use crate::state::cluster::permission_json;
use crate::state::Shared;

#[derive(Serialize)]
struct Routez {
    server_id: String,
    server_name: String,
    now: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<PermissionJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    export: Option<PermissionJson>,
    num_routes: usize,
    routes: Vec<RouteInfo>,
}

#[derive(Serialize)]
struct RouteInfo {
    rid: u64,
    remote_id: String,
    remote_name: String,
    did_solicit: bool,
    is_configured: bool,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    rtt: String,
    uptime: String,
    idle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<PermissionJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    export: Option<PermissionJson>,
    pending_size: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions_list: Option<Vec<String>>,
    compression: &'static str,
}

/// Answers `/routez` (`subs=1` lists each route's remote subscriptions).
pub fn routez(shared: &Shared, req: &Request) -> Response {
    let subs = match bool_param(req, "subs") {
        Ok(subs) => subs,
        Err(bad) => return bad,
    };
    let now = SystemTime::now();
    let mut routes: Vec<RouteInfo> = shared
        .router
        .routes()
        .all()
        .iter()
        .map(|r| info(r, subs, now))
        .collect();
    routes.sort_by_key(|r| r.rid);
    let opts = shared.opts();
    let cluster = opts.cluster.as_ref();
    super::json(&Routez {
        server_id: shared.server_id.clone(),
        server_name: shared.server_name.clone(),
        now: rfc3339(now),
        import: cluster.and_then(|c| c.import.as_ref()).map(permission_json),
        export: cluster.and_then(|c| c.export.as_ref()).map(permission_json),
        num_routes: routes.len(),
        routes,
    })
}

fn info(route: &Route, subs: bool, now: SystemTime) -> RouteInfo {
    let conn = &route.conn;
    let counts = conn.counts();
    let last = conn.stats.last_activity();
    let peer = route.peer_permissions();
    RouteInfo {
        rid: conn.cid,
        remote_id: route.remote_id.clone(),
        remote_name: route.remote_name.clone(),
        did_solicit: route.solicited,
        is_configured: route.solicited,
        ip: conn.addr.ip().to_string(),
        port: conn.addr.port(),
        start: rfc3339(conn.stats.start),
        last_activity: rfc3339(last),
        rtt: conn.stats.rtt().map(go_duration).unwrap_or_default(),
        uptime: uptime(now.duration_since(conn.stats.start).unwrap_or_default()),
        idle: uptime(now.duration_since(last).unwrap_or_default()),
        import: peer.0,
        export: peer.1,
        pending_size: conn.outbound.pending_bytes(),
        in_msgs: counts.in_msgs,
        out_msgs: counts.out_msgs,
        in_bytes: counts.in_bytes,
        out_bytes: counts.out_bytes,
        subscriptions: route.remote_count(),
        subscriptions_list: subs.then(|| route.remote_subjects()),
        compression: "off",
    }
}
