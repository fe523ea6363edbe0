//! Embedding from other languages: the Python and Node.js clients of `pacc rpc`
//! (clients/python, clients/node) drive discover → probe → setup against real peers
//! (Dovecot's IMAP, POP3 and ManageSieve behind a published, verified configuration), and
//! the setup signs in on the probe's own connections.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use pacc_testbed::peers::{self, Dovecot};
use pacc_testbed::{Behaviour, HttpsServer, Reply, Testbed, sha256_record};

const PACC: &str = env!("CARGO_BIN_EXE_pacc");

const DOC: &str = r#"{"protocols":{"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"},"managesieve":{"host":"sieve.example.test"}},"authentication":{"password":true},"info":{"provider":{"name":"Embedded"}}}"#;

struct Provider {
    tb: Testbed,
    dovecot: Dovecot,
    data: tempfile::TempDir,
    _servers: Vec<HttpsServer>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// example.test (verified), tampered.test (the document does not match its digest) and
/// stall.test (the document never arrives).
async fn provider() -> Provider {
    let tb = Testbed::start().await.unwrap();
    let dovecot = Dovecot::start(
        &tb,
        &[
            "imap.example.test",
            "pop.example.test",
            "sieve.example.test",
        ],
    )
    .await
    .unwrap();
    let good = tb.provider("example.test", DOC.as_bytes()).await.unwrap();
    let tampered = tb
        .serve_document("tampered.test", DOC.as_bytes())
        .await
        .unwrap();
    tb.publish_txt(
        "tampered.test",
        &sha256_record(b"what the provider published"),
    )
    .await
    .unwrap();
    let stall = tb
        .https_host(
            &["ua-auto-config.stall.test"],
            Behaviour::new(Reply::NeverAnswer),
        )
        .await
        .unwrap();
    tb.publish_txt("stall.test", &sha256_record(DOC.as_bytes()))
        .await
        .unwrap();
    Provider {
        tb,
        dovecot,
        data: tempfile::tempdir().unwrap(),
        _servers: vec![good, tampered, stall],
    }
}

impl Provider {
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PACC_BIN", PACC)
            .env("PACC_DNS", self.tb.dns_addr().to_string())
            .env("PACC_CA", self.tb.ca_file())
            .env("PACC_ADDRESS", peers::USERS[0].0)
            .env("PACC_PASSWORD", peers::USERS[0].1)
            .env("PACC_DOMAIN", "example.test")
            .env("PACC_TAMPERED", "alice@tampered.test")
            .env("PACC_STALL", "alice@stall.test")
            .env("PACC_DATA_DIR", self.data.path())
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        cmd
    }

    /// Dovecot's log, once it has written what just happened.
    fn log(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::read_to_string(self.dovecot.dir().join("dovecot.log")).unwrap_or_default()
    }

    /// Whether Dovecot logged a successful login of alice over `protocol`.
    fn logged_in(&self, protocol: &str) -> bool {
        self.log().lines().any(|l| {
            l.contains(&format!("{protocol}-login:"))
                && l.contains("Login: user=<alice@example.test>")
        })
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{what}:\n{text}");
    assert!(out.status.success(), "{what} failed:\n{text}");
}

fn available(tools: &[&str]) -> bool {
    let ok = peers::available("dovecot")
        && tools.iter().all(|t| {
            Command::new(t)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !ok {
        eprintln!("SKIPPED: needs dovecot and {tools:?} (.ci/run installs them)");
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_client_of_pacc_rpc_sets_up_an_account() {
    if !available(&["python3"]) {
        return;
    }
    let p = provider().await;
    let mut cmd = p.command("python3");
    cmd.args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "test_rpc.py",
    ])
    .current_dir(root().join("clients/python"));
    run(cmd, "pytest clients/python/test_rpc.py");
    // The signed-in logins really happened, at the server, with the full address.
    for protocol in ["imap", "pop3", "managesieve"] {
        assert!(
            p.logged_in(protocol),
            "{protocol} login in Dovecot's log:\n{}",
            p.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_client_of_pacc_rpc_sets_up_an_account() {
    if !available(&["node"]) {
        return;
    }
    let p = provider().await;
    let mut cmd = p.command("node");
    cmd.args(["--test", "--test-timeout=60000", "test.mjs"])
        .current_dir(root().join("clients/node"));
    run(cmd, "node --test clients/node/test.mjs");
    assert!(p.logged_in("imap"), "{}", p.log());
}

/// Issue 13.6: the sign-in runs on each probe's connection, so a setup opens one connection
/// per service. Dovecot logs every connection that ended without authenticating as "no auth
/// attempts": a setup that reused nothing would leave three.
#[tokio::test(flavor = "multi_thread")]
async fn setup_signs_in_on_the_probe_connections() {
    if !available(&[]) {
        return;
    }
    let p = provider().await;
    // Only what this setup caused (the testbed's own readiness checks come before).
    let before = p.log().len();
    let mut cmd = p.command(PACC);
    cmd.args([
        "setup",
        "alice@example.test",
        "--dns",
        &p.tb.dns_addr().to_string(),
        "--ca-file",
        p.tb.ca_file().to_str().unwrap(),
        "--accept-domains",
        "example.test",
        "--password-env",
        "PACC_PASSWORD",
        "--no-save",
        "--json",
    ]);
    let out = cmd.output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let log = p.log()[before..].to_owned();
    let logins = log.matches("Login: user=<alice@example.test>").count();
    assert_eq!(logins, 3, "{log}");
    assert!(
        !log.contains("no auth attempts"),
        "every probe connection carried its sign-in:\n{log}"
    );
}
