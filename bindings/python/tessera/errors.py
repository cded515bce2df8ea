"""The exception hierarchy: one class per Tessera status code, all under :class:`TesseraError`.

The numbers are the stable codes of ``docs/ERRORS.md`` (the Rust ``ErrorKind::code()`` and the
C ``tessera_status``). Codes 1..=99 come from the engine; 100..=199 belong to the C ABI itself
and derive from :class:`AbiError`. A code this version does not know (the library may be newer)
raises a plain :class:`TesseraError` carrying it, so ``except TesseraError`` always works.

Validation failures also derive from :class:`ValueError` and "no such thing" failures from
:class:`LookupError`, so code that only knows the standard exceptions still reads naturally.

Problems loading the library are not status codes: they raise :class:`LibraryNotFound` or
:class:`AbiVersionMismatch`, both :class:`ImportError` subclasses (they happen at import).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "TesseraError",
    "InvalidArgument",
    "InvalidUserId",
    "UserAlreadyExists",
    "UserNotFound",
    "UserDeactivated",
    "FieldTooLong",
    "InvalidField",
    "TooManyItems",
    "DiscoveryKeyTaken",
    "DeviceNotFound",
    "InvalidImage",
    "ImageTooLarge",
    "ImageNotFound",
    "InvalidToken",
    "TokenExpired",
    "TokenRevoked",
    "InvalidExpiry",
    "TokenRequired",
    "TokenNotFound",
    "KeyNotFound",
    "KeyActive",
    "Exhausted",
    "IoError",
    "Corrupt",
    "Locked",
    "UnsupportedFormat",
    "ReadOnly",
    "Unavailable",
    "InternalError",
    "AbiError",
    "NullPointer",
    "InvalidUtf8",
    "BufferTooSmall",
    "Panic",
    "InputTooLarge",
    "InvalidJson",
    "EngineClosed",
    "LibraryNotFound",
    "AbiVersionMismatch",
    "error_class",
]


class TesseraError(Exception):
    """A failed Tessera call: ``code`` is the stable numeric status, ``message`` the library's
    human-readable explanation (it never contains a secret)."""

    #: The status code of this class; a plain ``TesseraError`` carries the code it was given.
    CODE: int = -1

    def __init__(self, message: str = "", code: Optional[int] = None) -> None:
        self.code: int = self.CODE if code is None else code
        self.message: str = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} (tessera status {self.code})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:  # keep code and message when pickled
        return (_rebuild, (type(self), self.message, self.code))


def _rebuild(cls: Type[TesseraError], message: str, code: int) -> TesseraError:
    return cls(message, code)


# ----- engine codes (1..=99) ------------------------------------------------------------------


class InvalidArgument(TesseraError, ValueError):
    """1: a malformed argument not covered below (cursor, list limit, config value)."""

    CODE = 1


class InvalidUserId(TesseraError, ValueError):
    """2: the user id breaks the id policy (length, forbidden characters)."""

    CODE = 2


class UserAlreadyExists(TesseraError):
    """3: a user with this id already exists."""

    CODE = 3


class UserNotFound(TesseraError, LookupError):
    """4: no user has this id or handle (never the answer to a token check)."""

    CODE = 4


class UserDeactivated(TesseraError):
    """5: the user is deactivated."""

    CODE = 5


class FieldTooLong(TesseraError, ValueError):
    """6: a text field exceeds its limit."""

    CODE = 6


class InvalidField(TesseraError, ValueError):
    """7: a field has the wrong format (URL, e-mail, phone, JSON)."""

    CODE = 7


class TooManyItems(TesseraError, ValueError):
    """8: a list field has too many items (tags, discovery keys)."""

    CODE = 8


class DiscoveryKeyTaken(TesseraError):
    """9: a discovery key belongs to another user."""

    CODE = 9


class DeviceNotFound(TesseraError, LookupError):
    """10: no device with that push token."""

    CODE = 10


class InvalidImage(TesseraError, ValueError):
    """11: uploaded image is not PNG or JPEG."""

    CODE = 11


class ImageTooLarge(TesseraError, ValueError):
    """12: uploaded image exceeds the size limit."""

    CODE = 12


class ImageNotFound(TesseraError, LookupError):
    """13: no stored image has this content address."""

    CODE = 13


class InvalidToken(TesseraError):
    """20: not one of ours: malformed, forged, signed by a key id never issued, an unknown or
    revoked access token, or another user's valid token given to ``authenticate``."""

    CODE = 20


class TokenExpired(TesseraError):
    """21: genuine session token past its expiry."""

    CODE = 21


class TokenRevoked(TesseraError):
    """22: genuine session token revoked: the user's sessions revoked, its key retired, or its
    user deleted."""

    CODE = 22


class InvalidExpiry(TesseraError, ValueError):
    """23: requested expiry in the past or beyond the maximum."""

    CODE = 23


class TokenRequired(TesseraError):
    """24: the user must log in with a token."""

    CODE = 24


class TokenNotFound(TesseraError, LookupError):
    """25: the user has no access token with this id."""

    CODE = 25


class KeyNotFound(TesseraError, LookupError):
    """30: no live signing key with this id."""

    CODE = 30


class KeyActive(TesseraError):
    """31: the active key cannot be retired (rotate first)."""

    CODE = 31


class Exhausted(TesseraError):
    """40: a counter ran out (key ids, handles, session revocations of a user)."""

    CODE = 40


class IoError(TesseraError):
    """50: an operating-system I/O call failed (named so as not to shadow the builtin)."""

    CODE = 50


class Corrupt(TesseraError):
    """51: stored data failed its checksum or does not parse (a damaged or cut file header
    included)."""

    CODE = 51


class Locked(TesseraError):
    """52: another process holds the data directory."""

    CODE = 52


class UnsupportedFormat(TesseraError):
    """53: the data directory has an unknown (newer) format version: a file's header is intact
    but names a version this build does not read."""

    CODE = 53


class ReadOnly(TesseraError):
    """54: the engine was opened read-only (salvage)."""

    CODE = 54


class Unavailable(TesseraError):
    """55: a cluster node cannot vouch for its state (not caught up with the database for
    longer than its max_staleness, or the database unreachable for a write)."""

    CODE = 55


class InternalError(TesseraError):
    """99: a bug in Tessera."""

    CODE = 99


# ----- C ABI codes (100..=199) ----------------------------------------------------------------


class AbiError(TesseraError):
    """A status from the C ABI layer itself (100..=199). The binding is written so that
    these do not happen; seeing one points at a binding bug or an oversized input."""


class NullPointer(AbiError):
    """100: a required pointer was NULL."""

    CODE = 100


class InvalidUtf8(AbiError, ValueError):
    """101: a text argument is not valid UTF-8."""

    CODE = 101


class BufferTooSmall(AbiError):
    """102: an output buffer was too small (the binding retries with a larger one)."""

    CODE = 102


class Panic(AbiError):
    """103: Tessera panicked inside the call (a bug); the engine stays usable."""

    CODE = 103


class InputTooLarge(AbiError, ValueError):
    """104: an input is longer than the C ABI accepts (16 MiB)."""

    CODE = 104


class InvalidJson(AbiError, ValueError):
    """105: a JSON argument does not parse or has the wrong shape (an unknown field, a value of
    the wrong JSON type). A well-formed value that is not allowed (an unknown enum value)
    raises :class:`InvalidArgument` instead."""

    CODE = 105


# ----- binding-level errors (no status code) --------------------------------------------------


class EngineClosed(TesseraError):
    """The engine was closed; no further calls can be made on it."""

    CODE = 0


class LibraryNotFound(ImportError):
    """No loadable ``libtessera`` was found. The message lists every path tried and how to
    fix it."""


class AbiVersionMismatch(ImportError):
    """The loaded library speaks a different C ABI version than this binding was written
    for."""


_BY_CODE: Dict[int, Type[TesseraError]] = {
    cls.CODE: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, TesseraError) and cls.CODE > 0
}


def error_class(code: int) -> Type[TesseraError]:
    """The exception class for a status code; :class:`TesseraError` for unknown codes."""
    return _BY_CODE.get(code, TesseraError)
