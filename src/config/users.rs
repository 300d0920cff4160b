//! The blocks that say who may connect and what they may do: users (password, nkey,
//! permissions, allowed connection types), `permissions` with `allow_responses`, and `tls`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::conf::{ConfError, Entry, Kind, Value};
use super::options::{
    bad, boolean, ignored, int, parse_duration, seconds, string, unknown_field, TlsOptions, User,
};
use crate::engine::permissions::{self, Permissions, ResponsePermission, SubjectPermission};

/// The connection types nats-server knows (`jwt.ConnectionType*`).
pub const CONNECTION_TYPES: [&str; 7] = [
    "STANDARD",
    "WEBSOCKET",
    "LEAFNODE",
    "LEAFNODE_WS",
    "MQTT",
    "MQTT_WS",
    "IN_PROCESS",
];

pub(super) fn user(v: &Value) -> Result<User, ConfError> {
    let Kind::Map(fields) = &v.kind else {
        return Err(bad(v, "a user"));
    };
    let mut name = None;
    let mut password = None;
    let mut perms = None;
    let mut nkey = None;
    let mut connection_types = Vec::new();
    for entry in fields {
        match entry.key.to_ascii_lowercase().as_str() {
            "user" | "username" => name = Some(string(&entry.value)?),
            "nkey" => {
                let key = string(&entry.value)?;
                // nats-server accepts only user keys here (`nkeys.IsValidPublicUserKey`).
                if !key.starts_with('U') || nkeys::KeyPair::from_public_key(&key).is_err() {
                    return Err(ConfError {
                        pos: entry.value.pos.clone(),
                        message: "Not a valid public nkey for a user".into(),
                    });
                }
                nkey = Some(key);
            }
            "password" | "pass" => password = Some(string(&entry.value)?),
            "permissions" | "permission" => {
                perms = Some(Arc::new(permissions_block(&entry.value)?))
            }
            "allowed_connection_types" => {
                let v = &entry.value;
                let types: Vec<String> = match &v.kind {
                    Kind::Array(items) => items.iter().map(string).collect::<Result<_, _>>()?,
                    _ => vec![string(v)?],
                };
                let types: Vec<String> = types.iter().map(|t| t.to_ascii_uppercase()).collect();
                let unknown: Vec<String> = types
                    .iter()
                    .filter(|t| !CONNECTION_TYPES.contains(&t.as_str()))
                    .map(|t| format!("{t:?}"))
                    .collect();
                if !unknown.is_empty() {
                    // nats-server's words, its list printed as Go prints a []string with %q.
                    return Err(ConfError {
                        pos: entry.pos.clone(),
                        message: format!("invalid connection types [{}]", unknown.join(" ")),
                    });
                }
                connection_types = types;
            }
            _ => return Err(unknown_field(entry)),
        }
    }
    match (name, nkey) {
        (Some(_), Some(_)) => Err(ConfError {
            pos: v.pos.clone(),
            message: "nkey users do not take a user name".into(),
        }),
        (None, Some(nkey)) => Ok(User {
            nkey: Some(nkey),
            permissions: perms,
            allowed_connection_types: connection_types,
            ..Default::default()
        }),
        (Some(name), None) => Ok(User {
            name,
            password: password.unwrap_or_default(),
            permissions: perms,
            allowed_connection_types: connection_types,
            ..Default::default()
        }),
        (None, None) => Err(ConfError {
            pos: v.pos.clone(),
            message: "user entry without a user name".into(),
        }),
    }
}

/// The `tls` block.
pub(super) fn tls_block(v: &Value, warnings: &mut Vec<String>) -> Result<TlsOptions, ConfError> {
    let Kind::Map(fields) = &v.kind else {
        return Err(bad(v, "tls"));
    };
    let mut tls = TlsOptions::default();
    for entry in fields {
        let v = &entry.value;
        match entry.key.to_ascii_lowercase().as_str() {
            "cert_file" => tls.cert_file = Some(PathBuf::from(string(v)?)),
            "key_file" => tls.key_file = Some(PathBuf::from(string(v)?)),
            "ca_file" => tls.ca_file = Some(PathBuf::from(string(v)?)),
            "verify" => tls.verify = boolean(v)?,
            "verify_and_map" => tls.verify_and_map = boolean(v)?,
            "timeout" => tls.timeout = seconds(v)?,
            "handshake_first" | "first" | "immediate" => {
                (tls.handshake_first, tls.handshake_first_fallback) = handshake_first(entry)?
            }
            "min_version" => {
                let version = string(v)?;
                if version != "1.2" && version != "1.3" {
                    return Err(ConfError {
                        pos: v.pos.clone(),
                        message: format!("unknown version: {version}"),
                    });
                }
                tls.min_version = Some(version);
            }
            "cipher_suites" | "curve_preferences" => warnings.push(ignored(
                entry,
                "rustls chooses its own safe cipher suites and curves",
            )),
            "pinned_certs" => {
                tls.pinned_certs = match &v.kind {
                    Kind::Array(items) => items.iter().map(string).collect::<Result<_, _>>()?,
                    _ => vec![string(v)?],
                };
                for pin in &mut tls.pinned_certs {
                    pin.make_ascii_lowercase();
                }
            }
            "insecure" => tls.insecure = boolean(v)?,
            "ocsp_peer"
            | "cert_store"
            | "cert_match"
            | "cert_match_by"
            | "certs"
            | "verify_cert_and_check_known_urls" => {
                return Err(ConfError {
                    pos: entry.pos.clone(),
                    message: format!("tls {:?} is not supported by tern yet", entry.key),
                })
            }
            _ if entry.referenced => {}
            _ => {
                return Err(ConfError {
                    pos: entry.pos.clone(),
                    message: format!("error parsing tls config, unknown field {:?}", entry.key),
                })
            }
        }
    }
    Ok(tls)
}

/// nats-server's fallback delay for `handshake_first: auto`.
pub const HANDSHAKE_FIRST_AUTO_FALLBACK: Duration = Duration::from_millis(50);

/// `handshake_first`: a boolean, `"true"`/`"on"`/`"false"`/`"off"`, `"auto"` (or
/// `"auto_fallback"`) for a 50 ms fallback, or a Go duration for that fallback (`"0s"` is none),
/// with nats-server's errors for anything else.
fn handshake_first(entry: &Entry) -> Result<(bool, Option<Duration>), ConfError> {
    let v = &entry.value;
    let invalid = |what: String| ConfError {
        pos: entry.pos.clone(),
        message: what,
    };
    match &v.kind {
        Kind::Bool(b) => Ok((*b, None)),
        Kind::String(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "on" => Ok((true, None)),
            "false" | "off" => Ok((false, None)),
            "auto" | "auto_fallback" => Ok((true, Some(HANDSHAKE_FIRST_AUTO_FALLBACK))),
            _ => match parse_duration(text) {
                Some(delay) => Ok((true, (!delay.is_zero()).then_some(delay))),
                None => Err(invalid(format!(
                    "field {:?}'s value {text:?} is invalid",
                    entry.key
                ))),
            },
        },
        _ => Err(invalid(format!(
            "field {:?} should be a boolean or a string, got {}",
            entry.key,
            go_type(v)
        ))),
    }
}

/// A value's type as Go's `%T` names what nats-server's parser produced.
pub(super) fn go_type(v: &Value) -> &'static str {
    match v.kind {
        Kind::Bool(_) => "bool",
        Kind::Int(_) => "int64",
        Kind::Float(_) => "float64",
        Kind::String(_) => "string",
        Kind::Map(_) => "map[string]interface {}",
        Kind::Array(_) => "[]interface {}",
    }
}

/// `permissions { publish, subscribe, allow_responses }` (also `pub`/`sub`).
pub(super) fn permissions_block(v: &Value) -> Result<Permissions, ConfError> {
    let Kind::Map(fields) = &v.kind else {
        return Err(bad(v, "permissions"));
    };
    let mut perms = Permissions::default();
    for entry in fields {
        let v = &entry.value;
        match entry.key.to_ascii_lowercase().as_str() {
            "publish" | "pub" => perms.publish = Some(subject_permission(v)?),
            "subscribe" | "sub" => perms.subscribe = Some(subject_permission(v)?),
            "allow_responses" | "allow_response" => perms.response = allow_responses(v)?,
            _ => return Err(unknown_field(entry)),
        }
    }
    // As nats-server does: allowing responses turns off the blanket publish allow, so a
    // responder publishes only to the replies it was sent (and what it is explicitly allowed).
    if perms.response.is_some() {
        let publish = perms.publish.get_or_insert_with(SubjectPermission::default);
        publish.allow.get_or_insert_with(Vec::new);
    }
    Ok(perms)
}

/// `"subject"`, `["a", "b"]` (both allow lists) or `{ allow: ..., deny: ... }`.
pub(super) fn subject_permission(v: &Value) -> Result<SubjectPermission, ConfError> {
    match &v.kind {
        Kind::Map(fields) => {
            let mut perm = SubjectPermission::default();
            for entry in fields {
                match entry.key.to_ascii_lowercase().as_str() {
                    "allow" => perm.allow = Some(subject_list(&entry.value)?),
                    "deny" => perm.deny = subject_list(&entry.value)?,
                    _ => return Err(unknown_field(entry)),
                }
            }
            Ok(perm)
        }
        _ => Ok(SubjectPermission {
            allow: Some(subject_list(v)?),
            deny: Vec::new(),
        }),
    }
}

fn subject_list(v: &Value) -> Result<Vec<permissions::Entry>, ConfError> {
    let one = |v: &Value| {
        let text = string(v)?;
        permissions::Entry::parse(&text).ok_or_else(|| ConfError {
            pos: v.pos.clone(),
            message: format!("invalid subject {text:?} in permissions"),
        })
    };
    match &v.kind {
        Kind::Array(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(v)?]),
    }
}

/// `allow_responses: true` (one response within 2 minutes) or `{ max: N, expires: "1m" }`.
fn allow_responses(v: &Value) -> Result<Option<ResponsePermission>, ConfError> {
    match &v.kind {
        Kind::Bool(false) => Ok(None),
        Kind::Bool(true) => Ok(Some(ResponsePermission::default())),
        Kind::Map(fields) => {
            let mut perm = ResponsePermission::default();
            for entry in fields {
                let v = &entry.value;
                match entry.key.to_ascii_lowercase().as_str() {
                    "max" | "max_msgs" | "max_messages" | "max_responses" => {
                        perm.max = u32::try_from(int(v)?).map_err(|_| bad(v, "max"))?
                    }
                    "expires" | "expiration" | "ttl" => perm.expires = seconds(v)?,
                    _ => return Err(unknown_field(entry)),
                }
            }
            Ok(Some(perm))
        }
        _ => Err(bad(v, "allow_responses")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{error, options};
    use crate::config::Options;
    use std::path::Path;

    #[test]
    fn permissions_in_every_form() {
        let (o, _) = options(
            r#"authorization {
  default_permissions: {publish: {deny: "secret.>"}}
  users = [
    {user: a, password: a, permissions: {pub: "x", sub: ["y", "z.> q"]}}
    {user: b, password: b, permissions: {publish: {allow: ["a.*"], deny: "a.b"}, allow_responses: {max: 3, expires: "5s"}}}
    {user: c, password: c, permissions: {subscribe: {deny: "n"}, allow_responses: true}}
    {user: d, password: d}
  ]
}"#,
        )
        .unwrap();
        let perms = |i: usize| o.users[i].permissions.clone().unwrap();
        let a = perms(0);
        assert!(a.can_publish(b"x") && !a.can_publish(b"y"));
        assert!(a.can_subscribe(b"z.1", Some(b"q")) && !a.can_subscribe(b"z.1", None));
        let b = perms(1);
        assert!(b.can_publish(b"a.c") && !b.can_publish(b"a.b"));
        assert_eq!(
            b.response,
            Some(ResponsePermission {
                max: 3,
                expires: Duration::from_secs(5)
            })
        );
        // allow_responses turns off the blanket publish allow.
        let c = perms(2);
        assert!(!c.can_publish(b"anything"));
        assert_eq!(c.response, Some(ResponsePermission::default()));
        // Users without permissions of their own get the defaults.
        let d = perms(3);
        assert!(d.can_publish(b"x") && !d.can_publish(b"secret.x"));
        assert!(
            error("authorization { users = [{user: a, permissions: {publish: \"a..b\"}}] }")
                .contains("invalid subject")
        );
        assert!(
            error("authorization { users = [{user: a, permissions: {colour: red}}] }")
                .contains("unknown field")
        );
    }

    #[test]
    fn tls_blocks() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let cert = fixtures.join("ec.pem");
        let key = fixtures.join("ec-sec1.key");
        let (o, warnings) = options(&format!(
            "tls {{ cert_file: {cert:?}, key_file: {key:?}, timeout: 0.5, handshake_first: true,\n\
             min_version: \"1.3\", cipher_suites: [\"TLS_AES_128_GCM_SHA256\"] }}",
        ))
        .unwrap();
        let tls = o.tls.clone().unwrap();
        assert_eq!(tls.timeout, Duration::from_millis(500));
        assert!(tls.handshake_first && !tls.verify);
        assert_eq!(tls.min_version.as_deref(), Some("1.3"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        // The auth timeout follows the TLS timeout unless set, as in nats-server.
        assert_eq!(o.auth_timeout(), Duration::from_millis(1500));
        assert_eq!(Options::default().auth_timeout(), Duration::from_secs(2));
        let files = format!("cert_file: {cert:?}, key_file: {key:?}");
        assert!(
            error(&format!("tls {{ {files}, min_version: \"1.1\" }}")).contains("unknown version")
        );
        // handshake_first's forms, as nats-server 2.15.1 reads them.
        let first = |value: &str| {
            options(&format!("tls {{ {files}, handshake_first: {value} }}")).map(|(o, _)| {
                o.tls
                    .map(|t| (t.handshake_first, t.handshake_first_fallback))
            })
        };
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(first("\"300ms\"").unwrap(), Some((true, ms(300))));
        assert_eq!(first("auto").unwrap(), Some((true, ms(50))));
        assert_eq!(first("\"auto_fallback\"").unwrap(), Some((true, ms(50))));
        assert_eq!(first("\"0s\"").unwrap(), Some((true, None)));
        assert_eq!(first("\"ON\"").unwrap(), Some((true, None)));
        assert_eq!(first("\"off\"").unwrap(), Some((false, None)));
        assert_eq!(first("false").unwrap(), Some((false, None)));
        assert!(error(&format!("tls {{ {files}, handshake_first: bogus }}"))
            .ends_with(r#"field "handshake_first"'s value "bogus" is invalid"#));
        assert!(error(&format!("tls {{ {files}, handshake_first: 5 }}"))
            .ends_with(r#"field "handshake_first" should be a boolean or a string, got int64"#));
        let (o, _) = options(&format!("tls {{ {files}, immediate: true }}")).unwrap();
        assert!(o.tls.unwrap().handshake_first);
        assert!(error(&format!("tls {{ {files}, tls_first: true }}")).contains("unknown field"));
        let (o, _) = options(&format!(
            "tls {{ {files}, pinned_certs: [\"AB01\", cd23] }}"
        ))
        .unwrap();
        assert_eq!(o.tls.unwrap().pinned_certs, ["ab01", "cd23"]);
        assert!(error(&format!("tls {{ {files}, ocsp_peer: true }}")).contains("not supported"));
        assert!(error(&format!("tls {{ {files}, colour: red }}"))
            .ends_with("error parsing tls config, unknown field \"colour\""));
    }

    #[test]
    fn allowed_connection_types() {
        let (o, _) = options(
            "authorization { users = [{user: a, password: a, allowed_connection_types: \
             [\"standard\", \"Mqtt\"]}, {user: b, password: b, allowed_connection_types: \
             WEBSOCKET}] }",
        )
        .unwrap();
        assert_eq!(o.users[0].allowed_connection_types, ["STANDARD", "MQTT"]);
        assert!(o.users[0].allows_standard_connections());
        assert!(!o.users[1].allows_standard_connections());
        // nats-server 2.15.1's error, at the key.
        assert_eq!(
            error(
                "authorization { users = [ {user: x, password: x, allowed_connection_types: \
                 [\"BOGUS\", \"STANDARD\", \"nope\"]} ] }"
            ),
            r#"test.conf:1:49: invalid connection types ["BOGUS" "NOPE"]"#
        );
    }

    #[test]
    fn nkey_users() {
        let key = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
        let (o, _) = options(&format!(
            "authorization {{ users = [{{nkey: {key}, permissions: {{publish: x}}}}] }}\nno_auth_user: {key}"
        ))
        .unwrap();
        assert_eq!(o.users[0].nkey.as_deref(), Some(key));
        assert!(o.nonce_required() && o.auth_required());
        assert!(
            error("authorization { users = [{nkey: UBAD}] }").contains("Not a valid public nkey")
        );
        // A seed or an account key is not a user key.
        let account = "ADXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
        assert!(error(&format!(
            "authorization {{ users = [{{nkey: {account}}}] }}"
        ))
        .contains("Not a valid public nkey"));
    }
}
