//! A pull consumer: its configuration (nats-server's `ConsumerConfig` with its defaults) and
//! its state machine: pull requests waiting for messages, what was delivered and not yet
//! acknowledged, redelivery after `ack_wait`, `max_deliver`. Pure: it reads the stream's
//! store, takes time as nanoseconds since the Unix epoch, and returns what to send.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::errors::ApiError;
use super::store::StreamStore;

/// Default `ack_wait`: 30 s.
const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;

/// Default `max_ack_pending`.
const DEFAULT_MAX_ACK_PENDING: i64 = 1000;

/// Default `max_waiting` of a pull consumer.
const DEFAULT_MAX_WAITING: i64 = 512;

/// Default `inactive_threshold` of an ephemeral consumer: 5 s.
const DEFAULT_INACTIVE_THRESHOLD: i64 = 5_000_000_000;

/// `deliver_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// From the first message.
    #[default]
    All,
    /// From the last message.
    Last,
    /// Only messages stored after the consumer was created.
    New,
    /// From `opt_start_seq`.
    ByStartSequence,
    /// From `opt_start_time` (refused for now).
    ByStartTime,
    /// The last message of each subject (refused for now).
    LastPerSubject,
}

/// `ack_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    /// Nothing to acknowledge (Go's zero value: what a request without `ack_policy` gets;
    /// clients send `explicit`).
    #[default]
    None,
    /// Acknowledging one acknowledges everything before it.
    All,
    /// Each message acknowledged on its own.
    Explicit,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn instant() -> String {
    "instant".into()
}

/// A consumer's configuration, with nats-server's field names and order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerConfig {
    /// `durable_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_name: Option<String>,
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `deliver_policy`.
    #[serde(default)]
    pub deliver_policy: DeliverPolicy,
    /// `opt_start_seq`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub opt_start_seq: i64,
    /// `ack_policy`.
    #[serde(default)]
    pub ack_policy: AckPolicy,
    /// `ack_wait` in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ack_wait: i64,
    /// `max_deliver` (-1 for no limit).
    #[serde(default)]
    pub max_deliver: i64,
    /// `filter_subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    /// `replay_policy`: only `instant` for now.
    #[serde(default = "instant")]
    pub replay_policy: String,
    /// `sample_freq`: the share of acks announced as metrics (`"100%"`, `"50"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_freq: Option<String>,
    /// `max_waiting`: pull requests that may wait at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_waiting: i64,
    /// `max_ack_pending`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    /// `inactive_threshold` in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    /// `num_replicas`.
    #[serde(default)]
    pub num_replicas: i64,
    /// `mem_storage`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mem_storage: bool,
    /// `metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Features tern does not have yet, by name (refused when set).
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Request fields refused when set: push delivery, backoff, several filters, sampling, ...
const NOT_YET: [&str; 14] = [
    "priority_groups",
    "priority_policy",
    "pause_until",
    "deliver_subject",
    "deliver_group",
    "flow_control",
    "idle_heartbeat",
    "backoff",
    "filter_subjects",
    "rate_limit_bps",
    "headers_only",
    "opt_start_time",
    "max_batch",
    "max_expires",
];

impl ConsumerConfig {
    /// Applies nats-server's defaults (`setConsumerConfigDefaults`) and refuses what tern
    /// cannot do yet.
    pub fn normalize(mut self, ephemeral: bool) -> Result<ConsumerConfig, ApiError> {
        let lacks =
            |what: &str| ApiError::new(500, 10012, format!("{what} is not supported by tern yet"));
        for (key, value) in &self.other {
            let unset = match value {
                serde_json::Value::Null => true,
                serde_json::Value::Bool(b) => !b,
                serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
                serde_json::Value::String(s) => s.is_empty(),
                serde_json::Value::Array(a) => a.is_empty(),
                serde_json::Value::Object(o) => o.is_empty(),
            };
            if NOT_YET.contains(&key.as_str()) && !unset {
                return Err(lacks(key));
            }
        }
        self.other.clear();
        if matches!(
            self.deliver_policy,
            DeliverPolicy::ByStartTime | DeliverPolicy::LastPerSubject
        ) {
            return Err(lacks("this deliver_policy"));
        }
        if self.replay_policy != "instant" {
            return Err(lacks("replay_policy original"));
        }
        if self.filter_subject.as_deref() == Some("") {
            self.filter_subject = None;
        }
        if self.max_deliver == 0 || self.max_deliver < -1 {
            self.max_deliver = -1;
        }
        if self.ack_policy != AckPolicy::None && self.ack_wait == 0 {
            self.ack_wait = DEFAULT_ACK_WAIT;
        }
        if self.ack_policy != AckPolicy::None && self.max_ack_pending == 0 {
            self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
        }
        if self.max_waiting == 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if ephemeral && self.inactive_threshold == 0 {
            self.inactive_threshold = DEFAULT_INACTIVE_THRESHOLD;
        }
        self.metadata
            .get_or_insert_with(BTreeMap::new)
            .entry("_nats.req.level".into())
            .or_insert_with(|| "0".into());
        Ok(self)
    }

    /// The subject filter messages must match (`>` for all).
    pub fn filter(&self) -> &str {
        self.filter_subject.as_deref().unwrap_or(">")
    }
}

/// A pull request (`$JS.API.CONSUMER.MSG.NEXT`): a bare batch size or this JSON.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PullRequest {
    /// Messages wanted (1 when not given).
    #[serde(default)]
    pub batch: i64,
    /// Nanoseconds the request waits (0: until satisfied).
    #[serde(default)]
    pub expires: i64,
    /// Answer at once when nothing is there.
    #[serde(default)]
    pub no_wait: bool,
    /// Most bytes wanted (refused for now when set).
    #[serde(default)]
    pub max_bytes: i64,
    /// Heartbeat interval in nanoseconds.
    #[serde(default)]
    pub idle_heartbeat: i64,
    /// Overflow priority groups' thresholds: refused, as by nats-server on a consumer
    /// without them (tern has none).
    #[serde(default)]
    pub min_pending: i64,
    /// As `min_pending`.
    #[serde(default)]
    pub min_ack_pending: i64,
}

/// What the consumer asks its caller to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A stored message to a pull request's reply subject, presented with its own subject
    /// and the ack reply.
    Deliver {
        /// The pull request's reply subject (where it is routed).
        to: String,
        /// The stored subject (what the client sees).
        subject: String,
        /// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`.
        ack: String,
        /// Stored headers.
        header: Bytes,
        /// Stored payload.
        data: Bytes,
    },
    /// A status message (`NATS/1.0 404 No Messages`, ...), header block included.
    Status {
        /// The pull request's reply subject.
        to: String,
        /// The header block.
        header: String,
    },
}

#[derive(Debug, Clone)]
struct Waiting {
    reply: String,
    left: i64,
    expires_at: Option<i64>,
    no_wait: bool,
    delivered_any: bool,
    /// `idle_heartbeat` in nanoseconds (0 for none).
    heartbeat: i64,
    /// When the next heartbeat is due if nothing is delivered before.
    next_heartbeat: i64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    cseq: u64,
    deadline: i64,
    /// When it was (last) delivered, for the ack metric's `ack_time`.
    delivered_at: i64,
}

/// One consumer of one stream.
#[derive(Debug)]
pub struct Consumer {
    /// Its name.
    pub name: String,
    /// Its stream's name.
    pub stream: String,
    /// Its configuration.
    pub config: ConsumerConfig,
    /// When it was created (ns since the epoch).
    pub created: i64,
    /// The next stream sequence to look at for new messages.
    next_sseq: u64,
    /// The last consumer and stream sequences delivered.
    delivered: (u64, u64),
    /// The ack floor: consumer and stream sequences below which everything is acknowledged.
    ack_floor: (u64, u64),
    /// Delivered and not acknowledged, by stream sequence.
    pending: BTreeMap<u64, Pending>,
    /// Delivery counts of pending messages that were delivered more than once.
    redelivered: BTreeMap<u64, u64>,
    /// Stream sequences to deliver again before new ones.
    redeliver: BTreeSet<u64>,
    waiting: VecDeque<Waiting>,
    /// When a client last pulled or acknowledged (for `inactive_threshold`).
    pub last_active: i64,
    /// When a message was last delivered (`delivered.last_active`).
    last_delivered_at: i64,
    /// Something [`Consumer::saved`] keeps changed since it was last taken.
    pub dirty: bool,
    /// Stream sequences acknowledged (or terminated, or delivered without acks) since
    /// [`Consumer::take_acked`]: a work queue stream removes them, an interest stream those
    /// no other consumer holds.
    acked_seqs: Vec<u64>,
    /// `num_pending`, once counted (see [`Consumer::num_pending`]).
    pending_count: std::cell::Cell<Option<u64>>,
    /// When an acknowledgement last came (`ack_floor.last_active`).
    last_acked_at: i64,
    /// What the stream is to announce (advisories), taken by [`Consumer::take_notices`].
    notices: Vec<super::advisory::Notice>,
}

/// What a consumer keeps across a restart (its waiting requests are not kept: their clients
/// ask again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedConsumer {
    /// Its name.
    pub name: String,
    /// Its configuration.
    pub config: ConsumerConfig,
    /// When it was created.
    pub created: i64,
    /// The next stream sequence to look at.
    pub next_sseq: u64,
    /// Last consumer and stream sequences delivered.
    pub delivered: (u64, u64),
    /// The ack floor.
    pub ack_floor: (u64, u64),
    /// Delivered, not acknowledged: (stream seq, consumer seq, delivery count).
    pub pending: Vec<(u64, u64, u64)>,
    /// When a message was last delivered.
    pub last_delivered_at: i64,
}

impl Consumer {
    /// A consumer starting where its deliver policy says, in a stream whose store is `store`.
    pub fn new(
        name: String,
        stream: String,
        config: ConsumerConfig,
        store: &dyn StreamStore,
        now: i64,
    ) -> Consumer {
        let state = store.state();
        let next_sseq = match config.deliver_policy {
            DeliverPolicy::New => state.last_seq + 1,
            DeliverPolicy::Last => match config.filter_subject.as_deref() {
                Some(f) if f != ">" => last_matching(store, f).unwrap_or(state.last_seq + 1),
                _ => state.last_seq.max(1),
            },
            DeliverPolicy::ByStartSequence => config.opt_start_seq.max(1) as u64,
            _ => state.first_seq.max(1),
        };
        let start = next_sseq.saturating_sub(1);
        Consumer {
            name,
            stream,
            config,
            created: now,
            next_sseq,
            delivered: (0, start),
            ack_floor: (0, start),
            pending: BTreeMap::new(),
            redelivered: BTreeMap::new(),
            redeliver: BTreeSet::new(),
            waiting: VecDeque::new(),
            last_active: 0,
            last_delivered_at: 0,
            dirty: true,
            acked_seqs: Vec::new(),
            last_acked_at: 0,
            pending_count: std::cell::Cell::new(None),
            notices: Vec::new(),
        }
    }

    /// The stream sequences acknowledged or terminated since the last call.
    pub fn take_acked(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.acked_seqs)
    }

    /// An explicit ack of `sseq` at `now`, announced as a metric as often as `sample_freq`
    /// asks (nats-server's `sampleAck`).
    fn sample_ack(&mut self, sseq: u64, now: i64) {
        let Some(p) = self.pending.get(&sseq).copied() else {
            return;
        };
        let percent = super::advisory::sample_percent(self.config.sample_freq.as_deref());
        if percent == 0 || (percent < 100 && fastrand::u32(0..100) >= percent) {
            return;
        }
        self.notices.push(super::advisory::Notice::Acked {
            consumer_seq: p.cseq,
            stream_seq: sseq,
            ack_time: now - p.delivered_at,
            deliveries: self.redelivered.get(&sseq).copied().unwrap_or(1),
        });
    }

    /// What happened since the last call that advisories announce.
    pub fn take_notices(&mut self) -> Vec<super::advisory::Notice> {
        std::mem::take(&mut self.notices)
    }

    /// The state to keep across a restart.
    pub fn saved(&self) -> SavedConsumer {
        SavedConsumer {
            name: self.name.clone(),
            config: self.config.clone(),
            created: self.created,
            next_sseq: self.next_sseq,
            delivered: self.delivered,
            ack_floor: self.ack_floor,
            pending: self
                .pending
                .iter()
                .map(|(s, p)| (*s, p.cseq, self.redelivered.get(s).copied().unwrap_or(1)))
                .chain(
                    // Taken out of `pending` to be redelivered and not sent yet.
                    self.redeliver
                        .iter()
                        .filter(|s| !self.pending.contains_key(s))
                        .map(|s| (*s, 0, self.redelivered.get(s).copied().unwrap_or(1))),
                )
                .collect(),
            last_delivered_at: self.last_delivered_at,
        }
    }

    /// A consumer of `stream` as `saved` left it; what was pending is redelivered once
    /// `ack_wait` has passed from `now`.
    pub fn restore(stream: String, saved: SavedConsumer, now: i64) -> Consumer {
        let deadline = now + saved.config.ack_wait;
        let mut pending = BTreeMap::new();
        let mut redelivered = BTreeMap::new();
        for (sseq, cseq, dc) in saved.pending {
            pending.insert(
                sseq,
                Pending {
                    cseq,
                    deadline,
                    delivered_at: now,
                },
            );
            if dc > 1 {
                redelivered.insert(sseq, dc);
            }
        }
        Consumer {
            name: saved.name,
            stream,
            config: saved.config,
            created: saved.created,
            next_sseq: saved.next_sseq,
            delivered: saved.delivered,
            ack_floor: saved.ack_floor,
            pending,
            redelivered,
            redeliver: BTreeSet::new(),
            waiting: VecDeque::new(),
            last_active: now,
            last_delivered_at: saved.last_delivered_at,
            dirty: false,
            acked_seqs: Vec::new(),
            last_acked_at: 0,
            pending_count: std::cell::Cell::new(None),
            notices: Vec::new(),
        }
    }

    /// An ephemeral consumer (one with an `inactive_threshold`) with no waiting request and
    /// no activity for that long is removed.
    pub fn inactive_at(&self, now: i64) -> bool {
        let threshold = self.config.inactive_threshold;
        threshold > 0
            && self.waiting.is_empty()
            && now - self.last_active.max(self.created) >= threshold
    }

    /// The consumer is deleted: every waiting request is told (`409 Consumer Deleted`).
    pub fn close(&mut self) -> Vec<Action> {
        self.waiting
            .drain(..)
            .map(|w| Action::Status {
                to: w.reply,
                header: "NATS/1.0 409 Consumer Deleted\r\n\r\n".into(),
            })
            .collect()
    }

    /// Messages not yet delivered that match the filter: counted once, then kept up to date
    /// as messages are stored, delivered and removed (a count per delivery would make
    /// consuming a stream quadratic).
    pub fn num_pending(&self, store: &dyn StreamStore) -> u64 {
        match self.pending_count.get() {
            Some(n) => n,
            None => {
                let n = store.num_pending(self.config.filter(), self.next_sseq);
                self.pending_count.set(Some(n));
                n
            }
        }
    }

    /// A message was stored at `seq` under `subject`.
    pub fn on_stored(&mut self, subject: &str, seq: u64) {
        if let Some(n) = self.pending_count.get() {
            if seq >= self.next_sseq && self.matches(subject) {
                self.pending_count.set(Some(n + 1));
            }
        }
    }

    /// The message at `seq` under `subject` was removed from the stream.
    pub fn on_removed(&mut self, subject: &str, seq: u64) {
        if let Some(n) = self.pending_count.get() {
            if seq >= self.next_sseq && self.matches(subject) {
                self.pending_count.set(Some(n.saturating_sub(1)));
            }
        }
    }

    /// Many messages went at once (a purge): counted again when next needed.
    pub fn forget_pending_count(&mut self) {
        self.pending_count.set(None);
    }

    /// Whether this consumer still holds the message at `sseq` under `subject` (nats-server's
    /// `needAck`): it matches the filter, is above the ack floor, and is either not yet
    /// delivered or delivered and not acknowledged. An interest stream keeps a message while
    /// a consumer holds it.
    pub fn needs_ack(&self, sseq: u64, subject: &str) -> bool {
        if !self.matches(subject) || sseq <= self.ack_floor.1 {
            return false;
        }
        match self.config.ack_policy {
            AckPolicy::None | AckPolicy::All => true,
            AckPolicy::Explicit => sseq >= self.next_sseq || self.pending.contains_key(&sseq),
        }
    }

    fn matches(&self, subject: &str) -> bool {
        crate::proto::subject::matches(self.config.filter().as_bytes(), subject.as_bytes())
    }

    /// nats-server's `ConsumerInfo` fields but `type`, `ts` and the configuration's dynamic
    /// metadata.
    pub fn info(&self, store: &dyn StreamStore) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let mut info = serde_json::Map::new();
        info.insert("stream_name".into(), json!(self.stream));
        info.insert("name".into(), json!(self.name));
        info.insert("created".into(), json!(super::api::time(self.created)));
        let mut delivered =
            json!({"consumer_seq": self.delivered.0, "stream_seq": self.delivered.1});
        if self.last_delivered_at > 0 {
            delivered["last_active"] = json!(super::api::time(self.last_delivered_at));
        }
        info.insert("delivered".into(), delivered);
        let mut ack_floor =
            json!({"consumer_seq": self.ack_floor.0, "stream_seq": self.ack_floor.1});
        if self.last_acked_at > 0 {
            ack_floor["last_active"] = json!(super::api::time(self.last_acked_at));
        }
        info.insert("ack_floor".into(), ack_floor);
        info.insert("num_ack_pending".into(), json!(self.pending.len()));
        info.insert("num_redelivered".into(), json!(self.redelivered.len()));
        info.insert("num_waiting".into(), json!(self.waiting.len()));
        info.insert("num_pending".into(), json!(self.num_pending(store)));
        info
    }

    /// Takes a pull request whose replies go to `reply`; returns what to send now.
    pub fn pull(
        &mut self,
        reply: &str,
        body: &[u8],
        store: &dyn StreamStore,
        now: i64,
    ) -> Vec<Action> {
        self.last_active = now;
        let status = |header: String| {
            vec![Action::Status {
                to: reply.to_string(),
                header,
            }]
        };
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let request = if text.is_empty() {
            Ok(PullRequest::default())
        } else if let Ok(n) = text.parse::<i64>() {
            Ok(PullRequest {
                batch: n,
                ..PullRequest::default()
            })
        } else {
            // As Go reads it: a `null` (async-nats sends `"min_pending":null`) is left out.
            super::api::parse::<PullRequest>(text.as_bytes())
        };
        let Ok(mut request) = request else {
            return status("NATS/1.0 400 Bad Request\r\n\r\n".into());
        };
        if request.min_pending > 0 || request.min_ack_pending > 0 {
            return status(
                "NATS/1.0 400 Bad Request - Not a Overflow Priority consumer\r\n\r\n".into(),
            );
        }
        if request.max_bytes > 0 {
            return status(
                "NATS/1.0 400 Bad Request - max_bytes is not supported by tern yet\r\n\r\n".into(),
            );
        }
        if request.idle_heartbeat > 0 && request.idle_heartbeat * 2 > request.expires {
            return status("NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n".into());
        }
        if request.batch <= 0 {
            request.batch = 1;
        }
        if self.waiting.len() as i64 >= self.config.max_waiting {
            return status("NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n".into());
        }
        self.waiting.push_back(Waiting {
            reply: reply.to_string(),
            left: request.batch,
            expires_at: (request.expires > 0).then(|| now + request.expires),
            no_wait: request.no_wait,
            delivered_any: false,
            heartbeat: request.idle_heartbeat,
            next_heartbeat: now + request.idle_heartbeat,
        });
        self.dispatch(store, now)
    }

    /// Handles an ack sent to `$JS.ACK...` with `body`; `tokens` are the ack subject's.
    /// Returns what to send (a redelivery after `-NAK`, ...).
    pub fn ack(
        &mut self,
        ack_subject: &str,
        body: &[u8],
        store: &dyn StreamStore,
        now: i64,
    ) -> Vec<Action> {
        let tokens: Vec<&str> = ack_subject.split('.').collect();
        // $JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>.<pending>
        let (Some(sseq), Some(cseq)) = (
            tokens.get(5).and_then(|t| t.parse::<u64>().ok()),
            tokens.get(6).and_then(|t| t.parse::<u64>().ok()),
        ) else {
            return Vec::new();
        };
        self.last_active = now;
        self.dirty = true;
        let body = String::from_utf8_lossy(body);
        if matches!(
            body.split_whitespace().next().unwrap_or(""),
            "" | "+ACK" | "+OK" | "+NXT" | "+TERM"
        ) {
            self.last_acked_at = now;
        }
        let verb = body.split_whitespace().next().unwrap_or("");
        match verb {
            "" | "+ACK" | "+OK" | "+NXT" => {
                self.sample_ack(sseq, now);
                self.acked(sseq, cseq);
            }
            // `-NAK`, `-NAK {"delay":<ns>}` or `-NAK <Go duration>`.
            "-NAK" if self.pending.contains_key(&sseq) => {
                match nak_delay(body.trim_start_matches("-NAK").trim()) {
                    Some(delay) if delay > 0 => {
                        if let Some(p) = self.pending.get_mut(&sseq) {
                            p.deadline = now + delay;
                        }
                    }
                    _ => {
                        self.redeliver.insert(sseq);
                    }
                }
            }
            "+TERM" => {
                if self.pending.remove(&sseq).is_some() {
                    self.acked_seqs.push(sseq);
                }
                self.notices.push(super::advisory::Notice::Terminated {
                    consumer_seq: cseq,
                    stream_seq: sseq,
                    deliveries: tokens.get(4).and_then(|t| t.parse().ok()).unwrap_or(1),
                    reason: body.trim_start_matches("+TERM").trim().to_string(),
                });
                self.redelivered.remove(&sseq);
                self.redeliver.remove(&sseq);
                self.update_ack_floor();
            }
            "+WPI" => {
                if let Some(p) = self.pending.get_mut(&sseq) {
                    p.deadline = now + self.config.ack_wait;
                }
            }
            _ => {}
        }
        self.dispatch(store, now)
    }

    /// Redelivers what waited past `ack_wait`, answers expired requests, then delivers.
    pub fn tick(&mut self, store: &dyn StreamStore, now: i64) -> Vec<Action> {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for sseq in due {
            // Delivered as often as allowed: given up on now, as nats-server does when the
            // ack wait ends.
            let deliveries = self.redelivered.get(&sseq).copied().unwrap_or(1);
            if self.config.max_deliver > 0 && deliveries as i64 >= self.config.max_deliver {
                self.notices.push(super::advisory::Notice::MaxDeliveries {
                    stream_seq: sseq,
                    deliveries,
                });
                self.pending.remove(&sseq);
                self.redelivered.remove(&sseq);
                self.dirty = true;
                self.update_ack_floor();
                continue;
            }
            self.redeliver.insert(sseq);
            if let Some(p) = self.pending.get_mut(&sseq) {
                // Not due again until redelivered.
                p.deadline = i64::MAX;
            }
        }
        let mut out = self.dispatch(store, now);
        self.waiting.retain(|w| match w.expires_at {
            Some(at) if at <= now => {
                out.push(Action::Status {
                    to: w.reply.clone(),
                    header: format!(
                        "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: {}\r\nNats-Pending-Bytes: 0\r\n\r\n",
                        w.left
                    ),
                });
                false
            }
            _ => true,
        });

        let (last_cseq, last_sseq) = self.delivered;
        for w in self.waiting.iter_mut() {
            if w.heartbeat > 0 && w.next_heartbeat <= now {
                w.next_heartbeat = now + w.heartbeat;
                out.push(Action::Status {
                    to: w.reply.clone(),
                    header: format!(
                        "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {last_cseq}\r\nNats-Last-Stream: {last_sseq}\r\n\r\n"
                    ),
                });
            }
        }
        out
    }

    /// Hands messages to waiting requests: redeliveries first, then new messages, while
    /// `max_ack_pending` allows; then answers `no_wait` requests that cannot get more.
    fn dispatch(&mut self, store: &dyn StreamStore, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(reply) = self.waiting.front().map(|w| w.reply.clone()) {
            let Some((msg, dc)) = self.next_message(store) else {
                break;
            };
            let sseq = msg.seq;
            let cseq = self.delivered.0 + 1;
            self.delivered = (cseq, self.delivered.1.max(sseq));
            self.dirty = true;
            self.last_delivered_at = now;
            if dc == 1 {
                // Nothing matching lies between the old and the new start: the delivered
                // message was the first match.
                let pending = self.num_pending(store);
                self.next_sseq = sseq + 1;
                self.pending_count.set(Some(pending.saturating_sub(1)));
            }
            let pending_after = self.num_pending(store);
            let ack = format!(
                "$JS.ACK.{}.{}.{}.{}.{}.{}.{}",
                self.stream, self.name, dc, sseq, cseq, msg.ts, pending_after
            );
            if self.config.ack_policy == AckPolicy::None {
                self.ack_floor = (cseq, sseq);
                // Delivered is acknowledged: an interest stream may let it go.
                self.acked_seqs.push(sseq);
            } else {
                self.pending.insert(
                    sseq,
                    Pending {
                        cseq,
                        deadline: now + self.config.ack_wait,
                        delivered_at: now,
                    },
                );
            }
            out.push(Action::Deliver {
                to: reply,
                subject: msg.subject,
                ack,
                header: msg.header,
                data: msg.data,
            });
            if let Some(front) = self.waiting.front_mut() {
                front.left -= 1;
                front.delivered_any = true;
                front.next_heartbeat = now + front.heartbeat;
                if front.left <= 0 {
                    self.waiting.pop_front();
                }
            }
        }
        // A no_wait request with nothing more to get: 404 when it has no expiry or already
        // got something; with an expiry it waits for it and then times out (408).
        self.waiting.retain(|w| {
            if w.no_wait && (w.expires_at.is_none() || w.delivered_any) {
                out.push(Action::Status {
                    to: w.reply.clone(),
                    header: "NATS/1.0 404 No Messages\r\n\r\n".into(),
                });
                return false;
            }
            true
        });
        out
    }

    /// The next message to deliver with its delivery count, if any and if allowed.
    fn next_message(&mut self, store: &dyn StreamStore) -> Option<(super::store::StoredMsg, u64)> {
        while let Some(sseq) = self.redeliver.pop_first() {
            let Some(p) = self.pending.get(&sseq).copied() else {
                continue;
            };
            let dc = self.redelivered.get(&sseq).copied().unwrap_or(1) + 1;
            self.dirty = true;
            if self.config.max_deliver > 0 && dc as i64 > self.config.max_deliver {
                // Past max_deliver: given up on, never acknowledged.
                self.notices.push(super::advisory::Notice::MaxDeliveries {
                    stream_seq: sseq,
                    deliveries: dc - 1,
                });
                self.pending.remove(&sseq);
                self.redelivered.remove(&sseq);
                self.update_ack_floor();
                continue;
            }
            let Some(msg) = store.load_msg(sseq) else {
                self.pending.remove(&sseq);
                self.redelivered.remove(&sseq);
                self.update_ack_floor();
                continue;
            };
            let _ = p;
            self.redelivered.insert(sseq, dc);
            self.pending.remove(&sseq);
            return Some((msg, dc));
        }
        // A negative max_ack_pending is no limit.
        if self.config.ack_policy != AckPolicy::None
            && self.config.max_ack_pending > 0
            && self.pending.len() as i64 >= self.config.max_ack_pending
        {
            return None;
        }
        match store.load_next_msg(self.config.filter(), self.next_sseq) {
            Some(msg) => Some((msg, 1)),
            None => {
                // Nothing up to the end matches: the next look starts after it, so that a
                // waiting request does not scan the same messages again on every tick.
                let last = store.state().last_seq;
                if last >= self.next_sseq {
                    self.next_sseq = last + 1;
                }
                None
            }
        }
    }

    fn acked(&mut self, sseq: u64, cseq: u64) {
        match self.config.ack_policy {
            AckPolicy::None => {}
            AckPolicy::Explicit => {
                if self.pending.remove(&sseq).is_some() {
                    self.acked_seqs.push(sseq);
                }
                self.redelivered.remove(&sseq);
                self.redeliver.remove(&sseq);
            }
            AckPolicy::All => {
                let acked: Vec<u64> = self
                    .pending
                    .iter()
                    .filter(|(s, p)| **s <= sseq || p.cseq <= cseq)
                    .map(|(s, _)| *s)
                    .collect();
                for s in acked {
                    self.acked_seqs.push(s);
                    self.pending.remove(&s);
                    self.redelivered.remove(&s);
                    self.redeliver.remove(&s);
                }
            }
        }
        self.update_ack_floor();
    }

    /// The floor is just below the oldest pending delivery, or the last delivered.
    fn update_ack_floor(&mut self) {
        self.ack_floor = match self.pending.iter().next() {
            Some((sseq, p)) => (p.cseq - 1, sseq - 1),
            None => self.delivered,
        };
    }
}

/// The delay a `-NAK` asks for, in nanoseconds.
fn nak_delay(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    #[derive(Deserialize)]
    struct Nak {
        #[serde(default)]
        delay: i64,
    }
    if let Ok(nak) = serde_json::from_str::<Nak>(text) {
        return Some(nak.delay);
    }
    crate::config::parse_duration(text).map(|d| d.as_nanos() as i64)
}

fn last_matching(store: &dyn StreamStore, filter: &str) -> Option<u64> {
    let state = store.state();
    (state.first_seq..=state.last_seq)
        .rev()
        .find_map(|seq| {
            store
                .load_msg(seq)
                .filter(|m| crate::proto::subject::matches(filter.as_bytes(), m.subject.as_bytes()))
        })
        .map(|m| m.seq)
}

#[cfg(test)]
mod tests {
    use super::super::store::MemoryStore;
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn store_with(n: usize) -> MemoryStore {
        let mut s = MemoryStore::new();
        for i in 0..n {
            let subject = if i % 2 == 0 { "s.a" } else { "s.b" };
            s.store_msg(
                subject,
                Bytes::new(),
                Bytes::from(format!("m{}", i + 1)),
                10,
            )
            .unwrap();
        }
        s
    }

    fn consumer(json: &str, store: &MemoryStore) -> Consumer {
        let config: ConsumerConfig = serde_json::from_str(json).unwrap();
        let config = config.normalize(false).unwrap();
        Consumer::new("C".into(), "S".into(), config, store, 0)
    }

    fn delivered(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Deliver { ack, .. } => ack.clone(),
                Action::Status { header, .. } => header.lines().next().unwrap().to_string(),
            })
            .collect()
    }

    #[test]
    fn defaults() {
        let c = consumer(
            r#"{"durable_name":"C","ack_policy":"explicit"}"#,
            &store_with(0),
        )
        .config;
        assert_eq!(
            (c.ack_wait, c.max_deliver, c.max_ack_pending),
            (30 * SEC, -1, 1000)
        );
        assert_eq!((c.max_waiting, c.inactive_threshold), (512, 0));
        let err = serde_json::from_str::<ConsumerConfig>(r#"{"deliver_subject":"x"}"#)
            .unwrap()
            .normalize(false)
            .unwrap_err();
        assert!(err.description.contains("deliver_subject"));
    }

    #[test]
    fn batches_acks_and_no_wait() {
        let store = store_with(3);
        let mut c = consumer(r#"{"durable_name":"C","ack_policy":"explicit"}"#, &store);
        let got = delivered(&c.pull("in.1", br#"{"batch":2}"#, &store, SEC));
        assert_eq!(got, ["$JS.ACK.S.C.1.1.1.10.2", "$JS.ACK.S.C.1.2.2.10.1"]);
        let got = delivered(&c.pull("in.2", br#"{"batch":5,"no_wait":true}"#, &store, SEC));
        assert_eq!(got, ["$JS.ACK.S.C.1.3.3.10.0", "NATS/1.0 404 No Messages"]);
        assert_eq!(c.pending.len(), 3);
        c.ack("$JS.ACK.S.C.1.2.2.10.1", b"+ACK", &store, SEC);
        assert_eq!(c.ack_floor, (0, 0));
        c.ack("$JS.ACK.S.C.1.1.1.10.2", b"", &store, SEC);
        assert_eq!(c.ack_floor, (2, 2));
        let info = c.info(&store);
        assert_eq!(info["num_ack_pending"], 1);
        assert_eq!(info["num_pending"], 0);
        // Nothing there: no_wait gets 404 at once.
        let got = delivered(&c.pull("in.3", br#"{"no_wait":true}"#, &store, SEC));
        assert_eq!(got, ["NATS/1.0 404 No Messages"]);
    }

    #[test]
    fn expiry_redelivery_and_max_deliver() {
        let store = store_with(1);
        let mut c = consumer(
            r#"{"durable_name":"C","ack_policy":"explicit","ack_wait":2000000000,"max_deliver":2}"#,
            &store,
        );
        assert_eq!(delivered(&c.pull("in", b"1", &store, 0)).len(), 1);
        // A request that waits, then times out with what it still wanted.
        assert!(c
            .pull("in.w", br#"{"batch":3,"expires":1000000000}"#, &store, 0)
            .is_empty());
        let got = delivered(&c.tick(&store, SEC));
        assert_eq!(got, ["NATS/1.0 408 Request Timeout"]);
        // Not acknowledged within ack_wait: delivered again, counted twice.
        c.pull("in.2", b"", &store, SEC);
        let got = delivered(&c.tick(&store, 2 * SEC));
        assert_eq!(got, ["$JS.ACK.S.C.2.1.2.10.0"]);
        assert_eq!(c.info(&store)["num_redelivered"], 1);
        // A -NAK after the last allowed delivery: given up on.
        c.pull("in.3", b"", &store, 2 * SEC);
        let got = delivered(&c.ack("$JS.ACK.S.C.2.1.2.10.0", b"-NAK", &store, 2 * SEC));
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(c.info(&store)["num_ack_pending"], 0);
        assert_eq!(c.ack_floor, (2, 1));
    }

    #[test]
    fn saved_and_restored() {
        let store = store_with(3);
        let mut c = consumer(
            r#"{"durable_name":"C","ack_policy":"explicit","ack_wait":2000000000}"#,
            &store,
        );
        c.pull("in", b"3", &store, 0);
        c.ack("$JS.ACK.S.C.1.1.1.10.2", b"+ACK", &store, 0);
        c.ack("$JS.ACK.S.C.1.2.2.10.1", b"-NAK", &store, 0);
        assert!(c.dirty);
        let saved = c.saved();
        let json = serde_json::to_string(&saved).unwrap();
        let back: SavedConsumer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, saved);
        let mut r = Consumer::restore("S".into(), back, 10 * SEC);
        assert_eq!(r.info(&store), c.info(&store));
        // 2 (NAKed, not yet sent again) and 3 come back after ack_wait from the restart.
        r.pull(
            "in.2",
            br#"{"batch":2,"expires":60000000000}"#,
            &store,
            10 * SEC,
        );
        assert!(r.tick(&store, 11 * SEC).is_empty());
        let got = delivered(&r.tick(&store, 12 * SEC));
        assert_eq!(got, ["$JS.ACK.S.C.2.2.4.10.0", "$JS.ACK.S.C.2.3.5.10.0"]);
    }

    #[test]
    fn pull_requests_read_as_go_reads_them() {
        let store = store_with(2);
        let mut c = consumer(r#"{"durable_name":"C","ack_policy":"explicit"}"#, &store);
        let body = br#"{"batch":1,"expires":null,"min_pending":null,"group":null,"x":1}"#;
        assert_eq!(delivered(&c.pull("in", body, &store, 0)).len(), 1);
        let got = delivered(&c.pull("in", br#"{"batch":"two"}"#, &store, 0));
        assert_eq!(got, ["NATS/1.0 400 Bad Request"]);
        let got = delivered(&c.pull("in", br#"{"min_pending":1}"#, &store, 0));
        assert_eq!(
            got,
            ["NATS/1.0 400 Bad Request - Not a Overflow Priority consumer"]
        );
    }

    #[test]
    fn max_ack_pending_stalls_new_deliveries_and_minus_one_does_not() {
        let store = store_with(3);
        let mut c = consumer(
            r#"{"durable_name":"C","ack_policy":"explicit","max_ack_pending":2}"#,
            &store,
        );
        assert_eq!(delivered(&c.pull("in", b"3", &store, 0)).len(), 2);
        assert_eq!(c.info(&store)["num_waiting"], 1);
        let got = delivered(&c.ack("$JS.ACK.S.C.1.1.1.10.2", b"+ACK", &store, 0));
        assert_eq!(got, ["$JS.ACK.S.C.1.3.3.10.0"]);
        let mut c = consumer(
            r#"{"durable_name":"C","ack_policy":"explicit","max_ack_pending":-1}"#,
            &store,
        );
        assert_eq!(delivered(&c.pull("in", b"3", &store, 0)).len(), 3);
    }

    #[test]
    fn deleting_tells_waiting_requests() {
        let store = store_with(0);
        let mut c = consumer(r#"{"durable_name":"C","ack_policy":"explicit"}"#, &store);
        assert!(c
            .pull("in", br#"{"expires":5000000000}"#, &store, 0)
            .is_empty());
        assert_eq!(delivered(&c.close()), ["NATS/1.0 409 Consumer Deleted"]);
        assert!(c.tick(&store, 10 * SEC).is_empty());
    }

    #[test]
    fn nak_with_a_delay() {
        let store = store_with(1);
        let mut c = consumer(r#"{"durable_name":"C","ack_policy":"explicit"}"#, &store);
        c.pull("in", b"", &store, 0);
        c.pull("in.2", b"", &store, 0);
        assert!(c
            .ack(
                "$JS.ACK.S.C.1.1.1.10.0",
                br#"-NAK {"delay":2000000000}"#,
                &store,
                0
            )
            .is_empty());
        assert!(c.tick(&store, SEC).is_empty());
        assert_eq!(
            delivered(&c.tick(&store, 2 * SEC)),
            ["$JS.ACK.S.C.2.1.2.10.0"]
        );
        c.pull("in.3", b"", &store, 2 * SEC);
        assert!(c
            .ack("$JS.ACK.S.C.2.1.2.10.0", b"-NAK 1s", &store, 2 * SEC)
            .is_empty());
        assert_eq!(
            delivered(&c.tick(&store, 3 * SEC)),
            ["$JS.ACK.S.C.3.1.3.10.0"]
        );
    }

    #[test]
    fn filter_and_deliver_policies() {
        let store = store_with(4);
        let mut c = consumer(
            r#"{"durable_name":"C","ack_policy":"explicit","filter_subject":"s.b"}"#,
            &store,
        );
        assert_eq!(c.num_pending(&store), 2);
        let got = delivered(&c.pull("in", b"5", &store, 0));
        assert_eq!(got, ["$JS.ACK.S.C.1.2.1.10.1", "$JS.ACK.S.C.1.4.2.10.0"]);
        let c = consumer(r#"{"durable_name":"C","deliver_policy":"new"}"#, &store);
        assert_eq!(c.num_pending(&store), 0);
        let c = consumer(r#"{"durable_name":"C","deliver_policy":"last"}"#, &store);
        assert_eq!(c.num_pending(&store), 1);
        let c = consumer(
            r#"{"durable_name":"C","deliver_policy":"by_start_sequence","opt_start_seq":3}"#,
            &store,
        );
        assert_eq!(c.num_pending(&store), 2);
    }
}
