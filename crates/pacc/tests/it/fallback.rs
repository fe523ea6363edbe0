//! The MX fallback gated on MTA-STS (MX-1 … MX-10), end to end over real DNS and TLS.

use std::time::{Duration, Instant};

use pacc_proto::discovery::{DiscoveryError, Method};
use pacc_proto::fetch::FailureClass;
use pacc_testbed::{Behaviour, CertKind, HttpsServer, Reply, Testbed};

use crate::{assert_failure, client, client_with, discover, testbed};

const HOSTED: &[u8] = br#"{"protocols":{"imap":{"host":"imap.hoster.test"},"submit":{"host":"smtp.hoster.test"}},"authentication":{"password":true},"info":{"provider":{"name":"Hoster"}}}"#;
const OWN: &[u8] = br#"{"protocols":{"imap":{"host":"imap.customer.test"}},"info":{"provider":{"name":"Customer's own"}}}"#;

/// `customer.test` hosted at `mx1.hoster.test` (and `mx2` when `two`), enforce policy.
async fn hosted(tb: &Testbed, two: bool) -> Vec<HttpsServer> {
    let mut keep = vec![
        tb.mta_sts(
            "customer.test",
            "20261130",
            &Testbed::enforce_policy(&["*.hoster.test"]),
        )
        .await
        .unwrap(),
    ];
    tb.dns
        .add_mx("customer.test", 10, "mx1.hoster.test")
        .await
        .unwrap();
    keep.push(tb.provider("mx1.hoster.test", HOSTED).await.unwrap());
    if two {
        tb.dns
            .add_mx("customer.test", 10, "mx2.hoster.test")
            .await
            .unwrap();
        keep.push(tb.provider("mx2.hoster.test", HOSTED).await.unwrap());
    }
    keep
}

/// An MTA-STS `enforce` policy for customer.test naming the hoster's MX hosts (MX-1).
async fn enforce_sts(tb: &Testbed) -> HttpsServer {
    tb.mta_sts(
        "customer.test",
        "1",
        &Testbed::enforce_policy(&["*.hoster.test"]),
    )
    .await
    .unwrap()
}

fn fallback_failure(r: &pacc::Report) -> (&'static str, &'static str) {
    match &r.outcome {
        Err(DiscoveryError::MxFallback { failure, .. }) => (failure.kind(), failure.step()),
        other => panic!(
            "expected a fallback failure, got {:?}",
            other.as_ref().map(|v| &v.url)
        ),
    }
}

#[tokio::test]
async fn one_mx_host_via_fallback() {
    let tb = testbed().await;
    let _k = hosted(&tb, false).await;
    let r = discover(&client(&tb), "alice@customer.test").await;
    let v = r.outcome.as_ref().expect("fallback succeeds");
    assert_eq!(v.method, Method::MxFallback);
    assert_eq!(v.bytes, HOSTED);
    assert_eq!(
        v.url,
        "https://ua-auto-config.mx1.hoster.test/.well-known/user-agent-configuration.json"
    );
    let mx = v.mx.as_ref().unwrap();
    assert_eq!(mx.policy_id, "20261130");
    assert_eq!(mx.hosts[0].mx_host.as_str(), "mx1.hoster.test");
    assert_eq!(mx.mx_domains()[0].as_str(), "hoster.test");
    let fb = r.fallback.as_ref().unwrap();
    assert!(fb.used);
    assert_eq!(
        fb.policy.as_ref().unwrap().mx[0].to_string(),
        "*.hoster.test"
    );
}

#[tokio::test]
async fn two_identical_hosts_succeed_one_byte_differs_fails_worse_preference_ignored() {
    let tb = testbed().await;
    let _k = hosted(&tb, true).await;
    // A worse-preference host with different bytes is never consulted.
    let _backup = tb
        .provider("backup.hoster.test", b"{\"other\":1}")
        .await
        .unwrap();
    tb.dns
        .add_mx("customer.test", 20, "backup.hoster.test")
        .await
        .unwrap();
    let r = discover(&client(&tb), "a@customer.test").await;
    let v = r.outcome.as_ref().expect("identical bytes accepted");
    assert_eq!(v.mx.as_ref().unwrap().hosts.len(), 2);
    assert_eq!(
        _backup
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    let tb = testbed().await;
    let _k = hosted(&tb, false).await;
    let mut other = HOSTED.to_vec();
    let last = other.len() - 2;
    other[last] = b' ';
    tb.dns
        .add_mx("customer.test", 10, "mx2.hoster.test")
        .await
        .unwrap();
    let _mx2 = tb.provider("mx2.hoster.test", &other).await.unwrap();
    let r = discover(&client(&tb), "a@customer.test").await;
    assert_eq!(fallback_failure(&r), ("mx-configs-differ", "comparison"));
    assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Integrity);
}

async fn sts_case(setup: impl AsyncFnOnce(&Testbed) -> Vec<HttpsServer>) -> pacc::Report {
    let tb = testbed().await;
    tb.dns
        .add_mx("customer.test", 10, "mx1.hoster.test")
        .await
        .unwrap();
    let _p = tb.provider("mx1.hoster.test", HOSTED).await.unwrap();
    let _s = setup(&tb).await;
    discover(&client(&tb), "a@customer.test").await
}

#[tokio::test]
async fn mta_sts_missing() {
    let r = sts_case(async |_| Vec::new()).await;
    assert_eq!(fallback_failure(&r), ("mta-sts-missing", "mta-sts"));
    assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Absent);
}

#[tokio::test]
async fn mta_sts_testing_and_none_are_not_enough() {
    for mode in ["testing", "none"] {
        let r = sts_case(async |tb| {
            let p = Testbed::enforce_policy(&["*.hoster.test"]).replace("enforce", mode);
            vec![tb.mta_sts("customer.test", "1", &p).await.unwrap()]
        })
        .await;
        assert_eq!(fallback_failure(&r).0, "mta-sts-not-enforcing", "{mode}");
        assert!(r.outcome.unwrap_err().to_string().contains(mode));
    }
}

#[tokio::test]
async fn mta_sts_record_without_policy_file() {
    let r = sts_case(async |tb| {
        tb.dns
            .add_txt("_mta-sts.customer.test", &[b"v=STSv1; id=1;"])
            .await
            .unwrap();
        vec![
            tb.https_host(
                &["mta-sts.customer.test"],
                Behaviour::new(Reply::status(404)),
            )
            .await
            .unwrap(),
        ]
    })
    .await;
    assert_eq!(fallback_failure(&r), ("mta-sts-policy-fetch", "mta-sts"));
    assert!(r.outcome.unwrap_err().to_string().contains("404"));
}

#[tokio::test]
async fn policy_without_the_mx_host() {
    let r = sts_case(async |tb| {
        vec![
            tb.mta_sts(
                "customer.test",
                "1",
                &Testbed::enforce_policy(&["mx.elsewhere.test"]),
            )
            .await
            .unwrap(),
        ]
    })
    .await;
    assert_eq!(fallback_failure(&r), ("mx-not-authorized", "authorization"));
    assert!(
        r.outcome
            .unwrap_err()
            .to_string()
            .contains("mx1.hoster.test")
    );
}

#[tokio::test]
async fn two_sts_records() {
    let r = sts_case(async |tb| {
        let s = enforce_sts(tb).await;
        tb.dns
            .add_txt("_mta-sts.customer.test", &[b"v=STSv1; id=2;"])
            .await
            .unwrap();
        vec![s]
    })
    .await;
    assert_eq!(fallback_failure(&r), ("mta-sts-ambiguous", "mta-sts"));
}

#[tokio::test]
async fn policy_behind_a_redirect() {
    let r = sts_case(async |tb| {
        tb.dns
            .add_txt("_mta-sts.customer.test", &[b"v=STSv1; id=1;"])
            .await
            .unwrap();
        let target = tb
            .mta_sts(
                "elsewhere.test",
                "1",
                &Testbed::enforce_policy(&["*.hoster.test"]),
            )
            .await
            .unwrap();
        let redirect = tb
            .https_host(
                &["mta-sts.customer.test"],
                Behaviour::new(Reply::Redirect {
                    status: 301,
                    location: "https://mta-sts.elsewhere.test/.well-known/mta-sts.txt".into(),
                }),
            )
            .await
            .unwrap();
        vec![target, redirect]
    })
    .await;
    assert_eq!(fallback_failure(&r), ("mta-sts-policy-fetch", "mta-sts"));
    assert!(r.outcome.unwrap_err().to_string().contains("not followed"));
}

#[tokio::test]
async fn policy_with_an_invalid_certificate() {
    let r = sts_case(async |tb| {
        tb.dns
            .add_txt("_mta-sts.customer.test", &[b"v=STSv1; id=1;"])
            .await
            .unwrap();
        let mut b = Behaviour::new(Reply::Body {
            status: 200,
            body: Testbed::enforce_policy(&["*.hoster.test"])
                .into_bytes()
                .into(),
            headers: vec![],
        });
        b.cert = CertKind::UntrustedCa;
        vec![tb.https_host(&["mta-sts.customer.test"], b).await.unwrap()]
    })
    .await;
    assert_eq!(fallback_failure(&r), ("mta-sts-policy-fetch", "mta-sts"));
    assert_eq!(r.outcome.unwrap_err().class(), FailureClass::Integrity);
}

#[tokio::test]
async fn primary_integrity_failure_does_not_fall_back() {
    let tb = testbed().await;
    let _k = hosted(&tb, false).await;
    let _own = tb.serve_document("customer.test", OWN).await.unwrap();
    tb.publish_txt("customer.test", &pacc_testbed::sha256_record(b"stale"))
        .await
        .unwrap();
    let r = discover(&client(&tb), "a@customer.test").await;
    assert_failure(&r, "digest-mismatch", FailureClass::Integrity);
    assert!(r.fallback.as_ref().is_none_or(|f| !f.used));
}

#[tokio::test]
async fn a_valid_primary_wins() {
    let tb = testbed().await;
    let _k = hosted(&tb, false).await;
    let _own = tb.provider("customer.test", OWN).await.unwrap();
    let r = discover(&client(&tb), "a@customer.test").await;
    let v = r.outcome.expect("primary");
    assert_eq!(v.method, Method::WellKnown);
    assert_eq!(v.bytes, OWN);
}

#[tokio::test]
async fn null_mx_no_mx_and_host_digest_mismatch() {
    let tb = testbed().await;
    let _s = enforce_sts(&tb).await;
    let r = discover(&client(&tb), "a@customer.test").await;
    assert_eq!(fallback_failure(&r), ("no-mx", "mx"));
    tb.dns.add_mx("customer.test", 0, ".").await.unwrap();
    let r = discover(&client(&tb), "a@customer.test").await;
    assert_eq!(fallback_failure(&r), ("null-mx", "mx"));

    let tb = testbed().await;
    let _s = enforce_sts(&tb).await;
    tb.dns
        .add_mx("customer.test", 10, "mx1.hoster.test")
        .await
        .unwrap();
    let _h = tb.serve_document("mx1.hoster.test", HOSTED).await.unwrap();
    tb.publish_txt("mx1.hoster.test", &pacc_testbed::sha256_record(b"old"))
        .await
        .unwrap();
    let r = discover(&client(&tb), "a@customer.test").await;
    assert_eq!(fallback_failure(&r), ("mx-host-failed", "retrieval"));
    let e = r.outcome.unwrap_err();
    assert_eq!(e.class(), FailureClass::Integrity);
    assert!(e.to_string().contains("mx1.hoster.test"), "{e}");
}

#[tokio::test]
async fn a_slow_absent_primary_still_ends_within_the_deadline() {
    let tb = testbed().await;
    let _k = hosted(&tb, false).await;
    let mut slow = Behaviour::new(Reply::status(404));
    slow.delay = Duration::from_millis(1500);
    let _p = tb
        .https_host(&["ua-auto-config.customer.test"], slow)
        .await
        .unwrap();
    let deadline = Duration::from_secs(4);
    let started = Instant::now();
    let r = discover(&client_with(&tb, deadline), "a@customer.test").await;
    let took = started.elapsed();
    assert_eq!(
        r.outcome
            .as_ref()
            .expect("fallback after a slow 404")
            .method,
        Method::MxFallback
    );
    assert!(
        took >= Duration::from_millis(1500) && took < deadline,
        "{took:?}"
    );

    // A primary that never answers is temporary, not absent: no fallback, and on time.
    let tb = testbed().await;
    let _k = hosted(&tb, false).await;
    let _p = tb
        .https_host(
            &["ua-auto-config.customer.test"],
            Behaviour::new(Reply::NeverAnswer),
        )
        .await
        .unwrap();
    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    let r = discover(&client_with(&tb, deadline), "a@customer.test").await;
    assert!(started.elapsed() < deadline + Duration::from_millis(750));
    assert_failure(&r, "timeout", FailureClass::Temporary);
}
