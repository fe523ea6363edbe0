//! The examples run, against real peers: `examples/setup.rs` (the session API, the crate
//! docs' walk-through) and `examples/own_network.rs` (the sans-IO core driven by an app's own
//! DNS, TLS and HTTP).

use std::path::PathBuf;
use std::process::Command;

use pacc_testbed::Testbed;
use pacc_testbed::embedding::Provider;
use pacc_testbed::peers;

/// An example cargo built for this test run: `cargo test` builds every example as
/// target/<profile>/examples/NAME-<hash> (`cargo build --example` as NAME); the newest wins.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            (f == name || f.strip_prefix(name).is_some_and(|r| r.starts_with('-')))
                && !f.ends_with(".d")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| {
            panic!(
                "example {name} was not built in {} (plain `cargo test` builds the examples; a --test filter does not)",
                dir.display()
            )
        })
}

fn run(tb: &Testbed, name: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(example(name))
        .args(args)
        .args(["--dns", &tb.dns_addr().to_string()])
        .args(["--ca-file", tb.ca_file().to_str().unwrap()])
        .env("PACC_PASSWORD", peers::USERS[0].1)
        .env("PACC_DATA_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{name} {args:?}:\n{text}");
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_setup_example_signs_in_through_the_session_api() {
    let Some(p) = Provider::start().await.unwrap() else {
        return;
    };
    let tb = &p.tb;
    let (code, out) = run(tb, "setup", &["alice@example.test", "--yes"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("event discovered https://ua-auto-config.example.test/"));
    assert_eq!(out.matches("event probed").count(), 3, "{out}");
    // The confirmation names the host set before anything is sent.
    assert!(out.contains("example.test"));
    for s in ["imap", "pop3", "managesieve"] {
        assert!(
            out.contains(&format!("account {s} as alice@example.test")),
            "{out}"
        );
        assert!(
            out.contains(&format!("event signed-in {s} ok=true")),
            "{out}"
        );
    }
    assert!(out.contains("ok=true"));
    let log = p.log();
    assert_eq!(
        log.matches("Login: user=<alice@example.test>").count(),
        3,
        "{log}"
    );

    // A tampered document stops it with the integrity class.
    let (code, out) = run(tb, "setup", &["alice@tampered.test", "--yes"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("not verified: digest-mismatch (Integrity)"),
        "{out}"
    );

    // Cancelling a stalled discovery ends it at once.
    let started = std::time::Instant::now();
    let (code, out) = run(
        tb,
        "setup",
        &["alice@stall.test", "--yes", "--cancel-after-ms", "300"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("stopped: cancelled"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_own_network_example_drives_the_sans_io_core() {
    let Some(p) = Provider::start().await.unwrap() else {
        return;
    };
    let tb = &p.tb;
    let (code, out) = run(tb, "own_network", &["alice@example.test"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(
        "verified https://ua-auto-config.example.test/.well-known/user-agent-configuration.json"
    ));
    for (s, target) in [
        ("imap", "imap.example.test:993"),
        ("pop3", "pop.example.test:995"),
        ("managesieve", "sieve.example.test:4190"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("probe {s} {target}")))
            .unwrap_or_else(|| panic!("no probe line for {s}: {out}"));
        assert!(line.contains("offers") && line.contains("PLAIN"), "{line}");
    }
    let (code, out) = run(tb, "own_network", &["alice@tampered.test"]);
    assert_eq!(code, 1);
    assert!(out.contains("not verified: digest-mismatch"), "{out}");
}
