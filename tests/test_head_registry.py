"""The head-family registry: one registration makes a family known to bundle loading and the CLI.

The toy family below is registered from this test only, touching no other module: a query-style
output (``(B, Q, 4 + nc)``, one row per query, no grid) that no built-in family claims.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from yolodbg import bundle, heads
from yolodbg.cli import main
from yolodbg.cli.options import HeadChoice
from yolodbg.errors import BundleError
from yolodbg.geometry import LETTERBOX_MODES
from yolodbg.groundtruth import letterbox_mode
from yolodbg.recipes import RECIPES, recipe_for_head


def _queries(outputs):
    """A toy query head: one ``(B, Q, 4 + nc)`` tensor."""
    if isinstance(outputs, torch.Tensor) and outputs.ndim == 3:
        return heads.Recognition()
    return None


def _parse(bundle):
    """The toy's parse: boxes and logits per query."""
    return bundle.outputs[..., :4], bundle.outputs[..., 4:]


@pytest.fixture
def toy():
    family = heads.register(
        heads.HeadFamily(
            name="toyqueries", recognise=_queries, parse=_parse, default_recipe="yolov8", letterbox="yolox"
        )
    )
    try:
        yield family
    finally:
        heads.unregister("toyqueries")
    assert "toyqueries" not in heads.names()


def test_the_builtin_families_in_the_order_head_lists_them():
    assert heads.names() == ("ultralytics", "yolov5", "yolox", "yolov1")
    for name in heads.names():
        family = heads.family(name)
        assert family.name == name
        assert family.default_recipe in RECIPES
        assert family.letterbox in LETTERBOX_MODES
        assert family.postprocess is not None


@pytest.mark.parametrize(
    ("file", "family"),
    [
        ("yolov8n_val.pt", "ultralytics"),
        ("yolov5n_val.pt", "yolov5"),
        ("yolox_val.pt", "yolox"),
        ("yolov1_val.pt", "yolov1"),
    ],
)
def test_each_family_parses_its_sample_bundle_as_its_recipe_does(file, family):
    b = bundle.load(Path(__file__).resolve().parents[1] / "sample_data" / file)
    assert b.family is heads.family(family)
    ours, recipe = b.family.parse(b), recipe_for_head(b.head, b.outputs).parse(b)
    assert type(ours) is type(recipe) and ours.batch_size == recipe.batch_size and ours.nc == recipe.nc


def test_one_registration_makes_a_family_recognised_and_selectable(toy, tmp_path):
    out = torch.zeros(2, 5, 4 + 3)
    guessed = bundle.from_object(out, input_size=(64, 64))
    assert guessed.head == "toyqueries" and guessed.family is toy and guessed.batch_size == 2
    assert bundle.from_object(out, head="toyqueries").head == "toyqueries"
    saved = bundle.load(bundle.save(tmp_path / "toy.pt", out, head="toyqueries", input_size=[64, 64]))
    assert saved.head == "toyqueries"
    assert recipe_for_head("toyqueries").name == "yolov8"
    assert letterbox_mode(saved) == ("yolox", "head toyqueries")
    assert "toyqueries" in HeadChoice().choices
    boxes, logits = saved.family.parse(saved)
    assert boxes.shape == (2, 5, 4) and logits.shape == (2, 5, 3)


def test_the_cli_accepts_a_registered_family(toy, tmp_path):
    out = torch.zeros(1, 5, 7)
    path = tmp_path / "toy.pt"
    torch.save(out, path)
    r = CliRunner().invoke(main, ["explain", str(path), "--head", "nope"])
    assert r.exit_code == 2 and "'toyqueries'" in r.output  # the choice lists the toy family
    r = CliRunner().invoke(main, ["explain", str(path), "--head", "toyqueries"])
    # past the --head choice and bundle loading: the default recipe (yolov8) refuses a head it does not replay
    assert r.exit_code == 2 and "holds a toyqueries head; pick a recipe for that head" in r.output


def test_an_unregistered_family_is_unknown_again(toy):
    heads.unregister("toyqueries")
    with pytest.raises(
        BundleError, match="not a known head; expected one of ultralytics, yolov5, yolox, yolov1"
    ):
        bundle.from_object(torch.zeros(1, 5, 7), head="toyqueries")


def test_a_form_two_families_share_asks_for_head(toy):
    levels = [torch.zeros(1, 7, 8, 8), torch.zeros(1, 7, 4, 4)]
    with pytest.raises(
        BundleError, match=r"either the older Ultralytics output or raw YOLOX outputs; pass --head"
    ):
        bundle.from_object(levels)


def test_registering_a_second_family_under_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="registered already"):
        heads.register(
            heads.HeadFamily(
                name="yolox", recognise=_queries, parse=_parse, default_recipe="yolox", letterbox="yolox"
            )
        )


def test_a_deferred_hook_imports_its_module_only_when_called():
    """``heads.deferred``: declaring a hook loads nothing; each call looks the function up in the module
    the loader returns (the built-in families' torch code loads with the first bundle)."""
    loads = []

    class Module:
        @staticmethod
        def recognise(outputs):
            return heads.Recognition() if outputs == "mine" else None

    def load():
        loads.append(1)
        return Module

    hook = heads.deferred(load, "recognise")
    assert loads == [] and hook.__name__ == "recognise"
    assert hook("mine") == heads.Recognition() and hook("other") is None
    assert len(loads) == 2


def test_the_builtin_hooks_are_the_family_modules_functions():
    from yolodbg.heads import ultralytics, yolov1, yolov5, yolox

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    for name, module, file in [
        ("ultralytics", ultralytics, "yolov8n_val.pt"),
        ("yolov5", yolov5, "yolov5n_val.pt"),
        ("yolox", yolox, "yolox_val.pt"),
        ("yolov1", yolov1, "yolov1_val.pt"),
    ]:
        b = bundle.load(sample / file)
        family = heads.family(name)
        claim = family.recognise(b.outputs)
        assert claim is not None and claim == module.recognise(b.outputs)
        parsed = family.parse(b)
        assert type(parsed) is type(module.parse_bundle(b)) and parsed.nc == module.parse_bundle(b).nc
        if family.level_shapes is not None:
            assert family.shapes(b.outputs) == module.level_shapes(b.outputs)
