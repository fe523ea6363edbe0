//! One result value for `pacc discover`, rendered as text or as JSON (docs/json-output.md).

use std::fmt::{self, Write as _};

use pacc::Report;
use pacc_proto::digest::{RecordVerdict, SeenRecord};
use pacc_proto::discovery::{DiscoveryError, FallbackReport, MxSource, TrailEntry, Verified};
use pacc_proto::document::{Config, Endpoint, Finding, Level};
use pacc_proto::fetch::{FailureClass, FetchedBody};
use pacc_proto::name::{Domain, DomainGroup, EmailAddress, group_by_registrable};
use serde::Serialize;

use crate::exit;

/// Version of the JSON format; bumped on incompatible changes.
pub const JSON_VERSION: u32 = 1;

/// The JSON contract: with `--json`, exactly one JSON object on stdout whatever happens.
/// Every command prints its result through [`print_json`]; an error that ends the run before
/// (a usage error, an unreadable `--ca-file`, Ctrl-C) is recorded with [`record_error`], and
/// [`finish_json`] prints it as `{version, ok: false, exit_code, error: {kind, message}}`
/// when nothing else was printed.
mod contract {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub(super) static JSON_MODE: AtomicBool = AtomicBool::new(false);
    pub(super) static PRINTED: AtomicBool = AtomicBool::new(false);
    pub(super) static ERROR: Mutex<Option<(&'static str, String)>> = Mutex::new(None);

    pub(super) fn json_mode() -> bool {
        JSON_MODE.load(Ordering::SeqCst)
    }

    /// Whether this call is the first to print (and marks it printed).
    pub(super) fn claim() -> bool {
        !PRINTED.swap(true, Ordering::SeqCst)
    }
}

/// `--json` was given: [`finish_json`] guarantees one object.
pub fn set_json_mode(on: bool) {
    contract::JSON_MODE.store(on, std::sync::atomic::Ordering::SeqCst);
}

/// Print the command's one JSON object on stdout (a second one is never printed).
#[allow(clippy::print_stdout)]
pub fn print_json(v: &impl Serialize) {
    if !contract::claim() {
        return;
    }
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => println!(
            "{}",
            serde_json::json!({"version": JSON_VERSION, "ok": false, "error": {"kind": "internal", "message": e.to_string()}})
        ),
    }
}

/// Print human output on stdout with every line's untrusted text made harmless: controls,
/// bidi overrides and invisible formatting characters shown as `\u{…}` escapes, so that
/// nothing a provider, a server or a file wrote can act as a terminal command (JSON keeps
/// the exact values).
#[allow(clippy::print_stdout)]
pub fn print_human(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let body = body.strip_suffix('\r').unwrap_or(body);
        if write!(out, "{}{end}", pacc_proto::name::escape_for_terminal(body)).is_err() {
            // A closed pipe: end quietly, as the panic hook does for println!.
            std::process::exit(0);
        }
    }
    let _ = out.flush();
}

/// Print text that is already safe for the terminal (built from escaped parts and pacc's
/// own colour codes).
#[allow(clippy::print_stdout)]
pub fn print_raw(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).is_err() {
        std::process::exit(0);
    }
    let _ = out.flush();
}

/// The JSON Schemas of every command's output (docs/schema/), built in.
pub const SCHEMAS: &[(&str, &str)] = &[
    (
        "discover",
        include_str!("../../../docs/schema/discover.schema.json"),
    ),
    (
        "probe",
        include_str!("../../../docs/schema/probe.schema.json"),
    ),
    (
        "setup",
        include_str!("../../../docs/schema/setup.schema.json"),
    ),
    (
        "check",
        include_str!("../../../docs/schema/check.schema.json"),
    ),
    (
        "render",
        include_str!("../../../docs/schema/render.schema.json"),
    ),
    (
        "rotate",
        include_str!("../../../docs/schema/rotate.schema.json"),
    ),
    (
        "accounts",
        include_str!("../../../docs/schema/accounts.schema.json"),
    ),
    (
        "accounts-show",
        include_str!("../../../docs/schema/accounts-show.schema.json"),
    ),
    (
        "error",
        include_str!("../../../docs/schema/error.schema.json"),
    ),
];

/// `pacc schema [NAME]`.
#[allow(clippy::print_stdout)]
pub fn schema_cmd(name: Option<&str>) -> u8 {
    match name {
        None => {
            for (n, _) in SCHEMAS {
                println!("{n}");
            }
            exit::OK
        }
        Some(n) => match SCHEMAS.iter().find(|(k, _)| *k == n) {
            Some((_, s)) => {
                print!("{s}");
                exit::OK
            }
            None => crate::report_error_kind(
                "usage",
                &format!(
                    "no schema {n:?}; the schemas are {}",
                    SCHEMAS
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        },
    }
}

/// One line of a multi-line result (JSON Lines, fleet rows): counts as the run's output
/// for the JSON contract.
pub fn print_line(line: &str) {
    contract::PRINTED.store(true, std::sync::atomic::Ordering::SeqCst);
    print_raw(line);
}

/// Remember why the run ends, for [`finish_json`] (the first error recorded wins).
pub fn record_error(kind: &'static str, message: &str) {
    if let Ok(mut e) = contract::ERROR.lock()
        && e.is_none()
    {
        *e = Some((kind, message.to_owned()));
    }
}

/// With `--json` and nothing printed yet: print the recorded error (or that the command
/// ended with `code` without a result).
pub fn finish_json(code: u8) {
    if !contract::json_mode() {
        return;
    }
    let (kind, message) = contract::ERROR
        .lock()
        .ok()
        .and_then(|e| e.clone())
        .unwrap_or((
            "no-result",
            format!("the command ended with exit code {code} without a result"),
        ));
    print_json(&serde_json::json!({
        "version": JSON_VERSION,
        "ok": false,
        "exit_code": code,
        "error": {"kind": kind, "message": message},
    }));
}

/// Time spent per phase of one command (milliseconds), in the JSON of `probe`, `setup` and
/// `check`. The phases share the command's one `--timeout` deadline; only `browser_ms` (the
/// wait for the user in the browser) is outside it.
pub use pacc::setup::Phases;

/// Milliseconds since `t`.
pub fn ms_since(t: std::time::Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The result of `pacc discover`.
#[derive(Debug, Serialize)]
pub struct DiscoverOutput<'a> {
    version: u32,
    address: &'a str,
    domain: &'a str,
    url: &'a str,
    digest_owner: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a Config>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Source<'a>>,
    findings: &'a [Finding],
    credential_domains: Vec<DomainGroup>,
    records: &'a [SeenRecord],
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<&'a FallbackReport>,
    trail: &'a [TrailEntry],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorOut>,
    /// The primary document's bytes arrived (else no TXT record could be compared).
    #[serde(skip)]
    fetched: bool,
}

#[derive(Debug, Serialize)]
struct Source<'a> {
    method: pacc_proto::discovery::Method,
    url: &'a str,
    algorithm: pacc_proto::digest::Algorithm,
    record: &'a str,
    spelling: pacc_proto::document::Spelling,
    #[serde(skip_serializing_if = "Option::is_none")]
    mx: Option<MxOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a FetchedBody>,
}

#[derive(Debug, Serialize)]
struct MxOut<'a> {
    #[serde(flatten)]
    source: &'a MxSource,
    /// Registrable domains of the MX hosts (MX-9).
    mx_domains: Vec<Domain>,
}

#[derive(Debug, Serialize)]
struct ErrorOut {
    kind: &'static str,
    class: FailureClass,
    message: String,
    /// For MX-fallback failures: the step that stopped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'static str>,
    /// For MX-fallback failures: why the primary path was absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    primary: Option<Box<ErrorOut>>,
}

impl ErrorOut {
    fn new(e: &DiscoveryError) -> Self {
        let (step, primary) = match e {
            DiscoveryError::MxFallback { primary, failure } => {
                (Some(failure.step()), Some(Box::new(ErrorOut::new(primary))))
            }
            _ => (None, None),
        };
        ErrorOut {
            kind: e.kind(),
            class: e.class(),
            message: e.to_string(),
            step,
            primary,
        }
    }
}

impl<'a> DiscoverOutput<'a> {
    pub fn new(address: &'a EmailAddress, report: &'a Report) -> Self {
        let verified: Option<&Verified> = report.outcome.as_ref().ok();
        let config = verified.map(|v| &v.document.config);
        DiscoverOutput {
            version: JSON_VERSION,
            address: address.as_str(),
            domain: report.domain.as_str(),
            url: &report.url,
            digest_owner: &report.digest_owner,
            ok: verified.is_some(),
            config,
            source: verified.map(|v| Source {
                method: v.method,
                url: &v.url,
                algorithm: v.algorithm,
                record: &v.record,
                spelling: v.document.spelling,
                mx: v.mx.as_ref().map(|source| MxOut {
                    source,
                    mx_domains: source.mx_domains(),
                }),
                response: report.response.as_ref(),
            }),
            findings: verified.map_or(&[][..], |v| &v.document.findings),
            credential_domains: config
                .map(|c| group_by_registrable(&c.credential_hosts()))
                .unwrap_or_default(),
            records: &report.records,
            fallback: report.fallback.as_ref(),
            trail: &report.trail,
            fetched: report.response.is_some(),
            error: report.outcome.as_ref().err().map(ErrorOut::new),
        }
    }

    /// A configuration was verified.
    pub fn is_ok(&self) -> bool {
        self.ok
    }

    /// The error's `kind` and `class` (stable strings) and message, if discovery failed.
    pub fn error_summary(&self) -> Option<(&'static str, &'static str, String)> {
        self.error.as_ref().map(|e| {
            (
                e.kind,
                match e.class {
                    FailureClass::Absent => "absent",
                    FailureClass::Integrity => "integrity",
                    FailureClass::Temporary => "temporary",
                },
                e.message.clone(),
            )
        })
    }

    pub fn exit_code(&self) -> u8 {
        match &self.error {
            None => exit::OK,
            Some(e) => match e.class {
                FailureClass::Absent => exit::NOT_PUBLISHED,
                FailureClass::Integrity => exit::INTEGRITY,
                FailureClass::Temporary => exit::TEMPORARY,
            },
        }
    }

    /// Results go to stdout; nothing else does.
    #[allow(clippy::print_stdout)]
    pub fn print(&self, json: bool) {
        if json {
            print_json(self);
        } else {
            print_human(&self.to_string());
        }
    }
}

impl fmt::Display for DiscoverOutput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.config, &self.error) {
            (Some(config), _) => self.fmt_success(f, config)?,
            (None, Some(e)) => fmt_error(f, self.domain, e)?,
            (None, None) => {}
        }
        self.fmt_trail(f)
    }
}

impl DiscoverOutput<'_> {
    fn fmt_success(&self, f: &mut fmt::Formatter<'_>, config: &Config) -> fmt::Result {
        let provider = config
            .info
            .as_ref()
            .and_then(|i| i.provider.as_ref())
            .map(|p| match &p.short_name {
                Some(s) if s != &p.name => format!("{} ({s})", p.name),
                _ => p.name.clone(),
            })
            .unwrap_or_else(|| format!("{} (the document names no provider)", self.domain));
        writeln!(f, "Verified configuration for {}", self.address)?;
        writeln!(f, "  provider   {provider}")?;
        if let Some(src) = &self.source {
            match &src.mx {
                None => {
                    writeln!(f, "  source     {} ({})", src.url, kebab(&src.method))?;
                    writeln!(
                        f,
                        "  digest     {} record matched: {}",
                        src.algorithm, src.record
                    )?;
                }
                Some(mx) => self.fmt_mx_source(f, mx)?,
            }
        }
        writeln!(f)?;
        writeln!(f, "Services")?;
        for s in config.protocols.iter() {
            let where_ = match &s.endpoint {
                Endpoint::Host { host, port, tls } => format!("{host}:{port}  {tls}"),
                Endpoint::Url { url } => url.to_string(),
            };
            writeln!(f, "  {:<12} {where_}", s.kind.label())?;
        }
        writeln!(f)?;
        writeln!(f, "Authentication")?;
        match &config.authentication {
            Some(a) => {
                if a.password {
                    writeln!(
                        f,
                        "  password   accepted; the username is the full address ({})",
                        self.address
                    )?;
                } else {
                    writeln!(f, "  password   not accepted (OAuth only)")?;
                }
                match &a.oauth_public {
                    Some(o) => writeln!(f, "  OAuth      public client, issuer {}", o.issuer)?,
                    None => writeln!(f, "  OAuth      not offered")?,
                }
            }
            None => writeln!(
                f,
                "  not stated by the provider; servers will be asked when signing in"
            )?,
        }
        writeln!(f)?;
        writeln!(
            f,
            "Credentials would be sent to (grouped by registrable domain)"
        )?;
        for g in &self.credential_domains {
            let hosts: Vec<String> = g.hosts.iter().map(ToString::to_string).collect();
            writeln!(f, "  {:<22} {}", g.domain.to_string(), hosts.join(", "))?;
        }
        if !self.findings.is_empty() {
            writeln!(f)?;
            writeln!(f, "Notes on the document")?;
            for finding in self.findings {
                let tag = match finding.level {
                    Level::Warning => "warning",
                    Level::Violation => "tolerated",
                    Level::Dropped => "ignored",
                };
                writeln!(f, "  {tag:<9} {}: {}", finding.path, finding.message)?;
            }
        }
        Ok(())
    }

    /// MX-9: make clear the settings come from the mail servers' operator.
    fn fmt_mx_source(&self, f: &mut fmt::Formatter<'_>, mx: &MxOut<'_>) -> fmt::Result {
        let domains: Vec<String> = mx.mx_domains.iter().map(ToString::to_string).collect();
        writeln!(
            f,
            "  source     MX fallback: {} publishes nothing itself; these settings come from the operator of its mail servers ({})",
            self.domain,
            domains.join(", ")
        )?;
        writeln!(
            f,
            "  MTA-STS    policy {} ({} mode) authorises the MX hosts",
            mx.source.policy_id, mx.source.mode
        )?;
        for h in &mx.source.hosts {
            writeln!(
                f,
                "  MX {:<7} {}: {} record matched at {}",
                mx.source.preference, h.mx_host, h.algorithm, h.digest_owner
            )?;
        }
        Ok(())
    }

    fn fmt_trail(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.trail.is_empty() {
            return Ok(());
        }
        writeln!(f)?;
        writeln!(f, "Validation trail")?;
        // The fallback's speculative steps matter only when the fallback was needed.
        let fallback_relevant = self.source.as_ref().is_some_and(|s| s.mx.is_some())
            || self.error.as_ref().is_some_and(|e| e.step.is_some());
        let order = |p: &str| {
            ["primary", "mta-sts", "mx", "mx-host"]
                .iter()
                .position(|x| *x == p)
        };
        let mut shown: Vec<&TrailEntry> = self
            .trail
            .iter()
            .filter(|t| fallback_relevant || t.purpose == "primary")
            .collect();
        shown.sort_by_key(|t| order(t.purpose));
        let hidden = self.trail.len() - shown.len();
        for t in shown {
            writeln!(
                f,
                "  {:<6} {:<8} {} ({} ms)",
                t.step, t.purpose, t.target, t.elapsed_ms
            )?;
            writeln!(f, "                  {}", t.result)?;
            if t.step == "txt" && t.purpose == "primary" {
                for r in self.records {
                    let mut line = String::new();
                    match &r.verdict {
                        RecordVerdict::Valid { record, matches } => {
                            // No verdict on a document that never arrived.
                            let verdict = match (self.fetched, *matches) {
                                (false, _) => "valid, not compared: no document",
                                (true, true) => "match",
                                (true, false) => "no match",
                            };
                            let _ = write!(
                                line,
                                "[{}] {}  ({}{})",
                                verdict,
                                r.text,
                                record.algorithm,
                                if record.canonical {
                                    ""
                                } else {
                                    ", non-canonical form"
                                }
                            );
                        }
                        RecordVerdict::Ignored { reason } => {
                            let _ = write!(line, "[ignored] {}  ({reason})", truncate(&r.text, 80));
                        }
                    }
                    if r.strings > 1 {
                        let _ = write!(line, " [{} strings joined]", r.strings);
                    }
                    writeln!(f, "                  {line}")?;
                }
            }
        }
        if hidden > 0 {
            writeln!(
                f,
                "  ({hidden} MX-fallback lookups ran alongside; they were not needed)"
            )?;
        }
        Ok(())
    }
}

fn fmt_error(f: &mut fmt::Formatter<'_>, domain: &str, e: &ErrorOut) -> fmt::Result {
    let (headline, advice) = match e.class {
        FailureClass::Absent => (
            format!("No PACC configuration is published for {domain}."),
            "Set up the account manually, or ask the provider to publish PACC.",
        ),
        FailureClass::Integrity => (
            format!("The configuration for {domain} failed verification; it must not be used."),
            "Do not enter a password. Contact the provider; this may be a misconfiguration or an attack.",
        ),
        FailureClass::Temporary => (
            format!("Could not check {domain} right now."),
            "Try again later; check your network connection.",
        ),
    };
    writeln!(f, "{headline}")?;
    match (&e.primary, e.step) {
        (Some(primary), Some(step)) => {
            writeln!(f, "  primary    {} [{}]", primary.message, primary.kind)?;
            let fallback = e
                .message
                .split(" (the primary path was absent")
                .next()
                .unwrap_or(&e.message);
            writeln!(f, "  fallback   stopped at {step}: {fallback} [{}]", e.kind)?;
        }
        _ => writeln!(f, "  reason     {} [{}]", e.message, e.kind)?,
    }
    writeln!(f, "  next step  {advice}")
}

fn kebab<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}
