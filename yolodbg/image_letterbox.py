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
    orig_hw: tuple[int, int], imgsz: int, mode: str = "val", input_hw: tuple[int, int] | None = None
) -> tuple[tuple[int, int], Letterbox]:
    """``(resized (h, w), Letterbox)`` of an ``orig_hw`` image put into an ``imgsz`` x ``imgsz`` input
    (``input_hw``: the batch shape of a rectangular validation batch, see :func:`rect_batches`).

    ``val``: Ultralytics' validation dataloader (:meth:`Letterbox.ultralytics`): the long side is
    resized to ``imgsz``, the other side rounded *up*, then centred grey padding to the input; the
    scales are per axis (``resized / original``). ``predict``: its predictor's ``LetterBox(auto=False)``,
    one resize by ``r = min(H/h, W/w)`` with rounding, then the same padding.

    >>> letterbox_geometry((300, 401), 320)[0], letterbox_geometry((300, 401), 320, "predict")[0]
    ((240, 320), (239, 320))
    >>> letterbox_geometry((300, 401), 320, input_hw=(256, 320))[1].pad_top   # (256 - 240) / 2
    8.0
    """
    if mode not in LETTERBOX_MODES:
        raise InputError(f"letterbox mode {mode!r} is unknown; expected one of {', '.join(LETTERBOX_MODES)}")
    h0, w0 = orig_hw
    if mode == "val":
        lb = Letterbox.ultralytics(orig_hw, input_hw or (imgsz, imgsz), imgsz)
        return (max(round(h0 * lb.scale_y), 1), max(round(w0 * lb.scale_x), 1)), lb
    if input_hw is not None and tuple(input_hw) != (imgsz, imgsz):
        raise InputError("letterbox mode 'predict' fills a square input; rectangular batches are 'val' only")
    r = min(imgsz / h0, imgsz / w0)
    h, w = max(round(h0 * r), 1), max(round(w0 * r), 1)
    return (h, w), Letterbox(r, r, float(round((imgsz - h) / 2 - 0.1)), float(round((imgsz - w) / 2 - 0.1)))


def letterbox_image(bgr, imgsz: int, mode: str = "val", input_hw: tuple[int, int] | None = None):
    """Letterbox an ``(h, w, 3)`` uint8 BGR image into ``(imgsz, imgsz, 3)`` (or ``input_hw``; OpenCV
    bilinear, grey 114).

    Returns ``(image, Letterbox)``; the pixels equal Ultralytics' own for the same ``mode``.
    """
    import cv2
    import numpy as np

    (h, w), lb = letterbox_geometry(bgr.shape[:2], imgsz, mode, input_hw)
    if (h, w) != bgr.shape[:2]:
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    big_h, big_w = input_hw or (imgsz, imgsz)
    out = np.full((big_h, big_w, 3), PAD_VALUE, dtype=np.uint8)
    top, left = int(lb.pad_top), int(lb.pad_left)
    out[top : top + h, left : left + w] = bgr
    return out, lb


RECT_PAD = 0.5  # Ultralytics' validation datasets pad rectangular batch shapes by half a stride


def rect_batches(shapes_hw: Sequence[tuple[int, int]], imgsz: int, batch: int, stride: int):
    """Ultralytics' rectangular validation batches (``BaseDataset.set_rectangle``, as the trainer's
    validation runs them): ``(order, batch shapes)``.

    Images are sorted by aspect ratio ``h / w`` (numpy's ``argsort``, as Ultralytics calls it) and
    cut into batches; a batch of landscape images (all ``h/w < 1``) gets the shape ``(max h/w, 1)``,
    one of portrait images ``(1, 1 / min h/w)``, a mixed one ``(1, 1)``, times ``imgsz / stride``,
    plus half a stride, rounded up to whole strides (so the long side too gets up to a stride of
    padding: 320 -> 352 below).

    >>> order, shapes = rect_batches([(300, 400), (400, 300), (480, 640)], 320, 2, 32)
    >>> order.tolist(), shapes.tolist()   # 0.75 · 10 + 0.5 -> 8 strides, 10 + 0.5 -> 11
    ([0, 2, 1], [[256, 352], [352, 256]])
    """
    import numpy as np

    s = np.array(shapes_hw)
    ar = s[:, 0] / s[:, 1]
    order = ar.argsort()
    ar = ar[order]
    bi = np.floor(np.arange(len(s)) / batch).astype(int)
    shapes = [[1, 1]] * (int(bi[-1]) + 1)
    for i in range(len(shapes)):
        ari = ar[bi == i]
        mini, maxi = ari.min(), ari.max()
        if maxi < 1:
            shapes[i] = [maxi, 1]
        elif mini > 1:
            shapes[i] = [1, 1 / mini]
    return order, np.ceil(np.array(shapes) * imgsz / stride + RECT_PAD).astype(int) * stride


def image_hw(path: Path) -> tuple[int, int]:
    """``(h, w)`` of an image as Ultralytics' label cache records it (``exif_size``): the header's
    size, swapped when the EXIF orientation turns it by 90° (JPEG, MPO, PNG, AVIF), other formats
    with such a tag decoded by OpenCV."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            exif = im.tag_v2 if im.format == "TIFF" else im.getexif()
            turned, fmt = exif.get(274) in {5, 6, 7, 8}, im.format
    # not only OSError: once Ultralytics is imported, its wrapper of Image.open tries an optional
    # HEIF plugin on failure and raises ModuleNotFoundError when that is absent
    except Exception:
        raise InputError(
            f"{path}: not a readable image; check the file or leave it out of the folder"
        ) from None
    if not turned:
        return h, w
    if fmt in {"JPEG", "MPO", "PNG", "AVIF"}:
        return w, h
    return tuple(read_bgr(path).shape[:2])


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
