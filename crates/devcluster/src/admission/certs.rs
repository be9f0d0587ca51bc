//! Throw-away TLS material for webhook servers under test: a CA (whose PEM goes into
//! `clientConfig.caBundle`) and a serving certificate it signs.

use std::path::Path;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Why webhook certificates could not be produced or written.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// rcgen refused the parameters (for example an invalid DNS name in `names`).
    #[error("cannot generate the webhook {what}: {source}")]
    Generate {
        /// `CA` or `serving certificate`.
        what: &'static str,
        /// What rcgen reported.
        source: rcgen::Error,
    },
    /// `names` was empty: the serving certificate needs at least one DNS name or IP address.
    #[error("webhook certificate names: at least one DNS name or IP address is required")]
    NoNames,
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A CA and a serving certificate for a webhook server, all PEM.
#[derive(Clone)]
pub struct WebhookCertificates {
    /// The CA certificate; base64 of it is `clientConfig.caBundle` (see [`Self::ca_bundle`]).
    pub ca_pem: String,
    /// The serving certificate, signed by the CA.
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for WebhookCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCertificates")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl WebhookCertificates {
    /// Generates a CA and a serving certificate for `names` (DNS names such as
    /// `webhook.system.svc`, which a `clientConfig.service` call verifies, or IP addresses
    /// such as `127.0.0.1` for `clientConfig.url`).
    pub fn generate(names: &[&str]) -> Result<Self, CertificateError> {
        if names.is_empty() {
            return Err(CertificateError::NoNames);
        }
        let ca_err = |source| CertificateError::Generate { what: "CA", source };
        let ca_key = KeyPair::generate().map_err(ca_err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "devcluster-webhook-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(ca_err)?;

        let srv_err = |source| CertificateError::Generate {
            what: "serving certificate",
            source,
        };
        let key = KeyPair::generate().map_err(srv_err)?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>())
                .map_err(srv_err)?;
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca).map_err(srv_err)?;
        Ok(Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The value for `clientConfig.caBundle`: base64 of the CA PEM.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    /// Writes `tls.crt`, `tls.key` and `ca.crt` into `dir` (the layout of a Kubernetes TLS
    /// Secret mounted into a webhook server), creating the directory.
    pub fn write_to(&self, dir: &Path) -> Result<(), CertificateError> {
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| CertificateError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        for (file, text) in [
            ("tls.crt", &self.cert_pem),
            ("tls.key", &self.key_pem),
            ("ca.crt", &self.ca_pem),
        ] {
            let p = dir.join(file);
            std::fs::write(&p, text).map_err(err(&p))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    #[test]
    fn certificates_chain_to_the_ca_and_load_in_rustls() {
        let c = WebhookCertificates::generate(&["webhook.system.svc", "127.0.0.1"]).unwrap();
        let ca = CertificateDer::from_pem_slice(c.ca_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let chain = vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(c.ca_bundle())
            .unwrap();
        assert_eq!(decoded, c.ca_pem.as_bytes());
        assert!(matches!(
            WebhookCertificates::generate(&[]),
            Err(CertificateError::NoNames)
        ));
    }

    #[test]
    fn files_use_the_tls_secret_layout() {
        let dir = std::env::temp_dir().join(format!(
            "devcluster-webhook-certs-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let c = WebhookCertificates::generate(&["localhost"]).unwrap();
        c.write_to(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("tls.crt")).unwrap(),
            c.cert_pem
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("tls.key")).unwrap(),
            c.key_pem
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
            c.ca_pem
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
