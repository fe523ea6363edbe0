#!/usr/bin/env bash
# Generate the UniFFI bindings (Python, Kotlin, Swift) of crates/pacc-ffi into bindings/.
#   bash bindings/generate.sh           write them
#   bash bindings/generate.sh --check   fail if the committed ones differ (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -j2 -q -p pacc-ffi
cargo build -j2 -q -p pacc-ffi --features bindgen --bin uniffi-bindgen
lib=target/debug/libpacc_ffi.so
out=bindings
if [[ "${1:-}" == "--check" ]]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
for language in python kotlin swift; do
    target/debug/uniffi-bindgen generate "$lib" --language "$language" --no-format --out-dir "$out/$language" >/dev/null
done
if [[ "${1:-}" == "--check" ]]; then
    status=0
    for f in python/pacc_ffi.py kotlin/uniffi/pacc_ffi/pacc_ffi.kt swift/pacc_ffi.swift swift/pacc_ffiFFI.h swift/pacc_ffiFFI.modulemap; do
        if ! cmp -s "$out/$f" "bindings/$f"; then
            echo "bindings/$f is not what crates/pacc-ffi generates: run bash bindings/generate.sh" >&2
            status=1
        fi
    done
    [[ $status == 0 ]] && echo "bindings are up to date (python, kotlin, swift)"
    exit $status
fi
echo "wrote bindings/python, bindings/kotlin, bindings/swift"
