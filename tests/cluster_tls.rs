//! Route TLS and route permissions (`cluster { tls {...}, permissions {...} }`), with
//! certificates generated at test time: tern clusters over TLS, mixed tern + nats-server 2.15.1
//! clusters over TLS with tern dialing and dialed, plaintext and untrusted peers on a TLS route
//! port (compared with nats-server in the same place), and permissions filtering interest and
//! messages, with tern and nats-server in turn as the restricted node.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{
    client, every_pair_exchanges, monitor_json, node_with, until_routed, Node, SETTLE, TERN,
};
use common::pki::{certs, Pki};
use common::process::{reference_server, wait_for_log, Scratch};
use futures::StreamExt;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;

/// The `cluster.tls` line of a node's configuration (see `common::cluster::node_routed`).
fn route_tls(cert: &Path, key: &Path, ca: &Path, verify: bool) -> String {
    format!(
        "cluster.tls: {{ cert_file: {cert:?}, key_file: {key:?}, ca_file: {ca:?}, \
         verify: {verify}, timeout: 2 }}"
    )
}

/// The route TLS every node of a test shares: the localhost/127.0.0.1 certificate, both as
/// server and as client certificate.
fn shared_tls(pki: &Pki, verify: bool) -> String {
    route_tls(&pki.server_cert, &pki.server_key, &pki.ca, verify)
}

#[tokio::test]
async fn tern_nodes_cluster_over_tls() {
    let scratch = Scratch::new("cluster-tls-tern");
    let pki = Pki::new("cluster-tls-tern-pki");
    let tern = PathBuf::from(TERN);
    let extra = format!("http: 127.0.0.1:-1\n{}", shared_tls(&pki, true));
    let t1 = node_with(&scratch, &tern, "T1", &[], &extra);
    // Both join through the seed: they dial each other (implicit routes) over TLS too.
    let t2 = node_with(&scratch, &tern, "T2", &[&t1], &extra);
    let t3 = node_with(&scratch, &tern, "T3", &[&t1], &extra);
    let nodes = [&t1, &t2, &t3];
    every_pair_exchanges(&nodes).await;
    for node in nodes {
        let varz = monitor_json(node, "/varz");
        let cluster = &varz["cluster"];
        assert_eq!(cluster["tls_required"], true, "{cluster}");
        assert_eq!(cluster["tls_verify"], true, "{cluster}");
        assert_eq!(cluster["tls_timeout"], 2, "{cluster}");
        assert_eq!(monitor_json(node, "/routez")["num_routes"], 2);
    }
}

#[tokio::test]
async fn mixed_tls_cluster_with_tern_dialing_and_dialed() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-tls-mixed");
    let pki = Pki::new("cluster-tls-mixed-pki");
    let tls = shared_tls(&pki, true);
    let a = node_with(&scratch, &reference, "A", &[], &tls);
    // tern dials nats-server (TLS client), then nats-server dials tern (tern the TLS server).
    let t = node_with(&scratch, &PathBuf::from(TERN), "T", &[&a], &tls);
    let b = node_with(&scratch, &reference, "B", &[&t], &tls);
    every_pair_exchanges(&[&a, &t, &b]).await;
}

/// Sends `send` in plaintext to a route port and returns what comes back before the close.
fn plaintext_answer(route: &str, send: &str) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(route).unwrap();
    stream.set_read_timeout(Some(SETTLE)).unwrap();
    stream.write_all(send.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

const ROUTE_CONNECT: &str = "CONNECT {\"echo\":true,\"verbose\":false,\"pedantic\":false,\
     \"tls_required\":false,\"headers\":true,\"name\":\"NPLAIN\",\"cluster\":\"C1\"}\r\n";

/// A tern node (with a monitor) and a nats-server node, each alone with the route TLS `tls`.
fn tls_pair(scratch: &Scratch, reference: &Path, tls: &str) -> (Node, Node) {
    let monitored = format!("http: 127.0.0.1:-1\n{tls}");
    let t = node_with(scratch, &PathBuf::from(TERN), "T", &[], &monitored);
    let a = node_with(scratch, reference, "A", &[], tls);
    (t, a)
}

/// How many failed route handshakes `node` has logged, once it has logged more than `after`.
fn handshake_failures(scratch: &Scratch, node: &Node, after: usize) -> usize {
    let log = scratch.0.join(format!("{}.log", node.name));
    let count = |text: &str| {
        text.matches("Router connection closed: TLS Handshake Failure")
            .count()
    };
    let text = wait_for_log(&log, "a failed handshake", |text| count(text) > after);
    count(&text)
}

/// `node` has logged `count` failed route handshakes (or more), with each of `whys` after
/// `TLS route handshake error: `.
fn assert_handshake_errors(scratch: &Scratch, node: &Node, count: usize, whys: &[&str]) {
    handshake_failures(scratch, node, count - 1);
    let log = std::fs::read_to_string(scratch.0.join(format!("{}.log", node.name))).unwrap();
    for why in whys {
        let line = format!("TLS route handshake error: {why}");
        assert!(log.contains(&line), "{}: {line}: {log}", node.name);
    }
}

/// `intruder`, dialing `t`, failed its handshake there (`failures` had been logged before),
/// and never joins; a node with the cluster's route TLS joins, and clients exchange messages.
async fn only_trusted_peers_join(
    scratch: &Scratch,
    t: &Node,
    tls: &str,
    failures: usize,
    intruder: Node,
) {
    handshake_failures(scratch, t, failures);
    let t2 = node_with(scratch, &PathBuf::from(TERN), "T2", &[t], tls);
    every_pair_exchanges(&[t, &t2]).await;
    let routez = monitor_json(t, "/routez");
    assert_eq!(routez["num_routes"], 1, "{routez}");
    assert_eq!(routez["routes"][0]["remote_name"], "T2", "{routez}");
    drop(intruder);
}

#[tokio::test]
async fn a_plaintext_route_on_a_tls_port_is_closed_as_nats_server_closes_it() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-tls-plain");
    let pki = Pki::new("cluster-tls-plain-pki");
    let tls = shared_tls(&pki, false);
    let (t, a) = tls_pair(&scratch, &reference, &tls);
    // Both close without a byte: the first record is no TLS handshake; and both log it so.
    for node in [&t, &a] {
        let answer = plaintext_answer(&node.route, ROUTE_CONNECT);
        assert_eq!(answer, b"", "{}", node.name);
        let why = "tls: first record does not look like a TLS handshake";
        assert_handshake_errors(&scratch, node, 1, &[why]);
    }
    // A plaintext tern node dialing the TLS port never joins.
    let plain = node_with(&scratch, &PathBuf::from(TERN), "P", &[&t], "");
    only_trusted_peers_join(&scratch, &t, &tls, 1, plain).await;
}

/// Opens a TLS connection to a route port, presenting `identity`, and returns the first line
/// the server sends over it; `None` when the server ends the connection without one.
async fn tls_route_info(
    pki: &Pki,
    route: &str,
    identity: Option<(&Path, &Path)>,
) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(route).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = pki.connector(identity).connect(name, tcp).await.ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match tokio::time::timeout(SETTLE, stream.read(&mut byte)).await {
            Ok(Ok(1)) => line.push(byte[0]),
            Ok(_) => return None,
            Err(_) => panic!("{route}: neither INFO nor a close"),
        }
    }
    Some(String::from_utf8(line).unwrap())
}

#[tokio::test]
async fn verify_refuses_a_missing_or_untrusted_certificate_as_nats_server_does() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-tls-verify");
    let pki = Pki::new("cluster-tls-verify-pki");
    let tls = shared_tls(&pki, true);
    let (t, a) = tls_pair(&scratch, &reference, &tls);
    let mut infos = Vec::new();
    for node in [&t, &a] {
        // A trusted certificate: the route INFO comes over TLS and says so.
        let good = Some((pki.server_cert.as_path(), pki.server_key.as_path()));
        let info = tls_route_info(&pki, &node.route, good).await.expect("INFO");
        let info: serde_json::Value =
            serde_json::from_str(info.strip_prefix("INFO ").unwrap().trim()).unwrap();
        infos.push((info["tls_required"].clone(), info["tls_verify"].clone()));
        // No certificate, or one from a CA the server does not trust: refused.
        assert_eq!(
            tls_route_info(&pki, &node.route, None).await,
            None,
            "{}",
            node.name
        );
        let rogue = Some((pki.rogue_cert.as_path(), pki.rogue_key.as_path()));
        assert_eq!(
            tls_route_info(&pki, &node.route, rogue).await,
            None,
            "{}",
            node.name
        );
    }
    // Both log the refusals in Go's words.
    for node in [&t, &a] {
        let whys = [
            "tls: client didn't provide a certificate",
            "tls: failed to verify certificate: x509: certificate signed by unknown authority",
        ];
        assert_handshake_errors(&scratch, node, 2, &whys);
    }
    assert_eq!(infos[0], infos[1]);
    assert_eq!(infos[0], (true.into(), true.into()));
    // A tern node whose certificate the cluster does not trust never joins (the two refusals
    // above are logged first).
    let failures = handshake_failures(&scratch, &t, 1);
    let rogue_tls = route_tls(&pki.rogue_cert, &pki.rogue_key, &pki.ca, true);
    let rogue = node_with(&scratch, &PathBuf::from(TERN), "R", &[&t], &rogue_tls);
    only_trusted_peers_join(&scratch, &t, &tls, failures, rogue).await;
}

#[tokio::test]
async fn pinned_certs_apply_to_routes_as_in_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-tls-pinned");
    let pki = Pki::new("cluster-tls-pinned-pki");
    let key_id = tern::security::tls::pinned_key_id(&certs(&pki.server_cert)[0]).unwrap();
    let tls = shared_tls(&pki, true).replace(" }", &format!(", pinned_certs: [{key_id:?}] }}"));
    let (t, a) = tls_pair(&scratch, &reference, &tls);
    for node in [&t, &a] {
        // The pinned certificate is taken; another one from the same CA is not.
        let pinned = Some((pki.server_cert.as_path(), pki.server_key.as_path()));
        assert!(
            tls_route_info(&pki, &node.route, pinned).await.is_some(),
            "{}",
            node.name
        );
        let other = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
        assert_eq!(
            tls_route_info(&pki, &node.route, other).await,
            None,
            "{}",
            node.name
        );
        assert_handshake_errors(&scratch, node, 1, &["certificate not pinned"]);
    }
}

/// The route TLS with `verify_and_map`, and the route user the certificate must name.
fn mapped_tls(pki: &Pki, user: &str) -> String {
    let tls = shared_tls(pki, false).replace("verify: false", "verify_and_map: true");
    format!("{tls}\ncluster.authorization: {{ user: {user:?} }}")
}

/// Sends a route CONNECT over TLS (presenting the shared certificate) and returns the `-ERR`
/// lines the server answers before it closes the connection.
async fn mapped_connect_errors(pki: &Pki, route: &str) -> Vec<String> {
    use tokio::io::AsyncWriteExt;
    let tcp = tokio::net::TcpStream::connect(route).await.unwrap();
    let identity = Some((pki.server_cert.as_path(), pki.server_key.as_path()));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = pki.connector(identity).connect(name, tcp).await.unwrap();
    stream.write_all(ROUTE_CONNECT.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(SETTLE, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .filter(|l| l.starts_with("-ERR"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn verify_and_map_authorizes_routes_by_certificate_as_nats_server_does() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-tls-map");
    let pki = Pki::new("cluster-tls-map-pki");
    let tern = PathBuf::from(TERN);
    let plain = shared_tls(&pki, true);
    // The certificate's subject, in certificate order, is the route user: no password needed.
    let mapped = mapped_tls(&pki, "CN=localhost,O=tern");
    let t = node_with(&scratch, &tern, "T", &[], &mapped);
    let a = node_with(&scratch, &reference, "A", &[&t], &plain);
    every_pair_exchanges(&[&t, &a]).await;
    let b = node_with(&scratch, &reference, "B", &[], &mapped);
    let t2 = node_with(&scratch, &tern, "T2", &[&b], &plain);
    every_pair_exchanges(&[&b, &t2]).await;
    // The subject in the other order (as Go's `pkix.Name` prints it) is another user: the
    // certificate does not name it, and both refuse the route alike.
    let wrong = mapped_tls(&pki, "O=tern,CN=localhost");
    let t3 = node_with(&scratch, &tern, "T3", &[], &wrong);
    let c = node_with(&scratch, &reference, "C", &[], &wrong);
    let refused = mapped_connect_errors(&pki, &t3.route).await;
    assert_eq!(refused, mapped_connect_errors(&pki, &c.route).await);
    assert_eq!(refused, ["-ERR 'Authorization Violation'"]);
    for node in [&t3, &c] {
        let log = scratch.0.join(format!("{}.log", node.name));
        wait_for_log(&log, "the authentication error", |text| {
            text.lines().any(|l| l.ends_with(" - authentication error"))
        });
    }
}

/// The restricted node's cluster permissions: what it takes in (`import`) and sends out
/// (`export`), with allow and deny lists.
const PERMISSIONS: &str = "cluster.permissions: { \
     import: { allow: [\"imp.>\", \"both.>\"], deny: \"imp.secret\" }, \
     export: { allow: [\"exp.>\", \"both.>\"], deny: \"exp.secret\" } }";

/// Subjects published on each side.
const SUBJECTS: [&str; 8] = [
    "imp.a",
    "imp.secret",
    "exp.a",
    "exp.secret",
    "both.a",
    "other.a",
    "imp.b.c",
    "exp.b.c",
];

/// Subscriptions made on each side, literal and wildcard.
const FILTERS: [&str; 9] = [
    "imp.a",
    "imp.secret",
    "imp.*",
    "exp.a",
    "exp.secret",
    "exp.*",
    "both.a",
    "other.a",
    ">",
];

/// Which (subscription, subject) pairs arrive when `publisher`'s client publishes every
/// subject and `subscriber`'s client holds every filter.
async fn deliveries(publisher: &Node, subscriber: &Node) -> BTreeSet<(String, String)> {
    let pub_client = client(publisher).await;
    let sub_client = client(subscriber).await;
    let mut subs = Vec::new();
    for filter in FILTERS {
        subs.push((filter, sub_client.subscribe(filter).await.unwrap()));
    }
    // Allowed both ways, subscribed last: once it is routed, every filter before it is known.
    let mut control = sub_client.subscribe("both.control").await.unwrap();
    sub_client.flush().await.unwrap();
    until_routed(&pub_client, &mut control, "both.control").await;
    for (_, sub) in subs.iter_mut() {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {}
    }
    for subject in SUBJECTS {
        pub_client.publish(subject, "x".into()).await.unwrap();
    }
    pub_client
        .publish("both.control", "end".into())
        .await
        .unwrap();
    pub_client.flush().await.unwrap();
    loop {
        let msg = tokio::time::timeout(SETTLE, control.next())
            .await
            .unwrap()
            .unwrap();
        if msg.payload == "end" {
            break;
        }
    }
    let mut got = BTreeSet::new();
    for (filter, sub) in subs.iter_mut() {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await
        {
            if msg.subject.as_str() != "both.control" {
                got.insert((filter.to_string(), msg.subject.to_string()));
            }
        }
    }
    got
}

/// What a two-node cluster where `restricted` has the permissions lets cross.
struct Crossing {
    /// Deliveries into the restricted node.
    into: BTreeSet<(String, String)>,
    /// Deliveries out of it.
    out: BTreeSet<(String, String)>,
    /// The permissions as its route INFO, its `/routez` and its peer's `/routez` show them.
    shown: Vec<serde_json::Value>,
}

async fn permission_scenario(
    scratch: &Scratch,
    restricted: &Path,
    other: &Path,
    tag: &str,
) -> Crossing {
    let monitored = format!("http: 127.0.0.1:-1\n{PERMISSIONS}");
    let x = node_with(scratch, restricted, &format!("X{tag}"), &[], &monitored);
    let y = node_with(
        scratch,
        other,
        &format!("Y{tag}"),
        &[&x],
        "http: 127.0.0.1:-1",
    );
    let into = deliveries(&y, &x).await;
    let out = deliveries(&x, &y).await;
    let mut info = String::new();
    let mut route = std::io::BufReader::new(std::net::TcpStream::connect(&x.route).unwrap());
    std::io::BufRead::read_line(&mut route, &mut info).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(info.strip_prefix("INFO ").unwrap().trim()).unwrap();
    let own = monitor_json(&x, "/routez");
    let peer = monitor_json(&y, "/routez");
    let shown = vec![
        info["import"].clone(),
        info["export"].clone(),
        own["import"].clone(),
        own["export"].clone(),
        peer["routes"][0]["import"].clone(),
        peer["routes"][0]["export"].clone(),
    ];
    Crossing { into, out, shown }
}

#[tokio::test]
async fn route_permissions_filter_as_nats_server_does() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-perms");
    let tern = PathBuf::from(TERN);
    let expected = permission_scenario(&scratch, &reference, &reference, "nn").await;
    // The reference, spelled out: the restricted node asks only for what it imports (no
    // interest in `exp.a`, `other.a`, nor anything behind `>`)...
    let (into, out) = (&expected.into, &expected.out);
    assert!(into.contains(&("imp.a".into(), "imp.a".into())), "{into:?}");
    assert!(
        into.contains(&("both.a".into(), "both.a".into())),
        "{into:?}"
    );
    for (filter, subject) in [("exp.a", "exp.a"), ("other.a", "other.a"), (">", "imp.b.c")] {
        assert!(!into.contains(&(filter.into(), subject.into())), "{into:?}");
    }
    // ... but takes what arrives: its allowed `imp.*` interest brings the denied `imp.secret`
    // (nats-server checks no import on a routed message).
    assert!(
        into.contains(&("imp.*".into(), "imp.secret".into())),
        "{into:?}"
    );
    // ... and sends out only what it exports, a wildcard interest's denied subjects included.
    assert!(out.contains(&("exp.a".into(), "exp.a".into())), "{out:?}");
    assert!(out.contains(&("exp.*".into(), "exp.a".into())), "{out:?}");
    assert!(
        !out.iter()
            .any(|(_, s)| s == "exp.secret" || s == "imp.a" || s == "other.a"),
        "{out:?}"
    );
    assert!(!out.is_empty() && !into.is_empty());
    // INFO and both `/routez` show the lists as configured.
    let deny = |d: &str| serde_json::json!(d);
    assert_eq!(
        expected.shown[0]["deny"][0],
        deny("imp.secret"),
        "{:?}",
        expected.shown
    );
    assert_eq!(
        expected.shown[5]["deny"][0],
        deny("exp.secret"),
        "{:?}",
        expected.shown
    );
    for (restricted, other, tag) in [
        (&tern, &reference, "tn"),
        (&reference, &tern, "nt"),
        (&tern, &tern, "tt"),
    ] {
        let got = permission_scenario(&scratch, restricted, other, tag).await;
        assert_eq!(got.into, expected.into, "into the restricted node ({tag})");
        assert_eq!(got.out, expected.out, "out of the restricted node ({tag})");
        assert_eq!(got.shown, expected.shown, "permissions shown ({tag})");
    }
}
