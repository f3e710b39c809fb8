"""The skeleton every golden parity harness shares, so each framework's module keeps only its own parts.

A golden harness loads a fixture file written by a generator (``make_golden*.py``) from the real framework,
rebuilds each case's inputs, replays them with yolodbg and lists every difference from the stored
numbers: continuous ones within a tolerance, discrete ones exactly except where a near-tie of yolodbg's
own assignment lets the CPU's rounding choose (``ties.py``). A failure names the case, what it expected
and where the fixture was made against where the test runs (``provenance.py``).

What is shared lives here: composing scenes and turning their boxes into batch targets, reading a fixture and its cases, relative-tolerance comparison of numbers and
of named loss terms, the per-anchor difference of two assignments with near-tie explanations, labels of
anchors, failure messages with provenance, and the consistency checks every fixture file gets. What
differs stays in the framework's case module: the input forms, which quantities are compared, the
tolerances' values and reasons, and which tie rules apply.

This folder is a plain folder of modules, not a package: the generators and the tests put it on
``sys.path`` and import the modules by name. Only torch and the standard library are imported, so the
generators run it in an environment without yolodbg, and the tests without the frameworks.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import provenance as _provenance
import torch

GOLDEN_DIR = Path(__file__).resolve().parent

# A near-tie explainer: ``(image, anchor, got_gt, want_gt) -> reason or None`` (see ``ties.tal_explains``).
Explain = Callable[[int, int, int, int], "str | None"]


def sibling(name: str) -> ModuleType:
    """Another module of this folder by its name (``"ties"``); the folder is on ``sys.path``."""
    return importlib.import_module(name)


# ------------------------------------------------------------------------------------------------ scenes

Box = tuple[int, float, float, float, float]  # cls, x1, y1, x2, y2 in input pixels
SceneFn = Callable[..., list[Box]]  # (rng, H, W, nc[, n]) -> boxes


def clip_box(c: int, x1: float, y1: float, x2: float, y2: float, H: int, W: int) -> Box:
    """The box cut to the image (a box outside it collapses onto the border)."""
    x1, y1 = min(max(0.0, x1), float(W)), min(max(0.0, y1), float(H))
    x2, y2 = max(min(float(W), x2), x1), max(min(float(H), y2), y1)
    return (c, x1, y1, x2, y2)


def compose_scene(spec: str, scenes: Mapping[str, SceneFn], rng, H: int, W: int, nc: int) -> list[Box]:
    """The boxes of one image: ``spec`` is ``""`` (no boxes) or names of ``scenes`` joined by ``+``;
    ``name:n`` passes a count. Pure Python (``random.Random``), stable across torch versions."""
    boxes: list[Box] = []
    for part in filter(None, spec.split("+")):
        name, _, n = part.partition(":")
        fn = scenes[name]
        boxes += fn(rng, H, W, nc, int(n)) if n else fn(rng, H, W, nc)
    return boxes


def targets_from_boxes(per_image: list[list[Box]], H: int, W: int, cls_1d: bool = False) -> dict:
    """Batch form of the boxes: rows grouped by image in ascending order, normalised cx, cy, w, h computed
    in float64 and stored float32 like the frameworks' collate; ``cls`` as (M,) with ``cls_1d``, else (M, 1)."""
    rows = []
    for b, boxes in enumerate(per_image):
        for c, x1, y1, x2, y2 in boxes:
            rows.append(
                [float(b), float(c), (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H]
            )
    t = torch.tensor(rows, dtype=torch.float64).view(-1, 6).float()
    cls = t[:, 1].clone() if cls_1d else t[:, 1:2].clone()
    return {"batch_idx": t[:, 0].clone(), "cls": cls, "bboxes": t[:, 2:6].clone()}


# ------------------------------------------------------------------------------------------ fixture files


def load_fixture(path, fmt: str | None = None) -> dict:
    """A fixture file as plain tensors (``weights_only``), refusing another format than ``fmt`` when given."""
    data = torch.load(path, weights_only=True, map_location="cpu")
    if fmt is not None and data.get("format") != fmt:
        raise ValueError(f"{path}: format {data.get('format')!r}, expected {fmt!r}")
    return data


def cases_by_name(data: dict) -> dict[str, dict]:
    """The fixture's cases by name; a fixture without cases or with a repeated name is refused, so that a
    test parametrised over them can never pass by checking nothing."""
    cases = {c["name"]: c for c in data["cases"]}
    if not cases:
        raise ValueError("the fixture holds no cases")
    if len(cases) != len(data["cases"]):
        raise ValueError("duplicate case names in the fixture")
    return cases


def machine_of(data: dict) -> dict:
    """Where the fixture's numbers were made: its ``versions`` record, or the document itself (yolo26)."""
    return data.get("versions", data)


def provenance(data: dict) -> str:
    """Torch version and CPU capability of the fixture and of this run, for failure messages."""
    return _provenance.describe(machine_of(data))


def check_fixture_file(path: Path, data: dict, max_bytes: int, **versions: str) -> None:
    """What every fixture file must hold: the framework versions it was made for (``versions``), the
    machine it was made on, and a size that keeps ``tests/golden/`` small (under 3 MB for all of them)."""
    meta = machine_of(data)
    for key, want in versions.items():
        assert meta.get(key) == want, f"{Path(path).name}: {key} {meta.get(key)!r}, expected {want!r}"
    assert meta.get("cpu_capability") and meta.get("torch"), f"{Path(path).name}: machine not recorded"
    size = Path(path).stat().st_size
    assert size < max_bytes, f"{Path(path).name} is {size} bytes (limit {max_bytes})"


def failure_message(name: str, context: str, problems: Iterable[str], data: dict) -> str:
    """One case's failure: its name, ``context`` (inputs, parameters, expected summary), the provenance of
    fixture and machine, then one line per difference."""
    return f"{name} ({context}; {provenance(data)}):\n  " + "\n  ".join(problems)


def assert_no_problems(name: str, context: str, problems: list[str], data: dict) -> None:
    """The generic end of every golden case: no difference, or a failure naming case, fixture and machine."""
    assert not problems, failure_message(name, context, problems, data)


# ------------------------------------------------------------------------------------------------ numbers


def rel_err(got: float, want: float, floor: float = 1e-6) -> float:
    """Relative error of ``got`` against ``want``; ``floor`` keeps an expectation near 0 from dividing by 0."""
    return abs(got - want) / max(abs(want), floor)


def rel_close(got: float, want: float, rtol: float = 1e-5, floor: float = 1e-6) -> bool:
    """``got`` within ``rtol`` of ``want`` relative to ``max(|want|, floor)``."""
    return abs(got - want) <= rtol * max(abs(want), floor)


def rel_close_no_floor(got: float, want: float, rtol: float = 1e-5) -> bool:
    """``got`` within ``rtol`` of ``want`` relative to ``|want|`` itself; an expected 0 admits only
    ``|got| <= 1e-12`` (a term that must vanish, such as an image set without GT)."""
    if want == 0.0:
        return abs(got) <= 1e-12
    return abs(got - want) <= rtol * abs(want)


def term_differences(
    got: Mapping[str, float],
    want: Mapping[str, float],
    rtol: float,
    close: Callable[[float, float, float], bool] = rel_close,
    label: Callable[[str], str] = lambda k: f"term {k}",
) -> tuple[list[str], list[str]]:
    """(missing, off): lines for the expected terms yolodbg does not report, and for those beyond ``rtol``
    by ``close``. Kept apart because a near-tie can explain an off term, never a missing one."""
    missing, off = [], []
    for k, w in want.items():
        g = got.get(k)
        if g is None:
            missing.append(f"term {k!r} missing (have {sorted(got)})")
        elif not close(float(g), w, rtol):
            off.append(f"{label(k)}: got {float(g)!r} want {w!r} (rel {rel_err(float(g), w):.3g})")
    return missing, off


# ------------------------------------------------------------------------------------ anchors and matches


def anchor_label(flat: int, shapes: Iterable[tuple[int, int]], strides: Iterable[int]) -> str:
    """``a<flat>(P<level> y= x= centre=(..)px)`` of a flat anchor index over levels of ``shapes``."""
    start = 0
    for (h, w), s in zip(shapes, strides, strict=True):
        if flat < start + h * w:
            y, x = divmod(flat - start, w)
            return f"a{flat}(P{int(math.log2(s))} y={y} x={x} centre=({(x + 0.5) * s:g},{(y + 0.5) * s:g})px)"
        start += h * w
    return f"a{flat}(?)"


@dataclass(frozen=True)
class AnchorDiff:
    """One anchor whose assigned GT (-1: background) differs from the fixture's, and the near-tie that
    explains it (None: unexplained, a failure)."""

    image: int
    anchor: int
    got: int
    want: int
    tie: str | None


def assignment_differences(
    got: torch.Tensor, want: torch.Tensor, explain: Explain | None
) -> list[AnchorDiff]:
    """Every anchor where two (B, N) GT-per-anchor maps (-1 on background) differ, each with the near-tie
    ``explain`` finds for it; without ``explain`` none is explained."""
    out = []
    for b, a in (got != want).nonzero().tolist():
        g, w = int(got[b, a]), int(want[b, a])
        out.append(AnchorDiff(b, a, g, w, explain(b, a, g, w) if explain is not None else None))
    return out
