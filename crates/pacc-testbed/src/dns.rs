//! An authoritative DNS server for any names (hickory-server), on its own loopback address.
//!
//! It serves one in-memory root zone, so a test can publish records under any name
//! (`example.test`, `bücher.example`, …) and get real NXDOMAIN/NODATA answers with an SOA for
//! everything else. Records can be added and removed while it runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::rr::rdata::{A, CNAME, MX, NS, SOA, TXT};
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

    /// Add a CNAME record: `name` is an alias of `target`.
    pub async fn add_cname(&self, name: &str, target: &str) -> Result<(), TestbedError> {
        self.add(name, RData::CNAME(CNAME(fqdn(target)?))).await
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

    /// Add an NS record: `name` is served by `host`.
    pub async fn add_ns(&self, name: &str, host: &str) -> Result<(), TestbedError> {
        self.add(name, RData::NS(NS(fqdn(host)?))).await
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

/// How a [`HostileDns`] mangles the answers of the real server behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// UDP answers are empty with the TC bit set; TCP gives the real answer (a server
    /// that is usable over TCP only).
    TruncateUdp,
    /// UDP answers carry TC; TCP connections are closed at once.
    TruncateEverywhere,
    /// First a reply with the wrong message ID, then the right one.
    WrongIdFirst,
    /// Only replies with the wrong message ID.
    WrongIdOnly,
    /// SERVFAIL for every question.
    ServFail,
    /// REFUSED for every question.
    Refused,
    /// Random bytes instead of a DNS message.
    Garbage,
    /// The real answer, with the question section replaced by another name.
    WrongQuestion,
}

/// A DNS front on its own loopback address (UDP and TCP, port 53) that forwards each
/// question to a real [`DnsServer`] over TCP and mangles the reply as its [`DnsMode`] says.
pub struct HostileDns {
    addr: SocketAddr,
    _udp: AbortOnDrop,
    _tcp: AbortOnDrop,
}

impl HostileDns {
    /// Start in front of `upstream` (a [`DnsServer`]'s address).
    pub async fn start(upstream: SocketAddr, mode: DnsMode) -> Result<Self, TestbedError> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (udp, tcp) = addr::bind_udp_tcp(53).await.map_err(TestbedError::Bind)?;
        let addr = udp.local_addr().map_err(TestbedError::Bind)?;
        let udp = Arc::new(udp);
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                let query = buf[..n].to_vec();
                let udp = udp.clone();
                tokio::spawn(async move {
                    for reply in mangle_udp(&query, upstream, mode).await {
                        let _ = udp.send_to(&reply, from).await;
                    }
                });
            }
        });
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    if mode == DnsMode::TruncateEverywhere {
                        return;
                    }
                    loop {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if s.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        let reply = match mode {
                            DnsMode::TruncateUdp => forward(&q, upstream).await,
                            _ => mangle_udp(&q, upstream, mode).await.pop(),
                        };
                        let Some(reply) = reply else { return };
                        let Ok(n) = u16::try_from(reply.len()) else {
                            return;
                        };
                        if s.write_all(&n.to_be_bytes()).await.is_err()
                            || s.write_all(&reply).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Ok(HostileDns {
            addr,
            _udp: AbortOnDrop(udp_task),
            _tcp: AbortOnDrop(tcp_task),
        })
    }

    /// Where to send questions.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Ask `upstream` over TCP; the raw reply.
async fn forward(query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(upstream).await.ok()?;
    let n = u16::try_from(query.len()).ok()?;
    s.write_all(&n.to_be_bytes()).await.ok()?;
    s.write_all(query).await.ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply).await.ok()?;
    Some(reply)
}

/// The datagrams to send back for `query`.
async fn mangle_udp(query: &[u8], upstream: SocketAddr, mode: DnsMode) -> Vec<Vec<u8>> {
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::serialize::binary::{BinDecodable as _, BinEncodable as _};
    let Ok(q) = Message::from_bytes(query) else {
        return Vec::new();
    };
    let id = q.metadata.id;
    let with_id = |mut reply: Vec<u8>, id: u16| {
        if reply.len() >= 2 {
            reply[..2].copy_from_slice(&id.to_be_bytes());
        }
        reply
    };
    let status = |code: ResponseCode, truncated: bool| {
        let mut m = q.clone();
        m.metadata.message_type = hickory_proto::op::MessageType::Response;
        m.metadata.response_code = code;
        m.metadata.truncation = truncated;
        m.to_bytes().unwrap_or_default()
    };
    match mode {
        DnsMode::TruncateUdp | DnsMode::TruncateEverywhere => {
            vec![status(ResponseCode::NoError, true)]
        }
        DnsMode::ServFail => vec![status(ResponseCode::ServFail, false)],
        DnsMode::Refused => vec![status(ResponseCode::Refused, false)],
        DnsMode::Garbage => vec![with_id(
            b"\x00\x00\xff\xff garbage, not DNS \x00\x01".to_vec(),
            id,
        )],
        DnsMode::WrongIdFirst => match forward(query, upstream).await {
            Some(r) => vec![with_id(r.clone(), id.wrapping_add(1)), r],
            None => Vec::new(),
        },
        DnsMode::WrongIdOnly => match forward(query, upstream).await {
            Some(r) => vec![with_id(r, id.wrapping_add(1))],
            None => Vec::new(),
        },
        DnsMode::WrongQuestion => match forward(query, upstream).await {
            Some(r) => match Message::from_bytes(&r) {
                Ok(mut m) => {
                    for question in &mut m.queries {
                        if let Ok(other) = Name::from_ascii("elsewhere.invalid.") {
                            question.set_name(other);
                        }
                    }
                    vec![m.to_bytes().unwrap_or_default()]
                }
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        },
    }
}
