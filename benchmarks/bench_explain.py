"""Time yolodbg's yolov8 replay + breakdown against Ultralytics' v8DetectionLoss on the same tensors.

    python benchmarks/bench_explain.py [--batch 16] [--imgsz 640] [--nc 80] [--gts 8] [--repeat 5]

Prints the median wall time of (a) Ultralytics ``v8DetectionLoss`` (assignment + loss, no backward),
(b) yolodbg's ``yolov8`` recipe (assignment + unreduced terms + ledger), (c) the breakdown (per GT,
per image, background, top negatives, reasons), their ratios, and the process's peak RSS. Needs
ultralytics for (a); without it only yolodbg's times are printed.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch


def make_inputs(bs: int, imgsz: int, nc: int, gts: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(imgsz // s, imgsz // s) for s in (8, 16, 32)]
    n = sum(h * w for h, w in shapes)
    out = {
        "boxes": torch.randn(bs, 64, n, generator=g),
        "scores": torch.randn(bs, nc, n, generator=g) - 3,
        "feats": [torch.empty(bs, 0, h, w) for h, w in shapes],
    }
    m = bs * gts
    wh = torch.rand(m, 2, generator=g) * 0.4 + 0.02
    xy = torch.rand(m, 2, generator=g) * (1 - wh) + wh / 2
    batch = {
        "batch_idx": torch.arange(bs).repeat_interleave(gts).float(),
        "cls": torch.randint(0, nc, (m, 1), generator=g).float(),
        "bboxes": torch.cat((xy, wh), 1),
    }
    return out, batch


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--gts", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    torch.set_grad_enabled(False)

    from yolodbg import breakdown
    from yolodbg.api import replay

    out, batch = make_inputs(a.batch, a.imgsz, a.nc, a.gts)
    print(
        f"batch {a.batch}, input {a.imgsz}, {a.nc} classes, {a.gts} GT per image, {torch.get_num_threads()} threads"
    )
    rss0 = peak_rss_mb()
    t_replay = timed(lambda: replay(out, batch), a.repeat)
    res = replay(out, batch)
    t_breakdown = timed(lambda: breakdown.build(res.result, res.targets, top=15), a.repeat)
    print(f"yolodbg replay (assign + terms + ledger) {t_replay * 1e3:8.1f} ms")
    print(f"yolodbg breakdown (per GT/image, reasons) {t_breakdown * 1e3:8.1f} ms")
    print(f"peak RSS {peak_rss_mb():.0f} MB (before yolodbg: {rss0:.0f} MB)")
    try:
        from ultralytics.cfg import get_cfg
        from ultralytics.nn.tasks import DetectionModel
    except ImportError:
        print("ultralytics not installed: no reference timing (pip install ultralytics==8.4.190 torchvision)")
        return
    model = DetectionModel("yolov8n.yaml", nc=a.nc, verbose=False)
    model.args = get_cfg()
    crit = model.init_criterion()
    t_ref = timed(lambda: crit(out, batch), a.repeat)
    total = t_replay + t_breakdown
    print(f"ultralytics v8DetectionLoss               {t_ref * 1e3:8.1f} ms")
    print(f"ratio replay / ultralytics                {t_replay / t_ref:8.2f}")
    print(f"ratio (replay + breakdown) / ultralytics  {total / t_ref:8.2f}")


if __name__ == "__main__":
    main()
