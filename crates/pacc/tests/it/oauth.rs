//! OAuth sign-in end to end: oidc-provider as the authorization server (metadata, dynamic
//! registration, PKCE, loopback redirect), its tokens accepted by real Dovecot (local JWT
//! validation) on IMAP, POP3, ManageSieve, and by Postfix through Dovecot SASL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pacc::oauth::{ClientStore, OAuthError};
use pacc::signin::{Credentials, ValidationOutcome};
use pacc_proto::auth::gate::ConfirmationRequest;
use pacc_proto::auth::oauth::{MetadataError, RedirectError};
use pacc_proto::auth::select::{AuthPolicy, Decision, Method, OAuth, choose, scopes};
use pacc_proto::document::Config;
use pacc_proto::name::Domain;
use pacc_testbed::peers::{self, AuthServer, Dovecot, Postfix};
use pacc_testbed::{Behaviour, Reply, Testbed, browser};

use crate::{client_with, testbed};

const ISSUER: &str = "https://auth.example.test";

struct World {
    tb: Testbed,
    _dovecot: Dovecot,
    _postfix: Postfix,
    auth: AuthServer,
    config: Config,
}

async fn world() -> Option<World> {
    if !(["dovecot", "postfix"].iter().all(|p| peers::available(p))
        && peers::auth_server_available())
    {
        eprintln!(
            "SKIPPED: OAuth tests need dovecot, postfix, node and testdata/oidc/node_modules (.ci/run installs them)"
        );
        return None;
    }
    let tb = testbed().await;
    let (dovecot, postfix) = crate::mail_peers(&tb).await;
    let auth = AuthServer::start(
        &tb,
        "auth.example.test",
        Some(&dovecot.oauth_key_path()),
        600,
    )
    .await
    .expect("AS");
    let config = Config::from_bytes(
        br#"{"protocols":{"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"},"submit":{"host":"smtp.example.test"},"managesieve":{"host":"sieve.example.test"}},"authentication":{"password":false,"oauth-public":{"issuer":"https://auth.example.test"}},"info":{"provider":{"name":"OAuth"}}}"#,
    )
    .unwrap()
    .config;
    Some(World {
        tb,
        _dovecot: dovecot,
        _postfix: postfix,
        auth,
        config,
    })
}

#[tokio::test]
async fn one_grant_for_every_service_client_reused_and_refresh() {
    let Some(w) = world().await else { return };
    let client = client_with(&w.tb, Duration::from_secs(30));
    let probes = client.probe(&w.config, client.deadline(), &|_| {}).await;
    let meta = client
        .oauth_metadata(ISSUER, client.deadline())
        .await
        .expect("metadata");
    let choices = choose(
        &w.config,
        &probes,
        OAuth::Ready {
            metadata: &meta.metadata,
            refused: &[],
        },
        AuthPolicy::Auto,
    );
    for c in &choices {
        assert!(
            matches!(&c.decision, Decision::Use(Method::Oauth { mechanism }) if mechanism == "OAUTHBEARER"),
            "{c:?}"
        );
    }
    let scope = scopes(&choices, &meta.metadata.scopes_supported).join(" ");
    assert_eq!(scope, "urn:ietf:params:oauth:scope:mail offline_access");
    let hosts = choices
        .iter()
        .map(|c| c.host.clone())
        .chain([Domain::parse("auth.example.test").unwrap()]);
    let confirmed = ConfirmationRequest::new(hosts, "test".into(), vec![])
        .accept_domains(&["example.test".into()])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ClientStore::at(dir.path().join("clients.json"));
    let as_addr = SocketAddr::new(w.auth.ip().into(), 443);
    let ca = w.tb.ca.cert_der().clone();
    let opened = Arc::new(AtomicUsize::new(0));
    let (ca2, opened2) = (ca.clone(), opened.clone());
    let open = move |url: &str| {
        opened2.fetch_add(1, Ordering::Relaxed);
        let (url, ca) = (url.to_owned(), ca2.clone());
        tokio::spawn(async move {
            if let Err(e) =
                browser::authorize(&url, as_addr, &ca, "alice@example.test", "alice-secret").await
            {
                eprintln!("browser: {e}");
            }
        });
    };
    let pacc::oauth::Authorized {
        tokens, client_id, ..
    } = client
        .oauth_authorize(
            &meta.metadata,
            &confirmed,
            &scope,
            &[],
            &store,
            &open,
            Duration::from_secs(20),
            client.deadline(),
        )
        .await
        .expect("authorization");
    assert_eq!(opened.load(Ordering::Relaxed), 1);
    assert!(
        format!("{tokens:?}").contains("[redacted]")
            && !format!("{tokens:?}").contains(tokens.access_token.expose())
    );
    // The store is private and holds the client id.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        store.get(ISSUER).unwrap().as_deref(),
        Some(client_id.as_str())
    );

    // One token for every service (A-4).
    let creds = Credentials {
        password: None,
        token: Some(tokens.access_token.clone()),
    };
    let results = client
        .sign_in(
            &w.config,
            &choices,
            "alice@example.test",
            &creds,
            &confirmed,
            client.deadline(),
        )
        .await;
    assert_eq!(results.len(), 4);
    for v in &results {
        assert_eq!(
            v.outcome,
            ValidationOutcome::Ok,
            "{:?}: {:?}",
            v.service,
            v.outcome
        );
    }

    // A second run reuses the registered client.
    let pacc::oauth::Authorized {
        client_id: again, ..
    } = client
        .oauth_authorize(
            &meta.metadata,
            &confirmed,
            &scope,
            &[],
            &store,
            &open,
            Duration::from_secs(20),
            client.deadline(),
        )
        .await
        .expect("second authorization");
    assert_eq!(
        again, client_id,
        "the client id is reused, not re-registered"
    );

    // Refresh gives a new access token that works too.
    let refresh = tokens
        .refresh_token
        .clone()
        .expect("a refresh token for offline_access");
    let fresh = client
        .oauth_refresh(
            &meta.metadata,
            &confirmed,
            &client_id,
            &refresh,
            client.deadline(),
        )
        .await
        .expect("refresh");
    assert_ne!(fresh.access_token.expose(), tokens.access_token.expose());
    let creds = Credentials {
        password: None,
        token: Some(fresh.access_token),
    };
    let imap: Vec<_> = choices
        .iter()
        .filter(|c| c.service == pacc_proto::document::ServiceKind::Imap)
        .cloned()
        .collect();
    let r = client
        .sign_in(
            &w.config,
            &imap,
            "alice@example.test",
            &creds,
            &confirmed,
            client.deadline(),
        )
        .await;
    assert_eq!(r[0].outcome, ValidationOutcome::Ok);

    // XOAUTH2 works too where offered (Dovecot offers both).
    let mut xo = imap.clone();
    xo[0].decision = Decision::Use(Method::Oauth {
        mechanism: "XOAUTH2".into(),
    });
    let r = client
        .sign_in(
            &w.config,
            &xo,
            "alice@example.test",
            &creds,
            &confirmed,
            client.deadline(),
        )
        .await;
    assert_eq!(r[0].outcome, ValidationOutcome::Ok, "XOAUTH2");
    let r = client
        .sign_in(
            &w.config,
            &xo,
            "bob@example.test",
            &creds,
            &confirmed,
            client.deadline(),
        )
        .await;
    assert!(
        matches!(
            r[0].outcome,
            ValidationOutcome::Failed {
                class: pacc_proto::auth::login::FailureClass::Credentials,
                ..
            }
        ),
        "XOAUTH2 error path: {:?}",
        r[0].outcome
    );

    // A token for alice presented as bob is refused: the credentials class.
    let r = client
        .sign_in(
            &w.config,
            &imap,
            "bob@example.test",
            &creds,
            &confirmed,
            client.deadline(),
        )
        .await;
    assert!(
        matches!(
            r[0].outcome,
            ValidationOutcome::Failed {
                class: pacc_proto::auth::login::FailureClass::Credentials,
                ..
            }
        ),
        "{:?}",
        r[0].outcome
    );
}

#[tokio::test]
async fn forged_redirects_and_mismatched_issuers_are_refused() {
    let Some(w) = world().await else { return };
    let client = client_with(&w.tb, Duration::from_secs(20));
    let meta = client
        .oauth_metadata(ISSUER, client.deadline())
        .await
        .expect("metadata");
    let confirmed = ConfirmationRequest::new(
        [Domain::parse("auth.example.test").unwrap()],
        "t".into(),
        vec![],
    )
    .confirm(true)
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ClientStore::at(dir.path().join("clients.json"));
    // Forged or broken redirects, delivered straight to the listener: each is refused with
    // its stable kind, and the page the browser would show says nothing was signed in.
    for (query, kind) in [
        (
            "code=stolen&state=forged&iss=https%3A%2F%2Fauth.example.test",
            "state-mismatch",
        ),
        ("code=c&state=STATE", "iss-missing"),
        (
            "code=c&state=STATE&iss=https%3A%2F%2Fevil.example",
            "iss-mismatch",
        ),
        (
            "error=access_denied&error_description=no+thanks&state=STATE&iss=https%3A%2F%2Fauth.example.test",
            "access-denied",
        ),
    ] {
        let page = Arc::new(std::sync::Mutex::new(String::new()));
        let seen = page.clone();
        let open_forged = move |url: &str| {
            let port = url
                .split("127.0.0.1%3A")
                .nth(1)
                .and_then(|r| r.split("%2F").next())
                .unwrap()
                .to_owned();
            let state = url
                .split("state=")
                .nth(1)
                .and_then(|r| r.split('&').next())
                .unwrap()
                .to_owned();
            let request = format!(
                "GET /callback?{} HTTP/1.1\r\nHost: x\r\n\r\n",
                query.replace("STATE", &state)
            );
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Ok(mut s) =
                    tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
                        .await
                {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let _ = s.write_all(request.as_bytes()).await;
                    let mut answer = String::new();
                    let _ = s.read_to_string(&mut answer).await;
                    *seen.lock().unwrap() = answer;
                }
            });
        };
        let e = client
            .oauth_authorize(
                &meta.metadata,
                &confirmed,
                "urn:ietf:params:oauth:scope:mail",
                &[],
                &store,
                &open_forged,
                Duration::from_secs(10),
                client.deadline(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        if kind == "state-mismatch" {
            assert!(
                matches!(e, OAuthError::Redirect(RedirectError::State)),
                "{e}"
            );
        }
        if kind == "access-denied" {
            assert_eq!(e.description(), Some("no thanks"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = page.lock().unwrap().clone();
        assert!(
            answer.starts_with("HTTP/1.1 400")
                && answer.contains("Nothing was sent")
                && !answer.contains("Signed in"),
            "{kind}: {answer}"
        );
    }

    // Metadata whose issuer is not the configured one: refused before any browser opens.
    let _fake =
        w.tb.https_host(
            &["alias.example.test"],
            Behaviour::new(Reply::json(serde_json::to_vec(&meta.metadata).unwrap())),
        )
        .await
        .unwrap();
    let e = client
        .oauth_metadata("https://alias.example.test", client.deadline())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OAuthError::Metadata(MetadataError::IssuerMismatch { .. })
        ),
        "{e}"
    );

    // Endpoints on hosts the user did not confirm: nothing is sent there.
    let other = ConfirmationRequest::new(
        [Domain::parse("imap.example.test").unwrap()],
        "t".into(),
        vec![],
    )
    .confirm(true)
    .unwrap();
    let never = |_: &str| panic!("no browser may open");
    let e = client
        .oauth_authorize(
            &meta.metadata,
            &other,
            "urn:ietf:params:oauth:scope:mail",
            &[],
            &store,
            &never,
            Duration::from_secs(5),
            client.deadline(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, OAuthError::NotConfirmed(_)), "{e}");
}

#[tokio::test]
async fn an_expired_token_is_refused_and_a_refreshed_one_works() {
    if !(["dovecot"].iter().all(|p| peers::available(p)) && peers::auth_server_available()) {
        eprintln!("SKIPPED: needs dovecot, node and testdata/oidc/node_modules");
        return;
    }
    let tb = testbed().await;
    let dovecot = Dovecot::start(&tb, &["imap.example.test"]).await.unwrap();
    // Access tokens live 8 seconds here (long enough to outlast Dovecot's delay after the
    // failed attempt with the expired one).
    let auth = AuthServer::start(&tb, "auth.example.test", Some(&dovecot.oauth_key_path()), 8)
        .await
        .unwrap();
    let config = Config::from_bytes(br#"{"protocols":{"imap":{"host":"imap.example.test"}},"authentication":{"password":false,"oauth-public":{"issuer":"https://auth.example.test"}}}"#)
        .unwrap()
        .config;
    let client = client_with(&tb, Duration::from_secs(20));
    let probes = client.probe(&config, client.deadline(), &|_| {}).await;
    let meta = client
        .oauth_metadata(ISSUER, client.deadline())
        .await
        .unwrap();
    let choices = choose(
        &config,
        &probes,
        OAuth::Ready {
            metadata: &meta.metadata,
            refused: &[],
        },
        AuthPolicy::Auto,
    );
    let confirmed = ConfirmationRequest::new(
        [
            Domain::parse("imap.example.test").unwrap(),
            Domain::parse("auth.example.test").unwrap(),
        ],
        "t".into(),
        vec![],
    )
    .confirm(true)
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ClientStore::at(dir.path().join("c.json"));
    let as_addr = SocketAddr::new(auth.ip().into(), 443);
    let ca = tb.ca.cert_der().clone();
    let open = move |url: &str| {
        let (url, ca) = (url.to_owned(), ca.clone());
        tokio::spawn(async move {
            let _ =
                browser::authorize(&url, as_addr, &ca, "alice@example.test", "alice-secret").await;
        });
    };
    let pacc::oauth::Authorized {
        tokens, client_id, ..
    } = client
        .oauth_authorize(
            &meta.metadata,
            &confirmed,
            "urn:ietf:params:oauth:scope:mail offline_access",
            &[],
            &store,
            &open,
            Duration::from_secs(20),
            client.deadline(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let creds = |t: pacc_proto::auth::Secret| Credentials {
        password: None,
        token: Some(t),
    };
    let r = client
        .sign_in(
            &config,
            &choices,
            "alice@example.test",
            &creds(tokens.access_token.clone()),
            &confirmed,
            client.deadline(),
        )
        .await;
    assert!(
        matches!(
            r[0].outcome,
            ValidationOutcome::Failed {
                class: pacc_proto::auth::login::FailureClass::Credentials,
                ..
            }
        ),
        "expired: {:?}",
        r[0].outcome
    );
    let fresh = client
        .oauth_refresh(
            &meta.metadata,
            &confirmed,
            &client_id,
            tokens.refresh_token.as_ref().unwrap(),
            client.deadline(),
        )
        .await
        .unwrap();
    let r = client
        .sign_in(
            &config,
            &choices,
            "alice@example.test",
            &creds(fresh.access_token),
            &confirmed,
            client.deadline(),
        )
        .await;
    assert_eq!(r[0].outcome, ValidationOutcome::Ok);
}
