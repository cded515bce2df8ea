#!/usr/bin/env bash
# Installs the system tools the test suite needs when a fresh machine lacks them: a C/C++
# toolchain and make (C and C++ tests), binutils (nm, for the export-list test), pkg-config,
# and valgrind (leak check of the C tests).
set -euo pipefail
need=()
for tool in gcc:gcc g++:g++ make:make nm:binutils pkg-config:pkg-config valgrind:valgrind; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
