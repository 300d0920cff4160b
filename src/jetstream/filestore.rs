//! A stream's messages on disk: [`FileStore`], an append-only log beside the stream's
//! configuration, behind the same [`StreamStore`] trait as the memory store. Only an index
//! of the messages is held in memory ([`Index`]: sequence, place in the log, time, subject);
//! payloads are read back from the log when asked for, through a small cache of the log's
//! most recent bytes and of the last regions read (so that consumers reading the tail, or
//! reading on in order, rarely go to the disk).
//!
//! `<store_dir>/jetstream/<account>/streams/<stream>/` holds `meta.json` (configuration and
//! creation time, replaced atomically: written to a temporary file, then renamed) and
//! `msgs.log`: the 8 bytes [`MAGIC`] (format version 2), then a sequence of records,
//! little-endian:
//!
//! ```text
//! body_len u32 | body | crc32(body) u32                (CRC-32/ISO-HDLC, as zlib's crc32)
//! body = 1 u8 | seq u64 | ts i64 | subj_len u16 | subj | hdr_len u32 | hdr | data   (message)
//!      | 2 u8 | seq u64                                                          (removal)
//!      | 3 u8 | last_seq u64                        (purge: every message up to last_seq)
//!      | 4 u8 | seq u64 | ts i64          (the last sequence given: one a message did not take,
//!                                         interest retention; or the last one, after compaction)
//! ```
//!
//! A log without the header is in format 1, the first one: the same records, each closed
//! by the FNV-1a 64-bit hash of its body (8 bytes) instead. It is read as such, then
//! rewritten in the current format when opened (as a compaction does).
//!
//! Durability. A message's record is `write(2)`-n before `store_msg` returns, so the PubAck
//! follows it and a killed process loses no acknowledged message; with `sync_interval:
//! always` it is also fdatasync-ed first. Otherwise the log is fsynced every `sync_interval`
//! on a thread of its own, so that publishing does not wait for the disk. A write that fails
//! (a full disk, a file size limit) is undone (the log is cut back to where it was) and the
//! publisher gets the error; if even that fails, the store refuses every later write until
//! it is reopened, so that nothing is ever appended after a torn record.
//!
//! Recovery. On open the log is replayed, record by record, through one buffer, into the
//! index (see [`super::filelog`]):
//! - a torn last record (one that does not fit in the file, or whose checksum fails and which
//!   ends the file) is cut off: it was being written when the process died, and was never
//!   acknowledged;
//! - a record in the middle whose checksum fails while the record after it is whole (its
//!   length was intact, its content not) is skipped, with a warning, and the log is then
//!   rewritten without it; a message lost that way is a gap in the sequences, as if deleted;
//! - anything else unreadable ends the log: it is cut there, with a warning (nats-server cuts
//!   a block at its first bad record the same way).
//!
//! A message read back later is checked again (length and checksum); one that fails is
//! logged and not served.
//!
//! Compaction. Removals and purges only append, so the log holds dead records; when they take
//! more than half of it and more than 1 MiB, the log is rewritten: a thread copies the records
//! of the messages held (and the last sequence) to `msgs.log.new` and fsyncs it, while
//! publishing carries on into the old log; then what was appended meanwhile is copied over,
//! the new file is renamed onto `msgs.log` and the index is pointed at the new places; the
//! copied tail and the directory are fsynced on a thread of their own afterwards (before the
//! rename and before the next PubAck with `sync_interval: always`), as the interval fsync is,
//! so that the publish whose commit finishes a compaction does not wait for two fsyncs: a
//! power loss in those milliseconds can lose what was written since the compaction began,
//! as it can lose what was written since the last interval fsync. Publishing waits for a
//! compaction that fell 2 MiB behind it, so that the log stays bounded when messages come
//! faster than the disk syncs. A process killed at any point leaves either the old log (and a
//! `msgs.log.new`, removed on open) or the new one, each with every record written.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use bytes::Bytes;

use super::fileindex::{Entry, Index};
use super::filelog::{
    push_frame, push_msg, read_record, reframe, replay_from, seq_record, FileSource, PURGE, REMOVE,
    SEQ,
};
pub use super::filelog::{replay, write_snapshot, Format, Replay, MAGIC};
use super::store::{MsgMeta, StoreState, StoredMsg, StreamStore};

/// The log file's name in a stream's directory.
pub const LOG: &str = "msgs.log";

/// The log being rewritten by a compaction.
pub const COMPACTING: &str = "msgs.log.new";

/// The configuration file's name in a stream's directory.
pub const META: &str = "meta.json";

/// Dead records are compacted away once they take more than half of the log and this much.
pub const COMPACT_MIN_DEAD: u64 = 1 << 20;

/// A compaction is waited for once this much was appended since it started: publishing
/// faster than the disk syncs the new log would otherwise grow the log without bound.
pub const COMPACT_MAX_BEHIND: u64 = 2 << 20;

/// The most recent bytes of the log kept in memory: at most this much.
const TAIL_MAX: usize = 256 << 10;

/// How much of the log one read from disk takes (what follows the record asked for is read
/// too, for whoever reads on in order).
const WINDOW: usize = 64 << 10;

/// How many such regions are kept.
const WINDOWS: usize = 2;

/// A stream's messages: an append-only file, indexed in memory.
#[derive(Debug)]
pub struct FileStore {
    index: Index,
    log: File,
    dir: PathBuf,
    path: PathBuf,
    /// The stream's name (its directory's), for log lines.
    name: String,
    sync_always: bool,
    /// The log's format: [`Format::V2`] unless an old log could not be rewritten.
    format: Format,
    /// Bytes in the log.
    len: u64,
    /// Why nothing more may be written: a failed append could not be undone.
    broken: Option<String>,
    /// The last `sync_interval` fsync, running on its own thread.
    syncing: Option<JoinHandle<()>>,
    /// The compaction in progress.
    compaction: Option<Compaction>,
    /// Whether records are held in `pending` until [`StreamStore::commit`] (a group commit).
    deferring: bool,
    /// Records taken, not yet written (while deferring, or being written).
    pending: Vec<u8>,
    /// Recent bytes of the log, and the last regions read from it.
    cache: RefCell<ReadCache>,
    #[cfg(test)]
    faults: Faults,
}

/// A compaction in progress: the thread copying the records of the messages held when it
/// started (it gives back their entries), and the log's length then (what follows is copied
/// over when it is done).
#[derive(Debug)]
struct Compaction {
    mark: u64,
    writer: JoinHandle<io::Result<Vec<Entry>>>,
}

/// Parts of the log held in memory: its last bytes (up to [`TAIL_MAX`], ending where the log
/// ends) and the last [`WINDOWS`] regions read from disk.
#[derive(Debug, Default)]
struct ReadCache {
    tail_start: u64,
    tail: Vec<u8>,
    windows: [(u64, Vec<u8>); WINDOWS],
    /// The window to replace next.
    victim: usize,
}

impl ReadCache {
    /// Bytes just appended at `offset` (where the log ended).
    fn appended(&mut self, offset: u64, bytes: &[u8]) {
        if self.tail_start + self.tail.len() as u64 != offset {
            self.tail.clear();
            self.tail_start = offset;
        }
        if bytes.len() >= TAIL_MAX {
            self.tail.clear();
            self.tail_start = offset;
            return;
        }
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > TAIL_MAX {
            let drop = self.tail.len() - TAIL_MAX / 2;
            self.tail.drain(..drop);
            self.tail_start += drop as u64;
        }
    }

    /// Forgets everything (the log was replaced).
    fn clear(&mut self) {
        *self = ReadCache::default();
    }

    /// The `len` bytes at `offset` of `log` (which has `total` bytes), from memory if they
    /// are there, else read from disk with what follows them.
    fn read(&mut self, log: &File, offset: u64, len: usize, total: u64) -> io::Result<&[u8]> {
        let end = offset + len as u64;
        if offset >= self.tail_start && end <= self.tail_start + self.tail.len() as u64 {
            let at = (offset - self.tail_start) as usize;
            return Ok(&self.tail[at..at + len]);
        }
        let hit = self.windows.iter().position(|(start, bytes)| {
            offset >= *start && end <= start + bytes.len() as u64 && !bytes.is_empty()
        });
        let slot = match hit {
            Some(slot) => slot,
            None => {
                let slot = self.victim;
                let want = (len.max(WINDOW) as u64).min(total.saturating_sub(offset)) as usize;
                if want < len {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                let (start, bytes) = &mut self.windows[slot];
                bytes.resize(want, 0);
                if let Err(err) = log.read_exact_at(bytes, offset) {
                    bytes.clear();
                    return Err(err);
                }
                *start = offset;
                slot
            }
        };
        self.victim = (slot + 1) % WINDOWS;
        let (start, bytes) = &self.windows[slot];
        let at = (offset - start) as usize;
        Ok(&bytes[at..at + len])
    }
}

impl FileStore {
    /// Opens (creating it if need be) the log in `dir` and replays it (see the module's
    /// documentation). Returns the store and how many bytes of a torn or corrupt tail were
    /// cut off.
    pub fn open(dir: &Path, sync_always: bool) -> io::Result<(FileStore, u64)> {
        std::fs::create_dir_all(dir)?;
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        // A compaction that did not finish: the log it was to replace is whole.
        match std::fs::remove_file(dir.join(COMPACTING)) {
            Ok(()) => tracing::warn!("Filestore [{name}] removed an unfinished compaction"),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let path = dir.join(LOG);
        let mut log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let total = log.metadata()?.len();
        let mut found = replay_from(&mut FileSource::new(&log, total))?;
        let cut = total - found.good;
        if cut > 0 {
            log.set_len(found.good)?;
            log.sync_all()?;
            tracing::warn!(
                "Filestore [{name}] cut {cut} bytes of a torn or corrupt record off the end of \
                 its log, last sequence {}",
                found.index.state().last_seq
            );
        }
        // Nothing in it (new, or cut to nothing): a log in the current format.
        let upgrade = found.format == Format::V1 && found.good > 0;
        if found.good == 0 {
            log.write_all(&MAGIC)?;
            found.good = MAGIC.len() as u64;
            found.format = Format::V2;
            found.index = Index::new(Format::V2.frame());
        }
        let mut store = FileStore {
            index: found.index,
            log,
            dir: dir.to_path_buf(),
            path,
            name,
            sync_always,
            format: found.format,
            len: found.good,
            broken: None,
            syncing: None,
            compaction: None,
            deferring: false,
            pending: Vec::new(),
            cache: RefCell::default(),
            #[cfg(test)]
            faults: Faults::default(),
        };
        if found.skipped > 0 {
            tracing::warn!(
                "Filestore [{}] skipped {} corrupt records in its log, {} messages lost",
                store.name,
                found.skipped,
                found.lost
            );
            // Rewritten without them, so that they are not met again.
            store.start_compaction();
            store.wait_for_compaction();
        } else if upgrade {
            // A log of the first format is rewritten in the current one.
            store.start_compaction();
            store.wait_for_compaction();
            tracing::debug!("Filestore [{}] rewrote its log in format 2", store.name);
        }
        Ok((store, cut))
    }

    /// Bytes in the log (for tests and reports: disk bytes per message).
    pub fn log_len(&self) -> u64 {
        self.len
    }

    /// Bytes of the records of the messages held; the rest of the log is dead.
    fn live(&self) -> u64 {
        self.index.live_bytes()
    }

    /// Where the next record taken will start in the log.
    fn next_offset(&self) -> u64 {
        self.len + self.pending.len() as u64
    }

    /// Takes one record (held in `pending` while deferring, else written at once); on
    /// failure the log is as it was.
    fn append(&mut self, body: &[u8]) -> io::Result<()> {
        if let Some(why) = &self.broken {
            return Err(io::Error::other(why.clone()));
        }
        push_frame(&mut self.pending, body, self.format);
        self.write_pending()
    }

    /// Unless deferring, writes what is pending; on failure it is dropped and the log is as
    /// it was.
    fn write_pending(&mut self) -> io::Result<()> {
        if self.deferring || self.pending.is_empty() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut self.pending);
        let offset = self.len;
        let written = self.write_out(&pending);
        if written.is_ok() {
            self.cache.get_mut().appended(offset, &pending);
        }
        pending.clear();
        self.pending = pending;
        written
    }

    /// Writes whole records with one `write(2)` (then fdatasync with `sync_interval:
    /// always`); on failure the log is cut back to where it was.
    fn write_out(&mut self, records: &[u8]) -> io::Result<()> {
        let written = self
            .write_record(records)
            .and_then(|()| match self.sync_always {
                true => self.log.sync_data(),
                false => Ok(()),
            });
        match written {
            Ok(()) => {
                self.len += records.len() as u64;
                Ok(())
            }
            Err(err) => {
                let err = io::Error::new(
                    err.kind(),
                    format!(
                        "write {}: {}",
                        self.path.display(),
                        crate::monitor::os_error_text(&err)
                    ),
                );
                tracing::error!("Filestore [{}] Critical write error: {err}", self.name);
                // A partial record would make every record after it unreadable: cut it off.
                if let Err(undo) = self.log.set_len(self.len) {
                    tracing::error!(
                        "Filestore [{}] could not undo a failed write ({undo}): no more \
                         writes until restarted",
                        self.name
                    );
                    self.broken = Some(err.to_string());
                }
                Err(err)
            }
        }
    }

    /// After a group write failed: the index is read back from the log, which holds none of
    /// the records taken since the group began.
    fn reload_index(&mut self) {
        self.cache.get_mut().clear();
        match replay_from(&mut FileSource::new(&self.log, self.len)) {
            Ok(found) => self.index = found.index,
            Err(err) => {
                tracing::error!(
                    "Filestore [{}] could not read its log back ({err}): no more writes until \
                     restarted",
                    self.name
                );
                self.broken = Some(err.to_string());
            }
        }
    }

    #[cfg(not(test))]
    fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        self.log.write_all(record)
    }

    /// As in production, unless a test asked for the next write to fail part way.
    #[cfg(test)]
    fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        if let Some(keep) = self.faults.fail_next_write.take() {
            self.log.write_all(&record[..keep.min(record.len())])?;
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        self.log.write_all(record)
    }

    /// Appends a record that cannot be refused to the caller (a removal or a purge): a
    /// failure is logged, and the message would come back after a restart.
    fn append_or_log(&mut self, body: &[u8]) {
        if let Err(err) = self.append(body) {
            tracing::error!("JetStream: writing {}: {err}", self.path.display());
        }
    }

    /// The message of `entry`, read from the log (or what is pending); `None`, logged, when
    /// it cannot be read or does not check out.
    fn load(&self, entry: Entry) -> Option<StoredMsg> {
        let len = entry.len as usize;
        let msg = match entry.offset.checked_sub(self.len) {
            Some(at) => {
                let at = at as usize;
                let record = self.pending.get(at..at + len)?;
                read_record(record, self.format)
            }
            None => {
                let mut cache = self.cache.borrow_mut();
                match cache.read(&self.log, entry.offset, len, self.len) {
                    Ok(record) => read_record(record, self.format),
                    Err(err) => {
                        tracing::error!(
                            "Filestore [{}] reading message {}: {err}",
                            self.name,
                            entry.seq
                        );
                        return None;
                    }
                }
            }
        };
        if msg.as_ref().map(|m| m.seq) != Some(entry.seq) {
            tracing::error!(
                "Filestore [{}] message {} is corrupt in its log (offset {})",
                self.name,
                entry.seq,
                entry.offset
            );
            return None;
        }
        msg
    }

    /// What the index knows of `entry`'s message.
    fn meta(&self, entry: Entry) -> MsgMeta {
        MsgMeta {
            seq: entry.seq,
            ts: entry.ts,
            subject: self.index.subject(entry.subject_id()).to_string(),
        }
    }

    /// Starts a compaction when dead records take more than half of the log and at least
    /// [`COMPACT_MIN_DEAD`] bytes.
    fn maybe_compact(&mut self) {
        let dead = self.len.saturating_sub(self.live());
        // While records wait for a group write, the index holds messages the log does not.
        if self.deferring {
            return;
        }
        if self.compaction.is_none() && dead >= COMPACT_MIN_DEAD && dead > self.len / 2 {
            self.start_compaction();
        }
    }

    /// Starts copying the records of the messages held to [`COMPACTING`] on a thread of its
    /// own.
    fn start_compaction(&mut self) {
        if self.broken.is_some() || self.compaction.is_some() {
            return;
        }
        let snapshot: Vec<Entry> = self.index.iter().copied().collect();
        let state = self.index.state();
        let tmp = self.dir.join(COMPACTING);
        let format = self.format;
        let log = match self.log.try_clone() {
            Ok(log) => log,
            Err(err) => {
                tracing::error!("Filestore [{}] compacting: {err}", self.name);
                return;
            }
        };
        let writer = std::thread::Builder::new()
            .name("tern-compact".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
                out.write_all(&MAGIC)?;
                copy_records(&log, &snapshot, format, &mut out)?;
                out.write_all(&seq_record(state.last_seq, state.last_ts))?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                Ok(snapshot)
            });
        match writer {
            Ok(writer) => {
                self.compaction = Some(Compaction {
                    mark: self.len,
                    writer,
                })
            }
            Err(err) => tracing::error!("Filestore [{}] compacting: {err}", self.name),
        }
    }

    /// Finishes the compaction in progress if its thread is done, or waits for it when it
    /// fell [`COMPACT_MAX_BEHIND`] behind what is appended.
    fn poll_compaction(&mut self) {
        if self.compaction.as_ref().is_some_and(|c| {
            c.writer.is_finished() || self.len.saturating_sub(c.mark) >= COMPACT_MAX_BEHIND
        }) {
            self.wait_for_compaction();
        }
    }

    /// Waits for the compaction in progress, then puts the new log in place.
    fn wait_for_compaction(&mut self) {
        let Some(compaction) = self.compaction.take() else {
            return;
        };
        if let Err(err) = self.finish_compaction(compaction) {
            tracing::error!("Filestore [{}] compacting: {err}", self.name);
            let _ = std::fs::remove_file(self.dir.join(COMPACTING));
        }
    }

    /// Copies what was appended since the compaction started to the new log, syncs it and
    /// renames it onto the old one, then points the index at the new places.
    fn finish_compaction(&mut self, compaction: Compaction) -> io::Result<()> {
        let snapshot = compaction
            .writer
            .join()
            .map_err(|_| io::Error::other("the compaction thread panicked"))??;
        let tmp = self.dir.join(COMPACTING);
        let mut new = OpenOptions::new().read(true).append(true).open(&tmp)?;
        let moved = new.metadata()?.len();
        let mut tail = vec![0; (self.len - compaction.mark) as usize];
        self.log.read_exact_at(&mut tail, compaction.mark)?;
        if self.format != Format::V2 {
            tail = reframe(&tail, self.format);
        }
        new.write_all(&tail)?;
        if self.sync_always {
            new.sync_all()?;
        }
        #[cfg(test)]
        if self.faults.crash_before_rename {
            return Ok(());
        }
        std::fs::rename(&tmp, &self.path)?;
        if self.sync_always {
            File::open(&self.dir)?.sync_all()?;
        } else {
            // The copy of the log up to the mark is on disk already (the thread synced it);
            // the tail and the rename are synced on a thread of their own, as the interval
            // fsync is, so that the publish whose write finished the compaction does not
            // wait for the disk twice.
            let started = new
                .try_clone()
                .and_then(|file| self.sync_in_background(file, Some(self.dir.clone())));
            if let Err(err) = started {
                tracing::error!("Filestore [{}] syncing its log: {err}", self.name);
            }
        }
        let before = self.len;
        self.len = new.metadata()?.len();
        self.log = new;
        self.cache.get_mut().clear();
        if self.format == Format::V2 {
            self.index
                .relocate(&snapshot, MAGIC.len() as u64, compaction.mark, moved);
        } else {
            // Every record changed size: the index is read again from the new log.
            self.format = Format::V2;
            self.index = replay_from(&mut FileSource::new(&self.log, self.len))?.index;
        }
        tracing::debug!(
            "Filestore [{}] compacted its log from {before} to {} bytes",
            self.name,
            self.len
        );
        Ok(())
    }

    /// Runs what may follow a write: a compaction that is done is put in place, one that is
    /// due is started.
    fn after_write(&mut self) {
        self.poll_compaction();
        self.maybe_compact();
    }
}

impl Drop for FileStore {
    /// A compaction still writing is waited for and its file removed, so that a stream's
    /// directory can be deleted right after (the thread would otherwise write into it).
    fn drop(&mut self) {
        if let Some(compaction) = self.compaction.take() {
            let _ = compaction.writer.join();
            let _ = std::fs::remove_file(self.dir.join(COMPACTING));
        }
    }
}

impl StreamStore for FileStore {
    fn store_msg(&mut self, subject: &str, header: Bytes, data: Bytes, ts: i64) -> io::Result<u64> {
        if let Some(why) = &self.broken {
            return Err(io::Error::other(why.clone()));
        }
        let seq = self.index.last_seq() + 1;
        let offset = self.next_offset();
        let len = push_msg(
            &mut self.pending,
            self.format,
            (seq, ts, subject),
            &header,
            &data,
        )?;
        self.write_pending()?;
        self.index
            .push(seq, ts, subject, header.len(), offset, len as u32);
        self.poll_compaction();
        Ok(seq)
    }

    fn skip_msg(&mut self, ts: i64) -> io::Result<u64> {
        let seq = self.index.last_seq() + 1;
        let mut body = vec![SEQ];
        body.extend_from_slice(&seq.to_le_bytes());
        body.extend_from_slice(&ts.to_le_bytes());
        self.append(&body)?;
        self.poll_compaction();
        Ok(self.index.skip(ts))
    }

    fn load_msg(&self, seq: u64) -> Option<StoredMsg> {
        self.load(self.index.entry(seq)?)
    }

    fn load_meta(&self, seq: u64) -> Option<MsgMeta> {
        Some(self.meta(self.index.entry(seq)?))
    }

    fn load_last_msg(&self, subject: &str) -> Option<StoredMsg> {
        self.load_msg(self.index.last_for_subject(subject)?)
    }

    fn load_last_seq(&self, subject: &str) -> Option<u64> {
        self.index.last_for_subject(subject)
    }

    fn first_seq_for_subject(&self, subject: &str) -> Option<u64> {
        self.index.first_for_subject(subject)
    }

    fn subject_total(&self, subject: &str) -> u64 {
        self.index.subject_total(subject)
    }

    fn remove_msg(&mut self, seq: u64) -> bool {
        if self.index.remove(seq).is_none() {
            return false;
        }
        let mut body = vec![REMOVE];
        body.extend_from_slice(&seq.to_le_bytes());
        self.append_or_log(&body);
        self.after_write();
        true
    }

    fn purge(&mut self) -> u64 {
        let last = self.index.state().last_seq;
        let mut body = vec![PURGE];
        body.extend_from_slice(&last.to_le_bytes());
        self.append_or_log(&body);
        let purged = self.index.purge();
        self.after_write();
        purged
    }

    fn state(&self) -> StoreState {
        self.index.state()
    }

    fn msg_size(&self, subject: &str, header: &[u8], data: &[u8]) -> u64 {
        Index::msg_size(subject.len(), header.len(), data.len())
    }

    fn load_next_msg(&self, filter: &str, start: u64) -> Option<StoredMsg> {
        self.load(self.index.next_matching(filter, start)?)
    }

    fn load_next_meta(&self, filter: &str, start: u64) -> Option<MsgMeta> {
        Some(self.meta(self.index.next_matching(filter, start)?))
    }

    fn num_pending(&self, filter: &str, start: u64) -> u64 {
        self.index.num_pending(filter, start)
    }

    fn defer_writes(&mut self) {
        self.deferring = true;
    }

    /// Writes the records taken since [`StreamStore::defer_writes`] with one `write(2)`. On
    /// failure none of them is in the log, and the index is read back from it.
    fn commit(&mut self) -> io::Result<()> {
        self.deferring = false;
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = match &self.broken {
            Some(why) => Err(io::Error::other(why.clone())),
            None => self.write_pending(),
        };
        if let Err(err) = written {
            self.pending.clear();
            self.reload_index();
            return Err(err);
        }
        self.after_write();
        Ok(())
    }

    /// Starts an fsync of the log on a thread of its own (one at a time), so that the task
    /// storing messages does not wait for the disk; a failure is logged there.
    fn sync(&mut self) -> io::Result<()> {
        self.poll_compaction();
        if self.syncing.as_ref().is_some_and(|s| !s.is_finished()) {
            return Ok(());
        }
        self.sync_in_background(self.log.try_clone()?, None)
    }
}

impl FileStore {
    /// fsyncs `file` (then `dir`, when given) on a thread of its own; a failure is logged
    /// there. A sync still running from before carries on by itself.
    fn sync_in_background(&mut self, file: File, dir: Option<PathBuf>) -> io::Result<()> {
        let name = self.name.clone();
        #[cfg(test)]
        let gate = self.faults.sync_gate.take();
        let syncing = std::thread::Builder::new()
            .name("tern-sync".into())
            .spawn(move || {
                #[cfg(test)]
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                let synced = match file.sync_data() {
                    Ok(()) => dir.map_or(Ok(()), |dir| File::open(dir)?.sync_all()),
                    Err(err) => Err(err),
                };
                if let Err(err) = synced {
                    tracing::error!("Filestore [{name}] syncing its log: {err}");
                }
            })?;
        self.syncing = Some(syncing);
        Ok(())
    }
}

/// Copies the records of `entries` (in order) from `log` to `out`, reading runs of
/// neighbouring records at once; records of the first format are framed anew.
fn copy_records(
    log: &File,
    entries: &[Entry],
    format: Format,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let start = entries[i].offset;
        let mut end = start + u64::from(entries[i].len);
        i += 1;
        while i < entries.len() && entries[i].offset == end && end - start < (1 << 20) {
            end += u64::from(entries[i].len);
            i += 1;
        }
        buf.resize((end - start) as usize, 0);
        log.read_exact_at(&mut buf, start)?;
        match format {
            Format::V2 => out.write_all(&buf)?,
            Format::V1 => out.write_all(&reframe(&buf, format))?,
        }
    }
    Ok(())
}

/// Writes `contents` to `path` atomically: a temporary file beside it, then renamed; with
/// `sync`, the file and the directory are synced too.
pub fn write_atomically(path: &Path, contents: &[u8], sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(contents)?;
        if sync {
            file.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if let (true, Some(dir)) = (sync, path.parent()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Faults a test can inject.
#[cfg(test)]
#[derive(Debug, Default)]
struct Faults {
    /// The next record write writes this many bytes, then fails with EFBIG.
    fail_next_write: Option<usize>,
    /// A compaction stops (as if the process died) once the new log is written and synced,
    /// before it is renamed.
    crash_before_rename: bool,
    /// The next background fsync waits for this before it starts.
    sync_gate: Option<std::sync::mpsc::Receiver<()>>,
}

#[cfg(test)]
mod tests {
    use super::super::filelog::{frame_at, Frame, Slice, MSG};
    use super::super::store::MemoryStore;
    use super::*;

    /// Every message held, read back from the log.
    fn all_msgs(s: &FileStore) -> Vec<StoredMsg> {
        s.index.iter().map(|e| s.load(*e).unwrap()).collect()
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tern-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn put(s: &mut FileStore, subject: &str, data: &'static str, ts: i64) -> u64 {
        s.store_msg(
            subject,
            Bytes::new(),
            Bytes::from_static(data.as_bytes()),
            ts,
        )
        .unwrap()
    }

    #[test]
    fn reopened_as_it_was() {
        let d = dir("reopen");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        put(&mut s, "a", "one", 1);
        put(&mut s, "b", "two", 2);
        put(&mut s, "a", "three", 3);
        s.store_msg(
            "h",
            Bytes::from_static(b"NATS/1.0\r\nX: 1\r\n\r\n"),
            Bytes::new(),
            4,
        )
        .unwrap();
        assert!(s.remove_msg(2));
        let before = s.state();
        drop(s);
        let (s, cut) = FileStore::open(&d, false).unwrap();
        assert_eq!(cut, 0);
        assert_eq!(s.state(), before);
        assert_eq!(s.load_msg(3).unwrap().data, "three");
        assert_eq!(s.load_msg(4).unwrap().header, "NATS/1.0\r\nX: 1\r\n\r\n");
        assert!(s.load_msg(2).is_none());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn purge_survives_and_sequences_carry_on() {
        let d = dir("purge");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        put(&mut s, "a", "x", 1);
        put(&mut s, "a", "y", 2);
        assert_eq!(s.purge(), 2);
        drop(s);
        let (mut s, _) = FileStore::open(&d, true).unwrap();
        assert_eq!(
            (s.state().messages, s.state().first_seq, s.state().last_seq),
            (0, 3, 2)
        );
        assert_eq!(put(&mut s, "a", "z", 3), 3);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn skipped_sequences_survive() {
        let d = dir("skip");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        assert_eq!(s.skip_msg(1).unwrap(), 1);
        put(&mut s, "a", "x", 2);
        assert_eq!(s.skip_msg(3).unwrap(), 3);
        let before = s.state();
        drop(s);
        let (mut s, cut) = FileStore::open(&d, false).unwrap();
        assert_eq!((cut, s.state()), (0, before));
        assert_eq!(put(&mut s, "a", "y", 4), 4);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_what_came_before_kept() {
        let d = dir("torn");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        put(&mut s, "a", "kept", 1);
        put(&mut s, "a", "torn", 2);
        drop(s);
        let log = d.join(LOG);
        let len = std::fs::metadata(&log).unwrap().len();
        // Every cut through the second record loses it and only it.
        let whole = std::fs::read(&log).unwrap();
        // The two records, after the header, are the same size.
        let first_len = MAGIC.len() + (whole.len() - MAGIC.len()) / 2;
        for keep in first_len as u64..len {
            std::fs::write(&log, &whole[..keep as usize]).unwrap();
            let (mut s, cut) = FileStore::open(&d, false).unwrap();
            assert_eq!(cut, keep - first_len as u64, "kept {keep}");
            assert_eq!(s.state().messages, 1);
            assert_eq!(put(&mut s, "a", "again", 3), 2);
        }
        // A flipped byte is caught by the checksum.
        let mut garbled = whole.clone();
        let last = garbled.len() - 10;
        garbled[last] ^= 0xff;
        std::fs::write(&log, &garbled).unwrap();
        let (s, cut) = FileStore::open(&d, false).unwrap();
        assert!(cut > 0);
        assert_eq!(s.state().last_seq, 1);
        std::fs::remove_dir_all(d).unwrap();
    }

    fn msgs_of(s: &FileStore) -> Vec<(u64, String, Bytes)> {
        all_msgs(s)
            .into_iter()
            .map(|m| (m.seq, m.subject, m.data))
            .collect()
    }

    /// The offset of each record in a log.
    fn offsets(log: &[u8]) -> Vec<usize> {
        assert!(log.starts_with(&MAGIC));
        let mut at = MAGIC.len() as u64;
        let mut out = Vec::new();
        let mut src = Slice(log);
        while let Ok(Frame::Whole(_, next)) = frame_at(&mut src, at, Format::V2) {
            out.push(at as usize);
            at = next;
        }
        out
    }

    #[test]
    fn a_truncated_log_keeps_every_whole_record() {
        let d = dir("truncated");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        for n in 0..20 {
            put(&mut s, "a", ["x", "yy", "zzz"][n % 3], n as i64);
        }
        assert!(s.remove_msg(4));
        drop(s);
        let whole = std::fs::read(d.join(LOG)).unwrap();
        let starts = offsets(&whole);
        assert_eq!(starts.len(), 21);
        let ends: Vec<usize> = starts[1..].iter().copied().chain([whole.len()]).collect();
        // Cut anywhere: every record that still fits is back, nothing else.
        for keep in 0..=whole.len() {
            std::fs::write(d.join(LOG), &whole[..keep]).unwrap();
            let (s, cut) = FileStore::open(&d, false).unwrap();
            let records = ends.iter().filter(|&&end| end <= keep).count();
            let good = records.checked_sub(1).map_or(MAGIC.len(), |i| ends[i]);
            // A torn header is cut off and written again.
            let torn = match keep < MAGIC.len() {
                true => keep,
                false => keep - good,
            };
            assert_eq!(cut as usize, torn, "kept {keep}");
            assert_eq!(std::fs::metadata(d.join(LOG)).unwrap().len(), good as u64);
            // Records 0..20 are messages 1..=20; record 20 removes message 4.
            let msgs = records.min(20) as u64;
            let removed = u64::from(records == 21);
            assert_eq!(s.state().messages, msgs - removed, "kept {keep}");
            assert_eq!(s.state().last_seq, msgs);
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_corrupt_record_in_the_middle_is_skipped_and_what_follows_kept() {
        let d = dir("corrupt-middle");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        for n in 1..=5 {
            put(&mut s, "a", "data", n);
        }
        drop(s);
        let mut log = std::fs::read(d.join(LOG)).unwrap();
        let starts = offsets(&log);
        // A byte of message 3's payload flips: its checksum fails, its length is intact.
        log[starts[3] - 5] ^= 0x55;
        std::fs::write(d.join(LOG), &log).unwrap();
        let (mut s, cut) = FileStore::open(&d, false).unwrap();
        assert_eq!(cut, 0);
        let seqs: Vec<u64> = msgs_of(&s).iter().map(|m| m.0).collect();
        assert_eq!(seqs, [1, 2, 4, 5]);
        assert_eq!(s.state().last_seq, 5);
        // The log was rewritten without it: the next open finds nothing wrong.
        assert!(!d.join(COMPACTING).exists());
        let clean = std::fs::read(d.join(LOG)).unwrap();
        assert_eq!(replay(&clean).skipped, 0);
        assert_eq!(put(&mut s, "a", "six", 6), 6);
        drop(s);
        let (s, _) = FileStore::open(&d, false).unwrap();
        let seqs: Vec<u64> = msgs_of(&s).iter().map(|m| m.0).collect();
        assert_eq!(seqs, [1, 2, 4, 5, 6]);

        // A garbled length cannot be stepped over: the log ends there.
        drop(s);
        let mut log = std::fs::read(d.join(LOG)).unwrap();
        let starts = offsets(&log);
        log[starts[2] + 3] = 0x7f;
        std::fs::write(d.join(LOG), &log).unwrap();
        let (s, cut) = FileStore::open(&d, false).unwrap();
        assert_eq!(cut as usize, log.len() - starts[2]);
        let seqs: Vec<u64> = msgs_of(&s).iter().map(|m| m.0).collect();
        assert_eq!(seqs, [1, 2]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn removals_and_purges_replay() {
        let d = dir("replay-removals");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        for n in 1..=6 {
            put(&mut s, ["a", "b"][n as usize % 2], "v", n);
        }
        assert!(s.remove_msg(2));
        assert!(s.remove_msg(6));
        let before = (msgs_of(&s), s.state());
        drop(s);
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        assert_eq!((msgs_of(&s), s.state()), before);
        assert_eq!(s.state().last_seq, 6, "the last removed still counts");
        assert_eq!(s.purge(), 4);
        put(&mut s, "a", "after", 7);
        let before = (msgs_of(&s), s.state());
        drop(s);
        let (s, _) = FileStore::open(&d, false).unwrap();
        assert_eq!((msgs_of(&s), s.state()), before);
        assert_eq!(s.state().first_seq, 7);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_failed_write_is_undone_and_the_log_stays_readable() {
        let d = dir("failed-write");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        put(&mut s, "a", "one", 1);
        let len = s.log_len();
        s.faults.fail_next_write = Some(10);
        let err = s
            .store_msg("a", Bytes::new(), Bytes::from_static(b"two"), 2)
            .unwrap_err();
        assert!(
            err.to_string().ends_with("msgs.log: file too large"),
            "{err}"
        );
        assert!(err.to_string().starts_with("write /"), "{err}");
        // Nothing of it is stored or left in the file; the next message takes its sequence.
        assert_eq!(std::fs::metadata(d.join(LOG)).unwrap().len(), len);
        assert_eq!(s.state().last_seq, 1);
        assert_eq!(put(&mut s, "a", "three", 3), 2);
        drop(s);
        let (s, cut) = FileStore::open(&d, false).unwrap();
        assert_eq!(cut, 0);
        let data: Vec<Bytes> = msgs_of(&s).into_iter().map(|m| m.2).collect();
        assert_eq!(data, ["one", "three"]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_group_is_written_at_commit_and_a_failed_one_leaves_the_store_as_it_was() {
        let d = dir("group");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        put(&mut s, "a", "one", 1);
        let len = s.log_len();
        s.defer_writes();
        put(&mut s, "a", "two", 2);
        put(&mut s, "b", "three", 3);
        assert!(s.remove_msg(1));
        // Taken (the index has them), not yet in the log.
        assert_eq!(s.state().messages, 2);
        assert_eq!(std::fs::metadata(d.join(LOG)).unwrap().len(), len);
        s.commit().unwrap();
        let after = (msgs_of(&s), s.state());
        assert_eq!(s.log_len(), std::fs::metadata(d.join(LOG)).unwrap().len());
        let s = reopened_the_same(s, &d);
        assert_eq!(msgs_of(&s), after.0);

        // A group whose write fails part way: none of it is kept, in the log or the index.
        let mut s = s;
        let before = (msgs_of(&s), s.state(), s.log_len(), s.live());
        s.defer_writes();
        put(&mut s, "a", "lost", 4);
        assert!(s.remove_msg(2));
        s.skip_msg(5).unwrap();
        s.faults.fail_next_write = Some(30);
        let err = s.commit().unwrap_err();
        assert!(err.to_string().ends_with("file too large"), "{err}");
        assert_eq!((msgs_of(&s), s.state(), s.log_len(), s.live()), before);
        assert_eq!(std::fs::metadata(d.join(LOG)).unwrap().len(), before.2);
        // Writes go on, and the next message takes the sequence the lost one had.
        assert_eq!(put(&mut s, "c", "four", 6), 4);
        let s = reopened_the_same(s, &d);
        assert_eq!(s.load_msg(4).unwrap().data, "four");
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A record of the first format, framed by hand: length, body, FNV-1a 64 of the body.
    fn v1_record(body: &[u8]) -> Vec<u8> {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in body {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&hash.to_le_bytes());
        out
    }

    fn v1_msg(seq: u64, ts: i64, subject: &str, header: &[u8], data: &[u8]) -> Vec<u8> {
        let mut body = vec![MSG];
        body.extend_from_slice(&seq.to_le_bytes());
        body.extend_from_slice(&ts.to_le_bytes());
        body.extend_from_slice(&(subject.len() as u16).to_le_bytes());
        body.extend_from_slice(subject.as_bytes());
        body.extend_from_slice(&(header.len() as u32).to_le_bytes());
        body.extend_from_slice(header);
        body.extend_from_slice(data);
        v1_record(&body)
    }

    #[test]
    fn a_log_of_the_first_format_recovers_and_is_rewritten_in_the_current_one() {
        let d = dir("format-1");
        std::fs::create_dir_all(&d).unwrap();
        let hdr = b"NATS/1.0\r\nX: 1\r\n\r\n";
        let mut log = Vec::new();
        log.extend(v1_msg(1, 10, "a.one", b"", b"first"));
        log.extend(v1_msg(2, 20, "a.two", hdr, &[0, 255, 7]));
        log.extend(v1_msg(3, 30, "b", b"", b""));
        let mut remove = vec![REMOVE];
        remove.extend_from_slice(&1u64.to_le_bytes());
        log.extend(v1_record(&remove));
        let mut skip = vec![SEQ];
        skip.extend_from_slice(&4u64.to_le_bytes());
        skip.extend_from_slice(&40i64.to_le_bytes());
        log.extend(v1_record(&skip));
        std::fs::write(d.join(LOG), &log).unwrap();

        let (mut s, cut) = FileStore::open(&d, false).unwrap();
        assert_eq!(cut, 0);
        let state = s.state();
        assert_eq!((state.messages, state.first_seq, state.last_seq), (2, 2, 4));
        assert_eq!(state.last_ts, 40);
        let two = s.load_msg(2).unwrap();
        assert_eq!((two.subject.as_str(), two.ts), ("a.two", 20));
        assert_eq!(
            (&two.header[..], &two.data[..]),
            (&hdr[..], &[0u8, 255, 7][..])
        );
        assert_eq!(s.load_msg(3).unwrap().data, "");
        // Rewritten in format 2 on open: what follows is appended in it.
        assert!(std::fs::read(d.join(LOG)).unwrap().starts_with(&MAGIC));
        assert_eq!(s.format, Format::V2);
        assert_eq!(put(&mut s, "c", "next", 50), 5);
        let s = reopened_the_same(s, &d);
        assert_eq!(s.load_msg(5).unwrap().data, "next");
        assert_eq!(s.log_len(), std::fs::metadata(d.join(LOG)).unwrap().len());
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Fills a store until its removals call for a compaction, keeping every tenth message.
    fn churn(s: &mut FileStore) {
        let payload = Bytes::from(vec![b'p'; 1000]);
        for n in 0..2500u64 {
            let seq = s
                .store_msg("c", Bytes::new(), payload.clone(), n as i64)
                .unwrap();
            if seq % 10 != 0 {
                s.remove_msg(seq);
            }
        }
    }

    /// Drops `s` (as a process would stop) and opens its directory again: the same messages
    /// and state come back, with nothing cut.
    fn reopened_the_same(s: FileStore, d: &Path) -> FileStore {
        let before = (msgs_of(&s), s.state());
        drop(s);
        let (s, cut) = FileStore::open(d, false).unwrap();
        assert_eq!(cut, 0);
        assert_eq!((msgs_of(&s), s.state()), before);
        s
    }

    /// A churned store, compacted once, then with all but its last 50 messages removed.
    fn thinned(name: &str) -> (PathBuf, FileStore) {
        let d = dir(name);
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        churn(&mut s);
        s.wait_for_compaction();
        for seq in 1..=2000 {
            s.remove_msg(seq);
        }
        (d, s)
    }

    #[test]
    fn compaction_starts_once_dead_records_pass_half_of_the_log_and_1_mib() {
        let d = dir("compact-trigger");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        let payload = Bytes::from(vec![b'p'; 1000]);
        for n in 0..2000 {
            s.store_msg("t", Bytes::new(), payload.clone(), n).unwrap();
        }
        let mut started = None;
        for seq in 1..=2000 {
            let dead = s.len - s.live();
            assert!(
                s.compaction.is_none(),
                "started early, {dead} dead of {}",
                s.len
            );
            s.remove_msg(seq);
            if s.compaction.is_some() {
                started = Some(seq);
                let dead = s.len - s.live();
                assert!(dead >= COMPACT_MIN_DEAD && dead > s.len / 2);
                break;
            }
        }
        // After the 8-byte header, each removal makes a 1032-byte record dead and adds a
        // 17-byte one: past half the log after 992, past 1 MiB (1,048,576 bytes) after 1000.
        assert_eq!(started, Some(1000));
        s.wait_for_compaction();
        reopened_the_same(s, &d);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_reopened_store_compacts_too() {
        let d = dir("compact-reopened");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        churn(&mut s);
        s.wait_for_compaction();
        drop(s);
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        for _ in 0..4 {
            churn(&mut s);
        }
        s.wait_for_compaction();
        assert!(s.log_len() < 4 << 20, "{}", s.log_len());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn compaction_rewrites_the_log_and_keeps_everything_held() {
        let d = dir("compact");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        churn(&mut s);
        s.wait_for_compaction();
        assert_eq!(s.state().messages, 250);
        // The last sequences were removed: the next one still follows them.
        s.remove_msg(2500);
        s.start_compaction();
        s.wait_for_compaction();
        // Only the header, the messages held and the record of the last sequence (8 + 17).
        assert_eq!(s.log_len(), MAGIC.len() as u64 + s.live() + 25);
        assert_eq!(std::fs::metadata(d.join(LOG)).unwrap().len(), s.log_len());
        let bytes_per_msg = s.log_len() / s.state().messages;
        eprintln!("disk bytes per 1000-byte message after compaction: {bytes_per_msg}");
        assert_eq!(put(&mut s, "c", "next", 1), 2501);
        reopened_the_same(s, &d);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn publishing_carries_on_while_a_compaction_writes() {
        let (d, mut s) = thinned("compact-concurrent");
        s.start_compaction();
        // Appended while the thread writes: copied over when it is done.
        let during = put(&mut s, "c", "during", 1);
        assert!(s.remove_msg(2100));
        s.wait_for_compaction();
        assert_eq!(msgs_of(&s).last().unwrap().0, during);
        reopened_the_same(s, &d);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_compaction_killed_before_the_rename_loses_nothing() {
        let (d, mut s) = thinned("compact-crash");
        s.faults.crash_before_rename = true;
        s.start_compaction();
        put(&mut s, "c", "late", 1);
        s.wait_for_compaction();
        // The process dies here: the new log is written, the old one still in place.
        assert!(d.join(COMPACTING).exists());
        let s = reopened_the_same(s, &d);
        assert!(!d.join(COMPACTING).exists());
        // Killed half way through writing it: the same.
        let mut partial = std::fs::read(d.join(LOG)).unwrap();
        partial.truncate(partial.len() / 3);
        std::fs::write(d.join(COMPACTING), &partial).unwrap();
        reopened_the_same(s, &d);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_store_closed_while_compacting_leaves_its_directory_clean() {
        let (d, mut s) = thinned("compact-drop");
        s.start_compaction();
        drop(s);
        assert!(!d.join(COMPACTING).exists());
        std::fs::remove_dir(&d).unwrap_err();
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn the_interval_fsync_does_not_hold_up_the_caller() {
        let d = dir("sync");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        put(&mut s, "a", "one", 1);
        let (release, gate) = std::sync::mpsc::channel();
        s.faults.sync_gate = Some(gate);
        // The fsync waits for the gate on its own thread; the caller goes on storing.
        s.sync().unwrap();
        put(&mut s, "a", "two", 2);
        assert!(!s.syncing.as_ref().unwrap().is_finished());
        // A second interval while the first still runs starts nothing more.
        s.sync().unwrap();
        release.send(()).unwrap();
        s.syncing.take().unwrap().join().unwrap();
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn finishing_a_compaction_leaves_its_fsyncs_to_a_thread() {
        let (d, mut s) = thinned("compact-sync");
        s.start_compaction();
        let during = put(&mut s, "c", "during", 1);
        let (release, gate) = std::sync::mpsc::channel();
        s.faults.sync_gate = Some(gate);
        // The new log is in place while its tail's fsync still waits for the gate.
        s.wait_for_compaction();
        assert!(!d.join(COMPACTING).exists());
        assert!(!s.syncing.as_ref().unwrap().is_finished());
        let after = put(&mut s, "c", "after", 2);
        assert_eq!(std::fs::metadata(d.join(LOG)).unwrap().len(), s.log_len());
        release.send(()).unwrap();
        s.syncing.take().unwrap().join().unwrap();
        let s = reopened_the_same(s, &d);
        let seqs: Vec<u64> = msgs_of(&s).iter().map(|m| m.0).collect();
        assert!(seqs.ends_with(&[during, after]), "{seqs:?}");
        drop(s);
        std::fs::remove_dir_all(d).unwrap();
        // With `sync_interval: always` nothing is left to a thread.
        let (d, mut s) = thinned("compact-sync-always");
        s.sync_always = true;
        s.syncing = None;
        s.start_compaction();
        s.wait_for_compaction();
        assert!(s.syncing.is_none());
        assert!(!d.join(COMPACTING).exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn payloads_are_read_from_the_log_and_checked_again() {
        let d = dir("read-back");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        // Far more than the cache holds: most reads go to the disk.
        for n in 0..3000u64 {
            let data = Bytes::from(format!("{n:0>1000}"));
            let subject = ["r.a", "r.b", "r.c"][n as usize % 3];
            s.store_msg(subject, Bytes::new(), data, n as i64).unwrap();
        }
        drop(s);
        let (s, _) = FileStore::open(&d, false).unwrap();
        for seq in (1..=3000u64).rev().step_by(7).chain(1..=3000) {
            let msg = s.load_msg(seq).unwrap();
            assert_eq!(msg.data, format!("{:0>1000}", seq - 1), "{seq}");
            assert_eq!(msg.subject, ["r.a", "r.b", "r.c"][(seq - 1) as usize % 3]);
        }
        assert_eq!(s.load_last_msg("r.b").unwrap().seq, 2999);
        assert_eq!(s.load_next_msg("r.c", 1000).unwrap().seq, 1002);
        assert_eq!(s.load_next_meta("r.*", 3000).unwrap().subject, "r.c");
        // A byte of message 10's payload flips on disk: it is not served, the rest is.
        let at = s.index.entry(10).unwrap().offset + 100;
        drop(s);
        let log = OpenOptions::new().write(true).open(d.join(LOG)).unwrap();
        log.write_all_at(b"X", at).unwrap();
        let (s, cut) = FileStore::open(&d, false).unwrap();
        assert_eq!(cut, 0);
        // Replay skipped it (and the log was rewritten without it).
        assert!(s.load_msg(10).is_none());
        assert_eq!(s.load_msg(11).unwrap().seq, 11);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_record_that_goes_bad_after_the_open_is_not_served() {
        let d = dir("bad-later");
        let (mut s, _) = FileStore::open(&d, false).unwrap();
        for n in 0..1000u64 {
            let data = Bytes::from(vec![b'd'; 1000]);
            s.store_msg("b", Bytes::new(), data, n as i64).unwrap();
        }
        drop(s);
        let (s, _) = FileStore::open(&d, false).unwrap();
        let at = s.index.entry(3).unwrap().offset + 50;
        let log = OpenOptions::new().write(true).open(d.join(LOG)).unwrap();
        log.write_all_at(b"X", at).unwrap();
        assert!(s.load_msg(3).is_none());
        assert_eq!(s.load_msg(4).unwrap().data.len(), 1000);
        assert_eq!(s.load_meta(3).unwrap().seq, 3, "the index still has it");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_index_entry_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn replay_of_a_snapshot_is_the_same_store() {
        let mut mem = MemoryStore::new();
        for n in 1..=5 {
            let header = Bytes::from_static(b"NATS/1.0\r\n\r\n");
            mem.store_msg("s", header, Bytes::from(vec![n as u8; n]), n as i64)
                .unwrap();
        }
        mem.remove_msg(1);
        mem.remove_msg(3);
        mem.remove_msg(5);
        let mut msgs = Vec::new();
        while let Some(m) = mem.load_next_msg(">", msgs.last().map_or(0, |m: &StoredMsg| m.seq + 1))
        {
            msgs.push(m);
        }
        let mut bytes = Vec::new();
        let state = mem.state();
        write_snapshot(&mut bytes, &msgs, state.last_seq, state.last_ts).unwrap();
        let back = replay(&bytes);
        assert_eq!((back.good, back.skipped), (bytes.len() as u64, 0));
        assert_eq!(back.messages(&bytes), msgs);
        let again = back.index.state();
        assert_eq!(
            (
                again.messages,
                again.first_seq,
                again.last_seq,
                again.last_ts
            ),
            (2, 2, 5, 5)
        );
        let sizes: u64 = msgs
            .iter()
            .map(|m| Index::msg_size(m.subject.len(), m.header.len(), m.data.len()))
            .sum();
        assert_eq!(again.bytes, sizes);
        assert_eq!(back.index.live_bytes(), bytes.len() as u64 - 33);
    }
}
