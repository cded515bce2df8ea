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

#: Session tokens are 119..=168 characters; access tokens exactly 65.
SESSION_TOKEN_MIN_LEN = 119
SESSION_TOKEN_MAX_LEN = _ffi.SESSION_TOKEN_MAX_LEN
ACCESS_TOKEN_LEN = _ffi.ACCESS_TOKEN_LEN
ACCESS_TOKEN_PREFIX = "tsat_"



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
    *_errors_all,
    *_types_all,
]
