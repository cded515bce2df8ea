"""The :class:`Engine` handle."""

from __future__ import annotations

import json
import os
import sys
import threading
import weakref
from ctypes import byref, c_bool, c_int64, c_size_t, c_uint8, c_uint64, c_void_p, memset
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _ffi
from ._ffi import lib
from .errors import EngineClosed, TesseraError, error_class
from .types import (
    AccessTokenInfo,
    AuthMethod,
    Authenticated,
    BackupStats,
    Device,
    DeviceAdded,
    DeviceType,
    Event,
    IssuedAccessToken,
    KeyInfo,
    ProfileImage,
    PushMode,
    SessionToken,
    StoreStats,
    Upserted,
    User,
    UserPage,
    VerifiedAccessToken,
    VerifiedSession,
)

__all__ = ["Engine", "CONFIG_FIELDS"]

#: Every field of ``tessera::Config`` accepted as a keyword of :meth:`Engine.in_memory` and
#: :meth:`Engine.open` (defaults and limits are documented on the Rust type).
CONFIG_FIELDS = frozenset(
    {
        "user_id_max_chars",
        "user_id_policy",
        "user_id_case",
        "nickname_max_chars",
        "profile_url_max_chars",
        "metadata_max_bytes",
        "tags_max",
        "tag_max_chars",
        "role_max_chars",
        "status_message_max_chars",
        "link_max_chars",
        "email_max_chars",
        "mobile_max_digits",
        "discovery_keys_max",
        "discovery_key_max_chars",
        "devices_per_type_max",
        "push_token_max_chars",
        "os_version_max_chars",
        "profile_image_max_bytes",
        "image_url_base",
        "access_tokens_per_user",
        "access_token_label_max_chars",
        "session_ttl_ms",
        "session_max_ttl_ms",
        "clock_skew_ms",
        "allow_id_only_login",
        "event_queue_capacity",
    }
)

# Fields of a user patch that can be cleared (``None`` in Python, ``null`` in JSON).
_CLEARABLE = ("profile_url", "role", "status_message", "link", "email", "mobile_number")


class _Unset:
    """Marker for "leave this field alone" in :meth:`Engine.update_user`."""

    _instance: Optional["_Unset"] = None

    def __new__(cls) -> "_Unset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def _config_json(config: Mapping[str, Any], sync_mode: Any = None) -> bytes:
    unknown = sorted(set(config) - CONFIG_FIELDS)
    if unknown:
        raise TypeError(f"unknown Tessera config field(s): {', '.join(unknown)}")
    d = {k: (str(v) if k in ("user_id_policy", "user_id_case") else v)
         for k, v in config.items()}
    if sync_mode is not None:
        d["sync_mode"] = dict(sync_mode) if isinstance(sync_mode, Mapping) else sync_mode
    return _json(d)


def _dir_arg(path: Union[str, "os.PathLike[str]"]) -> bytes:
    # The C ABI takes UTF-8 paths; a path that is not UTF-8 (surrogate-escaped bytes) fails
    # there with InvalidUtf8 rather than being guessed at here.
    return os.fsencode(os.fspath(path))


class _Handle:
    """The C handle plus the bookkeeping that makes ``close()`` safe against concurrent calls.

    Every call appends to ``inflight`` before it looks at ``closed``, runs the C function, and
    pops when done. ``close()`` sets ``closed`` before it looks at ``inflight``, and frees the
    engine only once ``inflight`` is empty. A call that appended before ``close()`` looked is
    waited for; a call that appends after it sees ``closed`` and raises
    :class:`~tessera.EngineClosed`. So no call races ``tessera_engine_free``, which the header
    forbids. The finalizer holds this object, not the :class:`Engine`.

    Why a list and not a lock-protected counter: ``list.append``/``list.pop`` are each one
    atomic operation (under the GIL; under a per-list lock in free-threaded builds, whose
    acquire/release ordering is all the handshake above needs), so the per-call cost is two
    C-level list operations (about 0.1 us) instead of two lock round trips plus attribute
    updates (about 0.7 us of a verify). The entries carry no meaning, only their number.
    ``lock`` serialises ``close()`` callers; ``idle`` is set by the last call to leave a
    closed handle.
    """

    __slots__ = ("ptr", "inflight", "closed", "lock", "idle", "__weakref__")

    def __init__(self, ptr: Optional[int]) -> None:
        self.ptr = ptr
        self.inflight: List[None] = []
        self.closed = False
        self.lock = threading.Lock()
        self.idle = threading.Event()

    def enter(self) -> Optional[int]:
        self.inflight.append(None)
        if self.closed:
            self.leave()
            raise EngineClosed("the engine is closed")
        return self.ptr

    def leave(self) -> None:
        inflight = self.inflight
        inflight.pop()
        if self.closed and not inflight:
            self.idle.set()

    def close(self, wait: bool = True) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.inflight:
                if not wait:
                    # Interpreter shutdown with daemon threads still inside a call: leak the
                    # engine (the process is ending) rather than free memory in use.
                    return
                self.idle.wait()
            ptr, self.ptr = self.ptr, None
            lib.tessera_engine_free(ptr)


def _finalize(handle: _Handle) -> None:
    # At interpreter exit daemon threads may still be inside a call; never wait for them.
    handle.close(wait=not sys.is_finalizing())


class Engine:
    """An identity and token engine.

    Open one with :meth:`in_memory` (or :meth:`open` for a durable data directory) and use it
    as a context manager, or call :meth:`close` (idempotent) when done; a forgotten engine is
    freed by the garbage collector or at interpreter exit. An engine may be used from any
    number of threads at once: calls release the GIL and run in parallel in Rust.

    Methods take the same names as the Rust API (``tessera::Engine``) and raise a subclass of
    :class:`tessera.TesseraError` carrying the stable code and message.

    >>> import tessera
    >>> with tessera.Engine.in_memory() as engine:
    ...     _ = engine.create_user("alice", "Alice")
    ...     session = engine.issue_session_token("alice")
    ...     engine.verify_session_token(session.token).user_id
    'alice'
    """

    __slots__ = ("_h", "_finalizer", "__weakref__")

    def __init__(self, _ptr: Any) -> None:
        """Use :meth:`in_memory` or :meth:`open`."""
        # A c_void_p out-parameter (or an address) from one of the open functions.
        self._h = _Handle(_ptr.value if isinstance(_ptr, c_void_p) else _ptr)
        self._finalizer = weakref.finalize(self, _finalize, self._h)

    # ----- lifecycle ----------------------------------------------------------------------

    @classmethod
    def in_memory(cls, **config: Any) -> "Engine":
        """An engine whose state lives only in memory. Keyword arguments set fields of
        ``tessera::Config`` by name (``allow_id_only_login=True``, ``access_tokens_per_user=20``,
        ``user_id_policy="strict"``, ...); out-of-range values raise
        :class:`~tessera.InvalidArgument`, unknown names :class:`TypeError`."""
        out = _ffi.ENGINE_P()
        if config:
            cfg = _config_json(config)
            _ffi.check(lib.tessera_engine_open_in_memory_with_config(cfg, len(cfg), byref(out)))
        else:
            _ffi.check(lib.tessera_engine_open_in_memory(byref(out)))
        return cls(out)

    @classmethod
    def open(
        cls,
        path: Union[str, "os.PathLike[str]"],
        *,
        sync_mode: Union[str, Mapping[str, int], None] = None,
        **config: Any,
    ) -> "Engine":
        """Opens (creating it if needed) a durable engine in the data directory ``path``.

        ``sync_mode`` is ``"durable"`` (the default: a write returns once it is synced to
        disk, concurrent writers sharing syncs) or ``{"relaxed_ms": N}`` with N in 1..=60000
        (writes are synced in the background every N ms; a crash loses at most the last N ms).
        Other keywords are configuration fields, as for :meth:`in_memory`.

        Raises :class:`~tessera.Locked` when another engine (in this process or another) has
        the directory open, :class:`~tessera.Corrupt` when stored data is damaged (see
        :meth:`open_salvage`), :class:`~tessera.IoError` and
        :class:`~tessera.UnsupportedFormat`."""
        p = _dir_arg(path)
        cfg = _config_json(config, sync_mode) if config or sync_mode is not None else None
        out = _ffi.ENGINE_P()
        _ffi.check(lib.tessera_engine_open(p, len(p), cfg, len(cfg) if cfg else 0, byref(out)))
        return cls(out)

    @classmethod
    def open_postgres(
        cls,
        dsn: str,
        *,
        max_staleness_ms: Optional[int] = 5000,
        poll_interval_ms: int = 100,
        log_retention: int = 100_000,
        **config: Any,
    ) -> "Engine":
        """Opens a cluster node on the PostgreSQL database ``dsn`` (``"host=... dbname=..."``
        or a ``postgresql://`` URL), shared by every node of the service. Writes return once
        committed in PostgreSQL; reads and verification are served from this node's memory,
        which follows what other nodes commit within milliseconds.

        ``max_staleness_ms``: past this long without confirming it is caught up with the
        database, the node refuses verification with :class:`~tessera.Unavailable` rather
        than accept a token that may have been revoked elsewhere; ``None`` keeps verifying
        from memory through a partition. Other keywords are configuration fields, as for
        :meth:`in_memory`.

        Raises :class:`~tessera.Unavailable` when the database cannot be reached,
        :class:`~tessera.UnsupportedFormat` for a newer schema, and
        :class:`~tessera.InvalidArgument` for a malformed ``dsn`` or option."""
        if not isinstance(dsn, str):
            raise TypeError(f"dsn must be str, not {type(dsn).__name__}")
        for name, value in (("poll_interval_ms", poll_interval_ms),
                            ("log_retention", log_retention),
                            ("max_staleness_ms", max_staleness_ms)):
            if value is None and name == "max_staleness_ms":
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be int, not {type(value).__name__}")
            _u64(value, name)
        unknown = sorted(set(config) - CONFIG_FIELDS)
        if unknown:
            raise TypeError(f"unknown Tessera config field(s): {', '.join(unknown)}")
        d = {k: (str(v) if k in ("user_id_policy", "user_id_case") else v)
             for k, v in config.items()}
        d["cluster"] = {
            "max_staleness_ms": max_staleness_ms,
            "poll_interval_ms": poll_interval_ms,
            "log_retention": log_retention,
        }
        cfg = _json(d)
        conninfo = dsn.encode("utf-8", "surrogatepass")
        out = _ffi.ENGINE_P()
        _ffi.check(lib.tessera_engine_open_postgres(
            conninfo, len(conninfo), cfg, len(cfg), byref(out)))
        return cls(out)

    def import_from(self, source: "Engine") -> int:
        """Copies the whole state of ``source`` (users, access tokens, devices, session epochs,
        profile images, signing keys and id counters) into this engine, which must be new (no
        user ever created: otherwise :class:`~tessera.InvalidArgument`). Returns the number of
        users. ``Engine.open_postgres(dsn).import_from(Engine.open(path))`` moves a data
        directory into a cluster; the other way round backs a cluster up."""
        if not isinstance(source, Engine):
            raise TypeError(f"source must be a tessera.Engine, not {type(source).__name__}")
        users = c_size_t(0)
        src = source._h.enter()
        try:
            self._call(lib.tessera_engine_import_from, src, byref(users))
        finally:
            source._h.leave()
        return users.value

    @classmethod
    def open_salvage(
        cls, path: Union[str, "os.PathLike[str]"], **config: Any
    ) -> Tuple["Engine", Optional[TesseraError]]:
        """Opens a damaged data directory read-only: every record before the first damaged one
        is loaded, nothing on disk changes, and every write raises :class:`~tessera.ReadOnly`.
        Returns the engine and the damage that stopped loading (a :class:`~tessera.Corrupt`
        carrying the file and offset), or ``None`` when the directory was intact. Several
        salvage engines may share a directory; a read-write :meth:`open` may not
        (:class:`~tessera.Locked`)."""
        p = _dir_arg(path)
        cfg = _config_json(config) if config else None
        out = _ffi.ENGINE_P()
        damage = _ffi.STRING_P()
        _ffi.check(lib.tessera_engine_open_salvage(
            p, len(p), cfg, len(cfg) if cfg else 0, byref(out), byref(damage)))
        engine = cls(out)
        if not damage:
            return engine, None
        d = json.loads(_ffi.take_string(damage))
        return engine, error_class(d["code"])(d["message"], d["code"])

    def close(self) -> None:
        """Frees the engine, after waiting for calls in flight on other threads. Idempotent;
        any later call raises :class:`~tessera.EngineClosed`."""
        self._h.close()
        self._finalizer.detach()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._h.closed

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tessera.Engine {'closed' if self._h.closed else 'open'}>"

    def compact(self) -> None:
        """Writes a snapshot and starts a fresh journal so the next open replays less (durable
        engines also do this on their own); does nothing in memory. Raises
        :class:`~tessera.ReadOnly` on a salvage engine."""
        self._call(lib.tessera_engine_compact)

    def backup_to(self, path: Union[str, "os.PathLike[str]"]) -> BackupStats:
        """Writes a consistent copy of the engine's state into the directory ``path`` while
        other threads keep reading and writing; the copy opens with :meth:`open` like any data
        directory. ``path`` must not exist or be an empty directory (its parent is created if
        missing). The copy is the state at one instant during the call, with the signing keys
        and profile images. A durable engine pauses writers only to start a new journal; an
        in-memory or cluster engine is copied into a new data directory from a copy-on-write
        cut of its state, writers going on. The copy is built beside ``path`` and
        renamed into place last, so a crash never leaves a partial backup at ``path``.

        Raises :class:`~tessera.InvalidArgument` when ``path`` exists and is not an empty
        directory (it is left as it was), :class:`~tessera.IoError` when a file cannot be
        written, :class:`~tessera.Corrupt` when a stored image or journal is damaged."""
        p = _dir_arg(path)
        return BackupStats.from_json(self._call_string(lib.tessera_engine_backup_to, p, len(p)))

    def store_stats(self) -> StoreStats:
        """Journal counters since the engine was opened, and the torn tail the open cut off
        the journal, if any (all zero in memory)."""
        return StoreStats.from_json(self._call_string(lib.tessera_engine_store_stats))

    # ----- call plumbing ------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any) -> None:
        ptr = self._h.enter()
        try:
            st = fn(ptr, *args)
            if st:
                raise _ffi.error(st)
        finally:
            self._h.leave()

    def _call_string(self, fn: Any, *args: Any) -> Any:
        """Calls a function whose last argument is a ``tessera_string **`` and decodes it."""
        out = _ffi.STRING_P()
        self._call(fn, *args, byref(out))
        return json.loads(_ffi.take_string(out))

    # ----- users --------------------------------------------------------------------------

    def create_user(
        self,
        user_id: str,
        nickname: str = "",
        *,
        profile_url: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        tags: Optional[Sequence[str]] = None,
        role: Optional[str] = None,
        status_message: Optional[str] = None,
        link: Optional[str] = None,
        email: Optional[str] = None,
        mobile_number: Optional[str] = None,
        discovery_keys: Optional[Sequence[str]] = None,
    ) -> User:
        """Creates a user (``NewUser`` fields as keywords). Raises
        :class:`~tessera.UserAlreadyExists` when the id is taken, or a field error
        (:class:`~tessera.InvalidUserId`, :class:`~tessera.FieldTooLong`, ...)."""
        body = _new_user(locals())
        return User.from_json(self._call_string(lib.tessera_user_create, body, len(body)))

    def upsert_user(
        self,
        user_id: str,
        nickname: str = "",
        *,
        profile_url: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        tags: Optional[Sequence[str]] = None,
        role: Optional[str] = None,
        status_message: Optional[str] = None,
        link: Optional[str] = None,
        email: Optional[str] = None,
        mobile_number: Optional[str] = None,
        discovery_keys: Optional[Sequence[str]] = None,
    ) -> Upserted:
        """Creates a user, or returns the existing one with that id unchanged."""
        body = _new_user(locals())
        created = c_bool(False)
        d = self._call_string(lib.tessera_user_upsert, body, len(body), byref(created))
        return Upserted(User.from_json(d), bool(created.value))

    def get_user(self, user_id: str) -> User:
        """The user with this id; :class:`~tessera.UserNotFound` if none."""
        u = _ffi.utf8(user_id, "user_id")
        return User.from_json(self._call_string(lib.tessera_user_get, u, len(u)))

    def get_user_by_handle(self, handle: int) -> User:
        """The user with this :attr:`~tessera.User.handle`, which is the ``sub`` claim of its
        session tokens (as a decimal string): a service that verified a token with an
        exported key (:meth:`export_key`) resolves its subject here. Handles are never
        reused: :class:`~tessera.UserNotFound` for a deleted user's handle, even when a new
        user has its id. ``ValueError`` for a value outside 0..2**64-1."""
        return User.from_json(
            self._call_string(lib.tessera_user_get_by_handle, _u64(handle, "handle"))
        )

    def update_user(
        self,
        user_id: str,
        *,
        nickname: Any = UNSET,
        profile_url: Any = UNSET,
        metadata: Any = UNSET,
        tags: Any = UNSET,
        role: Any = UNSET,
        status_message: Any = UNSET,
        link: Any = UNSET,
        email: Any = UNSET,
        mobile_number: Any = UNSET,
        discovery_keys: Any = UNSET,
    ) -> User:
        """Changes the fields given, all or nothing (``UserPatch``). An omitted field is left
        alone; ``None`` clears ``profile_url``, ``role``, ``status_message``, ``link``,
        ``email`` and ``mobile_number``; an empty dict/list clears ``metadata``, ``tags`` and
        ``discovery_keys``."""
        fields = dict(locals())
        del fields["self"], fields["user_id"]
        patch: Dict[str, Any] = {}
        for name, value in fields.items():
            if value is UNSET:
                continue
            if value is None and name not in _CLEARABLE:
                raise TypeError(f"{name} cannot be None (it cannot be cleared)")
            if value is not None:
                _check_user_field(name, value)
            patch[name] = _plain(value)
        u = _ffi.utf8(user_id, "user_id")
        body = _json(patch)
        return User.from_json(
            self._call_string(lib.tessera_user_update, u, len(u), body, len(body))
        )

    def delete_user(self, user_id: str) -> None:
        """Deletes a user and revokes everything it held (a ``user_deleted`` event)."""
        u = _ffi.utf8(user_id, "user_id")
        self._call(lib.tessera_user_delete, u, len(u))

    def deactivate_user(self, user_id: str) -> User:
        """Deactivates a user: its tokens stop verifying until it is reactivated."""
        u = _ffi.utf8(user_id, "user_id")
        return User.from_json(self._call_string(lib.tessera_user_deactivate, u, len(u)))

    def reactivate_user(self, user_id: str) -> User:
        """Reactivates a deactivated user; its unrevoked tokens verify again."""
        u = _ffi.utf8(user_id, "user_id")
        return User.from_json(self._call_string(lib.tessera_user_reactivate, u, len(u)))

    def list_users(
        self,
        *,
        limit: int = 20,
        cursor: Optional[str] = None,
        user_ids: Optional[Sequence[str]] = None,
        nickname_prefix: Optional[str] = None,
        metadata_key: Optional[str] = None,
        metadata_value: Optional[str] = None,
        tag: Optional[str] = None,
        active: Optional[bool] = None,
    ) -> UserPage:
        """One page of users in creation order (``UserQuery``); every filter given must
        match. ``limit`` is 1..=100."""
        args = dict(locals())
        del args["self"]
        body = _json({k: _plain(v) for k, v in args.items() if v is not None})
        d = self._call_string(lib.tessera_user_list, body, len(body))
        return UserPage([User.from_json(u) for u in d["users"]], d.get("next_cursor"))

    def iter_users(self, *, page_size: int = 100, **filters: Any) -> Iterator[User]:
        """Every user matching the filters of :meth:`list_users`, following cursors."""
        cursor = None
        while True:
            page = self.list_users(limit=page_size, cursor=cursor, **filters)
            yield from page.users
            cursor = page.next_cursor
            if cursor is None:
                return

    def find_user_by_discovery_key(self, key: str) -> User:
        """The user holding a discovery key; :class:`~tessera.UserNotFound` if none."""
        k = _ffi.utf8(key, "key")
        return User.from_json(
            self._call_string(lib.tessera_user_find_by_discovery_key, k, len(k))
        )

    def find_user_by_push_token(self, push_token: str) -> User:
        """The user owning a device push token; :class:`~tessera.DeviceNotFound` if none."""
        t = _ffi.utf8(push_token, "push_token")
        return User.from_json(self._call_string(lib.tessera_user_find_by_push_token, t, len(t)))

    def user_count(self) -> int:
        """Number of users."""
        n = c_size_t(0)
        self._call(lib.tessera_engine_user_count, byref(n))
        return n.value

    # ----- profile images -----------------------------------------------------------------

    def set_profile_image(self, user_id: str, bytes: Union[bytes, bytearray, memoryview]) -> User:
        """Stores a PNG or JPEG upload (checked by magic number) and points the user's
        ``profile_url`` at it. Raises :class:`~tessera.InvalidImage` or
        :class:`~tessera.ImageTooLarge` (default limit 5 MiB)."""
        if isinstance(bytes, str):
            raise TypeError("bytes must be bytes-like (the image file's content), not str")
        data = _ffi.utf8(bytes, "bytes")
        u = _ffi.utf8(user_id, "user_id")
        return User.from_json(
            self._call_string(lib.tessera_profile_image_upload, u, len(u), data, len(data))
        )

    def profile_image(self, sha256_hex: str) -> ProfileImage:
        """Reads an uploaded image by its SHA-256 (hex, as in the engine URL); raises
        :class:`~tessera.ImageNotFound` when no image has it."""
        h = _ffi.utf8(sha256_hex, "sha256_hex")
        out = _ffi.BYTES_P()
        ctype = c_void_p()
        self._call(lib.tessera_profile_image_get, h, len(h), byref(out), byref(ctype))
        data = _ffi.take_bytes(out)
        return ProfileImage(data, _ffi.static_str(ctype.value), h.decode("utf-8"))

    # ----- devices ------------------------------------------------------------------------

    def add_device(
        self,
        user_id: str,
        device_type: Union[DeviceType, str],
        push_token: str,
        *,
        voip_push_token: Optional[str] = None,
        os_version: Optional[str] = None,
        mode: Union[PushMode, str] = PushMode.PRODUCTION,
    ) -> DeviceAdded:
        """Registers a push device (``NewDevice``). Past the per-type limit the oldest device
        of that type is evicted and returned in ``evicted``."""
        new: Dict[str, Any] = {
            "device_type": str(DeviceType(device_type)),
            "push_token": push_token,
            "mode": str(PushMode(mode)),
        }
        if voip_push_token is not None:
            new["voip_push_token"] = voip_push_token
        if os_version is not None:
            new["os_version"] = os_version
        u = _ffi.utf8(user_id, "user_id")
        body = _json(new)
        d = self._call_string(lib.tessera_device_add, u, len(u), body, len(body))
        ev = d.get("evicted")
        return DeviceAdded(Device.from_json(d["device"]), Device.from_json(ev) if ev else None)

    def list_devices(self, user_id: str) -> List[Device]:
        """The user's devices, oldest first."""
        u = _ffi.utf8(user_id, "user_id")
        return [Device.from_json(d) for d in self._call_string(lib.tessera_device_list, u, len(u))]

    def remove_device(self, user_id: str, push_token: str) -> Device:
        """Removes and returns the user's device with this push token;
        :class:`~tessera.DeviceNotFound` if it has none."""
        u = _ffi.utf8(user_id, "user_id")
        t = _ffi.utf8(push_token, "push_token")
        return Device.from_json(
            self._call_string(lib.tessera_device_remove, u, len(u), t, len(t))
        )

    # ----- access tokens ------------------------------------------------------------------

    def issue_access_token(self, user_id: str, label: Optional[str] = None) -> IssuedAccessToken:
        """Issues a permanent access token (``tsat_…``, 65 characters). If the user already
        holds ``access_tokens_per_user`` tokens (default 10), the oldest are revoked so that it
        holds exactly that many afterwards, and their ids are in ``evicted``, oldest first: one
        normally, more when the limit was lowered since they were issued."""
        u = _ffi.utf8(user_id, "user_id")
        lb = _ffi.utf8(label, "label") if label is not None else None
        token_id, n_evicted = c_uint64(0), c_size_t(0)
        evicted = (c_uint64 * _ffi.ACCESS_TOKENS_PER_USER_MAX)()
        ptr = self._h.enter()
        try:
            st, raw = _ffi.read_buffer(
                lib.tessera_access_token_issue,
                (ptr, u, len(u), lb, len(lb) if lb is not None else 0),
                _ffi.ACCESS_TOKEN_LEN + 1,
                tail=(byref(token_id), evicted, len(evicted), byref(n_evicted)),
                wipe=True,
            )
            if st:
                raise _ffi.error(st)
        finally:
            self._h.leave()
        return IssuedAccessToken(
            raw.decode("ascii"), token_id.value, label, list(evicted[: n_evicted.value])
        )

    def verify_access_token(self, token: str) -> VerifiedAccessToken:
        """The owner and id of a valid access token. Raises :class:`~tessera.InvalidToken`
        (malformed, unknown or revoked: one error, no hint) or
        :class:`~tessera.UserDeactivated`."""
        # The same hot-path shape as verify_session_token.
        t = token.encode() if type(token) is str else _ffi.utf8(token, "token")
        out = _access_structs.pop() if _access_structs else _VerifiedAccessTokenStruct()
        h = self._h
        inflight = h.inflight
        inflight.append(None)
        try:
            if h.closed:
                raise EngineClosed("the engine is closed")
            st = _verify_access(h.ptr, t, len(t), out)
        finally:
            inflight.pop()
            if h.closed and not inflight:
                h.idle.set()
        if st:
            raise _ffi.error(st)
        uid, n, token_id = _unpack_access(out)
        _access_structs.append(out)
        return VerifiedAccessToken(uid[:n].decode(), token_id)

    def list_access_tokens(self, user_id: str) -> List[AccessTokenInfo]:
        """The user's valid access tokens, oldest first (never their secrets)."""
        u = _ffi.utf8(user_id, "user_id")
        return [
            AccessTokenInfo.from_json(t)
            for t in self._call_string(lib.tessera_access_token_list, u, len(u))
        ]

    def revoke_access_token(self, user_id: str, token_id: int) -> None:
        """Revokes one access token of the user; :class:`~tessera.TokenNotFound` if the user
        has no token with this id."""
        u = _ffi.utf8(user_id, "user_id")
        self._call(lib.tessera_access_token_revoke, u, len(u), _u64(token_id, "token_id"))

    def revoke_all_access_tokens(self, user_id: str) -> int:
        """Revokes every access token of the user; returns how many there were."""
        u = _ffi.utf8(user_id, "user_id")
        n = c_size_t(0)
        self._call(lib.tessera_access_token_revoke_all, u, len(u), byref(n))
        return n.value

    # ----- session tokens -----------------------------------------------------------------

    def issue_session_token(
        self, user_id: str, expires_at_ms: Optional[int] = None
    ) -> SessionToken:
        """Issues a session token expiring at ``expires_at_ms`` (ms since the Unix epoch,
        rounded down to whole seconds) or, when it is ``None``, after the configured default
        (7 days). An explicit value is taken literally: :class:`~tessera.InvalidExpiry` for
        one not in the future (``0`` included) or beyond the maximum; ``ValueError`` for one
        outside the 64-bit range (it would otherwise be wrapped into a valid-looking one)."""
        u = _ffi.utf8(user_id, "user_id")
        args: Tuple[Any, ...]
        if expires_at_ms is None:
            fn, args = lib.tessera_session_token_issue_default, (u, len(u))
        else:
            exp = _i64(expires_at_ms, "expires_at_ms")
            fn, args = lib.tessera_session_token_issue, (u, len(u), exp)
        out_exp = c_int64(0)
        ptr = self._h.enter()
        try:
            st, raw = _ffi.read_buffer(
                fn,
                (ptr, *args),
                _ffi.SESSION_TOKEN_MAX_LEN + 1,
                tail=(byref(out_exp),),
                wipe=True,
            )
            if st:
                raise _ffi.error(st)
        finally:
            self._h.leave()
        return SessionToken(raw.decode("ascii"), out_exp.value)

    def verify_session_token(self, token: str) -> VerifiedSession:
        """Verifies a session token: format and signature first (any failure there is
        :class:`~tessera.InvalidToken`), then :class:`~tessera.TokenExpired`, then
        :class:`~tessera.TokenRevoked` (sessions revoked, key retired, or user deleted - never
        :class:`~tessera.UserNotFound`), then :class:`~tessera.UserDeactivated`."""
        # The hot path: _Handle.enter/leave inlined, module-level bindings, one unpack of the
        # result struct. See docs/BENCHMARKS.md ("Python binding") for what each step costs.
        t = token.encode() if type(token) is str else _ffi.utf8(token, "token")
        # A result struct taken from a free list, returned after it is read: each is owned by
        # one call at a time (list.pop is atomic), so neither another thread nor a finalizer or
        # signal handler verifying on this thread between the call and the unpack can
        # overwrite it - the reason a single per-thread struct was rejected - and it costs a
        # third of building a new one. Stale bytes past the NULs are never read.
        out = _session_structs.pop() if _session_structs else _VerifiedSessionStruct()
        h = self._h
        inflight = h.inflight
        inflight.append(None)
        try:
            if h.closed:
                raise EngineClosed("the engine is closed")
            # The struct itself, not byref(out): ctypes passes it by reference for a POINTER
            # argtype without building a byref object in Python.
            st = _verify_session(h.ptr, t, len(t), out)
        finally:
            inflight.pop()
            if h.closed and not inflight:
                h.idle.set()
        if st:
            raise _ffi.error(st)
        # The fields after the id in one unpack, and the id through ctypes' array getter,
        # which stops at its NUL: no copy of the whole 765-byte id field, no slice.
        n, iat, exp, kid = _unpack_session_tail(out, _SESSION_TAIL_AT)
        uid = out.user_id
        if len(uid) != n:  # an id holding a NUL: ids never do (control characters are refused)
            uid = _ffi.unpack_verified_session(out)[0][:n]
        _session_structs.append(out)
        key_id = _key_ids.get(kid)
        if key_id is None:
            key_id = _key_id(kid)
        # The dataclass's four slots set directly: calling it runs its generated __init__, a
        # Python frame costing about twice these stores (test_hot_path checks every field).
        v = _new_object(VerifiedSession)
        v.user_id = uid.decode()
        v.issued_at_ms = iat
        v.expires_at_ms = exp
        v.key_id = key_id
        return v

    def revoke_sessions(self, user_id: str) -> None:
        """Revokes every session token of the user issued before this call returns."""
        u = _ffi.utf8(user_id, "user_id")
        self._call(lib.tessera_session_token_revoke, u, len(u))

    def revoke_all_sessions(self) -> None:
        """Emergency: invalidates every session token of every user (replaces all keys); they
        raise :class:`~tessera.TokenRevoked`."""
        self._call(lib.tessera_session_token_revoke_everyone)

    # ----- signing keys -------------------------------------------------------------------

    def rotate_key(self) -> KeyInfo:
        """Adds a new active signing key; older keys keep verifying until retired."""
        return KeyInfo.from_json(self._call_string(lib.tessera_key_rotate))

    def retire_key(self, key_id: str) -> None:
        """Retires a key (its tokens raise :class:`~tessera.TokenRevoked`). Raises
        :class:`~tessera.KeyNotFound`, or :class:`~tessera.KeyActive` for the active key."""
        k = _ffi.utf8(key_id, "key_id")
        self._call(lib.tessera_key_retire, k, len(k))

    def export_key(self, key_id: str) -> bytes:
        """The 32-byte secret of a live signing key, so another service can verify session
        tokens with any HS256 JWT library (``jwt.decode(token, key, algorithms=["HS256"])``;
        the token header's ``kid`` is the key id).

        **Secret**: whoever holds it can mint session tokens for any user until the key is
        retired. Do not log it, keep it no longer than needed. Such a verifier checks signature
        and expiry only: revoked sessions pass it until they expire. Raises
        :class:`~tessera.KeyNotFound` for an unknown or retired key."""
        k = _ffi.utf8(key_id, "key_id")
        buf = (c_uint8 * _ffi.KEY_SECRET_LEN)()
        try:
            self._call(lib.tessera_key_export, k, len(k), buf)
            return bytes(buf)
        finally:
            memset(buf, 0, _ffi.KEY_SECRET_LEN)

    def keys(self) -> List[KeyInfo]:
        """Every live signing key, oldest first (never the secrets)."""
        return [KeyInfo.from_json(k) for k in self._call_string(lib.tessera_key_list)]

    # ----- authentication -----------------------------------------------------------------

    def authenticate(self, user_id: str, token: Optional[str] = None) -> Authenticated:
        """Logs a user in (Sendbird's rule): with a token, it must be a valid access or
        session token of this user - the token's own error if it fails, else
        :class:`~tessera.InvalidToken` when it is anyone else's, whether or not ``user_id``
        exists; without one, only when the engine allows id-only login and the user was never
        issued a token (else :class:`~tessera.TokenRequired`)."""
        u = _ffi.utf8(user_id, "user_id")
        t = _ffi.utf8(token, "token") if token is not None else None
        out = _ffi.tessera_authenticated()
        self._call(
            lib.tessera_user_authenticate, u, len(u), t, len(t) if t is not None else 0, out
        )
        uid, n, code, token_id, expires_at_ms = _ffi.unpack_authenticated(out)
        method = _AUTH_METHODS.get(code)
        if method is None:  # a method a newer library added: fail closed rather than guess
            raise TesseraError(f"unknown authentication method {code}", 0)
        return Authenticated(
            uid[:n].decode("utf-8"),
            method,
            token_id if method is AuthMethod.ACCESS_TOKEN else None,
            expires_at_ms if method is AuthMethod.SESSION_TOKEN else None,
        )

    # ----- events -------------------------------------------------------------------------

    def drain_events(self, max: int = 1000) -> List[Event]:
        """Takes up to ``max`` (1..=65536) queued events (revocations, store notices), oldest
        first. Each event goes to exactly one drain call, even with several threads draining."""
        d = self._call_string(lib.tessera_event_drain, _size(max, "max"))
        return [Event.from_json(e) for e in d]

    def dropped_events(self) -> int:
        """How many events were dropped because the queue was full."""
        n = c_uint64(0)
        self._call(lib.tessera_event_dropped_count, byref(n))
        return n.value


# Hot-path bindings: module globals are one dict lookup, `lib.x` / `_ffi.x` two.
_verify_session = lib.tessera_session_token_verify
_verify_access = lib.tessera_access_token_verify
_VerifiedSessionStruct = _ffi.tessera_verified_session
_VerifiedAccessTokenStruct = _ffi.tessera_verified_access_token
_new_object = object.__new__
_unpack_session_tail = _ffi.unpack_verified_session_tail
_SESSION_TAIL_AT = _ffi.VERIFIED_SESSION_TAIL_OFFSET
_unpack_access = _ffi.unpack_verified_access_token
# Free lists of result structs (see verify_session_token); as long as the most calls ever in
# flight at once.
_session_structs: List[Any] = []
_access_structs: List[Any] = []
# The key_id field's bytes -> its text: a few live keys sign every token, and a dict hit costs
# a fifth of find + slice + decode. Bounded, in case ids churn through many rotations.
_key_ids: Dict[bytes, str] = {}
_KEY_IDS_MAX = 1024


def _key_id(field: bytes) -> str:
    text = field[: field.find(0)].decode("ascii")
    if len(_key_ids) < _KEY_IDS_MAX:
        _key_ids[field] = text
    return text


_AUTH_METHODS = {
    _ffi.AUTH_USER_ID_ONLY: AuthMethod.USER_ID_ONLY,
    _ffi.AUTH_ACCESS_TOKEN: AuthMethod.ACCESS_TOKEN,
    _ffi.AUTH_SESSION_TOKEN: AuthMethod.SESSION_TOKEN,
}


def _plain(v: Any) -> Any:
    """Turns tuples/sets/mappings into JSON-ready lists/dicts (sets would not serialise)."""
    if isinstance(v, Mapping):
        return dict(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return list(v)
    return v


# The Python types of the user record's fields (``NewUser``, ``UserPatch``), checked before the
# JSON is built so that a wrong type raises TypeError, as for every other argument, rather than
# InvalidJson from the library or a TypeError from the json module.
_USER_TEXT_FIELDS = frozenset(
    {"user_id", "nickname", "profile_url", "role", "status_message", "link", "email",
     "mobile_number"}
)
_USER_LIST_FIELDS = frozenset({"tags", "discovery_keys"})


def _check_user_field(name: str, value: Any) -> None:
    if name in _USER_TEXT_FIELDS:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be str, not {type(value).__name__}")
    elif name in _USER_LIST_FIELDS:
        if not isinstance(value, (list, tuple, set, frozenset)) or not all(
            isinstance(item, str) for item in value
        ):
            raise TypeError(f"{name} must be a sequence of str, not {type(value).__name__}")
    elif name == "metadata" and not isinstance(value, Mapping):
        raise TypeError(f"metadata must be a mapping, not {type(value).__name__}")


def _new_user(args: Mapping[str, Any]) -> bytes:
    d = {k: v for k, v in args.items() if k != "self"}
    # The id and nickname are required strings; None is not a way to leave them out.
    for name, value in d.items():
        if value is not None or name in ("user_id", "nickname"):
            _check_user_field(name, value)
    return _json({k: _plain(v) for k, v in d.items() if v is not None})


def _u64(v: int, what: str) -> int:
    v = int(v)
    if not 0 <= v < 1 << 64:
        raise ValueError(f"{what} must be 0..2**64-1, got {v}")
    return v


def _i64(v: int, what: str) -> int:
    v = int(v)
    if not -(1 << 63) <= v < 1 << 63:
        raise ValueError(f"{what} must be -2**63..2**63-1, got {v}")
    return v


def _size(v: int, what: str) -> int:
    v = int(v)
    if not 0 <= v <= sys.maxsize:
        raise ValueError(f"{what} must be non-negative, got {v}")
    return v
