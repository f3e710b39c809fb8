"""Deterministic YOLOv8 / YOLO11 loss cases shared by the golden generator and the parity tests.

Used by
  * ``tests/golden/make_golden.py`` (writes ``yolov8_cases.pt`` with the expected Ultralytics numbers),
  * ``tests/test_golden_yolov8.py`` (replays the stored fixtures with yolodbg; no ultralytics needed),
  * ``tests/test_parity_ultralytics.py`` (builds the same cases live, plus random scenes, and compares).

Only ``torch``, the standard library and the torch-only neighbours ``harness.py`` / ``ties.py`` are
imported at module level. Everything that needs ultralytics imports it inside the function, so the
fixture test runs where ultralytics is absent. The shared skeleton (fixture loading, tolerances,
failure messages) is ``harness.py``; what is specific to Ultralytics' loss is here.

Vocabulary
  * An *input set* is a batch: a model (or the synthetic generator) produces the raw train-mode head
    output for a set of images with ground truth. Several *cases* can share one input set and differ in
    recipe parameters, output form (dict / older list of levels) or the ``input_size`` argument.
  * Boxes of a scene are given as ``(cls, x1, y1, x2, y2)`` in network-input pixels and converted to the
    Ultralytics batch form (normalised cx, cy, w, h, float32) by :func:`targets_from_boxes`.
"""

from __future__ import annotations

import math
import random
from typing import Any

import harness
import ties
import torch

ULTRALYTICS_VERSION = "8.4.190"
STRIDES = (8, 16, 32)
REG_MAX = 16
FORMAT = "yolodbg.golden.yolov8/1"

Box = harness.Box


# ---------------------------------------------------------------------------------------------------------------
# Scenes: per image a list of boxes in input pixels. Pure Python (random.Random), stable across torch versions.
# ---------------------------------------------------------------------------------------------------------------


_clip_box = harness.clip_box


def scene_standard(rng: random.Random, H: int, W: int, nc: int, n: int = 4) -> list[Box]:
    """``n`` medium boxes (10 %-60 % of each side) at random places."""
    out = []
    for _ in range(n):
        w = rng.uniform(0.1, 0.6) * W
        h = rng.uniform(0.1, 0.6) * H
        x1 = rng.uniform(0, W - w)
        y1 = rng.uniform(0, H - h)
        out.append((rng.randrange(nc), x1, y1, x1 + w, y1 + h))
    return out


def scene_tiny(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Boxes below stride 8 and below stride 16 (the small-box floor of the assigner), some centred exactly
    on a P3 anchor centre (the floored box then has its edges on anchor centres), some centred on a cell
    corner (the true box contains no anchor centre), and sides exactly at / just under the floor (16 px)."""

    def p3(i: int) -> float:  # P3 anchor centre coordinate
        return 8.0 * i + 4.0

    nx, ny = W // 8, H // 8
    out: list[Box] = []
    # below stride 8, random positions
    for w, h in ((3.0, 3.0), (5.0, 7.0), (2.0, 6.5), (7.5, 1.5)):
        cx = rng.uniform(w, W - w)
        cy = rng.uniform(h, H - h)
        out.append((rng.randrange(nc), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    # centred exactly on a P3 anchor centre: floored 16x16 box has its edges on the neighbouring centres
    i, j = rng.randrange(1, nx - 1), rng.randrange(1, ny - 1)
    out.append((rng.randrange(nc), p3(i) - 3, p3(j) - 3, p3(i) + 3, p3(j) + 3))
    # centred on a cell corner: the true box holds no anchor centre at all
    i, j = rng.randrange(1, nx - 1), rng.randrange(1, ny - 1)
    out.append((rng.randrange(nc), 8.0 * i - 2, 8.0 * j - 2, 8.0 * i + 2, 8.0 * j + 2))
    # between stride 8 and stride 16
    for w, h in ((12.0, 10.0), (15.0, 9.0), (15.9, 15.9)):
        cx = rng.uniform(w, W - w)
        cy = rng.uniform(h, H - h)
        out.append((rng.randrange(nc), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    # exactly the floor value on one side (16 is not < 16), tiny on the other
    cx, cy = rng.uniform(16, W - 16), rng.uniform(16, H - 16)
    out.append((rng.randrange(nc), cx - 8, cy - 2, cx + 8, cy + 2))
    return out


def scene_huge(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Whole-image box (beyond the DFL reach of 15 grid units on P3/P4), a wide half-image box, a full-width
    thin line (tiny height, huge width: the floor applies to one side only) and a 90 % box."""
    return [
        (rng.randrange(nc), 0.0, 0.0, float(W), float(H)),
        (rng.randrange(nc), 0.0, H * 0.5, float(W), float(H)),
        (rng.randrange(nc), 0.0, H * 0.3, float(W), H * 0.3 + 4.0),
        (rng.randrange(nc), W * 0.05, H * 0.05, W * 0.95, H * 0.95),
    ]


def scene_crowd(rng: random.Random, H: int, W: int, nc: int, n: int = 12) -> list[Box]:
    """``n`` heavily overlapping jittered copies of one box (same and different classes), plus an exact
    duplicate with the same class and one with another class (ties in the multi-gt resolution)."""
    bw, bh = W * rng.uniform(0.25, 0.45), H * rng.uniform(0.25, 0.45)
    bx, by = rng.uniform(0.1 * W, W - bw - 0.1 * W), rng.uniform(0.1 * H, H - bh - 0.1 * H)
    out = []
    for k in range(n):
        jx1, jy1, jx2, jy2 = (rng.uniform(-0.15, 0.15) for _ in range(4))
        c = 0 if k % 3 else rng.randrange(nc)
        out.append(_clip_box(c, bx + jx1 * bw, by + jy1 * bh, bx + bw + jx2 * bw, by + bh + jy2 * bh, H, W))
    out.append(out[3])
    dup = out[5]
    out.append(((dup[0] + 1) % nc, *dup[1:]))
    return out


def scene_border(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Boxes touching each border and two corners."""
    w, h = W * 0.2, H * 0.25
    cy, cx = rng.uniform(h, H - h), rng.uniform(w, W - w)
    return [
        (rng.randrange(nc), 0.0, cy - h / 2, w, cy + h / 2),  # left
        (rng.randrange(nc), cx - w / 2, 0.0, cx + w / 2, h),  # top
        (rng.randrange(nc), W - w, cy - h / 3, float(W), cy + h / 3),  # right
        (rng.randrange(nc), cx - w / 3, H - h, cx + w / 3, float(H)),  # bottom
        (rng.randrange(nc), 0.0, 0.0, 37.0, 29.0),  # top-left corner
        (rng.randrange(nc), W - 45.0, H - 21.0, float(W), float(H)),  # bottom-right corner
    ]


def scene_anchor_edges(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Boxes whose edges lie exactly on anchor centres of P3 (8i+4), P4 (16i+8) and P5 (32i+16)."""
    out = []
    for s, n in ((8, 3), (16, 2), (32, 1)):
        nx, ny = W // s, H // s
        for _ in range(n):
            i1 = rng.randrange(0, nx - 2)
            i2 = rng.randrange(i1 + 1, min(nx, i1 + 8))
            j1 = rng.randrange(0, ny - 2)
            j2 = rng.randrange(j1 + 1, min(ny, j1 + 8))
            c = s / 2
            out.append((rng.randrange(nc), s * i1 + c, s * j1 + c, s * i2 + c, s * j2 + c))
    # one box with P3-centre edges on x and P4-centre edges on y
    out.append((rng.randrange(nc), 20.0, 24.0, 60.0, 72.0))
    return out


def scene_degenerate(rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """Degenerate boxes a user bundle may contain: a zero-size box at the origin (its pixel coordinates sum
    to 0, so Ultralytics treats it as padding although it keeps its row slot), a zero-area point box on the
    first P3 anchor centre (valid; every CIoU with it clamps to 0, so t = 0 for all its candidates), a
    zero-width vertical line, and an ordinary box."""
    return [
        (rng.randrange(nc), 0.0, 0.0, 0.0, 0.0),
        (rng.randrange(nc), 4.0, 4.0, 4.0, 4.0),
        (rng.randrange(nc), W * 0.5, H * 0.2, W * 0.5, H * 0.6),
        (rng.randrange(nc), W * 0.55, H * 0.5, W * 0.9, H * 0.95),
    ]


SCENES = {
    "standard": scene_standard,
    "tiny": scene_tiny,
    "huge": scene_huge,
    "crowd": scene_crowd,
    "border": scene_border,
    "anchor_edges": scene_anchor_edges,
    "degenerate": scene_degenerate,
}


def make_scene(spec: str, rng: random.Random, H: int, W: int, nc: int) -> list[Box]:
    """``spec`` is ``""`` (no boxes) or scene names joined by ``+``; ``name:n`` passes a count."""
    return harness.compose_scene(spec, SCENES, rng, H, W, nc)


targets_from_boxes = harness.targets_from_boxes  # Ultralytics batch form; cls_1d stores cls as (M,)


def random_scene(seed: int) -> dict:
    """A random scene for the live parity loop: batch size, input size, nc, box counts and sizes (log-uniform
    from sub-pixel to the whole image), some images empty, some boxes on anchor centres / borders."""
    rng = random.Random(1000 + seed)
    H = 32 * rng.randint(2, 10)
    W = 32 * rng.randint(2, 10)
    B = rng.randint(1, 4)
    nc = rng.randint(1, 6)
    per_image: list[list[Box]] = []
    for _ in range(B):
        if rng.random() < 0.2:
            per_image.append([])
            continue
        boxes: list[Box] = []
        for _ in range(rng.choice([1, 2, 3, 5, 8, 14])):
            w = math.exp(rng.uniform(math.log(0.5), math.log(W)))
            h = math.exp(rng.uniform(math.log(0.5), math.log(H)))
            x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
            r = rng.random()
            if r < 0.15:  # snap the edges to P3 anchor centres
                x1 = 8 * round((x1 - 4) / 8) + 4.0
                y1 = 8 * round((y1 - 4) / 8) + 4.0
                w, h = 8.0 * max(1, round(w / 8)), 8.0 * max(1, round(h / 8))
            elif r < 0.25:  # touch the borders
                x1, y1 = (0.0 if rng.random() < 0.5 else W - w), (0.0 if rng.random() < 0.5 else H - h)
            boxes.append(_clip_box(rng.randrange(nc), x1, y1, x1 + w, y1 + h, H, W))
        per_image.append(boxes)
    if rng.random() < 0.1:
        per_image = [[] for _ in range(B)]
    return {
        "name": f"random_{seed:02d}",
        "imgsz": (H, W),
        "nc": nc,
        "per_image": per_image,
        "preds": "synthetic" if seed % 2 else "random",
        "model": "yolo11n.yaml" if seed % 4 == 2 else "yolov8n.yaml",
        "seed": seed,
        "params": {"assigner.topk": 13, "assigner.alpha": 1.0} if seed % 5 == 4 else {},
        "form": "list" if seed % 7 == 3 else "dict",
    }


# ---------------------------------------------------------------------------------------------------------------
# Input sets and cases of the golden file
# ---------------------------------------------------------------------------------------------------------------

# Keys: model yaml, nc, imgsz (H, W), per-image scene specs (their number is the batch size), predictions
# ("random": random-init model forward in train mode; "fitted": the model is first overfitted on the batch
# with the real criterion; "synthetic": logits generated around the ground truth without a model), seed,
# storage ("float16": predictions rounded to float16 so they are stored in half the space; the float32 values
# the expected numbers were computed from are exactly the float16 values upcast), cls_1d (store cls as (M,)).
INPUT_SETS: dict[str, dict[str, Any]] = {
    "v8n_fit_320_huge": dict(
        model="yolov8n.yaml",
        nc=2,
        imgsz=(320, 320),
        scenes=["huge+standard:2+border"],
        preds="fitted",
        seed=0,
        fit_steps=30,
    ),
    "v11n_rand_256_edges": dict(
        model="yolo11n.yaml",
        nc=2,
        imgsz=(256, 256),
        scenes=["anchor_edges+standard:2+border"],
        preds="random",
        seed=2,
        cls_1d=True,
    ),
    "v11n_fit_160x96_b2_edges": dict(
        model="yolo11n.yaml",
        nc=2,
        imgsz=(160, 96),
        scenes=["anchor_edges+tiny", "standard:3+border"],
        preds="fitted",
        seed=11,
        fit_steps=30,
    ),
    "v11n_fit_96x160_b3_crowd": dict(
        model="yolo11n.yaml",
        nc=3,
        imgsz=(96, 160),
        scenes=["crowd:12", "tiny", "standard:3"],
        preds="fitted",
        seed=3,
        fit_steps=40,
    ),
    "v8n_fit_128x224_tiny": dict(
        model="yolov8n.yaml",
        nc=2,
        imgsz=(128, 224),
        scenes=["tiny+tiny"],
        preds="fitted",
        seed=4,
        fit_steps=40,
    ),
    "v8n_rand_96_nc80": dict(
        model="yolov8n.yaml",
        nc=80,
        imgsz=(96, 96),
        scenes=["standard:3+tiny+crowd:6"],
        preds="random",
        seed=6,
    ),
    "v11n_rand_64x96_nogt": dict(
        model="yolo11n.yaml", nc=3, imgsz=(64, 96), scenes=["", ""], preds="random", seed=7
    ),
    "v8n_rand_64x96_degenerate": dict(
        model="yolov8n.yaml",
        nc=3,
        imgsz=(64, 96),
        scenes=["degenerate", "standard:2"],
        preds="random",
        seed=9,
        storage="float32",
    ),
    "synth_160_crowd": dict(
        model=None,
        nc=4,
        imgsz=(160, 160),
        scenes=["crowd:10+tiny+standard:3+border"],
        preds="synthetic",
        seed=10,
    ),
    "v8n_fit_96x128_b4_empty": dict(
        model="yolov8n.yaml",
        nc=2,
        imgsz=(96, 128),
        scenes=["standard:3", "standard:2+tiny", "", "border"],
        preds="fitted",
        seed=1,
        fit_steps=30,
    ),
    "v8n_fit_128_b2_edges": dict(
        model="yolov8n.yaml",
        nc=5,
        imgsz=(128, 128),
        scenes=["anchor_edges+tiny", "crowd:10+standard:2"],
        preds="fitted",
        seed=5,
        fit_steps=30,
    ),
    # Image 0 of random scene 24 (sub-pixel-thin long boxes, random-init predictions from the B=4 forward):
    # anchors selected by two gts whose clamped CIoU with them is 0 for every gt, so the multi-gt
    # resolution falls back to gt 0 (first index of an all-zero column).
    "rand24_img0_thin": dict(
        random_scene=24,
        images=[0],
        model="yolov8n.yaml",
        nc=3,
        imgsz=(64, 288),
        preds="random",
        seed=24,
    ),
}

TAL13 = {"assigner.topk": 13, "assigner.alpha": 1.0}

# name, input set, params, form ("dict" | "list"), input_size argument (None: derived, like Ultralytics)
CASES: list[dict[str, Any]] = [
    dict(name="v8n_fit_320_huge", inputs="v8n_fit_320_huge"),
    dict(name="v8n_fit_320_huge_list", inputs="v8n_fit_320_huge", form="list", input_size=(320, 320)),
    dict(name="v11n_rand_256_edges", inputs="v11n_rand_256_edges"),
    dict(name="v11n_rand_256_edges_insize", inputs="v11n_rand_256_edges", input_size=(256, 256)),
    dict(name="v11n_fit_160x96_b2_edges", inputs="v11n_fit_160x96_b2_edges"),
    dict(name="v11n_fit_160x96_b2_edges_tal13", inputs="v11n_fit_160x96_b2_edges", params=TAL13),
    dict(name="v11n_fit_96x160_b3_crowd", inputs="v11n_fit_96x160_b3_crowd"),
    dict(name="v11n_fit_96x160_b3_crowd_list", inputs="v11n_fit_96x160_b3_crowd", form="list"),
    dict(
        name="v11n_fit_96x160_b3_crowd_topk3", inputs="v11n_fit_96x160_b3_crowd", params={"assigner.topk": 3}
    ),
    dict(name="v8n_fit_128x224_tiny", inputs="v8n_fit_128x224_tiny"),
    dict(name="v8n_fit_128x224_tiny_tal13", inputs="v8n_fit_128x224_tiny", params=TAL13),
    dict(name="v8n_rand_96_nc80", inputs="v8n_rand_96_nc80"),
    dict(name="v11n_rand_64x96_nogt", inputs="v11n_rand_64x96_nogt"),
    dict(name="v11n_rand_64x96_nogt_list", inputs="v11n_rand_64x96_nogt", form="list"),
    dict(name="v8n_rand_64x96_degenerate", inputs="v8n_rand_64x96_degenerate"),
    dict(name="synth_160_crowd", inputs="synth_160_crowd"),
    dict(name="synth_160_crowd_tal13", inputs="synth_160_crowd", params=TAL13),
    dict(name="v8n_fit_96x128_b4_empty", inputs="v8n_fit_96x128_b4_empty"),
    dict(name="v8n_fit_96x128_b4_empty_list", inputs="v8n_fit_96x128_b4_empty", form="list"),
    dict(name="v8n_fit_96x128_b4_empty_tal13", inputs="v8n_fit_96x128_b4_empty", params=TAL13),
    dict(name="v8n_fit_128_b2_edges", inputs="v8n_fit_128_b2_edges"),
    dict(name="v8n_fit_128_b2_edges_tal13", inputs="v8n_fit_128_b2_edges", params=TAL13),
    dict(name="rand24_img0_thin", inputs="rand24_img0_thin"),
]
for _c in CASES:
    _c.setdefault("params", {})
    _c.setdefault("form", "dict")
    _c.setdefault("input_size", None)


def input_set_targets(spec: dict[str, Any]) -> tuple[list[list[Box]], dict]:
    """Scenes of a scene-based input set (not for ``random_scene`` ones) and their batch targets."""
    H, W = spec["imgsz"]
    rng = random.Random(spec["seed"])
    per_image = [make_scene(s, rng, H, W, spec["nc"]) for s in spec["scenes"]]
    return per_image, targets_from_boxes(per_image, H, W, cls_1d=spec.get("cls_1d", False))


# ---------------------------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------------------------


def level_shapes(imgsz: tuple[int, int], strides=STRIDES) -> list[tuple[int, int]]:
    H, W = imgsz
    return [(H // s, W // s) for s in strides]


def make_images(per_image: list[list[Box]], H: int, W: int, nc: int, seed: int) -> torch.Tensor:
    """Synthetic images: dim noise plus the gt rectangles filled with a per-class colour (learnable)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(per_image), 3, H, W, generator=g) * 0.25
    palette = torch.rand(max(nc, 1), 3, generator=g) * 0.7 + 0.3
    for b, boxes in enumerate(per_image):
        for c, x1, y1, x2, y2 in boxes:
            i1, j1 = math.floor(x1), math.floor(y1)
            i2, j2 = max(math.ceil(x2), i1 + 1), max(math.ceil(y2), j1 + 1)
            x[b, :, j1:j2, i1:i2] = palette[c].view(3, 1, 1) * (0.85 + 0.15 * torch.rand(1, generator=g))
    return x


def build_model(cfg: str, nc: int, seed: int):
    """Ultralytics DetectionModel from its yaml (no download), with the default hyper-parameters."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(cfg, nc=nc, verbose=False)
    model.args = get_cfg()
    model.train()
    return model


def strip_outputs(out: dict) -> dict:
    """Detached copy of a train-mode head output with feats replaced by zero-channel maps (same B, H, W)."""
    B = out["boxes"].shape[0]
    return {
        "boxes": out["boxes"].detach().clone().float(),
        "scores": out["scores"].detach().clone().float(),
        "feats": [torch.zeros(B, 0, *f.shape[2:]) for f in out["feats"]],
    }


def fit_model(model, images: torch.Tensor, batch: dict, steps: int, lr: float = 2e-3) -> list[float]:
    """Overfit ``model`` on one batch with the real criterion (Adam), so the assignment becomes meaningful."""
    crit = model.init_criterion()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = crit(model(images), batch)
        loss.sum().backward()
        opt.step()
        losses.append(float(loss.detach().sum()))
    return losses


def model_outputs(cfg: str, nc: int, imgsz, per_image, targets: dict, seed: int, fit_steps: int = 0) -> dict:
    H, W = imgsz
    model = build_model(cfg, nc, seed)
    images = make_images(per_image, H, W, nc, seed)
    if fit_steps:
        fit_model(model, images, targets, fit_steps)
    model.train()
    with torch.no_grad():
        out = model(images)
    return strip_outputs(out)


def anchors_px(imgsz, strides=STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres in input pixels (N, 2) and their strides (N,), Ultralytics order."""
    pts, st = [], []
    for (h, w), s in zip(level_shapes(imgsz, strides), strides, strict=True):
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        pts.append(torch.stack((xx, yy), -1).view(-1, 2) * s)
        st.append(torch.full((h * w,), float(s)))
    return torch.cat(pts), torch.cat(st)


def synthetic_outputs(per_image: list[list[Box]], imgsz, nc: int, seed: int) -> dict:
    """Logits generated around the ground truth, like a half-trained model: box distributions peaked near the
    true side distances (with noise), high class logit for the gt class inside gt boxes, low elsewhere."""
    g = torch.Generator().manual_seed(seed)
    ap, st = anchors_px(imgsz)
    N, B = ap.shape[0], len(per_image)
    boxes = torch.empty(B, 4 * REG_MAX, N)
    scores = torch.empty(B, nc, N)
    bins = torch.arange(REG_MAX, dtype=torch.float32)
    for b, bx in enumerate(per_image):
        d = torch.rand(N, 4, generator=g) * 6  # background: random distances
        sc = torch.randn(N, nc, generator=g) - 6.0
        if bx:
            gt = torch.tensor([x[1:] for x in bx], dtype=torch.float32)
            cls = torch.tensor([x[0] for x in bx])
            area = (gt[:, 2] - gt[:, 0]).clamp(min=1) * (gt[:, 3] - gt[:, 1]).clamp(min=1)
            cxy = (gt[:, :2] + gt[:, 2:]) / 2
            inside = (ap[:, None, 0] > gt[None, :, 0]) & (ap[:, None, 0] < gt[None, :, 2])
            inside &= (ap[:, None, 1] > gt[None, :, 1]) & (ap[:, None, 1] < gt[None, :, 3])
            dist = (ap[:, None] - cxy[None]).norm(dim=-1) / st[:, None]
            key = torch.where(inside, area[None].expand(N, -1), 1e12 + dist)
            k = key.argmin(1)
            near = inside.any(1) | (dist.gather(1, k[:, None])[:, 0] < 2.5)
            g_box = gt[k]
            true_d = torch.cat((ap - g_box[:, :2], g_box[:, 2:] - ap), 1) / st[:, None]
            noisy = true_d + torch.randn(N, 4, generator=g) * 0.4
            d = torch.where(near[:, None], noisy, d).clamp(0, REG_MAX - 1.01)
            logit = torch.randn(N, generator=g) * 1.5 + 1.0
            rows = near.nonzero()[:, 0]
            sc[rows, cls[k][rows]] = logit[rows]
        sharp = 0.5 + torch.rand(N, 4, 1, generator=g) * 2.0
        lg = (
            -sharp * (bins.view(1, 1, -1) - d[..., None]).pow(2)
            + torch.randn(N, 4, REG_MAX, generator=g) * 0.3
        )
        boxes[b] = lg.reshape(N, 4 * REG_MAX).T
        scores[b] = sc.T
    feats = [torch.zeros(B, 0, h, w) for h, w in level_shapes(imgsz)]
    return {"boxes": boxes, "scores": scores, "feats": feats}


def select_images(outputs: dict, targets: dict, images: list[int]) -> tuple[dict, dict]:
    """The sub-batch of ``images`` (in that order), gt rows renumbered."""
    idx = torch.tensor(images)
    outs = {
        "boxes": outputs["boxes"][idx].clone(),
        "scores": outputs["scores"][idx].clone(),
        "feats": [f[idx].clone() for f in outputs["feats"]],
    }
    rows = [(targets["batch_idx"] == b).nonzero()[:, 0] for b in images]
    new_b = torch.cat([torch.full((len(r),), float(i)) for i, r in enumerate(rows)])
    rows = torch.cat(rows)
    tg = {"batch_idx": new_b, "cls": targets["cls"][rows].clone(), "bboxes": targets["bboxes"][rows].clone()}
    return outs, tg


def build_inputs(spec: dict[str, Any]) -> tuple[dict, dict]:
    """(outputs, targets) of an input set, all float32; predictions not yet rounded for storage."""
    if "random_scene" in spec:
        scene = random_scene(spec["random_scene"])
        assert (scene["nc"], scene["imgsz"], scene["preds"]) == (spec["nc"], spec["imgsz"], spec["preds"])
        return select_images(*build_random_inputs(scene), spec["images"])
    per_image, targets = input_set_targets(spec)
    if spec["preds"] == "synthetic":
        outputs = synthetic_outputs(per_image, spec["imgsz"], spec["nc"], spec["seed"])
    else:
        steps = spec.get("fit_steps", 0) if spec["preds"] == "fitted" else 0
        outputs = model_outputs(
            spec["model"], spec["nc"], spec["imgsz"], per_image, targets, spec["seed"], steps
        )
    return outputs, targets


def build_random_inputs(scene: dict) -> tuple[dict, dict]:
    targets = targets_from_boxes(scene["per_image"], *scene["imgsz"])
    if scene["preds"] == "synthetic":
        outputs = synthetic_outputs(scene["per_image"], scene["imgsz"], scene["nc"], scene["seed"])
    else:
        outputs = model_outputs(
            scene["model"], scene["nc"], scene["imgsz"], scene["per_image"], targets, scene["seed"]
        )
    return outputs, targets


def round_for_storage(outputs: dict, storage: str) -> dict:
    """Round predictions to the storage dtype and back: the result is exactly representable in it."""
    if storage == "float32":
        return outputs
    dt = {"float16": torch.float16, "bfloat16": torch.bfloat16}[storage]
    return {**outputs, "boxes": outputs["boxes"].to(dt).float(), "scores": outputs["scores"].to(dt).float()}


def to_level_list(outputs: dict, reg_max: int = REG_MAX) -> list[torch.Tensor]:
    """The older (<= 8.3) train-mode output: per level (B, 4*reg_max + nc, H, W), box channels first."""
    B, _, _ = outputs["boxes"].shape
    nc = outputs["scores"].shape[1]
    out, start = [], 0
    for f in outputs["feats"]:
        h, w = f.shape[2:]
        sl = slice(start, start + h * w)
        lvl = torch.cat((outputs["boxes"][:, :, sl], outputs["scores"][:, :, sl]), 1)
        out.append(lvl.reshape(B, 4 * reg_max + nc, h, w))
        start += h * w
    return out


def outputs_for_form(outputs: dict, form: str):
    return to_level_list(outputs) if form == "list" else outputs


# ---------------------------------------------------------------------------------------------------------------
# The reference: real Ultralytics v8DetectionLoss (imports ultralytics)
# ---------------------------------------------------------------------------------------------------------------

_CRIT_MODELS: dict[int, Any] = {}


def ultralytics_criterion(nc: int, params: dict | None = None):
    """A fresh v8DetectionLoss for ``nc`` classes, with the yolodbg-style parameter overrides applied."""
    from ultralytics.utils.loss import v8DetectionLoss
    from ultralytics.utils.tal import TaskAlignedAssigner

    if nc not in _CRIT_MODELS:  # the criterion only reads args, strides, nc and reg_max from the model
        _CRIT_MODELS[nc] = build_model("yolov8n.yaml", nc, 0)
    crit = v8DetectionLoss(_CRIT_MODELS[nc])
    p = dict(params or {})
    topk = p.pop("assigner.topk", 10)
    alpha = p.pop("assigner.alpha", 0.5)
    if p:
        raise ValueError(f"no Ultralytics mapping for params {sorted(p)}")
    if (topk, alpha) != (10, 0.5):
        crit.assigner = TaskAlignedAssigner(
            topk=topk, num_classes=nc, alpha=alpha, beta=6.0, stride=crit.stride.tolist()
        )
    return crit


def ultralytics_expected(outputs: dict, targets: dict, params: dict | None = None) -> dict:
    """Run the real criterion on exactly these float32 inputs and return the full expected record."""
    nc = outputs["scores"].shape[1]
    B = outputs["boxes"].shape[0]
    crit = ultralytics_criterion(nc, params)
    preds = {k: (v.clone() if torch.is_tensor(v) else list(v)) for k, v in outputs.items()}
    batch = {k: v.clone() for k, v in targets.items()}

    captured: dict[str, torch.Tensor] = {}
    assigner = crit.assigner
    orig_forward = assigner.forward

    def capture(*a, **k):
        r = orig_forward(*a, **k)
        captured["target_scores"] = r[2].detach().clone()
        captured["fg"] = r[3].detach().clone()
        return r

    assigner.forward = capture
    try:
        (fg, gt_idx, *_), loss_unscaled, _ = crit.get_assigned_targets_and_loss(preds, batch)
    finally:
        del assigner.forward
    loss, items = crit(preds, batch)  # the public call: (loss * B, items dict)
    assert torch.equal(loss.detach(), (loss_unscaled * B).detach()), "criterion not deterministic"

    fg = fg.bool()
    assert torch.equal(fg, captured["fg"].bool())
    ts_full = captured["target_scores"].float()
    ts = ts_full.sum(-1)
    assert not ts[~fg].any(), "background anchor with a non-zero target score"
    gt_index = torch.where(fg, gt_idx.long(), torch.full_like(gt_idx.long(), -1))
    loss = loss.detach()
    return {
        "items": {
            "box": float(items["box_loss"]),
            "cls": float(items["cls_loss"]),
            "dfl": float(items["dfl_loss"]),
        },
        "loss": [float(v) for v in loss],
        "objective": float(loss.sum()),
        "fg": fg,
        "gt_index": gt_index,
        "target_score": ts,
        "num_fg": int(fg.sum()),
        "target_scores_sum": float(ts_full.sum()),
        "zero_weight_pos": int((fg & (ts == 0)).sum()),
        "max_target_score": float(ts.max()) if ts.numel() else 0.0,
    }


# ---------------------------------------------------------------------------------------------------------------
# Compact storage of the expected record, and the comparison used by both tests (torch only)
# ---------------------------------------------------------------------------------------------------------------


def pack_expected(exp: dict) -> dict:
    """fg as (B, N) bool; gt index and target score only on fg anchors (background is -1 / exactly 0)."""
    fg = exp["fg"]
    out = {k: v for k, v in exp.items() if k not in ("fg", "gt_index", "target_score")}
    out["fg"] = fg.clone()
    out["gt_index_fg"] = exp["gt_index"][fg].to(torch.int16)
    out["target_score_fg"] = exp["target_score"][fg].float().clone()
    return out


def unpack_expected(packed: dict) -> dict:
    fg = packed["fg"].bool()
    gt_index = torch.full(fg.shape, -1, dtype=torch.long)
    gt_index[fg] = packed["gt_index_fg"].long()
    ts = torch.zeros(fg.shape, dtype=torch.float32)
    ts[fg] = packed["target_score_fg"].float()
    return {**packed, "fg": fg, "gt_index": gt_index, "target_score": ts}


def describe_anchor(flat: int, imgsz, strides=STRIDES) -> str:
    return harness.anchor_label(flat, level_shapes(imgsz, strides), strides)


rel_close = harness.rel_close
sibling = harness.sibling

# Tolerances that hold across CPU kernels (AVX512 / AVX2 / scalar round reductions differently):
TERM_RTOL = 1e-5  # loss items and objective: sums over thousands of anchors
# soft target t̂ = t·max(u)/max(t) with t = s^α·u^6: the sixth power multiplies the CIoU's last-bit
# differences: between the original fixtures and this replay on AVX2 up to 4e-6 relative (~60 ulps of a
# float32 near 1), on the scalar kernels (ATEN_CPU_CAPABILITY=default) 1.1e-5 where the CIoU is small and
# loses relative precision. A few ulps would be far too tight: relative 5e-5 (4x the worst seen). Tiny weights (t̂ ~ 1e-11 from a CIoU near 0, where CIoU = IoU -
# penalty cancels) carry larger relative errors; the absolute floor 1e-8, a tenth of an ulp of a weight
# near 1, lets them through without hiding anything a loss could feel.
SCORE_RTOL = 5e-5
SCORE_ATOL = 1e-8
TERMS = ("box", "cls", "dfl")


def replay_explained(fn, topk: int = 10, topk2: int | None = None):
    """Run ``fn()`` (a yolodbg replay) and return ``(its result, tie explainer)``: the explainer names the
    near-tie behind a discrete difference from yolodbg's own task-aligned assignment (see ``ties.py``)."""
    from yolodbg.recipes import ultralytics_loss

    with ties.capture(ultralytics_loss, "assign") as seen:
        res = fn()
    return res, ties.tal_explains(seen[0], topk, topk2)


def _term_lines(res, exp: dict, rtol: float) -> tuple[list[str], list[str]]:
    """(missing, off) loss items and objective; a near-tie may explain an off one, never a missing one."""
    missing, off = harness.term_differences(res.terms, {k: exp["items"][k] for k in TERMS}, rtol)
    got_obj = float(res.objective)
    if not rel_close(got_obj, exp["objective"], rtol):
        off.append(f"objective: got {got_obj!r} want {exp['objective']!r} (loss tensor {exp['loss']})")
    return missing, off


def _shape_problem(res, want_fg: torch.Tensor) -> str | None:
    """Why yolodbg's fg / gt_index cannot be compared anchor by anchor, or None."""
    fg = torch.as_tensor(res.fg)
    if fg.shape != want_fg.shape or fg.dtype != torch.bool:
        return f"fg: got {tuple(fg.shape)} {fg.dtype}, want {tuple(want_fg.shape)} torch.bool"
    gi = torch.as_tensor(res.gt_index)
    if gi.shape != want_fg.shape:
        return f"gt_index: shape {tuple(gi.shape)}, want {tuple(want_fg.shape)}"
    return None


def _target_score_problem(res, exp: dict, got_gt, touched: set, imgsz) -> str | None:
    """Soft targets beyond the tolerances, except on the GTs a near-tie moved (their normalisation moves)."""
    want_fg, want_gt, want_ts = exp["fg"], exp["gt_index"], exp["target_score"]
    ts = torch.as_tensor(res.target_score).detach().cpu()
    if ts.shape != want_fg.shape:
        return f"target_score: shape {tuple(ts.shape)}, want {tuple(want_fg.shape)}"
    off = ~torch.isclose(ts.float(), want_ts, rtol=SCORE_RTOL, atol=SCORE_ATOL)
    for b, g in touched:
        if g >= 0:
            off[b] &= (got_gt[b] != g) & (want_gt[b] != g)
    if not off.any():
        return None
    diff = torch.where(off, (ts.float() - want_ts).abs(), torch.zeros_like(want_ts))
    b, a = divmod(int(diff.argmax()), diff.shape[1])
    return (
        f"target_score: {int(off.sum())} anchors beyond rel {SCORE_RTOL:g} + abs {SCORE_ATOL:g}; worst img{b} "
        f"{describe_anchor(a, imgsz)} got {float(ts[b, a])!r} want {float(want_ts[b, a])!r}"
    )


def compare_detailed(res, exp: dict, imgsz, explain=None, rtol: float = TERM_RTOL):
    """Every difference between a yolodbg ReplayResult and an expected record, as a ``ties.Comparison``.

    Continuous numbers with the tolerances above; the foreground mask and the GT of every positive exactly,
    except where ``explain`` (see :func:`replay_explained`) finds a near-tie that lets rounding choose: such
    anchors are listed in ``ties``, their GTs' soft targets are not compared, and term differences they
    cause are reported with them rather than failing. Without ``explain`` every discrete difference fails.
    """
    out = ties.Comparison()
    missing, term_lines = _term_lines(res, exp, rtol)
    out.problems += missing
    shape = _shape_problem(res, exp["fg"])
    if shape is not None:
        out.problems += [*term_lines, shape]
        return out
    fg = torch.as_tensor(res.fg).detach().cpu()
    gi = torch.as_tensor(res.gt_index).detach().cpu().long()
    bg_bad = int((~fg & (gi != -1)).sum())
    if bg_bad:
        out.problems.append(f"gt_index: {bg_bad} background anchors are not -1")
    got_gt = torch.where(fg, gi, torch.full_like(gi, -1))
    touched: set[tuple[int, int]] = set()  # (image, gt) whose positives a near-tie changed
    unexplained: list[str] = []
    for d in harness.assignment_differences(got_gt, exp["gt_index"], explain):
        what = f"img{d.image} {describe_anchor(d.anchor, imgsz)} got gt {d.got} want gt {d.want} (-1: background)"
        if d.tie is None:
            unexplained.append(f"{what}, t̂ want {float(exp['target_score'][d.image, d.anchor]):.3g}")
        else:
            out.ties.append(f"{what}: near-tie, {d.tie}")
            touched |= {(d.image, d.got), (d.image, d.want)}
    if unexplained:
        out.problems.append(
            f"fg / gt_index: {len(unexplained)} anchors differ, not explained by a near-tie "
            f"[{'; '.join(unexplained[:6])}] (yolodbg {int(fg.sum())} positives, want {int(exp['fg'].sum())})"
        )
    if term_lines and touched and not unexplained:
        out.ties += [f"{ln} (follows from the near-tie above)" for ln in term_lines]
    else:
        out.problems += term_lines
    score = _target_score_problem(res, exp, got_gt, touched, imgsz)
    if score is not None:
        out.problems.append(score)
    return out


def compare(res, exp: dict, imgsz, explain=None, rtol: float = TERM_RTOL) -> list[str]:
    """The failures of :func:`compare_detailed`; its near-ties are issued as ``NearTieWarning``."""
    found = compare_detailed(res, exp, imgsz, explain, rtol)
    found.warn("golden yolov8")
    return found.problems


def case_summary(exp: dict) -> str:
    return (
        f"fg={exp['num_fg']} S={exp['target_scores_sum']:.6g} max_t̂={exp['max_target_score']:.4g} "
        f"zero_weight_pos={exp['zero_weight_pos']} items=({exp['items']['box']:.6g}, "
        f"{exp['items']['cls']:.6g}, {exp['items']['dfl']:.6g})"
    )


def case_context(case: dict, exp: dict) -> str:
    """What a failure message says about a stored case besides its name."""
    return (
        f"inputs {case['inputs']}, form {case['form']}, params {case['params']}; expected {case_summary(exp)}"
    )


# ---------------------------------------------------------------------------------------------------------------
# Reading the golden file (torch only)
# ---------------------------------------------------------------------------------------------------------------

provenance = harness.provenance


def load_golden(path) -> dict:
    return harness.load_fixture(path, FORMAT)


def golden_inputs(data: dict, case: dict) -> tuple[dict, dict, tuple[int, int]]:
    """Fresh float32 (outputs, targets, imgsz) of a stored case (stored float16 values upcast exactly)."""
    rec = data["inputs"][case["inputs"]]
    outputs = {
        "boxes": rec["boxes"].to(torch.float32),
        "scores": rec["scores"].to(torch.float32),
        "feats": [f.clone() for f in rec["feats"]],
    }
    targets = {k: v.clone() for k, v in rec["targets"].items()}
    return outputs, targets, tuple(rec["imgsz"])
