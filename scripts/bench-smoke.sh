#!/usr/bin/env bash
# Smoke test of the load harness: a few seconds of the mixed workload on a small engine.
# Fails if any operation that must succeed fails. Run by scripts/test-all.sh; uses the debug
# build `cargo test --all-targets` has already made.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --example tessera-load -- --quick --scaling --duration 0.5
cargo run --quiet --example tessera-load -- --quick --backend c-abi --duration 0.5
cargo run --quiet --example tessera-load -- --quick --backend durable --users 200 --duration 0.5
# The timing harness runs (5,000 samples per class, debug build, ~3 s): no verdict, since
# t-tests at this size and build mean nothing; scripts/ct-check.sh is the real check.
cargo run --quiet --example dudect -- --samples 5000 --no-verdict >/dev/null
