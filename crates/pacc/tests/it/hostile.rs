//! The hostile-provider suite: named scenarios across DNS, TLS, HTTP and the mail protocols.
//! Each asserts the precise error (kind, and class where discovery decides the path), that
//! it came within the deadline, and, where a credential is involved, that nothing was sent.
//!
//! Every scenario is its own test on its own loopback addresses, so they run in parallel;
//! the deadline of the stalling ones is short (2 s).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use pacc::{Client, DnsConfig, Report, Timeouts};
use pacc_proto::auth::Secret;
use pacc_proto::auth::gate::ConfirmationRequest;
use pacc_proto::auth::select::{Choice, Decision, Method};
use pacc_proto::discovery::{DiscoveryError, DnsFailure};
use pacc_proto::document::{Config, ServiceKind};
use pacc_proto::fetch::{FailureClass, FetchError};
use pacc_proto::name::{Domain, EmailAddress};
use pacc_proto::probe::{ProbeStatus, ServiceProbe};
use pacc_testbed::{
    Behaviour, CertKind, DnsMode, HostileDns, Reply, ScriptStep, ScriptedServer, Testbed,
    TlsVersions, sha256_record,
};

use crate::testbed;

const DOC: &[u8] =
    br#"{"protocols":{"imap":{"host":"imap.example.test"}},"authentication":{"password":true}}"#;
/// The deadline of every scenario that has to wait for something that never comes.
const DEADLINE: Duration = Duration::from_secs(2);
/// What a deadline may be overrun by (scheduling, the final write of a report).
const SLACK: Duration = Duration::from_millis(750);

fn client_at(tb: &Testbed, dns: std::net::SocketAddr, overall: Duration) -> Client {
    Client::builder()
        .dns(DnsConfig::Server(dns))
        .add_trust_anchor(tb.ca.cert_der().clone())
        .timeouts(Timeouts::with_overall(overall))
        .build()
        .expect("client")
}

/// Discover `u@domain` and return the report and how long it took.
async fn discover_timed(c: &Client, domain: &str) -> (Report, Duration) {
    let started = Instant::now();
    let address = EmailAddress::parse(&format!("u@{domain}")).unwrap();
    let r = c.discover(&address).await;
    (r, started.elapsed())
}

#[track_caller]
fn within(elapsed: Duration, deadline: Duration) {
    assert!(
        elapsed <= deadline + SLACK,
        "took {elapsed:?}, deadline {deadline:?}"
    );
}

/// The discovery error (a primary failure behind a fallback that stopped for lack of
/// MTA-STS is unwrapped), its kind and class.
#[track_caller]
fn failure(r: &Report) -> &DiscoveryError {
    match &r.outcome {
        Ok(v) => panic!("expected a failure, got success via {}", v.url),
        Err(DiscoveryError::MxFallback { primary, failure })
            if failure.kind() == "mta-sts-missing" =>
        {
            primary
        }
        Err(e) => e,
    }
}

#[track_caller]
fn assert_fails(r: &Report, kind: &str, class: FailureClass) {
    let e = failure(r);
    assert_eq!(e.kind(), kind, "wrong kind: {e}");
    assert_eq!(e.class(), class, "wrong class: {e}");
}

async fn a(tb: &Testbed, name: &str, ip: IpAddr) {
    let IpAddr::V4(ip) = ip else {
        panic!("v4 only")
    };
    tb.dns.add_a(name, ip).await.unwrap();
}

/// A valid provider for `domain` (document + digest) on the testbed.
async fn provider(tb: &Testbed, domain: &str) -> pacc_testbed::HttpsServer {
    tb.provider(domain, DOC).await.unwrap()
}

// ------------------------------------------------------------------------------------------
// DNS
// ------------------------------------------------------------------------------------------

/// A valid provider behind a hostile DNS front; discovery through it.
async fn through_hostile_dns(mode: DnsMode, domain: &str) -> (Report, Duration) {
    let tb = testbed().await;
    let _p = provider(&tb, domain).await;
    let front = HostileDns::start(tb.dns_addr(), mode).await.unwrap();
    let c = client_at(&tb, front.addr(), DEADLINE);
    discover_timed(&c, domain).await
}

#[tokio::test]
async fn dns_udp_truncated_tcp_answers() {
    let (r, t) = through_hostile_dns(DnsMode::TruncateUdp, "tcponly.test").await;
    assert!(r.outcome.is_ok(), "TCP fallback: {:?}", r.outcome.err());
    within(t, DEADLINE);
}

#[tokio::test]
async fn dns_truncated_and_no_tcp() {
    let (r, t) = through_hostile_dns(DnsMode::TruncateEverywhere, "trunc.test").await;
    let e = failure(&r);
    assert_eq!(e.class(), FailureClass::Temporary, "{e}");
    within(t, DEADLINE);
}

#[tokio::test]
async fn dns_wrong_id_then_right_id() {
    let (r, t) = through_hostile_dns(DnsMode::WrongIdFirst, "wrongid.test").await;
    assert!(r.outcome.is_ok(), "{:?}", r.outcome.err());
    within(t, DEADLINE);
}

#[tokio::test]
async fn dns_wrong_id_only() {
    let (r, t) = through_hostile_dns(DnsMode::WrongIdOnly, "wrongidonly.test").await;
    assert_eq!(failure(&r).class(), FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn dns_servfail() {
    let (r, t) = through_hostile_dns(DnsMode::ServFail, "servfail.test").await;
    assert_eq!(failure(&r).class(), FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn dns_refused() {
    let (r, t) = through_hostile_dns(DnsMode::Refused, "refused.test").await;
    assert_eq!(failure(&r).class(), FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn dns_garbage_replies() {
    let (r, t) = through_hostile_dns(DnsMode::Garbage, "garbage.test").await;
    assert_eq!(failure(&r).class(), FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn dns_reply_for_another_question() {
    let (r, t) = through_hostile_dns(DnsMode::WrongQuestion, "wrongq.test").await;
    // A reply that does not answer the question is no answer: never a verified document.
    assert!(r.outcome.is_err());
    assert_ne!(failure(&r).class(), FailureClass::Integrity);
    within(t, DEADLINE);
}

#[tokio::test]
async fn dns_silent_server() {
    let tb = testbed().await;
    let silent = pacc_testbed::SilentDns::start().await.unwrap();
    let c = client_at(&tb, silent.addr(), DEADLINE);
    let (r, t) = discover_timed(&c, "silent.test").await;
    assert_eq!(failure(&r).class(), FailureClass::Temporary);
    within(t, DEADLINE);
}

/// A domain that also has everything the MX fallback needs, so a wrong "absent" verdict on
/// the primary path would show as a fallback success.
async fn fallback_ready(tb: &Testbed, domain: &str) -> Vec<pacc_testbed::HttpsServer> {
    let mx = format!("mx.{domain}");
    tb.dns.add_mx(domain, 10, &mx).await.unwrap();
    let sts = tb
        .mta_sts(domain, "1", &Testbed::enforce_policy(&[&mx]))
        .await
        .unwrap();
    let mx_doc = tb.provider(&mx, DOC).await.unwrap();
    vec![sts, mx_doc]
}

#[tokio::test]
async fn txt_owner_cname_loop_is_named_and_never_falls_back() {
    let tb = testbed().await;
    let d = "txtloop.test";
    let _s = tb.serve_document(d, DOC).await.unwrap();
    let _fb = fallback_ready(&tb, d).await;
    tb.dns
        .add_cname(&format!("_ua-auto-config.{d}"), "a.loop.txtloop.test")
        .await
        .unwrap();
    tb.dns
        .add_cname("a.loop.txtloop.test", &format!("_ua-auto-config.{d}"))
        .await
        .unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(5));
    let (r, t) = discover_timed(&c, d).await;
    match &r.outcome {
        Err(DiscoveryError::DigestLookup {
            failure: DnsFailure::CnameLoop { chain },
            ..
        }) => assert!(chain.len() >= 3, "{chain:?}"),
        other => panic!("expected a named CNAME loop, got {other:?}"),
    }
    assert_fails(&r, "digest-lookup-failed", FailureClass::Temporary);
    assert!(
        r.outcome
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("loops")
    );
    within(t, Duration::from_secs(5));
}

#[tokio::test]
async fn host_cname_loop_is_named_and_never_falls_back() {
    let tb = testbed().await;
    let d = "hostloop.test";
    let _fb = fallback_ready(&tb, d).await;
    tb.publish_txt(d, &sha256_record(DOC)).await.unwrap();
    tb.dns
        .add_cname(&format!("ua-auto-config.{d}"), "b.hostloop.test")
        .await
        .unwrap();
    tb.dns
        .add_cname("b.hostloop.test", &format!("ua-auto-config.{d}"))
        .await
        .unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(5));
    let (r, _) = discover_timed(&c, d).await;
    match &r.outcome {
        Err(DiscoveryError::Fetch(FetchError::CnameLoop { chain, .. })) => {
            assert!(chain.len() >= 3, "{chain:?}")
        }
        other => panic!("expected a named CNAME loop, got {other:?}"),
    }
    assert_fails(&r, "cname-loop", FailureClass::Temporary);
}

#[tokio::test]
async fn txt_owner_cname_chain_too_long() {
    let tb = testbed().await;
    let d = "longchain.test";
    let _s = tb.serve_document(d, DOC).await.unwrap();
    let _fb = fallback_ready(&tb, d).await;
    let mut from = format!("_ua-auto-config.{d}");
    for i in 0..12 {
        let to = format!("hop{i}.{d}");
        tb.dns.add_cname(&from, &to).await.unwrap();
        from = to;
    }
    tb.dns
        .add_txt(&from, &[sha256_record(DOC).as_bytes()])
        .await
        .unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(5));
    let (r, _) = discover_timed(&c, d).await;
    assert!(
        matches!(
            &r.outcome,
            Err(DiscoveryError::DigestLookup {
                failure: DnsFailure::CnameChainTooLong { .. },
                ..
            })
        ),
        "{:?}",
        r.outcome.as_ref().err()
    );
    assert_fails(&r, "digest-lookup-failed", FailureClass::Temporary);
}

#[tokio::test]
async fn txt_owner_short_cname_chain_is_followed() {
    let tb = testbed().await;
    let d = "shortchain.test";
    let _s = tb.serve_document(d, DOC).await.unwrap();
    tb.dns
        .add_cname(&format!("_ua-auto-config.{d}"), "one.shortchain.test")
        .await
        .unwrap();
    tb.dns
        .add_cname("one.shortchain.test", "two.shortchain.test")
        .await
        .unwrap();
    tb.dns
        .add_txt("two.shortchain.test", &[sha256_record(DOC).as_bytes()])
        .await
        .unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(5));
    let (r, _) = discover_timed(&c, d).await;
    assert!(r.outcome.is_ok(), "{:?}", r.outcome.err());
}

#[tokio::test]
async fn dangling_cname_on_the_txt_owner_is_absent() {
    let tb = testbed().await;
    let d = "dangling.test";
    let _s = tb.serve_document(d, DOC).await.unwrap();
    tb.dns
        .add_cname(
            &format!("_ua-auto-config.{d}"),
            "nothing-here.dangling.test",
        )
        .await
        .unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(5));
    let (r, _) = discover_timed(&c, d).await;
    assert_fails(&r, "digest-not-published", FailureClass::Absent);
}

#[tokio::test]
async fn two_hundred_txt_records_are_all_evaluated() {
    let tb = testbed().await;
    let d = "manytxt.test";
    let _s = tb.serve_document(d, DOC).await.unwrap();
    for i in 0..200 {
        tb.publish_txt(d, &format!("v=spf1 include:_{i}.example -all"))
            .await
            .unwrap();
    }
    tb.publish_txt(d, &sha256_record(DOC)).await.unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(10));
    let (r, _) = discover_timed(&c, d).await;
    assert!(r.outcome.is_ok(), "{:?}", r.outcome.err());
    assert_eq!(r.records.len(), 201, "every record is seen and counted");
}

#[tokio::test]
async fn a_large_mx_rrset_is_evaluated_in_full() {
    let tb = testbed().await;
    let d = "manymx.test";
    // 300 less-preferred MX hosts first, the most preferred one last.
    for i in 0..300 {
        tb.dns
            .add_mx(d, 50, &format!("backup{i}.manymx.test"))
            .await
            .unwrap();
    }
    let mx = "mx.manymx.test";
    tb.dns.add_mx(d, 10, mx).await.unwrap();
    let _sts = tb
        .mta_sts(d, "1", &Testbed::enforce_policy(&[mx]))
        .await
        .unwrap();
    let _mx_doc = tb.provider(mx, DOC).await.unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(10));
    let (r, _) = discover_timed(&c, d).await;
    let v = r.outcome.as_ref().expect("fallback through the best MX");
    assert_eq!(v.mx.as_ref().unwrap().hosts.len(), 1);
}

// ------------------------------------------------------------------------------------------
// TLS (the configuration fetch)
// ------------------------------------------------------------------------------------------

/// The digest is published, and `ua-auto-config.<domain>` is a scripted server on 443.
async fn scripted_doc(
    tb: &Testbed,
    domain: &str,
    implicit_tls: bool,
    cert: CertKind,
    script: Vec<ScriptStep>,
) -> ScriptedServer {
    let host = format!("ua-auto-config.{domain}");
    let s = ScriptedServer::start(&tb.ca, &[&host], 443, implicit_tls, cert, script)
        .await
        .unwrap();
    a(tb, &host, s.addr().ip()).await;
    tb.publish_txt(domain, &sha256_record(DOC)).await.unwrap();
    s
}

async fn fetch_case(
    domain: &str,
    implicit_tls: bool,
    cert: CertKind,
    script: Vec<ScriptStep>,
) -> (Report, Duration, ScriptedServer) {
    let tb = testbed().await;
    let s = scripted_doc(&tb, domain, implicit_tls, cert, script).await;
    let c = client_at(&tb, tb.dns_addr(), DEADLINE);
    let (r, t) = discover_timed(&c, domain).await;
    (r, t, s)
}

#[tokio::test]
async fn tls_closed_mid_handshake() {
    use ScriptStep::*;
    let (r, t, _s) = fetch_case(
        "midclose.test",
        false,
        CertKind::Valid,
        vec![ReadLine, Close],
    )
    .await;
    // The ClientHello has no line end: the server reads part of it, then closes.
    assert_fails(&r, "tls-failed", FailureClass::Integrity);
    within(t, DEADLINE);
}

#[tokio::test]
async fn tls_handshake_stalls() {
    let (r, t, _s) = fetch_case(
        "tlsstall.test",
        false,
        CertKind::Valid,
        vec![ScriptStep::Stall],
    )
    .await;
    assert_fails(&r, "timeout", FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn tls_garbage_instead_of_a_handshake() {
    let (r, t, _s) = fetch_case(
        "tlsgarbage.test",
        false,
        CertKind::Valid,
        vec![ScriptStep::Send(vec![
            0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef,
        ])],
    )
    .await;
    assert_fails(&r, "tls-failed", FailureClass::Integrity);
    within(t, DEADLINE);
}

#[tokio::test]
async fn plaintext_http_on_port_443() {
    use ScriptStep::*;
    let (r, t, _s) = fetch_case(
        "plainhttp.test",
        false,
        CertKind::Valid,
        vec![
            send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
            Close,
        ],
    )
    .await;
    assert_fails(&r, "tls-failed", FailureClass::Integrity);
    within(t, DEADLINE);
}

fn send(s: &str) -> ScriptStep {
    ScriptStep::send(s)
}

async fn tls_doc_case(domain: &str, tls: TlsVersions, cert: CertKind) -> Report {
    let tb = testbed().await;
    let host = format!("ua-auto-config.{domain}");
    let _s = tb
        .https_host(
            &[&host],
            Behaviour {
                tls,
                cert,
                ..Behaviour::new(Reply::json(DOC.to_vec()))
            },
        )
        .await
        .unwrap();
    tb.publish_txt(domain, &sha256_record(DOC)).await.unwrap();
    let c = client_at(&tb, tb.dns_addr(), DEADLINE);
    discover_timed(&c, domain).await.0
}

#[tokio::test]
async fn tls_12_for_the_document() {
    let r = tls_doc_case("tls12.test", TlsVersions::Tls12, CertKind::Valid).await;
    assert_fails(&r, "tls-version", FailureClass::Integrity);
}

#[tokio::test]
async fn tls_certificate_for_another_name() {
    let r = tls_doc_case("wrongname.test", TlsVersions::Tls13, CertKind::WrongName).await;
    assert_fails(&r, "certificate-name", FailureClass::Integrity);
}

#[tokio::test]
async fn tls_expired_certificate() {
    let r = tls_doc_case("expired.test", TlsVersions::Tls13, CertKind::Expired).await;
    assert_fails(&r, "certificate-expired", FailureClass::Integrity);
}

#[tokio::test]
async fn tls_self_signed_certificate() {
    let r = tls_doc_case("selfsigned.test", TlsVersions::Tls13, CertKind::SelfSigned).await;
    assert_fails(&r, "certificate-untrusted", FailureClass::Integrity);
}

#[tokio::test]
async fn tls_untrusted_ca() {
    let r = tls_doc_case("untrusted.test", TlsVersions::Tls13, CertKind::UntrustedCa).await;
    assert_fails(&r, "certificate-untrusted", FailureClass::Integrity);
}

// ------------------------------------------------------------------------------------------
// HTTP (the configuration fetch, over valid TLS 1.3)
// ------------------------------------------------------------------------------------------

async fn http_case(domain: &str, response: Vec<ScriptStep>) -> (Report, Duration, ScriptedServer) {
    let mut script = vec![ScriptStep::ReadHead];
    script.extend(response);
    fetch_case(domain, true, CertKind::Valid, script).await
}

fn ok_head(extra: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}\r\n")
}

#[tokio::test]
async fn http_body_drips() {
    let mut head = ok_head(&format!("Content-Length: {}\r\n", DOC.len())).into_bytes();
    head.extend_from_slice(DOC);
    let (r, t, _s) = http_case(
        "drip.test",
        vec![ScriptStep::Drip(head, Duration::from_millis(40))],
    )
    .await;
    assert_fails(&r, "timeout", FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_head_drips() {
    let (r, t, _s) = http_case(
        "headdrip.test",
        vec![ScriptStep::Drip(
            b"HTTP/1.1 200 OK\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec(),
            Duration::from_millis(50),
        )],
    )
    .await;
    assert_fails(&r, "timeout", FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_endless_chunked_body() {
    let (r, t, _s) = http_case(
        "endless.test",
        vec![
            send(&ok_head("Transfer-Encoding: chunked\r\n")),
            ScriptStep::Flood(
                b"400\r\n"
                    .iter()
                    .copied()
                    .chain([b'a'; 1024])
                    .chain(*b"\r\n")
                    .collect(),
            ),
        ],
    )
    .await;
    assert_fails(&r, "body-too-large", FailureClass::Integrity);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_gzip_bomb() {
    let tb = testbed().await;
    let d = "gzipbomb.test";
    let _s = tb
        .https_host(
            &[&format!("ua-auto-config.{d}")],
            Behaviour::new(Reply::Gzip(vec![b' '; 64 * 1024 * 1024].into())),
        )
        .await
        .unwrap();
    tb.publish_txt(d, &sha256_record(DOC)).await.unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(5));
    let (r, _) = discover_timed(&c, d).await;
    assert_fails(&r, "body-too-large", FailureClass::Integrity);
}

#[tokio::test]
async fn http_oversized_head() {
    let big = format!("X-Big: {}\r\n", "b".repeat(200 * 1024));
    let (r, t, _s) = http_case("bighead.test", vec![send(&ok_head(&big))]).await;
    assert_fails(&r, "http-protocol", FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_too_many_header_fields() {
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (r, t, _s) = http_case("manyheaders.test", vec![send(&ok_head(&many))]).await;
    assert_fails(&r, "http-protocol", FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_redirect_is_not_followed() {
    let (r, _, s) = http_case(
        "redirect.test",
        vec![send(
            "HTTP/1.1 301 Moved\r\nLocation: https://evil.example/\r\nContent-Length: 0\r\n\r\n",
        )],
    )
    .await;
    assert_fails(&r, "redirect", FailureClass::Absent);
    assert_eq!(s.received().matches("GET ").count(), 1, "one request only");
}

#[tokio::test]
async fn http_permanent_redirect_is_not_followed() {
    let (r, _, _s) = http_case(
        "redirect308.test",
        vec![send(
            "HTTP/1.1 308 Permanent\r\nLocation: /elsewhere.json\r\nContent-Length: 0\r\n\r\n",
        )],
    )
    .await;
    assert_fails(&r, "redirect", FailureClass::Absent);
}

#[tokio::test]
async fn http_content_length_shorter_than_the_body() {
    let mut resp = ok_head("Content-Length: 10\r\n").into_bytes();
    resp.extend_from_slice(DOC);
    let (r, _, _s) = http_case("shortlen.test", vec![ScriptStep::Send(resp)]).await;
    // Only the declared 10 bytes are the body: they do not match the digest.
    assert_fails(&r, "digest-mismatch", FailureClass::Integrity);
}

#[tokio::test]
async fn http_content_length_longer_than_the_body() {
    let mut resp = ok_head("Content-Length: 5000\r\n").into_bytes();
    resp.extend_from_slice(DOC);
    let (r, t, _s) = http_case(
        "longlen.test",
        vec![ScriptStep::Send(resp), ScriptStep::Close],
    )
    .await;
    assert_fails(&r, "http-protocol", FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_declared_length_over_the_cap() {
    let (r, t, _s) = http_case(
        "declaredhuge.test",
        vec![
            send(&ok_head("Content-Length: 1000000000000\r\n")),
            ScriptStep::Stall,
        ],
    )
    .await;
    assert_fails(&r, "body-too-large", FailureClass::Integrity);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_conflicting_content_lengths() {
    let mut resp = ok_head("Content-Length: 10\r\nContent-Length: 20\r\n").into_bytes();
    resp.extend_from_slice(DOC);
    let (r, _, _s) = http_case("twolengths.test", vec![ScriptStep::Send(resp)]).await;
    assert_fails(&r, "http-protocol", FailureClass::Temporary);
}

#[tokio::test]
async fn http_garbage_status_line() {
    let (r, _, _s) = http_case(
        "badstatus.test",
        vec![send("HTTP/9 banana\r\n\r\n"), ScriptStep::Close],
    )
    .await;
    assert_fails(&r, "http-protocol", FailureClass::Temporary);
}

#[tokio::test]
async fn http_server_error_is_temporary() {
    let (r, _, _s) = http_case(
        "err500.test",
        vec![send("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")],
    )
    .await;
    assert_fails(&r, "http-status", FailureClass::Temporary);
}

#[tokio::test]
async fn http_rate_limited_is_temporary() {
    let (r, _, _s) = http_case(
        "err429.test",
        vec![send("HTTP/1.1 429 Slow down\r\nContent-Length: 0\r\n\r\n")],
    )
    .await;
    assert_fails(&r, "http-status", FailureClass::Temporary);
}

#[tokio::test]
async fn http_never_answers() {
    let (r, t, _s) = http_case("noanswer.test", vec![ScriptStep::Stall]).await;
    assert_fails(&r, "timeout", FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_closes_without_a_response() {
    let (r, t, _s) = http_case("closes.test", vec![ScriptStep::Close]).await;
    assert_fails(&r, "http-protocol", FailureClass::Temporary);
    within(t, DEADLINE);
}

#[tokio::test]
async fn http_unknown_content_encoding() {
    let mut resp = ok_head(&format!(
        "Content-Encoding: x-evil\r\nContent-Length: {}\r\n",
        DOC.len()
    ))
    .into_bytes();
    resp.extend_from_slice(DOC);
    let (r, _, _s) = http_case("encoding.test", vec![ScriptStep::Send(resp)]).await;
    assert_fails(&r, "content-encoding", FailureClass::Integrity);
}

#[tokio::test]
async fn http_corrupt_gzip() {
    let mut resp = ok_head("Content-Encoding: gzip\r\nContent-Length: 12\r\n").into_bytes();
    resp.extend_from_slice(b"\x1f\x8b\x08\x00garbage!");
    let (r, _, _s) = http_case("corruptgzip.test", vec![ScriptStep::Send(resp)]).await;
    assert_fails(&r, "content-encoding", FailureClass::Integrity);
}

// ------------------------------------------------------------------------------------------
// Mail protocols (probes: no credential is ever sent)
// ------------------------------------------------------------------------------------------

const PLAIN_SIEVE_CAPS: &str =
    "\"IMPLEMENTATION\" \"evil\"\r\n\"SASL\" \"PLAIN\"\r\n\"STARTTLS\"\r\nOK \"hi\"\r\n";

/// Probe one service of `kind` served by a scripted server; returns the probe, the time it
/// took and the server.
async fn probe_case(
    kind: ServiceKind,
    implicit_tls: bool,
    script: Vec<ScriptStep>,
    deadline: Duration,
) -> (ServiceProbe, Duration, ScriptedServer) {
    let tb = testbed().await;
    let (key, port) = match kind {
        ServiceKind::Imap => ("imap", 993),
        ServiceKind::Pop3 => ("pop3", 995),
        ServiceKind::Submit => ("submit", 465),
        ServiceKind::Managesieve => ("managesieve", 4190),
        other => panic!("{other:?}"),
    };
    let host = format!("{key}.hostile.test");
    let s = ScriptedServer::start(
        &tb.ca,
        &[&host],
        port,
        implicit_tls,
        CertKind::Valid,
        script,
    )
    .await
    .unwrap();
    a(&tb, &host, s.addr().ip()).await;
    let cfg = Config::from_bytes(
        format!(r#"{{"protocols":{{"{key}":{{"host":"{host}"}}}},"authentication":{{"password":true}}}}"#)
            .as_bytes(),
    )
    .unwrap()
    .config;
    let c = client_at(&tb, tb.dns_addr(), deadline);
    let started = Instant::now();
    let mut r = c.probe(&cfg, c.deadline(), &|_| {}).await;
    (r.remove(0), started.elapsed(), s)
}

#[track_caller]
fn unreachable(p: &ServiceProbe) -> (&'static str, &str) {
    match &p.status {
        ProbeStatus::Unreachable { kind, error } => (kind, error.as_str()),
        other => panic!("{:?} should be unreachable: {other:?}", p.service),
    }
}

/// 256 lines of about 8 KiB of unique capability words: about 2 MB, within every line and
/// line-count limit, all sent at once so that they sit in the client's buffers.
fn unique_words(prefix: &str, line: usize) -> String {
    (0..740)
        .map(|i| format!("{prefix}{line:03}-X{i:04}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn flood_lines(make: impl Fn(usize) -> String) -> Vec<u8> {
    (0..256).flat_map(|i| make(i).into_bytes()).collect()
}

#[track_caller]
fn protocol_or_timeout(p: &ServiceProbe) {
    let (kind, error) = unreachable(p);
    assert!(kind == "protocol" || kind == "timeout", "{kind}: {error}");
}

#[tokio::test]
async fn imap_two_megabytes_of_unique_capabilities() {
    let mut flood = b"* OK hello\r\n".to_vec();
    let lines = flood_lines(|i| format!("* CAPABILITY {}\r\n", unique_words("C", i)));
    assert!(lines.len() > 2_000_000, "{}", lines.len());
    flood.extend(lines);
    let (p, t, _s) = probe_case(
        ServiceKind::Imap,
        true,
        vec![ScriptStep::Send(flood), ScriptStep::Stall],
        DEADLINE,
    )
    .await;
    protocol_or_timeout(&p);
    within(t, DEADLINE);
}

#[tokio::test]
async fn imap_unique_capabilities_in_the_greeting() {
    let greeting = format!(
        "* OK [CAPABILITY IMAP4rev1 {}] hi\r\n",
        unique_words("G", 0)
    );
    let (p, t, _s) = probe_case(ServiceKind::Imap, true, vec![send(&greeting)], DEADLINE).await;
    let (kind, error) = unreachable(&p);
    assert_eq!(kind, "protocol");
    assert!(error.contains("more than 256 capabilities"), "{error}");
    within(t, DEADLINE);
}

#[tokio::test]
async fn smtp_two_megabytes_of_unique_ehlo_keywords() {
    let mut flood = b"220 hi\r\n".to_vec();
    let mut ehlo = b"250-mx.hostile.test\r\n".to_vec();
    ehlo.extend(flood_lines(|i| {
        format!("250-{}\r\n", unique_words("K", i).replace(' ', "\r\n250-"))
    }));
    ehlo.extend_from_slice(b"250 AUTH PLAIN\r\n");
    flood.extend_from_slice(&[]);
    let (p, t, _s) = probe_case(
        ServiceKind::Submit,
        true,
        vec![
            ScriptStep::Send(flood),
            ScriptStep::ReadLine,
            ScriptStep::Send(ehlo),
            ScriptStep::Stall,
        ],
        DEADLINE,
    )
    .await;
    protocol_or_timeout(&p);
    within(t, DEADLINE);
}

#[tokio::test]
async fn smtp_unique_auth_mechanisms() {
    let mechs: String = (0..600).map(|i| format!(" M{i}")).collect();
    let (p, _, _s) = probe_case(
        ServiceKind::Submit,
        true,
        vec![
            send("220 hi\r\n"),
            ScriptStep::ReadLine,
            send(&format!("250-mx\r\n250 AUTH{mechs}\r\n")),
        ],
        DEADLINE,
    )
    .await;
    let (kind, error) = unreachable(&p);
    assert_eq!(kind, "protocol");
    assert!(error.contains("more than 256"), "{error}");
}

#[tokio::test]
async fn pop3_two_megabytes_of_unique_capa_lines() {
    let mut capa = b"+OK capabilities\r\n".to_vec();
    capa.extend(flood_lines(|i| {
        format!("X-{}\r\n", unique_words("P", i).replace(' ', "\r\nX-"))
    }));
    capa.extend_from_slice(b".\r\n");
    let (p, t, _s) = probe_case(
        ServiceKind::Pop3,
        true,
        vec![
            send("+OK hi\r\n"),
            ScriptStep::ReadLine,
            ScriptStep::Send(capa),
            ScriptStep::Stall,
        ],
        DEADLINE,
    )
    .await;
    protocol_or_timeout(&p);
    within(t, DEADLINE);
}

#[tokio::test]
async fn managesieve_unique_capabilities_after_tls() {
    let caps: String = (0..600).map(|i| format!("\"X-CAP{i}\"\r\n")).collect();
    let (p, _, _s) = probe_case(
        ServiceKind::Managesieve,
        false,
        vec![
            send(PLAIN_SIEVE_CAPS),
            ScriptStep::ReadLine,
            send("OK \"go\"\r\n"),
            ScriptStep::StartTls,
            send(&format!("{caps}\"SASL\" \"PLAIN\"\r\nOK \"hi\"\r\n")),
        ],
        DEADLINE,
    )
    .await;
    let (kind, error) = unreachable(&p);
    assert_eq!(kind, "protocol", "{error}");
}

#[tokio::test]
async fn imap_endless_line() {
    let (p, t, _s) = probe_case(
        ServiceKind::Imap,
        true,
        vec![
            send("* OK [CAPABILITY IMAP4rev1 "),
            ScriptStep::Flood(b"AUTH=PLAIN ".to_vec()),
        ],
        DEADLINE,
    )
    .await;
    let (kind, error) = unreachable(&p);
    assert_eq!(kind, "protocol");
    assert!(error.contains("longer than"), "{error}");
    within(t, DEADLINE);
}

#[tokio::test]
async fn imap_greeting_drips() {
    let (p, t, _s) = probe_case(
        ServiceKind::Imap,
        true,
        vec![ScriptStep::Drip(
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n".to_vec(),
            Duration::from_millis(100),
        )],
        DEADLINE,
    )
    .await;
    assert_eq!(unreachable(&p).0, "timeout");
    within(t, DEADLINE);
}

#[tokio::test]
async fn imap_silent_after_tls() {
    let (p, t, _s) = probe_case(ServiceKind::Imap, true, vec![ScriptStep::Stall], DEADLINE).await;
    assert_eq!(unreachable(&p).0, "timeout");
    within(t, DEADLINE);
}

#[tokio::test]
async fn managesieve_starttls_injection() {
    let (p, _, _s) = probe_case(
        ServiceKind::Managesieve,
        false,
        vec![
            send(PLAIN_SIEVE_CAPS),
            ScriptStep::ReadLine,
            send("OK \"go\"\r\n\"SASL\" \"PLAIN\"\r\nOK \"injected\"\r\n"),
            ScriptStep::StartTls,
            ScriptStep::Stall,
        ],
        DEADLINE,
    )
    .await;
    assert_eq!(unreachable(&p).0, "starttls-injection");
}

#[tokio::test]
async fn managesieve_without_starttls() {
    let (p, _, _s) = probe_case(
        ServiceKind::Managesieve,
        false,
        vec![
            send("\"SASL\" \"PLAIN\"\r\nOK \"hi\"\r\n"),
            ScriptStep::Stall,
        ],
        DEADLINE,
    )
    .await;
    let (kind, error) = unreachable(&p);
    assert_eq!(kind, "protocol");
    assert!(error.contains("STARTTLS"), "{error}");
}

#[tokio::test]
async fn imap_invalid_utf8() {
    let (p, _, _s) = probe_case(
        ServiceKind::Imap,
        true,
        vec![ScriptStep::Send(
            b"* OK [CAPABILITY IMAP4rev1 AUTH=\xff\xfe] \xc3\x28 hi\r\n".to_vec(),
        )],
        DEADLINE,
    )
    .await;
    // Either refused as a protocol error or kept without the invalid mechanism: never a
    // mechanism that is not a valid RFC 4422 name.
    match &p.status {
        ProbeStatus::Unreachable { kind, .. } => assert_eq!(*kind, "protocol"),
        ProbeStatus::Reachable { offered, .. } => match offered {
            pacc_proto::probe::Offered::Text(c) => {
                assert!(
                    c.mechanisms
                        .iter()
                        .all(|m| pacc_proto::probe::is_mechanism_name(m))
                )
            }
            other => panic!("{other:?}"),
        },
    }
}

#[tokio::test]
async fn imap_bogus_literal() {
    let (p, t, _s) = probe_case(
        ServiceKind::Imap,
        true,
        vec![
            send("* OK hi\r\n"),
            ScriptStep::ReadLine,
            send("* CAPABILITY {4294967295}\r\n"),
            ScriptStep::Stall,
        ],
        DEADLINE,
    )
    .await;
    protocol_or_timeout(&p);
    within(t, DEADLINE);
}

#[tokio::test]
async fn imap_too_many_lines() {
    let noise: String = std::iter::repeat_n("* OK noise\r\n", 300).collect();
    let (p, _, _s) = probe_case(
        ServiceKind::Imap,
        true,
        vec![send("* OK hi\r\n"), ScriptStep::ReadLine, send(&noise)],
        DEADLINE,
    )
    .await;
    let (kind, error) = unreachable(&p);
    assert_eq!(kind, "protocol");
    assert!(error.contains("too many lines"), "{error}");
}

#[tokio::test]
async fn imap_bye_greeting() {
    let (p, _, _s) = probe_case(
        ServiceKind::Imap,
        true,
        vec![send("* BYE go away\r\n")],
        DEADLINE,
    )
    .await;
    assert_eq!(unreachable(&p).0, "protocol");
}

#[tokio::test]
async fn smtp_greeting_is_not_220() {
    let (p, _, _s) = probe_case(
        ServiceKind::Submit,
        true,
        vec![send("554 no service\r\n")],
        DEADLINE,
    )
    .await;
    assert_eq!(unreachable(&p).0, "protocol");
}

#[tokio::test]
async fn pop3_err_greeting() {
    let (p, _, _s) = probe_case(
        ServiceKind::Pop3,
        true,
        vec![send("-ERR go away\r\n")],
        DEADLINE,
    )
    .await;
    assert_eq!(unreachable(&p).0, "protocol");
}

#[tokio::test]
async fn smtp_closes_after_greeting() {
    let (p, _, _s) = probe_case(
        ServiceKind::Submit,
        true,
        vec![send("220 hi\r\n"), ScriptStep::ReadLine, ScriptStep::Close],
        DEADLINE,
    )
    .await;
    let (kind, _) = unreachable(&p);
    assert!(kind == "protocol" || kind == "http-protocol", "{kind}");
}

// ------------------------------------------------------------------------------------------
// Credentials that cannot be sent (nothing reaches the server)
// ------------------------------------------------------------------------------------------

/// Sign in to one scripted service with `password` as `username`; returns the outcome and
/// what the server received.
async fn sign_in_case(
    kind: ServiceKind,
    script: Vec<ScriptStep>,
    username: &str,
    password: &str,
) -> (pacc::signin::ValidationOutcome, String) {
    let tb = testbed().await;
    let (key, port) = match kind {
        ServiceKind::Imap => ("imap", 993),
        ServiceKind::Pop3 => ("pop3", 995),
        ServiceKind::Submit => ("submit", 465),
        ServiceKind::Carddav => ("carddav", 443),
        other => panic!("{other:?}"),
    };
    let host = format!("{key}.creds.test");
    let s = ScriptedServer::start(&tb.ca, &[&host], port, true, CertKind::Valid, script)
        .await
        .unwrap();
    a(&tb, &host, s.addr().ip()).await;
    let endpoint = if kind == ServiceKind::Carddav {
        format!(r#"{{"url":"https://{host}/dav/"}}"#)
    } else {
        format!(r#"{{"host":"{host}"}}"#)
    };
    let cfg = Config::from_bytes(
        format!(r#"{{"protocols":{{"{key}":{endpoint}}},"authentication":{{"password":true}}}}"#)
            .as_bytes(),
    )
    .unwrap()
    .config;
    let mechanism = match kind {
        ServiceKind::Imap => "IMAP-LOGIN",
        ServiceKind::Pop3 => "USER",
        ServiceKind::Submit => "LOGIN",
        _ => "Basic",
    };
    let h = Domain::parse(&host).unwrap();
    let choice = Choice {
        service: kind,
        target: host.clone(),
        host: h.clone(),
        decision: Decision::Use(Method::Password {
            mechanism: mechanism.into(),
        }),
        fallback: None,
        no_token: None,
    };
    let request = ConfirmationRequest::new([h], "test".into(), Vec::new());
    let confirmed = request.accept_domains(&["creds.test".to_owned()]).unwrap();
    let c = client_at(&tb, tb.dns_addr(), DEADLINE);
    let creds = pacc::signin::Credentials {
        password: Some(Secret::new(password)),
        token: None,
    };
    let v = c
        .sign_in(&cfg, &[choice], username, &creds, &confirmed, c.deadline())
        .await;
    (v[0].outcome.clone(), s.received())
}

#[track_caller]
fn not_sent(outcome: &pacc::signin::ValidationOutcome, received: &str) {
    match outcome {
        pacc::signin::ValidationOutcome::NotSent { reason } => {
            assert!(reason.contains("nothing was sent"), "{reason}")
        }
        other => panic!("expected NotSent, got {other:?}"),
    }
    assert!(received.is_empty(), "the server received: {received:?}");
}

#[tokio::test]
async fn pop3_password_with_crlf_is_never_sent() {
    let (o, rx) = sign_in_case(
        ServiceKind::Pop3,
        vec![
            send("+OK hi\r\n"),
            ScriptStep::ReadLine,
            send("+OK\r\n"),
            ScriptStep::ReadLine,
            send("+OK\r\n"),
        ],
        "alice@creds.test",
        "pw\r\nDELE 1",
    )
    .await;
    not_sent(&o, &rx);
}

#[tokio::test]
async fn imap_login_with_crlf_is_never_sent() {
    let (o, rx) = sign_in_case(
        ServiceKind::Imap,
        vec![
            send("* OK [CAPABILITY IMAP4rev1] hi\r\n"),
            ScriptStep::ReadLine,
            send("a1 OK\r\n"),
        ],
        "alice@creds.test",
        "pw\"\r\na2 DELETE INBOX",
    )
    .await;
    not_sent(&o, &rx);
}

#[tokio::test]
async fn smtp_auth_login_with_nul_is_never_sent() {
    let (o, rx) = sign_in_case(
        ServiceKind::Submit,
        vec![
            send("220 hi\r\n"),
            ScriptStep::ReadLine,
            send("250 AUTH LOGIN\r\n"),
        ],
        "alice@creds.test",
        "pw\0admin",
    )
    .await;
    not_sent(&o, &rx);
}

#[tokio::test]
async fn http_basic_with_crlf_is_never_sent() {
    let (o, rx) = sign_in_case(
        ServiceKind::Carddav,
        vec![
            ScriptStep::ReadHead,
            send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        "alice@creds.test",
        "pw\r\nX-Injected: yes",
    )
    .await;
    not_sent(&o, &rx);
}

#[tokio::test]
async fn username_with_a_line_break_is_never_sent() {
    let (o, rx) = sign_in_case(
        ServiceKind::Pop3,
        vec![send("+OK hi\r\n"), ScriptStep::ReadLine],
        "alice@\r\ncreds.test",
        "pw",
    )
    .await;
    not_sent(&o, &rx);
}

#[test]
fn addresses_with_control_characters_are_refused_before_any_lookup() {
    for bad in [
        "alice@\r\nexample.com",
        "alice@example.com\n",
        "al\u{0}ice@example.com",
        "alice@ example.com",
    ] {
        assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
    }
}

// ------------------------------------------------------------------------------------------
// DIG-7 and the OAuth metadata error
// ------------------------------------------------------------------------------------------

/// DIG-7: a digest in non-canonical base64 (non-zero unused trailing bits) still verifies
/// the document, and `check` warns about it.
#[tokio::test]
async fn noncanonical_base64_digest_is_accepted_and_check_warns() {
    use pacc_proto::provider::check::{Verdict, check};
    let tb = testbed().await;
    let d = "noncanon.test";
    let _s = tb.serve_document(d, DOC).await.unwrap();
    let canonical = sha256_record(DOC);
    // The last base64 character before `=` carries two unused bits: set the lowest.
    let (head, tail) = canonical.split_at(canonical.len() - 1);
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let idx = alphabet.find(&head[head.len() - 1..]).unwrap();
    assert_eq!(idx & 3, 0);
    let odd = format!(
        "{}{}{tail}",
        &head[..head.len() - 1],
        &alphabet[idx | 1..=idx | 1]
    );
    assert_ne!(odd, canonical);
    tb.publish_txt(d, &odd).await.unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(5));
    let (r, _) = discover_timed(&c, d).await;
    assert!(
        r.outcome.is_ok(),
        "the client accepts it: {:?}",
        r.outcome.err()
    );
    let findings = check(&r, None, None);
    assert!(
        findings
            .iter()
            .any(|f| f.verdict == Verdict::Warn && f.message.contains("non-canonical base64")),
        "{findings:#?}"
    );
}

/// Both metadata URLs are tried (RFC 8414, then OpenID discovery) and the error names each
/// with its own failure, also when the first one used up the deadline.
#[tokio::test]
async fn oauth_metadata_errors_name_every_url_tried() {
    let tb = testbed().await;
    let _gone = tb
        .https_host(&["auth.gone.test"], Behaviour::new(Reply::status(404)))
        .await
        .unwrap();
    let c = client_at(&tb, tb.dns_addr(), Duration::from_secs(5));
    let e = c
        .oauth_metadata("https://auth.gone.test", c.deadline())
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("https://auth.gone.test/.well-known/oauth-authorization-server: ")
            && msg.contains("https://auth.gone.test/.well-known/openid-configuration: ")
            && msg.matches("HTTP 404").count() == 2,
        "{msg}"
    );
    let _drip = tb
        .https_host(&["auth.drip.test"], Behaviour::new(Reply::NeverAnswer))
        .await
        .unwrap();
    let started = Instant::now();
    let e = c
        .oauth_metadata(
            "https://auth.drip.test",
            c.deadline().min(std::time::Instant::now() + DEADLINE),
        )
        .await
        .unwrap_err();
    within(started.elapsed(), DEADLINE);
    let pacc::oauth::OAuthError::Fetch(attempts) = &e else {
        panic!("{e}")
    };
    assert_eq!(attempts.len(), 2, "{e}");
    assert!(attempts.iter().all(|a| a.error.kind() == "timeout"), "{e}");
    assert!(!e.to_string().contains("dns"), "not a DNS failure: {e}");
}
