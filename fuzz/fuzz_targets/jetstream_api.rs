//! Any bytes as the body (and the header) of every `$JS.API` request, of a publish to a
//! stream, of a pull request and of an acknowledgement, and any name in the subject tokens:
//! JetStream answers or refuses, and never panics.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tern::jetstream::api::AccountJs;

const NOW: i64 = 1_700_000_000_000_000_000;

/// An account with a memory stream `S` (subjects `s.>`), a message in it and a durable
/// consumer `C`, so that requests on existing things get past the lookups.
fn account() -> AccountJs {
    let mut js = AccountJs::new();
    let create = br#"{"name":"S","subjects":["s.>"],"storage":"memory","allow_direct":true,"allow_rollup_hdrs":true}"#;
    js.request("$JS.API.STREAM.CREATE.S", b"", create, NOW, "n");
    js.publish("S", "s.a", Bytes::new(), Bytes::from_static(b"one"), NOW);
    let consumer = br#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"}}"#;
    js.request("$JS.API.CONSUMER.DURABLE.CREATE.S.C", b"", consumer, NOW, "n");
    js
}

fuzz_target!(|data: &[u8]| {
    // The first byte says how much of the rest is a name for the subject tokens.
    let (name, body) = match data.split_first() {
        Some((&n, rest)) => rest.split_at((n as usize).min(rest.len())),
        None => (&[][..], data),
    };
    let name = String::from_utf8_lossy(name);
    let mut js = account();
    let mut subjects: Vec<String> = [
        "INFO",
        "STREAM.NAMES",
        "STREAM.LIST",
        "STREAM.CREATE.S",
        "STREAM.UPDATE.S",
        "STREAM.INFO.S",
        "STREAM.MSG.GET.S",
        "STREAM.MSG.DELETE.S",
        "STREAM.PURGE.S",
        "CONSUMER.NAMES.S",
        "CONSUMER.LIST.S",
        "CONSUMER.INFO.S.C",
        "CONSUMER.CREATE.S",
        "CONSUMER.CREATE.S.N",
        "CONSUMER.CREATE.S.N.s.a",
        "CONSUMER.DURABLE.CREATE.S.D",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for template in [
        "STREAM.CREATE.{}",
        "STREAM.INFO.{}",
        "CONSUMER.CREATE.S.{}",
        "CONSUMER.CREATE.S.C.{}",
        "CONSUMER.INFO.S.{}",
        "{}",
    ] {
        subjects.push(template.replace("{}", &name));
    }
    subjects.extend(["CONSUMER.DELETE.S.C", "STREAM.DELETE.S"].map(String::from));
    let header = Bytes::copy_from_slice(body);
    for subject in &subjects {
        let subject = format!("$JS.API.{subject}");
        js.request(&subject, b"", body, NOW, "n");
        js.request(&subject, body, b"{}", NOW, "n");
        if subject.ends_with("STREAM.DELETE.S") {
            continue;
        }
        // What reaches the stream and the consumer directly.
        js.publish("S", "s.b", header.clone(), Bytes::from_static(b"x"), NOW);
        js.publish("S", "s.c", Bytes::new(), header.clone(), NOW);
        js.direct_get("S", "$JS.API.DIRECT.GET.S", body);
        js.direct_get("S", &format!("$JS.API.DIRECT.GET.S.{name}"), body);
        js.pull("S", "C", "_INBOX.x", body, NOW);
        js.ack(&format!("$JS.ACK.S.C.1.1.1.{NOW}.0"), body, NOW);
        js.ack(&format!("$JS.ACK.S.C.{name}"), body, NOW);
        js.tick(NOW + 1);
    }
});
