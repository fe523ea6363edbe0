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
    let (_good, _bad) = match (good, bad) {
        (Ok(g), Ok(b)) => (g, b),
        (Err(e), _) | (_, Err(e)) => {
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
        "(exit codes: {code} for the verified provider, {tampered_code} for the tampered one; see `pacc --help`)"
    );
    if code == exit::OK && tampered_code == exit::INTEGRITY {
        exit::OK
    } else {
        exit::USAGE
    }
}
