//! Server options: plain data with nats-server's defaults, and how a configuration file's keys
//! map onto them (`apply_file`). The file's syntax is `conf`'s business; reading it is the only
//! I/O here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::accounts::{AccountConfig, MappingConfig};
use super::cluster::{ClusterOptions, ROUTE_MAX_PING_INTERVAL};
use super::conf::{self, ConfError, Entry, Kind, Map, Value};
use super::users::{permissions_block, tls_block, user};
use crate::engine::permissions::Permissions;

/// Everything the server needs to know to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to bind the client listener to (`-a`, default `0.0.0.0`).
    pub host: String,
    /// Client port (`-p`, default 4222); 0 binds a random port (`-1` on the command line).
    pub port: u16,
    /// Server name (`-n`); the server id when unset.
    pub server_name: Option<String>,
    /// Largest PUB/HPUB size accepted (`max_payload`, 1 MiB).
    pub max_payload: usize,
    /// Longest control line accepted (`max_control_line`, 4 KiB).
    pub max_control_line: usize,
    /// Most client connections at once (`max_connections`, 65536).
    pub max_connections: usize,
    /// Most subscriptions per connection (`max_subscriptions`, 0 = unlimited).
    pub max_subscriptions: usize,
    /// Outbound bytes a connection may have queued before it is a slow consumer
    /// (`max_pending`, 64 MiB).
    pub max_pending: usize,
    /// Interval between server PINGs to an idle client (`ping_interval`, 2 minutes).
    pub ping_interval: Duration,
    /// Unanswered PINGs before the connection is stale (`ping_max`, 2).
    pub ping_max: u32,
    /// Time a client has to send CONNECT when auth is required (`authorization.timeout`); unset,
    /// nats-server's default: 2 s, or `tls.timeout` + 1 s with TLS. See `auth_timeout()`.
    pub auth_timeout: Option<Duration>,
    /// Longest a batch of writes to one client may take (`write_deadline`, 10 s).
    pub write_deadline: Duration,
    /// Required user name (`--user`).
    pub username: Option<String>,
    /// Required password (`--pass`).
    pub password: Option<String>,
    /// Required token (`--auth`).
    pub token: Option<String>,
    /// Log connection events (`-D`).
    pub debug: bool,
    /// Log every protocol line (`-V`).
    pub trace: bool,
    /// Prefix log lines with the date and time (`-T`, default true).
    pub logtime: bool,
    /// Write the log here instead of stderr (`-l`).
    pub log_file: Option<PathBuf>,
    /// Write the process id here (`-P`).
    pub pid_file: Option<PathBuf>,
    /// Write `<program>_<pid>.ports` here once listening (`--ports_file_dir`).
    pub ports_file_dir: Option<PathBuf>,
    /// Users allowed in (`authorization { users [...] }`), besides `username`/`password`.
    pub users: Vec<User>,
    /// Clients that present no credentials are this user (`no_auth_user`).
    pub no_auth_user: Option<String>,
    /// Lame duck mode closes clients spread over this long (`lame_duck_duration`, 2 minutes).
    pub lame_duck_duration: Duration,
    /// Lame duck mode waits this long before closing clients (`lame_duck_grace_period`, 10 s).
    pub lame_duck_grace_period: Duration,
    /// Free-form tags (`server_tags`).
    pub server_tags: Vec<String>,
    /// Address of the HTTP monitor (`http: "host:port"`); the client `host` when unset.
    pub http_host: Option<String>,
    /// HTTP monitor port (`-m`, `http_port`, `monitor_port`, `http`): 0 for no monitor, -1
    /// for a random port, as nats-server keeps it (and shows it in `/varz`).
    pub http_port: i32,
    /// HTTPS monitor port (`-ms`, `https_port`, `https`), served with the client TLS
    /// certificate; exclusive with `http_port`, as in nats-server.
    pub https_port: i32,
    /// Prefix of every monitoring path (`http_base_path`, default none).
    pub http_base_path: String,
    /// Closed connections remembered for `/connz?state=closed` (`max_closed_clients`, 10000).
    pub max_closed_clients: usize,
    /// TLS on the client listener (`tls { ... }`, `--tls*`); `None` for plaintext.
    pub tls: Option<TlsOptions>,
    /// With `tls`, clients may also stay in plaintext (`allow_non_tls`, a top-level option as in
    /// nats-server): INFO says `tls_available` instead of `tls_required`.
    pub allow_non_tls: bool,
    /// The configured accounts (`accounts { ... }`); their users are in `users`.
    pub accounts: Vec<AccountConfig>,
    /// Subject mappings of the global account (top-level `mappings`).
    pub mappings: Vec<MappingConfig>,
    /// The system account (`system_account`; `$SYS`, made automatically, when unset).
    pub system_account: Option<String>,
    /// No system account at all (`no_system_account`).
    pub no_system_account: bool,
    /// Clustering (`cluster { ... }`, `--cluster`, `--routes`, ...); `None` when no cluster port
    /// is configured, as nats-server then runs no cluster.
    pub cluster: Option<ClusterOptions>,
    /// Leafnodes (`leafnodes { ... }`): the port leafnodes attach to, and the hubs this server
    /// attaches to; `None` without the block.
    pub leafnodes: Option<super::leafnode::LeafnodeOptions>,
    /// JetStream (`jetstream { ... }`, `-js`); `None` when it is off.
    pub jetstream: Option<super::jetstream::JetStreamOptions>,
    /// Operator mode: trusted operators, the account resolver and its accounts.
    pub operator: super::operator::OperatorOptions,
    /// `authorization { auth_callout }`: an external service admits the clients.
    pub auth_callout: Option<super::callout::AuthCallout>,
    /// The WebSocket listener for clients (`websocket { ... }`); `None` without a port.
    pub websocket: Option<super::websocket::WebSocketOptions>,
}

/// `tls { cert_file, key_file, ca_file, verify, verify_and_map, timeout, handshake_first,
/// min_version }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The server certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates client certificates must chain to (PEM).
    pub ca_file: Option<PathBuf>,
    /// Require and verify client certificates (mutual TLS).
    pub verify: bool,
    /// As `verify`, and the certificate names the user (subject or SAN).
    pub verify_and_map: bool,
    /// Longest a handshake may take (`timeout`, 2 s).
    pub timeout: Duration,
    /// TLS before INFO (`handshake_first: true`, also spelled `first` or `immediate`).
    pub handshake_first: bool,
    /// With `handshake_first`, how long to wait for the client's first byte before sending INFO
    /// in plaintext after all (`handshake_first: "300ms"`, or `auto`: 50 ms); `None` waits for
    /// the handshake only.
    pub handshake_first_fallback: Option<Duration>,
    /// Oldest TLS version accepted: `1.2` (default) or `1.3`.
    pub min_version: Option<String>,
    /// When not empty, a client certificate's key must be one of these: the SHA-256 of its
    /// SubjectPublicKeyInfo, in hex (`pinned_certs`).
    pub pinned_certs: Vec<String>,
    /// Skip verifying the certificate of the server dialed (`insecure`): only routes dial,
    /// so only the route TLS uses it, as in nats-server.
    pub insecure: bool,
    /// Where the `tls` block is (`file:line:col`), for errors found when the configuration is
    /// built; `None` when flags made or changed it.
    pub defined_at: Option<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            cert_file: None,
            key_file: None,
            ca_file: None,
            verify: false,
            verify_and_map: false,
            timeout: Duration::from_secs(2),
            handshake_first: false,
            handshake_first_fallback: None,
            min_version: None,
            pinned_certs: Vec::new(),
            insecure: false,
            defined_at: None,
        }
    }
}

/// One entry of `authorization { users [...] }`: a user name and password, or an nkey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// User name (empty for an nkey user).
    pub name: String,
    /// The user's public nkey (`U...`): the client proves it holds the seed by signing the
    /// nonce sent in INFO.
    pub nkey: Option<String>,
    /// Password.
    pub password: String,
    /// What the user may publish and subscribe to; `None` for everything.
    pub permissions: Option<Arc<Permissions>>,
    /// The account the user belongs to (empty: the global account, `$G`).
    pub account: String,
    /// Where the user is defined in the configuration file (for duplicate-user errors).
    pub defined_at: Option<super::conf::Pos>,
    /// The kinds of connection the user may log in on (`allowed_connection_types`, upper
    /// case); empty for all. tern has `STANDARD` and `WEBSOCKET` client connections.
    pub allowed_connection_types: Vec<String>,
}

impl User {
    /// Whether the user may log in on a standard client connection.
    pub fn allows_standard_connections(&self) -> bool {
        self.allows("STANDARD")
    }

    /// Whether the user may log in on a connection of this type (`STANDARD`, `WEBSOCKET`).
    pub fn allows(&self, kind: &str) -> bool {
        self.allowed_connection_types.is_empty()
            || self.allowed_connection_types.iter().any(|t| t == kind)
    }
}

/// nats-server's `DEFAULT_PORT`.
pub const DEFAULT_PORT: u16 = 4222;

impl Default for Options {
    fn default() -> Self {
        Options {
            host: "0.0.0.0".to_string(),
            port: DEFAULT_PORT,
            server_name: None,
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_connections: 64 * 1024,
            max_subscriptions: 0,
            max_pending: 64 * 1024 * 1024,
            ping_interval: Duration::from_secs(120),
            ping_max: 2,
            auth_timeout: None,
            write_deadline: Duration::from_secs(10),
            username: None,
            password: None,
            token: None,
            debug: false,
            trace: false,
            logtime: true,
            log_file: None,
            pid_file: None,
            ports_file_dir: None,
            users: Vec::new(),
            no_auth_user: None,
            lame_duck_duration: Duration::from_secs(120),
            lame_duck_grace_period: Duration::from_secs(10),
            server_tags: Vec::new(),
            http_host: None,
            http_port: 0,
            https_port: 0,
            http_base_path: String::new(),
            max_closed_clients: crate::engine::stats::DEFAULT_MAX_CLOSED_CLIENTS,
            tls: None,
            allow_non_tls: false,
            accounts: Vec::new(),
            mappings: Vec::new(),
            system_account: None,
            no_system_account: false,
            cluster: None,
            leafnodes: None,
            jetstream: None,
            operator: Default::default(),
            auth_callout: None,
            websocket: None,
        }
    }
}

impl Options {
    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.username.is_some()
            || self.token.is_some()
            || !self.users.is_empty()
            || self.operator.enabled()
    }

    /// The time a client has to authenticate (nats-server's `getDefaultAuthTimeout` when unset).
    pub fn auth_timeout(&self) -> Duration {
        match (self.auth_timeout, &self.tls) {
            (Some(timeout), _) => timeout,
            (None, Some(tls)) => tls.timeout + Duration::from_secs(1),
            (None, None) => Duration::from_secs(2),
        }
    }

    /// How often routes PING: the cluster's `ping_interval`, else the top-level one, at most
    /// 30 s (nats-server's `adjustPingInterval`).
    pub fn route_ping_interval(&self) -> Duration {
        let configured = self
            .cluster
            .as_ref()
            .map_or(Duration::ZERO, |c| c.ping_interval);
        let interval = match configured.is_zero() {
            true => self.ping_interval,
            false => configured,
        };
        interval.min(ROUTE_MAX_PING_INTERVAL)
    }

    /// Unanswered PINGs before a route is stale: the cluster's `ping_max`, else the top-level
    /// one.
    pub fn route_ping_max(&self) -> u32 {
        match self.cluster.as_ref().map_or(0, |c| c.ping_max) {
            0 => self.ping_max,
            n => n,
        }
    }

    /// The write deadline of routes: the cluster's `write_deadline`, else the top-level one.
    pub fn route_write_deadline(&self) -> Duration {
        match self
            .cluster
            .as_ref()
            .map_or(Duration::ZERO, |c| c.write_deadline)
        {
            d if d.is_zero() => self.write_deadline,
            d => d,
        }
    }

    /// Whether a configured password is written in the clear (not a bcrypt hash): nats-server
    /// warns about it at start. Tokens do not count, as in nats-server.
    pub fn has_plaintext_passwords(&self) -> bool {
        let plain = |p: &str| !p.is_empty() && !is_bcrypt(p);
        self.password.as_deref().is_some_and(plain) || self.users.iter().any(|u| plain(&u.password))
    }

    /// Whether INFO carries a nonce for nkey users to sign.
    pub fn nonce_required(&self) -> bool {
        self.users.iter().any(|u| u.nkey.is_some()) || self.operator.enabled()
    }

    /// Applies the options of a parsed configuration file over these. Options tern does not
    /// have yet are warnings when running without them is harmless and errors when it is not;
    /// keys nats-server does not know are errors (`unknown field`), as in nats-server.
    pub fn apply_file(&mut self, file: &Map, warnings: &mut Vec<String>) -> Result<(), ConfError> {
        for entry in file {
            self.apply_entry(entry, warnings)?;
        }
        // A `no_auth_user` naming nobody is not an error here: nats-server's `-t` passes it and
        // only starting refuses it (`state::accounts::check`).
        let pos = file_pos(file);
        super::accounts::check(self, &pos)?;
        // Operator mode's accounts come from JWTs, checked by their own rules.
        super::operator::check_and_expand(self, &pos)
    }

    fn apply_entry(&mut self, entry: &Entry, warnings: &mut Vec<String>) -> Result<(), ConfError> {
        let v = &entry.value;
        match entry.key.to_ascii_lowercase().as_str() {
            "listen" => {
                let (host, port) = host_port(v)?;
                if let Some(host) = host {
                    self.host = host;
                }
                self.port = port;
            }
            "host" | "net" => self.host = string(v)?,
            "port" => self.port = port(v)?,
            "server_name" => self.server_name = Some(string(v)?),
            "max_payload" => self.max_payload = size(v)?,
            "max_connections" | "max_conn" => self.max_connections = size(v)?,
            "max_control_line" => self.max_control_line = size(v)?,
            "max_subscriptions" | "max_subs" => self.max_subscriptions = size(v)?,
            "max_pending" => self.max_pending = size(v)?,
            "ping_interval" => self.ping_interval = duration(entry, warnings)?,
            "ping_max" => self.ping_max = u32::try_from(int(v)?).map_err(|_| bad(v, "ping_max"))?,
            "write_deadline" => self.write_deadline = duration(entry, warnings)?,
            "debug" => self.debug = boolean(v)?,
            "trace" => self.trace = boolean(v)?,
            "logtime" => self.logtime = boolean(v)?,
            "log_file" | "logfile" => self.log_file = Some(PathBuf::from(string(v)?)),
            "pid_file" | "pidfile" => self.pid_file = Some(PathBuf::from(string(v)?)),
            "ports_file_dir" => self.ports_file_dir = Some(PathBuf::from(string(v)?)),
            "lame_duck_duration" => self.lame_duck_duration = duration(entry, warnings)?,
            "lame_duck_grace_period" => self.lame_duck_grace_period = duration(entry, warnings)?,
            "server_tags" => {
                self.server_tags = match &v.kind {
                    Kind::Array(items) => items.iter().map(string).collect::<Result<_, _>>()?,
                    _ => vec![string(v)?],
                }
            }
            "no_auth_user" => self.no_auth_user = Some(string(v)?),
            "http" => {
                let (host, port) = monitor_listen(v)?;
                if host.is_some() {
                    self.http_host = host;
                }
                self.http_port = port;
            }
            "http_port" | "monitor_port" => self.http_port = monitor_port(v)?,
            "http_base_path" => self.http_base_path = string(v)?,
            "max_closed_clients" => self.max_closed_clients = size(v)?,
            "https" => {
                let (host, port) = monitor_listen(v)?;
                if host.is_some() {
                    self.http_host = host;
                }
                self.https_port = port;
            }
            "https_port" => self.https_port = monitor_port(v)?,
            "authorization" => self.apply_authorization(v, warnings)?,
            "tls" => {
                let mut tls = tls_block(v, warnings)?;
                // Errors in the files it names are reported at this position, as nats-server
                // reports them (`security::tls::ServerTls::build`).
                let pos = &entry.pos;
                tls.defined_at = Some(format!("{}:{}:{}", pos.file.display(), pos.line, pos.col));
                self.tls = Some(tls);
            }
            "logtime_utc" => {
                boolean(v)?;
                warnings.push(ignored(entry, "tern's log timestamps are always UTC"));
            }
            // Harmless to run without: warn and carry on. Client test harnesses put these
            // blocks in every configuration they write.
            "jetstream" => self.jetstream = super::jetstream::parse_jetstream(entry, warnings)?,
            "leafnodes" | "leaf" => {
                self.leafnodes = Some(super::leafnode::LeafnodeOptions::parse(entry, warnings)?);
            }
            "gateway"
            | "mqtt"
            | "syslog"
            | "remote_syslog"
            | "log_size_limit"
            | "log_max_num"
            | "max_traced_msg_len"
            | "trace_verbose"
            | "client_advertise"
            | "prof_port"
            | "disable_sublist_cache"
            | "no_sublist_cache"
            | "no_fast_producer_stall"
            | "max_sub_tokens"
            | "server_metadata"
            | "connect_error_reports"
            | "reconnect_error_reports"
            | "no_header_support"
            | "write_timeout" => {
                warnings.push(ignored(entry, "not supported by tern yet"));
            }
            "allow_non_tls" => self.allow_non_tls = boolean(v)?,
            "websocket" | "ws" => {
                self.websocket = super::websocket::WebSocketOptions::parse(entry, warnings)?
            }
            // Kept even without a port until the flags have been applied (`Run::options`).
            "cluster" => self.cluster = Some(ClusterOptions::parse(entry, warnings)?),
            "accounts" => {
                let mut users = Vec::new();
                self.accounts = super::accounts::parse_accounts(v, &mut users, warnings)?;
                // The authorization block's users (global account) stay.
                self.users.retain(|u| u.account.is_empty());
                self.users.extend(users);
            }
            "mappings" | "maps" => self.mappings = super::accounts::parse_mappings(v)?,
            "system_account" | "system" => self.system_account = Some(string(v)?),
            "no_system_account" | "no_system" | "no_sys_acc" => {
                self.no_system_account = boolean(v)?
            }
            "operator" | "operators" | "root" | "roots" | "root_operator" | "root_operators" => {
                self.operator.operators = super::operator::parse_operators(entry)?
            }
            "trusted" | "trusted_keys" => {
                self.operator.trusted_keys = super::operator::parse_trusted(v)?
            }
            "resolver" | "account_resolver" | "accounts_resolver" => {
                self.operator.resolver = Some(super::operator::parse_resolver(v)?)
            }
            "resolver_preload" => self.operator.preload = super::operator::parse_preload(v)?,
            "resolver_pinned_accounts" => self.operator.pinned = super::operator::parse_pinned(v)?,
            "resolver_tls" => {
                self.operator.resolver_tls = Some(super::users::tls_block(v, warnings)?)
            }
            // Running without these would weaken security or change who may do what.
            "ocsp" | "default_permissions" | "proxies" => {
                return Err(ConfError {
                    pos: entry.pos.clone(),
                    message: format!("{:?} is not supported by tern yet", entry.key),
                });
            }
            // A variable's definition (`PASS: secret` used as `$PASS`), not an option.
            _ if entry.referenced => {}
            _ => return Err(unknown_field(entry)),
        }
        Ok(())
    }

    fn apply_authorization(
        &mut self,
        v: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfError> {
        let Kind::Map(block) = &v.kind else {
            return Err(bad(v, "authorization"));
        };
        let mut default_permissions = None;
        for entry in block {
            let v = &entry.value;
            match entry.key.to_ascii_lowercase().as_str() {
                "user" | "username" => self.username = Some(string(v)?),
                "password" | "pass" => self.password = Some(string(v)?),
                "token" => self.token = Some(string(v)?),
                "timeout" => self.auth_timeout = Some(seconds(v)?),
                "users" => {
                    let Kind::Array(users) = &v.kind else {
                        return Err(bad(v, "users"));
                    };
                    let users: Vec<User> = users.iter().map(user).collect::<Result<_, _>>()?;
                    // The accounts' users stay.
                    self.users.retain(|u| !u.account.is_empty());
                    self.users.extend(users);
                }
                "permissions" | "default_permissions" | "default_permission" => {
                    default_permissions = Some(Arc::new(permissions_block(v)?));
                }
                "auth_callout" | "auth_hook" => {
                    self.auth_callout = Some(super::callout::parse(entry)?);
                }
                "nkey" | "nkeys" => {
                    return Err(ConfError {
                        pos: entry.pos.clone(),
                        message: format!(
                            "authorization {:?} is not supported by tern yet",
                            entry.key
                        ),
                    });
                }
                _ if entry.referenced => {}
                _ => return Err(unknown_field(entry)),
            }
        }
        // Users without permissions of their own get the block's default permissions.
        if let Some(default) = default_permissions {
            for user in self
                .users
                .iter_mut()
                .filter(|u| u.account.is_empty() && u.permissions.is_none())
            {
                user.permissions = Some(default.clone());
            }
        }
        let _ = warnings;
        Ok(())
    }
}

/// nats-server's `isBcrypt`: `$2a$`, `$2b$`, `$2x$` or `$2y$`, a two-digit cost, `$`.
pub fn is_bcrypt(secret: &str) -> bool {
    let b = secret.as_bytes();
    b.len() > 7
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
}

/// Reads the configuration file at `path` and applies it over `opts`.
pub fn load(path: &Path, opts: &mut Options, warnings: &mut Vec<String>) -> Result<(), ConfError> {
    let file = conf::parse_file(path)?;
    opts.apply_file(&file, warnings)
}

/// Parses a Go duration (`300ms`, `2m`, `1h30m`, `1.5s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * scale;
    }
    // Far too long a duration is an error, not a panic (found by the conf fuzzer).
    Duration::try_from_secs_f64(total).ok()
}

fn file_pos(file: &Map) -> conf::Pos {
    file.first()
        .map(|e| e.pos.clone())
        .unwrap_or_else(|| conf::Pos {
            file: Path::new("").into(),
            line: 1,
            col: 1,
        })
}

pub(super) fn unknown_field(entry: &Entry) -> ConfError {
    ConfError {
        pos: entry.pos.clone(),
        message: format!("unknown field {:?}", entry.key),
    }
}

pub(super) fn ignored(entry: &Entry, why: &str) -> String {
    let pos = &entry.pos;
    format!(
        "{}:{}:{}: ignoring {:?}: {why}",
        pos.file.display(),
        pos.line,
        pos.col,
        entry.key
    )
}

pub(super) fn bad(v: &Value, what: &str) -> ConfError {
    ConfError {
        pos: v.pos.clone(),
        message: format!("invalid value for {what}: {:?}", v.kind),
    }
}

pub(super) fn string(v: &Value) -> Result<String, ConfError> {
    match &v.kind {
        Kind::String(s) => Ok(s.clone()),
        // Bare numbers where a string is expected (a server name `1`, say) read as text.
        Kind::Int(n) => Ok(n.to_string()),
        _ => Err(bad(v, "a string")),
    }
}

pub(super) fn int(v: &Value) -> Result<i64, ConfError> {
    match &v.kind {
        Kind::Int(n) => Ok(*n),
        _ => Err(bad(v, "an integer")),
    }
}

fn size(v: &Value) -> Result<usize, ConfError> {
    usize::try_from(int(v)?).map_err(|_| bad(v, "a size"))
}

pub(super) fn boolean(v: &Value) -> Result<bool, ConfError> {
    match &v.kind {
        Kind::Bool(b) => Ok(*b),
        _ => Err(bad(v, "a boolean")),
    }
}

/// A port; `-1` asks for a random one (bound as 0).
fn port(v: &Value) -> Result<u16, ConfError> {
    match int(v)? {
        -1 => Ok(0),
        n => u16::try_from(n).map_err(|_| bad(v, "a port")),
    }
}

/// A monitor port: any int from -1 up (-1 is random, 0 is off), kept as nats-server keeps it.
fn monitor_port(v: &Value) -> Result<i32, ConfError> {
    match int(v)? {
        n @ -1..=65535 => Ok(n as i32),
        _ => Err(bad(v, "a port")),
    }
}

/// `http`: `host:port`, `:port`, or a bare port.
fn monitor_listen(v: &Value) -> Result<(Option<String>, i32), ConfError> {
    match &v.kind {
        Kind::Int(_) => Ok((None, monitor_port(v)?)),
        Kind::String(s) => {
            let (host, p) = s.rsplit_once(':').ok_or_else(|| bad(v, "http"))?;
            let p = match p.parse::<i64>().map_err(|_| bad(v, "http"))? {
                n @ -1..=65535 => n as i32,
                _ => return Err(bad(v, "http")),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Ok(((!host.is_empty()).then(|| host.to_string()), p))
        }
        _ => Err(bad(v, "http")),
    }
}

/// `listen`: `host:port`, `:port`, or a bare port.
fn host_port(v: &Value) -> Result<(Option<String>, u16), ConfError> {
    match &v.kind {
        Kind::Int(_) => Ok((None, port(v)?)),
        Kind::String(s) => {
            let (host, p) = s.rsplit_once(':').ok_or_else(|| bad(v, "listen"))?;
            let p = match p.parse::<i64>().map_err(|_| bad(v, "listen"))? {
                -1 => 0,
                n => u16::try_from(n).map_err(|_| bad(v, "listen"))?,
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Ok(((!host.is_empty()).then(|| host.to_string()), p))
        }
        _ => Err(bad(v, "listen")),
    }
}

/// A duration option: a Go duration string, or (with a warning, as nats-server gives) a
/// number of seconds.
fn duration(entry: &Entry, warnings: &mut Vec<String>) -> Result<Duration, ConfError> {
    let v = &entry.value;
    match &v.kind {
        Kind::String(s) => parse_duration(s).ok_or_else(|| bad(v, &entry.key)),
        Kind::Int(_) | Kind::Float(_) => {
            warnings.push(format!(
                "{}:{}:{}: {:?} should be a duration string such as \"2m\"; reading it as seconds",
                v.pos.file.display(),
                v.pos.line,
                v.pos.col,
                entry.key
            ));
            seconds(v)
        }
        _ => Err(bad(v, &entry.key)),
    }
}

/// A number of seconds (integer or fraction), or a duration string.
pub(super) fn seconds(v: &Value) -> Result<Duration, ConfError> {
    match &v.kind {
        Kind::Int(n) if *n >= 0 => Ok(Duration::from_secs(*n as u64)),
        Kind::Float(f) => {
            Duration::try_from_secs_f64(*f).map_err(|_| bad(v, "a number of seconds"))
        }
        Kind::String(s) => parse_duration(s).ok_or_else(|| bad(v, "a duration")),
        _ => Err(bad(v, "a number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_support::{error, options};

    #[test]
    fn limits_and_identity() {
        let (o, warnings) = options(
            "listen: 127.0.0.1:4333\nserver_name: hub\nmax_payload: 2MB\nmax_connections: 100\n\
             max_control_line: 512\nmax_subs: 7\nmax_pending: 1GB\nping_interval: \"30s\"\n\
             ping_max: 5\nwrite_deadline: \"2.5s\"\nlame_duck_duration: \"1m\"\n\
             lame_duck_grace_period: \"5s\"\nserver_tags: [\"a:1\", \"b\"]\n",
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4333));
        assert_eq!(o.server_name.as_deref(), Some("hub"));
        assert_eq!(o.max_payload, 2 * 1024 * 1024);
        assert_eq!(o.max_connections, 100);
        assert_eq!(o.max_control_line, 512);
        assert_eq!(o.max_subscriptions, 7);
        assert_eq!(o.max_pending, 1 << 30);
        assert_eq!(o.ping_interval, Duration::from_secs(30));
        assert_eq!(o.ping_max, 5);
        assert_eq!(o.write_deadline, Duration::from_millis(2500));
        assert_eq!(o.lame_duck_duration, Duration::from_secs(60));
        assert_eq!(o.lame_duck_grace_period, Duration::from_secs(5));
        assert_eq!(o.server_tags, ["a:1", "b"]);
    }

    #[test]
    fn ports_and_random_ports() {
        assert_eq!(options("port: -1").unwrap().0.port, 0);
        assert_eq!(options("listen: \"127.0.0.1:-1\"").unwrap().0.port, 0);
        assert_eq!(options("listen: 127.0.0.1:-1").unwrap().0.host, "127.0.0.1");
        assert_eq!(options("listen: 5222").unwrap().0.port, 5222);
        assert_eq!(options("host: ::1\nport: 1").unwrap().0.host, "::1");
        assert!(error("port: 70000").contains("test.conf:1:"));
    }

    #[test]
    fn bare_seconds_for_durations_warn() {
        let (o, warnings) = options("ping_interval: 60\nwrite_deadline: 3").unwrap();
        assert_eq!(o.ping_interval, Duration::from_secs(60));
        assert_eq!(o.write_deadline, Duration::from_secs(3));
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn logging_and_files() {
        let (o, _) = options(
            "debug: true\ntrace: yes\nlogtime: false\nlog_file: /tmp/t.log\npid_file: /tmp/t.pid\n\
             ports_file_dir: /tmp\n",
        )
        .unwrap();
        assert!(o.debug && o.trace && !o.logtime);
        assert_eq!(o.log_file, Some(PathBuf::from("/tmp/t.log")));
        assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/t.pid")));
        assert_eq!(o.ports_file_dir, Some(PathBuf::from("/tmp")));
    }

    #[test]
    fn authorization_blocks() {
        let (o, _) = options("authorization { user: u, password: \"p w\", timeout: 0.5 }").unwrap();
        assert_eq!(o.username.as_deref(), Some("u"));
        assert_eq!(o.password.as_deref(), Some("p w"));
        assert_eq!(o.auth_timeout(), Duration::from_millis(500));
        let (o, _) = options("authorization { token: s3cr3t }").unwrap();
        assert_eq!(o.token.as_deref(), Some("s3cr3t"));
        let (o, _) = options(
            "authorization {\n  users = [\n    {user: a, password: x}\n    {user: b, password: y}\n  ]\n}\n\
             no_auth_user: b\n",
        )
        .unwrap();
        assert_eq!(o.users.len(), 2);
        assert_eq!(o.no_auth_user.as_deref(), Some("b"));
        // Refused when the server starts, not when the file is read.
        assert!(options("no_auth_user: nobody").is_ok());
    }

    #[test]
    fn unsupported_options_warn_or_fail() {
        // Harmless without: a warning naming the key, and the server still starts.
        let (_, warnings) = options(
            "leafnodes { listen: 127.0.0.1:-1 }\ncluster { name: c, listen: 127.0.0.1:-1 }\n\
             jetstream { store_dir: /tmp/js }\nhttp: 127.0.0.1:-1\n",
        )
        .unwrap();
        // The cluster, leafnodes and jetstream blocks are read now.
        assert!(warnings.is_empty(), "{warnings:?}");
        // Unsafe without: an error.
        assert!(options("allow_non_tls: true").unwrap().0.allow_non_tls);
        let (o, _) = options("port: 1\ntls { cert_file: nope.pem, key_file: nope.key }").unwrap();
        assert_eq!(o.tls.unwrap().defined_at.as_deref(), Some("test.conf:2:1"));
        assert!(error("ocsp: true").contains("not supported"));
    }

    #[test]
    fn plaintext_passwords_are_detected_as_nats_server_does() {
        let plain = |text: &str| options(text).unwrap().0.has_plaintext_passwords();
        let hash = "\"$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.ohJwOa\"";
        assert!(plain("authorization { user: a, password: b }"));
        assert!(plain(&format!(
            "authorization {{ users: [{{user: a, password: {hash}}}, {{user: b, password: c}}] }}"
        )));
        assert!(!plain(&format!(
            "authorization {{ user: a, password: {hash} }}"
        )));
        // Tokens and nkeys are not passwords.
        assert!(!plain("authorization { token: abc }"));
        assert!(!plain(
            "authorization { users: [{nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4}] }"
        ));
    }

    #[test]
    fn monitoring_options() {
        let (o, _) = options("http: 127.0.0.2:-1\n").unwrap();
        assert_eq!(
            (o.http_host.as_deref(), o.http_port),
            (Some("127.0.0.2"), -1)
        );
        let (o, _) = options("http: \":8222\"\n").unwrap();
        assert_eq!((o.http_host, o.http_port), (None, 8222));
        for key in ["http_port", "monitor_port", "http"] {
            let (o, w) = options(&format!("{key}: 8223\nmax_closed_clients: 5\n")).unwrap();
            assert!(w.is_empty(), "{w:?}");
            assert_eq!((o.http_port, o.max_closed_clients), (8223, 5));
        }
        let (o, _) = options("http_base_path: /nats\n").unwrap();
        assert_eq!(o.http_base_path, "/nats");
        assert_eq!(Options::default().http_port, 0);
        assert!(error("http_port: 70000").contains("invalid value"));
        let (o, _) = options("https: \"127.0.0.1:8443\"").unwrap();
        assert_eq!(
            (o.http_host.as_deref(), o.https_port),
            (Some("127.0.0.1"), 8443)
        );
        assert_eq!(options("https_port: -1").unwrap().0.https_port, -1);
    }

    #[test]
    fn unknown_fields_name_their_position() {
        // Defining a variable nobody uses is an unknown field, as in nats-server.
        assert!(error("UNUSED: 1\n").contains("unknown field \"UNUSED\""));
        assert_eq!(
            error("port: 1\nfoo: 2\n"),
            "test.conf:2:1: unknown field \"foo\""
        );
        assert!(
            error("authorization {\n  colour: red\n}").starts_with("test.conf:2:3: unknown field")
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("abc"), None);
        // Out of range: refused, not a panic (a conf fuzzer find).
        assert_eq!(parse_duration("30s1111111111111111111111111111s"), None);
        assert!(error("write_deadline: 99999999999999999999999.5").contains("invalid value"));
        assert!(error("authorization { timeout: -0.5 }").contains("invalid value"));
        assert_eq!(parse_duration(""), None);
    }

    /// A file written the way nats-server's own test configurations are (`server/configs`):
    /// comments, aligned colons, quoted durations, a users block, harness blocks.
    #[test]
    fn nats_server_test_config_style() {
        let text = r#"
# Cluster-free server used by the tests

listen: 127.0.0.1:4242
http: 8222

authorization {
  user:     derek
  password: porkchop
  timeout:  1
}

# logging options
debug:   false
trace:   true
logtime: false
log_file: "/tmp/nats-server/gnatsd.log"
pid_file: "/tmp/nats-server/gnatsd.pid"

# Some system overrides

# maximum number of connections
max_connections: 100

# maximum subscriptions
max_subscriptions: 1000

# maximum protocol control line
max_control_line: 2048

# maximum payload
max_payload: 65536

# ping interval and no pong threshold
ping_interval: "60s"
ping_max: 3

# how long server can block on a socket write to a client
write_deadline: "3s"

lame_duck_duration: "4m"
lame_duck_grace_period: "3s"

jetstream {
  store_dir: "/tmp/js"
  max_mem: 1GB
}
"#;
        let (o, warnings) = options(text).unwrap();
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 4242));
        assert_eq!(o.username.as_deref(), Some("derek"));
        assert_eq!(o.password.as_deref(), Some("porkchop"));
        assert_eq!(o.auth_timeout(), Duration::from_secs(1));
        assert!(!o.debug && o.trace && !o.logtime);
        assert_eq!(o.max_connections, 100);
        assert_eq!(o.max_subscriptions, 1000);
        assert_eq!(o.max_control_line, 2048);
        assert_eq!(o.max_payload, 65536);
        assert_eq!(o.ping_interval, Duration::from_secs(60));
        assert_eq!(o.ping_max, 3);
        assert_eq!(o.write_deadline, Duration::from_secs(3));
        assert_eq!(o.lame_duck_duration, Duration::from_secs(240));
        assert_eq!(o.lame_duck_grace_period, Duration::from_secs(3));
        assert!(warnings.is_empty(), "{warnings:?}");
        let js = o.jetstream.unwrap();
        assert_eq!(js.store_dir.as_deref(), Some(Path::new("/tmp/js")));
        assert_eq!(js.max_memory, Some(1 << 30));
        assert_eq!(o.http_port, 8222);

        // The multi-user style, with variables, as in nats-server's multi-user configs.
        let text = r#"
listen: 127.0.0.1:-1

ALICE_PASS: "$2a$11$dummyhashvalue"
BOB_PASS:   bar

authorization {
  users = [
    {user: alice, password: $ALICE_PASS}
    {user: bob,   password: $BOB_PASS}
  ]
}
"#;
        let (o, _) = options(text).unwrap();
        assert_eq!(o.port, 0);
        assert_eq!(
            o.users,
            [
                User {
                    name: "alice".into(),
                    password: "$2a$11$dummyhashvalue".into(),
                    ..Default::default()
                },
                User {
                    name: "bob".into(),
                    password: "bar".into(),
                    ..Default::default()
                }
            ]
        );
    }
}
