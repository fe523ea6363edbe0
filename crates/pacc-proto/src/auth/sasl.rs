//! SASL client responses (RFC 4616 PLAIN, LOGIN, RFC 7628 OAUTHBEARER, XOAUTH2) and HTTP
//! `Authorization` values (RFC 7617 Basic, RFC 6750 Bearer). All return [`Secret`]s.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Secret;

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

/// `Authorization: Basic …` (RFC 7617, UTF-8).
pub fn http_basic(username: &str, password: &Secret) -> Secret {
    Secret::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{}", password.expose()))
    ))
}

/// `Authorization: Bearer …` (RFC 6750).
pub fn http_bearer(token: &Secret) -> Secret {
    Secret::new(format!("Bearer {}", token.expose()))
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
            http_basic("user@example.com", &p).expose(),
            "Basic dXNlckBleGFtcGxlLmNvbTpjb3JyZWN0IGhvcnNl"
        );
        assert_eq!(format!("{:?}", plain("u", &p)), "[redacted]");
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
