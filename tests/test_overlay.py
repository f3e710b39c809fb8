"""Overlay PNGs: canvas size, coordinates through the letterbox, GT box colours, edge cases, ``explain --plot``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import batch, ultra_output
from PIL import Image

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.explain import explain
from yolodbg.render import _draw
from yolodbg.render.overlay import class_labels, line_width, pct, render_overlay, write_overlays

RED, BLACK = _draw.RAMP[-1], (0, 0, 0)
GREY = (128, 128, 128)
IMAGES = [{"image_id": 7, "file_name": "a.jpg"}, {"image_id": 9, "file_name": "b.jpg"}]


def test_ramp_and_percentages():
    # stops at 0, 1/3, 2/3, 1: blue, violet, orange, red
    assert [_draw.ramp(t) for t in (0.0, 1 / 3, 2 / 3, 1.0)] == list(_draw.RAMP)
    assert _draw.RAMP[0] == (40, 90, 255) and RED == (240, 20, 40)
    # 1/6 is halfway between blue and violet: ((40+175)/2, (90+50)/2, (255+220)/2) = (107.5, 70, 237.5) -> rounded
    assert _draw.ramp(1 / 6) == (108, 70, 238)
    assert _draw.ramp(-1) == _draw.ramp(0) and _draw.ramp(7) == RED
    assert [pct(v) for v in (0.0, 0.123, 0.0042, 0.000031)] == ["0.0%", "12.3%", "0.42%", "0.0031%"]
    assert _draw.ink_for((20, 20, 200)) == _draw.PAPER and _draw.ink_for((255, 215, 0)) == _draw.INK


@pytest.fixture
def on_image(tmp_path, coco_file):
    """Image 7 (200x100, flat grey, on disk) with one GT [20, 10, 60, 50]; image 9 has no file and no GT."""
    Image.new("RGB", (200, 100), GREY).save(tmp_path / "a.jpg", format="PNG")
    ann = coco_file([{"id": 3, "image_id": 7, "category_id": 3, "bbox": [20, 10, 60, 50]}])
    path = bundle.save(
        tmp_path / "p.pt", ultra_output(bs=2, size=(128, 128), nc=3), input_size=[128, 128], images=IMAGES
    )
    return explain(bundle.load(path), ann), ann


def test_gt_on_the_original_image(on_image, tmp_path):
    ex, _ann = on_image
    img = render_overlay(ex, 0, roots=[tmp_path], names=class_labels(ex), top=0)
    # 200x100 is enlarged by 640/200 = 3.2 to 640x320; the legend starts at row 320 with a grey rule
    assert img.width == 640 and img.height > 320
    assert img.getpixel((5, 5)) == GREY and img.getpixel((5, 320)) == (200, 200, 200)
    # letterbox 200x100 -> 128x128: r = 0.64, pad_top = 32; the GT maps back to (20, 10, 80, 60) * 3.2
    # = (64, 32, 256, 192). Left edge: black at x=63, the 2 px stroke at 64..65, black again at 66.
    # The batch's only GT has the largest share: the top colour of the ramp.
    assert line_width((640, 320)) == 2
    assert [img.getpixel((x, 112)) for x in (62, 63, 64, 65, 66, 67)] == [GREY, BLACK, RED, RED, BLACK, GREY]
    assert img.getpixel((256, 150)) == RED and img.getpixel((160, 191)) == RED  # right and bottom edges
    assert class_labels(ex) == ["c1 (1)", "c3 (3)", "c5 (5)"]


def test_blank_canvas_without_the_image_file(on_image):
    ex, _ = on_image
    img = render_overlay(ex, 1, top=0)  # image 9: no file found -> blank canvas of the input, 128 * 5 = 640
    assert img.width == 640 and img.getpixel((5, 640)) == (200, 200, 200)
    # the letterbox is known: padding rows 0..31 (input) = 0..159 (canvas) are darker than the image area
    assert img.getpixel((320, 100)) == (44, 44, 48) and img.getpixel((320, 320)) == (70, 70, 76)


def test_bundle_targets_in_input_coordinates():
    rows = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 2, 0.15, 0.15, 0.1, 0.1), (1, 0, 0.7, 0.6, 0.3, 0.5)]
    b = bundle.from_object(
        {"yolodbg": 1, "outputs": ultra_output(nc=3), "input_size": [128, 128], "targets": batch(rows)}
    )
    ex = explain(b)
    vmax = max(g.share for g in ex.breakdown.gts)
    img = render_overlay(ex, 0, top=0)
    assert img.width == 640  # no letterbox: the input itself, 128 * 5
    assert len(ex.breakdown.gts) >= 2, "the two GTs checked below are missing"
    for g in ex.breakdown.gts[:2]:
        # GT 0: cx, cy, w, h = 0.5, 0.5, 0.4, 0.3 of 128 -> (38.4, 44.8, 89.6, 83.2) -> x5 = (192, 224, 448, 416)
        # GT 1: (12.8, 12.8, 25.6, 25.6) -> (64, 64, 128, 128); pixels in the middle of the left stroke
        x1, y1, _, y2 = (5 * v for v in g.box_xyxy)
        assert img.getpixel((int(x1) + 1, int((y1 + y2) / 2))) == _draw.ramp(g.share / vmax), g.gt_index


@pytest.mark.parametrize(
    "rows",
    [
        [],  # an all-empty batch
        [(0, 0, 0.5, 0.5, 0.001, 0.001)],  # sub-pixel box
        [(0, 1, 0.5, 0.5, 1.0, 1.0)],  # the whole input
        [(0, 2, 0.02, 0.02, 0.04, 0.04), (0, 2, 0.98, 0.98, 0.04, 0.04)],  # in the corners: tags stay inside
        [(0, 1, 0.5, 0.5, 0.3 + 0.01 * k, 0.3) for k in range(12)],  # many overlapping boxes
    ],
)
def test_edge_cases_render(rows, tmp_path):
    b = bundle.from_object(
        {"yolodbg": 1, "outputs": ultra_output(nc=3, size=(96, 160)), "targets": batch(rows)}
    )
    ex = explain(b)
    paths = write_overlays(ex, tmp_path / "plots", top=3)
    assert [p.name for p in paths] == ["000_0.png", "001_1.png"]
    with Image.open(paths[0]) as im:
        assert im.size[0] == 640 and im.size[1] > 96 * 4  # 160 wide -> x4


def test_explain_plot_cli(on_image, tmp_path):
    _, ann = on_image
    res = CliRunner().invoke(
        main,
        ["explain", str(tmp_path / "p.pt"), "--gt", str(ann), "--plot", str(tmp_path / "pl"), "--json", "-"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["batch_size"] == 2  # stdout holds only the JSON
    assert sorted(p.name for p in (tmp_path / "pl").iterdir()) == ["000_a.png", "001_b.png"]
    assert "wrote 2 overlays" in res.stderr
    with Image.open(tmp_path / "pl" / "000_a.png") as im:  # the image was found next to the json
        assert im.width == 640 and im.getpixel((5, 5)) == GREY
    res = CliRunner().invoke(
        main,
        [
            "explain",
            str(tmp_path / "p.pt"),
            "--gt",
            str(ann),
            "--plot",
            str(tmp_path / "one"),
            "--image",
            "9",
        ],
    )
    assert res.exit_code == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["001_b.png"]
