//! `tern pub`, `sub`, `req`, `reply` and `server ping|info`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::args::Args;
use super::client::Client;
use super::wire::{self, Msg};
use super::{parse_args, Done, Outcome};
use crate::proto::subject;

const PUB_USAGE: &str = "\
Usage: tern pub <subject> <message> [options]
Publishes a message.
  --count <n>          publish n messages (default 1)
  --sleep <dur>        wait this long between messages
  --reply <subject>    reply subject
  -H, --header <k:v>   add a header (repeatable)
";

const SUB_USAGE: &str = "\
Usage: tern sub <subject> [options]
Prints the messages published to a subject (wildcards allowed) until interrupted.
  --queue <group>      join a queue group
  --headers            print headers (shown by default with --json)
  --count <n>          stop after n messages
";

const REQ_USAGE: &str = "\
Usage: tern req <subject> <message> [options]
Sends a request and prints the first reply (--timeout bounds the wait).
  -H, --header <k:v>   add a header (repeatable)
";

const REPLY_USAGE: &str = "\
Usage: tern reply <subject> <answer> [options]
Answers every request on a subject with the same answer.
  --queue <group>      queue group (default NATS-RPLY-22, as the nats CLI)
  --count <n>          stop after n requests
";

const SERVER_USAGE: &str = "\
Usage: tern server ping|info [server name or id] [options]
Asks every server (or one) through the system account: `ping` lists who answers and how fast,
`info` shows each one's identity and counters. Needs a user of the system account.
  --expect <n>         stop waiting once n servers answered
";

/// `tern pub <subject> <message>`
pub async fn publish(rest: &[String]) -> Outcome {
    let own = [
        ("count", true),
        ("sleep", true),
        ("reply", true),
        ("header", true),
    ];
    let args = match parse_args(rest, &own, PUB_USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let subject = args.positional(0, "subject")?;
    check_literal(subject)?;
    let message = args.positional.get(1).map_or("", String::as_str);
    let reply = args.value("reply");
    if let Some(reply) = reply {
        check_literal(reply)?;
    }
    let count = args.number("count", 1)?;
    let sleep = args.duration("sleep", Duration::ZERO)?;
    let headers = header_block(&args)?;
    let client = connect(&args, "pub").await?;
    check_size(&client, headers.as_deref(), message.len())?;
    for _ in 0..count {
        client
            .publish(
                subject,
                reply,
                headers.as_deref(),
                message.as_bytes(),
                sleep.is_zero(),
            )
            .await?;
        if !sleep.is_zero() {
            tokio::time::sleep(sleep).await;
        }
    }
    client
        .flush(args.duration("timeout", Duration::from_secs(5))?)
        .await?;
    if args.flag("json") {
        println!(
            "{}",
            json!({"subject": subject, "count": count, "bytes": message.len()})
        );
    } else if count == 1 {
        println!("Published {} bytes to {subject:?}", message.len());
    } else {
        println!(
            "Published {count} messages of {} bytes to {subject:?}",
            message.len()
        );
    }
    Ok(Done::Success)
}

/// `tern sub <subject>`
pub async fn subscribe(rest: &[String]) -> Outcome {
    let own = [("queue", true), ("headers", false), ("count", true)];
    let args = match parse_args(rest, &own, SUB_USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let filter = args.positional(0, "subject")?;
    check_filter(filter)?;
    let queue = args.value("queue");
    if let Some(queue) = queue {
        check_queue(queue)?;
    }
    let limit = args.number("count", 0)?;
    let client = connect(&args, "sub").await?;
    let mut sub = client.subscribe(filter, queue).await?;
    client.flush(client_timeout(&args)?).await?;
    // On stderr, so that it also tells a script reading --json output when to publish.
    let group = queue
        .map(|q| format!(" in queue group {q:?}"))
        .unwrap_or_default();
    eprintln!("Subscribing on {filter:?}{group}");
    let mut received = 0u64;
    while let Some(msg) = sub.next().await {
        received += 1;
        print_msg(&msg, received, &args, None);
        if limit > 0 && received >= limit {
            return Ok(Done::Success);
        }
    }
    Err(client.closed_reason())
}

/// `tern req <subject> <message>`
pub async fn request(rest: &[String]) -> Outcome {
    let args = match parse_args(rest, &[("header", true)], REQ_USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let subject = args.positional(0, "subject")?;
    check_literal(subject)?;
    let message = args.positional.get(1).map_or("", String::as_str);
    let headers = header_block(&args)?;
    let client = connect(&args, "req").await?;
    check_size(&client, headers.as_deref(), message.len())?;
    let started = Instant::now();
    let msg = client
        .request(
            subject,
            headers.as_deref(),
            message.as_bytes(),
            client_timeout(&args)?,
        )
        .await?;
    print_msg(&msg, 1, &args, Some(started.elapsed()));
    Ok(Done::Success)
}

/// `tern reply <subject> <answer>`
pub async fn reply(rest: &[String]) -> Outcome {
    let args = match parse_args(rest, &[("queue", true), ("count", true)], REPLY_USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let filter = args.positional(0, "subject")?;
    check_filter(filter)?;
    let answer = args.positional.get(1).map_or("", String::as_str);
    let queue = args.value("queue").unwrap_or("NATS-RPLY-22");
    check_queue(queue)?;
    let limit = args.number("count", 0)?;
    let client = connect(&args, "reply").await?;
    let mut sub = client.subscribe(filter, Some(queue)).await?;
    client.flush(client_timeout(&args)?).await?;
    eprintln!("Listening on {filter:?} in group {queue:?}");
    let mut answered = 0u64;
    while let Some(msg) = sub.next().await {
        answered += 1;
        print_msg(&msg, answered, &args, None);
        if let Some(to) = &msg.reply {
            client
                .publish(to, None, None, answer.as_bytes(), false)
                .await?;
        }
        if limit > 0 && answered >= limit {
            client.flush(client_timeout(&args)?).await?;
            return Ok(Done::Success);
        }
    }
    Err(client.closed_reason())
}

/// `tern server ping|info [server]`
pub async fn server(rest: &[String]) -> Outcome {
    let args = match parse_args(rest, &[("expect", true)], SERVER_USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let what = args.positional(0, "ping|info")?;
    let target = args.positional.get(1).map(String::as_str);
    let subject = match (what, target) {
        ("ping", None) => "$SYS.REQ.SERVER.PING".to_string(),
        ("ping", Some(id)) => format!("$SYS.REQ.SERVER.{id}.STATSZ"),
        ("info", None) => "$SYS.REQ.SERVER.PING.VARZ".to_string(),
        ("info", Some(id)) => format!("$SYS.REQ.SERVER.{id}.VARZ"),
        (other, _) => {
            return Err(format!(
                "unknown server command {other:?}: want ping or info"
            ))
        }
    };
    check_literal(&subject)?;
    let expect = args.number("expect", if target.is_some() { 1 } else { 0 })?;
    // Without --timeout, wait one second for every server of a cluster to answer.
    let wait = args.duration("timeout", Duration::from_secs(1))?;
    let client = connect(&args, "server").await?;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(&inbox, None).await?;
    let started = Instant::now();
    client
        .publish(&subject, Some(&inbox), None, b"", false)
        .await?;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while expect == 0 || (answers.len() as u64) < expect {
        let Ok(next) = tokio::time::timeout_at(deadline, sub.next()).await else {
            break;
        };
        let Some(msg) = next else {
            return Err(client.closed_reason());
        };
        if msg.status() == Some(503) {
            return Err(format!(
                "no responders on {subject:?}: is the user in the system account?"
            ));
        }
        let doc: Value = serde_json::from_slice(&msg.payload)
            .map_err(|e| format!("bad answer from a server: {e}"))?;
        answers.push((started.elapsed(), doc));
    }
    if answers.is_empty() {
        return Err(format!("no server answered on {subject:?} within {wait:?}"));
    }
    if args.flag("json") {
        let docs: Vec<&Value> = answers.iter().map(|(_, d)| d).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
    } else if what == "ping" {
        print_pings(&answers);
    } else {
        for (_, doc) in &answers {
            print_varz(doc);
        }
    }
    Ok(Done::Success)
}

fn print_pings(answers: &[(Duration, Value)]) {
    for (rtt, doc) in answers {
        let server = &doc["server"];
        println!(
            "{:<24} {:<58} rtt {:>9}",
            server["name"].as_str().unwrap_or("?"),
            server["id"].as_str().unwrap_or("?"),
            format!("{:.2?}", rtt)
        );
    }
    let rtts: Vec<Duration> = answers.iter().map(|(r, _)| *r).collect();
    let (min, max) = (rtts.iter().min(), rtts.iter().max());
    if let (Some(min), Some(max)) = (min, max) {
        println!(
            "---- {} server(s) answered, rtt min {min:.2?} max {max:.2?}",
            rtts.len()
        );
    }
}

fn print_varz(doc: &Value) {
    let data = &doc["data"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!(
        "Server {} ({})",
        text(&data["server_name"]),
        text(&data["server_id"])
    );
    let rows: &[(&str, &str)] = &[
        ("Version", "version"),
        ("Started", "start"),
        ("Uptime", "uptime"),
        ("Client port", "port"),
        ("Connections", "connections"),
        ("Total connections", "total_connections"),
        ("Subscriptions", "subscriptions"),
        ("Routes", "routes"),
        ("Leafnodes", "leafnodes"),
        ("Messages in", "in_msgs"),
        ("Messages out", "out_msgs"),
        ("Bytes in", "in_bytes"),
        ("Bytes out", "out_bytes"),
        ("Slow consumers", "slow_consumers"),
        ("Memory", "mem"),
        ("CPU %", "cpu"),
    ];
    for (label, key) in rows {
        println!("  {label:<18} {}", text(&data[*key]));
    }
    if let Some(cluster) = data["cluster"]["name"].as_str() {
        println!("  {:<18} {cluster}", "Cluster");
    }
    if data["jetstream"]["config"].is_object() {
        println!("  {:<18} enabled", "JetStream");
    }
}

/// Connects with the tool's connection options.
pub(crate) async fn connect(args: &Args, tool: &str) -> Result<Arc<Client>, String> {
    Client::connect(&args.connect_opts(tool)?).await
}

/// The request/flush timeout: `--timeout`, 5 s by default.
pub(crate) fn client_timeout(args: &Args) -> Result<Duration, String> {
    args.duration("timeout", Duration::from_secs(5))
}

/// The `-H` headers as a header block, if any.
pub(crate) fn header_block(args: &Args) -> Result<Option<Vec<u8>>, String> {
    let pairs = args.headers()?;
    Ok((!pairs.is_empty()).then(|| wire::encode_headers(&pairs)))
}

/// Refuses what the server would refuse: a message over its `max_payload`.
pub(crate) fn check_size(
    client: &Client,
    headers: Option<&[u8]>,
    len: usize,
) -> Result<(), String> {
    let size = headers.map_or(0, <[u8]>::len) + len;
    match client.info["max_payload"].as_u64() {
        Some(max) if size as u64 > max => Err(format!(
            "message of {size} bytes is over the server's max_payload of {max}"
        )),
        _ => Ok(()),
    }
}

/// A subject to publish to: no wildcards, no empty tokens, no spaces.
pub(crate) fn check_literal(subject: &str) -> Result<(), String> {
    match subject::is_valid_literal(subject.as_bytes()) && !subject::has_wildcard(subject.as_bytes()) {
        true => Ok(()),
        false => Err(format!("invalid subject {subject:?}: publish subjects have non-empty tokens, no spaces and no wildcards")),
    }
}

fn check_filter(filter: &str) -> Result<(), String> {
    match subject::is_valid_filter(filter.as_bytes()) {
        true => Ok(()),
        false => Err(format!("invalid subject {filter:?}")),
    }
}

fn check_queue(queue: &str) -> Result<(), String> {
    match !queue.is_empty() && !queue.contains(char::is_whitespace) {
        true => Ok(()),
        false => Err(format!("invalid queue group {queue:?}")),
    }
}

/// Prints a received message: readable, or one JSON object per line with `--json`.
pub(crate) fn print_msg(msg: &Msg, n: u64, args: &Args, rtt: Option<Duration>) {
    let pairs = msg.header_pairs();
    let data = String::from_utf8_lossy(&msg.payload);
    if args.flag("json") {
        let mut headers = Map::new();
        for (k, v) in &pairs {
            let entry = headers.entry(k.clone()).or_insert_with(|| json!([]));
            if let Value::Array(values) = entry {
                values.push(json!(v));
            }
        }
        let mut doc = json!({"subject": msg.subject, "data": data});
        if let Some(reply) = &msg.reply {
            doc["reply"] = json!(reply);
        }
        if !headers.is_empty() {
            doc["headers"] = Value::Object(headers);
        }
        if let Some(rtt) = rtt {
            doc["rtt_us"] = json!(rtt.as_micros() as u64);
        }
        println!("{doc}");
        return;
    }
    let show_headers = rtt.is_some() || args.flag("headers");
    match rtt {
        Some(rtt) => println!("Received with rtt {rtt:.2?}"),
        None => match &msg.reply {
            Some(reply) => println!("[#{n}] Received on {:?} with reply {reply:?}", msg.subject),
            None => println!("[#{n}] Received on {:?}", msg.subject),
        },
    }
    if show_headers && !pairs.is_empty() {
        for (k, v) in &pairs {
            println!("{k}: {v}");
        }
        println!();
    }
    println!("{data}");
    if rtt.is_none() {
        println!();
    }
}
