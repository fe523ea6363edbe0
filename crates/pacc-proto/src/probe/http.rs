//! HTTP services (JMAP, CalDAV, CardDAV, WebDAV): one unauthenticated request, every
//! `WWW-Authenticate` challenge parsed (P-6, RFC 9110 §11.6.1, RFC 6750, RFC 9728, RFC 9449).

use serde::Serialize;

use super::ProtocolError;

/// Most challenges kept from one response.
pub const MAX_CHALLENGES: usize = 64;
/// Most parameters kept per challenge.
const MAX_PARAMS: usize = 32;
/// Longest `WWW-Authenticate` text looked at (all field lines together).
const MAX_HEADER_TEXT: usize = 16 * 1024;

/// One challenge: `Basic realm="x"`, `Bearer resource_metadata="…"`, `DPoP algs="ES256"`, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Challenge {
    /// The scheme as sent.
    pub scheme: String,
    /// A token68 instead of parameters, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token68: Option<String>,
    /// Parameters, names lower-cased, values unquoted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Case-insensitive scheme comparison.
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn ws_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> &str {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }
    fn quoted(&mut self) -> Result<String, ProtocolError> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ProtocolError::new(
                        "unterminated quoted string in WWW-Authenticate",
                    ));
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.i += 1;
                    if let Some(c) = self.peek() {
                        out.push(c);
                        self.i += 1;
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
    /// At a token followed by `=`: is it a parameter (vs a token68 or the next challenge)?
    fn param_ahead(&self) -> bool {
        let mut j = self.i;
        while self.s.get(j).is_some_and(|b| is_tchar(*b)) {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if self.s.get(j) != Some(&b'=') {
            return false;
        }
        // `name=` followed by more `=` then end/comma is a token68's padding, not a param.
        let mut k = j;
        while self.s.get(k) == Some(&b'=') {
            k += 1;
        }
        while matches!(self.s.get(k), Some(b' ' | b'\t')) {
            k += 1;
        }
        let at_end = matches!(self.s.get(k), None | Some(b','));
        let padding = k > j + 1 && at_end;
        let one_pad_token68 = k == j + 1 && at_end && self.looks_token68_only(j);
        !(padding || one_pad_token68)
    }
    /// `abc=` then end/comma: a token68 with one `=` of padding (e.g. base64).
    fn looks_token68_only(&self, eq: usize) -> bool {
        self.s[self.i..eq].iter().all(|b| is_token68_char(*b))
    }
}

/// Parse every challenge of every `WWW-Authenticate` field line. Returns the challenges
/// (at most [`MAX_CHALLENGES`]) and whether more were dropped.
pub fn parse_challenges<S: AsRef<str>>(
    fields: &[S],
) -> Result<(Vec<Challenge>, bool), ProtocolError> {
    let mut out = Vec::new();
    let mut truncated = false;
    let mut total = 0;
    for field in fields {
        let field = field.as_ref();
        total += field.len();
        if total > MAX_HEADER_TEXT {
            truncated = true;
            break;
        }
        let mut c = Cursor {
            s: field.as_bytes(),
            i: 0,
        };
        loop {
            c.ws_commas();
            if c.peek().is_none() {
                break;
            }
            let scheme = c.token().to_owned();
            if scheme.is_empty() {
                return Err(ProtocolError::new(format!(
                    "malformed WWW-Authenticate near byte {}: {}",
                    c.i,
                    super::show(field.as_bytes())
                )));
            }
            let mut ch = Challenge {
                scheme,
                token68: None,
                params: Vec::new(),
            };
            c.ws();
            if c.peek().is_some_and(is_token68_char) && !c.param_ahead() {
                // token68, or the next challenge's scheme after a comma-less space (invalid
                // but seen); a token68 is followed by end or ','.
                let start = c.i;
                while c.peek().is_some_and(is_token68_char) {
                    c.i += 1;
                }
                while c.peek() == Some(b'=') {
                    c.i += 1;
                }
                ch.token68 = Some(String::from_utf8_lossy(&c.s[start..c.i]).into_owned());
            } else {
                // auth-params, comma separated, until something that is not `name=`.
                loop {
                    c.ws_commas();
                    if !c.param_ahead() {
                        break;
                    }
                    let name = c.token().to_ascii_lowercase();
                    c.ws();
                    c.i += 1; // '='
                    c.ws();
                    let value = if c.peek() == Some(b'"') {
                        c.quoted()?
                    } else {
                        c.token().to_owned()
                    };
                    if ch.params.len() < MAX_PARAMS {
                        ch.params.push((name, value));
                    }
                }
            }
            if out.len() < MAX_CHALLENGES {
                out.push(ch);
            } else {
                truncated = true;
            }
        }
    }
    Ok((out, truncated))
}

/// What an unauthenticated request to an HTTP service showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpCapabilities {
    /// The status of the unauthenticated request.
    pub status: u16,
    /// Every challenge offered.
    pub challenges: Vec<Challenge>,
    /// Whether more challenges than [`MAX_CHALLENGES`] were sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub challenges_truncated: bool,
    /// The `DAV:` header (DAV services).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dav: Option<String>,
    /// Things a client should know (a 2xx without authentication, a same-host redirect).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Judge the response to the unauthenticated request to `url`.
pub fn evaluate(
    url_host: &str,
    status: u16,
    www_authenticate: &[String],
    dav: Option<String>,
    location: Option<&str>,
) -> Result<HttpCapabilities, ProtocolError> {
    let (challenges, challenges_truncated) = parse_challenges(www_authenticate)?;
    let mut warnings = Vec::new();
    match status {
        401 => {
            if challenges.is_empty() {
                return Err(ProtocolError::new(
                    "401 without any WWW-Authenticate challenge",
                ));
            }
        }
        200..=299 => warnings.push(format!(
            "answers {status} without authentication: this endpoint does not ask for credentials"
        )),
        300..=399 => {
            let loc = location.unwrap_or("");
            let target_host = loc
                .strip_prefix("https://")
                .map(|r| r.split(['/', '?', '#', ':']).next().unwrap_or(""));
            return match target_host {
                Some(h) if !h.eq_ignore_ascii_case(url_host) => Err(ProtocolError::new(format!(
                    "redirects to another host ({loc}); not followed: credentials would leave the configured host"
                ))),
                _ if loc.starts_with("http://") => Err(ProtocolError::new(format!(
                    "redirects to plain http ({loc}); not followed"
                ))),
                _ => {
                    warnings.push(format!(
                        "answers {status} redirecting to {loc} on the same host (not followed)"
                    ));
                    Ok(HttpCapabilities {
                        status,
                        challenges,
                        challenges_truncated,
                        dav,
                        warnings,
                    })
                }
            };
        }
        403 => warnings.push("answers 403 without credentials".to_owned()),
        _ => {
            return Err(ProtocolError::new(format!(
                "answers HTTP {status} to an unauthenticated request"
            )));
        }
    }
    Ok(HttpCapabilities {
        status,
        challenges,
        challenges_truncated,
        dav,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Vec<Challenge> {
        parse_challenges(&[s]).unwrap().0
    }

    #[test]
    fn common_challenges() {
        let c = one(r#"Basic realm="PACC test""#);
        assert_eq!(c.len(), 1);
        assert!(c[0].is("basic"));
        assert_eq!(c[0].param("realm"), Some("PACC test"));

        let c = one(
            r#"Bearer realm="jmap", error="invalid_token", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource", Basic realm="x, y""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].param("resource_metadata"),
            Some("https://api.example.com/.well-known/oauth-protected-resource")
        );
        assert_eq!(c[0].param("error"), Some("invalid_token"));
        assert_eq!(c[1].param("realm"), Some("x, y"), "commas inside quotes");

        let c = one(r#"DPoP algs="ES256 PS256", Negotiate, NTLM"#);
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["DPoP", "Negotiate", "NTLM"]);
        assert_eq!(c[0].param("algs"), Some("ES256 PS256"));
    }

    #[test]
    fn token68_and_padding() {
        let c = one(
            "Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEFoQMCAQ6iBwMFACAAAACjggR==, Basic realm=x",
        );
        assert_eq!(c.len(), 2);
        assert!(c[0].token68.as_deref().unwrap().ends_with("=="));
        let c = one("Custom abc=, Basic realm=x");
        assert_eq!(c[0].token68.as_deref(), Some("abc="));
        assert_eq!(c[1].param("realm"), Some("x"));
    }

    #[test]
    fn several_field_lines_and_many_challenges() {
        let c = parse_challenges(&["Basic realm=a", "Bearer"]).unwrap().0;
        assert_eq!(c.len(), 2);
        let fifty: Vec<String> = (0..50)
            .map(|i| format!("Scheme{i} realm=\"r{i}\""))
            .collect();
        let (c, truncated) = parse_challenges(&[fifty.join(", ")]).unwrap();
        assert_eq!(c.len(), 50);
        assert!(!truncated);
        let many: Vec<String> = (0..100).map(|i| format!("S{i}")).collect();
        let (c, truncated) = parse_challenges(&[many.join(", ")]).unwrap();
        assert_eq!(c.len(), MAX_CHALLENGES);
        assert!(truncated);
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(parse_challenges(&[r#"Basic realm="unterminated"#]).is_err());
        assert!(parse_challenges(&["=oops"]).is_err());
    }

    #[test]
    fn evaluation() {
        let ok = evaluate(
            "dav.example",
            401,
            &[r#"Basic realm="x""#.into()],
            Some("1, 2, 3, calendar-access".into()),
            None,
        )
        .unwrap();
        assert_eq!(ok.challenges.len(), 1);
        assert_eq!(ok.dav.as_deref(), Some("1, 2, 3, calendar-access"));
        assert!(evaluate("h", 401, &[], None, None).is_err());
        let open = evaluate("h", 207, &[], None, None).unwrap();
        assert!(open.warnings[0].contains("without authentication"));
        let e = evaluate(
            "jmap.example",
            302,
            &[],
            None,
            Some("https://evil.example/jmap"),
        )
        .unwrap_err();
        assert!(e.0.contains("another host"));
        let same = evaluate("jmap.example", 301, &[], None, Some("/jmap/")).unwrap();
        assert!(same.warnings[0].contains("same host"));
        assert!(evaluate("h", 500, &[], None, None).is_err());
    }
}
