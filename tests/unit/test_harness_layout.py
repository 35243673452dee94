"""Tests and benchmarks share one harness; no benchmark borrows another's internals (read from the source, by AST)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

BENCH = ROOT / "bench"
TESTS = ROOT / "tests"
HARNESS = TESTS / "harness"

SHARED_BENCH_MODULES = {"common", "cluster_common", "clips", "publisher"}
"""What a benchmark may import from bench/: modules written to be shared, not benchmarks.
common and cluster_common are libraries; clips.py makes the pre-encoded clips; publisher.py is the
load-generating program the benchmarks run, whose ReplayTrack ingest.py reuses for WHIP."""

PORT_HELPERS = {"free_port", "wait_port", "wait_listening"}
"Helpers that exist once, in tests/harness (they were copied between tests/ and bench/ before)."


def imported_modules(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in `tree`, at any depth (a late import inside a function too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.module in (None, "bench", "tests"):  # `from bench import run`: the names are modules
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}" if node.module else f"{base}{alias.name}"
            else:
                yield node.lineno, base


def borrowed(path: Path, stems: set[str]) -> list[tuple[int, str]]:
    """(line, module) of the imports in bench script `path` of another bench script (`stems` are bench/'s
    modules), or of anything in tests/ but the harness."""
    found = []
    for line, module in imported_modules(ast.parse(path.read_text(), str(path))):
        parts = module.lstrip(".").split(".")
        if parts[0] == "tests":
            if len(parts) > 1 and parts[1] != "harness":
                found.append((line, module))
            continue
        if parts[0] == "bench" and len(parts) > 1:
            target = parts[1]
        elif module.startswith(".") or parts[0] in stems:  # `import run` works too when run from bench/
            target = parts[0]
        else:
            continue
        if target in stems and target not in SHARED_BENCH_MODULES and target != path.stem:
            found.append((line, module))
    return found


def test_no_benchmark_imports_another_benchmark() -> None:
    scripts = sorted(BENCH.glob("*.py"))
    stems = {path.stem for path in scripts} - {"__init__"}
    assert SHARED_BENCH_MODULES <= stems, "a shared bench module was renamed: update SHARED_BENCH_MODULES"
    found = [f"bench/{path.name}:{line} imports {module}" for path in scripts for line, module in borrowed(path, stems)]
    assert found == [], ("benchmarks share bench/common.py, bench/cluster_common.py, bench/clips.py, "
                         "bench/publisher.py and tests/harness, nothing else:\n" + "\n".join(found))


def test_port_helpers_are_defined_only_in_the_harness() -> None:
    sources = sorted(BENCH.glob("*.py")) + sorted(TESTS.rglob("*.py"))
    found = [f"{path.relative_to(ROOT)}:{node.lineno} defines {node.name}()"
             for path in sources if HARNESS not in path.parents
             for node in ast.parse(path.read_text(), str(path)).body
             if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in PORT_HELPERS]
    assert found == [], "import it from tests.harness instead:\n" + "\n".join(found)


def test_the_checks_see_a_borrowed_import(tmp_path: Path) -> None:
    """The scan itself: each way of importing another benchmark is caught, the shared modules are not."""
    script = tmp_path / "latency.py"
    script.write_text("import run\nfrom bench.soak import main\nfrom bench import mjpeg\nfrom . import rtsp\n"
                      "from tests.conftest import ROOT\n"
                      "from bench.common import table\nfrom bench import clips\nfrom tests.harness import stop\n"
                      "def later():\n    from bench.cluster_ttl import run_ttl\n")
    stems = {"latency", "run", "soak", "mjpeg", "rtsp", "cluster_ttl"} | SHARED_BENCH_MODULES
    found = borrowed(script, stems)
    assert [module for _, module in found] == [
        "run", "bench.soak", "bench.mjpeg", ".rtsp", "tests.conftest", "bench.cluster_ttl"]
