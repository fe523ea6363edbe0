//! Signing in to every selected service after the user confirmed the hosts (spec §2.9,
//! V-1 … V-4, W-1 … W-4, SEC-1). Credentials go only to hosts the [`Confirmed`] value
//! names, only over TLS verified for that host, once (no automatic retry).

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use pacc_proto::auth::gate::Confirmed;
use pacc_proto::auth::login::{Credential, FailureClass, Login, LoginOutcome, classify_http};
use pacc_proto::auth::select::{Choice, Decision, Method};
use pacc_proto::auth::{Secret, sasl};
use pacc_proto::document::{Config, Endpoint};
use pacc_proto::probe::ProbeError;
use pacc_proto::probe::http::parse_challenges;
use serde::Serialize;
use tokio::time::Instant;

use crate::https::FetchContext;
use crate::probe::{Parked, ParkedConn, continue_dialogue, http_request, run_dialogue, send_http};

/// The result of signing in to one service.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The service.
    pub service: pacc_proto::document::ServiceKind,
    /// `host:port` or URL.
    pub target: String,
    /// The method used (flattened: `method` and `mechanism`, as in `choices`).
    #[serde(flatten)]
    pub method: Method,
    /// What happened.
    #[serde(flatten)]
    pub outcome: ValidationOutcome,
    /// How long it took.
    pub elapsed_ms: u64,
    /// For a refused token: the issuer the server said it expects (RFC 7628 §3.2.2
    /// `openid-configuration`, O-14), when it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_issuer: Option<String>,
}

/// Signed in, refused by the server (with a class), or not attempted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum ValidationOutcome {
    /// The credential works.
    Ok,
    /// The server refused it, or the connection failed.
    Failed {
        /// V-2 class.
        class: FailureClass,
        /// The server's or the connection's words.
        message: String,
    },
    /// Nothing was sent: the host was not confirmed, or no credential was given.
    NotSent {
        /// Why.
        reason: String,
    },
}

impl Validation {
    /// Signed in.
    pub fn is_ok(&self) -> bool {
        self.outcome == ValidationOutcome::Ok
    }
}

/// What the user gave.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The password, if any.
    pub password: Option<Secret>,
    /// The OAuth access token, if any.
    pub token: Option<Secret>,
}

/// Sign in to every chosen service; on a probe's connection from `parked` where one is
/// still fresh (younger than `idle_limit`, not closed by the server), else on a new one.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sign_in_all(
    ctx: &FetchContext<'_>,
    config: &Config,
    choices: &[Choice],
    username: &str,
    credentials: &Credentials,
    confirmed: &Confirmed,
    mut parked: Vec<Parked>,
    idle_limit: std::time::Duration,
    deadline: Instant,
) -> Vec<Validation> {
    let mut running: FuturesUnordered<_> = choices
        .iter()
        .filter_map(|c| match &c.decision {
            Decision::Use(m) => {
                let conn = parked
                    .iter()
                    .position(|p| p.service == c.service)
                    .map(|i| parked.swap_remove(i))
                    .and_then(|p| p.take_fresh(idle_limit));
                Some(sign_in_one(
                    ctx,
                    config,
                    c,
                    m,
                    username,
                    credentials,
                    confirmed,
                    conn,
                    deadline,
                ))
            }
            Decision::Skip { .. } => None,
        })
        .collect();
    // Connections of services not signed in to are closed now.
    drop(parked);
    let mut out = Vec::new();
    while let Some(v) = running.next().await {
        tracing::debug!(
            "sign-in {} {} with {:?}: {} ({} ms)",
            v.service,
            pacc_proto::name::escape_for_terminal(&v.target),
            v.method,
            match &v.outcome {
                ValidationOutcome::Ok => "ok".to_owned(),
                ValidationOutcome::Failed { class, message } => format!(
                    "failed [{}] {}",
                    class.name(),
                    pacc_proto::name::escape_for_terminal(message)
                ),
                ValidationOutcome::NotSent { reason } => format!("not sent: {reason}"),
            },
            v.elapsed_ms
        );
        out.push(v);
    }
    out.sort_by_key(|v| v.service);
    out
}

#[allow(clippy::too_many_arguments)]
async fn sign_in_one(
    ctx: &FetchContext<'_>,
    config: &Config,
    choice: &Choice,
    method: &Method,
    username: &str,
    credentials: &Credentials,
    confirmed: &Confirmed,
    conn: Option<ParkedConn>,
    deadline: Instant,
) -> Validation {
    let started = Instant::now();
    let done = |outcome| Validation {
        service: choice.service,
        target: choice.target.clone(),
        method: method.clone(),
        outcome,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        expected_issuer: None,
    };
    // SEC-1: the library refuses any host the user did not confirm, whatever the caller does.
    if !confirmed.allows(&choice.host) {
        return done(ValidationOutcome::NotSent {
            reason: format!("{} was not among the confirmed hosts", choice.host),
        });
    }
    let (mechanism, secret, is_token) = match method {
        Method::Password { mechanism } => (mechanism, credentials.password.as_ref(), false),
        Method::Oauth { mechanism } => (mechanism, credentials.token.as_ref(), true),
    };
    let Some(secret) = secret else {
        return done(ValidationOutcome::NotSent {
            reason: if is_token {
                "no OAuth token".into()
            } else {
                "no password given".into()
            },
        });
    };
    let Some(svc) = config.protocols.get(choice.service) else {
        return done(ValidationOutcome::NotSent {
            reason: "not in the configuration".into(),
        });
    };
    let failed = |e: ProbeError| ValidationOutcome::Failed {
        class: match &e {
            ProbeError::Timeout { .. } => FailureClass::Temporary,
            ProbeError::Protocol(_) => FailureClass::Mechanism,
            _ => FailureClass::Transport,
        },
        message: e.to_string(),
    };
    match &svc.endpoint {
        Endpoint::Host { host, port, tls } => {
            let credential = if is_token {
                Credential::Token(secret.clone())
            } else {
                Credential::Password(secret.clone())
            };
            let (login, conn) = match conn {
                Some(ParkedConn::Text { conn, caps }) => (
                    Login::resume(
                        choice.service,
                        host.as_str(),
                        *port,
                        mechanism,
                        username,
                        credential,
                        caps,
                    ),
                    Some(conn),
                ),
                _ => (
                    Login::new(
                        choice.service,
                        host.as_str(),
                        *port,
                        mechanism,
                        username,
                        credential,
                    ),
                    None,
                ),
            };
            let mut login = match login {
                Ok(l) => l,
                Err(e) => {
                    return done(ValidationOutcome::NotSent {
                        reason: e.to_string(),
                    });
                }
            };
            let result = match conn {
                Some(mut conn) => {
                    continue_dialogue(ctx, &mut login, &mut conn, host, deadline).await
                }
                None => run_dialogue(ctx, &mut login, host, *port, *tls, deadline, false)
                    .await
                    .map(|_| ()),
            };
            let expected_issuer = login
                .openid_configuration()
                .and_then(pacc_proto::auth::oauth::issuer_of_configuration_url);
            let with_hint = |mut v: Validation| {
                v.expected_issuer = expected_issuer.clone();
                v
            };
            match result {
                Ok(_) => match login.result() {
                    Ok(LoginOutcome::Ok) => done(ValidationOutcome::Ok),
                    Ok(LoginOutcome::Failed { class, server_text }) => {
                        with_hint(done(ValidationOutcome::Failed {
                            class,
                            message: server_text,
                        }))
                    }
                    Err(e) => done(failed(ProbeError::Protocol(e))),
                },
                Err(e) => done(failed(e)),
            }
        }
        Endpoint::Url { url } => {
            let authorization = match if is_token {
                sasl::http_bearer(secret)
            } else {
                sasl::http_basic(username, secret)
            } {
                Ok(a) => a,
                Err(e) => {
                    return done(ValidationOutcome::NotSent {
                        reason: e.to_string(),
                    });
                }
            };
            let answer = match conn {
                Some(ParkedConn::Http(mut conn)) => send_http(
                    ctx,
                    &mut conn,
                    choice.service,
                    url,
                    Some(&authorization),
                    deadline,
                    false,
                )
                .await
                .map(|(status, headers, _)| (status, headers)),
                _ => http_request(
                    ctx,
                    choice.service,
                    url,
                    Some(&authorization),
                    deadline,
                    false,
                )
                .await
                .map(|(status, headers, _, _)| (status, headers)),
            };
            match answer {
                Ok((status, headers)) => {
                    let www: Vec<String> = headers
                        .get_all(hyper::header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok().map(str::to_owned))
                        .collect();
                    let bearer_error = parse_challenges(&www)
                        .ok()
                        .and_then(|(c, _)| c.into_iter().find(|c| c.is("Bearer")))
                        .and_then(|c| c.param("error").map(str::to_owned));
                    match classify_http(status, bearer_error.as_deref()) {
                        None => done(ValidationOutcome::Ok),
                        Some(class) => done(ValidationOutcome::Failed {
                            class,
                            message: format!(
                                "HTTP {status}{}",
                                bearer_error.map(|e| format!(" ({e})")).unwrap_or_default()
                            ),
                        }),
                    }
                }
                Err(e) => done(failed(e)),
            }
        }
    }
}
