"""The data set and the model of the ``yolodbg audit`` benchmark (``benchmarks/bench_audit.py``).

Two jobs, both deterministic (fixed seeds), both with the synthetic scene generator of
``sample_data/make_sample.py`` (4 shape classes on textured backgrounds, non-square images):

``python benchmarks/audit_set/make_audit_set.py train``
    Draws a train set (400 images), trains an Ultralytics YOLOv8n from ``yolov8n.yaml`` (nc=4, random init,
    CPU, imgsz 320, batch 16, AdamW lr 0.002) on the schedule of ``EPOCHS`` epochs, stops after
    ``STOP_AFTER`` of them (the shared machine it was made on gave it 45 minutes; the learning rate and the
    mosaic follow the full schedule) and writes the EMA weights as an fp16 state dict to
    ``benchmarks/audit_set/model.pt`` (6.1 MB, committed; loads with ``torch.load(..., weights_only=True)``;
    its ``meta`` records the schedule). Only needed to rebuild the committed model; the benchmark never
    trains. Needs Ultralytics 8.4.190. The result: at conf 0.25, 1196 of the 1941 validation objects found
    (218 of the 894 of at most 20 px), 159 false detections: decent, and imperfect on small objects.
    ``export LAST.pt`` writes ``model.pt`` from a run's ``last.pt`` (e.g. of a run stopped by hand).

``build_cache(folder)`` (called by the benchmark on first run, about a minute)
    Draws the validation set (``VAL_IMAGES`` images from a seed the train set never used), writes the
    images, ``val_clean.json`` (COCO, category ids 1, 2, 3, 7) and bundles of ``BUNDLE_IMAGES`` images each
    with the train-mode head outputs of the cached model on the letterboxed images (as
    ``sample_data/yolov8n_val.pt``).

The model is meant to be decent but imperfect: it is what label-error finders must work with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "sample_data"))

import make_sample as scenes  # noqa: E402  (the sample data's scene generator and Ultralytics helpers)

MODEL_PATH = HERE / "model.pt"
TRAIN_SEED, TRAINER_VAL_SEED, VAL_SEED = 101, 202, 303  # three disjoint draws
TRAIN_IMAGES = 400
TRAINER_VAL_IMAGES = 16  # only for the trainer's final check; never the benchmark's images
VAL_IMAGES = 320
BUNDLE_IMAGES = 16
MAX_OBJECTS = 12
EPOCHS = 24  # the schedule (learning-rate decay, mosaic closed for the last 5)
STOP_AFTER = 16  # epochs actually trained for the committed model
BATCH = 16
IMGSZ = scenes.IMGSZ
CACHE_VERSION = 1  # bump when the cache's content changes


def draw_split(seed: int, count: int, prefix: str) -> list[dict]:
    """Draw ``count`` scenes: records with file_name, width, height, objects (xyxy, class index), image."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        w, h = scenes.IMAGE_SIZES[int(rng.integers(len(scenes.IMAGE_SIZES)))]
        img, objects = scenes.make_scene(rng, w, h, int(rng.integers(0, MAX_OBJECTS + 1)))
        records.append(
            {
                "file_name": f"{prefix}_{i:04d}.jpg",
                "width": w,
                "height": h,
                "objects": objects,
                "crowd": None,
                "image": scenes.finish(img, rng),
            }
        )
    return records


def write_yolo_split(root: Path, split: str, records: list[dict]) -> None:
    """Write one split of a YOLO data set (JPEG images and txt labels)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for rec in records:
        rec["image"].save(root / "images" / split / rec["file_name"], quality=scenes.JPEG_QUALITY)
        stem = Path(rec["file_name"]).stem
        (root / "labels" / split / f"{stem}.txt").write_text(
            scenes.yolo_label_lines(rec["objects"], rec["width"], rec["height"])
        )


# -------------------------------------------------------------------------------------------- training


def train(workdir: Path, epochs: int, train_images: int, stop_after: int | None = None) -> Path:
    """Train yolov8n.yaml on a fresh train set; return the path of Ultralytics' last.pt.

    ``stop_after``: stop once that many epochs of the ``epochs``-long schedule are done (the learning
    rate and the mosaic follow the full schedule; the weights are those saved after that epoch)."""
    scenes.setup_ultralytics(workdir)
    from ultralytics import YOLO

    root = workdir / "dataset"
    write_yolo_split(root, "train", draw_split(TRAIN_SEED, train_images, "train"))
    write_yolo_split(root, "val", draw_split(TRAINER_VAL_SEED, TRAINER_VAL_IMAGES, "tval"))
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(scenes.CLASSES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}")

    model = YOLO("yolov8n.yaml")
    started = time.time()

    def log_epoch(trainer) -> None:
        print(
            f"[audit-set] epoch {trainer.epoch + 1}/{epochs} done at {time.time() - started:.0f} s",
            flush=True,
        )
        if stop_after is not None and trainer.epoch + 1 >= stop_after:
            trainer.stop = True  # the trainer still saves this epoch's weights as last.pt

    model.add_callback("on_train_epoch_end", log_epoch)
    model.train(
        data=str(root / "data.yaml"),
        epochs=epochs,
        imgsz=IMGSZ,
        batch=BATCH,
        device="cpu",
        workers=1,
        seed=0,
        deterministic=True,
        amp=False,
        plots=False,
        val=False,  # the trainer still checks the final epoch
        close_mosaic=min(5, epochs // 4),
        pretrained=False,
        optimizer="AdamW",
        lr0=scenes.LR0,
        warmup_epochs=scenes.WARMUP_EPOCHS,
        project=str(workdir / "runs"),
        name="train",
        exist_ok=True,
        verbose=False,
    )
    return Path(model.trainer.last)


def export_state(last: Path, out: Path, epochs: int, train_images: int) -> None:
    """Save the trained EMA weights as a plain fp16 state dict (loadable with weights_only=True)."""
    from ultralytics import YOLO

    yolo = YOLO(str(last))  # Ultralytics reads its own (pickled) checkpoint; we only take its tensors
    ckpt = yolo.ckpt or {}
    # a stripped final checkpoint records epoch -1; its results table still has one row per epoch
    epochs_run = int(ckpt.get("epoch", -1)) + 1 or len((ckpt.get("train_results") or {}).get("epoch", []))
    model = yolo.model
    state = {
        k: v.detach().half() if v.is_floating_point() else v.detach() for k, v in model.state_dict().items()
    }
    torch.save(
        {
            "yaml": "yolov8n.yaml",
            "nc": len(scenes.CLASSES),
            "state_dict": state,
            "meta": {
                "framework_version": scenes.FRAMEWORK_VERSION,
                "epochs": epochs,
                "epochs_run": epochs_run,
                "train_images": train_images,
                "imgsz": IMGSZ,
                "train_seed": TRAIN_SEED,
            },
        },
        out,
    )


def load_model(path: Path = MODEL_PATH):
    """The cached model in float32: BatchNorm in eval mode, Detect head in training mode (raw outputs)."""
    from ultralytics.nn.tasks import DetectionModel

    saved = torch.load(path, weights_only=True)
    model = DetectionModel(saved["yaml"], nc=saved["nc"], verbose=False)
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()}
    )
    model.float().eval()
    model.model[-1].training = True
    return model


# ------------------------------------------------------------------------------------------------ cache


def coco_json(records: list[dict]) -> dict:
    """COCO json of the records (image ids 1.., annotation ids 1..), boxes in original pixels."""
    return scenes.coco_json(records) | {
        "info": {"description": "yolodbg audit benchmark, clean validation labels (make_audit_set.py)"}
    }


def capture_bundle(model, chosen: list[tuple[int, dict]], image_dir: Path) -> dict:
    """Train-mode head outputs of the model on the letterboxed images, as a yolodbg bundle."""
    x, infos = scenes.letterbox_batch(chosen, image_dir)
    with torch.no_grad():
        preds = model(x)
    return {
        "yolodbg": 1,
        "head": "ultralytics",
        "outputs": scenes.shrink_outputs(preds),
        "input_size": [IMGSZ, IMGSZ],
        "strides": scenes.STRIDES,
        "images": infos,
        "category_ids": list(scenes.CATEGORY_IDS),
        "meta": {
            "model": "yolov8n.yaml (benchmarks/audit_set/model.pt)",
            "framework": "ultralytics",
            "framework_version": scenes.FRAMEWORK_VERSION,
            "source": "audit benchmark val letterbox",
            "mode": "model.eval() (BatchNorm running statistics), Detect head training=True",
            "feats": "replaced by empty (B, 0, H, W) tensors: only their spatial sizes matter",
        },
    }


def cache_stamp(model_path: Path) -> str:
    """What a complete cache records: the cache version and the model's hash (a new model rebuilds it)."""
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]
    return f"version {CACHE_VERSION} model {digest}"


def build_cache(folder: Path, model_path: Path = MODEL_PATH) -> None:
    """Write images, val_clean.json and bundles into ``folder`` (skipped when already complete)."""
    stamp, expected = folder / "COMPLETE", cache_stamp(model_path)
    if stamp.exists() and stamp.read_text().strip() == expected:
        return
    shutil.rmtree(folder, ignore_errors=True)
    image_dir, bundle_dir = folder / "images", folder / "bundles"
    image_dir.mkdir(parents=True)
    bundle_dir.mkdir()
    records = draw_split(VAL_SEED, VAL_IMAGES, "val")
    for rec in records:
        rec.pop("image").save(image_dir / rec["file_name"], quality=scenes.JPEG_QUALITY)
    (folder / "val_clean.json").write_text(json.dumps(coco_json(records), indent=1) + "\n")
    model = load_model(model_path)
    numbered = list(enumerate(records, start=1))
    for k in range(0, len(numbered), BUNDLE_IMAGES):
        bundle = capture_bundle(model, numbered[k : k + BUNDLE_IMAGES], image_dir)
        torch.save(bundle, bundle_dir / f"val_{k // BUNDLE_IMAGES:03d}.pt")
    stamp.write_text(f"{expected}\n")


# ------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the model and write benchmarks/audit_set/model.pt")
    tr.add_argument("--epochs", type=int, default=EPOCHS)
    tr.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    tr.add_argument("--workdir", type=Path, help="keep the data set and the run here")
    tr.add_argument(
        "--stop-after", type=int, default=STOP_AFTER, help="stop after this many epochs of the schedule"
    )
    tr.add_argument("--out", type=Path, default=MODEL_PATH)
    ex = sub.add_parser("export", help="write model.pt from an Ultralytics last.pt of the train command")
    ex.add_argument("last", type=Path)
    ex.add_argument("--epochs", type=int, default=EPOCHS, help="the schedule it was trained with")
    ex.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    ex.add_argument("--out", type=Path, default=MODEL_PATH)
    cache = sub.add_parser("cache", help="write the validation images, labels and bundles")
    cache.add_argument("folder", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.command == "cache":
        t0 = time.time()
        build_cache(args.folder)
        print(f"cache in {args.folder} ({time.time() - t0:.0f} s)")
        return
    if args.command == "export":
        export_state(args.last, args.out, args.epochs, args.train_images)
        print(f"{args.out}: {args.out.stat().st_size / 1e6:.2f} MB")
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="yolodbg_audit_set_"))
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    last = train(workdir, args.epochs, args.train_images, args.stop_after)
    print(
        f"training: {args.stop_after} of {args.epochs} epochs on {args.train_images} images in {time.time() - t0:.0f} s"
    )
    export_state(last, args.out, args.epochs, args.train_images)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
