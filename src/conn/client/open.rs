//! How a client connection opens, before its read loop: INFO (with a nonce for nkey users),
//! the connection limit, and the transport beneath: TLS as the client port runs it, or the
//! WebSocket frames a completed upgrade hands over (`super::super::websocket`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, error};

use super::Client;
use crate::conn::transport::{self, is_pinned, negotiate, ReadHalf, Transport, WriteHalf};
use crate::conn::websocket::Upgrade;
use crate::conn::writer::write_loop;
use crate::engine::connection::Connection;
use crate::engine::outbound::CloseReason;
use crate::proto::error::ProtocolError;
use crate::proto::protocol;
use crate::security::{auth, tls};
use crate::state::Shared;

/// Serves one accepted TCP connection until it closes.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    crate::conn::idle::watch(&stream);
    let cid = shared.router.next_cid();
    let opts = shared.opts();
    let conn = Arc::new(Connection::new(
        cid,
        opts.max_pending,
        &format!("{addr} - cid:{cid}"),
        addr,
        shared.router.global().clone(),
    ));
    let desc = conn.desc();
    debug!("{desc} - Client connection created");
    let mut info = shared.info(cid, addr);
    let nonce = match opts.nonce_required().then(auth::new_nonce) {
        Some(None) => {
            error!("{desc} - Refusing connection: no nonce, the OS random generator failed");
            return;
        }
        nonce => nonce.flatten(),
    };
    info.nonce = nonce.clone();
    let tls = shared.tls().zip(opts.tls.clone());
    let handshake_first = tls.as_ref().is_some_and(|(_, t)| t.handshake_first);

    // nats-server counts the connection against max_connections before any TLS: a refused
    // client gets INFO (unless the handshake was to come first) and the -ERR in plaintext.
    if !shared
        .router
        .add_connection(conn.clone(), opts.max_connections)
    {
        let (_read_half, write_half) = transport::split_plain(stream);
        let mut client = Client::new(shared.clone(), conn.clone(), addr);
        if !handshake_first {
            client.push(|b| info.encode(b));
        }
        shared
            .tasks
            .spawn(write_loop(shared.clone(), conn.clone(), write_half));
        client.fail(ProtocolError::MaxConnections);
        client.finish(CloseReason::MaxConnectionsExceeded);
        return;
    }

    let mut info_sent = false;
    let mut cert = None;
    let mut tls_session = None;
    // When the PING and authorization timers start: after the handshake, as in nats-server, or
    // from INFO for a client that stayed in plaintext under `allow_non_tls`.
    let mut timers_from = None;
    let (read_half, write_half) = match tls {
        None => transport::split_plain(stream),
        Some((config, tls_opts)) => {
            let accepted = Instant::now();
            match negotiate(config, &tls_opts, &opts, stream, &info, &desc).await {
                Ok((Transport::Plain(stream), sent)) => {
                    info_sent = sent;
                    timers_from = Some(accepted);
                    transport::split_plain(stream)
                }
                Ok((Transport::Tls(stream), _))
                    if !is_pinned(stream.get_ref().1, &tls_opts, &desc) =>
                {
                    // nats-server logs this one as an error.
                    error!("{desc} - TLS handshake error: certificate not pinned");
                    conn.outbound.close(CloseReason::TlsHandshakeFailure, false);
                    shared.router.remove_connection(&conn);
                    debug!("{desc} - Client connection closed: TLS Handshake Failure");
                    return;
                }
                Ok((Transport::Tls(stream), sent)) => {
                    info_sent = sent;
                    // INFO over TLS says so, even under `allow_non_tls` (nats-server then sends
                    // both tls_required and tls_available).
                    info.tls_required = true;
                    transport::log_handshake(&desc, stream.get_ref().1);
                    tls_session = Some(Arc::new(tls::SessionInfo::of(stream.get_ref().1)));
                    cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|c| tls::CertIdentity::from_der(c))
                        .map(Arc::new);
                    transport::split_tls(*stream)
                }
                Err(err) => {
                    debug!("{desc} - TLS handshake error: {err}");
                    conn.outbound.close(CloseReason::TlsHandshakeFailure, false);
                    shared.router.remove_connection(&conn);
                    debug!("{desc} - Client connection closed: TLS Handshake Failure");
                    return;
                }
            }
        }
    };
    let mut client = Client::new(shared.clone(), conn.clone(), addr);
    client.nonce = nonce;
    client.cert = cert;
    client.tls_session = tls_session;
    if let Some(from) = timers_from {
        client.started = from;
    }
    if !info_sent {
        client.push(|b| info.encode(b));
    }
    shared
        .tasks
        .spawn(write_loop(shared.clone(), conn.clone(), write_half));
    client.read_loop(read_half).await;
}

/// Runs a WebSocket client's session once the upgrade is done: INFO, then the connection limit
/// (checked after INFO, as nats-server checks it for WebSocket clients), then the read loop.
pub(in crate::conn) async fn serve_upgraded(
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    (read_half, write_half): (ReadHalf, WriteHalf),
    mut info: protocol::Info,
    upgrade: Upgrade,
) {
    let opts = shared.opts();
    let nonce = match opts.nonce_required().then(auth::new_nonce) {
        Some(None) => {
            error!(
                "{} - Refusing connection: no nonce, the OS random generator failed",
                conn.desc()
            );
            return;
        }
        nonce => nonce.flatten(),
    };
    info.nonce = nonce.clone();
    let mut client = Client::new(shared.clone(), conn.clone(), conn.addr);
    client.nonce = nonce;
    client.cert = upgrade.cert.clone();
    client.websocket = Some(upgrade);
    client.push(|b| info.encode(b));
    shared
        .tasks
        .spawn(write_loop(shared.clone(), conn.clone(), write_half));
    if !shared
        .router
        .add_connection(conn.clone(), opts.max_connections)
    {
        client.fail(ProtocolError::MaxConnections);
        client.finish(CloseReason::MaxConnectionsExceeded);
        return;
    }
    client.read_loop(read_half).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Options;

    /// Every connection's task holds its whole future, idle ones too, so what a rare path
    /// awaits (a TLS handshake, an account fetch, an auth callout) must not sit inline in it:
    /// the account fetch once made every idle connection 20 KiB instead of 7.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _peer = TcpStream::connect(addr).await.unwrap();
        let (stream, from) = listener.accept().await.unwrap();
        let shared = Arc::new(Shared::new(Options::default(), addr, None, false, None).unwrap());
        let task = serve(shared, stream, from);
        let size = std::mem::size_of_val(&task);
        eprintln!("a client connection's task: {size} bytes");
        assert!(size <= 4096, "a client connection's task is {size} bytes");
    }
}
