//! `pacc setup`: a thin user of the library's setup session ([`pacc::setup`]): discover →
//! probe → choose → confirm → sign in → the account description, with the prompts, the
//! browser and the output of a command-line program.
//!
//! The method per service follows `--auth` (A-1 … A-3, O-14, O-15): in `auto`, a failed,
//! refused or impossible OAuth leg falls back to the password for the services that also
//! take one, and the output says why. Nothing is sent before the confirmation (SEC-1).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use pacc::Client;
use pacc::setup::{
    Answer, Authorization, Event, Events, Fallback, Finished, OAuthReport, Phases, Prepared, Saved,
    SetupError, SetupOptions, SetupSession, not_set_up,
};
use pacc::signin::{Validation, ValidationOutcome};
use pacc_proto::auth::Secret;
use pacc_proto::auth::gate::{ConfirmationRequest, GateError};
use pacc_proto::auth::login::FailureClass;
use pacc_proto::auth::select::{AuthPolicy, Choice, Decision, Method};
use pacc_proto::document::{Config, Endpoint};
use pacc_proto::name::{EmailAddress, escape_for_terminal};
use serde::Serialize;

use crate::output::{DiscoverOutput, JSON_VERSION};
use crate::{exit, report_error};

/// Where the password comes from, and how the OAuth browser step runs.
pub struct PasswordSource {
    /// `--auth`.
    pub policy: AuthPolicy,
    /// Read one line from standard input.
    pub stdin: bool,
    /// Read it from this environment variable.
    pub env: Option<String>,
    /// Print the authorization URL instead of opening a browser.
    pub no_browser: bool,
    /// Use the device authorization grant (RFC 8628).
    pub device: bool,
    /// How long to wait for the browser sign-in.
    pub browser_wait: Duration,
    /// Print tokens in the output.
    pub show_secrets: bool,
    /// Write the tokens to this file (mode 0600).
    pub token_file: Option<std::path::PathBuf>,
    /// Save the account (and its secrets) after signing in.
    pub save: bool,
    /// Where secrets go.
    pub store_secrets: pacc::accounts::Secrets,
    /// Extra CA files and the DNS server of this run, recorded in the account.
    pub ca_files: Vec<String>,
    /// `--dns`.
    pub dns: Option<String>,
    /// Write these client configurations after saving.
    pub export: Vec<pacc_proto::export::Format>,
}

impl PasswordSource {
    /// A password can be had without asking anyone.
    fn non_interactive(&self) -> bool {
        self.stdin || self.env.is_some()
    }
}

/// The JSON `oauth` object: the library's report, and the tokens with `--show-secrets`.
#[derive(Serialize)]
struct OAuthJson<'a> {
    #[serde(flatten)]
    report: &'a OAuthReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

/// The result of `pacc setup --json` (and of the RPC method `setup.sign_in`).
#[derive(Serialize)]
pub struct SetupOutput<'a> {
    version: u32,
    ok: bool,
    address: &'a str,
    discovery: DiscoverOutput<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmation: Option<&'a ConfirmationRequest>,
    choices: &'a [Choice],
    validations: &'a [Validation],
    accounts: Vec<pacc::setup::AccountService>,
    not_set_up: Vec<pacc::setup::NotSetUp>,
    #[serde(skip_serializing_if = "<[Fallback]>::is_empty")]
    fallbacks: &'a [Fallback],
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth: Option<OAuthJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved: Option<&'a Saved>,
    phases: Phases,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'a> SetupOutput<'a> {
    /// A setup that stopped before signing in (nothing usable, not confirmed): `error` says
    /// why; every chosen service is "nothing was sent".
    pub fn stopped(prepared: &'a Prepared, confirmation: bool, error: String) -> Self {
        SetupOutput {
            version: JSON_VERSION,
            ok: false,
            address: prepared.address().as_str(),
            discovery: DiscoverOutput::new(prepared.address(), prepared.report()),
            confirmation: prepared.confirmation().filter(|_| confirmation),
            choices: prepared.choices(),
            validations: &[],
            accounts: Vec::new(),
            not_set_up: not_set_up(prepared.choices(), &[], true),
            fallbacks: &[],
            oauth: prepared.oauth().map(|report| OAuthJson {
                report,
                access_token: None,
                refresh_token: None,
            }),
            saved: None,
            phases: prepared.phases(),
            error: Some(error),
        }
    }

    /// A setup that signed in (some services may have failed: `ok` says whether all
    /// worked).
    pub fn finished(finished: &'a Finished, saved: Option<&'a Saved>, show_secrets: bool) -> Self {
        let prepared = finished.prepared();
        let tokens = finished.tokens().filter(|_| show_secrets);
        SetupOutput {
            version: JSON_VERSION,
            ok: finished.is_ok(),
            address: prepared.address().as_str(),
            discovery: DiscoverOutput::new(prepared.address(), prepared.report()),
            confirmation: prepared.confirmation(),
            choices: finished.choices(),
            validations: finished.validations(),
            accounts: finished.accounts(),
            not_set_up: finished.not_set_up(),
            fallbacks: finished.fallbacks(),
            oauth: finished.oauth().map(|report| OAuthJson {
                report,
                access_token: tokens.map(|t| t.access_token.expose()),
                refresh_token: tokens.and_then(|t| t.refresh_token.as_ref().map(|r| r.expose())),
            }),
            saved,
            phases: finished.phases(),
            error: None,
        }
    }

    /// Print as pretty JSON on stdout.
    #[allow(clippy::print_stdout)]
    pub fn print(&self) {
        crate::output::print_json(self);
    }
}

fn eprint(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "{s}");
    let _ = e.flush();
}

/// Run `step` while handling the session's events as they arrive (and any left when it
/// ends).
pub async fn with_events<T>(
    step: impl Future<Output = T>,
    events: &mut Events,
    mut handle: impl FnMut(Event),
) -> T {
    let mut step = std::pin::pin!(step);
    loop {
        tokio::select! {
            r = &mut step => {
                while let Some(e) = events.try_next() {
                    handle(e);
                }
                return r;
            }
            Some(e) = events.next() => handle(e),
        }
    }
}

/// How the OAuth leg is shown on this machine.
#[derive(Clone, Copy)]
struct BrowserUi {
    can_open: bool,
    no_browser: bool,
    dont_wait: bool,
}

/// Show one event on stderr (progress, the authorization URL, the device code).
fn show_event(e: Event, json: bool, progress: &crate::progress::Progress, ui: Option<BrowserUi>) {
    match e {
        Event::LookupStarted { step, target } => {
            progress.update(pacc::Progress::Started { step, target });
        }
        Event::LookupFinished {
            step,
            target,
            elapsed_ms,
        } => progress.update(pacc::Progress::Finished {
            step,
            target,
            elapsed: Duration::from_millis(elapsed_ms),
        }),
        Event::Discovered { services, .. } if !json => {
            progress.set(&format!("probing {services} service(s)…"));
        }
        Event::OpenUrl { url, .. } => {
            let Some(ui) = ui else { return };
            if ui.can_open {
                eprint(&format!(
                    "Opening the browser to sign in (or open this URL):\n{url}\n"
                ));
                let _ = std::process::Command::new("xdg-open")
                    .arg(&url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            } else if ui.no_browser {
                eprint(&format!("Open this URL in a browser to sign in:\n{url}\n"));
            } else if ui.dont_wait {
                eprint(&format!(
                    "No browser can be opened here (no display); not waiting for a sign-in at:\n{url}\n"
                ));
            } else {
                eprint(&format!(
                    "No browser can be opened here. Open this URL in a browser on any device to sign in:\n{url}\n"
                ));
            }
        }
        Event::DeviceCode {
            verification_uri,
            user_code,
            verification_uri_complete,
        } => {
            eprint(&format!(
                "To sign in, open {} on any device and enter the code {}\n",
                escape_for_terminal(&verification_uri),
                escape_for_terminal(&user_code)
            ));
            if let Some(c) = verification_uri_complete {
                eprint(&format!("(or open {})\n", escape_for_terminal(&c)));
            }
        }
        Event::OAuthFailed { kind, message } => {
            // Diagnostics go to stderr also with --json (stdout is the JSON).
            eprint(&format!(
                "{}\n",
                escape_for_terminal(&format!("OAuth sign-in failed ({kind}): {message}"))
            ));
        }
        _ => {}
    }
}

/// Run the setup; returns the exit code.
#[allow(clippy::print_stdout)]
pub async fn run(
    client: Arc<Client>,
    address: &EmailAddress,
    accept_domains: Option<&[String]>,
    password: &PasswordSource,
    json: bool,
) -> u8 {
    let options = SetupOptions {
        policy: password.policy,
        ..SetupOptions::default()
    };
    let (session, mut events) = SetupSession::new(client, address.clone(), options);
    let progress = crate::progress::Progress::new(!json);
    let prepared = with_events(session.prepare(), &mut events, |e| {
        show_event(e, json, &progress, None)
    })
    .await;
    progress.finish();
    let prepared = match prepared {
        Ok(p) => p,
        Err(SetupError::Discovery(report)) => {
            let discovery = DiscoverOutput::new(address, &report);
            discovery.print(json);
            return discovery.exit_code();
        }
        Err(e) => return report_error(&e.to_string()),
    };
    if let Some(o) = prepared.oauth()
        && o.status == "failed"
    {
        eprint(&format!(
            "OAuth cannot be used: {}\n",
            escape_for_terminal(o.message.as_deref().unwrap_or(""))
        ));
    }
    let Some(request) = prepared.confirmation() else {
        let msg = "no service can be signed in to (see why for each)".to_owned();
        if json {
            SetupOutput::stopped(&prepared, false, msg).print();
        } else {
            for c in prepared.choices() {
                if let Decision::Skip { skipped } = &c.decision {
                    println!(
                        "{:<12} {:<40} not set up: {}",
                        c.service.label(),
                        escape_for_terminal(&c.target),
                        escape_for_terminal(skipped)
                    );
                }
            }
            let _ = report_error(&msg);
        }
        return exit::SERVICE_UNUSABLE;
    };

    // SEC-1 / MX-9: show every host that would receive a credential, then confirm.
    let answer = match accept_domains {
        Some(list) => Answer::Domains(list.to_vec()),
        None if std::io::stdin().is_terminal() && !json => {
            eprint(&request.display());
            eprint("Sign in to these servers? [y/N] ");
            let mut answer = String::new();
            let read = std::io::stdin().lock().read_line(&mut answer);
            if matches!(read, Ok(0)) {
                // End of input (Ctrl-D): end the prompt's line.
                eprint("\n");
            }
            if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
                Answer::Yes
            } else {
                Answer::No
            }
        }
        None => {
            let _ = report_error(
                "not confirmed: run on a terminal, or pass --accept-domains with exactly the domains to trust",
            );
            let shown: Vec<String> = request.domains().iter().map(|d| d.to_string()).collect();
            eprint(&format!("(the domains are: {})\n", shown.join(",")));
            if json {
                SetupOutput::stopped(&prepared, true, "not confirmed".into()).print();
            }
            return exit::NOT_CONFIRMED;
        }
    };
    let mut confirmed = match prepared.confirm(answer) {
        Ok(c) => c,
        Err(refused) => {
            let e = refused.error;
            if json {
                SetupOutput::stopped(&refused.prepared, true, e.to_string()).print();
            } else if e == GateError::Declined {
                // Declining is an ordinary outcome: one line, no error prefix.
                eprint("Not confirmed; nothing was sent.\n");
            } else {
                if let Some(r) = refused.prepared.confirmation() {
                    eprint(&r.display());
                }
                let _ = report_error(&e.to_string());
            }
            return exit::NOT_CONFIRMED;
        }
    };

    // The OAuth leg.
    if confirmed.uses_oauth() {
        let can_open = !password.no_browser && browser_available();
        let fallback_ready = password.policy == AuthPolicy::Auto
            && password.non_interactive()
            && confirmed.can_fall_back();
        // Never wait silently: where no browser can be opened and a password was given, the
        // URL is printed and the password used at once instead of waiting for a sign-in.
        let dont_wait = !can_open && !password.no_browser && fallback_ready;
        // RFC 8628 on request, or by itself where no browser can be opened here, no display
        // exists, and the server offers it (and there is no password to fall back on).
        let wait = password.browser_wait;
        let how = if password.device || (!can_open && !password.no_browser && !dont_wait) {
            Authorization::Device { wait }
        } else if dont_wait {
            Authorization::NoWait
        } else {
            Authorization::Browser { wait }
        };
        let ui = BrowserUi {
            can_open,
            no_browser: password.no_browser,
            dont_wait,
        };
        let r = with_events(confirmed.authorize(how), &mut events, |e| {
            show_event(e, json, &progress, Some(ui))
        })
        .await;
        if let Err(e) = r {
            return report_error(&e.to_string());
        }
        if let (Some(path), Some(tokens)) = (&password.token_file, confirmed.tokens())
            && let Err(e) = write_tokens(path, tokens)
        {
            return report_error(&format!("cannot write {}: {e}", path.display()));
        }
        if !confirmed.fallbacks().is_empty() {
            let names: Vec<&str> = confirmed
                .fallbacks()
                .iter()
                .map(|f| f.service.label())
                .collect();
            eprint(&format!(
                "Using the password instead for: {}\n",
                names.join(", ")
            ));
        }
    }
    let mut secret = None;
    if confirmed.needs_password() {
        match read_password(password) {
            Ok(p) => secret = Some(p),
            Err(PasswordError::Cancelled) => {
                eprint("Cancelled; nothing was sent.\n");
                return exit::NOT_CONFIRMED;
            }
            Err(PasswordError::Other(e)) => return report_error(&e),
        }
    }
    if !json {
        let n = confirmed
            .choices()
            .iter()
            .filter(|c| c.method().is_some())
            .count();
        crate::term::info(&format!("Signing in to {n} service(s) as {address}…"));
    }
    let finished = match with_events(confirmed.sign_in(secret), &mut events, |_| {}).await {
        Ok(f) => f,
        Err(e) => return report_error(&e.to_string()),
    };
    // Complete the setup: keep the verified, signed-in account (A-5, V-1: the services
    // that work) and its secrets in the keyring.
    let saved = if password.save && finished.validations().iter().any(Validation::is_ok) {
        let options = pacc::setup::SaveOptions {
            store: pacc::accounts::AccountStore::default(),
            secrets: password.store_secrets,
            ca_files: password.ca_files.clone(),
            dns: password.dns.clone(),
        };
        let (mut saved, account) = finished.save(&options).await;
        if let Some(account) = account {
            for format in &password.export {
                let dir = pacc::accounts::data_dir()
                    .join("exports")
                    .join(address.as_str());
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format.name());
                let opts = crate::accounts_cmd::export_options(address.as_str(), None, None);
                if crate::accounts_cmd::export_to(&account, *format, &opts, Some(&path), true)
                    == exit::OK
                {
                    saved.exports.push(path.display().to_string());
                }
            }
        }
        Some(saved)
    } else {
        None
    };
    if let Some(s) = &saved {
        for w in &s.warnings {
            eprint(&format!("{}\n", escape_for_terminal(w)));
        }
    }
    if json {
        SetupOutput::finished(&finished, saved.as_ref(), password.show_secrets).print();
    } else {
        print_human(
            address,
            finished.prepared().config(),
            finished.choices(),
            finished.validations(),
            finished.fallbacks(),
        );
    }
    if finished.is_ok() {
        exit::OK
    } else {
        exit::SIGN_IN_FAILED
    }
}

/// Why no password was obtained.
enum PasswordError {
    /// The user pressed Ctrl-C at the prompt.
    Cancelled,
    Other(String),
}

impl From<String> for PasswordError {
    fn from(s: String) -> Self {
        PasswordError::Other(s)
    }
}

fn read_password(source: &PasswordSource) -> Result<Secret, PasswordError> {
    if source.stdin {
        let mut line = String::new();
        std::io::Read::take(std::io::stdin().lock(), 64 * 1024)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        return if pw.is_empty() {
            Err(String::from("empty password on stdin").into())
        } else {
            Ok(Secret::new(pw))
        };
    }
    if let Some(var) = &source.env {
        return std::env::var(var)
            .map(Secret::new)
            .map_err(|_| format!("environment variable {var} is not set").into());
    }
    if !std::io::stdin().is_terminal() {
        return Err(String::from(
            "no password: use --password-stdin or --password-env VAR when not on a terminal",
        )
        .into());
    }
    match crate::tty::prompt_hidden("Password: ") {
        Ok(p) if p.is_empty() => Err(String::from("empty password").into()),
        Ok(p) => Ok(Secret::new(p)),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(PasswordError::Cancelled),
        Err(e) => Err(format!("cannot read the password: {e}").into()),
    }
}

fn write_tokens(
    path: &std::path::Path,
    tokens: &pacc_proto::auth::oauth::Tokens,
) -> std::io::Result<()> {
    let v = serde_json::json!({
        "access_token": tokens.access_token.expose(),
        "token_type": tokens.token_type,
        "expires_in": tokens.expires_in,
        "refresh_token": tokens.refresh_token.as_ref().map(|r| r.expose()),
        "scope": tokens.scope,
    });
    // 0600 also when the file existed (it is replaced, atomically).
    pacc::accounts::write_private(
        path,
        serde_json::to_string_pretty(&v)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// Whether a browser can be opened here: a display, and `xdg-open` to open it with.
fn browser_available() -> bool {
    let display = std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    display
        && std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("xdg-open").is_file()))
}

#[allow(clippy::print_stdout)]
pub(crate) fn print_human(
    address: &EmailAddress,
    config: &Config,
    choices: &[Choice],
    validations: &[Validation],
    fallbacks: &[Fallback],
) {
    // The username is the full address everywhere (W-1): said once, so each service's line
    // fits 80 columns.
    println!(
        "Account for {address} ({}), username {address}:",
        escape_for_terminal(config.provider_name().unwrap_or(address.domain().as_str()))
    );
    for v in validations {
        let (mech, what) = match &v.method {
            Method::Password { mechanism } => (mechanism.as_str(), "password"),
            Method::Oauth { mechanism } => (mechanism.as_str(), "OAuth"),
        };
        let endpoint = config.protocols.get(v.service).map(|s| match &s.endpoint {
            // Short forms here: STARTTLS is always required (the probe said so already).
            Endpoint::Host { host, port, tls } => format!(
                "{host}:{port} {}",
                match tls {
                    pacc_proto::document::TlsMode::Implicit => "TLS",
                    pacc_proto::document::TlsMode::StartTls => "STARTTLS",
                }
            ),
            Endpoint::Url { url } => url.to_string(),
        });
        let fell_back = if fallbacks.iter().any(|f| f.service == v.service) {
            " (OAuth did not work)"
        } else {
            ""
        };
        match &v.outcome {
            ValidationOutcome::Ok => println!(
                "  ok     {:<12} {}  {what} ({mech}){fell_back}",
                v.service.label(),
                escape_for_terminal(&endpoint.unwrap_or_default())
            ),
            ValidationOutcome::Failed { class, message } => {
                let advice = match class {
                    FailureClass::Credentials => "check the password; it was not retried",
                    FailureClass::Mechanism => "the server refused the sign-in method",
                    FailureClass::Account => {
                        "the account needs attention on the provider's website"
                    }
                    FailureClass::Authorization => "the account may not use this service",
                    FailureClass::Temporary => "try again later",
                    FailureClass::Transport => "check the network",
                };
                println!(
                    "  FAILED {:<12} {}  {} [{}] — {advice}",
                    v.service.label(),
                    escape_for_terminal(&v.target),
                    escape_for_terminal(message),
                    class.name()
                );
            }
            ValidationOutcome::NotSent { reason } => println!(
                "  -      {:<12} {}  not sent: {}",
                v.service.label(),
                escape_for_terminal(&v.target),
                escape_for_terminal(reason)
            ),
        }
    }
    for c in choices {
        if let Decision::Skip { skipped } = &c.decision {
            println!(
                "  -      {:<12} {}  not set up: {}",
                c.service.label(),
                escape_for_terminal(&c.target),
                escape_for_terminal(skipped)
            );
        }
    }
}
