//! tern driven by a real client library, async-nats, the way applications use it.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::{ConnectOptions, HeaderMap};
use common::{TestServer, WAIT};
use futures::StreamExt;
use tern::Options;

async fn connect(server: &TestServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.expect("connect")
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("timed out")
        .expect("subscription ended")
}

#[tokio::test]
async fn publish_subscribe_and_wildcards() {
    let server = TestServer::start().await;
    let client = connect(&server).await;
    let mut exact = client.subscribe("orders.eu.new").await.unwrap();
    let mut star = client.subscribe("orders.*.new").await.unwrap();
    let mut tail = client.subscribe("orders.>").await.unwrap();
    client.flush().await.unwrap();

    client.publish("orders.eu.new", "a".into()).await.unwrap();
    client.publish("orders.us.new", "b".into()).await.unwrap();
    client.publish("orders.us.old.x", "c".into()).await.unwrap();
    client.flush().await.unwrap();

    assert_eq!(next(&mut exact).await.payload, "a");
    assert_eq!(next(&mut star).await.payload, "a");
    assert_eq!(next(&mut star).await.payload, "b");
    for want in ["a", "b", "c"] {
        assert_eq!(next(&mut tail).await.payload, want);
    }
    assert_eq!(client.server_info().version, "2.15.1");
}

#[tokio::test]
async fn queue_group_delivers_exactly_once() {
    let server = TestServer::start().await;
    let mut members = Vec::new();
    for _ in 0..4 {
        let c = connect(&server).await;
        let sub = c.queue_subscribe("jobs", "workers".into()).await.unwrap();
        c.flush().await.unwrap();
        members.push((c, sub));
    }
    let publisher = connect(&server).await;
    let total = 400;
    for i in 0..total {
        publisher
            .publish("jobs", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();

    let mut seen = HashSet::new();
    let mut spread = Vec::new();
    let mut received = 0;
    for (_, sub) in &mut members {
        let mut count = 0;
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await
        {
            assert!(
                seen.insert(msg.payload.clone()),
                "delivered twice: {:?}",
                msg.payload
            );
            count += 1;
        }
        received += count;
        spread.push(count);
    }
    assert_eq!(received, total, "spread {spread:?}");
    assert!(spread.iter().all(|&n| n > 0), "spread {spread:?}");
}

#[tokio::test]
async fn concurrent_requests_get_their_own_replies() {
    let server = TestServer::start().await;
    let responder = connect(&server).await;
    let mut requests = responder.subscribe("math.double").await.unwrap();
    responder.flush().await.unwrap();
    let service = tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            let n: u64 = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
            let reply = msg.reply.expect("request carries a reply subject");
            responder
                .publish(reply, (n * 2).to_string().into())
                .await
                .unwrap();
        }
    });

    let requester = connect(&server).await;
    let calls = (0..64u64).map(|n| {
        let requester = requester.clone();
        async move {
            let reply = requester
                .request("math.double", n.to_string().into())
                .await
                .unwrap();
            assert_eq!(reply.payload, (n * 2).to_string());
        }
    });
    tokio::time::timeout(WAIT, futures::future::join_all(calls))
        .await
        .expect("timed out");
    service.abort();
}

#[tokio::test]
async fn request_without_responders_fails_fast() {
    let server = TestServer::start().await;
    let client = connect(&server).await;
    let started = std::time::Instant::now();
    let err = client
        .request("nobody.home", "hi".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    // The 503 arrives at once, long before async-nats' 10 s request timeout.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn headers_round_trip() {
    let server = TestServer::start().await;
    let client = connect(&server).await;
    let mut sub = client.subscribe("with.headers").await.unwrap();
    client.flush().await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Trace-Id", "abc123");
    headers.append("Multi", "one");
    headers.append("Multi", "two");
    client
        .publish_with_headers("with.headers", headers, "body".into())
        .await
        .unwrap();
    let msg = next(&mut sub).await;
    assert_eq!(msg.payload, "body");
    let got = msg.headers.expect("headers");
    assert_eq!(got.get("Trace-Id").map(|v| v.as_str()), Some("abc123"));
    let multi: Vec<&str> = got.get_all("Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, ["one", "two"]);
}

#[tokio::test]
async fn no_echo_suppresses_own_messages() {
    let server = TestServer::start().await;
    let quiet = ConnectOptions::new()
        .no_echo()
        .connect(server.url())
        .await
        .unwrap();
    let mut own = quiet.subscribe("chat").await.unwrap();
    quiet.flush().await.unwrap();
    let other = connect(&server).await;
    let mut theirs = other.subscribe("chat").await.unwrap();
    other.flush().await.unwrap();

    quiet.publish("chat", "from quiet".into()).await.unwrap();
    quiet.flush().await.unwrap();
    assert_eq!(next(&mut theirs).await.payload, "from quiet");
    other.publish("chat", "from other".into()).await.unwrap();
    other.flush().await.unwrap();
    // The first message `own` sees is the other client's: its own was never delivered.
    assert_eq!(next(&mut own).await.payload, "from other");
}

/// `UNSUB <sid> <max>`: the server itself stops delivering after `max` messages and drops the
/// subscription. Spoken in the raw protocol: a client library enforces max on its own side too,
/// which would hide a server that ignores it.
#[tokio::test]
async fn auto_unsubscribe_after_max() {
    let server = TestServer::start().await;
    // The system account's own subscriptions and imports are there from the start.
    let before = server.shared.router.subscription_count();
    let quiet = "CONNECT {\"verbose\":false}\r\n";
    let mut sub = server.raw().await;
    sub.send(format!("{quiet}SUB limited 1\r\nUNSUB 1 3\r\n"))
        .await;
    sub.expect_before_pong("").await;
    let mut publisher = server.raw().await;
    let pubs: String = (0..10)
        .map(|i| format!("PUB limited 1\r\n{i}\r\n"))
        .collect();
    publisher.send(format!("{quiet}{pubs}")).await;
    // Once the publisher has its PONG, every delivery is queued ahead of the subscriber's.
    publisher.expect_before_pong("").await;
    sub.expect_before_pong(
        "MSG limited 1 1\r\n0\r\nMSG limited 1 1\r\n1\r\nMSG limited 1 1\r\n2\r\n",
    )
    .await;
    assert_eq!(server.shared.router.subscription_count(), before);
}

#[tokio::test]
async fn user_password_and_token_auth() {
    let server = TestServer::with(Options {
        username: Some("alice".into()),
        password: Some("s3cret".into()),
        ..Default::default()
    })
    .await;
    let ok = ConnectOptions::with_user_and_password("alice".into(), "s3cret".into())
        .connect(server.url())
        .await;
    assert!(ok.is_ok());
    let bad = ConnectOptions::with_user_and_password("alice".into(), "wrong".into())
        .connection_timeout(Duration::from_secs(2))
        .connect(server.url());
    let err = tokio::time::timeout(WAIT, bad)
        .await
        .expect("timed out")
        .unwrap_err();
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );

    let server = TestServer::with(Options {
        token: Some("tok".into()),
        ..Default::default()
    })
    .await;
    let client = ConnectOptions::with_token("tok".into())
        .connect(server.url())
        .await
        .unwrap();
    let mut sub = client.subscribe("x").await.unwrap();
    client.publish("x", "y".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "y");
}

#[tokio::test]
async fn large_messages_up_to_max_payload() {
    let server = TestServer::start().await;
    let client = connect(&server).await;
    let mut sub = client.subscribe("big").await.unwrap();
    client.flush().await.unwrap();
    let payload: Vec<u8> = (0..1024 * 1024 - 64).map(|i| (i % 251) as u8).collect();
    client.publish("big", payload.clone().into()).await.unwrap();
    let msg = next(&mut sub).await;
    assert_eq!(msg.payload.len(), payload.len());
    assert!(msg.payload == payload);
}
