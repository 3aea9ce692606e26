//! TLS for the server (`server.tls`): rustls with ring, PEM files.
//!
//! The certificate is looked up per handshake from a slot that a watcher replaces when
//! the files change (checked every [`POLL`]) or on SIGHUP: connections already open keep
//! the session they made, new ones get the new certificate. A pair that does not load
//! (a key that does not match, a half-written file) leaves the old one in place.
//! Polling the paths, rather than inotify, follows the symlink swaps that Kubernetes and
//! cert-manager use to replace a secret's files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::metrics::metrics;
use crate::shutdown::Shutdown;
use crate::spec::server::TlsConfig;

/// How often the certificate files are checked for a change.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the certificate {0}: {1}")]
    Cert(PathBuf, String),
    #[error("reading the private key {0}: {1}")]
    Key(PathBuf, String),
    #[error("{0} holds no certificate")]
    NoCert(PathBuf),
    #[error("the private key {0} does not suit the certificate: {1}")]
    Mismatch(PathBuf, String),
}

/// The certificate in use, replaced on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|c| c.clone())
    }
}

/// Reads a certificate chain and its key.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert(cert.into(), e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Cert(cert.into(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.into()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key(key.into(), e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, private, &provider)
        .map_err(|e| TlsError::Mismatch(key.into(), e.to_string()))?;
    Ok(certified)
}

/// The server's TLS: an acceptor and the handle that reloads its certificate.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    pub fn new(config: &TlsConfig) -> Result<Tls, TlsError> {
        let (cert, key) = (
            PathBuf::from(&config.cert.value),
            PathBuf::from(&config.key.value),
        );
        let current = Arc::new(Current(RwLock::new(Arc::new(load(&cert, &key)?))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Cert(cert.clone(), e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            current,
            cert,
            key,
        })
    }

    /// Loads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> bool {
        match load(&self.cert, &self.key) {
            Ok(certified) => {
                if let Ok(mut slot) = self.current.0.write() {
                    *slot = Arc::new(certified);
                }
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                metrics().tls_reloads.with_label_values(&["ok"]).inc();
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays");
                metrics().tls_reloads.with_label_values(&["error"]).inc();
                false
            }
        }
    }

    fn stamp(&self) -> Option<[(SystemTime, u64); 2]> {
        let one = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok()
        };
        Some([one(&self.cert)?, one(&self.key)?])
    }

    /// Reloads when the files change or on SIGHUP, until `stop`.
    pub async fn watch(self: Arc<Self>, stop: Shutdown) {
        let mut seen = self.stamp();
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "SIGHUP does not reload the certificate"))
            .ok();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.triggered() => return,
                _ = signalled => {
                    seen = self.stamp();
                    self.reload();
                }
                _ = poll.tick() => {
                    let now = self.stamp();
                    if now.is_some() && now != seen {
                        // Written in two steps (the cert, then the key): a pair that does
                        // not load yet is tried again on the next change.
                        seen = now;
                        self.reload();
                    }
                }
            }
        }
    }
}
