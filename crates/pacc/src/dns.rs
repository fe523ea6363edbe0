//! DNS through hickory-resolver: the system configuration, or one server the user names.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use pacc_proto::discovery::{DnsFailure, MxResult};
use pacc_proto::mx::MxRecord;

use crate::ClientError;

/// Most TXT RRs we look at for one owner; real owners have a handful.
const MAX_TXT_RRS: usize = 64;
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
}

impl Dns {
    pub(crate) fn new(config: &DnsConfig, attempt_timeout: Duration) -> Result<Self, ClientError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = attempt_timeout;
        opts.attempts = 2;
        opts.ndots = 0;
        opts.preserve_intermediates = true;
        let builder = match config {
            DnsConfig::System => TokioResolver::builder_tokio().map_err(|e| {
                ClientError::Resolver(format!("cannot read the system DNS configuration: {e}"))
            })?,
            DnsConfig::Server(addr) => {
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
        Ok(Dns { resolver })
    }

    /// Every TXT RR at `name`, each as its list of character-strings.
    pub(crate) async fn txt(&self, name: &str) -> Result<Vec<Vec<Vec<u8>>>, DnsFailure> {
        let fqdn = format!("{name}.");
        match self.resolver.lookup(fqdn.as_str(), RecordType::TXT).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(txt.txt_data.iter().map(|s| s.to_vec()).collect()),
                    _ => None,
                })
                .take(MAX_TXT_RRS)
                .collect()),
            Err(e) => Err(classify(&e)),
        }
    }

    /// The MX RRset of `name`.
    pub(crate) async fn mx(&self, name: &str) -> MxResult {
        let fqdn = format!("{name}.");
        match self.resolver.lookup(fqdn.as_str(), RecordType::MX).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some(MxRecord {
                        preference: mx.preference,
                        exchange: mx.exchange.to_ascii(),
                    }),
                    _ => None,
                })
                .take(MAX_TXT_RRS)
                .collect()),
            Err(e) => Err(classify(&e)),
        }
    }

    /// The addresses of `host`, IPv6 and IPv4 interleaved as returned.
    pub(crate) async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsFailure> {
        let fqdn = format!("{host}.");
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(ips) => {
                let v: Vec<IpAddr> = ips.iter().take(MAX_ADDRESSES).collect();
                if v.is_empty() {
                    Err(DnsFailure::NotFound)
                } else {
                    Ok(v)
                }
            }
            Err(e) => Err(classify(&e)),
        }
    }
}

fn classify(e: &NetError) -> DnsFailure {
    if e.is_no_records_found() || e.is_nx_domain() {
        DnsFailure::NotFound
    } else {
        DnsFailure::Temporary {
            detail: e.to_string(),
        }
    }
}
