//! One connection's pending outbound bytes, the wake-up of its writer, and its slow-consumer
//! budget.
//!
//! Producers (the connection's own reader, or any publisher delivering to it) append frames
//! under a short `std::sync::Mutex`. The first producer that appends after a flush schedules
//! the flush: it remembers the connection and wakes the writer once at the end of its read
//! batch, so a batch of many messages costs the writer one wake-up and one write. The writer
//! swaps the whole buffer out under the lock and writes it with the lock released.
//!
//! While the writer keeps up, everything pending sits in one buffer, and the writer's and the
//! producers' buffers trade places at each write, so neither is reallocated. When the writer
//! falls behind (a subscriber reading slowly, or not at all), the buffer is not grown by
//! doubling, which would copy everything queued at each step and touch twice the memory: once
//! it holds `CHUNK` bytes it is set aside whole and a new one is started. Measured on the
//! load generator's stuck-subscriber scenario, growing by doubling spent about a quarter of
//! the server's time in page faults and reallocation copies.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
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
    /// The user's JWT expired.
    AuthenticationExpired,
    /// The user's account revoked its JWT.
    CredentialsRevoked,
    /// The user's account has as many connections as its JWT allows.
    MaxAccountConnectionsExceeded,
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
    /// A reload took the route's URL out of `cluster.routes`.
    RouteRemoved,
    /// A second route to a server already routed, or a route to this server itself.
    DuplicateRoute,
    /// A leafnode older than the leafnode port's `min_version`.
    MinimumVersionRequired,
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
            CloseReason::AuthenticationExpired => "Authentication Expired",
            CloseReason::CredentialsRevoked => "Credentials Revoked",
            CloseReason::MaxAccountConnectionsExceeded => "Maximum Account Connections Exceeded",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::MaxPayloadExceeded => "Maximum Message Payload Exceeded",
            CloseReason::MaxControlLineExceeded => "Maximum Control Line Exceeded",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::BadClientProtocolVersion => "Bad Client Protocol Version",
            CloseReason::NoRespondersRequiresHeaders => "No Responders Requires Headers",
            CloseReason::TlsHandshakeFailure => "TLS Handshake Failure",
            CloseReason::RouteRemoved => "Route Removed",
            CloseReason::DuplicateRoute => "Duplicate Route",
            CloseReason::MinimumVersionRequired => "Minimum Version Required",
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
    /// Wakes a writer stuck on a full socket when the connection is closed without flushing.
    abort: Notify,
    /// Wakes publishers waiting for this connection's backlog to shrink (`wait_for_room`).
    drained: Notify,
    /// The connection's [`Pace`], as a `u8`: read without the lock on every delivery,
    /// written under it.
    pace: AtomicU8,
    max_pending: usize,
    /// How long a publisher waits for the writer to make progress before taking it as stuck
    /// (`STUCK_AFTER` for clients; longer for a route, which carries every account's traffic
    /// and whose loss would drop it all, as nats-server stalls publishers behind a route).
    stuck_after: std::sync::atomic::AtomicU64,
    /// A route or leafnode: its publishers always wait for it when it is backlogged (see
    /// `Deliveries::pacing`).
    paces_always: AtomicBool,
}

/// A publisher that finds a subscriber backlogged waits for it while its writer makes
/// progress; this long without any is a stuck subscriber, left to `max_pending`. Long enough
/// that a reader descheduled on a busy machine (or pausing for a collection) is not taken for
/// a stuck one: at 10 ms, a fan-in subscriber reading as fast as it could was cut on a 2-core
/// machine running builds beside it.
const STUCK_AFTER: Duration = Duration::from_millis(50);

/// Room for a frame's control line beyond its payload, when judging whether it fits.
const FRAME_OVERHEAD: usize = 512;

/// Once the pending buffer holds this much, a new one is started rather than growing it.
const CHUNK: usize = 256 * 1024;

/// How many written chunks a connection keeps for reuse (see `Outbound::recycle`).
const SPARE_CHUNKS: usize = 4;

#[derive(Debug, Default)]
struct State {
    /// The buffer being appended to.
    pending: BytesMut,
    /// Earlier full buffers, oldest first, while the writer is behind, and the pieces of
    /// frames whose payloads are shared (`append_shared`).
    full: Vec<Bytes>,
    /// Bytes in `full`.
    full_bytes: usize,
    /// Empty chunks the writer has finished with, reused before allocating new ones: a
    /// publisher that reads faster than this connection's writer gets a turn fills a chunk or
    /// more per batch, and fresh chunks cost a page fault every 4 KiB and an unmap when freed
    /// (about a tenth of both nodes' time on the cluster route path, 1:1 1 KB).
    spare: Vec<BytesMut>,
    /// Bytes the writer took and has not finished writing: they still count against
    /// `max_pending`, as in nats-server, so a stuck subscriber holds at most that much.
    in_flight: usize,
    /// A publisher waited `STUCK_AFTER` for the writer without progress; cleared by progress.
    stuck: bool,
    /// It stayed backlogged beside a connection that caught up (`Outbound::set_lagging`):
    /// publishers do not wait for it until it is back under its backlog limit by itself.
    lagging: bool,
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

/// How a connection keeps up with what is queued for it (`Outbound::pace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Pace {
    /// At most its backlog limit is queued.
    KeepingUp = 0,
    /// More is queued and its writer is making progress: publishers wait for it (see
    /// `Outbound::wait_for_room`).
    Backlogged = 1,
    /// More is queued and it is taken as stuck (no progress for a publisher's patience) or
    /// lagging behind a connection that caught up (`Outbound::set_lagging`): nobody waits
    /// for it, and it does not count as keeping up either.
    Behind = 2,
}

/// Why `Outbound::wait_for_room` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// The backlog is back under the limit: the subscriber keeps up.
    Drained,
    /// The writer made no progress for the publisher's patience (now or in an earlier wait).
    Stuck,
    /// The connection is closed.
    Closed,
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
            abort: Notify::new(),
            drained: Notify::new(),
            pace: AtomicU8::new(Pace::KeepingUp as u8),
            max_pending,
            stuck_after: std::sync::atomic::AtomicU64::new(STUCK_AFTER.as_millis() as u64),
            paces_always: AtomicBool::new(false),
        }
    }

    /// Publishers wait up to `patience` for this connection's writer before taking it as
    /// stuck, and wait for it whenever it is backlogged (routes and leafnodes: a peer that is
    /// busy, not gone, must pace its publishers).
    pub fn set_patience(&self, patience: Duration) {
        self.stuck_after
            .store(patience.as_millis() as u64, Ordering::Relaxed);
        self.paces_always.store(true, Ordering::Relaxed);
    }

    /// Whether publishers always wait for this connection when it is backlogged (a peer).
    pub fn paces_always(&self) -> bool {
        self.paces_always.load(Ordering::Relaxed)
    }

    /// Appends one frame written by `encode`; `Some(size)` counts it as a delivered message of
    /// `size` payload bytes (headers included, as nats-server counts `out_bytes`).
    /// Over `max_pending` the connection becomes a slow consumer: it is closed at once and
    /// nothing more is queued, so the producer never waits for it.
    #[inline(always)]
    pub fn append(&self, msg: Option<usize>, encode: impl FnOnce(&mut BytesMut)) -> Appended {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Appended::Dropped;
        }
        let room = state.pending.capacity() - state.pending.len();
        if state.pending.len() >= CHUNK && room < msg.unwrap_or(0) + FRAME_OVERHEAD {
            let next = state
                .spare
                .pop()
                .unwrap_or_else(|| BytesMut::with_capacity(CHUNK));
            let chunk = std::mem::replace(&mut state.pending, next);
            state.full_bytes += chunk.len();
            state.full.push(chunk.freeze());
        }
        let before = state.pending.len();
        encode(&mut state.pending);
        if state.in_flight + state.full_bytes + state.pending.len() > self.max_pending {
            state.pending.truncate(before);
            self.cut_slow_consumer(state);
            return Appended::Dropped;
        }
        if let Some(size) = msg {
            state.out_msgs += 1;
            state.out_bytes += size as u64;
        }
        self.note_backlog(&state);
        if state.flush_scheduled {
            Appended::Queued
        } else {
            state.flush_scheduled = true;
            Appended::ScheduleFlush
        }
    }

    /// Appends a frame whose control line `encode` writes and whose payload, CRLF included,
    /// is `payload`, shared rather than copied (a large message, a slice of the publisher's
    /// read buffer). Counted as a delivered message of `size` bytes.
    pub fn append_shared(
        &self,
        size: usize,
        payload: Bytes,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Appended {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Appended::Dropped;
        }
        let before = state.pending.len();
        encode(&mut state.pending);
        let queued = state.in_flight + state.full_bytes + state.pending.len() + payload.len();
        if queued > self.max_pending {
            state.pending.truncate(before);
            self.cut_slow_consumer(state);
            return Appended::Dropped;
        }
        // What is pending goes first, as one piece; then the payload. The pending buffer keeps
        // the rest of its room for what follows.
        let head = state.pending.split().freeze();
        state.full_bytes += head.len() + payload.len();
        state.full.push(head);
        state.full.push(payload);
        state.out_msgs += 1;
        state.out_bytes += size as u64;
        self.note_backlog(&state);
        if state.flush_scheduled {
            Appended::Queued
        } else {
            state.flush_scheduled = true;
            Appended::ScheduleFlush
        }
    }

    /// Closes the connection as a slow consumer (out of line: `append` is inlined into every
    /// delivery).
    #[cold]
    #[inline(never)]
    fn cut_slow_consumer(&self, mut state: std::sync::MutexGuard<'_, State>) {
        state.closed = Some(Closed {
            reason: CloseReason::SlowConsumerPendingBytes,
            flush: false,
        });
        drop(state);
        self.writer.notify_one();
        self.reader.notify_one();
        self.abort.notify_one();
    }

    /// The backlog past which publishers wait: a sixteenth of `max_pending` (4 MiB by default),
    /// enough for the writer never to run dry while keeping a paced subscriber's memory small
    /// (fan-in 4 -> 1 peaked at 40 MiB with a quarter).
    fn backlog_limit(&self) -> usize {
        self.max_pending / 16
    }

    /// How this connection keeps up with what is queued for it (a cheap load).
    #[inline(always)]
    pub fn pace(&self) -> Pace {
        match self.pace.load(Ordering::Relaxed) {
            0 => Pace::KeepingUp,
            1 => Pace::Backlogged,
            _ => Pace::Behind,
        }
    }

    fn note_backlog(&self, state: &State) {
        let queued = state.in_flight + state.full_bytes + state.pending.len();
        let pace = match queued > self.backlog_limit() {
            false => Pace::KeepingUp,
            true if state.stuck || state.lagging => Pace::Behind,
            true => Pace::Backlogged,
        } as u8;
        if self.pace.load(Ordering::Relaxed) != pace {
            self.pace.store(pace, Ordering::Relaxed);
        }
    }

    /// The writer has written `n` of the bytes it took: they no longer count as pending, and
    /// publishers waiting for room are woken.
    pub fn wrote(&self, n: usize) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(n);
        state.stuck = false;
        if state.lagging
            && state.in_flight + state.full_bytes + state.pending.len() <= self.backlog_limit()
        {
            state.lagging = false;
        }
        self.note_backlog(&state);
        drop(state);
        self.drained.notify_waiters();
    }

    /// Waits, as a publisher, until this connection's backlog is back under `backlog_limit()`,
    /// it is closed, or its writer has made no progress for `STUCK_AFTER`: a subscriber that
    /// reads, only slower than its publishers write (fan-in), paces them, as nats-server's
    /// stall does, instead of being cut as a slow consumer; one that has stopped reading costs
    /// its publishers one such wait, then is left to `max_pending`.
    pub async fn wait_for_room(&self) -> Room {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let state = self.lock();
                let queued = state.in_flight + state.full_bytes + state.pending.len();
                if state.closed.is_some() {
                    return Room::Closed;
                }
                if state.stuck {
                    return Room::Stuck;
                }
                if queued <= self.backlog_limit() {
                    return Room::Drained;
                }
            }
            let patience = Duration::from_millis(self.stuck_after.load(Ordering::Relaxed));
            if tokio::time::timeout(patience, drained).await.is_err() {
                let mut state = self.lock();
                state.stuck = true;
                self.note_backlog(&state);
                return Room::Stuck;
            }
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

    /// Waits until the connection is closed without flushing (a slow consumer): the writer
    /// then drops the write it is blocked in rather than wait for the write deadline.
    pub async fn aborted(&self) {
        self.abort.notified().await
    }

    /// Swaps everything pending out: earlier full buffers into `chunks` (oldest first; write
    /// them before `into`), the current one into `into`. Both must be empty.
    pub fn take(&self, into: &mut BytesMut, chunks: &mut Vec<Bytes>) -> Take {
        let mut state = self.lock();
        std::mem::swap(&mut state.pending, into);
        std::mem::swap(&mut state.full, chunks);
        state.in_flight = state.full_bytes + into.len();
        state.full_bytes = 0;
        state.flush_scheduled = false;
        match state.closed {
            Some(closed) => Take::Close {
                flush: closed.flush,
            },
            None if into.is_empty() && chunks.is_empty() => Take::Idle,
            None => Take::Write,
        }
    }

    /// The writer has written `chunks` (what `take` gave it): the whole chunks among them that
    /// nothing else holds any more are kept, emptied, for reuse (up to `SPARE_CHUNKS`); the
    /// rest is dropped. Leaves `chunks` empty.
    pub fn recycle(&self, chunks: &mut Vec<Bytes>) {
        let mut reusable: SmallVec<[BytesMut; SPARE_CHUNKS]> = SmallVec::new();
        for chunk in chunks.drain(..) {
            if reusable.len() == SPARE_CHUNKS {
                break;
            }
            // A shared payload or a control line split off `pending` is usually still held
            // elsewhere (not unique); one that is, or whose size is not a chunk's, goes.
            if let Ok(mut chunk) = chunk.try_into_mut() {
                if (CHUNK..=2 * CHUNK).contains(&chunk.capacity()) {
                    chunk.clear();
                    reusable.push(chunk);
                }
            }
        }
        if reusable.is_empty() {
            return;
        }
        let mut state = self.lock();
        let fits = reusable.len().min(SPARE_CHUNKS - state.spare.len());
        state.spare.extend(reusable.drain(..fits));
        // What did not fit is freed after the lock is released (`state` goes first).
    }

    /// Drops the pending buffer's memory if nothing is pending and it has grown past `limit`,
    /// and every spare chunk (called by an idle writer).
    pub fn release_idle_buffer(&self, limit: usize) {
        let mut state = self.lock();
        if state.pending.is_empty() && state.pending.capacity() > limit {
            state.pending = BytesMut::new();
        }
        state.spare = Vec::new();
    }

    /// The writer has written everything it took.
    pub fn written(&self) {
        self.lock().in_flight = 0;
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
        if !flush {
            self.abort.notify_one();
        }
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

    /// Marks the connection as lagging behind one that caught up, if it is still over its
    /// backlog limit: not backlogged, so that no publisher waits for it, until its writer has
    /// brought it back under the limit. Left to `max_pending` meanwhile.
    pub fn set_lagging(&self) {
        let mut state = self.lock();
        if state.in_flight + state.full_bytes + state.pending.len() > self.backlog_limit() {
            state.lagging = true;
            self.note_backlog(&state);
        }
    }

    /// Whether more than twice the backlog limit is queued: a subscriber this far behind
    /// one that caught up is not keeping pace with it (see `Deliveries::wait_for_backlogged`).
    pub fn far_behind(&self) -> bool {
        self.pending_bytes() > 2 * self.backlog_limit()
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn pending_bytes(&self) -> usize {
        let state = self.lock();
        state.in_flight + state.full_bytes + state.pending.len()
    }

    /// Messages and payload bytes delivered so far.
    pub fn out_stats(&self) -> (u64, u64) {
        let state = self.lock();
        (state.out_msgs, state.out_bytes)
    }

    // Inlined into every delivery (left to the compiler, it was not once other modules grew).
    #[inline]
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

    /// What a writer would send: the set-aside chunks, then the last buffer, as one run.
    fn taken(chunks: &[Bytes], last: &BytesMut) -> Vec<u8> {
        chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&last[..]))
            .flat_map(|c| c.iter().copied())
            .collect()
    }

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
        assert!(matches!(out.take(&mut buf, &mut Vec::new()), Take::Write));
        assert_eq!(&buf[..], b"ab");
        assert_eq!(out.out_stats(), (2, 2));
        let mut empty = BytesMut::new();
        assert!(matches!(out.take(&mut empty, &mut Vec::new()), Take::Idle));
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
        assert!(matches!(
            out.take(&mut buf, &mut Vec::new()),
            Take::Close { flush: false }
        ));
    }

    #[test]
    fn first_close_wins() {
        let out = Outbound::new(10);
        assert!(out.close(CloseReason::StaleConnection, true));
        assert!(!out.close(CloseReason::ClientClosed, false));
        assert_eq!(out.close_reason(), Some(CloseReason::StaleConnection));
    }

    #[test]
    fn a_writer_behind_gets_whole_chunks_in_order_without_regrowth() {
        let out = Outbound::new(8 * CHUNK);
        let frame = vec![b'x'; 1000];
        let mut written = 0u8;
        for _ in 0..(5 * CHUNK / 1000) {
            out.append(Some(1000), |b| {
                b.extend_from_slice(&[written]);
                b.extend_from_slice(&frame[1..]);
            });
            written = written.wrapping_add(1);
        }
        assert_eq!(out.pending_bytes(), 5 * CHUNK / 1000 * 1000);
        let (mut last, mut chunks) = (BytesMut::new(), Vec::new());
        assert!(matches!(out.take(&mut last, &mut chunks), Take::Write));
        assert!(chunks.len() >= 2, "full chunks set aside");
        for chunk in &chunks {
            // Filled to at least CHUNK, never grown past twice that.
            assert!(chunk.len() >= CHUNK && chunk.len() <= 2 * CHUNK);
        }
        // Every frame, in order, across the chunks and the last buffer.
        let all = taken(&chunks, &last);
        assert_eq!(all.len(), 5 * CHUNK / 1000 * 1000);
        for (i, frame) in all.chunks(1000).enumerate() {
            assert_eq!(frame[0], i as u8);
        }
        // Taken but not yet written: still pending, until the writer says it is done.
        assert_eq!(out.pending_bytes(), 5 * CHUNK / 1000 * 1000);
        out.written();
        assert_eq!(out.pending_bytes(), 0);
        let mut chunks = Vec::new();
        assert!(matches!(
            out.take(&mut BytesMut::new(), &mut chunks),
            Take::Idle
        ));
    }

    #[test]
    fn written_chunks_are_reused_and_given_back_when_idle() {
        let out = Outbound::new(64 * CHUNK);
        let frame = vec![b'x'; 1000];
        let fill = |out: &Outbound, first: u8| {
            for i in 0..(5 * CHUNK / 1000) {
                out.append(Some(1000), |b| {
                    b.extend_from_slice(&[first.wrapping_add(i as u8)]);
                    b.extend_from_slice(&frame[1..]);
                });
            }
        };
        fill(&out, 0);
        let (mut last, mut chunks) = (BytesMut::new(), Vec::new());
        assert!(matches!(out.take(&mut last, &mut chunks), Take::Write));
        assert!(chunks.len() >= 2);
        let written: Vec<*const u8> = chunks.iter().map(|c| c.as_ptr()).collect();
        // A chunk still held elsewhere (a shared payload, say) is not reused.
        let held = chunks[0].clone();
        out.written();
        out.recycle(&mut chunks);
        assert!(chunks.is_empty());
        last.clear();
        // The next chunks set aside are the written ones, emptied, and carry only new frames.
        fill(&out, 100);
        let mut again = Vec::new();
        assert!(matches!(out.take(&mut last, &mut again), Take::Write));
        let reused = again
            .iter()
            .filter(|c| written[1..].contains(&c.as_ptr()))
            .count();
        assert!(reused >= 1, "no chunk reused");
        assert!(again.iter().all(|c| c.as_ptr() != held.as_ptr()));
        let all = taken(&again, &last);
        assert_eq!(all.len(), 5 * CHUNK / 1000 * 1000);
        for (i, frame) in all.chunks(1000).enumerate() {
            assert_eq!(frame[0], 100u8.wrapping_add(i as u8));
        }
        out.written();
        out.recycle(&mut again);
        assert!(!out.lock().spare.is_empty());
        out.release_idle_buffer(0);
        assert!(
            out.lock().spare.is_empty(),
            "an idle connection keeps no spare chunk"
        );
    }

    #[test]
    fn shared_payloads_go_out_in_order_and_count_against_max_pending() {
        let out = Outbound::new(100);
        out.append(Some(1), |b| b.extend_from_slice(b"a"));
        let payload = Bytes::from_static(b"payload\r\n");
        assert_eq!(
            out.append_shared(7, payload.clone(), |b| b.extend_from_slice(b"head ")),
            Appended::Queued
        );
        out.append(Some(1), |b| b.extend_from_slice(b"z"));
        assert_eq!(out.pending_bytes(), 1 + 5 + 9 + 1);
        assert_eq!(out.out_stats(), (3, 9));
        let (mut last, mut chunks) = (BytesMut::new(), Vec::new());
        assert!(matches!(out.take(&mut last, &mut chunks), Take::Write));
        let all: Vec<u8> = chunks
            .iter()
            .flat_map(|c| c.iter().copied())
            .chain(last.iter().copied())
            .collect();
        assert_eq!(all, b"ahead payload\r\nz");
        // The payload itself was queued, not a copy of it.
        assert!(chunks.iter().any(|c| c.as_ptr() == payload.as_ptr()));
        out.written();
        // Over the budget with the payload: a slow consumer, nothing queued.
        let big = Bytes::from(vec![b'x'; 99]);
        assert_eq!(
            out.append_shared(97, big, |b| b.extend_from_slice(b"MSG ")),
            Appended::Dropped
        );
        assert_eq!(
            out.close_reason(),
            Some(CloseReason::SlowConsumerPendingBytes)
        );
    }

    #[test]
    fn max_pending_counts_the_chunks_set_aside() {
        let out = Outbound::new(CHUNK + CHUNK / 2);
        let frame = vec![b'x'; 1000];
        let mut appended = 0;
        while out.append(Some(1000), |b| b.extend_from_slice(&frame)) != Appended::Dropped {
            appended += 1000;
        }
        assert!(appended <= CHUNK + CHUNK / 2 && appended > CHUNK + CHUNK / 2 - 1000);
        assert_eq!(
            out.close_reason(),
            Some(CloseReason::SlowConsumerPendingBytes)
        );
    }

    #[test]
    fn bytes_being_written_count_against_max_pending() {
        let out = Outbound::new(100);
        out.append(Some(60), |b| b.extend_from_slice(&[b'x'; 60]));
        let (mut batch, mut chunks) = (BytesMut::new(), Vec::new());
        assert!(matches!(out.take(&mut batch, &mut chunks), Take::Write));
        // The writer holds 60 bytes it has not written: 41 more would pass the budget.
        assert_eq!(out.pending_bytes(), 60);
        assert_eq!(
            out.append(Some(41), |b| b.extend_from_slice(&[b'y'; 41])),
            Appended::Dropped
        );
        let out = Outbound::new(100);
        out.append(Some(60), |b| b.extend_from_slice(&[b'x'; 60]));
        let (mut batch, mut chunks) = (BytesMut::new(), Vec::new());
        assert!(matches!(out.take(&mut batch, &mut chunks), Take::Write));
        out.written();
        assert_eq!(out.pending_bytes(), 0);
        assert_eq!(
            out.append(Some(41), |b| b.extend_from_slice(&[b'y'; 41])),
            Appended::ScheduleFlush
        );
    }
}
