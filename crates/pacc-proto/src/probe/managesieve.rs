//! ManageSieve on 4190 with mandatory STARTTLS (P-5, RFC 5804, Q-8): the capabilities sent
//! before TLS are only used to check that STARTTLS is offered; the SASL list is read again
//! after TLS and only that one counts.

use super::{Action, Capabilities, LineProbe, MAX_LINES, Next, ProtocolError, show};

#[derive(Debug, PartialEq, Eq)]
enum State {
    PlainCaps,
    StartTlsReply,
    TlsCaps,
    Done,
    Failed(ProtocolError),
}

/// Capabilities on connect, `STARTTLS`, capabilities again, `LOGOUT`.
#[derive(Debug)]
pub struct SieveProbe {
    state: State,
    plain_starttls: bool,
    caps: Capabilities,
    lines: usize,
}

impl Default for SieveProbe {
    fn default() -> Self {
        Self::new()
    }
}

/// Split a response line into its quoted strings and atoms (no literals: capability lines
/// never need them).
fn tokens(line: &str) -> Result<Vec<String>, ProtocolError> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => s.extend(chars.next()),
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => {
                            return Err(ProtocolError::new(format!(
                                "unterminated string in: {}",
                                show(line.as_bytes())
                            )));
                        }
                    }
                }
                out.push(s);
            }
            '{' => {
                return Err(ProtocolError::new(
                    "literals are not expected in a capability response",
                ));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ' ' || c == '"' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    Ok(out)
}

impl SieveProbe {
    /// A fresh probe.
    pub fn new() -> Self {
        SieveProbe {
            state: State::PlainCaps,
            plain_starttls: false,
            caps: Capabilities::default(),
            lines: 0,
        }
    }

    fn fail(&mut self, msg: impl Into<String>) -> Action {
        self.state = State::Failed(ProtocolError::new(msg));
        Action::close()
    }

    /// One capability-response line: `Ok(true)` at the final `OK`.
    fn capability_line(&mut self, line: &str, after_tls: bool) -> Result<bool, ProtocolError> {
        let t = tokens(line)?;
        let first = t
            .first()
            .map(|s| s.to_ascii_uppercase())
            .unwrap_or_default();
        if line.starts_with('"') {
            let value = t.get(1).cloned().unwrap_or_default();
            match first.as_str() {
                "STARTTLS" if !after_tls => self.plain_starttls = true,
                "SASL" if after_tls => value
                    .split_ascii_whitespace()
                    .try_for_each(|m| self.caps.add_mechanism(m))?,
                "IMPLEMENTATION" if after_tls => self.caps.greeting = value,
                "SASL" | "IMPLEMENTATION" => {}
                other if after_tls => self.caps.add_flag(other)?,
                _ => {}
            }
            return Ok(false);
        }
        match first.as_str() {
            "OK" => Ok(true),
            "NO" | "BYE" => Err(ProtocolError::new(format!(
                "the server refused: {}",
                show(line.as_bytes())
            ))),
            _ => Err(ProtocolError::new(format!(
                "not a ManageSieve capability line: {}",
                show(line.as_bytes())
            ))),
        }
    }
}

impl LineProbe for SieveProbe {
    fn start(&mut self) -> Action {
        Action::read()
    }

    fn on_line(&mut self, line: &[u8]) -> Action {
        self.lines += 1;
        if self.lines > MAX_LINES {
            return self.fail("the server sent too many lines");
        }
        let text = String::from_utf8_lossy(line).into_owned();
        match self.state {
            State::PlainCaps => match self.capability_line(&text, false) {
                Err(e) => self.fail(e.0),
                Ok(false) => Action::read(),
                Ok(true) if !self.plain_starttls => self.fail(
                    "the server does not offer STARTTLS; ManageSieve is only used over TLS (Q-8)",
                ),
                Ok(true) => {
                    self.state = State::StartTlsReply;
                    Action::send(b"STARTTLS\r\n")
                }
            },
            State::StartTlsReply => {
                if text.to_ascii_uppercase().starts_with("OK") {
                    self.state = State::TlsCaps;
                    Action {
                        write: Vec::new(),
                        next: Next::StartTls,
                    }
                } else {
                    self.fail(format!("STARTTLS was refused: {}", show(line)))
                }
            }
            State::TlsCaps => match self.capability_line(&text, true) {
                Err(e) => self.fail(e.0),
                Ok(false) => Action::read(),
                Ok(true) => {
                    self.state = State::Done;
                    Action::idle(b"LOGOUT\r\n")
                }
            },
            State::Done | State::Failed(_) => Action::close(),
        }
    }

    fn on_tls(&mut self) -> Action {
        if self.state == State::TlsCaps {
            // RFC 5804 §2.2: the server sends its capabilities again after TLS.
            Action::read()
        } else {
            self.fail("internal: TLS started out of order")
        }
    }

    fn outcome(&self) -> Result<Capabilities, ProtocolError> {
        match &self.state {
            State::Done => Ok(self.caps.clone()),
            State::Failed(e) => Err(e.clone()),
            State::PlainCaps => Err(ProtocolError::new(
                "the server closed the connection before its capabilities",
            )),
            State::StartTlsReply => Err(ProtocolError::new(
                "the server closed the connection after STARTTLS",
            )),
            State::TlsCaps => Err(ProtocolError::new(
                "the server sent no capabilities after TLS",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::transcript::run;

    const PLAIN: [&str; 6] = [
        "\"IMPLEMENTATION\" \"Dovecot (Debian) Pigeonhole\"",
        "\"SIEVE\" \"fileinto reject envelope\"",
        "\"NOTIFY\" \"mailto\"",
        "\"SASL\" \"PLAIN LOGIN OAUTHBEARER XOAUTH2\"",
        "\"STARTTLS\"",
        "\"VERSION\" \"1.0\"",
    ];

    #[test]
    fn dovecot_pigeonhole() {
        let mut server: Vec<&str> = PLAIN.to_vec();
        server.extend([
            "OK \"Dovecot (Debian) ready.\"",
            "OK \"Begin TLS negotiation now.\"",
            "<TLS>",
        ]);
        server.extend([
            "\"IMPLEMENTATION\" \"Dovecot (Debian) Pigeonhole\"",
            "\"SASL\" \"PLAIN OAUTHBEARER\"",
            "\"VERSION\" \"1.0\"",
            "OK \"TLS negotiation successful.\"",
        ]);
        let (written, out) = run(&mut SieveProbe::new(), &server);
        let caps = out.unwrap();
        assert_eq!(
            caps.mechanisms,
            ["PLAIN", "OAUTHBEARER"],
            "only the list sent after TLS counts"
        );
        assert_eq!(caps.greeting, "Dovecot (Debian) Pigeonhole");
        assert_eq!(written, ["STARTTLS\r\n", "LOGOUT\r\n"]);
    }

    #[test]
    fn starttls_must_be_offered() {
        let (written, out) = run(&mut SieveProbe::new(), &["\"SASL\" \"PLAIN\"", "OK ready"]);
        assert!(out.unwrap_err().0.contains("STARTTLS"));
        assert!(written.is_empty(), "nothing is sent to such a server");
    }

    #[test]
    fn sasl_only_before_tls_counts_as_none() {
        let server = [
            "\"SASL\" \"PLAIN\"",
            "\"STARTTLS\"",
            "OK hi",
            "OK go",
            "<TLS>",
            "\"VERSION\" \"1.0\"",
            "OK done",
        ];
        let caps = run(&mut SieveProbe::new(), &server).1.unwrap();
        assert!(caps.mechanisms.is_empty());
    }

    #[test]
    fn refusals_and_garbage() {
        assert!(
            run(&mut SieveProbe::new(), &["\"STARTTLS\"", "OK", "NO nope"])
                .1
                .is_err()
        );
        assert!(run(&mut SieveProbe::new(), &["* OK IMAP"]).1.is_err());
        assert!(
            run(&mut SieveProbe::new(), &["\"STARTTLS", "OK"])
                .1
                .is_err()
        );
        assert!(
            run(
                &mut SieveProbe::new(),
                &["\"STARTTLS\"", "OK", "OK", "<TLS>"]
            )
            .1
            .unwrap_err()
            .0
            .contains("after TLS")
        );
    }
}
