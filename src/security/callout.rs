//! Auth callout, as nats-server 2.15.1 runs it (`auth_callout.go`): instead of checking a
//! client's credentials itself, the server sends an authorization request (a JWT it signs
//! with its own key, sealed for the service's xkey when one is configured) on
//! `$SYS.REQ.USER.AUTH` in the callout account, and admits the client with the user JWT the
//! service signs in its response, or refuses it with the service's error.
//!
//! Configuration mode: `authorization { auth_callout { issuer, account, auth_users, xkey } }`;
//! every client but the `auth_users` goes to the service, whose user JWTs are signed by
//! `issuer` and name their account in `aud`. Operator mode: an account JWT with
//! `authorization { auth_users, allowed_accounts, xkey }`; its users (typically a bearer
//! "sentinel" JWT) other than the auth users go to the service, whose user JWTs are signed by
//! this account or one of the `allowed_accounts` (or their signing keys).
//!
//! Pure: [`plan`] says whether a client goes to a service, [`request`] builds what is sent
//! and [`admit`] judges the response; the connection does the sending and the waiting.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::auth::{Authorized, Credentials, Limits};
use super::jwt::{self as user_jwt, Grant};
use crate::config::Options;
use crate::proto::jwt::{self, AuthorizationResponse, Claims, Kind, SigningKey, UserClaims};
use crate::proto::protocol::ConnectOptions;

/// The subject requests are published on, in the callout account.
pub const SUBJECT: &str = "$SYS.REQ.USER.AUTH";

/// The header naming the server's xkey on a sealed request.
pub const XKEY_HEADER: &str = "Nats-Server-Xkey";

/// A callout to make for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The account the request is published in (the service's).
    pub account: String,
    /// The request's `sub`: the configured issuer, or the callout account in operator mode;
    /// also who must sign the admitted users (unless an allowed account does).
    pub issuer: String,
    /// The service's public xkey: the request is sealed for it.
    pub xkey: Option<String>,
    /// Operator mode (the callout is an account JWT's).
    pub operator: bool,
}

/// Whether the client with `creds` goes to a callout service, and to which. In configuration
/// mode every client but the `auth_users` does; in operator mode the users of an account
/// whose JWT enables a callout, but its `auth_users`. `jwt_account` is the account of the
/// client's user JWT (operator mode), `jwt_user` the user's key once its JWT passed.
pub fn plan(
    opts: &Options,
    creds: &Credentials,
    jwt_account: Option<&str>,
    jwt_user: Option<&str>,
) -> Option<Plan> {
    let raw_user = raw_auth_user(creds, jwt_user);
    if opts.operator.enabled() {
        let key = jwt_account?;
        let account = opts.operator.account(key)?;
        let auth = &account.claims.nats.authorization;
        if !auth.enabled() || auth.auth_users.iter().any(|u| u == raw_user) {
            return None;
        }
        return Some(Plan {
            account: key.to_string(),
            issuer: key.to_string(),
            xkey: Some(auth.xkey.clone()).filter(|x| !x.is_empty()),
            operator: true,
        });
    }
    let callout = opts.auth_callout.as_ref()?;
    if callout.auth_users.iter().any(|u| u == raw_user) {
        return None;
    }
    Some(Plan {
        account: callout.account.clone(),
        issuer: callout.issuer.clone(),
        xkey: callout.xkey.clone(),
        operator: false,
    })
}

/// nats-server's `getRawAuthUser`: the nkey, else the user name, else the JWT user's key,
/// else the token.
pub fn raw_auth_user<'a>(creds: &'a Credentials, jwt_user: Option<&'a str>) -> &'a str {
    let given = |s: &'a Option<String>| s.as_deref().filter(|s| !s.is_empty());
    given(&creds.nkey)
        .or_else(|| given(&creds.user))
        .or(jwt_user.filter(|_| given(&creds.jwt).is_some()))
        .or_else(|| given(&creds.token))
        .unwrap_or_default()
}

/// The server as a request names it, and the keys it signs and seals with.
pub struct Server<'a> {
    /// `server_name`.
    pub name: &'a str,
    /// The client listener's host.
    pub host: &'a str,
    /// The server id: its public nkey.
    pub id: &'a str,
    /// The cluster's name.
    pub cluster: Option<&'a str>,
    /// The server's identity key (signs requests).
    pub key: &'a nkeys::KeyPair,
    /// The server's curve key (seals requests, opens responses).
    pub xkey: &'a nkeys::XKey,
}

/// The client as a request describes it.
pub struct Client<'a> {
    /// Its connection id.
    pub cid: u64,
    /// Its address.
    pub host: String,
    /// `nats` or `websocket`.
    pub kind: &'a str,
    /// What CONNECT said.
    pub connect: &'a ConnectOptions,
    /// The nonce sent in INFO.
    pub nonce: Option<&'a str>,
    /// The name and tags of the client's own user JWT, when it passed (operator mode).
    pub jwt_name: Option<(&'a str, &'a [String])>,
    /// Who CONNECT claims to be (nats-server's `getRawAuthUser`).
    pub user: &'a str,
    /// The client's TLS connection, when it connected over TLS.
    pub tls: Option<ClientTls>,
}

/// `client_tls` of a request: the client's TLS version and cipher suite, and its certificates
/// (PEM): the verified chains (leaf first, ending with the trusted root) when the server
/// verified them, else the certificates as presented.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClientTls {
    /// `1.2` or `1.3`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The cipher suite by Go's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cipher: String,
    /// The certificates presented, when not verified.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<String>,
    /// The verified chains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified_chains: Vec<Vec<String>>,
}

/// The request for `client` under `plan`: the payload (the signed JWT, sealed when the plan
/// has an xkey) and the server's xkey for the header of a sealed one. `user_key` is the key
/// the admitted user's JWT must be for; the request expires after `timeout`.
pub fn request(
    plan: &Plan,
    server: &Server,
    client: &Client,
    user_key: &str,
    timeout: Duration,
    now: i64,
) -> Result<(Vec<u8>, Option<String>), String> {
    let mut server_id = json!({"name": server.name, "host": server.host, "id": server.id,
        "version": crate::proto::protocol::NATS_SERVER_VERSION});
    if let Some(cluster) = server.cluster {
        server_id["cluster"] = json!(cluster);
    }
    if plan.xkey.is_some() {
        server_id["xkey"] = json!(server.xkey.public_key());
    }
    let mut info = json!({"host": client.host, "id": client.cid, "kind": "Client",
                          "type": client.kind});
    let optional = |into: &mut Value, key: &str, value: &str| {
        if !value.is_empty() {
            into[key] = json!(value);
        }
    };
    optional(&mut info, "user", client.user);
    optional(&mut info, "name", &client.connect.name);
    if let Some((name, tags)) = client.jwt_name {
        if !tags.is_empty() {
            info["tags"] = json!(tags);
        }
        optional(&mut info, "name_tag", name);
    }
    let c = client.connect;
    let mut connect = json!({"protocol": c.protocol});
    for (key, value) in [
        ("jwt", &c.jwt),
        ("nkey", &c.nkey),
        ("sig", &c.sig),
        ("auth_token", &c.auth_token),
        ("user", &c.user),
        ("pass", &c.pass),
    ] {
        optional(&mut connect, key, value.as_deref().unwrap_or_default());
    }
    optional(&mut connect, "name", &c.name);
    optional(&mut connect, "lang", &c.lang);
    optional(&mut connect, "version", &c.version);
    if c.sig.as_deref().is_some_and(|s| !s.is_empty()) {
        optional(&mut info, "nonce", client.nonce.unwrap_or_default());
    }
    let expires = now + i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX / 2);
    let mut claims = json!({
        "aud": "nats-authorization-request",
        "exp": expires,
        "sub": plan.issuer,
        "nats": {"server_id": server_id, "user_nkey": user_key, "client_info": info,
                 "connect_opts": connect, "type": "authorization_request", "version": 2},
    });
    if let Some(tls) = &client.tls {
        claims["nats"]["client_tls"] = json!(tls);
    }
    let token = jwt::encode(claims, server.key, now);
    match &plan.xkey {
        None => Ok((token.into_bytes(), None)),
        Some(service) => {
            let service = nkeys::XKey::from_public_key(service).map_err(|e| e.to_string())?;
            let sealed = server.xkey.seal(token.as_bytes(), &service).map_err(|e| {
                format!(
                    "Error encrypting auth request claim on account {:?}: {e}",
                    plan.account
                )
            })?;
            Ok((sealed, Some(server.xkey.public_key())))
        }
    }
}

/// What [`admit`] needs besides the response.
pub struct Judge<'a> {
    /// The options in force.
    pub opts: &'a Options,
    /// The callout made.
    pub plan: &'a Plan,
    /// The server.
    pub server: &'a Server<'a>,
    /// The user key the request named.
    pub user_key: &'a str,
    /// The connection's log prefix (for `Outside connect times`).
    pub desc: &'a str,
    /// Unix seconds now.
    pub now: i64,
    /// Whether an account of this name exists (configuration mode).
    pub account_exists: &'a dyn Fn(&str) -> bool,
    /// How the client is named in the log when the user JWT has no name (`user:alice`).
    pub fallback_label: Option<String>,
}

/// Judges the service's response `body`: the admitted user, or nats-server's reason for
/// refusing (logged as a warning and the client's `Authorization Violation`).
pub fn admit(j: &Judge, body: &[u8]) -> Result<Authorized, String> {
    let account = j.plan.account.as_str();
    let user = response_user(j, body).map_err(|e| title_case(&e))?;
    if user.sub != j.user_key {
        return Err(format!(
            "Expected authorized user of {:?} but got {:?} on account {account:?}",
            j.user_key, user.sub
        ));
    }
    // nats-server checks the connect times and connection types before the issuer.
    let mut types = user.nats.allowed_connection_types.clone();
    let window = match user_jwt::within_times(&user.nats, j.now) {
        Some(window) => window,
        None => {
            tracing::error!("{} - Outside connect times", j.desc);
            return Err(format!(
                "Authorized user on account {account:?} outside of valid connect times"
            ));
        }
    };
    // Types this server does not know are dropped; none left but some given refuses.
    if !types.is_empty() && !user_jwt::connection_type_allowed(&mut types, "") && types.is_empty() {
        return Err(format!(
            "Authorized user on account {account:?} using invalid connection type"
        ));
    }
    let issuer_account = issuer_account(j, &user).map_err(|e| title_case(&e))?;
    let placement = if j.plan.operator {
        issuer_account
    } else {
        user.aud.clone()
    };
    let grant = if j.plan.operator {
        let Some(target) = j.opts.operator.account(&placement) else {
            return Err(format!(
                "No valid account {placement:?} for auth callout response on account \
                 {account:?}: account missing"
            ));
        };
        let claims = &target.claims;
        let template = if user.iss == claims.sub {
            None
        } else {
            match claims.nats.signing_key(&user.iss) {
                None => return Err(format!("User JWT issuer {:?} is not known", user.iss)),
                Some(SigningKey::Plain(_)) => None,
                Some(SigningKey::Scoped { template, .. }) => {
                    if !user_jwt::has_empty_permissions(&user.nats) {
                        return Err("User JWT is not valid: scoped users require no \
                                    permissions or limits set"
                            .into());
                    }
                    Some(template.as_ref())
                }
            }
        };
        Grant::of(&user, Some(claims), template).ok_or(
            "User JWT generated invalid permissions: generated invalid subject".to_string(),
        )?
    } else {
        if !(j.account_exists)(&placement) {
            return Err(format!(
                "No valid account {placement:?} for auth callout response on account \
                 {account:?}: account missing"
            ));
        }
        Grant::of(&user, None, None).ok_or("User JWT generated invalid permissions".to_string())?
    };
    let name_tag = if j.plan.operator {
        j.opts
            .operator
            .account(&placement)
            .map(|a| a.claims.name.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let label = match user.name.as_str() {
        "" => j.fallback_label.clone(),
        name => Some(format!("user:{name}")),
    };
    let mut authorized = Authorized {
        user: Some(if user.name.is_empty() {
            user.sub.clone()
        } else {
            user.name.clone()
        }),
        permissions: grant.permissions.map(Arc::new),
        account: placement.clone(),
        log_name: label.map(|l| match name_tag.as_str() {
            "" => l,
            tag => format!("{tag}/{l}"),
        }),
        limits: Limits {
            payload: grant.limits.payload,
            subs: grant.limits.subs,
            conn: grant.limits.conn,
        },
        jwt: None,
        expires_in: match (user.valid_for(j.now), window) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    };
    if placement == j.plan.account {
        // A user left in the callout account may not ask for more users.
        authorized.permissions = Some(Arc::new(deny_publish(
            authorized.permissions.as_deref(),
            SUBJECT,
        )));
    }
    Ok(authorized)
}

/// The response decoded, opened and checked (nats-server's `decodeResponse`); the user
/// claims it carries.
fn response_user(j: &Judge, body: &[u8]) -> Result<UserClaims, String> {
    let account = j.plan.account.as_str();
    if body.is_empty() {
        return Err(format!(
            "auth callout violation: {:?} on account {account:?}",
            "no reason supplied"
        ));
    }
    let mut body = body.to_vec();
    let mut encrypted = false;
    if let Some(service) = &j.plan.xkey {
        if !body.starts_with(b"eyJ") {
            let opened = nkeys::XKey::from_public_key(service)
                .and_then(|service| j.server.xkey.open(&body, &service))
                .map_err(|e| {
                    format!("error decrypting auth callout response on account {account:?}: {e}")
                })?;
            body = opened;
            encrypted = true;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let response: Claims<AuthorizationResponse> =
        jwt::decode(&text, Kind::Other).map_err(|e| e.to_string())?;
    if let Some(issue) = response_issues(&response).into_iter().next() {
        return Err(format!(
            "authorization response had validation errors: {issue}"
        ));
    }
    if response.sub != j.user_key {
        return Err(
            "auth callout violation: auth callout response is not for expected user".into(),
        );
    }
    if response.aud != j.server.id {
        return Err("auth callout violation: auth callout response is not for server".into());
    }
    if !response.nats.error.is_empty() {
        return Err(format!(
            "auth callout service returned an error: {}",
            response.nats.error
        ));
    }
    let signer = match response.nats.issuer_account.as_str() {
        "" => response.iss.clone(),
        account => account.to_string(),
    };
    if j.plan.operator && !encrypted && signer != account {
        let known = j
            .opts
            .operator
            .account(account)
            .is_some_and(|a| a.claims.nats.signing_key(&signer).is_some());
        if !known {
            return Err("auth callout signing key is unknown".into());
        }
    }
    let user: UserClaims =
        jwt::decode(&response.nats.jwt, Kind::User).map_err(|e| e.to_string())?;
    if user.expired(j.now) {
        return Err("Error validating user JWT: claim is expired".into());
    }
    if user.not_yet_valid(j.now) {
        return Err("Error validating user JWT: claim is not yet valid".into());
    }
    Ok(user)
}

/// nats-jwt's `AuthorizationResponseClaims.Validate`, in its words.
fn response_issues(response: &Claims<AuthorizationResponse>) -> Vec<String> {
    let key =
        |k: &str, prefix: char| k.starts_with(prefix) && nkeys::KeyPair::from_public_key(k).is_ok();
    let r = &response.nats;
    let mut issues = Vec::new();
    if !key(&response.sub, 'U') {
        issues.push("Subject must be a user public key".to_string());
    }
    if !key(&response.aud, 'N') {
        issues.push("Audience must be a server public key".to_string());
    }
    if r.error.is_empty() && r.jwt.is_empty() {
        issues.push("Error or Jwt is required".to_string());
    }
    if !r.error.is_empty() && !r.jwt.is_empty() {
        issues.push("Only Error or Jwt can be set".to_string());
    }
    if !r.issuer_account.is_empty() && !key(&r.issuer_account, 'A') {
        issues.push("issuer_account is not an account public key".to_string());
    }
    issues
}

/// The account the user JWT was issued for (nats-server's `getIssuerAccount`).
fn issuer_account(j: &Judge, user: &UserClaims) -> Result<String, String> {
    let account = j.plan.account.as_str();
    let mut issuer = user.iss.clone();
    if !user.nats.issuer_account.is_empty() {
        if !j.plan.operator {
            return Err(format!(
                "error non operator mode account {account:?}: attempted to use issuer_account"
            ));
        }
        issuer = user.nats.issuer_account.clone();
    }
    if issuer != j.plan.issuer {
        if !j.plan.operator {
            return Err(format!(
                "wrong issuer for auth callout response on account {account:?}, expected {:?} \
                 got {issuer:?}",
                j.plan.issuer
            ));
        }
        let allowed = j
            .opts
            .operator
            .account(account)
            .is_some_and(|a| a.claims.nats.authorization.allows_account(&issuer));
        if !allowed {
            return Err(format!(
                "account {:?} not permitted as valid account option for auth callout for \
                 account {account:?}",
                user.iss
            ));
        }
    }
    Ok(issuer)
}

/// `perms` with `subject` added to the publish deny list (nats-server's
/// `mergeDenyPermissions`).
fn deny_publish(
    perms: Option<&crate::engine::permissions::Permissions>,
    subject: &str,
) -> crate::engine::permissions::Permissions {
    use crate::engine::permissions::{Entry, SubjectPermission};
    let mut perms = perms.cloned().unwrap_or_default();
    let publish = perms.publish.get_or_insert_with(SubjectPermission::default);
    publish.deny.extend(Entry::parse(subject));
    perms
}

/// nats-server capitalises the first letter of the reasons it gets from the response checks.
fn title_case(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
