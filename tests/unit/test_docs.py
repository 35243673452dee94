"""The manual against the code: the generated reference is current, every shell block is accounted for,
copies of files are copies, and the architecture names only modules and attributes that exist."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
from scripts.configuration_reference import PAGE, current

from tests.docs_blocks import ROOT, Block, all_blocks, pages, readme_exempt
from tests.syntax import parse

pytestmark = pytest.mark.unit

PACKAGE = ROOT / "src" / "streamsnap"


def test_the_configuration_reference_is_generated_from_the_declarations() -> None:
    page = PAGE.read_text()
    assert current(page) == page, "stale: run .venv/bin/python scripts/configuration_reference.py"


def test_every_fenced_block_names_its_language() -> None:
    unnamed = [block.where for block in all_blocks() if not block.language]
    assert unnamed == [], "give these blocks a language (sh, toml, text, ...)"


def test_every_shell_block_is_run_or_says_why_not() -> None:
    unaccounted = [block.where for block in all_blocks()
                   if block.is_shell and not readme_exempt(block) and block.kind not in ("runnable", "not-runnable")]
    assert unaccounted == [], "mark each shell block <!-- runnable --> or <!-- not-runnable: why -->"
    silent = [block.where for block in all_blocks() if block.kind == "not-runnable" and not block.argument]
    assert silent == [], "a not-runnable block says why"
    misplaced = [block.where for block in all_blocks() if block.kind == "runnable" and not block.is_shell]
    assert misplaced == []


def commands(block: Block) -> list[str]:
    """The command lines of a shell block (its `# ...` lines are expected output)."""
    return [line for line in block.text.splitlines() if line.strip() and not line.startswith("#")]


def test_commands_call_streamsnap_by_its_path() -> None:
    # After the set-up commands `streamsnap` is .venv/bin/streamsnap; bare, it is only on the PATH of an
    # installed wheel, which the pages that mean it spell out (/opt/streamsnap/bin/streamsnap).
    bare = []
    for block in all_blocks():
        if not block.is_shell or readme_exempt(block):
            continue
        for line in commands(block):
            words = shlex.split(line, comments=True, posix=False)
            starts = [0] + [i + 1 for i, word in enumerate(words) if word in ("|", "&&", "||", ";", "$(")]
            if any(i < len(words) and words[i] == "streamsnap" for i in starts):
                bare.append(f"{block.where}: {line}")
    assert bare == []


def test_the_readme_names_streamsnap_by_its_path_after_the_tour() -> None:
    tour = (ROOT / "README.md").read_text().split("## A 60-second tour", 1)[1]
    after_the_tour = tour[tour.index("```", tour.index("```sh") + 5) + 3:]
    spans = re.findall(r"`(streamsnap [^`]*)`", after_the_tour)
    assert spans == [], "write .venv/bin/streamsnap (bare only where an installed wheel is meant, and say so)"


def test_copies_of_files_are_copies() -> None:
    copies = [block for block in all_blocks() if block.kind == "file" and (ROOT / block.argument).exists()]
    assert copies, "docs/deployment.md shows packaging/streamsnap.service"
    for block in copies:
        assert block.text == (ROOT / block.argument).read_text(), f"{block.where} differs from {block.argument}"


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    targets = re.findall(r"\]\((?!https?:|#)([^)#\s]+)", readme)
    assert targets and [target for target in targets if not (ROOT / target).exists()] == []


# -- docs/architecture.md names only what exists --

ARCHITECTURE = ROOT / "docs" / "architecture.md"


def module_file(dotted: list[str]) -> tuple[Path, list[str]] | None:
    """The source file of the longest module prefix of `dotted` (after `streamsnap`), and the names left."""
    for cut in range(len(dotted), 0, -1):
        base = PACKAGE.joinpath(*dotted[:cut])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, dotted[cut:]
    return None


def class_members(node: ast.ClassDef) -> set[str]:
    """What a class defines: methods, class-level names, fields, and `self.x` it assigns."""
    names: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
        elif isinstance(item, ast.Assign):
            names |= {target.id for target in item.targets if isinstance(target, ast.Name)}
    for inner in ast.walk(node):
        if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name) and inner.value.id == "self" \
                and isinstance(inner.ctx, ast.Store):
            names.add(inner.attr)
    return names


def defined_names(path: Path) -> dict[str, ast.AST]:
    """Top-level names of a module: functions, classes, assignments, imports."""
    names: dict[str, ast.AST] = {}
    for item in parse(path).body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[item.name] = item
        elif isinstance(item, ast.Assign):
            names |= {target.id: item for target in item.targets if isinstance(target, ast.Name)}
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names[item.target.id] = item
        elif isinstance(item, ast.ImportFrom | ast.Import):
            names |= {(alias.asname or alias.name).split(".")[0]: item for alias in item.names}
    return names


def all_classes() -> dict[str, list[ast.ClassDef]]:
    found: dict[str, list[ast.ClassDef]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append(node)
    return found


def class_attributes(text: str) -> set[tuple[str, str]]:
    """`Class.attribute` pairs the page names: in code spans (`Session.receive(message, now)`) and as calls in the
    diagram's labels (`RtmpConnection.receive_data(bytes)`)."""
    spans = re.findall(r"`([A-Z]\w+)\.(\w+)(?:\([^`]*\))?`", text)
    calls = re.findall(r"\b([A-Z]\w+)\.(\w+)\(", text)
    return set(spans) | set(calls)


def test_every_module_path_the_architecture_names_exists() -> None:
    text = ARCHITECTURE.read_text()
    paths = set(re.findall(r"(?<![\w./-])((?:src/)?(?:streamsnap/)?[\w/]+\.py)\b", text))
    assert len(paths) > 40
    missing = []
    for path in sorted(paths):
        relative = path.removeprefix("src/").removeprefix("streamsnap/")
        if not any(candidate.is_file() for candidate in (PACKAGE / relative, ROOT / path)):
            missing.append(path)
    assert missing == []


def test_every_dotted_name_the_architecture_names_exists() -> None:
    missing = []
    for dotted in sorted(set(re.findall(r"\bstreamsnap(?:\.\w+)+", ARCHITECTURE.read_text()))):
        found = module_file(dotted.split(".")[1:])
        if found is None:
            missing.append(dotted)
            continue
        path, rest = found
        if rest and rest[0] not in defined_names(path):
            missing.append(dotted)
    assert missing == []


def test_every_class_attribute_the_architecture_names_exists() -> None:
    classes = all_classes()
    pairs = class_attributes(ARCHITECTURE.read_text())
    assert len(pairs) > 20
    missing = [f"{cls}.{attr}" for cls, attr in sorted(pairs)
               if not any(attr in class_members(node) for node in classes.get(cls, []))]
    assert missing == []


def test_the_pages_exist() -> None:
    names = {page.name for page in pages()}
    assert {"index.md", "getting-started.md", "http-api.md", "cameras.md", "encoders.md", "access-control.md",
            "deployment.md", "operations.md", "cluster.md", "configuration.md", "performance.md", "reliability.md",
            "architecture.md", "wcs-differences.md"} <= names
