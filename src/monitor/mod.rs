//! The HTTP monitor: nats-server's monitoring endpoints (`/varz`, `/connz`, `/subsz`,
//! `/routez`, `/accountz`, `/jsz`, `/healthz`, `/` as an index) with its JSON field names, types, units
//! and query parameters, plus `/metrics`, the same counters in Prometheus text format, and a
//! live [`dashboard`] (`/dashboard`, and `/` for a browser).
//!
//! Everything here reads state the server keeps anyway (see `stats`): a request takes the
//! connection map lock once to list the connections, then reads each connection's counters
//! without blocking the publishers.

pub mod accountz;
pub mod connz;
pub mod dashboard;
pub mod http;
pub mod jsz;
pub mod leafz;
mod metrics;
mod routez;
pub mod subsz;
pub mod varz;

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::state::Shared;
use dashboard::Dashboard;
use http::{Request, Response};

/// Serves the monitor on `listener` (over TLS with `tls`), and samples the dashboard's
/// counters, until the task is dropped.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let (dashboard, sampler) = Dashboard::new();
    tokio::select! {
        _ = sampler.run(shared.clone()) => {}
        _ = accept(listener, shared, dashboard, tls) => {}
    }
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    dashboard: Arc<Dashboard>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let dashboard = dashboard.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let serve = |req: Request| {
                        let shared = shared.clone();
                        let dashboard = dashboard.clone();
                        async move { handle(&shared, &dashboard, &req).await }
                    };
                    match tls {
                        None => http::serve_connection(stream, serve).await,
                        Some(tls) => {
                            if let Some(stream) = https_handshake(stream, &tls).await {
                                http::serve_connection(stream, serve).await;
                            }
                        }
                    }
                });
            }
            Err(err) => {
                debug!("Error accepting monitor connection: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What Go's HTTPS server answers a plaintext request with, before closing.
const PLAINTEXT_ON_HTTPS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Longest a monitor client may take over its TLS handshake.
const HTTPS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The TLS handshake of an HTTPS monitor connection; a client speaking plain HTTP gets Go's
/// answer (nats-server's monitor is Go's HTTP server) and the connection is closed.
async fn https_handshake(
    mut stream: TcpStream,
    tls: &TlsAcceptor,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HTTPS_HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    match peeked {
        Ok(Ok(1)) if first[0] == 0x16 => {}
        Ok(Ok(1)) => {
            let _ = stream.write_all(PLAINTEXT_ON_HTTPS).await;
            let _ = stream.shutdown().await;
            return None;
        }
        _ => return None,
    }
    match tokio::time::timeout(HTTPS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        _ => None,
    }
}

/// An OS error as Go prints it (`address already in use`), without Rust's `(os error N)`.
pub fn os_error_text(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Answers one request.
pub async fn handle(shared: &Shared, dashboard: &Dashboard, req: &Request) -> Response {
    let base = shared
        .opts()
        .http_base_path
        .trim_end_matches('/')
        .to_string();
    let Some(path) = req.path.strip_prefix(base.as_str()) else {
        return not_found();
    };
    let name: &'static str = match path {
        "" | "/" => "/",
        "/varz" => "/varz",
        "/connz" => "/connz",
        "/subsz" | "/subscriptionsz" => "/subsz",
        "/routez" => "/routez",
        "/leafz" => "/leafz",
        "/accountz" => "/accountz",
        "/accstatz" => "/accstatz",
        "/jsz" => "/jsz",
        "/healthz" => "/healthz",
        "/metrics" => "/metrics",
        "/dashboard" => "/dashboard",
        "/dashboard/events" => "/dashboard/events",
        _ => return not_found(),
    };
    // Counted before answering, so `/varz` includes itself, as in nats-server.
    *shared
        .monitor
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(name)
        .or_default() += 1;
    match name {
        "/varz" => varz::varz(shared),
        "/connz" => connz::connz(shared, req),
        "/subsz" => subsz::subsz(shared, req),
        "/routez" => routez::routez(shared, req),
        "/leafz" => leafz::leafz(shared, req),
        "/accountz" => accountz::accountz(shared, req),
        "/accstatz" => accountz::accstatz(shared, req),
        "/jsz" => jsz::jsz(shared, req).await,
        "/healthz" => healthz(shared),
        "/metrics" => metrics::metrics(shared).await,
        "/dashboard" => dashboard.page(&base),
        "/dashboard/events" => dashboard.events(shared),
        // A browser gets the dashboard; other clients nats-server's list of endpoints.
        _ if req.wants_html() => dashboard.page(&base).with_header("Vary", "Accept"),
        _ => index(&base).with_header("Vary", "Accept"),
    }
}

/// `/healthz`: ready once listening; not ready in lame duck mode, with nats-server's status
/// and error text.
fn healthz(shared: &Shared) -> Response {
    if shared.in_lame_duck_mode() {
        let error = "failed to be ready for connections after 1ms: server";
        warn!("Healthcheck failed: {error:?}");
        let body = serde_json::json!({ "status": "error", "error": error });
        return Response::with_status(500, "application/json", body.to_string().into_bytes());
    }
    Response::json(br#"{"status":"ok"}"#.to_vec())
}

/// `/`: nats-server's page of links to its endpoints, byte for byte (its links are relative to
/// the base path; some name endpoints tern does not serve).
fn index(base: &str) -> Response {
    let html = include_str!("index.html")
        .replace("%VERSION%", crate::proto::protocol::NATS_SERVER_VERSION)
        .replace("%BASE%", base);
    Response::with_status(200, "text/html; charset=utf-8", html.into_bytes())
}

fn not_found() -> Response {
    Response::error(404, "404 page not found")
}

/// A JSON body, indented as nats-server indents its responses.
fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Response::json(body),
        Err(err) => Response::error(500, format!("Error marshaling response: {err}")),
    }
}

/// A `400` with Go's `http.Error`-less text, as nats-server writes query errors.
fn bad_request(text: String) -> Response {
    Response::with_status(400, "text/plain; charset=utf-8", text.into_bytes())
}

/// An integer query parameter, with nats-server's error text.
fn int_param(req: &Request, name: &str) -> Result<Option<i64>, Response> {
    match req.param(name) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            bad_request(format!(
                "Error decoding int for '{name}': strconv.Atoi: parsing {v:?}: invalid syntax"
            ))
        }),
    }
}

/// A boolean query parameter (Go's `strconv.ParseBool`), with nats-server's error text.
fn bool_param(req: &Request, name: &str) -> Result<bool, Response> {
    match req.param(name) {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(bad_request(format!(
            "Error decoding boolean for '{name}': strconv.ParseBool: parsing {v:?}: invalid syntax"
        ))),
    }
}

/// Go's `time.Time` in JSON: RFC 3339 in UTC with nanoseconds, trailing zeros trimmed.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::logging::civil_from_days(days as i64);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let nanos = since.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        text.push('.');
        text.push_str(frac.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// nats-server's uptime and idle format: whole seconds as `1y2d3h4m5s`, leading zero units
/// left out.
pub fn uptime(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    let years = days / 365;
    if years > 0 {
        format!(
            "{years}y{}d{}h{}m{}s",
            days % 365,
            hours % 24,
            mins % 60,
            secs % 60
        )
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, mins % 60, secs % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// Go's `time.Duration.String()`: `0s`, `850ns`, `1.5µs`, `595µs`, `1.261123ms`, `2m3.5s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let fraction = |value: u128, unit: u128, suffix: &str| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            return format!("{whole}{suffix}");
        }
        let width = unit.ilog10() as usize;
        let frac = format!("{rest:0width$}");
        format!("{whole}.{}{suffix}", frac.trim_end_matches('0'))
    };
    match nanos {
        0 => "0s".to_string(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => fraction(n, 1_000, "µs"),
        n if n < 1_000_000_000 => fraction(n, 1_000_000, "ms"),
        n => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, secs / 60 % 60);
            let s = fraction(n % 60_000_000_000, 1_000_000_000, "s");
            match (h, m) {
                (0, 0) => s,
                (0, m) => format!("{m}m{s}"),
                (h, m) => format!("{h}h{m}m{s}"),
            }
        }
    }
}

/// Seconds as Go marshals a `float64`: integral values without a fraction.
fn seconds(d: Duration) -> serde_json::Value {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 && secs < u64::MAX as f64 {
        serde_json::Value::from(secs as u64)
    } else {
        serde_json::Value::from(secs)
    }
}

/// The address clients are told to reach the monitor at (a wildcard becomes loopback).
pub fn url_host(host: &str) -> String {
    match host {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        host if host.contains(':') => format!("[{host}]"),
        host => host.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ns = Duration::from_nanos;
        assert_eq!(go_duration(ns(0)), "0s");
        assert_eq!(go_duration(ns(850)), "850ns");
        assert_eq!(go_duration(ns(1_500)), "1.5µs");
        assert_eq!(go_duration(ns(595_000)), "595µs");
        assert_eq!(go_duration(ns(1_261_123)), "1.261123ms");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_millis(123_500)), "2m3.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(Duration::from_millis(999)), "0s");
        assert_eq!(uptime(Duration::from_secs(62)), "1m2s");
        assert_eq!(uptime(Duration::from_secs(3 * 3600 + 5)), "3h0m5s");
        assert_eq!(uptime(Duration::from_secs(86_400 + 61)), "1d0h1m1s");
        assert_eq!(uptime(Duration::from_secs(366 * 86_400)), "1y1d0h0m0s");
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(1_795_972_885, 246_372_480);
        assert_eq!(rfc3339(t), "2026-11-29T17:21:25.24637248Z");
    }

    #[test]
    fn seconds_as_go_floats() {
        assert_eq!(seconds(Duration::from_secs(2)).to_string(), "2");
        assert_eq!(seconds(Duration::from_millis(500)).to_string(), "0.5");
    }
}
