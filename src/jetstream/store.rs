//! Where a stream's messages are kept: the [`StreamStore`] trait (the operations of
//! nats-server's `StreamStore` the stream layer needs so far) and [`MemoryStore`]. Pure: no
//! tokio, no clock; timestamps are given by the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    /// The subject it was published to.
    pub subject: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Its headers as sent (`NATS/1.0\r\n...\r\n\r\n`), empty when it had none.
    pub header: Bytes,
    /// The payload.
    pub data: Bytes,
    /// When it was stored, in nanoseconds since the Unix epoch.
    pub ts: i64,
}

/// What a store knows of a message without reading its headers and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgMeta {
    /// Its stream sequence.
    pub seq: u64,
    /// When it was stored, in nanoseconds since the Unix epoch.
    pub ts: i64,
    /// The subject it was published to.
    pub subject: String,
}

impl From<StoredMsg> for MsgMeta {
    fn from(msg: StoredMsg) -> MsgMeta {
        MsgMeta {
            seq: msg.seq,
            ts: msg.ts,
            subject: msg.subject,
        }
    }
}

/// A store's totals (nats-server's `StreamState`, the part tern keeps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreState {
    /// Messages held.
    pub messages: u64,
    /// Their size, as nats-server counts it for the store kind.
    pub bytes: u64,
    /// The first sequence held (when empty, the next one to be given, or 0 if none was).
    pub first_seq: u64,
    /// Its timestamp (0 when empty).
    pub first_ts: i64,
    /// The last sequence given.
    pub last_seq: u64,
    /// Its timestamp (0 when nothing was ever stored).
    pub last_ts: i64,
    /// Distinct subjects held.
    pub num_subjects: u64,
}

/// A stream's storage.
pub trait StreamStore: Send {
    /// Stores a message at the next sequence, returning that sequence; an error (from the disk)
    /// stores nothing.
    fn store_msg(
        &mut self,
        subject: &str,
        header: Bytes,
        data: Bytes,
        ts: i64,
    ) -> std::io::Result<u64>;
    /// Takes the next sequence without storing anything at it (nats-server's `SkipMsg`: an
    /// interest stream's message no consumer wants), returning it.
    fn skip_msg(&mut self, ts: i64) -> std::io::Result<u64>;
    /// The message at `seq`, if it is held.
    fn load_msg(&self, seq: u64) -> Option<StoredMsg>;
    /// The sequence, time and subject of the message at `seq`, if it is held (a file store
    /// answers from its index, without reading the message).
    fn load_meta(&self, seq: u64) -> Option<MsgMeta> {
        self.load_msg(seq).map(MsgMeta::from)
    }
    /// The last message held for `subject`.
    fn load_last_msg(&self, subject: &str) -> Option<StoredMsg>;
    /// The sequence of the last message held for `subject`.
    fn load_last_seq(&self, subject: &str) -> Option<u64> {
        self.load_last_msg(subject).map(|m| m.seq)
    }
    /// The first sequence held for `subject`.
    fn first_seq_for_subject(&self, subject: &str) -> Option<u64>;
    /// Messages held for `subject`.
    fn subject_total(&self, subject: &str) -> u64;
    /// Removes the message at `seq`; false when it was not held.
    fn remove_msg(&mut self, seq: u64) -> bool;
    /// Removes every message, returning how many there were; sequences carry on.
    fn purge(&mut self) -> u64;
    /// The totals.
    fn state(&self) -> StoreState;
    /// The size a message counts for in `bytes`.
    fn msg_size(&self, subject: &str, header: &[u8], data: &[u8]) -> u64;
    /// The first message at or after `start` whose subject matches `filter` (`>` for all).
    fn load_next_msg(&self, filter: &str, start: u64) -> Option<StoredMsg>;
    /// As [`StreamStore::load_next_msg`], only the sequence, time and subject.
    fn load_next_meta(&self, filter: &str, start: u64) -> Option<MsgMeta> {
        self.load_next_msg(filter, start).map(MsgMeta::from)
    }
    /// How many messages at or after `start` match `filter`.
    fn num_pending(&self, filter: &str, start: u64) -> u64;
    /// Holds the records of what is stored or removed from now on until [`commit`], which
    /// writes them together (a group commit); nothing to do in memory.
    ///
    /// [`commit`]: StreamStore::commit
    fn defer_writes(&mut self) {}
    /// Writes what was held since [`StreamStore::defer_writes`] (with `write(2)`, so that
    /// it survives the process). On failure none of it is kept: the store is as it was
    /// before `defer_writes`.
    fn commit(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Makes what was written durable (fsync); nothing to do in memory.
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Messages in memory, as nats-server's `memStore`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    msgs: BTreeMap<u64, StoredMsg>,
    subjects: HashMap<String, BTreeSet<u64>>,
    bytes: u64,
    last_seq: u64,
    last_ts: i64,
}

impl MemoryStore {
    /// An empty store whose first message will be sequence 1.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl StreamStore for MemoryStore {
    fn store_msg(
        &mut self,
        subject: &str,
        header: Bytes,
        data: Bytes,
        ts: i64,
    ) -> std::io::Result<u64> {
        self.last_seq += 1;
        self.last_ts = ts;
        let seq = self.last_seq;
        self.bytes += self.msg_size(subject, &header, &data);
        match self.subjects.get_mut(subject) {
            Some(seqs) => {
                seqs.insert(seq);
            }
            None => {
                self.subjects
                    .insert(subject.to_string(), BTreeSet::from([seq]));
            }
        }
        self.msgs.insert(
            seq,
            StoredMsg {
                subject: subject.to_string(),
                seq,
                header,
                data,
                ts,
            },
        );
        Ok(seq)
    }

    fn skip_msg(&mut self, ts: i64) -> std::io::Result<u64> {
        self.last_seq += 1;
        self.last_ts = ts;
        Ok(self.last_seq)
    }

    fn load_msg(&self, seq: u64) -> Option<StoredMsg> {
        self.msgs.get(&seq).cloned()
    }

    fn load_last_msg(&self, subject: &str) -> Option<StoredMsg> {
        let seq = self.subjects.get(subject)?.last()?;
        self.load_msg(*seq)
    }

    fn load_last_seq(&self, subject: &str) -> Option<u64> {
        self.subjects.get(subject)?.last().copied()
    }

    fn first_seq_for_subject(&self, subject: &str) -> Option<u64> {
        self.subjects.get(subject)?.first().copied()
    }

    fn subject_total(&self, subject: &str) -> u64 {
        self.subjects.get(subject).map_or(0, |s| s.len() as u64)
    }

    fn remove_msg(&mut self, seq: u64) -> bool {
        let Some(msg) = self.msgs.remove(&seq) else {
            return false;
        };
        self.bytes -= self.msg_size(&msg.subject, &msg.header, &msg.data);
        if let Some(seqs) = self.subjects.get_mut(&msg.subject) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.subjects.remove(&msg.subject);
            }
        }
        true
    }

    fn purge(&mut self) -> u64 {
        let purged = self.msgs.len() as u64;
        self.msgs.clear();
        self.subjects.clear();
        self.bytes = 0;
        purged
    }

    fn state(&self) -> StoreState {
        let first = self.msgs.values().next();
        StoreState {
            messages: self.msgs.len() as u64,
            bytes: self.bytes,
            // As nats-server: 0 before anything was stored, then the next sequence when empty.
            first_seq: first.map_or(
                match self.last_seq {
                    0 => 0,
                    last => last + 1,
                },
                |m| m.seq,
            ),
            first_ts: first.map_or(0, |m| m.ts),
            last_seq: self.last_seq,
            last_ts: self.last_ts,
            num_subjects: self.subjects.len() as u64,
        }
    }

    fn load_next_msg(&self, filter: &str, start: u64) -> Option<StoredMsg> {
        self.msgs
            .range(start..)
            .map(|(_, m)| m)
            .find(|m| crate::proto::subject::matches(filter.as_bytes(), m.subject.as_bytes()))
            .cloned()
    }

    fn num_pending(&self, filter: &str, start: u64) -> u64 {
        if filter == ">" {
            return self.msgs.range(start..).count() as u64;
        }
        self.msgs
            .range(start..)
            .filter(|(_, m)| {
                crate::proto::subject::matches(filter.as_bytes(), m.subject.as_bytes())
            })
            .count() as u64
    }

    /// nats-server's `memStoreMsgSizeRaw`: subject, headers and payload, plus 16.
    fn msg_size(&self, subject: &str, header: &[u8], data: &[u8]) -> u64 {
        (subject.len() + header.len() + data.len() + 16) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(s: &mut MemoryStore, subject: &str, data: &'static str, ts: i64) -> u64 {
        s.store_msg(
            subject,
            Bytes::new(),
            Bytes::from_static(data.as_bytes()),
            ts,
        )
        .unwrap()
    }

    #[test]
    fn sequences_totals_and_subjects() {
        let mut s = MemoryStore::new();
        assert_eq!(s.state(), StoreState::default());
        assert_eq!(store(&mut s, "a", "one", 10), 1);
        assert_eq!(store(&mut s, "b", "two", 20), 2);
        assert_eq!(store(&mut s, "a", "three", 30), 3);
        let state = s.state();
        assert_eq!((state.messages, state.first_seq, state.last_seq), (3, 1, 3));
        assert_eq!(
            (state.first_ts, state.last_ts, state.num_subjects),
            (10, 30, 2)
        );
        assert_eq!(state.bytes, (1 + 3 + 16) + (1 + 3 + 16) + (1 + 5 + 16));
        assert_eq!(s.load_last_msg("a").unwrap().seq, 3);
        assert_eq!(s.first_seq_for_subject("a"), Some(1));
        assert_eq!(s.subject_total("a"), 2);
        assert!(s.remove_msg(1));
        assert!(!s.remove_msg(1));
        assert_eq!(s.state().first_seq, 2);
        assert_eq!(s.load_msg(3).unwrap().data, "three");
        assert!(s.load_msg(1).is_none());
        assert_eq!(s.load_next_msg("b", 0).unwrap().seq, 2);
        assert_eq!(s.load_next_msg(">", 3).unwrap().seq, 3);
        assert!(s.load_next_msg("b", 3).is_none());
        assert_eq!((s.num_pending(">", 0), s.num_pending("a", 0)), (2, 1));
    }

    #[test]
    fn purge_keeps_the_sequence() {
        let mut s = MemoryStore::new();
        store(&mut s, "a", "x", 1);
        store(&mut s, "a", "y", 2);
        assert_eq!(s.purge(), 2);
        let state = s.state();
        assert_eq!((state.messages, state.bytes, state.num_subjects), (0, 0, 0));
        assert_eq!((state.first_seq, state.first_ts, state.last_seq), (3, 0, 2));
        assert_eq!(store(&mut s, "a", "z", 3), 3);
        assert!(s.load_last_msg("a").is_some());
    }

    #[test]
    fn skipped_sequences_are_given_and_hold_nothing() {
        let mut s = MemoryStore::new();
        assert_eq!(s.skip_msg(5).unwrap(), 1);
        let state = s.state();
        assert_eq!((state.messages, state.first_seq, state.last_seq), (0, 2, 1));
        assert_eq!((state.first_ts, state.last_ts), (0, 5));
        assert_eq!(store(&mut s, "a", "x", 6), 2);
        assert_eq!(s.skip_msg(7).unwrap(), 3);
        let state = s.state();
        assert_eq!((state.messages, state.first_seq, state.last_seq), (1, 2, 3));
    }
}
