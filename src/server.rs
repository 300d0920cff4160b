//! The accept loop, per-server shared state, and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{debug, error, info};

use crate::client;
use crate::config::Options;
use crate::outbound::CloseReason;
use crate::protocol::{self, Info};
use crate::router::Router;

/// How long shutdown waits for connections to flush what is queued to them.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// State every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The options the server runs with.
    pub opts: Options,
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
}

impl Shared {
    /// The INFO sent to connection `cid` from `client`.
    pub fn info(&self, cid: u64, client: SocketAddr) -> Info {
        Info {
            server_id: self.server_id.clone(),
            server_name: self.server_name.clone(),
            version: protocol::NATS_SERVER_VERSION.to_string(),
            proto: protocol::PROTO,
            git_commit: concat!("tern-", env!("CARGO_PKG_VERSION")).to_string(),
            go: "rust".to_string(),
            host: self.opts.host.clone(),
            port: self.addr.port(),
            headers: true,
            auth_required: self.opts.auth_required(),
            max_payload: self.opts.max_payload,
            client_id: cid,
            client_ip: client.ip().to_string(),
            connect_info: false,
            remote_account: None,
        }
    }
}

/// A server with its client listener bound.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Server {
    /// Binds the client listener (port 0 picks a free port).
    pub async fn bind(opts: Options) -> io::Result<Server> {
        let listener = TcpListener::bind((opts.host.as_str(), opts.port)).await?;
        let addr = listener.local_addr()?;
        let server_id = new_server_id();
        let server_name = opts
            .server_name
            .clone()
            .unwrap_or_else(|| server_id.clone());
        let shared = Arc::new(Shared {
            opts,
            router: Router::new(),
            server_id,
            server_name,
            addr,
            tasks: AtomicUsize::new(0),
        });
        Ok(Server { shared, listener })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The shared state (for inspection by tests and, later, monitoring).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts clients until `shutdown` completes, then closes every connection after
    /// flushing what is queued to it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { shared, listener } = self;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
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
        }
        drop(listener);
        debug!("Client accept loop exiting..");
        let deadline = tokio::time::Instant::now() + SHUTDOWN_FLUSH_TIMEOUT;
        while shared.tasks.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            // Repeated so that a connection accepted just before the listener closed is
            // closed too; closing twice does nothing.
            for conn in shared.router.connections_snapshot() {
                conn.outbound.close(CloseReason::ServerShutdown, true);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        info!("Server Exiting..");
    }
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
