//! MX host selection and the MX-derived configuration location (MX-3, MX-5, Q-1).

use serde::Serialize;

use crate::discovery::{WELL_KNOWN_PATH, config_url, digest_owner};
use crate::name::{Domain, NameError};

/// One MX RR as the resolver returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MxRecord {
    /// Preference (lower is preferred).
    pub preference: u16,
    /// The exchange host as published (`.` for a null MX).
    pub exchange: String,
}

/// Why no MX host can be selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MxSelectError {
    /// The RRset is empty.
    #[error("the domain has no MX records")]
    NoMx,
    /// `0 .`: the domain accepts no mail (RFC 7505).
    #[error("the domain publishes a null MX (it accepts no mail)")]
    NullMx,
    /// A selected exchange is not a usable host name.
    #[error("MX exchange '{exchange}' is not a usable host name: {reason}")]
    BadExchange {
        /// As published.
        exchange: String,
        /// Why.
        reason: String,
    },
}

/// Take all hosts sharing the most preferred (lowest) value (MX-3), normalised and
/// de-duplicated, in published order.
pub fn select(records: &[MxRecord]) -> Result<(u16, Vec<Domain>), MxSelectError> {
    if records
        .iter()
        .any(|r| r.exchange.trim_end_matches('.').is_empty())
    {
        return Err(MxSelectError::NullMx);
    }
    let best = records
        .iter()
        .map(|r| r.preference)
        .min()
        .ok_or(MxSelectError::NoMx)?;
    let mut hosts: Vec<Domain> = Vec::new();
    for r in records.iter().filter(|r| r.preference == best) {
        let host = Domain::parse(&r.exchange).map_err(|e| MxSelectError::BadExchange {
            exchange: r.exchange.clone(),
            reason: e.to_string(),
        })?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok((best, hosts))
}

/// How the configuration location is derived from an MX host `h`. Only
/// [`MxUriStrategy::UaAutoConfigPrefix`] is the project's reading of the draft; the others
/// are kept so the interpretation can be flipped once the text is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MxUriStrategy {
    /// (A) the primary procedure with the domain replaced by `h`:
    /// `https://ua-auto-config.<h>/…`, digest at `_ua-auto-config.<h>` (MX-5 default).
    #[default]
    UaAutoConfigPrefix,
    /// (B) the MX host itself: `https://<h>/…`, digest at `_ua-auto-config.<h>`.
    MxHost,
    /// (C) the parent of `h` (first label removed), then as (A).
    ParentDomain,
    /// (C') the registrable domain of `h`, then as (A).
    RegistrableDomain,
}

/// Where to fetch and where to look up the digest for one MX host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Derived {
    /// The configuration URL.
    pub url: String,
    /// The host in that URL (SNI, certificate name).
    pub host: Domain,
    /// The digest record owner.
    pub digest_owner: String,
}

impl MxUriStrategy {
    /// Derive the location for MX host `h`.
    pub fn derive(self, h: &Domain) -> Result<Derived, NameError> {
        let primary_like = |d: &Domain| -> Result<Derived, NameError> {
            Ok(Derived {
                url: config_url(d),
                host: d.with_prefix("ua-auto-config")?,
                digest_owner: digest_owner(d),
            })
        };
        match self {
            MxUriStrategy::UaAutoConfigPrefix => primary_like(h),
            MxUriStrategy::MxHost => Ok(Derived {
                url: format!("https://{h}{WELL_KNOWN_PATH}"),
                host: h.clone(),
                digest_owner: digest_owner(h),
            }),
            MxUriStrategy::ParentDomain => {
                let parent = h.as_str().split_once('.').map_or(h.as_str(), |(_, p)| p);
                primary_like(&Domain::parse(parent)?)
            }
            MxUriStrategy::RegistrableDomain => primary_like(&h.registrable()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(p: u16, e: &str) -> MxRecord {
        MxRecord {
            preference: p,
            exchange: e.to_owned(),
        }
    }

    #[test]
    fn selection_takes_every_best_host() {
        let (pref, hosts) = select(&[
            mx(20, "backup.example.org."),
            mx(10, "mx01.mail.example.net."),
            mx(10, "MX02.mail.example.net."),
            mx(10, "mx01.mail.example.net"),
        ])
        .unwrap();
        assert_eq!(pref, 10);
        let names: Vec<&str> = hosts.iter().map(Domain::as_str).collect();
        assert_eq!(names, ["mx01.mail.example.net", "mx02.mail.example.net"]);
    }

    #[test]
    fn null_and_missing_mx() {
        assert_eq!(select(&[mx(0, ".")]), Err(MxSelectError::NullMx));
        assert_eq!(select(&[]), Err(MxSelectError::NoMx));
        assert!(matches!(
            select(&[mx(10, "bad_host.example")]),
            Err(MxSelectError::BadExchange { .. })
        ));
        // A bad host at a worse preference is not selected, so it does not matter.
        assert!(select(&[mx(10, "good.example"), mx(20, "bad_host.example")]).is_ok());
    }

    #[test]
    fn uri_strategies() {
        let h = Domain::parse("mx01.mail.example.net").unwrap();
        let a = MxUriStrategy::default().derive(&h).unwrap();
        assert_eq!(
            a.url,
            "https://ua-auto-config.mx01.mail.example.net/.well-known/user-agent-configuration.json"
        );
        assert_eq!(a.host.as_str(), "ua-auto-config.mx01.mail.example.net");
        assert_eq!(a.digest_owner, "_ua-auto-config.mx01.mail.example.net");
        let b = MxUriStrategy::MxHost.derive(&h).unwrap();
        assert_eq!(
            b.url,
            "https://mx01.mail.example.net/.well-known/user-agent-configuration.json"
        );
        assert_eq!(b.digest_owner, "_ua-auto-config.mx01.mail.example.net");
        let c = MxUriStrategy::ParentDomain.derive(&h).unwrap();
        assert_eq!(
            c.url,
            "https://ua-auto-config.mail.example.net/.well-known/user-agent-configuration.json"
        );
        let r = MxUriStrategy::RegistrableDomain.derive(&h).unwrap();
        assert_eq!(r.digest_owner, "_ua-auto-config.example.net");
    }
}
