//! Micro-benchmarks of the pure core with criterion: `cargo bench --bench micro` (add
//! `-- --quick` for a short run, or a filter such as `-- sublist` or `-- ws`), and tern's
//! WebSocket frame codec against tokio-websockets'.
//!
//! Numbers are for spotting regressions on one machine, not for comparing machines; the
//! side-by-side load generator against nats-server (`cargo bench --bench loadgen`) is the judge
//! of the server as a whole.

use std::collections::HashMap;
use std::hint::black_box;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_websockets::{Limits as WsLimits, Message, ServerBuilder};

use tern::engine::account::{Account, Matches};
use tern::engine::connection::Connection;
use tern::engine::sublist::Sublist;
use tern::engine::subscription::Subscription;
use tern::proto::parser::{parse, Limits};
use tern::proto::protocol::encode_msg;
use tern::proto::websocket::{self as ws, Decoder};

/// Frames per parser batch.
const BATCH: usize = 1000;

/// Parses a whole batch; returns the operations seen (so nothing is optimised away).
fn parse_all(batch: &[u8], limits: &Limits) -> usize {
    let mut at = 0;
    let mut ops = 0;
    while let Ok(Some((op, n))) = parse(&batch[at..], limits) {
        black_box(&op);
        at += n;
        ops += 1;
    }
    assert_eq!(at, batch.len(), "the batch must parse whole");
    ops
}

fn parser(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parser");

    let pubs = "PUB orders.eu.new 16\r\n0123456789abcdef\r\n"
        .repeat(BATCH)
        .into_bytes();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("1000 PUBs of 16 B", |b| {
        b.iter(|| parse_all(black_box(&pubs), &limits))
    });

    let headers = "NATS/1.0\r\nTrace-Id: 4bf92f3577b34da6\r\n\r\n";
    let hpub = format!(
        "HPUB orders.eu.new _INBOX.abc.1 {} {}\r\n{headers}0123456789abcdef\r\n",
        headers.len(),
        headers.len() + 16
    );
    let hpubs = hpub.repeat(BATCH).into_bytes();
    group.bench_function("1000 HPUBs with reply, headers + 16 B", |b| {
        b.iter(|| parse_all(black_box(&hpubs), &limits))
    });

    let payload = "x".repeat(1024);
    let big = format!("PUB telemetry.eu.host42 1024\r\n{payload}\r\n")
        .repeat(BATCH)
        .into_bytes();
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("1000 PUBs of 1 KB (payload-heavy)", |b| {
        b.iter(|| parse_all(black_box(&big), &limits))
    });

    // What a busy service connection sends: mostly messages, with subscriptions coming and
    // going and pings in between.
    let mut mixed = String::new();
    for i in 0..BATCH / 10 {
        for _ in 0..4 {
            mixed.push_str("PUB orders.eu.new 16\r\n0123456789abcdef\r\n");
        }
        mixed.push_str(&format!(
            "PUB svc.req _INBOX.x.{i} 16\r\n0123456789abcdef\r\n"
        ));
        mixed.push_str("HPUB orders.eu.new 12 28\r\nNATS/1.0\r\n\r\n0123456789abcdef\r\n");
        mixed.push_str(&format!("SUB _INBOX.x.{i} {i}\r\n"));
        mixed.push_str(&format!("UNSUB {i} 1\r\n"));
        mixed.push_str("PING\r\n");
        mixed.push_str("PONG\r\n");
    }
    let mixed = mixed.into_bytes();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("1000 ops, message-heavy mix", |b| {
        b.iter(|| parse_all(black_box(&mixed), &limits))
    });
    group.finish();

    // The other half of every delivery: the MSG frame a subscriber is sent.
    let mut group = c.benchmark_group("protocol");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut out = BytesMut::with_capacity(64 * 1024);
    group.bench_function("encode 1000 MSGs of 16 B", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..BATCH {
                encode_msg(
                    &mut out,
                    black_box(b"orders.eu.new"),
                    black_box(b"42"),
                    None,
                    black_box(b"0123456789abcdef"),
                );
            }
            black_box(out.len())
        })
    });
    group.finish();
}

/// 10,000 literal subscriptions `svc.N.req`, plus `extra`.
fn sublist_with(extra: &[(&[u8], Option<&[u8]>)]) -> Sublist<u32> {
    let mut sublist = Sublist::new();
    for i in 0..10_000u32 {
        sublist.insert(format!("svc.{i}.req").as_bytes(), None, Arc::new(i));
    }
    for (n, (subject, queue)) in extra.iter().enumerate() {
        sublist.insert(subject, *queue, Arc::new(1_000_000 + n as u32));
    }
    sublist
}

fn sublist(c: &mut Criterion) {
    let mut group = c.benchmark_group("sublist, 10k subscriptions");

    let literal = sublist_with(&[]);
    group.bench_function("match literal", |b| {
        b.iter(|| literal.matches(black_box(b"svc.4242.req")))
    });
    group.bench_function("match nothing", |b| {
        b.iter(|| literal.matches(black_box(b"other.subject.here")))
    });

    let pwc = sublist_with(&[(b"svc.*.req", None)]);
    group.bench_function("match literal + *", |b| {
        b.iter(|| pwc.matches(black_box(b"svc.4242.req")))
    });
    group.bench_function("match * only", |b| {
        b.iter(|| pwc.matches(black_box(b"svc.new.req")))
    });

    let fwc = sublist_with(&[(b"svc.>", None), (b"svc.>", Some(b"workers"))]);
    group.bench_function("match literal + > + queue >", |b| {
        b.iter(|| fwc.matches(black_box(b"svc.4242.req")))
    });
    group.bench_function("match > only, 5 tokens", |b| {
        b.iter(|| fwc.matches(black_box(b"svc.a.b.c.d")))
    });

    let mut churn = sublist_with(&[(b"svc.*.req", None)]);
    let sub = Arc::new(7u32);
    group.bench_function("insert + remove", |b| {
        b.iter(|| {
            churn.insert(black_box(b"svc.new.req"), None, sub.clone());
            churn.remove(black_box(b"svc.new.req"), None, &sub)
        })
    });
    group.finish();
}

/// A copy of the per-connection match cache in `client.rs` (private there): results by subject,
/// valid while the account's generation is the one recorded.
struct MatchCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, Matches, ahash::RandomState>,
}

impl MatchCache {
    fn lookup(&mut self, router: &Account, subject: &[u8]) -> Matches {
        let generation = router.generation();
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        } else if let Some(found) = self.entries.get(subject) {
            return found.clone();
        }
        let found = router.matches(subject);
        self.entries.insert(subject.into(), found.clone());
        found
    }
}

fn router(c: &mut Criterion) {
    let router = Arc::new(Account::new("$G"));
    let conn = Arc::new(Connection::new(
        1,
        64 << 20,
        "bench",
        ([127, 0, 0, 1], 4222).into(),
        router.clone(),
    ));
    let subscribe = |subject: String, sid: usize| {
        router.subscribe(Arc::new(Subscription::new(
            conn.clone(),
            subject.as_bytes(),
            None,
            sid.to_string().as_bytes(),
        )));
    };
    for i in 0..10_000 {
        subscribe(format!("svc.{i}.req"), i);
    }
    subscribe("svc.*.req".into(), 10_000);
    subscribe("svc.>".into(), 10_001);

    let mut group = c.benchmark_group("account match, 10k subscriptions");
    let mut cache = MatchCache {
        generation: router.generation(),
        entries: HashMap::default(),
    };
    cache.lookup(&router, b"svc.4242.req");
    group.bench_function("cache hit", |b| {
        b.iter(|| cache.lookup(&router, black_box(b"svc.4242.req")))
    });
    group.bench_function("cache miss (read lock, trie, Arc)", |b| {
        b.iter(|| router.matches(black_box(b"svc.4242.req")))
    });
    // A miss because a SUB or UNSUB elsewhere moved the router's generation on: the cache is
    // cleared and the match recomputed and cached again. (Forcing a stale generation stands in
    // for the SUB, whose own cost is not part of the lookup.)
    group.bench_function("cache invalidated by a SUB or UNSUB", |b| {
        b.iter(|| {
            cache.generation = u64::MAX;
            cache.lookup(&router, black_box(b"svc.4242.req"))
        })
    });
    group.finish();
}

// WebSocket frame codec: tern's (`tern::proto::websocket`) against tokio-websockets', each
// used as tern uses a transport: a byte stream beneath the same NATS parser
// (`cargo bench --bench micro -- ws`).
//
// Decoding takes a client's masked frames as they arrive in reads of up to 64 KiB, turns them
// into NATS bytes and parses every whole operation. tern's decoder appends each frame's
// unmasked payload to the parse buffer as it comes; tokio-websockets yields whole messages
// (`Stream<Item = Message>`), whose payloads are then appended to the parse buffer.
//
// Encoding takes what a writer hands over in one write (a run of `MSG`s, or one large one)
// and puts it on a socket as one unmasked binary message. tern writes a header and the
// write itself, vectored; tokio-websockets takes an owned `Message` (so the borrowed write is
// copied into one) and writes header and payload vectored. The socket stands for the kernel:
// it copies what it is given.

/// The size of one read, as the WebSocket reader asks for.
const READ: usize = 64 * 1024;

/// An in-memory socket: reads hand out `input` in pieces of at most [`READ`] bytes; writes
/// are copied into `written` (as the kernel copies them), which is then dropped.
struct Socket {
    input: Bytes,
    written: Vec<u8>,
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.input.len().min(buf.remaining()).min(READ);
        buf.put_slice(&self.input[..n]);
        self.input.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.clear();
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.written.clear();
        for buf in bufs {
            self.written.extend_from_slice(buf);
        }
        Poll::Ready(Ok(self.written.len()))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Parses every whole operation at the front of `stream`, consuming them; returns how many.
fn parse_ops(stream: &mut BytesMut, limits: &Limits) -> usize {
    let mut ops = 0;
    while let Ok(Some((op, n))) = parse(stream, limits) {
        black_box(&op);
        stream.advance(n);
        ops += 1;
    }
    ops
}

/// tern: reads into the raw buffer, decodes onto the parse buffer, parses.
fn tern_decode(wire: &Bytes, limits: &Limits) -> usize {
    let mut decoder = Decoder::new(true);
    let (mut raw, mut stream, mut controls) = (BytesMut::new(), BytesMut::new(), Vec::new());
    let mut ops = 0;
    for read in wire.chunks(READ) {
        raw.extend_from_slice(read);
        decoder
            .decode(&mut raw, &mut stream, &mut controls)
            .expect("valid frames");
        ops += parse_ops(&mut stream, limits);
    }
    ops
}

/// tokio-websockets: each message's payload onto the parse buffer, then parse.
fn crate_decode(wire: &Bytes, limits: &Limits) -> usize {
    let socket = Socket {
        input: wire.clone(),
        written: Vec::new(),
    };
    let mut frames = ServerBuilder::new()
        .limits(WsLimits::unlimited())
        .serve(socket);
    let mut stream = BytesMut::new();
    let mut ops = 0;
    futures::executor::block_on(async {
        while let Some(message) = frames.next().await {
            let message = message.expect("valid frames");
            stream.extend_from_slice(message.as_payload());
            ops += parse_ops(&mut stream, limits);
        }
    });
    ops
}

/// `data` as masked binary messages of at most `frame` bytes each, as a client sends them.
fn client_frames(data: &[u8], frame: usize) -> Bytes {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = BytesMut::new();
    for piece in data.chunks(frame) {
        ws::encode_header(&mut out, true, true, false, ws::OP_BINARY, piece.len());
        let second = out.len() - header_len(piece.len()) + 1;
        out[second] |= 0x80;
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(piece);
        ws::mask(&key, 0, &mut out[start..]);
    }
    out.freeze()
}

/// An unmasked header's length for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

fn pubs(payload: usize, count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..count {
        out.extend_from_slice(format!("PUB orders.eu.new {payload}\r\n").as_bytes());
        out.extend(std::iter::repeat(b'x').take(payload));
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn ws_decode(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("ws decode");
    // (name, payload size, operations, bytes per frame: 0 for one operation per frame)
    let cases: [(&str, usize, usize, usize); 6] = [
        ("16 B PUBs, one per frame", 16, 4096, 0),
        ("16 B PUBs, 100 per frame", 16, 4000, 100),
        ("1 KB PUBs, one per frame", 1024, 1024, 0),
        ("1 KB PUBs, 32 per frame", 1024, 1024, 32),
        ("1 KB PUBs split across 1000 B frames", 1024, 1024, 1),
        ("64 KB PUBs, one per frame", 65536, 32, 0),
    ];
    for (name, payload, count, per_frame) in cases {
        let op = pubs(payload, 1);
        let data = pubs(payload, count);
        let wire = match per_frame {
            0 => client_frames(&data, op.len()),
            1 => client_frames(&data, 1000),
            n => client_frames(&data, op.len() * n),
        };
        assert_eq!(tern_decode(&wire, &limits), count);
        assert_eq!(crate_decode(&wire, &limits), count);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(format!("tern: {name}"), |b| {
            b.iter(|| tern_decode(black_box(&wire), &limits))
        });
        group.bench_function(format!("tokio-websockets: {name}"), |b| {
            b.iter(|| crate_decode(black_box(&wire), &limits))
        });
    }
    group.finish();
}

/// tern: each write goes to the socket as a header and the write itself, vectored (what the
/// socket does not take would be copied to the writer's buffer; this one takes everything).
fn tern_encode(writes: &[Bytes], socket: &mut Vec<u8>) {
    let mut header = [0u8; ws::MAX_HEADER];
    for data in writes {
        let h = ws::binary_header(&mut header, data.len());
        socket.clear();
        socket.extend_from_slice(&header[..h]);
        socket.extend_from_slice(black_box(data));
    }
}

/// tokio-websockets: each write copied into a message, sent and flushed.
fn crate_encode(writes: &[Bytes], socket: Socket) {
    let mut frames = ServerBuilder::new().serve(socket);
    futures::executor::block_on(async {
        for data in writes {
            let message = Message::binary(Bytes::copy_from_slice(black_box(data)));
            frames.send(message).await.expect("in-memory socket");
        }
    });
}

fn ws_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws encode");
    // (name, payload size, messages per write, writes)
    let cases: [(&str, usize, usize, usize); 4] = [
        ("16 B MSGs, one per write", 16, 1, 4096),
        ("16 B MSGs, 64 KiB writes", 16, 1500, 8),
        ("1 KB MSGs, 64 KiB writes", 1024, 60, 16),
        ("64 KB MSGs, one per write", 65536, 1, 16),
    ];
    for (name, payload, per_write, count) in cases {
        let mut one = BytesMut::new();
        for _ in 0..per_write {
            encode_msg(&mut one, b"orders.eu.new", b"1", None, &vec![b'x'; payload]);
        }
        let writes: Vec<Bytes> = (0..count).map(|_| one.clone().freeze()).collect();
        group.throughput(Throughput::Bytes((one.len() * count) as u64));
        let mut socket = Vec::with_capacity(one.len() + 16);
        group.bench_function(format!("tern: {name}"), |b| {
            b.iter(|| tern_encode(black_box(&writes), &mut socket))
        });
        group.bench_function(format!("tokio-websockets: {name}"), |b| {
            b.iter(|| {
                crate_encode(
                    black_box(&writes),
                    Socket {
                        input: Bytes::new(),
                        written: Vec::with_capacity(one.len() + 16),
                    },
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = parser, sublist, router, ws_decode, ws_encode
}
criterion_main!(benches);
