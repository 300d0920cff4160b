//! The leafnode kind of connection (`proto::leaf`): another server attached to this one's
//! leafnode port (we are its hub, unless its CONNECT says it is the hub), or a hub this
//! server dialed as one of its `remotes` (we are its spoke, unless the remote says `hub`).
//!
//! The hub sends INFO in plaintext at once; the dialer answers with CONNECT. Both then bind
//! the connection to one local account and send the interest the other end is to hear of
//! (see `engine::leaf`), with this account's loop detection subject (`$LDS.<random>`): a
//! server that hears its own back closes the link as a loop, and a dialer told so waits 30 s
//! before dialing again. Remotes are dialed again after every close, each URL in turn.
//!
//! Over WebSocket (`conn::websocket`), a leafnode arrives on the WebSocket listener with a
//! request for `/leafnode`, and a remote with a `ws://` or `wss://` URL dials the hub's
//! WebSocket listener: TLS first for `wss://`, then the upgrade, and INFO comes in a frame.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tracing::{debug, error, info, trace};

use super::cache::MatchCache;
use super::liveness::Liveness;
use super::peer::{self, PeerSession};
use super::transport;
use super::websocket::{self, Upgrade};
use super::writer::write_loop;
use crate::config::cluster::DEFAULT_AUTH_TIMEOUT;
use crate::config::leafnode::{version_at_least, LeafUrl, RemoteLeaf};
use crate::engine::account::Account;
use crate::engine::connection::Connection;
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::leaf::Leaf;
use crate::engine::msgtrace;
use crate::engine::outbound::CloseReason;
use crate::proto::error::ProtocolError;
use crate::proto::leaf::{self as wire, LeafConnect, LeafInfo};
use crate::proto::protocol;
use crate::proto::route::RouteOp;
use crate::proto::subject;
use crate::security::auth;
use crate::security::tls::{self as security_tls, HandshakeError};
use crate::state::Shared;

/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a dialer told of a loop waits before dialing again (`leafNodeReconnectAfterPermViolation`
/// and loops alike in nats-server).
pub const LOOP_DELAY: Duration = Duration::from_secs(30);
/// How long a dialer whose hub has its cluster's name waits before dialing again.
const SAME_CLUSTER_DELAY: Duration = Duration::from_secs(30);
/// How long a dialer older than its hub's `min_version` waits before dialing again.
const MIN_VERSION_DELAY: Duration = Duration::from_secs(5);
/// The largest message taken from a leafnode: as for routes, bounded generously.
const LEAF_MAX_PAYLOAD: usize = 64 << 20;

/// Serves one connection accepted on the leafnode port until it closes.
pub async fn accept(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    crate::conn::idle::watch(&stream);
    let session = Session::new(shared, addr, None);
    info!("{} - Leafnode connection created", session.desc);
    session.run(stream).await;
}

/// Serves a leafnode connection that came in on the WebSocket listener (upgraded, over TLS
/// for `wss`): INFO in a frame, then the same session as on the leafnode port.
pub async fn accept_websocket(
    shared: Arc<Shared>,
    (read, write): (transport::ReadHalf, transport::WriteHalf),
    addr: SocketAddr,
    upgrade: Upgrade,
) {
    let mut session = Session::new(shared, addr, None).over_websocket();
    info!("{} - Leafnode connection created", session.desc);
    debug!(
        "{} - Leafnode compression={}",
        session.desc, upgrade.compress
    );
    let halves = websocket::split(read, write, session.conn.clone(), &upgrade);
    session.nonce = auth::new_nonce();
    let mut info = session
        .shared
        .leaf_info(session.conn.cid, session.nonce.clone());
    // nats-server says so when its leafnode port has TLS; over WebSocket, the listener's TLS
    // (if any) is already done and the dialer does not start another.
    info.tls_required = session
        .shared
        .opts()
        .leafnodes
        .as_ref()
        .is_some_and(|l| l.tls.is_some());
    session.push(|b| info.encode(b));
    session.serve(halves).await;
}

/// Dials one remote and keeps it attached: its URLs in turn, again after every close, every
/// `reconnect_interval` (30 s after the hub said the link makes a loop), until the server stops.
pub async fn solicit(shared: Arc<Shared>, remote: RemoteLeaf) {
    if remote.urls.is_empty() {
        return;
    }
    let mut next = 0usize;
    let mut failures = 0u32;
    loop {
        if shared.stopping() {
            return;
        }
        let url = remote.urls[next % remote.urls.len()].clone();
        next += 1;
        // As nats-server names it (Go's `URL.Host`).
        let host = match url.host.contains(':') {
            true => format!("[{}]:{}", url.host, url.port),
            false => format!("{}:{}", url.host, url.port),
        };
        debug!("Trying to connect as leafnode to remote server on {host:?}");
        let mut delay = shared
            .opts()
            .leafnodes
            .as_ref()
            .map_or(crate::config::leafnode::DEFAULT_RECONNECT, |l| {
                l.reconnect_interval
            });
        match dial(&url).await {
            Some((stream, addr)) => {
                failures = 0;
                let ws = url.ws;
                let mut session = Session::new(shared.clone(), addr, Some((remote.clone(), url)));
                if ws {
                    session = session.over_websocket();
                }
                info!(
                    "{} - Leafnode connection created for account: {} ",
                    session.desc,
                    remote.account.as_deref().unwrap_or("$G")
                );
                // The hub's reason to refuse us, on top of the interval (`connDelay`).
                if let Ending::Delay(extra) = session.run(stream).await {
                    delay += extra;
                }
            }
            None => {
                failures += 1;
                let text = format!(
                    "Error trying to connect as leafnode to remote server {host:?} (attempt {failures}): dial tcp {host}: connect: connection refused",
                );
                match failures {
                    1 => error!("{text}"),
                    _ => debug!("{text}"),
                }
            }
        }
        if shared.stopping() {
            return;
        }
        tokio::time::sleep(delay).await;
    }
}

/// Reads the hub's first line (its INFO) byte by byte, so that nothing after it (the TLS
/// handshake) is taken: without its `\r\n`.
async fn info_line(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > 64 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    Some(line)
}

async fn dial(url: &LeafUrl) -> Option<(TcpStream, SocketAddr)> {
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

/// How a session ended, for the dialer.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Closed,
    /// The hub refused the link (a loop, our cluster's name, our version): wait this much
    /// longer before dialing again.
    Delay(Duration),
}

/// One leafnode connection's reading side.
struct Session {
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    desc: String,
    /// The remote and URL we dialed; `None` for an accepted connection.
    solicited: Option<(RemoteLeaf, LeafUrl)>,
    /// The nonce our INFO carried (accepted connections).
    nonce: Option<String>,
    /// Registered once CONNECT (accepted) or the hub's INFO (dialed) arrived.
    leaf: Option<Arc<Leaf>>,
    live: Liveness,
    out: Deliveries,
    cache: MatchCache,
    in_msgs: u64,
    in_bytes: u64,
    trace: bool,
    ending: Ending,
    /// Why the connection closes when an error says more than its kind (`fail`).
    close_as: Option<CloseReason>,
}

impl Session {
    fn new(
        shared: Arc<Shared>,
        addr: SocketAddr,
        solicited: Option<(RemoteLeaf, LeafUrl)>,
    ) -> Session {
        let cid = shared.router.next_cid();
        let desc = format!("{addr} - lid:{cid}");
        let conn = Arc::new(Connection::new(
            cid,
            shared.opts().max_pending,
            &desc,
            addr,
            shared.router.global().clone(),
        ));
        conn.outbound
            .set_patience(shared.opts().route_write_deadline());
        conn.headers.store(true, Ordering::Relaxed);
        Session {
            conn,
            desc,
            solicited,
            nonce: None,
            leaf: None,
            live: Liveness::default(),
            out: Deliveries::default(),
            cache: MatchCache::default(),
            in_msgs: 0,
            in_bytes: 0,
            trace: tracing::enabled!(tracing::Level::TRACE),
            ending: Ending::Closed,
            close_as: None,
            shared,
        }
    }

    /// A leafnode over WebSocket: `lid_ws:` in the log prefix, as nats-server writes it.
    fn over_websocket(mut self) -> Session {
        self.desc = self.desc.replace(" - lid:", " - lid_ws:");
        self.conn.set_desc(&self.desc);
        self
    }

    async fn run(mut self, stream: TcpStream) -> Ending {
        let upgraded = match self.solicited.is_some() {
            true => self.dialed_transport(stream).await,
            false => self.accepted_transport(stream).await,
        };
        match upgraded {
            Ok(halves) => self.serve(halves).await,
            Err(reason) => self.finish(reason),
        }
    }

    /// Runs the session over its transport until it closes.
    async fn serve(
        mut self,
        (reader, writer): (transport::ReadHalf, transport::WriteHalf),
    ) -> Ending {
        self.shared
            .tasks
            .spawn(write_loop(self.shared.clone(), self.conn.clone(), writer));
        let opts = self.shared.opts();
        let deadline = match &self.solicited {
            Some((remote, _)) => remote.first_info_timeout,
            None => opts
                .leafnodes
                .as_ref()
                .map_or(DEFAULT_AUTH_TIMEOUT, |l| l.auth_timeout),
        };
        let reason = peer::read_loop(&mut self, reader, deadline).await;
        self.finish(reason)
    }

    /// The hub's side: INFO in plaintext (saying `tls_required` when the leafnode port has a
    /// `tls` block), then the TLS handshake as its server.
    async fn accepted_transport(
        &mut self,
        stream: TcpStream,
    ) -> Result<(transport::ReadHalf, transport::WriteHalf), CloseReason> {
        self.nonce = auth::new_nonce();
        let mut info = self.shared.leaf_info(self.conn.cid, self.nonce.clone());
        let tls = self
            .shared
            .opts()
            .leafnodes
            .as_ref()
            .and_then(|l| l.tls.clone());
        let Some(tls) = tls else {
            self.push(|b| info.encode(b));
            return Ok(transport::split_plain(stream));
        };
        info.tls_required = true;
        let mut line = bytes::BytesMut::new();
        info.encode(&mut line);
        let config = security_tls::server_config(&tls).map_err(|why| {
            error!("{} - TLS leafnode handshake error: {why}", self.desc);
            CloseReason::TlsHandshakeFailure
        })?;
        // `handshake_first`: the handshake before INFO, which then goes over TLS; with a
        // fallback delay, a leaf that sends nothing for that long gets the plaintext INFO
        // first after all (nats-server's `tlsFirstFallback`).
        let tls_first = tls.handshake_first
            && match tls.handshake_first_fallback {
                Some(delay) => security_tls::first_byte(&stream, delay).await.is_some(),
                None => true,
            };
        let plain_info = (!tls_first).then_some(&line[..]);
        debug!("{} - Starting TLS leafnode server handshake", self.desc);
        match security_tls::accept(config, stream, plain_info, tls.timeout).await {
            Ok(stream) => {
                if !transport::is_pinned(stream.get_ref().1, &tls, &self.desc) {
                    return Err(CloseReason::TlsHandshakeFailure);
                }
                transport::log_handshake(&self.desc, stream.get_ref().1);
                if tls_first {
                    self.push(|b| b.extend_from_slice(&line));
                }
                Ok(transport::split_tls(stream))
            }
            Err(err) => Err(self.handshake_failed(err)),
        }
    }

    /// The dialer's side: the hub's INFO is read in plaintext; when it says `tls_required`, or
    /// the remote has a `tls` block or a `tls://` URL, the TLS handshake follows (as its
    /// client, expecting the certificate of the host dialed), then the INFO is answered.
    async fn dialed_transport(
        &mut self,
        mut stream: TcpStream,
    ) -> Result<(transport::ReadHalf, transport::WriteHalf), CloseReason> {
        let Some((remote, url)) = self.solicited.clone() else {
            return Ok(transport::split_plain(stream));
        };
        if url.ws {
            return self.dialed_websocket(stream, &remote, &url).await;
        }
        // The remote's `tls { handshake_first }`: the handshake before the hub's INFO, which
        // then comes over TLS (the hub must do the same).
        if remote.tls.as_ref().is_some_and(|t| t.handshake_first) {
            let mut stream = self.tls_client(stream, &remote, &url).await?;
            let line = self.hub_info_line(&remote, &mut stream).await?;
            self.first_hub_info(&line)?;
            return Ok(transport::split_tls_dialed(stream));
        }
        let line = self.hub_info_line(&remote, &mut stream).await?;
        let Some(json) = line.strip_prefix(b"INFO ".as_slice()) else {
            return Err(CloseReason::ReadError);
        };
        let tls_required = serde_json::from_slice::<LeafInfo>(json)
            .map(|info| info.tls_required)
            .unwrap_or(false);
        let halves = match remote.tls.is_some() || tls_required || url.tls {
            false => transport::split_plain(stream),
            true => transport::split_tls_dialed(self.tls_client(stream, &remote, &url).await?),
        };
        self.first_hub_info(&line)?;
        Ok(halves)
    }

    /// The hub's first line, within the remote's `first_info_timeout`.
    async fn hub_info_line(
        &self,
        remote: &RemoteLeaf,
        stream: &mut (impl AsyncRead + Unpin),
    ) -> Result<Vec<u8>, CloseReason> {
        match tokio::time::timeout(remote.first_info_timeout, info_line(stream)).await {
            Ok(Some(line)) => Ok(line),
            _ => Err(CloseReason::ReadError),
        }
    }

    /// Handles the hub's first line, which must be its INFO.
    fn first_hub_info(&mut self, line: &[u8]) -> Result<(), CloseReason> {
        let Some(json) = line.strip_prefix(b"INFO ".as_slice()) else {
            return Err(CloseReason::ReadError);
        };
        if self.trace {
            trace_op(&self.desc, &RouteOp::Info(json));
        }
        if let Err(err) = self.handle_hub_info(json) {
            error!("{} - {err}", self.desc);
            return Err(CloseReason::ProtocolViolation);
        }
        Ok(())
    }

    /// The TLS handshake as the hub's client, expecting the certificate of the host dialed.
    async fn tls_client(
        &self,
        stream: TcpStream,
        remote: &RemoteLeaf,
        url: &LeafUrl,
    ) -> Result<transport::DialedStream, CloseReason> {
        let tls = remote.tls.clone().unwrap_or_default();
        let config = security_tls::client_config(&tls).map_err(|why| {
            error!("{} - TLS leafnode handshake error: {why}", self.desc);
            CloseReason::TlsHandshakeFailure
        })?;
        debug!("{} - Starting TLS leafnode client handshake", self.desc);
        match security_tls::connect(config, stream, &url.host, tls.timeout).await {
            Ok(stream) => {
                if !transport::is_pinned(stream.get_ref().1, &tls, &self.desc) {
                    return Err(CloseReason::TlsHandshakeFailure);
                }
                transport::log_handshake(&self.desc, stream.get_ref().1);
                Ok(stream)
            }
            Err(err) => Err(self.handshake_failed(err)),
        }
    }

    /// The dialer's side over WebSocket: TLS first for `wss://` (or a `tls` block), then the
    /// upgrade on the hub's WebSocket listener. The hub's INFO arrives in a frame, for the
    /// read loop.
    async fn dialed_websocket(
        &mut self,
        stream: TcpStream,
        remote: &RemoteLeaf,
        url: &LeafUrl,
    ) -> Result<(transport::ReadHalf, transport::WriteHalf), CloseReason> {
        let host = match url.host.contains(':') {
            true => format!("[{}]:{}", url.host, url.port),
            false => format!("{}:{}", url.host, url.port),
        };
        let path = crate::proto::websocket_client::leaf_path(url.path());
        let conn = self.conn.clone();
        let upgraded = match remote.tls.is_some() || url.tls {
            false => {
                let split = transport::split_plain;
                websocket::dial_upgrade(stream, split, conn, &host, &path, remote).await
            }
            true => {
                let stream = self.tls_client(stream, remote, url).await?;
                let split = transport::split_tls_dialed;
                websocket::dial_upgrade(stream, split, conn, &host, &path, remote).await
            }
        };
        upgraded.map_err(|why| {
            error!(
                "{} - Error soliciting websocket connection: {why}",
                self.desc
            );
            CloseReason::ReadError
        })
    }

    fn handshake_failed(&self, err: HandshakeError) -> CloseReason {
        error!("{} - TLS leafnode handshake error: {err}", self.desc);
        info!(
            "{} - Leafnode connection closed: TLS Handshake Failure",
            self.desc
        );
        CloseReason::TlsHandshakeFailure
    }

    fn handle(&mut self, op: RouteOp<'_>) -> Result<(), ProtocolError> {
        if self.trace {
            trace_op(&self.desc, &op);
        }
        if self.leaf.is_none() {
            return match (op, self.solicited.is_some()) {
                (RouteOp::Connect(json), false) => self.handle_connect(json),
                (RouteOp::Info(json), true) => self.handle_hub_info(json),
                (RouteOp::Err(text), _) => self.handle_err(text),
                (RouteOp::Ping, true) => {
                    self.push(|b| b.extend_from_slice(protocol::PONG));
                    Ok(())
                }
                // The hub takes nothing before CONNECT.
                (_, false) => Err(ProtocolError::AuthorizationViolation),
                (_, true) => Ok(()),
            };
        }
        match op {
            RouteOp::Connect(_) | RouteOp::Info(_) | RouteOp::Ok => Ok(()),
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
            RouteOp::Err(text) => self.handle_err(text),
            RouteOp::Sub(interest) => {
                let Some(leaf) = self.leaf.clone() else {
                    return Ok(());
                };
                if interest.subject == leaf.account.loop_subject().as_bytes() {
                    return Err(loop_detected(&leaf.account.name));
                }
                if !subject::is_valid_filter(interest.subject) {
                    self.push(|b| protocol::encode_err(b, "Invalid Subscription"));
                    return Ok(());
                }
                leaf.add_interest(&interest);
                Ok(())
            }
            RouteOp::Unsub(interest) => {
                if let Some(leaf) = &self.leaf {
                    leaf.remove_interest(&interest);
                }
                Ok(())
            }
            RouteOp::Msg(m) => {
                self.in_msgs += 1;
                self.in_bytes += m.message.len() as u64;
                let Some(leaf) = self.leaf.clone() else {
                    return Ok(());
                };
                // `deny_imports`: not taken from the other end.
                if !leaf.imports(m.subject) {
                    return Ok(());
                }
                let account = leaf.account.clone();
                let matches = self.cache.lookup(&account, m.subject);
                let msg = Message {
                    subject: m.subject,
                    reply: m.reply,
                    header_len: m.header_len,
                    message: m.message,
                };
                self.out.leaf_origin = Some(leaf.remote_cluster.clone());
                let name = leaf.remote_name.clone();
                let from = super::msgtrace::FromRoute {
                    kind: msgtrace::kind::LEAF,
                    cid: self.conn.cid,
                    name: &name,
                    desc: &self.desc,
                };
                self.out.from_leaf = Some(leaf);
                let traced = m
                    .header_len
                    .is_some_and(|h| msgtrace::requested(&m.message[..h], &account))
                    && super::msgtrace::deliver_routed(
                        &self.shared,
                        from,
                        &account,
                        &matches,
                        &msg,
                        m.queues,
                        &mut self.out,
                    );
                if !traced {
                    deliver::deliver_routed(&account, &matches, &msg, m.queues, &mut self.out);
                }
                self.out.from_leaf = None;
                self.out.leaf_origin = None;
                Ok(())
            }
        }
    }

    /// `-ERR` from the other end: it closes; a loop, our cluster's name or our version make
    /// the dialer wait (`leafProcessErr`).
    fn handle_err(&mut self, text: &[u8]) -> Result<(), ProtocolError> {
        let text = String::from_utf8_lossy(text);
        error!("{} - Leafnode Error {text}", self.desc);
        let delay = if text.contains("Loop detected") {
            LOOP_DELAY
        } else if text.contains("remote leafnode has same cluster name") {
            error!(
                "{} - Leafnode connection dropped with same cluster name error. Delaying attempt to reconnect for {}s",
                self.desc,
                SAME_CLUSTER_DELAY.as_secs()
            );
            SAME_CLUSTER_DELAY
        } else if text.contains("connection rejected since minimum version required") {
            error!(
                "{} - Leafnode connection dropped due to minimum version requirement. Delaying attempt to reconnect for {}s",
                self.desc,
                MIN_VERSION_DELAY.as_secs()
            );
            MIN_VERSION_DELAY
        } else {
            return Err(ProtocolError::Malformed("leafnode error"));
        };
        if self.solicited.is_some() {
            self.ending = Ending::Delay(delay);
        }
        Err(ProtocolError::Malformed("leafnode error"))
    }

    /// The other end's CONNECT, on an accepted connection: who it is, which account it binds.
    fn handle_connect(&mut self, json: &[u8]) -> Result<(), ProtocolError> {
        let Ok(connect) = serde_json::from_slice::<LeafConnect>(json) else {
            return Err(ProtocolError::Malformed("invalid CONNECT JSON"));
        };
        if !connect.lang.is_empty() {
            return Err(ProtocolError::Refused(
                "attempted to connect to leaf node port".into(),
            ));
        }
        let account = self.authorize(&connect)?;
        let ours = self.shared.leaf_cluster_name();
        let clustered = self
            .shared
            .opts()
            .cluster
            .as_ref()
            .is_some_and(|c| c.name.is_some());
        if clustered && connect.cluster == ours {
            return Err(ProtocolError::Refused(
                "remote leafnode has same cluster name".into(),
            ));
        }
        let opts = self.shared.opts();
        let min_version = opts.leafnodes.as_ref().and_then(|l| l.min_version.clone());
        if let Some(min) = min_version.filter(|min| !version_at_least(&connect.version, min)) {
            return Err(self.refuse_version(&account, &min));
        }
        let cluster = match connect.cluster.is_empty() {
            true => connect.name.clone(),
            false => connect.cluster.clone(),
        };
        let mut leaf = Leaf::new(
            self.conn.clone(),
            account,
            &connect.server_id,
            &connect.name,
            &cluster,
            &connect.remote_account,
            false,
            connect.hub,
            (&[], &[]),
        );
        leaf.isolated = connect.isolate || opts.leafnodes.as_ref().is_some_and(|l| l.isolate);
        self.register(leaf);
        Ok(())
    }

    /// Refuses a leafnode older than `min_version` as nats-server does: the INFO that
    /// acknowledges its CONNECT (so that it does not wait for one), then the `-ERR`, and the
    /// connection closes.
    fn refuse_version(&mut self, account: &Account, min: &str) -> ProtocolError {
        let mut info = self.shared.leaf_info(self.conn.cid, None);
        info.connect_info = true;
        info.remote_account = account.name.to_string();
        self.push(|b| info.encode(b));
        let text = format!("connection rejected since minimum version required is {min:?}");
        self.push(|b| protocol::encode_err(b, &text));
        error!("{} - {text} - Account:{}", self.desc, account.name);
        self.close_as = Some(CloseReason::MinimumVersionRequired);
        ProtocolError::Malformed("leafnode below the minimum version")
    }

    /// Checks the CONNECT credentials: the `leafnodes` block's user, nkey or users when it has
    /// any, else the server's own users; returns the account the connection is bound to.
    fn authorize(&mut self, connect: &LeafConnect) -> Result<Arc<Account>, ProtocolError> {
        let opts = self.shared.opts();
        let leaf = opts.leafnodes.clone().unwrap_or_default();
        let user = connect.user.as_deref();
        let pass = connect.pass.as_deref().unwrap_or_default();
        let name = if let Some(want) = &leaf.username {
            let ok = user == Some(want.as_str())
                && auth::check_secret(pass, leaf.password.as_deref().unwrap_or_default());
            ok.then(|| leaf.account.clone()).ok_or(())
        } else if let Some(want) = &leaf.nkey {
            // The nkey, and the nonce of our INFO signed with its seed.
            let ok = connect.nkey.as_deref() == Some(want.as_str())
                && connect
                    .sig
                    .as_deref()
                    .is_some_and(|sig| auth::verify_signature(want, sig, self.nonce.as_deref()));
            ok.then(|| leaf.account.clone()).ok_or(())
        } else if !leaf.users.is_empty() {
            leaf.users
                .iter()
                .find(|u| Some(u.user.as_str()) == user && auth::check_secret(pass, &u.password))
                .map(|u| u.account.clone().or_else(|| leaf.account.clone()))
                .ok_or(())
        } else if opts.auth_required() {
            let creds = auth::Credentials {
                user: connect.user.clone(),
                pass: connect.pass.clone(),
                token: connect.auth_token.clone(),
                nkey: connect.nkey.clone(),
                sig: connect.sig.clone(),
                jwt: connect.jwt.clone(),
                nonce: self.nonce.clone(),
                leafnode: true,
                ..auth::Credentials::default()
            };
            // In operator mode: the user JWT and the signed nonce, as for a client.
            crate::security::authenticate(&opts, &creds, &self.desc, Some(self.conn.addr.ip()))
                .map(|a| (!a.account.is_empty()).then_some(a.account))
                .ok_or(())
        } else {
            Ok(leaf.account.clone())
        };
        let Ok(name) = name else {
            match (&connect.nkey, user) {
                (Some(nkey), _) => error!("{} - authentication error - Nkey {nkey:?}", self.desc),
                (None, Some(user)) => {
                    error!("{} - authentication error - User {user:?}", self.desc)
                }
                (None, None) => error!("{} - authentication error", self.desc),
            }
            return Err(ProtocolError::AuthorizationViolation);
        };
        let name = name.unwrap_or_else(|| crate::engine::account::GLOBAL_ACCOUNT.to_string());
        let account = self
            .shared
            .router
            .account(&name)
            .ok_or(ProtocolError::AuthorizationViolation)?;
        // The account JWT's `limits.leaf`: how many leafnodes the account may have.
        let limit = opts
            .operator
            .account(&name)
            .map(|a| a.claims.nats.limits.leaf);
        if let Some(limit) = limit.and_then(|l| usize::try_from(l).ok()) {
            if account.leaf_count() >= limit {
                // nats-server logs it twice: once as it refuses, once as it closes.
                error!("{} - {}", self.desc, ProtocolError::MaxAccountConnections);
                self.close_as = Some(CloseReason::MaxAccountConnectionsExceeded);
                return Err(ProtocolError::MaxAccountConnections);
            }
        }
        Ok(account)
    }

    /// The hub's INFO, on a dialed connection: CONNECT back, and the link is up.
    fn handle_hub_info(&mut self, json: &[u8]) -> Result<(), ProtocolError> {
        let Ok(info) = serde_json::from_slice::<LeafInfo>(json) else {
            return Err(ProtocolError::Malformed("invalid INFO JSON"));
        };
        let Some((remote, url)) = self.solicited.clone() else {
            return Ok(());
        };
        let name = remote.account.clone().unwrap_or_else(|| "$G".to_string());
        let Some(account) = self.shared.router.account(&name) else {
            return Err(ProtocolError::Malformed("unknown local account"));
        };
        // A `.creds` remote: its JWT, and the hub's nonce signed with its seed.
        let (jwt, sig) = match &remote.credentials {
            Some(path) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let nonce = info.nonce.clone().unwrap_or_default();
                match auth::sign_with_creds(&text, &nonce) {
                    Some((jwt, sig)) => (Some(jwt), Some(sig)),
                    None => {
                        error!(
                            "{} - Error reading credentials file {:?}",
                            self.desc,
                            path.display()
                        );
                        return Err(ProtocolError::Malformed("unusable credentials file"));
                    }
                }
            }
            None => (None, None),
        };
        // An `nkey` remote: its public key, and the nonce signed with the seed.
        let (nkey, sig) = match (&remote.nkey, sig) {
            (Some(seed), None) => {
                let nonce = info.nonce.clone().unwrap_or_default();
                match auth::sign_with_seed(seed, &nonce) {
                    Some((nkey, sig)) => (Some(nkey), Some(sig)),
                    None => return Err(ProtocolError::Malformed("invalid nkey seed")),
                }
            }
            (_, sig) => (None, sig),
        };
        let connect = LeafConnect {
            version: protocol::NATS_SERVER_VERSION.to_string(),
            jwt,
            nkey,
            sig,
            user: url.username.clone(),
            pass: url.password.clone(),
            server_id: self.shared.server_id.clone(),
            name: self.shared.server_name.clone(),
            cluster: self.shared.leaf_cluster_name(),
            headers: true,
            hub: remote.hub,
            isolate: remote.request_isolation,
            remote_account: name,
            // 3: understands message tracing, as nats-server 2.11+ says.
            protocol: 3,
            ..LeafConnect::default()
        };
        self.push(|b| connect.encode(b));
        let cluster = match info.cluster.is_empty() {
            true => info.server_name.clone(),
            false => info.cluster.clone(),
        };
        let mut leaf = Leaf::new(
            self.conn.clone(),
            account,
            &info.server_id,
            &info.server_name,
            &cluster,
            "",
            true,
            !remote.hub,
            (&remote.deny_exports, &remote.deny_imports),
        );
        let opts = self.shared.opts();
        leaf.isolated = remote.isolate || opts.leafnodes.as_ref().is_some_and(|l| l.isolate);
        self.register(leaf);
        Ok(())
    }

    /// The link is up: bound to its account, told of the interest it is to hear of.
    fn register(&mut self, leaf: Leaf) {
        let leaf = Arc::new(leaf);
        self.conn.bind_account(leaf.account.clone());
        self.desc = format!("{} - {:?}", self.desc, leaf.remote_name);
        self.conn.set_desc(&self.desc);
        self.shared.leafnode.leafs.add(leaf.clone());
        leaf.account.attach_leaf(&leaf);
        self.leaf = Some(leaf);
    }

    /// Closes the connection and forgets the leaf and its interest.
    fn finish(mut self, reason: CloseReason) -> Ending {
        self.conn.outbound.close(reason, true);
        self.out.flush(Some(&self.conn));
        if let Some(leaf) = self.leaf.take() {
            self.shared.leafnode.leafs.remove(&leaf);
            leaf.account.detach_leaf(&leaf);
            leaf.purge();
        }
        info!(
            "{} - Leafnode connection closed: {}",
            self.desc,
            reason.as_str()
        );
        self.ending
    }
}

/// The error a server sends when a leafnode tells it its own loop detection subject.
fn loop_detected(account: &str) -> ProtocolError {
    ProtocolError::Refused(
        format!(
            "Loop detected for leafnode account={account:?}. Delaying attempt to reconnect for {}s",
            LOOP_DELAY.as_secs()
        )
        .into(),
    )
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
        match (&self.leaf, &self.solicited) {
            (Some(_), _) => None,
            (None, Some(_)) => Some(ProtocolError::Malformed("no INFO from the hub in time")),
            (None, None) => Some(ProtocolError::AuthenticationTimeout),
        }
    }

    fn parse_op<'b>(&self, buf: &'b [u8]) -> Result<Option<(RouteOp<'b>, usize)>, ProtocolError> {
        let parsed = wire::parse(buf, self.shared.opts().max_control_line, LEAF_MAX_PAYLOAD);
        // nats-server closes a leafnode that sends a client's operation without a word.
        match parsed {
            Err(ProtocolError::UnknownOperation) if self.leaf.is_some() => {
                Err(ProtocolError::Malformed("unknown leafnode operation"))
            }
            other => other,
        }
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
        let reason = peer::close_with_error(self, err);
        self.close_as.take().unwrap_or(reason)
    }
}

fn trace_op(desc: &str, op: &RouteOp<'_>) {
    let lossy = String::from_utf8_lossy;
    match op {
        RouteOp::Sub(i) => trace!(
            "{desc} - <<- [LS+ {}{}]",
            lossy(i.subject),
            i.queue
                .map(|q| format!(" {} {}", lossy(q), i.weight))
                .unwrap_or_default()
        ),
        RouteOp::Unsub(i) => trace!("{desc} - <<- [LS- {}]", lossy(i.subject)),
        RouteOp::Msg(m) => trace!(
            "{desc} - <<- [LMSG {} {}]",
            lossy(m.subject),
            m.message.len()
        ),
        RouteOp::Connect(json) => trace!("{desc} - <<- [CONNECT {}]", lossy(json)),
        RouteOp::Info(json) => trace!("{desc} - <<- [INFO {}]", lossy(json)),
        RouteOp::Ping => trace!("{desc} - <<- [PING]"),
        RouteOp::Pong => trace!("{desc} - <<- [PONG]"),
        RouteOp::Ok => trace!("{desc} - <<- [OK]"),
        RouteOp::Err(text) => trace!("{desc} - <<- [-ERR {}]", lossy(text)),
    }
}
