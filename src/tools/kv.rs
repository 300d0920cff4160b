//! `tern kv add|put|get|del|ls|watch|history`, shaped like the `nats` CLI's `nats kv ...`, on
//! the JetStream API with the mapping every client library uses: bucket `B` is stream `KV_B`
//! storing `$KV.B.>`, one subject per key, history as `max_msgs_per_subject`, deletes as
//! messages with a `KV-Operation: DEL` header.

use std::time::Duration;

use serde_json::{json, Value};

use super::args::Args;
use super::jsapi::{check_stream_name, decode_message, header, human_bytes, nanos, shown_time};
use super::jsapi::{Entry, Js};
use super::stream::print_json;
use super::wire::encode_headers;
use super::{parse_args, Done, Outcome};
use crate::proto::subject;

const USAGE: &str = "\
Usage: tern kv add|put|get|del|ls|watch|history ... [options]
Uses JetStream key-value buckets (--json prints the API's answer).
  add <bucket>               create a bucket
    --history <n>              values kept per key, 1 to 64 (default 1)
    --ttl <dur>                how long values live (default forever)
    --storage <s>              file (default) or memory
  put <bucket> <key> <value> store a value
  get <bucket> <key>         show a key's value (--raw: the value alone)
  del <bucket> <key>         delete a key (its history stays until purged)
  ls [<bucket>]              list the buckets, or a bucket's keys
  watch <bucket> [<keys>]    print the latest values, then every change (keys may use * and >)
    --count <n>                stop after n entries
  history <bucket> <key>     show a key's stored values
";

const OWN: &[(&str, bool)] = &[
    ("history", true),
    ("ttl", true),
    ("storage", true),
    ("raw", false),
    ("count", true),
];

/// `tern kv <command> ...`
pub async fn run(rest: &[String]) -> Outcome {
    let args = match parse_args(rest, OWN, USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let command = args.positional(0, "add|put|get|del|ls|watch|history")?;
    let known = ["add", "put", "get", "del", "ls", "watch", "history"];
    if !known.contains(&command) {
        return Err(format!(
            "unknown kv command {command:?}: want one of {}",
            known.join(", ")
        ));
    }
    if command != "ls" || args.positional.len() > 1 {
        check_bucket(args.positional(1, "bucket")?)?;
    }
    if matches!(command, "put" | "get" | "del" | "history") {
        check_key(args.positional(2, "key")?, false)?;
    }
    if let (Some(filter), "watch") = (args.positional.get(2), command) {
        check_key(filter, true)?;
    }
    // Options are checked before connecting.
    let config = match command {
        "add" => bucket_config(&args)?,
        _ => Value::Null,
    };
    let js = Js::connect(&args, "kv").await?;
    match command {
        "add" => add(&js, &args, &config).await,
        "put" => put(&js, &args).await,
        "get" => get(&js, &args).await,
        "del" => delete(&js, &args).await,
        "ls" => match args.positional.get(1) {
            Some(bucket) => keys(&js, &args, bucket).await,
            None => buckets(&js, &args).await,
        },
        "watch" => watch(&js, &args).await,
        _ => history(&js, &args).await,
    }?;
    Ok(Done::Success)
}

/// The backing stream's configuration for `kv add`.
fn bucket_config(args: &Args) -> Result<Value, String> {
    let bucket = args.positional(1, "bucket")?;
    let history = args.number("history", 1)?;
    if !(1..=64).contains(&history) {
        return Err("--history: want 1 to 64".into());
    }
    let storage = args.value("storage").unwrap_or("file");
    if !["file", "memory"].contains(&storage) {
        return Err("--storage: want file or memory".into());
    }
    let ttl = args.duration("ttl", Duration::ZERO)?;
    let window = match ttl.is_zero() {
        true => Duration::from_secs(120),
        false => ttl.min(Duration::from_secs(120)),
    };
    Ok(json!({
        "name": format!("KV_{bucket}"),
        "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_msgs_per_subject": history,
        "max_age": nanos(ttl),
        "duplicate_window": nanos(window),
        "storage": storage,
        "discard": "new",
        "num_replicas": 1,
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "deny_purge": false,
        "allow_direct": true,
    }))
}

async fn add(js: &Js, args: &Args, config: &Value) -> Result<(), String> {
    let bucket = args.positional(1, "bucket")?;
    let created = js
        .api(&format!("STREAM.CREATE.KV_{bucket}"), config)
        .await?;
    match args.flag("json") {
        true => print_json(&created),
        false => print_bucket(bucket, &created),
    }
    Ok(())
}

async fn put(js: &Js, args: &Args) -> Result<(), String> {
    let (bucket, key) = (args.positional(1, "bucket")?, args.positional(2, "key")?);
    let value = args.positional.get(3).map_or("", String::as_str);
    bucket_info(js, bucket).await?;
    let ack = js
        .publish(&format!("$KV.{bucket}.{key}"), None, value.as_bytes())
        .await?;
    match args.flag("json") {
        true => print_json(&ack),
        false => println!("{bucket} > {key} revision {}", ack["seq"]),
    }
    Ok(())
}

async fn get(js: &Js, args: &Args) -> Result<(), String> {
    let (bucket, key) = (args.positional(1, "bucket")?, args.positional(2, "key")?);
    let body = json!({"last_by_subj": format!("$KV.{bucket}.{key}")});
    let doc = js
        .api(&format!("STREAM.MSG.GET.KV_{bucket}"), &body)
        .await
        .map_err(|e| bucket_error(bucket, e))
        .map_err(|e| match e.contains("10037") {
            true => format!("key {key:?} not found in bucket {bucket}"),
            false => e,
        })?;
    let message = &doc["message"];
    let (headers, data) = decode_message(message)?;
    if operation(&headers) != "PUT" {
        return Err(format!("key {key:?} not found in bucket {bucket}"));
    }
    if args.flag("json") {
        print_json(message);
    } else if args.flag("raw") {
        println!("{}", String::from_utf8_lossy(&data));
    } else {
        println!(
            "{bucket} > {key} revision: {} created @ {}\n",
            message["seq"],
            shown_time(message["time"].as_str().unwrap_or(""))
        );
        println!("{}", String::from_utf8_lossy(&data));
    }
    Ok(())
}

async fn delete(js: &Js, args: &Args) -> Result<(), String> {
    let (bucket, key) = (args.positional(1, "bucket")?, args.positional(2, "key")?);
    bucket_info(js, bucket).await?;
    let headers = encode_headers(&[("KV-Operation".into(), "DEL".into())]);
    let ack = js
        .publish(&format!("$KV.{bucket}.{key}"), Some(&headers), b"")
        .await?;
    match args.flag("json") {
        true => print_json(&ack),
        false => println!("Deleted {bucket} > {key} (revision {})", ack["seq"]),
    }
    Ok(())
}

async fn buckets(js: &Js, args: &Args) -> Result<(), String> {
    let streams = js.streams().await?;
    let name = |s: &Value| s["config"]["name"].as_str().unwrap_or("").to_string();
    let mut found: Vec<Value> = streams
        .into_iter()
        .filter(|s| name(s).starts_with("KV_"))
        .collect();
    found.sort_by_key(name);
    if args.flag("json") {
        print_json(&Value::Array(found));
        return Ok(());
    }
    if found.is_empty() {
        println!("No Key-Value buckets found");
        return Ok(());
    }
    println!(
        "{:<24} {:>8} {:>10} {:>12}",
        "Bucket", "History", "Values", "Size"
    );
    for s in &found {
        println!(
            "{:<24} {:>8} {:>10} {:>12}",
            &name(s)[3..],
            s["config"]["max_msgs_per_subject"].as_i64().unwrap_or(0),
            s["state"]["messages"].as_u64().unwrap_or(0),
            human_bytes(s["state"]["bytes"].as_u64().unwrap_or(0))
        );
    }
    Ok(())
}

async fn keys(js: &Js, args: &Args, bucket: &str) -> Result<(), String> {
    bucket_info(js, bucket).await?;
    let config = json!({
        "deliver_policy": "last_per_subject",
        "filter_subject": format!("$KV.{bucket}.>"),
        "headers_only": true,
    });
    let mut reader = js.reader(&format!("KV_{bucket}"), config).await?;
    let entries = reader.initial_entries(js.timeout).await;
    reader.close(js).await;
    let mut keys: Vec<String> = entries?
        .iter()
        .filter(|e| operation(&e.headers) == "PUT")
        .map(|e| key_of(bucket, e).to_string())
        .collect();
    keys.sort();
    match args.flag("json") {
        true => print_json(&json!(keys)),
        false if keys.is_empty() => println!("No keys found in bucket {bucket}"),
        false => keys.iter().for_each(|k| println!("{k}")),
    }
    Ok(())
}

async fn watch(js: &Js, args: &Args) -> Result<(), String> {
    let bucket = args.positional(1, "bucket")?;
    let filter = args.positional.get(2).map_or(">", String::as_str);
    let limit = args.number("count", 0)?;
    bucket_info(js, bucket).await?;
    let config = json!({
        "deliver_policy": "last_per_subject",
        "filter_subject": format!("$KV.{bucket}.{filter}"),
    });
    let mut reader = js.reader(&format!("KV_{bucket}"), config).await?;
    // On stderr, so that a script reading the entries also learns when the watch is live.
    eprintln!("Watching bucket {bucket} for {filter:?}");
    let mut seen = 0u64;
    while limit == 0 || seen < limit {
        let Some(entry) = reader.next(None).await? else {
            continue;
        };
        seen += 1;
        print_entry(bucket, &entry, args.flag("json"));
    }
    reader.close(js).await;
    Ok(())
}

async fn history(js: &Js, args: &Args) -> Result<(), String> {
    let (bucket, key) = (args.positional(1, "bucket")?, args.positional(2, "key")?);
    bucket_info(js, bucket).await?;
    let config = json!({"deliver_policy": "all", "filter_subject": format!("$KV.{bucket}.{key}")});
    let mut reader = js.reader(&format!("KV_{bucket}"), config).await?;
    let entries = reader.initial_entries(js.timeout).await;
    reader.close(js).await;
    let entries = entries?;
    if entries.is_empty() {
        return Err(format!("key {key:?} not found in bucket {bucket}"));
    }
    if args.flag("json") {
        let docs: Vec<Value> = entries.iter().map(|e| entry_json(bucket, e)).collect();
        print_json(&Value::Array(docs));
        return Ok(());
    }
    println!(
        "{:<20} {:>8} {:<6} {:<19} {:>7}  Value",
        "Key", "Revision", "Op", "Created", "Length"
    );
    for e in &entries {
        println!(
            "{:<20} {:>8} {:<6} {:<19} {:>7}  {}",
            key,
            e.seq,
            operation(&e.headers),
            e.time,
            e.data.len(),
            String::from_utf8_lossy(&e.data)
        );
    }
    Ok(())
}

/// The bucket's stream info; a missing stream is "bucket not found".
async fn bucket_info(js: &Js, bucket: &str) -> Result<Value, String> {
    js.api(&format!("STREAM.INFO.KV_{bucket}"), &Value::Null)
        .await
        .map_err(|e| bucket_error(bucket, e))
}

fn bucket_error(bucket: &str, err: String) -> String {
    match err.contains("10059") {
        true => format!("bucket {bucket:?} not found"),
        false => err,
    }
}

/// `PUT`, or the `KV-Operation` header's `DEL`/`PURGE`.
fn operation(headers: &[(String, String)]) -> &str {
    header(headers, "KV-Operation").unwrap_or("PUT")
}

fn key_of<'a>(bucket: &str, entry: &'a Entry) -> &'a str {
    let prefix_len = "$KV.".len() + bucket.len() + 1;
    entry.subject.get(prefix_len..).unwrap_or(&entry.subject)
}

fn entry_json(bucket: &str, e: &Entry) -> Value {
    json!({
        "bucket": bucket,
        "key": key_of(bucket, e),
        "revision": e.seq,
        "operation": operation(&e.headers),
        "created": e.time,
        "value": String::from_utf8_lossy(&e.data),
    })
}

fn print_entry(bucket: &str, e: &Entry, as_json: bool) {
    if as_json {
        println!("{}", entry_json(bucket, e));
        return;
    }
    let op = operation(&e.headers);
    match op {
        "PUT" => println!(
            "[{}] {op} {bucket} > {}: {}",
            e.time,
            key_of(bucket, e),
            String::from_utf8_lossy(&e.data)
        ),
        _ => println!("[{}] {op} {bucket} > {}", e.time, key_of(bucket, e)),
    }
}

fn print_bucket(bucket: &str, info: &Value) {
    let config = &info["config"];
    let ttl = match config["max_age"].as_u64() {
        Some(0) | None => "forever".to_string(),
        Some(ns) => format!("{:?}", Duration::from_nanos(ns)),
    };
    println!("Information for Key-Value Store Bucket {bucket}\n");
    println!("  {:>20}: {}", "History", config["max_msgs_per_subject"]);
    println!("  {:>20}: {ttl}", "Values Live For");
    println!(
        "  {:>20}: {}",
        "Storage",
        config["storage"].as_str().unwrap_or("?")
    );
    println!("  {:>20}: {}", "Values Stored", info["state"]["messages"]);
    println!("  {:>20}: KV_{bucket}", "Backing Stream");
}

/// A bucket name: letters, digits, `_` and `-`.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok = !bucket.is_empty()
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match ok && check_stream_name(bucket).is_ok() {
        true => Ok(()),
        false => Err(format!(
            "invalid bucket name {bucket:?}: letters, digits, '_' and '-' only"
        )),
    }
}

/// A key: letters, digits and `-/_=.`, not starting or ending with `.`; a watch filter may
/// also hold `*` and `>` tokens.
fn check_key(key: &str, filter: bool) -> Result<(), String> {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric() || "-/_=.".contains(c) || (filter && (c == '*' || c == '>'))
    };
    let ok = key.chars().all(allowed)
        && !key.starts_with('.')
        && !key.ends_with('.')
        && subject::is_valid_filter(key.as_bytes())
        && (filter || !subject::has_wildcard(key.as_bytes()));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid key {key:?}: letters, digits and -/_=. only, not starting or ending with '.'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_bucket_names_and_keys() {
        assert!(check_bucket("cfg-1_a").is_ok());
        assert!(check_bucket("a.b").is_err());
        assert!(check_bucket("").is_err());
        assert!(check_key("app/db.host=1", false).is_ok());
        assert!(check_key(".a", false).is_err());
        assert!(check_key("a..b", false).is_err());
        assert!(check_key("a.*", false).is_err());
        assert!(check_key("a.*", true).is_ok());
        assert!(check_key("a b", true).is_err());
    }
}
