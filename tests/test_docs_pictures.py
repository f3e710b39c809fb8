"""The README's pictures come from the shipped sample through docs/make_pictures.py, and the numbers the
README quotes beside them are what ``explain`` computes on the sample.

Each picture records its inputs (with sha256) and the numbers it shows in PNG text chunks written by
the script; a picture of an older model or an older sample fails here until the script is rerun.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest
from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _script():
    spec = importlib.util.spec_from_file_location("make_pictures", ROOT / "docs" / "make_pictures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()
PICTURES = re.findall(r"!\[[^\]]*\]\((docs/[^)]+\.png)\)", README)


@pytest.fixture(scope="module")
def ex():
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)  # the script's paths are relative to the repository root
        yield SCRIPT.sample_explanation()


def test_the_readme_shows_the_scripts_pictures():
    assert PICTURES == ["docs/overlay.png", "docs/report.png"]
    assert {SCRIPT.OVERLAY, SCRIPT.REPORT} == {ROOT / p for p in PICTURES}
    assert (SCRIPT.SAMPLE, SCRIPT.GT) == ("sample_data/yolov8n_val.pt", "sample_data/coco_val.json")


@pytest.mark.parametrize("picture", PICTURES)
def test_each_picture_comes_from_the_shipped_sample(picture, ex):
    with Image.open(ROOT / picture) as im:
        text = dict(im.text)
    assert text.get("yolodbg:made_by") == "docs/make_pictures.py", (
        f"{picture}: rerun python docs/make_pictures.py"
    )
    for key, path in (("bundle", SCRIPT.SAMPLE), ("gt", SCRIPT.GT)):
        assert text[f"yolodbg:{key}"] == path
        digest = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
        assert text[f"yolodbg:{key}_sha256"] == digest, (
            f"{path} changed since {picture} was made: rerun the script"
        )
    assert text["yolodbg:image"] == ex.bundle.images[SCRIPT.IMAGE].label
    assert float(text["yolodbg:image_loss"]) == pytest.approx(
        ex.breakdown.images[SCRIPT.IMAGE].total, rel=1e-5
    )
    assert float(text["yolodbg:total"]) == pytest.approx(ex.breakdown.total, rel=1e-5)


def test_the_numbers_beside_the_pictures_are_the_samples(ex):
    found = re.search(
        r"image (\S+) of the sample\s+\(`([^`]+)`, loss ([\d.]+) = ([\d.]+)% of the batch total ([\d.]+)\)",
        README,
    )
    assert found, "the README's sentence before the pictures changed; keep its numbers tested"
    label, file_name, loss, share, total = found.groups()
    info, row = ex.bundle.images[SCRIPT.IMAGE], ex.breakdown.images[SCRIPT.IMAGE]
    assert (label, file_name) == (info.label, info.file_name)
    assert (loss, share, total) == (
        f"{row.total:.4f}",
        f"{100 * row.total / ex.breakdown.total:.1f}",
        f"{ex.breakdown.total:.4f}",
    )


def test_the_overlay_is_what_the_script_draws_today(ex):
    """The committed overlay matches a fresh drawing (a few pixels may differ where another CPU rounds a
    share differently, or another Pillow draws text differently)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        fresh = SCRIPT.overlay_picture(ex).convert("RGB")
    with Image.open(SCRIPT.OVERLAY) as im:
        committed = im.convert("RGB")
    assert committed.size == fresh.size
    r, g, b = ImageChops.difference(committed, fresh).split()
    worst = ImageChops.lighter(ImageChops.lighter(r, g), b)  # per pixel, the channel that differs most
    differ = sum(worst.histogram()[49:])  # differences above 48 of 255
    assert differ / (fresh.width * fresh.height) < 0.01, (
        f"{differ} pixels differ: rerun python docs/make_pictures.py"
    )
