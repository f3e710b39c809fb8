"""Near-ties: discrete results whose winner the last bits of a float decide.

The golden fixtures were computed on one CPU; the test may run on another whose kernels (AVX512, AVX2,
the scalar fallback) round reductions differently. Continuous numbers then differ in the last digits and
are compared with tolerances. A discrete choice (top-k membership, an argmax over GTs) stays the same
unless two of the values it chooses between are closer than that rounding: then either outcome is what
the framework itself would print on some machine. These helpers decide whether a discrete difference is
such a near-tie, from the replay's own intermediates (yolodbg's assignment on this machine), so that the
harness reports it instead of failing -- and still fails on every difference that is not one.

Only torch is imported.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

# Two values closer than this (relative) can swap order between CPU kernels. The alignment metric
# s^alpha * CIoU^6 amplifies the CIoU's rounding six-fold; across AVX512 / AVX2 / scalar kernels the
# soft targets built from it were seen to move by up to 4e-6 relative, so 1e-5 covers them with margin.
TIE_RTOL = 1e-5


class NearTieWarning(UserWarning):
    """A discrete golden result differs, but only where a near-tie lets rounding pick the winner."""


@dataclass
class Comparison:
    """What a golden comparison found: failures, and differences explained by near-ties (reported)."""

    problems: list[str] = field(default_factory=list)
    ties: list[str] = field(default_factory=list)

    def warn(self, where: str) -> None:
        for t in self.ties:
            warnings.warn(NearTieWarning(f"{where}: {t}"), stacklevel=3)


def near(a: float, b: float, rtol: float = TIE_RTOL) -> bool:
    """``a`` and ``b`` are within ``rtol`` of each other (relative to the larger); equal values are near."""
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def topk_boundary_tie(values: torch.Tensor, k: int, index: int, rtol: float = TIE_RTOL) -> bool:
    """Whether ``values[index]``'s membership in the ``k`` largest of ``values`` (1-D) can flip by rounding.

    It can when the value sits at the boundary: a member within ``rtol`` of the best non-member, or a
    non-member within ``rtol`` of the smallest member (ties among equal values included).
    """
    n = values.numel()
    if k >= n:
        return False  # everyone is selected whatever the rounding
    top = torch.topk(values.double(), k + 1).values
    kth, nxt = float(top[k - 1]), float(top[k])
    v = float(values[index])
    return near(v, nxt, rtol) if v >= kth else near(v, kth, rtol)


def argmax_tie(values: torch.Tensor, a: int, b: int, rtol: float = TIE_RTOL) -> bool:
    """Whether ``a`` and ``b`` both reach the maximum of ``values`` (1-D) up to ``rtol``: rounding picks one."""
    best = float(values.max())
    return near(float(values[a]), best, rtol) and near(float(values[b]), best, rtol)


@contextmanager
def capture(module, name: str, with_args: bool = False) -> Iterator[list]:
    """Record the return values of ``module.name`` while the block runs (then restore it); with
    ``with_args`` each entry is ``(return value, args, kwargs)``."""
    original = getattr(module, name)
    seen: list = []

    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append((out, args, kwargs) if with_args else out)
        return out

    setattr(module, name, wrapper)
    try:
        yield seen
    finally:
        setattr(module, name, original)


def tal_explains(
    assignment, topk: int, topk2: int | None = None
) -> Callable[[int, int, int, int], str | None]:
    """For a task-aligned assignment (yolodbg's ``TalAssignment``, GT slot = index among the image's GTs):
    a function ``(image, anchor, got_gt, want_gt) -> reason or None`` (gt -1 = background) that names the
    near-tie which lets rounding decide between the two outcomes, or None when there is none.

    The discrete steps of TAL and their ties: membership of the GT's top-k by alignment metric (step C),
    the GT of largest CIoU for an anchor several GTs selected (step D), and the optional second top-k
    among a GT's positives (step E, end-to-end one-to-one).
    """
    metric, overlaps, selected = assignment.align_metric, assignment.overlaps, assignment.selected
    if metric.shape[1] == 0:  # no GT slots: nothing to choose between
        return lambda b, n, got, want: None
    multi = selected.sum(1) > 1  # (B, N)
    pre_e = torch.where(  # positives after step D, before step E
        multi.unsqueeze(1),
        torch.zeros_like(selected).scatter_(1, overlaps.max(1).indices.unsqueeze(1), True),
        selected,
    )

    def explain(b: int, n: int, got: int, want: int) -> str | None:
        for m in dict.fromkeys(g for g in (got, want) if g >= 0):
            if m >= metric.shape[1]:
                continue
            if topk_boundary_tie(metric[b, m], topk, n):
                return f"alignment metric of GT {m} at its top-{topk} boundary"
            if topk2 and topk2 != topk and topk_boundary_tie(metric[b, m] * pre_e[b, m], topk2, n):
                return f"alignment metric of GT {m} at its top-{topk2} boundary among its positives"
        if got >= 0 and want >= 0 and got != want and argmax_tie(overlaps[b, :, n], got, want):
            return f"CIoU with GT {got} and GT {want} equal up to rounding (the larger wins the anchor)"
        return None

    return explain
