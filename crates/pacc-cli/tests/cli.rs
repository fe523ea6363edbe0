//! The `pacc` binary itself, run against testbed providers on loopback.
#![allow(clippy::print_stderr)]

use std::process::Output;

use pacc_testbed::{Behaviour, Reply, Testbed, sha256_record, vectors};
use serde_json::Value;

const PACC: &str = env!("CARGO_BIN_EXE_pacc");

/// Every run keeps its saved accounts in a directory of this test process, never in the
/// user's data directory, and sees no keyring.
fn data_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

async fn pacc(args: &[&str]) -> Output {
    tokio::process::Command::new(PACC)
        .args(args)
        .env("PACC_DATA_DIR", data_dir())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("PACC_LOG")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run pacc")
}

async fn discover_json(tb: &Testbed, address: &str) -> (i32, Value) {
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let out = pacc(&[
        "discover",
        address,
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--json",
        "--timeout",
        "5",
    ])
    .await;
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let v: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    (out.status.code().unwrap_or(-1), v)
}

#[tokio::test]
async fn json_success_has_the_documented_shape() {
    let tb = Testbed::start().await.unwrap();
    let _s = tb
        .provider("cli.test", vectors::document("TV1"))
        .await
        .unwrap();
    let (code, v) = discover_json(&tb, "Someone@CLI.test").await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(v["ok"], true);
    assert_eq!(v["address"], "Someone@CLI.test");
    assert_eq!(v["domain"], "cli.test");
    assert!(v.get("error").is_none());
    // TV1 uses the -02 key `smtp`; the output always says `submit`.
    assert_eq!(
        v["config"]["protocols"]["submit"]["host"],
        "smtp.example.test"
    );
    assert_eq!(v["config"]["protocols"]["submit"]["port"], 465);
    assert!(v["config"]["protocols"].get("smtp").is_none());
    assert_eq!(v["config"]["protocols"]["imap"]["tls"], "implicit");
    assert_eq!(
        v["config"]["authentication"]["oauth-public"]["issuer"],
        "https://identity.example.test/"
    );
    assert_eq!(v["source"]["method"], "well-known");
    assert_eq!(
        v["source"]["url"],
        "https://ua-auto-config.cli.test/.well-known/user-agent-configuration.json"
    );
    assert_eq!(v["source"]["algorithm"], "sha256");
    assert_eq!(v["source"]["spelling"], "smtp");
    assert_eq!(
        v["source"]["record"],
        sha256_record(vectors::document("TV1"))
    );
    assert_eq!(v["source"]["response"]["tls"]["version"], "TLSv1.3");
    assert_eq!(v["records"][0]["verdict"], "valid");
    assert_eq!(v["records"][0]["matches"], true);
    assert_eq!(v["credential_domains"][0]["domain"], "example.test");
    let steps: Vec<&str> = v["trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["step"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"txt") && steps.contains(&"fetch"),
        "{steps:?}"
    );
}

#[tokio::test]
async fn exit_codes_and_error_kinds() {
    let tb = Testbed::start().await.unwrap();
    let doc = vectors::document("TV2");
    // integrity: the digest does not match
    let _a = tb.serve_document("bad.test", doc).await.unwrap();
    tb.publish_txt("bad.test", &sha256_record(b"other"))
        .await
        .unwrap();
    let (code, v) = discover_json(&tb, "u@bad.test").await;
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "digest-mismatch");
    assert_eq!(v["error"]["class"], "integrity");
    assert!(v.get("config").is_none());
    // absent: the domain exists but publishes nothing, and no MTA-STS for the MX fallback
    tb.dns
        .add_a("absent.test", std::net::Ipv4Addr::new(127, 0, 0, 1))
        .await
        .unwrap();
    let (code, v) = discover_json(&tb, "u@absent.test").await;
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "mta-sts-missing");
    assert_eq!(v["error"]["class"], "absent");
    assert_eq!(v["error"]["step"], "mta-sts");
    assert_eq!(v["error"]["primary"]["kind"], "no-such-host");
    assert_eq!(v["fallback"]["used"], false);
    // temporary: 503
    let _b = tb
        .https_host(
            &["ua-auto-config.busy.test"],
            Behaviour::new(Reply::status(503)),
        )
        .await
        .unwrap();
    let (code, v) = discover_json(&tb, "u@busy.test").await;
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["error"]["class"], "temporary");
}

#[tokio::test]
async fn usage_errors_exit_2_with_a_clear_message() {
    for (args, expect) in [
        (vec!["discover", "not-an-address"], "has no '@'"),
        (vec!["discover", "user@[192.0.2.1]"], "address literal"),
        (
            vec!["discover", "a@b.test", "--ca-file", "/nonexistent/ca.pem"],
            "/nonexistent/ca.pem",
        ),
        (
            vec!["discover", "a@b.test", "--timeout", "0"],
            "between 0.1 and 600",
        ),
        (
            vec!["discover", "a@b.test", "--dns", "not-an-ip"],
            "not-an-ip",
        ),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ] {
        let out = pacc(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[tokio::test]
async fn human_output_shows_services_domains_and_trail() {
    let tb = Testbed::start().await.unwrap();
    let _s = tb
        .provider("human.test", vectors::document("TV5"))
        .await
        .unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let out = pacc(&["discover", "me@human.test", "--dns", &dns, "--ca-file", &ca]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for needle in [
        "Verified configuration for me@human.test",
        "Example Provider Name (Example)",
        "imap.example.com:993  implicit TLS",
        "smtp.example.com:465  implicit TLS",
        "https://jmap.example.com/session",
        "issuer https://auth.example.com/",
        "example.com ",
        "sha256 record matched",
        "TLSv1.3",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[tokio::test]
async fn help_teaches_exit_codes_and_flags() {
    let out = pacc(&["discover", "--help"]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--dns",
        "--ca-file",
        "--timeout",
        "--json",
        "Exit codes",
        "integrity or security",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
}

#[tokio::test]
async fn demo_runs_offline() {
    let out = pacc(&["demo"]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Verified configuration for alice@example.test"),
        "{text}"
    );
    assert!(text.contains("[digest-mismatch]"), "{text}");
    assert!(text.contains("MX fallback"), "{text}");
    // Issue 14.8: the whole flow: probe, the confirmation screen, sign-in with a password
    // (and with OAuth where the test authorization server is installed).
    assert!(
        text.contains("All 8 services are reachable over verified TLS and usable."),
        "{text}"
    );
    assert!(
        text.contains("Your credentials would be sent to these domains:"),
        "{text}"
    );
    assert!(text.contains("username alice@example.test:"), "{text}");
    // Each service's result fits an 80-column terminal.
    for line in text.lines().filter(|l| l.starts_with("  ok ")) {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    let signed_in = |how: &str| {
        text.lines()
            .filter(|l| l.starts_with("  ok ") && l.ends_with(how))
            .count()
    };
    assert_eq!(signed_in("password (PLAIN)"), 4, "{text}");
    assert_eq!(signed_in("password (Basic)"), 4, "{text}");
    if pacc_testbed::peers::auth_server_available() {
        assert_eq!(signed_in("OAuth (OAUTHBEARER)"), 4, "{text}");
        assert_eq!(signed_in("OAuth (Bearer)"), 4, "{text}");
    }
}

/// `pacc demo --keep` stays up and prints the flags to use it by hand; they work.
#[tokio::test]
async fn demo_keep_serves_other_commands() {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(PACC)
        .args(["demo", "--keep"])
        .env("PACC_DATA_DIR", data_dir())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut discover = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        if line
            .trim_start()
            .starts_with("pacc discover alice@example.test --dns")
        {
            discover = Some(line.trim().to_owned());
        }
        if line.contains("Press Ctrl-C to stop.") {
            break;
        }
    }
    let discover = discover.expect("the demo printed the flags");
    let args: Vec<&str> = discover.split_whitespace().skip(1).collect();
    let mut args = args.clone();
    args.push("--json");
    let out = pacc(&args).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["config"]["info"]["provider"]["name"], "Example Demo Mail");
    // Ctrl-C ends it.
    let pid = child.id().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.code().is_some(), "exited on SIGINT: {status:?}");
}

#[tokio::test]
async fn json_reports_the_mx_fallback() {
    let tb = Testbed::start().await.unwrap();
    let hosted = vectors::document("TV6");
    let _p = tb
        .mta_sts(
            "hosted.test",
            "abc123",
            &Testbed::enforce_policy(&["*.provider.test"]),
        )
        .await
        .unwrap();
    tb.dns
        .add_mx("hosted.test", 5, "mx-a.provider.test")
        .await
        .unwrap();
    tb.dns
        .add_mx("hosted.test", 5, "mx-b.provider.test")
        .await
        .unwrap();
    let _a = tb.provider("mx-a.provider.test", hosted).await.unwrap();
    let _b = tb.provider("mx-b.provider.test", hosted).await.unwrap();
    let (code, v) = discover_json(&tb, "carol@hosted.test").await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["source"]["method"], "mx-fallback");
    assert_eq!(v["source"]["mx"]["policy_id"], "abc123");
    assert_eq!(v["source"]["mx"]["mode"], "enforce");
    assert_eq!(v["source"]["mx"]["preference"], 5);
    assert_eq!(v["source"]["mx"]["mx_domains"][0], "provider.test");
    let hosts: Vec<&str> = v["source"]["mx"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["mx_host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["mx-a.provider.test", "mx-b.provider.test"]);
    assert_eq!(
        v["source"]["mx"]["hosts"][1]["url"],
        "https://ua-auto-config.mx-b.provider.test/.well-known/user-agent-configuration.json"
    );
    assert_eq!(v["fallback"]["used"], true);
    assert_eq!(v["config"]["provider"], Value::Null);
    assert_eq!(v["config"]["info"]["provider"]["name"], "PW Only");

    // The same domain with the fallback disabled: nothing published.
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let out = pacc(&[
        "discover",
        "carol@hosted.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--json",
        "--no-mx-fallback",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "no-such-host");
}

#[tokio::test]
async fn probe_json_against_real_daemons() {
    use pacc_testbed::peers::{self, Dovecot, Radicale};
    if !["dovecot", "radicale"].iter().all(|p| peers::available(p)) {
        eprintln!("SKIPPED: needs dovecot and radicale (.ci/run installs them)");
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let _dovecot = Dovecot::start(&tb, &["imap.example.test", "sieve.example.test"])
        .await
        .unwrap();
    let _radicale = Radicale::start(&tb, &["dav.example.test"]).await.unwrap();
    // pop.example.test points at an address where nothing listens: one service down.
    tb.dns
        .add_a(
            "pop.example.test",
            std::net::Ipv4Addr::new(127, 255, 254, 253),
        )
        .await
        .unwrap();
    let good = br#"{"protocols":{"imap":{"host":"imap.example.test"},"managesieve":{"host":"sieve.example.test"},"caldav":{"url":"https://dav.example.test/cal/"}},"authentication":{"password":true},"info":{"provider":{"name":"Probe"}}}"#;
    let _p = tb.provider("probe.test", good).await.unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let out = pacc(&[
        "probe",
        "u@probe.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--json",
        "--timeout",
        "10",
    ])
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["discovery"]["ok"], true);
    let services = v["services"].as_array().unwrap();
    assert_eq!(services.len(), 3);
    let imap = services.iter().find(|s| s["service"] == "imap").unwrap();
    assert_eq!(imap["status"], "reachable");
    assert_eq!(
        imap["offered"]["mechanisms"],
        serde_json::json!(["PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"])
    );
    assert_eq!(imap["usable"], "password", "no issuer published: no OAuth");
    let dav = services.iter().find(|s| s["service"] == "caldav").unwrap();
    assert_eq!(dav["offered"]["challenges"][0]["scheme"], "Basic");

    let with_pop = br#"{"protocols":{"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"}},"authentication":{"password":true},"info":{"provider":{"name":"Probe"}}}"#;
    let _q = tb.provider("down.test", with_pop).await.unwrap();
    let out = pacc(&[
        "probe",
        "u@down.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--json",
        "--timeout",
        "5",
    ])
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(5), "{v}");
    assert_eq!(v["ok"], false);
    let pop = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "pop3")
        .unwrap();
    assert_eq!(pop["status"], "unreachable");
    assert_eq!(pop["kind"], "connect-failed");

    // Human output: a table row per service.
    let out = pacc(&[
        "probe",
        "u@down.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--timeout",
        "5",
    ])
    .await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("imap.example.test:993") && text.contains("UNREACHABLE"),
        "{text}"
    );
    assert!(text.contains("no credential was sent"), "{text}");
}

const PROVIDER: &str = r#"[[document]]
domains = ["served.test"]
[document.services]
imap = "imap.served.test"
[document.provider]
name = "Served One"
[document.tls]
cert = "c.pem"
key = "k.pem"
"#;

/// `render` → DNS → `pacc serve` (a real process) → `pacc discover`, then SIGHUP reloads,
/// a broken file is refused, `check --expect` sees drift and rotation, SIGTERM stops.
#[tokio::test]
async fn serve_reload_check_and_render_as_processes() {
    let tb = Testbed::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let leaf = tb
        .ca
        .issue(
            &["ua-auto-config.served.test".into()],
            pacc_testbed::CertKind::Valid,
        )
        .unwrap();
    std::fs::write(dir.path().join("c.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("k.pem"), &leaf.key_pem).unwrap();
    let desc = dir.path().join("provider.toml");
    std::fs::write(&desc, PROVIDER).unwrap();
    let desc_s = desc.to_str().unwrap().to_owned();

    // render --json gives the records to publish.
    let out = pacc(&["render", &desc_s, "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["publications"][0];
    assert_eq!(p["txt_owner"], "_ua-auto-config.served.test");
    let record = p["txt"][0].as_str().unwrap().to_owned();
    // render --domain prints exactly the bytes, whose digest is that record.
    let bytes = pacc(&["render", &desc_s, "--domain", "served.test"])
        .await
        .stdout;
    assert_eq!(pacc_testbed::sha256_record(&bytes), record);
    assert_eq!(p["document"].as_str().unwrap().as_bytes(), bytes.as_slice());

    let ip = pacc_testbed::free_loopback_ip(&[443]).await.unwrap();
    tb.dns
        .add_a("ua-auto-config.served.test", ip)
        .await
        .unwrap();
    tb.publish_txt("served.test", &record).await.unwrap();
    let server = tokio::process::Command::new(PACC)
        .args(["serve", &desc_s, "--listen", &format!("{ip}:443")])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_port(ip, 443).await;
    let (code, v) = discover_json(&tb, "u@served.test").await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["config"]["info"]["provider"]["name"], "Served One");

    // check --expect: in step.
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let out = pacc(&[
        "check",
        "served.test",
        "--expect",
        &desc_s,
        "--no-probe",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--json",
    ])
    .await;
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{c}");
    assert!(
        c["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["area"] == "rotation" && f["verdict"] == "PASS"),
        "{c}"
    );

    // A new description: publish its record first (rotation stage 1), then SIGHUP.
    std::fs::write(&desc, PROVIDER.replace("Served One", "Served Two")).unwrap();
    let new_bytes = pacc(&["render", &desc_s, "--domain", "served.test"])
        .await
        .stdout;
    tb.publish_txt("served.test", &pacc_testbed::sha256_record(&new_bytes))
        .await
        .unwrap();
    let out = pacc(&[
        "check",
        "served.test",
        "--expect",
        &desc_s,
        "--no-probe",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
    ])
    .await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("rollover stage 1 done"), "{text}");
    let rotate = String::from_utf8(
        pacc(&[
            "rotate",
            &desc_s,
            "--domain",
            "served.test",
            "--current",
            &record,
            "--dns",
            &dns,
        ])
        .await
        .stdout,
    )
    .unwrap();
    assert!(
        rotate.contains("1. Publish") && rotate.contains(&record),
        "{rotate}"
    );
    let pid = server.id().unwrap().to_string();
    let hup = |pid: &str| {
        std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .unwrap()
    };
    assert!(hup(&pid).success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, v) = discover_json(&tb, "u@served.test").await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["config"]["info"]["provider"]["name"], "Served Two",
        "reloaded on SIGHUP"
    );
    let out = pacc(&[
        "check",
        "served.test",
        "--expect",
        &desc_s,
        "--no-probe",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
    ])
    .await;
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("rollover stage 2 done")
    );

    // A broken description is refused; the last good one keeps serving.
    std::fs::write(&desc, "[[document]]\ndomains = [\"served.test\"]\n").unwrap();
    assert!(hup(&pid).success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, v) = discover_json(&tb, "u@served.test").await;
    assert_eq!(
        (code, v["config"]["info"]["provider"]["name"].clone()),
        (0, Value::from("Served Two"))
    );

    // SIGTERM: graceful exit 0, and the log told what happened.
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        server.wait_with_output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("reloaded") && log.contains("reload refused") && log.contains("missing field"),
        "{log}"
    );

    // check on a domain with nothing: FAIL and exit 1.
    let out = pacc(&[
        "check",
        "nothing.test",
        "--no-probe",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
}

/// Wait (at most 5 s) until something listens on `ip:port`.
async fn wait_for_port(ip: std::net::Ipv4Addr, port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect((ip, port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn pacc_stdin(args: &[&str], input: &str) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(PACC)
        .args(args)
        .env("PACC_DATA_DIR", data_dir())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn setup_with_a_password_non_interactively() {
    use pacc_testbed::peers::{self, Dovecot, Radicale};
    if !["dovecot", "radicale"].iter().all(|p| peers::available(p)) {
        eprintln!("SKIPPED: needs dovecot and radicale (.ci/run installs them)");
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let dovecot = Dovecot::start(&tb, &["imap.example.test", "pop.example.test"])
        .await
        .unwrap();
    let _radicale = Radicale::start(&tb, &["dav.example.test"]).await.unwrap();
    let doc = br#"{"protocols":{"imap":{"host":"imap.example.test"},"pop3":{"host":"pop.example.test"},"caldav":{"url":"https://dav.example.test/alice@example.test/"}},"authentication":{"password":true},"info":{"provider":{"name":"Setup"}}}"#;
    let _p = tb.provider("example.test", doc).await.unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let base = [
        "setup",
        "alice@example.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--password-stdin",
        "--json",
    ];

    // The wrong domains: nothing is sent.
    let mut args = base.to_vec();
    args.extend(["--accept-domains", "example.com"]);
    let out = pacc_stdin(&args, "alice-secret\n").await;
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["confirmation"]["groups"][0]["domain"], "example.test");
    assert!(v["validations"].as_array().unwrap().is_empty());
    // No confirmation at all (not a terminal, no --accept-domains): nothing is sent either.
    let out = pacc_stdin(&base, "alice-secret\n").await;
    assert_eq!(out.status.code(), Some(7));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(dovecot.dir().join("dovecot.log")).unwrap_or_default();
    assert!(
        !log.contains("user=<alice@example.test>"),
        "no sign-in reached Dovecot before confirmation:\n{log}"
    );

    // Confirmed: every service works and the account description lists them.
    let mut args = base.to_vec();
    args.extend(["--accept-domains", "example.test"]);
    let out = pacc_stdin(&args, "alice-secret\n").await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v}");
    let accounts = v["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 3);
    let imap = accounts.iter().find(|a| a["service"] == "imap").unwrap();
    assert_eq!(
        (
            imap["host"].as_str(),
            imap["port"].as_u64(),
            imap["username"].as_str()
        ),
        (
            Some("imap.example.test"),
            Some(993),
            Some("alice@example.test")
        )
    );
    assert_eq!(imap["mechanism"], "PLAIN");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("alice-secret"),
        "the password never appears in the output"
    );

    // A wrong password: exit 6, the credentials class.
    let out = pacc_stdin(&args, "wrong\n").await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(6), "{v}");
    assert!(
        v["validations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["class"] == "credentials"),
        "{v}"
    );
}

#[tokio::test]
async fn setup_with_oauth_through_the_printed_url() {
    use pacc_testbed::peers::{self, AuthServer, Dovecot};
    use tokio::io::AsyncBufReadExt as _;
    if !(peers::available("dovecot") && peers::auth_server_available()) {
        eprintln!(
            "SKIPPED: needs dovecot, node and testdata/oidc/node_modules (.ci/run installs them)"
        );
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
    let doc = br#"{"protocols":{"imap":{"host":"imap.example.test"}},"authentication":{"password":false,"oauth-public":{"issuer":"https://auth.example.test"}},"info":{"provider":{"name":"OAuth only"}}}"#;
    let _p = tb.provider("example.test", doc).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let token_path = data.path().join("tokens.json").to_str().unwrap().to_owned();
    // #12 (2): an existing, world-readable token file becomes 0600 before a token is written.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(&token_path, "old").unwrap();
        std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let mut child = tokio::process::Command::new(PACC)
        .args([
            "setup",
            "alice@example.test",
            "--dns",
            &dns,
            "--ca-file",
            &ca,
            "--accept-domains",
            "example.test",
            "--no-browser",
            "--json",
            "--browser-timeout",
            "30",
            "--token-file",
            &token_path,
        ])
        .env("PACC_DATA_DIR", data.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.starts_with("https://auth.example.test/") {
                return Some(line);
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("the authorization URL is printed");
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("state="),
        "{url}"
    );
    let as_addr = std::net::SocketAddr::new(auth.ip().into(), 443);
    pacc_testbed::browser::authorize(
        &url,
        as_addr,
        tb.ca.cert_der(),
        "alice@example.test",
        "alice-secret",
    )
    .await
    .expect("browser sign-in");
    let out = child.wait_with_output().await.unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["oauth"]["issuer"], "https://auth.example.test");
    assert!(
        v["oauth"]["client_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        v["oauth"].get("access_token").is_none(),
        "tokens only with --show-secrets"
    );
    assert_eq!(v["accounts"][0]["mechanism"], "OAUTHBEARER");
    let hosts: Vec<&str> = v["confirmation"]["groups"][0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(
        hosts.contains(&"auth.example.test"),
        "the issuer host was confirmed: {hosts:?}"
    );
    // The tokens went only to the file the user named, readable by the user alone.
    use std::os::unix::fs::PermissionsExt as _;
    let tokens = data.path().join("tokens.json");
    let listing: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        tokens.exists(),
        "{listing:?} stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&tokens).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&tokens).unwrap()).unwrap();
    let access = t["access_token"].as_str().unwrap();
    assert!(
        !access.is_empty()
            && !String::from_utf8_lossy(&out.stdout).contains(access)
            && !String::from_utf8_lossy(&out.stderr).contains(access)
    );
    let stored = std::fs::read_to_string(data.path().join("clients.json")).unwrap();
    assert!(stored.contains(v["oauth"]["client_id"].as_str().unwrap()));
}

/// The interactive path on a real terminal (a pty from util-linux `script`): the user sees
/// the hosts, answers the question, types the password without echo.
#[tokio::test]
async fn setup_interactively_on_a_terminal() {
    use pacc_testbed::peers::{self, Dovecot};
    if !(peers::available("dovecot") && peers::available("script")) {
        eprintln!("SKIPPED: needs dovecot and util-linux script");
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let _dovecot = Dovecot::start(&tb, &["imap.example.test"]).await.unwrap();
    let doc = br#"{"protocols":{"imap":{"host":"imap.example.test"}},"authentication":{"password":true},"info":{"provider":{"name":"TTY"}}}"#;
    let _p = tb.provider("example.test", doc).await.unwrap();
    let cmd = format!(
        "{PACC} setup alice@example.test --dns {} --ca-file {}",
        tb.dns_addr(),
        tb.ca_file().display()
    );
    for (answer, code) in [("n", 7), ("y", 0), ("cancel", 7)] {
        let (status, screen) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut child = tokio::process::Command::new("script")
                .args(["-qec", &cmd, "/dev/null"])
                .env("PACC_DATA_DIR", data_dir())
                .env_remove("DBUS_SESSION_BUS_ADDRESS")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut screen = Vec::new();
            // Read the terminal until `prompt` shows, then type `line`.
            async fn wait_for(
                stdout: &mut tokio::process::ChildStdout,
                screen: &mut Vec<u8>,
                prompt: &str,
            ) {
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(screen).contains(prompt) {
                    let n = stdout.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    screen.extend_from_slice(&buf[..n]);
                }
            }
            wait_for(&mut stdout, &mut screen, "[y/N]").await;
            let yes = answer != "n";
            let _ = stdin.write_all(if yes { b"y\n" } else { b"n\n" }).await;
            if yes {
                wait_for(&mut stdout, &mut screen, "Password:").await;
                // Ctrl-C at the prompt cancels; otherwise type the password.
                let keys: &[u8] = if answer == "cancel" {
                    b"alice-sec\x03"
                } else {
                    b"alice-secret\n"
                };
                let _ = stdin.write_all(keys).await;
            }
            let _ = stdout.read_to_end(&mut screen).await;
            drop(stdin);
            (
                child.wait().await.unwrap(),
                String::from_utf8_lossy(&screen).into_owned(),
            )
        })
        .await
        .expect("finished");
        assert_eq!(status.code(), Some(code), "{answer}: {screen}");
        assert!(
            screen.contains("Your credentials would be sent to these domains:")
                && screen.contains("imap.example.test"),
            "{screen}"
        );
        assert!(
            screen.contains("Sign in to these servers? [y/N]"),
            "{screen}"
        );
        assert!(
            !screen.contains("alice-secret"),
            "the password is never echoed or printed: {screen}"
        );
        if code == 0 {
            assert!(
                screen.contains("Password:") && screen.contains("ok     IMAP"),
                "{screen}"
            );
        }
        if answer == "n" {
            // #10 (4): declining is an ordinary outcome: one line, no error prefix.
            assert!(
                screen.contains("Not confirmed; nothing was sent.") && !screen.contains("error:"),
                "{screen}"
            );
            assert_eq!(
                screen.matches("Your credentials would be sent").count(),
                1,
                "{screen}"
            );
        }
        if answer == "cancel" {
            assert!(
                screen.contains("Cancelled; nothing was sent.")
                    && !screen.contains("ok     IMAP")
                    && !screen.contains("FAILED IMAP"),
                "{screen}"
            );
            assert!(!screen.contains("alice-sec"), "{screen}");
        }
    }
}

/// #11 (2): `--timeout` bounds the whole command. The document arrives after 1.2 s and the
/// only service never answers: with `--timeout 2`, probe, setup and check all end at about
/// 2 s (each phase got what was left), and the JSON says where the time went.
#[tokio::test]
async fn the_timeout_bounds_the_whole_command() {
    use pacc_testbed::{CertKind, ScriptStep, ScriptedServer};
    let tb = Testbed::start().await.unwrap();
    let doc =
        br#"{"protocols":{"imap":{"host":"imap.slow.test"}},"authentication":{"password":true}}"#;
    let _s = tb
        .https_host(
            &["ua-auto-config.slow.test"],
            Behaviour {
                delay: std::time::Duration::from_millis(1200),
                ..Behaviour::new(Reply::json(doc.to_vec()))
            },
        )
        .await
        .unwrap();
    tb.publish_txt("slow.test", &sha256_record(doc))
        .await
        .unwrap();
    let imap = ScriptedServer::start(
        &tb.ca,
        &["imap.slow.test"],
        993,
        true,
        CertKind::Valid,
        vec![ScriptStep::Stall],
    )
    .await
    .unwrap();
    let std::net::IpAddr::V4(ip) = imap.addr().ip() else {
        panic!()
    };
    tb.dns.add_a("imap.slow.test", ip).await.unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let net = ["--dns", &dns, "--ca-file", &ca, "--timeout", "2"];
    let limit = std::time::Duration::from_millis(2700);
    for cmd in [
        vec!["probe", "u@slow.test", "--json"],
        vec![
            "setup",
            "u@slow.test",
            "--accept-domains",
            "slow.test",
            "--password-env",
            "PACC_TEST_NO_SUCH_VAR",
            "--json",
        ],
        vec!["check", "slow.test", "--json"],
    ] {
        let args: Vec<&str> = cmd.iter().copied().chain(net).collect();
        let started = std::time::Instant::now();
        let out = pacc(&args).await;
        let took = started.elapsed();
        assert!(took <= limit, "{cmd:?} took {took:?} with --timeout 2");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{cmd:?}: {e}: {stdout}"));
        let phases = &v["phases"];
        assert!(
            phases["discovery_ms"].as_u64().unwrap() >= 1000,
            "{cmd:?}: {phases}"
        );
        assert!(
            phases["probe_ms"].as_u64().unwrap() <= 1200,
            "{cmd:?}: {phases}"
        );
        assert!(
            phases["total_ms"].as_u64().unwrap() <= 2600,
            "{cmd:?}: {phases}"
        );
    }
}

/// #11 (3): an address with a line break never gets as far as DNS.
#[tokio::test]
async fn addresses_with_control_characters_are_usage_errors() {
    for bad in [
        "alice@\r\nexample.test",
        "alice@example.test\n",
        "alice@ example.test",
    ] {
        let out = pacc(&["discover", bad, "--dns", "127.0.0.1:9", "--timeout", "1"]).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("control character") || err.contains("white space"),
            "{bad:?}: {err}"
        );
    }
}

/// A closed pipe ends the program quietly (`pacc render --json … | head -c0`): no panic, no
/// message, exit 0.
#[tokio::test]
async fn a_closed_pipe_ends_quietly() {
    let desc = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/providers/tv1.toml"
    );
    for args in [vec!["render", desc, "--json"], vec!["render", desc]] {
        let mut child = tokio::process::Command::new(PACC)
            .args(&args)
            .env("PACC_DATA_DIR", data_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before pacc writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Issue 14.4: with `--json`, exactly one JSON object on stdout whatever happens: usage
/// errors after `--json` was seen, a bad address, an unreadable `--ca-file`.
#[tokio::test]
async fn every_json_path_prints_exactly_one_object() {
    for (args, kind) in [
        (
            vec!["discover", "not-an-address", "--json"],
            "invalid-address",
        ),
        (vec!["discover", "--json", "a@b.test", "--bogus"], "usage"),
        (
            vec![
                "discover",
                "a@b.test",
                "--ca-file",
                "/nonexistent/ca.pem",
                "--json",
            ],
            "ca-file",
        ),
        (
            vec!["probe", "user@[192.0.2.1]", "--json"],
            "invalid-address",
        ),
        (vec!["setup", "--json"], "usage"),
        (
            vec!["discover", "a@b.test", "--timeout", "0", "--json"],
            "usage",
        ),
    ] {
        let out = pacc(&args).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut objects = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
        let v = objects
            .next()
            .unwrap_or_else(|| panic!("{args:?}: no JSON on stdout"))
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"));
        assert!(
            objects.next().is_none(),
            "{args:?}: one object only: {stdout}"
        );
        assert_eq!(v["ok"], false, "{args:?}");
        assert_eq!(v["version"], 1);
        assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(v["exit_code"], 2);
        // The human message is still on stderr.
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

/// Issue 14.2: a provider's name with ESC and a bidi override is escaped in human output
/// (never a terminal command) and exact in JSON.
#[tokio::test]
async fn untrusted_text_is_escaped_for_the_terminal() {
    let tb = Testbed::start().await.unwrap();
    let doc = "{\"protocols\":{\"imap\":{\"host\":\"imap.evil.test\"}},\"info\":{\"provider\":{\"name\":\"Evil\\u001b]0;owned\\u0007 \\u202egnp.exe\"}}}";
    let _p = tb.provider("evil.test", doc.as_bytes()).await.unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let base = [
        "a@evil.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--timeout",
        "3",
    ];
    for cmd in ["discover", "probe"] {
        let mut args = vec![cmd];
        args.extend(base);
        let out = pacc(&args).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Evil"), "{cmd}: {stdout}");
        for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
            assert!(
                !stdout.contains(bad),
                "{cmd}: raw {bad:?} on the terminal: {stdout:?}"
            );
        }
        assert!(
            stdout.contains("\\u{001B}") && stdout.contains("\\u{202E}"),
            "{cmd}: {stdout}"
        );
    }
    let (_, v) = discover_json(&tb, "a@evil.test").await;
    assert_eq!(
        v["config"]["info"]["provider"]["name"],
        "Evil\u{1b}]0;owned\u{7} \u{202e}gnp.exe"
    );
}

/// Issue 14.7: completions, a man page, a version that says what was built, and `--dns`
/// with the port optional.
#[tokio::test]
async fn completions_man_version_and_dns_forms() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = pacc(&["completions", shell]).await;
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("discover") && script.contains("setup"),
            "{shell}: {script}"
        );
    }
    let man = pacc(&["man"]).await;
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.contains(".TH pacc 1") && man.contains("discover"),
        "{man}"
    );
    let v = pacc(&["--version"]).await;
    let v = String::from_utf8_lossy(&v.stdout);
    assert!(v.contains("commit ") && v.contains("features: "), "{v}");
    assert!(v.contains("keyring"), "{v}");
    // IP alone means port 53; IPv6 with a port in brackets; anything else is refused.
    let tb = Testbed::start().await.unwrap();
    let ip = tb.dns_addr().ip().to_string();
    assert_eq!(tb.dns_addr().port(), 53);
    let out = pacc(&[
        "discover",
        "a@nothing.test",
        "--dns",
        &ip,
        "--json",
        "--timeout",
        "3",
    ])
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(v["error"]["kind"], "usage", "{v}");
    assert_eq!(v["domain"], "nothing.test", "{v}");
    for good in ["[::1]:5353", "::1", "127.0.0.1:5353"] {
        let out = pacc(&[
            "discover",
            "a@b.test",
            "--dns",
            good,
            "--timeout",
            "0.2",
            "--json",
        ])
        .await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_ne!(v["error"]["kind"], "usage", "{good}: {v}");
    }
    let out = pacc(&["discover", "a@b.test", "--dns", "dns.example", "--json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("IP (port 53)"),
        "{v}"
    );
}

/// Issue 14.3: errors that teach.
#[tokio::test]
async fn errors_that_teach() {
    // A single label or a public suffix is refused before anything is sent.
    for (address, expect) in [
        ("user@localhost", "single label"),
        ("user@com", "single label"),
        ("user@co.uk", "public suffix"),
        ("user@com.au", "public suffix"),
    ] {
        let out = pacc(&["discover", address]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{address}: {stderr}");
        assert!(stderr.contains(expect), "{address}: {stderr}");
    }
    // A registrable domain under such a suffix is fine.
    let out = pacc(&[
        "discover",
        "user@example.co.uk",
        "--dns",
        "127.0.0.1:9",
        "--json",
    ])
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["domain"], "example.co.uk", "{v}");

    // A DNS server that refuses: at once, naming the server and the OS error.
    let started = std::time::Instant::now();
    let out = pacc(&[
        "discover",
        "a@example.com",
        "--dns",
        "127.0.0.1:9",
        "--timeout",
        "10",
        "--json",
    ])
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "dns-unreachable", "{v}");
    assert_eq!(v["error"]["class"], "temporary");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.1:9") && message.contains("refused"),
        "{message}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "at once, not at the 10 s deadline"
    );
    assert_eq!(out.status.code(), Some(4));

    // A domain that does not exist: say so, not "nothing is published".
    let tb = Testbed::start().await.unwrap();
    let (code, v) = discover_json(&tb, "a@exmaple-typo.test").await;
    assert_eq!(v["error"]["kind"], "domain-not-found", "{v}");
    assert_eq!(code, 1);
    let dns = tb.dns_addr().to_string();
    let out = pacc(&[
        "discover",
        "a@exmaple-typo.test",
        "--dns",
        &dns,
        "--timeout",
        "3",
    ])
    .await;
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("exmaple-typo.test does not exist in DNS"),
        "{human}"
    );
    assert!(human.contains("spelling"), "{human}");
}

/// Issue 14.6: the trail gives no TXT verdict for a document that never arrived.
#[tokio::test]
async fn no_digest_verdict_without_a_document() {
    let tb = Testbed::start().await.unwrap();
    let _s = tb
        .https_host(
            &["ua-auto-config.gone.test"],
            pacc_testbed::Behaviour::new(pacc_testbed::Reply::status(404)),
        )
        .await
        .unwrap();
    tb.publish_txt("gone.test", &pacc_testbed::sha256_record(b"{}"))
        .await
        .unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let out = pacc(&[
        "discover",
        "a@gone.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--timeout",
        "3",
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[valid, not compared: no document]"),
        "{text}"
    );
    assert!(
        !text.contains("[no match]") && !text.contains("[match]"),
        "{text}"
    );
}

/// Issue 14.1: colour per stream and only where asked; no ANSI in logs off a terminal;
/// `--quiet`; issue 14.4: Ctrl-C on a `--json` run still prints its one object.
#[tokio::test]
async fn colour_quiet_and_interrupted_runs() {
    let tb = Testbed::start().await.unwrap();
    let _p = tb
        .provider(
            "colour.test",
            br#"{"protocols":{"imap":{"host":"imap.colour.test"}}}"#,
        )
        .await
        .unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let check = |extra: &'static [&'static str], env: &'static [(&'static str, &'static str)]| {
        let dns = dns.clone();
        let ca = ca.clone();
        async move {
            let mut cmd = tokio::process::Command::new(PACC);
            cmd.args([
                "check",
                "colour.test",
                "--dns",
                &dns,
                "--ca-file",
                &ca,
                "--timeout",
                "3",
            ])
            .args(extra)
            .env("PACC_DATA_DIR", data_dir())
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE");
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.output().await.unwrap()
        }
    };
    // Piped: no colour by default, colour when forced, never with NO_COLOR or --color never.
    let plain = check(&[], &[]).await;
    assert!(
        !plain.stdout.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&plain.stdout)
    );
    let forced = check(&[], &[("CLICOLOR_FORCE", "1")]).await;
    assert!(String::from_utf8_lossy(&forced.stdout).contains("\u{1b}[32mPASS"));
    let always = check(&["--color", "always"], &[]).await;
    assert!(String::from_utf8_lossy(&always.stdout).contains("\u{1b}[32mPASS"));
    let no = check(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).await;
    assert!(!no.stdout.contains(&0x1b));
    let never = check(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]).await;
    assert!(!never.stdout.contains(&0x1b));
    // Logs into a pipe carry no ANSI codes.
    let out = pacc(&[
        "discover",
        "-v",
        "a@colour.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
    ])
    .await;
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("verified https://ua-auto-config.colour.test/"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log:?}");
    // --quiet: the result, nothing informational.
    let out = pacc(&[
        "--quiet",
        "discover",
        "a@colour.test",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
    ])
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified configuration"));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Ctrl-C during a stalled --json run: one object saying so, exit 130.
    let _stall = tb
        .https_host(
            &["ua-auto-config.stall.test"],
            Behaviour::new(Reply::NeverAnswer),
        )
        .await
        .unwrap();
    tb.publish_txt("stall.test", &sha256_record(b"{}"))
        .await
        .unwrap();
    let child = tokio::process::Command::new(PACC)
        .args([
            "discover",
            "a@stall.test",
            "--dns",
            &dns,
            "--ca-file",
            &ca,
            "--json",
            "--timeout",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let pid = child.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    assert_eq!(v["exit_code"], 130);
    // A reader that goes away ends every printing command quietly (no panic, exit 0).
    for args in [
        vec!["completions", "zsh"],
        vec!["man"],
        vec!["schema", "setup"],
        vec!["rpc", "--openrpc"],
    ] {
        for _ in 0..3 {
            let mut child = std::process::Command::new(PACC)
                .args(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{args:?}");
            assert!(
                out.stderr.is_empty(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The schemas are built in.
    let list = pacc(&["schema"]).await;
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 9);
    let setup = pacc(&["schema", "setup"]).await;
    let s: Value = serde_json::from_slice(&setup.stdout).unwrap();
    assert_eq!(s["$id"], "https://pacc.invalid/schema/setup.schema.json");
}

/// Issue 15.1: under systemd's `LoadCredential=certs:…`, `serve` takes its certificates
/// from $CREDENTIALS_DIRECTORY/certs (keys the dynamic user could not read in /etc/pacc).
#[tokio::test]
async fn serve_uses_the_systemd_credentials_directory() {
    let tb = Testbed::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let desc = dir.path().join("provider.toml");
    std::fs::write(
        &desc,
        "[[document]]\ndomains = [\"cred.test\"]\npassword = true\n[document.services]\nimap = \"imap.cred.test\"\n[document.provider]\nname = \"Credentials\"\n",
    )
    .unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir_all(creds.join("certs")).unwrap();
    let leaf = tb
        .ca
        .issue(
            &["ua-auto-config.cred.test".into()],
            pacc_testbed::CertKind::Valid,
        )
        .unwrap();
    let key_file = creds.join("certs").join("cred.pem");
    std::fs::write(&key_file, format!("{}{}", leaf.cert_pem, leaf.key_pem)).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let desc_s = desc.to_str().unwrap().to_owned();
    let out = pacc(&["render", &desc_s, "--json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let record = v["publications"][0]["txt"][0].as_str().unwrap().to_owned();
    let ip = pacc_testbed::free_loopback_ip(&[443]).await.unwrap();
    tb.dns.add_a("ua-auto-config.cred.test", ip).await.unwrap();
    tb.publish_txt("cred.test", &record).await.unwrap();
    // Without the credentials directory there is no certificate at all.
    let out = pacc(&["serve", &desc_s, "--listen", &format!("{ip}:443")]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no certificate covers ua-auto-config.cred.test")
    );
    // Issue 15.4: with the access log and the metrics listener on.
    let metrics = format!("{ip}:9464");
    let server = tokio::process::Command::new(PACC)
        .args([
            "serve",
            &desc_s,
            "--listen",
            &format!("{ip}:443"),
            "--access-log",
            "--metrics",
            &metrics,
        ])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_port(ip, 443).await;
    let (code, v) = discover_json(&tb, "u@cred.test").await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["config"]["info"]["provider"]["name"], "Credentials");
    // The metrics, in the Prometheus text format.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut m = tokio::net::TcpStream::connect(&metrics).await.unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    m.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(
            "pacc_serve_requests_total{status=\"200\",document=\"ua-auto-config.cred.test\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("pacc_serve_certificate_expiry_seconds{name=\"ua-auto-config.cred.test\"}"),
        "{text}"
    );
    assert!(text.contains("pacc_serve_domains 1"), "{text}");
    // SIGTERM, then the access log: one JSON line for the one request.
    let pid = server.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        server.wait_with_output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["sni"], "ua-auto-config.cred.test");
    assert_eq!(l["host"], "ua-auto-config.cred.test");
    assert_eq!(l["path"], "/.well-known/user-agent-configuration.json");
    assert_eq!(l["status"], 200);
    assert!(
        l["bytes"].as_u64().unwrap() > 0 && l["duration_us"].is_u64() && l["time"].is_f64(),
        "{l}"
    );
}

/// Issue 15.5: `render` refuses a description that leaves no way to sign in.
#[tokio::test]
async fn render_refuses_a_document_without_any_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let desc = dir.path().join("p.toml");
    let text = "[[document]]\ndomains = [\"a.test\"]\npassword = false\n[document.services]\nimap = \"imap.a.test\"\n[document.provider]\nname = \"A\"\n";
    std::fs::write(&desc, text).unwrap();
    let out = pacc(&["render", desc.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not sign in to any service"),
        "{stderr}"
    );
    std::fs::write(
        &desc,
        text.replace(
            "password = false\n",
            "password = false\noauth_issuer = \"https://auth.a.test\"\n",
        ),
    )
    .unwrap();
    let out = pacc(&["render", desc.to_str().unwrap()]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 15.5: `rotate --current` must be a real record, and the wait uses its TTL.
#[tokio::test]
async fn rotate_validates_current_and_waits_its_ttl() {
    let tv1 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/providers/tv1.toml"
    );
    let out = pacc(&[
        "rotate",
        tv1,
        "--domain",
        "tv1.example.test",
        "--current",
        "v=UAAC1; a=sha256; d=AAAA",
        "--offline",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is not a UAAC1 record (has a digest of the wrong length")
    );
    let old = sha256_record(b"the old document");
    let out = pacc(&[
        "rotate",
        tv1,
        "--domain",
        "tv1.example.test",
        "--current",
        &old,
        "--current-ttl",
        "86400",
        "--offline",
        "--json",
    ])
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["current_ttl_source"], "flag");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(steps.iter().any(|s| s.contains("86400 s")), "{steps:?}");
    assert!(
        steps.iter().any(|s| s.contains(&old)),
        "the retire step names it: {steps:?}"
    );
}

/// Issue 15.5: without --current, `rotate` finds the published records and their TTL in
/// DNS, asking the zone's authoritative server; a --current that is not published is named.
#[tokio::test]
async fn rotate_looks_up_the_published_records_and_their_ttl() {
    let tb = Testbed::start().await.unwrap();
    let tv1 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/providers/tv1.toml"
    );
    let dns = tb.dns_addr().to_string();
    let rotate = |extra: Vec<String>| {
        let dns = dns.clone();
        async move {
            let mut args: Vec<String> = [
                "rotate",
                tv1,
                "--domain",
                "tv1.example.test",
                "--dns",
                &dns,
                "--json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = pacc(&args).await;
            assert_eq!(out.status.code(), Some(0));
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    // Nothing published yet: a first publication, the description's TTL.
    let v = rotate(vec![]).await;
    assert_eq!(v["current"], serde_json::json!([]), "{v}");
    assert_eq!(v["current_ttl_source"], "description", "{v}");
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .contains("first publication"),
        "{v}"
    );
    // Published, and the zone names its server (the testbed's, TTL 300).
    let old = sha256_record(b"the old document");
    tb.publish_txt("tv1.example.test", &old).await.unwrap();
    tb.dns.add_ns(".", "ns.testbed.test").await.unwrap();
    let std::net::IpAddr::V4(ip) = tb.dns_addr().ip() else {
        panic!("testbed DNS on IPv4")
    };
    tb.dns.add_a("ns.testbed.test", ip).await.unwrap();
    let v = rotate(vec![]).await;
    assert_eq!(v["current"], serde_json::json!([old]), "{v}");
    assert_eq!(v["current_ttl"], 300, "{v}");
    assert_eq!(v["current_ttl_source"], "authoritative", "{v}");
    let steps = v["steps"].to_string();
    assert!(steps.contains("300 s") && steps.contains(&old), "{steps}");
    // A --current that is not what is published is named.
    let other = sha256_record(b"something else");
    let v = rotate(vec!["--current".into(), other.clone()]).await;
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains(&other)
                && n.as_str().unwrap().contains("not published")),
        "{v}"
    );
}

/// Issue 15.5: `check` names obsolete shapes still deployed and warns on `_` in tag names.
#[tokio::test]
async fn check_names_obsolete_shapes_and_odd_records() {
    let tb = Testbed::start().await.unwrap();
    let srv_era = br#"{"servers":[{"type":"imap","hostname":"imap.old.test"}],"oAuth2":{"issuer":"https://auth.old.test"}}"#;
    let _old = tb
        .https_host(
            &["ua-auto-config.old.test"],
            Behaviour::new(Reply::json(srv_era.to_vec())),
        )
        .await
        .unwrap();
    let doc =
        br#"{"protocols":{"imap":{"host":"imap.under.test"}},"info":{"provider":{"name":"U"}}}"#;
    let _u = tb.serve_document("under.test", doc).await.unwrap();
    tb.publish_txt("under.test", &format!("{}; x_y=1", sha256_record(doc)))
        .await
        .unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let check = |domain: &'static str| {
        let (dns, ca) = (dns.clone(), ca.clone());
        async move {
            let out = pacc(&[
                "check",
                domain,
                "--no-probe",
                "--dns",
                &dns,
                "--ca-file",
                &ca,
                "--json",
            ])
            .await;
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v["findings"].as_array().unwrap().clone()
        }
    };
    let old = check("old.test").await;
    assert!(
        old.iter().any(|f| f["area"] == "obsolete"
            && f["verdict"] == "WARN"
            && f["message"].as_str().unwrap().contains("SRV-era")
            && f["message"]
                .as_str()
                .unwrap()
                .contains("/.well-known/pacc.json")),
        "{old:?}"
    );
    // A certificate that expires in 5 days is a warning.
    let soon =
        br#"{"protocols":{"imap":{"host":"imap.soon.test"}},"info":{"provider":{"name":"S"}}}"#;
    let mut behaviour = Behaviour::new(Reply::json(soon.to_vec()));
    behaviour.cert = pacc_testbed::CertKind::ValidForDays(5);
    let _soon = tb
        .https_host(&["ua-auto-config.soon.test"], behaviour)
        .await
        .unwrap();
    tb.publish_txt("soon.test", &sha256_record(soon))
        .await
        .unwrap();
    let soon = check("soon.test").await;
    assert!(
        soon.iter().any(|f| f["area"] == "certificate"
            && f["verdict"] == "WARN"
            && f["message"].as_str().unwrap().contains("expires in ")),
        "{soon:?}"
    );
    let under = check("under.test").await;
    assert!(
        !under.iter().any(|f| f["area"] == "certificate"),
        "{under:?}"
    );
    assert!(
        under
            .iter()
            .any(|f| f["verdict"] == "WARN" && f["message"].as_str().unwrap().contains("x_y")),
        "{under:?}"
    );
    assert!(!under.iter().any(|f| f["area"] == "obsolete"), "{under:?}");
}

/// Issue 15.3: `check --domains FILE` checks every domain concurrently: one line (JSON Lines
/// with --json) per domain and a summary; exit 1 when any fails.
#[tokio::test]
async fn fleet_check_reports_every_domain() {
    let tb = Testbed::start().await.unwrap();
    let doc = br#"{"protocols":{"imap":{"host":"imap.fleet.test"}},"authentication":{"password":true},"info":{"provider":{"name":"Fleet"}}}"#;
    let mut keep = Vec::new();
    for d in ["a.fleet.test", "b.fleet.test", "c.fleet.test"] {
        keep.push(tb.provider(d, doc).await.unwrap());
    }
    keep.push(tb.serve_document("bad.fleet.test", doc).await.unwrap());
    tb.publish_txt("bad.fleet.test", &sha256_record(b"other"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("domains.txt");
    std::fs::write(
        &list,
        "# customers\na.fleet.test\nb.fleet.test\n\nc.fleet.test  # the third\nbad.fleet.test\nmissing.fleet.test\n",
    )
    .unwrap();
    let dns = tb.dns_addr().to_string();
    let ca = tb.ca_file().to_str().unwrap().to_owned();
    let base = [
        "check",
        "--domains",
        list.to_str().unwrap(),
        "--no-probe",
        "--dns",
        &dns,
        "--ca-file",
        &ca,
        "--jobs",
        "3",
    ];
    let mut args = base.to_vec();
    args.push("--json");
    let out = pacc(&args).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    let by_domain = |d: &str| {
        lines
            .iter()
            .find(|v| v["domain"] == d)
            .unwrap_or_else(|| panic!("{d}: {text}"))
    };
    for d in ["a.fleet.test", "b.fleet.test", "c.fleet.test"] {
        assert_eq!(by_domain(d)["ok"], true, "{d}");
    }
    assert_eq!(by_domain("bad.fleet.test")["ok"], false);
    assert_eq!(by_domain("missing.fleet.test")["ok"], false);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["domains"], 5);
    assert_eq!(summary["ok"], 3);
    assert_eq!(summary["failed"], 2);
    let out = pacc(&base).await;
    let human = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        human.lines().filter(|l| l.starts_with("PASS  ")).count(),
        3,
        "{human}"
    );
    assert!(
        human.contains("FAIL  missing.fleet.test  missing.fleet.test does not exist in DNS"),
        "{human}"
    );
    assert!(human.contains("5 domain(s): 3 ok, 2 failing"), "{human}");
}

/// Issue 15.2 end to end: `pacc serve` (a real process) with `[acme]` and no certificate at
/// all gets one from Pebble by TLS-ALPN-01 on its listener, reports the order in its
/// metrics, and `pacc discover` — trusting only Pebble's root — verifies the document.
#[tokio::test]
async fn serve_with_acme_obtains_its_certificate_and_clients_verify_it() {
    use pacc_testbed::peers::{self, Pebble, PebbleOptions};
    if !peers::available("pebble") {
        eprintln!("SKIPPED: needs pebble (.ci/run installs it)");
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let ip = pacc_testbed::free_loopback_ip(&[443, 9100]).await.unwrap();
    tb.dns.add_a("ua-auto-config.acme.test", ip).await.unwrap();
    let pebble = Pebble::start(
        &tb,
        &PebbleOptions {
            tls_port: 443,
            ..PebbleOptions::default()
        },
    )
    .await
    .expect("pebble");
    let dir = tempfile::tempdir().unwrap();
    let desc = dir.path().join("provider.toml");
    std::fs::write(
        &desc,
        format!(
            "[[document]]\ndomains = [\"acme.test\"]\n[document.services]\nimap = \"imap.acme.test\"\n[document.provider]\nname = \"By ACME\"\n[acme]\ndirectory = \"{}\"\nstorage = \"acme\"\nca_file = \"{}\"\n",
            pebble.directory(),
            pebble.api_ca_file().display()
        ),
    )
    .unwrap();
    let desc_s = desc.to_str().unwrap().to_owned();
    let out = pacc(&["render", &desc_s, "--json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let record = v["publications"][0]["txt"][0].as_str().unwrap().to_owned();
    tb.publish_txt("acme.test", &record).await.unwrap();
    let mut server = tokio::process::Command::new(PACC)
        .env_remove("PACC_LOG")
        .args([
            "serve",
            &desc_s,
            "--listen",
            &format!("{ip}:443"),
            "--metrics",
            &format!("{ip}:9100"),
        ])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_port(ip, 9100).await;
    let metrics = || async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect((ip, 9100)).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = metrics().await;
        if m.contains("pacc_serve_acme_orders_total{result=\"valid\"} 1") {
            assert!(
                m.contains(
                    "pacc_serve_certificate_expiry_seconds{name=\"ua-auto-config.acme.test\"}"
                ),
                "{m}"
            );
            break;
        }
        if std::time::Instant::now() > until {
            let _ = server.start_kill();
            let err = server.wait_with_output().await.unwrap().stderr;
            panic!(
                "no certificate within 30 s:\n{m}\nserve said:\n{}\nPebble said:\n{}",
                String::from_utf8_lossy(&err),
                pebble.log()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let root = dir.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem(&tb).await.unwrap()).unwrap();
    let dns = tb.dns_addr().to_string();
    let out = pacc(&[
        "discover",
        "u@acme.test",
        "--dns",
        &dns,
        "--ca-file",
        root.to_str().unwrap(),
        "--json",
    ])
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["config"]["info"]["provider"]["name"], "By ACME");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().unwrap().to_string()])
        .status();
    let done = tokio::time::timeout(std::time::Duration::from_secs(5), server.wait_with_output())
        .await
        .expect("serve stops on SIGTERM")
        .unwrap();
    assert_eq!(done.status.code(), Some(0));
    // The operator sees the order in the log.
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(
        log.contains("ACME: certificate issued") && log.contains("acme.test"),
        "{log}"
    );
}

/// A usage error quoting an argument with terminal controls in it (pasted from somewhere)
/// shows them escaped or stripped, never raw, also on a terminal (clap alone passes them
/// through there).
#[tokio::test]
async fn usage_errors_never_replay_terminal_controls() {
    if !pacc_testbed::peers::available("script") {
        eprintln!("SKIPPED: needs script(1) for a pseudo-terminal (util-linux)");
        return;
    }
    let out = tokio::process::Command::new("script")
        .args([
            "-qec",
            &format!("{PACC} check --jobs \"$(printf '1\\033]0;pwned\\007X')\" x.test"),
            "/dev/null",
        ])
        .env("PACC_DATA_DIR", data_dir())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("invalid value"), "{shown:?}");
    assert!(
        !shown.contains("\u{1b}]0;") && !shown.contains('\u{7}'),
        "the terminal got the controls: {shown:?}"
    );
    assert_eq!(out.status.code(), Some(2), "{shown:?}");
}
