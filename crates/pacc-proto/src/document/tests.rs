use super::*;

macro_rules! vector {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/vectors/",
            $name,
            ".json"
        ))
    };
}

fn parse(json: &str) -> Result<ParsedDocument, DocumentError> {
    Config::from_bytes(json.as_bytes())
}

fn doc_with(protocols: &str) -> String {
    format!(r#"{{"protocols":{protocols},"info":{{"provider":{{"name":"X"}}}}}}"#)
}

fn finding<'a>(d: &'a ParsedDocument, path: &str) -> &'a Finding {
    d.findings
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no finding at {path}: {:?}", d.findings))
}

#[test]
fn every_spec_document_vector_parses() {
    let all: [(&str, &[u8]); 10] = [
        ("TV1", vector!("TV1")),
        ("TV2", vector!("TV2")),
        ("TV2-LF", vector!("TV2-LF")),
        ("TV3", vector!("TV3")),
        ("TV4", vector!("TV4")),
        ("TV5", vector!("TV5")),
        ("TV6", vector!("TV6")),
        ("TV7", vector!("TV7")),
        ("TV8a", vector!("TV8a")),
        ("TV8b", vector!("TV8b")),
    ];
    for (name, bytes) in all {
        let d = Config::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            d.config.protocols.get(ServiceKind::Imap).is_some(),
            "{name}"
        );
    }
}

#[test]
fn tv4_full_example_reads_every_key() {
    let d = Config::from_bytes(vector!("TV4")).unwrap();
    let c = &d.config;
    assert_eq!(d.spelling, Spelling::Smtp);
    assert_eq!(c.protocols.len(), 6);
    let submit = c.protocols.get(ServiceKind::Submit).unwrap();
    assert_eq!(
        submit.endpoint,
        Endpoint::Host {
            host: Domain::parse("smtp.example.com").unwrap(),
            port: 465,
            tls: TlsMode::Implicit
        }
    );
    let Endpoint::Url { url } = &c.protocols.get(ServiceKind::Jmap).unwrap().endpoint else {
        panic!()
    };
    assert_eq!(url.as_str(), "https://jmap.example.com/session");
    let auth = c.authentication.as_ref().unwrap();
    assert!(auth.password);
    assert_eq!(
        auth.oauth_public.as_ref().unwrap().issuer,
        "https://auth.example.com/"
    );
    let info = c.info.as_ref().unwrap();
    let p = info.provider.as_ref().unwrap();
    assert_eq!(p.name, "Example Provider Name");
    assert_eq!(p.short_name.as_deref(), Some("Example"));
    assert_eq!(p.logo.len(), 1);
    assert_eq!(p.logo[0].content_type, "image/svg+xml");
    let help = info.help.as_ref().unwrap();
    assert_eq!(help.contact, vec!["mailto:it@team.example.net".to_owned()]);
    assert!(help.developer.is_some() && help.documentation.is_some());
    assert!(d.findings.is_empty(), "{:?}", d.findings);
    // The JSON view always says `submit`, whatever the provider wrote.
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(json["protocols"]["submit"]["host"], "smtp.example.com");
    assert_eq!(json["protocols"]["submit"]["port"], 465);
    assert_eq!(json["protocols"]["submit"]["tls"], "implicit");
    assert!(json["protocols"].get("smtp").is_none());
}

#[test]
fn tv3_managesieve_is_starttls_on_4190() {
    let d = Config::from_bytes(vector!("TV3")).unwrap();
    let ms = d.config.protocols.get(ServiceKind::Managesieve).unwrap();
    assert!(matches!(
        ms.endpoint,
        Endpoint::Host {
            port: 4190,
            tls: TlsMode::StartTls,
            ..
        }
    ));
    assert_eq!(d.config.protocols.len(), 8);
}

#[test]
fn tv7_without_info_is_tolerated_but_noted() {
    let d = Config::from_bytes(vector!("TV7")).unwrap();
    assert!(d.config.info.is_none());
    assert_eq!(finding(&d, "$.info").level, Level::Violation);
    assert_eq!(d.spelling, Spelling::Submit);
}

// Spec §4.6 J1 … J12.
#[test]
fn j1_duplicate_keys_reject_the_document() {
    let e = parse(r#"{"protocols":{"imap":{"host":"a.example"}},"protocols":{}}"#).unwrap_err();
    assert!(
        matches!(&e, DocumentError::Json(m) if m.contains("$.protocols")),
        "{e}"
    );
}

#[test]
fn j2_port_member_is_ignored_and_993_kept() {
    let d = parse(&doc_with(
        r#"{"imap":{"host":"imap.example.com","port":143}}"#,
    ))
    .unwrap();
    let imap = d.config.protocols.get(ServiceKind::Imap).unwrap();
    assert!(matches!(
        imap.endpoint,
        Endpoint::Host {
            port: 993,
            tls: TlsMode::Implicit,
            ..
        }
    ));
    assert_eq!(finding(&d, "$.protocols.imap.port").level, Level::Warning);
}

#[test]
fn j3_http_url_is_dropped() {
    let d = parse(&doc_with(
        r#"{"jmap":{"url":"http://jmap.example.com/session"},"imap":{"host":"i.example"}}"#,
    ))
    .unwrap();
    assert!(d.config.protocols.get(ServiceKind::Jmap).is_none());
    assert_eq!(finding(&d, "$.protocols.jmap.url").level, Level::Dropped);
}

#[test]
fn j4_explicit_port_rules() {
    let d = parse(&doc_with(
        r#"{"jmap":{"url":"https://jmap.example.com:8443/session"},"caldav":{"url":"https://dav.example.com:443/cal/"}}"#,
    ))
    .unwrap();
    assert!(d.config.protocols.get(ServiceKind::Jmap).is_none());
    assert!(
        finding(&d, "$.protocols.jmap.url")
            .message
            .contains(":8443")
    );
    let Endpoint::Url { url } = &d
        .config
        .protocols
        .get(ServiceKind::Caldav)
        .unwrap()
        .endpoint
    else {
        panic!()
    };
    assert_eq!(url.as_str(), "https://dav.example.com/cal/");
    assert_eq!(finding(&d, "$.protocols.caldav.url").level, Level::Warning);
}

#[test]
fn j5_both_submit_and_smtp() {
    let d = parse(&doc_with(
        r#"{"smtp":{"host":"old.example.com"},"submit":{"host":"new.example.com"}}"#,
    ))
    .unwrap();
    assert_eq!(d.spelling, Spelling::Both);
    assert_eq!(
        d.config
            .protocols
            .get(ServiceKind::Submit)
            .unwrap()
            .endpoint
            .host()
            .as_str(),
        "new.example.com"
    );
    assert_eq!(finding(&d, "$.protocols.smtp").level, Level::Warning);
    // Identical entries: no warning.
    let d = parse(&doc_with(
        r#"{"smtp":{"host":"a.example"},"submit":{"host":"a.example"}}"#,
    ))
    .unwrap();
    assert!(d.findings.is_empty());
}

#[test]
fn j6_string_password_makes_authentication_absent() {
    let d = parse(
        r#"{"protocols":{"imap":{"host":"i.example"}},"authentication":{"password":"true"},"info":{"provider":{"name":"X"}}}"#,
    )
    .unwrap();
    assert!(d.config.authentication.is_none());
    assert_eq!(
        finding(&d, "$.authentication.password").level,
        Level::Dropped
    );
}

#[test]
fn j7_oauth_public_without_issuer() {
    let d = parse(
        r#"{"protocols":{"imap":{"host":"i.example"}},"authentication":{"password":true,"oauth-public":{}},"info":{"provider":{"name":"X"}}}"#,
    )
    .unwrap();
    let auth = d.config.authentication.unwrap();
    assert!(auth.password && auth.oauth_public.is_none());
}

#[test]
fn j8_non_canonical_issuers() {
    for bad in [
        "https://id.example/a/../b",
        "https://id.example/./a",
        "https://id.example/%61",
        "https://id.example/?x=1",
        "https://id.example/#f",
        "http://id.example/",
        "https://id.exämple/",
    ] {
        let json = format!(
            r#"{{"protocols":{{"imap":{{"host":"i.example"}}}},"authentication":{{"password":true,"oauth-public":{{"issuer":"{bad}"}}}}}}"#
        );
        let d = parse(&json).unwrap();
        assert!(
            d.config.authentication.unwrap().oauth_public.is_none(),
            "{bad}"
        );
    }
    for good in [
        "https://id.example",
        "https://id.example/",
        "https://id.example:8443/tenant",
        "https://id.example/a%2Fb",
    ] {
        assert!(check_issuer(good).is_ok(), "{good}");
    }
}

#[test]
fn j9_bare_origin_dav_is_accepted_with_a_violation() {
    let d = parse(&doc_with(
        r#"{"caldav":{"url":"https://dav.example.com/"}}"#,
    ))
    .unwrap();
    assert!(d.config.protocols.get(ServiceKind::Caldav).is_some());
    assert_eq!(
        finding(&d, "$.protocols.caldav.url").level,
        Level::Violation
    );
}

#[test]
fn j10_long_names() {
    let name61 = "n".repeat(61);
    let d = parse(&format!(
        r#"{{"protocols":{{"imap":{{"host":"i.example"}}}},"info":{{"provider":{{"name":"{name61}","shortName":"thirteen-char"}}}}}}"#
    ))
    .unwrap();
    assert_eq!(d.config.provider_name(), Some(name61.as_str()));
    assert_eq!(finding(&d, "$.info.provider.name").level, Level::Violation);
    assert_eq!(
        finding(&d, "$.info.provider.shortName").level,
        Level::Warning
    );
    // Counting is in characters, not bytes: 30 'ä' is fine.
    let d = parse(&format!(
        r#"{{"protocols":{{"imap":{{"host":"i.example"}}}},"info":{{"provider":{{"name":"{}"}}}}}}"#,
        "ä".repeat(30)
    ))
    .unwrap();
    assert!(d.findings.is_empty());
}

#[test]
fn j12_nothing_usable() {
    assert!(matches!(
        parse(&doc_with("{}")),
        Err(DocumentError::NothingUsable(_))
    ));
    assert!(matches!(
        parse(&doc_with(r#"{"gopher":{"host":"g.example"}}"#)),
        Err(DocumentError::NothingUsable(_))
    ));
    let e = parse(&doc_with(r#"{"imap":{"host":"192.0.2.1"}}"#)).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("$.protocols.imap.host") && text.contains("IP literal"),
        "{text}"
    );
}

#[test]
fn structural_errors_name_the_path() {
    assert_eq!(parse("[]").unwrap_err(), DocumentError::NotObject);
    assert_eq!(parse("{}").unwrap_err(), DocumentError::NoProtocols);
    assert_eq!(
        parse(r#"{"protocols":[]}"#).unwrap_err(),
        DocumentError::ProtocolsNotObject
    );
    assert!(matches!(parse("{").unwrap_err(), DocumentError::Json(_)));
    assert!(parse("{}").unwrap_err().to_string().contains("$.protocols"));
}

#[test]
fn unknown_members_are_ignored_everywhere() {
    let d = parse(
        r#"{"future":1,"protocols":{"imap":{"host":"i.example","x":{}},"gopher":{}},"info":{"provider":{"name":"X","x":[]},"x":1}}"#,
    )
    .unwrap();
    assert_eq!(d.config.protocols.len(), 1);
    assert!(d.findings.is_empty(), "{:?}", d.findings);
}

#[test]
fn hosts_are_normalised_and_checked() {
    let d = parse(&doc_with(r#"{"imap":{"host":"IMAP.Bücher.example."}}"#)).unwrap();
    assert_eq!(
        d.config
            .protocols
            .get(ServiceKind::Imap)
            .unwrap()
            .endpoint
            .host()
            .as_str(),
        "imap.xn--bcher-kva.example"
    );
    assert_eq!(finding(&d, "$.protocols.imap.host").level, Level::Warning);
    for bad in [
        r#""a..b""#,
        r#""imap.example:993""#,
        r#""[::1]""#,
        "7",
        r#""""#,
    ] {
        let r = parse(&doc_with(&format!(
            r#"{{"imap":{{"host":{bad}}},"pop3":{{"host":"p.example"}}}}"#
        )))
        .unwrap();
        assert!(r.config.protocols.get(ServiceKind::Imap).is_none(), "{bad}");
        assert_eq!(
            finding(&r, "$.protocols.imap.host").level,
            Level::Dropped,
            "{bad}"
        );
    }
}

#[test]
fn urls_are_strict() {
    for bad in [
        "https://user@h.example/",
        "https://h.example/#x",
        "https://192.0.2.1/",
        "https://[2001:db8::1]/",
        "ftp://h.example/",
        "https:// h.example/",
        "https://h.example/\u{e4}",
    ] {
        assert!(check_url(bad).is_err(), "{bad}");
    }
    let (u, w) = check_url("HTTPS://H.Example?x=1").unwrap();
    assert_eq!(u.as_str(), "https://h.example/?x=1");
    assert!(w.is_none());
    assert_eq!(u.host().as_str(), "h.example");
    assert_eq!(u.path(), "/?x=1");
}

#[test]
fn arrays_are_bounded() {
    let logos: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"url":"https://l.example/{i}.png","content-type":"image/png","width":64,"height":64}}"#))
        .collect();
    let d = parse(&format!(
        r#"{{"protocols":{{"imap":{{"host":"i.example"}}}},"info":{{"provider":{{"name":"X","logo":[{}]}}}}}}"#,
        logos.join(",")
    ))
    .unwrap();
    assert_eq!(
        d.config.info.unwrap().provider.unwrap().logo.len(),
        MAX_ARRAY_ITEMS
    );
}
