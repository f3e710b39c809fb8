"""Ultralytics' class weights (``cls_pw``): a per-class factor on the class BCE of ``v8DetectionLoss``.

With ``cls_pw > 0`` (default 0, off) the 8.4 detection trainer counts the training labels per
class, sets ``w_c = (1 / count_c) ** cls_pw`` for the classes that occur, gives the absent
classes the mean of those, divides the whole vector by its mean, and stores it as
``model.class_weights`` (float32). The criterion multiplies its ``(B, N, nc)`` BCE elements by
it before the sum; S, the positives and the other terms do not change. End-to-end models
(YOLO26) apply the same vector to both branches.

The weights depend on the training set, not on the batch, so a replay takes them from the bundle:
``yolodbg capture`` records ``meta.class_weights`` (and ``meta.cls_pw``) when the model carries
them. The recipe parameter ``class_weights`` is ``auto`` (the bundle's, if any), ``off``, or the
vector itself (``w0/w1/...``). A bundle that says weights were used (``meta.cls_pw > 0``) but
does not carry them is refused rather than replayed unweighted; ``off`` on a weighted bundle is
allowed, with a warning that the class term is then not the trainer's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from yolodbg.bundle import Bundle
from yolodbg.errors import BundleError, RecipeError


@dataclass(frozen=True)
class ClassWeights:
    """The weights a replay uses (``values`` None: unweighted) and what the report should say."""

    values: Tensor | None  # (nc,) float32
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def from_counts(counts: Any, cls_pw: float) -> Tensor:
    """The vector Ultralytics' detection trainer derives from per-class label counts (float32, mean 1).

    >>> from_counts([3, 1, 0], 1.0).tolist()   # 1/3, 1, absent -> mean 2/3; then / mean(1/3, 1, 2/3)
    [0.5, 1.5, 1.0]
    """
    c = torch.as_tensor(counts, dtype=torch.float32)
    present = c > 0
    if not bool(present.any()):
        raise ValueError("no class has a label: Ultralytics keeps the default (unweighted) loss then")
    w = (1.0 / torch.where(present, c, torch.ones_like(c))) ** cls_pw
    w = torch.where(present, w, w[present].mean())
    return w / w.mean()


def _parse_vector(text: str, nc: int, recipe: str) -> Tensor:
    parts = [p for p in text.strip("[]() ").replace(",", "/").split("/") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise RecipeError(
            f"recipe {recipe}: class_weights={text!r}; expected auto, off or numbers like 0.5/1.5/1.0"
        ) from None
    return _checked(values, nc, f"recipe {recipe}: class_weights", "give one weight per class")


def _checked(values: list[float], nc: int, where: str, fix: str) -> Tensor:
    error = RecipeError if where.startswith("recipe") else BundleError
    if len(values) != nc:
        raise error(f"{where} has {len(values)} weights but the outputs have {nc} classes; {fix}")
    bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise error(f"{where} holds {bad[0]!r}; weights must be finite and ≥ 0; {fix}")
    return torch.tensor(values, dtype=torch.float32)


def _from_meta(bundle: Bundle, nc: int) -> Tensor | None:
    raw = bundle.meta.get("class_weights")
    if raw is None:
        return None
    if isinstance(raw, Tensor):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)) or not all(isinstance(v, (int, float)) for v in raw):
        raise BundleError(
            f"{bundle.source}: meta.class_weights is {type(raw).__name__}; expected a list with one number per "
            "class (model.class_weights), or leave it out"
        )
    return _checked(
        [float(v) for v in raw],
        nc,
        f"{bundle.source}: meta.class_weights",
        "record the model's class_weights (yolodbg capture does)",
    )


def _meta_cls_pw(bundle: Bundle) -> float:
    value = bundle.meta.get("cls_pw", 0.0)
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        raise BundleError(f"{bundle.source}: meta.cls_pw is {value!r}; expected a number in [0, 1]") from None


def resolve(spec: str | None, bundle: Bundle, nc: int, recipe: str) -> ClassWeights:
    """The class weights of a replay from the ``class_weights`` parameter and the bundle's meta."""
    in_meta = _from_meta(bundle, nc)
    cls_pw = _meta_cls_pw(bundle)
    mode = "auto" if spec is None else str(spec).strip().lower()
    if mode == "off":
        if in_meta is None and cls_pw <= 0:
            return ClassWeights(None)
        return ClassWeights(
            None,
            notes=("class term unweighted (class_weights=off)",),
            warnings=(
                f"{bundle.source} was trained with class weights (meta.class_weights/cls_pw) but this replay "
                "ignores them (class_weights=off): its cls term is not the trainer's",
            ),
        )
    if mode == "auto":
        if in_meta is None:
            if cls_pw > 0:
                raise BundleError(
                    f"{bundle.source}: meta.cls_pw is {cls_pw:g} (class weights on) but meta.class_weights is "
                    f"missing, so the cls term cannot be replayed as trained; record the model's class_weights "
                    f"(yolodbg capture does), or pass -r {recipe}:class_weights=w0/w1/... (or =off to replay "
                    "unweighted on purpose)"
                )
            return ClassWeights(None)
        return ClassWeights(in_meta, notes=(_note(in_meta, "the bundle's meta.class_weights"),))
    given = _parse_vector(str(spec), nc, recipe)
    notes = [_note(given, "class_weights=")]
    warnings = []
    if in_meta is not None and not torch.equal(given, in_meta):
        warnings.append(
            f"class_weights given by the recipe differ from the bundle's meta.class_weights: the cls term is "
            f"not the trainer's ({bundle.source})"
        )
    return ClassWeights(given, notes=tuple(notes), warnings=tuple(warnings))


def _note(w: Tensor, source: str) -> str:
    shown = "/".join(f"{v:.4g}" for v in w[:8].tolist()) + ("/..." if w.numel() > 8 else "")
    return f"class BCE weighted per class (Ultralytics cls_pw) with {source}: {shown}"
