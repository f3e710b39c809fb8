"""``yolodbg snapshot`` and ``yolodbg check``: loss-number regression tests for CI."""

from __future__ import annotations

import sys
from dataclasses import dataclass
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
    top_option,
    wide_option,
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
    doc = snap.make(b, gt, recipes, options, base=output.parent)
    text = snap.dumps(doc).encode("utf-8")
    # without --update the name is taken only if still free: of two concurrent snapshots one wins
    atomic_write(
        output, lambda f: f.write(text), exclusive=not update, exists_fix="pass --update to overwrite it"
    )
    n = sum(len(r["gts"]) for r in doc["recipes"])
    say_wrote(output, f" ({len(recipes)} recipe(s), {b.batch_size} images, {n} GT rows)")


@dataclass(frozen=True)
class CheckOptions:
    """What ``check`` compares with and how it reports."""

    rtol: float
    atol: float
    allow_changed_inputs: bool
    fmt: str
    json_out: str | None
    top: int
    wide: bool


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
@top_option("Changes listed per kind, largest first (--json lists all).")
@json_option("a yolodbg.check/1 report")
@wide_option
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
    top,
    json_out,
    wide,
    bundle_spec,
):
    """Recompute a snapshot's numbers and fail (exit 1) if any drifted.

    Exit codes: 0 within tolerance · 1 drift (terms that moved, GTs whose positives
    changed, recipe parameters that changed) · 2 inputs missing or changed · 3 internal
    error (a bug) · 130 interrupted (Ctrl-C).
    Paths in the snapshot are read relative to the snapshot file, so check runs from any folder
    (snapshots written before yolodbg recorded them so: relative to the working directory).

    \b
    Examples:
      yolodbg check tests/loss.snap.json
      yolodbg check snap.json preds.pt --gt ann.json --rtol 1e-6 --top 50
      yolodbg check snap.json --format github          # annotations in a GitHub Actions log
    """
    from yolodbg import snapshot as snap
    from yolodbg.paths import check_outputs
    from yolodbg.recipes import get_recipe

    opts = CheckOptions(rtol, atol, allow_changed_inputs, fmt, json_out, top, wide)
    check_outputs(("--json", json_out), inputs=(snapshot_path, preds, gt))
    doc = snap.load(snapshot_path)
    preds = preds or snap.resolve_input(doc, snapshot_path, "bundle", "bundle")
    if gt is None and doc["inputs"].get("gt"):
        gt = snap.resolve_input(doc, snapshot_path, "gt", "ground truth")
    b = bundle_spec.or_recorded(doc["inputs"].get("options", {})).load(preds)
    changed = _changed_inputs(doc, snapshot_path, b, preds, gt, opts)
    recipes = [get_recipe(s) for s in recipe_specs] or snap.recipes_of(doc)
    drift = snap.diff(doc, snap.make(b, gt, recipes, {}), rtol, atol)
    if json_out:
        _write_check_json(drift, snapshot_path, changed, opts)
    _print_check(drift, doc, snapshot_path, opts)
    if drift.drifted:
        _print_accept_hint(doc, snapshot_path, preds, gt, [r.spec() for r in recipes], opts)
        sys.exit(EXIT_CHECK)


def _changed_inputs(doc: dict, snapshot_path: Path, b, preds: Path, gt, opts: CheckOptions) -> list[str]:
    """Inputs whose digest differs from the snapshot's: refused unless --allow-changed-inputs."""
    from yolodbg import snapshot as snap
    from yolodbg.errors import InputError

    inputs = doc["inputs"]
    changed = []
    if b.digest != inputs["bundle"].get("sha256"):
        changed.append(f"bundle {preds}")
    recorded_gt = inputs.get("gt")
    if recorded_gt and gt is not None and snap.digest_path(gt) != recorded_gt.get("sha256"):
        changed.append(f"ground truth {gt}")
    if changed and not opts.allow_changed_inputs:
        raise InputError(
            f"{snapshot_path}: the inputs differ from the ones snapshotted ({', '.join(changed)}); "
            "pass --allow-changed-inputs to compare anyway, or accept the new inputs with "
            f"yolodbg snapshot PREDS -o {snapshot_path} --update"
        )
    return changed


def _write_check_json(drift, snapshot_path: Path, changed: list[str], opts: CheckOptions) -> None:
    from yolodbg.documents.check import check_doc
    from yolodbg.render.jsonout import dumps, write_text

    report = check_doc(snapshot_path, drift, changed, opts.rtol, opts.atol)
    write_text(dumps(report, sort_keys=True), opts.json_out)
    say_wrote(opts.json_out)


def _print_check(drift, doc: dict, snapshot_path: Path, opts: CheckOptions) -> None:
    """ok, or the drift like a diff (top changes per kind), and GitHub annotations with --format github."""
    from yolodbg.render.check import drift_report

    out = sys.stderr if opts.json_out == "-" else sys.stdout
    if opts.fmt == "github":
        for line in drift.lines():
            print(f"::error file={snapshot_path}::{line}", file=out)
    if not drift.drifted:
        n = len(doc["recipes"])
        print(f"ok: {snapshot_path} — {n} recipe(s) within rtol {opts.rtol:g}, atol {opts.atol:g}", file=out)
        return
    width = None if opts.wide else _terminal_width()
    for line in drift_report(drift, str(snapshot_path), opts.rtol, opts.atol, opts.top, width):
        print(line, file=out)


def _print_accept_hint(
    doc: dict, snapshot_path: Path, preds: Path, gt, specs: list[str], opts: CheckOptions
) -> None:
    """The command that accepts the new numbers (``snapshot --update``; check itself never rewrites)."""
    import os
    import shlex

    from yolodbg.render.fit import lines as lines_of

    args = ["yolodbg", "snapshot", os.path.normpath(preds)]
    if gt is not None:
        args += ["--gt", os.path.normpath(gt)]
    for key, value in sorted(doc["inputs"].get("options", {}).items()):  # the recorded bundle options
        args += [f"--{key.replace('_', '-')}", str(value)]
    for spec in specs:
        args += ["-r", spec]
    args += ["-o", str(snapshot_path), "--update"]
    out = sys.stderr if opts.json_out == "-" else sys.stdout
    print("if the change is intended, accept the new numbers with:", file=out)
    width = 10_000 if opts.wide else _terminal_width()
    words = [shlex.quote(a) for a in args]
    lines = lines_of(words, width - 6, indent="    ", sep=" ")  # a shell continuation per line: pastes as is
    for i, line in enumerate(lines):
        print(f"  {line}" + (" \\" if i < len(lines) - 1 else ""), file=out)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns
