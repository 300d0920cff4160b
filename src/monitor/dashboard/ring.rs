//! The dashboard's history: one [`Sample`] of the server's counters a second, the last
//! [`HISTORY`] of them kept in a [`Ring`], so that a page opened now already draws curves.
//!
//! Pure: a sample is taken by the caller (from the counters `/varz` reads) and pushed here with
//! its time; nothing in this file reads a clock or the server.

use std::collections::VecDeque;

use serde::Serialize;

/// How many samples are kept: ten minutes at one a second.
pub const HISTORY: usize = 600;

/// The server's counters at one moment. Message and byte counters are cumulative, as `/varz`
/// shows them (they only grow: closed connections' counts stay in the totals); the page turns
/// consecutive samples into rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub t: u64,
    /// `/varz` `in_msgs`.
    pub in_msgs: u64,
    /// `/varz` `in_bytes`.
    pub in_bytes: u64,
    /// `/varz` `out_msgs`.
    pub out_msgs: u64,
    /// `/varz` `out_bytes`.
    pub out_bytes: u64,
    /// `/varz` `connections`: client connections open now.
    pub connections: u64,
    /// `/varz` `total_connections`.
    pub total_connections: u64,
    /// `/varz` `subscriptions`.
    pub subscriptions: u64,
    /// `/varz` `slow_consumers`.
    pub slow_consumers: u64,
    /// `/varz` `stale_connections`.
    pub stale_connections: u64,
    /// `/varz` `routes`.
    pub routes: u64,
    /// `/varz` `mem`: resident memory in bytes.
    pub mem: u64,
    /// CPU use in percent of one core since the previous sample.
    pub cpu: f64,
}

/// The last `capacity` samples, oldest first.
#[derive(Debug)]
pub struct Ring {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new(HISTORY)
    }
}

impl Ring {
    /// An empty ring keeping at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Ring {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds the newest sample, forgetting the oldest when full.
    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The newest sample.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Every sample kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Number of samples kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No sample yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: u64, in_msgs: u64) -> Sample {
        Sample {
            t,
            in_msgs,
            ..Sample::default()
        }
    }

    #[test]
    fn keeps_the_newest_in_order() {
        let mut ring = Ring::new(3);
        assert!(ring.is_empty() && ring.last().is_none());
        for t in 1..=5 {
            ring.push(at(t, t * 10));
        }
        let times: Vec<u64> = ring.iter().map(|s| s.t).collect();
        assert_eq!(times, [3, 4, 5]);
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.last().map(|s| s.in_msgs), Some(50));
        assert_eq!(Ring::new(0).capacity, 1);
    }

    #[test]
    fn ten_minutes_at_one_a_second() {
        let mut ring = Ring::default();
        for t in 0..(HISTORY as u64 + 100) {
            ring.push(at(t * 1000, t));
        }
        assert_eq!(ring.len(), HISTORY);
        assert_eq!(ring.iter().next().map(|s| s.t), Some(100_000));
    }

    #[test]
    fn serializes_with_varz_names() {
        let json = serde_json::to_value(at(5, 7)).unwrap();
        for field in [
            "t",
            "in_msgs",
            "in_bytes",
            "out_msgs",
            "out_bytes",
            "connections",
            "total_connections",
            "subscriptions",
            "slow_consumers",
            "stale_connections",
            "routes",
            "mem",
            "cpu",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["in_msgs"], 7);
    }
}
