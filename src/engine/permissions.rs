//! What an authenticated user may publish and subscribe to: `permissions { publish, subscribe,
//! allow_responses }`, checked as nats-server checks them (`client.go: canSubscribe,
//! pubAllowedFullCheck, checkDenySub`). Pure: no I/O, no clock (callers pass the time).
//!
//! Lists are short and matched by brute force; the connection caches publish decisions per
//! subject, so a publisher with permissions pays one hash lookup per message.

use std::time::Duration;

use crate::proto::subject;
pub use crate::proto::subject::go_quote;

/// nats-server's `DEFAULT_ALLOW_RESPONSE_MAX_MSGS`.
pub const DEFAULT_RESPONSE_MAX: u32 = 1;
/// nats-server's `DEFAULT_ALLOW_RESPONSE_EXPIRATION`.
pub const DEFAULT_RESPONSE_EXPIRES: Duration = Duration::from_secs(120);

/// A user's permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `publish`; `None` allows every subject.
    pub publish: Option<SubjectPermission>,
    /// `subscribe`; `None` allows every subject.
    pub subscribe: Option<SubjectPermission>,
    /// `allow_responses`: publishing to the reply subjects of messages received.
    pub response: Option<ResponsePermission>,
}

/// `allow` and `deny` lists; deny wins. Each entry is a subject filter, optionally followed by a
/// space and a queue group (`"foo.> workers"`, subscribe only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectPermission {
    /// `None` allows everything not denied; an empty list allows nothing.
    pub allow: Option<Vec<Entry>>,
    /// Subjects refused even when allowed.
    pub deny: Vec<Entry>,
}

/// One list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The subject filter.
    pub subject: String,
    /// The queue group (may hold wildcards), for queue-group-specific subscribe permissions.
    pub queue: Option<String>,
}

/// `allow_responses { max, expires }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePermission {
    /// Responses allowed per request received; 0 for no limit.
    pub max: u32,
    /// How long after the request a response is allowed; zero for no limit.
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        ResponsePermission {
            max: DEFAULT_RESPONSE_MAX,
            expires: DEFAULT_RESPONSE_EXPIRES,
        }
    }
}

impl Entry {
    /// Reads `"subject"` or `"subject queue"`; `None` when the subject or queue is invalid.
    pub fn parse(text: &str) -> Option<Entry> {
        let mut parts = text.split_ascii_whitespace();
        let subject = parts.next()?;
        let queue = parts.next();
        if parts.next().is_some() || !subject::is_valid_filter(subject.as_bytes()) {
            return None;
        }
        Some(Entry {
            subject: subject.to_string(),
            queue: queue.map(str::to_string),
        })
    }

    /// Matches the way nats-server's permission sublists do: the tested subject's `*` and `>`
    /// are plain tokens, so `foo.*` in a list covers `SUB foo.>` but `foo.>` does not cover
    /// `SUB >`.
    fn covers(&self, subject: &[u8]) -> bool {
        subject::matches(self.subject.as_bytes(), subject)
    }

    fn covers_queue(&self, queue: &[u8]) -> bool {
        self.queue
            .as_deref()
            .is_some_and(|q| subject::matches(q.as_bytes(), queue))
    }
}

impl Permissions {
    /// Whether the publish lists allow `subject` (reply tracking aside).
    pub fn can_publish(&self, subject: &[u8]) -> bool {
        let Some(publish) = &self.publish else {
            return true;
        };
        let allowed = match &publish.allow {
            Some(allow) => allow.iter().any(|e| e.queue.is_none() && e.covers(subject)),
            None => true,
        };
        allowed
            && !publish
                .deny
                .iter()
                .any(|e| e.queue.is_none() && e.covers(subject))
    }

    /// Whether publishing is restricted at all (otherwise no check is needed).
    pub fn restricts_publish(&self) -> bool {
        self.publish.is_some()
    }

    /// Whether `SUB subject [queue]` is allowed: a plain entry allows any subscription; when
    /// queue entries match too, the queue must be one of theirs. Deny works the same way round.
    pub fn can_subscribe(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        let Some(sub) = &self.subscribe else {
            return true;
        };
        let mut allowed = true;
        if let Some(allow) = &sub.allow {
            allowed = list_matches(allow, subject, queue);
        }
        if allowed && !sub.deny.is_empty() {
            allowed = !list_matches(&sub.deny, subject, queue);
        }
        allowed
    }

    /// Whether a subscription to `filter` may match subjects the deny list refuses, so that
    /// deliveries to this connection must be checked one by one (nats-server's `mperms`).
    pub fn needs_delivery_filter(&self, filter: &[u8]) -> bool {
        self.subscribe
            .as_ref()
            .is_some_and(|s| s.deny.iter().any(|e| e.queue.is_none()))
            && subject::has_wildcard(filter)
    }

    /// Whether a message on the literal `subject` may be delivered (the deny list's plain
    /// entries; queue entries only refuse subscriptions).
    pub fn may_receive(&self, subject: &[u8]) -> bool {
        match &self.subscribe {
            Some(s) => !s
                .deny
                .iter()
                .any(|e| e.queue.is_none() && subject::matches(e.subject.as_bytes(), subject)),
            None => true,
        }
    }
}

/// nats-server's `Match` on a permission sublist: plain entries decide, unless the SUB has a
/// queue and queue entries match, in which case the queue alone decides.
fn list_matches(list: &[Entry], subject: &[u8], queue: Option<&[u8]>) -> bool {
    let plain = list.iter().any(|e| e.queue.is_none() && e.covers(subject));
    let mut queued = list
        .iter()
        .filter(|e| e.queue.is_some() && e.covers(subject))
        .peekable();
    match queue {
        // The queue appears in the list: allow (or, for deny, refuse), whatever plain entries say.
        Some(q) if queued.peek().is_some() => queued.any(|e| e.covers_queue(q)),
        _ => plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<Entry> {
        items.iter().map(|s| Entry::parse(s).unwrap()).collect()
    }

    fn perms(
        pub_allow: Option<&[&str]>,
        pub_deny: &[&str],
        sub_allow: Option<&[&str]>,
        sub_deny: &[&str],
    ) -> Permissions {
        Permissions {
            publish: Some(SubjectPermission {
                allow: pub_allow.map(list),
                deny: list(pub_deny),
            }),
            subscribe: Some(SubjectPermission {
                allow: sub_allow.map(list),
                deny: list(sub_deny),
            }),
            response: None,
        }
    }

    /// The user `a` of the configuration observed against nats-server 2.15.1.
    fn observed() -> Permissions {
        perms(
            Some(&["foo.*", "_INBOX.>"]),
            &["foo.bad"],
            Some(&["foo.>", "bar.*", "q.> grp", "qq.*"]),
            &["foo.secret", "qq.x g1"],
        )
    }

    #[test]
    fn publish_allow_and_deny() {
        let p = observed();
        assert!(p.can_publish(b"foo.ok"));
        assert!(p.can_publish(b"_INBOX.a.b"));
        assert!(!p.can_publish(b"foo.bad"));
        assert!(!p.can_publish(b"bar.x"));
        assert!(!p.can_publish(b"foo.ok.x"));
        let deny_only = perms(None, &["secret.>"], None, &[]);
        assert!(deny_only.can_publish(b"anything"));
        assert!(!deny_only.can_publish(b"secret.x"));
        assert!(Permissions::default().can_publish(b"x"));
    }

    #[test]
    fn subscribe_as_nats_server_decides() {
        let p = observed();
        let sub = |s: &str, q: Option<&str>| p.can_subscribe(s.as_bytes(), q.map(str::as_bytes));
        assert!(!sub(">", None));
        assert!(sub("foo.*", None));
        assert!(!sub("foo.secret", None));
        assert!(sub("bar.x", None));
        assert!(!sub("q.a", None));
        assert!(sub("q.a", Some("grp")));
        assert!(!sub("q.a", Some("other")));
        assert!(sub("qq.x", None));
        assert!(!sub("qq.x", Some("g1")));
        assert!(sub("qq.x", Some("g2")));
        assert!(sub("foo.>", None));
        // The wildcard quirk: allow `foo.*` covers `SUB foo.>`, nothing covers `*.bar`.
        let q = perms(None, &[], Some(&["foo.*"]), &["foo.x"]);
        assert!(q.can_subscribe(b"foo.>", None));
        assert!(!q.can_subscribe(b"*.bar", None));
    }

    #[test]
    fn delivery_filter_for_wildcards_under_a_deny_list() {
        let p = observed();
        assert!(p.needs_delivery_filter(b"foo.>"));
        assert!(!p.needs_delivery_filter(b"foo.ok"));
        assert!(!p.may_receive(b"foo.secret"));
        assert!(p.may_receive(b"foo.ok"));
        // Queue-specific denials refuse subscriptions only.
        assert!(p.may_receive(b"qq.x"));
    }

    #[test]
    fn entries_and_quoting() {
        assert_eq!(Entry::parse("foo.> q").unwrap().queue.as_deref(), Some("q"));
        assert!(Entry::parse("foo..bar").is_none());
        assert!(Entry::parse("a b c").is_none());
        assert!(Entry::parse("").is_none());
        assert_eq!(go_quote(b"foo.bar"), "\"foo.bar\"");
        assert_eq!(go_quote(b"a\"b\\\x01"), "\"a\\\"b\\\\\\x01\"");
    }
}
