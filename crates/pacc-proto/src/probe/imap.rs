//! IMAP on 993, implicit TLS (P-2, RFC 9051 / 3501, RFC 4959). Responses are parsed with
//! imap-codec.

use imap_codec::decode::Decoder as _;
use imap_codec::imap_types::response::{Code, Data, GreetingKind, Response, Status};
use imap_codec::{GreetingCodec, ResponseCodec};

use super::{Action, Capabilities, LineProbe, MAX_LINES, ProtocolError, show};

#[derive(Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Capability,
    Done,
    Failed(ProtocolError),
}

/// Reads the greeting (using `[CAPABILITY …]` if present), asks `CAPABILITY` otherwise,
/// then `LOGOUT`.
#[derive(Debug)]
pub struct ImapProbe {
    state: State,
    caps: Capabilities,
    lines: usize,
}

impl Default for ImapProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl ImapProbe {
    /// A fresh probe.
    pub fn new() -> Self {
        ImapProbe {
            state: State::Greeting,
            caps: Capabilities::default(),
            lines: 0,
        }
    }

    fn fail(&mut self, msg: impl Into<String>) -> Action {
        self.state = State::Failed(ProtocolError::new(msg));
        Action::close()
    }

    fn absorb<'a>(
        &mut self,
        caps: impl IntoIterator<Item = &'a imap_codec::imap_types::response::Capability<'a>>,
    ) -> Result<(), ProtocolError> {
        for c in caps {
            let word = c.to_string();
            match word.split_once('=') {
                Some((k, mech)) if k.eq_ignore_ascii_case("AUTH") => {
                    self.caps.add_mechanism(mech)?
                }
                _ => self.caps.add_flag(&word)?,
            }
        }
        Ok(())
    }
}

fn with_crlf(line: &[u8]) -> Vec<u8> {
    let mut v = line.to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

impl LineProbe for ImapProbe {
    fn start(&mut self) -> Action {
        Action::read()
    }

    fn on_line(&mut self, line: &[u8]) -> Action {
        self.lines += 1;
        if self.lines > MAX_LINES {
            return self.fail("the server sent too many lines");
        }
        let input = with_crlf(line);
        match self.state {
            State::Greeting => {
                let Ok((_, greeting)) = GreetingCodec::default().decode(&input) else {
                    return self.fail(format!("not an IMAP greeting: {}", show(line)));
                };
                match greeting.kind {
                    GreetingKind::Ok => {}
                    GreetingKind::Bye => {
                        return self
                            .fail(format!("the server refused the connection: {}", show(line)));
                    }
                    GreetingKind::PreAuth => {
                        return self.fail(
                            "the server pre-authenticated an anonymous connection (PREAUTH)",
                        );
                    }
                }
                self.caps.greeting = greeting.text.to_string();
                if let Some(Code::Capability(caps)) = &greeting.code {
                    if let Err(e) = self.absorb(caps.as_ref()) {
                        return self.fail(e.0);
                    }
                    self.state = State::Done;
                    return Action::idle(b"a2 LOGOUT\r\n");
                }
                self.state = State::Capability;
                Action::send(b"a1 CAPABILITY\r\n")
            }
            State::Capability => {
                let Ok((_, response)) = ResponseCodec::default().decode(&input) else {
                    return self.fail(format!("unparsable IMAP response: {}", show(line)));
                };
                match response {
                    Response::Data(Data::Capability(caps)) => match self.absorb(caps.as_ref()) {
                        Ok(()) => Action::read(),
                        Err(e) => self.fail(e.0),
                    },
                    Response::Status(Status::Tagged(t)) if t.tag.as_ref() == "a1" => {
                        if format!("{:?}", t.body.kind) != "Ok" {
                            return self.fail(format!("CAPABILITY failed: {}", show(line)));
                        }
                        if self.caps.flags.is_empty() && self.caps.mechanisms.is_empty() {
                            return self.fail("CAPABILITY returned no capabilities");
                        }
                        self.state = State::Done;
                        Action::idle(b"a2 LOGOUT\r\n")
                    }
                    Response::Status(Status::Bye(_)) => {
                        self.fail(format!("the server closed the session: {}", show(line)))
                    }
                    // Other untagged data is allowed and ignored.
                    _ => Action::read(),
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
            State::Capability => Err(ProtocolError::new(
                "the server closed the connection during CAPABILITY",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::transcript::run;

    #[test]
    fn capabilities_in_the_greeting() {
        let (written, out) = run(
            &mut ImapProbe::new(),
            &[
                "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN AUTH=OAUTHBEARER AUTH=XOAUTH2] Dovecot (Debian) ready.",
            ],
        );
        let caps = out.unwrap();
        assert_eq!(
            caps.mechanisms,
            ["PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"]
        );
        assert!(caps.has("IMAP4rev1") && caps.has("SASL-IR"));
        assert_eq!(written, ["a2 LOGOUT\r\n"]);
    }

    #[test]
    fn capability_command_when_needed() {
        let (written, out) = run(
            &mut ImapProbe::new(),
            &[
                "* OK ready",
                "* CAPABILITY IMAP4rev2 AUTH=SCRAM-SHA-256 LOGINDISABLED",
                "a1 OK done",
            ],
        );
        let caps = out.unwrap();
        assert_eq!(caps.mechanisms, ["SCRAM-SHA-256"]);
        assert!(caps.has("IMAP4REV2") && caps.has("LOGINDISABLED"));
        assert_eq!(written, ["a1 CAPABILITY\r\n", "a2 LOGOUT\r\n"]);
    }

    #[test]
    fn a_flood_of_unique_capabilities_is_a_protocol_error() {
        // 1,000 unique words in one 8 KiB-ish line, as a hostile server could send 256 times.
        let words: Vec<String> = (0..1000).map(|i| format!("X{i:04}")).collect();
        let line = format!("* OK [CAPABILITY IMAP4rev1 {}] hi", words.join(" "));
        let err = run(&mut ImapProbe::new(), &[line.as_str()]).1.unwrap_err();
        assert!(err.0.contains("more than 256 capabilities"), "{err}");
        let line = format!("* CAPABILITY {}", words.join(" "));
        let err = run(&mut ImapProbe::new(), &["* OK hi", line.as_str(), "a1 OK"])
            .1
            .unwrap_err();
        assert!(err.0.contains("more than 256"), "{err}");
    }

    #[test]
    fn hostile_or_broken_servers() {
        assert!(run(&mut ImapProbe::new(), &["* BYE go away"]).1.is_err());
        assert!(
            run(&mut ImapProbe::new(), &["* PREAUTH welcome"])
                .1
                .is_err()
        );
        assert!(
            run(&mut ImapProbe::new(), &["220 smtp.example ESMTP"])
                .1
                .is_err()
        );
        assert!(
            run(&mut ImapProbe::new(), &[])
                .1
                .unwrap_err()
                .0
                .contains("before its greeting")
        );
        assert!(
            run(&mut ImapProbe::new(), &["* OK hi", "a1 NO nope"])
                .1
                .is_err()
        );
        let many: Vec<&str> = std::iter::once("* OK hi")
            .chain(std::iter::repeat_n("* OK noise", 300))
            .collect();
        assert!(
            run(&mut ImapProbe::new(), &many)
                .1
                .unwrap_err()
                .0
                .contains("too many")
        );
    }
}
