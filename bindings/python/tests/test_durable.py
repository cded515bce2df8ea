"""Durable engines: Engine.open on a data directory, reopen, locking, salvage, compaction,
store counters, and exporting a signing key."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import tessera


def _other_process(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TESSERA_LIBRARY=tessera.LIBRARY_PATH)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=60)


def _largest_journal(d: pathlib.Path) -> pathlib.Path:
    return max(d.glob("journal-*.tsj"), key=lambda p: p.stat().st_size)


def test_reopen_keeps_users_tokens_and_keys(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "data"
    with tessera.Engine.open(d) as e:
        e.create_user("u", "U", tags=["a"])
        e.create_user("gone")
        e.delete_user("gone")
        s = e.issue_session_token("u")
        a = e.issue_access_token("u", "laptop")
        revoked = e.issue_access_token("u")
        e.revoke_access_token("u", revoked.token_id)
        kid = e.verify_session_token(s.token).key_id
        key = e.export_key(kid)
        assert e.store_stats().records_synced >= 5
    with tessera.Engine.open(str(d)) as e:  # str and PathLike both work
        assert e.user_count() == 1
        assert e.get_user("u").nickname == "U" and e.get_user("u").tags == ["a"]
        with pytest.raises(tessera.UserNotFound):
            e.get_user("gone")
        assert e.verify_session_token(s.token).user_id == "u"
        assert e.verify_access_token(a.token).user_id == "u"
        with pytest.raises(tessera.InvalidToken):
            e.verify_access_token(revoked.token)
        assert [t.label for t in e.list_access_tokens("u")] == ["laptop"]
        assert e.export_key(kid) == key
        # Counters start again at each open.
        assert e.store_stats() == tessera.StoreStats(0, 0, 0)


def test_a_torn_tail_is_cut_counted_and_announced(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "data"
    with tessera.Engine.open(d) as e:
        e.create_user("kept")
    with _largest_journal(d).open("ab") as f:
        f.write(b"\x05\x00\x00")  # the start of a record whose write never completed
    with tessera.Engine.open(d) as e:
        assert e.get_user("kept").user_id == "kept"
        st = e.store_stats()
        assert (st.torn_tail_bytes, st.torn_tail_records) == (3, 1)
        assert [(ev.kind, ev.code) for ev in e.drain_events()] == [
            (tessera.EventKind.STORE_TORN_TAIL, 9)
        ]
    with tessera.Engine.open(d) as e:
        assert e.store_stats() == tessera.StoreStats(0, 0, 0, 0, 0)
        assert e.drain_events() == []


def test_second_open_is_locked_in_this_and_another_process(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "data"
    code = (
        "import sys, tessera\n"
        "try:\n    tessera.Engine.open(sys.argv[1])\n"
        "except tessera.Locked as e:\n    print(e.code)\n"
    )
    with tessera.Engine.open(d) as e:
        e.create_user("u")
        with pytest.raises(tessera.Locked) as err:
            tessera.Engine.open(d)
        assert err.value.code == 52 and str(d) in str(err.value)
        r = _other_process(code, str(d))
        assert r.stdout.strip() == "52", r.stderr
        with pytest.raises(tessera.Locked):
            tessera.Engine.open_salvage(d)
        assert e.user_count() == 1  # the refused opens changed nothing
    # Closed: the lock is gone, for another process too.
    r = _other_process("import sys, tessera\ntessera.Engine.open(sys.argv[1]).close()\n"
                       "print('opened')", str(d))
    assert r.stdout.strip() == "opened", r.stderr


def test_sync_modes(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "data"
    with tessera.Engine.open(d, sync_mode={"relaxed_ms": 5}, nickname_max_chars=4) as e:
        e.create_user("u", "abcd")
        with pytest.raises(tessera.FieldTooLong):
            e.create_user("v", "abcde")
    # A clean close syncs what relaxed mode buffered.
    with tessera.Engine.open(d, sync_mode="durable") as e:
        assert e.get_user("u").nickname == "abcd"
    for bad, exc in [({"relaxed_ms": 0}, tessera.InvalidArgument),
                     ({"relaxed_ms": 60_001}, tessera.InvalidArgument),
                     # Well-formed, with an unknown mode: an invalid value.
                     ("relaxed", tessera.InvalidArgument),
                     ({"relaxed": 5}, tessera.InvalidArgument),
                     # Not a mode's shape at all: malformed.
                     (5, tessera.InvalidJson),
                     ({"relaxed_ms": "5"}, tessera.InvalidJson)]:
        with pytest.raises(exc):
            tessera.Engine.open(d, sync_mode=bad)
    tessera.Engine.open(d, sync_mode={"relaxed_ms": 60_000}).close()
    with pytest.raises(TypeError):
        tessera.Engine.in_memory(sync_mode="durable")  # type: ignore[call-arg]


def test_bad_paths(tmp_path: pathlib.Path) -> None:
    with pytest.raises(tessera.InvalidArgument):
        tessera.Engine.open("")
    with pytest.raises(tessera.InvalidArgument):
        tessera.Engine.open("a\0b")
    if sys.platform != "win32":
        with pytest.raises(tessera.InvalidUtf8):
            tessera.Engine.open(os.fsdecode(bytes(tmp_path) + b"/\xff"))
    with pytest.raises(tessera.IoError):
        tessera.Engine.open_salvage(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(tessera.IoError):
        tessera.Engine.open(blocker)


def test_compact_and_store_stats(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "data"
    with tessera.Engine.open(d) as e:
        for i in range(20):
            e.create_user(f"u{i}")
        st = e.store_stats()
        assert st.records_synced == 20 and 1 <= st.syncs <= 20 and st.bytes_written > 0
        e.compact()
        assert len(list(d.glob("snapshot-*.tss"))) == 1
        e.create_user("after")
    with tessera.Engine.open(d) as e:
        assert e.user_count() == 21
    with tessera.Engine.in_memory() as m:
        m.compact()
        assert m.store_stats() == tessera.StoreStats(0, 0, 0)


def test_backup_while_threads_write(tmp_path: pathlib.Path) -> None:
    """A backup taken while other Python threads write (ctypes releases the GIL) opens as a
    data directory holding every write acknowledged before it started, with tokens, keys and
    images."""
    import threading
    import time

    png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + b"py"
    with tessera.Engine.open(tmp_path / "data") as e:
        e.create_user("keeper", "K")
        e.set_profile_image("keeper", png)
        session = e.issue_session_token("keeper").token
        access = e.issue_access_token("keeper").token
        stop = threading.Event()
        done: list[int] = []

        def write(t: int) -> None:
            i = 0
            while not stop.is_set():
                e.create_user(f"w{t}-{i}")
                done.append(1)
                i += 1

        threads = [threading.Thread(target=write, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        while len(done) < 30:
            time.sleep(0.001)
        acked_before = len(done) + 1  # the writes' users, and keeper
        stats = e.backup_to(tmp_path / "backup")
        stop.set()
        for t in threads:
            t.join()
        assert isinstance(stats, tessera.BackupStats)
        assert stats.users >= acked_before and stats.files >= 3 and stats.bytes > 0
        with pytest.raises(tessera.InvalidArgument):
            e.backup_to(tmp_path / "backup")  # no longer empty
        with pytest.raises(tessera.InvalidArgument):
            e.backup_to("")
    with tessera.Engine.open(tmp_path / "backup") as copy:
        assert copy.user_count() == stats.users
        assert copy.verify_session_token(session).user_id == "keeper"
        assert copy.verify_access_token(access).user_id == "keeper"
        url = copy.get_user("keeper").profile_url
        assert url is not None
        assert copy.profile_image(url.rsplit("/", 1)[1].split(".")[0]).data == png
    # An in-memory engine backs up into a data directory too (str paths work).
    with tessera.Engine.in_memory() as m:
        m.create_user("mem")
        assert m.backup_to(str(tmp_path / "mem-backup")).users == 1
    with tessera.Engine.open(tmp_path / "mem-backup") as copy:
        assert copy.get_user("mem").user_id == "mem"


def test_salvage_is_read_only_and_reports_damage(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "data"
    with tessera.Engine.open(d) as e:
        e.create_user("first")
        s = e.issue_session_token("first")
    e, damage = tessera.Engine.open_salvage(d)
    with e:
        assert damage is None
        assert e.verify_session_token(s.token).user_id == "first"
        for write in (lambda: e.create_user("x"), lambda: e.revoke_sessions("first"),
                      e.rotate_key, e.compact):
            with pytest.raises(tessera.ReadOnly) as err:
                write()
            assert err.value.code == 54
        assert e.user_count() == 1
        other, _ = tessera.Engine.open_salvage(d)  # readers share the directory
        other.close()

    with tessera.Engine.open(d) as e:
        for i in range(6):
            e.create_user(f"later{i}", "x" * 40)
    j = _largest_journal(d)
    data = bytearray(j.read_bytes())
    data[len(data) // 2] ^= 0x5A
    j.write_bytes(bytes(data))
    with pytest.raises(tessera.Corrupt) as err:
        tessera.Engine.open(d)
    assert j.name in str(err.value)
    e, damage = tessera.Engine.open_salvage(d)
    with e:
        assert isinstance(damage, tessera.Corrupt) and damage.code == 51
        assert j.name in str(damage)
        assert 1 <= e.user_count() < 7
        e.get_user("first")
    assert j.read_bytes() == bytes(data), "salvage writes nothing"


def test_export_key(engine: tessera.Engine) -> None:
    engine.create_user("u")
    kid = engine.verify_session_token(engine.issue_session_token("u").token).key_id
    key = engine.export_key(kid)
    assert isinstance(key, bytes) and len(key) == 32 and key != bytes(32)
    assert engine.export_key(kid) == key
    new = engine.rotate_key()
    assert engine.export_key(new.key_id) != key
    engine.retire_key(kid)
    for bad in (kid, "zzz", "", "not a key"):
        with pytest.raises(tessera.KeyNotFound):
            engine.export_key(bad)
    with pytest.raises(tessera.InvalidUtf8):
        engine.export_key(b"\xff")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.export_key(7)  # type: ignore[arg-type]
    engine.close()
    with pytest.raises(tessera.EngineClosed):
        engine.export_key(new.key_id)
