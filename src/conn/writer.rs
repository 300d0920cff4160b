//! The writer every connection runs: flushes its outbound queue with one buffer swap per
//! wake-up, cuts a slow consumer at `write_deadline`, and gives grown buffers back when idle.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
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
                for chunk in &chunks {
                    writer.write_all(chunk).await?;
                    conn.outbound.wrote(chunk.len());
                }
                writer.write_all(&batch).await?;
                conn.outbound.wrote(batch.len());
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
        chunks.clear();
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
