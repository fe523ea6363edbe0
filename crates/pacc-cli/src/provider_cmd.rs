//! Provider commands: `render`, `serve`, `check`, `rotate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pacc::Client;
use pacc_proto::name::Domain;
use pacc_proto::provider::check::{CheckFinding, Verdict, check_with_oauth, rotation_plan};
use pacc_proto::provider::render::{Publication, publication, render};
use pacc_proto::provider::{Description, DocumentSpec};
use serde::Serialize;

use crate::output::JSON_VERSION;
use crate::{exit, report_error};

/// Read and validate a description, printing every error.
pub fn load(path: &Path) -> Result<Description, u8> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| report_error(&format!("cannot read {}: {e}", path.display())))?;
    Description::parse(&path.display().to_string(), &text).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        report_error(&format!(
            "{} is not valid; nothing was rendered:\n{}",
            path.display(),
            all.join("\n")
        ))
    })
}

fn find<'a>(desc: &'a Description, domain: &str) -> Result<(&'a DocumentSpec, Domain), u8> {
    let d = Domain::parse(domain).map_err(|e| report_error(&e.to_string()))?;
    match desc.document_for(&d) {
        Some(spec) => Ok((spec, d)),
        None => Err(report_error(&format!(
            "{d} is not listed in any [[document]] of the description"
        ))),
    }
}

#[derive(Serialize)]
struct Rendered<'a> {
    #[serde(flatten)]
    publication: &'a Publication,
    length: usize,
    document: String,
}

/// `pacc render`.
#[allow(clippy::print_stdout)]
pub fn render_cmd(path: &Path, domain: Option<&str>, out: Option<&Path>, json: bool) -> u8 {
    let desc = match load(path) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let mut all = Vec::new();
    for spec in &desc.documents {
        let bytes = render(spec);
        for d in &spec.domains {
            if domain.is_none_or(|want| Domain::parse(want).is_ok_and(|w| &w == d)) {
                all.push((publication(spec, d, &bytes, desc.ttl), bytes.clone()));
            }
        }
    }
    if let Some(want) = domain.filter(|_| all.is_empty()) {
        return find(&desc, want).err().unwrap_or(exit::USAGE);
    }
    if json {
        let items: Vec<Rendered<'_>> = all
            .iter()
            .map(|(p, b)| Rendered {
                publication: p,
                length: b.len(),
                document: String::from_utf8_lossy(b).into_owned(),
            })
            .collect();
        let v = serde_json::json!({ "version": JSON_VERSION, "publications": items });
        crate::output::print_json(&v);
        return exit::OK;
    }
    match (domain, out) {
        (Some(_), None) => {
            // Exactly the bytes to serve, nothing else.
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(&all[0].1)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return report_error("cannot write to stdout");
            }
        }
        (_, Some(file)) => {
            if all.len() != 1 {
                return report_error("--out needs --domain (one document at a time)");
            }
            if let Err(e) = std::fs::write(file, &all[0].1) {
                return report_error(&format!("cannot write {}: {e}", file.display()));
            }
            println!("; {} bytes written to {}", all[0].1.len(), file.display());
            all[0]
                .0
                .zone_lines()
                .iter()
                .for_each(|l| crate::output::print_human(&format!("{l}\n")));
        }
        (None, None) => {
            for (p, b) in &all {
                println!("; {} — {} bytes served at {}", p.domain, b.len(), p.url);
                p.zone_lines()
                    .iter()
                    .for_each(|l| crate::output::print_human(&format!("{l}\n")));
            }
        }
    }
    exit::OK
}

/// `pacc rotate`: the safe order for changing a domain's document (DIG-13).
#[allow(clippy::print_stdout)]
pub async fn rotate_cmd(
    client: Option<&Client>,
    path: &Path,
    domain: &str,
    current: &[String],
    current_ttl: Option<u32>,
    json: bool,
) -> u8 {
    // The records named must be records: a typo here would mislead the retire step.
    for c in current {
        if let Err(why) = pacc_proto::digest::parse_record(c.as_bytes()) {
            return crate::report_error_kind(
                "usage",
                &format!(
                    "--current {c:?} is not a UAAC1 record ({why}); give the TXT record exactly as published"
                ),
            );
        }
    }
    let desc = match load(path) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let (spec, d) = match find(&desc, domain) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let bytes = render(spec);
    let p = publication(spec, &d, &bytes, desc.ttl);
    // What is published now, and for how long resolvers may keep it.
    let mut notes: Vec<String> = Vec::new();
    let mut current: Vec<String> = current.to_vec();
    let mut ttl = (desc.ttl, "description");
    match client {
        None => notes.push(format!(
            "not looked up (--offline): assuming the description's TTL of {} s for the current records",
            desc.ttl
        )),
        Some(client) => match client.published_records(&d).await {
            Ok(answer) => {
                let published: Vec<String> = answer
                    .records
                    .iter()
                    .filter_map(|r| std::str::from_utf8(r).ok())
                    .filter(|r| pacc_proto::digest::parse_record(r.as_bytes()).is_ok())
                    .map(str::to_owned)
                    .collect();
                if current.is_empty() {
                    current = published.clone();
                } else {
                    for c in &current {
                        if !published.iter().any(|r| r.trim() == c.trim()) {
                            notes.push(format!(
                                "--current {c} is not published at {} (published: {})",
                                p.txt_owner,
                                if published.is_empty() {
                                    "no UAAC1 record".to_owned()
                                } else {
                                    published.join(" | ")
                                }
                            ));
                        }
                    }
                }
                ttl = match answer.authoritative {
                    Some(server) => {
                        notes.push(format!(
                            "the current records' TTL, {} s, is from the authoritative server {server}",
                            answer.ttl
                        ));
                        (answer.ttl, "authoritative")
                    }
                    None => {
                        notes.push(format!(
                            "the current records' TTL, {} s, is from the resolver, which may have counted it down: give --current-ttl if the zone says more",
                            answer.ttl
                        ));
                        (answer.ttl, "resolver")
                    }
                };
            }
            Err(pacc_proto::discovery::DnsFailure::NotFound) => notes.push(format!(
                "nothing is published at {} yet: this is the first publication",
                p.txt_owner
            )),
            Err(e) => notes.push(format!(
                "could not look up {} ({e}); assuming the description's TTL of {} s",
                p.txt_owner, desc.ttl
            )),
        },
    }
    if let Some(t) = current_ttl {
        ttl = (t, "flag");
    }
    // Resolvers may keep the old records for their TTL, not the new one's.
    let steps = rotation_plan(&p.txt_owner, &current, &p.txt, ttl.0);
    if json {
        crate::output::print_json(&serde_json::json!({
            "version": crate::output::JSON_VERSION,
            "domain": d.to_string(),
            "txt_owner": p.txt_owner,
            "current": current,
            "current_ttl": ttl.0,
            "current_ttl_source": ttl.1,
            "new": p.txt,
            "length": bytes.len(),
            "steps": steps,
            "notes": notes,
        }));
        return exit::OK;
    }
    let mut text = format!(
        "Changing the document of {d} to the rendering of {} ({} bytes):\n",
        path.display(),
        bytes.len()
    );
    for step in steps {
        text.push_str(&format!("  {step}\n"));
    }
    for n in &notes {
        text.push_str(&format!(
            "Note: {}\n",
            pacc_proto::name::escape_for_terminal(n)
        ));
    }
    crate::output::print_human(&text);
    exit::OK
}

#[derive(Serialize)]
struct CheckOutput<'a> {
    version: u32,
    domain: &'a str,
    ok: bool,
    findings: &'a [CheckFinding],
    phases: crate::output::Phases,
}

/// `pacc check`.
#[allow(clippy::print_stdout)]
pub async fn check_cmd(
    client: &Client,
    domain: &str,
    expect: Option<&Path>,
    probe: bool,
    json: bool,
) -> u8 {
    let d = match Domain::parse_discovery(domain) {
        Ok(d) => d,
        Err(e) => return report_error(&e.to_string()),
    };
    let expected = match expect {
        Some(path) => match load(path) {
            Ok(desc) => match desc.document_for(&d) {
                Some(spec) => Some(render(spec)),
                None => return report_error(&format!("{d} is not in {}", path.display())),
            },
            Err(c) => return c,
        },
        None => None,
    };
    let (findings, phases) = check_domain(client, &d, expected.as_deref(), probe).await;
    let ok = !findings.iter().any(|f| f.verdict == Verdict::Fail);
    if json {
        let o = CheckOutput {
            version: JSON_VERSION,
            domain: d.as_str(),
            ok,
            findings: &findings,
            phases,
        };
        crate::output::print_json(&o);
    } else {
        use std::fmt::Write as _;
        // The tags are pacc's own (coloured when stdout gets colour); the rest is escaped.
        let color = crate::term::stdout_color();
        let esc = pacc_proto::name::escape_for_terminal;
        let mut text = String::new();
        let _ = writeln!(text, "Checking {} as a client sees it", esc(&d.to_string()));
        for f in &findings {
            let _ = writeln!(
                text,
                "{}  {:<12} {}",
                verdict_tag(f.verdict, color),
                esc(f.area),
                esc(&f.message)
            );
            if let (Some(fix), Verdict::Warn | Verdict::Fail | Verdict::Info) = (&f.fix, f.verdict)
            {
                let _ = writeln!(text, "      {:<12} fix: {}", "", esc(fix));
            }
        }
        let fails = findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .count();
        let warns = findings
            .iter()
            .filter(|f| f.verdict == Verdict::Warn)
            .count();
        let _ = writeln!(text);
        let _ = writeln!(text, "{fails} failure(s), {warns} warning(s)");
        crate::output::print_raw(&text);
    }
    if ok { exit::OK } else { exit::NOT_PUBLISHED }
}

/// A verdict's tag as `check` prints it, coloured when `color`.
fn verdict_tag(verdict: Verdict, color: bool) -> String {
    let (tag, style) = match verdict {
        Verdict::Pass => ("PASS", "32"),
        Verdict::Info => ("INFO", "36"),
        Verdict::Warn => ("WARN", "1;33"),
        Verdict::Fail => ("FAIL", "1;31"),
    };
    crate::term::paint(tag, style, color)
}

/// Everything `check` finds for one domain, with the time each phase took (one deadline,
/// `--timeout`, for discovery, the probes and the issuer's metadata).
async fn check_domain(
    client: &Client,
    d: &Domain,
    expected: Option<&[u8]>,
    probe: bool,
) -> (Vec<CheckFinding>, crate::output::Phases) {
    // One deadline (--timeout) for discovery, the probes and the issuer's metadata.
    let started = std::time::Instant::now();
    let deadline = client.deadline();
    let report = client.discover_domain_until(d, deadline, &|_| {}).await;
    let mut phases = crate::output::Phases {
        discovery_ms: crate::output::ms_since(started),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let probes = match (&report.outcome, probe) {
        (Ok(v), true) => Some(client.probe(&v.document.config, deadline, &|_| {}).await),
        _ => None,
    };
    phases.probe_ms = probes.as_ref().map(|_| crate::output::ms_since(t));
    let t = std::time::Instant::now();
    let issuer = report
        .outcome
        .as_ref()
        .ok()
        .and_then(|v| v.document.config.authentication.as_ref())
        .and_then(|a| a.oauth_public.as_ref())
        .map(|o| o.issuer.clone());
    let oauth = match issuer {
        Some(iss) => Some(
            client
                .oauth_metadata(&iss, deadline)
                .await
                .map_err(|e| e.to_string()),
        ),
        None => None,
    };
    phases.oauth_ms = oauth.as_ref().map(|_| crate::output::ms_since(t));
    phases.total_ms = crate::output::ms_since(started);
    let mut findings = check_with_oauth(&report, probes.as_deref(), expected, oauth.as_ref());
    // The shapes still deployed from older drafts, asked for concurrently.
    let answers = futures_util::future::join_all(
        pacc_proto::provider::check::obsolete_locations(d)
            .into_iter()
            .map(|url| async move {
                client
                    .get(&url, deadline)
                    .await
                    .ok()
                    .map(|(s, b)| (url, s, b))
            }),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    findings.extend(pacc_proto::provider::check::certificate_findings(
        &report, now,
    ));
    findings.extend(pacc_proto::provider::check::obsolete_findings(
        &answers.into_iter().flatten().collect::<Vec<_>>(),
        &report.url,
        report.response.is_some(),
    ));
    (findings, phases)
}

/// The domains of `--all DESCRIPTION` or `--domains FILE`.
pub fn fleet_domains(all: Option<&Path>, list: Option<&Path>) -> Result<Vec<Domain>, u8> {
    if let Some(path) = all {
        let desc = load(path)?;
        return Ok(desc
            .documents
            .iter()
            .flat_map(|d| d.domains.iter().cloned())
            .collect());
    }
    let Some(path) = list else {
        return Err(report_error(
            "give a domain, --all DESCRIPTION or --domains FILE",
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| report_error(&format!("cannot read {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.split('#').next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        match Domain::parse_discovery(name) {
            Ok(d) => out.push(d),
            Err(e) => {
                return Err(report_error(&format!("{}:{}: {e}", path.display(), i + 1)));
            }
        }
    }
    Ok(out)
}

/// `pacc check --all DESCRIPTION` / `--domains FILE`: every domain, `jobs` at a time, one
/// line each as it finishes (JSON Lines with `--json`) and a summary; exit 1 when any fails.
pub async fn check_fleet(
    client: &Client,
    domains: Vec<Domain>,
    expect: Option<&Path>,
    probe: bool,
    jobs: usize,
    json: bool,
) -> u8 {
    use futures_util::StreamExt as _;
    let desc = match expect {
        Some(path) => match load(path) {
            Ok(d) => Some(d),
            Err(c) => return c,
        },
        None => None,
    };
    let started = std::time::Instant::now();
    let total = domains.len();
    let bar = crate::term::progress_allowed().then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} domains {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let color = crate::term::stdout_color();
    let mut failed = 0usize;
    let mut warned = 0usize;
    let mut results = futures_util::stream::iter(domains.into_iter().map(|d| {
        let expected = desc
            .as_ref()
            .and_then(|desc| desc.document_for(&d))
            .map(render);
        async move {
            let (findings, phases) = check_domain(client, &d, expected.as_deref(), probe).await;
            (d, findings, phases)
        }
    }))
    .buffer_unordered(jobs.max(1));
    while let Some((d, findings, phases)) = results.next().await {
        let fails: Vec<&CheckFinding> = findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .collect();
        let warns = findings
            .iter()
            .filter(|f| f.verdict == Verdict::Warn)
            .count();
        if !fails.is_empty() {
            failed += 1;
        } else if warns > 0 {
            warned += 1;
        }
        let line = if json {
            let mut v = serde_json::to_string(&CheckOutput {
                version: JSON_VERSION,
                domain: d.as_str(),
                ok: fails.is_empty(),
                findings: &findings,
                phases,
            })
            .unwrap_or_default();
            v.push('\n');
            v
        } else {
            let esc = pacc_proto::name::escape_for_terminal;
            match fails.first() {
                Some(f) => format!(
                    "{}  {}  {} ({} failure(s), {warns} warning(s))\n",
                    verdict_tag(Verdict::Fail, color),
                    esc(d.as_str()),
                    esc(&f.message),
                    fails.len()
                ),
                None if warns > 0 => format!(
                    "{}  {}  {warns} warning(s)\n",
                    verdict_tag(Verdict::Warn, color),
                    esc(d.as_str())
                ),
                None => format!(
                    "{}  {}\n",
                    verdict_tag(Verdict::Pass, color),
                    esc(d.as_str())
                ),
            }
        };
        match &bar {
            Some(b) => b.suspend(|| crate::output::print_line(&line)),
            None => crate::output::print_line(&line),
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let per_second = total as f64 / elapsed.as_secs_f64().max(0.001);
    if json {
        crate::output::print_line(&format!(
            "{}\n",
            serde_json::json!({"summary": {
                "version": JSON_VERSION,
                "domains": total,
                "ok": total - failed,
                "failed": failed,
                "warned": warned,
                "elapsed_ms": crate::output::ms_since(started),
                "domains_per_second": (per_second * 10.0).round() / 10.0,
            }})
        ));
    } else {
        crate::output::print_line(&format!(
            "\n{total} domain(s): {} ok, {failed} failing, {warned} with warnings ({:.1} s, {per_second:.0} domains/s)\n",
            total - failed,
            elapsed.as_secs_f64()
        ));
    }
    if failed == 0 {
        exit::OK
    } else {
        exit::NOT_PUBLISHED
    }
}

/// `pacc serve`.
pub async fn serve_cmd(
    path: &Path,
    listen: &[SocketAddr],
    cert_dir: Option<&PathBuf>,
    access_log: bool,
    metrics: Option<SocketAddr>,
) -> u8 {
    let desc = match load(path) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let mut addrs: Vec<SocketAddr> = listen.to_vec();
    if addrs.is_empty() {
        for a in &desc.listen {
            match a.parse() {
                Ok(a) => addrs.push(a),
                Err(_) => return report_error(&format!("[serve] listen: '{a}' is not IP:PORT")),
            }
        }
    }
    if addrs.is_empty() {
        return report_error(
            "nowhere to listen: give --listen IP:PORT or [serve] listen in the description",
        );
    }
    // Under systemd with `LoadCredential=certs:/etc/pacc/certs`, the keys (0600, root's) are
    // handed over as $CREDENTIALS_DIRECTORY/certs, readable by the dynamic user.
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| PathBuf::from(d).join("certs"))
        .filter(|d| d.is_dir());
    let cert_dir = cert_dir.or(credentials.as_ref());
    let mut server = match pacc::serve::Server::start_full(
        path,
        cert_dir.map(PathBuf::as_path),
        &addrs,
        pacc::serve::Limits::default(),
        pacc::serve::Options { access_log },
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return report_error(&e.to_string()),
    };
    if let Some(addr) = metrics {
        match server.start_metrics(addr).await {
            Ok(bound) => tracing::info!("metrics at http://{bound}/metrics"),
            Err(e) => return report_error(&e.to_string()),
        }
    }
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return report_error("cannot install signal handlers");
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match server.reload() {
                Ok(n) => tracing::info!(domains = n, "description reloaded"),
                Err(e) => tracing::error!(error = %e, "reload refused; still serving the previous description"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // The listeners close at once; connections in the TLS handshake are dropped; idle ones
    // close; one mid-request-head or mid-response gets 1 s; nothing outlives 10 s.
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(10)).await;
    exit::OK
}
