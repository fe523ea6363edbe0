#!/usr/bin/env bash
# Benchmark: `pacc serve` next to nginx, both serving the same rendered document with the
# same certificate over TLS 1.3 with keep-alive, measured by the same load tool (wrk) in one
# run, on loopback only. Prints requests/s and latency percentiles of each, and the ratios.
#
#   bash bench/serve-vs-nginx.sh [SECONDS] [CONNECTIONS] [THREADS]   (as root; installs nginx, wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}; CONNS=${2:-16}; THREADS=${3:-1}   # worker threads for each server (nginx worker_processes)
need=(); for p in nginx wrk openssl; do command -v "$p" >/dev/null || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx wrk openssl >/dev/null; fi
cargo build --release -q -p pacc-cli
PACC=target/release/pacc
W=$(mktemp -d); chmod 755 "$W"; trap 'kill $(cat "$W/nginx.pid" 2>/dev/null) ${PACC_PID:-} 2>/dev/null; rm -rf "$W"' EXIT
# A CA and a certificate for ua-auto-config.bench.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/ca.key" -out "$W/ca.crt" -days 2 -subj "/CN=bench CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/leaf.key" -out "$W/leaf.csr" -subj "/CN=ua-auto-config.bench.test" 2>/dev/null
printf 'subjectAltName=DNS:ua-auto-config.bench.test\nextendedKeyUsage=serverAuth\n' > "$W/ext"
openssl x509 -req -in "$W/leaf.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial -days 2 -extfile "$W/ext" -out "$W/leaf.crt" 2>/dev/null
cat > "$W/provider.toml" <<TOML
[[document]]
domains = ["bench.test"]
oauth_issuer = "https://auth.bench.test/"
[document.services]
imap = "imap.bench.test"
submit = "smtp.bench.test"
jmap = "https://jmap.bench.test/session"
caldav = "https://dav.bench.test/calendars/"
carddav = "https://dav.bench.test/contacts/"
[document.provider]
name = "Bench Mail"
[document.tls]
cert = "$W/leaf.crt"
key = "$W/leaf.key"
TOML
mkdir -p "$W/www/.well-known" "$W/tmp"
$PACC render "$W/provider.toml" --domain bench.test --out "$W/www/.well-known/user-agent-configuration.json" >/dev/null
BYTES=$(stat -c %s "$W/www/.well-known/user-agent-configuration.json")
cat > "$W/nginx.conf" <<NGX
worker_processes $THREADS;
pid $W/nginx.pid;
error_log $W/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp; uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  types { application/json json; }
  ssl_certificate $W/leaf.crt; ssl_certificate_key $W/leaf.key; ssl_protocols TLSv1.3;
  keepalive_requests 1000000;
  server { listen 127.0.77.1:443 ssl; server_name ua-auto-config.bench.test; root $W/www; add_header Cache-Control "public, max-age=300"; }
}
NGX
nginx -c "$W/nginx.conf" -p "$W/" -e "$W/nginx-error.log"
PACC_LOG=error $PACC serve "$W/provider.toml" --listen 127.0.77.2:443 --threads "$THREADS" & PACC_PID=$!
sleep 1
URL=/.well-known/user-agent-configuration.json
for who in nginx:127.0.77.1 pacc:127.0.77.2; do
  ip=${who#*:}
  # Both must serve the same bytes before anything is measured.
  curl -sS --cacert "$W/ca.crt" --resolve "ua-auto-config.bench.test:443:$ip" "https://ua-auto-config.bench.test$URL" -o "$W/${who%%:*}.json"
  cmp -s "$W/${who%%:*}.json" "$W/www/.well-known/user-agent-configuration.json" || { echo "${who%%:*} serves other bytes" >&2; exit 1; }
done
run() { # name ip → "req/s p50 p90 p99"
  wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -H "Host: ua-auto-config.bench.test" "https://$2$URL" > "$W/$1.wrk" 2>&1
  rps=$(awk '/Requests\/sec/ {print $2}' "$W/$1.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$W/$1.wrk"); p90=$(awk '$1=="90%" {print $2}' "$W/$1.wrk"); p99=$(awk '$1=="99%" {print $2}' "$W/$1.wrk")
  echo "$rps $p50 $p90 $p99"
}
echo "document: $BYTES bytes; wrk -t1 -c$CONNS -d${SECS}s, TLS 1.3, keep-alive, loopback; $(nproc) cores; $THREADS worker(s) each"
read -r n_rps n50 n90 n99 <<<"$(run nginx 127.0.77.1)"
read -r p_rps p50 p90 p99 <<<"$(run pacc 127.0.77.2)"
printf '%-6s %12s %10s %10s %10s\n' server req/s p50 p90 p99
printf '%-6s %12s %10s %10s %10s\n' nginx "$n_rps" "$n50" "$n90" "$n99"
printf '%-6s %12s %10s %10s %10s\n' pacc "$p_rps" "$p50" "$p90" "$p99"
to_ms() { case "$1" in *us) echo "${1%us} / 1000" | bc -l;; *ms) echo "${1%ms}";; *s) echo "${1%s} * 1000" | bc -l;; esac; }
command -v bc >/dev/null || { apt-get install -y -qq bc >/dev/null 2>&1 || true; }
echo "throughput ratio pacc/nginx: $(echo "$p_rps / $n_rps" | bc -l | cut -c1-5)"
echo "p99 ratio pacc/nginx: $(echo "$(to_ms "$p99") / $(to_ms "$n99")" | bc -l | cut -c1-5)"
