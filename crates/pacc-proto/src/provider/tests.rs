use super::description::Description;
use super::render::{publication, render};
use crate::digest::Algorithm;
use crate::document::Config;

const DIGESTS: &str = include_str!("../../../../testdata/vectors/digests.tsv");

fn published(vector: &str, alg: &str) -> String {
    DIGESTS
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3 && f[0] == vector && f[1] == alg).then(|| f[2].to_owned())
        })
        .unwrap()
}

fn load(name: &str, text: &str) -> Description {
    Description::parse(name, text).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// PV-1 / issue: the renderer reproduces the published digests of TV1–TV3.
#[test]
fn renders_the_published_vectors() {
    for (vector, file, text) in [
        (
            "TV1",
            "tv1.toml",
            include_str!("../../../../testdata/providers/tv1.toml"),
        ),
        (
            "TV2",
            "tv2.toml",
            include_str!("../../../../testdata/providers/tv2.toml"),
        ),
        (
            "TV3",
            "tv3.toml",
            include_str!("../../../../testdata/providers/tv3.toml"),
        ),
    ] {
        let d = load(file, text);
        let spec = &d.documents[0];
        let bytes = render(spec);
        let p = publication(spec, &spec.domains[0], &bytes, d.ttl);
        assert_eq!(
            p.sha256(),
            format!("v=UAAC1; a=sha256; d={}", published(vector, "sha256")),
            "{vector}"
        );
        assert_eq!(render(spec), bytes, "deterministic");
        let parsed = Config::from_bytes(&bytes).unwrap();
        assert!(
            parsed.findings.is_empty(),
            "{vector}: {:?}",
            parsed.findings
        );
    }
}

#[test]
fn extra_algorithms_and_newline() {
    let text = include_str!("../../../../testdata/providers/tv2.toml").replace(
        "[[document]]",
        "[[document]]\nalgorithms = [\"sha3-512\", \"sha512\"]\ntrailing_newline = true",
    );
    let d = load("x.toml", &text);
    let spec = &d.documents[0];
    assert_eq!(
        spec.algorithms,
        [Algorithm::Sha256, Algorithm::Sha3_512, Algorithm::Sha512]
    );
    let bytes = render(spec);
    assert!(bytes.ends_with(b"}\n"));
    let p = publication(spec, &spec.domains[0], &bytes, 300);
    assert_eq!(
        p.txt[0],
        format!("v=UAAC1; a=sha256; d={}", published("TV2-LF", "sha256"))
    );
    assert_eq!(
        p.txt[1],
        format!("v=UAAC1; a=sha3-512; d={}", published("TV2-LF", "sha3-512"))
    );
    assert_eq!(
        p.txt[2],
        format!("v=UAAC1; a=sha512; d={}", published("TV2-LF", "sha512"))
    );
    let zone = p.zone_lines();
    assert!(
        zone[0].starts_with("_ua-auto-config.tv2.example.test. 300 IN TXT \"v=UAAC1; a=sha256; d=")
    );
}

#[test]
fn the_example_file_is_valid() {
    let d = load(
        "examples/provider.toml",
        include_str!("../../../../examples/provider.toml"),
    );
    assert_eq!(d.documents[0].domains.len(), 2);
    let bytes = render(&d.documents[0]);
    let parsed = Config::from_bytes(&bytes).unwrap();
    assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
    assert_eq!(parsed.spelling, crate::document::Spelling::Submit);
}

#[test]
fn errors_name_their_line_and_nothing_half_applies() {
    let text = r#"[[document]]
domains = ["ok.example", "bad..example"]
oauth_issuer = "http://auth.example/"

[document.services]
imap = "192.0.2.1"
jmap = "https://jmap.example:8443/session"
caldav = "https://dav.example/"

[document.provider]
name = "Name"
"#;
    let errors = Description::parse("p.toml", text).unwrap_err();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 6, 7, 8], "{errors:?}");
    assert!(errors[0].to_string().starts_with("p.toml:2:"));
    // Unknown keys and type errors come from the TOML layer, also with positions.
    let e = Description::parse(
        "p.toml",
        "[[document]]\ndomains = [\"a.example\"]\nfrobnicate = 1\n",
    )
    .unwrap_err();
    assert_eq!(e[0].line, 3, "{e:?}");
    let e = Description::parse("p.toml", "[[document]]\ndomains = \"a.example\"\n").unwrap_err();
    assert_eq!(e[0].line, 2, "{e:?}");
    let dup = "[[document]]\ndomains=[\"a.example\"]\n[document.services]\nimap=\"i.example\"\n[document.provider]\nname=\"A\"\n[[document]]\ndomains=[\"A.example\"]\n[document.services]\nimap=\"i.example\"\n[document.provider]\nname=\"B\"\n";
    let e = Description::parse("p.toml", dup).unwrap_err();
    assert!(
        e[0].message.contains("two documents") && e[0].line == 8,
        "{e:?}"
    );
}

/// Issue 15.2: `[acme]` is validated with the rest, every error with its line.
#[test]
fn acme_section_is_validated() {
    use super::description::{DEFAULT_ORDERS_PER_HOUR, EabKey};
    let doc = "[[document]]\ndomains = [\"a.example\"]\n[document.services]\nimap = \"imap.a.example\"\n[document.provider]\nname = \"A\"\n";
    let ok = load(
        "p.toml",
        &format!(
            "{doc}[acme]\ndirectory = \"https://acme.example/dir\"\ncontact = [\"mailto:ops@a.example\"]\nstorage = \"/var/lib/pacc/acme\"\n[acme.eab]\nkid = \"k1\"\nhmac_key_file = \"eab.key\"\n"
        ),
    );
    let acme = ok.acme.unwrap();
    assert_eq!(acme.orders_per_hour, DEFAULT_ORDERS_PER_HOUR);
    assert_eq!(
        acme.eab,
        Some(("k1".to_owned(), EabKey::File("eab.key".to_owned())))
    );
    assert!(load("p.toml", doc).acme.is_none());
    for (bad, says) in [
        (
            "[acme]\ndirectory = \"http://acme.example/dir\"\nstorage = \"s\"\n",
            "https",
        ),
        (
            "[acme]\ndirectory = \"https://acme.example/dir\"\ncontact = [\"ops@a.example\"]\nstorage = \"s\"\n",
            "mailto",
        ),
        (
            "[acme]\ndirectory = \"https://acme.example/dir\"\nstorage = \"s\"\norders_per_hour = 0\n",
            "at least 1",
        ),
        (
            "[acme]\ndirectory = \"https://acme.example/dir\"\nstorage = \"s\"\n[acme.eab]\nkid = \"k\"\nhmac_key = \"a+b/\"\n",
            "base64url",
        ),
        (
            "[acme]\ndirectory = \"https://acme.example/dir\"\nstorage = \"s\"\n[acme.eab]\nkid = \"k\"\n",
            "exactly one",
        ),
        (
            "[acme]\ndirectory = \"https://acme.example/dir\"\n",
            "storage",
        ),
    ] {
        let errors = Description::parse("p.toml", &format!("{doc}{bad}")).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains(says) && e.line > 6),
            "{bad}: {errors:?}"
        );
    }
}
