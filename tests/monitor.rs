//! The HTTP monitor against real clients: field names and types as nats-server 2.15.1 returns
//! them (recorded in `tests/fixtures/nats-server-2.15.1`), counters, paging and sorting, closed
//! connections and their reasons, and the HTTP server itself.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::process::json_shape;
use common::{eventually, Raw, TestServer, WAIT};
use futures::StreamExt;
use serde_json::Value;
use tern::config::User;
use tern::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw HTTP exchange: sends `request` on a new connection and reads until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect monitor");
    stream.write_all(request).await.expect("send");
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut got))
        .await
        .expect("monitor answered in time")
        .expect("read");
    String::from_utf8_lossy(&got).into_owned()
}

/// `GET path` with a plain HTTP/1.1 client; returns the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let response = exchange(addr, request.as_bytes()).await;
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|l| l.parse().ok())
        .expect("Content-Length");
    assert_eq!(body.len(), length, "{head}");
    (status, body.to_string())
}

/// `GET path`, expecting 200 and JSON.
async fn json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Monitoring on a random port, without a system account: the recorded fixtures were made with
/// `no_system_account: true`, and the counts below are of client subscriptions only (a system
/// account adds its service imports to every account). `tests/sys.rs` covers the system account.
fn monitored(mut opts: Options) -> Options {
    opts.http_port = -1;
    opts.no_system_account = true;
    opts
}

async fn start_monitored(opts: Options) -> (TestServer, SocketAddr) {
    let server = TestServer::with(monitored(opts)).await;
    let monitor = server.monitor.expect("monitor listening");
    (server, monitor)
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/nats-server-2.15.1/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

fn assert_same_shape(endpoint: &str, tern: &Value, reference: &str) {
    let (ours, theirs) = (json_shape(tern), json_shape(&fixture(reference)));
    let missing: Vec<_> = theirs.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&theirs).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{endpoint} differs from nats-server ({reference}.json)\nmissing: {missing:?}\nextra: \
         {extra:?}\ntern: {tern:#}"
    );
}

/// A raw client past CONNECT (and, for protocol 1, the INFO that follows the first PONG).
async fn raw_connect(server: &TestServer, connect: &str) -> Raw {
    let mut raw = server.raw().await;
    raw.send(format!("CONNECT {connect}\r\nPING\r\n")).await;
    raw.expect("PONG\r\n").await;
    if connect.contains(r#""protocol":1"#) {
        assert!(raw.read_line().await.starts_with("INFO "));
    }
    raw
}

/// The situation the fixtures were recorded in (see their README), recreated against tern.
#[tokio::test]
async fn fields_and_types_match_nats_server() {
    let opts = Options {
        users: vec![User {
            name: "alice".into(),
            password: "secret".into(),
            ..User::default()
        }],
        ..Options::default()
    };
    let (server, monitor) = start_monitored(opts).await;
    let alice = |name: &str| {
        format!(
            r#"{{"verbose":false,"name":"{name}","lang":"python","version":"1.0","protocol":1,"user":"alice","pass":"secret"}}"#
        )
    };
    let mut sub = raw_connect(&server, &alice("sub")).await;
    sub.send("SUB foo 1\r\nSUB bar.* q 2\r\n").await;
    sub.expect_before_pong("").await;
    let mut publisher = raw_connect(&server, &alice("pub")).await;
    publisher.send("PUB foo 5\r\nhello\r\n").await;
    publisher.expect_before_pong("").await;
    sub.expect_before_pong("MSG foo 1 5\r\nhello\r\n").await;
    drop(publisher);
    let mut bad = server.raw().await;
    bad.send(r#"CONNECT {"verbose":false,"name":"bad","lang":"python","version":"1.0","user":"alice","pass":"wrong"}"#)
        .await;
    bad.send("\r\n").await;
    bad.expect_closed_after("-ERR 'Authorization Violation'\r\n")
        .await;
    eventually("both closed", || server.shared.closed.snapshot().len() == 2).await;

    let varz = json(monitor, "/varz").await;
    assert_same_shape("/varz", &varz, "varz");
    let connz = json(monitor, "/connz?subs=1").await;
    assert_same_shape("/connz?subs=1", &connz, "connz_subs");
    let detail = json(monitor, "/connz?auth=1&subs=detail").await;
    assert_same_shape(
        "/connz?auth=1&subs=detail",
        &detail,
        "connz_auth_subs_detail",
    );
    let closed = json(monitor, "/connz?state=closed&auth=1&subs=1").await;
    // The reference's closed connections had no subscriptions; tern's `pub` had none either.
    assert_same_shape("/connz?state=closed", &closed, "connz_closed_auth_subs");
    assert_same_shape("/subsz", &json(monitor, "/subsz").await, "subsz");
    assert_same_shape(
        "/subsz?subs=1",
        &json(monitor, "/subsz?subs=1").await,
        "subsz_subs",
    );
    assert_same_shape("/accountz", &json(monitor, "/accountz").await, "accountz");
    let acc = json(monitor, "/accountz?acc=%24G").await;
    assert_same_shape("/accountz?acc=$G", &acc, "accountz_acc");
    assert_same_shape("/routez", &json(monitor, "/routez").await, "routez");
    assert_same_shape("/healthz", &json(monitor, "/healthz").await, "healthz");

    // And the values that follow from the situation.
    assert_eq!(varz["auth_required"], true);
    assert_eq!(varz["connections"], 1);
    assert_eq!(varz["total_connections"], 3);
    assert_eq!(varz["in_msgs"], 1);
    assert_eq!(varz["in_bytes"], 5);
    assert_eq!(varz["out_msgs"], 1);
    assert_eq!(varz["out_bytes"], 5);
    assert_eq!(varz["subscriptions"], 2);
    assert_eq!(varz["http_req_stats"]["/varz"], 1);
    assert_eq!(varz["port"], server.addr.port());
    assert_eq!(varz["http_port"], -1);
    let conn = &detail["connections"][0];
    assert_eq!(conn["authorized_user"], "alice");
    assert_eq!(conn["name"], "sub");
    let foo = conn["subscriptions_list_detail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subject"] == "foo")
        .expect("foo listed");
    assert_eq!(
        (foo["sid"].as_str(), foo["msgs"].as_u64()),
        (Some("1"), Some(1))
    );
    let reasons: Vec<&str> = closed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["Client Closed", "Authentication Failure"]);
    assert_eq!(closed["connections"][0]["in_msgs"], 1);
    assert_eq!(closed["connections"][0]["in_bytes"], 5);
}

#[tokio::test]
async fn closed_connection_keeps_its_subscriptions() {
    let (server, monitor) = start_monitored(Options::default()).await;
    let mut gone = raw_connect(
        &server,
        r#"{"verbose":false,"name":"gone","lang":"python","version":"1.0","protocol":1}"#,
    )
    .await;
    gone.send("SUB x 1\r\nPUB foo 2\r\nhi\r\n").await;
    gone.expect_before_pong("").await;
    drop(gone);
    eventually("closed", || server.shared.closed.snapshot().len() == 1).await;
    let closed = json(monitor, "/connz?state=closed&subs=1").await;
    assert_same_shape("/connz?state=closed&subs=1", &closed, "connz_closed_subs");
    assert_eq!(closed["connections"][0]["subscriptions_list"][0], "x");
    assert_eq!(closed["connections"][0]["reason"], "Client Closed");
    // Closed subscriptions are gone from the sublist and from open connections.
    assert_eq!(json(monitor, "/varz").await["subscriptions"], 0);
    assert_eq!(json(monitor, "/connz").await["num_connections"], 0);
    assert_eq!(
        json(monitor, "/connz?state=all").await["num_connections"],
        1
    );
}

/// What the nats.py suite reads: `/varz` `in_msgs`/`in_bytes` and per-connection counters.
#[tokio::test]
async fn counters_follow_real_clients() {
    let (server, monitor) = start_monitored(Options::default()).await;
    let subscriber = async_nats::ConnectOptions::new()
        .name("subscriber")
        .connect(server.url())
        .await
        .unwrap();
    let mut sub = subscriber.subscribe("updates.>").await.unwrap();
    subscriber.flush().await.unwrap();
    let publisher = async_nats::connect(server.url()).await.unwrap();
    for i in 0..10u8 {
        publisher
            .publish(format!("updates.{i}"), vec![i; 100].into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for _ in 0..10 {
        tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
    }
    let varz = json(monitor, "/varz").await;
    assert_eq!(varz["in_msgs"], 10);
    assert_eq!(varz["in_bytes"], 1000);
    assert_eq!(varz["out_msgs"], 10);
    assert_eq!(varz["out_bytes"], 1000);
    assert_eq!(varz["connections"], 2);
    assert_eq!(varz["subscriptions"], 1);
    let connz = json(monitor, "/connz?sort=msgs_to").await;
    let first = &connz["connections"][0];
    assert_eq!(first["name"], "subscriber");
    assert_eq!(first["subscriptions"], 1);
    assert_eq!(first["out_msgs"], 10);
    assert_eq!(first["out_bytes"], 1000);
    assert_eq!(first["lang"], "rust");
    let second = &connz["connections"][1];
    assert_eq!(second["in_msgs"], 10);
    assert_eq!(second["in_bytes"], 1000);
    assert!(second["rtt"].as_str().is_some_and(|r| r.ends_with('s')));

    // Totals survive the connections that made them.
    drop(publisher);
    drop(sub);
    drop(subscriber);
    eventually("both closed", || {
        server.shared.router.connection_count() == 0
    })
    .await;
    let varz = json(monitor, "/varz").await;
    assert_eq!(
        (varz["in_msgs"].as_u64(), varz["out_bytes"].as_u64()),
        (Some(10), Some(1000))
    );
    assert_eq!(varz["connections"], 0);
}

#[tokio::test]
async fn connz_paging_and_sorting() {
    let (server, monitor) = start_monitored(Options::default()).await;
    // Connection i (cid i) publishes i messages of i bytes and holds 5 - i subscriptions.
    let mut clients = Vec::new();
    for i in 1..=4u64 {
        let mut raw = raw_connect(&server, r#"{"verbose":false}"#).await;
        let mut batch = String::new();
        for s in 0..(5 - i) {
            batch.push_str(&format!("SUB s.{i}.{s} {s}\r\n"));
        }
        for _ in 0..i {
            batch.push_str(&format!(
                "PUB nowhere {i}\r\n{}\r\n",
                "x".repeat(i as usize)
            ));
        }
        raw.send(batch).await;
        raw.expect_before_pong("").await;
        clients.push(raw);
    }
    let cids = |v: &Value| -> Vec<u64> {
        v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cid"].as_u64().unwrap())
            .collect()
    };
    let all = json(monitor, "/connz").await;
    assert_eq!(cids(&all), [1, 2, 3, 4]);
    assert_eq!(
        (all["total"].as_u64(), all["limit"].as_u64()),
        (Some(4), Some(1024))
    );
    assert_eq!(
        cids(&json(monitor, "/connz?sort=msgs_from").await),
        [4, 3, 2, 1]
    );
    assert_eq!(
        cids(&json(monitor, "/connz?sort=bytes_from").await),
        [4, 3, 2, 1]
    );
    assert_eq!(cids(&json(monitor, "/connz?sort=subs").await), [1, 2, 3, 4]);
    assert_eq!(
        cids(&json(monitor, "/connz?sort=start").await),
        [1, 2, 3, 4]
    );
    assert_eq!(
        cids(&json(monitor, "/connz?sort=uptime").await),
        [1, 2, 3, 4]
    );
    assert_eq!(cids(&json(monitor, "/connz?sort=last").await), [4, 3, 2, 1]);
    for sort in ["cid", "pending", "msgs_to", "bytes_to", "idle", "rtt"] {
        assert_eq!(
            cids(&json(monitor, &format!("/connz?sort={sort}")).await).len(),
            4
        );
    }
    let page = json(monitor, "/connz?sort=msgs_from&offset=1&limit=2").await;
    assert_eq!(cids(&page), [3, 2]);
    assert_eq!(page["num_connections"], 2);
    assert_eq!(page["total"], 4);
    assert_eq!(page["offset"], 1);
    assert_eq!(page["limit"], 2);
    assert!(cids(&json(monitor, "/connz?offset=10").await).is_empty());
    let one = json(monitor, "/connz?cid=3&subs=1").await;
    assert_eq!(cids(&one), [3]);
    assert_eq!(
        one["connections"][0]["subscriptions_list"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let (status, body) = get(monitor, "/connz?sort=bogus").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "invalid sorting option: bogus")
    );
    let (status, body) = get(monitor, "/connz?sort=stop").await;
    assert_eq!(status, 400);
    assert_eq!(body, "sort by stop only valid on closed connections");
    let (status, body) = get(monitor, "/connz?limit=x").await;
    assert_eq!(status, 400);
    assert!(body.starts_with("Error decoding int for 'limit'"), "{body}");

    // Closed connections sort by stop (most recent first) and by reason.
    drop(clients.remove(0));
    eventually("closed", || server.shared.closed.snapshot().len() == 1).await;
    drop(clients.remove(0));
    eventually("closed", || server.shared.closed.snapshot().len() == 2).await;
    assert_eq!(
        cids(&json(monitor, "/connz?state=closed&sort=stop").await),
        [2, 1]
    );
    assert_eq!(cids(&json(monitor, "/connz?state=closed").await), [1, 2]);
    assert_eq!(cids(&json(monitor, "/connz?state=all").await), [1, 2, 3, 4]);
}

#[tokio::test]
async fn closed_ring_is_bounded() {
    let opts = Options {
        max_closed_clients: 2,
        ..Options::default()
    };
    let (server, monitor) = start_monitored(opts).await;
    for n in 1..=3 {
        drop(raw_connect(&server, r#"{"verbose":false}"#).await);
        eventually("closed", || {
            server.shared.router.total_connections() == n
                && server.shared.router.connection_count() == 0
        })
        .await;
    }
    eventually("ring full", || server.shared.closed.snapshot().len() == 2).await;
    let closed = json(monitor, "/connz?state=closed").await;
    let cids: Vec<u64> = closed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cid"].as_u64().unwrap())
        .collect();
    assert_eq!(cids, [2, 3]);
}

#[tokio::test]
async fn close_reasons_slow_consumer_and_stale() {
    let opts = Options {
        max_pending: 4096,
        ping_interval: Duration::from_millis(100),
        ping_max: 1,
        ..Options::default()
    };
    let (server, monitor) = start_monitored(opts).await;
    // A subscriber that never reads: the publisher's burst passes its max_pending at once.
    let mut slow = raw_connect(&server, r#"{"verbose":false,"name":"slow"}"#).await;
    slow.send("SUB big 1\r\n").await;
    slow.expect_before_pong("").await;
    let mut publisher = raw_connect(&server, r#"{"verbose":false,"name":"pub"}"#).await;
    let payload = "x".repeat(1000);
    let mut burst = String::new();
    for _ in 0..10 {
        burst.push_str(&format!("PUB big 1000\r\n{payload}\r\n"));
    }
    publisher.send(burst).await;
    // A client that answers nothing: PINGs go unanswered and it goes stale.
    let _stale = server.raw().await;
    eventually("slow consumer and stale closed", || {
        let reasons: Vec<_> = server
            .shared
            .closed
            .snapshot()
            .iter()
            .filter_map(|c| c.reason)
            .collect();
        reasons.contains(&"Slow Consumer (Pending Bytes)") && reasons.contains(&"Stale Connection")
    })
    .await;
    // The publisher ignores PINGs too, so it goes stale as well: wait for all three.
    eventually("all closed", || {
        server.shared.router.connection_count() == 0
    })
    .await;
    let varz = json(monitor, "/varz").await;
    let all = json(monitor, "/connz?state=closed").await;
    assert_eq!(varz["slow_consumers"], 1, "{all:#}");
    assert_eq!(varz["slow_consumer_stats"]["clients"], 1);
    assert_eq!(varz["stale_connections"], 2, "{all:#}");
    assert_eq!(varz["stale_connection_stats"]["clients"], 2);
    // The account's statistics outlive its connections, as nats-server's do: the slow
    // consumer and the publisher's messages are still counted with every client gone.
    let accstatz = json(monitor, "/accstatz?unused=1").await;
    let global = accstatz["account_statz"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["acc"] == "$G")
        .expect("$G listed");
    assert_eq!(global["conns"], 0, "{global:#}");
    assert_eq!(global["slow_consumers"], 1, "{global:#}");
    assert_eq!(global["received"]["msgs"], 10, "{global:#}");
    assert_eq!(global["received"]["bytes"], 10_000, "{global:#}");
    let closed = json(monitor, "/connz?state=closed&sort=reason").await;
    let slow_entry = closed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "slow")
        .expect("slow consumer listed");
    assert_eq!(slow_entry["reason"], "Slow Consumer (Pending Bytes)");
    assert!(slow_entry["stop"].as_str().is_some());
    let metrics = get(monitor, "/metrics").await.1;
    assert!(
        metrics.contains("\ngnatsd_varz_slow_consumers{server_id="),
        "{metrics}"
    );
    let line = metrics
        .lines()
        .find(|l| l.starts_with("gnatsd_varz_slow_consumers{"))
        .unwrap();
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn subsz_lists_and_tests_subjects() {
    let (server, monitor) = start_monitored(Options::default()).await;
    let mut raw = raw_connect(&server, r#"{"verbose":false}"#).await;
    raw.send("SUB foo.* 1\r\nSUB foo.bar q 2\r\nSUB baz 3\r\n")
        .await;
    raw.expect_before_pong("").await;
    let subsz = json(monitor, "/subsz").await;
    assert_eq!(subsz["num_subscriptions"], 3);
    assert_eq!(subsz["num_inserts"], 3);
    assert_eq!(subsz["total"], 0);
    assert!(subsz.get("subscriptions_list").is_none());
    let all = json(monitor, "/subsz?subs=1").await;
    assert_eq!(all["total"], 3);
    assert_eq!(all["subscriptions_list"].as_array().unwrap().len(), 3);
    let test = json(monitor, "/subsz?subs=1&test=foo.bar").await;
    let mut matched: Vec<&str> = test["subscriptions_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    matched.sort();
    assert_eq!(matched, ["foo.*", "foo.bar"]);
    assert_eq!(test["total"], 2);
    let paged = json(monitor, "/subsz?subs=1&offset=1&limit=1").await;
    assert_eq!(paged["subscriptions_list"].as_array().unwrap().len(), 1);
    let (status, _) = get(monitor, "/subsz?test=foo.*").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn http_server_behaviour() {
    let (server, monitor) = start_monitored(Options::default()).await;
    // Index, 404, HEAD.
    let (status, body) = get(monitor, "/").await;
    assert_eq!(status, 200);
    // nats-server's page of links (compared byte for byte in tests/dashboard.rs).
    for link in ["varz", "connz", "subsz", "routez", "accountz", "healthz"] {
        assert!(body.contains(&format!("href=./{link}>")), "{link}: {body}");
    }
    assert_eq!(
        get(monitor, "/nope").await,
        (404, "404 page not found\n".to_string())
    );
    let head = exchange(monitor, b"HEAD /varz HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    // Keep-alive: two requests on one connection, then close on request.
    let two = exchange(
        monitor,
        b"GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(two.matches(r#"{"status":"ok"}"#).count(), 2, "{two}");
    // Garbage, bodies and huge heads get an error and a close, and the monitor carries on.
    assert!(exchange(monitor, b"\x16\x03\x01garbage\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 400"));
    assert!(exchange(monitor, b"POST /varz HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 405"));
    let mut huge = b"GET /varz HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat(b'a').take(64 * 1024));
    assert!(exchange(monitor, &huge).await.starts_with("HTTP/1.1 431"));
    // The HEAD counted too.
    assert_eq!(json(monitor, "/varz").await["http_req_stats"]["/varz"], 2);
    // Routes and accounts: what tern has.
    let routez = json(monitor, "/routez").await;
    assert_eq!(routez["num_routes"], 0);
    assert_eq!(json(monitor, "/accountz").await["accounts"][0], "$G");
    assert_eq!(get(monitor, "/accountz?acc=nope").await.0, 400);
    // Not ready in lame duck mode.
    server.shared.enter_lame_duck_mode();
    let (status, body) = get(monitor, "/healthz").await;
    assert_eq!(status, 500);
    assert!(body.contains(r#""status":"error""#), "{body}");
}

#[tokio::test]
async fn metrics_match_varz() {
    let (server, monitor) = start_monitored(Options::default()).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    client.publish("a", "12345".into()).await.unwrap();
    client.flush().await.unwrap();
    eventually("counted", || {
        server.shared.router.connections_snapshot()[0]
            .counts()
            .in_msgs
            == 1
    })
    .await;
    let (status, text) = get(monitor, "/metrics").await;
    assert_eq!(status, 200);
    let id = &server.shared.server_id;
    for (name, kind, value) in [
        ("in_msgs", "counter", "1"),
        ("in_bytes", "counter", "5"),
        ("connections", "gauge", "1"),
        ("total_connections", "counter", "1"),
    ] {
        assert!(
            text.contains(&format!("# TYPE gnatsd_varz_{name} {kind}\n")),
            "{name}: {text}"
        );
        assert!(
            text.contains(&format!(
                "gnatsd_varz_{name}{{server_id=\"{id}\"}} {value}\n"
            )),
            "{name}: {text}"
        );
    }
    // Every sample line is `name{labels} value`, and the value is what /varz says, read with
    // nothing happening in between (the figures that move by themselves aside).
    let varz = json(monitor, "/varz").await;
    let mut compared = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        // The per-account series (`gnatsd_accstatz_*`) have their own test.
        let Some(name) = name.strip_prefix("gnatsd_varz_") else {
            continue;
        };
        let name = name
            .strip_suffix(&format!("{{server_id=\"{id}\"}}"))
            .unwrap();
        let want = match name {
            // Sampled again per request, or (the start) only text in /varz.
            "mem" | "cpu" | "uptime_seconds" | "start_time_seconds" => continue,
            "ping_interval_seconds" => varz["ping_interval"].as_f64().unwrap() / 1e9,
            name => varz[name]
                .as_f64()
                .unwrap_or_else(|| panic!("/varz has no number {name}: {varz}")),
        };
        assert_eq!(value, want, "{name}: /metrics {value}, /varz {want}");
        compared += 1;
    }
    assert!(compared >= 18, "{text}");
}

/// Accounts with a system account, as in the recorded observations of nats-server.
const ACCOUNTS: &str = r#"
accounts {
  SYS: { users: [{user: sys, password: sys}] }
  A: { users: [{user: a, password: a}], exports: [{service: "req"}, {stream: "ev.>"}] }
  B: { users: [{user: b, password: b}], imports: [{service: {account: A, subject: "req"}}] }
  C: { users: [{user: c, password: c}] }
}
system_account: SYS
http_port: -1
"#;

#[tokio::test]
async fn accounts_in_monitoring() {
    let file = tern::config::conf::parse_str(ACCOUNTS, std::path::Path::new("a.conf")).unwrap();
    let mut opts = Options::default();
    opts.apply_file(&file, &mut Vec::new()).unwrap();
    let server = TestServer::with(opts).await;
    let monitor = server.monitor.expect("monitor listening");
    let mut a = raw_connect(&server, r#"{"verbose":false,"user":"a","pass":"a"}"#).await;
    a.send("SUB foo 1\r\nSUB req 2\r\n").await;
    a.expect_before_pong("").await;
    let mut b = raw_connect(&server, r#"{"verbose":false,"user":"b","pass":"b"}"#).await;
    b.send("SUB bar q1 1\r\n").await;
    b.expect_before_pong("").await;

    assert_eq!(json(monitor, "/varz").await["system_account"], "SYS");
    let accountz = json(monitor, "/accountz").await;
    assert_eq!(accountz["system_account"], "SYS");
    let mut names: Vec<&str> = accountz["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["$G", "A", "B", "C", "SYS"]);
    let detail = &json(monitor, "/accountz?acc=A").await["account_detail"];
    assert_eq!(detail["client_connections"], 1);
    // Two client subscriptions and the four imports from the system account.
    assert_eq!(detail["subscriptions"], 6);
    assert_eq!(detail["exports"][0]["response_type"], "Singleton");
    assert_eq!(detail["imports"].as_array().unwrap().len(), 4);
    assert_eq!(
        json(monitor, "/accountz?acc=SYS").await["account_detail"]["is_system"],
        true
    );
    let (status, body) = get(monitor, "/accountz?acc=NOPE").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "Account NOPE does not exist")
    );

    let listed = |doc: &Value| {
        let mut accs: Vec<String> = doc["account_statz"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["acc"].as_str().unwrap().to_string())
            .collect();
        accs.sort();
        accs
    };
    assert_eq!(listed(&json(monitor, "/accstatz").await), ["A", "B"]);
    assert_eq!(
        listed(&json(monitor, "/accstatz?unused=1").await),
        ["$G", "A", "B", "C", "SYS"]
    );

    let connz = json(monitor, "/connz?acc=A").await;
    assert_eq!(connz["num_connections"], 1);
    assert!(connz["connections"][0].get("account").is_none());
    let authed = json(monitor, "/connz?acc=B&auth=1").await;
    assert_eq!(authed["connections"][0]["account"], "B");
    assert_eq!(authed["connections"][0]["name_tag"], "B");
    let missing = json(monitor, "/connz?acc=NOPE").await;
    assert_eq!(missing["connections"], Value::Null);

    let subsz = json(monitor, "/subsz?subs=1&acc=B").await;
    assert_eq!(subsz["num_subscriptions"], 6);
    let bar = &subsz["subscriptions_list"][0];
    assert_eq!(
        (bar["account"].as_str(), bar["qgroup"].as_str()),
        (Some("B"), Some("q1"))
    );

    // B's six subscriptions: `bar`, the import of A's `req`, and the four system imports.
    let (_, metrics) = get(monitor, "/metrics").await;
    let id = &server.shared.server_id;
    for line in [
        format!("gnatsd_accstatz_current_connections{{server_id=\"{id}\",account=\"A\"}} 1"),
        format!("gnatsd_accstatz_current_connections{{server_id=\"{id}\",account=\"C\"}} 0"),
        format!("gnatsd_accstatz_subscriptions{{server_id=\"{id}\",account=\"B\"}} 6"),
    ] {
        assert!(metrics.contains(&format!("{line}\n")), "{line}: {metrics}");
    }
}

#[tokio::test]
async fn base_path_prefixes_every_endpoint() {
    let opts = Options {
        http_base_path: "/nats".into(),
        ..Options::default()
    };
    let (_server, monitor) = start_monitored(opts).await;
    assert_eq!(get(monitor, "/nats/varz").await.0, 200);
    assert_eq!(get(monitor, "/varz").await.0, 404);
    assert!(get(monitor, "/nats").await.1.contains("/nats/connz"));
}

/// Runs nats-server 2.15.1 and tern side by side in the same situation and compares their field
/// lists live (see `common::reference` for when it fails or skips without nats-server).
#[test]
fn same_fields_as_a_live_nats_server() {
    use common::process::{http_get, Scratch};
    use std::io::{Read, Write};

    let Some(reference) = common::reference::nats_server() else {
        return;
    };
    let scratch = Scratch::new("monitor-live");
    let config = scratch.0.join("ref.conf");
    std::fs::write(&config, "no_system_account: true\n").unwrap();
    let mut shapes = Vec::new();
    for (name, binary) in [
        ("nats-server", reference),
        ("tern", std::path::PathBuf::from(env!("CARGO_BIN_EXE_tern"))),
    ] {
        let (server, client, monitor) =
            common::process::start_with_ports(&binary, &config, &scratch.0.join(name));
        let session = |ops: &str| {
            let mut conn = std::net::TcpStream::connect(&client).unwrap();
            conn.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            conn.write_all(ops.as_bytes()).unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("PONG") {
                match conn.read(&mut chunk) {
                    Ok(n) if n > 0 => seen.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            conn
        };
        let connect =
            r#"CONNECT {"verbose":false,"name":"n","lang":"rust","version":"1","protocol":1}"#;
        let _sub = session(&format!(
            "{connect}\r\nSUB foo 1\r\nSUB bar.* q 2\r\nPING\r\n"
        ));
        let gone = session(&format!(
            "{connect}\r\nSUB x 1\r\nPUB foo 2\r\nhi\r\nPING\r\n"
        ));
        drop(gone);
        std::thread::sleep(Duration::from_millis(200));
        let mut endpoints = Vec::new();
        for path in [
            "/varz",
            "/connz?subs=detail&auth=1",
            "/connz?state=closed&subs=1",
            "/subsz?subs=1",
            "/routez",
            "/healthz",
        ] {
            let (status, body) = http_get(&monitor, path).expect("monitor answers");
            assert_eq!(status, 200, "{name} {path}: {body}");
            let json: Value = serde_json::from_str(&body).unwrap();
            endpoints.push((path, json_shape(&json)));
        }
        shapes.push(endpoints);
        drop(server);
    }
    for ((path, theirs), (_, ours)) in shapes[0].iter().zip(&shapes[1]) {
        let missing: Vec<_> = theirs.difference(ours).collect();
        let extra: Vec<_> = ours.difference(theirs).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{path}: missing {missing:?}, extra {extra:?}"
        );
    }
}

/// The `/varz` `cluster` object (and the `gateway` and `leaf` write deadline nats-server fills
/// from the cluster's) next to a live nats-server 2.15.1 with the same cluster block: the same
/// fields with the same values.
#[test]
fn cluster_varz_as_a_live_nats_server_shows_it() {
    use common::process::{http_get, Scratch};

    let Some(reference) = common::process::reference_server() else {
        return;
    };
    let scratch = Scratch::new("monitor-cluster");
    // A free port for the cluster (nats-server shows the port it bound; tern, which does not
    // listen for routes yet, the configured one).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = scratch.0.join("cluster.conf");
    std::fs::write(
        &config,
        format!(
            "no_system_account: true\ncluster {{\n  name: c1\n  listen: 127.0.0.1:{port}\n  \
             routes: [nats-route://u:p@127.0.0.1:4, \"nats://[::1]:5\"]\n  \
             authorization {{ user: a, password: b, timeout: 3 }}\n  pool_size: 5\n  \
             write_deadline: \"3s\"\n  write_timeout: close\n}}\n"
        ),
    )
    .unwrap();
    let mut seen = Vec::new();
    for (name, binary) in [
        ("nats-server", reference),
        ("tern", std::path::PathBuf::from(env!("CARGO_BIN_EXE_tern"))),
    ] {
        let (server, _client, monitor) =
            common::process::start_with_ports(&binary, &config, &scratch.0.join(name));
        let (status, body) = http_get(&monitor, "/varz").expect("monitor answers");
        assert_eq!(status, 200, "{name}: {body}");
        let varz: Value = serde_json::from_str(&body).unwrap();
        seen.push((
            varz["cluster"].clone(),
            varz["gateway"].clone(),
            varz["leaf"].clone(),
        ));
        drop(server);
    }
    assert_eq!(seen[0], seen[1], "nats-server, then tern");
    assert_eq!(
        seen[1].0["urls"],
        serde_json::json!(["127.0.0.1:4", "[::1]:5"])
    );
}
