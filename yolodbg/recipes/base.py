"""Recipe machinery: typed parameters, the ``name:key=value,...`` syntax, the base class."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from yolodbg.errors import RecipeError

if TYPE_CHECKING:
    from yolodbg.bundle import Bundle
    from yolodbg.groundtruth import Targets
    from yolodbg.result import LossResult


@dataclass(frozen=True)
class Param:
    """One recipe parameter: its dotted key, type, default, allowed values and meaning."""

    key: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None

    def parse(self, text: Any, recipe: str) -> Any:
        """Convert a value given as text (``-r``) or from TOML into this parameter's type."""
        where = f"recipe {recipe}: {self.key}"
        if text is None or (
            isinstance(text, str) and text.lower() in ("none", "auto") and self.default is None
        ):
            return None
        try:
            if self.type is bool:
                if isinstance(text, bool):
                    value = text
                elif str(text).lower() in ("1", "true", "yes", "on"):
                    value = True
                elif str(text).lower() in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise ValueError
            else:
                value = self.type(text)
        except (TypeError, ValueError):
            raise RecipeError(f"{where}={text!r} is not a valid {self.type.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise RecipeError(f"{where}={value!r}; expected one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise RecipeError(f"{where}={value!r}; must be ≥ {self.minimum:g}")
        return value


class Recipe:
    """A loss to replay: head decoder + assigner + terms + gains + normalisation.

    Subclasses declare ``name``, ``reproduces``, ``heads`` and ``PARAMS`` and implement
    :meth:`run`. Instances are immutable: a variant is a new instance with other params.
    """

    name: ClassVar[str]
    reproduces: ClassVar[str]
    heads: ClassVar[tuple[str, ...]]
    terms: ClassVar[tuple[str, ...]]
    PARAMS: ClassVar[tuple[Param, ...]]

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

    def parsed(self, bundle: Bundle, parse: Any) -> Any:
        """``parse(bundle)``, computed once per bundle (input_layout and run both need it)."""
        cache = self.__dict__.setdefault("_parsed", {})
        key = id(bundle.outputs)
        if key not in cache:
            cache.clear()
            cache[key] = (bundle.outputs, parse(bundle))  # keeps the outputs alive while cached
        return cache[key][1]

    def changed(self) -> dict[str, Any]:
        """The parameters that differ from the defaults."""
        return {p.key: self.params[p.key] for p in self.PARAMS if self.params[p.key] != p.default}

    def spec(self) -> str:
        """The ``name:key=value`` text that rebuilds this recipe."""
        changed = self.changed()
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")

    def run(self, bundle: Bundle, targets: Targets) -> LossResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def input_layout(self, bundle: Bundle) -> tuple[tuple[int, int], int]:  # pragma: no cover - abstract
        """``(input_size, nc)`` of a bundle as this recipe's head reads it (to build targets)."""
        raise NotImplementedError


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
            params[key.strip()] = value.strip()
    return name.strip(), params
