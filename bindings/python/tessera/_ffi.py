"""Every C function the binding uses, with its ``argtypes`` and ``restype``, in one place.

Rules (``STYLE.md``, Python section):

- Each function of ``include/tessera.h`` that the binding calls is declared in ``_FUNCTIONS``
  below, exactly once, with the C types of the header.
- Nothing the library allocates for the caller is read through a ``c_char_p`` restype (the
  pointer would be lost and leak): library-owned strings are ``tessera_string *`` objects,
  read with ``tessera_string_ptr``/``_len`` and freed with ``tessera_string_free`` in a
  ``finally``. The only ``const char *`` results are static strings (version, status names,
  content types), and even those are read as ``c_void_p`` + ``string_at`` so the rule has no
  exception to remember.
- Text is encoded and decoded as UTF-8 explicitly, with lengths passed alongside (the C ABI
  takes ``(ptr, len)`` pairs, so NUL bytes need no special casing).
- Caller buffers follow the header's ``BUFFER_TOO_SMALL`` protocol through :func:`read_buffer`.
"""

from __future__ import annotations

import ctypes
import struct
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, Union

from . import _library
from .errors import AbiVersionMismatch, LibraryNotFound, TesseraError, error_class

#: The C ABI version this binding was written for (``TESSERA_ABI_VERSION`` in the header).
ABI_VERSION = 2

# Constants of include/tessera.h (the name there is TESSERA_ + the name here; test_ffi checks
# that every one of them equals the header's #define). Mirrored rather than read from the
# library at load time: they are plain numbers known before any library is loaded, the ones
# the C ABI has no function for would need new exports that only Python used, and a library
# whose limits differ from its header is refused anyway, since a C program built against the
# old header breaks too (TESSERA_ABI_VERSION).
OK = 0
BUFFER_TOO_SMALL = 102
ACCESS_TOKEN_LEN = 65
USER_ID_MAX_CHARS = 191
ACCESS_TOKENS_PER_USER_DEFAULT = 10
ACCESS_TOKENS_PER_USER_MAX = 100
SESSION_EPOCH_MAX = 99_999
SESSION_TOKEN_MIN_LEN = 119
SESSION_TOKEN_MAX_LEN = 168
USER_ID_BUF_SIZE = 765
KEY_ID_BUF_SIZE = 4
KEY_SECRET_LEN = 32
EVENT_DRAIN_MAX = 65536
MAX_INPUT_LEN = 16 * 1024 * 1024
AUTH_USER_ID_ONLY = 1
AUTH_ACCESS_TOKEN = 2
AUTH_SESSION_TOKEN = 3


# ----- opaque handles and result structs ------------------------------------------------------


class tessera_string(Structure):
    """Opaque library-owned UTF-8 string."""


class tessera_bytes(Structure):
    """Opaque library-owned byte buffer."""


class tessera_verified_session(Structure):
    _fields_ = [
        ("user_id", c_char * USER_ID_BUF_SIZE),
        ("user_id_len", c_size_t),
        ("issued_at_ms", c_int64),
        ("expires_at_ms", c_int64),
        ("key_id", c_char * KEY_ID_BUF_SIZE),
    ]


class tessera_verified_access_token(Structure):
    _fields_ = [
        ("user_id", c_char * USER_ID_BUF_SIZE),
        ("user_id_len", c_size_t),
        ("token_id", c_uint64),
    ]


class tessera_authenticated(Structure):
    _fields_ = [
        ("user_id", c_char * USER_ID_BUF_SIZE),
        ("user_id_len", c_size_t),
        ("method", c_uint32),
        ("token_id", c_uint64),
        ("expires_at_ms", c_int64),
    ]


# The engine handle crosses as a plain address (``c_void_p``; a Python int on our side), not
# as a ``POINTER`` to an opaque structure: an int is the cheapest argument ctypes converts, and
# a ``POINTER`` costs a type check per call. The type safety it would add is nil here: only
# ``_Handle`` holds engine addresses, and every call on one goes through it.
ENGINE_P = c_void_p
STRING_P = POINTER(tessera_string)


def _unpacker(
    ctype: Any, formats: Sequence[str], first_field: int = 0
) -> Callable[..., Tuple[Any, ...]]:
    """``struct.Struct(...).unpack_from`` reading the fields of the ctypes structure
    ``ctype`` from ``first_field`` on in one C call (five ctypes field reads cost about
    0.6 us; one unpack 0.3 us). ``formats`` gives one native ``struct`` code per field; the
    offsets are checked against ctypes' layout here, at import, so the two descriptions cannot
    drift apart. With ``first_field``, the caller passes that field's offset to the unpacker
    (which must be aligned for the format's native alignment, as checked here)."""
    fields = ctype._fields_[first_field:]
    if len(formats) != len(fields):
        raise AssertionError(f"{ctype.__name__}: {len(formats)} formats for {len(fields)} fields")
    base = getattr(ctype, fields[0][0]).offset
    if base % 8:
        raise AssertionError(f"{ctype.__name__}: unpacking from unaligned offset {base}")
    for i, (name, _) in enumerate(fields):
        prefix = "@" + "".join(formats[:i])
        # calcsize(prefix + f) - calcsize(f) is where field i starts, alignment included.
        offset = base + struct.calcsize(prefix + formats[i]) - struct.calcsize("@" + formats[i])
        if offset != getattr(ctype, name).offset:
            raise AssertionError(f"{ctype.__name__}.{name}: struct offset {offset} != "
                                 f"ctypes offset {getattr(ctype, name).offset}")
    layout = struct.Struct("@" + "".join(formats))
    if base + layout.size > ctypes.sizeof(ctype):
        raise AssertionError(f"{ctype.__name__}: struct layout larger than the ctypes one")
    return layout.unpack_from


#: ``(user_id bytes, user_id_len, issued_at_ms, expires_at_ms, key_id bytes)``
unpack_verified_session = _unpacker(
    tessera_verified_session, [f"{USER_ID_BUF_SIZE}s", "N", "q", "q", f"{KEY_ID_BUF_SIZE}s"]
)
#: Where ``user_id_len`` starts in ``tessera_verified_session``: the hot path unpacks only
#: the fields from there on (``unpack_verified_session_tail(struct, offset)``) and reads the
#: NUL-terminated id through ctypes, instead of copying the whole 765-byte id field.
VERIFIED_SESSION_TAIL_OFFSET = tessera_verified_session.user_id_len.offset
#: ``(user_id_len, issued_at_ms, expires_at_ms, key_id bytes)``
unpack_verified_session_tail = _unpacker(
    tessera_verified_session, ["N", "q", "q", f"{KEY_ID_BUF_SIZE}s"], first_field=1
)
#: ``(user_id bytes, user_id_len, token_id)``
unpack_verified_access_token = _unpacker(
    tessera_verified_access_token, [f"{USER_ID_BUF_SIZE}s", "N", "Q"]
)
#: ``(user_id bytes, user_id_len, method, token_id, expires_at_ms)``
unpack_authenticated = _unpacker(
    tessera_authenticated, [f"{USER_ID_BUF_SIZE}s", "N", "I", "Q", "q"]
)
BYTES_P = POINTER(tessera_bytes)
status = c_uint32  # tessera_status is a uint32_t in C
text = c_char_p  # `const char *` inputs: borrowed bytes, always paired with a length
size_p = POINTER(c_size_t)

# name -> (restype, argtypes). Mirrors include/tessera.h, in its order.
_FUNCTIONS: Dict[str, Tuple[Any, Sequence[Any]]] = {
    "tessera_last_error_message": (status, [c_void_p, c_size_t, size_p]),
    "tessera_access_token_issue": (
        status,
        [ENGINE_P, text, c_size_t, text, c_size_t, c_void_p, c_size_t, size_p,
         POINTER(c_uint64), POINTER(c_uint64), c_size_t, size_p],
    ),
    "tessera_access_token_verify": (
        status, [ENGINE_P, text, c_size_t, POINTER(tessera_verified_access_token)]
    ),
    "tessera_access_token_list": (status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]),
    "tessera_access_token_revoke": (status, [ENGINE_P, text, c_size_t, c_uint64]),
    "tessera_access_token_revoke_all": (status, [ENGINE_P, text, c_size_t, size_p]),
    "tessera_device_add": (
        status, [ENGINE_P, text, c_size_t, text, c_size_t, POINTER(STRING_P)]
    ),
    "tessera_device_list": (status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]),
    "tessera_device_remove": (
        status, [ENGINE_P, text, c_size_t, text, c_size_t, POINTER(STRING_P)]
    ),
    "tessera_engine_open_in_memory": (status, [POINTER(ENGINE_P)]),
    "tessera_engine_open_in_memory_with_config": (
        status, [text, c_size_t, POINTER(ENGINE_P)]
    ),
    "tessera_engine_open": (status, [text, c_size_t, text, c_size_t, POINTER(ENGINE_P)]),
    "tessera_engine_open_salvage": (
        status, [text, c_size_t, text, c_size_t, POINTER(ENGINE_P), POINTER(STRING_P)]
    ),
    "tessera_engine_open_postgres": (status, [text, c_size_t, text, c_size_t, POINTER(ENGINE_P)]),
    "tessera_engine_import_from": (status, [ENGINE_P, ENGINE_P, size_p]),
    "tessera_engine_compact": (status, [ENGINE_P]),
    "tessera_engine_backup_to": (status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]),
    "tessera_engine_store_stats": (status, [ENGINE_P, POINTER(STRING_P)]),
    "tessera_engine_free": (None, [ENGINE_P]),
    "tessera_engine_user_count": (status, [ENGINE_P, size_p]),
    "tessera_event_drain": (status, [ENGINE_P, c_size_t, POINTER(STRING_P)]),
    "tessera_event_dropped_count": (status, [ENGINE_P, POINTER(c_uint64)]),
    "tessera_key_rotate": (status, [ENGINE_P, POINTER(STRING_P)]),
    "tessera_key_retire": (status, [ENGINE_P, text, c_size_t]),
    "tessera_key_list": (status, [ENGINE_P, POINTER(STRING_P)]),
    "tessera_key_export": (status, [ENGINE_P, text, c_size_t, c_void_p]),
    "tessera_string_ptr": (c_void_p, [STRING_P]),
    "tessera_string_len": (c_size_t, [STRING_P]),
    "tessera_string_free": (None, [STRING_P]),
    "tessera_bytes_ptr": (c_void_p, [BYTES_P]),
    "tessera_bytes_len": (c_size_t, [BYTES_P]),
    "tessera_bytes_free": (None, [BYTES_P]),
    "tessera_profile_image_upload": (
        status, [ENGINE_P, text, c_size_t, text, c_size_t, POINTER(STRING_P)]
    ),
    "tessera_profile_image_get": (
        status, [ENGINE_P, text, c_size_t, POINTER(BYTES_P), POINTER(c_void_p)]
    ),
    "tessera_session_token_issue": (
        status,
        [ENGINE_P, text, c_size_t, c_int64, c_void_p, c_size_t, size_p, POINTER(c_int64)],
    ),
    "tessera_session_token_issue_default": (
        status, [ENGINE_P, text, c_size_t, c_void_p, c_size_t, size_p, POINTER(c_int64)]
    ),
    "tessera_session_token_verify": (
        status, [ENGINE_P, text, c_size_t, POINTER(tessera_verified_session)]
    ),
    "tessera_session_token_revoke": (status, [ENGINE_P, text, c_size_t]),
    "tessera_session_token_revoke_everyone": (status, [ENGINE_P]),
    "tessera_status_str": (c_void_p, [c_uint32]),  # static string
    "tessera_user_create": (status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]),
    "tessera_user_get_by_handle": (status, [ENGINE_P, c_uint64, POINTER(STRING_P)]),
    "tessera_user_upsert": (
        status, [ENGINE_P, text, c_size_t, POINTER(c_bool), POINTER(STRING_P)]
    ),
    "tessera_user_get": (status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]),
    "tessera_user_update": (
        status, [ENGINE_P, text, c_size_t, text, c_size_t, POINTER(STRING_P)]
    ),
    "tessera_user_delete": (status, [ENGINE_P, text, c_size_t]),
    "tessera_user_deactivate": (status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]),
    "tessera_user_reactivate": (status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]),
    "tessera_user_list": (status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]),
    "tessera_user_find_by_discovery_key": (
        status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]
    ),
    "tessera_user_find_by_push_token": (
        status, [ENGINE_P, text, c_size_t, POINTER(STRING_P)]
    ),
    "tessera_user_authenticate": (
        status, [ENGINE_P, text, c_size_t, text, c_size_t, POINTER(tessera_authenticated)]
    ),
    "tessera_version": (c_void_p, []),  # static string
    "tessera_version_number": (c_uint32, []),
    "tessera_abi_version": (c_uint32, []),
}

class _Lib:
    """The loaded library with every function declared; attributes are the C functions."""

    if TYPE_CHECKING:  # the functions are set from _FUNCTIONS at run time

        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, cdll: ctypes.CDLL, path: str) -> None:
        self.path = path
        self.cdll = cdll
        missing = []
        for name, (restype, argtypes) in _FUNCTIONS.items():
            try:
                fn = getattr(cdll, name)
            except AttributeError:
                missing.append(name)
                continue
            fn.restype = restype
            fn.argtypes = list(argtypes)
            setattr(self, name, fn)
        if missing:
            raise AbiVersionMismatch(
                f"the Tessera library at {path} lacks functions this binding needs: "
                + ", ".join(missing)
                + ". It is older than the binding; rebuild it (cargo build --release) or "
                "reinstall the package."
            )


def _load() -> _Lib:
    cdll, path = _library.load()
    try:
        abi = cdll.tessera_abi_version
    except AttributeError:
        raise LibraryNotFound(
            f"{path} loads but is not a Tessera library with a C ABI "
            "(no tessera_abi_version); point TESSERA_LIBRARY at libtessera"
        ) from None
    abi.restype = c_uint32
    abi.argtypes = []
    found = abi()
    if found != ABI_VERSION:
        raise AbiVersionMismatch(
            f"the Tessera library at {path} has C ABI version {found}, but this binding was "
            f"written for version {ABI_VERSION}; install the binding that matches the library "
            "(pip install <repo>/bindings/python builds both together)"
        )
    return _Lib(cdll, path)


lib = _load()


# ----- status handling ------------------------------------------------------------------------


def static_str(ptr: Optional[int]) -> str:
    """Decodes a static NUL-terminated string the library returned (never freed)."""
    return ctypes.string_at(ptr).decode("utf-8") if ptr else ""


def read_buffer(
    fn: Callable[..., int],
    args: Sequence[Any],
    initial_cap: int,
    *,
    tail: Sequence[Any] = (),
    wipe: bool = False,
) -> Tuple[int, bytes]:
    """Calls ``fn(*args, buf, cap, &out_len, *tail)`` following the header's buffer protocol.

    ``args`` holds the arguments before the ``(buf, cap, out_len)`` triple and ``tail`` those
    after it. On ``BUFFER_TOO_SMALL`` the call is repeated with a buffer of ``out_len + 1``
    bytes (the length may have grown in between, so it loops). Returns ``(status, bytes)``; on
    a failure other than ``BUFFER_TOO_SMALL`` the bytes are empty. With ``wipe`` every buffer
    is zeroed after copying out, for secrets.
    """
    cap = max(initial_cap, 1)
    while True:
        buf = ctypes.create_string_buffer(cap)
        out_len = c_size_t(0)
        try:
            st = fn(*args, buf, cap, ctypes.byref(out_len), *tail)
            if st == OK:
                return st, buf.raw[: out_len.value]
            if st != BUFFER_TOO_SMALL or out_len.value + 1 <= cap:
                return st, b""
            cap = out_len.value + 1
        finally:
            if wipe:
                ctypes.memset(buf, 0, cap)


def last_error_message() -> str:
    """The calling thread's last error message (empty when the last call succeeded)."""
    st, raw = read_buffer(lib.tessera_last_error_message, (), 256)
    if st != OK:
        return ""
    return raw.decode("utf-8", errors="replace")


def status_name(code: int) -> str:
    """``tessera_status_str(code)``: a short static name for any code."""
    return static_str(lib.tessera_status_str(code))


def error(code: int) -> TesseraError:
    """The exception for a failed call; reads the thread's last error message, so call it
    right after the failing call on the same thread."""
    message = last_error_message() or status_name(code)
    return error_class(code)(message, code)


def check(code: int) -> None:
    """Raises the matching exception when ``code`` is not ``TESSERA_OK``."""
    if code != OK:
        raise error(code)


def take_string(s: Any) -> str:
    """Reads and frees a library-owned ``tessera_string`` (the library zeroes it on free)."""
    try:
        ptr = lib.tessera_string_ptr(s)
        n = lib.tessera_string_len(s)
        return ctypes.string_at(ptr, n).decode("utf-8") if ptr else ""
    finally:
        lib.tessera_string_free(s)


def take_bytes(b: Any) -> bytes:
    """Reads and frees a library-owned ``tessera_bytes``."""
    try:
        ptr = lib.tessera_bytes_ptr(b)
        n = lib.tessera_bytes_len(b)
        return ctypes.string_at(ptr, n) if ptr and n else b""
    finally:
        lib.tessera_bytes_free(b)


def utf8(value: Union[str, bytes, bytearray, memoryview], what: str) -> bytes:
    """Encodes a ``str`` argument as UTF-8 (``bytes`` pass through, assumed UTF-8)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str, not {type(value).__name__}")
