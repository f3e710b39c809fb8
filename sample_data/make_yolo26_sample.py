"""Make ``sample_data/yolo26n_val.pt``: a YOLO26n (end-to-end, one2many + one2one) bundle of the sample images.

    python sample_data/make_yolo26_sample.py        # needs ultralytics 8.4.190 (+ torchvision, opencv)

The YOLO26n is built from ``yolo26n.yaml`` (no weights can be downloaded here) and overfit with
Ultralytics' own ``E2ELoss`` for a few dozen Adam steps on the four sample images, so its one-to-one
branch has learned something; then ``yolodbg.capture.capture_model`` writes the bundle exactly as
``yolodbg capture`` would. About two minutes on 2 CPU cores.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
IMGSZ, STEPS = 320, 40


def main() -> None:
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    from yolodbg import bundle
    from yolodbg.capture import capture_model
    from yolodbg.image_letterbox import letterbox_image, read_bgr, to_input

    torch.manual_seed(0)
    torch.set_num_threads(1)
    gt = HERE / "coco_val.json"
    model = DetectionModel("yolo26n.yaml", nc=4, verbose=False)
    model.args = get_cfg()
    with tempfile.TemporaryDirectory() as tmp:
        # one capture of the untrained model gives the targets, mapped into the input as capture maps them
        first = capture_model(model, HERE / "images", gt, imgsz=IMGSZ, batch=8, out=Path(tmp) / "b.pt")[0]
        raw = torch.load(first, weights_only=True)
    files = [img["file_name"] for img in raw["images"]]
    x = to_input([letterbox_image(read_bgr(HERE / "images" / f), IMGSZ)[0] for f in files])
    batch = {k: raw["targets"][k] for k in ("batch_idx", "cls", "bboxes")}
    crit = model.init_criterion()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(STEPS):
        opt.zero_grad()
        loss, items = crit(model(x), batch)
        loss.sum().backward()
        opt.step()
        if step % 10 == 0 or step == STEPS - 1:
            print(
                f"step {step}: " + ", ".join(f"{k} {float(v):.3f}" for k, v in items.items()), file=sys.stderr
            )
    out = HERE / "yolo26n_val.pt"
    out.unlink(missing_ok=True)
    capture_model(model, HERE / "images", gt, imgsz=IMGSZ, batch=8, out=out)
    data = torch.load(out, weights_only=True)
    data["meta"]["training"] = f"yolo26n.yaml, random init, {STEPS} Adam steps of E2ELoss on these 4 images"
    out.unlink()
    bundle.save(
        out,
        data["outputs"],
        input_size=data["input_size"],
        strides=data.get("strides"),
        images=data["images"],
        targets=data.get("targets"),
        category_ids=data.get("category_ids"),
        meta=data["meta"],
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
