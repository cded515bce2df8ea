"""Access tokens, session tokens, authentication, keys: every operation and error path."""

from __future__ import annotations

import time
from typing import Any

import pytest

import tessera
from tessera import AuthMethod, EventKind


def now_ms() -> int:
    return int(time.time() * 1000)


# ----- access tokens --------------------------------------------------------------------------


def test_access_token_issue_verify_list_revoke(engine: tessera.Engine, alice: str) -> None:
    t = engine.issue_access_token(alice, label="phone")
    assert t.token.startswith(tessera.ACCESS_TOKEN_PREFIX) and len(t.token) == tessera.ACCESS_TOKEN_LEN == 65
    assert t.token not in repr(t)  # the secret stays out of logs
    assert (t.token_id, t.label, t.evicted) == (1, "phone", [])
    v = engine.verify_access_token(t.token)
    assert (v.user_id, v.token_id) == (alice, t.token_id)
    assert engine.verify_access_token(t.token.encode()).user_id == alice  # bytes accepted
    t2 = engine.issue_access_token(alice)
    infos = engine.list_access_tokens(alice)
    assert [(i.id, i.label) for i in infos] == [(1, "phone"), (2, None)]
    assert all(i.created_at_ms > 0 for i in infos)
    engine.revoke_access_token(alice, t.token_id)
    with pytest.raises(tessera.InvalidToken):
        engine.verify_access_token(t.token)
    with pytest.raises(tessera.TokenNotFound) as e:
        engine.revoke_access_token(alice, t.token_id)
    assert e.value.code == 25
    assert engine.revoke_all_access_tokens(alice) == 1
    assert engine.revoke_all_access_tokens(alice) == 0
    with pytest.raises(tessera.InvalidToken):
        engine.verify_access_token(t2.token)
    kinds = [(e.kind, e.token_id) for e in engine.drain_events()]
    assert kinds == [(EventKind.ACCESS_TOKEN_REVOKED, 1), (EventKind.ACCESS_TOKENS_REVOKED, None)]


def test_access_token_limit_evicts_oldest() -> None:
    with tessera.Engine.in_memory(access_tokens_per_user=2) as e:
        e.create_user("u")
        a = e.issue_access_token("u")
        b = e.issue_access_token("u")
        c = e.issue_access_token("u")
        assert c.evicted == [a.token_id] and b.evicted == []
        with pytest.raises(tessera.InvalidToken):
            e.verify_access_token(a.token)
        assert [i.id for i in e.list_access_tokens("u")] == [b.token_id, c.token_id]
        [ev] = e.drain_events()
        assert (ev.kind, ev.user_id, ev.token_id) == (EventKind.ACCESS_TOKEN_EVICTED, "u", a.token_id)


def test_a_lowered_access_token_limit_evicts_down_to_it(tmp_path) -> None:
    with tessera.Engine.open(tmp_path, access_tokens_per_user=5) as e:
        e.create_user("u")
        old = [e.issue_access_token("u") for _ in range(5)]
    with tessera.Engine.open(tmp_path, access_tokens_per_user=2) as e:
        new = e.issue_access_token("u")
        assert new.evicted == [t.token_id for t in old[:4]]
        events = e.drain_events()
        assert [(ev.kind, ev.token_id) for ev in events] == [
            (EventKind.ACCESS_TOKEN_EVICTED, t.token_id) for t in old[:4]
        ]
        valid = []
        for t in old + [new]:
            try:
                valid.append(e.verify_access_token(t.token).token_id)
            except tessera.InvalidToken:
                pass
        assert valid == [old[4].token_id, new.token_id]


def test_access_token_label_limit(engine: tessera.Engine, alice: str) -> None:
    engine.issue_access_token(alice, label="l" * 100)
    with pytest.raises(tessera.FieldTooLong):
        engine.issue_access_token(alice, label="l" * 101)
    assert len(engine.list_access_tokens(alice)) == 1


@pytest.mark.parametrize(
    "token",
    ["", "tsat_", "garbage", "tsat_" + "A" * 60, "x" * 65, "tsat_" + "A" * 200],
)
def test_malformed_access_tokens_are_invalid(engine: tessera.Engine, alice: str, token: str) -> None:
    with pytest.raises(tessera.InvalidToken) as e:
        engine.verify_access_token(token)
    assert e.value.code == 20


def test_tampered_access_token_is_invalid(engine: tessera.Engine, alice: str) -> None:
    t = engine.issue_access_token(alice).token
    for i in (5, 20, 40, 64):
        flipped = t[:i] + ("A" if t[i] != "A" else "B") + t[i + 1 :]
        with pytest.raises(tessera.InvalidToken):
            engine.verify_access_token(flipped)


def test_access_token_for_missing_user(engine: tessera.Engine) -> None:
    with pytest.raises(tessera.UserNotFound):
        engine.issue_access_token("ghost")
    with pytest.raises(tessera.UserNotFound):
        engine.list_access_tokens("ghost")
    with pytest.raises(tessera.UserNotFound):
        engine.revoke_access_token("ghost", 1)
    with pytest.raises(tessera.UserNotFound):
        engine.revoke_all_access_tokens("ghost")
    with pytest.raises(ValueError):
        engine.revoke_access_token("ghost", -1)


# ----- session tokens -------------------------------------------------------------------------


def test_session_issue_verify_revoke(engine: tessera.Engine, alice: str) -> None:
    s = engine.issue_session_token(alice)
    assert tessera.SESSION_TOKEN_MIN_LEN <= len(s.token) <= tessera.SESSION_TOKEN_MAX_LEN
    assert s.token not in repr(s)
    week = 7 * 24 * 3600 * 1000
    assert abs(s.expires_at_ms - (now_ms() + week)) < 5000
    v = engine.verify_session_token(s.token)
    assert v.user_id == alice and v.expires_at_ms == s.expires_at_ms and v.key_id == "1"
    assert v.issued_at_ms <= now_ms() and v.issued_at_ms % 1000 == 0
    engine.revoke_sessions(alice)
    with pytest.raises(tessera.TokenRevoked) as e:
        engine.verify_session_token(s.token)
    assert e.value.code == 22
    fresh = engine.issue_session_token(alice)
    assert engine.verify_session_token(fresh.token).user_id == alice
    assert [e.kind for e in engine.drain_events()] == [EventKind.SESSIONS_REVOKED]
    with pytest.raises(tessera.UserNotFound):
        engine.revoke_sessions("ghost")
    with pytest.raises(tessera.UserNotFound):
        engine.issue_session_token("ghost")


def test_session_explicit_expiry_and_bounds(engine: tessera.Engine, alice: str) -> None:
    exp = now_ms() + 3_600_000
    s = engine.issue_session_token(alice, expires_at_ms=exp)
    assert s.expires_at_ms == exp // 1000 * 1000
    assert engine.verify_session_token(s.token).expires_at_ms == s.expires_at_ms
    year = 365 * 24 * 3600 * 1000
    engine.issue_session_token(alice, expires_at_ms=now_ms() + year - 10_000)
    i64_min, i64_max = -(2**63), 2**63 - 1
    refused = [now_ms() - 1000, 0, -5, now_ms() + year + 60_000, i64_max, i64_max - 999]
    refused += [i64_min + d for d in range(1001)]  # 0 is the C ABI's old "default" spelling
    for bad in refused:
        with pytest.raises(tessera.InvalidExpiry) as e:
            engine.issue_session_token(alice, expires_at_ms=bad)
        assert e.value.code == 23
    # Outside int64 ctypes would wrap it (2**64 + exp is exp); it is refused before the call.
    for bad in (2**64 + exp, 2**63, i64_min - 1, -(2**64) + exp, 2**200):
        with pytest.raises(ValueError, match="expires_at_ms"):
            engine.issue_session_token(alice, expires_at_ms=bad)


def test_session_expiry() -> None:
    with tessera.Engine.in_memory(clock_skew_ms=0) as e:
        e.create_user("u")
        exp = (now_ms() // 1000 + 2) * 1000
        s = e.issue_session_token("u", expires_at_ms=exp)
        assert e.verify_session_token(s.token).user_id == "u"
        time.sleep(max(0.0, (exp - now_ms()) / 1000) + 0.05)
        with pytest.raises(tessera.TokenExpired) as info:
            e.verify_session_token(s.token)
        assert info.value.code == 21
        with pytest.raises(tessera.TokenExpired):
            e.authenticate("u", s.token)


def test_tampered_and_malformed_session_tokens(engine: tessera.Engine, alice: str) -> None:
    t = engine.issue_session_token(alice).token
    header, payload, sig = t.split(".")
    cases = [
        "",
        "a.b.c",
        t + "x",
        t[:-1],
        f"{header}.{payload}.{'A' * 43}",
        f"{payload}.{header}.{sig}",
        f"{header}.{payload}",
        t.replace(".", "!"),
    ]
    for bad in cases:
        with pytest.raises(tessera.InvalidToken):
            engine.verify_session_token(bad)


def test_revoke_all_sessions(engine: tessera.Engine, alice: str) -> None:
    s = engine.issue_session_token(alice)
    engine.revoke_all_sessions()
    with pytest.raises(tessera.TokenRevoked):  # genuine, signed by a retired key
        engine.verify_session_token(s.token)
    assert engine.verify_session_token(engine.issue_session_token(alice).token).key_id == "2"
    kinds = [(e.kind, e.key_id) for e in engine.drain_events()]
    assert kinds == [(EventKind.KEY_RETIRED, "1"), (EventKind.ALL_SESSIONS_REVOKED, None)]


# docs/ERRORS.md, "One failure, one error kind": each case gets one error from verify and from
# authenticate, for its own user "a", another user "b", and an id nobody has (a token never
# tells whether an id exists). The expiry cases need a manual clock: tests/engine.rs has them.


def _session(e: tessera.Engine) -> str:
    return e.issue_session_token("a").token


def _access(e: tessera.Engine) -> str:
    return e.issue_access_token("a").token


def _foreign(rotations: int) -> str:
    with tessera.Engine.in_memory() as other:
        other.create_user("a")
        for _ in range(rotations):
            other.rotate_key()
        return other.issue_session_token("a").token


def _then(make: Any, *steps: Any) -> Any:
    def run(e: tessera.Engine) -> str:
        t = make(e)
        for step in steps:
            step(e)
        return t
    return run


def _tampered(e: tessera.Engine) -> str:
    t = _session(e)
    return t[:-1] + ("B" if t[-1] == "A" else "A")


def _retire_1(e: tessera.Engine) -> None:
    e.rotate_key()
    e.retire_key("1")


def _recreate(e: tessera.Engine) -> None:
    e.delete_user("a")
    e.create_user("a")


TOKEN_CASES = [
    ("session, valid", _session, None),
    ("session, garbage", lambda e: "garbage", tessera.InvalidToken),
    ("session, tampered signature", _tampered, tessera.InvalidToken),
    ("session, another engine's key", lambda e: _foreign(0), tessera.InvalidToken),
    ("session, key id never issued", lambda e: _foreign(4), tessera.InvalidToken),
    ("session, sessions revoked", _then(_session, lambda e: e.revoke_sessions("a")),
     tessera.TokenRevoked),
    ("session, key retired", _then(_session, _retire_1), tessera.TokenRevoked),
    ("session, everyone revoked", _then(_session, lambda e: e.revoke_all_sessions()),
     tessera.TokenRevoked),
    ("session, user deleted", _then(_session, lambda e: e.delete_user("a")),
     tessera.TokenRevoked),
    ("session, user deleted and id re-created", _then(_session, _recreate),
     tessera.TokenRevoked),
    ("session, user deactivated", _then(_session, lambda e: e.deactivate_user("a")),
     tessera.UserDeactivated),
    ("session, revoked and deactivated",
     _then(_session, lambda e: e.revoke_sessions("a"), lambda e: e.deactivate_user("a")),
     tessera.TokenRevoked),
    ("access, valid", _access, None),
    ("access, revoked", _then(_access, lambda e: e.revoke_all_access_tokens("a")),
     tessera.InvalidToken),
    ("access, user deleted and id re-created", _then(_access, _recreate),
     tessera.InvalidToken),
    ("access, user deactivated", _then(_access, lambda e: e.deactivate_user("a")),
     tessera.UserDeactivated),
]


@pytest.mark.parametrize("name,make,want", TOKEN_CASES, ids=[c[0] for c in TOKEN_CASES])
def test_every_token_failure_has_one_error_kind(name: str, make: Any, want: Any) -> None:
    with tessera.Engine.in_memory() as e:
        e.create_user("a")
        e.create_user("b")
        token = make(e)
        verify = e.verify_access_token if token.startswith("tsat_") else e.verify_session_token
        checks = [(verify, (token,), want), (e.authenticate, ("a", token), want)]
        checks += [(e.authenticate, (other, token), want or tessera.InvalidToken)
                   for other in ("b", "nobody")]
        for fn, args, expected in checks:
            if expected is None:
                fn(*args)
            else:
                with pytest.raises(tessera.TesseraError) as info:
                    fn(*args)
                assert type(info.value) is expected, (name, args[:-1], info.value)


# ----- keys -----------------------------------------------------------------------------------


def test_rotate_and_retire_keys(engine: tessera.Engine, alice: str) -> None:
    [k1] = engine.keys()
    assert k1.key_id == "1" and k1.active
    old = engine.issue_session_token(alice)
    k2 = engine.rotate_key()
    assert k2.key_id == "2" and k2.active
    assert [(k.key_id, k.active) for k in engine.keys()] == [("1", False), ("2", True)]
    assert engine.verify_session_token(old.token).key_id == "1"  # still verifies
    assert engine.verify_session_token(engine.issue_session_token(alice).token).key_id == "2"
    with pytest.raises(tessera.KeyActive) as e:
        engine.retire_key("2")
    assert e.value.code == 31
    engine.retire_key("1")
    with pytest.raises(tessera.TokenRevoked):
        engine.verify_session_token(old.token)
    for bad in ("1", "zzzz", "", "A"):
        with pytest.raises(tessera.KeyNotFound) as e:
            engine.retire_key(bad)
        assert e.value.code == 30
    assert [(e.kind, e.key_id) for e in engine.drain_events()] == [(EventKind.KEY_RETIRED, "1")]


def test_key_ids_exhaust() -> None:
    # Key ids are 1..=3 base-36 characters: after 46655 keys the ring refuses, and the
    # engine keeps working with the keys it has.
    with tessera.Engine.in_memory(event_queue_capacity=1) as e:
        for _ in range(36**3 - 2):
            e.revoke_all_sessions()
        assert [k.key_id for k in e.keys()] == ["zzz"]
        with pytest.raises(tessera.Exhausted) as info:
            e.rotate_key()
        assert info.value.code == 40
        with pytest.raises(tessera.Exhausted):
            e.revoke_all_sessions()
        e.create_user("u")
        assert e.verify_session_token(e.issue_session_token("u").token).key_id == "zzz"


# ----- authenticate ---------------------------------------------------------------------------


def test_authenticate_with_each_credential(engine: tessera.Engine, alice: str) -> None:
    with pytest.raises(tessera.TokenRequired) as e:
        engine.authenticate(alice)
    assert e.value.code == 24
    a = engine.issue_access_token(alice)
    s = engine.issue_session_token(alice)
    r = engine.authenticate(alice, a.token)
    assert (r.user_id, r.method, r.token_id, r.expires_at_ms) == (
        alice, AuthMethod.ACCESS_TOKEN, a.token_id, None)
    r = engine.authenticate(alice, s.token)
    assert (r.method, r.token_id, r.expires_at_ms) == (AuthMethod.SESSION_TOKEN, None, s.expires_at_ms)
    with pytest.raises(tessera.TokenRequired):
        engine.authenticate(alice)
    with pytest.raises(tessera.InvalidToken):  # a token never tells whether an id exists
        engine.authenticate("ghost", s.token)
    with pytest.raises(tessera.InvalidToken):
        engine.authenticate(alice, "nonsense")


def test_someone_elses_token_is_invalid(engine: tessera.Engine, alice: str) -> None:
    engine.create_user("bob")
    bob_session = engine.issue_session_token("bob")
    bob_access = engine.issue_access_token("bob")
    for t in (bob_session.token, bob_access.token):
        with pytest.raises(tessera.InvalidToken):
            engine.authenticate(alice, t)


def test_id_only_login_when_configured() -> None:
    with tessera.Engine.in_memory(allow_id_only_login=True) as e:
        e.create_user("u")
        r = e.authenticate("u")
        assert (r.user_id, r.method, r.token_id, r.expires_at_ms) == ("u", AuthMethod.USER_ID_ONLY, None, None)
        e.issue_session_token("u")
        with pytest.raises(tessera.TokenRequired):
            e.authenticate("u")  # once a token was issued, a token is required


def test_revoked_session_via_authenticate(engine: tessera.Engine, alice: str) -> None:
    s = engine.issue_session_token(alice)
    engine.revoke_sessions(alice)
    with pytest.raises(tessera.TokenRevoked):
        engine.authenticate(alice, s.token)
