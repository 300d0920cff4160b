//! Leafnodes over WebSocket between separate server processes, tern and nats-server 2.15.1 in
//! every pairing: a hub H whose `websocket` listener takes leafnodes (requests for the
//! `/leafnode` path) and a leaf L whose remote has a `ws://` or `wss://` URL. Clients on each
//! side exchange messages both ways (plain subscriptions, a large message, request/reply), with
//! and without permessage-deflate and masking, and over `wss` with certificates made at test
//! time. A hub whose leafnode port is not configured refuses them, as nats-server does.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cluster::{
    exchange_both_ways, logged_addr, request_across, standalone, until_routed, SETTLE, TERN,
};
use common::pki::Pki;
use common::process::{reference_server, wait_for_log, Process, Scratch};
use futures::StreamExt;

/// One server process.
struct Srv {
    _process: Process,
    /// Client `host:port`.
    client: String,
    /// WebSocket `host:port`, when it has a WebSocket listener.
    ws: Option<String>,
    log: std::path::PathBuf,
}

/// Starts `binary` as server `name` with `config` (beyond its client port and name).
fn start(scratch: &Scratch, binary: &Path, name: &str, config: &str) -> Srv {
    let (process, text) = standalone(scratch, binary, name, config);
    let ws = logged_addr(&text, "Listening for websocket clients on ").map(|url| {
        url.rsplit_once("://")
            .map_or(url.clone(), |(_, a)| a.to_string())
    });
    Srv {
        _process: process,
        client: logged_addr(&text, "Listening for client connections on ").unwrap(),
        ws,
        log: scratch.0.join(format!("{name}.log")),
    }
}

/// A hub taking leafnodes on its WebSocket listener (`websocket` is the block's body beyond
/// its listen address); it listens on a leafnode port too, as nats-server requires.
fn hub(scratch: &Scratch, binary: &Path, websocket: &str) -> Srv {
    start(
        scratch,
        binary,
        "H",
        &format!(
            "leafnodes {{ listen: \"127.0.0.1:-1\" }}\n\
             websocket {{ listen: \"127.0.0.1:-1\", {websocket} }}"
        ),
    )
}

/// A leaf whose one remote is `url`, with `remote` added to the remote's block.
fn leaf(scratch: &Scratch, binary: &Path, url: &str, remote: &str) -> Srv {
    start(
        scratch,
        binary,
        "L",
        &format!(
            "leafnodes {{ reconnect_interval: \"250ms\", remotes: [ {{ url: \"{url}\" {remote} }} ] }}"
        ),
    )
}

async fn connect(srv: &Srv) -> async_nats::Client {
    async_nats::connect(format!("nats://{}", srv.client))
        .await
        .unwrap()
}

/// Messages cross the link both ways: plain subscriptions exactly once, a message larger than
/// any one read (many frames, and compressed when compression is on), and a request whose
/// responder is on the other side.
async fn exchange(hub: &Srv, leaf: &Srv) {
    let h = connect(hub).await;
    let l = connect(leaf).await;
    exchange_both_ways(&h, &l, "plain", 50).await;
    for (from, to, way) in [(&h, &l, "down"), (&l, &h, "up")] {
        let subject = format!("big.{way}");
        let mut sub = to.subscribe(subject.clone()).await.unwrap();
        to.flush().await.unwrap();
        until_routed(from, &mut sub, &subject).await;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        from.publish(subject.clone(), big.clone().into())
            .await
            .unwrap();
        from.flush().await.unwrap();
        let msg = tokio::time::timeout(SETTLE, sub.next())
            .await
            .unwrap()
            .unwrap();
        assert!(msg.payload == big, "{subject}: the large message changed");

        request_across(from, to, &format!("svc.{way}")).await;
    }
}

/// A plain `ws://` link: the hub's WebSocket block has `websocket`, the remote `remote`.
async fn ws_pairing(
    hub_binary: &Path,
    leaf_binary: &Path,
    name: &str,
    websocket: &str,
    remote: &str,
) {
    let scratch = Scratch::new(name);
    let h = hub(&scratch, hub_binary, &format!("no_tls: true, {websocket}"));
    let url = format!("ws://{}", h.ws.as_deref().unwrap());
    let l = leaf(&scratch, leaf_binary, &url, remote);
    exchange(&h, &l).await;
}

const COMPRESSED: (&str, &str) = ("compression: true", ", ws_compression: true");
const PLAIN: (&str, &str) = ("compression: false", "");
/// The leaf asks not to mask its frames; the hub agrees.
const UNMASKED: (&str, &str) = ("compression: false", ", ws_no_masking: true");

#[tokio::test]
async fn tern_leaf_on_a_nats_server_hub_over_ws() {
    let Some(reference) = reference_server() else {
        return;
    };
    for (n, (websocket, remote)) in [COMPRESSED, PLAIN, UNMASKED].into_iter().enumerate() {
        let name = format!("leafws-tern-on-ns-{n}");
        ws_pairing(&reference, Path::new(TERN), &name, websocket, remote).await;
    }
}

#[tokio::test]
async fn nats_server_leaf_on_a_tern_hub_over_ws() {
    let Some(reference) = reference_server() else {
        return;
    };
    for (n, (websocket, remote)) in [COMPRESSED, PLAIN, UNMASKED].into_iter().enumerate() {
        let name = format!("leafws-ns-on-tern-{n}");
        ws_pairing(Path::new(TERN), &reference, &name, websocket, remote).await;
    }
}

#[tokio::test]
async fn tern_leaf_on_a_tern_hub_over_ws() {
    for (n, (websocket, remote)) in [COMPRESSED, PLAIN, UNMASKED].into_iter().enumerate() {
        let name = format!("leafws-tern-on-tern-{n}");
        ws_pairing(Path::new(TERN), Path::new(TERN), &name, websocket, remote).await;
    }
}

/// The reference pairing: the same exchange holds between two nats-servers.
#[tokio::test]
async fn nats_server_leaf_on_a_nats_server_hub_over_ws() {
    let Some(reference) = reference_server() else {
        return;
    };
    let (websocket, remote) = COMPRESSED;
    ws_pairing(&reference, &reference, "leafws-ns-on-ns", websocket, remote).await;
}

/// `wss://`: the hub's WebSocket listener has TLS (certificates made at test time) and asks
/// for the leaf's certificate; the remote trusts the test CA and presents a client
/// certificate. A side that skipped TLS would not get through.
async fn wss_pairing(hub_binary: &Path, leaf_binary: &Path, name: &str) {
    let scratch = Scratch::new(name);
    let pki = Pki::new(&format!("{name}-pki"));
    let h = hub(
        &scratch,
        hub_binary,
        &format!(
            "compression: true, tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, \
             verify: true, timeout: 2 }}",
            pki.server_cert, pki.server_key, pki.ca
        ),
    );
    let url = format!("wss://{}", h.ws.as_deref().unwrap());
    let tls = format!(
        ", ws_compression: true, tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?} }}",
        pki.client_cert, pki.client_key, pki.ca
    );
    let l = leaf(&scratch, leaf_binary, &url, &tls);
    exchange(&h, &l).await;
}

#[tokio::test]
async fn tern_leaf_on_a_nats_server_hub_over_wss() {
    let Some(reference) = reference_server() else {
        return;
    };
    wss_pairing(&reference, Path::new(TERN), "leafwss-tern-on-ns").await;
}

#[tokio::test]
async fn nats_server_leaf_on_a_tern_hub_over_wss() {
    let Some(reference) = reference_server() else {
        return;
    };
    wss_pairing(Path::new(TERN), &reference, "leafwss-ns-on-tern").await;
}

#[tokio::test]
async fn tern_leaf_on_a_tern_hub_over_wss() {
    wss_pairing(Path::new(TERN), Path::new(TERN), "leafwss-tern-on-tern").await;
}

/// A hub with a WebSocket listener but no leafnode port: it logs nats-server's error for each
/// leafnode that upgrades and closes the connection; the leaf (nats-server, the same against
/// both hubs) keeps trying, and the hub's clients are not disturbed.
#[tokio::test]
async fn a_hub_without_a_leafnode_port_refuses_them_as_nats_server() {
    let Some(reference) = reference_server() else {
        return;
    };
    for (hub_binary, name) in [(Path::new(TERN), "tern"), (reference.as_path(), "ns")] {
        let scratch = Scratch::new(&format!("leafws-noport-{name}"));
        let h = start(
            &scratch,
            hub_binary,
            "H",
            "websocket { listen: \"127.0.0.1:-1\", no_tls: true }",
        );
        let url = format!("ws://{}", h.ws.as_deref().unwrap());
        let l = leaf(&scratch, &reference, &url, "");
        let text = wait_for_log(&h.log, "the refusal", |t| {
            t.matches("[ERR] Not configured to accept leaf node connections")
                .count()
                >= 2
        });
        assert!(
            !text.contains("Leafnode connection created"),
            "{name}: {text}"
        );
        let leaf_log = std::fs::read_to_string(&l.log).unwrap();
        assert!(
            !leaf_log.contains("JetStream using domains"),
            "{name}: the link came up: {leaf_log}"
        );
        let client = connect(&h).await;
        tokio::time::timeout(Duration::from_secs(5), client.flush())
            .await
            .unwrap()
            .unwrap();
    }
}
