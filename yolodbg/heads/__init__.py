"""Head families: raw head outputs -> named tensors per anchor (one module per head family).

Each family module parses its framework's train-mode output and registers a
:class:`~yolodbg.heads.registry.HeadFamily` (how a bare output is recognised, its level shapes,
default recipe, default letterbox, inference decode and mAP post-processing) with one
:func:`~yolodbg.heads.registry.register` call. Importing this package registers the built-in
families, in the order ``--head`` lists them; consumers read them through the names below.
"""

# each import registers its family; the order is the order of --head and of the recogniser's claims
# isort: off
from yolodbg.heads import ultralytics  # noqa: F401
from yolodbg.heads import yolov5  # noqa: F401
from yolodbg.heads import yolox  # noqa: F401
from yolodbg.heads import yolov1  # noqa: F401

# isort: on
from yolodbg.heads.registry import (
    HeadFamily,
    Recognition,
    ambiguity,
    family,
    get,
    names,
    recognise,
    register,
    training_part,
    unregister,
)

__all__ = [
    "HeadFamily",
    "Recognition",
    "ambiguity",
    "family",
    "get",
    "names",
    "recognise",
    "register",
    "training_part",
    "unregister",
]
