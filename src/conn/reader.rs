//! The reading side every connection shares: a buffer that starts small, doubles while reads
//! fill it (up to 64 KiB per read for a client, 256 KiB for a route or leafnode), is given
//! back after a burst, and tells its publisher when it has read enough without pause that the
//! writers it woke should get a turn.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

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
///
/// Large frames (payloads shared with subscribers, see `SHARE_PAYLOAD_FROM`) are read so that
/// nothing is ever copied on the way: once a frame's control line is parsed, the rest of it is
/// read into room made for all of it, and no further (bytes read past it would be left in
/// storage the frame shares with the subscribers' queues, and be copied out when the next read
/// needs room); at a frame boundary right after such frames, the next read makes room for, and
/// asks for, whole frames of the same length, so a stream of equal frames is read one or more
/// whole frames at a time with no partial frame left over.
#[derive(Debug)]
pub struct ReadBuffer {
    /// Bytes read and not yet parsed.
    pub buf: BytesMut,
    read_size: usize,
    /// The largest read (`MAX_READ` or `PEER_MAX_READ`).
    max_read: usize,
    since_yield: usize,
    /// The length of the large frame `buf` starts with and does not hold whole yet (0: none):
    /// the next read makes room for all of it and reads to its end (see `expect_frame`).
    frame: usize,
    /// The length of the last frame split off since the last read (0: none): the next read,
    /// at a frame boundary, expects more of the same (see `split_frame`).
    stride: usize,
    /// The last read returned all it asked for: more is likely waiting.
    full: bool,
    /// Reads that had to make room with a partial frame in the buffer (moving or copying it).
    #[cfg(test)]
    moved: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer {
            buf: BytesMut::with_capacity(MIN_READ),
            read_size: MIN_READ,
            max_read: MAX_READ,
            since_yield: 0,
            frame: 0,
            stride: 0,
            full: false,
            #[cfg(test)]
            moved: 0,
        }
    }
}

/// What the next read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// The most bytes the read may return.
    want: usize,
    /// The free room the buffer must have for it; when missing, room for the larger of the two
    /// is made with one `reserve`.
    room: usize,
}

impl ReadBuffer {
    /// A route's or leafnode's input buffer: reads up to `PEER_MAX_READ`.
    pub fn for_peer() -> Self {
        ReadBuffer {
            max_read: PEER_MAX_READ,
            ..ReadBuffer::default()
        }
    }

    /// Reads once from `reader`: at most the current read size (or whole large frames, see
    /// `plan`), so one read never hands a publisher much more than its largest read to
    /// deliver before the subscribers' writers get a turn (an unbounded read let a 1 MiB
    /// publisher queue 64 MiB to a subscriber that was keeping up, and cut it as slow).
    /// Cancel-safe.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        let plan = self.plan();
        if self.buf.capacity() - self.buf.len() < plan.room {
            #[cfg(test)]
            if !self.buf.is_empty() {
                self.moved += 1;
            }
            self.buf.reserve(plan.want.max(plan.room));
        }
        let mut room = (&mut self.buf).limit(plan.want);
        let n = reader.read_buf(&mut room).await?;
        self.stride = 0;
        self.full = n == plan.want;
        self.since_yield += n;
        if n >= self.read_size && self.read_size < self.max_read {
            self.read_size *= 2;
        }
        Ok(n)
    }

    /// Sizes the next read.
    fn plan(&self) -> Plan {
        let rest = self.frame.saturating_sub(self.buf.len());
        if rest > 0 {
            // The rest of a large frame is read whole (it is one message to deliver, whatever
            // its size), into room made for it at once (growing by doubling, a 1 MiB payload
            // was copied about twice more on its way through), and nothing past it.
            return Plan {
                want: rest,
                room: rest,
            };
        }
        if self.stride > 0 && self.stride <= 4 * self.max_read && self.buf.is_empty() {
            // Right after large frames: room for, and a read of, whole frames like the last
            // one, as many as fit twice the read size (at least one). Frames larger still
            // (1 MiB) start with an ordinary read; their control line then tells the rest.
            let frames = (2 * self.read_size / self.stride).max(1);
            let whole = self.stride * frames;
            return Plan {
                want: whole,
                room: whole,
            };
        }
        // Otherwise a read's worth, in the room left when at least half of it is.
        Plan {
            want: self.read_size,
            room: self.read_size / 2,
        }
    }

    /// Whether the reader is streaming: its last read filled all it asked for (more is likely
    /// waiting), or it is in the middle of a large frame, or right after one.
    #[inline]
    pub fn streaming(&self) -> bool {
        self.full || self.frame >= SHARE_PAYLOAD_FROM || self.stride >= SHARE_PAYLOAD_FROM
    }

    /// The bytes of the large frame the input starts with that have not arrived yet (0: none).
    #[inline]
    pub fn frame_rest(&self) -> usize {
        self.frame.saturating_sub(self.buf.len())
    }

    /// Splits the whole frame of `len` bytes the unparsed input starts with off the buffer, to
    /// be shared with its subscribers; the next read expects more like it.
    pub fn split_frame(&mut self, len: usize) -> Bytes {
        self.stride = len;
        self.buf.split_to(len).freeze()
    }

    /// The unparsed input starts with a frame of `len` bytes, not all here yet (0: nothing
    /// awaited). Only frames whose payload is shared are worth it.
    #[inline]
    pub fn expect_frame(&mut self, len: usize) {
        self.frame = if len >= SHARE_PAYLOAD_FROM { len } else { 0 };
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
    /// small (not while large frames stream: the next read sizes the buffer for them).
    #[inline]
    pub fn settle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 2 * self.max_read && self.stride == 0 {
            *self = ReadBuffer {
                max_read: self.max_read,
                ..ReadBuffer::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Buf;
    use proptest::prelude::*;
    use tokio::io::ReadBuf;

    use super::*;
    use crate::proto::parser::{self, ClientOp, Limits};

    /// Input that arrives in the given pieces (each read returns at most the rest of one).
    struct Pieces(VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(piece) = self.0.front_mut() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                piece.drain(..n);
                if piece.is_empty() {
                    self.0.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Each message's subject and body (headers and payload).
    type Messages = Vec<(Vec<u8>, Vec<u8>)>;

    /// A PUB (or an HPUB with a 12-byte header block) of `size` payload bytes.
    fn frame(i: usize, size: usize, headers: bool) -> Vec<u8> {
        let payload: Vec<u8> = (0..size).map(|j| (i * 7 + j) as u8).collect();
        let mut out = if headers {
            let head = b"NATS/1.0\r\n\r\n";
            let mut out =
                format!("HPUB s.{i} {} {}\r\n", head.len(), head.len() + size).into_bytes();
            out.extend_from_slice(head);
            out
        } else {
            format!("PUB s.{i} {size}\r\n").into_bytes()
        };
        out.extend_from_slice(&payload);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The frames of the given payload sizes (with headers or not), one after the other.
    fn stream(sizes: &[(usize, bool)]) -> Vec<u8> {
        sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &(size, headers))| frame(i, size, headers))
            .collect()
    }

    /// Reads `pieces` to the end as a client connection does (large frames split off and kept,
    /// as subscribers' queues keep them); returns each message's subject and body.
    fn read_all(pieces: Vec<Vec<u8>>) -> (Messages, ReadBuffer) {
        let limits = Limits::default();
        let mut reader = Pieces(pieces.into());
        let mut input = ReadBuffer::default();
        let (mut out, mut queued) = (Vec::new(), Vec::new());
        loop {
            let n = futures::executor::block_on(input.read(&mut reader)).expect("read");
            if n == 0 {
                break;
            }
            while let Some((op, len)) = parser::parse(&input.buf, &limits).expect("parses") {
                let (subject, body) = match op {
                    ClientOp::Pub {
                        subject, payload, ..
                    } => (subject.to_vec(), payload.to_vec()),
                    ClientOp::HPub {
                        subject, message, ..
                    } => (subject.to_vec(), message.to_vec()),
                    other => panic!("unexpected {other:?}"),
                };
                if body.len() >= SHARE_PAYLOAD_FROM {
                    queued.push(input.split_frame(len));
                } else {
                    input.buf.advance(len);
                }
                out.push((subject, body));
            }
            input.expect_frame(parser::frame_len(&input.buf, &limits).unwrap_or(0));
            input.settle();
        }
        assert!(input.buf.is_empty(), "nothing left over");
        (out, input)
    }

    /// What the frames hold, parsed from one whole buffer.
    fn expected(stream: &[u8]) -> Messages {
        let (out, _) = read_all(vec![stream.to_vec()]);
        out
    }

    #[test]
    fn streaming_is_a_full_read_or_a_large_frame() {
        let limits = Limits::default();
        let read = |input: &mut ReadBuffer, reader: &mut Pieces| {
            futures::executor::block_on(input.read(reader)).expect("read")
        };

        // A read that fills all it asked for (the first asks for MIN_READ): more is waiting.
        let mut input = ReadBuffer::default();
        let mut reader = Pieces(vec![vec![b'x'; MIN_READ]].into());
        assert_eq!(read(&mut input, &mut reader), MIN_READ);
        assert!(input.streaming());
        // One that came back short, with no large frame: not streaming.
        input.buf.clear();
        let mut reader = Pieces(vec![b"PING\r\n".to_vec()].into());
        read(&mut input, &mut reader);
        assert!(!input.streaming());
        assert_eq!(input.frame_rest(), 0);

        // Half of a large frame: streaming, and the rest is what it still lacks.
        let whole = frame(0, 64 * 1024, false);
        let half = whole.len() / 2;
        let mut input = ReadBuffer::default();
        let mut reader = Pieces(vec![whole[..100].to_vec(), whole[100..half].to_vec()].into());
        read(&mut input, &mut reader);
        input.expect_frame(parser::frame_len(&input.buf, &limits).unwrap_or(0));
        read(&mut input, &mut reader);
        assert_eq!(input.buf.len(), half);
        assert!(input.streaming());
        assert_eq!(input.frame_rest(), whole.len() - half);
    }

    #[test]
    fn frames_cut_at_every_byte_parse_the_same() {
        let sizes = [
            (3, false),
            (SHARE_PAYLOAD_FROM, false),
            (SHARE_PAYLOAD_FROM + 9, true),
            (0, false),
            (20_000, false),
        ];
        let stream = stream(&sizes);
        let want = expected(&stream);
        assert_eq!(want.len(), sizes.len());
        for (i, &(size, headers)) in sizes.iter().enumerate() {
            assert_eq!(want[i].1.len(), size + if headers { 12 } else { 0 });
        }
        for cut in 1..stream.len() {
            let (got, _) = read_all(vec![stream[..cut].to_vec(), stream[cut..].to_vec()]);
            assert!(got == want, "cut at {cut}");
        }
    }

    #[test]
    fn equal_large_frames_are_read_without_moving_partials() {
        // 64 KiB payloads arriving faster than they are read: after the first frame tells
        // the length, every read ends at a frame's end.
        let stream: Vec<u8> = (0..40).flat_map(|i| frame(i, 64 * 1024, false)).collect();
        let pieces = stream.chunks(300_000).map(<[u8]>::to_vec).collect();
        let (got, input) = read_all(pieces);
        assert_eq!(got.len(), 40);
        assert!(input.moved <= 2, "{} partial frames moved", input.moved);
    }

    #[test]
    fn small_frames_grow_reads_to_the_largest() {
        let stream: Vec<u8> = (0..400).flat_map(|i| frame(i, 1000, i % 2 == 0)).collect();
        let (got, input) = read_all(vec![stream]);
        assert_eq!(got.len(), 400);
        assert_eq!(input.read_size, MAX_READ);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any mix of small, shared and larger-than-a-read frames, cut anywhere, parses to the
        /// same messages as when read whole.
        #[test]
        fn frames_cut_anywhere_parse_the_same(
            frames in prop::collection::vec(
                (prop::sample::select(vec![0usize, 7, 1000, SHARE_PAYLOAD_FROM - 1, SHARE_PAYLOAD_FROM, 40_000, MAX_READ, 150_000]), any::<bool>()),
                1..8,
            ),
            cuts in prop::collection::vec(1usize..90_000, 1..12),
        ) {
            let stream = stream(&frames);
            let want = expected(&stream);
            prop_assert_eq!(want.len(), frames.len());
            let mut pieces = Vec::new();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at == stream.len() {
                    break;
                }
                let end = (at + cut).min(stream.len());
                pieces.push(stream[at..end].to_vec());
                at = end;
            }
            let (got, _) = read_all(pieces);
            prop_assert!(got == want);
        }
    }
}
