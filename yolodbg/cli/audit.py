"""``yolodbg audit``: suspected label errors over a dataset, ranked, with the evidence in numbers."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from yolodbg.cli.options import (
    EXIT_CHECK,
    EXIT_INTERNAL,
    EXIT_USAGE,
    BundleSpec,
    bundle_options,
    debug_option,
    executor,
    finish_map,
    json_option,
    map_options,
    names_option,
    recipe_option,
    say_wrote,
    stderr,
    top_option,
    wide_option,
)


@dataclass(frozen=True)
class AuditOutputs:
    """Where the audit goes besides the console, and how the report looks."""

    json_out: str | None = None
    rows: Path | None = None
    html_out: Path | None = None
    suggest_out: Path | None = None
    suggest_min: float = 0.5
    images_dir: Path | None = None
    top: int = 15
    wide: bool = False

    def files(self) -> tuple[tuple[str, object], ...]:
        """The file outputs, named by their option, for :func:`yolodbg.paths.check_outputs`."""
        return (
            ("--json", self.json_out),
            ("--rows", self.rows),
            ("--html", self.html_out),
            ("--suggest", self.suggest_out),
        )


def _names(names_file: Path | None):
    """``--names``: read once here (a bad file fails before any bundle); None: each bundle's own."""
    from yolodbg.class_names import resolve

    return resolve(names_file=names_file) if names_file is not None else None


def _job(gt: Path, recipe_spec, spec: BundleSpec, names):
    from yolodbg.audit.run import AuditJob
    from yolodbg.errors import GroundTruthError
    from yolodbg.groundtruth import load_coco
    from yolodbg.recipes import get_recipe

    if recipe_spec:
        get_recipe(recipe_spec)  # a bad -r fails here, once
    if gt.is_dir():
        raise GroundTruthError(
            f"{gt}: --gt: a folder; audit reads a COCO json (its ids name the issues), pass one"
        )
    load_coco(gt)  # read and checked once here
    return AuditJob(
        gt=str(gt),
        recipe=recipe_spec,
        head=spec.head,
        input_size=spec.input_size(),
        strides=spec.stride_values(),
        image_ids=spec.image_id_list(),
        nc=spec.nc,
        letterbox=spec.letterbox,
        names=names,
    )


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--gt",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="COCO json: the labels to audit.",
)
@recipe_option("Loss to replay (default: the head's recipe). See `yolodbg recipes`.")
@map_options
@top_option("Suspects listed on the console and in --html.")
@json_option("the yolodbg.audit/1 JSON (every issue, ranked)")
@click.option(
    "--rows", type=click.Path(path_type=Path), help="One JSON line per GT with its evidence (for pandas)."
)
@click.option("--html", "html_out", type=click.Path(path_type=Path), help="One page with a crop per suspect.")
@click.option(
    "--suggest",
    "suggest_out",
    type=click.Path(path_type=Path),
    help="A proposed corrected COCO json (never the input).",
)
@click.option(
    "--suggest-min",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Apply issues scoring at least this in --suggest.",
)
@names_option
@click.option(
    "--images",
    "images_dir",
    type=click.Path(path_type=Path),
    help="Original images for --html (default: next to --gt).",
)
@wide_option
@bundle_options
@debug_option
def audit(
    paths,
    gt,
    recipe_spec,
    workers,
    ray_address,
    top,
    json_out,
    rows,
    html_out,
    suggest_out,
    suggest_min,
    names_file,
    images_dir,
    wide,
    bundle_spec,
):
    """Rank suspected label errors: wrong class, bad box, missing, spurious and duplicate labels.

    PATH is a bundle file, a folder of bundles (searched recursively) or a glob pattern; the
    bundles are streamed as scan does. Each suspect gets a score on one scale (the chance the
    label is wrong), the box in original pixels and its evidence: the class scores of the anchors
    on the GT, the box they agree on, the GT's share of the loss. Bundles of several checkpoints
    on the same images raise (or lower) a suspect's score by how many checkpoints agree.

    \b
    Examples:
      yolodbg audit preds/ --gt instances_val2017.json --html audit.html
      yolodbg audit 'runs/val/*.pt' --gt ann.json --json audit.json --suggest fixed.json
      yolodbg audit ckpt10/ ckpt20/ ckpt30/ --gt ann.json --top 50

    Ctrl-C stops after the bundle at hand and prints what was audited so far (exit code 130).
    Exit codes: 0 done, 1 a replay failed a check (non-finite loss), 2 bad input, 3 internal error.
    """
    from yolodbg.paths import check_outputs
    from yolodbg.scan.run import allocator, expand_all

    out = AuditOutputs(json_out, rows, html_out, suggest_out, suggest_min, images_dir, top, wide)
    allocator.tune()  # this process is ours: keep freed heap pages for the next bundle
    job = _job(gt, recipe_spec, bundle_spec, _names(names_file))
    files = expand_all(paths)
    check_outputs(*out.files(), inputs=(*files, gt, names_file))
    agg = _audit_files(files, job, workers, ray_address, rows)
    doc = agg.document()
    _report(doc, out, gt)
    finish_map(agg.interrupted, agg.bundles, len(files), lambda: _exit(doc))


def _audit_files(files, job, workers: int, ray_address: str | None, rows: Path | None):
    """Map the bundles (locally or on Ray) under a progress bar, streaming ``--rows`` as they come."""
    from yolodbg.audit.merge import AuditAggregate
    from yolodbg.audit.run import drive
    from yolodbg.render import scan as scan_render

    agg = AuditAggregate()
    with executor(ray_address, workers, len(files)) as (n_workers, ray):
        sink = _Rows(rows)
        ok = False
        try:
            with scan_render.progress(stderr()) as bar:
                on_record = _progress_callback(bar, len(files), agg, sink)
                agg.interrupted = drive(files, job, on_record, n_workers, ray)
            ok = True
        finally:
            sink.close(keep=ok)
    return agg


def _progress_callback(bar, total: int, agg, sink):
    """Add each record to ``agg`` (and ``--rows``), advance ``bar`` by one bundle and its images."""
    from yolodbg.scan.run import Failed

    task = bar.add_task("audit", total=total, images=0)

    def on_record(rec) -> None:
        if isinstance(rec, Failed):
            agg.fail(rec.source, rec.message)
        else:
            agg.add(rec)
            sink.write(rec)
        n = getattr(rec, "batch_size", 0)
        bar.update(task, advance=1, images=bar.tasks[task].fields["images"] + n)

    return on_record


def _report(doc: dict, out: AuditOutputs, gt: Path) -> None:
    """The files (``--json`` with the versions, ``--html``, ``--suggest``), then the console report."""
    from yolodbg.documents.common import versions
    from yolodbg.render import fit, jsonout

    doc["versions"] = versions()
    if out.json_out:
        jsonout.write(doc, out.json_out)
        say_wrote(out.json_out)
    if out.html_out is not None:
        _write_html(doc, out, gt)
    if out.suggest_out is not None:
        _write_suggest(doc, out, gt)
    if out.json_out != "-":
        from yolodbg.render.audit import render_audit

        render_audit(fit.console(out.wide), doc, out.top, out.wide)


def _write_html(doc: dict, out: AuditOutputs, gt: Path) -> None:
    from yolodbg.render.audit import write_audit_html
    from yolodbg.render.overlay import image_roots

    say_wrote(write_audit_html(doc, out.html_out, image_roots(out.images_dir, gt), out.top))


def _write_suggest(doc: dict, out: AuditOutputs, gt: Path) -> None:
    from yolodbg.audit.suggest import suggest
    from yolodbg.render import jsonout

    fixed = suggest(doc, gt, out.suggest_min)
    jsonout.write(fixed, str(out.suggest_out))
    info = fixed["yolodbg_audit"]
    say_wrote(
        out.suggest_out,
        f": {info['changed']} changed, {info['added']} added, "
        f"{len(info['removed'])} removed (issues scoring ≥ {out.suggest_min:g})",
    )


class _Rows:
    """``--rows FILE.jsonl``: one line per GT with its evidence, streamed, moved into place at the end."""

    def __init__(self, target: Path | None) -> None:
        from yolodbg.atomic import StreamedFile

        self.out = StreamedFile(target) if target is not None else None

    def write(self, rec) -> None:
        from yolodbg.render.jsonout import json_line

        if self.out is None:
            return
        for g in rec.gts:
            self.out.write(json_line({k: v for k, v in g.items() if k != "ann_key"}))

    def close(self, keep: bool = True) -> None:
        if self.out is not None:
            self.out.close(keep)
            self.out = None


def _exit(doc: dict) -> None:
    if any("internal error" in f for f in doc["failed"]):
        sys.exit(EXIT_INTERNAL)
    if doc["nonfinite"]:
        sys.exit(EXIT_CHECK)
    if doc["failed"]:
        sys.exit(EXIT_USAGE)
