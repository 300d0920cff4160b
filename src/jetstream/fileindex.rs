//! What a file store keeps in memory of its messages: [`Index`], one [`Entry`] per message
//! (its sequence, where its record lies in the log, its time and its subject, 32 bytes) and
//! per distinct subject its count and first and last sequences, the subjects interned. The
//! payloads stay on disk. Pure: no I/O, no clock.
//!
//! Entries are kept in sequence order in one `VecDeque`. A removal in the middle leaves a
//! tombstone (an entry of length 0) rather than moving what follows; tombstones at either end
//! are dropped at once, and the rest are swept out in one pass once they outnumber the
//! messages held, so removals cost O(1) amortised and memory stays within twice the messages.
//! While the stream has no gap, an entry is found by its distance from the first; otherwise by
//! binary search.
//!
//! A subject's first (or last) sequence is updated lazily, as nats-server's `psim` does: when
//! the message holding it goes while others of the subject remain, it is marked stale, and
//! found again by a scan the next time it is asked for.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::store::StoreState;
use crate::proto::subject;

/// One message's place in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its stream sequence.
    pub seq: u64,
    /// Where its record starts in the log.
    pub offset: u64,
    /// When it was stored, in nanoseconds since the Unix epoch.
    pub ts: i64,
    /// Its subject's id, with [`HAS_HEADER`] set when it has headers.
    subject: u32,
    /// The bytes its record takes (framing included); 0 for a tombstone.
    pub len: u32,
}

/// The bit of [`Entry::subject`] saying the message has headers.
const HAS_HEADER: u32 = 1 << 31;

/// Tombstones are swept out once there are more than this many and more than live entries.
const SWEEP_MIN: usize = 1024;

impl Entry {
    /// The id of its subject in the index.
    pub fn subject_id(&self) -> u32 {
        self.subject & !HAS_HEADER
    }

    fn live(&self) -> bool {
        self.len != 0
    }
}

/// The messages of a file store, without their payloads.
#[derive(Debug)]
pub struct Index {
    entries: VecDeque<Entry>,
    /// Tombstones among `entries`.
    dead: usize,
    subjects: Subjects,
    msgs: u64,
    /// The messages' sizes, as nats-server's file store counts them.
    bytes: u64,
    /// The bytes their records take in the log.
    live: u64,
    /// The bytes of framing around a record body in the log (its format's).
    frame: u32,
    last_seq: u64,
    last_ts: i64,
}

/// Distinct subjects held, interned: each has an id for as long as a message has it.
#[derive(Debug, Default)]
struct Subjects {
    ids: HashMap<Arc<str>, u32>,
    info: Vec<SubjectInfo>,
    free: Vec<u32>,
    /// The id last added to: a stream's messages often come in runs of one subject, which
    /// then costs a comparison rather than a hash (replaying a log, most of all).
    recent: Option<u32>,
}

#[derive(Debug)]
struct SubjectInfo {
    name: Arc<str>,
    total: u64,
    first: Cell<u64>,
    last: Cell<u64>,
    first_stale: Cell<bool>,
    last_stale: Cell<bool>,
}

impl Index {
    /// An empty index for a log whose records are framed by `frame` bytes.
    pub fn new(frame: usize) -> Index {
        Index {
            entries: VecDeque::new(),
            dead: 0,
            subjects: Subjects::default(),
            msgs: 0,
            bytes: 0,
            live: 0,
            frame: frame as u32,
            last_seq: 0,
            last_ts: 0,
        }
    }

    /// The totals, as [`super::store::StreamStore::state`] gives them.
    pub fn state(&self) -> StoreState {
        let first = self.entries.front();
        StoreState {
            messages: self.msgs,
            bytes: self.bytes,
            // As nats-server: 0 before anything was stored, then the next sequence when empty.
            first_seq: first.map_or(
                match self.last_seq {
                    0 => 0,
                    last => last + 1,
                },
                |e| e.seq,
            ),
            first_ts: first.map_or(0, |e| e.ts),
            last_seq: self.last_seq,
            last_ts: self.last_ts,
            num_subjects: self.subjects.ids.len() as u64,
        }
    }

    /// The last sequence given.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The bytes the records of the messages held take in the log.
    pub fn live_bytes(&self) -> u64 {
        self.live
    }

    /// nats-server's `fileStoreMsgSizeRaw`: 22 + subject + payload + 8, plus 4 + headers when
    /// there are headers.
    pub fn msg_size(subject_len: usize, header_len: usize, data_len: usize) -> u64 {
        let hdr = match header_len {
            0 => 0,
            n => 4 + n,
        };
        (22 + subject_len + hdr + data_len + 8) as u64
    }

    /// The size `entry`'s message counts for in `bytes` ([`Index::msg_size`]): its record's
    /// body is 23 bytes of fields, then subject, headers and payload.
    fn size_of(&self, entry: &Entry) -> u64 {
        let body = u64::from(entry.len.saturating_sub(self.frame));
        let header = if entry.subject & HAS_HEADER != 0 {
            4
        } else {
            0
        };
        (body + 30 + header).saturating_sub(23)
    }

    /// Adds the message at `seq` (past the last sequence given, which it becomes), whose
    /// record of `len` bytes starts at `offset`.
    pub fn push(
        &mut self,
        seq: u64,
        ts: i64,
        subject: &str,
        header_len: usize,
        offset: u64,
        len: u32,
    ) {
        debug_assert!(seq > self.last_seq && len > 0);
        let id = self.subjects.add(subject, seq);
        let flag = if header_len > 0 { HAS_HEADER } else { 0 };
        let entry = Entry {
            seq,
            offset,
            ts,
            subject: id | flag,
            len,
        };
        self.bytes += self.size_of(&entry);
        self.live += u64::from(len);
        self.msgs += 1;
        self.entries.push_back(entry);
        self.last_seq = seq;
        self.last_ts = ts;
    }

    /// Takes the next sequence without a message at it.
    pub fn skip(&mut self, ts: i64) -> u64 {
        self.last_seq += 1;
        self.last_ts = ts;
        self.last_seq
    }

    /// Moves the last sequence given to `last_seq` (given at `last_ts`) if it is past it.
    pub fn skip_to(&mut self, last_seq: u64, last_ts: i64) {
        if last_seq > self.last_seq {
            self.last_seq = last_seq;
            self.last_ts = last_ts;
        }
    }

    /// The entry of the message at `seq`, if it is held.
    pub fn entry(&self, seq: u64) -> Option<Entry> {
        self.position(seq)
            .map(|at| self.entries[at])
            .filter(Entry::live)
    }

    /// The subject with id `id`.
    pub fn subject(&self, id: u32) -> &str {
        &self.subjects.info[id as usize].name
    }

    /// Removes the message at `seq`, returning its entry; `None` when it was not held.
    pub fn remove(&mut self, seq: u64) -> Option<Entry> {
        let at = self.position(seq)?;
        let entry = self.entries[at];
        if !entry.live() {
            return None;
        }
        self.entries[at].len = 0;
        self.dead += 1;
        self.msgs -= 1;
        self.live -= u64::from(entry.len);
        self.bytes -= self.size_of(&entry);
        self.subjects.remove(entry.subject_id(), seq);
        self.trim();
        Some(entry)
    }

    /// Removes every message, returning how many there were; sequences carry on.
    pub fn purge(&mut self) -> u64 {
        let purged = self.msgs;
        self.entries.clear();
        self.entries.shrink_to(1024);
        self.dead = 0;
        self.subjects = Subjects::default();
        self.msgs = 0;
        self.bytes = 0;
        self.live = 0;
        purged
    }

    /// Removes every message up to `last`, and gives sequences from after it on.
    pub fn purge_to(&mut self, last: u64) {
        if last >= self.last_seq {
            self.purge();
            let last_ts = self.last_ts;
            self.skip_to(last, last_ts);
            return;
        }
        while let Some(first) = self.entries.front().filter(|e| e.seq <= last) {
            self.remove(first.seq);
        }
    }

    /// Messages held under `subject`.
    pub fn subject_total(&self, subject: &str) -> u64 {
        self.subjects.get(subject).map_or(0, |i| i.total)
    }

    /// The first sequence held under `subject`.
    pub fn first_for_subject(&self, subject: &str) -> Option<u64> {
        let id = *self.subjects.ids.get(subject)?;
        Some(self.first_of(id))
    }

    /// The last sequence held under `subject`.
    pub fn last_for_subject(&self, subject: &str) -> Option<u64> {
        let id = *self.subjects.ids.get(subject)?;
        let info = &self.subjects.info[id as usize];
        if info.last_stale.get() {
            let last = match info.total == 1 && !info.first_stale.get() {
                true => info.first.get(),
                false => {
                    let end = self.partition(info.last.get());
                    self.entries
                        .range(..end)
                        .rev()
                        .find(|e| e.live() && e.subject_id() == id)
                        .map_or(0, |e| e.seq)
                }
            };
            info.last.set(last);
            info.last_stale.set(false);
        }
        Some(info.last.get())
    }

    /// The first message at or after `start` whose subject matches `filter`.
    pub fn next_matching(&self, filter: &str, start: u64) -> Option<Entry> {
        if filter == ">" {
            let at = self.partition(start);
            return self.entries.range(at..).find(|e| e.live()).copied();
        }
        if !subject::has_wildcard(filter.as_bytes()) {
            let id = *self.subjects.ids.get(filter)?;
            let first = self.first_of(id);
            let from = start.max(first);
            if from == first {
                return self.entry(first);
            }
            if from > self.last_for_subject(filter)? {
                return None;
            }
            let at = self.partition(from);
            return self
                .entries
                .range(at..)
                .find(|e| e.live() && e.subject_id() == id)
                .copied();
        }
        let at = self.partition(start);
        let mut memo = Memo::default();
        self.entries
            .range(at..)
            .find(|e| e.live() && memo.matches(self, filter, e.subject_id()))
            .copied()
    }

    /// How many messages at or after `start` match `filter`.
    pub fn num_pending(&self, filter: &str, start: u64) -> u64 {
        let at = self.partition(start);
        if filter == ">" {
            // Counted on the shorter side of `start`.
            if at < self.entries.len() / 2 {
                let before = self.entries.range(..at).filter(|e| e.live()).count();
                return self.msgs - before as u64;
            }
            return self.entries.range(at..).filter(|e| e.live()).count() as u64;
        }
        if !subject::has_wildcard(filter.as_bytes()) {
            let Some(&id) = self.subjects.ids.get(filter) else {
                return 0;
            };
            let info = &self.subjects.info[id as usize];
            if start <= self.first_of(id) {
                return info.total;
            }
            return self
                .entries
                .range(at..)
                .filter(|e| e.live() && e.subject_id() == id)
                .count() as u64;
        }
        let mut memo = Memo::default();
        self.entries
            .range(at..)
            .filter(|e| e.live() && memo.matches(self, filter, e.subject_id()))
            .count() as u64
    }

    /// The messages held, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter().filter(|e| e.live())
    }

    /// A compaction rewrote the log: the messages of `snapshot` (in order, as they were when
    /// it started) now lie one after the other from `start`, and what was appended to the old
    /// log from `mark` on now follows them from `moved`.
    pub fn relocate(&mut self, snapshot: &[Entry], start: u64, mark: u64, moved: u64) {
        let mut old = snapshot.iter().peekable();
        let mut at = start;
        for entry in self.entries.iter_mut().filter(|e| e.live()) {
            if entry.offset >= mark {
                entry.offset = entry.offset - mark + moved;
                continue;
            }
            // Skip what was removed since the snapshot.
            while let Some(s) = old.next_if(|s| s.seq < entry.seq) {
                at += u64::from(s.len);
            }
            if let Some(s) = old.next_if(|s| s.seq == entry.seq) {
                entry.offset = at;
                at += u64::from(s.len);
            }
        }
    }

    /// Where the entry of `seq` is (live or not).
    fn position(&self, seq: u64) -> Option<usize> {
        let first = self.entries.front()?.seq;
        let guess = seq.checked_sub(first)?;
        if let Some(e) = self.entries.get(guess as usize) {
            if e.seq == seq {
                return Some(guess as usize);
            }
        }
        self.entries.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    /// The position of the first entry at or after `seq`.
    fn partition(&self, seq: u64) -> usize {
        match self.entries.front() {
            Some(first) if seq <= first.seq => 0,
            _ => self.entries.partition_point(|e| e.seq < seq),
        }
    }

    /// The first sequence of subject `id`, found again if it was stale.
    fn first_of(&self, id: u32) -> u64 {
        let info = &self.subjects.info[id as usize];
        if info.first_stale.get() {
            let first = match info.total == 1 && !info.last_stale.get() {
                true => info.last.get(),
                false => {
                    let at = self.partition(info.first.get());
                    self.entries
                        .range(at..)
                        .find(|e| e.live() && e.subject_id() == id)
                        .map_or(0, |e| e.seq)
                }
            };
            info.first.set(first);
            info.first_stale.set(false);
        }
        info.first.get()
    }

    /// Drops tombstones at either end, and sweeps the rest out once there are many.
    fn trim(&mut self) {
        while self.entries.front().is_some_and(|e| !e.live()) {
            self.entries.pop_front();
            self.dead -= 1;
        }
        while self.entries.back().is_some_and(|e| !e.live()) {
            self.entries.pop_back();
            self.dead -= 1;
        }
        if self.dead > SWEEP_MIN && self.dead as u64 > self.msgs {
            self.entries.retain(Entry::live);
            self.dead = 0;
            if self.entries.capacity() > 4 * self.entries.len() + SWEEP_MIN {
                self.entries.shrink_to(2 * self.entries.len());
            }
        }
    }
}

impl Subjects {
    fn get(&self, subject: &str) -> Option<&SubjectInfo> {
        self.ids.get(subject).map(|&id| &self.info[id as usize])
    }

    /// Counts a message at `seq` (the last one) under `subject`, returning its id.
    fn add(&mut self, subject: &str, seq: u64) -> u32 {
        let recent = self
            .recent
            .filter(|&id| &*self.info[id as usize].name == subject);
        if let Some(id) = recent.or_else(|| self.ids.get(subject).copied()) {
            self.recent = Some(id);
            let info = &mut self.info[id as usize];
            info.total += 1;
            info.last.set(seq);
            info.last_stale.set(false);
            if info.total == 1 {
                info.first.set(seq);
                info.first_stale.set(false);
            }
            return id;
        }
        let name: Arc<str> = Arc::from(subject);
        let info = SubjectInfo {
            name: name.clone(),
            total: 1,
            first: Cell::new(seq),
            last: Cell::new(seq),
            first_stale: Cell::new(false),
            last_stale: Cell::new(false),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.info[id as usize] = info;
                id
            }
            None => {
                self.info.push(info);
                (self.info.len() - 1) as u32
            }
        };
        self.ids.insert(name, id);
        self.recent = Some(id);
        id
    }

    /// The message at `seq` under subject `id` went.
    fn remove(&mut self, id: u32, seq: u64) {
        let info = &mut self.info[id as usize];
        info.total -= 1;
        if info.total == 0 {
            if self.recent == Some(id) {
                self.recent = None;
            }
            let name = std::mem::replace(&mut info.name, Arc::from(""));
            self.ids.remove(&name);
            self.free.push(id);
            return;
        }
        if info.first.get() == seq {
            info.first_stale.set(true);
        }
        if info.last.get() == seq {
            info.last_stale.set(true);
        }
    }
}

/// Whether each subject id met so far matches a filter with wildcards.
#[derive(Default)]
struct Memo {
    known: HashMap<u32, bool>,
}

impl Memo {
    fn matches(&mut self, index: &Index, filter: &str, id: u32) -> bool {
        *self
            .known
            .entry(id)
            .or_insert_with(|| subject::matches(filter.as_bytes(), index.subject(id).as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 8;

    /// Adds a message of `data_len` payload bytes at the next sequence, its record right after
    /// the last one.
    fn put(index: &mut Index, subject: &str, data_len: usize) -> u64 {
        let seq = index.state().last_seq + 1;
        let len = (FRAME + 23 + subject.len() + data_len) as u32;
        let offset = index
            .iter()
            .last()
            .map_or(8, |e| e.offset + u64::from(e.len));
        index.push(seq, seq as i64 * 10, subject, 0, offset, len);
        seq
    }

    fn seqs(index: &Index) -> Vec<u64> {
        index.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn totals_follow_pushes_and_removals() {
        let mut ix = Index::new(FRAME);
        assert_eq!(ix.state(), StoreState::default());
        put(&mut ix, "a", 3);
        put(&mut ix, "b", 3);
        put(&mut ix, "a", 5);
        let state = ix.state();
        assert_eq!((state.messages, state.first_seq, state.last_seq), (3, 1, 3));
        assert_eq!(
            (state.first_ts, state.last_ts, state.num_subjects),
            (10, 30, 2)
        );
        assert_eq!(state.bytes, (31 + 3) + (31 + 3) + (31 + 5));
        assert_eq!(ix.live_bytes(), 3 * 32 + 3 + 3 + 5);
        assert_eq!(ix.remove(1).map(|e| e.seq), Some(1));
        assert_eq!(ix.remove(1), None);
        let state = ix.state();
        assert_eq!(
            (state.messages, state.first_seq, state.bytes),
            (2, 2, 34 + 36)
        );
        assert_eq!(ix.remove(3).map(|e| e.seq), Some(3));
        assert_eq!((ix.state().num_subjects, ix.state().last_seq), (1, 3));
        assert_eq!(ix.subject_total("a"), 0);
        assert_eq!(ix.first_for_subject("a"), None);
    }

    #[test]
    fn first_and_last_per_subject_are_found_again_after_removals() {
        let mut ix = Index::new(FRAME);
        for n in 0..30 {
            put(&mut ix, ["k", "j", "i"][n % 3], 1);
        }
        // k: 1, 4, 7, ..., 28.
        assert_eq!(
            (ix.first_for_subject("k"), ix.last_for_subject("k")),
            (Some(1), Some(28))
        );
        ix.remove(1);
        ix.remove(28);
        assert_eq!(
            (ix.first_for_subject("k"), ix.last_for_subject("k")),
            (Some(4), Some(25))
        );
        for seq in (4..25).step_by(3) {
            ix.remove(seq);
        }
        assert_eq!(
            (ix.first_for_subject("k"), ix.last_for_subject("k")),
            (Some(25), Some(25))
        );
        assert_eq!(ix.subject_total("k"), 1);
        assert_eq!(ix.next_matching("k", 0).map(|e| e.seq), Some(25));
        assert_eq!(ix.next_matching("k", 26), None);
        assert_eq!(ix.num_pending("j", 0), 10);
        assert_eq!(ix.num_pending("j", 6), 8);
        assert_eq!(ix.num_pending("*", 26), 4);
        assert_eq!(ix.num_pending(">", 26), 4);
        assert_eq!(ix.num_pending(">", 0), ix.state().messages);
        assert_eq!(ix.next_matching("i", 4).map(|e| e.seq), Some(6));
    }

    #[test]
    fn tombstones_are_swept_and_lookups_still_find_every_message() {
        let mut ix = Index::new(FRAME);
        for n in 0..10_000 {
            put(&mut ix, if n % 7 == 0 { "keep" } else { "drop" }, 4);
        }
        for seq in 1..=10_000 {
            if (seq - 1) % 7 != 0 {
                ix.remove(seq);
            }
        }
        assert!(
            ix.entries.len() < 2 * 1429 + SWEEP_MIN + 2,
            "{}",
            ix.entries.len()
        );
        assert_eq!(ix.state().messages, 1429);
        assert_eq!(seqs(&ix).len(), 1429);
        for seq in (1..=10_000).step_by(7) {
            assert_eq!(ix.entry(seq).map(|e| e.seq), Some(seq));
            assert_eq!(ix.entry(seq + 1), None);
        }
        assert_eq!(ix.next_matching(">", 9).map(|e| e.seq), Some(15));
        assert_eq!(ix.num_pending(">", 9), 1428 - 1);
    }

    #[test]
    fn purge_to_removes_up_to_and_sequences_carry_on() {
        let mut ix = Index::new(FRAME);
        for _ in 0..5 {
            put(&mut ix, "a", 1);
        }
        ix.purge_to(3);
        assert_eq!(seqs(&ix), [4, 5]);
        ix.purge_to(9);
        let state = ix.state();
        assert_eq!(
            (state.messages, state.first_seq, state.last_seq),
            (0, 10, 9)
        );
        assert_eq!(put(&mut ix, "b", 1), 10);
    }

    #[test]
    fn relocation_follows_a_compaction() {
        let mut ix = Index::new(FRAME);
        for _ in 0..6 {
            put(&mut ix, "a", 10);
        }
        ix.remove(2);
        let snapshot: Vec<Entry> = ix.iter().copied().collect();
        let mark = snapshot
            .last()
            .map(|e| e.offset + u64::from(e.len))
            .unwrap();
        // Removed, and one appended, while the compaction ran.
        ix.remove(4);
        put(&mut ix, "a", 10);
        ix.relocate(&snapshot, 8, mark, 500);
        let offsets: Vec<(u64, u64)> = ix.iter().map(|e| (e.seq, e.offset)).collect();
        let rec = 8 + 23 + 1 + 10;
        assert_eq!(
            offsets,
            [
                (1, 8),
                (3, 8 + rec),
                (5, 8 + 3 * rec),
                (6, 8 + 4 * rec),
                (7, 500)
            ]
        );
    }
}
