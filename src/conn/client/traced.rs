//! A traced message (`Nats-Trace-Dest`) from a client: delivered like any other, with each
//! delivery noted, and the trace event handed to the system services to publish.

use crate::engine::deliver::{self, Message};
use crate::engine::msgtrace::{kind, MsgTrace};
use crate::proto::error::ProtocolError;
use crate::state::events::SysInput;

use super::Client;

impl Client {
    /// [`Client::route`] for a message whose headers ask for a trace (`Nats-Trace-Dest`):
    /// the deliveries are noted as they happen, and the event goes to the system services to
    /// be published.
    #[cold]
    pub(super) fn route_traced(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: usize,
        message: &[u8],
    ) {
        // A destination that is not a publish subject: delivered untraced (held back, with
        // no event, when trace-only).
        let mut trace = MsgTrace::from_headers(
            &message[..header_len],
            message.len(),
            self.account.clone(),
            self.out.trace,
        );
        let name = self.conn.meta().name;
        let account = &self.account.name;
        if let Some(trace) = &mut trace {
            trace.ingress(kind::CLIENT, self.conn.cid, name, account, subject);
        }
        let mapped = self.account.map_subject(subject);
        if let (Some(trace), Some(to)) = (&mut trace, &mapped) {
            trace.mapped(to);
        }
        let subject = mapped.as_deref().unwrap_or(subject);
        let matches = self.cache.lookup(&self.account, subject);
        let msg = Message {
            subject,
            reply,
            header_len: Some(header_len),
            message,
        };
        let only = trace.as_ref().is_some_and(|t| t.only);
        let skip = (!self.opts.echo).then_some(&self.conn);
        let log = self.out.trace;
        if let Some(trace) = trace {
            self.out.trace = true;
            self.out.msg_trace = Some(Box::new(trace));
        }
        let delivered = deliver::deliver_all(&self.account, &matches, &msg, &mut self.out, skip);
        self.out.trace = log;
        let trace = self.out.msg_trace.take();
        if !delivered && !only && self.opts.no_responders {
            if let Some(reply) = reply {
                self.send_no_responders(subject, reply);
            }
        }
        if let Some(trace) = trace {
            trace.finish(|t| self.shared.sys.send(SysInput::Trace(t)));
        }
    }

    /// A traced message refused where it came in (publish permissions): the event carries
    /// the error on its ingress, as nats-server's does.
    #[cold]
    pub(super) fn trace_refused(
        &mut self,
        subject: &[u8],
        header_block: &[u8],
        size: usize,
        err: &ProtocolError,
    ) {
        let Some(mut trace) =
            MsgTrace::from_headers(header_block, size, self.account.clone(), self.out.trace)
        else {
            return;
        };
        let name = self.conn.meta().name;
        trace.ingress(
            kind::CLIENT,
            self.conn.cid,
            name,
            &self.account.name,
            subject,
        );
        trace.ingress_error(err.to_string());
        if trace.has_dest() {
            self.shared.sys.send(SysInput::Trace(Box::new(trace)));
        }
    }
}
