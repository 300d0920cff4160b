//! Leafnodes as the engine sees them: a leafnode connection is bound to one account; it is a
//! delivery target (one `LMSG` per message, naming the queue groups it was chosen for), its
//! interest (`LS+`) lives in that account's sublist as subscriptions whose target is the leaf,
//! and it is told of the account's interest as nats-server tells it (`updateSmap`):
//!
//! - a leaf whose other end is a spoke of ours (we are its hub) hears of every subscription of
//!   the account: clients', routes', other leafnodes' (never its own, nor one that came from
//!   its own cluster);
//! - a leaf whose other end is our hub hears only of our clients' interest and of the
//!   interest of our own spokes, never of routes' (each server of a cluster links on its own).
//!
//! Each leaf counts what it was told by subject and queue group (`told`), so that it hears of a
//! subject's first subscriber and its last, and of a queue group's weight on every change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};

use super::account::Account;
use super::connection::Connection;
use super::outbound::Appended;
use super::permissions::{Entry, Permissions, SubjectPermission};
use super::subscription::{Subscription, Target};
use crate::proto::leaf as wire;
use crate::proto::route::Interest;

/// The subject prefix of service replies, which a spoke gets from routes (`isServiceReply`).
const SERVICE_REPLY_PREFIX: &[u8] = b"_R_.";

/// One leafnode connection.
#[derive(Debug)]
pub struct Leaf {
    /// The connection: outbound queue, counters, log prefix.
    pub conn: Arc<Connection>,
    /// The local account the connection is bound to.
    pub account: Arc<Account>,
    /// The other server's id and name.
    pub remote_id: String,
    pub remote_name: String,
    /// The other server's cluster (its name outside a cluster): the origin of what it sends,
    /// and where nothing that came from there is sent back.
    pub remote_cluster: Bytes,
    /// The account the other end binds (shown by `/leafz`).
    pub remote_account: String,
    /// We dialed it.
    pub solicited: bool,
    /// The other end is our hub (we dialed it without `hub: true`, or it dialed us saying it is
    /// the hub).
    pub spoke: bool,
    /// `deny_exports` (publish) and `deny_imports` (subscribe) of a remote: what is not sent
    /// there, and what is not taken from there.
    permissions: Option<Permissions>,
    /// The other end's interest, by subject and queue group. Taken before the account's
    /// sublist lock, never after.
    remote: Mutex<HashMap<InterestKey, Arc<Subscription>>>,
    /// What this leaf has been told, by subject and queue group, with how many subscriptions
    /// stand behind each. Guarded by the account's leaf list lock as well.
    told: Mutex<HashMap<InterestKey, u32>>,
    /// The connection is being closed: it hears of nothing more.
    closed: AtomicBool,
    /// Subscriptions the other end has with us (for monitoring).
    pub remote_subs: AtomicU32,
    /// `isolate_leafnode_interest` (our `leafnodes` block's, or the remote's that we dialed),
    /// or asked for by the other end (`request_isolation`): the other end hears of no interest
    /// that came from a leafnode (ours, or a route's leaf-origin interest). As in nats-server
    /// 2.15.1, loop detection subjects already there when the link comes up are told all the
    /// same when the other end is our hub; later ones are not.
    pub isolated: bool,
}

/// A subject and queue group.
type InterestKey = (Bytes, Option<Bytes>);

impl Leaf {
    /// A leafnode connection bound to `account`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conn: Arc<Connection>,
        account: Arc<Account>,
        remote_id: &str,
        remote_name: &str,
        remote_cluster: &str,
        remote_account: &str,
        solicited: bool,
        spoke: bool,
        deny: (&[String], &[String]),
    ) -> Leaf {
        let (deny_exports, deny_imports) = deny;
        let list = |subjects: &[String]| -> Option<SubjectPermission> {
            (!subjects.is_empty()).then(|| SubjectPermission {
                allow: None,
                deny: subjects.iter().filter_map(|s| Entry::parse(s)).collect(),
            })
        };
        let permissions =
            (!deny_exports.is_empty() || !deny_imports.is_empty()).then(|| Permissions {
                publish: list(deny_exports),
                subscribe: list(deny_imports),
                response: None,
            });
        Leaf {
            conn,
            account,
            remote_id: remote_id.into(),
            remote_name: remote_name.into(),
            remote_cluster: Bytes::copy_from_slice(remote_cluster.as_bytes()),
            remote_account: remote_account.into(),
            solicited,
            spoke,
            permissions,
            remote: Mutex::new(HashMap::new()),
            told: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            remote_subs: AtomicU32::new(0),
            isolated: false,
        }
    }

    /// Whether a message on `subject` may be sent to the other end (`deny_exports`).
    pub fn exports(&self, subject: &[u8]) -> bool {
        self.permissions
            .as_ref()
            .map_or(true, |p| p.publish.is_none() || p.can_publish(subject))
    }

    /// Whether messages on `subject` are taken from the other end, and so whether it is told
    /// of our interest in it (`deny_imports`).
    pub fn imports(&self, subject: &[u8]) -> bool {
        self.permissions.as_ref().map_or(true, |p| {
            p.subscribe.is_none() || p.can_subscribe(subject, None)
        })
    }

    /// Whether the other end's interest in `subject` is taken: not when `deny_exports` covers
    /// it (we would not send it those messages anyway).
    fn takes_interest(&self, subject: &[u8]) -> bool {
        let Some(perms) = &self.permissions else {
            return true;
        };
        let Some(deny) = &perms.publish else {
            return true;
        };
        let as_subscribe = Permissions {
            publish: None,
            subscribe: Some(deny.clone()),
            response: None,
        };
        as_subscribe.can_subscribe(subject, None)
    }

    /// Whether a message that came from `from` (a route, a leafnode, or a client when both are
    /// `None`) goes on to this leaf: never back where it came from, a spoke only what came
    /// from a client or one of our own spokes (or a service reply from a route).
    pub fn takes_from(
        &self,
        from_route: bool,
        from_leaf: Option<&Leaf>,
        origin: Option<&[u8]>,
        subject: &[u8],
    ) -> bool {
        if let Some(from) = from_leaf {
            if std::ptr::eq(from, self) || (from.spoke && self.spoke) {
                return false;
            }
        }
        if origin.is_some_and(|o| o == &self.remote_cluster[..]) {
            return false;
        }
        if from_route && self.spoke && !subject.starts_with(SERVICE_REPLY_PREFIX) {
            return false;
        }
        self.exports(subject)
    }

    /// `LS+`: the other end has interest (a queue group's weight replaces the old one).
    pub fn add_interest(self: &Arc<Self>, interest: &Interest<'_>) {
        if !self.takes_interest(interest.subject) {
            return;
        }
        let key = (
            Bytes::copy_from_slice(interest.subject),
            interest.queue.map(Bytes::copy_from_slice),
        );
        let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = remote.get(&key) {
            existing.weight.store(interest.weight, Ordering::Relaxed);
            return;
        }
        let mut sub = Subscription::with_target(
            Target::Leaf(self.clone()),
            key.0.clone(),
            key.1.clone(),
            Bytes::new(),
        );
        sub.origin = Some(self.remote_cluster.clone());
        let sub = Arc::new(sub);
        sub.weight.store(interest.weight, Ordering::Relaxed);
        remote.insert(key, sub.clone());
        self.remote_subs
            .store(remote.len() as u32, Ordering::Relaxed);
        drop(remote);
        self.account.subscribe(sub);
    }

    /// `LS-`: the other end lost interest (unknown interest is ignored).
    pub fn remove_interest(&self, interest: &Interest<'_>) {
        let key = (
            Bytes::copy_from_slice(interest.subject),
            interest.queue.map(Bytes::copy_from_slice),
        );
        let removed = {
            let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
            let removed = remote.remove(&key);
            self.remote_subs
                .store(remote.len() as u32, Ordering::Relaxed);
            removed
        };
        if let Some(sub) = removed {
            self.account.unsubscribe(&sub);
        }
    }

    /// Forgets everything the other end said it wanted (the connection closed).
    pub fn purge(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let all: Vec<Arc<Subscription>> = self
            .remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        self.remote_subs.store(0, Ordering::Relaxed);
        self.account.unsubscribe_all(&all);
    }

    /// The subjects of the other end's subscriptions, for `/leafz?subs=1`.
    pub fn remote_subjects(&self) -> Vec<String> {
        self.remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|(s, _)| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// Whether this leaf hears of `sub` (see the module's rules); `any_loop_detection`: of a
    /// loop detection subject even when isolated.
    fn hears_of(&self, sub: &Subscription, any_loop_detection: bool) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let loop_detection = sub
            .subject
            .starts_with(wire::LOOP_DETECTION_PREFIX.as_bytes());
        match &sub.target {
            Target::Leaf(other) => {
                if std::ptr::eq(&**other, self) || (self.spoke && other.spoke) {
                    return false;
                }
            }
            Target::Route(_) if self.spoke => return false,
            Target::Route(_) | Target::Client(_) => {}
            Target::Internal(_) => {
                if !sub.announced() {
                    return false;
                }
            }
        }
        let leaf_origin = match &sub.target {
            Target::Leaf(_) => true,
            Target::Route(_) => sub.origin.is_some(),
            Target::Client(_) | Target::Internal(_) => false,
        };
        if leaf_origin && self.isolated && !(loop_detection && any_loop_detection) {
            return false;
        }
        if sub
            .origin
            .as_ref()
            .is_some_and(|o| o[..] == self.remote_cluster[..])
        {
            return false;
        }
        loop_detection || self.imports(&sub.subject)
    }

    /// Counts `sub` in (`added`) or out of what this leaf was told, into `out` the `LS+`/`LS-`
    /// that follows. Called under the account's leaf list lock.
    pub(crate) fn count(&self, sub: &Subscription, added: bool, out: &mut BytesMut) {
        // A loop detection subject told when the link came up is taken back all the same.
        self.tally(sub, added, !added, out);
    }

    /// Counts in `sub`, one of the account's subscriptions when the link comes up.
    pub(crate) fn count_initial(&self, sub: &Subscription, out: &mut BytesMut) {
        self.tally(sub, true, self.spoke, out);
    }

    fn tally(&self, sub: &Subscription, added: bool, any_loop_detection: bool, out: &mut BytesMut) {
        if !self.hears_of(sub, any_loop_detection) {
            return;
        }
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        let key = (sub.subject.clone(), sub.queue.clone());
        // A queue group counts its members' weights: a route's or a leaf's stands for many.
        let weight = match (&sub.target, &sub.queue) {
            (Target::Route(_) | Target::Leaf(_), Some(_)) => {
                sub.weight.load(Ordering::Relaxed).max(1)
            }
            _ => 1,
        };
        if added {
            let n = told.entry(key).or_insert(0);
            *n += weight;
            match &sub.queue {
                Some(q) => wire::encode_sub(out, &sub.subject, Some((q, *n))),
                None if *n == weight => wire::encode_sub(out, &sub.subject, None),
                None => {}
            }
        } else if let Some(n) = told.get_mut(&key) {
            *n = n.saturating_sub(weight);
            match (*n, &sub.queue) {
                (0, queue) => {
                    told.remove(&key);
                    wire::encode_unsub(out, &sub.subject, queue.as_deref());
                }
                (n, Some(q)) => wire::encode_sub(out, &sub.subject, Some((q, n))),
                (_, None) => {}
            }
        }
    }

    /// Appends a frame and wakes the writer.
    pub fn send(&self, encode: impl FnOnce(&mut BytesMut)) {
        if self.conn.outbound.append(None, encode) == Appended::ScheduleFlush {
            self.conn.outbound.wake_writer();
        }
    }
}

/// Every live leafnode connection (for monitoring and shutdown), by cid.
#[derive(Debug, Default)]
pub struct Leafs {
    by_cid: RwLock<HashMap<u64, Arc<Leaf>>>,
}

impl Leafs {
    /// Registers a leaf connection.
    pub fn add(&self, leaf: Arc<Leaf>) {
        self.by_cid
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(leaf.conn.cid, leaf);
    }

    /// Forgets a leaf connection.
    pub fn remove(&self, leaf: &Leaf) {
        self.by_cid
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&leaf.conn.cid);
    }

    /// Every leaf connection, by cid.
    pub fn all(&self) -> Vec<Arc<Leaf>> {
        let mut all: Vec<Arc<Leaf>> = self
            .by_cid
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|l| l.conn.cid);
        all
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_cid.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
