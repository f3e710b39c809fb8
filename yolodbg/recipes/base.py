"""Recipe machinery: typed parameters, the ``name:key=value,...`` syntax, the base class."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from yolodbg.errors import RecipeError

if TYPE_CHECKING:
    from torch import Tensor

    from yolodbg.bundle import Bundle
    from yolodbg.groundtruth import Targets
    from yolodbg.result import LossResult


# reason codes that say a GT's geometry keeps every anchor away (no prediction could change it): no
# anchor inside, a padding row, not counted (YOLOX), no anchor shape within anchor_t (YOLOv5's BPR
# test), its cell held by another GT (YOLOv1)
GEOMETRIC_CODES = frozenset(
    {"treated_as_padding", "no_anchor_inside", "not_counted", "anchor_ratio", "cell_taken"}
)
INT_MAX = 2**31 - 1  # the largest integer parameter: beyond it torch's index arithmetic overflows


@dataclass(frozen=True)
class Param:
    """One recipe parameter: its dotted key, type, default, allowed values and meaning.

    Numbers are checked where they are parsed, so every command refuses a bad variant before
    any work: floats must be finite (NaN or ±inf would silently poison every term) and lie in
    ``[minimum, maximum]`` (``above``: strictly greater than it), integers are whole numbers in
    ``[minimum, maximum]`` (at most :data:`INT_MAX`), booleans are words (true/false, yes/no,
    on/off) or 1/0 on the command line and TOML booleans in a recipe file.
    """

    key: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None

    def parse(self, text: Any, recipe: str) -> Any:
        """Convert a value given as text (``-r``) or from TOML into this parameter's type."""
        where = f"recipe {recipe}: {self.key}"
        if text is None or (
            isinstance(text, str) and text.lower() in ("none", "auto") and self.default is None
        ):
            return None
        try:
            if self.type is bool:
                value = _parse_bool(text)
            elif self.type is int:
                value = _parse_int(text)
            elif self.type is float:
                value = _parse_float(text)
            else:
                value = self.type(text)
        except (TypeError, ValueError, OverflowError):
            name = self.type.__name__
            raise RecipeError(f"{where}={text!r} is not a valid {name}; expected {self.allowed()}") from None
        if self.choices is not None and value not in self.choices:
            raise RecipeError(f"{where}={value!r}; expected one of {', '.join(self.choices)}")
        if self.type in (int, float) and not self.in_range(value):
            raise RecipeError(f"{where}={value!r} is out of range; expected {self.allowed()}")
        return value

    def in_range(self, value: float) -> bool:
        """Whether a parsed number is finite and inside the declared bounds."""
        if not math.isfinite(value):
            return False
        hi = self.maximum if self.maximum is not None else (INT_MAX if self.type is int else None)
        return not (
            (self.minimum is not None and value < self.minimum)
            or (self.above is not None and value <= self.above)
            or (hi is not None and value > hi)
        )

    def allowed(self) -> str:
        """The values this parameter accepts, in words (for messages and ``yolodbg recipes NAME``)."""
        if self.type is bool:
            return "a boolean (true/false, yes/no, on/off, 1/0)"
        if self.type is str:
            return "one of " + ", ".join(self.choices) if self.choices else "a text"
        kind = "an integer" if self.type is int else "a finite number"
        hi = self.maximum if self.maximum is not None else (INT_MAX if self.type is int else None)
        lo = self.above if self.above is not None else self.minimum
        if lo is None and hi is None:
            return kind
        left = "(" if self.above is not None else "["
        fmt = (lambda x: str(int(x))) if self.type is int else (lambda x: f"{x:g}")
        if hi is None:
            return f"{kind} {'>' if self.above is not None else '≥'} {fmt(lo)}"
        if lo is None:
            return f"{kind} ≤ {fmt(hi)}"
        return f"{kind} in {left}{fmt(lo)}, {fmt(hi)}]"

    def check_toml_type(self, value: Any) -> None:
        """A recipe file's TOML value must have this parameter's type: TOML types are explicit.

        A string for a number (``gain.box = "7.5"``) or a number for a boolean (``use_l1 = 1``)
        is refused, as a float for an integer is (``13.5``); ``"auto"`` stays allowed where the
        default is automatic.
        """
        if isinstance(value, str) and self.default is None and value.lower() in ("auto", "none"):
            return
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, (int, float)) and not isinstance(value, bool),  # 13.5: the parser says why
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str),
        }.get(self.type, True)
        if not ok:
            kind = {bool: "a TOML boolean (true/false)", str: "a TOML string"}.get(self.type, "a TOML number")
            raise RecipeError(
                f"params.{self.key} = {value!r} is {_TOML_KINDS.get(type(value), 'a ' + type(value).__name__)}; "
                f"expected {kind}"
            )

    def describe(self) -> str:
        """Its meaning and the values it takes, for ``yolodbg recipes NAME``."""
        if self.choices:
            return f"{self.help} ({'|'.join(self.choices)})"
        if self.type in (int, float):
            return f"{self.help}; {self.allowed()}"
        return self.help


_TOML_KINDS = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}


def _parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _parse_int(text: Any) -> int:
    """A whole number: ``13`` or ``"13"``; ``13.5``, ``"1e3"``, booleans and NaN are refused."""
    if isinstance(text, (bool, float)):
        raise ValueError(text)
    return int(str(text).strip())


def _parse_float(text: Any) -> float:
    if isinstance(text, bool):
        raise ValueError(text)
    return float(str(text).strip()) if isinstance(text, str) else float(text)


class Recipe:
    """A loss to replay, as a template: the base class does what every recipe needs, a subclass
    declares what it is and computes its loss.

    A subclass declares ``name``, ``reproduces``, ``heads`` (the head families it accepts),
    ``terms`` and ``PARAMS``, and implements :meth:`replay`. The base class gives it parameters
    (checked when the recipe is built), the head check, the bundle parsed once per bundle by its
    head family's parser (:meth:`parse`, shared by :meth:`input_layout`, :meth:`run` and
    ``evaluate``), and the optional capabilities other commands read, each with a default here:
    :attr:`assigner_keys` (``compare``), :attr:`reduction` (``compare``'s why-table),
    :meth:`reachable` with its :attr:`recall_ceiling` name (the scan's recall ceiling) and
    :attr:`scores_are_head_sigmoid` (the inference decode for mAP).

    A recipe module imports no torch at import time: the catalogue (``yolodbg recipes``, ``-r``
    checks) is the classes alone, and :meth:`replay` imports the module that computes the loss
    when it runs. Instances are immutable: a variant is a new instance with other params.
    """

    name: ClassVar[str]
    reproduces: ClassVar[str]
    heads: ClassVar[tuple[str, ...]]  # the head families it replays (yolodbg.heads names)
    terms: ClassVar[tuple[str, ...]]
    PARAMS: ClassVar[tuple[Param, ...]]
    # the head as the refusal of another family's bundle names it, e.g. "Ultralytics' anchor-free head"
    head_description: ClassVar[str] = ""

    # -- optional capabilities (defaults; a recipe overrides what it knows better) --
    # parameters besides ``assigner.*`` that change the positives (compare tells assignment changes apart)
    assigner_keys: ClassVar[tuple[str, ...]] = ()
    # how the logged terms reduce the per-element values ("mean vs sum" in compare's why-table)
    reduction: ClassVar[str] = "see yolodbg recipes"
    # the name of the rule :meth:`reachable` applies, as the scan's JSON reports it (recall_ceiling.hook)
    recall_ceiling: ClassVar[str] = "reason_reachable"
    # the result's ``pred_scores`` are the head's own class probabilities, the sigmoid of its main
    # branch's logits as (B, N, nc) float32: the family's inference decode (mAP) may reuse them
    # instead of computing the sigmoid again, where it proves them equal bit for bit
    scores_are_head_sigmoid: ClassVar[bool] = False

    def __init__(self, params: dict[str, Any] | None = None, *, label: str | None = None):
        specs = {p.key: p for p in self.PARAMS}
        values = {p.key: p.default for p in self.PARAMS}
        for key, raw in (params or {}).items():
            if key not in specs:
                close = difflib.get_close_matches(key, list(specs), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise RecipeError(
                    f"recipe {self.name}: unknown parameter {key!r}{hint}; valid keys: {', '.join(specs)}"
                )
            values[key] = specs[key].parse(raw, self.name)
        self.params: dict[str, Any] = values
        self.label = label or self.name

    # -- the template: head check, parse once, layout, run --

    def check_head(self, bundle: Bundle) -> None:
        """Refuse a bundle of a head family this recipe does not replay (one line naming the fix)."""
        if bundle.head not in self.heads:
            what = self.head_description or f"a {' or '.join(self.heads)} head"
            raise RecipeError(
                f"recipe {self.name} replays {what}, but {bundle.source} holds a {bundle.head} head; "
                "pick a recipe for that head (yolodbg recipes)"
            )

    def parse(self, bundle: Bundle) -> Any:
        """The bundle's output as its head family parses it, checked for this recipe; computed once
        per bundle (:meth:`input_layout`, :meth:`run` and ``evaluate`` all read it)."""
        cache = self.__dict__.setdefault("_parsed", {})
        key = id(bundle)
        if key not in cache:
            self.check_head(bundle)
            out = bundle.family.parse(bundle)
            self.check_parsed(out, bundle)
            cache.clear()
            cache[key] = (bundle, out)  # keeps the bundle alive while cached, so its id is not reused
        return cache[key][1]

    def check_parsed(self, out: Any, bundle: Bundle) -> None:
        """Refuse a parsed output this recipe cannot replay (a RecipeError); by default accept it."""

    def input_layout(self, bundle: Bundle) -> tuple[tuple[int, int], int]:
        """``(input_size, nc)`` of a bundle as this recipe's head reads it (to build targets)."""
        out = self.parse(bundle)
        return out.input_size, out.nc

    def run(self, bundle: Bundle, targets: Targets) -> LossResult:
        """Replay the loss on one batch: the parsed bundle and the targets go to :meth:`replay`."""
        return self.replay(self.parse(bundle), bundle, targets)

    def replay(self, out: Any, bundle: Bundle, targets: Targets) -> LossResult:  # pragma: no cover - abstract
        """The loss on the parsed output ``out``: a :class:`~yolodbg.result.LossResult`."""
        raise NotImplementedError

    # -- capabilities with a default --

    def reachable(self, result: LossResult, targets: Targets, num_pos: Tensor) -> Tensor:
        """``(M,)`` bool: which GTs can get a positive at all under the assigner's geometric rules
        (the scan's recall ceiling). Default: out of reach only a GT with no positive whose reason
        code is geometric (:data:`GEOMETRIC_CODES`)."""
        import torch

        out = torch.ones(len(targets), dtype=torch.bool)
        for r, why in result.gt_reasons.items():
            if why.code in GEOMETRIC_CODES and int(num_pos[r]) == 0:
                out[r] = False
        return out

    # -- variants --

    def with_params(self, params: dict[str, Any], *, label: str | None = None) -> Recipe:
        """A variant: this recipe's changed parameters overridden by ``params`` (checked as ``-r`` values)."""
        return type(self)({**self.changed(), **params}, label=label or self.label)

    def changed(self) -> dict[str, Any]:
        """The parameters that differ from the defaults."""
        return {p.key: self.params[p.key] for p in self.PARAMS if self.params[p.key] != p.default}

    def spec(self) -> str:
        """The ``name:key=value`` text that rebuilds this recipe."""
        changed = self.changed()
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")


RECIPES: dict[
    str, type[Recipe]
] = {}  # name -> class, in registration order (`yolodbg recipes` lists them so)
ALIASES: dict[str, str] = {}  # other name -> recipe name


def register(cls: type[Recipe] | None = None, *, aliases: tuple[str, ...] = ()):
    """Class decorator: make a recipe known by its ``name`` (and ``aliases``) to ``-r``, ``yolodbg
    recipes`` and every command. Importing the module that defines the class registers it::

        @register(aliases=("yolo11",))
        class YoloV8(Recipe):
            name = "yolov8"
            ...
    """

    def add(recipe: type[Recipe]) -> type[Recipe]:
        for key in (recipe.name, *aliases):
            if key in RECIPES or key in ALIASES:
                raise ValueError(f"recipe name {key!r} is registered already")
        RECIPES[recipe.name] = recipe
        ALIASES.update(dict.fromkeys(aliases, recipe.name))
        return recipe

    return add(cls) if cls is not None else add


def unregister(name: str) -> None:
    """Forget a recipe and its aliases (for tests that register a toy recipe)."""
    RECIPES.pop(name, None)
    for alias in [a for a, target in ALIASES.items() if target == name]:
        del ALIASES[alias]


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"yolov8:box=giou,assigner.topk=13"`` -> ``("yolov8", {"box": "giou", "assigner.topk": "13"})``."""
    name, _, rest = spec.partition(":")
    params: dict[str, str] = {}
    if rest.strip():
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise RecipeError(
                    f"recipe {spec!r}: {item!r} is not key=value; write e.g. yolov8:assigner.topk=13"
                )
            if key.strip() in params:  # the second value would silently win
                raise RecipeError(
                    f"recipe {spec!r}: {key.strip()} is given twice ({params[key.strip()]!r} and {value.strip()!r}); "
                    "keep one"
                )
            params[key.strip()] = value.strip()
    return name.strip(), params
