//! WebSocket (RFC 6455) as pure functions, as nats-server 2.15.1 speaks it to clients: the
//! upgrade request and its answers, the frame decoder that turns a client's frames into the
//! byte stream the NATS parser reads, the frame encoder, close payloads, and permessage-deflate
//! (RFC 7692, without context takeover either way). No sockets and no clock. The client's side
//! (a leafnode remote dialing a hub) is [`super::websocket_client`].

use bytes::{Buf, BufMut, BytesMut};

/// RFC 6455 section 5.2 opcodes.
pub const OP_CONTINUATION: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

const FIN: u8 = 0x80;
/// RFC 7692 section 6: RSV1 marks a compressed message (on its first frame only).
const RSV1: u8 = 0x40;
const MASK: u8 = 0x80;

/// "All control frames MUST have a payload length of 125 bytes or less" (5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// nats-server's `wsFrameSizeForBrowsers`: frames to a browser carry at most this much.
pub const BROWSER_FRAME_SIZE: usize = 4096;
/// nats-server's `wsCompressThreshold`: smaller writes go out uncompressed.
pub const COMPRESS_THRESHOLD: usize = 64;

/// The most a compressed message may hold, compressed or inflated: a guard against a small
/// message that inflates to gigabytes (nats-server has none; no NATS traffic comes near it).
pub const MAX_COMPRESSED_MESSAGE: usize = 64 * 1024 * 1024;

/// RFC 6455 section 7.4.1 status codes nats-server sends.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_NO_STATUS: u16 = 1005;
pub const CLOSE_ABNORMAL: u16 = 1006;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
pub const CLOSE_INTERNAL_ERROR: u16 = 1011;
pub const CLOSE_TLS_HANDSHAKE: u16 = 1015;

/// RFC 6455 section 1.3: the GUID the accept key is hashed with.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// RFC 7692 section 7.2.2: the tail a sender strips from each compressed message.
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A frame-level violation: the text goes into the close frame (1002) and the log line
/// (`read error: <text>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

/// What the decoder found besides NATS bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A ping: answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// A close: answer with this close payload, then end the stream.
    Close(Vec<u8>),
}

/// Decodes a client's frames, keeping the state of a frame split across reads.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Payload bytes of the current data frame still to come.
    remaining: u64,
    /// Inside a data frame's payload (its header has been read).
    in_payload: bool,
    /// The current frame's masking key and the position within it.
    key: [u8; 4],
    key_pos: usize,
    /// The last data frame seen was final (a new message may start).
    message_done: bool,
    /// The current message is compressed; its bytes gather in `compressed` until it ends.
    compressed_message: bool,
    compressed: Vec<u8>,
    /// Made at the first compressed message, then reused.
    inflater: Option<flate2::Decompress>,
    /// Whether clients must mask (nats-server's `maskread`, off for `Nats-No-Masking`).
    pub require_mask: bool,
}

impl Decoder {
    /// A decoder for a client connection (frames must be masked).
    pub fn new(require_mask: bool) -> Self {
        Decoder {
            message_done: true,
            require_mask,
            ..Decoder::default()
        }
    }

    /// Decodes what it can of `raw` (consuming it), appending NATS bytes to `out` and control
    /// frames to `controls`. A close frame stops decoding: what follows it is ignored.
    pub fn decode(
        &mut self,
        raw: &mut BytesMut,
        out: &mut BytesMut,
        controls: &mut Vec<Control>,
    ) -> Result<(), FrameError> {
        loop {
            if self.in_payload {
                if self.remaining == 0 {
                    self.end_frame(out)?;
                    continue;
                }
                if raw.is_empty() {
                    return Ok(());
                }
                let n = (raw.len() as u64).min(self.remaining) as usize;
                let mut chunk = raw.split_to(n);
                self.unmask(&mut chunk);
                self.remaining -= n as u64;
                if self.compressed_message {
                    if self.compressed.len() + chunk.len() > MAX_COMPRESSED_MESSAGE {
                        return Err(FrameError("compressed message too large".into()));
                    }
                    self.compressed.extend_from_slice(&chunk);
                } else {
                    out.extend_from_slice(&chunk);
                }
                continue;
            }
            let Some(header) = parse_header(raw)? else {
                return Ok(());
            };
            if self.require_mask && header.key.is_none() {
                return Err(FrameError("mask bit missing".into()));
            }
            match header.opcode {
                OP_PING | OP_PONG | OP_CLOSE => {
                    if header.len > MAX_CONTROL_PAYLOAD as u64 {
                        return Err(FrameError(format!(
                            "control frame length bigger than maximum allowed of {MAX_CONTROL_PAYLOAD} bytes"
                        )));
                    }
                    if !header.fin {
                        return Err(FrameError(
                            "control frame does not have final bit set".into(),
                        ));
                    }
                    let total = header.size + header.len as usize;
                    if raw.len() < total {
                        return Ok(());
                    }
                    raw.advance(header.size);
                    let mut payload = raw.split_to(header.len as usize).to_vec();
                    if let Some(key) = header.key {
                        mask(&key, 0, &mut payload);
                    }
                    match header.opcode {
                        OP_PING => controls.push(Control::Ping(payload)),
                        OP_CLOSE => {
                            controls.push(Control::Close(close_reply(&payload)));
                            raw.clear();
                            return Ok(());
                        }
                        _ => {}
                    }
                }
                OP_TEXT | OP_BINARY => {
                    if !self.message_done {
                        return Err(FrameError(
                            "new message started before final frame for previous message was received"
                                .into(),
                        ));
                    }
                    self.message_done = header.fin;
                    self.compressed_message = header.rsv1;
                    self.start_payload(raw, &header);
                }
                OP_CONTINUATION => {
                    if self.message_done || header.rsv1 {
                        return Err(FrameError("invalid continuation frame".into()));
                    }
                    self.message_done = header.fin;
                    self.start_payload(raw, &header);
                }
                other => return Err(FrameError(format!("unknown opcode {other}"))),
            }
        }
    }

    fn start_payload(&mut self, raw: &mut BytesMut, header: &Header) {
        raw.advance(header.size);
        self.remaining = header.len;
        self.in_payload = true;
        self.key = header.key.unwrap_or_default();
        self.key_pos = 0;
    }

    /// A data frame's payload is complete: a compressed message that ended is inflated.
    fn end_frame(&mut self, out: &mut BytesMut) -> Result<(), FrameError> {
        self.in_payload = false;
        if self.compressed_message && self.message_done {
            self.compressed_message = false;
            let message = std::mem::take(&mut self.compressed);
            let inflater = self
                .inflater
                .get_or_insert_with(|| flate2::Decompress::new(false));
            inflate(inflater, &message, out).map_err(FrameError)?;
        }
        Ok(())
    }

    fn unmask(&mut self, chunk: &mut [u8]) {
        if self.key != [0; 4] {
            mask(&self.key, self.key_pos, chunk);
        }
        self.key_pos = (self.key_pos + chunk.len()) % 4;
    }
}

/// One frame header.
struct Header {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    len: u64,
    key: Option<[u8; 4]>,
    /// Bytes the header takes.
    size: usize,
}

/// Reads a frame header from the front of `raw` without consuming it; `None` until whole.
fn parse_header(raw: &[u8]) -> Result<Option<Header>, FrameError> {
    if raw.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (raw[0], raw[1]);
    let masked = b1 & MASK != 0;
    let (len, mut size) = match b1 & 0x7f {
        126 => match raw.get(2..4) {
            Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
            None => return Ok(None),
        },
        127 => match raw.get(2..10) {
            Some(b) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(b);
                (u64::from_be_bytes(n), 10)
            }
            None => return Ok(None),
        },
        n => (n as u64, 2),
    };
    let key = if masked {
        let Some(k) = raw.get(size..size + 4) else {
            return Ok(None);
        };
        size += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin: b0 & FIN != 0,
        rsv1: b0 & RSV1 != 0,
        opcode: b0 & 0x0f,
        len,
        key,
        size,
    }))
}

/// XORs `data` with `key`, starting at `pos` in the key: eight bytes at a time, with the key
/// rotated to `pos` and doubled into one word.
pub fn mask(key: &[u8; 4], pos: usize, data: &mut [u8]) {
    let k: [u8; 4] = std::array::from_fn(|i| key[(pos + i) & 3]);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// The close payload sent back for a client's close: its status (1005 when it gave none) and
/// reason, or 1007 when the reason is not UTF-8 (5.5.1). A client close without status is
/// echoed empty, as nats-server echoes it.
fn close_reply(payload: &[u8]) -> Vec<u8> {
    if payload.len() < 2 {
        return Vec::new();
    }
    let status = u16::from_be_bytes([payload[0], payload[1]]);
    match std::str::from_utf8(&payload[2..]) {
        Ok(body) => close_payload(status, body),
        Err(_) => close_payload(CLOSE_INVALID_PAYLOAD, "invalid utf8 body in close frame"),
    }
}

/// A close frame's payload: the status, then the reason cut to fit a control frame with
/// `...` at its end when it is too long.
pub fn close_payload(status: u16, body: &str) -> Vec<u8> {
    let mut out = status.to_be_bytes().to_vec();
    if body.len() > MAX_CONTROL_PAYLOAD - 2 {
        let mut cut = MAX_CONTROL_PAYLOAD - 5;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        out.extend_from_slice(&body.as_bytes()[..cut]);
        out.extend_from_slice(b"...");
    } else {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Appends a frame header (servers never mask).
pub fn encode_header(
    out: &mut impl BufMut,
    first: bool,
    fin: bool,
    compressed: bool,
    opcode: u8,
    len: usize,
) {
    let mut b0 = if first { opcode } else { OP_CONTINUATION };
    if fin {
        b0 |= FIN;
    }
    if compressed {
        b0 |= RSV1;
    }
    out.put_u8(b0);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=65535 => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

/// The header of one final, uncompressed binary frame of `len` bytes, in `out`; returns its
/// length.
pub fn binary_header(out: &mut [u8; MAX_HEADER], len: usize) -> usize {
    let mut rest = &mut out[..];
    encode_header(&mut rest, true, true, false, OP_BINARY, len);
    MAX_HEADER - rest.len()
}

/// The longest header a server writes (no mask): 2 bytes and a 64-bit length.
pub const MAX_HEADER: usize = 10;

/// Appends one whole control frame.
pub fn encode_control(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    encode_header(out, true, true, false, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends `data` as one binary message: in frames of at most `max_frame` bytes when it is
/// set (browsers), one frame otherwise.
pub fn encode_binary(out: &mut BytesMut, data: &[u8], max_frame: Option<usize>) {
    match max_frame {
        Some(max) if data.len() > max => {
            // nats-server sends each piece as a message of its own.
            for piece in data.chunks(max) {
                encode_header(out, true, true, false, OP_BINARY, piece.len());
                out.extend_from_slice(piece);
            }
        }
        _ => {
            encode_header(out, true, true, false, OP_BINARY, data.len());
            out.extend_from_slice(data);
        }
    }
}

/// A deflater for [`encode_compressed`], kept by a connection: its state is large, and each
/// message starts it afresh anyway (no context takeover).
pub fn new_deflater() -> flate2::Compress {
    flate2::Compress::new(flate2::Compression::fast(), false)
}

/// Appends `data` compressed as one message (no context takeover): fragmented into frames of
/// at most `max_frame` bytes when it is set, the first one marked compressed.
pub fn encode_compressed(
    deflater: &mut flate2::Compress,
    out: &mut BytesMut,
    data: &[u8],
    max_frame: Option<usize>,
) -> Result<(), String> {
    let compressed = deflate_message(deflater, data)?;
    match max_frame {
        Some(max) if compressed.len() > max => {
            let pieces = compressed.chunks(max).count();
            for (i, piece) in compressed.chunks(max).enumerate() {
                encode_header(out, i == 0, i + 1 == pieces, i == 0, OP_BINARY, piece.len());
                out.extend_from_slice(piece);
            }
        }
        _ => {
            encode_header(out, true, true, true, OP_BINARY, compressed.len());
            out.extend_from_slice(&compressed);
        }
    }
    Ok(())
}

/// `data` compressed as one message's payload (no context takeover), its tail left off.
pub fn deflate_message(deflater: &mut flate2::Compress, data: &[u8]) -> Result<Vec<u8>, String> {
    deflater.reset();
    let mut compressed = Vec::with_capacity(data.len() / 2 + 64);
    deflate_all(deflater, data, &mut compressed)?;
    // RFC 7692 7.2.1: the sync flush's empty block is left off.
    if compressed.ends_with(&DEFLATE_TAIL) {
        compressed.truncate(compressed.len() - 4);
    }
    Ok(compressed)
}

fn deflate_all(
    deflater: &mut flate2::Compress,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut input = data;
    loop {
        out.reserve(input.len() / 2 + 256);
        let before = deflater.total_in();
        deflater
            .compress_vec(input, out, flate2::FlushCompress::Sync)
            .map_err(|e| e.to_string())?;
        input = &input[(deflater.total_in() - before) as usize..];
        // The sync flush is complete once the input is in and the output was not filled.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(());
        }
    }
}

/// Inflates one whole compressed message (its stripped tail put back) onto `out`.
pub fn inflate(
    inflater: &mut flate2::Decompress,
    message: &[u8],
    out: &mut BytesMut,
) -> Result<(), String> {
    inflater.reset(false);
    let mut input = Vec::with_capacity(message.len() + 4);
    input.extend_from_slice(message);
    input.extend_from_slice(&DEFLATE_TAIL);
    let mut buf = Vec::with_capacity((message.len() * 4).max(1024));
    let mut rest = &input[..];
    loop {
        buf.reserve(buf.len().max(1024));
        let before = inflater.total_in();
        let status = inflater
            .decompress_vec(rest, &mut buf, flate2::FlushDecompress::Sync)
            .map_err(|e| e.to_string())?;
        rest = &rest[(inflater.total_in() - before) as usize..];
        if buf.len() > MAX_COMPRESSED_MESSAGE {
            return Err("compressed message too large".into());
        }
        let filled = buf.len() == buf.capacity();
        if status == flate2::Status::StreamEnd || (rest.is_empty() && !filled) {
            break;
        }
    }
    out.extend_from_slice(&buf);
    Ok(())
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (4.2.2): base64 of SHA-1 of key + GUID.
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(GUID);
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The upgrade request, as far as the handshake needs it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated token of header `name` equals `value` (case-insensitive), in
    /// any of its values (nats-server's `wsHeaderContains`).
    pub fn header_contains(&self, name: &str, value: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(value))
    }

    /// Whether the client offers permessage-deflate.
    pub fn offers_deflate(&self) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .flat_map(|(_, v)| v.split(','))
            .flat_map(|ext| ext.split(';'))
            .any(|p| {
                p.trim_matches([' ', '\t'])
                    .eq_ignore_ascii_case("permessage-deflate")
            })
    }

    /// The value of cookie `name`, from any `Cookie` header.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim_matches('"').to_string())
    }
}

/// Bytes that are not an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHttp;

/// Parses an HTTP request head from `buf`: `Ok(Some((request, head_len)))`, `Ok(None)` until
/// the head is whole, `Err` for what is not HTTP.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, NotHttp> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let request = Request {
                method: req.method.unwrap_or_default().to_string(),
                path: req.path.unwrap_or_default().to_string(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
            };
            Ok(Some((request, n)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(NotHttp),
    }
}

/// Why a handshake is refused: the HTTP status and nats-server's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

/// Checks an upgrade request as nats-server does (RFC 6455 4.2.1, points 1 to 6, in order);
/// the origin is checked by the caller.
pub fn check_upgrade(req: &Request) -> Result<&str, Refusal> {
    let refuse = |status, reason: &str| Refusal {
        status,
        reason: reason.to_string(),
    };
    if req.method != "GET" {
        return Err(refuse(405, "request method must be GET"));
    }
    if req.header("Host").map_or(true, str::is_empty) {
        return Err(refuse(400, "'Host' missing in request"));
    }
    if !req.header_contains("Upgrade", "websocket") {
        return Err(refuse(400, "invalid value for header 'Upgrade'"));
    }
    if !req.header_contains("Connection", "Upgrade") {
        return Err(refuse(400, "invalid value for header 'Connection'"));
    }
    let key = match req.header("Sec-WebSocket-Key") {
        Some(key) if !key.is_empty() => key,
        _ => return Err(refuse(400, "key missing")),
    };
    if !req.header_contains("Sec-WebSocket-Version", "13") {
        return Err(refuse(400, "invalid version"));
    }
    Ok(key)
}

/// The `101 Switching Protocols` answer.
pub fn encode_accept(
    key: &str,
    compress: bool,
    no_masking: bool,
    extra: &[(String, String)],
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if compress {
        out.push_str("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n");
    }
    if no_masking {
        out.push_str("Nats-No-Masking: true\r\n");
    }
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The HTTP error nats-server's Go HTTP server writes (`http.Error`): the status text as
/// the body. `date` is the `Date` header's value (RFC 1123, GMT).
pub fn encode_http_error(status: u16, date: &str) -> Vec<u8> {
    let text = status_text(status);
    format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nSec-Websocket-Version: 13\r\nX-Content-Type-Options: nosniff\r\nDate: {date}\r\nContent-Length: {}\r\n\r\n{text}\n",
        text.len() + 1
    )
    .into_bytes()
}

/// What Go's HTTP server answers to bytes that are not an HTTP request.
pub const MALFORMED_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request";

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut out = BytesMut::new();
        encode_header(&mut out, true, fin, false, opcode, payload.len());
        out[1] |= MASK;
        out.extend_from_slice(&key);
        let mut p = payload.to_vec();
        mask(&key, 0, &mut p);
        out.extend_from_slice(&p);
        out.to_vec()
    }

    #[test]
    fn masking_word_at_a_time_matches_the_rfc_rule() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for pos in 0..4 {
            for len in [0, 1, 7, 8, 9, 31, 300] {
                let mut fast = data[..len].to_vec();
                mask(&key, pos, &mut fast);
                // "octet i of the transformed data is the XOR of octet i of the original data
                // with octet at index i modulo 4 of the masking key" (5.3)
                let slow: Vec<u8> = (0..len).map(|i| data[i] ^ key[(pos + i) % 4]).collect();
                assert_eq!(fast, slow, "pos {pos}, len {len}");
            }
        }
    }

    #[test]
    fn binary_headers_by_length() {
        let mut out = [0u8; MAX_HEADER];
        for (len, want) in [
            (5, &[0x82, 5][..]),
            (126, &[0x82, 126, 0, 126][..]),
            (70_000, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70][..]),
        ] {
            let n = binary_header(&mut out, len);
            assert_eq!(&out[..n], want, "{len}");
        }
    }

    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_decode_whole_and_byte_by_byte() {
        let mut wire = masked(OP_BINARY, true, b"PUB foo 5\r\nhel");
        wire.extend(masked(OP_TEXT, false, b"lo\r\nPI"));
        wire.extend(masked(OP_PING, true, b"hi"));
        wire.extend(masked(OP_CONTINUATION, true, b"NG\r\n"));
        let want = b"PUB foo 5\r\nhello\r\nPING\r\n";
        for step in [wire.len(), 1, 3, 7] {
            let mut d = Decoder::new(true);
            let (mut out, mut controls, mut raw) = (BytesMut::new(), Vec::new(), BytesMut::new());
            for chunk in wire.chunks(step) {
                raw.extend_from_slice(chunk);
                d.decode(&mut raw, &mut out, &mut controls).unwrap();
            }
            assert_eq!(&out[..], want, "step {step}");
            assert_eq!(controls, vec![Control::Ping(b"hi".to_vec())]);
        }
    }

    #[test]
    fn violations() {
        let cases: [(Vec<u8>, &str); 5] = [
            (vec![0x82, 0x01, b'x'], "mask bit missing"),
            (
                masked(OP_PING, false, b""),
                "control frame does not have final bit set",
            ),
            (
                masked(OP_CONTINUATION, true, b"x"),
                "invalid continuation frame",
            ),
            (masked(3, true, b"x"), "unknown opcode 3"),
            (
                masked(OP_PING, true, &[0; 126]),
                "control frame length bigger than maximum allowed of 125 bytes",
            ),
        ];
        for (wire, want) in cases {
            let mut d = Decoder::new(true);
            let mut raw = BytesMut::from(&wire[..]);
            let err = d.decode(&mut raw, &mut BytesMut::new(), &mut Vec::new());
            assert_eq!(err, Err(FrameError(want.into())));
        }
    }

    #[test]
    fn close_replies() {
        assert_eq!(close_reply(b""), Vec::<u8>::new());
        assert_eq!(close_reply(b"\x03\xe8bye"), b"\x03\xe8bye".to_vec());
        assert_eq!(
            close_reply(b"\x03\xe8\xff"),
            close_payload(CLOSE_INVALID_PAYLOAD, "invalid utf8 body in close frame")
        );
        let long = close_payload(1000, &"x".repeat(200));
        assert_eq!(long.len(), 125);
        assert!(long.ends_with(b"..."));
    }

    #[test]
    fn compression_round_trips() {
        let data = b"MSG foo 1 200\r\n".repeat(50);
        let mut deflater = new_deflater();
        for max in [None, Some(64), None] {
            let mut out = BytesMut::new();
            encode_compressed(&mut deflater, &mut out, &data, max).unwrap();
            // Decode as a client would, masking aside.
            let mut d = Decoder::new(false);
            let mut decoded = BytesMut::new();
            d.decode(&mut out, &mut decoded, &mut Vec::new()).unwrap();
            assert_eq!(&decoded[..], &data[..]);
        }
    }

    #[test]
    fn a_compression_bomb_is_refused() {
        let mut out = BytesMut::new();
        let zeros = vec![0u8; MAX_COMPRESSED_MESSAGE + 1];
        encode_compressed(&mut new_deflater(), &mut out, &zeros, None).unwrap();
        let mut d = Decoder::new(false);
        let err = d.decode(&mut out, &mut BytesMut::new(), &mut Vec::new());
        assert_eq!(err, Err(FrameError("compressed message too large".into())));
    }

    #[test]
    fn upgrade_checks_in_nats_server_order() {
        let (req, _) = parse_request(
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
              Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nCookie: a=1; b=\"2\"\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(check_upgrade(&req), Ok("k"));
        assert_eq!(req.cookie("b").as_deref(), Some("2"));
        let (req, _) = parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            check_upgrade(&req).unwrap_err().reason,
            "invalid value for header 'Upgrade'"
        );
    }
}
