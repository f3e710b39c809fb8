"""Small synthetic inputs for tests (no framework needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def golden_module(filename: str) -> ModuleType:
    """A case module of ``tests/golden/`` (a plain folder, not a package), imported once per process."""
    name = f"yolodbg_golden_{Path(filename).stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GOLDEN_DIR / filename)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def ultra_output(bs=2, size=(128, 128), nc=3, seed=0, reg_max=16, strides=(8, 16, 32), scale=1.0):
    """A random train-mode Ultralytics output dict for an input of ``size`` (H, W)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(size[0] // s, size[1] // s) for s in strides]
    n = sum(h * w for h, w in shapes)
    return {
        "boxes": torch.randn(bs, 4 * reg_max, n, generator=g) * scale,
        "scores": torch.randn(bs, nc, n, generator=g) * scale - 2.0,
        "feats": [torch.empty(bs, 0, h, w) for h, w in shapes],
    }


def batch(rows):
    """Ultralytics batch dict from rows (image, class, cx, cy, w, h), normalised."""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"batch_idx": t[:, 0], "cls": t[:, 1:2], "bboxes": t[:, 2:6]}
