//! What the dashboard shows only while a page watches: the busiest connections (by pending
//! bytes and by messages a second) and the subjects with the most subscriptions. Each walks
//! every connection, so the sampler computes them only when someone listens.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::engine::connection::Connection;

/// How many rows each list keeps.
pub const ROWS: usize = 10;

/// One of the busiest connections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusyConnection {
    /// Connection id (`/connz` `cid`).
    pub cid: u64,
    /// CONNECT `name`.
    pub name: String,
    /// `ip:port` of the client.
    pub addr: String,
    /// The account it is bound to.
    pub account: String,
    /// Bytes queued to it and not yet written.
    pub pending_bytes: usize,
    /// Messages in and out a second, since the previous sample.
    pub msgs_per_sec: f64,
    /// Bytes in and out a second, since the previous sample.
    pub bytes_per_sec: f64,
    /// Its subscriptions.
    pub subscriptions: usize,
}

/// A subject and how many subscriptions it has (the same filter, in one account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BusySubject {
    /// The account.
    pub account: String,
    /// The subscription's subject filter, as subscribed.
    pub subject: String,
    /// How many subscriptions have that filter.
    pub subscriptions: usize,
}

/// Each connection's message and byte counts at the previous sample, for its rates.
pub type Previous = HashMap<u64, (u64, u64)>;

/// The busiest of `conns`: the [`ROWS`] with the most pending bytes and the [`ROWS`] with the
/// most messages a second since `previous` (taken `secs` ago), busiest first. `previous` is
/// replaced by the counts now; a connection it does not know yet shows no rate.
pub fn busiest(
    conns: &[Arc<Connection>],
    previous: &mut Previous,
    secs: f64,
) -> Vec<BusyConnection> {
    let mut now = Previous::with_capacity(conns.len());
    let mut all: Vec<(usize, f64, f64, &Arc<Connection>)> = conns
        .iter()
        .map(|conn| {
            let c = conn.counts();
            let (msgs, bytes) = (c.in_msgs + c.out_msgs, c.in_bytes + c.out_bytes);
            now.insert(conn.cid, (msgs, bytes));
            let (msgs_rate, bytes_rate) = match previous.get(&conn.cid) {
                Some(&(m, b)) if secs > 0.0 => (
                    msgs.saturating_sub(m) as f64 / secs,
                    bytes.saturating_sub(b) as f64 / secs,
                ),
                _ => (0.0, 0.0),
            };
            (conn.outbound.pending_bytes(), msgs_rate, bytes_rate, conn)
        })
        .collect();
    *previous = now;
    let mut chosen: Vec<u64> = Vec::with_capacity(2 * ROWS);
    all.sort_by_key(|c| std::cmp::Reverse(c.0));
    chosen.extend(all.iter().take(ROWS).filter(|c| c.0 > 0).map(|c| c.3.cid));
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    for c in all.iter().take(ROWS).filter(|c| c.1 > 0.0) {
        if !chosen.contains(&c.3.cid) {
            chosen.push(c.3.cid);
        }
    }
    let mut rows: Vec<BusyConnection> = all
        .iter()
        .filter(|c| chosen.contains(&c.3.cid))
        .map(
            |&(pending_bytes, msgs_per_sec, bytes_per_sec, conn)| BusyConnection {
                cid: conn.cid,
                name: conn.meta().name,
                addr: conn.addr.to_string(),
                account: conn.account().name.to_string(),
                pending_bytes,
                msgs_per_sec,
                bytes_per_sec,
                subscriptions: conn.subs().len(),
            },
        )
        .collect();
    rows.sort_by(|a, b| {
        b.pending_bytes
            .cmp(&a.pending_bytes)
            .then(b.msgs_per_sec.total_cmp(&a.msgs_per_sec))
    });
    rows
}

/// The [`ROWS`] subject filters with the most client subscriptions (per account), most first;
/// ties in account and subject order.
pub fn busiest_subjects(conns: &[Arc<Connection>]) -> Vec<BusySubject> {
    let mut counts: HashMap<(Arc<str>, bytes::Bytes), usize> = HashMap::new();
    for conn in conns {
        let account = conn.account().name.clone();
        let subjects: Vec<bytes::Bytes> = conn.subs().values().map(|s| s.subject.clone()).collect();
        for subject in subjects {
            *counts.entry((account.clone(), subject)).or_default() += 1;
        }
    }
    let mut rows: Vec<BusySubject> = counts
        .into_iter()
        .map(|((account, subject), subscriptions)| BusySubject {
            account: account.to_string(),
            subject: String::from_utf8_lossy(&subject).into_owned(),
            subscriptions,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.subscriptions
            .cmp(&a.subscriptions)
            .then_with(|| (&a.account, &a.subject).cmp(&(&b.account, &b.subject)))
    });
    rows.truncate(ROWS);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::account::Account;
    use crate::engine::subscription::Subscription;
    use bytes::Bytes;

    fn conn(cid: u64, account: &Arc<Account>) -> Arc<Connection> {
        let addr = format!("127.0.0.1:{}", 1000 + cid).parse().unwrap();
        Arc::new(Connection::new(cid, 1 << 20, "test", addr, account.clone()))
    }

    /// Queues `n` messages of `size` bytes to `conn`, as deliveries do.
    fn deliver(conn: &Connection, n: usize, size: usize) {
        for _ in 0..n {
            conn.outbound
                .append(Some(size), |buf| buf.extend_from_slice(&vec![b'x'; size]));
        }
    }

    fn subscribe(conn: &Arc<Connection>, subject: &'static str, sid: &'static str) {
        let sub = Subscription::new(conn.clone(), subject.as_bytes(), None, sid.as_bytes());
        conn.subs()
            .insert(Bytes::from_static(sid.as_bytes()), Arc::new(sub));
    }

    #[test]
    fn busiest_by_pending_bytes_then_rate() {
        let account = Arc::new(Account::new("$G"));
        let conns: Vec<_> = (1..=3).map(|cid| conn(cid, &account)).collect();
        let mut previous = Previous::new();
        // The first sample knows no earlier counts: pending bytes only, no rates.
        deliver(&conns[1], 2, 100);
        let rows = busiest(&conns, &mut previous, 1.0);
        assert_eq!(rows.iter().map(|r| r.cid).collect::<Vec<_>>(), [2]);
        assert_eq!(rows[0].pending_bytes, 200);
        assert_eq!(rows[0].msgs_per_sec, 0.0);
        assert_eq!(previous.len(), 3);
        // Two seconds later: connection 3 got 10 messages, connection 2 two more.
        deliver(&conns[2], 10, 10);
        deliver(&conns[1], 2, 100);
        let rows = busiest(&conns, &mut previous, 2.0);
        let got: Vec<(u64, usize, f64, f64)> = rows
            .iter()
            .map(|r| (r.cid, r.pending_bytes, r.msgs_per_sec, r.bytes_per_sec))
            .collect();
        assert_eq!(got, [(2, 400, 1.0, 100.0), (3, 100, 5.0, 50.0)]);
        assert_eq!(rows[0].account, "$G");
        assert_eq!(rows[0].addr, "127.0.0.1:1002");
        // An idle connection with nothing pending is not listed.
        assert!(!rows.iter().any(|r| r.cid == 1));
    }

    #[test]
    fn subjects_by_subscriptions() {
        let g = Arc::new(Account::new("$G"));
        let a = Arc::new(Account::new("A"));
        let (c1, c2, c3) = (conn(1, &g), conn(2, &g), conn(3, &a));
        subscribe(&c1, "orders.>", "1");
        subscribe(&c1, "orders.new", "2");
        subscribe(&c2, "orders.>", "1");
        subscribe(&c3, "orders.>", "1");
        let rows = busiest_subjects(&[c1, c2, c3]);
        let got: Vec<(&str, &str, usize)> = rows
            .iter()
            .map(|r| (r.account.as_str(), r.subject.as_str(), r.subscriptions))
            .collect();
        assert_eq!(
            got,
            [
                ("$G", "orders.>", 2),
                ("$G", "orders.new", 1),
                ("A", "orders.>", 1)
            ]
        );
    }
}
