//! TLS on the client listener, with certificates generated at test time (rcgen): async-nats over
//! TLS, mutual TLS accepted and rejected, handshake_first, plaintext and stalled clients, expired
//! and untrusted certificates, and the key formats nats-server accepts. The wire behaviour on
//! failures (closed without a byte; a stall cut at `tls.timeout`) was observed from nats-server
//! 2.15.1 with `--tls` and raw sockets.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::pki::{certs, Pki};
use common::TestServer;
use rustls::pki_types::ServerName;
use tern::config::TlsOptions;
use tern::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one line from a plain socket (the INFO before the upgrade).
async fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        let n = tokio::time::timeout(common::WAIT, stream.read(&mut byte))
            .await
            .expect("line in time")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&line));
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

/// Everything the server sends until it closes the connection (panics if it does not).
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(common::WAIT, stream.read(&mut chunk))
            .await
            .expect("closed in time")
        {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Connects, does the TLS handshake at once (`handshake_first`) and reads the INFO sent over it.
async fn tls_then_info(
    pki: &Pki,
    addr: std::net::SocketAddr,
) -> (tokio_rustls::client::TlsStream<TcpStream>, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = pki
        .connector(None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS before anything");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(common::WAIT, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let info = String::from_utf8_lossy(&buf[..n]).into_owned();
    (stream, info)
}

/// A delay that real time cannot reach while a test runs: the tests move tokio's clock past it
/// (`common::jump`), so that what happens at it is checked without waiting or timing.
const LONG: Duration = Duration::from_secs(60);

/// Whether the server has neither written nor closed `tcp`, once the server's tasks have had
/// their turn (the tests and the server share one current-thread runtime).
async fn says_nothing_yet(tcp: &TcpStream) -> bool {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let mut byte = [0u8; 1];
    matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Connects once the server is registered, checks that nothing arrives before `delay`, then
/// moves the clock past it (the `handshake_first` fallback).
async fn connect_and_wait_out(server: &TestServer, delay: Duration) -> TcpStream {
    let before = server.shared.router.connection_count();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    common::eventually("the connection registered", || {
        server.shared.router.connection_count() == before + 1
    })
    .await;
    common::jump(delay - Duration::from_secs(1)).await;
    assert!(
        says_nothing_yet(&tcp).await,
        "INFO before the fallback delay"
    );
    common::jump(Duration::from_secs(2)).await;
    tcp
}

/// Connects, reads the plaintext INFO and upgrades.
async fn upgrade(
    server: &TestServer,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut tcp = TcpStream::connect(server.addr).await?;
    let info = read_line(&mut tcp).await;
    assert!(info.contains("\"tls_required\":true"), "{info}");
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// After the handshake, a session works: PING gets PONG (the server may first send a PING of
/// its own or nothing at all).
async fn ping_pong<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S) {
    stream
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.windows(6).any(|w| w == b"PONG\r\n") {
        let n = tokio::time::timeout(common::WAIT, stream.read(&mut chunk))
            .await
            .expect("PONG in time")
            .expect("read");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn async_nats_over_tls() {
    let pki = Pki::new("tls-async");
    let server = TestServer::with(pki.options(false, false)).await;
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .require_tls(true)
        .connect(format!("tls://localhost:{}", server.addr.port()))
        .await
        .expect("TLS connect");
    let mut sub = client.subscribe("greet").await.unwrap();
    client.publish("greet", "hello".into()).await.unwrap();
    client.flush().await.unwrap();
    let msg = tokio::time::timeout(common::WAIT, futures::StreamExt::next(&mut sub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&msg.payload[..], b"hello");
    // Large payloads cross many TLS records.
    let big = vec![b'x'; 200_000];
    client.publish("greet", big.clone().into()).await.unwrap();
    let msg = tokio::time::timeout(common::WAIT, futures::StreamExt::next(&mut sub))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.payload.len(), big.len());
}

#[tokio::test]
async fn mutual_tls_accepts_a_trusted_certificate_only() {
    let pki = Pki::new("tls-mutual");
    let server = TestServer::with(pki.options(true, false)).await;
    let info = {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        read_line(&mut tcp).await
    };
    assert!(
        info.contains("\"tls_required\":true,\"tls_verify\":true"),
        "{info}"
    );

    let good = pki.connector(Some((&pki.client_cert, &pki.client_key)));
    let mut stream = upgrade(&server, &good).await.expect("handshake");
    ping_pong(&mut stream).await;

    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .add_client_certificate(pki.client_cert.clone(), pki.client_key.clone())
        .require_tls(true)
        .connect(format!("tls://localhost:{}", server.addr.port()))
        .await
        .expect("async-nats with a client certificate");
    client.flush().await.unwrap();

    // No certificate, an untrusted one, an expired one: the handshake fails (TLS 1.3 reports
    // the rejection on the first read) and the connection closes without a NATS byte.
    for identity in [
        None,
        Some((&pki.rogue_cert, &pki.rogue_key)),
        Some((&pki.expired_cert, &pki.expired_key)),
    ] {
        let connector = pki.connector(identity.map(|(c, k)| (c.as_path(), k.as_path())));
        if let Ok(mut stream) = upgrade(&server, &connector).await {
            let _ = stream.write_all(b"PING\r\n").await;
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(common::WAIT, stream.read(&mut buf))
                .await
                .expect("rejected in time");
            assert!(matches!(read, Ok(0) | Err(_)), "{identity:?} was accepted");
        }
    }
    // The raw session and async-nats; none of the rejected ones.
    assert_eq!(server.shared.router.connection_count(), 2);
}

#[tokio::test]
async fn handshake_first_sends_info_over_tls() {
    let pki = Pki::new("tls-first");
    let server = TestServer::with(pki.options(false, true)).await;
    let (mut stream, info) = tls_then_info(&pki, server.addr).await;
    assert!(info.starts_with("INFO {") && info.contains("\"tls_required\":true"));
    ping_pong(&mut stream).await;

    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .tls_first()
        .connect(format!("tls://localhost:{}", server.addr.port()))
        .await
        .expect("async-nats tls_first");
    client.flush().await.unwrap();
}

#[tokio::test]
async fn plaintext_client_is_closed_without_a_byte() {
    let pki = Pki::new("tls-plain");
    let server = TestServer::with(pki.options(false, false)).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let info = read_line(&mut tcp).await;
    assert!(info.starts_with("INFO ") && info.contains("\"tls_required\":true"));
    tcp.write_all(b"CONNECT {}\r\nPING\r\n").await.unwrap();
    assert_eq!(until_closed(&mut tcp).await, b"");

    // A client that never starts the handshake is cut at tls.timeout, silently: still open
    // just short of it, closed once the clock passes it (moved, not waited for).
    let server = TestServer::with(pki.options_with_timeout(false, false, LONG)).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    read_line(&mut tcp).await;
    common::jump(LONG - Duration::from_secs(1)).await;
    assert!(says_nothing_yet(&tcp).await, "cut before tls.timeout");
    assert_eq!(server.shared.router.connection_count(), 1);
    common::jump(Duration::from_secs(2)).await;
    assert_eq!(until_closed(&mut tcp).await, b"");

    // handshake_first: a plaintext client gets nothing at all.
    let server = TestServer::with(pki.options(false, true)).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"CONNECT {}\r\n").await.unwrap();
    assert_eq!(until_closed(&mut tcp).await, b"");
    assert_eq!(server.shared.router.connection_count(), 0);
}

#[tokio::test]
async fn garbage_before_and_after_the_handshake() {
    let pki = Pki::new("tls-garbage");
    let server = TestServer::with(pki.options(false, false)).await;
    // A TLS record header followed by junk.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    read_line(&mut tcp).await;
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 6, 7])
        .await
        .unwrap();
    let _ = until_closed(&mut tcp).await;
    // Garbage inside the TLS session is a protocol error like any other.
    let mut stream = upgrade(&server, &pki.connector(None)).await.unwrap();
    stream.write_all(b"FOO BAR\r\n").await.unwrap();
    let got = until_closed(&mut stream).await;
    assert!(String::from_utf8_lossy(&got).ends_with("-ERR 'Unknown Protocol Operation'\r\n"));
    // Raw bytes that are not TLS records after the handshake: the session just ends.
    let mut stream = upgrade(&server, &pki.connector(None)).await.unwrap();
    ping_pong(&mut stream).await;
    stream
        .get_mut()
        .0
        .write_all(b"\x17\x03\x03\x00\x10garbagegarbage!!")
        .await
        .unwrap();
    let _ = until_closed(&mut stream).await;
    // The server is still fine.
    let mut stream = upgrade(&server, &pki.connector(None)).await.unwrap();
    ping_pong(&mut stream).await;
}

/// Observed with nats-server 2.15.1: under `verify_and_map` a certificate whose email SAN or
/// subject (in either attribute order) is a configured user gets in as that user, permissions
/// and all; any other verified certificate gets `Authorization Violation` and a close.
#[tokio::test]
async fn verify_and_map_names_the_user_by_certificate() {
    let pki = Pki::new("tls-map");
    for user in ["alice@example.com", "CN=alice,O=tern", "O=tern,CN=alice"] {
        let mut opts = pki.options(true, false);
        if let Some(tls) = opts.tls.as_mut() {
            tls.verify = false;
            tls.verify_and_map = true;
        }
        opts.users = vec![tern::config::User {
            name: user.into(),
            permissions: Some(Arc::new(tern::engine::permissions::Permissions {
                publish: Some(tern::engine::permissions::SubjectPermission {
                    allow: Some(vec![tern::engine::permissions::Entry::parse("ok").unwrap()]),
                    deny: vec![],
                }),
                ..Default::default()
            })),
            ..Default::default()
        }];
        let server = TestServer::with(opts).await;
        let alice = pki.connector(Some((&pki.client_cert, &pki.client_key)));
        let mut stream = upgrade(&server, &alice).await.unwrap();
        stream
            .write_all(b"CONNECT {\"verbose\":false}\r\nPUB x 0\r\n\r\nPING\r\n")
            .await
            .unwrap();
        let want = b"-ERR 'Permissions Violation for Publish to \"x\"'\r\nPONG\r\n";
        let mut got = vec![0u8; want.len()];
        tokio::time::timeout(common::WAIT, stream.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "{user}"
        );

        // The expired-but-otherwise-fine path is covered above; here a valid certificate for
        // another name, even with a password in CONNECT.
        let server_cert_as_client = pki.connector(Some((&pki.server_cert, &pki.server_key)));
        let mut stream = upgrade(&server, &server_cert_as_client).await.unwrap();
        stream
            .write_all(b"CONNECT {\"user\":\"alice@example.com\",\"pass\":\"x\"}\r\n")
            .await
            .unwrap();
        assert_eq!(
            until_closed(&mut stream).await,
            b"-ERR 'Authorization Violation'\r\n"
        );
    }
}

#[test]
fn key_formats_and_startup_errors() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let tls = |cert: &Path, key: &Path| TlsOptions {
        cert_file: Some(cert.to_path_buf()),
        key_file: Some(key.to_path_buf()),
        ..Default::default()
    };
    // SEC1 EC and PKCS#1 RSA keys, besides rcgen's PKCS#8.
    let sec1 = tls(&fixtures.join("ec.pem"), &fixtures.join("ec-sec1.key"));
    tern::security::tls::server_config(&sec1).expect("SEC1");
    let pkcs1 = tls(&fixtures.join("rsa.pem"), &fixtures.join("rsa-pkcs1.key"));
    tern::security::tls::server_config(&pkcs1).expect("PKCS#1");
    let pki = Pki::new("tls-keys");
    tern::security::tls::server_config(&tls(&pki.server_cert, &pki.server_key)).expect("PKCS#8");
    // nats-server's messages for a missing file and a mismatched key.
    let missing = tls(&pki.dir.0.join("nope.pem"), &pki.server_key);
    let err = tern::security::tls::server_config(&missing).unwrap_err();
    assert!(
        err.starts_with("error parsing X509 certificate/key pair: open "),
        "{err}"
    );
    assert!(
        err.ends_with("nope.pem: no such file or directory"),
        "{err}"
    );
    let mismatched = tls(&pki.server_cert, &pki.client_key);
    assert_eq!(
        tern::security::tls::server_config(&mismatched).unwrap_err(),
        "error parsing X509 certificate/key pair: tls: private key does not match public key"
    );
    let not_pem = tls(&pki.server_cert, &pki.server_cert);
    assert!(tern::security::tls::server_config(&not_pem).is_err());
}

/// `allow_non_tls` (observed from nats-server 2.15.1): INFO carries `"tls_available":true` in
/// place of `tls_required`, and the client's first byte decides. A TLS handshake record starts
/// TLS (no second INFO); anything else is plaintext, even when it comes a byte at a time; a
/// first record that only starts like a handshake closes the connection without a byte.
#[tokio::test]
async fn allow_non_tls_lets_the_first_byte_decide() {
    let pki = Pki::new("tls-mixed");
    let mut opts = pki.options(false, false);
    opts.allow_non_tls = true;
    let server = TestServer::with(opts).await;

    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    let info = read_line(&mut plain).await;
    assert!(
        info.contains("\"headers\":true,\"tls_available\":true,\"max_payload\":"),
        "{info}"
    );
    assert!(!info.contains("tls_required"), "{info}");
    // One byte on its own: with no delay on the socket it is in the server's receive queue
    // when the write returns, and yielding lets the server (on this runtime) peek at it alone.
    plain.set_nodelay(true).unwrap();
    plain.write_all(b"C").await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    plain
        .write_all(b"ONNECT {\"verbose\":true}\r\nPING\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 11];
    tokio::time::timeout(common::WAIT, plain.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"+OK\r\nPONG\r\n");

    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    assert!(read_line(&mut tcp).await.contains("tls_available"));
    let mut tls = pki
        .connector(None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake after a tls_available INFO");
    tls.write_all(b"CONNECT {\"verbose\":true}\r\nPING\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 11];
    tokio::time::timeout(common::WAIT, tls.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"+OK\r\nPONG\r\n");

    let mut bad = TcpStream::connect(server.addr).await.unwrap();
    read_line(&mut bad).await;
    bad.write_all(b"\x16garbage\r\n").await.unwrap();
    assert_eq!(until_closed(&mut bad).await, b"");

    let client = async_nats::connect(server.url()).await.expect("plaintext");
    client.flush().await.unwrap();
    assert_eq!(server.shared.router.connection_count(), 3);
}

/// `handshake_first: "300ms"` (observed from nats-server 2.15.1): a client that sends nothing
/// gets the plaintext INFO (`tls_required`) once the delay is over, and the usual upgrade; a
/// client that starts TLS at once gets INFO over TLS; any byte in time means TLS first, so a
/// plaintext CONNECT closes the connection without a byte.
#[tokio::test]
async fn handshake_first_falls_back_to_plaintext_info() {
    let pki = Pki::new("tls-fallback");
    let mut opts = pki.options(false, true);
    if let Some(tls) = opts.tls.as_mut() {
        tls.handshake_first_fallback = Some(LONG);
    }
    let server = TestServer::with(opts).await;

    let mut tcp = connect_and_wait_out(&server, LONG).await;
    let info = read_line(&mut tcp).await;
    assert!(info.contains("\"tls_required\":true"), "{info}");
    let mut stream = pki
        .connector(None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("upgrade after the fallback INFO");
    ping_pong(&mut stream).await;

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut stream = pki
        .connector(None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS first");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(common::WAIT, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("INFO {"));
    ping_pong(&mut stream).await;

    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(b"CONNECT {}\r\nPING\r\n").await.unwrap();
    assert_eq!(until_closed(&mut plain).await, b"");

    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .tls_first()
        .connect(format!("tls://localhost:{}", server.addr.port()))
        .await
        .expect("async-nats tls_first");
    client.flush().await.unwrap();
    // async-nats waits for the INFO in real time (its own timers run on this clock too), so
    // with a delay it outlasts.
    let mut opts = pki.options(false, true);
    if let Some(tls) = opts.tls.as_mut() {
        tls.handshake_first_fallback = Some(Duration::from_millis(300));
    }
    let server = TestServer::with(opts).await;
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.ca.clone())
        .require_tls(true)
        .connect(format!("tls://localhost:{}", server.addr.port()))
        .await
        .expect("async-nats without tls_first, after the fallback");
    client.flush().await.unwrap();
}

/// `max_connections` is checked before any TLS, as nats-server 2.15.1 does: the refused client
/// gets the plaintext INFO and `-ERR 'maximum connections exceeded'`, or the `-ERR` alone when
/// the handshake was to come first.
#[tokio::test]
async fn max_connections_is_checked_before_the_handshake() {
    let pki = Pki::new("tls-maxconn");
    for handshake_first in [false, true] {
        let mut opts = pki.options(false, handshake_first);
        opts.max_connections = 1;
        let server = TestServer::with(opts).await;
        let mut first = if handshake_first {
            let tcp = TcpStream::connect(server.addr).await.unwrap();
            pki.connector(None)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap()
        } else {
            upgrade(&server, &pki.connector(None)).await.unwrap()
        };
        ping_pong(&mut first).await;

        let mut refused = TcpStream::connect(server.addr).await.unwrap();
        let got = String::from_utf8(until_closed(&mut refused).await).unwrap();
        if handshake_first {
            assert_eq!(got, "-ERR 'maximum connections exceeded'\r\n");
        } else {
            let (info, rest) = got.split_once("\r\n").unwrap();
            assert!(info.starts_with("INFO {") && info.contains("\"tls_required\":true"));
            assert_eq!(rest, "-ERR 'maximum connections exceeded'\r\n");
        }
        assert_eq!(server.shared.router.connection_count(), 1);
    }
}

/// `handshake_first` with `allow_non_tls` (observed from nats-server 2.15.1): the INFO that
/// goes over TLS says both `tls_required` and `tls_available`; with a fallback delay, a silent
/// client gets the plaintext `tls_available` INFO and may then stay in plaintext.
#[tokio::test]
async fn handshake_first_with_allow_non_tls() {
    let pki = Pki::new("tls-first-mixed");
    let mut opts = pki.options(false, true);
    opts.allow_non_tls = true;
    if let Some(tls) = opts.tls.as_mut() {
        tls.handshake_first_fallback = Some(LONG);
    }
    let server = TestServer::with(opts).await;

    let (_stream, info) = tls_then_info(&pki, server.addr).await;
    assert!(
        info.contains("\"headers\":true,\"tls_required\":true,\"tls_available\":true,"),
        "{info}"
    );

    let mut plain = connect_and_wait_out(&server, LONG).await;
    let info = read_line(&mut plain).await;
    assert!(
        info.contains("\"headers\":true,\"tls_available\":true,\"max_payload\":"),
        "{info}"
    );
    plain
        .write_all(b"CONNECT {\"verbose\":true}\r\nPING\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 11];
    tokio::time::timeout(common::WAIT, plain.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"+OK\r\nPONG\r\n");
}

/// `pinned_certs` (observed from nats-server 2.15.1): the SHA-256 of the client certificate's
/// SubjectPublicKeyInfo must be listed; otherwise the handshake completes and the connection
/// closes without a NATS byte (`TLS handshake error: certificate not pinned`).
#[tokio::test]
async fn pinned_certs_admit_listed_keys_only() {
    let pki = Pki::new("tls-pinned");
    let client_key_id = tern::security::tls::pinned_key_id(&certs(&pki.client_cert)[0]).unwrap();
    for (pins, admitted) in [
        (vec![client_key_id.to_uppercase()], true),
        (vec!["00".repeat(32)], false),
    ] {
        let mut opts = pki.options(true, false);
        if let Some(tls) = opts.tls.as_mut() {
            tls.pinned_certs = pins.iter().map(|p| p.to_lowercase()).collect();
        }
        let server = TestServer::with(opts).await;
        let connector = pki.connector(Some((&pki.client_cert, &pki.client_key)));
        let mut stream = upgrade(&server, &connector).await.expect("handshake");
        if admitted {
            ping_pong(&mut stream).await;
        } else {
            let _ = stream.write_all(b"CONNECT {}\r\nPING\r\n").await;
            assert_eq!(until_closed(&mut stream).await, b"");
            common::eventually("refused connection forgotten", || {
                server.shared.router.connection_count() == 0
            })
            .await;
        }
    }
}

/// `-ms`/`https_port`: the monitor over TLS with the client certificate (no client certificate
/// asked for, even with `verify`), `https://` in the ports file, Go's answer to plain HTTP, and
/// nats-server's refusals (both ports; HTTPS without a certificate).
#[tokio::test]
async fn https_monitoring_uses_the_client_certificate() {
    let pki = Pki::new("tls-https-monitor");
    let mut opts = pki.options(true, false);
    opts.https_port = -1;
    let server = TestServer::with(opts).await;
    let monitor = server.monitor.expect("monitor bound");
    assert!(server.shared.monitor_https);
    let ports: serde_json::Value =
        serde_json::from_str(&tern::server::ports_json(&server.shared)).unwrap();
    assert_eq!(
        ports["monitoring"][0],
        format!("https://127.0.0.1:{}", monitor.port())
    );
    assert!(ports["nats"][0].as_str().unwrap().starts_with("tls://"));

    // A real HTTPS GET, trusting the test CA, presenting no certificate.
    let tcp = TcpStream::connect(monitor).await.unwrap();
    let mut tls = pki
        .connector(None)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("HTTPS handshake");
    tls.write_all(b"GET /varz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = String::from_utf8(until_closed(&mut tls).await).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let varz: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(varz["https_port"], -1);
    assert_eq!(varz["http_port"], 0);
    assert_eq!(varz["tls_required"], true);
    assert_eq!(varz["tls_verify"], true);

    // Plain HTTP on the HTTPS port gets what Go's server (nats-server's) answers.
    let mut plain = TcpStream::connect(monitor).await.unwrap();
    plain
        .write_all(b"GET /varz HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        until_closed(&mut plain).await,
        b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    );
    server.shutdown().await;

    // nats-server's start-up refusals.
    let mut both = pki.options(false, false);
    both.http_port = -1;
    both.https_port = -1;
    let err = tern::Server::bind(both).await.err().expect("refused");
    assert_eq!(
        err.to_string(),
        "Can't start monitoring: can't specify both HTTP (-1) and HTTPs (-1) ports"
    );
    let no_cert = Options {
        https_port: -1,
        ..Default::default()
    };
    let err = tern::Server::bind(no_cert).await.err().expect("refused");
    assert_eq!(
        err.to_string(),
        "Can't start monitoring: TLS cert and key required for HTTPS"
    );
}
