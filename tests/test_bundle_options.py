"""Options meet the bundle: they fill what it lacks and are refused (exit 2, one line) where they
contradict what it records, in every command that reads bundles."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from helpers import batch, ultra_output

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.errors import BundleError

ROWS = [(0, 1, 0.5, 0.5, 0.4, 0.3), (1, 0, 0.7, 0.6, 0.3, 0.5)]


@pytest.fixture
def recorded(tmp_path):
    """A canonical 128x96 bundle that records its input size, strides and image ids."""
    out = ultra_output(bs=2, size=(128, 96), nc=3, seed=2)
    images = [{"image_id": 7, "file_name": "a.jpg"}, {"image_id": 9, "file_name": "b.jpg"}]
    return bundle.save(
        tmp_path / "p.pt", out, input_size=[128, 96], strides=[8, 16, 32], targets=batch(ROWS), images=images
    )


@pytest.fixture
def bare(tmp_path):
    """The same kind of output saved bare (``torch.save(model(x))``): it records nothing."""
    path = tmp_path / "bare.pt"
    torch.save(ultra_output(bs=2, size=(128, 96), nc=3, seed=2), path)
    return path


def _invoke(args):
    return CliRunner().invoke(main, args, env={"COLUMNS": "160", "NO_COLOR": "1"})


def _refused(res, *needles):
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yolodbg: error: "), res.stderr
    for text in needles:
        assert text in lines[0], lines[0]


CONFLICTS = [
    (["--imgsz", "640"], ("--imgsz 640x640", "input_size 128x96", "pass --imgsz 128,96")),
    (["--imgsz", "128,96"], None),  # equal to the recorded size: accepted
    (["--strides", "16,32,64"], ("--strides 16,32,64", "strides 8,16,32", "drop --strides")),
    (["--strides", "8,16,32"], None),
    (["--image-ids", "7,10"], ("--image-ids gives 10 for batch element 1", "image_id 9", "--image-ids 7,9")),
    (["--image-ids", "7,9"], None),
]


@pytest.mark.parametrize(("options", "needles"), CONFLICTS)
def test_explain_refuses_options_that_contradict_the_bundle(recorded, options, needles):
    res = _invoke(["explain", str(recorded), "--top", "0", *options])
    if needles is None:
        assert res.exit_code == 0, res.output
    else:
        _refused(res, *needles, str(recorded))


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "-r", "yolov8", "-r", "yolov8:gain.cls=1.0"],
        ["snapshot", "-o", "SNAP"],
        ["scan"],
    ],
)
def test_every_command_refuses_the_same_contradiction(recorded, tmp_path, command):
    args = [a.replace("SNAP", str(tmp_path / "s.json")) for a in command]
    res = _invoke([*args[:1], str(recorded), *args[1:], "--imgsz", "640"])
    assert res.exit_code == 2, res.output
    # scan reports a failed bundle in its report (the other bundles go on); the others stop at once
    where = res.stdout if command[0] == "scan" else res.stderr
    assert "--imgsz 640x640 disagrees with input_size 128x96" in " ".join(where.split())
    assert not (tmp_path / "s.json").exists()


def test_a_bare_output_takes_options_that_fit_its_shapes(bare):
    b = bundle.load(bare, input_size=(128, 96), strides=(8, 16, 32))
    assert b.input_size == (128, 96) and b.strides == (8, 16, 32)


def test_a_bare_output_refuses_an_imgsz_its_feature_maps_contradict(bare):
    with pytest.raises(BundleError) as e:
        bundle.load(bare, input_size=(256, 192))
    msg = str(e.value)
    assert "--imgsz 256x192" in msg and "16x12, 8x6, 4x3" in msg and "128x96 input" in msg
    assert "pass --imgsz 128,96" in msg and str(bare) in msg


def test_a_bare_output_refuses_strides_that_do_not_give_its_maps(bare):
    with pytest.raises(BundleError) as e:
        bundle.load(bare, input_size=(128, 96), strides=(8, 32, 64))
    assert "--imgsz and --strides disagree" in str(e.value)
    assert "level 8x6 at stride 32 needs a 256x192 input" in str(e.value)
    # other strides with a size that fits them are a model with other strides: accepted
    b = bundle.load(bare, input_size=(256, 192), strides=(16, 32, 64))
    assert b.strides == (16, 32, 64)


def test_strides_alone_fill_a_bare_output(bare):
    assert bundle.load(bare, strides=(16, 32, 64)).strides == (16, 32, 64)


@pytest.mark.parametrize(
    ("head", "outputs", "nc", "needle"),
    [
        ("ultralytics", ultra_output(bs=1, size=(64, 64), nc=3), 4, "--nc is 4"),
        (
            "yolov5",
            [torch.zeros(1, 3, 8, 8, 9), torch.zeros(1, 3, 4, 4, 9), torch.zeros(1, 3, 2, 2, 9)],
            3,
            "--nc",
        ),
        ("yolox", [torch.zeros(1, 9, 8, 8), torch.zeros(1, 9, 4, 4), torch.zeros(1, 9, 2, 2)], 3, "--nc 3"),
    ],
)
def test_nc_that_contradicts_the_shapes_is_refused(tmp_path, head, outputs, nc, needle):
    path = tmp_path / f"{head}.pt"
    torch.save(outputs, path)
    res = _invoke(["explain", str(path), "--head", head, "--nc", str(nc), "--image-ids", "1"])
    _refused(res, needle, str(path))


def test_image_ids_fill_a_bundle_without_ids(tmp_path):
    out = ultra_output(bs=2, size=(64, 64), nc=3)
    path = bundle.save(tmp_path / "p.pt", out, input_size=[64, 64], images=[{"orig_size": [64, 64]}] * 2)
    b = bundle.load(path, image_ids=["5", "6"])
    assert [i.image_id for i in b.images] == [5, 6]


def _named_bundle(tmp_path):
    out = ultra_output(bs=2, size=(64, 64), nc=3)
    images = [{"file_name": "a.jpg", "orig_size": [64, 64]}, {"file_name": "b.jpg", "orig_size": [64, 64]}]
    return bundle.save(tmp_path / "named.pt", out, input_size=[64, 64], images=images)


def test_image_ids_must_name_the_files_the_bundle_records(tmp_path, coco_file):
    path, ann = _named_bundle(tmp_path), coco_file([])  # the json: 7 = a.jpg, 9 = b.jpg
    assert _invoke(["explain", str(path), "--gt", str(ann), "--image-ids", "7,9"]).exit_code == 0
    res = _invoke(["explain", str(path), "--gt", str(ann), "--image-ids", "9,7"])
    _refused(res, "--image-ids gives 9 for batch element 0", "names b.jpg", "records a.jpg")
    labels = tmp_path / "labels"
    labels.mkdir()
    res = _invoke(["explain", str(path), "--gt", str(labels), "--image-ids", "c,d"])
    _refused(res, "--image-ids gives c for batch element 0", "records a.jpg", "a.txt")


def test_image_ids_that_are_the_recorded_stems_are_accepted(tmp_path):
    out = ultra_output(bs=1, size=(64, 64), nc=3)
    path = bundle.save(tmp_path / "n.pt", out, input_size=[64, 64], images=[{"file_name": "000123.jpg"}])
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "000123.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    res = _invoke(["explain", str(path), "--gt", str(labels), "--image-ids", "000123"])
    assert res.exit_code == 0, res.output
