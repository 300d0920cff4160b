//! Black-box protocol tests: an in-process server driven with raw bytes. Expected bytes are the
//! ones nats-server 2.15.1 sends for the same input (recorded in shared/research/probe-2.15.1.md).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{eventually, jump, TestServer};
use tern::Options;

const QUIET: &str = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";

#[tokio::test]
async fn info_carries_the_fields_clients_rely_on() {
    let server = TestServer::start().await;
    let mut c = server.raw().await;
    let info = &c.info;
    assert_eq!(info["version"], "2.15.1");
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1048576);
    assert_eq!(info["port"], server.addr.port());
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["client_ip"], "127.0.0.1");
    assert!(info["client_id"].as_u64().unwrap() >= 1);
    let id = info["server_id"].as_str().unwrap();
    assert!(id.len() == 56 && id.starts_with('N'), "{id}");
    assert_eq!(info["server_name"], id);
    assert!(info.get("auth_required").is_none());
    // Client ids are unique.
    let d = server.raw().await;
    assert_ne!(d.info["client_id"], c.info["client_id"]);
    c.expect_before_pong("").await;
}

#[tokio::test]
async fn info_line_ends_like_nats_servers() {
    let server = TestServer::start().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n") {
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
            .await
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"INFO {\"server_id\":"));
    assert!(
        got.ends_with(b"} \r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

/// On the default host, `0.0.0.0`, nats-server (Go) listens on one dual-stack socket: IPv4 and
/// IPv6 clients alike reach the client port and the monitor.
#[tokio::test]
async fn default_host_takes_ipv4_and_ipv6_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let opts = Options {
        http_port: -1,
        ..Options::default()
    };
    assert_eq!(opts.host, "0.0.0.0");
    let server = TestServer::on_host(opts).await;
    let monitor = server.monitor.unwrap();
    for ip in ["127.0.0.1", "::1"] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let mut client = common::Raw::connect((ip, server.addr.port()).into()).await;
        client
            .send("CONNECT {\"verbose\":false}\r\nSUB a 1\r\nPUB a 2\r\nhi\r\n")
            .await;
        client.expect_before_pong("MSG a 1 2\r\nhi\r\n").await;

        let mut http = tokio::net::TcpStream::connect((ip, monitor.port()))
            .await
            .unwrap();
        http.write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tokio::time::timeout(common::WAIT, http.read_to_string(&mut response))
            .await
            .unwrap()
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{ip}: {response}");
    }
}

#[tokio::test]
async fn telnet_session_without_connect() {
    let server = TestServer::start().await;
    let mut c = server.raw().await;
    // Bare \n ends control lines; verbose is on until a CONNECT turns it off.
    c.send("SUB foo 1\nPUB foo 5\nhello\r\n").await;
    c.expect("+OK\r\n+OK\r\nMSG foo 1 5\r\nhello\r\n").await;
    c.send("ping\n").await;
    c.expect("PONG\r\n").await;
    c.send("sub bar 2\r\npub bar 2\r\nhi\r\nPiNg\r\n").await;
    c.expect("+OK\r\n+OK\r\nMSG bar 2 2\r\nhi\r\nPONG\r\n")
        .await;
    // Whatever follows PING on its line is ignored, as nats-server does.
    c.send("PINGX\r\nPING foo\r\n").await;
    c.expect("PONG\r\nPONG\r\n").await;
}

#[tokio::test]
async fn connect_options_apply_on_top_of_the_defaults() {
    let server = TestServer::start().await;
    let mut c = server.raw().await;
    // CONNECT {} keeps verbose and pedantic on.
    c.send("CONNECT {}\r\n").await;
    c.expect("+OK\r\n").await;
    c.send("PUB foo.* 1\r\nx\r\n").await;
    c.expect("-ERR 'Invalid Publish Subject'\r\n+OK\r\n").await;
    c.send("CONNECT {\"VERBOSE\":false}\r\n").await;
    c.expect_before_pong("").await;
    // A second CONNECT re-applies options.
    c.send("CONNECT {\"verbose\":true}\r\n").await;
    c.expect("+OK\r\n").await;
    c.send("CONNECT null\r\n").await;
    c.expect("+OK\r\n").await;
}

#[tokio::test]
async fn pedantic_reports_bad_publish_subjects_and_still_routes() {
    let server = TestServer::start().await;
    let mut c = server.raw().await;
    c.send("SUB foo.* 1\r\nPUB foo.* 1\r\nx\r\n").await;
    c.expect("+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nMSG foo.* 1 1\r\nx\r\n")
        .await;
    // Subjects with empty tokens never match, not even `>`.
    c.send("SUB > 2\r\nPUB foo..bar 1\r\nx\r\n").await;
    c.expect("+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\n")
        .await;
    c.expect_before_pong("").await;
    let mut quiet = server.raw().await;
    quiet.send(QUIET).await;
    quiet
        .send("SUB > 1\r\nPUB foo..bar 1\r\nx\r\nPUB foo* 1\r\ny\r\n")
        .await;
    quiet.expect_before_pong("MSG foo* 1 1\r\ny\r\n").await;
}

/// The sids of the next `n` messages, sorted.
async fn read_sids(sub: &mut common::Raw, n: usize) -> Vec<String> {
    let mut sids: Vec<String> = sub
        .read_msgs(n)
        .await
        .iter()
        .map(|m| m.split_whitespace().nth(2).unwrap().to_string())
        .collect();
    sids.sort();
    sids
}

#[tokio::test]
async fn every_wildcard_shape() {
    let server = TestServer::start().await;
    let mut sub = server.raw().await;
    sub.send(QUIET).await;
    sub.send(
        "SUB foo.bar 1\r\nSUB foo.* 2\r\nSUB foo.> 3\r\nSUB > 4\r\nSUB *.bar 5\r\nSUB * 6\r\n",
    )
    .await;
    sub.send("SUB foo.*.baz 7\r\nSUB foo* 8\r\n").await;
    sub.expect_before_pong("").await;
    let mut publisher = server.raw().await;
    publisher.send(QUIET).await;
    let cases: &[(&str, &[&str])] = &[
        ("foo.bar", &["1", "2", "3", "4", "5"]),
        ("foo", &["4", "6"]),
        ("foo.bar.baz", &["3", "4", "7"]),
        ("foo.x.baz.y", &["3", "4"]),
        ("x.bar", &["4", "5"]),
        ("foo*", &["4", "6", "8"]),
    ];
    for (subject, sids) in cases {
        publisher.send(format!("PUB {subject} 2\r\nhi\r\n")).await;
        publisher.expect_before_pong("").await;
        assert_eq!(read_sids(&mut sub, sids.len()).await, *sids, "{subject}");
        sub.expect_before_pong("").await;
    }
}

#[tokio::test]
async fn queue_groups_deliver_each_message_once_per_group() {
    let server = TestServer::start().await;
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = server.raw().await;
        m.send(QUIET).await;
        m.send(format!("SUB work.* workers {i}\r\n")).await;
        m.expect_before_pong("").await;
        members.push(m);
    }
    let mut other_group = server.raw().await;
    other_group
        .send(format!("{QUIET}SUB work.> audit 9\r\n"))
        .await;
    other_group.expect_before_pong("").await;
    let mut plain = server.raw().await;
    plain.send(format!("{QUIET}SUB work.item 1\r\n")).await;
    plain.expect_before_pong("").await;

    let total = 300;
    let mut publisher = server.raw().await;
    publisher.send(QUIET).await;
    let batch: String = (0..total)
        .map(|i| format!("PUB work.item 4\r\n{i:04}\r\n"))
        .collect();
    publisher.send(batch).await;
    publisher.expect_before_pong("").await;

    assert_eq!(plain.read_msgs(total).await.len(), total);
    assert_eq!(other_group.read_msgs(total).await.len(), total);
    // Every message reached exactly one member; with 300 random picks each member got some.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_member = Vec::new();
    let mut remaining = total;
    for (i, m) in members.iter_mut().enumerate() {
        // Everything has been delivered once the PONGs above came back, so a PING barrier
        // tells how many this member got.
        m.send("PING\r\n").await;
        let mut count = 0;
        loop {
            let line = m.read_line().await;
            if line == "PONG\r\n" {
                break;
            }
            let body = m.read_line().await;
            assert!(line.starts_with(&format!("MSG work.item {i} 4")), "{line}");
            *seen.entry(body).or_default() += 1;
            count += 1;
        }
        remaining -= count;
        per_member.push(count);
    }
    assert_eq!(remaining, 0, "spread {per_member:?}");
    assert_eq!(seen.len(), total);
    assert!(seen.values().all(|&n| n == 1));
    assert!(per_member.iter().all(|&n| n > 0), "spread {per_member:?}");
}

#[tokio::test]
async fn request_reply_passes_the_reply_subject() {
    let server = TestServer::start().await;
    let mut responder = server.raw().await;
    responder.send(format!("{QUIET}SUB svc.echo q 1\r\n")).await;
    responder.expect_before_pong("").await;
    let mut requester = server.raw().await;
    requester
        .send(format!(
            "{QUIET}SUB _INBOX.abc.* 7\r\nPUB svc.echo _INBOX.abc.1 4\r\nping\r\n"
        ))
        .await;
    let request = responder.read_msgs(1).await;
    assert_eq!(request[0], "MSG svc.echo 1 _INBOX.abc.1 4\r\nping\r\n");
    responder.send("PUB _INBOX.abc.1 4\r\npong\r\n").await;
    assert_eq!(
        requester.read_msgs(1).await[0],
        "MSG _INBOX.abc.1 7 4\r\npong\r\n"
    );
}

#[tokio::test]
async fn no_responders_status_matches_nats_server() {
    let server = TestServer::start().await;
    let nr = "CONNECT {\"headers\":true,\"no_responders\":true,\"verbose\":false}\r\n";
    let mut c = server.raw().await;
    c.send(format!("{nr}SUB r 1\r\nPUB x r 5\r\nhello\r\n"))
        .await;
    c.expect("HMSG r 1 33 33\r\nNATS/1.0 503\r\nNats-Subject: x\r\n\r\n\r\n")
        .await;
    // A wildcard inbox subscription receives it on the reply subject.
    c.send("SUB r.* 2\r\nHPUB y r.abc 12 17\r\nNATS/1.0\r\n\r\nhello\r\n")
        .await;
    c.expect("HMSG r.abc 2 33 33\r\nNATS/1.0 503\r\nNats-Subject: y\r\n\r\n\r\n")
        .await;
    // No reply, or no own plain subscription on the reply: nothing.
    c.send("PUB x 0\r\n\r\nSUB q.r workers 3\r\nPUB x q.r 0\r\n\r\nPUB x other 0\r\n\r\n")
        .await;
    c.expect_before_pong("").await;
    // With echo on, its own subscription on the subject is a responder.
    c.send("SUB x 4\r\nPUB x r 0\r\n\r\n").await;
    c.expect_before_pong("MSG x 4 r 0\r\n\r\n").await;

    let mut plain = server.raw().await;
    plain
        .send("CONNECT {\"headers\":true,\"verbose\":false}\r\nSUB r 1\r\nPUB x r 0\r\n\r\n")
        .await;
    plain.expect_before_pong("").await;

    let mut verbose = server.raw().await;
    verbose
        .send("CONNECT {\"headers\":true,\"no_responders\":true}\r\nSUB r 1\r\nPUB z r 0\r\n\r\n")
        .await;
    verbose
        .expect(
            "+OK\r\n+OK\r\n+OK\r\nHMSG r 1 33 33\r\nNATS/1.0 503\r\nNats-Subject: z\r\n\r\n\r\n",
        )
        .await;
}

/// Large payloads reach subscribers as slices of the publisher's read buffer rather than
/// copies (with vectored writes): every subscriber must still get exactly the frame a copy
/// gives, with or without headers, beside small messages in the same reads, and a payload
/// split across many reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_reach_every_subscriber_byte_for_byte() {
    let server = TestServer::start().await;
    let mut with = server.raw().await;
    with.send("CONNECT {\"headers\":true,\"verbose\":false}\r\nSUB big.* 1\r\n")
        .await;
    with.expect_before_pong("").await;
    let mut without = server.raw().await;
    without.send(format!("{QUIET}SUB big.x 2\r\n")).await;
    without.expect_before_pong("").await;
    let mut publisher = server.raw().await;
    publisher
        .send("CONNECT {\"headers\":true,\"verbose\":false}\r\n")
        .await;

    // Payloads whose bytes differ along their length, so a slice taken at the wrong place
    // shows.
    let payload = |len: usize, seed: usize| -> String {
        (0..len)
            .map(|i| char::from(b'a' + ((i / 7 + seed) % 26) as u8))
            .collect()
    };
    let mut input = String::new();
    let (mut to_with, mut to_without) = (String::new(), String::new());
    for (n, len) in [20_000usize, 16_384, 100_000, 3, 1_048_576, 65_536]
        .iter()
        .enumerate()
    {
        let p = payload(*len, n);
        input.push_str(&format!(
            "PUB big.x r.{n} {len}\r\n{p}\r\nPUB big.x 1\r\n{n}\r\n"
        ));
        to_with.push_str(&format!(
            "MSG big.x 1 r.{n} {len}\r\n{p}\r\nMSG big.x 1 1\r\n{n}\r\n"
        ));
        to_without.push_str(&format!(
            "MSG big.x 2 r.{n} {len}\r\n{p}\r\nMSG big.x 2 1\r\n{n}\r\n"
        ));
    }
    let headers = "NATS/1.0\r\nA: B\r\n\r\n";
    let body = payload(40_000, 9);
    let total = headers.len() + body.len();
    input.push_str(&format!(
        "HPUB big.x {} {total}\r\n{headers}{body}\r\n",
        headers.len()
    ));
    to_with.push_str(&format!(
        "HMSG big.x 1 {} {total}\r\n{headers}{body}\r\n",
        headers.len()
    ));
    to_without.push_str(&format!("MSG big.x 2 {}\r\n{body}\r\n", body.len()));

    // Sent in pieces that cut the large frames in odd places.
    let reader_with = tokio::spawn(async move {
        with.expect(to_with).await;
        with.expect_before_pong("").await;
    });
    let reader_without = tokio::spawn(async move {
        without.expect(to_without).await;
        without.expect_before_pong("").await;
    });
    for piece in input.as_bytes().chunks(48_611) {
        publisher.send(piece).await;
    }
    publisher.expect_before_pong("").await;
    for reader in [reader_with, reader_without] {
        tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A quiet subscriber to `big` (sid 1), ready, and a quiet publisher.
async fn big_subscriber_and_publisher(server: &TestServer) -> (common::Raw, common::Raw) {
    let mut sub = server.raw().await;
    sub.send(format!("{QUIET}SUB big 1\r\n")).await;
    sub.expect_before_pong("").await;
    let mut publisher = server.raw().await;
    publisher.send(QUIET).await;
    (sub, publisher)
}

/// While a publisher streams (reads come back full, or large frames arrive), tern keeps its
/// socket from waking a worker on every arrival (`ReadHalf::hush` raises the socket's
/// low-water mark) until a read finds it empty. Whatever comes after, however small and
/// however late, must still be read: a lone PING after a pause, after a burst of small
/// messages and after large frames, and the last bytes of a large frame sent on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_input_after_a_stream_is_still_read() {
    let server = TestServer::start().await;
    let (mut sub, mut publisher) = big_subscriber_and_publisher(&server).await;

    // 300 KB of small messages in one write: the reads fill up.
    let (mut burst, mut delivered) = (String::new(), String::new());
    for n in 0..20_000 {
        burst.push_str(&format!("PUB big {}\r\n{n}\r\n", n.to_string().len()));
        delivered.push_str(&format!("MSG big 1 {}\r\n{n}\r\n", n.to_string().len()));
    }
    publisher.send(&burst).await;
    sub.expect(&delivered).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher.expect_before_pong("").await;

    let body = "y".repeat(65_536);
    let frame = format!("PUB big {}\r\n{body}\r\n", body.len());
    let delivered = format!("MSG big 1 {}\r\n{body}\r\n", body.len());
    publisher.send(frame.repeat(8)).await;
    sub.expect(delivered.repeat(8)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Six bytes, far below the raised mark.
    publisher.expect_before_pong("").await;

    // A large frame whose last ten bytes come 100 ms after the rest.
    let (most, last) = frame.split_at(frame.len() - 10);
    publisher.send(most).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher.send(last).await;
    sub.expect(&delivered).await;
    publisher.expect_before_pong("").await;
}

#[tokio::test]
async fn headers_are_stripped_for_subscribers_without_them() {
    let server = TestServer::start().await;
    let mut with = server.raw().await;
    with.send("CONNECT {\"headers\":true,\"verbose\":false}\r\nSUB foo 1\r\n")
        .await;
    with.expect_before_pong("").await;
    let mut without = server.raw().await;
    without.send(format!("{QUIET}SUB foo 2\r\n")).await;
    without.expect_before_pong("").await;
    let mut telnet = server.raw().await;
    telnet.send("SUB foo 3\r\n").await;
    telnet.expect("+OK\r\n").await;

    with.send("HPUB foo rep 18 23\r\nNATS/1.0\r\nA: B\r\n\r\nhello\r\n")
        .await;
    with.expect("HMSG foo 1 rep 18 23\r\nNATS/1.0\r\nA: B\r\n\r\nhello\r\n")
        .await;
    without.expect("MSG foo 2 rep 5\r\nhello\r\n").await;
    telnet.expect("MSG foo 3 rep 5\r\nhello\r\n").await;
    // An empty header block is a plain message.
    with.send("HPUB foo 0 2\r\nhi\r\n").await;
    with.expect("MSG foo 1 2\r\nhi\r\n").await;
    without.expect("MSG foo 2 2\r\nhi\r\n").await;
}

#[tokio::test]
async fn hpub_without_headers_closes_silently() {
    let server = TestServer::start().await;
    let mut c = server.raw().await;
    c.send("SUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        .await;
    c.expect_closed_after("+OK\r\n").await;
}

#[tokio::test]
async fn echo_false_suppresses_own_messages() {
    let server = TestServer::start().await;
    let mut a = server.raw().await;
    a.send("CONNECT {\"echo\":false,\"verbose\":false}\r\nSUB foo 1\r\n")
        .await;
    a.expect_before_pong("").await;
    let mut b = server.raw().await;
    b.send(format!("{QUIET}SUB foo 2\r\n")).await;
    b.expect_before_pong("").await;
    a.send("PUB foo 2\r\nhi\r\n").await;
    a.expect_before_pong("").await;
    b.expect("MSG foo 2 2\r\nhi\r\n").await;
    b.send("PUB foo 2\r\nyo\r\n").await;
    a.expect("MSG foo 1 2\r\nyo\r\n").await;
    b.expect("MSG foo 2 2\r\nyo\r\n").await;
}

#[tokio::test]
async fn auto_unsubscribe_counts_earlier_deliveries() {
    let server = TestServer::start().await;
    // The system account's service imports are subscriptions too; count the client's only.
    let internal = server.shared.router.subscription_count();
    let mut c = server.raw().await;
    c.send(QUIET).await;
    c.send("SUB foo 1\r\nUNSUB 1 2\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\nPUB foo 1\r\nc\r\n")
        .await;
    c.expect_before_pong("MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\n")
        .await;
    // Delivered before the UNSUB counts: 2 delivered, max 3 -> one more.
    c.send("SUB bar 2\r\nPUB bar 1\r\na\r\nPUB bar 1\r\nb\r\nUNSUB 2 3\r\n")
        .await;
    c.send("PUB bar 1\r\nc\r\nPUB bar 1\r\nd\r\n").await;
    c.expect_before_pong("MSG bar 2 1\r\na\r\nMSG bar 2 1\r\nb\r\nMSG bar 2 1\r\nc\r\n")
        .await;
    // A max already reached removes the subscription at once; so does a max of 0 or garbage.
    c.send("SUB baz 3\r\nPUB baz 1\r\na\r\nUNSUB 3 1\r\nPUB baz 1\r\nb\r\n")
        .await;
    c.expect_before_pong("MSG baz 3 1\r\na\r\n").await;
    c.send("SUB q 4\r\nUNSUB 4 0\r\nSUB r 5\r\nUNSUB 5 abc\r\nPUB q 1\r\na\r\nPUB r 1\r\nb\r\n")
        .await;
    c.expect_before_pong("").await;
    eventually("subscriptions gone", || {
        server.shared.router.subscription_count() == internal
    })
    .await;
    // The sid can be reused once the subscription is gone.
    c.send("SUB foo 1\r\nPUB foo 1\r\nz\r\n").await;
    c.expect_before_pong("MSG foo 1 1\r\nz\r\n").await;
}

#[tokio::test]
async fn duplicate_sid_is_ignored() {
    let server = TestServer::start().await;
    let mut c = server.raw().await;
    c.send("SUB foo 1\r\nSUB bar 1\r\nPUB foo 1\r\nx\r\nPUB bar 1\r\ny\r\n")
        .await;
    c.expect_before_pong("+OK\r\n+OK\r\n+OK\r\nMSG foo 1 1\r\nx\r\n+OK\r\n")
        .await;
}

#[tokio::test]
async fn errors_that_keep_the_connection_open() {
    let server = TestServer::with(Options {
        max_subscriptions: 1,
        ..Default::default()
    })
    .await;
    let mut c = server.raw().await;
    c.send("SUB a..b 1\r\nSUB foo.>.x 2\r\nSUB .foo 3\r\n")
        .await;
    c.expect_before_pong("-ERR 'Invalid Subject'\r\n".repeat(3))
        .await;
    c.send("SUB ok 1\r\nSUB more 2\r\n").await;
    c.expect_before_pong("+OK\r\n-ERR 'maximum subscriptions exceeded'\r\n")
        .await;
    c.send("PUB more 1\r\nx\r\nPUB ok 1\r\ny\r\n").await;
    c.expect_before_pong("+OK\r\n+OK\r\nMSG ok 1 1\r\ny\r\n")
        .await;
    // At the limit even a duplicate sid is refused as over it: nats-server checks the limit
    // first.
    c.send("SUB ok 1\r\n").await;
    c.expect_before_pong("-ERR 'maximum subscriptions exceeded'\r\n")
        .await;
}

/// Each input and what nats-server answers before closing the connection.
#[tokio::test]
async fn errors_that_close_the_connection() {
    let server = TestServer::start().await;
    let unknown = "-ERR 'Unknown Protocol Operation'\r\n";
    let cases: &[(&str, &str)] = &[
        ("FOO\r\n", unknown),
        ("\r\n", unknown),
        (" PING\r\n", unknown),
        ("PUB\r\n", unknown),
        ("SUB\r\n", unknown),
        ("MSG foo 1 2\r\nhi\r\n", unknown),
        ("PUB foo 5\r\nhelloXY", unknown),
        ("PUB foo 5\r\nhello\n", unknown),
        (
            "PUB foo 2000000\r\n",
            "-ERR 'Maximum Payload Violation'\r\n",
        ),
        (
            "CONNECT {\"protocol\":2}\r\n",
            "-ERR 'invalid client protocol'\r\n",
        ),
        (
            "CONNECT {\"no_responders\":true}\r\n",
            "-ERR 'no responders requires headers support'\r\n",
        ),
        // Malformed arguments: closed without a word.
        ("PUB foo\r\n", ""),
        ("PUB foo bar\r\n", ""),
        ("PUB foo 1 2 3\r\n", ""),
        ("SUB foo\r\n", ""),
        ("UNSUB 1 1 1\r\n", ""),
        ("CONNECT {bad json\r\n", ""),
        ("CONNECT {\"verbose\":\"yes\"}\r\n", ""),
        ("INFO garbage\r\n", ""),
        ("-ERR 'x'\r\n", ""),
    ];
    for (input, answer) in cases {
        let mut c = server.raw().await;
        c.send(QUIET).await;
        c.send(input).await;
        c.expect_closed_after(answer).await;
    }
    let long = format!("PUB {} 1\r\nx\r\n", "a".repeat(5000));
    let mut c = server.raw().await;
    c.send(long).await;
    c.expect_closed_after("-ERR 'maximum control line exceeded'\r\n")
        .await;
    // A control line that never ends is refused once it is too long.
    let mut c = server.raw().await;
    c.send(format!("SUB {}", "a".repeat(5000))).await;
    c.expect_closed_after("-ERR 'maximum control line exceeded'\r\n")
        .await;
}

#[tokio::test]
async fn client_ok_and_info_are_ignored() {
    let server = TestServer::start().await;
    let mut c = server.raw().await;
    c.send(QUIET).await;
    c.send("+OK\r\nINFO {}\r\nPONG\r\n").await;
    c.expect_before_pong("").await;
}

#[tokio::test]
async fn max_connections_refuses_with_the_nats_error() {
    let server = TestServer::with(Options {
        max_connections: 1,
        ..Default::default()
    })
    .await;
    let mut first = server.raw().await;
    let mut second = server.raw().await;
    second
        .expect_closed_after("-ERR 'maximum connections exceeded'\r\n")
        .await;
    first.expect_before_pong("").await;
}

#[tokio::test]
async fn connect_info_follows_the_first_pong_for_protocol_1() {
    let server = TestServer::start().await;
    let mut c = server.raw().await;
    c.send("CONNECT {\"protocol\":1,\"verbose\":false}\r\nPING\r\n")
        .await;
    c.expect("PONG\r\n").await;
    let line = c.read_line().await;
    let info: serde_json::Value =
        serde_json::from_str(line.strip_prefix("INFO ").unwrap().trim_end()).unwrap();
    assert_eq!(info["connect_info"], true);
    assert_eq!(info["remote_account"], "$G");
    assert_eq!(info["client_id"], c.info["client_id"]);
    // Only once.
    c.expect_before_pong("").await;
    let mut old = server.raw().await;
    old.send("CONNECT {\"verbose\":false}\r\n").await;
    old.expect_before_pong("").await;
    old.expect_before_pong("").await;
}

#[tokio::test]
async fn auth_user_and_password() {
    let server = TestServer::with(Options {
        username: Some("u".into()),
        password: Some("p".into()),
        ..Default::default()
    })
    .await;
    let violation = "-ERR 'Authorization Violation'\r\n";
    let mut c = server.raw().await;
    assert_eq!(c.info["auth_required"], true);
    c.send("PING\r\n").await;
    c.expect_closed_after(violation).await;
    // Anything but CONNECT first is a violation, even an unknown operation.
    for first in ["SUB foo 1\r\n", "FOO\r\n", "PUB foo 1\r\nx\r\n"] {
        let mut c = server.raw().await;
        c.send(first).await;
        c.expect_closed_after(violation).await;
    }
    // Credentials are checked before the other CONNECT options.
    let mut c = server.raw().await;
    c.send("CONNECT {\"protocol\":2}\r\n").await;
    c.expect_closed_after(violation).await;
    for bad in [
        r#"{"user":"u","pass":"bad"}"#,
        r#"{"user":"x","pass":"p"}"#,
        "{}",
        r#"{"auth_token":"p"}"#,
    ] {
        let mut c = server.raw().await;
        c.send(format!("CONNECT {bad}\r\n")).await;
        c.expect_closed_after(violation).await;
    }
    let mut good = server.raw().await;
    good.send(
        "CONNECT {\"user\":\"u\",\"pass\":\"p\",\"verbose\":false}\r\nSUB x 1\r\nPUB x 1\r\na\r\n",
    )
    .await;
    good.expect_before_pong("MSG x 1 1\r\na\r\n").await;
}

#[tokio::test]
async fn auth_token() {
    let server = TestServer::with(Options {
        token: Some("s3cr3t".into()),
        ..Default::default()
    })
    .await;
    let mut bad = server.raw().await;
    bad.send("CONNECT {\"auth_token\":\"nope\"}\r\n").await;
    bad.expect_closed_after("-ERR 'Authorization Violation'\r\n")
        .await;
    let mut good = server.raw().await;
    good.send("CONNECT {\"auth_token\":\"s3cr3t\"}\r\n").await;
    good.expect("+OK\r\n").await;
}

#[tokio::test]
async fn auth_timeout_closes_silent_clients() {
    let server = TestServer::with(Options {
        token: Some("t".into()),
        auth_timeout: Some(Duration::from_millis(200)),
        ..Default::default()
    })
    .await;
    let mut c = server.raw().await;
    c.expect_closed_after("-ERR 'Authentication Timeout'\r\n")
        .await;
}

#[tokio::test]
async fn unanswered_pings_make_a_stale_connection() {
    let server = TestServer::with(Options {
        ping_interval: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    // Real time passes between the jumps (connecting, reading) and counts on the server's
    // clock too, so the quiet checks jump to a point measured from before the connection
    // (which the server's own start can only follow) instead of by a fixed step: under load the
    // real time spent could otherwise carry the clock past a PING.
    let t0 = tokio::time::Instant::now();
    let jump_to = |at: Duration| jump(at.saturating_sub(t0.elapsed()));
    let mut c = server.raw().await;
    // The first PING comes after 2 s (nats-server's first client ping), then one per interval;
    // the third tick finds ping_max (2) PINGs unanswered. The client must stay silent, so the
    // quiet stretches are checked by waiting instead of with a PING.
    jump_to(Duration::from_millis(1800)).await;
    c.expect_nothing_for(Duration::from_millis(100)).await;
    jump(Duration::from_millis(200)).await;
    c.expect("PING\r\n").await;
    jump_to(Duration::from_millis(61_800)).await;
    c.expect_nothing_for(Duration::from_millis(100)).await;
    jump(Duration::from_millis(200)).await;
    c.expect("PING\r\n").await;
    jump(Duration::from_secs(60)).await;
    c.expect_closed_after("-ERR 'Stale Connection'\r\n").await;
}

#[tokio::test]
async fn answered_pings_keep_the_connection() {
    let server = TestServer::with(Options {
        ping_interval: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let mut c = server.raw().await;
    jump(Duration::from_secs(2)).await;
    for _ in 0..5 {
        c.expect("PING\r\n").await;
        c.send("PONG\r\n").await;
        c.expect_before_pong("").await;
        jump(Duration::from_secs(60)).await;
    }
    c.expect("PING\r\n").await;
}

#[tokio::test]
async fn active_clients_are_pinged_once_and_never_stale() {
    let server = TestServer::with(Options {
        ping_interval: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let mut c = server.raw().await;
    jump(Duration::from_secs(2)).await;
    c.expect("PING\r\n").await;
    // Never a PONG, but traffic within every interval: the timer skips its PINGs and the
    // connection never goes stale (as observed on nats-server).
    for _ in 0..6 {
        jump(Duration::from_secs(40)).await;
        c.expect_before_pong("").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_cut_without_slowing_others() {
    let server = TestServer::with(Options {
        max_pending: 1024 * 1024,
        ..Default::default()
    })
    .await;
    let mut slow = server.raw().await;
    slow.send(format!("{QUIET}SUB flood 1\r\n")).await;
    slow.expect_before_pong("").await;
    let mut fast = server.raw().await;
    fast.send(format!("{QUIET}SUB flood 2\r\n")).await;
    fast.expect_before_pong("").await;
    let mut publisher = server.raw().await;
    publisher.send(QUIET).await;

    // 32 MB through a subscriber that never reads: far past its 1 MiB budget and what the
    // kernel's socket buffers absorb.
    let payload = "x".repeat(1024);
    let count = 32 * 1024;
    let frame = format!("MSG flood 2 1024\r\n{payload}\r\n").into_bytes();
    let frame_len = frame.len();
    // The other subscriber reads as fast as it can: it must get every message and nothing
    // else (no -ERR), byte for byte.
    let reader = tokio::spawn(async move {
        // Compared a whole read at a time (memcmp), so that checking does not slow the reader.
        let expected = frame.repeat(256 * 1024 / frame_len + 2);
        let mut total = 0;
        let mut chunk = vec![0u8; 256 * 1024];
        while total < count * frame_len {
            let n = tokio::io::AsyncReadExt::read(&mut fast.stream, &mut chunk)
                .await
                .unwrap();
            assert!(n > 0, "the fast subscriber was closed after {total} bytes");
            let from = total % frame_len;
            assert!(
                chunk[..n] == expected[from..from + n],
                "the fast subscriber got something other than its messages after {total} bytes: \
                 {:?}",
                String::from_utf8_lossy(&chunk[..n.min(256)])
            );
            total += n;
        }
        fast
    });
    let batch = format!("PUB flood 1024\r\n{payload}\r\n").repeat(64);
    for i in 0..count / 64 {
        publisher.send(&batch).await;
        if i % 4 == 3 {
            // Keep the publisher within reach of the fast reader; the slow one falls behind
            // regardless. Nothing before the PONG: the publisher is neither cut nor warned.
            publisher.expect_before_pong("").await;
        }
    }
    publisher.expect_before_pong("").await;
    // The timeout only guards against hanging.
    let mut fast = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    // All `count` messages arrived and nothing follows them.
    fast.expect_before_pong("").await;
    // The slow one was closed, with no -ERR (nats-server sends none for a slow consumer): what
    // it finds in its socket is messages, then the end.
    let cid = slow.info["client_id"].as_u64().unwrap();
    eventually("slow consumer removed", || {
        server
            .shared
            .router
            .connections_snapshot()
            .iter()
            .all(|c| c.cid != cid)
    })
    .await;
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let read = tokio::io::AsyncReadExt::read(&mut slow.stream, &mut chunk);
        match tokio::time::timeout(common::WAIT, read).await.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    let slow_frame = format!("MSG flood 1 1024\r\n{payload}\r\n").into_bytes();
    assert!(
        received.len() < count * slow_frame.len(),
        "the slow consumer got everything"
    );
    let wrong = received
        .iter()
        .enumerate()
        .position(|(i, &b)| b != slow_frame[i % slow_frame.len()]);
    assert_eq!(
        wrong, None,
        "the slow consumer got something other than messages"
    );
    // The publisher is still served.
    publisher.expect_before_pong("").await;
}

/// A publisher of 1 MiB messages must not make a subscriber that reads as fast as it can a
/// slow consumer. (Before reads were capped and publishers yielded to the writers they woke,
/// one publisher's reads could queue the whole 64 MiB budget before the subscriber's writer ran,
/// and the subscriber was cut having received nothing; the load generator's 1:1 1 MB scenario
/// found it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_keeping_up_with_1_mib_messages_is_not_cut() {
    let server = TestServer::start().await;
    let (mut sub, mut publisher) = big_subscriber_and_publisher(&server).await;
    let size = 1024 * 1024;
    let count = 192;
    let frame_len = format!("MSG big 1 {size}\r\n").len() + size + 2;
    let reader = tokio::spawn(async move {
        let mut total = 0;
        let mut chunk = vec![0u8; 1024 * 1024];
        while total < count * frame_len {
            let n = tokio::io::AsyncReadExt::read(&mut sub.stream, &mut chunk)
                .await
                .unwrap();
            assert!(n > 0, "the subscriber was closed after {total} bytes");
            total += n;
        }
        total
    });
    let frame = format!("PUB big {size}\r\n{}\r\n", "x".repeat(size));
    for _ in 0..count {
        publisher.send(&frame).await;
    }
    let total = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, count * frame_len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_disconnected_at_once_not_at_the_write_deadline() {
    // The writer is blocked on the full socket when the budget runs out; nats-server closes
    // the connection then and there, so tern must not wait for the (here 60 s) write deadline.
    let server = TestServer::with(Options {
        max_pending: 1024 * 1024,
        write_deadline: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let mut slow = server.raw().await;
    slow.send(format!("{QUIET}SUB flood 1\r\n")).await;
    slow.expect_before_pong("").await;
    let mut publisher = server.raw().await;
    publisher.send(QUIET).await;
    publisher.expect_before_pong("").await;
    let batch = format!("PUB flood 1024\r\n{}\r\n", "x".repeat(1024)).repeat(64);
    for _ in 0..512 {
        publisher.send(&batch).await;
    }
    publisher.expect_before_pong("").await;
    // Only the publisher's reader and writer tasks are left once the slow one is gone.
    eventually("the slow consumer's tasks ended", || {
        server.shared.tasks.len() == 2
    })
    .await;
}

/// Four publishers flooding one subscriber that reads as fast as it can (fan-in): the
/// subscriber paces them rather than being cut as a slow consumer, as nats-server's producer
/// stall does, and gets every message of each publisher in order. (The load generator's full
/// fan-in 4 -> 1 run cut it at max_pending before publishers waited for backlogged subscribers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_paces_publishers_instead_of_cutting_the_subscriber() {
    let server = TestServer::with(Options {
        max_pending: 256 * 1024,
        ..Default::default()
    })
    .await;
    let mut sub = server.raw().await;
    sub.send(format!("{QUIET}SUB fan 1\r\n")).await;
    sub.expect_before_pong("").await;
    let publishers = 4;
    let per_publisher = 20_000usize;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let mut publisher = server.raw().await;
        publisher.send(QUIET).await;
        tasks.push(tokio::spawn(async move {
            let mut batch = String::new();
            for i in 0..per_publisher {
                batch.push_str(&format!("PUB fan 16\r\n{p:02}-{i:013}\r\n"));
                if batch.len() > 64 * 1024 {
                    publisher.send(std::mem::take(&mut batch)).await;
                }
            }
            publisher.send(batch).await;
            publisher
        }));
    }
    // Read every message, checking each publisher's sequence.
    let frame_len = "MSG fan 1 16\r\n".len() + 16 + 2;
    let total = publishers * per_publisher;
    let mut next = vec![0usize; publishers];
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < total {
        let n = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncReadExt::read(&mut sub.stream, &mut chunk),
        )
        .await
        .expect("messages keep coming")
        .unwrap();
        assert!(
            n > 0,
            "the subscriber was cut after {got} of {total} messages"
        );
        pending.extend_from_slice(&chunk[..n]);
        let whole = pending.len() / frame_len * frame_len;
        for frame in pending[..whole].chunks(frame_len) {
            let payload = std::str::from_utf8(&frame[frame_len - 18..frame_len - 2]).unwrap();
            let (p, i) = payload.split_once('-').unwrap();
            let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[p], "publisher {p}: out of order or lost");
            next[p] += 1;
            got += 1;
        }
        pending.drain(..whole);
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_deadline_cuts_a_subscriber_that_stops_reading() {
    // A budget too large to be reached: only the write deadline can catch this consumer.
    let server = TestServer::with(Options {
        max_pending: 1 << 30,
        write_deadline: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut stuck = server.raw().await;
    stuck.send(format!("{QUIET}SUB flood 1\r\n")).await;
    stuck.expect_before_pong("").await;
    let cid = stuck.info["client_id"].as_u64().unwrap();
    let mut publisher = server.raw().await;
    publisher.send(QUIET).await;
    let batch = format!("PUB flood 1024\r\n{}\r\n", "x".repeat(1024)).repeat(64);
    // Enough to fill the kernel's socket buffers many times over; stop early once cut.
    for _ in 0..1024 {
        publisher.send(&batch).await;
        if server
            .shared
            .router
            .connections_snapshot()
            .iter()
            .all(|c| c.cid != cid)
        {
            break;
        }
    }
    publisher.expect_before_pong("").await;
    eventually("stuck consumer removed", || {
        server
            .shared
            .router
            .connections_snapshot()
            .iter()
            .all(|c| c.cid != cid)
    })
    .await;
}

#[tokio::test]
async fn a_bad_client_does_not_disturb_a_good_one() {
    let server = TestServer::start().await;
    let mut good = server.raw().await;
    good.send(format!("{QUIET}SUB work 1\r\n")).await;
    good.expect_before_pong("").await;
    let mut bad = server.raw().await;
    bad.send("PUB work 3\r\nab").await;
    good.send("PUB work 2\r\nok\r\n").await;
    good.expect("MSG work 1 2\r\nok\r\n").await;
    bad.send("\x00\x01garbage\r\n").await;
    bad.expect_closed_after("-ERR 'Unknown Protocol Operation'\r\n")
        .await;
    good.send("PUB work 2\r\nok\r\n").await;
    good.expect_before_pong("MSG work 1 2\r\nok\r\n").await;
}

#[tokio::test]
async fn subscriptions_are_pruned_on_unsub_and_disconnect() {
    // Without a system account, whose service imports would keep `$G`'s sublist from emptying.
    let server = TestServer::with(Options {
        no_system_account: true,
        ..Options::default()
    })
    .await;
    let mut a = server.raw().await;
    a.send(QUIET).await;
    for i in 0..100 {
        a.send(format!("SUB a.{i}.x {i}\r\nSUB b.*.{i} q {}\r\n", 1000 + i))
            .await;
    }
    a.expect_before_pong("").await;
    assert_eq!(server.shared.router.subscription_count(), 200);
    for i in 0..100 {
        a.send(format!("UNSUB {i}\r\n")).await;
    }
    a.expect_before_pong("").await;
    assert_eq!(server.shared.router.subscription_count(), 100);
    drop(a);
    eventually("sublist empty", || {
        server.shared.router.global().sublist_is_empty()
    })
    .await;
    assert_eq!(server.shared.router.subscription_count(), 0);
}

#[tokio::test]
async fn shutdown_flushes_queued_messages() {
    let server = TestServer::start().await;
    let mut sub = server.raw().await;
    sub.send(format!("{QUIET}SUB x 1\r\n")).await;
    sub.expect_before_pong("").await;
    let mut publisher = server.raw().await;
    publisher.send(format!("{QUIET}PUB x 3\r\nbye\r\n")).await;
    publisher.expect_before_pong("").await;
    server.shutdown().await;
    sub.expect_closed_after("MSG x 1 3\r\nbye\r\n").await;
}

/// Shutdown waits for the connection tasks; one that panicked is done, not counted forever.
#[tokio::test]
async fn a_panicked_connection_task_is_not_waited_for() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    client.expect_before_pong("").await;
    let panicked = server
        .shared
        .tasks
        .spawn(async { panic!("a connection task panicking") });
    assert!(panicked.await.unwrap_err().is_panic());
    // The client's reader and writer are all that is left.
    assert_eq!(server.shared.tasks.len(), 2);
    let shared = server.shared.clone();
    server.shutdown().await;
    client.expect_closed_after_pings("", true).await;
    assert!(shared.tasks.is_closed() && shared.tasks.is_empty());
}

/// A publisher's cached match for its subject follows every SUB and UNSUB that can match it,
/// wildcards included, and keeps its result through changes that cannot: after each change
/// the next publish reaches exactly the subscriptions whose filters match, on tern and on
/// nats-server 2.15.1 alike.
#[tokio::test]
async fn a_publisher_follows_every_matching_subscription_change() {
    let tern = TestServer::start().await;
    let mut servers = vec![("tern", tern.addr)];
    let scratch = common::process::Scratch::new("cached-matches");
    let log = scratch.0.join("nats-server.log");
    let _reference = common::reference::nats_server().map(|binary| {
        let (process, text) = common::process::Process::start(
            std::process::Command::new(binary)
                .args(["-a", "127.0.0.1", "-p", "-1", "-l"])
                .arg(&log),
            &log,
        );
        let port = common::process::listening_port(&text).expect("nats-server port");
        servers.push(("nats-server", ([127, 0, 0, 1], port).into()));
        process
    });
    // (change on the subscriber's connection, the sids a publish to orders.eu.new reaches)
    let steps: &[(&str, &[&str])] = &[
        ("SUB orders.eu.new 1", &["1"]),
        ("SUB orders.us.new 2", &["1"]),
        ("SUB orders.eu 3", &["1"]),
        ("SUB orders.eu.new.x 4", &["1"]),
        ("SUB orders.*.new 5", &["1", "5"]),
        ("SUB orders.> 6", &["1", "5", "6"]),
        ("SUB *.eu.* 7", &["1", "5", "6", "7"]),
        ("SUB > 8", &["1", "5", "6", "7", "8"]),
        ("SUB orders.eu.* q 9", &["1", "5", "6", "7", "8", "9"]),
        ("UNSUB 2", &["1", "5", "6", "7", "8", "9"]),
        ("UNSUB 6", &["1", "5", "7", "8", "9"]),
        ("UNSUB 1", &["5", "7", "8", "9"]),
        ("UNSUB 8", &["5", "7", "9"]),
        ("UNSUB 5\r\nUNSUB 7\r\nUNSUB 9", &[]),
        ("SUB orders.eu.new 10", &["10"]),
    ];
    for (name, addr) in servers {
        let mut sub = common::Raw::connect(addr).await;
        sub.send(QUIET).await;
        let mut publisher = common::Raw::connect(addr).await;
        publisher.send(QUIET).await;
        // Cached before any subscription exists.
        publisher.send("PUB orders.eu.new 2\r\nhi\r\n").await;
        publisher.expect_before_pong("").await;
        for (change, sids) in steps {
            sub.send(format!("{change}\r\n")).await;
            sub.expect_before_pong("").await;
            publisher.send("PUB orders.eu.new 2\r\nhi\r\n").await;
            publisher.expect_before_pong("").await;
            let got = read_sids(&mut sub, sids.len()).await;
            let mut want: Vec<String> = sids.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(got, want, "{name} after {change:?}");
            sub.expect_before_pong("").await;
        }
    }
}
