#!/usr/bin/env bash
# Smoke test of the load harnesses: a few seconds of the mixed workload on a small engine, and
# every cluster benchmark in quick mode against PostgreSQL. Fails if any operation that must
# succeed fails. Run by scripts/test-all.sh (under scripts/with-postgres.sh); uses the debug
# build `cargo test --all-targets` has already made.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --example tessera-load -- --quick --scaling --duration 0.5
cargo run --quiet --example tessera-load -- --quick --backend c-abi --duration 0.5
cargo run --quiet --example tessera-load -- --quick --backend durable --users 200 --duration 0.5
cargo run --quiet --example tessera-load -- --quick --scenario mixed-compaction --users 2000 --duration 0.5 --idle 0.2 --json target/bench-load/smoke-mixed-compaction.json
if [ -n "${TESSERA_PG_DSN:-}" ]; then
  cargo run --quiet --example cluster-bench -- all --quick
elif [ "${CI:-}" = "true" ]; then
  echo "bench-smoke: TESSERA_PG_DSN is not set, but CI=true: the cluster benchmark must run" \
    "(run through scripts/with-postgres.sh)" >&2
  exit 1
else
  echo "bench-smoke: cluster-bench skipped, TESSERA_PG_DSN is not set" \
    "(run through scripts/with-postgres.sh to benchmark against PostgreSQL)"
fi
# The timing harness runs (5,000 samples per class, debug build, ~3 s): no verdict, since
# t-tests at this size and build mean nothing; scripts/ct-check.sh is the real check.
cargo run --quiet --example dudect -- --samples 5000 --no-verdict >/dev/null
