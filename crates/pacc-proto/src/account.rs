//! A saved account (A-5, V-1, SEC-7): what setup verified and proved to work, kept so that
//! other programs can use it. It holds no secret: passwords and tokens live in the system
//! keyring, referenced by the address.

use serde::{Deserialize, Serialize};

use crate::auth::select::Method;
use crate::document::{Config, Endpoint, ServiceKind};

/// The file format version.
pub const ACCOUNT_VERSION: u32 = 1;

/// One verified, signed-in account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// [`ACCOUNT_VERSION`].
    pub version: u32,
    /// The address as typed (also the username, W-1).
    pub address: String,
    /// The provider's name from the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// When it was saved (seconds since the Unix epoch).
    pub saved_at: u64,
    /// Where the settings came from and what verified them.
    pub source: Source,
    /// The verified document, exactly as served (the digest covers these bytes).
    pub document: String,
    /// Every service that signed in, and how.
    pub services: Vec<SavedService>,
    /// The OAuth client, when a token was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<SavedOAuth>,
    /// The hosts the user confirmed (SEC-1); a changed host needs approval again (SEC-7).
    pub confirmed_hosts: Vec<String>,
    /// Extra trust anchors (PEM files) the setup used, for exports and re-discovery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_files: Vec<String>,
    /// The DNS server the setup used when it was not the system's (`IP:PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// Which secrets were stored, and where.
    pub secrets: SecretsInfo,
}

/// Where the settings came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `well-known` or `mx-fallback`.
    pub method: String,
    /// The URL the bytes came from.
    pub url: String,
    /// The TXT record that verified them.
    pub record: String,
    /// Its algorithm.
    pub algorithm: String,
}

/// One service as it was signed in to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedService {
    /// `imap`, `submit`, `caldav`…
    pub service: String,
    /// Text protocols: the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Text protocols: the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Text protocols: `implicit` or `starttls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// HTTP services: the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `oauth` or `password`.
    pub method: String,
    /// The mechanism that worked (`PLAIN`, `OAUTHBEARER`, `Basic`…), A-5.
    pub mechanism: String,
}

impl SavedService {
    /// From a configured service and the method that worked.
    pub fn new(kind: ServiceKind, endpoint: &Endpoint, method: &Method) -> Self {
        let (method, mechanism) = match method {
            Method::Oauth { mechanism } => ("oauth", mechanism.clone()),
            Method::Password { mechanism } => ("password", mechanism.clone()),
        };
        let (host, port, tls, url) = match endpoint {
            Endpoint::Host { host, port, tls } => (
                Some(host.to_string()),
                Some(*port),
                Some(tls.to_string()),
                None,
            ),
            Endpoint::Url { url } => (None, None, None, Some(url.to_string())),
        };
        SavedService {
            service: kind.key().to_owned(),
            host,
            port,
            tls,
            url,
            method: method.to_owned(),
            mechanism,
        }
    }

    /// Whether it signs in with a token.
    pub fn uses_oauth(&self) -> bool {
        self.method == "oauth"
    }

    /// `host:port` or the URL.
    pub fn target(&self) -> String {
        match (&self.host, self.port, &self.url) {
            (Some(h), Some(p), _) => format!("{h}:{p}"),
            (_, _, Some(u)) => u.clone(),
            _ => String::new(),
        }
    }
}

/// The OAuth client of an account (no token: those are in the keyring).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOAuth {
    /// The issuer.
    pub issuer: String,
    /// The registered client id.
    pub client_id: String,
    /// The token endpoint (for refreshing, O-11).
    pub token_endpoint: String,
    /// The scopes granted.
    pub scope: String,
    /// The resource indicators the token was requested for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// When the cached access token expires (seconds since the epoch), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<u64>,
}

/// Which secrets are stored where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SecretsInfo {
    /// `keyring` or `none`.
    pub store: String,
    /// A password is stored.
    pub password: bool,
    /// A refresh token is stored.
    pub refresh_token: bool,
}

/// What changed between the saved configuration and the one published now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The service.
    pub service: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Before (target), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// After (target), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

fn targets(config: &Config) -> Vec<(String, String)> {
    config
        .protocols
        .iter()
        .map(|s| {
            let t = match &s.endpoint {
                Endpoint::Host { host, port, .. } => format!("{host}:{port}"),
                Endpoint::Url { url } => url.to_string(),
            };
            (s.kind.key().to_owned(), t)
        })
        .collect()
}

/// The services added, removed or moved between two configurations.
pub fn diff(before: &Config, after: &Config) -> Vec<Change> {
    let (b, a) = (targets(before), targets(after));
    let mut out = Vec::new();
    for (k, t) in &b {
        match a.iter().find(|(k2, _)| k2 == k) {
            None => out.push(Change {
                service: k.clone(),
                change: "removed",
                before: Some(t.clone()),
                after: None,
            }),
            Some((_, t2)) if t2 != t => out.push(Change {
                service: k.clone(),
                change: "changed",
                before: Some(t.clone()),
                after: Some(t2.clone()),
            }),
            Some(_) => {}
        }
    }
    for (k, t) in &a {
        if !b.iter().any(|(k2, _)| k2 == k) {
            out.push(Change {
                service: k.clone(),
                change: "added",
                before: None,
                after: Some(t.clone()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_every_change() {
        let a = Config::from_bytes(br#"{"protocols":{"imap":{"host":"imap.example.com"},"submit":{"host":"smtp.example.com"}}}"#).unwrap().config;
        let b = Config::from_bytes(br#"{"protocols":{"imap":{"host":"mail.example.com"},"carddav":{"url":"https://dav.example.com/c/"}}}"#).unwrap().config;
        let d = diff(&a, &b);
        let summary: Vec<(&str, &str)> = d.iter().map(|c| (c.service.as_str(), c.change)).collect();
        assert_eq!(
            summary,
            [
                ("imap", "changed"),
                ("submit", "removed"),
                ("carddav", "added")
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
