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

    fn update(&mut self, dir: &Path, body: &[u8], named: Option<&str>) -> Answer {
        let token = String::from_utf8_lossy(body);
        let opts = self.shared.opts();
        let refused = |acc: String, why: String| {
            error!("jwt update resulted in error - {acc} - {why}");
            Answer::ClaimError(acc, format!("jwt update resulted in error - {why}"))
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
