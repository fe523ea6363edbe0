#!/usr/bin/env python3
"""Stress benchmark (not a test): the release `pacc` binary against the worst case of each
hostile input, on loopback, and the sans-IO machines against their maximum-size inputs.

Run as root (the hostile providers bind ports 53 and 443 on 127.0.0.0/8):

    python3 bench/stress.py [--timeout 5] [--runs 3] [--write-doc]

For each scenario it runs `pacc probe|discover u@<scenario>.stress --json` against the
providers of `pacc-bench-hostile` and prints the wall time against the `--timeout`
deadline, the error kind pacc reported, and the peak RSS of the pacc process itself (from
wait4's rusage of that very child). Then it runs `cargo bench -p pacc-proto --bench
stress`. With --write-doc the results replace the stress section of docs/benchmarks.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (scenario, command, what it floods)
SCENARIOS = [
    ("imap-caps", "probe", "IMAP: 256 lines x 8 KiB of unique CAPABILITY words (2 MB)"),
    ("smtp-ehlo", "probe", "submission: 2 MB of unique EHLO keywords"),
    ("pop3-capa", "probe", "POP3: 2 MB of unique CAPA lines"),
    ("sieve-caps", "probe", "ManageSieve: 256 unique 8 KiB capabilities after STARTTLS"),
    ("imap-endless-line", "probe", "IMAP: a 16 MiB line without an end"),
    ("imap-drip", "probe", "IMAP: the greeting one byte per 200 ms"),
    ("gzip-bomb", "discover", "document: 64 MiB of gzip-compressed spaces"),
    ("huge-body", "discover", "document: an endless 1 GiB body without a length"),
    ("many-txt", "discover", "DNS: 201 TXT records at the digest owner"),
]


def run_pacc(pacc, args):
    """Run pacc; return (wall seconds, exit code, stdout, peak RSS in KiB) of that child."""
    out = tempfile.TemporaryFile()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.execv(pacc, [pacc] + args)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    out.seek(0)
    return wall, os.waitstatus_to_exitcode(status), out.read().decode(errors="replace"), usage.ru_maxrss


def error_kind(stdout):
    try:
        doc = json.loads(stdout)
    except ValueError:
        return "no-json"
    services = doc.get("services")
    if services:
        return ",".join(s.get("kind", s.get("status", "?")) for s in services)
    err = doc.get("error") or {}
    return err.get("kind", "ok" if doc.get("ok") else "?")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the hostile providers bind ports 53 and 443 on loopback")
    subprocess.run(
        ["cargo", "build", "--release", "-j2", "-p", "pacc-cli", "-p", "pacc-testbed", "--bin", "pacc", "--bin", "pacc-bench-hostile"],
        cwd=ROOT, check=True,
    )
    pacc = os.path.join(ROOT, "target/release/pacc")
    ca = tempfile.NamedTemporaryFile(suffix=".pem", delete=False).name
    server = subprocess.Popen(
        [os.path.join(ROOT, "target/release/pacc-bench-hostile"), "--ca-out", ca],
        stdout=subprocess.PIPE, text=True,
    )
    rows = []
    try:
        line = server.stdout.readline().split()
        if not line or line[0] != "READY":
            sys.exit("the hostile providers did not start")
        dns = line[1]
        print(f"pacc against hostile providers on loopback (--timeout {a.timeout:g}, {a.runs} runs each)")
        print(f"{'scenario':<18} {'median':>8} {'max':>8} {'deadline':>8} {'peak RSS':>9}  result")
        for name, cmd, what in SCENARIOS:
            walls, rss, kinds = [], [], set()
            for _ in range(a.runs):
                w, code, out, maxrss = run_pacc(
                    pacc, [cmd, f"u@{name}.stress", "--dns", dns, "--ca-file", ca, "--timeout", f"{a.timeout:g}", "--json"])
                walls.append(w)
                rss.append(maxrss / 1024)
                kinds.add(f"{error_kind(out)} (exit {code})")
            row = (name, statistics.median(walls), max(walls), a.timeout, max(rss), " / ".join(sorted(kinds)), what)
            rows.append(row)
            print(f"{row[0]:<18} {row[1]:7.2f}s {row[2]:7.2f}s {row[3]:7.1f}s {row[4]:7.1f}MB  {row[5]}")
    finally:
        server.kill()
        server.wait()
        os.unlink(ca)
    bench = subprocess.run(
        ["cargo", "bench", "-j2", "-p", "pacc-proto", "--bench", "stress"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    machine_lines = [l for l in bench.splitlines() if l and not l.startswith(("Running", "running"))]
    print("\n".join(machine_lines))
    worst = max(rows, key=lambda r: r[4])
    print(f"worst peak RSS: {worst[4]:.1f} MB ({worst[0]}); worst overrun of the deadline: "
          f"{max(r[2] - r[3] for r in rows):+.2f} s")
    if a.write_doc:
        write_doc(rows, machine_lines, a)


def write_doc(rows, machine_lines, a):
    path = os.path.join(ROOT, "docs/benchmarks.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = "<!-- stress:start -->"
    end = "<!-- stress:end -->"
    body = [start, "",
            "## Stress: hostile inputs (`python3 bench/stress.py --runs %d --timeout %g --write-doc`)" % (a.runs, a.timeout), "",
            "The release binary against the worst case of each input, on loopback. Wall time against the",
            "`--timeout` deadline; peak RSS of the pacc process itself (wait4 rusage).", "",
            "| scenario | what the server sends | median | max | deadline | peak RSS | pacc reported |",
            "|---|---|---|---|---|---|---|"]
    for name, med, mx, dl, rss, kinds, what in rows:
        body.append(f"| {name} | {what} | {med:.2f} s | {mx:.2f} s | {dl:g} s | {rss:.1f} MB | {kinds} |")
    body += ["", "The sans-IO machines with maximum-size inputs (`cargo bench -p pacc-proto --bench stress`):", "", "```"]
    body += machine_lines
    body += ["```", "", end]
    block = "\n".join(body)
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(path, "w").write(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
