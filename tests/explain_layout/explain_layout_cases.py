"""The ``explain`` console report of every sample bundle at 80 and 120 columns, pinned.

``tests/test_explain_layout.py`` renders each case with rich's ``Console(width=..., record=True)``
(no colour) and compares it with ``expected/<case>_w<width>.txt``: text exactly, numbers within
what differs between CPU kernels (the comparison of ``tests/cli_outputs``). A change meant to
alter the layout is accepted by re-recording and reviewing the diff::

    python tests/explain_layout/explain_layout_cases.py --update
"""

from __future__ import annotations

import io
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = Path(__file__).resolve().parent / "expected"
WIDTHS = (80, 120)
COCO = "sample_data/coco_val.json"
TOP = 15

# case -> (bundle, ground truth or None for the bundle's own targets)
CASES: dict[str, tuple[str, str | None]] = {
    **{
        b: (f"sample_data/{b}.pt", COCO)
        for b in ("yolov8n_val", "yolo26n_val", "yolov5n_val", "yolox_val", "yolov1_val")
    },
    "yolov8n_train_step": ("sample_data/yolov8n_train_step.pt", None),
}


@cache
def explanation(case: str):
    """The case's explanation, computed once per process (paths relative to the repository root)."""
    import os

    from yolodbg import bundle
    from yolodbg.explain import explain

    path, gt = CASES[case]
    cwd = os.getcwd()
    os.chdir(ROOT)  # the report names its inputs as given: relative, like the README's commands
    try:
        return explain(bundle.load(path), gt, top=TOP)
    finally:
        os.chdir(cwd)


def render(case: str, width: int, *, wide: bool = False, image: int | None = None) -> str:
    """The report as plain text at ``width`` columns."""
    from rich.console import Console

    from yolodbg.render.console import render_explain

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None, force_terminal=False)
    render_explain(console, explanation(case), TOP, image, wide=wide)
    return console.export_text()


def update() -> None:
    EXPECTED.mkdir(exist_ok=True)
    for case in CASES:
        for width in WIDTHS:
            (EXPECTED / f"{case}_w{width}.txt").write_text(render(case, width), encoding="utf-8")
            print(f"recorded {case} at {width} columns")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    sys.path.insert(0, str(ROOT))
    update()
