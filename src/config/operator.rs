//! Operator mode (decentralized auth): `operator` (trusted operator JWTs), `trusted` keys,
//! `resolver` and `resolver_preload`, read and checked as nats-server does
//! (`opts.go: parseOperator/parseResolver`, `jwt.go: validateTrustedOperators`).
//!
//! With the memory resolver every account is known when the file is read: each preloaded
//! account JWT is verified against the trusted keys and becomes an [`AccountConfig`] named by
//! its public key, with its exports, imports and mappings; the claims are kept
//! ([`OperatorOptions::accounts`]) for authentication (signing keys, revocations, limits,
//! default permissions).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::accounts::{AccountConfig, Export, Flow, Import, MappingConfig};
use super::conf::{ConfError, Entry, Kind, Pos, Value};
use super::options::{bad, string, Options};
use crate::engine::account::{ResponseType, DEFAULT_RESPONSE_THRESHOLD};
use crate::engine::msgtrace::AccountTrace;
use crate::proto::jwt::{self, AccountClaims, OperatorClaims};
use crate::proto::subject;

/// A trusted operator: its JWT as given and its claims.
#[derive(Debug, Clone)]
pub struct TrustedOperator {
    /// The JWT.
    pub jwt: String,
    /// Its claims.
    pub claims: OperatorClaims,
}

/// Where account JWTs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolver {
    /// `MEMORY`: the preloaded accounts, fixed until a reload.
    Memory,
    /// `URL(...)`: an account server, asked `GET <url><account key>` for an account the
    /// server does not know yet; the URL as given, ending with `/`.
    Url(String),
    /// `{ type: full | cache, dir, ... }`: account JWTs stored in a directory, one
    /// `<account key>.jwt` file each, updated through the system account. An account not in
    /// the directory is asked of the other servers (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`).
    /// `full` keeps every account and answers those lookups; `cache` keeps at most `limit`
    /// (the least recently used go first), each for `ttl` when set.
    Dir {
        /// `full` or `cache`.
        kind: String,
        /// `dir`.
        dir: std::path::PathBuf,
        /// `allow_delete`.
        allow_delete: bool,
        /// `limit`: how many JWTs the directory keeps (0: no limit, for `full`).
        limit: i64,
        /// `ttl` (`cache`): how long a JWT stays after it was last stored or looked up; zero
        /// keeps it until the JWT itself expires.
        ttl: Duration,
        /// `timeout`: how long a lookup waits for the other servers.
        timeout: Duration,
        /// `interval` (`full`): how often the directory is compared with the other servers'
        /// (one minute unless given).
        interval: Duration,
    },
}

/// nats-server's `DEFAULT_ACCOUNT_FETCH_TIMEOUT`: how long an account fetch (URL or lookup
/// through the system account) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(1900);

impl Resolver {
    /// Whether accounts the server does not know are fetched when a client needs them.
    pub fn fetches(&self) -> bool {
        !matches!(self, Resolver::Memory)
    }
}

/// A verified account JWT.
#[derive(Debug, Clone)]
pub struct AccountJwt {
    /// The JWT.
    pub jwt: String,
    /// Its claims.
    pub claims: Arc<AccountClaims>,
    /// What nats-jwt's validation finds wrong with it; an account with issues is logged at
    /// start and cannot be used (nats-server: `account validation failed`).
    pub issues: Vec<String>,
}

/// Everything operator mode configures.
#[derive(Debug, Clone, Default)]
pub struct OperatorOptions {
    /// `operator`: the trusted operators.
    pub operators: Vec<TrustedOperator>,
    /// `trusted`: operator keys trusted without their JWTs.
    pub trusted_keys: Vec<String>,
    /// `resolver`.
    pub resolver: Option<Resolver>,
    /// `resolver_tls`: how the URL resolver checks an `https` account server.
    pub resolver_tls: Option<super::options::TlsOptions>,
    /// `resolver_preload`: account public key -> JWT, in file order, with their positions.
    pub preload: Vec<(String, String, Pos)>,
    /// The preloaded accounts, verified, by public key.
    pub accounts: BTreeMap<String, AccountJwt>,
    /// `resolver_pinned_accounts`: when not empty, the only accounts whose users may connect
    /// (the system account is added to them).
    pub pinned: std::collections::BTreeSet<String>,
}

impl OperatorOptions {
    /// Whether the server runs in operator mode.
    pub fn enabled(&self) -> bool {
        !self.operators.is_empty() || !self.trusted_keys.is_empty()
    }

    /// The keys that may sign account JWTs: each operator's own and its signing keys, and
    /// the `trusted` keys.
    pub fn trusted(&self) -> impl Iterator<Item = &str> {
        self.operators
            .iter()
            .flat_map(|o| {
                std::iter::once(o.claims.sub.as_str())
                    .chain(o.claims.nats.signing_keys.iter().map(String::as_str))
            })
            .chain(self.trusted_keys.iter().map(String::as_str))
    }

    /// Whether `key` may sign account JWTs.
    pub fn is_trusted(&self, key: &str) -> bool {
        self.trusted().any(|k| k == key)
    }

    /// A known account's verified JWT, if it passed validation.
    pub fn account(&self, key: &str) -> Option<&AccountJwt> {
        self.accounts.get(key).filter(|a| a.issues.is_empty())
    }
}

/// `operator: <jwt or file>` or a list of them.
pub(super) fn parse_operators(entry: &Entry) -> Result<Vec<TrustedOperator>, ConfError> {
    let items: Vec<&Value> = match &entry.value.kind {
        Kind::Array(items) => items.iter().collect(),
        _ => vec![&entry.value],
    };
    items
        .into_iter()
        .map(|v| {
            let text = string(v)?;
            read_operator(&text).map_err(|why| ConfError {
                pos: entry.pos.clone(),
                message: format!("error parsing operator JWT: {why}"),
            })
        })
        .collect()
}

/// An operator JWT from a file (bare or decorated), or inline.
fn read_operator(text: &str) -> Result<TrustedOperator, String> {
    let contents = match super::read_file(Path::new(text)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) if text.starts_with("eyJ") => text.to_string(),
        Err(why) => return Err(why),
    };
    let token = jwt::jwt_in_text(&contents).unwrap_or(contents.trim());
    let claims = jwt::decode(token, jwt::Kind::Operator).map_err(|e| e.to_string())?;
    Ok(TrustedOperator {
        jwt: token.to_string(),
        claims,
    })
}

/// `trusted: [keys]` (or one string of keys separated by spaces or commas).
pub(super) fn parse_trusted(v: &Value) -> Result<Vec<String>, ConfError> {
    let keys: Vec<String> = match &v.kind {
        Kind::Array(items) => items.iter().map(string).collect::<Result<_, _>>()?,
        _ => string(v)?
            .split([',', ' '])
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect(),
    };
    for key in &keys {
        if !key.starts_with('O') || nkeys::KeyPair::from_public_key(key).is_err() {
            return Err(ConfError {
                pos: v.pos.clone(),
                message: format!("trust key {key:?} required to be a valid public operator nkey"),
            });
        }
    }
    Ok(keys)
}

/// `resolver: MEMORY | URL(url) | { type, dir, ... }`, checked as nats-server checks it.
pub(super) fn parse_resolver(v: &Value) -> Result<Resolver, ConfError> {
    let fail = |message: String| ConfError {
        pos: v.pos.clone(),
        message,
    };
    let unknown = || {
        fail(
            "error parsing account resolver, should be MEM or  URL(\"url\") or a map containing \
             dir and type state=[FULL|CACHE])"
                .into(),
        )
    };
    match &v.kind {
        Kind::String(text) => {
            let upper = text.trim().to_ascii_uppercase();
            if upper.starts_with("MEM") {
                Ok(Resolver::Memory)
            } else if upper.starts_with("URL(") && text.trim().ends_with(')') {
                let text = text.trim();
                let url = text[4..text.len() - 1].trim().trim_matches('"').trim();
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(fail(format!(
                        "error parsing account resolver url {url:?}: tern fetches accounts \
                         over http and https only"
                    )));
                }
                let mut url = url.to_string();
                if !url.ends_with('/') {
                    url.push('/');
                }
                Ok(Resolver::Url(url))
            } else {
                Err(unknown())
            }
        }
        Kind::Map(map) => {
            let field = |name: &str| map.iter().find(|e| e.key.eq_ignore_ascii_case(name));
            let text = |name: &str| field(name).map(|e| string(&e.value)).transpose();
            let duration = |name: &str| -> Result<Option<Duration>, ConfError> {
                let Some(e) = field(name) else {
                    return Ok(None);
                };
                let text = string(&e.value)?;
                super::options::parse_duration(&text)
                    .map(Some)
                    .ok_or_else(|| ConfError {
                        pos: e.value.pos.clone(),
                        message: format!("time: invalid duration {text:?}"),
                    })
            };
            let kind = text("type")?.unwrap_or_default().to_ascii_lowercase();
            let dir = text("dir")?.unwrap_or_default();
            let allow_delete = field("allow_delete")
                .map(|e| super::options::boolean(&e.value))
                .transpose()?
                .unwrap_or(false);
            let limit = field("limit")
                .map(|e| super::options::int(&e.value))
                .transpose()?
                .unwrap_or(0);
            let ttl = duration("ttl")?.unwrap_or_default();
            let interval = duration("interval")?.unwrap_or_default();
            let timeout = duration("timeout")?;
            if dir.is_empty() {
                return Err(fail(
                    "dir has no value and needs to point to a directory".into(),
                ));
            }
            if std::fs::metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                return Err(fail("dir needs to point to an accessible directory".into()));
            }
            match kind.as_str() {
                "cache" if !interval.is_zero() => Err(fail("CACHE does not accept sync".into())),
                "cache" if allow_delete => Err(fail("CACHE does not accept allow_delete".into())),
                "full" if !ttl.is_zero() => Err(fail("FULL does not accept ttl".into())),
                _ if timeout.is_some_and(|t| t.is_zero()) => {
                    Err(fail("Fetch timeout 0s is too smal".into()))
                }
                "full" | "cache" => Ok(Resolver::Dir {
                    limit: match (kind.as_str(), limit) {
                        ("cache", l) if l <= 0 => 1_000,
                        (_, l) => l.max(0),
                    },
                    kind,
                    dir: dir.into(),
                    allow_delete,
                    ttl,
                    timeout: timeout.unwrap_or(FETCH_TIMEOUT),
                    interval: match interval.is_zero() {
                        true => Duration::from_secs(60),
                        false => interval,
                    },
                }),
                _ => Err(unknown()),
            }
        }
        _ => Err(bad(v, "resolver")),
    }
}

/// `resolver_pinned_accounts: [<account key>, ...]` (or one key).
pub(super) fn parse_pinned(v: &Value) -> Result<std::collections::BTreeSet<String>, ConfError> {
    let unsupported = |v: &Value, in_array: &str| ConfError {
        pos: v.pos.clone(),
        message: format!(
            "error parsing resolver_pinned_accounts: unsupported type{in_array} {}",
            go_type(v)
        ),
    };
    match &v.kind {
        Kind::String(key) => Ok([key.clone()].into()),
        Kind::Array(items) => items
            .iter()
            .map(|item| match &item.kind {
                Kind::String(key) => Ok(key.clone()),
                _ => Err(unsupported(item, " in array")),
            })
            .collect(),
        _ => Err(unsupported(v, "")),
    }
}

/// The Go type nats-server's config parser gives a value, for its error messages.
fn go_type(v: &Value) -> &'static str {
    match &v.kind {
        Kind::String(_) => "string",
        Kind::Int(_) => "int64",
        Kind::Float(_) => "float64",
        Kind::Bool(_) => "bool",
        Kind::Array(_) => "[]interface {}",
        _ => "map[string]interface {}",
    }
}

/// `resolver_preload { <account key>: <jwt> }`.
pub(super) fn parse_preload(v: &Value) -> Result<Vec<(String, String, Pos)>, ConfError> {
    let Kind::Map(map) = &v.kind else {
        return Err(bad(v, "resolver_preload"));
    };
    map.iter()
        .map(|e| Ok((e.key.clone(), string(&e.value)?, e.value.pos.clone())))
        .collect()
}

/// nats-server's checks of operator mode once the whole file is read; then the preloaded
/// accounts become configured accounts. `file` is where file-wide errors point.
pub(super) fn check_and_expand(opts: &mut Options, file: &Pos) -> Result<(), ConfError> {
    let op = &mut opts.operator;
    if !op.enabled() {
        return Ok(());
    }
    let whole = |message: &str| ConfError {
        pos: Pos {
            line: 0,
            ..file.clone()
        },
        message: message.to_string(),
    };
    if op.resolver.is_none() && op.operators.len() == 1 {
        // An operator naming its account server stands for `resolver: URL(<it>/accounts)`
        // (what `nsc push` uses).
        let server = op.operators[0].claims.nats.account_server_url.trim();
        if server.starts_with("http://") || server.starts_with("https://") {
            op.resolver = Some(Resolver::Url(format!(
                "{}/accounts/",
                server.trim_end_matches('/')
            )));
        }
    }
    if op.resolver.is_none() {
        return Err(whole(
            "operators require an account resolver to be configured",
        ));
    }
    if !opts.accounts.is_empty() {
        return Err(whole(
            "operators do not allow Accounts to be configured directly",
        ));
    }
    if !opts.users.is_empty() {
        return Err(whole(
            "operators do not allow users to be configured directly",
        ));
    }
    if !op.operators.is_empty() && !op.trusted_keys.is_empty() {
        return Err(whole(
            "conflicting options for 'TrustedKeys' and 'TrustedOperators'",
        ));
    }
    for key in &op.pinned {
        if !key.starts_with('A') || nkeys::KeyPair::from_public_key(key).is_err() {
            return Err(whole(&format!(
                "pinned account key {key:?} is not a valid public account nkey"
            )));
        }
    }
    if !op.pinned.is_empty() {
        // The operator's system account may always connect.
        let from_operator = op.operators.first().map(|o| &o.claims.nats.system_account);
        if let Some(system) = opts.system_account.as_ref().or(from_operator) {
            if !system.is_empty() {
                op.pinned.insert(system.clone());
            }
        }
    }
    let mut accounts = BTreeMap::new();
    // The full resolver's directory: what earlier updates stored (a file that does not hold
    // a valid account JWT is passed over, as nats-server's lookups pass it over).
    if let Some(Resolver::Dir { dir, .. }) = &op.resolver {
        for (key, token) in stored_jwts(dir) {
            if let Ok(account) = verify(op, &key, &token) {
                accounts.insert(key, account);
            }
        }
    }
    for (key, token, pos) in &op.preload {
        let invalid = || ConfError {
            pos: pos.clone(),
            message: "invalid account JWT".into(),
        };
        let claims: AccountClaims =
            jwt::decode(token, jwt::Kind::Account).map_err(|_| invalid())?;
        if &claims.sub != key {
            return Err(invalid());
        }
        if !op.is_trusted(&claims.iss) {
            return Err(ConfError {
                pos: pos.clone(),
                message: "account JWT not signed by trusted operator".into(),
            });
        }
        // A stored update newer than the preloaded JWT wins.
        if accounts
            .get(key)
            .is_some_and(|stored: &AccountJwt| stored.claims.iat > claims.iat)
        {
            continue;
        }
        accounts.insert(
            key.clone(),
            AccountJwt {
                jwt: token.clone(),
                issues: validation_issues(&claims),
                claims: Arc::new(claims),
            },
        );
    }
    if opts.system_account.is_none() {
        opts.system_account = op
            .operators
            .iter()
            .map(|o| o.claims.nats.system_account.clone())
            .find(|s| !s.is_empty());
    }
    opts.operator.accounts = accounts;
    expand(opts);
    Ok(())
}

/// A reloaded configuration keeps the accounts its resolver fetched or took updates for
/// while the server ran (nats-server's accounts outlive a reload); the file's own stay as
/// the file says.
pub fn keep_fetched(old: &Options, new: &mut Options) {
    if !new
        .operator
        .resolver
        .as_ref()
        .is_some_and(Resolver::fetches)
    {
        return;
    }
    for (key, account) in &old.operator.accounts {
        if !new.operator.accounts.contains_key(key) {
            new.operator.accounts.insert(key.clone(), account.clone());
        }
    }
    expand(new);
}

/// The configured accounts from the verified account JWTs (after accounts were removed from
/// [`OperatorOptions::accounts`]).
pub fn expand_accounts(opts: &mut Options) {
    expand(opts);
}

/// The configured accounts from the verified account JWTs.
fn expand(opts: &mut Options) {
    let accounts = &opts.operator.accounts;
    opts.accounts = accounts
        .values()
        .filter(|a| a.issues.is_empty())
        .map(|a| account_config(&a.claims, accounts))
        .collect();
}

/// `token` checked as the account JWT of `key`: nats-jwt's error text when it is not one, or
/// not for `key`, or not signed by a trusted key.
fn verify(op: &OperatorOptions, key: &str, token: &str) -> Result<AccountJwt, String> {
    let claims: AccountClaims =
        jwt::decode(token.trim(), jwt::Kind::Account).map_err(|e| e.to_string())?;
    if claims.sub != key {
        return Err("subject does not match jwt content".into());
    }
    if !op.is_trusted(&claims.iss) {
        return Err("not trusted".into());
    }
    Ok(AccountJwt {
        jwt: token.trim().to_string(),
        issues: validation_issues(&claims),
        claims: Arc::new(claims),
    })
}

/// The `<key>.jwt` files of a resolver's directory, with what each holds, by key.
pub fn stored_jwts(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let key = path
                .file_name()?
                .to_str()?
                .strip_suffix(".jwt")?
                .to_string();
            let token = std::fs::read_to_string(&path).ok()?;
            Some((key, token))
        })
        .collect();
    out.sort();
    out
}

/// A claims update (`$SYS.REQ.CLAIMS.UPDATE`, or `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` with
/// `key`): the options with the account JWT `token` in force, and the account's key; or
/// nats-server's reason for refusing it and the account it names (`n/a` when unknown).
pub fn with_update(
    opts: &Options,
    token: &str,
    key: Option<&str>,
) -> Result<(Options, String), (String, String)> {
    let claims: AccountClaims = jwt::decode(token.trim(), jwt::Kind::Account)
        .map_err(|e| (key.unwrap_or("n/a").to_string(), e.to_string()))?;
    let key = key.unwrap_or(&claims.sub).to_string();
    let account = verify(&opts.operator, &key, token).map_err(|why| (key.clone(), why))?;
    let mut new = opts.clone();
    new.operator.accounts.insert(key.clone(), account);
    expand(&mut new);
    Ok((new, key))
}

/// An account JWT as a configured account: its exports (private ones open to the accounts
/// that import them with a valid activation), imports and mappings.
fn account_config(claims: &AccountClaims, all: &BTreeMap<String, AccountJwt>) -> AccountConfig {
    let nats = &claims.nats;
    let exports = nats
        .exports
        .iter()
        .filter_map(|e| {
            let flow = flow(&e.kind)?;
            let accounts = e.token_req.then(|| {
                all.values()
                    .filter(|other| {
                        other.claims.nats.imports.iter().any(|i| {
                            i.account == claims.sub
                                && flow_matches(&i.kind, flow)
                                && activation_allows(i, e, claims, &other.claims.sub)
                        })
                    })
                    .map(|other| other.claims.sub.clone())
                    .collect()
            });
            Some(Export {
                flow,
                subject: e.subject.clone(),
                accounts,
                response_type: match e.response_type.as_str() {
                    "Stream" => ResponseType::Stream,
                    "Chunked" => ResponseType::Chunked,
                    _ => ResponseType::Singleton,
                },
                response_threshold: if e.response_threshold > 0 {
                    Duration::from_nanos(e.response_threshold as u64)
                } else {
                    DEFAULT_RESPONSE_THRESHOLD
                },
            })
        })
        .collect();
    let imports = nats
        .imports
        .iter()
        .filter_map(|i| {
            let flow = flow(&i.kind)?;
            // Only what the exporter exports to this account: nats-server drops the rest.
            let exporter = all.get(&i.account)?;
            exporter.claims.nats.exports.iter().find(|e| {
                flow_matches(&e.kind, flow)
                    && subject::is_subset(i.subject.as_bytes(), e.subject.as_bytes())
                    && (!e.token_req || activation_allows(i, e, &exporter.claims, &claims.sub))
            })?;
            let local = [&i.local_subject, &i.to]
                .into_iter()
                .find(|s| !s.is_empty())
                .cloned();
            Some(match flow {
                // A stream import's deprecated `to` is a prefix; `local_subject` a rewrite.
                Flow::Stream if i.local_subject.is_empty() && !i.to.is_empty() => Import {
                    flow,
                    account: i.account.clone(),
                    subject: i.subject.clone(),
                    to: None,
                    prefix: Some(i.to.clone()),
                    to_pos: None,
                },
                _ => Import {
                    flow,
                    account: i.account.clone(),
                    subject: i.subject.clone(),
                    to: local,
                    prefix: None,
                    to_pos: None,
                },
            })
        })
        .collect();
    let mappings = nats
        .mappings
        .iter()
        .map(|(source, dests)| MappingConfig {
            source: source.clone(),
            destinations: dests
                .iter()
                .filter(|d| d.cluster.is_empty())
                .map(|d| {
                    (
                        d.subject.clone(),
                        if d.weight == 0 { 100 } else { d.weight },
                    )
                })
                .collect(),
        })
        .filter(|m| !m.destinations.is_empty())
        .collect();
    // nats-server traces only to a valid publish subject (nats-jwt lets `a..b` through).
    let msg_trace = nats
        .trace
        .as_ref()
        .filter(|t| subject::is_valid_literal(t.dest.as_bytes()))
        .map(|t| AccountTrace {
            dest: t.dest.clone(),
            sampling: u8::try_from(t.sampling).unwrap_or(100),
        });
    AccountConfig {
        name: claims.sub.clone(),
        exports,
        imports,
        mappings,
        jetstream: false,
        jetstream_limits: Default::default(),
        msg_trace,
    }
}

/// The blocking problems nats-jwt's `AccountClaims.Validate` reports for its message trace
/// block and its imports: an unknown import type, an activation token that does not decode,
/// or one for another type.
fn validation_issues(claims: &AccountClaims) -> Vec<String> {
    let mut issues = claims
        .nats
        .trace
        .as_ref()
        .map(|t| t.issues())
        .unwrap_or_default();
    for import in &claims.nats.imports {
        if flow(&import.kind).is_none() {
            issues.push(format!("invalid import type: {:?}", import.kind));
        }
        if import.token.is_empty() {
            continue;
        }
        match jwt::decode::<Activation>(&import.token, jwt::Kind::Activation) {
            Err(e) => issues.push(format!("activation token import is not valid: {e}")),
            Ok(activation) if activation.nats.kind != import.kind => issues.push(format!(
                "mismatch between token import type {} and type of import {}",
                if activation.nats.kind.is_empty() {
                    "unknown"
                } else {
                    &activation.nats.kind
                },
                import.kind
            )),
            Ok(_) => {}
        }
    }
    issues
}

fn flow(kind: &str) -> Option<Flow> {
    match kind {
        "stream" => Some(Flow::Stream),
        "service" => Some(Flow::Service),
        _ => None,
    }
}

fn flow_matches(kind: &str, want: Flow) -> bool {
    flow(kind) == Some(want)
}

/// Whether import `import` of account `importer` carries a valid activation for the private
/// export `export` of `exporter`: signed by the exporter, or by one of its signing keys
/// naming it as `issuer_account` (any other key naming it proves nothing), for the importer,
/// covering the import's subject, not expired and not revoked.
fn activation_allows(
    import: &jwt::Import,
    export: &jwt::Export,
    exporter: &AccountClaims,
    importer: &str,
) -> bool {
    if !subject::is_subset(import.subject.as_bytes(), export.subject.as_bytes()) {
        return false;
    }
    let Ok(activation) = jwt::decode::<Activation>(&import.token, jwt::Kind::Activation) else {
        return false;
    };
    let issuer_ok = activation.iss == exporter.sub
        || (activation.nats.issuer_account == exporter.sub
            && exporter.nats.signing_key(&activation.iss).is_some());
    let revoked = [importer, "*"]
        .iter()
        .filter_map(|k| export.revocations.get(*k))
        .any(|&before| activation.iat <= before);
    issuer_ok
        && activation.nats.kind == import.kind
        && activation.sub == importer
        && !revoked
        && !activation.expired(unix_now())
        && subject::is_subset(
            import.subject.as_bytes(),
            activation.nats.subject.as_bytes(),
        )
}

/// The time now, in Unix seconds, for JWT expiry.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `nats` of an activation token.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
struct Activation {
    subject: String,
    /// The import type it activates: `stream` or `service`.
    kind: String,
    issuer_account: String,
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{error, options};

    #[test]
    fn operator_mode_is_checked_as_nats_server_checks_it() {
        let operator = nkeys::KeyPair::new_operator().public_key();
        assert!(error(&format!("trusted: [{operator}]"))
            .contains("operators require an account resolver to be configured"));
        assert!(error(&format!(
            "trusted: [{operator}]\nresolver: MEMORY\naccounts {{ A {{}} }}"
        ))
        .contains("operators do not allow Accounts to be configured directly"));
        assert!(error(&format!(
            "trusted: [{operator}]\nresolver: MEMORY\nauthorization {{ users [{{user: a, password: b}}] }}"
        ))
        .contains("operators do not allow users to be configured directly"));
        assert!(error("trusted: [UABC]").contains("valid public operator nkey"));
        assert!(error("operator: /nope/op.jwt\nresolver: MEMORY").contains(
            "test.conf:1:0: error parsing operator JWT: open /nope/op.jwt: no such file or directory"
        ));
        assert!(error(&format!(
            "trusted: [{operator}]\nresolver: MEMORY\nresolver_preload {{ AAA: garbage }}"
        ))
        .contains("invalid account JWT"));
        let (opts, _) = options(&format!("trusted: [{operator}]\nresolver: MEMORY")).unwrap();
        assert!(opts.operator.enabled());
        assert!(opts.operator.is_trusted(&operator));
    }
}
