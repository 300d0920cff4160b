//! The accept loop, per-server shared state, reload, lame duck mode and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tracing::{debug, error, info};

use crate::auth;
use crate::client;
use crate::config::Options;
use crate::error;
use crate::monitor::{self, MonitorState};
use crate::outbound::CloseReason;
use crate::protocol::{self, Info};
use crate::router::{Connection, Router};
use crate::stats::ClosedRing;

/// The start of nats-server's fatal error when the monitor port cannot be bound.
pub const MONITOR_BIND_ERROR: &str = "Can't start monitoring: can't listen to the monitor port";

/// The accept backlog asked for; the kernel caps it at `net.core.somaxconn`. Go's net.Listen
/// asks for somaxconn, so nats-server takes a burst of thousands of connects at once; tokio's
/// and std's `bind` ask for 128, and past that the kernel drops handshakes, leaving clients
/// waiting for retransmits (`tests/stress.rs` `ten_thousand_clients` connects 500 at a time).
const LISTEN_BACKLOG: u32 = 65535;

/// How long shutdown waits for connections to flush what is queued to them.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// State every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The options in force; replaced whole by a reload. Held only to clone the `Arc`.
    opts: RwLock<Arc<Options>>,
    /// Bumped by every reload, so a connection can tell its copy of the options is current
    /// with one atomic load per read instead of taking the lock.
    opts_generation: AtomicU64,
    /// Subscriptions and connections.
    pub router: Router,
    /// This process's id, as nats-server makes them: `N` and 55 base-32 characters.
    pub server_id: String,
    /// The configured name, or the id.
    pub server_name: String,
    /// The bound client address.
    pub addr: SocketAddr,
    /// Connection tasks (readers and writers) still running.
    pub tasks: AtomicUsize,
    /// Wakes the accept loop to enter lame duck mode.
    lame_duck: Notify,
    /// Set once lame duck mode has begun (`/healthz` then reports not ready).
    in_lame_duck: AtomicBool,
    /// When the server started (wall clock, for `/varz` `start`).
    pub start: SystemTime,
    /// When the server started (monotonic, for uptimes).
    pub started: Instant,
    /// When the options in force were loaded (start or last reload). Guards only the time.
    config_load_time: Mutex<SystemTime>,
    /// The recently closed connections (`/connz?state=closed`).
    pub closed: ClosedRing,
    /// The bound HTTP monitor address, when monitoring is on.
    pub monitor_addr: Option<SocketAddr>,
    /// The monitor serves HTTPS (`https_port`) rather than HTTP.
    pub monitor_https: bool,
    /// The monitor's own counters.
    pub monitor: MonitorState,
    /// The TLS configuration built from `opts.tls`, replaced with it by a reload. Held only to
    /// clone the `Arc`.
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
}

impl Shared {
    /// The options in force.
    pub fn opts(&self) -> Arc<Options> {
        self.opts.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The TLS configuration new connections are upgraded with, if TLS is on.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes whenever the options are replaced.
    pub fn opts_generation(&self) -> u64 {
        self.opts_generation.load(Ordering::Acquire)
    }

    /// The INFO sent to connection `cid` from `client`.
    pub fn info(&self, cid: u64, client: SocketAddr) -> Info {
        let opts = self.opts();
        Info {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: protocol::NATS_SERVER_VERSION.to_string(),
            proto: protocol::PROTO,
            git_commit: concat!("tern-", env!("CARGO_PKG_VERSION")).to_string(),
            go: "rust".to_string(),
            host: opts.host.clone(),
            port: self.addr.port(),
            headers: true,
            auth_required: opts.auth_required() && opts.no_auth_user.is_none(),
            tls_required: opts.tls.is_some() && !opts.allow_non_tls,
            tls_available: opts.tls.is_some() && opts.allow_non_tls,
            tls_verify: opts
                .tls
                .as_ref()
                .is_some_and(|t| t.verify || t.verify_and_map),
            max_payload: opts.max_payload,
            client_id: cid,
            client_ip: client.ip().to_string(),
            nonce: None,
            connect_info: false,
            remote_account: None,
            ldm: false,
        }
    }

    /// Puts `new` in force, as nats-server's reload does: limits, logging and credentials
    /// change for new and existing connections, and connected clients whose credentials no
    /// longer pass are disconnected with `Authorization Violation`. The listen address cannot
    /// change; asking for it leaves everything as it was.
    pub fn reload(&self, new: Options) -> Result<(), String> {
        let old = self.opts();
        // The options nats-server cannot change at run time, refused with its message (and
        // its Go field names); everything else applies to new and open connections.
        fn fixed<T: PartialEq + std::fmt::Debug>(
            name: &str,
            old: &T,
            new: &T,
        ) -> Result<(), String> {
            match old == new {
                true => Ok(()),
                false => Err(format!(
                    "config reload not supported for {name}: old={old:?}, new={new:?}"
                )),
            }
        }
        fixed("Host", &old.host, &new.host)?;
        fixed("Port", &old.port, &new.port)?;
        fixed("ServerName", &old.server_name, &new.server_name)?;
        fixed("MaxSubs", &old.max_subscriptions, &new.max_subscriptions)?;
        fixed("MaxPending", &old.max_pending, &new.max_pending)?;
        fixed("HTTPHost", &old.http_host, &new.http_host)?;
        fixed("HTTPPort", &old.http_port, &new.http_port)?;
        fixed("HTTPBasePath", &old.http_base_path, &new.http_base_path)?;
        let tls = new
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
        let new = Arc::new(new);
        *self.opts.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        self.opts_generation.fetch_add(1, Ordering::Release);
        *self
            .config_load_time
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
        for conn in self.router.connections_snapshot() {
            let Some(credentials) = conn.credentials() else {
                continue;
            };
            match auth::authenticate(&new, &credentials) {
                None => {
                    info!("{} - Authorization Violation after reload", conn.desc());
                    conn.outbound
                        .append(None, |b| protocol::encode_err(b, "Authorization Violation"));
                    conn.outbound
                        .close(CloseReason::AuthenticationViolation, true);
                }
                Some(user) => self.apply_permissions(&conn, user),
            }
        }
        // Readers pick up their connection's new permissions when they see the generation
        // change, so bump it again now that every connection's are in place.
        self.opts_generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Puts reloaded permissions in force on an open connection and removes the subscriptions
    /// they no longer allow, telling the client about each as nats-server does.
    fn apply_permissions(&self, conn: &Arc<Connection>, user: auth::Authorized) {
        conn.set_permissions(user.permissions.clone());
        let Some(perms) = user.permissions else {
            return;
        };
        let revoked: Vec<_> = {
            let mut subs = conn.subs();
            let mut sids: Vec<_> = subs
                .values()
                .filter(|s| !perms.can_subscribe(&s.subject, s.queue.as_deref()))
                .map(|s| s.sid.clone())
                .collect();
            // In sid order (numeric sids sort as numbers), so the client hears in a stable
            // order; nats-server walks a Go map, in no particular order.
            sids.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
            sids.iter().filter_map(|sid| subs.remove(sid)).collect()
        };
        let who = user.user.unwrap_or_default();
        for sub in revoked {
            self.router.unsubscribe(&sub);
            let text =
                error::subscription_violation(&sub.subject, sub.queue.as_deref(), Some(&sub.sid));
            let lossy = String::from_utf8_lossy;
            let queue = sub
                .queue
                .as_ref()
                .map(|q| format!(" using queue {:?}", lossy(q)))
                .unwrap_or_default();
            info!(
                "Removed sub {:?}{queue} (sid {:?}) for User {who:?} - not authorized",
                lossy(&sub.subject),
                lossy(&sub.sid)
            );
            if conn
                .outbound
                .append(None, |b| protocol::encode_err(b, &text))
                == crate::outbound::Appended::ScheduleFlush
            {
                conn.outbound.wake_writer();
            }
        }
    }

    /// Enters lame duck mode: stop accepting, tell clients, close them gradually, exit.
    pub fn enter_lame_duck_mode(&self) {
        self.in_lame_duck.store(true, Ordering::Relaxed);
        self.lame_duck.notify_one();
    }

    /// Whether lame duck mode has begun.
    pub fn in_lame_duck_mode(&self) -> bool {
        self.in_lame_duck.load(Ordering::Relaxed)
    }

    /// When the options in force were loaded.
    pub fn config_load_time(&self) -> SystemTime {
        *self
            .config_load_time
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// A server with its client listener (and HTTP monitor listener, if configured) bound.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    monitor: Option<TcpListener>,
    /// The monitor's TLS, when it serves HTTPS.
    monitor_tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Binds the HTTP monitor listener when `http_port` is set, then the client listener
    /// (port 0 picks a free port), in nats-server's order.
    pub async fn bind(opts: Options) -> io::Result<Server> {
        let fatal = |text: String| io::Error::new(io::ErrorKind::InvalidInput, text);
        let monitor_tls = match (opts.http_port, opts.https_port, &opts.tls) {
            (0, 0, _) => None,
            (http, https, _) if http != 0 && https != 0 => {
                return Err(fatal(format!(
                    "Can't start monitoring: can't specify both HTTP ({http}) and HTTPs ({https}) ports"
                )));
            }
            (0, _, None) => {
                return Err(fatal(
                    "Can't start monitoring: TLS cert and key required for HTTPS".into(),
                ));
            }
            // HTTPS uses the client certificate, without asking for client certificates.
            (0, _, Some(tls)) => Some(
                crate::tls::server_config(&crate::config::TlsOptions {
                    verify: false,
                    verify_and_map: false,
                    ..tls.clone()
                })
                .map(tokio_rustls::TlsAcceptor::from)
                .map_err(fatal)?,
            ),
            _ => None,
        };
        // At most one of the two is set (checked above).
        let monitor = match opts.http_port + opts.https_port {
            0 => None,
            port => {
                let host = opts.http_host.as_deref().unwrap_or(&opts.host);
                Some(monitor::bind(host, port).await.map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "{MONITOR_BIND_ERROR}: listen tcp {host}:{port}: bind: {}",
                            crate::monitor::os_error_text(&e)
                        ),
                    )
                })?)
            }
        };
        let monitor_addr = monitor.as_ref().map(|l| l.local_addr()).transpose()?;
        let tls = opts
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = listen(&opts.host, opts.port).await?;
        let addr = listener.local_addr()?;
        let closed = ClosedRing::new(opts.max_closed_clients);
        let now = SystemTime::now();
        let server_id = new_server_id();
        let server_name = opts
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone());
        let shared = Arc::new(Shared {
            opts: RwLock::new(Arc::new(opts)),
            opts_generation: AtomicU64::new(0),
            router: Router::new(),
            server_id,
            server_name,
            addr,
            tasks: AtomicUsize::new(0),
            lame_duck: Notify::new(),
            in_lame_duck: AtomicBool::new(false),
            start: now,
            started: Instant::now(),
            config_load_time: Mutex::new(now),
            closed,
            monitor_addr,
            monitor_https: monitor_tls.is_some(),
            monitor: MonitorState::default(),
            tls: RwLock::new(tls),
        });
        Ok(Server {
            shared,
            listener,
            monitor,
            monitor_tls,
        })
    }

    /// The address the HTTP monitor listens on, when monitoring is on.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        self.shared.monitor_addr
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The shared state (for inspection by tests and, later, monitoring).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts clients until `shutdown` completes (or lame duck mode has closed every client),
    /// then closes every connection after flushing what is queued to it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            shared,
            listener,
            monitor,
            monitor_tls,
        } = self;
        let monitor = monitor.map(|l| tokio::spawn(monitor::run(l, shared.clone(), monitor_tls)));
        tokio::pin!(shutdown);
        let lame_duck = loop {
            tokio::select! {
                _ = &mut shutdown => break false,
                _ = shared.lame_duck.notified() => break true,
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let shared = shared.clone();
                        shared.tasks.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move {
                            client::serve(shared.clone(), stream, addr).await;
                            shared.tasks.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        error!("Error accepting client connection: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        };
        drop(listener);
        debug!("Client accept loop exiting..");
        if lame_duck {
            tokio::select! {
                _ = &mut shutdown => {}
                _ = lame_duck_mode(&shared) => {}
            }
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_FLUSH_TIMEOUT;
        while shared.tasks.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            // Repeated so that a connection accepted just before the listener closed is
            // closed too; closing twice does nothing.
            for conn in shared.router.connections_snapshot() {
                conn.outbound.close(CloseReason::ServerShutdown, true);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(monitor) = monitor {
            monitor.abort();
        }
        info!("Server Exiting..");
    }
}

/// Binds the client listener like `TcpListener::bind`, with nats-server's accept backlog.
async fn listen(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

/// nats-server's lame duck mode, after the listener is closed: an INFO with `ldm` to every
/// client that takes asynchronous INFO, a grace period, then the clients closed one by one
/// spread over `lame_duck_duration`.
async fn lame_duck_mode(shared: &Shared) {
    info!("Entering lame duck mode, stop accepting new clients");
    let opts = shared.opts();
    for conn in shared.router.connections_snapshot() {
        if conn.async_info() {
            let mut info = shared.info(conn.cid, shared.addr);
            info.ldm = true;
            if conn.outbound.append(None, |b| info.encode(b))
                == crate::outbound::Appended::ScheduleFlush
            {
                conn.outbound.wake_writer();
            }
        }
    }
    tokio::time::sleep(opts.lame_duck_grace_period).await;
    let conns = shared.router.connections_snapshot();
    if conns.is_empty() {
        return;
    }
    info!("Closing existing clients");
    let pause = opts.lame_duck_duration / conns.len() as u32;
    for conn in conns {
        conn.outbound.close(CloseReason::ServerShutdown, true);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Writes nats-server's ports file, `<dir>/<program>_<pid>.ports`, listing the client URL and
/// the monitoring URL. Returns its path (removed by the caller at exit).
pub fn write_ports_file(dir: &Path, program: &str, shared: &Shared) -> io::Result<PathBuf> {
    let path = dir.join(format!("{program}_{}.ports", std::process::id()));
    std::fs::write(&path, ports_json(shared).to_string())?;
    Ok(path)
}

/// The ports file's content: `{"nats":[...],"monitoring":[...]}` (a wildcard address is
/// listed as loopback, where it is reachable).
pub fn ports_json(shared: &Shared) -> serde_json::Value {
    let opts = shared.opts();
    let host = monitor::url_host(&opts.host);
    // With TLS on the client port, nats-server lists it as `tls://`.
    let scheme = if opts.tls.is_some() { "tls" } else { "nats" };
    let mut ports =
        serde_json::json!({ "nats": [format!("{scheme}://{host}:{}", shared.addr.port())] });
    if let Some(addr) = shared.monitor_addr {
        let http_host = opts.http_host.as_deref().unwrap_or(&opts.host);
        let url = monitor::url(addr, http_host);
        let url = match shared.monitor_https {
            true => url.replacen("http://", "https://", 1),
            false => url,
        };
        ports["monitoring"] = serde_json::json!([url]);
    }
    ports
}

/// A random server id in nats-server's shape: `N` followed by 55 base-32 characters.
fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut id = String::with_capacity(56);
    id.push('N');
    for _ in 0..55 {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}
