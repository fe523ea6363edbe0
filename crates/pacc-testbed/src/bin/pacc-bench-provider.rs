//! Test providers for the latency benchmark (bench/latency.py): run inside the benchmark's
//! server namespace with `PACC_TESTBED_NET` set, it starts the DNS server, the CA and the
//! HTTPS hosts of every scenario, writes the CA to `--ca-out`, prints `READY <dns-addr>`
//! and serves until killed.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use pacc_testbed::{Behaviour, CertKind, Reply, ScriptStep, ScriptedServer, Testbed};

const DOC: &[u8] = br#"{"protocols":{"imap":{"host":"imap.provider.bench"},"submit":{"host":"smtp.provider.bench"},"jmap":{"url":"https://jmap.provider.bench/session"}},"authentication":{"password":true},"info":{"provider":{"name":"Bench"}}}"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let ca_out = args
        .iter()
        .position(|a| a == "--ca-out")
        .and_then(|i| args.get(i + 1))
        .ok_or("usage: pacc-bench-provider --ca-out FILE")?;
    let tb = Testbed::start().await?;
    std::fs::write(ca_out, tb.ca.cert_pem())?;
    let mut keep = Vec::new();
    // primary.bench: the well-known path.
    keep.push(tb.provider("primary.bench", DOC).await?);
    // hostedN.bench: nothing of its own; MTA-STS enforce; N MX hosts serving DOC.
    for (domain, n) in [("hosted1.bench", 1), ("hosted3.bench", 3)] {
        keep.push(
            tb.mta_sts(domain, "1", &Testbed::enforce_policy(&["*.mx.bench"]))
                .await?,
        );
        for i in 0..n {
            let mx = format!("mx{i}-{domain}").replace(".bench", "") + ".mx.bench";
            tb.dns.add_mx(domain, 10, &mx).await?;
            keep.push(tb.provider(&mx, DOC).await?);
        }
    }
    // stallprimary.bench: the primary host accepts TLS and never answers.
    keep.push(
        tb.https_host(
            &["ua-auto-config.stallprimary.bench"],
            Behaviour::new(Reply::NeverAnswer),
        )
        .await?,
    );
    tb.publish_txt("stallprimary.bench", &pacc_testbed::sha256_record(DOC))
        .await?;
    // stallmx.bench: two best MX hosts, one of which never answers.
    keep.push(
        tb.mta_sts(
            "stallmx.bench",
            "1",
            &Testbed::enforce_policy(&["*.mx.bench"]),
        )
        .await?,
    );
    tb.dns
        .add_mx("stallmx.bench", 10, "good-stallmx.mx.bench")
        .await?;
    tb.dns
        .add_mx("stallmx.bench", 10, "bad-stallmx.mx.bench")
        .await?;
    keep.push(tb.provider("good-stallmx.mx.bench", DOC).await?);
    keep.push(
        tb.https_host(
            &["ua-auto-config.bad-stallmx.mx.bench"],
            Behaviour::new(Reply::NeverAnswer),
        )
        .await?,
    );
    tb.publish_txt("bad-stallmx.mx.bench", &pacc_testbed::sha256_record(DOC))
        .await?;
    // full.bench: all eight services, answering probes and accepting any password, so
    // `pacc probe` and `pacc setup` can be timed end to end.
    let full = br#"{"protocols":{"jmap":{"url":"https://jmap.full.bench/session"},"imap":{"host":"imap.full.bench"},"pop3":{"host":"pop.full.bench"},"submit":{"host":"smtp.full.bench"},"caldav":{"url":"https://dav.full.bench/cal/"},"carddav":{"url":"https://dav.full.bench/card/"},"webdav":{"url":"https://files.full.bench/files/"},"managesieve":{"host":"sieve.full.bench"}},"authentication":{"password":true},"info":{"provider":{"name":"Full"}}}"#;
    keep.push(tb.provider("full.bench", full).await?);
    for (host, challenge, ok) in [
        ("jmap.full.bench", "Basic realm=\"jmap\"", 200),
        ("dav.full.bench", "Basic realm=\"dav\"", 207),
        ("files.full.bench", "Basic realm=\"files\"", 207),
    ] {
        keep.push(
            tb.https_host(
                &[host],
                Behaviour::new(Reply::AuthGate {
                    challenge: challenge.into(),
                    ok_status: ok,
                }),
            )
            .await?,
        );
    }
    use ScriptStep::{ReadLine, StartTls};
    let s = ScriptStep::send;
    let scripted: [(&str, u16, bool, Vec<ScriptStep>); 4] = [
        // Capabilities in the greeting; the next command (LOGOUT, or AUTHENTICATE tagged b1
        // on the probe's connection or a1 on a new one) gets OK.
        (
            "imap.full.bench",
            993,
            true,
            vec![
                s("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n"),
                ReadLine,
                s("b1 OK done\r\na1 OK done\r\n"),
                ReadLine,
            ],
        ),
        // CAPA's answer doubles as AUTH's +OK on a new connection; on the probe's own
        // connection AUTH comes after CAPA.
        (
            "pop.full.bench",
            995,
            true,
            vec![
                s("+OK ready\r\n"),
                ReadLine,
                s("+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n"),
                ReadLine,
                s("+OK logged in\r\n"),
                ReadLine,
            ],
        ),
        // After EHLO, QUIT or AUTH gets 235.
        (
            "smtp.full.bench",
            465,
            true,
            vec![
                s("220 smtp.full.bench ESMTP\r\n"),
                ReadLine,
                s("250-smtp.full.bench\r\n250 AUTH PLAIN\r\n"),
                ReadLine,
                s("235 2.7.0 ok\r\n"),
                ReadLine,
            ],
        ),
        (
            "sieve.full.bench",
            4190,
            false,
            vec![
                s("\"IMPLEMENTATION\" \"bench\"\r\n\"STARTTLS\"\r\nOK \"ready\"\r\n"),
                ReadLine,
                s("OK \"go\"\r\n"),
                StartTls,
                s("\"SASL\" \"PLAIN\"\r\nOK \"tls\"\r\n"),
                ReadLine,
                s("OK \"done\"\r\n"),
                ReadLine,
            ],
        ),
    ];
    let mut scripted_servers = Vec::new();
    for (host, port, implicit, script) in scripted {
        let srv =
            ScriptedServer::start(&tb.ca, &[host], port, implicit, CertKind::Valid, script).await?;
        if let std::net::IpAddr::V4(ip) = srv.addr().ip() {
            tb.dns.add_a(host, ip).await?;
        }
        scripted_servers.push(srv);
    }
    println!("READY {}", tb.dns_addr());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
