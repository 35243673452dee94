"""Syntax trees of source files for the tests that check the code itself."""

from __future__ import annotations

import ast
import functools
from pathlib import Path


def parse(path: Path) -> ast.Module:
    """The syntax tree of `path`, parsed once per run.

    CPython 3.11.7's AST validator can raise a spurious SystemError ("AST constructor recursion
    depth mismatch", gh-106905) when another thread compiles at the same moment: parse again then.
    """
    return _parse(path, path.read_text())


@functools.cache
def _parse(path: Path, text: str) -> ast.Module:
    for _ in range(3):
        try:
            return ast.parse(text, str(path))
        except SystemError:
            continue
    return ast.parse(text, str(path))
