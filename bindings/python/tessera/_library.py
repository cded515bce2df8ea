"""Finding and loading the shared library.

Search order (the first that exists and loads wins):

1. ``TESSERA_LIBRARY``: an explicit path to the shared library. When it is set it is the
   only candidate, so a typo fails loudly instead of silently loading another copy.
2. The copy bundled inside the package (``tessera/_lib/``), put there by ``pip install``.
3. The cargo build of the repository this package sits in (a development checkout):
   ``$CARGO_TARGET_DIR`` then ``<repo>/target``, ``release`` before ``debug`` in each.
4. The system: ``ctypes.util.find_library("tessera")`` (``LD_LIBRARY_PATH``, ldconfig, ...).

When none loads, one :class:`~tessera.errors.LibraryNotFound` lists every path tried.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from .errors import LibraryNotFound

ENV_VAR = "TESSERA_LIBRARY"

#: Name of the shared library file cargo produces on this platform.
if sys.platform == "win32":
    LIBRARY_FILE = "tessera.dll"
elif sys.platform == "darwin":
    LIBRARY_FILE = "libtessera.dylib"
else:
    LIBRARY_FILE = "libtessera.so"

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "_lib"


def find_repo_root(start: Path) -> Optional[Path]:
    """The nearest ancestor of ``start`` holding the Tessera crate's ``Cargo.toml``."""
    for d in [start, *start.parents]:
        manifest = d / "Cargo.toml"
        if manifest.is_file():
            try:
                text = manifest.read_text(encoding="utf-8")
            except OSError:
                continue
            if 'name = "tessera"' in text:
                return d
    return None


def candidates() -> List[Tuple[str, str]]:
    """Every place to try, in order, as ``(description, path)``."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return [(f"${ENV_VAR}", explicit)]
    found: List[Tuple[str, str]] = [("bundled in the package", str(BUNDLED_DIR / LIBRARY_FILE))]
    root = find_repo_root(PACKAGE_DIR)
    if root is not None:
        target_dirs = []
        env_target = os.environ.get("CARGO_TARGET_DIR")
        if env_target:
            target_dirs.append(Path(env_target) if os.path.isabs(env_target) else root / env_target)
        target_dirs.append(root / "target")
        for t in dict.fromkeys(target_dirs):
            for profile in ("release", "debug"):
                found.append((f"cargo {profile} build", str(t / profile / LIBRARY_FILE)))
    system = ctypes.util.find_library("tessera")
    found.append(("system library search", system or "find_library('tessera') found nothing"))
    return found


def load() -> Tuple[ctypes.CDLL, str]:
    """Loads the first candidate that works; returns the library and its path."""
    tried: List[str] = []
    for what, path in candidates():
        is_name = what == "system library search"
        if not is_name and not os.path.isfile(path):
            tried.append(f"  - {path} ({what}): no such file")
            continue
        if is_name and "found nothing" in path:
            tried.append(f"  - {path}")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"  - {path} ({what}): {e}")
    raise LibraryNotFound(
        "cannot load the Tessera shared library; tried:\n"
        + "\n".join(tried)
        + "\nFix it with one of:\n"
        "  - pip install <tessera repo>/bindings/python   (builds and bundles the library; "
        "needs cargo)\n"
        "  - cargo build --release   (in the repository, for a development checkout)\n"
        f"  - export {ENV_VAR}=/path/to/{LIBRARY_FILE}"
    )
