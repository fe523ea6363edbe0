#!/usr/bin/env python3
"""Fleet-check benchmark: `pacc check --all` over N customer domains of one hoster, on
loopback (not a test; results in docs/benchmarks.md).

    python3 bench/fleet.py [--domains 10000] [--mx-hosted 5000] [--jobs 64] [--write-doc]

It builds the release binaries, writes a description with N customer domains: N - M that
publish their own document, and M hosted through the MX fallback (no document of their own:
an MX record to the hoster's mail host `mx.hoster.bench`, whose document clients take, and
an MTA-STS `enforce` policy served by the same `pacc serve` at `mta-sts.<domain>`). It has
`pacc-bench-fleet` issue a certificate per domain and publish every address, MX, MTA-STS and
digest record in the testbed DNS, runs `pacc serve` for all of them on one loopback address, then times
`pacc check --all` (discovery, digest, document and obsolete-shape checks per domain; no
probes) and prints wall time, domains per second, failures and the peak RSS of the checking
pacc process (GNU time). Everything runs on 127.0.0.0/8 and is stopped afterwards.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ip():
    for b in range(2, 250):
        ip = f"127.77.{b}.9"
        s = socket.socket()
        try:
            s.bind((ip, 443))
            return ip
        except OSError:
            continue
        finally:
            s.close()
    sys.exit("no free loopback address for port 443")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", type=int, default=10000)
    ap.add_argument("--mx-hosted", type=int, default=None, help="how many of the domains are hosted through the MX fallback (default: half)")
    ap.add_argument("--jobs", type=int, default=64)
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args()
    print("building release binaries…", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "pacc-cli", "-p", "pacc-testbed", "--bin", "pacc", "--bin", "pacc-bench-fleet"], cwd=ROOT, check=True)
    pacc = os.path.join(ROOT, "target/release/pacc")
    work = tempfile.mkdtemp(prefix="pacc-fleet-")
    mx_n = args.domains // 2 if args.mx_hosted is None else min(args.mx_hosted, args.domains)
    primary = [f"c{i:05}.fleet.bench" for i in range(args.domains - mx_n)]
    hosted = [f"m{i:05}.fleet.bench" for i in range(mx_n)]
    desc = os.path.join(work, "provider.toml")
    with open(desc, "w") as f:
        f.write("[[document]]\ndomains = [" + ", ".join(f'"{d}"' for d in primary) + "]\npassword = true\n")
        f.write('[document.services]\nimap = "imap.hoster.bench"\nsubmit = "smtp.hoster.bench"\n[document.provider]\nname = "Hoster"\n\n')
        if hosted:
            # The hoster's mail host publishes the document the MX-hosted domains use, and
            # serve answers their MTA-STS policies.
            f.write("[[document]]\ndomains = [" + ", ".join(f'"{d}"' for d in ["mx.hoster.bench"] + hosted) + "]\npassword = true\n")
            f.write('[document.services]\nimap = "imap.hoster.bench"\nsubmit = "smtp.hoster.bench"\n[document.provider]\nname = "Hoster (MX)"\n')
            f.write('[document.mta_sts]\nid = "fleet1"\nmode = "enforce"\nmx = ["mx.hoster.bench"]\nmax_age = 86400\n\n')
        f.write('[serve]\ncert_dir = "certs"\n')
    render = json.loads(subprocess.run([pacc, "render", desc, "--json"], capture_output=True, check=True).stdout)
    record = render["publications"][0]["txt"][0] if primary else "-"
    mx_record = next((p["txt"][0] for p in render["publications"] if p["domain"] == "mx.hoster.bench"), "-")
    ip = free_ip()
    t = time.perf_counter()
    fleet = subprocess.Popen([os.path.join(ROOT, "target/release/pacc-bench-fleet"), "--dir", work, "--domains", str(len(primary)), "--mx-hosted", str(mx_n), "--serve-ip", ip, "--record", record, "--mx-record", mx_record], stdout=subprocess.PIPE, text=True)
    serve = None
    try:
        ready = fleet.stdout.readline().split()
        if not ready or ready[0] != "READY":
            sys.exit("the fleet did not start")
        dns, ca = ready[1], ready[2]
        setup_s = time.perf_counter() - t
        serve = subprocess.Popen([pacc, "serve", desc, "--listen", f"{ip}:443"], stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                socket.create_connection((ip, 443), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        rss_file = os.path.join(work, "rss")
        t = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, pacc, "check", "--all", desc, "--no-probe", "--jobs", str(args.jobs), "--dns", dns, "--ca-file", ca, "--json", "--timeout", "30"], capture_output=True, text=True)
        wall = time.perf_counter() - t
        lines = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
        summary = lines[-1]["summary"]
        rss = int(open(rss_file).read().split()[-1])
        reasons = {}
        via_mx = sum(1 for l in lines[:-1] if any(f["area"] == "mx-fallback" and f["verdict"] == "PASS" for f in l.get("findings", [])))
        for l in lines[:-1]:
            for f in l.get("findings", []):
                if f["verdict"] == "FAIL":
                    key = f["area"] + ": " + " ".join(f["message"].split()[:8])
                    reasons[key] = reasons.get(key, 0) + 1
        top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
        rows = [
            f"domains {summary['domains']} ({len(primary)} primary, {mx_n} MX-hosted, 1 MX host)  ok {summary['ok']}  failed {summary['failed']}  warned {summary['warned']}",
            f"wall {wall:.2f} s  {summary['domains'] / wall:.0f} domains/s  (pacc's own figure: {summary['domains_per_second']})",
            f"--jobs {args.jobs}  peak RSS of the checking pacc {rss / 1024:.1f} MB  (found through the MX fallback: {via_mx})",
            f"(setup: {args.domains + (1 if hosted else 0)} certificates and DNS records in {setup_s:.1f} s)",
        ] + [f"failures: {n} x {k}…" for k, n in top]
        print("\n".join(rows))
        if args.write_doc:
            with open(os.path.join(ROOT, "docs/benchmarks.md"), "a") as f:
                f.write(f"\n### {time.strftime('%Y-%m-%d')}: `python3 bench/fleet.py --domains {args.domains} --mx-hosted {mx_n} --jobs {args.jobs}`\n\n```text\n" + "\n".join(rows) + "\n```\n")
    finally:
        for p in (serve, fleet):
            if p:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
