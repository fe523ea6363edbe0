//! Hostile providers for the stress benchmark (bench/stress.py): the worst case of each
//! input pacc reads, on loopback. Writes the CA to `--ca-out`, prints `READY <dns-addr>` and
//! serves until killed. Each `<scenario>.stress` domain publishes a valid document whose
//! only service (or whose document fetch itself) is the hostile part.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use pacc_testbed::{Behaviour, CertKind, Reply, ScriptStep, ScriptedServer, Testbed};

/// About 2 MB: 256 lines of about 8 KiB of unique words.
fn flood(line: impl Fn(usize, &str) -> String) -> Vec<u8> {
    (0..256)
        .flat_map(|i| {
            let words: Vec<String> = (0..740).map(|w| format!("W{i:03}-X{w:04}")).collect();
            line(i, &words.join(" ")).into_bytes()
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use ScriptStep::*;
    let args: Vec<String> = std::env::args().collect();
    let ca_out = args
        .iter()
        .position(|a| a == "--ca-out")
        .and_then(|i| args.get(i + 1))
        .ok_or("usage: pacc-bench-hostile --ca-out FILE")?;
    let tb = Testbed::start().await?;
    std::fs::write(ca_out, tb.ca.cert_pem())?;
    let mut keep = Vec::new();
    let mut scripted = Vec::new();
    let s = |x: &str| ScriptStep::send(x);

    // Mail servers: (scenario, document key, port, implicit TLS, script).
    let mut imap = b"* OK hi\r\n".to_vec();
    imap.extend(flood(|_, w| format!("* CAPABILITY {w}\r\n")));
    let mut smtp_ehlo = b"250-mx\r\n".to_vec();
    smtp_ehlo.extend(flood(|_, w| {
        format!("250-{}\r\n", w.replace(' ', "\r\n250-"))
    }));
    smtp_ehlo.extend_from_slice(b"250 AUTH PLAIN\r\n");
    let mut pop3 = b"+OK\r\n".to_vec();
    pop3.extend(flood(|_, w| format!("X-{}\r\n", w.replace(' ', "\r\nX-"))));
    pop3.extend_from_slice(b".\r\n");
    let mut sieve = Vec::new();
    for i in 0..256 {
        sieve
            .extend_from_slice(format!("\"X-CAP-{i:04}\" \"{}\"\r\n", "v".repeat(8000)).as_bytes());
    }
    sieve.extend_from_slice(b"\"SASL\" \"PLAIN\"\r\nOK \"hi\"\r\n");
    let mail: Vec<(&str, &str, u16, bool, Vec<ScriptStep>)> = vec![
        ("imap-caps", "imap", 993, true, vec![Send(imap), Stall]),
        (
            "smtp-ehlo",
            "submit",
            465,
            true,
            vec![s("220 hi\r\n"), ReadLine, Send(smtp_ehlo), Stall],
        ),
        (
            "pop3-capa",
            "pop3",
            995,
            true,
            vec![s("+OK hi\r\n"), ReadLine, Send(pop3), Stall],
        ),
        (
            "sieve-caps",
            "managesieve",
            4190,
            false,
            vec![
                s("\"SASL\" \"PLAIN\"\r\n\"STARTTLS\"\r\nOK \"hi\"\r\n"),
                ReadLine,
                s("OK \"go\"\r\n"),
                StartTls,
                Send(sieve),
                Stall,
            ],
        ),
        (
            "imap-endless-line",
            "imap",
            993,
            true,
            vec![
                s("* OK [CAPABILITY IMAP4rev1 "),
                Flood(b"AUTH=PLAIN ".to_vec()),
            ],
        ),
        (
            "imap-drip",
            "imap",
            993,
            true,
            vec![Drip(
                b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n".to_vec(),
                Duration::from_millis(200),
            )],
        ),
    ];
    for (scenario, key, port, implicit, script) in mail {
        let domain = format!("{scenario}.stress");
        let host = format!("mail.{domain}");
        let srv = ScriptedServer::start(&tb.ca, &[&host], port, implicit, CertKind::Valid, script)
            .await?;
        if let std::net::IpAddr::V4(ip) = srv.addr().ip() {
            tb.dns.add_a(&host, ip).await?;
        }
        scripted.push(srv);
        let doc = format!(
            r#"{{"protocols":{{"{key}":{{"host":"{host}"}}}},"authentication":{{"password":true}}}}"#
        );
        keep.push(tb.provider(&domain, doc.as_bytes()).await?);
    }

    // The document fetch itself.
    let doc = br#"{"protocols":{"imap":{"host":"imap.example.test"}}}"#;
    for (scenario, reply) in [
        (
            "gzip-bomb",
            Reply::Gzip(vec![b' '; 64 * 1024 * 1024].into()),
        ),
        (
            "huge-body",
            Reply::Huge {
                total: 1 << 30,
                declare_length: false,
            },
        ),
    ] {
        let domain = format!("{scenario}.stress");
        keep.push(
            tb.https_host(
                &[&format!("ua-auto-config.{domain}")],
                Behaviour::new(reply),
            )
            .await?,
        );
        tb.publish_txt(&domain, &pacc_testbed::sha256_record(doc))
            .await?;
    }
    // 200 TXT records beside the valid one.
    let domain = "many-txt.stress";
    keep.push(tb.provider(domain, doc).await?);
    for i in 0..200 {
        tb.publish_txt(domain, &format!("v=spf1 include:_{i}.example -all"))
            .await?;
    }
    println!("READY {}", tb.dns_addr());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
