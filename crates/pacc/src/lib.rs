//! # pacc: set up mail, calendar and contacts accounts from an email address (PACC)
//!
//! A person types only their address; pacc finds the configuration their provider
//! publishes (draft-ietf-mailmaint-pacc), verifies it, checks every server, shows which
//! domains would receive their credentials, signs in with OAuth or the password, and keeps
//! the account. This crate is the network shell around the sans-IO protocol core
//! [`pacc_proto`]; apps that must use their own network stack drive that core directly
//! (see *Bring your own network* below).
//!
//! ## The whole flow: [`setup::SetupSession`]
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use pacc::setup::{Answer, Authorization, SetupOptions, SetupSession};
//! use pacc::{Client, DnsConfig};
//! use pacc_proto::{auth::Secret, name::EmailAddress};
//!
//! let client = Arc::new(Client::builder().dns(DnsConfig::System).build()?);
//! let address = EmailAddress::parse("alice@example.com")?;
//! let (session, mut events) = SetupSession::new(client, address, SetupOptions::default());
//! tokio::spawn(async move {
//!     // Progress, the OAuth URL to open (`Event::OpenUrl`), the device code…
//!     while let Some(event) = events.next().await {
//!         println!("{event:?}");
//!     }
//! });
//! // 1. Discover, probe, plan. Nothing secret has been sent.
//! let prepared = session.prepare().await?;
//! let request = prepared.confirmation().ok_or("no service can be signed in to")?;
//! println!("{}", request.display()); // every host that would get a credential
//! // 2. The user's answer; refusing sends nothing.
//! let mut confirmed = prepared.confirm(Answer::Yes).map_err(|r| r.error)?;
//! // 3. OAuth where offered (falls back to the password where allowed), then sign in.
//! if confirmed.uses_oauth() {
//!     confirmed.authorize(Authorization::Browser { wait: std::time::Duration::from_secs(300) }).await?;
//! }
//! let password = confirmed.needs_password().then(|| Secret::new("…".to_owned()));
//! let finished = confirmed.sign_in(password).await?;
//! for account in finished.accounts() {
//!     println!("{} as {}", account.service, account.username);
//! }
//! // 4. Keep it (the secrets go to the system keyring with the `keyring` feature).
//! let (saved, _account) = finished.save(&pacc::setup::SaveOptions::default()).await;
//! # let _ = saved; Ok(()) }
//! ```
//!
//! The same program, complete, is `examples/setup.rs`; the test suite runs it against real
//! servers (Dovecot behind a published, verified configuration; a tampered one; a stalled
//! one, cancelled). Cancel a session with [`setup::CancelHandle`] or by dropping the step's
//! future: nothing half-sent remains. One deadline ([`Timeouts::overall`]) covers every
//! step; the time the app holds the session between steps (the user reading, typing) is not
//! counted.
//!
//! The parts, for apps that need only some: [`Client::discover`] (find and verify),
//! [`Client::probe`] (what each server offers; no credential sent),
//! [`Client::oauth_metadata`], [`Client::oauth_authorize`], [`Client::sign_in`],
//! [`accounts`] (saved accounts, [`accounts::access_token`]), [`serve`] (the provider side).
//!
//! ## Discovery
//!
//! [`Client::discover`] fetches
//! `https://ua-auto-config.<domain>/.well-known/user-agent-configuration.json` over TLS 1.3
//! with full certificate validation **while** it looks up the digest record
//! `_ua-auto-config.<domain>` in DNS, checks the exact bytes against the digest, and only
//! then reads the JSON. The result is a [`Report`]: the verified configuration or a precise,
//! classified error (`kind()`, `class()`: absent, integrity, temporary), plus the trail.
//! It does not follow redirects, accept TLS below 1.3 for the document, skip or override
//! certificate verification (there is no API for it), or send cookies, credentials or the
//! email address anywhere during discovery.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use pacc::{Client, DnsConfig};
//! use pacc_proto::name::EmailAddress;
//!
//! let client = Client::builder().dns(DnsConfig::System).build()?;
//! let address = EmailAddress::parse("alice@example.com")?;
//! let report = client.discover(&address).await;
//! match &report.outcome {
//!     Ok(verified) => println!("{} services", verified.document.config.protocols.len()),
//!     Err(e) => println!("{} ({:?}): {e}", e.kind(), e.class()),
//! }
//! # Ok(()) }
//! ```
//!
//! ## Bring your own network
//!
//! On phones the app's own HTTP and DNS stack must carry every request (proxies, VPNs, the
//! platform trust store). [`pacc_proto`]'s machines do no I/O: [`pacc_proto::discovery::Discovery`]
//! hands out [`pacc_proto::discovery::Request`]s (TXT, MX, HTTPS GET) and takes the answers;
//! [`pacc_proto::probe::line_probe`] says what to write and read on a mail server's
//! connection. `examples/own_network.rs` answers them with hickory-proto over a UDP socket,
//! rustls with its own root store and hand-written HTTP/1.1, and states what the app's stack
//! must guarantee; the test suite runs it against the same servers.
//!
//! ## Features
//!
//! - `keyring` (default): keep passwords and refresh tokens in the system keyring (Secret
//!   Service on Linux, through the `keyring` crate). Without it nothing secret is ever
//!   stored; [`accounts::Secrets::Keyring`] reports the keyring as unavailable. Embedders on
//!   mobile platforms build with `default-features = false` and keep secrets in the
//!   platform's store.
//!
//! Nothing else is optional: discovery, probes, OAuth and sign-in need tokio, rustls (ring),
//! hyper and hickory-resolver, and nothing more. The testbed, the CLI and the bindings are
//! other crates (`pacc-testbed`, `pacc-cli`, `pacc-ffi`).
#![deny(missing_docs)]

pub mod accounts;
mod dns;
mod https;
pub mod oauth;
mod probe;
pub mod serve;
pub mod setup;
pub mod signin;
mod tls;

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use pacc_proto::discovery::{Discovery, DnsFailure, Options, Request, RequestId, Response, Step};
use pacc_proto::name::{Domain, EmailAddress};
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;

pub use dns::{DnsConfig, TxtAnswer};
pub use pacc_proto;
pub use pacc_proto::discovery::Report;
pub use tls::read_pem_certificates;

/// The `User-Agent` sent on every request (it carries no user data).
pub const USER_AGENT_VALUE: &str = concat!("pacc/", env!("CARGO_PKG_VERSION"));

/// Deadlines (RET-10, P-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole discovery.
    pub overall: Duration,
    /// One DNS attempt (two attempts are made).
    pub dns: Duration,
    /// TCP connect, all addresses.
    pub connect: Duration,
    /// The TLS handshake.
    pub tls: Duration,
    /// From request sent to the last body byte.
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            overall: Duration::from_secs(15),
            dns: Duration::from_secs(5),
            connect: Duration::from_secs(10),
            tls: Duration::from_secs(10),
            response: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// Defaults, with the overall deadline set to `overall` and no step longer than it.
    pub fn with_overall(overall: Duration) -> Self {
        let d = Timeouts::default();
        Timeouts {
            overall,
            dns: d.dns.min(overall),
            connect: d.connect.min(overall),
            tls: d.tls.min(overall),
            response: d.response.min(overall),
        }
    }
}

/// Why a [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The DNS configuration could not be used.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// A trust anchor could not be read or used.
    #[error("trust anchor: {0}")]
    TrustAnchor(String),
}

/// Something the client is doing, for progress displays.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// A DNS lookup or fetch started.
    Started {
        /// `txt` or `fetch`.
        step: &'static str,
        /// Name or URL.
        target: String,
    },
    /// It finished.
    Finished {
        /// `txt` or `fetch`.
        step: &'static str,
        /// Name or URL.
        target: String,
        /// How long it took.
        elapsed: Duration,
    },
}

/// The requests the machine wants now, those on the longest path first: a fetch starts
/// with its address lookup and then needs TCP and TLS, an MX answer leads to more lookups,
/// while a TXT answer is only compared at the end. So the address and MX questions leave
/// before the TXT ones (the digest, MTA-STS).
fn first_things_first(machine: &mut Discovery) -> Vec<(RequestId, Request)> {
    let mut batch = Vec::new();
    while let Some(r) = machine.poll_request() {
        batch.push(r);
    }
    batch.sort_by_key(|(_, r)| match r {
        Request::Fetch { .. } => 0,
        Request::Mx { .. } => 1,
        _ => 2,
    });
    batch
}

/// Cryptographically secure random bytes (the OS generator through ring).
fn fill_random(buf: &mut [u8]) {
    use std::io::Read as _;
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .is_err()
    {
        // Never fall back to anything weaker than the kernel's generator.
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = f.read_exact(buf);
        }
    }
}

fn dns_timeout() -> DnsFailure {
    DnsFailure::Temporary {
        detail: "no answer in time".to_owned(),
    }
}

/// Configures a [`Client`].
#[derive(Debug, Default)]
pub struct ClientBuilder {
    dns: DnsConfig,
    extra_roots: Vec<CertificateDer<'static>>,
    timeouts: Timeouts,
    options: Options,
}

impl ClientBuilder {
    /// Where DNS questions go (default: the system configuration).
    pub fn dns(mut self, dns: DnsConfig) -> Self {
        self.dns = dns;
        self
    }

    /// Trust one more CA certificate (DER), in addition to the system's roots.
    pub fn add_trust_anchor(mut self, cert: CertificateDer<'static>) -> Self {
        self.extra_roots.push(cert);
        self
    }

    /// Trust every certificate in a PEM file, in addition to the system's roots.
    pub fn add_trust_anchors_pem_file(mut self, path: &Path) -> Result<Self, ClientError> {
        self.extra_roots.extend(read_pem_certificates(path)?);
        Ok(self)
    }

    /// Set the deadlines.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Discovery options: MX fallback on or off, speculation, MX URI strategy (Q-1).
    pub fn discovery_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Build the client. Reads the system's trust anchors and DNS configuration.
    pub fn build(self) -> Result<Client, ClientError> {
        // The system's roots are read in the background (see `tls::TrustAnchors`); a
        // system without any, and no extra ones, fails the first TLS handshake with
        // `certificate-untrusted` ("no trust anchors").
        let anchors = tls::TrustAnchors::new(true, &self.extra_roots)?;
        let dns = dns::Dns::new(&self.dns, self.timeouts.dns)?;
        Ok(Client {
            dns,
            anchors,
            timeouts: self.timeouts,
            options: self.options,
        })
    }
}

/// A PACC client. Cheap to clone? No; create one per run and share it by reference.
pub struct Client {
    dns: dns::Dns,
    anchors: tls::TrustAnchors,
    timeouts: Timeouts,
    options: Options,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with the system's DNS and trust anchors and default deadlines.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The deadlines in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The digest records published for `domain` (`_ua-auto-config.<domain>` TXT) with
    /// their TTL, from one of the zone's authoritative servers where they can be found (for
    /// `pacc rotate`: how long resolvers may keep the old records).
    pub async fn published_records(&self, domain: &Domain) -> Result<TxtAnswer, DnsFailure> {
        let owner = pacc_proto::discovery::digest_owner(domain);
        match tokio::time::timeout(self.timeouts.overall, self.dns.txt_with_ttl(&owner)).await {
            Ok(r) => r,
            Err(_) => Err(DnsFailure::Temporary {
                detail: format!("no answer within {:?}", self.timeouts.overall),
            }),
        }
    }

    /// Discover and verify the configuration for `address`. Only its domain is used; the
    /// address itself is never sent (SEC-10).
    pub async fn discover(&self, address: &EmailAddress) -> Report {
        self.discover_domain(address.domain(), &|_| {}).await
    }

    /// Discover for a domain, reporting progress, within the client's overall deadline.
    pub async fn discover_domain(
        &self,
        domain: &Domain,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Report {
        self.discover_domain_until(domain, self.deadline(), progress)
            .await
    }

    /// The instant the client's overall timeout ends if a run starts now. A command that
    /// runs several phases (discover, probe, sign in) takes this once and passes it to each
    /// phase, so the whole command shares one deadline.
    pub fn deadline(&self) -> std::time::Instant {
        std::time::Instant::now() + self.timeouts.overall
    }

    /// Discover for a domain, reporting progress, finishing by `deadline` (typically from
    /// [`Client::deadline`], shared with the phases that follow).
    pub async fn discover_domain_until(
        &self,
        domain: &Domain,
        deadline: std::time::Instant,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Report {
        let deadline = Instant::from_std(deadline);
        // Beside the discovery: if no DNS server can be reached at all, say so at once.
        let run = self.discover_inner(domain, deadline, progress);
        let mut report = tokio::select! {
            biased;
            report = run => report,
            detail = self.dns.unreachable() => Report {
                domain: domain.clone(),
                url: pacc_proto::discovery::config_url(domain),
                digest_owner: pacc_proto::discovery::digest_owner(domain),
                outcome: Err(pacc_proto::discovery::DiscoveryError::DnsUnreachable { detail }),
                records: Vec::new(),
                response: None,
                fallback: None,
                trail: Vec::new(),
            },
        };
        // A misspelt domain: say that it does not exist rather than that it publishes
        // nothing (one more question, only when the answer was "absent").
        if let Err(e) = &report.outcome
            && e.class() == pacc_proto::fetch::FailureClass::Absent
            && let Ok(Some(false)) = tokio::time::timeout_at(
                deadline.min(Instant::now() + self.timeouts.dns),
                self.dns.exists(domain.as_str()),
            )
            .await
        {
            let primary = Box::new(e.clone());
            report.outcome = Err(pacc_proto::discovery::DiscoveryError::DomainNotFound {
                domain: domain.to_string(),
                primary,
            });
        }
        match &report.outcome {
            Ok(v) => tracing::debug!(
                "verified {} against {} ({:?}; {} service(s))",
                v.url,
                pacc_proto::name::escape_for_terminal(&v.record),
                v.method,
                v.document.config.protocols.len()
            ),
            Err(e) => tracing::debug!(
                "discovery ended: {} ({:?}): {}",
                e.kind(),
                e.class(),
                pacc_proto::name::escape_for_terminal(&e.to_string())
            ),
        }
        report
    }

    async fn discover_inner(
        &self,
        domain: &Domain,
        deadline: Instant,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Report {
        let mut machine = Discovery::with_options(domain.clone(), self.options);
        let mut running = FuturesUnordered::new();
        loop {
            for (id, request) in first_things_first(&mut machine) {
                running.push(self.perform(id, request, deadline, progress));
            }
            if let Step::Done(report) = machine.step() {
                return *report;
            }
            // Deciding may have started new requests (the fallback, its hosts).
            for (id, request) in first_things_first(&mut machine) {
                running.push(self.perform(id, request, deadline, progress));
            }
            match tokio::time::timeout_at(deadline, running.next()).await {
                Ok(Some((id, response, elapsed))) => machine.handle(id, response, elapsed),
                // Every request honours the deadline, so these are belt and braces.
                Ok(None) | Err(_) => {
                    if let Some(report) = machine.expire() {
                        return report;
                    }
                }
            }
        }
    }

    /// Probe every service of a verified configuration concurrently (spec §2.5), finishing
    /// by `deadline`; `on_result` is called as each result arrives. No credential is sent.
    pub async fn probe(
        &self,
        config: &pacc_proto::document::Config,
        deadline: std::time::Instant,
        on_result: &(dyn Fn(&pacc_proto::probe::ServiceProbe) + Sync),
    ) -> Vec<pacc_proto::probe::ServiceProbe> {
        let ctx = self.ctx();
        probe::probe_all(&ctx, config, Instant::from_std(deadline), on_result, false)
            .await
            .0
    }

    /// [`Client::probe`], keeping each connection that ended idle for the sign-in.
    pub(crate) async fn probe_keeping(
        &self,
        config: &pacc_proto::document::Config,
        deadline: std::time::Instant,
        on_result: &(dyn Fn(&pacc_proto::probe::ServiceProbe) + Sync),
    ) -> (Vec<pacc_proto::probe::ServiceProbe>, Vec<probe::Parked>) {
        let ctx = self.ctx();
        probe::probe_all(&ctx, config, Instant::from_std(deadline), on_result, true).await
    }

    /// [`Client::sign_in`] on the connections `probe_keeping` kept, where still fresh.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn sign_in_on(
        &self,
        config: &pacc_proto::document::Config,
        choices: &[pacc_proto::auth::select::Choice],
        username: &str,
        credentials: &signin::Credentials,
        confirmed: &pacc_proto::auth::gate::Confirmed,
        parked: Vec<probe::Parked>,
        idle_limit: Duration,
        deadline: std::time::Instant,
    ) -> Vec<signin::Validation> {
        let ctx = self.ctx();
        signin::sign_in_all(
            &ctx,
            config,
            choices,
            username,
            credentials,
            confirmed,
            parked,
            idle_limit,
            Instant::from_std(deadline),
        )
        .await
    }

    /// Sign in to every service `choices` selected, concurrently, finishing by `deadline`:
    /// only to hosts `confirmed` names (SEC-1), only over verified TLS (W-4), with the full
    /// address as username (W-1), once each (V-4).
    #[allow(clippy::too_many_arguments)]
    pub async fn sign_in(
        &self,
        config: &pacc_proto::document::Config,
        choices: &[pacc_proto::auth::select::Choice],
        username: &str,
        credentials: &signin::Credentials,
        confirmed: &pacc_proto::auth::gate::Confirmed,
        deadline: std::time::Instant,
    ) -> Vec<signin::Validation> {
        self.sign_in_on(
            config,
            choices,
            username,
            credentials,
            confirmed,
            Vec::new(),
            Duration::ZERO,
            deadline,
        )
        .await
    }

    /// Fetch and check the OAuth authorization server metadata of `issuer` (O-2, O-3, Q-12)
    /// by `deadline`. Run this before the confirmation: an unusable or mismatching issuer is
    /// refused before anything else happens.
    pub async fn oauth_metadata(
        &self,
        issuer: &str,
        deadline: std::time::Instant,
    ) -> Result<pacc_proto::auth::oauth::CheckedMetadata, oauth::OAuthError> {
        let ctx = self.ctx();
        oauth::metadata(&ctx, issuer, Instant::from_std(deadline)).await
    }

    /// The authorization servers an HTTP resource accepts tokens from, from the RFC 9728
    /// metadata its `WWW-Authenticate` challenge pointed to (`resource_metadata`), by
    /// `deadline` (O-14). No credential is sent; redirects are not followed.
    pub async fn resource_authorization_servers(
        &self,
        metadata_url: &str,
        deadline: std::time::Instant,
    ) -> Result<Vec<String>, String> {
        let ctx = self.ctx();
        match https::exchange(&ctx, "GET", metadata_url, None, Instant::from_std(deadline)).await {
            Ok((200, body)) => pacc_proto::auth::oauth::protected_resource_servers(&body),
            Ok((status, _)) => Err(format!("{metadata_url} answered HTTP {status}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// GET `url` (HTTPS, TLS 1.2+, certificate verified, no redirect followed) by
    /// `deadline`: the status and the body (at most 64 KiB). For the provider checks of
    /// other, obsolete locations; discovery itself never uses it.
    pub async fn get(
        &self,
        url: &str,
        deadline: std::time::Instant,
    ) -> Result<(u16, Vec<u8>), pacc_proto::fetch::FetchError> {
        let ctx = self.ctx();
        https::exchange(&ctx, "GET", url, None, Instant::from_std(deadline)).await
    }

    fn ctx(&self) -> https::FetchContext<'_> {
        https::FetchContext {
            dns: &self.dns,
            anchors: &self.anchors,
            timeouts: &self.timeouts,
        }
    }

    /// The authorization-code flow with PKCE through a loopback redirect: registers the
    /// client once per issuer (kept in `store`), calls `open` with the authorization URL
    /// (open a browser or print it), waits up to `wait` for the redirect, checks `state` and
    /// `iss`, and exchanges the code. Every endpoint must be among the `confirmed` hosts.
    /// Registration and the exchange finish by `deadline` plus the time the browser step
    /// took (the only addition to the caller's deadline). Returns the tokens and the client
    /// id.
    #[allow(clippy::too_many_arguments)]
    pub async fn oauth_authorize(
        &self,
        metadata: &pacc_proto::auth::oauth::Metadata,
        confirmed: &pacc_proto::auth::gate::Confirmed,
        scope: &str,
        resources: &[String],
        store: &oauth::ClientStore,
        open: oauth::OpenUrl<'_>,
        wait: Duration,
        deadline: std::time::Instant,
    ) -> Result<oauth::Authorized, oauth::OAuthError> {
        let ctx = https::FetchContext {
            dns: &self.dns,
            anchors: &self.anchors,
            timeouts: &self.timeouts,
        };
        let mut random = |buf: &mut [u8]| fill_random(buf);
        oauth::authorize(
            &ctx,
            metadata,
            confirmed,
            scope,
            resources,
            store,
            &mut random,
            open,
            wait,
            Instant::from_std(deadline),
        )
        .await
    }

    /// The device authorization grant (RFC 8628) for machines without a browser: `show` is
    /// called with the verification URI and user code; the token endpoint is polled until
    /// the user signed in elsewhere, refused, the codes expired or `wait` passed. Every
    /// endpoint must be among the `confirmed` hosts.
    #[allow(clippy::too_many_arguments)]
    pub async fn oauth_device_authorize(
        &self,
        metadata: &pacc_proto::auth::oauth::Metadata,
        confirmed: &pacc_proto::auth::gate::Confirmed,
        scope: &str,
        resources: &[String],
        store: &oauth::ClientStore,
        show: oauth::ShowDeviceCode<'_>,
        wait: Duration,
        deadline: std::time::Instant,
    ) -> Result<oauth::Authorized, oauth::OAuthError> {
        let ctx = self.ctx();
        oauth::device_authorize(
            &ctx,
            metadata,
            confirmed,
            scope,
            resources,
            store,
            show,
            wait,
            Instant::from_std(deadline),
        )
        .await
    }

    /// A new access token from a refresh token (O-11), by `deadline`.
    pub async fn oauth_refresh(
        &self,
        metadata: &pacc_proto::auth::oauth::Metadata,
        confirmed: &pacc_proto::auth::gate::Confirmed,
        client_id: &str,
        refresh_token: &pacc_proto::auth::Secret,
        deadline: std::time::Instant,
    ) -> Result<pacc_proto::auth::oauth::Tokens, oauth::OAuthError> {
        let ctx = https::FetchContext {
            dns: &self.dns,
            anchors: &self.anchors,
            timeouts: &self.timeouts,
        };
        oauth::refresh(
            &ctx,
            metadata,
            confirmed,
            client_id,
            refresh_token,
            Instant::from_std(deadline),
        )
        .await
    }

    async fn perform(
        &self,
        id: RequestId,
        request: Request,
        deadline: Instant,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> (RequestId, Response, Duration) {
        let started = Instant::now();
        let (step, target) = match &request {
            Request::Txt { name } => ("txt", name.clone()),
            Request::Mx { name } => ("mx", name.clone()),
            Request::Fetch { url, .. } => ("fetch", url.clone()),
            _ => ("other", String::new()),
        };
        progress(Progress::Started {
            step,
            target: target.clone(),
        });
        let response = match request {
            Request::Txt { name } => {
                let r = tokio::time::timeout_at(
                    deadline.min(started + self.timeouts.dns * 2),
                    self.dns.txt(&name),
                )
                .await
                .unwrap_or_else(|_| Err(dns_timeout()));
                Response::Txt(r)
            }
            Request::Mx { name } => {
                let r = tokio::time::timeout_at(
                    deadline.min(started + self.timeouts.dns * 2),
                    self.dns.mx(&name),
                )
                .await
                .unwrap_or_else(|_| Err(dns_timeout()));
                Response::Mx(r)
            }
            Request::Fetch {
                url,
                host,
                tls13_only,
            } => {
                let ctx = https::FetchContext {
                    dns: &self.dns,
                    anchors: &self.anchors,
                    timeouts: &self.timeouts,
                };
                Response::Fetch(https::get(&ctx, &url, &host, tls13_only, deadline).await)
            }
            _ => Response::Fetch(Err(pacc_proto::fetch::FetchError::Protocol {
                host: String::new(),
                detail: "internal: unsupported request".to_owned(),
            })),
        };
        let elapsed = started.elapsed();
        if tracing::enabled!(tracing::Level::DEBUG) {
            // The trail's line, with the error kind, the MX count and the peer added.
            let summary = response.summary();
            let result = match &response {
                Response::Mx(Ok(rrs)) => format!("{} MX: {summary}", rrs.len()),
                Response::Txt(Err(e)) | Response::Mx(Err(e)) => format!("{} ({summary})", e.kind()),
                Response::Fetch(Ok(b)) => format!("{summary}, from {}", b.peer),
                Response::Fetch(Err(e)) => format!("{} ({summary})", e.kind()),
                _ => summary,
            };
            tracing::debug!(
                "{step} {} → {} ({} ms)",
                pacc_proto::name::escape_for_terminal(&target),
                pacc_proto::name::escape_for_terminal(&result),
                elapsed.as_millis()
            );
        }
        progress(Progress::Finished {
            step,
            target,
            elapsed,
        });
        (id, response, elapsed)
    }
}
