//! A stream: its configuration as clients send and read it (nats-server's `StreamConfig`, with
//! its defaults and checks), and what happens to a message published into it (headers checked,
//! duplicates, limits). Pure: time is given as nanoseconds since the Unix epoch.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::consumer::{Action, Consumer};
use super::errors::ApiError;
use super::store::{StoreState, StreamStore};
use crate::proto::subject;

/// nats-server's default duplicate window: 2 minutes.
const DEFAULT_DUPLICATE_WINDOW: i64 = 120_000_000_000;

/// The shortest `max_age` nats-server accepts: 100 ms.
const MIN_MAX_AGE: i64 = 100_000_000;

/// `retention`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Kept until a limit removes them.
    #[default]
    Limits,
    /// Kept while a consumer has not acknowledged them.
    Interest,
    /// Removed once a consumer acknowledges them.
    WorkQueue,
}

/// `discard`: what to do at a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Drop the oldest messages.
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

/// `storage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk (nats-server's default).
    #[default]
    File,
    /// In memory.
    Memory,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn none() -> String {
    "none".into()
}

/// A stream's configuration, with nats-server's field names and order; fields a request may
/// leave out default as in Go. Features tern does not have are read so that they can be
/// refused, never ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamConfig {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `subjects` (the name alone when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// `retention`.
    #[serde(default)]
    pub retention: Retention,
    /// `max_consumers` (-1 for no limit).
    #[serde(default)]
    pub max_consumers: i64,
    /// `max_msgs` (-1 for no limit).
    #[serde(default)]
    pub max_msgs: i64,
    /// `max_bytes` (-1 for no limit).
    #[serde(default)]
    pub max_bytes: i64,
    /// `max_age` in nanoseconds (0 for no limit).
    #[serde(default)]
    pub max_age: i64,
    /// `max_msgs_per_subject` (-1 for no limit).
    #[serde(default)]
    pub max_msgs_per_subject: i64,
    /// `max_msg_size` (-1 for no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_msg_size: i64,
    /// `discard`.
    #[serde(default)]
    pub discard: Discard,
    /// `discard_new_per_subject`: with `discard: new`, a subject at `max_msgs_per_subject`
    /// refuses new messages instead of dropping its oldest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discard_new_per_subject: bool,
    /// `storage`.
    #[serde(default)]
    pub storage: Storage,
    /// `num_replicas`.
    #[serde(default)]
    pub num_replicas: i64,
    /// `no_ack`: publishes get no PubAck.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_ack: bool,
    /// `duplicate_window` in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicate_window: i64,
    /// `compression`: `none` or `s2`.
    #[serde(default = "none")]
    pub compression: String,
    /// `allow_direct`.
    #[serde(default)]
    pub allow_direct: bool,
    /// `mirror_direct`.
    #[serde(default)]
    pub mirror_direct: bool,
    /// `sealed`.
    #[serde(default)]
    pub sealed: bool,
    /// `deny_delete`.
    #[serde(default)]
    pub deny_delete: bool,
    /// `deny_purge`.
    #[serde(default)]
    pub deny_purge: bool,
    /// `allow_rollup_hdrs`.
    #[serde(default)]
    pub allow_rollup_hdrs: bool,
    /// `consumer_limits`.
    #[serde(default)]
    pub consumer_limits: serde_json::Map<String, serde_json::Value>,
    /// `allow_msg_ttl`.
    #[serde(default)]
    pub allow_msg_ttl: bool,
    /// `metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Features tern does not have yet, by name, when a request sets them (refused).
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The request fields tern refuses when they are set to something other than null, false, 0 or
/// empty: accepting them would store the stream without what they ask for.
const NOT_YET: [&str; 12] = [
    "allow_atomic",
    "allow_msg_counter",
    "allow_msg_schedules",
    "allow_batched",
    "persist_mode",
    "mirror",
    "sources",
    "republish",
    "subject_transform",
    "first_seq",
    "subject_delete_marker_ttl",
    "placement",
];

impl StreamConfig {
    /// Whether the stream keeps its messages in memory and lets them go in about the order they
    /// came: limits retention, no per-subject limit and no rollups, so only the stream's own
    /// limits (oldest first) and the rare explicit delete remove one. Such a stream's payloads
    /// are packed into shared chunks as they are read ([`crate::engine::deliver::Deliveries::pack`]):
    /// a chunk is freed once all its messages are, which for a key-value bucket (per-subject
    /// history) or a work queue (acks in any order) could hold a chunk per live message.
    pub fn drops_in_order(&self) -> bool {
        self.storage == Storage::Memory
            && self.retention == Retention::Limits
            && self.max_msgs_per_subject <= 0
            && !self.allow_rollup_hdrs
    }

    /// Applies nats-server's defaults (`checkStreamCfg`) and refuses what is invalid or what
    /// tern cannot do yet.
    pub fn normalize(mut self) -> Result<StreamConfig, ApiError> {
        let invalid = |why: &str| ApiError::new(500, 10052, why.to_string());
        if self.name.is_empty() {
            return Err(invalid("stream name is required"));
        }
        if !valid_name(&self.name) {
            return Err(ApiError::new(
                400,
                10052,
                "stream name can not contain '.', '*', '>' or whitespace".into(),
            ));
        }
        for limit in [
            &mut self.max_msgs,
            &mut self.max_bytes,
            &mut self.max_msgs_per_subject,
            &mut self.max_msg_size,
            &mut self.max_consumers,
        ] {
            if *limit == 0 || *limit < -1 {
                *limit = -1;
            }
        }
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.num_replicas > 1 {
            return Err(ApiError::new(
                500,
                10074,
                "replicas > 1 not supported in non-clustered mode".into(),
            ));
        }
        if self.max_age < 0 {
            return Err(invalid("max age needs to be >= 0"));
        }
        if self.max_age != 0 && self.max_age < MIN_MAX_AGE {
            return Err(invalid("max age needs to be >= 100ms"));
        }
        if self.duplicate_window == 0 {
            self.duplicate_window = DEFAULT_DUPLICATE_WINDOW;
            if self.max_age != 0 && self.max_age < self.duplicate_window {
                self.duplicate_window = self.max_age;
            }
        } else if self.max_age != 0 && self.duplicate_window > self.max_age {
            return Err(invalid("duplicates window can not be larger then max age"));
        }
        if self.deny_purge && self.allow_rollup_hdrs {
            return Err(invalid("roll-ups require the purge permission"));
        }
        if self.discard_new_per_subject {
            if self.discard != Discard::New {
                return Err(invalid(
                    "discard new per subject requires discard new policy to be set",
                ));
            }
            if self.max_msgs_per_subject <= 0 {
                return Err(invalid(
                    "discard new per subject requires max msgs per subject > 0",
                ));
            }
        }
        if self.subjects.is_empty() {
            self.subjects = vec![self.name.clone()];
        }
        for s in &self.subjects {
            if !subject::is_valid_filter(s.as_bytes()) {
                return Err(invalid("invalid subject"));
            }
            let t = |prefix: &str| s.starts_with(prefix) || s == ">";
            if t("$JS.") && !s.starts_with("$JS.EVENT.") || t("$JSC.") || t("$NRG.") {
                return Err(ApiError::new(
                    400,
                    10052,
                    "subjects that overlap with jetstream api require no-ack to be true".into(),
                ));
            }
        }
        let tern_lacks =
            |what: &str| ApiError::new(500, 10052, format!("{what} is not supported by tern yet"));
        if self.compression != "none" && !self.compression.is_empty() {
            return Err(tern_lacks("compression"));
        }
        self.compression = "none".into();
        for (flag, what) in [
            (self.allow_msg_ttl, "allow_msg_ttl"),
            (self.mirror_direct, "mirror_direct"),
        ] {
            if flag {
                return Err(tern_lacks(what));
            }
        }
        if !self.consumer_limits.is_empty() {
            return Err(tern_lacks("consumer_limits"));
        }
        if let Some(key) = crate::jetstream::errors::first_set(&self.other, &NOT_YET) {
            return Err(tern_lacks(key));
        }
        self.other.clear();
        // nats-server stores the API level the request required (none: "0").
        self.metadata
            .get_or_insert_with(BTreeMap::new)
            .entry("_nats.req.level".into())
            .or_insert_with(|| "0".into());
        Ok(self)
    }

    /// Equal for an idempotent create: the same configuration but for the `_nats.*` metadata
    /// the server adds.
    pub fn same_as(&self, other: &StreamConfig) -> bool {
        let strip = |c: &StreamConfig| {
            let mut c = c.clone();
            if let Some(m) = c.metadata.as_mut() {
                m.retain(|k, _| !k.starts_with("_nats."));
                if m.is_empty() {
                    c.metadata = None;
                }
            }
            c
        };
        strip(self) == strip(other)
    }

    /// The configuration as an API response shows it: with the server's dynamic metadata
    /// (`_nats.level`, `_nats.ver`) added.
    pub fn with_dynamic_metadata(&self) -> StreamConfig {
        let mut c = self.clone();
        let m = c.metadata.get_or_insert_with(BTreeMap::new);
        m.insert("_nats.level".into(), super::API_LEVEL.to_string());
        m.insert(
            "_nats.ver".into(),
            crate::proto::protocol::NATS_SERVER_VERSION.into(),
        );
        c
    }
}

/// nats-server's `isValidName`: not empty, none of ` \t\r\n\f.*>/\`, at most 255 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| {
            matches!(
                c,
                ' ' | '\t' | '\r' | '\n' | '\x0c' | '.' | '*' | '>' | '/' | '\\'
            )
        })
}

/// What a publish into the stream came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubOutcome {
    /// Stored at this sequence.
    Stored(u64),
    /// A duplicate of the message stored at this sequence (`Nats-Msg-Id`), not stored again.
    Duplicate(u64),
}

/// A stream: configuration, messages and the message ids seen within the duplicate window.
pub struct Stream {
    /// The configuration in force.
    pub config: StreamConfig,
    /// When it was created, in nanoseconds since the Unix epoch.
    pub created: i64,
    store: Box<dyn StreamStore>,
    /// `Nats-Msg-Id` -> the sequence it was stored at.
    msg_ids: HashMap<String, u64>,
    /// The ids in the order they were stored, with their time, for pruning.
    msg_id_times: VecDeque<(i64, String)>,
    /// The `Nats-Msg-Id` of the last message stored, empty when it had none
    /// (`Nats-Expected-Last-Msg-Id` compares with it).
    last_msg_id: String,
    /// The three above are still to be read from the store (a recovered stream: as
    /// nats-server, they are rebuilt when a publish first needs them, not at start).
    msg_ids_unread: bool,
    /// Its consumers by name.
    pub consumers: BTreeMap<String, Consumer>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("config", &self.config)
            .field("state", &self.store.state())
            .finish()
    }
}

impl Stream {
    /// A new, empty stream over `store`.
    pub fn new(config: StreamConfig, store: Box<dyn StreamStore>, created: i64) -> Stream {
        Stream {
            config,
            created,
            store,
            msg_ids: HashMap::new(),
            msg_id_times: VecDeque::new(),
            last_msg_id: String::new(),
            msg_ids_unread: false,
            consumers: BTreeMap::new(),
        }
    }

    /// The store's totals.
    pub fn state(&self) -> StoreState {
        self.store.state()
    }

    /// The store, to read messages.
    pub fn store(&self) -> &dyn StreamStore {
        self.store.as_ref()
    }

    /// A stream recovered from its store: the duplicate window and the last message id are
    /// read from the store when a publish first asks for them.
    pub fn recovered(&mut self) {
        self.msg_ids_unread = true;
    }

    /// After recovery: the `Nats-Msg-Id`s of messages still within the duplicate window at
    /// `now`, and the last message's id, as nats-server's `rebuildDedupe`.
    fn rebuild_msg_ids(&mut self, now: i64) {
        self.msg_ids.clear();
        self.msg_id_times.clear();
        self.last_msg_id.clear();
        let state = self.store.state();
        // Only what is still within the window is read whole, and the last message.
        let mut seq = state.first_seq;
        while let Some(meta) = self.store.load_next_meta(">", seq) {
            if now - meta.ts < self.config.duplicate_window || meta.seq == state.last_seq {
                break;
            }
            seq = meta.seq + 1;
        }
        while let Some(msg) = self.store.load_next_msg(">", seq) {
            seq = msg.seq + 1;
            let id = header_value(&msg.header, "Nats-Msg-Id").filter(|id| !id.is_empty());
            if msg.seq == state.last_seq {
                self.last_msg_id = id.clone().unwrap_or_default();
            }
            if let Some(id) = id {
                if now - msg.ts < self.config.duplicate_window {
                    self.msg_ids.insert(id.clone(), msg.seq);
                    self.msg_id_times.push_back((msg.ts, id));
                }
            }
        }
    }

    /// Holds the store's writes until [`Stream::commit`] (a group of publishes written at
    /// once).
    pub fn defer_writes(&mut self) {
        self.store.defer_writes();
    }

    /// Writes what the store held since [`Stream::defer_writes`]. On failure the store is
    /// back as it was before, and what was derived from the messages lost is read again
    /// from it when next needed (the duplicate window, the consumers' pending counts).
    pub fn commit(&mut self) -> Result<(), ApiError> {
        self.store.commit().map_err(|err| {
            self.msg_ids_unread = true;
            for consumer in self.consumers.values_mut() {
                consumer.forget_pending_count();
            }
            store_failed(&err.to_string())
        })
    }

    /// Syncs the store to disk (file streams).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.store.sync()
    }

    /// Runs `f` with the stream's store.
    pub fn with_store<R>(&self, f: impl FnOnce(&dyn StreamStore) -> R) -> R {
        f(self.store.as_ref())
    }

    /// An acknowledgement for consumer `name`; on a work queue stream what it acknowledged
    /// (or terminated) is removed from the stream.
    pub fn ack(
        &mut self,
        name: &str,
        ack_subject: &str,
        body: &[u8],
        now: i64,
    ) -> Option<Vec<Action>> {
        let consumer = self.consumers.get_mut(name)?;
        let actions = consumer.ack(ack_subject, body, self.store.as_ref(), now);
        self.settle(name);
        Some(actions)
    }

    /// Runs `f` on consumer `name` with the stream's store, then applies the retention policy
    /// to what it acknowledged.
    pub fn with_consumer<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Consumer, &dyn StreamStore) -> R,
    ) -> Option<R> {
        let consumer = self.consumers.get_mut(name)?;
        let result = f(consumer, self.store.as_ref());
        self.settle(name);
        Some(result)
    }

    /// What consumer `name` acknowledged since last asked: a work queue stream removes it; an
    /// interest stream removes what no consumer holds any more.
    fn settle(&mut self, name: &str) {
        let Some(consumer) = self.consumers.get_mut(name) else {
            return;
        };
        let acked = consumer.take_acked();
        match self.config.retention {
            Retention::Limits => {}
            Retention::WorkQueue => {
                for seq in acked {
                    self.remove(seq);
                }
            }
            Retention::Interest => {
                for seq in acked {
                    let Some(msg) = self.store.load_meta(seq) else {
                        continue;
                    };
                    if !self.held(seq, &msg.subject) {
                        self.remove(seq);
                    }
                }
            }
        }
    }

    /// Whether a consumer still holds the message at `seq` under `subject`.
    fn held(&self, seq: u64, subject: &str) -> bool {
        self.consumers.values().any(|c| c.needs_ack(seq, subject))
    }

    /// Removes consumer `name`; an interest stream then lets go of what only it held (of
    /// everything, when no consumer is left), as nats-server does when a consumer is deleted.
    pub fn remove_consumer(&mut self, name: &str) -> Option<Consumer> {
        let consumer = self.consumers.remove(name)?;
        if self.config.retention == Retention::Interest {
            self.drop_unheld(&consumer);
        }
        Some(consumer)
    }

    /// The messages `gone` (a removed consumer) held that no other consumer holds go.
    fn drop_unheld(&mut self, gone: &Consumer) {
        if self.consumers.is_empty() {
            self.purge();
            return;
        }
        let mut next = 0;
        let mut unheld = Vec::new();
        while let Some(msg) = self.store.load_next_meta(gone.config.filter(), next) {
            next = msg.seq + 1;
            if gone.needs_ack(msg.seq, &msg.subject) && !self.held(msg.seq, &msg.subject) {
                unheld.push(msg.seq);
            }
        }
        for seq in unheld {
            self.remove(seq);
        }
    }

    /// Lets every consumer redeliver, deliver new messages and expire requests at `now`, and
    /// removes ephemeral consumers idle past their `inactive_threshold`.
    pub fn tick_consumers(&mut self, now: i64) -> Vec<Action> {
        let store = self.store.as_ref();
        let mut out = Vec::new();
        for consumer in self.consumers.values_mut() {
            out.extend(consumer.tick(store, now));
        }
        let names: Vec<String> = self.consumers.keys().cloned().collect();
        for name in &names {
            self.settle(name);
        }
        for name in names {
            if self
                .consumers
                .get(&name)
                .is_some_and(|c| c.inactive_at(now))
            {
                self.remove_consumer(&name);
            }
        }
        out
    }

    /// Removes every message; returns how many.
    pub fn purge(&mut self) -> u64 {
        for consumer in self.consumers.values_mut() {
            consumer.forget_pending_count();
        }
        self.store.purge()
    }

    /// Removes the message at `seq`, telling the consumers; false when it is not there.
    fn remove(&mut self, seq: u64) -> bool {
        let Some(msg) = self.store.load_meta(seq) else {
            return false;
        };
        if !self.store.remove_msg(seq) {
            return false;
        }
        for consumer in self.consumers.values_mut() {
            consumer.on_removed(&msg.subject, seq);
        }
        true
    }

    /// nats-server's `PurgeEx`: the messages matching `filter` (all when empty), only those
    /// below `seq` when it is set, all but the last `keep` when it is set. Returns how many
    /// went.
    pub fn purge_ex(&mut self, filter: &str, seq: u64, keep: u64) -> u64 {
        if filter.is_empty() && seq == 0 && keep == 0 {
            return self.purge();
        }
        let filter = if filter.is_empty() { ">" } else { filter };
        let mut matching = Vec::new();
        let mut next = 0;
        while let Some(msg) = self.store.load_next_meta(filter, next) {
            if seq > 0 && msg.seq >= seq {
                break;
            }
            next = msg.seq + 1;
            matching.push(msg.seq);
        }
        let keep = (keep as usize).min(matching.len());
        matching.truncate(matching.len() - keep);
        for seq in &matching {
            self.remove(*seq);
        }
        matching.len() as u64
    }

    /// Removes the message at `seq`; false when it is not there.
    pub fn remove_msg(&mut self, seq: u64) -> bool {
        self.remove(seq)
    }

    /// Takes a message published to `subject` at time `now`, as nats-server's
    /// `processJetStreamMsg`: headers checked in its order, duplicates within the window,
    /// `discard: new` limits, then stored and the `discard: old` limits applied.
    pub fn process_publish(
        &mut self,
        subject: &str,
        header: Bytes,
        data: Bytes,
        now: i64,
    ) -> Result<PubOutcome, ApiError> {
        if self.config.sealed {
            return Err(ApiError::sealed());
        }
        self.prune_msg_ids(now);
        let value = |name: &str| header_value(&header, name);
        if let Some(expected) = value("Nats-Expected-Stream") {
            if expected != self.config.name {
                return Err(ApiError::new(
                    400,
                    10060,
                    "expected stream does not match".into(),
                ));
            }
        }
        if value("Nats-TTL").is_some() {
            return Err(ApiError::new(
                400,
                10166,
                "per-message TTL is disabled".into(),
            ));
        }
        if let Some(expected) = value("Nats-Expected-Last-Subject-Sequence") {
            let last = self.store.load_last_seq(subject).unwrap_or(0);
            if expected.parse::<u64>().ok() != Some(last) {
                return Err(wrong_last_sequence(last));
            }
        }
        if let Some(expected) = value("Nats-Expected-Last-Sequence") {
            let last = self.store.state().last_seq;
            if expected.parse::<u64>().ok() != Some(last) {
                return Err(wrong_last_sequence(last));
            }
        }
        let msg_id = value("Nats-Msg-Id").filter(|id| !id.is_empty());
        let expected_last_id = value("Nats-Expected-Last-Msg-Id");
        if self.msg_ids_unread && (msg_id.is_some() || expected_last_id.is_some()) {
            self.msg_ids_unread = false;
            self.rebuild_msg_ids(now);
        }
        if let Some(id) = &msg_id {
            if let Some(seq) = self.msg_ids.get(id.as_str()) {
                return Ok(PubOutcome::Duplicate(*seq));
            }
        }
        if let Some(expected) = expected_last_id {
            let last = self.last_msg_id.as_str();
            if expected != last {
                return Err(ApiError::new(
                    400,
                    10070,
                    format!("wrong last msg ID: {last}"),
                ));
            }
        }
        let rollup = value("Nats-Rollup");
        if let Some(rollup) = &rollup {
            if !self.config.allow_rollup_hdrs {
                return Err(ApiError::new(500, 10111, "rollup not permitted".into()));
            }
            if rollup != "sub" && rollup != "all" {
                return Err(ApiError::new(
                    500,
                    10111,
                    format!("rollup value invalid: {rollup:?}"),
                ));
            }
        }
        let size = (header.len() + data.len()) as i64;
        if self.config.max_msg_size >= 0 && size > self.config.max_msg_size {
            return Err(ApiError::new(
                400,
                10054,
                "message size exceeds maximum allowed".into(),
            ));
        }
        // An interest stream does not keep what no consumer would take: the sequence goes by
        // and the publisher gets its PubAck.
        if self.config.retention == Retention::Interest
            && !self
                .consumers
                .values()
                .any(|c| subject::matches(c.config.filter().as_bytes(), subject.as_bytes()))
        {
            let seq = self
                .store
                .skip_msg(now)
                .map_err(|e| store_failed(&e.to_string()))?;
            self.remember_msg_id(msg_id, seq, now);
            return Ok(PubOutcome::Stored(seq));
        }
        if self.config.discard == Discard::New {
            // nats-server checks the subject's limit before the stream's. A subject at its
            // limit gives up its oldest message for the new one, so then the stream's count
            // does not grow, and its bytes only if that oldest is smaller than the new.
            let per_subject = self.config.max_msgs_per_subject;
            let at_subject_limit =
                per_subject > 0 && self.store.subject_total(subject) as i64 >= per_subject;
            if self.config.discard_new_per_subject && at_subject_limit {
                return Err(store_failed("maximum messages per subject exceeded"));
            }
            let state = self.store.state();
            if self.config.max_msgs > 0
                && state.messages as i64 >= self.config.max_msgs
                && !at_subject_limit
            {
                return Err(store_failed("maximum messages exceeded"));
            }
            let new = self.store.msg_size(subject, &header, &data) as i64;
            if self.config.max_bytes > 0 && state.bytes as i64 + new > self.config.max_bytes {
                let replaced = match at_subject_limit {
                    true => self
                        .store
                        .first_seq_for_subject(subject)
                        .and_then(|seq| self.store.load_msg(seq))
                        .map(|m| self.store.msg_size(&m.subject, &m.header, &m.data) as i64),
                    false => None,
                };
                if replaced.map_or(true, |old| old < new) {
                    return Err(store_failed("maximum bytes exceeded"));
                }
            }
        }
        let seq = self
            .store
            .store_msg(subject, header, data, now)
            .map_err(|e| store_failed(&e.to_string()))?;
        for consumer in self.consumers.values_mut() {
            consumer.on_stored(subject, seq);
        }
        // A roll-up keeps only the new message, of its subject or of the stream.
        match rollup.as_deref() {
            Some("sub") => {
                self.purge_ex(subject, 0, 1);
            }
            Some("all") => {
                self.purge_ex("", 0, 1);
            }
            _ => {}
        }
        self.remember_msg_id(msg_id, seq, now);
        self.enforce_limits(subject, now);
        Ok(PubOutcome::Stored(seq))
    }

    /// The message stored at `seq` had `msg_id` (`Nats-Msg-Id`), or none.
    fn remember_msg_id(&mut self, msg_id: Option<String>, seq: u64, now: i64) {
        self.last_msg_id.clear();
        if let Some(id) = msg_id {
            self.last_msg_id.push_str(&id);
            self.msg_ids.insert(id.clone(), seq);
            self.msg_id_times.push_back((now, id));
        }
    }

    /// Applies the limits to what a restart recovered. Storing a message and removing what it
    /// pushes out are separate writes: a process killed between them leaves the last message's
    /// removals undone, and only those (each message's are done before the next is taken).
    /// The same holds for the purge a roll-up asks for.
    pub fn enforce_limits_on_recover(&mut self, now: i64) {
        let Some(last) = self.store.load_msg(self.store.state().last_seq) else {
            return;
        };
        match header_value(&last.header, "Nats-Rollup").as_deref() {
            Some("sub") => {
                self.purge_ex(&last.subject, 0, 1);
            }
            Some("all") => {
                self.purge_ex("", 0, 1);
            }
            _ => {}
        }
        self.enforce_limits(&last.subject, now);
    }

    /// Removes what `max_age` no longer allows at `now`; nats-server runs this on a timer.
    pub fn expire(&mut self, now: i64) {
        if self.config.max_age <= 0 {
            return;
        }
        loop {
            let state = self.store.state();
            if state.messages == 0 || now - state.first_ts < self.config.max_age {
                break;
            }
            self.remove(state.first_seq);
        }
    }

    /// The oldest messages past `max_msgs`, `max_bytes` and (for `subject`)
    /// `max_msgs_per_subject` go, as they do with `discard: old` (and, per subject, with
    /// `discard: new` too).
    fn enforce_limits(&mut self, subject: &str, now: i64) {
        let per_subject = self.config.max_msgs_per_subject;
        while per_subject > 0 && self.store.subject_total(subject) as i64 > per_subject {
            match self.store.first_seq_for_subject(subject) {
                Some(seq) => self.remove(seq),
                None => break,
            };
        }
        loop {
            let state = self.store.state();
            let over = (self.config.max_msgs > 0 && state.messages as i64 > self.config.max_msgs)
                || (self.config.max_bytes > 0 && state.bytes as i64 > self.config.max_bytes);
            if !over || state.messages == 0 {
                break;
            }
            self.remove(state.first_seq);
        }
        self.expire(now);
    }

    fn prune_msg_ids(&mut self, now: i64) {
        while let Some((ts, _)) = self.msg_id_times.front() {
            if now - ts < self.config.duplicate_window {
                break;
            }
            if let Some((_, id)) = self.msg_id_times.pop_front() {
                self.msg_ids.remove(&id);
            }
        }
    }
}

fn wrong_last_sequence(last: u64) -> ApiError {
    ApiError::new(400, 10071, format!("wrong last sequence: {last}"))
}

fn store_failed(why: &str) -> ApiError {
    ApiError::new(503, 10077, why.into())
}

/// The value of header `name` (case-insensitive) in a `NATS/1.0` header block.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    if header.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(header).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::super::store::MemoryStore;
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn config(json: &str) -> StreamConfig {
        serde_json::from_str::<StreamConfig>(json)
            .unwrap()
            .normalize()
            .unwrap()
    }

    fn stream(json: &str) -> Stream {
        Stream::new(config(json), Box::new(MemoryStore::new()), 0)
    }

    fn publish(
        s: &mut Stream,
        subject: &str,
        header: &str,
        now: i64,
    ) -> Result<PubOutcome, ApiError> {
        s.process_publish(
            subject,
            Bytes::copy_from_slice(header.as_bytes()),
            Bytes::from_static(b"data"),
            now,
        )
    }

    #[test]
    fn defaults_as_nats_server() {
        let c = config(r#"{"name":"S","storage":"memory"}"#);
        assert_eq!(c.subjects, ["S"]);
        assert_eq!((c.max_msgs, c.max_bytes, c.max_msg_size), (-1, -1, -1));
        assert_eq!((c.max_consumers, c.max_msgs_per_subject), (-1, -1));
        assert_eq!((c.num_replicas, c.duplicate_window), (1, 120 * SEC));
        let c = config(r#"{"name":"S","storage":"memory","max_age":1000000000}"#);
        assert_eq!(c.duplicate_window, SEC);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["retention"], "limits");
        assert_eq!(json["metadata"]["_nats.req.level"], "0");
        assert!(json.get("no_ack").is_none());
    }

    #[test]
    fn only_memory_streams_that_drop_in_order_are_packed() {
        let packed = |json: &str| config(json).drops_in_order();
        assert!(packed(r#"{"name":"S","storage":"memory","max_msgs":10}"#));
        assert!(!packed(r#"{"name":"S","storage":"file"}"#));
        // A key-value bucket's shape: history per key, rollups.
        assert!(!packed(
            r#"{"name":"KV_b","storage":"memory","max_msgs_per_subject":1}"#
        ));
        assert!(!packed(
            r#"{"name":"S","storage":"memory","allow_rollup_hdrs":true}"#
        ));
        assert!(!packed(
            r#"{"name":"S","storage":"memory","retention":"workqueue"}"#
        ));
        assert!(!packed(
            r#"{"name":"S","storage":"memory","retention":"interest"}"#
        ));
    }

    #[test]
    fn refusals() {
        let err = |json: &str| {
            serde_json::from_str::<StreamConfig>(json)
                .unwrap()
                .normalize()
                .unwrap_err()
        };
        assert_eq!(err(r#"{"name":"a.b","storage":"memory"}"#).err_code, 10052);
        assert_eq!(
            err(r#"{"name":"S","storage":"memory","num_replicas":3}"#).err_code,
            10074
        );
        assert!(err(r#"{"name":"S","storage":"memory","max_age":5}"#)
            .description
            .contains("100ms"));
        assert!(
            err(r#"{"name":"S","storage":"memory","mirror":{"name":"X"}}"#)
                .description
                .contains("mirror")
        );
        // Null or empty is as good as absent.
        config(r#"{"name":"S","storage":"memory","mirror":null,"sources":[]}"#);
    }

    #[test]
    fn duplicates_within_the_window() {
        let mut s = stream(r#"{"name":"S","storage":"memory","duplicate_window":2000000000}"#);
        let id = "NATS/1.0\r\nNats-Msg-Id: a\r\n\r\n";
        assert_eq!(publish(&mut s, "S", id, 0), Ok(PubOutcome::Stored(1)));
        assert_eq!(publish(&mut s, "S", id, SEC), Ok(PubOutcome::Duplicate(1)));
        assert_eq!(s.state().messages, 1);
        assert_eq!(publish(&mut s, "S", id, 2 * SEC), Ok(PubOutcome::Stored(2)));
    }

    #[test]
    fn limits_discard_old_and_new() {
        let mut s = stream(r#"{"name":"S","subjects":["s.*"],"storage":"memory","max_msgs":2}"#);
        for n in 1..=3 {
            assert_eq!(publish(&mut s, "s.a", "", 0), Ok(PubOutcome::Stored(n)));
        }
        assert_eq!((s.state().messages, s.state().first_seq), (2, 2));

        let mut s = stream(
            r#"{"name":"S","subjects":["s.*"],"storage":"memory","max_msgs":2,"discard":"new"}"#,
        );
        publish(&mut s, "s.a", "", 0).unwrap();
        publish(&mut s, "s.a", "", 0).unwrap();
        let err = publish(&mut s, "s.a", "", 0).unwrap_err();
        assert_eq!((err.code, err.err_code), (503, 10077));
        assert_eq!(err.description, "maximum messages exceeded");

        let mut s = stream(
            r#"{"name":"S","subjects":["s.*"],"storage":"memory","max_msgs_per_subject":1}"#,
        );
        publish(&mut s, "s.a", "", 0).unwrap();
        publish(&mut s, "s.b", "", 0).unwrap();
        publish(&mut s, "s.a", "", 0).unwrap();
        assert_eq!(s.state().messages, 2);
        assert_eq!(s.store().load_last_msg("s.a").unwrap().seq, 3);

        // Each message is 1 + 4 + 16 = 21 bytes in memory.
        let mut s = stream(r#"{"name":"S","subjects":["s"],"storage":"memory","max_bytes":50}"#);
        for _ in 0..3 {
            publish(&mut s, "s", "", 0).unwrap();
        }
        assert_eq!(s.state().messages, 2);
    }

    #[test]
    fn purge_with_filter_seq_and_keep() {
        let mut s = stream(r#"{"name":"S","subjects":["s.*"],"storage":"memory"}"#);
        for subject in ["s.a", "s.b", "s.a", "s.a", "s.b"] {
            publish(&mut s, subject, "", 0).unwrap();
        }
        assert!(s.remove_msg(2));
        assert_eq!(s.purge_ex("s.a", 0, 1), 2);
        assert_eq!(s.purge_ex("", 5, 0), 1);
        assert_eq!((s.state().messages, s.state().first_seq), (1, 5));
        assert_eq!(s.purge_ex("s.b", 0, 0), 1);
        assert_eq!((s.state().messages, s.state().last_seq), (0, 5));
    }

    #[test]
    fn work_queue_acks_remove() {
        use super::super::consumer::ConsumerConfig;
        let mut s = stream(r#"{"name":"S","storage":"memory","retention":"workqueue"}"#);
        publish(&mut s, "S", "", 0).unwrap();
        publish(&mut s, "S", "", 0).unwrap();
        let config: ConsumerConfig =
            serde_json::from_str(r#"{"durable_name":"C","ack_policy":"explicit"}"#).unwrap();
        let config = config.normalize(false).unwrap();
        let consumer =
            s.with_store(|store| Consumer::new("C".into(), "S".into(), config, store, 0));
        s.consumers.insert("C".into(), consumer);
        s.with_consumer("C", |c, store| c.pull("in", b"2", store, 0));
        s.ack("C", "$JS.ACK.S.C.1.2.2.0.0", b"+ACK", 0).unwrap();
        assert_eq!((s.state().messages, s.state().first_seq), (1, 1));
        s.ack("C", "$JS.ACK.S.C.1.1.1.0.1", b"+TERM", 0).unwrap();
        assert_eq!(s.state().messages, 0);
        // Acknowledging again removes nothing more.
        s.ack("C", "$JS.ACK.S.C.1.1.1.0.1", b"+ACK", 0).unwrap();
        assert_eq!(s.state().last_seq, 2);
    }

    /// Adds an explicit-ack consumer `name` of `filter` to `s`.
    fn add_consumer(s: &mut Stream, name: &str, filter: &str) {
        use super::super::consumer::ConsumerConfig;
        let config: ConsumerConfig = serde_json::from_str(&format!(
            r#"{{"durable_name":"{name}","ack_policy":"explicit","filter_subject":"{filter}"}}"#
        ))
        .unwrap();
        let config = config.normalize(false).unwrap();
        let c = s.with_store(|store| Consumer::new(name.into(), "S".into(), config, store, 0));
        s.consumers.insert(name.into(), c);
    }

    #[test]
    fn interest_keeps_what_a_consumer_holds() {
        let mut s =
            stream(r#"{"name":"S","subjects":["s.*"],"storage":"memory","retention":"interest"}"#);
        // No consumer: the sequence goes by, nothing is kept.
        assert_eq!(publish(&mut s, "s.a", "", 0), Ok(PubOutcome::Stored(1)));
        assert_eq!((s.state().messages, s.state().first_seq), (0, 2));
        add_consumer(&mut s, "A", "s.a");
        add_consumer(&mut s, "B", ">");
        publish(&mut s, "s.a", "", 0).unwrap();
        publish(&mut s, "s.b", "", 0).unwrap();
        s.with_consumer("A", |c, store| c.pull("in", b"1", store, 0));
        s.with_consumer("B", |c, store| c.pull("in", b"2", store, 0));
        // 2 is held by B still; 3 only ever mattered to B.
        s.ack("A", "$JS.ACK.S.A.1.2.1.0.0", b"+ACK", 0).unwrap();
        assert_eq!(s.state().messages, 2);
        s.ack("B", "$JS.ACK.S.B.1.3.2.0.0", b"+ACK", 0).unwrap();
        assert_eq!((s.state().messages, s.state().first_seq), (1, 2));
        // Without B, nothing holds 2 any more.
        assert!(s.remove_consumer("B").is_some());
        assert_eq!((s.state().messages, s.state().first_seq), (0, 4));
    }

    #[test]
    fn pending_counts_kept_up_to_date_match_a_recount() {
        let mut s = stream(
            r#"{"name":"S","subjects":["s.*"],"storage":"memory","max_msgs_per_subject":4,"max_msgs":12}"#,
        );
        for (name, filter) in [("ALL", ">"), ("A", "s.a"), ("W", "s.*")] {
            add_consumer(&mut s, name, filter);
        }
        // A fixed pseudo-random walk through publishes, pulls, removals and purges.
        let mut x: u64 = 12345;
        for step in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let subject = ["s.a", "s.b", "s.c"][(x >> 33) as usize % 3];
            match (x >> 40) % 10 {
                0..=4 => {
                    publish(&mut s, subject, "", step).unwrap();
                }
                5 | 6 => {
                    let name = ["ALL", "A", "W"][(x >> 20) as usize % 3];
                    s.with_consumer(name, |c, store| c.pull("in", b"3", store, step));
                }
                7 => {
                    let first = s.state().first_seq;
                    s.remove_msg(first + (x >> 50) % 5);
                }
                8 => {
                    s.purge_ex(subject, 0, 2);
                }
                _ => {
                    if (x >> 45) % 20 == 0 {
                        s.purge();
                    }
                }
            }
            for name in ["ALL", "A", "W"] {
                let (kept, recounted) = s
                    .with_consumer(name, |c, store| {
                        let kept = c.num_pending(store);
                        c.forget_pending_count();
                        (kept, c.num_pending(store))
                    })
                    .unwrap();
                assert_eq!(kept, recounted, "{name} at step {step}");
            }
        }
    }

    #[test]
    fn rollups() {
        let mut s = stream(
            r#"{"name":"S","subjects":["s.*"],"storage":"memory","allow_rollup_hdrs":true}"#,
        );
        for subject in ["s.a", "s.a", "s.b"] {
            publish(&mut s, subject, "", 0).unwrap();
        }
        let sub = "NATS/1.0\r\nNats-Rollup: sub\r\n\r\n";
        assert_eq!(publish(&mut s, "s.a", sub, 0), Ok(PubOutcome::Stored(4)));
        assert_eq!((s.state().messages, s.state().first_seq), (2, 3));
        let all = "NATS/1.0\r\nNats-Rollup: all\r\n\r\n";
        assert_eq!(publish(&mut s, "s.b", all, 0), Ok(PubOutcome::Stored(5)));
        assert_eq!((s.state().messages, s.state().first_seq), (1, 5));
        let bogus = "NATS/1.0\r\nNats-Rollup: bogus\r\n\r\n";
        let err = publish(&mut s, "s.b", bogus, 0).unwrap_err();
        assert_eq!(err.description, "rollup value invalid: \"bogus\"");
    }

    #[test]
    fn max_age_with_given_time() {
        let mut s = stream(r#"{"name":"S","storage":"memory","max_age":1000000000}"#);
        publish(&mut s, "S", "", 0).unwrap();
        publish(&mut s, "S", "", SEC / 2).unwrap();
        s.expire(SEC - 1);
        assert_eq!(s.state().messages, 2);
        s.expire(SEC);
        assert_eq!((s.state().messages, s.state().first_seq), (1, 2));
        s.expire(3 * SEC);
        assert_eq!((s.state().messages, s.state().first_seq), (0, 3));
    }

    #[test]
    fn expected_headers() {
        let mut s = stream(r#"{"name":"S","subjects":["s.*"],"storage":"memory"}"#);
        let h = |k: &str, v: &str| format!("NATS/1.0\r\n{k}: {v}\r\n\r\n");
        assert!(publish(
            &mut s,
            "s.a",
            &h("Nats-Expected-Last-Subject-Sequence", "0"),
            0
        )
        .is_ok());
        let err = publish(
            &mut s,
            "s.a",
            &h("Nats-Expected-Last-Subject-Sequence", "0"),
            0,
        )
        .unwrap_err();
        assert_eq!(
            (err.err_code, err.description.as_str()),
            (10071, "wrong last sequence: 1")
        );
        assert!(publish(&mut s, "s.b", &h("Nats-Expected-Last-Sequence", "1"), 0).is_ok());
        let err = publish(&mut s, "s.b", &h("Nats-Expected-Stream", "T"), 0).unwrap_err();
        assert_eq!(err.err_code, 10060);
        assert_eq!(
            publish(&mut s, "s.b", &h("Nats-TTL", "1s"), 0)
                .unwrap_err()
                .err_code,
            10166
        );
    }

    #[test]
    fn what_the_last_message_pushed_out_goes_on_recovery() {
        let mut s = stream(
            r#"{"name":"R","subjects":["r.>"],"max_msgs_per_subject":2,"allow_rollup_hdrs":true}"#,
        );
        for n in 0..3 {
            publish(&mut s, "r.k", "", n).unwrap();
        }
        // Stored, and the process killed before the removal it called for.
        s.store
            .store_msg("r.k", Bytes::new(), Bytes::from_static(b"v"), 3)
            .unwrap();
        assert_eq!(s.store.subject_total("r.k"), 3);
        s.enforce_limits_on_recover(3);
        assert_eq!(s.store.subject_total("r.k"), 2);
        // A roll-up whose purge was not done.
        let rollup = Bytes::from_static(b"NATS/1.0\r\nNats-Rollup: sub\r\n\r\n");
        s.store.store_msg("r.k", rollup, Bytes::new(), 4).unwrap();
        s.enforce_limits_on_recover(4);
        assert_eq!(s.store.subject_total("r.k"), 1);
        assert_eq!(s.store.state().last_seq, 5);
    }
}
