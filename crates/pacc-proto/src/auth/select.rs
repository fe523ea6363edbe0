//! Choosing how to sign in to each service (spec §2.6, A-1 … A-6, W-3, O-4, O-12).

use serde::Serialize;

use crate::document::{Config, ServiceKind};
use crate::name::Domain;
use crate::probe::usable::is_password_mechanism;
use crate::probe::{Offered, ProbeStatus, ServiceProbe};

use super::oauth::{Metadata, scope};

/// How one service will be signed in to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Method {
    /// An OAuth access token: SASL `OAUTHBEARER` or `XOAUTH2`, or HTTP `Bearer`.
    Oauth {
        /// The mechanism or scheme.
        mechanism: String,
    },
    /// The password, with the full address as username: SASL `PLAIN`/`LOGIN`, IMAP `LOGIN`,
    /// POP3 `USER`, or HTTP `Basic`.
    Password {
        /// The mechanism or scheme.
        mechanism: String,
    },
}

/// The decision for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// Which service.
    pub service: ServiceKind,
    /// `host:port` or URL.
    pub target: String,
    /// The host that would receive the credential.
    pub host: Domain,
    /// The method, or why the service is skipped (A-3).
    #[serde(flatten)]
    pub decision: Decision,
    /// With [`AuthPolicy::Auto`] and OAuth chosen: the password method to use instead if the
    /// OAuth sign-in fails, is refused or cannot run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Method>,
    /// Why OAuth is not used for this service although the provider publishes an issuer
    /// (the token would not be covered, O-15; the server names another issuer, O-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_token: Option<String>,
}

impl Choice {
    /// The method chosen, if any.
    pub fn method(&self) -> Option<&Method> {
        match &self.decision {
            Decision::Use(m) => Some(m),
            Decision::Skip { .. } => None,
        }
    }

    /// Whether OAuth was chosen.
    pub fn uses_oauth(&self) -> bool {
        matches!(self.decision, Decision::Use(Method::Oauth { .. }))
    }

    /// Whether a password was chosen.
    pub fn uses_password(&self) -> bool {
        matches!(self.decision, Decision::Use(Method::Password { .. }))
    }
}

/// Chosen or skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Decision {
    /// Use this method.
    Use(Method),
    /// Skip, for this reason.
    Skip {
        /// Why.
        skipped: String,
    },
}

/// Which method the user wants (`pacc setup --auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthPolicy {
    /// OAuth where the service and the issuer allow it (A-1), else the password; a failed
    /// OAuth leg falls back to the password where the provider allows one.
    #[default]
    Auto,
    /// OAuth only: services that cannot use it are skipped.
    Oauth,
    /// The password only, even where OAuth is offered.
    Password,
}

/// What the OAuth side can offer the choice.
#[derive(Debug, Clone, Copy)]
pub enum OAuth<'a> {
    /// The document publishes no issuer.
    NoIssuer,
    /// The issuer's metadata could not be used; why.
    Unusable(&'a str),
    /// The checked metadata (O-15 coverage is decided from it), and services whose server
    /// names another authorization server (O-14), with the reason.
    Ready {
        /// The issuer's checked metadata.
        metadata: &'a Metadata,
        /// Services that must not be sent a token, and why.
        refused: &'a [(ServiceKind, String)],
    },
}

fn pick<'a>(offered: &'a [String], order: &[&str]) -> Option<&'a str> {
    order
        .iter()
        .find_map(|want| offered.iter().find(|m| m.eq_ignore_ascii_case(want)))
        .map(String::as_str)
}

/// Decide per service (A-1 … A-3, O-14, O-15, Q-6, Q-7) under `policy`.
pub fn choose(
    config: &Config,
    probes: &[ServiceProbe],
    oauth: OAuth<'_>,
    policy: AuthPolicy,
) -> Vec<Choice> {
    let auth = config.authentication.as_ref();
    // Q-6: no authentication block → password allowed; Q-7: password false → never.
    let doc_password = auth.is_none_or(|a| a.password);
    let mut out = Vec::new();
    for svc in config.protocols.iter() {
        let host = svc.endpoint.host();
        let skip = |target: String, host: Domain, why: String| Choice {
            service: svc.kind,
            target,
            host,
            decision: Decision::Skip { skipped: why },
            fallback: None,
            no_token: None,
        };
        let Some(p) = probes.iter().find(|p| p.service == svc.kind) else {
            out.push(skip(host.to_string(), host, "not probed".into()));
            continue;
        };
        let (token, password) = match &p.status {
            ProbeStatus::Unreachable { kind, error } => {
                out.push(skip(
                    p.target.clone(),
                    host,
                    format!("unreachable: {error} [{kind}]"),
                ));
                continue;
            }
            ProbeStatus::Reachable {
                offered: Offered::Text(c),
                ..
            } => {
                // O-12: OAUTHBEARER preferred. W-3: PLAIN, then LOGIN, then the legacy commands.
                let token = pick(&c.mechanisms, &["OAUTHBEARER", "XOAUTH2"]).map(str::to_owned);
                let sasl: Vec<String> = c
                    .mechanisms
                    .iter()
                    .filter(|m| is_password_mechanism(m))
                    .cloned()
                    .collect();
                let password = pick(&sasl, &["PLAIN", "LOGIN"])
                    .map(str::to_owned)
                    .or_else(|| match svc.kind {
                        ServiceKind::Imap if !c.has("LOGINDISABLED") => {
                            Some("IMAP-LOGIN".to_owned())
                        }
                        ServiceKind::Pop3 if c.has("USER") => Some("USER".to_owned()),
                        _ => None,
                    });
                (token, password)
            }
            ProbeStatus::Reachable {
                offered: Offered::Http(h),
                ..
            } => {
                let token = h
                    .challenges
                    .iter()
                    .find(|c| c.is("Bearer"))
                    .map(|_| "Bearer".to_owned());
                let password = h
                    .challenges
                    .iter()
                    .find(|c| c.is("Basic"))
                    .map(|_| "Basic".to_owned());
                (token, password)
            }
        };
        // Why no token may go to this service, if one was offered.
        let token_blocked: Option<String> = match (&token, oauth) {
            (None, _) => None,
            (Some(_), OAuth::NoIssuer) => Some("the provider publishes no OAuth issuer".into()),
            (Some(_), OAuth::Unusable(why)) => {
                Some(format!("the OAuth issuer cannot be used: {why}"))
            }
            (Some(_), OAuth::Ready { metadata, refused }) => refused
                .iter()
                .find(|(k, _)| *k == svc.kind)
                .map(|(_, why)| why.clone())
                .or_else(|| super::oauth::covers(metadata, &svc.endpoint).err()),
        };
        let oauth_method = token
            .clone()
            .filter(|_| token_blocked.is_none())
            .map(|mechanism| Method::Oauth { mechanism });
        let password_method = password
            .clone()
            .filter(|_| doc_password)
            .map(|mechanism| Method::Password { mechanism });
        let no_token = match (&token, &token_blocked, oauth) {
            (Some(_), Some(why), OAuth::Ready { .. }) => Some(why.clone()),
            _ => None,
        };
        let why_not = |what: &str| -> String {
            if token.is_none() && password.is_none() {
                return "offers no mechanism pacc can use".into();
            }
            let mut parts = Vec::new();
            if let Some(b) = &token_blocked {
                parts.push(format!("no OAuth: {b}"));
            } else if token.is_none() {
                parts.push("no OAuth: the server offers no token mechanism".into());
            }
            if !doc_password {
                parts.push("no password: the provider does not allow passwords".into());
            } else if password.is_none() {
                parts.push("no password: the server offers no password mechanism".into());
            }
            format!("{what}{}", parts.join("; "))
        };
        let (decision, fallback) = match policy {
            AuthPolicy::Password => match password_method {
                Some(p) => (Decision::Use(p), None),
                None => (
                    Decision::Skip {
                        skipped: why_not("--auth password: "),
                    },
                    None,
                ),
            },
            AuthPolicy::Oauth => match oauth_method {
                Some(o) => (Decision::Use(o), None),
                None => (
                    Decision::Skip {
                        skipped: why_not("--auth oauth: "),
                    },
                    None,
                ),
            },
            AuthPolicy::Auto => match (oauth_method, password_method) {
                (Some(o), p) => (Decision::Use(o), p),
                (None, Some(p)) => (Decision::Use(p), None),
                (None, None) => (
                    Decision::Skip {
                        skipped: why_not(""),
                    },
                    None,
                ),
            },
        };
        out.push(Choice {
            service: svc.kind,
            target: p.target.clone(),
            host,
            decision,
            fallback,
            no_token,
        });
    }
    out
}

/// The union of scopes needed for one grant covering every OAuth service (A-4, O-4),
/// restricted to those the server advertises when it lists any.
pub fn scopes(choices: &[Choice], supported: &[String]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for c in choices {
        if !matches!(c.decision, Decision::Use(Method::Oauth { .. })) {
            continue;
        }
        let s = match c.service {
            ServiceKind::Caldav => scope::CALENDARS,
            ServiceKind::Carddav => scope::CONTACTS,
            _ => scope::MAIL,
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if !out.is_empty() {
        out.push(scope::OFFLINE);
    }
    if !supported.is_empty() {
        out.retain(|s| supported.iter().any(|x| x == s));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::TlsInfo;
    use crate::probe::http::{Challenge, HttpCapabilities};
    use crate::probe::usable::Usable;
    use crate::probe::{Capabilities, TlsDetails};

    fn reachable(kind: ServiceKind, offered: Offered) -> ServiceProbe {
        ServiceProbe {
            service: kind,
            target: "t".into(),
            status: ProbeStatus::Reachable {
                tls: TlsDetails {
                    session: TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "x".into(),
                        certificate_expires: None,
                    },
                    certificate: None,
                },
                offered,
                usable: Usable::Both,
            },
            elapsed_ms: 1,
        }
    }

    fn text(mechs: &[&str], flags: &[&str]) -> Offered {
        Offered::Text(Capabilities::from_lists(mechs, flags).unwrap())
    }

    fn config(auth: &str) -> Config {
        let json = format!(
            r#"{{"protocols":{{"imap":{{"host":"i.example"}},"pop3":{{"host":"p.example"}},"carddav":{{"url":"https://d.example/c/"}}}}{auth}}}"#
        );
        Config::from_bytes(json.as_bytes()).unwrap().config
    }

    #[test]
    fn oauth_preferred_password_fallback_and_skips() {
        let probes = vec![
            reachable(
                ServiceKind::Imap,
                text(&["PLAIN", "XOAUTH2", "OAUTHBEARER"], &[]),
            ),
            reachable(ServiceKind::Pop3, text(&[], &["USER"])),
            reachable(
                ServiceKind::Carddav,
                Offered::Http(HttpCapabilities {
                    status: 401,
                    challenges: vec![Challenge {
                        scheme: "Bearer".into(),
                        token68: None,
                        params: vec![],
                    }],
                    challenges_truncated: false,
                    dav: None,
                    warnings: vec![],
                }),
            ),
        ];
        let both = config(
            r#","authentication":{"password":true,"oauth-public":{"issuer":"https://a.example"}}"#,
        );
        let meta = |resources: Option<Vec<&str>>| Metadata {
            issuer: "https://a.example".into(),
            authorization_endpoint: "https://a.example/auth".into(),
            token_endpoint: "https://a.example/token".into(),
            registration_endpoint: None,
            scopes_supported: vec![],
            response_types_supported: vec!["code".into()],
            grant_types_supported: vec![],
            token_endpoint_auth_methods_supported: vec!["none".into()],
            code_challenge_methods_supported: vec!["S256".into()],
            authorization_response_iss_parameter_supported: true,
            device_authorization_endpoint: None,
            protected_resources: resources.map(|r| r.into_iter().map(String::from).collect()),
        };
        let covering = meta(Some(vec!["imap://i.example", "https://d.example/c/"]));
        let ready = OAuth::Ready {
            metadata: &covering,
            refused: &[],
        };
        let c = choose(&both, &probes, ready, AuthPolicy::Auto);
        assert_eq!(
            c[0].decision,
            Decision::Use(Method::Oauth {
                mechanism: "OAUTHBEARER".into()
            })
        );
        assert_eq!(
            c[0].fallback,
            Some(Method::Password {
                mechanism: "PLAIN".into()
            }),
            "auto keeps the password to fall back on"
        );
        assert_eq!(
            c[1].decision,
            Decision::Use(Method::Password {
                mechanism: "USER".into()
            })
        );
        assert_eq!(
            c[2].decision,
            Decision::Use(Method::Oauth {
                mechanism: "Bearer".into()
            })
        );
        assert_eq!(c[2].fallback, None, "CardDAV offers no password mechanism");
        assert_eq!(
            scopes(&c, &[]),
            [scope::MAIL, scope::CONTACTS, scope::OFFLINE]
        );
        // --auth password: the password wherever the server takes one.
        let c = choose(&both, &probes, ready, AuthPolicy::Password);
        assert!(c[0].uses_password() && c[1].uses_password());
        assert!(
            matches!(&c[2].decision, Decision::Skip { skipped } if skipped.starts_with("--auth password"))
        );
        // --auth oauth: POP3 (no token mechanism) is skipped.
        let c = choose(&both, &probes, ready, AuthPolicy::Oauth);
        assert!(c[0].uses_oauth() && c[2].uses_oauth());
        assert!(matches!(c[1].decision, Decision::Skip { .. }));
        // O-15: a host the server's protected_resources do not list gets no token.
        let partial = meta(Some(vec!["https://d.example/c/"]));
        let c = choose(
            &both,
            &probes,
            OAuth::Ready {
                metadata: &partial,
                refused: &[],
            },
            AuthPolicy::Auto,
        );
        assert!(c[0].uses_password(), "{:?}", c[0]);
        assert!(
            c[0].no_token
                .as_deref()
                .unwrap()
                .contains("protected_resources")
        );
        assert!(c[2].uses_oauth());
        // Without protected_resources: the issuer's registrable domain (a.example) only.
        let bare = meta(None);
        let c = choose(
            &both,
            &probes,
            OAuth::Ready {
                metadata: &bare,
                refused: &[],
            },
            AuthPolicy::Auto,
        );
        assert!(c[0].uses_password());
        assert!(matches!(c[2].decision, Decision::Skip { .. }));
        // O-14: a server that names another authorization server gets no token.
        let refused = [(ServiceKind::Carddav, "names another issuer".to_owned())];
        let c = choose(
            &both,
            &probes,
            OAuth::Ready {
                metadata: &covering,
                refused: &refused,
            },
            AuthPolicy::Auto,
        );
        assert!(
            matches!(&c[2].decision, Decision::Skip { skipped } if skipped.contains("names another issuer"))
        );
        // Metadata unusable: no OAuth at all; CardDAV (Bearer only) is skipped.
        let c = choose(&both, &probes, OAuth::Unusable("down"), AuthPolicy::Auto);
        assert_eq!(
            c[0].decision,
            Decision::Use(Method::Password {
                mechanism: "PLAIN".into()
            })
        );
        assert!(matches!(c[2].decision, Decision::Skip { .. }));
        // password: false (Q-7) never sends a password.
        let oauth_only = config(
            r#","authentication":{"password":false,"oauth-public":{"issuer":"https://a.example"}}"#,
        );
        let c = choose(&oauth_only, &probes, ready, AuthPolicy::Password);
        assert!(c.iter().all(|c| !c.uses_password()));
        let c = choose(&oauth_only, &probes, ready, AuthPolicy::Auto);
        assert_eq!(
            c[0].decision,
            Decision::Use(Method::Oauth {
                mechanism: "OAUTHBEARER".into()
            })
        );
        assert_eq!(c[0].fallback, None);
        assert!(matches!(c[1].decision, Decision::Skip { .. }));
        assert_eq!(
            scopes(&c, &["urn:ietf:params:oauth:scope:mail".into()]),
            [scope::MAIL]
        );
    }
}
