"""Make ``sample_data/yolox_val.pt``: YOLOX head outputs of a small trained YOLOX on the sample val images.

Run from the repository root with YOLOX 0.3.0's Python code importable (the unpacked PyPI sdist on the path, see
``tests/golden/make_golden_yolox.py``), after ``sample_data/make_sample.py`` has written the images:

    PYTHONPATH=/path/to/yolox-0.3.0 python sample_data/make_yolox_sample.py        # a few minutes on 2 CPU cores

With fixed seeds, the script

1. reads ``coco_val.json`` and ``images/*.jpg`` (category ids 1, 2, 3, 7 -> classes 0..3);
2. letterboxes every image to 320×320 as YOLOX's ``ValTransform`` does (``yolox.data.data_augment.preproc``:
   ratio r = min(320/h, 320/w), cv2 INTER_LINEAR resize to int(w·r)×int(h·r), placed top-left on grey 114, BGR,
   0-255, no normalisation), so each image's ``scale`` is r and its ``pad`` is [0, 0];
3. builds labels as YOLOX's ``COCODataset`` + ``TrainTransform`` do: COCO xywh -> xyxy, × r, -> cx, cy, w, h
   (crowd boxes left out, as yolodbg leaves them out of assignment);
4. builds YOLOX-nano (depth 0.33, width 0.25, depthwise convolutions, nc 4) with YOLOX's initialisation;
   its backbone and neck stay at their random initialisation and are run once (BatchNorm on batch statistics
   of the val images and their mirror images) -- training them too would take hours on 2 CPU cores -- and the
   head alone is overfitted on those features with the real YOLOX loss (Adam, random horizontal flips, the L1
   term on for the last quarter of the steps, as YOLOX turns it on for its last epochs);
5. runs the trained head with BatchNorm in eval mode (running statistics) on the features of the first
   ``BUNDLE_IMAGES`` images and records the per-level head maps (reg, obj, cls before decoding) with forward
   hooks: what the head's training branch concatenates and decodes;
6. checks that yolodbg's ``yolox`` recipe with ``--gt coco_val.json`` gives exactly the loss of YOLOX's
   ``get_losses`` on the same labels, and that the predictions are meaningful (positives overlap their GT);
7. writes ``yolox_val.pt`` (canonical bundle: head, outputs, input_size, strides, images with scale and pad,
   category_ids, and in ``meta`` how it was made). It loads with ``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

OUT_DIR = Path(__file__).resolve().parent
SEED = 0
IMGSZ = 320
STRIDES = [8, 16, 32]
CATEGORY_IDS = (1, 2, 3, 7)
STEPS = 600
LR = 5e-3
BUNDLE_IMAGES = 4


def load_val(data_dir: Path) -> tuple[list[dict], dict]:
    doc = json.loads((data_dir / "coco_val.json").read_text())
    anns: dict[int, list[dict]] = {}
    for a in doc["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    images = sorted(doc["images"], key=lambda im: im["id"])
    return images, anns


def letterbox(image_path: Path) -> tuple[np.ndarray, float, tuple[int, int]]:
    """YOLOX ValTransform: (3, 320, 320) float32 BGR 0-255 and the ratio r."""
    import cv2
    from yolox.data.data_augment import preproc

    img = cv2.imread(str(image_path))
    if img is None:
        raise SystemExit(f"{image_path}: cannot read the image; run sample_data/make_sample.py first")
    arr, r = preproc(img, (IMGSZ, IMGSZ))
    return arr, float(r), img.shape[:2]


def labels_for(anns: list[dict], r: float) -> np.ndarray:
    """YOLOX labels (n, 5) [class, cx, cy, w, h] in input pixels."""
    rows = []
    for a in anns:
        if a.get("iscrowd", 0):
            continue
        x, y, w, h = a["bbox"]
        x1, y1, x2, y2 = np.array([x, y, x + max(0.0, w), y + max(0.0, h)]) * r
        if x2 > x1 and y2 > y1:
            rows.append(
                [CATEGORY_IDS.index(a["category_id"]), (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
            )
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def padded(labels: list[np.ndarray], flips: list[bool] | None = None) -> torch.Tensor:
    """(B, max_labels, 5), zero-padded; flipped images get cx -> 320 - cx."""
    m = max(1, max(len(lb) for lb in labels))
    out = torch.zeros(len(labels), m, 5)
    for i, lb in enumerate(labels):
        t = torch.from_numpy(lb.copy())
        if flips and flips[i] and len(t):
            t[:, 1] = IMGSZ - t[:, 1]
        out[i, : len(t)] = t
    return out


def build_model():
    import torch.nn as nn
    from yolox.models import YOLOPAFPN, YOLOX, YOLOXHead

    torch.manual_seed(SEED)
    in_channels = [256, 512, 1024]
    model = YOLOX(
        YOLOPAFPN(0.33, 0.25, in_channels=in_channels, depthwise=True),
        YOLOXHead(len(CATEGORY_IDS), 0.25, in_channels=in_channels, depthwise=True),
    )
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03
    model.head.initialize_biases(1e-2)
    return model


def features(model, x: torch.Tensor) -> list[torch.Tensor]:
    """FPN features of the frozen random backbone + neck (BatchNorm on the batch's statistics)."""
    model.backbone.train()
    with torch.no_grad():
        return [f.detach() for f in model.backbone(x)]


def train_head(
    head, feats: list[torch.Tensor], flipped: list[torch.Tensor], labels, steps: int
) -> list[float]:
    """Overfit the head on fixed features with the YOLOX loss; a flipped image uses its mirror's features."""
    rng = random.Random(SEED)
    opt = torch.optim.Adam(head.parameters(), lr=LR)
    head.train()
    losses = []
    t0 = time.time()
    for step in range(steps):
        head.use_l1 = step >= steps * 3 // 4
        flips = torch.tensor([rng.random() < 0.5 for _ in range(len(labels))])
        xin = [torch.where(flips[:, None, None, None], fl, f) for f, fl in zip(feats, flipped, strict=True)]
        opt.zero_grad()
        loss, *_, num_fg = head(xin, padded(labels, flips.tolist()), None)
        loss.backward()
        opt.step()
        losses.append(float(loss))
        if step % 200 == 0 or step == steps - 1:
            print(
                f"  step {step:5d}  loss {losses[-1]:.3f}  num_fg/gt {float(num_fg):.2f}  ({time.time() - t0:.0f}s)"
            )
    return losses


def head_maps(head, feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-level (B, 5+nc, H, W) = cat(reg, obj, cls) from the head's prediction convolutions."""
    got = {}
    hooks = [
        mod.register_forward_hook(lambda _m, _i, o, key=(kind, k): got.__setitem__(key, o.detach().clone()))
        for kind in ("reg", "obj", "cls")
        for k, mod in enumerate(getattr(head, f"{kind}_preds"))
    ]
    try:
        with torch.no_grad():
            head(feats)
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat([got[("reg", k)], got[("obj", k)], got[("cls", k)]], 1).contiguous() for k in range(3)]


def yolox_reference(levels: list[torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """YOLOX 0.3.0's decode + get_losses on the recorded maps: the total and the logged items."""
    from yolox.models import YOLOXHead

    head = YOLOXHead(len(CATEGORY_IDS), width=0.25).train()
    outs, xs, ys, es = [], [], [], []
    for k, t in enumerate(levels):
        o, grid = head.get_output_and_grid(t.clone(), k, STRIDES[k], t.type())
        xs.append(grid[:, :, 0])
        ys.append(grid[:, :, 1])
        es.append(torch.zeros(1, grid.shape[1]).fill_(STRIDES[k]))
        outs.append(o)
    with torch.no_grad():
        r = head.get_losses(None, xs, ys, es, labels, torch.cat(outs, 1), [], torch.float32)
    return {
        name: float(v)
        for name, v in zip(("total", "iou", "obj", "cls", "l1", "num_fg_per_gt"), r, strict=True)
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=OUT_DIR, help="folder with coco_val.json and images/")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "yolox_val.pt")
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)  # small tensors: one thread is as fast, and deterministic
    import yolox

    from yolodbg import bundle as bundle_mod
    from yolodbg.explain import explain
    from yolodbg.recipes.yolox_replay import yolox_labels

    torch.manual_seed(SEED)
    images, anns = load_val(args.data_dir)
    arrays, infos, labels = [], [], []
    for im in images:
        arr, r, (h, w) = letterbox(args.data_dir / "images" / im["file_name"])
        arrays.append(torch.from_numpy(arr))
        labels.append(labels_for(anns.get(im["id"], []), r))
        infos.append({"image_id": im["id"], "file_name": im["file_name"], "orig_size": [h, w], "scale": r,
                      "pad": [0, 0]})  # fmt: skip
    x = torch.stack(arrays)
    print(f"{len(images)} val images, {sum(len(lb) for lb in labels)} boxes; training the YOLOX-nano head for "
          f"{args.steps} steps")  # fmt: skip
    model = build_model()
    both = features(model, torch.cat([x, x.flip(-1)]))
    feats, flipped = [f[: len(x)] for f in both], [f[len(x) :] for f in both]
    losses = train_head(model.head, feats, flipped, labels, args.steps)

    model.head.eval()
    chosen = slice(0, BUNDLE_IMAGES)
    levels = head_maps(model.head, [f[chosen] for f in feats])
    options = {
        "head": "yolox",
        "input_size": [IMGSZ, IMGSZ],
        "strides": [float(s) for s in STRIDES],
        "images": infos[chosen],
        "category_ids": list(CATEGORY_IDS),
    }
    meta = {
        "model": "YOLOX-nano (YOLOPAFPN depth 0.33 width 0.25 depthwise + YOLOXHead width 0.25), nc 4",
        "framework": "yolox",
        "framework_version": str(yolox.__version__),
        "training": f"backbone + neck: YOLOX random init, frozen, run once with BatchNorm batch statistics over "
        f"the {len(images)} val images and their mirrors; head: {args.steps} Adam steps (lr {LR}) with the YOLOX "
        "loss on those features, random horizontal flips, L1 term on for the last quarter",
        "final_train_loss": round(losses[-1], 4),
        "mode": "head in eval mode (BatchNorm running statistics) on the first images' features; outputs = "
        "per-level head maps cat(reg, obj, cls) before decoding, recorded with forward hooks",
        "letterbox": "yolox.data.data_augment.preproc (ValTransform): r = min(320/h, 320/w), top-left, "
        "grey 114, BGR, 0-255; pad [0, 0]",
        "labels": "COCO xywh -> xyxy × r -> cx, cy, w, h (YOLOX COCODataset + TrainTransform), crowd boxes out",
        "seed": SEED,
    }
    tmp = args.out.with_suffix(".tmp.pt")
    tmp.unlink(missing_ok=True)
    bundle_mod.save(tmp, levels, meta=meta, **options)
    ex = explain(bundle_mod.load(tmp), gt=args.data_dir / "coco_val.json")
    tmp.unlink()
    res = ex.breakdown.result
    # YOLOX on the labels yolodbg derives from coco_val.json, and on labels built here the way YOLOX's own
    # COCODataset does (an independent check of the letterbox mapping)
    ref = yolox_reference(levels, yolox_labels(ex.targets)[0])
    own = yolox_reference(levels, padded(labels[chosen]))
    print(f"yolodbg yolox objective {res.objective:.6f}, YOLOX get_losses {ref['total']:.6f} (own labels "
          f"{own['total']:.6f}); terms {res.terms}")  # fmt: skip
    assert abs(res.objective - ref["total"]) <= 1e-5 * abs(ref["total"]), "yolodbg and YOLOX disagree"
    assert abs(own["total"] - ref["total"]) <= 1e-5 * abs(ref["total"]), "the COCO label mapping disagrees"
    iou = res.positives.iou
    print(f"{len(iou)} positives, mean IoU with their GT {float(iou.mean()):.3f}; GTs {len(ex.targets)}")
    assert len(iou) and float(iou.mean()) > 0.5, "the model's boxes are not meaningful yet; train longer"
    meta["yolox_reference"] = {**ref, "gt": "coco_val.json", "recipe": "yolox (0.3.0)"}
    meta["positives_mean_iou"] = round(float(iou.mean()), 4)
    bundle_mod.save(args.out, levels, meta=meta, overwrite=True, **options)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
