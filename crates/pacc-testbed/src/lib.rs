//! # pacc-testbed: a hermetic local internet for tests and the offline demo
//!
//! Real servers on loopback, no mocks: an authoritative DNS server (hickory-server) that can
//! publish any name, a certificate authority generated at test time (rcgen), and HTTPS
//! servers (rustls + hyper) on `127.x.y.z:443` whose behaviour each test controls (TLS
//! versions, certificate, status, body, redirects, delays, stalls).
//!
//! Each [`Testbed`] and each server takes its own loopback address, so tests run in
//! parallel, in one process or many. Binding ports 53 and 443 needs root (or
//! `CAP_NET_BIND_SERVICE`); the error says so.

mod addr;
pub mod browser;
mod dns;
pub mod embedding;
pub mod full;
mod https;
pub mod peers;
mod pki;
mod scripted;
pub mod vectors;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

pub use dns::{DnsMode, DnsServer, HostileDns, SilentDns};
/// DNS record types, for [`DnsServer::remove`].
pub use hickory_proto::rr::RecordType;
pub use https::{Behaviour, HttpsServer, RecordedRequest, Reply, Stats};
pub use pki::{CertKind, Leaf, TestCa, TlsVersions, server_config};
pub use scripted::{ScriptStep, ScriptedServer};

/// Why the testbed could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestbedError {
    /// Binding a socket failed.
    #[error("cannot bind a loopback socket: {0}")]
    Bind(std::io::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Pki(String),
    /// TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A DNS name or record was unusable.
    #[error("DNS: {0}")]
    Dns(String),
    /// Writing a temporary file or running a program failed.
    #[error("I/O: {0}")]
    Io(std::io::Error),
    /// A real peer (Dovecot, Postfix, Radicale…) could not be started.
    #[error("peer: {0}")]
    Peer(String),
}

/// Aborts a spawned task when dropped, so servers stop with their handle.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A DNS server, a CA, and helpers to publish PACC providers.
pub struct Testbed {
    /// The authoritative DNS server.
    pub dns: DnsServer,
    /// The certificate authority.
    pub ca: TestCa,
    ca_file: tempfile::NamedTempFile,
}

impl Testbed {
    /// Start the DNS server and generate the CA.
    pub async fn start() -> Result<Self, TestbedError> {
        let dns = DnsServer::start().await?;
        let ca = TestCa::new("pacc testbed CA")?;
        let mut ca_file = tempfile::Builder::new()
            .prefix("pacc-testbed-ca-")
            .suffix(".pem")
            .tempfile()
            .map_err(TestbedError::Io)?;
        ca_file
            .write_all(ca.cert_pem().as_bytes())
            .map_err(TestbedError::Io)?;
        Ok(Testbed { dns, ca, ca_file })
    }

    /// The DNS server's address (`--dns`).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns.addr()
    }

    /// A PEM file with the CA certificate (`--ca-file`), removed when the testbed is dropped.
    pub fn ca_file(&self) -> &Path {
        self.ca_file.path()
    }

    /// Start an HTTPS server for `names` and publish an A record for each name.
    pub async fn https_host(
        &self,
        names: &[&str],
        behaviour: Behaviour,
    ) -> Result<HttpsServer, TestbedError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let server = HttpsServer::start(&self.ca, &names, behaviour).await?;
        if let IpAddr::V4(ip) = server.addr().ip() {
            for n in &names {
                self.dns.add_a(n, ip).await?;
            }
        }
        Ok(server)
    }

    /// Serve `document` at `https://ua-auto-config.<domain>/…` with `behaviour`'s TLS and
    /// certificate settings (the reply is replaced by the document).
    pub async fn serve_document(
        &self,
        domain: &str,
        document: &[u8],
    ) -> Result<HttpsServer, TestbedError> {
        self.https_host(
            &[&format!("ua-auto-config.{domain}")],
            Behaviour::new(Reply::json(document.to_vec())),
        )
        .await
    }

    /// Publish one TXT RR at `_ua-auto-config.<domain>` (one character-string).
    pub async fn publish_txt(&self, domain: &str, record: &str) -> Result<(), TestbedError> {
        self.dns
            .add_txt(&format!("_ua-auto-config.{domain}"), &[record.as_bytes()])
            .await
    }

    /// A complete, valid provider: the document served over TLS 1.3 and its SHA-256
    /// digest published.
    pub async fn provider(
        &self,
        domain: &str,
        document: &[u8],
    ) -> Result<HttpsServer, TestbedError> {
        let server = self.serve_document(domain, document).await?;
        self.publish_txt(domain, &sha256_record(document)).await?;
        Ok(server)
    }
}

impl Testbed {
    /// Publish an MTA-STS policy for `domain`: `_mta-sts.<domain> TXT "v=STSv1; id=<id>"` and
    /// `https://mta-sts.<domain>/.well-known/mta-sts.txt` serving `policy` as text/plain.
    pub async fn mta_sts(
        &self,
        domain: &str,
        id: &str,
        policy: &str,
    ) -> Result<HttpsServer, TestbedError> {
        let server = self
            .https_host(
                &[&format!("mta-sts.{domain}")],
                Behaviour::new(Reply::Body {
                    status: 200,
                    body: policy.as_bytes().to_vec().into(),
                    headers: vec![("content-type".into(), "text/plain".into())],
                }),
            )
            .await?;
        self.dns
            .add_txt(
                &format!("_mta-sts.{domain}"),
                &[format!("v=STSv1; id={id};").as_bytes()],
            )
            .await?;
        Ok(server)
    }

    /// An enforcing policy listing `mx` patterns.
    pub fn enforce_policy(mx: &[&str]) -> String {
        let mut p = String::from("version: STSv1\r\nmode: enforce\r\n");
        for m in mx {
            p.push_str(&format!("mx: {m}\r\n"));
        }
        p.push_str("max_age: 86400\r\n");
        p
    }
}

/// A loopback address on which `ports` are free now, for servers that bind by themselves.
pub async fn free_loopback_ip(ports: &[u16]) -> Result<std::net::Ipv4Addr, TestbedError> {
    addr::free_ip(ports).await.map_err(TestbedError::Bind)
}

/// `v=UAAC1; a=sha256; d=<base64>` for `bytes`, computed here independently of pacc.
pub fn sha256_record(bytes: &[u8]) -> String {
    vectors::record_for("sha256", bytes)
}
