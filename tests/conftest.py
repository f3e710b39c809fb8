"""Shared fixtures: small synthetic Ultralytics outputs and batches (no framework needed).

Only fixtures and hooks live here; helpers that tests import are in ``helpers.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import batch, ultra_output

from yolodbg import bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ultra():
    return ultra_output


@pytest.fixture
def make_batch():
    return batch


@pytest.fixture
def coco_file(tmp_path):
    """A COCO json for two 200×100 images (ids 7 and 9), categories 1, 3, 5."""

    def write(annotations, images=None, categories=(1, 3, 5)):
        doc = {
            "images": images
            or [
                {"id": 7, "file_name": "a.jpg", "width": 200, "height": 100},
                {"id": 9, "file_name": "b.jpg", "width": 200, "height": 100},
            ],
            "annotations": annotations,
            "categories": [{"id": c, "name": f"c{c}"} for c in categories],
        }
        path = tmp_path / "ann.json"
        path.write_text(json.dumps(doc))
        return path

    return write


@pytest.fixture
def saved_bundle(tmp_path):
    """Write a canonical bundle with ultra_output(**kw) and return its path."""

    def write(name="b.pt", targets=None, images=None, **kw):
        out = ultra_output(**kw)
        size = kw.get("size", (128, 128))
        return bundle.save(tmp_path / name, out, input_size=list(size), targets=targets, images=images)

    return write
