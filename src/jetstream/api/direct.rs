//! Direct gets (`$JS.API.DIRECT.GET.<stream>[.<subject>]`), answered from a stream's own
//! subscriptions with raw messages: one, a batch (`batch`, `max_bytes`) or the last of several
//! subjects (`multi_last`, `up_to_seq`), the latter two ended by a `204 EOB` status.

use bytes::Bytes;

use super::{parse, time, AccountJs, MsgGetRequest};
use crate::jetstream::store::{StoredMsg, StreamStore};

/// One reply: its header block and payload.
pub type DirectReply = (Vec<u8>, Bytes);

impl AccountJs {
    /// A direct get (`$JS.API.DIRECT.GET.<stream>[.<subject>]`, nats-server's
    /// `processDirectGetRequest`): the replies to send in order, each a message with
    /// `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and `Nats-Time-Stamp` added to its
    /// headers (and `Nats-Num-Pending`, `Nats-Last-Sequence` in a batch), or a status.
    pub fn direct_get(&self, stream: &str, subject: &str, body: &[u8]) -> Vec<DirectReply> {
        let Some(s) = self.streams.get(stream) else {
            return Vec::new();
        };
        let status = |text: &str| {
            vec![(
                format!("NATS/1.0 {text}\r\n\r\n").into_bytes(),
                Bytes::new(),
            )]
        };
        let prefix = format!("$JS.API.DIRECT.GET.{stream}.");
        let msg = match subject.strip_prefix(&prefix) {
            Some(last) => s.store().load_last_msg(last),
            None if body.trim_ascii().is_empty() => return status("408 Empty Request"),
            None => {
                let Ok(get) = parse::<MsgGetRequest>(body) else {
                    return status("408 Malformed Request");
                };
                if !get.other.is_empty() {
                    return status(
                        "408 Bad Request - start_time, up_to_time and no_hdr are not supported by tern yet",
                    );
                }
                if get.is_empty() {
                    return status("408 Empty Request");
                }
                if !get.multi_last.is_empty() {
                    return multi_last(stream, s.store(), &get);
                }
                if get.batch > 0 {
                    return batch(stream, s.store(), &get);
                }
                match get.load(s.store()) {
                    Some(msg) => msg,
                    None => return status("408 Bad Request"),
                }
            }
        };
        match msg {
            Some(msg) => vec![reply(stream, msg, "")],
            None => status("404 Message Not Found"),
        }
    }
}

/// `msg` with the direct get headers and `extra` (header lines, each ending in CRLF).
fn reply(stream: &str, msg: StoredMsg, extra: &str) -> DirectReply {
    let mut header = match msg.header.len() {
        // The stored block without its closing empty line.
        n if n >= 4 && msg.header.ends_with(b"\r\n\r\n") => msg.header[..n - 2].to_vec(),
        _ => b"NATS/1.0\r\n".to_vec(),
    };
    header.extend_from_slice(
        format!(
            "Nats-Stream: {stream}\r\nNats-Subject: {}\r\nNats-Sequence: {}\r\nNats-Time-Stamp: {}\r\n{extra}\r\n",
            msg.subject,
            msg.seq,
            time(msg.ts)
        )
        .as_bytes(),
    );
    (header, msg.data)
}

/// The `204 EOB` status that ends a batch, with `extra` header lines.
fn end_of_batch(extra: &str) -> DirectReply {
    (
        format!("NATS/1.0 204 EOB\r\n{extra}\r\n").into_bytes(),
        Bytes::new(),
    )
}

/// Up to `batch` messages from `seq` matching `next_by_subj` (all when empty), stopping once
/// they reach `max_bytes` (subject, headers and payload), then the end of the batch.
fn batch(stream: &str, store: &dyn StreamStore, get: &MsgGetRequest) -> Vec<DirectReply> {
    let filter = match get.next_by_subj.as_str() {
        "" => ">",
        f => f,
    };
    let mut out = Vec::new();
    let (mut next, mut last, mut bytes) = (get.seq.max(1), 0, 0u64);
    while out.len() < get.batch {
        let Some(msg) = store.load_next_msg(filter, next) else {
            break;
        };
        next = msg.seq + 1;
        let pending = store.num_pending(filter, next);
        bytes += (msg.subject.len() + msg.header.len() + msg.data.len()) as u64;
        let seq = msg.seq;
        let extra = format!("Nats-Num-Pending: {pending}\r\nNats-Last-Sequence: {last}\r\n");
        out.push(reply(stream, msg, &extra));
        last = seq;
        if get.max_bytes > 0 && bytes >= get.max_bytes {
            break;
        }
    }
    if out.is_empty() {
        return vec![(
            b"NATS/1.0 404 Message Not Found\r\n\r\n".to_vec(),
            Bytes::new(),
        )];
    }
    let pending = store.num_pending(filter, next);
    out.push(end_of_batch(&format!(
        "Nats-Num-Pending: {pending}\r\nNats-Last-Sequence: {last}\r\n"
    )));
    out
}

/// The last message at or below `up_to_seq` (the stream's last by default) of each subject
/// matching one of `multi_last`, in sequence order, then the end of the batch.
fn multi_last(stream: &str, store: &dyn StreamStore, get: &MsgGetRequest) -> Vec<DirectReply> {
    let up_to = match get.up_to_seq {
        0 => store.state().last_seq,
        n => n,
    };
    let mut lasts: std::collections::HashMap<String, u64> = Default::default();
    let mut next = 0;
    while let Some(msg) = store.load_next_meta(">", next) {
        if msg.seq > up_to {
            break;
        }
        next = msg.seq + 1;
        let wanted = get
            .multi_last
            .iter()
            .any(|f| crate::proto::subject::matches(f.as_bytes(), msg.subject.as_bytes()));
        if wanted {
            lasts.insert(msg.subject, msg.seq);
        }
    }
    let mut seqs: Vec<u64> = lasts.into_values().collect();
    seqs.sort_unstable();
    let msgs: Vec<StoredMsg> = seqs.into_iter().filter_map(|s| store.load_msg(s)).collect();
    if msgs.is_empty() {
        return vec![(b"NATS/1.0 404 No Results\r\n\r\n".to_vec(), Bytes::new())];
    }
    let total = msgs.len();
    let mut out = Vec::new();
    let (mut last, mut bytes, mut sent) = (0, 0u64, 0);
    for msg in msgs {
        if get.batch > 0 && sent >= get.batch {
            break;
        }
        sent += 1;
        let seq = msg.seq;
        bytes += (msg.subject.len() + msg.header.len() + msg.data.len()) as u64;
        let extra = format!(
            "Nats-Num-Pending: {}\r\nNats-Last-Sequence: {last}\r\n",
            total - sent
        );
        out.push(reply(stream, msg, &extra));
        last = seq;
        if get.max_bytes > 0 && bytes >= get.max_bytes {
            break;
        }
    }
    out.push(end_of_batch(&format!(
        "Nats-Num-Pending: {}\r\nNats-Last-Sequence: {last}\r\nNats-UpTo-Sequence: {up_to}\r\n",
        total - sent
    )));
    out
}
