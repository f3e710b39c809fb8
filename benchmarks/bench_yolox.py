"""Time yolodbg's ``yolox`` recipe against YOLOX 0.3.0's own loss path on the same tensors, in one process.

    PYTHONPATH=/path/to/yolox-0.3.0 python benchmarks/bench_yolox.py        # batch 8, 640×640, 80 classes

Both sides start from the same per-level raw head maps ``(B, 85, H, W)`` and ground truth:

* YOLOX: ``YOLOXHead.get_output_and_grid`` for every level (the decode of its train forward) and
  ``get_losses`` (SimOTA per image and the four losses);
* yolodbg: :func:`yolodbg.api.replay` with the ``yolox`` recipe — bundle and target checks, the same decode,
  SimOTA, the losses, and on top the per-element ledger, the positives and the per-GT reasons.

Runs alternate between the two (so machine load hits both alike) and the medians are compared; the target is
a ratio ≤ 1.3. Without YOLOX importable the benchmark prints why and exits 0.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import warnings

import torch


def make_inputs(batch: int, size: int, nc: int, gts: int, seed: int = 0) -> tuple[list[torch.Tensor], dict]:
    """Random head maps with a trained head's scale (obj and class logits around −4) and ~``gts`` boxes per image."""
    g = torch.Generator().manual_seed(seed)
    levels = []
    for s in (8, 16, 32):
        h = w = size // s
        t = torch.randn(batch, 5 + nc, h, w, generator=g)
        t[:, :4] *= 0.5
        t[:, 4:] -= 4.0
        levels.append(t)
    rng = random.Random(seed)
    rows = []
    for b in range(batch):
        for _ in range(max(1, gts + rng.randint(-3, 3))):
            w, h = rng.uniform(0.03, 0.5), rng.uniform(0.03, 0.5)
            rows.append(
                [b, rng.randrange(nc), rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2), w, h]
            )
    t = torch.tensor(rows, dtype=torch.float32)
    return levels, {"batch_idx": t[:, 0], "cls": t[:, 1], "bboxes": t[:, 2:]}


def yolox_loss(head, levels: list[torch.Tensor], labels: torch.Tensor):
    """YOLOX's loss path from the raw maps: decode every level, then get_losses."""
    outs, xs, ys, es = [], [], [], []
    for k, t in enumerate(levels):
        out, grid = head.get_output_and_grid(t.clone(), k, head.strides[k], t.type())
        xs.append(grid[:, :, 0])
        ys.append(grid[:, :, 1])
        es.append(torch.zeros(1, grid.shape[1]).fill_(head.strides[k]).type_as(t))
        outs.append(out)
    return head.get_losses(None, xs, ys, es, labels, torch.cat(outs, 1), [], levels[0].dtype)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--gts", type=int, default=8, help="average GTs per image")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    try:
        import yolox
        from yolox.models import YOLOXHead
    except ImportError as e:
        print(
            f"bench_yolox: skipped — YOLOX is not importable ({e}); put the unpacked yolox==0.3.0 sdist on PYTHONPATH"
        )
        return 0
    from yolodbg.api import replay
    from yolodbg.groundtruth import from_batch
    from yolodbg.recipes.yolox_replay import yolox_labels

    warnings.simplefilter("ignore")
    levels, targets = make_inputs(args.batch, args.size, args.nc, args.gts)
    size = (args.size, args.size)
    labels, _ = yolox_labels(from_batch(targets, args.batch, size, args.nc))
    head = YOLOXHead(args.nc, width=0.25).train()

    def ours():
        return replay(levels, targets, recipe="yolox", input_size=size, head="yolox")

    def theirs():
        with torch.no_grad():
            return yolox_loss(head, levels, labels.clone())

    mine, ref = ours(), theirs()  # warm-up, and a check that both computed the same loss
    assert abs(mine.objective - float(ref[0])) <= 1e-5 * abs(float(ref[0])), (mine.objective, float(ref[0]))
    t_ours, t_theirs = [], []
    for _ in range(args.repeat):
        for fn, acc in ((theirs, t_theirs), (ours, t_ours)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    a, b = statistics.median(t_ours), statistics.median(t_theirs)
    n_gt = int(targets["cls"].numel())
    print(
        f"bench_yolox: batch {args.batch}, {args.size}×{args.size}, {args.nc} classes, {n_gt} GTs, "
        f"{int(mine.fg.sum())} positives, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"yolox {yolox.__version__}"
    )
    print(f"  YOLOX decode + get_losses : median {b * 1e3:8.1f} ms   (min {min(t_theirs) * 1e3:.1f})")
    print(f"  yolodbg replay (yolox)    : median {a * 1e3:8.1f} ms   (min {min(t_ours) * 1e3:.1f})")
    print(f"  ratio yolodbg / YOLOX     : {a / b:.2f} (target ≤ 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
