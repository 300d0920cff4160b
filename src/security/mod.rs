//! Who may connect and over what: credentials and authentication, and TLS (the one place a
//! rustls configuration is built, certificate identities, pinned keys).

pub mod auth;
pub mod jwt;
pub mod tls;
