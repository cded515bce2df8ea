"""The Python examples in the READMEs and docstrings run, so the documentation cannot rot."""

from __future__ import annotations

import doctest
import re

import pytest

import tessera
import tessera.engine

from conftest import REPO

READMES = [REPO / "README.md", REPO / "bindings" / "python" / "README.md"]


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_readme_python_blocks_run(path, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    assert blocks, f"no python example in {path}"
    for block in blocks:
        exec(compile(block, str(path), "exec"), {})


@pytest.mark.parametrize("module", [tessera, tessera.engine], ids=lambda m: m.__name__)
def test_docstring_examples(module) -> None:
    failures, tried = doctest.testmod(module, verbose=False)
    assert tried > 0 and failures == 0
