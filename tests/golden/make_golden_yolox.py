"""Generate tests/golden/yolox_cases.pt: the real YOLOX 0.3.0 ``YOLOXHead`` losses on the cases of yolox_cases.py.

Needs YOLOX 0.3.0's Python code importable (the C++ extension is not needed): unpack the PyPI sdist and put it on
the path, e.g.

    pip download yolox==0.3.0 --no-deps --no-binary :all: --no-build-isolation -d /tmp/yolox
    tar xzf /tmp/yolox/yolox-0.3.0.tar.gz -C /tmp/yolox
    pip install loguru tabulate thop opencv-python-headless psutil     # what ``import yolox.models`` needs
    PYTHONPATH=/tmp/yolox/yolox-0.3.0 python tests/golden/make_golden_yolox.py

(any fresh virtual environment with torch; the stored file was made with torch 2.14.1). The ``yolox-main`` cases run the same head
with ``get_assignments`` replaced by the main-branch transcription in yolox_cases.py.

The file is a plain dict loadable with ``torch.load(..., weights_only=True)``:

    format, versions {yolox, main_commit, torch, cpu_capability, python, platform},
    inputs {key: {spec, imgsz, batch_size, levels [(B, 5+nc, H, W) float16], targets}},
    cases [{name, inputs, variant, recipe, params, expected}]

``levels`` were rounded to float16 *before* the reference ran, so their ``.float()`` are exactly the inputs the
expected numbers belong to. ``expected`` holds the logged items (iou already × 5, obj, cls, l1), the total loss,
num_fg / num_gts, the positives (flat indices into (B, N)) with their matched GT (index among the image's labels)
and class-target IoU, the dynamic k of every counted GT and the number of SimOTA candidates per image.

After writing, the file is reloaded with weights_only=True, every case is recomputed from the stored tensors and
compared with the stored expectations, and (when yolodbg is importable) replayed with yolodbg.
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
import provenance  # noqa: E402
import yolox_cases as C  # noqa: E402


def plain(obj):
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def expected_for(levels, targets, imgsz, case) -> dict:
    labels = C.yolox_labels(targets, levels[0].shape[0], imgsz)
    return C.yolox_expected(levels, labels, case["variant"], case["use_l1"], case["box"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default=str(HERE / "yolox_cases.pt"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import yolox

    if yolox.__version__ != C.YOLOX_VERSION:
        sys.exit(f"need yolox {C.YOLOX_VERSION}, found {yolox.__version__} at {yolox.__file__}")

    built, inputs = {}, {}
    for key, spec in C.INPUT_SETS.items():
        t0 = time.time()
        levels, targets = C.build_inputs(spec)
        levels = C.round_half(levels)
        assert all(torch.isfinite(t).all() for t in levels), key
        built[key] = (levels, targets)
        inputs[key] = {
            "spec": plain(spec),
            "imgsz": list(spec["imgsz"]),
            "batch_size": int(levels[0].shape[0]),
            "levels": [t.half().contiguous() for t in levels],
            "targets": targets,
        }
        n = sum(t.shape[2] * t.shape[3] for t in levels)
        print(
            f"[inputs] {key}: B={levels[0].shape[0]} imgsz={spec['imgsz']} N={n} gts={len(targets['cls'])} "
            f"({time.time() - t0:.1f}s)"
        )

    records = []
    for case in C.CASES:
        levels, targets = built[case["inputs"]]
        spec = C.INPUT_SETS[case["inputs"]]
        exp = expected_for(levels, targets, spec["imgsz"], case)
        if spec["preds"] in ("fitted", "synthetic") and len(targets["cls"]):
            assert exp["num_fg"] >= 10, (case["name"], C.case_summary(exp))
        records.append(
            {
                "name": case["name"],
                "inputs": case["inputs"],
                "variant": case["variant"],
                "recipe": C.RECIPES[case["variant"]],
                "params": C.case_params(case),
                "use_l1": case["use_l1"],
                "box": case["box"],
                "expected": C.pack_expected(exp),
            }
        )
        print(f"[case] {case['name']}: {C.case_summary(exp)}")

    data = {
        "format": C.FORMAT,
        "versions": {
            "yolox": str(yolox.__version__),
            "main_commit": C.MAIN_COMMIT,
            **provenance.machine(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "strides": list(C.STRIDES),
        "inputs": inputs,
        "cases": records,
    }
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.3f} MB, {len(records)} cases)")

    data = C.load_golden(out)
    for rec in data["cases"]:
        levels, targets, imgsz = C.golden_inputs(data, rec)
        exp = C.pack_expected(expected_for(levels, targets, imgsz, rec))
        for k, v in exp.items():
            want = rec["expected"][k]
            same = torch.equal(v, want) if torch.is_tensor(v) else v == want
            assert same, f"{rec['name']}: {k} not reproducible from the stored inputs"
    print("self-check: all cases reproduce bit for bit from the stored file")

    try:
        from yolodbg.api import replay
    except ImportError:
        return 0
    worst = 0.0
    for rec in data["cases"]:
        levels, targets, imgsz = C.golden_inputs(data, rec)
        res = replay(
            levels,
            targets,
            recipe=rec["recipe"],
            params=rec["params"] or None,
            input_size=imgsz,
            head="yolox",
        )
        problems, err = C.compare(res, C.unpack_expected(rec["expected"]), imgsz)
        worst = max(worst, err)
        print(f"[yolodbg] {rec['name']}: {problems or 'ok'} (max rel err {err:.3g})")
    print(f"yolodbg: max relative error over all terms and objectives {worst:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
