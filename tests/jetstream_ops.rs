//! JetStream beyond the API basics, side by side with nats-server 2.15.1: interest retention,
//! the monitor's `/jsz` and `/varz` JetStream documents, per-account limits, advisories.

mod common;

use common::cluster::converge;
use common::jetstream::{call, raw_reply, start_js_server, start_js_server_with, write_js_config};
use common::process::{http_get, json_shape, reference_server, start_with_ports, Scratch, WAIT};
use common::Raw;
use futures::StreamExt;
use serde_json::Value;

/// One step of a script run against both servers.
enum Step {
    /// A request whose (normalised) JSON answer is compared.
    Call(&'static str, &'static str),
    /// A pull of `n` messages by `<stream>.<consumer>`, each then acknowledged with its verb
    /// (none for ""), as a double ack so that it is processed before the next step.
    Pull(&'static str, &'static [&'static str]),
    /// A pause of this many milliseconds (for an ack wait to pass).
    Wait(u64),
}

/// What each step came to on the server `client` is connected to.
async fn run_script(client: &async_nats::Client, script: &[Step]) -> Vec<String> {
    let mut out = Vec::new();
    for step in script {
        match step {
            Step::Call(subject, body) => {
                let answer = call(client, subject, body).await;
                out.push(format!("{subject} {body} => {answer}"));
            }
            Step::Wait(ms) => tokio::time::sleep(std::time::Duration::from_millis(*ms)).await,
            Step::Pull(consumer, verbs) => {
                let inbox = client.new_inbox();
                let mut sub = client.subscribe(inbox.clone()).await.unwrap();
                let body = format!(r#"{{"batch":{},"expires":2000000000}}"#, verbs.len());
                client
                    .publish_with_reply(
                        format!("$JS.API.CONSUMER.MSG.NEXT.{consumer}"),
                        inbox,
                        body.into(),
                    )
                    .await
                    .unwrap();
                for verb in verbs.iter() {
                    let msg = tokio::time::timeout(WAIT, sub.next())
                        .await
                        .expect("a message")
                        .unwrap();
                    out.push(format!("{consumer} got {}", msg.subject));
                    let ack = msg.reply.clone().expect("an ack subject");
                    if !verb.is_empty() {
                        client
                            .request(ack.to_string(), verb.to_string().into())
                            .await
                            .unwrap();
                    }
                }
            }
        }
    }
    out
}

/// Runs `script` on tern and on nats-server; every step must come to the same.
async fn same_script(name: &str, script: &[Step]) {
    same_script_as(name, "", None, script).await;
}

/// As [`same_script`], with `config` added to both servers' configuration and connected as
/// `user` (whose password is its name).
async fn same_script_as(name: &str, config: &str, user: Option<&str>, script: &[Step]) {
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new(name);
    let mut results = Vec::new();
    for (dir, binary) in [("tern", scratch.nats_server()), ("ref", reference)] {
        let (_server, addr, _) = start_js_server_with(&binary, &scratch.0.join(dir), config);
        let options = match user {
            Some(user) => {
                async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
            }
            None => async_nats::ConnectOptions::new(),
        };
        let client = options.connect(&addr).await.unwrap();
        results.push(run_script(&client, script).await);
    }
    let (ours, theirs) = (&results[0], &results[1]);
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(a, b);
    }
    assert_eq!(ours.len(), theirs.len());
}

const INFO: &str = "$JS.API.STREAM.INFO.I";

/// Interest retention: nothing is stored for a subject no consumer takes; a message goes once
/// every consumer whose filter matches has acknowledged it (explicitly, by `+TERM`, by an
/// ack-all, or by delivery with ack policy none), and with the consumers deleted.
#[tokio::test]
async fn interest_retention_side_by_side_with_nats_server() {
    use Step::*;
    let script = [
        Call(
            "$JS.API.STREAM.CREATE.I",
            r#"{"name":"I","subjects":["i.>"],"storage":"memory","retention":"interest"}"#,
        ),
        Call("i.a", "no consumer: not kept"),
        Call("i.b", "nor this"),
        Call(INFO, ""),
        Call(
            "$JS.API.CONSUMER.CREATE.I.A",
            r#"{"stream_name":"I","config":{"durable_name":"A","ack_policy":"explicit","filter_subject":"i.a"}}"#,
        ),
        Call("i.a", "3"),
        Call("i.b", "A does not take i.b"),
        Call("i.a", "5"),
        Call(INFO, ""),
        Call(
            "$JS.API.CONSUMER.CREATE.I.B",
            r#"{"stream_name":"I","config":{"durable_name":"B","ack_policy":"explicit"}}"#,
        ),
        Call("i.a", "6"),
        Call("i.b", "7"),
        Call(INFO, ""),
        // A takes 3, 5, 6 and acknowledges 3 and 6: B still holds them.
        Pull("I.A", &["+ACK", "", "+ACK"]),
        Call(INFO, ""),
        // B acknowledges 6 (A did too: it goes) and 7 (only B wanted it).
        Pull("I.B", &["", "", "+ACK", "+ACK"]),
        Call(INFO, ""),
        Call("$JS.API.CONSUMER.DELETE.I.A", ""),
        Call(INFO, ""),
        Call("$JS.API.CONSUMER.DELETE.I.B", ""),
        Call(INFO, ""),
        Call("$JS.API.STREAM.DELETE.I", ""),
    ];
    same_script("js-interest", &script).await;

    let script = [
        Call(
            "$JS.API.STREAM.CREATE.I",
            r#"{"name":"I","subjects":["i.>"],"retention":"interest"}"#,
        ),
        Call(
            "$JS.API.CONSUMER.CREATE.I.N",
            r#"{"stream_name":"I","config":{"durable_name":"N","ack_policy":"none"}}"#,
        ),
        Call(
            "$JS.API.CONSUMER.CREATE.I.L",
            r#"{"stream_name":"I","config":{"durable_name":"L","ack_policy":"all","filter_subject":"i.a"}}"#,
        ),
        Call("i.a", "1"),
        Call("i.b", "2"),
        Call("i.a", "3"),
        Call("i.a", "4"),
        Call(INFO, ""),
        // Delivered to an ack-none consumer: acknowledged.
        Pull("I.N", &["", ""]),
        Call(INFO, ""),
        // Acknowledging 3 acknowledges 1 too.
        Pull("I.L", &["", "+ACK", ""]),
        Call(INFO, ""),
        Pull("I.N", &["", ""]),
        Call(INFO, ""),
        Call(
            "$JS.API.CONSUMER.CREATE.I.T",
            r#"{"stream_name":"I","config":{"durable_name":"T","ack_policy":"explicit","filter_subject":"i.b"}}"#,
        ),
        Call("i.b", "5"),
        Call("i.b", "6"),
        Pull("I.T", &["+TERM", "-NAK"]),
        Call(INFO, ""),
        Pull("I.N", &["", ""]),
        Call(INFO, ""),
        // 6 was held by T alone.
        Call("$JS.API.CONSUMER.DELETE.I.T", ""),
        Call(INFO, ""),
        Call(
            "$JS.API.STREAM.UPDATE.I",
            r#"{"name":"I","subjects":["i.>"],"retention":"workqueue"}"#,
        ),
        Call("$JS.API.STREAM.DELETE.I", ""),
    ];
    same_script("js-interest-acks", &script).await;
}

/// An interest stream on disk keeps the sequences it skipped, and its consumers' hold, across
/// a restart.
#[tokio::test]
async fn interest_stream_on_disk_survives_a_restart() {
    let scratch = Scratch::new("js-interest-restart");
    let dir = scratch.0.join("tern");
    let (tern, addr) = start_js_server(&scratch.nats_server(), &dir);
    let client = async_nats::connect(&addr).await.unwrap();
    use Step::*;
    let before = run_script(
        &client,
        &[
            Call(
                "$JS.API.STREAM.CREATE.I",
                r#"{"name":"I","subjects":["i.>"],"retention":"interest"}"#,
            ),
            Call("i.a", "skipped"),
            Call(
                "$JS.API.CONSUMER.CREATE.I.A",
                r#"{"stream_name":"I","config":{"durable_name":"A","ack_policy":"explicit"}}"#,
            ),
            Call("i.a", "2"),
            Call("i.a", "3"),
            Pull("I.A", &["+ACK"]),
            Call(INFO, ""),
        ],
    )
    .await;
    drop(client);
    drop(tern);
    let (_tern, addr) = start_js_server(&scratch.nats_server(), &dir);
    let client = async_nats::connect(&addr).await.unwrap();
    let after = run_script(&client, &[Call(INFO, "")]).await;
    let state = |line: &str| {
        let json = line.split(" => ").nth(1).unwrap().to_string();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["state"].clone()
    };
    let before = state(before.last().unwrap());
    assert_eq!(before["messages"], 1);
    assert_eq!(before["first_seq"], 3);
    assert_eq!(state(&after[0]), before);
}

/// The JSON at `path` of the monitor at `addr`.
fn monitor(addr: &str, path: &str) -> Value {
    let (status, body) = http_get(addr, path).expect("the monitor answers");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The counts of a `/jsz` document that the same calls make the same on both servers.
fn jsz_counts(jsz: &Value) -> Vec<Value> {
    let mut counts: Vec<Value> = [
        "memory",
        "storage",
        "accounts",
        "streams",
        "consumers",
        "messages",
        "bytes",
        "total",
    ]
    .iter()
    .map(|k| jsz[k].clone())
    .collect();
    counts.push(jsz["api"]["total"].clone());
    counts.push(jsz["api"]["errors"].clone());
    for account in jsz["account_details"].as_array().into_iter().flatten() {
        counts.push(account["name"].clone());
        counts.push(account["api"].clone());
        // In name order: nats-server lists them in its map's order.
        let mut streams: Vec<Vec<Value>> = account["stream_detail"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|stream| {
                let consumers = stream["consumer_detail"].as_array().into_iter().flatten();
                [stream["name"].clone(), stream["state"]["messages"].clone()]
                    .into_iter()
                    .chain(consumers.map(|c| c["num_pending"].clone()))
                    .collect()
            })
            .collect();
        streams.sort_by_key(|s| s[0].to_string());
        counts.extend(streams.into_iter().flatten());
    }
    counts
}

/// `/jsz` at every detail level and `/varz`'s `jetstream`: the same fields as nats-server's
/// (key sets and types), and the same counts after the same calls; with JetStream off, the
/// `disabled` document.
#[tokio::test]
async fn jsz_and_varz_side_by_side_with_nats_server() {
    use Step::*;
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-jsz");
    let script = [
        Call(
            "$JS.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
        ),
        Call("s.a", "one"),
        Call("s.b", "two"),
        Call(
            "$JS.API.CONSUMER.CREATE.S.C",
            r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.F",
            r#"{"name":"F","subjects":["f"]}"#,
        ),
        Call("f", "on disk"),
        Call("$JS.API.STREAM.INFO.X", ""),
    ];
    let mut servers = Vec::new();
    for (name, binary) in [("tern", scratch.nats_server()), ("ref", reference.clone())] {
        let (process, addr, monitor) = start_js_server_with(&binary, &scratch.0.join(name), "");
        let client = async_nats::connect(&addr).await.unwrap();
        run_script(&client, &script).await;
        servers.push((process, monitor));
    }
    let (tern, ns) = (&servers[0].1, &servers[1].1);
    for path in [
        "/jsz",
        "/jsz?accounts=true",
        "/jsz?streams=true",
        "/jsz?consumers=true",
        "/jsz?accounts=true&streams=true&consumers=true&config=true",
        "/jsz?acc=$G&consumers=1",
        "/jsz?acc=NOPE&streams=1",
    ] {
        let theirs = monitor(ns, path);
        let ours = converge(&jsz_counts(&theirs), || jsz_counts(&monitor(tern, path)));
        assert_eq!(ours, jsz_counts(&theirs), "{path}");
        let ours = monitor(tern, path);
        assert_eq!(json_shape(&ours), json_shape(&theirs), "{path}");
    }
    let (status, body) = http_get(tern, "/jsz?accounts=x").unwrap();
    assert_eq!((status, body), http_get(ns, "/jsz?accounts=x").unwrap());

    let varz = |addr: &str| monitor(addr, "/varz")["jetstream"].clone();
    let (ours, theirs) = (varz(tern), varz(ns));
    assert_eq!(json_shape(&ours), json_shape(&theirs));
    for key in ["memory", "storage", "accounts"] {
        assert_eq!(ours["stats"][key], theirs["stats"][key], "{key}");
    }
    assert_eq!(
        ours["stats"]["api"]["total"],
        theirs["stats"]["api"]["total"]
    );
    assert_eq!(ours["config"]["strict"], theirs["config"]["strict"]);
    assert!(ours["config"]["store_dir"]
        .as_str()
        .unwrap()
        .ends_with("tern/store/jetstream"));
    drop(servers);

    // Without JetStream.
    let mut documents = Vec::new();
    for (name, binary) in [("tern-off", scratch.nats_server()), ("ref-off", reference)] {
        let dir = scratch.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("off.conf"), "").unwrap();
        let (_process, _, monitor_addr) =
            start_with_ports(&binary, &dir.join("off.conf"), &dir.join("ports"));
        let jsz = monitor(&monitor_addr, "/jsz?accounts=true");
        let varz = monitor(&monitor_addr, "/varz")["jetstream"].clone();
        documents.push((jsz, varz));
    }
    assert_eq!(json_shape(&documents[0].0), json_shape(&documents[1].0));
    assert_eq!(documents[0].0["disabled"], true);
    assert_eq!(documents[0].1, documents[1].1);
}

/// A system account beside an account with JetStream (A) and one without (B).
const WITH_SYSTEM: &str = "accounts {
  SYS { users: [{user: sys, password: sys}] }
  A { jetstream: enabled, users: [{user: a, password: a}] }
  B { users: [{user: b, password: b}] }
}
system_account: SYS";

/// A `$SYS.REQ.*.JSZ` answer as a client of the system account gets it.
async fn sys_jsz(client: &async_nats::Client, subject: &str, body: &str) -> Value {
    let msg = client
        .request(subject.to_string(), body.to_string().into())
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&msg.payload).unwrap()
}

/// What of a `JSZ` answer the same calls make the same on both servers: the error, the shape
/// of its data and the counts in it (an account's detail counted as `/jsz` counts its
/// `account_details`).
fn jsz_answer(answer: &Value, account: bool) -> Vec<Value> {
    let data = &answer["data"];
    let mut out = vec![answer["error"].clone(), serde_json::json!(json_shape(data))];
    match account {
        true if !data.is_null() => out.extend(jsz_counts(&serde_json::json!({
            "account_details": [data.clone()]
        }))),
        true => {}
        false => out.extend(jsz_counts(data)),
    }
    out
}

/// `$SYS.REQ.SERVER.PING.JSZ`, `$SYS.REQ.SERVER.<id>.JSZ` (the `/jsz` document, with the
/// detail the body's `JSzOptions` ask for) and `$SYS.REQ.ACCOUNT.<acc>.JSZ` (one account's
/// detail, or the error for an account without JetStream or unknown): the same as nats-server's.
#[tokio::test]
async fn system_jsz_requests_side_by_side_with_nats_server() {
    use Step::*;
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-sys-jsz");
    let script = [
        Call(
            "$JS.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
        ),
        Call("s.a", "one"),
        Call(
            "$JS.API.CONSUMER.CREATE.S.C",
            r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.F",
            r#"{"name":"F","subjects":["f"]}"#,
        ),
        Call("f", "on disk"),
    ];
    let mut servers = Vec::new();
    for (name, binary) in [("tern", scratch.nats_server()), ("ref", reference)] {
        let (process, addr, _) = start_js_server_with(&binary, &scratch.0.join(name), WITH_SYSTEM);
        let user = |u: &str| async_nats::ConnectOptions::with_user_and_password(u.into(), u.into());
        let a = user("a").connect(&addr).await.unwrap();
        run_script(&a, &script).await;
        let sys = user("sys").connect(&addr).await.unwrap();
        let id = sys_jsz(&sys, "$SYS.REQ.SERVER.PING.IDZ", "").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        servers.push((process, sys, id));
    }
    let requests = [
        ("$SYS.REQ.SERVER.PING.JSZ", "", false),
        ("$SYS.REQ.SERVER.PING.JSZ", r#"{"accounts":true}"#, false),
        (
            "$SYS.REQ.SERVER.PING.JSZ",
            r#"{"streams":true,"consumer":true,"config":true}"#,
            false,
        ),
        (
            "$SYS.REQ.SERVER.PING.JSZ",
            r#"{"account":"A","streams":true}"#,
            false,
        ),
        ("$SYS.REQ.SERVER.PING.JSZ", "not json", false),
        ("$SYS.REQ.SERVER.<id>.JSZ", r#"{"consumer":true}"#, false),
        ("$SYS.REQ.ACCOUNT.A.JSZ", "", true),
        (
            "$SYS.REQ.ACCOUNT.A.JSZ",
            r#"{"streams":true,"consumer":true,"config":true}"#,
            true,
        ),
        ("$SYS.REQ.ACCOUNT.A.JSZ", r#"{"consumer":true}"#, true),
        ("$SYS.REQ.ACCOUNT.B.JSZ", "", true),
        ("$SYS.REQ.ACCOUNT.NOPE.JSZ", "", true),
        ("$SYS.REQ.ACCOUNT.A.JSZ", "xyz", true),
    ];
    let ask = |server: usize, subject: &str, body: &str, account: bool| {
        let (_, sys, id) = &servers[server];
        let subject = subject.replace("<id>", id);
        let (sys, id, body) = (sys.clone(), id.clone(), body.to_string());
        async move {
            let answer = sys_jsz(&sys, &subject, &body).await;
            assert!(answer["server"]["id"] == id.as_str(), "{answer}");
            jsz_answer(&answer, account)
        }
    };
    for (subject, body, account) in requests {
        let theirs = ask(1, subject, body, account).await;
        // tern's totals follow its JetStream task by a moment.
        let mut ours = ask(0, subject, body, account).await;
        for _ in 0..40 {
            if ours == theirs {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            ours = ask(0, subject, body, account).await;
        }
        assert_eq!(ours, theirs, "{subject} {body}");
    }
}

/// Two accounts with JetStream limits: the limits in `$JS.API.INFO`, and each refused
/// stream, consumer and message with nats-server's error.
const LIMITED: &str = "accounts {
  A { jetstream { max_mem: 1K, max_file: 2K, max_streams: 3, max_consumers: 1 }, users: [{user: a, password: a}] }
  B { jetstream { max_memory: 10K, max_store: 10K, disk_max_stream_bytes: 2K, max_bytes_required: true, max_ack_pending: 5 }, users: [{user: b, password: b}] }
}";

/// A 100-byte payload.
const HUNDRED: &str =
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";

#[tokio::test]
async fn account_limits_side_by_side_with_nats_server() {
    use Step::*;
    let a = [
        Call("$JS.API.INFO", ""),
        Call(
            "$JS.API.STREAM.CREATE.F",
            r#"{"name":"F","subjects":["f"],"max_bytes":3000}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.F",
            r#"{"name":"F","subjects":["f"],"max_bytes":1500}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.G",
            r#"{"name":"G","subjects":["g"],"max_bytes":1000}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.H",
            r#"{"name":"H","subjects":["h"],"storage":"memory","max_consumers":5}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.H",
            r#"{"name":"H","subjects":["h"],"storage":"memory"}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.M",
            r#"{"name":"M","subjects":["m"],"storage":"memory","max_bytes":2048}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.I",
            r#"{"name":"I","subjects":["i"],"storage":"memory"}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.J",
            r#"{"name":"J","subjects":["j"],"storage":"memory"}"#,
        ),
        // max_consumers is per stream.
        Call(
            "$JS.API.CONSUMER.CREATE.F.C",
            r#"{"stream_name":"F","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
        ),
        Call(
            "$JS.API.CONSUMER.CREATE.H.C",
            r#"{"stream_name":"H","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
        ),
        Call(
            "$JS.API.CONSUMER.CREATE.H.D",
            r#"{"stream_name":"H","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
        ),
        Call("h", HUNDRED),
        Call("h", HUNDRED),
        Call("f", HUNDRED),
        Call(
            "$JS.API.STREAM.UPDATE.F",
            r#"{"name":"F","subjects":["f"],"max_bytes":2500}"#,
        ),
        Call(
            "$JS.API.STREAM.UPDATE.F",
            r#"{"name":"F","subjects":["f"],"max_bytes":2000}"#,
        ),
        Call("$JS.API.INFO", ""),
    ];
    same_script_as("js-limits-a", LIMITED, Some("a"), &a).await;
    let b = [
        Call("$JS.API.INFO", ""),
        Call(
            "$JS.API.STREAM.CREATE.F",
            r#"{"name":"F","subjects":["f"]}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.F",
            r#"{"name":"F","subjects":["f"],"max_bytes":3000}"#,
        ),
        Call(
            "$JS.API.STREAM.CREATE.F",
            r#"{"name":"F","subjects":["f"],"max_bytes":2000}"#,
        ),
        // The account's max_ack_pending caps the default and what a consumer may ask.
        Call(
            "$JS.API.CONSUMER.CREATE.F.C",
            r#"{"stream_name":"F","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
        ),
        Call(
            "$JS.API.CONSUMER.CREATE.F.D",
            r#"{"stream_name":"F","config":{"durable_name":"D","ack_policy":"explicit","max_ack_pending":10}}"#,
        ),
        Call(
            "$JS.API.CONSUMER.CREATE.F.E",
            r#"{"stream_name":"F","config":{"durable_name":"E","ack_policy":"explicit","max_ack_pending":3}}"#,
        ),
        Call("$JS.API.INFO", ""),
    ];
    same_script_as("js-limits-b", LIMITED, Some("b"), &b).await;
}

/// An account JetStream is enabled for (with limits) by a reload answers as nats-server's
/// does afterwards.
#[tokio::test]
async fn account_given_jetstream_by_a_reload() {
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-reload");
    let before = "accounts { A { users: [{user: a, password: a}] } }";
    let after = "accounts { A { jetstream { max_streams: 1 }, users: [{user: a, password: a}] } }";
    let mut answers = Vec::new();
    for (name, binary) in [("tern", scratch.nats_server()), ("ref", reference)] {
        let dir = scratch.0.join(name);
        let (server, addr, _) = start_js_server_with(&binary, &dir, before);
        let client = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
            .connect(&addr)
            .await
            .unwrap();
        let mut seen = vec![call(&client, "$JS.API.INFO", "").await];
        write_js_config(&dir, after);
        server.signal("HUP");
        let deadline = std::time::Instant::now() + WAIT;
        // Until the reload is in force (a request may find no responder while it happens).
        loop {
            let answer = client.request("$JS.API.INFO", "".into()).await;
            let info: Option<Value> = answer
                .ok()
                .and_then(|msg| serde_json::from_slice(&msg.payload).ok());
            if let Some(info) = info.filter(|i| i.get("error").is_none()) {
                seen.push(call(&client, "$JS.API.INFO", "").await);
                assert_eq!(info["limits"], seen[1]["limits"]);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{name}: not reloaded");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        for (subject, body) in [
            (
                "$JS.API.STREAM.CREATE.S",
                r#"{"name":"S","storage":"memory"}"#,
            ),
            (
                "$JS.API.STREAM.CREATE.T",
                r#"{"name":"T","storage":"memory"}"#,
            ),
        ] {
            seen.push(call(&client, subject, body).await);
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][0]["error"]["err_code"], 10039);
    assert_eq!(answers[0][1]["limits"]["max_streams"], 1);
    assert_eq!(answers[0][3]["error"]["err_code"], 10027);
}

/// An advisory without what differs by nature (id, time, server, client address and times,
/// the audited response's times): its subject, field paths and stable values.
fn advisory(msg: &async_nats::Message) -> String {
    let mut body: Value = serde_json::from_slice(&msg.payload).unwrap();
    let shape = json_shape(&body);
    for key in [
        "id",
        "timestamp",
        "server",
        "client",
        "response",
        "ack_time",
    ] {
        body.as_object_mut().unwrap().remove(key);
    }
    format!("{} {shape:?} {body}", msg.subject)
}

/// The advisories of stream and consumer actions, of messages given up on, refused and
/// terminated, the ack metric of a sampling consumer, and the API audit: the same subjects,
/// fields and values as nats-server's, taken by a subscriber.
#[tokio::test]
async fn advisories_side_by_side_with_nats_server() {
    use Step::*;
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-advisories");
    let script = [
        Call(
            "$JS.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#,
        ),
        Call(
            "$JS.API.STREAM.UPDATE.S",
            r#"{"name":"S","subjects":["s.>"],"storage":"memory","max_msgs":5}"#,
        ),
        Call(
            "$JS.API.CONSUMER.CREATE.S.C",
            r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_deliver":1,"ack_wait":200000000}}"#,
        ),
        Call("s.a", "1"),
        Call("s.b", "2"),
        // 1 is never acknowledged (MAX_DELIVERIES once the ack wait ends), 2 is terminated.
        Pull("S.C", &["", "+TERM no good"]),
        // Every ack of M is sampled.
        Call(
            "$JS.API.CONSUMER.CREATE.S.M",
            r#"{"stream_name":"S","config":{"durable_name":"M","ack_policy":"explicit","sample_freq":"100%"}}"#,
        ),
        // A refused delivery: MSG_NAKED.
        Pull("S.M", &["-NAK", "+ACK"]),
        Call("$JS.API.CONSUMER.DELETE.S.M", ""),
        Wait(700),
        Call("$JS.API.STREAM.INFO.X", ""),
        Call("$JS.API.CONSUMER.DELETE.S.C", ""),
        Call("$JS.API.STREAM.DELETE.S", ""),
    ];
    let mut seen = Vec::new();
    for (name, binary) in [("tern", scratch.nats_server()), ("ref", reference)] {
        let (_server, addr, _) = start_js_server_with(&binary, &scratch.0.join(name), "");
        let client = async_nats::connect(&addr).await.unwrap();
        let mut events = client.subscribe("$JS.EVENT.>").await.unwrap();
        client.flush().await.unwrap();
        run_script(&client, &script).await;
        let mut got = Vec::new();
        while let Ok(Some(msg)) =
            tokio::time::timeout(std::time::Duration::from_millis(500), events.next()).await
        {
            got.push(advisory(&msg));
        }
        // Published in an order that varies with timing.
        got.sort();
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1]);
    let subjects: Vec<&str> = seen[0]
        .iter()
        .map(|a| a.split(' ').next().unwrap())
        .collect();
    for subject in [
        "$JS.EVENT.ADVISORY.STREAM.CREATED.S",
        "$JS.EVENT.ADVISORY.STREAM.UPDATED.S",
        "$JS.EVENT.ADVISORY.CONSUMER.CREATED.S.C",
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.C",
        "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.C",
        "$JS.EVENT.METRIC.CONSUMER.ACK.S.M",
        "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.S.M",
        "$JS.EVENT.ADVISORY.CONSUMER.DELETED.S.C",
        "$JS.EVENT.ADVISORY.STREAM.DELETED.S",
        "$JS.EVENT.ADVISORY.API",
    ] {
        assert!(subjects.contains(&subject), "{subject}: {subjects:?}");
    }
}

/// Batch direct gets: `batch` from a sequence (with `next_by_subj`, `max_bytes`) and
/// `multi_last` (with `up_to_seq`, `batch`), each message with `Nats-Num-Pending` and
/// `Nats-Last-Sequence` and the batch ended by `204 EOB`; the same replies as nats-server's.
#[tokio::test]
async fn batch_direct_gets_side_by_side_with_nats_server() {
    use Step::*;
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new("js-direct-batch");
    let setup = [
        Call(
            "$JS.API.STREAM.CREATE.D",
            r#"{"name":"D","subjects":["d.>"],"storage":"memory","allow_direct":true}"#,
        ),
        Call("d.a", "1"),
        Call("d.b", "2"),
        Call("d.a", "3"),
        Call("d.c", "4"),
    ];
    let requests = [
        r#"{"batch":3,"seq":1}"#,
        r#"{"batch":3,"seq":2,"next_by_subj":"d.a"}"#,
        r#"{"batch":5,"seq":1,"max_bytes":5}"#,
        r#"{"batch":2,"seq":10}"#,
        r#"{"batch":2}"#,
        r#"{"multi_last":["d.a","d.b"]}"#,
        r#"{"multi_last":["d.>"],"up_to_seq":3}"#,
        r#"{"multi_last":["d.*"],"batch":1}"#,
        r#"{"multi_last":["d.x"]}"#,
    ];
    let mut seen = Vec::new();
    for (name, binary) in [("tern", scratch.nats_server()), ("ref", reference)] {
        let (_server, addr, _) = start_js_server_with(&binary, &scratch.0.join(name), "");
        let client = async_nats::connect(&addr).await.unwrap();
        run_script(&client, &setup).await;
        let mut replies = Vec::new();
        for request in requests {
            let inbox = client.new_inbox();
            let mut sub = client.subscribe(inbox.clone()).await.unwrap();
            client
                .publish_with_reply("$JS.API.DIRECT.GET.D", inbox, request.into())
                .await
                .unwrap();
            // Messages until a status ends the batch (or is the whole answer).
            loop {
                let msg = tokio::time::timeout(WAIT, sub.next())
                    .await
                    .expect("a reply")
                    .unwrap();
                replies.push(format!("{request} {}", raw_reply(&msg)));
                if msg.status.is_some() {
                    break;
                }
            }
        }
        seen.push(replies);
    }
    assert_eq!(seen[0], seen[1]);
    assert!(seen[0].iter().any(|r| r.contains("204")), "{:?}", seen[0]);
}

/// `/metrics` with JetStream: the server totals and limits, and per stream and per consumer
/// the gauges prometheus-nats-exporter makes of `/jsz` (its names and labels), with the
/// values `/jsz?consumers=true&config=true` shows.
#[tokio::test]
async fn metrics_carry_jsz_streams_and_consumers() {
    use Step::*;
    let scratch = Scratch::new("js-metrics");
    let (_tern, addr, monitor_addr) = start_js_server_with(&scratch.nats_server(), &scratch.0, "");
    let client = async_nats::connect(&addr).await.unwrap();
    let script = [
        Call(
            "$JS.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s.>"],"storage":"memory","max_msgs":10}"#,
        ),
        Call("s.a", "one"),
        Call("s.b", "two"),
        Call("s.b", "three"),
        Call(
            "$JS.API.CONSUMER.CREATE.S.C",
            r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","description":"the \"C\""}}"#,
        ),
        Pull("S.C", &["+ACK", "-NAK"]),
        Call(
            "$JS.API.STREAM.CREATE.F",
            r#"{"name":"F","subjects":["f"]}"#,
        ),
    ];
    run_script(&client, &script).await;
    let (status, text) = http_get(&monitor_addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    // name -> [(labels, value)]
    let mut samples: Vec<(String, String, f64)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, rest) = line.split_once('{').unwrap();
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        samples.push((name.into(), labels.into(), value.parse().unwrap()));
    }
    let value = |name: &str, label: &str| -> f64 {
        let found: Vec<f64> = samples
            .iter()
            .filter(|(n, l, _)| n == name && l.contains(label))
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(found.len(), 1, "{name} {label}: {found:?}");
        found[0]
    };
    let jsz = monitor(&monitor_addr, "/jsz?consumers=true&config=true");
    for (metric, key) in [
        ("jetstream_server_total_streams", "streams"),
        ("jetstream_server_total_consumers", "consumers"),
        ("jetstream_server_total_messages", "messages"),
        ("jetstream_server_total_message_bytes", "bytes"),
    ] {
        assert_eq!(
            value(metric, "server_id="),
            jsz[key].as_f64().unwrap(),
            "{metric}"
        );
    }
    assert_eq!(
        value("jetstream_server_max_memory", "server_id="),
        jsz["config"]["max_memory"].as_f64().unwrap()
    );
    assert_eq!(
        value("jetstream_server_jetstream_disabled", "server_id="),
        0.0
    );
    let streams = jsz["account_details"][0]["stream_detail"]
        .as_array()
        .unwrap();
    assert_eq!(streams.len(), 2);
    for stream in streams {
        let label = format!(
            "account=\"$G\",account_id=\"$G\",stream_name=\"{}\"",
            stream["name"].as_str().unwrap()
        );
        for (metric, path) in [
            ("total_messages", ["state", "messages"]),
            ("total_bytes", ["state", "bytes"]),
            ("first_seq", ["state", "first_seq"]),
            ("last_seq", ["state", "last_seq"]),
            ("consumer_count", ["state", "consumer_count"]),
            ("limit_messages", ["config", "max_msgs"]),
            ("limit_bytes", ["config", "max_bytes"]),
        ] {
            let expected = stream[path[0]][path[1]].as_f64().unwrap();
            let metric = format!("jetstream_stream_{metric}");
            assert_eq!(value(&metric, &label), expected, "{metric} {label}");
        }
    }
    assert_eq!(
        value("jetstream_stream_limit_messages", "stream_name=\"S\""),
        10.0
    );
    let s = streams.iter().find(|s| s["name"] == "S").unwrap();
    let consumer = &s["consumer_detail"][0];
    let label = "stream_name=\"S\",stream_leader=\"\",is_stream_leader=\"true\",\
                 stream_raft_group=\"\",consumer_name=\"C\",consumer_leader=\"\",\
                 is_consumer_leader=\"true\",consumer_desc=\"the \\\"C\\\"\"";
    for (metric, path) in [
        ("delivered_consumer_seq", vec!["delivered", "consumer_seq"]),
        ("delivered_stream_seq", vec!["delivered", "stream_seq"]),
        ("ack_floor_consumer_seq", vec!["ack_floor", "consumer_seq"]),
        ("ack_floor_stream_seq", vec!["ack_floor", "stream_seq"]),
        ("num_ack_pending", vec!["num_ack_pending"]),
        ("num_redelivered", vec!["num_redelivered"]),
        ("num_waiting", vec!["num_waiting"]),
        ("num_pending", vec!["num_pending"]),
    ] {
        let expected = path.iter().fold(consumer, |v, k| &v[*k]);
        let expected = expected
            .as_f64()
            .unwrap_or_else(|| panic!("{metric}: {consumer}"));
        let metric = format!("jetstream_consumer_{metric}");
        assert_eq!(value(&metric, label), expected, "{metric}");
    }
    // Something to see: one acknowledged, one pending again, one never delivered.
    assert_eq!(value("jetstream_consumer_num_ack_pending", label), 1.0);
    assert_eq!(value("jetstream_consumer_num_pending", label), 1.0);
}

/// The subject, reply subject (its timestamp and pending count left out, for a consumer's
/// `$JS.ACK.` subject) and payload of each raw MSG frame.
fn frames_shown(frames: &[String]) -> Vec<String> {
    frames
        .iter()
        .map(|frame| {
            let (line, payload) = frame.split_once("\r\n").unwrap();
            let fields: Vec<&str> = line.split(' ').collect();
            let reply = match fields.len() {
                5 => fields[3].split('.').take(7).collect::<Vec<_>>().join("."),
                _ => String::new(),
            };
            format!("{} {reply} {}", fields[1], payload.trim_end())
        })
        .collect()
}

/// What a client sees when it pipelines: 300 publishes in one write get their PubAcks in
/// order, each on its own reply subject; a pull of 100 gets them in order; 100 double acks
/// in one write are each confirmed, in order. The JetStream task sends what one batch of
/// its inputs produced with one wake-up of each writer: this is what must not change.
async fn pipelined_transcript(addr: String) -> Vec<String> {
    /// A request on the raw connection, answered on `api`.
    async fn api(raw: &mut Raw, subject: &str, body: &str) -> String {
        raw.send(format!("PUB {subject} api {}\r\n{body}\r\n", body.len()))
            .await;
        raw.read_msgs(1).await.remove(0)
    }
    let mut raw = Raw::connect(addr.parse().unwrap()).await;
    raw.send(
        "CONNECT {\"verbose\":false,\"headers\":true}\r\n\
         SUB api 1\r\nSUB ack.* 2\r\nSUB pull 3\r\nSUB dack.* 4\r\n",
    )
    .await;
    let mut out = Vec::new();
    let created = api(
        &mut raw,
        "$JS.API.STREAM.CREATE.PIPE",
        r#"{"name":"PIPE","subjects":["pipe"],"storage":"file"}"#,
    )
    .await;
    assert!(!created.contains("\"error\""), "{created}");
    let mut publishes = String::new();
    for n in 1..=300 {
        let payload = format!("message {n}");
        publishes.push_str(&format!(
            "PUB pipe ack.{n} {}\r\n{payload}\r\n",
            payload.len()
        ));
    }
    raw.send(publishes).await;
    out.extend(frames_shown(&raw.read_msgs(300).await));
    let created = api(
        &mut raw,
        "$JS.API.CONSUMER.CREATE.PIPE.C",
        r#"{"stream_name":"PIPE","config":{"durable_name":"C","ack_policy":"explicit"}}"#,
    )
    .await;
    assert!(!created.contains("\"error\""), "{created}");
    raw.send("PUB $JS.API.CONSUMER.MSG.NEXT.PIPE.C pull 13\r\n{\"batch\":100}\r\n")
        .await;
    let delivered = raw.read_msgs(100).await;
    out.extend(frames_shown(&delivered));
    let mut acks = String::new();
    for (n, frame) in delivered.iter().enumerate() {
        let reply = frame
            .split("\r\n")
            .next()
            .unwrap()
            .split(' ')
            .nth(3)
            .unwrap();
        acks.push_str(&format!("PUB {reply} dack.{n} 4\r\n+ACK\r\n"));
    }
    raw.send(acks).await;
    out.extend(frames_shown(&raw.read_msgs(100).await));
    let info = api(&mut raw, "$JS.API.CONSUMER.INFO.PIPE.C", "").await;
    let (_, json) = info.split_once("\r\n").unwrap();
    let info: Value = serde_json::from_str(json.trim_end()).unwrap();
    out.push(format!(
        "ack floor {} pending {}",
        info["ack_floor"]["stream_seq"], info["num_ack_pending"]
    ));
    out
}

#[tokio::test]
async fn pipelined_acks_and_pulls_in_order_side_by_side_with_nats_server() {
    let (ours, theirs) =
        common::jetstream::transcripts_side_by_side("js-pipelined", pipelined_transcript).await;
    assert_eq!(ours.len(), 501);
    for (n, line) in ours.iter().take(300).enumerate() {
        let seq = n + 1;
        let want = format!("ack.{seq}  {{\"stream\":\"PIPE\",\"seq\":{seq}}}");
        assert_eq!(line, &want);
    }
    assert_eq!(ours, theirs);
}
