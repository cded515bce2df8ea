"""Cluster mode from Python: Engine.open_postgres and Engine.import_from. The two-node checks
need a PostgreSQL server (scripts/with-postgres.sh sets TESSERA_PG_DSN); without one they
are skipped, except under CI=true, where that is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable

import pytest

import tessera

DSN = os.environ.get("TESSERA_PG_DSN", "")


def _need_dsn() -> str:
    if not DSN:
        if os.environ.get("CI") == "true":
            pytest.fail("cluster tests must run in CI: run them through scripts/with-postgres.sh")
        pytest.skip("no TESSERA_PG_DSN (run through scripts/with-postgres.sh)")
    return DSN


def _eventually(check: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return check()


def test_open_postgres_checks_its_arguments() -> None:
    with pytest.raises(TypeError):
        tessera.Engine.open_postgres(b"host=127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tessera.Engine.open_postgres("host=127.0.0.1", poll_interval_ms="100")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tessera.Engine.open_postgres("host=127.0.0.1", max_staleness_ms=-1)
    with pytest.raises(ValueError):
        tessera.Engine.open_postgres("host=127.0.0.1", log_retention=2**64)
    with pytest.raises(TypeError):
        tessera.Engine.open_postgres("host=127.0.0.1", no_such_field=1)
    with pytest.raises(tessera.InvalidArgument):
        tessera.Engine.open_postgres("host=127.0.0.1 nonsense")
    with pytest.raises(tessera.InvalidArgument):
        tessera.Engine.open_postgres("host=127.0.0.1", poll_interval_ms=0)


def test_import_from_copies_a_whole_state_once() -> None:
    with tessera.Engine.in_memory() as src, tessera.Engine.in_memory() as dst:
        src.create_user("moved", "M")
        token = src.issue_access_token("moved").token
        session = src.issue_session_token("moved").token
        assert dst.import_from(src) == 1
        assert dst.verify_access_token(token).user_id == "moved"
        assert dst.verify_session_token(session).user_id == "moved"
        with pytest.raises(tessera.InvalidArgument):
            dst.import_from(src)
        with pytest.raises(TypeError):
            dst.import_from("src")  # type: ignore[arg-type]


_OTHER_NODE = """
import sys, tessera
e = tessera.Engine.open_postgres(sys.argv[1])
e.create_user(sys.argv[2], "from another process")
print(e.issue_session_token(sys.argv[2]).token)
"""


def test_two_nodes_share_users_and_revocations() -> None:
    dsn = _need_dsn()
    user = f"py-node-{os.getpid()}"
    with tessera.Engine.open_postgres(dsn, max_staleness_ms=None) as a:
        env = dict(os.environ, TESSERA_LIBRARY=tessera.LIBRARY_PATH)
        out = subprocess.run([sys.executable, "-c", _OTHER_NODE, dsn, user],
                             capture_output=True, text=True, env=env, timeout=60, check=True)
        token = out.stdout.strip()
        # Written and committed by another process: this node follows within milliseconds.
        assert _eventually(lambda: a.user_count() > 0 and _exists(a, user))
        assert a.verify_session_token(token).user_id == user
        a.drain_events()
        with tessera.Engine.open_postgres(dsn) as b:
            assert b.verify_session_token(token).user_id == user
            a.revoke_sessions(user)

            def revoked() -> bool:
                try:
                    b.verify_session_token(token)
                    return False
                except tessera.TokenRevoked:
                    return True

            assert _eventually(revoked)
            assert 4 in [ev.code for ev in b.drain_events()]  # sessions_revoked


def _exists(e: tessera.Engine, user: str) -> bool:
    try:
        e.get_user(user)
        return True
    except tessera.UserNotFound:
        return False
