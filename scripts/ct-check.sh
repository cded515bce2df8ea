#!/usr/bin/env bash
# Constant-time check (issue 11 item 4): dudect-style Welch t-tests on session-token and
# access-token verification and on the constant-time comparison itself, "forged value differs
# in the first byte" vs "differs in the last byte", classes interleaved at random. Pass line
# |t| < 4.5; negative controls (early-exit comparisons) must fail, or the harness is blind.
# See examples/dudect.rs for the method, docs/RELIABILITY.md (## Timing) for results.
#
#   scripts/ct-check.sh [--samples N] [--only TEST] [--no-verdict]
#
# CT_SAMPLES: samples per class (default 1000000; --samples wins). CT_CPU: the core to pin to
# with taskset (default: the last one; CT_CPU=none to not pin). Exit status 1 on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --example dudect
cmd=(target/release/examples/dudect --samples "${CT_SAMPLES:-1000000}" "$@")
cpu="${CT_CPU:-$(($(nproc) - 1))}"
if [[ "$cpu" != none ]] && command -v taskset >/dev/null; then
    cmd=(taskset -c "$cpu" "${cmd[@]}")
    echo "pinned to CPU $cpu"
fi
echo "host: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
exec "${cmd[@]}"
