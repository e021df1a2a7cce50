//! TLS on the public listener (rustls): one port for `h2` and `http/1.1`
//! chosen by ALPN, the certificate re-read when its files change (new
//! connections get the new one, established ones keep theirs), and
//! optional client-certificate verification against a CA bundle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::config::{ServerTls, pem_certificates};

/// The acceptor of new connections, swapped whole on a reload.
#[derive(Clone)]
pub struct Acceptor {
    current: Arc<ArcSwap<ServerConfig>>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

impl Acceptor {
    /// Reads the files once, failing with every problem; then watches them.
    pub fn start(settings: &ServerTls, stop: watch::Receiver<bool>) -> Result<Self, String> {
        let config = server_config(settings)?;
        let acceptor = Self { current: Arc::new(ArcSwap::from_pointee(config)) };
        if !settings.reload_interval.is_zero() {
            tokio::spawn(watch_files(settings.clone(), acceptor.current.clone(), stop));
        }
        Ok(acceptor)
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

fn server_config(settings: &ServerTls) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = pem_certificates(&settings.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| format!("`tls.key_file` {}: {e}", settings.key_file.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &settings.client_ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in pem_certificates(path)? {
                roots.add(cert).map_err(|e| format!("`tls.client_ca_file` {}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if settings.client_auth_optional { verifier.allow_unauthenticated() } else { verifier };
            let verifier = verifier.build().map_err(|e| format!("`tls.client_ca_file` {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("`tls.cert_file` and `tls.key_file` do not make a usable certificate: {e}"))?;
    // Browsers get HTTP/2 over TLS only through ALPN; gRPC clients insist on h2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Polls the files' modification times; a change that reads into a good
/// configuration replaces it, a bad one is logged and the old one kept.
async fn watch_files(settings: ServerTls, current: Arc<ArcSwap<ServerConfig>>, mut stop: watch::Receiver<bool>) {
    let files: Vec<PathBuf> =
        [Some(settings.cert_file.clone()), Some(settings.key_file.clone()), settings.client_ca_file.clone()]
            .into_iter()
            .flatten()
            .collect();
    let stamps = |files: &[PathBuf]| -> Vec<Option<SystemTime>> {
        files.iter().map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok()).collect()
    };
    let mut seen = stamps(&files);
    let mut tick = tokio::time::interval(settings.reload_interval.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let now = stamps(&files);
        if now == seen {
            continue;
        }
        seen = now;
        match server_config(&settings) {
            Ok(config) => {
                current.store(Arc::new(config));
                tracing::info!(cert = %settings.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "TLS files changed but do not load; keeping the current certificate"),
        }
    }
}
