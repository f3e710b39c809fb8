"""The anchor table: where every prediction slot of a head sits (level, cell, stride, slot)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Anchors:
    """Per-anchor geometry, in the framework's anchor order (levels in stride order, row-major cells).

    ``slot`` is the anchor index inside a cell (0 for anchor-free heads; 0..na-1 for YOLOv5).
    """

    points: Tensor  # (N, 2) anchor centre in input pixels
    stride: Tensor  # (N,) stride of the anchor's level
    level: Tensor  # (N,) long, 0 = finest level
    cell: Tensor  # (N, 2) long, (x, y) cell on its level
    slot: Tensor  # (N,) long
    level_shapes: tuple[tuple[int, int], ...]  # (h, w) of each level
    strides: tuple[float, ...]

    def __len__(self) -> int:
        return int(self.level.shape[0])

    def describe(self, a: int) -> dict[str, object]:
        """A JSON-ready description of anchor ``a``."""
        level, stride, cell, slot = self._lists()
        return {
            "anchor": int(a),
            "level": level[a],
            "stride": stride[a],
            "cell": list(cell[a]),
            "slot": slot[a],
        }

    def _lists(self) -> tuple[list, list, list, list]:
        """Python lists of the table (built once; describing anchors one by one is then cheap)."""
        cached = self.__dict__.get("_as_lists")
        if cached is None:
            cached = (self.level.tolist(), self.stride.tolist(), self.cell.tolist(), self.slot.tolist())
            object.__setattr__(self, "_as_lists", cached)
        return cached

    @classmethod
    def grid(
        cls, level_shapes: tuple[tuple[int, int], ...], strides: tuple[float, ...], slots: int = 1
    ) -> Anchors:
        """Anchor table of a grid head: per level, ``slots`` anchors per cell (slot-major, as YOLOv5 views them).

        Tables are shared between calls with the same geometry (a scan builds one per bundle, and
        the Python lists behind :meth:`describe` cost more than the replay's small ops): treat
        their tensors as read-only.
        """
        return _grid(cls, tuple(tuple(hw) for hw in level_shapes), tuple(strides), slots)


@functools.lru_cache(maxsize=16)
def _grid(
    cls: type[Anchors], level_shapes: tuple[tuple[int, int], ...], strides: tuple[float, ...], slots: int
) -> Anchors:
    points, stride, level, cell, slot = [], [], [], [], []
    for i, ((h, w), s) in enumerate(zip(level_shapes, strides, strict=True)):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        xy = torch.stack((xs.reshape(-1), ys.reshape(-1)), -1)
        for k in range(slots):
            cell.append(xy)
            points.append((xy.to(torch.float32) + 0.5) * s)
            stride.append(torch.full((h * w,), float(s)))
            level.append(torch.full((h * w,), i, dtype=torch.long))
            slot.append(torch.full((h * w,), k, dtype=torch.long))
    return cls(
        torch.cat(points),
        torch.cat(stride),
        torch.cat(level),
        torch.cat(cell),
        torch.cat(slot),
        tuple(level_shapes),
        tuple(strides),
    )


def level_map_shapes(maps: object) -> tuple[tuple[int, int], ...] | None:
    """``(H, W)`` of every level of per-level ``(B, C, H, W)`` maps; None unless ``maps`` is a non-empty
    list or tuple of 4-D tensors (how head families recognise that form and read its grid)."""
    if not isinstance(maps, (list, tuple)) or not maps:
        return None
    if not all(isinstance(t, Tensor) and t.ndim == 4 for t in maps):
        return None
    return tuple((int(t.shape[2]), int(t.shape[3])) for t in maps)
