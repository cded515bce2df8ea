#!/usr/bin/env bash
# Python binding tests: builds the package exactly as a user would (`pip install
# ./bindings/python`, which runs `cargo build --release` and bundles libtessera inside the
# package), into a private venv, then runs its pytest suite against the installed copy with
# no TESSERA_LIBRARY set. Installs everything it needs (pytest, PyJWT) itself.
#
#   PYTHON=python3.12 ./scripts/test-python.sh     # pick the interpreter (default python3)
#   ./scripts/test-python.sh -k tokens            # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python3}
venv=${TESSERA_PY_VENV:-$root/target/py-venv}

if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  if ! "$python" -m venv "$venv"; then
    rm -rf "$venv"
    echo "error: '$python -m venv' failed; install the venv module (Debian/Ubuntu:" \
         "apt-get install python3-venv) or set PYTHON to another interpreter" >&2
    exit 1
  fi
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install 'pytest>=7' 'PyJWT>=2.8' 'mypy>=1.5'

echo "== pip install ./bindings/python (cargo build --release, library bundled)"
"${pip[@]}" install --force-reinstall --no-deps ./bindings/python

echo "== mypy --strict bindings/python/tessera (the package ships py.typed)"
"$venv/bin/python" -m mypy --strict --cache-dir "$root/target/py-mypy-cache" \
  "$root/bindings/python/tessera"

echo "== pytest bindings/python/tests"
unset TESSERA_LIBRARY
# Run from outside the source tree so `import tessera` is the installed package. pytest runs
# as `python -m pytest`: the venv's `pytest` script carries the absolute path of the python it
# was installed with, so a venv copied along with a target/ directory (as a worktree's warm
# target/ is) would run another venv's interpreter and test that venv's tessera.
cd "$root/target"
TESSERA_EXPECT_INSTALLED=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  --rootdir "$root/bindings/python" "$root/bindings/python/tests" "$@"
