//! Who may connect and over what: credentials and authentication, and TLS (the one place a
//! rustls configuration is built, certificate identities, pinned keys).

pub mod auth;
pub mod callout;
pub mod jwt;
mod template;
pub mod tls;

use std::net::IpAddr;

use crate::config::Options;

/// Authenticates a client's credentials under `opts`: by its user JWT in operator mode,
/// otherwise against the configured users, tokens and nkeys. `desc` names the connection in
/// the log; `ip` is where it comes from.
pub fn authenticate(
    opts: &Options,
    creds: &auth::Credentials,
    desc: &str,
    ip: Option<IpAddr>,
) -> Option<auth::Authorized> {
    judge(opts, creds, desc, ip).0
}

/// As [`authenticate`], and whether an auth callout service decides instead (then the
/// client's own credentials count for nothing, as in nats-server).
pub fn judge(
    opts: &Options,
    creds: &auth::Credentials,
    desc: &str,
    ip: Option<IpAddr>,
) -> (Option<auth::Authorized>, Option<callout::Plan>) {
    let mut found = None;
    let user = if opts.operator.enabled() {
        let cx = jwt::Context {
            desc,
            ip,
            now: crate::config::operator::unix_now(),
            connection_type: creds.kind(),
        };
        jwt::authenticate(&opts.operator, creds, &cx, &mut found)
    } else {
        auth::authenticate(opts, creds)
    };
    let jwt_user = user.as_ref().filter(|u| u.jwt.is_some());
    let plan = callout::plan(
        opts,
        creds,
        found.as_deref(),
        jwt_user.and_then(|u| u.user.as_deref()),
    );
    (user, plan)
}
