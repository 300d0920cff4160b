//! The account resolvers' requests, as nats-server answers them. The full resolver
//! (`resolver { type: full, dir }`) checks account JWTs pushed at run time through the system
//! account, stores them in the directory (one `<account>.jwt` file each) and puts them in
//! force at once: new accounts exist, changed ones take their new exports, imports, limits and
//! revocations (the connected clients are checked again, as on a reload). The cache resolver
//! (`type: cache`) takes updates of the accounts it has only, and answers no lookups; the
//! memory and URL resolvers take updates of known accounts on `$SYS.REQ.ACCOUNT.<acc>.CLAIMS.
//! UPDATE` (and the older `$SYS.ACCOUNT.<acc>.CLAIMS.UPDATE`) without storing them.

use std::path::{Path, PathBuf};

use tracing::{debug, error, info, warn};

use super::services::Answer;
use super::Sys;
use crate::config::operator::{self, Resolver};
use crate::state::dirstore;
use crate::state::events::SysRequest;
use crate::state::resolver::{self, file};
use crate::state::Shared;

/// The full or cache resolver's directory and kind, when the server runs one.
pub(super) fn directory(shared: &Shared) -> Option<(PathBuf, String)> {
    match &shared.opts().operator.resolver {
        Some(Resolver::Dir { kind, dir, .. }) => Some((dir.clone(), kind.clone())),
        _ => None,
    }
}

/// Makes the directory and stores in it the accounts known at start that it does not hold
/// yet (the preloaded ones), as nats-server does; logs where it is.
pub(super) fn prepare(shared: &Shared, dir: &Path, kind: &str) {
    if let Err(err) = std::fs::create_dir_all(dir) {
        error!("Error creating jwt directory {}: {err}", dir.display());
        return;
    }
    match kind {
        "cache" => info!("Managing some jwt in exclusive directory {}", dir.display()),
        _ => info!("Managing all jwt in exclusive directory {}", dir.display()),
    }
    for (key, account) in &shared.opts().operator.accounts {
        let path = file(dir, key);
        if !path.exists() && !account.jwt.is_empty() {
            if let Err(err) = std::fs::write(&path, &account.jwt) {
                warn!("Error storing account jwt {}: {err}", path.display());
            }
        }
    }
    if kind == "cache" {
        resolver::index_directory(shared, dir);
    }
}

impl Sys {
    /// `UPDATE`, `LOOKUP`, `LIST` or `DELETE`.
    pub(super) fn claims(&mut self, op: &str, req: &SysRequest) -> Answer {
        // `$SYS.REQ.ACCOUNT.<acc>.CLAIMS.<OP>` (or `$SYS.ACCOUNT.<acc>.CLAIMS.UPDATE`) names
        // the account; the short forms do not.
        let subject = String::from_utf8_lossy(&req.subject);
        let named = subject
            .strip_prefix("$SYS.REQ.ACCOUNT.")
            .or_else(|| subject.strip_prefix("$SYS.ACCOUNT."))
            .and_then(|rest| rest.split('.').next())
            .map(str::to_string);
        let Some((dir, kind)) = directory(&self.shared) else {
            return match op {
                "UPDATE" => self.update_known(&req.body, named.as_deref().unwrap_or_default()),
                _ => Answer::Nothing,
            };
        };
        match op {
            "UPDATE" if kind == "cache" => self.update_cache(&dir, &req.body, named.as_deref()),
            "UPDATE" => self.update(&dir, &req.body, named.as_deref()),
            "LOOKUP" => {
                let key = named.unwrap_or_default();
                let opts = self.shared.opts();
                let stored = std::fs::read(file(&dir, &key)).ok();
                Answer::Raw(
                    stored
                        .or_else(|| {
                            opts.operator
                                .accounts
                                .get(&key)
                                .map(|a| a.jwt.clone().into())
                        })
                        .unwrap_or_default(),
                )
            }
            "DELETE" => self.delete(&dir, &req.body),
            "PACK" => self.answer_digest(&dir, &req.body, &req.reply),
            "MERGE" => self.merge(&dir, &req.body),
            "LIST" => {
                let mut keys: Vec<String> = match kind.as_str() {
                    "cache" => resolver::cached(&self.shared),
                    _ => self
                        .shared
                        .opts()
                        .operator
                        .accounts
                        .keys()
                        .cloned()
                        .collect(),
                };
                keys.sort();
                let server = serde_json::to_value(self.server_info()).unwrap_or_default();
                Answer::Document(serde_json::json!({"data": keys, "server": server}))
            }
            _ => Answer::Nothing,
        }
    }

    /// An update with the memory or URL resolver: an account in force takes it (nothing is
    /// stored); one that is not is skipped.
    fn update_known(&mut self, body: &[u8], key: &str) -> Answer {
        let token = String::from_utf8_lossy(body);
        let refused = |why: String| {
            error!("jwt update resulted in error - {key} - {why}");
            Answer::ClaimError(
                Some(key.to_string()),
                format!("jwt update resulted in error - {why}"),
            )
        };
        if token.trim().is_empty() {
            return refused("request body is empty".into());
        }
        let claims: crate::proto::jwt::AccountClaims =
            match crate::proto::jwt::decode(token.trim(), crate::proto::jwt::Kind::Account) {
                Ok(claims) => claims,
                Err(e) => return refused(e.to_string()),
            };
        if claims.sub != key {
            return refused("subject does not match jwt content".into());
        }
        if !self.shared.opts().operator.accounts.contains_key(key) {
            return done(key, "jwt update skipped");
        }
        let applied = self.shared.change_accounts(|opts| {
            operator::with_update(opts, &token, Some(key)).map_err(|(_, why)| why)
        });
        match applied {
            Ok(_) => done(key, "jwt updated"),
            Err(why) => refused(why),
        }
    }

    /// An update with the cache resolver: only an account it has takes it.
    fn update_cache(&mut self, dir: &Path, body: &[u8], named: Option<&str>) -> Answer {
        let token = String::from_utf8_lossy(body);
        let refused = |acc: &str, why: String| {
            error!("jwt update cache resulted in error - {acc} - {why}");
            Answer::ClaimError(
                Some(acc.to_string()),
                format!("jwt update cache resulted in error - {why}"),
            )
        };
        let claims: crate::proto::jwt::AccountClaims =
            match crate::proto::jwt::decode(token.trim(), crate::proto::jwt::Kind::Account) {
                Ok(claims) => claims,
                Err(e) => return refused(named.unwrap_or("n/a"), e.to_string()),
            };
        let key = named.unwrap_or(&claims.sub).to_string();
        if claims.sub != key {
            return refused(&key, "subject does not match jwt content".into());
        }
        if !self.shared.opts().operator.accounts.contains_key(&key) {
            return done(&key, "jwt update cache skipped");
        }
        let applied = self.shared.change_accounts(|opts| {
            operator::with_update(opts, &token, Some(&key)).map_err(|(_, why)| why)
        });
        if let Err(why) = applied {
            return refused(&key, why);
        }
        resolver::store(&self.shared, dir, &key, &token);
        done(&key, "jwt updated cache")
    }

    /// `$SYS.REQ.CLAIMS.DELETE`: a JWT the operator signs for itself, listing the accounts
    /// to delete (`nats.accounts`). Their JWTs leave the directory and the server, and their
    /// clients are closed with `Account Authentication Expired`, as nats-server does.
    fn delete(&mut self, dir: &Path, body: &[u8]) -> Answer {
        let token = String::from_utf8_lossy(body);
        let opts = self.shared.opts();
        let accounts = match delete_request(&opts, &token) {
            Ok(request) => request,
            Err((by, why)) => {
                return Answer::ClaimError(
                    None,
                    format!("delete accounts request by {by} failed - {why}"),
                )
            }
        };
        for key in &accounts {
            let _ = std::fs::remove_file(file(dir, key));
        }
        for conn in self.shared.router.connections_snapshot() {
            if accounts.iter().any(|k| **k == *conn.account().name) {
                conn.outbound.append(None, |b| {
                    crate::proto::protocol::encode_err(b, "Account Authentication Expired")
                });
                conn.outbound.close(
                    crate::engine::outbound::CloseReason::AuthenticationExpired,
                    true,
                );
            }
        }
        let removed = self.shared.change_accounts(|opts| {
            let mut new = opts.clone();
            for key in &accounts {
                new.operator.accounts.remove(key);
                new.operator.preload.retain(|(k, _, _)| k != key);
            }
            operator::expand_accounts(&mut new);
            Ok((new, ()))
        });
        if let Err(why) = removed {
            error!("Failed to delete accounts: {why}");
        }
        Answer::Data(serde_json::json!({
            "code": 200,
            "message": format!("deleted {} accounts", accounts.len()),
        }))
    }

    fn update(&mut self, dir: &Path, body: &[u8], named: Option<&str>) -> Answer {
        let token = String::from_utf8_lossy(body);
        let opts = self.shared.opts();
        let refused = |acc: String, why: String| {
            error!("jwt update resulted in error - {acc} - {why}");
            Answer::ClaimError(Some(acc), format!("jwt update resulted in error - {why}"))
        };
        let key = match operator::with_update(&opts, &token, named) {
            Ok((_, key)) => key,
            Err((acc, why)) => return refused(acc, why),
        };
        if let Err(why) = dirstore::has_room(dir, &key, limit(&opts)) {
            return refused(key, why);
        }
        if let Err(err) = std::fs::write(file(dir, &key), token.trim()) {
            return refused(key, err.to_string());
        }
        let applied = self.shared.change_accounts(|opts| {
            operator::with_update(opts, &token, Some(&key)).map_err(|(_, why)| why)
        });
        if let Err(why) = applied {
            return refused(key, why);
        }
        done(&key, "jwt updated")
    }
}

impl Sys {
    /// Every `interval`: sends the directory's digest to the other full resolvers of the
    /// cluster; one of them answers with its pack when theirs differs.
    pub(super) fn send_digest(&mut self) {
        let (Some((dir, _)), Some(inbox)) = (directory(&self.shared), self.pack_inbox.clone())
        else {
            return;
        };
        let digest = dirstore::digest(&dir);
        debug!(
            "DirResolver - Checking store state: {}",
            dirstore::hex(&digest)
        );
        self.send_request("$SYS.REQ.CLAIMS.PACK", &inbox, &digest);
    }

    /// `$SYS.REQ.CLAIMS.PACK`: another server's digest. The same as ours: an empty answer;
    /// otherwise every JWT, one `<account>|<jwt>` message each, then an empty one.
    fn answer_digest(&mut self, dir: &Path, theirs: &[u8], reply: &[u8]) -> Answer {
        let reply = String::from_utf8_lossy(reply).into_owned();
        let ours = dirstore::digest(dir);
        if theirs == ours {
            debug!(
                "DirResolver - Pack request matches hash {}",
                dirstore::hex(&ours)
            );
        } else {
            for line in dirstore::pack(dir, operator::unix_now()) {
                self.send(&self.system, &reply, line.as_bytes());
            }
            debug!(
                "DirResolver - Pack request hash {} - finished responding with hash {}",
                dirstore::hex(theirs),
                dirstore::hex(&ours)
            );
        }
        self.send(&self.system, &reply, &[]);
        Answer::Nothing
    }

    /// Another server's pack: each JWT issued after the one stored here (or for an account
    /// not stored here) is stored and put in force, as an update would be.
    fn merge(&mut self, dir: &Path, body: &[u8]) -> Answer {
        if body.is_empty() {
            debug!(
                "DirResolver - Merging finished and resulting in: {}",
                dirstore::hex(&dirstore::digest(dir))
            );
            return Answer::Nothing;
        }
        let before = dirstore::digest(dir);
        let lines = match dirstore::parse_pack(&String::from_utf8_lossy(body)) {
            Ok(lines) => lines,
            Err(why) => {
                error!("DirResolver - Merging resulted in error: {why}");
                return Answer::Nothing;
            }
        };
        for (key, token) in lines {
            let stored = std::fs::read_to_string(file(dir, &key)).ok();
            if !dirstore::is_newer(&token, stored.as_deref()) {
                continue;
            }
            let written = dirstore::has_room(dir, &key, limit(&self.shared.opts()))
                .and_then(|()| std::fs::write(file(dir, &key), &token).map_err(|e| e.to_string()));
            if let Err(why) = written {
                error!("DirResolver - Merging resulted in error: {why}");
                return Answer::Nothing;
            }
            let applied = self.shared.change_accounts(|opts| {
                operator::with_update(opts, &token, Some(&key)).map_err(|(_, why)| why)
            });
            if let Err(why) = applied {
                error!("DirResolver - Update for account {key:?} resulted in error {why}");
            }
        }
        debug!(
            "DirResolver - Merging succeeded and changed {} to {}",
            dirstore::hex(&before),
            dirstore::hex(&dirstore::digest(dir))
        );
        Answer::Nothing
    }
}

/// The full resolver's `limit` (0: none).
fn limit(opts: &crate::config::Options) -> i64 {
    match &opts.operator.resolver {
        Some(Resolver::Dir { kind, limit, .. }) if kind == "full" => *limit,
        _ => 0,
    }
}

/// A claims update's success, logged at debug level as nats-server logs it.
fn done(key: &str, message: &str) -> Answer {
    debug!("{message} - {key}");
    Answer::Data(serde_json::json!({"account": key, "code": 200, "message": message}))
}

/// A delete request checked as nats-server checks it: the accounts it names; or who signed
/// it (empty when unreadable) and why it is refused.
fn delete_request(
    opts: &crate::config::Options,
    token: &str,
) -> Result<Vec<String>, (String, String)> {
    use crate::proto::jwt;
    let claims: jwt::Claims<serde_json::Value> =
        jwt::decode(token, jwt::Kind::Other).map_err(|e| (String::new(), e.to_string()))?;
    let by = claims.sub.clone();
    let fail = |why: &str| Err((by.clone(), why.to_string()));
    let allowed = matches!(
        &opts.operator.resolver,
        Some(Resolver::Dir {
            allow_delete: true,
            ..
        })
    );
    if !allowed {
        return fail("delete must be enabled in server config");
    }
    if claims.sub != claims.iss {
        return fail("not self signed");
    }
    if !opts.operator.is_trusted(&claims.iss) {
        return fail("not trusted");
    }
    let Some(list) = claims.nats.get("accounts").and_then(|a| a.as_array()) else {
        return fail("malformed request");
    };
    let mut accounts = Vec::new();
    for entry in list {
        let key = entry.as_str().unwrap_or_default();
        if !key.starts_with('A') || nkeys::KeyPair::from_public_key(key).is_err() {
            return fail("malformed request");
        }
        if opts.system_account.as_deref() == Some(key) {
            return fail("not allowed to delete system account");
        }
        accounts.push(key.to_string());
    }
    Ok(accounts)
}
