//! The state every connection shares: the options in force (replaced whole by a reload), the
//! accounts and live connections, the server's identity, the TLS configuration, and the
//! monitor's counters. Reload lives here too: it swaps the options and re-checks every open
//! connection's credentials and permissions.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::config::Options;
use crate::engine::connection::Connection;
use crate::engine::outbound::CloseReason;
use crate::engine::router::Router;
use crate::engine::stats::ClosedRing;
use crate::proto::error;
use crate::proto::protocol::{self, Info};
use crate::security::auth;
use events::{SysChannel, SysInput};

pub mod accounts;
pub mod cluster;
pub mod dirstore;
pub mod events;
pub mod jetstream;
pub mod leafnode;
pub mod resolver;
mod web;

/// Whether `conn` is bound to `user`'s account.
fn bound_to(conn: &Connection, user: &auth::Authorized) -> bool {
    let want = match user.account.as_str() {
        "" => crate::engine::account::GLOBAL_ACCOUNT,
        name => name,
    };
    *conn.account().name == *want
}

/// Monitor state that is not the server's: request counts and the CPU sampler.
#[derive(Debug, Default)]
pub struct MonitorState {
    /// Requests served per endpoint (`http_req_stats`). Guards only the map.
    pub requests: Mutex<BTreeMap<&'static str, u64>>,
    /// The previous CPU-time sample, for `cpu` as a percentage since then.
    pub cpu_sample: Mutex<Option<(Instant, f64)>>,
    /// Users refused because their account is not in `resolver_pinned_accounts`
    /// (`pinned_account_fails`).
    pub pinned_fails: AtomicU64,
}

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
    /// This process's id, as nats-server makes them: the public key of [`Shared::server_key`]
    /// (`N` and 55 base-32 characters).
    pub server_id: String,
    /// The server's identity key: signs auth callout requests.
    pub server_key: nkeys::KeyPair,
    /// The server's curve key (its public half is INFO's `xkey`): seals auth callout requests
    /// and opens their responses.
    pub xkey: nkeys::XKey,
    /// The configured name, or the id.
    pub server_name: String,
    /// The bound client address.
    pub addr: SocketAddr,
    /// Connection tasks (readers and writers): spawned through it so that shutdown can wait
    /// for them; one that ends, by panicking too, is no longer counted.
    pub tasks: TaskTracker,
    /// The cluster: our route address, client URLs for peers, gossiped routes to dial.
    pub cluster: cluster::ClusterState,
    /// Leafnodes: the leafnode port's address and the live leafnode connections.
    pub leafnode: leafnode::LeafState,
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
    /// The WebSocket listener's bound address, once it listens.
    websocket_addr: std::sync::OnceLock<SocketAddr>,
    /// The monitor's own counters.
    pub monitor: MonitorState,
    /// What each connected client authenticated with (set by an accepted CONNECT), by cid,
    /// re-checked when the configuration is reloaded. Guards only the map.
    sessions: Mutex<HashMap<u64, auth::Credentials>>,
    /// The TLS configuration built from `opts.tls`, replaced with it by a reload. Held only to
    /// clone the `Arc`.
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    /// To the system account's services: connection events and `$SYS.REQ.*` requests.
    pub sys: SysChannel,
    /// JetStream's configuration and totals for the monitor, set by JetStream when it runs.
    pub jetstream: jetstream::JetStreamState,
    /// The account resolver's directory, as the `cache` resolver tracks it; and the lock
    /// taken around every change of the operator-mode accounts in force (see
    /// [`Shared::update_accounts`]), so two changes never build on the same old options.
    pub resolver: resolver::ResolverState,
    /// How many times a connected client's credentials were checked again (by a reload or
    /// an account update).
    pub rechecked: AtomicU64,
}

impl Shared {
    /// The state of a server whose client listener is bound to `addr`.
    pub fn new(
        opts: Options,
        addr: SocketAddr,
        monitor_addr: Option<SocketAddr>,
        monitor_https: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Shared, String> {
        let closed = ClosedRing::new(opts.max_closed_clients);
        let now = SystemTime::now();
        let server_key = nkeys::KeyPair::new_server();
        let server_id = server_key.public_key();
        let server_name = opts
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone());
        let router = Router::new();
        if opts.cluster.is_some() {
            // Accounts count their local interest for routes from the first subscription.
            router.routes().enable();
        }
        let sys = SysChannel::new();
        accounts::install(&router, &opts, &sys)?;
        Ok(Shared {
            opts: RwLock::new(Arc::new(opts)),
            opts_generation: AtomicU64::new(0),
            router,
            server_id,
            server_key,
            xkey: nkeys::XKey::new(),
            server_name,
            addr,
            tasks: TaskTracker::new(),
            lame_duck: Notify::new(),
            in_lame_duck: AtomicBool::new(false),
            start: now,
            started: Instant::now(),
            config_load_time: Mutex::new(now),
            closed,
            monitor_addr,
            monitor_https,
            websocket_addr: std::sync::OnceLock::new(),
            monitor: MonitorState::default(),
            tls: RwLock::new(tls),
            sessions: Mutex::new(HashMap::new()),
            resolver: resolver::ResolverState::default(),
            rechecked: AtomicU64::new(0),
            cluster: cluster::ClusterState::default(),
            leafnode: leafnode::LeafState::default(),
            sys,
            jetstream: jetstream::JetStreamState::default(),
        })
    }

    /// Records what connection `cid`'s accepted CONNECT authenticated with.
    pub fn set_credentials(&self, cid: u64, credentials: auth::Credentials) {
        self.sessions().insert(cid, credentials);
    }

    /// What connection `cid` authenticated with, once its CONNECT was accepted.
    pub fn credentials(&self, cid: u64) -> Option<auth::Credentials> {
        self.sessions().get(&cid).cloned()
    }

    /// Forgets a closed connection's credentials.
    pub fn forget_credentials(&self, cid: u64) {
        self.sessions().remove(&cid);
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, auth::Credentials>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client's CONNECT was accepted: the system account announces it.
    pub fn client_connected(&self, conn: &Arc<Connection>) {
        self.sys.send(SysInput::Connected(conn.clone()));
    }

    /// A client whose CONNECT had been accepted closed, for `reason`: the system account
    /// announces it.
    pub fn client_closed(&self, conn: &Connection, reason: CloseReason) {
        let snapshot = conn.closed_snapshot(reason.as_str());
        self.sys.send(SysInput::Closed(Box::new(snapshot)));
    }

    /// Completes when lame duck mode is asked for.
    pub async fn lame_duck_requested(&self) {
        self.lame_duck.notified().await
    }

    /// The options in force.
    pub fn opts(&self) -> Arc<Options> {
        self.opts.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The TLS configuration new connections are upgraded with, if TLS is on.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The WebSocket listener's bound address, when it listens.
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.websocket_addr.get().copied()
    }

    /// Records the WebSocket listener's bound address.
    pub fn set_websocket_addr(&self, addr: SocketAddr) {
        let _ = self.websocket_addr.set(addr);
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
            jetstream: opts.jetstream.is_some(),
            client_id: cid,
            client_ip: client.ip().to_string(),
            domain: opts.jetstream.as_ref().and_then(|js| js.domain.clone()),
            nonce: None,
            cluster: opts.cluster.as_ref().and_then(|c| c.name.clone()),
            connect_urls: self.connect_urls(),
            ldm: self.in_lame_duck_mode(),
            connect_info: false,
            xkey: self.xkey.public_key(),
            remote_account: None,
            acc_is_sys: false,
        }
    }

    /// The INFO a WebSocket client is sent: the WebSocket listener's host and port, its TLS,
    /// the block's own authorization, and the cluster's WebSocket URLs as `connect_urls`.
    pub fn websocket_info(&self, cid: u64, client: SocketAddr) -> Info {
        let mut info = self.info(cid, client);
        let opts = self.opts();
        if let Some(ws) = &opts.websocket {
            info.host = ws.host.clone();
            info.port = self.websocket_addr().map_or(ws.port, |a| a.port());
            // As nats-server 2.15.1 fills them: both TLS flags from the WebSocket listener,
            // `tls_verify` left as the client port's.
            info.tls_required = ws.tls.is_some();
            info.tls_available = ws.tls.is_some();
            info.auth_required |= ws.auth_override();
        }
        info.connect_urls = self.websocket_connect_urls();
        info
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
        fixed("Websocket", &old.websocket, &new.websocket)?;
        check_cluster_reload(&old, &new)?;
        let operators = |o: &Options| -> Vec<String> {
            o.operator
                .operators
                .iter()
                .map(|op| op.jwt.clone())
                .collect()
        };
        fixed("TrustedOperators", &operators(&old), &operators(&new))?;
        fixed(
            "TrustedKeys",
            &old.operator.trusted_keys,
            &new.operator.trusted_keys,
        )?;
        let (old_system, new_system) = (
            accounts::system_account_name(&old).unwrap_or_default(),
            accounts::system_account_name(&new).unwrap_or_default(),
        );
        if old_system != new_system {
            return Err(format!(
                "config reload not supported for SystemAccount: old={old_system}, new={new_system}"
            ));
        }
        let tls = crate::security::tls::ServerTls::build(&new)?;
        accounts::install(&self.router, &new, &self.sys)?;
        if old.users != new.users || old.accounts != new.accounts {
            info!("Reloaded: authorization users");
            info!("Reloaded: accounts");
        }
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls.clients;
        let new = Arc::new(new);
        *self.opts.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        self.opts_generation.fetch_add(1, Ordering::Release);
        *self
            .config_load_time
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
        self.reload_cluster(&old, &new);
        self.recheck_clients(&new, None);
        Ok(())
    }

    /// Puts in force operator-mode accounts that were fetched, pushed or merged (`new` differs
    /// from the options in force only in its accounts): the accounts are installed, and only
    /// the clients of the accounts in `changed` are checked again, as nats-server applies an
    /// account JWT to that account alone. Nothing else of a reload happens.
    pub fn put_accounts_in_force(
        &self,
        new: Options,
        changed: &std::collections::BTreeSet<String>,
    ) -> Result<(), String> {
        accounts::install(&self.router, &new, &self.sys)?;
        let new = Arc::new(new);
        *self.opts.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        self.opts_generation.fetch_add(1, Ordering::Release);
        self.recheck_clients(&new, Some(changed));
        Ok(())
    }

    /// Checks the connected clients' credentials again against `new` (only those of the
    /// accounts in `only`, when given): those that no longer pass are disconnected, the
    /// others take their new permissions. A client whose account is gone is closed.
    fn recheck_clients(&self, new: &Options, only: Option<&std::collections::BTreeSet<String>>) {
        for conn in self.router.connections_snapshot() {
            let account = conn.account();
            if self
                .router
                .account(&account.name)
                .map_or(true, |now| !Arc::ptr_eq(&now, &account))
            {
                // Its account is gone: nats-server closes the connection without a word.
                conn.outbound.close(CloseReason::ClientClosed, true);
                continue;
            }
            if only.is_some_and(|only| !only.contains(&*account.name)) {
                continue;
            }
            self.rechecked.fetch_add(1, Ordering::Relaxed);
            let Some(credentials) = self.credentials(conn.cid) else {
                continue;
            };
            match crate::security::authenticate(
                new,
                &credentials,
                &conn.desc(),
                Some(conn.addr.ip()),
            ) {
                None if crate::security::jwt::revoked(&new.operator, &credentials) => {
                    let user = credentials.jwt.as_deref().and_then(|t| {
                        crate::proto::jwt::decode::<crate::proto::jwt::User>(
                            t,
                            crate::proto::jwt::Kind::User,
                        )
                        .ok()
                    });
                    debug!(
                        "{} - User Authentication Revoked - Account:{} - jwt:{}",
                        conn.desc(),
                        conn.account().name,
                        user.map(|u| u.sub).unwrap_or_default()
                    );
                    conn.outbound.append(None, |b| {
                        protocol::encode_err(b, "User Authentication Revoked")
                    });
                    conn.outbound.close(CloseReason::CredentialsRevoked, true);
                }
                None => {
                    info!("{} - Authorization Violation after reload", conn.desc());
                    conn.outbound
                        .append(None, |b| protocol::encode_err(b, "Authorization Violation"));
                    conn.outbound
                        .close(CloseReason::AuthenticationViolation, true);
                }
                Some(user) if !bound_to(&conn, &user) => {
                    // Moved to another account: nats-server closes the connection without a
                    // word.
                    conn.outbound.close(CloseReason::ClientClosed, true);
                }
                Some(user) => self.apply_permissions(&conn, user),
            }
        }
        // Readers pick up their connection's new permissions when they see the generation
        // change, so bump it again now that every connection's are in place.
        self.opts_generation.fetch_add(1, Ordering::Release);
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
            conn.account().unsubscribe(&sub);
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
                == crate::engine::outbound::Appended::ScheduleFlush
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

/// The cluster options that cannot change on reload. nats-server refuses a new cluster host or
/// port with these words. It reloads a new cluster name or route TLS; tern cannot apply them
/// to running routes, so it refuses them too, in the same words. Routes and route
/// authorization may change.
fn check_cluster_reload(old: &Options, new: &Options) -> Result<(), String> {
    // nats-server's view: no cluster is host "" and port 0; a random port is -1.
    let listen = |o: &Options| {
        o.cluster.as_ref().map_or((String::new(), 0), |c| {
            let port = match c.port {
                0 => -1,
                port => i32::from(port),
            };
            (c.host.clone(), port)
        })
    };
    let ((old_host, old_port), (new_host, new_port)) = (listen(old), listen(new));
    if old_host != new_host {
        return Err(format!(
            "config reload not supported for cluster host: old={old_host}, new={new_host}"
        ));
    }
    if old_port != new_port {
        return Err(format!(
            "config reload not supported for cluster port: old={old_port}, new={new_port}"
        ));
    }
    let name = |o: &Options| {
        o.cluster
            .as_ref()
            .and_then(|c| c.name.clone())
            .unwrap_or_default()
    };
    if name(old) != name(new) {
        return Err(format!(
            "config reload not supported for cluster name: old={}, new={}",
            name(old),
            name(new)
        ));
    }
    // Where the block is written does not matter, only what it says.
    let tls = |o: &Options| {
        o.cluster
            .as_ref()
            .and_then(|c| c.tls.clone())
            .map(|t| crate::config::TlsOptions {
                defined_at: None,
                ..t
            })
    };
    if tls(old) != tls(new) {
        return Err("config reload not supported for cluster TLS".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::{route_url, ClusterOptions};

    fn with(cluster: Option<ClusterOptions>) -> Options {
        Options {
            cluster,
            ..Options::default()
        }
    }

    fn listen(host: &str, port: u16) -> ClusterOptions {
        ClusterOptions {
            name: Some("a".into()),
            host: host.into(),
            port,
            ..ClusterOptions::default()
        }
    }

    #[test]
    fn cluster_reload_refusals_in_nats_server_words() {
        let old = with(Some(listen("127.0.0.1", 16301)));
        let refused = |new: Option<ClusterOptions>| check_cluster_reload(&old, &with(new));
        // As nats-server 2.15.1 logs them.
        assert_eq!(
            refused(Some(listen("127.0.0.1", 16302))).unwrap_err(),
            "config reload not supported for cluster port: old=16301, new=16302"
        );
        assert_eq!(
            refused(Some(listen("0.0.0.0", 16301))).unwrap_err(),
            "config reload not supported for cluster host: old=127.0.0.1, new=0.0.0.0"
        );
        assert_eq!(
            refused(None).unwrap_err(),
            "config reload not supported for cluster host: old=127.0.0.1, new="
        );
        assert_eq!(
            check_cluster_reload(&with(None), &old).unwrap_err(),
            "config reload not supported for cluster host: old=, new=127.0.0.1"
        );
        // nats-server reloads these two; tern refuses them.
        let renamed = ClusterOptions {
            name: Some("b".into()),
            ..listen("127.0.0.1", 16301)
        };
        assert_eq!(
            refused(Some(renamed)).unwrap_err(),
            "config reload not supported for cluster name: old=a, new=b"
        );
        let tls = ClusterOptions {
            tls: Some(Default::default()),
            ..listen("127.0.0.1", 16301)
        };
        assert!(refused(Some(tls)).is_err());
        // Routes, route credentials, permissions and the rest may change.
        let changed = ClusterOptions {
            routes: vec![route_url("nats-route://127.0.0.1:16309").unwrap()],
            username: Some("u".into()),
            password: Some("p".into()),
            no_advertise: true,
            pool_size: 5,
            compression: "off".into(),
            export: Some(Default::default()),
            ..listen("127.0.0.1", 16301)
        };
        assert!(refused(Some(changed)).is_ok());
        // A random port stays random.
        let random = with(Some(listen("127.0.0.1", 0)));
        assert!(check_cluster_reload(&random, &random.clone()).is_ok());
    }
}
