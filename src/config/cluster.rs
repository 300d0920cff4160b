//! The `cluster { ... }` block and the cluster flags, read as nats-server 2.15.1 reads them
//! (`parseCluster`, `parseCompression`, `overrideCluster` and `setBaselineOptions` in its
//! `server/opts.go`), with its error texts at the positions it gives. Route URLs are read as
//! Go's `url.Parse` reads them ([`route_url`]).
//!
//! nats-server runs clustering (listens for routes, dials `routes`) only when a cluster port is
//! configured; a block without one is read and checked, then dropped with a warning
//! (`Run::options`). tern always runs one route per peer, uncompressed: `pool_size`, `accounts`
//! and `compression` are read and checked as nats-server checks them, and shown in `/varz`,
//! but change nothing (see the README).

use std::time::Duration;

use super::conf::{ConfError, Entry, Kind, Pos, Value};
use super::options::{parse_duration, seconds, unknown_field, TlsOptions};
use super::url::{host_and_port, missing_port, split_host_port, GoUrl};
use super::users::{go_type, subject_permission, tls_block};
use crate::engine::permissions::SubjectPermission;

/// The `cluster { ... }` block and the cluster flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `name` (`--cluster_name`); `None` when not configured (nats-server then makes one up).
    pub name: Option<String>,
    /// Listen host (`listen`, `host`, `--cluster`/`--cluster_listen` URL host); default "0.0.0.0".
    pub host: String,
    /// Listen port; 0 picks a random one (`-1` in the file or flag). nats-server has no default
    /// port: a `--cluster` URL without one is refused (`missing port in address`), and a block
    /// without one runs no cluster (see `listens`).
    pub port: u16,
    /// `advertise` / `cluster_advertise` (`--cluster_advertise`): `host:port` told to peers.
    pub advertise: Option<String>,
    /// `no_advertise` (`--no_advertise`): client URLs are not gossiped.
    pub no_advertise: bool,
    /// `routes` (`--routes a,b`): explicit routes to dial.
    pub routes: Vec<RouteUrl>,
    /// `authorization { user, password }`.
    pub username: Option<String>,
    pub password: Option<String>,
    /// `authorization { timeout }` (seconds or a duration); unset, nats-server's default: 2 s,
    /// or the route `tls.timeout` + 1 s with TLS.
    pub auth_timeout: Duration,
    /// `connect_retries` (`--connect_retries`): attempts for implicit routes (0 = one try).
    pub connect_retries: u32,
    /// `connect_backoff`: retry interval doubles up to 30 s.
    pub connect_backoff: bool,
    /// `pool_size` as configured, 3 when unset or 0 (tern always runs without pooling;
    /// accepted, see docs).
    pub pool_size: i64,
    /// `compression` as configured, `accept` when unset (tern never compresses routes;
    /// accepted). `true` reads as `s2_fast`, `false` as `off`.
    pub compression: String,
    /// `ping_interval`, capped at 30 s for routes (with nats-server's warning); zero when unset:
    /// the top-level `ping_interval` applies, capped the same way
    /// ([`Options::route_ping_interval`](super::Options::route_ping_interval)).
    pub ping_interval: Duration,
    /// `ping_max`; 0 when unset: the top-level `ping_max` applies
    /// ([`Options::route_ping_max`](super::Options::route_ping_max)).
    pub ping_max: u32,
    /// `write_deadline`; zero when unset: the top-level `write_deadline` applies
    /// ([`Options::route_write_deadline`](super::Options::route_write_deadline)).
    pub write_deadline: Duration,
    /// `tls { ... }` for routes (TLS-first on routes); the same TlsOptions type as clients.
    pub tls: Option<TlsOptions>,
    /// `permissions { import, export }`: subjects the peer may send us / we send the peer
    /// (`publish`/`subscribe` are nats-server's other names for them).
    pub import: Option<SubjectPermission>,
    pub export: Option<SubjectPermission>,
    /// `accounts`: accounts nats-server would pin to a route connection of their own
    /// (accepted; tern pins none).
    pub accounts: Vec<String>,
    /// `write_timeout`: `default`, `close` or `retry` (as configured; `None` when unset).
    pub write_timeout: Option<String>,
    /// Whether a cluster port was configured: nats-server listens for and dials routes only
    /// then. Always true in the options `Run::options` returns, which drops a cluster without
    /// one; false only while a file is being read.
    pub listens: bool,
}

/// One route URL: `nats-route://[user:pass@]host:port`. Any scheme nats-server accepts is
/// accepted (`nats://`, `tls://`, ...): it dials the host and port whatever the scheme says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUrl {
    /// As written.
    pub url: String,
    /// The host, without the brackets of an IPv6 address; empty when the URL has none.
    pub host: String,
    /// The port; 0 when the URL has none. nats-server accepts such a URL and fails every dial
    /// (`missing port in address`).
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// nats-server's `DEFAULT_ROUTE_POOL_SIZE`.
pub const DEFAULT_POOL_SIZE: i64 = 3;
/// nats-server's default route compression mode.
pub const DEFAULT_COMPRESSION: &str = "accept";
/// nats-server's `routeMaxPingInterval`: routes PING at least this often.
pub const ROUTE_MAX_PING_INTERVAL: Duration = Duration::from_secs(30);
/// nats-server's route auth timeout without TLS (`getDefaultAuthTimeout`).
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The compression modes nats-server accepts for routes (`validateAndNormalizeCompressionOption`),
/// in lower case.
const COMPRESSION_MODES: [&str; 15] = [
    "",
    "off",
    "disabled",
    "accept",
    "auto",
    "s2_auto",
    "fast",
    "s2_fast",
    "better",
    "s2_better",
    "best",
    "s2_best",
    "on",
    "enabled",
    "not supported",
];

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            name: None,
            host: "0.0.0.0".to_string(),
            port: 0,
            advertise: None,
            no_advertise: false,
            routes: Vec::new(),
            username: None,
            password: None,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            connect_retries: 0,
            connect_backoff: false,
            pool_size: DEFAULT_POOL_SIZE,
            compression: DEFAULT_COMPRESSION.to_string(),
            ping_interval: Duration::ZERO,
            ping_max: 0,
            write_deadline: Duration::ZERO,
            tls: None,
            import: None,
            export: None,
            accounts: Vec::new(),
            write_timeout: None,
            listens: true,
        }
    }
}

impl ClusterOptions {
    /// Reads a `cluster` entry of the configuration file.
    pub(super) fn parse(entry: &Entry, warnings: &mut Vec<String>) -> Result<Self, ConfError> {
        let v = &entry.value;
        let Kind::Map(fields) = &v.kind else {
            return Err(at(
                entry,
                format!("Expected map to define cluster, got {}", go_type(v)),
            ));
        };
        let mut c = ClusterOptions {
            listens: false,
            ..ClusterOptions::default()
        };
        let mut host = String::new();
        let mut port = None;
        let mut auth_timeout = None;
        let mut auth_permissions = None;
        let mut permissions = None;
        for field in fields {
            let v = &field.value;
            match field.key.to_ascii_lowercase().as_str() {
                "name" => {
                    let name = go_string(field)?;
                    if name.contains(' ') {
                        return Err(at(field, "cluster name cannot contain spaces".into()));
                    }
                    c.name = (!name.is_empty()).then_some(name);
                }
                "listen" => {
                    let (listen_host, listen_port) = listen(field)?;
                    host = listen_host;
                    port = Some((field, listen_port));
                }
                "port" => port = Some((field, go_int(field)?)),
                "host" | "net" => host = go_string(field)?,
                "authorization" => {
                    let auth = authorization(field, warnings)?;
                    c.username = auth.username;
                    c.password = auth.password;
                    auth_timeout = auth.timeout;
                    auth_permissions = auth.permissions;
                }
                "routes" => {
                    let Kind::Array(items) = &v.kind else {
                        return Err(conversion(field, "[]interface {}"));
                    };
                    c.routes = items.iter().map(route_item).collect::<Result<_, _>>()?;
                }
                "tls" => {
                    let mut tls = tls_block(v, warnings)?;
                    let pos = &field.pos;
                    tls.defined_at =
                        Some(format!("{}:{}:{}", pos.file.display(), pos.line, pos.col));
                    c.tls = Some(tls);
                }
                "cluster_advertise" | "advertise" => c.advertise = Some(go_string(field)?),
                "no_advertise" => c.no_advertise = go_bool(field)?,
                "connect_retries" => c.connect_retries = clamp_u32(go_int(field)?),
                "connect_backoff" => c.connect_backoff = go_bool(field)?,
                "pool_size" => {
                    // nats-server's `setBaselineOptions`: 0 is the default.
                    c.pool_size = match go_int(field)? {
                        0 => DEFAULT_POOL_SIZE,
                        n => n,
                    }
                }
                "accounts" => {
                    c.accounts = match &v.kind {
                        Kind::Array(items) => items
                            .iter()
                            .map(|item| match &item.kind {
                                Kind::String(s) => Ok(s.clone()),
                                _ => Err(ConfError {
                                    pos: item.nats_pos(),
                                    message: format!(
                                        "interface conversion: interface {{}} is {}, not string",
                                        go_type(item)
                                    ),
                                }),
                            })
                            .collect::<Result<_, _>>()?,
                        _ => vec![go_string(field)?],
                    }
                }
                "compression" => c.compression = compression_mode(field)?,
                "ping_interval" => {
                    let interval = go_duration(field, "ping_interval", warnings)?;
                    c.ping_interval = if interval > ROUTE_MAX_PING_INTERVAL {
                        warnings.push(warning(
                            &field.pos,
                            "Cluster 'ping_interval' will reset to 30s which is the max for routes",
                        ));
                        ROUTE_MAX_PING_INTERVAL
                    } else {
                        interval
                    };
                }
                "ping_max" => c.ping_max = clamp_u32(go_int(field)?),
                "write_deadline" => {
                    c.write_deadline = go_duration(field, "write_deadline", warnings)?
                }
                "write_timeout" => {
                    let policy = go_string(field)?;
                    if !["default", "close", "retry"]
                        .contains(&policy.to_ascii_lowercase().as_str())
                    {
                        return Err(at(
                            field,
                            "write_timeout must be 'default', 'close' or 'retry'".into(),
                        ));
                    }
                    c.write_timeout = Some(policy.to_ascii_lowercase());
                }
                "permissions" => permissions = Some(cluster_permissions(field)?),
                _ if field.referenced => {}
                _ => return Err(unknown_field(field)),
            }
        }
        // The block's own `permissions` win over the deprecated ones in `authorization`.
        if let Some((import, export)) = permissions.or(auth_permissions) {
            c.import = import;
            c.export = export;
        }
        if let Some((field, port)) = port {
            match cluster_port(port) {
                Ok(Some(port)) => {
                    c.port = port;
                    c.listens = true;
                }
                Ok(None) => {}
                Err(message) => return Err(at(field, message)),
            }
        }
        if !host.is_empty() {
            c.host = host;
        }
        c.auth_timeout = auth_timeout.unwrap_or_else(|| default_auth_timeout(c.tls.as_ref()));
        Ok(c)
    }

    /// Applies `--cluster <url>` (also `--cluster_listen`): the URL's host and port, and its
    /// user and password, which replace the file's `authorization` user and password even when
    /// it has none (nats-server's `overrideCluster`). The errors are Go's.
    pub fn apply_listen_url(&mut self, text: &str) -> Result<(), String> {
        // Go's url.Parse refuses the port -1, so nats-server reads it before parsing.
        let (text_for_url, random) = match text.strip_suffix(":-1") {
            Some(rest) => (format!("{rest}:0"), true),
            None => (text.to_string(), false),
        };
        let url = GoUrl::parse(&text_for_url).map_err(|e| format!("parse {text:?}: {e}"))?;
        let (host, port) = split_host_port(&url.authority_host)
            .ok_or_else(|| missing_port(&url.authority_host))?;
        let port: i64 = match random {
            true => -1,
            false => port
                .parse()
                .map_err(|_| format!("expected integer: {port:?}"))?,
        };
        self.host = if host.is_empty() {
            "0.0.0.0".to_string()
        } else {
            host
        };
        match cluster_port(port)? {
            Some(port) => {
                self.port = port;
                self.listens = true;
            }
            None => self.listens = false,
        }
        match url.user {
            Some((user, Some(password))) => {
                self.username = Some(user);
                self.password = Some(password);
            }
            Some((_, None)) => return Err("expected cluster password to be set".into()),
            None => {
                self.username = None;
                self.password = None;
            }
        }
        Ok(())
    }
}

/// The route auth timeout when `authorization { timeout }` is unset (`getDefaultAuthTimeout`).
pub fn default_auth_timeout(tls: Option<&TlsOptions>) -> Duration {
    match tls {
        Some(tls) => tls.timeout + Duration::from_secs(1),
        None => DEFAULT_AUTH_TIMEOUT,
    }
}

/// Reads one route URL as nats-server does: trimmed, then Go's `url.Parse`, which accepts far
/// more than `nats-route://host:port` (any scheme, no port, even a bare word); the error is
/// nats-server's configuration error.
pub fn route_url(text: &str) -> Result<RouteUrl, String> {
    let trimmed = text.trim();
    let bad = || format!("error parsing route url [{trimmed:?}]");
    let url = GoUrl::parse(trimmed).map_err(|_| bad())?;
    let (host, port) = host_and_port(&url.authority_host);
    // Go accepts any digits as a port; a dial to one past 65535 fails. tern refuses it here.
    let port = match port {
        "" => 0,
        digits => digits.parse::<u16>().map_err(|_| bad())?,
    };
    let (username, password) = match url.user {
        Some((user, password)) => (Some(user), password),
        None => (None, None),
    };
    Ok(RouteUrl {
        url: trimmed.to_string(),
        host: host.to_string(),
        port,
        username,
        password,
    })
}

/// `--routes a,b`: comma-separated route URLs (nats-server's `RoutesFromStr`). nats-server
/// crashes on one Go cannot parse; tern refuses it with the configuration file's error.
pub fn routes_from_str(text: &str) -> Result<Vec<RouteUrl>, String> {
    text.split(',').map(route_url).collect()
}

/// What nats-server refuses about the cluster only when it starts (not with `-t`).
pub fn check_at_start(cluster: &ClusterOptions) -> Result<(), String> {
    check_compression(&cluster.compression)?;
    if cluster.name.as_deref().is_some_and(|n| n.contains(' ')) {
        return Err("cluster name cannot contain spaces".into());
    }
    Ok(())
}

/// A compression mode nats-server knows (`validateAndNormalizeCompressionOption`).
pub fn check_compression(mode: &str) -> Result<(), String> {
    match COMPRESSION_MODES.contains(&mode.to_ascii_lowercase().as_str()) {
        true => Ok(()),
        false => Err(format!("unsupported compression mode {mode:?}")),
    }
}

/// A cluster port as nats-server takes it: -1 for a random one (0 here), 0 for none.
fn cluster_port(port: i64) -> Result<Option<u16>, String> {
    match port {
        -1 => Ok(Some(0)),
        0 => Ok(None),
        1..=65535 => Ok(Some(port as u16)),
        // nats-server takes any number and fails when it listens, with these words.
        _ => Err(format!(
            "Error listening on router port: {port} - listen tcp: address {port}: invalid port"
        )),
    }
}

/// The `authorization` block of a cluster: one user, no token.
struct ClusterAuth {
    username: Option<String>,
    password: Option<String>,
    timeout: Option<Duration>,
    permissions: Option<Permissions>,
}

type Permissions = (Option<SubjectPermission>, Option<SubjectPermission>);

fn authorization(entry: &Entry, warnings: &mut Vec<String>) -> Result<ClusterAuth, ConfError> {
    let Kind::Map(fields) = &entry.value.kind else {
        return Err(conversion(entry, "map[string]interface {}"));
    };
    let mut auth = ClusterAuth {
        username: None,
        password: None,
        timeout: None,
        permissions: None,
    };
    let mut token = false;
    let mut users = false;
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "user" | "username" => auth.username = Some(go_string(field)?),
            "password" | "pass" => auth.password = Some(go_string(field)?),
            "token" => token = true,
            "users" => users = true,
            "timeout" => auth.timeout = Some(auth_timeout(field)?),
            "permissions" | "default_permissions" | "default_permission" => {
                auth.permissions = Some(cluster_permissions(field)?);
            }
            _ if field.referenced => {}
            _ => return Err(unknown_field(field)),
        }
    }
    if users {
        return Err(at(
            entry,
            "Cluster authorization does not allow multiple users".into(),
        ));
    }
    if token {
        return Err(at(
            entry,
            "Cluster authorization does not support tokens".into(),
        ));
    }
    if auth.permissions.is_some() {
        warnings.push(warning(
            &entry.pos,
            &format!(
                "invalid use of field {:?}: setting \"permissions\" within cluster \
                 authorization block is deprecated",
                entry.key
            ),
        ));
    }
    Ok(auth)
}

/// `authorization { timeout }`: seconds, or a Go duration (`parseAuthorization`).
pub(super) fn auth_timeout(entry: &Entry) -> Result<Duration, ConfError> {
    match &entry.value.kind {
        Kind::String(text) => parse_duration(text).ok_or_else(|| {
            at(
                entry,
                format!(
                    "error parsing authorization config, 'timeout' time: invalid duration {text:?}"
                ),
            )
        }),
        _ => seconds(&entry.value),
    }
}

/// `permissions { import, export }` (`publish`/`pub` and `subscribe`/`sub` are the same).
fn cluster_permissions(entry: &Entry) -> Result<Permissions, ConfError> {
    let Kind::Map(fields) = &entry.value.kind else {
        return Err(at(
            entry,
            format!(
                "Expected permissions to be a map/struct, got {}",
                go_text(&entry.value)
            ),
        ));
    };
    let (mut import, mut export) = (None, None);
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "import" | "publish" | "pub" => import = Some(subjects(field)?),
            "export" | "subscribe" | "sub" => export = Some(subjects(field)?),
            "allow_responses" | "publish_allow_responses" => {
                return Err(at(
                    entry,
                    "Cluster permissions do not support dynamic responses".into(),
                ))
            }
            _ if field.referenced => {}
            _ => {
                return Err(at(
                    field,
                    format!("Unknown field {:?} parsing permissions", field.key),
                ))
            }
        }
    }
    Ok((import, export))
}

/// One direction of `permissions`: a subject, a list, or `{ allow, deny }`.
fn subjects(entry: &Entry) -> Result<SubjectPermission, ConfError> {
    let v = &entry.value;
    let is_text = |v: &Value| matches!(v.kind, Kind::String(_));
    let fits = match &v.kind {
        Kind::String(_) | Kind::Map(_) => true,
        Kind::Array(items) => items.iter().all(is_text),
        _ => false,
    };
    if !fits {
        return Err(at(
            entry,
            format!(
                "Expected subject permissions to be a subject, or array of subjects, got {}",
                go_type(v)
            ),
        ));
    }
    subject_permission(v)
}

/// A value as Go's `%+v` prints a scalar.
fn go_text(v: &Value) -> String {
    match &v.kind {
        Kind::Bool(b) => b.to_string(),
        Kind::Int(n) => n.to_string(),
        Kind::Float(f) => f.to_string(),
        Kind::String(s) => s.clone(),
        Kind::Map(_) | Kind::Array(_) => go_type(v).to_string(),
    }
}

/// `compression`: a mode, a boolean, or `{ mode, rtt_thresholds }` (`parseCompression`). The
/// mode is checked when the server starts, as nats-server checks it.
pub(super) fn compression_mode(entry: &Entry) -> Result<String, ConfError> {
    match &entry.value.kind {
        Kind::String(mode) => Ok(mode.clone()),
        Kind::Bool(true) => Ok("s2_fast".into()),
        Kind::Bool(false) => Ok("off".into()),
        Kind::Map(fields) => {
            let mut mode = DEFAULT_COMPRESSION.to_string();
            for field in fields {
                match field.key.to_ascii_lowercase().as_str() {
                    "mode" => mode = go_string(field)?,
                    "rtt_thresholds" | "thresholds" | "rtts" | "rtt" => {
                        let Kind::Array(items) = &field.value.kind else {
                            return Err(conversion(field, "[]interface {}"));
                        };
                        for item in items {
                            let Kind::String(text) = &item.kind else {
                                return Err(ConfError {
                                    pos: item.nats_pos(),
                                    message: format!(
                                        "interface conversion: interface {{}} is {}, not string",
                                        go_type(item)
                                    ),
                                });
                            };
                            if parse_duration(text).is_none() {
                                return Err(at(field, format!("time: invalid duration {text:?}")));
                            }
                        }
                    }
                    _ if field.referenced => {}
                    _ => return Err(at(field, format!("unknown field {:?}", field.key))),
                }
            }
            Ok(mode)
        }
        _ => Err(at(
            entry,
            format!(
                "field {:?} should be a boolean or a structure, got {}",
                entry.key,
                go_type(&entry.value)
            ),
        )),
    }
}

/// `listen`: a port, or `host:port` as Go's `net.SplitHostPort` splits it (`parseListen`).
pub(super) fn listen(entry: &Entry) -> Result<(String, i64), ConfError> {
    let v = &entry.value;
    match &v.kind {
        Kind::Int(port) => Ok((String::new(), *port)),
        Kind::String(text) => {
            let (host, port) = split_host_port(text)
                .ok_or_else(|| at(entry, format!("could not parse address string {text:?}")))?;
            let port = port
                .parse::<i64>()
                .map_err(|_| at(entry, format!("could not parse port {port:?}")))?;
            Ok((host, port))
        }
        _ => Err(at(
            entry,
            format!("expected port or host:port, got {}", go_type(v)),
        )),
    }
}

/// One item of `routes`.
fn route_item(item: &Value) -> Result<RouteUrl, ConfError> {
    match &item.kind {
        Kind::String(text) => route_url(text).map_err(|message| ConfError {
            pos: item.nats_pos(),
            message,
        }),
        _ => Err(ConfError {
            pos: item.nats_pos(),
            message: format!(
                "interface conversion: interface {{}} is {}, not string",
                go_type(item)
            ),
        }),
    }
}

/// A duration option as nats-server's `parseDuration` reads it: a Go duration, or (with its
/// warning) a number of seconds.
pub(super) fn go_duration(
    entry: &Entry,
    name: &str,
    warnings: &mut Vec<String>,
) -> Result<Duration, ConfError> {
    match &entry.value.kind {
        Kind::String(text) => parse_duration(text).ok_or_else(|| {
            at(
                entry,
                format!("error parsing {name}: time: invalid duration {text:?}"),
            )
        }),
        Kind::Int(n) => {
            warnings.push(warning(
                &entry.pos,
                &format!("invalid use of field {name:?}: {name} should be converted to a duration"),
            ));
            Ok(Duration::from_secs((*n).max(0) as u64))
        }
        _ => Err(conversion(entry, "int64")),
    }
}

/// A string field, as nats-server's `mv.(string)` takes it (a number is not text here).
pub(super) fn go_string(entry: &Entry) -> Result<String, ConfError> {
    match &entry.value.kind {
        Kind::String(s) => Ok(s.clone()),
        _ => Err(conversion(entry, "string")),
    }
}

pub(super) fn go_int(entry: &Entry) -> Result<i64, ConfError> {
    match &entry.value.kind {
        Kind::Int(n) => Ok(*n),
        _ => Err(conversion(entry, "int64")),
    }
}

pub(super) fn go_bool(entry: &Entry) -> Result<bool, ConfError> {
    match &entry.value.kind {
        Kind::Bool(b) => Ok(*b),
        _ => Err(conversion(entry, "bool")),
    }
}

fn clamp_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The error Go's failed type assertion gives, which nats-server reports at the key.
pub(super) fn conversion(entry: &Entry, want: &str) -> ConfError {
    at(
        entry,
        format!(
            "interface conversion: interface {{}} is {}, not {want}",
            go_type(&entry.value)
        ),
    )
}

pub(super) fn at(entry: &Entry, message: String) -> ConfError {
    ConfError {
        pos: entry.pos.clone(),
        message,
    }
}

fn warning(pos: &Pos, message: &str) -> String {
    format!("{}:{}:{}: {message}", pos.file.display(), pos.line, pos.col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{error, options};

    fn cluster(text: &str) -> ClusterOptions {
        let (o, _) = options(text).unwrap();
        o.cluster.expect("a cluster")
    }

    fn route(url: &str, host: &str, port: u16, user: Option<&str>, pass: Option<&str>) -> RouteUrl {
        RouteUrl {
            url: url.into(),
            host: host.into(),
            port,
            username: user.map(Into::into),
            password: pass.map(Into::into),
        }
    }

    #[test]
    fn a_full_block() {
        let (o, warnings) = options(
            r#"cluster {
  name: c1
  listen: "127.0.0.1:6333"
  advertise: "ad.example:6333"
  no_advertise: true
  routes: [
    nats-route://u:p%40ss@10.0.0.1:6222
    "nats://[::1]:6223"
  ]
  authorization { user: ru, password: rp, timeout: 0.5 }
  connect_retries: 5
  connect_backoff: true
  pool_size: -1
  compression: off
  ping_interval: "10s"
  ping_max: 4
  write_deadline: "3s"
  write_timeout: close
  accounts: [a, b]
  permissions { import: "foo.>", export: { allow: ["bar"], deny: "bar.secret" } }
}"#,
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let c = o.cluster.unwrap();
        assert_eq!(c.name.as_deref(), Some("c1"));
        assert_eq!(
            (c.host.as_str(), c.port, c.listens),
            ("127.0.0.1", 6333, true)
        );
        assert_eq!(c.advertise.as_deref(), Some("ad.example:6333"));
        assert!(c.no_advertise && c.connect_backoff);
        assert_eq!(
            c.routes,
            [
                route(
                    "nats-route://u:p%40ss@10.0.0.1:6222",
                    "10.0.0.1",
                    6222,
                    Some("u"),
                    Some("p@ss")
                ),
                route("nats://[::1]:6223", "::1", 6223, None, None),
            ]
        );
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("ru"), Some("rp"))
        );
        assert_eq!(c.auth_timeout, Duration::from_millis(500));
        assert_eq!((c.connect_retries, c.pool_size), (5, -1));
        assert_eq!(c.compression, "off");
        assert_eq!((c.ping_interval, c.ping_max), (Duration::from_secs(10), 4));
        assert_eq!(c.write_deadline, Duration::from_secs(3));
        assert_eq!(c.write_timeout.as_deref(), Some("close"));
        assert_eq!(c.accounts, ["a", "b"]);
        let import = c.import.unwrap();
        assert_eq!(import.allow.unwrap()[0].subject, "foo.>");
        let export = c.export.unwrap();
        assert_eq!(export.deny[0].subject, "bar.secret");
    }

    #[test]
    fn defaults() {
        let c = cluster("cluster { port: -1 }");
        assert_eq!(
            c,
            ClusterOptions {
                port: 0,
                ..ClusterOptions::default()
            }
        );
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.auth_timeout, Duration::from_secs(2));
        assert_eq!((c.pool_size, c.compression.as_str()), (3, "accept"));
        // 0 is nats-server's "unset" for the pool size.
        assert_eq!(cluster("cluster { port: -1, pool_size: 0 }").pool_size, 3);
        // With TLS, the auth timeout follows the TLS timeout, as nats-server's /varz shows.
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
        let c = cluster(&format!(
            "cluster {{ port: -1, tls {{ cert_file: {fixtures}/ec.pem, key_file: \
             {fixtures}/ec-sec1.key, timeout: 3 }} }}"
        ));
        assert_eq!(c.auth_timeout, Duration::from_secs(4));
        assert_eq!(c.tls.unwrap().defined_at.as_deref(), Some("test.conf:1:20"));
    }

    #[test]
    fn listen_forms() {
        let listen = |value: &str| {
            let c = cluster(&format!("cluster {{\n  listen: {value}\n}}"));
            (c.host, c.port, c.listens)
        };
        let any = "0.0.0.0".to_string();
        assert_eq!(
            listen("\"127.0.0.1:6222\""),
            ("127.0.0.1".into(), 6222, true)
        );
        assert_eq!(listen("127.0.0.1:-1"), ("127.0.0.1".into(), 0, true));
        assert_eq!(listen("\":6222\""), (any.clone(), 6222, true));
        assert_eq!(listen("\"[::1]:6222\""), ("::1".into(), 6222, true));
        assert_eq!(listen("6222"), (any.clone(), 6222, true));
        assert_eq!(listen("-1"), (any.clone(), 0, true));
        // Port 0 (or none) runs no cluster.
        assert!(!listen("\"127.0.0.1:0\"").2);
        let c = cluster("cluster { host: 127.0.0.2, port: 7000 }");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.2", 7000));
        assert!(!cluster("cluster { name: c1 }").listens);
        // nats-server 2.15.1's words.
        let err = |value: &str| error(&format!("cluster {{\n  listen: {value}\n}}"));
        assert_eq!(
            err("\"nats://127.0.0.1:6222\""),
            "test.conf:2:3: could not parse address string \"nats://127.0.0.1:6222\""
        );
        assert_eq!(
            err("\"127.0.0.1\""),
            "test.conf:2:3: could not parse address string \"127.0.0.1\""
        );
        assert_eq!(
            err("\"::1\""),
            "test.conf:2:3: could not parse address string \"::1\""
        );
        assert_eq!(
            err("\"127.0.0.1:x\""),
            "test.conf:2:3: could not parse port \"x\""
        );
        assert_eq!(
            err("true"),
            "test.conf:2:3: expected port or host:port, got bool"
        );
        // nats-server reads these and fails when it listens, with these words.
        assert_eq!(
            error("cluster {\n  port: 70000\n}"),
            "test.conf:2:3: Error listening on router port: 70000 - listen tcp: address 70000: \
             invalid port"
        );
        assert!(error("cluster {\n  port: -2\n}").contains("router port: -2"));
    }

    #[test]
    fn route_urls_as_go_reads_them() {
        assert_eq!(
            route_url(" nats-route://h:4 ").unwrap(),
            route("nats-route://h:4", "h", 4, None, None)
        );
        assert_eq!(
            route_url("tls://u@h:4").unwrap(),
            route("tls://u@h:4", "h", 4, Some("u"), None)
        );
        // Accepted by nats-server, whose every dial then fails: no port.
        for text in ["nats-route://127.0.0.1", "foo", "", "h:4"] {
            assert_eq!(route_url(text).unwrap().port, 0, "{text}");
        }
        assert_eq!(
            route_url("nats-route://127.0.0.1/").unwrap(),
            route("nats-route://127.0.0.1/", "127.0.0.1", 0, None, None)
        );
        assert_eq!(route_url("nats://[::1]").unwrap().host, "::1");
        for text in [
            "://bad",
            "nats-route://a b:4",
            "127.0.0.1:4",
            "nats://h:x",
            "nats://[::1",
            "nats://h:4/%zz",
            "nats://u:p^@h:4",
            "nats://h:4\x01",
        ] {
            assert_eq!(
                route_url(text).unwrap_err(),
                format!("error parsing route url [{:?}]", text.trim()),
                "{text}"
            );
        }
        assert_eq!(
            routes_from_str("nats://a:1, nats-route://u:p@b:2").unwrap(),
            [
                route("nats://a:1", "a", 1, None, None),
                route("nats-route://u:p@b:2", "b", 2, Some("u"), Some("p"))
            ]
        );
    }

    #[test]
    fn errors_as_nats_server_gives_them() {
        // Each text and position as nats-server 2.15.1 printed them for the same file.
        let cases = [
            ("cluster {\n  name: \"my cluster\"\n}", "2:3: cluster name cannot contain spaces"),
            ("cluster {\n  colour: red\n}", "2:3: unknown field \"colour\""),
            (
                "cluster {\n  routes: [\"nats-route://a b:4\"]\n}",
                "2:13: error parsing route url [\"nats-route://a b:4\"]",
            ),
            (
                "cluster {\n  routes: [\"nats-route://h:4\", \"://bad\"]\n}",
                "2:33: error parsing route url [\"://bad\"]",
            ),
            ("cluster { routes: [\"://x\"] }", "1:20: error parsing route url [\"://x\"]"),
            ("cluster { routes: [://x] }", "1:19: error parsing route url [\"://x\"]"),
            (
                "cluster {\n routes: [\n   ://x\n ]\n}",
                "3:4: error parsing route url [\"://x\"]",
            ),
            (
                "cluster {\n  routes: \"nats-route://h:4\"\n}",
                "2:3: interface conversion: interface {} is string, not []interface {}",
            ),
            (
                "cluster {\n  port: \"x\"\n}",
                "2:3: interface conversion: interface {} is string, not int64",
            ),
            ("cluster: 5", "1:0: Expected map to define cluster, got int64"),
            (
                "cluster {\n  name: 5\n}",
                "2:3: interface conversion: interface {} is int64, not string",
            ),
            (
                "cluster {\n  no_advertise: \"yes\"\n}",
                "2:3: interface conversion: interface {} is string, not bool",
            ),
            (
                "cluster {\n  connect_backoff: 1\n}",
                "2:3: interface conversion: interface {} is int64, not bool",
            ),
            (
                "cluster {\n  pool_size: \"3\"\n}",
                "2:3: interface conversion: interface {} is string, not int64",
            ),
            (
                "cluster {\n  compression: {colour: red}\n}",
                "2:17: unknown field \"colour\"",
            ),
            (
                "cluster {\n  compression: 5\n}",
                "2:3: field \"compression\" should be a boolean or a structure, got int64",
            ),
            (
                "cluster {\n  port: -1\n  compression: {mode: s2_auto, rtt_thresholds: [x]}\n}",
                "3:32: time: invalid duration \"x\"",
            ),
            (
                "cluster {\n  ping_interval: \"x\"\n}",
                "2:3: error parsing ping_interval: time: invalid duration \"x\"",
            ),
            (
                "cluster {\n  write_timeout: bogus\n}",
                "2:3: write_timeout must be 'default', 'close' or 'retry'",
            ),
            (
                "cluster {\n  port: -1\n  authorization { token: x }\n}",
                "3:3: Cluster authorization does not support tokens",
            ),
            (
                "cluster {\n  port: -1\n  authorization { users: [{user: a, password: b}] }\n}",
                "3:3: Cluster authorization does not allow multiple users",
            ),
            (
                "cluster {\n  port: -1\n  authorization { user: a, colour: red }\n}",
                "3:28: unknown field \"colour\"",
            ),
            (
                "cluster {\n  port: -1\n  authorization: 5\n}",
                "3:3: interface conversion: interface {} is int64, not map[string]interface {}",
            ),
            (
                "cluster {\n  port: -1\n  permissions { import: \"foo\", allow_responses: true }\n}",
                "3:3: Cluster permissions do not support dynamic responses",
            ),
            (
                "cluster {\n  port: -1\n  permissions { colour: red }\n}",
                "3:17: Unknown field \"colour\" parsing permissions",
            ),
            (
                "cluster {\n  port: -1\n  authorization { timeout: \"x\" }\n}",
                "3:19: error parsing authorization config, 'timeout' time: invalid duration \"x\"",
            ),
            // nats-server gives these two without a position.
            (
                "cluster {\n  port: -1\n  permissions: foo\n}",
                "3:3: Expected permissions to be a map/struct, got foo",
            ),
            (
                "cluster {\n  port: -1\n  permissions { import: 5 }\n}",
                "3:17: Expected subject permissions to be a subject, or array of subjects, got \
                 int64",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(error(text), format!("test.conf:{want}"), "{text}");
        }
    }

    #[test]
    fn warnings_as_nats_server_gives_them() {
        let warned = |field: &str| {
            let (o, warnings) = options(&format!("cluster {{\n  port: -1\n  {field}\n}}")).unwrap();
            (o.cluster.unwrap(), warnings)
        };
        let (c, w) = warned("ping_interval: \"1m\"");
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(
            w,
            ["test.conf:3:3: Cluster 'ping_interval' will reset to 30s which is the max for routes"]
        );
        let (c, w) = warned("write_deadline: 3");
        assert_eq!(c.write_deadline, Duration::from_secs(3));
        assert_eq!(
            w,
            [
                "test.conf:3:3: invalid use of field \"write_deadline\": write_deadline should be \
              converted to a duration"
            ]
        );
        let (c, w) = warned("authorization { user: a, permissions: { import: \"foo\" } }");
        assert!(c.import.is_some() && c.export.is_none());
        assert_eq!(
            w,
            [
                "test.conf:3:3: invalid use of field \"authorization\": setting \"permissions\" \
              within cluster authorization block is deprecated"
            ]
        );
        // The block's own permissions win.
        let (c, _) = warned(
            "permissions { export: bar }\n  authorization { permissions: { import: \"foo\" } }",
        );
        assert!(c.import.is_none() && c.export.is_some());
    }

    #[test]
    fn accepted_as_nats_server_accepts_them() {
        for field in [
            "name: \"\"",
            "cluster_advertise: \"x:1\"",
            "no_advertise: yes",
            "connect_retries: -3",
            "pool_size: 1000000",
            "accounts: a",
            "compression: true",
            "compression: bogus",
            "compression: {mode: s2_auto, rtt_thresholds: [\"10ms\", \"50ms\"]}",
            "ping_max: -1",
            "write_timeout: default",
            "permissions { publish: \"foo\" }",
        ] {
            assert!(
                options(&format!("cluster {{\n  port: -1\n  {field}\n}}")).is_ok(),
                "{field}"
            );
        }
        assert_eq!(cluster("cluster { port: -1, name: \"\" }").name, None);
        assert_eq!(
            cluster("cluster { port: -1, compression: true }").compression,
            "s2_fast"
        );
        assert_eq!(
            cluster("cluster { port: -1, compression: {mode: best} }").compression,
            "best"
        );
        // Checked when the server starts, as nats-server checks it.
        let bogus = cluster("cluster { port: -1, compression: bogus }");
        assert_eq!(
            check_at_start(&bogus).unwrap_err(),
            "unsupported compression mode \"bogus\""
        );
        for mode in [
            "off",
            "disabled",
            "S2_Fast",
            "auto",
            "enabled",
            "not supported",
            "",
        ] {
            let c = ClusterOptions {
                compression: mode.into(),
                ..ClusterOptions::default()
            };
            assert!(check_at_start(&c).is_ok(), "{mode}");
        }
        for mode in ["s2_uncompressed", "disable", "none"] {
            let c = ClusterOptions {
                compression: mode.into(),
                ..ClusterOptions::default()
            };
            assert!(check_at_start(&c).is_err(), "{mode}");
        }
    }

    #[test]
    fn listen_urls_of_the_flags() {
        let apply = |url: &str| {
            let mut c = ClusterOptions {
                username: Some("file".into()),
                password: Some("file".into()),
                ..ClusterOptions::default()
            };
            c.apply_listen_url(url).map(|()| c)
        };
        let c = apply("nats://127.0.0.1:6222").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 6222));
        // No user in the URL clears the file's, as nats-server does.
        assert_eq!((c.username, c.password), (None, None));
        let c = apply("nats://u:p@127.0.0.1:-1").unwrap();
        assert_eq!((c.port, c.username.as_deref()), (0, Some("u")));
        assert_eq!(apply("nats://:6222").unwrap().host, "0.0.0.0");
        assert_eq!(apply("nats://[::1]:6222").unwrap().host, "::1");
        // nats-server 2.15.1's words (Go's).
        let err = |url: &str| apply(url).unwrap_err();
        assert_eq!(
            err("nats://127.0.0.1"),
            "address 127.0.0.1: missing port in address"
        );
        assert_eq!(
            err("127.0.0.1:6222"),
            "parse \"127.0.0.1:6222\": first path segment in URL cannot contain colon"
        );
        assert_eq!(err("0"), "missing port in address");
        assert_eq!(err(":bad"), "parse \":bad\": missing protocol scheme");
        assert_eq!(
            err("nats://127.0.0.1:abc"),
            "parse \"nats://127.0.0.1:abc\": invalid port \":abc\" after host"
        );
        assert_eq!(
            err("nats://u@127.0.0.1:6222"),
            "expected cluster password to be set"
        );
    }
}
