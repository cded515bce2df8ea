"""Session tokens are standard HS256 JWTs: PyJWT verifies one given the key.

A live engine hands out its key with ``Engine.export_key`` (secret material: whoever holds it
can mint tokens), and PyJWT then verifies that engine's tokens, and even re-signs them byte for
byte. The golden vector that pins Tessera's wire format in ``src/session_token.rs``
(``golden_token_stays_byte_identical``) is checked too, so a format change cannot slip past
as long as both sides change together.
"""

from __future__ import annotations

import base64
import json
import re

import jwt
import pytest

import tessera

from conftest import REPO

GOLDEN_KEY = b"tessera-golden-vector-secret-32b"
GOLDEN_CLAIMS = {"sub": "42", "rv": 3, "iat": 1_763_000_000, "exp": 1_763_604_800}
GOLDEN = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6IjEifQ"
    ".eyJzdWIiOiI0MiIsInJ2IjozLCJpYXQiOjE3NjMwMDAwMDAsImV4cCI6MTc2MzYwNDgwMH0"
    ".73e7pI-TOup0s6puZLR586IfirjAwGUYwAMHfgKxvak"
)
# Format 1 (before `sub`): the same claims with the handle as "u"; still verifies.
GOLDEN_V1_CLAIMS = {"u": 42, "rv": 3, "iat": 1_763_000_000, "exp": 1_763_604_800}
GOLDEN_V1 = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6IjEifQ"
    ".eyJ1Ijo0MiwicnYiOjMsImlhdCI6MTc2MzAwMDAwMCwiZXhwIjoxNzYzNjA0ODAwfQ"
    ".dCd7pqjXAY4dOB2Lz8-Lwq7QMm4lKJhsed7PE_HuBZ0"
)


def b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_golden_vector_is_the_one_rust_pins() -> None:
    src = REPO / "src" / "session_token.rs"
    text = src.read_text(encoding="utf-8") if src.is_file() else ""
    m = re.search(r'const GOLDEN: &str = "([^"]+)"', text)
    if m is None:
        pytest.skip("src/session_token.rs without the golden vector in this checkout")
    assert m.group(1) == GOLDEN
    m = re.search(r'const GOLDEN_V1: &str = "([^"]+)"', text)
    assert m is not None and m.group(1) == GOLDEN_V1


def test_pyjwt_verifies_a_tessera_session_token_given_the_key() -> None:
    claims = jwt.decode(
        GOLDEN, GOLDEN_KEY, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert claims == GOLDEN_CLAIMS
    assert jwt.get_unverified_header(GOLDEN) == {"alg": "HS256", "kid": "1"}
    # PyJWT enforces the same expiry (this vector expired in November 2025).
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(GOLDEN, GOLDEN_KEY, algorithms=["HS256"])
    # Wrong key or tampered signature: rejected.
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(GOLDEN, b"x" * 32, algorithms=["HS256"], options={"verify_exp": False})
    tampered = GOLDEN[:-2] + ("AA" if GOLDEN[-2:] != "AA" else "BB")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered, GOLDEN_KEY, algorithms=["HS256"], options={"verify_exp": False})


def test_pyjwt_signs_byte_identical_tokens_given_the_key() -> None:
    # Same header (PyJWT sorts header keys; "typ" dropped) and payload order: the same bytes.
    for claims, golden in ((GOLDEN_CLAIMS, GOLDEN), (GOLDEN_V1_CLAIMS, GOLDEN_V1)):
        token = jwt.encode(claims, GOLDEN_KEY, algorithm="HS256",
                           headers={"kid": "1", "typ": None})
        assert token == golden
    assert jwt.decode(GOLDEN_V1, GOLDEN_KEY, algorithms=["HS256"],
                      options={"verify_exp": False}) == GOLDEN_V1_CLAIMS


def subject(token: str, key: bytes) -> int:
    """What an external verifier does: check the token with the exported key and read its
    subject, a decimal string naming the user's handle."""
    claims = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    assert isinstance(claims["sub"], str) and claims["sub"].isdigit()
    return int(claims["sub"])


def test_pyjwt_subject_resolves_to_the_user(engine: tessera.Engine) -> None:
    ids = ["alice", "bob", "Zoë", "x" * 80, "carol"]
    for uid in ids:
        engine.create_user(uid)
    for uid in ids:
        s = engine.issue_session_token(uid)
        key = engine.export_key(jwt.get_unverified_header(s.token)["kid"])
        user = engine.get_user_by_handle(subject(s.token, key))
        assert user == engine.get_user(uid) and user.user_id == uid
        assert tessera.SESSION_TOKEN_MIN_LEN <= len(s.token) <= tessera.SESSION_TOKEN_MAX_LEN
    # A deleted user's handle finds nobody, even once its id is taken again.
    s = engine.issue_session_token("bob")
    key = engine.export_key(jwt.get_unverified_header(s.token)["kid"])
    old = subject(s.token, key)
    engine.delete_user("bob")
    new = engine.create_user("bob")
    assert new.handle != old
    with pytest.raises(tessera.UserNotFound):
        engine.get_user_by_handle(old)
    assert engine.get_user_by_handle(subject(engine.issue_session_token("bob").token, key)) == new
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="handle"):
            engine.get_user_by_handle(bad)
    with pytest.raises(tessera.UserNotFound):
        engine.get_user_by_handle(2**64 - 1)


def test_live_tokens_have_the_golden_shape_and_reported_claims(engine: tessera.Engine) -> None:
    engine.create_user("alice")
    engine.revoke_sessions("alice")  # rv becomes 1
    s = engine.issue_session_token("alice")
    v = engine.verify_session_token(s.token)
    header, payload, sig = s.token.split(".")
    assert jwt.get_unverified_header(s.token) == {"alg": "HS256", "kid": v.key_id}
    assert base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)) == (
        b'{"alg":"HS256","kid":"' + v.key_id.encode() + b'"}')
    claims = jwt.decode(s.token, options={"verify_signature": False})
    assert list(claims) == ["sub", "rv", "iat", "exp"] == list(b64json(payload))
    assert claims["rv"] == 1 and claims["sub"] == str(engine.get_user("alice").handle)
    assert claims["exp"] * 1000 == v.expires_at_ms == s.expires_at_ms
    assert claims["iat"] * 1000 == v.issued_at_ms
    assert len(sig) == 43
    # Without Tessera's key PyJWT must not accept it.
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(s.token, GOLDEN_KEY, algorithms=["HS256"])


def test_tessera_rejects_a_pyjwt_token_signed_with_another_key(engine: tessera.Engine) -> None:
    engine.create_user("alice")
    forged = jwt.encode({"sub": "1", "rv": 0, "iat": 1, "exp": 4_000_000_000}, b"k" * 32,
                        algorithm="HS256", headers={"kid": "1", "typ": None})
    with pytest.raises(tessera.InvalidToken):
        engine.verify_session_token(forged)


def test_pyjwt_verifies_a_live_token_with_the_exported_key(engine: tessera.Engine) -> None:
    engine.create_user("alice")
    engine.revoke_sessions("alice")  # rv becomes 1
    s = engine.issue_session_token("alice")
    v = engine.verify_session_token(s.token)
    kid = jwt.get_unverified_header(s.token)["kid"]
    assert kid == v.key_id
    key = engine.export_key(kid)

    claims = jwt.decode(s.token, key, algorithms=["HS256"])
    assert claims["rv"] == 1
    assert engine.get_user_by_handle(int(claims["sub"])).user_id == "alice"
    assert claims["exp"] * 1000 == s.expires_at_ms == v.expires_at_ms
    assert claims["iat"] * 1000 == v.issued_at_ms
    # PyJWT, given the key, signs exactly the token Tessera issued.
    assert jwt.encode(claims, key, algorithm="HS256", headers={"kid": kid, "typ": None}) == s.token

    # Tampered payload or signature, or another engine's key: rejected.
    header, payload, sig = s.token.split(".")
    other = jwt.encode(dict(claims, sub=str(int(claims["sub"]) + 1)), b"k" * 32,
                       algorithm="HS256", headers={"kid": kid, "typ": None}).split(".")[1]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{header}.{other}.{sig}", key, algorithms=["HS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(s.token[:-2] + ("AA" if s.token[-2:] != "AA" else "BB"), key,
                   algorithms=["HS256"])
    with tessera.Engine.in_memory() as stranger:
        stranger.create_user("alice")
        skid = stranger.keys()[0].key_id
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(s.token, stranger.export_key(skid), algorithms=["HS256"])

    # After a rotation the old key still verifies its tokens, the new key signs new ones.
    new = engine.rotate_key()
    s2 = engine.issue_session_token("alice")
    assert jwt.get_unverified_header(s2.token)["kid"] == new.key_id
    jwt.decode(s2.token, engine.export_key(new.key_id), algorithms=["HS256"])
    jwt.decode(s.token, key, algorithms=["HS256"])


def test_an_external_verifier_does_not_see_revocation(engine: tessera.Engine) -> None:
    # What export_key's documentation warns about: PyJWT checks signature and expiry only.
    engine.create_user("alice")
    s = engine.issue_session_token("alice")
    key = engine.export_key(jwt.get_unverified_header(s.token)["kid"])
    engine.revoke_sessions("alice")
    with pytest.raises(tessera.TokenRevoked):
        engine.verify_session_token(s.token)
    assert jwt.decode(s.token, key, algorithms=["HS256"])["rv"] == 0
