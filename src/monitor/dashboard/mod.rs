//! The live dashboard on the monitor port: a page (HTML, script and styles compiled into the
//! binary) at `/dashboard`, and at `/` for a client that asks for HTML, fed by server-sent
//! events at `/dashboard/events`.
//!
//! A [`Sampler`] task reads, once a second, the counters `/varz` reads and keeps them in a
//! [`ring::Ring`] of the last ten minutes, so that a page opened now starts with history. That
//! is all it does while no page listens: one pass over the live connections' counters (atomic
//! loads, as `/varz` does) and two small `/proc` reads a second; the hot path is not touched.
//! While a page listens it also finds the busiest connections and subjects ([`top`]) and the
//! connections just closed as slow or stale, serialises that once, and every page's stream
//! sends the same text.
//!
//! The streams end when the sampler stops (the monitor is stopped with the server): the
//! sampler owns the only sender of the channel the pages' streams wait on.

pub mod ring;
pub mod top;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::http::{BodyStream, Response};
use super::varz;
use crate::engine::stats::ConnSnapshot;
use crate::state::Shared;
use ring::{Ring, Sample};
use top::{BusyConnection, BusySubject};

/// How often a sample is taken.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// The busiest subjects are counted every this many samples (it walks every subscription).
const SUBJECTS_EVERY: u64 = 5;
/// How long a page waits before reconnecting a dropped stream, in milliseconds.
const RETRY_MS: u64 = 2000;
/// The most slow or stale connections named in the history a page starts with.
const HISTORY_EVENTS: usize = 100;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// What one sample sends to the pages.
type Tick = Option<Arc<str>>;

/// The history and the pages' channel, shared by the sampler and the monitor's requests.
#[derive(Debug)]
pub struct Dashboard {
    /// Guards the ring only; taken once a second by the sampler and once per page opened.
    ring: Mutex<Ring>,
    /// Kept to clone for each page; the sampler holds the sender.
    ticks: watch::Receiver<Tick>,
}

/// The task that samples the counters; see the module documentation.
#[derive(Debug)]
pub struct Sampler {
    dashboard: Arc<Dashboard>,
    ticks: watch::Sender<Tick>,
    /// Each connection's counts at the previous watched sample.
    previous: top::Previous,
    /// When the previous sample was taken, and the CPU seconds used by then.
    last: Option<(Instant, f64)>,
    /// Slow consumers and stale connections counted at the previous sample.
    last_closed: (u64, u64),
    /// Samples taken while watched, for [`SUBJECTS_EVERY`].
    watched: u64,
}

/// One second's news for the pages.
#[derive(Debug, Serialize)]
struct TickDoc<'a> {
    sample: &'a Sample,
    conns: Vec<BusyConnection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subjects: Option<Vec<BusySubject>>,
    closed: Vec<ClosedEvent>,
}

/// A connection closed as a slow consumer or a stale connection.
#[derive(Debug, Serialize)]
struct ClosedEvent {
    cid: u64,
    name: String,
    addr: String,
    reason: &'static str,
    t: u64,
}

/// What a page gets first: who the server is, and the history.
#[derive(Debug, Serialize)]
struct HistoryDoc<'a> {
    server_id: &'a str,
    server_name: &'a str,
    version: &'a str,
    start: u64,
    interval_ms: u64,
    samples: Vec<Sample>,
    /// The slow consumers and stale connections among the closed connections kept, since the
    /// oldest sample.
    closed: Vec<ClosedEvent>,
}

impl Dashboard {
    /// A dashboard with no history, and the sampler that fills it.
    pub fn new() -> (Arc<Dashboard>, Sampler) {
        let (sender, receiver) = watch::channel(None);
        let dashboard = Arc::new(Dashboard {
            ring: Mutex::new(Ring::default()),
            ticks: receiver,
        });
        let sampler = Sampler {
            dashboard: dashboard.clone(),
            ticks: sender,
            previous: top::Previous::new(),
            last: None,
            last_closed: (0, 0),
            watched: 0,
        };
        (dashboard, sampler)
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The page, with the monitor's base path (`http_base_path`) for its requests.
    pub fn page(&self, base: &str) -> Response {
        let page = PAGE
            .replace("/*STYLE*/", STYLE)
            .replace("/*SCRIPT*/", SCRIPT)
            .replace("%BASE%", &html_attribute(base));
        Response::with_status(200, "text/html; charset=utf-8", page.into_bytes())
    }

    /// The event stream: the history as an `history` event, then one message a second.
    pub fn events(&self, shared: &Shared) -> Response {
        let mut ticks = self.ticks.clone();
        // Only what comes after the history; a sample in both is dropped by the page.
        ticks.borrow_and_update();
        let samples: Vec<Sample> = self.ring().iter().copied().collect();
        let since = samples.first().map_or(0, |s| s.t);
        let history = HistoryDoc {
            server_id: &shared.server_id,
            server_name: &shared.server_name,
            version: crate::proto::protocol::NATS_SERVER_VERSION,
            start: unix_millis(shared.start),
            interval_ms: INTERVAL.as_millis() as u64,
            samples,
            closed: slow_or_stale(&shared.closed.snapshot(), since, HISTORY_EVENTS),
        };
        let history = serde_json::to_string(&history).unwrap_or_default();
        let first = format!("retry: {RETRY_MS}\nevent: history\ndata: {history}\n\n");
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while ticks.changed().await.is_ok() {
                let Some(tick) = ticks.borrow_and_update().clone() else {
                    continue;
                };
                let chunk = Bytes::from(format!("data: {tick}\n\n"));
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        Response::streamed("text/event-stream", first.into_bytes(), BodyStream(rx))
    }
}

impl Sampler {
    /// Samples every [`INTERVAL`] until dropped.
    pub async fn run(mut self, shared: Arc<Shared>) {
        let mut interval = tokio::time::interval(INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            self.sample(&shared);
        }
    }

    /// Takes one sample, and sends the pages their news if any page listens.
    pub fn sample(&mut self, shared: &Shared) {
        let (live, totals) = varz::totals(shared);
        let now = Instant::now();
        let cpu_now = varz::cpu_seconds();
        let (elapsed, cpu) = match (self.last, cpu_now) {
            (Some((then, before)), Some(used)) => {
                let secs = now.duration_since(then).as_secs_f64();
                let percent = match secs > 0.0 {
                    true => (used - before).max(0.0) / secs * 100.0,
                    false => 0.0,
                };
                (secs, (percent * 100.0).round() / 100.0)
            }
            _ => (0.0, 0.0),
        };
        self.last = cpu_now.map(|used| (now, used));
        let sample = Sample {
            t: unix_millis(SystemTime::now()),
            in_msgs: totals.in_msgs,
            in_bytes: totals.in_bytes,
            out_msgs: totals.out_msgs,
            out_bytes: totals.out_bytes,
            connections: live.len() as u64,
            total_connections: shared.router.total_connections(),
            subscriptions: shared.router.subscription_count() as u64,
            slow_consumers: totals.slow_consumers,
            stale_connections: totals.stale_connections,
            routes: shared.router.routes().all().len() as u64,
            mem: varz::resident_memory().unwrap_or(0),
            cpu,
        };
        self.dashboard.ring().push(sample);
        let closed_now = (totals.slow_consumers, totals.stale_connections);
        let closed_since = closed_now != self.last_closed;
        self.last_closed = closed_now;
        // The receiver the dashboard keeps to clone is not a page.
        if self.ticks.receiver_count() <= 1 {
            self.previous.clear();
            self.watched = 0;
            return;
        }
        let subjects = (self.watched % SUBJECTS_EVERY == 0).then(|| top::busiest_subjects(&live));
        self.watched += 1;
        let closed = match closed_since {
            // The last two intervals: a close may be counted just after a sample.
            true => {
                let since = sample.t.saturating_sub(2 * INTERVAL.as_millis() as u64);
                slow_or_stale(&shared.closed.snapshot(), since, top::ROWS)
            }
            false => Vec::new(),
        };
        let doc = TickDoc {
            sample: &sample,
            conns: top::busiest(&live, &mut self.previous, elapsed),
            subjects,
            closed,
        };
        if let Ok(text) = serde_json::to_string(&doc) {
            self.ticks.send_replace(Some(text.into()));
        }
    }
}

/// Up to `most` of the `closed` connections that closed as slow consumers or stale since
/// `since` (Unix milliseconds), newest first.
fn slow_or_stale(closed: &[Arc<ConnSnapshot>], since: u64, most: usize) -> Vec<ClosedEvent> {
    closed
        .iter()
        .rev()
        .filter_map(|c| {
            let reason = c.reason?;
            let t = unix_millis(c.stop?);
            let kind = reason.starts_with("Slow Consumer") || reason == "Stale Connection";
            (kind && t >= since).then(|| ClosedEvent {
                cid: c.cid,
                name: c.name.clone(),
                addr: c.addr.map(|a| a.to_string()).unwrap_or_default(),
                reason,
                t,
            })
        })
        .take(most)
        .collect()
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// `text` escaped for a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Options;

    fn shared() -> Shared {
        let addr = "127.0.0.1:4222".parse().unwrap();
        Shared::new(Options::default(), addr, None, false, None).unwrap()
    }

    fn tick(page: &watch::Receiver<Tick>) -> serde_json::Value {
        let text = page.borrow().clone().expect("a tick");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn samples_the_counters_varz_shows() {
        let shared = shared();
        let (dashboard, mut sampler) = Dashboard::new();
        sampler.sample(&shared);
        sampler.sample(&shared);
        let ring = dashboard.ring();
        assert_eq!(ring.len(), 2);
        let sample = serde_json::to_value(ring.last().unwrap()).unwrap();
        let varz = serde_json::to_value(varz::build(&shared)).unwrap();
        // Every counter under its `/varz` name, and the same value (nothing moves here); the
        // time, memory and CPU are the sampler's own readings.
        let fields = sample.as_object().unwrap();
        assert_eq!(fields.len(), 13);
        for (field, value) in fields {
            if !["t", "mem", "cpu"].contains(&field.as_str()) {
                assert_eq!(*value, varz[field], "{field}");
            }
        }
        assert!(sample["mem"].as_u64().unwrap() > 0);
    }

    #[test]
    fn news_only_while_a_page_listens() {
        let shared = shared();
        let (dashboard, mut sampler) = Dashboard::new();
        sampler.sample(&shared);
        assert!(dashboard.ticks.borrow().is_none(), "nothing sent to no one");
        let mut page = dashboard.ticks.clone();
        page.borrow_and_update();
        sampler.sample(&shared);
        assert!(page.has_changed().unwrap());
        let first = tick(&page);
        page.borrow_and_update();
        assert!(first["sample"]["t"].as_u64().unwrap() > 0);
        assert!(first["conns"].is_array() && first["closed"].is_array());
        assert!(first["subjects"].is_array(), "subjects on the first tick");
        sampler.sample(&shared);
        assert!(tick(&page).get("subjects").is_none(), "and every fifth");
        // The page goes: the sampler stops sending and forgets the connections' counts.
        drop(page);
        let before = dashboard.ticks.borrow().clone();
        sampler.sample(&shared);
        assert_eq!(dashboard.ticks.borrow().clone(), before);
        assert!(sampler.previous.is_empty() && sampler.watched == 0);
        assert_eq!(dashboard.ring().len(), 4);
    }

    #[tokio::test]
    async fn a_stream_gets_history_then_ticks_and_ends_with_the_sampler() {
        let shared = shared();
        let (dashboard, mut sampler) = Dashboard::new();
        sampler.sample(&shared);
        let response = dashboard.events(&shared);
        assert_eq!(response.content_type, "text/event-stream");
        let first = String::from_utf8(response.body).unwrap();
        assert!(
            first.starts_with("retry: 2000\nevent: history\ndata: {"),
            "{first}"
        );
        let history: serde_json::Value = serde_json::from_str(
            first
                .lines()
                .nth(2)
                .unwrap()
                .strip_prefix("data: ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(history["samples"].as_array().unwrap().len(), 1);
        assert_eq!(history["server_id"], shared.server_id.as_str());
        let mut body = response.stream.expect("streamed").0;
        sampler.sample(&shared);
        let chunk = body.recv().await.expect("a tick");
        let text = std::str::from_utf8(&chunk).unwrap();
        assert!(
            text.starts_with("data: {\"sample\":") && text.ends_with("}\n\n"),
            "{text}"
        );
        drop(sampler);
        assert!(
            body.recv().await.is_none(),
            "the stream ends with the sampler"
        );
    }

    #[test]
    fn slow_and_stale_closes_are_named() {
        let closed = |cid: u64, reason: &'static str, ms: u64| {
            Arc::new(ConnSnapshot {
                cid,
                name: format!("c{cid}"),
                reason: Some(reason),
                stop: Some(UNIX_EPOCH + Duration::from_millis(ms)),
                ..ConnSnapshot::default()
            })
        };
        let ring = [
            closed(1, "Slow Consumer (Pending Bytes)", 1_000),
            closed(2, "Slow Consumer (Write Deadline)", 5_000),
            closed(3, "Client Closed", 6_000),
            closed(4, "Stale Connection", 7_000),
            closed(5, "Slow Consumer (Pending Bytes)", 8_000),
        ];
        let named = |since, most| {
            slow_or_stale(&ring, since, most)
                .iter()
                .map(|e| (e.cid, e.reason, e.t))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            named(2_000, 10),
            [
                (5, "Slow Consumer (Pending Bytes)", 8_000),
                (4, "Stale Connection", 7_000),
                (2, "Slow Consumer (Write Deadline)", 5_000)
            ]
        );
        assert_eq!(named(0, 1).len(), 1);
        assert_eq!(slow_or_stale(&ring, 0, 10)[3].name, "c1");
    }

    #[test]
    fn base_path_is_escaped_into_the_page() {
        let (dashboard, _sampler) = Dashboard::new();
        let page = String::from_utf8(dashboard.page("/a\"b<").body).unwrap();
        assert!(page.contains(r#"<meta name="tern-base" content="/a&quot;b&lt;">"#));
        assert!(!page.contains("/*SCRIPT*/") && !page.contains("/*STYLE*/"));
    }
}
