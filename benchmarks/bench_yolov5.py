"""Time yolodbg's ``yolov5`` recipe against the real YOLOv5 ``ComputeLoss`` on the same tensors, in one process.

    python benchmarks/bench_yolov5.py                      # batch 16, 640×640, nc 80, 10 GTs per image
    python benchmarks/bench_yolov5.py --batch 4 --imgsz 320 --nc 3 --threads 2

Both sides get identical float32 head outputs and targets; the numbers are checked to agree before timing.
yolodbg's time is one ``YoloV5.run`` (assignment, loss items, objective, per-element ledger, positives); report-only
values are built when a report first uses them — decoded boxes and scores per anchor, GT reasons and details (the
time with those two built is printed too). Runs alternate between the two and the
best of ``--repeat`` is reported for each, with the ratio (target ≤ 1.3). Needs the ``yolov5`` package (7.0.14);
without it the script prints why it skips and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

V5S_ANCHORS = [
    [[10, 13], [16, 30], [33, 23]],
    [[30, 61], [62, 45], [59, 119]],
    [[116, 90], [156, 198], [373, 326]],
]
STRIDES = (8.0, 16.0, 32.0)
TARGET_RATIO = 1.3


class _Detect(torch.nn.Module):
    def __init__(self, nc: int) -> None:
        super().__init__()
        stride = torch.tensor(STRIDES)
        self.register_buffer(
            "anchors", torch.tensor(V5S_ANCHORS, dtype=torch.float32) / stride.view(-1, 1, 1)
        )
        self.stride, self.nl, self.na, self.nc = stride, 3, 3, nc


class _Model(torch.nn.Module):
    """What ComputeLoss reads from a model: a parameter (device), ``hyp`` and ``model[-1]``."""

    def __init__(self, nc: int, imgsz: int) -> None:
        super().__init__()
        self.model = torch.nn.ModuleList([torch.nn.Linear(1, 1), _Detect(nc)])
        box, obj, cls = 0.05, 1.0, 0.5  # hyp.scratch-low, rescaled as train.py does for 3 levels
        self.hyp = {
            "box": box * 3 / 3,
            "obj": obj * (imgsz / 640) ** 2 * 3 / 3,
            "cls": cls * nc / 80 * 3 / 3,
            "cls_pw": 1.0,
            "obj_pw": 1.0,
            "anchor_t": 4.0,
            "fl_gamma": 0.0,
            "label_smoothing": 0.0,
        }


def make_inputs(batch: int, imgsz: int, nc: int, per_image: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    levels = [torch.randn(batch, 3, imgsz // int(s), imgsz // int(s), 5 + nc, generator=g) for s in STRIDES]
    n = batch * per_image
    wh = torch.rand(n, 2, generator=g) * 0.5 + 0.01
    xy = torch.rand(n, 2, generator=g) * (1 - wh) + wh / 2
    rows = torch.cat(
        (
            torch.arange(batch).repeat_interleave(per_image).float()[:, None],
            torch.randint(nc, (n, 1), generator=g).float(),
            xy,
            wh,
        ),
        1,
    )
    return levels, rows


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--gts", type=int, default=10, help="ground-truth boxes per image")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    try:
        from yolov5.utils.loss import ComputeLoss
    except ImportError as e:
        print(
            f"bench_yolov5: skipped — the yolov5 package is not importable ({e}); pip install yolov5==7.0.14"
        )
        return 0

    from yolodbg import bundle, groundtruth
    from yolodbg.recipes.yolov5 import YoloV5

    torch.set_num_threads(args.threads)
    levels, rows = make_inputs(args.batch, args.imgsz, args.nc, args.gts, seed=0)
    crit = ComputeLoss(_Model(args.nc, args.imgsz))
    b = bundle.from_object(
        {
            "yolodbg": 1,
            "head": "yolov5",
            "outputs": levels,
            "anchors": V5S_ANCHORS,
            "targets": {"batch_idx": rows[:, 0], "cls": rows[:, 1], "bboxes": rows[:, 2:]},
        }
    )
    recipe = YoloV5()
    size, nc = recipe.input_layout(b)
    targets = groundtruth.from_batch(b.targets, b.batch_size, size, nc)

    loss, items = crit(levels, rows)
    res = recipe.run(b, targets)
    pairs = [*zip(("box", "obj", "cls"), items.tolist(), strict=True), ("objective", float(loss))]
    for k, want in pairs:
        got = res.objective if k == "objective" else res.terms[k]
        if abs(got - want) > 1e-5 * abs(want):
            print(f"bench_yolov5: numbers differ: {k} yolodbg {got!r} vs ComputeLoss {want!r}")
            return 1

    def with_reasons() -> None:
        r = recipe.run(b, targets)
        dict(r.gt_reasons), dict(r.gt_details)

    real, ours, full = float("inf"), float("inf"), float("inf")
    for _ in range(args.repeat):  # alternate, so a busy machine slows both alike
        real = min(real, best_of(lambda: crit(levels, rows), 1))
        ours = min(ours, best_of(lambda: recipe.run(b, targets), 1))
        full = min(full, best_of(with_reasons, 1))
    n_pos = len(res.positives.gt)
    print(
        f"batch {args.batch} × {args.imgsz}², nc {args.nc}, {len(rows)} GTs, {n_pos} positives, "
        f"{args.threads} thread(s), best of {args.repeat}"
    )
    print(f"  YOLOv5 ComputeLoss      {real * 1e3:8.1f} ms")
    print(
        f"  yolodbg yolov5 recipe   {ours * 1e3:8.1f} ms   (items, objective, per-element ledger, positives)"
    )
    print(f"    + GT reasons/details  {full * 1e3:8.1f} ms   (built on first use; explain needs them)")
    ratio = ours / real
    print(
        f"  ratio {ratio:.2f} (target ≤ {TARGET_RATIO})" + ("" if ratio <= TARGET_RATIO else "  ABOVE TARGET")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
