"""``yolodbg scan`` and ``yolodbg trend``: the loss (and mAP) of a dataset, and of a training run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from yolodbg.cli.options import (
    EXIT_CHECK,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,  # scan/trend print the partial report first, then exit with it
    EXIT_USAGE,
    BundleSpec,
    bundle_options,
    debug_option,
    executor,
    finish_map,
    gt_option,
    json_option,
    map_options,
    names_option,
    recipe_option,
    say_wrote,
    stderr,
    top_option,
    wide_option,
)
from yolodbg.scan.status import rule_text

GT_HELP = "COCO json or YOLO labels folder (default: each bundle's own targets)."
RECIPE_HELP = "Loss to replay (default: the head's recipe). See `yolodbg recipes`."


def _job(gt, recipe_spec, spec: BundleSpec, evaluate: bool):
    from yolodbg.recipes import get_recipe
    from yolodbg.scan.run import ScanJob

    if recipe_spec:
        get_recipe(recipe_spec)  # a bad -r fails here, once, not in every bundle
    if gt is not None and not gt.is_dir():  # so does a --gt that is a FIFO, a device or a broken json
        from yolodbg.groundtruth import load_coco

        load_coco(gt)  # read and checked once here (and kept for this process), not once per bundle
    return ScanJob(
        gt=str(gt) if gt is not None else None,
        recipe=recipe_spec,
        head=spec.head,
        input_size=spec.input_size(),
        strides=spec.stride_values(),
        image_ids=spec.image_id_list(),
        nc=spec.nc,
        letterbox=spec.letterbox,
        evaluate=evaluate,
    )


class _Rows:
    """``--rows FILE.jsonl``: one line per GT, streamed to a temp file, moved into place at the end
    (written through for a device such as /dev/null; see :class:`yolodbg.atomic.StreamedFile`)."""

    def __init__(self, target: Path | None) -> None:
        from yolodbg.atomic import StreamedFile

        self.out = StreamedFile(target) if target is not None else None

    def write(self, rec) -> None:
        from yolodbg.render.jsonout import json_line

        if self.out is None or not hasattr(rec, "gts"):
            return
        for g in rec.gts:
            self.out.write(json_line(g.row_doc()))

    def close(self, keep: bool = True) -> None:
        """Move the rows into place; ``keep=False`` (the scan failed) drops them, the old file stays."""
        if self.out is not None:
            self.out.close(keep)
            self.out = None


def _scan_options(f):
    """--gt, -r/--recipe, --workers and --ray (cli/options.map_options), shared by scan and trend."""
    f = map_options(f)
    f = recipe_option(RECIPE_HELP)(f)
    return gt_option(GT_HELP, exists=True)(f)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@_scan_options
@json_option("the yolodbg.scan/1 JSON")
@click.option("--rows", type=click.Path(path_type=Path), help="One JSON line per GT (for pandas).")
@top_option("Rows of the top lists.")
@click.option(
    "--map/--no-map", "evaluate", default=True, show_default=True, help="Decode and COCOeval the predictions."
)
@wide_option
@names_option
@bundle_options
@debug_option
def scan(
    paths,
    gt,
    recipe_spec,
    workers,
    ray_address,
    json_out,
    rows,
    top,
    evaluate,
    wide,
    names_file,
    bundle_spec,
):
    """Aggregate the loss of many bundles: per class, size, level and image, with COCO mAP beside it.

    PATH is a bundle file, a folder of bundles (searched recursively) or a glob pattern;
    bundles are read one at a time, so memory does not grow with their number.

    \b
    Examples:
      yolodbg scan preds/ --gt instances_val2017.json
      yolodbg scan 'runs/val/*.pt' --gt ann.json --workers 2 --json scan.json --rows gts.jsonl
      yolodbg scan preds/ -r yolov8:assigner.topk=13 --no-map
      yolodbg scan /shared/preds/ --gt /shared/ann.json --ray auto   # on a Ray cluster

    Ctrl-C stops after the bundle at hand and prints what was aggregated so far (exit code 130).
    Loss columns are each GT's share of its batch's logged loss, summed over bundles. A bundle
    that repeats an image id of an earlier one (two checkpoints in one folder) is left out of
    every sum and of mAP, with a warning (JSON: duplicates).
    """
    from yolodbg.class_names import for_scan, load_names_file
    from yolodbg.paths import check_outputs
    from yolodbg.scan.run import allocator, expand_all

    if names_file is not None:
        load_names_file(names_file)  # a bad --names fails before the scan, not after it
    allocator.tune()  # this process is ours: keep freed heap pages for the next bundle
    job = _job(gt, recipe_spec, bundle_spec, evaluate)
    files = expand_all(paths)
    check_outputs(("--json", json_out), ("--rows", rows), inputs=(*files, gt))
    agg = _scan_files(files, job, workers, ray_address, top, rows)
    doc = agg.summary()
    doc["class_names"] = for_scan(doc, names_file, gt)
    _report(doc, json_out, lambda console: _render_scan(console, doc, wide), wide)
    finish_map(agg.interrupted, agg.bundles, len(files), lambda: _exit(doc))


def _scan_files(files, job, workers: int, ray_address: str | None, top: int, rows: Path | None):
    """Map the bundles (locally or on Ray) under a progress bar, streaming ``--rows`` as they come."""
    from yolodbg.render import scan as render
    from yolodbg.scan.run import scan as run_scan

    with executor(ray_address, workers, len(files)) as (n_workers, ray):
        sink = _Rows(rows)
        ok = False
        try:
            with render.progress(stderr()) as bar:
                on_record = _progress_callback(bar, "scan", len(files), sink.write)
                agg = run_scan(files, job, workers=n_workers, top=top, on_record=on_record, executor=ray)
            ok = True
        finally:
            sink.close(keep=ok)
    if ok:
        say_wrote(rows)
    return agg


def _progress_callback(bar, name: str, total: int, also=None):
    """Advance ``bar`` by one bundle (and its images) per record; ``also(record)`` first."""
    task = bar.add_task(name, total=total, images=0)

    def on_record(rec) -> None:
        if also is not None:
            also(rec)
        n = getattr(rec, "batch_size", 0)
        bar.update(task, advance=1, images=bar.tasks[task].fields["images"] + n)

    return on_record


def _report(doc: dict, json_out, render, wide: bool) -> None:
    """``--json`` (with the versions) and, unless the JSON goes to stdout, the console report."""
    from yolodbg.documents.common import versions
    from yolodbg.render import fit, jsonout

    doc["versions"] = versions()
    if json_out:
        jsonout.write(doc, json_out)
        say_wrote(json_out)
    if json_out != "-":
        render(fit.console(wide))


def _render_scan(console, doc: dict, wide: bool) -> None:
    from yolodbg.render import scan as render

    render.render_scan(console, doc, wide)


def _exit(doc: dict) -> None:
    if any("internal error" in f for f in doc["failed"]):
        sys.exit(EXIT_INTERNAL)
    if doc["violations"] or doc["nonfinite"]:
        sys.exit(EXIT_CHECK)
    if doc["failed"]:
        sys.exit(EXIT_USAGE)


@click.command(
    help=f"""Follow loss terms, classes, mAP and single GTs over the checkpoints of a run.

    Checkpoints: bundles grouped by meta["epoch"]; without epochs each RUN_DIR is one
    checkpoint (several arguments) or each file is one (a single argument), in order,
    labelled by the shortest end of their paths that tells them apart.

    \b
    Examples:
      yolodbg trend runs/exp/val_bundles/ --gt ann.json --plot trend.png
      yolodbg trend ckpt_010/ ckpt_020/ ckpt_030/ --json trend.json

    {rule_text()}
    """
)
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@_scan_options
@click.option(
    "--window", type=click.IntRange(min=1), default=3, show_default=True, help="Steps a plateau spans."
)
@click.option("--plot", type=click.Path(path_type=Path), help="PNG of the trajectories.")
@click.option(
    "--shared-scale",
    is_flag=True,
    help="--plot: one y range per unit (all loss terms and the total, all loss/GT, all AP) instead of "
    "one per panel, so panels compare by eye.",
)
@json_option("the yolodbg.trend/1 JSON")
@click.option(
    "--map/--no-map", "evaluate", default=True, show_default=True, help="Decode and COCOeval the predictions."
)
@wide_option
@bundle_options
@debug_option
def trend(
    run_dirs,
    gt,
    recipe_spec,
    workers,
    ray_address,
    window,
    plot,
    shared_scale,
    json_out,
    evaluate,
    wide,
    bundle_spec,
):
    from yolodbg.paths import check_outputs
    from yolodbg.scan.run import allocator
    from yolodbg.scan.trend import checkpoints

    allocator.tune()  # this process is ours: keep freed heap pages for the next bundle
    job = _job(gt, recipe_spec, bundle_spec, evaluate)
    cps = checkpoints(run_dirs)
    check_outputs(("--json", json_out), ("--plot", plot), inputs=(*(p for c in cps for p in c.paths), gt))
    doc = _trend_checkpoints(run_dirs, cps, job, workers, ray_address, window)
    if plot is not None:
        _plot(doc, plot, shared_scale)
    _report(doc, json_out, lambda console: _render_trend(console, doc, wide), wide)
    _trend_exit(doc)


def _trend_checkpoints(run_dirs, cps, job, workers: int, ray_address: str | None, window: int) -> dict:
    """Scan every checkpoint (locally or on Ray) under a progress bar -> the trend document."""
    from yolodbg.render import scan as render
    from yolodbg.scan.trend import trend as run_trend

    total = sum(len(c.paths) for c in cps)
    with executor(ray_address, workers, total) as (n_workers, ray), render.progress(stderr()) as bar:
        on_record = _progress_callback(bar, "trend", total)
        return run_trend(
            run_dirs, job, workers=n_workers, window=window, on_record=on_record, cps=cps, executor=ray
        )


def _plot(doc: dict, plot: Path, shared_scale: bool) -> None:
    """Draw ``--plot``; ``wrote`` says which classes it shows when not all of them fit."""
    from yolodbg.render.trend_plot import choose_series, plot_trend

    plot_trend(doc, plot, shared_scale=shared_scale)
    note = choose_series(doc["series"])[1]
    say_wrote(plot, f" ({note})" if note else "")


def _render_trend(console, doc: dict, wide: bool) -> None:
    from yolodbg.render import scan as render

    render.render_trend(console, doc, wide)


def _trend_exit(doc: dict) -> None:
    """Failed bundles: exit 2 (3 for an internal error); else Ctrl-C: 130."""
    err = stderr()
    if doc["interrupted"]:
        err.print("interrupted: the later checkpoints are partial or missing", style="bold yellow")
    failed = [f for c in doc["checkpoints"] for f in c["failed"]]
    for f in failed:
        err.print(f"failed: {f}", style="bold red", highlight=False)
    if failed:
        sys.exit(EXIT_INTERNAL if any("internal error" in f for f in failed) else EXIT_USAGE)
    if doc["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)
