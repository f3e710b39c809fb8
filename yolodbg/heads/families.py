"""The built-in head families, declared: one :func:`~yolodbg.heads.registry.register` call each.

A declaration is what yolodbg knows about a family before it reads a bundle: its name (``--head``,
a bundle's ``head`` field), its default recipe, the letterbox of its framework's loader and its
validator's post-processing defaults. This module imports no torch, so ``--head``'s choices,
``--help`` and usage errors answer at once.

What reads a tensor (recognise a bare output, parse it, the level shapes, the inference decode)
lives in the family's own module (:mod:`yolodbg.heads.ultralytics`, ...), which imports torch.
Each hook below is :func:`~yolodbg.heads.registry.deferred`: it imports that module at its first
call, when a bundle of some family is handled and torch is loaded anyway. The order of the
registrations is the order of ``--head`` and of the recogniser's claims.
"""

from __future__ import annotations

from typing import Any

from yolodbg.evaluate.postprocess import PostProcess
from yolodbg.heads.registry import HeadFamily, deferred, register


def _ultralytics():
    from yolodbg.heads import ultralytics

    return ultralytics


def _yolov5():
    from yolodbg.heads import yolov5

    return yolov5


def _yolox():
    from yolodbg.heads import yolox

    return yolox


def _yolov1():
    from yolodbg.heads import yolov1

    return yolov1


def end_to_end_recipe(outputs: Any) -> str | None:
    """End-to-end Ultralytics outputs (a ``one2one`` branch: YOLO26, YOLOv10) replay the ``yolo26`` loss."""
    return "yolo26" if isinstance(outputs, dict) and "one2one" in outputs else None


ULTRALYTICS = register(
    HeadFamily(
        name="ultralytics",
        recognise=deferred(_ultralytics, "recognise"),
        parse=deferred(_ultralytics, "parse_bundle"),
        default_recipe="yolov8",
        recipe_for_outputs=end_to_end_recipe,
        letterbox="ultralytics",
        postprocess=PostProcess(),
        level_shapes=deferred(_ultralytics, "level_shapes"),
        decode=deferred(_ultralytics, "detections"),
        decode_reads_parsed=True,
    )
)

YOLOV5 = register(
    HeadFamily(
        name="yolov5",
        recognise=deferred(_yolov5, "recognise"),
        parse=deferred(_yolov5, "parse_bundle"),
        default_recipe="yolov5",
        letterbox="yolov5",
        postprocess=PostProcess(
            iou=0.6, source="YOLOv5 7.0 val.py defaults (conf 0.001, iou 0.6, max_det 300, multi-label)"
        ),
        level_shapes=deferred(_yolov5, "level_shapes"),
        decode=deferred(_yolov5, "detections"),
        decode_reads_parsed=True,
    )
)

YOLOX = register(
    HeadFamily(
        name="yolox",
        recognise=deferred(_yolox, "recognise"),
        parse=deferred(_yolox, "parse_bundle"),
        default_recipe="yolox",
        letterbox="yolox",
        postprocess=PostProcess(
            conf=0.01,
            iou=0.65,
            max_det=100000,
            multi_label=False,
            source="YOLOX 0.3.0 eval defaults (test_conf 0.01, nmsthre 0.65, best class, no max_det)",
            json="yolox",
        ),
        level_shapes=deferred(_yolox, "level_shapes"),
        decode=deferred(_yolox, "detections"),
        decode_reads_parsed=True,
    )
)

YOLOV1 = register(
    HeadFamily(
        name="yolov1",
        recognise=deferred(_yolov1, "recognise"),
        parse=deferred(_yolov1, "parse_bundle"),
        default_recipe="yolov1",
        letterbox="ultralytics",
        # no framework validator: the replay's decoded boxes and scores through the generic NMS
        postprocess=PostProcess(
            iou=0.5, exact=False, source="no framework post-processing: conf·p(c) > 0.001, NMS at IoU 0.5"
        ),
    )
)
