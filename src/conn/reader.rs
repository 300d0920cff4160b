//! The reading side every connection shares: a buffer that starts small, doubles while reads
//! fill it (up to 64 KiB per read), is given back after a burst, and tells its publisher when
//! it has read enough without pause that the writers it woke should get a turn.

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncReadExt;

use super::transport::ReadHalf;

/// Smallest read buffer; it doubles while reads fill it (nats-server starts at 512 bytes too).
const MIN_READ: usize = 512;
/// Largest single read.
pub const MAX_READ: usize = 64 * 1024;
/// A publisher yields to the writers it woke after reading this much (see `yield_due`).
const YIELD_AFTER: usize = 1024 * 1024;

/// One connection's input buffer.
#[derive(Debug)]
pub struct ReadBuffer {
    /// Bytes read and not yet parsed.
    pub buf: BytesMut,
    read_size: usize,
    since_yield: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer {
            buf: BytesMut::with_capacity(MIN_READ),
            read_size: MIN_READ,
            since_yield: 0,
        }
    }
}

impl ReadBuffer {
    /// Reads once from `reader`: at most the current read size even when a large message grew
    /// the buffer, so one read never hands a publisher more than 64 KiB to deliver before the
    /// subscribers' writers get a turn (an unbounded read let a 1 MiB publisher queue 64 MiB to
    /// a subscriber that was keeping up, and cut it as slow). Cancel-safe.
    pub async fn read(&mut self, reader: &mut ReadHalf) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let mut room = (&mut self.buf).limit(self.read_size);
        let n = reader.read_buf(&mut room).await?;
        self.since_yield += n;
        if n >= self.read_size && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Ok(n)
    }

    /// Whether the publisher has read a MiB since it last waited or yielded: a writer woken
    /// from a worker thread waits in that worker's LIFO slot, which no other worker may steal,
    /// until this task yields, so a publisher whose reads never block must yield now and then.
    #[inline]
    pub fn yield_due(&self) -> bool {
        self.since_yield >= YIELD_AFTER
    }

    /// The publisher waited or yielded.
    #[inline]
    pub fn paused(&mut self) {
        self.since_yield = 0;
    }

    /// After a batch: gives back what a burst of large messages grew, so idle connections stay
    /// small.
    #[inline]
    pub fn settle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 2 * MAX_READ {
            *self = ReadBuffer::default();
        }
    }
}
