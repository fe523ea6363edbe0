//! HTTPS servers on 127.x.y.z:443 with controllable behaviour, recording what they receive.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use crate::pki::{CertKind, TestCa, TlsVersions, server_config};
use crate::{AbortOnDrop, TestbedError, addr};

/// What the server answers to every request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A response with this status, body and extra headers (`Content-Type:
    /// application/json` unless given).
    Body {
        /// Status code.
        status: u16,
        /// Exact body bytes.
        body: Bytes,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// 200 with the body gzip-compressed and `Content-Encoding: gzip`.
    Gzip(Bytes),
    /// A redirect.
    Redirect {
        /// 301, 302, 307, 308…
        status: u16,
        /// `Location`.
        location: String,
    },
    /// 200 with an endless stream of JSON-ish bytes (stops at `total`), optionally declaring
    /// its length. Counts what was actually sent in [`Stats::body_bytes_sent`].
    Huge {
        /// Bytes to send at most.
        total: u64,
        /// Send `Content-Length: total`.
        declare_length: bool,
    },
    /// Complete TLS, read the request, never answer.
    NeverAnswer,
    /// `401` with this `WWW-Authenticate` challenge without an `Authorization` header, and
    /// `ok_status` (empty body) with one: a resource server that accepts any credential.
    AuthGate {
        /// The challenge, e.g. `Basic realm="x"`.
        challenge: String,
        /// The status for authenticated requests (200, 207).
        ok_status: u16,
    },
    /// A tiny OAuth authorization server for demonstrations (not a test of anything): RFC
    /// 8414 metadata for `issuer`, RFC 7591 registration of any public client, an
    /// authorization endpoint that at once redirects to the client's loopback `redirect_uri`
    /// with a code, the `state` and `iss` (the "user" always consents), and a token endpoint
    /// that issues a Bearer token for any code or refresh token.
    DemoAuthorizationServer {
        /// The issuer identifier, e.g. `https://auth.example.test`.
        issuer: String,
    },
}

impl Reply {
    /// 200 `application/json` with these exact bytes.
    pub fn json(body: impl Into<Bytes>) -> Self {
        Reply::Body {
            status: 200,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// An empty response with this status.
    pub fn status(status: u16) -> Self {
        Reply::Body {
            status,
            body: Bytes::new(),
            headers: Vec::new(),
        }
    }
}

/// How a server behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Offered TLS versions.
    pub tls: TlsVersions,
    /// Presented certificate.
    pub cert: CertKind,
    /// Accept TCP connections but never start TLS.
    pub stall_handshake: bool,
    /// Wait this long before answering.
    pub delay: Duration,
    /// The answer.
    pub reply: Reply,
}

impl Behaviour {
    /// A well-behaved TLS 1.3 server answering `reply`.
    pub fn new(reply: Reply) -> Self {
        Behaviour {
            tls: TlsVersions::Tls13,
            cert: CertKind::Valid,
            stall_handshake: false,
            delay: Duration::ZERO,
            reply,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// Every header, name lower-cased.
    pub headers: Vec<(String, String)>,
}

/// What a server saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// Body bytes written (for [`Reply::Huge`]).
    pub body_bytes_sent: AtomicU64,
    /// Requests received.
    pub requests: Mutex<Vec<RecordedRequest>>,
}

/// A running HTTPS server.
pub struct HttpsServer {
    addr: SocketAddr,
    stats: Arc<Stats>,
    _task: AbortOnDrop,
}

impl HttpsServer {
    /// Start on a fresh loopback address, port 443, with a certificate for `names`.
    pub async fn start(
        ca: &TestCa,
        names: &[String],
        behaviour: Behaviour,
    ) -> Result<Self, TestbedError> {
        let leaf = ca.issue(names, behaviour.cert)?;
        let config = server_config(&leaf, behaviour.tls, &[b"http/1.1"])?;
        let listener = addr::bind_tcp(443).await.map_err(TestbedError::Bind)?;
        let addr = listener.local_addr().map_err(TestbedError::Bind)?;
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let behaviour = Arc::new(behaviour);
        let task = tokio::spawn(async move {
            let acceptor = TlsAcceptor::from(config);
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                st.connections.fetch_add(1, Ordering::Relaxed);
                let (acceptor, st, b) = (acceptor.clone(), st.clone(), behaviour.clone());
                conns.spawn(async move {
                    if b.stall_handshake {
                        let _hold = tcp;
                        return std::future::pending::<()>().await;
                    }
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| answer(req, b.clone(), st.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
                // Reap finished connections so the set does not grow without bound.
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(HttpsServer {
            addr,
            stats,
            _task: AbortOnDrop(task),
        })
    }

    /// Its address (port 443).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it saw.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A copy of the requests received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.stats
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(
    req: Request<Incoming>,
    b: Arc<Behaviour>,
    st: Arc<Stats>,
) -> Result<Response<Body>, Infallible> {
    let authorized = req.headers().contains_key("authorization");
    let method = req.method().clone();
    let uri = req.uri().clone();
    let recorded = RecordedRequest {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    if let Ok(mut r) = st.requests.lock() {
        r.push(recorded);
    }
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    let full = |b: Bytes| Full::new(b).boxed();
    let resp = match &b.reply {
        Reply::Body {
            status,
            body,
            headers,
        } => {
            let mut r = Response::builder().status(*status);
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                r = r.header("content-type", "application/json");
            }
            for (k, v) in headers {
                r = r.header(k.as_str(), v.as_str());
            }
            r.body(full(body.clone()))
        }
        Reply::Gzip(body) => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = enc.write_all(body);
            let gz = enc.finish().unwrap_or_default();
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(full(Bytes::from(gz)))
        }
        Reply::Redirect { status, location } => Response::builder()
            .status(*status)
            .header("location", location.as_str())
            .body(full(Bytes::new())),
        Reply::Huge {
            total,
            declare_length,
        } => {
            const CHUNK: usize = 16 * 1024;
            let total = *total;
            let counter = st.clone();
            let stream = futures_util::stream::unfold(0u64, move |sent| {
                let counter = counter.clone();
                async move {
                    if sent >= total {
                        return None;
                    }
                    let n = CHUNK.min(usize::try_from(total - sent).unwrap_or(CHUNK));
                    counter
                        .body_bytes_sent
                        .fetch_add(n as u64, Ordering::Relaxed);
                    Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; n]))),
                        sent + n as u64,
                    ))
                }
            });
            let mut r = Response::builder()
                .status(200)
                .header("content-type", "application/json");
            if *declare_length {
                r = r.header("content-length", total.to_string());
            }
            r.body(StreamBody::new(stream).boxed())
        }
        Reply::NeverAnswer => {
            std::future::pending::<()>().await;
            unreachable!("pending never completes")
        }
        Reply::DemoAuthorizationServer { issuer } => {
            let json = |status: u16, v: String| {
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .header("cache-control", "no-store")
                    .body(full(Bytes::from(v)))
            };
            match (method.as_str(), uri.path()) {
                ("GET", "/.well-known/oauth-authorization-server") => json(
                    200,
                    format!(
                        r#"{{"issuer":"{issuer}","authorization_endpoint":"{issuer}/authorize","token_endpoint":"{issuer}/token","registration_endpoint":"{issuer}/register","scopes_supported":["urn:ietf:params:oauth:scope:mail","urn:ietf:params:oauth:scope:calendars","urn:ietf:params:oauth:scope:contacts","offline_access"],"response_types_supported":["code"],"grant_types_supported":["authorization_code","refresh_token"],"token_endpoint_auth_methods_supported":["none"],"code_challenge_methods_supported":["S256"],"authorization_response_iss_parameter_supported":true}}"#
                    ),
                ),
                ("POST", "/register") => json(
                    201,
                    r#"{"client_id":"demo-client","token_endpoint_auth_method":"none"}"#.to_owned(),
                ),
                ("GET", "/authorize") => {
                    let q = uri.query().unwrap_or("");
                    let param = |name: &str| {
                        q.split('&')
                            .filter_map(|kv| kv.split_once('='))
                            .find(|(k, _)| *k == name)
                            .map(|(_, v)| percent_decode(v))
                    };
                    match (param("redirect_uri"), param("state")) {
                        (Some(redirect), Some(state))
                            if redirect.starts_with("http://127.0.0.1:") =>
                        {
                            let location = format!(
                                "{redirect}?code=demo-code&state={}&iss={}",
                                percent_encode(&state),
                                percent_encode(issuer)
                            );
                            Response::builder()
                                .status(302)
                                .header("location", location)
                                .body(full(Bytes::new()))
                        }
                        _ => json(400, r#"{"error":"invalid_request"}"#.to_owned()),
                    }
                }
                ("POST", "/token") => json(
                    200,
                    r#"{"access_token":"demo-access-token","token_type":"Bearer","expires_in":3600,"refresh_token":"demo-refresh-token","scope":"urn:ietf:params:oauth:scope:mail urn:ietf:params:oauth:scope:calendars urn:ietf:params:oauth:scope:contacts offline_access"}"#.to_owned(),
                ),
                _ => json(404, r#"{"error":"not_found"}"#.to_owned()),
            }
        }
        Reply::AuthGate {
            challenge,
            ok_status,
        } => {
            if authorized {
                Response::builder()
                    .status(*ok_status)
                    .body(full(Bytes::new()))
            } else {
                Response::builder()
                    .status(401)
                    .header("www-authenticate", challenge.as_str())
                    .body(full(Bytes::new()))
            }
        }
    };
    Ok(resp.unwrap_or_else(|_| Response::new(full(Bytes::new()))))
}

/// `%XX` and `+` decoded (query parameters).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything but unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
