"""The fenced blocks of README.md and docs/*.md, with the marker comment that says what a test does with each.

A shell block (` ```sh `) is preceded, on the line right above its fence, by one of:

- `<!-- runnable -->`: tests/integration/test_docs_commands.py runs it as written, in a scratch
  directory that holds the checkout's files; options after the word: `tour` (it runs with the
  README tour's server and its `demo` stream going), `needs=a,b` (skipped, with the reason, where
  a command is missing; `gst-rtsp-server` stands for GStreamer's RTSP server under /usr/bin/python3);
- `<!-- not-runnable: why -->`: never run, and the reason says why (a production host, a benchmark);

and any block may be `<!-- file: NAME -->`: the file a runnable block of the same page uses,
written into its directory; a NAME that exists in the checkout must be a copy of that file.

The README's two set-up commands and its tour are exempt: tests/unit/test_readme.py and
tests/integration/test_readme_tour.py run them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELLS = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"^<!--\s*(runnable|not-runnable|file)\b:?\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int
    "Line number of its opening fence (1-based)."
    language: str
    text: str
    kind: str | None = None
    "`runnable`, `not-runnable`, `file`, or None without a marker."
    argument: str = ""
    "What follows the marker's word: options, a reason, a file name."
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.language in SHELLS

    @property
    def needs(self) -> list[str]:
        return [need for need in self.options.get("needs", "").split(",") if need]

    @property
    def with_tour(self) -> bool:
        return "tour" in self.options


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """Every fenced block of `page`, with the marker on the line above it."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = re.match(r"^(```+|~~~+)\s*([^\s`]*)(.*)$", lines[index])
        if not fence:
            index += 1
            continue
        end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith(fence.group(1))), len(lines))
        marker = MARKER.match(lines[index - 1]) if index > 0 else None
        kind, argument, options = None, "", {}
        if marker:
            kind, argument = marker.group(1), marker.group(2)
            if kind == "runnable":
                for word in argument.split():
                    name, _, value = word.partition("=")
                    options[name] = value
        found.append(Block(page, index + 1, fence.group(2).lower(), "\n".join(lines[index + 1:end]) + "\n",
                           kind, argument, options))
        index = end + 1
    return found


def readme_exempt(block: Block) -> bool:
    """The README's set-up commands and its tour, which tests of their own run."""
    if block.page.name != "README.md" or not block.is_shell:
        return False
    return block.text.startswith("make serve")


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def runnable_blocks() -> list[Block]:
    return [block for block in all_blocks() if block.kind == "runnable"]


def file_blocks(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.kind == "file"]
