//! A stream's messages on disk: [`FileStore`], an append-only log beside the stream's
//! configuration, behind the same [`StreamStore`] trait as the memory store (which it keeps
//! as its index: every message of a file stream is also held in memory).
//!
//! `<store_dir>/jetstream/<account>/streams/<stream>/` holds `meta.json` (configuration and
//! creation time, replaced atomically: written to a temporary file, then renamed) and
//! `msgs.log`, a sequence of records, little-endian:
//!
//! ```text
//! body_len u32 | body | fnv1a64(body) u64
//! body = 1 u8 | seq u64 | ts i64 | subj_len u16 | subj | hdr_len u32 | hdr | data   (message)
//!      | 2 u8 | seq u64                                                          (removal)
//!      | 3 u8 | last_seq u64                                                     (purge)
//!      | 4 u8 | seq u64 | ts i64                                                (skipped sequence)
//! ```
//!
//! A message's record is `write(2)`-n before `store_msg` returns, so the PubAck follows it
//! and a killed process loses no acknowledged message; with `sync_interval: always` it is
//! also fdatasync-ed. On open the log is replayed; a torn or corrupt record ends it and is
//! cut off.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::store::{MemoryStore, StoreState, StoredMsg, StreamStore};

const MSG: u8 = 1;
const REMOVE: u8 = 2;
const PURGE: u8 = 3;
const SKIP: u8 = 4;

/// The log file's name in a stream's directory.
pub const LOG: &str = "msgs.log";

/// The configuration file's name in a stream's directory.
pub const META: &str = "meta.json";

/// Messages in an append-only file, indexed in memory.
#[derive(Debug)]
pub struct FileStore {
    index: MemoryStore,
    log: File,
    path: PathBuf,
    sync_always: bool,
}

impl FileStore {
    /// Opens (creating it if need be) the log in `dir` and replays it. Returns the store and
    /// how many bytes of a torn or corrupt tail were cut off.
    pub fn open(dir: &Path, sync_always: bool) -> io::Result<(FileStore, u64)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG);
        let mut log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;
        let mut index = MemoryStore::with_file_sizes();
        let good = replay(&bytes, &mut index);
        let cut = (bytes.len() - good) as u64;
        if cut > 0 {
            log.set_len(good as u64)?;
            log.sync_all()?;
        }
        Ok((
            FileStore {
                index,
                log,
                path,
                sync_always,
            },
            cut,
        ))
    }

    /// Appends one record.
    fn append(&mut self, body: &[u8]) -> io::Result<()> {
        let len = u32::try_from(body.len()).map_err(io::Error::other)?;
        let mut record = Vec::with_capacity(body.len() + 12);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(body);
        record.extend_from_slice(&fnv1a64(body).to_le_bytes());
        self.log.write_all(&record)?;
        if self.sync_always {
            self.log.sync_data()?;
        }
        Ok(())
    }

    /// Appends a record that cannot be refused to the caller (a removal or a purge): a
    /// failure is logged, and the message would come back after a restart.
    fn append_or_log(&mut self, body: &[u8]) {
        if let Err(err) = self.append(body) {
            tracing::error!("JetStream: writing {}: {err}", self.path.display());
        }
    }
}

impl StreamStore for FileStore {
    fn store_msg(&mut self, subject: &str, header: Bytes, data: Bytes, ts: i64) -> io::Result<u64> {
        let seq = self.index.state().last_seq + 1;
        let subj_len = u16::try_from(subject.len()).map_err(io::Error::other)?;
        let hdr_len = u32::try_from(header.len()).map_err(io::Error::other)?;
        let mut body =
            Vec::with_capacity(1 + 8 + 8 + 2 + 4 + subject.len() + header.len() + data.len());
        body.push(MSG);
        body.extend_from_slice(&seq.to_le_bytes());
        body.extend_from_slice(&ts.to_le_bytes());
        body.extend_from_slice(&subj_len.to_le_bytes());
        body.extend_from_slice(subject.as_bytes());
        body.extend_from_slice(&hdr_len.to_le_bytes());
        body.extend_from_slice(&header);
        body.extend_from_slice(&data);
        self.append(&body)?;
        self.index.store_msg(subject, header, data, ts)
    }

    fn skip_msg(&mut self, ts: i64) -> io::Result<u64> {
        let seq = self.index.state().last_seq + 1;
        let mut body = vec![SKIP];
        body.extend_from_slice(&seq.to_le_bytes());
        body.extend_from_slice(&ts.to_le_bytes());
        self.append(&body)?;
        self.index.skip_msg(ts)
    }

    fn load_msg(&self, seq: u64) -> Option<StoredMsg> {
        self.index.load_msg(seq)
    }

    fn load_last_msg(&self, subject: &str) -> Option<StoredMsg> {
        self.index.load_last_msg(subject)
    }

    fn first_seq_for_subject(&self, subject: &str) -> Option<u64> {
        self.index.first_seq_for_subject(subject)
    }

    fn subject_total(&self, subject: &str) -> u64 {
        self.index.subject_total(subject)
    }

    fn remove_msg(&mut self, seq: u64) -> bool {
        if !self.index.remove_msg(seq) {
            return false;
        }
        let mut body = vec![REMOVE];
        body.extend_from_slice(&seq.to_le_bytes());
        self.append_or_log(&body);
        true
    }

    fn purge(&mut self) -> u64 {
        let last = self.index.state().last_seq;
        let mut body = vec![PURGE];
        body.extend_from_slice(&last.to_le_bytes());
        self.append_or_log(&body);
        self.index.purge()
    }

    fn state(&self) -> StoreState {
        self.index.state()
    }

    fn msg_size(&self, subject: &str, header: &[u8], data: &[u8]) -> u64 {
        self.index.msg_size(subject, header, data)
    }

    fn load_next_msg(&self, filter: &str, start: u64) -> Option<StoredMsg> {
        self.index.load_next_msg(filter, start)
    }

    fn num_pending(&self, filter: &str, start: u64) -> u64 {
        self.index.num_pending(filter, start)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.log.sync_data()
    }
}

/// Applies every whole, intact record of `bytes` to `index`; returns how many bytes they take.
fn replay(bytes: &[u8], index: &mut MemoryStore) -> usize {
    let mut at = 0;
    while let Some(body) = record_at(bytes, at) {
        let next = at + 4 + body.len() + 8;
        if apply(body, index).is_none() {
            break;
        }
        at = next;
    }
    at
}

/// The body of the record at `at`, if it is whole and its checksum matches.
fn record_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
    let body = bytes.get(at + 4..at + 4 + len)?;
    let sum = u64::from_le_bytes(bytes.get(at + 4 + len..at + 12 + len)?.try_into().ok()?);
    (fnv1a64(body) == sum).then_some(body)
}

/// Applies one record; `None` when it does not make sense (then it and what follows are cut).
fn apply(body: &[u8], index: &mut MemoryStore) -> Option<()> {
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
    };
    match *body.first()? {
        MSG => {
            let seq = u64_at(1)?;
            let ts = u64_at(9)? as i64;
            let subj_len = u16::from_le_bytes(body.get(17..19)?.try_into().ok()?) as usize;
            let subject = std::str::from_utf8(body.get(19..19 + subj_len)?).ok()?;
            let at = 19 + subj_len;
            let hdr_len = u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
            let header = body.get(at + 4..at + 4 + hdr_len)?;
            let data = body.get(at + 4 + hdr_len..)?;
            if seq != index.state().last_seq + 1 {
                return None;
            }
            index
                .store_msg(
                    subject,
                    Bytes::copy_from_slice(header),
                    Bytes::copy_from_slice(data),
                    ts,
                )
                .ok()?;
        }
        REMOVE => {
            index.remove_msg(u64_at(1)?);
        }
        PURGE => {
            let last = u64_at(1)?;
            // Only what was stored up to the purge goes (all of it, since it was the end).
            if last == index.state().last_seq {
                index.purge();
            }
        }
        SKIP => {
            if u64_at(1)? != index.state().last_seq + 1 {
                return None;
            }
            index.skip_msg(u64_at(9)? as i64).ok()?;
        }
        _ => return None,
    }
    Some(())
}

/// FNV-1a, 64 bits: enough to tell a torn or garbled record from a whole one.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // The two records are the same size.
        let first_len = whole.len() / 2;
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
}
