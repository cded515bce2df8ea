"""Users: every operation, every field limit at its edge, every error code they can raise."""

from __future__ import annotations

import pytest

import tessera
from tessera import User


def test_create_get_round_trip_every_field(engine: tessera.Engine) -> None:
    u = engine.create_user(
        "alice",
        "Alice",
        profile_url="https://example.com/a.png",
        metadata={"team": "red", "@private": {"ssn": "x"}, "n": 3},
        tags=("a", "b"),
        role="admin",
        status_message="hi ✓",
        link="https://example.com/alice",
        email="alice@example.com",
        mobile_number="+15551234567",
        discovery_keys=["alice-key"],
    )
    assert isinstance(u, User)
    assert u.user_id == "alice" and u.nickname == "Alice" and u.is_active
    assert u.metadata == {"team": "red", "@private": {"ssn": "x"}, "n": 3}
    assert u.tags == ["a", "b"] and u.discovery_keys == ["alice-key"]
    assert u.status_message == "hi ✓" and u.created_at_ms > 1_600_000_000_000
    assert engine.get_user("alice") == u
    assert engine.user_count() == 1
    with pytest.raises(AttributeError):
        u.nickname = "x"  # type: ignore[misc]  # frozen


def test_unicode_ids_round_trip(engine: tessera.Engine) -> None:
    engine.create_user("ユーザー", "名前")
    assert engine.get_user("ユーザー").nickname == "名前"


def test_duplicate_and_missing(engine: tessera.Engine, alice: str) -> None:
    with pytest.raises(tessera.UserAlreadyExists) as e:
        engine.create_user("alice")
    assert e.value.code == 3
    for call in (
        lambda: engine.get_user("bob"),
        lambda: engine.update_user("bob", nickname="B"),
        lambda: engine.delete_user("bob"),
        lambda: engine.deactivate_user("bob"),
        lambda: engine.reactivate_user("bob"),
        lambda: engine.find_user_by_discovery_key("nope"),
    ):
        with pytest.raises(tessera.UserNotFound):
            call()


def test_upsert(engine: tessera.Engine) -> None:
    first = engine.upsert_user("u", "First")
    assert first.created and first.user.nickname == "First"
    second = engine.upsert_user("u", "Second")
    assert not second.created and second.user.nickname == "First"
    with pytest.raises(tessera.FieldTooLong):
        engine.upsert_user("v", "n" * 81)


def test_update_sets_clears_and_leaves_alone(engine: tessera.Engine) -> None:
    engine.create_user("u", "Old", role="r", email="a@b.io", tags=["t"], metadata={"k": "v"})
    u = engine.update_user("u", nickname="New", role=None, tags=[])
    assert (u.nickname, u.role, u.tags, u.email, u.metadata) == ("New", None, [], "a@b.io", {"k": "v"})
    assert engine.update_user("u") == u  # empty patch changes nothing
    with pytest.raises(TypeError):
        engine.update_user("u", nickname=None)


def test_update_is_all_or_nothing(engine: tessera.Engine) -> None:
    before = engine.create_user("u", "Old")
    with pytest.raises(tessera.InvalidField):
        engine.update_user("u", nickname="New", email="not-an-email")
    assert engine.get_user("u") == before


def test_delete_then_recreate_gets_fresh_identity(engine: tessera.Engine) -> None:
    engine.create_user("u")
    session = engine.issue_session_token("u")
    engine.delete_user("u")
    with pytest.raises(tessera.UserNotFound):
        engine.get_user("u")
    engine.create_user("u")
    # The old token names the deleted user's handle, never the new user's: revoked.
    with pytest.raises(tessera.TokenRevoked):
        engine.verify_session_token(session.token)
    assert [e.kind for e in engine.drain_events()] == [tessera.EventKind.USER_DELETED]


def test_deactivate_reactivate(engine: tessera.Engine, alice: str) -> None:
    s = engine.issue_session_token(alice)
    a = engine.issue_access_token(alice)
    assert not engine.deactivate_user(alice).is_active
    assert not engine.deactivate_user(alice).is_active  # idempotent
    with pytest.raises(tessera.UserDeactivated) as e:
        engine.verify_session_token(s.token)
    assert e.value.code == 5
    with pytest.raises(tessera.UserDeactivated):
        engine.verify_access_token(a.token)
    with pytest.raises(tessera.UserDeactivated):
        engine.issue_session_token(alice)
    with pytest.raises(tessera.UserDeactivated):
        engine.authenticate(alice, s.token)
    assert engine.reactivate_user(alice).is_active
    assert engine.verify_session_token(s.token).user_id == alice


def test_list_filters_and_cursor(engine: tessera.Engine) -> None:
    for i in range(7):
        engine.create_user(
            f"u{i}", f"nick{i % 2}", tags=["even"] if i % 2 == 0 else [],
            metadata={"team": "red" if i < 3 else "blue", "@private": {"team": "red"}},
        )
    engine.deactivate_user("u6")
    page = engine.list_users(limit=3)
    assert [u.user_id for u in page.users] == ["u0", "u1", "u2"] and page.next_cursor
    rest = engine.list_users(limit=100, cursor=page.next_cursor)
    assert [u.user_id for u in rest.users] == ["u3", "u4", "u5", "u6"] and rest.next_cursor is None
    assert [u.user_id for u in engine.iter_users(page_size=2)] == [f"u{i}" for i in range(7)]
    ids = lambda **f: [u.user_id for u in engine.list_users(**f).users]  # noqa: E731
    assert ids(tag="even") == ["u0", "u2", "u4", "u6"]
    assert ids(nickname_prefix="nick1") == ["u1", "u3", "u5"]
    assert ids(metadata_key="team", metadata_value="red") == ["u0", "u1", "u2"]
    assert ids(metadata_key="@private", metadata_value="red") == []  # private never matches
    assert ids(active=False) == ["u6"]
    assert ids(user_ids=["u5", "u1", "zz"]) == ["u1", "u5"]
    assert ids(tag="even", active=True) == ["u0", "u2", "u4"]


@pytest.mark.parametrize("limit", [0, 101])
def test_list_limit_out_of_range(engine: tessera.Engine, limit: int) -> None:
    with pytest.raises(tessera.InvalidArgument) as e:
        engine.list_users(limit=limit)
    assert e.value.code == 1


def test_list_limit_edges_pass(engine: tessera.Engine) -> None:
    engine.create_user("a")
    assert len(engine.list_users(limit=1).users) == 1
    assert len(engine.list_users(limit=100).users) == 1


def test_bad_cursor(engine: tessera.Engine) -> None:
    with pytest.raises(tessera.InvalidArgument):
        engine.list_users(cursor="!!not-a-cursor!!")


def test_discovery_keys(engine: tessera.Engine) -> None:
    engine.create_user("a", discovery_keys=["k1", "k2"])
    assert engine.find_user_by_discovery_key("k2").user_id == "a"
    with pytest.raises(tessera.DiscoveryKeyTaken) as e:
        engine.create_user("b", discovery_keys=["k1"])
    assert e.value.code == 9
    with pytest.raises(tessera.UserNotFound):
        engine.get_user("b")  # nothing was created


# (field, value at the limit, value one past it, error past it)
LIMITS = [
    ("nickname", "n" * 80, "n" * 81, tessera.FieldTooLong),
    ("role", "r" * 100, "r" * 101, tessera.FieldTooLong),
    ("status_message", "s" * 255, "s" * 256, tessera.FieldTooLong),
    ("profile_url", "https://e.io/" + "p" * 2035, "https://e.io/" + "p" * 2036, tessera.FieldTooLong),
    ("link", "https://e.io/" + "p" * 2987, "https://e.io/" + "p" * 2988, tessera.FieldTooLong),
    ("mobile_number", "+" + "1" * 15, "+" + "1" * 16, tessera.FieldTooLong),
    ("tags", [f"t{i}" for i in range(25)], [f"t{i}" for i in range(26)], tessera.TooManyItems),
    ("tags", ["t" * 100], ["t" * 101], tessera.FieldTooLong),
    ("discovery_keys", [f"k{i}" for i in range(10)], [f"k{i}" for i in range(11)], tessera.TooManyItems),
    ("discovery_keys", ["k" * 100], ["k" * 101], tessera.FieldTooLong),
    # {"k":"vvv…"} is 8 bytes of framing plus the value: 5120 bytes at the limit.
    ("metadata", {"k": "v" * 5112}, {"k": "v" * 5113}, tessera.FieldTooLong),
]


@pytest.mark.parametrize("field,ok,bad,err", LIMITS, ids=[f"{x[0]}-{x[3].__name__}" for x in LIMITS])
def test_field_limits_at_the_edge(engine: tessera.Engine, field: str, ok, bad, err) -> None:
    engine.create_user("ok", **{field: ok})
    with pytest.raises(err):
        engine.create_user("bad", **{field: bad})
    with pytest.raises(tessera.UserNotFound):
        engine.get_user("bad")
    engine.create_user("u")
    with pytest.raises(err):
        engine.update_user("u", **{field: bad})
    assert getattr(engine.get_user("u"), field) in (None, "", [], {})


def test_email_limit_and_format(engine: tessera.Engine) -> None:
    def email(x: int) -> str:
        return f"{'l' * 64}@{'d' * 63}.{'e' * 63}.{'f' * x}.io"

    assert len(email(58)) == 254
    engine.create_user("ok", email=email(58))
    with pytest.raises(tessera.FieldTooLong):
        engine.create_user("bad", email=email(59))
    with pytest.raises(tessera.InvalidField) as e:
        engine.create_user("bad", email="nope")
    assert e.value.code == 7


@pytest.mark.parametrize(
    "field,value",
    [
        ("profile_url", "ftp://x.io/a"),
        ("link", "not a url"),
        ("mobile_number", "12a"),
        ("nickname", "tab\there"),
        ("tags", ["dup", "dup"]),
    ],
)
def test_invalid_field_formats(engine: tessera.Engine, field: str, value) -> None:
    with pytest.raises(tessera.InvalidField):
        engine.create_user("u", **{field: value})


def test_user_id_policy_edges(engine: tessera.Engine) -> None:
    engine.create_user("i" * 80)
    for bad in ["i" * 81, "", "has space", "a/b", "a?b", "a#b", "a%b", "ctl\x01"]:
        with pytest.raises(tessera.InvalidUserId) as e:
            engine.create_user(bad)
        assert e.value.code == 2
    assert engine.user_count() == 1


def test_configured_user_id_rules() -> None:
    with tessera.Engine.in_memory(
        user_id_policy=tessera.UserIdPolicy.STRICT, user_id_case="lowercase", user_id_max_chars=191
    ) as e:
        assert e.create_user("Alice_1").user_id == "alice_1"
        assert e.get_user("ALICE_1").user_id == "alice_1"
        with pytest.raises(tessera.InvalidUserId):
            e.create_user("dot.ted")
        e.create_user("x" * 191)
        with pytest.raises(tessera.InvalidUserId):
            e.create_user("y" * 192)


def test_input_too_large_changes_nothing(engine: tessera.Engine) -> None:
    with pytest.raises(tessera.InputTooLarge) as e:
        engine.get_user("x" * (16 * 1024 * 1024 + 1))
    assert e.value.code == 104


@pytest.mark.parametrize("bad", [None, 42, b"alice", ["alice"]])
def test_create_and_upsert_type_check_the_id(engine: tessera.Engine, bad: object) -> None:
    for method in (engine.create_user, engine.upsert_user):
        with pytest.raises(TypeError, match="user_id must be str"):
            method(bad)  # type: ignore[arg-type]
    assert engine.user_count() == 0


def test_create_and_update_type_check_the_fields(engine: tessera.Engine) -> None:
    for kwargs in ({"nickname": None}, {"nickname": 5}, {"role": 1}, {"tags": "abc"},
                   {"tags": [1]}, {"discovery_keys": [b"k"]}, {"metadata": [("k", "v")]}):
        with pytest.raises(TypeError):
            engine.create_user("u", **kwargs)  # type: ignore[arg-type]
    assert engine.user_count() == 0
    engine.create_user("u", "U", tags=("a", "b"), metadata={"k": 1})
    for kwargs in ({"nickname": 5}, {"email": b"a@b.io"}, {"tags": "abc"}):
        with pytest.raises(TypeError):
            engine.update_user("u", **kwargs)
    assert engine.get_user("u").nickname == "U"


def test_non_str_arguments_are_rejected_before_the_call(engine: tessera.Engine) -> None:
    with pytest.raises(TypeError):
        engine.get_user(42)  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        engine.get_user("lone \ud800 surrogate")
    with pytest.raises(TypeError):
        engine.create_user("u", metadata={"x": object()})
