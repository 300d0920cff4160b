//! The writer every connection runs: flushes its outbound queue with one buffer swap per
//! wake-up, cuts a slow consumer at `write_deadline`, and gives grown buffers back when idle.

use std::sync::Arc;
use std::time::Duration;

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::reader::MAX_READ;
use super::transport::WriteHalf;
use crate::engine::connection::Connection;
use crate::engine::outbound::{CloseReason, Take};
use crate::state::Shared;

/// How long a writer stays idle before it gives its grown buffers back.
const IDLE_RELEASE_AFTER: Duration = Duration::from_millis(500);
/// The largest write buffer a busy writer keeps for reuse.
const MAX_KEPT_WRITE_BUFFER: usize = 8 * 1024 * 1024;

/// Flushes a connection's outbound queue until it closes. Each wake-up writes everything
/// pending with one buffer swap; a write that misses `write_deadline` makes the connection a
/// slow consumer.
pub async fn write_loop(shared: Arc<Shared>, conn: Arc<Connection>, mut writer: WriteHalf) {
    let mut batch = BytesMut::new();
    let mut chunks = Vec::new();
    loop {
        let deadline = shared.opts().write_deadline;
        let take = conn.outbound.take(&mut batch, &mut chunks);
        let (write, stop) = match take {
            Take::Idle => {
                if writer.has_control() {
                    // WebSocket pongs the reader queued: sent now, outside any batch.
                    match tokio::time::timeout(deadline, writer.flush()).await {
                        Ok(Ok(())) => continue,
                        _ => {
                            conn.outbound.close(CloseReason::WriteError, false);
                            break;
                        }
                    }
                }
                // Nothing to write. A connection that stays idle gives back what a burst grew,
                // so idle connections stay small; one that is merely between batches keeps its
                // buffers (giving them back at every idle moment cost a 1:1 stream of 1 KiB
                // messages about a sixth of the server's time in page faults).
                if batch.capacity() > MAX_READ {
                    tokio::select! {
                        _ = conn.outbound.writer_wakeup() => continue,
                        _ = tokio::time::sleep(IDLE_RELEASE_AFTER) => {}
                    }
                    batch = BytesMut::new();
                }
                conn.outbound.release_idle_buffer(MAX_READ);
                conn.outbound.writer_wakeup().await;
                continue;
            }
            Take::Write => (true, false),
            Take::Close { flush } => (flush, true),
        };
        if write {
            let write = async {
                write_all(&mut writer, &chunks, &batch, &conn).await?;
                // A no-op on plain TCP; pushes out what rustls holds back on TLS.
                writer.flush().await
            };
            let written = tokio::select! {
                written = tokio::time::timeout(deadline, write) => written,
                // A slow consumer cut at max_pending while this write waits for its socket to
                // drain: close now, as nats-server does, not when the write deadline fires.
                () = conn.outbound.aborted() => break,
            };
            match written {
                Ok(Ok(())) => conn.outbound.written(),
                Ok(Err(_)) => {
                    conn.outbound.close(CloseReason::WriteError, false);
                    break;
                }
                Err(_) => {
                    info!(
                        "{} - Slow Consumer Detected: WriteDeadline of {:?} exceeded",
                        conn.desc(),
                        deadline
                    );
                    conn.outbound
                        .close(CloseReason::SlowConsumerWriteDeadline, false);
                    break;
                }
            }
        }
        conn.outbound.recycle(&mut chunks);
        batch.clear();
        // While busy the two buffers (this one and the pending one) trade places at every
        // write, so neither is reallocated; only an outsized one is dropped at once.
        if batch.capacity() > MAX_KEPT_WRITE_BUFFER {
            batch = BytesMut::new();
        }
        if stop {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}

/// The most pieces one vectored write is given.
const MAX_IOVECS: usize = 64;

/// Writes `pieces`, then `last`, with vectored writes (shared payloads and the control lines
/// between them go out together), telling the outbound queue what each write took.
async fn write_all(
    writer: &mut WriteHalf,
    pieces: &[Bytes],
    last: &[u8],
    conn: &Connection,
) -> std::io::Result<()> {
    // The next piece to write (`pieces.len()`: `last`) and how much of it is written.
    let (mut at, mut offset) = (0, 0);
    loop {
        let mut slices: SmallVec<[IoSlice<'_>; MAX_IOVECS]> = SmallVec::new();
        let rest = pieces[at..]
            .iter()
            .map(|p| &p[..])
            .chain(std::iter::once(last));
        for (i, piece) in rest.enumerate() {
            let piece = if i == 0 { &piece[offset..] } else { piece };
            if !piece.is_empty() {
                slices.push(IoSlice::new(piece));
            }
            if slices.len() == MAX_IOVECS {
                break;
            }
        }
        if slices.is_empty() {
            return Ok(());
        }
        let mut n = match slices.len() {
            1 => writer.write(&slices[0]).await?,
            _ => writer.write_vectored(&slices).await?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        conn.outbound.wrote(n);
        // Move past what was written.
        let piece_len = |i: usize| pieces.get(i).map_or(last.len(), |p| p.len());
        while n > 0 {
            let len = piece_len(at) - offset;
            if n < len {
                offset += n;
                break;
            }
            n -= len;
            if at == pieces.len() {
                return Ok(());
            }
            at += 1;
            offset = 0;
        }
        // Skip what is written or empty.
        while at < pieces.len() && piece_len(at) == offset {
            at += 1;
            offset = 0;
        }
        if at == pieces.len() && offset == last.len() {
            return Ok(());
        }
    }
}
