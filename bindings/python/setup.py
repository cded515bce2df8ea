"""Build step of the Tessera Python package: compile the Rust library and bundle it.

``pip install ./bindings/python`` runs ``cargo build --release --lib`` in the repository root
and copies the resulting shared library to ``tessera/_lib/`` inside the wheel, so
``import tessera`` works with no environment variable.

Locating the repository root (pip may build from a temporary copy, e.g. via an sdist):

1. ``TESSERA_SOURCE_DIR``: the repository root, if set;
2. otherwise the nearest ancestor of this file's *real* path (symlinks resolved) whose
   ``Cargo.toml`` is the ``tessera`` crate (the normal case: pip builds a local directory in
   place).

``TESSERA_PREBUILT_LIBRARY=/path/to/libtessera.so`` skips cargo and bundles that file instead
(for packagers who built the library separately).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older setuptools: the `wheel` package
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

if sys.platform == "win32":
    LIBRARY_FILE = "tessera.dll"
elif sys.platform == "darwin":
    LIBRARY_FILE = "libtessera.dylib"
else:
    LIBRARY_FILE = "libtessera.so"


def repo_root() -> Path:
    env = os.environ.get("TESSERA_SOURCE_DIR")
    if env:
        root = Path(env).resolve()
        if not (root / "Cargo.toml").is_file():
            sys.exit(f"TESSERA_SOURCE_DIR={env} has no Cargo.toml")
        return root
    here = Path(os.path.realpath(__file__)).parent
    for d in [here, *here.parents]:
        manifest = d / "Cargo.toml"
        if manifest.is_file() and 'name = "tessera"' in manifest.read_text(encoding="utf-8"):
            return d
    sys.exit(
        f"cannot find the Tessera repository above {here} (building from a copy?). Set "
        "TESSERA_SOURCE_DIR to the repository root, or TESSERA_PREBUILT_LIBRARY to a built "
        f"{LIBRARY_FILE}."
    )


def cargo_build(root: Path) -> Path:
    """Runs cargo and returns the path of the cdylib it reports (honours CARGO_TARGET_DIR
    and .cargo/config, since the path comes from cargo's own artifact messages)."""
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        sys.exit(
            "building the tessera package needs the Rust toolchain (cargo) on PATH: "
            "https://rustup.rs — or set TESSERA_PREBUILT_LIBRARY"
        )
    cmd = [cargo, "build", "--release", "--lib", "--message-format=json-render-diagnostics"]
    print("tessera: running", " ".join(cmd), "in", root, flush=True)
    proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        sys.exit(f"cargo build failed with exit code {proc.returncode}")
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        if msg.get("target", {}).get("name") != "tessera":
            continue
        for f in msg.get("filenames", []):
            if os.path.basename(f) == LIBRARY_FILE:
                return Path(f)
    sys.exit(f"cargo build succeeded but reported no {LIBRARY_FILE}")


class BuildWithCargo(build_py):
    def run(self) -> None:
        super().run()
        prebuilt = os.environ.get("TESSERA_PREBUILT_LIBRARY")
        lib = Path(prebuilt) if prebuilt else cargo_build(repo_root())
        dest = Path(self.build_lib) / "tessera" / "_lib"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest / LIBRARY_FILE)
        print(f"tessera: bundled {lib} as {dest / LIBRARY_FILE}", flush=True)


class NativeDistribution(Distribution):
    """The package ships a native library: build it as platform-specific (platlib, a
    non-pure wheel) although it has no C extension module."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """It does not use the Python C API, so the wheel fits any Python 3 on the platform
    (``py3-none-<platform>``)."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    distclass=NativeDistribution,
    cmdclass={"build_py": BuildWithCargo, "bdist_wheel": PlatformWheel},
)
