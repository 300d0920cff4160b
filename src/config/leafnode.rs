//! The `leafnodes` block: the port other servers attach to as leafnodes (tern as their hub),
//! and the `remotes` tern dials as a leafnode itself (tern as a spoke), read as nats-server's
//! `parseLeafNodes` reads them, with its errors.
//!
//! tern does not compress leafnode connections. A `compression` mode is still checked as
//! nats-server checks it; any mode other than `off` gets a warning, and the connection says
//! `off` (a peer that asks for S2 settles for none, as nats-server does with a peer that does
//! not support it).

use std::path::PathBuf;
use std::time::Duration;

use super::cluster::{at, conversion, go_bool, go_duration, go_int, go_string, listen, route_url};
use super::conf::{ConfError, Entry, Kind, Value};
use super::options::{ignored, unknown_field};
use super::users::{go_type, tls_block};
use super::TlsOptions;

/// nats-server's default leafnode port (`DEFAULT_LEAFNODE_PORT`).
pub const DEFAULT_LEAFNODE_PORT: u16 = 7422;
/// Between attempts at a remote (`DEFAULT_LEAF_NODE_RECONNECT`).
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(1);
/// How long a dialed remote may take to send its first INFO (`first_info_timeout`).
pub const DEFAULT_FIRST_INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// The oldest `min_version` nats-server takes.
const MIN_VERSION_FLOOR: (u64, u64, u64) = (2, 8, 0);

/// The `leafnodes` block.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafnodeOptions {
    /// The leafnode listen host.
    pub host: String,
    /// The leafnode listen port (0: a random one).
    pub port: u16,
    /// A port is configured: the server accepts leafnodes.
    pub listens: bool,
    /// `host:port` told to leafnodes instead of the listen address.
    pub advertise: Option<String>,
    /// Do not tell leafnodes of other servers' leafnode URLs.
    pub no_advertise: bool,
    /// `authorization { user, password }`: the one leafnode user.
    pub username: Option<String>,
    pub password: Option<String>,
    /// `authorization { nkey }`: the one leafnode user's public nkey (a user name and
    /// password, when there are both, are asked for instead).
    pub nkey: Option<String>,
    /// `authorization { users }`: leafnode users, each bound to an account.
    pub users: Vec<LeafUser>,
    /// `authorization { account }`: the account leafnodes without their own are bound to.
    pub account: Option<String>,
    /// `authorization { timeout }`.
    pub auth_timeout: Duration,
    /// `tls { }` for accepted leafnodes.
    pub tls: Option<TlsOptions>,
    /// `compression` as configured (checked, never used).
    pub compression: String,
    /// The oldest nats-server version a leafnode may run (`min_version`).
    pub min_version: Option<String>,
    /// Send hub interest only to this server's own leafnodes' clusters
    /// (`isolate_leafnode_interest`).
    pub isolate: bool,
    /// Between attempts at a remote.
    pub reconnect_interval: Duration,
    /// The hubs tern dials as a leafnode.
    pub remotes: Vec<RemoteLeaf>,
}

/// One leafnode user of `authorization { users }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeafUser {
    pub user: String,
    pub password: String,
    /// The account its leafnode is bound to (the global account when empty).
    pub account: Option<String>,
}

/// One remote: a hub (or a cluster of hubs, `urls`) this server attaches to as a leafnode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoteLeaf {
    /// Tried in turn; a URL's user and password are sent in CONNECT.
    pub urls: Vec<LeafUrl>,
    /// The local account bound to the connection (the global account when unset).
    pub account: Option<String>,
    /// A `.creds` file (user JWT and seed) to sign the hub's nonce with.
    pub credentials: Option<PathBuf>,
    /// An nkey seed file.
    pub nkey: Option<String>,
    /// TLS to the hub.
    pub tls: Option<TlsOptions>,
    /// The hub attaches to us: we act as the hub on this connection.
    pub hub: bool,
    /// Subjects whose messages are not taken from the hub (nor interest sent for them).
    pub deny_imports: Vec<String>,
    /// Subjects not sent to the hub.
    pub deny_exports: Vec<String>,
    /// `compression` as configured (checked, never used).
    pub compression: String,
    /// How long the hub may take to send its INFO.
    pub first_info_timeout: Duration,
    /// Not dialed.
    pub disabled: bool,
    /// `isolate_leafnode_interest`: the hub hears of no interest from our other leafnodes.
    pub isolate: bool,
    /// `request_isolation`: asks the hub to tell us of no interest from its other leafnodes.
    pub request_isolation: bool,
    /// `ws_compression`: offer permessage-deflate to a hub dialed over WebSocket.
    pub ws_compression: bool,
    /// `ws_no_masking`: ask a hub dialed over WebSocket to take unmasked frames.
    pub ws_no_masking: bool,
}

/// A remote's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafUrl {
    /// As written.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `tls://` or `wss://`: TLS without a `tls` block.
    pub tls: bool,
    /// `ws://` or `wss://`: the hub's WebSocket listener, not its leafnode port.
    pub ws: bool,
}

impl Default for LeafnodeOptions {
    fn default() -> Self {
        LeafnodeOptions {
            host: "0.0.0.0".into(),
            port: 0,
            listens: false,
            advertise: None,
            no_advertise: false,
            username: None,
            password: None,
            nkey: None,
            users: Vec::new(),
            account: None,
            auth_timeout: super::cluster::DEFAULT_AUTH_TIMEOUT,
            tls: None,
            compression: "s2_auto".into(),
            min_version: None,
            isolate: false,
            reconnect_interval: DEFAULT_RECONNECT,
            remotes: Vec::new(),
        }
    }
}

impl LeafnodeOptions {
    /// Reads the `leafnodes` entry of the configuration file.
    pub(super) fn parse(entry: &Entry, warnings: &mut Vec<String>) -> Result<Self, ConfError> {
        let v = &entry.value;
        let Kind::Map(fields) = &v.kind else {
            return Err(at(
                entry,
                format!("Expected map to define a leafnode, got {}", go_type(v)),
            ));
        };
        let mut l = LeafnodeOptions::default();
        let mut port = None;
        let mut auth_timeout = None;
        for field in fields {
            let v = &field.value;
            match field.key.to_ascii_lowercase().as_str() {
                "listen" => {
                    let (host, listen_port) = listen(field)?;
                    if !host.is_empty() {
                        l.host = host;
                    }
                    port = Some((field, listen_port));
                }
                "port" => port = Some((field, go_int(field)?)),
                "host" | "net" => l.host = go_string(field)?,
                "authorization" => auth_timeout = l.authorization(field)?,
                "remotes" => {
                    let Kind::Array(items) = &v.kind else {
                        return Err(at(
                            field,
                            format!("Expected remotes field to be an array, got {}", go_type(v)),
                        ));
                    };
                    for item in items {
                        l.remotes.push(remote(item, warnings)?);
                    }
                }
                "reconnect" | "reconnect_delay" | "reconnect_interval" => {
                    l.reconnect_interval = go_duration(field, "reconnect", warnings)?
                }
                "tls" => {
                    let mut tls = tls_block(v, warnings)?;
                    let pos = &field.pos;
                    tls.defined_at =
                        Some(format!("{}:{}:{}", pos.file.display(), pos.line, pos.col));
                    l.tls = Some(tls);
                }
                "leafnode_advertise" | "advertise" => l.advertise = Some(go_string(field)?),
                "no_advertise" => l.no_advertise = go_bool(field)?,
                "min_version" | "minimum_version" => {
                    let version = go_string(field)?;
                    check_min_version(&version).map_err(|m| at(field, m))?;
                    l.min_version = Some(version);
                }
                "compression" => l.compression = compression(field, warnings)?,
                "isolate_leafnode_interest" | "isolate" => l.isolate = go_bool(field)?,
                "write_deadline" => {
                    go_duration(field, "write_deadline", warnings)?;
                    warnings.push(ignored(field, "not supported by tern yet"));
                }
                _ if field.referenced => {}
                _ => return Err(unknown_field(field)),
            }
        }
        if let Some((field, port)) = port {
            match port {
                -1 => {
                    l.port = 0;
                    l.listens = true;
                }
                0 => {}
                1..=65535 => {
                    l.port = port as u16;
                    l.listens = true;
                }
                _ => {
                    return Err(at(
                        field,
                        format!(
                            "Error listening on leafnode port: {port} - listen tcp: address \
                             {port}: invalid port"
                        ),
                    ))
                }
            }
        }
        l.auth_timeout =
            auth_timeout.unwrap_or_else(|| super::cluster::default_auth_timeout(l.tls.as_ref()));
        Ok(l)
    }

    /// `authorization { user, password, nkey, users, account, timeout }`.
    fn authorization(&mut self, entry: &Entry) -> Result<Option<Duration>, ConfError> {
        let Kind::Map(fields) = &entry.value.kind else {
            return Err(conversion(entry, "map[string]interface {}"));
        };
        let mut timeout = None;
        for field in fields {
            match field.key.to_ascii_lowercase().as_str() {
                "user" | "username" => self.username = Some(go_string(field)?),
                "pass" | "password" => self.password = Some(go_string(field)?),
                "nkey" => {
                    let key = go_string(field)?;
                    if !key.starts_with('U') || nkeys::KeyPair::from_public_key(&key).is_err() {
                        return Err(at(
                            field,
                            "Not a valid public nkey for leafnode authorization".into(),
                        ));
                    }
                    self.nkey = Some(key);
                }
                "timeout" => timeout = Some(super::cluster::auth_timeout(field)?),
                "account" => self.account = Some(go_string(field)?),
                "users" => {
                    let Kind::Array(items) = &field.value.kind else {
                        return Err(conversion(field, "[]interface {}"));
                    };
                    for item in items {
                        self.users.push(leaf_user(item)?);
                    }
                }
                _ if field.referenced => {}
                _ => return Err(unknown_field(field)),
            }
        }
        if self.username.is_some() && !self.users.is_empty() {
            return Err(at(
                entry,
                "can not have a single user/pass and a users array".into(),
            ));
        }
        if self.nkey.is_some() && !self.users.is_empty() {
            return Err(at(
                entry,
                "can not have a single nkey and a users array".into(),
            ));
        }
        Ok(timeout)
    }
}

/// One user of `authorization { users }`.
fn leaf_user(item: &Value) -> Result<LeafUser, ConfError> {
    let Kind::Map(fields) = &item.kind else {
        return Err(ConfError {
            pos: item.nats_pos(),
            message: format!(
                "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                go_type(item)
            ),
        });
    };
    let mut user = LeafUser::default();
    for field in fields {
        match field.key.to_ascii_lowercase().as_str() {
            "user" | "username" => user.user = go_string(field)?,
            "pass" | "password" => user.password = go_string(field)?,
            "account" => user.account = Some(go_string(field)?),
            _ if field.referenced => {}
            _ => return Err(unknown_field(field)),
        }
    }
    Ok(user)
}

/// One item of `remotes`.
fn remote(item: &Value, warnings: &mut Vec<String>) -> Result<RemoteLeaf, ConfError> {
    let Kind::Map(fields) = &item.kind else {
        return Err(ConfError {
            pos: item.nats_pos(),
            message: format!(
                "Expected remote leafnode entry to be a map/struct, got {}",
                go_type(item)
            ),
        });
    };
    let mut r = RemoteLeaf {
        compression: "s2_auto".into(),
        first_info_timeout: DEFAULT_FIRST_INFO_TIMEOUT,
        ..RemoteLeaf::default()
    };
    for field in fields {
        let v = &field.value;
        match field.key.to_ascii_lowercase().as_str() {
            "no_randomize" | "dont_randomize" | "ignore_discovered_servers" => {
                go_bool(field)?;
            }
            "url" | "urls" => {
                let texts: Vec<&Value> = match &v.kind {
                    Kind::Array(items) => items.iter().collect(),
                    _ => vec![v],
                };
                for text in texts {
                    let Kind::String(text) = &text.kind else {
                        return Err(ConfError {
                            pos: text.nats_pos(),
                            message: format!(
                                "interface conversion: interface {{}} is {}, not string",
                                go_type(text)
                            ),
                        });
                    };
                    r.urls.push(leaf_url(text).map_err(|m| at(field, m))?);
                }
            }
            "account" | "local" => r.account = Some(go_string(field)?),
            "creds" | "credentials" => {
                r.credentials = Some(PathBuf::from(expand_home(&go_string(field)?)))
            }
            "nkey" | "seed" => r.nkey = Some(go_string(field)?),
            "tls" => {
                let mut tls = tls_block(v, warnings)?;
                let pos = &field.pos;
                tls.defined_at = Some(format!("{}:{}:{}", pos.file.display(), pos.line, pos.col));
                r.tls = Some(tls);
            }
            "hub" => r.hub = go_bool(field)?,
            "deny_imports" | "deny_import" => r.deny_imports = subjects(field)?,
            "deny_exports" | "deny_export" => r.deny_exports = subjects(field)?,
            "compression" => r.compression = compression(field, warnings)?,
            "first_info_timeout" => {
                r.first_info_timeout = go_duration(field, "first_info_timeout", warnings)?
            }
            "disabled" => r.disabled = go_bool(field)?,
            "isolate_leafnode_interest" | "isolate" => r.isolate = go_bool(field)?,
            "request_isolation" => r.request_isolation = go_bool(field)?,
            "ws_compression" | "websocket_compression" => r.ws_compression = go_bool(field)?,
            "ws_no_masking" | "websocket_no_masking" => r.ws_no_masking = go_bool(field)?,
            "proxy" | "jetstream_cluster_migrate" | "jetstream_cluster_migrate_delay" => {
                warnings.push(ignored(field, "not supported by tern yet"));
            }
            _ if field.referenced => {}
            _ => return Err(unknown_field(field)),
        }
    }
    Ok(r)
}

/// A remote's URL, read with Go's `url.Parse` as nats-server does; no port means 7422.
pub fn leaf_url(text: &str) -> Result<LeafUrl, String> {
    let trimmed = text.trim();
    let url =
        route_url(trimmed).map_err(|_| format!("error parsing leafnode url [{trimmed:?}]"))?;
    let scheme = url
        .url
        .split("://")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    // nats-server's `isWSURL` and `isWSSURL` look at the scheme's first letters.
    let ws = scheme.starts_with("ws");
    let tls = scheme == "tls" || scheme.starts_with("wss");
    Ok(LeafUrl {
        url: url.url,
        host: url.host,
        port: match url.port {
            0 => DEFAULT_LEAFNODE_PORT,
            p => p,
        },
        username: url.username,
        password: url.password,
        tls,
        ws,
    })
}

impl LeafUrl {
    /// The URL as nats-server logs it: a password replaced with `xxxxx`.
    pub fn redacted(&self) -> String {
        match &self.password {
            Some(password) => self.url.replacen(&format!(":{password}@"), ":xxxxx@", 1),
            None => self.url.clone(),
        }
    }

    /// The URL's path (`""` when it has none).
    pub fn path(&self) -> &str {
        let rest = self.url.split_once("://").map_or("", |(_, rest)| rest);
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        rest.find('/').map_or("", |at| &rest[at..])
    }
}

/// `deny_imports`/`deny_exports`: a subject or a list of them.
fn subjects(entry: &Entry) -> Result<Vec<String>, ConfError> {
    match &entry.value.kind {
        Kind::String(s) => Ok(vec![s.clone()]),
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
            .collect(),
        _ => Err(conversion(entry, "[]interface {}")),
    }
}

/// `compression`: read as the cluster's is; a mode other than `off` is warned about, since
/// tern never compresses.
fn compression(entry: &Entry, warnings: &mut Vec<String>) -> Result<String, ConfError> {
    let mode = super::cluster::compression_mode(entry)?;
    let lower = mode.to_ascii_lowercase();
    if !matches!(lower.as_str(), "off" | "disabled" | "") {
        warnings.push(ignored(
            entry,
            "tern does not compress leafnode connections; they run uncompressed",
        ));
    }
    Ok(mode)
}

/// `min_version`: a version no older than 2.8.0 (`checkLeafMinVersionConfig`).
fn check_min_version(text: &str) -> Result<(), String> {
    let version = parse_semver(text)
        .ok_or_else(|| "invalid leafnode's minimum version: invalid semver".to_string())?;
    if version < MIN_VERSION_FLOOR {
        return Err("the minimum version should be at least 2.8.0".into());
    }
    Ok(())
}

/// `major.minor.patch[-pre]` (a leading `v` allowed), as nats-server's `versionComponents`.
pub fn parse_semver(text: &str) -> Option<(u64, u64, u64)> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let mut next = || parts.next()?.parse::<u64>().ok();
    let version = (next()?, next()?, next()?);
    Some(version)
}

/// Whether `version` (a leafnode's CONNECT) is at least `min` (`versionAtLeast`): a version
/// that cannot be read is not.
pub fn version_at_least(version: &str, min: &str) -> bool {
    match (parse_semver(version), parse_semver(min)) {
        (Some(version), Some(min)) => version >= min,
        _ => false,
    }
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

/// What nats-server refuses about the block only when it starts.
pub fn check_at_start(opts: &super::Options) -> Result<(), String> {
    let Some(l) = &opts.leafnodes else {
        return Ok(());
    };
    for remote in &l.remotes {
        if remote.urls.iter().any(|u| u.ws != remote.urls[0].ws) {
            let urls: Vec<String> = remote
                .urls
                .iter()
                .map(|u| format!("{:?}", u.redacted()))
                .collect();
            return Err(format!(
                "remote leaf node configuration cannot have a mix of websocket and \
                 non-websocket urls: [{}]",
                urls.join(" ")
            ));
        }
    }
    let modes = std::iter::once(&l.compression).chain(l.remotes.iter().map(|r| &r.compression));
    for mode in modes {
        super::cluster::check_compression(mode)?;
    }
    let known = |name: &str| name == "$G" || opts.accounts.iter().any(|a| a.name == name);
    for user in &l.users {
        if let Some(account) = user.account.as_deref().filter(|a| !known(a)) {
            return Err(format!(
                "cannot find local account {account:?} specified in leafnode authorization"
            ));
        }
    }
    if let Some(account) = l.account.as_deref().filter(|a| !known(a)) {
        return Err(format!(
            "cannot find local account {account:?} specified in leafnode authorization"
        ));
    }
    for remote in &l.remotes {
        if let Some(account) = remote.account.as_deref().filter(|a| !known(a)) {
            return Err(format!(
                "cannot find local account {account:?} specified in leafnode remote"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{error, options};

    fn leaf(text: &str) -> (LeafnodeOptions, Vec<String>) {
        let (o, w) = options(text).unwrap();
        (o.leafnodes.expect("a leafnodes block"), w)
    }

    #[test]
    fn a_full_block() {
        let (l, warnings) = leaf(
            "leafnodes {\n listen: \"127.0.0.1:-1\"\n advertise: \"x:1\"\n no_advertise: true\n\
             authorization { users: [ {user: a, password: b, account: A} ], account: B, timeout: 3 }\n\
             compression: off\n min_version: \"2.9.0\"\n isolate_leafnode_interest: true\n\
             reconnect_interval: \"2s\"\n\
             remotes: [ { urls: [\"nats://u:p@h1:1\", \"nats://h2\"], account: A, hub: true,\n\
               deny_imports: [\"a.>\"], deny_exports: \"b\", compression: false,\n\
               first_info_timeout: \"3s\", disabled: true, credentials: \"/x.creds\",\n\
               isolate: true, request_isolation: true } ]\n}",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((l.host.as_str(), l.port, l.listens), ("127.0.0.1", 0, true));
        assert_eq!(l.advertise.as_deref(), Some("x:1"));
        assert!(l.no_advertise && l.isolate);
        assert_eq!(l.users[0].account.as_deref(), Some("A"));
        assert_eq!(l.account.as_deref(), Some("B"));
        assert_eq!(l.auth_timeout, Duration::from_secs(3));
        assert_eq!(l.reconnect_interval, Duration::from_secs(2));
        let r = &l.remotes[0];
        assert_eq!(r.urls.len(), 2);
        assert_eq!(
            (
                r.urls[0].host.as_str(),
                r.urls[0].port,
                r.urls[0].username.as_deref()
            ),
            ("h1", 1, Some("u"))
        );
        assert_eq!(r.urls[1].port, DEFAULT_LEAFNODE_PORT);
        assert!(r.hub && r.disabled && r.isolate && r.request_isolation);
        assert_eq!(r.deny_imports, ["a.>"]);
        assert_eq!(r.deny_exports, ["b"]);
        assert_eq!(r.compression, "off");
        assert_eq!(r.first_info_timeout, Duration::from_secs(3));
    }

    #[test]
    fn defaults() {
        let (l, _) = leaf("leafnodes { port: 7422 }");
        assert_eq!(
            (l.host.as_str(), l.port, l.listens),
            ("0.0.0.0", 7422, true)
        );
        assert_eq!(l.reconnect_interval, DEFAULT_RECONNECT);
        assert_eq!(l.auth_timeout, Duration::from_secs(2));
        let (l, _) = leaf("leafnodes { remotes: [ { url: \"nats://h:1\" } ] }");
        assert!(!l.listens);
        assert_eq!(l.remotes[0].first_info_timeout, DEFAULT_FIRST_INFO_TIMEOUT);
    }

    /// Each as nats-server 2.15.1 gives it (`nats-server -t`, or at start).
    #[test]
    fn errors_as_nats_server_gives_them() {
        for (text, want) in [
            ("leafnodes: 5", "test.conf:1:0: Expected map to define a leafnode, got int64"),
            (
                "leafnodes { listen: \"127.0.0.1:-1\", foo: 1 }",
                "test.conf:1:36: unknown field \"foo\"",
            ),
            (
                "leafnodes { authorization { user: a, password: b, token: x } }",
                "test.conf:1:50: unknown field \"token\"",
            ),
            (
                "leafnodes { port: -1, authorization { nkey: UBAD } }",
                "test.conf:1:38: Not a valid public nkey for leafnode authorization",
            ),
            (
                "leafnodes { port: -1, authorization { nkey: UABCGPT5LRGUOAEE5PWIV66S4L4OQWT46EANYYPYP5DLVWNDYQHM33NH, users: [ {user: c, password: b} ] } }",
                "test.conf:1:22: can not have a single nkey and a users array",
            ),
            (
                "leafnodes { min_version: \"2.7.0\" }",
                "test.conf:1:12: the minimum version should be at least 2.8.0",
            ),
            (
                "leafnodes { min_version: \"bad\" }",
                "test.conf:1:12: invalid leafnode's minimum version: invalid semver",
            ),
            (
                "leafnodes { remotes: [ { url: \"nats://a:1\", foo: 1 } ] }",
                "test.conf:1:44: unknown field \"foo\"",
            ),
            (
                "leafnodes { remotes: [ { url: \"nats://a:1\", local_isolation: true } ] }",
                "test.conf:1:44: unknown field \"local_isolation\"",
            ),
            (
                "leafnodes { remotes: [ { url: \"x y://a\" } ] }",
                "test.conf:1:25: error parsing leafnode url [\"x y://a\"]",
            ),
            (
                "leafnodes { port: \"x\" }",
                "test.conf:1:12: interface conversion: interface {} is string, not int64",
            ),
            (
                "leafnodes { port: -1, authorization { user: a, password: b, users: [ {user: c, password: b} ] } }",
                "test.conf:1:22: can not have a single user/pass and a users array",
            ),
        ] {
            assert_eq!(error(text), want, "{text}");
        }
    }

    #[test]
    fn checked_at_start_as_nats_server_checks() {
        let check = |text: &str| check_at_start(&options(text).unwrap().0);
        assert_eq!(
            check("leafnodes { compression: bogus, port: -1 }").unwrap_err(),
            "unsupported compression mode \"bogus\""
        );
        assert_eq!(
            check("leafnodes { remotes: [ { url: \"nats://h:1\", account: A } ] }").unwrap_err(),
            "cannot find local account \"A\" specified in leafnode remote"
        );
        assert_eq!(
            check("leafnodes { port: -1, authorization { users: [ {user: a, password: b, account: A} ] } }")
                .unwrap_err(),
            "cannot find local account \"A\" specified in leafnode authorization"
        );
        assert!(check(
            "accounts { A {} }\nleafnodes { remotes: [ { url: \"nats://h:1\", account: A } ] }"
        )
        .is_ok());
    }

    /// The remote's WebSocket options, the URL schemes, and nats-server's refusal of a remote
    /// that mixes WebSocket and other URLs (its text as nats-server 2.15.1 prints it).
    #[test]
    fn remotes_over_websocket() {
        let (l, warnings) = leaf(
            "leafnodes { remotes: [ { urls: [\"wss://h:443/p\", \"ws://u:pw@h\"], \
             ws_compression: true, websocket_no_masking: true } ] }",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        let r = &l.remotes[0];
        assert!(r.ws_compression && r.ws_no_masking);
        let [wss, ws] = &r.urls[..] else {
            panic!("two URLs")
        };
        assert!(wss.ws && wss.tls && wss.port == 443 && wss.path() == "/p");
        assert!(ws.ws && !ws.tls && ws.port == DEFAULT_LEAFNODE_PORT && ws.path().is_empty());
        assert_eq!(ws.redacted(), "ws://u:xxxxx@h");
        assert_eq!(
            error("leafnodes { remotes: [ { url: \"ws://h\", ws_compression: 1 } ] }"),
            "test.conf:1:40: interface conversion: interface {} is int64, not bool"
        );
        let check = |text: &str| check_at_start(&options(text).unwrap().0);
        assert_eq!(
            check(
                "leafnodes { remotes: [ { urls: [\"ws://u:p@127.0.0.1:1\", \"nats://127.0.0.1:2\"] } ] }"
            )
            .unwrap_err(),
            "remote leaf node configuration cannot have a mix of websocket and non-websocket \
             urls: [\"ws://u:xxxxx@127.0.0.1:1\" \"nats://127.0.0.1:2\"]"
        );
    }

    #[test]
    fn versions_compare_as_nats_server_compares_them() {
        assert!(version_at_least("2.15.1", "2.15.1"));
        assert!(version_at_least("v2.16.0-beta.1", "2.15.9"));
        assert!(version_at_least("3.0.0", "2.99.99"));
        assert!(!version_at_least("2.9.10", "2.10.0"));
        assert!(!version_at_least("", "2.8.0"));
        assert!(!version_at_least("bad", "2.8.0"));
    }

    #[test]
    fn compression_other_than_off_is_warned_about() {
        let (_, warnings) = leaf("leafnodes { port: -1, compression: s2_fast }");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("\"compression\""));
        let (_, warnings) = leaf("leafnodes { port: -1, compression: off }");
        assert!(warnings.is_empty());
        let (_, warnings) = leaf("leafnodes { reconnect_interval: 3 }");
        assert_eq!(
            warnings,
            ["test.conf:1:12: invalid use of field \"reconnect\": reconnect should be converted to a duration"]
        );
    }
}
