//! Loopback addresses for test hosts.
//!
//! Every host gets its own 127.x.y.z address, so real ports (53, 443, 993…) can be used and
//! tests in parallel processes never collide. An address is claimed by binding to it: the
//! bind itself is the lock, so concurrent test processes (nextest) cannot take the same one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Candidate addresses in 127.16.0.0 – 127.255.255.254, starting at a per-process offset.
///
/// With `PACC_TESTBED_NET=a.b.c` (a /24 the caller has made local, e.g. inside the latency
/// benchmark's network namespace) the candidates are `a.b.c.2` … `a.b.c.254` instead.
pub(crate) fn candidates() -> Box<dyn Iterator<Item = Ipv4Addr>> {
    if let Some(net) = std::env::var("PACC_TESTBED_NET").ok().and_then(|n| {
        let p: Vec<u8> = n.split('.').filter_map(|x| x.parse().ok()).collect();
        (p.len() == 3).then(|| [p[0], p[1], p[2]])
    }) {
        return Box::new(
            std::iter::repeat_with(move || {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                Ipv4Addr::new(net[0], net[1], net[2], (2 + n % 253) as u8)
            })
            .take(253),
        );
    }
    // Spread processes apart; within a process, hand out addresses in sequence.
    let base = (std::process::id().wrapping_mul(7919)) % 2_000_000;
    Box::new(
        std::iter::repeat_with(move || {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let offset = (base + n) % (240 * 65_536);
            let v = (16u32 << 16) + offset;
            let [_, a, b, c] = v.to_be_bytes();
            Ipv4Addr::new(127, a, b, c)
        })
        // Skip .0 and .255 host parts, which some stacks treat specially (skipped, not
        // clamped: clamping gave two candidates the same address, and two daemons that
        // claim theirs only when they start could then both pick it).
        .filter(|ip| !matches!(ip.octets()[3], 0 | 255))
        .take(100_000),
    )
}

/// Bind a TCP listener on a fresh loopback address at `port`.
pub(crate) async fn bind_tcp(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for ip in candidates().take(2_000) {
        match tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), port)).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(explain(e, port)),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free loopback address")))
}

/// Bind UDP and TCP on one fresh loopback address at `port` (for DNS).
pub(crate) async fn bind_udp_tcp(
    port: u16,
) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    for ip in candidates().take(2_000) {
        let addr = SocketAddr::new(IpAddr::V4(ip), port);
        let udp = match tokio::net::UdpSocket::bind(addr).await {
            Ok(u) => u,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(explain(e, port)),
        };
        match tokio::net::TcpListener::bind(addr).await {
            Ok(t) => return Ok((udp, t)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(explain(e, port)),
        }
    }
    Err(std::io::Error::other("no free loopback address"))
}

fn explain(e: std::io::Error, port: u16) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied && port < 1024 {
        std::io::Error::new(
            e.kind(),
            format!(
                "binding port {port} needs root or CAP_NET_BIND_SERVICE (or sysctl net.ipv4.ip_unprivileged_port_start=0): {e}"
            ),
        )
    } else {
        e
    }
}

/// A fresh loopback address on which every port in `ports` is free right now (for daemons
/// that bind by themselves). Claimed by binding all ports, then released.
pub(crate) async fn free_ip(ports: &[u16]) -> std::io::Result<Ipv4Addr> {
    'next: for ip in candidates().take(2_000) {
        let mut held = Vec::new();
        for port in ports {
            match tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), *port)).await {
                Ok(l) => held.push(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue 'next,
                Err(e) => return Err(explain(e, *port)),
            }
        }
        return Ok(ip);
    }
    Err(std::io::Error::other("no free loopback address"))
}
