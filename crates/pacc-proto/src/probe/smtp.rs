//! Submission on 465, implicit TLS (P-3, RFC 8314, RFC 5321 `EHLO`, RFC 4954 `AUTH`).

use super::{Action, Capabilities, LineProbe, MAX_LINES, ProtocolError, show};

#[derive(Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Done,
    Failed(ProtocolError),
}

/// `220` greeting (possibly multi-line), `EHLO`, multi-line `250`, `QUIT`.
#[derive(Debug)]
pub struct SmtpProbe {
    state: State,
    ehlo: Vec<u8>,
    caps: Capabilities,
    lines: usize,
    ehlo_lines: usize,
}

impl SmtpProbe {
    /// A probe that introduces itself as `ehlo_name` (a domain or address literal).
    pub fn new(ehlo_name: &str) -> Self {
        SmtpProbe {
            state: State::Greeting,
            ehlo: format!("EHLO {ehlo_name}\r\n").into_bytes(),
            caps: Capabilities::default(),
            lines: 0,
            ehlo_lines: 0,
        }
    }

    fn fail(&mut self, msg: impl Into<String>) -> Action {
        self.state = State::Failed(ProtocolError::new(msg));
        Action::close()
    }
}

/// Split `250-TEXT` / `250 TEXT` into (code, last line?, text).
fn reply(line: &str) -> Option<(u16, bool, &str)> {
    let code = line.get(..3)?.parse().ok()?;
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        _ => None,
    }
}

impl LineProbe for SmtpProbe {
    fn start(&mut self) -> Action {
        Action::read()
    }

    fn on_line(&mut self, line: &[u8]) -> Action {
        self.lines += 1;
        if self.lines > MAX_LINES {
            return self.fail("the server sent too many lines");
        }
        let text = String::from_utf8_lossy(line).into_owned();
        let Some((code, last, rest)) = reply(&text) else {
            return self.fail(format!("not an SMTP reply: {}", show(line)));
        };
        match self.state {
            State::Greeting => {
                if code != 220 {
                    return self.fail(format!("the server did not greet with 220: {}", show(line)));
                }
                if self.caps.greeting.is_empty() {
                    self.caps.greeting = rest.to_owned();
                }
                if !last {
                    return Action::read();
                }
                self.state = State::Ehlo;
                let ehlo = self.ehlo.clone();
                Action::send(&ehlo)
            }
            State::Ehlo => {
                if code != 250 {
                    return self.fail(format!("EHLO was refused: {}", show(line)));
                }
                let mut words = rest.split_ascii_whitespace();
                self.ehlo_lines += 1;
                // The first 250 line is the server's name, not a keyword.
                if let Some(first) = words.next().filter(|_| self.ehlo_lines > 1) {
                    let upper = first.to_ascii_uppercase();
                    let added = if upper == "AUTH" {
                        words.try_for_each(|m| self.caps.add_mechanism(m))
                    } else if let Some(mechs) = upper.strip_prefix("AUTH=") {
                        // Legacy `AUTH=PLAIN LOGIN` form.
                        self.caps
                            .add_mechanism(mechs)
                            .and_then(|()| words.try_for_each(|m| self.caps.add_mechanism(m)))
                    } else {
                        self.caps.add_flag(&upper)
                    };
                    if let Err(e) = added {
                        return self.fail(e.0);
                    }
                }
                if last {
                    self.state = State::Done;
                    return Action::idle(b"QUIT\r\n");
                }
                Action::read()
            }
            State::Done | State::Failed(_) => Action::close(),
        }
    }

    fn outcome(&self) -> Result<Capabilities, ProtocolError> {
        match &self.state {
            State::Done => Ok(self.caps.clone()),
            State::Failed(e) => Err(e.clone()),
            State::Greeting => Err(ProtocolError::new(
                "the server closed the connection before its greeting",
            )),
            State::Ehlo => Err(ProtocolError::new(
                "the server closed the connection during EHLO",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::transcript::run;

    #[test]
    fn invalid_mechanism_names_are_reported_not_kept() {
        let (_, out) = run(
            &mut SmtpProbe::new("[127.0.0.1]"),
            &[
                "220 hi",
                "250-mx.example",
                "250 AUTH PLAIN X\u{1b}]0;evil\u{7} LOGIN",
            ],
        );
        let caps = out.unwrap();
        assert_eq!(caps.mechanisms, ["PLAIN", "LOGIN"]);
        assert_eq!(caps.rejected_mechanisms.len(), 1);
        assert!(!caps.rejected_mechanisms[0].contains('\u{1b}'));
    }

    #[test]
    fn postfix_ehlo() {
        let (written, out) = run(
            &mut SmtpProbe::new("[127.0.0.1]"),
            &[
                "220 smtp.example.test ESMTP Postfix",
                "250-smtp.example.test",
                "250-PIPELINING",
                "250-SIZE 10240000",
                "250-AUTH PLAIN LOGIN OAUTHBEARER XOAUTH2",
                "250-AUTH=PLAIN LOGIN",
                "250-ENHANCEDSTATUSCODES",
                "250 CHUNKING",
            ],
        );
        let caps = out.unwrap();
        assert_eq!(
            caps.mechanisms,
            ["PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"]
        );
        assert!(caps.has("PIPELINING") && caps.has("CHUNKING") && !caps.has("SMTP.EXAMPLE.TEST"));
        assert_eq!(written, ["EHLO [127.0.0.1]\r\n", "QUIT\r\n"]);
    }

    #[test]
    fn multi_line_greeting_and_refusals() {
        let caps = run(
            &mut SmtpProbe::new("x"),
            &["220-hello", "220 there", "250 mx.example"],
        )
        .1
        .unwrap();
        assert!(caps.mechanisms.is_empty() && caps.flags.is_empty());
        let caps = run(
            &mut SmtpProbe::new("x"),
            &["220-hello", "220 there", "250-mx.example", "250 AUTH PLAIN"],
        )
        .1
        .unwrap();
        assert_eq!(caps.mechanisms, ["PLAIN"]);
        assert!(
            run(&mut SmtpProbe::new("x"), &["554 no service"])
                .1
                .is_err()
        );
        assert!(
            run(&mut SmtpProbe::new("x"), &["220 hi", "502 no EHLO"])
                .1
                .is_err()
        );
        assert!(run(&mut SmtpProbe::new("x"), &["* OK IMAP"]).1.is_err());
        let legacy = run(
            &mut SmtpProbe::new("x"),
            &["220 hi", "250-mx", "250 AUTH=LOGIN"],
        )
        .1
        .unwrap();
        assert_eq!(legacy.mechanisms, ["LOGIN"]);
    }
}
