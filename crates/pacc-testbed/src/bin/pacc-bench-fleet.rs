//! The fleet for `bench/fleet.py`: customer domains of one hoster on loopback. N domains
//! (`c00000.fleet.bench` …) publish their own document; M more (`m00000.fleet.bench` …) are
//! hosted through the MX fallback: an MX record to `mx.hoster.bench` (which publishes the
//! document they use) and an MTA-STS `enforce` policy at `mta-sts.<domain>`. Writes a
//! certificate per domain into `DIR/certs` and the CA into `DIR/ca.pem`, publishes every
//! address (`--serve-ip`, where the script runs `pacc serve`), digest (`--record` for the
//! primary domains, `--mx-record` for the MX host), MX and `_mta-sts` record in the testbed
//! DNS, prints `READY <dns-addr> <ca-file>` and serves DNS until killed.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use pacc_testbed::{CertKind, Testbed};

/// The MX host whose document the MX-hosted domains use.
const MX_HOST: &str = "mx.hoster.bench";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let usage = "usage: pacc-bench-fleet --dir DIR --domains N [--mx-hosted M --mx-record TXT] --serve-ip IP --record TXT";
    let dir = std::path::PathBuf::from(flag("--dir").ok_or(usage)?);
    let n: usize = flag("--domains").ok_or(usage)?.parse()?;
    let m: usize = flag("--mx-hosted").map_or(Ok(0), |v| v.parse())?;
    let ip: std::net::Ipv4Addr = flag("--serve-ip").ok_or(usage)?.parse()?;
    let tb = Testbed::start().await?;
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let record = flag("--record").ok_or(usage)?;
    let cert = |domain: &str, names: &[String]| -> Result<(), Box<dyn std::error::Error>> {
        let leaf = tb.ca.issue(names, CertKind::Valid)?;
        std::fs::write(
            certs.join(format!("{domain}.pem")),
            format!("{}{}", leaf.cert_pem, leaf.key_pem),
        )?;
        Ok(())
    };
    for i in 0..n {
        let d = format!("c{i:05}.fleet.bench");
        let host = format!("ua-auto-config.{d}");
        cert(&d, std::slice::from_ref(&host))?;
        tb.dns.add_a(&host, ip).await?;
        tb.publish_txt(&d, &record).await?;
    }
    if m > 0 {
        let mx_record = flag("--mx-record").ok_or(usage)?;
        let host = format!("ua-auto-config.{MX_HOST}");
        cert(MX_HOST, &[host.clone(), format!("mta-sts.{MX_HOST}")])?;
        tb.dns.add_a(&host, ip).await?;
        tb.publish_txt(MX_HOST, &mx_record).await?;
        for i in 0..m {
            let d = format!("m{i:05}.fleet.bench");
            // serve answers for both names; only the policy host is published.
            let policy = format!("mta-sts.{d}");
            cert(&d, &[format!("ua-auto-config.{d}"), policy.clone()])?;
            tb.dns.add_a(&policy, ip).await?;
            tb.dns.add_mx(&d, 10, MX_HOST).await?;
            tb.dns
                .add_txt(&format!("_mta-sts.{d}"), &[b"v=STSv1; id=fleet1"])
                .await?;
        }
    }
    std::fs::write(dir.join("ca.pem"), tb.ca.cert_pem())?;
    println!("READY {} {}", tb.dns_addr(), dir.join("ca.pem").display());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
