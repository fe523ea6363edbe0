//! `pacc setup`: discover → probe → choose → confirm → sign in → the account description.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use pacc::Client;
use pacc::signin::{Credentials, Validation, ValidationOutcome};
use pacc_proto::auth::Secret;
use pacc_proto::auth::gate::ConfirmationRequest;
use pacc_proto::auth::select::{Choice, Decision, Method, choose};
use pacc_proto::discovery::Method as Source;
use pacc_proto::document::Endpoint;
use pacc_proto::name::EmailAddress;
use serde::Serialize;

use std::cell::RefCell;
use std::time::Instant;

use crate::output::{DiscoverOutput, JSON_VERSION, Phases, ms_since};
use crate::{exit, report_error};

/// Where the password comes from, and how the OAuth browser step runs.
pub struct PasswordSource {
    /// Read one line from standard input.
    pub stdin: bool,
    /// Read it from this environment variable.
    pub env: Option<String>,
    /// Print the authorization URL instead of opening a browser.
    pub no_browser: bool,
    /// How long to wait for the browser sign-in.
    pub browser_wait: std::time::Duration,
    /// Print tokens in the output.
    pub show_secrets: bool,
    /// Write the tokens to this file (mode 0600).
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct OAuthOut<'a> {
    issuer: &'a str,
    client_id: String,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

#[derive(Serialize)]
struct Account<'a> {
    service: pacc_proto::document::ServiceKind,
    #[serde(flatten)]
    endpoint: &'a Endpoint,
    username: &'a str,
    #[serde(flatten)]
    method: &'a Method,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    oauth: Option<&'a OAuthOut<'a>>,
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
    use std::os::unix::fs::OpenOptionsExt as _;
    let v = serde_json::json!({
        "access_token": tokens.access_token.expose(),
        "token_type": tokens.token_type,
        "expires_in": tokens.expires_in,
        "refresh_token": tokens.refresh_token.as_ref().map(|r| r.expose()),
        "scope": tokens.scope,
    });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(
        serde_json::to_string_pretty(&v)
            .unwrap_or_default()
            .as_bytes(),
    )
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
    let oauth_started = Instant::now();
    // OAuth only with usable metadata, checked before anything is confirmed or opened.
    let issuer = config
        .authentication
        .as_ref()
        .and_then(|a| a.oauth_public.as_ref())
        .map(|o| o.issuer.clone());
    let metadata = match &issuer {
        Some(iss) => match client.oauth_metadata(iss, deadline).await {
            Ok(m) => Some(m.metadata),
            Err(e) => {
                eprint(&format!("OAuth is not used: {e}\n"));
                None
            }
        },
        None => None,
    };
    let mut oauth_ms = issuer.as_ref().map(|_| ms_since(oauth_started));
    let choices = choose(config, &probes, metadata.is_some(), false);
    let uses_oauth = choices
        .iter()
        .any(|c| matches!(c.decision, Decision::Use(Method::Oauth { .. })));
    let uses_password = choices
        .iter()
        .any(|c| matches!(c.decision, Decision::Use(Method::Password { .. })));
    let used: Vec<&Choice> = choices
        .iter()
        .filter(|c| matches!(c.decision, Decision::Use(_)))
        .collect();
    let print = |ok: bool,
                 confirmation: Option<&ConfirmationRequest>,
                 validations: &[Validation],
                 error: Option<String>,
                 oauth: Option<&OAuthOut<'_>>| {
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
            choices: &choices,
            validations,
            accounts,
            oauth,
            phases: &Phases {
                total_ms: ms_since(started),
                ..phases.borrow().clone()
            },
            error,
        };
        println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
    };
    if used.is_empty() {
        let msg = "no service can be signed in to (see the choices)".to_owned();
        if json {
            print(false, None, &[], Some(msg), None);
        } else {
            for c in &choices {
                if let Decision::Skip { skipped } = &c.decision {
                    println!(
                        "{:<12} {:<40} skipped: {skipped}",
                        c.service.label(),
                        c.target
                    );
                }
            }
            let _ = report_error(&msg);
        }
        return exit::SERVICE_UNUSABLE;
    }
    // SEC-1 / MX-9: show every host that would receive the credential, then confirm.
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
        used.iter().map(|c| c.host.clone()).chain(oauth_hosts),
        source,
        mx_domains,
    );
    let confirmed = match accept_domains {
        Some(list) => request.accept_domains(list),
        None if std::io::stdin().is_terminal() && !json => {
            eprint(&request.display());
            eprint("Sign in to these servers? [y/N] ");
            let asked = Instant::now();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            deadline += asked.elapsed();
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
                    &[],
                    Some("not confirmed".into()),
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
                print(false, Some(&request), &[], Some(e.to_string()), None);
            } else {
                eprint(&request.display());
                let _ = report_error(&e.to_string());
            }
            return exit::NOT_CONFIRMED;
        }
    };
    let mut credentials = Credentials::default();
    let mut oauth_out = None;
    if uses_oauth {
        let (Some(meta), Some(iss)) = (&metadata, &issuer) else {
            return report_error("internal: OAuth chosen without metadata");
        };
        let scope = pacc_proto::auth::select::scopes(&choices, &meta.scopes_supported).join(" ");
        // O-7: `resource` is the JMAP session URL when JMAP uses the token.
        let resource = choices
            .iter()
            .find(|c| {
                c.service == pacc_proto::document::ServiceKind::Jmap
                    && matches!(c.decision, Decision::Use(Method::Oauth { .. }))
            })
            .map(|c| c.target.clone());
        let no_browser = password.no_browser;
        let open = move |url: &str| {
            if no_browser {
                eprint(&format!("Open this URL in a browser to sign in:\n{url}\n"));
            } else {
                eprint(&format!(
                    "Opening the browser to sign in (or open this URL):\n{url}\n"
                ));
                let _ = std::process::Command::new("xdg-open")
                    .arg(url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            }
        };
        let store = pacc::oauth::ClientStore::default_location();
        let t = Instant::now();
        let result = client
            .oauth_authorize(
                meta,
                &confirmed,
                &scope,
                resource.as_deref(),
                &store,
                &open,
                password.browser_wait,
                deadline,
            )
            .await;
        // The browser wait is outside the deadline; the exchanges around it are OAuth time.
        let waited = match &result {
            Ok(a) => a.browser_wait,
            Err(pacc::oauth::OAuthError::Timeout(w)) => *w,
            Err(_) => std::time::Duration::ZERO,
        };
        deadline += waited;
        phases.borrow_mut().browser_ms =
            Some(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
        *oauth_ms.get_or_insert(0) +=
            ms_since(t).saturating_sub(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
        phases.borrow_mut().oauth_ms = oauth_ms;
        match result {
            Ok(pacc::oauth::Authorized {
                tokens, client_id, ..
            }) => {
                if let Some((path, Err(e))) = password
                    .token_file
                    .as_ref()
                    .map(|p| (p, write_tokens(p, &tokens)))
                {
                    return report_error(&format!("cannot write {}: {e}", path.display()));
                }
                oauth_out = Some((
                    iss.clone(),
                    client_id,
                    scope,
                    tokens.access_token.clone(),
                    tokens.refresh_token.clone(),
                ));
                credentials.token = Some(tokens.access_token);
            }
            Err(e) => {
                let _ = report_error(&format!("OAuth sign-in failed: {e}"));
                if !uses_password {
                    return exit::SIGN_IN_FAILED;
                }
            }
        }
    }
    phases.borrow_mut().oauth_ms = oauth_ms;
    if uses_password {
        let asked = Instant::now();
        let read = read_password(password);
        if !password.stdin && password.env.is_none() {
            deadline += asked.elapsed();
        }
        match read {
            Ok(p) => credentials.password = Some(p),
            Err(PasswordError::Cancelled) => {
                eprint("Cancelled; nothing was sent.");
                return exit::NOT_CONFIRMED;
            }
            Err(PasswordError::Other(e)) => return report_error(&e),
        }
    }
    let oauth_json = oauth_out.as_ref().map(|(iss, id, scope, at, rt)| OAuthOut {
        issuer: iss,
        client_id: id.clone(),
        scope: scope.clone(),
        access_token: password.show_secrets.then(|| at.expose()),
        refresh_token: if password.show_secrets {
            rt.as_ref().map(|r| r.expose())
        } else {
            None
        },
    });
    if !json {
        eprint(&format!(
            "Signing in to {} service(s) as {address}…\n",
            used.len()
        ));
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
    // O-12 / V-4: a rejected token is refreshed once and those services retried once.
    let token_rejected: Vec<Choice> = validations
        .iter()
        .filter(|v| matches!(v.method, Method::Oauth { .. }))
        .filter(|v| {
            matches!(
                &v.outcome,
                ValidationOutcome::Failed {
                    class: pacc_proto::auth::login::FailureClass::Credentials,
                    ..
                }
            )
        })
        .filter_map(|v| choices.iter().find(|c| c.service == v.service).cloned())
        .collect();
    if !token_rejected.is_empty()
        && let Some((_, client_id, _, _, Some(refresh))) = &oauth_out
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
    let ok = validations.iter().all(Validation::is_ok);
    if json {
        print(ok, Some(&request), &validations, None, oauth_json.as_ref());
    } else {
        println!(
            "Account for {address} ({})",
            config.provider_name().unwrap_or(address.domain().as_str())
        );
        for v in &validations {
            let (mech, what) = match &v.method {
                Method::Password { mechanism } => (mechanism.as_str(), "password"),
                Method::Oauth { mechanism } => (mechanism.as_str(), "OAuth"),
            };
            let endpoint = config.protocols.get(v.service).map(|s| match &s.endpoint {
                Endpoint::Host { host, port, tls } => format!("{host}:{port} {tls}"),
                Endpoint::Url { url } => url.to_string(),
            });
            match &v.outcome {
                ValidationOutcome::Ok => println!(
                    "  ok     {:<12} {}  {what} via {mech}, username {address}",
                    v.service.label(),
                    endpoint.unwrap_or_default()
                ),
                ValidationOutcome::Failed { class, message } => {
                    let advice = match class {
                        pacc_proto::auth::login::FailureClass::Credentials => {
                            "check the password; it was not retried"
                        }
                        pacc_proto::auth::login::FailureClass::Mechanism => {
                            "the server refused the sign-in method"
                        }
                        pacc_proto::auth::login::FailureClass::Account => {
                            "the account needs attention on the provider's website"
                        }
                        pacc_proto::auth::login::FailureClass::Authorization => {
                            "the account may not use this service"
                        }
                        pacc_proto::auth::login::FailureClass::Temporary => "try again later",
                        pacc_proto::auth::login::FailureClass::Transport => "check the network",
                    };
                    println!(
                        "  FAILED {:<12} {}  {} [{}] — {advice}",
                        v.service.label(),
                        v.target,
                        message,
                        serde_json::to_value(class)
                            .ok()
                            .and_then(|c| c.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    );
                }
                ValidationOutcome::NotSent { reason } => println!(
                    "  -      {:<12} {}  not sent: {reason}",
                    v.service.label(),
                    v.target
                ),
            }
        }
        for c in &choices {
            if let Decision::Skip { skipped } = &c.decision {
                println!(
                    "  -      {:<12} {}  skipped: {skipped}",
                    c.service.label(),
                    c.target
                );
            }
        }
    }
    if ok { exit::OK } else { exit::SIGN_IN_FAILED }
}
