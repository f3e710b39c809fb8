"""Getting head outputs into bundles: from an Ultralytics model, or from inside a training loop.

* :func:`capture_model` letterboxes images exactly as Ultralytics validation does, runs a detection
  model (BatchNorm in eval mode, the Detect head returning its raw train-mode dict) without
  gradients and writes one canonical bundle per batch (``yolodbg capture``).
* :func:`save_batch` saves the output and the batch of one step of *your* training or validation
  loop, so that step can be replayed to the float; :func:`ultralytics_callback` does it from inside
  the Ultralytics trainer for the steps you choose (e.g. a step whose loss is not finite).

Ultralytics (and its OpenCV) are imported only inside the functions that need them; without them
the error says ``pip install 'yolodbg[ultralytics]'``. :func:`save_batch` needs neither.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from yolodbg import bundle as bundle_mod
from yolodbg.errors import InputError
from yolodbg.geometry import Letterbox
from yolodbg.image_letterbox import (
    LETTERBOX_MODES,
    image_hw,
    letterbox_geometry,
    letterbox_image,
    read_bgr,
    rect_batches,
    to_input,
)

__all__ = [
    "INSTALL_HINT",
    "LETTERBOX_MODES",
    "capture_model",
    "class_weight_meta",
    "collect_images",
    "image_entry",
    "letterbox_geometry",
    "letterbox_image",
    "load_model",
    "read_bgr",
    "require_ultralytics",
    "save_batch",
    "to_input",
    "ultralytics_callback",
]

INSTALL_HINT = "pip install 'yolodbg[ultralytics]'"


def require_ultralytics():
    """Import Ultralytics, or raise a one-line :class:`InputError` that says how to install it."""
    try:
        import cv2  # noqa: F401  (Ultralytics' image I/O and resizing)
        import ultralytics
    except ImportError as e:
        raise InputError(
            f"yolodbg capture needs Ultralytics ({e.name} is not installed): {INSTALL_HINT}"
        ) from None
    return ultralytics


# --------------------------------------------------------------------------------------- bundle entries


def image_entry(lb: Letterbox, orig_hw: tuple[int, int], file_name: str, image_id: int | None = None) -> dict:
    """One ``images[]`` entry of a bundle (docs/design.md, bundle format)."""
    entry: dict[str, Any] = {} if image_id is None else {"image_id": image_id}
    entry.update(
        file_name=file_name,
        orig_size=[int(orig_hw[0]), int(orig_hw[1])],
        scale=[lb.scale_y, lb.scale_x],
        pad=[lb.pad_top, lb.pad_left],
    )
    return entry


# ------------------------------------------------------------------------------------- training loops


def _raw_output(output: Any) -> Any:
    """The raw train-mode dict of an Ultralytics output (eval mode returns ``(decoded, raw)``)."""
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], dict):
        return output[1]
    return output


def _letterbox_from_ratio_pad(ratio_pad: Any) -> Letterbox | None:
    """Ultralytics' ``ratio_pad`` ``((gain_h, gain_w), (pad_left, pad_top))`` -> Letterbox, else None."""
    try:
        (gy, gx), (left, top) = ratio_pad
        return Letterbox(float(gy), float(gx), float(top), float(left))
    except (TypeError, ValueError):
        return None


def class_weight_meta(model: Any) -> dict[str, Any]:
    """``meta`` entries for a model trained with class weights (Ultralytics ``cls_pw > 0``): its
    ``class_weights`` vector and ``cls_pw``, which the yolov8/yolo26 recipes replay (empty when off)."""
    model = getattr(model, "module", model)  # DDP
    out: dict[str, Any] = {}
    weights = getattr(model, "class_weights", None)
    if isinstance(weights, torch.Tensor):
        out["class_weights"] = [float(v) for v in weights.detach().float().cpu().reshape(-1)]
    args = getattr(model, "args", None)
    cls_pw = args.get("cls_pw") if isinstance(args, dict) else getattr(args, "cls_pw", None)
    if isinstance(cls_pw, (int, float)) and not isinstance(cls_pw, bool):
        out["cls_pw"] = float(cls_pw)
    return out


def save_batch(
    model_output: Any,
    batch: dict[str, Any],
    path: str | os.PathLike,
    *,
    augmented: bool = True,
    category_ids: Sequence[int] | None = None,
    loss_items: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save one step of a training (or validation) loop as a bundle that replays it to the float.

    ``model_output`` is what the model returned for ``batch["img"]`` (``(B, 3, H, W)``): the raw
    train-mode dict, or eval mode's ``(decoded, raw)`` tuple. ``batch`` is the Ultralytics batch dict:
    ``batch_idx`` ``(M,)``, ``cls`` ``(M, 1)``, ``bboxes`` ``(M, 4)`` normalised cx, cy, w, h of the input
    and optionally ``im_file``, ``ori_shape``, ``ratio_pad``. With ``augmented=False`` (a validation
    batch) the letterbox of each image is recorded, so overlays can show the original images; an
    augmented batch (mosaic, affine) has no such mapping and keeps only ``meta["im_files"]``.

    Example (then ``yolodbg explain bad_step.pt``)::

        preds = model(batch["img"])
        loss, items = criterion(preds, batch)
        if not torch.isfinite(loss).all():
            save_batch(preds, batch, "bad_step.pt", loss_items=items)
    """
    missing = [k for k in ("img", "batch_idx", "cls", "bboxes") if k not in batch]
    if missing:
        raise InputError(
            f"save_batch: the batch lacks {', '.join(missing)}; pass the Ultralytics batch dict the loss saw"
        )
    bs, _, h, w = batch["img"].shape
    files = [Path(str(f)).name for f in batch.get("im_file", [])]
    info: dict[str, Any] = {"framework": "ultralytics", "source": "save_batch", "augmented": augmented}
    info.update(_framework_version())
    images = None
    if not augmented and len(files) == bs and "ori_shape" in batch and "ratio_pad" in batch:
        lbs = [_letterbox_from_ratio_pad(rp) for rp in batch["ratio_pad"]]
        if all(lb is not None for lb in lbs):
            images = [image_entry(lb, tuple(batch["ori_shape"][i]), files[i]) for i, lb in enumerate(lbs)]
    if images is None and files:
        info["im_files"] = files
    if loss_items is not None:
        info["loss_items"] = {k: float(v) for k, v in loss_items.items()}
    info.update(meta or {})
    return bundle_mod.save(
        path,
        _raw_output(model_output),
        head="ultralytics",
        input_size=[int(h), int(w)],
        images=images,
        targets={k: batch[k] for k in ("batch_idx", "cls", "bboxes")},
        category_ids=list(category_ids) if category_ids is not None else None,
        meta=info,
        overwrite=overwrite,
    )


def _framework_version() -> dict[str, str]:
    import sys

    module = sys.modules.get("ultralytics")
    return {"framework_version": module.__version__} if module is not None else {}


def _nonfinite(_trainer: Any, items: dict[str, float]) -> bool:
    return not all(math.isfinite(v) for v in items.values())


def ultralytics_callback(
    out_dir: str | os.PathLike, when: Callable[[Any, dict[str, float]], bool] | None = None
) -> Callable[[Any], None]:
    """An ``on_train_start`` callback that saves the training steps ``when(trainer, loss_items)`` picks.

    The trainer keeps neither the model output nor the batch, so the callback wraps the model's
    ``loss`` method: the step runs exactly as before and, when ``when`` says so (default: a loss
    item is not finite), :func:`save_batch` writes ``out_dir/epoch{E}_step{S}.pt`` (S counts the
    training steps from 0). Validation runs on the EMA copy and is not recorded.

    Example (then ``yolodbg explain bad_steps/epoch002_step000117.pt``)::

        model = YOLO("yolov8n.yaml")
        model.add_callback("on_train_start", ultralytics_callback("bad_steps", lambda t, i: i["box"] > 5))
        model.train(data="coco8.yaml", epochs=3)
    """
    out = Path(out_dir)
    pick = when or _nonfinite

    def on_train_start(trainer: Any) -> None:
        model = getattr(trainer.model, "module", trainer.model)  # DDP wraps the model
        original, step = model.loss, [0]

        def recording_loss(batch: dict, preds: Any = None):
            preds = model.forward(batch["img"]) if preds is None else preds
            loss, items = original(batch, preds)
            if torch.is_grad_enabled():
                floats = {k: float(v) for k, v in items.items()}
                if pick(trainer, floats):
                    name = f"epoch{int(trainer.epoch):03d}_step{step[0]:06d}.pt"
                    meta = {
                        "epoch": int(trainer.epoch),
                        "step": step[0],
                        "loss": [float(v) for v in loss.detach()],
                        **class_weight_meta(model),  # set after on_train_start: read at save time
                    }
                    save_batch(preds, batch, out / name, loss_items=floats, meta=meta, overwrite=True)
                step[0] += 1
            return loss, items

        model.loss = recording_loss

    return on_train_start


# ------------------------------------------------------------------------------------ yolodbg capture

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def collect_images(
    images_dir: Path | None, gt: Path | None
) -> tuple[list[tuple[Path, str, int | None]], list[int] | None]:
    """``(path, file_name, COCO image id)`` of every image to capture, in order, and the category ids.

    With a COCO json, its ``images`` in file order, found under ``images_dir`` (default: the json's
    folder, then its ``images/`` subfolder); else every image file of ``images_dir``, sorted by name.
    """
    if gt is None:
        if images_dir is None or not images_dir.is_dir():
            raise InputError(f"--images {images_dir}: not a folder; pass a folder of images or --gt ANN.json")
        files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"--images {images_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        return [(p, p.name, None) for p in files], None
    from yolodbg.groundtruth import load_coco

    coco = load_coco(gt).coco
    roots = [images_dir] if images_dir is not None else [gt.parent, gt.parent / "images"]
    found = []
    for img in coco.dataset["images"]:
        name = str(img.get("file_name", ""))
        path = next((r / name for r in roots if (r / name).is_file()), None)
        if path is None:
            where = " or ".join(str(r) for r in roots)
            raise InputError(
                f"{gt}: image {img.get('id')} file {name!r} is not in {where}; pass --images DIR"
            )
        found.append((path, name, img["id"]))
    if not found:
        raise InputError(f"{gt}: the json lists no images")
    return found, sorted(coco.getCatIds())


def load_model(weights_or_yaml: str | os.PathLike, nc: int | None = None) -> tuple[torch.nn.Module, str]:
    """An Ultralytics detection model in float32 on the CPU and its name; a ``.yaml`` gets random weights (seed 0)."""
    require_ultralytics()
    name = str(weights_or_yaml)
    if name.endswith((".yaml", ".yml")):
        from ultralytics.nn.tasks import DetectionModel

        torch.manual_seed(0)
        try:
            return DetectionModel(name, nc=nc, verbose=False).float(), Path(name).name
        except FileNotFoundError:
            raise InputError(
                f"--model {name}: no such model yaml (a file, or a name Ultralytics ships)"
            ) from None
    from ultralytics import YOLO

    if not Path(name).is_file():
        raise InputError(f"--model {name}: no such file; pass a .pt checkpoint or a model .yaml")
    yolo = YOLO(name)
    if yolo.task != "detect":
        raise InputError(f"--model {name}: a {yolo.task} model; yolodbg capture takes detection models")
    return yolo.model.float(), Path(name).name


def _raw_forward(model: torch.nn.Module, x: Tensor) -> Any:
    """BatchNorm in eval mode, the Detect head in training mode (its raw dict), no gradients."""
    head, was_training, head_training = model.model[-1], model.training, model.model[-1].training
    try:
        model.eval()
        head.training = True
        with torch.no_grad():
            return _raw_output(model(x))
    finally:
        model.train(was_training)
        head.training = head_training


def _out_paths(out: Path, n_images: int, batch: int) -> list[Path]:
    n = math.ceil(n_images / batch)
    if out.suffix == ".pt":
        if n > 1:
            raise InputError(
                f"-o {out}: {n_images} images do not fit one batch of {batch}; pass a folder or a larger --batch"
            )
        paths = [out]
    else:
        paths = [out / f"batch_{k:04d}.pt" for k in range(n)]
    taken = [p for p in paths if p.exists()]
    if taken:
        raise InputError(f"-o {out}: {taken[0]} exists already; remove it or choose another output")
    return paths


def capture_model(
    model: str | os.PathLike | torch.nn.Module,
    images_dir: str | os.PathLike | None = None,
    gt: str | os.PathLike | None = None,
    *,
    imgsz: int = 640,
    batch: int = 8,
    out: str | os.PathLike,
    letterbox: str = "val",
    nc: int | None = None,
    rect: bool = False,
) -> list[Path]:
    """Run an Ultralytics detection model on images and write one bundle per batch; returns the paths.

    With ``gt`` (a COCO json) the bundles carry image ids, the json's category ids and the
    targets mapped into the input, so ``yolodbg explain`` replays them without ``--gt``.

    ``rect``: the batches the trainer's validation builds (``rect=True``): images in file-path
    order, then sorted by aspect ratio, each batch letterboxed into its own shape
    (:func:`~yolodbg.image_letterbox.rect_batches`); else every image goes into ``imgsz`` x ``imgsz``
    in the given order (``yolo val``'s default).
    """
    if rect and letterbox != "val":  # before any image is read or model loaded
        raise InputError(
            "--rect: rectangular batches are built by the validation letterbox; drop --letterbox predict"
        )
    ultralytics = require_ultralytics()
    gt_path = Path(gt) if gt is not None else None
    sources, cats = collect_images(Path(images_dir) if images_dir is not None else None, gt_path)
    paths = _out_paths(Path(out), len(sources), batch)
    net, name = _the_model(model, nc if nc is not None else (len(cats) if cats else None))
    meta = _capture_meta(net, name, ultralytics.__version__, letterbox, imgsz)
    stride = _model_stride(net, imgsz)
    meta.update(_class_names(net))
    shapes = [(imgsz, imgsz)] * len(paths)
    if rect:
        sources, shapes = plan_rect(sources, imgsz, batch, stride)
        meta["rect"] = True
    for k, path in enumerate(paths):
        chunk = sources[k * batch : (k + 1) * batch]
        images, outputs = _run_batch(net, chunk, imgsz, letterbox, shapes[k])
        targets = _batch_targets(gt_path, path, outputs, shapes[k], images, cats)
        bundle_mod.save(
            path,
            outputs,
            input_size=list(shapes[k]),
            images=images,
            targets=targets,
            category_ids=cats,
            meta=dict(meta, batch=k),
        )
    return paths


def _the_model(model: str | os.PathLike | torch.nn.Module, nc: int | None) -> tuple[torch.nn.Module, str]:
    """The network and the name the bundles record: a module as given, else loaded from its file or yaml."""
    if isinstance(model, torch.nn.Module):
        return model, type(model).__name__
    return load_model(model, nc)


def _capture_meta(
    net: torch.nn.Module, name: str, version: str, letterbox: str, imgsz: int
) -> dict[str, Any]:
    """What every bundle of a capture records about the model and how its inputs were made."""
    meta = {
        "model": name,
        "framework": "ultralytics",
        "framework_version": version,
        "letterbox": letterbox,
        "imgsz": imgsz,
        "mode": "BatchNorm in eval mode, raw train-mode head output, no gradients",
    }
    meta.update(class_weight_meta(net))
    return meta


def _model_stride(net: torch.nn.Module, imgsz: int) -> int:
    """The model's largest stride; ``imgsz`` must be a multiple of it (Ultralytics would round it up)."""
    stride = int(max(getattr(net, "stride", torch.tensor([32])).tolist()))
    if imgsz % stride:
        raise InputError(
            f"--imgsz {imgsz} is not a multiple of the model's stride {stride}; Ultralytics would round it up: "
            f"pass --imgsz {math.ceil(imgsz / stride) * stride}"
        )
    return stride


def _class_names(net: torch.nn.Module) -> dict[str, list[str]]:
    """``{"names": [...]}`` in class order when the model carries its class names, else nothing."""
    names = getattr(net, "names", None)
    if isinstance(names, dict):
        return {"names": [str(names[k]) for k in sorted(names)]}
    return {}


def _run_batch(
    net: torch.nn.Module,
    chunk: list[tuple[Path, str, int | None]],
    imgsz: int,
    letterbox: str,
    input_hw: tuple[int, int],
) -> tuple[list[dict[str, Any]], Any]:
    """Letterbox one batch of images into ``input_hw`` and run the model: (image entries, raw outputs)."""
    boxed, images = [], []
    for src, file_name, image_id in chunk:
        bgr = read_bgr(src)
        img, lb = letterbox_image(bgr, imgsz, letterbox, input_hw)
        boxed.append(img)
        images.append(image_entry(lb, bgr.shape[:2], file_name, image_id))
    return images, _raw_forward(net, to_input(boxed))


def _batch_targets(
    gt_path: Path | None,
    path: Path,
    outputs: Any,
    input_hw: tuple[int, int],
    images: list[dict[str, Any]],
    cats: list[int] | None,
) -> dict[str, Tensor] | None:
    """The batch's COCO boxes mapped into its input, as a training batch's targets (None without ``gt``)."""
    from yolodbg.groundtruth import from_coco

    if gt_path is None:
        return None
    doc = {"outputs": outputs, "head": "ultralytics", "input_size": list(input_hw), "images": images}
    b = bundle_mod.from_object({**doc, "category_ids": cats}, source=str(path))
    t = from_coco(gt_path, b, input_hw, int(outputs_nc(outputs)))
    return {"batch_idx": t.batch_idx.float(), "cls": t.cls.float()[:, None], "bboxes": t.bboxes}


def plan_rect(
    sources: list[tuple[Path, str, int | None]], imgsz: int, batch: int, stride: int
) -> tuple[list[tuple[Path, str, int | None]], list[tuple[int, int]]]:
    """The images in the order of Ultralytics' rect validation dataset, and each batch's input (h, w).

    Its dataset lists the files sorted by path, then :func:`~yolodbg.image_letterbox.rect_batches` sorts
    them by aspect ratio; the trainer passes ``max(model stride, 32)`` as the stride.
    """
    sources = sorted(sources, key=lambda src: str(src[0]))
    order, batch_shapes = rect_batches([image_hw(src[0]) for src in sources], imgsz, batch, max(stride, 32))
    return [sources[i] for i in order.tolist()], [(int(h), int(w)) for h, w in batch_shapes.tolist()]


def outputs_nc(outputs: dict) -> int:
    """Number of classes of a raw Ultralytics output dict (``scores`` is ``(B, nc, N)``)."""
    branch = outputs.get("one2many", outputs)
    return int(branch["scores"].shape[1])
