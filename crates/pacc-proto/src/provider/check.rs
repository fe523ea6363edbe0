//! Judging a live deployment the way a client sees it (PV-6): the client's own discovery
//! report, the probes, and optionally the bytes the provider meant to publish, turned into
//! PASS / WARN / FAIL findings with a one-line fix each.

use serde::Serialize;

use crate::digest::{Algorithm, DigestRecord, RecordVerdict};
use crate::discovery::{DiscoveryError, Report};
use crate::document::Level;
use crate::fetch::FetchError;
use crate::probe::{ProbeStatus, ServiceProbe};

/// How a finding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Fine.
    Pass,
    /// For information.
    Info,
    /// Works, but should be changed.
    Warn,
    /// Clients will fail or refuse.
    Fail,
}

/// One line of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckFinding {
    /// PASS / INFO / WARN / FAIL.
    pub verdict: Verdict,
    /// What part: `retrieval`, `content-type`, `txt`, `digest`, `document`, `drift`,
    /// `rotation`, `mx-fallback`, `probe`, `oauth`.
    pub area: &'static str,
    /// What was found.
    pub message: String,
    /// How to fix it (for WARN and FAIL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Where a domain is in a document change (DIG-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotationStage {
    /// The expected bytes are served and only their record is published.
    InStep,
    /// Old bytes served, only the old record published: publish the new record first.
    NotStarted,
    /// Old bytes served, old and new records published: wait for the old TTL, then switch.
    BothPublished,
    /// New bytes served, old record still published: retire it after the cache window.
    NewServed,
    /// The served bytes match no published record.
    Broken,
}

fn f(
    verdict: Verdict,
    area: &'static str,
    message: impl Into<String>,
    fix: Option<String>,
) -> CheckFinding {
    CheckFinding {
        verdict,
        area,
        message: message.into(),
        fix,
    }
}

fn fetch_fix(e: &FetchError, host: &str) -> String {
    match e {
        FetchError::NoSuchHost { .. } => format!("publish A/AAAA records (or a CNAME) for {host}"),
        FetchError::Connect { .. } | FetchError::ConnectTimeout { .. } => {
            format!("run an HTTPS server on port 443 of {host}")
        }
        FetchError::TlsVersion { .. } => {
            "enable TLS 1.3 on the server (clients refuse older versions for this fetch)".into()
        }
        FetchError::CertificateName { .. } => {
            format!("use a certificate whose SAN includes {host}")
        }
        FetchError::CertificateUntrusted { .. } => {
            "use a certificate from a publicly trusted CA, with the full chain".into()
        }
        FetchError::CertificateExpired { .. } => "renew the certificate".into(),
        FetchError::Redirect { .. } => {
            "serve the document directly at the well-known URL; clients never follow redirects"
                .into()
        }
        FetchError::Status { .. } => {
            "serve the document with status 200 at /.well-known/user-agent-configuration.json"
                .into()
        }
        FetchError::BodyTooLarge { .. } => "keep the document under 64 KiB".into(),
        FetchError::ContentEncoding { .. } => {
            "serve the document without content-coding (or gzip)".into()
        }
        _ => "check the server and try again".into(),
    }
}

/// The OAuth issuer's metadata as fetched and checked by the client, or why it failed.
pub type OAuthCheck = Result<crate::auth::oauth::CheckedMetadata, String>;

/// Judge `report` (and `probes`, and the `expected` bytes if the provider gave them).
pub fn check(
    report: &Report,
    probes: Option<&[ServiceProbe]>,
    expected: Option<&[u8]>,
) -> Vec<CheckFinding> {
    check_with_oauth(report, probes, expected, None)
}

/// [`check`], with the result of fetching the OAuth issuer's metadata (PV-6 (7)).
pub fn check_with_oauth(
    report: &Report,
    probes: Option<&[ServiceProbe]>,
    expected: Option<&[u8]>,
    oauth: Option<&OAuthCheck>,
) -> Vec<CheckFinding> {
    let mut out = Vec::new();
    let host = format!("ua-auto-config.{}", report.domain);
    let primary_error = match &report.outcome {
        Err(DiscoveryError::MxFallback { primary, .. }) => Some(primary.as_ref()),
        // The domain does not exist: what discovery found is underneath.
        Err(DiscoveryError::DomainNotFound { primary, .. }) => match primary.as_ref() {
            DiscoveryError::MxFallback { primary, .. } => Some(primary.as_ref()),
            p => Some(p),
        },
        Err(e) => Some(e),
        Ok(_) => None,
    };
    if let Err(
        e @ (DiscoveryError::DomainNotFound { .. } | DiscoveryError::DnsUnreachable { .. }),
    ) = &report.outcome
    {
        out.push(f(
            Verdict::Fail,
            "dns",
            e.to_string(),
            Some(match e {
                DiscoveryError::DomainNotFound { .. } => format!(
                    "register {} (or check its spelling) and publish its DNS zone",
                    report.domain
                ),
                _ => "check the network and the DNS server (--dns)".to_owned(),
            }),
        ));
    }
    let served = report.response.as_ref().filter(|_| {
        report
            .outcome
            .as_ref()
            .map_or(true, |v| v.method == crate::discovery::Method::WellKnown)
    });
    // 1. Retrieval.
    match (served, primary_error) {
        (Some(r), _) => out.push(f(
            Verdict::Pass,
            "retrieval",
            format!(
                "{} served {} bytes over {} ({}), no redirect",
                report.url,
                r.bytes.len(),
                r.tls.version,
                r.tls.cipher
            ),
            None,
        )),
        (None, Some(DiscoveryError::Fetch(e))) => out.push(f(
            Verdict::Fail,
            "retrieval",
            e.to_string(),
            Some(fetch_fix(e, &host)),
        )),
        (None, _) => {}
    }
    // 2. Content type (RET-7).
    if let Some(r) = served {
        match r.content_type.as_deref() {
            Some(ct)
                if ct
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")) =>
            {
                out.push(f(
                    Verdict::Pass,
                    "content-type",
                    format!("Content-Type: {ct}"),
                    None,
                ));
            }
            other => out.push(f(
                Verdict::Warn,
                "content-type",
                format!("Content-Type is {}", other.unwrap_or("missing")),
                Some("serve it as application/json".into()),
            )),
        }
    }
    // 3. Every TXT record (PV-6 (4), (8)).
    let any_match = report
        .records
        .iter()
        .any(|r| matches!(r.verdict, RecordVerdict::Valid { matches: true, .. }));
    for r in &report.records {
        match &r.verdict {
            RecordVerdict::Valid { record, matches } => {
                let canonical = record.render();
                if record.noncanonical_base64 {
                    out.push(f(
                        Verdict::Warn,
                        "txt",
                        format!(
                            "d= is non-canonical base64 (non-zero unused trailing bits): \"{}\"; clients that decode strictly will ignore this record",
                            r.text
                        ),
                        Some(format!("publish the canonical encoding: \"{canonical}\"")),
                    ));
                }
                // DIG-3 allows `_` in tag names; parsers that follow DKIM's older grammar, or
                // hand-written ones, refuse it.
                let underscored: Vec<&str> = r
                    .text
                    .split(';')
                    .filter_map(|spec| spec.split_once('='))
                    .map(|(name, _)| name.trim())
                    .filter(|name| name.contains('_'))
                    .collect();
                if !underscored.is_empty() {
                    out.push(f(
                        Verdict::Warn,
                        "txt",
                        format!(
                            "tag name(s) {} contain '_': valid (DIG-3), but some clients' parsers refuse such a record",
                            underscored.join(", ")
                        ),
                        Some(format!("publish it without them: \"{canonical}\"")),
                    ));
                }
                if !record.canonical || r.strings > 1 {
                    out.push(f(
                        Verdict::Warn,
                        "txt",
                        format!(
                            "valid but not in canonical form: \"{}\"{}",
                            r.text,
                            if r.strings > 1 {
                                " (split into several strings)"
                            } else {
                                ""
                            }
                        ),
                        Some(format!("publish it as one string: \"{canonical}\"")),
                    ));
                }
                if *matches {
                    out.push(f(
                        Verdict::Pass,
                        "txt",
                        format!("{} record matches the served bytes", record.algorithm),
                        None,
                    ));
                } else if any_match {
                    out.push(f(
                        Verdict::Info,
                        "txt",
                        format!("{} record does not match the served bytes (a rollover in progress?): {}", record.algorithm, r.text),
                        Some("remove it once the change is complete (DIG-13)".into()),
                    ));
                } else if served.is_some() {
                    out.push(f(
                        Verdict::Fail,
                        "txt",
                        format!(
                            "{} record does not match the served bytes: {}",
                            record.algorithm, r.text
                        ),
                        None,
                    ));
                }
            }
            RecordVerdict::Ignored { reason } => {
                if r.text
                    .to_ascii_lowercase()
                    .trim_start()
                    .starts_with("v=uaac")
                {
                    out.push(f(
                        Verdict::Fail,
                        "txt",
                        format!(
                            "UAAC record ignored by clients: it {reason}: \"{}\"",
                            r.text
                        ),
                        Some(
                            "publish \"v=UAAC1; a=sha256; d=<base64 SHA-256 of the exact bytes>\""
                                .into(),
                        ),
                    ));
                }
            }
        }
    }
    // 4. The digest verdict.
    match &report.outcome {
        Ok(v) if v.method == crate::discovery::Method::WellKnown => {
            let valid = report
                .records
                .iter()
                .filter(|r| matches!(r.verdict, RecordVerdict::Valid { .. }))
                .count();
            out.push(f(
                Verdict::Pass,
                "digest",
                if valid > 1 {
                    format!(
                        "the document is authentic: it matches \"{}\" (one of {valid} valid records)",
                        v.record
                    )
                } else {
                    format!("the document is authentic ({} record)", v.algorithm)
                },
                None,
            ))
        }
        _ => {
            match primary_error {
                Some(DiscoveryError::DigestMismatch { .. }) => {
                    let fix = served.map(|r| {
                        format!(
                            "publish \"{}\" (the digest of the bytes now served)",
                            DigestRecord::for_bytes(Algorithm::Sha256, &r.bytes).render()
                        )
                    });
                    out.push(f(
                        Verdict::Fail,
                        "digest",
                        "no published record matches the served bytes: clients refuse the document",
                        fix,
                    ));
                }
                Some(DiscoveryError::DigestNotPublished { owner, .. }) => {
                    let fix = served.map(|r| {
                        format!(
                            "publish {owner} TXT \"{}\"",
                            DigestRecord::for_bytes(Algorithm::Sha256, &r.bytes).render()
                        )
                    });
                    out.push(f(Verdict::Fail, "digest", format!("no UAAC1 record at {owner}: clients treat the domain as publishing nothing"), fix));
                }
                Some(DiscoveryError::DigestLookup { failure, owner }) => {
                    out.push(f(
                        Verdict::Fail,
                        "digest",
                        format!("TXT lookup at {owner} failed: {failure}"),
                        Some("check the DNS servers".into()),
                    ));
                }
                Some(DiscoveryError::InvalidDocument { error, .. }) => {
                    out.push(f(
                        Verdict::Fail,
                        "document",
                        error.to_string(),
                        Some(
                            "fix the document (see the path), re-render, re-publish the digest"
                                .into(),
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    // 5. The document's own findings.
    if let Ok(v) = &report.outcome {
        for d in &v.document.findings {
            let verdict = match d.level {
                Level::Warning => Verdict::Warn,
                Level::Violation | Level::Dropped => Verdict::Fail,
            };
            out.push(f(
                verdict,
                "document",
                format!("{}: {}", d.path, d.message),
                Some("change the document accordingly".into()),
            ));
        }
        if v.document.findings.is_empty() {
            out.push(f(
                Verdict::Pass,
                "document",
                format!(
                    "{} service(s), no problems",
                    v.document.config.protocols.len()
                ),
                None,
            ));
        }
    }
    // 6. Drift and rotation against the provider's own rendering.
    if let Some(expected) = expected {
        let live = served.map(|r| r.bytes.as_slice());
        match live {
            Some(live) if live == expected => out.push(f(
                Verdict::Pass,
                "drift",
                "the served bytes are exactly the rendered ones",
                None,
            )),
            // A correct stage 1 of a rollover (the new record published beside the old,
            // the old bytes still served) is not drift: the rotation finding says where it is.
            Some(live)
                if rotation_stage(report, live, expected) == RotationStage::BothPublished => {}
            Some(live) => {
                let at = live
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(live.len().min(expected.len()));
                out.push(f(
                    Verdict::Warn,
                    "drift",
                    format!("the served bytes differ from the rendered ones at byte {at} ({} vs {} bytes)", live.len(), expected.len()),
                    Some("finish the rollover (pacc rotate) or redeploy the rendered bytes".into()),
                ));
            }
            None => {}
        }
        if let Some(live) = live {
            let stage = rotation_stage(report, live, expected);
            let (verdict, msg, fix) = match stage {
                RotationStage::InStep => (
                    Verdict::Pass,
                    "in step: rendered bytes served, only their record published",
                    None,
                ),
                RotationStage::NotStarted => (
                    Verdict::Warn,
                    "change not started: old bytes served, new record not published",
                    Some("step 1: publish the new record next to the old one"),
                ),
                RotationStage::BothPublished => (
                    Verdict::Info,
                    "rollover stage 1 done: old and new records published, old bytes still served",
                    Some("step 2: after the old TTL, switch the served bytes"),
                ),
                RotationStage::NewServed => (
                    Verdict::Info,
                    "rollover stage 2 done: new bytes served, old record still published",
                    Some("step 3: after the cache window, remove the old record"),
                ),
                RotationStage::Broken => (
                    Verdict::Fail,
                    "the served bytes match no published record",
                    Some("publish the record for the served bytes now"),
                ),
            };
            out.push(f(verdict, "rotation", msg, fix.map(str::to_owned)));
        }
    }
    // 7. The MX fallback path, when the domain has MTA-STS.
    if let Some((fb, id)) = report
        .fallback
        .as_ref()
        .and_then(|fb| fb.mta_sts_id.as_ref().map(|id| (fb, id)))
    {
        match &report.outcome {
            Ok(v) if v.method == crate::discovery::Method::MxFallback => out.push(f(
                Verdict::Pass,
                "mx-fallback",
                format!("configuration found through the MX hosts ({}), authorised by MTA-STS policy {id}", fb.selected.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
                None,
            )),
            Err(DiscoveryError::MxFallback { failure, .. }) => out.push(f(
                Verdict::Fail,
                "mx-fallback",
                failure.to_string(),
                Some("fix the step named above; clients use the MX hosts only when MTA-STS enforces and every best MX host serves identical verified bytes".into()),
            )),
            _ => out.push(f(
                Verdict::Info,
                "mx-fallback",
                format!("MTA-STS policy {id} present; the domain's own document takes precedence over its MX hosts"),
                None,
            )),
        }
    }
    // 8. Services.
    for p in probes.unwrap_or_default() {
        match &p.status {
            ProbeStatus::Reachable { usable, .. } if p.is_usable() => out.push(f(
                Verdict::Pass,
                "probe",
                format!("{} {}: reachable over verified TLS, usable with {}", p.service.label(), p.target, serde_json::to_value(usable).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()),
                None,
            )),
            ProbeStatus::Reachable { .. } => out.push(f(
                Verdict::Fail,
                "probe",
                format!("{} {}: offers no mechanism the document allows", p.service.label(), p.target),
                Some("enable the advertised mechanisms (PLAIN over TLS, OAUTHBEARER) or change `authentication`".into()),
            )),
            ProbeStatus::Unreachable { kind, error } => out.push(f(
                Verdict::Fail,
                "probe",
                format!("{} {}: {error} [{kind}]", p.service.label(), p.target),
                Some("fix the server or remove it from the document".into()),
            )),
        }
    }
    // 9. The OAuth issuer's metadata (O-2, O-3).
    let issuer = report
        .outcome
        .as_ref()
        .ok()
        .and_then(|v| v.document.config.authentication.as_ref())
        .and_then(|a| a.oauth_public.as_ref());
    match (issuer, oauth) {
        (Some(o), Some(Ok(m))) => {
            out.push(f(Verdict::Pass, "oauth", format!("issuer {}: metadata usable (code flow, PKCE S256, public clients)", o.issuer), None));
            for w in &m.warnings {
                out.push(f(Verdict::Warn, "oauth", w.clone(), Some("see RFC 8414 and the OAuth public-client profile".into())));
            }
        }
        (Some(o), Some(Err(e))) => out.push(f(
            Verdict::Fail,
            "oauth",
            format!("issuer {}: {e}", o.issuer),
            Some("serve RFC 8414 metadata whose issuer is exactly the published one, with S256 and token_endpoint_auth_method none".into()),
        )),
        (Some(o), None) => out.push(f(Verdict::Info, "oauth", format!("issuer {} published; its metadata was not checked", o.issuer), None)),
        (None, _) => {}
    }
    out
}

/// The obsolete locations a provider may still serve, for [`obsolete_findings`]: the path
/// without `.json` on the configuration host, and the SRV-era `pacc.json` on the
/// configuration host and on the domain itself.
pub fn obsolete_locations(domain: &crate::name::Domain) -> Vec<String> {
    vec![
        format!("https://ua-auto-config.{domain}/.well-known/user-agent-configuration"),
        format!("https://ua-auto-config.{domain}/.well-known/pacc.json"),
        format!("https://{domain}/.well-known/pacc.json"),
    ]
}

/// What the obsolete locations answered (`(url, status, body)` for those that answered):
/// a document still served there is named, with what to do instead. The old path without
/// `.json` matters only when the current one (`current_served`) is not served.
pub fn obsolete_findings(
    answers: &[(String, u16, Vec<u8>)],
    current_url: &str,
    current_served: bool,
) -> Vec<CheckFinding> {
    let mut out = Vec::new();
    for (url, status, body) in answers {
        if *status != 200 {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            continue;
        };
        if url.ends_with("/.well-known/user-agent-configuration")
            && v.get("protocols").is_some()
            && !current_served
        {
            out.push(f(
                Verdict::Warn,
                "obsolete",
                format!("a configuration is served at the obsolete path {url} (no .json): current clients fetch only {current_url}"),
                Some(format!("serve it at {current_url} (and remove the old path when no client needs it)")),
            ));
        } else if url.ends_with("/.well-known/pacc.json")
            && (v.get("servers").is_some() || v.get("oAuth2").is_some())
        {
            out.push(f(
                Verdict::Warn,
                "obsolete",
                format!("an SRV-era PACC document (pacc.json, with `servers`/`oAuth2`) is still served at {url}: no current client reads it"),
                Some(format!("publish the current format at {current_url} with its _ua-auto-config digest (pacc render)")),
            ));
        }
    }
    out
}

/// Which stage of a change (DIG-13) the live state is in, given the intended bytes.
pub fn rotation_stage(report: &Report, live: &[u8], expected: &[u8]) -> RotationStage {
    let valid: Vec<&DigestRecord> = report
        .records
        .iter()
        .filter_map(|r| match &r.verdict {
            RecordVerdict::Valid { record, .. } => Some(record),
            _ => None,
        })
        .collect();
    let has = |bytes: &[u8]| valid.iter().any(|r| r.matches(bytes));
    let has_other = |bytes: &[u8]| valid.iter().any(|r| !r.matches(bytes));
    match (live == expected, has(live), has(expected)) {
        (_, false, _) => RotationStage::Broken,
        (true, true, _) if has_other(expected) => RotationStage::NewServed,
        (true, true, _) => RotationStage::InStep,
        (false, true, true) => RotationStage::BothPublished,
        (false, true, false) => RotationStage::NotStarted,
    }
}

/// The safe order of a change (DIG-13), for `pacc rotate`.
pub fn rotation_plan(
    owner: &str,
    old_records: &[String],
    new_records: &[String],
    ttl: u32,
) -> Vec<String> {
    let mut steps = Vec::new();
    steps.push(format!(
        "1. Publish the new record(s) next to the old one(s) at {owner}: {}",
        new_records
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    steps.push(format!(
        "2. Wait at least the old records' TTL ({ttl} s) so every resolver can see the new record."
    ));
    steps.push(
        "3. Switch the served bytes (deploy the new rendering; `pacc serve` reloads on SIGHUP)."
            .into(),
    );
    steps.push(format!(
        "4. Keep both records for the longest cache window (TTL {ttl} s and HTTP caching), then remove the old one(s){}.",
        if old_records.is_empty() {
            String::new()
        } else {
            format!(": {}", old_records.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", "))
        }
    ));
    steps.push(
        "`pacc check <domain> --expect <description>` tells which of these stages a domain is in."
            .into(),
    );
    steps
}

/// A certificate that expires within 14 days of `now` (Unix seconds; the caller's clock,
/// this crate has none) is a warning: the served document's, from the fetch.
pub fn certificate_findings(report: &Report, now: i64) -> Vec<CheckFinding> {
    let host = format!("ua-auto-config.{}", report.domain);
    let mut out = Vec::new();
    if let Some(expires) = report
        .response
        .as_ref()
        .and_then(|r| r.tls.certificate_expires)
    {
        let days = (expires - now).div_euclid(86_400);
        if days < 14 {
            out.push(f(
                Verdict::Warn,
                "certificate",
                format!("the certificate of {host} expires in {days} day(s)"),
                Some(format!(
                    "renew the certificate of {host} now (pacc serve presents the valid one that expires last)"
                )),
            ));
        }
    }
    out
}
