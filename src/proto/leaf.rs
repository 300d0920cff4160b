//! The leafnode protocol: the route protocol's frames (`proto::route`) without the account,
//! which the connection is bound to, nor the origin, which is the connection's own cluster.
//!
//! ```text
//! LS+ <subject>[ <queue> <weight>]
//! LS- <subject>[ <queue>]
//! LMSG <subject> [<reply> | + <reply> <q>... | | <q>...] <size>
//! HMSG <subject> [<reply> | + <reply> <q>... | | <q>...] <header size> <total size>
//! CONNECT, INFO, PING, PONG, +OK, -ERR
//! ```

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::proto::error::ProtocolError;
use crate::proto::route::{
    encode_frame, encode_frame_head, encode_interest, frame_len_for, parse_for, Frame, RouteOp,
};

/// The prefix of the subject each server subscribes to in every account it links by leafnode:
/// one that comes back over another leafnode is a loop.
pub const LOOP_DETECTION_PREFIX: &str = "$LDS.";

/// Parses one leafnode operation from the start of `buf` (as [`RouteOp`], with an empty
/// account): `Ok(None)` when more bytes are needed.
pub fn parse(
    buf: &[u8],
    max_control_line: usize,
    max_payload: usize,
) -> Result<Option<(RouteOp<'_>, usize)>, ProtocolError> {
    parse_for(buf, max_control_line, max_payload, true)
}

/// `LS+ <subject>[ <queue> <weight>]\r\n`
pub fn encode_sub(out: &mut BytesMut, subject: &[u8], queue: Option<(&[u8], u32)>) {
    encode_interest(out, b"LS+", &[subject], queue.map(|(q, w)| (q, Some(w))));
}

/// `LS- <subject>[ <queue>]\r\n`
pub fn encode_unsub(out: &mut BytesMut, subject: &[u8], queue: Option<&[u8]>) {
    encode_interest(out, b"LS-", &[subject], queue.map(|q| (q, None)));
}

/// `LMSG`, or `HMSG` with headers: one frame per leafnode per message.
pub fn encode_msg(out: &mut BytesMut, frame: &Frame<'_>) {
    let op: &[u8] = match frame.header_len {
        Some(_) => b"HMSG",
        None => b"LMSG",
    };
    encode_frame(out, op, &[], frame, false);
}

/// The control line of [`encode_msg`], for a message whose payload (and CRLF) the caller
/// sends on its own.
pub fn encode_msg_head(out: &mut BytesMut, frame: &Frame<'_>) {
    let op: &[u8] = match frame.header_len {
        Some(_) => b"HMSG",
        None => b"LMSG",
    };
    encode_frame_head(out, op, &[], frame, false);
}

/// The whole length of the `LMSG`/`HMSG` frame `buf` starts with, once its control line is
/// there (see `route::frame_len`).
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    frame_len_for(buf, true)
}

/// The INFO a hub sends on its leafnode port. A 2.15 spoke wants a `client_id` and a
/// `leafnode_urls` array in it, or it takes the port for the wrong one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeafInfo {
    #[serde(default)]
    pub server_id: String,
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub version: String,
    /// 2: no message tracing.
    #[serde(default)]
    pub proto: u8,
    #[serde(default)]
    pub go: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub headers: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(default)]
    pub max_payload: usize,
    #[serde(default)]
    pub client_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The hub's cluster name (its server name outside a cluster).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// Never compressed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub compression: String,
    /// Sent once the hub has taken the leafnode's CONNECT (`sendPermsAndAccountInfo`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub connect_info: bool,
    /// The hub's account the connection is bound to (with `connect_info`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_account: String,
    /// Where leafnodes may attach to this hub's cluster.
    #[serde(default)]
    pub leafnode_urls: Vec<String>,
    /// Lame duck mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
}

impl LeafInfo {
    /// `INFO {...}\r\n`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"INFO ");
        if let Ok(json) = serde_json::to_vec(self) {
            out.put_slice(&json);
        }
        out.put_slice(b"\r\n");
    }
}

/// The CONNECT a leafnode sends its hub (`leafConnectInfo`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeafConnect {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub server_id: String,
    /// The sender's server name.
    #[serde(default)]
    pub name: String,
    /// The sender's cluster name (its server name outside a cluster): the origin of what it
    /// sends.
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub headers: bool,
    /// The sender is the hub of this connection (its remote said `hub: true`).
    #[serde(default, rename = "is_hub", skip_serializing_if = "std::ops::Not::not")]
    pub hub: bool,
    /// The sender asks to hear of no interest that came from other leafnodes (its remote's
    /// `request_isolation`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub isolate: bool,
    /// The account the sender binds (told for the hub's logs and checks).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remote_account: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub protocol: u8,
    /// Set by a client that connected to the leafnode port by mistake.
    #[serde(default, skip_serializing)]
    pub lang: String,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl LeafConnect {
    /// `CONNECT {...}\r\n`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"CONNECT ");
        if let Ok(json) = serde_json::to_vec(self) {
            out.put_slice(&json);
        }
        out.put_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::route::{queue_names, Interest};

    fn one(input: &[u8]) -> RouteOp<'_> {
        let (op, n) = parse(input, 4096, 1 << 20).unwrap().unwrap();
        assert_eq!(n, input.len());
        op
    }

    #[test]
    fn interest_and_messages_as_nats_server_sends_them() {
        let sub = |subject, queue, weight| Interest {
            origin: None,
            account: b"",
            subject,
            queue,
            weight,
        };
        assert_eq!(one(b"LS+ foo\r\n"), RouteOp::Sub(sub(b"foo", None, 1)));
        assert_eq!(
            one(b"LS+ foo q 2\r\n"),
            RouteOp::Sub(sub(b"foo", Some(&b"q"[..]), 2))
        );
        assert_eq!(
            one(b"LS- foo q\r\n"),
            RouteOp::Unsub(sub(b"foo", Some(&b"q"[..]), 1))
        );
        assert!(parse(b"LS+ foo q\r\n", 4096, 1 << 20).is_err());
        assert!(parse(b"RS+ $G foo\r\n", 4096, 1 << 20).is_err());
        let RouteOp::Msg(m) = one(b"LMSG foo + _INBOX.r q1 q2 2\r\nhi\r\n") else {
            panic!()
        };
        assert_eq!((m.subject, m.reply), (&b"foo"[..], Some(&b"_INBOX.r"[..])));
        assert_eq!(queue_names(m.queues).count(), 2);
        let RouteOp::Msg(m) = one(b"HMSG foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n") else {
            panic!()
        };
        assert_eq!((m.header_len, m.reply), (Some(12), None));
        let whole = b"LMSG foo r 5\r\nhello\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut], 4096, 1 << 20), Ok(None), "{cut}");
        }
    }

    #[test]
    fn encoders_round_trip() {
        let mut out = BytesMut::new();
        encode_sub(&mut out, b"foo", Some((b"q", 3)));
        encode_unsub(&mut out, b"foo", None);
        let frame = Frame {
            subject: b"s",
            reply: Some(b"r"),
            queues: &[b"q1"],
            header_len: None,
            message: b"hi",
        };
        encode_msg(&mut out, &frame);
        encode_msg(
            &mut out,
            &Frame {
                header_len: Some(2),
                reply: None,
                queues: &[],
                ..frame
            },
        );
        assert_eq!(
            &out[..],
            &b"LS+ foo q 3\r\nLS- foo\r\nLMSG s + r q1 2\r\nhi\r\nHMSG s 2 2\r\nhi\r\n"[..]
        );
        let mut at = 0;
        while let Some((_, n)) = parse(&out[at..], 4096, 1 << 20).unwrap() {
            at += n;
        }
        assert_eq!(at, out.len());
    }
}
