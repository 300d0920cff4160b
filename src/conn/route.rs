//! The route kind of connection: another server of the cluster, speaking the route protocol
//! (`proto::route`) as nats-server 2.15.1 does with a peer that does not pool routes.
//!
//! The dialer sends CONNECT and INFO at once; the acceptor sends its INFO as soon as that
//! CONNECT has passed (without waiting for the peer's INFO: 2.15 dialers delay theirs until
//! they have read ours), so a refused peer never registers the route. A route is
//! registered only when the peer's INFO arrives, keyed by its server id: a second connection
//! to the same server is closed and the first kept. Once registered, each side sends its whole
//! interest (`RS+` for every account), then changes as they happen; a closed route's interest
//! is forgotten. Messages from a route go to local subscribers only (one hop).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{debug, error, info, trace};

use super::cache::MatchCache;
use super::liveness::Liveness;
use super::msgtrace::FromRoute;
use super::peer::{self, PeerSession};
use super::transport::{self, ReadHalf, WriteHalf};
use super::writer::write_loop;
use crate::config::cluster::{ClusterOptions, RouteUrl};
use crate::engine::account::Account;
use crate::engine::connection::Connection;
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::msgtrace;
use crate::engine::outbound::CloseReason;
use crate::engine::permissions;
use crate::engine::route::{export_permissions, Route};
use crate::proto::error::ProtocolError;
use crate::proto::protocol;
use crate::proto::route::{self as wire, Interest, PeerInfo, RouteConnect, RouteOp};
use crate::proto::subject;
use crate::security::tls::{self as security_tls, CertIdentity, HandshakeError, RouteTls};
use crate::state::cluster::{route_auth_error, route_authorized, AnnouncedUrls, RouteLink};
use crate::state::Shared;

/// The largest routed message taken. nats-server does not hold routes to its own
/// `max_payload` (a peer's may be larger); tern bounds them generously instead, above any
/// `max_payload` seen in practice.
const ROUTE_MAX_PAYLOAD: usize = 64 << 20;
/// How long a dial may take (`DEFAULT_ROUTE_DIAL`).
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Between attempts at an explicit route (`DEFAULT_ROUTE_CONNECT`).
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between attempts with `connect_backoff`.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long an accepted connection holds its INFO for the dialer's CONNECT (which a dialer
/// sends at once): a peer that is refused never sees our INFO. A 2.15 dialer that read it
/// registers the route, and when a route to a server without pooling closes it dials again
/// at once besides its one-second reconnect (`removeRoute`), so refusing it after our INFO
/// has it redial thousands of times a second. Past this, INFO goes out anyway (a client on
/// the route port waits for it).
const INFO_GRACE: Duration = Duration::from_millis(250);

/// Serves one connection accepted on the cluster port until it closes.
pub async fn accept(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    crate::conn::idle::watch(&stream);
    let session = Session::new(shared, addr, None);
    info!("{} - Route connection created", session.desc);
    session.run(stream).await;
}

/// Dials a route and keeps it up: an explicit one (`routes`, `retries` `None`) again after
/// every close, every second (doubling up to 30 s with `connect_backoff`), until the server
/// stops; an implicit one (learned by gossip) `retries` more times (`connect_retries`).
pub async fn solicit(shared: Arc<Shared>, url: RouteUrl, retries: Option<u32>) {
    let mut delay = RECONNECT_DELAY;
    let mut attempts = 0u32;
    let mut failures = 0u32;
    loop {
        // An explicit route that a reload took out of `routes` is given up (the reload has
        // released its claim).
        if retries.is_none() && !shared.route_configured(&url) {
            return;
        }
        attempts += 1;
        debug!(
            "Trying to connect to route on {}:{} ({}:{})",
            url.host, url.port, url.host, url.port
        );
        match dial(&url).await {
            Some((stream, addr)) => {
                delay = RECONNECT_DELAY;
                failures = 0;
                let session = Session::new(shared.clone(), addr, Some(url.clone()));
                debug!("{} - Route connect msg sent", session.desc);
                info!("{} - Route connection created", session.desc);
                let peer = session.run(stream).await;
                // The URL leads back here: never dialed again, as nats-server gives it up.
                if peer.as_deref() == Some(shared.server_id.as_str()) {
                    debug!(
                        "Detected route to self, ignoring \"nats-route://{}:{}\"",
                        url.host, url.port
                    );
                    return;
                }
                // A duplicate of a live route: dial again only once that one is gone (both
                // ends may have refused each other's connection; that is no failed attempt).
                if let Some(id) = peer {
                    while shared.router.routes().contains(&id)
                        && !shared.stopping()
                        && (retries.is_some() || shared.route_configured(&url))
                    {
                        tokio::time::sleep(RECONNECT_DELAY).await;
                    }
                    attempts = 0;
                }
            }
            None => {
                // nats-server reports the first failure, then only now and then
                // (`connect_error_reports`).
                failures += 1;
                let text = format!(
                    "Error trying to connect to route (attempt {failures}): dial tcp {}:{}: connect: connection refused",
                    url.host, url.port
                );
                match failures {
                    1 => error!("{text}"),
                    _ => debug!("{text}"),
                }
            }
        }
        if shared.stopping() || retries.is_some_and(|r| attempts > r) {
            shared.release_dial(&url);
            return;
        }
        let backoff = shared
            .opts()
            .cluster
            .as_ref()
            .is_some_and(|c| c.connect_backoff);
        tokio::time::sleep(delay + Duration::from_millis(fastrand::u64(..100))).await;
        if backoff {
            delay = (delay * 2).min(MAX_BACKOFF);
        }
        if shared.stopping() {
            return;
        }
    }
}

/// One TCP connection to a route URL, within the dial timeout.
async fn dial(url: &RouteUrl) -> Option<(TcpStream, SocketAddr)> {
    let connect = TcpStream::connect((url.host.as_str(), url.port));
    let stream = tokio::time::timeout(DIAL_TIMEOUT, connect)
        .await
        .ok()?
        .ok()?;
    let addr = stream.peer_addr().ok()?;
    let _ = stream.set_nodelay(true);
    crate::conn::idle::watch(&stream);
    Some((stream, addr))
}

/// One route connection's reading side.
struct Session {
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    desc: String,
    /// The route URL we dialed; `None` for an accepted connection.
    solicited: Option<RouteUrl>,
    /// The peer's CONNECT was accepted (dialed routes need none).
    connected: bool,
    /// Our INFO is queued (an accepted connection holds it until the peer's CONNECT passed).
    info_sent: bool,
    /// The peer's CONNECT asked for `+OK` after each operation.
    verbose: bool,
    /// The `user` and `pass` of the peer's CONNECT, re-checked by a reload.
    credentials: (Option<String>, Option<String>),
    /// Registered once the peer's INFO arrived.
    route: Option<Arc<Route>>,
    live: Liveness,
    out: Deliveries,
    /// Accounts by name, with their match caches.
    accounts: HashMap<Box<[u8]>, (Arc<Account>, MatchCache), ahash::RandomState>,
    in_msgs: u64,
    in_bytes: u64,
    trace: bool,
    /// The peer's id, when this connection was refused as a duplicate of a live route (or as
    /// this server itself).
    duplicate: Option<String>,
    /// The peer's client and WebSocket URLs, counted in our clients' `connect_urls` until the
    /// route closes or the peer enters lame duck mode.
    peer_urls: AnnouncedUrls,
    /// Interest the peer sent before its INFO, applied once the route registers.
    early: Vec<EarlyInterest>,
    /// The peer's server name, from its first INFO.
    remote_name: String,
    /// The names in the certificate an accepted TLS route presented (`verify_and_map`).
    cert: Option<CertIdentity>,
}

/// An `RS+`/`RS-` that came before the route registered, owned.
struct EarlyInterest {
    add: bool,
    origin: Option<Box<[u8]>>,
    account: Box<[u8]>,
    subject: Box<[u8]>,
    queue: Option<Box<[u8]>>,
    weight: u32,
}

impl Session {
    fn new(shared: Arc<Shared>, addr: SocketAddr, solicited: Option<RouteUrl>) -> Session {
        let cid = shared.router.next_cid();
        let desc = format!("{addr} - rid:{cid}");
        let conn = Arc::new(Connection::new(
            cid,
            shared.opts().max_pending,
            &desc,
            addr,
            shared.router.global().clone(),
        ));
        // A route is paced, not cut, while its peer makes progress within the write deadline.
        conn.outbound
            .set_patience(shared.opts().route_write_deadline());
        conn.set_permissions(shared.route_permissions());
        Session {
            conn,
            desc,
            connected: solicited.is_some(),
            info_sent: false,
            verbose: false,
            credentials: (None, None),
            solicited,
            route: None,
            live: Liveness::default(),
            out: Deliveries::default(),
            accounts: HashMap::default(),
            in_msgs: 0,
            in_bytes: 0,
            trace: tracing::enabled!(tracing::Level::TRACE),
            duplicate: None,
            peer_urls: AnnouncedUrls::default(),
            early: Vec::new(),
            remote_name: String::new(),
            cert: None,
            shared,
        }
    }

    /// Runs the connection until it closes; returns the peer's id when it was refused as a
    /// duplicate of a live route or as this server itself.
    async fn run(mut self, stream: TcpStream) -> Option<String> {
        let (reader, writer) = match self.shared.route_tls().cloned() {
            None => transport::split_plain(stream),
            Some(tls) => match self.handshake(&tls, stream).await {
                Ok(halves) => halves,
                Err(err) => {
                    error!("{} - TLS route handshake error: {err}", self.desc);
                    info!(
                        "{} - Router connection closed: TLS Handshake Failure",
                        self.desc
                    );
                    self.conn
                        .outbound
                        .close(CloseReason::TlsHandshakeFailure, false);
                    return None;
                }
            },
        };
        let cluster = self.cluster();
        // The dialer speaks first with CONNECT, then INFO; the acceptor sends its INFO once
        // that CONNECT passed (or after `INFO_GRACE`).
        if let Some(url) = &self.solicited {
            let connect = RouteConnect {
                echo: true,
                user: url.username.clone().or_else(|| cluster.username.clone()),
                pass: url.password.clone().or_else(|| cluster.password.clone()),
                headers: true,
                name: self.shared.server_id.clone(),
                cluster: cluster.name.clone().unwrap_or_default(),
                tls_required: self.shared.route_tls().is_some(),
                lnoc: true,
                lnocu: true,
                ..RouteConnect::default()
            };
            self.push(|b| connect.encode(b));
            self.send_info();
        }
        self.shared
            .tasks
            .spawn(write_loop(self.shared.clone(), self.conn.clone(), writer));
        let reason = peer::read_loop(&mut self, reader, cluster.auth_timeout).await;
        self.finish(reason)
    }

    /// Queues our route INFO, once.
    fn send_info(&mut self) {
        if !self.info_sent {
            self.info_sent = true;
            let info = self.shared.route_info();
            self.push(|b| info.encode(b));
        }
    }

    /// Routes are TLS first: the acceptor handshakes as a TLS server and the dialer as a TLS
    /// client (expecting the certificate of the host it dialed), before any INFO.
    async fn handshake(
        &mut self,
        tls: &RouteTls,
        stream: TcpStream,
    ) -> Result<(ReadHalf, WriteHalf), HandshakeError> {
        let opts = self.cluster().tls.unwrap_or_default();
        let checked = |session: &rustls::CommonState| {
            // `pinned_certs` applies to both ends, as in nats-server.
            if !transport::is_pinned(session, &opts, &self.desc) {
                return Err(HandshakeError::NotPinned);
            }
            transport::log_handshake(&self.desc, session);
            Ok(())
        };
        let halves = match &self.solicited {
            None => {
                debug!("{} - Starting TLS route server handshake", self.desc);
                let stream = security_tls::accept(tls.server.clone(), stream, None, tls.timeout);
                let stream = stream.await?;
                checked(stream.get_ref().1)?;
                self.cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|c| CertIdentity::from_der(c));
                transport::split_tls(stream)
            }
            Some(url) => {
                debug!("{} - Starting TLS route client handshake", self.desc);
                let name = self.shared.route_server_name(url);
                let stream = security_tls::connect(tls.client.clone(), stream, &name, tls.timeout);
                let stream = stream.await?;
                checked(stream.get_ref().1)?;
                transport::split_tls_dialed(stream)
            }
        };
        Ok(halves)
    }

    fn cluster(&self) -> ClusterOptions {
        self.shared.opts().cluster.clone().unwrap_or_default()
    }

    fn handle(&mut self, op: RouteOp<'_>) -> Result<(), ProtocolError> {
        if self.trace {
            trace_op(&self.desc, &op);
        }
        if !self.connected && !matches!(op, RouteOp::Connect(_)) {
            // The acceptor takes nothing before CONNECT.
            return Err(ProtocolError::AuthorizationViolation);
        }
        match op {
            RouteOp::Connect(json) => self.handle_connect(json),
            RouteOp::Info(json) => self.handle_info(json),
            RouteOp::Ping => {
                self.push(|b| b.extend_from_slice(protocol::PONG));
                Ok(())
            }
            RouteOp::Pong => {
                if let Some(rtt) = self.live.on_pong() {
                    self.conn.stats.set_rtt(rtt);
                }
                Ok(())
            }
            RouteOp::Ok => Ok(()),
            RouteOp::Err(text) => {
                error!(
                    "{} - Route Error {}",
                    self.desc,
                    String::from_utf8_lossy(text)
                );
                Err(ProtocolError::Malformed("route error"))
            }
            RouteOp::Sub(interest) => {
                // nats-server's sublist refuses the subject: an -ERR, the route stays.
                if !subject::is_valid_filter(interest.subject) {
                    self.push(|b| protocol::encode_err(b, "Invalid Subscription"));
                    return Ok(());
                }
                self.apply_interest(&interest, true);
                self.send_ok();
                Ok(())
            }
            RouteOp::Unsub(interest) => {
                self.apply_interest(&interest, false);
                self.send_ok();
                Ok(())
            }
            RouteOp::Msg(m) => {
                self.in_msgs += 1;
                self.in_bytes += m.message.len() as u64;
                self.send_ok();
                if self.route.is_none() {
                    return Ok(());
                }
                if !self.accounts.contains_key(m.account) && self.account_entry(m.account).is_none()
                {
                    debug!(
                        "{} - Unknown account {:?} for routed message",
                        self.desc,
                        String::from_utf8_lossy(m.account)
                    );
                    return Ok(());
                }
                // Borrowed from the map beside `self.out` (no reference count taken per
                // message).
                let Some((account, cache)) = self.accounts.get_mut(m.account) else {
                    return Ok(());
                };
                let msg = Message {
                    subject: m.subject,
                    reply: m.reply,
                    header_len: m.header_len,
                    message: m.message,
                };
                self.out.from_route = true;
                self.out.leaf_origin = m.origin.map(bytes::Bytes::copy_from_slice);
                let (out, shared) = (&mut self.out, &self.shared);
                let from = FromRoute {
                    kind: msgtrace::kind::ROUTER,
                    cid: self.conn.cid,
                    name: &self.remote_name,
                    desc: &self.desc,
                };
                cache.with(account, m.subject, |matches| {
                    let traced = m
                        .header_len
                        .is_some_and(|h| msgtrace::requested(&m.message[..h], account))
                        && super::msgtrace::deliver_routed(
                            shared, from, account, matches, &msg, m.queues, out,
                        );
                    if !traced {
                        deliver::deliver_routed(account, matches, &msg, m.queues, out);
                    }
                });
                self.out.from_route = false;
                self.out.leaf_origin = None;
                Ok(())
            }
        }
    }

    /// Adds or removes the peer's interest; kept until the route registers when it comes
    /// between the peer's CONNECT and its INFO (nats-server takes it then too).
    fn apply_interest(&mut self, interest: &Interest<'_>, add: bool) {
        let Some(route) = self.route.clone() else {
            self.early.push(EarlyInterest {
                add,
                origin: interest.origin.map(Into::into),
                account: interest.account.into(),
                subject: interest.subject.into(),
                queue: interest.queue.map(Into::into),
                weight: interest.weight,
            });
            return;
        };
        if add {
            if let Some(perms) = route.permissions() {
                // nats-server's `canExport`: the export list read as a subscribe permission.
                if !perms.can_subscribe(interest.subject, None) {
                    debug!(
                        "{} - Can not export {}, ignoring remote subscription request",
                        self.desc,
                        permissions::go_quote(interest.subject)
                    );
                    return;
                }
                if perms.needs_delivery_filter(interest.subject) {
                    self.conn.enable_delivery_filter();
                }
            }
        }
        if let Some(account) = self.account(interest.account) {
            match add {
                true => route.add_interest(&account, interest),
                false => route.remove_interest(&account, interest),
            }
        }
    }

    /// `+OK` after an operation, when the peer's CONNECT asked for `verbose` (nats-server reads
    /// a route's CONNECT as a client's options).
    fn send_ok(&mut self) {
        if self.verbose {
            self.push(|b| b.extend_from_slice(protocol::OK));
        }
    }

    /// The peer's CONNECT, on an accepted connection: nats-server's checks, in its order.
    fn handle_connect(&mut self, json: &[u8]) -> Result<(), ProtocolError> {
        if self.connected {
            return Ok(());
        }
        let Ok(connect) = serde_json::from_slice::<RouteConnect>(json) else {
            return Err(ProtocolError::Malformed("invalid CONNECT JSON"));
        };
        if !connect.lang.is_empty() {
            return Err(ProtocolError::Refused(
                "attempted to connect to route port".into(),
            ));
        }
        let cluster = self.cluster();
        if !route_authorized(
            &cluster,
            connect.user.as_deref(),
            connect.pass.as_deref(),
            self.cert.as_ref(),
        ) {
            // Logged with the user by `fail`.
            self.credentials.0 = connect.user;
            return Err(ProtocolError::AuthorizationViolation);
        }
        let ours = cluster.name.unwrap_or_default();
        if !connect.cluster.is_empty() && connect.cluster != ours {
            return Err(ProtocolError::Refused(
                format!(
                    "Rejecting connection, cluster name {:?} does not match {:?}",
                    connect.cluster, ours
                )
                .into(),
            ));
        }
        self.connected = true;
        self.verbose = connect.verbose;
        self.credentials = (connect.user, connect.pass);
        self.send_info();
        Ok(())
    }

    /// The peer's INFO: registers the route (the first one), or news of other servers.
    fn handle_info(&mut self, json: &[u8]) -> Result<(), ProtocolError> {
        let Ok(info) = serde_json::from_slice::<PeerInfo>(json) else {
            return Err(ProtocolError::Malformed("invalid INFO JSON"));
        };
        if let Some(route) = &self.route {
            if info.server_id == route.remote_id {
                if info.ldm {
                    info!("{} - Route entering lame duck mode", self.desc);
                    // Its clients will be closed: ours must not be sent there.
                    self.shared
                        .remove_peer_urls(&std::mem::take(&mut self.peer_urls));
                    return Ok(());
                }
                // A later INFO from the peer itself: its config was reloaded.
                let old = route.set_peer_permissions((info.import.clone(), info.export.clone()));
                if old.1 != info.export {
                    route.peer_export_changed(
                        &self.shared.router.accounts(),
                        export_permissions(old.1.as_ref()).as_ref(),
                        export_permissions(info.export.as_ref()).as_ref(),
                    );
                }
                return Ok(());
            }
            // Gossip about another server: dial it unless it is known already.
            self.shared.learn_route(&info);
            return Ok(());
        }
        if !info.route_account.is_empty() {
            // A connection dedicated to one account (2.15's pinned `$SYS` route): tern keeps
            // one route per server, as a server without pooling.
            return Err(ProtocolError::Refused(
                format!(
                    "Not possible to have a dedicated route for account {:?} between those servers",
                    info.route_account
                )
                .into(),
            ));
        }
        if info.server_id == self.shared.server_id {
            // Closed as a duplicate without naming the peer, as nats-server does; the dialer
            // then logs that it gives the URL up.
            self.duplicate = Some(info.server_id.clone());
            return Err(ProtocolError::Malformed("route to self"));
        }
        self.remote_name = info.server_name.clone();
        let ours = self.cluster().name.unwrap_or_default();
        if !info.cluster.is_empty() && !ours.is_empty() && info.cluster != ours {
            error!(
                "{} - Rejecting connection, cluster name {:?} does not match {:?}",
                self.desc, info.cluster, ours
            );
            return Err(ProtocolError::Malformed("cluster name conflict"));
        }
        let mut route = Route::new(
            self.conn.clone(),
            &info.server_id,
            &info.server_name,
            self.solicited.is_some(),
            self.shared.route_permissions(),
        );
        route.set_peer_permissions((info.import.clone(), info.export.clone()));
        route.traces = info.proto >= wire::ROUTE_PROTO;
        let route = Arc::new(route);
        if !self.shared.router.routes().add(route.clone()) {
            debug!(
                "{} - Detected duplicate remote route {:?}",
                self.desc, info.server_id
            );
            self.duplicate = Some(info.server_id.clone());
            return Err(ProtocolError::Malformed("duplicate route"));
        }
        // A peer without header support gets messages with their headers stripped.
        self.conn
            .headers
            .store(info.headers, std::sync::atomic::Ordering::Relaxed);
        // nats-server's prefix stays `addr - rid:N` after registration; the peer's name shows
        // in the close line's `Remote:` instead.
        debug!(
            "{} - Registering remote route {:?}",
            self.desc, info.server_id
        );
        self.route = Some(route.clone());
        let link = match &self.solicited {
            Some(url) => RouteLink::Dialed(url.clone()),
            None => RouteLink::Accepted {
                user: self.credentials.0.take(),
                pass: self.credentials.1.take(),
                cert: self.cert.take(),
            },
        };
        self.shared.set_route_link(&route, link);
        self.shared.route_registered(&route, &info);
        if !info.ldm {
            self.peer_urls = AnnouncedUrls {
                clients: info.connect_urls.clone(),
                websocket: info.ws_connect_urls.clone(),
            };
            self.shared.add_peer_urls(&self.peer_urls);
        }
        // The whole of our interest, every account.
        for account in self.shared.router.accounts() {
            account.send_interest(&route);
        }
        for early in std::mem::take(&mut self.early) {
            let interest = Interest {
                origin: early.origin.as_deref(),
                account: &early.account,
                subject: &early.subject,
                queue: early.queue.as_deref(),
                weight: early.weight,
            };
            self.apply_interest(&interest, early.add);
        }
        Ok(())
    }

    /// The account called `name` (cached).
    fn account(&mut self, name: &[u8]) -> Option<Arc<Account>> {
        self.account_entry(name).map(|(a, _)| a.clone())
    }

    fn account_entry(&mut self, name: &[u8]) -> Option<&mut (Arc<Account>, MatchCache)> {
        if !self.accounts.contains_key(name) {
            let account = self
                .shared
                .router
                .account(std::str::from_utf8(name).ok()?)?;
            self.accounts
                .insert(name.into(), (account, MatchCache::default()));
        }
        self.accounts.get_mut(name)
    }

    /// Closes the connection and forgets the route and its interest.
    fn finish(mut self, reason: CloseReason) -> Option<String> {
        self.conn.outbound.close(reason, true);
        self.out.flush(Some(&self.conn));
        if let Some(route) = self.route.take() {
            let router = &self.shared.router;
            if router.routes().remove(&route) {
                route.purge(|name| router.account(name));
                self.shared
                    .remove_peer_urls(&std::mem::take(&mut self.peer_urls));
                self.shared.route_closed(&route);
            }
        }
        // As nats-server words it, naming the peer once its INFO told who it is.
        let remote = match self.remote_name.is_empty() {
            true => String::new(),
            false => format!(" - Remote: {}", self.remote_name),
        };
        info!(
            "{} - Router connection closed: {}{remote}",
            self.desc,
            reason.as_str()
        );
        self.duplicate.take()
    }
}

impl PeerSession for Session {
    fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn conn(&self) -> &Arc<Connection> {
        &self.conn
    }

    fn desc(&self) -> &str {
        &self.desc
    }

    fn live(&mut self) -> &mut Liveness {
        &mut self.live
    }

    fn out(&mut self) -> &mut Deliveries {
        &mut self.out
    }

    fn in_counts(&self) -> (u64, u64) {
        (self.in_msgs, self.in_bytes)
    }

    fn awaiting(&self) -> Option<ProtocolError> {
        (!self.connected).then_some(ProtocolError::AuthenticationTimeout)
    }

    fn info_grace(&self) -> Option<Duration> {
        (!self.info_sent).then_some(INFO_GRACE)
    }

    fn grace_passed(&mut self) {
        self.send_info();
    }

    fn parse_op<'b>(&self, buf: &'b [u8]) -> Result<Option<(RouteOp<'b>, usize)>, ProtocolError> {
        wire::parse(buf, self.shared.opts().max_control_line, ROUTE_MAX_PAYLOAD)
    }

    fn frame_len(&self, buf: &[u8]) -> Option<usize> {
        wire::frame_len(buf)
    }

    fn handle_op(&mut self, op: RouteOp<'_>) -> Result<(), ProtocolError> {
        self.trace = self.out.trace;
        self.handle(op)
    }

    /// Sends the error's `-ERR` (if it has one) and logs it; the connection then closes.
    fn fail(&mut self, err: ProtocolError) -> CloseReason {
        // A duplicate of a live route (or a route to this server) closes quietly.
        if self.duplicate.is_some() {
            return CloseReason::DuplicateRoute;
        }
        // nats-server's `authViolation`: one line naming the user, then the -ERR.
        if let ProtocolError::AuthorizationViolation = err {
            route_auth_error(&self.desc, self.credentials.0.as_deref());
            if self.trace {
                trace!("{} - ->> [-ERR {err}]", self.desc);
            }
            self.push(|b| protocol::encode_err(b, &err.to_string()));
            self.out.flush(Some(&self.conn));
            return CloseReason::AuthenticationViolation;
        }
        peer::close_with_error(self, err)
    }
}

fn trace_op(desc: &str, op: &RouteOp<'_>) {
    let lossy = String::from_utf8_lossy;
    match op {
        RouteOp::Sub(i) => trace!(
            "{desc} - <<- [RS+ {} {}{}]",
            lossy(i.account),
            lossy(i.subject),
            i.queue
                .map(|q| format!(" {} {}", lossy(q), i.weight))
                .unwrap_or_default()
        ),
        RouteOp::Unsub(i) => trace!(
            "{desc} - <<- [RS- {} {}{}]",
            lossy(i.account),
            lossy(i.subject),
            i.queue
                .map(|q| format!(" {}", lossy(q)))
                .unwrap_or_default()
        ),
        RouteOp::Msg(m) => trace!(
            "{desc} - <<- [RMSG {} {} {}]",
            lossy(m.account),
            lossy(m.subject),
            m.message.len()
        ),
        RouteOp::Connect(json) => trace!(
            "{desc} - <<- [CONNECT {}]",
            super::trace::redact_secrets(&lossy(json))
        ),
        RouteOp::Info(json) => trace!("{desc} - <<- [INFO {}]", lossy(json)),
        RouteOp::Ping => trace!("{desc} - <<- [PING]"),
        RouteOp::Pong => trace!("{desc} - <<- [PONG]"),
        RouteOp::Ok => trace!("{desc} - <<- [OK]"),
        RouteOp::Err(text) => trace!("{desc} - <<- [-ERR {}]", lossy(text)),
    }
}
