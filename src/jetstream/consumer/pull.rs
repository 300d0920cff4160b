//! A pull consumer's side: requests (`$JS.API.CONSUMER.MSG.NEXT`) waiting for messages, their
//! expiry, heartbeats and status messages (`404`, `408`, `409`).

use serde::Deserialize;

use super::{Action, Consumer};
use crate::jetstream::store::StreamStore;

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
    /// Most bytes wanted, counted as nats-server does (subject, ack reply, headers and
    /// payload); 0 or less for no limit.
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

/// A pull request waiting for messages.
#[derive(Debug, Clone)]
pub(super) struct Waiting {
    pub(super) reply: String,
    left: i64,
    /// Bytes still wanted (`max_bytes`; 0 or less for no limit).
    bytes: i64,
    expires_at: Option<i64>,
    no_wait: bool,
    delivered_any: bool,
    /// `idle_heartbeat` in nanoseconds (0 for none).
    heartbeat: i64,
    /// When the next heartbeat is due if nothing is delivered before.
    next_heartbeat: i64,
}

impl Consumer {
    /// Takes a pull request whose replies go to `reply`; returns what to send now.
    pub fn pull(
        &mut self,
        reply: &str,
        body: &[u8],
        store: &dyn StreamStore,
        now: i64,
    ) -> Vec<Action> {
        let status = |header: String| {
            vec![Action::Status {
                to: reply.to_string(),
                header,
            }]
        };
        if self.push.is_some() {
            return status("NATS/1.0 409 Consumer is push based\r\n\r\n".into());
        }
        self.last_active = now;
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
            crate::jetstream::api::parse::<PullRequest>(text.as_bytes())
        };
        let Ok(mut request) = request else {
            return status("NATS/1.0 400 Bad Request\r\n\r\n".into());
        };
        if request.min_pending > 0 || request.min_ack_pending > 0 {
            return status(
                "NATS/1.0 400 Bad Request - Not a Overflow Priority consumer\r\n\r\n".into(),
            );
        }
        if request.idle_heartbeat > 0 && request.idle_heartbeat * 2 > request.expires {
            return status("NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n".into());
        }
        if request.batch <= 0 {
            request.batch = 1;
        }
        if let Some(exceeded) = self.exceeded_limit(&request) {
            return status(format!("NATS/1.0 409 Exceeded {exceeded}\r\n\r\n"));
        }
        if self.waiting.len() as i64 >= self.config.max_waiting {
            return status("NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n".into());
        }
        self.waiting.push_back(Waiting {
            reply: reply.to_string(),
            left: request.batch,
            bytes: request.max_bytes,
            expires_at: (request.expires > 0).then(|| now + request.expires),
            no_wait: request.no_wait,
            delivered_any: false,
            heartbeat: request.idle_heartbeat,
            next_heartbeat: now + request.idle_heartbeat,
        });
        self.dispatch(store, now)
    }

    /// The consumer's pull limit `request` goes past (`max_batch`, `max_expires`,
    /// `max_bytes`), as nats-server names it after "Exceeded".
    fn exceeded_limit(&self, request: &PullRequest) -> Option<String> {
        let config = &self.config;
        if config.max_batch > 0 && request.batch > config.max_batch {
            return Some(format!("MaxRequestBatch of {}", config.max_batch));
        }
        if config.max_expires > 0 && request.expires > config.max_expires {
            let limit = std::time::Duration::from_nanos(config.max_expires as u64);
            return Some(format!(
                "MaxRequestExpires of {}",
                crate::monitor::go_duration(limit)
            ));
        }
        if config.max_bytes > 0 && request.max_bytes > config.max_bytes {
            return Some(format!("MaxRequestMaxBytes of {}", config.max_bytes));
        }
        None
    }

    /// Hands messages to waiting requests: redeliveries first, then new messages, while
    /// `max_ack_pending` allows; then answers `no_wait` requests that cannot get more. A
    /// request the next message does not fit in (`max_bytes`) ends with a `409`, as in
    /// nats-server, and the message goes to the next one.
    pub(super) fn dispatch_pull(&mut self, store: &dyn StreamStore, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        while !self.waiting.is_empty() {
            let Some((msg, dc, from)) = self.next_message(store) else {
                break;
            };
            let ack = self.ack_reply(&msg, dc, store);
            let size = self.delivery_size(&msg, &ack);
            let Some(reply) = self.fitting_request(size, &mut out) else {
                self.put_back(msg.seq, dc, from);
                break;
            };
            out.push(self.deliver(msg, dc, reply, ack, now));
            if let Some(front) = self.waiting.front_mut() {
                front.left -= 1;
                front.delivered_any = true;
                front.next_heartbeat = now + front.heartbeat;
                if front.left <= 0 {
                    // A batch done with bytes to spare says so (its bytes ran out exactly,
                    // it ends without a word).
                    if front.bytes > 0 {
                        out.push(Action::Status {
                            to: front.reply.clone(),
                            header: format!(
                                "NATS/1.0 409 Batch Completed\r\nNats-Pending-Messages: 0\r\nNats-Pending-Bytes: {}\r\n\r\n",
                                front.bytes
                            ),
                        });
                    }
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

    /// The reply subject of the first request a delivery of `size` bytes fits in, with that
    /// size taken off its bytes; the requests before it end with a `409`. One left with no
    /// bytes after it takes nothing more.
    fn fitting_request(&mut self, size: i64, out: &mut Vec<Action>) -> Option<String> {
        while let Some(front) = self.waiting.front_mut() {
            if front.bytes <= 0 {
                return Some(front.reply.clone());
            }
            if size <= front.bytes {
                front.bytes -= size;
                if front.bytes == 0 {
                    front.left = 1;
                }
                return Some(front.reply.clone());
            }
            out.push(Action::Status {
                to: front.reply.clone(),
                header: format!(
                    "NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: {}\r\nNats-Pending-Bytes: {}\r\n\r\n",
                    front.left, front.bytes
                ),
            });
            self.waiting.pop_front();
        }
        None
    }

    /// Answers the requests whose `expires` passed (`408`) and sends the heartbeats due.
    pub(super) fn expire_requests(&mut self, now: i64, out: &mut Vec<Action>) {
        self.waiting.retain(|w| match w.expires_at {
            Some(at) if at <= now => {
                out.push(Action::Status {
                    to: w.reply.clone(),
                    header: format!(
                        "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: {}\r\nNats-Pending-Bytes: {}\r\n\r\n",
                        w.left,
                        w.bytes
                    ),
                });
                false
            }
            _ => true,
        });
        let header = self.heartbeat(None);
        for w in self.waiting.iter_mut() {
            if w.heartbeat > 0 && w.next_heartbeat <= now {
                w.next_heartbeat = now + w.heartbeat;
                out.push(Action::Status {
                    to: w.reply.clone(),
                    header: header.clone(),
                });
            }
        }
    }
}
