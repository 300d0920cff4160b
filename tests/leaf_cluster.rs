//! Leafnodes inside a cluster: a leaf L attached to hub node A of cluster `C1` reaches clients
//! on the other nodes and they reach it, exactly once, through A's routes (leaf-origin
//! interest `LS+ <origin> ...` and `LMSG <origin> ...`); mixed tern and nats-server clusters.
//! And a tern leaf given every node's leafnode URL moves to the next node when its hub dies.

mod common;

use std::path::{Path, PathBuf};

use common::cluster::{
    exactly_once, exchange_both_ways, logged_addr, node_with, standalone, until_routed, Node, TERN,
};
use common::process::{reference_server, Process, Scratch};

const LISTEN: &str = "leafnodes { listen: \"127.0.0.1:-1\", reconnect_interval: \"250ms\" }";

/// The leafnode `host:port` a node's log shows.
fn leaf_port(scratch: &Scratch, node: &Node) -> String {
    let log = scratch.0.join(format!("{}.log", node.name));
    let text = std::fs::read_to_string(log).unwrap();
    logged_addr(&text, "Listening for leafnode connections on ").expect("a leafnode port")
}

/// A leaf (outside any cluster) dialing `hubs` in turn; its client `host:port`.
fn leaf(scratch: &Scratch, binary: &Path, hubs: &[String]) -> (Process, String) {
    let urls: Vec<String> = hubs.iter().map(|h| format!("\"nats://{h}\"")).collect();
    let config = format!(
        "leafnodes {{ reconnect_interval: \"250ms\", remotes: [ {{ urls: [{}] }} ] }}",
        urls.join(", ")
    );
    let (process, text) = standalone(scratch, binary, "L", &config);
    let client = logged_addr(&text, "Listening for client connections on ").unwrap();
    (process, client)
}

async fn connect(addr: &str) -> async_nats::Client {
    async_nats::connect(format!("nats://{addr}")).await.unwrap()
}

/// Hub A (`hub`) and node B (`other`) clustered, leaf L (`leaf_binary`) on A: messages cross
/// L <-> B both ways exactly once.
async fn through_the_cluster(hub: &Path, other: &Path, leaf_binary: &Path, name: &str) {
    let scratch = Scratch::new(name);
    let a = node_with(&scratch, hub, "A", &[], LISTEN);
    let b = node_with(&scratch, other, "B", &[&a], "");
    let (_l, l_client) = leaf(&scratch, leaf_binary, &[leaf_port(&scratch, &a)]);
    let lc = connect(&l_client).await;
    let bc = connect(&b.client).await;
    exchange_both_ways(&lc, &bc, "cross", 50).await;
    // Request/reply from B to a responder on L.
    let mut service = lc.subscribe("svc").await.unwrap();
    lc.flush().await.unwrap();
    until_routed(&bc, &mut service, "svc").await;
    let responder = lc.clone();
    let task = tokio::spawn(async move {
        use futures::StreamExt;
        if let Some(req) = service.next().await {
            responder
                .publish(req.reply.unwrap(), "answer".into())
                .await
                .unwrap();
            responder.flush().await.unwrap();
        }
    });
    let answer = tokio::time::timeout(common::cluster::SETTLE, bc.request("svc", "q".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.payload, "answer");
    task.await.unwrap();
}

fn reference() -> Option<PathBuf> {
    reference_server()
}

#[tokio::test]
async fn a_leaf_reaches_a_tern_cluster_through_its_hub() {
    let tern = Path::new(TERN);
    through_the_cluster(tern, tern, tern, "leafc-ttt").await;
}

#[tokio::test]
async fn a_nats_server_leaf_reaches_a_mixed_cluster_through_a_tern_hub() {
    let Some(ns) = reference() else {
        return;
    };
    through_the_cluster(Path::new(TERN), &ns, &ns, "leafc-tnn").await;
}

#[tokio::test]
async fn a_tern_leaf_reaches_a_mixed_cluster_through_a_nats_server_hub() {
    let Some(ns) = reference() else {
        return;
    };
    through_the_cluster(&ns, Path::new(TERN), Path::new(TERN), "leafc-ntt").await;
}

/// A tern leaf given the leafnode URLs of a three-node mixed cluster keeps its subscription
/// when the node it is attached to is killed: it moves to the next and tells it again.
#[tokio::test]
async fn a_tern_leaf_fails_over_across_a_mixed_cluster() {
    let scratch = Scratch::new("leafc-failover");
    let ns = reference().unwrap_or_else(|| TERN.into());
    let a = node_with(&scratch, Path::new(TERN), "A", &[], LISTEN);
    let b = node_with(&scratch, &ns, "B", &[&a], LISTEN);
    let c = node_with(&scratch, Path::new(TERN), "C", &[&a, &b], LISTEN);
    let urls = [&a, &b, &c].map(|n| leaf_port(&scratch, n));
    let (_l, l_client) = leaf(&scratch, Path::new(TERN), &urls);
    let lc = connect(&l_client).await;
    let mut sub = lc.subscribe("survives").await.unwrap();
    lc.flush().await.unwrap();
    let cc = connect(&c.client).await;
    exactly_once(&cc, &mut sub, "survives", 20).await;
    // The leaf dialed A first: kill it.
    drop(a);
    let bc = connect(&b.client).await;
    exactly_once(&bc, &mut sub, "survives", 20).await;
    exactly_once(&cc, &mut sub, "survives", 20).await;
}
