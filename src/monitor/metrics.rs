//! `/metrics`: the `/varz` counters, accounts, routes and JetStream in Prometheus text format
//! (version 0.0.4).
//!
//! The names are those prometheus-nats-exporter gives the same fields (`gnatsd_varz_<field>`,
//! labelled with `server_id`), so dashboards built on the exporter work against tern without
//! one. The full list is in the README.

use std::fmt::Write;

use super::varz;
use crate::engine::route::Route;
use crate::monitor::http::Response;
use crate::state::Shared;

/// Prometheus' text exposition content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a metric only ever grows.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// The `/metrics` response.
pub async fn metrics(shared: &Shared) -> Response {
    let v = varz::build(shared);
    let uptime = shared.started.elapsed().as_secs_f64();
    let start = shared
        .start
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    use Kind::{Counter, Gauge};
    let metrics: [(&str, Kind, f64, &str); 23] = [
        (
            "in_msgs",
            Counter,
            v.in_msgs as f64,
            "Messages received from clients.",
        ),
        (
            "in_bytes",
            Counter,
            v.in_bytes as f64,
            "Payload bytes received from clients.",
        ),
        (
            "out_msgs",
            Counter,
            v.out_msgs as f64,
            "Messages delivered to clients.",
        ),
        (
            "out_bytes",
            Counter,
            v.out_bytes as f64,
            "Payload bytes delivered to clients.",
        ),
        (
            "connections",
            Gauge,
            v.connections as f64,
            "Client connections open now.",
        ),
        (
            "total_connections",
            Counter,
            v.total_connections as f64,
            "Client connections accepted since start.",
        ),
        (
            "subscriptions",
            Gauge,
            v.subscriptions as f64,
            "Subscriptions now.",
        ),
        (
            "slow_consumers",
            Counter,
            v.slow_consumers as f64,
            "Connections closed as slow consumers.",
        ),
        (
            "stale_connections",
            Counter,
            v.stale_connections as f64,
            "Connections closed as stale (unanswered PINGs).",
        ),
        (
            "routes",
            Gauge,
            v.routes as f64,
            "Route connections open now.",
        ),
        (
            "remotes",
            Gauge,
            v.remotes as f64,
            "Remote servers connected by routes now.",
        ),
        (
            "leafnodes",
            Gauge,
            v.leafnodes as f64,
            "Leaf node connections.",
        ),
        ("mem", Gauge, v.mem as f64, "Resident memory in bytes."),
        (
            "cpu",
            Gauge,
            v.cpu,
            "CPU use in percent of one core since the previous sample.",
        ),
        ("cores", Gauge, v.cores as f64, "CPU cores available."),
        (
            "max_connections",
            Gauge,
            v.max_connections as f64,
            "max_connections option.",
        ),
        (
            "max_payload",
            Gauge,
            v.max_payload as f64,
            "max_payload option in bytes.",
        ),
        (
            "max_pending",
            Gauge,
            v.max_pending as f64,
            "max_pending option in bytes.",
        ),
        (
            "max_control_line",
            Gauge,
            v.max_control_line as f64,
            "max_control_line option in bytes.",
        ),
        ("ping_max", Gauge, v.ping_max as f64, "ping_max option."),
        (
            "ping_interval_seconds",
            Gauge,
            shared.opts().ping_interval.as_secs_f64(),
            "ping_interval option in seconds.",
        ),
        (
            "start_time_seconds",
            Gauge,
            start,
            "Server start time, seconds since the Unix epoch.",
        ),
        (
            "uptime_seconds",
            Gauge,
            uptime,
            "Seconds since the server started.",
        ),
    ];
    let label = format!("server_id=\"{}\"", escape_label(&v.server_id));
    let mut text = String::new();
    for (name, kind, value, help) in metrics {
        let kind = match kind {
            Counter => "counter",
            Gauge => "gauge",
        };
        let _ = writeln!(text, "# HELP gnatsd_varz_{name} {help}");
        let _ = writeln!(text, "# TYPE gnatsd_varz_{name} {kind}");
        let _ = writeln!(text, "gnatsd_varz_{name}{{{label}}} {value}");
    }
    // Per account, under prometheus-nats-exporter's `accstatz` names, labelled `account`.
    let accounts = super::accountz::build_accstatz(
        shared,
        &super::accountz::AccountStatzOptions {
            include_unused: true,
            ..Default::default()
        },
    );
    type Read = fn(&super::accountz::AccountStat) -> usize;
    let per_account: [(&str, &str, Read); 2] = [
        (
            "current_connections",
            "Client connections open now in the account.",
            |a| a.conns,
        ),
        ("subscriptions", "Subscriptions now in the account.", |a| {
            a.num_subscriptions
        }),
    ];
    for (name, help, value) in per_account {
        let _ = writeln!(text, "# HELP gnatsd_accstatz_{name} {help}");
        let _ = writeln!(text, "# TYPE gnatsd_accstatz_{name} gauge");
        for account in accounts.account_statz() {
            let _ = writeln!(
                text,
                "gnatsd_accstatz_{name}{{{label},account=\"{}\"}} {}",
                escape_label(&account.acc),
                value(account)
            );
        }
    }
    routez(shared, &label, &mut text);
    jetstream(shared, &mut text).await;
    Response::with_status(200, CONTENT_TYPE, text.into_bytes())
}

/// The routes, under prometheus-nats-exporter's `routez` names: their number, and per route
/// (labelled `rid`) its traffic, interest, RTT and uptime, with the peer named once in
/// `gnatsd_routez_route_info`. All gauges, as the exporter declares them.
fn routez(shared: &Shared, label: &str, text: &mut String) {
    let mut routes = shared.router.routes().all();
    routes.sort_by_key(|r| r.conn.cid);
    let _ = writeln!(
        text,
        "# HELP gnatsd_routez_num_routes Route connections open now."
    );
    let _ = writeln!(text, "# TYPE gnatsd_routez_num_routes gauge");
    let _ = writeln!(text, "gnatsd_routez_num_routes{{{label}}} {}", routes.len());
    let _ = writeln!(
        text,
        "# HELP gnatsd_routez_route_info A route's peer (always 1)."
    );
    let _ = writeln!(text, "# TYPE gnatsd_routez_route_info gauge");
    for route in &routes {
        let _ = writeln!(
            text,
            "gnatsd_routez_route_info{{{label},rid=\"{}\",remote_id=\"{}\",remote_name=\"{}\",\
             account=\"\",ip=\"{}\",compression=\"off\"}} 1",
            route.conn.cid,
            escape_label(&route.remote_id),
            escape_label(&route.remote_name),
            route.conn.addr.ip(),
        );
    }
    type Read = fn(&Route) -> Option<f64>;
    let per_route: [(&str, &str, Read); 7] = [
        ("in_msgs", "Messages received from the route.", |r| {
            Some(r.conn.counts().in_msgs as f64)
        }),
        ("out_msgs", "Messages sent to the route.", |r| {
            Some(r.conn.counts().out_msgs as f64)
        }),
        ("in_bytes", "Payload bytes received from the route.", |r| {
            Some(r.conn.counts().in_bytes as f64)
        }),
        ("out_bytes", "Payload bytes sent to the route.", |r| {
            Some(r.conn.counts().out_bytes as f64)
        }),
        (
            "subscriptions",
            "Subscriptions the route's server has with us.",
            |r| Some(r.remote_count() as f64),
        ),
        (
            "rtt_seconds",
            "Round-trip time to the route's server, once measured.",
            |r| r.conn.stats.rtt().map(|d| d.as_secs_f64()),
        ),
        (
            "uptime_seconds",
            "Seconds since the route connected.",
            |r| {
                Some(
                    std::time::SystemTime::now()
                        .duration_since(r.conn.stats.start)
                        .unwrap_or_default()
                        .as_secs() as f64,
                )
            },
        ),
    ];
    for (name, help, value) in per_route {
        let _ = writeln!(text, "# HELP gnatsd_routez_route_{name} {help}");
        let _ = writeln!(text, "# TYPE gnatsd_routez_route_{name} gauge");
        for route in &routes {
            if let Some(value) = value(route) {
                let _ = writeln!(
                    text,
                    "gnatsd_routez_route_{name}{{{label},rid=\"{}\"}} {value}",
                    route.conn.cid
                );
            }
        }
    }
}

/// Escapes a label value (`\`, `"` and newlines), as the text format requires.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A number at `path` in `value` (0 when absent).
fn number(value: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

/// A string at `key` in `value` ("" when absent), escaped for a label.
fn text_at(value: &serde_json::Value, key: &str) -> String {
    escape_label(value.get(key).and_then(|v| v.as_str()).unwrap_or(""))
}

/// One gauge family: its help and type lines, then each sample (labels, value).
fn family(text: &mut String, name: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(text, "# HELP jetstream_{name} {help}");
    let _ = writeln!(text, "# TYPE jetstream_{name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(text, "jetstream_{name}{{{labels}}} {value}");
    }
}

/// JetStream, under prometheus-nats-exporter's `jsz` names and labels: the server's totals
/// and limits, and per stream and per consumer what `/jsz?consumers=true&config=true` shows
/// (read from the same detail). Nothing when JetStream is off. All gauges, as the exporter
/// declares them; the cluster, domain and leader labels are those of a lone server.
async fn jetstream(shared: &Shared, text: &mut String) {
    let Some(config) = shared.jetstream.config() else {
        return;
    };
    let totals = shared.jetstream.stats();
    let server = format!(
        "server_id=\"{}\",server_name=\"{}\",cluster=\"\",domain=\"\",meta_leader=\"\",\
         is_meta_leader=\"true\"",
        escape_label(&shared.server_id),
        escape_label(&shared.server_name)
    );
    let server_gauges: [(&str, &str, f64); 7] = [
        (
            "server_jetstream_disabled",
            "JetStream disabled or not",
            0.0,
        ),
        (
            "server_max_memory",
            "JetStream Max Memory",
            config.max_memory as f64,
        ),
        (
            "server_max_storage",
            "JetStream Max Storage",
            config.max_storage as f64,
        ),
        (
            "server_total_streams",
            "Total number of streams in JetStream",
            totals.streams as f64,
        ),
        (
            "server_total_consumers",
            "Total number of consumers in JetStream",
            totals.consumers as f64,
        ),
        (
            "server_total_messages",
            "Total number of stored messages in JetStream",
            totals.messages as f64,
        ),
        (
            "server_total_message_bytes",
            "Total number of bytes stored in JetStream",
            totals.bytes as f64,
        ),
    ];
    for (name, help, value) in server_gauges {
        family(text, name, help, &[(server.clone(), value)]);
    }
    let detail = crate::state::jetstream::JszDetail {
        account: None,
        streams: true,
        consumers: true,
        config: true,
    };
    let accounts = shared
        .jetstream
        .account_details(detail)
        .await
        .unwrap_or_default();
    // (labels, stream) and (labels, consumer) for every stream and consumer.
    let mut streams = Vec::new();
    let mut consumers = Vec::new();
    for account in &accounts {
        let list = account.get("stream_detail").and_then(|s| s.as_array());
        for stream in list.into_iter().flatten() {
            let labels = format!(
                "{server},account=\"{}\",account_id=\"{}\",stream_name=\"{}\",\
                 stream_leader=\"\",is_stream_leader=\"true\",stream_raft_group=\"\"",
                text_at(account, "name"),
                text_at(account, "id"),
                text_at(stream, "name"),
            );
            let list = stream.get("consumer_detail").and_then(|c| c.as_array());
            for consumer in list.into_iter().flatten() {
                let description = consumer
                    .get("config")
                    .map(|c| text_at(c, "description"))
                    .unwrap_or_default();
                let labels = format!(
                    "{labels},consumer_name=\"{}\",consumer_leader=\"\",\
                     is_consumer_leader=\"true\",consumer_desc=\"{description}\"",
                    text_at(consumer, "name"),
                );
                consumers.push((labels, consumer));
            }
            streams.push((labels, stream));
        }
    }
    let per_stream: [(&str, &str, &[&str]); 8] = [
        ("total_messages", "Total number of messages from a stream", &["state", "messages"]),
        ("total_bytes", "Total stored bytes from a stream", &["state", "bytes"]),
        ("first_seq", "First sequence from a stream", &["state", "first_seq"]),
        ("last_seq", "Last sequence from a stream", &["state", "last_seq"]),
        (
            "consumer_count",
            "Total number of consumers from a stream",
            &["state", "consumer_count"],
        ),
        (
            "subject_count",
            "Total number of subjects in a stream",
            &["state", "num_subjects"],
        ),
        (
            "limit_bytes",
            "The maximum configured storage limit (in bytes) for a JetStream stream. A value of -1 indicates no limit.",
            &["config", "max_bytes"],
        ),
        (
            "limit_messages",
            "The maximum number of messages allowed in a JetStream stream as per its configuration. A value of -1 indicates no limit.",
            &["config", "max_msgs"],
        ),
    ];
    for (name, help, path) in per_stream {
        let samples: Vec<(String, f64)> = streams
            .iter()
            .map(|(labels, stream)| (labels.clone(), number(stream, path)))
            .collect();
        family(text, &format!("stream_{name}"), help, &samples);
    }
    let per_consumer: [(&str, &str, &[&str]); 8] = [
        (
            "delivered_consumer_seq",
            "Latest sequence number of a stream consumer",
            &["delivered", "consumer_seq"],
        ),
        (
            "delivered_stream_seq",
            "Latest sequence number of a stream",
            &["delivered", "stream_seq"],
        ),
        (
            "num_ack_pending",
            "Number of pending acks from a consumer",
            &["num_ack_pending"],
        ),
        (
            "num_redelivered",
            "Number of redelivered messages from a consumer",
            &["num_redelivered"],
        ),
        (
            "num_waiting",
            "Number of inflight fetch requests from a pull consumer",
            &["num_waiting"],
        ),
        (
            "num_pending",
            "Number of pending messages from a consumer",
            &["num_pending"],
        ),
        (
            "ack_floor_stream_seq",
            "Number of ack floor stream seq from a consumer",
            &["ack_floor", "stream_seq"],
        ),
        (
            "ack_floor_consumer_seq",
            "Number of ack floor consumer seq from a consumer",
            &["ack_floor", "consumer_seq"],
        ),
    ];
    for (name, help, path) in per_consumer {
        let samples: Vec<(String, f64)> = consumers
            .iter()
            .map(|(labels, consumer)| (labels.clone(), number(consumer, path)))
            .collect();
        family(text, &format!("consumer_{name}"), help, &samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_escaping() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
