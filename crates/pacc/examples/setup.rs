//! A whole setup with pacc's session API, as a mail app would run it: discover, probe and
//! plan; show the confirmation; sign in; keep the account.
//!
//! ```text
//! PACC_PASSWORD=… setup ADDRESS [--dns IP:PORT] [--ca-file PEM] [--yes] [--cancel-after-ms N]
//! ```
//!
//! Without `--yes` it asks on the terminal. `--cancel-after-ms` cancels the session from
//! another task after that long (to see what cancelling does). The test
//! `tests/it/examples.rs` runs it against the testbed's real peers.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use pacc::setup::{Answer, Authorization, Event, SetupError, SetupOptions, SetupSession};
use pacc::{Client, DnsConfig};
use pacc_proto::auth::Secret;
use pacc_proto::name::EmailAddress;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let address = EmailAddress::parse(
        args.get(1)
            .ok_or("usage: setup ADDRESS [--dns IP:PORT] [--ca-file PEM] [--yes]")?,
    )?;

    // One client per app: DNS, trust anchors (the system's, plus any given) and deadlines.
    let mut builder = Client::builder();
    if let Some(dns) = flag("--dns") {
        builder = builder.dns(DnsConfig::Server(dns.parse()?));
    }
    if let Some(pem) = flag("--ca-file") {
        builder = builder.add_trust_anchors_pem_file(std::path::Path::new(&pem))?;
    }
    let client = Arc::new(builder.build()?);

    // A session, and its events: show progress however the app likes.
    let (session, mut events) = SetupSession::new(client, address.clone(), SetupOptions::default());
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Event::Discovered { url, .. } => println!("event discovered {url}"),
                Event::Probed { probe } => println!("event probed {}", probe.service),
                Event::OpenUrl { url, .. } => println!("open this URL to sign in: {url}"),
                Event::SignedIn { validation } => {
                    println!(
                        "event signed-in {} ok={}",
                        validation.service,
                        validation.is_ok()
                    )
                }
                _ => {}
            }
        }
    });
    if let Some(ms) = flag("--cancel-after-ms") {
        let cancel = session.cancel_handle();
        let ms: u64 = ms.parse()?;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            cancel.cancel();
        });
    }

    // 1. Discover, probe, plan. Nothing secret is sent.
    let prepared = match session.prepare().await {
        Ok(p) => p,
        Err(SetupError::Discovery(report)) => {
            let e = report.outcome.as_ref().err().ok_or("no error")?;
            println!("not verified: {} ({:?}): {e}", e.kind(), e.class());
            std::process::exit(1);
        }
        Err(e) => {
            println!("stopped: {e}");
            std::process::exit(2);
        }
    };
    let Some(request) = prepared.confirmation() else {
        println!("no service can be signed in to");
        std::process::exit(1);
    };

    // 2. Show every host that would receive the password, and ask (SEC-1).
    print!("{}", request.display());
    let answer = if args.iter().any(|a| a == "--yes") {
        Answer::Yes
    } else {
        println!("Sign in to these servers? [y/N]");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() == "y" {
            Answer::Yes
        } else {
            Answer::No
        }
    };
    let mut confirmed = match prepared.confirm(answer) {
        Ok(c) => c,
        Err(refused) => {
            println!("not confirmed: {}", refused.error);
            std::process::exit(7);
        }
    };

    // 3. OAuth where the provider offers it (the URL arrives as an event), then the
    //    password for the services that need it, then sign in.
    if confirmed.uses_oauth() {
        confirmed
            .authorize(Authorization::Browser {
                wait: Duration::from_secs(300),
            })
            .await?;
    }
    let password = if confirmed.needs_password() {
        Some(Secret::new(std::env::var("PACC_PASSWORD")?))
    } else {
        None
    };
    let finished = confirmed.sign_in(password).await?;
    for v in finished.validations() {
        println!("{} {} {:?}", v.service, v.target, v.outcome);
    }
    for a in finished.accounts() {
        println!("account {} as {}", a.service, a.username);
    }
    let ok = finished.is_ok();
    // The event stream ends with the session: every event is printed before the verdict.
    drop(finished);
    printer.await?;
    println!("ok={ok}");
    Ok(())
}
