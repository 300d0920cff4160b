//! Account resolvers that fetch accounts when a client needs them, side by side with
//! nats-server 2.15.1: the URL resolver (`resolver: URL(...)`, asking an account server
//! written here) and the cache resolver (`resolver { type: cache }`, asking a full resolver
//! of its cluster through the system account).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::jwt::{account_jwt, creds, now, operator_jwt, user_jwt};
use common::process::{reference_server, start_with_ports, Scratch};
use futures::StreamExt;
use nkeys::KeyPair;
use serde_json::{json, Value};

/// What the account server answers for a path.
#[derive(Clone)]
enum Reply {
    Body(String),
    /// The body, after this long.
    Slow(Duration),
}

/// A tiny HTTP account server on a thread of its own: `GET <path>` answered from its table
/// (`404 Not Found` for the rest), each request remembered. Stopped when dropped.
struct AccountServer {
    addr: String,
    table: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AccountServer {
    fn start() -> AccountServer {
        AccountServer::start_with(None)
    }

    /// An `https` account server presenting the test PKI's localhost certificate.
    fn start_tls(pki: &common::pki::Pki) -> AccountServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                common::pki::certs(&pki.server_cert),
                common::pki::private_key(&pki.server_key),
            )
            .unwrap();
        AccountServer::start_with(Some(Arc::new(config)))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> AccountServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let table: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (table, hits, stop) = (table.clone(), hits.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (table, hits, tls) = (table.clone(), hits.clone(), tls.clone());
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                            std::thread::spawn(move || match tls {
                                None => answer(stream, &table, &hits),
                                Some(tls) => {
                                    let Ok(session) = rustls::ServerConnection::new(tls) else {
                                        return;
                                    };
                                    let stream = rustls::StreamOwned::new(session, stream);
                                    answer(stream, &table, &hits)
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        AccountServer {
            addr,
            table,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwt/v1/accounts/", self.addr)
    }

    fn https_url(&self) -> String {
        format!("https://{}/jwt/v1/accounts/", self.addr)
    }

    fn serve(&self, path: &str, reply: Reply) {
        self.table.lock().unwrap().insert(path.to_string(), reply);
    }

    fn serve_account(&self, key: &str, jwt: &str) {
        self.serve(&format!("/jwt/v1/accounts/{key}"), Reply::Body(jwt.into()));
    }

    /// How many times `path` was asked for.
    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| *h == path)
            .count()
    }
}

impl Drop for AccountServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One request on `stream`, answered from `table` (bounded: 5 s to read it).
fn answer(
    mut stream: impl Read + Write,
    table: &Mutex<HashMap<String, Reply>>,
    hits: &Mutex<Vec<String>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or_default().to_string();
    hits.lock().unwrap().push(path.clone());
    let reply = table.lock().unwrap().get(&path).cloned();
    let (status, body) = match reply {
        Some(Reply::Body(body)) => ("200 OK", body),
        Some(Reply::Slow(delay)) => {
            std::thread::sleep(delay);
            ("200 OK", String::new())
        }
        None => ("404 Not Found", "404 page not found\n".to_string()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// The servers to run: tern, and nats-server when it is installed.
fn binaries() -> Vec<(&'static str, PathBuf)> {
    let mut binaries: Vec<(&str, PathBuf)> = vec![("tern", env!("CARGO_BIN_EXE_tern").into())];
    if let Some(reference) = reference_server() {
        binaries.push(("nats-server", reference));
    }
    binaries
}

/// A client logged in with `creds`, or the kind of error its CONNECT got.
async fn login(addr: &str, creds: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::with_credentials(creds)
        .unwrap()
        .max_reconnects(Some(1))
        .connect(format!("nats://{addr}"))
        .await
        .map_err(|e| format!("{:?}", e.kind()))
}

/// Whether `client` gets a message it sends itself (it is connected and may use its account).
async fn works(client: &async_nats::Client) -> bool {
    let subject = format!("check.{}", fastrand::u32(..));
    let Ok(mut sub) = client.subscribe(subject.clone()).await else {
        return false;
    };
    if client.publish(subject, "x".into()).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(2), sub.next()).await,
        Ok(Some(_))
    )
}

/// Whether each server's claims list (`$SYS.REQ.CLAIMS.LIST`) names account `key`, sorted.
async fn listing(sys: &async_nats::Client, key: &str) -> Vec<bool> {
    let mut names: Vec<bool> = ask_all(sys, "$SYS.REQ.CLAIMS.LIST", "", 2)
        .await
        .iter()
        .map(|answer| {
            answer["data"]
                .as_array()
                .is_some_and(|keys| keys.iter().any(|k| k == key))
        })
        .collect();
    names.sort();
    names
}

/// Whether `client` loses its connection within 2.5 s.
async fn cut_off(client: &async_nats::Client) -> bool {
    for _ in 0..50 {
        if client.connection_state() != async_nats::connection::State::Connected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The answers to `body` on `subject` from the system account (each server of a cluster
/// answers): `expected` of them, or those that came within 3 s; without their `server` part,
/// sorted.
async fn ask_all(
    sys: &async_nats::Client,
    subject: &str,
    body: &str,
    expected: usize,
) -> Vec<Value> {
    let inbox = sys.new_inbox();
    let mut sub = sys.subscribe(inbox.clone()).await.unwrap();
    sys.publish_with_reply(subject.to_string(), inbox, body.to_string().into())
        .await
        .unwrap();
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while answers.len() < expected {
        let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await else {
            break;
        };
        let mut value: Value = serde_json::from_slice(&msg.payload)
            .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&msg.payload) }));
        if let Some(map) = value.as_object_mut() {
            map.remove("server");
        }
        if let Some(keys) = value["data"].as_array_mut() {
            keys.sort_by_key(|k| k.to_string());
        }
        answers.push(value);
    }
    answers.sort_by_key(|v| v.to_string());
    answers
}

/// The `.creds` of a new user of `account`.
fn user_of(account: &KeyPair) -> String {
    let user = KeyPair::new_user();
    creds(&user_jwt(account, &user, json!({}), json!({})), &user)
}

/// Asserts that every transcript is step by step the same as the first.
fn all_alike(transcripts: &[(&str, Vec<Value>)]) {
    let (first_who, first) = &transcripts[0];
    for (who, other) in &transcripts[1..] {
        for (i, (a, b)) in first.iter().zip(other).enumerate() {
            assert_eq!(a, b, "step {i}: {first_who} and {who} differ");
        }
    }
}

/// An operator, its system account and account A, with a user of each.
struct World {
    operator: KeyPair,
    system: KeyPair,
    a: KeyPair,
    sys_creds: String,
    user: KeyPair,
    a_creds: String,
}

impl World {
    fn new() -> World {
        let operator = KeyPair::new_operator();
        let (system, a) = (KeyPair::new_account(), KeyPair::new_account());
        let (sys_user, user) = (KeyPair::new_user(), KeyPair::new_user());
        World {
            sys_creds: creds(
                &user_jwt(&system, &sys_user, json!({}), json!({})),
                &sys_user,
            ),
            a_creds: creds(&user_jwt(&a, &user, json!({}), json!({})), &user),
            operator,
            system,
            a,
            user,
        }
    }

    fn operator_line(&self) -> String {
        format!(
            "operator: {}\nsystem_account: {}\n",
            operator_jwt(&self.operator, &self.system.public_key()),
            self.system.public_key()
        )
    }

    fn account(&self, account: &KeyPair, name: &str, extra: Value) -> String {
        account_jwt(&self.operator, account, name, extra)
    }
}

/// A config file `name` in `dir` holding `text`.
fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test]
async fn url_resolver_fetches_accounts_from_the_account_server() {
    let world = World::new();
    let scratch = Scratch::new("resolver-url");
    let stranger = KeyPair::new_account();
    let stranger_user = KeyPair::new_user();
    let stranger_creds = creds(
        &user_jwt(&stranger, &stranger_user, json!({}), json!({})),
        &stranger_user,
    );
    let slow = KeyPair::new_account();
    let slow_user = KeyPair::new_user();
    let slow_creds = creds(
        &user_jwt(&slow, &slow_user, json!({}), json!({})),
        &slow_user,
    );
    let a_path = format!("/jwt/v1/accounts/{}", world.a.public_key());
    let mut transcripts = Vec::new();
    for (who, binary) in binaries() {
        let accounts = AccountServer::start();
        accounts.serve("/jwt/v1/accounts/", Reply::Body(String::new()));
        accounts.serve_account(
            &world.system.public_key(),
            &world.account(&world.system, "SYS", json!({})),
        );
        accounts.serve_account(
            &world.a.public_key(),
            &world.account(&world.a, "A", json!({})),
        );
        accounts.serve(
            &format!("/jwt/v1/accounts/{}", slow.public_key()),
            Reply::Slow(Duration::from_secs(3)),
        );
        let dir = scratch.0.join(who);
        let config = write_config(
            &dir,
            "url.conf",
            &format!(
                "{}resolver: URL({:?})\n",
                world.operator_line(),
                accounts.url()
            ),
        );
        let (process, addr, _) = start_with_ports(&binary, &config, &dir.join("ports"));
        let mut t: Vec<Value> = Vec::new();
        // At start: the account server was asked whether it answers, then for the system
        // account.
        t.push(json!(accounts.hits("/jwt/v1/accounts/")));
        let sys = login(&addr, &world.sys_creds).await.unwrap();
        // A is fetched when its user connects, once.
        let user = login(&addr, &world.a_creds).await.unwrap();
        t.push(json!(works(&user).await));
        let again = login(&addr, &world.a_creds).await.unwrap();
        t.push(json!(accounts.hits(&a_path)));
        drop(again);
        // An account the server does not know (404), and one it is too slow to give.
        t.push(json!(login(&addr, &stranger_creds).await.err()));
        let started = Instant::now();
        t.push(json!(login(&addr, &slow_creds).await.err()));
        t.push(json!(started.elapsed() < Duration::from_secs(3)));
        // A new JWT on the account server changes nothing until it is pushed.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let revoking = world.account(
            &world.a,
            "A",
            json!({"revocations": {world.user.public_key(): now()}}),
        );
        accounts.serve_account(&world.a.public_key(), &revoking);
        t.push(json!(works(&user).await));
        let key = world.a.public_key();
        let update = format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE");
        t.push(json!(ask_all(&sys, &update, &revoking, 1).await));
        t.push(json!(cut_off(&user).await));
        t.push(json!(login(&addr, &world.a_creds).await.err()));
        // An account the server has not fetched is not updated.
        let other = format!("$SYS.ACCOUNT.{}.CLAIMS.UPDATE", stranger.public_key());
        let stranger_jwt = world.account(&stranger, "S", json!({}));
        t.push(json!(ask_all(&sys, &other, &stranger_jwt, 1).await));
        t.push(json!(ask_all(&sys, &update, "garbage", 1).await));
        // A reload keeps what was fetched: A is not asked for again.
        let before = accounts.hits(&a_path);
        process.signal("HUP");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let other_user = KeyPair::new_user();
        let other_creds = creds(
            &user_jwt(&world.a, &other_user, json!({}), json!({})),
            &other_user,
        );
        t.push(json!(login(&addr, &other_creds).await.is_ok()));
        t.push(json!(accounts.hits(&a_path) - before));
        drop(process);
        transcripts.push((who, t));
    }
    let (_, tern) = &transcripts[0];
    assert_eq!(
        tern[0],
        json!(1),
        "the account server is asked once at start"
    );
    assert_eq!(tern[1], json!(true));
    assert_eq!(tern[2], json!(1), "A is fetched once");
    assert_eq!(tern[3], json!("AuthorizationViolation"));
    assert_eq!(tern[4], json!("AuthorizationViolation"));
    assert_eq!(tern[6], json!(true), "not fetched again before the push");
    assert_eq!(tern[8], json!(true), "the revoked user is closed");
    all_alike(&transcripts);
}

#[test]
fn url_resolver_needs_its_account_server_at_start() {
    let world = World::new();
    let scratch = Scratch::new("resolver-url-down");
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/jwt/v1/accounts/");
    let config = write_config(
        &scratch.0,
        "down.conf",
        &format!(
            "{}resolver: URL({url:?})\nlisten: 127.0.0.1:-1\n",
            world.operator_line()
        ),
    );
    let mut errors = Vec::new();
    for (who, binary) in binaries() {
        let out = common::process::run(&binary, &["-c", config.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "{who} started without its account server"
        );
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        let line = text
            .lines()
            .find(|l| l.contains("could not fetch"))
            .unwrap_or_else(|| panic!("{who}: {text}"))
            .to_string();
        // From the error on: `could not fetch <"url">: Get "url": dial tcp ...`.
        errors.push(line[line.find("could not fetch").unwrap()..].to_string());
    }
    for other in &errors[1..] {
        assert_eq!(&errors[0], other);
    }
    assert!(errors[0].starts_with(&format!("could not fetch <{url:?}>: Get {url:?}: dial tcp")));
}

/// A full resolver (`configs[0]`) and a cache resolver routed to it (`configs[1]`), the
/// cache's address and a system client on it once both servers answer.
async fn full_and_cache(
    scratch: &Scratch,
    binaries: [&Path; 2],
    configs: [&str; 2],
    world: &World,
) -> ([common::process::Process; 2], String, async_nats::Client) {
    let ((full, _), (cache, addr)) = common::cluster::with_free_ports(|f_port, c_port| {
        let f = common::cluster::cluster_node(scratch, binaries[0], "F", configs[0], f_port, &[])?;
        let c = common::cluster::cluster_node(
            scratch,
            binaries[1],
            "C",
            configs[1],
            c_port,
            &[f_port],
        )?;
        Some((f, c))
    });
    let sys = login(&addr, &world.sys_creds).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask_all(&sys, "$SYS.REQ.SERVER.PING", "", 2).await.len() < 2 {
        assert!(Instant::now() < deadline, "no route");
    }
    ([full, cache], addr, sys)
}

/// A full resolver and a cache resolver routed together; the cache has the system account
/// only and fetches the rest from the full one. Each pairing runs the same steps: tern with
/// tern, nats-server with nats-server, and a tern cache beside a nats-server full resolver.
#[tokio::test]
async fn cache_resolver_fetches_from_its_cluster() {
    let world = World::new();
    let stranger = KeyPair::new_account();
    let stranger_user = KeyPair::new_user();
    let stranger_creds = creds(
        &user_jwt(&stranger, &stranger_user, json!({}), json!({})),
        &stranger_user,
    );
    let sys_jwt = world.account(&world.system, "SYS", json!({}));
    let a_jwt = world.account(&world.a, "A", json!({}));
    let tern: PathBuf = env!("CARGO_BIN_EXE_tern").into();
    let mut pairings = vec![("tern+tern", tern.clone(), tern.clone())];
    if let Some(reference) = reference_server() {
        pairings.push(("nats+nats", reference.clone(), reference.clone()));
        pairings.push(("nats-full+tern-cache", reference, tern));
    }
    let mut transcripts = Vec::new();
    for (who, full_bin, cache_bin) in pairings {
        let scratch = Scratch::new(&format!("resolver-cache-{who}"));
        let (full_dir, cache_dir) = (scratch.0.join("full-jwt"), scratch.0.join("cache-jwt"));
        let full = format!(
            "{}resolver {{ type: full, dir: '{}' }}\nresolver_preload {{\n  {}: {sys_jwt}\n  \
             {}: {a_jwt}\n}}\n",
            world.operator_line(),
            full_dir.display(),
            world.system.public_key(),
            world.a.public_key(),
        );
        let cache = format!(
            "{}resolver {{ type: cache, dir: '{}', ttl: 2s }}\nresolver_preload {{\n  {}: \
             {sys_jwt}\n}}\n",
            world.operator_line(),
            cache_dir.display(),
            world.system.public_key(),
        );
        let (_nodes, addr, sys) =
            full_and_cache(&scratch, [&full_bin, &cache_bin], [&full, &cache], &world).await;
        let key = world.a.public_key();
        let cached = cache_dir.join(format!("{key}.jwt"));
        let mut t: Vec<Value> = Vec::new();
        // A is not in the cache: asked of the full resolver when its user connects.
        t.push(json!(cached.exists()));
        let user = match login(&addr, &world.a_creds).await {
            Ok(user) => user,
            Err(e) => {
                for entry in std::fs::read_dir(&scratch.0).unwrap().flatten() {
                    if entry.path().extension().is_some_and(|x| x == "log") {
                        eprintln!("{}", std::fs::read_to_string(entry.path()).unwrap());
                    }
                }
                panic!("{who}: {e}");
            }
        };
        t.push(json!(works(&user).await));
        t.push(json!(cached.exists()));
        t.push(json!(listing(&sys, &key).await));
        t.push(json!(login(&addr, &stranger_creds).await.err()));
        // An update reaches both: the full resolver stores it, the cache takes it (A is in
        // force there) and cuts the revoked user.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let revoking = world.account(
            &world.a,
            "A",
            json!({"revocations": {world.user.public_key(): now()}}),
        );
        let update = format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE");
        t.push(json!(ask_all(&sys, &update, &revoking, 2).await));
        t.push(json!(cut_off(&user).await));
        // An account the cache does not have is not taken.
        let stranger_jwt = world.account(&stranger, "S", json!({}));
        t.push(json!(
            ask_all(&sys, "$SYS.REQ.CLAIMS.UPDATE", &stranger_jwt, 2).await
        ));
        // The ttl passes: the files leave the cache, the accounts stay in force.
        let deadline = Instant::now() + Duration::from_secs(6);
        while cached.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        t.push(json!(cached.exists()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        t.push(json!(listing(&sys, &key).await));
        let later = KeyPair::new_user();
        let later_creds = creds(&user_jwt(&world.a, &later, json!({}), json!({})), &later);
        let later = login(&addr, &later_creds).await;
        t.push(json!(match &later {
            Ok(client) => works(client).await,
            Err(_) => false,
        }));
        transcripts.push((who, t));
    }
    let (_, first) = &transcripts[0];
    assert_eq!(first[0], json!(false));
    assert_eq!(first[1], json!(true), "A fetched from the full resolver");
    assert_eq!(first[2], json!(true), "and kept in the cache's directory");
    assert_eq!(first[4], json!("AuthorizationViolation"));
    assert_eq!(first[6], json!(true), "the revoked user is closed");
    assert_eq!(first[3], json!([true, true]));
    assert_eq!(first[8], json!(false), "the ttl removes the file");
    assert_eq!(
        first[9],
        json!([false, true]),
        "and the cache's list no longer names A"
    );
    all_alike(&transcripts);
}

/// The JWT files of a resolver directory: account key -> JWT.
fn stored(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let key = name.strip_suffix(".jwt")?.to_string();
                    Some((key, std::fs::read_to_string(e.path()).ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Two full resolvers with `interval: 1s`. The first takes an update of A and a new account
/// B while the second is not running; the second holds C, which the first never heard of,
/// and A's older JWT. Once routed, both directories end up the same (A's JWT issued last, B
/// and C on both) and B's users get in on the second. Run for tern+tern, nats-server pairs,
/// and both mixed pairs, with the same outcome.
#[tokio::test]
async fn full_resolvers_sync_their_directories_every_interval() {
    let world = World::new();
    let (b, c) = (KeyPair::new_account(), KeyPair::new_account());
    let b_creds = user_of(&b);
    let sys_jwt = world.account(&world.system, "SYS", json!({}));
    let old_a = world.account(&world.a, "A", json!({}));
    let c_jwt = world.account(&c, "C", json!({}));
    let mut transcripts = Vec::new();
    for (who, first_bin, second_bin) in common::cluster::pairings() {
        let scratch = Scratch::new(&format!("resolver-sync-{who}"));
        let (d1, d2) = (scratch.0.join("one-jwt"), scratch.0.join("two-jwt"));
        let config = |dir: &Path, preload: &[(&KeyPair, &str)]| {
            let lines: Vec<String> = preload
                .iter()
                .map(|(k, jwt)| format!("  {}: {jwt}\n", k.public_key()))
                .collect();
            format!(
                "{}resolver {{ type: full, dir: '{}', interval: 1s }}\nresolver_preload {{\n{}}}\n",
                world.operator_line(),
                dir.display(),
                lines.concat()
            )
        };
        let one = config(&d1, &[(&world.system, &sys_jwt), (&world.a, &old_a)]);
        let two = config(
            &d2,
            &[(&world.system, &sys_jwt), (&world.a, &old_a), (&c, &c_jwt)],
        );
        let (p1, p2) = (common::cluster::free_port(), common::cluster::free_port());
        let (_first, addr1) =
            common::cluster::cluster_node(&scratch, &first_bin, "ONE", &one, p1, &[])
                .expect("ONE starts");
        let sys = login(&addr1, &world.sys_creds).await.unwrap();
        // Issued a second later than the JWT the second node holds.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let new_a = world.account(&world.a, "A", json!({"tags": ["new"]}));
        let b_jwt = world.account(&b, "B", json!({}));
        let mut t: Vec<Value> = Vec::new();
        for jwt in [&new_a, &b_jwt] {
            t.push(json!(ask_all(&sys, "$SYS.REQ.CLAIMS.UPDATE", jwt, 1).await));
        }
        let (_second, addr2) =
            common::cluster::cluster_node(&scratch, &second_bin, "TWO", &two, p2, &[p1])
                .expect("TWO starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while (stored(&d1) != stored(&d2) || stored(&d1).len() < 4) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (one, two) = (stored(&d1), stored(&d2));
        t.push(json!(one == two));
        t.push(json!(one.len()));
        t.push(json!(two.get(&world.a.public_key()) == Some(&new_a)));
        t.push(json!(two.get(&b.public_key()) == Some(&b_jwt)));
        t.push(json!(one.get(&c.public_key()) == Some(&c_jwt)));
        // B is in force on the second node.
        let user = login(&addr2, &b_creds).await;
        t.push(json!(match &user {
            Ok(client) => works(client).await,
            Err(e) => {
                eprintln!("{who}: {e}");
                false
            }
        }));
        transcripts.push((who, t));
    }
    let (_, first) = &transcripts[0];
    assert_eq!(first[2], json!(true), "the directories are the same");
    assert_eq!(first[3], json!(4));
    assert_eq!(first[4], json!(true), "the newer A wins");
    assert_eq!(first[7], json!(true), "B's user gets in on the second node");
    all_alike(&transcripts);
}

/// `limit` on a full resolver: the directory keeps at most that many JWTs (the preloaded
/// system account is one); a new account beyond it is refused with nats-server's error,
/// while an account already stored still takes updates.
#[tokio::test]
async fn full_resolver_limit_refuses_new_accounts() {
    let world = World::new();
    let b = KeyPair::new_account();
    let sys_jwt = world.account(&world.system, "SYS", json!({}));
    let mut transcripts = Vec::new();
    for (who, binary) in binaries() {
        let scratch = Scratch::new(&format!("resolver-limit-{who}"));
        let dir = scratch.0.join("jwt");
        let config = write_config(
            &scratch.0,
            "limit.conf",
            &format!(
                "{}resolver {{ type: full, dir: '{}', limit: 2 }}\nresolver_preload {{\n  {}: \
                 {sys_jwt}\n}}\nlisten: 127.0.0.1:-1\n",
                world.operator_line(),
                dir.display(),
                world.system.public_key(),
            ),
        );
        let (_process, addr, _) = start_with_ports(&binary, &config, &scratch.0.join("ports"));
        let sys = login(&addr, &world.sys_creds).await.unwrap();
        let mut t: Vec<Value> = Vec::new();
        let a_jwt = world.account(&world.a, "A", json!({}));
        t.push(json!(
            ask_all(&sys, "$SYS.REQ.CLAIMS.UPDATE", &a_jwt, 1).await
        ));
        let b_jwt = world.account(&b, "B", json!({}));
        t.push(json!(
            ask_all(&sys, "$SYS.REQ.CLAIMS.UPDATE", &b_jwt, 1).await
        ));
        let b_update = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", b.public_key());
        t.push(json!(ask_all(&sys, &b_update, &b_jwt, 1).await));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let a_again = world.account(&world.a, "A", json!({"tags": ["again"]}));
        t.push(json!(
            ask_all(&sys, "$SYS.REQ.CLAIMS.UPDATE", &a_again, 1).await
        ));
        t.push(json!(stored(&dir).len()));
        t.push(json!(listing(&sys, &b.public_key()).await));
        transcripts.push((who, t));
    }
    let (_, tern) = &transcripts[0];
    assert_eq!(
        tern[1][0]["error"]["description"],
        json!("jwt update resulted in error - jwt store is full")
    );
    assert_eq!(tern[4], json!(2));
    all_alike(&transcripts);
}

/// `resolver_pinned_accounts`: only users of the listed accounts (and of the system
/// account) get in; the others are refused as nats-server refuses them, with its debug
/// line. A key that is not an account's stops the server with nats-server's error.
#[tokio::test]
async fn pinned_accounts_alone_may_connect() {
    let world = World::new();
    let b = KeyPair::new_account();
    let b_creds = user_of(&b);
    let preload = format!(
        "resolver: MEMORY\nresolver_preload {{\n  {}: {}\n  {}: {}\n  {}: {}\n}}\n",
        world.system.public_key(),
        world.account(&world.system, "SYS", json!({})),
        world.a.public_key(),
        world.account(&world.a, "A", json!({})),
        b.public_key(),
        world.account(&b, "B", json!({})),
    );
    let mut transcripts = Vec::new();
    for (who, binary) in binaries() {
        let scratch = Scratch::new(&format!("resolver-pinned-{who}"));
        let config = write_config(
            &scratch.0,
            "pinned.conf",
            &format!(
                "{}{preload}resolver_pinned_accounts: [{}]\nlisten: 127.0.0.1:-1\ndebug: true\n\
                 log_file: '{}'\n",
                world.operator_line(),
                world.a.public_key(),
                scratch.0.join("pinned.log").display(),
            ),
        );
        let (process, addr, monitor) = start_with_ports(&binary, &config, &scratch.0.join("ports"));
        let mut t: Vec<Value> = Vec::new();
        let a = login(&addr, &world.a_creds).await;
        t.push(json!(match &a {
            Ok(client) => works(client).await,
            Err(e) => json!(e) == json!(""),
        }));
        t.push(json!(login(&addr, &world.sys_creds).await.is_ok()));
        t.push(json!(login(&addr, &b_creds).await.err()));
        let (_, varz) = common::process::http_get(&monitor, "/varz").unwrap();
        let varz: Value = serde_json::from_str(&varz).unwrap();
        t.push(varz["pinned_account_fails"].clone());
        drop(process);
        let log = std::fs::read_to_string(scratch.0.join("pinned.log")).unwrap_or_default();
        let wanted = format!(
            "Account {} not listed as operator pinned account",
            b.public_key()
        );
        t.push(json!(log.contains(&wanted)));
        // A key that is not an account's.
        let bad = write_config(
            &scratch.0,
            "bad.conf",
            &format!(
                "{}{preload}resolver_pinned_accounts: [{}]\nlisten: 127.0.0.1:-1\n",
                world.operator_line(),
                world.user.public_key(),
            ),
        );
        let out = common::process::run(&binary, &["-c", bad.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        let wanted = format!(
            "pinned account key {:?} is not a valid public account nkey",
            world.user.public_key()
        );
        t.push(json!([out.status.success(), text.contains(&wanted)]));
        transcripts.push((who, t));
    }
    let (_, tern) = &transcripts[0];
    assert_eq!(tern[0], json!(true), "A is pinned");
    assert_eq!(tern[1], json!(true), "the system account is always pinned");
    assert_eq!(tern[2], json!("AuthorizationViolation"));
    assert!(
        tern[3].as_u64().is_some_and(|n| n >= 1),
        "/varz counts B's refusal"
    );
    assert_eq!(tern[4], json!(true), "the debug line names B");
    assert_eq!(tern[5], json!([false, true]));
    all_alike(&transcripts);
}

/// An account fetched for a new client is put in force without checking the clients of the
/// other accounts again; an update of an account checks its own clients only (tern's
/// `rechecked` counter). In-process, with the URL resolver.
#[tokio::test]
async fn a_fetched_account_leaves_the_other_clients_alone() {
    let world = World::new();
    let b = KeyPair::new_account();
    let b_creds = user_of(&b);
    let accounts = AccountServer::start();
    accounts.serve("/jwt/v1/accounts/", Reply::Body(String::new()));
    accounts.serve_account(
        &world.system.public_key(),
        &world.account(&world.system, "SYS", json!({})),
    );
    accounts.serve_account(
        &world.a.public_key(),
        &world.account(&world.a, "A", json!({})),
    );
    accounts.serve_account(&b.public_key(), &world.account(&b, "B", json!({})));
    let scratch = Scratch::new("resolver-scaling");
    let config = write_config(
        &scratch.0,
        "url.conf",
        &format!(
            "{}resolver: URL({:?})\n",
            world.operator_line(),
            accounts.url()
        ),
    );
    let mut opts = tern::config::Options::default();
    tern::config::load(&config, &mut opts, &mut Vec::new()).unwrap();
    let server = common::TestServer::with(opts).await;
    let addr = server.addr.to_string();
    let sys = login(&addr, &world.sys_creds).await.unwrap();
    let mut a_clients = Vec::new();
    for _ in 0..5 {
        a_clients.push(login(&addr, &world.a_creds).await.unwrap());
    }
    let rechecked = || server.shared.rechecked.load(Ordering::Relaxed);
    let before = rechecked();
    // B is fetched for its user: nobody is checked again.
    let b_client = login(&addr, &b_creds).await.unwrap();
    assert!(works(&b_client).await);
    assert_eq!(rechecked() - before, 0, "fetching B checks no client again");
    for client in &a_clients {
        assert!(works(client).await);
    }
    // An update of A checks A's five clients, not B's or the system account's.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let key = world.a.public_key();
    let update = format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE");
    let a_again = world.account(&world.a, "A", json!({"tags": ["again"]}));
    let answer = ask_all(&sys, &update, &a_again, 1).await;
    assert_eq!(answer[0]["data"]["message"], json!("jwt updated"));
    assert_eq!(
        rechecked() - before,
        5,
        "only A's clients are checked again"
    );
    server.shutdown().await;
}

/// The URL resolver over `https`: the account server presents a certificate from a CA made
/// here, which `resolver_tls { ca_file }` trusts; without it the server does not start (the
/// account server cannot be verified).
#[tokio::test]
async fn url_resolver_fetches_over_https() {
    let world = World::new();
    let pki = common::pki::Pki::new("resolver-https-pki");
    let a_path = format!("/jwt/v1/accounts/{}", world.a.public_key());
    let mut transcripts = Vec::new();
    for (who, binary) in binaries() {
        let accounts = AccountServer::start_tls(&pki);
        accounts.serve("/jwt/v1/accounts/", Reply::Body(String::new()));
        accounts.serve_account(
            &world.system.public_key(),
            &world.account(&world.system, "SYS", json!({})),
        );
        accounts.serve_account(
            &world.a.public_key(),
            &world.account(&world.a, "A", json!({})),
        );
        let dir = Scratch::new(&format!("resolver-https-{who}"));
        let resolver = format!(
            "{}resolver: URL({:?})\nlisten: 127.0.0.1:-1\n",
            world.operator_line(),
            accounts.https_url()
        );
        let config = write_config(
            &dir.0,
            "https.conf",
            &format!(
                "{resolver}resolver_tls {{ ca_file: '{}' }}\n",
                pki.ca.display()
            ),
        );
        let (process, addr, _) = start_with_ports(&binary, &config, &dir.0.join("ports"));
        let mut t: Vec<Value> = Vec::new();
        let user = login(&addr, &world.a_creds).await;
        t.push(json!(match &user {
            Ok(client) => works(client).await,
            Err(e) => json!(e) == json!(""),
        }));
        t.push(json!(accounts.hits(&a_path)));
        drop(process);
        let untrusting = write_config(&dir.0, "untrusting.conf", &resolver);
        let out = common::process::run(&binary, &["-c", untrusting.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        t.push(json!([
            out.status.success(),
            text.contains(&format!("could not fetch <{:?}>", accounts.https_url()))
        ]));
        transcripts.push((who, t));
    }
    let (_, tern) = &transcripts[0];
    assert_eq!(tern[0], json!(true), "A is fetched over https");
    assert_eq!(tern[1], json!(1));
    assert_eq!(tern[2], json!([false, true]));
    all_alike(&transcripts);
}

/// A cache resolver with `limit: 2` beside a full resolver: as users of A, B and C connect
/// to it, each account is fetched and stored, and the least recently stored file goes to
/// make room; the accounts stay in force. Same pairings as the cache test above.
#[tokio::test]
async fn cache_resolver_limit_evicts_the_oldest() {
    let world = World::new();
    let (b, c) = (KeyPair::new_account(), KeyPair::new_account());
    let (b_creds, c_creds) = (user_of(&b), user_of(&c));
    let sys_jwt = world.account(&world.system, "SYS", json!({}));
    let tern: PathBuf = env!("CARGO_BIN_EXE_tern").into();
    let mut pairings = vec![("tern+tern", tern.clone(), tern.clone())];
    if let Some(reference) = reference_server() {
        pairings.push(("nats+nats", reference.clone(), reference.clone()));
        pairings.push(("nats-full+tern-cache", reference, tern));
    }
    let keys = [
        world.system.public_key(),
        world.a.public_key(),
        b.public_key(),
        c.public_key(),
    ];
    let mut transcripts = Vec::new();
    for (who, full_bin, cache_bin) in pairings {
        let scratch = Scratch::new(&format!("resolver-cache-limit-{who}"));
        let (full_dir, cache_dir) = (scratch.0.join("full-jwt"), scratch.0.join("cache-jwt"));
        let full = format!(
            "{}resolver {{ type: full, dir: '{}' }}\nresolver_preload {{\n  {}: {sys_jwt}\n  \
             {}: {}\n  {}: {}\n  {}: {}\n}}\n",
            world.operator_line(),
            full_dir.display(),
            keys[0],
            keys[1],
            world.account(&world.a, "A", json!({})),
            keys[2],
            world.account(&b, "B", json!({})),
            keys[3],
            world.account(&c, "C", json!({})),
        );
        let cache = format!(
            "{}resolver {{ type: cache, dir: '{}', limit: 2 }}\nresolver_preload {{\n  {}: \
             {sys_jwt}\n}}\n",
            world.operator_line(),
            cache_dir.display(),
            keys[0],
        );
        let (_nodes, addr, _sys) =
            full_and_cache(&scratch, [&full_bin, &cache_bin], [&full, &cache], &world).await;
        let in_cache = || -> Vec<bool> {
            let kept = stored(&cache_dir);
            keys.iter().map(|k| kept.contains_key(k)).collect()
        };
        let mut t: Vec<Value> = vec![json!(in_cache())];
        let mut users = Vec::new();
        for user in [&world.a_creds, &b_creds, &c_creds] {
            let client = login(&addr, user).await;
            t.push(json!(match &client {
                Ok(client) => works(client).await,
                Err(e) => json!(e) == json!(""),
            }));
            t.push(json!(in_cache()));
            users.push(client);
        }
        // The evicted accounts are still in force.
        let again = login(&addr, &world.a_creds).await;
        t.push(json!(again.is_ok()));
        transcripts.push((who, t));
    }
    let (_, first) = &transcripts[0];
    assert_eq!(first[0], json!([true, false, false, false]));
    assert_eq!(
        first[6],
        json!([false, false, true, true]),
        "two files at most"
    );
    all_alike(&transcripts);
}
