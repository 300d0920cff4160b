//! The server: its listeners, the accept loop, lame duck mode, graceful shutdown and the ports
//! file. The top of the house: it starts connections (`conn`) and the monitor (`monitor`)
//! over the shared state (`state`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tracing::{debug, error, info};

use crate::config::Options;
use crate::conn::client;
use crate::engine::outbound::CloseReason;
use crate::monitor;
use crate::security::tls::ServerTls;
pub use crate::state::Shared;

/// The start of nats-server's fatal error when the monitor port cannot be bound.
pub const MONITOR_BIND_ERROR: &str = "Can't start monitoring: can't listen to the monitor port";

/// The accept backlog asked for; the kernel caps it at `net.core.somaxconn`. Go's net.Listen
/// asks for somaxconn, so nats-server takes a burst of thousands of connects at once; tokio's
/// and std's `bind` ask for 128, and past that the kernel drops handshakes, leaving clients
/// waiting for retransmits (`tests/stress.rs` `ten_thousand_clients` connects 500 at a time).
const LISTEN_BACKLOG: u32 = 65535;

/// How long shutdown waits for connections to flush what is queued to them.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A server with its client listener (and HTTP monitor listener, if configured) bound.
pub struct Server {
    shared: Arc<Shared>,
    /// The system account's services, subscribed at bind and run by `run`.
    system_services: Option<crate::sys::Services>,
    listener: TcpListener,
    monitor: Option<TcpListener>,
    /// The monitor's TLS, when it serves HTTPS.
    monitor_tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Binds the HTTP monitor listener when `http_port` is set, then the client listener
    /// (port 0 picks a free port), in nats-server's order.
    pub async fn bind(opts: Options) -> io::Result<Server> {
        let tls =
            ServerTls::build(&opts).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Server::bind_with(opts, tls).await
    }

    /// As [`Server::bind`], with the TLS configurations already built from `opts`.
    pub async fn bind_with(opts: Options, tls: ServerTls) -> io::Result<Server> {
        let fatal = |text: String| io::Error::new(io::ErrorKind::InvalidInput, text);
        let monitor_tls = match (opts.http_port, opts.https_port, &tls.monitor) {
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
            (0, _, Some(config)) => Some(tokio_rustls::TlsAcceptor::from(config.clone())),
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
        let listener = listen(&opts.host, opts.port).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(opts, addr, monitor_addr, monitor_tls.is_some(), tls.clients)
            .map_err(fatal)?;
        let shared = Arc::new(shared);
        Ok(Server {
            system_services: crate::sys::start(&shared),
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
            system_services,
            listener,
            monitor,
            monitor_tls,
        } = self;
        let monitor = monitor.map(|l| tokio::spawn(monitor::run(l, shared.clone(), monitor_tls)));
        let system_services = system_services.map(crate::sys::Services::spawn);
        tokio::pin!(shutdown);
        let lame_duck = loop {
            tokio::select! {
                _ = &mut shutdown => break false,
                _ = shared.lame_duck_requested() => break true,
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
        if let Some(services) = system_services {
            services.abort();
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
                == crate::engine::outbound::Appended::ScheduleFlush
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
