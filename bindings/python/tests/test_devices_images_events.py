"""Devices, profile images and events."""

from __future__ import annotations

import hashlib

import pytest

import tessera
from tessera import Device, DeviceType, EventKind, PushMode

from conftest import JPEG, PNG


# ----- devices --------------------------------------------------------------------------------


def test_add_list_find_remove(engine: tessera.Engine, alice: str) -> None:
    r = engine.add_device(alice, "ios", "push-1", voip_push_token="voip", os_version="17.1",
                          mode=PushMode.SANDBOX)
    assert r.evicted is None
    d = r.device
    assert isinstance(d, Device)
    assert (d.device_type, d.push_token, d.voip_push_token, d.os_version, d.mode) == (
        DeviceType.IOS, "push-1", "voip", "17.1", PushMode.SANDBOX)
    engine.add_device(alice, DeviceType.WEB, "push-2")
    assert [x.push_token for x in engine.list_devices(alice)] == ["push-1", "push-2"]
    assert engine.find_user_by_push_token("push-2").user_id == alice
    assert engine.remove_device(alice, "push-1").push_token == "push-1"
    with pytest.raises(tessera.DeviceNotFound) as e:
        engine.remove_device(alice, "push-1")
    assert e.value.code == 10
    with pytest.raises(tessera.DeviceNotFound):
        engine.find_user_by_push_token("push-1")


def test_push_token_moves_between_users(engine: tessera.Engine, alice: str) -> None:
    engine.create_user("bob")
    engine.add_device(alice, "android", "shared")
    engine.add_device("bob", "android", "shared")
    assert engine.find_user_by_push_token("shared").user_id == "bob"
    assert engine.list_devices(alice) == []


def test_per_type_limit_evicts_oldest() -> None:
    with tessera.Engine.in_memory(devices_per_type_max=2) as e:
        e.create_user("u")
        e.add_device("u", "web", "a")
        e.add_device("u", "web", "b")
        e.add_device("u", "ios", "c")
        r = e.add_device("u", "web", "d")
        assert r.evicted is not None and r.evicted.push_token == "a"
        assert sorted(x.push_token for x in e.list_devices("u")) == ["b", "c", "d"]


def test_device_field_limits_and_errors(engine: tessera.Engine, alice: str) -> None:
    engine.add_device(alice, "web", "t" * 1024, os_version="9" * 64)
    with pytest.raises(tessera.FieldTooLong):
        engine.add_device(alice, "web", "t" * 1025)
    with pytest.raises(tessera.FieldTooLong):
        engine.add_device(alice, "web", "x", os_version="9" * 65)
    with pytest.raises(tessera.FieldTooLong):
        engine.add_device(alice, "web", "x", voip_push_token="v" * 1025)
    with pytest.raises(tessera.InvalidField):
        engine.add_device(alice, "web", "")
    with pytest.raises(ValueError):
        engine.add_device(alice, "tv", "x")  # not a DeviceType: rejected in Python
    with pytest.raises(tessera.UserNotFound):
        engine.add_device("ghost", "web", "x")
    with pytest.raises(tessera.UserNotFound):
        engine.list_devices("ghost")
    with pytest.raises(tessera.UserNotFound):
        engine.remove_device("ghost", "x")
    assert len(engine.list_devices(alice)) == 1


# ----- profile images -------------------------------------------------------------------------


@pytest.mark.parametrize("data,fmt,ext", [(PNG, "png", "png"), (JPEG, "jpeg", "jpg")])
def test_upload_and_read_back(engine: tessera.Engine, alice: str, data: bytes, fmt: str, ext: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    u = engine.set_profile_image(alice, data)
    assert u.profile_url == f"tessera://images/{digest}.{ext}"
    assert engine.get_user(alice).profile_url == u.profile_url
    img = engine.profile_image(digest)
    assert img.data == data and img.format == fmt and img.content_type == f"image/{fmt}"
    assert img.sha256_hex == digest
    assert engine.profile_image(digest.upper()).data == data
    assert engine.set_profile_image(alice, bytearray(data)).profile_url == u.profile_url


def test_image_errors(alice: str) -> None:
    with tessera.Engine.in_memory(profile_image_max_bytes=64) as e:
        e.create_user("u")
        e.set_profile_image("u", PNG + bytes(64 - len(PNG)))
        with pytest.raises(tessera.ImageTooLarge) as info:
            e.set_profile_image("u", PNG + bytes(65 - len(PNG)))
        assert info.value.code == 12
        with pytest.raises(tessera.InvalidImage) as info:
            e.set_profile_image("u", b"GIF89a....")
        assert info.value.code == 11
        with pytest.raises(tessera.InvalidImage):
            e.set_profile_image("u", b"")
        with pytest.raises(tessera.UserNotFound):
            e.set_profile_image("ghost", PNG)
        with pytest.raises(TypeError):
            e.set_profile_image("u", "not bytes")  # type: ignore[arg-type]
        for bad in ("0" * 64, "xyz", ""):
            with pytest.raises(tessera.ImageNotFound) as info:
                e.profile_image(bad)
            assert info.value.code == 13


# ----- events ---------------------------------------------------------------------------------


def test_drain_in_order_with_max(engine: tessera.Engine) -> None:
    for u in ("a", "b", "c"):
        engine.create_user(u)
        engine.revoke_sessions(u)
    first = engine.drain_events(max=2)
    assert [(e.seq, e.user_id) for e in first] == [(1, "a"), (2, "b")]
    assert all(e.kind == EventKind.SESSIONS_REVOKED and e.code == 4 and e.at_ms > 0 for e in first)
    assert [e.seq for e in engine.drain_events()] == [3]
    assert engine.drain_events() == []


def test_every_event_kind(engine: tessera.Engine) -> None:
    with tessera.Engine.in_memory(access_tokens_per_user=1) as e:
        e.create_user("u")
        e.issue_access_token("u")
        t = e.issue_access_token("u")  # evicts
        e.revoke_access_token("u", t.token_id)
        e.issue_access_token("u")
        e.revoke_all_access_tokens("u")
        e.revoke_sessions("u")
        e.deactivate_user("u")
        e.delete_user("u")
        e.rotate_key()
        e.retire_key("1")
        e.revoke_all_sessions()
        got = [(ev.kind, ev.code) for ev in e.drain_events()]
    assert got == [
        (EventKind.ACCESS_TOKEN_EVICTED, 1),
        (EventKind.ACCESS_TOKEN_REVOKED, 2),
        (EventKind.ACCESS_TOKENS_REVOKED, 3),
        (EventKind.SESSIONS_REVOKED, 4),
        (EventKind.USER_DEACTIVATED, 6),
        (EventKind.USER_DELETED, 5),
        (EventKind.KEY_RETIRED, 7),
        (EventKind.KEY_RETIRED, 7),
        (EventKind.ALL_SESSIONS_REVOKED, 8),
    ]


def test_drain_max_bounds(engine: tessera.Engine) -> None:
    engine.drain_events(max=65536)
    with pytest.raises(tessera.InvalidArgument):
        engine.drain_events(max=0)
    with pytest.raises(tessera.InvalidArgument):
        engine.drain_events(max=65537)
    with pytest.raises(ValueError):
        engine.drain_events(max=-1)


def test_dropped_events_counted() -> None:
    with tessera.Engine.in_memory(event_queue_capacity=2) as e:
        e.create_user("u")
        for _ in range(5):
            e.revoke_sessions("u")
        assert e.dropped_events() == 3
        assert [ev.seq for ev in e.drain_events()] == [4, 5]
