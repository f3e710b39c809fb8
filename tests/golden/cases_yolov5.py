"""Deterministic YOLOv5 ``ComputeLoss`` cases shared by the golden generator and the parity tests.

Used by
  * ``tests/golden/make_golden_yolov5.py`` (writes ``yolov5_cases.pt`` with the numbers of the real
    ``yolov5`` 7.0.14 package),
  * ``tests/test_golden_yolov5.py`` (replays the stored fixtures with yolodbg; no yolov5 needed),
  * ``tests/test_parity_yolov5.py`` (builds the same cases live, plus random scenes, and compares).

Only ``torch``, the standard library and the torch-only ``harness.py`` next to this file are imported
at module level; everything that needs the ``yolov5`` package imports it inside the function.

An *input set* is a batch: predictions (from a ``yolov5n/s`` model built from its yaml, random or
briefly overfitted with the real loss, or synthetic logits placed around the ground truth), the
targets in YOLOv5 form and the anchors in input pixels. *Cases* share input sets and differ in
recipe parameters. Boxes of a scene are ``(cls, x1, y1, x2, y2)`` in input pixels.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import harness
import torch

YOLOV5_VERSION = "7.0.14"
FORMAT = "yolodbg.golden.yolov5/1"
TERMS = ("box", "obj", "cls")

Box = harness.Box


# ----------------------------------------------------------------------------------------------------- scenes


_clip = harness.clip_box


def scene_standard(rng: random.Random, H: int, W: int, nc: int, n: int = 4) -> list[Box]:
    """``n`` medium boxes (8 %-50 % of each side)."""
    out = []
    for _ in range(n):
        w, h = rng.uniform(0.08, 0.5) * W, rng.uniform(0.08, 0.5) * H
        x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
        out.append((rng.randrange(nc), x1, y1, x1 + w, y1 + h))
    return out


def scene_tiny(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Sub-anchor boxes: 1-2 px ones match no anchor (ratio > 4 to the 10×13 P3 anchor), 3-8 px ones do."""
    out = []
    for w, h in ((1.0, 1.5), (2.0, 2.0), (3.0, 4.0), (5.0, 7.0), (8.0, 3.0)):
        cx, cy = rng.uniform(w, W - w), rng.uniform(h, H - h)
        out.append((rng.randrange(nc), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out


def scene_huge(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Whole image, half image, a full-width thin line (fails every anchor ratio) and a 90 % box."""
    return [
        (rng.randrange(nc), 0.0, 0.0, float(W), float(H)),
        (rng.randrange(nc), 0.0, H * 0.5, float(W), float(H)),
        (rng.randrange(nc), 0.0, H * 0.3, float(W), H * 0.3 + 4.0),
        (rng.randrange(nc), W * 0.05, H * 0.05, W * 0.95, H * 0.95),
    ]


def scene_crowd(rng: random.Random, H: int, W: int, nc: int, n: int = 10) -> list[Box]:
    """Jittered copies of one box (they share objectness cells: duplicate writes), plus exact duplicates."""
    bw, bh = W * rng.uniform(0.2, 0.4), H * rng.uniform(0.2, 0.4)
    bx, by = rng.uniform(0.1 * W, W - bw - 0.1 * W), rng.uniform(0.1 * H, H - bh - 0.1 * H)
    out = []
    for k in range(n):
        j = [rng.uniform(-0.1, 0.1) for _ in range(4)]
        c = 0 if k % 3 else rng.randrange(nc)
        out.append(_clip(c, bx + j[0] * bw, by + j[1] * bh, bx + bw + j[2] * bw, by + bh + j[3] * bh, H, W))
    out.append(out[2])
    out.append(((out[4][0] + 1) % nc, *out[4][1:]))
    return out


def scene_border(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Boxes touching each border, two corners, and boxes centred exactly on the right / bottom edge
    (``cx = 1.0``: the cell index is clamped in place, and so is the regression target's cell)."""
    w, h = W * 0.2, H * 0.25
    cy, cx = rng.uniform(h, H - h), rng.uniform(w, W - w)
    return [
        (rng.randrange(nc), 0.0, cy - h / 2, w, cy + h / 2),
        (rng.randrange(nc), cx - w / 2, 0.0, cx + w / 2, h),
        (rng.randrange(nc), W - w, cy - h / 3, float(W), cy + h / 3),
        (rng.randrange(nc), cx - w / 3, H - h, cx + w / 3, float(H)),
        (rng.randrange(nc), 0.0, 0.0, 37.0, 29.0),
        (rng.randrange(nc), W - 45.0, H - 21.0, float(W), float(H)),
        (rng.randrange(nc), W - 20.0, cy - 15.0, W + 20.0, cy + 15.0),  # centre on the right edge
        (rng.randrange(nc), cx - 30.0, H - 12.0, cx + 30.0, H + 12.0),  # centre on the bottom edge
    ]


def scene_grid(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Centres on cell corners (integer grid coordinates on every level: the right/lower offset falls back
    onto the own cell, a duplicate positive), on half-cell lines (no neighbour) and near the border."""
    out = []
    for _ in range(3):
        cx, cy = 32.0 * rng.randrange(1, W // 32), 32.0 * rng.randrange(1, H // 32)
        w, h = rng.choice((24.0, 40.0, 64.0)), rng.choice((20.0, 48.0, 90.0))
        out.append((rng.randrange(nc), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    cx, cy = (
        8.0 * rng.randrange(2, W // 8 - 2) + 4.0,
        8.0 * rng.randrange(2, H // 8 - 2) + 4.0,
    )  # P3 half-cell
    out.append((rng.randrange(nc), cx - 9.0, cy - 11.0, cx + 9.0, cy + 11.0))
    out.append((rng.randrange(nc), 2.0, 3.0, 14.0, 17.0))  # centre within one cell of the top-left corner
    return out


SCENES = {
    "standard": scene_standard,
    "tiny": scene_tiny,
    "huge": scene_huge,
    "crowd": scene_crowd,
    "border": scene_border,
    "grid": scene_grid,
}


def make_scene(spec: str, rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """``spec`` is ``""`` (no boxes) or scene names joined by ``+``; ``name:n`` passes a count."""
    return harness.compose_scene(spec, SCENES, rng, H, W, nc)


def targets_from_boxes(per_image: list[list[Box]], H: int, W: int) -> dict:
    """YOLOv5 rows split into batch_idx / cls / bboxes (normalised cx, cy, w, h), float32."""
    return harness.targets_from_boxes(per_image, H, W, cls_1d=True)


def target_rows(targets: dict) -> torch.Tensor:
    """``(n, 6)`` (image, class, cx, cy, w, h): what YOLOv5's collate hands to ComputeLoss."""
    return torch.cat(
        (targets["batch_idx"].view(-1, 1), targets["cls"].view(-1, 1), targets["bboxes"]), 1
    ).float()


# ----------------------------------------------------------------------------------------------- input sets

V5S_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
CUSTOM_ANCHORS = [[7.25, 9.5, 19.0, 14.75, 13.5, 31.0], [41.5, 27.0, 28.25, 66.5, 77.0, 58.5], [96.0, 140.5, 201.0, 97.25, 260.0, 250.0]]  # fmt: skip

# model yaml ("yolov5n.yaml", "yolov5s.yaml", "hub/yolov5n6.yaml") or None (synthetic), nc, imgsz (H, W),
# per-image scenes (their number is the batch size), preds random | fitted | synthetic, seed, fit_steps,
# anchors (pixel anchors of the yaml to override, e.g. AutoAnchor-like floats).
INPUT_SETS: dict[str, dict[str, Any]] = {
    "v5n_rand_320_nc3": dict(
        model="yolov5n.yaml",
        nc=3,
        imgsz=(320, 320),
        scenes=["standard:3+huge", "border"],
        preds="random",
        seed=0,
    ),
    "v5n_fit_256_nc3_crowd": dict(
        model="yolov5n.yaml",
        nc=3,
        imgsz=(256, 256),
        scenes=["crowd:8+standard:2", "", "tiny+grid"],
        preds="fitted",
        seed=1,
        fit_steps=30,
    ),
    "v5n_fit_256x416_nc3_edges": dict(
        model="yolov5n.yaml",
        nc=3,
        imgsz=(256, 416),
        scenes=["grid+border", "standard:4+tiny"],
        preds="fitted",
        seed=2,
        fit_steps=25,
    ),
    "v5s_rand_640_nc1": dict(
        model="yolov5s.yaml",
        nc=1,
        imgsz=(640, 640),
        scenes=["standard:5+tiny+huge+grid"],
        preds="random",
        seed=3,
    ),
    "v5n_fit_128_nc80": dict(
        model="yolov5n.yaml",
        nc=80,
        imgsz=(128, 128),
        scenes=["standard:4+grid"],
        preds="fitted",
        seed=4,
        fit_steps=30,
    ),
    "v5n_rand_128_nogt": dict(
        model="yolov5n.yaml", nc=3, imgsz=(128, 128), scenes=["", ""], preds="random", seed=5
    ),
    "v5n_custom_anchors_192": dict(
        model="yolov5n.yaml",
        nc=2,
        imgsz=(192, 192),
        scenes=["standard:3+tiny", "crowd:6+border"],
        preds="fitted",
        seed=6,
        fit_steps=20,
        anchors=CUSTOM_ANCHORS,
    ),
    "v5n6_rand_192_nl4": dict(
        model="hub/yolov5n6.yaml",
        nc=2,
        imgsz=(192, 192),
        scenes=["standard:3+huge", "grid"],
        preds="random",
        seed=7,
    ),
    "synth_160x256_nc4": dict(
        model=None,
        nc=4,
        imgsz=(160, 256),
        scenes=["crowd:10+grid", "standard:5+border+tiny"],
        preds="synthetic",
        seed=8,
    ),
}

# name, input set, params (yolodbg recipe parameters; each one maps onto the real ComputeLoss / hyp)
CASES: list[dict[str, Any]] = [
    dict(name="v5n_rand_320_nc3", inputs="v5n_rand_320_nc3"),
    dict(name="v5n_rand_320_nc3_imgsz640", inputs="v5n_rand_320_nc3", params={"gain.imgsz": 640}),
    dict(name="v5n_fit_256_nc3_crowd", inputs="v5n_fit_256_nc3_crowd"),
    dict(name="v5n_fit_256_nc3_crowd_sorted", inputs="v5n_fit_256_nc3_crowd", params={"sort_obj_iou": True}),
    dict(
        name="v5n_fit_256_nc3_crowd_smooth_focal",
        inputs="v5n_fit_256_nc3_crowd",
        params={"label_smoothing": 0.1, "fl_gamma": 1.5},
    ),
    dict(name="v5n_fit_256x416_nc3_edges", inputs="v5n_fit_256x416_nc3_edges"),
    dict(
        name="v5n_fit_256x416_nc3_edges_pw_gr",
        inputs="v5n_fit_256x416_nc3_edges",
        params={"cls_pw": 2.0, "obj_pw": 0.5, "gr": 0.5, "assigner.anchor_t": 2.91},
    ),
    dict(name="v5s_rand_640_nc1", inputs="v5s_rand_640_nc1"),
    dict(name="v5n_fit_128_nc80", inputs="v5n_fit_128_nc80"),
    dict(
        name="v5n_fit_128_nc80_scratch_high",
        inputs="v5n_fit_128_nc80",
        params={"gain.cls": 0.3, "gain.obj": 0.7, "balance": "4/1/0.5"},
    ),
    dict(name="v5n_rand_128_nogt", inputs="v5n_rand_128_nogt"),
    dict(name="v5n_custom_anchors_192", inputs="v5n_custom_anchors_192"),
    dict(
        name="v5n_custom_anchors_192_norescale",
        inputs="v5n_custom_anchors_192",
        params={"gain.rescale": False},
    ),
    dict(name="v5n6_rand_192_nl4", inputs="v5n6_rand_192_nl4"),
    dict(name="synth_160x256_nc4", inputs="synth_160x256_nc4"),
    dict(name="synth_160x256_nc4_sorted", inputs="synth_160x256_nc4", params={"sort_obj_iou": True}),
]
for _c in CASES:
    _c.setdefault("params", {})


def input_set_targets(spec: dict[str, Any]) -> tuple[list[list[Box]], dict]:
    H, W = spec["imgsz"]
    rng = random.Random(spec["seed"])
    per_image = [make_scene(s, rng, H, W, spec["nc"]) for s in spec["scenes"]]
    return per_image, targets_from_boxes(per_image, H, W)


def random_scene(seed: int) -> dict:
    """A random scene for the live parity loop: batch size, input size (multiples of 32), nc, box counts and
    sizes log-uniform from 1 px to the whole image, centres snapped to cell corners / half cells / edges."""
    rng = random.Random(5000 + seed)
    H, W = 32 * rng.randint(2, 10), 32 * rng.randint(2, 10)
    B, nc = rng.randint(1, 4), rng.choice([1, 2, 3, 7])
    per_image: list[list[Box]] = []
    for _ in range(B):
        boxes: list[Box] = []
        for _ in range(0 if rng.random() < 0.2 else rng.choice([1, 2, 3, 6, 12])):
            w = math.exp(rng.uniform(0.0, math.log(W)))
            h = math.exp(rng.uniform(0.0, math.log(H)))
            cx, cy = rng.uniform(0, W), rng.uniform(0, H)
            r = rng.random()
            if r < 0.2:
                cx, cy = 8.0 * round(cx / 8), 8.0 * round(cy / 8)
            elif r < 0.3:
                cx, cy = 8.0 * round(cx / 8) + 4.0, 8.0 * round(cy / 8) + 4.0
            elif r < 0.4:
                cx = float(W) if rng.random() < 0.5 else 0.0
            boxes.append((rng.randrange(nc), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        per_image.append(boxes)
    params = [{}, {"sort_obj_iou": True}, {"label_smoothing": 0.2}, {"assigner.anchor_t": 3.0}, {"gr": 0.25}]
    return {
        "name": f"random_{seed:02d}",
        "imgsz": (H, W),
        "nc": nc,
        "per_image": per_image,
        "preds": "synthetic" if seed % 2 else "random",
        "model": "yolov5s.yaml" if seed % 3 == 2 else "yolov5n.yaml",
        "seed": seed,
        "params": params[seed % len(params)],
    }


# ------------------------------------------------------------------------------------------------ predictions


def level_shapes(imgsz, strides) -> list[tuple[int, int]]:
    return [(imgsz[0] // int(s), imgsz[1] // int(s)) for s in strides]


def make_images(per_image: list[list[Box]], H: int, W: int, nc: int, seed: int) -> torch.Tensor:
    """Synthetic images: dim noise plus the GT rectangles filled with a per-class colour (learnable)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(per_image), 3, H, W, generator=g) * 0.25
    palette = torch.rand(max(nc, 1), 3, generator=g) * 0.7 + 0.3
    for b, boxes in enumerate(per_image):
        for c, x1, y1, x2, y2 in boxes:
            i1, j1 = max(math.floor(x1), 0), max(math.floor(y1), 0)
            i2, j2 = max(math.ceil(x2), i1 + 1), max(math.ceil(y2), j1 + 1)
            x[b, :, j1:j2, i1:i2] = palette[c].view(3, 1, 1)
    return x


def default_hyp(nc: int, nl: int, imgsz: int) -> dict:
    """hyp.scratch-low.yaml's loss keys after train.py's rescaling, plus label_smoothing 0."""
    import yaml

    hyp = yaml.safe_load((yolov5_root() / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = 0.0
    return hyp


def yolov5_root():

    import yolov5

    return Path(yolov5.__file__).resolve().parent


def build_model(cfg: str, nc: int, seed: int, anchors: list | None = None):
    """A yolov5 DetectionModel from the package's yaml (random init), with the default hyp attached."""
    import yaml
    from yolov5.models.yolo import DetectionModel

    doc = yaml.safe_load((yolov5_root() / "models" / cfg).read_text())
    doc["nc"] = nc
    if anchors is not None:
        doc["anchors"] = anchors
    torch.manual_seed(seed)
    model = DetectionModel(doc, ch=3)
    model.hyp = default_hyp(nc, model.model[-1].nl, 640)
    model.train()
    return model


def detect_anchors_px(model) -> torch.Tensor:
    """``(nl, na, 2)`` anchors in input pixels as the model uses them (grid anchors × stride)."""
    m = model.model[-1]
    return (m.anchors * m.stride.view(-1, 1, 1)).detach().clone()


def model_outputs(spec: dict, per_image, targets: dict) -> tuple[list[torch.Tensor], torch.Tensor, tuple]:
    from yolov5.utils.loss import ComputeLoss

    H, W = spec["imgsz"]
    model = build_model(spec["model"], spec["nc"], spec["seed"], spec.get("anchors"))
    model.hyp = default_hyp(spec["nc"], model.model[-1].nl, max(H, W))
    images = make_images(per_image, H, W, spec["nc"], spec["seed"])
    steps = spec.get("fit_steps", 0) if spec["preds"] == "fitted" else 0
    if steps:
        crit = ComputeLoss(model)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        rows = target_rows(targets)
        for _ in range(steps):
            opt.zero_grad()
            loss, _ = crit(model(images), rows)
            loss.sum().backward()
            opt.step()
    model.train()
    with torch.no_grad():
        out = [t.detach().clone().float() for t in model(images)]
    strides = tuple(float(s) for s in model.model[-1].stride)
    return out, detect_anchors_px(model), strides


def synthetic_outputs(
    per_image, imgsz, nc: int, seed: int, anchors_px: torch.Tensor, strides
) -> list[torch.Tensor]:
    """Logits like a half-trained model: low objectness everywhere, and at each GT's own cell, for every anchor
    within the ratio test, a box near the GT (noisy), high objectness and class logit."""
    g = torch.Generator().manual_seed(seed)
    B, na = len(per_image), anchors_px.shape[1]
    out = []
    for (h, w), s, anc in zip(level_shapes(imgsz, strides), strides, anchors_px, strict=True):
        t = torch.randn(B, na, h, w, 5 + nc, generator=g)
        t[..., 4] -= 5.0
        t[..., 5:] -= 3.0
        for b, boxes in enumerate(per_image):
            for c, x1, y1, x2, y2 in boxes:
                gx, gy = (x1 + x2) / 2 / s, (y1 + y2) / 2 / s
                gw, gh = (x2 - x1) / s, (y2 - y1) / s
                i, j = min(max(int(gx), 0), w - 1), min(max(int(gy), 0), h - 1)
                for a in range(na):
                    aw, ah = float(anc[a, 0]) / s, float(anc[a, 1]) / s
                    if max(gw / aw, aw / max(gw, 1e-9), gh / ah, ah / max(gh, 1e-9)) >= 4.0:
                        continue
                    want = torch.tensor(
                        [
                            (gx - i + 0.5) / 2,
                            (gy - j + 0.5) / 2,
                            math.sqrt(gw / aw) / 2,
                            math.sqrt(gh / ah) / 2,
                        ]
                    ).clamp(0.02, 0.98)
                    t[b, a, j, i, :4] = torch.logit(want) + 0.3 * torch.randn(4, generator=g)
                    t[b, a, j, i, 4] = 2.0 + torch.randn(1, generator=g)
                    t[b, a, j, i, 5 + c] = 2.5 + torch.randn(1, generator=g)
        out.append(t)
    return out


def build_inputs(spec: dict[str, Any]) -> dict:
    """An input set as float32 tensors: ``levels``, ``targets``, ``anchors_px``, ``strides``, ``imgsz``."""
    per_image, targets = input_set_targets(spec)
    return _inputs(spec, per_image, targets)


def build_random_inputs(scene: dict) -> dict:
    targets = targets_from_boxes(scene["per_image"], *scene["imgsz"])
    return _inputs(scene, scene["per_image"], targets)


def _inputs(spec: dict, per_image, targets: dict) -> dict:
    if spec["preds"] == "synthetic":
        strides = (8.0, 16.0, 32.0)
        anchors = torch.tensor(spec.get("anchors") or V5S_ANCHORS, dtype=torch.float32).view(3, 3, 2)
        levels = synthetic_outputs(per_image, spec["imgsz"], spec["nc"], spec["seed"], anchors, strides)
    else:
        levels, anchors, strides = model_outputs(spec, per_image, targets)
    return {
        "levels": levels,
        "targets": targets,
        "anchors_px": anchors,
        "strides": strides,
        "imgsz": spec["imgsz"],
    }


def round_levels(levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Round predictions to float16 and back: the golden file stores them in half the space, exactly."""
    return [t.half().float() for t in levels]


# ------------------------------------------------------------------------ the reference: real ComputeLoss


def reference_hyp(params: dict, nc: int, nl: int, imgsz: tuple[int, int]) -> dict:
    """The hyp dict train.py would build for these yolodbg parameters (scratch-low defaults)."""
    import yaml

    hyp = yaml.safe_load((yolov5_root() / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())
    hyp["box"] = params.get("gain.box", hyp["box"])
    hyp["obj"] = params.get("gain.obj", hyp["obj"])
    hyp["cls"] = params.get("gain.cls", hyp["cls"])
    for key, hkey in (("assigner.anchor_t", "anchor_t"), ("fl_gamma", "fl_gamma"), ("cls_pw", "cls_pw")):
        hyp[hkey] = params.get(key, hyp[hkey])
    hyp["obj_pw"] = params.get("obj_pw", hyp["obj_pw"])
    if params.get("gain.rescale", True):  # train.py, right before it attaches hyp to the model
        size = params.get("gain.imgsz") or max(imgsz)
        hyp["box"] *= 3 / nl
        hyp["cls"] *= nc / 80 * 3 / nl
        hyp["obj"] *= (size / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = params.get("label_smoothing", 0.0)
    return hyp


class _Detect(torch.nn.Module):
    """What ComputeLoss reads from the Detect layer: nl, na, nc, anchors (grid units), stride."""

    def __init__(self, anchors_px: torch.Tensor, strides, nc: int) -> None:
        super().__init__()
        stride = torch.tensor(strides, dtype=torch.float32)
        self.register_buffer("anchors", anchors_px.float() / stride.view(-1, 1, 1))  # as Detect stores them
        self.stride, self.nl, self.na, self.nc = stride, anchors_px.shape[0], anchors_px.shape[1], nc


class StandInModel(torch.nn.Module):
    """A model as far as ComputeLoss is concerned (parameters for the device, hyp, model[-1])."""

    def __init__(self, anchors_px: torch.Tensor, strides, nc: int, hyp: dict) -> None:
        super().__init__()
        self.model = torch.nn.ModuleList([torch.nn.Linear(1, 1), _Detect(anchors_px, strides, nc)])
        self.hyp = hyp


def reference_criterion(inputs: dict, params: dict):
    from yolov5.utils.loss import ComputeLoss

    nc = inputs["levels"][0].shape[-1] - 5
    nl = len(inputs["levels"])
    model = StandInModel(
        inputs["anchors_px"], inputs["strides"], nc, reference_hyp(params, nc, nl, inputs["imgsz"])
    )
    crit = ComputeLoss(model)
    unknown = set(params) - {
        "gain.box", "gain.obj", "gain.cls", "gain.rescale", "gain.imgsz", "assigner.anchor_t", "fl_gamma",
        "cls_pw", "obj_pw", "label_smoothing", "gr", "sort_obj_iou", "balance",
    }  # fmt: skip
    if unknown:
        raise ValueError(f"no ComputeLoss mapping for params {sorted(unknown)}")
    if "gr" in params:
        crit.gr = params["gr"]
    if params.get("sort_obj_iou"):
        crit.sort_obj_iou = True
    if "balance" in params:
        crit.balance = [float(v) for v in params["balance"].split("/")]
    return crit


def reference_expected(inputs: dict, params: dict) -> dict:
    """Run the real ComputeLoss on exactly these float32 inputs; record items, matches and objectness targets."""
    crit = reference_criterion(inputs, params)
    levels = [t.clone() for t in inputs["levels"]]
    rows = target_rows(inputs["targets"])
    tobj: list[torch.Tensor] = []
    bce_obj = crit.BCEobj

    def recording_bce_obj(pred, true):
        tobj.append(true.detach().clone())
        return bce_obj(pred, true)

    crit.BCEobj = recording_bce_obj
    loss, items = crit(levels, rows.clone())
    _, _, indices, _ = crit.build_targets(levels, rows.clone())
    B = levels[0].shape[0]
    dense = torch.cat([t.reshape(B, -1) for t in tobj], 1)
    nz = dense.nonzero()
    return {
        "items": {k: float(v) for k, v in zip(TERMS, items, strict=True)},
        "loss": float(loss[0]),
        "objective": float(loss.sum()),
        "n_per_level": [int(ix[0].shape[0]) for ix in indices],
        "indices": [
            torch.stack([v.long() for v in ix], 1).to(torch.int16) for ix in indices
        ],  # (n, 4) b a gj gi
        "tobj_index": (nz[:, 0] * dense.shape[1] + nz[:, 1]).to(torch.int32),
        "tobj_value": dense[nz[:, 0], nz[:, 1]].clone(),
        "num_anchors": int(dense.shape[1]),
    }


# ------------------------------------------------------------------------------ yolodbg side and comparison


def replay(inputs: dict, params: dict):
    """yolodbg's ``yolov5`` recipe on a canonical bundle built from the inputs -> (LossResult, Targets)."""
    from yolodbg import bundle, groundtruth
    from yolodbg.recipes.yolov5 import YoloV5

    b = bundle.from_object(
        {
            "yolodbg": 1,
            "head": "yolov5",
            "outputs": list(inputs["levels"]),
            "anchors": inputs["anchors_px"].tolist(),
            "strides": list(inputs["strides"]),
            "input_size": list(inputs["imgsz"]),
            "targets": {k: v.clone() for k, v in inputs["targets"].items()},
        }
    )
    recipe = YoloV5(params)
    size, nc = recipe.input_layout(b)
    targets = groundtruth.from_batch(b.targets, b.batch_size, size, nc)
    return recipe.run(b, targets), targets


# Tolerances that hold across CPU kernels (AVX512 / AVX2 / scalar round sums and transcendental
# functions differently). Terms and objective: relative 1e-5. The objectness target is the clamped CIoU of
# a predicted box (sigmoid and exp run as vector kernels, which differ in the last bit between CPUs: one or
# two ulps seen); CIoU subtracts penalties from the IoU, so small values lose relative precision: relative
# 1e-5 plus an absolute 1e-8 (a tenth of an ulp near 1). The matches are exact: they come from the labels
# and anchors alone (divisions and comparisons, correctly rounded on every kernel), never from predictions,
# so no rounding of a reduction can reorder them; a difference there is a bug.
TOBJ_RTOL = 1e-5
TOBJ_ATOL = 1e-8


# loss items and objective: relative to the expected value itself (an expected 0 must stay ~0)
rel_close = harness.rel_close_no_floor


def dense_tobj(exp: dict, B: int) -> torch.Tensor:
    out = torch.zeros(B * exp["num_anchors"], dtype=torch.float32)
    out[exp["tobj_index"].long()] = exp["tobj_value"].float()
    return out.view(B, exp["num_anchors"])


def matches_by_level(res) -> list[torch.Tensor]:
    """yolodbg's positives as the framework's per-level ``(b, a, gj, gi)`` lists, in order."""
    pos, anc = res.positives, res.anchors
    level = anc.level[pos.anchor]
    rows = torch.stack((pos.image, anc.slot[pos.anchor], anc.cell[pos.anchor, 1], anc.cell[pos.anchor, 0]), 1)
    return [rows[level == i] for i in range(len(anc.strides))]


def compare(res, targets, exp: dict, rtol: float = 1e-5) -> list[str]:
    """Every difference between a yolodbg LossResult and an expected record, as readable lines."""
    from yolodbg import breakdown

    missing, off = harness.term_differences(
        res.terms, {k: exp["items"][k] for k in TERMS}, rtol, close=rel_close
    )
    problems = missing + off
    if not rel_close(res.objective, exp["objective"], rtol):
        problems.append(f"objective: got {res.objective!r} want {exp['objective']!r}")
    got_levels = matches_by_level(res)
    got_n = [int(v.shape[0]) for v in got_levels]
    if got_n != exp["n_per_level"]:
        problems.append(f"positives per level: got {got_n} want {exp['n_per_level']}")
    else:
        for i, (g, w) in enumerate(zip(got_levels, exp["indices"], strict=True)):
            if not torch.equal(g, w.long()):
                k = int((g != w.long()).any(1).nonzero()[0])
                problems.append(
                    f"level {i}: positive {k} is (b, a, gj, gi) {g[k].tolist()}, want {w[k].tolist()} (order matters: "
                    "it decides the objectness write that wins)"
                )
    B = res.batch_size
    want_t = dense_tobj(exp, B)
    got_t = res.target_score.float()
    if got_t.shape != want_t.shape:
        problems.append(f"objectness targets: shape {tuple(got_t.shape)} want {tuple(want_t.shape)}")
    elif not torch.isclose(got_t, want_t, rtol=TOBJ_RTOL, atol=TOBJ_ATOL).all():
        bad = (~torch.isclose(got_t, want_t, rtol=TOBJ_RTOL, atol=TOBJ_ATOL)).nonzero()
        b, a = (int(v) for v in bad[0])
        problems.append(
            f"objectness targets: {len(bad)} cells beyond rel {TOBJ_RTOL:g} + abs {TOBJ_ATOL:g}; first img{b} "
            f"anchor {res.anchors.describe(a)} got {float(got_t[b, a])!r} want {float(want_t[b, a])!r}"
        )
    if not torch.equal(res.fg, want_t.ne(0) | res.fg) or int(res.fg.sum()) < int(want_t.ne(0).sum()):
        problems.append("fg does not cover every cell with a non-zero objectness target")
    problems += [f"conservation: {v}" for v in breakdown.build(res, targets).violations]
    return problems


def case_summary(exp: dict) -> str:
    it = exp["items"]
    return (
        f"box {it['box']:.6g} obj {it['obj']:.6g} cls {it['cls']:.6g} objective {exp['objective']:.6g}, "
        f"positives/level {exp['n_per_level']}"
    )


# -------------------------------------------------------------------------------------------- golden file


def load_golden(path) -> dict:
    return harness.load_fixture(path, FORMAT)


provenance = harness.provenance


def golden_inputs(data: dict, case: dict) -> dict:
    """The stored input set of a case as float32 tensors (the predictions were rounded to float16 first)."""
    rec = data["inputs"][case["inputs"]]
    return {
        "levels": [t.float() for t in rec["levels"]],
        "targets": {k: v.clone() for k, v in rec["targets"].items()},
        "anchors_px": rec["anchors_px"].float(),
        "strides": tuple(rec["strides"]),
        "imgsz": tuple(rec["imgsz"]),
    }
