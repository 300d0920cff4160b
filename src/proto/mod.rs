//! The wire, as pure functions: subject rules, every `-ERR` text, the client protocol's parser
//! and encoders. No tokio, no sockets, no clock: unit-, property- and fuzz-testable alone.

pub mod error;
pub mod jwt;
pub mod leaf;
pub mod parser;
pub mod protocol;
pub mod route;
pub mod subject;
pub mod websocket;
pub mod websocket_client;
