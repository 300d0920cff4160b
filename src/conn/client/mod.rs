//! One client connection: CONNECT and auth, the read loop that parses and routes, the writer
//! that flushes the outbound queue, and the PING timer; how it opens (INFO, TLS, or a
//! WebSocket upgrade's frames) is in `open`. A WebSocket client is this same session over
//! another transport.
//!
//! The reader parses a whole read at a time. Every message it publishes is appended to each
//! subscriber's outbound queue right away; the subscribers' writers are woken once, after the
//! batch (see `outbound`). Match results come from a per-connection cache that is valid while
//! the router's generation number is unchanged, so the common case takes no shared lock.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, trace};

use crate::config::Options;
use crate::engine::account::Account;
use crate::engine::connection::{ClientMeta, Connection};
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::msgtrace;
use crate::engine::outbound::{Appended, CloseReason};
use crate::engine::permissions::{self, Permissions};
use crate::engine::subscription::Subscription;
use crate::proto::error::ProtocolError;
use crate::proto::parser::{self, ClientOp};
use crate::proto::protocol::{self, ConnectOptions};
use crate::proto::subject;
use crate::security::auth;
use crate::security::tls;
use std::time::Duration;

use super::cache::{publish_allowed, MatchCache};
use super::liveness::Liveness;
use super::reader::{ReadBuffer, SHARE_PAYLOAD_FROM};
use super::trace::trace_in;
use super::transport::{ReadHalf, FIRST_PING_INTERVAL};
use super::websocket::Upgrade;
use crate::state::Shared;

mod callout;
mod fetch;
mod open;
mod traced;
pub use open::serve;
pub(in crate::conn) use open::serve_upgraded;

/// The reader's side of a connection: everything the read loop needs.
struct Client {
    shared: Arc<Shared>,
    /// The server options, refreshed at every read batch so that a reload reaches existing
    /// connections.
    server: Arc<Options>,
    /// The reload generation `server` was taken at.
    server_generation: u64,
    conn: Arc<Connection>,
    /// `IP:PORT - cid:N` (plus ` - "name"` once CONNECT names the client): the log prefix.
    desc: String,
    opts: ConnectOptions,
    /// CONNECT was received (and accepted).
    connected: bool,
    /// The post-CONNECT INFO has been sent.
    connect_info_sent: bool,
    addr: SocketAddr,
    /// The account the connection is bound to (`$G` until CONNECT).
    account: Arc<Account>,
    cache: MatchCache,
    /// The user's permissions; `None` (the common case) skips every check.
    perms: Option<Arc<Permissions>>,
    /// The nonce sent in INFO, for nkey users to sign.
    nonce: Option<String>,
    /// The user's own limits (operator mode), beside the server's.
    user_limits: auth::Limits,
    /// When the user's credentials expire (operator mode).
    expires: Option<Instant>,
    /// `expires` changed: the read loop's deadline must be moved to it.
    expiry_armed: bool,
    /// The names in the client's verified TLS certificate, for `verify_and_map`.
    cert: Option<Arc<tls::CertIdentity>>,
    /// The client's TLS session (version, cipher, certificates), for auth callout requests.
    tls_session: Option<Arc<tls::SessionInfo>>,
    /// Who a refused CONNECT claimed to be, for the log line.
    auth_failure: String,
    /// Publish decisions by subject, for `perms` (nats-server's `pcache`).
    pub_cache: HashMap<Box<[u8]>, bool, ahash::RandomState>,
    /// The connections this batch appended to (woken once it ends) and the subscribers it
    /// found backlogged (waited for once it ends, `wait_for_room`).
    out: Deliveries,
    /// PINGs out, RTT, and when the client was last heard from.
    live: Liveness,
    /// When the first-PING and authorization timers started.
    started: Instant,
    in_msgs: u64,
    in_bytes: u64,
    trace: bool,
    /// What the WebSocket upgrade settled, for a WebSocket client.
    websocket: Option<Upgrade>,
    /// A CONNECT an auth callout service is deciding: the read loop asks the service before
    /// it handles anything after it.
    callout: Option<Box<callout::Pending>>,
    /// A CONNECT whose user's account the server does not know yet: the read loop has the
    /// resolver fetch it, then handles the CONNECT again (once), before anything after it.
    fetch: Option<fetch::PendingFetch>,
    /// The length of the PUB the unparsed input starts with, when its control line is here
    /// and its payload is not (0: none): the reader makes room for it.
    awaited: usize,
}

impl Client {
    fn new(shared: Arc<Shared>, conn: Arc<Connection>, addr: SocketAddr) -> Self {
        let desc = conn.desc().to_string();
        let account = conn.account();
        Client {
            server_generation: shared.opts_generation(),
            server: shared.opts(),
            shared,
            conn,
            desc,
            opts: ConnectOptions::default(),
            connected: false,
            connect_info_sent: false,
            addr,
            account,
            cache: MatchCache::default(),
            perms: None,
            nonce: None,
            user_limits: auth::Limits::default(),
            expires: None,
            expiry_armed: false,
            auth_failure: String::new(),
            cert: None,
            tls_session: None,
            pub_cache: HashMap::default(),
            out: Deliveries::default(),
            live: Liveness::default(),
            started: Instant::now(),
            in_msgs: 0,
            in_bytes: 0,
            trace: tracing::enabled!(tracing::Level::TRACE),
            websocket: None,
            callout: None,
            fetch: None,
            awaited: 0,
        }
    }

    async fn read_loop(&mut self, mut reader: ReadHalf) {
        let mut ping_interval = self.ping_interval();
        let first_ping = ping_interval.min(FIRST_PING_INTERVAL);
        let mut ping = tokio::time::interval_at(self.started + first_ping, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let auth_deadline = tokio::time::sleep_until(self.started + self.auth_timeout());
        tokio::pin!(auth_deadline);

        let mut input = ReadBuffer::default();
        let reason = 'session: loop {
            let result = tokio::select! {
                biased;
                _ = self.conn.outbound.reader_wakeup() => {
                    break self.conn.outbound.close_reason().unwrap_or(CloseReason::ServerShutdown);
                }
                read = input.read(&mut reader) => match read {
                    Ok(0) => break CloseReason::ClientClosed,
                    Ok(_) => {
                        self.live.last_in = Instant::now();
                        self.refresh();
                        self.awaited = 0;
                        let mut result = self.process(&mut input);
                        while result.is_ok() && (self.callout.is_some() || self.fetch.is_some()) {
                            if let Some(fetch) = self.fetch.take() {
                                // nats-server's read loop waits for the fetch too.
                                // Boxed, as the callout below: rare, and their futures (an
                                // HTTP client over TLS) would otherwise sit inline in every
                                // connection's task, idle ones too (20 KiB a connection
                                // instead of 7).
                                result = Box::pin(self.run_fetch(fetch)).await;
                                if result.is_ok() && self.callout.is_none() {
                                    result = self.process(&mut input);
                                }
                                continue;
                            }
                            // nats-server's read loop waits for the service too.
                            result = match Box::pin(self.run_callout()).await {
                                Some(verdict) => verdict,
                                None => break 'session self
                                    .conn
                                    .outbound
                                    .close_reason()
                                    .unwrap_or(CloseReason::ServerShutdown),
                            };
                            if result.is_ok() {
                                result = self.process(&mut input);
                            }
                        }
                        input.expect_frame(self.awaited);
                        reader.hush_if_streaming(&input);
                        // Once per read batch: what monitoring reads of this connection.
                        self.conn.stats.publish(self.in_msgs, self.in_bytes, self.live.last_in.into_std());
                        result
                    }
                    Err(_) => break CloseReason::ReadError,
                },
                _ = ping.tick() => {
                    self.refresh();
                    self.ping_timer()
                }
                _ = &mut auth_deadline, if self.awaiting_auth() || self.expires.is_some() => {
                    Err(if self.awaiting_auth() {
                        ProtocolError::AuthenticationTimeout
                    } else {
                        ProtocolError::AuthenticationExpired
                    })
                }
            };
            let woke_others = self.flush_batch();
            if let Some(at) = self.expires.filter(|_| self.expiry_armed) {
                self.expiry_armed = false;
                auth_deadline.as_mut().reset(at);
            }
            if let Err(err) = result {
                let reason = close_reason(&err);
                self.fail(err);
                break reason;
            }
            self.out.pacing();
            if !self.out.backlogged.is_empty() {
                // Pace this publisher to the subscribers it is outrunning (see `wait_for_room`).
                self.out.wait_for_backlogged().await;
                input.paused();
            } else if woke_others && input.yield_due() {
                input.paused();
                tokio::task::yield_now().await;
            }
            if self.ping_interval() != ping_interval {
                ping_interval = self.ping_interval();
                ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
                ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
            }
            input.settle();
        };
        self.finish(reason);
    }

    /// Picks up reloaded options and logging levels (before each read batch is handled).
    fn refresh(&mut self) {
        let generation = self.shared.opts_generation();
        if generation != self.server_generation {
            self.server_generation = generation;
            self.server = self.shared.opts();
            // A reload may have changed the user's permissions (`Shared::reload` sets them
            // before bumping the generation).
            if self.connected {
                self.perms = self.conn.permissions();
                self.pub_cache.clear();
            }
        }
        self.trace = tracing::enabled!(tracing::Level::TRACE);
        self.out.trace = self.trace;
    }

    /// Parses and handles every whole operation in the input, leaving a partial one for later.
    fn process(&mut self, input: &mut ReadBuffer) -> Result<(), ProtocolError> {
        let mut limits = parser::Limits {
            max_control_line: self.server.max_control_line,
            max_payload: self.max_payload(),
        };
        let mut consumed = 0;
        let result = loop {
            // With auth required, nats-server refuses anything but CONNECT from its first byte
            // on: even an unknown operation is an authorization violation.
            let first = input.buf[consumed..].first();
            if self.awaiting_auth() && first.is_some_and(|b| !b.eq_ignore_ascii_case(&b'c')) {
                break Err(ProtocolError::AuthorizationViolation);
            }
            // A large payload is handed to subscribers as a slice of the read buffer, not
            // copied: its frame is split off the buffer (and parsed again from there).
            let frame: Bytes;
            let parsed = match parser::parse(&input.buf[consumed..], &limits) {
                Ok(Some((op, n))) if shares_payload(&op) => {
                    input.buf.advance(consumed);
                    consumed = 0;
                    frame = input.split_frame(n);
                    self.out.shared = Some(frame.clone());
                    parser::parse(&frame, &limits).map(|op| op.map(|(op, _)| (op, 0)))
                }
                parsed => parsed,
            };
            match parsed {
                Ok(Some((op, n))) => {
                    if self.trace {
                        trace_in(&self.desc, &op);
                    }
                    consumed += n;
                    let connect = matches!(op, ClientOp::Connect(_));
                    let handled = self.handle(op);
                    if connect {
                        // The user's own payload limit holds from its CONNECT on, within
                        // this batch too.
                        limits.max_payload = self.max_payload();
                    }
                    if let Err(err) = handled {
                        if err.closes_connection() {
                            break Err(err);
                        }
                        self.report(&err);
                        self.send_err(&err);
                    }
                    self.out.shared = None;
                    if self.callout.is_some() || self.fetch.is_some() {
                        break Ok(());
                    }
                }
                Ok(None) => {
                    self.awaited = parser::frame_len(&input.buf[consumed..], &limits).unwrap_or(0);
                    break Ok(());
                }
                Err(err) => break Err(err),
            }
        };
        input.buf.advance(consumed);
        self.out.shared = None;
        result
    }

    fn awaiting_auth(&self) -> bool {
        !self.connected && auth::must_authenticate(&self.server, self.websocket.is_some())
    }

    /// The PING interval: the `websocket` block's for a WebSocket client, when it sets one.
    fn ping_interval(&self) -> std::time::Duration {
        let ws = self.server.websocket.as_ref().map(|w| w.ping_interval);
        match ws.filter(|i| self.websocket.is_some() && !i.is_zero()) {
            Some(interval) => interval,
            None => self.server.ping_interval,
        }
    }

    /// The authorization timeout: the `websocket` block's for a WebSocket client, when set.
    fn auth_timeout(&self) -> std::time::Duration {
        let ws = self.server.websocket.as_ref().and_then(|w| w.auth_timeout);
        match ws.filter(|_| self.websocket.is_some()) {
            Some(timeout) => timeout,
            None => self.server.auth_timeout(),
        }
    }

    /// Credentials as this connection presents them before CONNECT's own.
    fn base_credentials(&self) -> auth::Credentials {
        auth::Credentials {
            websocket: self.websocket.is_some(),
            ..auth::Credentials::default()
        }
    }

    fn handle(&mut self, op: ClientOp<'_>) -> Result<(), ProtocolError> {
        if self.awaiting_auth() && !matches!(op, ClientOp::Connect(_)) {
            return Err(ProtocolError::AuthorizationViolation);
        }
        if !self.connected
            && auth::no_auth_user(&self.server, self.websocket.is_some()).is_some()
            && !matches!(op, ClientOp::Connect(_))
        {
            // nats-server binds a client that starts without CONNECT to the no_auth_user (the
            // telnet case), permissions and all.
            let credentials = self.base_credentials();
            match auth::authenticate(&self.server, &credentials) {
                Some(user) => {
                    self.bind_user(&user);
                    self.shared.set_credentials(self.conn.cid, credentials);
                    self.connected = true;
                }
                None => return Err(ProtocolError::AuthorizationViolation),
            }
        }
        match op {
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => self.handle_pub(subject, reply, None, payload),
            ClientOp::HPub {
                subject,
                reply,
                header_len,
                message,
            } => {
                if !self.opts.headers {
                    return Err(ProtocolError::Malformed("message headers not supported"));
                }
                // An empty header block is delivered as a plain MSG, as from nats-server.
                let header_len = (header_len > 0).then_some(header_len);
                self.handle_pub(subject, reply, header_len, message)
            }
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.handle_sub(subject, queue, sid),
            ClientOp::Unsub { sid, max } => self.handle_unsub(sid, max),
            ClientOp::Ping => {
                self.push_proto(protocol::PONG);
                if self.connected && self.opts.protocol >= 1 && !self.connect_info_sent {
                    // nats-server (2.12+) follows the first PONG after CONNECT with an INFO
                    // naming the account the connection is bound to.
                    self.connect_info_sent = true;
                    let shared = self.shared.clone();
                    let _order = shared.info_order();
                    // From now on it is told of changes (`connect_urls`, lame duck mode).
                    self.conn.set_async_info(true);
                    let mut info = self.shared.info(self.conn.cid, self.addr);
                    info.connect_info = true;
                    info.remote_account = Some(self.account.name.to_string());
                    info.acc_is_sys = self.account.is_system.load(Ordering::Relaxed);
                    self.push(|b| info.encode(b));
                }
                Ok(())
            }
            ClientOp::Pong => {
                if let Some(elapsed) = self.live.on_pong() {
                    self.conn.stats.set_rtt(elapsed);
                    if let Some((_, rtt)) = &mut self.out.origin {
                        *rtt = elapsed;
                    }
                }
                Ok(())
            }
            ClientOp::Connect(json) => self.handle_connect(json),
            ClientOp::Info(json) => match serde_json::from_slice::<serde_json::Value>(json) {
                Ok(_) => Ok(()),
                Err(_) => Err(ProtocolError::Malformed("invalid INFO JSON")),
            },
            ClientOp::Ok => Ok(()),
            ClientOp::Err(_) => Err(ProtocolError::Malformed("Client Error")),
        }
    }

    fn handle_connect(&mut self, json: &[u8]) -> Result<(), ProtocolError> {
        self.connect_with(json, true)
    }

    /// CONNECT: `may_fetch` when its user's account may still be fetched first.
    fn connect_with(&mut self, json: &[u8], may_fetch: bool) -> Result<(), ProtocolError> {
        if self.conn.stats.rtt().is_none() {
            // nats-server's first RTT estimate: from accepting the connection to its CONNECT.
            self.conn.stats.set_rtt(self.conn.stats.age());
        }
        let mut opts = self.opts.clone();
        if let Err(why) = opts.apply(json) {
            error!("{} - {}", self.desc, why);
            return Err(ProtocolError::Malformed("invalid CONNECT JSON"));
        }
        self.conn.set_meta(ClientMeta {
            name: opts.name.clone(),
            lang: opts.lang.clone(),
            version: opts.version.clone(),
            user: opts.user.clone().filter(|u| !u.is_empty()),
            jwt: None,
        });
        let mut credentials = auth::Credentials::from_connect(&opts);
        credentials.nonce = self.nonce.clone();
        credentials.cert = self.cert.clone();
        if let Some(upgrade) = &self.websocket {
            credentials.websocket = true;
            // The configured cookies stand in for what CONNECT leaves out.
            let cookie = |c: &Option<String>| c.clone().filter(|v| !v.is_empty());
            credentials.user = credentials.user.or_else(|| cookie(&upgrade.cookie_user));
            credentials.pass = credentials.pass.or_else(|| cookie(&upgrade.cookie_pass));
            credentials.token = credentials.token.or_else(|| cookie(&upgrade.cookie_token));
            credentials.jwt = credentials.jwt.or_else(|| cookie(&upgrade.cookie_jwt));
        }
        if may_fetch {
            if let Some(account) = self.account_to_fetch(&credentials) {
                self.fetch = Some(fetch::PendingFetch {
                    account,
                    json: json.to_vec(),
                });
                return Ok(());
            }
        }
        let server = &self.server;
        let (user, plan) =
            crate::security::judge(server, &credentials, &self.desc, Some(self.addr.ip()));
        if let Some(plan) = plan {
            // The service decides; the rest of the batch waits for it (`read_loop`).
            // Boxed: 500 bytes every connection would otherwise carry for a rare moment.
            self.callout = Some(Box::new(callout::Pending {
                plan,
                opts,
                credentials,
                jwt_passed: user.is_some_and(|u| u.jwt.is_some()),
            }));
            return Ok(());
        }
        let Some(user) = user else {
            if self.not_pinned(&credentials) {
                self.shared
                    .monitor
                    .pinned_fails
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Err(self.refused(&credentials));
        };
        self.finish_connect(opts, credentials, user, false)
    }

    /// A refused CONNECT: nats-server names who failed in the log line that follows
    /// (`authentication error - User "a"`, or `Nkey`).
    fn refused(&mut self, credentials: &auth::Credentials) -> ProtocolError {
        self.auth_failure = match (&credentials.nkey, &credentials.user) {
            (Some(nkey), _) if self.server.nonce_required() => format!(" - Nkey {nkey:?}"),
            (_, Some(user)) => format!(" - User {user:?}"),
            _ => String::new(),
        };
        ProtocolError::AuthorizationViolation
    }

    /// CONNECT once the user is known: binds it, checks the account's room and the options,
    /// and answers. `via_callout`: an auth callout service admitted the user (its credentials
    /// are not checked again on reload, as the service is not asked again).
    fn finish_connect(
        &mut self,
        opts: ConnectOptions,
        credentials: auth::Credentials,
        user: auth::Authorized,
        via_callout: bool,
    ) -> Result<(), ProtocolError> {
        if user.jwt.is_some() {
            // A JWT user is its public key, as nats-server shows it.
            let mut meta = self.conn.meta();
            meta.user = user.user.clone();
            meta.jwt = user.jwt.clone();
            self.conn.set_meta(meta);
        }
        if !self.connected && self.account_full(&user) {
            // nats-server logs it twice: once as it refuses, once as it closes.
            error!("{} - {}", self.desc, ProtocolError::MaxAccountConnections);
            return Err(ProtocolError::MaxAccountConnections);
        }
        if !(0..=1).contains(&opts.protocol) {
            return Err(ProtocolError::InvalidClientProtocol);
        }
        if opts.no_responders && !opts.headers {
            return Err(ProtocolError::NoRespondersRequiresHeaders);
        }
        if !self.connected {
            self.bind_user(&user);
            let account = self.account.clone();
            // nats-server's prefix: ` - "name"` for a named client, then ` - "$G/user:alice"`
            // for an authenticated one.
            let mut desc = self.desc.clone();
            if let Some(name) = opts.log_name() {
                desc = format!("{desc} - {name:?}");
            }
            if let Some(who) = &user.log_name {
                desc = format!("{desc} - {:?}", format!("{}/{who}", account.name));
            }
            if desc != self.desc {
                self.desc = desc;
                self.conn.set_desc(&self.desc);
            }
            self.shared.client_connected(&self.conn);
        }
        self.conn.headers.store(opts.headers, Ordering::Relaxed);
        if !via_callout {
            self.shared.set_credentials(self.conn.cid, credentials);
        }
        if opts.protocol < 1 {
            self.conn.set_async_info(false);
        }
        self.opts = opts;
        self.connected = true;
        self.send_ok();
        Ok(())
    }

    /// Binds the connection to the authenticated user's account and puts the user's
    /// permissions in force.
    fn bind_user(&mut self, user: &auth::Authorized) {
        let account = self
            .shared
            .router
            .account(&user.account)
            .unwrap_or_else(|| self.shared.router.global().clone());
        self.conn.bind_account(account.clone());
        self.out.publisher = Some(self.conn.cid);
        self.out.origin = Some((
            account.name.clone(),
            self.conn.stats.rtt().unwrap_or_default(),
        ));
        self.account = account;
        // Cached results (and their generations) belong to the account they came from.
        self.cache = MatchCache::default();
        self.conn.set_permissions(user.permissions.clone());
        self.perms = user.permissions.clone();
        self.pub_cache.clear();
        self.user_limits = user.limits;
        if let Some(secs) = user.expires_in {
            self.expires = Some(Instant::now() + Duration::from_secs(secs.max(0) as u64));
            self.expiry_armed = true;
        }
    }

    /// Whether the user's account already has as many client connections as its JWT allows
    /// (`limits.conn`; this connection is not counted in it yet).
    fn account_full(&self, user: &auth::Authorized) -> bool {
        let Ok(limit) = usize::try_from(user.limits.conn) else {
            return false;
        };
        self.shared
            .router
            .account(&user.account)
            .is_some_and(|a| a.clients.load(Ordering::Relaxed) + a.remote_clients() >= limit)
    }

    /// The largest payload this client may publish: the server's, or the user's own limit
    /// when smaller (nats-server's `applyAccountLimits`).
    fn max_payload(&self) -> usize {
        let server = self.server.max_payload;
        match usize::try_from(self.user_limits.payload) {
            Ok(user) => user.min(server),
            Err(_) => server,
        }
    }

    /// The most subscriptions this client may hold, if limited.
    fn max_subs(&self) -> Option<usize> {
        let server = (self.server.max_subscriptions > 0).then_some(self.server.max_subscriptions);
        match (usize::try_from(self.user_limits.subs).ok(), server) {
            (Some(user), Some(server)) => Some(user.min(server)),
            (user, server) => user.or(server),
        }
    }

    fn handle_pub(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        message: &[u8],
    ) -> Result<(), ProtocolError> {
        self.in_msgs += 1;
        self.in_bytes += message.len() as u64;
        if self.opts.pedantic && !subject::is_valid_literal(subject) {
            // nats-server reports the bad subject and still routes the message.
            self.send_err(&ProtocolError::InvalidPublishSubject);
        }
        // Only a message with headers can ask for a trace.
        if let Some(h) = header_len.filter(|&h| msgtrace::requested(&message[..h], &self.account)) {
            return self.handle_traced_pub(subject, reply, h, message);
        }
        self.check_publish(subject, reply)?;
        self.send_ok();
        self.route(subject, reply, header_len, message);
        Ok(())
    }

    /// What a publish must pass before it is delivered: the subject is neither one the server
    /// keeps for itself nor denied by the client's permissions, and the reply is not reserved.
    #[inline]
    fn check_publish(&mut self, subject: &[u8], reply: Option<&[u8]>) -> Result<(), ProtocolError> {
        if self.publish_refused(subject) {
            return Err(ProtocolError::PublishViolation(Bytes::copy_from_slice(
                subject,
            )));
        }
        // Only a reply starting with `_` or `$` costs more than this branch.
        if let Some(reply) = reply.filter(|r| subject::is_reserved_reply(r)) {
            return Err(ProtocolError::ReplyViolation(Bytes::copy_from_slice(reply)));
        }
        Ok(())
    }

    /// Whether the client may not publish to `subject`: the server keeps it (see
    /// [`subject::is_reserved_publish`]) or the client's permissions deny it.
    #[inline]
    fn publish_refused(&mut self, subject: &[u8]) -> bool {
        let system = || self.account.is_system.load(Ordering::Relaxed);
        if matches!(subject.first(), Some(b'_' | b'$'))
            && subject::is_reserved_publish(subject, system())
        {
            return true;
        }
        match &self.perms {
            Some(perms) => !publish_allowed(&mut self.pub_cache, perms, &self.conn, subject),
            None => false,
        }
    }

    /// Delivers one message to every matching subscription and one member of each queue group
    /// in the connection's account (after its subject mappings).
    fn route(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: Option<usize>,
        message: &[u8],
    ) {
        let mapped = self.account.map_subject(subject);
        let subject = mapped.as_deref().unwrap_or(subject);
        let msg = Message {
            subject,
            reply,
            header_len,
            message,
        };
        let skip = (!self.opts.echo).then_some(&self.conn);
        let (account, out) = (&self.account, &mut self.out);
        let delivered = self.cache.with(account, subject, |matches| {
            deliver::deliver_all(account, matches, &msg, out, skip)
        });
        if !delivered && self.opts.no_responders {
            if let Some(reply) = reply {
                self.send_no_responders(subject, reply);
            }
        }
    }

    /// The 503 status a requester gets when its request reached no one, sent on its own
    /// plain (non-queue) subscription matching the reply subject; without one, nothing.
    pub(super) fn send_no_responders(&mut self, subject: &[u8], reply: &[u8]) {
        let sid = {
            let subs = self.conn.subs();
            subs.values()
                .find(|s| s.queue.is_none() && subject::matches(&s.subject, reply))
                .map(|s| s.sid.clone())
        };
        if let Some(sid) = sid {
            self.push(|b| protocol::encode_no_responders(b, reply, &sid, subject));
        }
    }

    /// `SUB`: queue names and sids are taken as they are, as nats-server takes them.
    fn handle_sub(
        &mut self,
        subject: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) -> Result<(), ProtocolError> {
        if !subject::is_valid_filter(subject) {
            return Err(ProtocolError::InvalidSubject);
        }
        if let Some(perms) = &self.perms {
            if !perms.can_subscribe(subject, queue) {
                return Err(ProtocolError::SubscriptionViolation {
                    subject: Bytes::copy_from_slice(subject),
                    queue: queue.map(Bytes::copy_from_slice),
                });
            }
            if perms.needs_delivery_filter(subject) {
                self.conn.enable_delivery_filter();
            }
        }
        // Made before the sid map is locked (and dropped in the rare case the sid is taken).
        let sub = Arc::new(Subscription::new(self.conn.clone(), subject, queue, sid));
        {
            let mut subs = self.conn.subs();
            let max = self.max_subs();
            if max.is_some_and(|max| subs.len() >= max) {
                return Err(ProtocolError::MaxSubscriptions);
            }
            match subs.entry(sub.sid.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(sub.clone());
                }
                Entry::Occupied(_) => {
                    // nats-server ignores a SUB that reuses a live sid.
                    drop(subs);
                    self.send_ok();
                    return Ok(());
                }
            }
        }
        self.account.subscribe(sub);
        self.send_ok();
        Ok(())
    }

    fn handle_unsub(&mut self, sid: &[u8], max: Option<u64>) -> Result<(), ProtocolError> {
        let removed = {
            let mut subs = self.conn.subs();
            // Taken out at once (one lookup in the common case) and put back when it is to
            // end after more messages.
            match subs.remove(sid) {
                Some(sub) => {
                    let delivered = sub.delivered.load(Ordering::Relaxed);
                    match max {
                        Some(max) if max > delivered => {
                            sub.max.store(max, Ordering::Relaxed);
                            subs.insert(sub.sid.clone(), sub);
                            None
                        }
                        _ => Some(sub),
                    }
                }
                None => None,
            }
        };
        if let Some(sub) = removed {
            if self.trace {
                trace!(
                    "{} - <-> [DELSUB {}]",
                    self.desc,
                    String::from_utf8_lossy(sid)
                );
            }
            self.account.unsubscribe(&sub);
        }
        self.send_ok();
        Ok(())
    }

    /// Fires on the PING timer: sends a PING unless the client was heard from within the
    /// interval (the first PING always goes out), and closes the connection once `ping_max`
    /// PINGs are unanswered.
    fn ping_timer(&mut self) -> Result<(), ProtocolError> {
        debug!("{} - Client Ping Timer", self.desc);
        let (interval, max) = (self.server.ping_interval, self.server.ping_max);
        if self.live.on_timer(interval, max, &self.desc)? {
            self.push_proto(protocol::PING);
        }
        Ok(())
    }

    fn send_ok(&mut self) {
        if self.opts.verbose {
            self.push_proto(protocol::OK);
        }
    }

    fn send_err(&mut self, err: &ProtocolError) {
        if let Some(text) = err.client_text() {
            if self.trace {
                trace!("{} - ->> [-ERR {}]", self.desc, text);
            }
            self.push(|b| protocol::encode_err(b, &text));
        }
    }

    /// Logs an error that leaves the connection open, as nats-server logs it.
    fn report(&self, err: &ProtocolError) {
        match err {
            ProtocolError::PublishViolation(subject) => error!(
                "{} - Publish Violation - Subject {}",
                self.desc,
                permissions::go_quote(subject)
            ),
            ProtocolError::ReplyViolation(reply) => error!(
                "{} - Publish Violation - Reply {}",
                self.desc,
                permissions::go_quote(reply)
            ),
            ProtocolError::SubscriptionViolation { subject, queue } => {
                let queue = queue
                    .as_ref()
                    .map(|q| format!(", Queue: {}", permissions::go_quote(q)))
                    .unwrap_or_default();
                error!(
                    "{} - Subscription Violation - Subject {}{queue}",
                    self.desc,
                    permissions::go_quote(subject)
                )
            }
            _ => {}
        }
    }

    fn push_proto(&mut self, proto: &'static [u8]) {
        if self.trace {
            trace!(
                "{} - ->> [{}]",
                self.desc,
                String::from_utf8_lossy(proto.trim_ascii_end()).trim_start_matches('+')
            );
        }
        self.push(|b| b.extend_from_slice(proto));
    }

    /// Appends to this connection's own outbound queue.
    fn push(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        if self.conn.outbound.append(None, encode) == Appended::ScheduleFlush {
            self.out.to_flush.push(self.conn.clone());
        }
    }

    /// Wakes the writers this batch appended to; true if any was another connection's.
    fn flush_batch(&mut self) -> bool {
        self.out.flush(Some(&self.conn))
    }

    /// Sends the error's `-ERR` (if it has one) and logs it; the caller then closes.
    fn fail(&mut self, err: ProtocolError) {
        match &err {
            ProtocolError::Malformed(why) => error!("{} - {}", self.desc, why),
            ProtocolError::AuthorizationViolation => {
                error!("{} - authentication error{}", self.desc, self.auth_failure)
            }
            ProtocolError::StaleConnection => {}
            ProtocolError::AuthenticationTimeout => {
                debug!("{} - Authentication Timeout", self.desc)
            }
            other => error!("{} - {}", self.desc, other),
        }
        self.send_err(&err);
        self.flush_batch();
    }

    /// Closes the connection (flushing what is queued unless it is a slow consumer) and
    /// removes it and its subscriptions from the router.
    fn finish(&mut self, reason: CloseReason) {
        let flush = !matches!(
            reason,
            CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline
        );
        self.conn.outbound.close(reason, flush);
        self.flush_batch();
        self.conn
            .stats
            .publish(self.in_msgs, self.in_bytes, self.live.last_in.into_std());
        let reason = self.conn.outbound.close_reason().unwrap_or(reason);
        // Taken before the router forgets the subscriptions, so the closed entry lists them.
        self.shared
            .closed
            .push(self.conn.closed_snapshot(reason.as_str()));
        self.shared.router.remove_connection(&self.conn);
        if self.connected {
            self.shared.client_closed(&self.conn, reason);
        }
        self.shared.forget_credentials(self.conn.cid);
        if reason == CloseReason::SlowConsumerPendingBytes {
            let max = self.server.max_pending;
            info!(
                "{} - Slow Consumer Detected: MaxPending of {max} Exceeded",
                self.desc
            );
        }
        debug!(
            "{} - Client connection closed: {}",
            self.desc,
            reason.as_str()
        );
    }
}

/// Whether `op` is a PUB or HPUB whose payload is worth sharing.
fn shares_payload(op: &ClientOp<'_>) -> bool {
    match op {
        ClientOp::Pub { payload, .. } => payload.len() >= SHARE_PAYLOAD_FROM,
        ClientOp::HPub { message, .. } => message.len() >= SHARE_PAYLOAD_FROM,
        _ => false,
    }
}

/// What a closing error is called in the close log line.
fn close_reason(err: &ProtocolError) -> CloseReason {
    match err {
        ProtocolError::AuthorizationViolation => CloseReason::AuthenticationViolation,
        ProtocolError::AuthenticationTimeout => CloseReason::AuthenticationTimeout,
        ProtocolError::AuthenticationExpired => CloseReason::AuthenticationExpired,
        ProtocolError::MaxAccountConnections => CloseReason::MaxAccountConnectionsExceeded,
        ProtocolError::MaxPayload => CloseReason::MaxPayloadExceeded,
        ProtocolError::MaxControlLine => CloseReason::MaxControlLineExceeded,
        ProtocolError::MaxConnections => CloseReason::MaxConnectionsExceeded,
        ProtocolError::StaleConnection => CloseReason::StaleConnection,
        ProtocolError::InvalidClientProtocol => CloseReason::BadClientProtocolVersion,
        ProtocolError::NoRespondersRequiresHeaders => CloseReason::NoRespondersRequiresHeaders,
        _ => CloseReason::ProtocolViolation,
    }
}
