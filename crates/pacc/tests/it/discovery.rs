//! Primary-path discovery (RET-*, DIG-*) end to end.

use std::time::{Duration, Instant};

use pacc_proto::digest::Algorithm;
use pacc_proto::document::{ServiceKind, Spelling};
use pacc_proto::fetch::{FailureClass, MAX_BODY};
use pacc_testbed::vectors::{self, published_digests};
use pacc_testbed::{Behaviour, CertKind, Reply, SilentDns, TlsVersions, sha256_record};

use crate::{assert_failure, client, client_with, discover, testbed};

const DOC: &[u8] = br#"{"protocols":{"imap":{"host":"imap.example.test"},"submit":{"host":"smtp.example.test"}},"authentication":{"password":true},"info":{"provider":{"name":"Testbed Mail"}}}"#;

#[tokio::test]
async fn every_spec_vector_with_every_algorithm() {
    let tb = testbed().await;
    let c = client(&tb);
    let digests = published_digests();
    let mut servers = Vec::new();
    let mut checked = 0;
    for (name, bytes) in vectors::DOCUMENTS {
        let label = name.to_ascii_lowercase();
        let domains: Vec<String> = ["sha256", "sha512", "sha3-512"]
            .iter()
            .map(|a| format!("{label}-{a}.vectors.test"))
            .collect();
        let hosts: Vec<String> = domains
            .iter()
            .map(|d| format!("ua-auto-config.{d}"))
            .collect();
        let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
        servers.push(
            tb.https_host(&host_refs, Behaviour::new(Reply::json(bytes.to_vec())))
                .await
                .unwrap(),
        );
        for (alg, domain) in ["sha256", "sha512", "sha3-512"].iter().zip(&domains) {
            let (_, _, published) = digests
                .iter()
                .find(|(n, a, _)| *n == name && a == alg)
                .expect("published digest");
            tb.publish_txt(domain, &format!("v=UAAC1; a={alg}; d={published}"))
                .await
                .unwrap();
            let r = discover(&c, &format!("someone@{domain}")).await;
            let v = r
                .outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("{name} {alg}: {e}"));
            assert_eq!(v.algorithm.name(), *alg, "{name}");
            assert_eq!(v.bytes, bytes, "{name}: exact bytes kept");
            checked += 1;
        }
    }
    assert_eq!(checked, 30);
}

#[tokio::test]
async fn split_txt_rollover_and_unrelated_records() {
    let tb = testbed().await;
    let c = client(&tb);
    let _s1 = tb.serve_document("split.test", DOC).await.unwrap();
    let rec = sha256_record(DOC);
    let (a, b) = rec.split_at(30);
    tb.dns
        .add_txt("_ua-auto-config.split.test", &[a.as_bytes(), b.as_bytes()])
        .await
        .unwrap();
    let r = discover(&c, "u@split.test").await;
    assert!(r.outcome.is_ok(), "{:?}", r.outcome.err());
    assert_eq!(r.records[0].strings, 2);

    let _s2 = tb.serve_document("rollover.test", DOC).await.unwrap();
    tb.publish_txt("rollover.test", &sha256_record(b"the old document"))
        .await
        .unwrap();
    tb.publish_txt("rollover.test", &rec).await.unwrap();
    tb.publish_txt("rollover.test", "google-site-verification=abc")
        .await
        .unwrap();
    tb.publish_txt("rollover.test", "v=spf1 -all")
        .await
        .unwrap();
    let r = discover(&c, "u@rollover.test").await;
    let v = r.outcome.as_ref().expect("rollover accepted");
    assert_eq!(v.record, rec);
    assert_eq!(r.records.len(), 4);
    let valid = r
        .records
        .iter()
        .filter(|s| matches!(s.verdict, pacc_proto::digest::RecordVerdict::Valid { .. }))
        .count();
    assert_eq!(
        valid, 2,
        "the stale and the current record are both valid records"
    );
}

#[tokio::test]
async fn digest_mismatch_and_missing_records() {
    let tb = testbed().await;
    let c = client(&tb);
    let _s = tb.serve_document("stale.test", DOC).await.unwrap();
    tb.publish_txt("stale.test", &sha256_record(b"something else"))
        .await
        .unwrap();
    let msg = assert_failure(
        &discover(&c, "u@stale.test").await,
        "digest-mismatch",
        FailureClass::Integrity,
    );
    assert!(msg.contains("_ua-auto-config.stale.test"), "{msg}");

    let _s = tb.serve_document("unsigned.test", DOC).await.unwrap();
    assert_failure(
        &discover(&c, "u@unsigned.test").await,
        "digest-not-published",
        FailureClass::Absent,
    );

    let _s = tb.serve_document("unrelated.test", DOC).await.unwrap();
    tb.publish_txt("unrelated.test", "v=UAAC2; a=sha256; d=AAAA")
        .await
        .unwrap();
    let r = discover(&c, "u@unrelated.test").await;
    assert_failure(&r, "digest-not-published", FailureClass::Absent);
    assert_eq!(r.records.len(), 1);
}

#[tokio::test]
async fn absent_host_and_404() {
    let tb = testbed().await;
    let c = client(&tb);
    // A domain that does not exist at all is said to be misspelt, not to publish nothing.
    let r = discover(&c, "u@nothing-here.test").await;
    assert_failure(&r, "domain-not-found", FailureClass::Absent);
    let message = r.outcome.as_ref().unwrap_err().to_string();
    assert!(
        message.contains("nothing-here.test does not exist in DNS"),
        "{message}"
    );
    // A domain that exists but has no configuration host.
    tb.dns
        .add_a("exists.test", std::net::Ipv4Addr::new(127, 0, 0, 1))
        .await
        .unwrap();
    let r = discover(&c, "u@exists.test").await;
    assert_failure(&r, "no-such-host", FailureClass::Absent);

    let _s = tb
        .https_host(
            &["ua-auto-config.notfound.test"],
            Behaviour::new(Reply::status(404)),
        )
        .await
        .unwrap();
    tb.publish_txt("notfound.test", &sha256_record(DOC))
        .await
        .unwrap();
    assert_failure(
        &discover(&c, "u@notfound.test").await,
        "http-status",
        FailureClass::Absent,
    );

    let _s = tb
        .https_host(
            &["ua-auto-config.busy.test"],
            Behaviour::new(Reply::status(503)),
        )
        .await
        .unwrap();
    assert_failure(
        &discover(&c, "u@busy.test").await,
        "http-status",
        FailureClass::Temporary,
    );
}

async fn tls_case(tls: TlsVersions, cert: CertKind) -> pacc::Report {
    let tb = testbed().await;
    let c = client(&tb);
    let mut b = Behaviour::new(Reply::json(DOC.to_vec()));
    b.tls = tls;
    b.cert = cert;
    let s = tb
        .https_host(&["ua-auto-config.tls.test"], b)
        .await
        .unwrap();
    tb.publish_txt("tls.test", &sha256_record(DOC))
        .await
        .unwrap();
    let r = discover(&c, "u@tls.test").await;
    if r.outcome.is_err() {
        assert!(
            s.requests().is_empty(),
            "no HTTP request may be sent over a refused TLS session"
        );
    }
    r
}

#[tokio::test]
async fn tls_12_only_is_refused() {
    let r = tls_case(TlsVersions::Tls12, CertKind::Valid).await;
    assert_failure(&r, "tls-version", FailureClass::Integrity);
}

#[tokio::test]
async fn tls_13_with_12_also_offered_is_fine() {
    let r = tls_case(TlsVersions::Both, CertKind::Valid).await;
    assert!(r.outcome.is_ok());
    assert_eq!(r.tls().unwrap().version, "TLSv1.3");
}

#[tokio::test]
async fn certificate_for_another_name_is_refused() {
    let r = tls_case(TlsVersions::Tls13, CertKind::WrongName).await;
    assert_failure(&r, "certificate-name", FailureClass::Integrity);
}

#[tokio::test]
async fn untrusted_and_self_signed_certificates_are_refused() {
    let r = tls_case(TlsVersions::Tls13, CertKind::UntrustedCa).await;
    assert_failure(&r, "certificate-untrusted", FailureClass::Integrity);
    let r = tls_case(TlsVersions::Tls13, CertKind::SelfSigned).await;
    assert_failure(&r, "certificate-untrusted", FailureClass::Integrity);
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let r = tls_case(TlsVersions::Tls13, CertKind::Expired).await;
    assert_failure(&r, "certificate-expired", FailureClass::Integrity);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let tb = testbed().await;
    let c = client(&tb);
    let target = tb.provider("target.test", DOC).await.unwrap();
    for status in [301u16, 302, 307, 308] {
        let domain = format!("r{status}.test");
        let _s = tb
            .https_host(
                &[&format!("ua-auto-config.{domain}")],
                Behaviour::new(Reply::Redirect {
                    status,
                    location: "https://ua-auto-config.target.test/.well-known/user-agent-configuration.json".into(),
                }),
            )
            .await
            .unwrap();
        tb.publish_txt(&domain, &sha256_record(DOC)).await.unwrap();
        let msg = assert_failure(
            &discover(&c, &format!("u@{domain}")).await,
            "redirect",
            FailureClass::Absent,
        );
        assert!(msg.contains(&status.to_string()), "{msg}");
    }
    assert_eq!(
        target
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "redirect target never contacted"
    );
}

#[tokio::test]
async fn huge_bodies_are_refused_without_reading_them() {
    let tb = testbed().await;
    let c = client(&tb);
    const TEN_MB: u64 = 10 * 1024 * 1024;
    for declare_length in [true, false] {
        let domain = if declare_length {
            "declared.test"
        } else {
            "chunked.test"
        };
        let s = tb
            .https_host(
                &[&format!("ua-auto-config.{domain}")],
                Behaviour::new(Reply::Huge {
                    total: TEN_MB,
                    declare_length,
                }),
            )
            .await
            .unwrap();
        tb.publish_txt(domain, &sha256_record(DOC)).await.unwrap();
        let started = Instant::now();
        let r = discover(&c, &format!("u@{domain}")).await;
        let msg = assert_failure(&r, "body-too-large", FailureClass::Integrity);
        assert!(msg.contains(&MAX_BODY.to_string()), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // Give the server a moment to notice the closed connection, then check it could not
        // push the whole body: the client stopped reading at the cap.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = s
            .stats()
            .body_bytes_sent
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(sent < TEN_MB, "{domain}: server sent all {sent} bytes");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_fails_within_the_deadline() {
    let tb = testbed().await;
    let deadline = Duration::from_secs(2);
    let c = client_with(&tb, deadline);
    let _a = tb
        .https_host(
            &["ua-auto-config.silent.test"],
            Behaviour::new(Reply::NeverAnswer),
        )
        .await
        .unwrap();
    let mut b = Behaviour::new(Reply::json(DOC.to_vec()));
    b.stall_handshake = true;
    let _b = tb
        .https_host(&["ua-auto-config.nohandshake.test"], b)
        .await
        .unwrap();
    for (domain, stage) in [
        ("silent.test", "response"),
        ("nohandshake.test", "tls-handshake"),
    ] {
        tb.publish_txt(domain, &sha256_record(DOC)).await.unwrap();
        let started = Instant::now();
        let r = discover(&c, &format!("u@{domain}")).await;
        let took = started.elapsed();
        let msg = assert_failure(&r, "timeout", FailureClass::Temporary);
        assert!(msg.contains(stage), "{msg}");
        assert!(
            took >= deadline - Duration::from_millis(100),
            "{domain}: gave up early after {took:?}"
        );
        assert!(
            took < deadline + Duration::from_millis(750),
            "{domain}: overran the deadline: {took:?}"
        );
    }
}

#[tokio::test]
async fn a_dns_server_that_never_answers_fails_within_the_deadline() {
    let silent = SilentDns::start().await.unwrap();
    let tb = testbed().await;
    let deadline = Duration::from_secs(2);
    let c = pacc::Client::builder()
        .dns(pacc::DnsConfig::Server(silent.addr()))
        .add_trust_anchor(tb.ca.cert_der().clone())
        .timeouts(pacc::Timeouts::with_overall(deadline))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = discover(&c, "u@example.test").await;
    let took = started.elapsed();
    let e = r.outcome.unwrap_err();
    assert_eq!(e.class(), FailureClass::Temporary, "{e}");
    assert!(
        took < deadline + Duration::from_millis(750),
        "overran: {took:?}"
    );
}

#[tokio::test]
async fn invalid_json_with_a_matching_digest_is_an_integrity_failure() {
    let tb = testbed().await;
    let c = client(&tb);
    for (domain, body) in [
        ("badjson.test", &b"{\"protocols\": {"[..]),
        (
            "dupkeys.test",
            br#"{"protocols":{"imap":{"host":"a.test"}},"protocols":{}}"#,
        ),
        (
            "empty.test",
            br#"{"protocols":{},"info":{"provider":{"name":"x"}}}"#,
        ),
    ] {
        let _s = tb.provider(domain, body).await.unwrap();
        let msg = assert_failure(
            &discover(&c, &format!("u@{domain}")).await,
            "invalid-document",
            FailureClass::Integrity,
        );
        assert!(msg.contains("$.protocols") || msg.contains("JSON"), "{msg}");
    }
}

#[tokio::test]
async fn unknown_members_smtp_only_and_submit_only() {
    let tb = testbed().await;
    let c = client(&tb);
    let unknown = br#"{"protocols":{"imap":{"host":"imap.x.test","future":true},"carrier-pigeon":{"coop":"roof"}},"new-top-level":{"a":1},"info":{"provider":{"name":"X","motto":"hi"}}}"#;
    let _a = tb.provider("unknown.test", unknown).await.unwrap();
    let r = discover(&c, "u@unknown.test").await;
    let v = r.outcome.expect("unknown members accepted");
    assert_eq!(v.document.config.protocols.len(), 1);

    let _b = tb
        .provider("smtp.test", vectors::document("TV1"))
        .await
        .unwrap();
    let v = discover(&c, "u@smtp.test").await.outcome.unwrap();
    assert_eq!(v.document.spelling, Spelling::Smtp);
    assert_eq!(
        v.document
            .config
            .protocols
            .get(ServiceKind::Submit)
            .unwrap()
            .endpoint
            .host()
            .as_str(),
        "smtp.example.test"
    );
    let _c = tb
        .provider("submit.test", vectors::document("TV2"))
        .await
        .unwrap();
    let v = discover(&c, "u@submit.test").await.outcome.unwrap();
    assert_eq!(v.document.spelling, Spelling::Submit);
    assert!(
        v.document
            .config
            .protocols
            .get(ServiceKind::Submit)
            .is_some()
    );
}

#[tokio::test]
async fn idn_addresses_query_a_labels() {
    let tb = testbed().await;
    let c = client(&tb);
    let s = tb.provider("xn--bcher-kva.example", DOC).await.unwrap();
    let r = discover(&c, "jörg@Bücher.example").await;
    assert_eq!(r.domain.as_str(), "xn--bcher-kva.example");
    r.outcome.as_ref().expect("IDN discovery");
    let reqs = s.requests();
    let host = reqs[0].headers.iter().find(|(k, _)| k == "host").unwrap();
    assert_eq!(host.1, "ua-auto-config.xn--bcher-kva.example");
}

#[tokio::test]
async fn gzip_bodies_are_hashed_after_decoding() {
    let tb = testbed().await;
    let c = client(&tb);
    let _s = tb
        .https_host(
            &["ua-auto-config.gzip.test"],
            Behaviour::new(Reply::Gzip(DOC.to_vec().into())),
        )
        .await
        .unwrap();
    tb.publish_txt("gzip.test", &sha256_record(DOC))
        .await
        .unwrap();
    let r = discover(&c, "u@gzip.test").await;
    let v = r.outcome.as_ref().expect("gzip body verified");
    assert_eq!(v.bytes, DOC);
    assert_eq!(
        r.response.as_ref().unwrap().content_encoding.as_deref(),
        Some("gzip")
    );
}

/// SEC-10, RET-4: the request carries no address, no query, no cookie, no credentials.
#[tokio::test]
async fn the_request_reveals_nothing_about_the_user() {
    let tb = testbed().await;
    let c = client(&tb);
    let s = tb.provider("private.test", DOC).await.unwrap();
    let r = discover(&c, "secret.person@private.test").await;
    assert!(r.outcome.is_ok());
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "exactly one request, no HEAD first");
    let req = &reqs[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/.well-known/user-agent-configuration.json");
    for (k, v) in &req.headers {
        assert!(!v.contains("secret.person"), "header {k} leaks the address");
        assert!(
            !["cookie", "authorization", "proxy-authorization"].contains(&k.as_str()),
            "sent {k}"
        );
    }
}

#[tokio::test]
async fn a_trailing_newline_changes_the_digest() {
    let tb = testbed().await;
    let c = client(&tb);
    let _s = tb
        .serve_document("lf.test", vectors::document("TV2-LF"))
        .await
        .unwrap();
    // The digest of TV2 without the newline: the served bytes do not match it.
    tb.publish_txt("lf.test", &sha256_record(vectors::document("TV2")))
        .await
        .unwrap();
    assert_failure(
        &discover(&c, "u@lf.test").await,
        "digest-mismatch",
        FailureClass::Integrity,
    );
    let r = discover(&c, "u@lf.test").await;
    assert!(matches!(
        r.records[0].verdict,
        pacc_proto::digest::RecordVerdict::Valid { matches: false, .. }
    ));
    assert_eq!(Algorithm::Sha256.name(), "sha256");
}
