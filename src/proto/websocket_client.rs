//! The client's side of RFC 6455, as a nats-server 2.15.1 leafnode remote speaks it to a hub's
//! WebSocket listener: the upgrade request (on the `/leafnode` path, which tells the hub the
//! connection is a leafnode and not a client), the checks on the hub's answer, and masked
//! frames. Pure functions: the random key and masking keys are inputs.

use bytes::BytesMut;

use super::websocket::{accept_key, encode_header, mask};

/// The path a leafnode's upgrade request names (nats-server's `leafNodeWSPath`): the hub's
/// WebSocket listener makes a leafnode connection of any request whose path starts with it.
pub const LEAF_PATH: &str = "/leafnode";

/// The `Sec-WebSocket-Extensions` value a remote with `ws_compression` offers.
const DEFLATE_OFFER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The request path for a remote URL whose path is `url_path` (`""` or `/...`): nats-server
/// appends it to `/leafnode` without its leading slash.
pub fn leaf_path(url_path: &str) -> String {
    format!(
        "{LEAF_PATH}{}",
        url_path.strip_prefix('/').unwrap_or(url_path)
    )
}

/// `Sec-WebSocket-Key`: 16 random bytes in base64 (4.1).
pub fn challenge_key(random: [u8; 16]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(random)
}

/// The upgrade request, with the headers nats-server's remote sends (in its order):
/// `Nats-No-Masking: true` asks the hub to take unmasked frames, and `compress` offers
/// permessage-deflate without context takeover.
pub fn encode_request(
    host: &str,
    path: &str,
    key: &str,
    compress: bool,
    no_masking: bool,
) -> Vec<u8> {
    let mut out = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n");
    if no_masking {
        out.push_str("Nats-No-Masking: true\r\n");
    }
    out.push_str(&format!(
        "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    ));
    if compress {
        out.push_str(&format!("Sec-Websocket-Extensions: {DEFLATE_OFFER}\r\n"));
    }
    out.push_str("Upgrade: websocket\r\n\r\n");
    out.into_bytes()
}

/// What the hub's answer settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// permessage-deflate is on (it was offered and the hub took it).
    pub compress: bool,
    /// Our frames must be masked: always, unless we asked for no masking and the hub agreed.
    pub mask: bool,
}

/// Checks the hub's answer to [`encode_request`] at the front of `buf`: `Ok(None)` until its
/// head is whole, else what it settled and the head's length (what follows are frames), or
/// nats-server's reason for refusing it.
pub fn check_answer(
    buf: &[u8],
    key: &str,
    compress: bool,
    no_masking: bool,
) -> Result<Option<(Answer, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed HTTP response: {e}")),
    };
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .unwrap_or_default()
    };
    if response.code != Some(101)
        || !header("Upgrade").eq_ignore_ascii_case("websocket")
        || !header("Connection").eq_ignore_ascii_case("upgrade")
        || header("Sec-WebSocket-Accept") != accept_key(key)
    {
        return Err("invalid websocket connection".into());
    }
    let mut answer = Answer {
        compress: false,
        mask: true,
    };
    if compress {
        // The hub may decline compression, but not take it with context takeover.
        let values = response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .map(|h| String::from_utf8_lossy(h.value));
        match deflate_answer(values) {
            (false, _) => {}
            (true, false) => return Err("compression negotiation error".into()),
            (true, true) => answer.compress = true,
        }
    }
    if no_masking && header("Nats-No-Masking") == "true" {
        answer.mask = false;
    }
    Ok(Some((answer, head)))
}

/// Whether `Sec-WebSocket-Extensions` values name permessage-deflate, and then whether with
/// both `server_no_context_takeover` and `client_no_context_takeover` after it.
fn deflate_answer<S: AsRef<str>>(values: impl Iterator<Item = S>) -> (bool, bool) {
    for value in values {
        for extension in value.as_ref().split(',') {
            let params: Vec<&str> = extension
                .split(';')
                .map(|p| p.trim_matches([' ', '\t']))
                .collect();
            let Some(at) = params
                .iter()
                .position(|p| p.eq_ignore_ascii_case("permessage-deflate"))
            else {
                continue;
            };
            let after = &params[at + 1..];
            let has = |name: &str| after.iter().any(|p| p.eq_ignore_ascii_case(name));
            return (
                true,
                has("server_no_context_takeover") && has("client_no_context_takeover"),
            );
        }
    }
    (false, false)
}

/// Appends one frame as a client sends it: the mask bit and `key` in the header, the payload
/// masked with the key (5.3).
pub fn encode_masked(
    out: &mut BytesMut,
    first: bool,
    fin: bool,
    compressed: bool,
    opcode: u8,
    payload: &[u8],
    key: [u8; 4],
) {
    let start = out.len();
    encode_header(out, first, fin, compressed, opcode, payload.len());
    out[start + 1] |= 0x80;
    out.extend_from_slice(&key);
    let at = out.len();
    out.extend_from_slice(payload);
    mask(&key, 0, &mut out[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::websocket::{Control, Decoder, OP_BINARY, OP_PING};

    #[test]
    fn paths_as_nats_server_builds_them() {
        assert_eq!(leaf_path(""), "/leafnode");
        assert_eq!(leaf_path("/"), "/leafnode");
        assert_eq!(leaf_path("/x/y"), "/leafnodex/y");
    }

    #[test]
    fn the_request_is_what_a_nats_server_remote_sends() {
        let key = challenge_key([7; 16]);
        let request = encode_request("h:1", "/leafnode", &key, true, true);
        let text = String::from_utf8(request).unwrap();
        assert_eq!(
            text,
            format!(
                "GET /leafnode HTTP/1.1\r\nHost: h:1\r\nConnection: Upgrade\r\n\
                 Nats-No-Masking: true\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-Websocket-Extensions: permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover\r\nUpgrade: websocket\r\n\r\n"
            )
        );
        // The server side of tern reads it as a valid upgrade on the leafnode path.
        let (parsed, _) = crate::proto::websocket::parse_request(text.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(
            crate::proto::websocket::check_upgrade(&parsed),
            Ok(key.as_str())
        );
        assert!(parsed.path.starts_with(LEAF_PATH));
        assert!(parsed.offers_deflate());
    }

    #[test]
    fn answers() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let check = |extra: &str, compress, no_masking| {
            check_answer(
                format!("{ok}{extra}\r\nrest").as_bytes(),
                key,
                compress,
                no_masking,
            )
        };
        let plain = Answer {
            compress: false,
            mask: true,
        };
        assert_eq!(check("", false, false).unwrap().unwrap().0, plain);
        let (answer, head) = check("", true, true).unwrap().unwrap();
        assert_eq!(answer, plain, "compression and no masking declined");
        assert_eq!(head, ok.len() + 2);
        let both = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
                    client_no_context_takeover\r\nNats-No-Masking: true\r\n";
        assert_eq!(
            check(both, true, true).unwrap().unwrap().0,
            Answer {
                compress: true,
                mask: false
            }
        );
        assert_eq!(
            check(
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
                true,
                false
            ),
            Err("compression negotiation error".into())
        );
        assert_eq!(
            check_answer(ok.as_bytes(), key, false, false),
            Ok(None),
            "head not whole yet"
        );
        let wrong_key = ok.replace("s3pP", "AAAA");
        assert_eq!(
            check_answer(format!("{wrong_key}\r\n").as_bytes(), key, false, false),
            Err("invalid websocket connection".into())
        );
        let refused = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            check_answer(refused.as_bytes(), key, false, false),
            Err("invalid websocket connection".into())
        );
    }

    #[test]
    fn masked_frames_decode_as_a_server_decodes_them() {
        let mut wire = BytesMut::new();
        encode_masked(
            &mut wire,
            true,
            true,
            false,
            OP_BINARY,
            b"LS+ foo\r\n",
            [9, 8, 7, 6],
        );
        encode_masked(&mut wire, true, true, false, OP_PING, b"p", [1, 2, 3, 4]);
        let mut decoder = Decoder::new(true);
        let (mut out, mut controls) = (BytesMut::new(), Vec::new());
        decoder.decode(&mut wire, &mut out, &mut controls).unwrap();
        assert_eq!(&out[..], b"LS+ foo\r\n");
        assert_eq!(controls, vec![Control::Ping(b"p".to_vec())]);
    }
}
