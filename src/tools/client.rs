//! A small NATS client for the tools: connect (TLS, user/password, token, nkey, `.creds`),
//! subscribe, publish, request, flush. One reader task per connection hands each message to its
//! subscription's channel and answers the server's PINGs.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::wire::{self, Msg, ServerOp};

/// How to reach and log in to a server: the `nats` CLI's connection options.
#[derive(Debug, Clone, Default)]
pub struct ConnectOpts {
    /// `--server`/`-s` or `NATS_URL`: comma-separated URLs, tried in order.
    pub servers: String,
    /// `--user`
    pub user: Option<String>,
    /// `--password`
    pub password: Option<String>,
    /// `--token`
    pub token: Option<String>,
    /// `--creds`: a user JWT and its nkey seed.
    pub creds: Option<PathBuf>,
    /// `--nkey`: a file holding a user nkey seed.
    pub nkey: Option<PathBuf>,
    /// `--tlscert`
    pub tls_cert: Option<PathBuf>,
    /// `--tlskey`
    pub tls_key: Option<PathBuf>,
    /// `--tlsca`
    pub tls_ca: Option<PathBuf>,
    /// `--timeout`: for connecting and for each request.
    pub timeout: Duration,
    /// The connection name shown in `/connz`.
    pub name: String,
}

/// The default server URL, as the `nats` CLI's.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Writer = tokio::sync::Mutex<(WriteHalf<Box<dyn Stream>>, BytesMut)>;

/// A connected client. Cheap to share: clone the `Arc`.
pub struct Client {
    writer: Writer,
    subs: Mutex<HashMap<u64, mpsc::UnboundedSender<Msg>>>,
    pongs: Mutex<VecDeque<oneshot::Sender<()>>>,
    next_sid: AtomicU64,
    inbox: String,
    closed: Mutex<Option<String>>,
    /// The server's INFO.
    pub info: Value,
    /// The URL it is connected to.
    pub url: String,
}

/// A subscription's messages.
pub struct Subscription {
    /// Its sid.
    pub sid: u64,
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl Subscription {
    /// The next message; `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<Msg> {
        self.rx.recv().await
    }

    /// A message already received, if any (no waiting).
    pub fn try_next(&mut self) -> Option<Msg> {
        self.rx.try_recv().ok()
    }
}

impl Client {
    /// Connects to the first server of `opts.servers` that answers, and logs in.
    pub async fn connect(opts: &ConnectOpts) -> Result<Arc<Client>, String> {
        let mut last = String::from("no server URL given");
        for url in opts
            .servers
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            match tokio::time::timeout(opts.timeout, Client::connect_one(url, opts)).await {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(err)) => last = err,
                Err(_) => last = format!("{url}: timed out connecting"),
            }
        }
        Err(last)
    }

    async fn connect_one(url: &str, opts: &ConnectOpts) -> Result<Arc<Client>, String> {
        let target = Url::parse(url)?;
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Box<dyn Stream> = Box::new(tcp);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let info = match read_op(&mut stream, &mut buf).await? {
            ServerOp::Info(json) => serde_json::from_slice::<Value>(&json)
                .map_err(|e| format!("{url}: bad INFO from server: {e}"))?,
            other => return Err(format!("{url}: expected INFO, got {other:?}")),
        };
        let flag = |name: &str| info[name].as_bool().unwrap_or(false);
        let wants_tls = target.tls || opts.tls_ca.is_some() || opts.tls_cert.is_some();
        if flag("tls_required") || wants_tls {
            if !(flag("tls_required") || flag("tls_available")) {
                return Err(format!(
                    "{url}: TLS asked for but the server does not offer it"
                ));
            }
            stream = start_tls(stream, &target.host, opts).await?;
        }
        let mut connect = json!({
            "verbose": false, "pedantic": false, "tls_required": wants_tls,
            "name": opts.name, "lang": "rust-tern", "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1, "echo": true, "headers": true, "no_responders": true,
        });
        login(&mut connect, &target, opts, info["nonce"].as_str())?;
        let mut out = BytesMut::new();
        out.extend_from_slice(format!("CONNECT {connect}\r\nPING\r\n").as_bytes());
        stream
            .write_all(&out)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        loop {
            match read_op(&mut stream, &mut buf).await? {
                ServerOp::Pong => break,
                ServerOp::Err(text) => return Err(format!("{url}: {text}")),
                _ => {}
            }
        }
        let (reader, writer) = tokio::io::split(stream);
        let inbox = format!("_INBOX.{}", random_token(22));
        let client = Arc::new(Client {
            writer: tokio::sync::Mutex::new((writer, BytesMut::new())),
            subs: Mutex::new(HashMap::new()),
            pongs: Mutex::new(VecDeque::new()),
            next_sid: AtomicU64::new(1),
            inbox,
            closed: Mutex::new(None),
            info,
            url: url.to_string(),
        });
        tokio::spawn(read_loop(client.clone(), reader, buf));
        Ok(client)
    }

    /// A fresh reply subject under this connection's inbox prefix.
    pub fn new_inbox(&self) -> String {
        format!(
            "{}.{}",
            self.inbox,
            self.next_sid.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Subscribes to `subject`, in queue group `queue` if given.
    pub async fn subscribe(
        &self,
        subject: &str,
        queue: Option<&str>,
    ) -> Result<Subscription, String> {
        let sid = self.next_sid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.subs).insert(sid, tx);
        let mut out = BytesMut::new();
        wire::encode_sub(&mut out, subject, queue, sid);
        self.send(&out).await?;
        Ok(Subscription { sid, rx })
    }

    /// Stops a subscription.
    pub async fn unsubscribe(&self, sid: u64) -> Result<(), String> {
        lock(&self.subs).remove(&sid);
        let mut out = BytesMut::new();
        wire::encode_unsub(&mut out, sid);
        self.send(&out).await
    }

    /// Queues a message; it is written at once unless `batch` (then at the next flush or when
    /// 64 KiB are pending).
    pub async fn publish(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&[u8]>,
        payload: &[u8],
        batch: bool,
    ) -> Result<(), String> {
        let mut guard = self.writer.lock().await;
        let (writer, pending) = &mut *guard;
        wire::encode_pub(pending, subject, reply, headers, payload);
        if !batch || pending.len() >= 64 * 1024 {
            let bytes = pending.split();
            writer
                .write_all(&bytes)
                .await
                .map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    /// Writes already-encoded operations (a batch of `PUB`s) as they are.
    pub async fn write_raw(&self, bytes: &[u8]) -> Result<(), String> {
        self.send(bytes).await
    }

    /// Writes what is pending and waits for the server's PONG: everything sent before has
    /// been processed by the server.
    pub async fn flush(&self, timeout: Duration) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pongs).push_back(tx);
        self.send(b"PING\r\n").await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed_reason()),
            Err(_) => Err("timed out waiting for the server's PONG".into()),
        }
    }

    /// Sends a request and waits for the first answer.
    pub async fn request(
        &self,
        subject: &str,
        headers: Option<&[u8]>,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Msg, String> {
        let reply = self.new_inbox();
        let mut sub = self.subscribe(&reply, None).await?;
        self.publish(subject, Some(&reply), headers, payload, false)
            .await?;
        let answer = tokio::time::timeout(timeout, sub.next()).await;
        let _ = self.unsubscribe(sub.sid).await;
        match answer {
            Ok(Some(msg)) if msg.status() == Some(503) => Err(format!(
                "no responders available for request on {subject:?}"
            )),
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(self.closed_reason()),
            Err(_) => Err(format!("timed out waiting for a reply on {subject:?}")),
        }
    }

    /// Why the connection is gone (the server's last `-ERR`, or the read error).
    pub fn closed_reason(&self) -> String {
        lock(&self.closed)
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }

    async fn send(&self, bytes: &[u8]) -> Result<(), String> {
        let mut guard = self.writer.lock().await;
        let (writer, pending) = &mut *guard;
        pending.extend_from_slice(bytes);
        let bytes = pending.split();
        writer.write_all(&bytes).await.map_err(|e| self.io_error(e))
    }

    fn io_error(&self, err: std::io::Error) -> String {
        lock(&self.closed)
            .clone()
            .unwrap_or_else(|| err.to_string())
    }
}

/// Locks a mutex, taking the data even if a holder panicked (the maps stay consistent: every
/// update is one insert or remove).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn read_loop(client: Arc<Client>, mut reader: ReadHalf<Box<dyn Stream>>, mut buf: BytesMut) {
    let reason = loop {
        match wire::parse(&mut buf) {
            Ok(Some(ServerOp::Msg(msg))) => {
                if let Some(tx) = lock(&client.subs).get(&msg.sid) {
                    let _ = tx.send(msg);
                }
            }
            Ok(Some(ServerOp::Ping)) => {
                if client.send(b"PONG\r\n").await.is_err() {
                    break "connection closed".to_string();
                }
            }
            Ok(Some(ServerOp::Pong)) => {
                if let Some(tx) = lock(&client.pongs).pop_front() {
                    let _ = tx.send(());
                }
            }
            Ok(Some(ServerOp::Err(text))) => {
                // Permission errors leave the connection open; anything else closes it.
                if !text.starts_with("Permissions Violation") {
                    break text;
                }
                eprintln!("server: {text}");
            }
            Ok(Some(_)) => {}
            Ok(None) => match reader.read_buf(&mut buf).await {
                Ok(0) => break "connection closed by the server".into(),
                Ok(_) => {}
                Err(err) => break err.to_string(),
            },
            Err(err) => break err.0,
        }
    };
    lock(&client.closed).get_or_insert(reason);
    lock(&client.subs).clear();
    lock(&client.pongs).clear();
}

/// Reads one operation during the handshake.
async fn read_op(stream: &mut Box<dyn Stream>, buf: &mut BytesMut) -> Result<ServerOp, String> {
    loop {
        if let Some(op) = wire::parse(buf).map_err(|e| e.0)? {
            return Ok(op);
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(_) => {}
            Err(err) => return Err(err.to_string()),
        }
    }
}

/// A server URL: `[nats|tls]://[user[:password]@]host[:port]`.
struct Url {
    tls: bool,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "nats" => false,
            "tls" => true,
            _ => return Err(format!("{url}: unsupported URL scheme {scheme:?}")),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((auth, hostport)) => (Some(auth), hostport),
            None => (None, rest),
        };
        let (user, password) = match auth.map(|a| a.split_once(':')) {
            Some(Some((u, p))) => (Some(u.to_string()), Some(p.to_string())),
            Some(None) => (auth.map(str::to_string), None),
            None => (None, None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse()
                    .map_err(|_| format!("{url}: bad port {port:?}"))?,
            ),
            _ => (hostport, 4222),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            user,
            password,
        })
    }
}

/// Puts the credentials into CONNECT: a `.creds` file or nkey seed signs the nonce; otherwise
/// user/password or a token, from the options or the URL.
fn login(
    connect: &mut Value,
    url: &Url,
    opts: &ConnectOpts,
    nonce: Option<&str>,
) -> Result<(), String> {
    let seed_text = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let sign = |seed: &str| -> Result<(String, String), String> {
        let pair = nkeys::KeyPair::from_seed(seed).map_err(|e| format!("bad nkey seed: {e}"))?;
        let sig = pair
            .sign(nonce.unwrap_or_default().as_bytes())
            .map_err(|e| format!("cannot sign the server's nonce: {e}"))?;
        Ok((pair.public_key(), URL_SAFE_NO_PAD.encode(sig)))
    };
    if let Some(path) = &opts.creds {
        let text = seed_text(path)?;
        let jwt = crate::proto::jwt::jwt_in_text(&text)
            .ok_or_else(|| format!("{}: no user JWT in the credentials file", path.display()))?;
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .ok_or_else(|| {
                format!(
                    "{}: no user nkey seed in the credentials file",
                    path.display()
                )
            })?;
        let (_, sig) = sign(seed)?;
        connect["jwt"] = json!(jwt);
        connect["sig"] = json!(sig);
    } else if let Some(path) = &opts.nkey {
        let text = seed_text(path)?;
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with('S'))
            .unwrap_or("");
        let (public, sig) = sign(seed)?;
        connect["nkey"] = json!(public);
        connect["sig"] = json!(sig);
    }
    let user = opts.user.clone().or_else(|| url.user.clone());
    let password = opts.password.clone().or_else(|| url.password.clone());
    match (user, password, &opts.token) {
        (_, _, Some(token)) => connect["auth_token"] = json!(token),
        (Some(user), Some(password), _) => {
            connect["user"] = json!(user);
            connect["pass"] = json!(password);
        }
        // `nats://token@host`: a user without a password is a token.
        (Some(token), None, _) => connect["auth_token"] = json!(token),
        _ => {}
    }
    Ok(())
}

async fn start_tls(
    stream: Box<dyn Stream>,
    host: &str,
    opts: &ConnectOpts,
) -> Result<Box<dyn Stream>, String> {
    use crate::security::tls::{read_certs, read_key};
    let mut roots = rustls::RootCertStore::empty();
    let ca = opts
        .tls_ca
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    for cert in read_certs(&ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| format!("TLS client certificate: {e}"))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--tlscert and --tlskey go together".into()),
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {host} failed: {e}"))?;
    Ok(Box::new(tls))
}

/// `len` random letters and digits.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_urls() {
        let url = Url::parse("nats://a:b@h.example:4333").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.tls),
            ("h.example", 4333, false)
        );
        assert_eq!(
            (url.user.as_deref(), url.password.as_deref()),
            (Some("a"), Some("b"))
        );
        let url = Url::parse("tls://[::1]").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.tls), ("::1", 4222, true));
        let url = Url::parse("127.0.0.1:5000").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 5000));
        assert!(Url::parse("http://x").is_err());
        assert!(Url::parse("nats://x:port").is_err());
    }
}
