//! Message trace events (`Nats-Trace-Dest`) published in nats-server's JSON shape: the server
//! block, the request's headers and size, the route hops taken, and the events in order.

use serde_json::{json, Map, Value};

use super::Sys;
use crate::engine::msgtrace::{MsgTrace, TraceEvent};
use crate::monitor::rfc3339;

impl Sys {
    /// Publishes `trace`'s event to its destination, in its account.
    pub(super) fn publish_trace(&mut self, trace: &MsgTrace) {
        let headers: Map<String, Value> = trace
            .headers
            .iter()
            .map(|(name, values)| (name.clone(), json!(values)))
            .collect();
        let mut event = json!({
            "server": self.server_info(),
            "request": {"header": headers, "msgsize": trace.size},
            "events": trace.events.iter().map(event_json).collect::<Vec<_>>(),
        });
        if trace.hops > 0 {
            event["hops"] = json!(trace.hops);
        }
        if let Some(payload) = Sys::encode(&event) {
            self.send(&trace.account, &trace.dest, &payload);
        }
    }
}

/// One event, with nats-server's field names; empty optional fields left out.
fn event_json(event: &TraceEvent) -> Value {
    let mut doc = match event {
        TraceEvent::Ingress {
            at,
            kind,
            cid,
            name,
            account,
            subject,
            error,
        } => json!({"type": "in", "ts": rfc3339(*at), "kind": kind, "cid": cid,
                    "name": name, "acc": account, "subj": subject, "error": error}),
        TraceEvent::Mapping { at, to } => json!({"type": "sm", "ts": rfc3339(*at), "to": to}),
        TraceEvent::StreamExport { at, account, to } => {
            json!({"type": "se", "ts": rfc3339(*at), "acc": account, "to": to})
        }
        TraceEvent::JetStream {
            at,
            stream,
            subject,
            error,
        } => json!({"type": "js", "ts": rfc3339(*at), "stream": stream, "subject": subject,
                    "error": error}),
        TraceEvent::ServiceImport {
            at,
            account,
            from,
            to,
        } => json!({"type": "si", "ts": rfc3339(*at), "acc": account, "from": from, "to": to}),
        TraceEvent::Egress {
            at,
            kind,
            cid,
            name,
            hop,
            account,
            subscription,
            queue,
            error,
        } => json!({"type": "eg", "ts": rfc3339(*at), "kind": kind, "cid": cid, "name": name,
                    "hop": hop, "acc": account, "sub": subscription, "queue": queue,
                    "error": error}),
    };
    if let Value::Object(map) = &mut doc {
        map.retain(|_, v| !(v.is_null() || v == ""));
    }
    doc
}
