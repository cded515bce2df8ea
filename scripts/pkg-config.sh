#!/usr/bin/env bash
# Writes tessera.pc from packaging/tessera.pc.in (or another template: tessera-static.pc.in).
#   scripts/pkg-config.sh PREFIX [LIBDIR] [INCLUDEDIR] [TEMPLATE] > tessera.pc
# scripts/install.sh uses it; by hand:
# For an installed library: scripts/pkg-config.sh /usr/local > /usr/local/lib/pkgconfig/tessera.pc
# For the build tree:       scripts/pkg-config.sh "$PWD" "$PWD/target/release" "$PWD/include"
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:?usage: scripts/pkg-config.sh PREFIX [LIBDIR] [INCLUDEDIR] [TEMPLATE]}"
libdir="${2:-\${prefix\}/lib}"
includedir="${3:-\${prefix\}/include}"
template="${4:-packaging/tessera.pc.in}"
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -n 1)
sed -e "s|@prefix@|$prefix|" -e "s|@libdir@|$libdir|" -e "s|@includedir@|$includedir|" \
    -e "s|@version@|$version|" "$template"
