//! `tern stream add|ls|info|rm|purge|get`, shaped like the `nats` CLI's `nats stream ...`.

use std::time::Duration;

use serde_json::{json, Value};

use super::args::Args;
use super::commands::check_literal;
use super::jsapi::{check_stream_name, decode_message, human_bytes, nanos, shown_time, Js};
use super::{parse_args, Done, Outcome};
use crate::proto::subject;

const USAGE: &str = "\
Usage: tern stream add|ls|info|rm|purge|get ... [options]
Manages JetStream streams (--json prints the API's answer).
  add <name>           create a stream
    --subjects <a,b>     subjects it stores (default: its name)
    --storage <s>        file (default) or memory
    --retention <r>      limits (default), interest or workqueue
    --discard <d>        old (default) or new
    --max-msgs <n>       message limit        --max-bytes <n>   byte limit
    --max-age <dur>      age limit            --max-msgs-per-subject <n>
    --replicas <n>       replicas (default 1)
  ls                   list the streams
  info <name>          show a stream's configuration and state
  rm <name>            delete a stream and its messages
  purge <name>         delete a stream's messages
    --subject <filter>   only these subjects  --keep <n>  keep the newest n
  get <name> <seq>     show one stored message
    --last-for <subject> the newest message of a subject instead of <seq>
";

const OWN: &[(&str, bool)] = &[
    ("subjects", true),
    ("storage", true),
    ("retention", true),
    ("discard", true),
    ("max-msgs", true),
    ("max-bytes", true),
    ("max-age", true),
    ("max-msgs-per-subject", true),
    ("replicas", true),
    ("subject", true),
    ("keep", true),
    ("last-for", true),
];

/// `tern stream <command> ...`
pub async fn run(rest: &[String]) -> Outcome {
    let args = match parse_args(rest, OWN, USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let command = args.positional(0, "add|ls|info|rm|purge|get")?;
    if command != "ls" {
        check_stream_name(args.positional(1, "name")?)?;
    }
    // Options are checked before connecting.
    let config = match command {
        "add" => stream_config(&args)?,
        _ => Value::Null,
    };
    let js = Js::connect(&args, "stream").await?;
    match command {
        "add" => add(&js, &args, &config).await,
        "ls" => list(&js, &args).await,
        "info" => info(&js, &args).await,
        "rm" => remove(&js, &args).await,
        "purge" => purge(&js, &args).await,
        "get" => get(&js, &args).await,
        other => Err(format!(
            "unknown stream command {other:?}: want add, ls, info, rm, purge or get"
        )),
    }?;
    Ok(Done::Success)
}

/// The configuration `stream add` asks for.
fn stream_config(args: &Args) -> Result<Value, String> {
    let name = args.positional(1, "name")?;
    let subjects: Vec<&str> = match args.value("subjects") {
        Some(list) => list.split(',').map(str::trim).collect(),
        None => vec![name],
    };
    for s in &subjects {
        if !subject::is_valid_filter(s.as_bytes()) {
            return Err(format!("invalid subject {s:?}"));
        }
    }
    let choice = |flag: &str, allowed: &[&str]| -> Result<String, String> {
        let value = args.value(flag).unwrap_or(allowed[0]);
        match allowed.contains(&value) {
            true => Ok(value.to_string()),
            false => Err(format!("--{flag}: want one of {}", allowed.join(", "))),
        }
    };
    let limit = |flag: &str| -> Result<i64, String> {
        match args.value(flag) {
            None => Ok(-1),
            Some(_) => Ok(i64::try_from(args.number(flag, 0)?).unwrap_or(i64::MAX)),
        }
    };
    Ok(json!({
        "name": name,
        "subjects": subjects,
        "storage": choice("storage", &["file", "memory"])?,
        "retention": choice("retention", &["limits", "interest", "workqueue"])?,
        "discard": choice("discard", &["old", "new"])?,
        "max_msgs": limit("max-msgs")?,
        "max_bytes": limit("max-bytes")?,
        "max_msgs_per_subject": limit("max-msgs-per-subject")?,
        "max_age": nanos(args.duration("max-age", Duration::ZERO)?),
        "max_consumers": -1,
        "num_replicas": args.number("replicas", 1)?,
    }))
}

async fn add(js: &Js, args: &Args, config: &Value) -> Result<(), String> {
    let name = args.positional(1, "name")?;
    let created = js.api(&format!("STREAM.CREATE.{name}"), config).await?;
    match args.flag("json") {
        true => print_json(&created),
        false => {
            println!("Stream {name} was created\n");
            print_info(&created);
        }
    }
    Ok(())
}

async fn list(js: &Js, args: &Args) -> Result<(), String> {
    let mut streams = js.streams().await?;
    streams.sort_by(|a, b| {
        let name = |v: &Value| v["config"]["name"].as_str().unwrap_or("").to_string();
        name(a).cmp(&name(b))
    });
    if args.flag("json") {
        print_json(&Value::Array(streams));
        return Ok(());
    }
    if streams.is_empty() {
        println!("No streams defined");
        return Ok(());
    }
    println!(
        "{:<24} {:>10} {:>12}  Subjects",
        "Stream", "Messages", "Size"
    );
    for s in &streams {
        println!(
            "{:<24} {:>10} {:>12}  {}",
            s["config"]["name"].as_str().unwrap_or("?"),
            s["state"]["messages"].as_u64().unwrap_or(0),
            human_bytes(s["state"]["bytes"].as_u64().unwrap_or(0)),
            list_text(&s["config"]["subjects"])
        );
    }
    Ok(())
}

async fn info(js: &Js, args: &Args) -> Result<(), String> {
    let name = args.positional(1, "name")?;
    let doc = js.api(&format!("STREAM.INFO.{name}"), &Value::Null).await?;
    match args.flag("json") {
        true => print_json(&doc),
        false => print_info(&doc),
    }
    Ok(())
}

async fn remove(js: &Js, args: &Args) -> Result<(), String> {
    let name = args.positional(1, "name")?;
    let doc = js
        .api(&format!("STREAM.DELETE.{name}"), &Value::Null)
        .await?;
    match args.flag("json") {
        true => print_json(&doc),
        false => println!("Deleted stream {name}"),
    }
    Ok(())
}

async fn purge(js: &Js, args: &Args) -> Result<(), String> {
    let name = args.positional(1, "name")?;
    let mut body = json!({});
    if let Some(filter) = args.value("subject") {
        if !subject::is_valid_filter(filter.as_bytes()) {
            return Err(format!("invalid subject {filter:?}"));
        }
        body["filter"] = json!(filter);
    }
    if args.value("keep").is_some() {
        body["keep"] = json!(args.number("keep", 0)?);
    }
    let doc = js.api(&format!("STREAM.PURGE.{name}"), &body).await?;
    match args.flag("json") {
        true => print_json(&doc),
        false => println!(
            "Purged {} messages from stream {name}",
            doc["purged"].as_u64().unwrap_or(0)
        ),
    }
    Ok(())
}

async fn get(js: &Js, args: &Args) -> Result<(), String> {
    let name = args.positional(1, "name")?;
    let body = match args.value("last-for") {
        Some(last) => {
            check_literal(last)?;
            json!({"last_by_subj": last})
        }
        None => {
            let seq = args.positional(2, "seq")?;
            let seq: u64 = seq
                .parse()
                .map_err(|_| format!("<seq>: {seq:?} is not a number"))?;
            json!({"seq": seq})
        }
    };
    let doc = js.api(&format!("STREAM.MSG.GET.{name}"), &body).await?;
    if args.flag("json") {
        print_json(&doc);
        return Ok(());
    }
    let message = &doc["message"];
    let (headers, data) = decode_message(message)?;
    println!(
        "Item: {name}#{} received {} on Subject {}",
        message["seq"],
        shown_time(message["time"].as_str().unwrap_or("")),
        message["subject"].as_str().unwrap_or("?")
    );
    if !headers.is_empty() {
        println!("\nHeaders:");
        for (k, v) in &headers {
            println!("  {k}: {v}");
        }
    }
    println!("\n{}", String::from_utf8_lossy(&data));
    Ok(())
}

/// A stream's info, readable.
fn print_info(doc: &Value) {
    let config = &doc["config"];
    let state = &doc["state"];
    let number = |v: &Value| match v.as_i64() {
        Some(-1) => "unlimited".to_string(),
        Some(n) => n.to_string(),
        None => "-".to_string(),
    };
    let age = match config["max_age"].as_u64() {
        Some(0) | None => "unlimited".to_string(),
        Some(ns) => format!("{:?}", Duration::from_nanos(ns)),
    };
    println!(
        "Information for Stream {}",
        config["name"].as_str().unwrap_or("?")
    );
    println!("\nConfiguration:\n");
    let rows = [
        ("Subjects", list_text(&config["subjects"])),
        ("Storage", text(&config["storage"])),
        ("Retention", text(&config["retention"])),
        ("Discard Policy", text(&config["discard"])),
        ("Replicas", text(&config["num_replicas"])),
        ("Maximum Messages", number(&config["max_msgs"])),
        (
            "Maximum Per Subject",
            number(&config["max_msgs_per_subject"]),
        ),
        ("Maximum Bytes", number(&config["max_bytes"])),
        ("Maximum Age", age),
        ("Allows Direct", text(&config["allow_direct"])),
        ("Allows Rollups", text(&config["allow_rollup_hdrs"])),
    ];
    for (label, value) in rows {
        println!("  {label:>20}: {value}");
    }
    println!("\nState:\n");
    let rows = [
        ("Messages", text(&state["messages"])),
        ("Bytes", human_bytes(state["bytes"].as_u64().unwrap_or(0))),
        ("First Sequence", text(&state["first_seq"])),
        ("Last Sequence", text(&state["last_seq"])),
        ("Active Consumers", text(&state["consumer_count"])),
        ("Number of Subjects", text(&state["num_subjects"])),
    ];
    for (label, value) in rows {
        println!("  {label:>20}: {value}");
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list_text(v: &Value) -> String {
    v.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Pretty JSON on stdout.
pub(crate) fn print_json(doc: &Value) {
    println!("{}", serde_json::to_string_pretty(doc).unwrap_or_default());
}
