#!/usr/bin/env bash
# Installs the system tools the test suite needs when a fresh machine lacks them: a C/C++
# toolchain and make (C and C++ tests), binutils (nm, for the export-list test), pkg-config,
# and valgrind (leak check of the C tests), Python 3 with its venv module (the Python
# binding's tests create a venv and pip-install pytest, PyJWT and mypy into it), and PostgreSQL
# (scripts/with-postgres.sh runs the cluster-mode tests against a throwaway server; Debian puts
# its initdb in /usr/lib/postgresql/<version>/bin, off PATH, and creates the postgres user).
set -euo pipefail
need=()
for tool in gcc:gcc g++:g++ make:make nm:binutils pkg-config:pkg-config valgrind:valgrind; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  need+=(python3 python3-venv)
fi
if ! command -v initdb >/dev/null 2>&1 &&
  ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi
