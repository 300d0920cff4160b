//! Certificates generated at test time (rcgen): a CA, a server certificate for
//! localhost/127.0.0.1 (which routes also present as their client certificate), client
//! certificates, an expired one and one from a CA nobody trusts, as PEM files, and a rustls
//! client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tern::config::TlsOptions;
use tern::Options;

use super::process::Scratch;

/// A CA, a server certificate for localhost/127.0.0.1 and client certificates, as PEM files.
pub struct Pki {
    pub dir: Scratch,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = Scratch::new(name);
        let d = dir.0.clone();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tern test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let leaf = |names: Vec<String>, cn: &str, expired: bool| {
            let key = KeyPair::generate().unwrap();
            let emails: Vec<String> = names.iter().filter(|n| n.contains('@')).cloned().collect();
            let names: Vec<String> = names.into_iter().filter(|n| !n.contains('@')).collect();
            let mut params = CertificateParams::new(names).unwrap();
            for email in emails {
                params
                    .subject_alt_names
                    .push(rcgen::SanType::Rfc822Name(email.try_into().unwrap()));
            }
            params.distinguished_name.push(DnType::CommonName, cn);
            params
                .distinguished_name
                .push(DnType::OrganizationName, "tern");
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            false,
        );
        let (client_cert, client_key) = leaf(vec!["alice@example.com".into()], "alice", false);
        let (expired_cert, expired_key) = leaf(vec![], "old", true);

        // A client certificate from a CA the server does not trust.
        let rogue_ca_key = KeyPair::generate().unwrap();
        let mut rogue_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        rogue_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let rogue_ca = rogue_params.self_signed(&rogue_ca_key).unwrap();
        let rogue_key = KeyPair::generate().unwrap();
        let rogue = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .signed_by(&rogue_key, &rogue_ca, &rogue_ca_key)
            .unwrap();

        Pki {
            ca: write(&d, "ca.pem", &ca.pem()),
            server_cert: write(&d, "server.pem", &server_cert),
            server_key: write(&d, "server.key", &server_key),
            client_cert: write(&d, "client.pem", &client_cert),
            client_key: write(&d, "client.key", &client_key),
            expired_cert: write(&d, "expired.pem", &expired_cert),
            expired_key: write(&d, "expired.key", &expired_key),
            rogue_cert: write(&d, "rogue.pem", &rogue.pem()),
            rogue_key: write(&d, "rogue.key", &rogue_key.serialize_pem()),
            dir,
        }
    }

    pub fn options(&self, verify: bool, handshake_first: bool) -> Options {
        self.options_with_timeout(verify, handshake_first, Duration::from_millis(500))
    }

    pub fn options_with_timeout(
        &self,
        verify: bool,
        handshake_first: bool,
        timeout: Duration,
    ) -> Options {
        Options {
            tls: Some(TlsOptions {
                cert_file: Some(self.server_cert.clone()),
                key_file: Some(self.server_key.clone()),
                ca_file: verify.then(|| self.ca.clone()),
                verify,
                handshake_first,
                timeout,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A rustls client trusting the test CA, optionally presenting a certificate.
    pub fn connector(&self, identity: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs(&self.ca) {
            roots.add(cert).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder.with_client_auth_cert(certs(cert), private_key(key)),
            None => Ok(builder.with_no_client_auth()),
        }
        .unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

pub fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap();
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn private_key(path: &Path) -> PrivateKeyDer<'static> {
    let pem = std::fs::read(path).unwrap();
    rustls_pemfile::private_key(&mut pem.as_slice())
        .unwrap()
        .unwrap()
}
