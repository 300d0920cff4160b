//! Protocol tracing (`-V`) of what a client sends, with CONNECT's secrets redacted as
//! nats-server redacts them.

use tracing::trace;

use crate::proto::parser::ClientOp;

/// Traces one operation received from the client.
pub fn trace_in(desc: &str, op: &ClientOp<'_>) {
    let lossy = String::from_utf8_lossy;
    let reply = |r: Option<&[u8]>| r.map(|r| format!(" {}", lossy(r))).unwrap_or_default();
    match op {
        ClientOp::Pub {
            subject,
            reply: r,
            payload,
        } => {
            trace!(
                "{desc} - <<- [PUB {}{} {}]",
                lossy(subject),
                reply(*r),
                payload.len()
            );
            trace!("{desc} - <<- MSG_PAYLOAD: [{:?}]", lossy(payload));
        }
        ClientOp::HPub {
            subject,
            reply: r,
            header_len,
            message,
        } => {
            trace!(
                "{desc} - <<- [HPUB {}{} {} {}]",
                lossy(subject),
                reply(*r),
                header_len,
                message.len()
            );
            trace!("{desc} - <<- MSG_PAYLOAD: [{:?}]", lossy(message));
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => {
            trace!(
                "{desc} - <<- [SUB {}{} {}]",
                lossy(subject),
                reply(*queue),
                lossy(sid)
            )
        }
        ClientOp::Unsub { sid, max } => {
            let max = max.map(|m| format!(" {m}")).unwrap_or_default();
            trace!("{desc} - <<- [UNSUB {}{}]", lossy(sid), max)
        }
        ClientOp::Ping => trace!("{desc} - <<- [PING]"),
        ClientOp::Pong => trace!("{desc} - <<- [PONG]"),
        ClientOp::Connect(json) => {
            trace!("{desc} - <<- [CONNECT {}]", redact_secrets(&lossy(json)))
        }
        ClientOp::Info(json) => trace!("{desc} - <<- [INFO {}]", lossy(json)),
        ClientOp::Ok => trace!("{desc} - <<- [OK]"),
        ClientOp::Err(text) => trace!("{desc} - <<- [-ERR {}]", lossy(text)),
    }
}

/// CONNECT's JSON with the values of `pass`, `auth_token`, `nkey` and `sig` replaced by
/// `[REDACTED]`, as nats-server traces it.
pub(super) fn redact_secrets(json: &str) -> String {
    let mut out = json.to_string();
    for key in ["\"pass\"", "\"auth_token\"", "\"nkey\"", "\"sig\""] {
        let mut from = 0;
        while let Some(found) = out[from..].find(key) {
            let after_key = from + found + key.len();
            let rest = &out[after_key..];
            let trimmed = rest.trim_start();
            let Some(value) = trimmed.strip_prefix(':').map(str::trim_start) else {
                from = after_key;
                continue;
            };
            let Some(body) = value.strip_prefix('"') else {
                from = after_key;
                continue;
            };
            let start = out.len() - body.len();
            let mut end = None;
            let mut escaped = false;
            for (i, c) in body.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(start + i);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { break };
            out.replace_range(start..end, "[REDACTED]");
            from = start + "[REDACTED]".len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_secrets_are_redacted_in_traces() {
        // As nats-server 2.15.1 traced these CONNECTs.
        assert_eq!(
            redact_secrets(r#"{"user":"e","pass":"e","verbose":false}"#),
            r#"{"user":"e","pass":"[REDACTED]","verbose":false}"#
        );
        assert_eq!(
            redact_secrets(r#"{"auth_token":"tok","name":"app2"}"#),
            r#"{"auth_token":"[REDACTED]","name":"app2"}"#
        );
        assert_eq!(
            redact_secrets(r#"{"nkey":"UAB","sig":"x\"y","verbose":false}"#),
            r#"{"nkey":"[REDACTED]","sig":"[REDACTED]","verbose":false}"#
        );
        assert_eq!(
            redact_secrets(r#"{"pass" : "a", "name":"pass"}"#),
            r#"{"pass" : "[REDACTED]", "name":"pass"}"#
        );
        assert_eq!(
            redact_secrets(r#"{"pass":"unterminated"#),
            r#"{"pass":"unterminated"#
        );
        assert_eq!(redact_secrets(r#"{"pass":5}"#), r#"{"pass":5}"#);
    }
}
