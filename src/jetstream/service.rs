//! JetStream's task: the internal subscriptions (`$JS.API.>` in every account, and each
//! stream's subjects) copy what they receive into one channel, and one task answers the
//! requests and stores the messages, then publishes the responses and PubAcks in the account.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use super::api::{AccountJs, API_PREFIX};
use crate::engine::account::Account;
use crate::engine::deliver::{self, Deliveries, Message};
use crate::engine::subscription::{Internal, Subscription};
use crate::state::Shared;

/// How often `max_age` is applied.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);

/// What the subscriptions hand to the task.
#[derive(Debug)]
enum Input {
    /// A `$JS.API.>` request.
    Api {
        account: Arc<str>,
        subject: Bytes,
        reply: Option<Bytes>,
        body: Bytes,
    },
    /// A message published to a stream's subject.
    Publish {
        account: Arc<str>,
        stream: Arc<str>,
        subject: Bytes,
        reply: Option<Bytes>,
        header: Bytes,
        data: Bytes,
    },
}

/// What one internal subscription stands for.
#[derive(Debug)]
enum Role {
    Api,
    Stream(Arc<str>),
}

/// An internal subscriber: copies the message into the channel (it runs on the publisher's
/// task, so it must not do the work itself).
#[derive(Debug)]
struct Inbox {
    tx: UnboundedSender<Input>,
    account: Arc<str>,
    role: Role,
}

impl Internal for Inbox {
    fn deliver(&self, _sub: &Subscription, msg: &Message<'_>, _out: &mut Deliveries) -> bool {
        let split = msg.header_len.unwrap_or(0).min(msg.message.len());
        let (header, data) = msg.message.split_at(split);
        let subject = Bytes::copy_from_slice(msg.subject);
        let reply = msg.reply.map(Bytes::copy_from_slice);
        let input = match &self.role {
            Role::Api => Input::Api {
                account: self.account.clone(),
                subject,
                reply,
                body: Bytes::copy_from_slice(data),
            },
            Role::Stream(stream) => Input::Publish {
                account: self.account.clone(),
                stream: stream.clone(),
                subject,
                reply,
                header: Bytes::copy_from_slice(header),
                data: Bytes::copy_from_slice(data),
            },
        };
        self.tx.send(input).is_ok()
    }
}

/// One account's JetStream with the subscriptions capturing its streams.
struct Enabled {
    account: Arc<Account>,
    js: AccountJs,
    /// Each stream's subscriptions, with the subjects they were made for.
    captures: HashMap<String, (Vec<String>, Vec<Arc<Subscription>>)>,
}

/// JetStream subscribed in every account and not yet running.
pub struct Service {
    shared: Arc<Shared>,
    tx: UnboundedSender<Input>,
    rx: UnboundedReceiver<Input>,
    accounts: BTreeMap<Arc<str>, Enabled>,
}

/// Subscribes `$JS.API.>` in every account but the system account (so that requests are
/// answered as soon as the server is bound); [`Service::spawn`] runs it.
pub fn start(shared: &Arc<Shared>) -> Service {
    let (tx, rx) = unbounded_channel();
    let mut accounts = BTreeMap::new();
    for account in shared.router.accounts() {
        if account.is_system.load(Ordering::Relaxed) {
            continue;
        }
        let inbox = Inbox {
            tx: tx.clone(),
            account: account.name.clone(),
            role: Role::Api,
        };
        let subject = format!("{API_PREFIX}>");
        account.subscribe(Arc::new(Subscription::internal(
            Arc::new(inbox),
            &subject,
            None,
        )));
        accounts.insert(
            account.name.clone(),
            Enabled {
                account,
                js: AccountJs::new(),
                captures: HashMap::new(),
            },
        );
    }
    Service {
        shared: shared.clone(),
        tx,
        rx,
        accounts,
    }
}

impl Service {
    /// Spawns the task.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(mut self) {
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        loop {
            tokio::select! {
                input = self.rx.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = expire.tick() => {
                    let now = now();
                    for enabled in self.accounts.values_mut() {
                        enabled.js.expire(now);
                    }
                }
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Api {
                account,
                subject,
                reply,
                body,
            } => {
                let server_name = self.shared.server_name.clone();
                let Some(enabled) = self.accounts.get_mut(&account) else {
                    return;
                };
                let subject = String::from_utf8_lossy(&subject);
                let Some(response) = enabled.js.request(&subject, &body, now(), &server_name)
                else {
                    return;
                };
                enabled.sync_captures(&self.tx);
                if let Some(reply) = reply {
                    send(&enabled.account, &reply, &response);
                }
            }
            Input::Publish {
                account,
                stream,
                subject,
                reply,
                header,
                data,
            } => {
                let Some(enabled) = self.accounts.get_mut(&account) else {
                    return;
                };
                let subject = String::from_utf8_lossy(&subject);
                let Some((no_ack, ack)) =
                    enabled.js.publish(&stream, &subject, header, data, now())
                else {
                    return;
                };
                if let (Some(reply), false) = (reply, no_ack) {
                    send(&enabled.account, &reply, &ack);
                }
            }
        }
    }
}

impl Enabled {
    /// Subscribes the subjects of new or changed streams and unsubscribes those of deleted
    /// or changed ones.
    fn sync_captures(&mut self, tx: &UnboundedSender<Input>) {
        let wanted = self.js.captures();
        let account = &self.account;
        self.captures.retain(|name, (subjects, subs)| {
            let keep = wanted.get(name) == Some(subjects);
            if !keep {
                account.unsubscribe_all(subs);
            }
            keep
        });
        for (name, subjects) in wanted {
            if self.captures.contains_key(&name) {
                continue;
            }
            let stream: Arc<str> = name.as_str().into();
            let subs: Vec<Arc<Subscription>> = subjects
                .iter()
                .map(|subject| {
                    let inbox = Inbox {
                        tx: tx.clone(),
                        account: self.account.name.clone(),
                        role: Role::Stream(stream.clone()),
                    };
                    Arc::new(Subscription::internal(Arc::new(inbox), subject, None))
                })
                .collect();
            for sub in &subs {
                self.account.subscribe(sub.clone());
            }
            self.captures.insert(name, (subjects, subs));
        }
    }
}

/// Publishes `payload` to `subject` in `account`.
fn send(account: &Account, subject: &[u8], payload: &[u8]) {
    let mut out = Deliveries::default();
    let msg = Message {
        subject,
        reply: None,
        header_len: None,
        message: payload,
    };
    deliver::publish(account, &msg, &mut out);
    out.flush(None);
}

/// Now, in nanoseconds since the Unix epoch: the clock is read here, at the edge.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
