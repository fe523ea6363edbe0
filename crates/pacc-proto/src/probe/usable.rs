//! What a service can be used with: the probe's mechanisms intersected with the document's
//! `authentication` block (P-7, A-1, A-2, Q-6, Q-7).

use serde::Serialize;

use super::Capabilities;
use super::http::HttpCapabilities;
use crate::document::{Authentication, ServiceKind};

/// SASL mechanisms that present an OAuth token.
pub const TOKEN_MECHANISMS: [&str; 2] = ["OAUTHBEARER", "XOAUTH2"];

/// Whether `m` is a password mechanism (A-2, W-3).
pub fn is_password_mechanism(m: &str) -> bool {
    let m = m.to_ascii_uppercase();
    m == "PLAIN" || m == "LOGIN" || m.starts_with("SCRAM-")
}

/// What a service can be signed in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Usable {
    /// OAuth and password.
    Both,
    /// OAuth only.
    Oauth,
    /// Password only.
    Password,
    /// Neither: the service will be skipped.
    Nothing,
}

impl Usable {
    fn from(oauth: bool, password: bool) -> Self {
        match (oauth, password) {
            (true, true) => Usable::Both,
            (true, false) => Usable::Oauth,
            (false, true) => Usable::Password,
            (false, false) => Usable::Nothing,
        }
    }
}

/// The document's side: OAuth needs a published issuer; passwords are allowed when
/// `password` is true or the block is absent, never when it is false.
fn document_allows(auth: Option<&Authentication>) -> (bool, bool) {
    match auth {
        Some(a) => (a.oauth_public.is_some(), a.password),
        None => (false, true),
    }
}

/// A text service.
pub fn text(kind: ServiceKind, caps: &Capabilities, auth: Option<&Authentication>) -> Usable {
    let (doc_oauth, doc_password) = document_allows(auth);
    let token = caps
        .mechanisms
        .iter()
        .any(|m| TOKEN_MECHANISMS.contains(&m.as_str()));
    let sasl_password = caps.mechanisms.iter().any(|m| is_password_mechanism(m));
    let legacy_password = match kind {
        // W-3: IMAP LOGIN unless LOGINDISABLED; POP3 USER/PASS.
        ServiceKind::Imap => !caps.has("LOGINDISABLED"),
        ServiceKind::Pop3 => caps.has("USER"),
        _ => false,
    };
    Usable::from(
        doc_oauth && token,
        doc_password && (sasl_password || legacy_password),
    )
}

/// An HTTP service: `Bearer`/`DPoP` for tokens, `Basic` for passwords.
pub fn http(caps: &HttpCapabilities, auth: Option<&Authentication>) -> Usable {
    let (doc_oauth, doc_password) = document_allows(auth);
    let token = caps
        .challenges
        .iter()
        .any(|c| c.is("Bearer") || c.is("DPoP"));
    let basic = caps.challenges.iter().any(|c| c.is("Basic"));
    Usable::from(doc_oauth && token, doc_password && basic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::OAuthPublic;
    use crate::probe::http::Challenge;

    fn caps(mechs: &[&str], flags: &[&str]) -> Capabilities {
        Capabilities::from_lists(mechs, flags).unwrap()
    }

    fn auth(password: bool, oauth: bool) -> Authentication {
        Authentication {
            password,
            oauth_public: oauth.then(|| OAuthPublic {
                issuer: "https://auth.example/".into(),
            }),
        }
    }

    #[test]
    fn intersections() {
        let c = caps(&["PLAIN", "OAUTHBEARER"], &[]);
        assert_eq!(
            text(ServiceKind::Submit, &c, Some(&auth(true, true))),
            Usable::Both
        );
        assert_eq!(
            text(ServiceKind::Submit, &c, Some(&auth(false, true))),
            Usable::Oauth,
            "Q-7"
        );
        assert_eq!(
            text(ServiceKind::Submit, &c, Some(&auth(true, false))),
            Usable::Password
        );
        assert_eq!(
            text(ServiceKind::Submit, &c, None),
            Usable::Password,
            "Q-6: no OAuth without an issuer"
        );
        let oauth_only = caps(&["XOAUTH2"], &["LOGINDISABLED"]);
        assert_eq!(
            text(ServiceKind::Imap, &oauth_only, Some(&auth(true, false))),
            Usable::Nothing
        );
        let imap_login = caps(&[], &["IMAP4REV1"]);
        assert_eq!(
            text(ServiceKind::Imap, &imap_login, Some(&auth(true, false))),
            Usable::Password
        );
        let pop_user = caps(&[], &["USER"]);
        assert_eq!(text(ServiceKind::Pop3, &pop_user, None), Usable::Password);
        assert_eq!(
            text(
                ServiceKind::Managesieve,
                &caps(&["SCRAM-SHA-256"], &[]),
                None
            ),
            Usable::Password
        );
    }

    #[test]
    fn http_challenges() {
        let h = |schemes: &[&str]| HttpCapabilities {
            status: 401,
            challenges: schemes
                .iter()
                .map(|s| Challenge {
                    scheme: (*s).into(),
                    token68: None,
                    params: vec![],
                })
                .collect(),
            challenges_truncated: false,
            dav: None,
            warnings: vec![],
        };
        assert_eq!(
            http(&h(&["Basic", "Bearer"]), Some(&auth(true, true))),
            Usable::Both
        );
        assert_eq!(http(&h(&["DPoP"]), Some(&auth(true, true))), Usable::Oauth);
        assert_eq!(
            http(&h(&["Negotiate"]), Some(&auth(true, true))),
            Usable::Nothing
        );
    }
}
