//! Bring your own network: drive pacc's sans-IO core with your app's own DNS, TLS and
//! HTTP, the way a mobile app must (the platform's proxy and VPN settings, its trust store).
//!
//! Nothing here uses pacc's network shell: DNS questions are built and read with
//! hickory-proto over a plain UDP socket, TLS is rustls with a root store the app fills
//! itself, HTTP/1.1 is written by hand. pacc_proto only decides: what to ask
//! ([`Discovery::poll_request`]), what the answers mean ([`Discovery::handle`]) and when it is
//! done ([`Discovery::step`]); then the probe machines ([`line_probe`]) say what to write
//! and read on each mail server's connection.
//!
//! What your stack must guarantee for a [`Request::Fetch`] (the machine trusts you): TLS 1.3
//! when `tls13_only` (else ≥ 1.2), the certificate verified for `host` with no override, no
//! redirect followed (answer a 3xx with `FetchError::Redirect`), no cookies or credentials,
//! the body capped at `fetch::MAX_BODY`, a deadline on every step.
//!
//! ```text
//! own_network ADDRESS --dns IP:PORT --ca-file PEM
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use pacc::pacc_proto;
use pacc_proto::discovery::Discovery;
use pacc_proto::discovery::{DnsFailure, Request, Response, Step};
use pacc_proto::document::{Endpoint, TlsMode};
use pacc_proto::fetch::{FetchError, FetchedBody, MAX_BODY, TlsInfo};
use pacc_proto::mx::MxRecord;
use pacc_proto::name::{Domain, EmailAddress};
use pacc_proto::probe::{LineProbe, MAX_LINE, Next, line_probe};

const STEP: Duration = Duration::from_secs(5);

/// The app's own DNS: one UDP question to one server.
struct Dns(SocketAddr);

impl Dns {
    fn ask(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, DnsFailure> {
        let temporary = |detail: String| DnsFailure::Temporary { detail };
        let name = Name::from_ascii(format!("{name}.")).map_err(|e| temporary(e.to_string()))?;
        let mut q = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(name, rtype));
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| temporary(e.to_string()))?;
        socket.set_read_timeout(Some(STEP)).ok();
        let bytes = q.to_vec().map_err(|e| temporary(e.to_string()))?;
        socket
            .send_to(&bytes, self.0)
            .map_err(|e| temporary(e.to_string()))?;
        let mut buf = [0u8; 4096];
        let n = socket
            .recv(&mut buf)
            .map_err(|e| temporary(e.to_string()))?;
        let answer = Message::from_vec(&buf[..n]).map_err(|e| temporary(e.to_string()))?;
        if answer.metadata.id != q.metadata.id {
            return Err(temporary("an answer to another question".into()));
        }
        match answer.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Err(DnsFailure::NotFound),
            other => return Err(temporary(format!("{other}"))),
        }
        let data: Vec<RData> = answer
            .answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .map(|r| r.data.clone())
            .collect();
        if data.is_empty() {
            return Err(DnsFailure::NotFound);
        }
        Ok(data)
    }

    fn txt(&self, name: &str) -> Result<Vec<Vec<Vec<u8>>>, DnsFailure> {
        Ok(self
            .ask(name, RecordType::TXT)?
            .into_iter()
            .filter_map(|d| match d {
                RData::TXT(t) => Some(t.txt_data.iter().map(|s| s.to_vec()).collect()),
                _ => None,
            })
            .collect())
    }

    fn mx(&self, name: &str) -> Result<Vec<MxRecord>, DnsFailure> {
        Ok(self
            .ask(name, RecordType::MX)?
            .into_iter()
            .filter_map(|d| match d {
                RData::MX(m) => Some(MxRecord {
                    preference: m.preference,
                    exchange: m.exchange.to_ascii().trim_end_matches('.').to_owned(),
                }),
                _ => None,
            })
            .collect())
    }

    fn address(&self, host: &str) -> Option<std::net::IpAddr> {
        self.ask(host, RecordType::A)
            .ok()?
            .into_iter()
            .find_map(|d| match d {
                RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
                _ => None,
            })
    }
}

fn rand_id() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id()) as u16
}

/// The app's own TLS: its root store, its version policy.
fn tls_config(roots: &rustls::RootCertStore, tls13_only: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("ring supports these versions")
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(dns: &Dns, host: &Domain, port: u16) -> Result<TcpStream, FetchError> {
    let h = host.to_string();
    let ip = dns
        .address(host.as_str())
        .ok_or_else(|| FetchError::NoSuchHost { host: h.clone() })?;
    let tcp = TcpStream::connect_timeout(&SocketAddr::new(ip, port), STEP).map_err(|e| {
        FetchError::Connect {
            host: h.clone(),
            detail: e.to_string(),
        }
    })?;
    tcp.set_read_timeout(Some(STEP)).ok();
    tcp.set_write_timeout(Some(STEP)).ok();
    Ok(tcp)
}

fn handshake(
    tcp: TcpStream,
    host: &Domain,
    config: Arc<rustls::ClientConfig>,
) -> Result<Tls, FetchError> {
    let h = host.to_string();
    let name = rustls::pki_types::ServerName::try_from(h.clone()).map_err(|e| FetchError::Tls {
        host: h.clone(),
        detail: e.to_string(),
    })?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| FetchError::Tls {
        host: h.clone(),
        detail: e.to_string(),
    })?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| FetchError::CertificateUntrusted {
                host: h.clone(),
                detail: e.to_string(),
            })?;
    }
    Ok(tls)
}

/// The app's own HTTP: one GET, `Connection: close`, never a redirect.
fn fetch(
    dns: &Dns,
    roots: &rustls::RootCertStore,
    url: &str,
    host: &Domain,
    tls13_only: bool,
) -> Result<FetchedBody, FetchError> {
    let tcp = connect(dns, host, 443)?;
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut tls = handshake(tcp, host, tls_config(roots, tls13_only))?;
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: own-network-example\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let io = |e: std::io::Error| FetchError::Tls {
        host: host.to_string(),
        detail: e.to_string(),
    };
    tls.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    (&mut tls)
        .take(MAX_BODY as u64 + 16 * 1024)
        .read_to_end(&mut raw)
        .or_else(|e| {
            // A peer that closes without close_notify after a complete response.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .map_err(io)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| FetchError::Tls {
            host: host.to_string(),
            detail: "no HTTP header".into(),
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    if (300..400).contains(&status) {
        return Err(FetchError::Redirect {
            url: url.to_owned(),
            status,
            location: header("location"),
        });
    }
    if status != 200 {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
        });
    }
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    }
    if body.len() > MAX_BODY {
        return Err(FetchError::BodyTooLarge {
            url: url.to_owned(),
            limit: MAX_BODY,
            declared: None,
        });
    }
    let (version, cipher) = (
        tls.conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default()
            .replace("TLSv1_3", "TLSv1.3")
            .replace("TLSv1_2", "TLSv1.2"),
        tls.conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default(),
    );
    Ok(FetchedBody {
        bytes: body,
        content_type: header("content-type"),
        content_encoding: header("content-encoding"),
        tls: TlsInfo {
            version,
            cipher,
            certificate_expires: None,
        },
        peer,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..i])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        data = &data[i + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// A connection that may start in clear and move to TLS (STARTTLS).
enum Conn {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<Tls>>),
}

impl Conn {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(r) => r.get_mut().write_all(bytes),
            Conn::Tls(r) => r.get_mut().write_all(bytes),
        }
    }

    fn line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        match self {
            Conn::Plain(r) => r.take(MAX_LINE as u64 + 2).read_until(b'\n', &mut line)?,
            Conn::Tls(r) => r.take(MAX_LINE as u64 + 2).read_until(b'\n', &mut line)?,
        };
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Ok(line)
    }
}

/// Run a probe machine over the app's own connection.
fn probe(
    dns: &Dns,
    roots: &rustls::RootCertStore,
    machine: &mut dyn LineProbe,
    host: &Domain,
    port: u16,
    mode: TlsMode,
) -> Result<(), String> {
    let tcp = connect(dns, host, port).map_err(|e| e.to_string())?;
    let config = tls_config(roots, false);
    let mut conn = match mode {
        TlsMode::Implicit => Conn::Tls(Box::new(BufReader::new(
            handshake(tcp, host, config.clone()).map_err(|e| e.to_string())?,
        ))),
        TlsMode::StartTls => Conn::Plain(BufReader::new(tcp)),
    };
    let mut action = machine.start();
    for _ in 0..512 {
        conn.write(&action.write).map_err(|e| e.to_string())?;
        action = match action.next {
            Next::Close | Next::Idle => return Ok(()),
            Next::StartTls => {
                let Conn::Plain(reader) = conn else {
                    return Err("STARTTLS twice".into());
                };
                // Bytes the server sent before the TLS handshake are an injection attempt.
                if !reader.buffer().is_empty() {
                    return Err("data after the STARTTLS reply".into());
                }
                let tls = handshake(reader.into_inner(), host, config.clone())
                    .map_err(|e| e.to_string())?;
                conn = Conn::Tls(Box::new(BufReader::new(tls)));
                machine.on_tls()
            }
            Next::ReadLine => {
                let line = conn.line().map_err(|e| e.to_string())?;
                machine.on_line(&line)
            }
        };
    }
    Err("the dialogue did not end".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let address = EmailAddress::parse(
        args.get(1)
            .ok_or("usage: own_network ADDRESS --dns IP:PORT --ca-file PEM")?,
    )?;
    let dns = Dns(flag("--dns").ok_or("--dns IP:PORT is required")?.parse()?);
    // The app's trust store: here one PEM file; on a phone, the platform's.
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = flag("--ca-file") {
        use rustls::pki_types::pem::PemObject as _;
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(pem)? {
            roots.add(cert?)?;
        }
    }

    // 1. Discovery: answer every request the machine makes, in any order.
    let started = Instant::now();
    let mut machine = Discovery::new(address.domain().clone());
    let report = loop {
        let mut asked = Vec::new();
        while let Some(r) = machine.poll_request() {
            asked.push(r);
        }
        for (id, request) in asked {
            let t = Instant::now();
            let response = match &request {
                Request::Txt { name } => Response::Txt(dns.txt(name)),
                Request::Mx { name } => Response::Mx(dns.mx(name)),
                Request::Fetch {
                    url,
                    host,
                    tls13_only,
                } => Response::Fetch(fetch(&dns, &roots, url, host, *tls13_only)),
                _ => continue,
            };
            machine.handle(id, response, t.elapsed());
        }
        if let Step::Done(report) = machine.step() {
            break report;
        }
        if started.elapsed() > Duration::from_secs(15) {
            break Box::new(machine.expire().ok_or("no report at the deadline")?);
        }
    };
    let verified = match &report.outcome {
        Ok(v) => v,
        Err(e) => {
            println!("not verified: {} ({:?}): {e}", e.kind(), e.class());
            std::process::exit(1);
        }
    };
    println!("verified {} ({})", verified.url, verified.record);

    // 2. Probes: each text service's machine over the app's own TLS.
    for service in verified.document.config.protocols.iter() {
        let Endpoint::Host { host, port, tls } = &service.endpoint else {
            continue;
        };
        let Some(mut machine) = line_probe(service.kind, "[127.0.0.1]") else {
            continue;
        };
        match probe(&dns, &roots, machine.as_mut(), host, *port, *tls)
            .and_then(|()| machine.outcome().map_err(|e| e.to_string()))
        {
            Ok(caps) => println!(
                "probe {} {host}:{port} offers {}",
                service.kind,
                caps.mechanisms.join(" ")
            ),
            Err(e) => println!("probe {} {host}:{port} failed: {e}", service.kind),
        }
    }
    Ok(())
}
