//! Routing: the subscription trie, accounts, permissions, the connections' outbound queues
//! and counters, and delivery to each kind of subscriber. No sockets; the only tokio it uses
//! is the `Notify` that wakes a connection's writer.

pub mod outbound;
pub mod permissions;
pub mod router;
pub mod stats;
pub mod sublist;
