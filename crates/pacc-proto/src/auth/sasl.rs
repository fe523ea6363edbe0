//! SASL client responses (RFC 4616 PLAIN, LOGIN, RFC 7628 OAUTHBEARER, XOAUTH2) and HTTP
//! `Authorization` values (RFC 7617 Basic, RFC 6750 Bearer). All return [`Secret`]s.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Secret;

/// A username or secret that cannot be put on a protocol line safely. Checked before
/// anything is sent: a CR or LF would end the command early and smuggle the rest in as a
/// command of its own (POP3 `USER`/`PASS`, IMAP `LOGIN`, SMTP `AUTH LOGIN`, ManageSieve),
/// and a NUL is PLAIN's separator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unsendable {
    /// The username holds CR, LF, NUL or another control character.
    #[error("the username contains a control character ({0}); nothing was sent")]
    Username(&'static str),
    /// The password or token holds CR, LF or NUL.
    #[error("the {what} contains {found}, which cannot be sent safely; nothing was sent")]
    Secret {
        /// `password` or `token`.
        what: &'static str,
        /// `a line break (CR or LF)` or `a NUL byte`.
        found: &'static str,
    },
    /// HTTP Basic cannot carry a `:` in the user-id (RFC 7617 §2).
    #[error("the username contains ':', which HTTP Basic cannot carry; nothing was sent")]
    ColonInBasicUser,
}

fn forbidden(s: &str) -> Option<&'static str> {
    if s.contains(['\r', '\n']) {
        Some("a line break (CR or LF)")
    } else if s.contains('\0') {
        Some("a NUL byte")
    } else {
        None
    }
}

/// Refuse a username (any control character) or a secret (CR, LF, NUL) that no protocol
/// line can carry. `what` names the secret in the error (`password`, `token`).
pub fn check_sendable(
    username: &str,
    secret: &Secret,
    what: &'static str,
) -> Result<(), Unsendable> {
    if let Some(c) = username.chars().find(|c| c.is_control()) {
        return Err(Unsendable::Username(match c {
            '\r' | '\n' => "CR or LF",
            '\0' => "NUL",
            _ => "a control character",
        }));
    }
    match forbidden(secret.expose()) {
        Some(found) => Err(Unsendable::Secret { what, found }),
        None => Ok(()),
    }
}

/// `PLAIN`: empty authzid, authcid = the full address (W-1), the password (W-3).
pub fn plain(username: &str, password: &Secret) -> Secret {
    Secret::new(STANDARD.encode(format!("\0{username}\0{}", password.expose())))
}

/// `LOGIN`: the two answers, base64 each.
pub fn login(username: &str, password: &Secret) -> (String, Secret) {
    (
        STANDARD.encode(username),
        Secret::new(STANDARD.encode(password.expose())),
    )
}

/// `OAUTHBEARER` initial response (RFC 7628 §3.1), with the server's host and port.
pub fn oauthbearer(username: &str, host: &str, port: u16, token: &Secret) -> Secret {
    Secret::new(STANDARD.encode(format!(
        "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
        gs2_escape(username),
        token.expose()
    )))
}

/// `XOAUTH2` initial response.
pub fn xoauth2(username: &str, token: &Secret) -> Secret {
    Secret::new(STANDARD.encode(format!(
        "user={username}\x01auth=Bearer {}\x01\x01",
        token.expose()
    )))
}

/// The single `0x01` a client sends after an OAUTHBEARER error challenge (RFC 7628 §3.2.3).
pub const OAUTHBEARER_ABORT: &str = "AQ==";

/// `Authorization: Basic …` (RFC 7617, UTF-8). Refuses what [`check_sendable`] refuses, and
/// a `:` in the username.
pub fn http_basic(username: &str, password: &Secret) -> Result<Secret, Unsendable> {
    check_sendable(username, password, "password")?;
    if username.contains(':') {
        return Err(Unsendable::ColonInBasicUser);
    }
    Ok(Secret::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{}", password.expose()))
    )))
}

/// `Authorization: Bearer …` (RFC 6750). A token is b64token (RFC 6750 §2.1); anything with
/// a control character or space is refused before it reaches a header.
pub fn http_bearer(token: &Secret) -> Result<Secret, Unsendable> {
    if token.expose().is_empty()
        || token
            .expose()
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii())
    {
        return Err(Unsendable::Secret {
            what: "token",
            found: "characters a Bearer token cannot hold",
        });
    }
    Ok(Secret::new(format!("Bearer {}", token.expose())))
}

/// RFC 5801 §4: `,` and `=` in the authzid are escaped as `=2C` and `=3D`.
fn gs2_escape(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Spec §4.4 vectors (user user@example.com, RFC 7628's token, password "correct horse").
    const TOKEN: &str = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

    #[test]
    fn spec_vectors() {
        let t = Secret::new(TOKEN);
        let p = Secret::new("correct horse");
        assert_eq!(
            oauthbearer("user@example.com", "imap.example.com", 993, &t).expose(),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9aW1hcC5leGFtcGxlLmNvbQFwb3J0PTk5MwFhdXRoPUJlYXJlciB2RjlkZnQ0cW1UYzJOdmIzUmxja0JoYkhSaGRtbHpkR0V1WTI5dENnPT0BAQ=="
        );
        assert_eq!(
            xoauth2("user@example.com", &t).expose(),
            "dXNlcj11c2VyQGV4YW1wbGUuY29tAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
        );
        assert_eq!(
            plain("user@example.com", &p).expose(),
            "AHVzZXJAZXhhbXBsZS5jb20AY29ycmVjdCBob3JzZQ=="
        );
        assert_eq!(
            http_basic("user@example.com", &p).unwrap().expose(),
            "Basic dXNlckBleGFtcGxlLmNvbTpjb3JyZWN0IGhvcnNl"
        );
        assert_eq!(format!("{:?}", plain("u", &p)), "[redacted]");
    }

    #[test]
    fn unsendable_credentials_are_refused() {
        let ok = Secret::new("pw");
        assert!(check_sendable("a@b", &ok, "password").is_ok());
        for bad in ["p\r\nQUIT", "p\nw", "p\0w"] {
            assert!(matches!(
                check_sendable("a@b", &Secret::new(bad), "password"),
                Err(Unsendable::Secret {
                    what: "password",
                    ..
                })
            ));
            assert!(http_basic("a@b", &Secret::new(bad)).is_err());
        }
        assert_eq!(
            check_sendable("a@\r\nb", &ok, "password"),
            Err(Unsendable::Username("CR or LF"))
        );
        assert_eq!(http_basic("a:b@c", &ok), Err(Unsendable::ColonInBasicUser));
        assert!(http_bearer(&Secret::new("abc\r\nX-Evil: 1")).is_err());
        assert!(http_bearer(&Secret::new("")).is_err());
        assert_eq!(
            http_bearer(&Secret::new("a.b-c")).unwrap().expose(),
            "Bearer a.b-c"
        );
    }

    #[test]
    fn gs2_escaping_and_login() {
        let t = Secret::new("x");
        let decoded = STANDARD
            .decode(oauthbearer("a,b=c@x", "h", 1, &t).expose())
            .unwrap();
        assert!(
            String::from_utf8(decoded)
                .unwrap()
                .starts_with("n,a=a=2Cb=3Dc@x,")
        );
        let (u, p) = login("jörg@x.example", &Secret::new("pw"));
        assert_eq!(STANDARD.decode(u).unwrap(), "jörg@x.example".as_bytes());
        assert_eq!(STANDARD.decode(p.expose()).unwrap(), b"pw");
    }
}
