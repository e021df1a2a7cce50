//! The identity in a client certificate the TLS listener verified: its
//! subject (the distinguished name in certificate order, `O=Acme, CN=app`)
//! and its common name. The
//! listener reads it once per connection; authentication takes it as a
//! credential when `auth.client_certificates` is on.

use x509_parser::prelude::{FromDer, X509Certificate};

/// A verified client certificate's identity, in each request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// `O=Acme, CN=app`.
    pub subject: String,
    pub common_name: Option<String>,
}

impl ClientCertificate {
    /// The identity of the leaf certificate in DER; `None` if it does not
    /// parse (rustls verified it, so that would be a parser limit).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, certificate) = X509Certificate::from_der(der).ok()?;
        let subject = certificate.subject();
        let common_name = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
        Some(Self { subject: subject.to_string(), common_name })
    }

    /// The consumer name: the common name, else the whole subject.
    pub fn consumer(&self) -> &str {
        self.common_name.as_deref().unwrap_or(&self.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::ClientCertificate;

    /// (subject names, subject, common name, consumer).
    type Case<'a> = (&'a [(rcgen::DnType, &'a str)], &'a str, Option<&'a str>, &'a str);

    #[test]
    fn subjects_and_common_names_come_from_the_certificate() {
        let cases: [Case; 3] = [
            (&[(rcgen::DnType::CommonName, "billing")], "CN=billing", Some("billing"), "billing"),
            (
                &[(rcgen::DnType::OrganizationName, "Acme"), (rcgen::DnType::CommonName, "app")],
                "O=Acme, CN=app",
                Some("app"),
                "app",
            ),
            (&[(rcgen::DnType::OrganizationName, "Acme")], "O=Acme", None, "O=Acme"),
        ];
        for (names, subject, common_name, consumer) in cases {
            let mut params = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            for (kind, value) in names {
                params.distinguished_name.push(kind.clone(), *value);
            }
            let key = rcgen::KeyPair::generate().unwrap();
            let der = params.self_signed(&key).unwrap().der().to_vec();
            let parsed = ClientCertificate::from_der(&der).unwrap();
            assert_eq!(
                (parsed.subject.as_str(), parsed.common_name.as_deref(), parsed.consumer()),
                (subject, common_name, consumer)
            );
        }
        assert_eq!(ClientCertificate::from_der(b"not a certificate"), None);
    }
}
