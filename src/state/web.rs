//! The URL account resolver's HTTP client: one `GET` per account, over HTTP/1.1 on a fresh
//! connection (TLS for `https`), answered with the body of a `200` or nats-server's error
//! words (`could not fetch <"url">: ...`, the inner text as Go's `http.Client` puts it).
//!
//! A client of its own rather than a crate: nats-server asks one thing of it (a small body by
//! `GET`, within a deadline), `httparse` (already used for the monitor and WebSocket upgrades)
//! reads the response head and rustls the TLS, so a general HTTP client (hyper and its
//! dependencies, not in the tree today) would add build time for nothing the resolver uses.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a response may hold (head and body): account JWTs are a few kilobytes.
const MAX_RESPONSE: usize = 4 << 20;

/// `GET url` within `timeout`: the body of a `200 OK`, or the error nats-server reports.
/// `tls` is the client configuration for `https` URLs.
pub async fn get(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let shown = redact(url);
    let failed = |why: String| format!("could not fetch <{shown:?}>: {why}");
    let target = Target::parse(url).map_err(|why| failed(format!("Get {shown:?}: {why}")))?;
    match tokio::time::timeout(timeout, exchange(&target, tls)).await {
        Err(_) => Err(failed(format!(
            "Get {shown:?}: context deadline exceeded (Client.Timeout exceeded while awaiting \
             headers)"
        ))),
        Ok(Err(Failure::Transport(why))) => Err(failed(format!("Get {shown:?}: {why}"))),
        Ok(Err(Failure::Status(status))) => Err(failed(status)),
        Ok(Ok(body)) => Ok(body),
    }
}

enum Failure {
    /// The request did not get a response (Go's `*url.Error`).
    Transport(String),
    /// A response other than `200`: its status line's code and reason.
    Status(String),
}

/// What a URL says about where to ask.
struct Target {
    https: bool,
    /// `host:port` to connect to.
    addr: String,
    /// The host alone (for TLS's server name and the `Host` header).
    host: String,
    /// The `Host` header (with the port when the URL gives one).
    authority: String,
    /// Path and query.
    path: String,
    /// `user:password` from the URL, sent as basic authorization.
    user: Option<String>,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("unsupported protocol scheme".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (user, authority) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user.to_string()), host),
            None => (None, authority),
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or("missing ']' in host")?;
                (host.to_string(), after.strip_prefix(':').unwrap_or(""))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), port),
                None => (authority.to_string(), ""),
            },
        };
        if host.is_empty() {
            return Err("no Host in request URL".into());
        }
        let port = match port {
            "" if https => 443,
            "" => 80,
            port => port
                .parse::<u16>()
                .map_err(|_| format!("invalid port {port:?}"))?,
        };
        let addr = match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        Ok(Target {
            https,
            addr,
            host,
            authority: authority.to_string(),
            path: path.to_string(),
            user,
        })
    }
}

async fn exchange(
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Vec<u8>, Failure> {
    let stream = TcpStream::connect(&target.addr).await.map_err(|e| {
        Failure::Transport(format!(
            "dial tcp {}: connect: {}",
            target.addr,
            os_text(&e)
        ))
    })?;
    if !target.https {
        return request(stream, target).await;
    }
    let config = tls.ok_or_else(|| Failure::Transport("no TLS configuration".into()))?;
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|e| Failure::Transport(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| Failure::Transport(format!("tls: {e}")))?;
    request(stream, target).await
}

/// Sends the request and reads the whole response (the connection is closed after it).
async fn request(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    target: &Target,
) -> Result<Vec<u8>, Failure> {
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tern\r\nAccept-Encoding: identity\r\n\
         Connection: close\r\n",
        target.path, target.authority
    );
    if let Some(user) = &target.user {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user);
        head.push_str(&format!("Authorization: Basic {encoded}\r\n"));
    }
    head.push_str("\r\n");
    let io = |e: std::io::Error| Failure::Transport(e.to_string());
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A peer that closes TLS without close_notify still sent the whole response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if response.len() > MAX_RESPONSE {
            return Err(Failure::Transport("response too large".into()));
        }
    }
    parse_response(&response)
}

/// A whole response: the body of a `200`, or the status of another.
fn parse_response(bytes: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if bytes.is_empty() => {
            return Err(Failure::Transport("EOF".into()))
        }
        Ok(httparse::Status::Partial) => return Err(Failure::Transport("unexpected EOF".into())),
        Err(e) => return Err(Failure::Transport(format!("malformed HTTP response: {e}"))),
    };
    let code = response.code.unwrap_or(0);
    if code != 200 {
        let reason = response.reason.unwrap_or("");
        return Err(Failure::Status(
            format!("{code} {reason}").trim_end().to_string(),
        ));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let body = &bytes[head_len..];
    if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        return dechunk(body).ok_or_else(|| Failure::Transport("malformed chunked body".into()));
    }
    match header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        Some(len) if len <= body.len() => Ok(body[..len].to_vec()),
        Some(_) => Err(Failure::Transport("unexpected EOF".into())),
        None => Ok(body.to_vec()),
    }
}

/// A chunked body decoded (RFC 9112 7.1): `size[;ext]CRLF data CRLF ... 0 CRLF CRLF`.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// The URL with its password replaced, as nats-server's `redactURLString` shows it.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:xxxxx@{host}{}", &rest[end..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// An OS error as Go words it (`connection refused`, not Rust's `Connection refused (os
/// error 111)`).
fn os_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://u:p@127.0.0.1:8080/jwt/v1/accounts/A").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080");
        assert_eq!(t.path, "/jwt/v1/accounts/A");
        assert_eq!(t.user.as_deref(), Some("u:p"));
        let t = Target::parse("https://[::1]/x").unwrap();
        assert_eq!((t.addr.as_str(), t.host.as_str()), ("[::1]:443", "::1"));
        assert!(Target::parse("ftp://x/").is_err());
        assert_eq!(redact("http://u:secret@h/a"), "http://u:xxxxx@h/a");
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(parse_response(ok).ok(), Some(b"abc".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).ok(), Some(b"abcde".to_vec()));
        match parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n") {
            Err(Failure::Status(s)) => assert_eq!(s, "404 Not Found"),
            _ => panic!("not a status"),
        }
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(dechunk(b"zz\r\n").is_none());
    }
}
