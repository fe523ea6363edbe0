#!/usr/bin/env bash
# Run every fuzz target (cargo-fuzz, libFuzzer + AddressSanitizer, nightly toolchain).
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [--record]
#
# Each target starts from its seed corpus (fuzz/seeds/<target>) plus the corpus of earlier
# runs (fuzz/corpus/<target>, not committed). Prints one line per target with executions,
# coverage and findings, and exits 1 if any target crashed, leaked, ran out of memory or
# timed out (the input is left in fuzz/artifacts/<target>/: add it to
# fuzz/regressions/<target>/ once fixed). With --record, the table is appended to
# docs/fuzzing.md. CI runs this with 20 seconds per target; a campaign, e.g.
# `bash fuzz/run.sh 1800 --record`, runs each target for half an hour. Run a campaign on a
# tree nobody edits meanwhile (a `git worktree`): each target is rebuilt if sources change.
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-20}"
record="${2:-}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O 2>&1 | tail -1 || exit 1
targets=$(cargo +nightly fuzz list)
failed=0
rows=""
for t in $targets; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  units=$(find "corpus/$t" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    verdict="ok"
  elif grep -q "failed to build fuzz script" "$log"; then
    verdict="BUILD FAILED"; failed=1; grep -m5 '^error' "$log"
  else
    verdict="FOUND (exit $rc; see fuzz/artifacts/$t)"; failed=1; tail -40 "$log"
  fi
  printf '%-18s %12s execs  cov %6s  corpus %5s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "$units" "$verdict"
  rows+="| $t | ${secs} s | ${execs:-?} | ${cov:-?} | $units | $verdict |"$'\n'
  rm -f "$log"
done
if [ "$record" = "--record" ]; then
  {
    printf '\n### Campaign of %s (%s s per target, %s)\n\n' "$(date -u +%Y-%m-%d)" "$secs" "$(rustc +nightly --version)"
    printf '| target | time | executions | coverage | corpus | result |\n|---|---|---|---|---|---|\n'
    printf '%s' "$rows"
  } >> ../docs/fuzzing.md
fi
exit $failed
