//! The stream requests of one account's `$JS.API`: `STREAM.CREATE`, `UPDATE`, `INFO`,
//! `DELETE`, `NAMES`, `LIST`, `PURGE`, `MSG.GET` and `MSG.DELETE`, with nats-server's checks.

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{parse, stream_info, time, AccountJs, MsgGetRequest, LIST_LIMIT, NAMES_LIMIT};
use crate::jetstream::errors::ApiError;
use crate::jetstream::stream::{Discard, Retention, Storage, Stream, StreamConfig};
use crate::proto::subject;

impl AccountJs {
    /// The body as a stream configuration for the stream named in the subject.
    fn config_from(name: &str, body: &[u8]) -> Result<StreamConfig, ApiError> {
        if body.is_empty() {
            return Err(ApiError::invalid_json("request body is empty"));
        }
        let mut config: StreamConfig = parse(body)?;
        if config.name.is_empty() {
            config.name = name.to_string();
        }
        if config.name != name {
            return Err(ApiError::new(
                400,
                10056,
                "stream name in subject does not match request".into(),
            ));
        }
        config.normalize()
    }

    /// Refuses subjects that another stream already captures.
    fn check_overlap(&self, config: &StreamConfig) -> Result<(), ApiError> {
        let others = self
            .streams
            .values()
            .filter(|s| s.config.name != config.name);
        for other in others {
            for a in &other.config.subjects {
                for b in &config.subjects {
                    if subject::overlaps(a.as_bytes(), b.as_bytes()) {
                        return Err(ApiError::new(
                            400,
                            10065,
                            "subjects overlap with an existing stream".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn create(&mut self, name: &str, body: &[u8], now: i64) -> Result<Value, ApiError> {
        let config = Self::config_from(name, body)?;
        if config.sealed {
            return Err(ApiError::new(
                500,
                10052,
                "stream configuration for create can not be sealed".into(),
            ));
        }
        if let Some(existing) = self.streams.get(name) {
            if !existing.config.same_as(&config) {
                return Err(ApiError::new(
                    400,
                    10058,
                    "stream name already in use with a different configuration".into(),
                ));
            }
        } else {
            self.check_overlap(&config)?;
            self.check_stream_limits(&config, false)?;
            let store = self.new_store(&config, now)?;
            let stream = Stream::new(config, store, now);
            self.streams.insert(name.to_string(), stream);
            self.advise_stream(name, "create");
        }
        let stream = &self.streams[name];
        let mut info = stream_info(stream, now, true);
        info.insert("did_create".into(), json!(true));
        Ok(Value::Object(info))
    }

    pub(super) fn update(&mut self, name: &str, body: &[u8], now: i64) -> Result<Value, ApiError> {
        let mut config = Self::config_from(name, body)?;
        let existing = self
            .streams
            .get(name)
            .ok_or_else(ApiError::stream_not_found)?;
        let old = &existing.config;
        if old.storage != config.storage {
            return Err(ApiError::one_way("change storage type"));
        }
        let work_queue = |c: &StreamConfig| c.retention == Retention::WorkQueue;
        if work_queue(old) != work_queue(&config) {
            return Err(ApiError::one_way(
                "change retention policy to/from workqueue",
            ));
        }
        // One-way flags, checked in nats-server's order.
        for (was, is, what) in [
            (old.sealed, config.sealed, "unseal a sealed stream"),
            (
                old.deny_delete,
                config.deny_delete,
                "cancel deny message deletes",
            ),
            (old.deny_purge, config.deny_purge, "cancel deny purge"),
        ] {
            if was && !is {
                return Err(ApiError::one_way(what));
            }
        }
        // Sealing keeps every message: no more removals by age, by limits or on request.
        if config.sealed {
            config.max_age = 0;
            config.discard = Discard::New;
            config.deny_delete = true;
            config.deny_purge = true;
            config.allow_rollup_hdrs = false;
        }
        self.check_overlap(&config)?;
        self.check_stream_limits(&config, true)?;
        if let (Storage::File, Some((dir, _))) = (config.storage, &self.disk) {
            let created = existing.created;
            super::write_meta(&dir.join(name), created, &config)
                .map_err(|e| ApiError::new(500, 10049, e.to_string()))?;
        }
        let stream = self
            .streams
            .get_mut(name)
            .ok_or_else(ApiError::stream_not_found)?;
        stream.config = config;
        stream.expire(now);
        let info = stream_info(stream, now, true);
        self.advise_stream(name, "modify");
        Ok(Value::Object(info))
    }

    pub(super) fn info(&self, name: &str, now: i64, server_name: &str) -> Result<Value, ApiError> {
        let stream = self
            .streams
            .get(name)
            .ok_or_else(ApiError::stream_not_found)?;
        let mut info = Map::new();
        info.insert("total".into(), json!(0));
        info.insert("offset".into(), json!(0));
        info.insert("limit".into(), json!(0));
        let mut rest = stream_info(stream, now, true);
        let ts = rest.remove("ts");
        info.extend(rest);
        info.insert("cluster".into(), json!({"leader": server_name}));
        info.insert("ts".into(), ts.unwrap_or(Value::Null));
        Ok(Value::Object(info))
    }

    pub(super) fn delete(&mut self, name: &str) -> Result<Value, ApiError> {
        let mut stream = self
            .streams
            .remove(name)
            .ok_or_else(ApiError::stream_not_found)?;
        let (storage, consumers) = (stream.config.storage, std::mem::take(&mut stream.consumers));
        // Its store is closed (a compaction in progress finished) before its files go.
        drop(stream);
        if let (Storage::File, Some((dir, _))) = (storage, &self.disk) {
            if let Err(err) = std::fs::remove_dir_all(dir.join(name)) {
                tracing::error!("JetStream: removing stream '{name}': {err}");
            }
        }
        for mut consumer in consumers.into_values() {
            self.actions.extend(consumer.close());
        }
        self.advise_stream(name, "delete");
        Ok(json!({"success": true}))
    }

    /// The streams a `NAMES`/`LIST` request asks for: after `offset`, capturing `subject`.
    fn selected(&self, body: &[u8]) -> Result<(usize, Vec<&Stream>), ApiError> {
        #[derive(Deserialize, Default)]
        struct Paged {
            #[serde(default)]
            offset: usize,
            #[serde(default)]
            subject: String,
        }
        let paged: Paged = match body.is_empty() {
            true => Paged::default(),
            false => parse(body)?,
        };
        let streams = self
            .streams
            .values()
            .filter(|s| {
                paged.subject.is_empty()
                    || s.config
                        .subjects
                        .iter()
                        .any(|c| subject::overlaps(c.as_bytes(), paged.subject.as_bytes()))
            })
            .collect();
        Ok((paged.offset, streams))
    }

    pub(super) fn names(&self, body: &[u8]) -> Result<Value, ApiError> {
        let (offset, streams) = self.selected(body)?;
        let total = streams.len();
        let names: Vec<&str> = streams
            .iter()
            .skip(offset)
            .take(NAMES_LIMIT)
            .map(|s| s.config.name.as_str())
            .collect();
        Ok(json!({
            "total": total,
            "offset": offset,
            "limit": NAMES_LIMIT,
            "streams": if names.is_empty() { Value::Null } else { json!(names) },
        }))
    }

    pub(super) fn list(&self, body: &[u8], now: i64) -> Result<Value, ApiError> {
        let (offset, streams) = self.selected(body)?;
        let total = streams.len();
        let infos: Vec<Value> = streams
            .iter()
            .skip(offset)
            .take(LIST_LIMIT)
            .map(|s| Value::Object(stream_info(s, now, false)))
            .collect();
        Ok(json!({"total": total, "offset": offset, "limit": LIST_LIMIT, "streams": infos}))
    }

    pub(super) fn purge(&mut self, name: &str, body: &[u8]) -> Result<Value, ApiError> {
        let stream = self
            .streams
            .get_mut(name)
            .ok_or_else(ApiError::stream_not_found)?;
        if stream.config.sealed {
            return Err(ApiError::sealed());
        }
        if stream.config.deny_purge {
            return Err(ApiError::new(
                500,
                10110,
                "stream purge not permitted".into(),
            ));
        }
        #[derive(Deserialize, Default)]
        struct Purge {
            #[serde(default)]
            filter: String,
            #[serde(default)]
            seq: u64,
            #[serde(default)]
            keep: u64,
        }
        let purge: Purge = match body.trim_ascii().is_empty() {
            true => Purge::default(),
            false => parse(body)?,
        };
        if purge.seq > 0 && purge.keep > 0 {
            return Err(ApiError::bad_request());
        }
        let purged = stream.purge_ex(&purge.filter, purge.seq, purge.keep);
        Ok(json!({"success": true, "purged": purged}))
    }

    pub(super) fn msg_delete(&mut self, name: &str, body: &[u8]) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        struct Delete {
            #[serde(default)]
            seq: u64,
        }
        let stream = self
            .streams
            .get_mut(name)
            .ok_or_else(ApiError::stream_not_found)?;
        if body.trim_ascii().is_empty() {
            return Err(ApiError::bad_request());
        }
        let delete: Delete = parse(body)?;
        if delete.seq == 0 {
            return Err(ApiError::bad_request());
        }
        if stream.config.sealed {
            return Err(ApiError::sealed());
        }
        if stream.config.deny_delete {
            return Err(ApiError::new(
                500,
                10057,
                "message delete not permitted".into(),
            ));
        }
        if !stream.remove_msg(delete.seq) {
            return Err(ApiError::new(
                400,
                10043,
                format!("sequence {} not found", delete.seq),
            ));
        }
        Ok(json!({"success": true}))
    }

    pub(super) fn msg_get(&self, name: &str, body: &[u8]) -> Result<Value, ApiError> {
        let stream = self
            .streams
            .get(name)
            .ok_or_else(ApiError::stream_not_found)?;
        let get: MsgGetRequest = parse(body)?;
        let msg = get
            .load(stream.store())
            .ok_or_else(ApiError::bad_request)?
            .ok_or_else(|| ApiError::new(404, 10037, "no message found".into()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut message = Map::new();
        message.insert("subject".into(), json!(msg.subject));
        message.insert("seq".into(), json!(msg.seq));
        if !msg.header.is_empty() {
            message.insert("hdrs".into(), json!(b64.encode(&msg.header)));
        }
        message.insert("data".into(), json!(b64.encode(&msg.data)));
        message.insert("time".into(), json!(time(msg.ts)));
        Ok(json!({ "message": message }))
    }
}
