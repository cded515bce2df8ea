"""Finding the shared library and checking its ABI version at import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import tessera
from tessera import _library


def run_import(env_updates: dict, code: str = "import tessera; print(tessera.LIBRARY_PATH)"):
    env = dict(os.environ)
    env.update(env_updates)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60)


def test_env_var_is_honoured() -> None:
    r = run_import({"TESSERA_LIBRARY": tessera.LIBRARY_PATH})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == tessera.LIBRARY_PATH


def test_env_var_is_authoritative_and_the_error_says_how_to_fix() -> None:
    r = run_import({"TESSERA_LIBRARY": "/nonexistent/libtessera.so"})
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr
    assert "/nonexistent/libtessera.so" in r.stderr and "no such file" in r.stderr
    assert "TESSERA_LIBRARY" in r.stderr and "pip install" in r.stderr


def test_error_lists_every_path_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [("bundled in the package", "/nope/a.so"), ("cargo release build", "/nope/b.so"),
            ("system library search", "find_library('tessera') found nothing")]
    monkeypatch.setattr(_library, "candidates", lambda: fake)
    with pytest.raises(tessera.LibraryNotFound) as info:
        _library.load()
    msg = str(info.value)
    assert all(p in msg for _, p in fake)
    assert isinstance(info.value, ImportError)


def test_search_order_without_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESSERA_LIBRARY", raising=False)
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)
    found = _library.candidates()
    kinds = [k for k, _ in found]
    assert kinds[0] == "bundled in the package"
    assert kinds[-1] == "system library search"
    root = _library.find_repo_root(_library.PACKAGE_DIR)
    if root is not None:  # a checkout (or a venv inside one): release before debug
        paths = [p for _, p in found]
        assert paths.index(str(root / "target" / "release" / _library.LIBRARY_FILE)) < paths.index(
            str(root / "target" / "debug" / _library.LIBRARY_FILE))


def test_not_a_tessera_library_is_refused() -> None:
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    if not os.path.isfile(libc):
        pytest.skip("no glibc at the usual path")
    r = run_import({"TESSERA_LIBRARY": libc})
    assert r.returncode != 0 and "tessera_abi_version" in r.stderr


def test_abi_version_mismatch_is_refused(tmp_path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("needs a C compiler")
    src = tmp_path / "fake.c"
    src.write_text("unsigned int tessera_abi_version(void) { return 999; }\n")
    so = tmp_path / "libfake.so"
    subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    r = run_import({"TESSERA_LIBRARY": str(so)})
    assert r.returncode != 0
    assert "AbiVersionMismatch" in r.stderr and "999" in r.stderr and str(so) in r.stderr


def test_missing_functions_are_named(tmp_path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("needs a C compiler")
    src = tmp_path / "old.c"
    src.write_text(f"unsigned int tessera_abi_version(void) {{ return {tessera.ABI_VERSION}; }}\n")
    so = tmp_path / "libold.so"
    subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    r = run_import({"TESSERA_LIBRARY": str(so)})
    assert r.returncode != 0 and "tessera_session_token_verify" in r.stderr


def test_bundled_copy_needs_no_environment(tmp_path) -> None:
    # Simulate an installed package: copy the package with the library inside it.
    pkg = tmp_path / "site" / "tessera"
    shutil.copytree(_library.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("_lib", "__pycache__"))
    (pkg / "_lib").mkdir()
    shutil.copy2(tessera.LIBRARY_PATH, pkg / "_lib" / _library.LIBRARY_FILE)
    env = {k: v for k, v in os.environ.items() if k not in ("TESSERA_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    code = textwrap.dedent("""
        import tessera
        print(tessera.LIBRARY_PATH)
        with tessera.Engine.in_memory() as e:
            e.create_user("u")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(pkg / "_lib" / _library.LIBRARY_FILE)


def test_installed_package_uses_its_bundled_library() -> None:
    # scripts/test-python.sh sets this: the suite then runs against the pip-installed package,
    # which must find the library it bundled, with no environment variable.
    if not os.environ.get("TESSERA_EXPECT_INSTALLED"):
        pytest.skip("not running against an installed package")
    assert "TESSERA_LIBRARY" not in os.environ
    assert "site-packages" in tessera.__file__
    assert tessera.LIBRARY_PATH == str(_library.BUNDLED_DIR / _library.LIBRARY_FILE)
    assert os.path.isfile(_library.PACKAGE_DIR / "py.typed")
