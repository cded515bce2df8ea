"""The verify hot paths reuse result structs from a free list, cache key-id text and track
calls in flight without a lock (see ``Engine.verify_session_token`` and ``_Handle``). These
tests pin the properties those shortcuts must keep."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, List

import pytest

import tessera
from tessera import engine as engine_module


def test_nested_verify_between_call_and_read_does_not_clobber_the_result(
    engine: tessera.Engine,
) -> None:
    # A trace function stands in for a finalizer or signal handler that runs Python code on
    # this thread after the C call has filled the result struct and before it is read.
    engine.create_user("alice")
    engine.create_user("bob")
    a = engine.issue_session_token("alice").token
    b = engine.issue_session_token("bob").token
    code = tessera.Engine.verify_session_token.__code__
    nested: List[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code is not code:
            return None

        def on_line(frame: Any, event: str, arg: Any) -> Any:
            # The first line after `st = <the C call>`: the struct is filled but not yet read.
            if event == "line" and "st" in frame.f_locals and not nested:
                nested.append(engine.verify_session_token(b).user_id)
            return on_line

        return on_line

    sys.settrace(tracer)
    try:
        got = engine.verify_session_token(a)
    finally:
        sys.settrace(None)
    assert nested == ["bob"]
    assert got.user_id == "alice"


def test_key_ids_of_every_length_survive_struct_reuse() -> None:
    with tessera.Engine.in_memory() as e:
        e.create_user("u")
        tokens = {}
        for _ in range(40):  # ids "1".."z" then "10", "11", ...: one and two characters
            kid = e.rotate_key().key_id
            tokens[kid] = e.issue_session_token("u").token
        kids = list(tokens)
        assert {len(k) for k in kids} == {1, 2}
        for _ in range(3):
            for kid in kids + kids[::-1]:  # long after short after long, same structs
                assert e.verify_session_token(tokens[kid]).key_id == kid


def test_key_id_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "_key_ids", {})
    monkeypatch.setattr(engine_module, "_KEY_IDS_MAX", 2)
    with tessera.Engine.in_memory() as e:
        e.create_user("u")
        for _ in range(5):
            kid = e.rotate_key().key_id
            assert e.verify_session_token(e.issue_session_token("u").token).key_id == kid
    assert len(engine_module._key_ids) == 2


def test_close_while_verifying_from_threads() -> None:
    e = tessera.Engine.in_memory()
    e.create_user("u")
    s = e.issue_session_token("u").token
    a = e.issue_access_token("u").token
    errors: List[BaseException] = []
    closed_seen = threading.Event()
    started = threading.Barrier(5)

    def worker(i: int) -> None:
        started.wait()
        try:
            while True:
                if i % 2:
                    assert e.verify_session_token(s).user_id == "u"
                else:
                    assert e.verify_access_token(a).user_id == "u"
        except tessera.EngineClosed:
            closed_seen.set()
        except BaseException as x:  # pragma: no cover - reported below
            errors.append(x)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.05)
    e.close()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and closed_seen.is_set()
    assert e._h.ptr is None and e._h.inflight == []
    with pytest.raises(tessera.EngineClosed):
        e.verify_session_token(s)
    assert e._h.inflight == [], "a refused call leaves no trace"


def test_verified_ids_of_every_size_come_back_whole() -> None:
    # The hot path reads the id up to its NUL and checks it against user_id_len: the
    # shortest id, the longest ASCII one and the longest in 3-byte characters (573 bytes),
    # each after a longer one left its bytes in a reused result struct.
    m = tessera.USER_ID_MAX_CHARS
    ids = ["x" * m, "€" * m, "a", "€" * (m - 1) + "z", "b"]
    with tessera.Engine.in_memory(user_id_max_chars=m) as e:
        tokens = {}
        for uid in ids:
            e.create_user(uid)
            tokens[uid] = e.issue_session_token(uid).token
        for _ in range(2):
            for uid in ids:
                assert e.verify_session_token(tokens[uid]).user_id == uid


def test_a_struct_whose_length_disagrees_is_read_in_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An id field whose NUL comes before user_id_len (which no valid id produces) must not
    # be cut short: the fallback reads user_id_len bytes.
    real = engine_module._unpack_session_tail
    cut: List[int] = []

    def tail_then_cut(out: Any, at: int) -> Any:
        n, iat, exp, kid = real(out, at)
        out.user_id = b"ab\0" + bytes(out.user_id[3:n])  # a NUL inside the id's bytes
        cut.append(n)
        return n, iat, exp, kid

    monkeypatch.setattr(engine_module, "_unpack_session_tail", tail_then_cut)
    with tessera.Engine.in_memory() as e:
        e.create_user("abcdef")
        got = e.verify_session_token(e.issue_session_token("abcdef").token).user_id
    assert cut == [6]
    assert got == "ab\0def"


def test_verified_session_is_the_dataclass_with_every_field_set(engine: tessera.Engine) -> None:
    # The hot path builds VerifiedSession without calling it: each dataclass field must be
    # set (a slot left unset raises AttributeError) and equal what the constructor gives.
    import dataclasses

    engine.create_user("carol")
    s = engine.issue_session_token("carol")
    v = engine.verify_session_token(s.token)
    assert type(v) is tessera.VerifiedSession
    values = {f.name: getattr(v, f.name) for f in dataclasses.fields(tessera.VerifiedSession)}
    assert v == tessera.VerifiedSession(**values)
    assert values["user_id"] == "carol"
    assert values["expires_at_ms"] == s.expires_at_ms
    assert values["key_id"] == engine.keys()[-1].key_id
