//! Who may connect: checking CONNECT's credentials against the configured user, users list,
//! token, nkeys, TLS certificate identities and `no_auth_user`, as nats-server does, and which
//! permissions the user gets. No I/O and no clock; the only side effects are reading the OS
//! random generator for nonces and telling tokio that a bcrypt check blocks.
//!
//! Passwords and tokens that look like bcrypt hashes (`$2a$11$...`, nats-server's `isBcrypt`)
//! are checked with bcrypt; plain secrets are compared in constant time.

use std::sync::Arc;

use crate::config::websocket::WebSocketOptions;
use crate::config::{is_bcrypt, Options};
use crate::engine::permissions::Permissions;
use crate::proto::protocol::ConnectOptions;
use crate::security::tls::CertIdentity;

/// The credentials a client presented in CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `user`
    pub user: Option<String>,
    /// `pass`
    pub pass: Option<String>,
    /// `auth_token`
    pub token: Option<String>,
    /// `nkey`: the user's public key.
    pub nkey: Option<String>,
    /// `sig`: the nonce signed with the nkey's seed, base64.
    pub sig: Option<String>,
    /// `jwt`: the user's JWT (operator mode).
    pub jwt: Option<String>,
    /// The nonce this connection was sent in INFO (not from the client).
    pub nonce: Option<String>,
    /// The names in the client's verified TLS certificate (not from CONNECT).
    pub cert: Option<Arc<CertIdentity>>,
    /// The client came in over WebSocket (not from CONNECT): the `websocket` block's
    /// credentials and `no_auth_user` apply when it sets any, and users must allow
    /// `WEBSOCKET` connections.
    pub websocket: bool,
    /// The connection is a leafnode (not from CONNECT): users must allow `LEAFNODE`
    /// (`LEAFNODE_WS` over WebSocket) connections.
    pub leafnode: bool,
}

impl Credentials {
    /// What CONNECT presented (the nonce and certificate are the connection's, added later).
    pub fn from_connect(opts: &ConnectOptions) -> Credentials {
        Credentials {
            user: opts.user.clone(),
            pass: opts.pass.clone(),
            token: opts.auth_token.clone(),
            nkey: opts.nkey.clone(),
            sig: opts.sig.clone(),
            jwt: opts.jwt.clone(),
            nonce: None,
            cert: None,
            websocket: false,
            leafnode: false,
        }
    }

    /// The connection type users' `allowed_connection_types` are checked against.
    pub fn kind(&self) -> &'static str {
        match (self.leafnode, self.websocket) {
            (true, true) => "LEAFNODE_WS",
            (true, false) => "LEAFNODE",
            (false, true) => "WEBSOCKET",
            (false, false) => "STANDARD",
        }
    }

    fn is_empty(&self) -> bool {
        self.user.is_none() && self.pass.is_none() && self.token.is_none() && self.nkey.is_none()
    }
}

/// nats-server's `nonceRawLen`: random bytes per nonce (15 characters in base64).
const NONCE_BYTES: usize = 11;

/// A fresh nonce for INFO: 11 bytes from the system's secure generator, unpadded base64url,
/// as nats-server makes them. `None` when the generator fails: the OS generator failing is not
/// something to limp on with a guessable nonce, so the caller refuses the connection.
pub fn new_nonce() -> Option<String> {
    use ring::rand::SecureRandom;
    nonce_from(|raw| ring::rand::SystemRandom::new().fill(raw).is_ok())
}

/// A nonce from the bytes `fill` writes, unless it reports failure.
fn nonce_from(fill: impl FnOnce(&mut [u8]) -> bool) -> Option<String> {
    let mut raw = [0u8; NONCE_BYTES];
    fill(&mut raw).then(|| base64_url(&raw))
}

/// Who a client turned out to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorized {
    /// The user name (for logs), when the client is a configured user.
    pub user: Option<String>,
    /// What the user may do; `None` for everything.
    pub permissions: Option<Arc<Permissions>>,
    /// The account the user belongs to (empty: the global account).
    pub account: String,
    /// How nats-server names the client in its log prefix once CONNECT is accepted, after the
    /// account (`"$G/user:alice"`, `"$G/nkey:U..."`, `"$G/token"`); `None` without auth.
    pub log_name: Option<String>,
    /// The user's own limits (from its JWT).
    pub limits: Limits,
    /// How a JWT user authenticated (operator mode): shown by `/connz?auth=1`.
    pub jwt: Option<Arc<crate::engine::connection::JwtIdentity>>,
    /// Seconds until the user's credentials expire (its JWT's `exp`, or the end of its
    /// connect-time window): the connection is closed then.
    pub expires_in: Option<i64>,
}

/// A user's own limits, nats-jwt style: `-1` for none (the server's limits still apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload.
    pub payload: i64,
    /// Subscriptions.
    pub subs: i64,
    /// Client connections of the user's account.
    pub conn: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            payload: -1,
            subs: -1,
            conn: -1,
        }
    }
}

/// Whether `creds` get in under `opts`, and as whom. A client with no credentials at all is
/// the `no_auth_user` when one is set; a user name is checked against the users list and the
/// single user; otherwise the token decides.
pub fn authenticate(opts: &Options, creds: &Credentials) -> Option<Authorized> {
    let websocket = websocket_override(opts, creds.websocket);
    if !opts.auth_required() && websocket.is_none() {
        return Some(Authorized::default());
    }
    if let Some(ws) = websocket {
        // The block's own credentials replace the server's for WebSocket clients.
        if let (true, Some(name)) = (creds.is_empty(), &ws.no_auth_user) {
            return opts
                .users
                .iter()
                .find(|u| &u.name == name)
                .filter(|u| u.allows(creds.kind()))
                .map(user_of);
        }
        if let Some(want) = &ws.username {
            let user = creds.user.as_deref().unwrap_or_default();
            let pass = creds.pass.as_deref().unwrap_or_default();
            let ok = constant_time_eq(user, want)
                & check_secret(pass, ws.password.as_deref().unwrap_or_default());
            return ok.then(|| Authorized {
                user: Some(want.clone()),
                log_name: Some(format!("user:{want}")),
                ..Authorized::default()
            });
        }
        if let Some(want) = &ws.token {
            let got = creds.token.as_deref()?;
            return check_secret(got, want).then(|| Authorized {
                log_name: Some("token".into()),
                ..Authorized::default()
            });
        }
    }
    // WebSocket clients are mapped by the `websocket { tls }` block's `verify_and_map`, others
    // by the client port's (nats-server's `tlsMap`).
    let tls = match creds.websocket {
        true => opts.websocket.as_ref().and_then(|w| w.tls.as_ref()),
        false => opts.tls.as_ref(),
    };
    if tls.is_some_and(|t| t.verify_and_map) {
        // The verified certificate names the user: one of its SANs or its subject must be a
        // configured user name. CONNECT's user name is ignored (with nats-server's warning),
        // but its password is still checked against the mapped user's, as nats-server does:
        // a mapped user without a password takes a CONNECT without one.
        let cert = creds.cert.as_ref()?;
        let user = opts
            .users
            .iter()
            .find(|u| u.nkey.is_none() && cert.is(&u.name))
            .filter(|u| u.allows(creds.kind()))?;
        if let Some(named) = &creds.user {
            tracing::warn!("User {named:?} found in connect proto, but user required from cert");
        }
        if !check_secret(creds.pass.as_deref().unwrap_or_default(), &user.password) {
            return None;
        }
        return Some(Authorized {
            user: Some(user.name.clone()),
            permissions: user.permissions.clone(),
            log_name: Some(format!("user:{}", user.name)),
            account: user.account.clone(),
            ..Authorized::default()
        });
    }
    if creds.is_empty() && websocket.is_none() {
        if let Some(name) = &opts.no_auth_user {
            return opts
                .users
                .iter()
                .find(|u| &u.name == name)
                .filter(|u| u.allows(creds.kind()))
                .map(|u| Authorized {
                    user: Some(u.name.clone()),
                    permissions: u.permissions.clone(),
                    log_name: Some(format!("user:{}", u.name)),
                    account: u.account.clone(),
                    ..Authorized::default()
                });
        }
    }
    if let Some(nkey) = &creds.nkey {
        // With nkey users configured, a client that presents an nkey is judged on it alone.
        if opts.nonce_required() {
            let known = opts
                .users
                .iter()
                .find(|u| u.nkey.as_ref() == Some(nkey))
                .filter(|u| u.allows(creds.kind()))?;
            return verify_nonce(nkey, creds).then(|| Authorized {
                user: Some(nkey.clone()),
                permissions: known.permissions.clone(),
                log_name: Some(format!("nkey:{nkey}")),
                account: known.account.clone(),
                ..Authorized::default()
            });
        }
    }
    if let Some(user) = &creds.user {
        let pass = creds.pass.as_deref().unwrap_or_default();
        if let Some(known) = opts.users.iter().find(|u| constant_time_eq(&u.name, user)) {
            // The password is checked first either way, so a refused type costs the same.
            let ok = check_secret(pass, &known.password);
            return (ok && known.allows(creds.kind())).then(|| Authorized {
                user: Some(known.name.clone()),
                permissions: known.permissions.clone(),
                log_name: Some(format!("user:{}", known.name)),
                account: known.account.clone(),
                ..Authorized::default()
            });
        }
        if opts
            .username
            .as_deref()
            .is_some_and(|u| constant_time_eq(u, user))
        {
            let want = opts.password.as_deref().unwrap_or_default();
            return check_secret(pass, want).then(|| Authorized {
                user: Some(user.clone()),
                permissions: None,
                log_name: Some(format!("user:{user}")),
                account: String::new(),
                ..Authorized::default()
            });
        }
    }
    match (&opts.token, &creds.token) {
        (Some(want), Some(got)) => check_secret(got, want).then(|| Authorized {
            log_name: Some("token".into()),
            ..Authorized::default()
        }),
        _ => None,
    }
}

/// The `websocket` block, for a WebSocket client, when it sets credentials of its own.
fn websocket_override(opts: &Options, websocket: bool) -> Option<&WebSocketOptions> {
    opts.websocket
        .as_ref()
        .filter(|w| websocket && w.auth_override())
}

/// Whether a client must send CONNECT with credentials before anything else: auth is
/// required (by the server, or by the `websocket` block for a WebSocket client) and no
/// `no_auth_user` stands in.
pub fn must_authenticate(opts: &Options, websocket: bool) -> bool {
    match websocket_override(opts, websocket) {
        Some(ws) => ws.no_auth_user.is_none(),
        None => opts.auth_required() && opts.no_auth_user.is_none(),
    }
}

/// The `no_auth_user` a client without credentials is bound to, if any.
pub fn no_auth_user(opts: &Options, websocket: bool) -> Option<&str> {
    match websocket_override(opts, websocket) {
        Some(ws) => ws.no_auth_user.as_deref(),
        None => opts.no_auth_user.as_deref(),
    }
}

fn user_of(u: &crate::config::User) -> Authorized {
    Authorized {
        user: Some(u.name.clone()),
        permissions: u.permissions.clone(),
        log_name: Some(format!("user:{}", u.name)),
        account: u.account.clone(),
        ..Authorized::default()
    }
}

/// Whether `creds.sig` is `nkey`'s signature of the connection's nonce. The signature may be
/// base64url (what clients send) or standard base64, as nats-server accepts.
fn verify_nonce(nkey: &str, creds: &Credentials) -> bool {
    let Some(sig) = &creds.sig else {
        return false;
    };
    verify_signature(nkey, sig, creds.nonce.as_deref())
}

/// Whether `sig` (base64url or standard base64) is `nkey`'s signature of `nonce`.
pub fn verify_signature(nkey: &str, sig: &str, nonce: Option<&str>) -> bool {
    let Some(nonce) = nonce else {
        return false;
    };
    let Some(sig) = base64_decode(sig) else {
        return false;
    };
    match nkeys::KeyPair::from_public_key(nkey) {
        Ok(key) => key.verify(nonce.as_bytes(), &sig).is_ok(),
        Err(_) => false,
    }
}

/// Unpadded base64url.
fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a signature as nats-server does: unpadded base64url, else padded standard base64;
/// `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| STANDARD.decode(text))
        .ok()
}

/// Checks a presented secret against the configured one: bcrypt when the configured one is a
/// bcrypt hash, otherwise a constant-time comparison.
pub fn check_secret(presented: &str, configured: &str) -> bool {
    if is_bcrypt(configured) {
        // bcrypt is deliberately slow (tens of milliseconds and up): on a multi-threaded
        // runtime, tell tokio so that the worker's other connections move elsewhere.
        let verify = || bcrypt::verify(presented, configured).unwrap_or(false);
        return match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(verify)
            }
            _ => verify(),
        };
    }
    constant_time_eq(presented, configured)
}

/// Compares secrets in time that depends only on their lengths.
fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A remote's `nkey` (a user seed): its public key and the nonce signed with it (base64url).
pub fn sign_with_seed(seed: &str, nonce: &str) -> Option<(String, String)> {
    let key = nkeys::KeyPair::from_seed(seed.trim()).ok()?;
    let sig = key.sign(nonce.as_bytes()).ok()?;
    use base64::Engine;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    Some((key.public_key(), sig))
}

/// What a dialing server sends a hub that asked for a signed nonce: from a `.creds` file's
/// text, its user JWT and the nonce signed with its seed (base64url, as clients send `sig`).
/// `None` when the text has no JWT or no valid user seed.
pub fn sign_with_creds(creds: &str, nonce: &str) -> Option<(String, String)> {
    let jwt = crate::proto::jwt::jwt_in_text(creds)?.to_string();
    let seed = creds
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("SU") && !line.contains(' '))?;
    let key = nkeys::KeyPair::from_seed(seed).ok()?;
    let sig = key.sign(nonce.as_bytes()).ok()?;
    use base64::Engine;
    Some((
        jwt,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::User;

    /// `bcrypt` of "s3cr3t" at cost 4 (nats-server accepts any cost).
    fn hash() -> String {
        bcrypt::hash("s3cr3t", 4).unwrap()
    }

    #[test]
    fn bcrypt_passwords_and_tokens() {
        let h = hash();
        assert!(is_bcrypt(&h));
        assert!(is_bcrypt("$2a$11$dummyhashvalue"));
        assert!(!is_bcrypt("$2c$11$x"));
        assert!(!is_bcrypt("plain"));
        let opts = Options {
            username: Some("u".into()),
            password: Some(h.clone()),
            ..Default::default()
        };
        assert!(ok(&opts, &creds(Some("u"), Some("s3cr3t"), None)));
        assert!(!ok(&opts, &creds(Some("u"), Some("wrong"), None)));
        // The hash itself is not the password.
        assert!(!ok(&opts, &creds(Some("u"), Some(&h), None)));
        let opts = Options {
            token: Some(h),
            ..Default::default()
        };
        assert!(ok(&opts, &creds(None, None, Some("s3cr3t"))));
        assert!(!ok(&opts, &creds(None, None, Some("s3cr3"))));
        // A malformed hash never lets anyone in.
        let opts = Options {
            token: Some("$2a$11$notavalidhash".into()),
            ..Default::default()
        };
        assert!(!ok(&opts, &creds(None, None, Some("x"))));
    }

    fn ok(opts: &Options, creds: &Credentials) -> bool {
        authenticate(opts, creds).is_some()
    }

    fn creds(user: Option<&str>, pass: Option<&str>, token: Option<&str>) -> Credentials {
        Credentials {
            user: user.map(Into::into),
            pass: pass.map(Into::into),
            token: token.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn certificate_identities_under_verify_and_map() {
        let opts = Options {
            users: vec![User {
                name: "CN=alice,O=tern".into(),
                ..Default::default()
            }],
            tls: Some(crate::config::TlsOptions {
                verify_and_map: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let with = |subject: &[(&str, &str)]| Credentials {
            cert: Some(Arc::new(CertIdentity {
                subject: subject
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                alt_names: vec![],
            })),
            // Ignored under verify_and_map.
            user: Some("CN=alice,O=tern".into()),
            ..Default::default()
        };
        assert!(ok(&opts, &with(&[("O", "tern"), ("CN", "alice")])));
        assert!(!ok(&opts, &with(&[("CN", "bob"), ("O", "tern")])));
        let mut no_cert = with(&[]);
        no_cert.cert = None;
        assert!(!ok(&opts, &no_cert));
        // The mapped user's password (none here) is still checked.
        let mut with_pass = with(&[("CN", "alice"), ("O", "tern")]);
        with_pass.pass = Some("x".into());
        assert!(!ok(&opts, &with_pass));
    }

    #[test]
    fn base64_both_ways() {
        for len in 0..20 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_url(&data)).unwrap(), data);
        }
        assert_eq!(base64_url(b"\xfb\xff"), "-_8");
        assert_eq!(base64_decode("+/8=").unwrap(), b"\xfb\xff");
        assert_eq!(base64_decode("A"), None);
        assert_eq!(base64_decode("a*b"), None);
    }

    #[test]
    fn nonces_are_random_or_refused() {
        let nonce = new_nonce().unwrap();
        assert_eq!(nonce.len(), 15);
        assert_ne!(nonce, new_nonce().unwrap());
        // A generator that fails gives no nonce at all, not a guessable one.
        assert_eq!(nonce_from(|_| false), None);
    }

    #[test]
    fn nkey_signatures() {
        let seed = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
        let key = nkeys::KeyPair::from_seed(seed).unwrap();
        let public = key.public_key();
        let opts = Options {
            users: vec![User {
                nkey: Some(public.clone()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let nonce = new_nonce().unwrap();
        let signed = |sig: Vec<u8>, nonce: &str| Credentials {
            nkey: Some(public.clone()),
            sig: Some(base64_url(&sig)),
            nonce: Some(nonce.to_string()),
            ..Default::default()
        };
        let good = signed(key.sign(nonce.as_bytes()).unwrap(), &nonce);
        assert_eq!(
            authenticate(&opts, &good).unwrap().user,
            Some(public.clone())
        );
        // Another connection's nonce, a bad signature, no signature, an unknown key.
        assert!(!ok(&opts, &signed(key.sign(b"other").unwrap(), &nonce)));
        assert!(!ok(&opts, &signed(vec![0; 64], &nonce)));
        let mut unsigned = good.clone();
        unsigned.sig = None;
        assert!(!ok(&opts, &unsigned));
        let mut stranger = good.clone();
        stranger.nkey = Some(nkeys::KeyPair::new_user().public_key());
        assert!(!ok(&opts, &stranger));
    }

    #[test]
    fn open_server_lets_everyone_in() {
        assert!(ok(&Options::default(), &Credentials::default()));
        assert!(ok(&Options::default(), &creds(Some("x"), Some("y"), None)));
    }

    #[test]
    fn single_user() {
        let opts = Options {
            username: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        };
        assert!(ok(&opts, &creds(Some("u"), Some("p"), None)));
        assert!(!ok(&opts, &creds(Some("u"), Some("bad"), None)));
        assert!(!ok(&opts, &creds(Some("x"), Some("p"), None)));
        assert!(!ok(&opts, &creds(None, None, Some("p"))));
        assert!(!ok(&opts, &Credentials::default()));
    }

    #[test]
    fn token_wins_whatever_else_is_sent() {
        let opts = Options {
            token: Some("tok".into()),
            ..Default::default()
        };
        assert!(ok(&opts, &creds(None, None, Some("tok"))));
        assert!(ok(&opts, &creds(Some("u"), Some("p"), Some("tok"))));
        assert!(!ok(&opts, &creds(Some("u"), Some("p"), None)));
        assert!(!ok(&opts, &creds(None, None, Some("tok2"))));
    }

    #[test]
    fn users_list_and_no_auth_user() {
        let mut opts = Options {
            users: vec![
                User {
                    name: "a".into(),
                    password: "pa".into(),
                    ..Default::default()
                },
                User {
                    name: "b".into(),
                    password: "pb".into(),
                    permissions: Some(Arc::new(Permissions::default())),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert!(ok(&opts, &creds(Some("a"), Some("pa"), None)));
        assert!(ok(&opts, &creds(Some("b"), Some("pb"), None)));
        assert!(!ok(&opts, &creds(Some("a"), Some("pb"), None)));
        assert!(!ok(&opts, &Credentials::default()));
        assert_eq!(
            authenticate(&opts, &creds(Some("a"), Some("pa"), None)),
            Some(Authorized {
                user: Some("a".into()),
                permissions: None,
                log_name: Some("user:a".into()),
                account: String::new(),
                ..Authorized::default()
            })
        );
        opts.no_auth_user = Some("b".into());
        let b = authenticate(&opts, &Credentials::default()).unwrap();
        assert_eq!(b.user.as_deref(), Some("b"));
        assert!(b.permissions.is_some());
        assert!(!ok(&opts, &creds(Some("a"), Some("bad"), None)));
    }
}
