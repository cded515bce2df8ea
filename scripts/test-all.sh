#!/usr/bin/env bash
# Runs every test of the project: Rust (unit, integration, doc), formatting and lints, and
# the C, C++ and Python suites when present. This is the README's test command. Everything
# runs under scripts/with-postgres.sh, so the cluster-mode tests of every suite share one
# throwaway PostgreSQL server (TESSERA_PG_DSN); without PostgreSQL they skip, except with
# CI=true, where a missing server is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${TESSERA_PG_DSN:-}" ] && [ -z "${TESSERA_UNDER_PG:-}" ]; then
  export TESSERA_UNDER_PG=1
  exec scripts/with-postgres.sh "$0" "$@"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
cargo test --doc
echo "== quickstart, twice on one data directory (the second run must find the first's users)"
qs_dir=$(mktemp -d)
cargo run -q --example quickstart -- "$qs_dir/data" >/dev/null
second=$(cargo run -q --example quickstart -- "$qs_dir/data")
grep "2 users already there" <<<"$second" >/dev/null
rm -rf "$qs_dir"
for suite in scripts/test-c.sh scripts/test-python.sh scripts/bench-smoke.sh; do
  if [ -x "$suite" ]; then
    echo "== $suite"
    "$suite"
  fi
done
echo "== all tests passed"
