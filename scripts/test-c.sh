#!/usr/bin/env bash
# Builds libtessera (shared and static) and runs the C and C++ tests against it: strict C11 and
# C++17 builds linked both ways, the login_server example, an install into a temporary prefix
# used through pkg-config (scripts/test-install.sh), AddressSanitizer + UBSan, and valgrind when
# it is installed. Called by scripts/test-all.sh (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
libdir="$target_dir/debug"

echo "== cargo build --lib (libtessera.so, libtessera.a)"
cargo build --lib --quiet

# The library's SONAME is libtessera.so.0 (build.rs): programs linked with -ltessera load that
# name, which an install provides as a symlink; the build tree gets one here.
ln -sfn libtessera.so "$libdir/libtessera.so.0"

make_c() { make --no-print-directory -C tests/c LIBDIR="$libdir" "$@"; }

echo "== C11 / C++17, shared and static"
make_c -j2 check
echo "== examples/cluster.c (two cluster nodes; needs TESSERA_PG_DSN)"
cc -std=c11 -Wall -Wextra -Werror -Iinclude examples/cluster.c -L"$libdir" -ltessera \
   -Wl,-rpath,"$libdir" -lpthread -o tests/c/build/cluster
if [ -n "${TESSERA_PG_DSN:-}" ]; then
  tests/c/build/cluster "$TESSERA_PG_DSN"
elif [ "${CI:-}" = true ]; then
  echo "error: no TESSERA_PG_DSN in CI (run through scripts/with-postgres.sh)" >&2
  exit 1
fi
echo "== scripts/install.sh into a temporary prefix; build against it with pkg-config only"
scripts/test-install.sh "$libdir"
echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
make_c -j2 sanitize
if command -v valgrind >/dev/null 2>&1; then
  echo "== valgrind"
  make_c valgrind
else
  echo "== valgrind not installed; skipped (the sanitizer run above covers leaks)"
fi
echo "== C tests passed"
