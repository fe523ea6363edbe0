//! The provider description file (TOML): what a provider publishes, for one domain or a
//! group of domains sharing one document. See `examples/provider.toml` for a commented
//! example. The whole file is validated before anything is rendered or served, and every
//! error names its line.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::digest::Algorithm;
use crate::document::{check_issuer, check_url};
use crate::mta_sts::{MAX_MAX_AGE, MxPattern};
use crate::name::Domain;

/// A file-level or value-level problem, with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct DescriptionError {
    /// The file name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// The submission key to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpellingChoice {
    /// `submit` (draft -03 and later).
    #[default]
    Submit,
    /// `smtp` (drafts -01/-02 clients).
    Smtp,
}

/// Member order of the rendered document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// The draft's order: protocols, authentication, info (as Stalwart publishes).
    #[default]
    Draft,
    /// Every object's keys sorted (as automx publishes).
    Sorted,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    spelling: Option<SpellingChoice>,
    layout: Option<Layout>,
    algorithms: Option<Vec<Spanned<String>>>,
    trailing_newline: Option<bool>,
    ttl: Option<u32>,
    cache_control: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServices {
    jmap: Option<Spanned<String>>,
    imap: Option<Spanned<String>>,
    pop3: Option<Spanned<String>>,
    submit: Option<Spanned<String>>,
    caldav: Option<Spanned<String>>,
    carddav: Option<Spanned<String>>,
    webdav: Option<Spanned<String>>,
    managesieve: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogo {
    url: Spanned<String>,
    content_type: String,
    width: Option<u32>,
    height: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Spanned<String>,
    short_name: Option<Spanned<String>>,
    #[serde(default)]
    logo: Vec<RawLogo>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHelp {
    documentation: Option<Spanned<String>>,
    developer: Option<Spanned<String>>,
    #[serde(default)]
    contact: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtaSts {
    id: Spanned<String>,
    mode: Spanned<String>,
    mx: Vec<Spanned<String>>,
    max_age: Spanned<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    domains: Vec<Spanned<String>>,
    password: Option<bool>,
    oauth_issuer: Option<Spanned<String>>,
    spelling: Option<SpellingChoice>,
    layout: Option<Layout>,
    algorithms: Option<Vec<Spanned<String>>>,
    trailing_newline: Option<bool>,
    #[serde(default)]
    services: RawServices,
    provider: RawProvider,
    #[serde(default)]
    help: RawHelp,
    tls: Option<RawTls>,
    mta_sts: Option<RawMtaSts>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServe {
    #[serde(default)]
    listen: Vec<String>,
    cert_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEab {
    kid: Spanned<String>,
    hmac_key: Option<Spanned<String>>,
    hmac_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Spanned<String>,
    #[serde(default)]
    contact: Vec<Spanned<String>>,
    storage: String,
    ca_file: Option<String>,
    orders_per_hour: Option<Spanned<u32>>,
    eab: Option<RawEab>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    serve: RawServe,
    acme: Option<RawAcme>,
    #[serde(rename = "document")]
    documents: Vec<RawDocument>,
}

/// An MTA-STS policy to serve for the group's domains (the MX-fallback hosting case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaStsPolicy {
    /// The id to publish in `_mta-sts.<domain>`.
    pub id: String,
    /// `enforce`, `testing` or `none`.
    pub mode: String,
    /// `mx` patterns.
    pub mx: Vec<String>,
    /// `max_age`.
    pub max_age: u64,
}

impl MtaStsPolicy {
    /// The policy file's exact text (LF line ends).
    pub fn render(&self) -> String {
        let mut s = format!("version: STSv1\nmode: {}\n", self.mode);
        for m in &self.mx {
            s.push_str(&format!("mx: {m}\n"));
        }
        s.push_str(&format!("max_age: {}\n", self.max_age));
        s
    }
}

/// One validated document group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSpec {
    /// The domains that publish this document.
    pub domains: Vec<Domain>,
    /// `authentication.password` (default true).
    pub password: bool,
    /// `authentication.oauth-public.issuer`.
    pub oauth_issuer: Option<String>,
    /// Which submission key.
    pub spelling: SpellingChoice,
    /// Member order.
    pub layout: Layout,
    /// Digest algorithms to publish (sha256 always first).
    pub algorithms: Vec<Algorithm>,
    /// Append one LF to the bytes (it is part of the digest).
    pub trailing_newline: bool,
    /// Services: key → host or URL, in document order.
    pub services: Vec<(&'static str, String)>,
    /// Provider name.
    pub name: String,
    /// Short name.
    pub short_name: Option<String>,
    /// Logos: (url, content type, width, height).
    pub logos: Vec<(String, String, Option<u32>, Option<u32>)>,
    /// Help links.
    pub documentation: Option<String>,
    /// Developer documentation.
    pub developer: Option<String>,
    /// Contact URIs.
    pub contact: Vec<String>,
    /// Certificate and key files for `pacc serve`.
    pub tls: Option<(String, String)>,
    /// Optional MTA-STS policy to serve.
    pub mta_sts: Option<MtaStsPolicy>,
}

/// Where the External Account Binding MAC key comes from (RFC 8555 §7.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EabKey {
    /// Written in the description (base64url).
    Inline(String),
    /// A file holding it (base64url), e.g. a systemd credential; relative to the description.
    File(String),
}

/// `[acme]`: certificates for every domain from an ACME (RFC 8555) CA, by TLS-ALPN-01 on
/// the serving listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSpec {
    /// The CA's directory URL (https).
    pub directory: String,
    /// Contact URIs for the account (`mailto:`).
    pub contact: Vec<String>,
    /// The directory that keeps the account, certificates and schedule (relative to the
    /// description's directory unless absolute).
    pub storage: String,
    /// Extra trust anchors (PEM) for reaching the CA itself (a private or test CA).
    pub ca_file: Option<String>,
    /// At most this many new orders in any hour (default 100).
    pub orders_per_hour: u32,
    /// External Account Binding: key id and MAC key.
    pub eab: Option<(String, EabKey)>,
}

/// A validated description file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Every document group.
    pub documents: Vec<DocumentSpec>,
    /// TTL for the printed DNS records.
    pub ttl: u32,
    /// `Cache-Control` for `pacc serve`.
    pub cache_control: String,
    /// Addresses `pacc serve` listens on.
    pub listen: Vec<String>,
    /// A directory of PEM files (certificate chain + key) chosen by SNI.
    pub cert_dir: Option<String>,
    /// Automatic certificates.
    pub acme: Option<AcmeSpec>,
}

impl Description {
    /// The group that serves `domain`.
    pub fn document_for(&self, domain: &Domain) -> Option<&DocumentSpec> {
        self.documents.iter().find(|d| d.domains.contains(domain))
    }

    /// Parse and validate `text` (from `file`, used in messages). Nothing is returned
    /// unless the whole file is valid.
    pub fn parse(file: &str, text: &str) -> Result<Description, Vec<DescriptionError>> {
        let at = |span: Option<Range<usize>>, message: String| -> DescriptionError {
            let offset = span.map_or(0, |s| s.start).min(text.len());
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            DescriptionError {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| vec![at(e.span(), e.message().to_owned())])?;
        let mut errors = Vec::new();
        let defaults = &raw.defaults;
        let default_algs = parse_algorithms(defaults.algorithms.as_deref(), &mut errors, &at);
        let mut documents = Vec::new();
        let mut seen_domains: BTreeMap<Domain, usize> = BTreeMap::new();
        if raw.documents.is_empty() {
            errors.push(at(None, "no [[document]] section".to_owned()));
        }
        for (i, d) in raw.documents.iter().enumerate() {
            let mut domains = Vec::new();
            if d.domains.is_empty() {
                errors.push(at(None, format!("document #{}: `domains` is empty", i + 1)));
            }
            for s in &d.domains {
                match Domain::parse_discovery(s.get_ref()) {
                    Ok(dom) => {
                        if seen_domains.insert(dom.clone(), i).is_some() {
                            errors.push(at(
                                Some(s.span()),
                                format!("domain {dom} is listed in two documents"),
                            ));
                        }
                        domains.push(dom);
                    }
                    Err(e) => errors.push(at(Some(s.span()), e.to_string())),
                }
            }
            let mut services = Vec::new();
            let sv = &d.services;
            let entries: [(&'static str, &Option<Spanned<String>>, bool); 8] = [
                ("jmap", &sv.jmap, true),
                ("imap", &sv.imap, false),
                ("pop3", &sv.pop3, false),
                ("submit", &sv.submit, false),
                ("caldav", &sv.caldav, true),
                ("carddav", &sv.carddav, true),
                ("webdav", &sv.webdav, true),
                ("managesieve", &sv.managesieve, false),
            ];
            for (key, value, is_url) in entries {
                let Some(v) = value else { continue };
                if is_url {
                    match check_url(v.get_ref()) {
                        Ok((url, warning)) => {
                            if let Some(w) = warning {
                                errors.push(at(Some(v.span()), w));
                            } else if key != "jmap" && url.path() == "/" {
                                errors.push(at(
                                    Some(v.span()),
                                    format!("{key}: a bare origin is not a DAV context path (J-6); give the collection path"),
                                ));
                            } else {
                                services.push((key, url.to_string()));
                            }
                        }
                        Err(e) => errors.push(at(Some(v.span()), format!("{key}: {e}"))),
                    }
                } else if v.get_ref().parse::<std::net::IpAddr>().is_ok() {
                    errors.push(at(
                        Some(v.span()),
                        format!("{key}: an IP address is not allowed; give a host name (J-7)"),
                    ));
                } else {
                    match Domain::parse(v.get_ref()) {
                        Ok(h) => services.push((key, h.to_string())),
                        Err(e) => errors.push(at(Some(v.span()), format!("{key}: {e}"))),
                    }
                }
            }
            if entries.iter().all(|(_, v, _)| v.is_none()) {
                errors.push(at(
                    None,
                    format!("document #{}: no service in [document.services]", i + 1),
                ));
            }
            let oauth_issuer =
                d.oauth_issuer
                    .as_ref()
                    .and_then(|s| match check_issuer(s.get_ref()) {
                        Ok(()) => Some(s.get_ref().clone()),
                        Err(e) => {
                            errors.push(at(Some(s.span()), format!("oauth_issuer: {e}")));
                            None
                        }
                    });
            // A-1 … A-3: a document with neither a password nor an OAuth issuer leaves
            // clients no way to sign in to anything.
            if d.password == Some(false) && d.oauth_issuer.is_none() {
                errors.push(at(
                    None,
                    format!(
                        "document #{}: password = false and no oauth_issuer: clients could not sign in to any service; allow passwords or name an OAuth issuer",
                        i + 1
                    ),
                ));
            }
            let name = d.provider.name.get_ref().trim().to_owned();
            let n = name.chars().count();
            if n == 0 || n > 60 {
                errors.push(at(
                    Some(d.provider.name.span()),
                    format!("provider.name must be 1 to 60 characters (J-11), is {n}"),
                ));
            }
            let short_name = d.provider.short_name.as_ref().map(|s| {
                let n = s.get_ref().chars().count();
                if n == 0 || n > 20 {
                    errors.push(at(
                        Some(s.span()),
                        format!("provider.short_name must be 1 to 20 characters (J-11), is {n}"),
                    ));
                }
                s.get_ref().clone()
            });
            let mut logos = Vec::new();
            for l in &d.provider.logo {
                match check_url(l.url.get_ref()) {
                    Ok((u, None)) => {
                        logos.push((u.to_string(), l.content_type.clone(), l.width, l.height))
                    }
                    Ok((_, Some(w))) => errors.push(at(Some(l.url.span()), w)),
                    Err(e) => errors.push(at(Some(l.url.span()), format!("logo: {e}"))),
                }
            }
            let link = |v: &Option<Spanned<String>>, errors: &mut Vec<DescriptionError>| {
                v.as_ref().and_then(|s| match check_url(s.get_ref()) {
                    Ok((u, _)) => Some(u.to_string()),
                    Err(e) => {
                        errors.push(at(Some(s.span()), e));
                        None
                    }
                })
            };
            let documentation = link(&d.help.documentation, &mut errors);
            let developer = link(&d.help.developer, &mut errors);
            let contact = d
                .help
                .contact
                .iter()
                .filter_map(|c| {
                    if c.get_ref().contains(':') && !c.get_ref().contains(char::is_whitespace) {
                        Some(c.get_ref().clone())
                    } else {
                        errors.push(at(
                            Some(c.span()),
                            "contact must be a URI such as mailto:…".to_owned(),
                        ));
                        None
                    }
                })
                .collect();
            let algorithms = match &d.algorithms {
                Some(a) => parse_algorithms(Some(a), &mut errors, &at),
                None => default_algs.clone(),
            };
            let mta_sts = d.mta_sts.as_ref().and_then(|m| {
                let mut ok = true;
                let id = m.id.get_ref();
                if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    errors.push(at(
                        Some(m.id.span()),
                        "mta_sts.id must be 1 to 32 letters and digits".to_owned(),
                    ));
                    ok = false;
                }
                if !["enforce", "testing", "none"].contains(&m.mode.get_ref().as_str()) {
                    errors.push(at(
                        Some(m.mode.span()),
                        "mta_sts.mode must be enforce, testing or none".to_owned(),
                    ));
                    ok = false;
                }
                for p in &m.mx {
                    if MxPattern::parse(p.get_ref()).is_none() {
                        errors.push(at(
                            Some(p.span()),
                            "mta_sts.mx: not a host name or *.-pattern".to_owned(),
                        ));
                        ok = false;
                    }
                }
                if *m.max_age.get_ref() > MAX_MAX_AGE {
                    errors.push(at(
                        Some(m.max_age.span()),
                        format!("mta_sts.max_age must be at most {MAX_MAX_AGE}"),
                    ));
                    ok = false;
                }
                ok.then(|| MtaStsPolicy {
                    id: id.clone(),
                    mode: m.mode.get_ref().clone(),
                    mx: m.mx.iter().map(|p| p.get_ref().clone()).collect(),
                    max_age: *m.max_age.get_ref(),
                })
            });
            documents.push(DocumentSpec {
                domains,
                password: d.password.unwrap_or(true),
                oauth_issuer,
                spelling: d.spelling.or(defaults.spelling).unwrap_or_default(),
                layout: d.layout.or(defaults.layout).unwrap_or_default(),
                algorithms,
                trailing_newline: d
                    .trailing_newline
                    .or(defaults.trailing_newline)
                    .unwrap_or(false),
                services,
                name,
                short_name,
                logos,
                documentation,
                developer,
                contact,
                tls: d.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone())),
                mta_sts,
            });
        }
        let acme = raw
            .acme
            .as_ref()
            .and_then(|a| parse_acme(a, &mut errors, &at));
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(errors);
        }
        Ok(Description {
            documents,
            ttl: defaults.ttl.unwrap_or(3600),
            cache_control: defaults
                .cache_control
                .clone()
                .unwrap_or_else(|| "public, max-age=300".to_owned()),
            listen: raw.serve.listen.clone(),
            cert_dir: raw.serve.cert_dir.clone(),
            acme,
        })
    }
}

/// Default of `[acme] orders_per_hour`: Let's Encrypt allows 300 new orders per account in
/// three hours.
pub const DEFAULT_ORDERS_PER_HOUR: u32 = 100;

fn parse_acme(
    a: &RawAcme,
    errors: &mut Vec<DescriptionError>,
    at: &impl Fn(Option<Range<usize>>, String) -> DescriptionError,
) -> Option<AcmeSpec> {
    let before = errors.len();
    match url::Url::parse(a.directory.get_ref()) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
        Ok(_) => errors.push(at(
            Some(a.directory.span()),
            "acme.directory must be an https URL".to_owned(),
        )),
        Err(e) => errors.push(at(Some(a.directory.span()), format!("acme.directory: {e}"))),
    }
    for c in &a.contact {
        if !c.get_ref().starts_with("mailto:") || c.get_ref().contains(char::is_whitespace) {
            errors.push(at(
                Some(c.span()),
                "acme.contact must be mailto: URIs".to_owned(),
            ));
        }
    }
    if a.storage.trim().is_empty() {
        errors.push(at(None, "acme.storage must name a directory".to_owned()));
    }
    let orders_per_hour = match &a.orders_per_hour {
        Some(n) if *n.get_ref() == 0 => {
            errors.push(at(
                Some(n.span()),
                "acme.orders_per_hour must be at least 1".to_owned(),
            ));
            0
        }
        Some(n) => *n.get_ref(),
        None => DEFAULT_ORDERS_PER_HOUR,
    };
    let eab = a.eab.as_ref().and_then(|e| {
        let key = match (&e.hmac_key, &e.hmac_key_file) {
            (Some(k), None) => {
                let ok = !k.get_ref().is_empty()
                    && k.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    errors.push(at(
                        Some(k.span()),
                        "acme.eab.hmac_key must be base64url (A-Z a-z 0-9 - _)".to_owned(),
                    ));
                }
                EabKey::Inline(k.get_ref().clone())
            }
            (None, Some(f)) => EabKey::File(f.clone()),
            _ => {
                errors.push(at(
                    Some(e.kid.span()),
                    "acme.eab needs exactly one of hmac_key and hmac_key_file".to_owned(),
                ));
                return None;
            }
        };
        if e.kid.get_ref().is_empty() {
            errors.push(at(Some(e.kid.span()), "acme.eab.kid is empty".to_owned()));
        }
        Some((e.kid.get_ref().clone(), key))
    });
    (errors.len() == before).then(|| AcmeSpec {
        directory: a.directory.get_ref().clone(),
        contact: a.contact.iter().map(|c| c.get_ref().clone()).collect(),
        storage: a.storage.clone(),
        ca_file: a.ca_file.clone(),
        orders_per_hour,
        eab,
    })
}

fn parse_algorithms(
    given: Option<&[Spanned<String>]>,
    errors: &mut Vec<DescriptionError>,
    at: &impl Fn(Option<Range<usize>>, String) -> DescriptionError,
) -> Vec<Algorithm> {
    // sha256 is always published (Q-2: the one identifier every client knows).
    let mut out = vec![Algorithm::Sha256];
    for a in given.unwrap_or_default() {
        match Algorithm::from_name(a.get_ref()) {
            Some(alg) if !out.contains(&alg) => out.push(alg),
            Some(_) => {}
            None => errors.push(at(
                Some(a.span()),
                format!(
                    "unknown algorithm '{}' (sha256, sha512, sha3-512)",
                    a.get_ref()
                ),
            )),
        }
    }
    out
}
