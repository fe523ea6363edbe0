//! Credential validation dialogues (spec §2.9, V-1 … V-4): sign in once to a text service
//! with the chosen mechanism, classify the answer with the server's own codes, and leave.
//! They drive the same [`Action`]/[`Next`] loop as the probes; nothing is retried here (V-4).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::{Secret, sasl};
use crate::document::ServiceKind;
use crate::probe::{Action, Capabilities, LineProbe, Next, ProtocolError, show};

/// What the user presents.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A password (W-1: the username is the full address).
    Password(Secret),
    /// An OAuth access token.
    Token(Secret),
}

/// The V-2 classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    /// Wrong username or password, or a rejected token: ask the user; never retried.
    Credentials,
    /// The mechanism is not accepted: another allowed mechanism may be tried once.
    Mechanism,
    /// The account is blocked, expired or needs action on the web.
    Account,
    /// Authenticated but not allowed to use this service.
    Authorization,
    /// Try again later.
    Temporary,
    /// TLS or network.
    Transport,
}

impl FailureClass {
    /// The stable name (as in JSON).
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Credentials => "credentials",
            FailureClass::Mechanism => "mechanism",
            FailureClass::Account => "account",
            FailureClass::Authorization => "authorization",
            FailureClass::Temporary => "temporary",
            FailureClass::Transport => "transport",
        }
    }
}

/// The result of one sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum LoginOutcome {
    /// Signed in.
    Ok,
    /// Refused.
    Failed {
        /// The class.
        class: FailureClass,
        /// The server's own words.
        server_text: String,
    },
}

/// Classify an IMAP tagged NO/BAD by its RFC 5530 response code (V-3).
pub fn classify_imap(line: &str) -> FailureClass {
    let upper = line.to_ascii_uppercase();
    let code = upper
        .split_once('[')
        .and_then(|(_, r)| r.split(']').next())
        .unwrap_or("");
    let code = code.split_whitespace().next().unwrap_or("");
    match code {
        "AUTHENTICATIONFAILED" => FailureClass::Credentials,
        "AUTHORIZATIONFAILED" => FailureClass::Authorization,
        "EXPIRED" | "CONTACTADMIN" | "PRIVACYREQUIRED" => FailureClass::Account,
        "UNAVAILABLE" | "INUSE" | "LIMIT" | "SERVERBUG" => FailureClass::Temporary,
        "CANNOT" => FailureClass::Mechanism,
        _ if upper.split_whitespace().nth(1) == Some("BAD") => FailureClass::Mechanism,
        _ => FailureClass::Credentials,
    }
}

/// Classify an SMTP AUTH reply by code and enhanced status (RFC 4954, V-3).
pub fn classify_smtp(line: &str) -> FailureClass {
    let code = line.get(..3).unwrap_or("");
    let enhanced = line
        .get(4..)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("");
    match (code, enhanced) {
        ("535", _) => FailureClass::Credentials,
        ("534", _) | ("504", _) | (_, "5.5.4") | (_, "5.7.9") => FailureClass::Mechanism,
        ("538", _) => FailureClass::Transport,
        ("530", _) => FailureClass::Authorization,
        ("454", _) | ("421", _) | ("452", _) => FailureClass::Temporary,
        (c, _) if c.starts_with('4') => FailureClass::Temporary,
        _ => FailureClass::Credentials,
    }
}

/// Classify a POP3 `-ERR` by its RFC 2449/3206 code (V-3).
pub fn classify_pop3(line: &str) -> FailureClass {
    let upper = line.to_ascii_uppercase();
    if upper.contains("[AUTH]") {
        FailureClass::Credentials
    } else if upper.contains("[SYS/TEMP]")
        || upper.contains("[IN-USE]")
        || upper.contains("[LOGIN-DELAY]")
    {
        FailureClass::Temporary
    } else if upper.contains("[SYS/PERM]") {
        FailureClass::Account
    } else {
        FailureClass::Credentials
    }
}

/// Classify a ManageSieve `NO` by its response code (RFC 5804, V-3).
pub fn classify_sieve(line: &str) -> FailureClass {
    let upper = line.to_ascii_uppercase();
    if upper.contains("(AUTH-TOO-WEAK") || upper.contains("(ENCRYPT-NEEDED") {
        FailureClass::Mechanism
    } else if upper.contains("(TRYLATER") {
        FailureClass::Temporary
    } else {
        FailureClass::Credentials
    }
}

/// Classify an HTTP answer to an authenticated request (V-3).
pub fn classify_http(status: u16, bearer_error: Option<&str>) -> Option<FailureClass> {
    match status {
        200..=299 => None,
        401 if bearer_error == Some("insufficient_scope") => Some(FailureClass::Authorization),
        401 => Some(FailureClass::Credentials),
        403 => Some(FailureClass::Authorization),
        429 | 500..=599 => Some(FailureClass::Temporary),
        _ => Some(FailureClass::Credentials),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Greeting,
    /// On a probe's idle connection: the first action authenticates.
    Resumed,
    Capabilities,
    StartTlsReply,
    TlsCapabilities,
    /// Waiting for a continuation or the final answer; the u8 counts continuations.
    Auth(u8),
    /// Sent the OAUTHBEARER/XOAUTH2 abort; waiting for the final failure.
    AuthAbort,
    /// Sent `USER`, waiting for `+OK` before `PASS`.
    PopUser,
    Done,
}

/// One sign-in to a text service.
pub struct Login {
    kind: ServiceKind,
    mechanism: String,
    username: String,
    credential: Credential,
    host: String,
    port: u16,
    stage: Stage,
    outcome: Option<Result<LoginOutcome, ProtocolError>>,
    caps: Capabilities,
    lines: usize,
    /// RFC 7628 §3.2.2: the `openid-configuration` an OAUTHBEARER error names.
    openid_configuration: Option<String>,
    /// IMAP tags of the authentication command and the logout (other ones when the
    /// session continues a probe's connection, whose tags were `a1`, `a2`).
    tags: (&'static str, &'static str),
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("kind", &self.kind)
            .field("mechanism", &self.mechanism)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

fn line(s: &str) -> Vec<u8> {
    format!("{s}\r\n").into_bytes()
}

/// An IMAP quoted string (RFC 9051 §4.3) for `LOGIN`: `\\` and `"` escaped; `None` for a
/// string a quoted string cannot hold (CR, LF, NUL). Non-ASCII is sent as UTF-8, which
/// RFC 9051 servers accept in quoted strings.
fn imap_quote(s: &str) -> Option<String> {
    if s.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

impl Login {
    /// Sign in to `kind` at `host:port` with `mechanism` (`PLAIN`, `LOGIN`, `OAUTHBEARER`,
    /// `XOAUTH2`, `IMAP-LOGIN`, `USER`) as `username`. Refuses, before anything is sent, a
    /// username or secret that cannot be put on a protocol line ([`sasl::check_sendable`]).
    pub fn new(
        kind: ServiceKind,
        host: &str,
        port: u16,
        mechanism: &str,
        username: &str,
        credential: Credential,
    ) -> Result<Self, sasl::Unsendable> {
        let (secret, what) = match &credential {
            Credential::Password(s) => (s, "password"),
            Credential::Token(s) => (s, "token"),
        };
        sasl::check_sendable(username, secret, what)?;
        if mechanism.eq_ignore_ascii_case("IMAP-LOGIN")
            && (imap_quote(username).is_none() || imap_quote(secret.expose()).is_none())
        {
            return Err(sasl::Unsendable::Secret {
                what,
                found: "characters an IMAP quoted string cannot carry",
            });
        }
        Ok(Login {
            kind,
            mechanism: mechanism.to_ascii_uppercase(),
            username: username.to_owned(),
            credential,
            host: host.to_owned(),
            port,
            stage: Stage::Greeting,
            outcome: None,
            caps: Capabilities::default(),
            lines: 0,
            openid_configuration: None,
            tags: ("a1", "a2"),
        })
    }

    /// Continue on a connection a probe left idle ([`crate::probe::Next::Idle`]): TLS is
    /// up and `caps` are what the server offered over it, so the first action is the
    /// authentication command itself (the same refusals as [`Login::new`]).
    pub fn resume(
        kind: ServiceKind,
        host: &str,
        port: u16,
        mechanism: &str,
        username: &str,
        credential: Credential,
        caps: Capabilities,
    ) -> Result<Self, sasl::Unsendable> {
        let mut login = Login::new(kind, host, port, mechanism, username, credential)?;
        login.caps = caps;
        login.stage = Stage::Resumed;
        login.tags = ("b1", "b2");
        Ok(login)
    }

    /// The `openid-configuration` URL the server's OAUTHBEARER error response named (RFC
    /// 7628 §3.2.2): where it expects tokens from (O-14).
    pub fn openid_configuration(&self) -> Option<&str> {
        self.openid_configuration.as_deref()
    }

    /// The outcome once the dialogue closed.
    pub fn result(&self) -> Result<LoginOutcome, ProtocolError> {
        self.outcome.clone().unwrap_or_else(|| {
            Err(ProtocolError::new(
                "the server closed the connection during sign-in",
            ))
        })
    }

    fn secret(&self) -> &Secret {
        match &self.credential {
            Credential::Password(s) | Credential::Token(s) => s,
        }
    }

    /// The SASL initial response for the mechanism.
    fn initial_response(&self) -> Option<Secret> {
        Some(match self.mechanism.as_str() {
            "PLAIN" => sasl::plain(&self.username, self.secret()),
            "OAUTHBEARER" => {
                sasl::oauthbearer(&self.username, &self.host, self.port, self.secret())
            }
            "XOAUTH2" => sasl::xoauth2(&self.username, self.secret()),
            _ => return None,
        })
    }

    fn finish(&mut self, outcome: LoginOutcome, logout: &[u8]) -> Action {
        self.outcome = Some(Ok(outcome));
        self.stage = Stage::Done;
        Action::send_then(logout, Next::Close)
    }

    fn fail(&mut self, class: FailureClass, text: &[u8], logout: &[u8]) -> Action {
        self.finish(
            LoginOutcome::Failed {
                class,
                server_text: show(text),
            },
            logout,
        )
    }

    fn broken(&mut self, msg: String) -> Action {
        self.outcome = Some(Err(ProtocolError::new(msg)));
        self.stage = Stage::Done;
        Action::close()
    }

    /// The first authentication command for the protocol.
    fn auth_command(&mut self) -> Action {
        self.stage = Stage::Auth(0);
        let ir = self.initial_response();
        let m = self.mechanism.clone();
        match self.kind {
            ServiceKind::Imap => match (m.as_str(), ir) {
                ("IMAP-LOGIN", _) => {
                    // `new` refused what cannot be quoted.
                    let (Some(u), Some(p)) = (
                        imap_quote(&self.username),
                        imap_quote(self.secret().expose()),
                    ) else {
                        return self.broken("the credential cannot be quoted".into());
                    };
                    Action::send(&line(&format!("{} LOGIN {u} {p}", self.tags.0)))
                }
                (_, Some(ir)) if self.caps.has("SASL-IR") => Action::send(&line(&format!(
                    "{} AUTHENTICATE {m} {}",
                    self.tags.0,
                    ir.expose()
                ))),
                _ => Action::send(&line(&format!("{} AUTHENTICATE {m}", self.tags.0))),
            },
            ServiceKind::Pop3 => match (m.as_str(), ir) {
                ("USER", _) => {
                    self.stage = Stage::PopUser;
                    Action::send(&line(&format!("USER {}", self.username)))
                }
                (_, Some(ir)) => Action::send(&line(&format!("AUTH {m} {}", ir.expose()))),
                _ => Action::send(&line(&format!("AUTH {m}"))),
            },
            ServiceKind::Submit => match ir {
                Some(ir) => Action::send(&line(&format!("AUTH {m} {}", ir.expose()))),
                None => Action::send(&line(&format!("AUTH {m}"))),
            },
            ServiceKind::Managesieve => match ir {
                Some(ir) => {
                    Action::send(&line(&format!("AUTHENTICATE \"{m}\" \"{}\"", ir.expose())))
                }
                None => Action::send(&line(&format!("AUTHENTICATE \"{m}\""))),
            },
            _ => self.broken(format!("{} is not a text protocol", self.kind)),
        }
    }

    /// A server continuation (`+ …`, `334 …`, `"…"`): the next SASL step.
    fn continuation(&mut self, n: u8, payload: &str) -> Action {
        let answer: Option<String> = match self.mechanism.as_str() {
            // LOGIN: username, then password.
            "LOGIN" => {
                let (u, p) = sasl::login(&self.username, self.secret());
                match n {
                    0 => Some(u),
                    1 => Some(p.expose().to_owned()),
                    _ => None,
                }
            }
            // The initial response was not sent inline: send it now.
            "PLAIN" | "OAUTHBEARER" | "XOAUTH2" if n == 0 && payload.trim().is_empty() => {
                self.initial_response().map(|s| s.expose().to_owned())
            }
            // A token error challenge (RFC 7628 §3.2.3): abort with 0x01 (XOAUTH2: empty line).
            "OAUTHBEARER" | "XOAUTH2" => {
                self.stage = Stage::AuthAbort;
                // §3.2.2: `{"status": …, "scope": …, "openid-configuration": …}`.
                let json = STANDARD
                    .decode(payload.trim().trim_matches('"'))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                self.openid_configuration = json
                    .as_ref()
                    .and_then(|v| v.get("openid-configuration"))
                    .and_then(|v| v.as_str())
                    .filter(|u| u.len() <= 2048)
                    .map(str::to_owned);
                let abort = if self.mechanism == "OAUTHBEARER" {
                    sasl::OAUTHBEARER_ABORT
                } else {
                    ""
                };
                return match self.kind {
                    ServiceKind::Managesieve => Action::send(&line(&format!("\"{abort}\""))),
                    _ => Action::send(&line(abort)),
                };
            }
            _ => None,
        };
        match answer {
            Some(a) => {
                self.stage = Stage::Auth(n + 1);
                match self.kind {
                    ServiceKind::Managesieve => Action::send(&line(&format!("\"{a}\""))),
                    _ => Action::send(&line(&a)),
                }
            }
            None => self.broken(format!("unexpected continuation during {}", self.mechanism)),
        }
    }
}

impl LineProbe for Login {
    fn start(&mut self) -> Action {
        if self.stage == Stage::Resumed {
            return self.auth_command();
        }
        Action::read()
    }

    fn on_line(&mut self, raw: &[u8]) -> Action {
        self.lines += 1;
        if self.lines > crate::probe::MAX_LINES {
            return self.broken("the server sent too many lines".into());
        }
        let text = String::from_utf8_lossy(raw).into_owned();
        match (self.kind, self.stage) {
            // ---- IMAP ----
            (ServiceKind::Imap, Stage::Greeting) => {
                if !text.starts_with("* OK") {
                    return self.broken(format!("not an IMAP greeting: {}", show(raw)));
                }
                if let Some(caps) = text
                    .split_once("[CAPABILITY ")
                    .and_then(|(_, r)| r.split(']').next())
                {
                    if let Err(e) = caps
                        .split_whitespace()
                        .try_for_each(|w| self.caps.add_flag(w))
                    {
                        return self.broken(e.0);
                    }
                    return self.auth_command();
                }
                self.stage = Stage::Capabilities;
                Action::send(b"a0 CAPABILITY\r\n")
            }
            (ServiceKind::Imap, Stage::Capabilities) => {
                if let Some(rest) = text.strip_prefix("* CAPABILITY ") {
                    match rest
                        .split_whitespace()
                        .try_for_each(|w| self.caps.add_flag(w))
                    {
                        Ok(()) => Action::read(),
                        Err(e) => self.broken(e.0),
                    }
                } else if text.starts_with("a0 ") {
                    self.auth_command()
                } else {
                    Action::read()
                }
            }
            (ServiceKind::Imap, Stage::Auth(n)) => {
                if let Some(payload) = text.strip_prefix('+') {
                    return self.continuation(n, payload);
                }
                let (tag, logout_tag) = self.tags;
                let logout = line(&format!("{logout_tag} LOGOUT"));
                let Some(reply) = text
                    .strip_prefix(tag)
                    .filter(|r| r.starts_with(' '))
                    .map(str::trim_start)
                else {
                    return Action::read();
                };
                if reply.starts_with("OK") {
                    return self.finish(LoginOutcome::Ok, &logout);
                }
                // V-3: a refusal of a mechanism the server never advertised is a mechanism
                // problem, whatever code it carries.
                let advertised = self.mechanism == "IMAP-LOGIN"
                    || self.caps.has(&format!("AUTH={}", self.mechanism))
                    || self.caps.offers(&self.mechanism);
                let class = if !advertised
                    || text
                        .to_ascii_lowercase()
                        .contains("unsupported authentication mechanism")
                {
                    FailureClass::Mechanism
                } else {
                    classify_imap(&text)
                };
                self.fail(class, raw, &logout)
            }
            (ServiceKind::Imap, Stage::AuthAbort) => {
                let (tag, logout_tag) = self.tags;
                if text.strip_prefix(tag).is_some_and(|r| r.starts_with(' ')) {
                    let logout = line(&format!("{logout_tag} LOGOUT"));
                    return self.fail(FailureClass::Credentials, raw, &logout);
                }
                Action::read()
            }
            // ---- POP3 ----
            (ServiceKind::Pop3, Stage::Greeting) => {
                if !text.starts_with("+OK") {
                    return self.broken(format!("not a POP3 greeting: {}", show(raw)));
                }
                self.auth_command()
            }
            (ServiceKind::Pop3, Stage::PopUser) => {
                if text.starts_with("+OK") {
                    self.stage = Stage::Auth(9);
                    let pass = format!("PASS {}", self.secret().expose());
                    Action::send(&line(&pass))
                } else {
                    self.fail(classify_pop3(&text), raw, b"QUIT\r\n")
                }
            }
            (ServiceKind::Pop3, Stage::Auth(n)) => {
                if text.starts_with("+OK") {
                    return self.finish(LoginOutcome::Ok, b"QUIT\r\n");
                }
                if text.starts_with("-ERR") {
                    return self.fail(classify_pop3(&text), raw, b"QUIT\r\n");
                }
                match text.strip_prefix('+') {
                    Some(payload) => self.continuation(n, payload),
                    None => self.broken(format!("unexpected POP3 reply: {}", show(raw))),
                }
            }
            (ServiceKind::Pop3, Stage::AuthAbort) => {
                if text.starts_with("-ERR") || text.starts_with("+OK") {
                    return self.fail(FailureClass::Credentials, raw, b"QUIT\r\n");
                }
                Action::read()
            }
            // ---- Submission ----
            (ServiceKind::Submit, Stage::Greeting) => {
                if !text.starts_with("220") {
                    return self.broken(format!("not an SMTP greeting: {}", show(raw)));
                }
                if text.as_bytes().get(3) == Some(&b'-') {
                    return Action::read();
                }
                self.stage = Stage::Capabilities;
                Action::send(b"EHLO [127.0.0.1]\r\n")
            }
            (ServiceKind::Submit, Stage::Capabilities) => {
                if !text.starts_with("250") {
                    return self.broken(format!("EHLO was refused: {}", show(raw)));
                }
                if text.as_bytes().get(3) == Some(&b' ') {
                    return self.auth_command();
                }
                Action::read()
            }
            (ServiceKind::Submit, Stage::Auth(n)) => {
                if text.starts_with("235") {
                    return self.finish(LoginOutcome::Ok, b"QUIT\r\n");
                }
                if let Some(payload) = text.strip_prefix("334") {
                    let payload = payload.trim().to_owned();
                    return self.continuation(n, &payload);
                }
                self.fail(classify_smtp(&text), raw, b"QUIT\r\n")
            }
            (ServiceKind::Submit, Stage::AuthAbort) => {
                self.fail(FailureClass::Credentials, raw, b"QUIT\r\n")
            }
            // ---- ManageSieve: STARTTLS first (Q-8) ----
            (ServiceKind::Managesieve, Stage::Greeting) => {
                if text.starts_with("\"STARTTLS\"") {
                    // One word on a fresh set: cannot exceed the cap.
                    let _ = self.caps.add_flag("STARTTLS");
                }
                if text.starts_with("OK") {
                    if !self.caps.has("STARTTLS") {
                        return self.broken("the server does not offer STARTTLS (Q-8)".into());
                    }
                    self.stage = Stage::StartTlsReply;
                    return Action::send(b"STARTTLS\r\n");
                }
                if text.starts_with("NO") || text.starts_with("BYE") {
                    return self.broken(format!("the server refused: {}", show(raw)));
                }
                Action::read()
            }
            (ServiceKind::Managesieve, Stage::StartTlsReply) => {
                if text.starts_with("OK") {
                    self.stage = Stage::TlsCapabilities;
                    Action {
                        write: Vec::new(),
                        next: Next::StartTls,
                    }
                } else {
                    self.broken(format!("STARTTLS was refused: {}", show(raw)))
                }
            }
            (ServiceKind::Managesieve, Stage::TlsCapabilities) => {
                if text.starts_with("OK") {
                    return self.auth_command();
                }
                Action::read()
            }
            (ServiceKind::Managesieve, Stage::Auth(n)) => {
                if text.starts_with("OK") {
                    return self.finish(LoginOutcome::Ok, b"LOGOUT\r\n");
                }
                if text.starts_with("NO") || text.starts_with("BYE") {
                    return self.fail(classify_sieve(&text), raw, b"LOGOUT\r\n");
                }
                // A continuation is a quoted base64 string (or a literal).
                let payload = text.trim().trim_matches('"').to_owned();
                if STANDARD.decode(&payload).is_ok() || payload.is_empty() {
                    self.continuation(n, &payload)
                } else {
                    self.broken(format!("unexpected ManageSieve reply: {}", show(raw)))
                }
            }
            (ServiceKind::Managesieve, Stage::AuthAbort) => {
                if text.starts_with("NO") || text.starts_with("OK") {
                    return self.fail(FailureClass::Credentials, raw, b"LOGOUT\r\n");
                }
                Action::read()
            }
            (_, Stage::Done) => Action::close(),
            _ => self.broken(format!("unexpected reply: {}", show(raw))),
        }
    }

    fn on_tls(&mut self) -> Action {
        Action::read()
    }

    fn outcome(&self) -> Result<Capabilities, ProtocolError> {
        self.result().map(|_| self.caps.clone())
    }

    fn sends_secrets(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::transcript::run;

    fn pw() -> Credential {
        Credential::Password(Secret::new("alice-secret"))
    }

    #[test]
    fn logged_lines_never_carry_the_credential() {
        use crate::probe::redact;
        let ir = sasl::plain("alice@example.test", &Secret::new("alice-secret"));
        for (line, shown) in [
            (
                format!("a1 AUTHENTICATE PLAIN {}", ir.expose()),
                "a1 AUTHENTICATE PLAIN <redacted>",
            ),
            (
                format!("AUTH PLAIN {}", ir.expose()),
                "AUTH PLAIN <redacted>",
            ),
            (
                "a1 LOGIN \"alice@example.test\" \"alice-secret\"".to_owned(),
                "a1 LOGIN <redacted>",
            ),
            ("PASS alice-secret".to_owned(), "PASS <redacted>"),
            ("USER alice@example.test".to_owned(), "USER <redacted>"),
            (ir.expose().to_owned(), "<redacted>"),
            (
                format!("AUTHENTICATE \"PLAIN\" \"{}\"", ir.expose()),
                "AUTHENTICATE \"PLAIN\" <redacted>",
            ),
            ("b2 LOGOUT".to_owned(), "b2 LOGOUT"),
            // Base64 that happens to look like a word is not kept either.
            ("QUJD".to_owned(), "<redacted>"),
        ] {
            let r = redact(line.as_bytes());
            assert_eq!(r, shown, "{line}");
            assert!(!r.contains("alice-secret") && !r.contains(ir.expose()));
        }
    }

    #[test]
    fn imap_plain_with_sasl_ir() {
        let mut l = Login::new(
            ServiceKind::Imap,
            "imap.example.test",
            993,
            "PLAIN",
            "alice@example.test",
            pw(),
        )
        .unwrap();
        let (written, _) = run(
            &mut l,
            &[
                "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready",
                "a1 OK [CAPABILITY IMAP4rev1] Logged in",
            ],
        );
        assert_eq!(
            written[0],
            format!(
                "a1 AUTHENTICATE PLAIN {}\r\n",
                sasl::plain("alice@example.test", &Secret::new("alice-secret")).expose()
            )
        );
        assert_eq!(l.result().unwrap(), LoginOutcome::Ok);
    }

    #[test]
    fn imap_failures_are_classified() {
        for (reply, class) in [
            (
                "a1 NO [AUTHENTICATIONFAILED] Authentication failed.",
                FailureClass::Credentials,
            ),
            (
                "a1 NO [AUTHORIZATIONFAILED] not for you",
                FailureClass::Authorization,
            ),
            ("a1 NO [UNAVAILABLE] try later", FailureClass::Temporary),
            ("a1 NO [EXPIRED] password expired", FailureClass::Account),
            ("a1 BAD unknown mechanism", FailureClass::Mechanism),
        ] {
            let mut l = Login::new(ServiceKind::Imap, "h", 993, "PLAIN", "a@b", pw()).unwrap();
            let _ = run(
                &mut l,
                &["* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi", reply],
            );
            assert!(
                matches!(l.result().unwrap(), LoginOutcome::Failed { class: c, .. } if c == class),
                "{reply}"
            );
        }
    }

    #[test]
    fn imap_unadvertised_mechanism_is_a_mechanism_failure() {
        let mut l = Login::new(ServiceKind::Imap, "h", 993, "CRAM-MD5", "a@b", pw()).unwrap();
        let _ = run(
            &mut l,
            &[
                "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi",
                "a1 NO [AUTHENTICATIONFAILED] nope",
            ],
        );
        assert!(matches!(
            l.result().unwrap(),
            LoginOutcome::Failed {
                class: FailureClass::Mechanism,
                ..
            }
        ));
    }

    #[test]
    fn imap_oauthbearer_error_is_aborted_properly() {
        let mut l = Login::new(
            ServiceKind::Imap,
            "h",
            993,
            "OAUTHBEARER",
            "a@b",
            Credential::Token(Secret::new("t")),
        )
        .unwrap();
        let (written, _) = run(
            &mut l,
            &[
                "* OK [CAPABILITY IMAP4rev1 SASL-IR] hi",
                "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=",
                "a1 NO [AUTHENTICATIONFAILED] failed",
            ],
        );
        assert_eq!(
            written[1], "AQ==\r\n",
            "RFC 7628: a single 0x01 after the error challenge"
        );
        assert!(matches!(
            l.result().unwrap(),
            LoginOutcome::Failed {
                class: FailureClass::Credentials,
                ..
            }
        ));
        assert_eq!(l.openid_configuration(), None);
    }

    #[test]
    fn oauthbearer_error_names_the_expected_issuer() {
        let mut l = Login::new(
            ServiceKind::Submit,
            "h",
            465,
            "OAUTHBEARER",
            "a@b",
            Credential::Token(Secret::new("t")),
        )
        .unwrap();
        let challenge = STANDARD.encode(
            br#"{"status":"invalid_token","openid-configuration":"https://other.example/.well-known/openid-configuration"}"#,
        );
        let _ = run(
            &mut l,
            &[
                "220 hi",
                "250-x",
                "250 AUTH OAUTHBEARER",
                &format!("334 {challenge}"),
                "535 5.7.8 no",
            ],
        );
        assert_eq!(
            l.openid_configuration(),
            Some("https://other.example/.well-known/openid-configuration")
        );
        assert_eq!(
            crate::auth::oauth::issuer_of_configuration_url(l.openid_configuration().unwrap())
                .as_deref(),
            Some("https://other.example")
        );
    }

    #[test]
    fn imap_login_command_quotes() {
        let mut l = Login::new(
            ServiceKind::Imap,
            "h",
            993,
            "IMAP-LOGIN",
            "a@b",
            Credential::Password(Secret::new("p\"w")),
        )
        .unwrap();
        let (written, _) = run(
            &mut l,
            &[
                "* OK hi",
                "* CAPABILITY IMAP4rev1",
                "a0 OK done",
                "a1 OK welcome",
            ],
        );
        assert_eq!(written[1], "a1 LOGIN \"a@b\" \"p\\\"w\"\r\n");
        assert_eq!(l.result().unwrap(), LoginOutcome::Ok);
    }

    #[test]
    fn smtp_login_and_plain() {
        let mut l = Login::new(ServiceKind::Submit, "h", 465, "LOGIN", "a@b", pw()).unwrap();
        let (written, _) = run(
            &mut l,
            &[
                "220 hi",
                "250-h",
                "250 AUTH LOGIN",
                "334 VXNlcm5hbWU6",
                "334 UGFzc3dvcmQ6",
                "235 2.7.0 ok",
            ],
        );
        assert_eq!(written[1], "AUTH LOGIN\r\n");
        assert_eq!(written[2], format!("{}\r\n", STANDARD.encode("a@b")));
        assert_eq!(l.result().unwrap(), LoginOutcome::Ok);
        let mut l = Login::new(ServiceKind::Submit, "h", 465, "PLAIN", "a@b", pw()).unwrap();
        let _ = run(
            &mut l,
            &["220 hi", "250 h", "535 5.7.8 Error: authentication failed"],
        );
        assert!(matches!(
            l.result().unwrap(),
            LoginOutcome::Failed {
                class: FailureClass::Credentials,
                ..
            }
        ));
        assert_eq!(
            classify_smtp("534 5.7.9 mechanism too weak"),
            FailureClass::Mechanism
        );
        assert_eq!(
            classify_smtp("454 4.7.0 temporary"),
            FailureClass::Temporary
        );
        assert_eq!(
            classify_smtp("530 5.7.0 must issue STARTTLS"),
            FailureClass::Authorization
        );
    }

    #[test]
    fn pop3_user_pass_and_sasl() {
        let mut l = Login::new(ServiceKind::Pop3, "h", 995, "USER", "a@b", pw()).unwrap();
        let (written, _) = run(&mut l, &["+OK ready", "+OK", "+OK Logged in."]);
        assert_eq!(
            written[..2],
            [
                "USER a@b\r\n".to_owned(),
                "PASS alice-secret\r\n".to_owned()
            ]
        );
        assert_eq!(l.result().unwrap(), LoginOutcome::Ok);
        let mut l = Login::new(ServiceKind::Pop3, "h", 995, "PLAIN", "a@b", pw()).unwrap();
        let _ = run(&mut l, &["+OK ready", "-ERR [AUTH] Authentication failed."]);
        assert!(matches!(
            l.result().unwrap(),
            LoginOutcome::Failed {
                class: FailureClass::Credentials,
                ..
            }
        ));
        assert_eq!(
            classify_pop3("-ERR [SYS/TEMP] busy"),
            FailureClass::Temporary
        );
        assert_eq!(
            classify_pop3("-ERR [SYS/PERM] disabled"),
            FailureClass::Account
        );
    }

    #[test]
    fn managesieve_after_starttls() {
        let mut l = Login::new(ServiceKind::Managesieve, "h", 4190, "PLAIN", "a@b", pw()).unwrap();
        let (written, _) = run(
            &mut l,
            &[
                "\"SASL\" \"PLAIN\"",
                "\"STARTTLS\"",
                "OK hi",
                "OK go",
                "<TLS>",
                "\"SASL\" \"PLAIN\"",
                "OK tls",
                "OK \"Logged in.\"",
            ],
        );
        assert_eq!(written[0], "STARTTLS\r\n");
        assert!(written[1].starts_with("AUTHENTICATE \"PLAIN\" \""));
        assert_eq!(l.result().unwrap(), LoginOutcome::Ok);
        assert_eq!(
            classify_sieve("NO (ENCRYPT-NEEDED) \"no\""),
            FailureClass::Mechanism
        );
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let l = Login::new(ServiceKind::Imap, "h", 993, "PLAIN", "a@b", pw()).unwrap();
        assert!(!format!("{l:?}").contains("alice-secret"));
    }

    #[test]
    fn http_classes() {
        assert_eq!(classify_http(207, None), None);
        assert_eq!(classify_http(401, None), Some(FailureClass::Credentials));
        assert_eq!(
            classify_http(401, Some("insufficient_scope")),
            Some(FailureClass::Authorization)
        );
        assert_eq!(classify_http(403, None), Some(FailureClass::Authorization));
        assert_eq!(classify_http(503, None), Some(FailureClass::Temporary));
    }
}
