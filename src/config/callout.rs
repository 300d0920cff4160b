//! `authorization { auth_callout { issuer, account, auth_users, xkey } }`: the configuration
//! mode's auth callout, read as nats-server reads it (`opts.go: parseAuthCallout`). Operator
//! mode configures its callouts in account JWTs instead (`authorization` of the claims).

use super::conf::{ConfError, Entry, Kind};
use super::options::string;

/// The configured auth callout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthCallout {
    /// The account key that signs the service's responses and the users it admits.
    pub issuer: String,
    /// The account the service runs in: requests are published there (`$G` when unset).
    pub account: String,
    /// The service's own users (names or nkeys): they are admitted without a callout.
    pub auth_users: Vec<String>,
    /// The service's public xkey: requests are sealed for it.
    pub xkey: Option<String>,
}

/// The `auth_callout` block of `entry` (`auth_hook` is its other name).
pub(super) fn parse(entry: &Entry) -> Result<AuthCallout, ConfError> {
    let Kind::Map(block) = &entry.value.kind else {
        return Err(ConfError {
            pos: entry.pos.clone(),
            message: format!(
                "Expected authorization callout to be a map/struct, got {}",
                show(&entry.value)
            ),
        });
    };
    let mut callout = AuthCallout::default();
    let at = |e: &Entry, message: String| ConfError {
        pos: e.pos.clone(),
        message,
    };
    for field in block {
        let v = &field.value;
        match field.key.to_ascii_lowercase().as_str() {
            "issuer" => {
                callout.issuer = string(v)?;
                if !is_key(&callout.issuer, 'A') {
                    return Err(at(
                        field,
                        format!(
                            "Expected callout user to be a valid public account nkey, got {:?}",
                            callout.issuer
                        ),
                    ));
                }
            }
            "account" | "acc" => callout.account = string(v)?,
            "auth_users" | "users" => {
                let Kind::Array(users) = &v.kind else {
                    return Err(at(
                        field,
                        format!("Expected auth_users field to be an array, got {}", show(v)),
                    ));
                };
                callout.auth_users = users.iter().map(string).collect::<Result<_, _>>()?;
            }
            "xkey" | "key" => {
                let xkey = string(v)?;
                if nkeys::XKey::from_public_key(&xkey).is_err() {
                    return Err(at(
                        field,
                        format!("Expected callout xkey to be a valid public xkey, got {xkey:?}"),
                    ));
                }
                callout.xkey = Some(xkey);
            }
            _ if field.referenced => {}
            _ => {
                return Err(at(
                    field,
                    format!(
                        "Unknown field {:?} parsing authorization callout",
                        field.key
                    ),
                ))
            }
        }
    }
    if callout.account.is_empty() {
        callout.account = "$G".into();
    }
    // nats-server points at the last field it read.
    let whole = |message: &str| ConfError {
        pos: block.last().map_or(&entry.pos, |e| &e.pos).clone(),
        message: message.into(),
    };
    if callout.issuer.is_empty() {
        return Err(whole(
            "Authorization callouts require an issuer to be specified",
        ));
    }
    if callout.auth_users.is_empty() {
        return Err(whole(
            "Authorization callouts require authorized users to be specified",
        ));
    }
    Ok(callout)
}

/// A value as Go's `%+v` prints the scalars nats-server names in these errors.
fn show(v: &super::conf::Value) -> String {
    match &v.kind {
        Kind::Bool(b) => b.to_string(),
        Kind::Int(n) => n.to_string(),
        Kind::Float(f) => f.to_string(),
        Kind::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Whether `key` is a public nkey with the prefix `kind`.
fn is_key(key: &str, kind: char) -> bool {
    key.starts_with(kind) && nkeys::KeyPair::from_public_key(key).is_ok()
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, options};

    #[test]
    fn read_and_refused_as_nats_server_reads_and_refuses_it() {
        let issuer = nkeys::KeyPair::new_account().public_key();
        let users = "users: [{user: auth, password: pw}], ";
        let (opts, _) = options(&format!(
            "authorization {{ {users}auth_callout {{ issuer: {issuer}, auth_users: [auth] }} }}"
        ))
        .unwrap();
        let callout = opts.auth_callout.unwrap();
        assert_eq!(callout.account, "$G");
        assert_eq!(callout.auth_users, vec!["auth"]);
        // nats-server 2.15.1's words and positions for the same lines.
        let cases = [
            (
                format!("authorization {{ {users}auth_callout {{ issuer: UABC, auth_users: [auth] }} }}"),
                "test.conf:1:68: Expected callout user to be a valid public account nkey, got \"UABC\"",
            ),
            (
                format!("authorization {{ {users}auth_callout {{ auth_users: [auth] }} }}"),
                "test.conf:1:68: Authorization callouts require an issuer to be specified",
            ),
            (
                format!("authorization {{ {users}auth_callout {{ issuer: {issuer} }} }}"),
                "test.conf:1:68: Authorization callouts require authorized users to be specified",
            ),
            (
                format!("authorization {{ {users}auth_callout {{ issuer: {issuer}, auth_users: [auth], xkey: XYZ }} }}"),
                "test.conf:1:154: Expected callout xkey to be a valid public xkey, got \"XYZ\"",
            ),
            (
                format!("authorization {{ {users}auth_callout {{ issuer: {issuer}, auth_users: [auth], foo: 1 }} }}"),
                "test.conf:1:154: Unknown field \"foo\" parsing authorization callout",
            ),
            (
                format!("authorization {{ {users}auth_callout: 5 }}"),
                "test.conf:1:53: Expected authorization callout to be a map/struct, got 5",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(error(&text), want, "{text}");
        }
    }
}
