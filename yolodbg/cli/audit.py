"""``yolodbg audit``: suspected label errors over a dataset, ranked, with the evidence in numbers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from yolodbg.cli.options import (
    EXIT_CHECK,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    BundleSpec,
    bundle_options,
    debug_option,
    json_option,
    recipe_option,
    top_option,
)


def _ray_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--ray takes 'local', 'auto', HOST:PORT or ray://... (as scan does)."""
    if value is None or value in ("local", "auto") or value.startswith("ray://"):
        return value
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and not os.path.exists(value):
        return value
    raise click.BadParameter(
        f"{value!r} is not a Ray address; use local, auto, HOST:PORT or ray://HOST:10001"
    )


def _read_names(path: Path | None) -> tuple[str, ...] | None:
    """``--names``: one class name per line, or a YOLO data.yaml (its ``names``)."""
    from yolodbg.errors import InputError
    from yolodbg.paths import regular_file

    if path is None:
        return None
    regular_file(path, "--names", "pass a text file with one class name per line, or a data.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: --names: cannot read it ({e}); pass a UTF-8 text file") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            names = (yaml.safe_load(text) or {}).get("names")
        except (yaml.YAMLError, AttributeError):
            names = None
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names)]
        if not isinstance(names, list) or not names:
            raise InputError(
                f"{path}: --names: field names is missing or not a list; give names: [a, b, ...]"
            )
        return tuple(str(n) for n in names)
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: --names: the file is empty; give one class name per line")
    return tuple(names)


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


def _executor_workers(ray_address, workers: int, n: int, stack):
    from yolodbg.scan.run import auto_workers

    if ray_address is None:
        return auto_workers(workers, n), None
    from yolodbg.scan.ray_pool import RayPool

    pool = stack.enter_context(RayPool(ray_address))
    cpus = pool.cpus()
    return max(1, min(workers or cpus, cpus, n)), pool


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--gt",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="COCO json: the labels to audit.",
)
@recipe_option("Loss to replay (default: the head's recipe). See `yolodbg recipes`.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    help="Local worker processes [default: one per CPU core, at most one per bundle]; 1 = this process only.",
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    callback=_ray_address,
    help="Map the bundles over Ray, as scan --ray.",
)
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
@click.option(
    "--names",
    "names_file",
    type=click.Path(path_type=Path),
    help="Class names: one per line, or a data.yaml.",
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(path_type=Path),
    help="Original images for --html (default: next to --gt).",
)
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
    from contextlib import ExitStack

    from rich.console import Console

    from yolodbg.audit.merge import AuditAggregate
    from yolodbg.audit.run import drive
    from yolodbg.documents.common import versions
    from yolodbg.paths import check_outputs
    from yolodbg.render import scan as scan_render
    from yolodbg.scan.run import Failed, allocator, expand_all

    allocator.tune()
    names = _read_names(names_file)
    job = _job(gt, recipe_spec, bundle_spec, names)
    files = expand_all(paths)
    outputs = (("--json", json_out), ("--rows", rows), ("--html", html_out), ("--suggest", suggest_out))
    check_outputs(*outputs, inputs=(*files, gt, names_file))
    err = Console(stderr=True)
    agg = AuditAggregate()
    with ExitStack() as stack:
        n_workers, ray = _executor_workers(ray_address, workers, len(files), stack)
        sink = _Rows(rows)
        ok = False
        try:
            with scan_render.progress(err) as bar:
                task = bar.add_task("audit", total=len(files), images=0)

                def on_record(rec) -> None:
                    if isinstance(rec, Failed):
                        agg.fail(rec.source, rec.message)
                    else:
                        agg.add(rec)
                        sink.write(rec)
                    n = getattr(rec, "batch_size", 0)
                    bar.update(task, advance=1, images=bar.tasks[task].fields["images"] + n)

                agg.interrupted = drive(files, job, on_record, n_workers, ray)
            ok = True
        finally:
            sink.close(keep=ok)
    doc = agg.document()
    doc["versions"] = versions()
    _write(doc, err, json_out, html_out, suggest_out, suggest_min, gt, images_dir, top)
    if json_out != "-":
        from yolodbg.render.audit import render_audit

        render_audit(Console(), doc, top)
    if agg.interrupted:
        err.print(f"interrupted: results cover {agg.bundles} of {len(files)} bundles", style="bold yellow")
    _exit(doc)
    if agg.interrupted:
        sys.exit(EXIT_INTERRUPTED)


def _write(doc, err, json_out, html_out, suggest_out, suggest_min, gt, images_dir, top) -> None:
    from yolodbg.render import jsonout

    if json_out:
        jsonout.write(doc, json_out)
        if json_out != "-":
            err.print(f"wrote {json_out}", highlight=False)
    if html_out is not None:
        from yolodbg.render.audit import write_audit_html
        from yolodbg.render.overlay import image_roots

        err.print(
            f"wrote {write_audit_html(doc, html_out, image_roots(images_dir, gt), top)}", highlight=False
        )
    if suggest_out is not None:
        from yolodbg.audit.suggest import suggest

        fixed = suggest(doc, gt, suggest_min)
        jsonout.write(fixed, str(suggest_out))
        info = fixed["yolodbg_audit"]
        err.print(
            f"wrote {suggest_out}: {info['changed']} changed, {info['added']} added, "
            f"{len(info['removed'])} removed (issues scoring ≥ {suggest_min:g})",
            highlight=False,
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
