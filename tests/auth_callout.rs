//! Auth callout, side by side with nats-server 2.15.1: the same configuration and the same
//! callout service (written here with async-nats; it signs the users it admits with
//! `common::jwt`) against both servers, and the same client-visible outcome from each: who is
//! admitted, into which account, with which permissions; who is refused; what a service that
//! never answers does; the request and response sealed with xkeys.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::jwt::{account_jwt, now, operator_jwt, sign, user_jwt};
use common::process::{json_shape, reference_server, start_with_ports, Process, Scratch};
use common::Raw;
use futures::StreamExt;
use nkeys::{KeyPair, XKey};
use serde_json::{json, Value};

/// A server under test: who it is, its process, its client address and its log file.
struct Running {
    who: &'static str,
    _process: Process,
    addr: String,
    log: PathBuf,
}

/// tern and nats-server 2.15.1, each started on the configuration `config` writes (given
/// the server's own directory: its log file goes there, with debug logging on).
fn start_both(scratch: &Scratch, config: &str) -> Vec<Running> {
    let mut binaries: Vec<(&'static str, PathBuf)> =
        vec![("tern", env!("CARGO_BIN_EXE_tern").into())];
    if let Some(reference) = reference_server() {
        binaries.push(("nats-server", reference));
    }
    binaries
        .into_iter()
        .map(|(who, binary)| {
            let dir = scratch.0.join(who);
            std::fs::create_dir_all(&dir).unwrap();
            let log = dir.join("server.log");
            let file = dir.join("server.conf");
            let text = format!("debug: true\nlog_file: {:?}\n{config}", log.display());
            std::fs::write(&file, text).unwrap();
            let (process, addr, _) = start_with_ports(&binary, &file, &dir.join("ports"));
            Running {
                who,
                _process: process,
                addr,
                log,
            }
        })
        .collect()
}

/// What the callout service answers for one request.
#[derive(Clone, Debug)]
enum Verdict {
    /// A user JWT for the requested user key, signed by the issuer: `aud` names the account
    /// (configuration mode), `issuer_account` the account a signing key signs for (operator
    /// mode), `nats` merged into the user claims.
    Admit {
        aud: Option<String>,
        nats: Value,
        name: &'static str,
    },
    /// An authorization response with this error.
    Refuse(&'static str),
    /// An empty reply.
    Empty,
    /// No reply at all.
    Ignore,
}

/// A callout service: the requests it saw (claims, decoded after checking the server's
/// signature), and its task.
struct Service {
    requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The keys a service signs and seals with.
struct Keys {
    /// Signs the authorization responses and user JWTs.
    issuer: String,
    /// Signs the user JWTs when set (a signing key of the account in operator mode).
    user_signer: Option<String>,
    /// Opens requests and seals responses when set.
    xkey: Option<String>,
}

/// Runs a callout service on `client`: every request on `$SYS.REQ.USER.AUTH` is checked
/// (signed by the server that sent it, sealed when the service has an xkey) and answered with
/// what `decide` says for its claims.
async fn service(
    client: async_nats::Client,
    keys: Keys,
    decide: impl Fn(&Value) -> Verdict + Send + 'static,
) -> Service {
    let mut subscriber = client.subscribe("$SYS.REQ.USER.AUTH").await.unwrap();
    client.flush().await.unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        let issuer = KeyPair::from_seed(&keys.issuer).unwrap();
        let signer = keys
            .user_signer
            .as_deref()
            .map(|s| KeyPair::from_seed(s).unwrap());
        let xkey = keys.xkey.as_deref().map(|s| XKey::from_seed(s).unwrap());
        while let Some(msg) = subscriber.next().await {
            let server_xkey = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Server-Xkey"))
                .map(|v| XKey::from_public_key(v.as_str()).unwrap());
            let token = match (&xkey, &server_xkey) {
                (Some(mine), Some(theirs)) => mine.open(&msg.payload, theirs).unwrap(),
                (None, None) => msg.payload.to_vec(),
                _ => panic!("sealed when the service has no xkey, or the reverse"),
            };
            let claims = verified_claims(std::str::from_utf8(&token).unwrap());
            seen.lock().unwrap().push(claims.clone());
            let user_key = claims["nats"]["user_nkey"].as_str().unwrap().to_string();
            let server_id = claims["nats"]["server_id"]["id"]
                .as_str()
                .unwrap()
                .to_string();
            let body = match decide(&claims) {
                Verdict::Ignore => continue,
                Verdict::Empty => Vec::new(),
                Verdict::Refuse(why) => {
                    response(&issuer, &user_key, &server_id, json!({"error": why}))
                }
                Verdict::Admit { aud, nats, name } => {
                    let mut user = json!({"sub": user_key, "name": name,
                        "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                                 "type": "user", "version": 2}});
                    if let Some(aud) = aud {
                        user["aud"] = json!(aud);
                    }
                    for (k, v) in nats.as_object().unwrap() {
                        user["nats"][k] = v.clone();
                    }
                    let user_jwt = sign(user, signer.as_ref().unwrap_or(&issuer));
                    response(&issuer, &user_key, &server_id, json!({"jwt": user_jwt}))
                }
            };
            let body = match (&xkey, &server_xkey) {
                (Some(mine), Some(theirs)) if !body.is_empty() => mine.seal(&body, theirs).unwrap(),
                _ => body,
            };
            let reply = msg.reply.clone().expect("a reply subject");
            client.publish(reply, body.into()).await.unwrap();
        }
    });
    Service { requests, task }
}

/// An authorization response for `user_key` and the server `server_id`, `nats` merged in.
fn response(issuer: &KeyPair, user_key: &str, server_id: &str, nats: Value) -> Vec<u8> {
    let mut claims = json!({"sub": user_key, "aud": server_id,
        "nats": {"type": "authorization_response", "version": 2}});
    for (k, v) in nats.as_object().unwrap() {
        claims["nats"][k] = v.clone();
    }
    sign(claims, issuer).into_bytes()
}

/// The claims of `token`, after checking that its issuer signed it.
fn verified_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let issuer = KeyPair::from_public_key(claims["iss"].as_str().unwrap()).unwrap();
    let signed = &token[..parts[0].len() + 1 + parts[1].len()];
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    issuer
        .verify(signed.as_bytes(), &sig)
        .expect("signed by its issuer");
    claims
}

/// A raw client's attempt: CONNECT with `connect` and a PING; when that is answered,
/// `script` and another PING. Every line until the second PONG or the close, the servers'
/// own PINGs left out and INFO reduced to the account it names.
async fn attempt(addr: &str, connect: Value, script: &str) -> Vec<String> {
    let mut raw = Raw::connect(addr.parse().unwrap()).await;
    let mut connect = connect;
    connect["protocol"] = json!(1);
    connect["verbose"] = json!(false);
    raw.send(format!("CONNECT {connect}\r\nPING\r\n")).await;
    let mut lines = Vec::new();
    let mut pongs = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let line = match tokio::time::timeout_at(deadline, line_or_close(&mut raw)).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                lines.push("<closed>".to_string());
                break;
            }
            Err(_) => panic!("no answer; so far {lines:?}"),
        };
        let line = line.trim_end().to_string();
        if line == "PING" {
            continue;
        }
        if let Some(info) = line.strip_prefix("INFO ") {
            let info: Value = serde_json::from_str(info).unwrap();
            lines.push(format!(
                "INFO account={}",
                info["remote_account"].as_str().unwrap_or("?")
            ));
            continue;
        }
        let pong = line == "PONG";
        lines.push(line);
        if pong {
            pongs += 1;
            if pongs == 2 {
                break;
            }
            raw.send(format!("{script}PING\r\n")).await;
        }
    }
    lines
}

/// The next line, or `None` once the server has closed the connection.
async fn line_or_close(raw: &mut Raw) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        match raw.stream.read(&mut byte).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
        }
    }
}

/// Waits until `log` has a line containing `what`; that line, without its prefix.
fn log_line(log: &Path, what: &str) -> String {
    let text = common::process::wait_for_log(log, what, |t| t.contains(what));
    let line = text.lines().find(|l| l.contains(what)).unwrap();
    // `[pid] date time [LVL] text`: from the level on.
    line.split_once(" [")
        .map_or(line, |(_, rest)| rest)
        .to_string()
}

/// The service's rule in every test: alice is admitted (publishing only under `a.>`), bob is
/// refused, "empty" gets an empty reply, mallory is placed where the service may not place
/// her, anyone else gets no answer.
fn verdict(claims: &Value, aud: Option<&str>, mallory: Verdict) -> Verdict {
    match claims["nats"]["connect_opts"]["user"].as_str() {
        Some("alice") => Verdict::Admit {
            aud: aud.map(str::to_string),
            nats: json!({"pub": {"allow": ["a.>"]}}),
            name: "alice",
        },
        Some("bob") => Verdict::Refuse("bob is not welcome"),
        Some("empty") => Verdict::Empty,
        Some("mallory") => mallory,
        _ => Verdict::Ignore,
    }
}

/// What each of the users sees on `server` (with `extra` merged into their CONNECT), and how
/// long the one nobody answers waited.
async fn outcomes(server: &Running, extra: &Value) -> (Vec<(String, Vec<String>)>, Duration) {
    let mut seen = Vec::new();
    let mut waited = Duration::ZERO;
    for user in ["alice", "bob", "empty", "mallory", "slow"] {
        let mut connect = json!({"user": user, "pass": "x"});
        for (k, v) in extra.as_object().unwrap() {
            connect[k] = v.clone();
        }
        let started = Instant::now();
        let lines = attempt(&server.addr, connect, "PUB a.x 0\r\n\r\nPUB b 0\r\n\r\n").await;
        if user == "slow" {
            waited = started.elapsed();
        }
        seen.push((user.to_string(), lines));
    }
    (seen, waited)
}

/// The same outcomes from every server; the first server's.
fn same_everywhere<T: PartialEq + std::fmt::Debug>(results: Vec<(&str, T)>) -> T {
    let mut results = results.into_iter();
    let (first_who, first) = results.next().unwrap();
    for (who, result) in results {
        assert_eq!(result, first, "{who} and {first_who} differ");
    }
    first
}

/// Accounts as the outcomes show them: the key of `account` replaced by its name.
fn named(
    outcomes: Vec<(String, Vec<String>)>,
    key: &str,
    name: &str,
) -> Vec<(String, Vec<String>)> {
    outcomes
        .into_iter()
        .map(|(u, lines)| (u, lines.into_iter().map(|l| l.replace(key, name)).collect()))
        .collect()
}

#[tokio::test]
async fn configured_callout_admits_and_refuses_as_nats_server() {
    for sealed in [false, true] {
        let scratch = Scratch::new(&format!("callout-config-{sealed}"));
        let issuer = KeyPair::new_account();
        let xkey = XKey::new();
        let xkey_line = match sealed {
            true => format!("    xkey: {}\n", xkey.public_key()),
            false => String::new(),
        };
        let config = format!(
            "accounts {{\n  AUTH {{ users: [{{user: auth, password: pw}}] }}\n  APP {{}}\n}}\n\
             authorization {{\n  timeout: 1\n  auth_callout {{\n    issuer: {}\n    \
             auth_users: [auth]\n    account: AUTH\n{xkey_line}  }}\n}}\n",
            issuer.public_key()
        );
        let servers = start_both(&scratch, &config);
        let mut results = Vec::new();
        let mut requests = Vec::new();
        for server in &servers {
            let client =
                async_nats::ConnectOptions::with_user_and_password("auth".into(), "pw".into())
                    .connect(&server.addr)
                    .await
                    .unwrap();
            let keys = Keys {
                issuer: issuer.seed().unwrap(),
                user_signer: None,
                xkey: sealed.then(|| xkey.seed().unwrap()),
            };
            // mallory is placed in an account that does not exist.
            let svc = service(client, keys, |claims| {
                let nowhere = Verdict::Admit {
                    aud: Some("NOWHERE".into()),
                    nats: json!({}),
                    name: "m",
                };
                verdict(claims, Some("APP"), nowhere)
            })
            .await;
            let (seen, waited) = outcomes(server, &json!({})).await;
            assert!(
                waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
                "{}: the unanswered client waited {waited:?}",
                server.who
            );
            let info = Raw::connect(server.addr.parse().unwrap()).await.info;
            let request = svc.requests.lock().unwrap()[0].clone();
            // Signed by the server (checked by the service), for the configured issuer.
            assert_eq!(request["iss"], info["server_id"], "{}", server.who);
            assert_eq!(request["sub"], json!(issuer.public_key()));
            assert_eq!(request["aud"], "nats-authorization-request");
            assert_eq!(request["nats"]["server_id"]["id"], info["server_id"]);
            assert_eq!(request["nats"]["client_info"]["user"], "alice");
            assert_eq!(request["nats"]["connect_opts"]["pass"], "x");
            let exp = request["exp"].as_i64().unwrap() - request["iat"].as_i64().unwrap();
            assert_eq!(
                exp, 1,
                "{}: expires with the authorization timeout",
                server.who
            );
            requests.push((server.who, json_shape(&request)));
            results.push((server.who, seen));
            // The service's own user is not sent to it.
            let auth = attempt(&server.addr, json!({"user": "auth", "pass": "pw"}), "").await;
            assert_eq!(
                auth,
                ["PONG", "INFO account=AUTH", "PONG"],
                "{}",
                server.who
            );
            drop(svc);
        }
        same_everywhere(requests);
        let seen = same_everywhere(results);
        let refused = vec![
            "-ERR 'Authorization Violation'".to_string(),
            "<closed>".to_string(),
        ];
        let expected = vec![
            (
                "alice".to_string(),
                vec![
                    "PONG".to_string(),
                    "INFO account=APP".to_string(),
                    "-ERR 'Permissions Violation for Publish to \"b\"'".to_string(),
                    "PONG".to_string(),
                ],
            ),
            ("bob".to_string(), refused.clone()),
            ("empty".to_string(), refused.clone()),
            ("mallory".to_string(), refused.clone()),
            ("slow".to_string(), refused.clone()),
        ];
        assert_eq!(seen, expected);
        for server in &servers {
            for line in [
                "[WRN] Auth callout service returned an error: bob is not welcome".to_string(),
                "[WRN] Auth callout violation: \"no reason supplied\" on account \"AUTH\"".into(),
                "[WRN] No valid account \"NOWHERE\" for auth callout response on account \"AUTH\": \
                 account missing".into(),
                "[DBG] Authorization callout response not received in time on account \"AUTH\"".into(),
                "authentication error - User \"slow\"".into(),
            ] {
                log_line(&server.log, &line);
            }
        }
    }
}

#[tokio::test]
async fn operator_mode_callout_with_sealed_requests() {
    let scratch = Scratch::new("callout-operator");
    let operator = KeyPair::new_operator();
    let system = KeyPair::new_account();
    let (c, a, b) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let service_user = KeyPair::new_user();
    let xkey = XKey::new();
    let c_jwt = account_jwt(
        &operator,
        &c,
        "C",
        json!({"authorization": {"auth_users": [service_user.public_key()],
                                 "allowed_accounts": [a.public_key()],
                                 "xkey": xkey.public_key()}}),
    );
    let a_jwt = account_jwt(&operator, &a, "A", json!({}));
    let b_jwt = account_jwt(&operator, &b, "B", json!({}));
    let sys_jwt = account_jwt(&operator, &system, "SYS", json!({}));
    let config = format!(
        "operator: {op}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload {{\n  \
         {sys}: {sys_jwt}\n  {c}: {c_jwt}\n  {a}: {a_jwt}\n  {b}: {b_jwt}\n}}\n\
         authorization {{ timeout: 1 }}\n",
        op = operator_jwt(&operator, &system.public_key()),
        sys = system.public_key(),
        c = c.public_key(),
        a = a.public_key(),
        b = b.public_key(),
    );
    let servers = start_both(&scratch, &config);
    // Clients present a bearer "sentinel" user of C that may do nothing by itself.
    let sentinel = user_jwt(
        &c,
        &KeyPair::new_user(),
        json!({"bearer_token": true, "pub": {"deny": [">"]}, "sub": {"deny": [">"]}}),
        json!({"exp": now() + 600}),
    );
    let mut results = Vec::new();
    for server in &servers {
        let service_jwt = user_jwt(&c, &service_user, json!({}), json!({}));
        let seed = service_user.seed().unwrap();
        let client = async_nats::ConnectOptions::with_jwt(service_jwt, move |nonce| {
            let key = KeyPair::from_seed(&seed).unwrap();
            async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
        })
        .connect(&server.addr)
        .await
        .unwrap();
        let keys = Keys {
            issuer: c.seed().unwrap(),
            user_signer: Some(a.seed().unwrap()),
            xkey: Some(xkey.seed().unwrap()),
        };
        let b_seed = b.seed().unwrap();
        let svc = service(client, keys, move |claims| {
            // mallory is signed into B, which C may not place users in: the service signs
            // with A's key, so the user names B as the account it was issued for.
            let _ = &b_seed;
            let into_b = Verdict::Admit {
                aud: None,
                nats: json!({"issuer_account": KeyPair::from_seed(&b_seed).unwrap().public_key()}),
                name: "m",
            };
            verdict(claims, None, into_b)
        })
        .await;
        let (seen, _) = outcomes(server, &json!({"jwt": sentinel})).await;
        let request = svc.requests.lock().unwrap()[0].clone();
        assert_eq!(request["sub"], json!(c.public_key()));
        assert_eq!(request["nats"]["client_info"]["name_tag"], "u");
        assert!(request["nats"]["server_id"]["xkey"]
            .as_str()
            .unwrap()
            .starts_with('X'));
        results.push((server.who, named(seen, &a.public_key(), "A")));
    }
    let seen = same_everywhere(results);
    assert_eq!(seen[0].1[1], "INFO account=A");
    assert_eq!(
        seen[0].1[2],
        "-ERR 'Permissions Violation for Publish to \"b\"'"
    );
    for server in &servers {
        log_line(
            &server.log,
            "[WRN] Auth callout service returned an error: bob is not welcome",
        );
        log_line(
            &server.log,
            "not permitted as valid account option for auth callout",
        );
    }
}

/// A client connecting over TLS with a verified certificate: the request's `client_tls`
/// holds the TLS version, the cipher suite and the verified chain (the client's certificate,
/// then the CA's, in PEM), as nats-server fills it.
#[tokio::test]
async fn callout_requests_carry_the_clients_tls() {
    let pki = common::pki::Pki::new("callout-tls");
    let scratch = Scratch::new("callout-tls-servers");
    let issuer = KeyPair::new_account();
    let config = format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}\n\
         accounts {{\n  AUTH {{ users: [{{user: auth, password: pw}}] }}\n  APP {{}}\n}}\n\
         authorization {{\n  auth_callout {{\n    issuer: {}\n    auth_users: [auth]\n    \
         account: AUTH\n  }}\n}}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display(),
        issuer.public_key()
    );
    let tls_client = |opts: async_nats::ConnectOptions| {
        opts.require_tls(true)
            .add_root_certificates(pki.ca.clone())
            .add_client_certificate(pki.client_cert.clone(), pki.client_key.clone())
    };
    let mut seen = Vec::new();
    for server in &start_both(&scratch, &config) {
        let url = format!("tls://{}", server.addr);
        let auth = tls_client(async_nats::ConnectOptions::with_user_and_password(
            "auth".into(),
            "pw".into(),
        ))
        .connect(&url)
        .await
        .unwrap();
        let keys = Keys {
            issuer: issuer.seed().unwrap(),
            user_signer: None,
            xkey: None,
        };
        let svc = service(auth, keys, |_| Verdict::Admit {
            aud: Some("APP".into()),
            nats: json!({}),
            name: "alice",
        })
        .await;
        let alice = tls_client(async_nats::ConnectOptions::with_user_and_password(
            "alice".into(),
            "x".into(),
        ))
        .connect(&url)
        .await;
        assert!(alice.is_ok(), "{}: {alice:?}", server.who);
        let request = svc.requests.lock().unwrap()[0].clone();
        let mut client_tls = request["nats"]["client_tls"].clone();
        // The suite is named as Go names it; which one is agreed depends on the server's
        // preferences (rustls' and Go's differ), so only its form is compared.
        let cipher = client_tls["cipher"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256"
            ]
            .contains(&cipher.as_str()),
            "{}: {cipher}",
            server.who
        );
        client_tls["cipher"] = json!("a TLS 1.3 suite");
        seen.push((server.who, client_tls));
    }
    let client_tls = same_everywhere(seen);
    assert_eq!(client_tls["version"], "1.3");
    let chain: Vec<String> = client_tls["verified_chains"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].trim(), read(&pki.client_cert).trim());
    assert_eq!(chain[1].trim(), read(&pki.ca).trim());
    assert!(client_tls.get("certs").is_none());
}

/// The callout service connected to the other server of a two-node cluster: the request
/// crosses the route to it and its answer comes back to the server the client is on. Every
/// pairing (tern+tern, nats-server pairs, and both mixed ones) gives the same outcomes.
#[tokio::test]
async fn callout_service_on_another_cluster_node() {
    let issuer = KeyPair::new_account();
    let config = format!(
        "accounts {{\n  AUTH {{ users: [{{user: auth, password: pw}}] }}\n  APP {{}}\n}}\n\
         authorization {{\n  timeout: 2\n  auth_callout {{\n    issuer: {}\n    \
         auth_users: [auth]\n    account: AUTH\n  }}\n}}\n",
        issuer.public_key()
    );
    let mut results = Vec::new();
    for (who, client_bin, service_bin) in common::cluster::pairings() {
        let scratch = Scratch::new(&format!("callout-cluster-{who}"));
        let ((_one, client_addr), (_two, service_addr)) =
            common::cluster::with_free_ports(|p1, p2| {
                let one =
                    common::cluster::cluster_node(&scratch, &client_bin, "ONE", &config, p1, &[])?;
                let two = common::cluster::cluster_node(
                    &scratch,
                    &service_bin,
                    "TWO",
                    &config,
                    p2,
                    &[p1],
                )?;
                Some((one, two))
            });
        let auth = |addr: String| async move {
            async_nats::ConnectOptions::with_user_and_password("auth".into(), "pw".into())
                .connect(addr)
                .await
                .unwrap()
        };
        let keys = Keys {
            issuer: issuer.seed().unwrap(),
            user_signer: None,
            xkey: None,
        };
        let svc = service(auth(service_addr.clone()).await, keys, |claims| {
            verdict(claims, Some("APP"), Verdict::Refuse("no"))
        })
        .await;
        // Routed: a request from the first node is answered on the second (the service
        // subscribed before, so its interest is there too).
        let (near, far) = (
            auth(client_addr.clone()).await,
            auth(service_addr.clone()).await,
        );
        common::cluster::request_across(&near, &far, "probe").await;
        let mut seen = Vec::new();
        for user in ["alice", "bob"] {
            let connect = json!({"user": user, "pass": "x"});
            seen.push(attempt(&client_addr, connect, "PUB a.x 0\r\n\r\n").await);
        }
        let served = svc.requests.lock().unwrap().len();
        results.push((who, (seen, served >= 2)));
    }
    let (seen, served) = same_everywhere(results);
    assert!(served, "the service got the requests");
    assert!(
        seen[0].last().is_some_and(|l| l == "PONG"),
        "alice is admitted: {seen:?}"
    );
}
