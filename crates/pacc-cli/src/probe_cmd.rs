//! `pacc probe`: discovery, then every service probed; a live line per service on a
//! terminal, a table at the end, or one JSON object.

use std::fmt::{self, Write as _};
use std::io::IsTerminal as _;

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

/// The width of the terminal stdout is on, if it is one.
fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|w| *w >= 40)
}

/// `line` cut to `width` characters (with "…"), when a width is given.
fn fit(line: String, width: Option<usize>) -> String {
    match width {
        Some(w) if line.chars().count() > w => {
            let mut cut: String = line.chars().take(w.saturating_sub(1)).collect();
            cut.push('…');
            cut
        }
        _ => line,
    }
}

/// The column width of the targets: the longest of `targets` (character counts), at
/// most 40, 30 on a narrow terminal.
fn target_width(targets: impl Iterator<Item = usize>, width: Option<usize>) -> usize {
    let cap = match width {
        Some(w) if w < 120 => 30,
        _ => 40,
    };
    targets.max().unwrap_or(6).clamp(6, cap)
}

fn row(p: &ServiceProbe, tw: usize, width: Option<usize>) -> String {
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
    let target = fit(p.target.clone(), Some(tw));
    fit(
        format!(
            "{:<11} {target:<tw$} {:<7} {:<8} {:>5}ms  {}",
            p.service.label(),
            tls.replace("TLSv", ""),
            usable,
            p.elapsed_ms,
            offers(p)
        ),
        width,
    )
}

/// The table, in the document's order, fitting `width` when given.
struct Table<'a> {
    probes: Vec<&'a ServiceProbe>,
    width: Option<usize>,
}

impl<'a> Table<'a> {
    fn new(
        config: &pacc_proto::document::Config,
        probes: &'a [ServiceProbe],
        width: Option<usize>,
    ) -> Self {
        Table {
            probes: in_document_order(config, probes),
            width,
        }
    }
}

/// The probes in the order the document lists the services.
fn in_document_order<'a>(
    config: &pacc_proto::document::Config,
    probes: &'a [ServiceProbe],
) -> Vec<&'a ServiceProbe> {
    let order: Vec<_> = config.protocols.iter().map(|s| s.kind).collect();
    let mut v: Vec<&ServiceProbe> = probes.iter().collect();
    v.sort_by_key(|p| {
        order
            .iter()
            .position(|k| *k == p.service)
            .unwrap_or(usize::MAX)
    });
    v
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tw = target_width(
            self.probes.iter().map(|p| p.target.chars().count()),
            self.width,
        );
        writeln!(
            f,
            "{}",
            fit(
                format!(
                    "{:<11} {:<tw$} {:<7} {:<8} {:>7}  Offers",
                    "Service", "Server", "TLS", "Usable", "Time"
                ),
                self.width
            )
        )?;
        for p in &self.probes {
            writeln!(f, "{}", row(p, tw, self.width))?;
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
                    writeln!(f, "{}", fit(format!("{:<11} {extra}", ""), self.width))?;
                }
            }
        }
        Ok(())
    }
}

/// On a terminal: one row per service in the document's order, each a spinner until its
/// probe ends and then its final row, erased at the end so the printed table takes its
/// place.
struct LiveTable {
    multi: indicatif::MultiProgress,
    rows: Vec<(pacc_proto::document::ServiceKind, indicatif::ProgressBar)>,
    tw: usize,
    width: Option<usize>,
}

impl LiveTable {
    fn start(config: &pacc_proto::document::Config, width: Option<usize>) -> Self {
        use indicatif::{ProgressBar, ProgressStyle};
        let multi =
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
        // The targets as the probes will name them (`host:port`, or the URL).
        let tw = target_width(
            config.protocols.iter().map(|s| match &s.endpoint {
                pacc_proto::document::Endpoint::Host { host, port, .. } => {
                    format!("{host}:{port}").chars().count()
                }
                pacc_proto::document::Endpoint::Url { url } => url.to_string().chars().count(),
            }),
            width,
        );
        let style = ProgressStyle::with_template("{spinner} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let rows = config
            .protocols
            .iter()
            .map(|s| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_message(format!("{:<11} probing…", s.kind.label()));
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                (s.kind, bar)
            })
            .collect();
        LiveTable {
            multi,
            rows,
            tw,
            width: width.map(|w| w.saturating_sub(2)),
        }
    }

    fn done(&self, p: &ServiceProbe) {
        if let Some((_, bar)) = self.rows.iter().find(|(k, _)| *k == p.service) {
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix} {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_prefix(if p.is_usable() { "✓" } else { "✗" });
            bar.finish_with_message(pacc_proto::name::escape_for_terminal(&row(
                p, self.tw, self.width,
            )));
        }
    }

    fn clear(&self) {
        for (_, bar) in &self.rows {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
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
    let width = terminal_width();
    let live = (!out.json && crate::term::progress_allowed())
        .then(|| LiveTable::start(&verified.document.config, width));
    let probing = std::time::Instant::now();
    let services = client
        .probe(&verified.document.config, deadline, &|p| {
            if let Some(live) = &live {
                live.done(p);
            }
        })
        .await;
    if let Some(live) = &live {
        live.clear();
    }
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
            "{}",
            fit(
                format!(
                    "Verified configuration for {address} ({provider}, {})",
                    verified.url
                ),
                width
            )
        );
        let _ = writeln!(text);
        let _ = write!(
            text,
            "{}",
            Table::new(&verified.document.config, &services, width)
        );
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
