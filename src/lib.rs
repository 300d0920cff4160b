//! tern: a lightweight NATS-compatible pub/sub and request-reply server.
//!
//! # Layout
//!
//! Each folder of `src/` is one layer; a module imports only from layers below its own (no
//! cycles). From the bottom:
//!
//! - [`proto`]: the wire as pure functions (no tokio, sockets or clock): [`proto::subject`]
//!   rules, [`proto::error`] (every `-ERR` text and whether it closes the connection), the
//!   client [`proto::parser`] and [`proto::protocol`] encoders, INFO and CONNECT, the route
//!   ([`proto::route`]) and leafnode ([`proto::leaf`]) frames, and
//!   [`proto::websocket`] (RFC 6455 frames, the upgrade request and its answers,
//!   permessage-deflate) with [`proto::websocket_client`] (a leafnode remote's side of it).
//! - [`engine`]: routing. [`engine::account`] (each account's sublist and generation, its
//!   mappings and the service responses it owes), [`engine::subscription`] (a subscription
//!   delivers to a target: a client, or an internal callback), [`engine::deliver`] (publish is
//!   match -> deliver per target kind), [`engine::import`] (stream and service imports as
//!   internal subscribers), [`engine::mapping`] (subject transforms), [`engine::connection`]
//!   (a client as other connections see it), [`engine::outbound`] (pending bytes, writer
//!   wake-up, slow-consumer budget), [`engine::router`] (accounts and live connections),
//!   [`engine::route`] (a route as a delivery target, and the local interest routes are told
//!   of), [`engine::leaf`] (a leafnode connection as a delivery target bound to one account,
//!   and what interest it hears of), [`engine::permissions`], [`engine::stats`],
//!   [`engine::sublist`] (the trie), [`engine::generation`] (per-region generation numbers that
//!   tell a publisher's cached match whether a SUB/UNSUB could have changed it),
//!   [`engine::msgtrace`] (message tracing: what a
//!   `Nats-Trace-Dest` message, or a sampled `traceparent` in an account with `msg_trace`,
//!   asks for and the events gathered while it is delivered; `sys` publishes them),
//!   [`engine::stage`] (what an internal subscriber puts off until its publisher's batch
//!   ends: JetStream's inboxes hand their task each batch whole).
//! - [`config`]: options as plain data with nats-server's defaults: [`config::conf`] reads the
//!   file's syntax, [`config::options`], [`config::users`], [`config::accounts`] and
//!   [`config::cluster`] (the `cluster` block and flags, route URLs), [`config::msgtrace`]
//!   (an account's `msg_trace`),
//!   [`config::leafnode`] (the `leafnodes` block and its remotes) and
//!   [`config::websocket`] its meaning,
//!   [`config::cli`] nats-server's command line.
//! - [`security`]: [`security::auth`] (who may connect, as which user of which account),
//!   [`security::jwt`] (operator mode: a user's JWT checked up to a trusted operator),
//!   [`security::callout`] (auth callout requests and the judging of their responses) and
//!   [`security::tls`] (the one place rustls configurations are built; certificate names).
//! - [`state`]: [`state::Shared`], what every connection shares (options in force, router,
//!   identity, TLS configuration), reload, [`state::leafnode`] (the leafnode port and live
//!   leafnode connections), [`state::accounts`] (accounts, imports and the
//!   system account put in force at start and on reload), [`state::resolver`] (operator-mode
//!   accounts fetched when a client needs them: from an account server over HTTP, or from the
//!   cluster's full resolvers through the system account; the cache resolver's directory),
//!   and [`state::jetstream`]
//!   (JetStream's configuration and totals, filled in by the JetStream task, and the queries
//!   through which the monitor asks it for detail: the monitor reads JetStream without
//!   depending on it).
//! - [`conn`]: connections. [`conn::transport`] (`Plain | Tls | Ws` halves beneath the session,
//!   the TLS listener's opening), [`conn::websocket`] (the upgrade, and the `Ws` halves that
//!   turn frames into the byte stream the client session reads and writes), [`conn::writer`],
//!   [`conn::liveness`] (PINGs), [`conn::cache`] (match and permission caches),
//!   [`conn::trace`] (`-V`), [`conn::msgtrace`] (traced messages from routes), and the kinds
//!   of connection, each with its own op set: [`conn::client`] (the client protocol),
//!   [`conn::route`] (another server of the cluster, [`proto::route`]) and [`conn::leaf`] (a
//!   leafnode, hub or spoke, [`proto::leaf`]); routes and leafnodes share one read loop.
//! - [`monitor`]: the HTTP monitoring endpoints and `/metrics`, over [`monitor::http`];
//!   [`monitor::jsz`] shows JetStream from [`state::jetstream`]; [`monitor::dashboard`] is the
//!   live page (compiled in) and its once-a-second sampler, ring of history and event stream.
//! - [`sys`]: the system account's services (`$SYS.REQ.*` requests answered with the monitor's
//!   documents) and events (client CONNECT/DISCONNECT, account connection counts, `STATSZ`),
//!   one task fed by `state::events`; the `JSZ` requests, whose detail the JetStream task
//!   gives, are answered from a task of their own.
//! - [`jetstream`]: JetStream on one server: its configuration resolved at start (store
//!   directory, limits) and what it logs; a pure core ([`jetstream::store`] behind the
//!   `StreamStore` trait with the memory store, [`jetstream::stream`], [`jetstream::consumer`]
//!   (pull and push consumers), [`jetstream::api`]) that takes time as input,
//!   [`jetstream::filestore`] (the append-only file store: recovery, compaction, background
//!   fsync; its log format and replay in [`jetstream::filelog`], the in-memory index of its
//!   messages in [`jetstream::fileindex`]), and [`jetstream::service`], the task behind its
//!   internal subscriptions.
//! - [`server`]: listeners, the accept loop, lame duck mode, shutdown, the ports file.
//! - [`tools`] (a top layer beside `server`, which it does not use): the client tools of
//!   `tern pub|sub|req|reply|bench|server|trace|kv|stream`, a small NATS client of their own
//!   ([`tools::client`], [`tools::wire`]) that works against tern and nats-server alike, and
//!   the JetStream API requests of `kv` and `stream` over it ([`tools::jsapi`]).
//! - [`logging`] (a leaf used by `main.rs` and the monitor): nats-server's log line format.
//! - `main.rs`: the command line, logging set-up, signals.
//!
//! # How a message flows
//!
//! A connection's reader fills its buffer with one read of up to 64 KiB and parses every whole
//! operation in it; subjects and payloads are slices of that buffer. For a PUB it looks the subject up in
//! its own match cache (valid while no SUB or UNSUB that could match the subject happened
//! since: one load of the account's generation number while nothing changed, the subject's
//! generation buckets otherwise; so the common case takes no shared lock, churn elsewhere
//! included), then appends `MSG ...` with a copy of the payload to each
//! subscriber's outbound buffer under that subscriber's short mutex (the frame built on the
//! stack and appended in one piece), picking one random member per queue group. A payload of
//! 16 KiB or more is not copied: its frame is split off the read buffer and each subscriber
//! queues a reference-counted slice of it, written with a vectored write. Each subscriber touched is remembered once; when the whole read has been
//! handled their writers are woken, and each writer swaps its buffer out and writes it with one
//! call. A subscriber whose queued bytes (including those its writer is still writing) pass
//! `max_pending` is closed as a slow consumer at once; a publisher outrunning a subscriber that
//! still reads waits for it once its backlog passes `max_pending / 16` (fan-in), but never for
//! one whose writer has stopped making progress (`Outbound::wait_for_room`), nor for a client
//! falling behind beside another it feeds that keeps up (`Deliveries::pacing`; a backlogged
//! route or leafnode is always waited for). A writer that falls
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
pub mod jetstream;
pub mod logging;
pub mod monitor;
pub mod proto;
pub mod security;
pub mod server;
pub mod state;
pub mod sys;
pub mod tools;

pub use config::Options;
pub use server::Server;
