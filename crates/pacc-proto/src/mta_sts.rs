//! MTA-STS (RFC 8461) as the MX fallback needs it (MX-1, MX-2, MX-4, Q-10).
//!
//! The fallback trusts MX host names only as far as the domain's MTA-STS policy, fetched over
//! authenticated HTTPS, vouches for them: the policy must exist, be in `enforce` mode, and
//! list every selected MX host.

use std::fmt;

use serde::Serialize;

use crate::digest::join_strings;
use crate::name::Domain;

/// Largest `max_age` RFC 8461 §3.2 allows (one year).
pub const MAX_MAX_AGE: u64 = 31_557_600;

/// The owner name of the MTA-STS TXT record.
pub fn txt_owner(domain: &Domain) -> String {
    format!("_mta-sts.{domain}")
}

/// The policy URL (RFC 8461 §3.3).
pub fn policy_url(domain: &Domain) -> String {
    format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
}

/// The one valid `v=STSv1` TXT record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StsRecord {
    /// The policy id (1–32 alphanumerics).
    pub id: String,
}

/// Why the `_mta-sts` TXT RRset gives no policy (RFC 8461 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StsTxtError {
    /// No record starts with `v=STSv1`.
    #[error("no TXT record starting with v=STSv1")]
    Missing,
    /// More than one does: RFC 8461 says to treat that as no policy.
    #[error("{count} TXT records start with v=STSv1 (exactly one is allowed)")]
    Several {
        /// How many.
        count: usize,
    },
    /// The one record is malformed (no `id`, bad `id`, bad syntax).
    #[error("the v=STSv1 record is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

/// Evaluate the TXT RRset at `_mta-sts.<domain>`. Records that do not start with `v=STSv1`
/// are ignored; exactly one must (RFC 8461 §3.1).
pub fn parse_txt<S: AsRef<[u8]>>(rrset: &[Vec<S>]) -> Result<StsRecord, StsTxtError> {
    let candidates: Vec<Vec<u8>> = rrset
        .iter()
        .map(|rr| join_strings(rr))
        .filter(|t| t.starts_with(b"v=STSv1"))
        .collect();
    let record = match candidates.as_slice() {
        [] => return Err(StsTxtError::Missing),
        [one] => one,
        many => return Err(StsTxtError::Several { count: many.len() }),
    };
    let malformed = |reason: &str| StsTxtError::Malformed {
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(record).map_err(|_| malformed("not ASCII"))?;
    let mut fields = text.split(';').map(|f| f.trim_matches([' ', '\t']));
    if fields.next() != Some("v=STSv1") {
        return Err(malformed("it must begin with 'v=STSv1;'"));
    }
    let mut id = None;
    for field in fields.filter(|f| !f.is_empty()) {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| malformed("a field without '='"))?;
        if k == "id" {
            if id.is_some() {
                return Err(malformed("id appears twice"));
            }
            id = Some(v);
        }
    }
    let id = id.ok_or_else(|| malformed("no id field"))?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(malformed("id must be 1 to 32 letters and digits"));
    }
    Ok(StsRecord { id: id.to_owned() })
}

/// The policy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Senders must not deliver to unauthorised MX hosts: the only mode the fallback accepts.
    Enforce,
    /// Report only.
    Testing,
    /// No policy.
    None,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        })
    }
}

/// An `mx:` pattern: an exact host or `*.` plus a suffix, where `*` is exactly one label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum MxPattern {
    /// `mail.example.com`
    Exact(Domain),
    /// `*.example.com` (the stored domain is `example.com`).
    Wildcard(Domain),
}

impl From<MxPattern> for String {
    fn from(p: MxPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MxPattern::Exact(d) => write!(f, "{d}"),
            MxPattern::Wildcard(d) => write!(f, "*.{d}"),
        }
    }
}

impl MxPattern {
    /// Parse a pattern (case-insensitive, IDNA to A-labels, one trailing dot tolerated).
    pub fn parse(s: &str) -> Option<MxPattern> {
        match s.strip_prefix("*.") {
            Some(rest) => Domain::parse(rest).ok().map(MxPattern::Wildcard),
            None => Domain::parse(s).ok().map(MxPattern::Exact),
        }
    }

    /// Does `host` match (RFC 8461 §4.1; MX-4)?
    pub fn matches(&self, host: &Domain) -> bool {
        match self {
            MxPattern::Exact(d) => d == host,
            MxPattern::Wildcard(suffix) => host
                .as_str()
                .split_once('.')
                .is_some_and(|(_, parent)| parent == suffix.as_str()),
        }
    }
}

/// A parsed policy (RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// `mode`.
    pub mode: Mode,
    /// The `mx` patterns.
    pub mx: Vec<MxPattern>,
    /// `max_age` in seconds.
    pub max_age: u64,
}

impl Policy {
    /// Is `host` authorised by some `mx` pattern?
    pub fn authorizes(&self, host: &Domain) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }
}

/// Why a policy body is not a policy (then there is no policy, RFC 8461 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PolicyError {
    /// Not UTF-8 text.
    #[error("the policy is not text")]
    NotText,
    /// A line without `:`.
    #[error("line {line} is not 'key: value'")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// `version` missing or not `STSv1`.
    #[error("version is missing or not STSv1")]
    Version,
    /// `mode` missing or unknown.
    #[error("mode is missing or not one of enforce, testing, none")]
    Mode,
    /// `max_age` missing, not a number, or above one year.
    #[error("max_age is missing, not a number, or larger than {MAX_MAX_AGE}")]
    MaxAge,
    /// An `mx` value that is not a host name pattern.
    #[error("mx '{value}' is not a host name or *.-pattern")]
    BadMx {
        /// The value.
        value: String,
    },
    /// `enforce`/`testing` without any `mx`.
    #[error("mode {mode} needs at least one mx line")]
    NoMx {
        /// The mode.
        mode: Mode,
    },
    /// A key that must appear once appears twice.
    #[error("{key} appears more than once")]
    Duplicate {
        /// The key.
        key: String,
    },
}

/// Parse a policy body: `key: value` lines separated by LF or CRLF; unknown keys ignored.
pub fn parse_policy(body: &[u8]) -> Result<Policy, PolicyError> {
    let text = std::str::from_utf8(body).map_err(|_| PolicyError::NotText)?;
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or(PolicyError::BadLine { line: i + 1 })?;
        let (key, value) = (key.trim(), value.trim_matches([' ', '\t']));
        let once = |slot: &mut Option<String>| {
            if slot.replace(value.to_owned()).is_some() {
                Err(PolicyError::Duplicate {
                    key: key.to_owned(),
                })
            } else {
                Ok(())
            }
        };
        match key {
            "version" => once(&mut version)?,
            "mode" => once(&mut mode)?,
            "max_age" => once(&mut max_age)?,
            "mx" => mx.push(MxPattern::parse(value).ok_or_else(|| PolicyError::BadMx {
                value: value.to_owned(),
            })?),
            _ => {} // extensions are ignored (RFC 8461 §3.2)
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err(PolicyError::Version);
    }
    let mode = match mode.as_deref() {
        Some("enforce") => Mode::Enforce,
        Some("testing") => Mode::Testing,
        Some("none") => Mode::None,
        _ => return Err(PolicyError::Mode),
    };
    let max_age = max_age
        .filter(|v| !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v <= MAX_MAX_AGE)
        .ok_or(PolicyError::MaxAge)?;
    if mode != Mode::None && mx.is_empty() {
        return Err(PolicyError::NoMx { mode });
    }
    Ok(Policy { mode, mx, max_age })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn txt_record_rules() {
        let rr = |s: &str| vec![s.as_bytes().to_vec()];
        assert_eq!(
            parse_txt(&[rr("v=STSv1; id=20240101T0000;")]).unwrap().id,
            "20240101T0000"
        );
        assert_eq!(parse_txt(&[rr("v=STSv1;id=abc")]).unwrap().id, "abc");
        // Split over strings, and unrelated records alongside.
        let split = vec![b"v=STSv1; ".to_vec(), b"id=x1".to_vec()];
        assert_eq!(parse_txt(&[rr("v=spf1 -all"), split]).unwrap().id, "x1");
        assert_eq!(parse_txt::<Vec<u8>>(&[]), Err(StsTxtError::Missing));
        assert_eq!(parse_txt(&[rr("v=spf1 -all")]), Err(StsTxtError::Missing));
        assert_eq!(
            parse_txt(&[rr("v=STSv1; id=a"), rr("v=STSv1; id=b")]),
            Err(StsTxtError::Several { count: 2 })
        );
        for bad in [
            "v=STSv1;",
            "v=STSv1; id=",
            "v=STSv1; id=has-dash",
            "v=STSv10; id=a",
            "v=STSv1; id=a; id=b",
        ] {
            assert!(
                matches!(parse_txt(&[rr(bad)]), Err(StsTxtError::Malformed { .. })),
                "{bad}"
            );
        }
        let long = format!("v=STSv1; id={}", "a".repeat(33));
        assert!(parse_txt(&[rr(&long)]).is_err());
    }

    #[test]
    fn policy_with_crlf_lf_and_extensions() {
        let p = parse_policy(b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\nfuture: yes\r\n").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx.len(), 2);
        assert_eq!(p.max_age, 604_800);
        let p =
            parse_policy(b"version: STSv1\nmode: testing\nmx: MAIL.Example.com.\nmax_age: 86400")
                .unwrap();
        assert_eq!(p.mode, Mode::Testing);
        assert!(p.authorizes(&d("mail.example.com")));
        let p = parse_policy(b"version: STSv1\nmode: none\nmax_age: 86400\n").unwrap();
        assert_eq!(p.mode, Mode::None);
    }

    #[test]
    fn malformed_policies() {
        let cases: [(&[u8], PolicyError); 8] = [
            (
                b"mode: enforce\nmx: a.example\nmax_age: 1\n",
                PolicyError::Version,
            ),
            (
                b"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
                PolicyError::Version,
            ),
            (
                b"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
                PolicyError::Mode,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.example\n",
                PolicyError::MaxAge,
            ),
            (
                b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n",
                PolicyError::MaxAge,
            ),
            (
                b"version: STSv1\nmode: enforce\nmax_age: 1\n",
                PolicyError::NoMx {
                    mode: Mode::Enforce,
                },
            ),
            (
                b"version: STSv1\nmode enforce\n",
                PolicyError::BadLine { line: 2 },
            ),
            (
                b"version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n",
                PolicyError::Duplicate { key: "mode".into() },
            ),
        ];
        for (body, err) in cases {
            assert_eq!(
                parse_policy(body),
                Err(err),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            parse_policy(b"version: STSv1\nmode: enforce\nmx: bad host\nmax_age: 1\n"),
            Err(PolicyError::BadMx { .. })
        ));
        assert_eq!(parse_policy(b"\xff"), Err(PolicyError::NotText));
    }

    // Spec §4.5 M8 and RFC 8461 §4.1: `*` matches exactly one label.
    #[test]
    fn wildcard_matches_one_label() {
        let p = MxPattern::parse("*.example.net").unwrap();
        assert!(p.matches(&d("mail.example.net")));
        assert!(!p.matches(&d("mx01.mail.example.net")));
        assert!(!p.matches(&d("example.net")));
        let p = MxPattern::parse("*.mail.example.net").unwrap();
        assert!(p.matches(&d("mx01.mail.example.net")));
        let e = MxPattern::parse("Mx01.Mail.Example.NET.").unwrap();
        assert!(e.matches(&d("mx01.mail.example.net")));
        assert!(!e.matches(&d("mx02.mail.example.net")));
        let idn = MxPattern::parse("*.bücher.example").unwrap();
        assert!(idn.matches(&d("mx.xn--bcher-kva.example")));
        assert!(MxPattern::parse("*").is_none());
        assert!(MxPattern::parse("a.*.example").is_none());
    }
}
