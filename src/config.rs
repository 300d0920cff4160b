//! Server options: plain data with nats-server's defaults. The command line (`main.rs`) and,
//! later, the config file fill it in; nothing here does I/O.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Time a client has to send CONNECT when auth is required (`authorization.timeout`, 2 s).
    pub auth_timeout: Duration,
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
            auth_timeout: Duration::from_secs(2),
            write_deadline: Duration::from_secs(10),
            username: None,
            password: None,
            token: None,
            debug: false,
            trace: false,
            logtime: true,
            log_file: None,
            pid_file: None,
        }
    }
}

impl Options {
    /// Whether clients must authenticate.
    pub fn auth_required(&self) -> bool {
        self.username.is_some() || self.token.is_some()
    }
}
