//! JetStream push consumers: delivery to a deliver subject while someone listens there, idle
//! heartbeats, flow control, queue groups, ordered consumers and the key-value watchers built
//! on them. The message shapes are compared with nats-server 2.15.1 on the raw protocol; the
//! rest is driven by async-nats.

mod common;

use std::time::Duration;

use common::jetstream::{call, start_js_server, transcripts_side_by_side};
use common::process::{json_shape, Scratch};
use common::{Raw, WAIT};
use serde_json::Value;

/// A raw connection to `addr` (`host:port`) that may receive headers.
async fn raw(addr: &str) -> Raw {
    let mut raw = Raw::connect(addr.parse().unwrap()).await;
    raw.send("CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n")
        .await;
    raw.expect_before_pong("").await;
    raw
}

/// A delivered frame with what differs by nature left out: the stored timestamp in an ack
/// reply (`$JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>.<pending>`) and the random id
/// of a flow control reply. With `first_line`, only the frame's first line.
fn frame(text: &str, first_line: bool) -> String {
    let text = match first_line {
        true => text.lines().next().unwrap_or_default().to_string(),
        false => text.to_string(),
    };
    text.split(' ')
        .map(|word| {
            let mut tokens: Vec<&str> = word.split('.').collect();
            if word.starts_with("$JS.ACK.") && tokens.len() == 9 {
                tokens[7] = "TS";
            }
            if word.starts_with("$JS.FC.") && tokens.len() == 5 {
                tokens[4] = "ID";
            }
            tokens.join(".")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The next `n` frames on `raw`, normalised (see [`frame`]) and joined.
async fn frames(raw: &mut Raw, n: usize, first_line: bool) -> String {
    let frames = raw.read_msgs(n).await;
    frames
        .iter()
        .map(|f| frame(f, first_line))
        .collect::<Vec<_>>()
        .join("|")
}

/// Replaces the flow control id in a header block (`Nats-Consumer-Stalled: $JS.FC...`).
fn stalled(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix("Nats-Consumer-Stalled: ") {
            Some(subject) => format!("Nats-Consumer-Stalled: {}", frame(subject, true)),
            None => frame(line, false),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Creates consumer `name` (none: ephemeral) of stream `stream` with `config`.
async fn create(client: &async_nats::Client, stream: &str, name: &str, config: Value) -> Value {
    let subject = match name {
        "" => format!("$JS.API.CONSUMER.CREATE.{stream}"),
        name => format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
    };
    let body = serde_json::json!({"stream_name": stream, "config": config});
    call(client, &subject, &body.to_string()).await
}

/// Stores `payload` under `subject` and waits for the PubAck.
async fn store(client: &async_nats::Client, subject: &str, payload: Vec<u8>) -> Value {
    let msg = client
        .request(subject.to_string(), payload.into())
        .await
        .unwrap();
    serde_json::from_slice(&msg.payload).unwrap()
}

/// What one server does in the push scenarios, as lines to compare with the other's.
async fn push_transcript(addr: &str) -> Vec<String> {
    let client = async_nats::connect(addr).await.unwrap();
    let mut raw = raw(addr).await;
    let mut out = Vec::new();
    let mut note = |what: String| out.push(what);
    let stream = r#"{"name":"S","subjects":["s.>"],"storage":"memory"}"#;
    note(
        call(&client, "$JS.API.STREAM.CREATE.S", stream)
            .await
            .to_string(),
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Foo", "bar");
    note(store(&client, "s.a", b"one".to_vec()).await.to_string());
    client
        .request_with_headers("s.b", headers, "two".into())
        .await
        .unwrap();
    note(store(&client, "s.a", b"three".to_vec()).await.to_string());

    // Push configurations nats-server refuses.
    for config in [
        r#"{"deliver_subject":"dlv.*","ack_policy":"explicit"}"#,
        r#"{"deliver_subject":"dlv.x","max_waiting":5}"#,
        r#"{"deliver_subject":"dlv.x","ack_policy":"none","max_ack_pending":5}"#,
        r#"{"deliver_subject":"dlv.x","idle_heartbeat":50000000}"#,
        r#"{"deliver_subject":"dlv.x","flow_control":true}"#,
        r#"{"flow_control":true}"#,
        r#"{"idle_heartbeat":1000000000}"#,
        r#"{"rate_limit_bps":1000}"#,
        r#"{"deliver_subject":"s.x"}"#,
        r#"{"deliver_subject":"dlv.x","deliver_policy":"last_per_subject"}"#,
        r#"{"deliver_subject":"dlv.x","deliver_policy":"by_start_time"}"#,
        r#"{"deliver_subject":"dlv.x","deliver_policy":"by_start_sequence"}"#,
        r#"{"deliver_subject":"dlv.x","deliver_policy":"all","opt_start_seq":3}"#,
        r#"{"deliver_subject":"dlv.x","ack_policy":"explicit","backoff":[1000000000,2000000000],"max_deliver":1}"#,
        r#"{"deliver_subject":"dlv.x","filter_subject":"s.a","filter_subjects":["s.b"]}"#,
        r#"{"deliver_subject":"dlv.x","filter_subjects":["s.a","s.>"]}"#,
        r#"{"deliver_subject":"dlv.x","filter_subjects":[""]}"#,
    ] {
        let config: Value = serde_json::from_str(config).unwrap();
        note(format!(
            "{config} -> {}",
            create(&client, "S", "", config.clone()).await
        ));
    }

    // A durable push consumer with explicit acks: nothing goes until someone listens.
    let config =
        serde_json::json!({"durable_name":"P","deliver_subject":"dlv.p","ack_policy":"explicit"});
    note(create(&client, "S", "P", config).await.to_string());
    note(
        call(&client, "$JS.API.CONSUMER.INFO.S.P", "")
            .await
            .to_string(),
    );
    raw.send("SUB dlv.p 1\r\n").await;
    let delivered = raw.read_msgs(3).await;
    let acks: Vec<String> = delivered
        .iter()
        .map(|f| f.split_whitespace().nth(3).unwrap().to_string())
        .collect();
    note(
        delivered
            .iter()
            .map(|f| frame(f, false))
            .collect::<Vec<_>>()
            .join("|"),
    );
    raw.send(format!("PUB {} 0\r\n\r\n", acks[1])).await;
    raw.expect_before_pong("").await;
    let info = call(&client, "$JS.API.CONSUMER.INFO.S.P", "").await;
    note(format!("{:?}", json_shape(&info)));
    note(info.to_string());
    // A pull request to a push consumer.
    raw.send("SUB in.1 9\r\nPUB $JS.API.CONSUMER.MSG.NEXT.S.P in.1 1\r\n1\r\n")
        .await;
    note(frame(&raw.read_msgs(1).await[0], false));

    // A new deliver subject: refused while bound; once free, what is pending goes there.
    let moved =
        serde_json::json!({"durable_name":"P","deliver_subject":"dlv.p2","ack_policy":"explicit"});
    note(create(&client, "S", "P", moved.clone()).await.to_string());
    raw.send("UNSUB 1\r\n").await;
    raw.expect_before_pong("").await;
    note(create(&client, "S", "P", moved).await.to_string());
    raw.send("SUB dlv.p2 11\r\n").await;
    note(frames(&mut raw, 2, false).await);

    // A filtered pull request's heartbeat names the last stream sequence looked at, past the
    // last one delivered.
    let config =
        serde_json::json!({"durable_name":"Q","filter_subject":"s.b","ack_policy":"explicit"});
    note(create(&client, "S", "Q", config).await.to_string());
    let body = r#"{"batch":2,"expires":1100000000,"idle_heartbeat":400000000}"#;
    raw.send(format!(
        "SUB in.2 10\r\nPUB $JS.API.CONSUMER.MSG.NEXT.S.Q in.2 {}\r\n{body}\r\n",
        body.len()
    ))
    .await;
    note(frames(&mut raw, 4, false).await);

    // Headers only, filtered, with flow control and idle heartbeats, no acks.
    let config = serde_json::json!({"name":"H","deliver_subject":"dlv.h","ack_policy":"none",
        "idle_heartbeat":300_000_000,"flow_control":true,"headers_only":true,"filter_subject":"s.a"});
    note(create(&client, "S", "H", config).await.to_string());
    raw.send("SUB dlv.h 2\r\n").await;
    note(frames(&mut raw, 3, false).await);
    raw.send("UNSUB 2\r\n").await;
    raw.expect_before_pong("").await;
    note(
        call(&client, "$JS.API.CONSUMER.INFO.S.H", "")
            .await
            .to_string(),
    );

    // What an ordered consumer of a key-value watcher asks for: the last message of each
    // subject, headers only (a stored header block keeps its headers).
    let config = serde_json::json!({"name":"O","deliver_subject":"dlv.o","ack_policy":"none",
        "max_deliver":1,"flow_control":true,"idle_heartbeat":5_000_000_000_i64,
        "inactive_threshold":30_000_000_000_i64,"num_replicas":1,"mem_storage":true,
        "deliver_policy":"last_per_subject","filter_subject":"s.>","headers_only":true});
    note(create(&client, "S", "O", config).await.to_string());
    raw.send("SUB dlv.o 6\r\n").await;
    note(frames(&mut raw, 2, false).await);
    note(
        call(&client, "$JS.API.CONSUMER.INFO.S.O", "")
            .await
            .to_string(),
    );

    // A consumer without acks does not listen for them.
    let err = client
        .request("$JS.ACK.S.H.1.1.1.0.0", "".into())
        .await
        .unwrap_err();
    note(format!("{:?}", err.kind()));

    // A deliver group: only members of that queue group bind the consumer.
    let config = serde_json::json!({"durable_name":"G","deliver_subject":"dlv.g",
        "deliver_group":"grp","ack_policy":"none"});
    note(create(&client, "S", "G", config).await.to_string());
    raw.send("SUB dlv.g other 3\r\n").await;
    raw.expect_before_pong("").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    note(
        call(&client, "$JS.API.CONSUMER.INFO.S.G", "")
            .await
            .to_string(),
    );
    raw.send("UNSUB 3\r\nSUB dlv.g grp 4\r\n").await;
    note(frames(&mut raw, 3, false).await);
    note(
        call(&client, "$JS.API.CONSUMER.INFO.S.G", "")
            .await
            .to_string(),
    );

    // Flow control: a request once half the 2 MiB window is out, a stall at the window (the
    // heartbeat names the request), the rest once it is answered.
    let stream = r#"{"name":"F","subjects":["f"],"storage":"memory"}"#;
    note(
        call(&client, "$JS.API.STREAM.CREATE.F", stream)
            .await
            .to_string(),
    );
    for _ in 0..25 {
        store(&client, "f", vec![b'x'; 100_000]).await;
    }
    let config = serde_json::json!({"name":"FC","deliver_subject":"dlv.f","ack_policy":"none",
        "flow_control":true,"idle_heartbeat":500_000_000});
    note(create(&client, "F", "FC", config).await.to_string());
    raw.send("SUB dlv.f 5\r\n").await;
    let window = raw.read_msgs(22).await;
    let request = window
        .iter()
        .find(|f| f.contains("FlowControl"))
        .expect("a flow control request")
        .clone();
    note(
        window
            .iter()
            .map(|f| frame(f, true))
            .collect::<Vec<_>>()
            .join("|"),
    );
    note(stalled(&frame(&request, false)));
    let heartbeat = raw.read_msgs(1).await;
    note(stalled(&heartbeat[0]));
    let reply = request.split_whitespace().nth(3).unwrap().to_string();
    raw.send(format!("PUB {reply} 0\r\n\r\n")).await;
    note(frames(&mut raw, 4, true).await);
    out
}

#[tokio::test]
async fn push_consumers_side_by_side_with_nats_server() {
    let (ours, theirs) = transcripts_side_by_side("js-push-shapes", |addr| async move {
        push_transcript(&addr).await
    })
    .await;
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "\ntern        {a}\nnats-server {b}");
    }
    assert_eq!(ours.len(), theirs.len());
}

/// tern with JetStream, a client and its JetStream context.
async fn tern(
    scratch: &Scratch,
) -> (
    common::process::Process,
    async_nats::Client,
    async_nats::jetstream::Context,
    String,
) {
    let (process, addr) = start_js_server(&scratch.nats_server(), &scratch.0);
    let client = async_nats::connect(&addr).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    (process, client, js, addr)
}

/// A memory stream `name` capturing `subject` (its name when none).
async fn memory_stream(
    js: &async_nats::jetstream::Context,
    name: &str,
    subject: Option<&str>,
) -> async_nats::jetstream::stream::Stream {
    use async_nats::jetstream::stream;
    js.get_or_create_stream(stream::Config {
        name: name.into(),
        subjects: subject.map(|s| vec![s.to_string()]).unwrap_or_default(),
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The next item of `stream`, within `WAIT`.
async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> S::Item {
    use futures::StreamExt;
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
        .expect("not ended")
}

#[tokio::test]
async fn async_nats_push_consumers_with_each_ack_policy() {
    use async_nats::jetstream::consumer::{push, AckPolicy, PushConsumer};

    let scratch = Scratch::new("js-push-acks");
    let (_tern, client, js, _) = tern(&scratch).await;
    let stream = memory_stream(&js, "P", Some("p.>")).await;
    for n in 1..=3 {
        js.publish("p.a", n.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for (name, policy) in [
        ("E", AckPolicy::Explicit),
        ("A", AckPolicy::All),
        ("N", AckPolicy::None),
    ] {
        let mut consumer: PushConsumer = stream
            .create_consumer(push::Config {
                durable_name: Some(name.into()),
                deliver_subject: client.new_inbox(),
                ack_policy: policy,
                filter_subject: "p.a".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(!consumer.cached_info().push_bound);
        let mut messages = consumer.messages().await.unwrap();
        for n in 1..=3u64 {
            let msg = next(&mut messages).await.unwrap();
            assert_eq!(msg.payload, n.to_string());
            let info = msg.info().unwrap();
            assert_eq!((info.stream_sequence, info.consumer_sequence), (n, n));
            assert_eq!(info.pending, 3 - n, "{name}");
            // Explicit: each acknowledged; all: only the last one.
            if policy == AckPolicy::Explicit || (policy == AckPolicy::All && n == 3) {
                msg.double_ack().await.unwrap();
            }
        }
        let info = consumer.info().await.unwrap();
        assert!(info.push_bound, "{name}");
        assert_eq!(info.num_ack_pending, 0, "{name}");
        assert_eq!(
            (
                info.ack_floor.stream_sequence,
                info.delivered.stream_sequence
            ),
            (3, 3),
            "{name}"
        );
    }

    // Not acknowledged: redelivered after each backoff, up to max_deliver.
    js.publish("p.r", "again".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let consumer: PushConsumer = stream
        .create_consumer(push::Config {
            durable_name: Some("R".into()),
            deliver_subject: client.new_inbox(),
            ack_policy: AckPolicy::Explicit,
            filter_subject: "p.r".into(),
            backoff: vec![Duration::from_millis(200), Duration::from_millis(400)],
            max_deliver: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        consumer.cached_info().config.ack_wait,
        Duration::from_millis(200)
    );
    let mut messages = consumer.messages().await.unwrap();
    let started = std::time::Instant::now();
    for delivered in 1..=3 {
        let msg = next(&mut messages).await.unwrap();
        let info = msg.info().unwrap();
        assert_eq!((info.stream_sequence, info.delivered), (4, delivered));
    }
    // 200 ms, then 400 ms, apart at least.
    assert!(started.elapsed() >= Duration::from_millis(600));
    let quiet = tokio::time::timeout(Duration::from_millis(700), {
        use futures::StreamExt;
        messages.next()
    });
    assert!(quiet.await.is_err(), "past max_deliver");
}

#[tokio::test]
async fn heartbeats_and_flow_control_seen_by_async_nats() {
    use async_nats::jetstream::consumer::{push, AckPolicy, PushConsumer};
    use futures::StreamExt;

    let scratch = Scratch::new("js-push-hb");
    let (_tern, client, js, _) = tern(&scratch).await;
    let stream = memory_stream(&js, "B", None).await;
    for _ in 0..30 {
        js.publish("B", vec![b'x'; 100_000].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // The raw deliveries: 21 messages, a flow control request, then heartbeats naming it.
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    let _: PushConsumer = stream
        .create_consumer(push::Config {
            name: Some("H".into()),
            deliver_subject: inbox,
            ack_policy: AckPolicy::None,
            flow_control: true,
            idle_heartbeat: Duration::from_millis(200),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut statuses = Vec::new();
    let mut delivered = 0;
    while statuses.len() < 2 {
        let msg = next(&mut sub).await;
        match msg.status {
            None => delivered += 1,
            Some(status) => {
                assert_eq!(status.as_u16(), 100);
                statuses.push(msg);
            }
        }
    }
    assert_eq!(delivered, 21);
    let fc = &statuses[0];
    assert_eq!(fc.description.as_deref(), Some("FlowControl Request"));
    let reply = fc.reply.clone().expect("a reply subject");
    assert!(reply.starts_with("$JS.FC.B.H."));
    let hb = &statuses[1];
    assert_eq!(hb.description.as_deref(), Some("Idle Heartbeat"));
    let headers = hb.headers.as_ref().unwrap();
    let value =
        |name: async_nats::header::HeaderName| headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(
        value(async_nats::header::NATS_LAST_CONSUMER).as_deref(),
        Some("21")
    );
    assert_eq!(
        value(async_nats::header::NATS_LAST_STREAM).as_deref(),
        Some("21")
    );
    let stalled = headers.get("Nats-Consumer-Stalled").map(|v| v.to_string());
    assert_eq!(stalled, Some(reply.to_string()));
    // Answered: the rest comes.
    client.publish(reply, "".into()).await.unwrap();
    while delivered < 30 {
        if next(&mut sub).await.status.is_none() {
            delivered += 1;
        }
    }

    // An ordered consumer answers flow control itself: all 3 MB arrive.
    let ordered = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            ..Default::default()
        })
        .await
        .unwrap();
    let config = &ordered.cached_info().config;
    assert!(config.flow_control && config.memory_storage);
    assert_eq!(config.num_replicas, 1);
    let mut messages = ordered.messages().await.unwrap();
    for n in 1..=30 {
        let msg = next(&mut messages).await.unwrap();
        assert_eq!(msg.info().unwrap().stream_sequence, n);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), messages.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn ordered_consumer_recreated_after_a_gap() {
    use async_nats::jetstream::consumer::push;

    let scratch = Scratch::new("js-push-ordered");
    let (_tern, client, js, addr) = tern(&scratch).await;
    let mut stream = memory_stream(&js, "O", Some("o.>")).await;
    let publish = |n: u64| {
        let js = js.clone();
        async move {
            js.publish("o.x", n.to_string().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    for n in 1..=3 {
        publish(n).await;
    }
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: "o.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let deliver = consumer
        .cached_info()
        .config
        .deliver_subject
        .clone()
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    for n in 1..=2 {
        assert_eq!(next(&mut messages).await.unwrap().payload, n.to_string());
    }
    // A heartbeat that says more was delivered than the client saw: a gap, as after a lost
    // message. The client drops that consumer and makes another from the next sequence.
    let mut raw = raw(&addr).await;
    let header =
        "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 50\r\nNats-Last-Stream: 50\r\n\r\n";
    raw.send(format!(
        "HPUB {deliver} {} {}\r\n{header}\r\n",
        header.len(),
        header.len()
    ))
    .await;
    raw.expect_before_pong("").await;
    for n in 4..=6 {
        publish(n).await;
    }
    for n in 3..=6 {
        assert_eq!(next(&mut messages).await.unwrap().payload, n.to_string());
    }
    // The first consumer is still there (until its inactive threshold), beside the new one.
    assert_eq!(stream.info().await.unwrap().state.consumer_count, 2);
}

#[tokio::test]
async fn key_value_watchers_keys_and_history() {
    use async_nats::jetstream::kv::{self, Operation};
    use async_nats::jetstream::stream::StorageType;
    use futures::TryStreamExt;

    let scratch = Scratch::new("js-push-kv");
    let (_tern, _client, js, _) = tern(&scratch).await;
    let kv = js
        .create_key_value(kv::Config {
            bucket: "cfg".into(),
            history: 5,
            storage: StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    kv.put("a", "1".into()).await.unwrap();
    kv.put("b", "2".into()).await.unwrap();
    kv.put("a", "3".into()).await.unwrap();

    let mut keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    let history: Vec<kv::Entry> = kv.history("a").await.unwrap().try_collect().await.unwrap();
    let seen: Vec<(u64, &[u8])> = history.iter().map(|e| (e.revision, &e.value[..])).collect();
    assert_eq!(seen, [(1, &b"1"[..]), (3, &b"3"[..])]);

    // Updates only, in order: puts, deletes, purges.
    let mut all = kv.watch_all().await.unwrap();
    let mut one = kv.watch("b").await.unwrap();
    kv.put("c", "4".into()).await.unwrap();
    kv.delete("b").await.unwrap();
    kv.purge("a").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let entry = next(&mut all).await.unwrap();
        got.push((entry.key, entry.revision, entry.operation));
    }
    assert_eq!(
        got,
        [
            ("c".to_string(), 4, Operation::Put),
            ("b".to_string(), 5, Operation::Delete),
            ("a".to_string(), 6, Operation::Purge),
        ]
    );
    let entry = next(&mut one).await.unwrap();
    assert_eq!(
        (entry.key.as_str(), entry.operation),
        ("b", Operation::Delete)
    );

    // With history: the latest of each key first, then what comes.
    let mut latest = kv.watch_with_history("c").await.unwrap();
    let entry = next(&mut latest).await.unwrap();
    assert_eq!((entry.revision, entry.seen_current), (4, true));
    let mut from = kv.watch_all_from_revision(5).await.unwrap();
    assert_eq!(next(&mut from).await.unwrap().revision, 5);
    let mut many = kv.watch_many(["a", "c"]).await.unwrap();
    kv.put("c", "7".into()).await.unwrap();
    kv.put("b", "8".into()).await.unwrap();
    kv.put("a", "9".into()).await.unwrap();
    assert_eq!(next(&mut latest).await.unwrap().value, "7");
    assert_eq!(next(&mut many).await.unwrap().key, "c");
    assert_eq!(next(&mut many).await.unwrap().key, "a");

    // Deleted and purged keys read as absent; only live keys are listed.
    kv.delete("b").await.unwrap();
    assert!(kv.get("b").await.unwrap().is_none());
    kv.purge("c").await.unwrap();
    assert!(kv.get("c").await.unwrap().is_none());
    let keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
    assert_eq!(keys, ["a"]);
    let history: Vec<kv::Entry> = kv.history("c").await.unwrap().try_collect().await.unwrap();
    assert_eq!(history.len(), 1, "a purge keeps only its marker");
    assert_eq!(history[0].operation, Operation::Purge);
}

#[tokio::test]
async fn async_nats_object_store_put_get_list_delete() {
    use async_nats::jetstream::object_store;
    use async_nats::jetstream::stream::StorageType;
    use futures::TryStreamExt;
    use tokio::io::AsyncReadExt;

    /// The objects listed, by name.
    async fn names(store: &object_store::ObjectStore) -> Vec<String> {
        let mut names: Vec<String> = store
            .list()
            .await
            .unwrap()
            .map_ok(|info| info.name)
            .try_collect()
            .await
            .unwrap();
        names.sort();
        names
    }

    let scratch = Scratch::new("js-push-obj");
    let (_tern, _client, js, _) = tern(&scratch).await;
    let store = js
        .create_object_store(object_store::Config {
            bucket: "files".into(),
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    // Several chunks (128 KiB each) and a small one.
    let big: Vec<u8> = (0..300_000u32).map(|n| (n % 251) as u8).collect();
    let info = store.put("big", &mut &big[..]).await.unwrap();
    assert_eq!((info.size, info.chunks), (300_000, 3));
    store.put("small", &mut &b"hello"[..]).await.unwrap();
    let mut object = store.get("big").await.unwrap();
    let mut read = Vec::new();
    object.read_to_end(&mut read).await.unwrap();
    assert!(read == big, "the object comes back whole");
    // Put again: replaced, the old chunks purged.
    store.put("small", &mut &b"hello again"[..]).await.unwrap();
    let mut read = Vec::new();
    store
        .get("small")
        .await
        .unwrap()
        .read_to_end(&mut read)
        .await
        .unwrap();
    assert_eq!(read, b"hello again");
    assert_eq!(names(&store).await, ["big", "small"]);
    store.delete("big").await.unwrap();
    assert!(store.get("big").await.is_err());
    assert_eq!(names(&store).await, ["small"]);
}

/// What async-nats key-value watchers, key listing and history show on the server at `addr`.
async fn key_value_transcript(addr: &str) -> Vec<String> {
    use async_nats::jetstream::kv;
    use async_nats::jetstream::stream::StorageType;
    use futures::TryStreamExt;

    let js = async_nats::jetstream::new(async_nats::connect(addr).await.unwrap());
    let kv = js
        .create_key_value(kv::Config {
            bucket: "cmp".into(),
            history: 3,
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let shown = |e: &kv::Entry| {
        format!(
            "{} {} {:?} {:?} delta {} current {}",
            e.key, e.revision, e.operation, e.value, e.delta, e.seen_current
        )
    };
    for (key, value) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")] {
        kv.put(key, value.into()).await.unwrap();
    }
    kv.delete("b").await.unwrap();
    let mut out = Vec::new();
    let mut watch = kv.watch_with_history(">").await.unwrap();
    for _ in 0..3 {
        out.push(shown(&next(&mut watch).await.unwrap()));
    }
    kv.purge("c").await.unwrap();
    kv.put("d", "5".into()).await.unwrap();
    for _ in 0..2 {
        out.push(shown(&next(&mut watch).await.unwrap()));
    }
    let mut keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
    keys.sort();
    out.push(format!("keys {keys:?}"));
    let history: Vec<kv::Entry> = kv.history("a").await.unwrap().try_collect().await.unwrap();
    out.extend(history.iter().map(shown));
    for key in ["a", "b", "c", "x"] {
        out.push(format!("get {key} {:?}", kv.get(key).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn key_value_watchers_side_by_side_with_nats_server() {
    let (ours, theirs) = transcripts_side_by_side("js-push-kv-cmp", |addr| async move {
        key_value_transcript(&addr).await
    })
    .await;
    assert_eq!(ours, theirs);
}
