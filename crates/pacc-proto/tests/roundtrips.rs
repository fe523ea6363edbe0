//! Property tests for the round trips the provider tools and clients rely on: a rendered
//! record or document parses back to what was rendered, normalisation is idempotent, and
//! capability sets stay bounded whatever a server sends.

use pacc_proto::digest::{Algorithm, DigestRecord, parse_record};
use pacc_proto::document::{Config, Endpoint, ServiceKind};
use pacc_proto::name::{Domain, EmailAddress};
use pacc_proto::probe::{Capabilities, MAX_CAPABILITIES};
use pacc_proto::provider::Description;
use pacc_proto::provider::render::render;
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,5}(-[a-z0-9]{1,5})?"
}

fn host() -> impl Strategy<Value = String> {
    (
        label(),
        label(),
        prop::sample::select(vec!["test", "example", "co.uk", "org"]),
    )
        .prop_map(|(a, b, tld)| format!("{a}.{b}.{tld}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// DIG-2 / DIG-7: the canonical rendering of any digest parses back canonical, equal,
    /// and matching the bytes it was made for.
    #[test]
    fn digest_records_round_trip(body in prop::collection::vec(any::<u8>(), 0..512), alg in 0usize..3) {
        let alg = Algorithm::ALL[alg];
        let rec = DigestRecord::for_bytes(alg, &body);
        let parsed = parse_record(rec.render().as_bytes()).unwrap();
        prop_assert!(parsed.canonical);
        prop_assert!(!parsed.noncanonical_base64);
        prop_assert_eq!(&parsed.digest, &rec.digest);
        prop_assert!(parsed.matches(&body));
    }

    /// RET-2: normalising a normalised name changes nothing; an address keeps its text.
    #[test]
    fn names_normalise_idempotently(h in host(), upper in any::<bool>(), local in "[a-z0-9_%+-]{1,10}(\\.[a-z0-9_%+-]{1,10})?") {
        let typed = if upper { h.to_ascii_uppercase() } else { h.clone() };
        let d = Domain::parse(&typed).unwrap();
        prop_assert_eq!(d.as_str(), h.as_str());
        prop_assert_eq!(Domain::parse(d.as_str()).unwrap(), d.clone());
        let address = format!("{local}@{typed}");
        let a = EmailAddress::parse(&address).unwrap();
        prop_assert_eq!(a.as_str(), address.as_str());
        prop_assert_eq!(a.domain(), &d);
    }

    /// PV-1: a provider description renders to a document that parses back with the same
    /// services at the same hosts and URLs, and the same authentication.
    #[test]
    fn provider_descriptions_render_and_parse_back(
        imap in host(), smtp in host(), dav in host(),
        password in any::<bool>(), issuer in any::<bool>(), sorted in any::<bool>(),
        name in "[A-Za-z]( ?[A-Za-z0-9]){0,10}",
    ) {
        let toml = format!(
            "[defaults]\nlayout = \"{}\"\n\n[[document]]\ndomains = [\"example.test\"]\npassword = {}\n{}\n[document.services]\nimap = \"{imap}\"\nsubmit = \"{smtp}\"\ncarddav = \"https://{dav}/card/\"\n\n[document.provider]\nname = \"{name}\"\n",
            if sorted { "sorted" } else { "draft" },
            password || !issuer,
            if issuer { "oauth_issuer = \"https://auth.example.test/\"\n" } else { "" },
        );
        let desc = Description::parse("p.toml", &toml).map_err(|e| TestCaseError::fail(format!("{e:?}\n{toml}")))?;
        let bytes = render(&desc.documents[0]);
        prop_assert_eq!(&bytes, &render(&desc.documents[0]), "deterministic");
        let config = Config::from_bytes(&bytes).unwrap().config;
        let host_of = |k| match config.protocols.get(k).map(|s| &s.endpoint) {
            Some(Endpoint::Host { host, .. }) => host.to_string(),
            Some(Endpoint::Url { url }) => url.to_string(),
            None => String::new(),
        };
        prop_assert_eq!(host_of(ServiceKind::Imap), imap);
        prop_assert_eq!(host_of(ServiceKind::Submit), smtp);
        prop_assert_eq!(host_of(ServiceKind::Carddav), format!("https://{dav}/card/"));
        prop_assert_eq!(config.provider_name(), Some(name.as_str()));
        let auth = config.authentication.unwrap();
        prop_assert_eq!(auth.password, password || !issuer);
        prop_assert_eq!(auth.oauth_public.is_some(), issuer);
    }

    /// Bounded work: whatever words a server sends, the set stays within the cap, without
    /// duplicates, and every kept mechanism is an RFC 4422 name.
    #[test]
    fn capability_sets_stay_bounded(words in prop::collection::vec("[ -~]{0,24}", 0..600)) {
        let mut c = Capabilities::default();
        for (i, w) in words.iter().enumerate() {
            let r = if i % 2 == 0 { c.add_mechanism(w) } else { c.add_flag(w) };
            if r.is_err() { break; }
        }
        prop_assert!(c.mechanisms.len() + c.flags.len() <= MAX_CAPABILITIES);
        let mut all: Vec<&String> = c.mechanisms.iter().chain(&c.flags).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        prop_assert!(all.len() <= n);
        prop_assert!(c.mechanisms.iter().all(|m| pacc_proto::probe::is_mechanism_name(m)));
    }
}
