//! Reloading the cluster block of a running server: routes taken out of `cluster.routes` are
//! closed and not dialed again, routes added are dialed, and a new route `authorization`
//! closes the accepted routes whose credentials no longer pass, new route `permissions` change
//! what crosses live routes (the peer resending interest on the new INFO). Each scenario runs with the
//! reloaded server and its peer being tern or nats-server 2.15.1, in every combination, and
//! the same outcome is asserted of each.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{client, monitor_json, node_routed, until_routed, Node, TERN};
use common::process::{reference_server, wait_for_log, Scratch};
use futures::StreamExt;

/// Rewrites `node`'s configuration file with `edit` and sends it SIGHUP; waits until its log
/// shows the reload.
fn reload(scratch: &Scratch, node: &Node, edit: impl Fn(&str) -> String) {
    let config = scratch.0.join(format!("{}.conf", node.name));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, edit(&text)).unwrap();
    let log = scratch.0.join(format!("{}.log", node.name));
    let before = log_text(scratch, node)
        .matches("Reloaded server configuration")
        .count();
    node.process.signal("HUP");
    wait_for_log(&log, "the reload", |t| {
        t.matches("Reloaded server configuration").count() > before
    });
}

fn log_text(scratch: &Scratch, node: &Node) -> String {
    std::fs::read_to_string(scratch.0.join(format!("{}.log", node.name))).unwrap_or_default()
}

/// Whether a message published on `from` reaches a subscriber on `to` within two seconds of
/// publishing, tried every 200 ms.
async fn reaches(from: &Node, to: &Node, subject: &str) -> bool {
    let publisher = client(from).await;
    let receiver = client(to).await;
    let mut sub = receiver.subscribe(subject.to_string()).await.unwrap();
    receiver.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        publisher
            .publish(subject.to_string(), "x".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            return true;
        }
    }
    false
}

/// Waits until a message from `from` reaches `to`.
async fn until_connected(from: &Node, to: &Node, subject: &str) {
    let publisher = client(from).await;
    let receiver = client(to).await;
    let mut sub = receiver.subscribe(subject.to_string()).await.unwrap();
    receiver.flush().await.unwrap();
    until_routed(&publisher, &mut sub, subject).await;
}

/// `x` dials `p`; a reload takes the route out: the route closes (nothing crosses, for longer
/// than a reconnect would take, unless P is nats-server and X tern) and X logs it as
/// nats-server does; a reload puts it back and the route forms again.
async fn removed_and_added_route(x_binary: &Path, p_binary: &Path, tag: &str) {
    // nats-server dials back a peer without route pooling (tern, or a 2.9 server) whose route
    // it lost, whatever its own `routes` say.
    let peer_redials = tag == "tern-nats";
    let scratch = Scratch::new(&format!("reload-routes-{tag}"));
    let p = node_routed(&scratch, p_binary, "P", &[], "");
    let x = node_routed(&scratch, x_binary, "X", &[&p.route], "");
    until_connected(&x, &p, "before").await;
    let url = format!("nats-route://{}", p.route);
    let listed = format!("\"{url}\"");
    reload(&scratch, &x, |t| t.replace(&listed, ""));
    wait_for_log(&scratch.0.join("P.log"), "the route closed", |t| {
        t.contains("connection closed: ")
    });
    if peer_redials {
        until_connected(&x, &p, "redialed").await;
    } else {
        // Give a reconnect (one second apart) time to happen, had the route been kept.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !reaches(&x, &p, "removed.x").await,
            "{tag}: X still routes to P"
        );
        assert!(
            !reaches(&p, &x, "removed.p").await,
            "{tag}: P still routes to X"
        );
    }
    let log = log_text(&scratch, &x);
    assert!(
        log.contains(&format!("[INF] Removed route {url}\n")),
        "{tag}:\n{log}"
    );
    let removed = log.find("Removed route").unwrap();
    let reloaded = log.find("[INF] Reloaded: cluster routes").unwrap();
    assert!(removed < reloaded, "{tag}:\n{log}");

    reload(&scratch, &x, |t| {
        t.replace("routes: [", &format!("routes: [{listed}"))
    });
    until_connected(&x, &p, &format!("again.x.{tag}")).await;
    until_connected(&p, &x, &format!("again.p.{tag}")).await;
    assert_eq!(
        log_text(&scratch, &x)
            .matches("[INF] Reloaded: cluster routes")
            .count(),
        2,
        "{tag}"
    );
}

/// `p` dials `x` with the route credentials X requires; a reload of X changes the password:
/// X closes the route with `Authorization Violation` and refuses P's redials, until P is
/// reloaded with the new password. Returns how many route connections X accepted in the
/// 1.5 s after it first refused P (`None` when X dials P back and the two stay connected).
async fn changed_route_password(x_binary: &Path, p_binary: &Path, tag: &str) -> Option<usize> {
    let scratch = Scratch::new(&format!("reload-auth-{tag}"));
    let x = node_routed(
        &scratch,
        x_binary,
        "X",
        &[],
        "cluster.authorization: { user: ruser, password: old }",
    );
    let with = |password: &str| format!("ruser:{password}@{}", x.route);
    let p = node_routed(&scratch, p_binary, "P", &[&with("old")], "");
    until_connected(&x, &p, "before.x").await;
    until_connected(&p, &x, "before.p").await;

    reload(&scratch, &x, |t| {
        t.replace("password: old", "password: new")
    });
    let log = scratch.0.join("X.log");
    wait_for_log(&log, "the route refused", |t| {
        t.contains("[ERR] ") && t.contains(" - authentication error - User \"ruser\"")
    });
    // nats-server (X) dials back a peer without route pooling (tern) whose route it lost:
    // that route needs no credentials, so the two stay connected.
    let created = |t: &str| t.matches("Route connection created").count();
    let mut redials = None;
    if tag != "nats-tern" {
        let before = created(&log_text(&scratch, &x));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redials = Some(created(&log_text(&scratch, &x)) - before);
        assert!(
            !reaches(&x, &p, "refused.x").await,
            "{tag}: the route stayed"
        );
        assert!(
            !reaches(&p, &x, "refused.p").await,
            "{tag}: the route stayed"
        );
    }
    let text = log_text(&scratch, &x);
    let cluster = text.find("[INF] Reloaded: cluster\n").expect(&text);
    let refused = text.find("authentication error").unwrap();
    assert!(cluster < refused, "{tag}:\n{text}");

    // The peer learns the new password: the route forms again.
    reload(&scratch, &p, |t| t.replace(&with("old"), &with("new")));
    until_connected(&x, &p, &format!("again.x.{tag}")).await;
    until_connected(&p, &x, &format!("again.p.{tag}")).await;
    redials
}

fn binaries() -> Option<[(PathBuf, PathBuf, &'static str); 4]> {
    let reference = reference_server()?;
    let tern = PathBuf::from(TERN);
    Some([
        (tern.clone(), tern.clone(), "tern-tern"),
        (reference.clone(), reference.clone(), "nats-nats"),
        (tern.clone(), reference.clone(), "tern-nats"),
        (reference, tern, "nats-tern"),
    ])
}

#[tokio::test]
async fn reload_removes_and_adds_routes_as_nats_server() {
    let Some(runs) = binaries() else {
        return;
    };
    for (x, p, tag) in &runs {
        removed_and_added_route(x, p, tag).await;
    }
}

#[tokio::test]
async fn reload_of_route_authorization_closes_routes_as_nats_server() {
    let Some(runs) = binaries() else {
        return;
    };
    let mut redials = std::collections::BTreeMap::new();
    for (x, p, tag) in &runs {
        redials.insert(*tag, changed_route_password(x, p, tag).await);
    }
    // A refused nats-server peer redials about once a second per route connection it had (3
    // pooled and `$SYS`'s with a nats-server seed), not thousands of times a second: a tern
    // seed draws no more redials than a nats-server seed does, give or take.
    eprintln!("route connections X accepted in the 1.5 s after refusing P: {redials:?}");
    let (Some(tern), Some(nats)) = (redials["tern-nats"], redials["nats-nats"]) else {
        panic!("{redials:?}");
    };
    assert!(tern <= 2 * nats.max(4), "{redials:?}");
}

/// X's cluster permissions before the reload, and after (both lists change).
const PERMS_BEFORE: &str =
    "cluster.permissions: { import: { allow: [\"a.>\"] }, export: { allow: [\"b.>\"] } }";
const PERMS_AFTER: &str =
    "cluster.permissions: { import: { allow: [\"c.>\"] }, export: { allow: [\"d.>\"] } }";

/// Subjects subscribed on X (published on P; `*.q` by a queue group) and on P (published on
/// X).
const ON_X: [&str; 4] = ["a.1", "a.q", "c.1", "c.q"];
const ON_P: [&str; 2] = ["b.1", "d.1"];

/// Adds to `got` the subjects whose subscriber received `phase` within `wait`.
async fn collect(
    subs: &mut [(String, async_nats::Subscriber)],
    phase: &str,
    got: &mut std::collections::BTreeSet<String>,
    wait: Duration,
) {
    let until = Instant::now() + wait;
    for (subject, sub) in subs.iter_mut() {
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await
        {
            if msg.payload == phase.as_bytes() {
                got.insert(subject.clone());
            }
        }
    }
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
}

/// What crosses the route in one phase: each subject is published on the other node, every
/// 250 ms, until `expected` arrived or five seconds passed (interest changes are then in
/// place); the result is what arrives of one more round within half a second.
async fn crossing(
    x: &async_nats::Client,
    p: &async_nats::Client,
    subs: &mut [(String, async_nats::Subscriber)],
    phase: &str,
    expected: &[&str],
) -> std::collections::BTreeSet<String> {
    let publish_all = |payload: String| async move {
        for subject in ON_X {
            p.publish(subject, payload.clone().into()).await.unwrap();
        }
        for subject in ON_P {
            x.publish(subject, payload.clone().into()).await.unwrap();
        }
        p.flush().await.unwrap();
        x.flush().await.unwrap();
    };
    let mut got = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !expected.iter().all(|s| got.contains(*s)) {
        publish_all(phase.to_string()).await;
        collect(subs, phase, &mut got, Duration::from_millis(250)).await;
    }
    let last = format!("{phase}-last");
    let mut crossed = std::collections::BTreeSet::new();
    publish_all(last.clone()).await;
    collect(subs, &last, &mut crossed, Duration::from_millis(500)).await;
    collect(subs, &last, &mut crossed, Duration::from_millis(0)).await;
    crossed
}

/// X has cluster permissions and P dials it; subscribers on both sides stay through a reload
/// of X that changes both lists. Returns what crossed before and after.
async fn reloaded_permissions(
    x_binary: &Path,
    p_binary: &Path,
    tag: &str,
) -> (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
    Vec<serde_json::Value>,
) {
    let scratch = Scratch::new(&format!("reload-perms-{tag}"));
    let x = node_routed(
        &scratch,
        x_binary,
        "X",
        &[],
        &format!("http: 127.0.0.1:-1\n{PERMS_BEFORE}"),
    );
    let p = node_routed(&scratch, p_binary, "P", &[&x.route], "http: 127.0.0.1:-1");
    let (xc, pc) = (client(&x).await, client(&p).await);
    let mut subs = Vec::new();
    for subject in ON_X {
        let sub = match subject.ends_with(".q") {
            true => xc.queue_subscribe(subject, "g".into()).await.unwrap(),
            false => xc.subscribe(subject).await.unwrap(),
        };
        subs.push((subject.to_string(), sub));
    }
    for subject in ON_P {
        subs.push((subject.to_string(), pc.subscribe(subject).await.unwrap()));
    }
    xc.flush().await.unwrap();
    pc.flush().await.unwrap();
    let before = crossing(&xc, &pc, &mut subs, "before", &["a.1", "a.q", "b.1"]).await;
    let logged = [log_text(&scratch, &x).len(), log_text(&scratch, &p).len()];
    let inside = |perms: &str| perms.trim_start_matches("cluster.").to_string();
    reload(&scratch, &x, |t| {
        let changed = t.replace(&inside(PERMS_BEFORE), &inside(PERMS_AFTER));
        assert_ne!(changed, t, "{tag}");
        changed
    });
    let after = crossing(&xc, &pc, &mut subs, "after", &["c.1", "c.q", "d.1"]).await;
    // The route stays up: new permissions apply to live routes. Not with nats-server as X: the
    // `RS+` it sends for a queue group the new `import` lets through is malformed (P logs
    // `processRemoteSub Parse Error: 'R $G c.q g '`) and P closes the route for it; the route
    // forms again with all interest resent, so the same crosses.
    if x_binary == Path::new(TERN) {
        for (node, from) in [(&x, logged[0]), (&p, logged[1])] {
            let log = log_text(&scratch, node);
            let since = log.get(from..).unwrap_or_default();
            assert!(!since.contains("Router connection closed"), "{tag}:\n{log}");
        }
    }
    // The new lists as X's `/routez` and P's (X's route) show them.
    let (own, peer) = (monitor_json(&x, "/routez"), monitor_json(&p, "/routez"));
    let shown = vec![
        own["import"].clone(),
        own["export"].clone(),
        peer["routes"][0]["import"].clone(),
        peer["routes"][0]["export"].clone(),
    ];
    (before, after, shown)
}

#[tokio::test]
async fn reload_of_cluster_permissions_applies_to_live_routes_as_nats_server() {
    let Some(runs) = binaries() else {
        return;
    };
    let set = |s: &[&str]| -> std::collections::BTreeSet<String> {
        s.iter().map(|s| s.to_string()).collect()
    };
    // nats-nats is the reference: spelled out, X tells P of `a.1` and `a.q g` and takes `b.1`
    // before, and after the reload withdraws `a.*` (RS-), tells of `c.*` (RS+), drops P's
    // `b.1` and gets `d.1` from P, which resends its interest on X's new INFO.
    let (x, p, tag) = &runs[1];
    let reference = reloaded_permissions(x, p, tag).await;
    assert_eq!(
        (&reference.0, &reference.1),
        (&set(&["a.1", "a.q", "b.1"]), &set(&["c.1", "c.q", "d.1"]))
    );
    assert_eq!(reference.2[1]["allow"][0], "d.>", "{:?}", reference.2);
    assert_eq!(reference.2[3]["allow"][0], "d.>", "{:?}", reference.2);
    for (x, p, tag) in [&runs[0], &runs[2], &runs[3]] {
        let got = reloaded_permissions(x, p, tag).await;
        assert_eq!(got, reference, "{tag}");
    }
}
