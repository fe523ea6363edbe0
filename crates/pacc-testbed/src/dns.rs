//! An authoritative DNS server for any names (hickory-server), on its own loopback address.
//!
//! It serves one in-memory root zone, so a test can publish records under any name
//! (`example.test`, `bücher.example`, …) and get real NXDOMAIN/NODATA answers with an SOA for
//! everything else. Records can be added and removed while it runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::rr::rdata::{A, MX, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

use crate::{AbortOnDrop, TestbedError, addr};

const TTL: u32 = 300;

/// A running authoritative server.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    serial: AtomicU32,
    _task: AbortOnDrop,
}

impl DnsServer {
    /// Start on a fresh loopback address, port 53.
    pub async fn start() -> Result<Self, TestbedError> {
        let (udp, tcp) = addr::bind_udp_tcp(53).await.map_err(TestbedError::Bind)?;
        let addr = udp.local_addr().map_err(TestbedError::Bind)?;
        let origin = Name::root();
        let mut zone =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_ascii("ns.testbed.invalid.").map_err(dns_err)?,
            Name::from_ascii("hostmaster.testbed.invalid.").map_err(dns_err)?,
            1,
            3600,
            600,
            86_400,
            60,
        );
        zone.upsert_mut(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1);
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = zone.clone();
        catalog.upsert(LowerName::from(&origin), vec![handler]);
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
        let task = tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        Ok(DnsServer {
            addr,
            zone,
            serial: AtomicU32::new(2),
            _task: AbortOnDrop(task),
        })
    }

    /// Where to send questions (`--dns`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn add(&self, name: &str, rdata: RData) -> Result<(), TestbedError> {
        let name = fqdn(name)?;
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        self.zone
            .upsert(Record::from_rdata(name, TTL, rdata), serial)
            .await;
        Ok(())
    }

    /// Add an A record.
    pub async fn add_a(&self, name: &str, ip: Ipv4Addr) -> Result<(), TestbedError> {
        self.add(name, RData::A(A(ip))).await
    }

    /// Add a TXT RR made of the given character-strings (several strings = one RR, DIG-8).
    pub async fn add_txt(&self, name: &str, strings: &[&[u8]]) -> Result<(), TestbedError> {
        self.add(name, RData::TXT(TXT::from_bytes(strings.to_vec())))
            .await
    }

    /// Add an MX record (`exchange` `.` for a null MX).
    pub async fn add_mx(
        &self,
        name: &str,
        preference: u16,
        exchange: &str,
    ) -> Result<(), TestbedError> {
        self.add(name, RData::MX(MX::new(preference, fqdn(exchange)?)))
            .await
    }

    /// Remove every record of `rtype` at `name`.
    pub async fn remove(&self, name: &str, rtype: RecordType) -> Result<(), TestbedError> {
        let key = RrKey::new(LowerName::from(&fqdn(name)?), rtype);
        self.zone.records_mut().await.remove(&key);
        Ok(())
    }
}

fn fqdn(name: &str) -> Result<Name, TestbedError> {
    let mut n = Name::from_utf8(name).map_err(dns_err)?;
    n.set_fqdn(true);
    Ok(n)
}

fn dns_err(e: impl std::fmt::Display) -> TestbedError {
    TestbedError::Dns(e.to_string())
}

/// A DNS server that receives questions and never answers (for deadline tests).
pub struct SilentDns {
    addr: SocketAddr,
    _task: AbortOnDrop,
}

impl SilentDns {
    /// Bind UDP and TCP on a fresh address, port 53, and swallow everything.
    pub async fn start() -> Result<Self, TestbedError> {
        let (udp, tcp) = addr::bind_udp_tcp(53).await.map_err(TestbedError::Bind)?;
        let addr = udp.local_addr().map_err(TestbedError::Bind)?;
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                tokio::select! {
                    _ = udp.recv_from(&mut buf) => {}
                    Ok((s, _)) = tcp.accept() => held.push(s),
                }
            }
        });
        Ok(SilentDns {
            addr,
            _task: AbortOnDrop(task),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
