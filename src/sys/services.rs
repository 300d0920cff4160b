//! The `$SYS.REQ.*` endpoints: each request's JSON body is the monitor endpoint's options with
//! the monitor's field names (an empty body asks for the defaults), and the answer is the
//! monitor's document in nats-server's envelope.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::jsz::{self, JszOptions, Later};
use super::{ApiError, Envelope, ServerInfo, Sys};
use crate::monitor::accountz::{self, AccountStatzOptions, AccountzOptions};
use crate::monitor::connz::{self, ConnzOptions};
use crate::monitor::subsz::{self, SubszOptions};
use crate::monitor::varz;
use crate::state::events::{Service, SysRequest};

/// What a request is answered with.
pub(super) enum Answer {
    /// `{"server":..,"data":..}`.
    Data(serde_json::Value),
    /// `{"server":..,"statsz":..}`.
    Statsz(serde_json::Value),
    /// The document alone (`IDZ`, and `CONNS`, which carries its own `server`).
    Bare(serde_json::Value),
    /// An error: 400 for a body that is not the options' JSON, 500 for the rest.
    Error(u16, String),
    /// No answer at all (`CONNS` of an account without connections).
    Nothing,
    /// These bytes as they are (a claims lookup: the JWT, or nothing).
    Raw(Vec<u8>),
    /// A document with its own `server` (keys in sorted order, as nats-server writes the
    /// claims list).
    Document(serde_json::Value),
    /// A refused claims request: `{"server":..,"error":{"account":..,"code":500,..}}`.
    ClaimError(Option<String>, String),
    /// Built on a task of its own, then sent as the answer it turns out to be (`JSZ`, whose
    /// detail the JetStream task gives).
    Later(Later),
}

impl Sys {
    /// Answers one request in the account it was published in.
    pub(super) fn answer(&mut self, req: SysRequest) {
        let Some(account) = self.shared.router.account(&req.account) else {
            return;
        };
        let answer = match req.service {
            Service::Server(endpoint) => self.server_endpoint(endpoint, &req.body),
            Service::Account(endpoint) => {
                // `$SYS.REQ.ACCOUNT.<acc>.<X>`: the account is the fourth token.
                let subject = String::from_utf8_lossy(&req.subject);
                let acc = subject.split('.').nth(3).unwrap_or_default().to_string();
                self.account_endpoint(endpoint, &acc, &req.body)
            }
            Service::Imported(endpoint) => self.account_endpoint(endpoint, &req.account, &req.body),
            Service::UserInfo => self.user_info(&req),
            Service::Claims(op) => self.claims(op, &req),
            Service::Remote(what) => {
                self.remote_event(what, &req);
                return;
            }
        };
        let reply = String::from_utf8_lossy(&req.reply).into_owned();
        if let Answer::Later(later) = answer {
            // Numbered now, in the order the requests came.
            let server = self.server_info();
            tokio::spawn(async move {
                if let Some(payload) = encode(later.await, || server) {
                    super::send(&account, &reply, &payload);
                }
            });
            return;
        }
        if let Some(payload) = encode(answer, || self.server_info()) {
            super::send(&account, &reply, &payload);
        }
    }

    /// `$SYS.REQ.SERVER.PING[.<X>]` and `$SYS.REQ.SERVER.<id>.<X>`.
    fn server_endpoint(&mut self, endpoint: &str, body: &[u8]) -> Answer {
        let shared = self.shared.clone();
        match endpoint {
            "STATSZ" => Answer::Statsz(to_value(&self.statsz())),
            "VARZ" => Answer::Data(to_value(&varz::build(&shared))),
            "CONNZ" => match options::<ConnzOptions>(body) {
                Ok(opts) => document(connz::build(&shared, &opts)),
                Err(answer) => answer,
            },
            "SUBSZ" => match options::<SubszOptions>(body) {
                Ok(opts) => document(subsz::build(&shared, &opts)),
                Err(answer) => answer,
            },
            "HEALTHZ" => Answer::Data(serde_json::json!({"status": "ok", "status_code": 200})),
            "IDZ" => Answer::Bare(serde_json::json!({
                "name": shared.server_name,
                "host": shared.opts().host,
                "id": shared.server_id,
            })),
            "ACCOUNTZ" => match options::<AccountzOptions>(body) {
                Ok(opts) => document(accountz::build_accountz(&shared, &opts)),
                Err(answer) => answer,
            },
            "JSZ" => match options::<JszOptions>(body) {
                Ok(opts) => Answer::Later(jsz::server(shared, opts)),
                Err(answer) => answer,
            },
            _ => Answer::Nothing,
        }
    }

    /// `$SYS.REQ.ACCOUNT.<acc>.<X>`, and the imports every account has of them for itself.
    fn account_endpoint(&mut self, endpoint: &str, acc: &str, body: &[u8]) -> Answer {
        let shared = self.shared.clone();
        match endpoint {
            "CONNZ" => match options::<ConnzOptions>(body) {
                Ok(opts) => document(connz::build(
                    &shared,
                    &ConnzOptions {
                        acc: acc.to_string(),
                        ..opts
                    },
                )),
                Err(answer) => answer,
            },
            "SUBSZ" => match options::<SubszOptions>(body) {
                Ok(opts) => document(subsz::build(
                    &shared,
                    &SubszOptions {
                        account: acc.to_string(),
                        subscriptions: true,
                        ..opts
                    },
                )),
                Err(answer) => answer,
            },
            "INFO" => match shared.router.account(acc) {
                Some(account) => {
                    Answer::Data(to_value(&accountz::account_detail(&shared, &account)))
                }
                None => Answer::Error(500, format!("Account {acc} does not exist")),
            },
            "CONNS" => match shared.router.account(acc) {
                Some(account) if account.clients.load(std::sync::atomic::Ordering::Relaxed) > 0 => {
                    Answer::Bare(to_value(&self.account_conns(&account)))
                }
                _ => Answer::Nothing,
            },
            "STATZ" => match options::<AccountStatzOptions>(body) {
                Ok(mut opts) => {
                    // `PING` asks about every account (those with connections, by default).
                    if acc != "PING" {
                        opts.accounts = vec![acc.to_string()];
                    }
                    let statz = accountz::build_accstatz(&shared, &opts);
                    // Nothing to tell about accounts without connections, unless asked.
                    match statz.account_statz().is_empty() && !opts.include_unused {
                        true => Answer::Nothing,
                        false => Answer::Data(to_value(&statz)),
                    }
                }
                Err(answer) => answer,
            },
            "JSZ" => match options::<JszOptions>(body) {
                Ok(opts) => Answer::Later(jsz::account(shared, acc.to_string(), opts)),
                Err(answer) => answer,
            },
            // `$SYS.REQ.USER.<acc>.INFO` asked directly, not through the import that says who
            // asks: nats-server answers for nobody.
            "USER" => Answer::Data(serde_json::json!({"user": "", "account": ""})),
            "LEAFZ" => {
                let account = (acc != "PING").then_some(acc);
                Answer::Data(to_value(&crate::monitor::leafz::document(
                    &shared, false, account,
                )))
            }
            _ => Answer::Nothing,
        }
    }

    /// `$SYS.REQ.USER.INFO`: the requesting user and its account.
    fn user_info(&mut self, req: &SysRequest) -> Answer {
        let user = req
            .publisher
            .and_then(|cid| self.shared.router.connection(cid))
            .and_then(|conn| conn.snapshot(false).user)
            .unwrap_or_default();
        Answer::Data(serde_json::json!({
            "user": user,
            "account": req.account.as_ref(),
            "account_name": req.account.as_ref(),
        }))
    }
}

/// The bytes of `answer`, with the sender block `server` gives where the answer has one;
/// nothing for [`Answer::Nothing`] (or a [`Answer::Later`], which is never encoded itself).
fn encode(answer: Answer, server: impl FnOnce() -> ServerInfo) -> Option<Vec<u8>> {
    match answer {
        Answer::Nothing | Answer::Later(_) => None,
        Answer::Raw(bytes) => Some(bytes),
        Answer::Document(value) => serde_json::to_vec(&value).ok(),
        Answer::ClaimError(acc, description) => Sys::encode(&Envelope {
            server: server(),
            data: None,
            statsz: None,
            error: Some(ApiError {
                account: acc,
                code: 500,
                description,
            }),
        }),
        Answer::Bare(value) => Sys::encode(&value),
        Answer::Data(data) => Sys::encode(&Envelope {
            server: server(),
            data: Some(data),
            statsz: None,
            error: None,
        }),
        Answer::Statsz(statsz) => Sys::encode(&Envelope {
            server: server(),
            data: None,
            statsz: Some(statsz),
            error: None,
        }),
        Answer::Error(code, description) => Sys::encode(&Envelope {
            server: server(),
            // nats-server leaves `data` out only when the request could not be read.
            data: (code != 400).then_some(serde_json::Value::Null),
            statsz: None,
            error: Some(ApiError {
                account: None,
                code,
                description,
            }),
        }),
    }
}

/// A monitor document, or its error as a 500.
fn document<T: Serialize>(built: Result<T, String>) -> Answer {
    match built {
        Ok(doc) => Answer::Data(to_value(&doc)),
        Err(text) => Answer::Error(500, text),
    }
}

pub(super) fn to_value(doc: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(doc).unwrap_or(serde_json::Value::Null)
}

/// A request's options: its JSON body, or the defaults for an empty one. A body that is not
/// the options' JSON is a 400 with Go's decoder text where tern can tell it.
fn options<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|err| Answer::Error(400, go_json_error(body, &err)))
}

/// Go's `encoding/json` text for the syntax errors a request body most often has: a first
/// character that starts no value, or a misspelt `null`/`true`/`false`. Anything else gets
/// serde's text.
fn go_json_error(body: &[u8], err: &serde_json::Error) -> String {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let first = body[start];
    let quoted = |b: u8| match b {
        b'\'' => "'\\''".to_string(),
        b if b.is_ascii_graphic() || b == b' ' => format!("'{}'", b as char),
        b => format!("'\\x{b:02x}'"),
    };
    let literal = match first {
        b'n' => "null",
        b't' => "true",
        b'f' => "false",
        b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' => return err.to_string(),
        other => {
            return format!(
                "invalid character {} looking for beginning of value",
                quoted(other)
            )
        }
    };
    for (i, want) in literal.bytes().enumerate().skip(1) {
        match body.get(start + i) {
            Some(&got) if got == want => {}
            Some(&got) => {
                return format!(
                    "invalid character {} in literal {literal} (expecting '{}')",
                    quoted(got),
                    want as char
                )
            }
            None => return "unexpected end of JSON input".into(),
        }
    }
    err.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> String {
        match options::<ConnzOptions>(body.as_bytes()) {
            Err(Answer::Error(400, text)) => text,
            _ => panic!("{body:?} accepted"),
        }
    }

    #[test]
    fn go_decoder_texts() {
        assert_eq!(
            text("not json"),
            "invalid character 'o' in literal null (expecting 'u')"
        );
        assert_eq!(
            text("xyz"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(text("tru"), "unexpected end of JSON input");
        assert!(options::<ConnzOptions>(b"").is_ok());
        assert!(options::<ConnzOptions>(b" {\"acc\":\"A\",\"auth\":true} ").is_ok());
    }
}
