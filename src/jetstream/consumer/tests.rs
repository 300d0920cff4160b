//! The consumer state machine against the memory store, with time given.

use super::super::store::MemoryStore;
use super::*;

const SEC: i64 = 1_000_000_000;

fn store_with(n: usize) -> MemoryStore {
    let mut s = MemoryStore::new();
    for i in 0..n {
        let subject = if i % 2 == 0 { "s.a" } else { "s.b" };
        s.store_msg(
            subject,
            Bytes::new(),
            Bytes::from(format!("m{}", i + 1)),
            10,
        )
        .unwrap();
    }
    s
}

fn consumer(json: &str, store: &MemoryStore) -> Consumer {
    let config: ConsumerConfig = serde_json::from_str(json).unwrap();
    let config = config.normalize(false).unwrap();
    Consumer::new("C".into(), "S".into(), config, store, 0)
}

fn delivered(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Deliver { ack, .. } => ack.clone(),
            Action::Status { header, .. } => header.lines().next().unwrap().to_string(),
            Action::FlowControl { reply, .. } => format!("FC {reply}"),
        })
        .collect()
}

#[test]
fn defaults() {
    let c = consumer(
        r#"{"durable_name":"C","ack_policy":"explicit"}"#,
        &store_with(0),
    )
    .config;
    assert_eq!(
        (c.ack_wait, c.max_deliver, c.max_ack_pending),
        (30 * SEC, -1, 1000)
    );
    assert_eq!((c.max_waiting, c.inactive_threshold), (512, 0));
    let err = serde_json::from_str::<ConsumerConfig>(r#"{"pause_until":"2030-01-01T00:00:00Z"}"#)
        .unwrap()
        .normalize(false)
        .unwrap_err();
    assert!(err.description.contains("pause_until"));
}

#[test]
fn batches_acks_and_no_wait() {
    let store = store_with(3);
    let mut c = consumer(r#"{"durable_name":"C","ack_policy":"explicit"}"#, &store);
    let got = delivered(&c.pull("in.1", br#"{"batch":2}"#, &store, SEC));
    assert_eq!(got, ["$JS.ACK.S.C.1.1.1.10.2", "$JS.ACK.S.C.1.2.2.10.1"]);
    let got = delivered(&c.pull("in.2", br#"{"batch":5,"no_wait":true}"#, &store, SEC));
    assert_eq!(got, ["$JS.ACK.S.C.1.3.3.10.0", "NATS/1.0 404 No Messages"]);
    assert_eq!(c.pending.len(), 3);
    c.ack("$JS.ACK.S.C.1.2.2.10.1", b"+ACK", &store, SEC);
    assert_eq!(c.ack_floor, (0, 0));
    c.ack("$JS.ACK.S.C.1.1.1.10.2", b"", &store, SEC);
    assert_eq!(c.ack_floor, (2, 2));
    let info = c.info(&store);
    assert_eq!(info["num_ack_pending"], 1);
    assert_eq!(info["num_pending"], 0);
    // Nothing there: no_wait gets 404 at once.
    let got = delivered(&c.pull("in.3", br#"{"no_wait":true}"#, &store, SEC));
    assert_eq!(got, ["NATS/1.0 404 No Messages"]);
}

#[test]
fn expiry_redelivery_and_max_deliver() {
    let store = store_with(1);
    let mut c = consumer(
        r#"{"durable_name":"C","ack_policy":"explicit","ack_wait":2000000000,"max_deliver":2}"#,
        &store,
    );
    assert_eq!(delivered(&c.pull("in", b"1", &store, 0)).len(), 1);
    // A request that waits, then times out with what it still wanted.
    assert!(c
        .pull("in.w", br#"{"batch":3,"expires":1000000000}"#, &store, 0)
        .is_empty());
    let got = delivered(&c.tick(&store, SEC));
    assert_eq!(got, ["NATS/1.0 408 Request Timeout"]);
    // Not acknowledged within ack_wait: delivered again, counted twice.
    c.pull("in.2", b"", &store, SEC);
    let got = delivered(&c.tick(&store, 2 * SEC));
    assert_eq!(got, ["$JS.ACK.S.C.2.1.2.10.0"]);
    assert_eq!(c.info(&store)["num_redelivered"], 1);
    // A -NAK after the last allowed delivery: given up on.
    c.pull("in.3", b"", &store, 2 * SEC);
    let got = delivered(&c.ack("$JS.ACK.S.C.2.1.2.10.0", b"-NAK", &store, 2 * SEC));
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(c.info(&store)["num_ack_pending"], 0);
    assert_eq!(c.ack_floor, (2, 1));
}

#[test]
fn saved_and_restored() {
    let store = store_with(3);
    let mut c = consumer(
        r#"{"durable_name":"C","ack_policy":"explicit","ack_wait":2000000000}"#,
        &store,
    );
    c.pull("in", b"3", &store, 0);
    c.ack("$JS.ACK.S.C.1.1.1.10.2", b"+ACK", &store, 0);
    c.ack("$JS.ACK.S.C.1.2.2.10.1", b"-NAK", &store, 0);
    assert!(c.dirty);
    let saved = c.saved();
    let json = serde_json::to_string(&saved).unwrap();
    let back: SavedConsumer = serde_json::from_str(&json).unwrap();
    assert_eq!(back, saved);
    let mut r = Consumer::restore("S".into(), back, 10 * SEC);
    assert_eq!(r.info(&store), c.info(&store));
    // 2 (NAKed, not yet sent again) and 3 come back after ack_wait from the restart.
    r.pull(
        "in.2",
        br#"{"batch":2,"expires":60000000000}"#,
        &store,
        10 * SEC,
    );
    assert!(r.tick(&store, 11 * SEC).is_empty());
    let got = delivered(&r.tick(&store, 12 * SEC));
    assert_eq!(got, ["$JS.ACK.S.C.2.2.4.10.0", "$JS.ACK.S.C.2.3.5.10.0"]);
}

#[test]
fn pull_requests_read_as_go_reads_them() {
    let store = store_with(2);
    let mut c = consumer(r#"{"durable_name":"C","ack_policy":"explicit"}"#, &store);
    let body = br#"{"batch":1,"expires":null,"min_pending":null,"group":null,"x":1}"#;
    assert_eq!(delivered(&c.pull("in", body, &store, 0)).len(), 1);
    let got = delivered(&c.pull("in", br#"{"batch":"two"}"#, &store, 0));
    assert_eq!(got, ["NATS/1.0 400 Bad Request"]);
    let got = delivered(&c.pull("in", br#"{"min_pending":1}"#, &store, 0));
    assert_eq!(
        got,
        ["NATS/1.0 400 Bad Request - Not a Overflow Priority consumer"]
    );
}

#[test]
fn max_ack_pending_stalls_new_deliveries_and_minus_one_does_not() {
    let store = store_with(3);
    let mut c = consumer(
        r#"{"durable_name":"C","ack_policy":"explicit","max_ack_pending":2}"#,
        &store,
    );
    assert_eq!(delivered(&c.pull("in", b"3", &store, 0)).len(), 2);
    assert_eq!(c.info(&store)["num_waiting"], 1);
    let got = delivered(&c.ack("$JS.ACK.S.C.1.1.1.10.2", b"+ACK", &store, 0));
    assert_eq!(got, ["$JS.ACK.S.C.1.3.3.10.0"]);
    let mut c = consumer(
        r#"{"durable_name":"C","ack_policy":"explicit","max_ack_pending":-1}"#,
        &store,
    );
    assert_eq!(delivered(&c.pull("in", b"3", &store, 0)).len(), 3);
}

#[test]
fn deleting_tells_waiting_requests() {
    let store = store_with(0);
    let mut c = consumer(r#"{"durable_name":"C","ack_policy":"explicit"}"#, &store);
    assert!(c
        .pull("in", br#"{"expires":5000000000}"#, &store, 0)
        .is_empty());
    assert_eq!(delivered(&c.close()), ["NATS/1.0 409 Consumer Deleted"]);
    assert!(c.tick(&store, 10 * SEC).is_empty());
}

#[test]
fn nak_with_a_delay() {
    let store = store_with(1);
    let mut c = consumer(r#"{"durable_name":"C","ack_policy":"explicit"}"#, &store);
    c.pull("in", b"", &store, 0);
    c.pull("in.2", b"", &store, 0);
    assert!(c
        .ack(
            "$JS.ACK.S.C.1.1.1.10.0",
            br#"-NAK {"delay":2000000000}"#,
            &store,
            0
        )
        .is_empty());
    assert!(c.tick(&store, SEC).is_empty());
    assert_eq!(
        delivered(&c.tick(&store, 2 * SEC)),
        ["$JS.ACK.S.C.2.1.2.10.0"]
    );
    c.pull("in.3", b"", &store, 2 * SEC);
    assert!(c
        .ack("$JS.ACK.S.C.2.1.2.10.0", b"-NAK 1s", &store, 2 * SEC)
        .is_empty());
    assert_eq!(
        delivered(&c.tick(&store, 3 * SEC)),
        ["$JS.ACK.S.C.3.1.3.10.0"]
    );
}

#[test]
fn filter_and_deliver_policies() {
    let store = store_with(4);
    let mut c = consumer(
        r#"{"durable_name":"C","ack_policy":"explicit","filter_subject":"s.b"}"#,
        &store,
    );
    assert_eq!(c.num_pending(&store), 2);
    let got = delivered(&c.pull("in", b"5", &store, 0));
    assert_eq!(got, ["$JS.ACK.S.C.1.2.1.10.1", "$JS.ACK.S.C.1.4.2.10.0"]);
    let c = consumer(r#"{"durable_name":"C","deliver_policy":"new"}"#, &store);
    assert_eq!(c.num_pending(&store), 0);
    let c = consumer(r#"{"durable_name":"C","deliver_policy":"last"}"#, &store);
    assert_eq!(c.num_pending(&store), 1);
    let c = consumer(
        r#"{"durable_name":"C","deliver_policy":"by_start_sequence","opt_start_seq":3}"#,
        &store,
    );
    assert_eq!(c.num_pending(&store), 2);
}

fn push(json: &str, store: &MemoryStore) -> Consumer {
    let mut c = consumer(json, store);
    assert!(c.config.is_push());
    c.set_interest(true, 0);
    c
}

#[test]
fn push_delivers_only_while_someone_listens() {
    let store = store_with(3);
    let mut c = consumer(
        r#"{"durable_name":"C","deliver_subject":"d","ack_policy":"explicit"}"#,
        &store,
    );
    assert!(c.tick(&store, SEC).is_empty());
    assert!(!c.info(&store).contains_key("push_bound"));
    c.set_interest(true, SEC);
    let got = delivered(&c.tick(&store, SEC));
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], "$JS.ACK.S.C.1.1.1.10.2");
    assert_eq!(c.info(&store)["push_bound"], true);
    // A pull request is refused.
    let got = delivered(&c.pull("in", b"1", &store, SEC));
    assert_eq!(got, ["NATS/1.0 409 Consumer is push based"]);
    // Not acknowledged in time: redelivered, while bound.
    c.set_interest(false, SEC);
    assert!(c.tick(&store, 40 * SEC).is_empty());
    c.set_interest(true, 40 * SEC);
    assert_eq!(c.tick(&store, 40 * SEC).len(), 3);
}

#[test]
fn push_idle_heartbeats_and_headers_only() {
    let store = store_with(2);
    let mut c = push(
        r#"{"name":"C","deliver_subject":"d","idle_heartbeat":1000000000,"headers_only":true,"filter_subject":"s.a"}"#,
        &store,
    );
    let out = c.tick(&store, 0);
    match &out[0] {
        Action::Deliver { header, data, .. } => {
            assert_eq!(&header[..], b"NATS/1.0\r\nNats-Msg-Size: 2\r\n\r\n");
            assert!(data.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(c.tick(&store, SEC / 2).is_empty());
    let out = c.tick(&store, SEC);
    assert_eq!(
        out,
        [Action::Status {
            to: "d".into(),
            header: "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1\r\nNats-Last-Stream: 2\r\n\r\n".into()
        }]
    );
    // Nobody listening: no heartbeat.
    c.set_interest(false, SEC);
    assert!(c.tick(&store, 3 * SEC).is_empty());
}

#[test]
fn push_flow_control_stalls_until_answered() {
    let mut store = MemoryStore::new();
    for _ in 0..40 {
        store
            .store_msg("s.a", Bytes::new(), Bytes::from(vec![b'x'; 100_000]), 10)
            .unwrap();
    }
    let mut c = push(
        r#"{"name":"C","deliver_subject":"d","flow_control":true,"idle_heartbeat":1000000000}"#,
        &store,
    );
    let out = delivered(&c.tick(&store, 0));
    // A request once past half of the 2 MiB window, delivery up to the window.
    let fc = out.iter().position(|a| a.starts_with("FC ")).unwrap();
    assert_eq!(fc, 11);
    let reply = out[fc].trim_start_matches("FC ").to_string();
    assert!(reply.starts_with("$JS.FC.S.C.") && reply.len() == "$JS.FC.S.C.".len() + 4);
    let sent = out.len() - 1;
    assert_eq!(sent, 21);
    assert!(c.tick(&store, SEC / 2).is_empty());
    // Stalled: the heartbeat says on what.
    let hb = c.tick(&store, SEC);
    match &hb[..] {
        [Action::Status { header, .. }] => {
            assert!(header.contains(&format!("Nats-Consumer-Stalled: {reply}\r\n")))
        }
        other => panic!("{other:?}"),
    }
    // Another id is ignored; the right one frees the bytes and doubles the window.
    assert!(c
        .flow_control_reply("$JS.FC.S.C.zzzz", &store, SEC)
        .is_empty());
    let rest = delivered(&c.flow_control_reply(&reply, &store, SEC));
    assert_eq!(
        rest.iter().filter(|a| a.starts_with("$JS.ACK")).count(),
        40 - sent
    );
}

#[test]
fn push_rate_limit_paces_delivery() {
    let mut store = MemoryStore::new();
    for _ in 0..4 {
        store
            .store_msg("s.a", Bytes::new(), Bytes::from(vec![b'x'; 600_000]), 10)
            .unwrap();
    }
    // 8 Mbit/s: 1 MB per second, after a burst of 1 MiB.
    let mut c = push(
        r#"{"name":"C","deliver_subject":"d","rate_limit_bps":8000000}"#,
        &store,
    );
    assert_eq!(c.tick(&store, 0).len(), 2);
    // The second went past the bucket: nothing until that is made up.
    assert!(c.tick(&store, SEC / 10).is_empty());
    assert_eq!(c.tick(&store, SEC / 2).len(), 1);
}

#[test]
fn last_per_subject_then_new_messages() {
    let mut store = store_with(5);
    let mut c = push(
        r#"{"name":"C","deliver_subject":"d","deliver_policy":"last_per_subject","filter_subject":"s.*"}"#,
        &store,
    );
    assert_eq!(c.num_pending(&store), 2);
    assert_eq!(c.delivered, (0, 3));
    let got = delivered(&c.tick(&store, 0));
    assert_eq!(got, ["$JS.ACK.S.C.1.4.1.10.1", "$JS.ACK.S.C.1.5.2.10.0"]);
    store
        .store_msg("s.b", Bytes::new(), Bytes::from_static(b"m6"), 20)
        .unwrap();
    c.on_stored("s.b", 6);
    assert_eq!(c.num_pending(&store), 1);
    let got = delivered(&c.tick(&store, 0));
    assert_eq!(got, ["$JS.ACK.S.C.1.6.3.20.0"]);
}

#[test]
fn several_filters_start_time_and_backoff() {
    let mut store = MemoryStore::new();
    for (i, subject) in ["a", "b", "c", "a"].iter().enumerate() {
        store
            .store_msg(subject, Bytes::new(), Bytes::new(), (i as i64 + 1) * SEC)
            .unwrap();
    }
    let c = consumer(
        r#"{"durable_name":"C","filter_subjects":["a","c"]}"#,
        &store,
    );
    assert_eq!(c.num_pending(&store), 3);
    let mut c = consumer(
        r#"{"durable_name":"C","deliver_policy":"by_start_time","opt_start_time":"1970-01-01T00:00:02Z","filter_subjects":["c","a"],"ack_policy":"explicit","backoff":[1000000000,3000000000],"max_deliver":4}"#,
        &store,
    );
    let got = delivered(&c.pull("in", br#"{"batch":9,"expires":60000000000}"#, &store, 0));
    assert_eq!(
        got,
        [
            "$JS.ACK.S.C.1.3.1.3000000000.1",
            "$JS.ACK.S.C.1.4.2.4000000000.0"
        ]
    );
    // First redelivery after backoff[0], the next after backoff[1].
    assert_eq!(delivered(&c.tick(&store, SEC)).len(), 2);
    assert!(c.tick(&store, 3 * SEC).is_empty());
    assert_eq!(delivered(&c.tick(&store, 4 * SEC)).len(), 2);
}

#[test]
fn a_new_deliver_subject_gets_what_is_pending() {
    let store = store_with(2);
    let mut c = push(
        r#"{"durable_name":"C","deliver_subject":"d","ack_policy":"explicit"}"#,
        &store,
    );
    assert_eq!(c.tick(&store, 0).len(), 2);
    let mut config = c.config.clone();
    config.deliver_subject = Some("e".into());
    c.config.check_update(&config).unwrap();
    c.update_config(config, SEC);
    assert!(c.tick(&store, SEC).is_empty(), "no one listens on e yet");
    c.set_interest(true, SEC);
    let out = c.tick(&store, SEC);
    let to: Vec<&str> = out
        .iter()
        .map(|a| match a {
            Action::Deliver { to, ack, .. } => {
                assert!(ack.starts_with("$JS.ACK.S.C.2."));
                to.as_str()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(to, ["e", "e"]);
}

#[test]
fn an_ephemeral_push_consumer_goes_once_no_one_listens_for_its_threshold() {
    let store = store_with(1);
    let config: ConsumerConfig =
        serde_json::from_str(r#"{"deliver_subject":"d","ack_policy":"explicit"}"#).unwrap();
    let config = config.normalize(true).unwrap();
    assert_eq!(config.inactive_threshold, 5 * SEC);
    let mut c = Consumer::new("E".into(), "S".into(), config, &store, 0);
    assert!(!c.inactive_at(4 * SEC));
    c.set_interest(true, 4 * SEC);
    assert!(!c.inactive_at(20 * SEC), "bound");
    c.set_interest(false, 20 * SEC);
    assert!(!c.inactive_at(24 * SEC));
    // An acknowledgement holds it a while more.
    c.ack("$JS.ACK.S.E.1.1.1.10.0", b"+ACK", &store, 24 * SEC);
    assert!(!c.inactive_at(28 * SEC));
    assert!(c.inactive_at(29 * SEC));
}
