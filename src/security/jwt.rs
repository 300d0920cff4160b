//! Authentication in operator mode: CONNECT's user JWT, checked as nats-server checks it
//! (`auth.go: processClientOrLeafAuthentication`): the JWT is a valid, current user claim;
//! its account is known and signed by a trusted operator; the user is signed by the account
//! or one of its signing keys (a scoped key's template replaces the user's permissions and
//! limits); the nonce is signed with the user's key unless the JWT is a bearer token; the
//! user is not revoked, connects from an allowed network and inside its time windows.
//!
//! Every refusal is the client's `Authorization Violation`; the reason goes to the debug log
//! as nats-server words it (two go to the error log, as there).

use std::net::IpAddr;
use std::sync::Arc;

use tracing::{debug, error};

use super::auth::{verify_signature, Authorized, Credentials, Limits};
use crate::config::operator::OperatorOptions;
use crate::config::users::CONNECTION_TYPES;
use crate::engine::connection::JwtIdentity;
use crate::engine::permissions::{self, Permissions, ResponsePermission, SubjectPermission};
use crate::proto::jwt::{self, SigningKey, UserClaims};

/// What the connection adds to its credentials: who it is in the log, where it comes from,
/// and the time.
pub struct Context<'a> {
    /// The connection's log prefix.
    pub desc: &'a str,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// Unix seconds now.
    pub now: i64,
    /// The connection's kind for `allowed_connection_types` (`STANDARD`).
    pub connection_type: &'a str,
}

/// Authenticates `creds` in operator mode. `found` is set to the account of the user's JWT
/// once it is known (an auth callout of that account may still admit the client).
pub fn authenticate(
    op: &OperatorOptions,
    creds: &Credentials,
    cx: &Context,
    found: &mut Option<String>,
) -> Option<Authorized> {
    let refuse = |why: &str| {
        debug!("{} - {why}", cx.desc);
        None
    };
    let Some(token) = creds.jwt.as_deref().filter(|t| !t.is_empty()) else {
        return refuse("Authentication requires a user JWT");
    };
    let user: UserClaims = match jwt::decode(token, jwt::Kind::User) {
        Ok(user) => user,
        Err(e) => return refuse(&format!("User JWT not valid: {e}")),
    };
    if user.expired(cx.now) || user.not_yet_valid(cx.now) {
        return refuse("User JWT no longer valid");
    }
    let mut types = user.nats.allowed_connection_types.clone();
    if !connection_type_allowed(&mut types, cx.connection_type) {
        return refuse("Connection type not allowed");
    }
    let issuer = match user.nats.issuer_account.as_str() {
        "" => user.iss.as_str(),
        account => account,
    };
    if !op.pinned.is_empty() && !op.pinned.contains(issuer) {
        return refuse(&format!(
            "Account {issuer} not listed as operator pinned account"
        ));
    }
    let Some(account) = op.account(issuer) else {
        return refuse(if op.accounts.contains_key(issuer) {
            "Account JWT lookup error: account validation failed"
        } else {
            "Account JWT lookup error: account missing"
        });
    };
    let claims = &account.claims;
    *found = Some(claims.sub.clone());
    if !op.is_trusted(&claims.iss) {
        return refuse("Account JWT not signed by trusted operator");
    }
    let scope = if user.iss == claims.sub {
        None
    } else {
        match claims.nats.signing_key(&user.iss) {
            None => return refuse("User JWT issuer is not known"),
            Some(SigningKey::Plain(_)) => None,
            Some(SigningKey::Scoped { template, .. }) => Some(template),
        }
    };
    if claims.expired(cx.now) {
        return refuse("Account JWT has expired");
    }
    if scope.is_some() && !has_empty_permissions(&user.nats) {
        return refuse("User JWT is not valid: scoped users require no permissions or limits set");
    }
    let Some(grant) = Grant::of(&user, Some(claims), scope.map(|t| t.as_ref())) else {
        return refuse("User JWT generated invalid permissions");
    };
    let bearer = grant.bearer;
    if bearer && claims.nats.limits.disallow_bearer {
        return refuse("Account does not allow bearer token");
    }
    if !bearer {
        let Some(sig) = creds.sig.as_deref().filter(|s| !s.is_empty()) else {
            return refuse("Signature missing");
        };
        if !verify_signature(&user.sub, sig, creds.nonce.as_deref()) {
            return refuse("Signature not verified");
        }
    }
    if claims.nats.user_revoked(&user.sub, user.iat) {
        return refuse("User authentication revoked");
    }
    if !src_allowed(&user.nats.src, cx.ip) {
        error!(
            "{} - Bad src Ip {}",
            cx.desc,
            cx.ip.map(|ip| ip.to_string()).unwrap_or_default()
        );
        return None;
    }
    let Some(window) = within_times(&user.nats, cx.now) else {
        error!("{} - Outside connect times", cx.desc);
        return None;
    };
    debug!(
        "{} - Authenticated JWT: Client {:?} (claim-name: {:?}) signed with {:?} by Account {:?} \
         (claim-name: {:?}) signed with {:?}",
        cx.desc, user.sub, user.name, user.iss, claims.sub, claims.name, claims.iss
    );
    Some(Authorized {
        user: Some(user.sub.clone()),
        permissions: grant.permissions.map(Arc::new),
        account: claims.sub.clone(),
        log_name: Some(match claims.name.as_str() {
            "" => format!("jwt:{}", user.sub),
            name => format!("{name}/jwt:{}", user.sub),
        }),
        limits: grant.limits,
        jwt: Some(Arc::new(JwtIdentity {
            jwt: token.to_string(),
            issuer_key: user.iss.clone(),
            name_tag: claims.name.clone(),
        })),
        expires_in: match (user.valid_for(cx.now), window) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    })
}

/// What a user JWT grants: its permissions and limits (or those of the scoped signing key's
/// template that signed it), with its account's default permissions and limits.
pub(super) struct Grant {
    /// Permissions in force; `None` for everything.
    pub permissions: Option<Permissions>,
    /// The user's limits together with the account's (the smaller wins).
    pub limits: Limits,
    /// The JWT is the whole credential.
    pub bearer: bool,
}

impl Grant {
    /// What `user` gets in the account of `account` (none in configuration mode), through
    /// the scoped signing key's `template` when one signed it.
    /// `None` when the template expands to an invalid subject in a deny list.
    pub fn of(
        user: &UserClaims,
        account: Option<&jwt::AccountClaims>,
        template: Option<&jwt::ScopeTemplate>,
    ) -> Option<Grant> {
        let expanded;
        let (mut perms, limits, bearer) = match template {
            Some(t) => {
                expanded = match account {
                    Some(account) => super::template::expand(&t.permissions, user, account)?,
                    None => t.permissions.clone(),
                };
                (&expanded, t.limits, t.bearer_token)
            }
            None => (
                &user.nats.permissions,
                user.nats.limits,
                user.nats.bearer_token,
            ),
        };
        let none = jwt::AccountLimits::default();
        let account_limits = account.map_or(&none, |a| &a.nats.limits);
        if let Some(account) = account.filter(|_| perms == &jwt::Permissions::default()) {
            perms = &account.nats.default_permissions;
        }
        let (payload, subs, conn) = match account {
            Some(_) => (
                min_limit(limits.payload, account_limits.nats.payload),
                min_limit(limits.subs, account_limits.nats.subs),
                account_limits.conn,
            ),
            None => (limits.payload, limits.subs, jwt::NO_LIMIT),
        };
        Some(Grant {
            permissions: permissions_of(perms),
            limits: Limits {
                payload,
                subs,
                conn,
            },
            bearer,
        })
    }
}

/// Whether the user may connect now by its `times` windows (`"HH:MM:SS"` start and end), and
/// for how many seconds more; `Some(None)` without windows. Windows are read in the
/// `times_location` zone (UTC, tern's local time, when unset); an unknown zone refuses. As in
/// nats-server (`validateTimes`), a window whose end is before its start runs from its start
/// today to its end tomorrow.
pub(super) fn within_times(user: &jwt::User, now: i64) -> Option<Option<i64>> {
    if user.times.is_empty() {
        return Some(None);
    }
    let offset = match user.times_location.as_str() {
        "" | "UTC" | "Local" => 0,
        zone => zone_offset(zone, now)?,
    };
    let day = (now + offset).rem_euclid(86_400);
    user.times.iter().find_map(|range| {
        let (start, end) = (seconds_of_day(&range.start)?, seconds_of_day(&range.end)?);
        if start > end {
            (start < day).then_some(Some(end + 86_400 - day))
        } else {
            (start < day && day < end).then_some(Some(end - day))
        }
    })
}

/// The offset from UTC, in seconds, of the IANA time zone `zone` at `now`, read from the
/// system's tz database; `None` when there is no such zone (the user is refused, as
/// nats-server refuses it when `time.LoadLocation` fails). Names that would leave the database
/// directory are refused as Go refuses them.
fn zone_offset(zone: &str, now: i64) -> Option<i64> {
    if zone.starts_with('/') || zone.starts_with('\\') || zone.contains("..") {
        return None;
    }
    let path = std::path::Path::new("/usr/share/zoneinfo").join(zone);
    let bytes = std::fs::read(path).ok()?;
    let tz = tz::TimeZone::from_tz_data(&bytes).ok()?;
    let local = tz.find_local_time_type(now).ok()?;
    Some(i64::from(local.ut_offset()))
}

/// `"HH:MM:SS"` as seconds after midnight.
fn seconds_of_day(text: &str) -> Option<i64> {
    let mut parts = text.split(':');
    let mut field = |max: i64| {
        let part = parts.next()?;
        let n: i64 = part.parse().ok()?;
        (part.len() == 2 && (0..max).contains(&n)).then_some(n)
    };
    let (h, m, s) = (field(24)?, field(60)?, field(60)?);
    parts.next().is_none().then_some(h * 3600 + m * 60 + s)
}

/// Whether `creds` carry a user JWT that its account now revokes (a reload or account update
/// then closes the client with `User Authentication Revoked`, not a plain violation).
pub fn revoked(op: &OperatorOptions, creds: &Credentials) -> bool {
    let Some(token) = creds.jwt.as_deref() else {
        return false;
    };
    let Ok(user) = jwt::decode::<jwt::User>(token, jwt::Kind::User) else {
        return false;
    };
    let issuer = match user.nats.issuer_account.as_str() {
        "" => user.iss.as_str(),
        account => account,
    };
    op.account(issuer)
        .is_some_and(|a| a.claims.nats.user_revoked(&user.sub, user.iat))
}

/// nats-jwt's `HasEmptyPermissions`: a user signed by a scoped key may carry no permissions
/// and no limits of its own (not even the `-1` "no limit" ones).
pub(super) fn has_empty_permissions(user: &jwt::User) -> bool {
    user.permissions == jwt::Permissions::default()
        && user.limits == jwt::NatsLimits::default()
        && user.src.is_empty()
        && user.times.is_empty()
        && user.times_location.is_empty()
        && !user.bearer_token
        && user.allowed_connection_types.is_empty()
}

/// nats-server's `minLimit` of a user's and its account's limits: the smaller, where `-1`
/// is unlimited.
fn min_limit(user: i64, account: i64) -> i64 {
    match (user, account) {
        (jwt::NO_LIMIT, a) => a,
        (u, jwt::NO_LIMIT) => u,
        (u, a) => u.min(a),
    }
}

/// Whether `kind` is in the user's `allowed_connection_types` (empty: all). Unknown types are
/// dropped first; a list of only unknown types admits nobody.
pub(super) fn connection_type_allowed(types: &mut Vec<String>, kind: &str) -> bool {
    if types.is_empty() {
        return true;
    }
    types.retain(|t| CONNECTION_TYPES.contains(&t.to_ascii_uppercase().as_str()));
    types.iter().any(|t| t.eq_ignore_ascii_case(kind))
}

/// Whether `ip` is in one of the CIDRs (empty: anywhere). A malformed CIDR refuses.
fn src_allowed(cidrs: &[String], ip: Option<IpAddr>) -> bool {
    if cidrs.is_empty() {
        return true;
    }
    let Some(ip) = ip else {
        return false;
    };
    for cidr in cidrs {
        let Some((net, bits)) = parse_cidr(cidr) else {
            return false;
        };
        if in_network(ip, net, bits) {
            return true;
        }
    }
    false
}

fn parse_cidr(text: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = text.trim().split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    let ip = match (ip, net) {
        (IpAddr::V6(v6), IpAddr::V4(_)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => return false,
        },
        _ => ip,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// A JWT's permissions as the engine's (nats-server's `buildInternalNkeyUser`): a side with
/// neither allow nor deny is unrestricted; `resp` allows responses and, as in the
/// configuration file, turns off the blanket publish allow.
fn permissions_of(jwt: &jwt::Permissions) -> Option<Permissions> {
    let side = |p: &jwt::Permission| {
        (!p.allow.is_empty() || !p.deny.is_empty()).then(|| SubjectPermission {
            allow: (!p.allow.is_empty()).then(|| entries(&p.allow)),
            deny: entries(&p.deny),
        })
    };
    let mut perms = Permissions {
        publish: side(&jwt.publish),
        subscribe: side(&jwt.subscribe),
        response: jwt.resp.map(|r| ResponsePermission {
            max: if r.max > 0 {
                u32::try_from(r.max).unwrap_or(u32::MAX)
            } else {
                permissions::DEFAULT_RESPONSE_MAX
            },
            expires: if r.ttl > 0 {
                std::time::Duration::from_nanos(r.ttl as u64)
            } else {
                permissions::DEFAULT_RESPONSE_EXPIRES
            },
        }),
    };
    if perms == Permissions::default() {
        return None;
    }
    if perms.response.is_some() {
        let publish = perms.publish.get_or_insert_with(SubjectPermission::default);
        publish.allow.get_or_insert_with(Vec::new);
    }
    Some(perms)
}

fn entries(subjects: &[String]) -> Vec<permissions::Entry> {
    subjects
        .iter()
        .filter_map(|s| permissions::Entry::parse(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let ip = |s: &str| Some(s.parse().unwrap());
        let list = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(src_allowed(&[], None));
        assert!(src_allowed(&list(&["127.0.0.0/8"]), ip("127.1.2.3")));
        assert!(!src_allowed(&list(&["10.0.0.0/8"]), ip("127.0.0.1")));
        assert!(src_allowed(
            &list(&["10.0.0.0/8", "127.0.0.1/32"]),
            ip("127.0.0.1")
        ));
        assert!(src_allowed(
            &list(&["127.0.0.1/32"]),
            ip("::ffff:127.0.0.1")
        ));
        assert!(src_allowed(&list(&["::1/128"]), ip("::1")));
        assert!(src_allowed(&list(&["0.0.0.0/0"]), ip("8.8.8.8")));
        assert!(!src_allowed(&list(&["nonsense"]), ip("127.0.0.1")));
    }

    #[test]
    fn time_windows() {
        let user = |times: &[(&str, &str)], location: &str| jwt::User {
            times: times
                .iter()
                .map(|(s, e)| jwt::TimeRange {
                    start: s.to_string(),
                    end: e.to_string(),
                })
                .collect(),
            times_location: location.to_string(),
            ..jwt::User::default()
        };
        let at = |h: i64, m: i64| 86_400 * 20_000 + h * 3600 + m * 60;
        assert_eq!(within_times(&user(&[], ""), at(3, 0)), Some(None));
        let office = user(&[("09:00:00", "17:00:00")], "");
        assert_eq!(within_times(&office, at(16, 0)), Some(Some(3600)));
        assert_eq!(within_times(&office, at(8, 0)), None);
        assert_eq!(within_times(&office, at(17, 30)), None);
        let night = user(&[("22:00:00", "02:00:00")], "UTC");
        assert_eq!(within_times(&night, at(23, 0)), Some(Some(3 * 3600)));
        // As nats-server: the window is from its start today, so 01:00 is outside.
        assert_eq!(within_times(&night, at(1, 0)), None);
        assert_eq!(
            within_times(&user(&[("9:00", "17:00:00")], ""), at(12, 0)),
            None
        );
        // Tokyo is nine hours ahead: noon UTC is 21:00 there.
        let tokyo = user(&[("20:00:00", "22:00:00")], "Asia/Tokyo");
        assert_eq!(within_times(&tokyo, at(12, 0)), Some(Some(3600)));
        assert_eq!(within_times(&tokyo, at(20, 30)), None);
        for nowhere in ["Nowhere/Atlantis", "../../etc/passwd", "/etc/localtime"] {
            assert_eq!(
                within_times(&user(&[("00:00:01", "23:59:59")], nowhere), at(12, 0)),
                None
            );
        }
    }

    #[test]
    fn limits_take_the_smaller() {
        assert_eq!(min_limit(-1, -1), -1);
        assert_eq!(min_limit(-1, 5), 5);
        assert_eq!(min_limit(7, -1), 7);
        assert_eq!(min_limit(7, 5), 5);
        assert_eq!(min_limit(0, 5), 0);
    }

    #[test]
    fn connection_types() {
        let mut none = vec![];
        assert!(connection_type_allowed(&mut none, "STANDARD"));
        let mut ws = vec!["WEBSOCKET".to_string()];
        assert!(!connection_type_allowed(&mut ws, "STANDARD"));
        let mut both = vec!["mqtt".to_string(), "STANDARD".to_string()];
        assert!(connection_type_allowed(&mut both, "STANDARD"));
        let mut unknown = vec!["CARRIER_PIGEON".to_string()];
        assert!(!connection_type_allowed(&mut unknown, "STANDARD"));
    }

    #[test]
    fn jwt_permissions() {
        let none = jwt::Permissions::default();
        assert_eq!(permissions_of(&none), None);
        let resp = jwt::Permissions {
            resp: Some(jwt::ResponsePermission { max: 0, ttl: 0 }),
            ..jwt::Permissions::default()
        };
        let perms = permissions_of(&resp).unwrap();
        assert_eq!(perms.publish.unwrap().allow, Some(vec![]));
        assert_eq!(perms.response.unwrap(), ResponsePermission::default());
    }
}
