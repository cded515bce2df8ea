#!/usr/bin/env bash
# Runs the SIGKILL crash test for many trials (default 300): a child writes through a durable
# engine, is killed at a random moment, and every write it acknowledged must be there after
# reopening. Usage: scripts/crash-soak.sh [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
TESSERA_CRASH_TRIALS="${1:-300}" cargo test --release --test crash \
  every_acknowledged_write_survives_sigkill -- --exact --nocapture
