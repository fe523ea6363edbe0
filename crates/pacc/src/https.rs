//! The strict HTTPS GET used for PACC documents (RET-3 … RET-10, Q-9).
//!
//! One request per connection, HTTP/1.1 over rustls, certificate verified for the host,
//! TLS 1.3 only when asked, no redirects followed, no cookies, no `Authorization`, no
//! query string, body capped without reading past the cap, every stage under a deadline.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http_body_util::{BodyExt as _, Empty};
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION,
    USER_AGENT,
};
use hyper_util::rt::TokioIo;
use pacc_proto::discovery::DnsFailure;
use pacc_proto::fetch::{FetchError, FetchResult, FetchedBody, MAX_BODY};
use pacc_proto::name::Domain;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::dns::Dns;
use crate::tls::{TlsFailure, TrustAnchors, classify_handshake_error, tls_info};
use crate::{Timeouts, USER_AGENT_VALUE};

/// Delay before racing the next address of a host (RFC 8305 "Connection Attempt Delay").
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// What one fetch needs from the client.
pub(crate) struct FetchContext<'a> {
    pub(crate) dns: &'a Dns,
    pub(crate) anchors: &'a TrustAnchors,
    pub(crate) timeouts: &'a Timeouts,
}

/// Earlier of `now + step` and the overall `deadline`.
fn stage_deadline(step: Duration, deadline: Instant) -> Instant {
    (Instant::now() + step).min(deadline)
}

/// GET `url` (which must be `https://<host>/…`).
pub(crate) async fn get(
    ctx: &FetchContext<'_>,
    url: &str,
    host: &Domain,
    tls13_only: bool,
    deadline: Instant,
) -> FetchResult {
    let h = host.as_str().to_owned();
    let path = url
        .strip_prefix("https://")
        .and_then(|r| r.strip_prefix(h.as_str()))
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| FetchError::Protocol {
            host: h.clone(),
            detail: format!("internal: {url} is not an https URL on {h}"),
        })?;

    let tcp = connect_tcp(ctx, host, 443, deadline).await?;
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    let tls = upgrade(ctx, tcp, host, tls13_only, &[b"http/1.1"], deadline).await?;
    let tls_info = tls_info(tls.get_ref().1);

    // HTTP/1.1: one request. RET-4: no cookies, no Authorization, no address anywhere.
    let response_deadline = stage_deadline(ctx.timeouts.response, deadline);
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.max_buf_size(64 * 1024).max_headers(100);
    let (mut sender, conn) = http_step(
        &h,
        "response",
        response_deadline,
        builder.handshake(TokioIo::new(tls)),
    )
    .await?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let request = hyper::Request::get(path)
        .header(HOST, h.as_str())
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(ACCEPT, "application/json")
        .header(ACCEPT_ENCODING, "identity")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Protocol {
            host: h.clone(),
            detail: e.to_string(),
        })?;
    let response = http_step(
        &h,
        "response",
        response_deadline,
        sender.send_request(request),
    )
    .await?;

    let status = response.status().as_u16();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if (300..400).contains(&status) {
        // RET-6: never followed.
        return Err(FetchError::Redirect {
            url: url.to_owned(),
            status,
            location: header(LOCATION),
        });
    }
    if status != 200 {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let content_type = header(CONTENT_TYPE);
    let content_encoding = header(CONTENT_ENCODING);
    let declared = header(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(FetchError::BodyTooLarge {
            url: url.to_owned(),
            limit: MAX_BODY,
            declared,
        });
    }

    // Body: read frames until the end or the cap (RET-9), never past it.
    let body_deadline = stage_deadline(ctx.timeouts.response, deadline);
    let raw = read_capped(response.into_body(), body_deadline, &h, url, declared).await?;
    drop(driver);

    // RET-8 / Q-22: hash the bytes after content-decoding.
    let bytes = decode(url, content_encoding.as_deref(), raw)?;
    Ok(FetchedBody {
        bytes,
        content_type,
        content_encoding,
        tls: tls_info,
        peer,
    })
}

/// Read a response body until its end or the cap (RET-9), never past it, before `deadline`.
async fn read_capped(
    mut body: hyper::body::Incoming,
    deadline: Instant,
    host: &str,
    url: &str,
    declared: Option<u64>,
) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::with_capacity(declared.map_or(4096, |n| n.min(MAX_BODY as u64) as usize));
    loop {
        match timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(FetchError::Timeout {
                    host: host.to_owned(),
                    stage: "body".to_owned(),
                });
            }
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => {
                return Err(FetchError::Protocol {
                    host: host.to_owned(),
                    detail: e.to_string(),
                });
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > MAX_BODY {
                        return Err(FetchError::BodyTooLarge {
                            url: url.to_owned(),
                            limit: MAX_BODY,
                            declared,
                        });
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// One HTTP exchange step under `deadline`: a hyper error is a protocol failure, the
/// deadline a timeout at `stage`.
async fn http_step<T>(
    host: &str,
    stage: &str,
    deadline: Instant,
    step: impl Future<Output = hyper::Result<T>>,
) -> Result<T, FetchError> {
    match timeout_at(deadline, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FetchError::Protocol {
            host: host.to_owned(),
            detail: e.to_string(),
        }),
        Err(_) => Err(FetchError::Timeout {
            host: host.to_owned(),
            stage: stage.to_owned(),
        }),
    }
}

fn decode(url: &str, encoding: Option<&str>, raw: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    match enc.as_deref() {
        None | Some("") | Some("identity") => Ok(raw),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            let mut dec = flate2::read::GzDecoder::new(&raw[..]).take(MAX_BODY as u64 + 1);
            dec.read_to_end(&mut out)
                .map_err(|e| FetchError::ContentEncoding {
                    url: url.to_owned(),
                    detail: format!("corrupt gzip data: {e}"),
                })?;
            if out.len() > MAX_BODY {
                return Err(FetchError::BodyTooLarge {
                    url: url.to_owned(),
                    limit: MAX_BODY,
                    declared: None,
                });
            }
            Ok(out)
        }
        Some(other) => Err(FetchError::ContentEncoding {
            url: url.to_owned(),
            detail: format!("'{other}' is not supported (only gzip), and it was not asked for"),
        }),
    }
}

/// Resolve `host` and connect to `port`, racing its addresses (RFC 8305 style).
pub(crate) async fn connect_tcp(
    ctx: &FetchContext<'_>,
    host: &Domain,
    port: u16,
    deadline: Instant,
) -> Result<TcpStream, FetchError> {
    let h = host.to_string();
    let addrs = match timeout_at(
        stage_deadline(ctx.timeouts.dns, deadline),
        ctx.dns.addresses(&h),
    )
    .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(DnsFailure::NotFound)) => return Err(FetchError::NoSuchHost { host: h }),
        Ok(Err(DnsFailure::Temporary { detail })) => {
            return Err(FetchError::DnsTemporary { host: h, detail });
        }
        Ok(Err(DnsFailure::CnameLoop { chain })) => {
            return Err(FetchError::CnameLoop { host: h, chain });
        }
        Ok(Err(DnsFailure::CnameChainTooLong { chain, limit })) => {
            return Err(FetchError::CnameChainTooLong {
                host: h,
                chain,
                limit,
            });
        }
        Err(_) => {
            return Err(FetchError::DnsTemporary {
                host: h,
                detail: "no answer in time".to_owned(),
            });
        }
    };
    match timeout_at(
        stage_deadline(ctx.timeouts.connect, deadline),
        connect_any(&addrs, port),
    )
    .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(detail)) => Err(FetchError::Connect { host: h, detail }),
        Err(_) => Err(FetchError::ConnectTimeout { host: h }),
    }
}

/// Start TLS on `io` with the certificate verified for `host` (TLS 1.3 only when
/// `tls13_only`, else 1.2+). Failures are classified (version, trust, name, expiry).
pub(crate) async fn upgrade<IO>(
    ctx: &FetchContext<'_>,
    io: IO,
    host: &Domain,
    tls13_only: bool,
    alpn: &[&[u8]],
    deadline: Instant,
) -> Result<TlsStream<IO>, FetchError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let h = host.to_string();
    let Some(config) = ctx.anchors.client_config(tls13_only, alpn).await else {
        return Err(FetchError::CertificateUntrusted {
            host: h,
            detail: "no trust anchors: the system has no CA certificates (install ca-certificates) and none were added".into(),
        });
    };
    let server_name = ServerName::try_from(h.clone()).map_err(|e| FetchError::Tls {
        host: h.clone(),
        detail: e.to_string(),
    })?;
    match timeout_at(
        stage_deadline(ctx.timeouts.tls, deadline),
        TlsConnector::from(config).connect(server_name, io),
    )
    .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let required = if tls13_only {
                "TLS 1.3"
            } else {
                "TLS 1.2 or later"
            }
            .to_owned();
            Err(match classify_handshake_error(&e) {
                TlsFailure::Version(detail) => FetchError::TlsVersion {
                    host: h,
                    required,
                    detail,
                },
                TlsFailure::Untrusted(detail) => {
                    FetchError::CertificateUntrusted { host: h, detail }
                }
                TlsFailure::Name(detail) => FetchError::CertificateName { host: h, detail },
                TlsFailure::Expired(detail) => FetchError::CertificateExpired { host: h, detail },
                TlsFailure::Other(detail) => FetchError::Tls { host: h, detail },
            })
        }
        Err(_) => Err(FetchError::Timeout {
            host: h,
            stage: "tls-handshake".to_owned(),
        }),
    }
}

/// Connect to the first address that answers, starting the next attempt every
/// [`ATTEMPT_DELAY`] while earlier ones are still pending (RFC 8305 style). TCP_NODELAY is set
/// so small writes are never held back a round trip.
pub(crate) async fn connect_any(addrs: &[IpAddr], port: u16) -> Result<TcpStream, String> {
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    let mut last_error = String::from("no address to connect to");
    loop {
        if next < addrs.len() {
            let addr = SocketAddr::new(addrs[next], port);
            next += 1;
            pending.push(async move { (addr, TcpStream::connect(addr).await) });
        }
        if pending.is_empty() {
            return Err(last_error);
        }
        let more = next < addrs.len();
        tokio::select! {
            Some((addr, result)) = pending.next() => match result {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => {
                    last_error = format!("{addr}: {e}");
                    if !more && pending.is_empty() {
                        return Err(last_error);
                    }
                }
            },
            () = sleep(ATTEMPT_DELAY), if more => {}
        }
    }
}

/// Aborts a spawned task when dropped, so nothing outlives its fetch.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A general HTTPS exchange for OAuth endpoints: `method` on `url` (TLS 1.2+, certificate
/// verified, redirects returned as statuses, never followed), an optional body, the response
/// status and body (capped at [`MAX_BODY`]) for any status.
pub(crate) async fn exchange(
    ctx: &FetchContext<'_>,
    method: &str,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    deadline: Instant,
) -> Result<(u16, Vec<u8>), FetchError> {
    let host = pacc_proto::name::url_host(url).ok_or_else(|| FetchError::Protocol {
        host: url.to_owned(),
        detail: "not an https URL".to_owned(),
    })?;
    let rest = &url["https://".len()..];
    let port: u16 = rest
        .split(['/', '?'])
        .next()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(443);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    let h = host.to_string();
    let tcp = connect_tcp(ctx, &host, port, deadline).await?;
    let tls = upgrade(ctx, tcp, &host, false, &[b"http/1.1"], deadline).await?;
    let step = stage_deadline(ctx.timeouts.response, deadline);
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.max_buf_size(64 * 1024).max_headers(100);
    let (mut sender, conn) =
        http_step(&h, "response", step, builder.handshake(TokioIo::new(tls))).await?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, h.as_str())
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(ACCEPT, "application/json");
    let payload = match body {
        Some((content_type, bytes)) => {
            req = req.header(hyper::header::CONTENT_TYPE, content_type);
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
    let req = req
        .body(http_body_util::Full::new(payload))
        .map_err(|e| FetchError::Protocol {
            host: h.clone(),
            detail: e.to_string(),
        })?;
    let response = http_step(&h, "response", step, sender.send_request(req)).await?;
    let status = response.status().as_u16();
    // O-2 (oauth-public -06): OAuth exchanges never follow a redirect.
    if (300..400).contains(&status) {
        return Err(FetchError::Redirect {
            url: url.to_owned(),
            status,
            location: response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    }
    let out = read_capped(response.into_body(), step, &h, url, None).await?;
    Ok((status, out))
}
