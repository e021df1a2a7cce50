//! `[tls]`: TLS on the public listener (`--tls-cert`, `--tls-key`).

use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use super::Flags;

/// The public listener's certificate and client verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA bundle client certificates are verified against (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// With a CA bundle: also accept clients without a certificate.
    pub client_auth_optional: bool,
    /// How often the files are checked for changes; 0 never.
    pub reload_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth: String,
    reload_interval: String,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: "require".into(),
            reload_interval: "10s".into(),
        }
    }
}

pub(super) fn validate(raw: RawTls, flags: &Flags, location: &str, errors: &mut Vec<String>) -> Option<ServerTls> {
    let cert_file = flags.tls_cert.clone().or(raw.cert_file);
    let key_file = flags.tls_key.clone().or(raw.key_file);
    let (cert_file, key_file) = match (cert_file, key_file) {
        (None, None) => {
            if raw.client_ca_file.is_some() {
                errors.push(format!("{location}: `tls.client_ca_file` needs `tls.cert_file` and `tls.key_file`"));
            }
            return None;
        }
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            errors.push(format!("{location}: `tls`: give both a certificate and a key (--tls-cert and --tls-key)"));
            return None;
        }
    };
    for file in [Some(&cert_file), Some(&key_file), raw.client_ca_file.as_ref()].into_iter().flatten() {
        if !file.is_file() {
            errors.push(format!("{location}: `tls`: {} is not a readable file", file.display()));
        }
    }
    let client_auth_optional = match raw.client_auth.as_str() {
        "require" => false,
        "optional" => true,
        other => {
            errors.push(format!("{location}: `tls.client_auth`: {other:?} is not \"require\" or \"optional\""));
            false
        }
    };
    let reload_interval = humantime::parse_duration(&raw.reload_interval)
        .map_err(|e| {
            let text = &raw.reload_interval;
            errors.push(format!("{location}: `tls.reload_interval`: {text:?} is not a duration ({e})"))
        })
        .unwrap_or_default();
    Some(ServerTls { cert_file, key_file, client_ca_file: raw.client_ca_file, client_auth_optional, reload_interval })
}

/// The certificates of a PEM file (the listener's and the upstreams'),
/// refused when it holds none.
pub fn pem_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}
