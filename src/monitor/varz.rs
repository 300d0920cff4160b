//! `/varz`: the server's identity, limits and counters, with nats-server's field names and
//! units (durations in nanoseconds, timeouts in seconds, times in RFC 3339). The `cluster`
//! object shows the cluster options as nats-server shows them, `leaf` the leafnode options;
//! features tern does not have (gateway, MQTT) are reported as nats-server reports them when
//! they are off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::{rfc3339, seconds, uptime};
use crate::config::cluster::{ClusterOptions, RouteUrl};
use crate::config::Options;
use crate::engine::connection::Connection;
use crate::engine::stats::Totals;
use crate::monitor::http::Response;
use crate::proto::protocol;
use crate::state::MonitorState;
use crate::state::Shared;

/// The `/varz` document. Field order follows nats-server's.
#[derive(Debug, Serialize)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    pub git_commit: String,
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    pub max_connections: usize,
    pub ping_interval: u64,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: i32,
    pub http_base_path: String,
    pub https_port: i32,
    pub auth_timeout: Value,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub cluster: ClusterVarz,
    pub gateway: WriteDeadlineVarz,
    pub leaf: super::leafz::LeafVarz,
    pub mqtt: Empty,
    pub websocket: WebSocketVarz,
    pub jetstream: JetStreamField,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub tls_timeout: Value,
    pub write_deadline: u64,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: usize,
    pub gomaxprocs: usize,
    pub cpu: f64,
    pub connections: usize,
    pub total_connections: u64,
    pub routes: u64,
    pub remotes: u64,
    pub leafnodes: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub in_client_msgs: u64,
    pub in_client_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub out_client_msgs: u64,
    pub out_client_bytes: u64,
    pub slow_consumers: u64,
    pub stale_connections: u64,
    pub stalled_clients: u64,
    pub subscriptions: usize,
    pub http_req_stats: BTreeMap<&'static str, u64>,
    pub config_load_time: String,
    pub config_digest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub feature_flags: BTreeMap<&'static str, bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_account: Option<String>,
    #[serde(skip_serializing_if = "is_none_counted")]
    pub pinned_account_fails: u64,
    pub slow_consumer_stats: KindStats,
    pub stale_connection_stats: KindStats,
    pub disk_io_wait_stats: DiskIoWaitStats,
}

/// `cluster` (nats-server's `ClusterOptsVarz`): `{}` without a cluster; each field is left
/// out when empty, as nats-server's `omitempty` does.
#[derive(Debug, Default, Serialize)]
pub struct ClusterVarz {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_timeout: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_timeout: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_deadline: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_timeout: Option<String>,
}

/// `gateway` and `leaf`: `{}`, except that nats-server 2.15.1 fills their `write_deadline` and
/// `write_timeout` from the cluster's (its `/varz` reads the cluster options for all three).
#[derive(Debug, Default, Serialize)]
pub struct WriteDeadlineVarz {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_deadline: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_timeout: Option<String>,
}

/// `websocket` (nats-server's `WebsocketOptsVarz`): `{}` without a WebSocket listener; each
/// field is left out when empty, zero or false, as Go's `omitempty` does.
#[derive(Debug, Default, Serialize)]
pub struct WebSocketVarz {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_auth_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_cookie: Option<String>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<u64>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_timeout: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_tls: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub same_origin: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compression: bool,
}

/// Left out when nothing was counted (Go's `omitempty`).
fn is_none_counted(count: &u64) -> bool {
    *count == 0
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

/// The `websocket` object, with the port the listener bound.
fn websocket(opts: &Options, bound: Option<u16>) -> WebSocketVarz {
    let Some(ws) = &opts.websocket else {
        return WebSocketVarz::default();
    };
    WebSocketVarz {
        host: ws.host.clone(),
        port: bound.unwrap_or(ws.port),
        advertise: ws.advertise.clone(),
        no_auth_user: ws.no_auth_user.clone(),
        jwt_cookie: ws.jwt_cookie.clone(),
        handshake_timeout: (!ws.handshake_timeout.is_zero())
            .then_some(ws.handshake_timeout.as_nanos() as u64),
        auth_timeout: ws.auth_timeout.map(seconds),
        no_tls: ws.no_tls,
        same_origin: ws.same_origin,
        allowed_origins: ws.allowed_origins.clone(),
        compression: ws.compression,
    }
}

/// A feature block for a feature that is off: `{}`.
#[derive(Debug, Default, Serialize)]
pub struct Empty {}

/// A count by connection kind (`slow_consumer_stats`, `stale_connection_stats`).
#[derive(Debug, Default, Serialize)]
pub struct KindStats {
    pub clients: u64,
    pub routes: u64,
    pub gateways: u64,
    pub leafs: u64,
}

/// `jetstream`: its configuration and totals, or `{}` when it is off.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum JetStreamField {
    On(super::jsz::JetStreamVarz),
    Off(Empty),
}

/// JetStream's disk waits; always zero without JetStream.
#[derive(Debug, Default, Serialize)]
pub struct DiskIoWaitStats {
    pub waiters: u64,
    pub waits: u64,
    pub wait_time: u64,
    pub max_wait_time: u64,
}

/// Server-wide message counters (live connections' plus closed ones'), and the live
/// connections they were read from.
pub fn totals(shared: &Shared) -> (Vec<Arc<Connection>>, Totals) {
    let (live, mut totals) = shared.router.connections_and_closed_totals();
    for conn in &live {
        totals.add(conn.counts());
    }
    (live, totals)
}

/// Builds the document.
pub fn build(shared: &Shared) -> Varz {
    let opts = shared.opts();
    let (live, totals) = totals(shared);
    let connections = live.len();
    drop(live);
    let now = SystemTime::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let http_stats = shared
        .monitor
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Varz {
        server_id: shared.server_id.clone(),
        server_name: shared.server_name.clone(),
        version: protocol::NATS_SERVER_VERSION.to_string(),
        proto: protocol::PROTO as u32,
        git_commit: concat!("tern-", env!("CARGO_PKG_VERSION")).to_string(),
        go: "rust".to_string(),
        host: opts.host.clone(),
        port: shared.addr.port(),
        auth_required: opts.auth_required(),
        max_connections: opts.max_connections,
        ping_interval: opts.ping_interval.as_nanos() as u64,
        ping_max: opts.ping_max,
        http_host: opts.http_host.clone().unwrap_or_else(|| opts.host.clone()),
        http_port: opts.http_port,
        http_base_path: opts.http_base_path.clone(),
        https_port: opts.https_port,
        auth_timeout: seconds(opts.auth_timeout()),
        max_control_line: opts.max_control_line,
        max_payload: opts.max_payload,
        max_pending: opts.max_pending,
        cluster: ClusterVarz {
            // The bound port, when `-1` asked for a random one.
            cluster_port: shared
                .cluster_addr()
                .map(|a| a.port())
                .or(cluster(&opts).cluster_port),
            ..cluster(&opts)
        },
        gateway: cluster_write_deadline(&opts),
        leaf: super::leafz::varz(&opts, shared.leaf_addr().map(|a| a.port())),
        mqtt: Empty {},
        websocket: websocket(&opts, shared.websocket_addr().map(|a| a.port())),
        jetstream: match super::jsz::varz(shared) {
            Some(js) => JetStreamField::On(js),
            None => JetStreamField::Off(Empty {}),
        },
        tls_required: opts.tls.is_some(),
        tls_verify: opts
            .tls
            .as_ref()
            .is_some_and(|t| t.verify || t.verify_and_map),
        // nats-server reports its default (2 s) even without TLS; whole seconds as an integer.
        tls_timeout: {
            let secs = opts.tls.as_ref().map_or(2.0, |t| t.timeout.as_secs_f64());
            if secs.fract() == 0.0 {
                Value::from(secs as u64)
            } else {
                Value::from(secs)
            }
        },
        write_deadline: opts.write_deadline.as_nanos() as u64,
        start: rfc3339(shared.start),
        now: rfc3339(now),
        uptime: uptime(shared.started.elapsed()),
        mem: resident_memory().unwrap_or(0),
        cores,
        gomaxprocs: cores,
        cpu: cpu_percent(&shared.monitor, shared.started).unwrap_or(0.0),
        connections,
        total_connections: shared.router.total_connections(),
        // One connection per server: as many routes as remote servers.
        routes: shared.router.routes().all().len() as u64,
        remotes: shared.router.routes().all().len() as u64,
        leafnodes: shared.leafnode.leafs.len() as u64,
        in_msgs: totals.in_msgs,
        in_bytes: totals.in_bytes,
        in_client_msgs: totals.in_msgs,
        in_client_bytes: totals.in_bytes,
        out_msgs: totals.out_msgs,
        out_bytes: totals.out_bytes,
        out_client_msgs: totals.out_msgs,
        out_client_bytes: totals.out_bytes,
        slow_consumers: totals.slow_consumers,
        stale_connections: totals.stale_connections,
        // tern never stalls a publisher (a slow consumer is closed instead).
        stalled_clients: 0,
        subscriptions: shared.router.subscription_count(),
        http_req_stats: http_stats,
        config_load_time: rfc3339(shared.config_load_time()),
        config_digest: String::new(),
        tags: opts.server_tags.clone(),
        feature_flags: feature_flags(),
        system_account: crate::state::accounts::system_account_name(&opts).map(String::from),
        pinned_account_fails: shared
            .monitor
            .pinned_fails
            .load(std::sync::atomic::Ordering::Relaxed),
        slow_consumer_stats: KindStats {
            clients: totals.slow_consumers,
            ..KindStats::default()
        },
        stale_connection_stats: KindStats {
            clients: totals.stale_connections,
            ..KindStats::default()
        },
        disk_io_wait_stats: DiskIoWaitStats::default(),
    }
}

/// The `cluster` object. nats-server shows the port it bound (for `-1`) and the name it made up
/// when none is configured; until the route listener records them in the shared state, the
/// configured port and name are shown.
pub fn cluster(opts: &Options) -> ClusterVarz {
    let Some(cluster) = &opts.cluster else {
        return ClusterVarz::default();
    };
    let tls = cluster.tls.as_ref();
    ClusterVarz {
        name: cluster.name.clone(),
        addr: Some(cluster.host.clone()),
        cluster_port: Some(cluster.port),
        auth_timeout: Some(seconds(cluster.auth_timeout)),
        urls: cluster.routes.iter().map(route_host_port).collect(),
        tls_timeout: Some(seconds(tls.map_or(Duration::from_secs(2), |t| t.timeout))),
        // Routes always verify their peer's certificate.
        tls_required: tls.is_some(),
        tls_verify: tls.is_some(),
        pool_size: Some(cluster.pool_size),
        write_deadline: (!cluster.write_deadline.is_zero())
            .then_some(cluster.write_deadline.as_nanos() as u64),
        write_timeout: write_timeout(cluster),
    }
}

/// `gateway` and `leaf`, with the cluster's write deadline as nats-server shows it there.
pub(super) fn cluster_write_deadline(opts: &Options) -> WriteDeadlineVarz {
    let cluster = opts.cluster.as_ref();
    WriteDeadlineVarz {
        write_deadline: cluster
            .filter(|c| !c.write_deadline.is_zero())
            .map(|c| c.write_deadline.as_nanos() as u64),
        write_timeout: cluster.and_then(write_timeout),
    }
}

/// `write_timeout` unless it is nats-server's default policy.
fn write_timeout(cluster: &ClusterOptions) -> Option<String> {
    cluster
        .write_timeout
        .clone()
        .filter(|policy| policy != "default")
}

/// A route URL's `host:port` (Go's `URL.Host`), as `/varz` lists it.
fn route_host_port(route: &RouteUrl) -> String {
    let host = match route.host.contains(':') {
        true => format!("[{}]", route.host),
        false => route.host.clone(),
    };
    match route.port {
        0 => host,
        port => format!("{host}:{port}"),
    }
}

/// JetStream feature flags, as nats-server 2.15.1 reports them with JetStream off.
pub fn feature_flags() -> BTreeMap<&'static str, bool> {
    BTreeMap::from([
        ("js_ack_fc_v2", false),
        ("js_api_reply_v2", false),
        ("js_raft_delete_range", true),
        ("js_snapshot_sources", false),
    ])
}

/// The `/varz` response.
pub fn varz(shared: &Shared) -> Response {
    super::json(&build(shared))
}

/// Resident set size in bytes (`VmRSS` in `/proc/self/status`).
pub(super) fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time used by the process, in seconds (`utime + stime` of `/proc/self/stat`, in the
/// kernel's USER_HZ of 100 ticks a second).
pub(super) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU use in percent of one core since the previous `/varz` (since start, the first time),
/// rounded to two decimals as nats-server rounds it.
fn cpu_percent(state: &MonitorState, started: Instant) -> Option<f64> {
    let used = cpu_seconds()?;
    let now = Instant::now();
    let mut sample = state.cpu_sample.lock().unwrap_or_else(|p| p.into_inner());
    let (then, before) = sample.unwrap_or((started, 0.0));
    *sample = Some((now, used));
    let elapsed = now.duration_since(then).as_secs_f64();
    if elapsed <= 0.0 {
        return Some(0.0);
    }
    let percent = (used - before).max(0.0) / elapsed * 100.0;
    Some((percent * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_as_nats_server_shows_it() {
        use crate::config::cluster::{route_url, ClusterOptions};
        use crate::config::TlsOptions;

        let json = |opts: &Options| serde_json::to_value(cluster(opts)).unwrap();
        assert_eq!(json(&Options::default()), serde_json::json!({}));
        // What nats-server 2.15.1 showed for `cluster { port: -1, tls { ..., timeout: 3 } }`
        // (less the port it bound and the name it made up, and `tls_cert_not_after`).
        let opts = Options {
            cluster: Some(ClusterOptions {
                tls: Some(TlsOptions {
                    timeout: Duration::from_secs(3),
                    ..TlsOptions::default()
                }),
                auth_timeout: Duration::from_secs(4),
                ..ClusterOptions::default()
            }),
            ..Options::default()
        };
        assert_eq!(
            json(&opts),
            serde_json::json!({"addr": "0.0.0.0", "cluster_port": 0, "auth_timeout": 4,
                "tls_timeout": 3, "tls_required": true, "tls_verify": true, "pool_size": 3})
        );
        let opts = Options {
            cluster: Some(ClusterOptions {
                routes: vec![route_url("nats-route://u:p@h:4").unwrap()],
                auth_timeout: Duration::from_millis(500),
                pool_size: -1,
                write_deadline: Duration::from_secs(3),
                write_timeout: Some("default".into()),
                ..ClusterOptions::default()
            }),
            ..Options::default()
        };
        let cluster = json(&opts);
        assert_eq!(cluster["urls"], serde_json::json!(["h:4"]));
        assert_eq!(cluster["auth_timeout"], serde_json::json!(0.5));
        assert_eq!(cluster["pool_size"], -1);
        assert_eq!(cluster["write_deadline"], 3_000_000_000u64);
        assert!(cluster.get("write_timeout").is_none());
        let gateway = serde_json::to_value(cluster_write_deadline(&opts)).unwrap();
        assert_eq!(
            gateway,
            serde_json::json!({"write_deadline": 3_000_000_000u64})
        );
    }

    #[test]
    fn proc_readings() {
        assert!(resident_memory().is_some_and(|m| m > 0));
        assert!(cpu_seconds().is_some());
        let state = MonitorState::default();
        let p = cpu_percent(&state, Instant::now()).unwrap();
        assert!(p >= 0.0);
    }
}
