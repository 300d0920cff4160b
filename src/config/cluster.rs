//! The `cluster { ... }` block (a first reading: name, listen, routes, authorization).

use std::time::Duration;

use super::conf::{ConfError, Kind, Value};
use super::options;

/// The `cluster { ... }` block and the cluster flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `name`.
    pub name: Option<String>,
    /// Listen host.
    pub host: String,
    /// Listen port; 0 picks a random one.
    pub port: u16,
    /// `advertise`.
    pub advertise: Option<String>,
    /// `no_advertise`.
    pub no_advertise: bool,
    /// `routes`.
    pub routes: Vec<RouteUrl>,
    /// `authorization { user }`.
    pub username: Option<String>,
    /// `authorization { password }`.
    pub password: Option<String>,
    /// `authorization { timeout }`.
    pub auth_timeout: Duration,
    /// `connect_retries`.
    pub connect_retries: u32,
    /// `connect_backoff`.
    pub connect_backoff: bool,
    /// `pool_size`.
    pub pool_size: i64,
    /// `compression`.
    pub compression: String,
    /// `ping_interval`.
    pub ping_interval: Duration,
    /// `ping_max`.
    pub ping_max: u32,
    /// `write_deadline`.
    pub write_deadline: Duration,
    /// `tls`.
    pub tls: Option<super::TlsOptions>,
    /// `permissions { import }`.
    pub import: Option<crate::engine::permissions::SubjectPermission>,
    /// `permissions { export }`.
    pub export: Option<crate::engine::permissions::SubjectPermission>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            name: None,
            host: "0.0.0.0".into(),
            port: 6222,
            advertise: None,
            no_advertise: false,
            routes: Vec::new(),
            username: None,
            password: None,
            auth_timeout: Duration::from_secs(2),
            connect_retries: 0,
            connect_backoff: false,
            pool_size: 3,
            compression: "accept".into(),
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            write_deadline: Duration::from_secs(10),
            tls: None,
            import: None,
            export: None,
        }
    }
}

/// One route URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUrl {
    /// As written.
    pub url: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

/// Reads `nats-route://[user:pass@]host:port`.
pub fn route_url(text: &str) -> Result<RouteUrl, String> {
    let rest = text.split_once("://").map_or(text, |(_, r)| r);
    let rest = rest.trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("bad route URL {text:?}"))?;
    let port = port
        .parse()
        .map_err(|_| format!("bad route URL {text:?}"))?;
    let (username, password) = match auth.map(|a| a.split_once(':')) {
        Some(Some((u, p))) => (Some(u.to_string()), Some(p.to_string())),
        Some(None) => (auth.map(str::to_string), None),
        None => (None, None),
    };
    Ok(RouteUrl {
        url: text.to_string(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        username,
        password,
    })
}

/// Reads the `cluster` block.
pub fn parse_cluster(v: &Value) -> Result<ClusterOptions, ConfError> {
    let Kind::Map(fields) = &v.kind else {
        return Err(options::bad(v, "cluster"));
    };
    let mut c = ClusterOptions::default();
    for field in fields {
        let v = &field.value;
        match field.key.to_ascii_lowercase().as_str() {
            "name" => c.name = Some(options::string(v)?),
            "listen" => {
                let text = match &v.kind {
                    Kind::Int(port) => format!(":{port}"),
                    _ => options::string(v)?,
                };
                let (host, port) = text.rsplit_once(':').unwrap_or((&text, "6222"));
                if !host.is_empty() {
                    c.host = host.to_string();
                }
                c.port = match port.parse::<i64>() {
                    Ok(-1) => 0,
                    Ok(p) => u16::try_from(p).map_err(|_| options::bad(v, "a port"))?,
                    Err(_) => return Err(options::bad(v, "a port")),
                };
            }
            "routes" => {
                let Kind::Array(items) = &v.kind else {
                    return Err(options::bad(v, "routes"));
                };
                for item in items {
                    let text = options::string(item)?;
                    c.routes.push(route_url(&text).map_err(|message| ConfError {
                        pos: item.pos.clone(),
                        message,
                    })?);
                }
            }
            "authorization" => {
                if let Kind::Map(auth) = &v.kind {
                    for a in auth {
                        match a.key.to_ascii_lowercase().as_str() {
                            "user" | "username" => c.username = Some(options::string(&a.value)?),
                            "password" | "pass" => c.password = Some(options::string(&a.value)?),
                            _ => {}
                        }
                    }
                }
            }
            "no_advertise" => c.no_advertise = options::boolean(v)?,
            "advertise" | "cluster_advertise" => c.advertise = Some(options::string(v)?),
            _ => {}
        }
    }
    Ok(c)
}
