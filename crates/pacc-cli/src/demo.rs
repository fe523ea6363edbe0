//! `pacc demo`: the whole flow against in-process testbed servers, offline: discover,
//! probe, the confirmation screen, sign-in with a password and with OAuth, the MX fallback
//! of a hosted domain, a tampered document. `--keep` leaves it running for manual tries.

use std::sync::Arc;
use std::time::Duration;

use pacc::setup::{Answer, Event, SetupOptions, SetupSession};
use pacc::{Client, DnsConfig, Timeouts};
use pacc_proto::auth::Secret;
use pacc_proto::auth::select::AuthPolicy;
use pacc_proto::name::EmailAddress;
use pacc_testbed::{Behaviour, HttpsServer, Reply, Testbed, full, sha256_record};

use crate::{OutputArgs, exit, init_logging, report_error, run_discovery};

const DOMAIN: &str = "example.test";
const NAME: &str = "Example Demo Mail";
/// The demo servers accept any password; this one is shown.
const PASSWORD: &str = "demo-password";

#[allow(clippy::print_stdout)]
fn say(s: &str) {
    println!("{s}");
}

/// One `$ pacc …` heading.
fn command(line: &str) {
    say("");
    say(&format!("$ {line}"));
    say("");
}

/// The demo's authorization server.
const ISSUER: &str = "https://auth.example.test";

/// Start everything; the servers live as long as the returned values.
async fn start() -> Result<(Testbed, HttpsServer, Vec<Box<dyn std::any::Any>>), String> {
    let tb = Testbed::start()
        .await
        .map_err(|e| format!("cannot start the local testbed: {e}"))?;
    let err = |e: pacc_testbed::TestbedError| format!("cannot start the demo provider: {e}");
    // A tiny in-process authorization server: metadata, registration, an authorization
    // endpoint where the "user" always consents, a token endpoint.
    let auth = tb
        .https_host(
            &["auth.example.test"],
            Behaviour::new(Reply::DemoAuthorizationServer {
                issuer: ISSUER.to_owned(),
            }),
        )
        .await
        .map_err(err)?;
    let issuer = Some(ISSUER.to_owned());
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    keep.push(Box::new(
        full::Provider::start(&tb, DOMAIN, NAME, issuer.as_deref())
            .await
            .map_err(err)?,
    ));
    let document = full::document(DOMAIN, NAME, issuer.as_deref());
    // A provider whose served bytes were altered after the digest was published.
    let tampered = document.replace("imap.example.test", "imap.attacker.example");
    keep.push(Box::new(
        tb.serve_document("tampered.example", tampered.as_bytes())
            .await
            .map_err(err)?,
    ));
    tb.publish_txt("tampered.example", &sha256_record(document.as_bytes()))
        .await
        .map_err(err)?;
    // A customer domain hosted by the provider: no PACC of its own, an enforcing MTA-STS
    // policy, and MX hosts that publish the provider's configuration.
    let policy = Testbed::enforce_policy(&["*.example.test"]);
    keep.push(Box::new(
        tb.mta_sts("customer.example", "2026113001", &policy)
            .await
            .map_err(err)?,
    ));
    for mx in ["mx1.example.test", "mx2.example.test"] {
        tb.dns
            .add_mx("customer.example", 10, mx)
            .await
            .map_err(err)?;
        keep.push(Box::new(
            tb.provider(mx, document.as_bytes()).await.map_err(err)?,
        ));
    }
    Ok((tb, auth, keep))
}

pub async fn run(verbose: u8, keep_running: bool) -> u8 {
    init_logging(verbose);
    let (tb, auth, _servers) = match start().await {
        Ok(s) => s,
        Err(e) => return report_error(&e),
    };
    let client = match Client::builder()
        .dns(DnsConfig::Server(tb.dns_addr()))
        .add_trust_anchor(tb.ca.cert_der().clone())
        .timeouts(Timeouts::with_overall(Duration::from_secs(10)))
        .build()
    {
        Ok(c) => Arc::new(c),
        Err(e) => return report_error(&e.to_string()),
    };
    let out = OutputArgs {
        json: false,
        verbose,
    };
    let flags = format!(
        "--dns {} --ca-file {}",
        tb.dns_addr(),
        tb.ca_file().display()
    );
    say("pacc demo: a local provider on loopback, no network needed.");
    say(&format!(
        "  DNS server {} (authoritative for every name in this demo), a certificate",
        tb.dns_addr()
    ));
    say("  authority made just now and trusted only by this run, HTTPS (TLS 1.3), scripted");
    say("  IMAP, POP3, submission and ManageSieve servers, JMAP and DAV hosts.");
    say(&format!(
        "  OAuth: a small authorization server at {ISSUER} ({})",
        auth.addr()
    ));

    let Ok(alice) = EmailAddress::parse("alice@example.test") else {
        return exit::USAGE;
    };
    command("pacc discover alice@example.test");
    let discovered = run_discovery(&client, &alice, &out).await;
    command("pacc probe alice@example.test");
    let probed = crate::probe_cmd::run(&client, &alice, &out).await;

    command("pacc setup alice@example.test --auth password");
    let password = setup(&client, &alice, AuthPolicy::Password, None).await;
    command("pacc setup alice@example.test --auth oauth");
    let oauth = setup(&client, &alice, AuthPolicy::Oauth, Some((&auth, &tb))).await;

    say("");
    say(
        "A customer domain hosted by that provider, with no PACC document of its own (MX fallback):",
    );
    command("pacc discover carol@customer.example");
    let Ok(carol) = EmailAddress::parse("carol@customer.example") else {
        return exit::USAGE;
    };
    let hosted = run_discovery(&client, &carol, &out).await;
    say("");
    say("Now a provider whose document was changed after its DNS digest was published:");
    command("pacc discover bob@tampered.example");
    let Ok(bob) = EmailAddress::parse("bob@tampered.example") else {
        return exit::USAGE;
    };
    let tampered = run_discovery(&client, &bob, &out).await;
    say("");
    say(&format!(
        "(exit codes: discover {discovered}, probe {probed}, setup {password} with the password and {oauth} with OAuth, hosted {hosted}, tampered {tampered}; see `pacc --help`)"
    ));
    let ok = discovered == exit::OK
        && probed == exit::OK
        && password == exit::OK
        && oauth == exit::OK
        && hosted == exit::OK
        && tampered == exit::INTEGRITY;
    if keep_running {
        say("");
        say("The demo provider keeps running. Try any command against it, e.g.:");
        say(&format!("  pacc discover alice@example.test {flags}"));
        say(&format!("  pacc probe alice@example.test {flags}"));
        say(&format!(
            "  pacc setup alice@example.test {flags} --no-save    (any password works; it is never stored)"
        ));
        say(&format!("  pacc check example.test {flags}"));
        say(&format!("  pacc rpc {flags}"));
        say("Press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    if ok { exit::OK } else { exit::USAGE }
}

/// One setup through the library's session, showing the confirmation screen; the demo
/// answers yes. With `auth`, the demo plays the user's browser: it signs in at the
/// authorization server as a test user.
async fn setup(
    client: &Arc<Client>,
    address: &EmailAddress,
    policy: AuthPolicy,
    auth: Option<(&HttpsServer, &Testbed)>,
) -> u8 {
    let data = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => return report_error(&e),
    };
    let options = SetupOptions {
        policy,
        clients: pacc::oauth::ClientStore::at(data.join("clients.json")),
        ..SetupOptions::default()
    };
    let (session, mut events) = SetupSession::new(client.clone(), address.clone(), options);
    let prepared = match session.prepare().await {
        Ok(p) => p,
        Err(e) => return report_error(&e.to_string()),
    };
    let Some(request) = prepared.confirmation() else {
        return report_error("no service can be signed in to");
    };
    crate::output::print_human(&request.display());
    say("Sign in to these servers? [y/N] y    (the demo answers)");
    let mut confirmed = match prepared.confirm(Answer::Yes) {
        Ok(c) => c,
        Err(r) => return report_error(&r.error.to_string()),
    };
    if let (true, Some((a, tb))) = (confirmed.uses_oauth(), auth) {
        let as_addr = a.addr();
        let ca = tb.ca.cert_der().clone();
        let browser = async move {
            // The authorization URL arrives as an event; the demo's "browser" follows it.
            while let Some(e) = events.next().await {
                if let Event::OpenUrl { url, .. } = e {
                    say(&format!("Open this URL in a browser to sign in:\n{url}"));
                    say("(the demo's browser signs in and consents)");
                    let _ =
                        pacc_testbed::browser::authorize(&url, as_addr, &ca, "alice", "demo").await;
                    break;
                }
            }
        };
        let (authorized, ()) = tokio::join!(
            confirmed.authorize(pacc::setup::Authorization::Browser {
                wait: Duration::from_secs(30),
            }),
            browser
        );
        if let Err(e) = authorized {
            return report_error(&e.to_string());
        }
    }
    let password = confirmed
        .needs_password()
        .then(|| Secret::new(PASSWORD.to_owned()));
    let finished = match confirmed.sign_in(password).await {
        Ok(f) => f,
        Err(e) => return report_error(&e.to_string()),
    };
    say("");
    crate::setup_cmd::print_human(
        address,
        finished.prepared().config(),
        finished.choices(),
        finished.validations(),
        finished.fallbacks(),
    );
    if finished.validations().iter().all(|v| v.is_ok()) && !finished.validations().is_empty() {
        exit::OK
    } else {
        exit::SIGN_IN_FAILED
    }
}

/// A private directory for the demo's OAuth client registrations.
fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("pacc-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}
