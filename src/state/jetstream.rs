//! JetStream as the layers below it see it: what it runs with and its totals, which the
//! JetStream service fills in as it works, and a way to ask it for each account's detail. The
//! monitor (`/varz`, `/jsz`) reads them without knowing JetStream's types.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

/// How long the monitor waits for the JetStream task to describe its accounts.
const DETAIL_WAIT: Duration = Duration::from_secs(5);

/// What JetStream runs with (nats-server's `JetStreamConfig`, as `/jsz` and `/varz` show it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JetStreamConfig {
    /// Bytes memory streams may hold.
    pub max_memory: i64,
    /// Bytes file streams may hold.
    pub max_storage: i64,
    /// `<store_dir>/jetstream`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub store_dir: String,
    /// `sync_interval` in nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub sync_interval: u64,
    /// `sync_interval: always`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_always: bool,
    /// `domain`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// `strict`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// The API level advertised (shown in `api`, not here).
    #[serde(skip)]
    pub api_level: u32,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// JetStream's totals over every account that has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JetStreamStats {
    /// Bytes held by memory streams.
    pub memory: u64,
    /// Bytes held by file streams.
    pub storage: u64,
    /// Accounts with JetStream.
    pub accounts: u64,
    /// Streams.
    pub streams: u64,
    /// Consumers.
    pub consumers: u64,
    /// Messages held.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// `$JS.API` requests answered.
    pub api_total: u64,
    /// Of which answered with an error.
    pub api_errors: u64,
}

/// How much of each account `/jsz` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JszDetail {
    /// Only this account (`acc`).
    pub account: Option<String>,
    /// Each stream (`streams`).
    pub streams: bool,
    /// Each stream's consumers (`consumers`).
    pub consumers: bool,
    /// Stream and consumer configurations (`config`).
    pub config: bool,
}

/// A request for the accounts' detail, answered with one JSON object per account.
#[derive(Debug)]
pub struct JszQuery {
    /// What to describe.
    pub detail: JszDetail,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Vec<Value>>,
}

/// JetStream's face to the monitor: unset while JetStream is off.
#[derive(Debug, Default)]
pub struct JetStreamState {
    /// Its configuration and where to send detail queries, once started. Guards only them.
    running: Mutex<Option<(JetStreamConfig, UnboundedSender<JszQuery>)>>,
    /// The totals, replaced whole by the service after each change. Guards only them.
    stats: Mutex<JetStreamStats>,
}

impl JetStreamState {
    /// JetStream started with `config`; detail queries go to `queries`.
    pub fn start(&self, config: JetStreamConfig, queries: UnboundedSender<JszQuery>) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some((config, queries));
    }

    /// What JetStream runs with, when it is on.
    pub fn config(&self) -> Option<JetStreamConfig> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.as_ref().map(|(config, _)| config.clone())
    }

    /// Replaces the totals.
    pub fn set_stats(&self, stats: JetStreamStats) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats;
    }

    /// The latest totals.
    pub fn stats(&self) -> JetStreamStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Each account's detail as `/jsz` shows it; `None` when JetStream is off or does not
    /// answer in time.
    pub async fn account_details(&self, detail: JszDetail) -> Option<Vec<Value>> {
        let queries = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running.as_ref()?.1.clone()
        };
        let (reply, answer) = oneshot::channel();
        queries.send(JszQuery { detail, reply }).ok()?;
        tokio::time::timeout(DETAIL_WAIT, answer).await.ok()?.ok()
    }
}
