//! `tern trace <subject> [message]`: publishes a message with a `Nats-Trace-Dest` header and
//! prints the path it took, from the trace events every server on the way publishes (nats-server
//! 2.11+'s message tracing; tern answers the same way).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::commands::{check_literal, check_size, connect};
use super::{parse_args, Done, Outcome};

const USAGE: &str = "\
Usage: tern trace <subject> [message] [options]
Publishes a traced message and prints the path it took through the servers.
  --deliver            deliver the message too (by default it is only traced)
  -H, --header <k:v>   add a header (repeatable)
";

/// The connection kinds in trace events, as nats-server numbers them.
fn kind_name(kind: u64) -> &'static str {
    match kind {
        0 => "client",
        1 => "route",
        2 => "gateway",
        3 => "system",
        4 => "leafnode",
        5 => "jetstream",
        6 => "account",
        _ => "connection",
    }
}

/// `tern trace <subject> [message]`
pub async fn run(rest: &[String]) -> Outcome {
    let args = match parse_args(rest, &[("deliver", false), ("header", true)], USAGE) {
        Ok(args) => args,
        Err(done) => return done,
    };
    let subject = args.positional(0, "subject")?;
    check_literal(subject)?;
    let message = args.positional.get(1).map_or("", String::as_str);
    let wait = args.duration("timeout", Duration::from_secs(2))?;
    let client = connect(&args, "trace").await?;
    let dest = client.new_inbox();
    let mut events = client.subscribe(&dest, None).await?;
    let mut pairs = args.headers()?;
    pairs.push(("Nats-Trace-Dest".into(), dest.clone()));
    if !args.flag("deliver") {
        pairs.push(("Nats-Trace-Only".into(), "true".into()));
    }
    let headers = super::wire::encode_headers(&pairs);
    check_size(&client, Some(&headers), message.len())?;
    client
        .publish(subject, None, Some(&headers), message.as_bytes(), false)
        .await?;

    // Wait until every server the message went to has reported (each route or leaf egress
    // names the hop the next server reports as), or the timeout.
    let mut expected: BTreeSet<String> = BTreeSet::from([String::new()]);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while !expected
        .iter()
        .all(|h| seen.iter().any(|(hop, _)| hop == h))
    {
        let Ok(next) = tokio::time::timeout_at(deadline, events.next()).await else {
            break;
        };
        let Some(msg) = next else {
            return Err(client.closed_reason());
        };
        let event: Value =
            serde_json::from_slice(&msg.payload).map_err(|e| format!("bad trace event: {e}"))?;
        for egress in event_list(&event) {
            if egress["type"] == "eg" && egress["kind"] != 0 && egress["error"].is_null() {
                if let Some(hop) = egress["hop"].as_str() {
                    expected.insert(hop.to_string());
                }
            }
        }
        seen.push((hop_of(&event), event));
    }
    if seen.is_empty() {
        return Err(format!(
            "no trace event arrived within {wait:?} (does the server support message tracing?)"
        ));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    if args.flag("json") {
        let docs: Vec<&Value> = seen.iter().map(|(_, e)| e).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
    } else {
        println!("Tracing message on {subject:?}");
        for (hop, event) in &seen {
            print_event(hop, event);
        }
        let missing: Vec<&String> = expected
            .iter()
            .filter(|h| !seen.iter().any(|(hop, _)| hop == *h))
            .collect();
        for hop in missing {
            println!("{}(no trace event from hop {hop})", indent(hop));
        }
    }
    Ok(Done::Success)
}

fn event_list(event: &Value) -> &[Value] {
    event["events"].as_array().map_or(&[], Vec::as_slice)
}

/// The hop a server's event reports as: its request's `Nats-Trace-Hop` header, empty for the
/// server the message was published to.
fn hop_of(event: &Value) -> String {
    event["request"]["header"]["Nats-Trace-Hop"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn indent(hop: &str) -> String {
    let depth = if hop.is_empty() {
        0
    } else {
        hop.split('.').count()
    };
    "    ".repeat(depth)
}

fn print_event(hop: &str, event: &Value) {
    let pad = indent(hop);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let server = &event["server"];
    let via = if hop.is_empty() {
        String::new()
    } else {
        format!(" (hop {hop})")
    };
    println!(
        "{pad}Server {} [{}]{via}",
        text(&server["name"]),
        text(&server["id"])
    );
    for e in event_list(event) {
        let error = e["error"]
            .as_str()
            .map(|err| format!("  ERROR: {err}"))
            .unwrap_or_default();
        let kind = kind_name(e["kind"].as_u64().unwrap_or(99));
        let name = e["name"]
            .as_str()
            .map(|n| format!(" {n:?}"))
            .unwrap_or_default();
        let line = match e["type"].as_str().unwrap_or_default() {
            "in" => format!(
                "--> in from {kind} cid {}{name}, account {}, subject {:?}",
                e["cid"],
                text(&e["acc"]),
                text(&e["subj"])
            ),
            "sm" => format!("~~> subject mapped to {:?}", text(&e["to"])),
            "se" => format!(
                "~~> stream export to account {}, subject {:?}",
                text(&e["acc"]),
                text(&e["to"])
            ),
            "si" => format!(
                "~~> service import to account {}: {:?} -> {:?}",
                text(&e["acc"]),
                text(&e["from"]),
                text(&e["to"])
            ),
            "js" => format!(
                "==> JetStream stream {:?}{}{}",
                text(&e["stream"]),
                e["subject"]
                    .as_str()
                    .map(|s| format!(" subject {s:?}"))
                    .unwrap_or_default(),
                if e["nointerest"] == true {
                    " (no interest)"
                } else {
                    ""
                }
            ),
            "eg" => {
                let sub = e["sub"]
                    .as_str()
                    .map(|s| format!(", subscription {s:?}"))
                    .unwrap_or_default();
                let queue = e["queue"]
                    .as_str()
                    .map(|q| format!(" in queue group {q:?}"))
                    .unwrap_or_default();
                let hop = e["hop"]
                    .as_str()
                    .map(|h| format!(", hop {h}"))
                    .unwrap_or_default();
                let acc = e["acc"]
                    .as_str()
                    .map(|a| format!(", account {a}"))
                    .unwrap_or_default();
                format!(
                    "<-- out to {kind} cid {}{name}{acc}{sub}{queue}{hop}",
                    e["cid"]
                )
            }
            other => format!("??? event {other:?}"),
        };
        println!("{pad}  {line}{error}");
    }
    // A stream or an import took it on: it went somewhere.
    let onward = ["eg", "se", "si", "js"];
    if !event_list(event)
        .iter()
        .any(|e| onward.iter().any(|t| e["type"] == *t))
    {
        println!("{pad}  (no subscriber: the message went nowhere from here)");
    }
}
