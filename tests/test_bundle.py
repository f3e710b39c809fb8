"""Bundle loading: accepted forms, inference, and one-line errors for bad files."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from helpers import ultra_output

from yolodbg import bundle
from yolodbg.errors import BundleError
from yolodbg.heads import ultralytics as head


def test_canonical_bundle_round_trip(tmp_path):
    out = ultra_output(bs=2, size=(64, 96), nc=4)
    out["feats"] = [torch.zeros(2, 7, f.shape[2], f.shape[3]) for f in out["feats"]]
    path = bundle.save(
        tmp_path / "x.pt", out, input_size=[64, 96], images=[{"image_id": 3}, {"image_id": "b.jpg"}]
    )
    b = bundle.load(path)
    assert (b.head, b.batch_size, b.input_size) == ("ultralytics", 2, (64, 96))
    assert [i.image_id for i in b.images] == [3, "b.jpg"]
    assert b.outputs["feats"][0].shape == (2, 0, 8, 12)  # feats stored without channels
    assert len(b.digest) == 64
    parsed = head.parse(b.outputs)
    assert parsed.input_size == (64, 96) and parsed.nc == 4 and parsed.branches["main"].reg_max == 16


def test_mapped_tensors_never_write_to_the_file_and_legacy_files_still_load(tmp_path):
    out = ultra_output(bs=2, size=(64, 96), nc=4)
    path = bundle.save(tmp_path / "x.pt", out, input_size=[64, 96])
    before = path.read_bytes()
    b = bundle.load(path)
    assert torch.equal(b.outputs["scores"], out["scores"])
    b.outputs["scores"].mul_(0)  # private mapping: copy on write
    assert path.read_bytes() == before
    assert torch.equal(bundle.load(path).outputs["scores"], out["scores"])
    torch.save(out, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # cannot be mapped
    legacy = bundle.load(tmp_path / "legacy.pt")
    assert torch.equal(legacy.outputs["boxes"], out["boxes"]) and legacy.head == "ultralytics"


def test_save_refuses_to_overwrite(tmp_path):
    path = bundle.save(tmp_path / "x.pt", ultra_output())
    before = path.read_bytes()
    with pytest.raises(BundleError, match="exists already"):
        bundle.save(path, ultra_output(seed=1))
    assert path.read_bytes() == before
    assert oct(path.stat().st_mode & 0o777) != oct(0o600) or os.umask(0o022) == 0o077


def test_bare_dict_and_tuple_forms_are_recognised(tmp_path):
    out = ultra_output()
    torch.save(out, tmp_path / "bare.pt")
    torch.save((torch.zeros(2, 7, 10), out), tmp_path / "tuple.pt")
    for name in ("bare.pt", "tuple.pt"):
        b = bundle.load(tmp_path / name)
        assert b.head == "ultralytics" and b.batch_size == 2


def test_list_form_needs_the_head_named(tmp_path):
    out = ultra_output(nc=3)
    levels = []
    start = 0
    for f in out["feats"]:
        h, w = f.shape[2:]
        n = h * w
        levels.append(
            torch.cat((out["boxes"][..., start : start + n], out["scores"][..., start : start + n]), 1).view(
                2, 67, h, w
            )
        )
        start += n
    torch.save(levels, tmp_path / "list.pt")
    with pytest.raises(BundleError, match="--head ultralytics or --head yolox"):
        bundle.load(tmp_path / "list.pt")
    b = bundle.load(tmp_path / "list.pt", head="ultralytics")
    parsed = head.parse(b.outputs)
    assert parsed.form == "list" and parsed.nc == 3
    assert torch.equal(parsed.branches["main"].pred_scores, out["scores"].permute(0, 2, 1))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/yolodbg_pwned",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"outputs": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(BundleError, match="refused to load"):
        bundle.load(path)
    assert not os.path.exists("/tmp/yolodbg_pwned")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a torch file", "not a torch.save file"),
        (None, "no such file"),
    ],
)
def test_unreadable_files(tmp_path, content, match):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BundleError, match=match):
        bundle.load(path)


def test_folder_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="is a folder"):
        bundle.load(tmp_path)


def test_wrong_shapes_are_named(tmp_path):
    out = ultra_output()
    out["scores"] = out["scores"][..., :-3]
    with pytest.raises(BundleError, match="disagree"):
        head.parse(bundle.from_object(out).outputs)
    out = ultra_output()
    out["feats"] = out["feats"][:2]
    with pytest.raises(BundleError, match="feats do not belong"):
        head.parse(out)


def test_images_must_match_the_batch(tmp_path):
    with pytest.raises(BundleError, match="images has 1 entries"):
        bundle.from_object({"yolodbg": 1, "outputs": ultra_output(), "images": [{"image_id": 1}]})


def test_unknown_format_version():
    with pytest.raises(BundleError, match="format version 7"):
        bundle.from_object({"yolodbg": 7, "outputs": ultra_output()})


def test_input_size_must_agree_with_the_levels():
    with pytest.raises(BundleError, match="does not fit the first level"):
        head.parse(ultra_output(size=(128, 128)), input_size=(640, 640), strides=(8, 16, 32))


def test_strides_inferred_from_the_input_size():
    out = ultra_output(size=(128, 128), strides=(4, 8, 16))
    parsed = head.parse(out, input_size=(128, 128))
    assert parsed.strides == (4.0, 8.0, 16.0)
