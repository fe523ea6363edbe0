//! The confirmation gate (SEC-1, SEC-2, MX-9): before any credential leaves the device or a
//! browser opens, the user sees every host that would receive one, grouped by registrable
//! domain, and confirms. A [`Confirmed`] value can only be made here, and every credential
//! API of the shell takes one and refuses hosts outside it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::name::{Domain, DomainGroup, group_by_registrable};

/// What the user is asked to confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfirmationRequest {
    /// Hosts that would receive a credential, grouped by registrable domain.
    pub groups: Vec<DomainGroup>,
    /// Where the settings came from (`well-known` URL, or the MX-fallback explanation).
    pub source: String,
    /// For the MX fallback: the registrable domains of the mail servers' operator (MX-9).
    pub mx_domains: Vec<Domain>,
    /// The provider's name, as the document gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// What will be sent where: per service, the host, the target and the method.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<Planned>,
    /// Services already left out, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    #[serde(skip)]
    hosts: BTreeSet<Domain>,
}

/// One service that would be signed in to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// The service.
    pub service: crate::document::ServiceKind,
    /// Its host.
    pub host: Domain,
    /// `host:port` or the URL.
    pub target: String,
    /// `OAuth (OAUTHBEARER)`, `password (PLAIN)`, or OAuth with the password as fallback.
    pub method: String,
    /// Why no token goes there although OAuth is offered (O-14, O-15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_token: Option<String>,
}

/// One service that is not set up, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The service.
    pub service: crate::document::ServiceKind,
    /// `host:port` or the URL.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// The user's confirmation, bound to the exact host set shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    hosts: BTreeSet<Domain>,
}

impl Confirmed {
    /// Whether `host` was among the confirmed hosts.
    pub fn allows(&self, host: &Domain) -> bool {
        self.hosts.contains(host)
    }
}

/// Why nothing may be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The user declined.
    #[error("not confirmed: nothing was sent")]
    Declined,
    /// `--accept-domains` does not list exactly the domains shown.
    #[error(
        "--accept-domains must list exactly the domains shown ({expected}); got {given}. Nothing was sent"
    )]
    Mismatch {
        /// Shown.
        expected: String,
        /// Given.
        given: String,
    },
}

impl ConfirmationRequest {
    /// Everything that would receive a credential: service hosts, then the OAuth issuer and
    /// authorization endpoint hosts.
    pub fn new(
        hosts: impl IntoIterator<Item = Domain>,
        source: String,
        mx_domains: Vec<Domain>,
    ) -> Self {
        let mut ordered: Vec<Domain> = Vec::new();
        for h in hosts {
            if !ordered.contains(&h) {
                ordered.push(h);
            }
        }
        ConfirmationRequest {
            groups: group_by_registrable(&ordered),
            source,
            mx_domains,
            provider: None,
            plan: Vec::new(),
            skipped: Vec::new(),
            hosts: ordered.into_iter().collect(),
        }
    }

    /// Say what will happen: the provider's name and, per service, the method (or why it
    /// is skipped). The hosts confirmed are still exactly those given to [`Self::new`].
    pub fn with_plan(
        mut self,
        provider: Option<&str>,
        choices: &[crate::auth::select::Choice],
    ) -> Self {
        use crate::auth::select::{Decision, Method};
        self.provider = provider.map(str::to_owned);
        for c in choices {
            let describe = |m: &Method| match m {
                Method::Oauth { mechanism } => format!("OAuth ({mechanism})"),
                Method::Password { mechanism } => format!("password ({mechanism})"),
            };
            match &c.decision {
                Decision::Use(m) => self.plan.push(Planned {
                    service: c.service,
                    host: c.host.clone(),
                    target: c.target.clone(),
                    method: match &c.fallback {
                        Some(f) => format!("{}, else {}", describe(m), describe(f)),
                        None => describe(m),
                    },
                    no_token: c.no_token.clone(),
                }),
                Decision::Skip { skipped } => self.skipped.push(Skipped {
                    service: c.service,
                    target: c.target.clone(),
                    reason: skipped.clone(),
                }),
            }
        }
        self
    }

    /// The registrable domains, in display order.
    pub fn domains(&self) -> Vec<&Domain> {
        self.groups.iter().map(|g| &g.domain).collect()
    }

    /// The text shown to the user: never truncated, IDNs as Unicode only when safe (SEC-2).
    pub fn display(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.provider {
            let _ = writeln!(s, "Provider: {}", crate::name::escape_for_terminal(p));
        }
        let _ = writeln!(s, "Your credentials would be sent to these domains:");
        for g in &self.groups {
            let _ = writeln!(s, "  {}", display_name(&g.domain));
            for h in &g.hosts {
                let services: Vec<&Planned> = self.plan.iter().filter(|p| &p.host == h).collect();
                if services.is_empty() {
                    let _ = writeln!(s, "      {}", display_name(h));
                }
                for p in services {
                    let _ = writeln!(
                        s,
                        "      {:<40} {:<12} {}",
                        crate::name::escape_for_terminal(&p.target),
                        p.service.label(),
                        p.method
                    );
                    if let Some(why) = &p.no_token {
                        let _ = writeln!(
                            s,
                            "      {:<40} {:<12} no token: {}",
                            "",
                            "",
                            crate::name::escape_for_terminal(why)
                        );
                    }
                }
            }
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "Not set up:");
            for k in &self.skipped {
                let _ = writeln!(
                    s,
                    "      {:<40} {:<12} {}",
                    crate::name::escape_for_terminal(&k.target),
                    k.service.label(),
                    crate::name::escape_for_terminal(&k.reason)
                );
            }
        }
        let _ = writeln!(s, "Settings from: {}", self.source);
        if !self.mx_domains.is_empty() {
            let names: Vec<String> = self.mx_domains.iter().map(display_name).collect();
            let _ = writeln!(
                s,
                "These settings come from the operator of your domain's mail servers ({}), not from your domain itself.",
                names.join(", ")
            );
        }
        s
    }

    /// An interactive answer.
    pub fn confirm(&self, yes: bool) -> Result<Confirmed, GateError> {
        if yes {
            Ok(Confirmed {
                hosts: self.hosts.clone(),
            })
        } else {
            Err(GateError::Declined)
        }
    }

    /// Non-interactive: `listed` must be exactly the registrable domains shown (any order,
    /// A-labels or Unicode).
    pub fn accept_domains(&self, listed: &[String]) -> Result<Confirmed, GateError> {
        let shown: BTreeSet<&Domain> = self.groups.iter().map(|g| &g.domain).collect();
        let given: Result<BTreeSet<Domain>, _> = listed
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Domain::parse(s))
            .collect();
        let matches = given
            .as_ref()
            .is_ok_and(|g| g.len() == shown.len() && g.iter().all(|d| shown.contains(d)));
        if matches {
            Ok(Confirmed {
                hosts: self.hosts.clone(),
            })
        } else {
            Err(GateError::Mismatch {
                expected: shown
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                given: listed.join(","),
            })
        }
    }
}

/// SEC-2: the Unicode form only when every label keeps to one script; else the A-label.
pub fn display_name(d: &Domain) -> String {
    let unicode = d.to_unicode();
    if unicode == d.as_str() {
        unicode
    } else if unicode.split('.').all(single_script) {
        // The A-label alongside, so the user can compare it with what other tools show.
        format!("{unicode} ({d})")
    } else {
        // Mixed scripts (a homograph risk): only the A-label.
        d.to_string()
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
    Other(u32),
}

fn script(c: char) -> Option<Script> {
    let u = c as u32;
    if c.is_ascii_digit() || c == '-' {
        return None; // common to every script
    }
    Some(match u {
        0x0000..=0x024F | 0x1E00..=0x1EFF => Script::Latin,
        0x0370..=0x03FF | 0x1F00..=0x1FFF => Script::Greek,
        0x0400..=0x052F => Script::Cyrillic,
        _ => Script::Other(u >> 8),
    })
}

fn single_script(label: &str) -> bool {
    let mut seen = None;
    for s in label.chars().filter_map(script) {
        match seen {
            None => seen = Some(s),
            Some(x) if x == s => {}
            Some(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn groups_and_exact_acceptance() {
        let r = ConfirmationRequest::new(
            [
                d("imap.example.com"),
                d("smtp.example.com"),
                d("dav.example.co.uk"),
                d("auth.example.com"),
            ],
            "https://ua-auto-config.example.com/…".into(),
            vec![],
        );
        assert_eq!(
            r.domains().iter().map(|x| x.as_str()).collect::<Vec<_>>(),
            ["example.com", "example.co.uk"]
        );
        assert!(
            r.accept_domains(&["example.co.uk".into(), "EXAMPLE.com".into()])
                .is_ok()
        );
        assert!(matches!(
            r.accept_domains(&["example.com".into()]),
            Err(GateError::Mismatch { .. })
        ));
        assert!(
            r.accept_domains(&[
                "example.com".into(),
                "example.co.uk".into(),
                "evil.example".into()
            ])
            .is_err()
        );
        assert!(
            r.accept_domains(&["co.uk".into(), "example.com".into()])
                .is_err()
        );
        let ok = r.confirm(true).unwrap();
        assert!(ok.allows(&d("imap.example.com")));
        assert!(!ok.allows(&d("evil.example.com")));
        assert_eq!(r.confirm(false), Err(GateError::Declined));
        let text = r.display();
        assert!(text.contains("example.co.uk") && text.contains("dav.example.co.uk"));
    }

    #[test]
    fn long_names_are_never_truncated() {
        let long = format!("{}.example.com", "a".repeat(63));
        let r = ConfirmationRequest::new([d(&long)], "x".into(), vec![]);
        assert!(r.display().contains(&long));
    }

    #[test]
    fn homographs_show_as_a_labels() {
        // Safe IDNs in Unicode, with the A-label alongside.
        assert_eq!(
            display_name(&d("bücher.example")),
            "bücher.example (xn--bcher-kva.example)"
        );
        assert_eq!(display_name(&d("example.com")), "example.com");
        // Latin 'p' + Cyrillic 'аураl' mix: shown as the A-label.
        let mixed = d("pаypal.example");
        assert!(
            display_name(&mixed).starts_with("xn--"),
            "{}",
            display_name(&mixed)
        );
        assert!(display_name(&d("пример.example")).starts_with("пример.example (xn--"));
    }

    #[test]
    fn mx_fallback_is_explained() {
        let r = ConfirmationRequest::new(
            [d("imap.hoster.example")],
            "MX fallback".into(),
            vec![d("hoster.example")],
        );
        assert!(
            r.display()
                .contains("operator of your domain's mail servers (hoster.example)")
        );
    }
}
