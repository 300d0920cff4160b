//! `/accountz` (the accounts, or one account's details: exports, imports, sublist) and
//! `/accstatz` (per-account connection and message counts), as nats-server builds them. The
//! documents are built from typed options so that the system account's `ACCOUNTZ`, `INFO`,
//! `STATZ` and `CONNS` services return the same JSON.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::subsz::{sublist_stats, SublistStats};
use super::{bad_request, bool_param, rfc3339};
use crate::config::accounts::Flow;
use crate::engine::account::{Account, ResponseType};
use crate::monitor::http::{Request, Response};
use crate::state::accounts::{system_account_name, SYSTEM_IMPORTS};
use crate::state::Shared;

/// What an `/accountz` request asks for: nats-server's `AccountzOptions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountzOptions {
    /// `account` (`acc=` over HTTP): this account's details instead of the list.
    pub account: String,
}

/// What an `/accstatz` request asks for: nats-server's `AccountStatzOptions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccountStatzOptions {
    /// `accounts` (`acc=` over HTTP): only these.
    pub accounts: Vec<String>,
    /// `include_unused` (`unused=1`): accounts without connections too.
    pub include_unused: bool,
}

/// One account's details, nats-server's `AccountInfo`.
#[derive(Debug, Serialize)]
pub struct AccountDetail {
    account_name: String,
    update_time: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    is_system: bool,
    expired: bool,
    complete: bool,
    jetstream_enabled: bool,
    leafnode_connections: u64,
    client_connections: usize,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exports: Vec<ExportInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    imports: Vec<ImportInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer_key: Option<String>,
    name_tag: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decoded_jwt: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    revoked_user: std::collections::BTreeMap<String, String>,
    sublist_stats: SublistStats,
}

/// One export in [`AccountDetail`].
#[derive(Debug, Serialize)]
struct ExportInfo {
    subject: String,
    #[serde(rename = "type")]
    flow: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    token_req: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_type: Option<&'static str>,
}

/// One import in [`AccountDetail`]: `subject` is the exporter's, `to`/`local_subject` the
/// importer's.
#[derive(Debug, Serialize)]
struct ImportInfo {
    subject: String,
    account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_subject: Option<String>,
    #[serde(rename = "type")]
    flow: &'static str,
    invalid: bool,
    share: bool,
    tracking: bool,
}

/// One account's counters, nats-server's `AccountStatz` entry (also the `CONNS` advisory's
/// body).
#[derive(Debug, Clone, Serialize)]
pub struct AccountStat {
    /// The account.
    pub acc: String,
    /// Its name (the same without JWTs).
    pub name: String,
    /// Client connections now.
    pub conns: usize,
    /// Leaf node connections (none: no leaf nodes yet).
    pub leafnodes: usize,
    /// Connections of both kinds.
    pub total_conns: usize,
    /// Subscriptions in its sublist.
    pub num_subscriptions: usize,
    /// Messages its clients were sent.
    pub sent: DataStats,
    /// Messages its clients published.
    pub received: DataStats,
    /// Its clients closed as slow consumers.
    pub slow_consumers: u64,
}

/// Message and byte counts, split by where they went (only clients in tern).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataStats {
    /// Messages.
    pub msgs: u64,
    /// Bytes.
    pub bytes: u64,
    /// Over gateways.
    pub gateways: MsgBytes,
    /// Over routes.
    pub routes: MsgBytes,
    /// Over leaf nodes.
    pub leafs: MsgBytes,
}

/// A message and byte count.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MsgBytes {
    /// Messages.
    pub msgs: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The `/accstatz` document.
#[derive(Debug, Serialize)]
pub struct Accstatz {
    server_id: String,
    now: String,
    account_statz: Vec<AccountStat>,
}

impl Accstatz {
    /// The accounts listed.
    pub fn account_statz(&self) -> &[AccountStat] {
        &self.account_statz
    }
}

/// The `/accountz` response: `acc=` for one account's details (an unknown one is a 400).
pub fn accountz(shared: &Shared, req: &Request) -> Response {
    let opts = AccountzOptions {
        account: req.param("acc").unwrap_or_default().to_string(),
    };
    match build_accountz(shared, &opts) {
        Ok(doc) => super::json(&doc),
        Err(text) => bad_request(text),
    }
}

/// The `/accstatz` response: `unused=1` includes accounts without connections; `acc=` (comma
/// separated) picks accounts.
pub fn accstatz(shared: &Shared, req: &Request) -> Response {
    let include_unused = match bool_param(req, "unused") {
        Ok(on) => on,
        Err(response) => return response,
    };
    let accounts = req
        .param("acc")
        .unwrap_or_default()
        .split(',')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    let opts = AccountStatzOptions {
        accounts,
        include_unused,
    };
    super::json(&build_accstatz(shared, &opts))
}

/// The `/accountz` document; the error is nats-server's text for an unknown account.
pub fn build_accountz(
    shared: &Shared,
    opts: &AccountzOptions,
) -> Result<serde_json::Value, String> {
    let sys_opts = shared.opts();
    let mut doc = serde_json::json!({
        "server_id": shared.server_id,
        "now": rfc3339(SystemTime::now()),
    });
    if let Some(system) = system_account_name(&sys_opts) {
        doc["system_account"] = system.into();
    }
    if opts.account.is_empty() {
        let names: Vec<String> = accounts_in_order(shared)
            .iter()
            .map(|a| a.name.to_string())
            .collect();
        doc["accounts"] = names.into();
        return Ok(doc);
    }
    let account = shared
        .router
        .account(&opts.account)
        .ok_or_else(|| format!("Account {} does not exist", opts.account))?;
    doc["account_detail"] = serde_json::to_value(account_detail(shared, &account))
        .map_err(|e| format!("Error marshaling response: {e}"))?;
    Ok(doc)
}

/// The accounts in a stable order: `$G` first, then by name.
fn accounts_in_order(shared: &Shared) -> Vec<Arc<Account>> {
    let mut accounts = shared.router.accounts();
    accounts.sort_by(|a, b| {
        let global = |a: &Account| *a.name != *crate::engine::account::GLOBAL_ACCOUNT;
        (global(a), &a.name).cmp(&(global(b), &b.name))
    });
    accounts
}

/// One account's details, with its configured exports and imports and the imports every
/// account gets from the system account.
pub fn account_detail(shared: &Shared, account: &Account) -> AccountDetail {
    let opts = shared.opts();
    let config = opts.accounts.iter().find(|a| *a.name == *account.name);
    let system = system_account_name(&opts);
    let is_system = account.is_system.load(Ordering::Relaxed);
    // Operator mode: the account's JWT.
    let jwt_account = opts.operator.account(&account.name);
    let mut exports: Vec<ExportInfo> = Vec::new();
    if is_system {
        // What nats-server's system account exports to every account.
        for (subject, kind) in [
            ("$SYS.DEBUG.SUBSCRIBERS", "Singleton"),
            ("$SYS.REQ.USER.*.INFO", "Singleton"),
            ("$SYS.REQ.ACCOUNT.*.CONNZ", "Streamed"),
            ("$SYS.REQ.ACCOUNT.*.STATZ", "Streamed"),
        ] {
            exports.push(ExportInfo {
                subject: subject.into(),
                flow: "service",
                token_req: false,
                response_type: Some(kind),
            });
        }
    }
    for export in config.iter().flat_map(|c| &c.exports) {
        exports.push(ExportInfo {
            subject: export.subject.clone(),
            flow: export.flow.as_str(),
            token_req: export.accounts.is_some() && jwt_account.is_some(),
            response_type: (export.flow == Flow::Service)
                .then_some(response_type_name(export.response_type)),
        });
    }
    let mut imports = Vec::new();
    if let Some(system) = system {
        for (local, _, share) in SYSTEM_IMPORTS {
            if is_system && !share {
                continue;
            }
            // The exporter's subject: the account's name in place of `PING` (or after USER).
            let remote = match local {
                "$SYS.REQ.USER.INFO" => format!("$SYS.REQ.USER.{}.INFO", account.name),
                "$SYS.REQ.ACCOUNT.PING.STATZ" => format!("$SYS.REQ.ACCOUNT.{}.STATZ", account.name),
                _ => format!("$SYS.REQ.ACCOUNT.{}.CONNZ", account.name),
            };
            imports.push(ImportInfo {
                subject: remote,
                account: system.to_string(),
                to: Some(local.to_string()),
                local_subject: Some(local.to_string()),
                flow: "service",
                invalid: false,
                share,
                tracking: false,
            });
        }
    }
    for import in config.iter().flat_map(|c| &c.imports) {
        let local = match (import.flow, &import.prefix, &import.to) {
            (Flow::Stream, Some(prefix), _) => format!("{prefix}.{}", import.subject),
            (_, _, Some(to)) => to.clone(),
            _ => import.subject.clone(),
        };
        imports.push(ImportInfo {
            subject: import.subject.clone(),
            account: import.account.clone(),
            to: (import.flow == Flow::Service).then(|| local.clone()),
            local_subject: Some(local),
            flow: import.flow.as_str(),
            invalid: false,
            share: false,
            tracking: false,
        });
    }
    let subscriptions = account.subscription_count();
    AccountDetail {
        account_name: account.name.to_string(),
        update_time: rfc3339(shared.config_load_time()),
        is_system,
        expired: false,
        complete: true,
        jetstream_enabled: false,
        leafnode_connections: account.leaf_count() as u64,
        client_connections: account.clients.load(Ordering::Relaxed),
        subscriptions,
        exports,
        imports,
        jwt: jwt_account.map(|a| a.jwt.clone()),
        issuer_key: jwt_account.map(|a| a.claims.iss.clone()),
        name_tag: jwt_account
            .map(|a| a.claims.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| account.name.to_string()),
        tags: jwt_account
            .map(|a| a.claims.nats.tags.clone())
            .unwrap_or_default(),
        decoded_jwt: jwt_account.and_then(|a| decoded(&a.jwt)),
        revoked_user: jwt_account
            .map(|a| {
                let at = |secs: i64| {
                    let secs = u64::try_from(secs).unwrap_or_default();
                    rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
                };
                a.claims
                    .nats
                    .revocations
                    .iter()
                    .map(|(key, &secs)| (key.clone(), at(secs)))
                    .collect()
            })
            .unwrap_or_default(),
        sublist_stats: sublist_stats(account.sublist_counts(), subscriptions),
    }
}

/// An account JWT's claims as nats-server shows them (`decoded_jwt`): as signed, with the
/// fields nats-jwt always writes when it encodes them again.
fn decoded(token: &str) -> Option<serde_json::Value> {
    let mut claims = crate::proto::jwt::claims_json(token)?;
    let nats = claims.get_mut("nats")?.as_object_mut()?;
    nats.entry("authorization")
        .or_insert_with(|| serde_json::json!({}));
    let perms = nats
        .entry("default_permissions")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(perms) = perms.as_object_mut() {
        perms.entry("pub").or_insert_with(|| serde_json::json!({}));
        perms.entry("sub").or_insert_with(|| serde_json::json!({}));
    }
    let keys = nats.get_mut("signing_keys").and_then(|k| k.as_array_mut());
    // nats-jwt keeps signing keys in a map: they come out in key order.
    let key_of = |k: &serde_json::Value| {
        k.as_str()
            .or_else(|| k.get("key").and_then(|k| k.as_str()))
            .unwrap_or_default()
            .to_string()
    };
    if let Some(keys) = keys {
        keys.sort_by_key(key_of);
    }
    for key in nats
        .get_mut("signing_keys")
        .and_then(|k| k.as_array_mut())
        .into_iter()
        .flatten()
    {
        if let Some(scoped) = key.as_object_mut() {
            scoped
                .entry("description")
                .or_insert_with(|| serde_json::json!(""));
        }
    }
    Some(claims)
}

/// A time to the second, as Go marshals a `time.Time` without fraction (`...T19:45:12Z`).
fn rfc3339_seconds(t: SystemTime) -> String {
    let text = rfc3339(t);
    match text.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => text,
    }
}

/// nats-server's name for a service export's response type.
fn response_type_name(kind: ResponseType) -> &'static str {
    match kind {
        ResponseType::Singleton => "Singleton",
        ResponseType::Stream => "Streamed",
        ResponseType::Chunked => "Chunked",
    }
}

/// The `/accstatz` document.
pub fn build_accstatz(shared: &Shared, opts: &AccountStatzOptions) -> Accstatz {
    let account_statz = accounts_in_order(shared)
        .iter()
        .filter(|a| opts.accounts.is_empty() || opts.accounts.iter().any(|n| **n == *a.name))
        .map(|a| account_stat(shared, a))
        .filter(|s| opts.include_unused || s.conns > 0)
        .collect();
    Accstatz {
        server_id: shared.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        account_statz,
    }
}

/// One account's counters: its live and closed connections' messages, and its slow consumers.
pub fn account_stat(shared: &Shared, account: &Account) -> AccountStat {
    let closed = account.closed_totals();
    let mut sent = DataStats {
        msgs: closed.out_msgs,
        bytes: closed.out_bytes,
        ..DataStats::default()
    };
    let mut received = DataStats {
        msgs: closed.in_msgs,
        bytes: closed.in_bytes,
        ..DataStats::default()
    };
    for conn in shared.router.connections_snapshot() {
        if *conn.account().name == *account.name {
            let counts = conn.counts();
            sent.msgs += counts.out_msgs;
            sent.bytes += counts.out_bytes;
            received.msgs += counts.in_msgs;
            received.bytes += counts.in_bytes;
        }
    }
    let conns = account.clients.load(Ordering::Relaxed);
    AccountStat {
        acc: account.name.to_string(),
        name: account.name.to_string(),
        conns,
        leafnodes: account.leaf_count(),
        total_conns: conns,
        num_subscriptions: account.subscription_count(),
        sent,
        received,
        slow_consumers: closed.slow_consumers,
    }
}
