//! JetStream beyond the API basics, side by side with nats-server 2.15.1: interest retention,
//! the monitor's `/jsz` and `/varz` JetStream documents, per-account limits, advisories.

mod common;

use common::js::{call, start_js_server};
use common::process::{reference_server, Scratch, WAIT};
use futures::StreamExt;

/// One step of a script run against both servers.
enum Step {
    /// A request whose (normalised) JSON answer is compared.
    Call(&'static str, &'static str),
    /// A pull of `n` messages by `<stream>.<consumer>`, each then acknowledged with its verb
    /// (none for ""), as a double ack so that it is processed before the next step.
    Pull(&'static str, &'static [&'static str]),
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
    let reference = reference_server().expect("nats-server 2.15.1 on PATH");
    let scratch = Scratch::new(name);
    let (_tern, tern_addr) = start_js_server(&scratch.nats_server(), &scratch.0.join("tern"));
    let (_ns, ns_addr) = start_js_server(&reference, &scratch.0.join("ref"));
    let tern = async_nats::connect(&tern_addr).await.unwrap();
    let ns = async_nats::connect(&ns_addr).await.unwrap();
    let ours = run_script(&tern, script).await;
    let theirs = run_script(&ns, script).await;
    for (a, b) in ours.iter().zip(&theirs) {
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
