//! A worker thread that runs out of work watches the connections' sockets for a moment before
//! it sleeps.
//!
//! On a virtual machine, waking a thread whose CPU has gone idle costs tens of microseconds:
//! the CPU halts and must be sent an interrupt. A client that publishes, waits for the reply
//! and publishes again (a JetStream publish with its ack, a request, a KV put) pays that on
//! every message when tern's worker sleeps between them. Measured on the 2-vCPU machine of
//! BENCHMARKS.md with one-at-a-time JetStream publishes: a round trip took about 25 µs when
//! the client and tern's worker happened to share a CPU and 70-100 µs when they did not, and
//! which one a connection got was luck, kept for its whole life (the scheduler wakes a thread
//! on the CPU it last ran on when that one is idle). nats-server has the same cost but hides
//! part of it: Go's scheduler spins before it sleeps.
//!
//! So before a tokio worker parks ([`before_park`], `on_thread_park`), the last worker to run
//! out of work polls a second epoll set, of every client, route and leafnode socket, until data
//! arrives, another worker wakes, or the budget (`TERN_IDLE_SPIN_US`, 50 µs by default, 0 to
//! turn it off) runs out, yielding its CPU between polls so a runnable thread there (say, the
//! client) is never kept waiting. When data arrives the worker parks on tokio's own epoll set,
//! which has the event already, and does not sleep. Only the last one spins: while another
//! worker runs, it may hand this one tasks, and tokio's wake-up for them is not something the
//! spin can see, so a spinning worker would leave them waiting out the budget. The set is edge-triggered: only data that arrives during the spin ends it,
//! not data a paused reader has left unread. The kernel drops a socket from it when the socket
//! closes.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

/// The spin budget when `TERN_IDLE_SPIN_US` is not set.
pub const DEFAULT_BUDGET: Duration = Duration::from_micros(50);

struct Watch {
    /// The set and a buffer for its events; whoever holds it is the one spinning.
    poll: Mutex<(Poll, Events)>,
    registry: Registry,
    budget: Duration,
    /// The runtime's worker threads ([`set_workers`]); none spins until it is known.
    workers: AtomicUsize,
    /// Workers between `on_thread_park` and `on_thread_unpark`.
    idle: AtomicUsize,
}

static WATCH: OnceLock<Watch> = OnceLock::new();

/// The budget `TERN_IDLE_SPIN_US` sets (microseconds; 0 turns the spin off).
pub fn budget_from_env() -> Duration {
    std::env::var("TERN_IDLE_SPIN_US")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(DEFAULT_BUDGET, Duration::from_micros)
}

/// Sets the watch up (once, before the runtime starts); a zero budget, or a failure to create
/// the epoll set, leaves workers to park at once.
pub fn start(budget: Duration) {
    if budget.is_zero() {
        return;
    }
    let Ok(poll) = Poll::new() else {
        return;
    };
    let Ok(registry) = poll.registry().try_clone() else {
        return;
    };
    let _ = WATCH.set(Watch {
        poll: Mutex::new((poll, Events::with_capacity(64))),
        registry,
        budget,
        workers: AtomicUsize::new(usize::MAX),
        idle: AtomicUsize::new(0),
    });
}

/// Tells the watch how many worker threads the runtime has (once it is built).
pub fn set_workers(workers: usize) {
    if let Some(watch) = WATCH.get() {
        watch.workers.store(workers, Ordering::Relaxed);
    }
}

/// `on_thread_unpark`: the worker is back at work.
pub fn after_unpark() {
    if let Some(watch) = WATCH.get() {
        watch.idle.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds a connection's socket to the set (nothing when the watch is off).
pub fn watch(socket: &impl AsRawFd) {
    if let Some(watch) = WATCH.get() {
        let fd = socket.as_raw_fd();
        let _ = watch
            .registry
            .register(&mut SourceFd(&fd), Token(0), Interest::READABLE);
    }
}

/// `on_thread_park`: when this is the last worker to go idle, spins until a watched socket has
/// new data, another worker wakes, or the budget is spent; returns at once otherwise.
pub fn before_park() {
    let Some(watch) = WATCH.get() else {
        return;
    };
    let workers = watch.workers.load(Ordering::Relaxed);
    if watch.idle.fetch_add(1, Ordering::Relaxed) + 1 < workers {
        return;
    }
    let Ok(mut guard) = watch.poll.try_lock() else {
        return;
    };
    let (poll, events) = &mut *guard;
    // Edges from before this spin: tokio's own set has them too, so they need no spin.
    let _ = poll.poll(events, Some(Duration::ZERO));
    let until = Instant::now() + watch.budget;
    loop {
        std::thread::yield_now();
        match poll.poll(events, Some(Duration::ZERO)) {
            Ok(()) if !events.is_empty() => return,
            Ok(()) => {}
            Err(_) => return,
        }
        if Instant::now() >= until || watch.idle.load(Ordering::Relaxed) < workers {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_spin_ends_when_a_watched_socket_gets_data_and_not_for_old_data() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        start(Duration::from_secs(30));
        set_workers(1);
        watch(&server);
        client.write_all(b"PING\r\n").unwrap();
        // The data arrived before the spin: the spin drains that edge and waits for a new
        // one, which a thread sends a moment later. Without the watch the spin would run out
        // its 30 s budget.
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            client.write_all(b"PING\r\n").unwrap();
            client
        });
        let started = Instant::now();
        before_park();
        let spun = started.elapsed();
        after_unpark();
        let _client = sender.join().unwrap();
        assert!(
            spun >= Duration::from_millis(40),
            "ended on the old edge after {spun:?}"
        );
        assert!(
            spun < Duration::from_secs(20),
            "missed the new data: spun {spun:?}"
        );
    }
}
