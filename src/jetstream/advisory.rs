//! JetStream's advisories, as nats-server publishes them on `$JS.EVENT.ADVISORY.>`: streams
//! and consumers created, updated and deleted, messages that reached `max_deliver`, were
//! refused (`-NAK`) or terminated, and the audit of every API request
//! (`server/jetstream_events.go`). Pure: the caller gives the id and the time, and publishes
//! only when someone listens.

use serde::Serialize;
use serde_json::Value;

/// What a consumer noticed, for its stream to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A message was given up on after `deliveries` deliveries (`max_deliver`).
    MaxDeliveries {
        /// Its stream sequence.
        stream_seq: u64,
        /// How many times it was delivered.
        deliveries: u64,
    },
    /// A sampled acknowledgement (`sample_freq`), for the ack metric.
    Acked {
        /// Its consumer sequence.
        consumer_seq: u64,
        /// Its stream sequence.
        stream_seq: u64,
        /// Nanoseconds from its delivery to the ack.
        ack_time: i64,
        /// How many times it was delivered.
        deliveries: u64,
    },
    /// A delivery was refused by `-NAK`.
    Naked {
        /// Its consumer sequence.
        consumer_seq: u64,
        /// Its stream sequence.
        stream_seq: u64,
        /// How many times it was delivered.
        deliveries: u64,
    },
    /// A message was terminated by `+TERM`.
    Terminated {
        /// Its consumer sequence.
        consumer_seq: u64,
        /// Its stream sequence.
        stream_seq: u64,
        /// How many times it was delivered.
        deliveries: u64,
        /// The reason given after `+TERM`, if any.
        reason: String,
    },
}

/// One advisory to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advisory {
    /// `STREAM.CREATED`, `UPDATED` or `DELETED`, with the action `create`, `modify`, `delete`.
    Stream {
        /// The stream.
        stream: String,
        /// `create`, `modify` or `delete`.
        action: &'static str,
    },
    /// `CONSUMER.CREATED` or `DELETED`.
    Consumer {
        /// Its stream.
        stream: String,
        /// The consumer.
        consumer: String,
        /// `create` or `delete`.
        action: &'static str,
    },
    /// A consumer's notice.
    Notice {
        /// Its stream.
        stream: String,
        /// The consumer.
        consumer: String,
        /// What it noticed.
        notice: Notice,
    },
}

const PREFIX: &str = "io.nats.jetstream.advisory.v1.";

impl Advisory {
    /// The subject it is published on.
    pub fn subject(&self) -> String {
        match self {
            Advisory::Stream { stream, action } => {
                let what = match *action {
                    "create" => "CREATED",
                    "modify" => "UPDATED",
                    _ => "DELETED",
                };
                format!("$JS.EVENT.ADVISORY.STREAM.{what}.{stream}")
            }
            Advisory::Consumer {
                stream,
                consumer,
                action,
            } => {
                let what = if *action == "create" {
                    "CREATED"
                } else {
                    "DELETED"
                };
                format!("$JS.EVENT.ADVISORY.CONSUMER.{what}.{stream}.{consumer}")
            }
            Advisory::Notice {
                stream,
                consumer,
                notice,
            } => {
                let what = match notice {
                    Notice::MaxDeliveries { .. } => "MAX_DELIVERIES",
                    Notice::Terminated { .. } => "MSG_TERMINATED",
                    Notice::Naked { .. } => "MSG_NAKED",
                    Notice::Acked { .. } => {
                        return format!("$JS.EVENT.METRIC.CONSUMER.ACK.{stream}.{consumer}")
                    }
                };
                format!("$JS.EVENT.ADVISORY.CONSUMER.{what}.{stream}.{consumer}")
            }
        }
    }

    /// The JSON body, in nats-server's field order, with `id` and `timestamp` (RFC 3339).
    pub fn encode(&self, id: &str, timestamp: &str) -> Vec<u8> {
        let mut fields = serde_json::Map::new();
        let mut put = |key: &str, value: Value| {
            fields.insert(key.into(), value);
        };
        let kind = match self {
            Advisory::Stream { .. } => "stream_action",
            Advisory::Consumer { .. } => "consumer_action",
            Advisory::Notice { notice, .. } => match notice {
                Notice::MaxDeliveries { .. } => "max_deliver",
                Notice::Terminated { .. } => "terminated",
                Notice::Naked { .. } => "nak",
                Notice::Acked { .. } => "consumer_ack",
            },
        };
        let kind = match kind {
            "consumer_ack" => "io.nats.jetstream.metric.v1.consumer_ack".to_string(),
            kind => format!("{PREFIX}{kind}"),
        };
        put("type", kind.into());
        put("id", id.into());
        put("timestamp", timestamp.into());
        match self {
            Advisory::Stream { stream, action } => {
                put("stream", stream.as_str().into());
                put("action", (*action).into());
            }
            Advisory::Consumer {
                stream,
                consumer,
                action,
            } => {
                put("stream", stream.as_str().into());
                put("consumer", consumer.as_str().into());
                put("action", (*action).into());
            }
            Advisory::Notice {
                stream,
                consumer,
                notice,
            } => {
                put("stream", stream.as_str().into());
                put("consumer", consumer.as_str().into());
                match notice {
                    Notice::MaxDeliveries {
                        stream_seq,
                        deliveries,
                    } => {
                        put("stream_seq", (*stream_seq).into());
                        put("deliveries", (*deliveries).into());
                    }
                    Notice::Acked {
                        consumer_seq,
                        stream_seq,
                        ack_time,
                        deliveries,
                    } => {
                        put("consumer_seq", (*consumer_seq).into());
                        put("stream_seq", (*stream_seq).into());
                        put("ack_time", (*ack_time).into());
                        put("deliveries", (*deliveries).into());
                    }
                    Notice::Naked {
                        consumer_seq,
                        stream_seq,
                        deliveries,
                    }
                    | Notice::Terminated {
                        consumer_seq,
                        stream_seq,
                        deliveries,
                        ..
                    } => {
                        put("consumer_seq", (*consumer_seq).into());
                        put("stream_seq", (*stream_seq).into());
                        put("deliveries", (*deliveries).into());
                        if let Notice::Terminated { reason, .. } = notice {
                            if !reason.is_empty() {
                                put("reason", reason.as_str().into());
                            }
                        }
                    }
                }
            }
        }
        serde_json::to_vec(&Value::Object(fields)).unwrap_or_default()
    }
}

/// The subject of the API audit advisory.
pub const API_AUDIT: &str = "$JS.EVENT.ADVISORY.API";

/// The client that made an API request, as the audit shows it (nats-server's `ClientInfo`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditClient {
    /// When it connected.
    pub start: String,
    /// Its address.
    pub host: String,
    /// Its connection id.
    pub id: u64,
    /// Its account.
    pub acc: String,
    /// Its user, when it authenticated as one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// CONNECT `name`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// CONNECT `lang`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    /// CONNECT `version`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ver: String,
    /// Round-trip time in nanoseconds, once measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<u64>,
    /// The server it is connected to.
    pub server: String,
    /// `Client`.
    pub kind: &'static str,
    /// `nats`.
    pub client_type: &'static str,
}

/// The audit of one API request (`io.nats.jetstream.advisory.v1.api_audit`).
#[derive(Debug, Serialize)]
pub struct ApiAudit<'a> {
    /// The advisory's type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its id.
    pub id: &'a str,
    /// When.
    pub timestamp: &'a str,
    /// This server's name.
    pub server: &'a str,
    /// Who asked.
    pub client: AuditClient,
    /// The request subject.
    pub subject: &'a str,
    /// The request body, when there was one.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub request: &'a str,
    /// The response.
    pub response: &'a str,
}

/// The type of [`ApiAudit`].
pub const API_AUDIT_TYPE: &str = "io.nats.jetstream.advisory.v1.api_audit";

/// The share of acks `sample_freq` asks to announce, in percent (`"100%"`, `"50"`; 0 when
/// unset or unreadable).
pub fn sample_percent(freq: Option<&str>) -> u32 {
    freq.and_then(|f| f.trim().trim_end_matches('%').parse::<u32>().ok())
        .map_or(0, |p| p.min(100))
}

/// A new advisory id: 22 characters, as nats-server's NUIDs.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_bodies() {
        let a = Advisory::Stream {
            stream: "S".into(),
            action: "modify",
        };
        assert_eq!(a.subject(), "$JS.EVENT.ADVISORY.STREAM.UPDATED.S");
        assert_eq!(
            String::from_utf8(a.encode("i", "t")).unwrap(),
            r#"{"action":"modify","id":"i","stream":"S","timestamp":"t","type":"io.nats.jetstream.advisory.v1.stream_action"}"#
        );
        let t = Advisory::Notice {
            stream: "S".into(),
            consumer: "C".into(),
            notice: Notice::Terminated {
                consumer_seq: 2,
                stream_seq: 3,
                deliveries: 1,
                reason: String::new(),
            },
        };
        assert_eq!(
            t.subject(),
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.C"
        );
        let body: Value = serde_json::from_slice(&t.encode("i", "t")).unwrap();
        assert!(body.get("reason").is_none());
        assert_eq!(new_id().len(), 22);
    }
}
