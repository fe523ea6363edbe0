//! The OAuth public-client profile's messages (spec §2.7, O-1 … O-14): metadata discovery
//! and checks, dynamic client registration, the authorization request and response, token
//! requests and responses. Building and judging messages only; the shell sends them.

use serde::{Deserialize, Serialize};

use super::Secret;
use super::pkce::Pkce;
use crate::document::{Endpoint, ServiceKind};

/// RFC 8414 §3.1: `/.well-known/oauth-authorization-server` goes between the issuer's host and
/// its path (the path's terminating `/` removed). `None` if `issuer` is not `https://host…`.
pub fn metadata_url(issuer: &str) -> Option<String> {
    let rest = issuer.strip_prefix("https://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return None;
    }
    let path = path.trim_end_matches('/');
    Some(format!(
        "https://{authority}/.well-known/oauth-authorization-server{path}"
    ))
}

/// OpenID Connect Discovery fallback (O-2): appended to the issuer without its final `/`.
pub fn openid_configuration_url(issuer: &str) -> Option<String> {
    issuer.starts_with("https://").then(|| {
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        )
    })
}

/// The authorization-server metadata fields the profile uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Metadata {
    /// Must equal the configured issuer (Q-12).
    pub issuer: String,
    /// Where the browser goes.
    pub authorization_endpoint: String,
    /// Where codes are exchanged.
    pub token_endpoint: String,
    /// Dynamic client registration (RFC 7591).
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Must contain `code`.
    #[serde(default)]
    pub response_types_supported: Vec<String>,
    /// Should contain `authorization_code`, `refresh_token`.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// Must contain `none` (public client, O-1).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Must contain `S256`.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: then `iss` is required on the redirect.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// RFC 8628: where a device without a browser asks for a user code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// The resources this server issues tokens for (oauth-public -06, O-15): where present,
    /// a token goes only to services these cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_resources: Option<Vec<String>>,
}

/// Why the metadata cannot be used (O-2, O-3). Checked before any browser opens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Not the JSON object RFC 8414 describes.
    #[error("the authorization server metadata is not valid: {0}")]
    Invalid(String),
    /// The metadata names another issuer (RFC 8414 §3.3): refuse.
    #[error("the metadata's issuer '{found}' is not the configured issuer '{expected}'")]
    IssuerMismatch {
        /// Configured.
        expected: String,
        /// Found.
        found: String,
    },
    /// A capability the public-client profile cannot do without.
    #[error("the authorization server does not support {0}")]
    Missing(&'static str),
    /// An endpoint that is not https.
    #[error("the {0} endpoint is not an https URL")]
    InsecureEndpoint(&'static str),
}

impl MetadataError {
    /// Stable kind string (the JSON `oauth.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            MetadataError::Invalid(_) => "metadata-invalid",
            MetadataError::IssuerMismatch { .. } => "issuer-mismatch",
            MetadataError::Missing(_) => "metadata-unsupported",
            MetadataError::InsecureEndpoint(_) => "metadata-insecure-endpoint",
        }
    }
}

/// The checked metadata and what the checks noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedMetadata {
    /// The metadata.
    pub metadata: Metadata,
    /// Non-fatal notes (a `/`-only issuer difference, missing refresh-token support…).
    pub warnings: Vec<String>,
}

/// Parse and check metadata fetched for `issuer` (O-2, O-3, Q-12).
pub fn check_metadata(issuer: &str, body: &[u8]) -> Result<CheckedMetadata, MetadataError> {
    let metadata: Metadata =
        serde_json::from_slice(body).map_err(|e| MetadataError::Invalid(e.to_string()))?;
    let mut warnings = Vec::new();
    // Q-12 / O-2 (oauth-public -06): byte-for-byte identity; a final '/' is part of the
    // issuer's spelling and must be the same on both sides.
    if metadata.issuer != issuer {
        return Err(MetadataError::IssuerMismatch {
            expected: issuer.to_owned(),
            found: metadata.issuer,
        });
    }
    for (name, url) in [
        ("authorization", Some(&metadata.authorization_endpoint)),
        ("token", Some(&metadata.token_endpoint)),
        ("registration", metadata.registration_endpoint.as_ref()),
    ] {
        if url.is_some_and(|u| !u.starts_with("https://")) {
            return Err(MetadataError::InsecureEndpoint(name));
        }
    }
    let has = |list: &[String], v: &str| list.iter().any(|x| x == v);
    if !has(&metadata.response_types_supported, "code") {
        return Err(MetadataError::Missing(
            "the authorization code flow (response_types_supported ∌ code)",
        ));
    }
    if !has(&metadata.code_challenge_methods_supported, "S256") {
        return Err(MetadataError::Missing(
            "PKCE S256 (code_challenge_methods_supported)",
        ));
    }
    if !has(&metadata.token_endpoint_auth_methods_supported, "none") {
        return Err(MetadataError::Missing(
            "public clients (token_endpoint_auth_methods_supported ∌ none)",
        ));
    }
    if !metadata.grant_types_supported.is_empty()
        && !has(&metadata.grant_types_supported, "refresh_token")
    {
        warnings.push(
            "no refresh_token grant: the user will sign in again when the token expires".to_owned(),
        );
    }
    if metadata.registration_endpoint.is_none() {
        warnings.push(
            "no registration_endpoint: dynamic client registration is not possible".to_owned(),
        );
    }
    Ok(CheckedMetadata { metadata, warnings })
}

/// The scopes of the profile (O-4).
pub mod scope {
    /// Mail: IMAP, POP3, submission, ManageSieve, JMAP mail.
    pub const MAIL: &str = "urn:ietf:params:oauth:scope:mail";
    /// Calendars: CalDAV, JMAP calendars.
    pub const CALENDARS: &str = "urn:ietf:params:oauth:scope:calendars";
    /// Contacts: CardDAV, JMAP contacts.
    pub const CONTACTS: &str = "urn:ietf:params:oauth:scope:contacts";
    /// A refresh token.
    pub const OFFLINE: &str = "offline_access";
}

/// The RFC 7591 registration request of a public native client (O-5, O-6).
pub fn registration_request(
    redirect_uris: &[String],
    scope: &str,
    software_version: &str,
) -> serde_json::Value {
    serde_json::json!({
        "application_type": "native",
        "client_name": "pacc",
        "software_id": "pacc",
        "software_version": software_version,
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": scope,
    })
}

/// The grant type of RFC 8628.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// [`registration_request`] for a server that also offers the device grant (RFC 8628): the
/// client registers for it too, so that a headless run can use it later.
pub fn registration_request_with_device(
    redirect_uris: &[String],
    scope: &str,
    software_version: &str,
) -> serde_json::Value {
    let mut v = registration_request(redirect_uris, scope, software_version);
    v["grant_types"] =
        serde_json::json!(["authorization_code", "refresh_token", DEVICE_CODE_GRANT]);
    v
}

/// What the device authorization endpoint answered (RFC 8628 §3.2).
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    /// The code the client polls with (a secret).
    pub device_code: Secret,
    /// The code the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the code filled in, if the server gives one.
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds between polls (5 when not given).
    pub interval: u64,
}

/// The device authorization request (RFC 8628 §3.1) as a form body.
pub fn device_authorization_request(client_id: &str, scope: &str, resources: &[String]) -> String {
    let mut pairs = vec![("client_id", client_id), ("scope", scope)];
    for r in resources {
        pairs.push(("resource", r));
    }
    form_encode(&pairs)
}

/// Parse a device authorization response. The verification URI must be https.
pub fn parse_device_authorization(
    status: u16,
    body: &[u8],
) -> Result<DeviceAuthorization, TokenError> {
    #[derive(Deserialize)]
    struct R {
        device_code: Option<String>,
        user_code: Option<String>,
        verification_uri: Option<String>,
        verification_uri_complete: Option<String>,
        expires_in: Option<u64>,
        interval: Option<u64>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let r: R = serde_json::from_slice(body).map_err(|e| {
        TokenError::Invalid(format!(
            "device authorization response (HTTP {status}) is not JSON: {e}"
        ))
    })?;
    if let Some(error) = r.error {
        return Err(TokenError::Refused {
            error,
            description: r.error_description,
        });
    }
    let missing =
        |f: &str| TokenError::Invalid(format!("device authorization response has no {f}"));
    let verification_uri = r
        .verification_uri
        .ok_or_else(|| missing("verification_uri"))?;
    if !verification_uri.starts_with("https://")
        || r.verification_uri_complete
            .as_deref()
            .is_some_and(|u| !u.starts_with("https://"))
    {
        return Err(TokenError::Invalid(
            "the verification URI is not https".into(),
        ));
    }
    Ok(DeviceAuthorization {
        device_code: Secret::new(r.device_code.ok_or_else(|| missing("device_code"))?),
        user_code: r.user_code.ok_or_else(|| missing("user_code"))?,
        verification_uri,
        verification_uri_complete: r.verification_uri_complete,
        expires_in: r.expires_in.unwrap_or(600).min(3600),
        interval: r.interval.unwrap_or(5).clamp(1, 60),
    })
}

/// The device token request (RFC 8628 §3.4).
pub fn device_token_request(device_code: &Secret, client_id: &str) -> Secret {
    Secret::new(form_encode(&[
        ("grant_type", DEVICE_CODE_GRANT),
        ("device_code", device_code.expose()),
        ("client_id", client_id),
    ]))
}

/// One poll's verdict (RFC 8628 §3.5).
#[derive(Debug)]
pub enum DevicePoll {
    /// Not yet: poll again after the interval.
    Pending,
    /// Poll less often: add 5 seconds to the interval.
    SlowDown,
    /// Done.
    Tokens(Tokens),
    /// Refused, expired, or broken.
    Failed(TokenError),
}

/// Judge a token response to a device-code poll.
pub fn parse_device_poll(status: u16, body: &[u8]) -> DevicePoll {
    match parse_token_response(status, body) {
        Ok(t) => DevicePoll::Tokens(t),
        Err(TokenError::Refused { error, .. }) if error == "authorization_pending" => {
            DevicePoll::Pending
        }
        Err(TokenError::Refused { error, .. }) if error == "slow_down" => DevicePoll::SlowDown,
        Err(e) => DevicePoll::Failed(e),
    }
}

/// The `client_id` from a registration response (any 2xx, O-5).
pub fn registered_client_id(body: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    struct R {
        client_id: Option<String>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let r: R = serde_json::from_slice(body)
        .map_err(|e| format!("registration response is not JSON: {e}"))?;
    match (r.client_id, r.error) {
        (Some(id), None) if !id.is_empty() => Ok(id),
        (_, Some(e)) => Err(format!(
            "registration refused: {e}{}",
            r.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )),
        _ => Err("registration response has no client_id".to_owned()),
    }
}

/// O-6: a redirect URI must be loopback http with a port, or https; never http elsewhere, no
/// fragment, no dot-segments.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.contains('#') {
        return Err("a redirect URI must not have a fragment".into());
    }
    if uri.contains("/./") || uri.contains("/../") {
        return Err("a redirect URI must not have dot-segments".into());
    }
    if let Some(rest) = uri.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if host == "127.0.0.1" || host == "[::1]" {
            return Ok(());
        }
        return Err(format!(
            "http redirect URIs must be loopback (127.0.0.1 or [::1]), not {host}"
        ));
    }
    if uri.starts_with("https://") {
        return Ok(());
    }
    Err("a redirect URI must be loopback http or https".into())
}

/// Percent-encode for `application/x-www-form-urlencoded` and query strings.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The RFC 8707 resource indicator of a service (O-7): its URL for HTTP services, and for
/// SASL services a URI naming the host: `imap://HOST` (RFC 5092), `pop://HOST` (RFC 2384),
/// `smtp://HOST` (submission), `sieve://HOST` (RFC 5804).
pub fn resource_indicator(kind: ServiceKind, endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Url { url } => url.as_str().to_owned(),
        Endpoint::Host { host, .. } => {
            let scheme = match kind {
                ServiceKind::Pop3 => "pop",
                ServiceKind::Submit => "smtp",
                ServiceKind::Managesieve => "sieve",
                _ => "imap",
            };
            format!("{scheme}://{host}")
        }
    }
}

/// Whether a token this authorization server issues may be presented to this service (O-15, oauth-public -06). With `protected_resources` in the
/// metadata, only to what they cover: for HTTP services a component-wise URL match (scheme,
/// host, port, and the resource's path a prefix of the service's on a segment boundary),
/// for SASL services a host match. Without it, only hosts in the issuer's registrable
/// domain. `Err` says why not, for the confirmation and the JSON.
pub fn covers(meta: &Metadata, endpoint: &Endpoint) -> Result<(), String> {
    let host = endpoint.host();
    match &meta.protected_resources {
        Some(resources) => {
            let ok = resources.iter().any(|r| match endpoint {
                Endpoint::Url { url } => url_covers(r, url.as_str()),
                Endpoint::Host { .. } => resource_host(r).is_some_and(|h| h == host),
            });
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{host} is not among the authorization server's protected_resources"
                ))
            }
        }
        None => {
            let issuer_host = crate::name::url_host(&meta.issuer)
                .ok_or_else(|| "the issuer has no https host".to_owned())?;
            if issuer_host.registrable() == host.registrable() {
                Ok(())
            } else {
                Err(format!(
                    "{host} is outside the issuer's domain {} and the authorization server lists no protected_resources",
                    issuer_host.registrable()
                ))
            }
        }
    }
}

/// The host of `scheme://host[:port]/…`, normalised.
fn resource_host(r: &str) -> Option<crate::name::Domain> {
    let rest = &r[r.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    crate::name::Domain::parse(host).ok()
}

/// Component-wise: same scheme, host and port (443 implied), and the resource's path a
/// prefix of the URL's path on a `/` boundary.
fn url_covers(resource: &str, url: &str) -> bool {
    let parse = |u: &str| -> Option<(String, crate::name::Domain, u16, String)> {
        let (scheme, rest) = u.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = path.split(['?', '#']).next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, 443),
        };
        let path = if path.is_empty() { "/" } else { path };
        Some((
            scheme.to_ascii_lowercase(),
            crate::name::Domain::parse(host).ok()?,
            port,
            path.to_owned(),
        ))
    };
    let (Some(r), Some(u)) = (parse(resource), parse(url)) else {
        return false;
    };
    if r.0 != u.0 || r.1 != u.1 || r.2 != u.2 {
        return false;
    }
    let prefix = r.3.trim_end_matches('/');
    u.3 == r.3 || u.3 == prefix || u.3.starts_with(&format!("{prefix}/"))
}

/// The authorization request (O-7): response_type code, PKCE S256, state, and one
/// `resource` per service the token is for (RFC 8707).
#[allow(clippy::too_many_arguments)]
pub fn authorization_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
    pkce: &Pkce,
    resources: &[String],
) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", state),
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for r in resources {
        pairs.push(("resource", r));
    }
    // OpenID Connect servers issue a refresh token for offline_access only with consent.
    if scope.split(' ').any(|s| s == scope::OFFLINE) {
        pairs.push(("prompt", "consent"));
    }
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("{endpoint}{sep}{}", form_encode(&pairs))
}

/// Why an authorization response is refused (O-9).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectError {
    /// The AS returned an error.
    #[error("the authorization server refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// `error`.
        error: String,
        /// `error_description`.
        description: Option<String>,
    },
    /// `state` missing or different: a forged or stale redirect.
    #[error("the redirect's state does not match the request (possible CSRF); refused")]
    State,
    /// RFC 9207: `iss` missing although the server advertises it.
    #[error(
        "the redirect has no iss although the server promises one (possible mix-up attack); refused"
    )]
    IssuerMissing,
    /// RFC 9207: `iss` names another issuer.
    #[error("the redirect's iss '{found}' is not the issuer (possible mix-up attack); refused")]
    IssuerMismatch {
        /// What `iss` said.
        found: String,
    },
    /// No `code`.
    #[error("the redirect carries no authorization code")]
    NoCode,
}

impl RedirectError {
    /// Stable kind string (the JSON `oauth.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            RedirectError::Refused { error, .. } if error == "access_denied" => "access-denied",
            RedirectError::Refused { error, .. } if error == "invalid_target" => "invalid-target",
            RedirectError::Refused { .. } => "authorization-refused",
            RedirectError::State => "state-mismatch",
            RedirectError::IssuerMissing => "iss-missing",
            RedirectError::IssuerMismatch { .. } => "iss-mismatch",
            RedirectError::NoCode => "no-code",
        }
    }
}

/// RFC 9728 protected-resource metadata: the authorization servers a resource accepts
/// tokens from (`authorization_servers`), for O-14. `Err` when it is not that document.
pub fn protected_resource_servers(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        authorization_servers: Vec<String>,
    }
    let r: R = serde_json::from_slice(body)
        .map_err(|e| format!("the protected-resource metadata is not valid: {e}"))?;
    Ok(r.authorization_servers)
}

/// The issuer an `openid-configuration` URL (RFC 7628 §3.2.2 error responses) names:
/// the URL without `/.well-known/openid-configuration` (or the RFC 8414 form).
pub fn issuer_of_configuration_url(url: &str) -> Option<String> {
    if let Some(i) = url.strip_suffix("/.well-known/openid-configuration") {
        return Some(i.to_owned());
    }
    let (origin, path) = url.split_once("/.well-known/oauth-authorization-server")?;
    Some(format!("{origin}{path}"))
}

/// Whether two issuer identifiers name the same server, for comparing what a resource
/// server says with PACC's issuer (O-14): exact, or equal but for one final `/` (resource
/// servers spell the issuer their own way; the metadata check itself stays exact, Q-12).
pub fn same_issuer(a: &str, b: &str) -> bool {
    a == b || a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Check the query of the redirect to the loopback listener; return the code.
pub fn parse_redirect(
    query: &str,
    expected_state: &str,
    issuer: &str,
    iss_required: bool,
) -> Result<Secret, RedirectError> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // The state is checked first: an error response with a wrong state is just as forged.
    if get("state").as_deref() != Some(expected_state) {
        return Err(RedirectError::State);
    }
    match get("iss") {
        Some(iss) if iss != issuer => return Err(RedirectError::IssuerMismatch { found: iss }),
        None if iss_required => return Err(RedirectError::IssuerMissing),
        _ => {}
    }
    if let Some(error) = get("error") {
        return Err(RedirectError::Refused {
            error,
            description: get("error_description"),
        });
    }
    get("code")
        .filter(|c| !c.is_empty())
        .map(Secret::new)
        .ok_or(RedirectError::NoCode)
}

/// The token request (O-10) as a form body.
pub fn token_request(
    code: &Secret,
    redirect_uri: &str,
    client_id: &str,
    pkce: &Pkce,
    resources: &[String],
) -> Secret {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", pkce.verifier.expose()),
    ];
    for r in resources {
        pairs.push(("resource", r));
    }
    Secret::new(form_encode(&pairs))
}

/// The refresh request (O-11).
pub fn refresh_request(refresh_token: &Secret, client_id: &str) -> Secret {
    Secret::new(form_encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", client_id),
    ]))
}

/// Tokens from a token response.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The access token.
    pub access_token: Secret,
    /// `Bearer` (or `DPoP`).
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: Option<u64>,
    /// The refresh token, if any.
    pub refresh_token: Option<Secret>,
    /// Granted scope.
    pub scope: Option<String>,
}

/// Why a token response gave no usable token. `kind()` is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token endpoint answered with an OAuth error (RFC 6749 §5.2).
    #[error("the token endpoint refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// `error` (`invalid_grant`, `invalid_target`, …).
        error: String,
        /// `error_description`.
        description: Option<String>,
    },
    /// O-12 / O-13: the token is not a Bearer token (a DPoP-bound token cannot be presented
    /// over IMAP, POP3 or SMTP), or the type is missing.
    #[error("the token endpoint issued a {} token; pacc uses Bearer tokens only (O-13), so it is not used", found.as_deref().unwrap_or("untyped"))]
    TokenType {
        /// What `token_type` said.
        found: Option<String>,
    },
    /// Not a token response.
    #[error("{0}")]
    Invalid(String),
}

impl TokenError {
    /// Stable kind string.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::Refused { error, .. } if error == "invalid_target" => "invalid-target",
            TokenError::Refused { .. } => "token-refused",
            TokenError::TokenType { .. } => "token-type",
            TokenError::Invalid(_) => "token-invalid",
        }
    }
}

/// Parse a token endpoint response (RFC 6749 §5). Only `Bearer` tokens are accepted
/// (O-12, O-13: checked on every response, the refresh grant's too).
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<Tokens, TokenError> {
    #[derive(Deserialize)]
    struct R {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<u64>,
        refresh_token: Option<String>,
        scope: Option<String>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let r: R = serde_json::from_slice(body).map_err(|e| {
        TokenError::Invalid(format!("token response (HTTP {status}) is not JSON: {e}"))
    })?;
    if let Some(error) = r.error {
        return Err(TokenError::Refused {
            error,
            description: r.error_description,
        });
    }
    let access_token = r
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::Invalid("token response has no access_token".into()))?;
    match r.token_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        other => {
            return Err(TokenError::TokenType {
                found: other.map(str::to_owned),
            });
        }
    }
    Ok(Tokens {
        access_token: Secret::new(access_token),
        token_type: "Bearer".into(),
        expires_in: r.expires_in,
        refresh_token: r.refresh_token.map(Secret::new),
        scope: r.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Spec §4.4 metadata URL vectors.
    #[test]
    fn metadata_urls() {
        let cases = [
            (
                "https://auth.example.com/",
                "https://auth.example.com/.well-known/oauth-authorization-server",
            ),
            (
                "https://auth.example.com",
                "https://auth.example.com/.well-known/oauth-authorization-server",
            ),
            (
                "https://identity.example.test/tenant/",
                "https://identity.example.test/.well-known/oauth-authorization-server/tenant",
            ),
            (
                "https://identity.example.test:8443/tenant",
                "https://identity.example.test:8443/.well-known/oauth-authorization-server/tenant",
            ),
        ];
        for (issuer, url) in cases {
            assert_eq!(metadata_url(issuer).as_deref(), Some(url), "{issuer}");
        }
        assert_eq!(
            openid_configuration_url("https://identity.example.test/tenant/").as_deref(),
            Some("https://identity.example.test/tenant/.well-known/openid-configuration")
        );
        assert!(metadata_url("http://a.example/").is_none());
    }

    fn meta(issuer: &str) -> serde_json::Value {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": "https://auth.example.test/auth",
            "token_endpoint": "https://auth.example.test/token",
            "registration_endpoint": "https://auth.example.test/reg",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true
        })
    }

    #[test]
    fn metadata_checks() {
        let ok = check_metadata(
            "https://auth.example.test",
            meta("https://auth.example.test").to_string().as_bytes(),
        )
        .unwrap();
        assert!(ok.warnings.is_empty());
        // Q-12 (oauth-public -06): exact identity; one final slash is a different issuer.
        for (configured, served) in [
            ("https://auth.example.test/", "https://auth.example.test"),
            ("https://auth.example.test", "https://auth.example.test/"),
        ] {
            let e = check_metadata(configured, meta(served).to_string().as_bytes()).unwrap_err();
            assert!(matches!(e, MetadataError::IssuerMismatch { .. }), "{e}");
            assert_eq!(e.kind(), "issuer-mismatch");
        }
        assert!(
            check_metadata(
                "https://auth.example.test/",
                meta("https://auth.example.test/").to_string().as_bytes()
            )
            .is_ok()
        );
        let e = check_metadata(
            "https://auth.example.test",
            meta("https://evil.example").to_string().as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(e, MetadataError::IssuerMismatch { .. }));
        let mut m = meta("https://auth.example.test");
        m["code_challenge_methods_supported"] = serde_json::json!(["plain"]);
        assert!(matches!(
            check_metadata("https://auth.example.test", m.to_string().as_bytes()),
            Err(MetadataError::Missing(_))
        ));
        let mut m = meta("https://auth.example.test");
        m["token_endpoint"] = serde_json::json!("http://auth.example.test/token");
        assert_eq!(
            check_metadata("https://auth.example.test", m.to_string().as_bytes()),
            Err(MetadataError::InsecureEndpoint("token"))
        );
        assert!(matches!(
            check_metadata("x", b"[]"),
            Err(MetadataError::Invalid(_))
        ));
    }

    #[test]
    fn redirect_uris() {
        assert!(check_redirect_uri("http://127.0.0.1:53123/cb").is_ok());
        assert!(check_redirect_uri("http://[::1]:8080/cb").is_ok());
        assert!(check_redirect_uri("http://example.com/cb").is_err());
        assert!(check_redirect_uri("http://127.0.0.1:1/cb#x").is_err());
        assert!(check_redirect_uri("http://127.0.0.1:1/a/../cb").is_err());
        assert!(check_redirect_uri("http://127.0.0.1.evil.example/cb").is_err());
    }

    #[test]
    fn authorization_round_trip() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        let url = authorization_url(
            "https://auth.example.test/auth",
            "cid",
            "http://127.0.0.1:4000/cb",
            "urn:ietf:params:oauth:scope:mail offline_access",
            "st",
            &pkce,
            &["https://jmap.example.test/session".to_owned()],
        );
        assert!(url.starts_with("https://auth.example.test/auth?response_type=code&client_id=cid&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcb"));
        assert!(url.contains(
            "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
        ));
        assert!(url.contains("&resource=https%3A%2F%2Fjmap.example.test%2Fsession"));
        let iss = "https://auth.example.test";
        let q = "code=abc&state=st&iss=https%3A%2F%2Fauth.example.test";
        assert_eq!(parse_redirect(q, "st", iss, true).unwrap().expose(), "abc");
        assert_eq!(
            parse_redirect(
                "code=abc&state=other&iss=https%3A%2F%2Fauth.example.test",
                "st",
                iss,
                true
            )
            .unwrap_err(),
            RedirectError::State
        );
        assert_eq!(
            parse_redirect("code=abc&state=st", "st", iss, true).unwrap_err(),
            RedirectError::IssuerMissing
        );
        assert!(parse_redirect("code=abc&state=st", "st", iss, false).is_ok());
        assert_eq!(
            parse_redirect(
                "code=abc&state=st&iss=https%3A%2F%2Fevil.example",
                "st",
                iss,
                false
            )
            .unwrap_err(),
            RedirectError::IssuerMismatch {
                found: "https://evil.example".into()
            }
        );
        assert!(matches!(
            parse_redirect("error=access_denied&state=st", "st", iss, false),
            Err(RedirectError::Refused { .. })
        ));
        let body = token_request(
            &Secret::new("abc"),
            "http://127.0.0.1:4000/cb",
            "cid",
            &pkce,
            &[],
        );
        assert!(
            body.expose()
                .contains("code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        );
        assert_eq!(format!("{body:?}"), "[redacted]");
    }

    #[test]
    fn registration_and_tokens() {
        let req = registration_request(&["http://127.0.0.1/cb".into()], "mail", "0.1");
        assert_eq!(req["token_endpoint_auth_method"], "none");
        assert_eq!(
            registered_client_id(br#"{"client_id":"abc"}"#).unwrap(),
            "abc"
        );
        assert!(
            registered_client_id(
                br#"{"error":"invalid_redirect_uri","error_description":"loopback only"}"#
            )
            .unwrap_err()
            .contains("loopback only")
        );
        let t = parse_token_response(200, br#"{"access_token":"at","token_type":"Bearer","expires_in":600,"refresh_token":"rt","scope":"mail"}"#).unwrap();
        assert_eq!(t.access_token.expose(), "at");
        assert_eq!(t.refresh_token.unwrap().expose(), "rt");
        assert!(
            parse_token_response(400, br#"{"error":"invalid_grant"}"#)
                .unwrap_err()
                .to_string()
                .contains("invalid_grant")
        );
        assert_eq!(
            parse_token_response(400, br#"{"error":"invalid_target"}"#)
                .unwrap_err()
                .kind(),
            "invalid-target"
        );
        // O-12 / O-13: Bearer only, on every response; a missing type is refused too.
        for body in [
            &br#"{"access_token":"at","token_type":"DPoP"}"#[..],
            br#"{"access_token":"at","token_type":"N_A"}"#,
            br#"{"access_token":"at"}"#,
        ] {
            let e = parse_token_response(200, body).unwrap_err();
            assert_eq!(e.kind(), "token-type", "{e}");
        }
        assert!(
            parse_token_response(200, br#"{"access_token":"at","token_type":"bearer"}"#).is_ok()
        );
        // Never ask for DPoP-bound tokens (O-13).
        assert!(req.get("dpop_bound_access_tokens").is_none());
    }

    #[test]
    fn device_grant_messages() {
        let d = parse_device_authorization(
            200,
            br#"{"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://a.example/device","verification_uri_complete":"https://a.example/device?user_code=ABCD-EFGH","expires_in":600}"#,
        )
        .unwrap();
        assert_eq!(
            (d.user_code.as_str(), d.interval, d.expires_in),
            ("ABCD-EFGH", 5, 600)
        );
        assert!(format!("{:?}", d.device_code).contains("redacted"));
        assert!(parse_device_authorization(200, br#"{"device_code":"dc","user_code":"x","verification_uri":"http://a.example/device"}"#).is_err(), "https only");
        assert!(matches!(
            parse_device_poll(400, br#"{"error":"authorization_pending"}"#),
            DevicePoll::Pending
        ));
        assert!(matches!(
            parse_device_poll(400, br#"{"error":"slow_down"}"#),
            DevicePoll::SlowDown
        ));
        assert!(matches!(
            parse_device_poll(400, br#"{"error":"expired_token"}"#),
            DevicePoll::Failed(_)
        ));
        assert!(matches!(
            parse_device_poll(200, br#"{"access_token":"t","token_type":"Bearer"}"#),
            DevicePoll::Tokens(_)
        ));
        assert!(
            device_token_request(&Secret::new("dc"), "cid")
                .expose()
                .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code")
        );
        let r = registration_request_with_device(&["http://127.0.0.1/cb".into()], "s", "1");
        assert_eq!(r["grant_types"][2], DEVICE_CODE_GRANT);
    }

    #[test]
    fn resource_indicators_and_coverage() {
        use crate::document::{Endpoint, HttpsUrl, ServiceKind, TlsMode};
        use crate::name::Domain;
        let host = |h: &str| Endpoint::Host {
            host: Domain::parse(h).unwrap(),
            port: 993,
            tls: TlsMode::Implicit,
        };
        let url = |u: &str| Endpoint::Url {
            url: HttpsUrl::parse(u).unwrap(),
        };
        assert_eq!(
            resource_indicator(ServiceKind::Imap, &host("imap.example.com")),
            "imap://imap.example.com"
        );
        assert_eq!(
            resource_indicator(ServiceKind::Pop3, &host("pop.example.com")),
            "pop://pop.example.com"
        );
        assert_eq!(
            resource_indicator(ServiceKind::Submit, &host("smtp.example.com")),
            "smtp://smtp.example.com"
        );
        assert_eq!(
            resource_indicator(ServiceKind::Managesieve, &host("s.example.com")),
            "sieve://s.example.com"
        );
        assert_eq!(
            resource_indicator(ServiceKind::Caldav, &url("https://dav.example.com/cal/")),
            "https://dav.example.com/cal/"
        );
        let mut m: Metadata = serde_json::from_value(meta("https://auth.example.com/")).unwrap();
        // Without protected_resources: the issuer's registrable domain only.
        assert!(covers(&m, &host("imap.example.com")).is_ok());
        assert!(covers(&m, &host("imap.other.net")).is_err());
        m.protected_resources = Some(vec![
            "imap://imap.other.net".into(),
            "https://dav.example.com/cal".into(),
        ]);
        assert!(covers(&m, &host("imap.other.net")).is_ok());
        assert!(
            covers(&m, &host("imap.example.com")).is_err(),
            "only what is listed"
        );
        assert!(covers(&m, &url("https://dav.example.com/cal/alice/")).is_ok());
        assert!(
            covers(&m, &url("https://dav.example.com/calendar/")).is_err(),
            "segment boundary"
        );
        m.protected_resources = Some(vec!["https://dav.example.com:8443/cal".into()]);
        assert!(
            covers(&m, &url("https://dav.example.com/cal/")).is_err(),
            "port"
        );
        m.protected_resources = Some(vec!["https://dav.example.com:443/cal".into()]);
        assert!(
            covers(&m, &url("https://dav.example.com/cal/")).is_ok(),
            "443 is implied"
        );
        assert!(
            covers(&m, &url("https://jmap.example.com/cal/")).is_err(),
            "host"
        );
    }
}
