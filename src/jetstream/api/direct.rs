//! Direct gets (`$JS.API.DIRECT.GET.<stream>[.<subject>]`), answered from a stream's own
//! subscriptions with the raw message.

use bytes::Bytes;

use super::{parse, time, AccountJs, MsgGetRequest};

impl AccountJs {
    /// A direct get (`$JS.API.DIRECT.GET.<stream>[.<subject>]`, nats-server's
    /// `processDirectGetRequest`): the header block and payload of the reply, a message with
    /// `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and `Nats-Time-Stamp` added to its
    /// headers, or a status.
    pub fn direct_get(&self, stream: &str, subject: &str, body: &[u8]) -> Option<(Vec<u8>, Bytes)> {
        let s = self.streams.get(stream)?;
        let status = |text: &str| {
            Some((
                format!("NATS/1.0 {text}\r\n\r\n").into_bytes(),
                Bytes::new(),
            ))
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
                        "408 Bad Request - batch and multi_last are not supported by tern yet",
                    );
                }
                match get.load(s.store()) {
                    Some(msg) => msg,
                    None => return status("408 Bad Request"),
                }
            }
        };
        let Some(msg) = msg else {
            return status("404 Message Not Found");
        };
        let mut header = match msg.header.len() {
            // The stored block without its closing empty line.
            n if n >= 4 && msg.header.ends_with(b"\r\n\r\n") => msg.header[..n - 2].to_vec(),
            _ => b"NATS/1.0\r\n".to_vec(),
        };
        header.extend_from_slice(
            format!(
                "Nats-Stream: {stream}\r\nNats-Subject: {}\r\nNats-Sequence: {}\r\nNats-Time-Stamp: {}\r\n\r\n",
                msg.subject,
                msg.seq,
                time(msg.ts)
            )
            .as_bytes(),
        );
        Some((header, msg.data))
    }
}
