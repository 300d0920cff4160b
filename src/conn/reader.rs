//! The reading side every connection shares: a buffer that starts small, doubles while reads
//! fill it (up to 64 KiB per read for a client, 256 KiB for a route or leafnode), is given
//! back after a burst, and tells its publisher when it has read enough without pause that the
//! writers it woke should get a turn.

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncReadExt;

use super::transport::ReadHalf;

/// Smallest read buffer; it doubles while reads fill it (nats-server starts at 512 bytes too).
const MIN_READ: usize = 512;
/// Largest single read of a client.
pub const MAX_READ: usize = 64 * 1024;
/// Largest single read of a route or leafnode connection: a few carry everyone's traffic, in
/// the large batches the other server's writer sends, and each read costs a system call and
/// the kernel's acknowledgement work (a tenth of a route reader's time at 64 KiB, 1 KB
/// messages).
pub const PEER_MAX_READ: usize = 256 * 1024;
/// A publisher yields to the writers it woke after reading this much (see `yield_due`).
const YIELD_AFTER: usize = 1024 * 1024;

/// Payloads from this size on are shared with subscribers rather than copied into each one's
/// queue (a reference-counted slice of the read buffer, written with a vectored write): by
/// clients, routes and leafnodes alike.
pub const SHARE_PAYLOAD_FROM: usize = 16 * 1024;

/// One connection's input buffer.
#[derive(Debug)]
pub struct ReadBuffer {
    /// Bytes read and not yet parsed.
    pub buf: BytesMut,
    read_size: usize,
    /// The largest read (`MAX_READ` or `PEER_MAX_READ`).
    max_read: usize,
    since_yield: usize,
    /// The length of the large frame `buf` starts with and does not hold whole yet (0: none):
    /// the next read makes room for all of it and may fill it (see `expect_frame`).
    frame: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer {
            buf: BytesMut::with_capacity(MIN_READ),
            read_size: MIN_READ,
            max_read: MAX_READ,
            since_yield: 0,
            frame: 0,
        }
    }
}

impl ReadBuffer {
    /// A route's or leafnode's input buffer: reads up to `PEER_MAX_READ`.
    pub fn for_peer() -> Self {
        ReadBuffer {
            max_read: PEER_MAX_READ,
            ..ReadBuffer::default()
        }
    }

    /// Reads once from `reader`: at most the current read size even when a large message grew
    /// the buffer, so one read never hands a publisher more than its largest read to deliver
    /// before the subscribers' writers get a turn (an unbounded read let a 1 MiB publisher
    /// queue 64 MiB to a subscriber that was keeping up, and cut it as slow). Cancel-safe.
    pub async fn read(&mut self, reader: &mut ReadHalf) -> std::io::Result<usize> {
        // The rest of a large frame is read whole when it is there (it is one message to
        // deliver, whatever its size), into room made for it at once: growing by doubling, a
        // 1 MiB payload was copied about twice more on its way through.
        let rest = self.frame.saturating_sub(self.buf.len());
        let want = self.read_size.max(rest);
        if self.buf.capacity() - self.buf.len() < want.min(self.read_size) / 2 || rest > 0 {
            self.buf.reserve(want);
        }
        let mut room = (&mut self.buf).limit(want);
        let n = reader.read_buf(&mut room).await?;
        self.since_yield += n;
        if n >= self.read_size && self.read_size < self.max_read {
            self.read_size *= 2;
        }
        Ok(n)
    }

    /// The unparsed input starts with a frame of `len` bytes, not all here yet (0: nothing
    /// large awaited). Only frames larger than a read are worth it.
    #[inline]
    pub fn expect_frame(&mut self, len: usize) {
        self.frame = if len > self.max_read { len } else { 0 };
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
        if self.buf.is_empty() && self.buf.capacity() > 2 * self.max_read {
            *self = ReadBuffer {
                max_read: self.max_read,
                ..ReadBuffer::default()
            };
        }
    }
}
