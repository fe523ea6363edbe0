//! MX-fallback outcomes and reports (spec §2.3, Q-1, Q-10, Q-11).

use serde::Serialize;

use super::DiscoveryError;
use crate::digest::{Algorithm, SeenRecord};
use crate::discovery::DnsFailure;
use crate::document::DocumentError;
use crate::fetch::{FailureClass, FetchError, FetchedBody};
use crate::mta_sts::{Mode, Policy, PolicyError, StsTxtError};
use crate::mx::{MxRecord, MxSelectError, MxUriStrategy};
use crate::name::Domain;

/// Why the MX fallback did not produce a configuration. Each names the step that stopped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FallbackFailure {
    /// `_mta-sts` gives no usable record (MX-1, MX-2).
    #[error("MTA-STS (required for the MX fallback): {0}")]
    MtaStsRecord(StsTxtError),
    /// The `_mta-sts` lookup failed temporarily.
    #[error("the MTA-STS record lookup failed: {0}")]
    MtaStsLookup(DnsFailure),
    /// The policy could not be fetched (RFC 8461 §3.3: valid certificate, no redirects, 200).
    #[error("the MTA-STS policy could not be fetched: {0}")]
    PolicyFetch(FetchError),
    /// The policy is malformed.
    #[error("the MTA-STS policy is malformed: {0}")]
    PolicyInvalid(PolicyError),
    /// The policy is not in enforce mode.
    #[error("the MTA-STS policy is in '{mode}' mode; the MX fallback requires 'enforce'")]
    NotEnforcing {
        /// The mode found.
        mode: Mode,
    },
    /// The MX lookup failed temporarily.
    #[error("the MX lookup failed: {0}")]
    MxLookup(DnsFailure),
    /// No usable MX hosts (MX-3).
    #[error("{0}")]
    Mx(MxSelectError),
    /// A selected MX host is not listed in the policy (MX-4).
    #[error("MX host {host} is not authorised by the MTA-STS policy (mx: {patterns})")]
    NotAuthorized {
        /// The host.
        host: String,
        /// The policy's patterns.
        patterns: String,
    },
    /// Retrieval or verification failed for one MX host (MX-6, MX-8).
    #[error("MX host {host}: {error}")]
    Host {
        /// The MX host.
        host: String,
        /// What failed.
        error: Box<DiscoveryError>,
    },
    /// The MX hosts serve different bytes (MX-7).
    #[error("the configurations of the MX hosts differ ({hosts}); they must be bitwise identical")]
    Differ {
        /// The hosts whose bytes differ from the first one's.
        hosts: String,
    },
    /// The common bytes verified but are not a usable document.
    #[error("the MX hosts' configuration matches its digest but is unusable: {0}")]
    InvalidDocument(DocumentError),
}

impl FallbackFailure {
    /// Stable kind string.
    pub fn kind(&self) -> &'static str {
        match self {
            FallbackFailure::MtaStsRecord(StsTxtError::Missing) => "mta-sts-missing",
            FallbackFailure::MtaStsRecord(StsTxtError::Several { .. }) => "mta-sts-ambiguous",
            FallbackFailure::MtaStsRecord(StsTxtError::Malformed { .. }) => "mta-sts-malformed",
            FallbackFailure::MtaStsLookup(_) => "mta-sts-lookup-failed",
            FallbackFailure::PolicyFetch(_) => "mta-sts-policy-fetch",
            FallbackFailure::PolicyInvalid(_) => "mta-sts-policy-invalid",
            FallbackFailure::NotEnforcing { .. } => "mta-sts-not-enforcing",
            FallbackFailure::MxLookup(_) => "mx-lookup-failed",
            FallbackFailure::Mx(MxSelectError::NoMx) => "no-mx",
            FallbackFailure::Mx(MxSelectError::NullMx) => "null-mx",
            FallbackFailure::Mx(MxSelectError::BadExchange { .. }) => "bad-mx",
            FallbackFailure::NotAuthorized { .. } => "mx-not-authorized",
            FallbackFailure::Host { .. } => "mx-host-failed",
            FallbackFailure::Differ { .. } => "mx-configs-differ",
            FallbackFailure::InvalidDocument(_) => "invalid-document",
        }
    }

    /// Which step stopped the fallback: `mta-sts`, `mx`, `authorization`, `retrieval`,
    /// `comparison` or `document`.
    pub fn step(&self) -> &'static str {
        match self {
            FallbackFailure::MtaStsRecord(_)
            | FallbackFailure::MtaStsLookup(_)
            | FallbackFailure::PolicyFetch(_)
            | FallbackFailure::PolicyInvalid(_)
            | FallbackFailure::NotEnforcing { .. } => "mta-sts",
            FallbackFailure::MxLookup(_) | FallbackFailure::Mx(_) => "mx",
            FallbackFailure::NotAuthorized { .. } => "authorization",
            FallbackFailure::Host { .. } => "retrieval",
            FallbackFailure::Differ { .. } => "comparison",
            FallbackFailure::InvalidDocument(_) => "document",
        }
    }

    /// RET-12 class. Nothing usable published (no MTA-STS, not enforcing, no MX, a host
    /// without a configuration) is absent; a certificate, digest or authorisation failure
    /// and differing configurations are integrity failures; lookups and fetches that could
    /// not finish are temporary.
    pub fn class(&self) -> FailureClass {
        match self {
            FallbackFailure::MtaStsRecord(_)
            | FallbackFailure::PolicyInvalid(_)
            | FallbackFailure::NotEnforcing { .. }
            | FallbackFailure::Mx(_) => FailureClass::Absent,
            FallbackFailure::MtaStsLookup(_) | FallbackFailure::MxLookup(_) => {
                FailureClass::Temporary
            }
            FallbackFailure::PolicyFetch(e) => e.class(),
            FallbackFailure::Host { error, .. } => error.class(),
            FallbackFailure::NotAuthorized { .. }
            | FallbackFailure::Differ { .. }
            | FallbackFailure::InvalidDocument(_) => FailureClass::Integrity,
        }
    }
}

/// One MX host's part in a successful fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxHostSource {
    /// The MX host.
    pub mx_host: Domain,
    /// Where its configuration was fetched.
    pub url: String,
    /// Where its digest was looked up.
    pub digest_owner: String,
    /// The algorithm of the matching record.
    pub algorithm: Algorithm,
    /// The matching record.
    pub record: String,
}

/// How a configuration found by the MX fallback was authorised (for SEC-1 / MX-9 displays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxSource {
    /// The MTA-STS policy id (from `_mta-sts`).
    pub policy_id: String,
    /// The policy mode (always `enforce` here).
    pub mode: Mode,
    /// The preference value of the selected hosts.
    pub preference: u16,
    /// The URI strategy used.
    pub strategy: MxUriStrategy,
    /// Every selected MX host, each verified against its own digest.
    pub hosts: Vec<MxHostSource>,
}

impl MxSource {
    /// The registrable domains of the MX hosts the settings came from (MX-9).
    pub fn mx_domains(&self) -> Vec<Domain> {
        let mut out: Vec<Domain> = Vec::new();
        for h in &self.hosts {
            let r = h.mx_host.registrable();
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }
}

/// One derived retrieval in the fallback report.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// The MX hosts that derive this location.
    pub mx_hosts: Vec<Domain>,
    /// The configuration URL.
    pub url: String,
    /// The digest owner.
    pub digest_owner: String,
    /// TXT records seen at the owner.
    pub records: Vec<SeenRecord>,
    /// The response, if the fetch succeeded.
    pub response: Option<FetchedBody>,
    /// `verified`, or the error message.
    pub result: String,
}

/// What the MX fallback did, whether or not it was used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FallbackReport {
    /// Whether its configuration was used.
    pub used: bool,
    /// The `_mta-sts` id, if a valid record was found.
    pub mta_sts_id: Option<String>,
    /// The policy, if fetched and parsed.
    pub policy: Option<Policy>,
    /// Every MX record seen.
    pub mx: Vec<MxRecord>,
    /// The selected (most preferred) MX hosts.
    pub selected: Vec<Domain>,
    /// The derived retrievals.
    pub hosts: Vec<HostReport>,
    /// The step that stopped it, if it failed.
    pub stopped_at: Option<&'static str>,
}
