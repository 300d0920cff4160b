//! The consumer requests of one account's `$JS.API`: `CONSUMER.CREATE` (and
//! `DURABLE.CREATE`), `INFO`, `DELETE`, `NAMES`, `LIST`, with a work queue stream's rules.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{parse, time, AccountJs, LIST_LIMIT, NAMES_LIMIT};
use crate::jetstream::consumer::{Consumer, ConsumerConfig};
use crate::jetstream::errors::ApiError;
use crate::jetstream::stream::Stream;
use crate::proto::subject;

impl AccountJs {
    pub(super) fn consumer_create(
        &mut self,
        stream_name: &str,
        name: Option<&str>,
        filter: Option<String>,
        body: &[u8],
        now: i64,
    ) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        struct Create {
            #[serde(default)]
            stream_name: String,
            config: ConsumerConfig,
            #[serde(default)]
            action: String,
        }
        if body.is_empty() {
            return Err(ApiError::invalid_json("request body is empty"));
        }
        let request: Create = parse(body)?;
        if request.stream_name != stream_name {
            return Err(ApiError::new(
                400,
                10056,
                "stream name in subject does not match request".into(),
            ));
        }
        let mut config = request.config;
        if let Some(name) = name {
            if config.durable_name.as_deref().is_some_and(|d| d != name) {
                return Err(ApiError::new(
                    400,
                    10017,
                    "consumer name in subject does not match durable name in request".into(),
                ));
            }
            if config.name.as_deref().is_some_and(|n| n != name) {
                return Err(ApiError::new(
                    400,
                    10017,
                    "consumer name in subject does not match durable name in request".into(),
                ));
            }
        }
        if let Some(filter) = filter.filter(|f| !f.is_empty()) {
            match config.filter_subject.as_deref() {
                Some(f) if f != filter => return Err(ApiError::new(
                    400,
                    10131,
                    "consumer create request did not match filtered subject from create subject"
                        .into(),
                )),
                _ => config.filter_subject = Some(filter),
            }
        }
        let durable = config.durable_name.clone();
        let name = name
            .map(str::to_string)
            .or_else(|| config.name.clone())
            .or_else(|| durable.clone());
        let ephemeral = durable.is_none();
        if let Some(n) = &name {
            if !crate::jetstream::stream::valid_name(n) {
                return Err(ApiError::new(400, 10013, "consumer name is invalid".into()));
            }
        }
        if durable.is_some() {
            config.name = durable.clone();
        }
        let asked = config.max_ack_pending;
        let mut config = config.normalize(ephemeral)?;
        if let Some(stream) = self.streams.get(stream_name) {
            let new = name
                .as_ref()
                .map_or(true, |n| !stream.consumers.contains_key(n));
            self.check_consumer_limits(stream, &mut config, asked, new)?;
        }
        let stream = self
            .streams
            .get_mut(stream_name)
            .ok_or_else(ApiError::stream_not_found)?;
        let name = match name {
            Some(n) => n,
            None => {
                self.ephemerals += 1;
                ephemeral_name(now, self.ephemerals)
            }
        };
        config.check_cycle(&stream.config.subjects)?;
        if stream.config.retention == crate::jetstream::stream::Retention::WorkQueue {
            work_queue_check(stream, &name, &config)?;
        }
        match stream.consumers.get_mut(&name) {
            Some(existing) => {
                if existing.config != config {
                    if request.action == "create" {
                        return Err(ApiError::new(400, 10148, "consumer already exists".into()));
                    }
                    existing.config.check_update(&config)?;
                    // A bound push consumer keeps its deliver subject.
                    if existing.config.deliver_subject != config.deliver_subject
                        && existing.is_bound()
                    {
                        return Err(ApiError::new(
                            400,
                            10013,
                            "consumer name already in use".into(),
                        ));
                    }
                    existing.update_config(config, now);
                }
            }
            None => {
                if request.action == "update" {
                    return Err(ApiError::new(400, 10149, "consumer does not exist".into()));
                }
                let stream_name = stream.config.name.clone();
                let consumer = stream.with_store(|store| {
                    Consumer::new(name.clone(), stream_name, config, store, now)
                });
                stream.consumers.insert(name.clone(), consumer);
                let info = consumer_info(stream, &name, now, true);
                let owner = stream.config.name.clone();
                self.advise_consumer(&owner, &name, "create");
                return Ok(Value::Object(info));
            }
        }
        Ok(Value::Object(consumer_info(stream, &name, now, true)))
    }

    /// The stream `stream` if it holds the consumer `name`; nats-server's 10059 or 10014.
    fn stream_with_consumer(&self, stream: &str, name: &str) -> Result<&Stream, ApiError> {
        let stream = self
            .streams
            .get(stream)
            .ok_or_else(ApiError::stream_not_found)?;
        if !stream.consumers.contains_key(name) {
            return Err(consumer_not_found());
        }
        Ok(stream)
    }

    pub(super) fn consumer_info(
        &self,
        stream: &str,
        name: &str,
        now: i64,
    ) -> Result<Value, ApiError> {
        let stream = self.stream_with_consumer(stream, name)?;
        Ok(Value::Object(consumer_info(stream, name, now, true)))
    }

    /// `CONSUMER.UNPIN`: releases the client pinned to a priority group. tern's consumers have
    /// no priority groups, so once the request, the stream and the consumer check out, the
    /// group is one the consumer does not have; the checks come in nats-server's order.
    pub(super) fn consumer_unpin(
        &self,
        stream: &str,
        name: &str,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        #[derive(Deserialize, Default)]
        struct Unpin {
            #[serde(default)]
            group: String,
        }
        // nats-server reads this body with json.Unmarshal, whose words for a short body are
        // not those of the decoder the other requests use.
        let request: Option<Unpin> = parse(body).map_err(|e| match e.description.as_str() {
            "invalid JSON: unexpected EOF" => {
                ApiError::invalid_json("unexpected end of JSON input")
            }
            _ => e,
        })?;
        let group = request.unwrap_or_default().group;
        if group.is_empty() {
            return Err(ApiError::invalid_json("consumer group not specified"));
        }
        if !valid_group_name(&group) {
            return Err(ApiError::new(
                400,
                10162,
                "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed \
                 16 characters"
                    .into(),
            ));
        }
        self.stream_with_consumer(stream, name)?;
        Err(ApiError::new(
            400,
            10160,
            "Provided priority group does not exist for this consumer".into(),
        ))
    }

    pub(super) fn consumer_delete(&mut self, owner: &str, name: &str) -> Result<Value, ApiError> {
        let stream = self
            .streams
            .get_mut(owner)
            .ok_or_else(ApiError::stream_not_found)?;
        let mut consumer = stream
            .remove_consumer(name)
            .ok_or_else(consumer_not_found)?;
        self.actions.extend(consumer.close());
        self.advise_consumer(owner, name, "delete");
        Ok(json!({"success": true}))
    }

    pub(super) fn consumer_names(&self, stream: &str, body: &[u8]) -> Result<Value, ApiError> {
        let stream = self
            .streams
            .get(stream)
            .ok_or_else(ApiError::stream_not_found)?;
        let offset = page_offset(body)?;
        let names: Vec<&String> = stream
            .consumers
            .keys()
            .skip(offset)
            .take(NAMES_LIMIT)
            .collect();
        Ok(json!({
            "total": stream.consumers.len(),
            "offset": offset,
            "limit": NAMES_LIMIT,
            "consumers": if names.is_empty() { Value::Null } else { json!(names) },
        }))
    }

    pub(super) fn consumer_list(
        &self,
        stream: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Value, ApiError> {
        let stream = self
            .streams
            .get(stream)
            .ok_or_else(ApiError::stream_not_found)?;
        let offset = page_offset(body)?;
        let infos: Vec<Value> = stream
            .consumers
            .keys()
            .skip(offset)
            .take(LIST_LIMIT)
            .map(|name| Value::Object(consumer_info(stream, name, now, false)))
            .collect();
        Ok(json!({
            "total": stream.consumers.len(),
            "offset": offset,
            "limit": LIST_LIMIT,
            "consumers": infos,
        }))
    }
}

/// `ConsumerInfo` for consumer `name` of `stream` at `now` (it exists), with the server's
/// dynamic metadata when `dynamic` (not in lists, as nats-server).
pub(super) fn consumer_info(
    stream: &Stream,
    name: &str,
    now: i64,
    dynamic: bool,
) -> Map<String, Value> {
    let consumer = &stream.consumers[name];
    let mut info = consumer.info(stream.store());
    let mut config = consumer.config.clone();
    if dynamic {
        let m = config.metadata.get_or_insert_with(BTreeMap::new);
        m.insert(
            "_nats.level".into(),
            crate::jetstream::API_LEVEL.to_string(),
        );
        m.insert(
            "_nats.ver".into(),
            crate::proto::protocol::NATS_SERVER_VERSION.into(),
        );
    }
    // After `name` and `created`, as nats-server orders it.
    let mut ordered = Map::new();
    for key in ["stream_name", "name", "created"] {
        if let Some(v) = info.remove(key) {
            ordered.insert(key.into(), v);
        }
    }
    ordered.insert("config".into(), json!(config));
    ordered.extend(info);
    ordered.insert("ts".into(), json!(time(now)));
    ordered
}

/// What a work queue stream asks of a consumer (`addConsumerWithAssignment`): explicit acks,
/// delivery from the start, and filters that no other consumer's overlap.
fn work_queue_check(stream: &Stream, name: &str, config: &ConsumerConfig) -> Result<(), ApiError> {
    use crate::jetstream::consumer::{AckPolicy, DeliverPolicy};
    let invalid = |code: u32, text: &str| Err(ApiError::new(400, code, text.into()));
    match config.ack_policy {
        AckPolicy::None => {
            return invalid(
                10084,
                "consumer in pull mode requires explicit ack policy on workqueue stream",
            )
        }
        AckPolicy::All => return invalid(10098, "workqueue stream requires explicit ack"),
        AckPolicy::Explicit => {}
    }
    if config.deliver_policy != DeliverPolicy::All {
        return invalid(10101, "consumer must be deliver all on workqueue stream");
    }
    let others: Vec<&Consumer> = stream
        .consumers
        .values()
        .filter(|c| c.name != name)
        .collect();
    if others.is_empty() {
        return Ok(());
    }
    if config.filters().is_empty() {
        return invalid(
            10099,
            "multiple non-filtered consumers not allowed on workqueue stream",
        );
    }
    let overlap = |c: &&Consumer| {
        let theirs = c.config.filters();
        let theirs = if theirs.is_empty() { vec![">"] } else { theirs };
        theirs.iter().any(|a| {
            config
                .filters()
                .iter()
                .any(|b| subject::overlaps(a.as_bytes(), b.as_bytes()))
        })
    };
    if others.iter().any(overlap) {
        return invalid(10100, "filtered consumer not unique on workqueue stream");
    }
    Ok(())
}

/// nats-server's priority group names: 1 to 16 of `A-Z a-z 0-9 - _ / =`.
fn valid_group_name(group: &str) -> bool {
    (1..=16).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b))
}

fn consumer_not_found() -> ApiError {
    ApiError::new(404, 10014, "consumer not found".into())
}

/// The `offset` of a paged request (an empty body is offset 0).
fn page_offset(body: &[u8]) -> Result<usize, ApiError> {
    #[derive(Deserialize)]
    struct Paged {
        #[serde(default)]
        offset: usize,
    }
    match body.trim_ascii().is_empty() {
        true => Ok(0),
        false => Ok(parse::<Paged>(body)?.offset),
    }
}

/// An ephemeral consumer's name: 8 characters from the time and a counter (nats-server takes
/// them from a random value's SHA-256).
fn ephemeral_name(now: i64, n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // splitmix64 of the two, so that names made in the same nanosecond differ.
    let mut x = (now as u64) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (0..8)
        .map(|i| ALPHABET[((x >> (i * 6)) % 62) as usize] as char)
        .collect()
}
