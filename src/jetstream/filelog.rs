//! The file store's log format: its records, how they are framed and checked, and replaying
//! a log into an [`Index`] (see [`super::filestore`] for the format and what recovery cuts
//! or skips). Reading is pluggable ([`Source`]): the whole log in memory (the fuzz target), or
//! a file read through one buffer, so that replaying a log of any size allocates nothing per
//! message.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::fileindex::Index;
use super::store::StoredMsg;

pub(super) const MSG: u8 = 1;
pub(super) const REMOVE: u8 = 2;
pub(super) const PURGE: u8 = 3;
pub(super) const SEQ: u8 = 4;

/// The first bytes of a log in the current format: format 2.
pub const MAGIC: [u8; 8] = *b"TRNLOG\x00\x02";

/// The bytes of the record giving the last sequence ([`SEQ`]) in the current format.
pub(super) const SEQ_RECORD: u64 = 4 + 17 + 4;

/// How much of a log file is read at once while replaying it.
const CHUNK: usize = 1 << 20;

/// How a log's records are closed: by which checksum (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The first format: no header, FNV-1a 64 bits.
    V1,
    /// [`MAGIC`], then records closed by their CRC-32.
    V2,
}

impl Format {
    /// The bytes of a record's length prefix and checksum.
    pub fn frame(self) -> usize {
        match self {
            Format::V1 => 4 + 8,
            Format::V2 => 4 + 4,
        }
    }

    /// Whether `sum` (the bytes closing a record) is `body`'s checksum.
    fn verifies(self, body: &[u8], sum: &[u8]) -> bool {
        match self {
            Format::V1 => sum == fnv1a64(body).to_le_bytes(),
            Format::V2 => sum == crc32fast::hash(body).to_le_bytes(),
        }
    }
}

/// What replaying a log found ([`replay`]).
#[derive(Debug)]
pub struct Replay {
    /// The messages, as the log leaves them.
    pub index: Index,
    /// How many bytes of the log were read as records; what follows is cut off.
    pub good: u64,
    /// Records skipped: corrupt ones whose framing held, and whole ones that made no sense.
    pub skipped: u64,
    /// Sequences missing right after a corrupt record (lost with it).
    pub lost: u64,
    /// The log's format.
    pub format: Format,
}

impl Replay {
    /// The messages held, read from `log` (the bytes replayed).
    pub fn messages(&self, log: &[u8]) -> Vec<StoredMsg> {
        self.index
            .iter()
            .filter_map(|e| {
                let at = usize::try_from(e.offset).ok()?;
                let record = log.get(at..at.checked_add(e.len as usize)?)?;
                read_record(record, self.format)
            })
            .collect()
    }
}

/// Where a log's bytes are read from.
pub(super) trait Source {
    /// The log's length.
    fn total(&self) -> u64;
    /// The `n` bytes at `at`; `None` when they run past the end.
    fn bytes(&mut self, at: u64, n: usize) -> io::Result<Option<&[u8]>>;
}

/// A log held whole in memory.
pub(super) struct Slice<'a>(pub(super) &'a [u8]);

impl Source for Slice<'_> {
    fn total(&self) -> u64 {
        self.0.len() as u64
    }

    fn bytes(&mut self, at: u64, n: usize) -> io::Result<Option<&[u8]>> {
        let Ok(at) = usize::try_from(at) else {
            return Ok(None);
        };
        Ok(self.0.get(at..at.saturating_add(n)))
    }
}

/// The first `total` bytes of a log file, read [`CHUNK`] by chunk into one buffer (a record
/// longer than a chunk gets a buffer of its size).
pub(super) struct FileSource<'f> {
    file: &'f File,
    total: u64,
    buf: Vec<u8>,
    start: u64,
}

impl<'f> FileSource<'f> {
    pub(super) fn new(file: &'f File, total: u64) -> FileSource<'f> {
        FileSource {
            file,
            total,
            buf: Vec::new(),
            start: 0,
        }
    }
}

impl Source for FileSource<'_> {
    fn total(&self) -> u64 {
        self.total
    }

    fn bytes(&mut self, at: u64, n: usize) -> io::Result<Option<&[u8]>> {
        let end = at.saturating_add(n as u64);
        if end > self.total {
            return Ok(None);
        }
        if at < self.start || end > self.start + self.buf.len() as u64 {
            let want = (n.max(CHUNK) as u64).min(self.total - at) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.start = at;
        }
        let from = (at - self.start) as usize;
        Ok(Some(&self.buf[from..from + n]))
    }
}

/// Replays a log held in memory (see [`replay_from`]). Pure, so that it can be fuzzed.
pub fn replay(bytes: &[u8]) -> Replay {
    match replay_from(&mut Slice(bytes)) {
        Ok(found) => found,
        Err(_) => unreachable!("reading from memory does not fail"),
    }
}

/// Replays a log: applies every record it can read to a new index (see
/// [`super::filestore`] for what is cut and what is skipped).
pub(super) fn replay_from(src: &mut impl Source) -> io::Result<Replay> {
    let (format, mut at) = match src.bytes(0, MAGIC.len())? {
        Some(head) if head == MAGIC => (Format::V2, MAGIC.len() as u64),
        _ => (Format::V1, 0),
    };
    let mut found = Replay {
        index: Index::new(format.frame()),
        good: 0,
        skipped: 0,
        lost: 0,
        format,
    };
    let mut after_corrupt = false;
    while at < src.total() {
        match frame_at(src, at, format)? {
            Frame::Whole(body, next) => {
                let len = (next - at) as u32;
                match apply(body, &mut found.index, at, len) {
                    Some(gap) => {
                        if after_corrupt {
                            found.lost += gap;
                        }
                    }
                    None => found.skipped += 1,
                }
                after_corrupt = false;
                at = next;
            }
            Frame::Corrupt(next) => {
                if !matches!(frame_at(src, next, format)?, Frame::Whole(..)) {
                    break;
                }
                found.skipped += 1;
                after_corrupt = true;
                at = next;
            }
            Frame::Torn => break,
        }
    }
    found.good = at;
    Ok(found)
}

/// A record as it is read back.
pub(super) enum Frame<'a> {
    /// Its body (checksum verified) and where the next record starts.
    Whole(&'a [u8], u64),
    /// Its checksum fails; where the next record would start.
    Corrupt(u64),
    /// It does not fit in what is left.
    Torn,
}

pub(super) fn frame_at(src: &mut impl Source, at: u64, format: Format) -> io::Result<Frame<'_>> {
    let Some(len) = src.bytes(at, 4)? else {
        return Ok(Frame::Torn);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let size = format.frame() + len;
    let end = at.saturating_add(size as u64);
    let Some(record) = src.bytes(at, size)? else {
        return Ok(Frame::Torn);
    };
    let body = &record[4..4 + len];
    Ok(match format.verifies(body, &record[4 + len..]) {
        true => Frame::Whole(body, end),
        false => Frame::Corrupt(end),
    })
}

/// The message in a whole record (`record` is exactly one record, framing included), if its
/// length and checksum hold and it is a message.
pub(super) fn read_record(record: &[u8], format: Format) -> Option<StoredMsg> {
    let len = u32::from_le_bytes(record.get(..4)?.try_into().ok()?) as usize;
    if len + format.frame() != record.len() {
        return None;
    }
    let body = &record[4..4 + len];
    if !format.verifies(body, &record[4 + len..]) {
        return None;
    }
    let msg = MsgRecord::parse(body)?;
    Some(StoredMsg {
        subject: msg.subject.to_string(),
        seq: msg.seq,
        header: Bytes::copy_from_slice(msg.header),
        data: Bytes::copy_from_slice(msg.data),
        ts: msg.ts,
    })
}

/// A message record's body, parsed in place.
struct MsgRecord<'a> {
    seq: u64,
    ts: i64,
    subject: &'a str,
    header: &'a [u8],
    data: &'a [u8],
}

impl<'a> MsgRecord<'a> {
    /// `None` unless `body` is a whole message record.
    fn parse(body: &'a [u8]) -> Option<MsgRecord<'a>> {
        if *body.first()? != MSG {
            return None;
        }
        let seq = u64_at(body, 1)?;
        let ts = u64_at(body, 9)? as i64;
        let subj_len = u16::from_le_bytes(body.get(17..19)?.try_into().ok()?) as usize;
        let subject = std::str::from_utf8(body.get(19..19 + subj_len)?).ok()?;
        let at = 19 + subj_len;
        let hdr_len = u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
        let header = body.get(at + 4..(at + 4).checked_add(hdr_len)?)?;
        let data = body.get(at + 4 + hdr_len..)?;
        Some(MsgRecord {
            seq,
            ts,
            subject,
            header,
            data,
        })
    }
}

fn u64_at(body: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
}

/// Applies one whole record, which starts at `offset` and takes `len` bytes; `None` when it
/// makes no sense (it is then skipped), else how many sequences it jumped over (a message
/// record after a gap).
fn apply(body: &[u8], index: &mut Index, offset: u64, len: u32) -> Option<u64> {
    let last_seq = index.last_seq();
    match *body.first()? {
        MSG => {
            let msg = MsgRecord::parse(body)?;
            // Sequences only go up; a gap is what a compaction (or a lost record) left.
            if msg.seq <= last_seq || msg.seq == u64::MAX {
                return None;
            }
            index.skip_to(msg.seq - 1, msg.ts);
            index.push(msg.seq, msg.ts, msg.subject, msg.header.len(), offset, len);
            Some(msg.seq - last_seq - 1)
        }
        REMOVE if body.len() == 9 => {
            index.remove(u64_at(body, 1)?);
            Some(0)
        }
        PURGE if body.len() == 9 => {
            // Every message up to `last` goes, and sequences carry on after it.
            index.purge_to(u64_at(body, 1)?);
            Some(0)
        }
        SEQ if body.len() == 17 => {
            index.skip_to(u64_at(body, 1)?, u64_at(body, 9)? as i64);
            Some(0)
        }
        _ => None,
    }
}

/// Appends a framed record to `out`.
pub(super) fn push_frame(out: &mut Vec<u8>, body: &[u8], format: Format) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    push_sum(out, body.len(), format);
}

/// Closes the record whose body is the last `body_len` bytes of `out` with its checksum.
fn push_sum(out: &mut Vec<u8>, body_len: usize, format: Format) {
    let body = &out[out.len() - body_len..];
    match format {
        Format::V1 => {
            let sum = fnv1a64(body).to_le_bytes();
            out.extend_from_slice(&sum)
        }
        Format::V2 => {
            let sum = crc32fast::hash(body).to_le_bytes();
            out.extend_from_slice(&sum)
        }
    }
}

/// Appends a message's whole record to `out`, returning its length; an error (and nothing
/// appended) when a length does not fit its field.
pub(super) fn push_msg(
    out: &mut Vec<u8>,
    format: Format,
    msg: (u64, i64, &str),
    header: &[u8],
    data: &[u8],
) -> io::Result<usize> {
    let (seq, ts, subject) = msg;
    let subj_len = u16::try_from(subject.len()).map_err(io::Error::other)?;
    let hdr_len = u32::try_from(header.len()).map_err(io::Error::other)?;
    let body_len = 23 + subject.len() + header.len() + data.len();
    let body_len32 = u32::try_from(body_len).map_err(io::Error::other)?;
    out.reserve(body_len + format.frame());
    out.extend_from_slice(&body_len32.to_le_bytes());
    out.push(MSG);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&subj_len.to_le_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(&hdr_len.to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    push_sum(out, body_len, format);
    Ok(body_len + format.frame())
}

/// The records of a log of `format` (whole ones, as written), framed as the current format.
pub(super) fn reframe(records: &[u8], format: Format) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len());
    let mut src = Slice(records);
    let mut at = 0;
    while let Ok(Frame::Whole(body, next)) = frame_at(&mut src, at, format) {
        push_frame(&mut out, body, Format::V2);
        at = next;
    }
    out
}

/// The record giving the last sequence, `last_seq`, given at `last_ts`.
pub(super) fn seq_record(last_seq: u64, last_ts: i64) -> Vec<u8> {
    let mut body = vec![SEQ];
    body.extend_from_slice(&last_seq.to_le_bytes());
    body.extend_from_slice(&last_ts.to_le_bytes());
    let mut out = Vec::with_capacity(SEQ_RECORD as usize);
    push_frame(&mut out, &body, Format::V2);
    out
}

/// Writes a log holding `msgs` and remembering `last_seq` (given at `last_ts`): what a
/// compaction writes, and what replaying it gives back.
pub fn write_snapshot(
    out: &mut impl Write,
    msgs: &[StoredMsg],
    last_seq: u64,
    last_ts: i64,
) -> io::Result<()> {
    out.write_all(&MAGIC)?;
    let mut record = Vec::new();
    for msg in msgs {
        record.clear();
        let head = (msg.seq, msg.ts, msg.subject.as_str());
        push_msg(&mut record, Format::V2, head, &msg.header, &msg.data)?;
        out.write_all(&record)?;
    }
    out.write_all(&seq_record(last_seq, last_ts))?;
    out.flush()
}

/// FNV-1a, 64 bits: the first format's checksum.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
