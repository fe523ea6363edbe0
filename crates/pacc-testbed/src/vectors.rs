//! The spec's test documents (§4.1) and their published digests, byte for byte.
//!
//! The bytes live in `testdata/vectors/` (extracted from the spec and checked against its
//! lengths and SHA-256 values); the digests in `testdata/vectors/digests.tsv` are copied
//! from the spec, not computed, so tests compare pacc against the published values.

use base64::Engine as _;
use sha2::Digest as _;

macro_rules! vector {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/vectors/",
                $name,
                ".json"
            )) as &[u8],
        )
    };
}

/// Every document vector: (name, exact bytes).
pub const DOCUMENTS: [(&str, &[u8]); 10] = [
    vector!("TV1"),
    vector!("TV2"),
    vector!("TV2-LF"),
    vector!("TV3"),
    vector!("TV4"),
    vector!("TV5"),
    vector!("TV6"),
    vector!("TV7"),
    vector!("TV8a"),
    vector!("TV8b"),
];

const DIGESTS_TSV: &str = include_str!("../../../testdata/vectors/digests.tsv");

/// The bytes of one vector.
pub fn document(name: &str) -> &'static [u8] {
    DOCUMENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

/// The published digests: (vector, algorithm, base64), as in the spec.
pub fn published_digests() -> Vec<(&'static str, &'static str, &'static str)> {
    DIGESTS_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, f.next()?, f.next()?))
        })
        .collect()
}

/// The canonical record for `bytes` with `algorithm` (`sha256`, `sha512`, `sha3-512`),
/// computed with sha2/sha3 directly.
pub fn record_for(algorithm: &str, bytes: &[u8]) -> String {
    let digest = match algorithm {
        "sha256" => sha2::Sha256::digest(bytes).to_vec(),
        "sha512" => sha2::Sha512::digest(bytes).to_vec(),
        "sha3-512" => sha3::Sha3_512::digest(bytes).to_vec(),
        other => panic!("unknown algorithm {other}"),
    };
    format!(
        "v=UAAC1; a={algorithm}; d={}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}
