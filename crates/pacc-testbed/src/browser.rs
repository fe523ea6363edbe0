//! A scripted "browser" for OAuth tests: follows the authorization server's redirects with
//! cookies, fills its login form, and finally delivers the redirect to the client's loopback
//! listener, as a person's browser would. No human, no real browser.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// One HTTP exchange's result.
struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

/// Drive a login: start at `url` (the authorization request), resolve the AS host to
/// `as_addr`, trust `ca_der`, sign in with `login`/`password`, and follow redirects until
/// one goes to `http://127.0.0.1:…`, which is then requested. Returns that final URL and the
/// loopback listener's answer.
pub async fn authorize(
    url: &str,
    as_addr: SocketAddr,
    ca_der: &rustls::pki_types::CertificateDer<'static>,
    login: &str,
    password: &str,
) -> Result<(String, String), String> {
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut current = url.to_owned();
    let mut origin = String::new();
    let mut posted = false;
    for _ in 0..20 {
        if current.starts_with("http://127.0.0.1") {
            let page = plain_get(&current).await?;
            return Ok((current, page));
        }
        let (host, path) =
            split(&current).ok_or_else(|| format!("unexpected redirect target {current}"))?;
        origin = format!("https://{host}");
        let cookie = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let page = https(as_addr, ca_der, &host, "GET", &path, &cookie, None).await?;
        absorb(&mut cookies, &page.set_cookies);
        match (page.status, page.location) {
            (300..=399, Some(loc)) => current = absolutize(&origin, &loc),
            (200, None) if page.body.contains("<form") && !posted => {
                // The login form posts back to the same path.
                posted = true;
                let cookie = cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let form = format!(
                    "login={}&password={}",
                    url_escape(login),
                    url_escape(password)
                );
                let page =
                    https(as_addr, ca_der, &host, "POST", &path, &cookie, Some(form)).await?;
                absorb(&mut cookies, &page.set_cookies);
                match (page.status, page.location) {
                    (300..=399, Some(loc)) => current = absolutize(&origin, &loc),
                    (s, _) => {
                        return Err(format!(
                            "login refused (HTTP {s}): {}",
                            page.body.chars().take(200).collect::<String>()
                        ));
                    }
                }
            }
            (s, _) => {
                return Err(format!(
                    "unexpected HTTP {s} at {current}: {}",
                    page.body.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    Err(format!(
        "too many redirects (last {current}, origin {origin})"
    ))
}

/// The user's side of the device authorization grant (RFC 8628): open
/// `verification_uri_complete`, confirm the code, sign in as `login`. Returns the final page.
pub async fn device_verify(
    url: &str,
    as_addr: SocketAddr,
    ca_der: &rustls::pki_types::CertificateDer<'static>,
    login: &str,
    password: &str,
) -> Result<String, String> {
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut current = url.to_owned();
    let mut form: Option<String> = None;
    let (mut confirmed, mut logged_in) = (false, false);
    for _ in 0..20 {
        let (host, path) =
            split(&current).ok_or_else(|| format!("unexpected redirect target {current}"))?;
        let origin = format!("https://{host}");
        let cookie = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let method = if form.is_some() { "POST" } else { "GET" };
        let page = https(as_addr, ca_der, &host, method, &path, &cookie, form.take()).await?;
        absorb(&mut cookies, &page.set_cookies);
        match (page.status, page.location) {
            (300..=399, Some(loc)) => current = absolutize(&origin, &loc),
            (200, None) if page.body.contains("name=\"confirm\"") && !confirmed => {
                confirmed = true;
                let mut fields: Vec<String> = hidden_inputs(&page.body)
                    .into_iter()
                    .map(|(k, v)| format!("{}={}", url_escape(&k), url_escape(&v)))
                    .collect();
                fields.push("confirm=yes".into());
                current = absolutize(&origin, &form_action(&page.body).unwrap_or(path));
                form = Some(fields.join("&"));
            }
            // A page that submits its own form (form_post): do what its script does.
            (200, None) if page.body.contains("forms[0].submit()") => {
                let mut fields: Vec<String> = hidden_inputs(&page.body)
                    .into_iter()
                    .map(|(k, v)| format!("{}={}", url_escape(&k), url_escape(&v)))
                    .collect();
                // Back at the code verification step after signing in: confirm the code.
                if page.body.contains("name=\"user_code\"") {
                    fields.push("confirm=yes".into());
                }
                current = absolutize(&origin, &form_action(&page.body).unwrap_or(path));
                form = Some(fields.join("&"));
            }
            (200, None) if page.body.contains("name=\"login\"") && !logged_in => {
                logged_in = true;
                form = Some(format!(
                    "login={}&password={}",
                    url_escape(login),
                    url_escape(password)
                ));
                current = absolutize(&origin, &path);
            }
            (200, None) => return Ok(page.body),
            (s, _) => {
                return Err(format!(
                    "unexpected HTTP {s} at {current}: {}",
                    page.body.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    Err(format!("too many steps (last {current})"))
}

/// `(name, value)` of every `<input type="hidden" …>` in a page.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let i = tag.find(&key)? + key.len();
        Some(tag[i..].split('"').next()?.to_owned())
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default())))
        .collect()
}

fn form_action(html: &str) -> Option<String> {
    let i = html.find("action=\"")? + "action=\"".len();
    Some(html[i..].split('"').next()?.to_owned())
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn split(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("https://")?;
    let i = rest.find('/').unwrap_or(rest.len());
    Some((
        rest[..i].to_owned(),
        if i == rest.len() {
            "/".into()
        } else {
            rest[i..].to_owned()
        },
    ))
}

fn absolutize(origin: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_owned()
    } else {
        format!("{origin}{loc}")
    }
}

fn absorb(jar: &mut HashMap<String, String>, set_cookies: &[String]) {
    for c in set_cookies {
        let kv = c.split(';').next().unwrap_or("");
        if let Some((k, v)) = kv.split_once('=') {
            jar.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
}

async fn https(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    host: &str,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<String>,
) -> Result<Page, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| e.to_string())?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    let body = match form {
        Some(f) => {
            req = req.header("content-type", "application/x-www-form-urlencoded");
            Full::new(Bytes::from(f))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = send
        .send_request(req.body(body).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let set_cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Page {
        status,
        location,
        set_cookies,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A plain-HTTP GET to the client's loopback redirect listener.
async fn plain_get(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("not http")?;
    let i = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..i];
    let path = if i == rest.len() { "/" } else { &rest[i..] };
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", authority)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
