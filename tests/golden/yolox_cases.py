"""Deterministic YOLOX loss cases shared by the golden generator and the parity tests.

Used by
  * ``tests/golden/make_golden_yolox.py`` (writes ``yolox_cases.pt`` with the numbers of the real YOLOX),
  * ``tests/test_golden_yolox.py`` (replays the stored fixtures with yolodbg; YOLOX not needed),
  * ``tests/test_parity_yolox.py`` (builds the same cases live, plus random scenes, and compares).

Only ``torch``, the standard library and the torch-only neighbours (``cases.py``, ``harness.py``)
are imported at module level; everything that needs YOLOX imports it inside the function. Scenes are boxes ``(cls, x1, y1, x2, y2)`` in input pixels; the
generic scene generators come from the YOLOv8 cases module next to this file, the YOLOX-specific
ones (prior edges, empty priors, a zero label row, many overlapping boxes) are here.

References
  * ``yolox`` recipe: YOLOX 0.3.0 as published on PyPI (sdist ``yolox==0.3.0``; its Python code is
    imported straight from the unpacked sdist, the C++ extension is not needed).
  * ``yolox-main`` recipe: the same 0.3.0 ``YOLOXHead`` with ``get_assignments`` replaced by
    :func:`main_get_assignments` below, our transcription of the main-branch method (commit 6ddff48):
    geometry from a 1.5-stride centre square only (``get_geometry_constraint``), sigmoids taken before
    the per-GT repeat, penalty 1e6. The main branch's ``simota_matching`` is the release's
    ``dynamic_k_matching`` under a new name (same operations), so that one is kept.
"""

from __future__ import annotations

import math
import random
from typing import Any

import cases as V8
import harness
import torch

YOLOX_VERSION = "0.3.0"
MAIN_COMMIT = "6ddff48"
STRIDES = (8, 16, 32)
FORMAT = "yolodbg.golden.yolox/1"
RECIPES = {"release": "yolox", "main": "yolox-main"}

Box = harness.Box


targets_from_boxes = V8.targets_from_boxes
rel_close = V8.rel_close


# ---------------------------------------------------------------------------------------------------------------
# YOLOX-specific scenes
# ---------------------------------------------------------------------------------------------------------------


def scene_prior_edges(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """GT centres placed so that anchor centres (8i+4 on P3, 16i+8 on P4) lie exactly on the edge of the
    2.5-stride (release) or 1.5-stride (main) centre square, or exactly on a box edge: the strict
    inequalities of the geometry test decide."""
    out = []
    for s, r in ((8, 2.5), (8, 1.5), (16, 2.5), (16, 1.5)):
        i, j = rng.randrange(3, W // s - 3), rng.randrange(3, H // s - 3)
        cx, cy = s * i + s / 2 + r * s, s * j + s / 2 - r * s
        w, h = 2 * (r * s) + rng.choice([0.0, s]), rng.uniform(s, 4 * s)
        out.append((rng.randrange(nc), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out


def scene_no_prior(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Tiny boxes centred on P3 cell corners: no anchor centre inside the box, so under the release rule no
    candidate is in the prior (box ∩ centre square) and every pair carries the penalty."""
    out = []
    for _ in range(3):
        i, j = rng.randrange(1, W // 8 - 1), rng.randrange(1, H // 8 - 1)
        half = rng.choice([1.0, 2.0, 3.5])
        out.append((rng.randrange(nc), 8.0 * i - half, 8.0 * j - half, 8.0 * i + half, 8.0 * j + half))
    return out


def scene_zero_row(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """A class-0 all-zero label row first, then three real boxes: YOLOX counts 3 positive rows and uses the
    3 leading ones, so the zero row takes part and the last real box is never seen."""
    return [(0, 0.0, 0.0, 0.0, 0.0), *V8.scene_standard(rng, H, W, nc, 3)]


def scene_many(rng: random.Random, H: int, W: int, nc: int, n: int = 40) -> list[Box]:
    """``n`` boxes of 10-40 % of the image in a central region: heavy overlap, many anchor conflicts."""
    out = []
    for _ in range(n):
        w, h = rng.uniform(0.1, 0.4) * W, rng.uniform(0.1, 0.4) * H
        x1, y1 = rng.uniform(0.15 * W, 0.85 * W - w), rng.uniform(0.15 * H, 0.85 * H - h)
        out.append((rng.randrange(nc), x1, y1, x1 + w, y1 + h))
    return out


SCENES = {
    "prior_edges": scene_prior_edges,
    "no_prior": scene_no_prior,
    "zero_row": scene_zero_row,
    "many": scene_many,
}


def make_scene(spec: str, rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """``""`` (no boxes) or scene names joined by ``+``; ``name:n`` passes a count; generic names from cases.py."""
    return harness.compose_scene(spec, {**V8.SCENES, **SCENES}, rng, H, W, nc)


# ---------------------------------------------------------------------------------------------------------------
# Input sets and cases of the golden file
# ---------------------------------------------------------------------------------------------------------------

# imgsz (H, W) of the input; levels are ceil(size / stride) cells, as a stride-2 backbone gives. "random": a
# random-init YOLOX-nano forward in train mode; "fitted": the nano model first trained on the batch for
# fit_steps Adam steps with the real YOLOX loss; "synthetic": logits drawn around the ground truth, no model.
# Predictions are rounded to float16 for storage before the reference runs (so the stored values are exact).
INPUT_SETS: dict[str, dict[str, Any]] = {
    "nano_rand_320": dict(nc=3, imgsz=(320, 320), scenes=["standard:3+huge+border"], preds="random", seed=0),
    "nano_fit_160_b4_empty": dict(
        nc=3, imgsz=(160, 160), scenes=["standard:3", "standard:2+tiny", "", "border"], preds="fitted", seed=1,
        fit_steps=30,
    ),
    "nano_rand_224x320_edges": dict(
        nc=2, imgsz=(224, 320), scenes=["prior_edges+border", "standard:2+no_prior+anchor_edges"], preds="random",
        seed=2,
    ),
    "nano_fit_96x160_crowd": dict(
        nc=3, imgsz=(96, 160), scenes=["crowd:12", "tiny", "standard:3"], preds="fitted", seed=3, fit_steps=40
    ),
    "nano_rand_96_nc80": dict(nc=80, imgsz=(96, 96), scenes=["standard:3+tiny", "standard:4"], preds="random", seed=6),
    "nano_rand_128_nogt": dict(nc=3, imgsz=(128, 128), scenes=["", ""], preds="random", seed=7),
    "nano_rand_64x96_degenerate": dict(
        nc=3, imgsz=(64, 96), scenes=["degenerate", "zero_row", "standard:2"], preds="random", seed=9
    ),
    "synth_204x332_odd_many": dict(
        nc=1, imgsz=(204, 332), scenes=["many:40", "standard:4+border+no_prior"], preds="synthetic", seed=10
    ),
    "synth_160x224_b2": dict(
        nc=4, imgsz=(160, 224), scenes=["crowd:10+tiny", "prior_edges+huge"], preds="synthetic", seed=11
    ),
}  # fmt: skip

# name, input set, variant ("release" -> recipe yolox, "main" -> yolox-main), use_l1, box
CASES: list[dict[str, Any]] = []
for _key in INPUT_SETS:
    for _variant in ("release", "main"):
        CASES.append(dict(name=f"{_key}_{_variant}", inputs=_key, variant=_variant))
CASES += [
    dict(
        name="nano_fit_160_b4_empty_release_l1",
        inputs="nano_fit_160_b4_empty",
        variant="release",
        use_l1=True,
    ),
    dict(name="nano_fit_96x160_crowd_main_l1", inputs="nano_fit_96x160_crowd", variant="main", use_l1=True),
    dict(name="synth_160x224_b2_release_giou", inputs="synth_160x224_b2", variant="release", box="giou"),
    dict(name="nano_rand_128_nogt_release_l1", inputs="nano_rand_128_nogt", variant="release", use_l1=True),
]
for _c in CASES:
    _c.setdefault("use_l1", False)
    _c.setdefault("box", "iou")


def case_params(case: dict) -> dict:
    """yolodbg recipe parameters of a case (only those that differ from the defaults)."""
    out: dict[str, Any] = {}
    if case["use_l1"]:
        out["use_l1"] = True
    if case["box"] != "iou":
        out["box"] = case["box"]
    return out


def level_shapes(imgsz: tuple[int, int]) -> list[tuple[int, int]]:
    return [(math.ceil(imgsz[0] / s), math.ceil(imgsz[1] / s)) for s in STRIDES]


def input_set_targets(spec: dict[str, Any]) -> tuple[list[list[Box]], dict]:
    H, W = spec["imgsz"]
    rng = random.Random(spec["seed"])
    per_image = [make_scene(s, rng, H, W, spec["nc"]) for s in spec["scenes"]]
    return per_image, targets_from_boxes(per_image, H, W)


def yolox_labels(targets: dict, batch_size: int, imgsz: tuple[int, int]) -> torch.Tensor:
    """YOLOX's labels ``(B, S, 5)`` [cls, cx, cy, w, h] px from the batch form: float32 bboxes × float32 (W, H)."""
    H, W = imgsz
    bidx = targets["batch_idx"].long()
    counts = torch.bincount(bidx, minlength=batch_size)
    labels = torch.zeros(batch_size, int(counts.max()) if len(bidx) else 0, 5)
    seen = [0] * batch_size
    scale = torch.tensor([W, H, W, H], dtype=torch.float32)
    for r in range(len(bidx)):
        b = int(bidx[r])
        labels[b, seen[b], 0] = targets["cls"].reshape(-1)[r]
        labels[b, seen[b], 1:] = targets["bboxes"][r] * scale
        seen[b] += 1
    return labels


# ---------------------------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------------------------


def build_model(nc: int, seed: int):
    """YOLOX-nano (depth 0.33, width 0.25, depthwise) as the nano Exp builds it, with its BN and bias init."""
    import torch.nn as nn
    from yolox.models import YOLOPAFPN, YOLOX, YOLOXHead

    torch.manual_seed(seed)
    in_channels = [256, 512, 1024]
    backbone = YOLOPAFPN(0.33, 0.25, in_channels=in_channels, depthwise=True)
    head = YOLOXHead(nc, 0.25, in_channels=in_channels, depthwise=True)
    model = YOLOX(backbone, head)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03
    model.head.initialize_biases(1e-2)
    model.train()
    return model


def head_outputs(model, images: torch.Tensor) -> list[torch.Tensor]:
    """The per-level ``(B, 5+nc, H, W)`` maps cat(reg, obj, cls) the head builds in train mode before decoding."""
    head, levels = model.head, []
    with torch.no_grad():
        for k, x in enumerate(model.backbone(images)):
            x = head.stems[k](x)
            cls = head.cls_preds[k](head.cls_convs[k](x))
            reg_feat = head.reg_convs[k](x)
            levels.append(torch.cat([head.reg_preds[k](reg_feat), head.obj_preds[k](reg_feat), cls], 1))
    return levels


def fit_model(model, images: torch.Tensor, labels: torch.Tensor, steps: int, lr: float = 2e-3) -> list[float]:
    """Train on one batch with the real YOLOX loss (Adam), so the assignment becomes meaningful."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        out = model(images, labels)
        out["total_loss"].backward()
        opt.step()
        losses.append(float(out["total_loss"].detach()))
    return losses


def model_outputs(spec: dict, per_image: list[list[Box]], labels: torch.Tensor) -> list[torch.Tensor]:
    H, W = spec["imgsz"]
    model = build_model(spec["nc"], spec["seed"])
    images = V8.make_images(per_image, H, W, spec["nc"], spec["seed"])
    if spec["preds"] == "fitted":
        fit_model(model, images, labels, spec["fit_steps"])
    return head_outputs(model, images)


def synthetic_outputs(per_image: list[list[Box]], imgsz, nc: int, seed: int) -> list[torch.Tensor]:
    """Logits drawn around the ground truth like a half-trained model: near a GT centre, the regression points
    at it (with noise), objectness and the GT's class logit are high; elsewhere low, with random boxes."""
    g = torch.Generator().manual_seed(seed)
    B = len(per_image)
    levels = []
    for (h, w), s in zip(level_shapes(imgsz), STRIDES, strict=True):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cell = torch.stack((xs.reshape(-1), ys.reshape(-1)), -1).float()  # (HW, 2)
        out = torch.empty(B, 5 + nc, h * w)
        for b, boxes in enumerate(per_image):
            reg = torch.cat((torch.rand(h * w, 2, generator=g), torch.randn(h * w, 2, generator=g) * 0.7), 1)
            obj = torch.randn(h * w, generator=g) - 5.0
            cls = torch.randn(h * w, nc, generator=g) - 5.0
            if boxes:
                gt = torch.tensor([bx[1:] for bx in boxes], dtype=torch.float32)
                cxy, wh = (gt[:, :2] + gt[:, 2:]) / 2, (gt[:, 2:] - gt[:, :2]).clamp(min=0.5)
                dist = ((cell[:, None] + 0.5) * s - cxy[None]).abs().amax(-1) / s  # (HW, G) in strides
                d, k = dist.min(1)
                near = d < 2.5
                noisy = (
                    torch.cat((cxy[k] / s - cell, (wh[k] / s).log()), 1)
                    + torch.randn(h * w, 4, generator=g) * 0.3
                )
                reg = torch.where(near[:, None], noisy, reg)
                obj = torch.where(near, torch.randn(h * w, generator=g) * 1.5 + 1.0, obj)
                rows = near.nonzero()[:, 0]
                cls[rows, torch.tensor([bx[0] for bx in boxes])[k[rows]]] = (
                    torch.randn(len(rows), generator=g) + 1.5
                )
            out[b] = torch.cat((reg, obj[:, None], cls), 1).T
        levels.append(out.view(B, 5 + nc, h, w))
    return levels


def build_inputs(spec: dict[str, Any]) -> tuple[list[torch.Tensor], dict]:
    """(per-level outputs float32, targets in batch form) of an input set; outputs not yet rounded."""
    per_image, targets = input_set_targets(spec)
    if spec["preds"] == "synthetic":
        return synthetic_outputs(per_image, spec["imgsz"], spec["nc"], spec["seed"]), targets
    labels = yolox_labels(targets, len(per_image), spec["imgsz"])
    return model_outputs(spec, per_image, labels), targets


def round_half(levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Round to float16 and back: the values are then exactly storable in float16."""
    return [t.half().float() for t in levels]


def random_scene(seed: int) -> dict:
    """A random scene for the live parity loop: batch size, input size, nc (up to 80), box counts and sizes
    (log-uniform from sub-pixel to the whole image), empty images and batches, zero label rows, edges snapped
    to anchor centres, boxes on the border, both variants, L1 and GIoU sometimes."""
    rng = random.Random(5000 + seed)
    model = seed % 3 != 1
    if model:
        H, W = 32 * rng.randint(2, 9), 32 * rng.randint(2, 9)
    else:  # synthetic logits: any input size (levels are ceil(size / stride))
        H, W = rng.randint(40, 300), rng.randint(40, 300)
    B = rng.randint(1, 4)
    nc = rng.choice([1, 2, 3, 5, 80])
    per_image: list[list[Box]] = []
    for _ in range(B):
        if rng.random() < 0.2:
            per_image.append([])
            continue
        boxes: list[Box] = []
        for _ in range(rng.choice([1, 2, 3, 5, 8, 14, 30])):
            w = math.exp(rng.uniform(math.log(0.5), math.log(W)))
            h = math.exp(rng.uniform(math.log(0.5), math.log(H)))
            x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
            r = rng.random()
            if r < 0.15:  # edges on P3 anchor centres
                x1, y1 = 8 * round((x1 - 4) / 8) + 4.0, 8 * round((y1 - 4) / 8) + 4.0
                w, h = 8.0 * max(1, round(w / 8)), 8.0 * max(1, round(h / 8))
            elif r < 0.25:
                x1, y1 = (0.0 if rng.random() < 0.5 else W - w), (0.0 if rng.random() < 0.5 else H - h)
            boxes.append(V8._clip_box(rng.randrange(nc), x1, y1, x1 + w, y1 + h, H, W))
        if rng.random() < 0.1:
            boxes.insert(rng.randrange(len(boxes) + 1), (0, 0.0, 0.0, 0.0, 0.0))
        per_image.append(boxes)
    if rng.random() < 0.1:
        per_image = [[] for _ in range(B)]
    return {
        "name": f"random_{seed:02d}",
        "imgsz": (H, W),
        "nc": nc,
        "per_image": per_image,
        "preds": "random" if model else "synthetic",
        "seed": seed,
        "variant": "main" if seed % 2 else "release",
        "use_l1": seed % 5 == 3,
        "box": "giou" if seed % 7 == 5 else "iou",
    }


def build_random_inputs(scene: dict) -> tuple[list[torch.Tensor], dict]:
    H, W = scene["imgsz"]
    targets = targets_from_boxes(scene["per_image"], H, W)
    if scene["preds"] == "synthetic":
        return synthetic_outputs(scene["per_image"], scene["imgsz"], scene["nc"], scene["seed"]), targets
    spec = {"nc": scene["nc"], "imgsz": scene["imgsz"], "seed": scene["seed"], "preds": "random"}
    labels = yolox_labels(targets, len(scene["per_image"]), scene["imgsz"])
    return model_outputs(spec, scene["per_image"], labels), targets


# ---------------------------------------------------------------------------------------------------------------
# The reference: the real YOLOX 0.3.0 YOLOXHead (imports yolox)
# ---------------------------------------------------------------------------------------------------------------


def main_geometry(head, gt_bboxes, expanded_strides, x_shifts, y_shifts):
    """Main branch ``get_geometry_constraint``: anchor centres strictly inside GT centre ± 1.5 strides."""
    strides = expanded_strides[0]
    x_centers = ((x_shifts[0] + 0.5) * strides).unsqueeze(0)
    y_centers = ((y_shifts[0] + 0.5) * strides).unsqueeze(0)
    reach = strides.unsqueeze(0) * 1.5
    left, right = gt_bboxes[:, 0:1] - reach, gt_bboxes[:, 0:1] + reach
    top, bottom = gt_bboxes[:, 1:2] - reach, gt_bboxes[:, 1:2] + reach
    deltas = torch.stack([x_centers - left, y_centers - top, right - x_centers, bottom - y_centers], 2)
    in_centre = deltas.min(dim=-1).values > 0.0
    anchor_filter = in_centre.sum(dim=0) > 0
    return anchor_filter, in_centre[:, anchor_filter]


def main_get_assignments(
    head, batch_idx, num_gt, total_num_anchors, gt_bboxes_per_image, gt_classes, bboxes_preds_per_image,
    expanded_strides, x_shifts, y_shifts, cls_preds, bbox_preds, obj_preds, labels, imgs, mode="gpu",
):  # fmt: skip
    """Main branch ``get_assignments`` (CPU path), accepting the 0.3.0 call signature."""
    import torch.nn.functional as F

    with torch.no_grad():
        fg_mask, geometry_relation = main_geometry(
            head, gt_bboxes_per_image, expanded_strides, x_shifts, y_shifts
        )
        boxes = bboxes_preds_per_image[fg_mask]
        cls_ = cls_preds[batch_idx][fg_mask]
        obj_ = obj_preds[batch_idx][fg_mask]
        n_cand = boxes.shape[0]
        from yolox.utils import bboxes_iou

        ious = bboxes_iou(gt_bboxes_per_image, boxes, False)
        onehot = F.one_hot(gt_classes.to(torch.int64), head.num_classes).float()
        iou_cost = -torch.log(ious + 1e-8)
        p = (cls_.float().sigmoid_() * obj_.float().sigmoid_()).sqrt()
        cls_cost = F.binary_cross_entropy(
            p.unsqueeze(0).repeat(num_gt, 1, 1), onehot.unsqueeze(1).repeat(1, n_cand, 1), reduction="none"
        ).sum(-1)
        cost = cls_cost + 3.0 * iou_cost + 1e6 * (~geometry_relation)
        num_fg, matched_classes, pred_ious, matched = head.dynamic_k_matching(
            cost, ious, gt_classes, num_gt, fg_mask
        )
    return matched_classes, fg_mask, pred_ious, matched, num_fg


def reference_head(nc: int, variant: str, use_l1: bool, box: str):
    """A 0.3.0 ``YOLOXHead`` set up for a case (its weights play no part in ``get_losses``)."""
    from yolox.models import YOLOXHead
    from yolox.models.losses import IOUloss

    head = YOLOXHead(nc, width=0.25)
    head.train()
    head.use_l1 = use_l1
    if box != "iou":
        head.iou_loss = IOUloss(reduction="none", loss_type=box)
    if variant == "main":
        head.get_assignments = main_get_assignments.__get__(head)
    return head


def yolox_expected(
    levels: list[torch.Tensor], labels: torch.Tensor, variant="release", use_l1=False, box="iou"
):
    """Run the real head's loss path (decode as the train forward does, then ``get_losses``) on these inputs."""
    import warnings

    nc = levels[0].shape[1] - 5
    head = reference_head(nc, variant, use_l1, box)
    assigned: dict[int, tuple] = {}
    matched_inputs: list[tuple] = []
    orig_assign, orig_match = head.get_assignments, head.dynamic_k_matching

    def capture_assign(batch_idx, *a, **k):
        r = orig_assign(batch_idx, *a, **k)
        assigned[batch_idx] = r
        return r

    def capture_match(cost, ious, gt_classes, num_gt, fg_mask):
        matched_inputs.append((cost.clone(), ious.clone(), fg_mask.clone()))
        return orig_match(cost, ious, gt_classes, num_gt, fg_mask)

    head.get_assignments, head.dynamic_k_matching = capture_assign, capture_match
    outs, xs, ys, es, origin = [], [], [], [], []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, t in enumerate(levels):
            b, _, h, w = t.shape
            o, grid = head.get_output_and_grid(t.clone(), k, head.strides[k], t.type())
            xs.append(grid[:, :, 0])
            ys.append(grid[:, :, 1])
            es.append(torch.zeros(1, grid.shape[1]).fill_(head.strides[k]).type_as(t))
            origin.append(t[:, :4].reshape(b, 1, 4, h, w).permute(0, 1, 3, 4, 2).reshape(b, -1, 4).clone())
            outs.append(o)
        r = head.get_losses(
            None, xs, ys, es, labels.clone(), torch.cat(outs, 1), origin if use_l1 else [], levels[0].dtype
        )
    B, N = labels.shape[0], sum(o.shape[1] for o in outs)
    fg = torch.zeros(B, N, dtype=torch.bool)
    gt_index = torch.full((B, N), -1, dtype=torch.long)
    pred_iou = torch.zeros(B, N)
    dynamic_k, candidates, costs, ious = [], [], [], []
    it = iter(matched_inputs)
    for b in range(B):
        if b not in assigned:
            dynamic_k.append([])
            candidates.append(0)
            costs.append(None)
            ious.append(None)
            continue
        _, fg_mask, p_iou, matched, _ = assigned[b]
        fg[b], gt_index[b, fg_mask], pred_iou[b, fg_mask] = fg_mask, matched, p_iou
        cost, iou, cand = next(it)
        # dynamic k from the real IoU matrix, by the formula of dynamic_k_matching
        k = torch.clamp(torch.topk(iou, min(10, iou.size(1)), dim=1)[0].sum(1).int(), min=1)
        dynamic_k.append(k.tolist())
        candidates.append(int(cand.sum()))
        costs.append(cost)
        ious.append(iou)
    num_fg = int(fg.sum())
    return {
        "items": {"iou": float(r[1]), "obj": float(r[2]), "cls": float(r[3]), "l1": float(r[4])},
        "total": float(r[0]),
        "fg_per_gt": float(r[5]),
        "num_fg": num_fg,
        "num_gts": int((labels.sum(dim=2) > 0).sum()),
        "fg": fg,
        "gt_index": gt_index,
        "pred_iou": pred_iou,
        "dynamic_k": dynamic_k,
        "num_candidates": candidates,
        "cost": costs,  # live comparisons only (not stored)
        "ious": ious,
    }


# ---------------------------------------------------------------------------------------------------------------
# Compact storage of the expected record, and the comparison used by both tests (torch only)
# ---------------------------------------------------------------------------------------------------------------


def pack_expected(exp: dict) -> dict:
    """Positives as flat indices into (B, N) plus their matched GT and class-target IoU; no live-only tensors."""
    fg = exp["fg"]
    out = {k: v for k, v in exp.items() if k not in ("fg", "gt_index", "pred_iou", "cost", "ious")}
    out["shape"] = list(fg.shape)
    out["fg_index"] = fg.reshape(-1).nonzero().flatten().to(torch.int32)
    out["gt_index_fg"] = exp["gt_index"][fg].to(torch.int16)
    out["pred_iou_fg"] = exp["pred_iou"][fg].clone()
    return out


def unpack_expected(packed: dict) -> dict:
    B, N = packed["shape"]
    fg = torch.zeros(B * N, dtype=torch.bool)
    fg[packed["fg_index"].long()] = True
    fg = fg.view(B, N)
    gt_index = torch.full((B, N), -1, dtype=torch.long)
    gt_index[fg] = packed["gt_index_fg"].long()
    pred_iou = torch.zeros(B, N)
    pred_iou[fg] = packed["pred_iou_fg"].float()
    return {**packed, "fg": fg, "gt_index": gt_index, "pred_iou": pred_iou}


def describe_anchor(flat: int, imgsz) -> str:
    return harness.anchor_label(flat, level_shapes(imgsz), STRIDES)


rel_err = harness.rel_err


def compare(res, exp: dict, imgsz, rtol: float = 1e-5) -> tuple[list[str], float]:
    """Differences between a yolodbg Replay and an expected record as readable lines, and the largest
    relative error over the terms and the objective."""
    want = {**exp["items"], "objective": exp["total"]}
    got = {**res.terms, "objective": float(res.objective)}
    missing, off = harness.term_differences(got, want, rtol, label=str)
    problems = missing + off
    worst = max((rel_err(float(got[k]), w) for k, w in want.items() if got.get(k) is not None), default=0.0)
    norm = res.result.normalizers.get("num_fg")
    if norm != float(max(exp["num_fg"], 1)):
        problems.append(f"num_fg normaliser: got {norm} want {max(exp['num_fg'], 1)}")
    if res.result.normalizers.get("num_fg_per_gt") != exp["fg_per_gt"]:
        problems.append(
            f"num_fg / num_gts: got {res.result.normalizers.get('num_fg_per_gt')} want {exp['fg_per_gt']}"
        )
    fg, want_fg = res.fg, exp["fg"]
    if fg.shape != want_fg.shape:
        return [*problems, f"fg: shape {tuple(fg.shape)} want {tuple(want_fg.shape)}"], worst
    if not torch.equal(fg, want_fg):
        extra, missing = (fg & ~want_fg).nonzero().tolist(), (want_fg & ~fg).nonzero().tolist()
        fmt = ", ".join(f"img{b} {describe_anchor(a, imgsz)}" for b, a in (extra + missing)[:6])
        problems.append(
            f"fg: {int(fg.sum())} positives want {int(want_fg.sum())}; {len(extra)} extra, {len(missing)} missing [{fmt}]"
        )
    both = fg & want_fg
    bad = (both & (res.gt_index != exp["gt_index"])).nonzero().tolist()
    if bad:
        lst = ", ".join(
            f"img{b} {describe_anchor(a, imgsz)} got {int(res.gt_index[b, a])} want {int(exp['gt_index'][b, a])}"
            for b, a in bad[:6]
        )
        problems.append(f"matched GT: {len(bad)} positives differ [{lst}]")
    if int((~fg & (res.gt_index != -1)).sum()):
        problems.append("matched GT: background anchors are not -1")
    # the class target is the plain IoU of a decoded box (exp of a logit: a vector kernel whose last bit
    # differs between CPUs): relative 1e-5 plus 1e-8 absolute, as the other harnesses' per-anchor targets
    off = ~torch.isclose(res.target_score.float(), exp["pred_iou"], rtol=1e-5, atol=1e-8)
    if off.any():
        diff = (res.target_score.float() - exp["pred_iou"]).abs()
        problems.append(
            f"class-target IoU: {int(off.sum())} anchors beyond rel 1e-5 + abs 1e-8, worst by {float(diff.max()):.3g}"
        )
    local = res.targets.local_index()
    got_k: list[list[int]] = [[] for _ in exp["dynamic_k"]]
    for row, d in sorted(res.result.gt_details.items()):
        got_k[int(res.targets.batch_idx[row])].append((int(local[row]), d["dynamic_k"]))
    got_k = [[k for _, k in sorted(v)] for v in got_k]
    if got_k != [list(k) for k in exp["dynamic_k"]]:
        problems.append(f"dynamic k per GT: got {got_k} want {exp['dynamic_k']}")
    return problems, worst


def case_summary(exp: dict) -> str:
    it = exp["items"]
    return (
        f"fg={exp['num_fg']} gts={exp['num_gts']} k={exp['dynamic_k']} total={exp['total']:.6g} "
        f"(iou {it['iou']:.6g}, obj {it['obj']:.6g}, cls {it['cls']:.6g}, l1 {it['l1']:.6g})"
    )


# ---------------------------------------------------------------------------------------------------------------
# Reading the golden file (torch only)
# ---------------------------------------------------------------------------------------------------------------


def load_golden(path) -> dict:
    return harness.load_fixture(path, FORMAT)


provenance = harness.provenance


def golden_inputs(data: dict, case: dict) -> tuple[list[torch.Tensor], dict, tuple[int, int]]:
    """Fresh float32 (levels, targets, imgsz) of a stored case (float16 values upcast exactly)."""
    rec = data["inputs"][case["inputs"]]
    levels = [t.to(torch.float32) for t in rec["levels"]]
    targets = {k: v.clone() for k, v in rec["targets"].items()}
    return levels, targets, tuple(rec["imgsz"])
