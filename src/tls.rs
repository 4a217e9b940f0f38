//! TLS trust for the LDAP and SMTP clients (rustls with ring): either the
//! certificates of a configured `ca_file` as the only trust anchors, or the
//! system store. Host names are always verified.

use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::path::Path;
use std::sync::Arc;

/// Why TLS trust could not be set up; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read it as PEM")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("holds no PEM certificate")]
    NoCertificate,
    #[error("a certificate in it was refused")]
    Certificate(#[source] rustls::Error),
    #[error("the system certificate store is empty: set ca_file")]
    EmptySystemStore,
    #[error("no TLS version in common with the crypto provider")]
    Versions(#[source] rustls::Error),
}

/// The certificates in a PEM file; an error names what went wrong, not the path.
pub fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)?.collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// A client config trusting `ca_file` only, or the system store without one.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in pem_certs(path)? {
                roots.add(cert).map_err(TlsError::Certificate)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system store with a few unparsable entries is still usable.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::EmptySystemStore);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
