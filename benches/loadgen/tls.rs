//! The `tls:` scenarios and what they need: certificates made at run time with rcgen (a CA
//! and, signed by it, an ECDSA P-256 server certificate for 127.0.0.1 and localhost), written
//! as PEM files that every server loads through the same `tls` block, and the generator's
//! client side, pinned so that every server negotiates the same thing.
//!
//! The pin is held by the client, which offers nothing else: TLS 1.3 only, the one cipher
//! suite TLS_AES_128_GCM_SHA256, the one key exchange group X25519. (Go ignores
//! `cipher_suites` for TLS 1.3 and tern ignores it altogether, so a server-side list would pin
//! nothing.) Every handshake is checked for what it negotiated; anything else fails the run.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::crypto::ring as provider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::fan::{fan, Fan, Via};
use crate::scenarios::{io, join, metric, per_second, scenario, Better, Outcome, Scale, Scenario};
use crate::server::Server;
use crate::wire::{barrier, connect_to};

/// What every TLS connection of the generator negotiates, as the table's notes say it.
pub const PINNED: &str =
    "TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256 (SHA-256) server certificate";

/// The certificate files and the client configuration that trusts their CA.
struct Pki {
    cert: PathBuf,
    key: PathBuf,
    client: Arc<ClientConfig>,
}

static PKI: OnceLock<Result<Pki, String>> = OnceLock::new();

/// The certificates, made at the first call (in `target/loadgen-logs/tls`).
fn pki() -> Result<&'static Pki, String> {
    PKI.get_or_init(make_pki).as_ref().map_err(Clone::clone)
}

fn make_pki() -> Result<Pki, String> {
    let e = |e: rcgen::Error| format!("making the TLS certificates: {e}");
    let dir = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join("target/loadgen-logs/tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    // rcgen's default key type is ECDSA P-256 with SHA-256.
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "loadgen CA");
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = params.signed_by(&key, &ca, &ca_key).map_err(e)?;

    let write = |name: &str, text: String| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    };
    let cert = write("server.pem", leaf.pem())?;
    let key = write("server.key", key.serialize_pem())?;

    let mut roots = RootCertStore::empty();
    roots
        .add(ca.der().clone())
        .map_err(|e| format!("the loadgen CA: {e}"))?;
    let pinned = rustls::crypto::CryptoProvider {
        cipher_suites: vec![provider::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![provider::kx_group::X25519],
        ..provider::default_provider()
    };
    let client = ClientConfig::builder_with_provider(Arc::new(pinned))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("the TLS client: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Pki {
        cert,
        key,
        client: Arc::new(client),
    })
}

/// The `tls` block of a server's configuration: the certificate and key every server loads,
/// and a handshake timeout of 5 s (the defaults, 0.5 s and 2 s, are short for hundreds of
/// handshakes at once on a loaded machine).
pub fn server_block() -> Result<String, String> {
    let pki = pki()?;
    Ok(format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  timeout: 5\n}}\n",
        pki.cert.display().to_string(),
        pki.key.display().to_string()
    ))
}

/// A client session for a server on 127.0.0.1 (whose certificate must name that address).
pub fn client() -> io::Result<ClientConnection> {
    let pki = pki().map_err(io::Error::other)?;
    let server = ServerName::from(IpAddr::from([127, 0, 0, 1]));
    ClientConnection::new(pki.client.clone(), server).map_err(io::Error::other)
}

/// Fails unless `conn` negotiated exactly what `PINNED` says.
pub fn check_negotiated(conn: &ClientConnection) -> io::Result<()> {
    let version = conn.protocol_version();
    let suite = conn.negotiated_cipher_suite().map(|s| s.suite());
    let group = conn.negotiated_key_exchange_group().map(|g| g.name());
    if version != Some(rustls::ProtocolVersion::TLSv1_3)
        || suite != Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        || group != Some(rustls::NamedGroup::X25519)
    {
        return Err(io::Error::other(format!(
            "negotiated {version:?}, {suite:?}, {group:?}, not {PINNED}"
        )));
    }
    Ok(())
}

/// The TLS scenarios (`--only tls`).
pub fn all() -> Vec<Scenario> {
    let mut list = Vec::new();
    for size in [16, 1024, 64 * 1024] {
        let fan_of = Fan {
            size,
            via: Via::Tls,
            ..Fan::default()
        };
        list.push(Scenario {
            tls: true,
            ..scenario(
                format!("tls: 1:1 {}", crate::scenarios::size_name(size)),
                move |s, scale| fan(s, scale, fan_of).map(|f| f.metrics),
            )
        });
    }
    list.push(Scenario {
        tls: true,
        ..scenario("tls: connection set-up", handshakes)
    });
    list
}

/// Threads opening connections at once in the set-up scenario.
const HANDSHAKERS: usize = 4;

/// Connection set-up over TLS: `HANDSHAKERS` threads each open connections one after another
/// (TCP connect, INFO, the TLS handshake, CONNECT, PING/PONG) and close them, as clients
/// reconnecting after a restart do; the rate is of whole set-ups.
fn handshakes(server: &Server, scale: Scale) -> Outcome {
    let n = scale.pick(400, 3_000);
    let port = server.port;
    let start = Instant::now();
    let threads: Vec<_> = (0..HANDSHAKERS)
        .map(|t| {
            std::thread::spawn(move || -> Result<(), String> {
                for _ in 0..n / HANDSHAKERS + usize::from(t < n % HANDSHAKERS) {
                    let mut conn = connect_to(port, Via::Tls).map_err(io)?;
                    barrier(&mut conn).map_err(io)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        join(t, "handshaking thread")?;
    }
    let took = start.elapsed();
    Ok(vec![metric(
        "TLS connection set-ups/s",
        per_second(n, took),
        "conn/s",
        Better::Higher,
    )])
}
