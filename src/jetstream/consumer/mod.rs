//! A consumer of a stream: its configuration ([`config`]: nats-server's `ConsumerConfig`, its
//! defaults and checks), where it starts (the deliver policies), what it delivered and what
//! is pending, and how messages leave it: to waiting pull requests ([`pull`]) or to a deliver
//! subject while someone listens there ([`push`]: flow control, idle heartbeats, rate limit);
//! acknowledgements and redelivery are in [`acks`]. Pure: it reads the stream's store, takes
//! time as nanoseconds since the Unix epoch, and returns what to send.

mod acks;
mod config;
mod pull;
mod push;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

pub use config::{parse_time, AckPolicy, ConsumerConfig, DeliverPolicy};
pub use pull::PullRequest;

use super::store::{StoredMsg, StreamStore};

/// What the consumer asks its caller to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A stored message to a pull request's reply subject or a push consumer's deliver
    /// subject, presented with its own subject and the ack reply.
    Deliver {
        /// Where it is routed: the pull request's reply subject, or the deliver subject.
        to: String,
        /// The stored subject (what the client sees).
        subject: String,
        /// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`.
        ack: String,
        /// Stored headers (with `Nats-Msg-Size` for `headers_only`).
        header: Bytes,
        /// Stored payload (empty for `headers_only`).
        data: Bytes,
    },
    /// A status message (`NATS/1.0 404 No Messages`, `NATS/1.0 100 Idle Heartbeat`...),
    /// header block included.
    Status {
        /// The pull request's reply subject, or the deliver subject.
        to: String,
        /// The header block.
        header: String,
    },
    /// A push consumer's `NATS/1.0 100 FlowControl Request`, which the client answers by
    /// publishing an empty message to `reply`.
    FlowControl {
        /// The deliver subject.
        to: String,
        /// `$JS.FC.<stream>.<consumer>.<id>`.
        reply: String,
        /// The header block.
        header: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    cseq: u64,
    deadline: i64,
    /// When it was (last) delivered, for the ack metric's `ack_time`.
    delivered_at: i64,
}

/// Where [`Consumer::next_message`] took a message from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Redelivery,
    LastPerSubject,
    New,
}

/// `deliver_policy: last_per_subject` at the start: the last message of each subject, in
/// stream order, then on from `resume + 1` (nats-server's `lastSeqSkipList`).
#[derive(Debug, Clone)]
struct SkipList {
    seqs: VecDeque<u64>,
    resume: u64,
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
    /// Pull requests waiting for messages.
    waiting: VecDeque<pull::Waiting>,
    /// A push consumer's delivery state.
    push: Option<push::Push>,
    /// The last messages per subject still to deliver first (`last_per_subject`).
    skip: Option<SkipList>,
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
    /// A consumer starting where its deliver policy says (nats-server's
    /// `selectStartingSeqNo`), in a stream whose store is `store`.
    pub fn new(
        name: String,
        stream: String,
        config: ConsumerConfig,
        store: &dyn StreamStore,
        now: i64,
    ) -> Consumer {
        let state = store.state();
        let filters: Vec<String> = config.filters().into_iter().map(String::from).collect();
        let opt_start_seq = config.opt_start_seq.max(0) as u64;
        let mut skip = None;
        let mut next_sseq = match config.deliver_policy {
            DeliverPolicy::All => state.first_seq,
            DeliverPolicy::Last if filters.is_empty() => state.last_seq,
            DeliverPolicy::Last => filters
                .iter()
                .filter_map(|f| last_matching(store, f))
                .max()
                .unwrap_or(0),
            DeliverPolicy::New => state.last_seq + 1,
            DeliverPolicy::ByStartSequence => opt_start_seq,
            DeliverPolicy::ByStartTime => {
                seq_from_time(store, config.start_time().unwrap_or(i64::MAX))
            }
            DeliverPolicy::LastPerSubject => {
                let seqs = last_per_subject(store, &filters);
                let first = seqs.first().copied().unwrap_or(state.last_seq);
                if !seqs.is_empty() {
                    skip = Some(SkipList {
                        seqs: seqs.into(),
                        resume: state.last_seq,
                    });
                }
                first
            }
        };
        if state.first_seq == 0 && opt_start_seq == 0 {
            next_sseq = 1;
        } else if next_sseq > state.last_seq && opt_start_seq == 0 {
            next_sseq = state.last_seq + 1;
        } else if next_sseq < state.first_seq {
            next_sseq = state.first_seq;
        }
        let start = next_sseq.saturating_sub(1);
        let push = config.is_push().then(|| push::Push::new(&config, now));
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
            push,
            skip,
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
    /// What happened since the last call that advisories announce.
    pub fn take_notices(&mut self) -> Vec<super::advisory::Notice> {
        std::mem::take(&mut self.notices)
    }

    pub fn take_acked(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.acked_seqs)
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
        let push = saved
            .config
            .is_push()
            .then(|| push::Push::new(&saved.config, now));
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
            push,
            skip: None,
            last_active: now,
            last_delivered_at: saved.last_delivered_at,
            dirty: false,
            acked_seqs: Vec::new(),
            last_acked_at: 0,
            pending_count: std::cell::Cell::new(None),
            notices: Vec::new(),
        }
    }

    /// An ephemeral consumer (one with an `inactive_threshold`) is removed once idle that long:
    /// a pull consumer with no waiting request and no activity, a push consumer with no
    /// interest on its deliver subject.
    pub fn inactive_at(&self, now: i64) -> bool {
        let threshold = self.config.inactive_threshold;
        if threshold <= 0 {
            return false;
        }
        match &self.push {
            Some(push) => push.inactive_since.is_some_and(|t| now - t >= threshold),
            None => {
                self.waiting.is_empty() && now - self.last_active.max(self.created) >= threshold
            }
        }
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

    /// Messages not yet delivered that match the filters: counted once, then kept up to date
    /// as messages are stored, delivered and removed (a count per delivery would make
    /// consuming a stream quadratic). While the last messages per subject are delivered
    /// first, those left plus what came after.
    pub fn num_pending(&self, store: &dyn StreamStore) -> u64 {
        if let Some(skip) = &self.skip {
            return skip.seqs.len() as u64 + self.count_from(store, skip.resume + 1);
        }
        match self.pending_count.get() {
            Some(n) => n,
            None => {
                let n = self.count_from(store, self.next_sseq);
                self.pending_count.set(Some(n));
                n
            }
        }
    }

    /// Messages at or after `start` that match the filters.
    fn count_from(&self, store: &dyn StreamStore, start: u64) -> u64 {
        match self.config.filters().as_slice() {
            [] => store.num_pending(">", start),
            filters => filters.iter().map(|f| store.num_pending(f, start)).sum(),
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
        let filters = self.config.filters();
        filters.is_empty()
            || filters
                .iter()
                .any(|f| crate::proto::subject::matches(f.as_bytes(), subject.as_bytes()))
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
        // With one delivery allowed nothing is redelivered, so none is reported.
        let redelivered = match self.config.max_deliver {
            1 => 0,
            _ => self.redelivered.len(),
        };
        info.insert("num_redelivered".into(), json!(redelivered));
        info.insert("num_waiting".into(), json!(self.waiting.len()));
        info.insert("num_pending".into(), json!(self.num_pending(store)));
        if self.is_bound() {
            info.insert("push_bound".into(), json!(true));
        }
        info
    }

    /// Redelivers what waited past `ack_wait`, answers expired pull requests, delivers, and
    /// sends the heartbeats that are due.
    pub fn tick(&mut self, store: &dyn StreamStore, now: i64) -> Vec<Action> {
        self.mark_due(now);
        let mut out = self.dispatch(store, now);
        match self.push.is_some() {
            true => self.push_heartbeat(now, &mut out),
            false => self.expire_requests(now, &mut out),
        }
        out
    }

    /// Hands out what can go now: to waiting pull requests, or to the deliver subject.
    fn dispatch(&mut self, store: &dyn StreamStore, now: i64) -> Vec<Action> {
        match self.push.is_some() {
            true => self.dispatch_push(store, now),
            false => self.dispatch_pull(store, now),
        }
    }

    /// Delivers `msg` (for the `dc`th time) to `to` with its ack reply subject `ack` (from
    /// [`Consumer::ack_reply`], just before): records it as delivered and, unless nothing is
    /// acknowledged, as pending until `ack_wait` (or the backoff for this delivery) has passed.
    fn deliver(&mut self, msg: StoredMsg, dc: u64, to: String, ack: String, now: i64) -> Action {
        let sseq = msg.seq;
        let cseq = self.delivered.0 + 1;
        self.delivered = (cseq, self.delivered.1.max(sseq));
        self.dirty = true;
        self.last_delivered_at = now;
        if self.config.ack_policy == AckPolicy::None {
            self.ack_floor = (cseq, sseq);
            // Delivered is acknowledged: an interest stream may let it go.
            self.acked_seqs.push(sseq);
        } else {
            let deadline = now + self.ack_wait_for(dc);
            self.pending.insert(
                sseq,
                Pending {
                    cseq,
                    deadline,
                    delivered_at: now,
                },
            );
        }
        let (header, data) = match self.config.headers_only {
            true => (headers_only(&msg.header, msg.data.len()), Bytes::new()),
            false => (msg.header, msg.data),
        };
        Action::Deliver {
            to,
            subject: msg.subject,
            ack,
            header,
            data,
        }
    }

    /// The ack reply subject the next delivery of `msg` (for the `dc`th time) gets.
    fn ack_reply(&self, msg: &StoredMsg, dc: u64, store: &dyn StreamStore) -> String {
        format!(
            "$JS.ACK.{}.{}.{}.{}.{}.{}.{}",
            self.stream,
            self.name,
            dc,
            msg.seq,
            self.delivered.0 + 1,
            msg.ts,
            self.num_pending(store)
        )
    }

    /// What the next delivery of `msg` weighs as nats-server counts it against a pull
    /// request's `max_bytes`: subject, ack reply, headers and payload as delivered.
    fn delivery_size(&self, msg: &StoredMsg, ack: &str) -> i64 {
        let body = match self.config.headers_only {
            true => headers_only(&msg.header, msg.data.len()).len(),
            false => msg.header.len() + msg.data.len(),
        };
        (msg.subject.len() + ack.len() + body) as i64
    }

    /// Undoes [`Consumer::next_message`] for a message no request could take: it is the next
    /// one handed out again.
    fn put_back(&mut self, seq: u64, dc: u64, from: Source) {
        self.pending_count.set(None);
        match from {
            Source::Redelivery => {
                self.redeliver.insert(seq);
                match dc - 1 {
                    1 => self.redelivered.remove(&seq),
                    n => self.redelivered.insert(seq, n),
                };
            }
            Source::LastPerSubject => match self.skip.as_mut() {
                Some(skip) => skip.seqs.push_front(seq),
                None => {
                    self.skip = Some(SkipList {
                        seqs: VecDeque::from([seq]),
                        resume: self.next_sseq.saturating_sub(1),
                    })
                }
            },
            Source::New => self.next_sseq = seq,
        }
    }

    /// The next message to deliver with its delivery count, if any and if allowed:
    /// redeliveries first, then (while `max_ack_pending` allows) the last messages per
    /// subject of a `last_per_subject` start, then new messages.
    fn next_message(&mut self, store: &dyn StreamStore) -> Option<(StoredMsg, u64, Source)> {
        while let Some(sseq) = self.redeliver.pop_first() {
            if !self.pending.contains_key(&sseq) {
                continue;
            }
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
            // Still in `pending`: the delivery replaces its entry.
            self.redelivered.insert(sseq, dc);
            return Some((msg, dc, Source::Redelivery));
        }
        // A negative max_ack_pending is no limit.
        if self.config.ack_policy != AckPolicy::None
            && self.config.max_ack_pending > 0
            && self.pending.len() as i64 >= self.config.max_ack_pending
        {
            return None;
        }
        while let Some(skip) = self.skip.as_mut() {
            let Some(seq) = skip.seqs.pop_front() else {
                self.skip = None;
                break;
            };
            let (resume, done) = (skip.resume, skip.seqs.is_empty());
            if done {
                self.next_sseq = resume + 1;
                self.skip = None;
                self.pending_count.set(None);
            } else {
                self.next_sseq = seq + 1;
            }
            if let Some(msg) = store.load_msg(seq) {
                return Some((msg, 1, Source::LastPerSubject));
            }
        }
        let before = self.num_pending(store);
        match self.load_next(store, self.next_sseq) {
            Some(msg) => {
                // Nothing matching lies between the old and the new start: this is the first
                // match.
                self.next_sseq = msg.seq + 1;
                self.pending_count.set(Some(before.saturating_sub(1)));
                Some((msg, 1, Source::New))
            }
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

    /// `NATS/1.0 100 Idle Heartbeat` (nats-server's `sendIdleHeartbeat`): the last consumer
    /// sequence delivered, the last stream sequence looked at, and the flow control request a
    /// push consumer is held by.
    fn heartbeat(&self, stalled: Option<&str>) -> String {
        let mut header = format!(
            "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {}\r\nNats-Last-Stream: {}\r\n",
            self.delivered.0,
            self.next_sseq.saturating_sub(1)
        );
        if let Some(id) = stalled {
            header.push_str(&format!("Nats-Consumer-Stalled: {id}\r\n"));
        }
        header.push_str("\r\n");
        header
    }

    /// The first message at or after `start` matching one of the filters.
    fn load_next(&self, store: &dyn StreamStore, start: u64) -> Option<StoredMsg> {
        match self.config.filters().as_slice() {
            [] => store.load_next_msg(">", start),
            [only] => store.load_next_msg(only, start),
            filters => filters
                .iter()
                .filter_map(|f| store.load_next_msg(f, start))
                .min_by_key(|m| m.seq),
        }
    }
}

/// A message's headers as `headers_only` delivers them: the stored block (or a bare
/// `NATS/1.0`) with `Nats-Msg-Size: <payload length>` added.
fn headers_only(header: &[u8], size: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(header.len() + 32);
    match header.strip_suffix(b"\r\n") {
        Some(block) if !header.is_empty() => out.put_slice(block),
        _ => out.put_slice(b"NATS/1.0\r\n"),
    }
    out.put_slice(format!("Nats-Msg-Size: {size}\r\n\r\n").as_bytes());
    out.freeze()
}

/// The last message matching `filter`.
fn last_matching(store: &dyn StreamStore, filter: &str) -> Option<u64> {
    if !crate::proto::subject::has_wildcard(filter.as_bytes()) {
        return store.load_last_seq(filter);
    }
    let state = store.state();
    (state.first_seq..=state.last_seq)
        .rev()
        .find_map(|seq| {
            store
                .load_meta(seq)
                .filter(|m| crate::proto::subject::matches(filter.as_bytes(), m.subject.as_bytes()))
        })
        .map(|m| m.seq)
}

/// The sequence of the last message of each subject matching one of `filters` (all when
/// none), in stream order.
fn last_per_subject(store: &dyn StreamStore, filters: &[String]) -> Vec<u64> {
    let all = [">".to_string()];
    let filters = if filters.is_empty() {
        &all[..]
    } else {
        filters
    };
    let mut last: HashMap<String, u64> = HashMap::new();
    for filter in filters {
        let mut seq = 0;
        while let Some(msg) = store.load_next_meta(filter, seq) {
            seq = msg.seq + 1;
            last.insert(msg.subject, msg.seq);
        }
    }
    let mut seqs: Vec<u64> = last.into_values().collect();
    seqs.sort_unstable();
    seqs
}

/// The first sequence stored at or after `time` (the one after the last when none was).
fn seq_from_time(store: &dyn StreamStore, time: i64) -> u64 {
    let state = store.state();
    let mut seq = state.first_seq;
    while let Some(msg) = store.load_next_meta(">", seq) {
        if msg.ts >= time {
            return msg.seq;
        }
        seq = msg.seq + 1;
    }
    state.last_seq + 1
}
