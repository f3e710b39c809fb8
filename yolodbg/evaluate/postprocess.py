"""The validators' post-processing settings (:class:`PostProcess`), without torch.

Each head family declares its framework's validator defaults in :mod:`yolodbg.heads.families`,
which the command line reads before any number is computed (``--head``, ``--help``), so the
settings live in this leaf module; :mod:`yolodbg.evaluate.decode`, which applies them, imports
them from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PostProcess:
    """Inference post-processing parameters (validation defaults of the framework)."""

    conf: float = 0.001  # keep (box, class) rows with score > conf
    iou: float = 0.7  # NMS suppresses boxes with IoU > iou
    max_det: int = 300  # detections per image
    multi_label: bool = True  # one row per class above conf (else the best class only)
    max_nms: int = 30000  # rows entering NMS, best scores first
    max_wh: float = 7680.0  # class offset of class-aware NMS, pixels
    exact: bool = True  # the decode follows the framework's own code path
    source: str = "Ultralytics 8.4.190 DetectionValidator defaults (conf 0.001, iou 0.7, max_det 300)"
    # how the evaluator writes its COCO json: "ultralytics" (boxes clipped to the image, xywh from the
    # centre, bbox rounded to 3 decimals and score to 5, as Ultralytics and YOLOv5 do) or "yolox"
    # (boxes only divided by the resize scale, xywh from the corner, unrounded)
    json: str = "ultralytics"
