//! The server's routing state: the accounts (each with its own sublist), the live connections
//! and the counters of closed ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::account::{Account, SublistCounts, GLOBAL_ACCOUNT};
use super::connection::Connection;
use super::route::Routes;
use super::stats::{SubSnapshot, Totals};
use super::subscription::Subscription;

/// The shared routing state.
#[derive(Debug)]
pub struct Router {
    /// Accounts by name. Read on every CONNECT and by monitoring; written by start-up and
    /// reload. Never held with another lock.
    accounts: RwLock<HashMap<Arc<str>, Arc<Account>>>,
    /// The global account, `$G` (always there).
    global: Arc<Account>,
    /// Live connections by cid, and the counters of closed ones. Guards only the `Live`.
    connections: Mutex<Live>,
    next_cid: AtomicU64,
    /// The cluster's routes (none outside a cluster).
    routes: Arc<Routes>,
}

/// The live connections and what closed ones counted, changed together so that a monitor
/// reading both sees each connection counted once.
#[derive(Debug, Default)]
struct Live {
    by_cid: HashMap<u64, Arc<Connection>>,
    closed: Totals,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// A router with only the global account.
    pub fn new() -> Self {
        let routes = Arc::new(Routes::default());
        let global = Arc::new(Account::with_routes(GLOBAL_ACCOUNT, routes.clone()));
        let mut accounts = HashMap::new();
        accounts.insert(global.name.clone(), global.clone());
        Router {
            accounts: RwLock::new(accounts),
            global,
            connections: Mutex::new(Live::default()),
            next_cid: AtomicU64::new(0),
            routes,
        }
    }

    /// The cluster's routes.
    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    /// The global account, `$G`.
    pub fn global(&self) -> &Arc<Account> {
        &self.global
    }

    /// The account called `name`.
    pub fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The account called `name`, made if it does not exist yet.
    pub fn account_or_new(&self, name: &str) -> Arc<Account> {
        if let Some(found) = self.account(name) {
            return found;
        }
        let mut accounts = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        accounts
            .entry(name.into())
            .or_insert_with(|| Arc::new(Account::with_routes(name, self.routes.clone())))
            .clone()
    }

    /// Forgets an account (a reload removed it). `$G` stays.
    pub fn remove_account(&self, name: &str) {
        if name != GLOBAL_ACCOUNT {
            self.accounts
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name);
        }
    }

    /// Every account, sorted by name.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        let mut all: Vec<_> = self
            .accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The next connection id (starting at 1).
    pub fn next_cid(&self) -> u64 {
        self.next_cid.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a live connection; refuses it when `max` connections are already live.
    pub fn add_connection(&self, conn: Arc<Connection>, max: usize) -> bool {
        let mut conns = self.connections();
        if conns.by_cid.len() >= max {
            return false;
        }
        conns.by_cid.insert(conn.cid, conn);
        true
    }

    /// Forgets a connection, adds its final counters to the closed totals, and removes all its
    /// subscriptions from its account.
    pub fn remove_connection(&self, conn: &Connection) {
        let counts = conn.counts();
        let reason = conn.outbound.close_reason();
        let removed = {
            let mut live = self.connections();
            let removed = live.by_cid.remove(&conn.cid).is_some();
            if removed {
                live.closed.add_closed(counts, reason);
            }
            removed
        };
        if removed {
            conn.account().add_closed(counts, reason);
        }
        conn.unbind_account();
        let subs: Vec<Arc<Subscription>> = conn.subs().drain().map(|(_, s)| s).collect();
        conn.account().unsubscribe_all(&subs);
    }

    /// Every live connection.
    pub fn connections_snapshot(&self) -> Vec<Arc<Connection>> {
        self.connections().by_cid.values().cloned().collect()
    }

    /// Every live connection, and the counters of every closed one, taken together.
    pub fn connections_and_closed_totals(&self) -> (Vec<Arc<Connection>>, Totals) {
        let live = self.connections();
        (live.by_cid.values().cloned().collect(), live.closed)
    }

    /// The live connection `cid`.
    pub fn connection(&self, cid: u64) -> Option<Arc<Connection>> {
        self.connections().by_cid.get(&cid).cloned()
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.connections().by_cid.len()
    }

    /// Connections accepted so far (the last cid handed out).
    pub fn total_connections(&self) -> u64 {
        self.next_cid.load(Ordering::Relaxed)
    }

    /// Sublist statistics, summed over the accounts.
    pub fn sublist_counts(&self) -> SublistCounts {
        let mut sum = SublistCounts::default();
        for account in self.accounts() {
            sum.add(account.sublist_counts());
        }
        sum
    }

    /// Every client subscription, for `/subsz?subs=1` (without `matching`), or every
    /// subscription in any account a publish to the literal subject `matching` would reach.
    pub fn subscriptions(&self, matching: Option<&[u8]>) -> Vec<SubSnapshot> {
        match matching {
            Some(subject) => self
                .accounts()
                .iter()
                .flat_map(|a| a.matching_snapshots(subject))
                .collect(),
            None => self
                .connections_snapshot()
                .iter()
                .flat_map(|c| c.sub_snapshots())
                .collect(),
        }
    }

    /// Number of subscriptions in every account's sublist.
    pub fn subscription_count(&self) -> usize {
        self.accounts().iter().map(|a| a.subscription_count()).sum()
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, Live> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}
