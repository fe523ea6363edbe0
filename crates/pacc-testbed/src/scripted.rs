//! Line-protocol servers that follow a script: the hostile and broken servers of the probe
//! tests (silent greetings, endless lines, missing or injected STARTTLS…).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::pki::{CertKind, TestCa, TlsVersions, server_config};
use crate::{AbortOnDrop, TestbedError, addr};

/// One step of a script, performed per connection.
#[derive(Debug, Clone)]
pub enum ScriptStep {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read one line from the client (recorded).
    ReadLine,
    /// Start TLS (server side) on the connection.
    StartTls,
    /// Stop talking but keep the connection open.
    Stall,
    /// Write this chunk over and over (up to 16 MiB) without a line end.
    Flood(Vec<u8>),
    /// Write these bytes one at a time, waiting this long before each.
    Drip(Vec<u8>, std::time::Duration),
    /// Read an HTTP request head (up to the empty line; recorded).
    ReadHead,
    /// Close the connection now.
    Close,
}

impl ScriptStep {
    /// `Send` of text.
    pub fn send(s: &str) -> Self {
        ScriptStep::Send(s.as_bytes().to_vec())
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the plain stream is being upgraded.
    Upgrading,
}

impl Conn {
    async fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(b).await,
            Conn::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
            Conn::Upgrading => Ok(()),
        }
    }
    async fn read_byte(&mut self) -> std::io::Result<Option<u8>> {
        let mut b = [0u8; 1];
        let n = match self {
            Conn::Plain(s) => s.read(&mut b).await?,
            Conn::Tls(s) => s.read(&mut b).await?,
            Conn::Upgrading => 0,
        };
        Ok((n == 1).then_some(b[0]))
    }
}

/// A running scripted server.
pub struct ScriptedServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    _task: AbortOnDrop,
}

impl ScriptedServer {
    /// Listen on a fresh loopback address at `port`; with `implicit_tls`, TLS starts on
    /// connect. Certificates (implicit or after `StartTls`) are of `cert` kind for `names`.
    pub async fn start(
        ca: &TestCa,
        names: &[&str],
        port: u16,
        implicit_tls: bool,
        cert: CertKind,
        script: Vec<ScriptStep>,
    ) -> Result<Self, TestbedError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let leaf = ca.issue(&names, cert)?;
        let acceptor = TlsAcceptor::from(server_config(&leaf, TlsVersions::Both, &[])?);
        let listener = addr::bind_tcp(port).await.map_err(TestbedError::Bind)?;
        let addr = listener.local_addr().map_err(TestbedError::Bind)?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, script, rec) = (acceptor.clone(), script.clone(), rec.clone());
                conns.spawn(async move {
                    let mut conn = if implicit_tls {
                        match acceptor.accept(tcp).await {
                            Ok(t) => Conn::Tls(Box::new(t)),
                            Err(_) => return,
                        }
                    } else {
                        Conn::Plain(tcp)
                    };
                    let _ = play(&mut conn, &acceptor, &script, &rec).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(ScriptedServer {
            addr,
            received,
            _task: AbortOnDrop(task),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything clients sent on lines it read, as text.
    pub fn received(&self) -> String {
        self.received
            .lock()
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .unwrap_or_default()
    }
}

async fn play(
    conn: &mut Conn,
    acceptor: &TlsAcceptor,
    script: &[ScriptStep],
    rec: &Mutex<Vec<u8>>,
) -> std::io::Result<()> {
    for step in script {
        match step {
            ScriptStep::Send(b) => conn.write(b).await?,
            ScriptStep::ReadLine => loop {
                let Some(b) = conn.read_byte().await? else {
                    return Ok(());
                };
                if let Ok(mut r) = rec.lock() {
                    r.push(b);
                }
                if b == b'\n' {
                    break;
                }
            },
            ScriptStep::StartTls => {
                let Conn::Plain(plain) = std::mem::replace(conn, Conn::Upgrading) else {
                    return Ok(());
                };
                *conn = Conn::Tls(Box::new(acceptor.accept(plain).await?));
            }
            ScriptStep::Stall => std::future::pending::<()>().await,
            ScriptStep::Drip(bytes, every) => {
                for b in bytes {
                    tokio::time::sleep(*every).await;
                    conn.write(std::slice::from_ref(b)).await?;
                }
            }
            ScriptStep::ReadHead => {
                let mut tail = [0u8; 4];
                loop {
                    let Some(b) = conn.read_byte().await? else {
                        return Ok(());
                    };
                    if let Ok(mut r) = rec.lock() {
                        r.push(b);
                    }
                    tail.rotate_left(1);
                    tail[3] = b;
                    if &tail == b"\r\n\r\n" {
                        break;
                    }
                }
            }
            ScriptStep::Close => return Ok(()),
            ScriptStep::Flood(chunk) => {
                for _ in 0..(16 * 1024 * 1024 / chunk.len().max(1)) {
                    conn.write(chunk).await?;
                }
            }
        }
    }
    // Keep the connection open until the client closes it.
    while conn.read_byte().await?.is_some() {}
    Ok(())
}
