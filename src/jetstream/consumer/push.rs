//! A push consumer's side (nats-server's `loopAndGatherMsgs` for a deliver subject): messages go
//! to `deliver_subject` only while someone listens there (the caller says, with
//! [`Consumer::set_interest`]; with a `deliver_group`, only members of that queue group
//! count), paced by flow control (`NATS/1.0 100 FlowControl Request`, answered on
//! `$JS.FC.<stream>.<consumer>.<id>`) and `rate_limit_bps`; an idle one sends
//! `NATS/1.0 100 Idle Heartbeat` every `idle_heartbeat`.

use super::{Action, Consumer, ConsumerConfig};
use crate::jetstream::store::StreamStore;

/// nats-server's `JsFlowControlMaxPending`: the widest flow control window, 32 MiB. A consumer
/// starts at a sixteenth of it and doubles it on each answer.
const FLOW_CONTROL_MAX_PENDING: i64 = 32 * 1024 * 1024;

/// The burst of a rate limit: the default `max_payload` (nats-server takes the stream's
/// `max_msg_size` or the account's `max_payload`).
const RATE_BURST: f64 = 1024.0 * 1024.0;

/// The alphabet of flow control ids (nats-server's `digits`, base 62).
const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A push consumer's delivery state.
#[derive(Debug, Clone)]
pub(super) struct Push {
    /// Someone listens on the deliver subject (`push_bound`).
    pub(super) active: bool,
    /// Since when no one has listened (an ephemeral is removed after `inactive_threshold`).
    pub(super) inactive_since: Option<i64>,
    /// When the next idle heartbeat is due.
    next_heartbeat: i64,
    /// Bytes delivered and not yet covered by an answered flow control request.
    pending_bytes: i64,
    /// The flow control window: delivery stops while `pending_bytes` is above it.
    window: i64,
    /// The outstanding flow control request's reply subject and the bytes it covers.
    flow_control: Option<(String, i64)>,
    /// Flow control requests sent, for their ids.
    requests: u64,
    /// The rate limit's bucket (bytes, may be owed) and when it was last filled.
    tokens: f64,
    filled_at: i64,
}

impl Push {
    /// A push consumer created (or restored) at `now`, with no one listening yet.
    pub(super) fn new(config: &ConsumerConfig, now: i64) -> Push {
        Push {
            active: false,
            inactive_since: Some(now),
            next_heartbeat: now + config.idle_heartbeat,
            pending_bytes: 0,
            window: FLOW_CONTROL_MAX_PENDING / 16,
            flow_control: None,
            requests: 0,
            tokens: RATE_BURST,
            filled_at: now,
        }
    }
}

impl Consumer {
    /// The deliver subject and group of a push consumer.
    pub fn deliver_target(&self) -> Option<(&str, Option<&str>)> {
        let subject = self.config.deliver_subject.as_deref()?;
        Some((subject, self.config.deliver_group.as_deref()))
    }

    /// A push consumer someone listens to (`push_bound`).
    pub fn is_bound(&self) -> bool {
        self.push.as_ref().is_some_and(|p| p.active)
    }

    /// Whether someone listens on the deliver subject now (a member of the deliver group when
    /// there is one). Nothing for a pull consumer.
    pub fn set_interest(&mut self, active: bool, now: i64) {
        let Some(push) = self.push.as_mut() else {
            return;
        };
        if push.active != active {
            push.active = active;
            push.inactive_since = (!active).then_some(now);
        }
    }

    /// Takes `config`, an allowed update: a new deliver subject gets what is pending again
    /// (nats-server's `updateDeliverSubject`), once someone listens there.
    pub fn update_config(&mut self, config: ConsumerConfig, now: i64) {
        let moved = self.config.deliver_subject != config.deliver_subject;
        self.config = config;
        self.dirty = true;
        if moved {
            let pending: Vec<u64> = self.pending.keys().copied().collect();
            self.redeliver.extend(pending);
            self.set_interest(false, now);
        }
    }

    /// An answer to a flow control request, published to `subject`; returns what can go now.
    /// Only the latest request counts: it frees the bytes it covered and widens the window.
    pub fn flow_control_reply(
        &mut self,
        subject: &str,
        store: &dyn StreamStore,
        now: i64,
    ) -> Vec<Action> {
        let Some(push) = self.push.as_mut() else {
            return Vec::new();
        };
        match &push.flow_control {
            Some((id, covered)) if id == subject => {
                push.pending_bytes = (push.pending_bytes - covered).max(0);
                push.window = (push.window * 2).min(FLOW_CONTROL_MAX_PENDING);
                push.flow_control = None;
            }
            _ => return Vec::new(),
        }
        self.dispatch(store, now)
    }

    /// Delivers to the deliver subject while someone listens, the flow control window is
    /// open and the rate limit allows.
    pub(super) fn dispatch_push(&mut self, store: &dyn StreamStore, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(to) = self.config.deliver_subject.clone() else {
            return out;
        };
        let rate = self.config.rate_limit_bps as f64 / 8.0;
        while let Some(push) = self.push.as_mut() {
            if !push.active || push.pending_bytes > push.window {
                break;
            }
            if rate > 0.0 {
                let elapsed = (now - push.filled_at).max(0) as f64 / 1e9;
                push.tokens = (push.tokens + elapsed * rate).min(RATE_BURST);
                push.filled_at = now;
                // What the last delivery took beyond the bucket is owed first.
                if push.tokens < 0.0 {
                    break;
                }
            }
            let Some((msg, dc, _)) = self.next_message(store) else {
                break;
            };
            let ack = self.ack_reply(&msg, dc, store);
            let action = self.deliver(msg, dc, to.clone(), ack, now);
            // nats-server counts subject, reply, headers and payload.
            let size = match &action {
                Action::Deliver {
                    subject,
                    ack,
                    header,
                    data,
                    ..
                } => (subject.len() + ack.len() + header.len() + data.len()) as i64,
                _ => 0,
            };
            out.push(action);
            let stream = self.stream.clone();
            let name = self.name.clone();
            let flow_control = self.config.flow_control;
            let heartbeat = self.config.idle_heartbeat;
            let Some(push) = self.push.as_mut() else {
                break;
            };
            push.tokens -= size as f64;
            push.next_heartbeat = now + heartbeat;
            if !flow_control {
                continue;
            }
            push.pending_bytes += size;
            // A request once half the window is used; while one is out, bytes past a whole
            // window more are covered by it too (as nats-server's `needFlowControl`).
            match &mut push.flow_control {
                None if push.pending_bytes > push.window / 2 => {
                    push.requests += 1;
                    let reply = format!(
                        "$JS.FC.{stream}.{name}.{}",
                        flow_control_id(now, push.requests)
                    );
                    push.flow_control = Some((reply.clone(), push.pending_bytes));
                    out.push(Action::FlowControl {
                        to: to.clone(),
                        reply,
                        header: "NATS/1.0 100 FlowControl Request\r\n\r\n".into(),
                    });
                }
                Some((_, covered)) if push.pending_bytes - *covered >= push.window => {
                    *covered += size;
                }
                _ => {}
            }
        }
        out
    }

    /// Sends the idle heartbeat when one is due and someone listens.
    pub(super) fn push_heartbeat(&mut self, now: i64, out: &mut Vec<Action>) {
        let heartbeat = self.config.idle_heartbeat;
        let (Some(to), Some(push)) = (&self.config.deliver_subject, self.push.as_mut()) else {
            return;
        };
        if heartbeat <= 0 || push.next_heartbeat > now {
            return;
        }
        push.next_heartbeat = now + heartbeat;
        if !push.active {
            return;
        }
        let stalled = push.flow_control.as_ref().map(|(id, _)| id.clone());
        let to = to.clone();
        let header = self.heartbeat(stalled.as_deref());
        out.push(Action::Status { to, header });
    }
}

/// Four characters from the time and a counter (nats-server takes them from a random number).
fn flow_control_id(now: i64, n: u64) -> String {
    let mut x = (now as u64) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    (0..4)
        .map(|i| DIGITS[((x >> (i * 8)) % 62) as usize] as char)
        .collect()
}
