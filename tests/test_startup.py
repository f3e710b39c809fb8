"""Commands that compute nothing answer without importing torch (``benchmarks/bench_startup.py`` times them).

The cases run one after the other in one fresh interpreter, which reports after each its exit code
and whether torch (or pycocotools) is imported so far: the recipe catalogue (``recipes``,
``recipes NAME``, a bad name or variant), ``--help``, ``--version`` and usage errors that click
detects. Deterministic, not timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "recipes": (["recipes"], 0),
    "recipes NAME": (["recipes", "yolov8"], 0),
    "recipes ALIAS": (["recipes", "yolo11"], 0),
    "recipes yolox-main": (["recipes", "yolox-main"], 0),
    "recipes VARIANT": (["recipes", "yolov5:balance=4/1/0.4,box=giou"], 0),
    "unknown recipe": (["recipes", "yolov9"], 2),
    "bad variant value": (["recipes", "yolov8:assigner.topk=0"], 2),
    "bad variant key": (["recipes", "yolov8:topk=3"], 2),
    "bad variant combination": (["recipes", "yolov8:cls.gamma=1.5"], 2),
    "bad yolov5 balance": (["recipes", "yolov5:balance=a/b"], 2),
    "--help": (["--help"], 0),
    "recipes --help": (["recipes", "--help"], 0),
    "--version": (["--version"], 0),
    "no command": ([], 2),  # click shows the usage
    "unknown command": (["explian"], 2),
    "unknown option": (["explain", "--bogus"], 2),
    "missing argument": (["explain"], 2),
    "bad option value": (["scan", "x", "--top", "many"], 2),
    "unknown group option": (["--bogus"], 2),
}

PROBE = """
import contextlib, io, json, sys
from yolodbg.cli import main
results = []
for args in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(args, prog_name="yolodbg")
            code = 0
        except SystemExit as e:
            code = e.code or 0
    # a module stays imported: the first command that imports torch is the one named
    results.append({"exit": code, "heavy": sorted(m for m in ("torch", "pycocotools") if m in sys.modules)})
print(json.dumps(results))
"""


def _probe(*commands: list[str]) -> list[dict]:
    """Run the commands one after the other in one fresh interpreter; per command its exit code and
    the heavy modules imported so far."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's yolodbg
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probed() -> dict[str, dict]:
    return dict(zip(CASES, _probe(*(args for args, _ in CASES.values())), strict=True))


@pytest.mark.parametrize("case", list(CASES))
def test_command_answers_without_torch(case, probed):
    args, exit_code = CASES[case]
    assert probed[case] == {"exit": exit_code, "heavy": []}, f"yolodbg {' '.join(args)}: {probed[case]}"


def test_the_probe_sees_torch_when_a_command_needs_it():
    """The probe is not blind: a replay imports torch, and the probe says so."""
    sample = ROOT / "sample_data"
    explain = [
        "explain",
        str(sample / "yolov8n_val.pt"),
        "--gt",
        str(sample / "coco_val.json"),
        "--json",
        "-",
    ]
    listing, replay = _probe(["recipes"], explain)
    assert listing == {"exit": 0, "heavy": []}
    assert replay["exit"] == 0 and "torch" in replay["heavy"]


def test_importing_the_recipe_catalogue_imports_no_torch():
    code = (
        "import sys; from yolodbg.recipes import RECIPES, get_recipe\n"
        "names = [get_recipe(n).spec() for n in RECIPES]\n"
        "print(names, 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().endswith("False"), out.stdout
