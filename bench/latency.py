#!/usr/bin/env python3
"""Setup-latency benchmark for pacc discovery on an emulated network (issue: latency).

Run as root on Linux:  python3 bench/latency.py [--rtt 50] [--runs 20] [--write-doc]

It creates two network namespaces of its own (pacc-bench-c for the client, pacc-bench-s for
the servers), joins them with two TUN devices and a forwarder that holds every packet for
RTT/2 in each direction (these kernels have no netem), verifies the emulated RTT with ping and
a TCP connect, starts the testbed providers in the server namespace, runs the release `pacc`
binary many times per scenario in the client namespace, and prints per scenario the median
and p90 wall time, the critical-path bound in round trips and milliseconds, median/bound, and
peak RSS. Everything is removed afterwards, also on failure. Addresses (10.99.x.y) exist only
inside the two namespaces; nothing is sent anywhere else.
"""

import argparse
import fcntl
import heapq
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

NS_C, NS_S = "pacc-bench-c", "pacc-bench-s"
TUN_C, TUN_S = "pbtunc", "pbtuns"
CLIENT_IP, SERVER_NET = "10.99.0.1", "10.99.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, address, RTT bound, expected outcome): 4 RTT for the primary path (A, TCP, TLS 1.3,
# GET; the TXT lookup runs beside), 5 for the MX fallback (MX, then A, TCP, TLS, GET per host;
# MTA-STS beside). The stall scenarios end at the deadline.
SCENARIOS = [
    ("primary", "user@primary.bench", 4, 0),
    ("mx-fallback, 1 MX", "user@hosted1.bench", 5, 0),
    ("mx-fallback, 3 MX", "user@hosted3.bench", 5, 0),
]
# Discovery (4 RTT), then every probe at once; the slowest is ManageSieve on 4190: A lookup,
# TCP, the server's capabilities (it speaks first, half a round trip after the handshake),
# STARTTLS, the TLS 1.3 handshake, the capabilities again: 6 RTT. Setup signs in on each
# probe's own connection (issue 13.6): one more round trip (AUTHENTICATE → OK; HTTP: the
# request with credentials on the kept connection), so 4 + 6 + 1 = 11 RTT. (Opening new
# connections for the sign-ins cost 16: the slowest, ManageSieve, again needed 6.)
FULL = [
    ("probe, 8 services", ["probe", "user@full.bench"], 10),
    ("setup, 8 services", ["setup", "user@full.bench", "--accept-domains", "full.bench", "--password-env", "PACC_BENCH_PASSWORD", "--no-save"], 11),
]
STALLS = [
    ("primary stalls", "user@stallprimary.bench", 4),
    ("1 of 2 MX stalls", "user@stallmx.bench", 4),
]


def sh(*cmd, check=True, ns=None, **kw):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def cleanup():
    for ns in (NS_C, NS_S):
        sh("ip", "netns", "del", ns, check=False)


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    # TUNSETIFF, IFF_TUN | IFF_NO_PI
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))
    return fd


def forward(fd_c, fd_s, delay):
    """Hold every packet for `delay` seconds, in both directions, until killed."""
    pending = []  # (due, seq, dst, packet)
    seq = 0
    while True:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
        readable, _, _ = select.select([fd_c, fd_s], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            try:
                pkt = os.read(fd, 65536)
            except OSError:
                continue
            heapq.heappush(pending, (now + delay, seq, fd_s if fd == fd_c else fd_c, pkt))
            seq += 1
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, dst, pkt = heapq.heappop(pending)
            try:
                os.write(dst, pkt)
            except OSError:
                pass  # the other side is not up yet: a lost packet, as on a real link


def setup(rtt_ms):
    cleanup()
    for ns in (NS_C, NS_S):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", ns=ns)
    fd_c, fd_s = tun(TUN_C), tun(TUN_S)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        try:
            forward(fd_c, fd_s, rtt_ms / 2000.0)
        finally:
            os._exit(0)
    sh("ip", "link", "set", TUN_C, "netns", NS_C)
    sh("ip", "link", "set", TUN_S, "netns", NS_S)
    sh("ip", "addr", "add", f"{CLIENT_IP}/32", "dev", TUN_C, ns=NS_C)
    sh("ip", "link", "set", TUN_C, "up", ns=NS_C)
    sh("ip", "route", "add", f"{SERVER_NET}.0/24", "dev", TUN_C, ns=NS_C)
    sh("ip", "addr", "add", f"{SERVER_NET}.1/32", "dev", TUN_S, ns=NS_S)
    sh("ip", "link", "set", TUN_S, "up", ns=NS_S)
    sh("ip", "route", "add", f"{CLIENT_IP}/32", "dev", TUN_S, ns=NS_S)
    # Every server address of the /24 is local in the server namespace.
    sh("ip", "route", "add", "local", f"{SERVER_NET}.0/24", "dev", "lo", ns=NS_S)
    return pid


def measure_rtt():
    ping = sh("ping", "-c", "5", "-i", "0.2", "-q", f"{SERVER_NET}.1", ns=NS_C, check=False)
    avg = None
    for line in ping.stdout.splitlines():
        if "min/avg" in line:
            avg = float(line.split("=")[1].split("/")[1])
    probe = (
        "import socket,time,sys\n"
        "ts=[]\n"
        "for _ in range(5):\n"
        "  s=socket.socket(); s.settimeout(2); t=time.perf_counter()\n"
        "  try: s.connect((sys.argv[1],53))\n"
        "  except OSError: pass\n"
        "  ts.append((time.perf_counter()-t)*1000); s.close()\n"
        "print(sorted(ts)[2])\n"
    )
    return avg, probe


def run_client(pacc, address, dns, ca, timeout, command=None):
    """One `pacc discover` (or `command`) in the client namespace: (wall ms, exit code, peak RSS KiB)."""
    args = command or ["discover", address]
    cmd = ["ip", "netns", "exec", NS_C, pacc, *args, "--dns", dns, "--ca-file", ca, "--json", "--timeout", str(timeout)]
    # Peak RSS of pacc itself: GNU time forks (a copy of itself, ~1 MB), execs ip, which
    # execs pacc, and reports that child's maximum. (Forking this Python process instead
    # would count Python's own pages: the fork's peak is kept across exec.)
    rss_file = tempfile.NamedTemporaryFile(prefix="pacc-rss-", delete=False)
    rss_file.close()
    cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *cmd]
    t = time.perf_counter()
    env = dict(os.environ, PACC_BENCH_PASSWORD="bench-secret", PACC_DATA_DIR=tempfile.gettempdir() + "/pacc-bench-data")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    p.stdout.read()
    p.wait()
    wall = (time.perf_counter() - t) * 1000
    try:
        with open(rss_file.name) as f:
            rss = int(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        rss = 0
    os.unlink(rss_file.name)
    return wall, p.returncode, rss


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt", type=float, default=50.0, help="emulated round-trip time in ms (default 50)")
    ap.add_argument("--runs", type=int, default=20, help="runs per scenario (default 20)")
    ap.add_argument("--deadline", type=float, default=3.0, help="pacc --timeout for the stall scenarios (s)")
    ap.add_argument("--write-doc", action="store_true", help="append the results to docs/latency.md")
    ap.add_argument("--pacc", help="time this pacc binary instead of the freshly built one (to compare builds)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/latency.py must run as root (it creates network namespaces)")
    for tool, pkg in (("ip", "iproute2"), ("ping", "iputils-ping"), ("/usr/bin/time", "time")):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", pkg], check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    print("building release binaries…", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "pacc-cli", "-p", "pacc-testbed", "--bin", "pacc", "--bin", "pacc-bench-provider"], cwd=ROOT, check=True)
    pacc = os.path.abspath(args.pacc) if args.pacc else os.path.join(ROOT, "target/release/pacc")
    provider_bin = os.path.join(ROOT, "target/release/pacc-bench-provider")
    fwd = provider = None
    work = tempfile.mkdtemp(prefix="pacc-bench-")
    lines = []
    try:
        fwd = setup(args.rtt)
        ca = os.path.join(work, "ca.pem")
        provider = subprocess.Popen(
            ["ip", "netns", "exec", NS_S, provider_bin, "--ca-out", ca],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, PACC_TESTBED_NET=SERVER_NET),
        )
        ready = provider.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise RuntimeError("the bench provider did not start")
        dns = ready[1]
        ping_avg, probe = measure_rtt()
        tcp = sh(sys.executable, "-c", probe, dns.split(":")[0], ns=NS_C).stdout.strip()
        head = f"emulated RTT {args.rtt:g} ms: ping avg {ping_avg} ms, TCP connect median {float(tcp):.1f} ms; {args.runs} runs per scenario; {os.cpu_count()} cores"
        print(head)
        lines.append(head)
        hdr = f"{'scenario':<22} {'median':>9} {'p90':>9} {'bound':>14} {'median/bound':>13} {'peak RSS':>10}"
        print(hdr)
        lines.append(hdr)
        for name, address, rtts, want in SCENARIOS:
            walls, codes = [], []
            peak = 0
            for _ in range(args.runs):
                wall, code, rss = run_client(pacc, address, dns, ca, 15)
                peak = max(peak, rss)
                walls.append(wall)
                codes.append(code)
            bound = rtts * args.rtt
            med = statistics.median(walls)
            ratio = med / bound if bound else float("nan")
            bad = sum(1 for c in codes if c != want)
            row = f"{name:<22} {med:8.1f}ms {pct(walls, 0.9):8.1f}ms {rtts} RTT={bound:6.0f}ms {ratio:13.3f} {peak / 1024:8.1f}MB" + (f"  ({bad} runs failed)" if bad else "")
            print(row)
            lines.append(row)
        for name, command, rtts in FULL:
            walls, codes, peak = [], [], 0
            for _ in range(args.runs):
                wall, code, rss = run_client(pacc, None, dns, ca, 30, command)
                walls.append(wall)
                codes.append(code)
                peak = max(peak, rss)
            bound = rtts * args.rtt
            med = statistics.median(walls)
            ratio = med / bound if bound else float("nan")
            bad = sum(1 for c in codes if c != 0)
            row = f"{name:<22} {med:8.1f}ms {pct(walls, 0.9):8.1f}ms {rtts} RTT={bound:6.0f}ms {ratio:13.3f} {peak / 1024:8.1f}MB" + (f"  ({bad} runs failed)" if bad else "")
            print(row)
            lines.append(row)
        for name, address, rtts in STALLS:
            walls = [run_client(pacc, address, dns, ca, args.deadline)[0] for _ in range(max(3, args.runs // 4))]
            row = f"{name:<22} {statistics.median(walls):8.1f}ms {max(walls):8.1f}ms  deadline {args.deadline * 1000:.0f}ms (max/deadline {max(walls) / (args.deadline * 1000):.3f})"
            print(row)
            lines.append(row)
    finally:
        if provider:
            provider.terminate()
            try:
                provider.wait(5)
            except subprocess.TimeoutExpired:
                provider.kill()
        if fwd:
            os.kill(fwd, signal.SIGTERM)
            os.waitpid(fwd, 0)
        cleanup()
        subprocess.run(["rm", "-rf", work])
    if args.write_doc:
        with open(os.path.join(ROOT, "docs/latency.md"), "a") as f:
            f.write(f"\n### {time.strftime('%Y-%m-%d')}: `python3 bench/latency.py --rtt {args.rtt:g} --runs {args.runs}`\n\n```text\n")
            f.write("\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
