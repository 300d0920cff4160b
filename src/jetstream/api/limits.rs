//! An account's JetStream limits (its `jetstream { ... }` block) as nats-server enforces them:
//! when a stream is created (`checkStreamCfg`, `checkAccountLimits`, `checkBytesLimits`), when
//! a consumer is created, and when a message would take the account past its memory or
//! storage (`wouldExceedLimits`).

use serde_json::{json, Value};

use super::AccountJs;
use crate::jetstream::consumer::{AckPolicy, ConsumerConfig};
use crate::jetstream::errors::ApiError;
use crate::jetstream::stream::{Storage, Stream, StreamConfig};

/// nats-server's default `max_ack_pending` of a consumer that acknowledges.
const DEFAULT_MAX_ACK_PENDING: i64 = 1000;

impl AccountJs {
    /// The limits as `$JS.API.INFO` shows them.
    pub(super) fn limits_json(&self) -> Value {
        let l = &self.limits;
        json!({
            "max_memory": l.max_memory,
            "max_storage": l.max_store,
            "max_streams": l.max_streams,
            "max_consumers": l.max_consumers,
            "max_ack_pending": l.max_ack_pending,
            "memory_max_stream_bytes": l.memory_max_stream_bytes,
            "storage_max_stream_bytes": l.store_max_stream_bytes,
            "max_bytes_required": l.max_bytes_required,
        })
    }

    /// Bytes the streams of `storage` reserve (their `max_bytes`), but `except`'s.
    pub(super) fn reserved(&self, storage: Storage, except: Option<&str>) -> i64 {
        self.streams
            .values()
            .filter(|s| s.config.storage == storage && Some(s.config.name.as_str()) != except)
            .map(|s| s.config.max_bytes.max(0))
            .sum()
    }

    /// Whether a new stream (or `config` replacing the stream of its name) fits the account.
    pub(super) fn check_stream_limits(
        &self,
        config: &StreamConfig,
        replacing: bool,
    ) -> Result<(), ApiError> {
        let l = &self.limits;
        if l.max_bytes_required && config.max_bytes <= 0 {
            return Err(ApiError::new(
                400,
                10113,
                "account requires a stream config to have max bytes set".into(),
            ));
        }
        let (max_stream_bytes, max_bytes) = match config.storage {
            Storage::Memory => (l.memory_max_stream_bytes, l.max_memory),
            Storage::File => (l.store_max_stream_bytes, l.max_store),
        };
        if max_stream_bytes > 0 && config.max_bytes > max_stream_bytes {
            return Err(ApiError::new(
                400,
                10122,
                "stream max bytes exceeds account limit max stream bytes".into(),
            ));
        }
        if !replacing && l.max_streams > 0 && self.streams.len() as i64 >= l.max_streams {
            return Err(ApiError::new(
                400,
                10027,
                "maximum number of streams reached".into(),
            ));
        }
        if config.max_consumers > 0 && l.max_consumers > 0 && config.max_consumers > l.max_consumers
        {
            return Err(max_consumers_reached());
        }
        // A stream without `max_bytes` counts for one byte.
        let adds = config.max_bytes.max(1);
        let except = replacing.then_some(config.name.as_str());
        if max_bytes >= 0 && self.reserved(config.storage, except) + adds > max_bytes {
            return Err(match config.storage {
                Storage::Memory => {
                    ApiError::new(500, 10028, "insufficient memory resources available".into())
                }
                Storage::File => ApiError::new(
                    500,
                    10047,
                    "insufficient storage resources available".into(),
                ),
            });
        }
        Ok(())
    }

    /// Whether a new consumer with `config` (whose `max_ack_pending` the request set to
    /// `asked`, 0 when it left it out) fits `stream` and the account; the account's
    /// `max_ack_pending` caps the default.
    pub(super) fn check_consumer_limits(
        &self,
        stream: &Stream,
        config: &mut ConsumerConfig,
        asked: i64,
        new: bool,
    ) -> Result<(), ApiError> {
        let most = [stream.config.max_consumers, self.limits.max_consumers]
            .into_iter()
            .filter(|n| *n > 0)
            .min();
        if new && most.is_some_and(|most| stream.consumers.len() as i64 >= most) {
            return Err(max_consumers_reached());
        }
        let limit = self.limits.max_ack_pending;
        if limit > 0 && config.ack_policy != AckPolicy::None {
            if asked > limit {
                return Err(ApiError::new(
                    400,
                    10121,
                    format!("consumer max ack pending exceeds system limit of {limit}"),
                ));
            }
            if asked == 0 {
                config.max_ack_pending = DEFAULT_MAX_ACK_PENDING.min(limit);
            }
        }
        Ok(())
    }

    /// Whether storing `size` more bytes of `storage` would take the account past its limit
    /// (nats-server refuses the message with 10002).
    pub(super) fn would_exceed(&self, storage: Storage, size: u64) -> Option<ApiError> {
        let max = match storage {
            Storage::Memory => self.limits.max_memory,
            Storage::File => self.limits.max_store,
        };
        if max < 0 {
            return None;
        }
        let used: u64 = self
            .streams
            .values()
            .filter(|s| s.config.storage == storage)
            .map(|s| s.state().bytes)
            .sum();
        (used + size > max as u64)
            .then(|| ApiError::new(400, 10002, "resource limits exceeded for account".into()))
    }
}

fn max_consumers_reached() -> ApiError {
    ApiError::new(400, 10026, "maximum consumers limit reached".into())
}
