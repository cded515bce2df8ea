"""The C ABI layer under the Pythonic API: declarations, struct layouts, the buffer protocol
and the ABI's own status codes (NULL, bad UTF-8, too-small buffers, oversize input, bad JSON),
which the high-level API never produces."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from ctypes import byref, c_size_t

import pytest

import tessera
from tessera import _ffi
from tessera._ffi import lib

from conftest import REPO

HEADER = REPO / "include" / "tessera.h"


def raw_engine():
    out = _ffi.ENGINE_P()
    _ffi.check(lib.tessera_engine_open_in_memory(byref(out)))
    return out


def test_every_declared_function_has_types() -> None:
    for name in _ffi._FUNCTIONS:
        fn = getattr(lib, name)
        assert fn.argtypes is not None, name
        # Library-allocated memory is never read through a c_char_p result.
        assert fn.restype is not ctypes.c_char_p, name


def test_declarations_match_the_header() -> None:
    if not HEADER.is_file():
        pytest.skip("include/tessera.h not in this checkout")
    text = HEADER.read_text(encoding="utf-8")
    for name, (_, argtypes) in _ffi._FUNCTIONS.items():
        # A declaration starts a line (comments start with " *") and ends with ");".
        m = re.search(rf"^(?![ /])[^;\n]*\b{name}\(([^)]*)\);", text, re.M)
        assert m is not None, f"{name} is not declared in the header"
        params = m.group(1)
        n = 0 if params.strip() in ("", "void") else params.count(",") + 1
        assert n == len(argtypes), f"{name}: header has {n} parameters, binding {len(argtypes)}"


def test_constants_match_the_header() -> None:
    if not HEADER.is_file():
        pytest.skip("include/tessera.h not in this checkout")
    defines = dict(re.findall(r"^#define TESSERA_(\w+) (\d+)$", HEADER.read_text(encoding="utf-8"),
                              re.M))
    mirrored = {name: value for name, value in vars(_ffi).items()
                if name.isupper() and isinstance(value, int) and name in defines}
    # The limits callers need, here and re-exported by the package.
    limits = ("USER_ID_MAX_CHARS", "ACCESS_TOKENS_PER_USER_DEFAULT", "ACCESS_TOKENS_PER_USER_MAX",
              "SESSION_EPOCH_MAX", "SESSION_TOKEN_MIN_LEN", "SESSION_TOKEN_MAX_LEN",
              "ACCESS_TOKEN_LEN")
    assert set(limits) <= set(mirrored)
    for name, value in mirrored.items():
        assert value == int(defines[name]), f"_ffi.{name} = {value}, header: {defines[name]}"
    for name in limits:
        assert getattr(tessera, name) == int(defines[name]), name
        assert name in tessera.__all__


def test_struct_layouts_match_the_header(tmp_path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not HEADER.is_file():
        pytest.skip("needs a C compiler and include/tessera.h")
    structs = {
        "tessera_verified_session": _ffi.tessera_verified_session,
        "tessera_verified_access_token": _ffi.tessera_verified_access_token,
        "tessera_authenticated": _ffi.tessera_authenticated,
    }
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "tessera.h"', "int main(void) {"]
    for s, cls in structs.items():
        lines.append(f'printf("{s} %zu\\n", sizeof(struct {s}));')
        for f, _ in cls._fields_:
            lines.append(f'printf("{s}.{f} %zu\\n", offsetof(struct {s}, {f}));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", str(HEADER.parent), str(src), "-o", str(exe)], check=True)
    got = dict(l.split() for l in subprocess.run([str(exe)], capture_output=True, text=True,
                                                 check=True).stdout.splitlines())
    for s, cls in structs.items():
        assert int(got[s]) == ctypes.sizeof(cls), s
        for f, _ in cls._fields_:
            assert int(got[f"{s}.{f}"]) == getattr(cls, f).offset, f"{s}.{f}"


def test_buffer_protocol_grows_the_buffer() -> None:
    e = raw_engine()
    try:
        assert lib.tessera_user_get(e, b"nobody", 6, byref(_ffi.STRING_P())) == 4
        full = _ffi.last_error_message()
        assert "nobody" in full
        # Start from a 1-byte buffer: the helper must retry with the reported length.
        st, raw = _ffi.read_buffer(lib.tessera_last_error_message, (), 1)
        assert st == 0 and raw.decode() == full
        # A direct too-small call reports the length and leaves the message in place.
        n = c_size_t(0)
        buf = ctypes.create_string_buffer(4)
        assert lib.tessera_last_error_message(buf, 4, byref(n)) == _ffi.BUFFER_TOO_SMALL
        assert n.value == len(full.encode()) and buf.raw == b"\0" * 4
    finally:
        lib.tessera_engine_free(e)


def test_token_buffers_too_small_issue_nothing() -> None:
    e = raw_engine()
    try:
        out = _ffi.STRING_P()
        body = b'{"user_id":"u"}'
        _ffi.check(lib.tessera_user_create(e, body, len(body), None))
        n = c_size_t(0)
        buf = ctypes.create_string_buffer(10)
        st = lib.tessera_access_token_issue(e, b"u", 1, None, 0, buf, 10, byref(n), None, None, 0,
                                            None)
        assert st == tessera.BufferTooSmall.CODE and n.value == _ffi.ACCESS_TOKEN_LEN
        ids = (ctypes.c_uint64 * (_ffi.ACCESS_TOKENS_PER_USER_MAX - 1))()
        big = ctypes.create_string_buffer(_ffi.ACCESS_TOKEN_LEN + 1)
        st = lib.tessera_access_token_issue(e, b"u", 1, None, 0, big, len(big), byref(n), None,
                                            ids, len(ids), byref(n))
        assert st == tessera.BufferTooSmall.CODE and n.value == _ffi.ACCESS_TOKENS_PER_USER_MAX
        st = lib.tessera_session_token_issue(e, b"u", 1, 0, buf, 10, byref(n), None)
        assert st == tessera.BufferTooSmall.CODE and n.value == _ffi.SESSION_TOKEN_MAX_LEN
        _ffi.check(lib.tessera_access_token_list(e, b"u", 1, byref(out)))
        assert _ffi.take_string(out) == "[]"
    finally:
        lib.tessera_engine_free(e)


def test_abi_status_codes_raise_their_classes() -> None:
    e = raw_engine()
    out = _ffi.STRING_P()
    try:
        cases = [
            (tessera.NullPointer, lambda: lib.tessera_user_get(e, None, 5, byref(out))),
            (tessera.NullPointer, lambda: lib.tessera_user_get(None, b"u", 1, byref(out))),
            (tessera.NullPointer, lambda: lib.tessera_user_get(e, b"u", 1, None)),
            (tessera.InvalidUtf8, lambda: lib.tessera_user_get(e, b"\xff\xfe", 2, byref(out))),
            (tessera.InvalidJson, lambda: lib.tessera_user_create(e, b"{", 1, byref(out))),
            (tessera.InvalidJson, lambda: lib.tessera_user_create(e, b'{"nick":1}', 10, byref(out))),
            (tessera.InputTooLarge,
             lambda: lib.tessera_user_get(e, b"x" * (_ffi.MAX_INPUT_LEN + 1), _ffi.MAX_INPUT_LEN + 1,
                                          byref(out))),
        ]
        for cls, call in cases:
            st = call()
            with pytest.raises(cls) as info:
                _ffi.check(st)
            assert info.value.code == cls.CODE and info.value.message
        n = c_size_t(0)
        _ffi.check(lib.tessera_engine_user_count(e, byref(n)))
        assert n.value == 0  # nothing changed
    finally:
        lib.tessera_engine_free(e)


def test_free_functions_accept_null() -> None:
    lib.tessera_engine_free(None)
    lib.tessera_string_free(None)
    lib.tessera_bytes_free(None)
    assert lib.tessera_string_len(None) == 0 and lib.tessera_string_ptr(None) is None


def test_secret_buffers_are_wiped_after_copying_out() -> None:
    seen = []

    def fake_issue(buf, cap, out_len):
        seen.append(buf)
        secret = b"tsat_secret"
        if cap < len(secret) + 1:
            out_len._obj.value = len(secret)
            return _ffi.BUFFER_TOO_SMALL
        ctypes.memmove(buf, secret + b"\0", len(secret) + 1)
        out_len._obj.value = len(secret)
        return _ffi.OK

    st, raw = _ffi.read_buffer(fake_issue, (), 4, wipe=True)
    assert (st, raw) == (0, b"tsat_secret")
    assert len(seen) == 2  # grown once
    assert all(b.raw == b"\0" * len(b) for b in seen)
