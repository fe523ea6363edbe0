//! Saved accounts on disk and their secrets in the system keyring.
//!
//! Accounts (no secrets) are JSON files under the data directory — `$PACC_DATA_DIR`, else
//! `$XDG_DATA_HOME/pacc`, else `~/.local/share/pacc` — in `accounts/`, the directories 0700
//! and the files 0600. Passwords, refresh tokens and the cached access token go to the
//! system keyring (Secret Service over D-Bus on Linux), service `pacc`, user
//! `<address>/<kind>`. There is no plaintext secret file.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use pacc_proto::account::Account;
use pacc_proto::auth::Secret;

/// Why an account or secret could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No account is saved for this address.
    #[error("no account is saved for {0} (set one up with `pacc setup {0}`)")]
    NoSuchAccount(String),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A saved file is not an account.
    #[error("{path} is not a valid account file: {error}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The keyring could not be used.
    #[error("the system keyring is not available: {0}")]
    Keyring(String),
    /// Nothing is stored under this name.
    #[error("no {kind} is stored for {address}")]
    NoSecret {
        /// The account.
        address: String,
        /// `password`, `refresh-token`…
        kind: &'static str,
    },
}

/// The data directory: `$PACC_DATA_DIR`, `$XDG_DATA_HOME/pacc`, or `~/.local/share/pacc`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("PACC_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_DATA_HOME").map(|d| Path::new(&d).join("pacc")))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share/pacc")))
        .unwrap_or_else(|| PathBuf::from(".pacc"))
}

/// Write `bytes` to `path` readable by the owner only (0600, also when the file existed),
/// atomically (a temporary file, synced, then renamed over it).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The saved accounts.
#[derive(Debug, Clone)]
pub struct AccountStore {
    dir: PathBuf,
}

impl Default for AccountStore {
    fn default() -> Self {
        AccountStore::at(data_dir().join("accounts"))
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// A file name for an address: lower-case ASCII letters, digits and `.-_@`, the rest hex.
fn file_name(address: &str) -> String {
    let mut s = String::new();
    for b in address.to_lowercase().bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'@' => s.push(char::from(b)),
            _ => s.push_str(&format!("%{b:02x}")),
        }
    }
    format!("{s}.json")
}

impl AccountStore {
    /// The accounts in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        AccountStore { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, address: &str) -> PathBuf {
        self.dir.join(file_name(address))
    }

    /// Save (replace) an account: the directories 0700, the file 0600, written atomically.
    pub fn save(&self, account: &Account) -> Result<PathBuf, StoreError> {
        for d in [self.dir.parent(), Some(self.dir.as_path())]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(d).map_err(io(d))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(io(d))?;
        }
        let path = self.path(&account.address);
        let text = serde_json::to_vec_pretty(account).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            error: e.to_string(),
        })?;
        write_private(&path, &text).map_err(io(&path))?;
        Ok(path)
    }

    /// The account for `address` (compared case-insensitively).
    pub fn load(&self, address: &str) -> Result<Account, StoreError> {
        let path = self.path(address);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchAccount(address.to_owned()));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            error: e.to_string(),
        })
    }

    /// Every saved account, by address.
    pub fn list(&self) -> Result<Vec<Account>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "json") {
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                out.push(
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        error: e.to_string(),
                    })?,
                );
            }
        }
        out.sort_by(|a: &Account, b: &Account| a.address.cmp(&b.address));
        Ok(out)
    }

    /// Remove the account file (its secrets are removed by [`Secrets::remove_all`]).
    pub fn remove(&self, address: &str) -> Result<(), StoreError> {
        let path = self.path(address);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NoSuchAccount(address.to_owned()))
            }
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// What kind of secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// The account's password.
    Password,
    /// The OAuth refresh token.
    RefreshToken,
    /// The cached OAuth access token.
    AccessToken,
}

impl SecretKind {
    fn name(self) -> &'static str {
        match self {
            SecretKind::Password => "password",
            SecretKind::RefreshToken => "refresh-token",
            SecretKind::AccessToken => "access-token",
        }
    }
}

/// Where secrets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// The system keyring.
    Keyring,
    /// Nowhere: nothing is stored; reading finds nothing.
    None,
}

impl Secrets {
    /// `keyring` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            Secrets::Keyring => "keyring",
            Secrets::None => "none",
        }
    }

    /// Store a secret.
    pub async fn set(
        self,
        address: &str,
        kind: SecretKind,
        secret: &Secret,
    ) -> Result<(), StoreError> {
        match self {
            Secrets::None => Ok(()),
            Secrets::Keyring => {
                let (user, value) = (
                    format!("{address}/{}", kind.name()),
                    secret.expose().to_owned(),
                );
                keyring_call(move || entry(&user)?.set_password(&value)).await
            }
        }
    }

    /// Read a secret.
    pub async fn get(self, address: &str, kind: SecretKind) -> Result<Secret, StoreError> {
        let missing = || StoreError::NoSecret {
            address: address.to_owned(),
            kind: kind.name(),
        };
        match self {
            Secrets::None => Err(missing()),
            Secrets::Keyring => {
                let user = format!("{address}/{}", kind.name());
                match keyring_call(move || entry(&user)?.get_password()).await {
                    Ok(v) => Ok(Secret::new(v)),
                    Err(StoreError::NoSecret { .. }) => Err(missing()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Remove one secret (absent is fine).
    pub async fn remove(self, address: &str, kind: SecretKind) -> Result<(), StoreError> {
        match self {
            Secrets::None => Ok(()),
            Secrets::Keyring => {
                let user = format!("{address}/{}", kind.name());
                match keyring_call(move || entry(&user)?.delete_credential()).await {
                    Ok(()) | Err(StoreError::NoSecret { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Remove every secret of an account.
    pub async fn remove_all(self, address: &str) -> Result<(), StoreError> {
        for k in [
            SecretKind::Password,
            SecretKind::RefreshToken,
            SecretKind::AccessToken,
        ] {
            self.remove(address, k).await?;
        }
        Ok(())
    }

    /// Whether the keyring answers here (a Secret Service on the session bus). Without a
    /// session bus at all (no `DBUS_SESSION_BUS_ADDRESS`, no `$XDG_RUNTIME_DIR/bus`) the
    /// answer is no at once, without asking D-Bus.
    pub async fn keyring_available() -> bool {
        let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty())
            || std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|d| Path::new(&d).join("bus").exists());
        if !bus {
            return false;
        }
        keyring_call(|| match entry("pacc-probe/none")?.get_password() {
            Ok(_) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(e),
        })
        .await
        .is_ok()
    }
}

#[cfg(feature = "keyring")]
fn entry(user: &str) -> Result<keyring::Entry, keyring::Error> {
    keyring::Entry::new("pacc", user)
}

/// Run a blocking keyring call off the async threads, with a deadline; a failure of the
/// Secret Service itself (not "no such entry") is tried once more after a short pause.
#[cfg(feature = "keyring")]
async fn keyring_call<T: Send + 'static>(
    f: impl Fn() -> Result<T, keyring::Error> + Send + Sync + 'static,
) -> Result<T, StoreError> {
    let f = std::sync::Arc::new(f);
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let g = f.clone();
        let job = tokio::task::spawn_blocking(move || g());
        match tokio::time::timeout(std::time::Duration::from_secs(10), job).await {
            Ok(Ok(Ok(v))) => return Ok(v),
            Ok(Ok(Err(keyring::Error::NoEntry))) => {
                return Err(StoreError::NoSecret {
                    address: String::new(),
                    kind: "secret",
                });
            }
            Ok(Ok(Err(e))) => last = e.to_string(),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => return Err(StoreError::Keyring("no answer within 10 s".into())),
        }
    }
    Err(StoreError::Keyring(last))
}

#[cfg(not(feature = "keyring"))]
mod keyring {
    pub enum Error {
        #[allow(dead_code)]
        NoEntry,
        Unavailable,
    }
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("built without keyring support")
        }
    }
}

#[cfg(not(feature = "keyring"))]
fn entry(_user: &str) -> Result<Never, keyring::Error> {
    Err(keyring::Error::Unavailable)
}

#[cfg(not(feature = "keyring"))]
enum Never {}

#[cfg(not(feature = "keyring"))]
impl Never {
    fn set_password(&self, _: &str) -> Result<(), keyring::Error> {
        match *self {}
    }
    fn get_password(&self) -> Result<String, keyring::Error> {
        match *self {}
    }
    fn delete_credential(&self) -> Result<(), keyring::Error> {
        match *self {}
    }
}

#[cfg(not(feature = "keyring"))]
async fn keyring_call<T: Send + 'static>(
    _f: impl Fn() -> Result<T, keyring::Error> + Send + Sync + 'static,
) -> Result<T, StoreError> {
    Err(StoreError::Keyring(
        "pacc was built without keyring support".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name("Alice@Example.TEST"), "alice@example.test.json");
        assert_eq!(file_name("a/../b@x"), "a%2f..%2fb@x.json");
    }
}

/// Why no fresh access token could be had for a saved account.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The account signs in with a password, not OAuth.
    #[error("{0} does not use OAuth")]
    NotOAuth(String),
    /// No refresh token is stored, or the server refused it: sign in again.
    #[error("re-authorization needed: {0}. Run `pacc setup` for this address again")]
    Reauthorize(String),
    /// The keyring or the account file.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The token endpoint could not be reached now.
    #[error("the token endpoint could not be used now: {0}")]
    Temporary(String),
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A valid access token for `account`: the cached one while it has more than a minute
/// left, else a new one from the stored refresh token (O-11). A rotated refresh token is
/// stored before the new access token is returned; the account file records the expiry.
pub async fn access_token(
    client: &crate::Client,
    store: &AccountStore,
    secrets: Secrets,
    account: &mut Account,
    deadline: std::time::Instant,
) -> Result<Secret, TokenError> {
    let Some(oauth) = account.oauth.clone() else {
        return Err(TokenError::NotOAuth(account.address.clone()));
    };
    if oauth.access_expires_at.is_some_and(|t| t > now() + 60)
        && let Ok(t) = secrets.get(&account.address, SecretKind::AccessToken).await
    {
        return Ok(t);
    }
    let refresh = match secrets
        .get(&account.address, SecretKind::RefreshToken)
        .await
    {
        Ok(r) => r,
        Err(StoreError::NoSecret { .. }) => {
            return Err(TokenError::Reauthorize("no refresh token is stored".into()));
        }
        Err(e) => return Err(e.into()),
    };
    let meta = pacc_proto::auth::oauth::Metadata {
        issuer: oauth.issuer.clone(),
        authorization_endpoint: String::new(),
        token_endpoint: oauth.token_endpoint.clone(),
        registration_endpoint: None,
        scopes_supported: Vec::new(),
        response_types_supported: Vec::new(),
        grant_types_supported: Vec::new(),
        token_endpoint_auth_methods_supported: Vec::new(),
        code_challenge_methods_supported: Vec::new(),
        authorization_response_iss_parameter_supported: false,
        device_authorization_endpoint: None,
        protected_resources: None,
    };
    // SEC-7: the hosts the user confirmed at setup; the token endpoint must be one of them.
    let confirmed = pacc_proto::auth::gate::ConfirmationRequest::new(
        account
            .confirmed_hosts
            .iter()
            .filter_map(|h| pacc_proto::name::Domain::parse(h).ok()),
        account.source.url.clone(),
        Vec::new(),
    )
    .confirm(true)
    .map_err(|e| TokenError::Reauthorize(e.to_string()))?;
    let tokens = match client
        .oauth_refresh(&meta, &confirmed, &oauth.client_id, &refresh, deadline)
        .await
    {
        Ok(t) => t,
        Err(e @ crate::oauth::OAuthError::Token(_)) => {
            return Err(TokenError::Reauthorize(e.to_string()));
        }
        Err(e) => return Err(TokenError::Temporary(e.to_string())),
    };
    // O-11: a rotated refresh token is kept durably before the new access token is used.
    if let Some(r) = &tokens.refresh_token {
        secrets
            .set(&account.address, SecretKind::RefreshToken, r)
            .await?;
    }
    secrets
        .set(
            &account.address,
            SecretKind::AccessToken,
            &tokens.access_token,
        )
        .await?;
    if let Some(o) = account.oauth.as_mut() {
        o.access_expires_at = tokens.expires_in.map(|s| now() + s);
    }
    store.save(account)?;
    Ok(tokens.access_token)
}
