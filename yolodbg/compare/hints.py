"""Why two columns of a comparison differ: the gain that restores a swapped term, and the why-table.

Split from :mod:`yolodbg.compare` (which builds the columns); these read finished columns only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yolodbg.compare import Column, TermDelta
    from yolodbg.recipes.base import Recipe


@dataclass(frozen=True)
class MagnitudeHint:
    column: int
    term: str
    base_form: str
    form: str
    base_value: float
    value: float
    gain_key: str | None
    gain: float | None
    suggested: float | None  # the gain that gives back the baseline's value on these inputs


def form_label(recipe: Recipe, term: str) -> str:
    """``focal(gamma=1.5)``: a term's function with the modifiers set away from their defaults."""
    p = recipe.params
    mods = [
        f"{q.key[len(term) + 1 :]}={p[q.key]:g}"
        for q in recipe.PARAMS
        if q.key.startswith(term + ".") and p[q.key] is not None and p[q.key] != q.default
    ]
    return str(p[term]) + (f"({', '.join(mods)})" if mods else "")


def form_keys(recipe: Recipe, terms: list[str]) -> dict[str, str]:
    """Logged term -> the parameter that picks its function: a key named like the term (``box``, ``cls``), or
    ``box`` for the first term of recipes that log their box term under another name (YOLOX's ``iou``)."""
    out = {t: t for t in terms if isinstance(recipe.params.get(t), str)}
    if "box" not in terms and isinstance(recipe.params.get("box"), str) and terms:
        out.setdefault(terms[0], "box")
    return out


def magnitude_hints(cols: list[Column], deltas: list[dict[str, TermDelta]]) -> list[MagnitudeHint]:
    """Per swapped term function: the gain that gives the baseline's value back on these inputs."""
    base = cols[0].recipe
    out = []
    for i, col in enumerate(cols[1:], 1):
        r = col.recipe
        if type(r) is not type(base) or col.bundle is not cols[0].bundle:
            continue
        for t, key in form_keys(r, list(cols[0].explanation.result.terms)).items():
            before, after = form_label(base, key), form_label(r, key)
            if before == after:
                continue
            d = deltas[i][t]
            gain_key = f"gain.{t}" if f"gain.{t}" in r.params else None
            gain = r.params[gain_key] if gain_key else None
            ok = gain is not None and d.value and d.base is not None and math.isfinite(d.value)
            suggested = gain * d.base / d.value if ok else None
            out.append(MagnitudeHint(i, t, before, after, d.base, d.value, gain_key, gain, suggested))
    return out


def _ratio_text(objective: float, total: float, batch: int) -> str:
    if total == 0:
        return "—"
    ratio = objective / total
    if math.isclose(ratio, batch, rel_tol=1e-5):
        return f"× batch size {batch}"
    if math.isclose(ratio, 1.0, rel_tol=1e-5):
        return "none (objective = total)"
    return f"objective = {ratio:.4g} × total"


def why_rows(cols: list[Column]) -> list[tuple[str, list[str]]]:
    """What makes the columns' numbers differ besides the predictions: normaliser, gains, reduction, batch factor."""
    rows: dict[str, list[str]] = {
        "recipe": [],
        "normaliser": [],
        "gains": [],
        "mean vs sum": [],
        "batch multiply": [],
    }
    for c in cols:
        res, r = c.explanation.result, c.recipe
        rows["recipe"].append(r.spec())
        rows["normaliser"].append(", ".join(f"{k}={v:.6g}" for k, v in res.normalizers.items()) or "—")
        gains = {k[5:]: v for k, v in r.params.items() if k.startswith("gain.") and isinstance(v, float)}
        rows["gains"].append(" · ".join(f"{k} {v:g}" for k, v in gains.items()) or "—")
        rows["mean vs sum"].append(r.reduction)
        rows["batch multiply"].append(
            _ratio_text(res.objective, c.explanation.breakdown.total, res.batch_size)
        )
    return list(rows.items())
