//! TLS toward `https://` endpoints: one rustls client configuration per
//! gateway (the configured CA or the system roots, the optional client
//! certificate, ALPN `h2`), used by every endpoint's own connection.
//! Files are read and checked at load; the system roots, which most
//! gateways never need, are read the first time an endpoint asks.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::config::ClientTls;

#[derive(Debug)]
pub struct UpstreamTls {
    /// Built at load from configured files, else on first use.
    config: OnceLock<Result<Arc<ClientConfig>, String>>,
    files: Files,
    /// Checked against the certificate (and sent as SNI) instead of the host.
    pub server_name: Option<String>,
}

#[derive(Debug, Default)]
struct Files {
    roots: Option<Vec<CertificateDer<'static>>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl UpstreamTls {
    /// Reads the configured files, reporting the first that is unreadable.
    pub fn load(tls: &ClientTls) -> Result<Self, String> {
        let roots = tls.ca_file.as_deref().map(certificates).transpose()?;
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Some((certificates(cert)?, private_key(key)?)),
            _ => None,
        };
        let files = Files { roots, identity };
        let upstream = Self { config: OnceLock::new(), files, server_name: tls.server_name.clone() };
        if upstream.files.roots.is_some() || upstream.files.identity.is_some() {
            upstream.client_config()?;
        }
        Ok(upstream)
    }

    /// The configuration every TLS endpoint dials with.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        self.config.get_or_init(|| client_config(&self.files).map(Arc::new)).clone()
    }

    /// The name to verify for an endpoint whose URL (or DNS origin) names `host`.
    pub fn name_for(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string()).map_err(|e| format!("`upstream.tls`: invalid server name {name:?}: {e}"))
    }
}

fn client_config(files: &Files) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("`upstream.tls`: {e}"))?;
    let mut roots = RootCertStore::empty();
    match &files.roots {
        Some(certificates) => {
            for certificate in certificates {
                roots.add(certificate.clone()).map_err(|e| format!("`upstream.tls.ca_file`: {e}"))?;
            }
        }
        None => {
            // Unparsable system certificates are skipped, as browsers do.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
    }
    let builder = builder.with_root_certificates(roots);
    let mut config = match &files.identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("`upstream.tls`: the client certificate and key do not fit: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::config::pem_certificates(path).map_err(|e| format!("`upstream.tls`: {e}"))
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("`upstream.tls`: cannot read a key from {}: {e}", path.display()))
}
