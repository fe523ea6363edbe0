//! The whole setup as one session: discover → probe → choose → **confirm** → sign in →
//! the account (spec §2, SEC-1, A-1 … A-6, O-1 … O-15, V-1 … V-4).
//!
//! A session moves through three states, each a type, so a step cannot be skipped:
//!
//! 1. [`SetupSession::prepare`] discovers and verifies the configuration, probes every
//!    service, fetches the OAuth metadata and chooses a method per service. Nothing secret
//!    has been sent. It returns a [`Prepared`] holding the [`ConfirmationRequest`]: every
//!    host that would receive a credential, grouped by registrable domain, with the plan.
//! 2. [`Prepared::confirm`] takes the user's answer and returns a [`Confirmed`] session
//!    bound to exactly those hosts. [`Confirmed::authorize`] runs the OAuth leg when a
//!    service uses it: the authorization URL or device code arrives as an [`Event`] for
//!    the caller to show or open its own way. If it fails, services that also take the
//!    password fall back to it (in [`AuthPolicy::Auto`]).
//! 3. [`Confirmed::sign_in`] signs in to every chosen service (the password, when one is
//!    needed, comes from the caller) and returns the [`Finished`] setup: per-service
//!    validations, the accounts, what was not set up and why. [`Finished::save`] keeps it.
//!
//! Progress arrives as typed [`Event`]s on the [`Events`] stream returned with the session.
//! Time the caller spends between steps (the user reading the confirmation, typing a
//! password) is not counted against the deadline; everything else shares one deadline
//! (`Timeouts::overall`), whose end is the instant `prepare` started plus that duration.
//!
//! Cancellation: drop any step's future, or call [`CancelHandle::cancel`] from anywhere;
//! the step then ends with [`SetupError::Cancelled`]. Either way every connection of the
//! step is dropped. Nothing is half-sent: a credential leaves in one write as one TLS
//! record, so a server sees it whole or not at all, and nothing is sent before the
//! confirmation in any case.
//!
//! The probe connections are kept open through the confirmation (in the state the probe
//! left them: TLS up, capabilities read, not authenticated) and the sign-in runs on them,
//! so a setup costs one dialogue per service, not two. A connection the server closed, or
//! one older than [`SetupOptions::idle_limit`], is replaced by a new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pacc_proto::account::{
    ACCOUNT_VERSION, Account, SavedOAuth, SavedService, SecretsInfo, Source as SavedSource,
};
use pacc_proto::auth::Secret;
use pacc_proto::auth::gate::{ConfirmationRequest, GateError};
use pacc_proto::auth::login::FailureClass;
use pacc_proto::auth::oauth::{
    DeviceAuthorization, Metadata, Tokens, resource_indicator, same_issuer,
};
use pacc_proto::auth::select::{AuthPolicy, Choice, Decision, Method, OAuth, choose};
use pacc_proto::discovery::{Method as Source, Report, Verified};
use pacc_proto::document::{Config, Endpoint, ServiceKind};
use pacc_proto::name::{Domain, EmailAddress};
use pacc_proto::probe::{Offered, ProbeStatus, ServiceProbe};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::accounts::{AccountStore, SecretKind, Secrets};
use crate::oauth::{ClientStore, OAuthError};
use crate::probe::Parked;
use crate::signin::{Credentials, Validation, ValidationOutcome};
use crate::{Client, Progress};

/// How the session behaves.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Which method to prefer (A-1 … A-3): OAuth where possible, OAuth only, or the
    /// password only.
    pub policy: AuthPolicy,
    /// Where the OAuth client ids registered per issuer (RFC 7591) are kept.
    pub clients: ClientStore,
    /// How long a probe connection is kept for the sign-in; older ones are replaced.
    pub idle_limit: Duration,
}

impl Default for SetupOptions {
    fn default() -> Self {
        SetupOptions {
            policy: AuthPolicy::Auto,
            clients: ClientStore::default_location(),
            idle_limit: Duration::from_secs(60),
        }
    }
}

/// How the OAuth leg reaches the user ([`Confirmed::authorize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    /// Emit [`Event::OpenUrl`] (open it in a browser) and wait up to `wait` for the
    /// browser to come back to the loopback redirect.
    Browser {
        /// How long the user may take.
        wait: Duration,
    },
    /// The device authorization grant (RFC 8628) where the server offers it: emit
    /// [`Event::DeviceCode`] and poll for up to `wait`. Without a device endpoint this is
    /// [`Authorization::Browser`].
    Device {
        /// How long the user may take.
        wait: Duration,
    },
    /// No browser can be used here: emit [`Event::OpenUrl`] for the record but do not
    /// wait; the OAuth leg fails with kind `no-browser` (and falls back to the password
    /// where allowed).
    NoWait,
}

/// A step of the setup, for progress displays (also the JSON `event` values).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// A DNS lookup or HTTPS fetch of the discovery started.
    LookupStarted {
        /// `txt`, `mx` or `fetch`.
        step: &'static str,
        /// The name or URL.
        target: String,
    },
    /// It finished.
    LookupFinished {
        /// `txt`, `mx` or `fetch`.
        step: &'static str,
        /// The name or URL.
        target: String,
        /// How long it took.
        elapsed_ms: u64,
    },
    /// The configuration was verified.
    Discovered {
        /// Where its bytes came from.
        url: String,
        /// `well-known` or `mx-fallback`.
        method: Source,
        /// How many services it describes.
        services: usize,
    },
    /// One service's probe ended.
    Probed {
        /// What it found.
        probe: ServiceProbe,
    },
    /// Open this URL in a browser to sign in (authorization-code flow with PKCE).
    OpenUrl {
        /// The authorization URL.
        url: String,
        /// Whether the session waits for the browser to come back.
        waiting: bool,
    },
    /// Show these to the user: open the URI on any device and enter the code (RFC 8628).
    DeviceCode {
        /// Where to go.
        verification_uri: String,
        /// What to type there.
        user_code: String,
        /// The URI with the code filled in, if the server gave one.
        #[serde(skip_serializing_if = "Option::is_none")]
        verification_uri_complete: Option<String>,
    },
    /// The OAuth leg failed.
    OAuthFailed {
        /// A stable kind (see [`OAuthReport::kind`]).
        kind: &'static str,
        /// What went wrong.
        message: String,
    },
    /// This service uses the password because the OAuth leg did not work.
    FellBack {
        /// The service.
        service: ServiceKind,
        /// Why.
        reason: String,
    },
    /// Signing in to this many services started.
    SigningIn {
        /// How many.
        services: usize,
    },
    /// One service's sign-in ended.
    SignedIn {
        /// The result.
        validation: Validation,
    },
}

/// The receiving end of a session's [`Event`]s. Ends when the session (and every state it
/// became) is dropped. Also a [`futures_util::Stream`].
#[derive(Debug)]
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// The next event, or `None` once the session is gone.
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }

    /// An event that already arrived, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.0.try_recv().ok()
    }
}

impl futures_util::Stream for Events {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.0.poll_recv(cx)
    }
}

/// Cancels a session from anywhere (another task, another thread, a signal handler).
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelHandle {
    /// A handle that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancel: the running step (and any later one) ends with [`SetupError::Cancelled`].
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Run `work` unless cancelled first (then `work` is dropped, with its connections).
    async fn guard<T>(&self, work: impl Future<Output = T>) -> Result<T, SetupError> {
        if self.is_cancelled() {
            return Err(SetupError::Cancelled);
        }
        tokio::select! {
            biased;
            () = self.cancelled() => Err(SetupError::Cancelled),
            r = work => Ok(r),
        }
    }
}

/// Why a session stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// Discovery produced no verified configuration; the report says why
    /// (`report.outcome` is the error, with its kind and class).
    #[error("{}", discovery_message(.0))]
    Discovery(Box<Report>),
    /// The session was cancelled; whatever was running was dropped.
    #[error("cancelled; nothing more was sent")]
    Cancelled,
}

fn discovery_message(r: &Report) -> String {
    match &r.outcome {
        Err(e) => e.to_string(),
        Ok(_) => "discovery succeeded".to_owned(),
    }
}

/// What happened with OAuth (the JSON `oauth` object; `status` and `kind` are stable).
#[derive(Debug, Clone, Serialize, Default)]
pub struct OAuthReport {
    /// The provider's issuer.
    pub issuer: String,
    /// `ok`, `failed` or `not-used`.
    pub status: &'static str,
    /// Why not `ok`: `metadata-unavailable`, `issuer-mismatch`, `registration-refused`,
    /// `access-denied`, `state-mismatch`, `iss-missing`, `iss-mismatch`, `browser-timeout`,
    /// `no-browser`, `token-refused`, `token-type`, `invalid-target`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// What went wrong, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The authorization server's own `error_description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The registered client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The scope granted (or asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The resource indicators the token was requested for (O-7).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
}

impl OAuthReport {
    fn failed(
        issuer: &str,
        kind: &'static str,
        message: String,
        description: Option<String>,
    ) -> Self {
        OAuthReport {
            issuer: issuer.to_owned(),
            status: "failed",
            kind: Some(kind),
            message: Some(message),
            description,
            ..Default::default()
        }
    }

    fn from_error(issuer: &str, e: &OAuthError) -> Self {
        OAuthReport::failed(
            issuer,
            e.kind(),
            e.to_string(),
            e.description().map(str::to_owned),
        )
    }

    /// Whether the OAuth leg produced a token.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// A service that uses the password because the OAuth leg did not work.
#[derive(Debug, Clone, Serialize)]
pub struct Fallback {
    /// The service.
    pub service: ServiceKind,
    /// Why.
    pub reason: String,
}

/// A service that is not set up, and why (unreachable, no usable method, refused…).
#[derive(Debug, Clone, Serialize)]
pub struct NotSetUp {
    /// The service.
    pub service: ServiceKind,
    /// `host:port` or URL.
    pub target: String,
    /// Why, in words.
    pub reason: String,
}

/// One service set up: where, as whom, how.
#[derive(Debug, Clone, Serialize)]
pub struct AccountService {
    /// The service.
    pub service: ServiceKind,
    /// Where it is.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The username (always the full address, W-1).
    pub username: String,
    /// How it is signed in to.
    #[serde(flatten)]
    pub method: Method,
}

/// Durations of the phases, in milliseconds (the JSON `phases` object).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    /// Discovery (DNS, document fetch, digest check, MX fallback).
    pub discovery_ms: u64,
    /// Probing every service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_ms: Option<u64>,
    /// OAuth metadata, registration, token exchange and refresh (without the browser wait).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_ms: Option<u64>,
    /// Waiting for the user to finish in the browser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_ms: Option<u64>,
    /// Signing in to every service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_ms: Option<u64>,
    /// The whole run, without the time the caller held the session between steps.
    pub total_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// State shared by every stage of a session.
struct Core {
    client: Arc<Client>,
    address: EmailAddress,
    options: SetupOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancelHandle,
    /// The one deadline, moved later by the time the caller held the session.
    deadline: Instant,
    /// When the caller got the session back last (its hold is not counted).
    handed_back: Option<Instant>,
    /// Time of the run itself (for `total_ms`).
    worked: Duration,
    phases: Phases,
}

impl Core {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// The caller called the next step: its hold does not count against the deadline.
    fn resume(&mut self) -> Instant {
        let now = Instant::now();
        if let Some(t) = self.handed_back.take() {
            self.deadline += now.saturating_duration_since(t);
        }
        now
    }

    fn hand_back(&mut self, resumed: Instant) {
        let now = Instant::now();
        self.worked += now.saturating_duration_since(resumed);
        self.handed_back = Some(now);
    }

    fn phases(&self) -> Phases {
        Phases {
            total_ms: ms(self.worked),
            ..self.phases.clone()
        }
    }
}

/// A setup that has not started. See the [module docs](self).
pub struct SetupSession {
    core: Core,
}

impl std::fmt::Debug for SetupSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupSession")
            .field("address", &self.core.address.as_str())
            .finish_non_exhaustive()
    }
}

impl SetupSession {
    /// A session for `address` on `client`, and the stream of its events.
    pub fn new(
        client: Arc<Client>,
        address: EmailAddress,
        options: SetupOptions,
    ) -> (Self, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        let deadline = client.deadline();
        (
            SetupSession {
                core: Core {
                    client,
                    address,
                    options,
                    events: tx,
                    cancel: CancelHandle::new(),
                    deadline,
                    handed_back: None,
                    worked: Duration::ZERO,
                    phases: Phases::default(),
                },
            },
            Events(rx),
        )
    }

    /// A handle that cancels this session, in whichever state it is by then.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.core.cancel.clone()
    }

    /// Discover, probe, fetch the OAuth metadata and choose a method per service. Sends no
    /// credential (SEC-1). A discovery that verifies nothing ends the session with
    /// [`SetupError::Discovery`].
    pub async fn prepare(self) -> Result<Prepared, SetupError> {
        let mut core = self.core;
        core.deadline = core.client.deadline();
        let started = core.resume();
        let cancel = core.cancel.clone();
        let result = cancel.guard(prepare(&mut core)).await?;
        core.hand_back(started);
        let (report, probes, parked, oauth, metadata, choices, request) = result?;
        Ok(Prepared {
            core,
            report,
            probes,
            parked,
            oauth,
            metadata,
            choices,
            request,
        })
    }
}

type PrepareResult = Result<
    (
        Box<Report>,
        Vec<ServiceProbe>,
        Vec<Parked>,
        Option<OAuthReport>,
        Option<Metadata>,
        Vec<Choice>,
        Option<ConfirmationRequest>,
    ),
    SetupError,
>;

async fn prepare(core: &mut Core) -> PrepareResult {
    let client = core.client.clone();
    let t = Instant::now();
    let events = core.events.clone();
    let report = client
        .discover_domain_until(core.address.domain(), core.deadline, &|p| {
            let _ = events.send(match p {
                Progress::Started { step, target } => Event::LookupStarted { step, target },
                Progress::Finished {
                    step,
                    target,
                    elapsed,
                } => Event::LookupFinished {
                    step,
                    target,
                    elapsed_ms: ms(elapsed),
                },
            });
        })
        .await;
    core.phases.discovery_ms = ms(t.elapsed());
    let report = Box::new(report);
    let Ok(verified) = &report.outcome else {
        return Err(SetupError::Discovery(report));
    };
    let config = &verified.document.config;
    core.emit(Event::Discovered {
        url: verified.url.clone(),
        method: verified.method,
        services: config.protocols.len(),
    });

    let t = Instant::now();
    let (probes, parked) = client
        .probe_keeping(config, core.deadline, &|p| {
            let _ = events.send(Event::Probed { probe: p.clone() });
        })
        .await;
    core.phases.probe_ms = Some(ms(t.elapsed()));

    // OAuth only with usable metadata, checked before anything is confirmed or opened.
    let t = Instant::now();
    let issuer = config
        .authentication
        .as_ref()
        .and_then(|a| a.oauth_public.as_ref())
        .map(|o| o.issuer.clone());
    let mut oauth: Option<OAuthReport> = None;
    let mut metadata: Option<Metadata> = None;
    let mut conflicts = Vec::new();
    if let Some(iss) = &issuer {
        if core.options.policy == AuthPolicy::Password {
            oauth = Some(OAuthReport {
                issuer: iss.clone(),
                status: "not-used",
                message: Some("--auth password".into()),
                ..Default::default()
            });
        } else {
            match client.oauth_metadata(iss, core.deadline).await {
                Ok(m) => {
                    conflicts = issuer_conflicts(&client, &probes, iss, core.deadline).await;
                    metadata = Some(m.metadata);
                }
                Err(e) => oauth = Some(OAuthReport::from_error(iss, &e)),
            }
        }
        core.phases.oauth_ms = Some(ms(t.elapsed()));
    }
    let unusable = oauth
        .as_ref()
        .and_then(|o| o.message.clone())
        .unwrap_or_default();
    let readiness = match (&issuer, &metadata) {
        (None, _) => OAuth::NoIssuer,
        (Some(_), Some(m)) => OAuth::Ready {
            metadata: m,
            refused: &conflicts,
        },
        (Some(_), None) => OAuth::Unusable(&unusable),
    };
    let choices = choose(config, &probes, readiness, core.options.policy);
    let request = choices
        .iter()
        .any(|c| c.method().is_some())
        .then(|| confirmation_request(verified, &choices, metadata.as_ref()));
    Ok((
        report.clone(),
        probes,
        parked,
        oauth,
        metadata,
        choices,
        request,
    ))
}

/// SEC-1 / MX-9: every host that would receive a credential, the OAuth issuer and its
/// endpoints' hosts among them, with where the configuration came from.
fn confirmation_request(
    verified: &Verified,
    choices: &[Choice],
    metadata: Option<&Metadata>,
) -> ConfirmationRequest {
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
    let oauth_hosts: Vec<Domain> = match (metadata, uses_oauth) {
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
    ConfirmationRequest::new(
        choices
            .iter()
            .filter(|c| c.method().is_some())
            .map(|c| c.host.clone())
            .chain(oauth_hosts),
        source,
        mx_domains,
    )
    .with_plan(verified.document.config.provider_name(), choices)
}

/// O-14: HTTP services whose `WWW-Authenticate` points to RFC 9728 metadata naming other
/// authorization servers than the provider's issuer get no token.
async fn issuer_conflicts(
    client: &Client,
    probes: &[ServiceProbe],
    issuer: &str,
    deadline: Instant,
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

/// The user's answer to the [`ConfirmationRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Yes: sign in to every host shown.
    Yes,
    /// No: nothing is sent.
    No,
    /// Yes, if these are exactly the registrable domains shown (for unattended runs that
    /// pinned the domains in advance; `--accept-domains`).
    Domains(Vec<String>),
}

/// Discovered, probed and planned; waiting for the user's confirmation. Nothing secret has
/// been sent.
pub struct Prepared {
    core: Core,
    report: Box<Report>,
    probes: Vec<ServiceProbe>,
    parked: Vec<Parked>,
    oauth: Option<OAuthReport>,
    metadata: Option<Metadata>,
    choices: Vec<Choice>,
    request: Option<ConfirmationRequest>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("address", &self.core.address.as_str())
            .field("choices", &self.choices)
            .finish_non_exhaustive()
    }
}

/// A refused confirmation: why, and the session to try again with (a wrong
/// `Answer::Domains` list can be corrected).
#[derive(Debug)]
pub struct NotConfirmed {
    /// Why nothing may be sent.
    pub error: GateError,
    /// The session, unchanged.
    pub prepared: Box<Prepared>,
}

impl Prepared {
    /// The address being set up.
    pub fn address(&self) -> &EmailAddress {
        &self.core.address
    }

    /// The discovery report (its outcome is the verified configuration).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The verified configuration and where it came from.
    pub fn verified(&self) -> &Verified {
        match &self.report.outcome {
            Ok(v) => v,
            // `prepare` returns `Prepared` only for a verified report.
            Err(_) => unreachable!("a Prepared session always holds a verified report"),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.verified().document.config
    }

    /// Every service's probe, in configuration order of kinds.
    pub fn probes(&self) -> &[ServiceProbe] {
        &self.probes
    }

    /// The method chosen per service, or why it is skipped.
    pub fn choices(&self) -> &[Choice] {
        &self.choices
    }

    /// What happened with OAuth so far (`None`: no issuer, or metadata fine and not used
    /// yet).
    pub fn oauth(&self) -> Option<&OAuthReport> {
        self.oauth.as_ref()
    }

    /// What to show the user; `None` when no service can be signed in to (each choice
    /// says why), in which case the setup cannot go on.
    pub fn confirmation(&self) -> Option<&ConfirmationRequest> {
        self.request.as_ref()
    }

    /// The phases so far.
    pub fn phases(&self) -> Phases {
        self.core.phases()
    }

    /// A handle that cancels this session.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.core.cancel.clone()
    }

    /// Take the user's answer (SEC-1). `No`, a domain list that is not exactly the one
    /// shown, or a session with nothing to sign in to is refused, and nothing is sent.
    pub fn confirm(mut self, answer: Answer) -> Result<Confirmed, NotConfirmed> {
        let resumed = self.core.resume();
        let verdict = match (&self.request, &answer) {
            (None, _) => Err(GateError::Declined),
            (Some(r), Answer::Yes) => r.confirm(true),
            (Some(r), Answer::No) => r.confirm(false),
            (Some(r), Answer::Domains(list)) => r.accept_domains(list),
        };
        self.core.hand_back(resumed);
        match verdict {
            Ok(confirmed) => Ok(Confirmed {
                confirmed,
                prepared: self,
                fallbacks: Vec::new(),
                tokens: None,
                refresh: None,
                authorized: false,
            }),
            Err(error) => Err(NotConfirmed {
                error,
                prepared: Box::new(self),
            }),
        }
    }
}

/// Confirmed by the user: credentials may now go to exactly the hosts shown.
pub struct Confirmed {
    prepared: Prepared,
    confirmed: pacc_proto::auth::gate::Confirmed,
    fallbacks: Vec<Fallback>,
    tokens: Option<Tokens>,
    refresh: Option<(String, Secret)>,
    authorized: bool,
}

impl std::fmt::Debug for Confirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirmed")
            .field("prepared", &self.prepared)
            .finish_non_exhaustive()
    }
}

impl Confirmed {
    /// The session as it was confirmed.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// The current method per service (after any fallback).
    pub fn choices(&self) -> &[Choice] {
        &self.prepared.choices
    }

    /// Whether some service signs in with OAuth (then call [`Confirmed::authorize`]).
    pub fn uses_oauth(&self) -> bool {
        self.prepared.choices.iter().any(Choice::uses_oauth)
    }

    /// Whether some service needs the password (after the OAuth leg: fallbacks count).
    pub fn needs_password(&self) -> bool {
        self.prepared.choices.iter().any(Choice::uses_password)
    }

    /// Whether a failed OAuth leg would fall back to the password for some service.
    pub fn can_fall_back(&self) -> bool {
        self.prepared
            .choices
            .iter()
            .any(|c| c.uses_oauth() && c.fallback.is_some())
    }

    /// The services that use the password because OAuth did not work.
    pub fn fallbacks(&self) -> &[Fallback] {
        &self.fallbacks
    }

    /// The OAuth outcome, once [`Confirmed::authorize`] ran (or why OAuth is not used).
    pub fn oauth(&self) -> Option<&OAuthReport> {
        self.prepared.oauth.as_ref()
    }

    /// The tokens of a successful OAuth leg (for a caller that keeps them itself).
    pub fn tokens(&self) -> Option<&Tokens> {
        self.tokens.as_ref()
    }

    /// The OAuth leg (O-1 … O-15): register once per issuer, then the authorization-code
    /// flow with PKCE through a loopback redirect, or the device grant, as `how` says.
    /// Every endpoint must be among the confirmed hosts. On failure, in
    /// [`AuthPolicy::Auto`], services that also take the password fall back to it (see
    /// [`Confirmed::fallbacks`]). Does nothing when no service uses OAuth, or twice.
    pub async fn authorize(&mut self, how: Authorization) -> Result<&OAuthReport, SetupError> {
        let resumed = self.prepared.core.resume();
        let cancel = self.prepared.core.cancel.clone();
        let r = cancel.guard(self.run_authorize(how)).await;
        self.prepared.core.hand_back(resumed);
        r?;
        Ok(self.prepared.oauth.get_or_insert_with(OAuthReport::default))
    }

    async fn run_authorize(&mut self, how: Authorization) {
        if self.authorized || !self.uses_oauth() {
            return;
        }
        self.authorized = true;
        let p = &mut self.prepared;
        let (Some(meta), Some(iss)) = (
            p.metadata.clone(),
            p.config()
                .authentication
                .as_ref()
                .and_then(|a| a.oauth_public.as_ref())
                .map(|o| o.issuer.clone()),
        ) else {
            return;
        };
        let started = Instant::now();
        let scope = pacc_proto::auth::select::scopes(&p.choices, &meta.scopes_supported).join(" ");
        // O-7: one resource indicator per service the token is for.
        let resources: Vec<String> = p
            .choices
            .iter()
            .filter(|c| c.uses_oauth())
            .filter_map(|c| p.config().protocols.get(c.service))
            .map(|s| resource_indicator(s.kind, &s.endpoint))
            .collect();
        let client = p.core.client.clone();
        let events = p.core.events.clone();
        let device = matches!(how, Authorization::Device { .. })
            && meta.device_authorization_endpoint.is_some();
        let wait = match how {
            Authorization::Device { wait } | Authorization::Browser { wait } => wait,
            Authorization::NoWait => Duration::ZERO,
        };
        let result = if device {
            let show = |d: &DeviceAuthorization| {
                let _ = events.send(Event::DeviceCode {
                    verification_uri: d.verification_uri.clone(),
                    user_code: d.user_code.clone(),
                    verification_uri_complete: d.verification_uri_complete.clone(),
                });
            };
            client
                .oauth_device_authorize(
                    &meta,
                    &self.confirmed,
                    &scope,
                    &resources,
                    &p.core.options.clients,
                    &show,
                    wait,
                    p.core.deadline,
                )
                .await
        } else {
            let waiting = how != Authorization::NoWait;
            let open = |url: &str| {
                let _ = events.send(Event::OpenUrl {
                    url: url.to_owned(),
                    waiting,
                });
            };
            client
                .oauth_authorize(
                    &meta,
                    &self.confirmed,
                    &scope,
                    &resources,
                    &p.core.options.clients,
                    &open,
                    wait,
                    p.core.deadline,
                )
                .await
        };
        // The time the user took is outside the deadline and recorded as `browser_ms`.
        let waited = match &result {
            Ok(a) => a.browser_wait,
            Err(OAuthError::Timeout(w)) => *w,
            Err(_) => Duration::ZERO,
        };
        p.core.deadline += waited;
        p.core.phases.browser_ms = Some(ms(waited));
        *p.core.phases.oauth_ms.get_or_insert(0) += ms(started.elapsed().saturating_sub(waited));
        match result {
            Ok(authorized) => {
                let tokens = authorized.tokens;
                p.oauth = Some(OAuthReport {
                    issuer: iss,
                    status: "ok",
                    client_id: Some(authorized.client_id.clone()),
                    scope: Some(tokens.scope.clone().unwrap_or(scope)),
                    resources: authorized.resources,
                    ..Default::default()
                });
                if let Some(r) = &tokens.refresh_token {
                    self.refresh = Some((authorized.client_id, r.clone()));
                }
                self.tokens = Some(tokens);
            }
            Err(e) => {
                let report = match e {
                    OAuthError::Timeout(_) if how == Authorization::NoWait => OAuthReport::failed(
                        &iss,
                        "no-browser",
                        "no browser can be opened here (no display or no xdg-open), so the password was used; use --no-browser to sign in from another device".into(),
                        None,
                    ),
                    e => OAuthReport::from_error(&iss, &e),
                };
                let why = format!(
                    "OAuth sign-in failed ({}): {}",
                    report.kind.unwrap_or("failed"),
                    report.message.as_deref().unwrap_or("")
                );
                let _ = events.send(Event::OAuthFailed {
                    kind: report.kind.unwrap_or("failed"),
                    message: report.message.clone().unwrap_or_default(),
                });
                // In auto, services that also take a password use it instead.
                for c in &mut p.choices {
                    if c.uses_oauth()
                        && let Some(f) = c.fallback.take()
                    {
                        c.decision = Decision::Use(f);
                        let fb = Fallback {
                            service: c.service,
                            reason: why.clone(),
                        };
                        let _ = events.send(Event::FellBack {
                            service: fb.service,
                            reason: fb.reason.clone(),
                        });
                        self.fallbacks.push(fb);
                    }
                }
                p.oauth = Some(report);
            }
        }
    }

    /// Sign in to every chosen service, concurrently, on the probe connections where they
    /// are still open: only to confirmed hosts (SEC-1), only over verified TLS (W-4), with
    /// the full address as username (W-1), once each (V-4). `password` is used by the
    /// services whose method is the password ([`Confirmed::needs_password`]); a token
    /// refused by a server that does not name another issuer is refreshed once and retried
    /// once (O-12). Call [`Confirmed::authorize`] first when [`Confirmed::uses_oauth`].
    pub async fn sign_in(mut self, password: Option<Secret>) -> Result<Finished, SetupError> {
        let resumed = self.prepared.core.resume();
        let cancel = self.prepared.core.cancel.clone();
        let credentials = Credentials {
            password,
            token: self.tokens.as_ref().map(|t| t.access_token.clone()),
        };
        let validations = cancel.guard(self.run_sign_in(&credentials)).await?;
        self.prepared.core.hand_back(resumed);
        let Confirmed {
            prepared,
            confirmed: _,
            fallbacks,
            tokens,
            refresh,
            authorized: _,
        } = self;
        Ok(Finished {
            prepared,
            validations,
            fallbacks,
            credentials,
            tokens,
            refresh,
        })
    }

    async fn run_sign_in(&mut self, credentials: &Credentials) -> Vec<Validation> {
        let p = &mut self.prepared;
        let client = p.core.client.clone();
        let events = p.core.events.clone();
        let n = p.choices.iter().filter(|c| c.method().is_some()).count();
        let _ = events.send(Event::SigningIn { services: n });
        let started = Instant::now();
        let parked = std::mem::take(&mut p.parked);
        let username = p.core.address.as_str().to_owned();
        let config = &p.verified().document.config;
        let mut validations = client
            .sign_in_on(
                config,
                &p.choices,
                &username,
                credentials,
                &self.confirmed,
                parked,
                p.core.options.idle_limit,
                p.core.deadline,
            )
            .await;
        // O-14: a server whose OAUTHBEARER failure names another issuer is not sent a token
        // again; O-12 / V-4: any other rejected token is refreshed once and retried once.
        let pacc_issuer = p
            .oauth
            .as_ref()
            .map(|o| o.issuer.clone())
            .unwrap_or_default();
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
            .filter_map(|v| p.choices.iter().find(|c| c.service == v.service).cloned())
            .collect();
        if !token_rejected.is_empty()
            && let Some((client_id, refresh)) = &self.refresh
            && let Some(meta) = &p.metadata
            && let Ok(fresh) = client
                .oauth_refresh(meta, &self.confirmed, client_id, refresh, p.core.deadline)
                .await
        {
            let retry = Credentials {
                password: None,
                token: Some(fresh.access_token),
            };
            let retried = client
                .sign_in(
                    config,
                    &token_rejected,
                    &username,
                    &retry,
                    &self.confirmed,
                    p.core.deadline,
                )
                .await;
            for r in retried {
                if let Some(slot) = validations.iter_mut().find(|v| v.service == r.service) {
                    *slot = r;
                }
            }
        }
        for v in &validations {
            let _ = events.send(Event::SignedIn {
                validation: v.clone(),
            });
        }
        p.core.phases.sign_in_ms = Some(ms(started.elapsed()));
        validations
    }
}

/// A finished setup: what works, what does not and why.
pub struct Finished {
    prepared: Prepared,
    validations: Vec<Validation>,
    fallbacks: Vec<Fallback>,
    credentials: Credentials,
    tokens: Option<Tokens>,
    refresh: Option<(String, Secret)>,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("validations", &self.validations)
            .finish_non_exhaustive()
    }
}

/// Where [`Finished::save`] keeps the account and its secrets.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// The account store.
    pub store: AccountStore,
    /// Where secrets go.
    pub secrets: Secrets,
    /// Extra CA files of this run, recorded so later commands trust the same servers.
    pub ca_files: Vec<String>,
    /// The DNS server of this run, recorded likewise.
    pub dns: Option<String>,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            store: AccountStore::default(),
            secrets: Secrets::Keyring,
            ca_files: Vec::new(),
            dns: None,
        }
    }
}

/// Where the account was saved and which secrets were stored (the JSON `saved` object).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Saved {
    /// The account file.
    pub path: String,
    /// `keyring` or `none`.
    pub secrets: &'static str,
    /// Whether the password is in the keyring.
    pub password_stored: bool,
    /// Whether the refresh token is in the keyring.
    pub refresh_token_stored: bool,
    /// What was not stored, and how to supply it later.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Client configurations written afterwards by the caller (`--export`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<String>,
}

impl Finished {
    /// The session as it was confirmed.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    /// The method finally used per service (after any fallback).
    pub fn choices(&self) -> &[Choice] {
        &self.prepared.choices
    }

    /// The result of every sign-in.
    pub fn validations(&self) -> &[Validation] {
        &self.validations
    }

    /// The services that use the password because OAuth did not work.
    pub fn fallbacks(&self) -> &[Fallback] {
        &self.fallbacks
    }

    /// What happened with OAuth.
    pub fn oauth(&self) -> Option<&OAuthReport> {
        self.prepared.oauth.as_ref()
    }

    /// The tokens of the OAuth leg, if it ran and succeeded.
    pub fn tokens(&self) -> Option<&Tokens> {
        self.tokens.as_ref()
    }

    /// The phases, measured.
    pub fn phases(&self) -> Phases {
        self.prepared.core.phases()
    }

    /// Every service signed in to and every configured one skipped: the whole setup works.
    pub fn is_ok(&self) -> bool {
        self.validations.iter().all(Validation::is_ok)
            && self.prepared.choices.iter().all(|c| c.method().is_some())
    }

    /// The services that work (V-1), as accounts.
    pub fn accounts(&self) -> Vec<AccountService> {
        let config = self.prepared.config();
        self.validations
            .iter()
            .filter(|v| v.is_ok())
            .filter_map(|v| {
                config.protocols.get(v.service).map(|s| AccountService {
                    service: v.service,
                    endpoint: s.endpoint.clone(),
                    username: self.prepared.core.address.as_str().to_owned(),
                    method: v.method.clone(),
                })
            })
            .collect()
    }

    /// Every service that did not end signed in, with the reason.
    pub fn not_set_up(&self) -> Vec<NotSetUp> {
        not_set_up(&self.prepared.choices, &self.validations, false)
    }

    /// The account as it is saved: the verified document, the services that work, the
    /// OAuth client, and which secrets were stored (`secrets`).
    pub fn account(&self, options: &SaveOptions, secrets: SecretsInfo) -> Account {
        let now = unix_now();
        let p = &self.prepared;
        let verified = p.verified();
        let services: Vec<SavedService> = self
            .validations
            .iter()
            .filter(|v| v.is_ok())
            .filter_map(|v| {
                p.config()
                    .protocols
                    .get(v.service)
                    .map(|s| SavedService::new(v.service, &s.endpoint, &v.method))
            })
            .collect();
        let oauth = match (&p.oauth, &p.metadata) {
            (Some(o), Some(m)) if o.is_ok() && services.iter().any(SavedService::uses_oauth) => {
                Some(SavedOAuth {
                    issuer: o.issuer.clone(),
                    client_id: o.client_id.clone().unwrap_or_default(),
                    token_endpoint: m.token_endpoint.clone(),
                    scope: o.scope.clone().unwrap_or_default(),
                    resources: o.resources.clone(),
                    access_expires_at: self
                        .tokens
                        .as_ref()
                        .and_then(|t| t.expires_in)
                        .map(|s| now + s),
                })
            }
            _ => None,
        };
        Account {
            version: ACCOUNT_VERSION,
            address: p.core.address.as_str().to_owned(),
            provider: p.config().provider_name().map(str::to_owned),
            saved_at: now,
            source: SavedSource {
                method: serde_json::to_value(verified.method)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                url: verified.url.clone(),
                record: verified.record.clone(),
                algorithm: verified.algorithm.name().to_owned(),
            },
            document: String::from_utf8_lossy(&verified.bytes).into_owned(),
            services,
            oauth,
            confirmed_hosts: p
                .request
                .iter()
                .flat_map(|r| r.groups.iter())
                .flat_map(|g| g.hosts.iter().map(|h| h.to_string()))
                .collect(),
            ca_files: options.ca_files.clone(),
            dns: options.dns.clone(),
            secrets,
        }
    }

    /// Keep the account (A-5, V-1: the services that work) and its secrets: the password
    /// and the refresh token in the system keyring, never in a plain file. Returns what was
    /// stored, what was not and why, and the saved [`Account`] (`None` when nothing was
    /// signed in to, or it could not be written).
    pub async fn save(&self, options: &SaveOptions) -> (Saved, Option<Account>) {
        let mut saved = Saved::default();
        if !self.validations.iter().any(Validation::is_ok) {
            saved
                .warnings
                .push("nothing was signed in to, so no account was saved".to_owned());
            return (saved, None);
        }
        let address = self.prepared.core.address.as_str();
        let uses_password = self
            .validations
            .iter()
            .any(|v| v.is_ok() && matches!(v.method, Method::Password { .. }));
        let uses_oauth = self
            .validations
            .iter()
            .any(|v| v.is_ok() && matches!(v.method, Method::Oauth { .. }));
        let mut store = options.secrets;
        if store == Secrets::Keyring && !Secrets::keyring_available().await {
            saved.warnings.push(
                "The system keyring is not available (no Secret Service on the session bus), so no secret was stored: `pacc password` and `pacc token` will not work for this account. Run pacc setup again where a keyring runs, or give the password to your mail client yourself.".to_owned(),
            );
            store = Secrets::None;
        }
        saved.secrets = store.name();
        if store == Secrets::Keyring {
            if uses_password && let Some(p) = &self.credentials.password {
                match store.set(address, SecretKind::Password, p).await {
                    Ok(()) => saved.password_stored = true,
                    Err(e) => saved
                        .warnings
                        .push(format!("the password was not stored: {e}")),
                }
            }
            if uses_oauth && self.prepared.oauth.as_ref().is_some_and(OAuthReport::is_ok) {
                if let Some((_, r)) = &self.refresh {
                    match store.set(address, SecretKind::RefreshToken, r).await {
                        Ok(()) => saved.refresh_token_stored = true,
                        Err(e) => saved
                            .warnings
                            .push(format!("the refresh token was not stored: {e}")),
                    }
                }
                if let Some(t) = &self.credentials.token {
                    let _ = store.set(address, SecretKind::AccessToken, t).await;
                }
            }
        } else if options.secrets == Secrets::None {
            saved.warnings.push("--store-secrets none: no secret was stored; `pacc password` and `pacc token` will not work for this account".to_owned());
        }
        let account = self.account(
            options,
            SecretsInfo {
                store: store.name().to_owned(),
                password: saved.password_stored,
                refresh_token: saved.refresh_token_stored,
            },
        );
        match options.store.save(&account) {
            Ok(path) => {
                saved.path = path.display().to_string();
                (saved, Some(account))
            }
            Err(e) => {
                saved
                    .warnings
                    .push(format!("the account was not saved: {e}"));
                (saved, None)
            }
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Every service that did not end signed in, with the reason. `nothing_sent`: the setup
/// stopped before signing in (not confirmed, nothing usable).
pub fn not_set_up(
    choices: &[Choice],
    validations: &[Validation],
    nothing_sent: bool,
) -> Vec<NotSetUp> {
    let mut out = Vec::new();
    for c in choices {
        let reason = match (
            &c.decision,
            validations.iter().find(|v| v.service == c.service),
        ) {
            (Decision::Skip { skipped }, _) => Some(skipped.clone()),
            (Decision::Use(_), Some(v)) => match &v.outcome {
                ValidationOutcome::Ok => None,
                ValidationOutcome::Failed { class, message } => {
                    Some(format!("sign-in failed [{}]: {message}", class.name()))
                }
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
