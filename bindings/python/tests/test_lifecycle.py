"""Opening, configuring and closing engines."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

import tessera


def test_context_manager_and_idempotent_close() -> None:
    with tessera.Engine.in_memory() as e:
        e.create_user("u")
        assert not e.closed and "open" in repr(e)
    assert e.closed and "closed" in repr(e)
    e.close()
    e.close()
    with pytest.raises(tessera.EngineClosed):
        e.get_user("u")
    with pytest.raises(tessera.EngineClosed):
        e.verify_session_token("x")
    with pytest.raises(tessera.EngineClosed):
        e.issue_access_token("u")


def test_engines_are_independent() -> None:
    with tessera.Engine.in_memory() as a, tessera.Engine.in_memory() as b:
        a.create_user("u")
        s = a.issue_session_token("u")
        b.create_user("u")
        with pytest.raises(tessera.InvalidToken):  # different keys
            b.verify_session_token(s.token)


def test_forgotten_engine_is_freed_by_gc() -> None:
    e = tessera.Engine.in_memory()
    handle = e._h
    ref = weakref.ref(e)
    del e
    gc.collect()
    assert ref() is None and handle.closed and handle.ptr is None


def test_close_waits_for_calls_in_flight() -> None:
    e = tessera.Engine.in_memory(event_queue_capacity=1)
    stop = threading.Event()
    errors: list = []

    def worker() -> None:
        while not stop.is_set():
            try:
                e.revoke_all_sessions()
                e.keys()
            except tessera.EngineClosed:
                return
            except BaseException as x:  # pragma: no cover - a crash would end the test anyway
                errors.append(x)
                return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    e.close()
    stop.set()
    for t in threads:
        t.join()
    assert errors == []


def test_interpreter_exit_with_open_engines_and_busy_daemon_thread() -> None:
    # A finalizer that freed the engine under a running call would crash the process; one
    # that ran too late would use a half-torn-down interpreter. Either shows as a bad exit.
    code = textwrap.dedent(
        """
        import threading, tessera
        kept = tessera.Engine.in_memory()
        kept.create_user("u")
        busy = tessera.Engine.in_memory(event_queue_capacity=1)
        def spin():
            try:
                while True:
                    busy.revoke_all_sessions()
            except tessera.EngineClosed:
                pass  # the exit finalizer closed it under us: the documented outcome
        threading.Thread(target=spin, daemon=True).start()
        cycle = [tessera.Engine.in_memory()]
        cycle.append(cycle)
        print("ok")
        """
    )
    env = dict(os.environ, TESSERA_LIBRARY=tessera.LIBRARY_PATH)
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "ok" and r.stderr == ""


def test_config_keywords() -> None:
    with tessera.Engine.in_memory(nickname_max_chars=3, session_ttl_ms=60_000) as e:
        e.create_user("u", "abc")
        with pytest.raises(tessera.FieldTooLong):
            e.create_user("v", "abcd")
        s = e.issue_session_token("u")
        assert abs(s.expires_at_ms - (time.time() * 1000 + 60_000)) < 2000


@pytest.mark.parametrize(
    "config",
    [
        {"user_id_max_chars": 192},
        {"user_id_max_chars": 0},
        {"access_tokens_per_user": 101},
        {"clock_skew_ms": -1},
        {"session_ttl_ms": 0},
        {"event_queue_capacity": 0},
    ],
)
def test_out_of_range_config(config: dict) -> None:
    with pytest.raises(tessera.InvalidArgument) as e:
        tessera.Engine.in_memory(**config)
    assert e.value.code == 1


def test_config_edges_pass() -> None:
    tessera.Engine.in_memory(user_id_max_chars=191, access_tokens_per_user=100).close()
    tessera.Engine.in_memory(user_id_max_chars=1, access_tokens_per_user=1).close()


def test_config_type_errors() -> None:
    with pytest.raises(TypeError):
        tessera.Engine.in_memory(no_such_field=1)
    # An unknown enum value or a number out of its type's range is an invalid value (as the
    # header says), a value of the wrong JSON type a malformed record.
    with pytest.raises(tessera.InvalidArgument) as e:
        tessera.Engine.in_memory(user_id_policy="lenient")
    assert e.value.code == 1
    with pytest.raises(tessera.InvalidArgument):
        tessera.Engine.in_memory(user_id_case="upper")
    with pytest.raises(tessera.InvalidArgument):
        tessera.Engine.in_memory(tags_max=-1)
    with pytest.raises(tessera.InvalidJson) as e:
        tessera.Engine.in_memory(tags_max="many")
    assert e.value.code == 105


def test_version_information() -> None:
    assert tessera.ABI_VERSION == 2
    major, minor, patch = (int(x) for x in tessera.LIBRARY_VERSION.split("."))
    assert tessera.LIBRARY_VERSION_NUMBER == major * 1_000_000 + minor * 1000 + patch
    assert os.path.isfile(tessera.LIBRARY_PATH)
