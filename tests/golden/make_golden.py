"""Generate tests/golden/yolov8_cases.pt: the real Ultralytics v8DetectionLoss on the cases of cases.py.

Run from the repository root in a reference environment of its own (any path), e.g.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch torchvision ultralytics==8.4.190
    /tmp/ref/bin/python tests/golden/make_golden.py

The file records the torch version and ``torch.backends.cpu.get_cpu_capability()`` of the machine that made it
(``versions``): reductions round differently on other CPU kernels, which the tests' tolerances absorb.

The file is a plain dict (tensors, lists, numbers, strings) loadable with ``torch.load(..., weights_only=True)``:

    format, versions {ultralytics, torch, cpu_capability, python, platform},
    inputs {key: {spec, storage, imgsz, batch_size, boxes, scores, feats, targets}},
    cases [{name, inputs, params, form, input_size, expected}]

``boxes``/``scores`` are stored as float16 when ``storage == "float16"``: the predictions were rounded to float16
*before* the reference ran, so ``.float()`` of the stored tensors gives bit-exactly the float32 inputs the expected
numbers belong to. ``feats`` are zero-channel maps with the real (B, H, W). ``expected`` holds the loss items
(box, cls, dfl), the returned loss tensor (x B), ``objective`` (its sum), ``fg`` (B, N) bool, and on fg anchors only
``gt_index_fg`` (Ultralytics target_gt_idx) and ``target_score_fg`` (target_scores.sum(-1)); background anchors
are gt -1 and target score exactly 0 (checked here).

After writing, the file is reloaded with weights_only=True and every case is recomputed from the stored tensors
and compared bit for bit with the stored expectations.
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
import cases as C  # noqa: E402
import provenance  # noqa: E402

STORE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def plain(obj):
    """Tuples to lists, recursively (only plain containers go into the file)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default=str(HERE / "yolov8_cases.pt"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import ultralytics
    from ultralytics.utils import LOGGER

    LOGGER.setLevel("WARNING")
    if ultralytics.__version__ != C.ULTRALYTICS_VERSION:
        sys.exit(f"need ultralytics {C.ULTRALYTICS_VERSION}, found {ultralytics.__version__}")

    built: dict[str, tuple[dict, dict]] = {}
    inputs: dict[str, dict] = {}
    for key, spec in C.INPUT_SETS.items():
        t0 = time.time()
        outputs, targets = C.build_inputs(spec)
        storage = spec.get("storage", "float16")
        outputs = C.round_for_storage(outputs, storage)
        assert all(torch.isfinite(outputs[k]).all() for k in ("boxes", "scores")), key
        built[key] = (outputs, targets)
        sdt = STORE_DTYPES[storage]
        stored_boxes, stored_scores = outputs["boxes"].to(sdt), outputs["scores"].to(sdt)
        assert torch.equal(stored_boxes.float(), outputs["boxes"]) and torch.equal(
            stored_scores.float(), outputs["scores"]
        )
        inputs[key] = {
            "spec": plain({k: v for k, v in spec.items()}),
            "storage": storage,
            "imgsz": list(spec["imgsz"]),
            "batch_size": int(outputs["boxes"].shape[0]),
            "boxes": stored_boxes.contiguous(),
            "scores": stored_scores.contiguous(),
            "feats": outputs["feats"],
            "targets": targets,
        }
        print(
            f"[inputs] {key}: B={inputs[key]['batch_size']} imgsz={spec['imgsz']} "
            f"N={outputs['boxes'].shape[2]} gts={targets['bboxes'].shape[0]} ({time.time() - t0:.1f}s)"
        )

    records = []
    for case in C.CASES:
        outputs, targets = built[case["inputs"]]
        exp = C.ultralytics_expected(outputs, targets, case["params"])
        spec = C.INPUT_SETS[case["inputs"]]
        if spec["preds"] in ("fitted", "synthetic") and targets["bboxes"].shape[0]:
            assert exp["max_target_score"] > 0.3 and exp["num_fg"] >= 10, (case["name"], C.case_summary(exp))
        records.append(
            {
                "name": case["name"],
                "inputs": case["inputs"],
                "params": dict(case["params"]),
                "form": case["form"],
                "input_size": plain(case["input_size"]),
                "expected": C.pack_expected(exp),
            }
        )
        print(f"[case] {case['name']}: {C.case_summary(exp)}")

    data = {
        "format": C.FORMAT,
        "versions": {
            "ultralytics": str(ultralytics.__version__),
            **provenance.machine(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "strides": list(C.STRIDES),
        "reg_max": C.REG_MAX,
        "inputs": inputs,
        "cases": records,
    }
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.3f} MB, {len(records)} cases)")

    # Self-check: the stored tensors reproduce the stored expectations exactly.
    data = C.load_golden(out)
    for rec in data["cases"]:
        outputs, targets, _ = C.golden_inputs(data, rec)
        exp = C.pack_expected(C.ultralytics_expected(outputs, targets, rec["params"]))
        want = rec["expected"]
        for k, v in exp.items():
            same = torch.equal(v, want[k]) if torch.is_tensor(v) else v == want[k]
            assert same, f"{rec['name']}: {k} not reproducible from the stored inputs"
    print("self-check: all cases reproduce bit for bit from the stored file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
