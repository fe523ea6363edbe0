//! The discovery state machine, primary path (spec §2.0 steps 2–4, RET-1 … RET-13).
//!
//! Call order: create with [`Discovery::new`]; drain [`Discovery::poll_request`] and start
//! **all** returned requests at once (the TXT lookup and the fetch run concurrently); feed
//! each result to [`Discovery::handle`] as it arrives; after every `handle`, call
//! [`Discovery::step`] until it returns [`Step::Done`]. Requests that are still running when
//! the machine is done may be dropped.
//!
//! The outcome is a pure function of the two results (so it never depends on which one
//! arrived first); the machine finishes early only when the other result cannot change it
//! (a fetch that found nothing or failed TLS decides regardless of the TXT answer).

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::digest::{self, Algorithm, DigestCheck, SeenRecord};
use crate::document::{Config, DocumentError, ParsedDocument};
use crate::fetch::{FailureClass, FetchError, FetchResult, FetchedBody, TlsInfo};
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
    /// GET `url` over HTTPS with TLS ≥ `min_tls_13 ? 1.3 : 1.2`, a validated certificate for
    /// `host`, no redirects, no cookies or credentials, the body capped at
    /// [`crate::fetch::MAX_BODY`]; answer with [`Response::Fetch`].
    Fetch {
        /// The URL.
        url: String,
        /// Its host (SNI and certificate name).
        host: Domain,
        /// Require TLS 1.3 (RET-5).
        tls13_only: bool,
    },
}

/// Why a TXT lookup gave no records.
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
}

/// The result of a performed [`Request`].
#[derive(Debug, Clone)]
pub enum Response {
    /// TXT RRs, each a list of character-strings (not yet joined, DIG-8).
    Txt(Result<Vec<Vec<Vec<u8>>>, DnsFailure>),
    /// The fetch.
    Fetch(FetchResult),
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
}

/// A verified configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// How it was found.
    pub method: Method,
    /// The URL its bytes came from.
    pub url: String,
    /// The algorithm of the matching record.
    pub algorithm: Algorithm,
    /// The text of the matching record.
    pub record: String,
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
        }
    }

    /// RET-12 class: only [`FailureClass::Absent`] lets the MX fallback run (Q-11).
    pub fn class(&self) -> FailureClass {
        match self {
            DiscoveryError::Fetch(f) => f.class(),
            DiscoveryError::DigestNotPublished { .. } => FailureClass::Absent,
            DiscoveryError::DigestLookup { .. } => FailureClass::Temporary,
            DiscoveryError::DigestMismatch { .. } | DiscoveryError::InvalidDocument { .. } => {
                FailureClass::Integrity
            }
        }
    }
}

/// One performed step of the validation trail.
#[derive(Debug, Clone, Serialize)]
pub struct TrailEntry {
    /// `txt` or `fetch`.
    pub step: &'static str,
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
    /// Every TXT RR seen at the owner, with its verdict.
    pub records: Vec<SeenRecord>,
    /// The fetch's response details, if it succeeded.
    pub response: Option<FetchedBody>,
    /// The steps performed.
    pub trail: Vec<TrailEntry>,
}

impl Report {
    /// The TLS parameters of the document fetch.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.response.as_ref().map(|r| &r.tls)
    }
}

/// The primary-path discovery machine.
#[derive(Debug)]
pub struct Discovery {
    domain: Domain,
    url: String,
    owner: String,
    queue: VecDeque<(RequestId, Request)>,
    txt_id: RequestId,
    fetch_id: RequestId,
    txt: Option<Result<Vec<Vec<Vec<u8>>>, DnsFailure>>,
    fetch: Option<FetchResult>,
    trail: Vec<TrailEntry>,
    done: bool,
}

impl Discovery {
    /// Start discovery for `domain` (already normalised, RET-2).
    pub fn new(domain: Domain) -> Self {
        let url = config_url(&domain);
        let owner = digest_owner(&domain);
        let host = domain
            .with_prefix("ua-auto-config")
            .unwrap_or_else(|_| domain.clone());
        let txt_id = RequestId(0);
        let fetch_id = RequestId(1);
        let queue = VecDeque::from([
            (
                txt_id,
                Request::Txt {
                    name: owner.clone(),
                },
            ),
            (
                fetch_id,
                Request::Fetch {
                    url: url.clone(),
                    host,
                    tls13_only: true,
                },
            ),
        ]);
        Discovery {
            domain,
            url,
            owner,
            queue,
            txt_id,
            fetch_id,
            txt: None,
            fetch: None,
            trail: Vec::new(),
            done: false,
        }
    }

    /// The next request to perform, if any. Drain it completely before waiting.
    pub fn poll_request(&mut self) -> Option<(RequestId, Request)> {
        self.queue.pop_front()
    }

    /// Feed the result of request `id`, which took `elapsed`.
    pub fn handle(&mut self, id: RequestId, response: Response, elapsed: Duration) {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match response {
            Response::Txt(r) if id == self.txt_id => {
                let result = match &r {
                    Ok(rrs) => format!("{} TXT record(s)", rrs.len()),
                    Err(e) => e.to_string(),
                };
                self.trail.push(TrailEntry {
                    step: "txt",
                    target: self.owner.clone(),
                    elapsed_ms,
                    result,
                });
                self.txt = Some(r);
            }
            Response::Fetch(r) if id == self.fetch_id => {
                let result = match &r {
                    Ok(b) => format!(
                        "HTTP 200, {} bytes, {} {}",
                        b.bytes.len(),
                        b.tls.version,
                        b.tls.cipher
                    ),
                    Err(e) => e.to_string(),
                };
                self.trail.push(TrailEntry {
                    step: "fetch",
                    target: self.url.clone(),
                    elapsed_ms,
                    result,
                });
                self.fetch = Some(r);
            }
            // A response that does not belong to its id is a shell bug; ignore it rather
            // than let it decide anything.
            _ => {}
        }
    }

    /// Advance: [`Step::Done`] once the outcome is decided (returned once).
    pub fn step(&mut self) -> Step {
        if self.done {
            return Step::Pending;
        }
        let decided = match (&self.fetch, &self.txt) {
            // A fetch failure decides on its own (RET-12): the TXT answer cannot change it.
            (Some(Err(_)), _) => true,
            (Some(Ok(_)), Some(_)) => true,
            _ => false,
        };
        if !decided {
            return Step::Pending;
        }
        self.done = true;
        Step::Done(Box::new(self.finish()))
    }

    /// The overall deadline passed: decide now, treating every missing response as timed
    /// out (RET-10). Returns `None` if the outcome was already reported.
    pub fn expire(&mut self) -> Option<Report> {
        if self.done {
            return None;
        }
        if self.fetch.is_none() {
            self.fetch = Some(Err(FetchError::Timeout {
                host: format!("ua-auto-config.{}", self.domain),
                stage: "overall deadline".to_owned(),
            }));
        }
        if self.txt.is_none() {
            self.txt = Some(Err(DnsFailure::Temporary {
                detail: "no answer before the overall deadline".to_owned(),
            }));
        }
        self.done = true;
        Some(self.finish())
    }

    fn finish(&mut self) -> Report {
        let fetch = self.fetch.take();
        let txt = self.txt.take();
        let mut records = Vec::new();
        let mut response = None;
        let outcome = match fetch {
            Some(Err(e)) => {
                if let Some(Ok(rrs)) = &txt {
                    records = digest::check(&[], rrs).1;
                    // Without a body nothing can match; drop the meaningless flag.
                    for r in &mut records {
                        if let digest::RecordVerdict::Valid { matches, .. } = &mut r.verdict {
                            *matches = false;
                        }
                    }
                }
                Err(DiscoveryError::Fetch(e))
            }
            Some(Ok(body)) => {
                let outcome = self.verify(&body, txt, &mut records);
                response = Some(body);
                outcome
            }
            None => unreachable_outcome(&self.url),
        };
        Report {
            domain: self.domain.clone(),
            url: self.url.clone(),
            digest_owner: self.owner.clone(),
            outcome,
            records,
            response,
            trail: std::mem::take(&mut self.trail),
        }
    }

    fn verify(
        &self,
        body: &FetchedBody,
        txt: Option<Result<Vec<Vec<Vec<u8>>>, DnsFailure>>,
        records: &mut Vec<SeenRecord>,
    ) -> Result<Verified, DiscoveryError> {
        let rrs = match txt {
            Some(Ok(rrs)) => rrs,
            Some(Err(DnsFailure::NotFound)) | None => Vec::new(),
            Some(Err(failure)) => {
                return Err(DiscoveryError::DigestLookup {
                    owner: self.owner.clone(),
                    failure,
                });
            }
        };
        // RET-11: the digest is checked before the JSON is parsed.
        let (check, seen) = digest::check(&body.bytes, &rrs);
        *records = seen;
        match check {
            DigestCheck::NotPublished => Err(DiscoveryError::DigestNotPublished {
                owner: self.owner.clone(),
                seen: rrs.len(),
            }),
            DigestCheck::Mismatch => Err(DiscoveryError::DigestMismatch {
                url: self.url.clone(),
                owner: self.owner.clone(),
                valid: records
                    .iter()
                    .filter(|r| matches!(r.verdict, digest::RecordVerdict::Valid { .. }))
                    .count(),
            }),
            DigestCheck::Match { record, algorithm } => {
                let document = Config::from_bytes(&body.bytes).map_err(|error| {
                    DiscoveryError::InvalidDocument {
                        url: self.url.clone(),
                        error,
                    }
                })?;
                Ok(Verified {
                    method: Method::WellKnown,
                    url: self.url.clone(),
                    algorithm,
                    record: records[record].text.clone(),
                    document,
                    bytes: body.bytes.clone(),
                })
            }
        }
    }
}

/// `finish` runs only once the fetch result is in; keep the function total anyway.
fn unreachable_outcome(url: &str) -> Result<Verified, DiscoveryError> {
    Err(DiscoveryError::Fetch(FetchError::Protocol {
        host: url.to_owned(),
        detail: "internal: discovery finished without a fetch result".to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestRecord;
    use crate::fetch::FetchedBody;

    const BODY: &[u8] =
        br#"{"protocols":{"imap":{"host":"imap.example.com"}},"info":{"provider":{"name":"Ex"}}}"#;

    fn start() -> (Discovery, RequestId, RequestId) {
        let mut d = Discovery::new(Domain::parse("example.com").unwrap());
        let mut txt = None;
        let mut fetch = None;
        while let Some((id, r)) = d.poll_request() {
            match r {
                Request::Txt { name } => {
                    assert_eq!(name, "_ua-auto-config.example.com");
                    txt = Some(id);
                }
                Request::Fetch {
                    url,
                    host,
                    tls13_only,
                } => {
                    assert_eq!(
                        url,
                        "https://ua-auto-config.example.com/.well-known/user-agent-configuration.json"
                    );
                    assert_eq!(host.as_str(), "ua-auto-config.example.com");
                    assert!(tls13_only);
                    fetch = Some(id);
                }
            }
        }
        (d, txt.unwrap(), fetch.unwrap())
    }

    fn rec(body: &[u8]) -> Vec<Vec<Vec<u8>>> {
        vec![vec![
            DigestRecord::for_bytes(Algorithm::Sha256, body)
                .render()
                .into_bytes(),
        ]]
    }

    fn run(
        txt: Result<Vec<Vec<Vec<u8>>>, DnsFailure>,
        fetch: FetchResult,
        txt_first: bool,
    ) -> Report {
        let (mut d, t, f) = start();
        let order: [(RequestId, Response); 2] = if txt_first {
            [(t, Response::Txt(txt)), (f, Response::Fetch(fetch))]
        } else {
            [(f, Response::Fetch(fetch)), (t, Response::Txt(txt))]
        };
        for (id, r) in order {
            d.handle(id, r, Duration::from_millis(3));
            if let Step::Done(r) = d.step() {
                return *r;
            }
        }
        panic!("not done after both responses")
    }

    fn both_orders(txt: Result<Vec<Vec<Vec<u8>>>, DnsFailure>, fetch: FetchResult) -> Report {
        let a = run(txt.clone(), fetch.clone(), true);
        let b = run(txt, fetch, false);
        assert_eq!(
            a.outcome
                .as_ref()
                .map(|v| v.bytes.clone())
                .map_err(Clone::clone),
            b.outcome
                .as_ref()
                .map(|v| v.bytes.clone())
                .map_err(Clone::clone),
            "the outcome must not depend on arrival order"
        );
        a
    }

    #[test]
    fn match_gives_a_verified_config() {
        let r = both_orders(Ok(rec(BODY)), Ok(FetchedBody::test_json(BODY.to_vec())));
        let v = r.outcome.unwrap();
        assert_eq!(v.algorithm, Algorithm::Sha256);
        assert_eq!(v.method, Method::WellKnown);
        assert_eq!(r.trail.len(), 2);
    }

    #[test]
    fn mismatch_is_integrity() {
        let r = both_orders(Ok(rec(b"other")), Ok(FetchedBody::test_json(BODY.to_vec())));
        let e = r.outcome.unwrap_err();
        assert_eq!(e.kind(), "digest-mismatch");
        assert_eq!(e.class(), FailureClass::Integrity);
    }

    #[test]
    fn no_record_is_absent() {
        for txt in [
            Err(DnsFailure::NotFound),
            Ok(vec![vec![b"unrelated".to_vec()]]),
        ] {
            let r = both_orders(txt, Ok(FetchedBody::test_json(BODY.to_vec())));
            let e = r.outcome.unwrap_err();
            assert_eq!(e.kind(), "digest-not-published");
            assert_eq!(e.class(), FailureClass::Absent);
        }
    }

    #[test]
    fn invalid_json_after_a_match_is_integrity() {
        let body = b"{not json";
        let r = both_orders(Ok(rec(body)), Ok(FetchedBody::test_json(body.to_vec())));
        let e = r.outcome.unwrap_err();
        assert_eq!(e.kind(), "invalid-document");
        assert_eq!(e.class(), FailureClass::Integrity);
    }

    #[test]
    fn dns_temporary_failure_is_temporary() {
        let r = both_orders(
            Err(DnsFailure::Temporary {
                detail: "SERVFAIL".into(),
            }),
            Ok(FetchedBody::test_json(BODY.to_vec())),
        );
        assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Temporary);
    }

    #[test]
    fn a_fetch_failure_decides_without_waiting_for_txt() {
        let (mut d, _t, f) = start();
        d.handle(
            f,
            Response::Fetch(Err(FetchError::NoSuchHost { host: "h".into() })),
            Duration::ZERO,
        );
        let Step::Done(r) = d.step() else {
            panic!("should be done")
        };
        assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Absent);
        assert!(matches!(d.step(), Step::Pending), "done is reported once");
    }

    #[test]
    fn a_txt_answer_alone_does_not_decide() {
        let (mut d, t, _f) = start();
        d.handle(t, Response::Txt(Err(DnsFailure::NotFound)), Duration::ZERO);
        assert!(matches!(d.step(), Step::Pending));
    }

    #[test]
    fn expiry_decides_with_timeouts() {
        let (mut d, t, _f) = start();
        d.handle(t, Response::Txt(Ok(rec(BODY))), Duration::ZERO);
        let r = d.expire().unwrap();
        let e = r.outcome.unwrap_err();
        assert_eq!(e.kind(), "timeout");
        assert_eq!(e.class(), FailureClass::Temporary);
        assert!(d.expire().is_none());
    }

    #[test]
    fn mismatched_ids_are_ignored() {
        let (mut d, t, f) = start();
        d.handle(f, Response::Txt(Ok(rec(BODY))), Duration::ZERO);
        d.handle(
            t,
            Response::Fetch(Ok(FetchedBody::test_json(BODY.to_vec()))),
            Duration::ZERO,
        );
        assert!(matches!(d.step(), Step::Pending));
    }
}
