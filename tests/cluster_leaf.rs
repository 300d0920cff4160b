//! Leaf-origin interest and messages from a nats-server peer: a nats-server hub H clustered
//! with a node N, and a nats-server leaf L connected to H. H tells N of L's subscriptions
//! (`LS+ <origin> ...`) and hands on L's messages (`LMSG <origin> ...`). Run with N being tern
//! and, side by side, nats-server 2.15.1: messages cross between N and L exactly once, both
//! ways, queue groups included.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{
    exactly_once, logged_addr, node_with, publish_numbered, standalone, until_routed, Node, SETTLE,
    TERN,
};
use common::process::{reference_server, Process, Scratch};
use futures::StreamExt;

/// A server outside the cluster: the leaf L, dialing `hub_leaf` (`host:port`).
struct Leaf {
    _process: Process,
    client: String,
}

fn leaf(scratch: &Scratch, binary: &Path, hub_leaf: &str) -> Leaf {
    let config = format!("leafnodes {{ remotes: [{{ url: \"nats-leaf://{hub_leaf}\" }}] }}");
    let (process, text) = standalone(scratch, binary, "L", &config);
    Leaf {
        _process: process,
        client: after(&text, "Listening for client connections on "),
    }
}

/// The last word of the log line containing `marker`.
fn after(text: &str, marker: &str) -> String {
    logged_addr(text, marker).unwrap()
}

async fn connect(addr: &str) -> async_nats::Client {
    async_nats::connect(format!("nats://{addr}")).await.unwrap()
}

/// A queue group with members on `members` gets each of `count` messages from `publisher`
/// exactly once in total; every member's share is returned.
async fn queue_once(
    publisher: &async_nats::Client,
    members: &[&async_nats::Client],
    subject: &str,
    count: u32,
) -> Vec<usize> {
    let mut subs = Vec::new();
    for member in members {
        let sub = member
            .queue_subscribe(subject.to_string(), "workers".into())
            .await
            .unwrap();
        member.flush().await.unwrap();
        subs.push(sub);
    }
    // Every member's interest has arrived once a probe from the publisher reaches each of
    // them through a plain subscription sent after the group's.
    for member in members {
        let probe = format!("{subject}.probe");
        let mut sub = member.subscribe(probe.clone()).await.unwrap();
        member.flush().await.unwrap();
        until_routed(publisher, &mut sub, &probe).await;
    }
    publish_numbered(publisher, subject, count).await;
    let mut seen = vec![0usize; count as usize];
    let mut shares = vec![0usize; subs.len()];
    let mut all = futures::stream::select_all(
        subs.into_iter()
            .enumerate()
            .map(|(i, sub)| sub.map(move |msg| (i, msg))),
    );
    for _ in 0..count {
        let (i, msg) = tokio::time::timeout(SETTLE, all.next())
            .await
            .unwrap_or_else(|_| panic!("{subject}: stalled at {seen:?}"))
            .unwrap();
        let n: usize = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
        seen[n] += 1;
        shares[i] += 1;
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), all.next()).await;
    assert!(extra.is_err(), "{subject}: a message came twice");
    assert!(seen.iter().all(|&n| n == 1), "{subject}: {seen:?}");
    shares
}

async fn scenario(n_binary: &Path, reference: &Path, tag: &str) {
    let scratch = Scratch::new(&format!("cluster-leaf-{tag}"));
    let hub = node_with(
        &scratch,
        reference,
        "H",
        &[],
        "leafnodes { listen: \"127.0.0.1:-1\" }",
    );
    let hub_log = std::fs::read_to_string(scratch.0.join("H.log")).unwrap();
    let hub_leaf = after(&hub_log, "Listening for leafnode connections on ");
    let n: Node = node_with(&scratch, n_binary, "N", &[&hub], "");
    let l = leaf(&scratch, reference, &hub_leaf);

    let on_n = connect(&n.client).await;
    let on_l = connect(&l.client).await;
    let on_h = connect(&hub.client).await;

    // N to L, and L to N.
    let mut sub = on_l.subscribe("to.leaf").await.unwrap();
    on_l.flush().await.unwrap();
    exactly_once(&on_n, &mut sub, "to.leaf", 100).await;
    let mut sub = on_n.subscribe("to.node").await.unwrap();
    on_n.flush().await.unwrap();
    exactly_once(&on_l, &mut sub, "to.node", 100).await;

    // The hub's own subscriber on the same subject comes and goes: L's interest stays.
    let mut leaf_sub = on_l.subscribe("shared").await.unwrap();
    on_l.flush().await.unwrap();
    let hub_sub = on_h.subscribe("shared").await.unwrap();
    on_h.flush().await.unwrap();
    exactly_once(&on_n, &mut leaf_sub, "shared", 10).await;
    drop(hub_sub);
    on_h.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    exactly_once(&on_n, &mut leaf_sub, "shared", 10).await;

    // Queue groups across: members on N and L, published from either side.
    let shares = queue_once(&on_n, &[&on_n, &on_l], "q.from.node", 200).await;
    assert_eq!(shares.iter().sum::<usize>(), 200, "{tag}: {shares:?}");
    let shares = queue_once(&on_l, &[&on_n, &on_l], "q.from.leaf", 200).await;
    assert_eq!(shares.iter().sum::<usize>(), 200, "{tag}: {shares:?}");
    // A group whose only member is behind the leaf, published on N.
    let shares = queue_once(&on_n, &[&on_l], "q.leaf.only", 50).await;
    assert_eq!(shares, vec![50], "{tag}");
    // And one whose only member is on N, published behind the leaf.
    let shares = queue_once(&on_l, &[&on_n], "q.node.only", 50).await;
    assert_eq!(shares, vec![50], "{tag}");
}

#[tokio::test]
async fn leaf_behind_a_nats_server_peer_reaches_tern() {
    let Some(reference) = reference_server() else {
        return;
    };
    scenario(&PathBuf::from(TERN), &reference, "tern").await;
    scenario(&reference, &reference, "nats").await;
}
