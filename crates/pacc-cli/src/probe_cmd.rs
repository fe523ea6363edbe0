//! `pacc probe`: discovery, then every service probed; a live line per service on a
//! terminal, a table at the end, or one JSON object.

use std::fmt::{self, Write as _};
use std::io::{IsTerminal as _, Write as _};

use pacc::Client;
use pacc_proto::name::EmailAddress;
use pacc_proto::probe::http::Challenge;
use pacc_proto::probe::{Offered, ProbeStatus, ServiceProbe};
use serde::Serialize;

use crate::output::{DiscoverOutput, JSON_VERSION};
use crate::{OutputArgs, exit};

/// The result of `pacc probe` (docs/json-output.md).
/// The result of `pacc probe --json` (and of the RPC method `probe`).
#[derive(Serialize)]
pub struct ProbeOutput<'a> {
    version: u32,
    ok: bool,
    discovery: &'a DiscoverOutput<'a>,
    services: &'a [ServiceProbe],
    phases: &'a crate::output::Phases,
}

impl<'a> ProbeOutput<'a> {
    /// `ok` when every service is usable (and discovery verified something).
    pub fn new(
        discovery: &'a DiscoverOutput<'a>,
        services: &'a [ServiceProbe],
        phases: &'a crate::output::Phases,
    ) -> Self {
        ProbeOutput {
            version: JSON_VERSION,
            ok: discovery.is_ok() && services.iter().all(ServiceProbe::is_usable),
            discovery,
            services,
            phases,
        }
    }
}

fn offers(p: &ServiceProbe) -> String {
    match &p.status {
        ProbeStatus::Reachable {
            offered: Offered::Text(c),
            ..
        } => {
            if c.mechanisms.is_empty() {
                "no SASL mechanism".to_owned()
            } else {
                c.mechanisms.join(" ")
            }
        }
        ProbeStatus::Reachable {
            offered: Offered::Http(h),
            ..
        } => {
            let mut s = h
                .challenges
                .iter()
                .map(challenge)
                .collect::<Vec<_>>()
                .join(", ");
            if s.is_empty() {
                s = format!("HTTP {} without challenge", h.status);
            }
            s
        }
        ProbeStatus::Unreachable { kind, error } => format!("{kind}: {error}"),
    }
}

fn challenge(c: &Challenge) -> String {
    match c.param("realm") {
        Some(r) => format!("{} realm=\"{r}\"", c.scheme),
        None => c.scheme.clone(),
    }
}

fn row(p: &ServiceProbe) -> String {
    let (tls, usable) = match &p.status {
        ProbeStatus::Reachable { tls, usable, .. } => (
            tls.session.version.clone(),
            serde_json::to_value(usable)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        ProbeStatus::Unreachable { .. } => ("-".to_owned(), "UNREACHABLE".to_owned()),
    };
    format!(
        "{:<12} {:<40} {:<8} {:<9} {:>5} ms  {}",
        p.service.label(),
        p.target,
        tls,
        usable,
        p.elapsed_ms,
        offers(p)
    )
}

struct Table<'a>(&'a [ServiceProbe]);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:<40} {:<8} {:<9} {:>8}  Offers",
            "Service", "Server", "TLS", "Usable", "Time"
        )?;
        for p in self.0 {
            writeln!(f, "{}", row(p))?;
            if let ProbeStatus::Reachable { tls, offered, .. } = &p.status {
                let mut extra = String::new();
                if let Some(c) = &tls.certificate {
                    let _ = write!(extra, "certificate {} (until {})", c.subject, c.not_after);
                }
                if let Offered::Http(h) = offered {
                    for w in &h.warnings {
                        let _ = write!(extra, "; warning: {w}");
                    }
                    if let Some(dav) = &h.dav {
                        let _ = write!(extra, "; DAV: {dav}");
                    }
                }
                if !extra.is_empty() {
                    writeln!(f, "{:<12} {extra}", "")?;
                }
            }
        }
        Ok(())
    }
}

#[allow(clippy::print_stdout)]
pub async fn run(client: &Client, address: &EmailAddress, out: &OutputArgs) -> u8 {
    // One deadline for the whole command (--timeout), shared by discovery and the probes.
    let started = std::time::Instant::now();
    let deadline = client.deadline();
    let report = crate::discover_with_progress(client, address, deadline, !out.json).await;
    let mut phases = crate::output::Phases {
        discovery_ms: crate::output::ms_since(started),
        ..Default::default()
    };
    let discovery = DiscoverOutput::new(address, &report);
    let Ok(verified) = &report.outcome else {
        // Nothing to probe: report the discovery failure as `pacc discover` would.
        if out.json {
            let o = ProbeOutput {
                version: JSON_VERSION,
                ok: false,
                discovery: &discovery,
                services: &[],
                phases: &crate::output::Phases {
                    total_ms: crate::output::ms_since(started),
                    ..phases
                },
            };
            crate::output::print_json(&o);
        } else {
            discovery.print(false);
        }
        return discovery.exit_code();
    };
    let live = !out.json && std::io::stderr().is_terminal();
    if live {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "probing {} service(s)…",
            verified.document.config.protocols.len()
        );
    }
    let probing = std::time::Instant::now();
    let services = client
        .probe(&verified.document.config, deadline, &|p| {
            if live {
                let mark = if p.is_usable() { "ok " } else { "!! " };
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{mark}{}", row(p));
            }
        })
        .await;
    phases.probe_ms = Some(crate::output::ms_since(probing));
    phases.total_ms = crate::output::ms_since(started);
    let ok = services.iter().all(ServiceProbe::is_usable);
    if out.json {
        let o = ProbeOutput {
            version: JSON_VERSION,
            ok,
            discovery: &discovery,
            services: &services,
            phases: &phases,
        };
        crate::output::print_json(&o);
    } else {
        let provider = verified
            .document
            .config
            .provider_name()
            .unwrap_or(address.domain().as_str());
        let mut text = String::new();
        let _ = writeln!(
            text,
            "Verified configuration for {address} ({provider}, {})",
            verified.url
        );
        let _ = writeln!(text);
        let _ = write!(text, "{}", Table(&services));
        let bad = services.iter().filter(|s| !s.is_usable()).count();
        let _ = writeln!(text);
        if bad == 0 {
            let _ = writeln!(
                text,
                "All {} services are reachable over verified TLS and usable.",
                services.len()
            );
        } else {
            let _ = writeln!(
                text,
                "{bad} of {} services cannot be used (see above); no credential was sent to any server.",
                services.len()
            );
        }
        crate::output::print_human(&text);
    }
    if ok { exit::OK } else { exit::SERVICE_UNUSABLE }
}
