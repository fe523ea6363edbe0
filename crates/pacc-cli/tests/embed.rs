//! Embedding from other languages: the Python and Node.js clients of `pacc rpc`
//! (clients/python, clients/node) drive discover → probe → setup against real peers
//! (Dovecot's IMAP, POP3 and ManageSieve behind a published, verified configuration), and
//! the setup signs in on the probe's own connections.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use pacc_testbed::embedding::Provider;

const PACC: &str = env!("CARGO_BIN_EXE_pacc");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `program` with the provider's variables, `PACC_BIN`, and a private data directory.
fn command(p: &Provider, data: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.envs(p.env())
        .env("PACC_BIN", PACC)
        .env("PACC_DATA_DIR", data)
        .env_remove("DBUS_SESSION_BUS_ADDRESS");
    cmd
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

/// The provider, if Dovecot and every tool (`python3`, `node`) are here.
async fn provider(tools: &[&str]) -> Option<Provider> {
    let ok = tools.iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        eprintln!("SKIPPED: needs {tools:?} (.ci/run installs them)");
        return None;
    }
    Provider::start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_client_of_pacc_rpc_sets_up_an_account() {
    let Some(p) = provider(&["python3"]).await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut cmd = command(&p, data.path(), "python3");
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
    let Some(p) = provider(&["node"]).await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut cmd = command(&p, data.path(), "node");
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
    let Some(p) = provider(&[]).await else {
        return;
    };
    // Only what this setup caused (the testbed's own readiness checks come before).
    let before = p.log().len();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = command(&p, data.path(), PACC);
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

/// Issue 14.5: `-v` shows each step with its timing; `-vv` the protocol lines, with every
/// credential redacted.
#[tokio::test(flavor = "multi_thread")]
async fn verbose_shows_steps_and_never_a_secret() {
    let Some(p) = provider(&[]).await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let dns = p.tb.dns_addr().to_string();
    let ca = p.tb.ca_file().to_str().unwrap().to_owned();
    let base = [
        "setup",
        "alice@example.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--accept-domains",
        "example.test",
        "--password-env",
        "PACC_PASSWORD",
        "--no-save",
        "--json",
    ];
    let run = |extra: &'static str| {
        let mut cmd = command(&p, data.path(), PACC);
        cmd.args(base).arg(extra);
        let out = cmd.output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["ok"], true, "{v}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let v = run("-v");
    for step in [
        "txt _ua-auto-config.example.test → 1 TXT record(s)",
        "fetch https://ua-auto-config.example.test/.well-known/user-agent-configuration.json → HTTP 200",
        "verified https://ua-auto-config.example.test/",
        "probe imap imap.example.test:993: TLSv1.3",
        "sign-in managesieve sieve.example.test:4190",
    ] {
        assert!(v.contains(step), "-v shows {step:?}:\n{v}");
    }
    assert!(v.contains(" ms)"), "with timings:\n{v}");
    assert!(!v.contains(" C: "), "-v has no protocol lines:\n{v}");
    let vv = run("-vv");
    assert!(
        vv.contains("AUTHENTICATE PLAIN <redacted>"),
        "-vv shows the dialogue:\n{vv}"
    );
    assert!(vv.contains("S: * OK"), "{vv}");
    let password = pacc_testbed::peers::USERS[0].1;
    let plain = pacc_proto::auth::sasl::plain(
        "alice@example.test",
        &pacc_proto::auth::Secret::new(password.to_owned()),
    );
    for level in [&v, &vv] {
        assert!(
            !level.contains(password),
            "the password never appears:\n{level}"
        );
        assert!(
            !level.contains(plain.expose()),
            "nor its SASL form:\n{level}"
        );
    }
}
