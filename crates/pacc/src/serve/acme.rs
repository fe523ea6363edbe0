//! ACME (RFC 8555) for `serve`: a certificate for every domain of the description
//! (`ua-auto-config.<domain>`, and `mta-sts.<domain>` where a policy is served), proved by
//! TLS-ALPN-01 (RFC 8737) on the serving listener itself, so no port 80 is needed.
//!
//! The protocol is instant-acme's; this module decides what to order and when:
//!
//! - **When.** A name is due when nothing valid covers it, or when the certificate
//!   presented for it has used two thirds of its lifetime, minus a per-domain jitter of up
//!   to a tenth of the lifetime (so a fleet issued on one day does not renew in one burst;
//!   the jitter is derived from the domain, so a restart does not reshuffle it).
//! - **How often.** At most `orders_per_hour` new orders in any hour (the times of recent
//!   orders are stored, so a restart does not reset the budget), at most [`PARALLEL`] at a
//!   time, each within [`ORDER_DEADLINE`].
//! - **When it fails.** The domain waits 1 minute, then 2, 4 … up to a day (±10 %), and
//!   keeps whatever certificate it had: a failed renewal never takes a working certificate
//!   away. The failure count, the time of the next attempt and the CA's error are stored.
//! - **Swap.** An issued certificate is written to `<storage>/certs/<domain>.pem` (chain
//!   and key, mode 0600, written aside and renamed) and then presented to every new
//!   handshake; connections already open keep theirs.
//!
//! Storage (`[acme] storage`, mode 0700): `account.json` (the account key and URL, with the
//! directory it belongs to), `certs/`, and `schedule.json`. Everything there survives a
//! restart; stored certificates are served before the CA is asked anything.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    ExternalAccountKey, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::{AcmePlan, Candidate, Challenges, Counters, State, certified, unix_now};
use pacc_proto::provider::EabKey;

/// Orders worked on at the same time.
pub(super) const PARALLEL: usize = 4;
/// One order, from creation to the certificate in hand.
pub(super) const ORDER_DEADLINE: Duration = Duration::from_secs(120);
/// One HTTP exchange with the CA.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Largest response accepted from the CA (a certificate chain is a few KiB).
const MAX_RESPONSE: usize = 1024 * 1024;
/// The longest the manager sleeps without looking again (a reload also wakes it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// First and longest wait after a failed order.
const BACKOFF_FIRST: i64 = 60;
const BACKOFF_MAX: i64 = 86_400;

/// What the manager shares with the server.
pub(super) struct Shared {
    pub(super) state: Arc<RwLock<Arc<State>>>,
    pub(super) challenges: Challenges,
    pub(super) counters: Arc<Counters>,
}

/// Why an ACME step failed, for the log and `schedule.json`.
#[derive(Debug, thiserror::Error)]
enum AcmeError {
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    #[error("storage {path}: {error}")]
    Storage {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

fn storage_err(path: &Path) -> impl FnOnce(std::io::Error) -> AcmeError + '_ {
    move |error| AcmeError::Storage {
        path: path.to_path_buf(),
        error,
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Schedule {
    /// When recent orders were placed (Unix seconds; the last hour's are kept).
    #[serde(default)]
    orders: Vec<i64>,
    /// Domains whose last order failed.
    #[serde(default)]
    failures: BTreeMap<String, Failure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failure {
    count: u32,
    retry_at: i64,
    error: String,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// Write `bytes` to `path` by way of a temporary file beside it (mode 0600), then rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).map_err(storage_err(&tmp))?;
    f.write_all(bytes).map_err(storage_err(&tmp))?;
    f.sync_all().map_err(storage_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(storage_err(path))
}

fn private_dir(dir: &Path) -> Result<(), AcmeError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir).map_err(storage_err(dir))
}

impl Schedule {
    fn path(storage: &Path) -> PathBuf {
        storage.join("schedule.json")
    }

    /// The stored schedule; an unreadable one is logged and started afresh.
    fn load(storage: &Path) -> Schedule {
        let path = Self::path(storage);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ACME schedule unreadable; starting afresh");
                Schedule::default()
            }),
            Err(_) => Schedule::default(),
        }
    }

    fn save(&self, storage: &Path) -> Result<(), AcmeError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| AcmeError::Other(e.to_string()))?;
        write_private(&Self::path(storage), &bytes)
    }

    /// Orders still counting against the hourly budget.
    fn recent(&mut self, now: i64) -> usize {
        self.orders.retain(|t| now - *t < 3600);
        self.orders.len()
    }
}

/// A number in `0..1` fixed by `key`, for jitter that a restart does not change.
fn fraction(key: &str, salt: u64) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    salt.hash(&mut h);
    (h.finish() % 10_000) as f64 / 10_000.0
}

/// When the certificate of `domain`, valid from `not_before` to `not_after`, is renewed:
/// at two thirds of its lifetime, less up to a tenth of it.
fn renewal_time(domain: &str, not_before: i64, not_after: i64) -> i64 {
    let life = (not_after - not_before).max(0);
    let jitter = (life as f64 / 10.0 * fraction(domain, 0)) as i64;
    not_after - life / 3 - jitter
}

/// The wait after the `count`-th failure in a row: 1 min doubling to a day, ±10 %.
fn backoff(domain: &str, count: u32) -> i64 {
    let base = BACKOFF_FIRST
        .saturating_mul(1i64 << count.saturating_sub(1).min(20))
        .min(BACKOFF_MAX);
    let spread = 0.9 + 0.2 * fraction(domain, u64::from(count));
    (base as f64 * spread) as i64
}

/// When `names` next need an order given what `state` presents (`now` if something is
/// missing).
fn due_at(state: &State, domain: &str, names: &[String], now: i64) -> i64 {
    let mut due = i64::MAX;
    for name in names {
        let Some(c) = state.others.best(name, now) else {
            return now;
        };
        due = due.min(renewal_time(domain, c.not_before, c.not_after));
    }
    due
}

/// The account for `plan`'s directory: the stored one, else a new one (stored at once).
async fn account(plan: &AcmePlan, http: &Http) -> Result<Account, AcmeError> {
    let path = plan.storage.join("account.json");
    if let Ok(bytes) = std::fs::read(&path) {
        match serde_json::from_slice::<StoredAccount>(&bytes) {
            Ok(stored) if stored.directory == plan.spec.directory => {
                let account = Account::builder_with_http(Box::new(http.clone()))
                    .from_credentials(stored.credentials)
                    .await?;
                return Ok(account);
            }
            Ok(stored) => tracing::info!(
                old = stored.directory,
                new = plan.spec.directory,
                "ACME directory changed; creating an account there"
            ),
            Err(e) => {
                return Err(AcmeError::Other(format!(
                    "{}: not an account pacc stored ({e}); move it away to start a new account",
                    path.display()
                )));
            }
        }
    }
    let eab = match &plan.spec.eab {
        None => None,
        Some((kid, key)) => {
            let text = match key {
                EabKey::Inline(k) => k.clone(),
                EabKey::File(_) => {
                    let file = plan.eab_key_file.clone().unwrap_or_default();
                    std::fs::read_to_string(&file)
                        .map_err(storage_err(&file))?
                        .trim()
                        .to_owned()
                }
            };
            Some(ExternalAccountKey::new(kid.clone(), &eab_key_bytes(&text)?))
        }
    };
    let contact: Vec<&str> = plan.spec.contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(Box::new(http.clone()))
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            plan.spec.directory.clone(),
            eab.as_ref(),
        )
        .await?;
    let stored = serde_json::to_vec_pretty(&StoredAccount {
        directory: plan.spec.directory.clone(),
        credentials,
    })
    .map_err(|e| AcmeError::Other(e.to_string()))?;
    write_private(&path, &stored)?;
    tracing::info!(id = account.id(), "ACME account created");
    Ok(account)
}

/// The EAB MAC key from its base64url text. The error never quotes the text: it is a
/// secret, and the decoder's message names the offending character.
fn eab_key_bytes(text: &str) -> Result<Vec<u8>, AcmeError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| {
            AcmeError::Other("acme.eab: the MAC key is not base64url (A-Z a-z 0-9 - _)".to_owned())
        })
}

/// The TLS-ALPN-01 certificate for `name`: self-signed, naming only `name`, with the
/// critical acmeIdentifier extension holding the SHA-256 of the key authorization.
fn challenge_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let err = |e: rcgen::Error| AcmeError::Other(format!("challenge certificate: {e}"));
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(err)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(err)?;
    // Not through `certified`: its consistency check parses the certificate with webpki,
    // which refuses the (critical, unknown to it) acmeIdentifier extension.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
        .map_err(|e| AcmeError::Other(format!("challenge key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

/// Removes the order's challenge certificates however the order ends.
struct ChallengeGuard<'a> {
    challenges: &'a Challenges,
    names: Vec<String>,
}

impl Drop for ChallengeGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.challenges.write() {
            for n in &self.names {
                m.remove(n);
            }
        }
    }
}

/// Order a certificate for `names`: answer every pending authorization by TLS-ALPN-01,
/// finalize with a fresh P-256 key, and return the chain and key as one PEM text.
async fn order(
    account: &Account,
    names: &[String],
    challenges: &Challenges,
) -> Result<String, AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut guard = ChallengeGuard {
        challenges,
        names: Vec::new(),
    };
    {
        let mut authorizations = order.authorizations();
        while let Some(result) = authorizations.next().await {
            let mut authz = result?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Other(format!(
                        "authorization for {} is {other:?}",
                        authz.identifier()
                    )));
                }
            }
            let mut challenge = authz.challenge(ChallengeType::TlsAlpn01).ok_or_else(|| {
                AcmeError::Other("the CA offers no tls-alpn-01 challenge".to_owned())
            })?;
            let name = challenge.identifier().to_string().to_ascii_lowercase();
            let cert =
                challenge_certificate(&name, challenge.key_authorization().digest().as_ref())?;
            if let Ok(mut m) = challenges.write() {
                m.insert(name.clone(), cert);
            }
            guard.names.push(name);
            challenge.set_ready().await?;
        }
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90));
    let status = order.poll_ready(&retry).await?;
    if status != OrderStatus::Ready {
        // Name what the CA said about the failed challenge.
        let mut why = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            if let Ok(state) = authz.refresh().await {
                for c in &state.challenges {
                    if let Some(p) = &c.error {
                        why.push(format!("{}: {p}", state.identifier()));
                    }
                }
            }
        }
        return Err(AcmeError::Other(if why.is_empty() {
            format!("order is {status:?}")
        } else {
            format!("challenge failed: {}", why.join("; "))
        }));
    }
    drop(guard);
    let err = |e: rcgen::Error| AcmeError::Other(format!("certificate request: {e}"));
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(err)?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&retry).await?;
    Ok(format!("{chain}{}", key.serialize_pem()))
}

/// Parse what [`order`] returned into a certificate `serve` can present.
fn candidate(pem: &str, source: &Path) -> Result<Candidate, AcmeError> {
    use rustls::pki_types::pem::PemObject as _;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| AcmeError::Other(format!("the CA's certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| AcmeError::Other(format!("the new key: {e}")))?;
    let key = certified(chain, key, &source.display().to_string())
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    Ok(Candidate::new(key, source.display().to_string()))
}

/// What the CA issued must cover every name ordered and be valid now; anything else is
/// neither stored nor presented.
fn usable(c: &Candidate, names: &[String], now: i64) -> Result<(), AcmeError> {
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !c.covers(n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(AcmeError::Other(format!(
            "the CA's certificate does not cover {} (it names {})",
            missing.join(", "),
            c.names.join(", ")
        )));
    }
    if !c.valid_at(now) {
        return Err(AcmeError::Other(format!(
            "the CA's certificate is not valid now (valid {} to {})",
            super::time_text(c.not_before),
            c.expiry()
        )));
    }
    Ok(())
}

/// A file name for `domain`'s certificate (domains are validated host names, but keep the
/// name tame regardless).
fn cert_file(storage: &Path, domain: &str) -> PathBuf {
    let safe: String = domain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    AcmePlan::cert_dir(storage).join(format!("{safe}.pem"))
}

/// Obtain and store a certificate for one domain, and present it.
async fn issue(
    shared: &Shared,
    account: &Account,
    plan: &AcmePlan,
    domain: &str,
    names: &[String],
) -> Result<i64, AcmeError> {
    let pem = tokio::time::timeout(ORDER_DEADLINE, order(account, names, &shared.challenges))
        .await
        .map_err(|_| {
            AcmeError::Other(format!(
                "no certificate within {} s",
                ORDER_DEADLINE.as_secs()
            ))
        })
        .and_then(|r| r)
        .map_err(|e| AcmeError::Other(format!("order for {}: {e}", names.join(", "))))?;
    let path = cert_file(&plan.storage, domain);
    let c = candidate(&pem, &path)?;
    usable(&c, names, unix_now())?;
    let not_after = c.not_after;
    private_dir(&AcmePlan::cert_dir(&plan.storage))?;
    write_private(&path, pem.as_bytes())?;
    // Hot swap: new handshakes get the new certificate; open connections keep theirs.
    if let Ok(mut s) = shared.state.write() {
        let next = s.with_certificate(c);
        *s = Arc::new(next);
    }
    Ok(not_after)
}

async fn issue_named(
    shared: &Shared,
    account: &Account,
    plan: &AcmePlan,
    domain: &str,
    names: &[String],
) -> (String, Result<i64, AcmeError>) {
    tracing::info!(domain, ?names, "ACME: ordering");
    (
        domain.to_owned(),
        issue(shared, account, plan, domain, names).await,
    )
}

/// The HTTP client instant-acme talks through: HTTP/1.1 over rustls, verified against the
/// system's roots plus `[acme] ca_file`, one connection per request, each within
/// [`REQUEST_DEADLINE`] and [`MAX_RESPONSE`].
#[derive(Clone)]
struct Http {
    tls: Arc<rustls::ClientConfig>,
}

impl Http {
    async fn new(plan: &AcmePlan) -> Result<Http, AcmeError> {
        let extra = match &plan.ca_file {
            Some(f) => {
                crate::tls::read_pem_certificates(f).map_err(|e| AcmeError::Other(e.to_string()))?
            }
            None => Vec::new(),
        };
        let anchors = crate::tls::TrustAnchors::new(true, &extra)
            .map_err(|e| AcmeError::Other(e.to_string()))?;
        let tls = anchors
            .client_config(false, &[b"http/1.1"])
            .await
            .ok_or_else(|| AcmeError::Other("no trust anchors to verify the CA with".to_owned()))?;
        Ok(Http { tls })
    }

    async fn send(
        tls: Arc<rustls::ClientConfig>,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Result<BytesResponse, instant_acme::Error> {
        let other = |e: String| instant_acme::Error::Other(e.into());
        let uri = req.uri().clone();
        if uri.scheme_str() != Some("https") {
            return Err(other(format!("{uri}: the CA must be reached over https")));
        }
        let host = uri
            .host()
            .ok_or_else(|| other(format!("{uri}: no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| other(format!("{host}:{port}: {e}")))?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| other(format!("{host}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| {
                other(format!(
                    "{host}:{port}: TLS: {e} (a CA with a private root needs [acme] ca_file)"
                ))
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| other(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let (mut parts, body) = req.into_parts();
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or(host);
        parts.uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|e: http::uri::InvalidUri| other(e.to_string()))?;
        if let Ok(v) = http::HeaderValue::from_str(&authority) {
            parts.headers.insert(http::header::HOST, v);
        }
        let resp = sender
            .send_request(http::Request::from_parts(parts, body))
            .await
            .map_err(|e| other(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let bytes = Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| other(format!("{uri}: response body: {e}")))?
            .to_bytes();
        Ok(BytesResponse::from(http::Response::from_parts(
            parts,
            Full::new(bytes),
        )))
    }
}

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        let what = req.uri().to_string();
        Box::pin(async move {
            tokio::time::timeout(REQUEST_DEADLINE, Self::send(tls, req))
                .await
                .unwrap_or_else(|_| {
                    Err(instant_acme::Error::Other(
                        format!("{what}: no answer within {} s", REQUEST_DEADLINE.as_secs()).into(),
                    ))
                })
        })
    }
}

/// The manager: runs until `stop`, looking again whenever `wake` is notified (a reload)
/// or something falls due.
pub(super) async fn run(
    shared: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
    wake: Arc<tokio::sync::Notify>,
) {
    // The account, and the directory and trust it was made for.
    let mut session: Option<(String, Option<PathBuf>, Account)> = None;
    let mut account_failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let state = match shared.state.read() {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        let sleep = match &state.acme {
            None => MAX_SLEEP,
            Some(plan) => {
                // A shutdown does not wait for orders in flight (they were counted against
                // the budget when placed; their challenge certificates go with them).
                let result = tokio::select! {
                    r = round(&shared, &state, plan, &mut session, &mut account_failures) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match result {
                    Ok(next) => next,
                    Err(e) => {
                        account_failures += 1;
                        let wait = backoff("account", account_failures);
                        tracing::warn!(error = %e, retry_in_s = wait, "ACME: no order can be placed");
                        Duration::from_secs(wait.unsigned_abs())
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One pass: order what is due (within the budget), and say how long until the next.
async fn round(
    shared: &Shared,
    state: &State,
    plan: &AcmePlan,
    session: &mut Option<(String, Option<PathBuf>, Account)>,
    account_failures: &mut u32,
) -> Result<Duration, AcmeError> {
    use futures_util::StreamExt as _;
    let now = unix_now();
    let mut schedule = Schedule::load(&plan.storage);
    // Forget failures of domains no longer served.
    schedule
        .failures
        .retain(|d, _| plan.domains.iter().any(|(x, _)| x == d));
    let mut due: Vec<(i64, &String, &Vec<String>)> = plan
        .domains
        .iter()
        .map(|(d, names)| {
            let mut at = due_at(state, d, names, now);
            if let Some(f) = schedule.failures.get(d) {
                at = at.max(f.retry_at);
            }
            (at, d, names)
        })
        .collect();
    due.sort();
    let next_due = due
        .iter()
        .find(|(at, _, _)| *at > now)
        .map(|(at, _, _)| *at);
    let now_due: Vec<_> = due.iter().filter(|(at, _, _)| *at <= now).collect();
    if now_due.is_empty() {
        return Ok(until(next_due, now));
    }
    private_dir(&plan.storage)?;
    let fresh = match session {
        Some((dir, ca, _)) => *dir != plan.spec.directory || *ca != plan.ca_file,
        None => true,
    };
    if fresh {
        let http = Http::new(plan).await?;
        let account = account(plan, &http).await?;
        *session = Some((plan.spec.directory.clone(), plan.ca_file.clone(), account));
    }
    *account_failures = 0;
    let Some((_, _, account)) = session.as_ref() else {
        return Ok(MAX_SLEEP);
    };
    let budget = (plan.spec.orders_per_hour as usize).saturating_sub(schedule.recent(now));
    if budget == 0 {
        // The oldest order in the window leaves it first.
        let free = schedule.orders.iter().min().map(|t| t + 3600);
        tracing::info!(waiting = now_due.len(), "ACME: hourly order budget spent");
        return Ok(until(free.or(next_due), now));
    }
    let batch: Vec<_> = now_due.iter().take(budget).collect();
    for _ in &batch {
        schedule.orders.push(now);
    }
    schedule.save(&plan.storage)?;
    let mut queue = batch.into_iter();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut results = Vec::new();
    loop {
        while pending.len() < PARALLEL {
            let Some((_, domain, names)) = queue.next() else {
                break;
            };
            pending.push(issue_named(shared, account, plan, domain, names));
        }
        match pending.next().await {
            Some(r) => results.push(r),
            None => break,
        }
    }
    let now = unix_now();
    for (domain, result) in results {
        match result {
            Ok(not_after) => {
                shared.counters.acme_order("valid");
                schedule.failures.remove(&domain);
                tracing::info!(
                    domain,
                    expires = super::time_text(not_after),
                    "ACME: certificate issued"
                );
            }
            Err(e) => {
                shared.counters.acme_order("failed");
                let count = schedule.failures.get(&domain).map_or(0, |f| f.count) + 1;
                let wait = backoff(&domain, count);
                tracing::warn!(domain, error = %e, failures = count, retry_in_s = wait, "ACME: order failed; keeping the current certificate");
                schedule.failures.insert(
                    domain,
                    Failure {
                        count,
                        retry_at: now + wait,
                        error: e.to_string(),
                    },
                );
            }
        }
    }
    schedule.save(&plan.storage)?;
    // Look again at once: what is still due waits only for the budget.
    Ok(Duration::from_millis(10))
}

fn until(at: Option<i64>, now: i64) -> Duration {
    match at {
        Some(t) if t > now => Duration::from_secs((t - now).unsigned_abs()).min(MAX_SLEEP),
        Some(_) => Duration::from_secs(1),
        None => MAX_SLEEP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_with_bounded_jitter() {
        // A 90-day certificate renews between day 51 and day 60.
        let day = 86_400;
        for d in ["a.example", "b.example", "c.example", "d.example"] {
            let at = renewal_time(d, 0, 90 * day);
            assert!(at <= 60 * day && at >= 51 * day, "{d}: {at}");
            assert_eq!(at, renewal_time(d, 0, 90 * day), "stable across calls");
        }
        let spread: std::collections::BTreeSet<i64> = (0..50)
            .map(|i| renewal_time(&format!("d{i}.example"), 0, 90 * day))
            .collect();
        assert!(
            spread.len() > 40,
            "jitter spreads a fleet: {}",
            spread.len()
        );
    }

    #[test]
    fn backoff_doubles_to_a_day() {
        assert!((54..=66).contains(&backoff("x.example", 1)));
        assert!((108..=132).contains(&backoff("x.example", 2)));
        assert!(backoff("x.example", 30) <= BACKOFF_MAX * 11 / 10);
        assert!(backoff("x.example", 30) >= BACKOFF_MAX * 9 / 10);
    }

    #[test]
    fn hourly_budget_forgets_old_orders() {
        let mut s = Schedule {
            orders: vec![0, 100, 3000, 3700],
            failures: BTreeMap::new(),
        };
        assert_eq!(s.recent(3800), 2);
        assert_eq!(s.orders, vec![3000, 3700]);
    }

    #[test]
    fn challenge_certificate_names_only_the_identifier() {
        let digest = [7u8; 32];
        let key = challenge_certificate("ua-auto-config.example.com", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).unwrap();
        assert_eq!(
            super::super::san_dns_names(&cert),
            vec!["ua-auto-config.example.com".to_owned()]
        );
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical, "RFC 8737 §3: the extension is critical");
        // OCTET STRING (0x04, 32) wrapping the digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
    }

    #[test]
    fn an_issued_certificate_must_cover_every_name_and_be_valid_now() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["ua-auto-config.a.example".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let c = candidate(&pem, Path::new("/s/certs/a.example.pem")).unwrap();
        let now = 1_800_000_000;
        assert!(usable(&c, &["ua-auto-config.a.example".to_owned()], now).is_ok());
        let err = usable(
            &c,
            &[
                "ua-auto-config.a.example".to_owned(),
                "mta-sts.a.example".to_owned(),
            ],
            now,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not cover mta-sts.a.example"), "{err}");
        let err = usable(&c, &["ua-auto-config.a.example".to_owned()], 2_300_000_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid now"), "{err}");
    }

    #[test]
    fn a_bad_eab_key_is_refused_without_quoting_it() {
        assert_eq!(eab_key_bytes("AAEC").unwrap(), vec![0, 1, 2]);
        let err = eab_key_bytes("secretXY+/").unwrap_err().to_string();
        assert!(err.contains("not base64url"), "{err}");
        assert!(
            !err.contains('+') && !err.contains("secret") && !err.contains("43"),
            "{err}"
        );
    }

    #[test]
    fn certificate_file_names_are_tame() {
        let p = cert_file(Path::new("/s"), "xn--bcher-kva.example");
        assert_eq!(p, Path::new("/s/certs/xn--bcher-kva.example.pem"));
        let p = cert_file(Path::new("/s"), "../evil");
        assert_eq!(p, Path::new("/s/certs/.._evil.pem"));
    }
}
