"""The package's layers: no import cycle between subpackages, and the runtime stays lean.

Static: every ``import`` in ``avs_engine/`` (module level or inside a
function) gives an edge between top-level subpackages; the graph must have no
cycle, and the forbidden edges below must not exist. Dynamic: importing the
runtime side in a fresh interpreter loads neither torch, nor the reference
model, the export code, the exact-algebra torch forms or the development tools.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "avs_engine"

# Packages the engine path (decode -> runner -> outputs) is made of.
RUNTIME_SIDE = ("runtime", "io", "artifacts", "gpu", "kernels", "backends", "atomic", "errors", "config", "models",
                "scale")
# What the engine path must never import: torch-only code and the tools above it.
TORCH_SIDE = ("reference", "export", "exact", "train", "checks", "bench", "cli", "data")


@functools.lru_cache(maxsize=None)
def _edges() -> dict[tuple[str, str], set[str]]:
    """(from subpackage, to subpackage) -> files; top-level modules count as their own subpackage."""
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        if is_init:
            parts = parts[:-1]
        if len(parts) < 2:
            continue
        src = parts[1]
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts[: len(parts) - node.level + (1 if is_init else 0)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                    # "from .. import x": x may be a subpackage
                    names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
                elif node.module:
                    names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                p = n.split(".")
                if p[0] == "avs_engine" and len(p) > 1 and p[1] != src:
                    edges[(src, p[1])].add(str(f.relative_to(PKG.parent)))
    return edges


def _cycle(edges) -> list[str] | None:
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle_between_subpackages():
    edges = _edges()
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle) + "; e.g. " + ", ".join(
        sorted(edges[(cycle[0], cycle[1])])[:2])


@pytest.mark.parametrize("low", RUNTIME_SIDE)
def test_runtime_side_imports_no_torch_side_package(low):
    edges = _edges()
    bad = {high: sorted(files)[:3] for (a, high), files in edges.items() if a == low and high in TORCH_SIDE}
    if low == "backends":  # the torch backend is the one runner that may: it lives beside the others, imported lazily
        bad = {k: [f for f in v if not f.endswith("torch_backend.py")] for k, v in bad.items()}
        bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{low} imports {bad}"


def test_artifacts_sit_below_export_and_backends():
    edges = _edges()
    assert not [b for (a, b) in edges if a == "artifacts" and b not in ("errors", "config", "atomic")], \
        "artifacts may import only errors, config and atomic"


def test_runtime_imports_without_torch_export_or_devtools():
    code = (
        "import sys\n"
        "import avs_engine, avs_engine.config, avs_engine.errors, avs_engine.atomic\n"
        "import avs_engine.artifacts.spec, avs_engine.artifacts.graph_manifest, avs_engine.artifacts.engine_manifest\n"
        "import avs_engine.artifacts.profiles\n"
        "import avs_engine.runtime, avs_engine.backends, avs_engine.io\n"
        "import avs_engine.io.clips, avs_engine.io.preprocess, avs_engine.io.postprocess\n"
        "import avs_engine.io.writers, avs_engine.runtime.outputs, avs_engine.io.logmel\n"
        "import avs_engine.io.stream, avs_engine.runtime.live, avs_engine.runtime.live_job, avs_engine.runtime.causal\n"
        "import avs_engine.runtime.live_view, avs_engine.runtime.live_writer, avs_engine.runtime.stream_source\n"
        "import avs_engine.backends.onnxruntime_backend, avs_engine.backends.tensorrt_backend\n"
        "import avs_engine.gpu.cuda_memory, avs_engine.gpu.tensorrt_api\n"
        "import avs_engine.kernels.nvrtc, avs_engine.kernels.launchers\n"
        "from avs_engine.backends import available_backends\n"
        "available_backends()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'segment_anything', 'cv2', 'devtools')\n"
        "       or m.startswith(('avs_engine.reference', 'avs_engine.export', 'avs_engine.exact', 'avs_engine.train',\n"
        "                        'avs_engine.checks', 'avs_engine.bench'))]\n"
        "assert not bad, sorted(bad)[:10]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# (from, to): subpackage edges that bend the picture. The exporter writes graphs and manifests (parity and the
# INT8 comparison run after it, from the CLI or checks/, and calibration clips are handed to it); training does
# not import the deployment backends; the batch stages use the runtime's pieces, not the media layer.
FORBIDDEN = [("runtime", "export"), ("runtime", "reference"), ("backends", "export"), ("export", "backends"),
             ("io", "backends"), ("io", "reference"), ("reference", "export"), ("reference", "runtime"),
             ("export", "checks"), ("export", "data"), ("export", "train"), ("train", "backends"),
             ("scale", "io"), ("bench", "io"), ("kernels", "reference"), ("kernels", "exact")]


@pytest.mark.parametrize("low,high", FORBIDDEN, ids=[f"{a}-{b}" for a, b in FORBIDDEN])
def test_forbidden_edge_is_absent(low, high):
    """Not imported (module level or in a function), and not named either (grep-level: a string import, a
    docstring pointing there)."""
    assert not _edges().get((low, high)), f"{low} imports {high}: {sorted(_edges()[(low, high)])[:3]}"
    import re

    named = re.compile(rf"\bavs_engine\.{high}\b|from \.\.{high}\b|from \.\. import {high}\b")
    hits = [f"{f.relative_to(PKG.parent)}:{i}" for f in sorted((PKG / low).rglob("*.py"))
            for i, line in enumerate(f.read_text().splitlines(), 1) if named.search(line)]
    assert not hits, f"{low} names {high}: {hits[:3]}"


@functools.lru_cache(maxsize=None)
def _module_imports() -> dict[str, set[str]]:
    """module -> the avs_engine modules it imports (module level or in a function); package __init__s left out."""
    mods = {}
    for f in PKG.rglob("*.py"):
        if f.name != "__init__.py":
            mods[".".join(f.relative_to(PKG.parent).with_suffix("").parts)] = f
    graph: dict[str, set[str]] = defaultdict(set)
    for name, f in mods.items():
        parts = name.split(".")
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                mod = ".".join(parts[: len(parts) - node.level] + ([node.module] if node.module else [])) if node.level \
                    else (node.module or "")
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def test_no_import_cycle_between_files():
    """No two files import each other, even from inside a function (cli/export <-> cli/export_trt and
    train/loop <-> train/memory were held apart that way once); no longer circle either."""
    graph = _module_imports()
    state: dict[str, int] = {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m, stack)):
                return found
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state and (cycle := visit(n, [])):
            pytest.fail("import cycle between files: " + " -> ".join(cycle))
