"""Where command-line options meet a bundle: fill what it lacks, refuse what contradicts it.

``--imgsz``, ``--strides``, ``--nc`` and ``--image-ids`` exist for bare head outputs, which
record none of these. On a bundle that does record them an option used to win silently, so
``--imgsz 640`` on a 320 bundle replayed another loss and ``--image-ids`` paired predictions with
other images' ground truth. Every command loads bundles through :func:`yolodbg.bundle.from_object`,
which calls :func:`reconcile` here: one place decides, for every command.

Rules:

* an option equal to what the bundle records, or filling what it lacks, is used;
* an option that differs from a recorded value (``input_size``, ``strides``,
  ``images[i].image_id``) is refused, naming both values, the file and the fix;
* ``--imgsz``/``--strides`` must fit the feature-map sizes: at every level
  ``cells ≈ size / stride`` (floor or ceil, as a stride-2 backbone rounds). Without strides
  from the bundle or ``--strides``, the default strides of that many levels must fit ``--imgsz``
  (inferring other strides from a mistyped size is how a 320 bundle became a "640" one);
* ``--nc`` is checked against the shapes by each head's parser (all of them refuse a mismatch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yolodbg import heads
from yolodbg.errors import BundleError

DEFAULT_STRIDES = {1: (8.0,), 2: (8.0, 16.0), 3: (8.0, 16.0, 32.0), 4: (8.0, 16.0, 32.0, 64.0)}


@dataclass(frozen=True)
class Resolved:
    """Input size and strides after options and recorded values were reconciled."""

    input_size: tuple[int, int] | None
    strides: tuple[float, ...] | None


def _fmt_size(size: Sequence[int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def _opt_size(size: Sequence[int]) -> str:
    """How to spell a size as an --imgsz value."""
    return str(int(size[0])) if size[0] == size[1] else f"{int(size[0])},{int(size[1])}"


def _fmt_strides(strides: Sequence[float]) -> str:
    return ",".join(f"{float(s):g}" for s in strides)


def reconcile(
    *,
    head: str,
    outputs: Any,
    source: str,
    recorded_size: tuple[int, int] | None,
    recorded_strides: tuple[float, ...] | None,
    option_size: tuple[int, int] | None,
    option_strides: tuple[float, ...] | None,
) -> Resolved:
    """The input size and strides to use; :class:`BundleError` when an option contradicts the bundle."""
    if option_size is not None and recorded_size is not None and tuple(option_size) != tuple(recorded_size):
        raise BundleError(
            f"--imgsz {_fmt_size(option_size)} disagrees with input_size {_fmt_size(recorded_size)} recorded in "
            f"{source}; drop --imgsz (the bundle knows its input size) or pass --imgsz {_opt_size(recorded_size)}"
        )
    if (
        option_strides is not None
        and recorded_strides is not None
        and tuple(float(s) for s in option_strides) != tuple(float(s) for s in recorded_strides)
    ):
        raise BundleError(
            f"--strides {_fmt_strides(option_strides)} disagrees with strides {_fmt_strides(recorded_strides)} "
            f"recorded in {source}; drop --strides or pass --strides {_fmt_strides(recorded_strides)}"
        )
    size = option_size if option_size is not None else recorded_size
    strides = option_strides if option_strides is not None else recorded_strides
    if option_size is not None or option_strides is not None:
        _check_fit(head, outputs, source, size, strides, option_size is not None, option_strides is not None)
    return Resolved(size, strides)


def check_image_ids(option_ids: Sequence[str] | None, raw_images: Any, source: str) -> None:
    """``--image-ids`` must agree with every ``images[i].image_id`` the bundle records (as text)."""
    if option_ids is None or not isinstance(raw_images, list):
        return
    for i, (given, entry) in enumerate(zip(option_ids, raw_images, strict=False)):
        recorded = entry.get("image_id") if isinstance(entry, dict) else None
        if recorded is not None and str(given) != str(recorded):
            ids = ",".join(
                str(e.get("image_id")) if isinstance(e, dict) and e.get("image_id") is not None else "?"
                for e in raw_images
            )
            raise BundleError(
                f"--image-ids gives {given} for batch element {i} but {source} records image_id {recorded}; "
                f"drop --image-ids (the bundle knows its images) or pass --image-ids {ids}"
            )


def level_shapes(head: str, outputs: Any) -> tuple[tuple[int, int], ...] | None:
    """``(H, W)`` of every feature level of a raw output, or None where the head has no strided levels
    (YOLOv1) or the output is malformed (the head's parser reports that with its own message)."""
    return heads.family(head).shapes(outputs)


def _fits(size: tuple[int, int], shape: tuple[int, int], stride: float) -> bool:
    """A level of ``shape`` cells can come from ``size`` pixels at ``stride`` (floor or ceil of the division)."""
    return all(math.floor(n / stride) <= m <= math.ceil(n / stride) for n, m in zip(size, shape, strict=True))


def _check_fit(
    head: str,
    outputs: Any,
    source: str,
    size: tuple[int, int] | None,
    strides: tuple[float, ...] | None,
    size_from_option: bool,
    strides_from_option: bool,
) -> None:
    shapes = level_shapes(head, outputs)
    if shapes is None or size is None:
        return
    maps = ", ".join(_fmt_size(s) for s in shapes)
    if strides is None:
        strides = DEFAULT_STRIDES.get(len(shapes))
        if strides is None or not size_from_option:
            return
        if not all(_fits(size, hw, s) for hw, s in zip(shapes, strides, strict=True)):
            derived = (int(shapes[0][0] * strides[0]), int(shapes[0][1] * strides[0]))
            raise BundleError(
                f"--imgsz {_fmt_size(size)} disagrees with {source}: its feature maps {maps} at the default "
                f"strides {_fmt_strides(strides)} come from a {_fmt_size(derived)} input; pass --imgsz "
                f"{_opt_size(derived)}, or --strides too if the model really has other strides"
            )
        return
    if len(strides) != len(shapes):
        return  # the head's parser names the count mismatch
    for hw, s in zip(shapes, strides, strict=True):
        if not _fits(size, hw, s):
            which = " and ".join(
                name
                for name, flag in (("--imgsz", size_from_option), ("--strides", strides_from_option))
                if flag
            )
            raise BundleError(
                f"{which} disagree{'s' if ' and ' not in which else ''} with {source}: input {_fmt_size(size)} at "
                f"strides {_fmt_strides(strides)} does not give its feature maps {maps} (level {_fmt_size(hw)} "
                f"at stride {s:g} needs a {_fmt_size((int(hw[0] * s), int(hw[1] * s)))} input); fix "
                f"{which} to match the bundle"
            )
