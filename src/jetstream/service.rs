//! JetStream's task: the internal subscriptions (`$JS.API.>` in every account, and each
//! stream's subjects) copy what they receive into one staging area, handed to one task as a
//! whole at the end of each publisher's batch; the task answers the requests and stores the
//! messages, then publishes the responses and PubAcks in the account, waking each client's
//! writer once for all it sent in a batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use super::advisory::{new_id, ApiAudit, AuditClient, API_AUDIT, API_AUDIT_TYPE};
use super::api::{AccountJs, API_PREFIX};
use super::consumer::{AckPolicy, Action};
use crate::engine::account::Account;
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::msgtrace::JsTrace;
use crate::engine::stage::Stage;
use crate::engine::stats::ConnSnapshot;
use crate::engine::subscription::{Internal, Subscription};
use crate::state::events::SysInput;
use crate::state::jetstream::{JetStreamConfig, JetStreamStats, JszQuery};
use crate::state::Shared;

/// How often `max_age` is applied, and consumers redeliver and expire pull requests.
const EXPIRE_EVERY: Duration = Duration::from_millis(50);

/// Inputs handled in a row, once some have come, before the totals and advisories are brought
/// up to date and new messages offered to the consumers: what publishers have queued meanwhile
/// (whole batches: this many, or a little more).
const BATCH: usize = 256;

/// Bytes of consumer messages appended to the clients before their writers are woken, when a
/// pull batch is larger: the writer starts on them while the rest is appended.
const WAKE_EVERY: usize = 256 * 1024;

/// What the subscriptions hand to the task.
#[derive(Debug)]
enum Input {
    /// A `$JS.API.>` request.
    Api {
        account: Arc<str>,
        subject: Bytes,
        reply: Option<Bytes>,
        header: Bytes,
        body: Bytes,
        /// The publishing client's cid, for the audit advisory.
        publisher: Option<u64>,
    },
    /// A pull request to a consumer.
    Next {
        account: Arc<str>,
        stream: Arc<str>,
        consumer: Arc<str>,
        reply: Option<Bytes>,
        body: Bytes,
    },
    /// A direct get on a stream.
    Direct {
        account: Arc<str>,
        stream: Arc<str>,
        subject: Bytes,
        reply: Option<Bytes>,
        body: Bytes,
    },
    /// An acknowledgement to a consumer.
    Ack {
        account: Arc<str>,
        subject: Bytes,
        reply: Option<Bytes>,
        body: Bytes,
    },
    /// An answer to a push consumer's flow control request (`$JS.FC.<stream>.<consumer>.<id>`).
    FlowControl {
        account: Arc<str>,
        stream: Arc<str>,
        consumer: Arc<str>,
        subject: Bytes,
    },
    /// A message published to a stream's subject.
    Publish {
        account: Arc<str>,
        stream: Arc<str>,
        subject: Bytes,
        reply: Option<Bytes>,
        header: Bytes,
        data: Bytes,
        /// A traced message (`Nats-Trace-Dest`): where the stream's outcome goes.
        trace: Option<Arc<JsTrace>>,
    },
}

/// What one internal subscription stands for.
#[derive(Debug)]
enum Role {
    Api,
    /// A stream's subjects, and whether its payloads may be packed ([`Deliveries::pack`]),
    /// which follows the stream's configuration.
    Stream(Arc<str>, Arc<AtomicBool>),
    /// A consumer's `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
    Next(Arc<str>, Arc<str>),
    /// A consumer's `$JS.ACK.<stream>.<consumer>.>`.
    Ack,
    /// A consumer's `$JS.FC.<stream>.<consumer>.*`.
    FlowControl(Arc<str>, Arc<str>),
    /// A stream's `$JS.API.DIRECT.GET.<stream>` and `.<stream>.>`.
    Direct(Arc<str>),
}

/// The prefix of direct gets, which only the stream's own subscriptions answer (no
/// responders when it does not exist or does not allow them).
const DIRECT_PREFIX: &[u8] = b"$JS.API.DIRECT.GET.";

/// The prefix of pull requests, which only the consumer's own subscription answers: a
/// request for a consumer that does not exist gets no responders, as from nats-server.
const NEXT_PREFIX: &[u8] = b"$JS.API.CONSUMER.MSG.NEXT.";

/// What every inbox receives, staged until the publisher's batch ends, then handed to the
/// task in one piece (see [`crate::engine::stage`]). One for all of the task's inboxes, so
/// that what a publisher sends reaches the task in the order it was sent, whichever
/// subscriptions it matched.
#[derive(Debug)]
struct Staging {
    inputs: std::sync::Mutex<Vec<Input>>,
    tx: UnboundedSender<Vec<Input>>,
}

impl Stage for Staging {
    fn release(&self) {
        // Sent under the lock: two publishers releasing at once must not reorder what either
        // staged.
        let mut inputs = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        if !inputs.is_empty() {
            let _ = self.tx.send(std::mem::take(&mut *inputs));
        }
    }
}

/// An internal subscriber: copies the message into the staging area (it runs on the
/// publisher's task, so it must not do the work itself).
#[derive(Debug)]
struct Inbox {
    staging: Arc<Staging>,
    account: Arc<str>,
    role: Role,
}

impl Inbox {
    /// A subscription of `account` to `subject` that hands what it gets to the service as
    /// `role`.
    fn subscription(
        staging: &Arc<Staging>,
        account: &Arc<str>,
        role: Role,
        subject: &str,
    ) -> Arc<Subscription> {
        let inbox = Inbox {
            staging: staging.clone(),
            account: account.clone(),
            role,
        };
        Arc::new(Subscription::internal(Arc::new(inbox), subject, None))
    }
}

impl Internal for Inbox {
    fn deliver(&self, _sub: &Subscription, msg: &Message<'_>, out: &mut Deliveries) -> bool {
        let split = msg.header_len.unwrap_or(0).min(msg.message.len());
        let (header, data) = msg.message.split_at(split);
        let subject = Bytes::copy_from_slice(msg.subject);
        let reply = msg.reply.map(Bytes::copy_from_slice);
        let input = match &self.role {
            Role::Api
                if msg.subject.starts_with(NEXT_PREFIX)
                    || msg.subject.starts_with(DIRECT_PREFIX) =>
            {
                return false
            }
            Role::Direct(stream) => Input::Direct {
                account: self.account.clone(),
                stream: stream.clone(),
                subject,
                reply,
                body: Bytes::copy_from_slice(data),
            },
            Role::Next(stream, consumer) => Input::Next {
                account: self.account.clone(),
                stream: stream.clone(),
                consumer: consumer.clone(),
                reply,
                body: Bytes::copy_from_slice(data),
            },
            Role::FlowControl(stream, consumer) => Input::FlowControl {
                account: self.account.clone(),
                stream: stream.clone(),
                consumer: consumer.clone(),
                subject,
            },
            Role::Ack => Input::Ack {
                account: self.account.clone(),
                subject,
                reply,
                body: Bytes::copy_from_slice(data),
            },
            Role::Api => Input::Api {
                account: self.account.clone(),
                subject,
                reply,
                header: Bytes::copy_from_slice(header),
                body: Bytes::copy_from_slice(data),
                publisher: out.publisher,
            },
            Role::Stream(stream, pack) => {
                let (header, data) = match pack.load(Ordering::Relaxed) {
                    true => (out.pack(header), out.pack(data)),
                    false => (Bytes::copy_from_slice(header), Bytes::copy_from_slice(data)),
                };
                Input::Publish {
                    account: self.account.clone(),
                    stream: stream.clone(),
                    subject,
                    reply,
                    header,
                    data,
                    trace: match out.msg_trace.as_mut() {
                        Some(trace) if out.trace => Some(trace.jetstream(stream)),
                        _ => None,
                    },
                }
            }
        };
        if self.staging.tx.is_closed() {
            return false;
        }
        self.staging
            .inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(input);
        out.staged.note(&self.staging);
        true
    }

    fn trace_only(&self, msg: &Message<'_>, out: &mut Deliveries) {
        if let (Role::Stream(stream, _), Some(trace)) = (&self.role, out.msg_trace.as_mut()) {
            trace.jetstream_only(stream, msg.subject);
        }
    }
}

/// A stream's subjects, whether its payloads are packed, and the subscriptions made for them.
type Capture = (Vec<String>, Arc<AtomicBool>, Vec<Arc<Subscription>>);

/// One account's JetStream with the subscriptions capturing its streams.
struct Enabled {
    account: Arc<Account>,
    js: AccountJs,
    /// Each stream's subscriptions, with the subjects they were made for and whether its
    /// payloads may be packed (shared with the subscriptions, updated with the stream).
    captures: HashMap<String, Capture>,
    /// Each consumer's subscriptions (pull requests and acks), by (stream, consumer).
    consumers: HashMap<(String, String), Vec<Arc<Subscription>>>,
    /// The direct get subscriptions of streams that allow them.
    directs: HashMap<String, Vec<Arc<Subscription>>>,
    /// The account's sublist generation when push consumers were last told who listens on
    /// their deliver subjects (`None`: tell them again).
    interest_generation: Option<u64>,
    /// Messages were stored since the consumers last looked: they may take them.
    stored: bool,
}

/// JetStream subscribed in every account and not yet running.
pub struct Service {
    shared: Arc<Shared>,
    /// `<store_dir>/jetstream`.
    store_dir: std::path::PathBuf,
    /// `sync_interval: always`.
    sync_always: bool,
    /// The options generation the accounts were last set up for.
    opts_generation: u64,
    /// How often file streams are synced (`sync_interval`).
    sync_every: Duration,
    /// The JetStream `domain`, for PubAcks and account info.
    domain: Option<Arc<str>>,
    staging: Arc<Staging>,
    rx: UnboundedReceiver<Vec<Input>>,
    /// The monitor's requests for each account's detail (`/jsz`).
    jsz: UnboundedReceiver<JszQuery>,
    accounts: BTreeMap<Arc<str>, Enabled>,
    /// The replies to publishes taken since the last group commit ([`Service::commit`]).
    held_acks: Vec<HeldAck>,
    /// What the current batch of inputs sent (responses, PubAcks, messages to consumers):
    /// the writers it appended to are woken once, when the batch ends or a group of PubAcks
    /// is out ([`Service::flush`]), not once per message (so that a client gets a batch's
    /// PubAcks or a pull request's messages in one write, not one each).
    out: Deliveries,
}

/// A publish's reply held until its stream's records are written.
struct HeldAck {
    account: Arc<str>,
    stream: Arc<str>,
    /// Where the reply goes; none when nobody is to hear of it.
    reply: Option<Bytes>,
    ack: super::api::Response,
}

/// Subscribes `$JS.API.>` in every account but the system account (so that requests are
/// answered as soon as the server is bound), after recovering each account's file streams
/// from `config.store_dir`; [`Service::spawn`] runs it.
pub fn start(shared: &Arc<Shared>, config: &super::Config) -> std::io::Result<Service> {
    let (tx, rx) = unbounded_channel();
    let (jsz_tx, jsz) = unbounded_channel();
    shared.jetstream.start(
        JetStreamConfig {
            max_memory: config.max_memory,
            max_storage: config.max_store,
            store_dir: config.store_dir.display().to_string(),
            sync_interval: config.sync_interval.as_nanos() as u64,
            sync_always: config.sync_always,
            domain: config.domain.clone().unwrap_or_default(),
            strict: config.strict,
            api_level: super::API_LEVEL,
        },
        jsz_tx,
    );
    let mut service = Service {
        shared: shared.clone(),
        store_dir: config.store_dir.clone(),
        sync_always: config.sync_always,
        opts_generation: shared.opts_generation(),
        sync_every: config.sync_interval.max(Duration::from_millis(10)),
        domain: config.domain.as_deref().map(Arc::from),
        staging: Arc::new(Staging {
            inputs: std::sync::Mutex::new(Vec::new()),
            tx,
        }),
        rx,
        jsz,
        accounts: BTreeMap::new(),
        held_acks: Vec::new(),
        out: Deliveries::default(),
    };
    service.sync_accounts()?;
    service.report_stats();
    Ok(service)
}

impl Service {
    /// Spawns the task.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(mut self) {
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        let mut sync = tokio::time::interval_at(
            tokio::time::Instant::now() + self.sync_every,
            self.sync_every,
        );
        loop {
            tokio::select! {
                _ = sync.tick() => {
                    for enabled in self.accounts.values_mut() {
                        enabled.js.sync();
                    }
                }
                inputs = self.rx.recv() => match inputs {
                    Some(inputs) => {
                        let mut taken = inputs.len();
                        inputs.into_iter().for_each(|input| self.take(input));
                        while taken < BATCH {
                            let Ok(inputs) = self.rx.try_recv() else {
                                break;
                            };
                            taken += inputs.len();
                            inputs.into_iter().for_each(|input| self.take(input));
                        }
                        self.commit();
                        self.offer_stored();
                        self.publish_advisories();
                        self.flush();
                        self.report_stats();
                    }
                    None => break,
                },
                Some(query) = self.jsz.recv() => {
                    let _ = query.reply.send(self.jsz_accounts(&query.detail));
                }
                _ = expire.tick() => {
                    let generation = self.shared.opts_generation();
                    if generation != self.opts_generation {
                        self.opts_generation = generation;
                        if let Err(err) = self.sync_accounts() {
                            tracing::error!("JetStream: setting up reloaded accounts: {err}");
                        }
                    }
                    let now = now();
                    for enabled in self.accounts.values_mut() {
                        enabled.js.expire(now);
                        enabled.refresh_interest(now);
                        let actions = enabled.js.tick(now);
                        enabled.perform(actions, &mut self.out);
                        enabled.sync_captures(&self.staging);
                        enabled.js.persist_consumers();
                    }
                    self.publish_advisories();
                    self.flush();
                    self.report_stats();
                }
            }
        }
    }

    /// Sets JetStream up for the accounts the options in force configure: each account not
    /// yet known gets `$JS.API.>` (answered 503 when JetStream is not enabled for it), an
    /// account a reload enabled it for recovers its streams, and limits follow the options.
    fn sync_accounts(&mut self) -> std::io::Result<()> {
        let opts = self.shared.opts();
        for account in self.shared.router.accounts() {
            if account.is_system.load(Ordering::Relaxed) {
                continue;
            }
            let name: &str = &account.name;
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                if !self.accounts.contains_key(name) {
                    tracing::error!(
                        "JetStream is not enabled for account {name:?}: not a directory name"
                    );
                }
                continue;
            }
            // As nats-server: with accounts configured, only those with `jetstream: enabled`
            // have it; without, the global account does.
            let configured = opts.accounts.iter().find(|a| a.name == name);
            let enabled = opts.accounts.is_empty() || configured.is_some_and(|a| a.jetstream);
            let limits = configured.map(|a| a.jetstream_limits).unwrap_or_default();
            if let Some(known) = self.accounts.get_mut(name) {
                if known.js.enabled() {
                    known.js.limits = limits;
                    continue;
                }
                if !enabled {
                    continue;
                }
            }
            let js = if enabled {
                let dir = self.store_dir.join(name).join("streams");
                let (mut js, log) = AccountJs::open(dir, self.sync_always, now())?;
                for line in log {
                    tracing::info!("  {line} in account '{name}'");
                }
                js.limits = limits;
                js.domain = self.domain.clone();
                js
            } else {
                AccountJs::disabled()
            };
            if let Some(known) = self.accounts.get_mut(name) {
                known.js = js;
                known.sync_captures(&self.staging);
                continue;
            }
            let subject = format!("{API_PREFIX}>");
            account.subscribe(Inbox::subscription(
                &self.staging,
                &account.name,
                Role::Api,
                &subject,
            ));
            let mut enabled = Enabled {
                account: account.clone(),
                js,
                captures: HashMap::new(),
                consumers: HashMap::new(),
                directs: HashMap::new(),
                interest_generation: None,
                stored: false,
            };
            enabled.sync_captures(&self.staging);
            self.accounts.insert(account.name.clone(), enabled);
        }
        Ok(())
    }

    /// Lets the consumers of each account that stored messages take them (waiting pull
    /// requests, push consumers).
    fn offer_stored(&mut self) {
        for enabled in self.accounts.values_mut() {
            if std::mem::take(&mut enabled.stored) {
                let now = now();
                enabled.refresh_interest(now);
                let actions = enabled.js.tick(now);
                enabled.perform(actions, &mut self.out);
            }
        }
    }

    /// Wakes the writers of the connections sent to since the last call.
    fn flush(&mut self) {
        self.out.flush(None);
        // Nobody waits for a backlogged client here: it is left to `max_pending`.
        self.out.backlogged.clear();
    }

    /// Publishes each account's advisories to whoever listens.
    fn publish_advisories(&mut self) {
        for enabled in self.accounts.values_mut() {
            for advisory in enabled.js.take_advisories() {
                let subject = advisory.subject();
                if has_interest(&enabled.account, &subject) {
                    let body = advisory.encode(&new_id(), &super::api::time(now()));
                    send(&enabled.account, subject.as_bytes(), &body, &mut self.out);
                }
            }
        }
    }

    /// Hands the totals over every account to the monitor.
    fn report_stats(&self) {
        let mut stats = JetStreamStats::default();
        for enabled in self.accounts.values() {
            enabled.js.add_usage(&mut stats);
        }
        self.shared.jetstream.set_stats(stats);
    }

    /// Each account with JetStream (or only the one asked for) as `/jsz` shows it.
    fn jsz_accounts(&self, detail: &crate::state::jetstream::JszDetail) -> Vec<serde_json::Value> {
        let now = now();
        self.accounts
            .iter()
            .filter(|(name, enabled)| {
                enabled.js.enabled() && detail.account.as_deref().map_or(true, |a| a == &***name)
            })
            .map(|(name, enabled)| {
                enabled
                    .js
                    .jsz_account(name, detail, now, &self.shared.server_name)
            })
            .collect()
    }

    /// Handles one input of a batch. Publishes are group-committed: their records are
    /// written together when the batch ends or when anything else comes (which may read or
    /// answer about what they stored), and only then acknowledged.
    fn take(&mut self, input: Input) {
        if !matches!(input, Input::Publish { .. }) {
            self.commit();
        }
        self.handle(input);
    }

    /// Writes the records of the publishes taken since the last call, one `write(2)` per
    /// stream, then sends their replies: each PubAck once its message is in the log, or
    /// JetStream's store failure when the write failed (none of the group is then kept).
    /// The group's PubAcks go out together (one wake-up of each publisher's writer).
    fn commit(&mut self) {
        if self.held_acks.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held_acks);
        let mut committed: Vec<(&str, &str, Option<super::errors::ApiError>)> = Vec::new();
        for ack in &held {
            if committed
                .iter()
                .any(|(a, s, _)| *a == &*ack.account && *s == &*ack.stream)
            {
                continue;
            }
            let failed = self
                .accounts
                .get_mut(&ack.account)
                .and_then(|enabled| enabled.js.streams.get_mut(&*ack.stream))
                .and_then(|stream| stream.commit().err());
            committed.push((&ack.account, &ack.stream, failed));
        }
        for ack in &held {
            let (Some(reply), Some(enabled)) = (&ack.reply, self.accounts.get(&ack.account)) else {
                continue;
            };
            let failed = committed
                .iter()
                .find(|(a, s, _)| *a == &*ack.account && *s == &*ack.stream)
                .and_then(|(_, _, failed)| failed.clone());
            match failed {
                Some(err) => send(
                    &enabled.account,
                    reply,
                    &AccountJs::failed_pub_ack(&ack.stream, err),
                    &mut self.out,
                ),
                None => send(&enabled.account, reply, &ack.ack, &mut self.out),
            }
        }
        self.flush();
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Api {
                account,
                subject,
                reply,
                header,
                body,
                publisher,
            } => {
                let server_name = self.shared.server_name.clone();
                let Some(enabled) = self.accounts.get_mut(&account) else {
                    return;
                };
                let subject = String::from_utf8_lossy(&subject);
                // `push_bound` in an answer reflects the subscriptions made before the request.
                enabled.refresh_interest(now());
                let Some(response) =
                    enabled
                        .js
                        .request(&subject, &header, &body, now(), &server_name)
                else {
                    return;
                };
                enabled.sync_captures(&self.staging);
                // A consumer created is on disk before the client hears of it.
                enabled.js.persist_consumers();
                if let Some(reply) = reply {
                    send(&enabled.account, &reply, &response, &mut self.out);
                }
                if has_interest(&enabled.account, API_AUDIT) {
                    let client = publisher
                        .and_then(|cid| self.shared.router.connection(cid))
                        .map(|conn| audit_client(&conn.snapshot(false), &server_name))
                        .unwrap_or_default();
                    let (id, timestamp) = (new_id(), super::api::time(now()));
                    let audit = ApiAudit {
                        kind: API_AUDIT_TYPE,
                        id: &id,
                        timestamp: &timestamp,
                        server: &server_name,
                        client,
                        subject: &subject,
                        request: &String::from_utf8_lossy(&body),
                        response: &String::from_utf8_lossy(&response),
                    };
                    let audit = serde_json::to_vec(&audit).unwrap_or_default();
                    send(
                        &enabled.account,
                        API_AUDIT.as_bytes(),
                        &audit,
                        &mut self.out,
                    );
                }
                let mut actions = enabled.js.take_actions();
                // A push consumer created or changed delivers at once to whoever listens.
                enabled.interest_generation = None;
                let now = now();
                enabled.refresh_interest(now);
                actions.extend(enabled.js.tick(now));
                enabled.perform(actions, &mut self.out);
            }
            Input::Publish {
                account,
                stream,
                subject,
                reply,
                header,
                data,
                trace,
            } => {
                let Some(enabled) = self.accounts.get_mut(&account) else {
                    return;
                };
                let subject = String::from_utf8_lossy(&subject);
                if let Some(s) = enabled.js.streams.get_mut(&*stream) {
                    s.defer_writes();
                }
                let Some((no_ack, ack)) =
                    enabled.js.publish(&stream, &subject, header, data, now())
                else {
                    return;
                };
                if let Some(trace) = trace {
                    let shared = &self.shared;
                    trace.stored(stored_or_error(&subject, &ack), |t| {
                        shared.sys.send(SysInput::Trace(t))
                    });
                }
                enabled.stored = true;
                // Sent once the group is written ([`Service::commit`]).
                self.held_acks.push(HeldAck {
                    account,
                    stream,
                    reply: reply.filter(|_| !no_ack),
                    ack,
                });
                // Waiting pull requests and push consumers may take the new message (set
                // above), once the batch it came in is stored (`offer_stored`).
            }
            Input::Next {
                account,
                stream,
                consumer,
                reply,
                body,
            } => {
                let (Some(enabled), Some(reply)) = (self.accounts.get_mut(&account), reply) else {
                    return;
                };
                let reply = String::from_utf8_lossy(&reply);
                let actions = enabled.js.pull(&stream, &consumer, &reply, &body, now());
                enabled.perform(actions, &mut self.out);
            }
            Input::Direct {
                account,
                stream,
                subject,
                reply,
                body,
            } => {
                let (Some(enabled), Some(reply)) = (self.accounts.get(&account), reply) else {
                    return;
                };
                let subject = String::from_utf8_lossy(&subject);
                for (header, data) in enabled.js.direct_get(&stream, &subject, &body) {
                    let mut message = header.clone();
                    message.extend_from_slice(&data);
                    let msg = Message {
                        subject: &reply,
                        reply: None,
                        header_len: Some(header.len()),
                        message: &message,
                    };
                    deliver::publish(&enabled.account, &msg, &mut self.out);
                }
            }
            Input::FlowControl {
                account,
                stream,
                consumer,
                subject,
            } => {
                let Some(enabled) = self.accounts.get_mut(&account) else {
                    return;
                };
                let subject = String::from_utf8_lossy(&subject);
                let now = now();
                enabled.refresh_interest(now);
                let actions = enabled
                    .js
                    .streams
                    .get_mut(&*stream)
                    .and_then(|s| {
                        s.with_consumer(&consumer, |c, store| {
                            c.flow_control_reply(&subject, store, now)
                        })
                    })
                    .unwrap_or_default();
                enabled.perform(actions, &mut self.out);
            }
            Input::Ack {
                account,
                subject,
                reply,
                body,
            } => {
                let Some(enabled) = self.accounts.get_mut(&account) else {
                    return;
                };
                let subject = String::from_utf8_lossy(&subject);
                let now = now();
                enabled.refresh_interest(now);
                let mut actions = enabled.js.ack(&subject, &body, now);
                match (reply, body.strip_prefix(b"+NXT")) {
                    // `+NXT [pull request]`: acknowledged, then a pull answered to the ack's
                    // reply subject.
                    (Some(reply), Some(request)) => {
                        let mut tokens = subject.split('.').skip(2);
                        if let (Some(stream), Some(consumer)) = (tokens.next(), tokens.next()) {
                            let reply = String::from_utf8_lossy(&reply);
                            let request = request.trim_ascii();
                            actions.extend(enabled.js.pull(stream, consumer, &reply, request, now));
                        }
                    }
                    // An ack with a reply subject (a "double ack") is answered, empty, once it
                    // has been processed and, for a file stream, written.
                    (Some(reply), None) => {
                        enabled.js.persist_consumers();
                        send(&enabled.account, &reply, b"", &mut self.out);
                    }
                    (None, _) => {}
                }
                enabled.perform(actions, &mut self.out);
            }
        }
    }
}

impl Enabled {
    /// Sends what the consumers asked for: messages presented with their stored subject and
    /// routed to the pull request's reply subject, and status messages, into `out`. Its
    /// writers are woken when the batch ends, or each [`WAKE_EVERY`] bytes of messages when a
    /// pull batch is larger: a pull batch goes out in one write, not one per message.
    fn perform(&self, actions: Vec<Action>, out: &mut Deliveries) {
        let mut unflushed = 0;
        for action in actions {
            if unflushed >= WAKE_EVERY {
                out.flush(None);
                unflushed = 0;
            }
            match action {
                Action::Deliver {
                    to,
                    subject,
                    ack,
                    header,
                    data,
                } => {
                    // Without headers the payload goes as it is, not copied.
                    let joined;
                    let message: &[u8] = match header.is_empty() {
                        true => &data,
                        false => {
                            let mut both = Vec::with_capacity(header.len() + data.len());
                            both.extend_from_slice(&header);
                            both.extend_from_slice(&data);
                            joined = both;
                            &joined
                        }
                    };
                    unflushed += message.len() + subject.len() + ack.len();
                    let msg = Message {
                        subject: subject.as_bytes(),
                        reply: Some(ack.as_bytes()),
                        header_len: (!header.is_empty()).then_some(header.len()),
                        message,
                    };
                    deliver::publish_presented(&self.account, to.as_bytes(), &msg, out);
                }
                Action::FlowControl { to, reply, header } => {
                    let msg = Message {
                        subject: to.as_bytes(),
                        reply: Some(reply.as_bytes()),
                        header_len: Some(header.len()),
                        message: header.as_bytes(),
                    };
                    deliver::publish(&self.account, &msg, out);
                }
                Action::Status { to, header } => {
                    let msg = Message {
                        subject: to.as_bytes(),
                        reply: None,
                        header_len: Some(header.len()),
                        message: header.as_bytes(),
                    };
                    deliver::publish(&self.account, &msg, out);
                }
            }
        }
    }

    /// Tells each push consumer whether someone listens on its deliver subject (a member of
    /// its deliver group, when it has one), if the account's subscriptions changed since.
    fn refresh_interest(&mut self, now: i64) {
        let generation = self.account.generation();
        if self.interest_generation == Some(generation) {
            return;
        }
        self.interest_generation = Some(generation);
        for stream in self.js.streams.values_mut() {
            for consumer in stream.consumers.values_mut() {
                let Some((subject, group)) = consumer.deliver_target() else {
                    continue;
                };
                let matches = self.account.matches(subject.as_bytes());
                let active = match group {
                    Some(group) => matches.qsubs.iter().any(|q| &*q.name == group.as_bytes()),
                    None => !matches.psubs.is_empty() || !matches.qsubs.is_empty(),
                };
                consumer.set_interest(active, now);
            }
        }
    }

    /// Subscribes the subjects of new or changed streams and unsubscribes those of deleted
    /// or changed ones.
    fn sync_captures(&mut self, staging: &Arc<Staging>) {
        let wanted = self.js.captures();
        let account = &self.account;
        self.captures.retain(|name, (subjects, pack, subs)| {
            let Some((wanted_subjects, wanted_pack)) = wanted.get(name) else {
                account.unsubscribe_all(subs);
                return false;
            };
            if wanted_subjects != subjects {
                account.unsubscribe_all(subs);
                return false;
            }
            pack.store(*wanted_pack, Ordering::Relaxed);
            true
        });
        for (name, (subjects, pack)) in wanted {
            if self.captures.contains_key(&name) {
                continue;
            }
            let stream: Arc<str> = name.as_str().into();
            let pack = Arc::new(AtomicBool::new(pack));
            let subs: Vec<Arc<Subscription>> = subjects
                .iter()
                .map(|subject| {
                    let role = Role::Stream(stream.clone(), pack.clone());
                    Inbox::subscription(staging, &self.account.name, role, subject)
                })
                .collect();
            for sub in &subs {
                self.account.subscribe(sub.clone());
            }
            self.captures.insert(name, (subjects, pack, subs));
        }
        let direct = self.js.direct_streams();
        self.directs.retain(|name, subs| {
            let keep = direct.contains(name);
            if !keep {
                account.unsubscribe_all(subs);
            }
            keep
        });
        for name in direct {
            if self.directs.contains_key(&name) {
                continue;
            }
            let stream: Arc<str> = name.as_str().into();
            let subs: Vec<Arc<Subscription>> = [
                format!("$JS.API.DIRECT.GET.{name}"),
                format!("$JS.API.DIRECT.GET.{name}.>"),
            ]
            .iter()
            .map(|subject| {
                let role = Role::Direct(stream.clone());
                Inbox::subscription(staging, &self.account.name, role, subject)
            })
            .collect();
            for sub in &subs {
                account.subscribe(sub.clone());
            }
            self.directs.insert(name, subs);
        }
        let wanted: Vec<(String, String)> = self.js.consumer_names_all();
        self.consumers.retain(|key, subs| {
            let keep = wanted.contains(key);
            if !keep {
                account.unsubscribe_all(subs);
            }
            keep
        });
        for (stream, consumer) in wanted {
            let key = (stream.clone(), consumer.clone());
            if self.consumers.contains_key(&key) {
                continue;
            }
            let (s, c): (Arc<str>, Arc<str>) = (stream.as_str().into(), consumer.as_str().into());
            let internal = |role: Role, subject: String| {
                Inbox::subscription(staging, &self.account.name, role, &subject)
            };
            let mut subs = vec![internal(
                Role::Next(s.clone(), c.clone()),
                format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            )];
            // As nats-server, a consumer without acks or flow control does not listen for
            // them: a request there gets no responders.
            let config = self
                .js
                .streams
                .get(&stream)
                .and_then(|st| st.consumers.get(&consumer))
                .map(|consumer| &consumer.config);
            if config.is_some_and(|config| config.ack_policy != AckPolicy::None) {
                subs.push(internal(
                    Role::Ack,
                    format!("$JS.ACK.{stream}.{consumer}.>"),
                ));
            }
            if config.is_some_and(|config| config.flow_control) {
                subs.push(internal(
                    Role::FlowControl(s.clone(), c.clone()),
                    format!("$JS.FC.{stream}.{consumer}.*"),
                ));
            }
            for sub in &subs {
                account.subscribe(sub.clone());
            }
            self.consumers.insert(key, subs);
        }
    }
}

/// Whether anyone in `account` subscribes to `subject` (an advisory nobody takes is not
/// built).
fn has_interest(account: &Account, subject: &str) -> bool {
    let matches = account.matches(subject.as_bytes());
    !matches.psubs.is_empty() || !matches.qsubs.is_empty()
}

/// A client as the audit advisory shows it.
fn audit_client(conn: &ConnSnapshot, server: &str) -> AuditClient {
    AuditClient {
        start: conn.start.map(crate::monitor::rfc3339).unwrap_or_default(),
        host: conn.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
        id: conn.cid,
        acc: conn.account.clone(),
        user: conn.user.clone().unwrap_or_default(),
        name: conn.name.clone(),
        lang: conn.lang.clone(),
        ver: conn.version.clone(),
        rtt: conn.rtt.map(|d| d.as_nanos() as u64),
        server: server.to_string(),
        kind: "Client",
        client_type: "nats",
    }
}

/// Publishes `payload` to `subject` in `account`, into `out` (see [`Service::flush`]).
fn send(account: &Account, subject: &[u8], payload: &[u8], out: &mut Deliveries) {
    let msg = Message {
        subject,
        reply: None,
        header_len: None,
        message: payload,
    };
    deliver::publish(account, &msg, out);
}

/// Now, in nanoseconds since the Unix epoch: the clock is read here, at the edge.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A traced message's outcome in the stream, from its PubAck: the subject stored, or the
/// error's description.
fn stored_or_error(subject: &str, ack: &[u8]) -> Result<String, String> {
    let ack: serde_json::Value = serde_json::from_slice(ack).unwrap_or_default();
    match ack["error"]["description"].as_str() {
        Some(why) => Err(why.to_string()),
        None => Ok(subject.to_string()),
    }
}
