//! POP3 on 995, implicit TLS (P-4, RFC 1939, RFC 2449 `CAPA`, RFC 5034 `SASL`).

use super::{Action, Capabilities, LineProbe, MAX_LINES, ProtocolError, show};

#[derive(Debug, PartialEq, Eq)]
enum State {
    Greeting,
    CapaStatus,
    CapaLines,
    Done,
    Failed(ProtocolError),
}

/// Greeting, `CAPA`, `QUIT`.
#[derive(Debug)]
pub struct Pop3Probe {
    state: State,
    caps: Capabilities,
    lines: usize,
}

impl Default for Pop3Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Pop3Probe {
    /// A fresh probe.
    pub fn new() -> Self {
        Pop3Probe {
            state: State::Greeting,
            caps: Capabilities::default(),
            lines: 0,
        }
    }

    fn fail(&mut self, msg: impl Into<String>) -> Action {
        self.state = State::Failed(ProtocolError::new(msg));
        Action::close()
    }
}

impl LineProbe for Pop3Probe {
    fn start(&mut self) -> Action {
        Action::read()
    }

    fn on_line(&mut self, line: &[u8]) -> Action {
        self.lines += 1;
        if self.lines > MAX_LINES {
            return self.fail("the server sent too many lines");
        }
        let text = String::from_utf8_lossy(line);
        match self.state {
            State::Greeting => {
                let Some(rest) = text.strip_prefix("+OK") else {
                    return self.fail(format!("not a POP3 greeting: {}", show(line)));
                };
                self.caps.greeting = rest.trim().to_owned();
                self.state = State::CapaStatus;
                Action::send(b"CAPA\r\n")
            }
            State::CapaStatus => {
                if text.starts_with("+OK") {
                    self.state = State::CapaLines;
                    Action::read()
                } else if text.starts_with("-ERR") {
                    // RFC 2449 servers answer CAPA; one that does not offers no SASL.
                    self.state = State::Done;
                    Action::idle(b"QUIT\r\n")
                } else {
                    self.fail(format!("unexpected reply to CAPA: {}", show(line)))
                }
            }
            State::CapaLines => {
                if text == "." {
                    self.state = State::Done;
                    return Action::idle(b"QUIT\r\n");
                }
                let mut words = text.split_ascii_whitespace();
                let added = match words.next().map(str::to_ascii_uppercase).as_deref() {
                    Some("SASL") => self
                        .caps
                        .add_flag("SASL")
                        .and_then(|()| words.try_for_each(|m| self.caps.add_mechanism(m))),
                    Some(w) => self.caps.add_flag(w),
                    None => Ok(()),
                };
                match added {
                    Ok(()) => Action::read(),
                    Err(e) => self.fail(e.0),
                }
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
            _ => Err(ProtocolError::new(
                "the server closed the connection during CAPA",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::transcript::run;

    #[test]
    fn capa_with_sasl_and_user() {
        let (written, out) = run(
            &mut Pop3Probe::new(),
            &[
                "+OK Dovecot (Debian) ready.",
                "+OK",
                "CAPA",
                "TOP",
                "UIDL",
                "RESP-CODES",
                "PIPELINING",
                "AUTH-RESP-CODE",
                "USER",
                "SASL PLAIN LOGIN OAUTHBEARER XOAUTH2",
                ".",
            ],
        );
        let caps = out.unwrap();
        assert_eq!(
            caps.mechanisms,
            ["PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"]
        );
        assert!(caps.has("USER") && caps.has("RESP-CODES"));
        assert_eq!(written, ["CAPA\r\n", "QUIT\r\n"]);
    }

    #[test]
    fn no_capa_and_broken_servers() {
        let caps = run(&mut Pop3Probe::new(), &["+OK hi", "-ERR unknown command"])
            .1
            .unwrap();
        assert!(caps.mechanisms.is_empty());
        assert!(run(&mut Pop3Probe::new(), &["-ERR busy"]).1.is_err());
        assert!(
            run(&mut Pop3Probe::new(), &["+OK hi", "+OK", "SASL PLAIN"])
                .1
                .is_err(),
            "no terminating dot"
        );
    }
}
