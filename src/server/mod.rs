//! The server: its listeners, the accept loop, lame duck mode, graceful shutdown and the ports
//! file. The top of the house: it starts connections (`conn`) and the monitor (`monitor`)
//! over the shared state (`state`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

use crate::config::Options;
use crate::conn::{client, leaf as leaf_conn, route, websocket};
use crate::engine::outbound::CloseReason;
use crate::jetstream;
use crate::monitor;
use crate::security::tls::ServerTls;
pub use crate::state::Shared;
pub use listen::listen;

mod listen;

/// The start of nats-server's fatal error when the monitor port cannot be bound.
pub const MONITOR_BIND_ERROR: &str = "Can't start monitoring: can't listen to the monitor port";

/// The start of nats-server's fatal error when JetStream cannot run.
pub const JETSTREAM_START_ERROR: &str = "Can't start JetStream";

/// A start-up failure whose text is the whole fatal log line, worded as nats-server words it
/// (`Error listening on router port: ...`). Carried inside the `io::Error` that
/// [`Server::bind`] returns; [`StartError::text`] finds it.
#[derive(Debug)]
pub struct StartError(String);

impl StartError {
    fn error(text: String) -> io::Error {
        io::Error::other(StartError(text))
    }

    /// The fatal line for `err` when it is a [`StartError`].
    pub fn text(err: &io::Error) -> Option<&str> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<StartError>())
            .map(|start| start.0.as_str())
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// `listen tcp HOST:PORT: bind: <why>`, Go's text for a failed bind.
fn bind_error_text(host: &str, port: u16, err: &io::Error) -> String {
    format!(
        "listen tcp {host}:{port}: bind: {}",
        crate::monitor::os_error_text(err)
    )
}

/// How long shutdown waits for connections to flush what is queued to them.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for the system services to announce it.
const SHUTDOWN_EVENT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often shutdown closes again the connections that registered since it began.
const SHUTDOWN_RECLOSE_EVERY: Duration = Duration::from_millis(50);

/// A server with its client listener (and HTTP monitor listener, if configured) bound.
pub struct Server {
    shared: Arc<Shared>,
    /// The system account's services, subscribed at bind and run by `run`.
    system_services: Option<crate::sys::Services>,
    listener: TcpListener,
    /// The cluster port's listener, when the server is in a cluster.
    routes: Option<TcpListener>,
    /// The leafnode port's listener, when `leafnodes` has a port.
    leafnodes: Option<TcpListener>,
    /// The WebSocket listener and its TLS, when `websocket` is configured.
    websocket: Option<(TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    monitor: Option<TcpListener>,
    /// The monitor's TLS, when it serves HTTPS.
    monitor_tls: Option<tokio_rustls::TlsAcceptor>,
    /// JetStream's resolved configuration, when it is enabled.
    jetstream: Option<jetstream::Config>,
    /// JetStream's task, subscribed at bind and run by `run`.
    jetstream_service: Option<jetstream::service::Service>,
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
    pub async fn bind_with(mut opts: Options, tls: ServerTls) -> io::Result<Server> {
        let fatal = StartError::error;
        // The URL resolver's account server must answer; the system account is fetched. Its
        // failure is printed before any log line (main), as nats-server does.
        crate::state::resolver::prepare(&mut opts)
            .await
            .map_err(|text| io::Error::new(io::ErrorKind::InvalidInput, text))?;
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
        let jetstream = match &opts.jetstream {
            None => None,
            Some(js) => {
                if let Some(why) = jetstream::refusal(&opts) {
                    return Err(fatal(format!("{JETSTREAM_START_ERROR}: {why}")));
                }
                let config = jetstream::Config::resolve(js)
                    .map_err(|e| fatal(format!("{JETSTREAM_START_ERROR}: {e}")))?;
                Some(config)
            }
        };
        // At most one of the two is set (checked above).
        let monitor = match opts.http_port + opts.https_port {
            0 => None,
            port => {
                let host = opts.http_host.as_deref().unwrap_or(&opts.host);
                // -1 is a random port.
                let port = u16::try_from(port.max(0)).map_err(io::Error::other)?;
                Some(listen(host, port).await.map_err(|e| {
                    fatal(format!(
                        "{MONITOR_BIND_ERROR}: {}",
                        bind_error_text(host, port, &e)
                    ))
                })?)
            }
        };
        let monitor_addr = monitor.as_ref().map(|l| l.local_addr()).transpose()?;
        // nats-server opens the WebSocket listener before the client one.
        let websocket = match &opts.websocket {
            Some(ws) => {
                let listener = listen(&ws.host, ws.port).await.map_err(|e| {
                    fatal(format!(
                        "Unable to listen for websocket connections: {}",
                        bind_error_text(&ws.host, ws.port, &e)
                    ))
                })?;
                Some((listener, tls.websocket.clone()))
            }
            None => None,
        };
        let websocket_addr = websocket
            .as_ref()
            .map(|(l, _)| l.local_addr())
            .transpose()?;
        let listener = listen(&opts.host, opts.port).await.map_err(|e| {
            let (host, port) = (&opts.host, opts.port);
            fatal(format!(
                "Error listening on port: {host}:{port}, \"{}\"",
                bind_error_text(host, port, &e)
            ))
        })?;
        let addr = listener.local_addr()?;
        let routes = match &opts.cluster {
            Some(cluster) => Some(listen(&cluster.host, cluster.port).await.map_err(|e| {
                fatal(format!(
                    "Error listening on router port: {} - {}",
                    cluster.port,
                    bind_error_text(&cluster.host, cluster.port, &e)
                ))
            })?),
            None => None,
        };
        let leafnodes = match opts.leafnodes.as_ref().filter(|l| l.listens) {
            Some(leaf) => Some(listen(&leaf.host, leaf.port).await.map_err(|e| {
                fatal(format!(
                    "Error listening on leafnode port: {} - {}",
                    leaf.port,
                    bind_error_text(&leaf.host, leaf.port, &e)
                ))
            })?),
            None => None,
        };
        let shared = Shared::new(opts, addr, monitor_addr, monitor_tls.is_some(), tls.clients)
            .map_err(fatal)?;
        shared.set_route_tls(tls.routes);
        let shared = Arc::new(shared);
        if let Some(routes) = &routes {
            shared.set_cluster_addr(routes.local_addr()?);
        }
        if let Some(leafnodes) = &leafnodes {
            shared.set_leaf_addr(leafnodes.local_addr()?);
        }
        if let Some(addr) = websocket_addr {
            shared.set_websocket_addr(addr);
        }
        shared.set_client_urls(client_urls(&shared.opts().host, addr));
        if let (Some(ws), Some(addr)) = (&shared.opts().websocket, websocket_addr) {
            let urls = match &ws.advertise {
                Some(advertise) => vec![advertise.clone()],
                None => client_urls(&ws.host, addr),
            };
            shared.set_websocket_urls(urls);
        }
        let jetstream_service = match &jetstream {
            Some(config) => Some(
                jetstream::service::start(&shared, config)
                    .map_err(|e| fatal(format!("{JETSTREAM_START_ERROR}: {e}")))?,
            ),
            None => None,
        };
        Ok(Server {
            jetstream_service,
            system_services: crate::sys::start(&shared),
            shared,
            listener,
            routes,
            leafnodes,
            websocket,
            monitor,
            monitor_tls,
            jetstream,
        })
    }

    /// JetStream as it runs, when it is enabled.
    pub fn jetstream(&self) -> Option<&jetstream::Config> {
        self.jetstream.as_ref()
    }

    /// The address the WebSocket listener listens on, when it is configured.
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.shared.websocket_addr()
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
            routes,
            leafnodes,
            websocket,
            monitor,
            monitor_tls,
            jetstream: _,
            jetstream_service,
        } = self;
        let cluster = routes.map(|l| tokio::spawn(run_cluster(l, shared.clone())));
        let leafs = shared
            .opts()
            .leafnodes
            .is_some()
            .then(|| tokio::spawn(run_leafnodes(leafnodes, shared.clone())));
        let websocket =
            websocket.map(|(l, tls)| tokio::spawn(run_websocket(l, tls, shared.clone())));
        let monitor = monitor.map(|l| tokio::spawn(monitor::run(l, shared.clone(), monitor_tls)));
        let system_services = system_services.map(crate::sys::Services::spawn);
        let jetstream_service = jetstream_service.map(jetstream::service::Service::spawn);
        tokio::pin!(shutdown);
        let lame_duck = loop {
            tokio::select! {
                _ = &mut shutdown => break false,
                _ = shared.lame_duck_requested() => break true,
                accepted = listener.accept() => match accepted {
                    Ok((stream, addr)) => {
                        // The dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`; Go
                        // shows (and matches) them as plain IPv4.
                        let addr = std::net::SocketAddr::new(addr.ip().to_canonical(), addr.port());
                        shared.tasks.spawn(client::serve(shared.clone(), stream, addr));
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
        if let Some(websocket) = websocket {
            websocket.abort();
        }
        debug!("Client accept loop exiting..");
        if lame_duck {
            tokio::select! {
                _ = &mut shutdown => {}
                _ = lame_duck_mode(&shared) => {}
            }
        }
        shared.tasks.close();
        shared.set_stopping();
        if system_services.is_some() {
            // The cluster hears of it while the routes are still up.
            let (done, told) = tokio::sync::oneshot::channel();
            shared
                .sys
                .send(crate::state::events::SysInput::Shutdown(done));
            let _ = tokio::time::timeout(SHUTDOWN_EVENT_TIMEOUT, told).await;
        }
        let closed = async {
            loop {
                for conn in shared.router.connections_snapshot() {
                    conn.outbound.close(CloseReason::ServerShutdown, true);
                }
                for route in shared.router.routes().all() {
                    route.conn.outbound.close(CloseReason::ServerShutdown, true);
                }
                for leaf in shared.leafnode.leafs.all() {
                    leaf.conn.outbound.close(CloseReason::ServerShutdown, true);
                }
                // Closed again now and then: a connection accepted just before the listener
                // closed may register after the first round. Closing twice does nothing.
                let recheck = tokio::time::sleep(SHUTDOWN_RECLOSE_EVERY);
                tokio::select! {
                    _ = shared.tasks.wait() => break,
                    _ = recheck => {}
                }
            }
        };
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH_TIMEOUT, closed).await;
        if let Some(monitor) = monitor {
            monitor.abort();
        }
        if let Some(services) = system_services {
            services.abort();
        }
        if let Some(service) = jetstream_service {
            service.abort();
        }
        if let Some(cluster) = cluster {
            cluster.abort();
        }
        if let Some(leafs) = leafs {
            leafs.abort();
        }
        info!("Server Exiting..");
    }
}

/// The cluster: accepts routes on the cluster port, dials the configured routes (for ever)
/// and those learned by gossip (`connect_retries` more times), until aborted.
async fn run_cluster(listener: TcpListener, shared: Arc<Shared>) {
    let opts = shared.opts();
    let Some(cluster) = opts.cluster.clone() else {
        return;
    };
    if let Some(name) = &cluster.name {
        info!("Cluster name is {name}");
    }
    if let Some(addr) = shared.cluster_addr() {
        // As the client line: the configured host (IPv6 in brackets), the bound port.
        let host = match cluster.host.contains(':') {
            true => format!("[{}]", cluster.host),
            false => cluster.host.clone(),
        };
        info!("Listening for route connections on {host}:{}", addr.port());
    }
    if cluster.tls.as_ref().is_some_and(|t| t.insecure) {
        warn!("TLS certificate chain and hostname of solicited routes will not be verified. DO NOT USE IN PRODUCTION!");
    }
    let mut dialers = tokio::task::JoinSet::new();
    for url in &cluster.routes {
        if shared.claim_dial(url) {
            dialers.spawn(route::solicit(shared.clone(), url.clone(), None));
        }
    }
    let mut learned = shared.take_route_dials();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    shared.tasks.spawn(route::accept(shared.clone(), stream, addr));
                }
                Err(err) => {
                    error!("Error accepting route connection: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some((url, retries)) = async { match learned.as_mut() { Some(rx) => rx.recv().await, None => None } } => {
                dialers.spawn(route::solicit(shared.clone(), url, retries));
            }
            Some(_) = dialers.join_next(), if !dialers.is_empty() => {}
        }
    }
}

/// Leafnodes: accepts them on the leafnode port (when there is one) and dials every remote
/// that is not `disabled` (for ever), until aborted.
async fn run_leafnodes(listener: Option<TcpListener>, shared: Arc<Shared>) {
    let opts = shared.opts();
    let Some(leaf) = opts.leafnodes.clone() else {
        return;
    };
    let mut dialers = tokio::task::JoinSet::new();
    for remote in leaf.remotes.iter().filter(|r| !r.disabled) {
        dialers.spawn(leaf_conn::solicit(shared.clone(), remote.clone()));
    }
    let Some(listener) = listener else {
        while dialers.join_next().await.is_some() {}
        return;
    };
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                shared
                    .tasks
                    .spawn(leaf_conn::accept(shared.clone(), stream, addr));
            }
            Err(err) => {
                error!("Error accepting leafnode connection: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts WebSocket clients until aborted.
async fn run_websocket(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                tokio::spawn(websocket::serve(shared.clone(), stream, addr, tls.clone()));
            }
            Err(err) => {
                error!("Error accepting websocket connection: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// This server's client (or WebSocket) URLs as peers tell their clients (`connect_urls`): the
/// listen address, or every interface's for a wildcard one.
fn client_urls(host: &str, addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    match host {
        "0.0.0.0" | "::" | "" => listen::interface_addresses()
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .map(|ip| SocketAddr::new(ip, port).to_string())
            .collect(),
        host if host.contains(':') => vec![format!("[{host}]:{port}")],
        host => vec![format!("{host}:{port}")],
    }
}

/// nats-server's lame duck mode, after the listener is closed: an INFO with `ldm` to every
/// route and to every client that takes asynchronous INFO, a grace period, then the clients closed one by one
/// spread over `lame_duck_duration`.
async fn lame_duck_mode(shared: &Shared) {
    info!("Entering lame duck mode, stop accepting new clients");
    let opts = shared.opts();
    shared.send_lame_duck_to_routes();
    // In lame duck mode, the INFO has `ldm` and only the other servers' client URLs.
    shared.push_client_info();
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
    std::fs::write(&path, ports_json(shared))?;
    Ok(path)
}

/// The ports file's content: `{"nats":[...],"monitoring":[...]}`. A listener on a wildcard
/// address is listed at every interface's address, as nats-server lists it.
pub fn ports_json(shared: &Shared) -> String {
    let opts = shared.opts();
    // With TLS on the client port, nats-server lists it as `tls://`.
    let scheme = if opts.tls.is_some() { "tls" } else { "nats" };
    let monitoring = shared.monitor_addr.map(|addr| {
        let http_host = opts.http_host.as_deref().unwrap_or(&opts.host);
        let scheme = if shared.monitor_https {
            "https"
        } else {
            "http"
        };
        urls(scheme, http_host, addr.port())
    });
    // nats-server's `Ports` struct: `nats` before `monitoring`.
    let websocket = opts
        .websocket
        .as_ref()
        .zip(shared.websocket_addr())
        .map(|(ws, addr)| {
            let scheme = if ws.tls.is_some() { "wss" } else { "ws" };
            urls(scheme, &ws.host, addr.port())
        });
    #[derive(serde::Serialize)]
    struct Ports {
        nats: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        monitoring: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        websocket: Option<Vec<String>>,
    }
    let ports = Ports {
        nats: urls(scheme, &opts.host, shared.addr.port()),
        monitoring,
        websocket,
    };
    serde_json::to_string(&ports).expect("strings serialize")
}

/// `scheme://host:port` for a listener on `host`; for a wildcard host, one URL per interface
/// address (Go's `formatURL` in nats-server's `server.go`), or loopback where the interfaces
/// cannot be listed.
fn urls(scheme: &str, host: &str, port: u16) -> Vec<String> {
    let wildcard = host.is_empty()
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
    let addresses = if wildcard {
        listen::interface_addresses()
    } else {
        Vec::new()
    };
    if addresses.is_empty() {
        return vec![format!("{scheme}://{}:{port}", monitor::url_host(host))];
    }
    addresses
        .into_iter()
        .map(|ip| format!("{scheme}://{}", SocketAddr::new(ip, port)))
        .collect()
}
