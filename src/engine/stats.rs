//! Counters for monitoring, kept off the publish hot path.
//!
//! A connection's reader counts what it reads in plain fields and publishes them here once per
//! read batch ([`ConnStats`], relaxed atomics only that reader writes); what is delivered to a
//! connection is counted by its outbound queue under the lock every delivery already takes.
//! Server-wide totals are the sum over live connections plus a running total of closed ones
//! ([`Totals`], updated by the router in the same critical section that forgets a connection,
//! so a reader sees every connection counted exactly once). A closed connection leaves a
//! [`ConnSnapshot`] in a bounded ring for `/connz?state=closed`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::engine::outbound::CloseReason;

/// nats-server's default `max_closed_clients`.
pub const DEFAULT_MAX_CLOSED_CLIENTS: usize = 10_000;

/// What one connection's reader has counted, published once per read batch.
#[derive(Debug)]
pub struct ConnStats {
    /// When the connection was accepted (wall clock).
    pub start: SystemTime,
    /// When the connection was accepted (monotonic), the origin of `last_activity`.
    started: Instant,
    /// Messages received (PUB and HPUB).
    in_msgs: AtomicU64,
    /// Payload bytes received (headers included), as nats-server counts them.
    in_bytes: AtomicU64,
    /// Nanoseconds after `started` of the last read.
    last_activity: AtomicU64,
    /// Round-trip time in nanoseconds, 0 until measured.
    rtt: AtomicU64,
}

impl ConnStats {
    /// Counters for a connection accepted now.
    pub fn new() -> Self {
        ConnStats {
            start: SystemTime::now(),
            started: Instant::now(),
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
            rtt: AtomicU64::new(0),
        }
    }

    /// Publishes the reader's running totals and the time of its last read.
    pub fn publish(&self, in_msgs: u64, in_bytes: u64, last_read: Instant) {
        self.in_msgs.store(in_msgs, Ordering::Relaxed);
        self.in_bytes.store(in_bytes, Ordering::Relaxed);
        let since = last_read.saturating_duration_since(self.started);
        self.last_activity
            .store(since.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Records a round-trip time measurement.
    pub fn set_rtt(&self, rtt: Duration) {
        // Never 0 once measured: 0 means "not measured".
        self.rtt
            .store((rtt.as_nanos() as u64).max(1), Ordering::Relaxed);
    }

    /// The round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        match self.rtt.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Time since the connection was accepted.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// `(in_msgs, in_bytes)`.
    pub fn inbound(&self) -> (u64, u64) {
        (
            self.in_msgs.load(Ordering::Relaxed),
            self.in_bytes.load(Ordering::Relaxed),
        )
    }

    /// Wall-clock time of the last read (the start, before any).
    pub fn last_activity(&self) -> SystemTime {
        self.start + Duration::from_nanos(self.last_activity.load(Ordering::Relaxed))
    }
}

impl Default for ConnStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Server-wide counters of connections that have closed, plus close-reason counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Messages received.
    pub in_msgs: u64,
    /// Payload bytes received.
    pub in_bytes: u64,
    /// Messages delivered.
    pub out_msgs: u64,
    /// Payload bytes delivered.
    pub out_bytes: u64,
    /// Connections closed as slow consumers.
    pub slow_consumers: u64,
    /// Connections closed as stale (unanswered PINGs).
    pub stale_connections: u64,
}

impl Totals {
    /// Adds one connection's final counters and its close reason.
    pub fn add_closed(&mut self, counts: Counts, reason: Option<CloseReason>) {
        self.add(counts);
        match reason {
            Some(
                CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline,
            ) => self.slow_consumers += 1,
            Some(CloseReason::StaleConnection) => self.stale_connections += 1,
            _ => {}
        }
    }

    /// Adds a live connection's counters.
    pub fn add(&mut self, counts: Counts) {
        self.in_msgs += counts.in_msgs;
        self.in_bytes += counts.in_bytes;
        self.out_msgs += counts.out_msgs;
        self.out_bytes += counts.out_bytes;
    }
}

/// One connection's message counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Messages received.
    pub in_msgs: u64,
    /// Payload bytes received.
    pub in_bytes: u64,
    /// Messages delivered.
    pub out_msgs: u64,
    /// Payload bytes delivered.
    pub out_bytes: u64,
}

/// Everything `/connz` shows about one connection, taken at one moment (or at its close).
#[derive(Debug, Clone, Default)]
pub struct ConnSnapshot {
    /// The client came in over WebSocket.
    pub websocket: bool,
    /// The account the connection is bound to.
    pub account: String,
    /// Connection id.
    pub cid: u64,
    /// The client's address.
    pub addr: Option<SocketAddr>,
    /// Accepted at.
    pub start: Option<SystemTime>,
    /// Last read at.
    pub last_activity: Option<SystemTime>,
    /// Closed at, for a closed connection.
    pub stop: Option<SystemTime>,
    /// Why it closed, for a closed connection.
    pub reason: Option<&'static str>,
    /// Round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// Bytes queued to the client and not yet written.
    pub pending_bytes: usize,
    /// Message counters.
    pub counts: Counts,
    /// Number of subscriptions (at close, those it had).
    pub subscriptions: usize,
    /// The subscriptions, when asked for (at close, always).
    pub subs: Vec<SubSnapshot>,
    /// CONNECT `name`.
    pub name: String,
    /// CONNECT `lang`.
    pub lang: String,
    /// CONNECT `version`.
    pub version: String,
    /// The user it authenticated as.
    pub user: Option<String>,
    /// A JWT user's identity (operator mode).
    pub jwt: Option<Arc<super::connection::JwtIdentity>>,
}

/// One subscription, for `/connz?subs=detail` and `/subsz?subs=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubSnapshot {
    /// The subject filter.
    pub subject: String,
    /// The queue group.
    pub queue: Option<String>,
    /// The client's sid.
    pub sid: String,
    /// Messages delivered to it.
    pub msgs: u64,
    /// Its connection.
    pub cid: u64,
}

/// The most recently closed connections, oldest first, at most `capacity` of them
/// (`max_closed_clients`).
#[derive(Debug)]
pub struct ClosedRing {
    /// Guards the ring only; taken once per close and once per `/connz?state=closed`.
    ring: Mutex<VecDeque<Arc<ConnSnapshot>>>,
    capacity: usize,
}

impl ClosedRing {
    /// A ring keeping the last `capacity` closed connections (0 keeps none).
    pub fn new(capacity: usize) -> Self {
        ClosedRing {
            ring: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    /// Remembers a closed connection, forgetting the oldest when full.
    pub fn push(&self, closed: ConnSnapshot) {
        if self.capacity == 0 {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        while ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(Arc::new(closed));
    }

    /// The closed connections remembered, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<ConnSnapshot>> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest() {
        let ring = ClosedRing::new(2);
        for cid in 1..=3 {
            ring.push(ConnSnapshot {
                cid,
                ..Default::default()
            });
        }
        let cids: Vec<u64> = ring.snapshot().iter().map(|c| c.cid).collect();
        assert_eq!(cids, [2, 3]);
        let none = ClosedRing::new(0);
        none.push(ConnSnapshot::default());
        assert!(none.snapshot().is_empty());
    }

    #[test]
    fn totals_count_close_reasons() {
        let mut t = Totals::default();
        let c = Counts {
            in_msgs: 1,
            in_bytes: 2,
            out_msgs: 3,
            out_bytes: 4,
        };
        t.add_closed(c, Some(CloseReason::SlowConsumerWriteDeadline));
        t.add_closed(c, Some(CloseReason::StaleConnection));
        t.add_closed(c, Some(CloseReason::ClientClosed));
        assert_eq!(t.in_msgs, 3);
        assert_eq!(t.out_bytes, 12);
        assert_eq!((t.slow_consumers, t.stale_connections), (1, 1));
    }

    #[test]
    fn conn_stats_publish() {
        let s = ConnStats::new();
        assert_eq!(s.rtt(), None);
        s.set_rtt(Duration::ZERO);
        assert_eq!(s.rtt(), Some(Duration::from_nanos(1)));
        s.publish(5, 50, Instant::now());
        assert_eq!(s.inbound(), (5, 50));
        assert!(s.last_activity() >= s.start);
    }
}
