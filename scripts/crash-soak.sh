#!/usr/bin/env bash
# Runs the SIGKILL crash test for many trials (default 300): a child writes through a durable
# engine, is killed at a random moment, and every write it acknowledged must be there after
# reopening. Then TRIALS/10 targeted kills: the child is killed while a session revocation is
# applied in memory but held before its journal write, and no session token it handed out may
# come back to life. Usage: scripts/crash-soak.sh [TRIALS]
set -euo pipefail
cd "$(dirname "$0")/.."
TESSERA_CRASH_TRIALS="${1:-300}" cargo test --release --test crash \
  sigkill -- --nocapture --test-threads=1
