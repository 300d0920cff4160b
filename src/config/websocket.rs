//! The `websocket { ... }` block, read as nats-server 2.15.1 reads it (`parseWebsocket` in its
//! `server/opts.go`), and what it refuses only when it starts (`validateWebsocketOptions`).

use std::time::Duration;

use super::cluster::{
    at, auth_timeout, conversion, go_bool, go_duration, go_int, go_string, listen,
};
use super::conf::{ConfError, Entry, Kind};
use super::options::{unknown_field, TlsOptions};
use super::users::{go_type, tls_block};

/// The WebSocket listener for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketOptions {
    /// Listen host (`host`, `listen`); default "0.0.0.0".
    pub host: String,
    /// Listen port; 0 picks a random one (`-1` in the file).
    pub port: u16,
    /// `advertise`: the `host:port` routes gossip as this server's WebSocket URL
    /// (`ws_connect_urls`), told to WebSocket clients in `connect_urls`.
    pub advertise: Option<String>,
    /// `no_tls`: plain `ws://` (nats-server refuses a block with neither this nor `tls`).
    pub no_tls: bool,
    /// `tls { ... }`: `wss://`, with the client port's TLS options.
    pub tls: Option<TlsOptions>,
    /// `compression`: permessage-deflate when the client offers it.
    pub compression: bool,
    /// `same_origin`: an `Origin` header must match the request's `Host`.
    pub same_origin: bool,
    /// `allowed_origins`: the only origins (scheme, host and port) accepted, when not empty.
    pub allowed_origins: Vec<String>,
    /// `handshake_timeout`: longest the HTTP upgrade (and TLS handshake) may take; zero for no
    /// limit beyond the TLS timeout.
    pub handshake_timeout: Duration,
    /// `no_auth_user`: the user a WebSocket client without credentials is.
    pub no_auth_user: Option<String>,
    /// `authorization { user, password }`: WebSocket clients log in as this user instead.
    pub username: Option<String>,
    pub password: Option<String>,
    /// `authorization { token }`: WebSocket clients present this token instead.
    pub token: Option<String>,
    /// `authorization { timeout }`: the WebSocket clients' authorization timeout.
    pub auth_timeout: Option<Duration>,
    /// `jwt_cookie` (operator mode only, as in nats-server), `user_cookie`,
    /// `pass_cookie`, `token_cookie`: cookies of the upgrade request that stand in for
    /// credentials CONNECT leaves out.
    pub jwt_cookie: Option<String>,
    pub user_cookie: Option<String>,
    pub pass_cookie: Option<String>,
    pub token_cookie: Option<String>,
    /// `headers { name: value }`: added to the upgrade's answer.
    pub headers: Vec<(String, String)>,
    /// `ping_interval`: the WebSocket clients' PING interval; zero for the server's.
    pub ping_interval: Duration,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        WebSocketOptions {
            host: "0.0.0.0".into(),
            port: 0,
            advertise: None,
            no_tls: false,
            tls: None,
            compression: false,
            same_origin: false,
            allowed_origins: Vec::new(),
            handshake_timeout: Duration::ZERO,
            no_auth_user: None,
            username: None,
            password: None,
            token: None,
            auth_timeout: None,
            jwt_cookie: None,
            user_cookie: None,
            pass_cookie: None,
            token_cookie: None,
            headers: Vec::new(),
            ping_interval: Duration::ZERO,
        }
    }
}

impl WebSocketOptions {
    /// Reads a `websocket` entry; `None` when it configures no port (nats-server then runs no
    /// WebSocket listener and checks nothing else).
    pub(super) fn parse(
        entry: &Entry,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Self>, ConfError> {
        let Kind::Map(fields) = &entry.value.kind else {
            return Err(at(
                entry,
                format!(
                    "Expected websocket to be a map, got {}",
                    go_type(&entry.value)
                ),
            ));
        };
        let mut w = WebSocketOptions::default();
        let mut port = 0;
        let mut host = String::new();
        for field in fields {
            let v = &field.value;
            match field.key.to_ascii_lowercase().as_str() {
                "listen" => (host, port) = listen(field)?,
                "port" => port = go_int(field)?,
                "host" | "net" => host = go_string(field)?,
                "advertise" => w.advertise = Some(go_string(field)?),
                "no_tls" => w.no_tls = go_bool(field)?,
                "tls" => {
                    let mut tls = tls_block(v, warnings)?;
                    let pos = &field.pos;
                    tls.defined_at =
                        Some(format!("{}:{}:{}", pos.file.display(), pos.line, pos.col));
                    w.tls = Some(tls);
                }
                "compression" => w.compression = go_bool(field)?,
                "same_origin" => w.same_origin = go_bool(field)?,
                "allowed_origins" | "allowed_origin" | "allow_origins" | "allow_origin"
                | "origins" | "origin" => {
                    w.allowed_origins = match &v.kind {
                        Kind::String(s) => vec![s.clone()],
                        Kind::Array(items) => items
                            .iter()
                            .map(|item| match &item.kind {
                                Kind::String(s) => Ok(s.clone()),
                                _ => Err(conversion(field, "string")),
                            })
                            .collect::<Result<_, _>>()?,
                        _ => {
                            return Err(at(
                                field,
                                format!(
                                    "error parsing allowed origins: unsupported type {}",
                                    go_type(v)
                                ),
                            ))
                        }
                    }
                }
                "handshake_timeout" => {
                    w.handshake_timeout = go_duration(field, "handshake_timeout", warnings)?
                }
                "ping_interval" => w.ping_interval = go_duration(field, "ping_interval", warnings)?,
                "no_auth_user" => w.no_auth_user = Some(go_string(field)?),
                "authorization" | "authentication" => authorization(&mut w, field)?,
                "jwt_cookie" => w.jwt_cookie = Some(go_string(field)?),
                "user_cookie" => w.user_cookie = Some(go_string(field)?),
                "pass_cookie" => w.pass_cookie = Some(go_string(field)?),
                "token_cookie" => w.token_cookie = Some(go_string(field)?),
                "headers" => {
                    let Kind::Map(headers) = &v.kind else {
                        return Err(at(
                            field,
                            format!("error parsing headers: unsupported type {}", go_type(v)),
                        ));
                    };
                    w.headers = headers
                        .iter()
                        .map(|h| Ok((h.key.clone(), go_string(h)?)))
                        .collect::<Result<_, ConfError>>()?;
                }
                _ if field.referenced => {}
                _ => return Err(unknown_field(field)),
            }
        }
        if !host.is_empty() {
            w.host = host;
        }
        Ok(match port {
            0 => None,
            -1 => Some(w),
            p => {
                w.port = u16::try_from(p).map_err(|_| {
                    at(
                        entry,
                        format!("Unable to listen for websocket connections: listen tcp: address {p}: invalid port"),
                    )
                })?;
                Some(w)
            }
        })
    }

    /// Whether the block sets credentials of its own for WebSocket clients (nats-server's
    /// `authOverride`).
    pub fn auth_override(&self) -> bool {
        self.username.is_some() || self.token.is_some() || self.no_auth_user.is_some()
    }
}

/// `authorization { user, password, token, timeout }` (nats-server's `parseSimpleAuth`: no
/// users list).
fn authorization(w: &mut WebSocketOptions, entry: &Entry) -> Result<(), ConfError> {
    let Kind::Map(fields) = &entry.value.kind else {
        return Err(conversion(entry, "map[string]interface {}"));
    };
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "user" | "username" => w.username = Some(go_string(field)?),
            "pass" | "password" => w.password = Some(go_string(field)?),
            "token" => w.token = Some(go_string(field)?),
            "timeout" => w.auth_timeout = Some(auth_timeout(field)?),
            _ if field.referenced => {}
            _ => return Err(unknown_field(field)),
        }
    }
    Ok(())
}

/// What nats-server refuses about the block only when it starts.
pub fn check_at_start(opts: &super::Options) -> Result<(), String> {
    let Some(w) = &opts.websocket else {
        return Ok(());
    };
    if w.tls.is_none() && !w.no_tls {
        return Err("websocket requires TLS configuration".into());
    }
    for origin in &w.allowed_origins {
        if super::url::GoUrl::parse(origin).is_err() {
            return Err(format!("unable to parse allowed origin: {origin}"));
        }
    }
    if let Some(user) = &w.no_auth_user {
        if !opts.users.iter().any(|u| &u.name == user) {
            return Err(format!(
                "no_auth_user: {user:?} not present as user or nkey in authorization block or \
                 account configuration"
            ));
        }
    }
    if !opts.users.is_empty() {
        if w.username.is_some() {
            return Err(
                "websocket authentication username not compatible with presence of users/nkeys"
                    .into(),
            );
        }
        if w.token.is_some() {
            return Err(
                "websocket authentication token not compatible with presence of users/nkeys".into(),
            );
        }
    }
    if let Some(cookie) = w.jwt_cookie.as_ref().filter(|_| !opts.operator.enabled()) {
        return Err(format!(
            "trusted operators or trusted keys configuration is required for JWT \
             authentication via cookie {cookie:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, options};

    #[test]
    fn the_block_as_nats_server_reads_it() {
        let (opts, _) = options(
            r#"websocket {
                listen: "127.0.0.1:-1", no_tls: true, compression: true, same_origin: true,
                allowed_origins: ["http://a.com", "https://b.com:8443"], handshake_timeout: "3s",
                no_auth_user: bob, authorization { user: u, password: p, timeout: 2 },
                user_cookie: uc, pass_cookie: pc, token_cookie: tc,
                headers { "X-A": "1" }, advertise: "h:1"
            }"#,
        )
        .unwrap();
        let w = opts.websocket.unwrap();
        assert_eq!((w.host.as_str(), w.port), ("127.0.0.1", 0));
        assert!(w.no_tls && w.compression && w.same_origin);
        assert_eq!(w.allowed_origins.len(), 2);
        assert_eq!(w.handshake_timeout, std::time::Duration::from_secs(3));
        assert_eq!(w.username.as_deref(), Some("u"));
        assert_eq!(w.headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(w.token_cookie.as_deref(), Some("tc"));
        // No port: no listener.
        assert!(options("websocket { no_tls: true }")
            .unwrap()
            .0
            .websocket
            .is_none());
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert_eq!(
            error("websocket { port: 8080, no_tls: true, username_cookie: x }"),
            "test.conf:1:38: unknown field \"username_cookie\""
        );
        assert_eq!(
            error("websocket { port: 8080, authorization { users: [] } }"),
            "test.conf:1:40: unknown field \"users\""
        );
    }

    #[test]
    fn refused_at_start() {
        let check = |text: &str| super::check_at_start(&options(text).unwrap().0);
        assert_eq!(
            check("websocket { port: 8080 }").unwrap_err(),
            "websocket requires TLS configuration"
        );
        assert!(check("websocket { port: 8080, no_tls: true }").is_ok());
        assert!(
            check("websocket { port: 8080, no_tls: true, jwt_cookie: x }")
                .unwrap_err()
                .contains("via cookie \"x\"")
        );
    }
}
