//! TLS on the client listener: the rustls server configuration built from `tls { ... }` (or the
//! `--tls*` flags), the NATS-style upgrade (INFO in plaintext, then the handshake; or the
//! handshake first), and the stream halves the reader and writer use, plain or TLS. Routes get
//! both ends from `cluster { tls { ... } }` ([`RouteTls`]): they handshake first.
//!
//! The halves are enums: the plaintext path costs one branch per read or write, and a plain
//! connection keeps tokio's lock-free TCP halves. A TLS stream is split with `tokio::io::split`.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use x509_cert::der::{self, Decode, Encode};

use crate::config::{Options, TlsOptions};

/// The first byte of a TLS handshake record. nats-server (Go's crypto/tls) closes a connection
/// whose first record is anything else without writing a byte.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS configurations a server runs with, built from its options in this one place (at
/// start, by `-t`, and by every reload).
#[derive(Debug, Clone, Default)]
pub struct ServerTls {
    /// For the client port, when `tls` is configured.
    pub clients: Option<Arc<ServerConfig>>,
    /// For the HTTPS monitor: the client port's certificate, without asking for client
    /// certificates.
    pub monitor: Option<Arc<ServerConfig>>,
    /// For routes, when `cluster { tls }` is configured.
    pub routes: Option<RouteTls>,
    /// For the WebSocket listener, when its block has `tls`.
    pub websocket: Option<Arc<ServerConfig>>,
}

/// The route TLS (`cluster { tls { ... } }`): routes are TLS first, both ends handshaking as
/// soon as TCP connects, the acceptor as a TLS server and the dialer as a TLS client.
#[derive(Debug, Clone)]
pub struct RouteTls {
    /// For accepted routes: our certificate; with `verify`, the dialer's certificate is
    /// required and checked against `ca_file`.
    pub server: Arc<ServerConfig>,
    /// For dialed routes: the acceptor's certificate is checked against `ca_file` (unless
    /// `insecure`), and ours is presented when it asks for one, as nats-server does with the
    /// one certificate of the block.
    pub client: Arc<ClientConfig>,
    /// How long a handshake may take (`timeout`).
    pub timeout: Duration,
}

impl ServerTls {
    /// Builds every TLS configuration `opts` asks for. An error names the `tls` block's
    /// position in the configuration file, as nats-server reports it at load time.
    pub fn build(opts: &Options) -> Result<ServerTls, String> {
        // The route TLS is checked here too, where nats-server checks it (loading the file).
        let routes = match opts.cluster.as_ref().and_then(|c| c.tls.as_ref()) {
            Some(tls) => Some(route_tls(tls).map_err(|message| match &tls.defined_at {
                Some(at) => format!("{at}: {message}"),
                None => message,
            })?),
            None => None,
        };
        let websocket = match opts.websocket.as_ref().and_then(|w| w.tls.as_ref()) {
            Some(tls) => Some(server_config(tls).map_err(|message| match &tls.defined_at {
                Some(at) => format!("{at}: {message}"),
                None => message,
            })?),
            None => None,
        };
        let Some(tls) = &opts.tls else {
            return Ok(ServerTls {
                routes,
                websocket,
                ..ServerTls::default()
            });
        };
        let at = |message: String| match &tls.defined_at {
            Some(at) => format!("{at}: {message}"),
            None => message,
        };
        let clients = server_config(tls).map_err(at)?;
        let monitor = match opts.https_port {
            0 => None,
            _ => Some(
                server_config(&TlsOptions {
                    verify: false,
                    verify_and_map: false,
                    ..tls.clone()
                })
                .map_err(at)?,
            ),
        };
        Ok(ServerTls {
            clients: Some(clients),
            monitor,
            routes,
            websocket,
        })
    }
}

/// Builds both ends of the route TLS from the `cluster { tls }` block.
fn route_tls(opts: &TlsOptions) -> Result<RouteTls, String> {
    let server = server_config(opts)?;
    if opts.cert_file.is_none() || opts.key_file.is_none() {
        return Err("TLS Server certificate must be present and valid".into());
    }
    Ok(RouteTls {
        server,
        client: client_config(opts)?,
        timeout: opts.timeout,
    })
}

/// The TLS client side of a `tls { }` block, for connections this server dials (routes, leafnode
/// remotes): the other end's certificate is checked against `ca_file` (unless `insecure`), and
/// the block's certificate, if any, is presented when asked for.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(opts)?)
        .map_err(|e| format!("TLS configuration error: {e}"))?;
    let builder = match opts.insecure {
        true => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Insecure(provider))),
        false => {
            // Without `ca_file` nats-server trusts the system's roots; tern trusts none then.
            let mut roots = RootCertStore::empty();
            if let Some(ca_file) = &opts.ca_file {
                for cert in
                    read_certs(ca_file).map_err(|why| format!("error loading ca_file: {why}"))?
                {
                    roots
                        .add(cert)
                        .map_err(|e| format!("error loading ca_file: {e}"))?;
                }
            }
            builder.with_root_certificates(roots)
        }
    };
    let client = match (&opts.cert_file, &opts.key_file) {
        (Some(cert_file), Some(key_file)) => builder
            .with_client_auth_cert(read_certs(cert_file)?, read_key(key_file)?)
            .map_err(|e| format!("error parsing X509 certificate/key pair: tls: {e}"))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(client))
}

/// `insecure`: any certificate the acceptor presents is taken (its signatures are still
/// checked, as Go checks them with `InsecureSkipVerify`).
#[derive(Debug)]
struct Insecure(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Insecure {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS versions `min_version` leaves.
fn protocol_versions(
    opts: &TlsOptions,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], String> {
    static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match opts.min_version.as_deref() {
        Some("1.3") => Ok(TLS13_ONLY),
        None | Some("1.2") => Ok(rustls::ALL_VERSIONS),
        Some(other) => Err(format!("unsupported TLS version: {other}")),
    }
}

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

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions(opts)?)
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
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = crate::config::read_file(path)?;
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
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = crate::config::read_file(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "tls: failed to find any PEM data in key input ({})",
                path.display()
            )
        })
}

/// Whether the client's first record header (peeked, not consumed) is what Go's crypto/tls
/// accepts as a first record: a handshake record shorter than 0x3000 bytes. Anything else gets
/// `first record does not look like a TLS handshake` and the connection closes without a byte
/// (rustls would answer with an alert).
async fn looks_like_tls(stream: &TcpStream) -> Result<bool, HandshakeError> {
    let mut header = [0u8; 5];
    loop {
        let n = stream
            .peek(&mut header)
            .await
            .map_err(HandshakeError::Failed)?;
        if n == 0 {
            return Err(HandshakeError::Failed(io::ErrorKind::UnexpectedEof.into()));
        }
        if header[0] != TLS_HANDSHAKE_RECORD {
            return Ok(false);
        }
        if n == header.len() {
            return Ok(u16::from_be_bytes([header[3], header[4]]) < 0x3000);
        }
        // Part of the header is in: peek returns at once until more arrives, so wait a little
        // (bounded by the handshake timeout around this).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The key id `pinned_certs` lists: the SHA-256 of the certificate's SubjectPublicKeyInfo
/// (the whole DER element), in lower-case hex, as nats-server computes it. `None` when the
/// certificate does not parse.
pub fn pinned_key_id(cert: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(cert).ok()?;
    let key = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &key);
    Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// A client's TLS session as the server keeps it for the auth callout's `client_tls`.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// The protocol version (`1.3`).
    pub version: String,
    /// The cipher suite by Go's name.
    pub cipher: String,
    /// The certificates the client presented, leaf first (DER).
    pub peer_certs: Vec<Vec<u8>>,
}

impl SessionInfo {
    /// What `session` settled.
    pub fn of(session: &rustls::CommonState) -> SessionInfo {
        SessionInfo {
            version: session
                .protocol_version()
                .map(|v| version_name(v).to_string())
                .unwrap_or_default(),
            cipher: session
                .negotiated_cipher_suite()
                .map(|s| suite_name(s.suite()))
                .unwrap_or_default(),
            peer_certs: session
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
        }
    }
}

/// The chain `presented` (leaf first) was verified along, as Go's `VerifiedChains` has it:
/// the presented certificates, then the trusted root among `roots` that issued the last one.
pub fn verified_chain(presented: &[Vec<u8>], roots: &[CertificateDer<'_>]) -> Vec<Vec<u8>> {
    let mut chain = presented.to_vec();
    let issuer = presented
        .last()
        .and_then(|last| x509_cert::Certificate::from_der(last).ok())
        .map(|last| last.tbs_certificate.issuer);
    let subject_of = |der: &[u8]| {
        x509_cert::Certificate::from_der(der)
            .ok()
            .map(|c| c.tbs_certificate.subject)
    };
    let root = roots.iter().find(|root| {
        issuer.is_some()
            && subject_of(root.as_ref()) == issuer
            && !presented.iter().any(|p| p.as_slice() == root.as_ref())
    });
    if let Some(root) = root {
        chain.push(root.to_vec());
    }
    chain
}

/// A DER certificate as PEM, as Go's `pem.EncodeToMemory` writes it (64-column lines).
pub fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A protocol version as nats-server logs it (`1.3`).
pub fn version_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "1.3",
        rustls::ProtocolVersion::TLSv1_2 => "1.2",
        _ => "unknown",
    }
}

/// A cipher suite by Go's name: rustls says `TLS13_AES_128_GCM_SHA256` where Go says
/// `TLS_AES_128_GCM_SHA256`; the TLS 1.2 names are the same.
pub fn suite_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// How a TLS upgrade failed (for the debug log; the client is closed without a word).
#[derive(Debug)]
pub enum HandshakeError {
    /// The handshake did not finish within `tls.timeout`.
    Timeout,
    /// The first record was not a TLS handshake (a plaintext client on a TLS listener).
    NotTls,
    /// The peer's certificate is not among `pinned_certs`.
    NotPinned,
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
            HandshakeError::NotPinned => f.write_str("certificate not pinned"),
            HandshakeError::Failed(e) => match go_text(e) {
                Some(text) => f.write_str(text),
                None => write!(f, "{e}"),
            },
        }
    }
}

/// Go's words for the certificate failures a deployment meets most (its handshake log lines
/// are compared with nats-server's); the rest are told in rustls's.
fn go_text(e: &io::Error) -> Option<&'static str> {
    use rustls::{CertificateError, Error};
    match e.get_ref()?.downcast_ref::<Error>()? {
        Error::NoCertificatesPresented => Some("tls: client didn't provide a certificate"),
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            Some("tls: failed to verify certificate: x509: certificate signed by unknown authority")
        }
        Error::InvalidCertificate(CertificateError::Expired) => Some(
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid",
        ),
        _ => None,
    }
}

/// Waits up to `wait` for the client's first byte without consuming it: `None` when nothing
/// came in time, `Some(None)` when the client closed (or the socket failed) first.
///
/// nats-server decides on it twice: with `allow_non_tls`, a first byte that starts a TLS
/// handshake record upgrades the connection and anything else keeps it in plaintext; with a
/// `handshake_first` fallback delay, any byte in time means the client is doing TLS first,
/// and silence means INFO goes out in plaintext after all.
pub async fn first_byte(stream: &TcpStream, wait: Duration) -> Option<Option<u8>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Err(_) => None,
        Ok(Ok(1..)) => Some(Some(first[0])),
        Ok(_) => Some(None),
    }
}

/// Whether `byte` opens a TLS handshake record.
pub fn starts_handshake(byte: u8) -> bool {
    byte == TLS_HANDSHAKE_RECORD
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
        if !looks_like_tls(&stream).await? {
            return Err(HandshakeError::NotTls);
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

/// Upgrades a dialed connection: the TLS handshake as a client, expecting a certificate for
/// `server_name` (a DNS name or an IP address), bounded by `timeout`.
pub async fn connect(
    config: Arc<ClientConfig>,
    stream: TcpStream,
    server_name: &str,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HandshakeError> {
    let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
        HandshakeError::Failed(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid server name {server_name:?}"),
        ))
    })?;
    let upgrade = tokio_rustls::TlsConnector::from(config).connect(name, stream);
    match tokio::time::timeout(timeout, upgrade).await {
        Ok(result) => result.map_err(HandshakeError::Failed),
        Err(_) => Err(HandshakeError::Timeout),
    }
}

/// The names a client certificate carries, for `verify_and_map`: its subject's attributes and
/// its email, DNS and URI subject alternative names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// Subject attributes in certificate order, as (`CN`, `alice`) pairs; unknown attribute
    /// types are named by their dotted OID.
    pub subject: Vec<(String, String)>,
    /// Email, DNS and URI subject alternative names.
    pub alt_names: Vec<String>,
}

impl CertIdentity {
    /// Reads the subject and SANs out of a DER certificate; `None` when it does not parse.
    pub fn from_der(cert: &[u8]) -> Option<CertIdentity> {
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::SubjectAltName;

        let cert = x509_cert::Certificate::from_der(cert).ok()?;
        let tbs = &cert.tbs_certificate;
        let mut identity = CertIdentity::default();
        for attribute in tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
            identity.subject.push((
                attribute_name(&attribute.oid.to_string()),
                attribute_value(&attribute.value)?,
            ));
        }
        // id-ce-subjectAltName
        const SAN: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("2.5.29.17");
        for extension in tbs.extensions.iter().flatten() {
            if extension.extn_id != SAN {
                continue;
            }
            let names = SubjectAltName::from_der(extension.extn_value.as_bytes()).ok()?;
            for name in names.0 {
                match name {
                    GeneralName::Rfc822Name(name)
                    | GeneralName::DnsName(name)
                    | GeneralName::UniformResourceIdentifier(name) => {
                        identity.alt_names.push(name.to_string())
                    }
                    _ => {}
                }
            }
        }
        Some(identity)
    }

    /// Whether `user` (a configured user name) is this certificate: one of its alternative
    /// names, or its subject written as a DN (`CN=alice,O=tern`) in either order, as
    /// nats-server matches them.
    pub fn is(&self, user: &str) -> bool {
        if self.alt_names.iter().any(|n| n == user) {
            return true;
        }
        let Some(mut wanted) = parse_dn(user) else {
            return false;
        };
        let mut have: Vec<(String, String)> = self
            .subject
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect();
        wanted.sort();
        have.sort();
        !have.is_empty() && wanted == have
    }

    /// Whether `user` (the cluster's route user) is this certificate, as nats-server 2.15.1
    /// maps a route's certificate: one of its email or DNS names, or its subject written in
    /// certificate order (`CN=localhost,O=tern`; the other order is refused).
    pub fn is_route_user(&self, user: &str) -> bool {
        let in_order: Vec<String> = self
            .subject
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        self.alt_names.iter().any(|n| n == user) || in_order.join(",") == user
    }

    /// The subject as nats-server prints it (Go's `pkix.Name.String()`: last attribute first).
    pub fn subject_string(&self) -> String {
        let parts: Vec<String> = self
            .subject
            .iter()
            .rev()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.join(",")
    }
}

/// `CN=alice,O=tern` (RFC 4514, with `\,` escapes) as upper-cased (type, value) pairs.
fn parse_dn(text: &str) -> Option<Vec<(String, String)>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push(chars.next()?),
            ',' | '+' => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|part| {
            let (k, v) = part.split_once('=')?;
            Some((k.trim().to_ascii_uppercase(), v.trim().to_string()))
        })
        .collect()
}

/// An attribute type as Go's `pkix.Name` names it (`CN`, `O`, ...); others by dotted OID.
fn attribute_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.17" => "POSTALCODE",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => oid,
    }
    .to_string()
}

/// A name attribute's value as text, whichever string type it is in (BMPString is UTF-16, as
/// Go's `parseASN1String` reads it); `None` for one that is not a valid string.
fn attribute_value(value: &der::Any) -> Option<String> {
    use der::asn1::{BmpString, Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
    use der::{Tag, Tagged};
    Some(match value.tag() {
        Tag::Utf8String => value.decode_as::<Utf8StringRef>().ok()?.to_string(),
        Tag::PrintableString => value.decode_as::<PrintableStringRef>().ok()?.to_string(),
        Tag::Ia5String => value.decode_as::<Ia5StringRef>().ok()?.to_string(),
        Tag::TeletexString => value.decode_as::<TeletexStringRef>().ok()?.to_string(),
        Tag::BmpString => value.decode_as::<BmpString>().ok()?.to_string(),
        _ => String::from_utf8_lossy(value.value()).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{cli, conf};

    /// What building the TLS configuration of a configuration file says.
    fn file_error(text: &str) -> String {
        let file = conf::parse_str(text, Path::new("test.conf")).unwrap();
        let mut opts = Options::default();
        opts.apply_file(&file, &mut Vec::new()).unwrap();
        ServerTls::build(&opts).unwrap_err()
    }

    /// What building the TLS configuration of a command line says.
    fn flags_error(args: &[&str]) -> String {
        match cli::parse(args.iter().copied()) {
            Ok(cli::Command::Run(run)) => {
                ServerTls::build(&run.options(&mut Vec::new()).unwrap()).unwrap_err()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn configuration_errors_as_nats_server_reports_them() {
        assert_eq!(
            file_error("port: 1\ntls { cert_file: nope.pem, key_file: nope.key }"),
            "test.conf:2:1: error parsing X509 certificate/key pair: open nope.pem: no such file or directory"
        );
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let (cert, key) = (fixtures.join("ec.pem"), fixtures.join("ec-sec1.key"));
        let files = format!("cert_file: {cert:?}, key_file: {key:?}");
        assert!(file_error(&format!("tls {{ {files}, verify: true }}")).contains("CA certificate"));
        // The route TLS, checked as nats-server checks it when it loads the file.
        assert_eq!(
            file_error("cluster {\n  port: -1\n  tls { cert_file: /nope.pem, key_file: /nope.key }\n}"),
            "test.conf:3:3: error parsing X509 certificate/key pair: open /nope.pem: no such file or directory"
        );
        let cluster = format!("cluster {{ port: -1, tls {{ {files} }} }}");
        let file = conf::parse_str(&cluster, Path::new("test.conf")).unwrap();
        let mut opts = Options::default();
        opts.apply_file(&file, &mut Vec::new()).unwrap();
        assert!(ServerTls::build(&opts).unwrap().clients.is_none());
        assert_eq!(
            flags_error(&["--tls"]),
            "TLS Server certificate must be present and valid"
        );
        assert_eq!(
            flags_error(&["-tlscert", "x.pem"]),
            "TLS Server private key must be present and valid"
        );
        assert_eq!(
            flags_error(&["--tlscert", "/nonexistent.pem", "--tlskey", "k.pem"]),
            "error parsing X509 certificate/key pair: open /nonexistent.pem: no such file or directory"
        );
    }

    /// Both ends of the route TLS come from the cluster block; `insecure` is read there.
    #[test]
    fn route_tls_from_the_cluster_block() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let (cert, key) = (fixtures.join("ec.pem"), fixtures.join("ec-sec1.key"));
        let files = format!("cert_file: {cert:?}, key_file: {key:?}");
        let build = |tls: &str| {
            let text = format!("cluster {{ port: -1, tls {{ {files}{tls} }} }}");
            let file = conf::parse_str(&text, Path::new("test.conf")).unwrap();
            let mut opts = Options::default();
            opts.apply_file(&file, &mut Vec::new()).unwrap();
            let insecure = opts
                .cluster
                .as_ref()
                .unwrap()
                .tls
                .as_ref()
                .unwrap()
                .insecure;
            ServerTls::build(&opts).map(|t| (t.routes.is_some(), insecure))
        };
        assert_eq!(build(""), Ok((true, false)));
        assert_eq!(build(", insecure: true, timeout: 3"), Ok((true, true)));
        assert!(build(", verify: true")
            .unwrap_err()
            .contains("CA certificate"));
    }

    #[test]
    fn dns() {
        assert_eq!(
            parse_dn("CN=alice, O=tern\\, inc"),
            Some(vec![
                ("CN".into(), "alice".into()),
                ("O".into(), "tern, inc".into())
            ])
        );
        assert_eq!(parse_dn("alice"), None);
        let id = CertIdentity {
            subject: vec![("CN".into(), "alice".into()), ("O".into(), "tern".into())],
            alt_names: vec!["alice@example.com".into()],
        };
        assert!(id.is("alice@example.com"));
        assert!(id.is("CN=alice,O=tern"));
        assert!(id.is("O=tern,CN=alice"));
        assert!(id.is("o=tern,cn=alice"));
        assert!(!id.is("CN=alice"));
        assert!(!id.is("CN=bob,O=tern"));
        assert_eq!(id.subject_string(), "O=tern,CN=alice");
        // Routes: a name, or the subject in certificate order only (as nats-server 2.15.1).
        assert!(id.is_route_user("alice@example.com"));
        assert!(id.is_route_user("CN=alice,O=tern"));
        assert!(!id.is_route_user("O=tern,CN=alice"));
    }

    #[test]
    fn versions_and_suites_by_go_names() {
        assert_eq!(version_name(rustls::ProtocolVersion::TLSv1_3), "1.3");
        assert_eq!(version_name(rustls::ProtocolVersion::TLSv1_2), "1.2");
        assert_eq!(
            suite_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            suite_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
    }

    #[test]
    fn pinned_key_ids_match_openssl() {
        // `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        for (file, want) in [
            (
                "ec.pem",
                "0b3a0ce61059e400098ee472c9467fac56b069d0ff09eef63f4870d3d7552584",
            ),
            (
                "rsa.pem",
                "7e41db29e1af6697a04ff6d47db17b521e781d236b908d55e73f1c55840f6de1",
            ),
        ] {
            let certs = read_certs(&fixtures.join(file)).unwrap();
            assert_eq!(pinned_key_id(&certs[0]).as_deref(), Some(want), "{file}");
        }
        assert_eq!(pinned_key_id(b"not a certificate"), None);
    }

    #[test]
    fn malformed_certificates_are_refused() {
        assert_eq!(
            CertIdentity::from_der(&[0x30, 0x03, 0x30, 0x01, 0x00]),
            None
        );
        assert_eq!(CertIdentity::from_der(b"not a certificate"), None);
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let cert = &read_certs(&fixtures.join("ec.pem")).unwrap()[0];
        assert!(CertIdentity::from_der(cert).is_some());
        assert_eq!(CertIdentity::from_der(&cert[..cert.len() - 1]), None);
    }

    /// Every string type a name may be written in, BMPString (UTF-16) included, and SANs.
    #[test]
    fn names_in_any_string_type() {
        use rcgen::{BmpString, DnType, DnValue, PrintableString, SanType};
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            DnValue::BmpString(BmpString::try_from("ålice").unwrap()),
        );
        params.distinguished_name.push(
            DnType::OrganizationName,
            DnValue::PrintableString(PrintableString::try_from("tern").unwrap()),
        );
        params.distinguished_name.push(
            DnType::CustomDnType(vec![2, 5, 4, 65]),
            DnValue::Utf8String("pseudo".into()),
        );
        params.subject_alt_names = vec![
            SanType::Rfc822Name("alice@example.com".try_into().unwrap()),
            SanType::DnsName("alice.example.com".try_into().unwrap()),
            SanType::URI("nats://alice".try_into().unwrap()),
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = CertIdentity::from_der(cert.der()).unwrap();
        assert_eq!(
            id.subject,
            vec![
                ("CN".into(), "ålice".into()),
                ("O".into(), "tern".into()),
                ("2.5.4.65".into(), "pseudo".into()),
            ]
        );
        assert!(id.is("CN=ålice,O=tern,2.5.4.65=pseudo"));
        assert_eq!(
            id.alt_names,
            ["alice@example.com", "alice.example.com", "nats://alice"]
        );
    }
}
