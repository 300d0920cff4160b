//! What the server knows of its cluster beyond the routes themselves: its own cluster address,
//! the client URLs it tells peers and those it tells clients (`connect_urls`, pushed to them as
//! peers come and go), the routes it has been told of (gossip) and must dial, and whether it
//! is stopping.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tracing::{debug, error, info};

use super::Shared;
use crate::config::cluster::{route_url, ClusterOptions, RouteUrl};
use crate::config::Options;
use crate::engine::outbound::{Appended, CloseReason};
use crate::engine::permissions::{Permissions, SubjectPermission};
use crate::engine::route::Route;
use crate::proto::route::{PeerInfo, PermissionJson, RouteInfo};
use crate::security::tls::{CertIdentity, RouteTls};

/// The cluster side of the shared state.
#[derive(Debug)]
pub struct ClusterState {
    /// The bound cluster listen address.
    addr: OnceLock<SocketAddr>,
    /// The server is shutting down: no more route dials.
    stopping: AtomicBool,
    /// Routes for the server layer to dial: learned by gossip (with the attempts they get),
    /// or added to `routes` by a reload (`None`: for ever).
    dial_tx: UnboundedSender<RouteDial>,
    dial_rx: Mutex<Option<UnboundedReceiver<RouteDial>>>,
    /// Route URLs being dialed (explicit or learned), so each is dialed once.
    dialing: Mutex<HashSet<String>>,
    /// This server's client URLs (`host:port`), as told to routes and clients.
    client_urls: Mutex<Vec<String>>,
    /// This server's WebSocket URLs (`host:port`), as told to routes and WebSocket clients.
    websocket_urls: Mutex<Vec<String>>,
    /// The route peers' client URLs, as told to clients.
    peer_urls: Mutex<PeerUrls>,
    /// The route peers' WebSocket URLs (`ws_connect_urls` of their INFO), as told to
    /// WebSocket clients.
    peer_websocket_urls: Mutex<PeerUrls>,
    /// The route TLS, when `cluster { tls }` is configured (fixed: it cannot be reloaded).
    tls: OnceLock<RouteTls>,
    /// How each registered route came to be, by its connection's cid: what a reload checks
    /// it against (its URL may leave `routes`, its credentials may no longer pass).
    links: Mutex<HashMap<u64, RouteLink>>,
    /// Held while an INFO carrying `connect_urls` is built and queued: a client's first INFO
    /// (built by its reader) and a push to all clients (built by a route's reader) are queued
    /// in the order they were built, so a client's last INFO is never the older one.
    info_order: Mutex<()>,
}

/// A route to dial and how many more attempts it gets (`None`: for ever).
pub type RouteDial = (RouteUrl, Option<u32>);

/// How a registered route came to be.
#[derive(Debug, Clone)]
pub enum RouteLink {
    /// We dialed this URL.
    Dialed(RouteUrl),
    /// The peer dialed us with these credentials (CONNECT `user`, `pass`), and this
    /// certificate over TLS (for `verify_and_map`).
    Accepted {
        user: Option<String>,
        pass: Option<String>,
        cert: Option<CertIdentity>,
    },
}

/// The URLs one route peer announced: its client URLs (`connect_urls`) and its WebSocket
/// URLs (`ws_connect_urls`).
#[derive(Debug, Clone, Default)]
pub struct AnnouncedUrls {
    pub clients: Vec<String>,
    pub websocket: Vec<String>,
}

/// The route peers' client (or WebSocket) URLs, each counted once per route that announced it
/// (nats-server's `refCountedUrlSet`), in the order they were first announced.
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
            websocket_urls: Mutex::new(Vec::new()),
            peer_urls: Mutex::new(PeerUrls::default()),
            peer_websocket_urls: Mutex::new(PeerUrls::default()),
            tls: OnceLock::new(),
            links: Mutex::new(HashMap::new()),
            info_order: Mutex::new(()),
        }
    }
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

    /// Puts the route TLS in force (at start; `cluster { tls }` is not reloadable).
    pub fn set_route_tls(&self, tls: Option<RouteTls>) {
        if let Some(tls) = tls {
            let _ = self.cluster.tls.set(tls);
        }
    }

    /// The route TLS, when routes use TLS.
    pub fn route_tls(&self) -> Option<&RouteTls> {
        self.cluster.tls.get()
    }

    /// The name a dialed route's certificate must carry: the URL's host, except that for an
    /// address (a route learned by gossip, say) the first host name among the configured routes
    /// stands in, as nats-server's `routeTLSName` does.
    pub fn route_server_name(&self, url: &RouteUrl) -> String {
        if url.host.parse::<std::net::IpAddr>().is_ok() {
            let opts = self.opts();
            let named = opts.cluster.as_ref().and_then(|c| {
                c.routes
                    .iter()
                    .find(|r| r.host.parse::<std::net::IpAddr>().is_err())
            });
            if let Some(route) = named {
                return route.host.clone();
            }
        }
        url.host.clone()
    }

    /// `cluster { permissions }` as each route applies them (nats-server's
    /// `setRoutePermissions`): `import` as the publish list, `export` as the subscribe list.
    pub fn route_permissions(&self) -> Option<Arc<Permissions>> {
        let opts = self.opts();
        let cluster = opts.cluster.as_ref()?;
        if cluster.import.is_none() && cluster.export.is_none() {
            return None;
        }
        Some(Arc::new(Permissions {
            publish: cluster.import.clone(),
            subscribe: cluster.export.clone(),
            response: None,
        }))
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
        lock(&self.cluster.client_urls).clone()
    }

    /// Records this server's client URLs (the server layer knows the interfaces).
    pub fn set_client_urls(&self, urls: Vec<String>) {
        *lock(&self.cluster.client_urls) = urls;
    }

    /// This server's WebSocket URLs.
    pub fn websocket_urls(&self) -> Vec<String> {
        lock(&self.cluster.websocket_urls).clone()
    }

    /// Records this server's WebSocket URLs.
    pub fn set_websocket_urls(&self, urls: Vec<String>) {
        *lock(&self.cluster.websocket_urls) = urls;
    }

    /// Held while an INFO that clients keep (`connect_urls`) is built and queued; see
    /// `ClusterState::info_order`.
    pub fn info_order(&self) -> MutexGuard<'_, ()> {
        lock(&self.cluster.info_order)
    }

    /// The `connect_urls` of the INFO clients are sent: our own client URLs, then every route
    /// peer's; only the peers' in lame duck mode; none before the first peer announced any.
    pub fn connect_urls(&self) -> Vec<String> {
        self.urls_for_clients(self.client_urls(), &self.cluster.peer_urls)
    }

    /// The `connect_urls` of the INFO WebSocket clients are sent, as nats-server fills it: the
    /// cluster's WebSocket URLs, by the same rules as [`Shared::connect_urls`].
    pub fn websocket_connect_urls(&self) -> Vec<String> {
        self.urls_for_clients(self.websocket_urls(), &self.cluster.peer_websocket_urls)
    }

    fn urls_for_clients(&self, own: Vec<String>, peers: &Mutex<PeerUrls>) -> Vec<String> {
        let lame_duck = self.in_lame_duck_mode();
        let peers = lock(peers);
        if !peers.announced && !lame_duck {
            return Vec::new();
        }
        let own = match lame_duck {
            true => Vec::new(),
            false => own,
        };
        own.into_iter()
            .chain(peers.urls.iter().map(|(url, _)| url.clone()))
            .collect()
    }

    /// A route peer announced its client and WebSocket URLs (`connect_urls` and
    /// `ws_connect_urls` of its INFO): clients that take asynchronous INFO are told when that
    /// adds a URL. Not with `cluster.no_advertise`, nor in lame duck mode (nats-server's
    /// `addConnectURLsAndSendINFOToClients`).
    pub fn add_peer_urls(&self, urls: &AnnouncedUrls) {
        if self.in_lame_duck_mode() || self.no_advertise() {
            return;
        }
        let clients = add_urls(&self.cluster.peer_urls, &urls.clients);
        let websocket = add_urls(&self.cluster.peer_websocket_urls, &urls.websocket);
        if clients || websocket {
            self.push_client_info();
        }
    }

    /// A route peer's URLs are gone (the route closed, or its server entered lame duck mode):
    /// clients are told when that removes a URL.
    pub fn remove_peer_urls(&self, urls: &AnnouncedUrls) {
        if self.in_lame_duck_mode() || self.no_advertise() {
            return;
        }
        let clients = remove_urls(&self.cluster.peer_urls, &urls.clients);
        let websocket = remove_urls(&self.cluster.peer_websocket_urls, &urls.websocket);
        if clients || websocket {
            self.push_client_info();
        }
    }

    /// Sends the current INFO to every client that takes asynchronous INFO (CONNECT
    /// `protocol` 1, first PONG sent: nats-server's `sendAsyncInfoToClients`).
    pub fn push_client_info(&self) {
        let _order = self.info_order();
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
            proto: crate::proto::route::ROUTE_PROTO,
            go: "tern".to_string(),
            host: cluster.host.clone(),
            port: self.cluster_addr().map_or(cluster.port, |a| a.port()),
            headers: true,
            auth_required: cluster.username.is_some(),
            // nats-server says both whenever routes use TLS, `verify` or not.
            tls_required: cluster.tls.is_some(),
            tls_verify: cluster.tls.is_some(),
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
            ws_connect_urls: match cluster.no_advertise {
                true => Vec::new(),
                false => self.websocket_urls(),
            },
            compression: "off".to_string(),
            import: cluster.import.as_ref().map(permission_json),
            export: cluster.export.as_ref().map(permission_json),
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

    /// The routes to dial (learned by gossip, or added by a reload) and how many more attempts
    /// each gets (`None`: for ever): taken once by the server layer.
    pub fn take_route_dials(&self) -> Option<UnboundedReceiver<RouteDial>> {
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
        let opts = self.opts();
        let Some(cluster) = &opts.cluster else {
            return;
        };
        if url.username.is_none() && info.auth_required {
            url.username = cluster.username.clone();
            url.password = cluster.password.clone();
        }
        if self.claim_dial(&url) {
            debug!("Adding implicit route to {:?}", info.server_name);
            let _ = self
                .cluster
                .dial_tx
                .send((url, Some(cluster.connect_retries)));
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
            proto: info.proto,
            go: "tern".to_string(),
            host: info.host.clone(),
            port: info.port,
            headers: true,
            auth_required: info.auth_required,
            max_payload: self.opts().max_payload,
            ip: Some(ip),
            cluster: info.cluster.clone(),
            connect_urls: info.connect_urls.clone(),
            ws_connect_urls: info.ws_connect_urls.clone(),
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
        self.links().remove(&route.conn.cid);
        debug!("Removed route to {:?}", route.remote_name);
    }

    /// Records how a route that just registered came to be (see [`RouteLink`]).
    pub fn set_route_link(&self, route: &Route, link: RouteLink) {
        self.links().insert(route.conn.cid, link);
    }

    /// Whether `url` is still one of the configured routes: an explicit route's dialer gives
    /// up once a reload has taken it out.
    pub fn route_configured(&self, url: &RouteUrl) -> bool {
        self.opts()
            .cluster
            .as_ref()
            .is_some_and(|c| c.routes.contains(url))
    }

    /// A reload changed the cluster block (`old` and `new` are the options before and after;
    /// `new` is already in force), as nats-server's `clusterOption` and `routesOption` apply
    /// it: a route whose URL left `routes` is closed (its dialer gives up), a new URL is
    /// dialed, and an accepted route whose credentials no longer pass is closed with
    /// `Authorization Violation` (a dialed one is left to the peer to judge); new cluster
    /// permissions are put in force on every route.
    pub fn reload_cluster(&self, old: &Options, new: &Options) {
        let (Some(old), Some(new)) = (&old.cluster, &new.cluster) else {
            return;
        };
        let without_routes = |c: &ClusterOptions| ClusterOptions {
            routes: Vec::new(),
            ..c.clone()
        };
        let cluster_changed = without_routes(old) != without_routes(new);
        if cluster_changed {
            info!("Reloaded: cluster");
        }
        if old.routes != new.routes {
            let links: Vec<(u64, RouteLink)> = self
                .links()
                .iter()
                .map(|(cid, link)| (*cid, link.clone()))
                .collect();
            let routes = self.router.routes().all();
            for removed in old.routes.iter().filter(|u| !new.routes.contains(u)) {
                // Its dialer gives up; the address may be dialed again (with other
                // credentials, say).
                self.release_dial(removed);
                for (cid, link) in &links {
                    let RouteLink::Dialed(url) = link else {
                        continue;
                    };
                    if url != removed {
                        continue;
                    }
                    if let Some(route) = routes.iter().find(|r| r.conn.cid == *cid) {
                        route.conn.outbound.close(CloseReason::RouteRemoved, true);
                        info!("Removed route {}", removed.url);
                    }
                }
            }
            for added in new.routes.iter().filter(|u| !old.routes.contains(u)) {
                if self.claim_dial(added) {
                    let _ = self.cluster.dial_tx.send((added.clone(), None));
                }
            }
            info!("Reloaded: cluster routes");
        }
        if !cluster_changed {
            return;
        }
        if (&old.import, &old.export) != (&new.import, &new.export) {
            // nats-server's `reloadClusterPermissions`: every route takes the new lists and
            // gets our INFO with them (so the peer can resend what it may now send), then the
            // interest changes.
            let info = self.route_info();
            let permissions = self.route_permissions();
            let accounts = self.router.accounts();
            for route in self.router.routes().all() {
                route.reload_permissions(&accounts, permissions.clone(), |b| info.encode(b));
            }
        }
        for route in self.router.routes().all() {
            let link = self.links().get(&route.conn.cid).cloned();
            let Some(RouteLink::Accepted { user, pass, cert }) = link else {
                continue;
            };
            if route_authorized(new, user.as_deref(), pass.as_deref(), cert.as_ref()) {
                continue;
            }
            route_auth_error(&route.conn.desc(), user.as_deref());
            route.send(|b| crate::proto::protocol::encode_err(b, "Authorization Violation"));
            route
                .conn
                .outbound
                .close(CloseReason::AuthenticationViolation, true);
        }
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<u64, RouteLink>> {
        self.cluster.links.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a route's CONNECT credentials pass the cluster's `authorization` (any do without
/// one), as nats-server's `isRouterAuthorized` checks them. With `verify_and_map` the
/// certificate (`cert`, of an accepted TLS route) must name the route user instead, whatever
/// CONNECT says; without a user configured no route passes then, as in nats-server.
pub fn route_authorized(
    cluster: &ClusterOptions,
    user: Option<&str>,
    pass: Option<&str>,
    cert: Option<&CertIdentity>,
) -> bool {
    if cluster.tls.as_ref().is_some_and(|t| t.verify_and_map) {
        return match (&cluster.username, cert) {
            (Some(want), Some(cert)) => cert.is_route_user(want),
            _ => false,
        };
    }
    let Some(want) = &cluster.username else {
        return true;
    };
    user == Some(want.as_str())
        && crate::security::auth::check_secret(
            pass.unwrap_or_default(),
            cluster.password.as_deref().unwrap_or_default(),
        )
}

/// Logs a route refused for its credentials, as nats-server does (naming the user only when
/// CONNECT gave one).
pub fn route_auth_error(desc: &str, user: Option<&str>) {
    match user {
        Some(user) if !user.is_empty() => error!("{desc} - authentication error - User {user:?}"),
        _ => error!("{desc} - authentication error"),
    }
}

/// One direction of the cluster permissions as route INFO and `/routez` show it.
pub fn permission_json(perm: &SubjectPermission) -> PermissionJson {
    let text = |e: &crate::engine::permissions::Entry| match &e.queue {
        Some(queue) => format!("{} {queue}", e.subject),
        None => e.subject.clone(),
    };
    PermissionJson {
        allow: perm.allow.iter().flatten().map(text).collect(),
        deny: perm.deny.iter().map(text).collect(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts `urls` into `set` once more; true if that added a URL.
fn add_urls(set: &Mutex<PeerUrls>, urls: &[String]) -> bool {
    let mut peers = lock(set);
    let mut changed = false;
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
    changed
}

/// Counts `urls` out of `set` once; true if that removed a URL.
fn remove_urls(set: &Mutex<PeerUrls>, urls: &[String]) -> bool {
    let mut peers = lock(set);
    let mut changed = false;
    for url in urls {
        if let Some(i) = peers.urls.iter().position(|(u, _)| u == url) {
            peers.urls[i].1 -= 1;
            if peers.urls[i].1 == 0 {
                peers.urls.remove(i);
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsOptions;

    /// What a reload re-checks an accepted route against: its credentials, or with
    /// `verify_and_map` the certificate it presented.
    #[test]
    fn route_authorization_by_password_or_certificate() {
        let password = ClusterOptions {
            username: Some("ruser".into()),
            password: Some("rpwd".into()),
            ..ClusterOptions::default()
        };
        assert!(route_authorized(
            &password,
            Some("ruser"),
            Some("rpwd"),
            None
        ));
        assert!(!route_authorized(
            &password,
            Some("ruser"),
            Some("nope"),
            None
        ));
        assert!(route_authorized(
            &ClusterOptions::default(),
            None,
            None,
            None
        ));
        let cert = CertIdentity {
            subject: vec![
                ("CN".into(), "localhost".into()),
                ("O".into(), "tern".into()),
            ],
            alt_names: vec!["localhost".into()],
        };
        let mapped = |user: Option<&str>| ClusterOptions {
            username: user.map(str::to_string),
            tls: Some(TlsOptions {
                verify_and_map: true,
                ..TlsOptions::default()
            }),
            ..ClusterOptions::default()
        };
        let by_cert = |user, cert| route_authorized(&mapped(user), Some("x"), Some("y"), cert);
        assert!(by_cert(Some("CN=localhost,O=tern"), Some(&cert)));
        assert!(by_cert(Some("localhost"), Some(&cert)));
        assert!(!by_cert(Some("O=tern,CN=localhost"), Some(&cert)));
        assert!(!by_cert(Some("CN=localhost,O=tern"), None));
        // Without a route user, no route passes (nats-server's TLSMap).
        assert!(!by_cert(None, Some(&cert)));
    }
}
