//! Traced messages (`Nats-Trace-Dest`) arriving over a route or a leafnode connection: delivered
//! as any routed message, with each delivery noted, and the event (this server's hop) handed
//! to the system services.

use std::sync::Arc;

use crate::engine::account::{Account, Matches};
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::msgtrace::MsgTrace;
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
}

/// Delivers a routed message whose headers ask for a trace, as
/// [`deliver::deliver_routed`] does, and sends this server's trace event. False when the
/// headers did not hold a usable trace request (the caller delivers it plainly).
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
    let Some(mut trace) =
        MsgTrace::from_headers(block, msg.message.len(), account.clone(), out.trace)
    else {
        return false;
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
    out.msg_trace = Some(Box::new(trace));
    deliver::deliver_routed(account, matches, msg, queues, out);
    out.trace = log;
    if let Some(trace) = out.msg_trace.take() {
        trace.finish(|t| shared.sys.send(SysInput::Trace(t)));
    }
    true
}
