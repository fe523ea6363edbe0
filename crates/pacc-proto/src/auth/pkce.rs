//! PKCE S256 (RFC 7636) and unguessable `state` values; the randomness comes from the shell.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest as _;

use super::Secret;

/// A PKCE pair.
#[derive(Debug, Clone)]
pub struct Pkce {
    /// The verifier (43 characters from 32 random bytes), sent only to the token endpoint.
    pub verifier: Secret,
    /// `BASE64URL(SHA256(verifier))`, sent in the authorization request.
    pub challenge: String,
}

impl Pkce {
    /// From 32 random bytes.
    pub fn from_random(random: &[u8; 32]) -> Pkce {
        Self::from_verifier(&URL_SAFE_NO_PAD.encode(random))
    }

    /// From a given verifier (43–128 unreserved characters).
    pub fn from_verifier(verifier: &str) -> Pkce {
        Pkce {
            challenge: challenge(verifier),
            verifier: Secret::new(verifier),
        }
    }
}

/// The S256 challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// An unguessable `state` from 16 random bytes.
pub fn state(random: &[u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let r = Pkce::from_random(&[7u8; 32]);
        assert_eq!(r.verifier.expose().len(), 43);
        assert!(
            r.verifier
                .expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(state(&[0u8; 16]).len(), 22);
    }
}
