//! `serve` with `[acme]` against a real ACME CA: Pebble (Debian's `pebble`), resolving
//! through the testbed DNS and validating TLS-ALPN-01 on the serving listener.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use pacc::serve::Server;
use pacc_testbed::peers::{self, Pebble, PebbleOptions};
use pacc_testbed::{CertKind, Testbed, free_loopback_ip};

use crate::testbed;

fn pebble_installed() -> bool {
    let ok = peers::available("pebble");
    if !ok {
        eprintln!("SKIPPED: the ACME tests need pebble (.ci/run installs it)");
    }
    ok
}

const DOCS: &str = r#"
[[document]]
domains = ["alpha.test", "beta.test"]
[document.services]
imap = "imap.alpha.test"
[document.provider]
name = "Alpha"

[[document]]
domains = ["gamma.test"]
[document.services]
imap = "imap.gamma.test"
[document.provider]
name = "Gamma"
[document.mta_sts]
id = "g1"
mode = "enforce"
mx = ["mx.gamma.test"]
max_age = 86400

[[document]]
domains = ["broken.test"]
[document.services]
imap = "imap.broken.test"
[document.provider]
name = "Broken"
"#;

fn write_description(dir: &Path, docs: &str, pebble: &Pebble, extra: &str) {
    std::fs::write(
        dir.join("provider.toml"),
        format!(
            "{docs}\n[acme]\ndirectory = \"{}\"\ncontact = [\"mailto:hostmaster@example.test\"]\nstorage = \"acme\"\nca_file = \"{}\"\n{extra}",
            pebble.directory(),
            pebble.api_ca_file().display()
        ),
    )
    .unwrap();
}

/// A PEM file (chain and key) from the testbed CA, as if an earlier order had stored it.
fn seed(tb: &Testbed, dir: &Path, domain: &str, days: i64) {
    let certs = dir.join("acme/certs");
    std::fs::create_dir_all(&certs).unwrap();
    let leaf = tb
        .ca
        .issue(
            &[format!("ua-auto-config.{domain}")],
            CertKind::ValidForDays(days),
        )
        .unwrap();
    std::fs::write(
        certs.join(format!("{domain}.pem")),
        format!("{}{}", leaf.cert_pem, leaf.key_pem),
    )
    .unwrap();
}

fn tls_config(roots: &[rustls::pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// What a client verifying against `roots` is shown for `sni`: the leaf's serial and
/// validity end, or the handshake error.
struct Shown {
    serial: Vec<u8>,
    issuer: String,
    not_after: i64,
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

async fn connect(
    addr: SocketAddr,
    sni: &str,
    roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Shown, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(tls_config(roots))
        .connect(
            rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap(),
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    Ok(Shown {
        serial: cert.raw_serial().to_vec(),
        issuer: cert.issuer().to_string(),
        not_after: cert.validity().not_after.timestamp(),
        tls,
    })
}

/// GET `path` from `host` on an open connection (keep-alive); the status.
async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> u16 {
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await.unwrap();
    status
}

/// Pebble's current root.
async fn pebble_root(tb: &Testbed, pebble: &Pebble) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = pebble.root_pem(tb).await.unwrap();
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("Pebble's root in PEM")
}

fn orders(server: &Server, result: &str) -> u64 {
    let text = server.metrics().render();
    let key = format!("pacc_serve_acme_orders_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

/// Wait until `done()` or fail after `limit`, showing the schedule and Pebble's log.
async fn wait_for(
    limit: Duration,
    pebble: &Pebble,
    dir: &Path,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let until = Instant::now() + limit;
    while !done() {
        if Instant::now() > until {
            panic!(
                "{what} did not happen within {limit:?}; schedule: {}\nPebble said:\n{}",
                std::fs::read_to_string(dir.join("acme/schedule.json")).unwrap_or_default(),
                pebble.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn serial_of_file(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial().to_vec()
}

async fn serve_ip(tb: &Testbed, hosts: &[&str]) -> SocketAddr {
    let ip = free_loopback_ip(&[443]).await.unwrap();
    for h in hosts {
        tb.dns.add_a(h, ip).await.unwrap();
    }
    SocketAddr::new(IpAddr::V4(ip), 443)
}

#[tokio::test]
async fn acme_issues_for_every_domain_keeps_a_working_certificate_and_restarts_from_storage() {
    if !pebble_installed() {
        return;
    }
    let tb = testbed().await;
    let good = [
        "ua-auto-config.alpha.test",
        "ua-auto-config.beta.test",
        "ua-auto-config.gamma.test",
        "mta-sts.gamma.test",
    ];
    let addr = serve_ip(&tb, &good).await;
    // broken.test resolves to an address where nothing listens: its challenge fails.
    let nowhere: Ipv4Addr = free_loopback_ip(&[443]).await.unwrap();
    tb.dns
        .add_a("ua-auto-config.broken.test", nowhere)
        .await
        .unwrap();
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
    write_description(dir.path(), DOCS, &pebble, "");
    // broken.test has a certificate from an earlier order, due for renewal (3 days left).
    seed(&tb, dir.path(), "broken.test", 3);
    let desc = dir.path().join("provider.toml");

    let server = Server::start(&desc, None, &[addr])
        .await
        .expect("serve starts before any certificate is issued");
    wait_for(
        Duration::from_secs(60),
        &pebble,
        dir.path(),
        "three issued orders and one failed",
        || orders(&server, "valid") == 3 && orders(&server, "failed") == 1,
    )
    .await;
    let root = pebble_root(&tb, &pebble).await;
    for host in good {
        let shown = connect(addr, host, std::slice::from_ref(&root))
            .await
            .unwrap_or_else(|e| panic!("{host}: not a certificate from Pebble: {e}"));
        assert!(shown.issuer.contains("Pebble"), "{host}: {}", shown.issuer);
    }
    // mta-sts.gamma.test and ua-auto-config.gamma.test share one certificate (one order).
    let a = connect(
        addr,
        "ua-auto-config.gamma.test",
        std::slice::from_ref(&root),
    )
    .await
    .unwrap();
    let b = connect(addr, "mta-sts.gamma.test", std::slice::from_ref(&root))
        .await
        .unwrap();
    assert_eq!(a.serial, b.serial);
    // The failed renewal kept the working certificate: still the testbed CA's.
    let kept = connect(
        addr,
        "ua-auto-config.broken.test",
        &[tb.ca.cert_der().clone()],
    )
    .await
    .expect("the old certificate is still presented");
    assert!(kept.issuer.contains("pacc"), "{}", kept.issuer);
    let schedule: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("acme/schedule.json")).unwrap())
            .unwrap();
    let failure = &schedule["failures"]["broken.test"];
    assert_eq!(failure["count"], 1, "{schedule}");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("ua-auto-config.broken.test"),
        "the CA's reason names the identifier: {failure}"
    );
    assert!(failure["retry_at"].as_i64().unwrap() > 30, "{failure}");
    // Secrets are private to the server's user.
    use std::os::unix::fs::PermissionsExt as _;
    for f in [
        "acme/account.json",
        "acme/certs/alpha.test.pem",
        "acme/certs/gamma.test.pem",
    ] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f}: {mode:o}");
    }
    let account = std::fs::read(dir.path().join("acme/account.json")).unwrap();
    let beta_serial = serial_of_file(&dir.path().join("acme/certs/beta.test.pem"));
    let gamma_serial = serial_of_file(&dir.path().join("acme/certs/gamma.test.pem"));
    server.shutdown(Duration::from_secs(1)).await;

    // As if time had passed: alpha's stored certificate now has 3 days left.
    seed(&tb, dir.path(), "alpha.test", 3);
    let server = Server::start(&desc, None, &[addr]).await.expect("restart");
    // Stored certificates are presented at once, before the CA is asked anything.
    let beta = connect(
        addr,
        "ua-auto-config.beta.test",
        std::slice::from_ref(&root),
    )
    .await
    .unwrap();
    assert_eq!(beta.serial, beta_serial);
    let gamma = connect(addr, "mta-sts.gamma.test", std::slice::from_ref(&root))
        .await
        .unwrap();
    assert_eq!(gamma.serial, gamma_serial);
    // alpha is renewed; nothing else is ordered: beta and gamma are not due, broken.test
    // waits out its stored backoff.
    wait_for(
        Duration::from_secs(30),
        &pebble,
        dir.path(),
        "alpha's renewal",
        || orders(&server, "valid") == 1,
    )
    .await;
    let alpha = connect(
        addr,
        "ua-auto-config.alpha.test",
        std::slice::from_ref(&root),
    )
    .await
    .expect("alpha renewed by Pebble");
    assert!(alpha.issuer.contains("Pebble"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(orders(&server, "valid"), 1);
    assert_eq!(
        orders(&server, "failed"),
        0,
        "broken.test retried before its backoff ended"
    );
    assert_eq!(
        std::fs::read(dir.path().join("acme/account.json")).unwrap(),
        account,
        "the stored account is reused"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn acme_renewal_swaps_the_certificate_without_dropping_connections() {
    if !pebble_installed() {
        return;
    }
    let tb = testbed().await;
    let host = "ua-auto-config.delta.test";
    let addr = serve_ip(&tb, &[host]).await;
    // 30-second certificates: renewed after about 20 s.
    let pebble = Pebble::start(
        &tb,
        &PebbleOptions {
            tls_port: 443,
            validity_secs: Some(30),
            ..PebbleOptions::default()
        },
    )
    .await
    .expect("pebble");
    let dir = tempfile::tempdir().unwrap();
    write_description(
        dir.path(),
        "[[document]]\ndomains = [\"delta.test\"]\n[document.services]\nimap = \"imap.delta.test\"\n[document.provider]\nname = \"Delta\"\n",
        &pebble,
        "",
    );
    let server = Server::start(&dir.path().join("provider.toml"), None, &[addr])
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        &pebble,
        dir.path(),
        "the first certificate",
        || orders(&server, "valid") == 1,
    )
    .await;
    let root = pebble_root(&tb, &pebble).await;
    let first = connect(addr, host, std::slice::from_ref(&root))
        .await
        .unwrap();
    let (first_serial, first_end) = (first.serial.clone(), first.not_after);
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(first.tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let path = "/.well-known/user-agent-configuration.json";
    assert_eq!(get(&mut send, host, path).await, 200);
    // The connection stays in use (an idle one is closed after 10 s) until the renewal.
    let until = Instant::now() + Duration::from_secs(40);
    while orders(&server, "valid") < 2 {
        assert!(
            Instant::now() < until,
            "no renewal within 40 s; Pebble said:\n{}",
            pebble.log()
        );
        assert_eq!(get(&mut send, host, path).await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let second = connect(addr, host, std::slice::from_ref(&root))
        .await
        .unwrap();
    assert_ne!(
        second.serial, first_serial,
        "new handshakes get the renewed certificate"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        now < first_end,
        "renewed ahead of expiry ({now} vs {first_end})"
    );
    // The connection opened before the swap keeps working.
    assert_eq!(get(&mut send, host, path).await, 200);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn acme_external_account_binding() {
    if !pebble_installed() {
        return;
    }
    let tb = testbed().await;
    let host = "ua-auto-config.eab.test";
    let addr = serve_ip(&tb, &[host]).await;
    let mac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(
        &tb,
        &PebbleOptions {
            tls_port: 443,
            eab: Some(("kid-1".into(), mac.into())),
            ..PebbleOptions::default()
        },
    )
    .await
    .expect("pebble");
    let dir = tempfile::tempdir().unwrap();
    // The MAC key from a file (e.g. a systemd credential), not the description.
    std::fs::write(dir.path().join("eab.key"), format!("{mac}\n")).unwrap();
    write_description(
        dir.path(),
        "[[document]]\ndomains = [\"eab.test\"]\n[document.services]\nimap = \"imap.eab.test\"\n[document.provider]\nname = \"EAB\"\n",
        &pebble,
        "[acme.eab]\nkid = \"kid-1\"\nhmac_key_file = \"eab.key\"\n",
    );
    let server = Server::start(&dir.path().join("provider.toml"), None, &[addr])
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        &pebble,
        dir.path(),
        "issuance with EAB",
        || orders(&server, "valid") == 1,
    )
    .await;
    let root = pebble_root(&tb, &pebble).await;
    connect(addr, host, std::slice::from_ref(&root))
        .await
        .expect("a certificate from Pebble");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn acme_orders_stay_within_the_hourly_budget_across_restarts() {
    if !pebble_installed() {
        return;
    }
    let tb = testbed().await;
    let hosts = [
        "ua-auto-config.one.test",
        "ua-auto-config.two.test",
        "ua-auto-config.three.test",
    ];
    let addr = serve_ip(&tb, &hosts).await;
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
    write_description(
        dir.path(),
        "[[document]]\ndomains = [\"one.test\", \"two.test\", \"three.test\"]\n[document.services]\nimap = \"imap.one.test\"\n[document.provider]\nname = \"Budget\"\n",
        &pebble,
        "orders_per_hour = 2\n",
    );
    let desc = dir.path().join("provider.toml");
    let server = Server::start(&desc, None, &[addr]).await.unwrap();
    wait_for(
        Duration::from_secs(30),
        &pebble,
        dir.path(),
        "two orders",
        || orders(&server, "valid") == 2,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(orders(&server, "valid"), 2, "a third order within the hour");
    let root = pebble_root(&tb, &pebble).await;
    let mut served = 0;
    for h in hosts {
        if connect(addr, h, std::slice::from_ref(&root)).await.is_ok() {
            served += 1;
        }
    }
    assert_eq!(served, 2, "the third domain waits for the budget");
    server.shutdown(Duration::from_secs(1)).await;
    // The budget is stored: a restart does not reset it.
    let server = Server::start(&desc, None, &[addr]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(orders(&server, "valid") + orders(&server, "failed"), 0);
    server.shutdown(Duration::from_secs(1)).await;
}
