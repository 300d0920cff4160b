//! NATS JWTs (nats-io's `ed25519-nkey` flavour, version 2): decoding, signature checks and the
//! claims of operators, accounts and users, as nats-server reads them. Pure: the caller passes
//! the time.
//!
//! A JWT is `header.claims.signature`, each part unpadded base64url. The header is
//! `{"typ":"JWT","alg":"ed25519-nkey"}`; the signature is the issuer's ed25519 signature of
//! `header.claims` (the two encoded parts and the dot); the claims name the issuer (`iss`) and
//! subject (`sub`) by their public nkeys and carry the kind-specific part under `nats`.
//!
//! Numbers follow nats-jwt: a limit of `-1` is unlimited and a missing one is `0`.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// nats-jwt's `NoLimit`.
pub const NO_LIMIT: i64 = -1;

/// The most bytes a JWT may have here: far beyond any real one (nats-server has no limit,
/// but its control line caps what a client can send); keeps a hostile token cheap to refuse.
pub const MAX_JWT_LEN: usize = 1 << 20;

/// Why a JWT was refused (nats-server logs these at debug level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts, or not JSON where JSON belongs.
    Malformed(&'static str),
    /// `typ`/`alg` of the header are not a v2 NATS JWT's.
    Header(String),
    /// The signature does not verify with the issuer's key, or the issuer is not a key.
    Signature,
    /// The claims are not of the kind asked for (`nats.type`, or the issuer's or subject's
    /// key prefix).
    Kind(String),
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed(what) => f.write_str(what),
            JwtError::Header(what) => write!(f, "invalid JWT header: {what}"),
            JwtError::Signature => f.write_str("claim failed V2 signature verification"),
            JwtError::Kind(what) => f.write_str(what),
        }
    }
}

/// The kinds of claims, by their `nats.type` and the prefix of their subject's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Signed by itself or an operator signing key; subject `O...`.
    Operator,
    /// Signed by an operator key; subject `A...`.
    Account,
    /// Signed by an account key; subject `U...`.
    User,
    /// An activation token for a private export: signed by the exporting account.
    Activation,
    /// An authorization request or response (auth callout).
    Other,
}

impl Kind {
    fn type_name(self) -> &'static str {
        match self {
            Kind::Operator => "operator",
            Kind::Account => "account",
            Kind::User => "user",
            Kind::Activation => "activation",
            Kind::Other => "",
        }
    }
}

/// What every JWT's claims hold, with the kind-specific part `N` under `nats`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Claims<N> {
    /// The claims' id: base32 of the SHA-256 of the claims without it.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// The issuer's public key.
    pub iss: String,
    /// The subject's public key (or, for activations, the importing account).
    pub sub: String,
    /// A display name.
    pub name: String,
    /// The audience (nats-server logs an operator's as its `System`).
    pub aud: String,
    /// Expiry, Unix seconds; 0 never.
    pub exp: i64,
    /// Not valid before, Unix seconds; 0 always valid.
    pub nbf: i64,
    /// The kind-specific part.
    pub nats: N,
}

impl<N> Claims<N> {
    /// Whether the claims have expired at `now` (Unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        self.exp > 0 && now > self.exp
    }

    /// Whether the claims are not valid yet at `now`.
    pub fn not_yet_valid(&self, now: i64) -> bool {
        self.nbf > 0 && now < self.nbf
    }

    /// Seconds until expiry at `now`, if the claims expire.
    pub fn valid_for(&self, now: i64) -> Option<i64> {
        (self.exp > 0).then(|| self.exp - now)
    }
}

/// The kind-independent fields of `nats` that decoding checks.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Generic {
    #[serde(rename = "type")]
    kind: String,
    version: i64,
}

#[derive(Debug, Deserialize)]
struct Header {
    #[serde(default)]
    typ: String,
    #[serde(default)]
    alg: String,
}

/// Decodes `token` as claims of `kind`, checking the header, the key prefixes and the issuer's
/// signature. Times are not checked here (see [`Claims::expired`]).
pub fn decode<N: DeserializeOwned + Default>(
    token: &str,
    kind: Kind,
) -> Result<Claims<N>, JwtError> {
    let token = token.trim();
    if token.len() > MAX_JWT_LEN {
        return Err(JwtError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected 3 chunks"));
    };
    let header: Header = json_part(header)?;
    if !header.typ.eq_ignore_ascii_case("jwt") {
        return Err(JwtError::Header(format!(
            "not supported type {:?}",
            header.typ
        )));
    }
    if header.alg != "ed25519-nkey" {
        return Err(JwtError::Header(format!(
            "unexpected {:?} algorithm",
            header.alg
        )));
    }
    let generic: Claims<Generic> = json_part(body)?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let signed = &token[..header_and_body_len(token)];
    let issuer = nkeys::KeyPair::from_public_key(&generic.iss).map_err(|_| JwtError::Signature)?;
    issuer
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| JwtError::Signature)?;
    check_kind(&generic, kind)?;
    json_part(body)
}

/// The length of `header.claims` in a token of three parts.
fn header_and_body_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn json_part<T: DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed("part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed("part is not the JSON expected"))
}

/// The one-letter prefix of a public nkey, as nats-jwt checks issuers and subjects.
fn prefix(key: &str) -> Option<char> {
    nkeys::KeyPair::from_public_key(key).ok()?;
    key.chars().next()
}

fn check_kind(claims: &Claims<Generic>, kind: Kind) -> Result<(), JwtError> {
    if claims.nats.version > 2 {
        return Err(JwtError::Kind(format!(
            "JWT version {} is newer than this server knows",
            claims.nats.version
        )));
    }
    if kind != Kind::Other && claims.nats.kind != kind.type_name() {
        return Err(JwtError::Kind(format!(
            "not {} claim",
            match kind {
                Kind::Account => "account",
                Kind::User => "user",
                Kind::Operator => "operator",
                _ => "activation",
            }
        )));
    }
    let (issuer, subject) = (prefix(&claims.iss), prefix(&claims.sub));
    let ok = match kind {
        Kind::Operator => issuer == Some('O') && subject == Some('O'),
        Kind::Account => issuer == Some('O') && subject == Some('A'),
        Kind::User => issuer == Some('A') && subject == Some('U'),
        Kind::Activation => issuer == Some('A'),
        Kind::Other => true,
    };
    if ok {
        Ok(())
    } else {
        Err(JwtError::Kind(format!(
            "issuer {:?} and subject {:?} are not keys of a {} claim",
            claims.iss,
            claims.sub,
            kind.type_name()
        )))
    }
}

/// `nats` of an operator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Operator {
    /// Other keys that may sign account JWTs.
    pub signing_keys: Vec<String>,
    /// The system account's public key.
    pub system_account: String,
    /// Accounts must be signed by a signing key, not the operator's identity key.
    pub strict_signing_key_usage: bool,
    /// The account server the operator points at (`resolver: URL`).
    pub account_server_url: String,
}

/// `nats-jwt`'s `NatsLimits`: per-connection (user) or per-account limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct NatsLimits {
    /// Subscriptions.
    pub subs: i64,
    /// Bytes in flight (not enforced by nats-server).
    pub data: i64,
    /// Largest payload.
    pub payload: i64,
}

/// An account's own limits (`nats.limits` of an account JWT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct AccountLimits {
    /// Subscriptions, data and payload, for every connection of the account.
    #[serde(flatten)]
    pub nats: NatsLimits,
    /// Imports allowed.
    pub imports: i64,
    /// Exports allowed.
    pub exports: i64,
    /// Whether exports may have wildcards.
    pub wildcards: bool,
    /// Users may not be bearer tokens.
    pub disallow_bearer: bool,
    /// Client connections.
    pub conn: i64,
    /// Leafnode connections.
    pub leaf: i64,
}

/// `pub`/`sub` of a JWT's permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Permission {
    /// Allowed subjects.
    #[serde(deserialize_with = "null_as_empty")]
    pub allow: Vec<String>,
    /// Denied subjects.
    #[serde(deserialize_with = "null_as_empty")]
    pub deny: Vec<String>,
}

/// `resp`: responses to received requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct ResponsePermission {
    /// Responses per request.
    pub max: i64,
    /// How long a response is allowed, in nanoseconds.
    pub ttl: i64,
}

/// Publish, subscribe and response permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Permissions {
    /// `pub`
    #[serde(rename = "pub")]
    pub publish: Permission,
    /// `sub`
    #[serde(rename = "sub")]
    pub subscribe: Permission,
    /// `resp`
    pub resp: Option<ResponsePermission>,
}

/// A connect-time window, `"HH:MM:SS"` each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TimeRange {
    /// Start of the window.
    pub start: String,
    /// End of the window.
    pub end: String,
}

/// `nats` of a user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct User {
    /// Permissions.
    #[serde(flatten)]
    pub permissions: Permissions,
    /// Limits.
    #[serde(flatten)]
    pub limits: NatsLimits,
    /// Networks the user may connect from (CIDRs); empty for any.
    #[serde(deserialize_with = "list_or_commas")]
    pub src: Vec<String>,
    /// Windows of the day the user may connect in; empty for any time.
    #[serde(deserialize_with = "null_as_empty")]
    pub times: Vec<TimeRange>,
    /// The time zone of `times` (IANA name); empty for the server's local time.
    pub times_location: String,
    /// The JWT alone is the credential: no nonce signature is required.
    pub bearer_token: bool,
    /// The kinds of connection allowed (`STANDARD`, `WEBSOCKET`, ...); empty for all.
    #[serde(deserialize_with = "null_as_empty")]
    pub allowed_connection_types: Vec<String>,
    /// The account, when the issuer is one of its signing keys.
    pub issuer_account: String,
    /// Tags (`key:value` or plain), shown to an auth callout service.
    #[serde(deserialize_with = "null_as_empty")]
    pub tags: Vec<String>,
}

/// A signing key of an account: a plain key, or a scoped one whose template replaces the
/// permissions and limits of the users it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// Signs users with their own permissions.
    Plain(String),
    /// `{"kind":"user_scope","key":..,"role":..,"template":{..}}`.
    Scoped {
        /// The key.
        key: String,
        /// The template's permissions and limits.
        template: Box<ScopeTemplate>,
    },
}

impl SigningKey {
    /// The public key.
    pub fn key(&self) -> &str {
        match self {
            SigningKey::Plain(key) | SigningKey::Scoped { key, .. } => key,
        }
    }
}

/// What a scoped signing key gives every user it signs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ScopeTemplate {
    /// Permissions (may hold `{{name()}}`-style templates).
    #[serde(flatten)]
    pub permissions: Permissions,
    /// Limits.
    #[serde(flatten)]
    pub limits: NatsLimits,
    /// As for users.
    pub bearer_token: bool,
    /// As for users.
    #[serde(deserialize_with = "null_as_empty")]
    pub allowed_connection_types: Vec<String>,
}

impl<'de> Deserialize<'de> for SigningKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Scoped {
                #[serde(default)]
                kind: String,
                key: String,
                #[serde(default)]
                template: ScopeTemplate,
            },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Plain(key) => SigningKey::Plain(key),
            Raw::Scoped {
                kind,
                key,
                template,
            } => {
                if kind != "user_scope" {
                    return Err(serde::de::Error::custom(format!(
                        "unknown signing key kind {kind:?}"
                    )));
                }
                SigningKey::Scoped {
                    key,
                    template: Box::new(template),
                }
            }
        })
    }
}

/// An export of an account JWT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Export {
    /// A display name.
    pub name: String,
    /// The exported subject (may have wildcards).
    pub subject: String,
    /// `stream` or `service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Importers need an activation token.
    pub token_req: bool,
    /// Revoked activations: importing account (or `*`) -> issued-before time.
    pub revocations: BTreeMap<String, i64>,
    /// `Singleton`, `Stream` or `Chunked` (services).
    pub response_type: String,
    /// Nanoseconds a responder has (services).
    pub response_threshold: i64,
    /// Which token of the subject names the importing account (`0`: none).
    pub account_token_position: u32,
}

/// An import of an account JWT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Import {
    /// A display name.
    pub name: String,
    /// The subject in the exporting account.
    pub subject: String,
    /// The exporting account's public key.
    pub account: String,
    /// An activation token, for private exports.
    pub token: String,
    /// Deprecated: where the import lands (streams: a prefix; services: the local subject).
    pub to: String,
    /// Where the import lands in this account.
    pub local_subject: String,
    /// `stream` or `service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Share the requestor's connection info with the service.
    pub share: bool,
}

/// One destination of a JWT mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MappingDestination {
    /// The destination subject (may hold mapping functions).
    pub subject: String,
    /// Percent of the traffic.
    pub weight: u8,
    /// Only in this cluster.
    pub cluster: String,
}

/// `nats` of an account.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Account {
    /// Limits.
    pub limits: AccountLimits,
    /// Keys that may sign the account's users.
    #[serde(deserialize_with = "null_as_empty")]
    pub signing_keys: Vec<SigningKey>,
    /// Revoked users: user key (or `*`) -> issued-before time.
    pub revocations: BTreeMap<String, i64>,
    /// Permissions of users that bring none.
    pub default_permissions: Permissions,
    /// Exports.
    #[serde(deserialize_with = "null_as_empty")]
    pub exports: Vec<Export>,
    /// Imports.
    #[serde(deserialize_with = "null_as_empty")]
    pub imports: Vec<Import>,
    /// Subject mappings.
    pub mappings: BTreeMap<String, Vec<MappingDestination>>,
    /// Auth callout: the users of this account that are its service, when set.
    pub authorization: ExternalAuthorization,
    /// Where messages with a sampled W3C `traceparent` are traced (nats-jwt's `MsgTrace`).
    pub trace: Option<MsgTrace>,
    /// Tags (`key:value` or plain).
    #[serde(deserialize_with = "null_as_empty")]
    pub tags: Vec<String>,
}

/// `trace` of an account JWT.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MsgTrace {
    /// The subject trace events are published to.
    pub dest: String,
    /// Percent of the messages traced, 1 to 100 (0, not set: 100).
    pub sampling: i64,
}

impl MsgTrace {
    /// nats-jwt's checks of the block, in its words.
    pub fn issues(&self) -> Vec<String> {
        let mut issues = Vec::new();
        let dest = &self.dest;
        if dest.is_empty() {
            issues.push("the account Trace.Destination subject cannot be empty".to_string());
        } else if dest.contains(' ') {
            issues.push(format!(
                "the account Trace.Destination subject {dest:?} cannot have spaces"
            ));
        }
        // nats-jwt's `HasWildCards`: a wildcard token at the start or end, or `.*.` inside.
        let wildcard = dest.ends_with(".>")
            || dest.contains(".*.")
            || dest.ends_with(".*")
            || dest.starts_with("*.")
            || dest == "*"
            || dest == ">";
        if wildcard {
            issues.push(format!(
                "the account Trace.Destination subject {dest:?} is not a valid publish subject"
            ));
        }
        if !(0..=100).contains(&self.sampling) {
            issues.push(format!(
                "the account Trace.Sampling value '{}' is not valid, should be in the range \
                 [1..100]",
                self.sampling
            ));
        }
        issues
    }
}

/// `authorization` of an account JWT: the account runs an auth callout service, and its
/// users other than `auth_users` are admitted by it (nats-jwt's `ExternalAuthorization`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ExternalAuthorization {
    /// The service's own users (public keys): admitted by their JWT alone.
    #[serde(deserialize_with = "null_as_empty")]
    pub auth_users: Vec<String>,
    /// Accounts the service may place users in besides this one (`*`: any).
    #[serde(deserialize_with = "null_as_empty")]
    pub allowed_accounts: Vec<String>,
    /// The service's public xkey: requests are sealed for it.
    pub xkey: String,
}

impl ExternalAuthorization {
    /// Whether the account runs a callout (nats-jwt's `IsEnabled`: it names auth users).
    pub fn enabled(&self) -> bool {
        !self.auth_users.is_empty()
    }

    /// nats-jwt's checks of the block, in its words.
    pub fn issues(&self) -> Vec<String> {
        let mut issues = Vec::new();
        if !self.allowed_accounts.is_empty() && self.auth_users.is_empty() {
            issues.push(
                "External authorization cannot have accounts without users specified".to_string(),
            );
        }
        for user in &self.auth_users {
            if prefix(user) != Some('U') {
                issues.push(format!("AuthUser {user:?} is not a valid user public key"));
            }
        }
        for account in &self.allowed_accounts {
            if account == "*" {
                if self.allowed_accounts.len() > 1 {
                    issues.push(
                        "AllowedAccounts can only be a list of accounts or \"*\"".to_string(),
                    );
                }
            } else if prefix(account) != Some('A') {
                issues.push(format!(
                    "Account {account:?} is not a valid account public key"
                ));
            }
        }
        if !self.xkey.is_empty() && nkeys::XKey::from_public_key(&self.xkey).is_err() {
            issues.push(format!("XKey {:?} is not a valid public xkey", self.xkey));
        }
        issues
    }

    /// Whether the service may place users in `account` (nats-server's `isAllowedAcount`).
    pub fn allows_account(&self, account: &str) -> bool {
        self.allowed_accounts
            .iter()
            .any(|a| a == "*" || a == account)
    }
}

/// `nats` of an authorization response (auth callout): the user JWT the service signed, or
/// why it refuses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthorizationResponse {
    /// The user's JWT.
    pub jwt: String,
    /// Why the user is refused.
    pub error: String,
    /// The account a signing key signed the response for.
    pub issuer_account: String,
}

impl Account {
    /// The signing key `key` of this account, if it is one.
    pub fn signing_key(&self, key: &str) -> Option<&SigningKey> {
        self.signing_keys.iter().find(|k| k.key() == key)
    }

    /// Whether a user `key` issued at `iat` is revoked (by its own entry or by `*`).
    pub fn user_revoked(&self, key: &str, iat: i64) -> bool {
        [key, "*"]
            .iter()
            .filter_map(|k| self.revocations.get(*k))
            .any(|&before| iat <= before)
    }
}

/// `null` reads as the empty list (Go marshals nil slices as `null` in places).
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A list of strings, or (older JWTs) one string of comma-separated items.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => Vec::new(),
        Some(Raw::List(list)) => list,
        Some(Raw::Text(text)) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Signs `claims` as a NATS JWT with `signer`, filling `iss` with its public key, `iat` with
/// `now` and `jti` as nats-jwt computes it (base32 of the SHA-256 of the claims without it).
pub fn encode(mut claims: serde_json::Value, signer: &nkeys::KeyPair, now: i64) -> String {
    if let Some(map) = claims.as_object_mut() {
        map.insert("iss".into(), signer.public_key().into());
        map.insert("iat".into(), now.into());
        map.remove("jti");
        let digest = ring::digest::digest(&ring::digest::SHA256, claims.to_string().as_bytes());
        let jti = base32(digest.as_ref());
        if let Some(map) = claims.as_object_mut() {
            map.insert("jti".into(), jti.into());
        }
    }
    let head = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{head}.{body}");
    // Signing with a key pair that holds its seed does not fail.
    let sig = signer.sign(signed.as_bytes()).unwrap_or_default();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The claims of `token` as JSON, unchecked (for display: `/accountz`'s `decoded_jwt`).
pub fn claims_json(token: &str) -> Option<serde_json::Value> {
    json_part(token.trim().split('.').nth(1)?).ok()
}

/// RFC 4648 base32 without padding (Go's `base32.StdEncoding.WithPadding(NoPadding)`).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Operator claims.
pub type OperatorClaims = Claims<Operator>;
/// Account claims.
pub type AccountClaims = Claims<Account>;
/// User claims.
pub type UserClaims = Claims<User>;

/// The JWT inside a `.creds` file or a file holding a bare JWT (an operator's): the text
/// between `-----BEGIN ... JWT-----` and the next `------END`, else the first line that looks
/// like a JWT.
pub fn jwt_in_text(text: &str) -> Option<&str> {
    let mut lines = text.lines().map(str::trim);
    let mut fallback = None;
    while let Some(line) = lines.next() {
        if line.starts_with("-----BEGIN") && line.contains("JWT") {
            return lines.find(|l| !l.is_empty());
        }
        if fallback.is_none() && line.starts_with("eyJ") && line.matches('.').count() == 2 {
            fallback = Some(line);
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(header: &str, claims: &serde_json::Value, signer: &nkeys::KeyPair) -> String {
        let head = URL_SAFE_NO_PAD.encode(header);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{head}.{body}");
        let sig = signer.sign(signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

    fn user_claims(account: &nkeys::KeyPair, user: &str) -> serde_json::Value {
        serde_json::json!({
            "jti": "X", "iat": 1, "iss": account.public_key(), "sub": user, "name": "u",
            "nats": {"pub": {"allow": ["a.>"]}, "sub": {"deny": null}, "subs": -1,
                     "payload": 512, "src": "10.0.0.0/8, 127.0.0.1/32", "type": "user",
                     "version": 2}
        })
    }

    #[test]
    fn decodes_and_verifies_a_user() {
        let account = nkeys::KeyPair::new_account();
        let user = nkeys::KeyPair::new_user().public_key();
        let token = encode(HEADER, &user_claims(&account, &user), &account);
        let claims: UserClaims = decode(&token, Kind::User).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.nats.permissions.publish.allow, vec!["a.>"]);
        assert!(claims.nats.permissions.subscribe.deny.is_empty());
        assert_eq!(claims.nats.limits.subs, NO_LIMIT);
        assert_eq!(claims.nats.limits.payload, 512);
        assert_eq!(claims.nats.limits.data, 0);
        assert_eq!(claims.nats.src, vec!["10.0.0.0/8", "127.0.0.1/32"]);
    }

    #[test]
    fn refuses_what_is_not_a_signed_v2_user_jwt() {
        let account = nkeys::KeyPair::new_account();
        let other = nkeys::KeyPair::new_account();
        let user = nkeys::KeyPair::new_user().public_key();
        let claims = user_claims(&account, &user);
        // Signed by another key than the issuer named.
        let forged = encode(HEADER, &claims, &other);
        assert_eq!(
            decode::<User>(&forged, Kind::User).unwrap_err(),
            JwtError::Signature
        );
        // Tampered claims.
        let good = encode(HEADER, &claims, &account);
        let mut parts: Vec<&str> = good.split('.').collect();
        let changed = URL_SAFE_NO_PAD.encode(claims.to_string().replace("512", "513"));
        parts[1] = &changed;
        assert_eq!(
            decode::<User>(&parts.join("."), Kind::User).unwrap_err(),
            JwtError::Signature
        );
        // Old algorithm, wrong type, wrong kind, too few parts, garbage.
        let old = encode(r#"{"typ":"JWT","alg":"ed25519"}"#, &claims, &account);
        assert!(matches!(
            decode::<User>(&old, Kind::User),
            Err(JwtError::Header(_))
        ));
        assert!(matches!(
            decode::<Account>(&good, Kind::Account),
            Err(JwtError::Kind(_))
        ));
        for bad in [
            "",
            "a.b",
            "a.b.c",
            "...",
            "eyJ.eyJ.x",
            &good[..good.len() - 3],
        ] {
            assert!(decode::<User>(bad, Kind::User).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn account_signing_keys_and_revocations() {
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let scoped = nkeys::KeyPair::new_account().public_key();
        let claims = serde_json::json!({
            "iss": operator.public_key(), "sub": account.public_key(), "iat": 5,
            "nats": {"type": "account", "version": 2,
                     "limits": {"subs": 10, "payload": -1, "conn": 2, "leaf": -1},
                     "signing_keys": ["AB", {"kind": "user_scope", "key": scoped,
                        "template": {"pub": {"allow": ["x"]}, "subs": 3}}],
                     "revocations": {"UA": 100, "*": 10}}
        });
        let token = encode(HEADER, &claims, &operator);
        let claims: AccountClaims = decode(&token, Kind::Account).unwrap();
        assert_eq!(claims.nats.limits.nats.subs, 10);
        assert_eq!(claims.nats.limits.conn, 2);
        assert_eq!(
            claims.nats.signing_key("AB"),
            Some(&SigningKey::Plain("AB".into()))
        );
        match claims.nats.signing_key(&scoped) {
            Some(SigningKey::Scoped { template, .. }) => {
                assert_eq!(template.limits.subs, 3);
                assert_eq!(template.permissions.publish.allow, vec!["x"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(claims.nats.user_revoked("UA", 100));
        assert!(!claims.nats.user_revoked("UA", 101));
        assert!(claims.nats.user_revoked("UB", 10));
        assert!(!claims.nats.user_revoked("UB", 11));
    }

    #[test]
    fn encodes_what_decode_reads() {
        let server = nkeys::KeyPair::new_server();
        let token = super::encode(
            serde_json::json!({"sub": "x", "jti": "old", "nats": {}}),
            &server,
            7,
        );
        let claims: Claims<serde_json::Value> = decode(&token, Kind::Other).unwrap();
        assert_eq!(claims.iss, server.public_key());
        assert_eq!(claims.iat, 7);
        assert_eq!(claims.jti.len(), 52);
        assert_ne!(claims.jti, "old");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn times() {
        let claims = Claims::<()> {
            exp: 100,
            nbf: 50,
            ..Claims::default()
        };
        assert!(claims.not_yet_valid(49));
        assert!(!claims.not_yet_valid(50));
        assert!(!claims.expired(100));
        assert!(claims.expired(101));
        assert_eq!(claims.valid_for(40), Some(60));
    }

    #[test]
    fn finds_the_jwt_in_a_creds_file() {
        let creds = "-----BEGIN NATS USER JWT-----\neyJa.eyJb.c\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUA\n";
        assert_eq!(jwt_in_text(creds), Some("eyJa.eyJb.c"));
        assert_eq!(jwt_in_text("  eyJa.eyJb.c\n"), Some("eyJa.eyJb.c"));
        assert_eq!(jwt_in_text("nothing"), None);
    }
}
