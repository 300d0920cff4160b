//! `/varz`: the server's identity, limits and counters, with nats-server's field names and
//! units (durations in nanoseconds, timeouts in seconds, times in RFC 3339). Features tern does
//! not have (cluster, gateway, leaf nodes, JetStream, ...) are reported as nats-server reports
//! them when they are off.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::{rfc3339, seconds, uptime};
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
    pub cluster: Empty,
    pub gateway: Empty,
    pub leaf: Empty,
    pub mqtt: Empty,
    pub websocket: Empty,
    pub jetstream: Empty,
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
    pub slow_consumer_stats: KindStats,
    pub stale_connection_stats: KindStats,
    pub disk_io_wait_stats: DiskIoWaitStats,
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

/// JetStream's disk waits; always zero without JetStream.
#[derive(Debug, Default, Serialize)]
pub struct DiskIoWaitStats {
    pub waiters: u64,
    pub waits: u64,
    pub wait_time: u64,
    pub max_wait_time: u64,
}

/// Server-wide message counters: live connections' plus closed ones'.
pub fn totals(shared: &Shared) -> (usize, Totals) {
    let (live, mut totals) = shared.router.connections_and_closed_totals();
    for conn in &live {
        totals.add(conn.counts());
    }
    (live.len(), totals)
}

/// Builds the document.
pub fn build(shared: &Shared) -> Varz {
    let opts = shared.opts();
    let (connections, totals) = totals(shared);
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
        cluster: Empty {},
        gateway: Empty {},
        leaf: Empty {},
        mqtt: Empty {},
        websocket: Empty {},
        jetstream: Empty {},
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
        routes: 0,
        remotes: 0,
        leafnodes: 0,
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
fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time used by the process, in seconds (`utime + stime` of `/proc/self/stat`, in the
/// kernel's USER_HZ of 100 ticks a second).
fn cpu_seconds() -> Option<f64> {
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
    fn proc_readings() {
        assert!(resident_memory().is_some_and(|m| m > 0));
        assert!(cpu_seconds().is_some());
        let state = MonitorState::default();
        let p = cpu_percent(&state, Instant::now()).unwrap();
        assert!(p >= 0.0);
    }
}
