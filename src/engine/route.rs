//! Routes as the engine sees them: another server of the cluster is a delivery target (one
//! `RMSG` per message, naming the queue groups it was chosen for), and the interest it sent
//! (`RS+`) lives in our accounts' sublists as subscriptions whose target is that route.
//!
//! Each account counts its local interest by subject and queue group, and tells every route
//! when a subject gains its first subscriber or loses its last (a queue group's weight on
//! every change), as nats-server's `updateRouteSubscriptionMap` does. A route that registers
//! gets the whole of it at once. Cluster permissions filter both: `import` what a route is
//! told of, `export` what it may ask for (and so what it is sent).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use super::account::Account;
use super::connection::Connection;
use super::outbound::Appended;
use super::permissions::{Entry, Permissions, SubjectPermission};
use super::subscription::{Subscription, Target};
use crate::proto::route::{self as wire, Interest, PermissionJson};

/// Another server of the cluster, connected by a route.
#[derive(Debug)]
pub struct Route {
    /// The connection: outbound queue, counters, log prefix.
    pub conn: Arc<Connection>,
    /// The peer's server id.
    pub remote_id: String,
    /// The peer's server name.
    pub remote_name: String,
    /// We dialed it (rather than it us).
    pub solicited: bool,
    /// The peer traces messages (its INFO said `proto` 3, `MsgTraceProto`, or more): a
    /// trace-only message is sent to it, and not to an older peer.
    pub traces: bool,
    /// `cluster { permissions }` as nats-server puts them on each route: `import` as the
    /// publish list (the interest we tell the peer of), `export` as the subscribe list (the
    /// peer's interest we take, hence the messages we send it). `None` for no restriction.
    /// Replaced when a reload changes them.
    permissions: RwLock<Option<Arc<Permissions>>>,
    /// The peer's own cluster permissions (`import`, `export`), as its latest INFO told them.
    peer_permissions: Mutex<PeerPermissions>,
    /// The peer's interest, by account, subject and queue group. Guards only the map; taken
    /// before an account's sublist lock, never after.
    remote: Mutex<HashMap<RemoteKey, Arc<Subscription>>>,
}

/// What identifies one remote subscription: account, leaf origin, subject, queue group. As in
/// nats-server, interest from a leaf cluster behind the peer (`LS+ <origin> ...`) is kept apart
/// from the peer's own on the same subject: each comes and goes on its own.
type RemoteKey = (Arc<str>, Option<Bytes>, Bytes, Option<Bytes>);

/// The peer's cluster permissions as its INFO says them: `import`, `export`.
pub type PeerPermissions = (Option<PermissionJson>, Option<PermissionJson>);

impl Route {
    /// A registered route.
    pub fn new(
        conn: Arc<Connection>,
        remote_id: &str,
        remote_name: &str,
        solicited: bool,
        permissions: Option<Arc<Permissions>>,
    ) -> Route {
        Route {
            conn,
            remote_id: remote_id.to_string(),
            remote_name: remote_name.to_string(),
            solicited,
            traces: true,
            permissions: RwLock::new(permissions),
            peer_permissions: Mutex::new((None, None)),
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the peer is told of local interest in `subject` (nats-server's `canImport`:
    /// the import list read as a publish permission).
    pub fn imports(&self, subject: &[u8]) -> bool {
        self.permissions()
            .as_ref()
            .map_or(true, |p| p.can_publish(subject))
    }

    /// The cluster permissions this route applies now.
    pub fn permissions(&self) -> Option<Arc<Permissions>> {
        self.permissions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The peer's cluster permissions, as its latest INFO told them (for `/routez`).
    pub fn peer_permissions(&self) -> PeerPermissions {
        self.peer_permissions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the peer's cluster permissions; returns those it had before.
    pub fn set_peer_permissions(&self, perms: PeerPermissions) -> PeerPermissions {
        let mut current = self
            .peer_permissions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut current, perms)
    }

    /// Puts reloaded cluster permissions in force, as nats-server's `reloadClusterPermissions`
    /// does on each route: the new lists apply first (to the peer's interest from now on), the
    /// peer's interest `export` no longer allows is dropped without a word, `info` (our INFO
    /// with the new lists, so that the peer resends what it may now send) is sent, then
    /// `RS+` for local interest `import` now lets through and `RS-` for what it stops.
    pub fn reload_permissions(
        &self,
        accounts: &[Arc<Account>],
        new: Option<Arc<Permissions>>,
        info: impl FnOnce(&mut bytes::BytesMut),
    ) {
        let old = std::mem::replace(
            &mut *self.permissions.write().unwrap_or_else(|p| p.into_inner()),
            new.clone(),
        );
        self.conn.set_permissions(new.clone());
        if let Some(perms) = &new {
            self.drop_refused(accounts, perms);
        }
        self.send(info);
        let import = |p: &Option<Arc<Permissions>>, subject: &[u8]| {
            p.as_ref().map_or(true, |p| p.can_publish(subject))
        };
        for account in accounts {
            let name = account.name.as_bytes();
            account.with_interest(|interest| {
                self.send(|b| {
                    for ((subject, queue), count) in interest.iter() {
                        match (import(&old, subject), import(&new, subject)) {
                            (false, true) => {
                                let queue = queue.as_ref().map(|q| (&q[..], count));
                                wire::encode_sub(b, name, subject, queue);
                            }
                            (true, false) => wire::encode_unsub(b, name, subject, queue.as_deref()),
                            _ => {}
                        }
                    }
                })
            });
        }
    }

    /// Forgets the peer's interest `perms` no longer export, and filters deliveries when a
    /// remaining wildcard interest covers denied subjects.
    fn drop_refused(&self, accounts: &[Arc<Account>], perms: &Permissions) {
        let dropped: Vec<(RemoteKey, Arc<Subscription>)> = {
            let mut remote = self.remote();
            let refused: Vec<RemoteKey> = remote
                .keys()
                .filter(|(_, _, subject, _)| !perms.can_subscribe(subject, None))
                .cloned()
                .collect();
            refused
                .into_iter()
                .filter_map(|k| remote.remove_entry(&k))
                .collect()
        };
        for ((name, _, _, _), sub) in dropped {
            if let Some(account) = accounts.iter().find(|a| a.name == name) {
                account.unsubscribe(&sub);
            }
        }
        if self
            .remote()
            .keys()
            .any(|(_, _, subject, _)| perms.needs_delivery_filter(subject))
        {
            self.conn.enable_delivery_filter();
        }
    }

    /// The peer's INFO changed its `export` (its config was reloaded): as nats-server's
    /// `updateRemoteRoutePerms`, local interest the peer now takes but did not before, and that
    /// our `import` lets through, is sent (`RS+`); nothing is withdrawn.
    pub fn peer_export_changed(
        &self,
        accounts: &[Arc<Account>],
        old: Option<&Permissions>,
        new: Option<&Permissions>,
    ) {
        let export = |p: Option<&Permissions>, subject: &[u8]| {
            p.map_or(true, |p| p.can_subscribe(subject, None))
        };
        for account in accounts {
            account.with_interest(|interest| {
                self.send(|b| {
                    for ((subject, queue), count) in interest.iter() {
                        if export(new, subject) && !export(old, subject) && self.imports(subject) {
                            let queue = queue.as_ref().map(|q| (&q[..], count));
                            wire::encode_sub(b, account.name.as_bytes(), subject, queue);
                        }
                    }
                })
            });
        }
    }

    /// `RS+`: the peer has interest in `account` (a queue group's weight replaces the old one).
    pub fn add_interest(self: &Arc<Self>, account: &Arc<Account>, interest: &Interest<'_>) {
        let key = Route::key(account, interest);
        let mut remote = self.remote();
        if let Some(existing) = remote.get(&key) {
            existing.weight.store(interest.weight, Ordering::Relaxed);
            return;
        }
        let mut sub = Subscription::with_target(
            Target::Route(self.clone()),
            key.2.clone(),
            key.3.clone(),
            Bytes::new(),
        );
        sub.origin = key.1.clone();
        let sub = Arc::new(sub);
        sub.weight.store(interest.weight, Ordering::Relaxed);
        remote.insert(key, sub.clone());
        account.subscribe(sub);
    }

    /// `RS-`: the peer lost interest (unknown interest is ignored).
    pub fn remove_interest(&self, account: &Account, interest: &Interest<'_>) {
        let key = Route::key(account, interest);
        let removed = self.remote().remove(&key);
        if let Some(sub) = removed {
            account.unsubscribe(&sub);
        }
    }

    /// Forgets everything the peer said it wanted (the route closed).
    pub fn purge(&self, accounts: impl Fn(&str) -> Option<Arc<Account>>) {
        let all: Vec<(RemoteKey, Arc<Subscription>)> = self.remote().drain().collect();
        for ((account, _, _, _), sub) in all {
            if let Some(account) = accounts(&account) {
                account.unsubscribe(&sub);
            }
        }
    }

    /// The subjects of the peer's subscriptions (a queue group's without its name, as
    /// nats-server lists them), for `/routez?subs=1`.
    pub fn remote_subjects(&self) -> Vec<String> {
        self.remote()
            .keys()
            .map(|(_, _, subject, _)| String::from_utf8_lossy(subject).into_owned())
            .collect()
    }

    /// How many subscriptions the peer has with us.
    pub fn remote_count(&self) -> usize {
        self.remote().len()
    }

    /// Appends a frame and wakes the writer.
    pub fn send(&self, encode: impl FnOnce(&mut bytes::BytesMut)) {
        if self.conn.outbound.append(None, encode) == Appended::ScheduleFlush {
            self.conn.outbound.wake_writer();
        }
    }

    fn key(account: &Account, interest: &Interest<'_>) -> RemoteKey {
        (
            account.name.clone(),
            interest.origin.map(Bytes::copy_from_slice),
            Bytes::copy_from_slice(interest.subject),
            interest.queue.map(Bytes::copy_from_slice),
        )
    }

    fn remote(&self) -> std::sync::MutexGuard<'_, HashMap<RemoteKey, Arc<Subscription>>> {
        self.remote.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A peer's `export` as its INFO says it, read as the subscribe list nats-server tests it
/// with (an empty `allow` allows everything not denied); `None` when unrestricted.
pub fn export_permissions(export: Option<&PermissionJson>) -> Option<Permissions> {
    let export = export?;
    let entries = |list: &[String]| -> Vec<Entry> {
        list.iter().filter_map(|text| Entry::parse(text)).collect()
    };
    Some(Permissions {
        publish: None,
        subscribe: Some(SubjectPermission {
            allow: (!export.allow.is_empty()).then(|| entries(&export.allow)),
            deny: entries(&export.deny),
        }),
        response: None,
    })
}

/// The registered routes, by the peer's server id. Shared by the router and every account.
#[derive(Debug, Default)]
pub struct Routes {
    /// Guards only the map; never held while an account's interest is being sent.
    by_id: RwLock<HashMap<String, Arc<Route>>>,
    /// The server is in a cluster: accounts keep their local interest for routes.
    enabled: AtomicBool,
}

impl Routes {
    /// Starts keeping local interest for routes (before any client connects).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    /// Whether the server is in a cluster.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Registers a route; refuses a second one to the same server (nats-server keeps the first).
    pub fn add(&self, route: Arc<Route>) -> bool {
        let mut by_id = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        if by_id.contains_key(&route.remote_id) {
            return false;
        }
        by_id.insert(route.remote_id.clone(), route);
        true
    }

    /// Forgets `route` (if it is the one registered for its server).
    pub fn remove(&self, route: &Arc<Route>) -> bool {
        let mut by_id = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        match by_id.get(&route.remote_id) {
            Some(r) if Arc::ptr_eq(r, route) => by_id.remove(&route.remote_id).is_some(),
            _ => false,
        }
    }

    /// Whether a route to server `id` is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Every registered route.
    pub fn all(&self) -> Vec<Arc<Route>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Whether there is any route (one load, for the client's SUB path).
    pub fn is_empty(&self) -> bool {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

/// The local interest of one account that routes are told about: plain subscribers by
/// subject, queue members by subject and group.
#[derive(Debug, Default)]
pub struct LocalInterest {
    counts: HashMap<(Bytes, Option<Bytes>), u32>,
}

impl LocalInterest {
    /// One more local subscriber; returns the `RS+` to send, if any: a plain subject's first,
    /// or a queue group's new weight.
    pub fn add(&mut self, subject: &Bytes, queue: &Option<Bytes>) -> Option<u32> {
        let count = self
            .counts
            .entry((subject.clone(), queue.clone()))
            .or_insert(0);
        *count += 1;
        (queue.is_some() || *count == 1).then_some(*count)
    }

    /// One fewer; returns `Some(0)` for the `RS-` to send (the last one went) or `Some(n)` for
    /// a queue group's new weight, `None` when routes need not hear of it.
    pub fn remove(&mut self, subject: &Bytes, queue: &Option<Bytes>) -> Option<u32> {
        let key = (subject.clone(), queue.clone());
        let count = self.counts.get_mut(&key)?;
        *count = count.saturating_sub(1);
        let now = *count;
        if now == 0 {
            self.counts.remove(&key);
            return Some(0);
        }
        queue.is_some().then_some(now)
    }

    /// Each subject and queue group with its count.
    pub fn iter(&self) -> impl Iterator<Item = (&(Bytes, Option<Bytes>), u32)> {
        self.counts.iter().map(|(k, n)| (k, *n))
    }

    /// Sends all of it to a route that just registered.
    pub fn send_all(&self, account: &[u8], route: &Route) {
        if self.counts.is_empty() {
            return;
        }
        route.send(|b| {
            for ((subject, queue), count) in &self.counts {
                if !route.imports(subject) {
                    continue;
                }
                let queue = queue.as_ref().map(|q| (&q[..], *count));
                wire::encode_sub(b, account, subject, queue);
            }
        });
    }
}

impl LocalInterest {
    /// Sends all of it to a route that just registered, as interest of the leaf cluster
    /// `origin` (`LS+ <origin> <acc> ...`).
    pub fn send_all_from(&self, origin: &[u8], account: &[u8], route: &Route) {
        if self.counts.is_empty() {
            return;
        }
        route.send(|b| {
            for ((subject, queue), count) in &self.counts {
                if route.imports(subject) {
                    let queue = queue.as_ref().map(|q| (&q[..], *count));
                    wire::encode_leaf_sub(b, origin, account, subject, queue);
                }
            }
        });
    }
}

/// Tells every route of a change in the interest of the leaf cluster `origin` in `account`.
pub fn announce_leaf(
    routes: &Routes,
    origin: &[u8],
    account: &[u8],
    subject: &[u8],
    queue: Option<&[u8]>,
    count: u32,
) {
    for route in routes.all() {
        if !route.imports(subject) {
            continue;
        }
        route.send(|b| match (count, queue) {
            (0, queue) => wire::encode_leaf_unsub(b, origin, account, subject, queue),
            (n, Some(queue)) => {
                wire::encode_leaf_sub(b, origin, account, subject, Some((queue, n)))
            }
            (_, None) => wire::encode_leaf_sub(b, origin, account, subject, None),
        });
    }
}

/// Tells every route of a change in `account`'s local interest (see [`LocalInterest`]).
pub fn announce(routes: &Routes, account: &[u8], subject: &[u8], queue: Option<&[u8]>, count: u32) {
    for route in routes.all() {
        if !route.imports(subject) {
            continue;
        }
        route.send(|b| match (count, queue) {
            (0, queue) => wire::encode_unsub(b, account, subject, queue),
            (n, Some(queue)) => wire::encode_sub(b, account, subject, Some((queue, n))),
            (_, None) => wire::encode_sub(b, account, subject, None),
        });
    }
}
