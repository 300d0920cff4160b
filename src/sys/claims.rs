//! The full account resolver's requests (`resolver { type: full, dir }`), as nats-server
//! answers them: account JWTs pushed at run time through the system account are checked,
//! stored in the directory (one `<account>.jwt` file each) and put in force at once: new
//! accounts exist, changed ones take their new exports, imports, limits and revocations (the
//! connected clients are checked again, as on a reload).

use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use super::services::Answer;
use super::Sys;
use crate::config::operator::{self, Resolver};
use crate::state::events::SysRequest;
use crate::state::Shared;

/// The full resolver's directory, when the server runs one.
pub(super) fn directory(shared: &Shared) -> Option<PathBuf> {
    match &shared.opts().operator.resolver {
        Some(Resolver::Dir { kind, dir, .. }) if kind == "full" => Some(dir.clone()),
        _ => None,
    }
}

/// Makes the directory and stores in it the accounts known at start that it does not hold
/// yet (the preloaded ones), as nats-server does; logs where it is.
pub(super) fn prepare(shared: &Shared, dir: &Path) {
    if let Err(err) = std::fs::create_dir_all(dir) {
        error!("Error creating jwt directory {}: {err}", dir.display());
        return;
    }
    info!("Managing all jwt in exclusive directory {}", dir.display());
    for (key, account) in &shared.opts().operator.accounts {
        let path = file(dir, key);
        if !path.exists() {
            if let Err(err) = std::fs::write(&path, &account.jwt) {
                warn!("Error storing account jwt {}: {err}", path.display());
            }
        }
    }
}

fn file(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.jwt"))
}

impl Sys {
    /// `UPDATE`, `LOOKUP` or `LIST`.
    pub(super) fn claims(&mut self, op: &str, req: &SysRequest) -> Answer {
        let Some(dir) = directory(&self.shared) else {
            return Answer::Nothing;
        };
        // `$SYS.REQ.ACCOUNT.<acc>.CLAIMS.<OP>` names the account; the short forms do not.
        let subject = String::from_utf8_lossy(&req.subject);
        let named = subject
            .strip_prefix("$SYS.REQ.ACCOUNT.")
            .and_then(|rest| rest.split('.').next())
            .map(str::to_string);
        match op {
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
            "LIST" => {
                let mut keys: Vec<String> = self
                    .shared
                    .opts()
                    .operator
                    .accounts
                    .keys()
                    .cloned()
                    .collect();
                keys.sort();
                let server = serde_json::to_value(self.server_info()).unwrap_or_default();
                Answer::Document(serde_json::json!({"data": keys, "server": server}))
            }
            _ => Answer::Nothing,
        }
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
        let mut new = (*opts).clone();
        for key in &accounts {
            let _ = std::fs::remove_file(file(dir, key));
            new.operator.accounts.remove(key);
            new.operator.preload.retain(|(k, _, _)| k != key);
        }
        operator::expand_accounts(&mut new);
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
        if let Err(why) = self.shared.reload(new) {
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
        let (new, key) = match operator::with_update(&opts, &token, named) {
            Ok(done) => done,
            Err((acc, why)) => return refused(acc, why),
        };
        if let Err(err) = std::fs::write(file(dir, &key), token.trim()) {
            return refused(key, err.to_string());
        }
        if let Err(why) = self.shared.reload(new) {
            return refused(key, why);
        }
        Answer::Data(serde_json::json!({
            "account": key,
            "code": 200,
            "message": "jwt updated",
        }))
    }
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
