//! Connections: the transports beneath a session, the machinery every connection shares, and
//! each kind of connection's handling of its own operations.

pub mod client;
