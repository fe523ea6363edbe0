//! The fleet for `bench/fleet.py`: N customer domains (`c00000.fleet.bench` …) of one
//! hoster on loopback. Writes a certificate per `ua-auto-config.<domain>` into `DIR/certs`
//! and the CA into `DIR/ca.pem`, publishes each domain's address (`--serve-ip`, where the
//! script runs `pacc serve`) and digest (`--record`, the same document for all) in the
//! testbed DNS, prints `READY <dns-addr> <ca-file>` and serves DNS until killed.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use pacc_testbed::{CertKind, Testbed};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let usage = "usage: pacc-bench-fleet --dir DIR --domains N --serve-ip IP --record TXT";
    let dir = std::path::PathBuf::from(flag("--dir").ok_or(usage)?);
    let n: usize = flag("--domains").ok_or(usage)?.parse()?;
    let ip: std::net::Ipv4Addr = flag("--serve-ip").ok_or(usage)?.parse()?;
    let tb = Testbed::start().await?;
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    let domains: Vec<String> = (0..n).map(|i| format!("c{i:05}.fleet.bench")).collect();
    let record = flag("--record").ok_or(usage)?;
    for d in &domains {
        let host = format!("ua-auto-config.{d}");
        let leaf = tb.ca.issue(std::slice::from_ref(&host), CertKind::Valid)?;
        std::fs::write(
            certs.join(format!("{d}.pem")),
            format!("{}{}", leaf.cert_pem, leaf.key_pem),
        )?;
        tb.dns.add_a(&host, ip).await?;
        tb.publish_txt(d, &record).await?;
    }
    std::fs::write(dir.join("ca.pem"), tb.ca.cert_pem())?;
    println!("READY {} {}", tb.dns_addr(), dir.join("ca.pem").display());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
