//! Operator mode (decentralized auth), side by side with nats-server 2.15.1: the same
//! operator, accounts and users (made here, see `common::jwt`) against both servers, and the
//! same client-visible outcome from each: who gets in, what they may do, when they are cut.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::cluster::{cluster_node, with_free_ports};
use common::jwt::{account_jwt, creds, memory_resolver_config, now, operator_jwt, user_jwt};
use common::process::{http_get, json_shape, reference_server, start_with_ports, Process, Scratch};
use nkeys::KeyPair;
use serde_json::json;

/// An operator with a system account and two accounts: A (with a plain and a scoped signing
/// key, a revoked user, a public service and a private stream) and B (importing both).
struct World {
    operator: KeyPair,
    a: KeyPair,
    b: KeyPair,
    signing: KeyPair,
    scoped: KeyPair,
    revoked: KeyPair,
    config: String,
}

impl World {
    fn new() -> World {
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let (a, b) = (KeyPair::new_account(), KeyPair::new_account());
        let (signing, scoped) = (KeyPair::new_account(), KeyPair::new_account());
        let revoked = KeyPair::new_user();
        let activation = common::jwt::sign(
            json!({"sub": b.public_key(), "name": "news",
                   "nats": {"subject": "news.>", "kind": "stream", "type": "activation",
                            "version": 2}}),
            &a,
        );
        // An activation "for A" signed by a key that is not A's: it must open nothing.
        let forged = common::jwt::sign(
            json!({"sub": b.public_key(), "name": "forged",
                   "nats": {"subject": "forged.>", "kind": "stream", "type": "activation",
                            "issuer_account": a.public_key(), "version": 2}}),
            &KeyPair::new_account(),
        );
        let a_jwt = account_jwt(
            &operator,
            &a,
            "A",
            json!({
                "signing_keys": [signing.public_key(), {
                    "kind": "user_scope", "key": scoped.public_key(), "role": "r",
                    "template": {"pub": {"allow": ["scoped.>"]}, "sub": {}, "subs": -1,
                                 "data": -1, "payload": -1}}],
                "revocations": {revoked.public_key(): now() + 60},
                "exports": [
                    {"name": "svc", "subject": "svc.>", "type": "service"},
                    {"name": "news", "subject": "news.>", "type": "stream", "token_req": true},
                    {"name": "forged", "subject": "forged.>", "type": "stream", "token_req": true}
                ]
            }),
        );
        let b_jwt = account_jwt(
            &operator,
            &b,
            "B",
            json!({"default_permissions": {"pub": {"deny": ["nope.>"]}},
                   "imports": [
                {"name": "svc", "subject": "svc.>", "account": a.public_key(), "type": "service"},
                {"name": "news", "subject": "news.>", "account": a.public_key(), "type": "stream",
                 "token": activation},
                {"name": "nope", "subject": "secret.>", "account": a.public_key(), "type": "stream"},
                {"name": "forged", "subject": "forged.>", "account": a.public_key(), "type": "stream",
                 "token": forged}
            ]}),
        );
        let config = memory_resolver_config(&operator, &system, &[(&a, &a_jwt), (&b, &b_jwt)]);
        World {
            operator,
            a,
            b,
            signing,
            scoped,
            revoked,
            config,
        }
    }
}

/// tern and nats-server 2.15.1, each started on `config`.
struct Pair {
    servers: Vec<(&'static str, Process, String)>,
    /// Each server's monitor address, in the same order.
    monitors: Vec<String>,
    _scratch: Scratch,
}

fn start_pair(name: &str, config: &str) -> Pair {
    let scratch = Scratch::new(name);
    let file = scratch.0.join("op.conf");
    std::fs::write(&file, config).unwrap();
    let mut servers = Vec::new();
    let mut binaries: Vec<(&str, PathBuf)> = vec![("tern", env!("CARGO_BIN_EXE_tern").into())];
    if let Some(reference) = reference_server() {
        binaries.push(("nats-server", reference));
    }
    let mut monitors = Vec::new();
    for (who, binary) in binaries {
        let (process, addr, monitor) = start_with_ports(&binary, &file, &scratch.0.join(who));
        servers.push((who, process, addr));
        monitors.push(monitor);
    }
    Pair {
        servers,
        monitors,
        _scratch: scratch,
    }
}

/// A raw session: CONNECT with `jwt` (signing the nonce with `key` when given), then
/// `script`, then PING; every line the server sends until PONG or the connection closes.
fn session(addr: &str, jwt: Option<&str>, key: Option<&KeyPair>, script: &str) -> Vec<String> {
    talk(addr, jwt, key, script, true, Duration::from_secs(5))
}

/// As `session`, reading until the server closes the connection (or `wait` passes) when
/// `until_pong` is false. The servers' own PINGs come when their timers say and are left out.
fn talk(
    addr: &str,
    jwt: Option<&str>,
    key: Option<&KeyPair>,
    script: &str,
    until_pong: bool,
    wait: Duration,
) -> Vec<String> {
    let (mut reader, mut writer, info) = open(addr, wait);
    let mut connect = json!({"verbose": false, "pedantic": false, "headers": true});
    if let Some(jwt) = jwt {
        connect["jwt"] = json!(jwt);
    }
    if let (Some(key), Some(nonce)) = (key, info["nonce"].as_str()) {
        connect["sig"] = json!(URL_SAFE_NO_PAD.encode(key.sign(nonce.as_bytes()).unwrap()));
    }
    let _ = writer.write_all(format!("CONNECT {connect}\r\n{script}PING\r\n").as_bytes());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim_end() == "PING" => {}
            Ok(_) => {
                let line = line.trim_end().to_string();
                let done = until_pong && line == "PONG";
                lines.push(line);
                if done {
                    break;
                }
            }
        }
    }
    lines
}

/// Connects to `addr`: the reading half (reads give up after `wait`), the writing half, and
/// INFO.
fn open(addr: &str, wait: Duration) -> (BufReader<TcpStream>, TcpStream, serde_json::Value) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    let info = serde_json::from_str(info.trim_start_matches("INFO ").trim()).unwrap();
    (reader, stream, info)
}

/// Logs in as the user of `jwt` (the nonce signed with `key`; `more` merged into CONNECT) and
/// waits for the PONG that says it got in; the connection's halves, still open.
fn logged_in(
    addr: &str,
    jwt: &str,
    key: &KeyPair,
    more: serde_json::Value,
) -> (BufReader<TcpStream>, TcpStream) {
    try_login(addr, jwt, key, more).unwrap_or_else(|line| panic!("{addr}: not logged in: {line}"))
}

/// As [`logged_in`], or the line the server answered instead of PONG.
fn try_login(
    addr: &str,
    jwt: &str,
    key: &KeyPair,
    more: serde_json::Value,
) -> Result<(BufReader<TcpStream>, TcpStream), String> {
    let (mut reader, mut writer, info) = open(addr, Duration::from_secs(5));
    let nonce = info["nonce"].as_str().unwrap();
    let sig = URL_SAFE_NO_PAD.encode(key.sign(nonce.as_bytes()).unwrap());
    let mut connect = json!({"verbose": false, "jwt": jwt, "sig": sig});
    if let (Some(connect), Some(more)) = (connect.as_object_mut(), more.as_object()) {
        connect.extend(more.clone());
    }
    writer
        .write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
        .unwrap();
    let mut pong = String::new();
    reader.read_line(&mut pong).unwrap();
    match pong.as_str() {
        "PONG\r\n" => Ok((reader, writer)),
        other => Err(other.trim_end().to_string()),
    }
}

/// Runs `check` against each server and asserts they answered alike; returns tern's answer.
fn same<T: PartialEq + std::fmt::Debug>(pair: &Pair, what: &str, check: impl Fn(&str) -> T) -> T {
    let mut answers = pair
        .servers
        .iter()
        .map(|(who, _, addr)| (*who, check(addr)));
    let (_, tern) = answers.next().unwrap();
    for (who, answer) in answers {
        assert_eq!(tern, answer, "{what}: tern and {who} differ");
    }
    tern
}

const VIOLATION: &str = "-ERR 'Authorization Violation'";

/// A connect-time window of twenty minutes around now in a zone `offset` seconds ahead of UTC
/// (kept within the day).
fn around(offset: i64) -> serde_json::Value {
    let day = (now() + offset).rem_euclid(86_400);
    let clock = |s: i64| format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    json!({"start": clock((day - 600).max(0)), "end": clock((day + 600).min(86_399))})
}

#[test]
fn who_gets_in_as_nats_server_decides() {
    let world = World::new();
    let pair = start_pair("operator-auth", &world.config);
    let user = KeyPair::new_user();
    let plain = |extra, claims| user_jwt(&world.a, &user, extra, claims);
    let unknown_account = KeyPair::new_account();
    let cases: Vec<(&str, String, Option<&KeyPair>, bool)> = vec![
        ("good user", plain(json!({}), json!({})), Some(&user), true),
        ("no signature", plain(json!({}), json!({})), None, false),
        (
            "nonce signed by another key",
            plain(json!({}), json!({})),
            Some(&world.revoked),
            false,
        ),
        (
            "bearer token without signature",
            plain(json!({"bearer_token": true}), json!({})),
            None,
            true,
        ),
        (
            "expired",
            plain(json!({}), json!({"exp": now() - 10})),
            Some(&user),
            false,
        ),
        (
            "not yet valid",
            plain(json!({}), json!({"nbf": now() + 3600})),
            Some(&user),
            false,
        ),
        (
            "expires later",
            plain(json!({}), json!({"exp": now() + 3600})),
            Some(&user),
            true,
        ),
        (
            "account not known",
            user_jwt(&unknown_account, &user, json!({}), json!({})),
            Some(&user),
            false,
        ),
        (
            "signed by a signing key",
            user_jwt(
                &world.signing,
                &user,
                json!({"issuer_account": world.a.public_key()}),
                json!({}),
            ),
            Some(&user),
            true,
        ),
        (
            "signing key of another account",
            user_jwt(
                &world.signing,
                &user,
                json!({"issuer_account": world.b.public_key()}),
                json!({}),
            ),
            Some(&user),
            false,
        ),
        (
            "revoked",
            user_jwt(&world.a, &world.revoked, json!({}), json!({})),
            Some(&world.revoked),
            false,
        ),
        (
            "allowed network",
            plain(json!({"src": ["127.0.0.0/8"]}), json!({})),
            Some(&user),
            true,
        ),
        (
            "other network",
            plain(json!({"src": ["10.0.0.0/8"]}), json!({})),
            Some(&user),
            false,
        ),
        (
            "websocket only",
            plain(
                json!({"allowed_connection_types": ["WEBSOCKET"]}),
                json!({}),
            ),
            Some(&user),
            false,
        ),
        (
            "standard allowed",
            plain(json!({"allowed_connection_types": ["STANDARD"]}), json!({})),
            Some(&user),
            true,
        ),
        (
            "inside its hours",
            plain(
                json!({"times": [{"start": "00:00:00", "end": "23:59:59"}]}),
                json!({}),
            ),
            Some(&user),
            true,
        ),
        (
            "inside its hours in Tokyo",
            plain(
                json!({"times": [around(9 * 3600)], "times_location": "Asia/Tokyo"}),
                json!({}),
            ),
            Some(&user),
            true,
        ),
        (
            "inside its hours in UTC, not in Tokyo",
            plain(
                json!({"times": [around(0)], "times_location": "Asia/Tokyo"}),
                json!({}),
            ),
            Some(&user),
            false,
        ),
        (
            "hours in an unknown zone",
            plain(
                json!({"times": [{"start": "00:00:00", "end": "23:59:59"}],
                       "times_location": "Nowhere/Atlantis"}),
                json!({}),
            ),
            Some(&user),
            false,
        ),
        (
            "garbage",
            "eyJhbGciOiJub25lIn0.e30.AAAA".to_string(),
            Some(&user),
            false,
        ),
        (
            "operator JWT as a user",
            operator_jwt(&world.operator, ""),
            Some(&user),
            false,
        ),
    ];
    for (what, jwt, key, admitted) in &cases {
        let lines = same(&pair, what, |addr| session(addr, Some(jwt), *key, ""));
        let want = if *admitted { "PONG" } else { VIOLATION };
        assert_eq!(
            lines.last().map(String::as_str),
            Some(want),
            "{what}: {lines:?}"
        );
    }
    let lines = same(&pair, "no JWT", |addr| session(addr, None, None, ""));
    assert_eq!(lines, vec![VIOLATION]);
}

#[test]
fn what_users_may_do_comes_from_their_jwts() {
    let world = World::new();
    let pair = start_pair("operator-perms", &world.config);
    let user = KeyPair::new_user();
    // Each case: the user, the script, and how the session must end.
    let cases = [
        (
            "publish allow list",
            user_jwt(
                &world.a,
                &user,
                json!({"pub": {"allow": ["a.>"]}}),
                json!({}),
            ),
            "PUB a.b 1\r\nx\r\nPUB b 1\r\nx\r\n",
            "PONG",
        ),
        (
            "subscribe deny list",
            user_jwt(
                &world.a,
                &user,
                json!({"sub": {"deny": ["secret.>"]}}),
                json!({}),
            ),
            "SUB secret.x 1\r\nSUB open 2\r\n",
            "PONG",
        ),
        (
            "payload limit",
            user_jwt(&world.a, &user, json!({"payload": 4}), json!({})),
            "PUB a 4\r\nxxxx\r\nPUB a 5\r\nxxxxx\r\n",
            "-ERR 'Maximum Payload Violation'",
        ),
        (
            "subscription limit",
            user_jwt(&world.a, &user, json!({"subs": 1}), json!({})),
            "SUB a 1\r\nSUB b 2\r\n",
            "PONG",
        ),
        (
            "scoped signing key's template",
            // As `nsc` makes them: no limits of its own, not even "unlimited" ones.
            user_jwt(
                &world.scoped,
                &user,
                json!({"issuer_account": world.a.public_key(), "subs": 0, "data": 0,
                       "payload": 0}),
                json!({}),
            ),
            "PUB scoped.x 1\r\nx\r\nPUB other 1\r\nx\r\n",
            "PONG",
        ),
        (
            "the account's default permissions",
            user_jwt(&world.b, &user, json!({}), json!({})),
            "PUB nope.x 1\r\nx\r\nPUB fine 1\r\nx\r\n",
            "PONG",
        ),
        (
            "own permissions replace the account's default",
            user_jwt(&world.b, &user, json!({"sub": {"deny": ["x"]}}), json!({})),
            "PUB nope.x 1\r\nx\r\nSUB x 1\r\n",
            "PONG",
        ),
        (
            "own messages come back",
            user_jwt(&world.a, &user, json!({}), json!({})),
            "SUB echo 1\r\nPUB echo 2\r\nhi\r\n",
            "PONG",
        ),
    ];
    for (what, jwt, script, end) in &cases {
        let lines = same(&pair, what, |addr| {
            session(addr, Some(jwt), Some(&user), script)
        });
        assert_eq!(
            lines.last().map(String::as_str),
            Some(*end),
            "{what}: {lines:?}"
        );
        assert!(
            lines.len() > 1 || *end != "PONG",
            "{what}: the script must have shown something: {lines:?}"
        );
    }
}

#[test]
fn a_user_is_cut_when_its_jwt_expires() {
    let world = World::new();
    let pair = start_pair("operator-expiry", &world.config);
    let user = KeyPair::new_user();
    let lines = same(&pair, "expiry", |addr| {
        let started = Instant::now();
        let jwt = user_jwt(&world.a, &user, json!({}), json!({"exp": now() + 2}));
        let lines = talk(
            addr,
            Some(&jwt),
            Some(&user),
            "",
            false,
            Duration::from_secs(6),
        );
        assert!(started.elapsed() < Duration::from_secs(8));
        lines
    });
    assert_eq!(lines, vec!["PONG", "-ERR 'User Authentication Expired'"]);
}

/// Real clients with `.creds` files: a service and a private stream exported by account A
/// and imported by B (the stream with an activation token), an import without its token
/// getting nothing, and accounts kept apart; the same on both servers.
#[tokio::test]
async fn creds_files_imports_and_activations() {
    let world = World::new();
    let pair = start_pair("operator-imports", &world.config);
    let dir = pair._scratch.0.clone();
    let creds_for = |account: &KeyPair, name: &str| {
        let user = KeyPair::new_user();
        let path = dir.join(format!("{name}.creds"));
        std::fs::write(
            &path,
            creds(&user_jwt(account, &user, json!({}), json!({})), &user),
        )
        .unwrap();
        path
    };
    let (a_creds, b_creds) = (creds_for(&world.a, "a"), creds_for(&world.b, "b"));
    for (who, _, addr) in &pair.servers {
        exchange(who, addr, &a_creds, &b_creds).await;
    }
}

async fn exchange(who: &str, addr: &str, a_creds: &Path, b_creds: &Path) {
    use futures::StreamExt;
    let connect = |path: &Path| {
        let path = path.to_path_buf();
        let url = format!("nats://{addr}");
        async move {
            async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .unwrap()
                .connect(url)
                .await
                .unwrap()
        }
    };
    let a = connect(a_creds).await;
    let b = connect(b_creds).await;
    // Service: B requests, A answers.
    let mut service = a.subscribe("svc.>").await.unwrap();
    let responder = a.clone();
    tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            if let Some(reply) = msg.reply {
                let _ = responder.publish(reply, "pong".into()).await;
            }
        }
    });
    // A client's flush does not wait for the server: ask until A's SUB has landed.
    let mut answer = None;
    for _ in 0..50 {
        match b.request("svc.ping", "".into()).await {
            Ok(reply) => {
                answer = Some(reply);
                break;
            }
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{who}: request failed: {e}"),
        }
    }
    let answer = answer.unwrap_or_else(|| panic!("{who}: no responder"));
    assert_eq!(&answer.payload[..], b"pong", "{who}");
    // Streams: the activated import delivers, the one without a token does not (A publishes
    // it first, so it would arrive first), and A does not see B's traffic.
    let mut news = b.subscribe("news.>").await.unwrap();
    let mut secret = b.subscribe("secret.>").await.unwrap();
    let mut forged = b.subscribe("forged.>").await.unwrap();
    let mut a_side = a.subscribe("local.>").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        a.publish("secret.x", "no".into()).await.unwrap();
        a.publish("forged.x", "no".into()).await.unwrap();
        a.publish("news.today", "yes".into()).await.unwrap();
        a.flush().await.unwrap();
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), news.next()).await {
            break msg;
        }
        assert!(Instant::now() < deadline, "{who}: no news");
    };
    assert_eq!(&got.payload[..], b"yes", "{who}");
    b.publish("local.x", "b only".into()).await.unwrap();
    b.flush().await.unwrap();
    let quiet = Duration::from_millis(300);
    assert!(
        tokio::time::timeout(quiet, secret.next()).await.is_err(),
        "{who}: an import without its export crossed accounts"
    );
    assert!(
        tokio::time::timeout(quiet, forged.next()).await.is_err(),
        "{who}: an activation signed by a stranger opened a private export"
    );
    assert!(
        tokio::time::timeout(quiet, a_side.next()).await.is_err(),
        "{who}: B's message reached account A"
    );
}

/// A configuration like the test's, under a newly issued operator JWT (same key, new name).
fn operator_jwt_again(operator: &KeyPair, account: &KeyPair, extra: &serde_json::Value) -> String {
    let reissued = common::jwt::sign(
        json!({"sub": operator.public_key(), "name": "OP2",
               "nats": {"type": "operator", "version": 2}}),
        operator,
    );
    format!(
        "operator: {reissued}\nresolver: MEMORY\nresolver_preload {{\n  {}: {}\n}}\n",
        account.public_key(),
        account_jwt(operator, account, "A", extra.clone())
    )
}

/// A reload that brings an account JWT revoking a connected user closes that user with
/// `User Authentication Revoked`, and leaves the account's other users connected.
#[test]
fn a_reload_that_revokes_a_user_closes_it() {
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let (kept, revoked) = (KeyPair::new_user(), KeyPair::new_user());
    let operator_jwt = operator_jwt(&operator, "");
    let config = |extra: serde_json::Value| {
        format!(
            "operator: {}\nresolver: MEMORY\nresolver_preload {{\n  {}: {}\n}}\n",
            operator_jwt,
            account.public_key(),
            account_jwt(&operator, &account, "A", extra)
        )
    };
    let pair = start_pair("operator-revoke", &config(json!({})));
    let open = |addr: &str, user: &KeyPair| {
        let jwt = user_jwt(&account, user, json!({}), json!({}));
        logged_in(addr, &jwt, user, json!({}))
    };
    let mut sessions: Vec<_> = pair
        .servers
        .iter()
        .map(|(_, _, addr)| (open(addr, &kept), open(addr, &revoked)))
        .collect();
    let revocation = json!({"revocations": {revoked.public_key(): now() + 60}});
    // A reload may not change the trusted operators (nats-server: `config reload not
    // supported for TrustedOperators`): the whole reload is refused, the user stays.
    let reissued = operator_jwt_again(&operator, &account, &revocation);
    std::fs::write(pair._scratch.0.join("op.conf"), reissued).unwrap();
    for (_, process, _) in &pair.servers {
        process.signal("HUP");
    }
    std::thread::sleep(Duration::from_millis(500));
    for ((_, revoked), (who, _, _)) in sessions.iter_mut().zip(&pair.servers) {
        revoked.1.write_all(b"PING\r\n").unwrap();
        let mut pong = String::new();
        while pong.is_empty() || pong == "PING\r\n" {
            pong.clear();
            revoked.0.read_line(&mut pong).unwrap();
        }
        assert_eq!(pong, "PONG\r\n", "{who}: a refused reload applied");
    }
    std::fs::write(pair._scratch.0.join("op.conf"), config(revocation.clone())).unwrap();
    for (_, process, _) in &pair.servers {
        process.signal("HUP");
    }
    let mut outcomes = Vec::new();
    for ((kept, revoked), (who, _, _)) in sessions.iter_mut().zip(&pair.servers) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match revoked.0.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line == "PING\r\n" => {}
                Ok(_) => lines.push(line.trim_end().to_string()),
            }
        }
        // The other user is still served.
        kept.1.write_all(b"PING\r\n").unwrap();
        let mut pong = String::new();
        while pong.is_empty() || pong == "PING\r\n" {
            pong.clear();
            kept.0.read_line(&mut pong).unwrap();
        }
        outcomes.push((*who, lines, pong));
    }
    let (_, tern_lines, tern_pong) = &outcomes[0];
    assert_eq!(tern_lines, &vec!["-ERR 'User Authentication Revoked'"]);
    assert_eq!(tern_pong, "PONG\r\n");
    for (who, lines, pong) in &outcomes[1..] {
        assert_eq!(
            (lines, pong),
            (tern_lines, tern_pong),
            "tern and {who} differ"
        );
    }
}

/// An account JWT's `conn` limit: one connection more than it allows is refused with
/// nats-server's error, and a place freed by a client that leaves is taken again.
#[test]
fn account_connection_limit() {
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let mut limits = common::jwt::open_limits();
    limits["conn"] = json!(1);
    let config = format!(
        "operator: {}\nresolver: MEMORY\nresolver_preload {{\n  {}: {}\n}}\n",
        operator_jwt(&operator, ""),
        account.public_key(),
        account_jwt(&operator, &account, "A", json!({ "limits": limits }))
    );
    let pair = start_pair("operator-conns", &config);
    let user = KeyPair::new_user();
    let jwt = user_jwt(&account, &user, json!({}), json!({}));
    let outcome = same(&pair, "account connection limit", |addr| {
        let first = logged_in(addr, &jwt, &user, json!({}));
        let second = session(addr, Some(&jwt), Some(&user), "");
        drop(first);
        // The first has gone: its place is free again (once the server has seen it leave).
        let mut third = Vec::new();
        for _ in 0..50 {
            third = session(addr, Some(&jwt), Some(&user), "");
            if third == ["PONG"] {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (second, third)
    });
    assert_eq!(
        outcome.0,
        vec!["-ERR 'maximum account active connections exceeded'"]
    );
    assert_eq!(outcome.1, vec!["PONG"]);
}

/// `/connz?auth=1` shows a JWT user as nats-server does: its public key, its JWT, who signed
/// it and its account's name.
#[test]
fn connz_shows_jwt_users() {
    let world = World::new();
    let pair = start_pair("operator-connz", &world.config);
    let user = KeyPair::new_user();
    let jwt = user_jwt(
        &world.signing,
        &user,
        json!({"issuer_account": world.a.public_key()}),
        json!({}),
    );
    let mut entries = Vec::new();
    for ((_, _, addr), monitor) in pair.servers.iter().zip(&pair.monitors) {
        let client = logged_in(addr, &jwt, &user, json!({"name": "n1"}));
        let (status, body) = http_get(monitor, "/connz?auth=1").unwrap();
        assert_eq!(status, 200);
        let connz: serde_json::Value = serde_json::from_str(&body).unwrap();
        let entry = connz["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "n1")
            .cloned()
            .unwrap();
        entries.push(entry);
        drop(client);
    }
    let tern = &entries[0];
    assert_eq!(tern["authorized_user"], json!(user.public_key()));
    assert_eq!(tern["account"], json!(world.a.public_key()));
    assert_eq!(tern["jwt"], json!(jwt));
    assert_eq!(tern["issuer_key"], json!(world.signing.public_key()));
    assert_eq!(tern["name_tag"], json!("A"));
    for other in &entries[1..] {
        for key in [
            "authorized_user",
            "account",
            "jwt",
            "issuer_key",
            "name_tag",
        ] {
            assert_eq!(tern[key], other[key], "{key}");
        }
        assert_eq!(json_shape(tern), json_shape(other));
    }
}

/// The full resolver: account JWTs pushed through the system account at run time, as
/// nats-server takes them (list, lookup, update with its errors), put in force at once (a new
/// account's users get in, a revocation closes its user), and kept in the directory across a
/// restart.
#[tokio::test]
async fn full_resolver_takes_updates_through_the_system_account() {
    let operator = KeyPair::new_operator();
    let (system, account) = (KeyPair::new_account(), KeyPair::new_account());
    let (sys_user, user) = (KeyPair::new_user(), KeyPair::new_user());
    let scratch = Scratch::new("operator-full");
    let sys_creds = scratch.0.join("sys.creds");
    std::fs::write(
        &sys_creds,
        creds(
            &user_jwt(&system, &sys_user, json!({}), json!({})),
            &sys_user,
        ),
    )
    .unwrap();
    let user_jwt_a = user_jwt(&account, &user, json!({}), json!({}));
    let account_v1 = account_jwt(&operator, &account, "A", json!({}));
    let mut binaries: Vec<(&str, PathBuf)> = vec![("tern", env!("CARGO_BIN_EXE_tern").into())];
    if let Some(reference) = reference_server() {
        binaries.push(("nats-server", reference));
    }
    let mut transcripts = Vec::new();
    for (who, binary) in &binaries {
        let dir = scratch.0.join(who);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("full.conf");
        std::fs::write(
            &config,
            format!(
                "operator: {}\nsystem_account: {sys}\nresolver {{ type: full, dir: '{}' }}\n\
                 resolver_preload {{\n  {sys}: {}\n}}\n",
                operator_jwt(&operator, &system.public_key()),
                dir.join("jwt").display(),
                account_jwt(&operator, &system, "SYS", json!({})),
                sys = system.public_key(),
            ),
        )
        .unwrap();
        let (process, addr, _) = start_with_ports(binary, &config, &dir.join("ports"));
        let sys = async_nats::ConnectOptions::with_credentials_file(sys_creds.clone())
            .await
            .unwrap()
            .connect(format!("nats://{addr}"))
            .await
            .unwrap();
        let ask = |subject: String, body: String| {
            let sys = sys.clone();
            async move {
                let reply = sys.request(subject, body.into()).await.unwrap();
                let mut value: serde_json::Value = serde_json::from_slice(&reply.payload)
                    .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&reply.payload) }));
                if let Some(map) = value.as_object_mut() {
                    map.remove("server");
                }
                value
            }
        };
        let key = account.public_key();
        let lookup = format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.LOOKUP");
        let mut t = Vec::new();
        t.push(ask("$SYS.REQ.CLAIMS.LIST".into(), String::new()).await);
        t.push(json!(session(&addr, Some(&user_jwt_a), Some(&user), "")));
        t.push(ask(lookup.clone(), String::new()).await);
        t.push(ask("$SYS.REQ.CLAIMS.UPDATE".into(), account_v1.clone()).await);
        t.push(json!(session(&addr, Some(&user_jwt_a), Some(&user), "")));
        t.push(ask(lookup.clone(), String::new()).await);
        t.push(ask("$SYS.REQ.CLAIMS.UPDATE".into(), "garbage".into()).await);
        let wrong = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", system.public_key());
        t.push(ask(wrong, account_v1.clone()).await);
        // A user connected while its account revokes it.
        let (mut reader, _writer) = logged_in(&addr, &user_jwt_a, &user, json!({}));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let revoking = account_jwt(
            &operator,
            &account,
            "A",
            json!({"revocations": {user.public_key(): now()}}),
        );
        let update = format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE");
        t.push(ask(update, revoking).await);
        let mut cut = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line == "PING\r\n" => {}
                Ok(_) => cut.push(line.trim_end().to_string()),
            }
        }
        t.push(json!(cut));
        let mut list = ask("$SYS.REQ.CLAIMS.LIST".into(), String::new()).await;
        if let Some(keys) = list["data"].as_array_mut() {
            keys.sort_by_key(|k| k.to_string());
        }
        t.push(list);
        drop(process);
        transcripts.push((*who, t));
    }
    let (_, tern) = &transcripts[0];
    let key = account.public_key();
    assert_eq!(tern[0], json!({"data": [system.public_key()]}));
    assert_eq!(tern[1], json!([VIOLATION]));
    assert_eq!(
        tern[3],
        json!({"data": {"account": key, "code": 200, "message": "jwt updated"}})
    );
    assert_eq!(tern[4], json!(["PONG"]));
    assert_eq!(tern[5], json!({ "raw": account_v1 }));
    assert_eq!(tern[9], json!(["-ERR 'User Authentication Revoked'"]));
    for (who, other) in &transcripts[1..] {
        for (i, (a, b)) in tern.iter().zip(other).enumerate() {
            assert_eq!(a, b, "step {i}: tern and {who} differ");
        }
    }
    // The directory keeps what was pushed: a restarted tern knows the account.
    let dir = scratch.0.join("tern");
    let (_process, addr, _) = start_with_ports(
        Path::new(env!("CARGO_BIN_EXE_tern")),
        &dir.join("full.conf"),
        &dir.join("ports2"),
    );
    let other = KeyPair::new_user();
    let jwt = user_jwt(&account, &other, json!({}), json!({}));
    assert_eq!(session(&addr, Some(&jwt), Some(&other), ""), ["PONG"]);
}

/// What a logged-in client hears after a PING: `PONG` while it is open, or the `-ERR` it was
/// closed with.
fn still_open(client: &mut (BufReader<TcpStream>, TcpStream)) -> Vec<String> {
    let _ = client.1.write_all(b"PING\r\n");
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match client.0.read_line(&mut line) {
            Ok(0) | Err(_) => return lines,
            // The server's own PINGs come when its timers say.
            Ok(_) if line.trim_end() == "PING" => {}
            Ok(_) => {
                let line = line.trim_end().to_string();
                let done = line == "PONG";
                lines.push(line);
                if done {
                    return lines;
                }
            }
        }
    }
}

/// An account's `conn` limit counts its clients on every server of a cluster, from the
/// `$SYS.SERVER.ACCOUNT.<acc>.CONNS` events each server publishes: with a limit of 2 and one
/// client on each node, neither node takes a third. And a node that learns the cluster is over
/// the limit (clients connected on both sides before they knew of each other) closes its
/// newest clients until it is not. Every pairing of tern and nats-server, with nats-server in both places as the
/// reference.
#[test]
fn account_connection_limit_counts_the_whole_cluster() {
    let operator = KeyPair::new_operator();
    let (system, account) = (KeyPair::new_account(), KeyPair::new_account());
    let mut limits = common::jwt::open_limits();
    limits["conn"] = json!(2);
    let config = format!(
        "operator: {}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload {{\n  \
         {sys}: {}\n  {}: {}\n}}\n",
        operator_jwt(&operator, &system.public_key()),
        account_jwt(&operator, &system, "SYS", json!({})),
        account.public_key(),
        account_jwt(&operator, &account, "A", json!({ "limits": limits })),
        sys = system.public_key(),
    );
    let user = KeyPair::new_user();
    let jwt = user_jwt(&account, &user, json!({}), json!({}));
    let tern = PathBuf::from(env!("CARGO_BIN_EXE_tern"));
    let mut pairings = vec![(tern.clone(), tern.clone())];
    if let Some(reference) = reference_server() {
        pairings.push((reference.clone(), tern.clone()));
        pairings.push((tern.clone(), reference.clone()));
        pairings.push((reference.clone(), reference));
    }
    let full = vec!["-ERR 'maximum account active connections exceeded'".to_string()];
    for (a_bin, b_bin) in pairings {
        let tag = format!("A {} / B {}", a_bin.display(), b_bin.display());
        let scratch = Scratch::new("operator-cluster-conns");
        let ((_a, a), (_b, b)) = with_free_ports(|a_port, b_port| {
            let a = cluster_node(&scratch, &a_bin, "A", &config, a_port, &[])?;
            Some((
                a,
                cluster_node(&scratch, &b_bin, "B", &config, b_port, &[a_port])?,
            ))
        });
        // The route and the system account's interest across it.
        std::thread::sleep(Duration::from_secs(2));
        let mut on_a = logged_in(&a, &jwt, &user, json!({}));
        let mut on_b = logged_in(&b, &jwt, &user, json!({}));
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            session(&b, Some(&jwt), Some(&user), ""),
            full,
            "{tag}: on B"
        );
        assert_eq!(
            session(&a, Some(&jwt), Some(&user), ""),
            full,
            "{tag}: on A"
        );
        assert_eq!(still_open(&mut on_a), ["PONG"], "{tag}");
        assert_eq!(still_open(&mut on_b), ["PONG"], "{tag}");
        drop((on_a, on_b));

        // B's two clients connect while B has no route (it dials a port nobody listens on
        // yet); then C comes up there, and a client connects to C before C has heard B's
        // count. C asks for the others' counts as its first client comes, then sends its own:
        // B answers 2 (C closes its client: three in the cluster) and then hears C's 1 (B
        // closes its newest). Both err on the side of closing; clients reconnect. (nats-server
        // sends its request while the client authenticates: when B's answer beats the
        // client's own admission there, C refuses it outright and B, never hearing of it,
        // keeps both. Either outcome keeps the cluster within the limit.)
        let scratch = Scratch::new("operator-cluster-over");
        let ((_b, _), (_c, c), mut older, mut newer) = with_free_ports(|b_port, c_port| {
            let (b_process, b) = cluster_node(&scratch, &b_bin, "B", &config, b_port, &[c_port])?;
            let older = logged_in(&b, &jwt, &user, json!({}));
            let newer = logged_in(&b, &jwt, &user, json!({}));
            let c = cluster_node(&scratch, &a_bin, "C", &config, c_port, &[])?;
            Some(((b_process, b), c, older, newer))
        });
        std::thread::sleep(Duration::from_secs(3));
        match try_login(&c, &jwt, &user, json!({})) {
            Ok(mut on_c) => {
                std::thread::sleep(Duration::from_secs(1));
                assert_eq!(still_open(&mut newer), full, "{tag}: B's newest client");
                assert_eq!(still_open(&mut on_c), full, "{tag}: C's client");
            }
            Err(refused) => {
                assert!(a_bin != tern, "{tag}: tern as C refused at once");
                assert_eq!([refused], *full, "{tag}: C's client");
                assert_eq!(still_open(&mut newer), ["PONG"], "{tag}: B's newest client");
            }
        }
        assert_eq!(still_open(&mut older), ["PONG"], "{tag}: B's older client");
    }
}

/// The other side of the cluster-wide count, driven by hand from the system account: once the
/// account is in use here, a server's `CONNS` event (a server that does not exist, with one
/// client) fills the account, and its `SHUTDOWN` event frees it again; and a server shutting down announces it on
/// `$SYS.SERVER.<id>.SHUTDOWN` before its connections close. Side by side with nats-server.
#[test]
fn remote_counts_come_and_go_with_their_servers() {
    let operator = KeyPair::new_operator();
    let (system, account) = (KeyPair::new_account(), KeyPair::new_account());
    let mut limits = common::jwt::open_limits();
    limits["conn"] = json!(2);
    let config = format!(
        "operator: {}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload {{\n  \
         {sys}: {}\n  {acc}: {}\n}}\n",
        operator_jwt(&operator, &system.public_key()),
        account_jwt(&operator, &system, "SYS", json!({})),
        account_jwt(&operator, &account, "A", json!({ "limits": limits })),
        sys = system.public_key(),
        acc = account.public_key(),
    );
    let (admin, user) = (KeyPair::new_user(), KeyPair::new_user());
    let admin_jwt = user_jwt(&system, &admin, json!({}), json!({}));
    let jwt = user_jwt(&account, &user, json!({}), json!({}));
    let full = vec!["-ERR 'maximum account active connections exceeded'".to_string()];
    let mut binaries = vec![PathBuf::from(env!("CARGO_BIN_EXE_tern"))];
    binaries.extend(reference_server());
    for binary in binaries {
        let tag = binary.display().to_string();
        let scratch = Scratch::new("operator-remote-counts");
        let (server, addr) =
            with_free_ports(|port, _| cluster_node(&scratch, &binary, "S", &config, port, &[]));
        let mut sys = logged_in(&addr, &admin_jwt, &admin, json!({}));
        let fake = "NDFAKESERVERFORTHECOUNTSTESTXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
        let conns = json!({"server": {"name": "fake", "host": "127.0.0.1", "id": fake,
                                      "ver": "2.15.1", "seq": 1, "jetstream": false,
                                      "flags": 0, "time": "2026-12-01T00:00:00Z"},
                           "acc": account.public_key(), "name": "A", "conns": 1,
                           "leafnodes": 0, "total_conns": 1})
        .to_string();
        let shutdown = json!({"name": "fake", "host": "127.0.0.1", "id": fake, "ver": "2.15.1",
                              "seq": 2, "jetstream": false, "flags": 0,
                              "time": "2026-12-01T00:00:01Z"})
        .to_string();
        let publish = |sys: &mut (BufReader<TcpStream>, TcpStream), subject: &str, body: &str| {
            let op = format!("PUB {subject} {}\r\n{body}\r\n", body.len());
            sys.1.write_all(op.as_bytes()).unwrap();
            assert_eq!(still_open(sys), ["PONG"], "{tag}: {subject}");
            // The server handles events off the publisher's path.
            std::thread::sleep(Duration::from_millis(300));
        };
        let _first = logged_in(&addr, &jwt, &user, json!({}));
        let subject = format!("$SYS.SERVER.ACCOUNT.{}.CONNS", account.public_key());
        publish(&mut sys, &subject, &conns);
        assert_eq!(session(&addr, Some(&jwt), Some(&user), ""), full, "{tag}");
        publish(&mut sys, &format!("$SYS.SERVER.{fake}.SHUTDOWN"), &shutdown);
        assert_eq!(
            session(&addr, Some(&jwt), Some(&user), ""),
            ["PONG"],
            "{tag}"
        );

        // Its own shutdown, heard by a system client of the server itself.
        sys.1
            .write_all(b"SUB $SYS.SERVER.*.SHUTDOWN 1\r\n")
            .unwrap();
        assert_eq!(still_open(&mut sys), ["PONG"], "{tag}");
        server.signal("TERM");
        let mut heard = String::new();
        let _ = sys.0.read_line(&mut heard);
        assert!(
            heard.starts_with("MSG $SYS.SERVER.") && heard.contains(".SHUTDOWN 1 "),
            "{tag}: {heard:?}"
        );
        let mut body = String::new();
        let _ = sys.0.read_line(&mut body);
        let info: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
        assert_eq!(info["name"], "S", "{tag}: {body}");
        assert!(
            heard.contains(info["id"].as_str().unwrap()),
            "{tag}: {heard}"
        );
    }
}
/// `$SYS.REQ.CLAIMS.DELETE` on a full resolver: the operator's signed list of accounts to
/// delete, refused as nats-server refuses it (not self-signed, not trusted, the system
/// account, malformed, delete not allowed) and carried out as it does (the account's JWT is
/// gone, its users are cut and cannot come back).
#[tokio::test]
async fn full_resolver_deletes_accounts_the_operator_names() {
    let operator = KeyPair::new_operator();
    let (system, account) = (KeyPair::new_account(), KeyPair::new_account());
    let (sys_user, user) = (KeyPair::new_user(), KeyPair::new_user());
    let scratch = Scratch::new("operator-delete");
    let sys_creds = scratch.0.join("sys.creds");
    std::fs::write(
        &sys_creds,
        creds(
            &user_jwt(&system, &sys_user, json!({}), json!({})),
            &sys_user,
        ),
    )
    .unwrap();
    let user_jwt_a = user_jwt(&account, &user, json!({}), json!({}));
    let account_jwt_a = account_jwt(&operator, &account, "A", json!({}));
    let deletion = |signer: &KeyPair, accounts: serde_json::Value| {
        common::jwt::sign(
            json!({"sub": signer.public_key(), "nats": {"accounts": accounts}}),
            signer,
        )
    };
    let key = account.public_key();
    let requests = [
        "garbage".to_string(),
        deletion(&account, json!([key])),
        deletion(&KeyPair::new_operator(), json!([key])),
        common::jwt::sign(
            json!({"sub": KeyPair::new_operator().public_key(), "nats": {"accounts": [key]}}),
            &operator,
        ),
        deletion(&operator, json!([system.public_key()])),
        deletion(&operator, json!("x")),
        deletion(&operator, json!([key])),
        deletion(&operator, json!([key])),
    ];
    let good = requests.len() - 2;
    let mut binaries: Vec<(&str, PathBuf)> = vec![("tern", env!("CARGO_BIN_EXE_tern").into())];
    if let Some(reference) = reference_server() {
        binaries.push(("nats-server", reference));
    }
    let mut transcripts = Vec::new();
    for (who, binary) in &binaries {
        let mut t = Vec::new();
        for allow_delete in [false, true] {
            let dir = scratch.0.join(format!("{who}-{allow_delete}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("full.conf");
            std::fs::write(
                &config,
                format!(
                    "operator: {}\nsystem_account: {sys}\nresolver {{ type: full, dir: '{}', \
                     allow_delete: {allow_delete} }}\nresolver_preload {{\n  {sys}: {}\n  \
                     {key}: {account_jwt_a}\n}}\n",
                    operator_jwt(&operator, &system.public_key()),
                    dir.join("jwt").display(),
                    account_jwt(&operator, &system, "SYS", json!({})),
                    sys = system.public_key(),
                ),
            )
            .unwrap();
            let (_process, addr, _) = start_with_ports(binary, &config, &dir.join("ports"));
            let sys = async_nats::ConnectOptions::with_credentials_file(sys_creds.clone())
                .await
                .unwrap()
                .connect(format!("nats://{addr}"))
                .await
                .unwrap();
            let (mut reader, _writer) = logged_in(&addr, &user_jwt_a, &user, json!({}));
            let ask = |body: String| {
                let sys = sys.clone();
                async move {
                    let subject = "$SYS.REQ.CLAIMS.DELETE".to_string();
                    match sys.request(subject, body.into()).await {
                        Ok(reply) => {
                            let mut value: serde_json::Value =
                                serde_json::from_slice(&reply.payload).unwrap_or_else(
                                    |_| json!({"raw": String::from_utf8_lossy(&reply.payload)}),
                                );
                            if let Some(map) = value.as_object_mut() {
                                map.remove("server");
                            }
                            value
                        }
                        Err(e) => json!({"request error": e.kind().to_string()}),
                    }
                }
            };
            for request in &requests[..if allow_delete { requests.len() } else { 1 }] {
                t.push(ask(request.clone()).await);
                if !allow_delete {
                    t.push(ask(requests[good].clone()).await);
                }
            }
            if allow_delete {
                let mut cut = Vec::new();
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "PING\r\n" => {}
                        Ok(_) => cut.push(line.trim_end().to_string()),
                    }
                }
                t.push(json!(cut));
                t.push(json!(session(&addr, Some(&user_jwt_a), Some(&user), "")));
                let lookup = format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.LOOKUP");
                let reply = sys.request(lookup, "".into()).await.unwrap();
                t.push(json!(String::from_utf8_lossy(&reply.payload)));
                t.push(json!(dir.join("jwt").join(format!("{key}.jwt")).exists()));
            }
        }
        transcripts.push((*who, t));
    }
    let (_, tern) = &transcripts[0];
    assert_eq!(
        tern[3]["error"]["description"],
        format!("delete accounts request by {key} failed - not trusted")
    );
    assert_eq!(
        tern[good + 2],
        json!({"data": {"code": 200, "message": "deleted 1 accounts"}})
    );
    assert_eq!(
        tern[good + 4],
        json!(["-ERR 'Account Authentication Expired'"])
    );
    assert_eq!(tern[good + 5], json!([VIOLATION]));
    for (who, other) in &transcripts[1..] {
        assert_eq!(tern.len(), other.len());
        for (i, (a, b)) in tern.iter().zip(other).enumerate() {
            assert_eq!(a, b, "step {i}: tern and {who} differ");
        }
    }
}

/// Scoped signing keys' templates expanded per user as nats-server expands them: the user's
/// name, key and tags, the account's name and tags; a deny list that cannot be expanded for a
/// user refuses it, an allow list that expands to nothing denies everything.
#[test]
fn scoped_key_templates_expand_per_user() {
    let operator = KeyPair::new_operator();
    let (system, account, scoped) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let account_jwt_t = account_jwt(
        &operator,
        &account,
        "T",
        json!({"tags": ["region:eu"], "signing_keys": [{
            "kind": "user_scope", "key": scoped.public_key(), "role": "templated",
            "template": {"pub": {"allow": ["u.{{name()}}.>", "d.{{tag(dept)}}",
                                           "acc.{{account-name()}}.{{account-tag(region)}}",
                                           "k.{{subject()}}"]},
                         "sub": {"allow": ["in.{{tag(team)}}"], "deny": ["s.{{tag(level)}}"]},
                         "subs": -1, "data": -1, "payload": -1}}]}),
    );
    let config = format!(
        "operator: {}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload {{\n  \
         {sys}: {}\n  {t}: {account_jwt_t}\n}}\n",
        operator_jwt(&operator, &system.public_key()),
        account_jwt(&operator, &system, "SYS", json!({})),
        sys = system.public_key(),
        t = account.public_key(),
    );
    let pair = start_pair("operator-templates", &config);
    let scoped_user = |name: &str, tags: serde_json::Value| {
        let key = KeyPair::new_user();
        let mut claims = json!({"sub": key.public_key(), "name": name,
            "nats": {"issuer_account": account.public_key(), "tags": tags,
                     "type": "user", "version": 2}});
        claims["nats"]["pub"] = json!({});
        let jwt = common::jwt::sign(claims, &scoped);
        (jwt, key)
    };
    let (alice, alice_key) = scoped_user("alice", json!(["dept:a", "level:1"]));
    let script = format!(
        "PUB u.alice.x 0\r\n\r\nPUB u.bob.x 0\r\n\r\nPUB d.a 0\r\n\r\nPUB d.b 0\r\n\r\n\
         PUB acc.T.eu 0\r\n\r\nPUB k.{} 0\r\n\r\nSUB in.x 1\r\nSUB s.1 2\r\n",
        alice_key.public_key()
    );
    let seen = same(&pair, "alice", |addr| {
        session(addr, Some(&alice), Some(&alice_key), &script)
    });
    assert_eq!(
        seen,
        [
            "-ERR 'Permissions Violation for Publish to \"u.bob.x\"'",
            "-ERR 'Permissions Violation for Publish to \"d.b\"'",
            "-ERR 'Permissions Violation for Subscription to \"in.x\"'",
            "-ERR 'Permissions Violation for Subscription to \"s.1\"'",
            "PONG"
        ]
    );
    // No `level` tag: the deny list cannot be expanded.
    let (bob, bob_key) = scoped_user("bob", json!(["dept:b", "team:x"]));
    let seen = same(&pair, "bob", |addr| {
        session(addr, Some(&bob), Some(&bob_key), "")
    });
    assert_eq!(seen, [VIOLATION]);
}

/// `/accountz?acc=<key>` shows a JWT account as nats-server does: its JWT, who signed it, its
/// name and tags, the decoded claims and the revoked users.
#[test]
fn accountz_shows_jwt_details() {
    let world = World::new();
    let pair = start_pair("operator-accountz", &world.config);
    let mut details = Vec::new();
    let user = KeyPair::new_user();
    let jwt = user_jwt(&world.a, &user, json!({}), json!({}));
    for ((_, _, addr), monitor) in pair.servers.iter().zip(&pair.monitors) {
        // nats-server loads a memory resolver's account when it is first used.
        let _client = logged_in(addr, &jwt, &user, json!({}));
        let path = format!("/accountz?acc={}", world.a.public_key());
        let (status, body) = http_get(monitor, &path).unwrap();
        assert_eq!(status, 200);
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut detail = doc["account_detail"].clone();
        // nats-server lists exports in no fixed order.
        if let Some(exports) = detail["exports"].as_array_mut() {
            exports.sort_by_key(|e| e["subject"].to_string());
        }
        details.push(detail);
    }
    let tern = &details[0];
    assert_eq!(tern["name_tag"], "A");
    assert_eq!(tern["issuer_key"], json!(world.operator.public_key()));
    assert_eq!(tern["decoded_jwt"]["sub"], json!(world.a.public_key()));
    assert_eq!(
        tern["revoked_user"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        [&world.revoked.public_key()]
    );
    for other in &details[1..] {
        for key in [
            "account_name",
            "jwt",
            "issuer_key",
            "name_tag",
            "tags",
            "decoded_jwt",
            "revoked_user",
            "exports",
            "expired",
            "complete",
        ] {
            assert_eq!(
                tern[key], other[key],
                "{key}: {}\n{}",
                tern[key], other[key]
            );
        }
    }
}
