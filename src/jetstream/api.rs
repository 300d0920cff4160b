//! One account's JetStream: its streams and the `$JS.API` requests about them, answered with
//! nats-server's JSON (`jsStreamCreateRequest`, `jsStreamInfoRequest`, ..., server/
//! jetstream_api.go). Pure: each request gets the time as nanoseconds since the Unix epoch and
//! returns the response's bytes. By concept: `streams` (the stream requests), `consumers`,
//! `direct` (direct gets), `limits` (the account's JetStream limits), `report` (totals and
//! `/jsz` detail for the monitor).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::advisory::Advisory;
use super::consumer::{Action, Consumer, SavedConsumer};
use super::errors::ApiError;
use super::filestore::FileStore;
use super::store::{MemoryStore, StoredMsg, StreamStore};
use super::stream::{PubOutcome, Storage, Stream, StreamConfig};

mod consumers;
mod direct;
mod limits;
mod report;
mod streams;

/// The response kind of the request whose subject's tokens after `$JS.API.` are `tokens`;
/// `None` for a request tern does not answer.
fn kind_of(tokens: &[&str]) -> Option<&'static str> {
    Some(match tokens {
        ["INFO"] => "account_info_response",
        ["STREAM", "CREATE", _] => "stream_create_response",
        ["STREAM", "UPDATE", _] => "stream_update_response",
        ["STREAM", "INFO", _] => "stream_info_response",
        ["STREAM", "DELETE", _] => "stream_delete_response",
        ["STREAM", "NAMES"] => "stream_names_response",
        ["STREAM", "LIST"] => "stream_list_response",
        ["STREAM", "PURGE", _] => "stream_purge_response",
        ["STREAM", "MSG", "GET", _] => "stream_msg_get_response",
        ["STREAM", "MSG", "DELETE", _] => "stream_msg_delete_response",
        ["CONSUMER", "CREATE", _, ..] | ["CONSUMER", "DURABLE", "CREATE", _, _] => {
            "consumer_create_response"
        }
        ["CONSUMER", "INFO", _, _] => "consumer_info_response",
        ["CONSUMER", "DELETE", _, _] => "consumer_delete_response",
        ["CONSUMER", "NAMES", _] => "consumer_names_response",
        ["CONSUMER", "LIST", _] => "consumer_list_response",
        ["CONSUMER", "UNPIN", _, _] => "consumer_unpin_response",
        ["STREAM", "LEADER", "STEPDOWN", _] => "stream_leader_stepdown_response",
        ["STREAM", "PEER", "REMOVE", _] => "stream_remove_peer_response",
        ["CONSUMER", "LEADER", "STEPDOWN", _, _] => "consumer_leader_stepdown_response",
        _ => return None,
    })
}

/// The directory of a file stream's consumers, beside its log.
const OBS: &str = "obs";

/// `STREAM.NAMES` pages hold this many names.
const NAMES_LIMIT: usize = 1024;

/// `STREAM.LIST` pages hold this many streams.
const LIST_LIMIT: usize = 256;

/// The `$JS.API.` prefix of every request subject.
pub const API_PREFIX: &str = "$JS.API.";

/// One account's streams and API counters.
#[derive(Debug, Default)]
pub struct AccountJs {
    /// The streams by name.
    pub streams: BTreeMap<String, Stream>,
    /// Requests answered (`api.total`).
    total: u64,
    /// Requests answered with an error (`api.errors`).
    errors: u64,
    /// Ephemeral consumers named so far.
    ephemerals: u64,
    /// What deleted consumers owe their waiting requests, for [`AccountJs::take_actions`].
    actions: Vec<Action>,
    /// Where file streams are kept (`<store_dir>/jetstream/<account>/streams`), and whether
    /// each write is synced; `None` in tests without a disk.
    disk: Option<(PathBuf, bool)>,
    /// The consumers of file streams whose state is on disk, as (stream, consumer).
    persisted: std::collections::BTreeSet<(String, String)>,
    /// JetStream is not enabled for this account: every request gets 503/10039.
    disabled: bool,
    /// Advisories to publish, for [`AccountJs::take_advisories`].
    advisories: Vec<Advisory>,
    /// The account's limits (its `jetstream { ... }` block).
    pub limits: crate::config::accounts::JetStreamLimits,
    /// The server's JetStream `domain`, named in PubAcks and account info.
    pub domain: Option<std::sync::Arc<str>>,
}

/// What `meta.json` holds.
#[derive(Serialize, Deserialize)]
struct Meta {
    created: i64,
    config: StreamConfig,
}

/// A response: the JSON to send to the request's reply subject.
pub type Response = Vec<u8>;

impl AccountJs {
    /// An account with no streams, and no disk.
    pub fn new() -> AccountJs {
        AccountJs::default()
    }

    /// An account JetStream is not enabled for: it answers every request with nats-server's
    /// `503 JetStream not enabled for account` (10039).
    pub fn disabled() -> AccountJs {
        AccountJs {
            disabled: true,
            ..AccountJs::default()
        }
    }

    /// The account whose file streams are in `dir`, recovered as they were (messages past
    /// `max_age` at `now` dropped); `sync_always` syncs every write. Returns it with a line
    /// to log per stream.
    pub fn open(
        dir: PathBuf,
        sync_always: bool,
        now: i64,
    ) -> std::io::Result<(AccountJs, Vec<String>)> {
        std::fs::create_dir_all(&dir)?;
        let mut js = AccountJs {
            disk: Some((dir.clone(), sync_always)),
            ..AccountJs::default()
        };
        let mut log = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        for stream_dir in entries {
            // As nats-server, a stream or consumer whose file cannot be read is left out, with
            // a warning, rather than keeping JetStream from starting.
            let meta_path = stream_dir.join(super::filestore::META);
            let meta: Meta = match read_json(&meta_path) {
                Ok(meta) => meta,
                Err(err) => {
                    let path = meta_path.display().to_string();
                    tracing::warn!("  Error unmarshalling stream metafile {path:?}: {err}");
                    continue;
                }
            };
            let (store, _) = FileStore::open(&stream_dir, sync_always)?;
            let mut stream = Stream::new(meta.config, Box::new(store), meta.created);
            stream.enforce_limits_on_recover(now);
            stream.recovered();
            let name = stream.config.name.clone();
            let obs = stream_dir.join(OBS);
            if obs.is_dir() {
                for entry in std::fs::read_dir(&obs)? {
                    let path = entry?.path();
                    if path.extension().and_then(|e| e.to_str()) != Some("json") {
                        continue;
                    }
                    let saved: SavedConsumer = match read_json(&path) {
                        Ok(saved) => saved,
                        Err(err) => {
                            let path = path.display().to_string();
                            tracing::warn!(
                                "    Error unmarshalling consumer metafile {path:?}: {err}"
                            );
                            continue;
                        }
                    };
                    let consumer = Consumer::restore(name.clone(), saved, now);
                    js.persisted.insert((name.clone(), consumer.name.clone()));
                    stream.consumers.insert(consumer.name.clone(), consumer);
                }
            }
            log.push(format!(
                "Restored {} messages for stream '{name}'",
                stream.state().messages
            ));
            js.streams.insert(name, stream);
        }
        Ok((js, log))
    }

    /// A new stream's store: on disk for file storage, else in memory.
    fn new_store(
        &self,
        config: &StreamConfig,
        created: i64,
    ) -> Result<Box<dyn StreamStore>, ApiError> {
        let failed = |e: std::io::Error| ApiError::new(500, 10049, e.to_string());
        match (config.storage, &self.disk) {
            (Storage::Memory, _) => Ok(Box::new(MemoryStore::new())),
            (Storage::File, None) => Err(ApiError::new(
                500,
                10049,
                "file storage needs a store directory".into(),
            )),
            (Storage::File, Some((dir, sync_always))) => {
                let stream_dir = dir.join(&config.name);
                write_meta(&stream_dir, created, config).map_err(failed)?;
                let (store, _) = FileStore::open(&stream_dir, *sync_always).map_err(failed)?;
                Ok(Box::new(store))
            }
        }
    }

    /// Answers the request on `subject` (`$JS.API.<...>`) with `body`; `None` for a subject
    /// nats-server does not answer either. `server_name` is the stream leader's name.
    ///
    /// `header` is the request's header block: a `Nats-Required-Api-Level` above tern's
    /// level is refused (412, 10185) before anything is done, as nats-server refuses it.
    pub fn request(
        &mut self,
        subject: &str,
        header: &[u8],
        body: &[u8],
        now: i64,
        server_name: &str,
    ) -> Option<Response> {
        let rest = subject.strip_prefix(API_PREFIX)?;
        let tokens: Vec<&str> = rest.split('.').collect();
        let required = super::stream::header_value(header, "Nats-Required-Api-Level");
        let too_high = required.is_some_and(|level| {
            level
                .trim()
                .parse::<u32>()
                .map_or(true, |level| level > super::API_LEVEL)
        });
        if self.disabled {
            let kind = kind_of(&tokens)?;
            let error = ApiError::new(503, 10039, "JetStream not enabled for account".into());
            return Some(self.respond(kind, Err(error)));
        }
        if too_high {
            let kind = kind_of(&tokens)?;
            let error = ApiError::new(412, 10185, "JetStream minimum api level required".into());
            return Some(self.respond(kind, Err(error)));
        }
        let (kind, result) = match tokens.as_slice() {
            ["INFO"] => ("account_info_response", Ok(self.account_info())),
            ["STREAM", "CREATE", name] => ("stream_create_response", self.create(name, body, now)),
            ["STREAM", "UPDATE", name] => ("stream_update_response", self.update(name, body, now)),
            ["STREAM", "INFO", name] => ("stream_info_response", self.info(name, now, server_name)),
            ["STREAM", "DELETE", name] => ("stream_delete_response", self.delete(name)),
            ["STREAM", "NAMES"] => ("stream_names_response", self.names(body)),
            ["STREAM", "LIST"] => ("stream_list_response", self.list(body, now)),
            ["STREAM", "PURGE", name] => ("stream_purge_response", self.purge(name, body)),
            ["STREAM", "MSG", "GET", name] => ("stream_msg_get_response", self.msg_get(name, body)),
            ["STREAM", "MSG", "DELETE", name] => {
                ("stream_msg_delete_response", self.msg_delete(name, body))
            }
            ["CONSUMER", "CREATE", stream] => (
                "consumer_create_response",
                self.consumer_create(stream, None, None, body, now),
            ),
            ["CONSUMER", "CREATE", stream, name, filter @ ..] => (
                "consumer_create_response",
                self.consumer_create(stream, Some(name), Some(filter.join(".")), body, now),
            ),
            ["CONSUMER", "DURABLE", "CREATE", stream, name] => (
                "consumer_create_response",
                self.consumer_create(stream, Some(name), None, body, now),
            ),
            ["CONSUMER", "INFO", stream, name] => (
                "consumer_info_response",
                self.consumer_info(stream, name, now),
            ),
            ["CONSUMER", "DELETE", stream, name] => (
                "consumer_delete_response",
                self.consumer_delete(stream, name),
            ),
            ["CONSUMER", "NAMES", stream] => {
                ("consumer_names_response", self.consumer_names(stream, body))
            }
            ["CONSUMER", "LIST", stream] => (
                "consumer_list_response",
                self.consumer_list(stream, body, now),
            ),
            ["CONSUMER", "UNPIN", stream, name] => (
                "consumer_unpin_response",
                self.consumer_unpin(stream, name, body),
            ),
            // Leaders and peers exist only in clustered JetStream, which a single server
            // answers with 10010 whatever the stream or consumer, as nats-server does.
            ["STREAM", "LEADER", "STEPDOWN", _]
            | ["STREAM", "PEER", "REMOVE", _]
            | ["CONSUMER", "LEADER", "STEPDOWN", _, _] => {
                let kind = kind_of(&tokens)?;
                let error =
                    ApiError::new(503, 10010, "JetStream clustering support required".into());
                (kind, Err(error))
            }
            _ => return None,
        };
        Some(self.respond(kind, result))
    }

    /// The response of `kind` carrying `result`, counted in the API totals.
    fn respond(&mut self, kind: &str, result: Result<Value, ApiError>) -> Response {
        let mut response = Map::new();
        response.insert(
            "type".into(),
            Value::String(format!("io.nats.jetstream.api.v1.{kind}")),
        );
        // nats-server counts a response when it sends it through its API response path, which
        // a successful MSG.GET does not take.
        if !(kind == "stream_msg_get_response" && result.is_ok()) {
            self.total += 1;
        }
        match result {
            Ok(Value::Object(fields)) => response.extend(fields),
            Ok(_) => {}
            Err(err) => {
                // nats-server answers a MSG.DELETE of a sequence it does not hold without
                // counting an error.
                if err.err_code != 10043 {
                    self.errors += 1;
                }
                response.insert("error".into(), json!(err));
                // The fields nats-server's response types always carry, beside the error.
                match kind {
                    "stream_info_response" => {
                        response.insert("total".into(), json!(0));
                        response.insert("offset".into(), json!(0));
                        response.insert("limit".into(), json!(0));
                    }
                    "stream_purge_response" => {
                        response.insert("purged".into(), json!(0));
                    }
                    "stream_names_response"
                    | "stream_list_response"
                    | "consumer_names_response"
                    | "consumer_list_response" => {
                        response.insert("total".into(), json!(0));
                        response.insert("offset".into(), json!(0));
                        response.insert("limit".into(), json!(0));
                        let (key, empty) = match kind {
                            "stream_names_response" => ("streams", Value::Null),
                            "stream_list_response" => ("streams", json!([])),
                            _ => ("consumers", json!([])),
                        };
                        response.insert(key.into(), empty);
                    }
                    _ => {}
                }
            }
        }
        serde_json::to_vec(&Value::Object(response)).unwrap_or_default()
    }

    /// Stores a message published to `subject`, which `stream` captures; the PubAck JSON
    /// (`{"stream":..,"seq":..}`, with `"duplicate": true`, or with an error and seq 0).
    pub fn publish(
        &mut self,
        stream: &str,
        subject: &str,
        header: Bytes,
        data: Bytes,
        now: i64,
    ) -> Option<(bool, Response)> {
        let s = self.streams.get(stream)?;
        let size = s.store().msg_size(subject, &header, &data);
        let over = self.would_exceed(s.config.storage, size);
        let s = self.streams.get_mut(stream)?;
        let no_ack = s.config.no_ack;
        let outcome = match over {
            Some(err) => Err(err),
            None => s.process_publish(subject, header, data, now),
        };
        let ack = match outcome {
            Ok(PubOutcome::Stored(seq)) => self.pub_ack(stream, seq, false),
            Ok(PubOutcome::Duplicate(seq)) => self.pub_ack(stream, seq, true),
            Err(err) => Self::failed_pub_ack(stream, err),
        };
        Some((no_ack, ack))
    }

    /// A PubAck for `seq`, written as nats-server writes it (by hand, not by its JSON
    /// encoder): `{"stream":"S","domain":"D","seq":N}`, the domain only when the server has
    /// one, and `,"duplicate": true` (with its space) for a duplicate.
    fn pub_ack(&self, stream: &str, seq: u64, duplicate: bool) -> Response {
        use std::io::Write;
        let mut ack = Vec::with_capacity(48 + stream.len());
        ack.extend_from_slice(b"{\"stream\":");
        let _ = serde_json::to_writer(&mut ack, stream);
        if let Some(domain) = &self.domain {
            ack.extend_from_slice(b",\"domain\":");
            let _ = serde_json::to_writer(&mut ack, &**domain);
        }
        let _ = write!(ack, ",\"seq\":{seq}");
        if duplicate {
            ack.extend_from_slice(b",\"duplicate\": true");
        }
        ack.push(b'}');
        ack
    }

    /// The reply to a publish whose write failed after it was taken (a group commit).
    pub fn failed_pub_ack(stream: &str, err: ApiError) -> Response {
        let ack = PubAck {
            error: err,
            stream,
            seq: 0,
        };
        serde_json::to_vec(&ack).unwrap_or_default()
    }

    /// Applies `max_age` at `now` to every stream.
    pub fn expire(&mut self, now: i64) {
        for stream in self.streams.values_mut() {
            stream.expire(now);
        }
    }

    /// Writes the state of the file streams' consumers that changed, and removes that of
    /// consumers that are gone; failures are logged (a consumer then comes back as it was
    /// last written: redelivery, never loss).
    pub fn persist_consumers(&mut self) {
        let Some((dir, sync_always)) = &self.disk else {
            return;
        };
        let mut present = std::collections::BTreeSet::new();
        for (stream_name, stream) in self.streams.iter_mut() {
            if stream.config.storage != Storage::File {
                continue;
            }
            let obs = dir.join(stream_name).join(OBS);
            for (name, consumer) in stream.consumers.iter_mut() {
                present.insert((stream_name.clone(), name.clone()));
                if !consumer.dirty {
                    continue;
                }
                consumer.dirty = false;
                let written = std::fs::create_dir_all(&obs).and_then(|_| {
                    let json =
                        serde_json::to_vec(&consumer.saved()).map_err(std::io::Error::other)?;
                    super::filestore::write_atomically(
                        &obs.join(format!("{name}.json")),
                        &json,
                        *sync_always,
                    )
                });
                if let Err(err) = written {
                    tracing::error!("JetStream: saving consumer '{stream_name} > {name}': {err}");
                }
            }
        }
        for (stream, name) in self.persisted.difference(&present) {
            let path = dir.join(stream).join(OBS).join(format!("{name}.json"));
            if let Err(err) = std::fs::remove_file(&path) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::error!("JetStream: removing consumer '{stream} > {name}': {err}");
                }
            }
        }
        self.persisted = present;
    }

    /// Syncs every file stream to disk (`sync_interval`); failures are logged.
    pub fn sync(&mut self) {
        for (name, stream) in self.streams.iter_mut() {
            if let Err(err) = stream.sync() {
                tracing::error!("JetStream: syncing stream '{name}': {err}");
            }
        }
    }

    /// What the last requests left to send (the `409 Consumer Deleted` of deleted consumers).
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Lets every consumer of every stream act at `now`.
    pub fn tick(&mut self, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (name, stream) in self.streams.iter_mut() {
            let before: Vec<String> = stream.consumers.keys().cloned().collect();
            out.extend(stream.tick_consumers(now));
            for consumer in before {
                if !stream.consumers.contains_key(&consumer) {
                    gone.push((name.clone(), consumer));
                }
            }
        }
        for (stream, consumer) in gone {
            self.advise_consumer(&stream, &consumer, "delete");
        }
        out
    }

    /// Notes a stream advisory (`create`, `modify`, `delete`).
    fn advise_stream(&mut self, stream: &str, action: &'static str) {
        self.advisories.push(Advisory::Stream {
            stream: stream.into(),
            action,
        });
    }

    /// Notes a consumer advisory (`create`, `delete`).
    fn advise_consumer(&mut self, stream: &str, consumer: &str, action: &'static str) {
        self.advisories.push(Advisory::Consumer {
            stream: stream.into(),
            consumer: consumer.into(),
            action,
        });
    }

    /// The advisories to publish since the last call, the consumers' notices included.
    pub fn take_advisories(&mut self) -> Vec<Advisory> {
        let mut out = std::mem::take(&mut self.advisories);
        for (name, stream) in self.streams.iter_mut() {
            for (consumer_name, consumer) in stream.consumers.iter_mut() {
                for notice in consumer.take_notices() {
                    out.push(Advisory::Notice {
                        stream: name.clone(),
                        consumer: consumer_name.clone(),
                        notice,
                    });
                }
            }
        }
        out
    }

    /// A pull request for `consumer` of `stream`, replied to at `reply`.
    pub fn pull(
        &mut self,
        stream: &str,
        consumer: &str,
        reply: &str,
        body: &[u8],
        now: i64,
    ) -> Vec<Action> {
        self.streams
            .get_mut(stream)
            .and_then(|s| s.with_consumer(consumer, |c, store| c.pull(reply, body, store, now)))
            .unwrap_or_default()
    }

    /// An acknowledgement on `ack_subject` (`$JS.ACK.<stream>.<consumer>...`).
    pub fn ack(&mut self, ack_subject: &str, body: &[u8], now: i64) -> Vec<Action> {
        let mut tokens = ack_subject.split('.').skip(2);
        let (Some(stream), Some(consumer)) = (tokens.next(), tokens.next()) else {
            return Vec::new();
        };
        self.streams
            .get_mut(stream)
            .and_then(|s| s.ack(consumer, ack_subject, body, now))
            .unwrap_or_default()
    }

    /// Each consumer as `(stream, consumer)`, for the subscriptions behind it.
    pub fn consumer_names_all(&self) -> Vec<(String, String)> {
        self.streams
            .iter()
            .flat_map(|(s, stream)| stream.consumers.keys().map(move |c| (s.clone(), c.clone())))
            .collect()
    }

    /// The streams that answer direct gets (`allow_direct`).
    pub fn direct_streams(&self) -> Vec<String> {
        self.streams
            .iter()
            .filter(|(_, s)| s.config.allow_direct)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Each stream's name and subjects, for the subscriptions that capture them, and whether
    /// its messages may be packed together as they come in ([`StreamConfig::drops_in_order`]).
    pub fn captures(&self) -> BTreeMap<String, (Vec<String>, bool)> {
        self.streams
            .iter()
            .map(|(name, s)| {
                let capture = (s.config.subjects.clone(), s.config.drops_in_order());
                (name.clone(), capture)
            })
            .collect()
    }

    fn account_info(&self) -> Value {
        let memory: u64 = self
            .streams
            .values()
            .filter(|s| s.config.storage == Storage::Memory)
            .map(|s| s.state().bytes)
            .sum();
        let storage: u64 = self
            .streams
            .values()
            .filter(|s| s.config.storage == Storage::File)
            .map(|s| s.state().bytes)
            .sum();
        let mut info = json!({
            "memory": memory,
            "storage": storage,
            "reserved_memory": self.reserved(Storage::Memory, None),
            "reserved_storage": self.reserved(Storage::File, None),
            "streams": self.streams.len(),
            "consumers": self.streams.values().map(|s| s.consumers.len()).sum::<usize>(),
            "limits": self.limits_json(),
            "api": {"level": super::API_LEVEL, "total": self.total, "errors": self.errors}
        });
        if let Some(domain) = &self.domain {
            info["domain"] = json!(&**domain);
        }
        info
    }
}

/// A request body read as Go reads it: a `null` leaves the field at its default.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    fn strip_nulls(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip_nulls);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
    // Go's words for a truncated body; other syntax errors are described in serde's words.
    let invalid = |e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Eof => ApiError::invalid_json("unexpected EOF"),
        _ => ApiError::invalid_json(&e.to_string()),
    };
    let mut value: Value = serde_json::from_slice(body).map_err(invalid)?;
    strip_nulls(&mut value);
    serde_json::from_value(value).map_err(invalid)
}

/// The JSON file at `path`, or why it cannot be had.
fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| crate::monitor::os_error_text(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Writes a file stream's `meta.json` in `dir` (made if need be).
fn write_meta(dir: &std::path::Path, created: i64, config: &StreamConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta = serde_json::to_vec(&Meta {
        created,
        config: config.clone(),
    })
    .map_err(std::io::Error::other)?;
    super::filestore::write_atomically(&dir.join(super::filestore::META), &meta, true)
}

/// The reply to a publish refused, in nats-server's field order (no domain, as there).
#[derive(Serialize)]
struct PubAck<'a> {
    error: ApiError,
    stream: &'a str,
    seq: u64,
}

/// nats-server's `StreamInfo` fields for `stream` at `now`: `config` (with the dynamic
/// metadata when `dynamic`), `created`, `state`, `ts`.
fn stream_info(stream: &Stream, now: i64, dynamic: bool) -> Map<String, Value> {
    let config = match dynamic {
        true => stream.config.with_dynamic_metadata(),
        false => stream.config.clone(),
    };
    let s = stream.state();
    let mut state = Map::new();
    state.insert("messages".into(), json!(s.messages));
    state.insert("bytes".into(), json!(s.bytes));
    state.insert("first_seq".into(), json!(s.first_seq));
    state.insert("first_ts".into(), json!(time(s.first_ts)));
    state.insert("last_seq".into(), json!(s.last_seq));
    state.insert("last_ts".into(), json!(time(s.last_ts)));
    if s.num_subjects > 0 {
        state.insert("num_subjects".into(), json!(s.num_subjects));
    }
    let deleted = match s.messages {
        0 => 0,
        n => s.last_seq + 1 - s.first_seq - n,
    };
    if deleted > 0 {
        state.insert("num_deleted".into(), json!(deleted));
    }
    state.insert("consumer_count".into(), json!(stream.consumers.len()));
    let mut info = Map::new();
    info.insert("config".into(), json!(config));
    info.insert("created".into(), json!(time(stream.created)));
    info.insert("state".into(), Value::Object(state));
    info.insert("ts".into(), json!(time(now)));
    info
}

/// A time as nats-server writes it: RFC 3339 with nanoseconds in UTC, and Go's zero time for 0.
pub fn time(ns: i64) -> String {
    if ns <= 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    crate::monitor::rfc3339(UNIX_EPOCH + Duration::from_nanos(ns as u64))
}

/// A message get request (`STREAM.MSG.GET` and the body form of `DIRECT.GET`): by sequence, the
/// last on a subject, or the next on a subject from a sequence.
#[derive(Deserialize)]
pub(super) struct MsgGetRequest {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    last_by_subj: String,
    #[serde(default)]
    next_by_subj: String,
    /// Direct get only: up to this many messages from `seq` (matching `next_by_subj`).
    #[serde(default)]
    pub(super) batch: usize,
    /// Direct get only: a batch stops once its messages reach this many bytes.
    #[serde(default)]
    pub(super) max_bytes: u64,
    /// Direct get only: the last message of each subject matching these filters.
    #[serde(default)]
    pub(super) multi_last: Vec<String>,
    /// With `multi_last`: the last at or below this sequence.
    #[serde(default)]
    pub(super) up_to_seq: u64,
    /// The forms tern does not have yet (`start_time`, `up_to_time`, `no_hdr`).
    #[serde(flatten)]
    pub(super) other: BTreeMap<String, Value>,
}

impl MsgGetRequest {
    /// Nothing asked for: no sequence, subject or subjects.
    pub(super) fn is_empty(&self) -> bool {
        self.seq == 0
            && self.last_by_subj.is_empty()
            && self.next_by_subj.is_empty()
            && self.multi_last.is_empty()
    }

    /// The message asked for (`Some(None)`: there is none), or `None` for a combination of
    /// fields nats-server refuses.
    pub(super) fn load(&self, store: &dyn StreamStore) -> Option<Option<StoredMsg>> {
        Some(
            match (
                self.seq,
                self.last_by_subj.as_str(),
                self.next_by_subj.as_str(),
            ) {
                (seq, "", "") if seq > 0 => store.load_msg(seq),
                (0, last, "") if !last.is_empty() => store.load_last_msg(last),
                (seq, "", next) if !next.is_empty() => store.load_next_msg(next, seq),
                _ => return None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(js: &mut AccountJs, subject: &str, body: &str) -> Value {
        let bytes = js
            .request(subject, b"", body.as_bytes(), 1_000, "srv")
            .expect("answered");
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn create_info_names_delete() {
        let mut js = AccountJs::new();
        let body = r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#;
        let created = call(&mut js, "$JS.API.STREAM.CREATE.S", body);
        assert_eq!(
            created["type"],
            "io.nats.jetstream.api.v1.stream_create_response"
        );
        assert_eq!(created["did_create"], true);
        assert_eq!(created["config"]["metadata"]["_nats.level"], "0");
        assert_eq!(created["state"]["first_ts"], "0001-01-01T00:00:00Z");
        // The same again is fine; a different configuration is not.
        assert_eq!(
            call(&mut js, "$JS.API.STREAM.CREATE.S", body)["did_create"],
            true
        );
        let other = r#"{"name":"S","subjects":["s.*"],"storage":"memory"}"#;
        assert_eq!(
            call(&mut js, "$JS.API.STREAM.CREATE.S", other)["error"]["err_code"],
            10058
        );
        let overlap = r#"{"name":"T","subjects":["s.a"],"storage":"memory"}"#;
        assert_eq!(
            call(&mut js, "$JS.API.STREAM.CREATE.T", overlap)["error"]["err_code"],
            10065
        );
        let mismatch = r#"{"name":"S","storage":"memory"}"#;
        assert_eq!(
            call(&mut js, "$JS.API.STREAM.CREATE.T", mismatch)["error"]["err_code"],
            10056
        );

        let (_, ack) = js
            .publish("S", "s.a", Bytes::new(), Bytes::from_static(b"hi"), 5)
            .unwrap();
        assert_eq!(ack, br#"{"stream":"S","seq":1}"#);
        let info = call(&mut js, "$JS.API.STREAM.INFO.S", "");
        assert_eq!(info["cluster"]["leader"], "srv");
        assert_eq!(info["state"]["messages"], 1);
        assert_eq!(info["state"]["num_subjects"], 1);
        let got = call(&mut js, "$JS.API.STREAM.MSG.GET.S", r#"{"seq":1}"#);
        assert_eq!(got["message"]["data"], "aGk=");
        let none = call(&mut js, "$JS.API.STREAM.MSG.GET.S", r#"{"seq":2}"#);
        assert_eq!(none["error"]["err_code"], 10037);
        let names = call(&mut js, "$JS.API.STREAM.NAMES", "");
        assert_eq!(names["streams"], json!(["S"]));
        assert_eq!(call(&mut js, "$JS.API.STREAM.PURGE.S", "")["purged"], 1);
        assert_eq!(
            call(&mut js, "$JS.API.STREAM.DELETE.S", "")["success"],
            true
        );
        let gone = call(&mut js, "$JS.API.STREAM.INFO.S", "");
        assert_eq!(gone["error"]["err_code"], 10059);
        assert_eq!(
            call(&mut js, "$JS.API.STREAM.NAMES", "")["streams"],
            Value::Null
        );
        let info = call(&mut js, "$JS.API.INFO", "");
        assert_eq!(info["api"]["errors"], 5);
        assert!(js.request("$JS.API.NOPE", b"", b"", 0, "srv").is_none());
    }
}
