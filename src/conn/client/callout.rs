//! A client's CONNECT decided by an auth callout service (see `security::callout`): the
//! request is published in the callout account with a reply subject the server subscribes
//! to for this one answer, and the read loop waits for the answer (or the authorization
//! timeout) before it handles anything the client sent after CONNECT, as nats-server's does.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::Client;
use crate::engine::account::random_token;
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::subscription::{Internal, Subscription};
use crate::proto::error::ProtocolError;
use crate::proto::jwt;
use crate::proto::protocol::ConnectOptions;
use crate::security::auth;
use crate::security::callout::{self, Judge, Plan, Server};
use crate::security::tls;

/// `client_tls` for a client of `session`: its certificates as verified against the
/// configured CA (`tls { verify: true }`), else as presented.
fn client_tls(session: &tls::SessionInfo, opts: &crate::config::Options) -> callout::ClientTls {
    let verified = opts.tls.as_ref().filter(|t| t.verify || t.verify_and_map);
    let mut out = callout::ClientTls {
        version: session.version.clone(),
        cipher: session.cipher.clone(),
        ..Default::default()
    };
    match verified {
        Some(t) if !session.peer_certs.is_empty() => {
            let roots = t
                .ca_file
                .as_deref()
                .and_then(|f| tls::read_certs(f).ok())
                .unwrap_or_default();
            let chain = tls::verified_chain(&session.peer_certs, &roots);
            out.verified_chains = vec![chain.iter().map(|c| tls::pem(c)).collect()];
        }
        _ => out.certs = session.peer_certs.iter().map(|c| tls::pem(c)).collect(),
    }
    out
}

/// A CONNECT waiting for a callout service.
pub(super) struct Pending {
    /// Which service, and how to ask it.
    pub plan: Plan,
    /// The CONNECT options (in force once the client is admitted).
    pub opts: ConnectOptions,
    /// What the client presented.
    pub credentials: auth::Credentials,
    /// The client's own user JWT passed (operator mode): its name and tags go in the request.
    pub jwt_passed: bool,
}

/// The internal subscriber of the reply subject: hands the first answer over.
#[derive(Debug)]
struct Reply(Mutex<Option<oneshot::Sender<Vec<u8>>>>);

impl Internal for Reply {
    fn deliver(&self, _: &Subscription, msg: &Message<'_>, _: &mut Deliveries) -> bool {
        let body = &msg.message[msg.header_len.unwrap_or(0).min(msg.message.len())..];
        let sender = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sender) = sender {
            let _ = sender.send(body.to_vec());
        }
        true
    }

    /// The service may be connected to another server of the cluster: its answer must find
    /// its way back here.
    fn announced(&self) -> bool {
        true
    }
}

impl Client {
    /// Asks the service about the pending CONNECT and finishes it: `Some` with the verdict
    /// (an admitted client is connected), `None` when the connection is being closed
    /// meanwhile.
    pub(super) async fn run_callout(&mut self) -> Option<Result<(), ProtocolError>> {
        let pending = self.callout.take()?;
        let verdict = match self.ask(&pending).await? {
            Ok(user) => {
                return Some(self.finish_connect(pending.opts, pending.credentials, user, true))
            }
            Err(why) => why,
        };
        if let Some(why) = verdict {
            warn!("{why}");
        }
        Some(Err(self.refused(&pending.credentials)))
    }

    /// The service's verdict: the admitted user, or why not (`None`: no answer in time, which
    /// nats-server logs at debug level only). `None` when the connection is closing.
    async fn ask(&mut self, pending: &Pending) -> Option<Result<auth::Authorized, Option<String>>> {
        let plan = &pending.plan;
        let Some(account) = self.shared.router.account(&plan.account) else {
            let why = format!(
                "No valid account {:?} for auth callout request: account missing",
                plan.account
            );
            return Some(Err(Some(why)));
        };
        let opts = self.server.clone();
        let user_key = nkeys::KeyPair::new_user().public_key();
        let cluster = opts.cluster.as_ref().and_then(|c| c.name.clone());
        let server = Server {
            name: &self.shared.server_name,
            host: &opts.host,
            id: &self.shared.server_id,
            cluster: cluster.as_deref(),
            key: &self.shared.server_key,
            xkey: &self.shared.xkey,
        };
        let creds = &pending.credentials;
        let own_jwt = creds
            .jwt
            .as_deref()
            .filter(|_| pending.jwt_passed)
            .and_then(|t| jwt::decode::<jwt::User>(t, jwt::Kind::User).ok());
        let client = callout::Client {
            cid: self.conn.cid,
            host: self.addr.ip().to_string(),
            kind: if self.websocket.is_some() {
                "websocket"
            } else {
                "nats"
            },
            connect: &pending.opts,
            nonce: self.nonce.as_deref(),
            jwt_name: own_jwt
                .as_ref()
                .map(|u| (u.name.as_str(), u.nats.tags.as_slice())),
            user: callout::raw_auth_user(creds, own_jwt.as_ref().map(|u| u.sub.as_str())),
            tls: self
                .tls_session
                .as_deref()
                .map(|session| client_tls(session, &opts)),
        };
        let timeout = opts.auth_timeout();
        let now = crate::config::operator::unix_now();
        let (payload, xkey) =
            match callout::request(plan, &server, &client, &user_key, timeout, now) {
                Ok(request) => request,
                Err(why) => return Some(Err(Some(why))),
            };
        let (sender, answer) = oneshot::channel();
        let reply = format!("$SYS._INBOX.{}.{}", random_token(8), random_token(8));
        let sub = Arc::new(Subscription::internal(
            Arc::new(Reply(Mutex::new(Some(sender)))),
            &reply,
            None,
        ));
        account.subscribe(sub.clone());
        let mut message = Vec::new();
        let header_len = xkey.map(|key| {
            message.extend_from_slice(
                format!("NATS/1.0\r\n{}: {key}\r\n\r\n", callout::XKEY_HEADER).as_bytes(),
            );
            message.len()
        });
        message.extend_from_slice(&payload);
        let mut out = Deliveries::default();
        deliver::publish(
            &account,
            &Message {
                subject: callout::SUBJECT.as_bytes(),
                reply: Some(reply.as_bytes()),
                header_len,
                message: &message,
            },
            &mut out,
        );
        out.flush(None);
        let body = tokio::select! {
            _ = self.conn.outbound.reader_wakeup() => {
                account.unsubscribe(&sub);
                return None;
            }
            body = tokio::time::timeout(timeout, answer) => body.ok().and_then(Result::ok),
        };
        account.unsubscribe(&sub);
        let Some(body) = body else {
            debug!(
                "Authorization callout response not received in time on account {:?}",
                plan.account
            );
            return Some(Err(None));
        };
        let router = &self.shared.router;
        let exists = |name: &str| router.account(name).is_some();
        let fallback_label = match (&creds.nkey, &creds.user, &creds.token) {
            (Some(nkey), _, _) if !nkey.is_empty() => Some(format!("nkey:{nkey}")),
            (_, Some(user), _) if !user.is_empty() => Some(format!("user:{user}")),
            (_, _, Some(token)) if !token.is_empty() => Some("token".to_string()),
            _ => None,
        };
        let judge = Judge {
            opts: &opts,
            plan,
            server: &server,
            user_key: &user_key,
            desc: &self.desc,
            now: crate::config::operator::unix_now(),
            account_exists: &exists,
            fallback_label,
        };
        Some(callout::admit(&judge, &body).map_err(Some))
    }
}
