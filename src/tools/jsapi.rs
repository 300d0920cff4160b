//! The JetStream API as the `kv` and `stream` tools use it: JSON requests to `$JS.API.*`,
//! publishes a stream acknowledges, and ephemeral push consumers that read a stream's messages.
//! Plain requests over the tools' own client, so they work against tern and nats-server alike.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::args::Args;
use super::client::{Client, Subscription};
use super::commands::{client_timeout, connect};

/// A connection used for JetStream requests.
pub struct Js {
    /// The connection.
    pub client: Arc<Client>,
    /// How long each request may take.
    pub timeout: Duration,
}

impl Js {
    /// Connects with the tool's connection options.
    pub async fn connect(args: &Args, tool: &str) -> Result<Js, String> {
        Ok(Js {
            client: connect(args, tool).await?,
            timeout: client_timeout(args)?,
        })
    }

    /// Sends `body` (nothing when `Null`) to `$JS.API.<what>`; the answer, or its error as text.
    pub async fn api(&self, what: &str, body: &Value) -> Result<Value, String> {
        let subject = format!("$JS.API.{what}");
        let payload = match body {
            Value::Null => Vec::new(),
            other => other.to_string().into_bytes(),
        };
        let msg = self
            .client
            .request(&subject, None, &payload, self.timeout)
            .await
            .map_err(|e| match e.contains("no responders") {
                true => "JetStream is not enabled (no responders on $JS.API)".to_string(),
                false => e,
            })?;
        answer(&subject, &msg.payload)
    }

    /// Publishes to a stream's subject and waits for the stream's acknowledgement.
    pub async fn publish(
        &self,
        subject: &str,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Value, String> {
        let msg = self
            .client
            .request(subject, headers, payload, self.timeout)
            .await
            .map_err(|e| match e.contains("no responders") {
                true => format!("no stream stores {subject:?}"),
                false => e,
            })?;
        answer(subject, &msg.payload)
    }

    /// Every stream's info (`STREAM.LIST`, page by page).
    pub async fn streams(&self) -> Result<Vec<Value>, String> {
        let mut streams = Vec::new();
        loop {
            let page = self
                .api("STREAM.LIST", &json!({"offset": streams.len()}))
                .await?;
            let got = page["streams"].as_array().cloned().unwrap_or_default();
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            let empty = got.is_empty();
            streams.extend(got);
            if empty || streams.len() >= total {
                return Ok(streams);
            }
        }
    }

    /// Creates an ephemeral push consumer on `stream` with `config` (ack policy none) and
    /// returns its reader; the consumer is deleted by [`Reader::close`] or, if the tool dies,
    /// by the server once it has had no interest for a while.
    pub async fn reader(&self, stream: &str, mut config: Value) -> Result<Reader, String> {
        let inbox = self.client.new_inbox();
        let sub = self.client.subscribe(&inbox, None).await?;
        config["deliver_subject"] = json!(inbox);
        config["ack_policy"] = json!("none");
        config["mem_storage"] = json!(true);
        config["num_replicas"] = json!(1);
        let body = json!({"stream_name": stream, "config": config});
        let created = self
            .api(&format!("CONSUMER.CREATE.{stream}"), &body)
            .await?;
        Ok(Reader {
            sub,
            stream: stream.to_string(),
            name: created["name"].as_str().unwrap_or_default().to_string(),
            initial: created["num_pending"].as_u64().unwrap_or(0),
            client: self.client.clone(),
        })
    }
}

/// Parses a JetStream answer; its `error` becomes the error text.
fn answer(subject: &str, payload: &[u8]) -> Result<Value, String> {
    let doc: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("bad JetStream answer on {subject:?}: {e}"))?;
    match &doc["error"] {
        Value::Null => Ok(doc),
        err => Err(format!(
            "{} (error code {})",
            err["description"].as_str().unwrap_or("JetStream error"),
            err["err_code"]
        )),
    }
}

/// What an ephemeral push consumer delivers.
pub struct Reader {
    sub: Subscription,
    stream: String,
    name: String,
    client: Arc<Client>,
    /// How many messages matched when the consumer was created.
    pub initial: u64,
}

/// One stored message as a consumer delivers it.
#[derive(Debug)]
pub struct Entry {
    /// The subject it was stored under.
    pub subject: String,
    /// Its stream sequence.
    pub seq: u64,
    /// How many more matching messages the consumer holds after this one.
    pub pending: u64,
    /// When it was stored, as shown (`YYYY-MM-DD HH:MM:SS`).
    pub time: String,
    /// Its headers.
    pub headers: Headers,
    /// Its payload.
    pub data: Vec<u8>,
}

impl Reader {
    /// The next message (status messages such as heartbeats are skipped); `None` when `wait`
    /// passes first.
    pub async fn next(&mut self, wait: Option<Duration>) -> Result<Option<Entry>, String> {
        loop {
            let got = match wait {
                Some(wait) => match tokio::time::timeout(wait, self.sub.next()).await {
                    Ok(got) => got,
                    Err(_) => return Ok(None),
                },
                None => self.sub.next().await,
            };
            let Some(msg) = got else {
                return Err(self.client.closed_reason());
            };
            if msg.status().is_some() {
                continue;
            }
            let Some((seq, nanos, pending)) = msg.reply.as_deref().and_then(ack_info) else {
                continue;
            };
            return Ok(Some(Entry {
                subject: msg.subject.clone(),
                seq,
                pending,
                time: shown_time(&crate::monitor::rfc3339(
                    UNIX_EPOCH + Duration::from_nanos(nanos),
                )),
                headers: msg.header_pairs(),
                data: msg.payload.to_vec(),
            }));
        }
    }

    /// Every message matching when the consumer was created, then stops.
    pub async fn initial_entries(&mut self, timeout: Duration) -> Result<Vec<Entry>, String> {
        let mut entries = Vec::new();
        if self.initial == 0 {
            return Ok(entries);
        }
        loop {
            let Some(entry) = self.next(Some(timeout)).await? else {
                return Err("timed out reading the stream".into());
            };
            let last = entry.pending == 0;
            entries.push(entry);
            if last {
                return Ok(entries);
            }
        }
    }

    /// Deletes the consumer.
    pub async fn close(self, js: &Js) {
        let _ = js.client.unsubscribe(self.sub.sid).await;
        let what = format!("CONSUMER.DELETE.{}.{}", self.stream, self.name);
        let _ = js.api(&what, &Value::Null).await;
    }
}

/// `(stream sequence, timestamp ns, pending)` from a delivery's reply subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or the longer form
/// with a domain and an account hash before the stream.
fn ack_info(reply: &str) -> Option<(u64, u64, u64)> {
    let tokens: Vec<&str> = reply.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    let base = if tokens.len() == 9 { 0 } else { 2 };
    let number = |i: usize| tokens.get(base + i)?.parse::<u64>().ok();
    Some((number(5)?, number(7)?, number(8)?))
}

/// An RFC 3339 time as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn shown_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replacen('T', " ", 1)
}

/// Header `(name, value)` pairs, in order.
pub type Headers = Vec<(String, String)>;

/// A message `STREAM.MSG.GET` returned: `(headers, data)` decoded from base64.
pub fn decode_message(message: &Value) -> Result<(Headers, Vec<u8>), String> {
    let bytes = |key: &str| match message[key].as_str() {
        None => Ok(Vec::new()),
        Some(text) => STANDARD
            .decode(text)
            .map_err(|e| format!("bad {key} in the stored message: {e}")),
    };
    let headers = bytes("hdrs")?;
    let pairs = String::from_utf8_lossy(&headers)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((pairs, bytes("data")?))
}

/// The value of header `name` (case-insensitive), if present.
pub fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A stream name as nats-server accepts it: no spaces, `.`, `*`, `>`, slashes; at most 255.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    let bad = |c: char| c.is_whitespace() || ".*>/\\".contains(c);
    match !name.is_empty() && name.len() <= 255 && !name.contains(bad) {
        true => Ok(()),
        false => Err(format!(
            "invalid stream name {name:?}: no spaces, '.', '*', '>' or slashes"
        )),
    }
}

/// Nanoseconds, as JetStream's JSON writes durations.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Bytes as the `nats` CLI shows sizes: `512 B`, `1.5 KiB`, `3.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_ack_reply_forms() {
        assert_eq!(
            ack_info("$JS.ACK.S.C.1.7.1.1700000000000000000.3"),
            Some((7, 1_700_000_000_000_000_000, 3))
        );
        assert_eq!(
            ack_info("$JS.ACK.dom.hash.S.C.1.9.2.5.0.tok"),
            Some((9, 5, 0))
        );
        assert_eq!(ack_info("_INBOX.x"), None);
    }

    #[test]
    fn checks_stream_names_and_shows_sizes() {
        assert!(check_stream_name("ORDERS_1").is_ok());
        assert!(check_stream_name("a.b").is_err());
        assert!(check_stream_name("").is_err());
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(shown_time("2026-12-02T01:02:03.5Z"), "2026-12-02 01:02:03");
    }
}
