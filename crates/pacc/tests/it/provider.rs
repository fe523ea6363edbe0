//! Provider side: `serve` over real TLS, `check` against deployments right and broken, and
//! the end-to-end render → DNS → serve → discover path.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use pacc::serve::Server;
use pacc_proto::provider::Description;
use pacc_proto::provider::check::{RotationStage, Verdict, check, rotation_stage};
use pacc_proto::provider::render::{publication, render};
use pacc_testbed::{
    Behaviour, CertKind, Reply, Testbed, TlsVersions, free_loopback_ip, sha256_record,
};

use crate::{client, discover, testbed};

const DESC: &str = r#"
[defaults]
cache_control = "public, max-age=60"

[[document]]
domains = ["alpha.test", "beta.test"]
password = true
[document.services]
imap = "imap.alpha.test"
submit = "smtp.alpha.test"
[document.provider]
name = "Alpha Mail"
[document.tls]
cert = "alpha.pem"
key = "alpha.key"

[[document]]
domains = ["gamma.test"]
spelling = "smtp"
[document.services]
imap = "imap.gamma.test"
[document.provider]
name = "Gamma"
[document.mta_sts]
id = "g1"
mode = "enforce"
mx = ["mx.gamma.test"]
max_age = 86400
"#;

/// Write the description and certificates (alpha/beta by explicit mapping, gamma from the
/// certificate directory) into `dir`.
fn write_files(tb: &Testbed, dir: &Path, desc: &str) {
    let alpha = tb
        .ca
        .issue(
            &[
                "ua-auto-config.alpha.test".into(),
                "ua-auto-config.beta.test".into(),
            ],
            pacc_testbed::CertKind::Valid,
        )
        .unwrap();
    std::fs::write(dir.join("alpha.pem"), &alpha.cert_pem).unwrap();
    std::fs::write(dir.join("alpha.key"), &alpha.key_pem).unwrap();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let gamma = tb
        .ca
        .issue(
            &[
                "ua-auto-config.gamma.test".into(),
                "mta-sts.gamma.test".into(),
            ],
            pacc_testbed::CertKind::Valid,
        )
        .unwrap();
    std::fs::write(
        certs.join("gamma.pem"),
        format!("{}{}", gamma.cert_pem, gamma.key_pem),
    )
    .unwrap();
    std::fs::write(
        dir.join("provider.toml"),
        format!("{desc}\n[serve]\ncert_dir = \"certs\"\n"),
    )
    .unwrap();
}

/// Publish the description's DNS records pointing at `ip`.
async fn publish(tb: &Testbed, dir: &Path, ip: std::net::Ipv4Addr) -> Description {
    let text = std::fs::read_to_string(dir.join("provider.toml")).unwrap();
    let desc = Description::parse("provider.toml", &text).unwrap();
    for spec in &desc.documents {
        let bytes = render(spec);
        for d in &spec.domains {
            let p = publication(spec, d, &bytes, 300);
            tb.dns.add_a(&p.host, ip).await.unwrap();
            for t in &p.txt {
                tb.dns.add_txt(&p.txt_owner, &[t.as_bytes()]).await.unwrap();
            }
        }
    }
    desc
}

/// A TLS connection to `addr` with `sni`, trusting the testbed CA.
async fn tls_connect(
    tb: &Testbed,
    addr: SocketAddr,
    sni: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(tb.ca.cert_der().clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// One raw HTTPS request with a chosen SNI and Host.
async fn raw(
    tb: &Testbed,
    addr: SocketAddr,
    sni: &str,
    host: &str,
    method: &str,
    path: &str,
    etag: Option<&str>,
) -> (u16, hyper::HeaderMap, Bytes) {
    let tls = tls_connect(tb, addr, sni).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// Write raw bytes over TLS and return what the server answers before it closes (or 3 s).
async fn raw_bytes(tb: &Testbed, addr: SocketAddr, sni: &str, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tls = tls_connect(tb, addr, sni).await;
    let _ = tls.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn malformed_requests_are_refused_and_serving_goes_on() {
    let tb = testbed().await;
    let dir = tempfile::tempdir().unwrap();
    write_files(&tb, dir.path(), DESC);
    let ip = free_loopback_ip(&[443]).await.unwrap();
    let addr = SocketAddr::new(IpAddr::V4(ip), 443);
    let limits = pacc::serve::Limits {
        handshake: Duration::from_secs(1),
        header: Duration::from_secs(1),
    };
    let server = Server::start_with(&dir.path().join("provider.toml"), None, &[addr], limits)
        .await
        .unwrap();
    let sni = "ua-auto-config.alpha.test";
    let garbage = raw_bytes(&tb, addr, sni, b"\x00\x01 not http at all\r\n\r\n").await;
    assert!(
        garbage.is_empty() || garbage.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&garbage)
    );
    let huge = format!(
        "GET /.well-known/user-agent-configuration.json HTTP/1.1\r\nHost: {sni}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw_bytes(&tb, addr, sni, huge.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let ok = raw_bytes(&tb, addr, sni, format!("GET /.well-known/user-agent-configuration.json HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes()).await;
    assert!(
        ok.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&ok)
    );
    // A client that never finishes its request head is cut off at the header deadline (the
    // server closes; raw_bytes would otherwise wait 3 s).
    let started = std::time::Instant::now();
    let slow = raw_bytes(
        &tb,
        addr,
        sni,
        b"GET /.well-known/user-agent-configuration.json HTTP/1.1\r\n",
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "cut off after {took:?}"
    );
    assert!(!slow.starts_with(b"HTTP/1.1 200"));
    // A TCP connection that never starts TLS is closed at the handshake deadline.
    let started = std::time::Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
    )
    .await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "closed by the server");
    assert!(started.elapsed() < Duration::from_millis(2500));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn serve_render_discover_end_to_end() {
    let tb = testbed().await;
    let dir = tempfile::tempdir().unwrap();
    write_files(&tb, dir.path(), DESC);
    let ip = free_loopback_ip(&[443]).await.unwrap();
    let addr = SocketAddr::new(IpAddr::V4(ip), 443);
    let server = Server::start(&dir.path().join("provider.toml"), None, &[addr])
        .await
        .expect("serve");
    let desc = publish(&tb, dir.path(), ip).await;
    let c = client(&tb);
    // Every domain verifies through the client's own discovery (SNI picks each certificate).
    for (domain, name) in [
        ("alpha.test", "Alpha Mail"),
        ("beta.test", "Alpha Mail"),
        ("gamma.test", "Gamma"),
    ] {
        let r = discover(&c, &format!("u@{domain}")).await;
        let v = r.outcome.unwrap_or_else(|e| panic!("{domain}: {e}"));
        assert_eq!(v.document.config.provider_name(), Some(name));
        assert_eq!(
            v.bytes,
            render(
                desc.document_for(&pacc_proto::name::Domain::parse(domain).unwrap())
                    .unwrap()
            )
        );
    }
    // Host decides the document; headers are exact.
    let alpha = render(&desc.documents[0]);
    let (status, h, body) = raw(
        &tb,
        addr,
        "ua-auto-config.alpha.test",
        "ua-auto-config.alpha.test",
        "GET",
        "/.well-known/user-agent-configuration.json",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_ref(), alpha.as_slice());
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["content-length"], alpha.len().to_string());
    assert_eq!(h["cache-control"], "public, max-age=60");
    let etag = h["etag"].to_str().unwrap().to_owned();
    let (status, _, body) = raw(
        &tb,
        addr,
        "ua-auto-config.alpha.test",
        "ua-auto-config.alpha.test",
        "GET",
        "/.well-known/user-agent-configuration.json",
        Some(&etag),
    )
    .await;
    assert_eq!((status, body.len()), (304, 0));
    let (status, h, body) = raw(
        &tb,
        addr,
        "ua-auto-config.alpha.test",
        "ua-auto-config.alpha.test",
        "HEAD",
        "/.well-known/user-agent-configuration.json",
        None,
    )
    .await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(h["content-length"], alpha.len().to_string());
    let (status, h, _) = raw(
        &tb,
        addr,
        "ua-auto-config.alpha.test",
        "ua-auto-config.alpha.test",
        "POST",
        "/.well-known/user-agent-configuration.json",
        None,
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(h["allow"], "GET, HEAD");
    let (status, _, _) = raw(
        &tb,
        addr,
        "ua-auto-config.alpha.test",
        "ua-auto-config.alpha.test",
        "GET",
        "/other",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = raw(
        &tb,
        addr,
        "ua-auto-config.alpha.test",
        "ua-auto-config.unknown.test",
        "GET",
        "/.well-known/user-agent-configuration.json",
        None,
    )
    .await;
    assert_eq!(status, 404, "unknown Host");
    // The MTA-STS policy for the group that asks for it.
    let (status, h, body) = raw(
        &tb,
        addr,
        "mta-sts.gamma.test",
        "mta-sts.gamma.test",
        "GET",
        "/.well-known/mta-sts.txt",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(
        body.as_ref(),
        b"version: STSv1\nmode: enforce\nmx: mx.gamma.test\nmax_age: 86400\n"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn reload_under_load_loses_no_request_and_refuses_broken_files() {
    let tb = testbed().await;
    let dir = tempfile::tempdir().unwrap();
    write_files(&tb, dir.path(), DESC);
    let ip = free_loopback_ip(&[443]).await.unwrap();
    let addr = SocketAddr::new(IpAddr::V4(ip), 443);
    let server = Arc::new(
        Server::start(&dir.path().join("provider.toml"), None, &[addr])
            .await
            .unwrap(),
    );
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tb = Arc::new(tb);
    let mut load = Vec::new();
    for _ in 0..4 {
        let (ok, failed, stop, tb) = (ok.clone(), failed.clone(), stop.clone(), tb.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 2000 {
                n += 1;
                let (status, _, body) = raw(
                    &tb,
                    addr,
                    "ua-auto-config.alpha.test",
                    "ua-auto-config.alpha.test",
                    "GET",
                    "/.well-known/user-agent-configuration.json",
                    None,
                )
                .await;
                if status == 200 && !body.is_empty() {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = dir.path().join("provider.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    for i in 0..5 {
        std::fs::write(
            &path,
            original.replace("Alpha Mail", &format!("Alpha Mail v{i}")),
        )
        .unwrap();
        server.reload().expect("valid reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken file is refused and the last good one keeps serving.
    std::fs::write(
        &path,
        original.replace("imap = \"imap.alpha.test\"", "imap = \"192.0.2.1\""),
    )
    .unwrap();
    let err = server.reload().unwrap_err().to_string();
    assert!(
        err.contains("provider.toml:") && err.contains("IP address"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during reloads"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );
    let (_, _, body) = raw(
        &tb,
        addr,
        "ua-auto-config.alpha.test",
        "ua-auto-config.alpha.test",
        "GET",
        "/.well-known/user-agent-configuration.json",
        None,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&body).contains("Alpha Mail v4"),
        "the last good description serves"
    );
}

const DOC: &[u8] = br#"{"protocols":{"imap":{"host":"imap.x.test"}},"authentication":{"password":true},"info":{"provider":{"name":"X"}}}"#;

fn verdicts(f: &[pacc_proto::provider::check::CheckFinding], area: &str) -> Vec<Verdict> {
    f.iter()
        .filter(|x| x.area == area)
        .map(|x| x.verdict)
        .collect()
}

#[tokio::test]
async fn check_judges_deployments() {
    let tb = testbed().await;
    let c = client(&tb);
    // Right.
    let _a = tb.provider("right.test", DOC).await.unwrap();
    let r = discover(&c, "u@right.test").await;
    let f = check(&r, None, Some(DOC));
    assert!(
        f.iter()
            .all(|x| x.verdict != Verdict::Fail && x.verdict != Verdict::Warn),
        "{f:#?}"
    );
    assert_eq!(verdicts(&f, "drift"), [Verdict::Pass]);
    assert_eq!(rotation_stage(&r, DOC, DOC), RotationStage::InStep);
    // Drifting by one byte (its own digest published, so clients accept it).
    let mut drifted = DOC.to_vec();
    drifted.push(b'\n');
    let _b = tb.provider("drift.test", &drifted).await.unwrap();
    let r = discover(&c, "u@drift.test").await;
    let f = check(&r, None, Some(DOC));
    assert_eq!(verdicts(&f, "drift"), [Verdict::Warn]);
    assert!(
        f.iter()
            .any(|x| x.area == "drift" && x.message.contains(&format!("byte {}", DOC.len()))),
        "{f:#?}"
    );
    // A valid but non-canonical record.
    let _c = tb.serve_document("noncanon.test", DOC).await.unwrap();
    let canonical = sha256_record(DOC);
    let d = canonical.rsplit("d=").next().unwrap();
    tb.publish_txt("noncanon.test", &format!("d={d};a=SHA256;v=UAAC1;"))
        .await
        .unwrap();
    let f = check(&discover(&c, "u@noncanon.test").await, None, None);
    assert_eq!(
        verdicts(&f, "txt"),
        [Verdict::Warn, Verdict::Pass],
        "{f:#?}"
    );
    assert!(
        f[2..]
            .iter()
            .any(|x| x.fix.as_deref().is_some_and(|fix| fix.contains(&canonical)))
    );
    // Mid-rotation: old bytes served, old and new records published; then new served, old kept.
    let new = br#"{"protocols":{"imap":{"host":"imap2.x.test"}},"authentication":{"password":true},"info":{"provider":{"name":"X"}}}"#;
    let _d = tb.provider("rotating.test", DOC).await.unwrap();
    tb.publish_txt("rotating.test", &sha256_record(new))
        .await
        .unwrap();
    let r = discover(&c, "u@rotating.test").await;
    assert_eq!(rotation_stage(&r, DOC, new), RotationStage::BothPublished);
    let f = check(&r, None, Some(new));
    assert!(
        !f.iter().any(|x| x.verdict == Verdict::Fail),
        "a rollover in progress is not a failure: {f:#?}"
    );
    let _e = tb.serve_document("rotated.test", new).await.unwrap();
    tb.publish_txt("rotated.test", &sha256_record(DOC))
        .await
        .unwrap();
    tb.publish_txt("rotated.test", &sha256_record(new))
        .await
        .unwrap();
    let r = discover(&c, "u@rotated.test").await;
    assert_eq!(rotation_stage(&r, new, new), RotationStage::NewServed);
    let _f = tb.provider("notstarted.test", DOC).await.unwrap();
    let r = discover(&c, "u@notstarted.test").await;
    assert_eq!(rotation_stage(&r, DOC, new), RotationStage::NotStarted);
    // Broken: stale digest; TLS 1.2 only; an invalid document.
    let _g = tb.serve_document("stale.test", DOC).await.unwrap();
    tb.publish_txt("stale.test", &sha256_record(b"old"))
        .await
        .unwrap();
    let f = check(&discover(&c, "u@stale.test").await, None, None);
    assert!(verdicts(&f, "digest").contains(&Verdict::Fail), "{f:#?}");
    let mut b = Behaviour::new(Reply::json(DOC.to_vec()));
    b.tls = TlsVersions::Tls12;
    let _h = tb
        .https_host(&["ua-auto-config.oldtls.test"], b)
        .await
        .unwrap();
    tb.publish_txt("oldtls.test", &sha256_record(DOC))
        .await
        .unwrap();
    let f = check(&discover(&c, "u@oldtls.test").await, None, None);
    assert_eq!(verdicts(&f, "retrieval"), [Verdict::Fail]);
    assert!(f[0].fix.as_deref().unwrap().contains("TLS 1.3"));
    let _i = tb
        .provider(
            "noinfo.test",
            br#"{"protocols":{"imap":{"host":"i.test"}}}"#,
        )
        .await
        .unwrap();
    let f = check(&discover(&c, "u@noinfo.test").await, None, None);
    assert!(
        f.iter().any(|x| x.area == "document"
            && x.verdict == Verdict::Fail
            && x.message.contains("$.info")),
        "{f:#?}"
    );
}

/// The certificate `serve` presents for `sni`: its not-after date (Unix seconds).
async fn presented_expiry(tb: &Testbed, addr: SocketAddr, sni: &str) -> i64 {
    let tls = tls_connect(tb, addr, sni).await;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, c) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    c.validity().not_after.timestamp()
}

fn pem(leaf: &pacc_testbed::Leaf) -> String {
    format!("{}{}", leaf.cert_pem, leaf.key_pem)
}

const ONE: &str = r#"
[[document]]
domains = ["one.test", "two.test"]
password = true
[document.services]
imap = "imap.one.test"
[document.provider]
name = "One"
[document.tls]
cert = "pair.pem"
key = "pair.key"

[serve]
cert_dir = "certs"
"#;

/// Issue 15.1: every host gets a certificate that covers it and is valid now; among several,
/// the latest expiry wins; a pair that covers only some of its group's domains is refused
/// (naming both) unless another certificate covers the rest; soon-expiring ones are warned.
#[tokio::test]
async fn certificates_are_chosen_right() {
    let tb = testbed().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(dir.path().join("provider.toml"), ONE).unwrap();
    let issue = |names: &[&str], kind| {
        tb.ca
            .issue(
                &names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
                kind,
            )
            .unwrap()
    };
    // The pair covers one.test only.
    let pair = issue(&["ua-auto-config.one.test"], CertKind::Valid);
    std::fs::write(dir.path().join("pair.pem"), &pair.cert_pem).unwrap();
    std::fs::write(dir.path().join("pair.key"), &pair.key_pem).unwrap();
    let ip = free_loopback_ip(&[443]).await.unwrap();
    let addr = SocketAddr::new(IpAddr::V4(ip), 443);
    let err = Server::start(&dir.path().join("provider.toml"), None, &[addr])
        .await
        .err()
        .expect("a pair that does not cover two.test is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("pair.pem") && msg.contains("ua-auto-config.two.test"),
        "{msg}"
    );

    // In the directory: an expired certificate for two.test (first by name), a valid one
    // expiring in 10 days and its renewal for 90 days.
    std::fs::write(
        certs.join("a-expired.pem"),
        pem(&issue(&["ua-auto-config.two.test"], CertKind::Expired)),
    )
    .unwrap();
    std::fs::write(
        certs.join("b-soon.pem"),
        pem(&issue(
            &["ua-auto-config.two.test"],
            CertKind::ValidForDays(10),
        )),
    )
    .unwrap();
    std::fs::write(
        certs.join("c-renewed.pem"),
        pem(&issue(
            &["ua-auto-config.two.test"],
            CertKind::ValidForDays(90),
        )),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("provider.toml"), None, &[addr])
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let two = presented_expiry(&tb, addr, "ua-auto-config.two.test").await;
    assert!(
        two - now > 80 * 86_400,
        "the renewal is presented, not the expired or the older one"
    );
    assert!(server.warnings().is_empty(), "{:?}", server.warnings());

    // Without the renewal, the 10-day certificate is used and warned about.
    std::fs::remove_file(certs.join("c-renewed.pem")).unwrap();
    server.reload().unwrap();
    let two = presented_expiry(&tb, addr, "ua-auto-config.two.test").await;
    assert!(two - now < 11 * 86_400 && two > now);
    let warnings = server.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ua-auto-config.two.test") && w.contains("b-soon.pem")),
        "{warnings:?}"
    );
    // Only the expired one left: refused, naming it (and the old state keeps serving).
    std::fs::remove_file(certs.join("b-soon.pem")).unwrap();
    let err = server.reload().unwrap_err().to_string();
    assert!(
        err.contains("ua-auto-config.two.test")
            && err.contains("not valid now")
            && err.contains("a-expired.pem"),
        "{err}"
    );
    assert!(presented_expiry(&tb, addr, "ua-auto-config.two.test").await > now);
    server.shutdown(Duration::from_secs(1)).await;
}

/// Issue 15.1: SIGTERM's shutdown stops accepting at once and does not wait for clients
/// stuck in the TLS handshake or in the request head.
#[tokio::test]
async fn shutdown_is_bounded_by_slow_clients() {
    let tb = testbed().await;
    let dir = tempfile::tempdir().unwrap();
    write_files(&tb, dir.path(), DESC);
    let ip = free_loopback_ip(&[443]).await.unwrap();
    let addr = SocketAddr::new(IpAddr::V4(ip), 443);
    let server = Server::start(&dir.path().join("provider.toml"), None, &[addr])
        .await
        .unwrap();
    // One client mid-handshake (TCP only), one mid-head (TLS, half a request).
    let _stuck_handshake = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tls_connect(&tb, addr, "ua-auto-config.alpha.test").await;
    use tokio::io::AsyncWriteExt as _;
    half.write_all(b"GET /.well-known/user-agent-configuration.json HTTP/1.1\r\nHost: ua-auto")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    server.shutdown(Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?} for clients that will never finish",
        started.elapsed()
    );
    // The listener is gone: a new connection is refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
