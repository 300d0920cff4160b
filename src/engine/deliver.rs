//! Delivery: a publish is match -> for each subscription, deliver to its target kind. Client
//! subscribers get `MSG`/`HMSG` appended to their outbound queue (their writers are woken
//! once per batch, by whoever published); internal subscribers run their callback.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;
use tracing::trace;

use super::account::{Account, Matches};
use super::connection::Connection;
use super::leaf::Leaf;
use super::msgtrace::{self, MsgTrace};
use super::outbound::{Appended, Pace, Room};
use super::route::Route;
use super::sublist::QueueGroup;
use super::subscription::{Subscription, Target};
use crate::proto::leaf as leaf_wire;
use crate::proto::protocol;
use crate::proto::route as route_wire;

/// How many accounts one message may pass through (imports of imports); deeper is a loop.
const MAX_HOPS: u8 = 8;

/// One message being published.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The subject, literal.
    pub subject: &'a [u8],
    /// The reply subject.
    pub reply: Option<&'a [u8]>,
    /// The length of the header block at the start of `message`, for HPUB.
    pub header_len: Option<usize>,
    /// Headers and payload.
    pub message: &'a [u8],
}

/// What one publisher's batch touched: the connections whose writers it must wake once the
/// batch is handled, and the subscribers it found backlogged.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Connections appended to that must be woken.
    pub to_flush: Vec<Arc<Connection>>,
    /// Subscribers found backlogged (`Outbound::wait_for_room`).
    pub backlogged: Vec<Arc<Connection>>,
    /// The address of the last connection this batch appended to that was not backlogged
    /// then (0: none): compared only, never dereferenced (see [`Deliveries::pacing`]).
    keeping_up: usize,
    /// Observe every delivery: `-V` protocol tracing, or a traced message (`msg_trace`). One
    /// flag, so that the common delivery checks nothing more.
    pub trace: bool,
    /// The trace of the message being delivered (`Nats-Trace-Dest`); set only with `trace`.
    pub msg_trace: Option<Box<MsgTrace>>,
    /// The publisher's account name and round-trip time, for the `Nats-Request-Info` header
    /// a service import adds.
    pub origin: Option<(Arc<str>, std::time::Duration)>,
    /// The publishing client's cid, for services that answer who asks (`$SYS.REQ.USER.INFO`).
    pub publisher: Option<u64>,
    /// Accounts the current message has passed through.
    hops: u8,
    /// The message came from a route: it goes to no route (one hop).
    pub from_route: bool,
    /// The message came from this leafnode connection.
    pub from_leaf: Option<Arc<Leaf>>,
    /// The leaf cluster the message came from (a leafnode's, or a route's `LMSG`): it goes
    /// to no leafnode of that cluster, and to routes as `LMSG` with it.
    pub leaf_origin: Option<bytes::Bytes>,
    /// The frame the message being published was read in, when its payload is large enough
    /// to be shared with subscribers instead of copied (see [`Deliveries::shared_part`]).
    pub shared: Option<Bytes>,
    /// Internal subscribers' stages this batch put something in, released by `flush`.
    pub staged: super::stage::Staged,
    /// The chunk [`Deliveries::pack`] copies small payloads into.
    pack: bytes::BytesMut,
}

/// The size of the chunks [`Deliveries::pack`] copies into, and the largest part it packs
/// (a larger one gets an allocation of its own).
const PACK_CHUNK: usize = 64 * 1024;
const PACK_MAX: usize = 4 * 1024;

impl Deliveries {
    /// Notes what appending to `to` asked for: a flush to schedule, a backlog to wait for.
    #[inline(always)]
    fn appended(&mut self, appended: Appended, to: &Arc<Connection>) {
        if appended == Appended::ScheduleFlush {
            self.to_flush.push(to.clone());
        }
        if appended == Appended::Dropped {
            return;
        }
        match to.outbound.pace() {
            Pace::KeepingUp => self.keeping_up = Arc::as_ptr(to) as usize,
            Pace::Backlogged if !self.backlogged.iter().any(|c| Arc::ptr_eq(c, to)) => {
                self.backlogged.push(to.clone())
            }
            Pace::Backlogged | Pace::Behind => {}
        }
    }

    /// After a batch: keeps in `backlogged` only the connections its publisher must wait for,
    /// and starts the next batch's record. A backlogged route or leafnode is always waited for
    /// (it carries everyone's traffic: paced, never left to overflow). A backlogged client is
    /// waited for only when no other connection the batch reached is keeping up: fan-in (the
    /// publishers' only subscriber reads, just slower than they write) paces the publishers,
    /// while a subscriber that falls behind beside one keeping up does not hold the publisher
    /// and the fast one back; it is left to `max_pending` (a stuck subscriber cost the fast
    /// one beside it the whole `STUCK_AFTER` wait, 50 ms, before).
    pub fn pacing(&mut self) {
        let keeping_up = std::mem::take(&mut self.keeping_up);
        if self.backlogged.is_empty() || keeping_up == 0 {
            return;
        }
        if self
            .backlogged
            .iter()
            .any(|c| Arc::as_ptr(c) as usize == keeping_up)
        {
            // It fell behind later in the batch: nobody else is known to keep up.
            return;
        }
        self.backlogged.retain(|c| c.outbound.paces_always());
    }

    /// Waits for the connections `pacing` left in `backlogged` (`Outbound::wait_for_room`),
    /// all at once, and leaves the list empty. While none has caught up, each is waited for
    /// as alone (fan-in: the subscriber paces its publishers). Once one has, the other clients
    /// get `GRACE` more to catch up too (fan-out to several slow readers stays paced: one
    /// near its limit drains a batch well within it), and those more than twice their backlog
    /// limit behind (`Outbound::far_behind`) none: they are marked lagging
    /// (`Outbound::set_lagging`), so that nobody waits for them until they are back under
    /// their limit by themselves, and `max_pending` decides. A stuck subscriber beside a fast
    /// one so no longer holds the publisher and the fast one back. Waiting for each in turn
    /// did: a stuck reader's socket still takes bytes now and then as the kernel's buffers
    /// grow, and its waits (33, 51 and 90 ms in one run of 360 ms) were the whole gap between
    /// the fast subscriber's rate with and without it. A route or leafnode is always waited
    /// for.
    pub async fn wait_for_backlogged(&mut self) {
        let mut backlogged = std::mem::take(&mut self.backlogged);
        match backlogged.as_slice() {
            [] => {}
            [one] => {
                one.outbound.wait_for_room().await;
            }
            several => wait_beside(several).await,
        }
        backlogged.clear();
        self.backlogged = backlogged;
    }

    /// `part` and the CRLF after it as a slice of the shared frame, when `part` lies in it
    /// (a message rewritten on its way, by an import or a trace, does not).
    #[cold]
    fn shared_part(&self, part: &[u8]) -> Option<Bytes> {
        let frame = self.shared.as_ref()?;
        let start = (part.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
        let end = start + part.len() + 2;
        (end <= frame.len() && &frame[end - 2..end] == b"\r\n").then(|| frame.slice(start..end))
    }

    /// A copy of `part` that outlives the read buffer, for a message kept in order (a memory
    /// stream's): small parts are packed one after another into shared 64 KiB chunks instead of
    /// an allocation each. A store growing by allocations of ~1 KiB grows glibc's per-thread
    /// heap a page at a time (an `mprotect` per page, `sysmalloc` was half of tern's time in
    /// `js publish 1 KB, memory`); by chunks it grows 64 KiB at a time. A chunk is freed when
    /// the last part in it is, so this is only for parts dropped in about the order they were
    /// copied (the caller's promise): one kept part holds its whole chunk.
    pub fn pack(&mut self, part: &[u8]) -> Bytes {
        if part.is_empty() {
            return Bytes::new();
        }
        if part.len() > PACK_MAX {
            return Bytes::copy_from_slice(part);
        }
        if self.pack.capacity() < part.len() {
            self.pack = bytes::BytesMut::with_capacity(PACK_CHUNK);
        }
        self.pack.extend_from_slice(part);
        self.pack.split().freeze()
    }

    /// Hands what this batch staged to the internal subscribers behind it, and wakes the
    /// writers it appended to; true if any was not `own`'s.
    pub fn flush(&mut self, own: Option<&Arc<Connection>>) -> bool {
        self.staged.release();
        let mut others = false;
        for conn in self.to_flush.drain(..) {
            others |= !own.is_some_and(|own| Arc::ptr_eq(&conn, own));
            conn.outbound.wake_writer();
        }
        others
    }
}

/// How long clients backlogged beside one that caught up get to catch up too
/// (`Deliveries::wait_for_backlogged`): a reader near its limit drains a batch in well under
/// this; nats-server, too, stalls a publisher at most a few milliseconds per read.
const GRACE: std::time::Duration = std::time::Duration::from_millis(5);

/// One wait of `wait_beside`.
type RoomWait<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Room> + Send + 'a>>;

/// Where `wait_beside` is: nobody has caught up yet, one has and the others have `GRACE`,
/// or the grace ran out and only peers are waited for.
enum Phase {
    Waiting,
    Grace(std::pin::Pin<Box<tokio::time::Sleep>>),
    PeersOnly,
}

/// `Deliveries::wait_for_backlogged` for several connections at once.
async fn wait_beside(conns: &[Arc<Connection>]) {
    use std::future::Future;
    use std::task::Poll;
    let mut waits: Vec<(&Arc<Connection>, RoomWait<'_>)> = conns
        .iter()
        .map(|c| (c, Box::pin(c.outbound.wait_for_room()) as RoomWait<'_>))
        .collect();
    let mut phase = Phase::Waiting;
    loop {
        if !matches!(phase, Phase::Waiting) {
            // Beside one that caught up, a client far behind is left to `max_pending`.
            waits.retain(|(conn, _)| {
                let keep = conn.outbound.paces_always() || !conn.outbound.far_behind();
                if !keep {
                    conn.outbound.set_lagging();
                }
                keep
            });
        }
        if waits.is_empty() {
            return;
        }
        let next = std::future::poll_fn(|cx| {
            for (i, (_, wait)) in waits.iter_mut().enumerate() {
                if let Poll::Ready(room) = wait.as_mut().poll(cx) {
                    return Poll::Ready(Some((i, room)));
                }
            }
            match &mut phase {
                Phase::Grace(sleep) => sleep.as_mut().poll(cx).map(|()| None),
                _ => Poll::Pending,
            }
        })
        .await;
        match next {
            Some((i, room)) => {
                drop(waits.swap_remove(i));
                if room == Room::Drained && matches!(phase, Phase::Waiting) {
                    phase = Phase::Grace(Box::pin(tokio::time::sleep(GRACE)));
                }
            }
            // The grace is over: only peers are waited for from now on. The clients left are
            // not marked: the next batch that finds them backlogged waits for them again.
            None => {
                waits.retain(|(conn, _)| conn.outbound.paces_always());
                phase = Phase::PeersOnly;
            }
        }
    }
}

/// Publishes in `account` from inside the server (imports, responses, system services): the
/// account's mappings apply, then every match gets the message. True when anyone took it.
pub fn publish(account: &Account, msg: &Message<'_>, out: &mut Deliveries) -> bool {
    if out.hops >= MAX_HOPS {
        return false;
    }
    out.hops += 1;
    let mapped = account.map_subject(msg.subject);
    let msg = match &mapped {
        Some(subject) => Message { subject, ..*msg },
        None => *msg,
    };
    let matches = account.matches(msg.subject);
    let delivered = deliver_all(account, &matches, &msg, out, None);
    out.hops -= 1;
    delivered
}

/// Runs `f` with the message's trace set aside: nats-server notes no delivery past an
/// import in the trace (only the `se`/`si` event).
pub fn untraced<R>(out: &mut Deliveries, f: impl FnOnce(&mut Deliveries) -> R) -> R {
    let trace = out.msg_trace.take();
    let observe = out.trace;
    out.trace = trace.as_ref().map_or(observe, |t| t.log);
    let result = f(out);
    out.trace = observe;
    out.msg_trace = trace;
    result
}

/// Publishes in `account` a message routed by `route_by` but presented with its own subject
/// (`msg.subject`): how JetStream hands a stored message to a pull request's reply subject,
/// which subscribers see under the subject it was stored with. No mappings apply. JetStream
/// runs without routes, which would carry the presented subject instead. True when anyone
/// took it.
pub fn publish_presented(
    account: &Account,
    route_by: &[u8],
    msg: &Message<'_>,
    out: &mut Deliveries,
) -> bool {
    let matches = account.matches(route_by);
    deliver_all(account, &matches, msg, out, None)
}

/// Delivers to every plain subscription in `matches` and to one member of each queue group
/// (a random one that can take it, as nats-server picks: a route's member counts as many times
/// as the route's weight). Each route gets one `RMSG` naming the groups it was chosen for; a
/// message that came from a route goes to no route (one hop). `skip` is the publisher when it
/// asked not to get its own messages (`echo: false`). True when anyone took it.
#[inline]
pub fn deliver_all(
    account: &Account,
    matches: &Matches,
    msg: &Message<'_>,
    out: &mut Deliveries,
    skip: Option<&Arc<Connection>>,
) -> bool {
    // The common case, plain local subscribers only, takes no more than this loop.
    let mut delivered = false;
    let mut peers = false;
    for sub in &matches.psubs {
        match &sub.target {
            Target::Route(_) | Target::Leaf(_) => peers = true,
            _ => delivered |= deliver(account, sub, msg, out, skip),
        }
    }
    if matches.qsubs.is_empty() && !peers {
        return delivered;
    }
    deliver_groups_and_routes(account, matches, msg, out, skip, peers) | delivered
}

/// Whether a message goes on to routes: not one from a route (one hop), nor one from our hub
/// (each server of a cluster has its own link to it).
fn to_routes(out: &Deliveries) -> bool {
    !out.from_route && !out.from_leaf.as_ref().is_some_and(|l| l.spoke)
}

/// Whether a message goes on to `leaf` (see `Leaf::takes_from`).
fn to_leaf(leaf: &Leaf, msg: &Message<'_>, out: &Deliveries) -> bool {
    leaf.takes_from(
        out.from_route,
        out.from_leaf.as_deref(),
        out.leaf_origin.as_deref(),
        msg.subject,
    )
}

/// Notes the route and leafnode subscriptions among `psubs` that take the message.
fn note_peers<'m>(
    psubs: &'m [Arc<Subscription>],
    msg: &Message<'_>,
    out: &Deliveries,
    frames: &mut SmallVec<[PeerFrame<'m>; 2]>,
) {
    let routes = to_routes(out);
    for sub in psubs {
        if sub.closed.load(Ordering::Relaxed) {
            continue;
        }
        match &sub.target {
            Target::Route(route) if routes => PeerFrame::note(frames, Peer::Route(route), None),
            Target::Leaf(leaf) if to_leaf(leaf, msg, out) => {
                PeerFrame::note(frames, Peer::Leaf(leaf), None)
            }
            _ => {}
        }
    }
}

/// The rest of [`deliver_all`]: one member of each queue group, and one frame per route for
/// the routes among the plain subscriptions (`routes`) and the groups' chosen members.
fn deliver_groups_and_routes(
    account: &Account,
    matches: &Matches,
    msg: &Message<'_>,
    out: &mut Deliveries,
    skip: Option<&Arc<Connection>>,
    peers: bool,
) -> bool {
    let mut delivered = false;
    let mut frames: SmallVec<[PeerFrame<'_>; 2]> = SmallVec::new();
    if peers {
        note_peers(&matches.psubs, msg, out, &mut frames);
    }
    for group in &matches.qsubs {
        delivered |= deliver_queue(account, group, msg, out, skip, &mut frames);
    }
    for frame in frames {
        delivered |= frame.send(account, msg, out);
    }
    delivered
}

/// Delivers a message that came from a route (`out.from_route`) or a leafnode
/// (`out.from_leaf`): to every local plain subscriber, to the leafnodes (and, from a leafnode
/// whose hub we are, the routes) that take it, and to one member of each queue group the
/// sender named (and no other group), a local one first. A named group with no member here
/// that takes it goes on to a member behind a route, even the route it came from, as
/// nats-server does (`processMsgResults` keeps such a member as `rsub`): the sender's view of
/// the group was stale, and dropping would lose the message. A JetStream push delivery
/// (`$JS.ACK.…@subject` reply) reaches local subscribers on the subject after the `@`. True
/// when anyone took it.
pub fn deliver_routed(
    account: &Account,
    matches: &Matches,
    msg: &Message<'_>,
    queues: &[u8],
    out: &mut Deliveries,
) -> bool {
    let mut delivered = false;
    // Local subscribers of a JetStream push delivery get it on the subject its reply carries.
    let split = msg.reply.and_then(route_wire::js_ack_delivery);
    let local = match split {
        Some((subject, reply)) => Message {
            subject,
            reply: Some(reply),
            ..*msg
        },
        None => *msg,
    };
    let mut peers = false;
    for sub in &matches.psubs {
        match &sub.target {
            Target::Route(_) | Target::Leaf(_) => peers = true,
            _ => delivered |= deliver(account, sub, &local, out, None),
        }
    }
    let mut frames: SmallVec<[PeerFrame<'_>; 2]> = SmallVec::new();
    if peers {
        note_peers(&matches.psubs, msg, out, &mut frames);
    }
    if !queues.is_empty() {
        for group in &matches.qsubs {
            if !route_wire::queue_names(queues).any(|q| q == &*group.name) {
                continue;
            }
            if deliver_queue(account, group, &local, out, None, &mut frames) {
                delivered = true;
                continue;
            }
            if !out.from_route {
                continue;
            }
            let behind_route = group.members.iter().find_map(|m| match &m.target {
                Target::Route(route)
                    if !m.closed.load(Ordering::Relaxed)
                        && m.weight.load(Ordering::Relaxed) > 0 =>
                {
                    Some(route)
                }
                _ => None,
            });
            if let Some(route) = behind_route {
                PeerFrame::note(&mut frames, Peer::Route(route), Some(&group.name));
            }
        }
    }
    for frame in frames {
        delivered |= frame.send(account, msg, out);
    }
    delivered
}

/// One member of a queue group takes the message: chosen at random, a route's member weighing
/// as much as its weight; if it cannot take it, the next one in turn. A route chosen is noted
/// in `routes` with the group's name.
fn deliver_queue<'m>(
    account: &Account,
    group: &'m QueueGroup<Subscription>,
    msg: &Message<'_>,
    out: &mut Deliveries,
    skip: Option<&Arc<Connection>>,
    routes: &mut SmallVec<[PeerFrame<'m>; 2]>,
) -> bool {
    let n = group.members.len();
    if n == 0 {
        return false;
    }
    // A route's member weighs its weight; 0 is never chosen (nats-server lists a remote
    // group as many times as its weight).
    let weight = |s: &Subscription| match s.target {
        Target::Route(_) => s.weight.load(Ordering::Relaxed) as usize,
        _ => 1,
    };
    let to_routes = to_routes(out);
    // A leafnode's member is taken only when no other member is (local members first).
    let mut leaf_member: Option<&'m Arc<Leaf>> = None;
    // Without routes' members every member weighs 1: no need to look at each.
    let (total, uniform) = match account.has_route_queue_subs() {
        true => group.members.iter().fold((0, true), |(total, uniform), s| {
            let w = weight(s);
            (total + w, uniform && w == 1)
        }),
        false => (n, true),
    };
    if total == 0 {
        return false;
    }
    let start = if uniform {
        fastrand::usize(..n)
    } else {
        // Walk to the member the draw falls on.
        let mut draw = fastrand::usize(..total);
        group
            .members
            .iter()
            .position(|s| {
                let w = weight(s);
                if draw < w {
                    return true;
                }
                draw -= w;
                false
            })
            .unwrap_or(0)
    };
    for i in 0..n {
        let member = &group.members[(start + i) % n];
        match &member.target {
            Target::Route(route) => {
                if !to_routes || member.closed.load(Ordering::Relaxed) || weight(member) == 0 {
                    continue;
                }
                PeerFrame::note(routes, Peer::Route(route), Some(&group.name));
                return true;
            }
            Target::Leaf(leaf) => {
                if leaf_member.is_none()
                    && !member.closed.load(Ordering::Relaxed)
                    && to_leaf(leaf, msg, out)
                {
                    leaf_member = Some(leaf);
                }
            }
            _ => {
                if deliver(account, member, msg, out, skip) {
                    return true;
                }
            }
        }
    }
    match leaf_member {
        Some(leaf) => {
            PeerFrame::note(routes, Peer::Leaf(leaf), Some(&group.name));
            true
        }
        None => false,
    }
}

/// A server a message is forwarded to: over a route or a leafnode connection.
#[derive(Clone, Copy)]
enum Peer<'m> {
    Route(&'m Arc<Route>),
    Leaf(&'m Arc<Leaf>),
}

impl Peer<'_> {
    fn conn(&self) -> &Arc<Connection> {
        match self {
            Peer::Route(route) => &route.conn,
            Peer::Leaf(leaf) => &leaf.conn,
        }
    }

    fn same(&self, other: &Peer<'_>) -> bool {
        Arc::ptr_eq(self.conn(), other.conn())
    }
}

/// What one route or leafnode gets for one message: whether a plain subscription wanted it,
/// and the queue groups it was chosen for.
struct PeerFrame<'m> {
    to: Peer<'m>,
    queues: SmallVec<[&'m [u8]; 4]>,
}

impl<'m> PeerFrame<'m> {
    fn note(frames: &mut SmallVec<[PeerFrame<'m>; 2]>, to: Peer<'m>, queue: Option<&'m [u8]>) {
        let frame = match frames.iter_mut().position(|f| f.to.same(&to)) {
            Some(at) => &mut frames[at],
            None => {
                frames.push(PeerFrame {
                    to,
                    queues: SmallVec::new(),
                });
                let last = frames.len() - 1;
                &mut frames[last]
            }
        };
        if let Some(queue) = queue {
            frame.queues.push(queue);
        }
    }

    /// Sends the frame; false when the route's `export` permission denies the subject (a
    /// wildcard interest it took covers a denied subject: nats-server drops it at delivery).
    fn send(&self, account: &Account, msg: &Message<'_>, out: &mut Deliveries) -> bool {
        if out.trace {
            if let Some(trace) = out.msg_trace.take() {
                return self.send_traced(account, msg, out, trace);
            }
        }
        self.send_frame(account, msg, out)
    }

    /// [`PeerFrame::send`] without the check for a traced message.
    #[inline(always)]
    fn send_frame(&self, account: &Account, msg: &Message<'_>, out: &mut Deliveries) -> bool {
        let to = self.to.conn();
        if !to.may_receive(msg.subject) {
            return false;
        }
        // A peer whose INFO said `headers: false` gets the payload alone, as nats-server
        // sends it.
        let (header_len, message) = match msg.header_len {
            Some(h) if !to.headers.load(Ordering::Relaxed) => (None, &msg.message[h..]),
            header_len => (header_len, msg.message),
        };
        let frame = route_wire::Frame {
            subject: msg.subject,
            reply: msg.reply,
            queues: &self.queues,
            header_len,
            message,
        };
        let name = account.name.as_bytes();
        if out.shared.is_some() {
            if let Some(appended) = self.send_shared(name, &frame, out) {
                out.appended(appended, to);
                return true;
            }
        }
        let appended =
            to.outbound
                .append(Some(message.len()), |b| match (self.to, &out.leaf_origin) {
                    (Peer::Leaf(_), _) => leaf_wire::encode_msg(b, &frame),
                    (Peer::Route(_), Some(origin)) => {
                        route_wire::encode_origin_msg(b, origin, name, &frame)
                    }
                    (Peer::Route(_), None) => route_wire::encode_msg(
                        b,
                        name,
                        msg.subject,
                        msg.reply,
                        &self.queues,
                        header_len,
                        message,
                    ),
                });
        // A publisher outrunning a peer waits for it, as for a subscriber (see
        // `Outbound::wait_for_room`): a route is paced, never left to overflow.
        out.appended(appended, to);
        true
    }
}

impl PeerFrame<'_> {
    /// Queues a frame whose payload is shared with the read buffer it came in (a large one):
    /// only the control line is copied. `None` when the message is not the one read (an
    /// import or a trace rewrote it): the caller copies it.
    #[inline(never)]
    fn send_shared(
        &self,
        account: &[u8],
        frame: &route_wire::Frame<'_>,
        out: &Deliveries,
    ) -> Option<Appended> {
        let part = out.shared_part(frame.message)?;
        let to = self.to.conn();
        Some(to.outbound.append_shared(frame.message.len(), part, |b| {
            match (self.to, &out.leaf_origin) {
                (Peer::Leaf(_), _) => leaf_wire::encode_msg_head(b, frame),
                (Peer::Route(_), Some(origin)) => {
                    route_wire::encode_origin_msg_head(b, origin, account, frame)
                }
                (Peer::Route(_), None) => route_wire::encode_msg_head(b, account, frame),
            }
        }))
    }

    /// Sends a traced message on as the next hop (`Nats-Trace-Hop`), and notes the egress.
    #[cold]
    fn send_traced(
        &self,
        account: &Account,
        msg: &Message<'_>,
        out: &mut Deliveries,
        mut trace: Box<MsgTrace>,
    ) -> bool {
        let to = self.to.conn();
        let (kind, name) = match self.to {
            Peer::Route(route) => (msgtrace::kind::ROUTER, route.remote_name.clone()),
            Peer::Leaf(leaf) => (msgtrace::kind::LEAF, leaf.remote_name.clone()),
        };
        if !to.may_receive(msg.subject) {
            trace.peer_egress(
                kind,
                to.cid,
                name,
                None,
                Some(msgtrace::error::PUB_VIOLATION),
            );
            out.msg_trace = Some(trace);
            return false;
        }
        let hop = trace.next_hop();
        // A peer older than message tracing gets no trace-only message, and sends no event
        // for the one it is given (nats-server's `msgTraceSupport`); the hop is counted.
        let unsupported = matches!(self.to, Peer::Route(route) if !route.traces);
        if unsupported && trace.only {
            let why = Some(msgtrace::error::ONLY_NO_SUPPORT);
            trace.peer_egress(kind, to.cid, name, Some(hop), why);
            out.msg_trace = Some(trace);
            return false;
        }
        let header_len = msg.header_len.unwrap_or(0);
        let block = msgtrace::with_hop(&msg.message[..header_len], &hop);
        let mut message = Vec::with_capacity(block.len() + msg.message.len() - header_len);
        message.extend_from_slice(&block);
        message.extend_from_slice(&msg.message[header_len..]);
        let hopped = Message {
            header_len: Some(block.len()),
            message: &message,
            ..*msg
        };
        let sent = self.send_frame(account, &hopped, out);
        let why = unsupported.then_some(msgtrace::error::NO_SUPPORT);
        trace.peer_egress(kind, to.cid, name, Some(hop), why);
        out.msg_trace = Some(trace);
        sent
    }
}

/// Delivers one message to one subscription of `account`. Returns whether it was taken.
#[inline]
pub fn deliver(
    account: &Account,
    sub: &Arc<Subscription>,
    msg: &Message<'_>,
    out: &mut Deliveries,
    skip: Option<&Arc<Connection>>,
) -> bool {
    match &sub.target {
        Target::Client(to) => deliver_to_client(account, sub, to, msg, out, skip),
        // Routes and leafnodes are reached through `deliver_all`, one frame per message.
        Target::Route(_) | Target::Leaf(_) => false,
        Target::Internal(internal) => {
            // A trace-only message reaches no service, stream or import (an import notes
            // where it would have gone).
            if out.trace && out.msg_trace.as_ref().is_some_and(|t| t.only) {
                internal.trace_only(msg, out);
                return false;
            }
            let Some(last) = sub.claim_delivery() else {
                return false;
            };
            if last {
                account.unsubscribe(sub);
            }
            internal.deliver(sub, msg, out)
        }
    }
}

/// Appends one MSG/HMSG to a client's outbound queue.
#[inline]
fn deliver_to_client(
    account: &Account,
    sub: &Arc<Subscription>,
    to: &Arc<Connection>,
    msg: &Message<'_>,
    out: &mut Deliveries,
    skip: Option<&Arc<Connection>>,
) -> bool {
    if out.trace {
        return deliver_observed(account, sub, to, msg, out, skip);
    }
    append_to_client(account, sub, to, msg, out, skip)
}

/// The delivery itself. Kept apart from [`deliver_to_client`]'s check so that the observed
/// path calls it without recursing (a recursive `deliver_to_client` would not be inlined
/// into the publish loop).
#[inline(always)]
fn append_to_client(
    account: &Account,
    sub: &Arc<Subscription>,
    to: &Arc<Connection>,
    msg: &Message<'_>,
    out: &mut Deliveries,
    skip: Option<&Arc<Connection>>,
) -> bool {
    if skip.is_some_and(|skip| Arc::ptr_eq(to, skip)) {
        return false;
    }
    let Message {
        subject,
        reply,
        header_len,
        message,
    } = *msg;
    if !to.may_receive(subject) {
        return false;
    }
    let Some(last) = sub.claim_delivery() else {
        return false;
    };
    if let Some(reply) = reply {
        to.record_reply(reply);
    }
    let appended = match header_len {
        _ if out.shared.is_some() => append_shared(sub, to, msg, out),
        Some(header_len) if to.headers.load(Ordering::Relaxed) => {
            to.outbound.append(Some(message.len()), |b| {
                protocol::encode_hmsg(b, subject, &sub.sid, reply, header_len, message)
            })
        }
        // A subscriber without header support gets the payload alone, as from nats-server.
        Some(header_len) => to.outbound.append(Some(message.len() - header_len), |b| {
            protocol::encode_msg(b, subject, &sub.sid, reply, &message[header_len..])
        }),
        None => to.outbound.append(Some(message.len()), |b| {
            protocol::encode_msg(b, subject, &sub.sid, reply, message)
        }),
    };
    out.appended(appended, to);
    if last {
        account.unsubscribe(sub);
        let mut subs = to.subs();
        if subs.get(&sub.sid).is_some_and(|s| Arc::ptr_eq(s, sub)) {
            subs.remove(&sub.sid);
        }
    }
    appended != Appended::Dropped
}

/// Appends a MSG/HMSG whose payload is shared with the read buffer it came in (a large one):
/// only the control line is copied. Falls back to a copy when the message is not the one read.
#[inline(never)]
fn append_shared(
    sub: &Subscription,
    to: &Connection,
    msg: &Message<'_>,
    out: &Deliveries,
) -> Appended {
    let Message {
        subject,
        reply,
        header_len,
        message,
    } = *msg;
    let sid = &sub.sid;
    match header_len {
        Some(h) if to.headers.load(Ordering::Relaxed) => match out.shared_part(message) {
            Some(part) => to.outbound.append_shared(message.len(), part, |b| {
                protocol::encode_hmsg_head(b, subject, sid, reply, h, message.len())
            }),
            None => to.outbound.append(Some(message.len()), |b| {
                protocol::encode_hmsg(b, subject, sid, reply, h, message)
            }),
        },
        _ => {
            let payload = &message[header_len.unwrap_or(0)..];
            match out.shared_part(payload) {
                Some(part) => to.outbound.append_shared(payload.len(), part, |b| {
                    protocol::encode_msg_head(b, subject, sid, reply, payload.len())
                }),
                None => to.outbound.append(Some(payload.len()), |b| {
                    protocol::encode_msg(b, subject, sid, reply, payload)
                }),
            }
        }
    }
}

/// [`deliver_to_client`] watched: logged for `-V`, noted in the message's trace (and held
/// back from applications for a trace-only message).
#[cold]
#[inline(never)]
fn deliver_observed(
    account: &Account,
    sub: &Arc<Subscription>,
    to: &Arc<Connection>,
    msg: &Message<'_>,
    out: &mut Deliveries,
    skip: Option<&Arc<Connection>>,
) -> bool {
    let trace = out.msg_trace.take();
    let refused = match trace {
        None => None,
        Some(_) if skip.is_some_and(|skip| Arc::ptr_eq(to, skip)) => Some(msgtrace::error::NO_ECHO),
        Some(_) if !to.may_receive(msg.subject) => Some(msgtrace::error::SUB_DENY),
        Some(_) => None,
    };
    let only = trace.as_ref().is_some_and(|t| t.only);
    let took = match refused {
        Some(_) => false,
        None if only => true,
        None => append_to_client(account, sub, to, msg, out, skip),
    };
    // Protocol tracing (`-V`) logs what was really sent.
    if took && !only && trace.as_ref().map_or(true, |t| t.log) {
        trace_delivery(sub, to, msg);
    }
    if let Some(mut trace) = trace {
        let error = refused.or((!took).then_some(msgtrace::error::CLIENT_CLOSED));
        trace.client_egress(
            to.cid,
            to.meta().name,
            &to.account().name,
            &sub.subject,
            sub.queue.as_deref(),
            error,
        );
        out.msg_trace = Some(trace);
    }
    took
}

fn trace_delivery(sub: &Subscription, to: &Connection, msg: &Message<'_>) {
    let lossy = String::from_utf8_lossy;
    let reply = msg
        .reply
        .map(|r| format!(" {}", lossy(r)))
        .unwrap_or_default();
    let desc = to.desc();
    let sid = lossy(&sub.sid);
    let subject = lossy(msg.subject);
    let len = msg.message.len();
    match msg.header_len {
        Some(h) if to.headers.load(Ordering::Relaxed) => {
            trace!("{desc} - ->> [HMSG {subject} {sid}{reply} {h} {len}]")
        }
        Some(h) => trace!("{desc} - ->> [MSG {subject} {sid}{reply} {}]", len - h),
        None => trace!("{desc} - ->> [MSG {subject} {sid}{reply} {len}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(cid: u64) -> Arc<Connection> {
        let account = Arc::new(Account::new("$G"));
        let addr = "127.0.0.1:1".parse().unwrap();
        // Backlogged past 100 bytes (a sixteenth of max_pending).
        Arc::new(Connection::new(cid, 1600, "test", addr, account))
    }

    #[test]
    fn packed_parts_share_a_chunk_until_it_is_full() {
        let mut out = Deliveries::default();
        let part = [7u8; 1000];
        let first = out.pack(&part);
        let second = out.pack(b"second");
        assert_eq!(&first[..], &part[..]);
        assert_eq!(&second[..], b"second");
        // One after the other in one allocation.
        assert_eq!(
            second.as_ptr() as usize,
            first.as_ptr() as usize + part.len()
        );
        // Filling the chunk starts another; the parts already given keep their bytes.
        let fill: Vec<Bytes> = (0..PACK_CHUNK / part.len())
            .map(|_| out.pack(&part))
            .collect();
        let last = fill.last().unwrap();
        let before = &fill[fill.len() - 2];
        assert_ne!(
            last.as_ptr() as usize,
            before.as_ptr() as usize + part.len()
        );
        assert!(fill.iter().all(|b| b[..] == part[..]));
        assert_eq!(&first[..], &part[..]);
        // A large part and an empty one are not packed.
        let large = out.pack(&[1u8; PACK_MAX + 1]);
        assert_eq!(large.len(), PACK_MAX + 1);
        let after = out.pack(b"x");
        assert_eq!(after.as_ptr() as usize, last.as_ptr() as usize + part.len());
        assert!(out.pack(b"").is_empty());
    }

    fn deliver(out: &mut Deliveries, to: &Arc<Connection>, bytes: usize) {
        let appended = to
            .outbound
            .append(Some(bytes), |b| b.extend_from_slice(&vec![b'x'; bytes]));
        out.appended(appended, to);
    }

    fn waits_for(out: &Deliveries) -> Vec<u64> {
        out.backlogged.iter().map(|c| c.cid).collect()
    }

    #[test]
    fn a_publisher_waits_for_a_backlogged_subscriber_only_when_none_keeps_up() {
        // Fan-in: the only subscriber is behind; the publisher waits for it.
        let (slow, fast) = (conn(1), conn(2));
        let mut out = Deliveries::default();
        deliver(&mut out, &slow, 200);
        out.pacing();
        assert_eq!(waits_for(&out), [1]);

        // Beside a subscriber keeping up (before or after it in the batch), it does not.
        for fast_first in [false, true] {
            let mut out = Deliveries::default();
            if fast_first {
                deliver(&mut out, &fast, 10);
            }
            deliver(&mut out, &slow, 10);
            if !fast_first {
                deliver(&mut out, &fast, 10);
            }
            out.pacing();
            assert_eq!(
                waits_for(&out),
                Vec::<u64>::new(),
                "fast first: {fast_first}"
            );
        }

        // One that fell behind during the batch was keeping up only itself: waited for.
        let lagging = conn(3);
        let mut out = Deliveries::default();
        deliver(&mut out, &lagging, 10);
        deliver(&mut out, &lagging, 200);
        out.pacing();
        assert_eq!(waits_for(&out), [3]);
        // The record starts over with each batch.
        out.backlogged.clear();
        deliver(&mut out, &slow, 10);
        out.pacing();
        assert_eq!(waits_for(&out), [1]);
    }

    /// Lets `conn`'s writer write everything queued, as a subscriber reading would.
    fn drain(conn: &Connection) {
        let (mut batch, mut chunks) = (bytes::BytesMut::new(), Vec::new());
        conn.outbound.take(&mut batch, &mut chunks);
        let n = batch.len() + chunks.iter().map(|c| c.len()).sum::<usize>();
        conn.outbound.wrote(n);
        conn.outbound.written();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_subscriber_is_not_waited_for_once_the_fast_one_beside_it_caught_up() {
        let (stuck, fast) = (conn(1), conn(2));
        // The fast one has written before; the stuck one never has.
        deliver(&mut Deliveries::default(), &fast, 10);
        drain(&fast);
        let mut out = Deliveries::default();
        // Both backlogged in the same batch (the stuck one first): the publisher waits.
        deliver(&mut out, &stuck, 200);
        deliver(&mut out, &fast, 200);
        out.pacing();
        assert_eq!(waits_for(&out), [1, 2]);
        let reader = tokio::spawn({
            let fast = fast.clone();
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                drain(&fast);
            }
        });
        let began = tokio::time::Instant::now();
        out.wait_for_backlogged().await;
        reader.await.unwrap();
        // Back once the fast one drained and the grace ran out, not after the stuck one's
        // `STUCK_AFTER`.
        let waited = began.elapsed();
        assert!(waited >= std::time::Duration::from_millis(5) + GRACE);
        assert!(waited < std::time::Duration::from_millis(6) + GRACE);
        assert!(out.backlogged.is_empty());
        assert_eq!(fast.outbound.pace(), Pace::KeepingUp);
        assert_eq!(stuck.outbound.pace(), Pace::Backlogged);
        assert!(!stuck.outbound.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_subscriber_is_waited_for_beside_one_that_caught_up_only_for_a_grace() {
        for (every_ms, waited) in [(1, true), (20, false)] {
            let (slow, fast) = (conn(1), conn(2));
            let mut out = Deliveries::default();
            deliver(&mut out, &fast, 200);
            deliver(&mut out, &slow, 200);
            out.pacing();
            let readers = tokio::spawn({
                let (slow, fast) = (slow.clone(), fast.clone());
                async move {
                    // Both read: the fast one all at once, the slow one a little at a time.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    let (mut batch, mut chunks) = (bytes::BytesMut::new(), Vec::new());
                    slow.outbound.take(&mut batch, &mut chunks);
                    slow.outbound.wrote(50);
                    drain(&fast);
                    for _ in 0..3 {
                        tokio::time::sleep(std::time::Duration::from_millis(every_ms)).await;
                        slow.outbound.wrote(50);
                    }
                }
            });
            out.wait_for_backlogged().await;
            if waited {
                // It caught up within the grace: the publisher went on only then.
                assert!(slow.outbound.pending_bytes() <= 100);
                assert_eq!(slow.outbound.pace(), Pace::KeepingUp);
            } else {
                // Too slow for the grace: not waited for any longer this time.
                assert!(slow.outbound.pending_bytes() > 100);
                assert_eq!(slow.outbound.pace(), Pace::Backlogged);
            }
            readers.await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_far_behind_is_not_waited_for_beside_one_that_caught_up() {
        let (stuck, fast) = (conn(1), conn(2));
        let mut out = Deliveries::default();
        deliver(&mut out, &fast, 200);
        // More than twice the backlog limit (100) behind.
        deliver(&mut out, &stuck, 450);
        out.pacing();
        let readers = tokio::spawn({
            let (stuck, fast) = (stuck.clone(), fast.clone());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                // The stuck one's socket still takes a little now and then.
                let (mut batch, mut chunks) = (bytes::BytesMut::new(), Vec::new());
                stuck.outbound.take(&mut batch, &mut chunks);
                stuck.outbound.wrote(10);
                drain(&fast);
                for _ in 0..3 {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    stuck.outbound.wrote(10);
                }
            }
        });
        let began = tokio::time::Instant::now();
        out.wait_for_backlogged().await;
        // Back as soon as the fast one drained (not after the grace), the stuck one still far
        // behind and lagging.
        assert!(began.elapsed() < std::time::Duration::from_millis(2));
        assert!(stuck.outbound.pending_bytes() > 400);
        // Lagging: nobody waits for it, and it does not count as keeping up.
        assert_eq!(stuck.outbound.pace(), Pace::Behind);
        readers.await.unwrap();

        // Neither alone nor beside the fast one, until its writer brings it back under its
        // limit: then it is waited for again.
        deliver(&mut out, &stuck, 10);
        out.pacing();
        assert!(waits_for(&out).is_empty());
        deliver(&mut out, &fast, 200);
        out.pacing();
        assert_eq!(waits_for(&out), [2]);
        out.backlogged.clear();
        drain(&fast);
        drain(&stuck);
        assert_eq!(stuck.outbound.pace(), Pace::KeepingUp);
        deliver(&mut out, &stuck, 200);
        out.pacing();
        assert_eq!(waits_for(&out), [1]);
    }

    #[test]
    fn a_backlogged_route_is_always_waited_for() {
        let (route, fast) = (conn(1), conn(2));
        route
            .outbound
            .set_patience(std::time::Duration::from_secs(1));
        let mut out = Deliveries::default();
        deliver(&mut out, &route, 200);
        deliver(&mut out, &fast, 10);
        out.pacing();
        assert_eq!(waits_for(&out), [1]);
    }
}
