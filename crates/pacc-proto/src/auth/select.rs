//! Choosing how to sign in to each service (spec §2.6, A-1 … A-6, W-3, O-4, O-12).

use serde::Serialize;

use crate::document::{Config, ServiceKind};
use crate::name::Domain;
use crate::probe::usable::is_password_mechanism;
use crate::probe::{Offered, ProbeStatus, ServiceProbe};

use super::oauth::scope;

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

fn pick<'a>(offered: &'a [String], order: &[&str]) -> Option<&'a str> {
    order
        .iter()
        .find_map(|want| offered.iter().find(|m| m.eq_ignore_ascii_case(want)))
        .map(String::as_str)
}

/// Decide per service. `oauth_ready` says the issuer's metadata was fetched and checked
/// (A-1: "its metadata is usable"); `prefer_password` lets the caller avoid OAuth.
pub fn choose(
    config: &Config,
    probes: &[ServiceProbe],
    oauth_ready: bool,
    prefer_password: bool,
) -> Vec<Choice> {
    let auth = config.authentication.as_ref();
    let has_issuer = auth.is_some_and(|a| a.oauth_public.is_some());
    let doc_oauth = has_issuer && oauth_ready;
    // Q-6: no authentication block → password allowed; Q-7: password false → never.
    let doc_password = auth.is_none_or(|a| a.password);
    let mut out = Vec::new();
    for svc in config.protocols.iter() {
        let host = svc.endpoint.host();
        let Some(p) = probes.iter().find(|p| p.service == svc.kind) else {
            out.push(Choice {
                service: svc.kind,
                target: host.to_string(),
                host,
                decision: Decision::Skip {
                    skipped: "not probed".into(),
                },
            });
            continue;
        };
        let (token, password) = match &p.status {
            ProbeStatus::Unreachable { kind, error } => {
                out.push(Choice {
                    service: svc.kind,
                    target: p.target.clone(),
                    host,
                    decision: Decision::Skip {
                        skipped: format!("unreachable: {error} [{kind}]"),
                    },
                });
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
        let token_offered = token.is_some();
        let oauth = token
            .filter(|_| doc_oauth)
            .map(|mechanism| Method::Oauth { mechanism });
        let pw = password
            .filter(|_| doc_password)
            .map(|mechanism| Method::Password { mechanism });
        let decision = match (oauth, pw, prefer_password) {
            (_, Some(p), true) | (None, Some(p), false) => Decision::Use(p),
            (Some(o), _, _) => Decision::Use(o),
            (None, None, _) => Decision::Skip {
                skipped: if token_offered && has_issuer && !oauth_ready {
                    "needs OAuth, and the provider's OAuth issuer cannot be used".into()
                } else if doc_password || doc_oauth {
                    "offers no mechanism the provider allows".into()
                } else {
                    "the provider allows neither passwords nor a usable OAuth issuer".into()
                },
            },
        };
        out.push(Choice {
            service: svc.kind,
            target: p.target.clone(),
            host,
            decision,
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
        let c = choose(&both, &probes, true, false);
        assert_eq!(
            c[0].decision,
            Decision::Use(Method::Oauth {
                mechanism: "OAUTHBEARER".into()
            })
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
        assert_eq!(
            scopes(&c, &[]),
            [scope::MAIL, scope::CONTACTS, scope::OFFLINE]
        );
        // Metadata unusable: no OAuth at all; CardDAV (Bearer only) is skipped.
        let c = choose(&both, &probes, false, false);
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
        let c = choose(&oauth_only, &probes, true, true);
        assert_eq!(
            c[0].decision,
            Decision::Use(Method::Oauth {
                mechanism: "OAUTHBEARER".into()
            })
        );
        assert!(matches!(c[1].decision, Decision::Skip { .. }));
        assert_eq!(
            scopes(&c, &["urn:ietf:params:oauth:scope:mail".into()]),
            [scope::MAIL]
        );
    }
}
