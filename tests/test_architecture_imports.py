"""The house's import direction (docs/architecture.md), read from the source with ``ast``.

Every import of a paramscope module is checked, lazy ones inside functions included: a room
may import only the rooms below it, so the pipeline stays one way (source -> reader ->
anatomy -> analyses once -> view -> renderer).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "paramscope"

#: room -> the rooms it may import ("" is the package root, ``import paramscope``).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "parsers": {"core"},
    "rules": {"core"},
    "trace": {"core"},
    "readers": {"core", "parsers", "rules", "trace"},
    "analysis": {"core"},
    # The memory planner: reads a source, measures a pass, runs the analyses, plans per device.
    "planner": {"core", "readers", "trace", "analysis"},
    "render": {"core", "analysis", "planner", "readers"},
    # The hub cache is a place on disk like any path: targets resolves ids to it.
    "targets": {"core", "readers", "trace", "diagnose"},
    "diagnose": {"core", "readers"},
    "schemas": set(),
    "api": {"core", "readers", "analysis", "render", "planner"},
    "keras": {"core", "readers", "rules", "analysis", "api"},
    "cli": {"", "core", "api", "analysis", "planner", "render", "targets", "diagnose", "trace"},
    "__main__": {"cli"},
    "__init__": {"core", "analysis", "api"},
}

#: What a renderer may take from analysis: the frozen result's types, never a function.
RENDER_MAY_USE = {
    "ReportView", "Row", "LayerView", "TensorView", "ExtraView", "Totals",
    "TreemapView", "Node", "Leaf", "METRICS",  # the treemap's tree
    "Diff", "Change", "Side",  # a comparison
    "Verdict", "BUDGET_KEYS",  # checked budgets
    "MemoryPlan",  # the memory planner's result
    "RankLayout", "RankShare",  # a sharded checkpoint's layout, as its reader finds it
}


def _imports(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.extend((a.name, (), node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, tuple(a.name for a in node.names), node.lineno))
    return out


def _room(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def test_every_room_is_in_the_table() -> None:
    assert {_room(p) for p in _files()} <= set(ALLOWED)


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_one_way(path: Path) -> None:
    room = _room(path)
    for module, names, line in _imports(path):
        if module != "paramscope" and not module.startswith("paramscope."):
            continue
        target = module.split(".")[1] if "." in module else ""
        if target == room:
            continue
        assert target in ALLOWED[room], f"{path.relative_to(SRC)}:{line}: {room} imports {module}"
        if room == "render" and target in ("analysis", "planner", "readers"):
            assert set(names) <= RENDER_MAY_USE, f"{path.relative_to(SRC)}:{line}: a renderer imports {names}"
