//! A test certificate authority generated at test time (rcgen), and server TLS configs.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::TestbedError;

/// A certificate authority that exists only for this test run.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

/// Which certificate a server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertKind {
    /// Issued by the testbed CA for the server's names.
    #[default]
    Valid,
    /// Issued by the testbed CA, but for `other.invalid` only.
    WrongName,
    /// For the right names, issued by a CA nobody trusts.
    UntrustedCa,
    /// Self-signed for the right names.
    SelfSigned,
    /// For the right names by the testbed CA, expired yesterday.
    Expired,
    /// For the right names by the testbed CA, valid for this many more days: the end of a
    /// certificate issued 80 days ago (so one with a few days left is due for renewal).
    ValidForDays(i64),
}

/// A leaf certificate and its key.
pub struct Leaf {
    /// The certificate chain (leaf first).
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
    /// The leaf in PEM.
    pub cert_pem: String,
    /// The key in PEM (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// Generate a fresh CA (EC P-256).
    pub fn new(name: &str) -> Result<Self, TestbedError> {
        let key = KeyPair::generate().map_err(pki_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        let cert = params.self_signed(&key).map_err(pki_err)?;
        Ok(TestCa {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (DER), to add as a trust anchor.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate (PEM), for `--ca-file`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issue a server certificate of `kind` for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[String], kind: CertKind) -> Result<Leaf, TestbedError> {
        let key = KeyPair::generate().map_err(pki_err)?;
        let sans: Vec<String> = match kind {
            CertKind::WrongName => vec!["other.invalid".to_owned()],
            _ => names.to_vec(),
        };
        let mut params = CertificateParams::new(sans).map_err(pki_err)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        if kind == CertKind::Expired {
            params.not_before = now - Duration::days(30);
            params.not_after = now - Duration::days(1);
        } else if let CertKind::ValidForDays(days) = kind {
            params.not_before = now - Duration::days(80);
            params.not_after = now + Duration::days(days);
        } else {
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(90);
        }
        let cert = match kind {
            CertKind::SelfSigned => params.self_signed(&key).map_err(pki_err)?,
            CertKind::UntrustedCa => {
                let rogue = TestCa::new("pacc rogue CA")?;
                params.signed_by(&key, &rogue.issuer).map_err(pki_err)?
            }
            _ => params.signed_by(&key, &self.issuer).map_err(pki_err)?,
        };
        Ok(Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Which TLS versions a server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersions {
    /// TLS 1.3 only.
    #[default]
    Tls13,
    /// TLS 1.2 only.
    Tls12,
    /// Both.
    Both,
}

/// A rustls server configuration presenting `leaf`.
pub fn server_config(
    leaf: &Leaf,
    versions: TlsVersions,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TestbedError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let v: &[&rustls::SupportedProtocolVersion] = match versions {
        TlsVersions::Tls13 => &[&rustls::version::TLS13],
        TlsVersions::Tls12 => &[&rustls::version::TLS12],
        TlsVersions::Both => rustls::ALL_VERSIONS,
    };
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(v)
        .map_err(|e| TestbedError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .map_err(|e| TestbedError::Tls(e.to_string()))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

fn pki_err(e: rcgen::Error) -> TestbedError {
    TestbedError::Pki(e.to_string())
}
