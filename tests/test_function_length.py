"""Functions a reader can hold: none longer than ``MAX_LINES`` (docstring included).

A longer function is split into named steps of what it does (``bundle.from_object`` reads the
recorded fields, reconciles the options, checks the batch; ``evaluate.coco.evaluate_bundle``
builds the GT side, groups the detections per image, matches each image).
"""

from __future__ import annotations

import ast
from pathlib import Path

import yolodbg

MAX_LINES = 60


def _long_functions(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    out.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_is_longer_than_max_lines():
    root = Path(yolodbg.__file__).parent
    assert len(list(root.rglob("*.py"))) > 50  # the walk found the package
    assert _long_functions(root) == []


def test_the_measure_finds_a_long_function(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n" + "    x = 1\n" * MAX_LINES + "\n\ndef g():\n    pass\n")
    assert _long_functions(tmp_path) == [f"m.py:1 f ({MAX_LINES + 1} lines)"]
