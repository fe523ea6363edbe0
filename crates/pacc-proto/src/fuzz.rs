//! Entry points for the fuzz targets in `fuzz/` and for the regression tests that replay
//! every input a fuzzer ever found (`testdata/fuzz-regressions/`). Not part of the API.
//!
//! Each function takes arbitrary bytes, drives one parser or state machine with them, and
//! panics only where an invariant of pacc is broken (a round trip that does not hold, a
//! machine that does not finish within its bounds). Everything else an input can cause is
//! an ordinary error value.

use std::time::Duration;

use crate::auth::Secret;
use crate::auth::login::{Credential, Login};
use crate::discovery::{Discovery, DnsFailure, Options, Request, Response, Step};
use crate::document::{Config, ServiceKind};
use crate::fetch::{FetchError, FetchedBody};
use crate::mx::MxRecord;
use crate::name::{Domain, EmailAddress};
use crate::probe::{LineProbe, MAX_LINE, Next};

/// One fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target, by name, for the regression runner.
pub const TARGETS: &[(&str, Target)] = &[
    ("txt_record", txt_record),
    ("txt_rrset", txt_rrset),
    ("document", document),
    ("mta_sts_txt", mta_sts_txt),
    ("mta_sts_policy", mta_sts_policy),
    ("names", names),
    ("mx_select", mx_select),
    ("probe_dialogue", probe_dialogue),
    ("login_dialogue", login_dialogue),
    ("www_authenticate", www_authenticate),
    ("oauth_responses", oauth_responses),
    ("provider_toml", provider_toml),
    ("discovery", discovery),
];

/// Split `data` at `sep`, at most `max` pieces.
fn pieces(data: &[u8], sep: u8, max: usize) -> Vec<&[u8]> {
    data.split(|b| *b == sep).take(max).collect()
}

/// An RRset from bytes: RRs separated by `\n`, character-strings within one by `\t`.
fn rrset(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
    pieces(data, b'\n', 512)
        .into_iter()
        .map(|rr| {
            pieces(rr, b'\t', 16)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        })
        .collect()
}

/// One UAAC1 TXT record (DIG-2 … DIG-8); a record that parses must render and parse again
/// to the same digest.
pub fn txt_record(data: &[u8]) {
    if let Ok(r) = crate::digest::parse_record(data) {
        let again = crate::digest::parse_record(r.render().as_bytes()).expect("render parses");
        assert_eq!(again.digest, r.digest);
        assert!(again.canonical && !again.noncanonical_base64);
    }
}

/// A whole TXT RRset checked against a body (the first line is the body).
pub fn txt_rrset(data: &[u8]) {
    let (body, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let rrs = rrset(rest);
    let (_, seen) = crate::digest::check(body, &rrs);
    assert_eq!(seen.len(), rrs.len(), "one verdict per RR");
}

/// The configuration document (J-*).
pub fn document(data: &[u8]) {
    let _ = Config::from_bytes(data);
}

/// MTA-STS TXT RRset.
pub fn mta_sts_txt(data: &[u8]) {
    let _ = crate::mta_sts::parse_txt(&rrset(data));
}

/// MTA-STS policy body.
pub fn mta_sts_policy(data: &[u8]) {
    if let Ok(p) = crate::mta_sts::parse_policy(data)
        && let Some(first) = p.mx.first()
    {
        let _ = p.authorizes(&Domain::parse("mx.example.com").expect("a valid name"));
        let _ = first.to_string();
    }
}

/// Addresses and host names: whatever parses holds no control character and a domain that
/// parses again to itself.
pub fn names(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = EmailAddress::parse(s) {
        assert!(!a.as_str().chars().any(char::is_control));
        assert_eq!(
            Domain::parse_discovery(a.domain().as_str()).as_ref(),
            Ok(a.domain())
        );
        let _ = a.domain().registrable();
    }
    if let Ok(d) = Domain::parse(s) {
        assert_eq!(Domain::parse(d.as_str()).as_ref(), Ok(&d), "idempotent");
    }
    let _ = crate::name::url_host(s);
}

/// MX selection over records `preference(2 bytes) exchange\n`.
pub fn mx_select(data: &[u8]) {
    let records: Vec<MxRecord> = pieces(data, b'\n', 512)
        .into_iter()
        .filter(|r| r.len() >= 2)
        .map(|r| MxRecord {
            preference: u16::from_be_bytes([r[0], r[1]]),
            exchange: String::from_utf8_lossy(&r[2..]).into_owned(),
        })
        .collect();
    if let Ok((_, hosts)) = crate::mx::select(&records) {
        assert!(!hosts.is_empty());
    }
}

/// Drive a line machine with `lines`; it must finish within the lines it is given plus a
/// bounded number of actions, and never ask for STARTTLS twice.
fn drive(machine: &mut dyn LineProbe, lines: &[&[u8]]) {
    let mut lines = lines.iter();
    let mut action = machine.start();
    let mut tls = 0;
    for _ in 0..(lines.len() + 8) {
        action = match action.next {
            Next::Close | Next::Idle => {
                let _ = machine.outcome();
                return;
            }
            Next::StartTls => {
                tls += 1;
                assert!(tls <= 1, "STARTTLS asked twice");
                machine.on_tls()
            }
            Next::ReadLine => match lines.next() {
                Some(l) => machine.on_line(&l[..l.len().min(MAX_LINE)]),
                None => {
                    let _ = machine.outcome();
                    return;
                }
            },
        };
    }
    let _ = machine.outcome();
}

fn service(b: u8) -> ServiceKind {
    match b % 4 {
        0 => ServiceKind::Imap,
        1 => ServiceKind::Pop3,
        2 => ServiceKind::Submit,
        _ => ServiceKind::Managesieve,
    }
}

/// A probe dialogue: the first byte picks the protocol, the rest are server lines.
pub fn probe_dialogue(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Some(mut machine) = crate::probe::line_probe(service(which), "[127.0.0.1]") else {
        return;
    };
    let lines = pieces(rest, b'\n', 1024);
    drive(machine.as_mut(), &lines);
}

/// A sign-in dialogue: byte 0 the protocol, byte 1 the mechanism, then server lines.
pub fn login_dialogue(data: &[u8]) {
    let [which, mech, rest @ ..] = data else {
        return;
    };
    let mechanism = [
        "PLAIN",
        "LOGIN",
        "OAUTHBEARER",
        "XOAUTH2",
        "IMAP-LOGIN",
        "USER",
    ][usize::from(*mech) % 6];
    let credential = if mech & 0x80 == 0 {
        Credential::Password(Secret::new("pass\"word\\"))
    } else {
        Credential::Token(Secret::new("tok"))
    };
    let Ok(mut login) = Login::new(
        service(*which),
        "h.example",
        993,
        mechanism,
        "a@h.example",
        credential,
    ) else {
        return;
    };
    let lines = pieces(rest, b'\n', 1024);
    drive(&mut login, &lines);
    let _ = login.result();
}

/// `WWW-Authenticate` field lines (P-6), then the whole HTTP probe evaluation.
pub fn www_authenticate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').take(64).collect();
    let _ = crate::probe::http::parse_challenges(&lines);
    let status = data.first().map_or(401, |b| 200 + u16::from(*b) * 2);
    let owned: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let _ = crate::probe::http::evaluate(
        "dav.example.com",
        status,
        &owned,
        Some("1, 2, addressbook".to_owned()),
        lines.last().copied(),
    );
}

/// OAuth responses: metadata for an issuer, a registration answer, a token answer, and an
/// authorization redirect's query.
pub fn oauth_responses(data: &[u8]) {
    use crate::auth::oauth;
    let issuer = "https://auth.example.com";
    if let Ok(m) = oauth::check_metadata(issuer, data) {
        assert_eq!(m.metadata.issuer, issuer, "Q-12: exact issuer");
    }
    let _ = oauth::registered_client_id(data);
    let status = data.first().map_or(200, |b| 200 + u16::from(*b));
    let _ = oauth::parse_token_response(status, data);
    let query = String::from_utf8_lossy(data);
    if let Ok(code) = oauth::parse_redirect(&query, "st4te", issuer, true) {
        assert!(query.contains("st4te"), "a code only with the right state");
        let _ = code.expose();
    }
}

/// A provider description: every document it renders parses back as a configuration, and
/// rendering is deterministic (PV-1).
pub fn provider_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(desc) = crate::provider::Description::parse("fuzz.toml", text) else {
        return;
    };
    for spec in desc.documents.iter().take(16) {
        let bytes = crate::provider::render::render(spec);
        assert_eq!(
            bytes,
            crate::provider::render::render(spec),
            "deterministic"
        );
        if let Err(e) = Config::from_bytes(&bytes) {
            panic!("a rendered document does not parse: {e}");
        }
    }
}

/// A reader of fuzz bytes.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn chunk(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte()) * 4;
        let n = n.min(self.0.len());
        let (c, rest) = self.0.split_at(n);
        self.0 = rest;
        c.to_vec()
    }
}

/// The whole discovery machine, fed responses chosen by the input in the order it says.
pub fn discovery(data: &[u8]) {
    let mut input = Bytes(data);
    let options = Options {
        mx_fallback: input.byte() & 1 == 1,
        speculative: input.byte() & 1 == 1,
        ..Options::default()
    };
    let domain = Domain::parse("example.com").expect("valid");
    let mut machine = Discovery::with_options(domain, options);
    let mut pending = Vec::new();
    for _ in 0..64 {
        while let Some(r) = machine.poll_request() {
            pending.push(r);
        }
        if let Step::Done(_) = machine.step() {
            return;
        }
        while let Some(r) = machine.poll_request() {
            pending.push(r);
        }
        if pending.is_empty() {
            break;
        }
        let pick = usize::from(input.byte()) % pending.len();
        let (id, request) = pending.swap_remove(pick);
        let kind = input.byte();
        let response = match request {
            Request::Txt { .. } => Response::Txt(match kind % 3 {
                0 => Err(DnsFailure::NotFound),
                1 => Err(DnsFailure::Temporary { detail: "x".into() }),
                _ => Ok(rrset(&input.chunk())),
            }),
            Request::Mx { .. } => Response::Mx(match kind % 3 {
                0 => Err(DnsFailure::NotFound),
                1 => Ok(vec![MxRecord {
                    preference: 10,
                    exchange: String::from_utf8_lossy(&input.chunk()).into_owned(),
                }]),
                _ => Ok(vec![MxRecord {
                    preference: 10,
                    exchange: "mx.example.com".into(),
                }]),
            }),
            Request::Fetch { host, .. } => Response::Fetch(match kind % 3 {
                0 => Err(FetchError::NoSuchHost {
                    host: host.to_string(),
                }),
                1 => Err(FetchError::Timeout {
                    host: host.to_string(),
                    stage: "x".into(),
                }),
                _ => Ok(FetchedBody::test_json(input.chunk())),
            }),
        };
        machine.handle(id, response, Duration::from_millis(u64::from(kind)));
    }
    // Whatever is still open, the deadline decides.
    if !matches!(machine.step(), Step::Done(_)) {
        assert!(machine.expire().is_some(), "expire always ends the run");
    }
}
