//! `pacc demo`: the whole discovery against an in-process testbed provider, offline.

use std::time::Duration;

use pacc::{Client, DnsConfig, Timeouts};
use pacc_proto::name::EmailAddress;
use pacc_testbed::{Testbed, sha256_record};

use crate::{OutputArgs, exit, init_logging, report_error, run_discovery};

/// The demo provider's document: every service PACC defines, OAuth and passwords.
const DEMO_DOCUMENT: &str = r#"{"protocols":{"jmap":{"url":"https://jmap.example.test/session"},"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"},"submit":{"host":"smtp.example.test"},"caldav":{"url":"https://dav.example.net/calendars/"},"carddav":{"url":"https://dav.example.net/contacts/"},"webdav":{"url":"https://dav.example.net/files/"},"managesieve":{"host":"sieve.example.test"}},"authentication":{"oauth-public":{"issuer":"https://auth.example.test/"},"password":true},"info":{"provider":{"name":"Example Demo Mail","shortName":"Demo"},"help":{"documentation":"https://help.example.test/setup"}}}"#;

#[allow(clippy::print_stdout)]
pub async fn run(verbose: u8) -> u8 {
    init_logging(verbose);
    let tb = match Testbed::start().await {
        Ok(tb) => tb,
        Err(e) => return report_error(&format!("cannot start the local testbed: {e}")),
    };
    let good = tb.provider("example.test", DEMO_DOCUMENT.as_bytes()).await;
    // A second provider whose served bytes were altered after the digest was published.
    let tampered = DEMO_DOCUMENT.replace("imap.example.test", "imap.attacker.example");
    let bad = async {
        let s = tb
            .serve_document("tampered.example", tampered.as_bytes())
            .await?;
        tb.publish_txt("tampered.example", &sha256_record(DEMO_DOCUMENT.as_bytes()))
            .await?;
        Ok::<_, pacc_testbed::TestbedError>(s)
    }
    .await;
    // A customer domain hosted by the demo provider: no PACC of its own, an enforcing
    // MTA-STS policy, and MX hosts that publish the provider's configuration.
    let hosted = async {
        let policy = Testbed::enforce_policy(&["*.example.test"]);
        let sts = tb
            .mta_sts("customer.example", "2026113001", &policy)
            .await?;
        tb.dns
            .add_mx("customer.example", 10, "mx1.example.test")
            .await?;
        tb.dns
            .add_mx("customer.example", 10, "mx2.example.test")
            .await?;
        let mx1 = tb
            .provider("mx1.example.test", DEMO_DOCUMENT.as_bytes())
            .await?;
        let mx2 = tb
            .provider("mx2.example.test", DEMO_DOCUMENT.as_bytes())
            .await?;
        Ok::<_, pacc_testbed::TestbedError>([sts, mx1, mx2])
    }
    .await;
    let (_good, _bad, _hosted) = match (good, bad, hosted) {
        (Ok(g), Ok(b), Ok(h)) => (g, b, h),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return report_error(&format!("cannot start the demo provider: {e}"));
        }
    };
    let client = match Client::builder()
        .dns(DnsConfig::Server(tb.dns_addr()))
        .add_trust_anchor(tb.ca.cert_der().clone())
        .timeouts(Timeouts::with_overall(Duration::from_secs(10)))
        .build()
    {
        Ok(c) => c,
        Err(e) => return report_error(&e.to_string()),
    };
    let out = OutputArgs {
        json: false,
        verbose,
    };

    println!("pacc demo: a local provider on loopback, no network needed.");
    println!(
        "  DNS server {}  (authoritative for every name in this demo)",
        tb.dns_addr()
    );
    println!("  a certificate authority created just now, trusted only by this run");
    println!(
        "  HTTPS (TLS 1.3) for ua-auto-config.example.test and ua-auto-config.tampered.example"
    );
    println!();
    println!("$ pacc discover alice@example.test");
    println!();
    let Ok(alice) = EmailAddress::parse("alice@example.test") else {
        return exit::USAGE;
    };
    let code = run_discovery(&client, &alice, &out).await;
    println!();
    println!(
        "A customer domain hosted by that provider, with no PACC document of its own (MX fallback):"
    );
    println!();
    println!("$ pacc discover carol@customer.example");
    println!();
    let Ok(carol) = EmailAddress::parse("carol@customer.example") else {
        return exit::USAGE;
    };
    let hosted_code = run_discovery(&client, &carol, &out).await;
    println!();
    println!("Now a provider whose document was changed after its DNS digest was published:");
    println!();
    println!("$ pacc discover bob@tampered.example");
    println!();
    let Ok(bob) = EmailAddress::parse("bob@tampered.example") else {
        return exit::USAGE;
    };
    let tampered_code = run_discovery(&client, &bob, &out).await;
    println!();
    println!(
        "(exit codes: {code} for the provider, {hosted_code} for the hosted domain, {tampered_code} for the tampered one; see `pacc --help`)"
    );
    if code == exit::OK && hosted_code == exit::OK && tampered_code == exit::INTEGRITY {
        exit::OK
    } else {
        exit::USAGE
    }
}
