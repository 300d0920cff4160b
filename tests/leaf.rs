//! Leafnodes between separate server processes, tern and nats-server 2.15.1 in every pairing
//! (the nats-server pair is the reference the others are held to): a hub H with a leafnode
//! port and a leaf L that dials it. Real clients on each side exchange messages both ways:
//! plain subscriptions, queue groups that prefer their local members, request/reply and
//! headers. Then what a tern leaf does when its hub goes away (reconnect with its interest,
//! failover to the next URL), loops, deny rules and account binding.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cluster::{
    exactly_once, logged_addr, request_across, standalone, until_routed, SETTLE, TERN,
};
use common::jwt::{account_jwt, creds, operator_jwt, user_jwt};
use common::pki::Pki;
use common::process::{http_get, json_shape, monitor_addr, reference_server, Process, Scratch};
use futures::StreamExt;
use nkeys::KeyPair;
use serde_json::json;

/// One server process.
struct Srv {
    process: Process,
    /// Client `host:port`.
    client: String,
    /// Leafnode `host:port`, when it listens for leafnodes.
    leaf: Option<String>,
    log: std::path::PathBuf,
}

/// Starts `binary` as server `name` with `config` (beyond its client port and name).
fn start(scratch: &Scratch, binary: &Path, name: &str, config: &str) -> Srv {
    let (process, text) = standalone(scratch, binary, name, config);
    Srv {
        process,
        client: logged_addr(&text, "Listening for client connections on ").unwrap(),
        leaf: logged_addr(&text, "Listening for leafnode connections on "),
        log: scratch.0.join(format!("{name}.log")),
    }
}

/// A hub listening for leafnodes on a random port.
fn hub(scratch: &Scratch, binary: &Path, name: &str, extra: &str) -> Srv {
    start(
        scratch,
        binary,
        name,
        &format!("leafnodes {{ listen: \"127.0.0.1:-1\" }}\n{extra}"),
    )
}

/// A leaf dialing `hubs` (leafnode `host:port`s, tried in turn).
fn leaf(scratch: &Scratch, binary: &Path, name: &str, hubs: &[&str], remote: &str) -> Srv {
    let urls: Vec<String> = hubs.iter().map(|h| format!("\"nats://{h}\"")).collect();
    start(
        scratch,
        binary,
        name,
        &format!(
            "leafnodes {{ reconnect_interval: \"250ms\", remotes: [ {{ urls: [{}] {remote} }} ] }}",
            urls.join(", ")
        ),
    )
}

async fn connect(srv: &Srv) -> async_nats::Client {
    async_nats::connect(format!("nats://{}", srv.client))
        .await
        .unwrap()
}

/// Everything a user does across the link between `hub` and `leaf`, both ways.
async fn exchange(hub: &Srv, leaf: &Srv) {
    let h = connect(hub).await;
    let l = connect(leaf).await;
    for (from, to, name) in [(&h, &l, "down"), (&l, &h, "up")] {
        // Plain subscriptions, exactly once.
        let subject = format!("plain.{name}");
        let mut sub = to.subscribe(subject.clone()).await.unwrap();
        to.flush().await.unwrap();
        exactly_once(from, &mut sub, &subject, 50).await;

        // Headers cross intact.
        let subject = format!("hdr.{name}");
        let mut sub = to.subscribe(subject.clone()).await.unwrap();
        to.flush().await.unwrap();
        until_routed(from, &mut sub, &subject).await;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("X-Leaf", "yes");
        from.publish_with_headers(subject.clone(), headers, "with headers".into())
            .await
            .unwrap();
        let msg = tokio::time::timeout(SETTLE, sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload, "with headers");
        let got = msg.headers.expect("headers");
        assert_eq!(got.get("X-Leaf").map(|v| v.as_str()), Some("yes"));

        // Request/reply: the responder on the other side, its reply comes back.
        request_across(from, to, &format!("svc.{name}")).await;

        // A queue group with a member on each side: the publisher's side takes every message.
        let subject = format!("work.{name}");
        let mut near = from
            .queue_subscribe(subject.clone(), "workers".into())
            .await
            .unwrap();
        let mut far = to
            .queue_subscribe(subject.clone(), "workers".into())
            .await
            .unwrap();
        from.flush().await.unwrap();
        to.flush().await.unwrap();
        // The far member's interest has arrived once a plain probe sent after it does.
        let probe = format!("{subject}.probe");
        let mut probe_sub = to.subscribe(probe.clone()).await.unwrap();
        to.flush().await.unwrap();
        until_routed(from, &mut probe_sub, &probe).await;
        for n in 0..20u32 {
            from.publish(subject.clone(), n.to_string().into())
                .await
                .unwrap();
        }
        from.flush().await.unwrap();
        for n in 0..20u32 {
            let msg = tokio::time::timeout(SETTLE, near.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(msg.payload, n.to_string());
        }
        let stray = tokio::time::timeout(Duration::from_millis(300), far.next()).await;
        assert!(stray.is_err(), "{subject}: the remote member got one");
        // With the near member gone, the far one takes them.
        near.unsubscribe().await.unwrap();
        from.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        from.publish(subject.clone(), "over".into()).await.unwrap();
        from.flush().await.unwrap();
        let msg = tokio::time::timeout(SETTLE, far.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload, "over");
    }
}

async fn pairing(hub_binary: &Path, leaf_binary: &Path, name: &str) {
    let scratch = Scratch::new(name);
    let h = hub(&scratch, hub_binary, "H", "");
    let l = leaf(
        &scratch,
        leaf_binary,
        "L",
        &[h.leaf.as_deref().unwrap()],
        "",
    );
    exchange(&h, &l).await;
}

#[tokio::test]
async fn nats_server_leaf_on_a_tern_hub() {
    let Some(reference) = reference_server() else {
        return;
    };
    pairing(Path::new(TERN), &reference, "leaf-ns-on-tern").await;
}

#[tokio::test]
async fn tern_leaf_on_a_nats_server_hub() {
    let Some(reference) = reference_server() else {
        return;
    };
    pairing(&reference, Path::new(TERN), "leaf-tern-on-ns").await;
}

#[tokio::test]
async fn tern_leaf_on_a_tern_hub() {
    pairing(Path::new(TERN), Path::new(TERN), "leaf-tern-on-tern").await;
}

/// The reference pairing: the same exchange holds between two nats-servers.
#[tokio::test]
async fn nats_server_leaf_on_a_nats_server_hub() {
    let Some(reference) = reference_server() else {
        return;
    };
    pairing(&reference, &reference, "leaf-ns-on-ns").await;
}

/// Leaf TLS: the hub's `leafnodes { tls }` (INFO in plaintext with `tls_required`, then the
/// handshake) and the remote's `tls` block with a `tls://` URL; the hub asks for and checks
/// the leaf's certificate. The other end is nats-server in the mixed pairings, so a link that
/// skipped TLS on either side would not come up.
async fn tls_pairing(hub_binary: &Path, leaf_binary: &Path, name: &str) {
    tls_first_pairing(hub_binary, leaf_binary, name, "", "").await;
}

/// As [`tls_pairing`], with `hub_first` and `leaf_first` added to the hub's and the remote's
/// `tls` blocks (`handshake_first` settings).
async fn tls_first_pairing(
    hub_binary: &Path,
    leaf_binary: &Path,
    name: &str,
    hub_first: &str,
    leaf_first: &str,
) {
    let scratch = Scratch::new(name);
    let pki = Pki::new(&format!("{name}-pki"));
    let tls = format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, timeout: 2 }}",
        pki.server_cert, pki.server_key, pki.ca
    );
    let h = start(
        &scratch,
        hub_binary,
        "H",
        &format!(
            "leafnodes {{ listen: \"127.0.0.1:-1\", {} }}",
            tls.replace(
                "timeout: 2",
                &format!("timeout: 2, verify: true{hub_first}")
            )
        ),
    );
    let hub_addr = h.leaf.clone().unwrap();
    let tls = tls.replace("timeout: 2", &format!("timeout: 2{leaf_first}"));
    let l = start(
        &scratch,
        leaf_binary,
        "L",
        &format!(
            "leafnodes {{ reconnect_interval: \"250ms\", remotes: [ {{ urls: [\"tls://{hub_addr}\"], {tls} }} ] }}"
        ),
    );
    exchange(&h, &l).await;
}

/// `handshake_first` on both sides: the leaf starts the TLS handshake as soon as it has
/// dialed, the hub sends its INFO over TLS; nats-server on the other side in both roles.
#[tokio::test]
async fn handshake_first_on_both_sides_with_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let first = ", handshake_first: true";
    let tern = Path::new(TERN);
    tls_first_pairing(&reference, tern, "leaf-tls1-tern-on-ns", first, first).await;
    tls_first_pairing(tern, &reference, "leaf-tls1-ns-on-tern", first, first).await;
    tls_first_pairing(tern, tern, "leaf-tls1-tern-on-tern", first, first).await;
}

/// A hub with `handshake_first` and a fallback delay takes a leaf that waits for the INFO (it
/// sends the INFO in plaintext once the delay has passed in silence) and one that starts
/// with TLS; nats-server's hub does the same with tern's leaf.
#[tokio::test]
async fn handshake_first_fallback_takes_either_kind_of_leaf() {
    let Some(reference) = reference_server() else {
        return;
    };
    let fallback = ", handshake_first: \"300ms\"";
    let tern = Path::new(TERN);
    tls_first_pairing(tern, &reference, "leaf-tlsfb-ns-on-tern", fallback, "").await;
    tls_first_pairing(tern, tern, "leaf-tlsfb-tern-on-tern", fallback, "").await;
    let first = ", handshake_first: true";
    tls_first_pairing(tern, &reference, "leaf-tlsfb1-ns-on-tern", fallback, first).await;
    tls_first_pairing(&reference, tern, "leaf-tlsfb-tern-on-ns", fallback, "").await;
}

#[tokio::test]
async fn tern_leaf_on_a_nats_server_hub_over_tls() {
    let Some(reference) = reference_server() else {
        return;
    };
    tls_pairing(&reference, Path::new(TERN), "leaf-tls-tern-on-ns").await;
}

#[tokio::test]
async fn nats_server_leaf_on_a_tern_hub_over_tls() {
    let Some(reference) = reference_server() else {
        return;
    };
    tls_pairing(Path::new(TERN), &reference, "leaf-tls-ns-on-tern").await;
}

#[tokio::test]
async fn tern_leaf_on_a_tern_hub_over_tls() {
    tls_pairing(Path::new(TERN), Path::new(TERN), "leaf-tls-tern-on-tern").await;
}

/// A remote with `credentials` (a `.creds` file) attached to a hub in operator mode: the leaf
/// sends the user JWT and signs the hub's nonce with the seed; the link binds the user's
/// account on the hub, and messages cross both ways.
async fn credentials_pairing(hub_binary: &Path, leaf_binary: &Path, name: &str) {
    let scratch = Scratch::new(name);
    let operator = KeyPair::new_operator();
    let (system, account) = (KeyPair::new_account(), KeyPair::new_account());
    let creds_file = |name: &str| {
        let user = KeyPair::new_user();
        let path = scratch.0.join(format!("{name}.creds"));
        let jwt = user_jwt(&account, &user, json!({}), json!({}));
        std::fs::write(&path, creds(&jwt, &user)).unwrap();
        path
    };
    let (leaf_creds, client_creds) = (creds_file("leaf"), creds_file("client"));
    let h = start(
        &scratch,
        hub_binary,
        "H",
        &format!(
            "operator: {}\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload {{\n  {sys}: {}\n  {acc}: {}\n}}\n\
             leafnodes {{ listen: \"127.0.0.1:-1\" }}",
            operator_jwt(&operator, &system.public_key()),
            account_jwt(&operator, &system, "SYS", json!({})),
            account_jwt(&operator, &account, "A", json!({})),
            sys = system.public_key(),
            acc = account.public_key(),
        ),
    );
    let l = leaf(
        &scratch,
        leaf_binary,
        "L",
        &[h.leaf.as_deref().unwrap()],
        &format!(", credentials: {leaf_creds:?}"),
    );
    let hub_client = async_nats::ConnectOptions::with_credentials_file(client_creds)
        .await
        .unwrap()
        .connect(h.client.as_str())
        .await
        .unwrap();
    let leaf_client = connect(&l).await;
    for (from, to, name) in [
        (&hub_client, &leaf_client, "down"),
        (&leaf_client, &hub_client, "up"),
    ] {
        let subject = format!("creds.{name}");
        let mut sub = to.subscribe(subject.clone()).await.unwrap();
        to.flush().await.unwrap();
        exactly_once(from, &mut sub, &subject, 20).await;
    }
}

#[tokio::test]
async fn a_tern_leaf_with_credentials_on_an_operator_mode_nats_server_hub() {
    let Some(reference) = reference_server() else {
        return;
    };
    credentials_pairing(&reference, Path::new(TERN), "leaf-creds-ns").await;
}

#[tokio::test]
async fn a_tern_leaf_with_credentials_on_an_operator_mode_tern_hub() {
    credentials_pairing(Path::new(TERN), Path::new(TERN), "leaf-creds-tern").await;
}

#[tokio::test]
async fn a_nats_server_leaf_with_credentials_on_an_operator_mode_tern_hub() {
    let Some(reference) = reference_server() else {
        return;
    };
    credentials_pairing(Path::new(TERN), &reference, "leaf-creds-ns-on-tern").await;
}

/// A remote with `nkey` (a user seed) signs the hub's nonce; the hub knows the user by its
/// public key. nats-server and tern in turn as the hub.
#[tokio::test]
async fn a_tern_leaf_with_an_nkey_joins_its_hub() {
    for hub_binary in [Some(TERN.into()), reference_server()]
        .into_iter()
        .flatten()
    {
        let scratch = Scratch::new("leaf-nkey");
        let user = KeyPair::new_user();
        let h = hub(
            &scratch,
            &hub_binary,
            "H",
            &format!(
                "authorization {{ users: [ {{ nkey: {} }} ] }}",
                user.public_key()
            ),
        );
        let l = leaf(
            &scratch,
            Path::new(TERN),
            "L",
            &[h.leaf.as_deref().unwrap()],
            &format!(", nkey: {}", user.seed().unwrap()),
        );
        let hub_client = async_nats::ConnectOptions::with_nkey(user.seed().unwrap())
            .connect(h.client.as_str())
            .await
            .unwrap();
        let leaf_client = connect(&l).await;
        let mut sub = leaf_client.subscribe("nkey.down").await.unwrap();
        leaf_client.flush().await.unwrap();
        exactly_once(&hub_client, &mut sub, "nkey.down", 20).await;
    }
}

/// A tern leaf whose hub goes away dials it again and tells it all of its interest: a
/// subscription made before the hub restarted still gets the hub's messages.
#[tokio::test]
async fn a_leaf_that_reconnects_keeps_its_interest() {
    for hub_binary in [Some(TERN.into()), reference_server()]
        .into_iter()
        .flatten()
    {
        let scratch = Scratch::new("leaf-reconnect");
        let mut h = hub(&scratch, &hub_binary, "H", "");
        let port = h.leaf.clone().unwrap();
        let l = leaf(&scratch, Path::new(TERN), "L", &[&port], "");
        let lc = connect(&l).await;
        let mut sub = lc.subscribe("kept").await.unwrap();
        lc.flush().await.unwrap();
        {
            let hc = connect(&h).await;
            until_routed(&hc, &mut sub, "kept").await;
        }
        drop(h.process);
        // The same leafnode port again.
        let hub_port = port.rsplit(':').next().unwrap();
        h = start(
            &scratch,
            &hub_binary,
            "H2",
            &format!("leafnodes {{ listen: \"127.0.0.1:{hub_port}\" }}"),
        );
        let hc = connect(&h).await;
        exactly_once(&hc, &mut sub, "kept", 10).await;
    }
}

/// A tern leaf with two hub URLs moves to the second when the first goes away.
#[tokio::test]
async fn a_leaf_fails_over_to_the_next_url() {
    let scratch = Scratch::new("leaf-failover");
    let reference = reference_server();
    let second_binary = reference.as_deref().unwrap_or(Path::new(TERN));
    let first = hub(&scratch, Path::new(TERN), "H1", "");
    let second = hub(&scratch, second_binary, "H2", "");
    let l = leaf(
        &scratch,
        Path::new(TERN),
        "L",
        &[
            first.leaf.as_deref().unwrap(),
            second.leaf.as_deref().unwrap(),
        ],
        "",
    );
    let lc = connect(&l).await;
    let mut sub = lc.subscribe("moved").await.unwrap();
    lc.flush().await.unwrap();
    let c1 = connect(&first).await;
    until_routed(&c1, &mut sub, "moved").await;
    drop(first.process);
    let c2 = connect(&second).await;
    exactly_once(&c2, &mut sub, "moved", 10).await;
}

/// A port free on loopback now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Three servers each the hub of the next (A dials C, B dials A, C dials B) make a loop: a
/// hub's loop detection subject travels around and comes back to it, and it refuses the link
/// with nats-server's error. One of the three is nats-server, so each side sees the other's.
#[tokio::test]
async fn a_loop_is_detected() {
    let scratch = Scratch::new("leaf-loop");
    let ports = [free_port(), free_port(), free_port()];
    let conf = |own: u16, hub: u16| {
        format!(
            "leafnodes {{ listen: \"127.0.0.1:{own}\", reconnect_interval: \"250ms\", \
             remotes: [ {{ url: \"nats://127.0.0.1:{hub}\" }} ] }}"
        )
    };
    let third = reference_server().unwrap_or_else(|| TERN.into());
    let a = start(&scratch, Path::new(TERN), "A", &conf(ports[0], ports[2]));
    let b = start(&scratch, Path::new(TERN), "B", &conf(ports[1], ports[0]));
    let c = start(&scratch, &third, "C", &conf(ports[2], ports[1]));
    let logs = [&a.log, &b.log, &c.log];
    let found = common::cluster::converge(&true, || {
        logs.iter().any(|log| {
            std::fs::read_to_string(log).unwrap_or_default().contains(
                "Loop detected for leafnode account=\"$G\". Delaying attempt to reconnect for 30s",
            )
        })
    });
    let text: Vec<String> = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap_or_default())
        .collect();
    assert!(found, "no loop reported:\n{}", text.join("\n----\n"));
}

/// `deny_exports` keeps a leaf's messages on those subjects home; `deny_imports` keeps the
/// hub's away; the rest crosses.
#[tokio::test]
async fn deny_rules_hold_in_both_directions() {
    let scratch = Scratch::new("leaf-deny");
    let h = hub(&scratch, Path::new(TERN), "H", "");
    let l = leaf(
        &scratch,
        Path::new(TERN),
        "L",
        &[h.leaf.as_deref().unwrap()],
        ", deny_exports: [\"secret.>\"], deny_imports: \"private.*\"",
    );
    let hc = connect(&h).await;
    let lc = connect(&l).await;
    // Allowed subjects cross both ways.
    let mut up = hc.subscribe("open.up").await.unwrap();
    let mut secret = hc.subscribe("secret.x").await.unwrap();
    hc.flush().await.unwrap();
    until_routed(&lc, &mut up, "open.up").await;
    let mut down = lc.subscribe("open.down").await.unwrap();
    let mut private = lc.subscribe("private.x").await.unwrap();
    lc.flush().await.unwrap();
    until_routed(&hc, &mut down, "open.down").await;
    lc.publish("secret.x", "no".into()).await.unwrap();
    lc.flush().await.unwrap();
    hc.publish("private.x", "no".into()).await.unwrap();
    hc.flush().await.unwrap();
    let leaked = tokio::time::timeout(Duration::from_millis(500), secret.next()).await;
    assert!(leaked.is_err(), "deny_exports let one through");
    let leaked = tokio::time::timeout(Duration::from_millis(500), private.next()).await;
    assert!(leaked.is_err(), "deny_imports let one through");
}

/// A leaf user bound to an account on the hub reaches that account's clients only; the
/// remote's `account` binds the leaf side's account.
#[tokio::test]
async fn leaf_users_and_remotes_bind_accounts() {
    for hub_binary in [Some(TERN.into()), reference_server()]
        .into_iter()
        .flatten()
    {
        let scratch = Scratch::new("leaf-accounts");
        let h = start(
            &scratch,
            &hub_binary,
            "H",
            "accounts { A { users: [ {user: a, password: a} ] }, B { users: [ {user: b, password: b} ] } }\n\
             leafnodes { listen: \"127.0.0.1:-1\", \
             authorization { users: [ {user: leaf, password: pw, account: A} ] } }",
        );
        let port = h.leaf.clone().unwrap();
        let l = start(
            &scratch,
            Path::new(TERN),
            "L",
            &format!(
                "accounts {{ X {{ users: [ {{user: x, password: x}} ] }} }}\n\
                 leafnodes {{ remotes: [ {{ url: \"nats://leaf:pw@{port}\", account: X }} ] }}"
            ),
        );
        let user = |srv: &Srv, user: &str| {
            let url = format!("nats://{}", srv.client);
            let user = user.to_string();
            async move {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), user)
                    .connect(url)
                    .await
                    .unwrap()
            }
        };
        let a = user(&h, "a").await;
        let b = user(&h, "b").await;
        let x = user(&l, "x").await;
        let mut in_x = x.subscribe("acct").await.unwrap();
        x.flush().await.unwrap();
        exactly_once(&a, &mut in_x, "acct", 5).await;
        b.publish("acct", "from B".into()).await.unwrap();
        b.flush().await.unwrap();
        let stray = tokio::time::timeout(Duration::from_millis(500), in_x.next()).await;
        assert!(stray.is_err(), "account B reached the leaf");
    }
}

/// The hub's `/leafz`, `/varz` and `/accountz` show the link with nats-server's fields and
/// counts, tern beside nats-server as the hub of a nats-server leaf.
#[tokio::test]
async fn monitoring_shows_the_link_as_nats_server_does() {
    let Some(reference) = reference_server() else {
        return;
    };
    let mut shapes = Vec::new();
    for hub_binary in [Path::new(TERN), reference.as_path()] {
        let scratch = Scratch::new("leaf-monitor");
        let h = hub(&scratch, hub_binary, "H", "http: 127.0.0.1:-1");
        let monitor = monitor_addr(&std::fs::read_to_string(&h.log).unwrap()).unwrap();
        let l = leaf(&scratch, &reference, "L", &[h.leaf.as_deref().unwrap()], "");
        let lc = connect(&l).await;
        let mut sub = lc.subscribe("seen").await.unwrap();
        lc.flush().await.unwrap();
        until_routed(&connect(&h).await, &mut sub, "seen").await;
        let get = |path: &str| -> serde_json::Value {
            let (status, body) = http_get(&monitor, path).unwrap();
            assert_eq!(status, 200, "{path}");
            serde_json::from_str(&body).unwrap()
        };
        let leafz = get("/leafz");
        assert_eq!(leafz["leafnodes"], 1, "{leafz}");
        let link = &leafz["leafs"][0];
        assert_eq!(link["name"], "L");
        assert_eq!(link["account"], "$G");
        assert_eq!(link["is_spoke"], false);
        assert!(link["subscriptions"].as_u64().unwrap() >= 1, "{leafz}");
        assert!(link["out_msgs"].as_u64().unwrap() >= 1, "{leafz}");
        assert_eq!(get("/varz")["leafnodes"], 1);
        let accounts = get("/accstatz?unused=1");
        let global = accounts["account_statz"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["acc"] == "$G")
            .cloned()
            .unwrap();
        assert_eq!(global["leafnodes"], 1, "{accounts}");
        let mut shape = json_shape(&leafz);
        // The compression a nats-server hub negotiated, and the round trip once measured.
        shape.retain(|f| !f.contains("compression") && !f.contains("rtt"));
        shapes.push(shape);
        drop(l);
    }
    assert_eq!(shapes[0], shapes[1]);
}

/// What a server answers on its leafnode port to `input` (INFO and `LS+` lines left out: they
/// carry ids and the server's own imports), until it closes or goes quiet.
fn answer(addr: &str, input: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    stream.write_all(input.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&got);
    let mut lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with("INFO ") && !l.starts_with("LS+ "))
        .collect();
    if closed {
        lines.push("<closed>");
    }
    lines.join("|")
}

/// Bad input on the leafnode port gets nats-server's answer and close decision: a client's
/// CONNECT, bad credentials, the hub's own cluster name, anything before CONNECT, client
/// operations and malformed interest after it.
#[tokio::test]
async fn bad_input_on_the_leafnode_port_as_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let inputs = [
        "CONNECT {\"lang\":\"go\",\"verbose\":false,\"user\":\"leaf\",\"pass\":\"pw\"}\r\nPING\r\n",
        "CONNECT {\"user\":\"leaf\",\"pass\":\"bad\",\"name\":\"X\",\"cluster\":\"X\"}\r\n",
        "CONNECT {\"user\":\"leaf\",\"pass\":\"pw\",\"name\":\"X\",\"cluster\":\"C1\"}\r\n",
        "PING\r\n",
        "CONNECT {\"user\":\"leaf\",\"pass\":\"pw\",\"name\":\"X\",\"cluster\":\"X\"}\r\nSUB foo 1\r\n",
        "CONNECT {\"user\":\"leaf\",\"pass\":\"pw\",\"name\":\"X\",\"cluster\":\"X\"}\r\nLS+ foo q\r\nPING\r\n",
        "CONNECT {\"user\":\"leaf\",\"pass\":\"pw\",\"name\":\"X\",\"cluster\":\"X\"}\r\nLS+ foo\r\nLMSG foo 2\r\nhi\r\nPING\r\n",
    ];
    let mut answers = Vec::new();
    for binary in [Path::new(TERN), reference.as_path()] {
        let scratch = Scratch::new("leaf-bad-input");
        let port = free_port();
        let h = start(
            &scratch,
            binary,
            "H",
            &format!(
                "cluster {{ name: C1, listen: \"127.0.0.1:-1\" }}\n\
                 leafnodes {{ listen: \"127.0.0.1:{port}\", \
                 authorization {{ user: leaf, password: pw }} }}"
            ),
        );
        let addr = format!("127.0.0.1:{port}");
        answers.push(inputs.map(|input| answer(&addr, input)));
        drop(h);
    }
    for (i, input) in inputs.iter().enumerate() {
        assert_eq!(answers[0][i], answers[1][i], "{input:?}");
    }
    assert_eq!(
        answers[1][0],
        "-ERR 'attempted to connect to leaf node port'|<closed>"
    );
}

/// `min_version` on the leafnode port: a leafnode whose CONNECT says an older version gets the
/// INFO that acknowledges its CONNECT, then nats-server's `-ERR`, and is closed as `Minimum
/// Version Required`; the dialer waits 5 s longer before dialing again. tern and nats-server
/// as the hub, each with the other as the leaf; a version that is new enough links.
#[tokio::test]
async fn min_version_refuses_older_leafnodes_as_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let hello = "CONNECT {\"version\":\"2.15.1\",\"name\":\"X\",\"cluster\":\"X\"}\r\nPING\r\n";
    let mut answers = Vec::new();
    for (hub_binary, leaf_binary) in [
        (Path::new(TERN), &*reference),
        (&*reference, Path::new(TERN)),
    ] {
        let scratch = Scratch::new("leaf-min-version");
        let refusing = start(
            &scratch,
            hub_binary,
            "R",
            "leafnodes { listen: \"127.0.0.1:-1\", min_version: \"2.99.0\" }",
        );
        let addr = refusing.leaf.clone().unwrap();
        answers.push(answer(&addr, hello));
        common::process::wait_for_log(&refusing.log, "the close", |t| {
            t.contains("Leafnode connection closed: Minimum Version Required")
        });
        // The other kind of server as the refused leaf: it says why and waits.
        let l = leaf(&scratch, leaf_binary, "L", &[&addr], "");
        common::process::wait_for_log(&l.log, "the delay", |t| {
            t.contains(
                "Leafnode connection dropped due to minimum version requirement. \
                 Delaying attempt to reconnect for 5s",
            )
        });
        // A hub whose minimum the leaf meets links as usual.
        let new_enough = start(
            &scratch,
            hub_binary,
            "N",
            "leafnodes { listen: \"127.0.0.1:-1\", min_version: \"2.10.0\" }",
        );
        let l2 = leaf(
            &scratch,
            leaf_binary,
            "L2",
            &[new_enough.leaf.as_deref().unwrap()],
            "",
        );
        let lc = connect(&l2).await;
        let mut sub = lc.subscribe("fresh").await.unwrap();
        lc.flush().await.unwrap();
        exactly_once(&connect(&new_enough).await, &mut sub, "fresh", 5).await;
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(
        answers[1],
        "-ERR 'connection rejected since minimum version required is \"2.99.0\"'|<closed>"
    );
}

/// What `srv`'s hub told it: the `from.*` subjects and loop detection subjects (as `$LDS`) of
/// its one leafnode connection in `/leafz?subs=1`.
fn told(srv: &Srv) -> Vec<String> {
    let leafz = leafz(srv);
    let mut subjects: Vec<String> = leafz["leafs"][0]["subscriptions_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .filter_map(|s| match s.starts_with("$LDS.") {
            true => Some("$LDS".to_string()),
            false => s.starts_with("from.").then(|| s.to_string()),
        })
        .collect();
    subjects.sort();
    subjects
}

/// `srv`'s `/leafz?subs=1`.
fn leafz(srv: &Srv) -> serde_json::Value {
    let monitor = monitor_addr(&std::fs::read_to_string(&srv.log).unwrap()).unwrap();
    match http_get(&monitor, "/leafz?subs=1") {
        Some((200, body)) => serde_json::from_str(&body).unwrap(),
        _ => serde_json::Value::Null,
    }
}

/// How many of `srv`'s leafnode connections have told it of `from.<their name>`.
fn heard_from_each(srv: &Srv) -> usize {
    let leafz = leafz(srv);
    let leafs = leafz["leafs"].as_array().cloned().unwrap_or_default();
    leafs
        .iter()
        .filter(|l| {
            let subject = format!("from.{}", l["name"].as_str().unwrap_or_default());
            l["subscriptions_list"]
                .as_array()
                .is_some_and(|subs| subs.iter().any(|s| s.as_str() == Some(&*subject)))
        })
        .count()
}

/// `isolate_leafnode_interest`, as nats-server 2.15.1 has it. H is the hub of L1 and L2 and a
/// leaf of T, each server has a client subscribed to `from.<its name>`, and the links come up
/// in turn: H to T, then L1, then L2. In the leafnodes block, it isolates every leafnode
/// connection of H: none hears of interest from another leafnode. On a remote (H's to T) it
/// isolates that connection; a remote's `request_isolation` (L1's, a tern leaf) asks its hub to
/// isolate it. Loop detection subjects already there when an isolated link to a hub comes up
/// are told all the same (the last case, where T comes up last). tern and nats-server in turn
/// as H.
#[tokio::test]
async fn isolate_leafnode_interest_as_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let told_h = vec!["$LDS".to_string(), "from.H".to_string()];
    let mut every_lds = vec!["$LDS".to_string(); 3];
    every_lds.push("from.H".into());
    let mut everything = every_lds.clone();
    everything.extend(["from.L1".to_string(), "from.T".to_string()]);
    let cases = [
        // (H's leafnodes block beyond its port, L1's remote, T comes up last, what L1, L2 and
        // T are told)
        (
            "isolate_leafnode_interest: true, remotes: [ { url: \"nats://T\" } ]",
            "",
            false,
            [told_h.clone(), told_h.clone(), told_h.clone()],
        ),
        (
            "remotes: [ { url: \"nats://T\", isolate: true } ]",
            ", request_isolation: true",
            false,
            [told_h.clone(), everything, told_h.clone()],
        ),
        (
            "isolate: true, remotes: [ { url: \"nats://T\" } ]",
            "",
            true,
            [told_h.clone(), told_h.clone(), every_lds],
        ),
    ];
    for hub_binary in [Path::new(TERN), reference.as_path()] {
        for (hub_block, l1_remote, top_last, want) in &cases {
            let scratch = Scratch::new("leaf-isolate");
            let top_port = free_port();
            let top_url = format!("nats://127.0.0.1:{top_port}");
            let start_top = || {
                start(
                    &scratch,
                    &reference,
                    "T",
                    &format!(
                        "http: 127.0.0.1:-1\nleafnodes {{ listen: \"127.0.0.1:{top_port}\" }}"
                    ),
                )
            };
            let mut top = (!top_last).then(start_top);
            let h = start(
                &scratch,
                hub_binary,
                "H",
                &format!(
                    "http: 127.0.0.1:-1\nleafnodes {{ listen: \"127.0.0.1:-1\", \
                     reconnect_interval: \"250ms\", {} }}",
                    hub_block.replace("nats://T", &top_url)
                ),
            );
            let links = |n: usize| {
                let got = common::cluster::converge(&n, || {
                    leafz(&h)["leafs"].as_array().map_or(0, |l| l.len())
                });
                assert_eq!(got, n, "H's leafnode links");
            };
            links(usize::from(!top_last));
            let port = h.leaf.clone().unwrap();
            let spoke = |name: &str, binary: &Path, remote: &str| {
                start(
                    &scratch,
                    binary,
                    name,
                    &format!(
                        "http: 127.0.0.1:-1\nleafnodes {{ reconnect_interval: \"250ms\", \
                         remotes: [ {{ url: \"nats://{port}\" {remote} }} ] }}"
                    ),
                )
            };
            let l1 = spoke("L1", Path::new(TERN), l1_remote);
            links(1 + usize::from(!top_last));
            let l2 = spoke("L2", &reference, "");
            links(2 + usize::from(!top_last));
            let top = top.take().unwrap_or_else(start_top);
            links(3);
            let mut clients = Vec::new();
            for (srv, name) in [(&h, "H"), (&l1, "L1"), (&l2, "L2"), (&top, "T")] {
                let client = connect(srv).await;
                let sub = client.subscribe(format!("from.{name}")).await.unwrap();
                client.flush().await.unwrap();
                clients.push((client, sub));
            }
            // H has heard of every other server's interest: what it passes on has gone too.
            assert_eq!(common::cluster::converge(&3, || heard_from_each(&h)), 3);
            assert_eq!(common::cluster::converge(&1, || heard_from_each(&top)), 1);
            std::thread::sleep(Duration::from_millis(500));
            let snapshot = || [told(&l1), told(&l2), told(&top)];
            let got = common::cluster::converge(want, snapshot);
            assert_eq!(&got, want, "{hub_binary:?} with {hub_block}");
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(&snapshot(), want, "{hub_binary:?} with {hub_block}");
        }
    }
}

/// `/varz`'s `leaf` object with the same `leafnodes` block (the bound port, the TLS
/// certificate's expiry that tern does not show left out), tern beside nats-server: the
/// leafnode port's host, port, timeouts and TLS, each remote's account, URLs, TLS timeout and
/// deny rules, and the cluster's write deadline.
#[tokio::test]
async fn varz_shows_the_leafnode_options_as_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let pki = Pki::new("leaf-varz-pki");
    let certs = format!(
        "cert_file: {:?}, key_file: {:?}",
        pki.server_cert, pki.server_key
    );
    let configs = [
        "leafnodes { listen: \"127.0.0.1:-1\" }".to_string(),
        format!(
            "cluster {{ name: C, listen: \"127.0.0.1:-1\", write_deadline: \"7s\" }}\n\
             leafnodes {{ listen: \"127.0.0.1:-1\", compression: off, \
             authorization {{ user: a, password: b, timeout: 3 }}, \
             tls {{ {certs}, ca_file: {:?}, verify: true, timeout: 4 }}, \
             remotes: [ {{ urls: [\"nats://u:p@127.0.0.1:1\", \"tls://h2:1\", \"nats://h3\"], \
             deny_imports: [\"a.>\"], deny_exports: \"b\", tls {{ timeout: 6 }} }}, \
             {{ url: \"nats://127.0.0.1:2\" }} ] }}",
            pki.ca
        ),
        format!(
            "accounts {{ A {{}} }}\nleafnodes {{ port: -1, host: 127.0.0.1, tls {{ {certs} }}, \
             remotes: [ {{ url: \"nats://127.0.0.1:1\", account: A, tls {{ {certs} }} }} ] }}"
        ),
        "accounts { A {} }\nleafnodes { remotes: [ { url: \"nats://127.0.0.1:1\", account: A } ] }"
            .to_string(),
    ];
    for config in &configs {
        let mut seen = Vec::new();
        for binary in [Path::new(TERN), reference.as_path()] {
            let scratch = Scratch::new("leaf-varz");
            let srv = start(
                &scratch,
                binary,
                "V",
                &format!("http: 127.0.0.1:-1\n{config}"),
            );
            let monitor = monitor_addr(&std::fs::read_to_string(&srv.log).unwrap()).unwrap();
            let (status, body) = http_get(&monitor, "/varz").unwrap();
            assert_eq!(status, 200);
            let varz: serde_json::Value = serde_json::from_str(&body).unwrap();
            let mut leaf = varz["leaf"].clone();
            let object = leaf.as_object_mut().unwrap();
            object.remove("tls_cert_not_after");
            let port = object.remove("port").map(|p| p.to_string());
            let bound = srv
                .leaf
                .as_ref()
                .map(|a| a.rsplit(':').next().unwrap().to_string());
            assert_eq!(port, bound, "{binary:?}: {leaf}");
            seen.push(leaf);
        }
        assert_eq!(seen[0], seen[1], "tern, then nats-server, with {config}");
    }
}

/// `authorization { nkey, account }` in the leafnodes block: a remote with that user's `nkey`
/// seed signs the hub's nonce and is bound to the account; a CONNECT without the signature, or
/// with a user and password only, is refused as nats-server refuses it. tern and nats-server
/// in turn as the hub, each with both as the leaf.
#[tokio::test]
async fn a_leaf_nkey_in_the_leafnodes_block_binds_its_account() {
    let Some(reference) = reference_server() else {
        return;
    };
    let user = KeyPair::new_user();
    let inputs = [
        format!(
            "CONNECT {{\"name\":\"X\",\"cluster\":\"X\",\"nkey\":\"{}\",\"sig\":\"AAAA\"}}\r\nPING\r\n",
            user.public_key()
        ),
        "CONNECT {\"name\":\"X\",\"cluster\":\"X\",\"user\":\"a\",\"pass\":\"a\"}\r\nPING\r\n".into(),
    ];
    let mut answers = Vec::new();
    for hub_binary in [Path::new(TERN), reference.as_path()] {
        let scratch = Scratch::new("leaf-block-nkey");
        let h = start(
            &scratch,
            hub_binary,
            "H",
            &format!(
                "accounts {{ A {{ users: [ {{user: a, password: a}} ] }} }}\n\
                 leafnodes {{ listen: \"127.0.0.1:-1\", \
                 authorization {{ nkey: {}, account: A }} }}",
                user.public_key()
            ),
        );
        let addr = h.leaf.clone().unwrap();
        answers.push(inputs.clone().map(|input| answer(&addr, &input)));
        let a = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
            .connect(h.client.as_str())
            .await
            .unwrap();
        for (n, leaf_binary) in [Path::new(TERN), reference.as_path()].iter().enumerate() {
            let name = format!("L{n}");
            let remote = format!(", nkey: {}", user.seed().unwrap());
            let l = leaf(&scratch, leaf_binary, &name, &[&addr], &remote);
            let lc = connect(&l).await;
            let mut sub = lc.subscribe("in.a").await.unwrap();
            lc.flush().await.unwrap();
            exactly_once(&a, &mut sub, "in.a", 5).await;
        }
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1][0], "-ERR 'Authorization Violation'|<closed>");
}

/// A remote's `first_info_timeout`: a "hub" that takes the connection and says nothing is
/// left once that long has passed (closed as a read error, then dialed again); a `disabled`
/// remote is never dialed. tern beside nats-server as the leaf, with the same log lines.
#[tokio::test]
async fn first_info_timeout_and_disabled_remotes_as_nats_server() {
    use std::io::Read;
    let Some(reference) = reference_server() else {
        return;
    };
    for binary in [Path::new(TERN), reference.as_path()] {
        let scratch = Scratch::new("leaf-first-info");
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ignored = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        ignored.set_nonblocking(true).unwrap();
        let l = start(
            &scratch,
            binary,
            "L",
            &format!(
                "leafnodes {{ reconnect_interval: \"250ms\", remotes: [ \
                 {{ url: \"nats://{}\", first_info_timeout: \"3s\" }}, \
                 {{ url: \"nats://{}\", disabled: true }} ] }}",
                silent.local_addr().unwrap(),
                ignored.local_addr().unwrap()
            ),
        );
        let (mut stream, _) = silent.accept().unwrap();
        let accepted = std::time::Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        // The leaf sends nothing before the hub's INFO, and hangs up when it gives up on it.
        assert_eq!(stream.read(&mut buf).unwrap_or(usize::MAX), 0, "{binary:?}");
        let waited = accepted.elapsed();
        assert!(
            // Longer than the default (1 s).
            waited >= Duration::from_secs(2),
            "{binary:?} gave up after {waited:?}"
        );
        // It dials again; the disabled remote, never.
        let _again = silent.accept().unwrap();
        assert!(
            ignored.accept().is_err(),
            "{binary:?} dialed a disabled remote"
        );
        let log = std::fs::read_to_string(&l.log).unwrap();
        assert!(
            log.contains("Leafnode connection created for account: $G")
                && log.contains("Leafnode connection closed: Read Error"),
            "{binary:?}:\n{log}"
        );
    }
}

/// An account JWT's `limits.leaf` on an operator-mode hub: a leafnode past the account's
/// allowance is refused as nats-server refuses it, the ones within it link; a user JWT whose
/// `allowed_connection_types` leaves out `LEAFNODE` cannot link at all.
#[tokio::test]
async fn account_jwt_leaf_limit_and_connection_types_as_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    for hub_binary in [Path::new(TERN), reference.as_path()] {
        let scratch = Scratch::new("leaf-jwt-limit");
        let operator = KeyPair::new_operator();
        let (system, account) = (KeyPair::new_account(), KeyPair::new_account());
        let creds_file = |name: &str, types: serde_json::Value| {
            let user = KeyPair::new_user();
            let path = scratch.0.join(format!("{name}.creds"));
            let jwt = user_jwt(&account, &user, types, json!({}));
            std::fs::write(&path, creds(&jwt, &user)).unwrap();
            path
        };
        let mut limits = common::jwt::open_limits();
        limits["leaf"] = json!(1);
        let h = start(
            &scratch,
            hub_binary,
            "H",
            &format!(
                "http: 127.0.0.1:-1\noperator: {}\nsystem_account: {sys}\nresolver: MEMORY\n\
                 resolver_preload {{\n  {sys}: {}\n  {acc}: {}\n}}\n\
                 leafnodes {{ listen: \"127.0.0.1:-1\" }}",
                operator_jwt(&operator, &system.public_key()),
                account_jwt(&operator, &system, "SYS", json!({})),
                account_jwt(&operator, &account, "A", json!({"limits": limits})),
                sys = system.public_key(),
                acc = account.public_key(),
            ),
        );
        let port = h.leaf.clone().unwrap();
        let remote = |path: &Path| format!(", credentials: {path:?}");
        let first = leaf(
            &scratch,
            Path::new(TERN),
            "L1",
            &[&port],
            &remote(&creds_file("l1", json!({}))),
        );
        let lc = connect(&first).await;
        let mut sub = lc.subscribe("within").await.unwrap();
        lc.flush().await.unwrap();
        let hc = async_nats::ConnectOptions::with_credentials_file(creds_file("c", json!({})))
            .await
            .unwrap()
            .connect(h.client.as_str())
            .await
            .unwrap();
        until_routed(&hc, &mut sub, "within").await;
        let second = leaf(
            &scratch,
            &reference,
            "L2",
            &[&port],
            &remote(&creds_file("l2", json!({}))),
        );
        let standard = json!({"allowed_connection_types": ["STANDARD"]});
        let third = leaf(
            &scratch,
            &reference,
            "L3",
            &[&port],
            &remote(&creds_file("l3", standard)),
        );
        for want in [
            "- maximum account active connections exceeded",
            "Leafnode connection closed: Maximum Account Connections Exceeded",
            "- authentication error",
            "Leafnode connection closed: Authentication Failure",
        ] {
            common::process::wait_for_log(&h.log, want, |t| t.contains(want));
        }
        // The leaf within the allowance is still linked.
        exactly_once(&hc, &mut sub, "within", 5).await;
        let leafz = leafz(&h);
        assert_eq!(leafz["leafnodes"], 1, "{hub_binary:?}: {leafz}");
        drop((second, third));
    }
}
