"""Many Python threads on one engine at once (ctypes releases the GIL, so the calls really run
in parallel in Rust): every result stays consistent."""

from __future__ import annotations

import threading
from collections import Counter

import tessera
from tessera import EventKind

THREADS = 8
USERS_PER_THREAD = 40


def test_parallel_users_tokens_and_events() -> None:
    e = tessera.Engine.in_memory(access_tokens_per_user=3)
    e.create_user("shared")
    shared_session = e.issue_session_token("shared")
    barrier = threading.Barrier(THREADS)
    failures: list = []
    issued: dict = {}
    drained: list = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            barrier.wait()
            mine = {}
            for i in range(USERS_PER_THREAD):
                uid = f"t{n}-u{i}"
                e.create_user(uid, f"T{n}")
                s = e.issue_session_token(uid)
                tokens = [e.issue_access_token(uid) for _ in range(4)]  # one eviction each
                assert e.verify_session_token(s.token).user_id == uid
                assert e.verify_session_token(shared_session.token).user_id == "shared"
                assert e.authenticate(uid, tokens[-1].token).token_id == tokens[-1].token_id
                try:
                    e.verify_access_token(tokens[0].token)
                    raise AssertionError("evicted token still verifies")
                except tessera.InvalidToken:
                    pass
                if i % 2:
                    e.revoke_sessions(uid)
                mine[uid] = (s, tokens)
                got = e.drain_events(max=7)
                with lock:
                    drained.extend(got)
            with lock:
                issued.update(mine)
        except BaseException as x:  # noqa: BLE001 - reported below
            failures.append(x)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    drained.extend(e.drain_events(max=65536))

    total = THREADS * USERS_PER_THREAD
    assert e.user_count() == total + 1
    assert len(issued) == total
    # Every event delivered exactly once, sequence numbers gapless.
    assert sorted(ev.seq for ev in drained) == list(range(1, len(drained) + 1))
    kinds = Counter(ev.kind for ev in drained)
    assert kinds[EventKind.ACCESS_TOKEN_EVICTED] == total
    assert kinds[EventKind.SESSIONS_REVOKED] == total // 2
    assert e.dropped_events() == 0
    for uid, (s, tokens) in issued.items():
        i = int(uid.rsplit("u", 1)[1])
        if i % 2:
            try:
                e.verify_session_token(s.token)
                raise AssertionError("revoked session verifies")
            except tessera.TokenRevoked:
                pass
        else:
            assert e.verify_session_token(s.token).user_id == uid
        assert [t.id for t in e.list_access_tokens(uid)] == [t.token_id for t in tokens[1:]]
    # Token ids are unique across threads.
    ids = [t.token_id for _, toks in issued.values() for t in toks]
    assert len(set(ids)) == len(ids)
    e.close()


def test_parallel_verify_while_rotating_keys() -> None:
    with tessera.Engine.in_memory() as e:
        e.create_user("u")
        tokens = [e.issue_session_token("u").token]
        stop = threading.Event()
        failures: list = []

        def verifier() -> None:
            try:
                while not stop.is_set():
                    for t in list(tokens):
                        assert e.verify_session_token(t).user_id == "u"
            except BaseException as x:  # noqa: BLE001
                failures.append(x)

        threads = [threading.Thread(target=verifier) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(50):
            e.rotate_key()
            tokens.append(e.issue_session_token("u").token)
        stop.set()
        for t in threads:
            t.join()
        assert failures == []
        assert len(e.keys()) == 51
