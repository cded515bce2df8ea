"""The records Tessera returns, as frozen dataclasses, and its small enums.

Field names are those of the Rust types (``tessera::User``, ``tessera::Device``, ...), which
are also the JSON keys of the C ABI. Unknown JSON keys from a newer library are ignored, so a
newer ``libtessera`` does not break an older binding.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Type, TypeVar, Union

__all__ = [
    "DeviceType",
    "PushMode",
    "EventKind",
    "AuthMethod",
    "ImageFormat",
    "UserIdPolicy",
    "UserIdCase",
    "User",
    "Upserted",
    "UserPage",
    "Device",
    "DeviceAdded",
    "AccessTokenInfo",
    "IssuedAccessToken",
    "VerifiedAccessToken",
    "SessionToken",
    "VerifiedSession",
    "Authenticated",
    "KeyInfo",
    "StoreStats",
    "BackupStats",
    "Event",
    "ProfileImage",
]


class _StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class DeviceType(_StrEnum):
    """The platform of a push device."""

    WEB = "web"
    IOS = "ios"
    ANDROID = "android"


class PushMode(_StrEnum):
    """The push environment."""

    PRODUCTION = "production"
    SANDBOX = "sandbox"


class EventKind(_StrEnum):
    """What an event is about: a revocation, or a notice from the durable store. New kinds may
    appear in later library versions; an :class:`Event` of a kind this binding does not know
    carries the plain string."""

    ACCESS_TOKEN_EVICTED = "access_token_evicted"
    ACCESS_TOKEN_REVOKED = "access_token_revoked"
    ACCESS_TOKENS_REVOKED = "access_tokens_revoked"
    SESSIONS_REVOKED = "sessions_revoked"
    USER_DELETED = "user_deleted"
    USER_DEACTIVATED = "user_deactivated"
    KEY_RETIRED = "key_retired"
    ALL_SESSIONS_REVOKED = "all_sessions_revoked"
    #: Opening the data directory cut a torn tail (the end of a write that was never synced)
    #: off the journal; the sizes are in :meth:`tessera.Engine.store_stats`.
    STORE_TORN_TAIL = "store_torn_tail"


class AuthMethod(_StrEnum):
    """How :meth:`tessera.Engine.authenticate` accepted a login."""

    USER_ID_ONLY = "user_id_only"
    ACCESS_TOKEN = "access_token"
    SESSION_TOKEN = "session_token"


class ImageFormat(_StrEnum):
    """Format of an uploaded profile image."""

    PNG = "png"
    JPEG = "jpeg"


class UserIdPolicy(_StrEnum):
    """Characters allowed in user ids (``Config.user_id_policy``)."""

    DEFAULT = "default"
    STRICT = "strict"


class UserIdCase(_StrEnum):
    """Case handling of user ids (``Config.user_id_case``)."""

    PRESERVE = "preserve"
    LOWERCASE = "lowercase"


E = TypeVar("E", bound=enum.Enum)


def _enum(cls: Type[E], value: Any) -> Union[E, Any]:
    try:
        return cls(value)
    except ValueError:
        return value  # a value from a newer library: keep it rather than fail


T = TypeVar("T")


def _known(cls: Type[T], d: Mapping[str, Any]) -> Dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return {k: v for k, v in d.items() if k in names}


@dataclass(frozen=True)
class User:
    """A user as the engine stores it (``tessera::User``)."""

    user_id: str
    nickname: str = ""
    profile_url: Optional[str] = None
    metadata: Dict[str, Any] = field(default_factory=dict)
    tags: List[str] = field(default_factory=list)
    role: Optional[str] = None
    status_message: Optional[str] = None
    link: Optional[str] = None
    email: Optional[str] = None
    mobile_number: Optional[str] = None
    discovery_keys: List[str] = field(default_factory=list)
    is_active: bool = True
    created_at_ms: int = 0
    #: The internal handle (never reused, not secret): the subject (``sub``, as a decimal
    #: string) of the user's session tokens; :meth:`tessera.Engine.get_user_by_handle`
    #: finds the user from it.
    handle: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "User":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class Upserted:
    """Result of :meth:`~tessera.Engine.upsert_user`: the stored user and whether this call
    created it."""

    user: User
    created: bool


@dataclass(frozen=True)
class UserPage:
    """One page of :meth:`~tessera.Engine.list_users`, in creation order. Pass
    ``next_cursor`` as ``cursor`` for the next page; it is ``None`` on the last page."""

    users: List[User]
    next_cursor: Optional[str]


@dataclass(frozen=True)
class Device:
    """A registered push device (``tessera::Device``)."""

    device_type: Union[DeviceType, str]
    push_token: str
    voip_push_token: Optional[str] = None
    os_version: Optional[str] = None
    mode: Union[PushMode, str] = PushMode.PRODUCTION
    added_at_ms: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Device":
        kw = _known(cls, d)
        kw["device_type"] = _enum(DeviceType, kw["device_type"])
        if "mode" in kw:
            kw["mode"] = _enum(PushMode, kw["mode"])
        return cls(**kw)


@dataclass(frozen=True)
class DeviceAdded:
    """Result of :meth:`~tessera.Engine.add_device`: the stored device, and the oldest device
    of the same type if the per-type limit made the engine evict it."""

    device: Device
    evicted: Optional[Device]


@dataclass(frozen=True)
class AccessTokenInfo:
    """An access token's public facts (never its secret)."""

    id: int
    created_at_ms: int
    label: Optional[str] = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "AccessTokenInfo":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class IssuedAccessToken:
    """A newly issued access token. ``token`` is the secret: show it to the client once and
    drop it; Tessera keeps only its digest. It is left out of ``repr``."""

    token: str = field(repr=False)
    token_id: int
    label: Optional[str]
    #: Ids of the user's tokens revoked to stay within the per-user limit, oldest first: empty
    #: below it, one at it, more when the limit was lowered since they were issued.
    evicted: List[int]


# The results of the hot paths (verify, authenticate) are slotted, non-frozen dataclasses: a
# frozen dataclass's __init__ goes through object.__setattr__ per field and costs about 7x as
# much, which was the largest part of the binding's own overhead on verify.


@dataclass
class VerifiedAccessToken:
    """A valid access token's owner and id."""

    __slots__ = ("user_id", "token_id")
    user_id: str
    token_id: int


@dataclass(frozen=True)
class SessionToken:
    """A newly issued session token (an HS256 JWT of 119..=168 characters). ``token`` is
    left out of ``repr``."""

    token: str = field(repr=False)
    expires_at_ms: int


@dataclass
class VerifiedSession:
    """A valid session token's facts."""

    __slots__ = ("user_id", "issued_at_ms", "expires_at_ms", "key_id")
    user_id: str
    issued_at_ms: int
    expires_at_ms: int
    key_id: str


@dataclass
class Authenticated:
    """A successful login: ``token_id`` is set for access tokens, ``expires_at_ms`` for
    session tokens (both ``None`` otherwise)."""

    __slots__ = ("user_id", "method", "token_id", "expires_at_ms")
    user_id: str
    method: AuthMethod
    token_id: Optional[int]
    expires_at_ms: Optional[int]


@dataclass(frozen=True)
class KeyInfo:
    """A live signing key's public facts (never its secret)."""

    key_id: str
    created_at_ms: int
    active: bool

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "KeyInfo":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class StoreStats:
    """Journal counters of a durable engine since it was opened, and what the open found (all
    zero in memory; a salvage engine writes nothing, so only the torn tail fields can be
    non-zero). ``records_synced / syncs`` is how many writes shared each ``fdatasync``.
    ``torn_tail_bytes`` is the size of the torn tail (the last write, which was never fully
    synced) that open cut off the newest journal, 0 when it ended cleanly;
    ``torn_tail_records`` the records it held: the count in its batch header when that reached
    the disk intact, otherwise 1 (a lower bound); at least 1 whenever there was a tail.
    A cut also queues a ``STORE_TORN_TAIL`` event."""

    records_synced: int
    syncs: int
    bytes_written: int
    torn_tail_bytes: int = 0
    torn_tail_records: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "StoreStats":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class BackupStats:
    """What :meth:`tessera.Engine.backup_to` wrote: the users in the copy (the engine's count
    at the instant it was taken), and the files and bytes written."""

    users: int
    files: int
    bytes: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "BackupStats":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class Event:
    """One event (a revocation or a store notice), drained from the engine's queue. ``seq`` counts from 1 with no gaps
    except for events dropped because the queue was full."""

    seq: int
    kind: Union[EventKind, str]
    code: int
    user_id: Optional[str]
    token_id: Optional[int]
    key_id: Optional[str]
    at_ms: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Event":
        kw = _known(cls, d)
        kw["kind"] = _enum(EventKind, kw["kind"])
        for k in ("user_id", "token_id", "key_id"):
            kw.setdefault(k, None)
        return cls(**kw)


@dataclass(frozen=True)
class ProfileImage:
    """An uploaded profile image read back by its content address."""

    data: bytes = field(repr=False)
    content_type: str
    sha256_hex: str

    @property
    def format(self) -> Union[ImageFormat, str]:
        return _enum(ImageFormat, self.content_type.partition("/")[2])
