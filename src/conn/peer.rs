//! The read loop routes and leafnodes share: server-to-server connections that read frames,
//! PING on the route ping interval, wait for a first operation within a deadline, and pace
//! themselves against the subscribers they deliver to. Each kind supplies its own handling of
//! a read batch and of an error ([`PeerSession`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error};

use super::liveness::Liveness;
use super::reader::{ReadBuffer, SHARE_PAYLOAD_FROM};
use super::transport::ReadHalf;
use crate::engine::connection::Connection;
use crate::engine::deliver::Deliveries;
use crate::engine::outbound::{Appended, CloseReason};
use crate::proto::error::ProtocolError;
use crate::proto::protocol;
use crate::proto::route::RouteOp;
use crate::state::Shared;

/// nats-server sends a server connection its first PING after about a second
/// (`firstPingInterval`).
const FIRST_PING: Duration = Duration::from_secs(1);

/// What the shared read loop needs of one kind of server connection.
pub(super) trait PeerSession {
    fn shared(&self) -> &Arc<Shared>;
    fn conn(&self) -> &Arc<Connection>;
    fn desc(&self) -> &str;
    fn live(&mut self) -> &mut Liveness;
    fn out(&mut self) -> &mut Deliveries;
    /// Messages and bytes read so far.
    fn in_counts(&self) -> (u64, u64);
    /// Parses one operation from the start of `buf` (`Ok(None)`: more bytes needed).
    fn parse_op<'b>(&self, buf: &'b [u8]) -> Result<Option<(RouteOp<'b>, usize)>, ProtocolError>;
    /// The whole length of the message frame `buf` starts with, once its control line is
    /// there (`None`: not a message, or not known yet).
    fn frame_len(&self, buf: &[u8]) -> Option<usize>;
    /// Handles one operation.
    fn handle_op(&mut self, op: RouteOp<'_>) -> Result<(), ProtocolError>;

    /// Handles every whole operation in `input` (consuming them); returns the length of the
    /// message frame left partly read at its start (0: none), for the reader to make room for.
    /// A large payload is handed to subscribers (and on to other peers) as a slice of the read
    /// buffer, not copied: its frame is split off the buffer and parsed again from there, as
    /// on the client path.
    fn process(&mut self, input: &mut ReadBuffer) -> Result<usize, ProtocolError> {
        let mut consumed = 0;
        let result = loop {
            let frame: Bytes;
            let parsed = match self.parse_op(&input.buf[consumed..]) {
                Ok(Some((RouteOp::Msg(m), n))) if m.message.len() >= SHARE_PAYLOAD_FROM => {
                    input.buf.advance(consumed);
                    consumed = 0;
                    frame = input.split_frame(n);
                    self.out().shared = Some(frame.clone());
                    self.parse_op(&frame).map(|op| op.map(|(op, _)| (op, 0)))
                }
                parsed => parsed,
            };
            match parsed {
                Ok(Some((op, n))) => {
                    consumed += n;
                    let handled = self.handle_op(op);
                    self.out().shared = None;
                    if let Err(err) = handled {
                        break Err(err);
                    }
                }
                Ok(None) => break Ok(self.frame_len(&input.buf[consumed..]).unwrap_or(0)),
                Err(err) => break Err(err),
            }
        };
        self.out().shared = None;
        input.buf.advance(consumed);
        result
    }
    /// The first-operation deadline still applies (no CONNECT or INFO yet), and what passing
    /// it is.
    fn awaiting(&self) -> Option<ProtocolError>;
    /// How long after the start [`PeerSession::grace_passed`] is due, while it is.
    fn info_grace(&self) -> Option<Duration> {
        None
    }
    /// The grace of [`PeerSession::info_grace`] passed.
    fn grace_passed(&mut self) {}
    /// Sends the error's `-ERR`, logs it; returns why the connection closes.
    fn fail(&mut self, err: ProtocolError) -> CloseReason;

    /// Appends to our own outbound queue, remembering to wake the writer.
    fn push(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        let conn = self.conn().clone();
        if conn.outbound.append(None, encode) == Appended::ScheduleFlush {
            self.out().to_flush.push(conn);
        }
    }
}

/// Reads until the connection closes or fails; `deadline` bounds the wait for the first
/// operation ([`PeerSession::awaiting`]).
pub(super) async fn read_loop<S: PeerSession>(
    session: &mut S,
    mut reader: ReadHalf,
    deadline: Duration,
) -> CloseReason {
    let opts = session.shared().opts();
    let (interval, ping_max) = (opts.route_ping_interval(), opts.route_ping_max());
    let mut ping = tokio::time::interval_at(Instant::now() + FIRST_PING, interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(deadline);
    tokio::pin!(deadline);
    let grace = tokio::time::sleep(session.info_grace().unwrap_or_default());
    tokio::pin!(grace);
    let mut input = ReadBuffer::for_peer();
    let conn = session.conn().clone();
    loop {
        let waiting = session.awaiting();
        let result = tokio::select! {
            biased;
            _ = conn.outbound.reader_wakeup() => {
                return conn.outbound.close_reason().unwrap_or(CloseReason::ServerShutdown);
            }
            read = input.read(&mut reader) => match read {
                Ok(0) => return CloseReason::ClientClosed,
                Ok(_) => {
                    let now = Instant::now();
                    session.live().last_in = now;
                    session.out().trace = tracing::enabled!(tracing::Level::TRACE);
                    let result = session.process(&mut input);
                    let (msgs, bytes) = session.in_counts();
                    conn.stats.publish(msgs, bytes, now.into_std());
                    let result = result.map(|awaited| input.expect_frame(awaited));
                    reader.hush_if_streaming(&input);
                    result
                }
                Err(_) => return CloseReason::ReadError,
            },
            _ = ping.tick() => {
                let desc = session.desc().to_string();
                match session.live().on_timer(interval, ping_max, &desc) {
                    Ok(true) => {
                        session.push(|b| b.extend_from_slice(protocol::PING));
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(err) => Err(err),
                }
            }
            _ = &mut grace, if session.info_grace().is_some() => {
                session.grace_passed();
                Ok(())
            }
            _ = &mut deadline, if waiting.is_some() => Err(waiting.unwrap_or(ProtocolError::AuthenticationTimeout)),
        };
        session.out().flush(Some(&conn));
        if let Err(err) = result {
            return session.fail(err);
        }
        session.out().pacing();
        if !session.out().backlogged.is_empty() {
            session.out().wait_for_backlogged().await;
            input.paused();
        } else if input.yield_due() {
            input.paused();
            tokio::task::yield_now().await;
        }
        input.settle();
    }
}

/// Sends the error's `-ERR` (if it has one) and logs it (a malformed frame at debug level);
/// returns why the connection closes.
pub(super) fn close_with_error<S: PeerSession>(session: &mut S, err: ProtocolError) -> CloseReason {
    let desc = session.desc().to_string();
    match &err {
        ProtocolError::Malformed(why) => debug!("{desc} - {why}"),
        other => error!("{desc} - {other}"),
    }
    if let Some(text) = err.client_text() {
        session.push(|b| protocol::encode_err(b, &text));
    }
    let conn = session.conn().clone();
    session.out().flush(Some(&conn));
    match err {
        ProtocolError::AuthorizationViolation => CloseReason::AuthenticationViolation,
        ProtocolError::AuthenticationTimeout => CloseReason::AuthenticationTimeout,
        ProtocolError::StaleConnection => CloseReason::StaleConnection,
        _ => CloseReason::ProtocolViolation,
    }
}
