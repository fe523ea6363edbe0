//! Integration tests against the testbed: real DNS (hickory-server), real TLS (rustls with a
//! CA generated at test time), real HTTP, all on 127.0.0.0/8.
#![allow(clippy::print_stderr)]

#[cfg(feature = "acme")]
mod acme;
mod discovery;
mod examples;
mod fallback;
mod fuzz_regressions;
mod hostile;
mod oauth;
mod probe;
mod provider;
mod signin;

use std::time::Duration;

use pacc::{Client, DnsConfig, Report, Timeouts};
use pacc_proto::discovery::DiscoveryError;
use pacc_proto::fetch::FailureClass;
use pacc_proto::name::EmailAddress;
use pacc_testbed::Testbed;
use pacc_testbed::peers::{Dovecot, Postfix};

pub(crate) async fn testbed() -> Testbed {
    Testbed::start()
        .await
        .expect("testbed (needs root to bind ports 53 and 443)")
}

/// The real mail peers most tests share: Dovecot for `imap.`, `pop.` and `sieve.example.test`,
/// Postfix (authenticating through that Dovecot) for `smtp.example.test` (each peer names
/// itself in the testbed DNS).
pub(crate) async fn mail_peers(tb: &Testbed) -> (Dovecot, Postfix) {
    let mail = [
        "imap.example.test",
        "pop.example.test",
        "sieve.example.test",
    ];
    let dovecot = Dovecot::start(tb, &mail).await.expect("dovecot");
    let postfix = Postfix::start(tb, "smtp.example.test", &dovecot)
        .await
        .expect("postfix");
    (dovecot, postfix)
}

pub(crate) fn client_with(tb: &Testbed, overall: Duration) -> Client {
    Client::builder()
        .dns(DnsConfig::Server(tb.dns_addr()))
        .add_trust_anchor(tb.ca.cert_der().clone())
        .timeouts(Timeouts::with_overall(overall))
        .build()
        .expect("client")
}

pub(crate) fn client(tb: &Testbed) -> Client {
    client_with(tb, Duration::from_secs(10))
}

pub(crate) async fn discover(c: &Client, address: &str) -> Report {
    c.discover(&EmailAddress::parse(address).unwrap()).await
}

/// Assert a failure of `kind` and `class`; return the message. A primary-path failure is
/// looked for behind a fallback that stopped because the domain has no MTA-STS at all.
#[track_caller]
pub(crate) fn assert_failure(r: &Report, kind: &str, class: FailureClass) -> String {
    match &r.outcome {
        Ok(v) => panic!("expected {kind}, got success via {}", v.url),
        Err(e) => {
            let e = match e {
                DiscoveryError::MxFallback { primary, failure }
                    if failure.kind() == "mta-sts-missing" =>
                {
                    primary
                }
                e => e,
            };
            assert_eq!(e.kind(), kind, "wrong kind: {e}");
            assert_eq!(e.class(), class, "wrong class for {kind}: {e}");
            e.to_string()
        }
    }
}
