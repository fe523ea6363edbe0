//! Trust anchors and TLS client configuration (RET-5, SEC-3, SEC-5).
//!
//! Certificates are always verified by webpki against the trust anchors: the platform's
//! roots plus any the caller adds. There is deliberately no way to skip or override
//! verification, not even for tests (they add their own CA as a trust anchor).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::ClientError;

/// The set of trust anchors a [`crate::Client`] verifies certificates against.
#[derive(Debug, Clone)]
pub(crate) struct TrustAnchors {
    roots: Arc<RootCertStore>,
}

impl TrustAnchors {
    pub(crate) fn new(
        system: bool,
        extra: &[CertificateDer<'static>],
    ) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        if system {
            // Unreadable individual system certificates are skipped, as every TLS client does.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        for cert in extra {
            roots.add(cert.clone()).map_err(|e| {
                ClientError::TrustAnchor(format!("not a usable CA certificate: {e}"))
            })?;
        }
        Ok(TrustAnchors {
            roots: Arc::new(roots),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// A client configuration: TLS 1.3 only when `tls13_only` (RET-5), else 1.2+ (SEC-5).
    pub(crate) fn client_config(&self, tls13_only: bool, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // No session resumption across hosts is needed; keep the default in-memory cache.
        Arc::new(config)
    }
}

/// Read every certificate from a PEM file (`--ca-file`).
pub fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| ClientError::TrustAnchor(format!("cannot read {}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| ClientError::TrustAnchor(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ClientError::TrustAnchor(format!(
            "{} contains no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// How a TLS handshake failed, in the terms of [`pacc_proto::fetch::FetchError`].
pub(crate) enum TlsFailure {
    Version(String),
    Untrusted(String),
    Name(String),
    Expired(String),
    Other(String),
}

/// Classify the error tokio-rustls returned from a handshake.
pub(crate) fn classify_handshake_error(e: &std::io::Error) -> TlsFailure {
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return TlsFailure::Other(e.to_string());
    };
    let text = err.to_string();
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer
            | CertificateError::BadSignature
            | CertificateError::UnknownRevocationStatus
            | CertificateError::Revoked
            | CertificateError::InvalidPurpose => TlsFailure::Untrusted(text),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::Name(text)
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired(text),
            _ => TlsFailure::Untrusted(text),
        },
        rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
        | rustls::Error::PeerIncompatible(_) => TlsFailure::Version(text),
        _ => TlsFailure::Other(text),
    }
}

/// `TLSv1_3` → `TLSv1.3`.
pub(crate) fn version_name(v: Option<rustls::ProtocolVersion>) -> String {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    }
}

/// The negotiated version and cipher of a session.
pub(crate) fn tls_info(session: &rustls::ClientConnection) -> pacc_proto::fetch::TlsInfo {
    pacc_proto::fetch::TlsInfo {
        version: version_name(session.protocol_version()),
        cipher: session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
    }
}
