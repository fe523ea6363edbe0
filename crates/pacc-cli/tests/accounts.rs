//! Completing setup (issue 12): the saved account, secrets in a real Secret Service
//! (gnome-keyring on a private D-Bus), `pacc token` / `pacc password`, `accounts check`, and
//! exports proven by running the real clients against the real peers: mbsync syncs a
//! message from Dovecot, msmtp sends through Postfix (with a password and with an OAuth
//! token that `pacc token` refreshes after it expires), vdirsyncer syncs an event from
//! Radicale, NeoMutt loads its file; aerc, himalaya and the Thunderbird XML are parsed by
//! independent parsers.
//!
//! The clients resolve names through the system resolver, so the service hosts of these
//! tests have names of their own, added to /etc/hosts for the test's duration.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use pacc_testbed::peers::{self, AuthServer, Dovecot, Postfix, Radicale, SecretService};
use pacc_testbed::{Testbed, sha256_record};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

const PACC: &str = env!("CARGO_BIN_EXE_pacc");

/// Lines added to /etc/hosts, removed on drop.
struct Hosts(Vec<String>);

static HOSTS_LOCK: Mutex<()> = Mutex::new(());

impl Hosts {
    fn add(entries: &[(&str, std::net::Ipv4Addr)]) -> Hosts {
        let _g = HOSTS_LOCK.lock().unwrap();
        let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let lines: Vec<String> = entries
            .iter()
            .map(|(n, ip)| format!("{ip} {n} # pacc-test"))
            .collect();
        if !text.ends_with('\n') && !text.is_empty() {
            text.push('\n');
        }
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write("/etc/hosts", text).expect("root may write /etc/hosts");
        Hosts(lines)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _g = HOSTS_LOCK.lock().unwrap();
        if let Ok(text) = std::fs::read_to_string("/etc/hosts") {
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !self.0.iter().any(|x| x == l))
                .collect();
            let _ = std::fs::write("/etc/hosts", kept.join("\n") + "\n");
        }
    }
}

fn have(programs: &[&str]) -> bool {
    let missing: Vec<&&str> = programs.iter().filter(|p| !peers::available(p)).collect();
    if !missing.is_empty() {
        eprintln!("SKIPPED: needs {missing:?} (.ci/run installs them)");
    }
    missing.is_empty()
}

struct Env {
    data: tempfile::TempDir,
    home: tempfile::TempDir,
    bus: Option<String>,
    dns: String,
    ca: PathBuf,
}

impl Env {
    fn new(tb: &Testbed, keyring: Option<&SecretService>) -> Env {
        Env {
            data: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            bus: keyring.map(|k| k.bus_address().to_owned()),
            dns: tb.dns_addr().to_string(),
            ca: tb.ca_file().to_owned(),
        }
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(program);
        c.env("PACC_DATA_DIR", self.data.path())
            .env("HOME", self.home.path())
            .env("PACC_TEST_PW", "alice-secret")
            .env_remove("PACC_LOG")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // The clients run `pacc password|token` themselves: the same pacc, the same keyring.
        let path = format!(
            "{}:{}",
            Path::new(PACC).parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path);
        match &self.bus {
            Some(b) => c.env("DBUS_SESSION_BUS_ADDRESS", b),
            None => c.env_remove("DBUS_SESSION_BUS_ADDRESS"),
        };
        c
    }

    async fn pacc(&self, args: &[&str]) -> Output {
        self.command(PACC).args(args).output().await.unwrap()
    }

    async fn setup(&self, address: &str, domains: &str, extra: &[&str]) -> (Output, Value) {
        let mut args = vec![
            "setup",
            address,
            "--dns",
            &self.dns,
            "--ca-file",
            self.ca.to_str().unwrap(),
            "--accept-domains",
            domains,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.pacc(&args).await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, v)
    }

    async fn export(&self, address: &str, format: &str, extra: &[&str]) -> PathBuf {
        let path = self.home.path().join(format!("{format}.conf"));
        let mut args = vec![
            "export",
            address,
            "--format",
            format,
            "--output",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = self.pacc(&args).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "export {format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("alice-secret"),
            "no secret in the {format} file"
        );
        path
    }
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const MESSAGE: &str = "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: delivered before the sync\r\nMessage-ID: <pacc-sync-test@example.test>\r\n\r\nhello from the server\r\n";

#[tokio::test]
async fn a_password_account_is_saved_and_used_by_real_clients() {
    if !have(&[
        "dovecot",
        "postfix",
        "radicale",
        "mbsync",
        "msmtp",
        "vdirsyncer",
        "neomutt",
        "curl",
        "python3",
    ]) || !SecretService::available()
    {
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let names = ["imap.acct-pw.test", "pop.acct-pw.test"];
    let dovecot = Dovecot::start(&tb, &names).await.unwrap();
    let postfix = Postfix::start(&tb, "smtp.acct-pw.test", &dovecot)
        .await
        .unwrap();
    let radicale = Radicale::start(&tb, &["dav.acct-pw.test"]).await.unwrap();
    let _hosts = Hosts::add(&[
        ("imap.acct-pw.test", dovecot.ip()),
        ("pop.acct-pw.test", dovecot.ip()),
        ("smtp.acct-pw.test", postfix.ip()),
        ("dav.acct-pw.test", radicale.ip()),
    ]);
    let doc = br#"{"protocols":{"imap":{"host":"imap.acct-pw.test"},"submit":{"host":"smtp.acct-pw.test"},"caldav":{"url":"https://dav.acct-pw.test/alice@example.test/"},"carddav":{"url":"https://dav.acct-pw.test/alice@example.test/"}},"authentication":{"password":true},"info":{"provider":{"name":"Accounts"}}}"#;
    let _p = tb.provider("example.test", doc).await.unwrap();
    let keyring = SecretService::start().await.unwrap();
    let env = Env::new(&tb, Some(&keyring));

    // Setup saves the account; the password goes to the keyring, nowhere else.
    let (out, v) = env
        .setup(
            "alice@example.test",
            "acct-pw.test",
            &["--password-env", "PACC_TEST_PW"],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["saved"]["secrets"], "keyring", "{:#}", v["saved"]);
    assert_eq!(
        v["saved"]["password_stored"],
        true,
        "{:#} {}",
        v["saved"],
        String::from_utf8_lossy(&out.stderr)
    );
    let file = PathBuf::from(v["saved"]["path"].as_str().unwrap());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    for entry in walk(env.data.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains("alice-secret"),
            "no secret in {}",
            entry.display()
        );
    }

    // The account as the commands see it.
    let out = env.pacc(&["accounts", "--json"]).await;
    ok(&out, "accounts");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["accounts"][0]["address"], "alice@example.test");
    let out = env
        .pacc(&["accounts", "show", "alice@example.test", "--json"])
        .await;
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<&str> = shown["account"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["imap", "submit", "caldav", "carddav"]);
    assert_eq!(shown["account"]["source"]["record"], sha256_record(doc));
    let out = env.pacc(&["password", "alice@example.test"]).await;
    ok(&out, "password");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "alice-secret"
    );
    let out = env.pacc(&["password", "nobody@example.test"]).await;
    assert_eq!(out.status.code(), Some(8));

    // mbsync: a message delivered beforehand arrives in the local Maildir.
    dovecot.deliver("alice", "example.test", MESSAGE).unwrap();
    let maildir = env.home.path().join("Mail");
    let rc = env
        .export(
            "alice@example.test",
            "mbsync",
            &["--maildir", maildir.to_str().unwrap()],
        )
        .await;
    std::fs::create_dir_all(&maildir).unwrap();
    let out = env
        .command("mbsync")
        .args(["-c", rc.to_str().unwrap(), "-a"])
        .output()
        .await
        .unwrap();
    ok(&out, "mbsync");
    let synced: Vec<PathBuf> = walk(&maildir)
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("pacc-sync-test")))
        .collect();
    assert_eq!(
        synced.len(),
        1,
        "the message is in the Maildir: {:?}",
        walk(&maildir)
    );

    // msmtp: a message goes out through Postfix submission and is accepted for delivery.
    let rc = env.export("alice@example.test", "msmtp", &[]).await;
    let mut child = env
        .command("msmtp")
        .args([
            "-C",
            rc.to_str().unwrap(),
            "-a",
            "default",
            "bob@example.test",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: sent by msmtp\r\nMessage-ID: <pacc-msmtp-pw@example.test>\r\n\r\nhi\r\n")
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    ok(&out, "msmtp");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = postfix.log();
    assert!(log.contains("sasl_username=alice@example.test"), "{log}");
    assert!(
        log.contains("pacc-msmtp-pw@example.test"),
        "the message reached Postfix: {log}"
    );

    // vdirsyncer: an event created on the server appears locally.
    let curl = |args: Vec<String>| {
        let mut c = std::process::Command::new("curl");
        c.args([
            "-sS",
            "-f",
            "--cacert",
            env.ca.to_str().unwrap(),
            "-u",
            "alice@example.test:alice-secret",
        ])
        .args(args);
        c.output().unwrap()
    };
    let base = "https://dav.acct-pw.test/alice@example.test";
    let o = curl(vec![
        "-X".into(),
        "MKCALENDAR".into(),
        format!("{base}/work/"),
    ]);
    assert!(
        o.status.success(),
        "MKCALENDAR: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let event = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//pacc//test//EN\r\nBEGIN:VEVENT\r\nUID:pacc-event-1\r\nDTSTAMP:20261201T100000Z\r\nDTSTART:20261202T100000Z\r\nDTEND:20261202T110000Z\r\nSUMMARY:Created on the server\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let o = curl(vec![
        "-X".into(),
        "PUT".into(),
        "-H".into(),
        "Content-Type: text/calendar".into(),
        "--data-binary".into(),
        event.into(),
        format!("{base}/work/pacc-event-1.ics"),
    ]);
    assert!(
        o.status.success(),
        "PUT: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // And a contact in an address book.
    let mkcol = r#"<?xml version="1.0"?><mkcol xmlns="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><set><prop><resourcetype><collection/><CR:addressbook/></resourcetype></prop></set></mkcol>"#;
    let o = curl(vec![
        "-X".into(),
        "MKCOL".into(),
        "-H".into(),
        "Content-Type: application/xml".into(),
        "--data-binary".into(),
        mkcol.into(),
        format!("{base}/people/"),
    ]);
    assert!(
        o.status.success(),
        "MKCOL: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let card = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:pacc-card-1\r\nFN:Bob From The Server\r\nN:Server;Bob;;;\r\nEMAIL:bob@example.test\r\nEND:VCARD\r\n";
    let o = curl(vec![
        "-X".into(),
        "PUT".into(),
        "-H".into(),
        "Content-Type: text/vcard".into(),
        "--data-binary".into(),
        card.into(),
        format!("{base}/people/pacc-card-1.vcf"),
    ]);
    assert!(
        o.status.success(),
        "PUT vcard: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let vdir = env.home.path().join("vdir");
    let rc = env
        .export(
            "alice@example.test",
            "vdirsyncer",
            &["--vdir", vdir.to_str().unwrap()],
        )
        .await;
    for step in [vec!["discover"], vec!["sync"]] {
        let mut child = env
            .command("vdirsyncer")
            .arg("-c")
            .arg(&rc)
            .args(&step)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use tokio::io::AsyncWriteExt as _;
            let mut stdin = child.stdin.take().unwrap();
            let _ = stdin.write_all("y\n".repeat(20).as_bytes()).await;
        }
        let out = child.wait_with_output().await.unwrap();
        ok(&out, &format!("vdirsyncer {step:?}"));
    }
    let events: Vec<PathBuf> = walk(&vdir)
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("Created on the server")))
        .collect();
    assert_eq!(events.len(), 1, "the event is local: {:?}", walk(&vdir));
    let cards: Vec<PathBuf> = walk(&vdir)
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("Bob From The Server")))
        .collect();
    assert_eq!(cards.len(), 1, "the contact is local: {:?}", walk(&vdir));

    // NeoMutt loads its file, and the settings read back are the account's.
    let rc = env.export("alice@example.test", "neomutt", &[]).await;
    let out = env
        .command("neomutt")
        .args([
            "-n",
            "-F",
            rc.to_str().unwrap(),
            "-Q",
            "imap_user",
            "-Q",
            "folder",
            "-Q",
            "smtp_url",
            "-Q",
            "imap_pass",
        ])
        .output()
        .await
        .unwrap();
    ok(&out, "neomutt");
    let q = String::from_utf8_lossy(&out.stdout);
    assert!(q.contains("imap_user = \"alice@example.test\""), "{q}");
    assert!(
        q.contains("folder = \"imaps://imap.acct-pw.test:993/\""),
        "{q}"
    );
    assert!(
        q.contains("smtp_url = \"smtps://alice%40example.test@smtp.acct-pw.test:465/\""),
        "{q}"
    );
    assert!(
        q.contains("imap_pass = \"alice-secret\""),
        "NeoMutt got the password from pacc: {q}"
    );

    // aerc, himalaya, Thunderbird: independent parsers (Python's configparser, tomllib, ElementTree).
    let aerc = env.export("alice@example.test", "aerc", &[]).await;
    let himalaya = env.export("alice@example.test", "himalaya", &[]).await;
    let tb_xml = env.export("alice@example.test", "thunderbird", &[]).await;
    let script = r#"
import configparser, sys, tomllib, xml.etree.ElementTree as ET
aerc, himalaya, tb = sys.argv[1:4]
c = configparser.ConfigParser(interpolation=None); c.read(aerc)
a = c["alice@example.test"]
assert a["source"] == "imaps://alice%40example.test@imap.acct-pw.test:993", a["source"]
assert a["outgoing"] == "smtps://alice%40example.test@smtp.acct-pw.test:465", a["outgoing"]
assert a["source-cred-cmd"].endswith("password 'alice@example.test'"), a["source-cred-cmd"]
h = tomllib.load(open(himalaya, "rb"))["accounts"]["alice@example.test"]
assert h["backend"]["host"] == "imap.acct-pw.test" and h["backend"]["port"] == 993
assert h["backend"]["encryption"]["type"] == "tls" and h["backend"]["auth"]["type"] == "password"
assert h["message"]["send"]["backend"]["host"] == "smtp.acct-pw.test"
root = ET.parse(tb).getroot()
assert root.tag == "clientConfig" and root.get("version") == "1.1"
p = root.find("emailProvider")
inc = p.find("incomingServer[@type='imap']")
assert inc.findtext("hostname") == "imap.acct-pw.test" and inc.findtext("port") == "993"
assert inc.findtext("socketType") == "SSL" and inc.findtext("username") == "%EMAILADDRESS%"
out = p.find("outgoingServer[@type='smtp']")
assert out.findtext("hostname") == "smtp.acct-pw.test" and out.findtext("authentication") == "password-cleartext"
assert root.find("calendar[@type='caldav']").findtext("serverURL") == "https://dav.acct-pw.test/alice@example.test/"
print("parsed")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .args([&aerc, &himalaya, &tb_xml])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An existing file is not replaced without --force.
    let out = env
        .pacc(&[
            "export",
            "alice@example.test",
            "--format",
            "msmtp",
            "--output",
            env.home.path().join("msmtp.conf").to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(10));

    // Remove: the account and its secret are gone.
    let out = env
        .pacc(&["accounts", "remove", "alice@example.test"])
        .await;
    ok(&out, "remove");
    assert_eq!(
        env.pacc(&["password", "alice@example.test"])
            .await
            .status
            .code(),
        Some(8)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn an_oauth_account_sends_mail_with_a_token_refreshed_by_pacc_token() {
    if !have(&["dovecot", "postfix", "msmtp"])
        || !peers::auth_server_available()
        || !SecretService::available()
    {
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let dovecot = Dovecot::start(&tb, &["imap.acct-oa.test"]).await.unwrap();
    let postfix = Postfix::start(&tb, "smtp.acct-oa.test", &dovecot)
        .await
        .unwrap();
    // Access tokens live 8 seconds; the mail hosts are outside the issuer's domain, so the
    // server lists them as its protected resources (O-15).
    let options = peers::AuthOptions {
        protected_resources: Some(vec![
            "imap://imap.acct-oa.test".into(),
            "smtp://smtp.acct-oa.test".into(),
        ]),
        ..Default::default()
    };
    let auth = AuthServer::start_with(
        &tb,
        "auth.example.test",
        Some(&dovecot.oauth_key_path()),
        8,
        &options,
    )
    .await
    .unwrap();
    let _hosts = Hosts::add(&[
        ("imap.acct-oa.test", dovecot.ip()),
        ("smtp.acct-oa.test", postfix.ip()),
    ]);
    let doc = br#"{"protocols":{"imap":{"host":"imap.acct-oa.test"},"submit":{"host":"smtp.acct-oa.test"}},"authentication":{"password":false,"oauth-public":{"issuer":"https://auth.example.test"}}}"#;
    let _p = tb.provider("example.test", doc).await.unwrap();
    let keyring = SecretService::start().await.unwrap();
    let env = Env::new(&tb, Some(&keyring));
    let mut child = env
        .command(PACC)
        .args([
            "setup",
            "alice@example.test",
            "--dns",
            &env.dns,
            "--ca-file",
            env.ca.to_str().unwrap(),
            "--accept-domains",
            "acct-oa.test,example.test",
            "--no-browser",
            "--json",
        ])
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(l)) = stderr.next_line().await {
            if l.starts_with("https://auth.example.test/") {
                return Some(l);
            }
            seen.push(l);
        }
        None
    })
    .await
    .unwrap();
    let Some(url) = url else {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "no URL printed: {seen:?} {}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let as_addr = std::net::SocketAddr::new(auth.ip().into(), 443);
    pacc_testbed::browser::authorize(
        &url,
        as_addr,
        tb.ca.cert_der(),
        "alice@example.test",
        "alice-secret",
    )
    .await
    .expect("browser");
    let out = child.wait_with_output().await.unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["saved"]["refresh_token_stored"], true, "{:#}", v["saved"]);

    let send = |id: &'static str| {
        let rc = env.home.path().join("msmtp.conf");
        let mut cmd = env.command("msmtp");
        cmd.args([
            "-C",
            rc.to_str().unwrap(),
            "-a",
            "default",
            "bob@example.test",
        ])
        .stdin(std::process::Stdio::piped());
        async move {
            let mut child = cmd.spawn().unwrap();
            {
                use tokio::io::AsyncWriteExt as _;
                let mut stdin = child.stdin.take().unwrap();
                stdin
                    .write_all(format!("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: oauth\r\nMessage-ID: <{id}@example.test>\r\n\r\nhi\r\n").as_bytes())
                    .await
                    .unwrap();
            }
            child.wait_with_output().await.unwrap()
        }
    };
    let rc = env.export("alice@example.test", "msmtp", &[]).await;
    assert!(
        std::fs::read_to_string(&rc)
            .unwrap()
            .contains("auth oauthbearer")
    );
    ok(&send("pacc-oauth-1").await, "msmtp with the first token");
    let first = env.pacc(&["token", "alice@example.test"]).await;
    if !first.status.success() {
        eprintln!("gnome-keyring log:\n{}", keyring.log());
    }
    ok(&first, "token");
    // After the access token expired, pacc token refreshes it and msmtp keeps working.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let second = env
        .pacc(&["token", "alice@example.test", "--service", "submit"])
        .await;
    ok(&second, "token after expiry");
    assert_ne!(first.stdout, second.stdout, "a new access token");
    ok(&send("pacc-oauth-2").await, "msmtp after the refresh");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = postfix.log();
    assert!(
        log.contains("pacc-oauth-1@example.test") && log.contains("pacc-oauth-2@example.test"),
        "{log}"
    );
    assert!(log.contains("sasl_method=OAUTHBEARER"), "{log}");
    // A password account has no token.
    assert_eq!(
        env.pacc(&["token", "nobody@example.test"])
            .await
            .status
            .code(),
        Some(8)
    );
}

#[tokio::test]
async fn without_a_keyring_nothing_is_stored_and_the_user_is_told() {
    if !have(&["dovecot"]) {
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let _dovecot = Dovecot::start(&tb, &["imap.acct-nk.test"]).await.unwrap();
    let doc = br#"{"protocols":{"imap":{"host":"imap.acct-nk.test"}},"authentication":{"password":true}}"#;
    let _p = tb.provider("example.test", doc).await.unwrap();
    let env = Env::new(&tb, None);
    let (out, v) = env
        .setup(
            "alice@example.test",
            "acct-nk.test",
            &["--password-env", "PACC_TEST_PW"],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["saved"]["secrets"], "none");
    assert_eq!(v["saved"]["password_stored"], false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("keyring is not available") && stderr.contains("no secret was stored"),
        "{stderr}"
    );
    let out = env.pacc(&["password", "alice@example.test"]).await;
    assert_eq!(out.status.code(), Some(9));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no password is stored"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in walk(env.data.path()) {
        assert!(
            !std::fs::read_to_string(&f)
                .unwrap_or_default()
                .contains("alice-secret"),
            "{}",
            f.display()
        );
    }
    // --store-secrets none says so too.
    let (_, v) = env
        .setup(
            "alice@example.test",
            "acct-nk.test",
            &["--password-env", "PACC_TEST_PW", "--store-secrets", "none"],
        )
        .await;
    assert_eq!(v["saved"]["secrets"], "none");
}

#[tokio::test]
async fn accounts_check_reports_a_changed_configuration() {
    if !have(&["dovecot"]) {
        return;
    }
    let tb = Testbed::start().await.unwrap();
    let _dovecot = Dovecot::start(&tb, &["imap.acct-ck.test", "mail.acct-ck.test"])
        .await
        .unwrap();
    let doc = br#"{"protocols":{"imap":{"host":"imap.acct-ck.test"}},"authentication":{"password":true}}"#;
    let server = tb
        .https_host(
            &["ua-auto-config.example.test"],
            pacc_testbed::Behaviour::new(pacc_testbed::Reply::json(doc.to_vec())),
        )
        .await
        .unwrap();
    tb.publish_txt("example.test", &sha256_record(doc))
        .await
        .unwrap();
    let env = Env::new(&tb, None);
    let (out, v) = env
        .setup(
            "alice@example.test",
            "acct-ck.test",
            &["--password-env", "PACC_TEST_PW", "--store-secrets", "none"],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    let out = env
        .pacc(&["accounts", "check", "alice@example.test", "--json"])
        .await;
    ok(&out, "unchanged");
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (c["verifies"].as_bool(), c["unchanged"].as_bool()),
        (Some(true), Some(true)),
        "{c}"
    );
    // The provider moves IMAP and publishes the new digest.
    drop(server);
    let new = br#"{"protocols":{"imap":{"host":"mail.acct-ck.test"},"submit":{"host":"mail.acct-ck.test"}},"authentication":{"password":true}}"#;
    tb.dns
        .remove(
            "_ua-auto-config.example.test",
            hickory_proto_record_type_txt(),
        )
        .await
        .unwrap();
    let _s2 = tb.provider("example.test", new).await.unwrap();
    let out = env
        .pacc(&["accounts", "check", "alice@example.test", "--json"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["verifies"], true);
    assert_eq!(c["unchanged"], false);
    let changes: Vec<(String, String)> = c["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["service"].as_str().unwrap().to_owned(),
                x["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("imap".into(), "changed".into()),
            ("submit".into(), "added".into())
        ]
    );
    assert!(
        c["new_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "mail.acct-ck.test"),
        "{c}"
    );
    // A tampered document: it no longer verifies.
    drop(_s2);
    let _s3 = tb
        .serve_document(
            "example.test",
            b"{\"protocols\":{\"imap\":{\"host\":\"evil.acct-ck.test\"}}}",
        )
        .await
        .unwrap();
    let out = env
        .pacc(&["accounts", "check", "alice@example.test", "--json"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["verifies"], false, "{c}");
}

fn hickory_proto_record_type_txt() -> pacc_testbed::RecordType {
    pacc_testbed::RecordType::TXT
}
