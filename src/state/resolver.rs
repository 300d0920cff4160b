//! Accounts the server does not know yet, fetched when a client needs one, as nats-server's
//! resolvers fetch them (`accounts.go: URLAccResolver, DirAccResolver, CacheDirAccResolver`):
//!
//! - `resolver: URL(<url>)` asks the account server `GET <url><account key>` (within 1.9 s);
//!   at start it asks `GET <url>` once to see that the server answers, and refuses to start
//!   otherwise.
//! - `resolver { type: full | cache }` asks the other servers of the cluster through the
//!   system account (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`) for an account its directory
//!   does not hold, and stores what they answer. The `cache` keeps at most `limit` JWTs (the
//!   least recently stored goes first) and each for `ttl`; a JWT leaving the directory leaves
//!   the account as it is in force, as in nats-server.
//!
//! A fetched account's imports name accounts that are fetched with it. The system account,
//! when no resolver can give it at start, is a stand-in without a JWT (nats-server's
//! temporary system account) until an update brings the real one.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Shared;
use crate::config::operator::{self, AccountJwt, Resolver, FETCH_TIMEOUT};
use crate::config::Options;
use crate::engine::account::random_token;
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::subscription::{Internal, Subscription};
use crate::proto::jwt;

/// How many accounts one fetch brings in at most (the account and those it imports from).
const MAX_FETCHED: usize = 32;

/// The resolver's part of the shared state.
#[derive(Debug, Default)]
pub struct ResolverState {
    /// Held while a change of the accounts in force is built and put in force.
    updates: Mutex<()>,
    /// The `cache` resolver's directory: what each JWT file is kept for.
    cache: Mutex<CacheIndex>,
}

/// The JWT files a `cache` resolver keeps, by account key.
#[derive(Debug, Default)]
struct CacheIndex {
    entries: HashMap<String, CacheEntry>,
    /// Bumped by every store: the order in which entries were last used.
    clock: u64,
}

#[derive(Debug)]
struct CacheEntry {
    used: u64,
    /// When the file goes: `ttl` after it was stored, or when the JWT expires.
    expires: Option<SystemTime>,
}

impl Shared {
    /// Puts new options in force as a reload does (every client checked again), one change
    /// of the accounts in force at a time: `change` builds them from those in force (and
    /// something to hand back).
    pub fn update_accounts<T>(
        &self,
        change: impl FnOnce(&Options) -> Result<(Options, T), String>,
    ) -> Result<T, String> {
        self.one_at_a_time(|| {
            let (new, out) = change(&self.opts())?;
            self.reload(new)?;
            Ok(out)
        })
    }

    /// Changes the operator-mode accounts in force (a fetch, a pushed or merged JWT, a
    /// deletion): `change` builds new options from those in force, differing in their
    /// accounts only. The accounts are put in force, and only the clients of the accounts
    /// whose JWT changed (or that are gone) are checked again, as nats-server applies an
    /// account JWT to that account alone.
    pub fn change_accounts<T>(
        &self,
        change: impl FnOnce(&Options) -> Result<(Options, T), String>,
    ) -> Result<T, String> {
        self.one_at_a_time(|| {
            let old = self.opts();
            let (new, out) = change(&old)?;
            let (before, after) = (&old.operator.accounts, &new.operator.accounts);
            let changed: BTreeSet<String> = before
                .iter()
                .filter(|(key, account)| after.get(*key).map_or(true, |a| a.jwt != account.jwt))
                .map(|(key, _)| key.clone())
                .collect();
            self.put_accounts_in_force(new, &changed)?;
            Ok(out)
        })
    }

    /// Runs `apply` while no other change of the accounts in force is made.
    fn one_at_a_time<T>(&self, apply: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        let _guard = self
            .resolver
            .updates
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        apply()
    }
}

/// At start: the URL resolver's account server must answer, and the system account is
/// fetched when no JWT of it is known yet (a stand-in when that fails).
pub async fn prepare(opts: &mut Options) -> Result<(), String> {
    let Some(resolver) = opts.operator.resolver.clone() else {
        return Ok(());
    };
    if let Resolver::Url(url) = &resolver {
        crate::state::web::get(url, url_tls(opts)?, FETCH_TIMEOUT).await?;
    }
    let Some(system) = opts.system_account.clone() else {
        return Ok(());
    };
    let single_operator = opts.operator.operators.len() == 1;
    if !resolver.fetches() || !single_operator || opts.operator.accounts.contains_key(&system) {
        return Ok(());
    }
    if let Resolver::Url(url) = &resolver {
        let fetched =
            crate::state::web::get(&format!("{url}{system}"), url_tls(opts)?, FETCH_TIMEOUT)
                .await
                .map_err(|why| why.to_string())
                .and_then(|token| {
                    operator::with_update(opts, &String::from_utf8_lossy(&token), Some(&system))
                        .map_err(|(_, why)| why)
                });
        match fetched {
            Ok((new, _)) => {
                *opts = new;
                return Ok(());
            }
            Err(why) => warn!("Account fetch failed: {why}"),
        }
    }
    let issuer = opts.operator.operators[0].claims.sub.clone();
    let stand_in = serde_json::json!({
        "sub": system, "iss": issuer,
        "nats": {"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                            "exports": -1, "wildcards": true, "conn": -1, "leaf": -1}}
    });
    let claims: jwt::AccountClaims = serde_json::from_value(stand_in).map_err(|e| e.to_string())?;
    opts.operator.accounts.insert(
        system,
        AccountJwt {
            jwt: String::new(),
            claims: Arc::new(claims),
            issues: Vec::new(),
        },
    );
    operator::expand_accounts(opts);
    Ok(())
}

/// The TLS client configuration for an `https` account server (`resolver_tls`).
fn url_tls(opts: &Options) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    let tls = opts.operator.resolver_tls.clone().unwrap_or_default();
    crate::security::tls::client_config(&tls).map(Some)
}

/// Fetches account `key` (and the accounts it imports from that are not known either) and
/// puts it in force; `Ok` when it is known already. The error is nats-server's reason.
pub async fn fetch(shared: &Shared, key: &str) -> Result<(), String> {
    let opts = shared.opts();
    let Some(resolver) = opts.operator.resolver.clone().filter(Resolver::fetches) else {
        return Err("account missing".into());
    };
    if opts.operator.accounts.contains_key(key) {
        return Ok(());
    }
    if !key.starts_with('A') || nkeys::KeyPair::from_public_key(key).is_err() {
        return Err("will only fetch valid account keys".into());
    }
    let mut wanted = vec![key.to_string()];
    let mut fetched: Vec<(String, String)> = Vec::new();
    while let Some(next) = wanted.pop() {
        if fetched.len() >= MAX_FETCHED {
            break;
        }
        let started = Instant::now();
        let result = fetch_one(shared, &opts, &resolver, &next).await;
        let took = started.elapsed();
        if took > Duration::from_secs(1) {
            warn!("Account [{next}] fetch took {took:?}");
        } else {
            debug!("Account [{next}] fetch took {took:?}");
        }
        let token = match result {
            Ok(token) => token,
            Err(why) => {
                warn!("Account fetch failed: {why}");
                if next == key {
                    return Err(why);
                }
                continue;
            }
        };
        if let Ok(claims) = jwt::decode::<jwt::Account>(&token, jwt::Kind::Account) {
            for import in &claims.nats.imports {
                let exporter = &import.account;
                let known = opts.operator.accounts.contains_key(exporter)
                    || fetched.iter().any(|(k, _)| k == exporter)
                    || wanted.contains(exporter)
                    || exporter == &next;
                if !known {
                    wanted.push(exporter.clone());
                }
            }
        }
        fetched.push((next, token));
    }
    let stored = shared.change_accounts(|old| {
        let mut new = old.clone();
        let mut stored = Vec::new();
        for (k, token) in &fetched {
            if new.operator.accounts.contains_key(k) {
                continue;
            }
            match operator::with_update(&new, token, Some(k)) {
                Ok((updated, _)) => {
                    new = updated;
                    stored.push((k.clone(), token.clone()));
                }
                Err((_, why)) if k == key => return Err(why),
                Err(_) => {}
            }
        }
        Ok((new, stored))
    })?;
    if let Resolver::Dir { dir, .. } = &resolver {
        for (k, token) in stored {
            store(shared, dir, &k, &token);
        }
    }
    Ok(())
}

/// One account's JWT, from the account server or the other servers.
async fn fetch_one(
    shared: &Shared,
    opts: &Options,
    resolver: &Resolver,
    key: &str,
) -> Result<String, String> {
    match resolver {
        Resolver::Url(url) => {
            let body =
                crate::state::web::get(&format!("{url}{key}"), url_tls(opts)?, FETCH_TIMEOUT)
                    .await?;
            Ok(String::from_utf8_lossy(&body).trim().to_string())
        }
        Resolver::Dir { kind, timeout, .. } => lookup(shared, opts, key, kind, *timeout).await,
        Resolver::Memory => Err("account missing".into()),
    }
}

/// Asks the other servers for account `key`'s JWT through the system account; the first
/// that has it answers. An empty answer says a server does not have it: once every server
/// has said so, the account is not found.
async fn lookup(
    shared: &Shared,
    opts: &Options,
    key: &str,
    kind: &str,
    timeout: Duration,
) -> Result<String, String> {
    let system = super::accounts::system_account_name(opts)
        .and_then(|name| shared.router.account(name))
        .ok_or("eventing shut down")?;
    // The servers that will answer: every routed one, and this one when it keeps the full
    // directory (it answers its own request, without the JWT, or it would not ask).
    let mut expected = shared.router.routes().all().len() + usize::from(kind == "full");
    let (sender, mut answers) = mpsc::unbounded_channel();
    let reply = format!("$SYS._INBOX.{}.{}", random_token(8), random_token(8));
    let sub = Arc::new(Subscription::internal(
        Arc::new(Answers(sender)),
        &reply,
        None,
    ));
    system.subscribe(sub.clone());
    let subject = format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.LOOKUP");
    let mut out = Deliveries::default();
    deliver::publish(
        &system,
        &Message {
            subject: subject.as_bytes(),
            reply: Some(reply.as_bytes()),
            header_len: None,
            message: &[],
        },
        &mut out,
    );
    out.flush(None);
    let deadline = tokio::time::Instant::now() + timeout;
    let result = loop {
        match tokio::time::timeout_at(deadline, answers.recv()).await {
            Err(_) | Ok(None) => break Err("fetching jwt timed out".to_string()),
            Ok(Some(answer)) if answer.is_empty() => {
                expected = expected.saturating_sub(1);
                if expected == 0 {
                    break Err("account jwt not found".to_string());
                }
            }
            Ok(Some(answer)) => break Ok(String::from_utf8_lossy(&answer).trim().to_string()),
        }
    };
    system.unsubscribe(&sub);
    result
}

/// The internal subscriber of a lookup's reply subject: hands every answer over.
#[derive(Debug)]
struct Answers(mpsc::UnboundedSender<Vec<u8>>);

impl Internal for Answers {
    fn deliver(&self, _: &Subscription, msg: &Message<'_>, _: &mut Deliveries) -> bool {
        let body = &msg.message[msg.header_len.unwrap_or(0).min(msg.message.len())..];
        let _ = self.0.send(body.to_vec());
        true
    }

    /// The answers come from the other servers: they must hear of the reply subject.
    fn announced(&self) -> bool {
        true
    }
}

/// Writes `token` as account `key`'s file in the resolver's directory; for the `cache`,
/// tracks it and makes room by removing the least recently stored file over `limit`.
pub fn store(shared: &Shared, dir: &Path, key: &str, token: &str) {
    let path = file(dir, key);
    if let Err(err) = std::fs::write(&path, token.trim()) {
        warn!("Error storing account jwt {}: {err}", path.display());
        return;
    }
    track(shared, dir, key, token);
}

/// Tracks account `key`'s file for the `cache` resolver (nothing for the others).
fn track(shared: &Shared, dir: &Path, key: &str, token: &str) {
    let opts = shared.opts();
    let Some(Resolver::Dir {
        kind, limit, ttl, ..
    }) = &opts.operator.resolver
    else {
        return;
    };
    if kind != "cache" {
        return;
    }
    let expires = match ttl.is_zero() {
        false => Some(SystemTime::now() + *ttl),
        true => jwt::decode::<serde_json::Value>(token.trim(), jwt::Kind::Other)
            .ok()
            .filter(|c| c.exp > 0)
            .map(|c| SystemTime::UNIX_EPOCH + Duration::from_secs(c.exp as u64)),
    };
    let mut index = shared
        .resolver
        .cache
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    index.clock += 1;
    let used = index.clock;
    let known = index.entries.contains_key(key);
    if !known && index.entries.len() as i64 >= *limit {
        let oldest = index
            .entries
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            index.entries.remove(&oldest);
            let _ = std::fs::remove_file(file(dir, &oldest));
        }
    }
    index
        .entries
        .insert(key.to_string(), CacheEntry { used, expires });
}

/// The `cache` resolver's files at start: each is kept for `ttl` from now (or until its JWT
/// expires), as nats-server indexes its directory when it starts.
pub fn index_directory(shared: &Shared, dir: &Path) {
    for (key, token) in operator::stored_jwts(dir) {
        track(shared, dir, &key, &token);
    }
}

/// Removes the `cache` resolver's files whose time is up; the accounts stay in force.
pub fn expire(shared: &Shared, dir: &Path) {
    let now = SystemTime::now();
    let mut index = shared
        .resolver
        .cache
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let gone: Vec<String> = index
        .entries
        .iter()
        .filter(|(_, e)| e.expires.is_some_and(|at| at <= now))
        .map(|(k, _)| k.clone())
        .collect();
    for key in gone {
        if std::fs::remove_file(file(dir, &key)).is_ok() {
            index.entries.remove(&key);
        }
    }
}

/// How often the `cache` resolver looks for files whose time is up: half the `ttl`, at most
/// a minute (nats-server's `expireCheck`).
pub fn expire_every(ttl: Duration) -> Duration {
    match ttl.is_zero() {
        true => Duration::from_secs(60),
        false => (ttl / 2).min(Duration::from_secs(60)),
    }
}

/// The accounts whose JWT files the `cache` resolver keeps, sorted.
pub fn cached(shared: &Shared) -> Vec<String> {
    let index = shared
        .resolver
        .cache
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut keys: Vec<String> = index.entries.keys().cloned().collect();
    keys.sort();
    keys
}

/// An account's file in the resolver's directory.
pub fn file(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.jwt"))
}
