//! Probe dialogues (spec §2.5, P-1 … P-8): learn what each server offers, after TLS, without
//! sending a credential.
//!
//! Text protocols are small state machines over lines. The shell connects (implicit TLS,
//! or plain TCP for ManageSieve), calls [`LineProbe::start`], then performs each
//! [`Action`]: write its bytes, then read one line and feed it to [`LineProbe::on_line`],
//! start TLS and call [`LineProbe::on_tls`], or close. The machine ends with
//! [`LineProbe::outcome`]. HTTP services are probed with one unauthenticated request whose
//! challenges [`http`] parses.
//!
//! Lines are bounded by [`MAX_LINE`] and responses by [`MAX_LINES`]; a server that exceeds
//! them, closes early, or says something unexpected ends the probe with a
//! [`ProtocolError`].

pub mod http;
pub mod imap;
pub mod managesieve;
pub mod pop3;
pub mod smtp;
pub mod usable;

use serde::Serialize;

use crate::document::ServiceKind;
use crate::fetch::{FetchError, TlsInfo};

/// Longest line a server may send during a probe (capability lines are far shorter).
pub const MAX_LINE: usize = 8 * 1024;
/// Most lines in one multi-line response.
pub const MAX_LINES: usize = 256;

/// What the shell does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Bytes to write first (may be empty).
    pub write: Vec<u8>,
    /// Then this.
    pub next: Next,
}

/// The step after writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read one line (without its CRLF) and call `on_line`.
    ReadLine,
    /// Start TLS on the connection and call `on_tls`. Any bytes already received but not
    /// consumed must make the shell fail the probe (STARTTLS command injection).
    StartTls,
    /// Close the connection; the outcome is ready.
    Close,
    /// The dialogue reached its goal and the session is idle, not authenticated: the
    /// outcome is ready. `write` holds the polite goodbye (`LOGOUT`, `QUIT`). A shell that
    /// keeps the connection for a sign-in ([`crate::auth::login::Login::resume`]) sends
    /// nothing; any other sends `write` and closes, as for [`Next::Close`].
    Idle,
}

impl Action {
    pub(crate) fn read() -> Self {
        Action {
            write: Vec::new(),
            next: Next::ReadLine,
        }
    }
    pub(crate) fn send(bytes: &[u8]) -> Self {
        Action {
            write: bytes.to_vec(),
            next: Next::ReadLine,
        }
    }
    pub(crate) fn send_then(bytes: &[u8], next: Next) -> Self {
        Action {
            write: bytes.to_vec(),
            next,
        }
    }
    /// Done and idle: `goodbye` is sent unless the shell keeps the connection.
    pub(crate) fn idle(goodbye: &[u8]) -> Self {
        Action {
            write: goodbye.to_vec(),
            next: Next::Idle,
        }
    }
    pub(crate) fn close() -> Self {
        Action {
            write: Vec::new(),
            next: Next::Close,
        }
    }
}

/// Most distinct capability words (mechanisms and other words together) one server may
/// advertise. Real servers send a few dozen; the cap bounds memory and work whatever a
/// hostile server sends (2 MB of unique words fit within the line limits).
pub const MAX_CAPABILITIES: usize = 256;
/// Most invalid mechanism names remembered for the report (the rest are only counted).
pub const MAX_REJECTED_SHOWN: usize = 8;

/// What a text server offers after TLS.
///
/// Built only through [`Capabilities::add_mechanism`] and [`Capabilities::add_flag`], which
/// deduplicate in O(1), refuse more than [`MAX_CAPABILITIES`] words and keep only SASL
/// mechanism names that RFC 4422 allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// SASL mechanisms, upper case, in the server's order.
    pub mechanisms: Vec<String>,
    /// Other capability words that matter (IMAP4rev1, IMAP4rev2, SASL-IR, LOGINDISABLED,
    /// USER, PIPELINING…), upper case.
    pub flags: Vec<String>,
    /// The greeting or implementation string, for display.
    pub greeting: String,
    /// Advertised mechanism names that are not valid RFC 4422 names (at most
    /// [`MAX_REJECTED_SHOWN`], as received, lossily decoded); they were not kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected_mechanisms: Vec<String>,
    #[serde(skip)]
    seen: std::collections::HashSet<String>,
}

/// Whether `name` is a SASL mechanism name (RFC 4422 §3.1: 1 to 20 characters of upper-case
/// letters, digits, `-` and `_`; compared case-insensitively, so lower case is accepted).
pub fn is_mechanism_name(name: &str) -> bool {
    (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Capabilities {
    /// Capabilities from lists (for tests and examples); the same rules as the adders.
    pub fn from_lists(mechanisms: &[&str], flags: &[&str]) -> Result<Self, ProtocolError> {
        let mut c = Capabilities::default();
        for m in mechanisms {
            c.add_mechanism(m)?;
        }
        for f in flags {
            c.add_flag(f)?;
        }
        Ok(c)
    }

    /// Whether a capability word is present.
    pub fn has(&self, flag: &str) -> bool {
        self.seen
            .contains(&format!("F:{}", flag.to_ascii_uppercase()))
    }

    /// Whether a SASL mechanism is offered.
    pub fn offers(&self, mechanism: &str) -> bool {
        self.seen
            .contains(&format!("M:{}", mechanism.to_ascii_uppercase()))
    }

    fn insert(&mut self, key: String) -> Result<bool, ProtocolError> {
        if self.seen.contains(&key) {
            return Ok(false);
        }
        if self.seen.len() >= MAX_CAPABILITIES {
            return Err(ProtocolError::new(format!(
                "the server advertised more than {MAX_CAPABILITIES} capabilities"
            )));
        }
        self.seen.insert(key);
        Ok(true)
    }

    /// Add a SASL mechanism (upper-cased). A name RFC 4422 does not allow is not kept but
    /// noted in [`Capabilities::rejected_mechanisms`]. Errs past [`MAX_CAPABILITIES`].
    pub fn add_mechanism(&mut self, m: &str) -> Result<(), ProtocolError> {
        if m.is_empty() {
            return Ok(());
        }
        if !is_mechanism_name(m) {
            if self.rejected_mechanisms.len() < MAX_REJECTED_SHOWN {
                self.rejected_mechanisms.push(show(m.as_bytes()));
            }
            return Ok(());
        }
        let m = m.to_ascii_uppercase();
        if self.insert(format!("M:{m}"))? {
            self.mechanisms.push(m);
        }
        Ok(())
    }

    /// Add a capability word (upper-cased). Errs past [`MAX_CAPABILITIES`].
    pub fn add_flag(&mut self, f: &str) -> Result<(), ProtocolError> {
        if f.is_empty() {
            return Ok(());
        }
        let f = f.to_ascii_uppercase();
        if self.insert(format!("F:{f}"))? {
            self.flags.push(f);
        }
        Ok(())
    }
}

/// A server that did not follow its protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    /// An error with this message.
    pub fn new(s: impl Into<String>) -> Self {
        ProtocolError(s.into())
    }
}

/// A text-protocol probe.
pub trait LineProbe: Send {
    /// The first action once connected (after implicit TLS, or on the plain connection for
    /// STARTTLS protocols).
    fn start(&mut self) -> Action;
    /// A line was read (CRLF removed, at most [`MAX_LINE`] bytes).
    fn on_line(&mut self, line: &[u8]) -> Action;
    /// TLS is now established. The shell calls this only after the machine itself asked
    /// for [`Next::StartTls`]; machines for implicit-TLS protocols never do, and keep this
    /// default.
    fn on_tls(&mut self) -> Action {
        Action::close()
    }
    /// The result, once an action said [`Next::Close`] (or the connection ended early).
    fn outcome(&self) -> Result<Capabilities, ProtocolError>;
    /// Whether what this machine writes may carry a credential: a shell that logs the
    /// dialogue must then show only [`redact`]ed lines.
    fn sends_secrets(&self) -> bool {
        false
    }
}

/// A written line as it may be logged: the tag, the command verb and the mechanism name
/// (from a fixed list), and `<redacted>` for everything else. Nothing of a username,
/// password, token or SASL response survives.
pub fn redact(line: &[u8]) -> String {
    const KEEP: &[&str] = &[
        "AUTHENTICATE",
        "AUTH",
        "LOGIN",
        "USER",
        "PASS",
        "PLAIN",
        "OAUTHBEARER",
        "XOAUTH2",
        "LOGOUT",
        "QUIT",
        "CAPABILITY",
        "CAPA",
        "EHLO",
        "STARTTLS",
    ];
    let text = String::from_utf8_lossy(line);
    let mut kept = Vec::new();
    let mut rest = false;
    for (i, word) in text.split_whitespace().enumerate() {
        let bare = word.trim_matches('"');
        let is_tag = i == 0
            && bare.len() <= 4
            && bare.starts_with(|c: char| c.is_ascii_lowercase())
            && bare[1..].chars().all(|c| c.is_ascii_digit());
        if !rest && (is_tag || KEEP.iter().any(|k| k.eq_ignore_ascii_case(bare))) {
            kept.push(word.to_owned());
        } else {
            rest = true;
        }
    }
    if rest || kept.is_empty() {
        kept.push("<redacted>".to_owned());
    }
    kept.join(" ")
}

/// The server certificate, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// End of validity.
    pub not_after: String,
}

/// The TLS session of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsDetails {
    /// Version and cipher.
    #[serde(flatten)]
    pub session: TlsInfo,
    /// The leaf certificate.
    pub certificate: Option<CertificateInfo>,
}

/// What a reachable server offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum Offered {
    /// SASL mechanisms and capability words of a text protocol.
    Text(Capabilities),
    /// Challenges of an HTTP service.
    Http(http::HttpCapabilities),
}

/// Why a service could not be probed. `kind()` is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// DNS, TCP or TLS failed (same kinds as a document fetch: `no-such-host`,
    /// `connect-failed`, `certificate-name`, `timeout`…).
    #[error("{0}")]
    Connection(FetchError),
    /// The server did not follow its protocol.
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
    /// The server sent data after its STARTTLS `OK` before TLS started: that data could be
    /// injected by an attacker, so the connection is abandoned.
    #[error(
        "the server sent {bytes} byte(s) in clear after accepting STARTTLS (command injection risk); connection abandoned"
    )]
    StartTlsInjection {
        /// How many.
        bytes: usize,
    },
    /// The overall probe deadline passed.
    #[error("no result before the probe deadline ({stage})")]
    Timeout {
        /// Where it was.
        stage: String,
    },
}

impl ProbeError {
    /// Stable kind string.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::Connection(e) => e.kind(),
            ProbeError::Protocol(_) => "protocol",
            ProbeError::StartTlsInjection { .. } => "starttls-injection",
            ProbeError::Timeout { .. } => "timeout",
        }
    }
}

/// The outcome for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
// Reachable is the common case and the one that is large; boxing it would only move it.
#[allow(clippy::large_enum_variant)]
pub enum ProbeStatus {
    /// Reached over validated TLS, and it talked.
    Reachable {
        /// The TLS session.
        tls: TlsDetails,
        /// What it offers.
        offered: Offered,
        /// What it can be used with (P-7).
        usable: usable::Usable,
    },
    /// Could not be used.
    Unreachable {
        /// Stable kind.
        kind: &'static str,
        /// Message.
        error: String,
    },
}

/// One probed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceProbe {
    /// Which service.
    pub service: ServiceKind,
    /// `host:port` or the URL.
    pub target: String,
    /// The outcome.
    #[serde(flatten)]
    pub status: ProbeStatus,
    /// How long it took.
    pub elapsed_ms: u64,
}

impl ServiceProbe {
    /// Reachable and usable with at least one method.
    pub fn is_usable(&self) -> bool {
        matches!(&self.status, ProbeStatus::Reachable { usable, .. } if *usable != usable::Usable::Nothing)
    }
}

/// The probe for a text service.
pub fn line_probe(kind: ServiceKind, ehlo_name: &str) -> Option<Box<dyn LineProbe>> {
    Some(match kind {
        ServiceKind::Imap => Box::new(imap::ImapProbe::new()),
        ServiceKind::Pop3 => Box::new(pop3::Pop3Probe::new()),
        ServiceKind::Submit => Box::new(smtp::SmtpProbe::new(ehlo_name)),
        ServiceKind::Managesieve => Box::new(managesieve::SieveProbe::new()),
        _ => return None,
    })
}

/// Lossy text of a server line for messages, bounded.
pub fn show(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let mut t: String = s.chars().filter(|c| !c.is_control()).take(120).collect();
    if s.chars().count() > 120 {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets_are_bounded_deduplicated_and_validated() {
        let mut c = Capabilities::default();
        c.add_mechanism("plain").unwrap();
        c.add_mechanism("PLAIN").unwrap();
        c.add_flag("IMAP4rev1").unwrap();
        c.add_flag("imap4rev1").unwrap();
        assert_eq!(c.mechanisms, ["PLAIN"]);
        assert_eq!(c.flags, ["IMAP4REV1"]);
        assert!(c.offers("Plain") && c.has("IMAP4REV1") && !c.has("PLAIN"));
        // RFC 4422 §3.1: invalid names are reported, not kept.
        for bad in ["PL AIN", "X\u{1b}[31m", "TOOLONGMECHANISMNAME21", "é"] {
            c.add_mechanism(bad).unwrap();
        }
        assert_eq!(c.mechanisms, ["PLAIN"]);
        assert_eq!(c.rejected_mechanisms.len(), 4);
        for i in 0..20 {
            c.add_mechanism(&format!("BAD*{i}")).unwrap();
        }
        assert_eq!(c.rejected_mechanisms.len(), MAX_REJECTED_SHOWN);
        // Past the cap: a protocol error, whatever the mix.
        let mut c = Capabilities::default();
        for i in 0..MAX_CAPABILITIES {
            c.add_flag(&format!("W{i}")).unwrap();
        }
        c.add_flag("W0").unwrap(); // a duplicate is free
        assert!(c.add_flag("ONE-MORE").unwrap_err().0.contains("more than"));
        assert!(c.add_mechanism("PLAIN").is_err());
        assert_eq!(c.flags.len(), MAX_CAPABILITIES);
    }
}

#[cfg(test)]
pub(crate) mod transcript {
    //! Drive a probe through a scripted server transcript.
    use super::*;

    /// `server` lines are fed one per `ReadLine`; `"<TLS>"` marks where the server expects
    /// STARTTLS. Returns what the client wrote and the outcome.
    pub fn run(
        probe: &mut dyn LineProbe,
        server: &[&str],
    ) -> (Vec<String>, Result<Capabilities, ProtocolError>) {
        let mut written = Vec::new();
        let mut lines = server.iter();
        let mut action = probe.start();
        for _ in 0..1000 {
            if !action.write.is_empty() {
                written.push(String::from_utf8_lossy(&action.write).into_owned());
            }
            action = match action.next {
                Next::Close | Next::Idle => return (written, probe.outcome()),
                Next::StartTls => {
                    assert_eq!(lines.next(), Some(&"<TLS>"), "unexpected STARTTLS");
                    probe.on_tls()
                }
                Next::ReadLine => match lines.next() {
                    Some(l) => probe.on_line(l.as_bytes()),
                    None => return (written, probe.outcome()),
                },
            };
        }
        panic!("probe did not finish")
    }
}
