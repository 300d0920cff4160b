//! What the server writes: INFO, MSG, HMSG, PING, PONG, +OK and -ERR, byte for byte as
//! nats-server writes them.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::Value;

/// The nats-server release whose client protocol and behaviour tern matches.
pub const NATS_SERVER_VERSION: &str = "2.15.1";
/// Client protocol level announced in INFO (1: async INFO updates and headers are understood).
pub const PROTO: u8 = 1;

/// `PING\r\n`
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK\r\n`, sent after every operation in verbose mode.
pub const OK: &[u8] = b"+OK\r\n";

/// The INFO object, with nats-server's field names and order. Optional fields are left out when
/// unset, as nats-server's `omitempty` does.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// Unique id of this server process.
    pub server_id: String,
    /// Configured name, or the id.
    pub server_name: String,
    /// The nats-server version tern is compatible with.
    pub version: String,
    /// Client protocol level.
    pub proto: u8,
    /// Build identification, in nats-server's `git_commit` field.
    pub git_commit: String,
    /// Toolchain, in nats-server's `go` field.
    pub go: String,
    /// Listen host.
    pub host: String,
    /// Listen port (the real one when `-1` asked for a random port).
    pub port: u16,
    /// Whether HPUB/HMSG are supported.
    pub headers: bool,
    /// Set when clients must authenticate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// Clients must speak TLS.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// Clients must present a certificate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// Clients may start TLS or stay in plaintext (`allow_non_tls`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_available: bool,
    /// Largest payload the server accepts.
    pub max_payload: usize,
    /// JetStream is enabled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
    /// The connection's id (`cid`).
    pub client_id: u64,
    /// The connection's remote address.
    pub client_ip: String,
    /// The JetStream domain, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The random challenge an nkey user signs in CONNECT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The cluster's name, when the server is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Where clients may reconnect: this server's client URLs, then every route peer's
    /// (absent until the first route registers, and with `cluster.no_advertise`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// Lame duck mode: the server is about to go away.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
    /// Set in the INFO that follows the first PONG after CONNECT (protocol 1 clients).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub connect_info: bool,
    /// The account the connection is bound to; in the post-CONNECT INFO only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_account: Option<String>,
    /// The connection is bound to the system account; in the post-CONNECT INFO only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub acc_is_sys: bool,
    /// The server's public curve key, for auth callout services that seal for it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub xkey: String,
}

impl Info {
    /// `INFO {...} \r\n` (nats-server puts a space before the line end).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"INFO ");
        // Serializing plain strings, numbers and booleans cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        out.put_slice(&json);
        out.put_slice(b" \r\n");
    }
}

/// The CONNECT options. Before any CONNECT, verbose, pedantic and echo are true (nats-server's
/// `defaultOpts`); each CONNECT is applied on top of the current values (see `apply`).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Answer each operation with `+OK`.
    pub verbose: bool,
    /// Check publish subjects.
    pub pedantic: bool,
    /// Deliver the connection's own messages back to it.
    pub echo: bool,
    /// HPUB/HMSG understood.
    pub headers: bool,
    /// Wants a 503 status message when a request finds no subscriber.
    pub no_responders: bool,
    /// Client protocol level: 0 or 1.
    pub protocol: i64,
    /// Client name, shown in logs.
    pub name: String,
    /// Client library language.
    pub lang: String,
    /// Client library version.
    pub version: String,
    /// User name.
    pub user: Option<String>,
    /// Password.
    pub pass: Option<String>,
    /// Token.
    pub auth_token: Option<String>,
    /// The user's public nkey.
    pub nkey: Option<String>,
    /// The nonce from INFO, signed with the nkey's seed (base64).
    pub sig: Option<String>,
    /// The user's JWT (operator mode).
    pub jwt: Option<String>,
    /// Informational.
    pub tls_required: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            protocol: 0,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            user: None,
            pass: None,
            auth_token: None,
            nkey: None,
            sig: None,
            jwt: None,
            tls_required: false,
        }
    }
}

impl ConnectOptions {
    /// Applies a CONNECT argument the way nats-server's `json.Unmarshal` into the existing
    /// options does: keys are matched case-insensitively, absent keys and `null` keep the
    /// current value, unknown keys are ignored, and a value of the wrong type is an error.
    pub fn apply(&mut self, json: &[u8]) -> Result<(), String> {
        let fields = match serde_json::from_slice::<Value>(json).map_err(|e| e.to_string())? {
            Value::Null => return Ok(()),
            Value::Object(fields) => fields,
            other => {
                return Err(format!(
                    "json: cannot unmarshal {} into ClientOpts",
                    kind(&other)
                ))
            }
        };
        for (key, value) in fields {
            if value.is_null() {
                continue;
            }
            let key = key.to_ascii_lowercase();
            let wrong = || {
                format!(
                    "json: cannot unmarshal {} into ClientOpts.{key}",
                    kind(&value)
                )
            };
            let flag = |v: &Value| v.as_bool().ok_or_else(wrong);
            let text = |v: &Value| v.as_str().map(str::to_string).ok_or_else(wrong);
            match key.as_str() {
                "verbose" => self.verbose = flag(&value)?,
                "pedantic" => self.pedantic = flag(&value)?,
                "echo" => self.echo = flag(&value)?,
                "headers" => self.headers = flag(&value)?,
                "no_responders" => self.no_responders = flag(&value)?,
                "tls_required" => self.tls_required = flag(&value)?,
                "protocol" => self.protocol = value.as_i64().ok_or_else(wrong)?,
                "name" => self.name = text(&value)?,
                "lang" => self.lang = text(&value)?,
                "version" => self.version = text(&value)?,
                "user" => self.user = Some(text(&value)?),
                "pass" => self.pass = Some(text(&value)?),
                "auth_token" => self.auth_token = Some(text(&value)?),
                "nkey" => self.nkey = Some(text(&value)?),
                "sig" => self.sig = Some(text(&value)?),
                "jwt" => self.jwt = Some(text(&value)?),
                _ => {}
            }
        }
        Ok(())
    }

    /// How nats-server names the client in log lines: `v<version>:<lang>:<name>` when the
    /// library says what it is, else the name; `None` when there is nothing to show.
    pub fn log_name(&self) -> Option<String> {
        // nats-server joins the parts it has: `v1.0:go:n`, `v1.0:n`, `go`, `n`.
        let version = (!self.version.is_empty()).then(|| format!("v{}", self.version));
        let parts: Vec<&str> = [version.as_deref(), Some(&*self.lang), Some(&*self.name)]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(":"))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where a frame's fields are written: the outbound buffer itself, or a [`Line`] first.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

/// How many bytes a frame (or its control line) may have to be built on the stack.
pub(crate) const LINE: usize = 160;

/// A frame built on the stack, field by field, then copied into the outbound buffer whole:
/// one buffer append per delivered message instead of one per field (appending the nine
/// fields of a MSG one at a time was over 40% of a small-message fan-out's instructions).
pub(crate) struct Line {
    buf: [u8; LINE],
    len: usize,
}

impl Line {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Line {
            buf: [0; LINE],
            len: 0,
        }
    }

    /// The bytes written so far.
    #[inline(always)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Room left.
    #[inline(always)]
    pub(crate) fn room(&self) -> usize {
        LINE - self.len
    }
}

impl Sink for Line {
    /// The caller makes sure it fits (see `LINE`).
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

/// A frame's control line, written into a [`Sink`].
pub(crate) trait Head {
    /// The most bytes it takes.
    fn bound(&self) -> usize;
    fn write<S: Sink>(&self, s: &mut S);
}

/// Writes a frame: its control line (built on the stack when it fits there), then `body` and
/// CRLF; a small frame goes into `out` in one piece.
#[inline(always)]
pub(crate) fn put_frame<H: Head>(out: &mut BytesMut, head: &H, body: &[u8]) {
    let bound = head.bound();
    if bound > LINE {
        out.reserve(bound + body.len() + 2);
        head.write(out);
        out.put_slice(body);
        out.put_slice(b"\r\n");
        return;
    }
    let mut line = Line::new();
    head.write(&mut line);
    if body.len() + 2 <= line.room() {
        line.put(body);
        line.put(b"\r\n");
        out.put_slice(line.bytes());
    } else {
        out.reserve(line.len + body.len() + 2);
        out.put_slice(line.bytes());
        out.put_slice(body);
        out.put_slice(b"\r\n");
    }
}

/// The most bytes `put_decimal` writes.
pub(crate) const DECIMAL_MAX: usize = 20;

/// A MSG (no header size) or HMSG control line.
struct MsgHead<'a> {
    subject: &'a [u8],
    sid: &'a [u8],
    reply: Option<&'a [u8]>,
    header_len: Option<usize>,
    size: usize,
}

impl Head for MsgHead<'_> {
    #[inline(always)]
    fn bound(&self) -> usize {
        let reply = self.reply.map_or(0, <[u8]>::len);
        5 + self.subject.len() + self.sid.len() + reply + 3 + 2 * DECIMAL_MAX + 3
    }

    #[inline(always)]
    fn write<S: Sink>(&self, s: &mut S) {
        s.put(if self.header_len.is_some() {
            b"HMSG "
        } else {
            b"MSG "
        });
        s.put(self.subject);
        s.put(b" ");
        s.put(self.sid);
        s.put(b" ");
        if let Some(reply) = self.reply {
            s.put(reply);
            s.put(b" ");
        }
        if let Some(h) = self.header_len {
            put_decimal(s, h);
            s.put(b" ");
        }
        put_decimal(s, self.size);
        s.put(b"\r\n");
    }
}

/// `MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n`
#[inline]
pub fn encode_msg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
) {
    let head = MsgHead {
        subject,
        sid,
        reply,
        header_len: None,
        size: payload.len(),
    };
    put_frame(out, &head, payload);
}

/// The control line of a MSG whose payload (and CRLF) the caller sends on its own.
pub fn encode_msg_head(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    size: usize,
) {
    let head = MsgHead {
        subject,
        sid,
        reply,
        header_len: None,
        size,
    };
    out.reserve(head.bound());
    head.write(out);
}

/// The control line of an HMSG whose headers and payload (and CRLF) the caller sends on its
/// own.
pub fn encode_hmsg_head(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    header_len: usize,
    size: usize,
) {
    let head = MsgHead {
        subject,
        sid,
        reply,
        header_len: Some(header_len),
        size,
    };
    out.reserve(head.bound());
    head.write(out);
}

/// `HMSG <subject> <sid> [reply] <header size> <total size>\r\n<headers><payload>\r\n`
#[inline]
pub fn encode_hmsg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    header_len: usize,
    message: &[u8],
) {
    let head = MsgHead {
        subject,
        sid,
        reply,
        header_len: Some(header_len),
        size: message.len(),
    };
    put_frame(out, &head, message);
}

/// The no-responders status message, sent on the requester's own subscription to the reply
/// subject: headers `NATS/1.0 503` and `Nats-Subject: <subject>`, no payload.
pub fn encode_no_responders(out: &mut BytesMut, reply: &[u8], sid: &[u8], subject: &[u8]) {
    let mut header = Vec::with_capacity(32 + subject.len());
    header.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
    header.extend_from_slice(subject);
    header.extend_from_slice(b"\r\n\r\n");
    encode_hmsg(out, reply, sid, None, header.len(), &header);
}

/// `-ERR '<text>'\r\n`
pub fn encode_err(out: &mut BytesMut, text: &str) {
    out.put_slice(b"-ERR '");
    out.put_slice(text.as_bytes());
    out.put_slice(b"'\r\n");
}

/// Writes `n` in decimal without going through `fmt` (this runs once per delivered message).
#[inline(always)]
pub(crate) fn put_decimal<S: Sink>(out: &mut S, mut n: usize) {
    let mut digits = [0u8; DECIMAL_MAX];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_frames() {
        let mut out = BytesMut::new();
        encode_msg(&mut out, b"foo", b"1", None, b"hello");
        encode_msg(&mut out, b"foo", b"22", Some(b"_INBOX.x.1"), b"");
        assert_eq!(
            &out[..],
            b"MSG foo 1 5\r\nhello\r\nMSG foo 22 _INBOX.x.1 0\r\n\r\n"
        );
    }

    #[test]
    fn heads_are_the_frames_without_payload() {
        let (mut whole, mut head) = (BytesMut::new(), BytesMut::new());
        encode_msg(&mut whole, b"foo", b"1", Some(b"r"), b"hello");
        encode_msg_head(&mut head, b"foo", b"1", Some(b"r"), 5);
        head.extend_from_slice(b"hello\r\n");
        assert_eq!(head, whole);
        let (mut whole, mut head) = (BytesMut::new(), BytesMut::new());
        encode_hmsg(&mut whole, b"foo", b"1", None, 12, b"NATS/1.0\r\n\r\nhi");
        encode_hmsg_head(&mut head, b"foo", b"1", None, 12, 14);
        head.extend_from_slice(b"NATS/1.0\r\n\r\nhi\r\n");
        assert_eq!(head, whole);
    }

    #[test]
    fn hmsg_frames() {
        let mut out = BytesMut::new();
        encode_hmsg(
            &mut out,
            b"foo",
            b"1",
            Some(b"r"),
            12,
            b"NATS/1.0\r\n\r\nhi",
        );
        assert_eq!(&out[..], b"HMSG foo 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    }

    #[test]
    fn no_responders_matches_nats_server_bytes() {
        // Observed from nats-server 2.15.1: the header block is 32 bytes plus the subject.
        let mut out = BytesMut::new();
        encode_no_responders(&mut out, b"r", b"1", b"x");
        assert_eq!(
            &out[..],
            b"HMSG r 1 33 33\r\nNATS/1.0 503\r\nNats-Subject: x\r\n\r\n\r\n"
        );
    }

    #[test]
    fn decimals() {
        for n in [0usize, 7, 10, 99, 100, 1048576, usize::MAX] {
            let mut out = BytesMut::new();
            put_decimal(&mut out, n);
            let mut line = Line::new();
            put_decimal(&mut line, n);
            assert_eq!(line.bytes(), n.to_string().as_bytes());
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn connect_applies_on_top_of_current_options() {
        let mut c = ConnectOptions::default();
        c.apply(b"{}").unwrap();
        assert!(c.verbose && c.pedantic && c.echo && !c.headers && !c.no_responders);
        c.apply(br#"{"verbose":false,"echo":false,"unknown":[1,2]}"#)
            .unwrap();
        assert!(!c.verbose && c.pedantic && !c.echo);
        c.apply(br#"{"VERBOSE":true,"Headers":true,"name":null}"#)
            .unwrap();
        assert!(c.verbose && c.headers && !c.echo);
        c.apply(b"null").unwrap();
        assert!(c.verbose);
    }

    #[test]
    fn connect_errors() {
        let mut c = ConnectOptions::default();
        for bad in [
            &b""[..],
            b"{bad json",
            br#"{"verbose":"yes"}"#,
            br#"{"verbose":1}"#,
            br#"{"name":5}"#,
            b"[]",
            b"\"x\"",
            br#"{"verbose":true}{}"#,
            br#"{"verbose":true} x"#,
            br#"{"protocol":1.5}"#,
        ] {
            assert!(c.apply(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn log_names() {
        let mut c = ConnectOptions::default();
        assert_eq!(c.log_name(), None);
        c.apply(br#"{"name":"cli"}"#).unwrap();
        assert_eq!(c.log_name().as_deref(), Some("cli"));
        c.apply(br#"{"lang":"go","version":"1.0","name":"n"}"#)
            .unwrap();
        assert_eq!(c.log_name().as_deref(), Some("v1.0:go:n"));
        // What nats-server 2.15.1 logs for the other combinations.
        for (connect, name) in [
            (r#"{"version":"1.0","lang":"go"}"#, "v1.0:go"),
            (r#"{"version":"1.0","name":"n"}"#, "v1.0:n"),
            (r#"{"lang":"go","name":"n"}"#, "go:n"),
            (r#"{"lang":"go"}"#, "go"),
            (r#"{"version":"1.0"}"#, "v1.0"),
        ] {
            let mut c = ConnectOptions::default();
            c.apply(connect.as_bytes()).unwrap();
            assert_eq!(c.log_name().as_deref(), Some(name), "{connect}");
        }
    }
}
