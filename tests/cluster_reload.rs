//! Reloading the cluster block of a running server: routes taken out of `cluster.routes` are
//! closed and not dialed again, routes added are dialed, and a new route `authorization`
//! closes the accepted routes whose credentials no longer pass. Each scenario runs with the
//! reloaded server and its peer being tern or nats-server 2.15.1, in every combination, and
//! the same outcome is asserted of each.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{client, node_routed, until_routed, Node, TERN};
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
/// reloaded with the new password.
async fn changed_route_password(x_binary: &Path, p_binary: &Path, tag: &str) {
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
    if tag != "nats-tern" {
        tokio::time::sleep(Duration::from_millis(1500)).await;
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
    for (x, p, tag) in &runs {
        changed_route_password(x, p, tag).await;
    }
}
