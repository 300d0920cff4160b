//! Acknowledgements (`+ACK`, `-NAK`, `+WPI`, `+TERM`, `+NXT` on the `$JS.ACK...` reply of a
//! delivery) and redelivery once `ack_wait`, or the `backoff` of that delivery, has passed.

use serde::Deserialize;

use super::{AckPolicy, Action, Consumer};
use crate::jetstream::store::StreamStore;

impl Consumer {
    /// Handles an ack sent to `$JS.ACK...` with `body`. Returns what to send (a redelivery
    /// after `-NAK`, ...).
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
        // Acknowledgements keep an idle push consumer from being removed for a while more.
        if let Some(since) = self.push.as_mut().and_then(|p| p.inactive_since.as_mut()) {
            *since = now;
        }
        let body = String::from_utf8_lossy(body);
        let verb = body.split_whitespace().next().unwrap_or("");
        if matches!(verb, "" | "+ACK" | "+OK" | "+NXT" | "+TERM") {
            self.last_acked_at = now;
        }
        match verb {
            "" | "+ACK" | "+OK" | "+NXT" => {
                self.sample_ack(sseq, now);
                self.acked(sseq, cseq);
            }
            // `-NAK`, `-NAK {"delay":<ns>}` or `-NAK <Go duration>`.
            "-NAK" if self.pending.contains_key(&sseq) => {
                self.notices
                    .push(crate::jetstream::advisory::Notice::Naked {
                        consumer_seq: cseq,
                        stream_seq: sseq,
                        deliveries: tokens.get(4).and_then(|t| t.parse().ok()).unwrap_or(1),
                    });
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
                self.notices
                    .push(crate::jetstream::advisory::Notice::Terminated {
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
                let wait = self.ack_wait_for(self.redelivered.get(&sseq).copied().unwrap_or(1));
                if let Some(p) = self.pending.get_mut(&sseq) {
                    p.deadline = now + wait;
                }
            }
            _ => {}
        }
        self.dispatch(store, now)
    }

    /// How long the `dc`th delivery waits for its acknowledgement: `ack_wait`, or with a
    /// `backoff` its entry for that delivery (the last entry for any later one).
    pub(super) fn ack_wait_for(&self, dc: u64) -> i64 {
        let backoff = &self.config.backoff;
        match backoff.len() {
            0 => self.config.ack_wait,
            n => backoff[(dc.max(1) as usize - 1).min(n - 1)],
        }
    }

    /// Queues for redelivery what was not acknowledged in time.
    pub(super) fn mark_due(&mut self, now: i64) {
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
                self.notices
                    .push(crate::jetstream::advisory::Notice::MaxDeliveries {
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
    }

    /// An explicit ack of `sseq` at `now`, announced as a metric as often as `sample_freq`
    /// asks (nats-server's `sampleAck`).
    fn sample_ack(&mut self, sseq: u64, now: i64) {
        let Some(p) = self.pending.get(&sseq).copied() else {
            return;
        };
        let percent =
            crate::jetstream::advisory::sample_percent(self.config.sample_freq.as_deref());
        if percent == 0 || (percent < 100 && fastrand::u32(0..100) >= percent) {
            return;
        }
        self.notices
            .push(crate::jetstream::advisory::Notice::Acked {
                consumer_seq: p.cseq,
                stream_seq: sseq,
                ack_time: now - p.delivered_at,
                deliveries: self.redelivered.get(&sseq).copied().unwrap_or(1),
            });
    }

    pub(super) fn acked(&mut self, sseq: u64, cseq: u64) {
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
    pub(super) fn update_ack_floor(&mut self) {
        self.ack_floor = match self.pending.iter().next() {
            // Saturating: a consumer file may hold a pending entry with sequence 0.
            Some((sseq, p)) => (p.cseq.saturating_sub(1), sseq.saturating_sub(1)),
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
