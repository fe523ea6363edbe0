//! `pacc serve`: the well-known document over HTTPS for many domains (PV-1, PV-2, PV-7).
//!
//! TLS 1.3 only; the certificate is chosen by SNI; the document by `Host`
//! (`ua-auto-config.<domain>`, and `mta-sts.<domain>` for groups that serve a policy).
//! Exact bytes, `Content-Type: application/json`, exact `Content-Length`, a strong `ETag`
//! and `Cache-Control`; only GET and HEAD on the well-known path; unknown hosts get 404;
//! nothing is ever redirected. Slow clients are cut off by handshake and header deadlines.
//! [`Server::reload`] (SIGHUP in the CLI) swaps in a new description atomically, or keeps
//! the old one serving when the new one is broken; requests in flight finish on the state
//! they started with.

#[cfg(feature = "acme")]
mod acme;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use pacc_proto::digest::Algorithm;
use pacc_proto::discovery::WELL_KNOWN_PATH;
use pacc_proto::provider::render::render;
use pacc_proto::provider::{AcmeSpec, Description, EabKey};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The MTA-STS policy path (RFC 8461 §3.3).
const MTA_STS_PATH: &str = "/.well-known/mta-sts.txt";
/// Deadlines that keep slow clients from holding connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For a client to finish the TLS handshake.
    pub handshake: Duration,
    /// For a client to send a complete request head (also while idle on keep-alive).
    pub header: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(10),
        }
    }
}
/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Why serving could not start or a reload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The description file is unreadable or invalid (every error, with lines).
    #[error("{0}")]
    Description(String),
    /// A certificate or key could not be loaded.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

struct Served {
    body: Bytes,
    content_type: &'static str,
    etag: String,
    cache_control: String,
}

/// What `serve` does besides answering: the opt-in access log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// One JSON line per request on stdout: time, SNI, Host, path, status, bytes, duration.
    pub access_log: bool,
}

/// Counters for the Prometheus text format ([`Server::metrics`]).
#[derive(Debug, Default)]
struct Counters {
    /// (status, document host or `-`) → requests.
    requests: std::sync::Mutex<HashMap<(u16, String), u64>>,
    /// reason → TLS handshakes that failed.
    handshake_failures: std::sync::Mutex<HashMap<&'static str, u64>>,
    reloads_ok: std::sync::atomic::AtomicU64,
    reloads_failed: std::sync::atomic::AtomicU64,
    /// result → ACME orders (`valid`, `failed`).
    acme_orders: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    fn request(&self, status: u16, host: &str) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((status, host.to_owned())).or_insert(0) += 1;
        }
    }

    #[cfg_attr(not(feature = "acme"), allow(dead_code))]
    fn acme_order(&self, result: &'static str) {
        if let Ok(mut m) = self.acme_orders.lock() {
            *m.entry(result).or_insert(0) += 1;
        }
    }

    fn handshake_failed(&self, reason: &'static str) {
        if let Ok(mut m) = self.handshake_failures.lock() {
            *m.entry(reason).or_insert(0) += 1;
        }
    }
}

/// A handle that renders `serve`'s metrics (cheap to clone, usable from another task).
#[derive(Clone)]
pub struct Metrics {
    counters: Arc<Counters>,
    state: Arc<RwLock<Arc<State>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value in the Prometheus text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The Prometheus text exposition (version 0.0.4): requests by status and document,
    /// handshake failures by reason, certificate expiry per name, reloads, domains served.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        header(
            &mut out,
            "pacc_serve_requests_total",
            "counter",
            "HTTP requests answered, by status and document host.",
        );
        if let Ok(m) = self.counters.requests.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for ((status, host), n) in rows {
                let _ = writeln!(
                    out,
                    "pacc_serve_requests_total{{status=\"{status}\",document=\"{}\"}} {n}",
                    label(host)
                );
            }
        }
        header(
            &mut out,
            "pacc_serve_handshake_failures_total",
            "counter",
            "TLS handshakes that failed, by reason.",
        );
        if let Ok(m) = self.counters.handshake_failures.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for (reason, n) in rows {
                let _ = writeln!(
                    out,
                    "pacc_serve_handshake_failures_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "pacc_serve_reloads_total",
            "counter",
            "Description reloads (SIGHUP), by result.",
        );
        let _ = writeln!(
            out,
            "pacc_serve_reloads_total{{result=\"ok\"}} {}",
            self.counters.reloads_ok.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "pacc_serve_reloads_total{{result=\"refused\"}} {}",
            self.counters.reloads_failed.load(Relaxed)
        );
        header(
            &mut out,
            "pacc_serve_acme_orders_total",
            "counter",
            "ACME orders placed, by result (valid: a certificate was issued; failed: the order or a challenge failed).",
        );
        if let Ok(m) = self.counters.acme_orders.lock() {
            for result in ["valid", "failed"] {
                let _ = writeln!(
                    out,
                    "pacc_serve_acme_orders_total{{result=\"{result}\"}} {}",
                    m.get(result).copied().unwrap_or(0)
                );
            }
        }
        if let Ok(state) = self.state.read() {
            header(
                &mut out,
                "pacc_serve_certificate_expiry_seconds",
                "gauge",
                "When the certificate presented for a name expires (Unix time).",
            );
            let mut rows: Vec<_> = state.expiry.iter().collect();
            rows.sort();
            for (name, t) in rows {
                let _ = writeln!(
                    out,
                    "pacc_serve_certificate_expiry_seconds{{name=\"{}\"}} {t}",
                    label(name)
                );
            }
            header(
                &mut out,
                "pacc_serve_domains",
                "gauge",
                "Domains served by the loaded description.",
            );
            let _ = writeln!(out, "pacc_serve_domains {}", state.domains);
            header(
                &mut out,
                "pacc_serve_hosts_without_certificate",
                "gauge",
                "Hosts served that have no valid certificate yet (with [acme]: waiting for an order).",
            );
            let _ = writeln!(
                out,
                "pacc_serve_hosts_without_certificate {}",
                state.by_host.len().saturating_sub(state.certs.len())
            );
        }
        out
    }
}

/// Everything one version of the description serves.
#[derive(Clone)]
struct State {
    by_host: HashMap<String, Arc<Served>>,
    certs: HashMap<String, Arc<CertifiedKey>>,
    /// For clients that send no SNI (or an IP address): the first document's certificate,
    /// as a web server's default virtual host would.
    default_cert: Option<Arc<CertifiedKey>>,
    /// The host whose certificate is the default one.
    default_host: Option<String>,
    domains: usize,
    /// Per host: a certificate that expires soon, and other things the operator should know.
    warnings: BTreeMap<String, String>,
    /// Every certificate loaded, for names no document serves.
    others: Candidates,
    /// The expiry (Unix seconds) of the certificate presented for each host.
    expiry: HashMap<String, i64>,
    /// `[acme]`: the settings and, per domain, the names its certificate must cover.
    acme: Option<Arc<AcmePlan>>,
}

/// What the ACME manager works from: the `[acme]` settings with paths resolved against the
/// description's directory, and every domain with the names its certificate covers
/// (`ua-auto-config.<domain>`, and `mta-sts.<domain>` where a policy is served).
#[derive(Debug)]
#[cfg_attr(not(feature = "acme"), allow(dead_code))]
struct AcmePlan {
    spec: AcmeSpec,
    storage: PathBuf,
    ca_file: Option<PathBuf>,
    eab_key_file: Option<PathBuf>,
    domains: Vec<(String, Vec<String>)>,
}

impl AcmePlan {
    /// Where issued certificates are kept (one PEM file per domain, chain and key).
    fn cert_dir(storage: &Path) -> PathBuf {
        storage.join("certs")
    }
}

/// Every certificate `serve` may present, indexed by the names they cover.
#[derive(Clone, Default)]
struct Candidates {
    list: Vec<Candidate>,
    /// name (or `*.parent` for a wildcard) → indices into `list`.
    by_name: HashMap<String, Vec<usize>>,
}

impl Candidates {
    fn push(&mut self, c: Candidate) {
        let i = self.list.len();
        for n in &c.names {
            let v = self.by_name.entry(n.clone()).or_default();
            if !v.contains(&i) {
                v.push(i);
            }
        }
        self.list.push(c);
    }

    fn get(&self, i: usize) -> &Candidate {
        &self.list[i]
    }

    /// Every candidate naming `host` exactly or by a wildcard one label up.
    fn covering<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a Candidate> + 'a {
        let wildcard = wildcard_for(host);
        let exact = self.by_name.get(host).into_iter().flatten();
        let wild = wildcard
            .and_then(|w| self.by_name.get(&w))
            .into_iter()
            .flatten();
        let mut seen = Vec::new();
        exact
            .chain(wild)
            .filter(move |i| {
                let new = !seen.contains(*i);
                seen.push(**i);
                new
            })
            .map(|i| &self.list[*i])
    }

    /// The certificate to present for `host`: among those covering it, the one valid now
    /// with the latest expiry.
    fn best(&self, host: &str, now: i64) -> Option<&Candidate> {
        self.covering(host)
            .filter(|c| c.valid_at(now))
            .max_by_key(|c| c.not_after)
    }

    /// The same set with every candidate loaded from `source` replaced by `c`.
    fn replacing(&self, c: Candidate) -> Candidates {
        let mut out = Candidates::default();
        for old in self.list.iter().filter(|o| o.source != c.source) {
            out.push(old.clone());
        }
        out.push(c);
        out
    }
}

/// A certificate `serve` may present: its key, the names it covers, its validity, and
/// where it came from (for messages).
#[derive(Clone)]
struct Candidate {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    not_before: i64,
    not_after: i64,
    source: String,
}

/// The certificate name that covers `host` by wildcard: `*.` and its parent (one label,
/// not empty, replaced).
fn wildcard_for(host: &str) -> Option<String> {
    host.split_once('.')
        .filter(|(label, _)| !label.is_empty())
        .map(|(_, parent)| format!("*.{parent}"))
}

/// Certificates expiring within this many days are warned about.
const EXPIRY_WARNING_DAYS: i64 = 14;

impl Candidate {
    fn new(key: Arc<CertifiedKey>, source: String) -> Self {
        let (names, not_before, not_after) = key
            .cert
            .first()
            .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
            .map(|(_, c)| {
                (
                    san_dns_names(&c),
                    c.validity().not_before.timestamp(),
                    c.validity().not_after.timestamp(),
                )
            })
            .unwrap_or_default();
        Candidate {
            key,
            names,
            not_before,
            not_after,
            source,
        }
    }

    fn covers(&self, host: &str) -> bool {
        let wildcard = wildcard_for(host);
        self.names
            .iter()
            .any(|n| n == host || wildcard.as_deref() == Some(n.as_str()))
    }

    fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    fn expiry(&self) -> String {
        time_text(self.not_after)
    }
}

fn time_text(t: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(t)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl State {
    fn load(path: &Path, cert_dir_override: Option<&Path>) -> Result<State, ServeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::Description(format!("cannot read {}: {e}", path.display())))?;
        let desc = Description::parse(&path.display().to_string(), &text).map_err(|errors| {
            ServeError::Description(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        #[cfg(not(feature = "acme"))]
        if desc.acme.is_some() {
            return Err(ServeError::Description(format!(
                "{}: [acme] needs a pacc built with the `acme` feature",
                path.display()
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut by_host = HashMap::new();
        let mut candidates = Candidates::default();
        // Hosts whose group names a [document.tls] pair, and that pair's index.
        let mut pair_hosts: Vec<(String, usize)> = Vec::new();
        let mut domains = 0;
        let mut acme_domains = Vec::new();
        for spec in &desc.documents {
            let bytes = Bytes::from(render(spec));
            let etag = format!(
                "\"{}\"",
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(Algorithm::Sha256.digest(&bytes))
            );
            let doc = Arc::new(Served {
                body: bytes,
                content_type: "application/json",
                etag,
                cache_control: desc.cache_control.clone(),
            });
            let policy = spec.mta_sts.as_ref().map(|m| {
                let text = Bytes::from(m.render());
                let etag = format!(
                    "\"{}\"",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(Algorithm::Sha256.digest(&text))
                );
                Arc::new(Served {
                    body: text,
                    content_type: "text/plain",
                    etag,
                    cache_control: desc.cache_control.clone(),
                })
            });
            // A [document.tls] pair is meant for this group's hosts.
            let pair = match &spec.tls {
                Some((cert, key)) => Some(Candidate::new(
                    load_pair(&base.join(cert), &base.join(key))?,
                    base.join(cert).display().to_string(),
                )),
                None => None,
            };
            let index = candidates.list.len();
            for d in &spec.domains {
                domains += 1;
                let host = format!("ua-auto-config.{d}");
                let mut names = vec![host.clone()];
                by_host.insert(host.clone(), doc.clone());
                if pair.is_some() {
                    pair_hosts.push((host.clone(), index));
                }
                if let Some(p) = &policy {
                    let host = format!("mta-sts.{d}");
                    by_host.insert(host.clone(), p.clone());
                    names.push(host.clone());
                    if pair.is_some() {
                        pair_hosts.push((host, index));
                    }
                }
                acme_domains.push((d.to_string(), names));
            }
            if let Some(c) = pair {
                candidates.push(c);
            }
        }
        let dir = cert_dir_override
            .map(Path::to_path_buf)
            .or_else(|| desc.cert_dir.as_ref().map(|d| base.join(d)));
        if let Some(dir) = dir {
            for c in load_cert_dir(&dir)? {
                candidates.push(c);
            }
        }
        let acme = desc.acme.as_ref().map(|spec| {
            let storage = base.join(&spec.storage);
            Arc::new(AcmePlan {
                spec: spec.clone(),
                ca_file: spec.ca_file.as_ref().map(|f| base.join(f)),
                eab_key_file: spec.eab.as_ref().and_then(|(_, k)| match k {
                    EabKey::File(f) => Some(base.join(f)),
                    EabKey::Inline(_) => None,
                }),
                storage,
                domains: acme_domains,
            })
        });
        // Certificates issued earlier are served at once, before the CA is asked anything.
        if let Some(plan) = &acme {
            let issued = AcmePlan::cert_dir(&plan.storage);
            if issued.is_dir() {
                for c in load_cert_dir(&issued)? {
                    candidates.push(c);
                }
            }
        }
        // Every host must get a certificate that covers it and is valid now; among several,
        // the latest expiry wins (a renewal beside the old file takes over by itself).
        let now = unix_now();
        for (host, i) in &pair_hosts {
            let pair = candidates.get(*i);
            if !pair.covers(host) && candidates.best(host, now).is_none() {
                return Err(ServeError::Certificate(format!(
                    "{} does not cover {host} (it names {}), and no other certificate valid now does{}",
                    pair.source,
                    pair.names.join(", "),
                    {
                        let others: Vec<String> = candidates
                            .covering(host)
                            .map(|c| format!("{} (until {})", c.source, c.expiry()))
                            .collect();
                        if others.is_empty() {
                            String::new()
                        } else {
                            format!(" (covering but not valid now: {})", others.join(", "))
                        }
                    }
                )));
            }
        }
        // Clients without SNI (or an IP as SNI) get the first document's certificate.
        let default_host = desc
            .documents
            .first()
            .and_then(|d| d.domains.first())
            .map(|d| format!("ua-auto-config.{d}"));
        let mut state = State {
            by_host,
            certs: HashMap::new(),
            default_cert: None,
            default_host,
            domains,
            warnings: BTreeMap::new(),
            others: Candidates::default(),
            expiry: HashMap::new(),
            acme,
        };
        let mut hosts: Vec<String> = state.by_host.keys().cloned().collect();
        hosts.sort();
        let mut awaiting = 0usize;
        for host in hosts {
            match candidates.best(&host, now) {
                Some(c) => state.present(&host, c, now),
                // With [acme], a host without a certificate yet gets one from the CA; until
                // then its handshakes fail (no certificate is better than a wrong one).
                None if state.acme.is_some() => awaiting += 1,
                None => {
                    let expired: Vec<String> = candidates
                        .covering(&host)
                        .map(|c| {
                            format!(
                                "{} (valid {} to {})",
                                c.source,
                                time_text(c.not_before),
                                c.expiry()
                            )
                        })
                        .collect();
                    return Err(ServeError::Certificate(if expired.is_empty() {
                        format!(
                            "no certificate covers {host} (add [document.tls], a PEM file in the certificate directory, or [acme])"
                        )
                    } else {
                        format!(
                            "no certificate for {host} is valid now: {}",
                            expired.join("; ")
                        )
                    }));
                }
            }
        }
        for w in state.warnings.values() {
            tracing::warn!("{w}");
        }
        if awaiting > 0 {
            tracing::info!(hosts = awaiting, "waiting for ACME certificates");
        }
        // Names no document serves still get a covering certificate (then a 404).
        state.others = candidates;
        Ok(state)
    }

    /// Present `c` for `host` (and note when it expires soon).
    fn present(&mut self, host: &str, c: &Candidate, now: i64) {
        if c.not_after - now < EXPIRY_WARNING_DAYS * 86_400 {
            self.warnings.insert(
                host.to_owned(),
                format!(
                    "the certificate for {host} ({}) expires {}: renew it",
                    c.source,
                    c.expiry()
                ),
            );
        } else {
            self.warnings.remove(host);
        }
        self.certs.insert(host.to_owned(), c.key.clone());
        self.expiry.insert(host.to_owned(), c.not_after);
        if self.default_host.as_deref() == Some(host) {
            self.default_cert = Some(c.key.clone());
        }
    }

    /// This state with `c` (a certificate just issued, stored at `c.source`) among the
    /// candidates, and presented for every name it covers where it is now the best.
    #[cfg_attr(not(feature = "acme"), allow(dead_code))]
    fn with_certificate(&self, c: Candidate) -> State {
        let now = unix_now();
        let mut next = self.clone();
        next.others = self.others.replacing(c.clone());
        for name in &c.names {
            if !next.by_host.contains_key(name) {
                continue;
            }
            if let Some(best) = next.others.best(name, now).cloned() {
                next.present(name, &best, now);
            }
        }
        next
    }
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    what: &str,
) -> Result<Arc<CertifiedKey>, ServeError> {
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| ServeError::Certificate(format!("{what}: {e}")))
}

fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, ServeError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect())
        .map_err(|e| ServeError::Certificate(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(ServeError::Certificate(format!(
            "{}: no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Certificate(format!("{}: {e}", key.display())))?;
    certified(chain, key, &cert.display().to_string())
}

/// Every `*.pem` in `dir` holds a chain and its key.
fn load_cert_dir(dir: &Path) -> Result<Vec<Candidate>, ServeError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ServeError::Certificate(format!("{}: {e}", dir.display())))?;
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    paths.sort();
    for path in paths {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
            .and_then(|i| i.collect())
            .map_err(|e| ServeError::Certificate(format!("{}: {e}", path.display())))?;
        if chain.is_empty() {
            continue;
        }
        let key = PrivateKeyDer::from_pem_file(&path).map_err(|e| {
            ServeError::Certificate(format!("{}: no private key: {e}", path.display()))
        })?;
        let k = certified(chain, key, &path.display().to_string())?;
        out.push(Candidate::new(k, path.display().to_string()));
    }
    Ok(out)
}

fn san_dns_names(c: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// TLS-ALPN-01 certificates by name, while an order waits for the CA (RFC 8737).
type Challenges = Arc<RwLock<HashMap<String, Arc<CertifiedKey>>>>;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737 §6.2).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug)]
struct Resolver {
    state: Arc<RwLock<Arc<State>>>,
    challenges: Challenges,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A CA validating TLS-ALPN-01 offers only acme-tls/1; it gets the challenge
        // certificate, and nobody else ever does. Without a pending challenge: no
        // certificate, so the handshake fails.
        if hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
        {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges.read().ok()?.get(&name).cloned();
        }
        let state = self.state.read().ok()?.clone();
        match hello.server_name() {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                state
                    .certs
                    .get(&name)
                    .cloned()
                    .or_else(|| state.others.best(&name, unix_now()).map(|c| c.key.clone()))
            }
            None => state.default_cert.clone(),
        }
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("hosts", &self.by_host.len())
            .finish()
    }
}

/// A running provider server.
pub struct Server {
    description: PathBuf,
    cert_dir: Option<PathBuf>,
    state: Arc<RwLock<Arc<State>>>,
    addrs: Vec<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    counters: Arc<Counters>,
    /// Wakes the ACME manager (after a reload).
    wake: Arc<tokio::sync::Notify>,
}

impl Server {
    /// Load `description` (and certificates) and listen on `listen`, with default limits.
    pub async fn start(
        description: &Path,
        cert_dir: Option<&Path>,
        listen: &[SocketAddr],
    ) -> Result<Server, ServeError> {
        Self::start_with(description, cert_dir, listen, Limits::default()).await
    }

    /// As [`Server::start`], with explicit [`Limits`].
    pub async fn start_with(
        description: &Path,
        cert_dir: Option<&Path>,
        listen: &[SocketAddr],
        limits: Limits,
    ) -> Result<Server, ServeError> {
        Self::start_full(description, cert_dir, listen, limits, Options::default()).await
    }

    /// As [`Server::start_with`], with [`Options`] (the access log).
    pub async fn start_full(
        description: &Path,
        cert_dir: Option<&Path>,
        listen: &[SocketAddr],
        limits: Limits,
        options: Options,
    ) -> Result<Server, ServeError> {
        let counters = Arc::new(Counters::default());
        let state = Arc::new(RwLock::new(Arc::new(State::load(description, cert_dir)?)));
        let challenges: Challenges = Arc::default();
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| ServeError::Certificate(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Resolver {
                    state: state.clone(),
                    challenges: challenges.clone(),
                }));
        config.alpn_protocols = vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let mut addrs = Vec::new();
        for addr in listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|error| ServeError::Listen { addr: *addr, error })?;
            addrs.push(listener.local_addr().unwrap_or(*addr));
            tasks.spawn(accept_loop(
                listener,
                acceptor.clone(),
                state.clone(),
                shutdown.subscribe(),
                limits,
                counters.clone(),
                options,
            ));
        }
        tracing::info!(
            domains = state.read().map(|s| s.domains).unwrap_or(0),
            ?addrs,
            "serving"
        );
        let wake = Arc::new(tokio::sync::Notify::new());
        if state.read().is_ok_and(|s| s.acme.is_some()) && !addrs.iter().any(|a| a.port() == 443) {
            tracing::warn!(
                ?addrs,
                "[acme]: the CA validates TLS-ALPN-01 on port 443, and no listen address is :443 (fine only if port 443 is forwarded here)"
            );
        }
        #[cfg(feature = "acme")]
        tasks.spawn(acme::run(
            acme::Shared {
                state: state.clone(),
                challenges,
                counters: counters.clone(),
            },
            shutdown.subscribe(),
            wake.clone(),
        ));
        #[cfg(not(feature = "acme"))]
        drop(challenges);
        Ok(Server {
            description: description.to_path_buf(),
            cert_dir: cert_dir.map(Path::to_path_buf),
            state,
            addrs,
            shutdown,
            tasks,
            counters,
            wake,
        })
    }

    /// Serve the metrics in the Prometheus text format at `http://addr/metrics` (plain
    /// HTTP, meant for loopback or a private network), until shutdown. Returns the bound
    /// address.
    pub async fn start_metrics(&mut self, addr: SocketAddr) -> Result<SocketAddr, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| ServeError::Listen { addr, error })?;
        let bound = listener.local_addr().unwrap_or(addr);
        let metrics = self.metrics();
        let mut stop = self.shutdown.subscribe();
        self.tasks.spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(_) => continue,
                    },
                    _ = stop.changed() => break,
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let resp = if req.uri().path() == "/metrics" {
                            Response::builder()
                                .status(200)
                                .header(CONTENT_TYPE, "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(metrics.render())))
                        } else {
                            Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from_static(b"try /metrics\n")))
                        };
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                            )
                        }
                    });
                    let _ = tokio::time::timeout(
                        Duration::from_secs(30),
                        hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .serve_connection(TokioIo::new(tcp), svc),
                    )
                    .await;
                });
            }
        });
        Ok(bound)
    }

    /// A handle rendering the metrics (Prometheus text), for a metrics listener.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            counters: self.counters.clone(),
            state: self.state.clone(),
        }
    }

    /// The bound addresses.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// What the operator should know about the loaded certificates (those expiring within
    /// 14 days), as also logged at start and on every reload.
    pub fn warnings(&self) -> Vec<String> {
        self.state
            .read()
            .map(|s| s.warnings.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Re-read the description and certificates. On success the new state serves every new
    /// request; on failure the old one keeps serving and the error is returned.
    pub fn reload(&self) -> Result<usize, ServeError> {
        use std::sync::atomic::Ordering::Relaxed;
        let new = match State::load(&self.description, self.cert_dir.as_deref()) {
            Ok(n) => n,
            Err(e) => {
                self.counters.reloads_failed.fetch_add(1, Relaxed);
                return Err(e);
            }
        };
        self.counters.reloads_ok.fetch_add(1, Relaxed);
        let domains = new.domains;
        if let Ok(mut s) = self.state.write() {
            *s = Arc::new(new);
        }
        // New domains may need certificates, removed ones no longer do.
        self.wake.notify_one();
        tracing::info!(domains, "reloaded");
        Ok(domains)
    }

    /// Stop accepting at once (the listeners close), drop connections still in the TLS
    /// handshake or reading a request head, let responses in flight finish for at most
    /// `grace`, then drop whatever is left and return.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// One access-log line.
struct AccessEntry<'a> {
    sni: Option<&'a str>,
    host: Option<&'a str>,
    path: &'a str,
    status: u16,
    bytes: u64,
    micros: u128,
}

/// Write one access-log line (JSON) on stdout: time, SNI, Host, path, status, bytes, duration.
fn access_line(e: &AccessEntry<'_>) {
    use std::io::Write as _;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let line = serde_json::json!({
        "time": time,
        "sni": e.sni,
        "host": e.host,
        "path": e.path,
        "status": e.status,
        "bytes": e.bytes,
        "duration_us": e.micros,
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// How long a connection that is not idle (mid-request-head, or writing a response) may
/// still take once the shutdown began.
const DRAIN: Duration = Duration::from_secs(1);

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<RwLock<Arc<State>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    limits: Limits,
    counters: Arc<Counters>,
    options: Options,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, state) = (acceptor.clone(), state.clone());
        let counters = counters.clone();
        let handshake_counters = counters.clone();
        let builder = http_builder(limits);
        let mut stopping = stop.clone();
        let mut in_handshake = stop.clone();
        let handshake = async move {
            match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => Some(t),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    handshake_counters.handshake_failed(
                        if e.to_string().contains("no server certificate") {
                            "no-certificate"
                        } else {
                            "error"
                        },
                    );
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    handshake_counters.handshake_failed("timeout");
                    None
                }
            }
        };
        // Only a connection past its handshake is waited for at shutdown; one still in the
        // handshake is dropped when the shutdown starts.
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = tokio::select! {
                t = handshake => match t {
                    Some(t) => t,
                    None => return,
                },
                _ = in_handshake.wait_for(|s| *s) => return,
            };
            // A TLS-ALPN-01 validation ends with the handshake (RFC 8737 §3).
            if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                let mut tls = tls;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                return;
            }
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.read().ok().map(|s| Arc::clone(&s));
                let started = std::time::Instant::now();
                let host = req
                    .headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned);
                let path = req.uri().path().to_owned();
                let document = request_host(&req)
                    .filter(|h| state.as_ref().is_some_and(|s| s.by_host.contains_key(h)))
                    .unwrap_or_else(|| "-".to_owned());
                let resp = answer(req, state.clone());
                let status = resp.status().as_u16();
                counters.request(status, &document);
                if options.access_log {
                    access_line(&AccessEntry {
                        sni: sni.as_deref(),
                        host: host.as_deref(),
                        path: &path,
                        status,
                        bytes: hyper::body::Body::size_hint(resp.body())
                            .exact()
                            .unwrap_or(0),
                        micros: started.elapsed().as_micros(),
                    });
                }
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(tls), svc));
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                },
                // At shutdown, idle connections close at once (graceful); one still reading
                // a request head, or writing a response, gets DRAIN and is then dropped.
                _ = async {
                    let _ = stopping.wait_for(|s| *s).await;
                    tokio::time::sleep(DRAIN).await;
                } => tracing::debug!(%peer, "dropped at shutdown"),
            }
        });
    }
    // Stop accepting at once: the listening socket goes away, so nothing more queues up.
    drop(listener);
    // Idle connections and those still reading a request head close now (hyper's graceful
    // shutdown); responses in flight finish. `Server::shutdown` bounds the wait.
    graceful.shutdown().await;
}

/// The HTTP/1.1 server settings of every connection (request-head cap and deadline).
fn http_builder(limits: Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    builder
}

/// Fuzzing entry point (the `serve_request` target in `fuzz/`): `raw` is what a client
/// sends after TLS; it goes through the same HTTP/1.1 server settings and request handler
/// as a real connection, for a fixed document at `ua-auto-config.example.com` and a policy
/// at `mta-sts.example.com`. Not part of the API.
#[doc(hidden)]
pub fn fuzz_request(raw: &[u8]) {
    use std::sync::OnceLock;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let Some(rt) = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
    }) else {
        return;
    };
    let served = |body: &'static [u8], content_type| {
        Arc::new(Served {
            body: Bytes::from_static(body),
            content_type,
            etag: "\"e\"".to_owned(),
            cache_control: "max-age=300".to_owned(),
        })
    };
    let mut by_host = HashMap::new();
    by_host.insert(
        "ua-auto-config.example.com".to_owned(),
        served(br#"{"protocols":{}}"#, "application/json"),
    );
    by_host.insert(
        "mta-sts.example.com".to_owned(),
        served(b"version: STSv1\r\n", "text/plain"),
    );
    let state = Arc::new(State {
        by_host,
        certs: HashMap::new(),
        default_cert: None,
        default_host: None,
        domains: 1,
        warnings: BTreeMap::new(),
        others: Candidates::default(),
        expiry: HashMap::new(),
        acme: None,
    });
    rt.block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let svc = service_fn(move |req| {
            let state = Some(state.clone());
            async move { Ok::<_, std::convert::Infallible>(answer(req, state)) }
        });
        let limits = Limits {
            handshake: Duration::from_millis(200),
            header: Duration::from_millis(200),
        };
        let conn = tokio::spawn(async move {
            let _ = http_builder(limits)
                .serve_connection(TokioIo::new(server), svc)
                .await;
        });
        let _ = client.write_all(raw).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(500), client.read_to_end(&mut out)).await;
        conn.abort();
    });
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

/// The host a request is for (`Host`, else an absolute-form URI), without a port or a
/// trailing dot, in lower case: the key of the document it gets.
fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(|h| {
            h.rsplit_once(':').map_or(h, |(n, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    n
                } else {
                    h
                }
            })
        })
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
}

fn answer<B>(req: Request<B>, state: Option<Arc<State>>) -> Response<Full<Bytes>> {
    let Some(state) = state else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "unavailable\n");
    };
    let Some(served) = request_host(&req).and_then(|h| state.by_host.get(&h)) else {
        return plain(StatusCode::NOT_FOUND, "unknown host\n");
    };
    let path = if served.content_type == "text/plain" {
        MTA_STS_PATH
    } else {
        WELL_KNOWN_PATH
    };
    if req.uri().path() != path {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    let head = req.method() == Method::HEAD;
    if !head && req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let not_modified = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == served.etag || t.trim() == "*")
        });
    let body = if head || not_modified {
        Bytes::new()
    } else {
        served.body.clone()
    };
    let mut r = Response::new(Full::new(body));
    if not_modified {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
    }
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(served.content_type),
    );
    if !not_modified {
        h.insert(
            CONTENT_LENGTH,
            hyper::header::HeaderValue::from(served.body.len()),
        );
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&served.etag) {
        h.insert(ETAG, v);
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&served.cache_control) {
        h.insert(CACHE_CONTROL, v);
    }
    h.insert(
        "access-control-allow-origin",
        hyper::header::HeaderValue::from_static("*"),
    );
    r
}
