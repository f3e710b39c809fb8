"""Box formats, the IoU family and the letterbox mapping.

Conventions: boxes are ``Tensor[..., 4]``; ``xyxy`` is (x1, y1, x2, y2), ``cxcywh`` is
(centre x, centre y, width, height). Elementwise functions pair box i of the first argument
with box i of the second and return ``Tensor[...]``; functions named ``pairwise_*`` compare
every box with every box and return ``Tensor[N, M]``.

The arithmetic follows the frameworks operation by operation (the order of additions and
where ``eps`` goes change the last bits, and the assigners' tie-breaks depend on them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from yolodbg.forms import IOU_KINDS

# the validation loaders whose mapping of original images into the input yolodbg knows
LETTERBOX_MODES = ("ultralytics", "yolov5", "yolox")
# which one a head's framework uses is declared by its head family (yolodbg.heads, ``letterbox``)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``Tensor[..., 4]`` cxcywh -> xyxy, half sizes computed first (as Ultralytics ``xywh2xyxy``)."""
    xy, half = boxes[..., :2], boxes[..., 2:] / 2
    return torch.cat((xy - half, xy + half), -1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``Tensor[..., 4]`` xyxy -> cxcywh (as Ultralytics ``xyxy2xywh``)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def bbox_iou(box1: Tensor, box2: Tensor, kind: str = "ciou", eps: float = 1e-7) -> Tensor:
    """IoU family of xyxy boxes, elementwise: ``Tensor[..., 4]`` x ``Tensor[..., 4]`` -> ``Tensor[...]``.

    Ultralytics' ``bbox_iou(xywh=False)`` to the bit: ``eps`` is added to the heights (not the
    widths), to the union, to the squared enclosing diagonal and the enclosing area. For CIoU
    the aspect weight alpha is a constant (no gradient), ``alpha = v / (1 - iou + v + eps)``.

    >>> a = torch.tensor([0.0, 0.0, 2.0, 2.0]); b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    >>> round(float(bbox_iou(a, b, "iou")), 4)   # 1 / (4 + 4 - 1)
    0.1429
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"unknown IoU kind {kind!r}; expected one of {', '.join(IOU_KINDS)}")
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.unbind(-1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)
    ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw.pow(2) + ch.pow(2) + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    if kind == "diou":
        return iou - rho2 / c2
    v = (4 / math.pi**2) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2)
    with torch.no_grad():  # CIoU treats the aspect weight as a constant
        alpha = v / (1 - iou + v + eps)
    return iou - (rho2 / c2 + v * alpha)


def pairwise_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Plain IoU of every xyxy box pair: ``Tensor[N, 4]`` x ``Tensor[M, 4]`` -> ``Tensor[N, M]``.

    Used for diagnostics (hints, best IoU of a background anchor), not inside a loss.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]).clamp(0) * (boxes1[:, 3] - boxes1[:, 1]).clamp(0)
    area2 = (boxes2[:, 2] - boxes2[:, 0]).clamp(0) * (boxes2[:, 3] - boxes2[:, 1]).clamp(0)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


@dataclass(frozen=True)
class Letterbox:
    """How an original image was mapped into the network input: ``x_in = x_orig * scale_x + pad_left``."""

    scale_y: float
    scale_x: float
    pad_top: float
    pad_left: float

    @classmethod
    def ultralytics(
        cls, orig_hw: tuple[int, int], input_hw: tuple[int, int], imgsz: int | None = None
    ) -> Letterbox:
        """How Ultralytics' validation pipeline maps an image of ``orig_hw`` into an input of ``input_hw``.

        ``load_image`` first resizes the long side to ``imgsz`` (default: the input's long side)
        with ``ceil`` on the other side, then ``LetterBox(scaleup=False)`` fits that into the input
        (ratio ``min(H/h1, W/w1, 1)``, rounded size) and pads it centred, ``round(d/2 - 0.1)``
        before. Labels follow the same two scalings, so the per-axis scales can differ slightly.

        >>> Letterbox.ultralytics((333, 500), (640, 640))   # 333 * 1.28 = 426.24 -> 427 rows
        Letterbox(scale_y=1.2822822822822824, scale_x=1.28, pad_top=106.0, pad_left=0.0)
        """
        h0, w0 = orig_hw
        big_h, big_w = input_hw
        imgsz = imgsz or max(big_h, big_w)
        r = imgsz / max(h0, w0)
        h1, w1 = (min(math.ceil(h0 * r), imgsz), min(math.ceil(w0 * r), imgsz)) if r != 1 else (h0, w0)
        r2 = min(big_h / h1, big_w / w1, 1.0)
        new_w, new_h = max(round(w1 * r2), 1), max(round(h1 * r2), 1)
        pad_left = round((big_w - new_w) / 2 - 0.1)
        pad_top = round((big_h - new_h) / 2 - 0.1)
        return cls(h1 / h0 * r2, w1 / w0 * r2, float(pad_top), float(pad_left))

    @classmethod
    def yolov5(
        cls, orig_hw: tuple[int, int], input_hw: tuple[int, int], imgsz: int | None = None
    ) -> Letterbox:
        """How YOLOv5 7.0's validation loader (``LoadImagesAndLabels``, ``rect=True``) maps its labels.

        ``load_image`` resizes by ``r = imgsz / max(h, w)`` to ``int(w·r) × int(h·r)`` (truncated, so
        a long side of 517 at 320 becomes 320 but the short one 206, not 207), then
        ``letterbox(auto=False, scaleup=False)`` fits that into the (rectangular) batch shape with
        ``r2 = min(H/h1, W/w1, 1)`` and a rounded size. The labels are shifted by the *unrounded* half
        padding ``dw, dh`` (the pixels by ``round(dw - 0.1)``), so a GT can sit half a pixel off the
        image content, as the trainer saw it.

        >>> Letterbox.yolov5((333, 517), (320, 320))   # 206 rows, (320 - 206) / 2 above
        Letterbox(scale_y=0.6186186186186187, scale_x=0.6189555125725339, pad_top=57.0, pad_left=0.0)
        """
        h0, w0 = orig_hw
        big_h, big_w = input_hw
        imgsz = imgsz or max(big_h, big_w)
        r = imgsz / max(h0, w0)
        h1, w1 = (max(int(h0 * r), 1), max(int(w0 * r), 1)) if r != 1 else (h0, w0)
        r2 = min(big_h / h1, big_w / w1, 1.0)
        new_w, new_h = round(w1 * r2), round(h1 * r2)
        return cls(r2 * h1 / h0, r2 * w1 / w0, (big_h - new_h) / 2, (big_w - new_w) / 2)

    @classmethod
    def yolox(cls, orig_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
        """How YOLOX's ``ValTransform`` (``preproc``) and its COCO dataset map an image and its boxes:
        one ratio ``r = min(H/h, W/w)`` for both axes (boxes times ``r``, the image resized to
        ``int(w·r) × int(h·r)``), placed at the top left, the padding at the bottom and right only.

        >>> Letterbox.yolox((333, 517), (320, 320))
        Letterbox(scale_y=0.6189555125725339, scale_x=0.6189555125725339, pad_top=0.0, pad_left=0.0)
        """
        h0, w0 = orig_hw
        r = min(input_hw[0] / h0, input_hw[1] / w0)
        return cls(r, r, 0.0, 0.0)

    @classmethod
    def for_mode(
        cls, mode: str, orig_hw: tuple[int, int], input_hw: tuple[int, int], imgsz: int | None = None
    ) -> Letterbox:
        """The mapping of one framework's validation loader (``mode`` in :data:`LETTERBOX_MODES`)."""
        if mode == "ultralytics":
            return cls.ultralytics(orig_hw, input_hw, imgsz)
        if mode == "yolov5":
            return cls.yolov5(orig_hw, input_hw, imgsz)
        if mode == "yolox":
            return cls.yolox(orig_hw, input_hw)
        raise ValueError(f"unknown letterbox mode {mode!r}; expected one of {', '.join(LETTERBOX_MODES)}")

    def to_input_xyxy(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        """A COCO ``[x, y, w, h]`` box of the original image -> xyxy in network-input pixels."""
        x1 = x * self.scale_x + self.pad_left
        y1 = y * self.scale_y + self.pad_top
        return x1, y1, x1 + w * self.scale_x, y1 + h * self.scale_y

    def to_original_point(self, x: float, y: float) -> tuple[float, float]:
        """A point in network-input pixels -> original-image pixels (the letterbox undone)."""
        return (x - self.pad_left) / self.scale_x, (y - self.pad_top) / self.scale_y

    def to_original_xyxy(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """An xyxy box in network-input pixels -> xyxy in original-image pixels."""
        x1, y1, x2, y2 = box
        return (*self.to_original_point(x1, y1), *self.to_original_point(x2, y2))

    def to_original_boxes(self, boxes: Tensor) -> Tensor:
        """``(N, 4)`` xyxy boxes in network-input pixels -> original-image pixels, in ``boxes``' dtype
        (the same subtraction and division per coordinate as :meth:`to_original_point`)."""
        pad = torch.tensor([self.pad_left, self.pad_top, self.pad_left, self.pad_top], dtype=boxes.dtype)
        gain = torch.tensor([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=boxes.dtype)
        return (boxes - pad) / gain
