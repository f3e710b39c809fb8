"""Ultralytics anchor-free head (YOLOv8, YOLO11, YOLO26 and kin): raw train-mode output -> tensors.

Accepted forms of the training output:
- the dict ``{"boxes": (B, 4*reg_max, N), "scores": (B, nc, N), "feats": [(B, C, H, W), ...]}`` (8.4.x);
- the end-to-end dict ``{"one2many": {...}, "one2one": {...}}`` (YOLO26, YOLOv10 in 8.4.x);
- an ``(inference_output, dict)`` tuple (eval-mode call); the dict is used;
- the older list of per-level ``(B, 4*reg_max + nc, H, W)`` tensors (8.3.x and before).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodbg.anchors import Anchors, level_map_shapes
from yolodbg.errors import BundleError
from yolodbg.evaluate.decode import Detections, nms_best_rows, same_sigmoid, topk_e2e
from yolodbg.evaluate.postprocess import PostProcess
from yolodbg.heads.registry import Recognition, recorded

DEFAULT_STRIDES = {1: (8.0,), 2: (8.0, 16.0), 3: (8.0, 16.0, 32.0), 4: (8.0, 16.0, 32.0, 64.0)}


@dataclass(frozen=True)
class Branch:
    """One prediction branch in the framework's layout (anchors on axis 1)."""

    # (B, N, 4*reg_max) box-distribution logits (reg_max > 1) or raw ltrb distances: a view of the
    # head's (B, 4*reg_max, N) tensor, not a copy (the replay decodes only the anchors it needs)
    pred_dist: Tensor
    pred_scores: Tensor  # (B, N, nc) class logits
    reg_max: int


@dataclass(frozen=True)
class UltralyticsOutput:
    """A parsed Ultralytics training output: one branch, or two for end-to-end models."""

    branches: dict[str, Branch]  # "main", or "one2many" and "one2one"
    level_shapes: tuple[tuple[int, int], ...]
    strides: tuple[float, ...]
    input_size: tuple[int, int]  # (H, W) as the loss derives it: first level's shape × first stride
    batch_size: int
    nc: int
    form: str  # "dict", "e2e" or "list"
    declared_size: tuple[int, int] | None = (
        None  # the bundle's input_size (the real input; GT is normalised by it)
    )

    @property
    def image_size(self) -> tuple[int, int]:
        """The real network input (the bundle's input_size, else the derived size)."""
        return self.declared_size or self.input_size

    @property
    def end2end(self) -> bool:
        return "one2one" in self.branches


def _level_shapes_from(feats: Any, where: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(feats, (list, tuple)) or not feats:
        raise BundleError(f"{where}: outputs.feats is missing or empty; expected the list of per-level maps")
    shapes = []
    for i, f in enumerate(feats):
        if isinstance(f, Tensor) and f.ndim == 4:
            shapes.append((int(f.shape[2]), int(f.shape[3])))
        elif isinstance(f, (list, tuple, Tensor)) and len(f) == 2:
            shapes.append((int(f[0]), int(f[1])))
        else:
            raise BundleError(f"{where}: outputs.feats[{i}] is not a (B, C, H, W) tensor or an (H, W) pair")
    return tuple(shapes)


def _strides(
    level_shapes: tuple[tuple[int, int], ...],
    strides: tuple[float, ...] | None,
    input_size: tuple[int, int] | None,
    where: str,
) -> tuple[float, ...]:
    if strides is not None:
        if len(strides) != len(level_shapes):
            raise BundleError(
                f"{where}: {len(strides)} strides given for {len(level_shapes)} levels; pass one stride per level"
            )
        return tuple(float(s) for s in strides)
    default = DEFAULT_STRIDES.get(len(level_shapes))
    if input_size is None:
        if default is not None:
            return default
        raise BundleError(f"{where}: cannot infer the strides of {len(level_shapes)} levels; pass --strides")
    # a level of stride s has ceil(H / s) × ceil(W / s) cells (inputs that are not multiples of s are padded)
    fits = lambda s, hw: all(math.ceil(n / s) == m for n, m in zip(input_size, hw, strict=True))  # noqa: E731
    if default is not None and all(fits(s, hw) for s, hw in zip(default, level_shapes, strict=True)):
        return default
    out = []
    for h, w in level_shapes:
        s = round(input_size[0] / h)
        if s < 1 or not fits(s, (h, w)):
            raise BundleError(
                f"{where}: input size {input_size[0]}x{input_size[1]} does not match the level shape {h}x{w} "
                "for any stride; pass --strides (or fix input_size/--imgsz)"
            )
        out.append(float(s))
    return tuple(out)


def _branch_from_dict(d: dict, where: str) -> tuple[Branch, Any]:
    for key in ("boxes", "scores"):
        if not isinstance(d.get(key), Tensor) or d[key].ndim != 3:
            got = d.get(key)
            desc = f"tensor {tuple(got.shape)}" if isinstance(got, Tensor) else type(got).__name__
            raise BundleError(f"{where}: outputs.{key} is {desc}; expected a (B, C, N) tensor")
    boxes, scores = d["boxes"], d["scores"]
    if boxes.shape[0] != scores.shape[0] or boxes.shape[2] != scores.shape[2]:
        raise BundleError(
            f"{where}: outputs.boxes {tuple(boxes.shape)} and outputs.scores {tuple(scores.shape)} disagree on "
            "batch size or number of anchors"
        )
    if boxes.shape[1] % 4:
        raise BundleError(f"{where}: outputs.boxes has {boxes.shape[1]} channels; expected 4 * reg_max")
    branch = Branch(boxes.permute(0, 2, 1), scores.permute(0, 2, 1).contiguous(), int(boxes.shape[1] // 4))
    return branch, d.get("feats")


def parse(
    outputs: Any,
    *,
    strides: tuple[float, ...] | None = None,
    input_size: tuple[int, int] | None = None,
    nc: int | None = None,
    reg_max: int = 16,
    where: str = "bundle",
) -> UltralyticsOutput:
    """Validate an Ultralytics training output and bring it into the loss's layout.

    ``input_size`` only helps infer strides; the input size used by the loss is always the
    one the framework derives (first level's shape × first stride), as Ultralytics does.
    """
    if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], dict):
        outputs = outputs[1]
    branches, feats, form = _branches(outputs, nc, reg_max, where)
    level_shapes = _level_shapes_from(feats, where)
    strd = _strides(level_shapes, strides, input_size, where)
    bs, n_cls = _check_branches(branches, level_shapes, nc, where)
    size, declared = _input_size(level_shapes, strd, input_size, where)
    return UltralyticsOutput(branches, level_shapes, strd, size, int(bs), int(n_cls), form, declared)


def _branches(outputs: Any, nc: int | None, reg_max: int, where: str) -> tuple[dict[str, Branch], Any, str]:
    """The output's branches in the loss's layout, its ``feats`` and its form ('e2e', 'dict' or 'list')."""
    if isinstance(outputs, dict) and {"one2many", "one2one"} <= outputs.keys():
        b1, feats = _branch_from_dict(outputs["one2many"], f"{where} (one2many)")
        b2, feats2 = _branch_from_dict(outputs["one2one"], f"{where} (one2one)")
        return {"one2many": b1, "one2one": b2}, feats if feats is not None else feats2, "e2e"
    if isinstance(outputs, dict):
        b, feats = _branch_from_dict(outputs, where)
        return {"main": b}, feats, "dict"
    if isinstance(outputs, (list, tuple)) and outputs and all(isinstance(t, Tensor) for t in outputs):
        return {"main": _branch_from_levels(outputs, nc, reg_max, where)}, list(outputs), "list"
    raise BundleError(
        f"{where}: not an Ultralytics training output; expected a dict with boxes/scores/feats, an "
        "end-to-end dict with one2many/one2one, or a list of per-level tensors"
    )


def _branch_from_levels(
    outputs: list[Tensor] | tuple[Tensor, ...], nc: int | None, reg_max: int, where: str
) -> Branch:
    """The list form: per-level ``(B, 4*reg_max + nc, H, W)`` maps, concatenated over levels and split."""
    if any(t.ndim != 4 for t in outputs):
        raise BundleError(f"{where}: the list form needs per-level (B, 4*reg_max+nc, H, W) tensors")
    channels = {int(t.shape[1]) for t in outputs}
    if len(channels) != 1:
        raise BundleError(f"{where}: per-level tensors have different channel counts {sorted(channels)}")
    no = channels.pop()
    n_cls = no - 4 * reg_max if nc is None else nc
    if n_cls <= 0 or no != 4 * reg_max + n_cls:
        raise BundleError(
            f"{where}: {no} channels per level do not split into 4*reg_max ({4 * reg_max}) box channels and "
            f"{'--nc ' + str(nc) if nc is not None else 'at least one'} class channels; check --nc"
        )
    bs = int(outputs[0].shape[0])
    cat = torch.cat([t.reshape(bs, no, -1) for t in outputs], 2)
    boxes, scores = cat.split((4 * reg_max, n_cls), 1)
    return Branch(boxes.permute(0, 2, 1), scores.permute(0, 2, 1).contiguous(), reg_max)


def _check_branches(
    branches: dict[str, Branch], level_shapes: tuple[tuple[int, int], ...], nc: int | None, where: str
) -> tuple[int, int]:
    """Every branch holds one row per anchor of the levels, the same batch and classes, in floating point:
    ``(batch size, classes)``."""
    n_anchors = sum(h * w for h, w in level_shapes)
    first = next(iter(branches.values()))
    bs, _, n_cls = first.pred_scores.shape
    for name, br in branches.items():
        if br.pred_scores.shape[1] != n_anchors:
            raise BundleError(
                f"{where}: {name} has {br.pred_scores.shape[1]} anchors but the level shapes {list(level_shapes)} "
                f"give {n_anchors}; the feats do not belong to these outputs"
            )
        if br.pred_scores.shape[0] != bs or br.pred_scores.shape[2] != n_cls:
            raise BundleError(f"{where}: the one2many and one2one branches disagree in batch size or classes")
    if nc is not None and nc != n_cls:
        raise BundleError(f"{where}: outputs have {n_cls} classes but --nc is {nc}; drop --nc or fix it")
    for name, br in branches.items():
        if br.pred_dist.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise BundleError(f"{where}: {name} outputs are {br.pred_dist.dtype}; expected floating point")
    return bs, n_cls


def _input_size(
    level_shapes: tuple[tuple[int, int], ...],
    strd: tuple[float, ...],
    input_size: tuple[int, int] | None,
    where: str,
) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(the input size the loss uses: first level × first stride, the declared one), checked to agree."""
    h0, w0 = level_shapes[0]
    size = (int(h0 * strd[0]), int(w0 * strd[0]))
    declared = tuple(int(v) for v in input_size) if input_size is not None else size
    if any(math.ceil(n / strd[0]) != m for n, m in zip(declared, (h0, w0), strict=True)):
        raise BundleError(
            f"{where}: input_size {list(declared)} does not fit the first level {h0}x{w0} at stride {strd[0]:g}; "
            "fix input_size/--imgsz or --strides"
        )
    return size, declared


def anchors(out: UltralyticsOutput) -> Anchors:
    """The anchor table of a parsed output (cell centres, as ``make_anchors(..., 0.5)``)."""
    return Anchors.grid(out.level_shapes, out.strides)


def make_anchors(out: UltralyticsOutput, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Anchor points ``(N, 2)`` in grid units and strides ``(N, 1)``, built as Ultralytics builds them."""
    points, strides = [], []
    for (h, w), s in zip(out.level_shapes, out.strides, strict=True):
        sy, sx = torch.meshgrid(_centres(h, dtype), _centres(w, dtype), indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        strides.append(torch.full((h * w, 1), s, dtype=dtype))
    return torch.cat(points), torch.cat(strides)


def anchor_axes(out: UltralyticsOutput, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
    """Per level the ``(W,)`` x and ``(H,)`` y of the cell centres in input pixels: the rows and columns
    of ``points * strides`` of :func:`make_anchors`, with the same arithmetic."""
    return [
        (_centres(w, dtype) * s, _centres(h, dtype) * s)
        for (h, w), s in zip(out.level_shapes, out.strides, strict=True)
    ]


def _centres(n: int, dtype: torch.dtype) -> Tensor:
    """Cell centres 0.5, 1.5, ... of one grid axis in grid units, computed as Ultralytics computes them."""
    return torch.arange(n).to(dtype) + 0.5


def decode_distances(branch: Branch) -> Tensor:
    """``(B, N, 4)`` ltrb distances in grid units: the softmax expectation over bins, or raw when reg_max is 1."""
    pd = branch.pred_dist
    if branch.reg_max == 1:
        return pd
    b, a, c = pd.shape
    return _expectation(pd.reshape(b, a, 4, c // 4))


def decode_rows(branch: Branch, b: Tensor, a: Tensor) -> Tensor:
    """``(K, 4)`` distances of the anchors ``(b[k], a[k])``, equal to ``decode_distances(branch)[b, a]`` bit
    for bit: the softmax over the bins of one side and its dot product with the bin indices are computed
    row by row (checked against Ultralytics by the parity tests and against the full decode in test_tal)."""
    pd = branch.pred_dist[b, a]
    if branch.reg_max == 1:
        return pd
    return _expectation(pd.view(-1, 4, branch.reg_max))


def _expectation(logits: Tensor) -> Tensor:
    """``(..., reg_max)`` bin logits -> the expected bin, as ``bbox_decode``: softmax, then matmul with 0..reg_max-1."""
    proj = torch.arange(logits.shape[-1], dtype=torch.float32).to(logits.dtype)
    return logits.softmax(-1).matmul(proj)


def dist_to_xyxy(dist: Tensor, points: Tensor) -> Tensor:
    """ltrb distances around anchor points -> xyxy boxes (same units as both inputs)."""
    lt, rb = dist.chunk(2, -1)
    return torch.cat((points - lt, points + rb), -1)


def inference(bundle: Any, parsed: Any = None, probs: Tensor | None = None) -> tuple[Tensor, Tensor, bool]:
    """``(B, 4, N)`` boxes (cxcywh, or xyxy for end-to-end), ``(B, nc, N)`` sigmoid scores, end2end flag.

    Channels first, as the head computes them: the sigmoid and the DFL softmax run on the whole
    tensors (their vectorised kernels round a few elements differently on a gathered subset).

    ``parsed``: the bundle's :class:`~yolodbg.heads.ultralytics.UltralyticsOutput` if already at hand;
    ``probs``: the replay's sigmoid of the main branch (B, N, nc), used (transposed) when
    :func:`yolodbg.evaluate.decode.same_sigmoid` proves it equal to the head's.
    """
    out = parsed or parse_bundle(bundle)
    name = "one2one" if out.end2end else "main"
    br = out.branches[name]
    raw = bundle.outputs[1] if isinstance(bundle.outputs, tuple) else bundle.outputs
    if isinstance(raw, dict):  # the head's own (B, C, N) layout, no copy
        raw = raw[name] if out.end2end else raw
        pd, logits = raw["boxes"].float(), raw["scores"].float()
    else:
        pd, logits = br.pred_dist.float().transpose(1, 2).contiguous(), br.pred_scores.float().transpose(1, 2)
    b, _, a = pd.shape
    if br.reg_max > 1:
        weight = torch.arange(br.reg_max, dtype=torch.float32).view(1, br.reg_max, 1, 1)
        dist = F.conv2d(pd.view(b, 4, br.reg_max, a).transpose(2, 1).softmax(1), weight).view(b, 4, a)
    else:
        dist = pd
    points, stride = make_anchors(out, torch.float32)  # (N, 2) grid units, (N, 1)
    anchor_pts = points.transpose(0, 1).unsqueeze(0)  # (1, 2, N)
    lt, rb = dist.chunk(2, 1)
    x1y1, x2y2 = anchor_pts - lt, anchor_pts + rb
    corners = (x1y1, x2y2) if out.end2end else ((x1y1 + x2y2) / 2, x2y2 - x1y1)  # e2e: xyxy, else cxcywh
    boxes = torch.cat(corners, 1) * stride.transpose(0, 1)
    if not out.end2end and same_sigmoid(probs, logits):
        return boxes, probs.transpose(1, 2), False
    return boxes, logits.sigmoid(), out.end2end


def parse_bundle(bundle: Any) -> UltralyticsOutput:
    """:func:`parse` with what a loaded bundle records (strides, input size, ``--nc``)."""
    return parse(bundle.outputs, **recorded(bundle))


def detections(
    bundle: Any, pp: PostProcess, parsed: Any = None, probs: Tensor | None = None
) -> list[Detections]:
    """The validator's detections: NMS on the DFL decode, or the top-k selection of end-to-end heads.

    ``probs``: the replay's class probabilities when its recipe declares them the head's sigmoid
    (reused by :func:`inference` only where they equal it bit for bit)."""
    boxes, scores, end2end = inference(bundle, parsed, probs)
    if end2end:
        return topk_e2e(boxes.transpose(1, 2), scores.transpose(1, 2), pp)
    return [nms_best_rows(bx, sc, pp) for bx, sc in zip(boxes, scores, strict=True)]


def recognise(outputs: Any) -> Recognition | None:
    """The training dict (``boxes``/``scores``, or both branches of an end-to-end head) is Ultralytics';
    a list of per-level maps is the older Ultralytics output or YOLOX's."""
    if isinstance(outputs, dict) and (
        {"boxes", "scores"} <= outputs.keys() or {"one2many", "one2one"} <= outputs.keys()
    ):
        return Recognition()
    if level_map_shapes(outputs) is not None:
        return Recognition(False, "a list of per-level (B, C, H, W) tensors", "the older Ultralytics output")
    return None


def level_shapes(outputs: Any) -> tuple[tuple[int, int], ...] | None:
    """``(H, W)`` of every level from ``feats`` (of the one-to-many branch), or None if malformed."""
    out = outputs[1] if isinstance(outputs, tuple) and len(outputs) == 2 else outputs
    if isinstance(out, dict):
        out = out.get("one2many", out)
        feats = out.get("feats") if isinstance(out, dict) else None
    else:
        feats = out
    return level_map_shapes(feats)
