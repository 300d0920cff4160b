//! The system account across routes, in a mixed cluster of tern and nats-server 2.15.1: every
//! node answers the `$SYS.REQ.SERVER.PING` forms a system client sends on any node, and the
//! events each server publishes (client CONNECT/DISCONNECT, `STATSZ`) reach system clients
//! on the others, as between nats-server nodes.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::{node_with, Node, SETTLE, TERN};
use common::process::{reference_server, Scratch};
use futures::StreamExt;

/// A system account and an application account, on every node.
const ACCOUNTS: &str = "accounts {\n  SYS: { users: [{user: sys, password: sys}] }\n  \
                        APP: { users: [{user: app, password: app}] }\n}\nsystem_account: SYS";

async fn connect(node: &Node, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), user.into())
        .connect(format!("nats://{}", node.client))
        .await
        .unwrap()
}

/// Sends `subject` as a request from `client` and gathers the answers for a second: the
/// `server.name` of each (an answer without one counts as its raw text).
async fn responders(client: &async_nats::Client, subject: &str) -> BTreeSet<String> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subject.to_string(), inbox, "".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut names = BTreeSet::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, sub.next()).await {
        let json: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
        let name = json["server"]["name"].as_str().map(str::to_string);
        names.insert(name.unwrap_or_else(|| String::from_utf8_lossy(&msg.payload).into()));
    }
    names
}

/// Asks until every node has answered (interest takes a moment to cross); returns the last
/// set of answers.
async fn until_all_answer(
    client: &async_nats::Client,
    subject: &str,
    want: &BTreeSet<String>,
) -> BTreeSet<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let got = responders(client, subject).await;
        if &got == want || Instant::now() > deadline {
            return got;
        }
    }
}

/// The next message on `sub` as JSON, if one comes within `wait`.
async fn next_event_from(
    sub: &mut async_nats::Subscriber,
    wait: Duration,
) -> Option<serde_json::Value> {
    let msg = tokio::time::timeout(wait, sub.next()).await.ok()??;
    serde_json::from_slice(&msg.payload).ok()
}

fn names(nodes: &[&Node]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.name.clone()).collect()
}

/// Every node answers a server ping sent on any node; a request for one server's endpoint is
/// answered by that server alone, wherever it is sent.
async fn pings_reach_every_node(nodes: &[&Node]) {
    let all = names(nodes);
    for node in nodes {
        let sys = connect(node, "sys").await;
        for subject in [
            "$SYS.REQ.SERVER.PING",
            "$SYS.REQ.SERVER.PING.STATSZ",
            "$SYS.REQ.SERVER.PING.VARZ",
            "$SYS.REQ.SERVER.PING.HEALTHZ",
            "$SYS.REQ.ACCOUNT.APP.CONNZ",
        ] {
            let got = until_all_answer(&sys, subject, &all).await;
            assert_eq!(got, all, "{subject} sent on {}", node.name);
        }
    }
    // Each server's own endpoint, asked from every other node.
    let asker = connect(nodes[0], "sys").await;
    let inbox = asker.new_inbox();
    let mut sub = asker.subscribe(inbox.clone()).await.unwrap();
    asker
        .publish_with_reply("$SYS.REQ.SERVER.PING.IDZ", inbox, "".into())
        .await
        .unwrap();
    let mut ids = Vec::new();
    while let Some(json) = next_event_from(&mut sub, Duration::from_secs(1)).await {
        ids.push((
            json["name"].as_str().unwrap().to_string(),
            json["id"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(ids.len(), nodes.len(), "{ids:?}");
    for from in nodes {
        let sys = connect(from, "sys").await;
        for (name, id) in &ids {
            let got = responders(&sys, &format!("$SYS.REQ.SERVER.{id}.VARZ")).await;
            assert_eq!(got, BTreeSet::from([name.clone()]), "from {}", from.name);
        }
    }
}

/// A client connecting to (and leaving) any node is announced to system clients on every
/// node, by the server it connected to.
async fn connect_events_cross(nodes: &[&Node]) {
    let mut watchers = Vec::new();
    for node in nodes {
        let sys = connect(node, "sys").await;
        let connects = sys.subscribe("$SYS.ACCOUNT.APP.CONNECT").await.unwrap();
        let disconnects = sys.subscribe("$SYS.ACCOUNT.APP.DISCONNECT").await.unwrap();
        sys.flush().await.unwrap();
        watchers.push((node.name.clone(), sys, connects, disconnects));
    }
    for node in nodes {
        for (watcher, _, connects, disconnects) in &mut watchers {
            // Drop what earlier connections left behind.
            while next_event_from(connects, Duration::from_millis(300))
                .await
                .is_some()
            {}
            while next_event_from(disconnects, Duration::from_millis(300))
                .await
                .is_some()
            {}
            // Interest may still be crossing: a client connects again until the event comes.
            let deadline = Instant::now() + SETTLE;
            let event = loop {
                let app = connect(node, "app").await;
                app.flush().await.unwrap();
                let event = next_event_from(connects, Duration::from_millis(500)).await;
                drop(app);
                if let Some(event) = event {
                    break event;
                }
                assert!(
                    Instant::now() < deadline,
                    "{watcher} never saw a CONNECT on {}",
                    node.name
                );
            };
            assert_eq!(event["server"]["name"], node.name.as_str(), "{event}");
            assert_eq!(event["client"]["acc"], "APP", "{event}");
            let gone = next_event_from(disconnects, SETTLE)
                .await
                .expect("DISCONNECT");
            assert_eq!(gone["server"]["name"], node.name.as_str(), "{gone}");
            assert_eq!(event["server"]["cluster"], "C1", "{event}");
        }
    }
}

/// Every server's periodic `STATSZ` reaches a system client on every node.
async fn statsz_crosses(nodes: &[&Node]) {
    for node in nodes {
        let sys = connect(node, "sys").await;
        let mut sub = sys.subscribe("$SYS.SERVER.*.STATSZ").await.unwrap();
        sys.flush().await.unwrap();
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        while seen != names(nodes) && Instant::now() < deadline {
            if let Some(event) = next_event_from(&mut sub, Duration::from_secs(1)).await {
                if let Some(name) = event["server"]["name"].as_str() {
                    seen.insert(name.to_string());
                }
            }
        }
        assert_eq!(seen, names(nodes), "STATSZ seen on {}", node.name);
    }
}

#[tokio::test]
async fn system_account_spans_a_mixed_cluster() {
    let Some(reference) = reference_server() else {
        return;
    };
    let scratch = Scratch::new("cluster-sys");
    // tern joins a nats-server seed, and a nats-server joins through tern.
    let a = node_with(&scratch, &reference, "A", &[], ACCOUNTS);
    let t = node_with(&scratch, &PathBuf::from(TERN), "T", &[&a], ACCOUNTS);
    let b = node_with(&scratch, &reference, "B", &[&t], ACCOUNTS);
    let nodes = [&a, &t, &b];
    pings_reach_every_node(&nodes).await;
    connect_events_cross(&nodes).await;
    statsz_crosses(&nodes).await;
}

#[tokio::test]
async fn system_account_spans_tern_nodes() {
    let scratch = Scratch::new("cluster-sys-tern");
    let tern = PathBuf::from(TERN);
    let t1 = node_with(&scratch, &tern, "T1", &[], ACCOUNTS);
    let t2 = node_with(&scratch, &tern, "T2", &[&t1], ACCOUNTS);
    let nodes = [&t1, &t2];
    pings_reach_every_node(&nodes).await;
    connect_events_cross(&nodes).await;
    statsz_crosses(&nodes).await;
}
