//! Operators, accounts and users made at test time: fresh nkeys and JWTs signed the way nats-io's
//! tools sign them (header `{"typ":"JWT","alg":"ed25519-nkey"}`, unpadded base64url parts, the
//! issuer's signature over `header.claims`). Written here from the format, not with tern's own
//! decoder, so that nats-server 2.15.1 accepting them checks this helper.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::KeyPair;
use serde_json::{json, Value};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs `claims` (filling `iss`, `jti` and `iat` unless given) with `signer`.
pub fn sign(mut claims: Value, signer: &KeyPair) -> String {
    let map = claims.as_object_mut().expect("claims are an object");
    map.entry("iss").or_insert(json!(signer.public_key()));
    map.entry("iat").or_insert(json!(now()));
    map.entry("jti")
        .or_insert(json!(format!("T{}", fastrand::u64(..))));
    let head = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{head}.{body}");
    let sig = signer.sign(signed.as_bytes()).expect("sign");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Unlimited account limits, as `nsc` writes them.
pub fn open_limits() -> Value {
    json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
           "wildcards": true, "conn": -1, "leaf": -1})
}

/// An operator's JWT, self-signed, naming `system` as its system account.
pub fn operator_jwt(operator: &KeyPair, system: &str) -> String {
    sign(
        json!({"sub": operator.public_key(), "name": "OP",
               "nats": {"system_account": system, "type": "operator", "version": 2}}),
        operator,
    )
}

/// An account JWT signed by `operator`; `extra` is merged into `nats`.
pub fn account_jwt(operator: &KeyPair, account: &KeyPair, name: &str, extra: Value) -> String {
    let mut nats = json!({"limits": open_limits(), "type": "account", "version": 2});
    merge(&mut nats, extra);
    sign(
        json!({"sub": account.public_key(), "name": name, "nats": nats}),
        operator,
    )
}

/// A server configuration trusting `operator` with `system` as system account and a memory
/// resolver preloaded with the system account's JWT and `accounts` (key pair, JWT).
pub fn memory_resolver_config(
    operator: &KeyPair,
    system: &KeyPair,
    accounts: &[(&KeyPair, &str)],
) -> String {
    let sys = system.public_key();
    let mut preload = format!(
        "  {sys}: {}\n",
        account_jwt(operator, system, "SYS", json!({}))
    );
    for (account, jwt) in accounts {
        preload += &format!("  {}: {jwt}\n", account.public_key());
    }
    format!(
        "operator: {}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload {{\n{preload}}}\n",
        operator_jwt(operator, &sys)
    )
}

/// A user JWT for `user` signed by `issuer`; `extra` is merged into `nats`, `claims` into the
/// top level (`exp`, `nbf`, `iat`).
pub fn user_jwt(issuer: &KeyPair, user: &KeyPair, extra: Value, claims: Value) -> String {
    let mut nats = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                          "type": "user", "version": 2});
    merge(&mut nats, extra);
    let mut top = json!({"sub": user.public_key(), "name": "u", "nats": nats});
    merge(&mut top, claims);
    sign(top, issuer)
}

/// A `.creds` file's text, as `nsc` writes it.
pub fn creds(jwt: &str, user: &KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().expect("seed")
    )
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        for (k, v) in extra {
            into.insert(k, v);
        }
    }
}
