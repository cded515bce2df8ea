#!/usr/bin/env bash
# Builds libtessera (shared and static) and runs the C and C++ tests against it: strict C11 and
# C++17 builds linked both ways, the login_server example, AddressSanitizer + UBSan, and
# valgrind when it is installed. Called by scripts/test-all.sh (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
libdir="$target_dir/debug"

echo "== cargo build --lib (libtessera.so, libtessera.a)"
cargo build --lib --quiet

make_c() { make --no-print-directory -C tests/c LIBDIR="$libdir" "$@"; }

echo "== C11 / C++17, shared and static"
make_c -j2 check
echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
make_c -j2 sanitize
if command -v valgrind >/dev/null 2>&1; then
  echo "== valgrind"
  make_c valgrind
else
  echo "== valgrind not installed; skipped (the sanitizer run above covers leaks)"
fi
echo "== C tests passed"
