//! `pacc setup`: discover → probe → choose → confirm → sign in → the account description.
//!
//! The method per service follows `--auth` (A-1 … A-3, O-14, O-15): in `auto`, a failed,
//! refused or impossible OAuth leg falls back to the password for the services that also
//! take one, and the output says why. Nothing is sent before the confirmation (SEC-1).

use std::cell::RefCell;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use pacc::Client;
use pacc::oauth::OAuthError;
use pacc::signin::{Credentials, Validation, ValidationOutcome};
use pacc_proto::auth::Secret;
use pacc_proto::auth::gate::{ConfirmationRequest, GateError};
use pacc_proto::auth::login::FailureClass;
use pacc_proto::auth::oauth::{Metadata, resource_indicator, same_issuer};
use pacc_proto::auth::select::{AuthPolicy, Choice, Decision, Method, OAuth, choose};
use pacc_proto::discovery::Method as Source;
use pacc_proto::document::{Config, Endpoint, ServiceKind};
use pacc_proto::name::{EmailAddress, escape_for_terminal};
use pacc_proto::probe::{Offered, ProbeStatus, ServiceProbe};
use serde::Serialize;

use crate::output::{DiscoverOutput, JSON_VERSION, Phases, ms_since};
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

/// What happened with OAuth, for the JSON `oauth` object (stable `status` and `kind`).
#[derive(Serialize, Default)]
struct OAuthOut {
    issuer: String,
    /// `ok`, `failed` or `not-used`.
    status: &'static str,
    /// Why not `ok`: `metadata-unavailable`, `issuer-mismatch`, `registration-refused`,
    /// `access-denied`, `state-mismatch`, `iss-missing`, `iss-mismatch`, `browser-timeout`,
    /// `no-browser`, `token-refused`, `token-type`, `invalid-target`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// The authorization server's own `error_description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

impl OAuthOut {
    fn failed(
        issuer: &str,
        kind: &'static str,
        message: String,
        description: Option<String>,
    ) -> Self {
        OAuthOut {
            issuer: issuer.to_owned(),
            status: "failed",
            kind: Some(kind),
            message: Some(message),
            description,
            ..Default::default()
        }
    }

    fn from_error(issuer: &str, e: &OAuthError) -> Self {
        OAuthOut::failed(
            issuer,
            e.kind(),
            e.to_string(),
            e.description().map(str::to_owned),
        )
    }
}

#[derive(Serialize)]
struct Account<'a> {
    service: ServiceKind,
    #[serde(flatten)]
    endpoint: &'a Endpoint,
    username: &'a str,
    #[serde(flatten)]
    method: &'a Method,
}

/// A service that is not set up, and why (unreachable, no usable method, refused…).
#[derive(Serialize, Clone)]
struct NotSetUp {
    service: ServiceKind,
    target: String,
    reason: String,
}

/// Where the account was saved and which secrets were stored.
#[derive(Serialize, Default)]
struct Saved {
    path: String,
    /// `keyring` or `none`.
    secrets: &'static str,
    password_stored: bool,
    refresh_token_stored: bool,
    /// What was not stored, and how to supply it later.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    /// Client configurations written (`--export`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exports: Vec<String>,
}

/// A service that uses the password because the OAuth leg did not work.
#[derive(Serialize, Clone)]
struct Fallback {
    service: ServiceKind,
    reason: String,
}

#[derive(Serialize)]
struct SetupOutput<'a> {
    version: u32,
    ok: bool,
    address: &'a str,
    discovery: &'a DiscoverOutput<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmation: Option<&'a ConfirmationRequest>,
    choices: &'a [Choice],
    validations: &'a [Validation],
    accounts: Vec<Account<'a>>,
    not_set_up: Vec<NotSetUp>,
    #[serde(skip_serializing_if = "<[Fallback]>::is_empty")]
    fallbacks: &'a [Fallback],
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth: Option<&'a OAuthOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved: Option<&'a Saved>,
    phases: &'a Phases,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn eprint(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "{s}");
    let _ = e.flush();
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

/// O-14: HTTP services whose `WWW-Authenticate` points to RFC 9728 metadata naming other
/// authorization servers than the provider's issuer get no token.
async fn issuer_conflicts(
    client: &Client,
    probes: &[ServiceProbe],
    issuer: &str,
    deadline: std::time::Instant,
) -> Vec<(ServiceKind, String)> {
    let mut out = Vec::new();
    for p in probes {
        let ProbeStatus::Reachable {
            offered: Offered::Http(h),
            ..
        } = &p.status
        else {
            continue;
        };
        let Some(url) = h
            .challenges
            .iter()
            .filter(|c| c.is("Bearer") || c.is("DPoP"))
            .find_map(|c| c.param("resource_metadata"))
        else {
            continue;
        };
        if let Ok(servers) = client.resource_authorization_servers(url, deadline).await
            && !servers.is_empty()
            && !servers.iter().any(|s| same_issuer(s, issuer))
        {
            out.push((
                p.service,
                format!(
                    "the server accepts tokens from {} (RFC 9728), not from the provider's issuer {issuer}",
                    servers.join(", ")
                ),
            ));
        }
    }
    out
}

/// Run the setup; returns the exit code.
#[allow(clippy::print_stdout)]
pub async fn run(
    client: &Client,
    address: &EmailAddress,
    accept_domains: Option<&[String]>,
    password: &PasswordSource,
    json: bool,
) -> u8 {
    // One deadline for the whole command (--timeout): each phase gets what is left. Time
    // spent waiting for the user (the confirmation, the password prompt, the browser) is
    // added to it, and nothing else.
    let started = Instant::now();
    let mut deadline = client.deadline();
    let phases = RefCell::new(Phases::default());
    let report = crate::discover_with_progress(client, address, deadline, !json).await;
    phases.borrow_mut().discovery_ms = ms_since(started);
    let discovery = DiscoverOutput::new(address, &report);
    let Ok(verified) = &report.outcome else {
        discovery.print(json);
        return discovery.exit_code();
    };
    let config = &verified.document.config;
    if !json {
        eprint(&format!("Probing {} service(s)…\n", config.protocols.len()));
    }
    let t = Instant::now();
    let probes = client.probe(config, deadline, &|_| {}).await;
    phases.borrow_mut().probe_ms = Some(ms_since(t));

    // OAuth only with usable metadata, checked before anything is confirmed or opened.
    let oauth_started = Instant::now();
    let issuer = config
        .authentication
        .as_ref()
        .and_then(|a| a.oauth_public.as_ref())
        .map(|o| o.issuer.clone());
    let mut oauth_out: Option<OAuthOut> = None;
    let mut metadata: Option<Metadata> = None;
    let mut conflicts = Vec::new();
    if let Some(iss) = &issuer {
        if password.policy == AuthPolicy::Password {
            oauth_out = Some(OAuthOut {
                issuer: iss.clone(),
                status: "not-used",
                message: Some("--auth password".into()),
                ..Default::default()
            });
        } else {
            match client.oauth_metadata(iss, deadline).await {
                Ok(m) => {
                    conflicts = issuer_conflicts(client, &probes, iss, deadline).await;
                    metadata = Some(m.metadata);
                }
                Err(e) => {
                    // Diagnostics go to stderr also with --json (stdout is the JSON).
                    eprint(&format!(
                        "OAuth cannot be used: {}\n",
                        escape_for_terminal(&e.to_string())
                    ));
                    oauth_out = Some(OAuthOut::from_error(iss, &e));
                }
            }
        }
    }
    let mut oauth_ms = issuer.as_ref().map(|_| ms_since(oauth_started));
    let unusable_reason = oauth_out
        .as_ref()
        .and_then(|o| o.message.clone())
        .unwrap_or_default();
    let readiness = match (&issuer, &metadata) {
        (None, _) => OAuth::NoIssuer,
        (Some(_), Some(m)) => OAuth::Ready {
            metadata: m,
            refused: &conflicts,
        },
        (Some(_), None) => OAuth::Unusable(&unusable_reason),
    };
    let mut choices = choose(config, &probes, readiness, password.policy);
    let provider = config.provider_name();
    let used_count = choices.iter().filter(|c| c.method().is_some()).count();
    let mut fallbacks: Vec<Fallback> = Vec::new();
    let print = |ok: bool,
                 confirmation: Option<&ConfirmationRequest>,
                 choices: &[Choice],
                 validations: &[Validation],
                 fallbacks: &[Fallback],
                 error: Option<String>,
                 oauth: Option<&OAuthOut>,
                 saved: Option<&Saved>| {
        let accounts = validations
            .iter()
            .filter(|v| v.is_ok())
            .filter_map(|v| {
                config.protocols.get(v.service).map(|s| Account {
                    service: v.service,
                    endpoint: &s.endpoint,
                    username: address.as_str(),
                    method: &v.method,
                })
            })
            .collect();
        let o = SetupOutput {
            version: JSON_VERSION,
            ok,
            address: address.as_str(),
            discovery: &discovery,
            confirmation,
            choices,
            validations,
            accounts,
            not_set_up: not_set_up(choices, validations, error.is_some()),
            fallbacks,
            oauth,
            saved,
            phases: &Phases {
                total_ms: ms_since(started),
                ..phases.borrow().clone()
            },
            error,
        };
        println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
    };
    if used_count == 0 {
        let msg = "no service can be signed in to (see why for each)".to_owned();
        if json {
            print(
                false,
                None,
                &choices,
                &[],
                &[],
                Some(msg),
                oauth_out.as_ref(),
                None,
            );
        } else {
            for c in &choices {
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
    }

    // SEC-1 / MX-9: show every host that would receive a credential, then confirm.
    let source = match (&verified.method, &verified.mx) {
        (Source::MxFallback, Some(mx)) => format!(
            "the MX fallback ({}), MTA-STS policy {}",
            verified.url, mx.policy_id
        ),
        _ => verified.url.clone(),
    };
    let mx_domains = verified
        .mx
        .as_ref()
        .map(|m| m.mx_domains())
        .unwrap_or_default();
    let uses_oauth = choices.iter().any(Choice::uses_oauth);
    // SEC-1: the OAuth issuer and its endpoints' hosts are shown too.
    let oauth_hosts: Vec<pacc_proto::name::Domain> = match (&metadata, uses_oauth) {
        (Some(m), true) => [
            Some(m.issuer.as_str()),
            Some(m.authorization_endpoint.as_str()),
            Some(m.token_endpoint.as_str()),
            m.registration_endpoint.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(pacc_proto::name::url_host)
        .collect(),
        _ => Vec::new(),
    };
    let request = ConfirmationRequest::new(
        choices
            .iter()
            .filter(|c| c.method().is_some())
            .map(|c| c.host.clone())
            .chain(oauth_hosts),
        source,
        mx_domains,
    )
    .with_plan(provider, &choices);
    let confirmed = match accept_domains {
        Some(list) => request.accept_domains(list),
        None if std::io::stdin().is_terminal() && !json => {
            eprint(&request.display());
            eprint("Sign in to these servers? [y/N] ");
            let asked = Instant::now();
            let mut answer = String::new();
            let read = std::io::stdin().lock().read_line(&mut answer);
            deadline += asked.elapsed();
            if matches!(read, Ok(0)) {
                // End of input (Ctrl-D): end the prompt's line.
                eprint("\n");
            }
            request.confirm(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
        }
        None => {
            let _ = report_error(
                "not confirmed: run on a terminal, or pass --accept-domains with exactly the domains to trust",
            );
            let shown: Vec<String> = request.domains().iter().map(|d| d.to_string()).collect();
            eprint(&format!("(the domains are: {})\n", shown.join(",")));
            if json {
                print(
                    false,
                    Some(&request),
                    &choices,
                    &[],
                    &[],
                    Some("not confirmed".into()),
                    oauth_out.as_ref(),
                    None,
                );
            }
            return exit::NOT_CONFIRMED;
        }
    };
    let confirmed = match confirmed {
        Ok(c) => c,
        Err(e) => {
            if json {
                print(
                    false,
                    Some(&request),
                    &choices,
                    &[],
                    &[],
                    Some(e.to_string()),
                    oauth_out.as_ref(),
                    None,
                );
            } else if e == GateError::Declined {
                // Declining is an ordinary outcome: one line, no error prefix.
                eprint("Not confirmed; nothing was sent.\n");
            } else {
                eprint(&request.display());
                let _ = report_error(&e.to_string());
            }
            return exit::NOT_CONFIRMED;
        }
    };

    // The OAuth leg.
    let mut credentials = Credentials::default();
    let mut refresh: Option<(String, Secret)> = None;
    let mut access_expires_in: Option<u64> = None;
    if uses_oauth {
        let (Some(meta), Some(iss)) = (&metadata, &issuer) else {
            return report_error("internal: OAuth chosen without metadata");
        };
        let scope = pacc_proto::auth::select::scopes(&choices, &meta.scopes_supported).join(" ");
        // O-7: one resource indicator per service the token is for.
        let resources: Vec<String> = choices
            .iter()
            .filter(|c| c.uses_oauth())
            .filter_map(|c| config.protocols.get(c.service))
            .map(|s| resource_indicator(s.kind, &s.endpoint))
            .collect();
        let can_open = !password.no_browser && browser_available();
        let fallback_ready = password.policy == AuthPolicy::Auto
            && password.non_interactive()
            && choices
                .iter()
                .any(|c| c.uses_oauth() && c.fallback.is_some());
        // Never wait silently: where no browser can be opened and a password was given, the
        // URL is printed and the password used at once instead of waiting for a sign-in.
        let dont_wait = !can_open && !password.no_browser && fallback_ready;
        // RFC 8628 on request, or by itself where no browser can be opened here, no display
        // exists, and the server offers it (and there is no password to fall back on).
        let device = meta.device_authorization_endpoint.is_some()
            && (password.device || (!can_open && !password.no_browser && !dont_wait));
        let result = if device {
            let store = pacc::oauth::ClientStore::default_location();
            let show = |d: &pacc_proto::auth::oauth::DeviceAuthorization| {
                eprint(&format!(
                    "To sign in, open {} on any device and enter the code {}\n",
                    escape_for_terminal(&d.verification_uri),
                    escape_for_terminal(&d.user_code)
                ));
                if let Some(c) = &d.verification_uri_complete {
                    eprint(&format!("(or open {})\n", escape_for_terminal(c)));
                }
            };
            let t = Instant::now();
            let result = client
                .oauth_device_authorize(
                    meta,
                    &confirmed,
                    &scope,
                    &resources,
                    &store,
                    &show,
                    password.browser_wait,
                    deadline,
                )
                .await;
            deadline += waited_for_user(&result, t, &phases, &mut oauth_ms);
            result.map_err(|e| OAuthOut::from_error(iss, &e))
        } else {
            let no_browser = password.no_browser;
            let open = move |url: &str| {
                if can_open {
                    eprint(&format!(
                        "Opening the browser to sign in (or open this URL):\n{url}\n"
                    ));
                    let _ = std::process::Command::new("xdg-open")
                        .arg(url)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn();
                } else if no_browser {
                    eprint(&format!("Open this URL in a browser to sign in:\n{url}\n"));
                } else if dont_wait {
                    eprint(&format!(
                        "No browser can be opened here (no display); not waiting for a sign-in at:\n{url}\n"
                    ));
                } else {
                    eprint(&format!(
                        "No browser can be opened here. Open this URL in a browser on any device to sign in:\n{url}\n"
                    ));
                }
            };
            let store = pacc::oauth::ClientStore::default_location();
            let t = Instant::now();
            let result = client
                .oauth_authorize(
                    meta,
                    &confirmed,
                    &scope,
                    &resources,
                    &store,
                    &open,
                    if dont_wait {
                        Duration::ZERO
                    } else {
                        password.browser_wait
                    },
                    deadline,
                )
                .await;
            deadline += waited_for_user(&result, t, &phases, &mut oauth_ms);
            result.map_err(|e| match e {
                OAuthError::Timeout(_) if dont_wait => OAuthOut::failed(
                    iss,
                    "no-browser",
                    "no browser can be opened here (no display or no xdg-open), so the password was used; use --no-browser to sign in from another device".into(),
                    None,
                ),
                e => OAuthOut::from_error(iss, &e),
            })
        };
        match result {
            Ok(authorized) => {
                let tokens = authorized.tokens;
                if let Some((path, Err(e))) = password
                    .token_file
                    .as_ref()
                    .map(|p| (p, write_tokens(p, &tokens)))
                {
                    return report_error(&format!("cannot write {}: {e}", path.display()));
                }
                oauth_out = Some(OAuthOut {
                    issuer: iss.clone(),
                    status: "ok",
                    client_id: Some(authorized.client_id.clone()),
                    scope: Some(tokens.scope.clone().unwrap_or(scope)),
                    resources: authorized.resources,
                    access_token: password
                        .show_secrets
                        .then(|| tokens.access_token.expose().to_owned()),
                    refresh_token: if password.show_secrets {
                        tokens.refresh_token.as_ref().map(|r| r.expose().to_owned())
                    } else {
                        None
                    },
                    ..Default::default()
                });
                access_expires_in = tokens.expires_in;
                if let Some(r) = tokens.refresh_token {
                    refresh = Some((authorized.client_id, r));
                }
                credentials.token = Some(tokens.access_token);
            }
            Err(out) => {
                let why = format!(
                    "OAuth sign-in failed ({}): {}",
                    out.kind.unwrap_or("failed"),
                    out.message.as_deref().unwrap_or("")
                );
                eprint(&format!("{}\n", escape_for_terminal(&why)));
                // In auto, services that also take a password use it instead.
                for c in &mut choices {
                    if c.uses_oauth()
                        && let Some(f) = c.fallback.take()
                    {
                        c.decision = Decision::Use(f);
                        fallbacks.push(Fallback {
                            service: c.service,
                            reason: why.clone(),
                        });
                    }
                }
                if !fallbacks.is_empty() {
                    let names: Vec<&str> = fallbacks.iter().map(|f| f.service.label()).collect();
                    eprint(&format!(
                        "Using the password instead for: {}\n",
                        names.join(", ")
                    ));
                }
                oauth_out = Some(out);
            }
        }
    }
    phases.borrow_mut().oauth_ms = oauth_ms;
    if choices.iter().any(Choice::uses_password) {
        let asked = Instant::now();
        let read = read_password(password);
        if !password.non_interactive() {
            deadline += asked.elapsed();
        }
        match read {
            Ok(p) => credentials.password = Some(p),
            Err(PasswordError::Cancelled) => {
                eprint("Cancelled; nothing was sent.\n");
                return exit::NOT_CONFIRMED;
            }
            Err(PasswordError::Other(e)) => return report_error(&e),
        }
    }
    if !json {
        let n = choices.iter().filter(|c| c.method().is_some()).count();
        eprint(&format!("Signing in to {n} service(s) as {address}…\n"));
    }
    let signing = Instant::now();
    let mut validations = client
        .sign_in(
            config,
            &choices,
            address.as_str(),
            &credentials,
            &confirmed,
            deadline,
        )
        .await;
    // O-14: a server whose OAUTHBEARER failure names another issuer is not sent a token
    // again; O-12 / V-4: any other rejected token is refreshed once and retried once.
    let pacc_issuer = issuer.clone().unwrap_or_default();
    for v in &mut validations {
        if let (Some(expected), ValidationOutcome::Failed { message, .. }) =
            (&v.expected_issuer, &mut v.outcome)
            && !same_issuer(expected, &pacc_issuer)
        {
            *message = format!(
                "{message} — the server expects tokens from {expected}, not from the provider's issuer {pacc_issuer}; no token is sent to it again"
            );
        }
    }
    let token_rejected: Vec<Choice> = validations
        .iter()
        .filter(|v| matches!(v.method, Method::Oauth { .. }))
        .filter(|v| {
            v.expected_issuer
                .as_deref()
                .is_none_or(|e| same_issuer(e, &pacc_issuer))
        })
        .filter(|v| {
            matches!(
                &v.outcome,
                ValidationOutcome::Failed {
                    class: FailureClass::Credentials,
                    ..
                }
            )
        })
        .filter_map(|v| choices.iter().find(|c| c.service == v.service).cloned())
        .collect();
    if !token_rejected.is_empty()
        && let Some((client_id, refresh)) = &refresh
        && let Some(meta) = &metadata
        && let Ok(fresh) = client
            .oauth_refresh(meta, &confirmed, client_id, refresh, deadline)
            .await
    {
        let retry_creds = Credentials {
            password: None,
            token: Some(fresh.access_token),
        };
        let retried = client
            .sign_in(
                config,
                &token_rejected,
                address.as_str(),
                &retry_creds,
                &confirmed,
                deadline,
            )
            .await;
        for r in retried {
            if let Some(slot) = validations.iter_mut().find(|v| v.service == r.service) {
                *slot = r;
            }
        }
    }
    phases.borrow_mut().sign_in_ms = Some(ms_since(signing));
    let skipped_any = choices.iter().any(|c| c.method().is_none());
    let ok = validations.iter().all(Validation::is_ok) && !skipped_any;
    // Complete the setup: keep the verified, signed-in account (A-5, V-1: the services
    // that work) and its secrets in the keyring.
    let saved = if password.save && validations.iter().any(Validation::is_ok) {
        let ctx = SaveContext {
            address,
            verified,
            config,
            validations: &validations,
            request: &request,
            metadata: metadata.as_ref(),
            oauth: oauth_out.as_ref(),
            access_expires_in,
        };
        Some(save_account(&ctx, password, &credentials, refresh.as_ref()).await)
    } else {
        None
    };
    if let Some(s) = &saved {
        for w in &s.warnings {
            eprint(&format!("{}\n", escape_for_terminal(w)));
        }
    }
    if json {
        print(
            ok,
            Some(&request),
            &choices,
            &validations,
            &fallbacks,
            None,
            oauth_out.as_ref(),
            saved.as_ref(),
        );
    } else {
        print_human(address, config, &choices, &validations, &fallbacks);
    }
    if ok { exit::OK } else { exit::SIGN_IN_FAILED }
}

struct SaveContext<'a> {
    address: &'a EmailAddress,
    verified: &'a pacc_proto::discovery::Verified,
    config: &'a Config,
    validations: &'a [Validation],
    request: &'a ConfirmationRequest,
    metadata: Option<&'a Metadata>,
    oauth: Option<&'a OAuthOut>,
    access_expires_in: Option<u64>,
}

/// Save the account and its secrets; what was stored, and what was not and why.
async fn save_account(
    c: &SaveContext<'_>,
    options: &PasswordSource,
    credentials: &Credentials,
    refresh: Option<&(String, Secret)>,
) -> Saved {
    use pacc::accounts::{AccountStore, SecretKind, Secrets};
    use pacc_proto::account::{
        ACCOUNT_VERSION, Account, SavedOAuth, SavedService, SecretsInfo, Source as SavedSource,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let services: Vec<SavedService> = c
        .validations
        .iter()
        .filter(|v| v.is_ok())
        .filter_map(|v| {
            c.config
                .protocols
                .get(v.service)
                .map(|s| SavedService::new(v.service, &s.endpoint, &v.method))
        })
        .collect();
    let uses_password = services.iter().any(|s| !s.uses_oauth());
    let oauth = match (c.oauth, c.metadata) {
        (Some(o), Some(m)) if o.status == "ok" && services.iter().any(SavedService::uses_oauth) => {
            Some(SavedOAuth {
                issuer: o.issuer.clone(),
                client_id: o.client_id.clone().unwrap_or_default(),
                token_endpoint: m.token_endpoint.clone(),
                scope: o.scope.clone().unwrap_or_default(),
                resources: o.resources.clone(),
                access_expires_at: c.access_expires_in.map(|s| now + s),
            })
        }
        _ => None,
    };
    let mut saved = Saved::default();
    let mut store = options.store_secrets;
    if store == Secrets::Keyring && !Secrets::keyring_available().await {
        saved.warnings.push(
            "The system keyring is not available (no Secret Service on the session bus), so no secret was stored: `pacc password` and `pacc token` will not work for this account. Run pacc setup again where a keyring runs, or give the password to your mail client yourself.".to_owned(),
        );
        store = Secrets::None;
    }
    saved.secrets = store.name();
    let address = c.address.as_str();
    if store == Secrets::Keyring {
        if uses_password && let Some(p) = &credentials.password {
            match store.set(address, SecretKind::Password, p).await {
                Ok(()) => saved.password_stored = true,
                Err(e) => saved
                    .warnings
                    .push(format!("the password was not stored: {e}")),
            }
        }
        if oauth.is_some() {
            if let Some((_, r)) = refresh {
                match store.set(address, SecretKind::RefreshToken, r).await {
                    Ok(()) => saved.refresh_token_stored = true,
                    Err(e) => saved
                        .warnings
                        .push(format!("the refresh token was not stored: {e}")),
                }
            }
            if let Some(t) = &credentials.token {
                let _ = store.set(address, SecretKind::AccessToken, t).await;
            }
        }
    } else if options.store_secrets == Secrets::None {
        saved.warnings.push("--store-secrets none: no secret was stored; `pacc password` and `pacc token` will not work for this account".to_owned());
    }
    let account = Account {
        version: ACCOUNT_VERSION,
        address: address.to_owned(),
        provider: c.config.provider_name().map(str::to_owned),
        saved_at: now,
        source: SavedSource {
            method: serde_json::to_value(c.verified.method)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            url: c.verified.url.clone(),
            record: c.verified.record.clone(),
            algorithm: c.verified.algorithm.name().to_owned(),
        },
        document: String::from_utf8_lossy(&c.verified.bytes).into_owned(),
        services,
        oauth,
        confirmed_hosts: c
            .request
            .groups
            .iter()
            .flat_map(|g| g.hosts.iter().map(|h| h.to_string()))
            .collect(),
        ca_files: options.ca_files.clone(),
        dns: options.dns.clone(),
        secrets: SecretsInfo {
            store: store.name().to_owned(),
            password: saved.password_stored,
            refresh_token: saved.refresh_token_stored,
        },
    };
    let accounts = AccountStore::default();
    match accounts.save(&account) {
        Ok(path) => saved.path = path.display().to_string(),
        Err(e) => saved
            .warnings
            .push(format!("the account was not saved: {e}")),
    }
    for format in &options.export {
        let dir = pacc::accounts::data_dir().join("exports").join(address);
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format.name());
        let opts = crate::accounts_cmd::export_options(address, None, None);
        if crate::accounts_cmd::export_to(&account, *format, &opts, Some(&path), true) == exit::OK {
            saved.exports.push(path.display().to_string());
        }
    }
    saved
}

/// The time the user took in the browser (or on the other device): outside the deadline,
/// recorded as `browser_ms`; the exchanges around it count as OAuth time.
fn waited_for_user(
    result: &Result<pacc::oauth::Authorized, OAuthError>,
    started: Instant,
    phases: &RefCell<Phases>,
    oauth_ms: &mut Option<u64>,
) -> Duration {
    let waited = match result {
        Ok(a) => a.browser_wait,
        Err(OAuthError::Timeout(w)) => *w,
        Err(_) => Duration::ZERO,
    };
    let ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
    phases.borrow_mut().browser_ms = Some(ms);
    *oauth_ms.get_or_insert(0) += ms_since(started).saturating_sub(ms);
    waited
}

/// Every service that did not end signed in, with the reason.
fn not_set_up(choices: &[Choice], validations: &[Validation], nothing_sent: bool) -> Vec<NotSetUp> {
    let mut out = Vec::new();
    for c in choices {
        let reason = match (
            &c.decision,
            validations.iter().find(|v| v.service == c.service),
        ) {
            (Decision::Skip { skipped }, _) => Some(skipped.clone()),
            (Decision::Use(_), Some(v)) => match &v.outcome {
                ValidationOutcome::Ok => None,
                ValidationOutcome::Failed { class, message } => Some(format!(
                    "sign-in failed [{}]: {message}",
                    serde_json::to_value(class)
                        .ok()
                        .and_then(|c| c.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )),
                ValidationOutcome::NotSent { reason } => Some(format!("not sent: {reason}")),
            },
            (Decision::Use(_), None) if nothing_sent => Some("nothing was sent".into()),
            (Decision::Use(_), None) => Some("not signed in".into()),
        };
        if let Some(reason) = reason {
            out.push(NotSetUp {
                service: c.service,
                target: c.target.clone(),
                reason,
            });
        }
    }
    out
}

#[allow(clippy::print_stdout)]
fn print_human(
    address: &EmailAddress,
    config: &Config,
    choices: &[Choice],
    validations: &[Validation],
    fallbacks: &[Fallback],
) {
    println!(
        "Account for {address} ({})",
        escape_for_terminal(config.provider_name().unwrap_or(address.domain().as_str()))
    );
    for v in validations {
        let (mech, what) = match &v.method {
            Method::Password { mechanism } => (mechanism.as_str(), "password"),
            Method::Oauth { mechanism } => (mechanism.as_str(), "OAuth"),
        };
        let endpoint = config.protocols.get(v.service).map(|s| match &s.endpoint {
            Endpoint::Host { host, port, tls } => format!("{host}:{port} {tls}"),
            Endpoint::Url { url } => url.to_string(),
        });
        let fell_back = if fallbacks.iter().any(|f| f.service == v.service) {
            " (OAuth did not work)"
        } else {
            ""
        };
        match &v.outcome {
            ValidationOutcome::Ok => println!(
                "  ok     {:<12} {}  {what} via {mech}{fell_back}, username {address}",
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
                    serde_json::to_value(class)
                        .ok()
                        .and_then(|c| c.as_str().map(str::to_owned))
                        .unwrap_or_default()
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
