//! The `_ua-auto-config` TXT digest record (DIG-1 … DIG-11, Q-2, Q-4, Q-5).
//!
//! Parsing is lenient in the ways the spec allows (tag order, whitespace, a final `;`,
//! unknown tags, case of `v` and `a`), and strict in what decides authenticity: one record
//! with a duplicate, missing or malformed `v`/`a`/`d` is ignored as a whole (DIG-4).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

/// A digest algorithm a UAAC1 record can name (DIG-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Algorithm {
    /// SHA-256, identifier `sha256`.
    #[serde(rename = "sha256")]
    Sha256,
    /// SHA-512, identifier `sha512` (unconfirmed name, Q-2).
    #[serde(rename = "sha512")]
    Sha512,
    /// SHA3-512, identifier `sha3-512` (unconfirmed name, Q-2).
    #[serde(rename = "sha3-512")]
    Sha3_512,
}

impl Algorithm {
    /// Every supported algorithm, strongest-known-name first.
    pub const ALL: [Algorithm; 3] = [Algorithm::Sha256, Algorithm::Sha512, Algorithm::Sha3_512];

    /// The identifier used in the `a=` tag.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Sha3_512 => "sha3-512",
        }
    }

    /// Parse an `a=` value, case-insensitively (Q-5: the client is lenient).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The digest length in octets.
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 | Algorithm::Sha3_512 => 64,
        }
    }

    /// Hash `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
            Algorithm::Sha512 => sha2::Sha512::digest(bytes).to_vec(),
            Algorithm::Sha3_512 => sha3::Sha3_512::digest(bytes).to_vec(),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A syntactically valid UAAC1 record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestRecord {
    /// The algorithm of `a=`.
    pub algorithm: Algorithm,
    /// The decoded digest of `d=`.
    #[serde(serialize_with = "serialize_b64")]
    pub digest: Vec<u8>,
    /// Whether the record is in the canonical form every producer emits
    /// (`v=UAAC1; a=<alg>; d=<b64>` in one character-string, DIG-2). Checkers warn otherwise.
    pub canonical: bool,
    /// `d=` is base64 with non-zero unused trailing bits (e.g. `…zxF=` for `…zxE=`): the
    /// client accepts it, as DIG-7 says, and checkers warn.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub noncanonical_base64: bool,
}

/// Standard padded base64 (RFC 4648 §4) that tolerates non-zero trailing bits (DIG-7).
const LENIENT_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

fn serialize_b64<S: serde::Serializer>(d: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(d))
}

impl DigestRecord {
    /// The record for `bytes` with `algorithm`.
    pub fn for_bytes(algorithm: Algorithm, bytes: &[u8]) -> DigestRecord {
        DigestRecord {
            algorithm,
            digest: algorithm.digest(bytes),
            canonical: true,
            noncanonical_base64: false,
        }
    }

    /// The canonical rendering (DIG-2): `v=UAAC1; a=sha256; d=<base64>`.
    pub fn render(&self) -> String {
        format!(
            "v=UAAC1; a={}; d={}",
            self.algorithm.name(),
            STANDARD.encode(&self.digest)
        )
    }

    /// Does this record's digest equal the digest of `bytes`? Constant-time (DIG-11).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let actual = self.algorithm.digest(bytes);
        actual.len() == self.digest.len() && bool::from(actual.ct_eq(&self.digest))
    }
}

/// Why one TXT record was ignored (DIG-4 … DIG-7). The names are stable (`kebab-case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Ignored {
    /// A byte outside printable ASCII plus space and tab.
    #[error("contains a non-ASCII or control byte")]
    NonAscii,
    /// An empty tag-spec (`;;`) or one without `=`.
    #[error("has an empty or malformed tag-spec")]
    BadTagSpec,
    /// A tag name that is not a letter followed by letters, digits or `_`.
    #[error("has an invalid tag name (not a tag-list record)")]
    BadTagName,
    /// A tag value with whitespace or `;` inside, or other characters outside `!`..`~`.
    #[error("has an invalid character inside a tag value")]
    BadTagValue,
    /// `v`, `a` or `d` appears twice.
    #[error("repeats the v, a or d tag")]
    DuplicateTag,
    /// No `v=` tag.
    #[error("has no v= tag")]
    MissingV,
    /// `v` is not `UAAC1`.
    #[error("has a version other than UAAC1")]
    UnknownVersion,
    /// No `a=` tag.
    #[error("has no a= tag")]
    MissingA,
    /// No `d=` tag.
    #[error("has no d= tag")]
    MissingD,
    /// `a=` names an algorithm we do not implement.
    #[error("names an unsupported algorithm")]
    UnsupportedAlgorithm,
    /// `d=` is not padded standard base64.
    #[error("has a d= value that is not padded standard base64")]
    BadBase64,
    /// `d=` decodes to the wrong number of octets for `a=`.
    #[error("has a digest of the wrong length for its algorithm")]
    WrongDigestLength,
}

/// Join the character-strings of one TXT RR without separator (DIG-8).
pub fn join_strings<S: AsRef<[u8]>>(strings: &[S]) -> Vec<u8> {
    strings
        .iter()
        .flat_map(|s| s.as_ref().iter().copied())
        .collect()
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_wsp(*b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_wsp(*b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// Parse one TXT RR (its character-strings already joined, DIG-8) as a UAAC1 record.
pub fn parse_record(rdata: &[u8]) -> Result<DigestRecord, Ignored> {
    if !rdata
        .iter()
        .all(|b| is_wsp(*b) || (0x21..=0x7e).contains(b))
    {
        return Err(Ignored::NonAscii);
    }
    let mut specs: Vec<&[u8]> = rdata.split(|b| *b == b';').collect();
    // One optional trailing ';' (followed by whitespace only) is allowed (DIG-3).
    if specs.len() > 1 && trim_wsp(specs[specs.len() - 1]).is_empty() {
        specs.pop();
    }
    let (mut v, mut a, mut d) = (None, None, None);
    for spec in specs {
        let spec = trim_wsp(spec);
        let eq = spec
            .iter()
            .position(|b| *b == b'=')
            .ok_or(Ignored::BadTagSpec)?;
        let name = trim_wsp(&spec[..eq]);
        let value = trim_wsp(&spec[eq + 1..]);
        let valid_name = name.first().is_some_and(u8::is_ascii_alphabetic)
            && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if !valid_name {
            return Err(if spec.is_empty() {
                Ignored::BadTagSpec
            } else {
                Ignored::BadTagName
            });
        }
        if value.iter().any(|b| is_wsp(*b)) {
            return Err(Ignored::BadTagValue);
        }
        // Both sides were checked to be ASCII above.
        let value = std::str::from_utf8(value).map_err(|_| Ignored::NonAscii)?;
        let slot = match name {
            [b'v' | b'V'] => &mut v,
            [b'a' | b'A'] => &mut a,
            [b'd' | b'D'] => &mut d,
            _ => continue, // unknown tags are ignored (DIG-3)
        };
        if slot.replace(value).is_some() {
            return Err(Ignored::DuplicateTag);
        }
    }
    let v = v.ok_or(Ignored::MissingV)?;
    if !v.eq_ignore_ascii_case("UAAC1") {
        return Err(Ignored::UnknownVersion);
    }
    let a = a.ok_or(Ignored::MissingA)?;
    let d = d.ok_or(Ignored::MissingD)?;
    let algorithm = Algorithm::from_name(a).ok_or(Ignored::UnsupportedAlgorithm)?;
    // DIG-7: padded standard base64; non-zero trailing bits are accepted (the digest must
    // still match) and flagged for checkers.
    let digest = LENIENT_B64.decode(d).map_err(|_| Ignored::BadBase64)?;
    if digest.len() != algorithm.output_len() {
        return Err(Ignored::WrongDigestLength);
    }
    let noncanonical_base64 = STANDARD.encode(&digest) != d;
    let record = DigestRecord {
        algorithm,
        digest,
        canonical: false,
        noncanonical_base64,
    };
    let canonical = record.render().as_bytes() == rdata;
    Ok(DigestRecord {
        canonical,
        ..record
    })
}

/// One TXT RR as seen, with its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenRecord {
    /// The RR's text, strings joined (lossy UTF-8 for display).
    pub text: String,
    /// How many character-strings the RR had.
    pub strings: usize,
    /// The parse result: the record, or why it was ignored.
    #[serde(flatten)]
    pub verdict: RecordVerdict,
}

/// The verdict on one TXT RR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum RecordVerdict {
    /// A valid UAAC1 record; `matches` says whether it authenticates the body.
    Valid {
        /// The parsed record.
        record: DigestRecord,
        /// Whether its digest equals the body's.
        matches: bool,
    },
    /// Not a usable UAAC1 record.
    Ignored {
        /// Why.
        reason: Ignored,
    },
}

/// The outcome of checking a body against an RRset (DIG-9, DIG-10). Outcomes are data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum DigestCheck {
    /// A valid record's digest matched.
    Match {
        /// Index into the seen records of the first matching one.
        record: usize,
        /// Its algorithm.
        algorithm: Algorithm,
    },
    /// At least one valid record, none matches: an integrity failure.
    Mismatch,
    /// No valid UAAC1 record at all: treated as absent (RET-12).
    NotPublished,
}

/// Evaluate every TXT RR (each a list of character-strings) against `body`. The body is
/// authentic if **any** valid record matches (DIG-9, Q-4).
pub fn check<S: AsRef<[u8]>>(body: &[u8], rrset: &[Vec<S>]) -> (DigestCheck, Vec<SeenRecord>) {
    let mut seen = Vec::with_capacity(rrset.len());
    let mut outcome = DigestCheck::NotPublished;
    for rr in rrset {
        let joined = join_strings(rr);
        let verdict = match parse_record(&joined) {
            Ok(record) => {
                let matches = record.matches(body);
                if matches && !matches!(outcome, DigestCheck::Match { .. }) {
                    outcome = DigestCheck::Match {
                        record: seen.len(),
                        algorithm: record.algorithm,
                    };
                } else if outcome == DigestCheck::NotPublished {
                    outcome = DigestCheck::Mismatch;
                }
                RecordVerdict::Valid { record, matches }
            }
            Err(reason) => RecordVerdict::Ignored { reason },
        };
        seen.push(SeenRecord {
            text: String::from_utf8_lossy(&joined).into_owned(),
            strings: rr.len(),
            verdict,
        });
    }
    (outcome, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TV2: &[u8] = br#"{"authentication":{"oauth-public":{"issuer":"https://identity.example.test/"},"password":true},"info":{"help":{"documentation":"https://support.example.test/mail"},"provider":{"name":"Example Provider","shortName":"Example"}},"protocols":{"caldav":{"url":"https://sync.example.test/calendar/"},"imap":{"host":"imap.example.test"},"jmap":{"url":"https://jmap.example.test/session"},"pop3":{"host":"pop.example.test"},"submit":{"host":"smtp.example.test"}}}"#;
    const NEW: &str = "Yv17O1u1N+KeOhLF0eZv/RNE2t6o6NHAYCskZubeISE=";
    const OLD: &str = "MOA19C2fw1LnfpriQEArPk+FRkxoE7UVaunADBmu7G8=";

    fn rr(strings: &[&str]) -> Vec<Vec<u8>> {
        strings.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Spec §4.2, T01–T26: (case, RRset, expected per-RR verdicts, overall).
    #[test]
    fn spec_txt_vectors() {
        use Ignored::*;
        let valid = |a: Algorithm| Ok::<Algorithm, Ignored>(a);
        let sha = Algorithm::Sha256;
        type Case = (
            &'static str,
            Vec<Vec<Vec<u8>>>,
            Vec<Result<Algorithm, Ignored>>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "T01",
                vec![rr(&[&format!("v=UAAC1; a=sha256; d={NEW}")])],
                vec![valid(sha)],
                "match",
            ),
            (
                "T02",
                vec![rr(&[&format!("v=UAAC1;a=sha256;d={NEW}")])],
                vec![valid(sha)],
                "match",
            ),
            (
                "T03",
                vec![rr(&[&format!("v=UAAC1; a=sha256; d={NEW};")])],
                vec![valid(sha)],
                "match",
            ),
            (
                "T04",
                vec![rr(&[&format!("d={NEW}; a=sha256; v=UAAC1")])],
                vec![valid(sha)],
                "match",
            ),
            (
                "T05",
                vec![rr(&[&format!("  v = UAAC1 ;\ta=sha256 ;  d= {NEW} ; ")])],
                vec![valid(sha)],
                "match",
            ),
            (
                "T06",
                vec![rr(&[&format!("v=UAAC1; a=sha256; x=future; d={NEW}")])],
                vec![valid(sha)],
                "match",
            ),
            (
                "T07",
                vec![rr(&[
                    "v=UAAC1; a=sha256; d=Yv17O1u1N+KeOhLF0eZ",
                    "v/RNE2t6o6NHAYCskZubeISE=",
                ])],
                vec![valid(sha)],
                "match",
            ),
            (
                "T08",
                vec![rr(&[
                    "v=UAAC1; a=sha512; d=72eMisB4vgl89UDi4nhgF+DcZDumogO8iUV0X592WivdILrZ1EWO9WQbRHRCsRCL802ZlvF2TlQ0OQ7EMXO6cA==",
                ])],
                vec![valid(Algorithm::Sha512)],
                "match",
            ),
            (
                "T09",
                vec![rr(&[
                    "v=UAAC1; a=sha3-512; d=xlIfauaXsDuaRVAk99ZA2gP6ehlPea6ralJv4Z66kpk1LzgKoe4jJP6Pb4usBwLp5OGqnbx68NHTu/DlXsBeKw==",
                ])],
                vec![valid(Algorithm::Sha3_512)],
                "match",
            ),
            (
                "T10",
                vec![rr(&[&format!("v=uaac1; a=SHA256; d={NEW}")])],
                vec![valid(sha)],
                "match",
            ),
            (
                "T11",
                vec![
                    rr(&[&format!("v=UAAC1; a=sha256; d={OLD}")]),
                    rr(&[&format!("v=UAAC1; a=sha256; d={NEW}")]),
                ],
                vec![valid(sha), valid(sha)],
                "match",
            ),
            (
                "T12",
                vec![rr(&[&format!("v=UAAC1; a=sha256; d={OLD}")])],
                vec![valid(sha)],
                "mismatch",
            ),
            (
                "T13",
                vec![
                    rr(&["google-site-verification=abc"]),
                    rr(&[&format!("v=UAAC1; a=sha256; d={NEW}")]),
                ],
                vec![Err(BadTagName), valid(sha)],
                "match",
            ),
            (
                "T14",
                vec![rr(&[&format!("v=UAAC2; a=sha256; d={NEW}")])],
                vec![Err(UnknownVersion)],
                "none",
            ),
            (
                "T15",
                vec![rr(&["v=UAAC1; a=sha256"])],
                vec![Err(MissingD)],
                "none",
            ),
            (
                "T16",
                vec![rr(&[&format!("v=UAAC1; d={NEW}")])],
                vec![Err(MissingA)],
                "none",
            ),
            (
                "T17",
                vec![rr(&[&format!("v=UAAC1; a=md5; d={NEW}")])],
                vec![Err(UnsupportedAlgorithm)],
                "none",
            ),
            (
                "T18",
                vec![rr(&[&format!("v=UAAC1; a=sha512; d={NEW}")])],
                vec![Err(WrongDigestLength)],
                "none",
            ),
            (
                "T19",
                vec![rr(&[
                    "v=UAAC1; a=sha256; d=62fd7b3b5bb537e29e3a12c5d1e66ffd1344dadea8e8d1c0602b2466e6de2121",
                ])],
                vec![Err(WrongDigestLength)],
                "none",
            ),
            (
                "T20",
                vec![rr(&[
                    "v=UAAC1; a=sha256; d=Yv17O1u1N-KeOhLF0eZv_RNE2t6o6NHAYCskZubeISE=",
                ])],
                vec![Err(BadBase64)],
                "none",
            ),
            (
                "T21",
                vec![rr(&[
                    "v=UAAC1; a=sha256; d=Yv17O1u1N+KeOhLF0eZv/RNE2t6o6NHAYCskZubeISE",
                ])],
                vec![Err(BadBase64)],
                "none",
            ),
            (
                "T22",
                vec![rr(&[
                    "v=UAAC1; a=sha256; d=Yv17O1u1N+ KeOhLF0eZv/RNE2t6o6NHAYCskZubeISE=",
                ])],
                vec![Err(BadTagValue)],
                "none",
            ),
            (
                "T23",
                vec![rr(&[&format!("v=UAAC1; a=sha256; d={NEW}; d={NEW}")])],
                vec![Err(DuplicateTag)],
                "none",
            ),
            (
                "T24",
                vec![rr(&[&format!("v=UAAC1;; a=sha256; d={NEW}")])],
                vec![Err(BadTagSpec)],
                "none",
            ),
            (
                "T25",
                vec![vec![
                    format!("v=UAAC1; a=sha256; d={NEW}; n=")
                        .into_bytes()
                        .into_iter()
                        .chain([0xc3, 0xa9])
                        .collect(),
                ]],
                vec![Err(NonAscii)],
                "none",
            ),
            ("T26", vec![], vec![], "none"),
        ];
        for (name, rrset, verdicts, overall) in cases {
            let (outcome, seen) = check(TV2, &rrset);
            let got: Vec<Result<Algorithm, Ignored>> = seen
                .iter()
                .map(|s| match &s.verdict {
                    RecordVerdict::Valid { record, .. } => Ok(record.algorithm),
                    RecordVerdict::Ignored { reason } => Err(*reason),
                })
                .collect();
            assert_eq!(got, verdicts, "{name}");
            let got_overall = match outcome {
                DigestCheck::Match { .. } => "match",
                DigestCheck::Mismatch => "mismatch",
                DigestCheck::NotPublished => "none",
            };
            assert_eq!(got_overall, overall, "{name}");
        }
    }

    #[test]
    fn rollover_reports_the_matching_record() {
        let rrset = vec![
            rr(&[&format!("v=UAAC1; a=sha256; d={OLD}")]),
            rr(&[&format!("v=UAAC1; a=sha256; d={NEW}")]),
        ];
        let (outcome, seen) = check(TV2, &rrset);
        assert_eq!(
            outcome,
            DigestCheck::Match {
                record: 1,
                algorithm: Algorithm::Sha256
            }
        );
        assert!(matches!(
            seen[0].verdict,
            RecordVerdict::Valid { matches: false, .. }
        ));
    }

    /// DIG-7: a `d=` with non-zero unused trailing bits decodes to the same digest, is
    /// accepted and matches, and is flagged for checkers; a one-bit change in a used bit
    /// still mismatches.
    #[test]
    fn noncanonical_base64_is_accepted_and_flagged() {
        let canonical = DigestRecord::for_bytes(Algorithm::Sha256, TV2);
        let b64 = STANDARD.encode(&canonical.digest);
        // 32 bytes → 44 chars with one `=`: the last character carries 2 unused bits.
        let last = b64.as_bytes()[42];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let idx = alphabet.iter().position(|c| *c == last).unwrap();
        assert_eq!(idx & 0b11, 0, "canonical encoding has zero trailing bits");
        let mut odd = b64.clone().into_bytes();
        odd[42] = alphabet[idx | 1];
        let odd = String::from_utf8(odd).unwrap();
        let rec = parse_record(format!("v=UAAC1; a=sha256; d={odd}").as_bytes()).unwrap();
        assert!(rec.noncanonical_base64 && !rec.canonical);
        assert_eq!(rec.digest, canonical.digest);
        let (outcome, _) = check(TV2, &[rr(&[&format!("v=UAAC1; a=sha256; d={odd}")])]);
        assert!(matches!(outcome, DigestCheck::Match { .. }), "{outcome:?}");
        assert!(
            !parse_record(canonical.render().as_bytes())
                .unwrap()
                .noncanonical_base64
        );
        // Unpadded and base64url are still refused.
        assert_eq!(
            parse_record(format!("v=UAAC1; a=sha256; d={}", b64.trim_end_matches('=')).as_bytes()),
            Err(Ignored::BadBase64)
        );
    }

    #[test]
    fn render_is_canonical_and_round_trips() {
        for alg in Algorithm::ALL {
            let rec = DigestRecord::for_bytes(alg, TV2);
            let text = rec.render();
            let parsed = parse_record(text.as_bytes()).unwrap();
            assert!(parsed.canonical, "{text}");
            assert_eq!(parsed.digest, rec.digest);
            assert!(parsed.matches(TV2));
            assert!(!parsed.matches(&TV2[1..]));
        }
        assert_eq!(
            DigestRecord::for_bytes(Algorithm::Sha256, TV2).render(),
            format!("v=UAAC1; a=sha256; d={NEW}")
        );
        // Lenient forms parse but are not canonical.
        assert!(
            !parse_record(format!("v=UAAC1;a=sha256;d={NEW}").as_bytes())
                .unwrap()
                .canonical
        );
    }

    #[test]
    fn missing_v_and_bare_text() {
        assert_eq!(
            parse_record(format!("a=sha256; d={NEW}").as_bytes()),
            Err(Ignored::MissingV)
        );
        assert_eq!(parse_record(b"hello world"), Err(Ignored::BadTagSpec));
        assert_eq!(parse_record(b""), Err(Ignored::BadTagSpec));
        assert_eq!(parse_record(b";"), Err(Ignored::BadTagSpec));
        assert_eq!(parse_record(b"v=UAAC1\x00"), Err(Ignored::NonAscii));
    }
}
