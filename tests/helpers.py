"""Helpers shared by the tests: small synthetic inputs (no framework needed), the golden case modules,
and the check of a JSON document against yolodbg's contracts.

Tests import these directly (``from helpers import ...``); ``conftest.py`` holds only fixtures and hooks.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from types import ModuleType

import torch

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def golden_module(filename: str) -> ModuleType:
    """A module of ``tests/golden/`` (a plain folder, not a package), imported once per process.

    The folder goes on ``sys.path`` as the generators put it, so its modules import each other by name
    (``import harness``) and every test sees one module object per file.
    """
    if str(GOLDEN_DIR) not in sys.path:
        sys.path.insert(0, str(GOLDEN_DIR))
    return importlib.import_module(Path(filename).stem)


def assert_valid(doc, expect: str) -> None:
    """``doc`` holds to the ``expect`` contract shipped with yolodbg; the problems are the failure message."""
    from yolodbg.validate import validate

    problems = validate(doc, expect)
    assert problems == [], "\n".join(problems)


def ultra_output(bs=2, size=(128, 128), nc=3, seed=0, reg_max=16, strides=(8, 16, 32), scale=1.0):
    """A random train-mode Ultralytics output dict for an input of ``size`` (H, W)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(size[0] // s, size[1] // s) for s in strides]
    n = sum(h * w for h, w in shapes)
    return {
        "boxes": torch.randn(bs, 4 * reg_max, n, generator=g) * scale,
        "scores": torch.randn(bs, nc, n, generator=g) * scale - 2.0,
        "feats": [torch.empty(bs, 0, h, w) for h, w in shapes],
    }


def batch(rows):
    """Ultralytics batch dict from rows (image, class, cx, cy, w, h), normalised."""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"batch_idx": t[:, 0], "cls": t[:, 1:2], "bboxes": t[:, 2:6]}


def module_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every import in a source file, at module or function level, outside
    ``if TYPE_CHECKING:``; name is '' for ``import m``. Relative imports are refused (the package uses none)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            found += [(node.module, a.name) for a in node.names]
    return found
