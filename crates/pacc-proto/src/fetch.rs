//! What an HTTPS fetch (configuration document, later MTA-STS policy) can come back with,
//! as data, and how each failure is classified (RET-12).
//!
//! The shell performs the fetch with the rules of RET-3 … RET-10 (TLS 1.3, no redirects,
//! 200 only, capped body, deadlines) and reports the result in these terms; the machine
//! decides what it means.

use serde::Serialize;

/// The most body bytes the client accepts (RET-9).
pub const MAX_BODY: usize = 64 * 1024;

/// TLS parameters of a completed handshake, for the validation trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1.3`.
    pub version: String,
    /// Cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// When the server's certificate expires (Unix seconds), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_expires: Option<i64>,
}

/// A successful (HTTP 200) fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchedBody {
    /// The entity bytes after removing transfer- and content-coding (RET-8, Q-22).
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// `Content-Type` as sent.
    pub content_type: Option<String>,
    /// `Content-Encoding` as sent (the bytes are already decoded).
    pub content_encoding: Option<String>,
    /// The TLS handshake.
    pub tls: TlsInfo,
    /// The server address connected to.
    pub peer: String,
}

impl FetchedBody {
    /// A body as a TLS 1.3 server would have delivered it, for examples and unit tests.
    pub fn test_json(bytes: Vec<u8>) -> FetchedBody {
        FetchedBody {
            bytes,
            content_type: Some("application/json".to_owned()),
            content_encoding: None,
            tls: TlsInfo {
                version: "TLSv1.3".to_owned(),
                cipher: "TLS13_AES_128_GCM_SHA256".to_owned(),
                certificate_expires: None,
            },
            peer: "192.0.2.1:443".to_owned(),
        }
    }
}

/// The three classes of RET-12: they decide whether the MX fallback may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// Nothing is published here: the MX fallback may run.
    Absent,
    /// Something is published but fails integrity or security checks: stop, no fallback.
    Integrity,
    /// Could not decide now (5xx, SERVFAIL, timeouts): retry later.
    Temporary,
}

/// Why a fetch failed. Each variant maps to one stable `kind` string and one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FetchError {
    /// The host name does not exist or has no address (NXDOMAIN/NODATA).
    #[error("{host} does not exist in DNS (no address records)")]
    NoSuchHost {
        /// The host looked up.
        host: String,
    },
    /// The address lookup failed temporarily (SERVFAIL, timeout).
    #[error("address lookup for {host} failed: {detail}")]
    DnsTemporary {
        /// The host looked up.
        host: String,
        /// Resolver's words.
        detail: String,
    },
    /// The host is an alias whose CNAME chain loops (never "absent", see
    /// [`crate::discovery::DnsFailure::CnameLoop`]).
    #[error("address lookup for {host} failed: the CNAME chain loops: {}", chain.join(" -> "))]
    CnameLoop {
        /// The host looked up.
        host: String,
        /// The names, from the host to the repeated one.
        chain: Vec<String>,
    },
    /// The host's CNAME chain is longer than the bound.
    #[error("address lookup for {host} failed: the CNAME chain is longer than {limit} aliases")]
    CnameChainTooLong {
        /// The host looked up.
        host: String,
        /// The names followed.
        chain: Vec<String>,
        /// The bound.
        limit: usize,
    },
    /// Every address refused or could not be reached.
    #[error("could not connect to {host}: {detail}")]
    Connect {
        /// The host.
        host: String,
        /// What the socket said.
        detail: String,
    },
    /// No address accepted a connection before the connect deadline.
    #[error("connecting to {host} timed out")]
    ConnectTimeout {
        /// The host.
        host: String,
    },
    /// The server does not speak an acceptable TLS version (RET-5: 1.3 here).
    #[error("{host} does not offer {required} (it cannot be used for this fetch): {detail}")]
    TlsVersion {
        /// The host.
        host: String,
        /// The minimum we asked for.
        required: String,
        /// The TLS library's words.
        detail: String,
    },
    /// The certificate chain does not lead to a trusted root.
    #[error("the certificate of {host} is not issued by a trusted authority: {detail}")]
    CertificateUntrusted {
        /// The host.
        host: String,
        /// Details.
        detail: String,
    },
    /// The certificate is not valid for the host name.
    #[error("the certificate of {host} is not valid for that name: {detail}")]
    CertificateName {
        /// The host.
        host: String,
        /// Details.
        detail: String,
    },
    /// The certificate has expired or is not yet valid.
    #[error("the certificate of {host} is expired or not yet valid: {detail}")]
    CertificateExpired {
        /// The host.
        host: String,
        /// Details.
        detail: String,
    },
    /// Any other certificate or TLS handshake failure.
    #[error("TLS handshake with {host} failed: {detail}")]
    Tls {
        /// The host.
        host: String,
        /// Details.
        detail: String,
    },
    /// The server answered with a redirect, which is never followed (RET-6).
    #[error("{url} answered {status} redirecting to {}; redirects are not followed", location.as_deref().unwrap_or("nowhere"))]
    Redirect {
        /// The URL fetched.
        url: String,
        /// 3xx status.
        status: u16,
        /// `Location`, if any.
        location: Option<String>,
    },
    /// Any status other than 200 or a redirect (RET-6).
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is larger than the cap (RET-9); it was not read past the cap.
    #[error("the body of {url} is larger than {limit} bytes{}; not read further", declared.map(|d| format!(" (Content-Length {d})")).unwrap_or_default())]
    BodyTooLarge {
        /// The URL fetched.
        url: String,
        /// The cap.
        limit: usize,
        /// `Content-Length`, if declared.
        declared: Option<u64>,
    },
    /// A content-coding we cannot or will not decode, or a corrupt one.
    #[error("the body of {url} has an unusable Content-Encoding: {detail}")]
    ContentEncoding {
        /// The URL fetched.
        url: String,
        /// Details.
        detail: String,
    },
    /// The server broke HTTP (garbage, closed mid-response).
    #[error("HTTP exchange with {host} failed: {detail}")]
    Protocol {
        /// The host.
        host: String,
        /// Details.
        detail: String,
    },
    /// A step did not finish before its deadline.
    #[error("{host} did not answer in time ({stage})")]
    Timeout {
        /// The host.
        host: String,
        /// Which stage: `tls-handshake`, `response`, `body`.
        stage: String,
    },
}

impl FetchError {
    /// The stable kind string (also the JSON `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::NoSuchHost { .. } => "no-such-host",
            FetchError::DnsTemporary { .. } => "dns-temporary",
            FetchError::CnameLoop { .. } => "cname-loop",
            FetchError::CnameChainTooLong { .. } => "cname-chain-too-long",
            FetchError::Connect { .. } => "connect-failed",
            FetchError::ConnectTimeout { .. } => "connect-timeout",
            FetchError::TlsVersion { .. } => "tls-version",
            FetchError::CertificateUntrusted { .. } => "certificate-untrusted",
            FetchError::CertificateName { .. } => "certificate-name",
            FetchError::CertificateExpired { .. } => "certificate-expired",
            FetchError::Tls { .. } => "tls-failed",
            FetchError::Redirect { .. } => "redirect",
            FetchError::Status { .. } => "http-status",
            FetchError::BodyTooLarge { .. } => "body-too-large",
            FetchError::ContentEncoding { .. } => "content-encoding",
            FetchError::Protocol { .. } => "http-protocol",
            FetchError::Timeout { .. } => "timeout",
        }
    }

    /// RET-12 classification. Absent: nothing there (NXDOMAIN, refused, connect timeout,
    /// 404/410, redirects per H3, other 4xx). Integrity/security: a TLS or certificate
    /// failure, an oversized or undecodable body. Temporary: 5xx, 429, DNS failures, a
    /// server that stops answering mid-exchange.
    pub fn class(&self) -> FailureClass {
        match self {
            FetchError::NoSuchHost { .. }
            | FetchError::Connect { .. }
            | FetchError::ConnectTimeout { .. }
            | FetchError::Redirect { .. } => FailureClass::Absent,
            FetchError::Status { status, .. } => match status {
                429 | 500..=599 => FailureClass::Temporary,
                _ => FailureClass::Absent,
            },
            FetchError::TlsVersion { .. }
            | FetchError::CertificateUntrusted { .. }
            | FetchError::CertificateName { .. }
            | FetchError::CertificateExpired { .. }
            | FetchError::Tls { .. }
            | FetchError::BodyTooLarge { .. }
            | FetchError::ContentEncoding { .. } => FailureClass::Integrity,
            FetchError::DnsTemporary { .. }
            | FetchError::CnameLoop { .. }
            | FetchError::CnameChainTooLong { .. }
            | FetchError::Protocol { .. }
            | FetchError::Timeout { .. } => FailureClass::Temporary,
        }
    }
}

/// A fetch result as the shell reports it.
pub type FetchResult = Result<FetchedBody, FetchError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_ret_12() {
        let s = |status| FetchError::Status {
            url: "u".into(),
            status,
        };
        assert_eq!(s(404).class(), FailureClass::Absent);
        assert_eq!(s(410).class(), FailureClass::Absent);
        assert_eq!(s(503).class(), FailureClass::Temporary);
        assert_eq!(s(429).class(), FailureClass::Temporary);
        let tls = FetchError::TlsVersion {
            host: "h".into(),
            required: "TLSv1.3".into(),
            detail: String::new(),
        };
        assert_eq!(tls.class(), FailureClass::Integrity);
        assert_eq!(tls.kind(), "tls-version");
        let r = FetchError::Redirect {
            url: "u".into(),
            status: 301,
            location: Some("https://elsewhere.example/".into()),
        };
        assert_eq!(r.class(), FailureClass::Absent);
        assert!(r.to_string().contains("not followed"));
    }
}
