//! `pacc setup` sign-in choices against real peers (Dovecot, the oidc-provider authorization
//! server): `--auth`, the password fallback when OAuth fails or cannot run, and the
//! oauth-public -06 rules, each checked in the JSON and at the server (Dovecot's own log of
//! which mechanism each login used).
#![allow(clippy::print_stderr)]

use std::process::Output;
use std::time::{Duration, Instant};

use pacc_testbed::peers::{self, AuthOptions, AuthServer, Dovecot};
use pacc_testbed::{Behaviour, Reply, Testbed};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

const PACC: &str = env!("CARGO_BIN_EXE_pacc");

fn available() -> bool {
    let ok = peers::available("dovecot") && peers::auth_server_available();
    if !ok {
        eprintln!(
            "SKIPPED: needs dovecot, node and testdata/oidc/node_modules (.ci/run installs them)"
        );
    }
    ok
}

/// IMAP and POP3 at Dovecot, an issuer at the test authorization server, passwords allowed.
struct Both {
    tb: Testbed,
    dovecot: Dovecot,
    auth: AuthServer,
    data: tempfile::TempDir,
    _provider: pacc_testbed::HttpsServer,
}

const BOTH: &str = r#"{"protocols":{"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"}},"authentication":{"password":true,"oauth-public":{"issuer":"ISSUER"}},"info":{"provider":{"name":"Both"}}}"#;

async fn both(issuer: &str, options: AuthOptions, dovecot_openid: Option<&str>, key: bool) -> Both {
    let tb = Testbed::start().await.unwrap();
    let dovecot = Dovecot::start_with(
        &tb,
        &["imap.example.test", "pop.example.test"],
        dovecot_openid,
    )
    .await
    .unwrap();
    let auth = AuthServer::start_with(
        &tb,
        "auth.example.test",
        key.then(|| dovecot.oauth_key_path()).as_deref(),
        600,
        &options,
    )
    .await
    .unwrap();
    let doc = BOTH.replace("ISSUER", issuer);
    let provider = tb.provider("example.test", doc.as_bytes()).await.unwrap();
    Both {
        tb,
        dovecot,
        auth,
        data: tempfile::tempdir().unwrap(),
        _provider: provider,
    }
}

impl Both {
    fn command(&self, extra: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(PACC);
        cmd.args([
            "setup",
            "alice@example.test",
            "--dns",
            &self.tb.dns_addr().to_string(),
            "--ca-file",
            self.tb.ca_file().to_str().unwrap(),
            "--accept-domains",
            "example.test",
            "--json",
        ])
        .args(extra)
        .env("PACC_DATA_DIR", self.data.path())
        .env("PACC_TEST_PW", "alice-secret")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("PACC_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        cmd
    }

    /// Run setup; when `browser` is given, sign in at the printed URL as that user and
    /// return the page the loopback listener showed.
    async fn run(
        &self,
        extra: &[&str],
        browser: Option<(&str, &str)>,
    ) -> (Output, Value, Option<String>) {
        let mut child = self.command(extra).spawn().unwrap();
        let mut page = None;
        let mut stderr_lines = Vec::new();
        let mut rest = None;
        if let Some((login, password)) = browser {
            let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
            let url = tokio::time::timeout(Duration::from_secs(20), async {
                while let Ok(Some(line)) = stderr.next_line().await {
                    stderr_lines.push(line.clone());
                    if line.starts_with("https://auth.example.test/") {
                        return Some(line);
                    }
                }
                None
            })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no URL printed: {stderr_lines:?}"));
            let as_addr = std::net::SocketAddr::new(self.auth.ip().into(), 443);
            page = pacc_testbed::browser::authorize(
                &url,
                as_addr,
                self.tb.ca.cert_der(),
                login,
                password,
            )
            .await
            .ok()
            .map(|(_, page)| page);
            rest = Some(tokio::spawn(async move {
                let mut lines = Vec::new();
                while let Ok(Some(l)) = stderr.next_line().await {
                    lines.push(l);
                }
                lines
            }));
        }
        let mut out = child.wait_with_output().await.unwrap();
        if let Some(rest) = rest {
            stderr_lines.extend(rest.await.unwrap_or_default());
            out.stderr = stderr_lines.join("\n").into_bytes();
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, v, page)
    }

    /// The login mechanisms Dovecot logged for alice, per protocol (`imap`, `pop3`).
    async fn logins(&self, protocol: &str) -> Vec<String> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let log =
            std::fs::read_to_string(self.dovecot.dir().join("dovecot.log")).unwrap_or_default();
        log.lines()
            .filter(|l| {
                l.contains(&format!("{protocol}-login:"))
                    && l.contains("Login: user=<alice@example.test>")
            })
            .filter_map(|l| l.split("method=").nth(1))
            .map(|m| m.split(',').next().unwrap_or("").to_owned())
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dovecot.dir().join("dovecot.log")).unwrap_or_default()
    }
}

fn mechanism(v: &Value, service: &str) -> String {
    v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["service"] == service)
        .and_then(|a| a["mechanism"].as_str())
        .unwrap_or_else(|| panic!("no account for {service}: {v:#}"))
        .to_owned()
}

fn fell_back(v: &Value) -> Vec<String> {
    v["fallbacks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["service"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn auth_password_on_a_provider_offering_both() {
    if !available() {
        return;
    }
    let w = both(
        "https://auth.example.test",
        AuthOptions::default(),
        None,
        true,
    )
    .await;
    let (out, v, _) = w
        .run(
            &["--auth", "password", "--password-env", "PACC_TEST_PW"],
            None,
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(mechanism(&v, "imap"), "PLAIN");
    assert_eq!(v["oauth"]["status"], "not-used");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("https://auth.example.test/"),
        "no browser step"
    );
    assert_eq!(w.logins("imap").await, ["PLAIN"], "{}", w.log());
    assert!(
        w.logins("pop3")
            .await
            .iter()
            .all(|m| m != "OAUTHBEARER" && m != "XOAUTH2")
    );
}

#[tokio::test]
async fn auto_falls_back_to_the_password_after_access_denied() {
    if !available() {
        return;
    }
    let w = both(
        "https://auth.example.test",
        AuthOptions::default(),
        None,
        true,
    )
    .await;
    let (out, v, page) = w
        .run(
            &["--no-browser", "--password-env", "PACC_TEST_PW"],
            Some(("deny@example.test", "whatever")),
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["oauth"]["status"], "failed");
    assert_eq!(v["oauth"]["kind"], "access-denied", "{:#}", v["oauth"]);
    assert_eq!(v["oauth"]["description"], "the user declined the request");
    assert_eq!(fell_back(&v), ["imap", "pop3"]);
    assert!(
        v["fallbacks"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("access-denied")
    );
    assert_eq!(mechanism(&v, "imap"), "PLAIN");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Using the password instead"), "{stderr}");
    // The loopback page tells the truth.
    let page = page.expect("the browser reached the loopback listener");
    assert!(
        page.contains("not completed") && page.contains("Nothing was sent"),
        "{page}"
    );
    assert!(!page.contains("Signed in"), "{page}");
    // At the server: passwords only, no token.
    assert_eq!(w.logins("imap").await, ["PLAIN"]);
    assert!(!w.log().contains("method=OAUTHBEARER"));
}

#[tokio::test]
async fn auto_falls_back_after_a_browser_timeout() {
    if !available() {
        return;
    }
    let w = both(
        "https://auth.example.test",
        AuthOptions::default(),
        None,
        true,
    )
    .await;
    let (out, v, _) = w
        .run(
            &[
                "--no-browser",
                "--browser-timeout",
                "1",
                "--password-env",
                "PACC_TEST_PW",
            ],
            None,
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["oauth"]["kind"], "browser-timeout");
    assert_eq!(fell_back(&v), ["imap", "pop3"]);
    assert!(v["phases"]["browser_ms"].as_u64().unwrap() >= 1000);
}

#[tokio::test]
async fn without_a_display_it_says_so_and_does_not_wait() {
    if !available() {
        return;
    }
    let w = both(
        "https://auth.example.test",
        AuthOptions::default(),
        None,
        true,
    )
    .await;
    let mut cmd = w.command(&["--browser-timeout", "300", "--password-env", "PACC_TEST_PW"]);
    cmd.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    let started = Instant::now();
    let out = cmd.spawn().unwrap().wait_with_output().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it did not wait for the browser"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["oauth"]["kind"], "no-browser");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No browser can be opened here")
            && stderr.contains("https://auth.example.test/"),
        "{stderr}"
    );
    assert_eq!(mechanism(&v, "pop3"), "PLAIN");
}

#[tokio::test]
async fn protected_resources_decide_where_the_token_goes() {
    if !available() {
        return;
    }
    let options = AuthOptions {
        protected_resources: Some(vec!["imap://imap.example.test".into()]),
        ..AuthOptions::default()
    };
    let w = both("https://auth.example.test", options, None, true).await;
    let (out, v, _) = w
        .run(
            &["--no-browser", "--password-env", "PACC_TEST_PW"],
            Some(("alice@example.test", "alice-secret")),
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(mechanism(&v, "imap"), "OAUTHBEARER");
    assert_eq!(
        mechanism(&v, "pop3"),
        "PLAIN",
        "pop.example.test is not covered"
    );
    let pop = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "pop3")
        .unwrap();
    assert!(
        pop["no_token"]
            .as_str()
            .unwrap()
            .contains("protected_resources"),
        "{pop}"
    );
    // The confirmation said so.
    let plan = v["confirmation"]["plan"].as_array().unwrap();
    let pop_plan = plan.iter().find(|p| p["service"] == "pop3").unwrap();
    assert!(
        pop_plan["method"].as_str().unwrap().starts_with("password"),
        "{pop_plan}"
    );
    assert!(pop_plan["no_token"].is_string());
    assert_eq!(
        v["oauth"]["resources"],
        serde_json::json!(["imap://imap.example.test"])
    );
    // At the server: a token for IMAP only.
    assert_eq!(w.logins("imap").await, ["OAUTHBEARER"]);
    assert_eq!(w.logins("pop3").await, ["PLAIN"]);
}

#[tokio::test]
async fn an_issuer_differing_by_one_slash_is_refused() {
    if !available() {
        return;
    }
    let w = both(
        "https://auth.example.test/",
        AuthOptions::default(),
        None,
        true,
    )
    .await;
    let (out, v, _) = w.run(&["--password-env", "PACC_TEST_PW"], None).await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["oauth"]["kind"], "issuer-mismatch", "{:#}", v["oauth"]);
    assert!(
        v["oauth"]["message"]
            .as_str()
            .unwrap()
            .contains("https://auth.example.test/")
    );
    assert_eq!(mechanism(&v, "imap"), "PLAIN");
    assert!(!w.log().contains("method=OAUTHBEARER"));
}

#[tokio::test]
async fn a_dpop_token_is_refused() {
    if !available() {
        return;
    }
    let options = AuthOptions {
        token_type: Some("DPoP".into()),
        ..AuthOptions::default()
    };
    let w = both("https://auth.example.test", options, None, true).await;
    let (out, v, _) = w
        .run(
            &["--no-browser", "--password-env", "PACC_TEST_PW"],
            Some(("alice@example.test", "alice-secret")),
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["oauth"]["kind"], "token-type", "{:#}", v["oauth"]);
    assert!(v["oauth"]["message"].as_str().unwrap().contains("DPoP"));
    assert_eq!(fell_back(&v), ["imap", "pop3"]);
    assert!(
        !w.log().contains("method=OAUTHBEARER"),
        "the DPoP token was never presented"
    );
}

#[tokio::test]
async fn a_server_naming_another_issuer_is_not_sent_a_token_again() {
    if !available() {
        return;
    }
    // Dovecot does not know the AS's key (its tokens fail) and names another issuer.
    let w = both(
        "https://auth.example.test",
        AuthOptions::default(),
        Some("https://other.example.test/.well-known/openid-configuration"),
        false,
    )
    .await;
    let (out, v, _) = w
        .run(
            &["--auth", "oauth", "--no-browser"],
            Some(("alice@example.test", "alice-secret")),
        )
        .await;
    assert_eq!(out.status.code(), Some(6), "{v:#}");
    let imap = v["validations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service"] == "imap")
        .unwrap();
    assert_eq!(
        imap["expected_issuer"], "https://other.example.test",
        "{imap}"
    );
    assert!(
        imap["message"]
            .as_str()
            .unwrap()
            .contains("not from the provider's issuer"),
        "{imap}"
    );
    let not: Vec<&str> = v["not_set_up"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["service"].as_str().unwrap())
        .collect();
    assert!(not.contains(&"imap"), "{v:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One attempt with the token, no refresh-and-retry.
    let attempts = w
        .log()
        .lines()
        .filter(|l| l.contains("imap-login") && l.contains("OAUTHBEARER"))
        .count();
    assert!(attempts <= 1, "{}", w.log());
}

#[tokio::test]
async fn a_metadata_redirect_is_refused_and_never_followed() {
    let tb = Testbed::start().await.unwrap();
    let target = tb
        .https_host(
            &["auth.elsewhere.test"],
            Behaviour::new(Reply::json(&b"{}"[..])),
        )
        .await
        .unwrap();
    let _redirect = tb
        .https_host(
            &["auth.redirect.test"],
            Behaviour::new(Reply::Redirect {
                status: 301,
                location: "https://auth.elsewhere.test/.well-known/openid-configuration".into(),
            }),
        )
        .await
        .unwrap();
    let client = pacc::Client::builder()
        .dns(pacc::DnsConfig::Server(tb.dns_addr()))
        .add_trust_anchor(tb.ca.cert_der().clone())
        .build()
        .unwrap();
    let e = client
        .oauth_metadata("https://auth.redirect.test", client.deadline())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "metadata-unavailable");
    let pacc::oauth::OAuthError::Fetch(attempts) = &e else {
        panic!("{e}")
    };
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a.error.kind() == "redirect"), "{e}");
    assert!(
        target.requests().is_empty(),
        "the redirect was not followed"
    );
}

/// O-14 for HTTP: a CardDAV server whose `WWW-Authenticate` points to RFC 9728 metadata that
/// names another authorization server is not sent a token; it gets the password (the
/// provider allows one), and the server's own request log shows no Bearer header.
#[tokio::test]
async fn an_http_server_naming_another_issuer_gets_no_token() {
    if !available() {
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let dovecot = Dovecot::start(&tb, &["imap.example.test"]).await.unwrap();
    let auth = AuthServer::start(
        &tb,
        "auth.example.test",
        Some(&dovecot.oauth_key_path()),
        600,
    )
    .await
    .unwrap();
    let _meta = tb
        .https_host(
            &["meta.example.test"],
            Behaviour::new(Reply::json(
                &br#"{"resource":"https://dav.example.test/card/","authorization_servers":["https://other.example.test"]}"#[..],
            )),
        )
        .await
        .unwrap();
    let dav = tb
        .https_host(
            &["dav.example.test"],
            Behaviour::new(Reply::AuthGate {
                challenge:
                    r#"Bearer resource_metadata="https://meta.example.test/prm", Basic realm="dav""#
                        .into(),
                ok_status: 207,
            }),
        )
        .await
        .unwrap();
    let doc = br#"{"protocols":{"imap":{"host":"imap.example.test"},"carddav":{"url":"https://dav.example.test/card/"}},"authentication":{"password":true,"oauth-public":{"issuer":"https://auth.example.test"}}}"#;
    let provider = tb.provider("example.test", doc).await.unwrap();
    let w = Both {
        tb,
        dovecot,
        auth,
        data: tempfile::tempdir().unwrap(),
        _provider: provider,
    };
    let (out, v, _) = w
        .run(
            &["--no-browser", "--password-env", "PACC_TEST_PW"],
            Some(("alice@example.test", "alice-secret")),
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(mechanism(&v, "imap"), "OAUTHBEARER");
    assert_eq!(mechanism(&v, "carddav"), "Basic");
    let card = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "carddav")
        .unwrap();
    assert!(
        card["no_token"]
            .as_str()
            .unwrap()
            .contains("https://other.example.test"),
        "{card}"
    );
    let auths: Vec<String> = dav
        .requests()
        .iter()
        .flat_map(|r| {
            r.headers
                .iter()
                .filter(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(
        !auths.is_empty() && auths.iter().all(|a| a.starts_with("Basic ")),
        "{auths:?}"
    );
}

/// RFC 8628 on a machine without a display and without a password to fall back on: setup
/// uses the device grant by itself, prints the URL and code, and signs in once the user
/// confirms the code elsewhere.
#[tokio::test]
async fn a_headless_setup_uses_the_device_grant() {
    if !available() {
        return;
    }
    let w = both(
        "https://auth.example.test",
        AuthOptions::default(),
        None,
        true,
    )
    .await;
    let mut cmd = w.command(&["--auth", "oauth", "--browser-timeout", "60"]);
    cmd.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    let mut child = cmd.spawn().unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            seen.push(line.clone());
            if let Some(u) = line
                .strip_prefix("(or open ")
                .and_then(|r| r.strip_suffix(')'))
            {
                return Some(u.to_owned());
            }
        }
        None
    })
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("no device code shown: {seen:?}"));
    assert!(
        seen.iter().any(|l| l.contains("enter the code")),
        "{seen:?}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let as_addr = std::net::SocketAddr::new(w.auth.ip().into(), 443);
    let page = pacc_testbed::browser::device_verify(
        &url,
        as_addr,
        w.tb.ca.cert_der(),
        "alice@example.test",
        "alice-secret",
    )
    .await
    .expect("the user confirms the code");
    assert!(page.contains("Success"), "{page}");
    let out = child.wait_with_output().await.unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["oauth"]["status"], "ok");
    assert_eq!(mechanism(&v, "imap"), "OAUTHBEARER");
    assert_eq!(w.logins("imap").await, ["OAUTHBEARER"]);
}
