#!/usr/bin/env bash
# Writes tessera.pc from packaging/tessera.pc.in.
#   scripts/pkg-config.sh PREFIX [LIBDIR] [INCLUDEDIR] > tessera.pc
# For an installed library: scripts/pkg-config.sh /usr/local > /usr/local/lib/pkgconfig/tessera.pc
# For the build tree:       scripts/pkg-config.sh "$PWD" "$PWD/target/release" "$PWD/include"
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:?usage: scripts/pkg-config.sh PREFIX [LIBDIR] [INCLUDEDIR]}"
libdir="${2:-\${prefix\}/lib}"
includedir="${3:-\${prefix\}/include}"
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -n 1)
sed -e "s|@prefix@|$prefix|" -e "s|@libdir@|$libdir|" -e "s|@includedir@|$includedir|" \
    -e "s|@version@|$version|" packaging/tessera.pc.in
