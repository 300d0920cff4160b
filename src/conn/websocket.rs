//! WebSocket as a transport beneath the client session: the HTTP upgrade on the WebSocket
//! listener (with `wss` through rustls, origin checks and `handshake_timeout`), then read and
//! write halves that turn frames into the byte stream the parser reads and the writer's bytes
//! into frames. The session above (parser, router, permissions, limits, slow consumers) is the
//! TCP client's, unchanged.
//!
//! Control frames: a ping is answered by the writer with a pong; a client's close is echoed
//! and ends the stream; a frame-level violation queues a 1002 close and fails the read (`Read
//! Error`, logged as nats-server logs it). When the server closes the connection it sends the
//! close frame nats-server sends for that reason (none for read, write and slow consumer
//! errors).
//!
//! A leafnode rides the same halves: a request for the `/leafnode` path on the WebSocket
//! listener is a leafnode connection (`conn::leaf`), and a leafnode remote with a `ws://` or
//! `wss://` URL dials with [`dial_upgrade`] and sends masked frames, as a client does.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::{debug, error};

use tokio::net::TcpStream;

use super::client;
use super::transport::{self, ReadHalf, WriteHalf};
use crate::config::leafnode::RemoteLeaf;
use crate::config::websocket::WebSocketOptions;
use crate::engine::connection::Connection;
use crate::engine::outbound::CloseReason;
use crate::proto::websocket::{self as ws, Control, Decoder, Request};
use crate::proto::websocket_client as wsc;
use crate::security::tls;
use crate::state::Shared;

/// The largest upgrade request accepted (Go's `http.DefaultMaxHeaderBytes` is 1 MiB; a client
/// needs a few hundred bytes).
const MAX_REQUEST: usize = 64 * 1024;

/// What the upgrade settled, for the session.
#[derive(Debug, Clone, Default)]
pub struct Upgrade {
    /// permessage-deflate is on.
    pub compress: bool,
    /// Frames from the other end need no mask: the client said `Nats-No-Masking: true`, or
    /// we dialed (a server never masks).
    pub no_masking: bool,
    /// Our frames are masked, as a client's must be (a leafnode remote, unless the hub agreed
    /// to `Nats-No-Masking`).
    pub mask_writes: bool,
    /// The request's path starts with `/leafnode`: a leafnode connection, not a client.
    pub leaf: bool,
    /// Bytes read past the hub's answer (the dialer's side): the first frames.
    pub leftover: BytesMut,
    /// A browser (`User-Agent: Mozilla/...`): frames of at most 4 KiB.
    pub browser: bool,
    /// A Safari browser with compression: compressed messages are not fragmented.
    pub no_compressed_fragments: bool,
    /// The client's address as a proxy gave it (`X-Forwarded-For`, when it is an IP address):
    /// nats-server puts it before the socket's address in the log prefix.
    pub forwarded_for: Option<std::net::IpAddr>,
    /// Credentials from the configured cookies.
    pub cookie_user: Option<String>,
    pub cookie_pass: Option<String>,
    pub cookie_token: Option<String>,
    pub cookie_jwt: Option<String>,
    /// The names in the client's verified TLS certificate (`wss`), for `verify_and_map`.
    pub cert: Option<Arc<tls::CertIdentity>>,
}

/// Reads and answers the HTTP upgrade on `stream`. A refused request gets the HTTP error
/// nats-server's Go server writes, logged; like that server, the connection then stays open
/// for another request unless the client asked to close or sent a body. `Err` ends the
/// connection, with a line to log when there is one.
pub async fn handshake<S>(
    stream: &mut S,
    opts: &WebSocketOptions,
    secure: bool,
    addr: SocketAddr,
) -> Result<Upgrade, Option<String>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    let (request, key) = loop {
        let (request, head_len) = loop {
            match ws::parse_request(&buf) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) if buf.len() < MAX_REQUEST => {}
                _ => {
                    let _ = stream.write_all(ws::MALFORMED_REQUEST).await;
                    return Err(None);
                }
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(_) => {}
            }
        };
        let checked = ws::check_upgrade(&request)
            .map_err(|r| (r.status, r.reason))
            .and_then(|key| match check_origin(&request, opts, secure) {
                Ok(()) => Ok(key),
                Err(why) => Err((403, format!("origin not allowed: {why}"))),
            });
        match checked {
            // nats-server finds this after taking the connection from its HTTP server: its
            // 400 cannot be written any more, and the connection is closed without a word.
            Ok(_) if buf.len() > head_len => {
                return Err(Some(
                    "websocket handshake error: client sent data before handshake is complete"
                        .into(),
                ))
            }
            Ok(key) => break (request.clone(), key.to_string()),
            Err((status, reason)) => {
                error!("{addr} - websocket handshake error: {reason}");
                let date = http_date(std::time::SystemTime::now());
                let answer = ws::encode_http_error(status, &date);
                if stream.write_all(&answer).await.is_err() || stream.flush().await.is_err() {
                    return Err(None);
                }
                let body = request
                    .header("Content-Length")
                    .is_some_and(|n| n.trim() != "0");
                if body || request.header_contains("Connection", "close") {
                    return Err(None);
                }
                let _ = buf.split_to(head_len.min(buf.len()));
            }
        }
    };
    let compress = opts.compression && request.offers_deflate();
    let no_masking = request.header("Nats-No-Masking") == Some("true");
    let answer = ws::encode_accept(&key, compress, no_masking, &opts.headers);
    stream
        .write_all(&answer)
        .await
        .map_err(|e| Some(format!("websocket handshake error: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| Some(format!("websocket handshake error: {e}")))?;
    let leaf = request.path.starts_with(wsc::LEAF_PATH);
    let agent = request.header("User-Agent").unwrap_or_default();
    let browser = !leaf && agent.starts_with("Mozilla/");
    let cookie = |name: &Option<String>| name.as_deref().and_then(|n| request.cookie(n));
    Ok(Upgrade {
        compress,
        no_masking,
        mask_writes: false,
        leaf,
        leftover: BytesMut::new(),
        browser,
        no_compressed_fragments: browser
            && compress
            && agent.contains("Version/")
            && agent.contains("Safari/"),
        forwarded_for: request
            .header("X-Forwarded-For")
            .and_then(|ip| ip.trim().parse().ok()),
        cookie_user: cookie(&opts.user_cookie),
        cookie_pass: cookie(&opts.pass_cookie),
        cookie_token: cookie(&opts.token_cookie),
        cookie_jwt: cookie(&opts.jwt_cookie),
        cert: None,
    })
}

/// The dialer's side of the upgrade (a leafnode `remote` with a `ws://` or `wss://` URL), on
/// a plain or TLS stream (`split` makes its halves): the request for `path` on `host`, the
/// hub's answer read within the remote's `first_info_timeout`, then WebSocket halves for
/// `conn`. `Err` is the reason nats-server logs (`Error soliciting websocket connection`).
pub async fn dial_upgrade<S>(
    mut stream: S,
    split_stream: fn(S) -> (ReadHalf, WriteHalf),
    conn: Arc<Connection>,
    host: &str,
    path: &str,
    remote: &RemoteLeaf,
) -> Result<(ReadHalf, WriteHalf), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut random = [0u8; 16];
    {
        use ring::rand::SecureRandom;
        if ring::rand::SystemRandom::new().fill(&mut random).is_err() {
            random = fastrand::u128(..).to_ne_bytes();
        }
    }
    let key = wsc::challenge_key(random);
    let (compress, no_masking) = (remote.ws_compression, remote.ws_no_masking);
    let request = wsc::encode_request(host, path, &key, compress, no_masking);
    let exchange = async {
        stream
            .write_all(&request)
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if let Some((answer, head)) = wsc::check_answer(&buf, &key, compress, no_masking)? {
                let _ = buf.split_to(head);
                return Ok(Upgrade {
                    compress: answer.compress,
                    no_masking: true,
                    mask_writes: answer.mask,
                    leftover: buf,
                    ..Upgrade::default()
                });
            }
            if buf.len() > MAX_REQUEST {
                return Err("malformed HTTP response: too long".into());
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("unexpected EOF".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let upgrade = match tokio::time::timeout(remote.first_info_timeout, exchange).await {
        Ok(result) => result?,
        Err(_) => return Err("i/o timeout".into()),
    };
    debug!(
        "{} - Leafnode compression={} masking={}",
        conn.desc(),
        upgrade.compress,
        upgrade.mask_writes
    );
    let (read, write) = split_stream(stream);
    Ok(split(read, write, conn, &upgrade))
}

/// nats-server's `checkOrigin`: no `Origin` (or `Sec-WebSocket-Origin`) passes; otherwise it
/// must match the request's host with `same_origin`, and be listed in `allowed_origins` (scheme,
/// host and port) when the list is not empty.
fn check_origin(req: &Request, opts: &WebSocketOptions, secure: bool) -> Result<(), String> {
    if !opts.same_origin && opts.allowed_origins.is_empty() {
        return Ok(());
    }
    let origin = req
        .header("Origin")
        .filter(|o| !o.is_empty())
        .or_else(|| req.header("Sec-WebSocket-Origin"))
        .unwrap_or_default();
    if origin.is_empty() {
        return Ok(());
    }
    let (scheme, host, port) =
        split_origin(origin).ok_or_else(|| format!("parse {origin:?}: invalid URI for request"))?;
    if opts.same_origin {
        let (req_host, req_port) = host_and_port(req.header("Host").unwrap_or_default(), secure);
        if host != req_host || port != req_port {
            return Err("not same origin".into());
        }
    }
    if !opts.allowed_origins.is_empty() {
        let listed = opts
            .allowed_origins
            .iter()
            .filter_map(|o| split_origin(o))
            .any(|(s, h, p)| s == scheme && h == host && p == port);
        if !listed {
            return Err("not in the allowed list".into());
        }
    }
    Ok(())
}

/// `scheme://host[:port]...` as (scheme, lower-case host, port with the scheme's default).
fn split_origin(origin: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = host_and_port(authority, scheme.eq_ignore_ascii_case("https"));
    Some((scheme.to_string(), host, port))
}

/// `host[:port]` as (lower-case host, port), the port defaulting to 443 or 80.
fn host_and_port(authority: &str, tls: bool) -> (String, String) {
    let default = if tls { "443" } else { "80" };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            if h.contains(':') && !h.starts_with('[') {
                (authority, default)
            } else {
                (h, p)
            }
        }
        _ => (authority, default),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host.to_ascii_lowercase(), port.to_string())
}

/// An HTTP `Date` value (RFC 7231 IMF-fixdate) for `time`.
fn http_date(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86400;
    let (h, m, s) = (secs % 86400 / 3600, secs % 3600 / 60, secs % 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

/// What the two halves share: control frames the reader found for the writer to send.
#[derive(Debug, Default)]
struct Link {
    /// Pongs (whole frames) to send before the next data.
    control: BytesMut,
    /// Control frames are masked (our side dialed).
    mask: bool,
    /// The close frame's payload to send last, once one is decided (a client's close echoed,
    /// or a protocol error).
    close: Option<Vec<u8>>,
}

/// Splits a transport that has been upgraded into WebSocket halves.
pub fn split(
    read: ReadHalf,
    write: WriteHalf,
    conn: Arc<Connection>,
    upgrade: &Upgrade,
) -> (ReadHalf, WriteHalf) {
    let link = Arc::new(Mutex::new(Link {
        mask: upgrade.mask_writes,
        ..Link::default()
    }));
    let mut reader = WsReader {
        inner: read,
        raw: upgrade.leftover.clone(),
        decoded: BytesMut::new(),
        decoder: Decoder::new(!upgrade.no_masking),
        link: link.clone(),
        conn: conn.clone(),
        ended: false,
    };
    // Frames that came with the hub's answer: decoded now, since the reader decodes only
    // after reading. Frames that break the rules end the stream at once.
    if !reader.raw.is_empty() && reader.decode_raw().is_err() {
        reader.ended = true;
    }
    let max_frame = match (
        upgrade.browser,
        upgrade.compress && upgrade.no_compressed_fragments,
    ) {
        (true, false) => Some(ws::BROWSER_FRAME_SIZE),
        _ => None,
    };
    let writer = WsWriter {
        inner: write,
        framed: BytesMut::new(),
        compress: upgrade.compress,
        deflater: None,
        max_frame,
        mask: upgrade.mask_writes,
        link,
        conn,
        close_queued: false,
    };
    (
        ReadHalf::Ws(Box::new(reader)),
        WriteHalf::Ws(Box::new(writer)),
    )
}

/// Reads frames and yields their NATS bytes.
pub struct WsReader {
    inner: ReadHalf,
    /// Bytes read and not yet decoded.
    raw: BytesMut,
    /// NATS bytes decoded and not yet handed out.
    decoded: BytesMut,
    decoder: Decoder,
    link: Arc<Mutex<Link>>,
    conn: Arc<Connection>,
    /// A close frame was received: the stream ends once `decoded` is handed out.
    ended: bool,
}

impl AsyncRead for WsReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.decoded.is_empty() {
                let n = this.decoded.len().min(buf.remaining());
                buf.put_slice(&this.decoded[..n]);
                this.decoded.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            // Straight into the raw buffer, at most what the caller has room for.
            let want = buf.remaining().clamp(512, 64 * 1024);
            this.raw.reserve(want);
            let mut room = (&mut this.raw).limit(want);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut room
            ))?;
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Err(why) = this.decode_raw() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
            }
        }
    }
}

impl WsReader {
    fn lock_link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decodes what `raw` holds; a frame-level violation is logged and queues the 1002 close.
    fn decode_raw(&mut self) -> Result<(), String> {
        let mut controls = Vec::new();
        let result = self
            .decoder
            .decode(&mut self.raw, &mut self.decoded, &mut controls);
        self.handle(controls);
        let Err(ws::FrameError(why)) = result else {
            return Ok(());
        };
        error!("{} - read error: {why}", self.conn.desc());
        self.lock_link().close = Some(ws::close_payload(ws::CLOSE_PROTOCOL_ERROR, &why));
        Err(why)
    }

    /// Queues the answers to control frames and wakes the writer to send them.
    fn handle(&mut self, controls: Vec<Control>) {
        if controls.is_empty() {
            return;
        }
        let link = self.link.clone();
        let mut link = link.lock().unwrap_or_else(|p| p.into_inner());
        for control in controls {
            match control {
                Control::Ping(payload) => {
                    let mask = link.mask;
                    encode_control(&mut link.control, ws::OP_PONG, &payload, mask)
                }
                Control::Close(payload) => {
                    link.close.get_or_insert(payload);
                    self.ended = true;
                }
            }
        }
        drop(link);
        self.conn.outbound.wake_writer();
    }
}

/// Frames what the writer writes.
pub struct WsWriter {
    inner: WriteHalf,
    /// Framed bytes not yet written.
    framed: BytesMut,
    compress: bool,
    /// Made at the first compressed write, then reused.
    deflater: Option<flate2::Compress>,
    max_frame: Option<usize>,
    /// Frames are masked (our side dialed).
    mask: bool,
    link: Arc<Mutex<Link>>,
    conn: Arc<Connection>,
    close_queued: bool,
}

impl WsWriter {
    /// Whether control frames wait to be sent.
    pub fn has_control(&self) -> bool {
        !self
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .control
            .is_empty()
    }

    fn take_control(&mut self) {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        if !link.control.is_empty() {
            self.framed.extend_from_slice(&link.control);
            link.control.clear();
        }
    }

    /// Writes every framed byte.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.framed.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.framed))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.framed.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// The close frame that ends the connection: the one the reader decided, or the one
    /// nats-server sends for the close reason (none for errors that skip the final flush).
    fn queue_close(&mut self) {
        let decided = self
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close
            .take();
        let payload = decided.or_else(|| {
            let reason = self.conn.outbound.close_reason()?;
            close_status(reason).map(|status| ws::close_payload(status, reason.as_str()))
        });
        if let Some(payload) = payload {
            encode_control(&mut self.framed, ws::OP_CLOSE, &payload, self.mask);
        }
    }
}

/// Appends one control frame, masked with a random key when `mask` is set.
fn encode_control(out: &mut BytesMut, opcode: u8, payload: &[u8], mask: bool) {
    match mask {
        true => {
            let key = fastrand::u32(..).to_ne_bytes();
            wsc::encode_masked(out, true, true, false, opcode, payload, key)
        }
        false => ws::encode_control(out, opcode, payload),
    }
}

/// nats-server's close status for a close reason (`wsEnqueueCloseMessage`); `None` where it
/// sends none: errors that skip the final flush, and protocol violations (which nats-server's
/// WebSocket read loop reports as read errors).
fn close_status(reason: CloseReason) -> Option<u16> {
    use CloseReason::*;
    Some(match reason {
        ClientClosed => ws::CLOSE_NORMAL,
        AuthenticationTimeout
        | AuthenticationViolation
        | AuthenticationExpired
        | CredentialsRevoked
        | MaxAccountConnectionsExceeded
        | MaxConnectionsExceeded
        | MaxControlLineExceeded => ws::CLOSE_POLICY_VIOLATION,
        BadClientProtocolVersion => ws::CLOSE_PROTOCOL_ERROR,
        MaxPayloadExceeded => ws::CLOSE_MESSAGE_TOO_BIG,
        ServerShutdown | RouteRemoved => ws::CLOSE_GOING_AWAY,
        StaleConnection => ws::CLOSE_ABNORMAL,
        ReadError
        | WriteError
        | SlowConsumerPendingBytes
        | SlowConsumerWriteDeadline
        | TlsHandshakeFailure
        | ProtocolViolation => return None,
        // Route reasons, never a WebSocket client's: nats-server's default.
        NoRespondersRequiresHeaders | DuplicateRoute | MinimumVersionRequired => {
            ws::CLOSE_INTERNAL_ERROR
        }
    })
}

impl AsyncWrite for WsWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.take_control();
        if this.mask {
            // A dialer's frames: masked, so copied.
            let compress = this.compress && buf.len() > ws::COMPRESS_THRESHOLD;
            let compressed = match compress {
                true => {
                    let deflater = this.deflater.get_or_insert_with(ws::new_deflater);
                    Some(ws::deflate_message(deflater, buf).map_err(io::Error::other)?)
                }
                false => None,
            };
            let payload = compressed.as_deref().unwrap_or(buf);
            let key = fastrand::u32(..).to_ne_bytes();
            wsc::encode_masked(
                &mut this.framed,
                true,
                true,
                compress,
                ws::OP_BINARY,
                payload,
                key,
            );
            return Poll::Ready(Ok(buf.len()));
        }
        if this.compress && buf.len() > ws::COMPRESS_THRESHOLD {
            let deflater = this.deflater.get_or_insert_with(ws::new_deflater);
            ws::encode_compressed(deflater, &mut this.framed, buf, this.max_frame)
                .map_err(io::Error::other)?;
            return Poll::Ready(Ok(buf.len()));
        }
        if !this.framed.is_empty() || this.max_frame.is_some_and(|max| buf.len() > max) {
            ws::encode_binary(&mut this.framed, buf, this.max_frame);
            return Poll::Ready(Ok(buf.len()));
        }
        // One frame written from `buf` itself: only what the socket does not take now is
        // copied, to be written first next time.
        let mut header = [0u8; ws::MAX_HEADER];
        let h = ws::binary_header(&mut header, buf.len());
        let slices = [io::IoSlice::new(&header[..h]), io::IoSlice::new(buf)];
        match Pin::new(&mut this.inner).poll_write_vectored(cx, &slices) {
            Poll::Ready(Ok(n)) if n < h => {
                this.framed.extend_from_slice(&header[n..h]);
                this.framed.extend_from_slice(buf);
            }
            Poll::Ready(Ok(n)) => this.framed.extend_from_slice(&buf[n - h..]),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                this.framed.extend_from_slice(&header[..h]);
                this.framed.extend_from_slice(buf);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.take_control();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            this.close_queued = true;
            this.take_control();
            this.queue_close();
        }
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Runs the upgrade on a plain or TLS stream under `handshake_timeout` (no limit when zero).
pub async fn upgrade_within<S>(
    stream: &mut S,
    opts: &WebSocketOptions,
    secure: bool,
    addr: SocketAddr,
) -> Option<Upgrade>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let upgrade = handshake(stream, opts, secure, addr);
    let result = match opts.handshake_timeout {
        t if t.is_zero() => upgrade.await,
        t => match tokio::time::timeout(t, upgrade).await {
            Ok(result) => result,
            Err(_) => {
                debug!("{addr} - websocket handshake timeout");
                return None;
            }
        },
    };
    match result {
        Ok(upgrade) => Some(upgrade),
        Err(why) => {
            if let Some(why) = why {
                error!("{addr} - {why}");
            }
            None
        }
    }
}

/// Serves one connection accepted on the WebSocket listener: TLS when `tls` is set, the
/// upgrade, then (in a connection task of its own) the client session over WebSocket frames.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let _ = stream.set_nodelay(true);
    crate::conn::idle::watch(&stream);
    let opts = shared.opts();
    let Some(wso) = opts.websocket.clone() else {
        return;
    };
    let (halves, upgrade) = match tls {
        None => {
            let mut stream = stream;
            let Some(upgrade) = upgrade_within(&mut stream, &wso, false, addr).await else {
                return;
            };
            (transport::split_plain(stream), upgrade)
        }
        Some(config) => {
            let mut stream = match tls::accept(config, stream, None, tls_timeout(&wso)).await {
                Ok(stream) => stream,
                Err(err) => {
                    debug!("{addr} - TLS handshake error: {err}");
                    return;
                }
            };
            let session = stream.get_ref().1;
            if let Some(tls_opts) = &wso.tls {
                if !transport::is_pinned(session, tls_opts, &addr.to_string()) {
                    error!("{addr} - TLS handshake error: certificate not pinned");
                    return;
                }
            }
            let cert = session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|c| tls::CertIdentity::from_der(c))
                .map(Arc::new);
            let Some(mut upgrade) = upgrade_within(&mut stream, &wso, true, addr).await else {
                return;
            };
            upgrade.cert = cert;
            (transport::split_tls(stream), upgrade)
        }
    };
    if upgrade.leaf {
        // nats-server takes leafnodes here only when it listens for them on a leafnode port,
        // and otherwise closes the upgraded connection without a word.
        if !opts.leafnodes.as_ref().is_some_and(|l| l.listens) {
            error!("Not configured to accept leaf node connections");
            return;
        }
        if !shared.stopping() {
            let session = super::leaf::accept_websocket(shared.clone(), halves, addr, upgrade);
            shared.tasks.spawn(session);
        }
        return;
    }
    let cid = shared.router.next_cid();
    let desc = match upgrade.forwarded_for {
        Some(ip) => format!("{ip}/{addr} - wid:{cid}"),
        None => format!("{addr} - wid:{cid}"),
    };
    let conn = Arc::new(Connection::new(
        cid,
        opts.max_pending,
        &desc,
        addr,
        shared.router.global().clone(),
    ));
    conn.mark_websocket();
    debug!("{} - Client connection created", conn.desc());
    // INFO on the WebSocket port names that port, as nats-server's does.
    let info = shared.websocket_info(cid, addr);
    let halves = split(halves.0, halves.1, conn.clone(), &upgrade);
    // The session is a connection task like any other (shutdown waits for it); the upgrade
    // before it is not, so that a client that never finishes it cannot hold shutdown up.
    if shared.stopping() {
        return;
    }
    let session = client::serve_upgraded(shared.clone(), conn, halves, info, upgrade);
    shared.tasks.spawn(session);
}

/// A TLS handshake on the WebSocket listener: bounded by `handshake_timeout` when set, else
/// by the TLS block's timeout.
pub fn tls_timeout(opts: &WebSocketOptions) -> Duration {
    match (opts.handshake_timeout, &opts.tls) {
        (t, _) if !t.is_zero() => t,
        (_, Some(tls)) => tls.timeout,
        _ => Duration::from_secs(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_796_140_405);
        assert_eq!(http_date(t), "Tue, 01 Dec 2026 15:53:25 GMT");
    }

    #[test]
    fn origins() {
        assert_eq!(
            split_origin("http://Example.com"),
            Some(("http".into(), "example.com".into(), "80".into()))
        );
        assert_eq!(
            split_origin("https://a.b:8443/x"),
            Some(("https".into(), "a.b".into(), "8443".into()))
        );
        assert_eq!(
            host_and_port("127.0.0.1:4443", false),
            ("127.0.0.1".into(), "4443".into())
        );
        assert_eq!(
            host_and_port("[::1]:80", false),
            ("::1".into(), "80".into())
        );
        assert!(split_origin("bad url").is_none());
    }
}
