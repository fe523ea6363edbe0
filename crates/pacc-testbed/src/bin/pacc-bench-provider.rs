//! Test providers for the latency benchmark (bench/latency.py): run inside the benchmark's
//! server namespace with `PACC_TESTBED_NET` set, it starts the DNS server, the CA and the
//! HTTPS hosts of every scenario, writes the CA to `--ca-out`, prints `READY <dns-addr>`
//! and serves until killed.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use pacc_testbed::{Behaviour, Reply, Testbed};

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
    let _full = pacc_testbed::full::Provider::start(&tb, "full.bench", "Full", None).await?;
    println!("READY {}", tb.dns_addr());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
