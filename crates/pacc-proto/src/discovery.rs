//! The discovery state machine (spec §2.0 steps 2–4): the primary path (RET-1 … RET-13) and
//! the MX fallback gated on MTA-STS (MX-1 … MX-10).
//!
//! Call order: create with [`Discovery::new`]; drain [`Discovery::poll_request`] and start
//! **all** returned requests at once; feed each result to [`Discovery::handle`] as it
//! arrives; after every `handle`, drain `poll_request` again and call [`Discovery::step`]
//! until it returns [`Step::Done`]. If the overall deadline passes, call
//! [`Discovery::expire`]. Requests still running when the machine is done may be dropped.
//!
//! Concurrency is planned here: the primary TXT lookup and fetch start together; with
//! [`Options::speculative`] the fallback's MTA-STS record, policy and MX lookups start
//! alongside them, and the per-MX-host retrievals as soon as the MX answer is in. Nothing
//! from the fallback is used unless the primary path is *absent* (RET-12, Q-11, MX-10): a
//! usable primary result always wins, and an integrity failure of the primary stops
//! discovery.
//!
//! The outcome is a pure function of the results, never of their arrival order: each check
//! waits for the inputs that come before it in a fixed order.

mod fallback;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

pub use fallback::{FallbackFailure, FallbackReport, HostReport, MxHostSource, MxSource};

use crate::digest::{self, Algorithm, DigestCheck, RecordVerdict, SeenRecord};
use crate::document::{Config, DocumentError, ParsedDocument};
use crate::fetch::{FailureClass, FetchError, FetchResult, FetchedBody, TlsInfo};
use crate::mta_sts::{self, Mode};
use crate::mx::{self, MxRecord, MxUriStrategy};
use crate::name::Domain;

/// Path of the configuration document on every host (RET-3).
pub const WELL_KNOWN_PATH: &str = "/.well-known/user-agent-configuration.json";

/// The configuration URL for a domain (RET-3): no query, the address is never sent
/// (SEC-10).
pub fn config_url(domain: &Domain) -> String {
    format!("https://ua-auto-config.{domain}{WELL_KNOWN_PATH}")
}

/// The owner name of the digest record (DIG-1).
pub fn digest_owner(domain: &Domain) -> String {
    format!("_ua-auto-config.{domain}")
}

/// How discovery runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Options {
    /// Try the MX fallback when the primary path is absent (default: yes).
    pub mx_fallback: bool,
    /// Start the fallback's lookups and fetches alongside the primary path instead of after
    /// it (default: yes). Without it, nothing is asked of MX-derived hosts until the primary
    /// is absent and the MTA-STS policy has authorised them.
    pub speculative: bool,
    /// How the location is derived from an MX host.
    pub mx_strategy: MxUriStrategy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mx_fallback: true,
            speculative: true,
            mx_strategy: MxUriStrategy::default(),
        }
    }
}

/// Identifies one request so the shell can hand back its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u32);

/// An effect the machine needs performed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Look up every TXT RR at `name`; answer with [`Response::Txt`].
    Txt {
        /// The owner name (no trailing dot).
        name: String,
    },
    /// Look up the MX RRset of `name`; answer with [`Response::Mx`].
    Mx {
        /// The domain (no trailing dot).
        name: String,
    },
    /// GET `url` over HTTPS with TLS ≥ 1.3 if `tls13_only`, else ≥ 1.2, a validated
    /// certificate for `host`, no redirects, no cookies or credentials, the body capped at
    /// [`crate::fetch::MAX_BODY`]; answer with [`Response::Fetch`].
    Fetch {
        /// The URL.
        url: String,
        /// Its host (SNI and certificate name).
        host: Domain,
        /// Require TLS 1.3 (RET-5, Q-17).
        tls13_only: bool,
    },
}

/// Why a DNS lookup gave no records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DnsFailure {
    /// NXDOMAIN or NODATA: there is nothing there.
    #[error("no such record")]
    NotFound,
    /// SERVFAIL, REFUSED, timeout, or an unusable answer.
    #[error("lookup failed: {detail}")]
    Temporary {
        /// The resolver's words.
        detail: String,
    },
    /// The name is an alias whose CNAME chain comes back to a name already in it. RFC 1034
    /// §3.6.2 makes this an error, not an answer: it is never "absent" and never lets the MX
    /// fallback start; like the SERVFAIL a recursive resolver returns, it is temporary.
    #[error("the CNAME chain loops: {}", chain.join(" -> "))]
    CnameLoop {
        /// The names, from the one asked to the repeated one.
        chain: Vec<String>,
    },
    /// More aliases than [`MAX_CNAME_CHAIN`] before a name with records.
    #[error("the CNAME chain is longer than {limit} aliases: {}", chain.join(" -> "))]
    CnameChainTooLong {
        /// The names followed.
        chain: Vec<String>,
        /// The bound.
        limit: usize,
    },
}

/// Most CNAME hops followed for one lookup (resolvers use about 8 to 16).
pub const MAX_CNAME_CHAIN: usize = 8;

impl DnsFailure {
    /// Only NXDOMAIN/NODATA means nothing is there (RET-12 absent).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DnsFailure::NotFound)
    }

    /// Stable kind string (also the JSON `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            DnsFailure::NotFound => "not-found",
            DnsFailure::Temporary { .. } => "temporary",
            DnsFailure::CnameLoop { .. } => "cname-loop",
            DnsFailure::CnameChainTooLong { .. } => "cname-chain-too-long",
        }
    }
}

/// TXT RRs, each a list of character-strings (not yet joined, DIG-8).
pub type TxtResult = Result<Vec<Vec<Vec<u8>>>, DnsFailure>;
/// MX RRs.
pub type MxResult = Result<Vec<MxRecord>, DnsFailure>;

/// The result of a performed [`Request`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Response {
    /// For [`Request::Txt`].
    Txt(TxtResult),
    /// For [`Request::Mx`].
    Mx(MxResult),
    /// For [`Request::Fetch`].
    Fetch(FetchResult),
}

impl Response {
    /// One line on what came back, as the trail shows it: the number of TXT records, the
    /// MX records, the fetched body's size and TLS, or the error.
    pub fn summary(&self) -> String {
        match self {
            Response::Txt(Ok(rrs)) => format!("{} TXT record(s)", rrs.len()),
            Response::Mx(Ok(mx)) => mx
                .iter()
                .map(|m| format!("{} {}", m.preference, m.exchange))
                .collect::<Vec<_>>()
                .join(", "),
            Response::Fetch(Ok(b)) => format!(
                "HTTP 200, {} bytes, {} {}",
                b.bytes.len(),
                b.tls.version,
                b.tls.cipher
            ),
            Response::Txt(Err(e)) | Response::Mx(Err(e)) => e.to_string(),
            Response::Fetch(Err(e)) => e.to_string(),
        }
    }
}

/// What the machine wants next.
#[derive(Debug)]
pub enum Step {
    /// Waiting for responses to outstanding requests.
    Pending,
    /// Finished.
    Done(Box<Report>),
}

/// How the configuration was found (the JSON `source.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `https://ua-auto-config.<domain>/.well-known/…` (RET-3).
    WellKnown,
    /// From the domain's MX hosts, authorised by its MTA-STS policy (§2.3).
    MxFallback,
}

/// A verified configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// How it was found.
    pub method: Method,
    /// The URL its bytes came from (the first MX host's, for the fallback).
    pub url: String,
    /// The algorithm of the matching record.
    pub algorithm: Algorithm,
    /// The text of the matching record.
    pub record: String,
    /// The MTA-STS authorisation and every MX host, for the fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mx: Option<MxSource>,
    /// The document.
    #[serde(flatten)]
    pub document: ParsedDocument,
    /// The exact bytes (hashed and parsed).
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// Why discovery did not produce a configuration. `kind` strings are stable API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The fetch failed.
    #[error("{0}")]
    Fetch(#[serde(rename = "fetch")] FetchError),
    /// The document was fetched but no UAAC1 record is published (DIG-10: absent).
    #[error("no valid UAAC1 record is published at {owner}{}", seen_note(*.seen))]
    DigestNotPublished {
        /// The owner name.
        owner: String,
        /// How many TXT RRs were there (all unusable).
        seen: usize,
    },
    /// The TXT lookup failed temporarily.
    #[error("the digest lookup at {owner} failed: {failure}")]
    DigestLookup {
        /// The owner name.
        owner: String,
        /// What failed.
        failure: DnsFailure,
    },
    /// Records are published but none matches the body (DIG-10: integrity).
    #[error(
        "the document served at {url} does not match any of the {valid} valid digest record(s) at {owner}; it may have been tampered with or the provider has not updated DNS"
    )]
    DigestMismatch {
        /// The URL.
        url: String,
        /// The owner.
        owner: String,
        /// How many valid records.
        valid: usize,
    },
    /// The digest matched but the document is unusable (RET-12: integrity).
    #[error("the document at {url} matches its digest but is unusable: {error}")]
    InvalidDocument {
        /// The URL.
        url: String,
        /// Why.
        error: DocumentError,
    },
    /// The address's domain itself does not exist in DNS (NXDOMAIN for the name): a
    /// misspelt address, most likely. Found by the shell after an absent result, so that it
    /// is said instead of "nothing is published".
    #[error("{domain} does not exist in DNS: check the spelling of the address")]
    DomainNotFound {
        /// The domain.
        domain: String,
        /// What discovery itself found (absent).
        primary: Box<DiscoveryError>,
    },
    /// No DNS server could be asked at all (the configured ones refuse, or there is no
    /// network): found by the shell at once instead of after the deadline.
    #[error("no DNS server could be reached: {detail}")]
    DnsUnreachable {
        /// The servers tried and the operating system's error.
        detail: String,
    },
    /// The primary path was absent and the MX fallback failed too.
    #[error("{failure} (the primary path was absent: {primary})")]
    MxFallback {
        /// Why the primary path was absent.
        primary: Box<DiscoveryError>,
        /// What stopped the fallback.
        failure: FallbackFailure,
    },
}

fn seen_note(seen: usize) -> String {
    if seen == 0 {
        String::new()
    } else {
        format!(" ({seen} TXT record(s) there, none a valid UAAC1 record)")
    }
}

// `DocumentError` is reported by its message in JSON.
impl Serialize for DocumentError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl DiscoveryError {
    /// The stable kind string.
    pub fn kind(&self) -> &'static str {
        match self {
            DiscoveryError::Fetch(f) => f.kind(),
            DiscoveryError::DigestNotPublished { .. } => "digest-not-published",
            DiscoveryError::DigestLookup { .. } => "digest-lookup-failed",
            DiscoveryError::DigestMismatch { .. } => "digest-mismatch",
            DiscoveryError::InvalidDocument { .. } => "invalid-document",
            DiscoveryError::DomainNotFound { .. } => "domain-not-found",
            DiscoveryError::DnsUnreachable { .. } => "dns-unreachable",
            DiscoveryError::MxFallback { failure, .. } => failure.kind(),
        }
    }

    /// RET-12 class: only [`FailureClass::Absent`] lets the MX fallback run.
    pub fn class(&self) -> FailureClass {
        match self {
            DiscoveryError::Fetch(f) => f.class(),
            DiscoveryError::DigestNotPublished { .. } => FailureClass::Absent,
            DiscoveryError::DigestLookup { .. } => FailureClass::Temporary,
            DiscoveryError::DigestMismatch { .. } | DiscoveryError::InvalidDocument { .. } => {
                FailureClass::Integrity
            }
            DiscoveryError::DomainNotFound { .. } => FailureClass::Absent,
            DiscoveryError::DnsUnreachable { .. } => FailureClass::Temporary,
            DiscoveryError::MxFallback { failure, .. } => failure.class(),
        }
    }
}

/// One performed step of the validation trail.
#[derive(Debug, Clone, Serialize)]
pub struct TrailEntry {
    /// `txt`, `mx` or `fetch`.
    pub step: &'static str,
    /// What it was for: `primary`, `mta-sts`, `mx`, `mx-host`.
    pub purpose: &'static str,
    /// The name or URL.
    pub target: String,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
    /// One-line result.
    pub result: String,
}

/// Everything discovery found out, successful or not.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The domain discovered.
    pub domain: Domain,
    /// The configuration URL.
    pub url: String,
    /// The digest owner name.
    pub digest_owner: String,
    /// The outcome.
    #[serde(skip)]
    pub outcome: Result<Verified, DiscoveryError>,
    /// Every TXT RR seen at the primary digest owner, with its verdict.
    pub records: Vec<SeenRecord>,
    /// The response of the fetch whose bytes were used (or of the primary fetch).
    pub response: Option<FetchedBody>,
    /// What the MX fallback did, if it ran.
    pub fallback: Option<FallbackReport>,
    /// The steps performed.
    pub trail: Vec<TrailEntry>,
}

impl Report {
    /// The TLS parameters of the document fetch.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.response.as_ref().map(|r| &r.tls)
    }
}

/// A retrieval of one configuration location: fetch + digest lookup (§2.1, §2.2).
#[derive(Debug)]
struct Retrieval {
    url: String,
    host: Domain,
    owner: String,
    txt: Option<TxtResult>,
    fetch: Option<FetchResult>,
}

/// A retrieval whose digest matched.
#[derive(Debug, Clone)]
struct Authentic {
    bytes: Vec<u8>,
    algorithm: Algorithm,
    record: String,
}

impl Retrieval {
    fn new(url: String, host: Domain, owner: String) -> Self {
        Retrieval {
            url,
            host,
            owner,
            txt: None,
            fetch: None,
        }
    }

    /// A fetch failure decides on its own (RET-12: the TXT answer cannot change it);
    /// otherwise both results are needed.
    fn decided(&self) -> bool {
        matches!(self.fetch, Some(Err(_))) || (self.fetch.is_some() && self.txt.is_some())
    }

    /// Verify (RET-11: digest before JSON). Call only when [`Retrieval::decided`].
    fn verify(&self) -> (Result<Authentic, DiscoveryError>, Vec<SeenRecord>) {
        let rrs: &[Vec<Vec<u8>>] = match &self.txt {
            Some(Ok(rrs)) => rrs,
            _ => &[],
        };
        let body = match &self.fetch {
            Some(Ok(body)) => body,
            Some(Err(e)) => {
                let mut seen = digest::check(&[], rrs).1;
                // Without a body nothing can match; drop the meaningless flag.
                for r in &mut seen {
                    if let RecordVerdict::Valid { matches, .. } = &mut r.verdict {
                        *matches = false;
                    }
                }
                return (Err(DiscoveryError::Fetch(e.clone())), seen);
            }
            None => {
                return (
                    Err(DiscoveryError::Fetch(FetchError::Timeout {
                        host: self.host.to_string(),
                        stage: "not started".to_owned(),
                    })),
                    Vec::new(),
                );
            }
        };
        if let Some(Err(failure)) = &self.txt
            && !failure.is_not_found()
        {
            let failure = failure.clone();
            return (
                Err(DiscoveryError::DigestLookup {
                    owner: self.owner.clone(),
                    failure,
                }),
                Vec::new(),
            );
        }
        let (check, seen) = digest::check(&body.bytes, rrs);
        let outcome = match check {
            DigestCheck::NotPublished => Err(DiscoveryError::DigestNotPublished {
                owner: self.owner.clone(),
                seen: rrs.len(),
            }),
            DigestCheck::Mismatch => Err(DiscoveryError::DigestMismatch {
                url: self.url.clone(),
                owner: self.owner.clone(),
                valid: seen
                    .iter()
                    .filter(|r| matches!(r.verdict, RecordVerdict::Valid { .. }))
                    .count(),
            }),
            DigestCheck::Match { record, algorithm } => Ok(Authentic {
                bytes: body.bytes.clone(),
                algorithm,
                record: seen[record].text.clone(),
            }),
        };
        (outcome, seen)
    }

    fn response(&self) -> Option<FetchedBody> {
        self.fetch.as_ref().and_then(|f| f.as_ref().ok()).cloned()
    }
}

/// What a request id is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    PrimaryTxt,
    PrimaryFetch,
    StsTxt,
    StsPolicy,
    Mx,
    HostTxt(usize),
    HostFetch(usize),
}

/// One derived location and the MX hosts it serves.
#[derive(Debug)]
struct HostRetrieval {
    mx_hosts: Vec<Domain>,
    retrieval: Retrieval,
}

/// The discovery machine.
#[derive(Debug)]
pub struct Discovery {
    domain: Domain,
    options: Options,
    next_id: u32,
    queue: VecDeque<(RequestId, Request)>,
    slots: HashMap<RequestId, Slot>,
    primary: Retrieval,
    primary_verdict: Option<(Result<Authentic, DiscoveryError>, Vec<SeenRecord>)>,
    fallback_started: bool,
    sts_txt: Option<TxtResult>,
    sts_policy: Option<FetchResult>,
    mx: Option<MxResult>,
    hosts_started: bool,
    hosts: Vec<HostRetrieval>,
    trail: Vec<TrailEntry>,
    expired: bool,
    done: bool,
}

impl Discovery {
    /// Start discovery for `domain` (already normalised, RET-2) with default options.
    pub fn new(domain: Domain) -> Self {
        Self::with_options(domain, Options::default())
    }

    /// Start discovery with `options`.
    pub fn with_options(domain: Domain, options: Options) -> Self {
        let host = domain
            .with_prefix("ua-auto-config")
            .unwrap_or_else(|_| domain.clone());
        let primary = Retrieval::new(config_url(&domain), host, digest_owner(&domain));
        let mut d = Discovery {
            domain,
            options,
            next_id: 0,
            queue: VecDeque::new(),
            slots: HashMap::new(),
            primary,
            primary_verdict: None,
            fallback_started: false,
            sts_txt: None,
            sts_policy: None,
            mx: None,
            hosts_started: false,
            hosts: Vec::new(),
            trail: Vec::new(),
            expired: false,
            done: false,
        };
        let (owner, url, host) = (
            d.primary.owner.clone(),
            d.primary.url.clone(),
            d.primary.host.clone(),
        );
        d.ask(Slot::PrimaryTxt, Request::Txt { name: owner });
        d.ask(
            Slot::PrimaryFetch,
            Request::Fetch {
                url,
                host,
                tls13_only: true,
            },
        );
        if options.mx_fallback && options.speculative {
            d.start_fallback();
        }
        d
    }

    /// The next request to perform, if any. Drain it completely before waiting.
    pub fn poll_request(&mut self) -> Option<(RequestId, Request)> {
        self.queue.pop_front()
    }

    fn ask(&mut self, slot: Slot, request: Request) {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        if self.expired {
            // Past the deadline nothing new is started: record it as timed out at once.
            let response = match &request {
                Request::Txt { .. } | Request::Mx { .. } => {
                    let f = DnsFailure::Temporary {
                        detail: "not started: the overall deadline had passed".to_owned(),
                    };
                    if matches!(request, Request::Mx { .. }) {
                        Response::Mx(Err(f))
                    } else {
                        Response::Txt(Err(f))
                    }
                }
                Request::Fetch { host, .. } => Response::Fetch(Err(FetchError::Timeout {
                    host: host.to_string(),
                    stage: "overall deadline".to_owned(),
                })),
            };
            self.store(slot, response);
        } else {
            self.slots.insert(id, slot);
            self.queue.push_back((id, request));
        }
    }

    fn start_fallback(&mut self) {
        if self.fallback_started {
            return;
        }
        self.fallback_started = true;
        let d = self.domain.clone();
        self.ask(
            Slot::StsTxt,
            Request::Txt {
                name: mta_sts::txt_owner(&d),
            },
        );
        let policy_host = d.with_prefix("mta-sts").unwrap_or_else(|_| d.clone());
        // RFC 8461 §3.3: HTTPS with a valid certificate; TLS 1.2 suffices for the policy.
        self.ask(
            Slot::StsPolicy,
            Request::Fetch {
                url: mta_sts::policy_url(&d),
                host: policy_host,
                tls13_only: false,
            },
        );
        self.ask(
            Slot::Mx,
            Request::Mx {
                name: d.to_string(),
            },
        );
    }

    /// Start the per-host retrievals for the selected MX hosts (MX-5, MX-6), one per
    /// distinct derived location (MX-7: identical URIs are fetched once).
    fn start_hosts(&mut self, selected: &[Domain]) {
        if self.hosts_started {
            return;
        }
        self.hosts_started = true;
        for h in selected {
            let Ok(derived) = self.options.mx_strategy.derive(h) else {
                continue; // reported when the fallback is decided
            };
            if let Some(existing) = self
                .hosts
                .iter_mut()
                .find(|x| x.retrieval.url == derived.url)
            {
                existing.mx_hosts.push(h.clone());
                continue;
            }
            let i = self.hosts.len();
            self.hosts.push(HostRetrieval {
                mx_hosts: vec![h.clone()],
                retrieval: Retrieval::new(
                    derived.url.clone(),
                    derived.host.clone(),
                    derived.digest_owner.clone(),
                ),
            });
            self.ask(
                Slot::HostTxt(i),
                Request::Txt {
                    name: derived.digest_owner,
                },
            );
            self.ask(
                Slot::HostFetch(i),
                Request::Fetch {
                    url: derived.url,
                    host: derived.host,
                    tls13_only: true,
                },
            );
        }
    }

    /// Feed the result of request `id`, which took `elapsed`.
    pub fn handle(&mut self, id: RequestId, response: Response, elapsed: Duration) {
        let Some(slot) = self.slots.remove(&id) else {
            return; // unknown or repeated id: a shell bug; it must not decide anything
        };
        let kind_ok = matches!(
            (slot, &response),
            (
                Slot::PrimaryTxt | Slot::StsTxt | Slot::HostTxt(_),
                Response::Txt(_)
            ) | (
                Slot::PrimaryFetch | Slot::StsPolicy | Slot::HostFetch(_),
                Response::Fetch(_)
            ) | (Slot::Mx, Response::Mx(_))
        );
        if !kind_ok {
            self.slots.insert(id, slot);
            return;
        }
        self.trail.push(self.trail_entry(slot, &response, elapsed));
        self.store(slot, response);
    }

    fn trail_entry(&self, slot: Slot, response: &Response, elapsed: Duration) -> TrailEntry {
        let (purpose, target) = match slot {
            Slot::PrimaryTxt => ("primary", self.primary.owner.clone()),
            Slot::PrimaryFetch => ("primary", self.primary.url.clone()),
            Slot::StsTxt => ("mta-sts", mta_sts::txt_owner(&self.domain)),
            Slot::StsPolicy => ("mta-sts", mta_sts::policy_url(&self.domain)),
            Slot::Mx => ("mx", self.domain.to_string()),
            Slot::HostTxt(i) => ("mx-host", self.hosts[i].retrieval.owner.clone()),
            Slot::HostFetch(i) => ("mx-host", self.hosts[i].retrieval.url.clone()),
        };
        let step = match response {
            Response::Txt(_) => "txt",
            Response::Mx(_) => "mx",
            Response::Fetch(_) => "fetch",
        };
        TrailEntry {
            step,
            purpose,
            target,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            result: response.summary(),
        }
    }

    fn store(&mut self, slot: Slot, response: Response) {
        match (slot, response) {
            (Slot::PrimaryTxt, Response::Txt(r)) => self.primary.txt = Some(r),
            (Slot::PrimaryFetch, Response::Fetch(r)) => self.primary.fetch = Some(r),
            (Slot::StsTxt, Response::Txt(r)) => self.sts_txt = Some(r),
            (Slot::StsPolicy, Response::Fetch(r)) => self.sts_policy = Some(r),
            (Slot::Mx, Response::Mx(r)) => {
                // Speculative mode starts the host retrievals as soon as the hosts are known.
                let selected = match &r {
                    Ok(records) => mx::select(records).ok().map(|(_, hosts)| hosts),
                    Err(_) => None,
                };
                self.mx = Some(r);
                if let (true, Some(hosts)) = (self.options.speculative, selected) {
                    self.start_hosts(&hosts);
                }
            }
            (Slot::HostTxt(i), Response::Txt(r)) => self.hosts[i].retrieval.txt = Some(r),
            (Slot::HostFetch(i), Response::Fetch(r)) => self.hosts[i].retrieval.fetch = Some(r),
            _ => {}
        }
    }

    /// Advance: [`Step::Done`] once the outcome is decided (returned once). Drain
    /// [`Discovery::poll_request`] afterwards: deciding may start new requests.
    pub fn step(&mut self) -> Step {
        if self.done || !self.primary.decided() {
            return Step::Pending;
        }
        // Verified once; later steps only wait for the fallback.
        let (primary, primary_records) = self
            .primary_verdict
            .get_or_insert_with(|| self.primary.verify())
            .clone();
        let primary_error = match primary {
            Ok(authentic) => {
                let outcome = parse(authentic, Method::WellKnown, &self.primary.url, None);
                let response = self.primary.response();
                return self.finish(outcome, primary_records, response, false, None);
            }
            Err(e) => e,
        };
        // only an absent primary lets the fallback run.
        if primary_error.class() != FailureClass::Absent || !self.options.mx_fallback {
            let response = self.primary.response();
            return self.finish(Err(primary_error), primary_records, response, false, None);
        }
        self.start_fallback();
        match self.decide_fallback() {
            None => Step::Pending,
            Some(Ok((verified, response))) => {
                self.finish(Ok(verified), primary_records, Some(response), true, None)
            }
            Some(Err(failure)) => {
                let step = failure.step();
                let response = self.primary.response();
                let error = DiscoveryError::MxFallback {
                    primary: Box::new(primary_error),
                    failure,
                };
                self.finish(Err(error), primary_records, response, false, Some(step))
            }
        }
    }

    /// The fallback's checks, in a fixed order; each waits for its input (so the outcome
    /// does not depend on arrival order). `None`: not decided yet.
    fn decide_fallback(&mut self) -> Option<Result<(Verified, FetchedBody), FallbackFailure>> {
        let sts = match self.sts_txt.as_ref()? {
            Ok(rrs) => match mta_sts::parse_txt(rrs) {
                Ok(r) => r,
                Err(e) => return Some(Err(FallbackFailure::MtaStsRecord(e))),
            },
            Err(DnsFailure::NotFound) => {
                return Some(Err(FallbackFailure::MtaStsRecord(
                    mta_sts::StsTxtError::Missing,
                )));
            }
            Err(e) => return Some(Err(FallbackFailure::MtaStsLookup(e.clone()))),
        };
        let policy = match self.sts_policy.as_ref()? {
            Ok(body) => match mta_sts::parse_policy(&body.bytes) {
                Ok(p) => p,
                Err(e) => return Some(Err(FallbackFailure::PolicyInvalid(e))),
            },
            Err(e) => return Some(Err(FallbackFailure::PolicyFetch(e.clone()))),
        };
        if policy.mode != Mode::Enforce {
            return Some(Err(FallbackFailure::NotEnforcing { mode: policy.mode }));
        }
        let (preference, selected) = match self.mx.as_ref()? {
            Ok(records) => match mx::select(records) {
                Ok(s) => s,
                Err(e) => return Some(Err(FallbackFailure::Mx(e))),
            },
            Err(DnsFailure::NotFound) => {
                return Some(Err(FallbackFailure::Mx(mx::MxSelectError::NoMx)));
            }
            Err(e) => return Some(Err(FallbackFailure::MxLookup(e.clone()))),
        };
        // MX-4: every selected host must be authorised by the policy.
        if let Some(h) = selected.iter().find(|h| !policy.authorizes(h)) {
            let patterns = policy
                .mx
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Some(Err(FallbackFailure::NotAuthorized {
                host: h.to_string(),
                patterns,
            }));
        }
        for h in &selected {
            if let Err(e) = self.options.mx_strategy.derive(h) {
                return Some(Err(FallbackFailure::Mx(mx::MxSelectError::BadExchange {
                    exchange: h.to_string(),
                    reason: e.to_string(),
                })));
            }
        }
        // Without speculation, MX-derived hosts are contacted only now, once authorised.
        self.start_hosts(&selected);
        let mut authentic: Vec<(usize, Authentic)> = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if !h.retrieval.decided() {
                return None;
            }
            match h.retrieval.verify().0 {
                Ok(a) => authentic.push((i, a)),
                Err(error) => {
                    return Some(Err(FallbackFailure::Host {
                        host: h
                            .mx_hosts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        error: Box::new(error),
                    }));
                }
            }
        }
        let (first_i, first) = authentic.first()?.clone();
        // MX-7: all configurations must be bitwise identical.
        let differing: Vec<String> = authentic
            .iter()
            .filter(|(_, a)| a.bytes != first.bytes)
            .flat_map(|(i, _)| self.hosts[*i].mx_hosts.iter().map(ToString::to_string))
            .collect();
        if !differing.is_empty() {
            let first_hosts = self.hosts[first_i].mx_hosts.iter().map(ToString::to_string);
            return Some(Err(FallbackFailure::Differ {
                hosts: first_hosts
                    .chain(differing)
                    .collect::<Vec<_>>()
                    .join(" vs "),
            }));
        }
        let mut sources = Vec::new();
        for (i, a) in &authentic {
            for mx_host in &self.hosts[*i].mx_hosts {
                sources.push(MxHostSource {
                    mx_host: mx_host.clone(),
                    url: self.hosts[*i].retrieval.url.clone(),
                    digest_owner: self.hosts[*i].retrieval.owner.clone(),
                    algorithm: a.algorithm,
                    record: a.record.clone(),
                });
            }
        }
        let source = MxSource {
            policy_id: sts.id,
            mode: policy.mode,
            preference,
            strategy: self.options.mx_strategy,
            hosts: sources,
        };
        let url = self.hosts[first_i].retrieval.url.clone();
        let response = self.hosts[first_i].retrieval.response()?;
        Some(
            parse(first, Method::MxFallback, &url, Some(source))
                .map(|v| (v, response))
                .map_err(|e| match e {
                    DiscoveryError::InvalidDocument { error, .. } => {
                        FallbackFailure::InvalidDocument(error)
                    }
                    other => FallbackFailure::Host {
                        host: url.clone(),
                        error: Box::new(other),
                    },
                }),
        )
    }

    /// The overall deadline passed: decide now, treating every missing response as timed
    /// out (RET-10). Returns `None` if the outcome was already reported.
    pub fn expire(&mut self) -> Option<Report> {
        if self.done {
            return None;
        }
        self.expired = true;
        let outstanding: Vec<(RequestId, Slot)> = self.slots.drain().collect();
        self.queue.clear();
        for (_, slot) in outstanding {
            let host = |r: &Retrieval| r.host.to_string();
            let response = match slot {
                Slot::PrimaryTxt | Slot::StsTxt | Slot::HostTxt(_) => {
                    Response::Txt(Err(DnsFailure::Temporary {
                        detail: "no answer before the overall deadline".to_owned(),
                    }))
                }
                Slot::Mx => Response::Mx(Err(DnsFailure::Temporary {
                    detail: "no answer before the overall deadline".to_owned(),
                })),
                Slot::PrimaryFetch => Response::Fetch(Err(self.timeout(host(&self.primary)))),
                Slot::StsPolicy => {
                    Response::Fetch(Err(self.timeout(format!("mta-sts.{}", self.domain))))
                }
                Slot::HostFetch(i) => {
                    Response::Fetch(Err(self.timeout(host(&self.hosts[i].retrieval))))
                }
            };
            self.store(slot, response);
        }
        // Everything that could be missing is filled, so this decides.
        match self.step() {
            Step::Done(r) => Some(*r),
            Step::Pending => None,
        }
    }

    fn timeout(&self, host: String) -> FetchError {
        FetchError::Timeout {
            host,
            stage: "overall deadline".to_owned(),
        }
    }

    fn finish(
        &mut self,
        outcome: Result<Verified, DiscoveryError>,
        records: Vec<SeenRecord>,
        response: Option<FetchedBody>,
        fallback_used: bool,
        stopped_at: Option<&'static str>,
    ) -> Step {
        self.done = true;
        self.queue.clear();
        // A failed fetch decides the primary path before its TXT answer (RET-12); one that
        // arrived since (while the fallback ran) is still judged for the report.
        let records = if records.is_empty() && matches!(self.primary.fetch, Some(Err(_))) {
            self.primary.verify().1
        } else {
            records
        };
        let fallback = self
            .fallback_started
            .then(|| self.fallback_report(fallback_used, stopped_at));
        Step::Done(Box::new(Report {
            domain: self.domain.clone(),
            url: self.primary.url.clone(),
            digest_owner: self.primary.owner.clone(),
            outcome,
            records,
            response,
            fallback,
            trail: std::mem::take(&mut self.trail),
        }))
    }

    fn fallback_report(&self, used: bool, stopped_at: Option<&'static str>) -> FallbackReport {
        let mta_sts_id = match &self.sts_txt {
            Some(Ok(rrs)) => mta_sts::parse_txt(rrs).ok().map(|r| r.id),
            _ => None,
        };
        let policy = match &self.sts_policy {
            Some(Ok(b)) => mta_sts::parse_policy(&b.bytes).ok(),
            _ => None,
        };
        let mx = match &self.mx {
            Some(Ok(r)) => r.clone(),
            _ => Vec::new(),
        };
        let selected = mx::select(&mx).map(|(_, h)| h).unwrap_or_default();
        let hosts = self
            .hosts
            .iter()
            .map(|h| {
                let (result, records) = if h.retrieval.decided() {
                    let (r, seen) = h.retrieval.verify();
                    (
                        r.map_or_else(|e| e.to_string(), |_| "verified".to_owned()),
                        seen,
                    )
                } else {
                    ("not finished".to_owned(), Vec::new())
                };
                HostReport {
                    mx_hosts: h.mx_hosts.clone(),
                    url: h.retrieval.url.clone(),
                    digest_owner: h.retrieval.owner.clone(),
                    records,
                    response: h.retrieval.response(),
                    result,
                }
            })
            .collect();
        FallbackReport {
            used,
            mta_sts_id,
            policy,
            mx,
            selected,
            hosts,
            stopped_at,
        }
    }
}

/// Read the authenticated bytes as a document (J-*).
fn parse(
    a: Authentic,
    method: Method,
    url: &str,
    mx: Option<MxSource>,
) -> Result<Verified, DiscoveryError> {
    let document =
        Config::from_bytes(&a.bytes).map_err(|error| DiscoveryError::InvalidDocument {
            url: url.to_owned(),
            error,
        })?;
    Ok(Verified {
        method,
        url: url.to_owned(),
        algorithm: a.algorithm,
        record: a.record,
        mx,
        document,
        bytes: a.bytes,
    })
}

#[cfg(test)]
mod tests;
