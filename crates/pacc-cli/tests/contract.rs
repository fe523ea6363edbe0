//! The JSON contract (issue 14.4): real outputs of every command, on success and failure
//! paths, validated against the published schemas in docs/schema/ by an independent
//! validator (Python's `jsonschema`, draft 2020-12). A field renamed in code without the
//! schema fails here.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

use pacc_testbed::embedding::Provider;

const PACC: &str = env!("CARGO_BIN_EXE_pacc");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_output_matches_its_schema() {
    if !pacc_testbed::peers::python_with(&["jsonschema", "referencing"]) {
        return;
    }
    let Some(p) = Provider::start().await.unwrap() else {
        return;
    };
    let out_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dns = p.tb.dns_addr().to_string();
    let ca = p.tb.ca_file().to_str().unwrap().to_owned();
    let net = ["--dns", dns.as_str(), "--ca-file", ca.as_str()];
    let password = pacc_testbed::peers::USERS[0].1;
    let mut cases = 0;
    let mut record = |schema: &str, case: &str, args: &[&str], expect_code: i32| {
        let out = Command::new(PACC)
            .args(args)
            .env("PACC_DATA_DIR", data.path())
            .env("PACC_PASSWORD", password)
            .env("PACC_WRONG", "wrong-password")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(expect_code),
            "{schema}/{case} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{schema}/{case}: not one JSON object ({e})"));
        std::fs::write(
            out_dir.path().join(format!("{schema}__{case}.json")),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap();
        cases += 1;
    };
    let with = |base: &[&'static str], extra: &[&str]| -> Vec<String> {
        base.iter()
            .map(|s| (*s).to_owned())
            .chain(extra.iter().map(|s| (*s).to_owned()))
            .chain(net.iter().map(|s| (*s).to_owned()))
            .chain(["--json".to_owned(), "--timeout".to_owned(), "5".to_owned()])
            .collect()
    };
    macro_rules! run {
        ($schema:expr, $case:expr, $code:expr, $($arg:expr),+) => {{
            let args = with(&[$($arg),+], &[]);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            record($schema, $case, &refs, $code);
        }};
    }
    run!("discover", "ok", 0, "discover", "alice@example.test");
    run!(
        "discover",
        "integrity",
        3,
        "discover",
        "alice@tampered.test"
    );
    run!(
        "discover",
        "domain-not-found",
        1,
        "discover",
        "alice@nothing.test"
    );
    run!("probe", "ok", 0, "probe", "alice@example.test");
    run!(
        "probe",
        "discovery-failed",
        3,
        "probe",
        "alice@tampered.test"
    );
    run!(
        "setup",
        "ok",
        0,
        "setup",
        "alice@example.test",
        "--accept-domains",
        "example.test",
        "--password-env",
        "PACC_PASSWORD",
        "--store-secrets",
        "none"
    );
    run!(
        "setup",
        "wrong-password",
        6,
        "setup",
        "alice@example.test",
        "--accept-domains",
        "example.test",
        "--password-env",
        "PACC_WRONG",
        "--no-save"
    );
    run!(
        "setup",
        "not-confirmed",
        7,
        "setup",
        "alice@example.test",
        "--password-env",
        "PACC_PASSWORD"
    );
    run!(
        "setup",
        "mismatch",
        7,
        "setup",
        "alice@example.test",
        "--accept-domains",
        "other.test",
        "--password-env",
        "PACC_PASSWORD"
    );
    run!("check", "ok", 0, "check", "example.test");
    run!("check", "fail", 1, "check", "tampered.test");
    record("accounts", "list", &["accounts", "--json"], 0);
    record(
        "accounts-show",
        "saved",
        &["accounts", "show", "alice@example.test", "--json"],
        0,
    );
    for tv in ["tv1", "tv2", "tv3"] {
        let file = root().join(format!("testdata/providers/{tv}.toml"));
        record(
            "render",
            tv,
            &["render", file.to_str().unwrap(), "--json"],
            0,
        );
    }
    let tv1 = root().join("testdata/providers/tv1.toml");
    let tv1 = tv1.to_str().unwrap();
    let domain = "tv1.example.test";
    record(
        "rotate",
        "new",
        &["rotate", tv1, "--domain", domain, "--offline", "--json"],
        0,
    );
    let old = pacc_testbed::sha256_record(b"the old document");
    record(
        "rotate",
        "replacing",
        &[
            "rotate",
            tv1,
            "--domain",
            domain,
            "--current",
            &old,
            "--current-ttl",
            "86400",
            "--offline",
            "--json",
        ],
        0,
    );
    record("error", "usage", &["discover", "--bogus", "--json"], 2);
    record(
        "error",
        "invalid-address",
        &["probe", "not-an-address", "--json"],
        2,
    );
    record(
        "error",
        "ca-file",
        &[
            "setup",
            "a@b.test",
            "--ca-file",
            "/nonexistent.pem",
            "--json",
        ],
        2,
    );
    let out = Command::new("python3")
        .arg(root().join("docs/schema/validate.py"))
        .arg(out_dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "outputs that do not match their schema:\n{text}"
    );
    assert!(text.contains(&format!("{cases} outputs valid")), "{text}");
}
