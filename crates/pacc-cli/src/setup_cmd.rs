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

use crate::output::{DiscoverOutput, JSON_VERSION};
use crate::{exit, progress, report_error};

/// Where the password comes from.
pub struct PasswordSource {
    /// Read one line from standard input.
    pub stdin: bool,
    /// Read it from this environment variable.
    pub env: Option<String>,
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
    error: Option<String>,
}

fn eprint(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "{s}");
    let _ = e.flush();
}

fn read_password(source: &PasswordSource) -> Result<Secret, String> {
    if source.stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        return if pw.is_empty() {
            Err("empty password on stdin".into())
        } else {
            Ok(Secret::new(pw))
        };
    }
    if let Some(var) = &source.env {
        return std::env::var(var)
            .map(Secret::new)
            .map_err(|_| format!("environment variable {var} is not set"));
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            "no password: use --password-stdin or --password-env VAR when not on a terminal".into(),
        );
    }
    rpassword::prompt_password("Password: ")
        .map(Secret::new)
        .map_err(|e| format!("cannot read the password: {e}"))
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
    let progress = progress::Progress::new(!json);
    let report = client
        .discover_domain(address.domain(), &|p| progress.update(p))
        .await;
    progress.finish();
    let discovery = DiscoverOutput::new(address, &report);
    let Ok(verified) = &report.outcome else {
        discovery.print(json);
        return discovery.exit_code();
    };
    let config = &verified.document.config;
    if !json {
        eprint(&format!("Probing {} service(s)…\n", config.protocols.len()));
    }
    let probes = client.probe(config, &|_| {}).await;
    // OAuth sign-in is not built yet: A-1 falls back to passwords where allowed.
    let choices = choose(config, &probes, false, false);
    let used: Vec<&Choice> = choices
        .iter()
        .filter(|c| matches!(c.decision, Decision::Use(_)))
        .collect();
    let print = |ok: bool,
                 confirmation: Option<&ConfirmationRequest>,
                 validations: &[Validation],
                 error: Option<String>| {
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
            error,
        };
        println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
    };
    if used.is_empty() {
        let msg = "no service can be signed in to (see the choices)".to_owned();
        if json {
            print(false, None, &[], Some(msg));
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
    let request = ConfirmationRequest::new(used.iter().map(|c| c.host.clone()), source, mx_domains);
    let confirmed = match accept_domains {
        Some(list) => request.accept_domains(list),
        None if std::io::stdin().is_terminal() && !json => {
            eprint(&request.display());
            eprint("Send your password to these servers? [y/N] ");
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            request.confirm(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
        }
        None => {
            let _ = report_error(
                "not confirmed: run on a terminal, or pass --accept-domains with exactly the domains to trust",
            );
            let shown: Vec<String> = request.domains().iter().map(|d| d.to_string()).collect();
            eprint(&format!("(the domains are: {})\n", shown.join(",")));
            if json {
                print(false, Some(&request), &[], Some("not confirmed".into()));
            }
            return exit::NOT_CONFIRMED;
        }
    };
    let confirmed = match confirmed {
        Ok(c) => c,
        Err(e) => {
            if json {
                print(false, Some(&request), &[], Some(e.to_string()));
            } else {
                eprint(&request.display());
                let _ = report_error(&e.to_string());
            }
            return exit::NOT_CONFIRMED;
        }
    };
    let password = match read_password(password) {
        Ok(p) => p,
        Err(e) => return report_error(&e),
    };
    let credentials = Credentials {
        password: Some(password),
        token: None,
    };
    if !json {
        eprint(&format!(
            "Signing in to {} service(s) as {address}…\n",
            used.len()
        ));
    }
    let validations = client
        .sign_in(config, &choices, address.as_str(), &credentials, &confirmed)
        .await;
    let ok = validations.iter().all(Validation::is_ok);
    if json {
        print(ok, Some(&request), &validations, None);
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
