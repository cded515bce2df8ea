"""Shared fixtures. The suite runs against whichever library ``import tessera`` finds (the
bundled copy after ``pip install``, or ``$TESSERA_LIBRARY``); ``scripts/test-python.sh`` sets
that up."""

from __future__ import annotations

import pathlib
from typing import Iterator

import pytest

import tessera

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def engine() -> Iterator[tessera.Engine]:
    with tessera.Engine.in_memory() as e:
        yield e


@pytest.fixture
def alice(engine: tessera.Engine) -> str:
    engine.create_user("alice", "Alice")
    return "alice"


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
JPEG = b"\xff\xd8\xff\xe0" + bytes(16)
