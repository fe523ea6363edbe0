//! Probing (§2.5) against real Dovecot, Postfix and Radicale, and against hostile servers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use pacc_proto::document::{Config, ServiceKind};
use pacc_proto::probe::usable::Usable;
use pacc_proto::probe::{Offered, ProbeStatus, ServiceProbe};
use pacc_testbed::peers::{self, Cyrus, Radicale};
use pacc_testbed::{Behaviour, CertKind, Reply, ScriptStep, ScriptedServer, Testbed};

use crate::{client_with, testbed};

fn config(json: &str) -> Config {
    Config::from_bytes(json.as_bytes())
        .expect("test document")
        .config
}

async fn a(tb: &Testbed, name: &str, ip: IpAddr) {
    let IpAddr::V4(ip) = ip else {
        panic!("v4 only")
    };
    tb.dns.add_a(name, ip).await.unwrap();
}

async fn probe(tb: &Testbed, cfg: &Config, overall: Duration) -> Vec<ServiceProbe> {
    let client = client_with(tb, overall);
    client.probe(cfg, client.deadline(), &|_| {}).await
}

fn get(results: &[ServiceProbe], kind: ServiceKind) -> &ServiceProbe {
    results.iter().find(|r| r.service == kind).expect("probed")
}

#[track_caller]
fn reachable(p: &ServiceProbe) -> (&Offered, Usable) {
    match &p.status {
        ProbeStatus::Reachable {
            offered,
            usable,
            tls,
        } => {
            assert!(tls.session.version.starts_with("TLSv1."), "{tls:?}");
            (offered, *usable)
        }
        ProbeStatus::Unreachable { kind, error } => {
            panic!("{:?} unreachable: {kind}: {error}", p.service)
        }
    }
}

#[track_caller]
fn unreachable(p: &ServiceProbe) -> (&'static str, &str) {
    match &p.status {
        ProbeStatus::Unreachable { kind, error } => (kind, error.as_str()),
        other => panic!("{:?} should be unreachable: {other:?}", p.service),
    }
}

fn mechanisms(o: &Offered) -> Vec<String> {
    match o {
        Offered::Text(c) => c.mechanisms.clone(),
        Offered::Http(_) => panic!("not text"),
    }
}

fn daemons_installed() -> bool {
    let ok = ["dovecot", "postfix", "radicale", peers::CYRUS_MASTER]
        .iter()
        .all(|p| peers::available(p));
    if !ok {
        eprintln!(
            "SKIPPED: real-peer probe test needs dovecot, postfix, radicale and cyrus (.ci/run installs them)"
        );
    }
    ok
}

#[tokio::test]
async fn real_dovecot_postfix_radicale() {
    if !daemons_installed() {
        return;
    }
    let tb = testbed().await;
    let (dovecot, _postfix) = crate::mail_peers(&tb).await;
    let _radicale = Radicale::start(&tb, &["dav.example.test"])
        .await
        .expect("radicale");
    let _cyrus = Cyrus::start(&tb, &["jmap.example.test"])
        .await
        .expect("cyrus");

    let cfg = config(
        r#"{"protocols":{"jmap":{"url":"https://jmap.example.test/jmap"},"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"},"submit":{"host":"smtp.example.test"},"managesieve":{"host":"sieve.example.test"},"caldav":{"url":"https://dav.example.test/calendars/"},"carddav":{"url":"https://dav.example.test/contacts/"}},"authentication":{"password":true,"oauth-public":{"issuer":"https://auth.example.test"}},"info":{"provider":{"name":"Real peers"}}}"#,
    );
    let started = Instant::now();
    let results = probe(&tb, &cfg, Duration::from_secs(20)).await;
    eprintln!(
        "probed {} services in {:?}",
        results.len(),
        started.elapsed()
    );
    let all = ["PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"];
    for kind in [
        ServiceKind::Imap,
        ServiceKind::Pop3,
        ServiceKind::Submit,
        ServiceKind::Managesieve,
    ] {
        let (offered, usable) = reachable(get(&results, kind));
        assert_eq!(mechanisms(offered), all, "{kind:?}");
        assert_eq!(usable, Usable::Both, "{kind:?}");
    }
    let Offered::Text(imap) = reachable(get(&results, ServiceKind::Imap)).0 else {
        panic!()
    };
    assert!(imap.has("IMAP4REV1") && imap.has("SASL-IR"));
    let Offered::Text(pop) = reachable(get(&results, ServiceKind::Pop3)).0 else {
        panic!()
    };
    assert!(pop.has("USER"));
    let Offered::Text(sieve) = reachable(get(&results, ServiceKind::Managesieve)).0 else {
        panic!()
    };
    assert!(sieve.greeting.contains("Pigeonhole"), "{}", sieve.greeting);
    for kind in [ServiceKind::Caldav, ServiceKind::Carddav] {
        let (offered, usable) = reachable(get(&results, kind));
        let Offered::Http(h) = offered else { panic!() };
        assert_eq!(h.status, 401);
        assert_eq!(h.challenges.len(), 1);
        assert!(h.challenges[0].is("Basic"));
        assert_eq!(h.challenges[0].param("realm"), Some("PACC test"));
        assert_eq!(usable, Usable::Password, "Basic only: no token on DAV");
    }
    let (offered, usable) = reachable(get(&results, ServiceKind::Jmap));
    let Offered::Http(h) = offered else { panic!() };
    assert_eq!(h.status, 401);
    assert_eq!(
        h.challenges[0].param("realm"),
        Some("jmap.example.test"),
        "Cyrus' own realm"
    );
    assert_eq!(usable, Usable::Password);
    // With passwords disallowed by the document, password-only services become unusable.
    let oauth_only = config(
        r#"{"protocols":{"caldav":{"url":"https://dav.example.test/calendars/"},"imap":{"host":"imap.example.test"}},"authentication":{"password":false,"oauth-public":{"issuer":"https://auth.example.test"}}}"#,
    );
    let results = probe(&tb, &oauth_only, Duration::from_secs(20)).await;
    assert_eq!(
        reachable(get(&results, ServiceKind::Caldav)).1,
        Usable::Nothing
    );
    assert_eq!(reachable(get(&results, ServiceKind::Imap)).1, Usable::Oauth);
    // Dovecot logs every login-less disconnect; no login or failed authentication may appear.
    let log = std::fs::read_to_string(dovecot.dir().join("dovecot.log")).unwrap_or_default();
    assert!(
        log.contains("no auth attempts"),
        "Dovecot logged the probes:\n{log}"
    );
    assert!(
        !log.contains("Login: user=") && !log.contains("auth failed"),
        "a credential reached Dovecot:\n{log}"
    );
}

/// Hostile and broken text servers, each ending in its own outcome within the deadline.
#[tokio::test]
async fn hostile_text_servers() {
    use ScriptStep::*;
    let tb = testbed().await;
    let ca = &tb.ca;
    let s = |x: &str| ScriptStep::send(x);
    let plain_caps =
        "\"IMPLEMENTATION\" \"evil\"\r\n\"SASL\" \"PLAIN\"\r\n\"STARTTLS\"\r\nOK \"hi\"\r\n";
    /// (host, service, port, implicit TLS, certificate, script)
    type Case = (
        &'static str,
        ServiceKind,
        u16,
        bool,
        CertKind,
        Vec<ScriptStep>,
    );
    let cases: Vec<Case> = vec![
        (
            "silent.example.test",
            ServiceKind::Imap,
            993,
            true,
            CertKind::Valid,
            vec![Stall],
        ),
        (
            "endless.example.test",
            ServiceKind::Imap,
            993,
            true,
            CertKind::Valid,
            vec![
                s("* OK [CAPABILITY IMAP4rev1 "),
                Flood(b"AUTH=PLAIN ".to_vec()),
            ],
        ),
        (
            "wrongname.example.test",
            ServiceKind::Pop3,
            995,
            true,
            CertKind::WrongName,
            vec![s("+OK hi\r\n")],
        ),
        (
            "selfsigned.example.test",
            ServiceKind::Submit,
            465,
            true,
            CertKind::SelfSigned,
            vec![s("220 hi\r\n")],
        ),
        (
            "nostarttls.example.test",
            ServiceKind::Managesieve,
            4190,
            false,
            CertKind::Valid,
            vec![s("\"SASL\" \"PLAIN\"\r\nOK \"hi\"\r\n"), Stall],
        ),
        (
            "inject.example.test",
            ServiceKind::Managesieve,
            4190,
            false,
            CertKind::Valid,
            vec![
                s(plain_caps),
                ReadLine,
                s("OK \"go\"\r\n\"SASL\" \"PLAIN\"\r\nOK \"injected\"\r\n"),
                StartTls,
                Stall,
            ],
        ),
        (
            "preauthonly.example.test",
            ServiceKind::Managesieve,
            4190,
            false,
            CertKind::Valid,
            vec![
                s(plain_caps),
                ReadLine,
                s("OK \"go\"\r\n"),
                StartTls,
                s("\"VERSION\" \"1.0\"\r\nOK \"tls\"\r\n"),
                ReadLine,
            ],
        ),
    ];
    let mut servers = Vec::new();
    let mut protocols = Vec::new();
    let mut kinds = Vec::new();
    for (i, (name, kind, port, implicit, cert, script)) in cases.into_iter().enumerate() {
        let srv = ScriptedServer::start(ca, &[name], port, implicit, cert, script)
            .await
            .unwrap();
        a(&tb, name, srv.addr().ip()).await;
        // One document per case (a document has one entry per kind).
        protocols.push((i, kind, name));
        kinds.push(kind);
        servers.push(srv);
    }
    let deadline = Duration::from_secs(3);
    let mut outcomes = Vec::new();
    for (i, kind, name) in protocols {
        let cfg = config(&format!(
            r#"{{"protocols":{{"{}":{{"host":"{name}"}}}},"authentication":{{"password":true}}}}"#,
            kind.key()
        ));
        let started = Instant::now();
        let r = probe(&tb, &cfg, deadline).await.remove(0);
        assert!(
            started.elapsed() < deadline + Duration::from_millis(750),
            "{name} overran: {:?}",
            started.elapsed()
        );
        outcomes.push((i, name, r));
    }
    let kind_of = |i: usize| -> (&'static str, String) {
        let r = &outcomes[i].2;
        match &r.status {
            ProbeStatus::Unreachable { kind, error } => (kind, error.clone()),
            ProbeStatus::Reachable {
                usable, offered, ..
            } => ("reachable", format!("{usable:?} {offered:?}")),
        }
    };
    assert_eq!(kind_of(0).0, "timeout", "{:?}", kind_of(0));
    let (k, m) = kind_of(1);
    assert!(k == "protocol" && m.contains("longer than"), "{k}: {m}");
    assert_eq!(kind_of(2).0, "certificate-name");
    assert_eq!(kind_of(3).0, "certificate-untrusted");
    let (k, m) = kind_of(4);
    assert!(k == "protocol" && m.contains("STARTTLS"), "{k}: {m}");
    assert_eq!(kind_of(5).0, "starttls-injection", "{:?}", kind_of(5));
    let (k, m) = kind_of(6);
    assert_eq!(k, "reachable");
    assert!(
        m.starts_with("Nothing") && m.contains("mechanisms: []"),
        "SASL advertised only before TLS is ignored: {m}"
    );
    // Nothing resembling a credential was sent to any of them.
    for srv in &servers {
        let got = srv.received();
        assert!(
            !got.contains("AUTH") && !got.contains("LOGIN ") && !got.contains("PASS"),
            "{got}"
        );
    }
    assert!(
        servers[4].received().is_empty(),
        "nothing is sent to a ManageSieve server without STARTTLS"
    );
}

#[tokio::test]
async fn hostile_http_servers() {
    let tb = testbed().await;
    let fifty: Vec<(String, String)> = (0..50)
        .map(|i| {
            (
                "www-authenticate".to_owned(),
                format!("Scheme{i} realm=\"r{i}\""),
            )
        })
        .collect();
    let _many = tb
        .https_host(
            &["many.example.test"],
            Behaviour::new(Reply::Body {
                status: 401,
                body: Default::default(),
                headers: fifty,
            }),
        )
        .await
        .unwrap();
    let _redirect = tb
        .https_host(
            &["jmap.example.test"],
            Behaviour::new(Reply::Redirect {
                status: 302,
                location: "https://evil.example/jmap/session".into(),
            }),
        )
        .await
        .unwrap();
    let mut bearer = Behaviour::new(Reply::Body {
        status: 401,
        body: Default::default(),
        headers: vec![
            ("www-authenticate".into(), r#"Bearer realm="jmap", resource_metadata="https://api.example.test/.well-known/oauth-protected-resource""#.into()),
            ("www-authenticate".into(), "DPoP algs=\"ES256\", Basic realm=\"x\"".into()),
        ],
    });
    bearer.tls = pacc_testbed::TlsVersions::Tls12;
    let _bearer = tb
        .https_host(&["webdav.example.test"], bearer)
        .await
        .unwrap();
    let cfg = config(
        r#"{"protocols":{"caldav":{"url":"https://many.example.test/cal/"},"jmap":{"url":"https://jmap.example.test/session"},"webdav":{"url":"https://webdav.example.test/files/"}},"authentication":{"password":true,"oauth-public":{"issuer":"https://auth.example.test"}}}"#,
    );
    let results = probe(&tb, &cfg, Duration::from_secs(5)).await;
    let (offered, _) = reachable(get(&results, ServiceKind::Caldav));
    let Offered::Http(h) = offered else { panic!() };
    assert_eq!(h.challenges.len(), 50);
    assert_eq!(h.challenges[49].param("realm"), Some("r49"));
    let (k, m) = unreachable(get(&results, ServiceKind::Jmap));
    assert!(k == "protocol" && m.contains("another host"), "{k}: {m}");
    let (offered, usable) = reachable(get(&results, ServiceKind::Webdav));
    let Offered::Http(h) = offered else { panic!() };
    assert_eq!(usable, Usable::Both);
    assert_eq!(
        h.challenges[0].param("resource_metadata"),
        Some("https://api.example.test/.well-known/oauth-protected-resource")
    );
    let ProbeStatus::Reachable { tls, .. } = &get(&results, ServiceKind::Webdav).status else {
        panic!()
    };
    assert_eq!(
        tls.session.version, "TLSv1.2",
        "TLS 1.2 is allowed for services (SEC-5)"
    );
    assert!(
        tls.certificate
            .as_ref()
            .unwrap()
            .subject
            .contains("webdav.example.test")
    );
}
