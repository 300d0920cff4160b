//! A minimal HTTP/1.1 server for the monitoring endpoints: GET and HEAD only, no bodies, no
//! chunked encoding, keep-alive or close. A response may instead stream its body until either
//! side goes away (the dashboard's server-sent events): it is framed by closing the connection.
//!
//! The request head is parsed by `httparse` (a small, fuzzed, allocation-free parser); this
//! file only frames it: the head is bounded by [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers,
//! a request with a body is refused, and every malformed request gets a `400` and a close.
//! Nothing a peer sends can panic or stall another connection: each connection is its own task
//! with an idle timeout. hyper would do all this and much more, at the cost of doubling the
//! build; monitoring needs none of the more.

use std::future::Future;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Largest request head (request line and headers) accepted; more is a `431`.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 32;
/// A connection with no complete request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed request: what the monitor needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD` (other methods are answered here with `405`).
    pub method: Method,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// Query parameters in order, percent-decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// The `Accept` header (empty when absent; several are joined with `,`).
    pub accept: String,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The client prefers HTML: its `Accept` names `text/html` (browsers do for a page; curl
    /// and HTTP libraries send `*/*` or nothing), with a non-zero quality.
    pub fn wants_html(&self) -> bool {
        self.accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
    }
}

/// The methods served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Answered with headers and body.
    Get,
    /// Answered with the headers GET would get, and no body.
    Head,
}

/// A response to send.
#[derive(Debug, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body (for a streamed response, what is sent before the stream).
    pub body: Vec<u8>,
    /// More headers.
    pub headers: Vec<(&'static str, &'static str)>,
    /// A body streamed after `body` until the sender or the peer goes away.
    pub stream: Option<BodyStream>,
}

/// The chunks of a streamed body, in order; the response ends when the sender is dropped.
#[derive(Debug)]
pub struct BodyStream(pub mpsc::Receiver<Bytes>);

impl PartialEq for BodyStream {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Response {
    /// A `200` JSON response.
    pub fn json(body: Vec<u8>) -> Self {
        Response::with_status(200, "application/json", body)
    }

    /// A response with any status.
    pub fn with_status(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type,
            body,
            headers: Vec::new(),
            stream: None,
        }
    }

    /// A `200` whose body is `first`, then every chunk `stream` yields, until it ends or the
    /// peer goes away (the connection is closed after it, which ends the body).
    pub fn streamed(content_type: &'static str, first: Vec<u8>, stream: BodyStream) -> Self {
        Response {
            stream: Some(stream),
            headers: vec![("Cache-Control", "no-cache")],
            ..Response::with_status(200, content_type, first)
        }
    }

    /// The same response with header `name: value` added.
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A plain-text error, as Go's `http.Error` writes them.
    pub fn error(status: u16, text: impl Into<String>) -> Self {
        let mut body = text.into().into_bytes();
        body.push(b'\n');
        Response::with_status(status, "text/plain; charset=utf-8", body)
    }

    /// Writes the status line, headers and (unless `head`) the body to `out`. A streamed
    /// response has no `Content-Length` and always closes the connection.
    pub fn encode(&self, out: &mut Vec<u8>, head: bool, keep_alive: bool) {
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n",
                self.status,
                reason_phrase(self.status),
                self.content_type,
            )
            .as_bytes(),
        );
        if self.stream.is_none() {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        // nats-server lets any origin read its JSON (dashboards served from elsewhere).
        out.extend_from_slice(b"Access-Control-Allow-Origin: *\r\n");
        if !keep_alive || self.stream.is_some() {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head {
            out.extend_from_slice(&self.body);
        }
    }
}

/// What reading a request head produced.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A whole request; its head was this many bytes.
    Request(Request, usize),
    /// Not a whole head yet.
    Partial,
    /// A request that cannot be served: answer this and close.
    Reject(Response),
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parsed::Reject(Response::error(431, "431 Request Header Fields Too Large"))
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Reject(Response::error(431, "431 Request Header Fields Too Large"))
        }
        Err(_) => return Parsed::Reject(Response::error(400, "400 Bad Request")),
    };
    if len > MAX_HEAD {
        return Parsed::Reject(Response::error(431, "431 Request Header Fields Too Large"));
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Reject(Response::error(400, "400 Bad Request"));
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Parsed::Reject(Response::error(405, "405 Method Not Allowed")),
    };
    // HTTP/1.1 keeps the connection open unless asked not to; HTTP/1.0 closes unless asked.
    let mut keep_alive = version == 1;
    let mut accept = String::new();
    for header in req.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        if header.name.eq_ignore_ascii_case("accept") {
            if !accept.is_empty() {
                accept.push(',');
            }
            accept.push_str(&value);
        }
        if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
        // Requests here carry no body; one that announces a body would desynchronise the
        // framing, so it is refused.
        let has_body = (header.name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
            || header.name.eq_ignore_ascii_case("transfer-encoding");
        if has_body {
            return Parsed::Reject(Response::error(400, "400 Bad Request: unexpected body"));
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method,
        path: percent_decode(path),
        query: parse_query(query),
        keep_alive,
        accept,
    };
    Parsed::Request(request, len)
}

/// Serves requests on one connection with `handle` until the peer closes, asks to close, sends
/// a request that cannot be served, or is idle for [`IDLE_TIMEOUT`].
pub async fn serve_connection<S, F, Fut>(mut stream: S, mut handle: F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = Vec::new();
    loop {
        let parsed = loop {
            match parse(&buf) {
                Parsed::Partial => {}
                done => break done,
            }
            match tokio::time::timeout(IDLE_TIMEOUT, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(_)) => {}
            }
        };
        out.clear();
        let (keep_alive, body_stream) = match parsed {
            Parsed::Request(request, len) => {
                buf.advance(len);
                let head = request.method == Method::Head;
                let keep_alive = request.keep_alive;
                let response = handle(request).await;
                response.encode(&mut out, head, keep_alive);
                match response.stream {
                    Some(body) if !head => (false, Some(body)),
                    Some(_) => (false, None),
                    None => (keep_alive, None),
                }
            }
            Parsed::Reject(response) => {
                response.encode(&mut out, false, false);
                (false, None)
            }
            Parsed::Partial => return,
        };
        if stream.write_all(&out).await.is_err() {
            return;
        }
        if let Some(body) = body_stream {
            stream_body(&mut stream, body).await;
        }
        if !keep_alive {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Writes each chunk of `body` as it comes, until the sender is dropped, a write fails, or the
/// peer reads nothing for [`IDLE_TIMEOUT`]. What the peer sends meanwhile is not read: a
/// request after a streamed response is not served.
async fn stream_body<S: AsyncWrite + Unpin>(stream: &mut S, mut body: BodyStream) {
    while let Some(chunk) = body.0.recv().await {
        let write = async {
            stream.write_all(&chunk).await?;
            stream.flush().await
        };
        match tokio::time::timeout(IDLE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// `a=1&b=x%20y` to pairs; a key without `=` has an empty value.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes; a malformed escape is kept as it is, and invalid UTF-8 is replaced.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Request {
        match parse(raw.as_bytes()) {
            Parsed::Request(r, len) => {
                assert_eq!(len, raw.len());
                r
            }
            other => panic!("{other:?}"),
        }
    }

    fn status(raw: &[u8]) -> u16 {
        match parse(raw) {
            Parsed::Reject(r) => r.status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn get_with_query() {
        let r =
            request("GET /connz?sort=bytes_to&limit=2&user=a%20b&x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/connz");
        assert_eq!(r.param("sort"), Some("bytes_to"));
        assert_eq!(r.param("limit"), Some("2"));
        assert_eq!(r.param("user"), Some("a b"));
        assert_eq!(r.param("x"), Some(""));
        assert_eq!(r.param("y"), None);
        assert!(r.keep_alive);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!request("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert_eq!(request("HEAD /varz HTTP/1.1\r\n\r\n").method, Method::Head);
    }

    #[test]
    fn partial_and_bad_requests() {
        assert_eq!(parse(b"GET /varz HTTP/1.1\r\nHost:"), Parsed::Partial);
        assert_eq!(parse(b""), Parsed::Partial);
        assert_eq!(status(b"\x00\x01garbage\r\n\r\n"), 400);
        assert_eq!(status(b"POST /varz HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(
            status(b"GET /varz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            400
        );
        let mut long = b"GET /varz HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat(b'a').take(MAX_HEAD));
        assert_eq!(status(&long), 431);
        let mut many = b"GET /varz HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), 431);
    }

    #[test]
    fn every_prefix_is_partial_or_a_request() {
        let raw = b"GET /subsz?test=foo.bar HTTP/1.1\r\nHost: x\r\n\r\n";
        for n in 0..raw.len() {
            assert_eq!(parse(&raw[..n]), Parsed::Partial, "{n}");
        }
        assert!(matches!(parse(raw), Parsed::Request(..)));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb"), "a.b");
        assert_eq!(percent_decode("%zz%2"), "%zz%2");
        assert_eq!(percent_decode("%24G"), "$G");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn encodes_head_without_body() {
        let r = Response::json(b"{}".to_vec());
        let mut out = Vec::new();
        r.encode(&mut out, true, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let mut out = Vec::new();
        r.encode(&mut out, false, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[tokio::test]
    async fn serves_pipelined_requests_then_closes() {
        let (client, server) = tokio::io::duplex(4096);
        let task = tokio::spawn(serve_connection(server, |req: Request| async move {
            Response::json(req.path.into_bytes())
        }));
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(b"GET /a HTTP/1.1\r\n\r\nGET /bb HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        rd.read_to_string(&mut got).await.unwrap();
        task.await.unwrap();
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got}");
        assert!(got.ends_with("\r\n\r\n/bb"), "{got}");
    }

    #[test]
    fn content_negotiation() {
        let accept = |value: &str| {
            request(&format!("GET / HTTP/1.1\r\nAccept: {value}\r\n\r\n")).wants_html()
        };
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
        ));
        assert!(accept("TEXT/HTML"));
        assert!(!accept("*/*"));
        assert!(!accept("application/json"));
        assert!(!accept("text/html;q=0, application/json"));
        assert!(!request("GET / HTTP/1.1\r\n\r\n").wants_html());
        let two = request("GET / HTTP/1.1\r\nAccept: */*\r\nAccept: text/html\r\n\r\n");
        assert_eq!(two.accept, "*/*,text/html");
        assert!(two.wants_html());
    }

    #[tokio::test]
    async fn streams_a_body_until_the_sender_goes() {
        let (client, server) = tokio::io::duplex(4096);
        let (tx, rx) = mpsc::channel(1);
        let mut rx = Some(rx);
        let task = tokio::spawn(serve_connection(server, move |_req: Request| {
            let stream = BodyStream(rx.take().expect("one request"));
            async move { Response::streamed("text/event-stream", b"first\n".to_vec(), stream) }
        }));
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(b"GET /events HTTP/1.1\r\n\r\n").await.unwrap();
        tx.send(Bytes::from_static(b"second\n")).await.unwrap();
        drop(tx);
        let mut got = String::new();
        rd.read_to_string(&mut got).await.unwrap();
        task.await.unwrap();
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(head.contains("Cache-Control: no-cache\r\n"), "{head}");
        assert!(head.contains("Connection: close"), "{head}");
        assert!(!head.contains("Content-Length"), "{head}");
        assert_eq!(body, "first\nsecond\n");
    }
}
