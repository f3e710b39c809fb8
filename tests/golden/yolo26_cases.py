"""YOLO26 / end-to-end (``E2ELoss``) parity cases, shared by the golden generator and the live parity test.

Scenes and models come from ``cases.py`` (the yolov8 harness). Each case records what Ultralytics 8.4.190
computes: both branches' items, the weighted objective at the case's epoch, and both assignments.
Only torch is imported at module level.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import torch

FORMAT = "yolodbg.golden.yolo26/1"
HERE = Path(__file__).resolve().parent


def base_cases():
    name = "yolodbg_golden_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "cases.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


# name, yaml, nc, (H, W), scenes per image, fit steps, epochs to record
SPECS = [
    ("yolo26_random_160", "yolo26n.yaml", 3, (160, 160), ["standard:3", "standard:2"], 0, (0,)),
    ("yolo26_fitted_224x320", "yolo26n.yaml", 3, (224, 320), ["standard:4", "crowd:8"], 30, (0, 1, 37, 99)),
    ("yolo26_tiny_and_empty", "yolo26n.yaml", 2, (256, 256), ["tiny", "", "huge+border"], 20, (0,)),
    ("yolo26_no_gt", "yolo26n.yaml", 2, (96, 160), ["", ""], 0, (5,)),
    ("yolov10_dfl_160", "yolov10n.yaml", 2, (160, 160), ["standard:3+anchor_edges"], 10, (0, 50)),
]


def outputs_and_targets(spec, seed: int = 0):
    """Run the real model (from yaml) on synthetic images; returns (outputs, targets, criterion)."""
    c = base_cases()
    name, cfg, nc, (h, w), scenes, fit, _ = spec
    rng = random.Random(f"{name}:{seed}")
    per_image = [c.make_scene(s, rng, h, w, nc) for s in scenes]
    targets = c.targets_from_boxes(per_image, h, w)
    model = c.build_model(cfg, nc, seed)
    images = c.make_images(per_image, h, w, nc, seed)
    if fit:
        c.fit_model(model, images, targets, fit)
    model.train()
    with torch.no_grad():
        out = model(images)
    outputs = {k: c.strip_outputs(out[k]) for k in ("one2many", "one2one")}
    return outputs, targets, model.init_criterion()


def expected(outputs, targets, crit, epoch: int) -> dict:
    """Ultralytics' numbers for both branches after ``epoch`` completed epochs."""
    crit.updates = 0
    crit.o2m, crit.o2o = crit.o2m_copy, crit.total - crit.o2m_copy
    for _ in range(epoch):
        crit.update()
    with torch.no_grad():
        loss, items = crit(outputs, targets)
        branches = {}
        for key, sub in (("one2many", crit.one2many), ("one2one", crit.one2one)):
            feats = outputs[key]
            (fg, gt_idx, *_), _, br_items = sub.get_assigned_targets_and_loss(feats, targets)
            branches[key] = {
                "items": [float(v) for v in br_items.values()],
                "fg": fg.clone(),
                "gt_idx": torch.where(fg, gt_idx.long(), torch.full_like(gt_idx.long(), -1)),
            }
    return {
        "items": [float(v) for v in items.values()],
        "objective": float(loss.sum()),
        "weights": [float(crit.o2m), float(crit.o2o)],
        "branches": branches,
    }
