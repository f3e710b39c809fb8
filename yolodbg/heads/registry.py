"""The head-family registry: every head family yolodbg knows, declared once.

A head family is one shape of raw train-mode output (Ultralytics' anchor-free DFL head, YOLOv5's
anchor-based ``Detect``, YOLOX's decoupled head, YOLOv1's cell grid). Each family is declared by
one :class:`HeadFamily` given to :func:`register` (the built-in ones in
:mod:`yolodbg.heads.families`); everything that used to ask ``if head == "yolox"`` asks the
registry:

* bundle loading: the known names (``--head``, a bundle's ``head`` field) and, for a bare output,
  which family produced it (:func:`recognise`);
* parsing: a bundle's raw output validated and laid out as the framework's loss reads it;
* bundle options: the ``(H, W)`` of each feature level, to check ``--imgsz``/``--strides``;
* the default recipe of a bundle (``explain`` without ``-r``);
* the default letterbox of ``--gt`` boxes (the loader of the family's framework);
* inference decode and post-processing for mAP (the framework validator's parameters).

A declaration holds data (names, defaults) and hooks (callables). The hooks of a built-in family
are :func:`deferred`: they import the family's module, which reads tensors with torch, at their
first call, so the declarations (``--head``'s choices, ``--help``, usage errors) load no torch.

This module imports nothing from yolodbg, so any layer may read it without an import cycle.

Anchors that are not ``(level, cell, stride)``: a family only promises a parser, a recogniser and
the optional hooks below; nothing here assumes strided levels. A query-based head (DETR-style:
``(B, Q, 4 + nc)`` boxes and logits per query, no grid) would register with ``level_shapes=None``
(no ``--imgsz``/``--strides`` fit to check), a ``decode`` that reads its queries' boxes directly
(no NMS: a top-k selection), and a recipe whose assigner matches GTs to queries (Hungarian) over
an :class:`~yolodbg.anchors.Anchors` table whose rows are queries rather than cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recognition:
    """A family's answer to "did you produce this bare output?".

    ``certain``: no other family produces this form. Otherwise the form is shared (e.g. a list of
    per-level ``(B, C, H, W)`` maps) and ``form``/``reading`` name it in the message that asks for
    ``--head`` when several families claim it.
    """

    certain: bool = True
    form: str = ""  # what the output is, e.g. "a list of per-level (B, C, H, W) tensors"
    reading: str = ""  # what it would be for this family, e.g. "raw YOLOX outputs"


@dataclass(frozen=True)
class HeadFamily:
    """Everything yolodbg needs to know about one head family, in one place.

    ``decode`` returns the per-image detections of a bundle in network-input pixels, as the
    framework's validator computes them (``decode(bundle, postprocess, parsed, probs)``), or None
    when it cannot (no parsed output at hand, or no framework decode): then the replay's decoded
    boxes and scores go through the generic NMS with :attr:`postprocess`. ``probs`` are the
    replay's class probabilities when its recipe declares them the head's own
    (``Recipe.scores_are_head_sigmoid``), else None: a decode may reuse them where it can prove
    them equal to what it would compute.
    """

    name: str
    # the train-mode output -> a Recognition if this family produces this form, else None
    recognise: Callable[[Any], Recognition | None]
    # a loaded bundle -> its validated, parsed output (the family's own type; BundleError if malformed)
    parse: Callable[[Any], Any]
    # the recipe ``explain`` replays when none is given
    default_recipe: str
    # loader whose letterbox maps --gt boxes of images without scale/pad (a geometry.LETTERBOX_MODES value)
    letterbox: str
    # validator defaults for mAP (a yolodbg.evaluate.decode.PostProcess); None = the generic defaults
    postprocess: Any = None
    # (H, W) of every strided feature level of a raw output, None if malformed; None = no strided levels
    level_shapes: Callable[[Any], tuple[tuple[int, int], ...] | None] | None = None
    # outputs -> recipe name, where the output itself selects another default (end-to-end heads)
    recipe_for_outputs: Callable[[Any], str | None] | None = None
    # the framework's inference decode (see the class docstring); None = the replay's boxes + NMS
    decode: Callable[..., Any] | None = None
    # ``decode`` wants the recipe's parsed output (recipes cache it, so it is not parsed twice)
    decode_reads_parsed: bool = False

    def recipe_name(self, outputs: Any = None) -> str:
        """The default recipe for this family's ``outputs``."""
        chosen = self.recipe_for_outputs(outputs) if self.recipe_for_outputs is not None else None
        return chosen or self.default_recipe

    def shapes(self, outputs: Any) -> tuple[tuple[int, int], ...] | None:
        """``(H, W)`` of every feature level, or None (no strided levels, or a malformed output)."""
        return self.level_shapes(outputs) if self.level_shapes is not None else None


def deferred(load: Callable[[], Any], name: str) -> Callable[..., Any]:
    """The function ``name`` of the module ``load()`` returns, looked up at each call: ``load`` imports
    the family's torch code (inside the function), so declaring a hook imports nothing."""

    def hook(*args: Any, **kwargs: Any) -> Any:
        return getattr(load(), name)(*args, **kwargs)

    hook.__name__ = hook.__qualname__ = name
    return hook


_FAMILIES: dict[str, HeadFamily] = {}


def recorded(bundle: Any) -> dict[str, Any]:
    """What every family's parser takes from a loaded bundle: its strides, input size, ``--nc`` and
    its file (named in errors). A family's ``parse_bundle`` adds what only it reads."""
    return {
        "strides": bundle.strides,
        "input_size": bundle.input_size,
        "nc": bundle.nc,
        "where": bundle.source,
    }


def register(family: HeadFamily) -> HeadFamily:
    """Make ``family`` known by its name (in registration order); returns it, for ``FAMILY = register(...)``."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"head family {family.name!r} is registered already")
    _FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    """Forget a family (tests that register a toy one clean up with this)."""
    _FAMILIES.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered family names, in registration order."""
    return tuple(_FAMILIES)


def get(name: str) -> HeadFamily | None:
    """The family called ``name``, or None."""
    return _FAMILIES.get(name)


def family(name: str) -> HeadFamily:
    """The family called ``name``; KeyError if none is registered (callers validate names first)."""
    return _FAMILIES[name]


def training_part(outputs: Any) -> Any:
    """An eval-mode ``(inference, training dict)`` pair stands for its training dict; else ``outputs``."""
    if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], dict):
        return outputs[1]
    return outputs


def recognise(outputs: Any) -> list[tuple[str, Recognition]]:
    """The families that claim a bare output: the first certain claim alone, else every claim (one
    claim is an answer; several share one form and need ``--head``, see :func:`ambiguity`)."""
    outputs = training_part(outputs)
    claims = [(f.name, r) for f in _FAMILIES.values() if (r := f.recognise(outputs)) is not None]
    certain = [c for c in claims if c[1].certain]
    return certain[:1] or claims


def ambiguity(claims: list[tuple[str, Recognition]]) -> str:
    """The message part that asks for ``--head`` when several families claim one form."""
    form = claims[0][1].form
    readings = " or ".join(r.reading for _, r in claims)
    choices = " or ".join(f"--head {n}" for n, _ in claims)
    return f"{form} is either {readings}; pass {choices}"
