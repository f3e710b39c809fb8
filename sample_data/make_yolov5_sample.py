"""Make ``sample_data/yolov5n_val.pt``: a YOLOv5n (yolov5 7.0.14) bundle for the sample val images.

Run from the repository root, after ``sample_data/make_sample.py`` has written ``images/`` and
``coco_val.json``, in an environment with the ``yolov5`` package (see tests/golden/make_golden_yolov5.py):

    python sample_data/make_yolov5_sample.py            # a few minutes on 2 CPU cores

With fixed seeds it

1. letterboxes the 8 val images to 320×320 (ratio ``min(320/h, 320/w)``, centred grey-114 padding, the
   same geometry as ``yolodbg.geometry.Letterbox.ultralytics``; resampled with PIL bilinear) and maps their
   non-crowd COCO boxes into the input (category ids 1, 2, 3, 7 -> classes 0..3);
2. builds ``yolov5n.yaml`` with nc=4 (random init) and overfits it briefly on those 8 images with the real
   ``ComputeLoss`` (hyp.scratch-low rescaled as train.py does for nl 3, nc 4, imgsz 320; Adam, lr 2e-3,
   horizontal flips on odd steps), so the predictions are meaningful but not perfect;
3. runs the model in eval mode (BatchNorm running statistics) on the first 4 val images and keeps the raw
   per-level ``(B, 3, H, W, 9)`` outputs that Detect returns next to the decoded ones;
4. writes the canonical bundle (anchors in input pixels, strides, per-image letterbox, category ids, the
   images' own targets) and checks that yolodbg's ``yolov5`` recipe and the real ComputeLoss agree on it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from yolodbg import bundle as bundle_mod
from yolodbg.geometry import Letterbox

HERE = Path(__file__).resolve().parent
IMGSZ = 320
CATEGORY_IDS = (1, 2, 3, 7)
BUNDLE_IMAGES = 4
STEPS = 150
SEED = 0
YOLOV5_VERSION = "7.0.14"


def letterbox_images(coco: dict, image_dir: Path) -> tuple[torch.Tensor, list[dict], list[list[tuple]]]:
    """``(N, 3, 320, 320)`` float images, per-image infos (for the bundle) and boxes ``(cls, x1, y1, x2, y2)``."""
    cls_of = {cid: i for i, cid in enumerate(sorted(CATEGORY_IDS))}
    tensors, infos, boxes = [], [], []
    for img in sorted(coco["images"], key=lambda r: r["id"]):
        pil = Image.open(image_dir / img["file_name"]).convert("RGB")
        w, h = pil.size
        lb = Letterbox.ultralytics((h, w), (IMGSZ, IMGSZ))
        new_w, new_h = max(round(w * lb.scale_x), 1), max(round(h * lb.scale_y), 1)
        canvas = Image.new("RGB", (IMGSZ, IMGSZ), (114, 114, 114))
        canvas.paste(pil.resize((new_w, new_h), Image.BILINEAR), (int(lb.pad_left), int(lb.pad_top)))
        tensors.append(torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(IMGSZ, IMGSZ, 3))
        infos.append(
            {
                "image_id": img["id"],
                "file_name": img["file_name"],
                "orig_size": [h, w],
                "scale": lb.scale_x,
                "pad": [int(lb.pad_top), int(lb.pad_left)],
            }
        )
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"] and not a.get("iscrowd")]
        boxes.append([(cls_of[a["category_id"]], *lb.to_input_xyxy(*a["bbox"])) for a in anns])
    x = torch.stack(tensors).permute(0, 3, 1, 2).float() / 255
    return x, infos, boxes


def batch_targets(boxes: list[list[tuple]]) -> torch.Tensor:
    """YOLOv5 target rows ``(n, 6)``: image, class, normalised cx, cy, w, h (boxes clipped to the input)."""
    rows = []
    for b, per_image in enumerate(boxes):
        for c, x1, y1, x2, y2 in per_image:
            x1, y1 = max(x1, 0.0), max(y1, 0.0)
            x2, y2 = min(x2, IMGSZ), min(y2, IMGSZ)
            rows.append(
                [b, c, (x1 + x2) / 2 / IMGSZ, (y1 + y2) / 2 / IMGSZ, (x2 - x1) / IMGSZ, (y2 - y1) / IMGSZ]
            )
    return torch.tensor(rows, dtype=torch.float32).view(-1, 6)


def flip(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = rows.clone()
    rows[:, 2] = 1 - rows[:, 2]
    return x.flip(-1), rows


def build_model():
    import yaml
    import yolov5
    from yolov5.models.yolo import DetectionModel

    root = Path(yolov5.__file__).resolve().parent
    cfg = yaml.safe_load((root / "models" / "yolov5n.yaml").read_text())
    cfg["nc"] = len(CATEGORY_IDS)
    torch.manual_seed(SEED)
    model = DetectionModel(cfg, ch=3)
    hyp = yaml.safe_load((root / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    nl, nc = model.model[-1].nl, cfg["nc"]
    hyp["box"] *= 3 / nl  # train.py's rescaling
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (IMGSZ / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = 0.0
    model.hyp = hyp
    return model


def overfit(model, x: torch.Tensor, rows: torch.Tensor, steps: int) -> list[float]:
    from yolov5.utils.loss import ComputeLoss

    crit = ComputeLoss(model)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for step in range(steps):
        xb, rb = flip(x, rows) if step % 2 else (x, rows)
        opt.zero_grad()
        loss, _ = crit(model(xb), rb)
        loss.sum().backward()
        opt.step()
        losses.append(float(loss))
        if step % 25 == 0 or step == steps - 1:
            print(f"  step {step:3d} loss {losses[-1]:.4f}", flush=True)
    return losses


def check(path: Path, model) -> None:
    """yolodbg and the real ComputeLoss on the saved bundle (its own targets): same numbers."""
    from yolov5.utils.loss import ComputeLoss

    from yolodbg import groundtruth
    from yolodbg.recipes.yolov5 import YoloV5

    b = bundle_mod.load(path)
    recipe = YoloV5()
    size, nc = recipe.input_layout(b)
    res = recipe.run(b, groundtruth.from_batch(b.targets, b.batch_size, size, nc))
    t = b.targets
    rows = torch.cat((t["batch_idx"].view(-1, 1), t["cls"].view(-1, 1), t["bboxes"]), 1).float()
    loss, items = ComputeLoss(model)(b.outputs, rows)
    for k, want in zip(("box", "obj", "cls"), items.tolist(), strict=True):
        assert abs(res.terms[k] - want) <= 1e-5 * abs(want), (k, res.terms[k], want)
    assert abs(res.objective - float(loss)) <= 1e-5 * float(loss), (res.objective, float(loss))
    print(
        f"check: yolodbg {res.terms} objective {res.objective:.6g} == ComputeLoss {items.tolist()} {float(loss):.6g}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=HERE / "images")
    ap.add_argument("--gt", type=Path, default=HERE / "coco_val.json")
    ap.add_argument("-o", "--out", type=Path, default=HERE / "yolov5n_val.pt")
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from yolov5.utils.general import LOGGER

    LOGGER.setLevel("WARNING")
    coco = json.loads(args.gt.read_text())
    x, infos, boxes = letterbox_images(coco, args.images)
    rows = batch_targets(boxes)
    print(f"{len(infos)} images, {len(rows)} boxes; overfitting yolov5n for {args.steps} steps")
    model = build_model()
    t0 = time.time()
    losses = overfit(model, x, rows, args.steps)
    model.eval()
    keep = rows[rows[:, 0] < BUNDLE_IMAGES]
    with torch.no_grad():
        _, levels = model(x[:BUNDLE_IMAGES])  # eval mode: (decoded, raw per-level train-format outputs)
    det = model.model[-1]
    anchors_px = (det.anchors * det.stride.view(-1, 1, 1)).tolist()
    meta = {
        "model": "yolov5n.yaml (nc=4, random init)",
        "framework": "yolov5 (PyPI, = ultralytics/yolov5 v7.0)",
        "framework_version": YOLOV5_VERSION,
        "training": (
            f"overfitted for {args.steps} Adam steps (lr 2e-3) on the {len(infos)} val images with the real "
            "ComputeLoss (hyp.scratch-low rescaled for nl 3, nc 4, imgsz 320), horizontal flips on odd steps; "
            f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
        ),
        "mode": "model.eval() (BatchNorm running statistics); the raw per-level outputs Detect returns",
        "letterbox": "320x320, ratio min(320/h, 320/w), centred grey-114 padding, PIL bilinear",
        "source": f"first {BUNDLE_IMAGES} val images",
    }
    bundle_mod.save(
        args.out,
        [t.contiguous() for t in levels],
        head="yolov5",
        input_size=[IMGSZ, IMGSZ],
        strides=[float(s) for s in det.stride],
        images=infos[:BUNDLE_IMAGES],
        targets={"batch_idx": keep[:, 0], "cls": keep[:, 1], "bboxes": keep[:, 2:]},
        category_ids=list(CATEGORY_IDS),
        anchors=anchors_px,
        meta=meta,
        overwrite=True,
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f}s")
    check(args.out, model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
