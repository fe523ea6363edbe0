//! The configuration document (J-1 … J-16, spec §2.4).
//!
//! [`Config::from_bytes`] turns the digest-verified bytes into a checked [`Config`]:
//! lenient about what it does not know (unknown members are ignored, J-2), strict about what
//! it reads (https-only URLs without explicit port, host names rather than IP literals,
//! length limits, no duplicate member names). A known member of the wrong shape is dropped
//! with a [`Finding`] that names its JSON path (J-14); the document fails only when it is
//! not JSON, is ambiguous, or leaves nothing usable.

mod path;
mod strict_json;

use std::fmt;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

pub use path::JsonPath;

use crate::name::Domain;

/// Longest URL we accept anywhere in the document.
const MAX_URL_LEN: usize = 2048;
/// Longest free-text value (names, media types, contact URIs) we keep.
const MAX_TEXT_LEN: usize = 1024;
/// Most entries we keep from any array (logos, contacts).
const MAX_ARRAY_ITEMS: usize = 16;

/// The services PACC defines, in the order the document model and all output use (J-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// JMAP session resource (RFC 8620).
    Jmap,
    /// IMAP, port 993, implicit TLS.
    Imap,
    /// POP3, port 995, implicit TLS.
    Pop3,
    /// Message submission, port 465, implicit TLS (key `submit`; `smtp` in draft -02).
    Submit,
    /// CalDAV context URL.
    Caldav,
    /// CardDAV context URL.
    Carddav,
    /// WebDAV context URL.
    Webdav,
    /// ManageSieve, port 4190, mandatory STARTTLS.
    Managesieve,
}

impl ServiceKind {
    /// Every kind, in document order.
    pub const ALL: [ServiceKind; 8] = [
        ServiceKind::Jmap,
        ServiceKind::Imap,
        ServiceKind::Pop3,
        ServiceKind::Submit,
        ServiceKind::Caldav,
        ServiceKind::Carddav,
        ServiceKind::Webdav,
        ServiceKind::Managesieve,
    ];

    /// The document key (`submit` for submission; `smtp` is accepted on input, J-16).
    pub fn key(self) -> &'static str {
        match self {
            ServiceKind::Jmap => "jmap",
            ServiceKind::Imap => "imap",
            ServiceKind::Pop3 => "pop3",
            ServiceKind::Submit => "submit",
            ServiceKind::Caldav => "caldav",
            ServiceKind::Carddav => "carddav",
            ServiceKind::Webdav => "webdav",
            ServiceKind::Managesieve => "managesieve",
        }
    }

    /// A human name.
    pub fn label(self) -> &'static str {
        match self {
            ServiceKind::Jmap => "JMAP",
            ServiceKind::Imap => "IMAP",
            ServiceKind::Pop3 => "POP3",
            ServiceKind::Submit => "Submission",
            ServiceKind::Caldav => "CalDAV",
            ServiceKind::Carddav => "CardDAV",
            ServiceKind::Webdav => "WebDAV",
            ServiceKind::Managesieve => "ManageSieve",
        }
    }

    /// HTTP-based services carry a URL (J-4); the others a host (J-7).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            ServiceKind::Jmap | ServiceKind::Caldav | ServiceKind::Carddav | ServiceKind::Webdav
        )
    }

    /// The implied port and TLS mode of a text protocol (J-7, RFC 8314, Q-8); `None` for
    /// HTTP services, which always use 443 with TLS.
    pub fn transport(self) -> Option<(u16, TlsMode)> {
        match self {
            ServiceKind::Imap => Some((993, TlsMode::Implicit)),
            ServiceKind::Pop3 => Some((995, TlsMode::Implicit)),
            ServiceKind::Submit => Some((465, TlsMode::Implicit)),
            ServiceKind::Managesieve => Some((4190, TlsMode::StartTls)),
            _ => None,
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// How TLS starts on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (RFC 8314).
    Implicit,
    /// Plain greeting, then a mandatory STARTTLS before anything else (ManageSieve, Q-8).
    #[serde(rename = "starttls")]
    StartTls,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Implicit => "implicit TLS",
            TlsMode::StartTls => "STARTTLS (required)",
        })
    }
}

/// A checked `https` URL: no userinfo, no fragment, no port other than 443, a DNS host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    url: String,
    host: Domain,
}

impl HttpsUrl {
    /// Check and normalise `u` (J-4, Q-16); see [`check_url`] for the warning.
    pub fn parse(u: &str) -> Result<Self, String> {
        check_url(u).map(|(url, _)| url)
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host name.
    pub fn host(&self) -> &Domain {
        &self.host
    }

    /// The path (with query), `/` at least.
    pub fn path(&self) -> &str {
        let rest = &self.url["https://".len()..];
        rest.find('/').map_or("/", |i| &rest[i..])
    }
}

impl Serialize for HttpsUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.url)
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Where a service is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Endpoint {
    /// A text protocol: host plus the implied port and TLS mode (J-7).
    Host {
        /// The server's host name.
        host: Domain,
        /// The implied port.
        port: u16,
        /// The implied TLS mode.
        tls: TlsMode,
    },
    /// An HTTP service's URL (J-4 … J-6).
    Url {
        /// The URL.
        url: HttpsUrl,
    },
}

impl Endpoint {
    /// The host that would receive credentials for this service.
    pub fn host(&self) -> Domain {
        match self {
            Endpoint::Host { host, .. } => host.clone(),
            Endpoint::Url { url } => url.host().clone(),
        }
    }
}

/// One usable service entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Which protocol.
    pub kind: ServiceKind,
    /// Where.
    pub endpoint: Endpoint,
}

/// The usable entries of `protocols`, in [`ServiceKind`] order, each kind at most once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Protocols(Vec<Service>);

impl Protocols {
    /// All usable services.
    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.0.iter()
    }

    /// The entry for one kind.
    pub fn get(&self, kind: ServiceKind) -> Option<&Service> {
        self.0.iter().find(|s| s.kind == kind)
    }

    /// How many usable services.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No usable service at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Protocols {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for svc in &self.0 {
            m.serialize_entry(svc.kind.key(), &svc.endpoint)?;
        }
        m.end()
    }
}

/// The `authentication` block (J-8 … J-10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authentication {
    /// Whether passwords (full address as username) are accepted (J-9).
    pub password: bool,
    /// The OAuth public-client profile's issuer, if published and valid.
    #[serde(rename = "oauth-public", skip_serializing_if = "Option::is_none")]
    pub oauth_public: Option<OAuthPublic>,
}

/// `authentication.oauth-public`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthPublic {
    /// The RFC 8414 issuer identifier, exactly as published (J-10).
    pub issuer: String,
}

/// `info` (J-11 … J-13).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Info {
    /// `info.provider`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// `info.help`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<Help>,
}

/// `info.provider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provider {
    /// The provider's name (J-11).
    pub name: String,
    /// A short name (J-11).
    #[serde(rename = "shortName", skip_serializing_if = "Option::is_none")]
    pub short_name: Option<String>,
    /// Logos (J-12). Untrusted presentation data (SEC-8).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logo: Vec<Logo>,
}

/// One logo (J-12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Logo {
    /// Where the image is.
    pub url: HttpsUrl,
    /// Its media type.
    #[serde(rename = "content-type")]
    pub content_type: String,
    /// Width in pixels (raster images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels (raster images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// `info.help` (J-13).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Help {
    /// End-user documentation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation: Option<HttpsUrl>,
    /// Documentation for client developers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub developer: Option<HttpsUrl>,
    /// Contact URIs for client developers (not for end users).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contact: Vec<String>,
}

/// Which draft spelling of the submission key the document used (J-16, Q-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Spelling {
    /// `submit` (draft -03 and later).
    Submit,
    /// `smtp` (drafts -01/-02).
    Smtp,
    /// Both keys present (`submit` wins).
    Both,
    /// No submission entry at all.
    None,
}

/// How serious a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Accepted as is; a producer may want to change it.
    Warning,
    /// Accepted by a tolerant client, but a producer must not publish it (checker: fail).
    Violation,
    /// The member was ignored (J-14).
    Dropped,
}

/// Something noticed while reading the document, with the JSON path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Where (`$.protocols.jmap.url`).
    pub path: String,
    /// How serious.
    pub level: Level,
    /// What, as a lowercase sentence fragment.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lvl = match self.level {
            Level::Warning => "warning",
            Level::Violation => "not allowed (tolerated)",
            Level::Dropped => "ignored",
        };
        write!(f, "{}: {lvl}: {}", self.path, self.message)
    }
}

/// Why a document cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// Not a single well-formed JSON value in UTF-8, or a duplicate member name (J-1, J-15).
    #[error("the document is not valid JSON: {0}")]
    Json(String),
    /// `$` is not an object.
    #[error("$: the document is not a JSON object")]
    NotObject,
    /// No `protocols` member (J-3).
    #[error("$.protocols: missing (it is required)")]
    NoProtocols,
    /// `protocols` is not an object.
    #[error("$.protocols: not an object")]
    ProtocolsNotObject,
    /// Nothing usable remains (J-12 vector, J-14).
    #[error("$.protocols: no usable service entry{}", summarize(.0))]
    NothingUsable(Vec<Finding>),
}

fn summarize(findings: &[Finding]) -> String {
    let dropped: Vec<String> = findings
        .iter()
        .filter(|f| f.level == Level::Dropped && f.path.starts_with("$.protocols"))
        .map(ToString::to_string)
        .collect();
    if dropped.is_empty() {
        String::new()
    } else {
        format!(" ({})", dropped.join("; "))
    }
}

/// A checked configuration document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// The usable services.
    pub protocols: Protocols,
    /// The authentication block, if present and usable (Q-6: absent means "unknown").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// Presentation data, if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Info>,
}

/// The result of reading a document: the config, what was noticed, and the spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedDocument {
    /// The checked configuration.
    pub config: Config,
    /// Everything noticed, in document order.
    pub findings: Vec<Finding>,
    /// Which submission key the provider used.
    pub spelling: Spelling,
}

impl Config {
    /// Read a document from its exact (digest-verified) bytes (RET-11: call this only after
    /// the digest matched).
    pub fn from_bytes(bytes: &[u8]) -> Result<ParsedDocument, DocumentError> {
        let value = strict_json::parse(bytes).map_err(DocumentError::Json)?;
        let Value::Object(top) = value else {
            return Err(DocumentError::NotObject);
        };
        let mut r = Reader::default();
        let root = JsonPath::root();
        let (protocols, spelling) = match top.get("protocols") {
            None => return Err(DocumentError::NoProtocols),
            Some(Value::Object(p)) => r.protocols(&root.key("protocols"), p),
            Some(_) => return Err(DocumentError::ProtocolsNotObject),
        };
        let authentication = top
            .get("authentication")
            .and_then(|v| r.authentication(&root.key("authentication"), v));
        let info = match top.get("info") {
            Some(v) => r.info(&root.key("info"), v),
            None => {
                r.push(
                    &root.key("info"),
                    Level::Violation,
                    "missing (required); clients show the email domain instead (J-11, Q-20)",
                );
                None
            }
        };
        if protocols.is_empty() {
            return Err(DocumentError::NothingUsable(r.findings));
        }
        Ok(ParsedDocument {
            config: Config {
                protocols,
                authentication,
                info,
            },
            findings: r.findings,
            spelling,
        })
    }

    /// Every host that would receive a credential: each service's host, then the OAuth
    /// issuer's host (SEC-1). Without duplicates, in document order.
    pub fn credential_hosts(&self) -> Vec<Domain> {
        let mut hosts: Vec<Domain> = Vec::new();
        let issuer = self
            .authentication
            .as_ref()
            .and_then(|a| a.oauth_public.as_ref())
            .and_then(|o| crate::name::url_host(&o.issuer));
        for h in self
            .protocols
            .iter()
            .map(|s| s.endpoint.host())
            .chain(issuer)
        {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        hosts
    }

    /// The provider's display name, if the document has one.
    pub fn provider_name(&self) -> Option<&str> {
        self.info
            .as_ref()
            .and_then(|i| i.provider.as_ref())
            .map(|p| p.name.as_str())
    }
}

#[derive(Default)]
struct Reader {
    findings: Vec<Finding>,
}

impl Reader {
    fn push(&mut self, path: &JsonPath, level: Level, message: impl Into<String>) {
        self.findings.push(Finding {
            path: path.to_string(),
            level,
            message: message.into(),
        });
    }

    fn protocols(&mut self, path: &JsonPath, p: &Map<String, Value>) -> (Protocols, Spelling) {
        let spelling = match (p.contains_key("submit"), p.contains_key("smtp")) {
            (true, true) => Spelling::Both,
            (true, false) => Spelling::Submit,
            (false, true) => Spelling::Smtp,
            (false, false) => Spelling::None,
        };
        let mut services = Vec::new();
        for kind in ServiceKind::ALL {
            let entry = if kind == ServiceKind::Submit {
                let submit = p
                    .get("submit")
                    .and_then(|v| self.service(&path.key("submit"), kind, v));
                let smtp = p
                    .get("smtp")
                    .and_then(|v| self.service(&path.key("smtp"), kind, v));
                match (submit, smtp) {
                    (Some(a), Some(b)) => {
                        if a.endpoint != b.endpoint {
                            self.push(
                                &path.key("smtp"),
                                Level::Warning,
                                format!(
                                    "differs from $.protocols.submit; using submit ({}) and ignoring smtp ({}) (J-16)",
                                    a.endpoint.host(),
                                    b.endpoint.host()
                                ),
                            );
                        }
                        Some(a)
                    }
                    (a, b) => a.or(b),
                }
            } else {
                p.get(kind.key())
                    .and_then(|v| self.service(&path.key(kind.key()), kind, v))
            };
            services.extend(entry);
        }
        (Protocols(services), spelling)
    }

    fn service(&mut self, path: &JsonPath, kind: ServiceKind, v: &Value) -> Option<Service> {
        let Value::Object(o) = v else {
            self.push(path, Level::Dropped, "not an object");
            return None;
        };
        let endpoint = if let Some((port, tls)) = kind.transport() {
            let hp = path.key("host");
            let host = match o.get("host") {
                Some(Value::String(h)) => self.host(&hp, h)?,
                Some(_) => {
                    self.push(&hp, Level::Dropped, "not a string");
                    return None;
                }
                None => {
                    self.push(&hp, Level::Dropped, "missing (required)");
                    return None;
                }
            };
            if o.contains_key("port") {
                self.push(
                    &path.key("port"),
                    Level::Warning,
                    format!(
                        "unknown member ignored: {} always uses port {port} with {tls} (J-7)",
                        kind.label()
                    ),
                );
            }
            Endpoint::Host { host, port, tls }
        } else {
            let up = path.key("url");
            let url = match o.get("url") {
                Some(Value::String(u)) => self.url(&up, u)?,
                Some(_) => {
                    self.push(&up, Level::Dropped, "not a string");
                    return None;
                }
                None => {
                    self.push(&up, Level::Dropped, "missing (required)");
                    return None;
                }
            };
            if kind != ServiceKind::Jmap && url.path() == "/" {
                self.push(
                    &up,
                    Level::Violation,
                    "a bare origin is not a DAV context path; clients start DAV discovery at / (J-6)",
                );
            }
            Endpoint::Url { url }
        };
        Some(Service { kind, endpoint })
    }

    fn host(&mut self, path: &JsonPath, h: &str) -> Option<Domain> {
        if h.starts_with('[') || h.parse::<std::net::IpAddr>().is_ok() {
            self.push(
                path,
                Level::Dropped,
                format!("'{h}' is an IP literal, not a host name (J-7)"),
            );
            return None;
        }
        if h.contains(':') || h.contains('/') {
            self.push(
                path,
                Level::Dropped,
                format!("'{h}' is not a bare host name (no port, scheme or path allowed)"),
            );
            return None;
        }
        match Domain::parse(h) {
            Ok(d) => {
                if d.as_str() != h {
                    self.push(path, Level::Warning, format!("'{h}' normalised to '{d}'"));
                }
                Some(d)
            }
            Err(e) => {
                self.push(path, Level::Dropped, e.to_string());
                None
            }
        }
    }

    /// J-4 / Q-16: https, no userinfo, no fragment, DNS host, no explicit port but 443.
    fn url(&mut self, path: &JsonPath, u: &str) -> Option<HttpsUrl> {
        match check_url(u) {
            Ok((url, warning)) => {
                if let Some(w) = warning {
                    self.push(path, Level::Warning, w);
                }
                Some(url)
            }
            Err(e) => {
                self.push(path, Level::Dropped, e);
                None
            }
        }
    }

    fn authentication(&mut self, path: &JsonPath, v: &Value) -> Option<Authentication> {
        let Value::Object(o) = v else {
            self.push(
                path,
                Level::Dropped,
                "not an object; treated as absent (Q-6)",
            );
            return None;
        };
        let password = match o.get("password") {
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.push(
                    &path.key("password"),
                    Level::Dropped,
                    "not a boolean; the whole authentication block is treated as absent (J-8, Q-6)",
                );
                return None;
            }
            None => {
                self.push(
                    &path.key("password"),
                    Level::Dropped,
                    "missing (required); the whole authentication block is treated as absent (J-8, Q-6)",
                );
                return None;
            }
        };
        let oauth_public = o
            .get("oauth-public")
            .and_then(|v| self.oauth_public(&path.key("oauth-public"), v));
        Some(Authentication {
            password,
            oauth_public,
        })
    }

    fn oauth_public(&mut self, path: &JsonPath, v: &Value) -> Option<OAuthPublic> {
        let Value::Object(o) = v else {
            self.push(path, Level::Dropped, "not an object");
            return None;
        };
        let ip = path.key("issuer");
        match o.get("issuer") {
            Some(Value::String(s)) => match check_issuer(s) {
                Ok(()) => Some(OAuthPublic { issuer: s.clone() }),
                Err(e) => {
                    self.push(&ip, Level::Dropped, e);
                    None
                }
            },
            Some(_) => {
                self.push(&ip, Level::Dropped, "not a string");
                None
            }
            None => {
                self.push(
                    &ip,
                    Level::Dropped,
                    "missing; oauth-public is unusable (J-8)",
                );
                None
            }
        }
    }

    fn info(&mut self, path: &JsonPath, v: &Value) -> Option<Info> {
        let Value::Object(o) = v else {
            self.push(path, Level::Dropped, "not an object");
            return None;
        };
        let provider = match o.get("provider") {
            Some(v) => self.provider(&path.key("provider"), v),
            None => {
                self.push(
                    &path.key("provider"),
                    Level::Violation,
                    "missing (required, J-11)",
                );
                None
            }
        };
        let help = o.get("help").and_then(|v| self.help(&path.key("help"), v));
        Some(Info { provider, help })
    }

    fn provider(&mut self, path: &JsonPath, v: &Value) -> Option<Provider> {
        let Value::Object(o) = v else {
            self.push(path, Level::Dropped, "not an object");
            return None;
        };
        let np = path.key("name");
        let name = match o.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                self.text_limits(&np, s, 30, 60)?;
                s.clone()
            }
            Some(Value::String(_)) => {
                self.push(&np, Level::Dropped, "empty (J-11)");
                return None;
            }
            Some(_) => {
                self.push(&np, Level::Dropped, "not a string");
                return None;
            }
            None => {
                self.push(&np, Level::Violation, "missing (required, J-11)");
                return None;
            }
        };
        let sp = path.key("shortName");
        let short_name = match o.get("shortName") {
            Some(Value::String(s)) => self.text_limits(&sp, s, 12, 20).map(|()| s.clone()),
            Some(_) => {
                self.push(&sp, Level::Dropped, "not a string");
                None
            }
            None => None,
        };
        let lp = path.key("logo");
        let logo = match o.get("logo") {
            Some(Value::Array(items)) => {
                if items.len() > MAX_ARRAY_ITEMS {
                    self.push(
                        &lp,
                        Level::Warning,
                        format!("only the first {MAX_ARRAY_ITEMS} entries are read"),
                    );
                }
                items
                    .iter()
                    .take(MAX_ARRAY_ITEMS)
                    .enumerate()
                    .filter_map(|(i, v)| self.logo(&lp.index(i), v))
                    .collect()
            }
            Some(_) => {
                self.push(&lp, Level::Dropped, "not an array");
                Vec::new()
            }
            None => Vec::new(),
        };
        Some(Provider {
            name,
            short_name,
            logo,
        })
    }

    /// J-11 length rules, counted in Unicode scalar values; returns `None` past the hard cap.
    fn text_limits(&mut self, path: &JsonPath, s: &str, should: usize, must: usize) -> Option<()> {
        let n = s.chars().count();
        if n > MAX_TEXT_LEN {
            self.push(
                path,
                Level::Dropped,
                format!("{n} characters is far too long"),
            );
            return None;
        }
        if n > must {
            self.push(
                path,
                Level::Violation,
                format!("{n} characters; must not exceed {must} (J-11)"),
            );
        } else if n > should {
            self.push(
                path,
                Level::Warning,
                format!("{n} characters; should not exceed {should} (J-11)"),
            );
        }
        Some(())
    }

    fn logo(&mut self, path: &JsonPath, v: &Value) -> Option<Logo> {
        let Value::Object(o) = v else {
            self.push(path, Level::Dropped, "not an object");
            return None;
        };
        let url = match o.get("url") {
            Some(Value::String(u)) => self.url(&path.key("url"), u)?,
            _ => {
                self.push(&path.key("url"), Level::Dropped, "missing or not a string");
                return None;
            }
        };
        let content_type = match o.get("content-type") {
            Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_TEXT_LEN => t.clone(),
            _ => {
                self.push(
                    &path.key("content-type"),
                    Level::Dropped,
                    "missing or not a media type",
                );
                return None;
            }
        };
        let mut dim = |key: &str| match o.get(key) {
            None => None,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Some(n),
                None => {
                    self.push(&path.key(key), Level::Dropped, "not a pixel count");
                    None
                }
            },
        };
        let width = dim("width");
        let height = dim("height");
        Some(Logo {
            url,
            content_type,
            width,
            height,
        })
    }

    fn help(&mut self, path: &JsonPath, v: &Value) -> Option<Help> {
        let Value::Object(o) = v else {
            self.push(path, Level::Dropped, "not an object");
            return None;
        };
        let mut link = |key: &str| match o.get(key) {
            None => None,
            Some(Value::String(u)) => self.url(&path.key(key), u),
            Some(_) => {
                self.push(&path.key(key), Level::Dropped, "not a string");
                None
            }
        };
        let documentation = link("documentation");
        let developer = link("developer");
        let cp = path.key("contact");
        let contact = match o.get("contact") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .take(MAX_ARRAY_ITEMS)
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::String(s) if is_uri_like(s) => Some(s.clone()),
                    _ => {
                        self.push(&cp.index(i), Level::Dropped, "not a URI (e.g. mailto:…)");
                        None
                    }
                })
                .collect(),
            Some(Value::String(s)) if is_uri_like(s) => {
                self.push(
                    &cp,
                    Level::Violation,
                    "a single string; must be an array of URIs (J-13)",
                );
                vec![s.clone()]
            }
            Some(_) => {
                self.push(&cp, Level::Dropped, "not an array of URIs");
                Vec::new()
            }
        };
        Some(Help {
            documentation,
            developer,
            contact,
        })
    }
}

fn is_uri_like(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    s.len() <= MAX_TEXT_LEN
        && !rest.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Check an HTTPS URL (J-4, Q-16). Returns the URL and an optional warning.
pub fn check_url(u: &str) -> Result<(HttpsUrl, Option<String>), String> {
    if u.len() > MAX_URL_LEN {
        return Err(format!("URL longer than {MAX_URL_LEN} characters"));
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("URL contains whitespace or control characters".to_owned());
    }
    let Some(rest) = u
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .map(|_| &u[8..])
    else {
        return Err(format!("'{u}' is not an https URL (J-4)"));
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let tail = &rest[auth_end..];
    if authority.contains('@') {
        return Err("URL contains user information (J-4)".to_owned());
    }
    if tail.contains('#') {
        return Err("URL has a fragment (J-4)".to_owned());
    }
    if authority.starts_with('[') {
        return Err(format!("'{authority}' is an IP literal, not a host name"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let mut warning = None;
    match port {
        None => {}
        Some("443") => {
            warning = Some(
                "explicit ':443' is redundant; publish the URL without a port (Q-16)".to_owned(),
            );
        }
        Some(p) => {
            return Err(format!(
                "explicit port ':{p}' is not allowed; HTTPS services use 443 (J-4, Q-16)"
            ));
        }
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!("'{host}' is an IP literal, not a host name"));
    }
    let domain = Domain::parse(host).map_err(|e| e.to_string())?;
    // Re-assemble with the normalised host (so the URL we use is the one we checked).
    let path = if tail.is_empty() { "/" } else { tail };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    if !path.is_ascii() {
        return Err("URL path contains non-ASCII characters (percent-encode them)".to_owned());
    }
    Ok((
        HttpsUrl {
            url: format!("https://{domain}{path}"),
            host: domain,
        },
        warning,
    ))
}

/// J-10: an issuer is an absolute https URL without query or fragment, in canonical form.
pub fn check_issuer(s: &str) -> Result<(), String> {
    if !s.is_ascii() {
        return Err("issuer contains non-ASCII characters (J-10)".to_owned());
    }
    if s.contains('?') {
        return Err("issuer has a query (J-10)".to_owned());
    }
    if s.contains('#') {
        return Err("issuer has a fragment (J-10)".to_owned());
    }
    let Some(rest) = s.strip_prefix("https://") else {
        return Err(format!("issuer '{s}' is not an https URL (J-10)"));
    };
    let path_start = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_start);
    if authority.is_empty() || authority.contains('@') {
        return Err("issuer has no host or has user information (J-10)".to_owned());
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!(
            "issuer '{s}' is not canonical: it has dot-segments (J-10)"
        ));
    }
    if path.contains("//") {
        return Err(format!(
            "issuer '{s}' is not canonical: empty path segment (J-10)"
        ));
    }
    // Percent-encoded unreserved characters are not canonical (RFC 3986 §6.2.2.2).
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = path
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                None => return Err(format!("issuer '{s}' has a malformed percent-encoding")),
                Some(c) if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => {
                    return Err(format!(
                        "issuer '{s}' is not canonical: percent-encodes an unreserved character (J-10)"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
