"""Throughput and memory of ``yolodbg scan``, against the framework computing its own loss.

    python benchmarks/bench_scan.py [--bundles 200] [--batch 8] [--imgsz 640] [--nc 80] [--distinct 10]

Writes ``--bundles`` bundle files of ``--batch`` images at ``--imgsz`` (random head outputs, 8 GTs
per image, COCO-like class count) into a temporary folder. To keep the disk use small, only
``--distinct`` of them hold distinct tensors; the others are hard links (every file is still read
and processed in full, and the reference reads the same files). Then it prints:

1. scan throughput (images/s, loss + breakdown + decode/NMS + COCOeval per bundle, as ``yolodbg
   scan``) with 1 and 2 worker processes;
   and the same without mAP (``--no-map``: replay + breakdown only);
2. the reference: Ultralytics ``v8DetectionLoss`` on the same files (torch.load + loss, no
   backward), twice: as a plain script runs it (a fresh process, glibc's default allocator), and in
   this process, which tunes glibc's allocator as ``yolodbg scan`` does
   (``scan.run.allocator.tune()``: freed heap pages are kept for the next bundle instead of being
   faulted in again), so that the framework gets yolodbg's allocator too; once, also the
   validator's decode and NMS — skipped without ultralytics;
   then the ratios scan / reference. The issue's target: scan ≥ the framework's loss;
3. the peak RSS of a scan of 10 and of 100 bundles, each in a fresh process (1 worker, 1 thread),
   and its RSS between bundles over the second half of the scan: flat memory means these do not
   grow with the number of bundles beyond COCOeval's small per-image match records (the peak is
   one bundle's transient, which moves by tens of MB with where the heap's free blocks lie).

Every rate is the best of ``--rounds`` interleaved rounds (default 2): on this shared machine the
same measurement swings by tens of percent between minutes, and interleaving keeps a slow minute
from landing on one side of a ratio only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def make_bundles(folder: Path, n: int, distinct: int, bs: int, imgsz: int, nc: int, gts: int) -> list[Path]:
    from yolodbg import bundle

    g = torch.Generator().manual_seed(0)
    shapes = [(imgsz // s, imgsz // s) for s in (8, 16, 32)]
    anchors = sum(h * w for h, w in shapes)
    paths = []
    for k in range(n):
        path = folder / f"b{k:04d}.pt"
        if k < distinct:
            m = bs * gts
            wh = torch.rand(m, 2, generator=g) * 0.3 + 0.01
            xy = torch.rand(m, 2, generator=g) * (1 - wh) + wh / 2
            out = {
                "boxes": torch.randn(bs, 64, anchors, generator=g),
                "scores": torch.randn(bs, nc, anchors, generator=g)
                - 9.0,  # ~2% of (anchor, class) above 0.001
                "feats": [torch.empty(bs, 0, h, w) for h, w in shapes],
            }
            targets = {
                "batch_idx": torch.arange(bs).repeat_interleave(gts).float(),
                "cls": torch.randint(0, nc, (m, 1), generator=g).float(),
                "bboxes": torch.cat((xy, wh), 1),
            }
            images = [
                {"image_id": k * bs + i, "orig_size": [480, 640], "scale": 1.0, "pad": [80, 0]}
                for i in range(bs)
            ]
            bundle.save(path, out, input_size=[imgsz, imgsz], targets=targets, images=images)
        else:
            os.link(paths[k % distinct], path)
        paths.append(path)
    return paths


def scan_rate(paths: list[Path], workers: int, evaluate: bool = True) -> float:
    from yolodbg.scan.run import ScanJob, scan

    t = time.perf_counter()
    agg = scan(paths, ScanJob(evaluate=evaluate), workers=workers)
    agg.summary()
    return agg.images / (time.perf_counter() - t)


def reference_rate(paths: list[Path], nms_bundles: int = 10) -> tuple[float, float, float] | None:
    """Images/s of Ultralytics' loss alone, of torch.load + loss, and of torch.load + loss + NMS.

    The last is what Ultralytics' validator does per batch besides its metrics: the inference
    decode (``Detect._inference``) and ``non_max_suppression`` (torchvision's NMS, as in a real
    validation run) with the validator's defaults, without its time limit (which would cut the
    work short); measured on the first ``nms_bundles`` files only, as it is slow on random outputs
    (~10⁴ rows per image above conf 0.001, all of them go through torchvision's NMS).
    """
    try:
        import torchvision  # noqa: F401  (loaded, as during validation: the NMS then uses it)
        from ultralytics.cfg import get_cfg
        from ultralytics.nn.modules.head import Detect
        from ultralytics.nn.tasks import DetectionModel
        from ultralytics.utils.nms import non_max_suppression
    except ImportError:
        return None
    nc = torch.load(paths[0], map_location="cpu", weights_only=True)["outputs"]["scores"].shape[1]
    model = DetectionModel("yolov8n.yaml", nc=nc, verbose=False)  # built before the clock starts
    model.args = get_cfg()
    crit = model.init_criterion()
    head = Detect(nc=nc, ch=(16, 32, 64)).eval()
    head.stride = torch.tensor([8.0, 16.0, 32.0])
    t_loss = t_all = t_nms = 0.0
    images = nms_images = 0
    for i, p in enumerate(paths):
        t0 = time.perf_counter()
        doc = torch.load(p, map_location="cpu", weights_only=True)
        batch = {k: v.reshape(-1, 1) if k == "cls" else v for k, v in doc["targets"].items()}
        t1 = time.perf_counter()
        with torch.no_grad():
            crit(doc["outputs"], batch)
        t2 = time.perf_counter()
        t_loss += t2 - t1
        t_all += t2 - t0
        images += doc["outputs"]["scores"].shape[0]
        if i < nms_bundles:
            with torch.no_grad():
                preds = head._inference(doc["outputs"])
                non_max_suppression(preds, 0.001, 0.7, multi_label=True, max_det=300, max_time_img=1e6)
            t_nms += time.perf_counter() - t0
            nms_images += doc["outputs"]["scores"].shape[0]
    return images / t_loss, images / t_all, (nms_images / t_nms if nms_images else float("nan"))


def _last_line_of_child(code: str, paths: list[Path]) -> str:
    """Run ``code`` in a fresh interpreter with the paths as a JSON argv[1]; its last printed line."""
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps([str(p) for p in paths])],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def reference_rate_child(paths: list[Path]) -> tuple[float, float, float] | None:
    """:func:`reference_rate` in a fresh process, allocator untouched."""
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from bench_scan import reference_rate\n"
        "from pathlib import Path\n"
        "print(json.dumps(reference_rate([Path(p) for p in json.loads(sys.argv[1])], nms_bundles=0)))\n"
    )
    return json.loads(_last_line_of_child(code, paths))


def peak_rss_child(paths: list[Path]) -> tuple[float, float, float]:
    """Memory (MB) of a fresh process that scans ``paths`` with 1 worker: its peak RSS, and the least
    and the most RSS between two bundles over the second half of the scan (flat memory: these do not
    grow with the number of bundles)."""
    code = (  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
        "import json, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from yolodbg.scan.run import ScanJob, allocator, scan\n"
        "allocator.tune()\n"
        "def mb(key):\n"
        "    return int([ln for ln in open('/proc/self/status') if ln.startswith(key)][0].split()[1]) / 1024\n"
        "rss = []\n"
        "agg = scan(json.loads(sys.argv[1]), ScanJob(), on_record=lambda rec: rss.append(mb('VmRSS')))\n"
        "agg.summary()\n"
        "late = rss[len(rss) // 2 :]\n"
        "print(json.dumps([mb('VmHWM'), min(late), max(late)]))\n"
    )
    peak, low, high = json.loads(_last_line_of_child(code, paths))
    return peak, low, high


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--gts", type=int, default=8)
    ap.add_argument("--distinct", type=int, default=10)
    ap.add_argument("--rss", default="10,100", help="bundle counts of the peak-RSS runs")
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="interleaved rounds of every measurement; the best rate of each is kept (this machine's "
        "timings swing by tens of percent from minute to minute)",
    )
    a = ap.parse_args()
    from yolodbg.scan.run import allocator

    allocator.tune()  # as `yolodbg scan` does
    with tempfile.TemporaryDirectory(prefix="bench_scan_") as tmp:
        n_rss = [int(v) for v in a.rss.split(",")]
        paths = make_bundles(Path(tmp), max(a.bundles, *n_rss), a.distinct, a.batch, a.imgsz, a.nc, a.gts)
        print(
            f"{a.bundles} bundles × batch {a.batch} at {a.imgsz}, {a.nc} classes, {a.gts} GT/image, "
            f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
        )
        work = paths[: a.bundles]
        rates: dict = {}
        ref = plain = None  # (loss, load + loss[, + NMS]) images/s: in this process / as a plain script
        for r in range(a.rounds):  # interleaved, so a slow minute hurts one round, not one configuration
            for evaluate, label in ((True, "scan"), (False, "scan --no-map")):
                for workers in (1, 2):
                    rate = scan_rate(work, workers, evaluate)
                    rates[label, workers] = max(rates.get((label, workers), 0.0), rate)
                    print(
                        f"  round {r + 1}: {label + ',':15s}{workers} worker(s) {rate:8.2f} images/s",
                        flush=True,
                    )
            got = reference_rate(work, nms_bundles=10 if r == 0 else 0)  # the slow NMS reference once
            if got is None:
                continue
            ref = got if ref is None else (max(ref[0], got[0]), max(ref[1], got[1]), ref[2])
            fresh = reference_rate_child(work)
            plain = fresh if plain is None else (max(plain[0], fresh[0]), max(plain[1], fresh[1]))
            print(
                f"  round {r + 1}: ultralytics loss {got[0]:.2f}, torch.load + loss {got[1]:.2f}; as a plain "
                f"script: loss {fresh[0]:.2f}, torch.load + loss {fresh[1]:.2f}",
                flush=True,
            )
        print(f"best of {a.rounds} round(s):")
        for (label, workers), rate in rates.items():
            print(f"{label + ',':15s}{workers} worker(s)    {rate:8.2f} images/s")
        if ref is None:
            print("ultralytics not installed: no reference (pip install ultralytics==8.4.190)")
        else:
            print("ultralytics v8DetectionLoss, images/s     loss only   torch.load + loss")
            print(f"  as a plain script (its allocator)      {plain[0]:9.2f}   {plain[1]:9.2f}")
            print(f"  with yolodbg's allocator tuning        {ref[0]:9.2f}   {ref[1]:9.2f}")
            print(
                f"ultralytics torch.load + loss + NMS      {ref[2]:9.2f} images/s (the validator's work, no metrics)"
            )
            best = {label: max(rates[label, 1], rates[label, 2]) for label in ("scan", "scan --no-map")}
            print("target: scan (best of 1/2 workers) ≥ the framework's torch.load + loss; ratios:")
            print("                        plain script   with yolodbg's allocator")
            for label, rate in best.items():
                print(f"  {label:20s}  {rate / plain[1]:9.2f}   {rate / ref[1]:9.2f}")
            print(f"  scan / the framework's torch.load + loss + NMS: {best['scan'] / ref[2]:.1f}")
        for n in n_rss:
            peak, low, high = peak_rss_child(paths[:n])
            print(
                f"peak RSS, scan of {n:4d} bundles      {peak:8.0f} MB (between bundles, second half: "
                f"{low:.0f}–{high:.0f} MB)",
                flush=True,
            )
        print(
            f"(this process, which made the bundles: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)"
        )


if __name__ == "__main__":
    main()
