"""Tessera: an embedded identity and token engine, through its C ABI.

>>> import tessera
>>> with tessera.Engine.in_memory() as engine:
...     _ = engine.create_user("alice", "Alice")
...     access = engine.issue_access_token("alice", label="phone")
...     engine.verify_access_token(access.token).user_id
'alice'

The shared library is found at import (see :mod:`tessera._library` for the order:
``$TESSERA_LIBRARY``, the copy bundled by ``pip install``, a cargo ``target/`` build, the
system) and its C ABI version is checked against :data:`ABI_VERSION`.
"""

from __future__ import annotations

from . import _ffi
from .engine import CONFIG_FIELDS, UNSET, Engine
from .errors import *  # noqa: F401,F403 - the exception hierarchy is part of the API
from .errors import __all__ as _errors_all
from .types import *  # noqa: F401,F403
from .types import __all__ as _types_all

#: The C ABI version this binding speaks (checked against the library at import).
ABI_VERSION: int = _ffi.ABI_VERSION
#: Path of the shared library that was loaded.
LIBRARY_PATH: str = _ffi.lib.path
#: Version of the loaded library, e.g. ``"0.1.0"``.
LIBRARY_VERSION: str = _ffi.static_str(_ffi.lib.tessera_version())
#: ``MAJOR * 1000000 + MINOR * 1000 + PATCH`` of the loaded library.
LIBRARY_VERSION_NUMBER: int = _ffi.lib.tessera_version_number()
#: Version of this Python package (it is built with the library of the same version).
__version__ = "0.1.0"

#: Shortest and longest possible session token, in characters (119 and 168).
SESSION_TOKEN_MIN_LEN: int = _ffi.SESSION_TOKEN_MIN_LEN
SESSION_TOKEN_MAX_LEN: int = _ffi.SESSION_TOKEN_MAX_LEN
#: Length of every access token, in characters (65), and the prefix they all start with.
ACCESS_TOKEN_LEN: int = _ffi.ACCESS_TOKEN_LEN
ACCESS_TOKEN_PREFIX = "tsat_"
#: Longest user id any configuration allows, in characters (191): the largest accepted
#: ``user_id_max_chars``.
USER_ID_MAX_CHARS: int = _ffi.USER_ID_MAX_CHARS
#: Default (10) and largest accepted (100) ``access_tokens_per_user``.
ACCESS_TOKENS_PER_USER_DEFAULT: int = _ffi.ACCESS_TOKENS_PER_USER_DEFAULT
ACCESS_TOKENS_PER_USER_MAX: int = _ffi.ACCESS_TOKENS_PER_USER_MAX
#: Largest session epoch (9999999): a user's sessions can be revoked this many times and new
#: session tokens still be issued; the revocation after that seals the user.
SESSION_EPOCH_MAX: int = _ffi.SESSION_EPOCH_MAX


def status_str(code: int) -> str:
    """The library's short static name for a status code (``tessera_status_str``), e.g.
    ``status_str(22) == "token revoked"``; ``"unknown status"`` for codes it does not know."""
    return _ffi.status_name(code)


__all__ = [
    "Engine",
    "status_str",
    "UNSET",
    "CONFIG_FIELDS",
    "ABI_VERSION",
    "LIBRARY_PATH",
    "LIBRARY_VERSION",
    "LIBRARY_VERSION_NUMBER",
    "SESSION_TOKEN_MIN_LEN",
    "SESSION_TOKEN_MAX_LEN",
    "ACCESS_TOKEN_LEN",
    "ACCESS_TOKEN_PREFIX",
    "USER_ID_MAX_CHARS",
    "ACCESS_TOKENS_PER_USER_DEFAULT",
    "ACCESS_TOKENS_PER_USER_MAX",
    "SESSION_EPOCH_MAX",
    *_errors_all,
    *_types_all,
]
