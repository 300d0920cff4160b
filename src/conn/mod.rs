//! Connections: the transports beneath a session (`transport`, `websocket`), the machinery every
//! connection shares (`reader`, `writer`, `liveness`, `trace`), and each kind of connection's handling of its own
//! operations (`client` now; routes, leafnodes and internal clients next).

pub mod cache;
pub mod client;
pub mod idle;
pub mod leaf;
pub mod liveness;
pub mod msgtrace;
mod peer;
pub mod reader;
pub mod route;
pub mod trace;
pub mod transport;
pub mod websocket;
pub mod writer;
