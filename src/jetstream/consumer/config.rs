//! A consumer's configuration: nats-server's `ConsumerConfig` with its field names and order,
//! its defaults (`setConsumerConfigDefaults`) and its checks (`checkConsumerCfg`), with
//! nats-server's error codes and texts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::jetstream::errors::ApiError;
use crate::proto::subject;

/// Default `ack_wait`: 30 s.
const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;

/// Default `max_ack_pending`.
const DEFAULT_MAX_ACK_PENDING: i64 = 1000;

/// Default `max_waiting` of a pull consumer.
const DEFAULT_MAX_WAITING: i64 = 512;

/// Default `inactive_threshold` of an ephemeral consumer: 5 s.
const DEFAULT_INACTIVE_THRESHOLD: i64 = 5_000_000_000;

/// The shortest `idle_heartbeat` a push consumer may have: 100 ms.
const MIN_HEARTBEAT: i64 = 100_000_000;

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
    /// From the first message stored at or after `opt_start_time`.
    ByStartTime,
    /// The last message of each subject, then what comes.
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

fn is_zero_u64(n: &u64) -> bool {
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
    /// `opt_start_time`, as the client wrote it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// `ack_policy`.
    #[serde(default)]
    pub ack_policy: AckPolicy,
    /// `ack_wait` in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ack_wait: i64,
    /// `max_deliver` (-1 for no limit).
    #[serde(default)]
    pub max_deliver: i64,
    /// `backoff`: the waits before each redelivery, in nanoseconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    /// `filter_subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    /// `filter_subjects`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    /// `replay_policy`: only `instant` for now.
    #[serde(default = "instant")]
    pub replay_policy: String,
    /// `sample_freq`: the share of acks announced as metrics (`"100%"`, `"50"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_freq: Option<String>,
    /// `rate_limit_bps`: bits per second a push consumer delivers at most.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rate_limit_bps: u64,
    /// `max_waiting`: pull requests that may wait at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_waiting: i64,
    /// `max_ack_pending`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    /// `flow_control` (push).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flow_control: bool,
    /// `headers_only`: deliver headers and `Nats-Msg-Size`, no payload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headers_only: bool,
    /// `max_batch`: the largest `batch` a pull request may ask for (0: no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_batch: i64,
    /// `max_expires`: the longest `expires` a pull request may ask for, in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_expires: i64,
    /// `max_bytes`: the largest `max_bytes` a pull request may ask for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_bytes: i64,
    /// `deliver_subject`: set for a push consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_subject: Option<String>,
    /// `deliver_group`: the queue group a push consumer delivers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_group: Option<String>,
    /// `idle_heartbeat` in nanoseconds (push).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_heartbeat: i64,
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

/// Request fields refused when set: priority groups, pause.
const NOT_YET: [&str; 3] = ["priority_groups", "priority_policy", "pause_until"];

impl ConsumerConfig {
    /// Applies nats-server's defaults (`setConsumerConfigDefaults`), checks the result as it
    /// does (`checkConsumerCfg`), and refuses what tern cannot do yet.
    pub fn normalize(mut self, ephemeral: bool) -> Result<ConsumerConfig, ApiError> {
        let lacks =
            |what: &str| ApiError::new(500, 10012, format!("{what} is not supported by tern yet"));
        if let Some(key) = crate::jetstream::errors::first_set(&self.other, &NOT_YET) {
            return Err(lacks(key));
        }
        self.other.clear();
        if self.replay_policy != "instant" {
            return Err(lacks("replay_policy original"));
        }
        for field in [
            &mut self.filter_subject,
            &mut self.deliver_subject,
            &mut self.deliver_group,
            &mut self.opt_start_time,
        ] {
            if field.as_deref() == Some("") {
                *field = None;
            }
        }
        if self.max_deliver == 0 || self.max_deliver < -1 {
            self.max_deliver = -1;
        }
        self.max_waiting = self.max_waiting.max(0);
        if self.max_ack_pending < -1 {
            self.max_ack_pending = -1;
        }
        self.idle_heartbeat = self.idle_heartbeat.max(0);
        // A negative pull limit is no limit.
        for limit in [
            &mut self.max_batch,
            &mut self.max_expires,
            &mut self.max_bytes,
        ] {
            *limit = (*limit).max(0);
        }
        self.inactive_threshold = self.inactive_threshold.max(0);
        if !self.is_push() && self.max_waiting == 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if self.ack_policy != AckPolicy::None && self.ack_wait == 0 {
            self.ack_wait = DEFAULT_ACK_WAIT;
        }
        if let Some(first) = self.backoff.first() {
            self.ack_wait = *first;
        }
        if self.ack_policy != AckPolicy::None && self.max_ack_pending == 0 {
            self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
        }
        self.check()?;
        if ephemeral && self.inactive_threshold == 0 {
            self.inactive_threshold = DEFAULT_INACTIVE_THRESHOLD;
        }
        self.metadata
            .get_or_insert_with(BTreeMap::new)
            .entry("_nats.req.level".into())
            .or_insert_with(|| "0".into());
        Ok(self)
    }

    /// nats-server's `checkConsumerCfg`, in its order, for what tern has.
    fn check(&self) -> Result<(), ApiError> {
        let bad = |code: u32, text: &str| Err(ApiError::new(400, code, text.into()));
        if self.backoff.iter().any(|b| *b < 0) {
            return bad(10147, "consumer backoff needs to be positive");
        }
        if self.ack_wait < 0 {
            return bad(10172, "consumer ack_wait needs to be positive");
        }
        if !self.backoff.is_empty()
            && self.max_deliver != -1
            && self.backoff.len() as i64 > self.max_deliver
        {
            return bad(
                10116,
                "max deliver is required to be > length of backoff values",
            );
        }
        match &self.deliver_subject {
            Some(deliver) => {
                if subject::has_wildcard(deliver.as_bytes()) {
                    return bad(10079, "consumer deliver subject has wildcards");
                }
                if !subject::is_valid_literal(deliver.as_bytes()) {
                    return bad(10095, "consumer deliver subject is not a valid subject");
                }
                if self.max_waiting != 0 {
                    return bad(10080, "consumer in push mode can not set max waiting");
                }
                if self.max_ack_pending > 0 && self.ack_policy == AckPolicy::None {
                    return bad(10082, "consumer requires ack policy for max ack pending");
                }
                if self.idle_heartbeat > 0 && self.idle_heartbeat < MIN_HEARTBEAT {
                    return bad(10083, "consumer idle heartbeat needs to be >= 100ms");
                }
            }
            None => {
                if self.rate_limit_bps > 0 {
                    return bad(10086, "consumer in pull mode can not have rate limit set");
                }
                if self.idle_heartbeat > 0 {
                    return bad(
                        10088,
                        "consumer idle heartbeat requires a push based consumer",
                    );
                }
                if self.flow_control {
                    return bad(
                        10089,
                        "consumer flow control requires a push based consumer",
                    );
                }
            }
        }
        if self.filter_subject.is_some() && !self.filter_subjects.is_empty() {
            return bad(
                10136,
                "consumer cannot have both FilterSubject and FilterSubjects specified",
            );
        }
        let filters = self.filters();
        for filter in &filters {
            if filter.is_empty() {
                return bad(10139, "consumer filter in FilterSubjects cannot be empty");
            }
            if !subject::is_valid_filter(filter.as_bytes()) {
                return Err(ApiError::new(
                    400,
                    10052,
                    "invalid stream configuration: invalid subject".into(),
                ));
            }
        }
        for (i, a) in filters.iter().enumerate() {
            for (j, b) in filters.iter().enumerate() {
                if i != j && subject::is_subset(a.as_bytes(), b.as_bytes()) {
                    return bad(10138, "consumer subject filters cannot overlap");
                }
            }
        }
        let policy = |name: &str, what: &str, set: bool| {
            let text = match set {
                true => format!(
                    "consumer delivery policy is deliver {name}, but optional start {what} is also set"
                ),
                false => format!(
                    "consumer delivery policy is deliver {name}, but optional {what} is not set"
                ),
            };
            Err(ApiError::new(400, 10094, text))
        };
        let (seq, time) = (self.opt_start_seq > 0, self.opt_start_time.is_some());
        match self.deliver_policy {
            DeliverPolicy::All if seq => return policy("all", "sequence", true),
            DeliverPolicy::All if time => return policy("all", "time", true),
            DeliverPolicy::Last if seq => return policy("last", "sequence", true),
            DeliverPolicy::Last if time => return policy("last", "time", true),
            DeliverPolicy::LastPerSubject if seq => {
                return policy("last per subject", "sequence", true)
            }
            DeliverPolicy::LastPerSubject if time => {
                return policy("last per subject", "time", true)
            }
            DeliverPolicy::LastPerSubject if filters.is_empty() => {
                return policy("last per subject", "filter subject", false)
            }
            DeliverPolicy::New if seq => return policy("new", "sequence", true),
            DeliverPolicy::New if time => return policy("new", "time", true),
            DeliverPolicy::ByStartSequence if !seq => {
                return policy("by start sequence", "start sequence", false)
            }
            DeliverPolicy::ByStartSequence if time => {
                return policy("by start sequence", "time", true)
            }
            DeliverPolicy::ByStartTime if !time => {
                return policy("by start time", "start time", false)
            }
            DeliverPolicy::ByStartTime if seq => return policy("by start time", "sequence", true),
            _ => {}
        }
        if let Some(time) = &self.opt_start_time {
            if parse_time(time).is_none() {
                return Err(ApiError::invalid_json(&format!(
                    "parsing time {time:?} as RFC 3339"
                )));
            }
        }
        if self.flow_control && self.idle_heartbeat == 0 {
            return bad(10108, "consumer with flow control also needs heartbeats");
        }
        if self.max_expires > 0 && self.max_expires < 1_000_000 {
            return bad(10115, "consumer max request expires needs to be >= 1ms");
        }
        Ok(())
    }

    /// The deliver subject cannot be one the stream captures (`deliveryFormsCycle`).
    pub fn check_cycle(&self, stream_subjects: &[String]) -> Result<(), ApiError> {
        let Some(deliver) = &self.deliver_subject else {
            return Ok(());
        };
        let cycle = stream_subjects
            .iter()
            .any(|s| subject::matches(s.as_bytes(), deliver.as_bytes()));
        match cycle {
            true => Err(ApiError::new(
                400,
                10081,
                "consumer deliver subject forms a cycle".into(),
            )),
            false => Ok(()),
        }
    }

    /// What an update may not change (nats-server's `checkNewConsumerConfig`).
    pub fn check_update(&self, new: &ConsumerConfig) -> Result<(), ApiError> {
        let refuse = |what: &str| Err(ApiError::new(500, 10012, what.into()));
        if self.deliver_policy != new.deliver_policy {
            return refuse("deliver policy can not be updated");
        }
        if self.mem_storage != new.mem_storage {
            return refuse("storage type can not be updated");
        }
        if self.opt_start_seq != new.opt_start_seq {
            return refuse("start sequence can not be updated");
        }
        if self.start_time() != new.start_time() {
            return refuse("start time can not be updated");
        }
        if self.ack_policy != new.ack_policy {
            return refuse("ack policy can not be updated");
        }
        if self.replay_policy != new.replay_policy {
            return refuse("replay policy can not be updated");
        }
        if self.idle_heartbeat != new.idle_heartbeat {
            return refuse("heart beats can not be updated");
        }
        if self.flow_control != new.flow_control {
            return refuse("flow control can not be updated");
        }
        match (self.is_push(), new.is_push()) {
            (false, true) => return refuse("can not update pull consumer to push based"),
            (true, false) => return refuse("can not update push consumer to pull based"),
            _ => {}
        }
        if self.max_waiting != new.max_waiting {
            return refuse("max waiting can not be updated");
        }
        Ok(())
    }

    /// A push consumer: one with a deliver subject.
    pub fn is_push(&self) -> bool {
        self.deliver_subject.is_some()
    }

    /// The subject filter messages must match (`>` for all) when there is at most one.
    pub fn filter(&self) -> &str {
        match (&self.filter_subject, self.filter_subjects.as_slice()) {
            (Some(f), _) => f,
            (None, [only]) => only,
            _ => ">",
        }
    }

    /// Every filter (none: all messages).
    pub fn filters(&self) -> Vec<&str> {
        match &self.filter_subject {
            Some(f) => vec![f.as_str()],
            None => self.filter_subjects.iter().map(String::as_str).collect(),
        }
    }

    /// `opt_start_time` in nanoseconds since the epoch.
    pub fn start_time(&self) -> Option<i64> {
        self.opt_start_time.as_deref().and_then(parse_time)
    }
}

/// An RFC 3339 time (`2020-01-01T01:00:00.5+01:00`) in nanoseconds since the Unix epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once(['T', 't'])?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = format!("{frac:0<9}").parse::<i64>().ok()?;
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (oh, om) = zone[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    Some(secs * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<ConsumerConfig, ApiError> {
        serde_json::from_str::<ConsumerConfig>(json)
            .unwrap()
            .normalize(false)
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time("2020-01-01T01:00:00.5+01:00"),
            Some(1_577_836_800_500_000_000)
        );
        assert_eq!(parse_time("2020-13-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn push_checks() {
        let err = |json: &str| check(json).unwrap_err().err_code;
        assert_eq!(err(r#"{"deliver_subject":"d.*"}"#), 10079);
        assert_eq!(err(r#"{"deliver_subject":"d","max_waiting":1}"#), 10080);
        assert_eq!(err(r#"{"deliver_subject":"d","flow_control":true}"#), 10108);
        assert_eq!(err(r#"{"flow_control":true}"#), 10089);
        assert_eq!(err(r#"{"deliver_subject":"d","idle_heartbeat":1}"#), 10083);
        let c = check(r#"{"deliver_subject":"d","ack_policy":"explicit","backoff":[5,9]}"#);
        let c = c.unwrap();
        assert_eq!((c.ack_wait, c.max_waiting, c.max_deliver), (5, 0, -1));
        let c = check(r#"{"deliver_subject":"d","deliver_group":""}"#).unwrap();
        assert_eq!(c.deliver_group, None);
        assert!(c.check_cycle(&["d".into()]).is_err());
        assert!(c.check_cycle(&["e.>".into()]).is_ok());
    }
}
