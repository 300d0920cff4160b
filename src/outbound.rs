//! One connection's pending outbound bytes, the wake-up of its writer, and its slow-consumer
//! budget.
//!
//! Producers (the connection's own reader, or any publisher delivering to it) append frames
//! under a short `std::sync::Mutex`. The first producer that appends after a flush schedules
//! the flush: it remembers the connection and wakes the writer once at the end of its read
//! batch, so a batch of many messages costs the writer one wake-up and one write. The writer
//! swaps the whole buffer out under the lock and writes it with the lock released.

use std::sync::Mutex;

use bytes::BytesMut;
use tokio::sync::Notify;

/// Why a connection was closed; shown in logs (and later in `/connz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side.
    ClientClosed,
    /// Reading or writing the socket failed.
    ReadError,
    /// A write to the socket failed.
    WriteError,
    /// Pending bytes passed `max_pending`.
    SlowConsumerPendingBytes,
    /// A write batch missed `write_deadline`.
    SlowConsumerWriteDeadline,
    /// The client broke the protocol.
    ProtocolViolation,
    /// Bad or missing credentials.
    AuthenticationViolation,
    /// No CONNECT within the auth timeout.
    AuthenticationTimeout,
    /// PINGs went unanswered.
    StaleConnection,
    /// `max_payload` exceeded.
    MaxPayloadExceeded,
    /// `max_control_line` exceeded.
    MaxControlLineExceeded,
    /// `max_connections` reached.
    MaxConnectionsExceeded,
    /// The server is shutting down.
    ServerShutdown,
    /// CONNECT asked for an unknown protocol level.
    BadClientProtocolVersion,
    /// CONNECT set `no_responders` without `headers`.
    NoRespondersRequiresHeaders,
    /// The TLS upgrade failed or timed out.
    TlsHandshakeFailure,
}

impl CloseReason {
    /// nats-server's wording, as it appears in `Client connection closed: <reason>`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::ReadError => "Read Error",
            CloseReason::WriteError => "Write Error",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::MaxPayloadExceeded => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::BadClientProtocolVersion => "Bad Client Protocol Version",
            CloseReason::NoRespondersRequiresHeaders => "No Responders Requires Headers",
            CloseReason::TlsHandshakeFailure => "TLS Handshake Failure",
        }
    }
}

/// The outbound side of one connection.
#[derive(Debug)]
pub struct Outbound {
    /// Guards the pending bytes and the close state. Held only to append or to swap the buffer
    /// out; never across an `.await`, and no other lock is taken while it is held.
    state: Mutex<State>,
    /// Wakes the writer task.
    writer: Notify,
    /// Wakes the reader task when the connection is closed from elsewhere.
    reader: Notify,
    max_pending: usize,
}

#[derive(Debug, Default)]
struct State {
    pending: BytesMut,
    /// A producer has taken on waking the writer for what is pending.
    flush_scheduled: bool,
    closed: Option<Closed>,
    out_msgs: u64,
    out_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Closed {
    reason: CloseReason,
    /// Write what is pending before closing the socket.
    flush: bool,
}

/// What a producer must do after appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Appended; this producer must wake the writer at the end of its batch.
    ScheduleFlush,
    /// Appended; a flush is already scheduled by someone else.
    Queued,
    /// Not appended: the connection is closed, or just became a slow consumer.
    Dropped,
}

/// What the writer got from `take`.
#[derive(Debug)]
pub enum Take {
    /// Bytes to write (swapped into the writer's buffer).
    Write,
    /// Nothing pending; wait for the next wake-up.
    Idle,
    /// The connection is closed; stop after writing what `take` returned, if `flush`.
    Close {
        /// Whether the swapped-in bytes must still be written.
        flush: bool,
    },
}

impl Outbound {
    /// An empty outbound queue with a byte budget of `max_pending`.
    pub fn new(max_pending: usize) -> Self {
        Outbound {
            state: Mutex::new(State::default()),
            writer: Notify::new(),
            reader: Notify::new(),
            max_pending,
        }
    }

    /// Appends one frame written by `encode`; `Some(size)` counts it as a delivered message of
    /// `size` payload bytes (headers included, as nats-server counts `out_bytes`).
    /// Over `max_pending` the connection becomes a slow consumer: it is closed at once and
    /// nothing more is queued, so the producer never waits for it.
    pub fn append(&self, msg: Option<usize>, encode: impl FnOnce(&mut BytesMut)) -> Appended {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Appended::Dropped;
        }
        let before = state.pending.len();
        encode(&mut state.pending);
        if state.pending.len() > self.max_pending {
            state.pending.truncate(before);
            state.closed = Some(Closed {
                reason: CloseReason::SlowConsumerPendingBytes,
                flush: false,
            });
            drop(state);
            self.writer.notify_one();
            self.reader.notify_one();
            return Appended::Dropped;
        }
        if let Some(size) = msg {
            state.out_msgs += 1;
            state.out_bytes += size as u64;
        }
        if state.flush_scheduled {
            Appended::Queued
        } else {
            state.flush_scheduled = true;
            Appended::ScheduleFlush
        }
    }

    /// Wakes the writer: called once per read batch by the producer that scheduled the flush.
    pub fn wake_writer(&self) {
        self.writer.notify_one();
    }

    /// Waits until a producer wakes the writer.
    pub async fn writer_wakeup(&self) {
        self.writer.notified().await
    }

    /// Waits until the connection is closed from outside its reader (slow consumer, write
    /// failure, shutdown).
    pub async fn reader_wakeup(&self) {
        self.reader.notified().await
    }

    /// Swaps everything pending into `into` (which must be empty).
    pub fn take(&self, into: &mut BytesMut) -> Take {
        let mut state = self.lock();
        std::mem::swap(&mut state.pending, into);
        state.flush_scheduled = false;
        match state.closed {
            Some(closed) => Take::Close {
                flush: closed.flush,
            },
            None if into.is_empty() => Take::Idle,
            None => Take::Write,
        }
    }

    /// Drops the pending buffer's memory if nothing is pending and it has grown past `limit`
    /// (called by an idle writer).
    pub fn release_idle_buffer(&self, limit: usize) {
        let mut state = self.lock();
        if state.pending.is_empty() && state.pending.capacity() > limit {
            state.pending = BytesMut::new();
        }
    }

    /// Closes the connection for `reason`. With `flush`, what is already queued (an `-ERR`,
    /// say) is still written first. The first close wins; returns whether this call closed it.
    pub fn close(&self, reason: CloseReason, flush: bool) -> bool {
        let mut state = self.lock();
        if state.closed.is_some() {
            return false;
        }
        state.closed = Some(Closed { reason, flush });
        drop(state);
        self.writer.notify_one();
        self.reader.notify_one();
        true
    }

    /// Why the connection was closed, if it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.lock().closed.map(|c| c.reason)
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn pending_bytes(&self) -> usize {
        self.lock().pending.len()
    }

    /// Messages and payload bytes delivered so far.
    pub fn out_stats(&self) -> (u64, u64) {
        let state = self.lock();
        (state.out_msgs, state.out_bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the buffer in a state worse than
        // partially written, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_append_schedules_the_flush_and_take_resets_it() {
        let out = Outbound::new(1024);
        assert_eq!(
            out.append(Some(1), |b| b.extend_from_slice(b"a")),
            Appended::ScheduleFlush
        );
        assert_eq!(
            out.append(Some(1), |b| b.extend_from_slice(b"b")),
            Appended::Queued
        );
        let mut buf = BytesMut::new();
        assert!(matches!(out.take(&mut buf), Take::Write));
        assert_eq!(&buf[..], b"ab");
        assert_eq!(out.out_stats(), (2, 2));
        let mut empty = BytesMut::new();
        assert!(matches!(out.take(&mut empty), Take::Idle));
        assert_eq!(
            out.append(None, |b| b.extend_from_slice(b"c")),
            Appended::ScheduleFlush
        );
        assert_eq!(out.out_stats(), (2, 2));
    }

    #[test]
    fn over_max_pending_is_a_slow_consumer() {
        let out = Outbound::new(10);
        assert_eq!(
            out.append(Some(5), |b| b.extend_from_slice(b"12345")),
            Appended::ScheduleFlush
        );
        assert_eq!(
            out.append(Some(6), |b| b.extend_from_slice(b"123456")),
            Appended::Dropped
        );
        assert_eq!(
            out.close_reason(),
            Some(CloseReason::SlowConsumerPendingBytes)
        );
        assert_eq!(
            out.append(Some(1), |b| b.extend_from_slice(b"1")),
            Appended::Dropped
        );
        let mut buf = BytesMut::new();
        assert!(matches!(out.take(&mut buf), Take::Close { flush: false }));
    }

    #[test]
    fn first_close_wins() {
        let out = Outbound::new(10);
        assert!(out.close(CloseReason::StaleConnection, true));
        assert!(!out.close(CloseReason::ClientClosed, false));
        assert_eq!(out.close_reason(), Some(CloseReason::StaleConnection));
    }
}
