"""Head families: raw head outputs -> named tensors per anchor (one module per head family).

Each family is declared once, by a :class:`~yolodbg.heads.registry.HeadFamily` given to
:func:`~yolodbg.heads.registry.register`: the built-in ones in :mod:`yolodbg.heads.families`
(name, default recipe, default letterbox, mAP post-processing, and hooks into the family's
module), whose import registers them in the order ``--head`` lists them. The family modules
(:mod:`~yolodbg.heads.ultralytics`, :mod:`~yolodbg.heads.yolov5`, :mod:`~yolodbg.heads.yolox`,
:mod:`~yolodbg.heads.yolov1`) recognise, parse and decode a bundle's tensors; they are imported
when a bundle is handled, so importing this package loads no torch. Consumers read the registry
through the names below.
"""

from yolodbg.heads import families  # noqa: F401  (registers the built-in families)
from yolodbg.heads.registry import (
    HeadFamily,
    Recognition,
    ambiguity,
    deferred,
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
    "deferred",
    "family",
    "get",
    "names",
    "recognise",
    "register",
    "training_part",
    "unregister",
]
