//! The OAuth public-client flow (spec §2.7): metadata (RFC 8414, OIDC fallback), dynamic
//! client registration (RFC 7591) with the client id kept per issuer on disk, the
//! authorization-code flow with PKCE S256 and `state` through a loopback redirect listener
//! (RFC 8252), the RFC 9207 `iss` check, token exchange and refresh. Every endpoint must be
//! among the hosts the user confirmed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pacc_proto::auth::Secret;
use pacc_proto::auth::gate::Confirmed;
use pacc_proto::auth::oauth::{
    self, CheckedMetadata, Metadata, MetadataError, RedirectError, TokenError, Tokens,
};
use pacc_proto::auth::pkce::{self, Pkce};
use pacc_proto::fetch::FetchError;
use pacc_proto::name::url_host;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::https::{FetchContext, exchange};

/// The redirect path on the loopback listener.
const CALLBACK: &str = "/callback";

/// Why OAuth sign-in did not produce tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The metadata could not be fetched from any of the URLs tried (RFC 8414, then OpenID
    /// discovery); each attempt with its own failure.
    #[error("cannot fetch the authorization server metadata: {}", show_attempts(.0))]
    Fetch(Vec<MetadataAttempt>),
    /// The metadata was refused (issuer mismatch, missing PKCE…), before any browser opened.
    #[error("{0}")]
    Metadata(MetadataError),
    /// An endpoint's host was not among the confirmed hosts.
    #[error("{0} was not confirmed by the user; nothing was sent there")]
    NotConfirmed(String),
    /// Registration failed.
    #[error("dynamic client registration failed: {0}")]
    Registration(String),
    /// The redirect was refused (state, iss, error) — possibly an attack.
    #[error("{0}")]
    Redirect(RedirectError),
    /// The browser step did not finish in time.
    #[error("no sign-in arrived at the loopback listener within {0:?}")]
    Timeout(Duration),
    /// The token endpoint refused, or issued something pacc does not use (O-13).
    #[error("{0}")]
    Token(TokenError),
    /// The token endpoint could not be reached.
    #[error("the token endpoint could not be reached: {0}")]
    TokenEndpoint(FetchError),
    /// The client-id store could not be used.
    #[error("client id store {path}: {error}")]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The loopback listener could not be opened.
    #[error("loopback listener: {0}")]
    Listener(std::io::Error),
}

impl OAuthError {
    /// Stable kind string: the JSON `oauth.kind` of `pacc setup`.
    pub fn kind(&self) -> &'static str {
        match self {
            OAuthError::Fetch(_) => "metadata-unavailable",
            OAuthError::Metadata(e) => e.kind(),
            OAuthError::NotConfirmed(_) => "not-confirmed",
            OAuthError::Registration(_) => "registration-refused",
            OAuthError::Redirect(e) => e.kind(),
            OAuthError::Timeout(_) => "browser-timeout",
            OAuthError::Token(e) => e.kind(),
            OAuthError::TokenEndpoint(_) => "token-endpoint-unreachable",
            OAuthError::Store { .. } => "client-store",
            OAuthError::Listener(_) => "loopback-listener",
        }
    }

    /// The authorization server's own `error_description`, where it gave one.
    pub fn description(&self) -> Option<&str> {
        match self {
            OAuthError::Redirect(RedirectError::Refused { description, .. })
            | OAuthError::Token(TokenError::Refused { description, .. }) => description.as_deref(),
            _ => None,
        }
    }
}

/// One metadata URL tried, and why it did not give metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataAttempt {
    /// The URL.
    pub url: String,
    /// What went wrong there.
    pub error: FetchError,
}

fn show_attempts(attempts: &[MetadataAttempt]) -> String {
    if attempts.is_empty() {
        return "the issuer is not an https URL".to_owned();
    }
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.url, a.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Registered clients, per issuer, in a small JSON file (mode 0600).
#[derive(Debug, Clone)]
pub struct ClientStore {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    /// issuer → client id
    clients: BTreeMap<String, String>,
}

impl ClientStore {
    /// The store at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        ClientStore { path: path.into() }
    }

    /// `$PACC_DATA_DIR/clients.json`, else `$XDG_DATA_HOME/pacc/clients.json`, else
    /// `~/.local/share/pacc/clients.json`.
    pub fn default_location() -> Self {
        ClientStore::at(crate::accounts::data_dir().join("clients.json"))
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<StoreFile, OAuthError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OAuthError::Store {
                path: self.path.clone(),
                error: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
            Err(e) => Err(OAuthError::Store {
                path: self.path.clone(),
                error: e.to_string(),
            }),
        }
    }

    /// The client id registered for `issuer`, if any.
    pub fn get(&self, issuer: &str) -> Result<Option<String>, OAuthError> {
        Ok(self.load()?.clients.get(issuer).cloned())
    }

    /// Remember `client_id` for `issuer` (file created 0600).
    pub fn put(&self, issuer: &str, client_id: &str) -> Result<(), OAuthError> {
        let err = |e: std::io::Error| OAuthError::Store {
            path: self.path.clone(),
            error: e.to_string(),
        };
        let mut file = self.load()?;
        file.clients.insert(issuer.to_owned(), client_id.to_owned());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        crate::accounts::write_private(
            &self.path,
            &serde_json::to_vec_pretty(&file).unwrap_or_default(),
        )
        .map_err(err)
    }
}

fn require(confirmed: &Confirmed, url: &str) -> Result<(), OAuthError> {
    match url_host(url) {
        Some(h) if confirmed.allows(&h) => Ok(()),
        _ => Err(OAuthError::NotConfirmed(url.to_owned())),
    }
}

/// RFC 8414 metadata for `issuer`, then OpenID discovery as fallback (O-2); checked (O-3,
/// Q-12) before anything else happens.
pub(crate) async fn metadata(
    ctx: &FetchContext<'_>,
    issuer: &str,
    deadline: Instant,
) -> Result<CheckedMetadata, OAuthError> {
    let urls: Vec<String> = [
        oauth::metadata_url(issuer),
        oauth::openid_configuration_url(issuer),
    ]
    .into_iter()
    .flatten()
    .collect();
    if urls.is_empty() {
        return Err(OAuthError::Metadata(MetadataError::Invalid(
            "not an https issuer".into(),
        )));
    }
    let mut attempts = Vec::new();
    for url in urls {
        if Instant::now() >= deadline {
            attempts.push(MetadataAttempt {
                error: FetchError::Timeout {
                    host: url_host(&url).map(|h| h.to_string()).unwrap_or_default(),
                    stage: "not tried: the deadline had passed".to_owned(),
                },
                url,
            });
            continue;
        }
        match exchange(ctx, "GET", &url, None, deadline).await {
            Ok((200, body)) => {
                return oauth::check_metadata(issuer, &body).map_err(OAuthError::Metadata);
            }
            Ok((status, _)) => attempts.push(MetadataAttempt {
                error: FetchError::Status {
                    url: url.clone(),
                    status,
                },
                url,
            }),
            Err(error) => attempts.push(MetadataAttempt { url, error }),
        }
    }
    Err(OAuthError::Fetch(attempts))
}

/// A completed authorization: the tokens, the client id used, and how long the browser
/// step took (the one part of the flow outside the caller's deadline).
#[derive(Debug)]
pub struct Authorized {
    /// The tokens (access, refresh).
    pub tokens: Tokens,
    /// The registered client id.
    pub client_id: String,
    /// From opening the URL to the redirect's arrival.
    pub browser_wait: Duration,
    /// The resource indicators the token was requested for (O-7).
    pub resources: Vec<String>,
}

/// What the browser step needs from the caller: open (or print) the URL.
pub type OpenUrl<'a> = &'a (dyn Fn(&str) + Sync);

/// Run the authorization-code flow and return tokens. Registration and the token exchange
/// must finish by `deadline`, extended by exactly the time spent waiting for the browser
/// (at most `wait`): the browser wait is the one addition to the caller's deadline.
///
/// `resources` are the RFC 8707 indicators of every service the token is for (O-7). If the
/// server refuses them with `invalid_target`, the request is made once more with only the
/// HTTP services' URLs, and `Authorized::resources` says what was requested in the end.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn authorize(
    ctx: &FetchContext<'_>,
    meta: &Metadata,
    confirmed: &Confirmed,
    scope: &str,
    resources: &[String],
    store: &ClientStore,
    random: &mut (dyn FnMut(&mut [u8]) + Send),
    open: OpenUrl<'_>,
    wait: Duration,
    deadline: Instant,
) -> Result<Authorized, OAuthError> {
    for url in [
        Some(&meta.authorization_endpoint),
        Some(&meta.token_endpoint),
        meta.registration_endpoint.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        require(confirmed, url)?;
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(OAuthError::Listener)?;
    let port = listener.local_addr().map_err(OAuthError::Listener)?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK}");
    oauth::check_redirect_uri(&redirect_uri).map_err(OAuthError::Registration)?;
    let client_id = registered_client(ctx, meta, scope, store, deadline).await?;
    let mut granted: Vec<String> = resources.to_vec();
    let mut browser_wait = Duration::ZERO;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut verifier = [0u8; 32];
        random(&mut verifier);
        let mut state_bytes = [0u8; 16];
        random(&mut state_bytes);
        let pkce = Pkce::from_random(&verifier);
        let state = pkce::state(&state_bytes);
        let url = oauth::authorization_url(
            &meta.authorization_endpoint,
            &client_id,
            &redirect_uri,
            scope,
            &state,
            &pkce,
            &granted,
        );
        open(&url);
        let waiting = Instant::now();
        let check = |query: &str| {
            oauth::parse_redirect(
                query,
                &state,
                &meta.issuer,
                meta.authorization_response_iss_parameter_supported,
            )
        };
        let remaining = wait.saturating_sub(browser_wait);
        let outcome =
            tokio::time::timeout_at(waiting + remaining, wait_for_redirect(&listener, &check))
                .await;
        browser_wait += waiting.elapsed();
        let code = match outcome {
            Err(_) => return Err(OAuthError::Timeout(wait)),
            Ok(Err(e)) => return Err(OAuthError::Listener(e)),
            // O-7: a server that rejects the SASL resource indicators gets one more request
            // with only the HTTP services' URLs.
            Ok(Ok(Err(RedirectError::Refused { error, .. })))
                if error == "invalid_target"
                    && attempts == 1
                    && granted.iter().any(|r| !r.starts_with("https://")) =>
            {
                granted.retain(|r| r.starts_with("https://"));
                continue;
            }
            Ok(Ok(Err(e))) => return Err(OAuthError::Redirect(e)),
            Ok(Ok(Ok(code))) => code,
        };
        let deadline = deadline + browser_wait;
        // RFC 8707 §2.2: the grant already names the resources; the token request names
        // none, so the server issues the one token of the grant. (Retrying with other
        // resources is not possible: the code is spent by the first request.)
        let body = oauth::token_request(&code, &redirect_uri, &client_id, &pkce, &[]);
        let tokens = token_post(ctx, meta, &body, deadline).await?;
        return Ok(Authorized {
            tokens,
            client_id,
            browser_wait,
            resources: granted,
        });
    }
}

/// The client id for this issuer: the stored one, else a new dynamic registration (kept).
async fn registered_client(
    ctx: &FetchContext<'_>,
    meta: &Metadata,
    scope: &str,
    store: &ClientStore,
    deadline: Instant,
) -> Result<String, OAuthError> {
    // O-5: one registration per issuer, reused; RFC 8252 §7.3: any loopback port is accepted.
    Ok(match store.get(&meta.issuer)? {
        Some(id) => id,
        None => {
            let reg = meta.registration_endpoint.as_ref().ok_or_else(|| {
                OAuthError::Registration("the server offers no dynamic client registration".into())
            })?;
            // O-13: never `dpop_bound_access_tokens` (Bearer throughout).
            let body = if meta.device_authorization_endpoint.is_some() {
                oauth::registration_request_with_device(
                    &[format!("http://127.0.0.1{CALLBACK}")],
                    scope,
                    env!("CARGO_PKG_VERSION"),
                )
            } else {
                oauth::registration_request(
                    &[format!("http://127.0.0.1{CALLBACK}")],
                    scope,
                    env!("CARGO_PKG_VERSION"),
                )
            };
            let (status, resp) = exchange(
                ctx,
                "POST",
                reg,
                Some(("application/json", body.to_string().into_bytes())),
                deadline,
            )
            .await
            .map_err(|e| OAuthError::Registration(e.to_string()))?;
            if !(200..300).contains(&status) {
                return Err(OAuthError::Registration(format!(
                    "HTTP {status}: {}",
                    oauth::registered_client_id(&resp).err().unwrap_or_default()
                )));
            }
            let id = oauth::registered_client_id(&resp).map_err(OAuthError::Registration)?;
            store.put(&meta.issuer, &id)?;
            id
        }
    })
}

/// What the user is shown for the device grant.
pub type ShowDeviceCode<'a> = &'a (dyn Fn(&oauth::DeviceAuthorization) + Sync);

/// The device authorization grant (RFC 8628), for machines without a browser: register
/// (once per issuer), ask for a user code, hand it to `show`, and poll the token endpoint
/// at the server's interval (5 s more after each `slow_down`) until the user signed in,
/// refused, the codes expired, or `wait` passed. The endpoints must be confirmed hosts.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn device_authorize(
    ctx: &FetchContext<'_>,
    meta: &Metadata,
    confirmed: &Confirmed,
    scope: &str,
    resources: &[String],
    store: &ClientStore,
    show: ShowDeviceCode<'_>,
    wait: Duration,
    deadline: Instant,
) -> Result<Authorized, OAuthError> {
    let Some(endpoint) = meta.device_authorization_endpoint.as_ref() else {
        return Err(OAuthError::Metadata(MetadataError::Missing(
            "the device authorization grant (no device_authorization_endpoint)",
        )));
    };
    for url in [
        Some(endpoint),
        Some(&meta.token_endpoint),
        meta.registration_endpoint.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        require(confirmed, url)?;
    }
    let client_id = registered_client(ctx, meta, scope, store, deadline).await?;
    let form = oauth::device_authorization_request(&client_id, scope, resources);
    let (status, body) = post_form(ctx, endpoint, &form, deadline).await?;
    let device = oauth::parse_device_authorization(status, &body).map_err(OAuthError::Token)?;
    show(&device);
    let started = Instant::now();
    let until = started + wait.min(Duration::from_secs(device.expires_in));
    let mut interval = Duration::from_secs(device.interval);
    loop {
        if Instant::now() + interval > until {
            return Err(OAuthError::Timeout(wait));
        }
        tokio::time::sleep(interval).await;
        // Each poll gets the caller's deadline plus the time spent waiting for the user.
        let poll_deadline = deadline + started.elapsed();
        let form = oauth::device_token_request(&device.device_code, &client_id);
        let (status, body) =
            post_form(ctx, &meta.token_endpoint, form.expose(), poll_deadline).await?;
        match oauth::parse_device_poll(status, &body) {
            oauth::DevicePoll::Pending => {}
            oauth::DevicePoll::SlowDown => interval += Duration::from_secs(5),
            oauth::DevicePoll::Tokens(tokens) => {
                return Ok(Authorized {
                    tokens,
                    client_id,
                    browser_wait: started.elapsed(),
                    resources: resources.to_vec(),
                });
            }
            oauth::DevicePoll::Failed(TokenError::Refused { error, description })
                if error == "access_denied" =>
            {
                return Err(OAuthError::Redirect(RedirectError::Refused {
                    error,
                    description,
                }));
            }
            oauth::DevicePoll::Failed(e) => return Err(OAuthError::Token(e)),
        }
    }
}

/// O-11: a new access token from the refresh token.
pub(crate) async fn refresh(
    ctx: &FetchContext<'_>,
    meta: &Metadata,
    confirmed: &Confirmed,
    client_id: &str,
    refresh_token: &Secret,
    deadline: Instant,
) -> Result<Tokens, OAuthError> {
    require(confirmed, &meta.token_endpoint)?;
    let body = oauth::refresh_request(refresh_token, client_id);
    token_post(ctx, meta, &body, deadline).await
}

/// POST a form (`application/x-www-form-urlencoded`) to a token-side endpoint.
async fn post_form(
    ctx: &FetchContext<'_>,
    url: &str,
    form: &str,
    deadline: Instant,
) -> Result<(u16, Vec<u8>), OAuthError> {
    exchange(
        ctx,
        "POST",
        url,
        Some((
            "application/x-www-form-urlencoded",
            form.as_bytes().to_vec(),
        )),
        deadline,
    )
    .await
    .map_err(OAuthError::TokenEndpoint)
}

/// POST a form to the token endpoint and read the tokens (RFC 6749 §5).
async fn token_post(
    ctx: &FetchContext<'_>,
    meta: &Metadata,
    form: &Secret,
    deadline: Instant,
) -> Result<Tokens, OAuthError> {
    let (status, resp) = post_form(ctx, &meta.token_endpoint, form.expose(), deadline).await?;
    oauth::parse_token_response(status, &resp).map_err(OAuthError::Token)
}

/// Accept connections on the loopback listener until one brings `GET /callback?…`; check
/// it with `check` and answer with a page that tells the truth (signed in only when `state`
/// and `iss` verified; otherwise what went wrong, and that nothing was sent). Other
/// requests (a favicon) get 404. Returns the check's verdict.
async fn wait_for_redirect(
    listener: &TcpListener,
    check: &(dyn Fn(&str) -> Result<Secret, RedirectError> + Sync),
) -> std::io::Result<Result<Secret, RedirectError>> {
    loop {
        let (mut s, _) = listener.accept().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
                Ok(Ok(n)) => n,
                _ => 0,
            };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_owned();
        if let Some(query) = target.strip_prefix(&format!("{CALLBACK}?")) {
            let verdict = check(query);
            let (status, page) = match &verdict {
                Ok(_) => (
                    "200 OK",
                    "<p>Signed in. pacc is finishing the setup; you can close this window.</p>"
                        .to_owned(),
                ),
                Err(e) => (
                    "400 Bad Request",
                    format!(
                        "<p>Sign-in was not completed: {}.</p><p>Nothing was sent to your mail servers. Return to pacc.</p>",
                        html_escape(&e.to_string())
                    ),
                ),
            };
            let page = format!("<!doctype html><meta charset=utf-8><title>pacc</title>{page}");
            let _ = s
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{page}", page.len()).as_bytes())
                .await;
            return Ok(verdict);
        }
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
