"""Make ``sample_data/yolov1_val.pt``: a tiny YOLOv1-style network, trained briefly on the sample images.

Run from the repository root after ``sample_data/make_sample.py`` has written ``images/`` and
``coco_val.json`` (any environment with torch, pillow and yolodbg; no detection framework):

    python sample_data/make_yolov1_sample.py            # a few minutes on 2 CPU cores

What it does, with fixed seeds:

1. letterboxes the images of ``coco_val.json`` to 448x448 (Ultralytics' centred letterbox, grey 114)
   and maps their boxes with yolodbg's own COCO reader, so the network learns exactly the GT that
   ``yolodbg explain yolov1_val.pt --gt coco_val.json`` shows (crowd box left out, boxes clipped);
2. defines ``TinyYolo``: a 4x4 stride-4 stem and four 3x3 stride-2 convolutions (BatchNorm, leaky
   ReLU 0.1) from 448 to 7x7, then fully connected 6272 -> 256 -> 7·7·(2·5 + 4), linear, as YOLOv1's
   head (S=7, nb=2, C=4);
3. trains it with ``sse_loss`` below, a dense label-grid implementation of the paper's loss written
   independently of yolodbg (λcoord 5, λnoobj 0.5, confidence target = IoU, sign(w)·√(|w| + 1e-6),
   one object per cell with the first GT winning, mean over the batch), Adam, random horizontal flips;
4. saves the eval-mode outputs on all images (unflipped) as a canonical bundle (with the GT as
   ``targets`` too), and checks that yolodbg's ``yolov1`` recipe replays ``sse_loss`` on them to 1e-5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's yolodbg, installed or not

from yolodbg import bundle as bundle_mod  # noqa: E402
from yolodbg import groundtruth  # noqa: E402
from yolodbg.api import Replay  # noqa: E402
from yolodbg.geometry import Letterbox  # noqa: E402
from yolodbg.recipes.yolov1 import YoloV1  # noqa: E402

SEED = 0
IMGSZ, S, NB = 448, 7, 2
CATEGORY_IDS = (1, 2, 3, 7)
NC = len(CATEGORY_IDS)
STEPS, LR = 400, 1e-3
L_COORD, L_NOOBJ, WH_EPS = 5.0, 0.5, 1e-6


def letterbox_images(gt_path: Path, image_dir: Path) -> tuple[Tensor, list[dict]]:
    """``(B, 3, 448, 448)`` RGB in [0, 1] and the bundle's ``images`` entries (scale, pad per image)."""
    doc = json.loads(gt_path.read_text())
    tensors, infos = [], []
    for img in sorted(doc["images"], key=lambda d: d["id"]):
        pil = Image.open(image_dir / img["file_name"]).convert("RGB")
        w, h = pil.size
        lb = Letterbox.ultralytics((h, w), (IMGSZ, IMGSZ))
        new_w, new_h = max(round(w * lb.scale_x), 1), max(round(h * lb.scale_y), 1)
        canvas = Image.new("RGB", (IMGSZ, IMGSZ), (114, 114, 114))
        canvas.paste(pil.resize((new_w, new_h), Image.BILINEAR), (int(lb.pad_left), int(lb.pad_top)))
        tensors.append(torch.from_numpy(np.asarray(canvas, dtype=np.float32).copy()).permute(2, 0, 1) / 255)
        infos.append(
            {
                "image_id": img["id"],
                "file_name": img["file_name"],
                "orig_size": [h, w],
                "scale": lb.scale_x,
                "pad": [lb.pad_top, lb.pad_left],
            }
        )
    return torch.stack(tensors), infos


class TinyYolo(nn.Module):
    """448x448x3 -> (B, 7, 7, 2·5 + 4): conv trunk to 7x7, then two fully connected layers (last linear)."""

    def __init__(self) -> None:
        super().__init__()
        layers = [nn.Conv2d(3, 16, 4, 4, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.1)]  # 448 -> 112
        c_in = 16
        for c_out in (32, 64, 128, 128):  # 112 -> 56 -> 28 -> 14 -> 7
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1)]
            c_in = c_out
        self.trunk = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * S * S, 256),
            nn.LeakyReLU(0.1),
            nn.Dropout(0.2),
            nn.Linear(256, S * S * 14),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.trunk(x)).view(-1, S, S, NB * 5 + NC)


def label_grid(rows: Tensor, bs: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per image a label grid: ``has (B, S, S)`` bool, ``box (B, S, S, 4)`` cx, cy, w, h, ``cls (B, S, S)``.

    ``rows``: ``(M, 6)`` image, class, cx, cy, w, h (normalised). One object per cell; the first GT wins.
    """
    has = torch.zeros(bs, S, S, dtype=torch.bool)
    box = torch.zeros(bs, S, S, 4)
    cls = torch.zeros(bs, S, S, dtype=torch.long)
    cells = (rows[:, 2:4] * S).floor().long().clamp(0, S - 1)  # float32, as the targets are stored
    for (b, c, cx, cy, w, h), (j, i) in zip(rows.tolist(), cells.tolist(), strict=True):
        if not has[int(b), i, j]:
            has[int(b), i, j] = True
            box[int(b), i, j] = torch.tensor([cx, cy, w, h])
            cls[int(b), i, j] = int(c)
    return has, box, cls


def sse_loss(pred: Tensor, has: Tensor, box: Tensor, cls: Tensor) -> dict[str, Tensor]:
    """The YOLOv1 paper's sum-squared loss on a dense label grid, divided by the batch size."""
    bs = pred.shape[0]
    p = pred[..., : NB * 5].reshape(bs, S, S, NB, 5)
    grid_x = torch.arange(S).view(1, 1, S, 1)
    grid_y = torch.arange(S).view(1, S, 1, 1)
    # IoU (pixels) of every predictor with the GT of its cell
    pcx, pcy = (grid_x + p[..., 0]) / S * IMGSZ, (grid_y + p[..., 1]) / S * IMGSZ
    pw, ph = p[..., 2].clamp(min=0) * IMGSZ, p[..., 3].clamp(min=0) * IMGSZ
    g = box.unsqueeze(3) * IMGSZ
    ix = (
        torch.min(pcx + pw / 2, g[..., 0] + g[..., 2] / 2)
        - torch.max(pcx - pw / 2, g[..., 0] - g[..., 2] / 2)
    ).clamp(min=0)
    iy = (
        torch.min(pcy + ph / 2, g[..., 1] + g[..., 3] / 2)
        - torch.max(pcy - ph / 2, g[..., 1] - g[..., 3] / 2)
    ).clamp(min=0)
    union = pw * ph + g[..., 2] * g[..., 3] - ix * iy
    iou = torch.where(union > 0, ix * iy / union.clamp(min=1e-30), torch.zeros_like(union)).detach()
    best = nn.functional.one_hot(iou.argmax(-1), NB).bool() & has.unsqueeze(-1)  # (B, S, S, NB) responsible
    tx = box[..., 0] * S - torch.arange(S).view(1, 1, S)
    ty = box[..., 1] * S - torch.arange(S).view(1, S, 1)

    def root(v: Tensor) -> Tensor:
        return torch.sign(v) * torch.sqrt(v.abs() + WH_EPS)

    coord = (
        (p[..., 0] - tx.unsqueeze(-1)) ** 2
        + (p[..., 1] - ty.unsqueeze(-1)) ** 2
        + (root(p[..., 2]) - box[..., 2:3].sqrt()) ** 2
        + (root(p[..., 3]) - box[..., 3:4].sqrt()) ** 2
    )
    onehot = nn.functional.one_hot(cls, NC).float()
    terms = {
        "coord": L_COORD * (coord * best).sum(),
        "conf_obj": ((p[..., 4] - iou) ** 2 * best).sum(),
        "conf_noobj": L_NOOBJ * (p[..., 4] ** 2 * ~best).sum(),
        "cls": (((pred[..., NB * 5 :] - onehot) ** 2).sum(-1) * has).sum(),
    }
    return {k: v / bs for k, v in terms.items()}


def gt_rows(targets: groundtruth.Targets) -> Tensor:
    return torch.cat((targets.batch_idx[:, None].float(), targets.cls[:, None].float(), targets.bboxes), 1)


def train(model: TinyYolo, x: Tensor, rows: Tensor, steps: int) -> list[float]:
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=5e-4)
    history = []
    model.train()
    for step in range(steps):
        flip = torch.rand(x.shape[0], generator=gen) < 0.5
        xb = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        rb = rows.clone()
        rb[:, 2] = torch.where(flip[rows[:, 0].long()], 1 - rows[:, 2], rows[:, 2])
        loss = sum(sse_loss(model(xb), *label_grid(rb, x.shape[0])).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {history[-1]:.4f}", flush=True)
    return history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=HERE / "images")
    ap.add_argument("--gt", type=Path, default=HERE / "coco_val.json")
    ap.add_argument("--out", type=Path, default=HERE / "yolov1_val.pt")
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args()
    torch.manual_seed(SEED)
    t0 = time.time()
    x, infos = letterbox_images(args.gt, args.images)
    shell = bundle_mod.from_object(
        {
            "yolodbg": 1,
            "head": "yolov1",
            "outputs": torch.zeros(len(infos), S, S, NB * 5 + NC),
            "images": infos,
        },
        input_size=(IMGSZ, IMGSZ),
    )
    targets = groundtruth.from_coco(args.gt, shell, (IMGSZ, IMGSZ), NC)
    rows = gt_rows(targets)
    model = TinyYolo()
    history = train(model, x, rows, args.steps)
    model.eval()
    with torch.no_grad():
        outputs = model(x)
        mine = {k: float(v) for k, v in sse_loss(outputs, *label_grid(rows, len(infos))).items()}
    meta = {
        "model": "TinyYolo (sample_data/make_yolov1_sample.py): conv 4x4/4 + 4 conv 3x3/2, BN, leaky 0.1, "
        "fc 6272-256-686",
        "framework": "none (plain PyTorch)",
        "torch_version": str(torch.__version__),
        "training": f"{args.steps} Adam steps (lr {LR}, wd 5e-4) on these {len(infos)} images with random "
        "horizontal flips, full batch, seed 0; loss: sse_loss of the script (YOLOv1 paper, batch mean)",
        "loss_first_last": [round(history[0], 4), round(history[-1], 4)],
        "mode": "model.eval() (BatchNorm running statistics, no dropout), unflipped images",
        "letterbox": "Ultralytics-style centred letterbox to 448x448, grey 114, PIL bilinear resize, RGB/255",
        "targets": "the COCO GT of coco_val.json mapped by yolodbg (crowd left out); --gt gives the same boxes",
        "boxes_per_cell": NB,
        "script_loss": mine,
    }
    t = {"batch_idx": targets.batch_idx, "cls": targets.cls.float(), "bboxes": targets.bboxes}
    path = bundle_mod.save(
        args.out,
        outputs,
        head="yolov1",
        input_size=[IMGSZ, IMGSZ],
        strides=[IMGSZ / S],
        images=infos,
        targets=t,
        category_ids=list(CATEGORY_IDS),
        meta=meta,
        overwrite=True,
    )
    check(path, mine)
    print(f"wrote {path} ({path.stat().st_size} bytes) in {time.time() - t0:.0f} s; loss {mine}")


def check(path: Path, mine: dict[str, float]) -> None:
    """yolodbg's yolov1 recipe must replay ``sse_loss`` on the saved bundle to 1e-5 (relative)."""
    b = bundle_mod.load(path)
    rec = YoloV1()
    size, nc = rec.input_layout(b)
    t = groundtruth.load_targets(None, b, size, nc)
    res = Replay(rec.run(b, t), t)
    for k, v in mine.items():
        got = res.terms[k]
        assert abs(got - v) <= 1e-5 * max(abs(v), 1e-6), f"{k}: yolodbg {got} vs script {v}"
    print("yolodbg replay matches the script's loss:", {k: round(v, 6) for k, v in res.terms.items()})


if __name__ == "__main__":
    main()
