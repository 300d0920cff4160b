//! Authentication: bcrypt passwords and tokens, nkeys (nonce in INFO, signature in CONNECT),
//! and bad input: wrong, missing and malformed credentials, huge or invalid CONNECT JSON,
//! clients that never send CONNECT, and failed logins that must not slow other clients. The
//! expected bytes were observed from nats-server 2.15.1 with the same configuration.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    // A client that never sends CONNECT is cut at the authorization timeout: not before (the
    // clock moved to just short of it, on this runtime, which the server shares), then at once.
    let server = TestServer::with(options(
        "authorization { user: a, password: a, timeout: 60 }",
    ))
    .await;
    let mut raw = server.raw().await;
    common::jump(Duration::from_secs(59)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // Only the server's first PING so far.
    let mut got = [0u8; 64];
    let read = raw.stream.try_read(&mut got).unwrap_or(0);
    assert_eq!(
        String::from_utf8_lossy(&got[..read]),
        "PING\r\n",
        "cut before the authorization timeout"
    );
    common::jump(Duration::from_secs(2)).await;
    raw.expect_closed_after("-ERR 'Authentication Timeout'\r\n")
        .await;
}

/// Failed logins against a bcrypt password cost the server real work; a stream of them must
/// not hold up other clients' traffic: a client completes its round trips while bcrypt checks
/// are in flight the whole time. Work is counted, not timed; the timeout only stops a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_do_not_slow_other_clients() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
    client.flush().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..16)
        .map(|_| {
            let (server, stop, failed) = (server.clone(), stop.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let mut raw = server.raw().await;
                    raw.send("CONNECT {\"user\":\"a\",\"pass\":\"guess\"}\r\n")
                        .await;
                    raw.expect_closed_after("-ERR 'Authorization Violation'\r\n")
                        .await;
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // Once the first refusals are in, bcrypt checks are running.
    common::eventually("failed logins under way", || {
        failed.load(Ordering::SeqCst) >= 2
    })
    .await;
    let round_trips = async {
        for _ in 0..50 {
            client.flush().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), round_trips)
        .await
        .expect("round trips completed during failed logins");
    // The attackers were still at it: none had stopped or failed.
    assert!(attackers.iter().all(|a| !a.is_finished()));
    stop.store(true, Ordering::SeqCst);
    for a in attackers {
        a.await.unwrap();
    }
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
