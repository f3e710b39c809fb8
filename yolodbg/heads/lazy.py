"""Report-only values computed when they are used: a per-anchor ``(B, N, C)`` tensor and a mapping.

A report needs the decoded box and scores of a handful of anchors (the top background
offenders), while computing them for every anchor of a 640-pixel batch costs several times
the loss itself and hundreds of megabytes. :class:`LazyAnchorTensor` answers ``x[b, a]`` with
integer ``b, a`` from that anchor alone and turns into the full tensor (computed once, cached)
for anything else: other indexing, tensor methods and attributes, ``torch`` functions and
arithmetic all see the materialised tensor.

>>> lazy = LazyAnchorTensor((2, 3, 1), lambda b, a: torch.tensor([10.0 * b + a]),
...                         lambda: torch.arange(6.0).view(2, 3, 1) + torch.tensor([[[0.0]], [[7.0]]]))
>>> lazy[1, 2].tolist(), lazy.is_materialized
([12.0], False)
>>> float(lazy.sum()), lazy.is_materialized
(36.0, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor

K = TypeVar("K")
V = TypeVar("V")


class LazyMapping(Mapping[K, V]):
    """A read-only mapping built by ``build()`` on first access (then cached), e.g. per-GT reasons.

    >>> m = LazyMapping(lambda: {1: "a"})
    >>> m.is_built, m.get(1), dict(m), m.is_built
    (False, 'a', {1: 'a'}, True)
    """

    def __init__(self, build: Callable[[], dict[K, V]]) -> None:
        self._build = build
        self._data: dict[K, V] | None = None

    @property
    def is_built(self) -> bool:
        return self._data is not None

    def _get(self) -> dict[K, V]:
        if self._data is None:
            self._data = self._build()
        return self._data

    def __getitem__(self, key: K) -> V:
        return self._get()[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return f"LazyMapping({self._get()!r})"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) or (isinstance(x, Tensor) and x.ndim == 0 and not x.is_floating_point())


def _is_ints(x: Any) -> bool:
    return isinstance(x, Tensor) and x.ndim == 1 and not x.is_floating_point() and x.dtype != torch.bool


class LazyAnchorTensor:
    """``(B, N, C)`` values: ``row(b, a) -> (C,)`` for one anchor, ``full() -> (B, N, C)`` for all.

    ``rows(b, a) -> (K, C)``, if given, answers index vectors ``x[b, a]`` (1-D integer tensors) in
    one call, and single anchors through it when ``row`` is None.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        row: Callable[[int, int], Tensor] | None,
        full: Callable[[], Tensor],
        rows: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        if row is None:
            if rows is None:
                raise TypeError("LazyAnchorTensor needs row or rows")
            row = lambda b, a: rows(torch.tensor([b]), torch.tensor([a]))[0]  # noqa: E731
        self._shape = torch.Size(shape)
        self._row = row
        self._rows = rows
        self._full_fn = full
        self._full: Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        return self._shape

    @property
    def is_materialized(self) -> bool:
        return self._full is not None

    def materialize(self) -> Tensor:
        """The full tensor (computed on first use, then cached)."""
        if self._full is None:
            self._full = self._full_fn()
        return self._full

    def size(self, dim: int | None = None) -> Any:
        return self._shape if dim is None else self._shape[dim]

    def dim(self) -> int:
        return 3

    ndim = property(dim)

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, index: Any) -> Tensor:
        if (
            self._full is None
            and isinstance(index, tuple)
            and len(index) >= 2
            and all(map(_is_int, index[:2]))
        ):
            b, a = int(index[0]), int(index[1])
            b, a = b % self._shape[0] if b < 0 else b, a % self._shape[1] if a < 0 else a
            if not (0 <= b < self._shape[0] and 0 <= a < self._shape[1]):
                raise IndexError(f"anchor ({b}, {a}) out of range for shape {tuple(self._shape)}")
            row = self._row(b, a)
            return row[index[2:]] if len(index) > 2 else row
        if self._full is None and isinstance(index, tuple) and len(index) == 2 and all(map(_is_ints, index)):
            if self._rows is not None:
                return self._rows(index[0], index[1])
            # a few anchors by index vectors: their rows, not the whole tensor
            rows = [self[int(b), int(a)] for b, a in zip(index[0].tolist(), index[1].tolist(), strict=True)]
            return torch.stack(rows) if rows else torch.zeros(0, self._shape[2])
        return self.materialize()[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)

    def __repr__(self) -> str:
        state = "materialised" if self._full is not None else "lazy"
        return f"LazyAnchorTensor(shape={tuple(self._shape)}, {state})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def real(x: Any) -> Any:
            if isinstance(x, LazyAnchorTensor):
                return x.materialize()
            if isinstance(x, (list, tuple)):
                return type(x)(real(v) for v in x)
            return x

        return func(*real(tuple(args)), **{k: real(v) for k, v in (kwargs or {}).items()})


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: LazyAnchorTensor, *args: Any) -> Any:
        return getattr(self.materialize(), name)(*args)

    method.__name__ = name
    return method


for _name in (
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
    "__neg__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__invert__", "__iter__",
    "__array__", "__bool__", "__float__",
):  # fmt: skip
    setattr(LazyAnchorTensor, _name, _delegate(_name))
