//! JetStream helpers shared by the JetStream test files: a server started with a store
//! directory, requests whose answers are normalised for comparing two servers.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::process::{reference_server, start_with_ports, Process, Scratch};

/// Starts `binary` with JetStream (its store under `dir`) on random ports; returns the process
/// and its client address.
pub fn start_js_server(binary: &Path, dir: &Path) -> (Process, String) {
    let (process, addr, _) = start_js_server_with(binary, dir, "");
    (process, addr)
}

/// As [`start_js_server`], with `more` added to the configuration file; returns the monitor's
/// address too. A ports file left by an earlier run in `dir` (killed) is removed first.
pub fn start_js_server_with(binary: &Path, dir: &Path, more: &str) -> (Process, String, String) {
    let config = write_js_config(dir, more);
    let _ = std::fs::remove_dir_all(dir.join("ports"));
    start_with_ports(binary, &config, &dir.join("ports"))
}

/// Writes `dir/js.conf`: JetStream with its store in `dir`, and `more`; returns its path.
pub fn write_js_config(dir: &Path, more: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("js.conf");
    std::fs::write(
        &config,
        format!(
            "jetstream {{ store_dir: '{}' }}\n{more}\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    config
}

/// A request's response as JSON, with what differs between two servers or two runs by nature
/// (times, the server's name, its version metadata and API level) replaced by its type.
pub async fn call(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let msg = client
        .request(subject.to_string(), body.to_string().into())
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    let mut value: Value = serde_json::from_slice(&msg.payload).unwrap();
    normalise(&mut value);
    value
}

pub fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match key.as_str() {
                    "created" | "ts" | "first_ts" | "last_ts" | "time" | "leader"
                    | "last_active" | "_nats.level" | "_nats.ver" | "level" => {
                        *item = Value::String(format!("<{}>", kind(item)));
                    }
                    _ => normalise(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What a raw reply shows: its status, its headers (times left out) and payload.
pub fn raw_reply(msg: &async_nats::Message) -> String {
    let status = msg.status.map(|s| {
        format!(
            "{} {}",
            s.as_u16(),
            msg.description.clone().unwrap_or_default()
        )
    });
    let headers = msg.headers.as_ref().map(|h| {
        let mut pairs: Vec<String> = h
            .iter()
            .map(|(k, v)| {
                let v: Vec<&str> = v.iter().map(|v| v.as_str()).collect();
                match k.to_string().as_str() {
                    "Nats-Time-Stamp" => format!("{k}=<time>"),
                    _ => format!("{k}={}", v.join(",")),
                }
            })
            .collect();
        pairs.sort();
        pairs.join(";")
    });
    format!(
        "{status:?} {headers:?} {:?}",
        String::from_utf8_lossy(&msg.payload)
    )
}

/// The same scenario's transcript from tern and from nats-server 2.15.1, each with JetStream
/// in its own directory under a scratch directory named `name`.
pub async fn transcripts_side_by_side<F, Fut>(name: &str, scenario: F) -> (Vec<String>, Vec<String>)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new(name);
    let (_tern, tern_addr) = start_js_server(&scratch.nats_server(), &scratch.0.join("tern"));
    let (_ns, ns_addr) = start_js_server(&reference, &scratch.0.join("ref"));
    (scenario(tern_addr).await, scenario(ns_addr).await)
}
