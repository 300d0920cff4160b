//! Every error a client can cause, with nats-server's exact `-ERR` text and whether the
//! connection is closed afterwards.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

use crate::proto::subject::go_quote;

/// A protocol error caused by a client. `Display` is the text inside `-ERR '...'` (empty for the
/// errors nats-server answers by closing the connection without a word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// An operation name the server does not know, or a payload not followed by CRLF.
    UnknownOperation,
    /// Missing or wrong credentials, or an operation before CONNECT when auth is required.
    AuthorizationViolation,
    /// No CONNECT arrived within `auth_timeout`.
    AuthenticationTimeout,
    /// The user's credentials (its JWT, or its connect-time window) ran out.
    AuthenticationExpired,
    /// The user's account has as many connections as its JWT allows.
    MaxAccountConnections,
    /// The size field of PUB/HPUB is above `max_payload`.
    MaxPayload,
    /// A control line longer than `max_control_line`.
    MaxControlLine,
    /// `max_connections` reached when this connection was accepted.
    MaxConnections,
    /// `ping_max` PINGs went unanswered.
    StaleConnection,
    /// CONNECT asked for a protocol version the server does not speak.
    InvalidClientProtocol,
    /// CONNECT set `no_responders` without `headers`.
    NoRespondersRequiresHeaders,
    /// A SUB with an invalid subject or queue; the connection stays open.
    InvalidSubject,
    /// A PUB to a non-literal subject in pedantic mode; the message is still routed.
    InvalidPublishSubject,
    /// `max_subscriptions` reached; the SUB is refused and the connection stays open.
    MaxSubscriptions,
    /// A PUB/HPUB to a subject the user may not publish to; the message is dropped and the
    /// connection stays open.
    PublishViolation(Bytes),
    /// A PUB/HPUB whose reply subject is one the server reserves for itself (see
    /// `subject::is_reserved_reply`); the message is dropped and the connection stays open.
    ReplyViolation(Bytes),
    /// A SUB the user's permissions refuse; the connection stays open.
    SubscriptionViolation {
        /// The subject of the SUB.
        subject: Bytes,
        /// Its queue group.
        queue: Option<Bytes>,
    },
    /// A server connection refused with an `-ERR` of nats-server's own words (a route from the
    /// wrong cluster, a client on the route port); the connection is closed.
    Refused(Cow<'static, str>),
    /// Arguments nats-server cannot parse (a bad size, a missing sid, HPUB without headers,
    /// invalid CONNECT JSON): it closes the connection without an `-ERR`. The text is for the log.
    Malformed(&'static str),
}

impl ProtocolError {
    /// Whether the server closes the connection after this error.
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            ProtocolError::InvalidSubject
                | ProtocolError::InvalidPublishSubject
                | ProtocolError::MaxSubscriptions
                | ProtocolError::PublishViolation(_)
                | ProtocolError::ReplyViolation(_)
                | ProtocolError::SubscriptionViolation { .. }
        )
    }

    /// The `-ERR` text sent to the client, or `None` when the connection is closed silently.
    pub fn client_text(&self) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed(match self {
            ProtocolError::UnknownOperation => "Unknown Protocol Operation",
            ProtocolError::AuthorizationViolation => "Authorization Violation",
            ProtocolError::AuthenticationTimeout => "Authentication Timeout",
            ProtocolError::AuthenticationExpired => "User Authentication Expired",
            ProtocolError::MaxAccountConnections => "maximum account active connections exceeded",
            ProtocolError::MaxPayload => "Maximum Payload Violation",
            ProtocolError::MaxControlLine => "maximum control line exceeded",
            ProtocolError::MaxConnections => "maximum connections exceeded",
            ProtocolError::StaleConnection => "Stale Connection",
            ProtocolError::InvalidClientProtocol => "invalid client protocol",
            ProtocolError::NoRespondersRequiresHeaders => "no responders requires headers support",
            ProtocolError::InvalidSubject => "Invalid Subject",
            ProtocolError::InvalidPublishSubject => "Invalid Publish Subject",
            ProtocolError::MaxSubscriptions => "maximum subscriptions exceeded",
            ProtocolError::PublishViolation(subject) => {
                return Some(Cow::Owned(format!(
                    "Permissions Violation for Publish to {}",
                    go_quote(subject)
                )))
            }
            ProtocolError::ReplyViolation(reply) => {
                return Some(Cow::Owned(format!(
                    "Permissions Violation for Publish with Reply of {}",
                    go_quote(reply)
                )))
            }
            ProtocolError::SubscriptionViolation { subject, queue } => {
                return Some(Cow::Owned(subscription_violation(
                    subject,
                    queue.as_deref(),
                    None,
                )))
            }
            ProtocolError::Refused(text) => return Some(text.clone()),
            ProtocolError::Malformed(_) => return None,
        }))
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Malformed(why) => f.write_str(why),
            other => f.write_str(&other.client_text().unwrap_or_default()),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// `Permissions Violation for Subscription to "s"[ using queue "q"][ (sid "n")]`: the last part
/// when a reload takes away a subscription the client already had.
pub fn subscription_violation(subject: &[u8], queue: Option<&[u8]>, sid: Option<&[u8]>) -> String {
    let mut text = format!(
        "Permissions Violation for Subscription to {}",
        go_quote(subject)
    );
    if let Some(queue) = queue {
        text.push_str(&format!(" using queue {}", go_quote(queue)));
    }
    if let Some(sid) = sid {
        text.push_str(&format!(" (sid {})", go_quote(sid)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subject_and_subscription_limits_keep_the_connection() {
        assert!(!ProtocolError::InvalidSubject.closes_connection());
        assert!(!ProtocolError::InvalidPublishSubject.closes_connection());
        assert!(!ProtocolError::MaxSubscriptions.closes_connection());
        assert!(ProtocolError::MaxPayload.closes_connection());
        assert!(ProtocolError::Malformed("x").closes_connection());
        assert_eq!(ProtocolError::Malformed("x").client_text(), None);
        assert!(!ProtocolError::PublishViolation(Bytes::from_static(b"x")).closes_connection());
    }

    #[test]
    fn permission_texts_as_nats_server_sends_them() {
        assert_eq!(
            ProtocolError::PublishViolation(Bytes::from_static(b"foo.bad")).to_string(),
            r#"Permissions Violation for Publish to "foo.bad""#
        );
        assert_eq!(
            ProtocolError::ReplyViolation(Bytes::from_static(b"_R_.x")).to_string(),
            r#"Permissions Violation for Publish with Reply of "_R_.x""#
        );
        assert!(!ProtocolError::ReplyViolation(Bytes::from_static(b"_R_.x")).closes_connection());
        let sub = |q: Option<&'static [u8]>| ProtocolError::SubscriptionViolation {
            subject: Bytes::from_static(b"q.a"),
            queue: q.map(Bytes::from_static),
        };
        assert_eq!(
            sub(None).to_string(),
            r#"Permissions Violation for Subscription to "q.a""#
        );
        assert_eq!(
            sub(Some(b"other")).to_string(),
            r#"Permissions Violation for Subscription to "q.a" using queue "other""#
        );
        assert_eq!(
            subscription_violation(b"foo.*", Some(b"q"), Some(b"3")),
            r#"Permissions Violation for Subscription to "foo.*" using queue "q" (sid "3")"#
        );
        assert_eq!(
            ProtocolError::MaxControlLine.to_string(),
            "maximum control line exceeded"
        );
    }
}
