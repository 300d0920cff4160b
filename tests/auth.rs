//! Authentication: bcrypt passwords and tokens, nkeys (nonce in INFO, signature in CONNECT),
//! and bad input: wrong, missing and malformed credentials, huge or invalid CONNECT JSON,
//! clients that never send CONNECT, and failed logins that must not slow other clients. The
//! expected bytes were observed from nats-server 2.15.1 with the same configuration.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use tern::Options;

/// The public nkey/seed pair from nats-server's documentation and test suite.
const NKEY: &str = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
const SEED: &str = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";

fn options(text: &str) -> Options {
    let file = tern::config::conf::parse_str(text, Path::new("test.conf")).expect("conf");
    let mut opts = Options::default();
    opts.apply_file(&file, &mut Vec::new()).expect("options");
    opts
}

#[tokio::test]
async fn nkey_users_sign_the_nonce() {
    let server = TestServer::with(options(&format!(
        "authorization {{ users = [ {{nkey: {NKEY}, permissions: {{publish: \"ok\"}}}}, {{user: a, password: a}} ] }}"
    )))
    .await;
    let raw = server.raw().await;
    let nonce = raw.info["nonce"].as_str().expect("nonce in INFO");
    assert_eq!(nonce.len(), 15);
    assert_ne!(server.raw().await.info["nonce"], raw.info["nonce"]);

    let client = async_nats::ConnectOptions::with_nkey(SEED.into())
        .connect(server.url())
        .await
        .expect("nkey connect");
    let mut sub = client.subscribe("ok").await.unwrap();
    client.publish("ok", "signed".into()).await.unwrap();
    let msg = tokio::time::timeout(common::WAIT, futures::StreamExt::next(&mut sub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"signed");

    // Observed: a bad or missing signature, or an unknown nkey, is refused even when a valid
    // user and password come with it.
    for connect in [
        format!("{{\"verbose\":false,\"nkey\":\"{NKEY}\",\"sig\":\"AAAA\"}}"),
        format!("{{\"verbose\":false,\"nkey\":\"{NKEY}\"}}"),
        "{\"verbose\":false,\"nkey\":\"UBAD\",\"sig\":\"AAAA\",\"user\":\"a\",\"pass\":\"a\"}"
            .into(),
    ] {
        let mut raw = server.raw().await;
        raw.send(format!("CONNECT {connect}\r\nPING\r\n")).await;
        raw.expect_closed_after("-ERR 'Authorization Violation'\r\n")
            .await;
    }
    // A signature of another connection's nonce does not work here.
    let key = nkeys::KeyPair::from_seed(SEED).unwrap();
    let sig = key.sign(nonce.as_bytes()).unwrap();
    let sig = {
        use base64::Engine;
        // Unpadded base64url, as clients encode signatures.
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    };
    let mut other = server.raw().await;
    other
        .send(format!(
            "CONNECT {{\"nkey\":\"{NKEY}\",\"sig\":\"{sig}\"}}\r\n"
        ))
        .await;
    other
        .expect_closed_after("-ERR 'Authorization Violation'\r\n")
        .await;
}

#[tokio::test]
async fn bcrypt_passwords_and_tokens() {
    let hash = bcrypt::hash("s3cr3t", 4).unwrap();
    let server = TestServer::with(options(&format!(
        "authorization {{ users = [ {{user: a, password: \"{hash}\"}} ] }}"
    )))
    .await;
    async_nats::ConnectOptions::with_user_and_password("a".into(), "s3cr3t".into())
        .connect(server.url())
        .await
        .expect("bcrypt user");
    let mut raw = server.raw().await;
    raw.send(format!(
        "CONNECT {{\"user\":\"a\",\"pass\":\"{hash}\"}}\r\n"
    ))
    .await;
    raw.expect_closed_after("-ERR 'Authorization Violation'\r\n")
        .await;

    let server = TestServer::with(options(&format!("authorization {{ token: \"{hash}\" }}"))).await;
    async_nats::ConnectOptions::with_token("s3cr3t".into())
        .connect(server.url())
        .await
        .expect("bcrypt token");
    let mut raw = server.raw().await;
    raw.send("CONNECT {\"auth_token\":\"s3cr3\"}\r\n").await;
    raw.expect_closed_after("-ERR 'Authorization Violation'\r\n")
        .await;
}

#[tokio::test]
async fn bad_connects_as_nats_server_answers_them() {
    let server = TestServer::with(options(
        "authorization { user: a, password: a, timeout: 1 }",
    ))
    .await;
    let cases: &[(&[u8], &str)] = &[
        (b"CONNECT {\"user\":\"a\",\r\nPING\r\n", ""),
        (b"CONNECT [1,2]\r\nPING\r\n", ""),
        (b"CONNECT {\"user\":1}\r\nPING\r\n", ""),
        (b"CONNECT\r\nPING\r\n", ""),
        (
            b"CONNECT {\"user\":\"a\"}\r\nPING\r\n",
            "-ERR 'Authorization Violation'\r\n",
        ),
        (
            b"CONNECT {\"user\":\"b\",\"pass\":\"a\"}\r\n",
            "-ERR 'Authorization Violation'\r\n",
        ),
        (
            b"CONNECT {\"user\":\"a\",\"pass\":\"\"}\r\n",
            "-ERR 'Authorization Violation'\r\n",
        ),
        (b"CONNECT {}\r\n", "-ERR 'Authorization Violation'\r\n"),
        // TLS bytes to a plaintext listener.
        (
            b"\x16\x03\x01\x00\x05hello\r\n",
            "-ERR 'Authorization Violation'\r\n",
        ),
    ];
    for (input, expected) in cases {
        let mut raw = server.raw().await;
        raw.send(input).await;
        raw.expect_closed_after(*expected).await;
    }
    // A CONNECT longer than max_control_line, even with good credentials.
    let mut raw = server.raw().await;
    let name = "x".repeat(10_000);
    raw.send(format!(
        "CONNECT {{\"user\":\"a\",\"pass\":\"a\",\"name\":\"{name}\"}}\r\n"
    ))
    .await;
    raw.expect_closed_after("-ERR 'maximum control line exceeded'\r\n")
        .await;
    // Below the limit it is fine.
    let mut raw = server.raw().await;
    let name = "x".repeat(3_000);
    raw.send(format!(
        "CONNECT {{\"user\":\"a\",\"pass\":\"a\",\"name\":\"{name}\"}}\r\n"
    ))
    .await;
    raw.expect_before_pong("+OK\r\n").await;
    // A client that never sends CONNECT.
    let mut raw = server.raw().await;
    let start = Instant::now();
    raw.expect_closed_after("-ERR 'Authentication Timeout'\r\n")
        .await;
    assert!(start.elapsed() >= Duration::from_millis(900));
}

/// Failed logins against a bcrypt password cost the server real work; a stream of them must
/// not hold up other clients' traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_do_not_slow_other_clients() {
    let hash = bcrypt::hash("s3cr3t", 8).unwrap();
    let server = Arc::new(
        TestServer::with(options(&format!(
            "authorization {{ users = [ {{user: a, password: \"{hash}\"}} ] }}"
        )))
        .await,
    );
    let client = async_nats::ConnectOptions::with_user_and_password("a".into(), "s3cr3t".into())
        .connect(server.url())
        .await
        .unwrap();
    // Baseline round trip.
    let start = Instant::now();
    client.flush().await.unwrap();
    let baseline = start.elapsed();

    let attackers: Vec<_> = (0..16)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                for _ in 0..4 {
                    let mut raw = server.raw().await;
                    raw.send("CONNECT {\"user\":\"a\",\"pass\":\"guess\"}\r\n")
                        .await;
                    raw.expect_closed_after("-ERR 'Authorization Violation'\r\n")
                        .await;
                }
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    while !attackers.iter().all(|a| a.is_finished()) {
        let start = Instant::now();
        client.flush().await.unwrap();
        worst = worst.max(start.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for a in attackers {
        a.await.unwrap();
    }
    // One bcrypt verification at cost 8 takes tens of milliseconds in a debug build; a round
    // trip that waited behind the queue of them would take seconds.
    assert!(
        worst < Duration::from_millis(500).max(baseline * 10),
        "round trip took {worst:?} during failed logins (baseline {baseline:?})"
    );
}

/// `allowed_connection_types` (observed from nats-server 2.15.1): case-insensitive, a string
/// or a list; an empty list allows everything; a user whose list lacks `STANDARD` cannot log in
/// on a client connection (`Authorization Violation`, closed).
#[tokio::test]
async fn allowed_connection_types_admit_standard_clients_only() {
    let server = TestServer::with(options(
        r#"authorization { users = [
          {user: s, password: s, allowed_connection_types: ["standard"]}
          {user: t, password: t, allowed_connection_types: "STANDARD"}
          {user: e, password: e, allowed_connection_types: []}
          {user: w, password: w, allowed_connection_types: ["WEBSOCKET", "MQTT"]}
          {user: i, password: i, allowed_connection_types: ["IN_PROCESS", "LEAFNODE_WS"]}
        ] }"#,
    ))
    .await;
    for user in ["s", "t", "e", "w", "i"] {
        let mut raw = server.raw().await;
        raw.send(format!(
            "CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"{user}\"}}\r\nPING\r\n"
        ))
        .await;
        if matches!(user, "w" | "i") {
            raw.expect_closed_after("-ERR 'Authorization Violation'\r\n")
                .await;
        } else {
            raw.expect("PONG\r\n").await;
        }
    }
}
