//! What the server knows of its cluster beyond the routes themselves: its own cluster address,
//! the client URLs it tells peers and those it tells clients (`connect_urls`, pushed to them as
//! peers come and go), the routes it has been told of (gossip) and must dial, and whether it
//! is stopping.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::debug;

use super::Shared;
use crate::config::cluster::{route_url, RouteUrl};
use crate::engine::outbound::Appended;
use crate::engine::route::Route;
use crate::proto::route::{PeerInfo, RouteInfo};

/// The cluster side of the shared state.
#[derive(Debug)]
pub struct ClusterState {
    /// The bound cluster listen address.
    addr: OnceLock<SocketAddr>,
    /// The server is shutting down: no more route dials.
    stopping: AtomicBool,
    /// Routes learned by gossip, for the server layer to dial.
    dial_tx: UnboundedSender<RouteUrl>,
    dial_rx: Mutex<Option<UnboundedReceiver<RouteUrl>>>,
    /// Route URLs being dialed (explicit or learned), so each is dialed once.
    dialing: Mutex<HashSet<String>>,
    /// This server's client URLs (`host:port`), as told to routes and clients.
    client_urls: Mutex<Vec<String>>,
    /// The route peers' client URLs, as told to clients.
    peer_urls: Mutex<PeerUrls>,
}

/// The route peers' client URLs, each counted once per route that announced it (nats-server's
/// `refCountedUrlSet`), in the order they were first announced.
#[derive(Debug, Default)]
struct PeerUrls {
    /// Set by the first peer URL: until then clients are told no `connect_urls` at all, as
    /// nats-server tells none before its first route.
    announced: bool,
    urls: Vec<(String, usize)>,
}

impl Default for ClusterState {
    fn default() -> Self {
        let (dial_tx, dial_rx) = unbounded_channel();
        ClusterState {
            addr: OnceLock::new(),
            stopping: AtomicBool::new(false),
            dial_tx,
            dial_rx: Mutex::new(Some(dial_rx)),
            dialing: Mutex::new(HashSet::new()),
            client_urls: Mutex::new(Vec::new()),
            peer_urls: Mutex::new(PeerUrls::default()),
        }
    }
}

/// What tern's routes cannot do yet, refused at start rather than run without: route TLS and
/// route permissions (a route would otherwise run in plaintext, or unfiltered).
pub fn check(opts: &crate::config::Options) -> Result<(), String> {
    let Some(cluster) = &opts.cluster else {
        return Ok(());
    };
    if cluster.tls.is_some() {
        return Err(
            "cluster tls is not supported by tern yet (routes would run in plaintext)".into(),
        );
    }
    if cluster.import.is_some() || cluster.export.is_some() {
        return Err("cluster permissions are not supported by tern yet".into());
    }
    Ok(())
}

impl Shared {
    /// The bound cluster address, once the cluster port listens.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster.addr.get().copied()
    }

    /// Records the bound cluster address.
    pub fn set_cluster_addr(&self, addr: SocketAddr) {
        let _ = self.cluster.addr.set(addr);
    }

    /// Whether the server is shutting down.
    pub fn stopping(&self) -> bool {
        self.cluster.stopping.load(Ordering::Acquire)
    }

    /// The server is shutting down: route dialers stop.
    pub fn set_stopping(&self) {
        self.cluster.stopping.store(true, Ordering::Release);
    }

    /// This server's client URLs.
    pub fn client_urls(&self) -> Vec<String> {
        self.cluster
            .client_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records this server's client URLs (the server layer knows the interfaces).
    pub fn set_client_urls(&self, urls: Vec<String>) {
        *self
            .cluster
            .client_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = urls;
    }

    /// The `connect_urls` of the INFO clients are sent: our own client URLs, then every route
    /// peer's; only the peers' in lame duck mode; none before the first peer announced any.
    pub fn connect_urls(&self) -> Vec<String> {
        let lame_duck = self.in_lame_duck_mode();
        let peers = self.peer_urls();
        if !peers.announced && !lame_duck {
            return Vec::new();
        }
        let own = match lame_duck {
            true => Vec::new(),
            false => self.client_urls(),
        };
        own.into_iter()
            .chain(peers.urls.iter().map(|(url, _)| url.clone()))
            .collect()
    }

    /// A route peer announced its client URLs (`connect_urls` of its INFO): clients that take
    /// asynchronous INFO are told when that adds a URL. Not with `cluster.no_advertise`, nor
    /// in lame duck mode (nats-server's `addConnectURLsAndSendINFOToClients`).
    pub fn add_peer_urls(&self, urls: &[String]) {
        if self.in_lame_duck_mode() || self.no_advertise() {
            return;
        }
        let mut changed = false;
        {
            let mut peers = self.peer_urls();
            for url in urls {
                match peers.urls.iter_mut().find(|(u, _)| u == url) {
                    Some((_, count)) => *count += 1,
                    None => {
                        peers.urls.push((url.clone(), 1));
                        changed = true;
                    }
                }
            }
            peers.announced |= changed;
        }
        if changed {
            self.push_client_info();
        }
    }

    /// A route peer's client URLs are gone (the route closed, or its server entered lame duck
    /// mode): clients are told when that removes a URL.
    pub fn remove_peer_urls(&self, urls: &[String]) {
        if self.in_lame_duck_mode() || self.no_advertise() {
            return;
        }
        let mut changed = false;
        {
            let mut peers = self.peer_urls();
            for url in urls {
                if let Some(i) = peers.urls.iter().position(|(u, _)| u == url) {
                    peers.urls[i].1 -= 1;
                    if peers.urls[i].1 == 0 {
                        peers.urls.remove(i);
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.push_client_info();
        }
    }

    /// Sends the current INFO to every client that takes asynchronous INFO (CONNECT
    /// `protocol` 1, first PONG sent: nats-server's `sendAsyncInfoToClients`).
    pub fn push_client_info(&self) {
        for conn in self.router.connections_snapshot() {
            if conn.async_info() {
                let info = match conn.is_websocket() {
                    true => self.websocket_info(conn.cid, conn.addr),
                    false => self.info(conn.cid, conn.addr),
                };
                if conn.outbound.append(None, |b| info.encode(b)) == Appended::ScheduleFlush {
                    conn.outbound.wake_writer();
                }
            }
        }
    }

    /// The INFO this server sends its routes (and, with `ldm`, when it enters lame duck mode).
    pub fn route_info(&self) -> RouteInfo {
        let opts = self.opts();
        let cluster = opts.cluster.clone().unwrap_or_default();
        RouteInfo {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: crate::proto::protocol::NATS_SERVER_VERSION.to_string(),
            proto: 2,
            go: "tern".to_string(),
            host: cluster.host.clone(),
            port: self.cluster_addr().map_or(cluster.port, |a| a.port()),
            headers: true,
            auth_required: cluster.username.is_some(),
            max_payload: opts.max_payload,
            ip: cluster
                .advertise
                .as_ref()
                .map(|a| format!("nats-route://{a}/")),
            cluster: cluster.name.clone().unwrap_or_default(),
            connect_urls: match cluster.no_advertise {
                true => Vec::new(),
                false => self.client_urls(),
            },
            compression: "off".to_string(),
            lnoc: true,
            lnocu: true,
            ..RouteInfo::default()
        }
    }

    /// Lame duck mode begins: every route is told (our route INFO with `ldm`), so that its
    /// server stops sending its clients here.
    pub fn send_lame_duck_to_routes(&self) {
        let mut info = self.route_info();
        info.ldm = true;
        // nats-server's lame duck INFO has no compression field.
        info.compression = String::new();
        for route in self.router.routes().all() {
            route.send(|b| info.encode(b));
        }
    }

    fn no_advertise(&self) -> bool {
        self.opts().cluster.as_ref().is_some_and(|c| c.no_advertise)
    }

    fn peer_urls(&self) -> std::sync::MutexGuard<'_, PeerUrls> {
        self.cluster
            .peer_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The routes to dial, learned by gossip: taken once by the server layer.
    pub fn take_route_dials(&self) -> Option<UnboundedReceiver<RouteUrl>> {
        self.cluster
            .dial_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Marks `url` as dialed; false if it already is.
    pub fn claim_dial(&self, url: &RouteUrl) -> bool {
        self.cluster
            .dialing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("{}:{}", url.host, url.port))
    }

    /// `url` is no longer dialed (an implicit route gave up).
    pub fn release_dial(&self, url: &RouteUrl) {
        self.cluster
            .dialing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&format!("{}:{}", url.host, url.port));
    }

    /// A route told us of another server (`info`): dial it unless it is us, already a route,
    /// or already being dialed (an implicit route, with our cluster credentials).
    pub fn learn_route(&self, info: &PeerInfo) {
        if info.server_id == self.server_id || self.router.routes().contains(&info.server_id) {
            return;
        }
        let text = match info.ip.is_empty() {
            false => info.ip.clone(),
            true => format!("nats-route://{}:{}/", info.host, info.port),
        };
        let Ok(mut url) = route_url(text.trim_end_matches('/')) else {
            return;
        };
        if let Some(cluster) = &self.opts().cluster {
            if url.username.is_none() && info.auth_required {
                url.username = cluster.username.clone();
                url.password = cluster.password.clone();
            }
        }
        if self.claim_dial(&url) {
            debug!("Adding implicit route to {:?}", info.server_name);
            let _ = self.cluster.dial_tx.send(url);
        }
    }

    /// A route registered: tell every other route about the new server (gossip), so that the
    /// mesh stays full, with the address it can be reached at.
    pub fn route_registered(&self, route: &Arc<Route>, info: &PeerInfo) {
        let ip = match info.ip.is_empty() {
            false => info.ip.clone(),
            true => format!("nats-route://{}:{}/", route.conn.addr.ip(), info.port),
        };
        let gossip = RouteInfo {
            server_id: info.server_id.clone(),
            server_name: info.server_name.clone(),
            version: crate::proto::protocol::NATS_SERVER_VERSION.to_string(),
            proto: 2,
            go: "tern".to_string(),
            host: info.host.clone(),
            port: info.port,
            headers: true,
            auth_required: info.auth_required,
            max_payload: self.opts().max_payload,
            ip: Some(ip),
            cluster: info.cluster.clone(),
            connect_urls: info.connect_urls.clone(),
            compression: "off".to_string(),
            lnoc: true,
            lnocu: true,
            gossip_mode: Some(if route.solicited { 0 } else { 1 }),
            ..RouteInfo::default()
        };
        for other in self.router.routes().all() {
            if !Arc::ptr_eq(&other, route) {
                other.send(|b| gossip.encode(b));
            }
        }
    }

    /// A route closed.
    pub fn route_closed(&self, route: &Arc<Route>) {
        debug!("Removed route to {:?}", route.remote_name);
    }
}
