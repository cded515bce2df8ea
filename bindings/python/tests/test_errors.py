"""The exception hierarchy mirrors docs/ERRORS.md and the C status codes."""

from __future__ import annotations

import pickle
import re

import pytest

import tessera
from tessera import _ffi, errors

from conftest import REPO

# The table of docs/ERRORS.md: code -> ErrorKind name (the Python class is the same name,
# except where the builtin-shadowing names are avoided).
RENAMED = {"Io": "IoError", "Internal": "InternalError"}
ABI_CODES = {
    100: "NullPointer",
    101: "InvalidUtf8",
    102: "BufferTooSmall",
    103: "Panic",
    104: "InputTooLarge",
    105: "InvalidJson",
}


def documented_codes() -> dict:
    text = (REPO / "docs" / "ERRORS.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(\w+)\s*\|", text, re.M)
    return {int(code): name for code, name in rows if name != "—"}


def test_every_documented_code_has_its_class() -> None:
    codes = documented_codes()
    assert len(codes) >= 28
    for code, kind in codes.items():
        cls = getattr(tessera, RENAMED.get(kind, kind))
        assert issubclass(cls, tessera.TesseraError)
        assert cls.CODE == code
        assert errors.error_class(code) is cls


@pytest.mark.parametrize("code,name", sorted(ABI_CODES.items()))
def test_abi_codes_have_classes_under_abi_error(code: int, name: str) -> None:
    cls = getattr(tessera, name)
    assert issubclass(cls, tessera.AbiError) and cls.CODE == code
    assert errors.error_class(code) is cls


def test_library_names_every_code_the_binding_knows() -> None:
    for code in list(documented_codes()) + list(ABI_CODES):
        assert _ffi.status_name(code) not in ("", "unknown status"), code
    assert _ffi.status_name(0) != "unknown status"
    assert _ffi.status_name(4_000_000) == "unknown status"
    assert tessera.status_str(22) == _ffi.status_name(22) != ""


def test_unknown_code_is_a_plain_tessera_error() -> None:
    e = errors.error_class(77)("from the future", 77)
    assert type(e) is tessera.TesseraError and e.code == 77 and e.message == "from the future"


def test_standard_exception_mixins() -> None:
    assert issubclass(tessera.FieldTooLong, ValueError)
    assert issubclass(tessera.UserNotFound, LookupError)
    assert not issubclass(tessera.TokenExpired, ValueError)


def test_error_carries_code_and_message_and_pickles(engine: tessera.Engine) -> None:
    with pytest.raises(tessera.UserNotFound) as info:
        engine.get_user("nobody")
    e = info.value
    assert e.code == 4 and "nobody" in e.message
    assert "status 4" in str(e) and "UserNotFound" in repr(e)
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is tessera.UserNotFound and (again.code, again.message) == (4, e.message)


def test_last_error_is_per_call_and_cleared(engine: tessera.Engine) -> None:
    with pytest.raises(tessera.UserNotFound):
        engine.get_user("nobody")
    engine.create_user("x")
    assert _ffi.last_error_message() == ""
