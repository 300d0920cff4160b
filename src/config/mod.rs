//! Configuration as plain data: the options with nats-server's defaults, the configuration
//! file's syntax ([`conf`]) and meaning ([`options`]), and nats-server's command line ([`cli`]).

pub mod accounts;
pub mod cli;
pub mod conf;
pub mod options;

pub use options::*;
