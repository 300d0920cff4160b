//! `/jsz`: JetStream's configuration and totals, and with `accounts`, `streams`, `consumers`
//! and `config` each account's detail (nats-server's `JSInfo`, server/monitor.go); also the
//! `jetstream` object of `/varz`. The numbers come from [`crate::state::jetstream`], which the
//! JetStream service fills in.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::http::{Request, Response};
use super::{bool_param, rfc3339};
use crate::state::jetstream::{JetStreamConfig, JetStreamStats, JszDetail};
use crate::state::Shared;

/// nats-server's default `max_consumers` per stream in its limits block.
const DEFAULT_MAX_CONSUMERS: u32 = 1000;

/// The usage part of `/jsz` and of `/varz`'s `jetstream.stats` (`JetStreamStats`).
#[derive(Debug, Serialize)]
pub struct Stats {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: Api,
}

/// `api`: the level and the requests answered, with errors.
#[derive(Debug, Serialize)]
pub struct Api {
    pub level: u32,
    pub total: u64,
    pub errors: u64,
}

/// `limits`.
#[derive(Debug, Serialize)]
pub struct Limits {
    pub default_max_consumers: u32,
}

/// The `/jsz` document, in nats-server's field order.
#[derive(Debug, Serialize)]
pub struct Jsz {
    #[serde(flatten)]
    pub stats: Stats,
    pub server_id: String,
    pub now: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    pub config: JetStreamConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_details: Vec<Value>,
    pub total: u64,
}

/// `/varz`'s `jetstream` when JetStream is on.
#[derive(Debug, Serialize)]
pub struct JetStreamVarz {
    pub config: JetStreamConfig,
    pub stats: Stats,
    pub limits: Limits,
}

/// The totals `s`, under JetStream running with `config`.
fn stats(s: &JetStreamStats, config: Option<&JetStreamConfig>) -> Stats {
    Stats {
        memory: s.memory,
        storage: s.storage,
        reserved_memory: 0,
        reserved_storage: 0,
        accounts: s.accounts,
        ha_assets: 0,
        api: Api {
            level: config.map_or(0, |c| c.api_level),
            total: s.api_total,
            errors: s.api_errors,
        },
    }
}

/// `/varz`'s `jetstream`: `None` (shown as `{}`) when JetStream is off.
pub fn varz(shared: &Shared) -> Option<JetStreamVarz> {
    let config = shared.jetstream.config()?;
    Some(JetStreamVarz {
        stats: stats(&shared.jetstream.stats(), Some(&config)),
        config,
        limits: Limits {
            default_max_consumers: DEFAULT_MAX_CONSUMERS,
        },
    })
}

/// The detail `req` asks for (`streams` implies `accounts`, `consumers` implies `streams`),
/// or nats-server's error for a flag it cannot read.
fn detail(req: &Request) -> Result<Option<JszDetail>, Response> {
    let accounts = bool_param(req, "accounts")?;
    let streams = bool_param(req, "streams")?;
    let consumers = bool_param(req, "consumers")?;
    let config = bool_param(req, "config")?;
    let account = req
        .param("acc")
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    if !(accounts || streams || consumers || account.is_some()) {
        return Ok(None);
    }
    Ok(Some(JszDetail {
        account,
        streams: streams || consumers,
        consumers,
        config,
    }))
}

/// The `/jsz` response.
pub async fn jsz(shared: &Shared, req: &Request) -> Response {
    match detail(req) {
        Ok(detail) => super::json(&build(shared, detail).await),
        Err(response) => response,
    }
}

/// The `/jsz` document, with each account's `detail` when asked (the system account's `JSZ`
/// requests answer with it too).
pub async fn build(shared: &Shared, detail: Option<JszDetail>) -> Jsz {
    let config = shared.jetstream.config();
    let enabled = config.is_some();
    let totals = shared.jetstream.stats();
    let account_details = match (detail, enabled) {
        (Some(detail), true) => shared
            .jetstream
            .account_details(detail)
            .await
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Jsz {
        stats: stats(&totals, config.as_ref()),
        server_id: shared.server_id.clone(),
        now: rfc3339(SystemTime::now()),
        disabled: !enabled,
        config: config.unwrap_or_default(),
        limits: enabled.then_some(Limits {
            default_max_consumers: DEFAULT_MAX_CONSUMERS,
        }),
        streams: totals.streams,
        consumers: totals.consumers,
        messages: totals.messages,
        bytes: totals.bytes,
        account_details,
        total: totals.accounts,
    }
}
