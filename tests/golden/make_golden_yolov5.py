"""Generate tests/golden/yolov5_cases.pt: the real YOLOv5 ComputeLoss on the cases of cases_yolov5.py.

Run from the repository root in an environment with the ``yolov5`` 7.0.14 package (its import needs a
few of its dependencies; ``pip install --no-deps yolov5==7.0.14`` plus opencv-python-headless, pandas,
tqdm, requests, matplotlib, seaborn, psutil, pyyaml, ``setuptools<80`` and ``ultralytics --no-deps``):

    python tests/golden/make_golden_yolov5.py

The file is a plain dict loadable with ``torch.load(..., weights_only=True)``:

    format, versions {yolov5, torch, cpu_capability, python, platform},
    inputs {key: {spec, levels (float16), targets, anchors_px, strides, imgsz}},
    cases [{name, inputs, params, expected}]

``levels`` are the per-level ``(B, na, H, W, 5 + nc)`` predictions, rounded to float16 *before* the reference
ran, so ``.float()`` of the stored tensors gives exactly the float32 inputs the expected numbers belong to.
``expected`` holds the loss items (box, obj, cls), the returned loss (× B), the objective, the number of
matches per level, the matches themselves ``(b, a, gj, gi)`` in the framework's order, and the objectness
targets after every duplicate write (sparse: flat index ``b·N + anchor`` and value).

After writing, the file is reloaded and every case is recomputed from the stored tensors and compared bit
for bit with the stored expectations.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cases_yolov5 as C  # noqa: E402
import provenance  # noqa: E402

MAX_BYTES = 1_500_000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default=str(HERE / "yolov5_cases.pt"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    from importlib.metadata import version

    from yolov5.utils.general import LOGGER

    LOGGER.setLevel("WARNING")
    if version("yolov5") != C.YOLOV5_VERSION:
        sys.exit(f"need yolov5 {C.YOLOV5_VERSION}, found {version('yolov5')}")

    built: dict[str, dict] = {}
    stored: dict[str, dict] = {}
    for key, spec in C.INPUT_SETS.items():
        t0 = time.time()
        inp = C.build_inputs(spec)
        inp["levels"] = C.round_levels(inp["levels"])
        assert all(torch.isfinite(t).all() for t in inp["levels"]), key
        built[key] = inp
        stored[key] = {
            "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.items()},
            "levels": [t.half().contiguous() for t in inp["levels"]],
            "targets": inp["targets"],
            "anchors_px": inp["anchors_px"].float().contiguous(),
            "strides": list(inp["strides"]),
            "imgsz": list(inp["imgsz"]),
        }
        shapes = [tuple(t.shape) for t in inp["levels"]]
        print(f"[inputs] {key}: {shapes} gts={inp['targets']['bboxes'].shape[0]} ({time.time() - t0:.1f}s)")

    records = []
    for case in C.CASES:
        inp = built[case["inputs"]]
        exp = C.reference_expected(inp, case["params"])
        res, targets = C.replay(inp, case["params"])
        problems = C.compare(res, targets, exp)
        print(
            f"[case] {case['name']}: {C.case_summary(exp)}"
            + (f"  YOLODBG DIFFERS: {problems}" if problems else "")
        )
        records.append(
            {"name": case["name"], "inputs": case["inputs"], "params": dict(case["params"]), "expected": exp}
        )

    data = {
        "format": C.FORMAT,
        "versions": {
            "yolov5": version("yolov5"),
            **provenance.machine(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "inputs": stored,
        "cases": records,
    }
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(out)
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.3f} MB, {len(records)} cases)")
    if size > MAX_BYTES:
        sys.exit(f"{out} is {size} bytes; keep it under {MAX_BYTES} (shrink the input sets)")

    data = C.load_golden(out)  # self-check: the stored tensors reproduce the stored expectations exactly
    for rec in data["cases"]:
        exp = C.reference_expected(C.golden_inputs(data, rec), rec["params"])
        for k, v in exp.items():
            want = rec["expected"][k]
            if isinstance(v, list) and v and torch.is_tensor(v[0]):
                same = all(torch.equal(a, b) for a, b in zip(v, want, strict=True))
            else:
                same = torch.equal(v, want) if torch.is_tensor(v) else v == want
            assert same, f"{rec['name']}: {k} not reproducible from the stored inputs"
    print("self-check: all cases reproduce bit for bit from the stored file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
