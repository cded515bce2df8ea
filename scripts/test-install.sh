#!/usr/bin/env bash
# Installs libtessera into a temporary prefix with scripts/install.sh and builds against it
# with nothing but pkg-config: examples/login_server.c linked shared (run with
# LD_LIBRARY_PATH, its NEEDED entry the versioned SONAME) and static (no libtessera NEEDED at
# all), and a C++17 program through the installed tessera.hpp. Called by scripts/test-c.sh.
#
#   scripts/test-install.sh [LIBDIR]   # a cargo profile directory to install from (default:
#                                      # build and install the release library)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
# (No `grep -q` in pipelines: it exits at the first match, and with pipefail the writer's
# SIGPIPE would fail the check.)
command -v pkg-config >/dev/null || { echo "test-install: pkg-config is required" >&2; exit 1; }

prefix=$(mktemp -d "${TMPDIR:-/tmp}/tessera-prefix-XXXXXX")
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-install-test-XXXXXX")
trap 'rm -rf "$prefix" "$work"' EXIT
if [ $# -gt 0 ]; then
  scripts/install.sh --prefix "$prefix" --from "$1"
else
  scripts/install.sh --prefix "$prefix"
fi

fail() { echo "test-install: $*" >&2; exit 1; }
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -n 1)
lib="$prefix/lib"
# The files and links of the layout.
for f in include/tessera.h include/tessera.hpp lib/libtessera.a "lib/libtessera.so.$version" \
         lib/pkgconfig/tessera.pc lib/pkgconfig/tessera-static.pc; do
  [ -f "$prefix/$f" ] || fail "$f not installed"
done
[ "$(readlink "$lib/libtessera.so.0")" = "libtessera.so.$version" ] || fail "libtessera.so.0 link"
[ "$(readlink "$lib/libtessera.so")" = "libtessera.so.0" ] || fail "libtessera.so link"
readelf -d "$lib/libtessera.so.$version" | grep 'Library soname: \[libtessera.so.0\]' >/dev/null \
  || fail "the installed library's SONAME is not libtessera.so.0"

# Nothing of the source tree below: only the prefix, found through PKG_CONFIG_PATH.
export PKG_CONFIG_PATH="$lib/pkgconfig"
unset PKG_CONFIG_LIBDIR
[ "$(pkg-config --modversion tessera)" = "$version" ] || fail "pkg-config --modversion"
cd "$work"
cp "$root/examples/login_server.c" .

echo "== shared: cc login_server.c \$(pkg-config --cflags --libs tessera)"
# -pthread is the example's own need (it starts threads), not the library's.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror login_server.c $(pkg-config --cflags --libs tessera) -pthread \
   -o login_shared
readelf -d login_shared | grep 'NEEDED.*\[libtessera.so.0\]' >/dev/null \
  || fail "login_shared does not need libtessera.so.0"
if env -u LD_LIBRARY_PATH ./login_shared > /dev/null 2>&1; then
  fail "login_shared ran without LD_LIBRARY_PATH: it found a libtessera outside the prefix"
fi
LD_LIBRARY_PATH="$lib" ./login_shared > out.txt || fail "login_shared failed"
LD_LIBRARY_PATH="$lib" ldd ./login_shared | grep "libtessera.so.0 => $lib/libtessera.so.0" >/dev/null \
  || fail "login_shared did not load the prefix's library"

echo "== static: cc login_server.c \$(pkg-config --static --cflags --libs tessera-static)"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror login_server.c $(pkg-config --static --cflags --libs tessera-static) \
   -pthread -o login_static
if readelf -d login_static | grep 'NEEDED.*libtessera' >/dev/null; then
  fail "login_static needs a shared libtessera"
fi
env -u LD_LIBRARY_PATH ./login_static > /dev/null || fail "login_static failed"

echo "== C++17: #include <tessera.hpp> from the prefix"
cat > app.cpp <<'CPP'
#include <tessera.hpp>
#include <cstdio>
int main() {
    tessera::Engine e = tessera::Engine::in_memory();
    e.create_user(R"({"user_id": "ann", "nickname": "Ann"})");
    std::printf("%zu %s\n", e.user_count(), tessera_version());
    return e.user_count() == 1 ? 0 : 1;
}
CPP
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Werror app.cpp $(pkg-config --cflags --libs tessera) -o app_cpp
[ "$(LD_LIBRARY_PATH="$lib" ./app_cpp)" = "1 $version" ] || fail "the C++ program failed"

# pkg-config's own view of the files is right, not just good enough to link.
[ "$(pkg-config --variable=libdir tessera)" = "$lib" ] || fail "libdir variable"
[ "$(pkg-config --cflags tessera | xargs)" = "-I$prefix/include" ] || fail "cflags"
echo "== install test passed"
