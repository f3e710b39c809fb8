"""Ultralytics' letterbox, re-implemented exactly (pixels included) for ``yolodbg capture``.

OpenCV is imported inside the functions: it comes with the ``ultralytics`` extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from yolodbg.errors import InputError
from yolodbg.geometry import Letterbox

PAD_VALUE = 114  # Ultralytics' letterbox grey
LETTERBOX_MODES = ("val", "predict")


def letterbox_geometry(
    orig_hw: tuple[int, int], imgsz: int, mode: str = "val"
) -> tuple[tuple[int, int], Letterbox]:
    """``(resized (h, w), Letterbox)`` of an ``orig_hw`` image put into an ``imgsz`` x ``imgsz`` input.

    ``val``: Ultralytics' validation dataloader (``rect=False``, :meth:`Letterbox.ultralytics`): the
    long side is resized to ``imgsz``, the other side rounded *up*, then centred grey padding; the
    scales are per axis (``resized / original``). ``predict``: its predictor's ``LetterBox(auto=False)``,
    one resize by ``r = min(H/h, W/w)`` with rounding, then the same padding.

    >>> letterbox_geometry((300, 401), 320)[0], letterbox_geometry((300, 401), 320, "predict")[0]
    ((240, 320), (239, 320))
    """
    if mode not in LETTERBOX_MODES:
        raise InputError(f"letterbox mode {mode!r} is unknown; expected one of {', '.join(LETTERBOX_MODES)}")
    h0, w0 = orig_hw
    if mode == "val":
        lb = Letterbox.ultralytics(orig_hw, (imgsz, imgsz))
        return (max(round(h0 * lb.scale_y), 1), max(round(w0 * lb.scale_x), 1)), lb
    r = min(imgsz / h0, imgsz / w0)
    h, w = max(round(h0 * r), 1), max(round(w0 * r), 1)
    return (h, w), Letterbox(r, r, float(round((imgsz - h) / 2 - 0.1)), float(round((imgsz - w) / 2 - 0.1)))


def letterbox_image(bgr, imgsz: int, mode: str = "val"):
    """Letterbox an ``(h, w, 3)`` uint8 BGR image into ``(imgsz, imgsz, 3)`` (OpenCV bilinear, grey 114).

    Returns ``(image, Letterbox)``; the pixels equal Ultralytics' own for the same ``mode``.
    """
    import cv2
    import numpy as np

    (h, w), lb = letterbox_geometry(bgr.shape[:2], imgsz, mode)
    if (h, w) != bgr.shape[:2]:
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.full((imgsz, imgsz, 3), PAD_VALUE, dtype=np.uint8)
    top, left = int(lb.pad_top), int(lb.pad_left)
    out[top : top + h, left : left + w] = bgr
    return out, lb


def read_bgr(path: Path):
    """Read an image file as Ultralytics does (OpenCV, BGR uint8); a clear error if it is not an image."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR) if path.is_file() else None
    if img is None:
        raise InputError(f"{path}: not a readable image; check the file or leave it out of the folder")
    return img


def to_input(images: Sequence) -> Tensor:
    """``(B, 3, H, W)`` float32 network input from letterboxed BGR uint8 images: RGB, divided by 255."""
    import numpy as np

    chw = [torch.from_numpy(np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1))) for im in images]
    return torch.stack(chw).float() / 255
