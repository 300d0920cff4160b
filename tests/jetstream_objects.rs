//! The async-nats object store beyond put and get: watchers, links to objects and to buckets,
//! and sealing a bucket; and the stream updates sealing rests on. Each scenario runs on tern
//! and on nats-server 2.15.1 and what the client sees must be the same.

mod common;

use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectInfo, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use common::jetstream::{call, start_js_server, transcripts_side_by_side};
use common::process::Scratch;
use common::WAIT;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

fn assert_same(ours: &[String], theirs: &[String]) {
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(a, b, "\ntern        {a}\nnats-server {b}");
    }
    assert_eq!(
        ours.len(),
        theirs.len(),
        "\ntern {ours:#?}\nnats-server {theirs:#?}"
    );
}

/// An object's info without what differs by nature (nuid, modification time).
fn shown(info: &ObjectInfo) -> String {
    let link = info
        .options
        .as_ref()
        .and_then(|o| o.link.as_ref())
        .map(|l| format!(" link {}/{:?}", l.bucket, l.name))
        .unwrap_or_default();
    format!(
        "{} in {} size {} chunks {} deleted {} digest {:?}{link}",
        info.name, info.bucket, info.size, info.chunks, info.deleted, info.digest
    )
}

async fn bucket(js: &async_nats::jetstream::Context, name: &str) -> ObjectStore {
    js.create_object_store(object_store::Config {
        bucket: name.into(),
        storage: StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn read(store: &ObjectStore, name: &str) -> Result<Vec<u8>, String> {
    let mut object = store
        .get(name)
        .await
        .map_err(|e| format!("{:?}", e.kind()))?;
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.unwrap();
    Ok(bytes)
}

/// What an object store's watchers, links and seal show a client of the server at `addr`.
async fn object_store_transcript(addr: &str) -> Vec<String> {
    let js = async_nats::jetstream::new(async_nats::connect(addr).await.unwrap());
    let mut out = Vec::new();
    let mut files = bucket(&js, "files").await;
    let other = bucket(&js, "other").await;
    files.put("a", &mut &b"first"[..]).await.unwrap();
    other.put("x", &mut &b"elsewhere"[..]).await.unwrap();
    // A watcher with history starts from what is there; a plain one only sees what follows.
    let mut history = files.watch_with_history().await.unwrap();
    let mut updates = files.watch().await.unwrap();
    let first = tokio::time::timeout(WAIT, history.next()).await.unwrap();
    out.push(format!("history: {}", shown(&first.unwrap().unwrap())));
    let big: Vec<u8> = (0..200_000u32).map(|n| (n % 253) as u8).collect();
    files.put("b", &mut &big[..]).await.unwrap();
    let a = files.info("a").await.unwrap();
    out.push(format!(
        "link: {}",
        shown(&files.add_link("la", &a).await.unwrap())
    ));
    out.push(format!(
        "bucket link: {}",
        shown(&files.add_bucket_link("lo", "other").await.unwrap())
    ));
    let x = other.info("x").await.unwrap();
    out.push(format!(
        "cross link: {}",
        shown(&files.add_link("lx", &x).await.unwrap())
    ));
    // A link to a link is refused by the client; a link's name over an object too.
    let la = files.info("la").await.unwrap();
    let refused = files.add_link("lla", &la).await.unwrap_err();
    out.push(format!("link to a link: {:?}", refused.kind()));
    let refused = files.add_link("b", &a).await.unwrap_err();
    out.push(format!("link over an object: {:?}", refused.kind()));
    files.delete("a").await.unwrap();
    for watcher in [&mut updates, &mut history] {
        for _ in 0..5 {
            let info = tokio::time::timeout(WAIT, watcher.next()).await.unwrap();
            out.push(format!("watch: {}", shown(&info.unwrap().unwrap())));
        }
    }
    // Links are followed one level (into another bucket too); a bucket link is not an object.
    out.push(format!("get lx: {:?}", read(&files, "lx").await));
    out.push(format!(
        "get la after a went: {:?}",
        read(&files, "la").await
    ));
    out.push(format!("get lo: {:?}", read(&files, "lo").await));
    let b = read(&files, "b").await.unwrap();
    out.push(format!("get b: {} bytes, whole {}", b.len(), b == big));
    // Sealed: nothing changes any more, everything still reads.
    files.seal().await.unwrap();
    let info = js
        .get_stream("OBJ_files")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let c = &info.config;
    out.push(format!(
        "sealed {} deny_delete {} deny_purge {} discard {:?} max_age {:?} rollup {}",
        c.sealed, c.deny_delete, c.deny_purge, c.discard, c.max_age, c.allow_rollup
    ));
    let put = files.put("c", &mut &b"late"[..]).await;
    out.push(format!(
        "put after seal: {:?}",
        put.map(|_| ()).map_err(|e| e.kind())
    ));
    let delete = files.delete("b").await;
    out.push(format!(
        "delete after seal: {:?}",
        delete.map_err(|e| e.kind())
    ));
    out.push(format!(
        "get b after seal: {}",
        read(&files, "b").await.is_ok()
    ));
    let mut names: Vec<String> = Vec::new();
    let mut list = files.list().await.unwrap();
    while let Ok(Some(info)) = tokio::time::timeout(Duration::from_secs(2), list.next()).await {
        names.push(info.unwrap().name);
    }
    names.sort();
    out.push(format!("list after seal: {names:?}"));
    out
}

#[tokio::test]
async fn object_store_watch_links_and_seal_side_by_side_with_nats_server() {
    let (ours, theirs) = transcripts_side_by_side("js-obj-cmp", |addr| async move {
        object_store_transcript(&addr).await
    })
    .await;
    assert_same(&ours, &theirs);
}

/// What sealing does to a stream, on the raw API: create refuses it, update seals (and sets
/// what sealing implies), every change after is refused with nats-server's errors.
async fn seal_transcript(addr: &str) -> Vec<String> {
    let client = async_nats::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let mut step = |what: &str, value: serde_json::Value| out.push(format!("{what}: {value}"));
    step(
        "create sealed",
        call(
            &client,
            "$JS.API.STREAM.CREATE.S",
            r#"{"name":"S","subjects":["s.>"],"sealed":true}"#,
        )
        .await,
    );
    call(
        &client,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"max_age":60000000000,"allow_rollup_hdrs":true}"#,
    )
    .await;
    for n in 1..=3 {
        client.request(format!("s.{n}"), "m".into()).await.unwrap();
    }
    step(
        "seal",
        call(
            &client,
            "$JS.API.STREAM.UPDATE.S",
            r#"{"name":"S","subjects":["s.>"],"sealed":true}"#,
        )
        .await,
    );
    let ack = client.request("s.4", "late".into()).await.unwrap();
    step("publish", serde_json::from_slice(&ack.payload).unwrap());
    step("purge", call(&client, "$JS.API.STREAM.PURGE.S", "").await);
    step(
        "delete",
        call(&client, "$JS.API.STREAM.MSG.DELETE.S", r#"{"seq":1}"#).await,
    );
    step(
        "unseal",
        call(
            &client,
            "$JS.API.STREAM.UPDATE.S",
            r#"{"name":"S","subjects":["s.>"],"deny_delete":true,"deny_purge":true}"#,
        )
        .await,
    );
    step(
        "update from the old config",
        call(
            &client,
            "$JS.API.STREAM.UPDATE.S",
            r#"{"name":"S","subjects":["s.>"],"sealed":true}"#,
        )
        .await,
    );
    step(
        "update sealed",
        call(
            &client,
            "$JS.API.STREAM.UPDATE.S",
            r#"{"name":"S","subjects":["s.>","t"],"sealed":true,"deny_delete":true,"deny_purge":true}"#,
        )
        .await,
    );
    step(
        "get",
        call(&client, "$JS.API.STREAM.MSG.GET.S", r#"{"seq":2}"#).await,
    );
    step("info", call(&client, "$JS.API.STREAM.INFO.S", "").await);
    out
}

#[tokio::test]
async fn sealed_streams_side_by_side_with_nats_server() {
    let (ours, theirs) =
        transcripts_side_by_side(
            "js-seal-cmp",
            |addr| async move { seal_transcript(&addr).await },
        )
        .await;
    assert_same(&ours, &theirs);
}

/// A sealed file stream stays sealed, with every message, across a restart (the update is
/// written to the stream's configuration on disk).
#[tokio::test]
async fn sealed_stream_survives_a_restart() {
    let scratch = Scratch::new("js-seal-restart");
    let dir = scratch.0.join("tern");
    let (tern, addr) = start_js_server(&scratch.nats_server(), &dir);
    let client = async_nats::connect(&addr).await.unwrap();
    call(
        &client,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s"]}"#,
    )
    .await;
    client.request("s", "kept".into()).await.unwrap();
    let sealed = call(
        &client,
        "$JS.API.STREAM.UPDATE.S",
        r#"{"name":"S","subjects":["s"],"sealed":true}"#,
    )
    .await;
    assert_eq!(sealed["config"]["sealed"], true, "{sealed}");
    drop(client);
    drop(tern);
    let (_tern, addr) = start_js_server(&scratch.nats_server(), &dir);
    let client = async_nats::connect(&addr).await.unwrap();
    let info = call(&client, "$JS.API.STREAM.INFO.S", "").await;
    assert_eq!(info["config"]["sealed"], true, "{info}");
    assert_eq!(info["state"]["messages"], 1, "{info}");
    let ack = client.request("s", "late".into()).await.unwrap();
    let ack: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(ack["error"]["err_code"], 10109, "{ack}");
}
