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
///
/// The system's roots are read once, on a thread of their own started when the client is
/// built, so that reading and parsing them runs alongside the first DNS questions instead
/// of before them; the first TLS handshake waits for them if it has to.
#[derive(Debug, Clone)]
pub(crate) struct TrustAnchors {
    loaded: Arc<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    roots: std::sync::OnceLock<Arc<RootCertStore>>,
    ready: tokio::sync::Notify,
}

/// Where Linux and BSD distributions keep their one bundle of every trusted root.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
];

/// The system's roots, read once: the one bundle file when there is one (`SSL_CERT_FILE`,
/// else the distribution's; the directory of hashed links beside it holds the same
/// certificates again, so it is not read as well), else whatever rustls-native-certs finds
/// (also a directory given by `SSL_CERT_DIR` alone).
fn system_roots() -> Vec<CertificateDer<'static>> {
    let read = |path: &std::ffi::OsStr| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(path)
            .map(|certs| certs.filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    let from_env = std::env::var_os("SSL_CERT_FILE");
    let dir_only = from_env.is_none() && std::env::var_os("SSL_CERT_DIR").is_some();
    let candidates: Vec<std::ffi::OsString> = match from_env {
        Some(f) => vec![f],
        None if dir_only => Vec::new(),
        None => BUNDLES.iter().map(std::ffi::OsString::from).collect(),
    };
    for c in candidates {
        let certs = read(&c);
        if !certs.is_empty() {
            return certs;
        }
    }
    rustls_native_certs::load_native_certs().certs
}

impl TrustAnchors {
    pub(crate) fn new(
        system: bool,
        extra: &[CertificateDer<'static>],
    ) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in extra {
            roots.add(cert.clone()).map_err(|e| {
                ClientError::TrustAnchor(format!("not a usable CA certificate: {e}"))
            })?;
        }
        let loaded = Arc::new(Loaded::default());
        if system {
            let l = loaded.clone();
            let spawned = std::thread::Builder::new()
                .name("pacc-trust-anchors".into())
                .spawn(move || {
                    // Unreadable individual system certificates are skipped, as every TLS
                    // client does.
                    roots.add_parsable_certificates(system_roots());
                    let _ = l.roots.set(Arc::new(roots));
                    l.ready.notify_waiters();
                });
            if let Err(e) = spawned {
                return Err(ClientError::TrustAnchor(format!(
                    "cannot start reading the system's roots: {e}"
                )));
            }
        } else {
            let _ = loaded.roots.set(Arc::new(roots));
        }
        Ok(TrustAnchors { loaded })
    }

    /// The roots, once read.
    pub(crate) async fn roots(&self) -> Arc<RootCertStore> {
        loop {
            let notified = self.loaded.ready.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.loaded.roots.get() {
                return r.clone();
            }
            notified.await;
        }
    }

    /// A client configuration: TLS 1.3 only when `tls13_only` (RET-5), else 1.2+ (SEC-5);
    /// `None` when there is no trust anchor at all.
    pub(crate) async fn client_config(
        &self,
        tls13_only: bool,
        alpn: &[&[u8]],
    ) -> Option<Arc<ClientConfig>> {
        let roots = self.roots().await;
        if roots.is_empty() {
            return None;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // No session resumption across hosts is needed; keep the default in-memory cache.
        Some(Arc::new(config))
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
        certificate_expires: session
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, c)| c.validity().not_after.timestamp()),
    }
}
