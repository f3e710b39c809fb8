"""``yolodbg snapshot`` and ``yolodbg check``: loss-number regression tests for CI."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from yolodbg.cli.options import (
    EXIT_CHECK,
    bundle_options,
    debug_option,
    gt_option,
    json_option,
    recipe_option,
    say_wrote,
)
from yolodbg.option_values import FiniteFloat


@click.command()
@click.argument("preds", type=click.Path(path_type=Path))
@gt_option("COCO json or YOLO labels folder (default: bundle targets).")
@recipe_option("Recipe(s) to record (repeatable; default: the head's recipe).", multiple=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Snapshot file to write (JSON).",
)
@click.option("--update", is_flag=True, help="Overwrite an existing snapshot.")
@bundle_options
@debug_option
def snapshot(preds, gt, recipe_specs, output, update, bundle_spec):
    """Record a batch's loss numbers so CI can detect drift (yolodbg check).

    Records the input digests, every recipe with all its parameters, the per-term totals,
    per-image and per-GT terms and each GT's positive anchors. The file is deterministic
    (sorted keys, 9 significant digits) and written atomically.

    \b
    Examples:
      yolodbg snapshot sample_data/yolov8n_val.pt --gt sample_data/coco_val.json -o snap.json
      yolodbg snapshot batch.pt -r yolov8 -r yolov8:assigner.topk=13 -o tests/loss.snap.json
      yolodbg snapshot batch.pt -o tests/loss.snap.json --update     # accept new numbers
    """
    from yolodbg import snapshot as snap
    from yolodbg.atomic import atomic_write
    from yolodbg.errors import InputError
    from yolodbg.paths import check_outputs
    from yolodbg.recipes import get_recipe, recipe_for_head

    check_outputs(("-o", output), inputs=(preds, gt))
    if (output.exists() or output.is_symlink()) and not update:
        raise InputError(f"{output}: exists already; pass --update to overwrite it with the new numbers")
    options = bundle_spec.recorded()  # the options that describe the bundle, recorded in the snapshot
    b = bundle_spec.load(preds)
    recipes = [get_recipe(s) for s in recipe_specs] or [recipe_for_head(b.head, b.outputs)]
    doc = snap.make(b, gt, recipes, options)
    text = snap.dumps(doc).encode("utf-8")
    # without --update the name is taken only if still free: of two concurrent snapshots one wins
    atomic_write(
        output, lambda f: f.write(text), exclusive=not update, exists_fix="pass --update to overwrite it"
    )
    n = sum(len(r["gts"]) for r in doc["recipes"])
    say_wrote(output, f" ({len(recipes)} recipe(s), {b.batch_size} images, {n} GT rows)")


@click.command()
@click.argument("snapshot_path", metavar="SNAPSHOT", type=click.Path(path_type=Path))
@click.argument("preds", required=False, type=click.Path(path_type=Path))
@gt_option("Ground truth (default: the one the snapshot names).")
@recipe_option(
    "Recompute with these recipes instead of the snapshot's (parameter changes are reported).", multiple=True
)
@click.option(
    "--rtol", type=FiniteFloat(minimum=0), default=1e-5, show_default=True, help="Relative tolerance."
)
@click.option(
    "--atol", type=FiniteFloat(minimum=0), default=1e-7, show_default=True, help="Absolute tolerance."
)
@click.option("--allow-changed-inputs", is_flag=True, help="Compare even if the inputs' digests differ.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "github"]),
    default="text",
    show_default=True,
    help="github: also print GitHub Actions ::error annotations.",
)
@json_option("a yolodbg.check/1 report")
@bundle_options
@debug_option
def check(
    snapshot_path,
    preds,
    gt,
    recipe_specs,
    rtol,
    atol,
    allow_changed_inputs,
    fmt,
    json_out,
    bundle_spec,
):
    """Recompute a snapshot's numbers and fail (exit 1) if any drifted.

    Exit codes: 0 within tolerance · 1 drift (terms that moved, GTs whose positives
    changed, recipe parameters that changed) · 2 inputs missing or changed · 3 internal
    error (a bug) · 130 interrupted (Ctrl-C).

    \b
    Examples:
      yolodbg check tests/loss.snap.json
      yolodbg check snap.json preds.pt --gt ann.json --rtol 1e-6
      yolodbg check snap.json --format github          # annotations in a GitHub Actions log
    """
    from yolodbg import snapshot as snap
    from yolodbg.documents.check import check_doc
    from yolodbg.errors import InputError
    from yolodbg.paths import check_outputs
    from yolodbg.recipes import get_recipe
    from yolodbg.render.jsonout import dumps, write_text

    check_outputs(("--json", json_out), inputs=(snapshot_path, preds, gt))
    doc = snap.load(snapshot_path)
    inputs = doc["inputs"]
    preds = preds or _resolve(inputs["bundle"].get("path"), snapshot_path, "bundle")
    recorded_gt = inputs.get("gt")
    if gt is None and recorded_gt:
        gt = _resolve(recorded_gt.get("path"), snapshot_path, "ground truth")
    b = bundle_spec.or_recorded(inputs.get("options", {})).load(preds)
    changed = []
    if b.digest != inputs["bundle"].get("sha256"):
        changed.append(f"bundle {preds}")
    if recorded_gt and gt is not None and snap.digest_path(gt) != recorded_gt.get("sha256"):
        changed.append(f"ground truth {gt}")
    if changed and not allow_changed_inputs:
        raise InputError(
            f"{snapshot_path}: the inputs differ from the ones snapshotted ({', '.join(changed)}); "
            "pass --allow-changed-inputs to compare anyway, or rewrite the snapshot with --update"
        )
    recipes = [get_recipe(s) for s in recipe_specs] or snap.recipes_of(doc)
    new = snap.make(b, gt, recipes, {})
    drift = snap.diff(doc, new, rtol, atol)
    lines = drift.lines()
    if json_out:
        write_text(dumps(check_doc(snapshot_path, drift, changed, rtol, atol), sort_keys=True), json_out)
        say_wrote(json_out)
    out = sys.stderr if json_out == "-" else sys.stdout
    if fmt == "github":
        for line in lines:
            print(f"::error file={snapshot_path}::{line}", file=out)
    if not drift.drifted:
        print(
            f"ok: {snapshot_path} — {len(doc['recipes'])} recipe(s) within rtol {rtol:g}, atol {atol:g}",
            file=out,
        )
        return
    print(f"DRIFT in {snapshot_path} ({len(lines)} difference(s), rtol {rtol:g}, atol {atol:g}):", file=out)
    for line in lines[:200]:
        print(f"  {line}", file=out)
    if len(lines) > 200:
        print(f"  ... and {len(lines) - 200} more", file=out)
    sys.exit(EXIT_CHECK)


def _resolve(path: str | None, snapshot_path: Path, what: str) -> Path:
    """A path recorded in a snapshot: as written (relative to the working directory), else next to it."""
    from yolodbg.errors import InputError

    if not path:
        raise InputError(f"{snapshot_path}: records no {what} path; pass it on the command line")
    p = Path(path)
    for candidate in (p, snapshot_path.parent / p):
        if candidate.exists():
            return candidate
    raise InputError(f"{snapshot_path}: its {what} {path} is missing; pass the file on the command line")
