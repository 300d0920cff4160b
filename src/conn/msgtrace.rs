//! Traced messages (`Nats-Trace-Dest`, or a sampled `traceparent` in an account with
//! `msg_trace`) arriving over a route or a leafnode connection: delivered as any routed
//! message, with each delivery noted, and the event (this server's hop) handed to the system
//! services.

use std::sync::Arc;

use tracing::error;

use crate::engine::account::{Account, Matches};
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::msgtrace::{self, MsgTrace, Request};
use crate::state::events::SysInput;
use crate::state::Shared;

/// The route or leafnode connection a traced message came over: its kind, cid and the peer's
/// server name.
pub struct FromRoute<'a> {
    /// [`kind::ROUTER`] or [`kind::LEAF`].
    pub kind: u8,
    /// The route connection's cid.
    pub cid: u64,
    /// The peer's server name.
    pub name: &'a str,
    /// The connection's log prefix.
    pub desc: &'a str,
}

/// Delivers a routed message whose headers may ask for a trace (see [`msgtrace::requested`]),
/// as [`deliver::deliver_routed`] does, and sends this server's trace event. False when the
/// headers asked for nothing (the caller delivers it plainly).
pub fn deliver_routed(
    shared: &Shared,
    from: FromRoute<'_>,
    account: &Arc<Account>,
    matches: &Matches,
    msg: &Message<'_>,
    queues: &[u8],
    out: &mut Deliveries,
) -> bool {
    let Some(header_len) = msg.header_len else {
        return false;
    };
    let block = &msg.message[..header_len];
    let (request, why) = MsgTrace::request(block, msg.message.len(), account, out.trace, false);
    if let Some(why) = why {
        error!("{} - {why}", from.desc);
    }
    let mut trace = match request {
        Request::None => return false,
        Request::Drop => return true,
        Request::Disable => {
            let mut disabled = msgtrace::disabled(block);
            let disabled_len = disabled.len();
            disabled.extend_from_slice(&msg.message[header_len..]);
            let msg = Message {
                header_len: Some(disabled_len),
                message: &disabled,
                ..*msg
            };
            deliver::deliver_routed(account, matches, &msg, queues, out);
            return true;
        }
        Request::Trace(trace) => trace,
    };
    trace.ingress(
        from.kind,
        from.cid,
        from.name.to_string(),
        &account.name,
        msg.subject,
    );
    let log = out.trace;
    out.trace = true;
    out.msg_trace = Some(trace);
    deliver::deliver_routed(account, matches, msg, queues, out);
    out.trace = log;
    if let Some(trace) = out.msg_trace.take() {
        trace.finish(|t| shared.sys.send(SysInput::Trace(t)));
    }
    true
}
