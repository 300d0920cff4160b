//! What one account's JetStream reports to the monitor: its totals, and its detail as
//! nats-server's `/jsz` shows it (`AccountDetail`, `StreamDetail`, server/monitor.go).

use serde_json::{json, Map, Value};

use super::consumers::consumer_info;
use super::{time, AccountJs};
use crate::jetstream::stream::Storage;
use crate::state::jetstream::{JetStreamStats, JszDetail};

/// nats-server shows an account's reservations as Go's `-1` cast to an unsigned 64-bit int.
const NO_RESERVATION: u64 = u64::MAX;

impl AccountJs {
    /// Whether JetStream is on for this account.
    pub fn enabled(&self) -> bool {
        !self.disabled
    }

    /// Adds this account's totals to `stats`.
    pub fn add_usage(&self, stats: &mut JetStreamStats) {
        if self.disabled {
            return;
        }
        stats.accounts += 1;
        for stream in self.streams.values() {
            let state = stream.state();
            match stream.config.storage {
                Storage::Memory => stats.memory += state.bytes,
                Storage::File => stats.storage += state.bytes,
            }
            stats.streams += 1;
            stats.consumers += stream.consumers.len() as u64;
            stats.messages += state.messages;
            stats.bytes += state.bytes;
        }
        stats.api_total += self.total;
        stats.api_errors += self.errors;
    }

    /// The account `name` as `/jsz?accounts=true` shows it, with its streams (and their
    /// consumers, and configurations) as `detail` asks; `leader` is the server's name.
    pub fn jsz_account(&self, name: &str, detail: &JszDetail, now: i64, leader: &str) -> Value {
        let mut usage = JetStreamStats::default();
        self.add_usage(&mut usage);
        let mut account = Map::new();
        account.insert("name".into(), json!(name));
        account.insert("id".into(), json!(name));
        account.insert("memory".into(), json!(usage.memory));
        account.insert("storage".into(), json!(usage.storage));
        account.insert("reserved_memory".into(), json!(NO_RESERVATION));
        account.insert("reserved_storage".into(), json!(NO_RESERVATION));
        account.insert("accounts".into(), json!(0));
        account.insert("ha_assets".into(), json!(0));
        account.insert(
            "api".into(),
            json!({"level": crate::jetstream::API_LEVEL, "total": self.total, "errors": self.errors}),
        );
        if detail.streams || detail.consumers {
            let streams: Vec<Value> = self
                .streams
                .values()
                .map(|stream| {
                    let mut s = Map::new();
                    s.insert("name".into(), json!(stream.config.name));
                    s.insert("created".into(), json!(time(stream.created)));
                    s.insert("cluster".into(), json!({ "leader": leader }));
                    if detail.config {
                        s.insert("config".into(), json!(stream.config));
                    }
                    let info = super::stream_info(stream, now, false);
                    if let Some(state) = info.get("state") {
                        s.insert("state".into(), state.clone());
                    }
                    if detail.consumers && !stream.consumers.is_empty() {
                        let consumers: Vec<Value> = stream
                            .consumers
                            .keys()
                            .map(|c| {
                                let mut info = consumer_info(stream, c, now, false);
                                if !detail.config {
                                    info.remove("config");
                                }
                                Value::Object(info)
                            })
                            .collect();
                        s.insert("consumer_detail".into(), json!(consumers));
                    }
                    Value::Object(s)
                })
                .collect();
            if !streams.is_empty() {
                account.insert("stream_detail".into(), json!(streams));
            }
        }
        Value::Object(account)
    }
}
