"""Ray stays an optional extra: only avs_engine/scale imports it, only the command line imports avs_engine.scale,
and the scale package's plain modules load neither Ray nor torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "avs_engine"


def _imports(f: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            parts = list(f.relative_to(PKG.parent).with_suffix("").parts)[: -node.level]
            names.add(".".join(parts + ([node.module] if node.module else [])))
            names |= {".".join(parts + [a.name]) for a in node.names}
    return names


def test_only_the_scale_package_imports_ray_and_only_the_cli_imports_it():
    ray_users, scale_users = [], []
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG)
        names = _imports(f)
        if any(n == "ray" or n.startswith("ray.") for n in names) and rel.parts[0] != "scale":
            ray_users.append(str(rel))
        if any(n.startswith("avs_engine.scale") for n in names) and rel.parts[0] not in ("scale", "cli"):
            scale_users.append(str(rel))
    assert not ray_users, f"only avs_engine/scale may import ray: {ray_users}"
    assert not scale_users, f"only avs_engine/cli may import avs_engine.scale: {scale_users}"


def test_plain_scale_modules_load_neither_ray_nor_torch():
    code = (
        "import sys\n"
        "import avs_engine.backends.model_spec, avs_engine.runtime.inputs, avs_engine.runtime.outputs, avs_engine.scale.fetch\n"
        "import avs_engine.scale.resources, avs_engine.scale.stages, avs_engine.scale.job, avs_engine.runtime.rle\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', 'fastapi')]\n"
        "assert not bad, sorted(bad)[:10]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
