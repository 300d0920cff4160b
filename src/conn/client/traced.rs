//! A publish whose headers may ask for a trace (`Nats-Trace-Dest`, or a W3C `traceparent` in
//! an account with `msg_trace`): decided as nats-server decides it, delivered like any other
//! with each delivery noted, and the trace event handed to the system services to publish.

use std::borrow::Cow;

use bytes::Bytes;
use tracing::error;

use crate::engine::deliver::{self, Message};
use crate::engine::msgtrace::{self, kind, MsgTrace, Request};
use crate::proto::error::ProtocolError;
use crate::state::events::SysInput;

use super::Client;

impl Client {
    /// [`Client::handle_pub`] for a message whose headers may ask for a trace: the trace is
    /// decided first (a destination the client may not publish to refuses the message, as
    /// nats-server does), then the publish is checked as any other; refused, its event carries
    /// the error on its ingress.
    #[cold]
    pub(super) fn handle_traced_pub(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: usize,
        message: &[u8],
    ) -> Result<(), ProtocolError> {
        let block = &message[..header_len];
        let (request, why) =
            MsgTrace::request(block, message.len(), &self.account, self.out.trace, true);
        if let Some(why) = why {
            error!("{} - {why}", self.desc);
        }
        let (message, header_len, trace) = match request {
            Request::None => (Cow::Borrowed(message), header_len, None),
            Request::Drop => return Ok(()),
            Request::Disable => {
                let mut disabled = msgtrace::disabled(block);
                let disabled_len = disabled.len();
                disabled.extend_from_slice(&message[header_len..]);
                // nats-server counts the message with its added header.
                self.in_bytes += (disabled.len() - message.len()) as u64;
                (Cow::Owned(disabled), disabled_len, None)
            }
            Request::Trace(mut trace) => {
                if self.publish_refused(trace.dest.as_bytes()) {
                    let dest = Bytes::from(std::mem::take(&mut trace.dest));
                    return Err(ProtocolError::PublishViolation(dest));
                }
                let name = self.conn.meta().name;
                let account = &self.account.name;
                trace.ingress(kind::CLIENT, self.conn.cid, name, account, subject);
                (Cow::Borrowed(message), header_len, Some(trace))
            }
        };
        if let Err(err) = self.check_publish(subject, reply) {
            if let Some(mut trace) = trace {
                trace.ingress_error(err.to_string());
                self.shared.sys.send(SysInput::Trace(trace));
            }
            return Err(err);
        }
        self.send_ok();
        match trace {
            Some(trace) => self.route_traced(subject, reply, header_len, &message, trace),
            None => self.route(subject, reply, Some(header_len), &message),
        }
        Ok(())
    }

    /// [`Client::route`] for a traced message: the deliveries are noted as they happen, and
    /// the event goes to the system services to be published.
    fn route_traced(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        header_len: usize,
        message: &[u8],
        mut trace: Box<MsgTrace>,
    ) {
        let mapped = self.account.map_subject(subject);
        if let Some(to) = &mapped {
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
        let only = trace.only;
        let skip = (!self.opts.echo).then_some(&self.conn);
        let log = self.out.trace;
        self.out.trace = true;
        self.out.msg_trace = Some(trace);
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
}
