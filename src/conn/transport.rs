//! The byte streams beneath a connection's session: `Plain | Tls | Ws` read and write halves
//! (`Ws` frames over one of the other two, see `websocket`), and the TLS listener's opening, as nats-server 2.15.1 runs it
//! (`handshake_first`, `allow_non_tls`, pinned certificates).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::config::{Options, TlsOptions};
use crate::proto::protocol;
use crate::security::tls;

/// nats-server sends a client its first PING after at most this long (`firstClientPingInterval`).
pub const FIRST_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the peer's certificate passes `pinned_certs` (always, when none are listed). A
/// peer without a certificate does not.
pub fn is_pinned(session: &rustls::CommonState, tls_opts: &TlsOptions, desc: &str) -> bool {
    if tls_opts.pinned_certs.is_empty() {
        return true;
    }
    let key_id = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| tls::pinned_key_id(cert));
    match key_id {
        Some(id) if tls_opts.pinned_certs.contains(&id) => true,
        Some(id) => {
            debug!("{desc} - Failed pinned cert test for key id: {id}");
            false
        }
        None => false,
    }
}

/// The transport a connection on the TLS listener ends up with.
pub enum Transport {
    /// Plaintext, which the client chose under `allow_non_tls`.
    Plain(TcpStream),
    /// TLS (boxed: the rustls state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

/// Runs the TLS listener's opening, as nats-server 2.15.1 does; returns the transport and
/// whether INFO already went out (in plaintext, before any handshake).
///
/// - `handshake_first`: the handshake comes before INFO, which then goes over TLS. With a
///   fallback delay, a client that sends nothing for that long gets the plaintext INFO and
///   what follows here without `handshake_first`; any byte in time (even a plaintext one)
///   means TLS first.
/// - `allow_non_tls`: INFO (`tls_available`) goes out in plaintext and the client's first byte
///   decides: a TLS handshake record upgrades the connection, anything else stays plaintext.
///   A client that says nothing until nats-server would send its first PING (or until the
///   authorization timeout) stays plaintext too: a handshake started after a plaintext PING
///   could not succeed.
/// - Otherwise INFO (`tls_required`) goes out in plaintext and the handshake must follow.
pub async fn negotiate(
    config: Arc<rustls::ServerConfig>,
    tls_opts: &TlsOptions,
    opts: &Options,
    mut stream: TcpStream,
    info: &protocol::Info,
    desc: &str,
) -> Result<(Transport, bool), tls::HandshakeError> {
    if tls_opts.handshake_first {
        let fall_back = match tls_opts.handshake_first_fallback {
            Some(delay) => tls::first_byte(&stream, delay).await.is_none(),
            None => false,
        };
        if !fall_back {
            debug!("{desc} - Starting TLS client connection handshake");
            let stream = tls::accept(config, stream, None, tls_opts.timeout).await?;
            return Ok((Transport::Tls(Box::new(stream)), false));
        }
    }
    let mut plain_info = BytesMut::new();
    info.encode(&mut plain_info);
    if !opts.allow_non_tls {
        debug!("{desc} - Starting TLS client connection handshake");
        let stream = tls::accept(config, stream, Some(&plain_info), tls_opts.timeout).await?;
        return Ok((Transport::Tls(Box::new(stream)), true));
    }
    stream
        .write_all(&plain_info)
        .await
        .map_err(tls::HandshakeError::Failed)?;
    let mut wait = opts.ping_interval.min(FIRST_PING_INTERVAL);
    if opts.auth_required() && opts.no_auth_user.is_none() {
        wait = wait.min(opts.auth_timeout());
    }
    match tls::first_byte(&stream, wait).await {
        Some(Some(byte)) if tls::starts_handshake(byte) => {}
        _ => return Ok((Transport::Plain(stream), true)),
    }
    debug!("{desc} - Starting TLS client connection handshake");
    let stream = tls::accept(config, stream, None, tls_opts.timeout).await?;
    Ok((Transport::Tls(Box::new(stream)), true))
}

/// The reading half of a connection.
pub enum ReadHalf {
    /// Plain TCP.
    Plain(PlainRead),
    /// TLS, accepted.
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
    /// TLS, dialed (a route we solicited).
    TlsDialed(tokio::io::ReadHalf<DialedStream>),
    /// WebSocket frames over one of the others.
    Ws(Box<super::websocket::WsReader>),
}

/// The writing half of a connection.
pub enum WriteHalf {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS, accepted.
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
    /// TLS, dialed (a route we solicited).
    TlsDialed(tokio::io::WriteHalf<DialedStream>),
    /// WebSocket frames over one of the others.
    Ws(Box<super::websocket::WsWriter>),
}

/// Plain TCP's reading half, which can ask the kernel not to report it readable while its
/// reader is busy reading it anyway (see [`ReadHalf::hush`]).
pub struct PlainRead {
    half: OwnedReadHalf,
    /// The socket's `SO_RCVLOWAT` as last set: 1 (the kernel's default), `HUSHED`, or the
    /// rest of a large frame being waited for.
    lowat: libc::c_int,
    /// What the mark drops to when a hushed read finds nothing (see [`ReadHalf::hush`]).
    wake_at: libc::c_int,
}

/// The mark while hushed; the kernel caps it at half the largest receive buffer (3 MiB by
/// default), and `tcp_epollin_ready` still reports a socket whose buffer or window is nearly
/// full, so a hushed socket cannot stall its sender.
const HUSHED: libc::c_int = libc::c_int::MAX;

impl PlainRead {
    fn new(half: OwnedReadHalf) -> Self {
        PlainRead {
            half,
            lowat: 1,
            wake_at: 1,
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.half).poll_read(cx, buf);
        if polled.is_pending() && self.lowat == HUSHED {
            // The read found nothing and its waker is registered: from now on the bytes the
            // reader waits for must wake it. Lowering the mark makes the kernel report at once
            // what arrived while it was raised (`tcp_set_rcvlowat` calls `tcp_data_ready`).
            self.set_lowat(self.wake_at);
        }
        polled
    }

    /// Sets `SO_RCVLOWAT`: the bytes the socket must hold before epoll reports it readable
    /// (reads are not affected: a non-blocking read returns what there is). A closing peer is
    /// reported whatever the mark.
    fn set_lowat(&mut self, bytes: libc::c_int) {
        self.lowat = bytes;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.half.as_ref().as_raw_fd();
            // SAFETY: `fd` is the stream's own open socket, borrowed for the call; setsockopt
            // reads exactly `size_of::<c_int>()` bytes from `bytes`, a live local, and writes
            // nothing.
            let _ = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVLOWAT,
                    (&bytes as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
}

/// Whether this kernel reports a socket at once when its mark is lowered below what it already
/// holds (Linux 4.18 on: `tcp_set_rcvlowat` calls `tcp_data_ready`). Without that a hushed
/// reader could sleep through what came while it was hushed, so elsewhere `hush` does nothing.
fn hush_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        cfg!(target_os = "linux")
            && std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .and_then(|release| release_at_least(&release, (4, 18)))
                .unwrap_or(false)
    })
}

/// Whether a kernel release string (`6.18.44-fc-v1098`) is at least `major.minor`; `None` when
/// it does not start with two numbers.
fn release_at_least(release: &str, (major, minor): (u32, u32)) -> Option<bool> {
    let mut numbers = release.trim().split(|c: char| !c.is_ascii_digit());
    let got: u32 = numbers.next()?.parse().ok()?;
    let got_minor: u32 = numbers.next()?.parse().ok()?;
    Some((got, got_minor) >= (major, minor))
}

impl ReadHalf {
    /// After a read batch: hushes the socket while `input` is streaming (see [`Self::hush`]).
    #[inline]
    pub fn hush_if_streaming(&mut self, input: &super::reader::ReadBuffer) {
        if input.streaming() {
            self.hush(input.frame_rest());
        }
    }

    /// The reader is streaming (see `ReadBuffer::streaming`) and reads again without waiting:
    /// until a read finds the socket empty, data arriving meanwhile need not wake anyone
    /// (plain TCP on Linux only; the others ignore it). Without it, every segment that arrives
    /// while one worker reads the socket wakes the worker parked in epoll, only for it to find
    /// the reader running.
    /// `rest` is what the reader still lacks of a large frame (0: none): when it must wait,
    /// it is woken once that much has come rather than at every segment of it.
    pub fn hush(&mut self, rest: usize) {
        if !hush_supported() {
            return;
        }
        if let ReadHalf::Plain(r) = self {
            r.wake_at = libc::c_int::try_from(rest)
                .unwrap_or(HUSHED - 1)
                .clamp(1, HUSHED - 1);
            if r.lowat != HUSHED {
                r.set_lowat(HUSHED);
            }
        }
    }
}

impl WriteHalf {
    /// Whether bytes of the transport's own (WebSocket pongs) wait for a flush.
    pub fn has_control(&self) -> bool {
        match self {
            WriteHalf::Ws(w) => w.has_control(),
            _ => false,
        }
    }
}

/// A TLS connection this server dialed.
pub type DialedStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Splits a plain connection.
pub fn split_plain(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = stream.into_split();
    (ReadHalf::Plain(PlainRead::new(r)), WriteHalf::Plain(w))
}

/// Splits a TLS connection.
pub fn split_tls(stream: TlsStream<TcpStream>) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (ReadHalf::Tls(r), WriteHalf::Tls(w))
}

/// Splits a TLS connection this server dialed.
pub fn split_tls_dialed(stream: DialedStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (ReadHalf::TlsDialed(r), WriteHalf::TlsDialed(w))
}

/// Logs a finished handshake as nats-server does (debug): `TLS handshake complete`, then the
/// version and cipher suite by their Go names.
pub fn log_handshake(desc: &str, session: &rustls::CommonState) {
    debug!("{desc} - TLS handshake complete");
    if let (Some(version), Some(suite)) = (
        session.protocol_version(),
        session.negotiated_cipher_suite(),
    ) {
        debug!(
            "{desc} - TLS version {}, cipher suite {}",
            tls::version_name(version),
            tls::suite_name(suite.suite())
        );
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => r.poll_read(cx, buf),
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::TlsDialed(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Ws(r) => Pin::new(r.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::TlsDialed(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Ws(w) => Pin::new(w.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::TlsDialed(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Ws(w) => Pin::new(w.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::TlsDialed(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Ws(w) => Pin::new(w.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::TlsDialed(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Ws(w) => Pin::new(w.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Plain(w) => w.is_write_vectored(),
            WriteHalf::Tls(w) => w.is_write_vectored(),
            WriteHalf::TlsDialed(w) => w.is_write_vectored(),
            WriteHalf::Ws(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::release_at_least;

    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        assert_eq!(release_at_least("6.18.44-fc-v1098\n", (4, 18)), Some(true));
        assert_eq!(
            release_at_least("4.18.0-553.el8_10.x86_64", (4, 18)),
            Some(true)
        );
        assert_eq!(release_at_least("4.9.337", (4, 18)), Some(false));
        assert_eq!(release_at_least("3.10.0-1160.el7", (4, 18)), Some(false));
        assert_eq!(release_at_least("5.0", (4, 18)), Some(true));
        assert_eq!(release_at_least("garbage", (4, 18)), None);
        assert_eq!(release_at_least("6", (4, 18)), None);
    }
}
