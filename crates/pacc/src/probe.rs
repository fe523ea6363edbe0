//! Probing every configured service over TLS (spec §2.5): connect, TLS (1.2+, certificate
//! verified for the configured host, no override), read what the server offers, leave
//! politely. No credential is ever sent.

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{HOST, LOCATION, USER_AGENT, WWW_AUTHENTICATE};
use hyper_util::rt::TokioIo;
use pacc_proto::document::{
    Authentication, Config, Endpoint, HttpsUrl, Service, ServiceKind, TlsMode,
};
use pacc_proto::fetch::FetchError;
use pacc_proto::name::Domain;
use pacc_proto::probe::{
    self, Capabilities, CertificateInfo, LineProbe, MAX_LINE, Next, Offered, ProbeError,
    ProbeStatus, ProtocolError, ServiceProbe, TlsDetails, usable,
};
use std::time::Duration;
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};

use tokio::time::{Instant, timeout_at};

use crate::USER_AGENT_VALUE;
use crate::https::{FetchContext, connect_tcp, upgrade};
use crate::tls::tls_info;

/// The name the submission probe sends with `EHLO` (RFC 5321 allows an address literal;
/// a fixed neutral name reveals nothing about the user or machine).
const EHLO_NAME: &str = "[127.0.0.1]";

/// A probe's connection kept for the sign-in: TLS verified for the configured host, what
/// the server offers read over it, not authenticated.
pub(crate) struct Parked {
    pub(crate) service: ServiceKind,
    since: Instant,
    conn: ParkedConn,
}

/// A TLS connection to a text service, with what it already sent buffered.
pub(crate) type TlsConn = BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// An HTTP/1.1 connection whose last response was read to its end.
pub(crate) struct HttpConn {
    pub(crate) sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    _driver: crate::https::AbortOnDrop,
}

pub(crate) enum ParkedConn {
    Text {
        conn: Box<TlsConn>,
        caps: Capabilities,
    },
    Http(HttpConn),
}

impl Parked {
    /// The connection, if it can still be used: not older than `idle_limit`, not closed
    /// by the server, and the server has said nothing since (an unsolicited `BYE` or a
    /// close means it ended the session).
    pub(crate) fn take_fresh(self, idle_limit: Duration) -> Option<ParkedConn> {
        if self.since.elapsed() > idle_limit {
            return None;
        }
        match self.conn {
            ParkedConn::Text { mut conn, caps } => {
                use futures_util::FutureExt as _;
                if !conn.buffer().is_empty() {
                    return None;
                }
                match conn.fill_buf().now_or_never() {
                    // Nothing to read: the session is waiting for us.
                    None => Some(ParkedConn::Text { conn, caps }),
                    Some(_) => None,
                }
            }
            ParkedConn::Http(h) => {
                (!h.sender.is_closed() && h.sender.is_ready()).then_some(ParkedConn::Http(h))
            }
        }
    }
}

/// Probe one service before `deadline`; with `keep`, return its connection, idle and
/// not authenticated, for the sign-in.
pub(crate) async fn probe_service(
    ctx: &FetchContext<'_>,
    service: &Service,
    auth: Option<&Authentication>,
    deadline: Instant,
    keep: bool,
) -> (ServiceProbe, Option<Parked>) {
    let started = Instant::now();
    let (target, result) = match &service.endpoint {
        Endpoint::Host { host, port, tls } => (
            format!("{host}:{port}"),
            timeout_at(
                deadline,
                probe_text(ctx, service.kind, host, *port, *tls, auth, deadline, keep),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ProbeError::Timeout {
                    stage: "overall".into(),
                })
            }),
        ),
        Endpoint::Url { url } => (
            url.to_string(),
            timeout_at(
                deadline,
                probe_http(ctx, service.kind, url, auth, deadline, keep),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ProbeError::Timeout {
                    stage: "overall".into(),
                })
            }),
        ),
    };
    let mut parked = None;
    let status = match result {
        Ok((tls, offered, usable, conn)) => {
            parked = conn.map(|conn| Parked {
                service: service.kind,
                since: Instant::now(),
                conn,
            });
            ProbeStatus::Reachable {
                tls,
                offered,
                usable,
            }
        }
        Err(e) => ProbeStatus::Unreachable {
            kind: e.kind(),
            error: e.to_string(),
        },
    };
    let probe = ServiceProbe {
        service: service.kind,
        target,
        status,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    match &probe.status {
        ProbeStatus::Reachable {
            tls,
            offered,
            usable,
        } => tracing::debug!(
            "probe {} {}: {} {}, offers {}, usable {:?} ({} ms)",
            probe.service,
            probe.target,
            tls.session.version,
            tls.session.cipher,
            match offered {
                Offered::Text(c) => c.mechanisms.join(" "),
                Offered::Http(h) => h
                    .challenges
                    .iter()
                    .map(|c| c.scheme.clone())
                    .collect::<Vec<_>>()
                    .join(" "),
            },
            usable,
            probe.elapsed_ms
        ),
        ProbeStatus::Unreachable { kind, error } => tracing::debug!(
            "probe {} {}: unreachable, {kind}: {error} ({} ms)",
            probe.service,
            probe.target,
            probe.elapsed_ms
        ),
    }
    (probe, parked)
}

type Probed = (TlsDetails, Offered, usable::Usable, Option<ParkedConn>);

fn details(session: &rustls::ClientConnection) -> TlsDetails {
    let certificate = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| CertificateInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: cert.validity().not_after.to_string(),
        });
    TlsDetails {
        session: tls_info(session),
        certificate,
    }
}

#[allow(clippy::too_many_arguments)]
async fn probe_text(
    ctx: &FetchContext<'_>,
    kind: ServiceKind,
    host: &Domain,
    port: u16,
    mode: TlsMode,
    auth: Option<&Authentication>,
    deadline: Instant,
    keep: bool,
) -> Result<Probed, ProbeError> {
    let Some(mut machine) = probe::line_probe(kind, EHLO_NAME) else {
        return Err(ProbeError::Protocol(ProtocolError(format!(
            "{kind} is not a text protocol"
        ))));
    };
    let (tls_details, conn) =
        run_dialogue(ctx, machine.as_mut(), host, port, mode, deadline, keep).await?;
    let caps = machine.outcome().map_err(ProbeError::Protocol)?;
    let usable = usable::text(kind, &caps, auth);
    let parked = conn.map(|conn| ParkedConn::Text {
        conn: Box::new(conn),
        caps: caps.clone(),
    });
    Ok((tls_details, Offered::Text(caps), usable, parked))
}

/// Connect to `host:port`, start TLS as `mode` says (certificate verified for `host`, TLS
/// 1.2+; for STARTTLS only after the machine asked, refusing data sent in clear after the
/// server's reply), and run `machine` until it closes. The machine's `outcome` then says
/// what happened; this returns the TLS session it ran over and, with `keep`, the
/// connection of a machine that ended idle ([`Next::Idle`]) instead of its goodbye.
pub(crate) async fn run_dialogue(
    ctx: &FetchContext<'_>,
    machine: &mut dyn LineProbe,
    host: &Domain,
    port: u16,
    mode: TlsMode,
    deadline: Instant,
    keep: bool,
) -> Result<(TlsDetails, Option<TlsConn>), ProbeError> {
    let tcp = connect_tcp(ctx, host, port, deadline)
        .await
        .map_err(ProbeError::Connection)?;
    let step = step_deadline(ctx, deadline);
    match mode {
        TlsMode::Implicit => {
            let tls = upgrade(ctx, tcp, host, false, &[], deadline)
                .await
                .map_err(ProbeError::Connection)?;
            let d = details(tls.get_ref().1);
            let mut reader = BufReader::new(tls);
            let first = machine.start();
            match drive(machine, &mut reader, first, host, &step, deadline, keep).await? {
                Ended::Closed => Ok((d, None)),
                Ended::Idle => Ok((d, Some(reader))),
                Ended::StartTls => Err(ProbeError::Protocol(ProtocolError::new(
                    "unexpected STARTTLS on implicit TLS",
                ))),
            }
        }
        TlsMode::StartTls => {
            // Q-8: the plain phase only reads the capability list and asks for STARTTLS.
            let mut plain = BufReader::new(tcp);
            let first = machine.start();
            // Nothing is kept from the plain phase.
            if let Ended::Closed | Ended::Idle =
                drive(machine, &mut plain, first, host, &step, deadline, false).await?
            {
                return Err(ProbeError::Protocol(
                    machine.outcome().err().unwrap_or_else(|| {
                        ProtocolError::new("the server ended the session before STARTTLS")
                    }),
                ));
            }
            let pending = plain.buffer().len();
            if pending > 0 {
                return Err(ProbeError::StartTlsInjection { bytes: pending });
            }
            let tls = upgrade(ctx, plain.into_inner(), host, false, &[], deadline)
                .await
                .map_err(ProbeError::Connection)?;
            let d = details(tls.get_ref().1);
            let mut reader = BufReader::new(tls);
            let next = machine.on_tls();
            match drive(machine, &mut reader, next, host, &step, deadline, keep).await? {
                Ended::Closed => Ok((d, None)),
                Ended::Idle => Ok((d, Some(reader))),
                Ended::StartTls => Err(ProbeError::Protocol(ProtocolError::new(
                    "STARTTLS asked twice",
                ))),
            }
        }
    }
}

/// Run `machine` (one that starts by itself, like [`pacc_proto::auth::login::Login::resume`])
/// on a connection a probe left idle, until it closes.
pub(crate) async fn continue_dialogue(
    ctx: &FetchContext<'_>,
    machine: &mut dyn LineProbe,
    conn: &mut TlsConn,
    host: &Domain,
    deadline: Instant,
) -> Result<(), ProbeError> {
    let step = step_deadline(ctx, deadline);
    let first = machine.start();
    match drive(machine, conn, first, host, &step, deadline, false).await? {
        Ended::Closed | Ended::Idle => Ok(()),
        Ended::StartTls => Err(ProbeError::Protocol(ProtocolError::new(
            "STARTTLS after TLS",
        ))),
    }
}

/// Each read or write must finish within this much time (P-8), and before the deadline.
fn step_deadline(ctx: &FetchContext<'_>, deadline: Instant) -> impl Fn() -> Instant {
    let step = ctx.timeouts.response;
    move || (Instant::now() + step).min(deadline)
}

enum Ended {
    Closed,
    StartTls,
    /// Idle and kept (nothing written).
    Idle,
}

/// Perform actions until the machine closes or asks for STARTTLS.
///
/// Lines already buffered are read without waiting, so the deadline is checked before each
/// one is handed to the machine and the task yields after each: a server that floods
/// lines cannot keep the probe busy past `deadline` (bounded work, whatever it sends).
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    machine: &mut dyn LineProbe,
    reader: &mut BufReader<S>,
    mut action: probe::Action,
    host: &Domain,
    step: &impl Fn() -> Instant,
    deadline: Instant,
    keep: bool,
) -> Result<Ended, ProbeError> {
    let timeout = |stage: &str| ProbeError::Timeout {
        stage: format!("{stage} from {host}"),
    };
    loop {
        if Instant::now() >= deadline {
            return Err(timeout("reading replies"));
        }
        if keep && action.next == Next::Idle {
            return Ok(Ended::Idle);
        }
        if !action.write.is_empty() {
            if tracing::enabled!(tracing::Level::TRACE) {
                for line in action
                    .write
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    let shown = if machine.sends_secrets() {
                        probe::redact(line)
                    } else {
                        pacc_proto::probe::show(line.strip_suffix(b"\r").unwrap_or(line))
                    };
                    tracing::trace!("{host} C: {shown}");
                }
            }
            match timeout_at(step(), reader.get_mut().write_all(&action.write)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(io_error(host, e)),
                Err(_) => return Err(timeout("writing")),
            }
            let _ = timeout_at(step(), reader.get_mut().flush()).await;
        }
        match action.next {
            Next::Close | Next::Idle => {
                let _ = timeout_at(step(), reader.get_mut().shutdown()).await;
                return Ok(Ended::Closed);
            }
            Next::StartTls => return Ok(Ended::StartTls),
            Next::ReadLine => {
                let mut line = Vec::new();
                let read = timeout_at(
                    step(),
                    (&mut *reader)
                        .take(MAX_LINE as u64 + 2)
                        .read_until(b'\n', &mut line),
                )
                .await;
                match read {
                    Err(_) => return Err(timeout("waiting for a line")),
                    Ok(Err(e)) => return Err(io_error(host, e)),
                    // The peer closed: let the machine say what was missing.
                    Ok(Ok(0)) => return Ok(Ended::Closed),
                    Ok(Ok(_)) => {}
                }
                if !line.ends_with(b"\n") {
                    return Err(ProbeError::Protocol(ProtocolError::new(format!(
                        "a line longer than {MAX_LINE} bytes"
                    ))));
                }
                line.pop();
                if line.ends_with(b"\r") {
                    line.pop();
                }
                tracing::trace!("{host} S: {}", pacc_proto::probe::show(&line));
                action = machine.on_line(&line);
                tokio::task::yield_now().await;
            }
        }
    }
}

fn io_error(host: &Domain, e: std::io::Error) -> ProbeError {
    ProbeError::Connection(FetchError::Protocol {
        host: host.to_string(),
        detail: e.to_string(),
    })
}

async fn probe_http(
    ctx: &FetchContext<'_>,
    kind: ServiceKind,
    url: &HttpsUrl,
    auth: Option<&Authentication>,
    deadline: Instant,
    keep: bool,
) -> Result<Probed, ProbeError> {
    let (status, headers, d, conn) = http_request(ctx, kind, url, None, deadline, keep).await?;
    let all = |name| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let www = all(WWW_AUTHENTICATE);
    let dav = all(hyper::header::HeaderName::from_static("dav"));
    let location = all(LOCATION).into_iter().next();
    let caps = probe::http::evaluate(
        url.host().as_str(),
        status,
        &www,
        (!dav.is_empty()).then(|| dav.join(", ")),
        location.as_deref(),
    )
    .map_err(ProbeError::Protocol)?;
    let usable = usable::http(&caps, auth);
    Ok((d, Offered::Http(caps), usable, conn.map(ParkedConn::Http)))
}

/// The body of a probe's answer is read to its end (at most this much) so that the
/// connection can carry the sign-in's request.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// One request to an HTTP service (P-6: JMAP `GET` of the session resource; DAV `PROPFIND`
/// depth 0 on the context path), optionally with an `Authorization` value. Returns status,
/// headers and the TLS session; with `keep`, the body is read (bounded) and the connection
/// returned for another request, otherwise the body is not read.
pub(crate) async fn http_request(
    ctx: &FetchContext<'_>,
    kind: ServiceKind,
    url: &HttpsUrl,
    authorization: Option<&pacc_proto::auth::Secret>,
    deadline: Instant,
    keep: bool,
) -> Result<(u16, hyper::HeaderMap, TlsDetails, Option<HttpConn>), ProbeError> {
    let host = url.host();
    let tcp = connect_tcp(ctx, host, 443, deadline)
        .await
        .map_err(ProbeError::Connection)?;
    let tls = upgrade(ctx, tcp, host, false, &[b"http/1.1"], deadline)
        .await
        .map_err(ProbeError::Connection)?;
    let d = details(tls.get_ref().1);
    let step = (Instant::now() + ctx.timeouts.response).min(deadline);
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.max_buf_size(64 * 1024).max_headers(200);
    let (sender, conn) = timeout_at(
        step,
        builder.handshake::<_, Empty<Bytes>>(TokioIo::new(tls)),
    )
    .await
    .map_err(|_| ProbeError::Timeout {
        stage: "HTTP handshake".into(),
    })?
    .map_err(|e| hyper_error(host, e))?;
    let mut conn = HttpConn {
        sender,
        _driver: crate::https::AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        })),
    };
    let (status, headers, complete) =
        send_http(ctx, &mut conn, kind, url, authorization, deadline, keep).await?;
    Ok((status, headers, d, (keep && complete).then_some(conn)))
}

/// Send one request on `conn` (by `deadline` and the response step limit). With
/// `read_body`, the body is read to its end (at most [`MAX_PROBE_BODY`]); the last value
/// says whether it was, so that the connection can carry another request.
pub(crate) async fn send_http(
    ctx: &FetchContext<'_>,
    conn: &mut HttpConn,
    kind: ServiceKind,
    url: &HttpsUrl,
    authorization: Option<&pacc_proto::auth::Secret>,
    deadline: Instant,
    read_body: bool,
) -> Result<(u16, hyper::HeaderMap, bool), ProbeError> {
    use http_body_util::BodyExt as _;
    let host = url.host();
    let step = (Instant::now() + ctx.timeouts.response).min(deadline);
    let method = if kind == ServiceKind::Jmap {
        "GET"
    } else {
        "PROPFIND"
    };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url.path())
        .header(HOST, host.as_str())
        .header(USER_AGENT, USER_AGENT_VALUE);
    if kind != ServiceKind::Jmap {
        request = request.header("Depth", "0").header("Content-Length", "0");
    }
    if let Some(a) = authorization {
        request = request.header(hyper::header::AUTHORIZATION, a.expose());
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Protocol(ProtocolError(e.to_string())))?;
    let response = timeout_at(step, conn.sender.send_request(request))
        .await
        .map_err(|_| ProbeError::Timeout {
            stage: format!("HTTP response from {host}"),
        })?
        .map_err(|e| hyper_error(host, e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut complete = false;
    if read_body {
        let body = http_body_util::Limited::new(response.into_body(), MAX_PROBE_BODY);
        complete = matches!(timeout_at(step, body.collect()).await, Ok(Ok(_)));
    }
    Ok((status, headers, complete))
}

fn hyper_error(host: &Domain, e: hyper::Error) -> ProbeError {
    ProbeError::Connection(FetchError::Protocol {
        host: host.to_string(),
        detail: e.to_string(),
    })
}

/// Probe every service of `config` concurrently under one deadline, reporting each result
/// as it arrives; with `keep`, also the connections left idle for the sign-in.
pub(crate) async fn probe_all(
    ctx: &FetchContext<'_>,
    config: &Config,
    deadline: Instant,
    on_result: &(dyn Fn(&ServiceProbe) + Sync),
    keep: bool,
) -> (Vec<ServiceProbe>, Vec<Parked>) {
    use futures_util::StreamExt as _;
    let auth = config.authentication.as_ref();
    let mut running: futures_util::stream::FuturesUnordered<_> = config
        .protocols
        .iter()
        .map(|s| probe_service(ctx, s, auth, deadline, keep))
        .collect();
    let mut out = Vec::new();
    let mut parked = Vec::new();
    while let Some((r, conn)) = running.next().await {
        on_result(&r);
        out.push(r);
        parked.extend(conn);
    }
    out.sort_by_key(|r| r.service);
    (out, parked)
}
