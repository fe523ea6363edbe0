//! The OAuth public-client profile's messages (spec §2.7, O-1 … O-14): metadata discovery
//! and checks, dynamic client registration, the authorization request and response, token
//! requests and responses. Building and judging messages only; the shell sends them.

use serde::{Deserialize, Serialize};

use super::Secret;
use super::pkce::Pkce;

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
    if metadata.issuer != issuer {
        // Q-12: equal after removing one terminating '/' from both is tolerated, with a note.
        if metadata
            .issuer
            .strip_suffix('/')
            .unwrap_or(&metadata.issuer)
            == issuer.strip_suffix('/').unwrap_or(issuer)
        {
            warnings.push(format!(
                "issuer differs only by a final '/': '{}' vs '{issuer}'",
                metadata.issuer
            ));
        } else {
            return Err(MetadataError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: metadata.issuer,
            });
        }
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

/// The authorization request (O-7): response_type code, PKCE S256, state, and `resource`
/// only when a protected resource is known (the JMAP session URL).
pub fn authorization_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
    pkce: &Pkce,
    resource: Option<&str>,
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
    if let Some(r) = resource {
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
    /// RFC 9207: `iss` missing although advertised, or different.
    #[error("the redirect's iss does not name the issuer (possible mix-up attack); refused")]
    Issuer,
    /// No `code`.
    #[error("the redirect carries no authorization code")]
    NoCode,
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
        Some(iss) if iss != issuer => return Err(RedirectError::Issuer),
        None if iss_required => return Err(RedirectError::Issuer),
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
    resource: Option<&str>,
) -> Secret {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", pkce.verifier.expose()),
    ];
    if let Some(r) = resource {
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

/// Parse a token endpoint response (RFC 6749 §5).
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<Tokens, String> {
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
    let r: R = serde_json::from_slice(body)
        .map_err(|e| format!("token response (HTTP {status}) is not JSON: {e}"))?;
    if let Some(e) = r.error {
        return Err(format!(
            "token request refused: {e}{}",
            r.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    let access_token = r
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("token response has no access_token")?;
    Ok(Tokens {
        access_token: Secret::new(access_token),
        token_type: r.token_type.unwrap_or_else(|| "Bearer".into()),
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
        let slash = check_metadata(
            "https://auth.example.test/",
            meta("https://auth.example.test").to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(
            slash.warnings.len(),
            1,
            "Q-12 tolerates one final slash, with a note"
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
            Some("https://jmap.example.test/session"),
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
            RedirectError::Issuer
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
            RedirectError::Issuer
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
            None,
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
                .contains("invalid_grant")
        );
    }
}
