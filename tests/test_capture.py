"""``yolodbg capture`` and ``yolodbg.capture``: letterbox geometry, save_batch, the trainer callback and the
capture -> explain round trip against Ultralytics' own validation pipeline and criterion.

The tests that need Ultralytics call ``pytest.importorskip`` themselves, so the rest runs in CI without it.
Round trip: the bundle's outputs must equal (bit for bit) what the model gives on the batch Ultralytics'
validation dataloader builds from the same files, and the loss yolodbg replays must equal the loss
Ultralytics' criterion computes on that batch within 1e-5 relative.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import batch as make_batch
from helpers import ultra_output
from PIL import Image

from yolodbg import bundle
from yolodbg.capture import (
    INSTALL_HINT,
    _out_paths,
    collect_images,
    letterbox_geometry,
    save_batch,
)
from yolodbg.cli import main
from yolodbg.errors import InputError
from yolodbg.explain import explain

RTOL = 1e-5
IMGSZ = 160
# (width, height): landscape, portrait, odd sizes whose ceil and round differ, an image smaller than the input
SIZES = ((200, 150), (150, 200), (401, 300), (90, 60), (160, 160))
CATEGORY_IDS = (1, 2, 5)


# --------------------------------------------------------------------------------------- no framework


@pytest.mark.parametrize(
    ("orig_hw", "mode", "resized", "scale", "pad"),
    [
        # 259x350 -> 320: r = 320/350, h = 236.8 -> 237 (ceil and round agree); pad_top = round(83/2 - 0.1) = 41
        ((259, 350), "val", (237, 320), (237 / 259, 320 / 350), (41.0, 0.0)),
        # 300x401 -> 320: h = 300*320/401 = 239.4: val rounds up to 240, predict to 239; pads round(39.9), round(40.4)
        ((300, 401), "val", (240, 320), (240 / 300, 320 / 401), (40.0, 0.0)),
        ((300, 401), "predict", (239, 320), (320 / 401, 320 / 401), (40.0, 0.0)),
        # 60x90 -> 160 (enlarged): w = 160, h = 60*160/90 = 106.7 -> 107; pad_top = round(53/2 - 0.1) = 26
        ((60, 90), "val", (107, 160), (107 / 60, 160 / 90), (26.0, 0.0)),
        # already the input size: unchanged
        ((160, 160), "val", (160, 160), (1.0, 1.0), (0.0, 0.0)),
    ],
)
def test_letterbox_geometry(orig_hw, mode, resized, scale, pad):
    got, lb = letterbox_geometry(orig_hw, 320 if orig_hw[0] > 160 else 160, mode)
    assert got == resized
    assert (lb.scale_y, lb.scale_x) == pytest.approx(scale, rel=1e-12)
    assert (lb.pad_top, lb.pad_left) == pad


def test_image_hw_reads_the_header_and_the_exif_turn(tmp_path):
    from yolodbg.image_letterbox import image_hw

    img = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    img.save(tmp_path / "plain.jpg")
    exif = Image.Exif()
    exif[274] = 6  # rotate 90° on display: Ultralytics records the turned shape
    img.save(tmp_path / "turned.jpg", exif=exif)
    img.save(tmp_path / "plain.png")
    assert image_hw(tmp_path / "plain.jpg") == (30, 50)
    assert image_hw(tmp_path / "turned.jpg") == (50, 30)
    assert image_hw(tmp_path / "plain.png") == (30, 50)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"bad\.jpg: not a readable image"):
        image_hw(tmp_path / "bad.jpg")
    try:  # Ultralytics replaces PIL's Image.open when imported (capture imports it): same message
        import ultralytics.utils.patches  # noqa: F401
    except ImportError:
        return
    with pytest.raises(InputError, match=r"bad\.jpg: not a readable image"):
        image_hw(tmp_path / "bad.jpg")


def test_letterbox_mode_is_checked():
    with pytest.raises(InputError, match="val, predict"):
        letterbox_geometry((10, 10), 32, "stretch")


def test_without_ultralytics_the_error_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import ultralytics -> ImportError
    (tmp_path / "a.jpg").write_bytes(b"")
    res = CliRunner().invoke(
        main, ["capture", "--model", "m.pt", "--images", str(tmp_path), "-o", str(tmp_path / "o")]
    )
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and INSTALL_HINT in lines[0], res.stderr


def test_capture_needs_images_or_gt(tmp_path):
    res = CliRunner().invoke(main, ["capture", "--model", "m.pt", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--images DIR or --gt" in res.stderr


def test_output_paths_refuse_to_overwrite(tmp_path):
    assert _out_paths(tmp_path / "one.pt", 3, 8) == [tmp_path / "one.pt"]
    assert _out_paths(tmp_path / "d", 9, 4) == [tmp_path / "d" / f"batch_000{k}.pt" for k in range(3)]
    with pytest.raises(InputError, match="do not fit one batch of 4"):
        _out_paths(tmp_path / "one.pt", 5, 4)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "batch_0001.pt").write_bytes(b"x")
    with pytest.raises(InputError, match=r"batch_0001\.pt exists already"):
        _out_paths(tmp_path / "d", 9, 4)


def test_collect_images(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("b.jpg", "a.png", "notes.txt"):
        (tmp_path / "images" / name).write_bytes(b"")
    found, cats = collect_images(tmp_path / "images", None)
    assert [f[1] for f in found] == ["a.png", "b.jpg"] and cats is None
    ann = tmp_path / "ann.json"
    ann.write_text(
        json.dumps(
            {
                "images": [{"id": 4, "file_name": "b.jpg"}],
                "annotations": [],
                "categories": [{"id": 7}, {"id": 3}],
            }
        )
    )
    found, cats = collect_images(None, ann)  # found in ann.json's images/ subfolder
    assert found == [(tmp_path / "images" / "b.jpg", "b.jpg", 4)] and cats == [3, 7]
    ann.write_text(json.dumps({"images": [{"id": 4, "file_name": "zz.jpg"}], "annotations": []}))
    with pytest.raises(InputError, match=r"'zz\.jpg' is not in"):
        collect_images(None, ann)


ROWS = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 2, 0.2, 0.3, 0.1, 0.2), (1, 0, 0.7, 0.6, 0.3, 0.5)]


def _train_batch(augmented_ratio_pad=None):
    b = make_batch(ROWS)
    b["img"] = torch.zeros(2, 3, 128, 96)
    b["im_file"] = ["/data/x/a.jpg", "/data/x/b.jpg"]
    b["ori_shape"] = [(100, 75), (64, 48)]
    if augmented_ratio_pad is not None:
        b["ratio_pad"] = augmented_ratio_pad
    return b


def test_save_batch_of_a_training_step_replays(tmp_path):
    out = ultra_output(bs=2, size=(128, 96), nc=3, seed=4)
    path = save_batch(out, _train_batch(), tmp_path / "step.pt", loss_items={"box": torch.tensor(1.5)})
    raw = torch.load(path, weights_only=True)
    assert raw["input_size"] == [128, 96] and "images" not in raw
    assert raw["meta"]["im_files"] == ["a.jpg", "b.jpg"] and raw["meta"]["loss_items"] == {"box": 1.5}
    assert torch.equal(raw["targets"]["bboxes"], make_batch(ROWS)["bboxes"])
    ex = explain(bundle.load(path))
    assert len(ex.targets) == 3 and ex.breakdown.violations == []
    with pytest.raises(InputError, match="exists already"):
        save_batch(out, _train_batch(), path)
    with pytest.raises(InputError, match="lacks img"):
        save_batch(out, make_batch(ROWS), tmp_path / "x.pt")


def test_save_batch_of_a_validation_batch_records_the_letterbox(tmp_path):
    out = ultra_output(bs=2, size=(128, 96), nc=3, seed=4)
    # Ultralytics' ratio_pad: ((gain_h, gain_w), (pad_left, pad_top))
    ratio_pad = [((0.96, 0.96), (0, 16)), ((1.5, 1.5), (12, 0))]
    path = save_batch((torch.zeros(1), out), _train_batch(ratio_pad), tmp_path / "v.pt", augmented=False)
    b = bundle.load(path)
    assert [i.file_name for i in b.images] == ["a.jpg", "b.jpg"] and b.images[1].orig_size == (64, 48)
    lb = b.images[0].letterbox
    assert (lb.scale_y, lb.scale_x, lb.pad_top, lb.pad_left) == (0.96, 0.96, 16.0, 0.0)
    assert torch.equal(b.outputs["scores"], out["scores"])  # the raw dict of eval mode's (decoded, raw)


# ----------------------------------------------------------------------------------- with Ultralytics


def _write_dataset(root: Path) -> Path:
    """Random images of SIZES in root/images, their YOLO labels in root/labels and a COCO json; returns it."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    images, anns = [], []
    for i, (w, h) in enumerate(SIZES, 1):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        images.append({"id": 10 * i, "file_name": f"im{i}.png", "width": w, "height": h})
        lines = []
        for _ in range(i % 4):  # 1, 2, 3, 0, 1 objects
            bw, bh = rng.uniform(6, w / 2), rng.uniform(6, h / 2)
            x, y, c = rng.uniform(0, w - bw), rng.uniform(0, h - bh), int(rng.integers(0, 3))
            bbox = [float(x), float(y), float(bw), float(bh)]
            anns.append(
                {"id": len(anns) + 1, "image_id": 10 * i, "category_id": CATEGORY_IDS[c], "bbox": bbox}
            )
            lines.append(f"{c} {(x + bw / 2) / w!r} {(y + bh / 2) / h!r} {bw / w!r} {bh / h!r}")
        (root / "labels" / f"im{i}.txt").write_text("".join(ln + "\n" for ln in lines))
    cats = [{"id": c, "name": f"c{c}"} for c in CATEGORY_IDS]
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root / "ann.json"


@pytest.fixture(scope="module")
def ultra_env(tmp_path_factory):
    """A yolov8n.yaml model (random weights, nc=3), the dataset, and Ultralytics' validation batch of it."""
    pytest.importorskip("ultralytics")
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset
    from ultralytics.utils import LOGGER

    from yolodbg.capture import load_model

    LOGGER.setLevel("WARNING")
    root = tmp_path_factory.mktemp("capture")
    ann = _write_dataset(root)
    model, _ = load_model("yolov8n.yaml", nc=3)
    cfg = get_cfg(overrides={"imgsz": IMGSZ, "task": "detect"})
    data = {"names": {0: "c1", 1: "c2", 2: "c5"}, "nc": 3, "channels": 3}
    ds = build_yolo_dataset(cfg, str(root / "images"), 8, data, mode="val", stride=32)
    batch = ds.collate_fn([ds[i] for i in range(len(ds))])
    model.args = cfg
    return SimpleNamespace(root=root, ann=ann, model=model, batch=batch, criterion=model.init_criterion())


def _ultralytics_loss(env, outputs):
    _, items = env.criterion(outputs, env.batch)
    return {k.removesuffix("_loss"): float(v) for k, v in items.items()}


def _assert_close(got: dict, want: dict):
    assert set(got) == set(want)
    for k, v in want.items():
        assert math.isclose(got[k], v, rel_tol=RTOL), (k, got[k], v)


def test_letterbox_pixels_equal_ultralytics(ultra_env):
    pytest.importorskip("ultralytics")
    import cv2
    from ultralytics.data.augment import LetterBox

    from yolodbg.capture import letterbox_image, read_bgr, to_input

    files = [Path(f) for f in ultra_env.batch["im_file"]]
    assert files, "the validation batch holds no image"
    boxed = [letterbox_image(read_bgr(f), IMGSZ)[0] for f in files]
    assert torch.equal(to_input(boxed), ultra_env.batch["img"].float() / 255)  # the validation dataloader
    predictor = LetterBox(new_shape=(IMGSZ, IMGSZ), auto=False)
    for f in files:
        want = predictor(image=cv2.imread(str(f)))
        assert np.array_equal(letterbox_image(read_bgr(f), IMGSZ, "predict")[0], want), f.name


def test_capture_explain_round_trip_equals_ultralytics(ultra_env, tmp_path):
    from yolodbg.capture import capture_model

    env = ultra_env
    (path,) = capture_model(env.model, None, env.ann, imgsz=IMGSZ, batch=8, out=tmp_path / "p.pt")
    raw = torch.load(path, weights_only=True)
    assert [im["file_name"] for im in raw["images"]] == [Path(f).name for f in env.batch["im_file"]]
    assert [im["image_id"] for im in raw["images"]] == [10, 20, 30, 40, 50] and raw["category_ids"] == [
        1,
        2,
        5,
    ]
    assert raw["meta"]["framework"] == "ultralytics" and raw["meta"]["framework_version"]
    for im, (gy, gx) in zip(raw["images"], (rp[0] for rp in env.batch["ratio_pad"]), strict=True):
        assert im["scale"] == pytest.approx([gy, gx], rel=1e-12)
    env.model.eval()
    env.model.model[-1].training = True
    with torch.no_grad():
        outputs = env.model(env.batch["img"].float() / 255)
    env.model.model[-1].training = False
    assert torch.equal(raw["outputs"]["boxes"], outputs["boxes"])
    assert torch.equal(raw["outputs"]["scores"], outputs["scores"])
    assert torch.equal(raw["targets"]["batch_idx"], env.batch["batch_idx"])
    want = _ultralytics_loss(env, outputs)
    for gt in (env.ann, None):  # the COCO json, and the targets stored in the bundle
        ex = explain(bundle.load(path), gt)
        _assert_close(ex.result.terms, want)
        assert ex.breakdown.violations == []


def test_rect_capture_equals_the_trainers_validation_batches(ultra_env, tmp_path):
    """--rect: the batches of Ultralytics' rect=True validation dataset (the trainer's), image for
    image, pixel for pixel, and the loss its criterion computes on each."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset

    from yolodbg.capture import capture_model

    env = ultra_env
    cfg = get_cfg(overrides={"imgsz": IMGSZ, "task": "detect"})
    data = {"names": {0: "c1", 1: "c2", 2: "c5"}, "nc": 3, "channels": 3}
    ds = build_yolo_dataset(cfg, str(env.root / "images"), 2, data, mode="val", rect=True, stride=32)
    paths = capture_model(env.model, None, env.ann, imgsz=IMGSZ, batch=2, out=tmp_path / "rect", rect=True)
    assert len(paths) == 3
    seen_shapes = set()
    for k, path in enumerate(paths):
        ub = ds.collate_fn([ds[i] for i in range(len(ds)) if ds.batch[i] == k])
        raw = torch.load(path, weights_only=True)
        assert [im["file_name"] for im in raw["images"]] == [Path(f).name for f in ub["im_file"]]
        assert raw["input_size"] == list(ub["img"].shape[2:]) and raw["meta"]["rect"] is True
        seen_shapes.add(tuple(raw["input_size"]))
        for im, ((gy, gx), (pw, ph)) in zip(raw["images"], ub["ratio_pad"], strict=True):
            assert im["scale"] == pytest.approx([gy, gx], rel=1e-12) and im["pad"] == [ph, pw]
        env.model.eval()
        env.model.model[-1].training = True
        with torch.no_grad():
            outputs = env.model(ub["img"].float() / 255)
        env.model.model[-1].training = False
        assert torch.equal(raw["outputs"]["scores"], outputs["scores"])  # same pixels in, same outputs
        assert torch.equal(raw["targets"]["batch_idx"], ub["batch_idx"])
        # the json's pixels and the txt's normalised floats reach the same boxes up to float32 rounding
        torch.testing.assert_close(raw["targets"]["bboxes"], ub["bboxes"], rtol=0, atol=1e-6)
        _, items = env.criterion(outputs, ub)
        want = {k.removesuffix("_loss"): float(v) for k, v in items.items()}
        for gt in (env.ann, None):
            _assert_close(explain(bundle.load(path), gt).result.terms, want)
    assert len(seen_shapes) == 3  # landscape, square and portrait batches


@pytest.mark.parametrize(("imgsz", "batch"), [(320, 4), (640, 3), (224, 8)])
def test_rect_plan_equals_ultralytics_on_the_sample_images(ultra_env, tmp_path, imgsz, batch):
    """The sample images (four of them share the aspect ratio 0.75): the same order, ties included,
    the same batch shapes and the same letterboxed pixels as Ultralytics' rect dataset."""
    import shutil

    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset

    from yolodbg.capture import letterbox_image, plan_rect, read_bgr

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    shutil.copytree(sample / "images", tmp_path / "images")  # Ultralytics writes a label cache beside them
    shutil.copytree(sample / "labels", tmp_path / "labels")
    cfg = get_cfg(overrides={"imgsz": imgsz, "task": "detect"})
    data = {"names": {i: str(i) for i in range(4)}, "nc": 4, "channels": 3}
    ds = build_yolo_dataset(cfg, str(tmp_path / "images"), batch, data, mode="val", rect=True, stride=32)
    files = sorted((tmp_path / "images").iterdir())
    sources, shapes = plan_rect([(f, f.name, None) for f in reversed(files)], imgsz, batch, 32)
    assert [src[0].name for src in sources] == [Path(f).name for f in ds.im_files]
    assert shapes == [tuple(s) for s in ds.batch_shapes.tolist()]
    assert sources, "no sample image planned"
    for i, (src, _, _) in enumerate(sources):
        want = ds[i]["img"].numpy().transpose(1, 2, 0)[..., ::-1]  # CHW RGB -> HWC BGR
        got, _ = letterbox_image(read_bgr(src), imgsz, "val", shapes[i // batch])
        assert np.array_equal(got, want), src.name


def test_rect_needs_the_validation_letterbox(ultra_env, tmp_path):
    from yolodbg.capture import capture_model

    with pytest.raises(InputError, match="--rect: rectangular batches are built by the validation letterbox"):
        capture_model(
            ultra_env.model,
            None,
            ultra_env.ann,
            imgsz=IMGSZ,
            out=tmp_path / "r",
            rect=True,
            letterbox="predict",
        )


def test_capture_cli_writes_batches_and_refuses_to_overwrite(ultra_env, tmp_path):
    env = ultra_env
    out = tmp_path / "preds"
    args = ["capture", "--model", "yolov8n.yaml", "--images", str(env.root / "images"), "--imgsz", "96"]
    res = CliRunner().invoke(main, [*args, "--batch", "2", "--nc", "3", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(out / f"batch_000{k}.pt") for k in range(3)]
    b = bundle.load(out / "batch_0002.pt")
    assert b.batch_size == 1 and b.input_size == (96, 96) and b.images[0].file_name == "im5.png"
    assert b.meta["model"] == "yolov8n.yaml" and b.targets is None
    ex = explain(b, env.root / "labels")  # YOLO labels matched by file stem
    assert len(ex.targets) == 1 and ex.breakdown.violations == []
    res = CliRunner().invoke(main, [*args, "--batch", "2", "--nc", "3", "-o", str(out)])
    assert res.exit_code == 2 and "exists already" in res.stderr
    res = CliRunner().invoke(main, [*args[:-1], "100", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "pass --imgsz 128" in res.stderr
    res = CliRunner().invoke(
        main, ["capture", "--model", str(tmp_path / "nope.pt"), *args[3:], "-o", str(tmp_path / "y")]
    )
    assert res.exit_code == 2 and "nope.pt: no such file" in res.stderr


def test_trainer_callback_saves_the_step_that_replays(ultra_env, tmp_path):
    from yolodbg.capture import ultralytics_callback

    env = ultra_env
    model = copy.deepcopy(env.model)  # training mode updates the BatchNorm statistics
    trainer = SimpleNamespace(model=model, epoch=2)
    seen = []
    ultralytics_callback(tmp_path, when=lambda t, items: seen.append(items) or len(seen) == 2)(trainer)
    model.train()
    try:
        for _ in range(2):  # the second step is saved
            loss, items = model(env.batch | {"img": env.batch["img"].float() / 255})
    finally:
        model.eval()
    (path,) = sorted(tmp_path.glob("*.pt"))
    assert path.name == "epoch002_step000001.pt"
    b = bundle.load(path)
    assert b.meta["loss_items"] == {k: float(v) for k, v in items.items()}
    ex = explain(b)
    _assert_close(ex.result.terms, {k.removesuffix("_loss"): float(v) for k, v in items.items()})
    assert math.isclose(ex.result.objective, float(loss.detach().sum()), rel_tol=RTOL)
