"""When a ``trend`` series is ``improving``, on a ``plateau`` or ``diverging``: the thresholds and the rule.

One home for the numbers, read by the rule below, by ``yolodbg trend --help`` (:func:`rule_text`)
and quoted in docs/scan.md, so help, code and docs cannot disagree. Pure Python: the help imports
it without loading torch. Losses compare relatively (their scale varies by recipe and dataset); AP
absolutely, in AP points (a relative rule would call a drop from 0.02 to 0.017 "diverging").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PLATEAU_REL = 0.01  # a loss improved by less than 1 % of its value over the window: plateau
PLATEAU_AP = 0.005  # AP gained less than 0.005 over the window: plateau
DIVERGE_REL = 0.10  # a loss is more than 10 % above its best: diverging
DIVERGE_AP = 0.01  # AP is more than 0.01 below its best: diverging
WINDOW = 3


def rule_text() -> str:
    """The rule in words, with the thresholds above (for ``--help`` and the docs)."""
    return (
        f'A series is "diverging" when its last value is worse than its best by more than '
        f"{DIVERGE_REL:.0%} for a loss ({DIVERGE_AP:g} absolute for AP) and worse than one step or "
        f'--window steps before; "plateau" when it improved by less than {PLATEAU_REL:.0%} for a loss '
        f"({PLATEAU_AP:g} absolute for AP) over the last --window checkpoints."
    )


def status(values: Sequence[float | None], higher_is_better: bool = False, window: int = WINDOW) -> str:
    """``improving``, ``plateau``, ``diverging`` or ``too_short`` (see :func:`rule_text`).

    >>> status([4.0, 3.0, 2.0, 1.0]), status([4.0, 2.0, 2.0, 2.0, 2.0]), status([3.0, 1.0, 1.5])
    ('improving', 'plateau', 'diverging')
    """
    given = [x for x in values if x is not None]
    if given and not math.isfinite(given[-1]):
        return "diverging"  # the last checkpoint's value is inf or NaN
    v = [x for x in given if math.isfinite(x)]
    if len(v) < 2:
        return "too_short"
    sign = -1.0 if higher_is_better else 1.0
    loss = [sign * x for x in v]  # lower is better from here on
    best = min(loss)
    start = loss[max(0, len(loss) - window - 1)]
    worse = loss[-1] > loss[-2] or loss[-1] > start
    tol = DIVERGE_AP if higher_is_better else DIVERGE_REL * max(abs(best), 1e-12)
    if worse and loss[-1] - best > tol:
        return "diverging"
    if len(v) < window + 1:
        return "too_short"
    gain = start - loss[-1]
    tol = PLATEAU_AP if higher_is_better else PLATEAU_REL * max(abs(start), 1e-12)
    return "plateau" if gain < tol else "improving"
