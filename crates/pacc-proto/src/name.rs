//! Email addresses, discovery domains and host names (RET-1, RET-2, SEC-1, Q-18).
//!
//! Everything that reaches DNS or a URL goes through [`Domain`], which only holds a
//! normalised, lower-case, A-label host name that passed the length rules.

use std::fmt;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::Serialize;

/// The longest owner name DNS allows, in octets, without the final dot.
const MAX_NAME_LEN: usize = 253;
/// The longest label DNS allows, in octets.
const MAX_LABEL_LEN: usize = 63;
/// `_ua-auto-config.` is prepended to the domain for the digest lookup (RET-2, DIG-1).
const DIGEST_PREFIX_LEN: usize = "_ua-auto-config.".len();
/// Bound on what we accept as user input before looking at it at all.
const MAX_ADDRESS_LEN: usize = 512;

/// Why an address or a host name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The input was empty after trimming.
    #[error("the address is empty")]
    Empty,
    /// The input is longer than any real address.
    #[error("the address is longer than {MAX_ADDRESS_LEN} characters")]
    TooLong,
    /// There is no `@` in the address.
    #[error("'{0}' is not an email address: it has no '@'")]
    NoAt(String),
    /// Nothing before the last `@`.
    #[error("the address has an empty local part (nothing before the '@')")]
    EmptyLocalPart,
    /// A quoted local part that is not closed, or text after the closing quote.
    #[error("the local part {0} is not a valid quoted string")]
    BadQuotedLocalPart(String),
    /// The local part contains characters an addr-spec does not allow unquoted.
    #[error("the local part '{0}' contains characters that must be quoted")]
    BadLocalPart(String),
    /// Nothing after the last `@`.
    #[error("the address has an empty domain (nothing after the '@')")]
    EmptyDomain,
    /// The domain is a single label (`localhost`, `com`): no mail domain is.
    #[error(
        "'{0}' is not a mail domain: it has a single label; an address looks like name@example.com"
    )]
    SingleLabel(String),
    /// The domain is itself a public suffix (`co.uk`, `com.au`): domains are registered
    /// under it, no one receives mail at it.
    #[error(
        "'{0}' is a public suffix (like com or co.uk): domains are registered under it, but no one receives mail at it; check the part after the '@'"
    )]
    PublicSuffix(String),
    /// `user@[192.0.2.1]` and friends (RET-2).
    #[error(
        "'{0}' is an address literal: a server address, not a domain, so there is nothing to discover"
    )]
    AddressLiteral(String),
    /// A bare IP address where a host name belongs.
    #[error("'{0}' is an IP address, not a host name")]
    IpAddress(String),
    /// IDNA (UTS #46) processing refused the name.
    #[error(
        "'{0}' is not a valid domain name: it has characters no domain name can have; check the part after the '@' for typos (or give the domain in its xn-- form)"
    )]
    Idna(String),
    /// Two dots in a row, a leading dot, or a dot-only name.
    #[error("'{0}' has an empty label")]
    EmptyLabel(String),
    /// One label is longer than 63 octets.
    #[error("'{name}' has a label of {len} octets (DNS allows at most {MAX_LABEL_LEN})")]
    LabelTooLong {
        /// The offending name.
        name: String,
        /// Its longest label.
        len: usize,
    },
    /// The whole name is too long (with the `_ua-auto-config.` prefix, for discovery domains).
    #[error("'{name}' is {len} octets long; at most {max} are possible here")]
    NameTooLong {
        /// The offending name.
        name: String,
        /// Its length in octets.
        len: usize,
        /// The maximum in this context.
        max: usize,
    },
    /// A control character (C0, DEL, C1) or a line/paragraph separator anywhere in the
    /// address: it could end a protocol line early (a CR/LF after the `@` would otherwise
    /// reach the server as a command of its own).
    #[error(
        "the address contains a control character ({codepoint}) at position {position}; type it again without it"
    )]
    ControlCharacter {
        /// `U+000D` and the like.
        codepoint: String,
        /// Character position (from 1).
        position: usize,
    },
    /// Spaces or tabs just before or after the `@`.
    #[error("the address has white space around the '@'; remove it")]
    WhitespaceAroundAt,
    /// A label with characters DNS host names do not allow.
    #[error("'{0}' contains characters that are not allowed in a host name")]
    BadCharacter(String),
}

/// A normalised DNS host name: lower case, A-labels, no trailing dot, length-checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    /// Normalise a host name (RET-2): trim, drop one trailing dot, UTS #46 non-transitional
    /// mapping to A-labels (which also lower-cases), then the DNS length rules.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        Self::parse_with_max(input, MAX_NAME_LEN)
    }

    /// Like [`Domain::parse`], for a domain that is the subject of discovery: the digest
    /// owner `_ua-auto-config.<domain>` must itself fit in 253 octets (RET-2).
    pub fn parse_discovery(input: &str) -> Result<Self, NameError> {
        Self::parse_with_max(input, MAX_NAME_LEN - DIGEST_PREFIX_LEN)
    }

    fn parse_with_max(input: &str, max: usize) -> Result<Self, NameError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NameError::EmptyDomain);
        }
        if trimmed.starts_with('[') {
            return Err(NameError::AddressLiteral(trimmed.to_owned()));
        }
        if trimmed.len() > MAX_ADDRESS_LEN {
            return Err(NameError::TooLong);
        }
        let without_dot = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if without_dot.is_empty() {
            return Err(NameError::EmptyLabel(trimmed.to_owned()));
        }
        if without_dot.parse::<std::net::IpAddr>().is_ok() {
            return Err(NameError::IpAddress(without_dot.to_owned()));
        }
        // Empty labels are checked before IDNA, whose error would be less specific.
        if without_dot.split('.').any(str::is_empty) {
            return Err(NameError::EmptyLabel(trimmed.to_owned()));
        }
        let ascii = Uts46::new()
            .to_ascii(
                without_dot.as_bytes(),
                AsciiDenyList::STD3,
                Hyphens::Check,
                DnsLength::Ignore,
            )
            .map_err(|_| NameError::Idna(without_dot.to_owned()))?
            .into_owned();
        if ascii.split('.').any(str::is_empty) {
            return Err(NameError::EmptyLabel(trimmed.to_owned()));
        }
        if !ascii
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(NameError::BadCharacter(without_dot.to_owned()));
        }
        if let Some(len) = ascii
            .split('.')
            .map(str::len)
            .filter(|l| *l > MAX_LABEL_LEN)
            .max()
        {
            return Err(NameError::LabelTooLong { name: ascii, len });
        }
        if ascii.len() > max {
            return Err(NameError::NameTooLong {
                len: ascii.len(),
                name: ascii,
                max,
            });
        }
        // An all-numeric final label would make this look like an IPv4 literal to many parsers.
        if ascii
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(NameError::IpAddress(ascii));
        }
        Ok(Domain(ascii))
    }

    /// The name as text (A-labels, lower case, no trailing dot).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fully qualified form with a trailing dot, for DNS queries that must not be
    /// subject to search-list expansion.
    pub fn fqdn(&self) -> String {
        format!("{}.", self.0)
    }

    /// Prepend a label (`ua-auto-config`, `_ua-auto-config`, `mta-sts`, …). The result is
    /// re-checked against the length limits.
    pub fn with_prefix(&self, label: &str) -> Result<Domain, NameError> {
        let name = format!("{label}.{}", self.0);
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong {
                len: name.len(),
                name,
                max: MAX_NAME_LEN,
            });
        }
        Ok(Domain(name))
    }

    /// The registrable domain (eTLD+1) by the Public Suffix List (SEC-1, Q-18); a name that
    /// is itself a public suffix is returned unchanged.
    pub fn registrable(&self) -> Domain {
        match psl::domain_str(&self.0) {
            Some(d) => Domain(d.to_owned()),
            None => self.clone(),
        }
    }

    /// The Unicode form of the name, for display only (IDNA `to_unicode`).
    pub fn to_unicode(&self) -> String {
        idna::domain_to_unicode(&self.0).0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hosts grouped by registrable domain (SEC-1): what the confirmation display shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainGroup {
    /// The registrable domain (eTLD+1).
    pub domain: Domain,
    /// The hosts under it, sorted, without duplicates.
    pub hosts: Vec<Domain>,
}

/// Group `hosts` by registrable domain, in order of first appearance.
pub fn group_by_registrable<'a>(hosts: impl IntoIterator<Item = &'a Domain>) -> Vec<DomainGroup> {
    let mut groups: Vec<DomainGroup> = Vec::new();
    for host in hosts {
        let reg = host.registrable();
        match groups.iter_mut().find(|g| g.domain == reg) {
            Some(g) => {
                if !g.hosts.contains(host) {
                    g.hosts.push(host.clone());
                    g.hosts.sort();
                }
            }
            None => groups.push(DomainGroup {
                domain: reg,
                hosts: vec![host.clone()],
            }),
        }
    }
    groups
}

/// The host of an `https://host[:port]/…` URL, normalised; `None` if there is none.
pub fn url_host(url: &str) -> Option<Domain> {
    let rest = url
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    Domain::parse(host).ok()
}

/// A user's email address as typed, with the normalised domain that discovery uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailAddress {
    /// The address exactly as typed, outer whitespace removed (W-1, Q-14: this is the
    /// username for every service).
    address: String,
    /// The local part as typed (never sent during discovery, SEC-10).
    #[serde(skip)]
    local_part: String,
    /// The configuration domain (RET-1, RET-2).
    domain: Domain,
}

impl EmailAddress {
    /// Parse an addr-spec. The domain is what follows the **last** `@` (RET-1), so quoted
    /// local parts such as `"odd@local"@example.org` work.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input.len() > MAX_ADDRESS_LEN * 4 {
            return Err(NameError::TooLong);
        }
        // The address becomes the username on every protocol line (W-1): nothing in it may
        // end or split a line, and it is refused rather than cleaned (before the outer trim,
        // which would otherwise hide a CR/LF at either end).
        if let Some((i, c)) = input.chars().enumerate().find(|(_, c)| is_forbidden(*c)) {
            return Err(NameError::ControlCharacter {
                codepoint: format!("U+{:04X}", u32::from(c)),
                position: i + 1,
            });
        }
        let address = input.trim();
        if address.is_empty() {
            return Err(NameError::Empty);
        }
        if address.len() > MAX_ADDRESS_LEN {
            return Err(NameError::TooLong);
        }
        let at = address
            .rfind('@')
            .ok_or_else(|| NameError::NoAt(address.to_owned()))?;
        let (local, domain) = (&address[..at], &address[at + 1..]);
        if local.ends_with(char::is_whitespace) || domain.starts_with(char::is_whitespace) {
            return Err(NameError::WhitespaceAroundAt);
        }
        if domain.contains(char::is_whitespace) {
            return Err(NameError::BadCharacter(domain.to_owned()));
        }
        check_local_part(local)?;
        if domain.is_empty() {
            return Err(NameError::EmptyDomain);
        }
        let domain = Domain::parse_discovery(domain)?;
        if !domain.0.contains('.') {
            return Err(NameError::SingleLabel(domain.to_unicode()));
        }
        if psl::suffix(domain.0.as_bytes()).is_some_and(|s| {
            s.is_known() && s.typ() == Some(psl::Type::Icann) && s.as_bytes() == domain.0.as_bytes()
        }) {
            return Err(NameError::PublicSuffix(domain.to_unicode()));
        }
        Ok(EmailAddress {
            address: address.to_owned(),
            local_part: local.to_owned(),
            domain,
        })
    }

    /// The full address as typed (the username, W-1).
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The local part as typed.
    pub fn local_part(&self) -> &str {
        &self.local_part
    }

    /// The normalised configuration domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// Untrusted text made safe for a terminal: control characters (C0, DEL, C1), bidi
/// overrides and isolates, zero-width and other invisible formatting characters are shown
/// as `\u{…}` escapes, so a provider name or a server reply can never move the cursor,
/// recolour the screen or reorder what the user reads. JSON output keeps the exact value.
pub fn escape_for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        // Controls, bidi controls and the other invisible formatting characters (general
        // category Cf that renders as nothing or reorders text), and tag characters.
        let invisible = c.is_control()
            || matches!(c,
                '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}');
        if invisible {
            out.push_str(&format!("\\u{{{:04X}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// C0 controls (including CR, LF, NUL, TAB), DEL, C1 controls, and the Unicode line and
/// paragraph separators.
fn is_forbidden(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// RFC 5322 §3.4.1 local part: a dot-atom or a quoted string. Non-ASCII is allowed
/// (RFC 6532). Only the shape is checked: the local part never influences discovery.
fn check_local_part(local: &str) -> Result<(), NameError> {
    if local.is_empty() {
        return Err(NameError::EmptyLocalPart);
    }
    if let Some(rest) = local.strip_prefix('"') {
        let mut escaped = false;
        let mut closed_at = None;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                closed_at = Some(i);
                break;
            } else if c.is_control() {
                return Err(NameError::BadQuotedLocalPart(local.to_owned()));
            }
        }
        return match closed_at {
            Some(i) if i + 1 == rest.len() => Ok(()),
            _ => Err(NameError::BadQuotedLocalPart(local.to_owned())),
        };
    }
    const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    let atom_ok = |atom: &str| {
        !atom.is_empty()
            && atom
                .chars()
                .all(|c| c.is_alphanumeric() || ATEXT_SPECIALS.contains(c) || !c.is_ascii())
    };
    if local.split('.').all(atom_ok) {
        Ok(())
    } else {
        Err(NameError::BadLocalPart(local.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escaping() {
        assert_eq!(escape_for_terminal("Mail\u{1b}[31m"), "Mail\\u{001B}[31m");
        assert_eq!(escape_for_terminal("a\u{202E}b"), "a\\u{202E}b");
        assert_eq!(escape_for_terminal("Bücher GmbH"), "Bücher GmbH");
    }

    #[test]
    fn control_characters_and_whitespace_around_the_at_are_refused() {
        for (input, pos) in [
            ("alice@\r\nexample.com", 7),
            ("alice@example.com\r\n", 18),
            ("ali\0ce@example.com", 4),
            ("alice\u{7f}@example.com", 6),
            ("alice@exa\u{85}mple.com", 10),
            ("\"a\u{2028}b\"@example.com", 3),
            ("\talice@example.com", 1),
        ] {
            match EmailAddress::parse(input) {
                Err(NameError::ControlCharacter { position, .. }) => {
                    assert_eq!(position, pos, "{input:?}")
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
        assert_eq!(
            EmailAddress::parse("alice@ example.com"),
            Err(NameError::WhitespaceAroundAt)
        );
        assert!(EmailAddress::parse("alice @example.com").is_err());
        assert!(matches!(
            EmailAddress::parse("alice@exa mple.com"),
            Err(NameError::BadCharacter(_))
        ));
        // A quoted local part may hold spaces; outer spaces are trimmed.
        assert_eq!(
            EmailAddress::parse("  \"a b\"@example.com ")
                .unwrap()
                .as_str(),
            "\"a b\"@example.com"
        );
    }

    // Spec §4.3 discovery-name vectors.
    #[test]
    fn spec_name_vectors() {
        let cases = [
            ("Fred@Example.COM", "example.com"),
            ("alice@mail.company.co.uk", "mail.company.co.uk"),
            ("user@bücher.example", "xn--bcher-kva.example"),
            ("\"odd@local\"@example.org", "example.org"),
            ("user@example.net.", "example.net"),
        ];
        for (input, domain) in cases {
            let a = EmailAddress::parse(input).unwrap();
            assert_eq!(a.domain().as_str(), domain, "{input}");
            assert_eq!(a.as_str(), input, "address kept as typed");
        }
        assert!(matches!(
            EmailAddress::parse("user@[192.0.2.1]"),
            Err(NameError::AddressLiteral(_))
        ));
    }

    #[test]
    fn address_shapes() {
        assert_eq!(
            EmailAddress::parse("  a@b.example ").unwrap().as_str(),
            "a@b.example"
        );
        // A line break is refused even at the end (nothing is silently cleaned).
        assert!(matches!(
            EmailAddress::parse("a@b.example\n"),
            Err(NameError::ControlCharacter { .. })
        ));
        assert!(matches!(EmailAddress::parse(""), Err(NameError::Empty)));
        assert!(matches!(
            EmailAddress::parse("nobody"),
            Err(NameError::NoAt(_))
        ));
        assert!(matches!(
            EmailAddress::parse("@x.example"),
            Err(NameError::EmptyLocalPart)
        ));
        assert!(matches!(
            EmailAddress::parse("a@"),
            Err(NameError::EmptyDomain)
        ));
        assert!(matches!(
            EmailAddress::parse("a b@x.example"),
            Err(NameError::BadLocalPart(_))
        ));
        assert!(matches!(
            EmailAddress::parse("\"open@x.example"),
            Err(NameError::IpAddress(_) | NameError::BadQuotedLocalPart(_))
        ));
        assert!(matches!(
            EmailAddress::parse("\"a\"b@x.example"),
            Err(NameError::BadQuotedLocalPart(_))
        ));
        assert!(EmailAddress::parse("\"a b\\\"c\"@x.example").is_ok());
        assert!(EmailAddress::parse("jörg@x.example").is_ok());
    }

    #[test]
    fn domain_rules() {
        assert!(matches!(
            Domain::parse("a..b"),
            Err(NameError::EmptyLabel(_))
        ));
        assert!(matches!(Domain::parse("."), Err(NameError::EmptyLabel(_))));
        assert!(matches!(
            Domain::parse("example.com.."),
            Err(NameError::EmptyLabel(_))
        ));
        assert!(matches!(
            Domain::parse("192.0.2.1"),
            Err(NameError::IpAddress(_))
        ));
        assert!(matches!(Domain::parse("::1"), Err(NameError::IpAddress(_))));
        assert!(matches!(
            Domain::parse("a.123"),
            Err(NameError::IpAddress(_))
        ));
        assert!(matches!(
            Domain::parse("under_score.example"),
            Err(NameError::Idna(_))
        ));
        assert!(matches!(
            Domain::parse("-lead.example"),
            Err(NameError::Idna(_))
        ));
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(matches!(
            Domain::parse(&long_label),
            Err(NameError::LabelTooLong { len: 64, .. })
        ));
        let ok_label = format!("{}.example", "a".repeat(63));
        assert!(Domain::parse(&ok_label).is_ok());
        // 237 octets is the longest discovery domain: 16 + 237 = 253.
        let l63 = "a".repeat(63);
        let d237 = format!("{l63}.{l63}.{l63}.{}", "b".repeat(45));
        let d237 = d237.as_str();
        assert_eq!(d237.len(), 237);
        assert!(Domain::parse_discovery(d237).is_ok());
        let d238 = format!("bb.{d237}");
        assert!(matches!(
            Domain::parse_discovery(&d238),
            Err(NameError::NameTooLong { max: 237, .. })
        ));
        assert!(Domain::parse(&d238).is_ok());
    }

    #[test]
    fn registrable_domain_uses_the_psl() {
        let r = |s: &str| Domain::parse(s).unwrap().registrable().to_string();
        assert_eq!(r("imap.mail.example.co.uk"), "example.co.uk");
        assert_eq!(r("a.b.example.com"), "example.com");
        assert_eq!(r("ua-auto-config.example.test"), "example.test");
        assert_eq!(r("co.uk"), "co.uk");
    }

    #[test]
    fn grouping_by_registrable_domain() {
        let hosts: Vec<Domain> = [
            "imap.example.com",
            "smtp.example.com",
            "dav.other.co.uk",
            "imap.example.com",
        ]
        .iter()
        .map(|h| Domain::parse(h).unwrap())
        .collect();
        let g = group_by_registrable(&hosts);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].domain.as_str(), "example.com");
        assert_eq!(g[0].hosts.len(), 2);
        assert_eq!(g[1].domain.as_str(), "other.co.uk");
        assert_eq!(
            url_host("https://Auth.Example.com:8443/t/")
                .unwrap()
                .as_str(),
            "auth.example.com"
        );
        assert!(url_host("http://a.example/").is_none());
    }

    #[test]
    fn unicode_display_round_trips() {
        let d = Domain::parse("BÜCHER.example").unwrap();
        assert_eq!(d.as_str(), "xn--bcher-kva.example");
        assert_eq!(d.to_unicode(), "bücher.example");
    }
}
