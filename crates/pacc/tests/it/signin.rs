//! Signing in with a password against real Dovecot, Postfix, Radicale and Cyrus (§2.9).

use std::net::IpAddr;
use std::time::Duration;

use pacc::signin::{Credentials, ValidationOutcome};
use pacc_proto::auth::Secret;
use pacc_proto::auth::gate::ConfirmationRequest;
use pacc_proto::auth::login::FailureClass;
use pacc_proto::auth::select::{AuthPolicy, Decision, Method, OAuth, choose};
use pacc_proto::document::{Config, ServiceKind};
use pacc_proto::name::Domain;
use pacc_testbed::Testbed;
use pacc_testbed::peers::{self, Cyrus, Dovecot, Postfix, Radicale};

use crate::{client_with, testbed};

struct Peers {
    tb: Testbed,
    dovecot: Dovecot,
    _postfix: Postfix,
    _radicale: Radicale,
    _cyrus: Cyrus,
    config: Config,
}

async fn peers() -> Option<Peers> {
    if !["dovecot", "postfix", "radicale", peers::CYRUS_MASTER]
        .iter()
        .all(|p| peers::available(p))
    {
        eprintln!(
            "SKIPPED: sign-in tests need dovecot, postfix, radicale and cyrus (.ci/run installs them)"
        );
        return None;
    }
    let tb = testbed().await;
    let (dovecot, postfix) = crate::mail_peers(&tb).await;
    let radicale = Radicale::start(&tb, &["dav.example.test"])
        .await
        .expect("radicale");
    let cyrus = Cyrus::start(&tb, &["jmap.example.test"])
        .await
        .expect("cyrus");
    let config = Config::from_bytes(
        br#"{"protocols":{"jmap":{"url":"https://jmap.example.test/jmap"},"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"},"submit":{"host":"smtp.example.test"},"managesieve":{"host":"sieve.example.test"},"caldav":{"url":"https://dav.example.test/alice@example.test/"},"carddav":{"url":"https://dav.example.test/alice@example.test/"}},"authentication":{"password":true},"info":{"provider":{"name":"Peers"}}}"#,
    )
    .unwrap()
    .config;
    let _ = IpAddr::from([127, 0, 0, 1]);
    Some(Peers {
        tb,
        dovecot,
        _postfix: postfix,
        _radicale: radicale,
        _cyrus: cyrus,
        config,
    })
}

#[tokio::test]
async fn password_setup_of_every_service_and_wrong_passwords() {
    let Some(p) = peers().await else { return };
    let client = client_with(&p.tb, Duration::from_secs(30));
    let probes = client.probe(&p.config, client.deadline(), &|_| {}).await;
    let choices = choose(&p.config, &probes, OAuth::NoIssuer, AuthPolicy::Auto);
    assert!(
        choices
            .iter()
            .all(|c| matches!(c.decision, Decision::Use(Method::Password { .. }))),
        "{choices:#?}"
    );
    let request = ConfirmationRequest::new(
        choices.iter().map(|c| c.host.clone()),
        "test".into(),
        vec![],
    );
    let confirmed = request
        .accept_domains(&["example.test".into()])
        .expect("exactly the domains shown");

    let good = Credentials {
        password: Some(Secret::new("alice-secret")),
        token: None,
    };
    let results = client
        .sign_in(
            &p.config,
            &choices,
            "alice@example.test",
            &good,
            &confirmed,
            client.deadline(),
        )
        .await;
    assert_eq!(results.len(), 7);
    for v in &results {
        assert_eq!(
            v.outcome,
            ValidationOutcome::Ok,
            "{:?} {}: {:?}",
            v.service,
            v.target,
            v.outcome
        );
    }
    let mech = |k: ServiceKind| match &results.iter().find(|v| v.service == k).unwrap().method {
        Method::Password { mechanism } => mechanism.clone(),
        m => panic!("{m:?}"),
    };
    assert_eq!(mech(ServiceKind::Imap), "PLAIN");
    assert_eq!(mech(ServiceKind::Caldav), "Basic");

    // Wrong password: the credentials class everywhere, and exactly one attempt per service.
    let bad = Credentials {
        password: Some(Secret::new("wrong")),
        token: None,
    };
    let results = client
        .sign_in(
            &p.config,
            &choices,
            "bob@example.test",
            &bad,
            &confirmed,
            client.deadline(),
        )
        .await;
    for v in &results {
        assert!(
            matches!(
                &v.outcome,
                ValidationOutcome::Failed {
                    class: FailureClass::Credentials,
                    ..
                }
            ),
            "{:?}: {:?}",
            v.service,
            v.outcome
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = std::fs::read_to_string(p.dovecot.dir().join("dovecot.log")).unwrap_or_default();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("bob@example.test") && l.contains("auth failed"))
        .collect();
    for proto in ["imap-login", "pop3-login", "managesieve-login"] {
        let lines: Vec<&&str> = failed.iter().filter(|l| l.contains(proto)).collect();
        assert_eq!(lines.len(), 1, "{proto}: one failed session:\n{log}");
        assert!(
            lines[0].contains("1 attempts"),
            "{proto}: no automatic retry: {}",
            lines[0]
        );
    }
    assert!(
        !log.contains("wrong"),
        "the password never appears in the server log"
    );
}

#[tokio::test]
async fn nothing_is_sent_to_unconfirmed_hosts_or_without_confirmation() {
    let Some(p) = peers().await else { return };
    let client = client_with(&p.tb, Duration::from_secs(20));
    let probes = client.probe(&p.config, client.deadline(), &|_| {}).await;
    let choices = choose(&p.config, &probes, OAuth::NoIssuer, AuthPolicy::Auto);
    let request = ConfirmationRequest::new(
        choices.iter().map(|c| c.host.clone()),
        "test".into(),
        vec![],
    );
    assert!(
        request.accept_domains(&["example.com".into()]).is_err(),
        "--accept-domains must match"
    );
    // A confirmation for a different host set does not cover these hosts.
    let other = ConfirmationRequest::new(
        [Domain::parse("imap.example.test").unwrap()],
        "test".into(),
        vec![],
    );
    let confirmed = other.confirm(true).unwrap();
    let creds = Credentials {
        password: Some(Secret::new("alice-secret")),
        token: None,
    };
    let results = client
        .sign_in(
            &p.config,
            &choices,
            "alice@example.test",
            &creds,
            &confirmed,
            client.deadline(),
        )
        .await;
    for v in &results {
        if v.service == ServiceKind::Imap {
            assert_eq!(v.outcome, ValidationOutcome::Ok);
        } else {
            assert!(
                matches!(v.outcome, ValidationOutcome::NotSent { .. }),
                "{:?}: {:?}",
                v.service,
                v.outcome
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(p.dovecot.dir().join("dovecot.log")).unwrap_or_default();
    assert!(
        !log.contains("pop3-login: Login") && !log.contains("managesieve-login: Login"),
        "{log}"
    );
}

#[tokio::test]
async fn an_unadvertised_mechanism_is_a_mechanism_failure() {
    let Some(p) = peers().await else { return };
    let client = client_with(&p.tb, Duration::from_secs(20));
    let probes = client.probe(&p.config, client.deadline(), &|_| {}).await;
    let mut choices = choose(&p.config, &probes, OAuth::NoIssuer, AuthPolicy::Auto);
    choices.retain(|c| c.service == ServiceKind::Imap);
    choices[0].decision = Decision::Use(Method::Password {
        mechanism: "CRAM-MD5".into(),
    });
    let confirmed = ConfirmationRequest::new([choices[0].host.clone()], "t".into(), vec![])
        .confirm(true)
        .unwrap();
    let creds = Credentials {
        password: Some(Secret::new("alice-secret")),
        token: None,
    };
    let r = client
        .sign_in(
            &p.config,
            &choices,
            "alice@example.test",
            &creds,
            &confirmed,
            client.deadline(),
        )
        .await;
    assert!(
        matches!(
            &r[0].outcome,
            ValidationOutcome::Failed {
                class: FailureClass::Mechanism,
                ..
            }
        ),
        "{:?}",
        r[0].outcome
    );
}

#[tokio::test]
async fn an_expired_account_is_the_account_class() {
    if !peers::expired_accounts() {
        eprintln!("SKIPPED: needs dovecot-auth-lua (.ci/run installs it)");
        return;
    }
    let Some(p) = peers().await else { return };
    let client = client_with(&p.tb, Duration::from_secs(20));
    let probes = client.probe(&p.config, client.deadline(), &|_| {}).await;
    let mut choices = choose(&p.config, &probes, OAuth::NoIssuer, AuthPolicy::Auto);
    choices.retain(|c| c.service == ServiceKind::Imap);
    let confirmed = ConfirmationRequest::new([choices[0].host.clone()], "t".into(), vec![])
        .confirm(true)
        .unwrap();
    let creds = Credentials {
        password: Some(Secret::new("whatever")),
        token: None,
    };
    let r = client
        .sign_in(
            &p.config,
            &choices,
            peers::EXPIRED_USER,
            &creds,
            &confirmed,
            client.deadline(),
        )
        .await;
    let log = std::fs::read_to_string(p.dovecot.dir().join("dovecot.log")).unwrap_or_default();
    assert!(
        matches!(&r[0].outcome, ValidationOutcome::Failed { class: FailureClass::Account, message } if message.contains("EXPIRED")),
        "{:?}\n{log}",
        r[0].outcome
    );
}

/// #11 (3): a password with CR/LF (or NUL) is refused before any connection: no server of
/// the seven sees a login, a connection or an extra command (checked in Dovecot's own log,
/// which also records Postfix's SASL requests).
#[tokio::test]
async fn a_password_with_a_line_break_reaches_no_server() {
    let Some(p) = peers().await else { return };
    let client = client_with(&p.tb, Duration::from_secs(30));
    let probes = client.probe(&p.config, client.deadline(), &|_| {}).await;
    let choices = choose(&p.config, &probes, OAuth::NoIssuer, AuthPolicy::Auto);
    let request = ConfirmationRequest::new(
        choices.iter().map(|c| c.host.clone()),
        "test".into(),
        vec![],
    );
    let confirmed = request.accept_domains(&["example.test".into()]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log_path = p.dovecot.dir().join("dovecot.log");
    let before = std::fs::read_to_string(&log_path).unwrap_or_default().len();
    for bad in [
        "alice-secret\r\nQUIT",
        "alice-secret\nDELE 1",
        "alice\0secret",
    ] {
        let creds = Credentials {
            password: Some(Secret::new(bad)),
            token: None,
        };
        let results = client
            .sign_in(
                &p.config,
                &choices,
                "carol@example.test",
                &creds,
                &confirmed,
                client.deadline(),
            )
            .await;
        assert_eq!(results.len(), 7);
        for v in &results {
            assert!(
                matches!(&v.outcome, ValidationOutcome::NotSent { reason } if reason.contains("nothing was sent")),
                "{:?}: {:?}",
                v.service,
                v.outcome
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let new = &log[before.min(log.len())..];
    assert!(
        !new.contains("carol") && !new.contains("-login:"),
        "no login, connection or command reached Dovecot:\n{new}"
    );
}
