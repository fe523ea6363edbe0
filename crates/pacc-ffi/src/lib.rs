//! # pacc-ffi: pacc's setup session for Kotlin, Swift and Python (UniFFI)
//!
//! The same flow as [`pacc::setup`], as objects a mail app can hold:
//!
//! ```text
//! client = PaccClient(ClientOptions(...))
//! setup  = client.setup("alice@example.com", AuthPreference.AUTO, listener)
//! confirmation = await setup.prepare()        # discover, probe, plan; nothing sent
//! show(confirmation.text); if the user agrees:
//! info = setup.confirm(True)                  # or confirm_domains([...])
//! if info.uses_oauth: await setup.authorize(AuthFlow.BROWSER(300))   # listener gets open-url
//! result = await setup.sign_in(password if setup.needs_password() else None)
//! ```
//!
//! Errors are typed ([`PaccError`]): a digest mismatch is `PaccError.Integrity` with kind
//! `digest-mismatch`; nothing published is `Absent`; a network that failed is `Temporary`.
//! Cancel with [`Setup::cancel`] (from any thread) or by cancelling the foreign task: the
//! running step ends with `PaccError.Cancelled` and nothing half-sent remains. Each
//! [`PaccClient`] runs its own small Tokio runtime; calls may come from any thread.
//!
//! Tested from Python (pytest against real peers, `tests/python.rs`); the Kotlin and Swift
//! sources in `bindings/` are generated from the same library and checked to be current.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pacc::setup::{
    Answer, Authorization, CancelHandle, Confirmed, Event, Prepared, SetupError, SetupOptions,
    SetupSession,
};
use pacc::{Client, DnsConfig, Timeouts};
use pacc_proto::auth::Secret;
use pacc_proto::auth::select::{AuthPolicy, Decision, Method};
use pacc_proto::fetch::FailureClass as ErrorClass;
use pacc_proto::name::EmailAddress;
use pacc_proto::probe::{Offered, ProbeStatus};

uniffi::setup_scaffolding!();

/// Why a call failed. `kind` strings are the stable kinds of the CLI's JSON.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum PaccError {
    /// An argument was not usable (an address that is not one, an unreadable CA file…).
    #[error("{detail}")]
    InvalidInput {
        /// What was wrong.
        detail: String,
    },
    /// The provider publishes nothing for this domain (and the MX fallback found nothing).
    #[error("{kind}: {detail}")]
    Absent {
        /// Stable kind, e.g. `dns-nxdomain`, `http-status`.
        kind: String,
        /// What happened.
        detail: String,
    },
    /// Something was published but cannot be trusted (e.g. kind `digest-mismatch`, a bad
    /// certificate): nothing from it is used.
    #[error("{kind}: {detail}")]
    Integrity {
        /// Stable kind.
        kind: String,
        /// What happened.
        detail: String,
    },
    /// The network or a server failed; trying again later may work.
    #[error("{kind}: {detail}")]
    Temporary {
        /// Stable kind.
        kind: String,
        /// What happened.
        detail: String,
    },
    /// The confirmation was declined (`declined`) or listed other domains (`mismatch`);
    /// nothing was sent. After `mismatch` the session can be confirmed again.
    #[error("{kind}: {detail}")]
    NotConfirmed {
        /// `declined` or `mismatch`.
        kind: String,
        /// What happened.
        detail: String,
    },
    /// The call does not fit the session's state (e.g. `sign_in` before `confirm`, or a
    /// session whose step was cancelled).
    #[error("{detail}")]
    WrongState {
        /// What was expected.
        detail: String,
    },
    /// Cancelled; nothing more was sent.
    #[error("cancelled")]
    Cancelled,
}

/// How the client reaches the network.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientOptions {
    /// A DNS server (`IP:PORT`) instead of the system's resolver.
    pub dns_server: Option<String>,
    /// PEM files of extra CA certificates to trust besides the system's roots.
    pub ca_files: Vec<String>,
    /// The deadline of each whole operation, in milliseconds (0: 15 s).
    pub timeout_ms: u64,
    /// Where registered OAuth client ids are kept (default: pacc's data directory).
    pub data_dir: Option<String>,
}

/// Which sign-in method to prefer.
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum AuthPreference {
    /// OAuth where possible, falling back to the password where the provider allows it.
    Auto,
    /// OAuth only.
    Oauth,
    /// The password only.
    Password,
}

/// How the OAuth leg reaches the user.
#[derive(Debug, Clone, Copy, uniffi::Enum)]
pub enum AuthFlow {
    /// The listener gets `open-url`: open it in a browser; the session waits this long for
    /// the loopback redirect.
    Browser {
        /// Seconds.
        wait_seconds: u64,
    },
    /// The listener gets `device-code` (RFC 8628) where the server offers it.
    Device {
        /// Seconds.
        wait_seconds: u64,
    },
    /// No browser here: fail the OAuth leg at once (falls back to the password if allowed).
    NoWait,
}

/// A progress event of a setup.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SetupEvent {
    /// `lookup-started`, `lookup-finished`, `discovered`, `probed`, `open-url`,
    /// `device-code`, `o-auth-failed`, `fell-back`, `signing-in`, `signed-in`.
    pub event: String,
    /// For `open-url`: the authorization URL to open; for `device-code`: where to go.
    pub url: Option<String>,
    /// For `device-code`: the code the user types there.
    pub user_code: Option<String>,
    /// For `probed`, `fell-back`, `signed-in`: the service.
    pub service: Option<String>,
    /// The whole event as JSON (the `event` objects of `pacc rpc`).
    pub json: String,
}

/// Receives a setup's events (on a background thread).
#[uniffi::export(callback_interface)]
pub trait SetupListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: SetupEvent);
}

/// One service of a configuration.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ServiceInfo {
    /// `imap`, `pop3`, `submit`, `managesieve`, `jmap`, `caldav`, `carddav`, `webdav`.
    pub service: String,
    /// `host:port` or URL.
    pub target: String,
}

/// A verified configuration.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Discovery {
    /// Where its bytes came from.
    pub url: String,
    /// `well-known` or `mx-fallback`.
    pub method: String,
    /// The provider's name, if it gives one.
    pub provider: Option<String>,
    /// Its services.
    pub services: Vec<ServiceInfo>,
    /// The configuration as JSON.
    pub config_json: String,
}

/// What one server offers (no credential was sent).
#[derive(Debug, Clone, uniffi::Record)]
pub struct ProbeResult {
    /// The service.
    pub service: String,
    /// `host:port` or URL.
    pub target: String,
    /// Reached over verified TLS, and it talked.
    pub reachable: bool,
    /// `both`, `oauth`, `password` or `nothing` (empty when unreachable).
    pub usable: String,
    /// SASL mechanisms, or HTTP authentication schemes.
    pub mechanisms: Vec<String>,
    /// Why it is unreachable.
    pub error: Option<String>,
}

/// Hosts under one registrable domain.
#[derive(Debug, Clone, uniffi::Record)]
pub struct DomainHosts {
    /// The registrable domain.
    pub domain: String,
    /// The hosts that would receive a credential.
    pub hosts: Vec<String>,
}

/// One service in the plan.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PlannedService {
    /// The service.
    pub service: String,
    /// The host that receives the credential.
    pub host: String,
    /// `host:port` or URL.
    pub target: String,
    /// e.g. `password (PLAIN)`, `OAuth (OAUTHBEARER), else password (PLAIN)`.
    pub method: String,
}

/// A service that will not be set up.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SkippedService {
    /// The service.
    pub service: String,
    /// Why.
    pub reason: String,
}

/// What to show the user before anything is sent (SEC-1).
#[derive(Debug, Clone, uniffi::Record)]
pub struct Confirmation {
    /// The provider's name.
    pub provider: Option<String>,
    /// Where the configuration came from.
    pub source: String,
    /// Every host that would receive a credential, by registrable domain.
    pub domains: Vec<DomainHosts>,
    /// Per service: the host and method.
    pub plan: Vec<PlannedService>,
    /// Services that will not be set up, and why.
    pub skipped: Vec<SkippedService>,
    /// The whole request as text, ready to show (never truncated).
    pub text: String,
}

/// The confirmed session's needs.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ConfirmedInfo {
    /// Some service signs in with OAuth: call `authorize`.
    pub uses_oauth: bool,
    /// Some service needs the password (now; a failed OAuth leg may add more).
    pub needs_password: bool,
    /// A failed OAuth leg would fall back to the password for some service.
    pub can_fall_back: bool,
}

/// The OAuth leg's outcome.
#[derive(Debug, Clone, uniffi::Record)]
pub struct OAuthResult {
    /// `ok`, `failed` or `not-used`.
    pub status: String,
    /// Why not `ok` (stable kinds: `access-denied`, `browser-timeout`, `no-browser`, …).
    pub kind: Option<String>,
    /// In words.
    pub detail: Option<String>,
    /// Services that now use the password instead.
    pub fell_back: Vec<String>,
}

/// One service's sign-in.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ServiceResult {
    /// The service.
    pub service: String,
    /// `host:port` or URL.
    pub target: String,
    /// `oauth` or `password`.
    pub method: String,
    /// The mechanism or scheme.
    pub mechanism: String,
    /// Signed in.
    pub ok: bool,
    /// The failure class: `credentials`, `mechanism`, `account`, `authorization`,
    /// `temporary`, `transport`; `not-sent` when nothing was sent.
    pub failure: Option<String>,
    /// The server's or the connection's words.
    pub detail: Option<String>,
}

/// A finished setup.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SetupResult {
    /// Every service set up.
    pub ok: bool,
    /// The address (the username everywhere).
    pub address: String,
    /// Per service signed in to.
    pub services: Vec<ServiceResult>,
    /// Services not set up, and why.
    pub not_set_up: Vec<SkippedService>,
}

/// A PACC client: discovery, probes and setups share its DNS, trust anchors and deadline.
#[derive(uniffi::Object)]
pub struct PaccClient {
    rt: Arc<tokio::runtime::Runtime>,
    client: Arc<Client>,
    data_dir: Option<String>,
}

impl std::fmt::Debug for PaccClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaccClient").finish_non_exhaustive()
    }
}

fn invalid(detail: impl std::fmt::Display) -> PaccError {
    PaccError::InvalidInput {
        detail: detail.to_string(),
    }
}

fn parse_address(address: &str) -> Result<EmailAddress, PaccError> {
    EmailAddress::parse(address).map_err(invalid)
}

/// Run `work` on the client's runtime; dropping the returned future (the foreign side
/// cancelled) aborts it, with its connections.
async fn on_runtime<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, PaccError> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut handle = AbortOnDrop(rt.spawn(work));
    (&mut handle.0).await.map_err(|_| PaccError::Cancelled)
}

fn discovery_error(report: &pacc::Report) -> PaccError {
    let Err(e) = &report.outcome else {
        return PaccError::WrongState {
            detail: "discovery succeeded".into(),
        };
    };
    let kind = e.kind().to_owned();
    let detail = e.to_string();
    match e.class() {
        ErrorClass::Absent => PaccError::Absent { kind, detail },
        ErrorClass::Integrity => PaccError::Integrity { kind, detail },
        ErrorClass::Temporary => PaccError::Temporary { kind, detail },
    }
}

fn label<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn probe_result(p: &pacc_proto::probe::ServiceProbe) -> ProbeResult {
    let (reachable, usable, mechanisms, error) = match &p.status {
        ProbeStatus::Reachable {
            offered, usable, ..
        } => (
            true,
            label(usable),
            match offered {
                Offered::Text(c) => c.mechanisms.clone(),
                Offered::Http(h) => h.challenges.iter().map(|c| c.scheme.clone()).collect(),
            },
            None,
        ),
        ProbeStatus::Unreachable { kind, error } => (
            false,
            String::new(),
            Vec::new(),
            Some(format!("{kind}: {error}")),
        ),
    };
    ProbeResult {
        service: p.service.to_string(),
        target: p.target.clone(),
        reachable,
        usable,
        mechanisms,
        error,
    }
}

#[uniffi::export]
impl PaccClient {
    /// A client with these options (the system's roots are always trusted too;
    /// certificate verification cannot be turned off).
    #[uniffi::constructor]
    pub fn new(options: ClientOptions) -> Result<Arc<Self>, PaccError> {
        let mut builder = Client::builder();
        if let Some(dns) = &options.dns_server {
            builder = builder
                .dns(DnsConfig::Server(dns.parse().map_err(|_| {
                    invalid(format!("dns_server {dns:?} is not IP:PORT"))
                })?));
        }
        for f in &options.ca_files {
            builder = builder
                .add_trust_anchors_pem_file(std::path::Path::new(f))
                .map_err(invalid)?;
        }
        if options.timeout_ms > 0 {
            builder = builder.timeouts(Timeouts::with_overall(Duration::from_millis(
                options.timeout_ms,
            )));
        }
        let client = builder.build().map_err(invalid)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pacc")
            .enable_all()
            .build()
            .map_err(invalid)?;
        Ok(Arc::new(PaccClient {
            rt: Arc::new(rt),
            client: Arc::new(client),
            data_dir: options.data_dir,
        }))
    }

    /// Discover and verify the configuration for `address` (only its domain is used).
    pub async fn discover(&self, address: String) -> Result<Discovery, PaccError> {
        let address = parse_address(&address)?;
        let client = self.client.clone();
        let report = on_runtime(&self.rt, async move {
            client
                .discover_domain_until(address.domain(), client.deadline(), &|_| {})
                .await
        })
        .await?;
        let v = report
            .outcome
            .as_ref()
            .map_err(|_| discovery_error(&report))?;
        let config = &v.document.config;
        Ok(Discovery {
            url: v.url.clone(),
            method: label(&v.method),
            provider: config.provider_name().map(str::to_owned),
            services: config
                .protocols
                .iter()
                .map(|s| ServiceInfo {
                    service: s.kind.to_string(),
                    target: match &s.endpoint {
                        pacc_proto::document::Endpoint::Host { host, port, .. } => {
                            format!("{host}:{port}")
                        }
                        pacc_proto::document::Endpoint::Url { url } => url.to_string(),
                    },
                })
                .collect(),
            config_json: serde_json::to_string(config).unwrap_or_default(),
        })
    }

    /// Discover, then probe every service (no credential is sent).
    pub async fn probe(&self, address: String) -> Result<Vec<ProbeResult>, PaccError> {
        let address = parse_address(&address)?;
        let client = self.client.clone();
        let (report, probes) = on_runtime(&self.rt, async move {
            let deadline = client.deadline();
            let report = client
                .discover_domain_until(address.domain(), deadline, &|_| {})
                .await;
            let probes = match &report.outcome {
                Ok(v) => client.probe(&v.document.config, deadline, &|_| {}).await,
                Err(_) => Vec::new(),
            };
            (report, probes)
        })
        .await?;
        if report.outcome.is_err() {
            return Err(discovery_error(&report));
        }
        Ok(probes.iter().map(probe_result).collect())
    }

    /// A setup session for `address`; `listener` receives its events.
    pub fn setup(
        &self,
        address: String,
        preference: AuthPreference,
        listener: Option<Box<dyn SetupListener>>,
    ) -> Result<Arc<Setup>, PaccError> {
        let address = parse_address(&address)?;
        let mut options = SetupOptions {
            policy: match preference {
                AuthPreference::Auto => AuthPolicy::Auto,
                AuthPreference::Oauth => AuthPolicy::Oauth,
                AuthPreference::Password => AuthPolicy::Password,
            },
            ..SetupOptions::default()
        };
        if let Some(dir) = &self.data_dir {
            options.clients =
                pacc::oauth::ClientStore::at(std::path::Path::new(dir).join("clients.json"));
        }
        let (session, mut events) = SetupSession::new(self.client.clone(), address, options);
        let cancel = session.cancel_handle();
        if let Some(listener) = listener {
            self.rt.spawn(async move {
                while let Some(e) = events.next().await {
                    listener.on_event(setup_event(&e));
                }
            });
        }
        Ok(Arc::new(Setup {
            rt: self.rt.clone(),
            state: Mutex::new(State::New(Box::new(session))),
            cancel,
        }))
    }
}

fn setup_event(e: &Event) -> SetupEvent {
    let json = serde_json::to_value(e).unwrap_or_default();
    let get = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let service = get("service").or_else(|| {
        json.get("probe")
            .or_else(|| json.get("validation"))
            .and_then(|p| p.get("service"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    });
    SetupEvent {
        event: get("event").unwrap_or_default(),
        url: get("url").or_else(|| get("verification_uri")),
        user_code: get("user_code"),
        service,
        json: json.to_string(),
    }
}

enum State {
    New(Box<SetupSession>),
    Prepared(Box<Prepared>),
    Confirmed(Box<Confirmed>),
    /// Running, finished, or lost to a cancellation.
    Gone,
}

/// One setup: `prepare` → `confirm` → (`authorize`) → `sign_in`.
#[derive(uniffi::Object)]
pub struct Setup {
    rt: Arc<tokio::runtime::Runtime>,
    state: Mutex<State>,
    cancel: CancelHandle,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup").finish_non_exhaustive()
    }
}

fn cancelled(e: SetupError) -> PaccError {
    match e {
        SetupError::Discovery(report) => discovery_error(&report),
        _ => PaccError::Cancelled,
    }
}

fn confirmed_info(c: &Confirmed) -> ConfirmedInfo {
    ConfirmedInfo {
        uses_oauth: c.uses_oauth(),
        needs_password: c.needs_password(),
        can_fall_back: c.can_fall_back(),
    }
}

impl Setup {
    fn take(&self) -> State {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *s, State::Gone)
    }

    fn put(&self, state: State) {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    fn wrong(&self, state: State, expected: &str) -> PaccError {
        let what = match &state {
            State::New(_) => "not prepared yet (call prepare)",
            State::Prepared(_) => "not confirmed yet (call confirm)",
            State::Confirmed(_) => "already confirmed",
            State::Gone => "busy, finished or cancelled",
        };
        self.put(state);
        PaccError::WrongState {
            detail: format!("{expected}: the session is {what}"),
        }
    }

    fn confirm_with(&self, answer: Answer) -> Result<ConfirmedInfo, PaccError> {
        let prepared = match self.take() {
            State::Prepared(p) => p,
            other => return Err(self.wrong(other, "confirm")),
        };
        match prepared.confirm(answer) {
            Ok(c) => {
                let info = confirmed_info(&c);
                self.put(State::Confirmed(Box::new(c)));
                Ok(info)
            }
            Err(refused) => {
                let kind = match refused.error {
                    pacc_proto::auth::gate::GateError::Declined => "declined",
                    _ => "mismatch",
                };
                let detail = refused.error.to_string();
                self.put(State::Prepared(refused.prepared));
                Err(PaccError::NotConfirmed {
                    kind: kind.into(),
                    detail,
                })
            }
        }
    }
}

#[uniffi::export]
impl Setup {
    /// Discover, probe and plan. Nothing secret is sent. Returns what to show the user.
    pub async fn prepare(&self) -> Result<Confirmation, PaccError> {
        let session = match self.take() {
            State::New(s) => s,
            other => return Err(self.wrong(other, "prepare")),
        };
        let prepared = on_runtime(&self.rt, async move { session.prepare().await })
            .await?
            .map_err(cancelled)?;
        let Some(r) = prepared.confirmation() else {
            let why: Vec<String> = prepared
                .choices()
                .iter()
                .filter_map(|c| match &c.decision {
                    Decision::Skip { skipped } => Some(format!("{}: {skipped}", c.service)),
                    Decision::Use(_) => None,
                })
                .collect();
            return Err(PaccError::WrongState {
                detail: format!("no service can be signed in to ({})", why.join("; ")),
            });
        };
        let confirmation = Confirmation {
            provider: r.provider.clone(),
            source: r.source.clone(),
            domains: r
                .groups
                .iter()
                .map(|g| DomainHosts {
                    domain: g.domain.to_string(),
                    hosts: g.hosts.iter().map(|h| h.to_string()).collect(),
                })
                .collect(),
            plan: r
                .plan
                .iter()
                .map(|p| PlannedService {
                    service: p.service.to_string(),
                    host: p.host.to_string(),
                    target: p.target.clone(),
                    method: p.method.clone(),
                })
                .collect(),
            skipped: r
                .skipped
                .iter()
                .map(|s| SkippedService {
                    service: s.service.to_string(),
                    reason: s.reason.clone(),
                })
                .collect(),
            text: r.display(),
        };
        self.put(State::Prepared(Box::new(prepared)));
        Ok(confirmation)
    }

    /// The user's answer: `true` signs in to every host shown; `false` sends nothing.
    pub fn confirm(&self, accept: bool) -> Result<ConfirmedInfo, PaccError> {
        self.confirm_with(if accept { Answer::Yes } else { Answer::No })
    }

    /// Confirm for unattended runs: `domains` must be exactly the registrable domains shown.
    pub fn confirm_domains(&self, domains: Vec<String>) -> Result<ConfirmedInfo, PaccError> {
        self.confirm_with(Answer::Domains(domains))
    }

    /// Whether `sign_in` needs the password (after any OAuth fallback).
    pub fn needs_password(&self) -> bool {
        let s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        matches!(&*s, State::Confirmed(c) if c.needs_password())
    }

    /// The OAuth leg (when `uses_oauth`); the listener gets `open-url` or `device-code`.
    pub async fn authorize(&self, flow: AuthFlow) -> Result<OAuthResult, PaccError> {
        let mut confirmed = match self.take() {
            State::Confirmed(c) => c,
            other => return Err(self.wrong(other, "authorize")),
        };
        let how = match flow {
            AuthFlow::Browser { wait_seconds } => Authorization::Browser {
                wait: Duration::from_secs(wait_seconds),
            },
            AuthFlow::Device { wait_seconds } => Authorization::Device {
                wait: Duration::from_secs(wait_seconds),
            },
            AuthFlow::NoWait => Authorization::NoWait,
        };
        let (confirmed, report) = on_runtime(&self.rt, async move {
            let r = confirmed.authorize(how).await.cloned();
            (confirmed, r)
        })
        .await?;
        let report = report.map_err(cancelled)?;
        let result = OAuthResult {
            status: report.status.to_owned(),
            kind: report.kind.map(str::to_owned),
            detail: report.message.clone(),
            fell_back: confirmed
                .fallbacks()
                .iter()
                .map(|f| f.service.to_string())
                .collect(),
        };
        self.put(State::Confirmed(confirmed));
        Ok(result)
    }

    /// Sign in to every chosen service (`password` for those that use it) and finish.
    pub async fn sign_in(&self, password: Option<String>) -> Result<SetupResult, PaccError> {
        let confirmed = match self.take() {
            State::Confirmed(c) => c,
            other => return Err(self.wrong(other, "sign_in")),
        };
        if confirmed.needs_password() && password.as_deref().is_none_or(str::is_empty) {
            self.put(State::Confirmed(confirmed));
            return Err(invalid("this setup needs the password"));
        }
        let finished = on_runtime(&self.rt, async move {
            confirmed.sign_in(password.map(Secret::new)).await
        })
        .await?
        .map_err(cancelled)?;
        Ok(SetupResult {
            ok: finished.is_ok(),
            address: finished.prepared().address().as_str().to_owned(),
            services: finished
                .validations()
                .iter()
                .map(|v| {
                    let (method, mechanism) = match &v.method {
                        Method::Oauth { mechanism } => ("oauth", mechanism.clone()),
                        Method::Password { mechanism } => ("password", mechanism.clone()),
                    };
                    let (ok, failure, detail) = match &v.outcome {
                        pacc::signin::ValidationOutcome::Ok => (true, None, None),
                        pacc::signin::ValidationOutcome::Failed { class, message } => {
                            (false, Some(class.name().to_owned()), Some(message.clone()))
                        }
                        pacc::signin::ValidationOutcome::NotSent { reason } => {
                            (false, Some("not-sent".to_owned()), Some(reason.clone()))
                        }
                    };
                    ServiceResult {
                        service: v.service.to_string(),
                        target: v.target.clone(),
                        method: method.to_owned(),
                        mechanism,
                        ok,
                        failure,
                        detail,
                    }
                })
                .collect(),
            not_set_up: finished
                .not_set_up()
                .into_iter()
                .map(|n| SkippedService {
                    service: n.service.to_string(),
                    reason: n.reason,
                })
                .collect(),
        })
    }

    /// Cancel the running step (and any later one), from any thread.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}
