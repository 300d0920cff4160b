//! TLS on the client listener: the rustls server configuration built from `tls { ... }` (or the
//! `--tls*` flags), the NATS-style upgrade (INFO in plaintext, then the handshake; or the
//! handshake first), and the stream halves the reader and writer use, plain or TLS.
//!
//! The halves are enums: the plaintext path costs one branch per read or write, and a plain
//! connection keeps tokio's lock-free TCP halves. A TLS stream is split with `tokio::io::split`.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsOptions;

/// The first byte of a TLS handshake record. nats-server (Go's crypto/tls) closes a connection
/// whose first record is anything else without writing a byte.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Builds the server configuration, with nats-server's wording for the errors a deployment
/// hits most: a missing file and a key that does not belong to the certificate.
pub fn server_config(opts: &TlsOptions) -> Result<Arc<ServerConfig>, String> {
    let pair_error = |why: String| format!("error parsing X509 certificate/key pair: {why}");
    let cert_file = opts
        .cert_file
        .as_deref()
        .ok_or("TLS Server certificate must be present and valid")?;
    let key_file = opts
        .key_file
        .as_deref()
        .ok_or("TLS Server private key must be present and valid")?;
    let certs = read_certs(cert_file).map_err(pair_error)?;
    let key = read_key(key_file).map_err(pair_error)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| pair_error(format!("tls: {e}")))?;
    rustls::sign::CertifiedKey::new(certs.clone(), signing_key)
        .keys_match()
        .map_err(|_| pair_error("tls: private key does not match public key".into()))?;

    let versions: &[&rustls::SupportedProtocolVersion] = match opts.min_version.as_deref() {
        Some("1.3") => &[&rustls::version::TLS13],
        None | Some("1.2") => rustls::ALL_VERSIONS,
        Some(other) => return Err(format!("unsupported TLS version: {other}")),
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS configuration error: {e}"))?;
    let builder = if opts.verify || opts.verify_and_map {
        let ca_file = opts
            .ca_file
            .as_deref()
            .ok_or("TLS verify requires a CA certificate (ca_file or --tlscacert)")?;
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca_file).map_err(|why| format!("error loading ca_file: {why}"))? {
            roots
                .add(cert)
                .map_err(|e| format!("error loading ca_file: {e}"))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("error loading ca_file: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| pair_error(format!("tls: {e}")))?;
    Ok(Arc::new(config))
}

/// Certificates from a PEM file.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls: failed to find any PEM data in certificate input ({})",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key from a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), as Go accepts.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "tls: failed to find any PEM data in key input ({})",
                path.display()
            )
        })
}

/// Reads a file, naming it in the error the way Go's `open` does.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::NotFound => "no such file or directory".to_string(),
            io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("open {}: {why}", path.display())
    })
}

/// How a TLS upgrade failed (for the debug log; the client is closed without a word).
#[derive(Debug)]
pub enum HandshakeError {
    /// The handshake did not finish within `tls.timeout`.
    Timeout,
    /// The first record was not a TLS handshake (a plaintext client on a TLS listener).
    NotTls,
    /// rustls or the socket refused.
    Failed(io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Timeout => f.write_str("i/o timeout"),
            HandshakeError::NotTls => {
                f.write_str("tls: first record does not look like a TLS handshake")
            }
            HandshakeError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Upgrades an accepted connection. `info` (the INFO line) is written in plaintext first unless
/// the handshake comes first. The whole exchange is bounded by `timeout`.
pub async fn accept(
    config: Arc<ServerConfig>,
    mut stream: TcpStream,
    info: Option<&[u8]>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let upgrade = async {
        if let Some(info) = info {
            stream
                .write_all(info)
                .await
                .map_err(HandshakeError::Failed)?;
        }
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => {
                return Err(HandshakeError::Failed(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => return Err(HandshakeError::NotTls),
            Ok(_) => {}
            Err(e) => return Err(HandshakeError::Failed(e)),
        }
        TlsAcceptor::from(config)
            .accept(stream)
            .await
            .map_err(HandshakeError::Failed)
    };
    tokio::time::timeout(timeout, upgrade)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

/// The reading half of a client connection.
pub enum ReadHalf {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS.
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a client connection.
pub enum WriteHalf {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

/// Splits a plain connection.
pub fn split_plain(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = stream.into_split();
    (ReadHalf::Plain(r), WriteHalf::Plain(w))
}

/// Splits a TLS connection.
pub fn split_tls(stream: TlsStream<TcpStream>) -> (ReadHalf, WriteHalf) {
    let (r, w) = tokio::io::split(stream);
    (ReadHalf::Tls(r), WriteHalf::Tls(w))
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
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
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
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
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Plain(w) => w.is_write_vectored(),
            WriteHalf::Tls(w) => w.is_write_vectored(),
        }
    }
}
