//! tern: a lightweight NATS-compatible pub/sub and request-reply server.
//!
//! # Layout
//!
//! - `main.rs`: the command line (nats-server's flags), logging set-up, signals.
//! - [`cli`]: nats-server's command line, read with Go's flag rules.
//! - [`config`]: server options as plain data with nats-server's defaults, and the meaning of
//!   configuration-file keys; [`conf`] reads the file's syntax.
//! - [`auth`]: who may connect (users, bcrypt, token, nkeys, certificates, `no_auth_user`).
//! - [`permissions`]: what a user may publish and subscribe to (allow/deny, responses).
//! - [`tls`]: the rustls configuration, the NATS-style TLS upgrade, plain/TLS stream halves.
//! - [`server`]: the accept loop, shared state, graceful shutdown.
//! - [`sys`]: the system account's services (`$SYS.REQ.*` requests answered with the monitor's
//!   documents) and events (client CONNECT/DISCONNECT, account connection counts, `STATSZ`),
//!   one task fed by `state::events`; a layer between `monitor` and `server`.
//! - [`client`]: one connection: INFO, CONNECT and auth, read loop, writer, PINGs.
//! - [`router`]: shared state: the sublist, live connections, the cache generation.
//! - [`outbound`]: one connection's pending bytes, writer wake-up, slow-consumer budget.
//! - [`logging`]: nats-server's log line format as a `tracing` subscriber.
//! - [`monitor`]: the HTTP monitoring endpoints (`/varz`, `/connz`, `/subsz`, `/healthz`, ...)
//!   and `/metrics`, served by [`http`], a minimal GET/HEAD HTTP/1.1 server.
//! - [`stats`]: per-connection counters published once per read batch, closed-connection
//!   totals and the ring of recently closed connections.
//! - Pure core (no tokio, no sockets, no clock): [`subject`] (validation), [`sublist`] (the
//!   trie), [`parser`] (bytes to operations), [`protocol`] (encoders, INFO/CONNECT), [`error`]
//!   (every `-ERR` text and whether it closes the connection).
//!
//! # How a message flows
//!
//! A connection's reader fills its buffer with one read of up to 64 KiB and parses every whole
//! operation in it; subjects and payloads are slices of that buffer. For a PUB it looks the subject up in
//! its own match cache (valid while the router's generation number is unchanged, so the common
//! case takes no shared lock), then appends `MSG ...` with a copy of the payload to each
//! subscriber's outbound buffer under that subscriber's short mutex, picking one random member
//! per queue group. Each subscriber touched is remembered once; when the whole read has been
//! handled their writers are woken, and each writer swaps its buffer out and writes it with one
//! call. A subscriber whose queued bytes (including those its writer is still writing) pass
//! `max_pending` is closed as a slow consumer at once; a publisher outrunning a subscriber that
//! still reads waits for it once its backlog passes `max_pending / 16` (fan-in), but never for
//! one whose writer has stopped making progress (`Outbound::wait_for_room`). A writer that falls
//! behind is handed whole 256 KiB chunks rather than one buffer regrown by
//! doubling. A publisher yields to the writers it woke after every MiB it reads, since a task
//! woken from a tokio worker cannot be stolen by the other worker until the waker yields.
//!
//! A connection whose user has permissions checks each PUB against a per-connection cache of
//! publish decisions; a connection without them pays one branch. Deliveries read one atomic
//! flag on the subscriber, set only when it must filter against its subscribe deny list or
//! track reply subjects for `allow_responses`.

pub mod config;
pub mod conn;
pub mod engine;
pub mod logging;
pub mod monitor;
pub mod proto;
pub mod security;
pub mod server;
pub mod state;
pub mod sys;

pub use config::Options;
pub use server::Server;
