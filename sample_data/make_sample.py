"""Make yolodbg's sample data from a real, briefly trained Ultralytics YOLOv8n.

Run from the repository root with the reference environment (Ultralytics 8.4.190, CPU only):

    python sample_data/make_sample.py     # ~45 min on 2 idle CPU cores (75 min on a busy one)

Training is almost all of it (50 epochs of 19 steps; Ultralytics trains on one CPU thread). The script
works in a temporary folder (kept with ``--workdir DIR``; ``--out DIR`` writes the artifacts elsewhere than
``sample_data/``) and does, with fixed seeds:

1. draws a synthetic scene dataset: 4 classes of simple shapes (circle, square, triangle, cross) in
   colour on textured, noisy backgrounds; objects from ~6 px to ~110 px, some overlapping, some cut by
   the image border; non-square images (320x240, 240x320, 400x300, 350x259, 300x225) so the letterbox
   matters; 290 train images and 8 val images (one of them without objects);
2. trains ``yolov8n.yaml`` (nc=4, random init) at imgsz=320 on CPU with the Ultralytics trainer, and
   records the (preds, batch) -> (loss, loss_items) of the last training step by wrapping
   ``v8DetectionLoss.__call__``; the train set size leaves a last batch of 2 images in every epoch, so
   the recorded step is small enough to commit;
3. writes into ``sample_data/`` only:
   - ``coco_val.json``   COCO json of the 8 val images (category ids 1, 2, 3, 7; one ``iscrowd`` box),
   - ``images/``         the 8 val images (JPEG, quality 85),
   - ``labels/``         their YOLO txt labels (crowd box left out; empty file for the empty image),
   - ``yolov8n_val.pt``  train-mode head outputs of the trained model on the first 4 val images,
     letterboxed to 320x320 exactly as Ultralytics does (pad and ratio recorded per image),
   - ``yolov8n_train_step.pt``  the recorded training step (outputs, targets, loss and loss items),
     checked here by replaying it through a freshly built Ultralytics criterion.

Both bundles load with ``torch.load(path, weights_only=True)``. Their ``feats`` are empty tensors of
shape (B, 0, H, W): the loss only uses their spatial sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

OUT_DIR = Path(__file__).resolve().parent
SEED = 0
CLASSES = ("circle", "square", "triangle", "cross")
CATEGORY_IDS = (1, 2, 3, 7)  # non-contiguous on purpose: sorted ids -> class indices 0..3
IMAGE_SIZES = ((320, 240), (240, 320), (400, 300), (350, 259), (300, 225))  # (width, height)
IMGSZ = 320
STRIDES = [8, 16, 32]
TRAIN_IMAGES = 290  # 18 batches of 16 and a last batch of 2: the recorded step
BATCH = 16
EPOCHS = 50
CLOSE_MOSAIC = 5
LR0, WARMUP_EPOCHS = 0.002, 2  # AdamW
VAL_BUNDLE_IMAGES = 4  # each image costs 0.55 MB of float32 outputs at 320x320
JPEG_QUALITY = 85
MIN_SIZE, MAX_SIZE = 6, 110  # object size range in original-image pixels (log-uniform)
FRAMEWORK_VERSION = "8.4.190"


# --------------------------------------------------------------------------------------------- drawing


def random_colour(rng: np.random.Generator, avoid: np.ndarray, min_dist: float = 100.0) -> tuple[int, ...]:
    """Return a random RGB colour at least ``min_dist`` away from ``avoid``."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if np.linalg.norm(colour - avoid) >= min_dist:
            return tuple(int(c) for c in colour)


def smooth_noise(rng: np.random.Generator, w: int, h: int, cells: int, amplitude: float) -> np.ndarray:
    """Low-frequency RGB noise: a coarse random grid upsampled bicubically to (h, w, 3)."""
    gw, gh = max(2, cells * w // max(w, h)), max(2, cells * h // max(w, h))
    coarse = rng.normal(0.0, amplitude, size=(3, gh, gw)).astype(np.float32)
    planes = [np.asarray(Image.fromarray(c, mode="F").resize((w, h), Image.BICUBIC)) for c in coarse]
    return np.stack(planes, axis=-1)


def background(rng: np.random.Generator, w: int, h: int) -> tuple[Image.Image, np.ndarray]:
    """A textured background: base colour, blotches, a faint stripe pattern and clutter strokes."""
    base = rng.uniform(50, 205, size=3)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    img += smooth_noise(rng, w, h, cells=int(rng.integers(3, 8)), amplitude=25.0)
    img += smooth_noise(rng, w, h, cells=int(rng.integers(20, 40)), amplitude=8.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(6, 30)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    img += stripes[..., None] * rng.uniform(0, 10)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 6))):  # thin lines and arcs that are not objects
        colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 45, size=3), 0, 255))
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.normal(0, w / 3), y0 + rng.normal(0, h / 3)
        if rng.random() < 0.5:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, 3)))
        else:
            box = [min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1]
            draw.arc(box, start=float(rng.uniform(0, 360)), end=float(rng.uniform(0, 360)), fill=colour)
    return canvas, base


def draw_shape(draw: ImageDraw.ImageDraw, name: str, x0: int, y0: int, bw: int, bh: int, colour) -> None:
    """Draw one filled shape covering exactly the pixels [x0, x0 + bw) x [y0, y0 + bh)."""
    x1, y1 = x0 + bw - 1, y0 + bh - 1
    if name == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    elif name == "square":
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    elif name == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=colour)
    elif name == "cross":
        tw, th = max(2, round(bw / 3)), max(2, round(bh / 3))
        cx, cy = x0 + (bw - tw) // 2, y0 + (bh - th) // 2
        draw.rectangle([cx, y0, cx + tw - 1, y1], fill=colour)
        draw.rectangle([x0, cy, x1, cy + th - 1], fill=colour)
    else:
        raise ValueError(name)


def overlap_ok(box: tuple[float, ...], placed: list[dict], max_cover: float = 0.3) -> bool:
    """Allow overlaps that hide at most ``max_cover`` of the smaller of two boxes."""
    for obj in placed:
        ox0, oy0, ox1, oy1 = obj["box"]
        iw = min(box[2], ox1) - max(box[0], ox0)
        ih = min(box[3], oy1) - max(box[1], oy0)
        if iw > 0 and ih > 0:
            smaller = min((box[2] - box[0]) * (box[3] - box[1]), (ox1 - ox0) * (oy1 - oy0))
            if iw * ih > max_cover * smaller:
                return False
    return True


def make_scene(rng: np.random.Generator, w: int, h: int, n_objects: int) -> tuple[Image.Image, list[dict]]:
    """Draw a scene of ``w`` x ``h`` pixels; return it and its objects {"cls", "box" (xyxy, clipped)}."""
    canvas, base = background(rng, w, h)
    draw = ImageDraw.Draw(canvas)
    objects: list[dict] = []
    for _ in range(n_objects * 20):  # attempts
        if len(objects) == n_objects:
            break
        cls = int(rng.integers(len(CLASSES)))
        size = math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE)))
        aspect = 1.0 if CLASSES[cls] in ("circle", "square") else rng.uniform(0.75, 1.33)
        bw, bh = (
            max(MIN_SIZE, round(size * math.sqrt(aspect))),
            max(MIN_SIZE, round(size / math.sqrt(aspect))),
        )
        x0 = int(rng.integers(-bw // 3, w - 2 * bw // 3 + 1))  # up to a third may leave the image
        y0 = int(rng.integers(-bh // 3, h - 2 * bh // 3 + 1))
        box = (max(x0, 0), max(y0, 0), min(x0 + bw, w), min(y0 + bh, h))
        if box[2] - box[0] < 4 or box[3] - box[1] < 4 or not overlap_ok(box, objects):
            continue
        draw_shape(draw, CLASSES[cls], x0, y0, bw, bh, random_colour(rng, base))
        objects.append({"cls": cls, "box": tuple(float(v) for v in box)})
    return canvas, objects


def add_crowd(rng: np.random.Generator, img: Image.Image, objects: list[dict]) -> tuple[float, ...]:
    """Draw a tight cluster of tiny crosses in a free corner region; return its box (the crowd box)."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    base = np.asarray(img, dtype=np.float32).mean(axis=(0, 1))
    for _ in range(200):
        gx, gy = int(rng.integers(0, w - 44)), int(rng.integers(0, h - 30))
        box = (gx, gy, gx + 44, gy + 30)
        if overlap_ok(box, objects, max_cover=0.0):
            break
    else:
        raise RuntimeError("no room for the crowd")
    colour = random_colour(rng, base)
    for i in range(4):
        for j in range(3):
            draw_shape(draw, "cross", gx + 11 * i + 1, gy + 10 * j + 1, 9, 8, colour)
    return tuple(float(v) for v in box)


def finish(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Slight blur and sensor noise over the whole image, objects included."""
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.0, 0.8))))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(
        0, rng.uniform(3, 12), size=(img.height, img.width, 3)
    )
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def yolo_label_lines(objects: list[dict], w: int, h: int) -> str:
    """YOLO txt labels: ``cls cx cy w h`` normalized to the original image."""
    lines = []
    for obj in objects:
        x0, y0, x1, y1 = obj["box"]
        lines.append(
            f"{obj['cls']} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} "
            f"{(y1 - y0) / h:.6f}"
        )
    return "".join(line + "\n" for line in lines)


def write_dataset(root: Path) -> list[dict]:
    """Write the YOLO dataset under ``root``; return the val records (file_name, size, objects, crowd)."""
    rng = np.random.default_rng(SEED)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)

    # val: the first VAL_BUNDLE_IMAGES go into the val bundle and cover the special cases
    val_plan = [  # (width, height), number of objects, special
        ((320, 240), 9, "crowd"),
        ((350, 259), 10, None),  # letterbox pad 41 top / 42 bottom
        ((240, 320), 8, None),
        ((400, 300), 0, "empty"),
        ((300, 225), 7, None),  # upscaled by 16/15
        ((400, 300), 12, None),
        ((320, 240), 6, None),
        ((240, 320), 10, None),
    ]
    records = []
    for i, ((w, h), n, special) in enumerate(val_plan):
        img, objects = make_scene(rng, w, h, n)
        crowd = add_crowd(rng, img, objects) if special == "crowd" else None
        records.append(
            {
                "file_name": f"val_{i:03d}.jpg",
                "width": w,
                "height": h,
                "objects": objects,
                "crowd": crowd,
                "image": finish(img, rng),
            }
        )
    for i in range(TRAIN_IMAGES):
        w, h = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        img, objects = make_scene(rng, w, h, int(rng.integers(1, 13)))
        finish(img, rng).save(root / "images" / "train" / f"train_{i:04d}.jpg", quality=JPEG_QUALITY)
        (root / "labels" / "train" / f"train_{i:04d}.txt").write_text(yolo_label_lines(objects, w, h))
    for rec in records:
        stem = Path(rec["file_name"]).stem
        rec.pop("image").save(root / "images" / "val" / rec["file_name"], quality=JPEG_QUALITY)
        (root / "labels" / "val" / f"{stem}.txt").write_text(
            yolo_label_lines(rec["objects"], rec["width"], rec["height"])
        )
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return records


def coco_json(records: list[dict]) -> dict:
    """COCO detection json of the val records, boxes in original-image pixels."""
    images, annotations = [], []
    for image_id, rec in enumerate(records, start=1):
        images.append(
            {"id": image_id, "file_name": rec["file_name"], "width": rec["width"], "height": rec["height"]}
        )
        boxes = [(obj["box"], CATEGORY_IDS[obj["cls"]], 0) for obj in rec["objects"]]
        if rec["crowd"] is not None:
            boxes.append((rec["crowd"], CATEGORY_IDS[CLASSES.index("cross")], 1))
        for (x0, y0, x1, y1), category_id, iscrowd in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": iscrowd,
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                }
            )
    categories = [
        {"id": cid, "name": name, "supercategory": "shape"}
        for cid, name in zip(CATEGORY_IDS, CLASSES, strict=True)
    ]
    return {
        "info": {"description": "yolodbg synthetic shapes, val split (made by make_sample.py)"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


# -------------------------------------------------------------------------------------------- training


def setup_ultralytics(workdir: Path) -> None:
    """Make Ultralytics work offline: private settings, no online checks, no font download."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(workdir / "ultralytics_config")
    import ultralytics.data.utils
    import ultralytics.utils.checks
    import ultralytics.utils.plotting

    def no_font(*args, **kwargs):
        return None

    for module in (ultralytics.data.utils, ultralytics.utils.checks, ultralytics.utils.plotting):
        module.check_font = no_font


def shrink_outputs(preds: dict) -> dict:
    """Detached float32 copy of a train-mode output dict, each feature map replaced by (B, 0, H, W)."""
    return {
        "boxes": preds["boxes"].detach().float().clone(),
        "scores": preds["scores"].detach().float().clone(),
        "feats": [torch.empty(f.shape[0], 0, *f.shape[2:]) for f in preds["feats"]],
    }


class StepRecorder:
    """Wraps ``v8DetectionLoss.__call__`` and keeps the last training step it computed."""

    def __init__(self) -> None:
        self.epoch = -1
        self.step: dict | None = None
        self.original = None

    def install(self) -> None:
        from ultralytics.utils.loss import v8DetectionLoss

        original = self.original = v8DetectionLoss.__call__
        recorder = self

        def recording_call(criterion, preds, batch):
            loss, loss_items = original(criterion, preds, batch)
            if torch.is_grad_enabled() and isinstance(preds, dict):  # training, not the validator
                recorder.step = {
                    "outputs": shrink_outputs(preds),
                    "input_size": list(batch["img"].shape[2:]),
                    "targets": {
                        k: batch[k].detach().clone().float().view(*shape)
                        for k, shape in (("batch_idx", (-1,)), ("cls", (-1,)), ("bboxes", (-1, 4)))
                    },
                    "loss": loss.detach().clone(),
                    "loss_items": {k: float(v) for k, v in loss_items.items()},
                    "im_files": [Path(f).name for f in batch["im_file"]],
                    "epoch": recorder.epoch,
                }
            return loss, loss_items

        v8DetectionLoss.__call__ = recording_call

    def uninstall(self) -> None:
        from ultralytics.utils.loss import v8DetectionLoss

        v8DetectionLoss.__call__ = self.original

    def on_train_epoch_start(self, trainer) -> None:
        self.epoch = trainer.epoch


def train(root: Path, recorder: StepRecorder) -> Path:
    """Train yolov8n.yaml on the dataset; return the path of last.pt."""
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.add_callback("on_train_epoch_start", recorder.on_train_epoch_start)
    model.train(
        data=str(root / "data.yaml"),
        epochs=EPOCHS,
        imgsz=IMGSZ,
        batch=BATCH,
        device="cpu",
        workers=1,
        seed=SEED,
        deterministic=True,
        amp=False,
        plots=False,
        close_mosaic=CLOSE_MOSAIC,
        pretrained=False,
        optimizer="AdamW",
        lr0=LR0,
        warmup_epochs=WARMUP_EPOCHS,
        project=str(root / "runs"),
        name="train",
        exist_ok=True,
        verbose=False,
    )
    return Path(model.trainer.last)


# --------------------------------------------------------------------------------------------- bundles


def load_trained_model(weights: Path):
    """The trained DetectionModel in float32, BatchNorm in eval mode, Detect head in training mode."""
    from ultralytics import YOLO

    model = YOLO(str(weights)).model.float()
    model.eval()  # BatchNorm uses its running statistics
    model.model[-1].training = True  # ... but the head returns the raw train-mode dict
    return model


def letterbox_batch(records: list[dict], image_dir: Path) -> tuple[torch.Tensor, list[dict]]:
    """Letterbox the images to IMGSZ x IMGSZ with Ultralytics' own LetterBox, as its predictor does."""
    import cv2
    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox(new_shape=(IMGSZ, IMGSZ), auto=False, stride=max(STRIDES))
    tensors, infos = [], []
    for image_id, rec in records:
        bgr = cv2.imread(str(image_dir / rec["file_name"]))  # Ultralytics reads BGR, the model sees RGB
        params = letterbox.get_params({"img": bgr})
        boxed = letterbox(image=bgr)
        assert boxed.shape[:2] == (IMGSZ, IMGSZ)
        tensors.append(torch.from_numpy(np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1))))
        infos.append(
            {
                "image_id": image_id,
                "file_name": rec["file_name"],
                "orig_size": list(bgr.shape[:2]),
                "scale": float(params["ratio"][0]),
                "pad": [int(params["top"]), int(params["left"])],
            }
        )
    return torch.stack(tensors).float() / 255, infos


def make_val_bundle(weights: Path, records: list[dict], image_dir: Path, epochs: int) -> dict:
    """Run the trained model on the first VAL_BUNDLE_IMAGES val images and build the canonical bundle."""
    model = load_trained_model(weights)
    chosen = list(enumerate(records, start=1))[:VAL_BUNDLE_IMAGES]
    x, infos = letterbox_batch(chosen, image_dir)
    with torch.no_grad():
        preds = model(x)
        model.model[-1].training = False
        _, eval_preds = model(x)  # eval mode returns (decoded, raw dict): must be the same raw dict
        model.model[-1].training = True
    assert isinstance(preds, dict) and set(preds) == {"boxes", "scores", "feats"}, type(preds)
    assert torch.equal(preds["boxes"], eval_preds["boxes"]) and torch.equal(
        preds["scores"], eval_preds["scores"]
    )
    return {
        "yolodbg": 1,
        "head": "ultralytics",
        "outputs": shrink_outputs(preds),
        "input_size": [IMGSZ, IMGSZ],
        "strides": STRIDES,
        "images": infos,
        "category_ids": list(CATEGORY_IDS),
        "meta": {
            "model": "yolov8n.yaml",
            "framework": "ultralytics",
            "framework_version": FRAMEWORK_VERSION,
            "epochs_trained": epochs,
            "source": "val letterbox",
            "weights": "last.pt (EMA, stored fp16, run fp32)",
            "mode": "model.eval() (BatchNorm running statistics), Detect head training=True (raw train-mode dict)",
            "letterbox": "ultralytics.data.augment.LetterBox(auto=False), grey 114, BGR->RGB, /255",
            "feats": "replaced by empty (B, 0, H, W) tensors: only their spatial sizes matter",
            "num_val_images": len(records),
        },
    }


def make_train_step_bundle(step: dict, epochs: int) -> dict:
    """The recorded trainer step as a canonical bundle."""
    loss = step["loss"]
    return {
        "yolodbg": 1,
        "head": "ultralytics",
        "outputs": step["outputs"],
        "input_size": step["input_size"],
        "strides": STRIDES,
        "targets": step["targets"],
        "category_ids": list(CATEGORY_IDS),
        "meta": {
            "model": "yolov8n.yaml",
            "framework": "ultralytics",
            "framework_version": FRAMEWORK_VERSION,
            "loss_items": step["loss_items"],
            "loss": [float(v) for v in loss],
            "batch_size": int(step["outputs"]["boxes"].shape[0]),
            "source": "trainer step",
            "epoch": step["epoch"],
            "epochs_trained": epochs,
            "step": "last step of the last epoch",
            "im_files": step["im_files"],
            "notes": "epoch is 0-based (Ultralytics trainer.epoch); loss = loss_items * batch_size; "
            "targets are the augmented batch (normalized cx, cy, w, h of the input)",
        },
    }


def replay_train_step(path: Path) -> tuple[torch.Tensor, dict]:
    """Recompute a saved train-step bundle with a freshly built Ultralytics criterion."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    bundle = torch.load(path, weights_only=True)
    model = DetectionModel("yolov8n.yaml", nc=len(CLASSES), verbose=False)
    model.args = get_cfg()
    criterion = model.init_criterion()
    out = bundle["outputs"]
    preds = {
        "boxes": out["boxes"],
        "scores": out["scores"],
        "feats": [torch.zeros(f.shape[0], 1, *f.shape[2:]) for f in out["feats"]],
    }
    t = bundle["targets"]
    batch = {"batch_idx": t["batch_idx"], "cls": t["cls"].view(-1, 1), "bboxes": t["bboxes"]}
    loss, items = criterion(preds, batch)
    return loss, {k: float(v) for k, v in items.items()}


# ---------------------------------------------------------------------------------------------- checks


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix of xyxy boxes."""
    lt, rb = torch.max(a[:, None, :2], b[None, :, :2]), torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def detection_report(
    weights: Path, records: list[dict], image_dir: Path, data: Path, conf: float = 0.25
) -> dict:
    """Ultralytics' val mAP, and a count of val objects found (same class, IoU >= 0.5, greedy by score)."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    box = model.val(data=str(data), imgsz=IMGSZ, batch=8, device="cpu", plots=False, verbose=False).box
    found = total = false = 0
    small_found = small_total = 0
    for rec in records:
        result = model.predict(
            str(image_dir / rec["file_name"]), imgsz=IMGSZ, conf=conf, device="cpu", verbose=False
        )[0]
        pred_boxes, pred_cls = result.boxes.xyxy, result.boxes.cls.long()
        gt = torch.tensor([obj["box"] for obj in rec["objects"]]).view(-1, 4)
        gt_cls = torch.tensor([obj["cls"] for obj in rec["objects"]], dtype=torch.long)
        matched = torch.zeros(len(gt), dtype=torch.bool)
        if len(gt) and len(pred_boxes):
            iou = box_iou(pred_boxes, gt) * (pred_cls[:, None] == gt_cls[None, :])
            for p in range(len(pred_boxes)):  # predictions come sorted by score
                iou_p = iou[p].masked_fill(matched, 0)
                if iou_p.max() >= 0.5:
                    matched[iou_p.argmax()] = True
                elif (
                    rec["crowd"] is None
                    or box_iou(pred_boxes[p : p + 1], torch.tensor([rec["crowd"]])).max() == 0
                ):
                    false += 1
        elif len(pred_boxes):
            false += len(pred_boxes)
        small = (gt[:, 2:] - gt[:, :2]).max(-1).values <= 20
        found, total = found + int(matched.sum()), total + len(gt)
        small_found, small_total = small_found + int((matched & small).sum()), small_total + int(small.sum())
    return {
        "map50": float(box.map50),
        "map50_95": float(box.map),
        "found": found,
        "total": total,
        "false_detections": false,
        "small_found": small_found,
        "small_total": small_total,
        "conf": conf,
    }


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the dataset and the training run here")
    parser.add_argument(
        "--out", type=Path, default=OUT_DIR, help="where to write the artifacts (sample_data/)"
    )
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="yolodbg_sample_"))
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    try:
        setup_ultralytics(workdir)
        root = workdir / "dataset"
        t0 = time.time()
        records = write_dataset(root)
        print(f"dataset: {TRAIN_IMAGES} train + {len(records)} val images ({time.time() - t0:.0f} s)")

        recorder = StepRecorder()
        recorder.install()
        t0 = time.time()
        try:
            weights = train(root, recorder)
        finally:
            recorder.uninstall()
        print(f"training: {EPOCHS} epochs in {time.time() - t0:.0f} s")
        assert recorder.step is not None and recorder.step["epoch"] == EPOCHS - 1

        # the val split: COCO json, images, YOLO labels
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
            (out / sub).mkdir()
        for rec in records:
            stem = Path(rec["file_name"]).stem
            shutil.copyfile(root / "images" / "val" / rec["file_name"], out / "images" / rec["file_name"])
            shutil.copyfile(root / "labels" / "val" / f"{stem}.txt", out / "labels" / f"{stem}.txt")
        (out / "coco_val.json").write_text(json.dumps(coco_json(records), indent=1) + "\n")

        report = detection_report(weights, records, out / "images", root / "data.yaml")
        print(
            f"val (YOLO labels, crowd left out): mAP50 {report['map50']:.3f}, mAP50-95 {report['map50_95']:.3f}"
        )
        print(
            f"detections on val (conf {report['conf']}): {report['found']}/{report['total']} objects found "
            f"({report['small_found']}/{report['small_total']} of those <= 20 px), "
            f"{report['false_detections']} false detections"
        )

        # bundles
        val_bundle = make_val_bundle(weights, records, out / "images", EPOCHS)
        torch.save(val_bundle, out / "yolov8n_val.pt")
        step_path = out / "yolov8n_train_step.pt"
        torch.save(make_train_step_bundle(recorder.step, EPOCHS), step_path)

        loss, items = replay_train_step(step_path)
        if not torch.equal(loss, recorder.step["loss"]) or items != recorder.step["loss_items"]:
            raise SystemExit(
                f"replay mismatch: {loss.tolist()} {items} vs {recorder.step['loss'].tolist()} "
                f"{recorder.step['loss_items']}"
            )
        print(f"train step replayed exactly: loss {loss.tolist()}, items {items}")
        for path in (out / "yolov8n_val.pt", step_path):
            torch.load(path, weights_only=True)
            print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
