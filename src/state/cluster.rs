//! What the server knows of its cluster beyond the routes themselves: its own cluster address,
//! the client URLs it tells peers, the routes it has been told of (gossip) and must dial, and
//! whether it is stopping.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::debug;

use super::Shared;
use crate::config::cluster::{route_url, RouteUrl};
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
