//! DNS through hickory-resolver: the system configuration, or one server the user names.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use pacc_proto::discovery::{DnsFailure, MAX_CNAME_CHAIN, MxResult};
use pacc_proto::mx::MxRecord;

use crate::ClientError;

/// Most addresses we try per host.
const MAX_ADDRESSES: usize = 16;

/// Where DNS questions go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DnsConfig {
    /// `/etc/resolv.conf` (or the platform's equivalent).
    #[default]
    System,
    /// One server, UDP first with TCP fallback for truncated answers.
    Server(SocketAddr),
}

/// A resolver with the options discovery needs (no search list, no hosts file when a server
/// is named, bounded attempts).
#[derive(Clone)]
pub(crate) struct Dns {
    resolver: TokioResolver,
    /// The servers asked (for the reachability check).
    servers: Vec<std::net::SocketAddr>,
    /// A server answered the reachability check once: later discoveries skip it.
    reached: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Dns {
    pub(crate) fn new(config: &DnsConfig, attempt_timeout: Duration) -> Result<Self, ClientError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = attempt_timeout;
        opts.attempts = 2;
        opts.ndots = 0;
        opts.preserve_intermediates = true;
        let servers;
        let builder = match config {
            DnsConfig::System => {
                let builder = TokioResolver::builder_tokio().map_err(|e| {
                    ClientError::Resolver(format!(
                        "no DNS server is configured (cannot read /etc/resolv.conf: {e}); give one with --dns IP"
                    ))
                })?;
                servers = hickory_resolver::system_conf::read_system_conf()
                    .map(|(c, _)| {
                        c.name_servers()
                            .iter()
                            .map(|ns| {
                                let port = ns.connections.first().map_or(53, |c| c.port);
                                std::net::SocketAddr::new(ns.ip, port)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                builder
            }
            DnsConfig::Server(addr) => {
                servers = vec![*addr];
                opts.use_hosts_file = ResolveHosts::Never;
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                let cfg = ResolverConfig::from_name_servers(vec![ns]);
                hickory_resolver::Resolver::builder_with_config(
                    cfg,
                    TokioRuntimeProvider::default(),
                )
            }
        };
        let resolver = builder
            .with_options(opts)
            .build()
            .map_err(|e| ClientError::Resolver(e.to_string()))?;
        Ok(Dns {
            resolver,
            servers,
            reached: std::sync::Arc::default(),
        })
    }

    /// Resolves only when no configured server can be reached at all: each is sent one
    /// small question (the root's NS) on a connected UDP socket, so an ICMP "port
    /// unreachable" or a missing route comes back as an error at once. A server that
    /// answers, or stays silent, keeps this pending for ever (silence is the deadline's).
    /// Once a server has answered, the client does not ask again.
    pub(crate) async fn unreachable(&self) -> String {
        use futures_util::StreamExt as _;
        use std::sync::atomic::Ordering::Relaxed;
        if self.reached.load(Relaxed) {
            return std::future::pending().await;
        }
        if self.servers.is_empty() {
            return "no DNS server is configured".to_owned();
        }
        let mut tries: futures_util::stream::FuturesUnordered<_> = self
            .servers
            .iter()
            .map(|&server| async move {
                let local: std::net::SocketAddr = if server.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let attempt = async {
                    let socket = tokio::net::UdpSocket::bind(local).await?;
                    socket.connect(server).await?;
                    // id 0x7061, RD, one question: ". IN NS".
                    let query = [
                        0x70, 0x61, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1,
                    ];
                    socket.send(&query).await?;
                    let mut buf = [0u8; 512];
                    socket.recv(&mut buf).await.map(|_| ())
                };
                match attempt.await {
                    Ok(()) => None,
                    Err(e) => Some(format!("{server}: {e}")),
                }
            })
            .collect();
        let mut errors = Vec::new();
        while let Some(r) = tries.next().await {
            match r {
                // One server answers: never resolve, and never ask again.
                None => {
                    self.reached.store(true, Relaxed);
                    std::future::pending::<()>().await
                }
                Some(e) => errors.push(e),
            }
        }
        errors.join("; ")
    }

    /// Every TXT RR at `name`, each as its list of character-strings. The whole RRset is
    /// returned (a DNS message, at most 64 KiB, bounds it); none is dropped before the
    /// digest check looks at it.
    pub(crate) async fn txt(&self, name: &str) -> Result<Vec<Vec<Vec<u8>>>, DnsFailure> {
        let lookup = self.lookup(name, RecordType::TXT).await?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
                _ => None,
            })
            .collect())
    }

    /// The TXT RRset at `name` with its TTL, asking one of the zone's authoritative servers
    /// when they can be found (a recursive resolver counts a cached TTL down, which would
    /// understate how long others may keep the records), else the configured resolver.
    pub(crate) async fn txt_with_ttl(&self, name: &str) -> Result<TxtAnswer, DnsFailure> {
        let fqdn = format!("{name}.");
        if let Some((server, lookup)) = self.ask_authoritative(&fqdn).await {
            return Ok(TxtAnswer::from_lookup(&lookup, Some(server)));
        }
        let lookup = self.lookup(name, RecordType::TXT).await?;
        Ok(TxtAnswer::from_lookup(&lookup, None))
    }

    /// The zone holding `fqdn` (from the SOA in a negative answer, or an SOA at the name),
    /// its NS hosts, and the first of their addresses that answers the TXT question.
    async fn ask_authoritative(&self, fqdn: &str) -> Option<(SocketAddr, Lookup)> {
        let zone = match self.resolver.lookup(fqdn, RecordType::SOA).await {
            Ok(l) => l.answers().first().map(|r| r.name.to_ascii())?,
            Err(NetError::Dns(DnsError::NoRecordsFound(no))) => no.soa.as_ref()?.name.to_ascii(),
            Err(_) => return None,
        };
        let ns = self
            .resolver
            .lookup(zone.as_str(), RecordType::NS)
            .await
            .ok()?;
        let hosts: Vec<String> = ns
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(n) => Some(n.0.to_ascii()),
                _ => None,
            })
            .take(4)
            .collect();
        for host in hosts {
            let Ok(ips) = self.resolver.lookup_ip(host.as_str()).await else {
                continue;
            };
            for ip in ips.iter().take(2) {
                let server = SocketAddr::new(ip, 53);
                let Ok(direct) = Dns::new(&DnsConfig::Server(server), Duration::from_secs(2))
                else {
                    continue;
                };
                if let Ok(l) = direct.resolver.lookup(fqdn, RecordType::TXT).await
                    && l.answers()
                        .iter()
                        .any(|r| r.record_type() == RecordType::TXT)
                {
                    return Some((server, l));
                }
            }
        }
        None
    }

    /// Whether `name` exists in DNS: `Some(false)` only for an NXDOMAIN answer about that
    /// very name; `None` when the question could not be answered.
    pub(crate) async fn exists(&self, name: &str) -> Option<bool> {
        let fqdn = format!("{name}.");
        match self.resolver.lookup(fqdn.as_str(), RecordType::SOA).await {
            Ok(_) => Some(true),
            Err(NetError::Dns(DnsError::NoRecordsFound(no))) => Some(
                !(no.response_code == ResponseCode::NXDomain
                    && no.query.name().to_ascii().eq_ignore_ascii_case(&fqdn)),
            ),
            Err(_) => None,
        }
    }

    /// The MX RRset of `name`, in full.
    pub(crate) async fn mx(&self, name: &str) -> MxResult {
        let lookup = self.lookup(name, RecordType::MX).await?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(MxRecord {
                    preference: mx.preference,
                    exchange: mx.exchange.to_ascii(),
                }),
                _ => None,
            })
            .collect())
    }

    /// The addresses of `host`, IPv6 and IPv4 interleaved as returned.
    pub(crate) async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsFailure> {
        let fqdn = format!("{host}.");
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(ips) => {
                if let Some(f) = chain_in_answer(ips.as_lookup(), host) {
                    return Err(f);
                }
                let v: Vec<IpAddr> = ips.iter().take(MAX_ADDRESSES).collect();
                if v.is_empty() {
                    Err(self.not_found(host, None).await)
                } else {
                    Ok(v)
                }
            }
            Err(e) => Err(self.classify(host, &e).await),
        }
    }

    /// A lookup whose answer holds records of `rtype`, or why not. An answer made only of
    /// CNAMEs (the resolver stopped following) is checked like a negative answer.
    async fn lookup(&self, name: &str, rtype: RecordType) -> Result<Lookup, DnsFailure> {
        let fqdn = format!("{name}.");
        match self.resolver.lookup(fqdn.as_str(), rtype).await {
            Ok(lookup) if lookup.answers().iter().any(|r| r.record_type() == rtype) => {
                match chain_in_answer(&lookup, name) {
                    Some(f) => Err(f),
                    None => Ok(lookup),
                }
            }
            Ok(_) => Err(self.not_found(name, None).await),
            Err(e) => Err(self.classify(name, &e).await),
        }
    }

    async fn classify(&self, name: &str, e: &NetError) -> DnsFailure {
        match e {
            NetError::Dns(DnsError::NoRecordsFound(no)) => self.not_found(name, Some(no)).await,
            _ => DnsFailure::Temporary {
                detail: e.to_string(),
            },
        }
    }

    /// "Nothing there", unless `name` is an alias whose chain loops or runs too long: then
    /// that, by name. An NXDOMAIN for the very name asked cannot hide an alias, so only a
    /// NODATA answer, or one about another name (the resolver followed a chain), costs
    /// the extra CNAME questions.
    async fn not_found(&self, name: &str, no: Option<&NoRecords>) -> DnsFailure {
        let asked = format!("{name}.");
        if let Some(no) = no
            && no.response_code == ResponseCode::NXDomain
            && no.query.name().to_ascii().eq_ignore_ascii_case(&asked)
        {
            return DnsFailure::NotFound;
        }
        self.walk_cnames(name).await
    }

    /// Follow `name`'s CNAME chain one explicit question at a time (each answer is only the
    /// alias, never chased by the resolver), at most [`MAX_CNAME_CHAIN`] hops.
    async fn walk_cnames(&self, name: &str) -> DnsFailure {
        let mut chain = Chain::new(name);
        loop {
            let fqdn = format!("{}.", chain.last());
            let target = match self.resolver.lookup(fqdn.as_str(), RecordType::CNAME).await {
                Ok(lookup) => lookup.answers().iter().find_map(|r| match &r.data {
                    RData::CNAME(c) if r.name.to_ascii().eq_ignore_ascii_case(&fqdn) => {
                        Some(c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase())
                    }
                    _ => None,
                }),
                Err(_) => None,
            };
            let Some(target) = target else {
                // The chain ends at a name without the records asked for: truly nothing.
                return DnsFailure::NotFound;
            };
            if let Err(f) = chain.follow(target) {
                return f;
            }
        }
    }
}

/// A TXT RRset as published: each record's character-strings joined, the TTL (the largest
/// in the set), and the authoritative server that gave it (`None`: the configured
/// resolver, whose TTL may have been counted down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtAnswer {
    /// Every TXT record, its strings joined.
    pub records: Vec<Vec<u8>>,
    /// The TTL, in seconds.
    pub ttl: u32,
    /// The authoritative server asked, if one was found.
    pub authoritative: Option<SocketAddr>,
}

impl TxtAnswer {
    fn from_lookup(lookup: &Lookup, authoritative: Option<SocketAddr>) -> TxtAnswer {
        let mut records = Vec::new();
        let mut ttl = 0;
        for r in lookup.answers() {
            if let RData::TXT(txt) = &r.data {
                records.push(
                    txt.txt_data
                        .iter()
                        .flat_map(|s| s.iter().copied())
                        .collect(),
                );
                ttl = ttl.max(r.ttl);
            }
        }
        TxtAnswer {
            records,
            ttl,
            authoritative,
        }
    }
}

/// The CNAME chain an answer carries from `name` (a server may put a whole chain into one
/// answer): a loop or more than [`MAX_CNAME_CHAIN`] aliases is an error, as when the chain
/// is followed question by question.
fn chain_in_answer(lookup: &Lookup, name: &str) -> Option<DnsFailure> {
    let norm = |n: &hickory_resolver::proto::rr::Name| {
        n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
    };
    let aliases: std::collections::HashMap<String, String> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some((norm(&r.name), norm(&c.0))),
            _ => None,
        })
        .collect();
    let mut chain = Chain::new(name);
    while let Some(next) = aliases.get(chain.last()) {
        if let Err(f) = chain.follow(next.clone()) {
            return Some(f);
        }
    }
    None
}

/// A CNAME chain being followed: the names from the one asked, each seen once.
struct Chain {
    names: Vec<String>,
    seen: HashSet<String>,
}

impl Chain {
    fn new(name: &str) -> Self {
        let first = name.to_ascii_lowercase();
        Chain {
            seen: HashSet::from([first.clone()]),
            names: vec![first],
        }
    }

    /// The name reached so far.
    fn last(&self) -> &str {
        self.names.last().map_or("", String::as_str)
    }

    /// One more alias: an error when it comes back to a name already in the chain, or when
    /// the chain now has more than [`MAX_CNAME_CHAIN`] aliases.
    fn follow(&mut self, target: String) -> Result<(), DnsFailure> {
        let repeated = !self.seen.insert(target.clone());
        self.names.push(target);
        if repeated {
            return Err(DnsFailure::CnameLoop {
                chain: std::mem::take(&mut self.names),
            });
        }
        if self.names.len() > MAX_CNAME_CHAIN + 1 {
            return Err(DnsFailure::CnameChainTooLong {
                chain: std::mem::take(&mut self.names),
                limit: MAX_CNAME_CHAIN,
            });
        }
        Ok(())
    }
}
