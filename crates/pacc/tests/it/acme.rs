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

fn orders(server: &Server, result: &str) -> u64 {
    let text = server.metrics().render();
    let key = format!("pacc_serve_acme_orders_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
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

/// One test's world: the testbed, the address `serve` listens on (port 443, where Pebble
/// validates TLS-ALPN-01; `hosts` resolve to it), Pebble, and a directory for the
/// description and the ACME storage.
struct Site {
    tb: Testbed,
    addr: SocketAddr,
    pebble: Pebble,
    dir: tempfile::TempDir,
}

impl Site {
    async fn new(hosts: &[&str], options: PebbleOptions) -> Site {
        let tb = testbed().await;
        let ip = free_loopback_ip(&[443]).await.unwrap();
        for h in hosts {
            tb.dns.add_a(h, ip).await.unwrap();
        }
        let pebble = Pebble::start(
            &tb,
            &PebbleOptions {
                tls_port: 443,
                ..options
            },
        )
        .await
        .expect("pebble");
        Site {
            tb,
            addr: SocketAddr::new(IpAddr::V4(ip), 443),
            pebble,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Write the description: `docs`, then `[acme]` for Pebble, then `extra` lines of it.
    fn describe(&self, docs: &str, extra: &str) {
        std::fs::write(
            self.description(),
            format!(
                "{docs}\n[acme]\ndirectory = \"{}\"\ncontact = [\"mailto:hostmaster@example.test\"]\nstorage = \"acme\"\nca_file = \"{}\"\n{extra}",
                self.pebble.directory(),
                self.pebble.api_ca_file().display()
            ),
        )
        .unwrap();
    }

    fn description(&self) -> std::path::PathBuf {
        self.dir.path().join("provider.toml")
    }

    async fn serve(&self) -> Server {
        Server::start(&self.description(), None, &[self.addr])
            .await
            .expect("serve starts before any certificate is issued")
    }

    /// Pebble's current root.
    async fn root(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject as _;
        let pem = self.pebble.root_pem(&self.tb).await.unwrap();
        vec![
            rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
                .expect("Pebble's root in PEM"),
        ]
    }

    /// Wait until `done()` or fail after `limit`, showing the schedule and Pebble's log.
    async fn wait(&self, limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + limit;
        while !done() {
            if Instant::now() > until {
                panic!(
                    "{what} did not happen within {limit:?}; schedule: {}\nPebble said:\n{}",
                    std::fs::read_to_string(self.dir.path().join("acme/schedule.json"))
                        .unwrap_or_default(),
                    self.pebble.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A description of one domain.
fn one_domain(d: &str) -> String {
    format!(
        "[[document]]\ndomains = [\"{d}\"]\n[document.services]\nimap = \"imap.{d}\"\n[document.provider]\nname = \"{d}\"\n"
    )
}

#[tokio::test]
async fn acme_issues_for_every_domain_keeps_a_working_certificate_and_restarts_from_storage() {
    if !pebble_installed() {
        return;
    }
    let good = [
        "ua-auto-config.alpha.test",
        "ua-auto-config.beta.test",
        "ua-auto-config.gamma.test",
        "mta-sts.gamma.test",
    ];
    let site = Site::new(&good, PebbleOptions::default()).await;
    let (tb, addr, dir) = (&site.tb, site.addr, site.dir.path());
    // broken.test resolves to an address where nothing listens: its challenge fails.
    let nowhere: Ipv4Addr = free_loopback_ip(&[443]).await.unwrap();
    tb.dns
        .add_a("ua-auto-config.broken.test", nowhere)
        .await
        .unwrap();
    site.describe(DOCS, "");
    // broken.test has a certificate from an earlier order, due for renewal (3 days left).
    seed(tb, dir, "broken.test", 3);

    let server = site.serve().await;
    site.wait(
        Duration::from_secs(60),
        "three issued orders and one failed",
        || orders(&server, "valid") == 3 && orders(&server, "failed") == 1,
    )
    .await;
    let root = site.root().await;
    for host in good {
        let shown = connect(addr, host, &root)
            .await
            .unwrap_or_else(|e| panic!("{host}: not a certificate from Pebble: {e}"));
        assert!(shown.issuer.contains("Pebble"), "{host}: {}", shown.issuer);
    }
    // mta-sts.gamma.test and ua-auto-config.gamma.test share one certificate (one order).
    let a = connect(addr, "ua-auto-config.gamma.test", &root)
        .await
        .unwrap();
    let b = connect(addr, "mta-sts.gamma.test", &root).await.unwrap();
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
        serde_json::from_slice(&std::fs::read(dir.join("acme/schedule.json")).unwrap()).unwrap();
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
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f}: {mode:o}");
    }
    let account = std::fs::read(dir.join("acme/account.json")).unwrap();
    let beta_serial = serial_of_file(&dir.join("acme/certs/beta.test.pem"));
    let gamma_serial = serial_of_file(&dir.join("acme/certs/gamma.test.pem"));
    server.shutdown(Duration::from_secs(1)).await;

    // As if time had passed: alpha's stored certificate now has 3 days left.
    seed(tb, dir, "alpha.test", 3);
    let server = site.serve().await;
    // Stored certificates are presented at once, before the CA is asked anything.
    let beta = connect(addr, "ua-auto-config.beta.test", &root)
        .await
        .unwrap();
    assert_eq!(beta.serial, beta_serial);
    let gamma = connect(addr, "mta-sts.gamma.test", &root).await.unwrap();
    assert_eq!(gamma.serial, gamma_serial);
    // alpha is renewed; nothing else is ordered: beta and gamma are not due, broken.test
    // waits out its stored backoff.
    site.wait(Duration::from_secs(30), "alpha's renewal", || {
        orders(&server, "valid") == 1
    })
    .await;
    let alpha = connect(addr, "ua-auto-config.alpha.test", &root)
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
        std::fs::read(dir.join("acme/account.json")).unwrap(),
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
    let host = "ua-auto-config.delta.test";
    // 30-second certificates: renewed after about 20 s.
    let site = Site::new(
        &[host],
        PebbleOptions {
            validity_secs: Some(30),
            ..PebbleOptions::default()
        },
    )
    .await;
    site.describe(&one_domain("delta.test"), "");
    let server = site.serve().await;
    site.wait(Duration::from_secs(30), "the first certificate", || {
        orders(&server, "valid") == 1
    })
    .await;
    let root = site.root().await;
    let first = connect(site.addr, host, &root).await.unwrap();
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
            site.pebble.log()
        );
        assert_eq!(get(&mut send, host, path).await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let second = connect(site.addr, host, &root).await.unwrap();
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
    let host = "ua-auto-config.eab.test";
    let mac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let site = Site::new(
        &[host],
        PebbleOptions {
            eab: Some(("kid-1".into(), mac.into())),
            ..PebbleOptions::default()
        },
    )
    .await;
    // The MAC key from a file (e.g. a systemd credential), not the description.
    std::fs::write(site.dir.path().join("eab.key"), format!("{mac}\n")).unwrap();
    site.describe(
        &one_domain("eab.test"),
        "[acme.eab]\nkid = \"kid-1\"\nhmac_key_file = \"eab.key\"\n",
    );
    let server = site.serve().await;
    site.wait(Duration::from_secs(30), "issuance with EAB", || {
        orders(&server, "valid") == 1
    })
    .await;
    connect(site.addr, host, &site.root().await)
        .await
        .expect("a certificate from Pebble");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn acme_orders_stay_within_the_hourly_budget_across_restarts() {
    if !pebble_installed() {
        return;
    }
    let hosts = [
        "ua-auto-config.one.test",
        "ua-auto-config.two.test",
        "ua-auto-config.three.test",
    ];
    let site = Site::new(&hosts, PebbleOptions::default()).await;
    site.describe(
        "[[document]]\ndomains = [\"one.test\", \"two.test\", \"three.test\"]\n[document.services]\nimap = \"imap.one.test\"\n[document.provider]\nname = \"Budget\"\n",
        "orders_per_hour = 2\n",
    );
    let server = site.serve().await;
    site.wait(Duration::from_secs(30), "two orders", || {
        orders(&server, "valid") == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(orders(&server, "valid"), 2, "a third order within the hour");
    let root = site.root().await;
    let mut served = 0;
    for h in hosts {
        if connect(site.addr, h, &root).await.is_ok() {
            served += 1;
        }
    }
    assert_eq!(served, 2, "the third domain waits for the budget");
    assert!(
        server
            .metrics()
            .render()
            .contains("pacc_serve_hosts_without_certificate 1\n"),
        "{}",
        server.metrics().render()
    );
    server.shutdown(Duration::from_secs(1)).await;
    // The budget is stored: a restart does not reset it.
    let server = site.serve().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(orders(&server, "valid") + orders(&server, "failed"), 0);
    server.shutdown(Duration::from_secs(1)).await;
}
