//! Routing: accounts with their subscription tries, imports and mappings, permissions, the
//! connections' outbound queues and counters, and delivery to each kind of subscriber. No
//! sockets; the only tokio it uses is the `Notify` that wakes a connection's writer.

pub mod account;
pub mod connection;
pub mod deliver;
pub mod generation;
pub mod import;
pub mod leaf;
pub mod mapping;
pub mod msgtrace;
pub mod outbound;
pub mod permissions;
pub mod route;
pub mod router;
pub mod stage;
pub mod stats;
pub mod sublist;
pub mod subscription;
