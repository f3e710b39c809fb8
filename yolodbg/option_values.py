"""Number-valued command-line options, checked where they are parsed.

Python's ``float`` accepts ``nan``, ``inf`` and ``1e999`` and ``int(float(...))`` silently
truncates ``640.5``; each of these would reach the loss as a wrong or non-finite number (or as
an internal error). These parsers refuse them with a message naming the option, the value
and what is allowed, as ``click.BadParameter`` (exit 2, one line).
"""

from __future__ import annotations

import math

import click

MAX_PIXELS = 65536  # largest input side or stride accepted: far above any detector's input


def _number(word: str, text: str, option: str) -> float:
    try:
        value = float(word)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of numbers", param_hint=option
        ) from None
    if not math.isfinite(value):
        raise click.BadParameter(f"{text!r}: {word.strip()} is not a finite number", param_hint=option)
    return value


def number_list(text: str | None, option: str, *, whole: bool = False) -> tuple[float, ...] | None:
    """``"8,16,32"`` (or ``"384x640"``) -> finite numbers in ``(0, MAX_PIXELS]``; whole numbers if ``whole``."""
    if text is None:
        return None
    words = [w for w in text.replace("x", ",").split(",") if w.strip()]
    values = tuple(_number(w, text, option) for w in words)
    kind = "whole numbers" if whole else "numbers"
    if not values or any(not 0 < v <= MAX_PIXELS for v in values):
        raise click.BadParameter(f"{text!r}: expected positive {kind} up to {MAX_PIXELS}", param_hint=option)
    if whole and any(v != int(v) for v in values):
        raise click.BadParameter(f"{text!r}: expected whole numbers of pixels", param_hint=option)
    return values


def imgsz(text: str | None, option: str = "--imgsz") -> tuple[int, int] | None:
    """``"640"`` -> ``(640, 640)``, ``"384,640"`` -> ``(384, 640)``: whole pixels in ``[1, MAX_PIXELS]``."""
    values = number_list(text, option, whole=True)
    if values is None:
        return None
    if len(values) == 1:
        return (int(values[0]), int(values[0]))
    if len(values) == 2:
        return (int(values[0]), int(values[1]))
    raise click.BadParameter(f"{text!r}: give one size or 'H,W'", param_hint=option)


class FiniteFloat(click.ParamType):
    """A float option that refuses NaN and ±inf (``click.FloatRange`` lets NaN through every bound)."""

    name = "float"

    def __init__(self, minimum: float | None = None, maximum: float | None = None):
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            self.fail(f"{value!r} is out of range; expected {self._range()}", param, ctx)
        return number

    def _range(self) -> str:
        if self.maximum is None:
            return f"a finite number ≥ {self.minimum:g}"
        if self.minimum is None:
            return f"a finite number ≤ {self.maximum:g}"
        return f"a finite number in [{self.minimum:g}, {self.maximum:g}]"

    def __repr__(self) -> str:
        return f"FiniteFloat({self.minimum}, {self.maximum})"
