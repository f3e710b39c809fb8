"""``yolodbg explain``: one batch's loss broken down per GT box, per anchor and per term."""

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
    names_option,
    recipe_option,
    say_wrote,
    top_option,
    wide_option,
)


@click.command()
@click.argument("preds", type=click.Path(path_type=Path))
@gt_option("COCO json or YOLO labels folder (default: the bundle's own targets).")
@recipe_option("Loss to replay (default: the head's recipe, e.g. yolov8). See `yolodbg recipes`.")
@click.option(
    "--image",
    "image",
    metavar="ID",
    help="Focus on one image (COCO id, file name or batch index): its own GTs and background anchors, "
    "ranked within it; shares stay of the batch total.",
)
@top_option("Rows of the GT table and number of background anchors listed.")
@names_option
@wide_option
@json_option("the yolodbg.explain/1 JSON")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(path_type=Path),
    help="Write one overlay PNG per image (or the --image one) into this folder.",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(path_type=Path),
    help="Write a self-contained HTML report (summary, sortable GT table, overlays).",
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Original images for --plot/--html (default: next to the --gt json; else a blank canvas).",
)
@bundle_options
@debug_option
def explain(preds, gt, recipe_spec, image, top, names_file, wide, json_out, bundle_spec, **pictures):
    """Break one batch's loss down per GT box, per anchor and per term.

    PREDS is a prediction bundle (.pt): the raw train-mode head output of a batch, saved
    with yolodbg.bundle.save or plain torch.save (then use --head/--imgsz/--image-ids).

    \b
    Examples:
      yolodbg explain sample_data/yolov8n_val.pt --gt sample_data/coco_val.json
      yolodbg explain sample_data/yolov8n_train_step.pt          # replays a training step
      yolodbg explain preds.pt --gt labels/ --image 000123 --top 30 --names data.yaml
      yolodbg explain preds.pt --gt ann.json --json - | jq .terms
      yolodbg explain preds.pt --gt ann.json --plot plots/ --html report.html

    The summary shows each term as the trainer logs it, the GT table each box's share of
    it with a reason code when a box got no (or few) positive anchors, and the background
    table the anchors with no GT that cost the most, with a hint (missing_label?,
    class_swap?, duplicate, high_iou_negative).
    """
    from rich.console import Console

    from yolodbg.documents.explain import explain_doc
    from yolodbg.explain import explain as run_explain
    from yolodbg.paths import check_outputs
    from yolodbg.recipes import get_recipe
    from yolodbg.render import console as render
    from yolodbg.render import jsonout

    outputs = (("--json", json_out), ("--html", pictures["html_out"]))
    check_outputs(*outputs, folders=(("--plot", pictures["plot_dir"]),), inputs=(preds, gt))
    b = bundle_spec.load(preds)
    recipe = get_recipe(recipe_spec) if recipe_spec else None
    focus = _resolve_image(b, image) if image is not None else None
    ex = run_explain(b, gt, recipe, top=max(top, 1) if json_out else top, focus=focus, names_file=names_file)
    if json_out:
        jsonout.write(explain_doc(ex, focus), json_out)
        say_wrote(json_out)
    err = Console(stderr=True)
    if json_out != "-":
        render.render_explain(Console(), ex, top, focus, wide=wide)
    if pictures["plot_dir"] is not None or pictures["html_out"] is not None:
        _pictures(ex, gt, focus, err, **pictures)
    if ex.nonfinite is not None:
        err.print(f"[bold red]non-finite loss:[/] {ex.nonfinite.message}", highlight=False)
        sys.exit(EXIT_CHECK)
    if ex.breakdown.violations:
        for v in ex.breakdown.violations:
            err.print(
                f"[bold red]conservation violated:[/] {v} (a yolodbg bug; please report)", highlight=False
            )
        sys.exit(EXIT_CHECK)
    if ex.logged is not None and ex.logged.failed:
        err.print(f"[bold red]replay differs from the logged loss:[/] {ex.logged.message()}", highlight=False)
        sys.exit(EXIT_CHECK)


def _pictures(ex, gt, focus, err, plot_dir, html_out, images_dir) -> None:
    """``--plot`` overlays and the ``--html`` report (messages on stderr: stdout may carry JSON)."""
    from yolodbg.render import html, overlay

    roots, names = overlay.image_roots(images_dir, gt), overlay.class_labels(ex)
    if plot_dir is not None:
        images = None if focus is None else [focus]
        paths = overlay.write_overlays(ex, plot_dir, roots=roots, names=names, images=images)
        err.print(f"wrote {len(paths)} overlay{'s' * (len(paths) != 1)} to {plot_dir}", highlight=False)
    if html_out is not None:
        say_wrote(html.write_html(ex, html_out, roots=roots, names=names))


def _resolve_image(b, key: str) -> int:
    from yolodbg.errors import InputError

    for info in b.images:
        names = {
            str(info.image_id),
            info.file_name or "",
            Path(info.file_name).stem if info.file_name else "",
        }
        if key in names - {""}:
            return info.index
    if key.lstrip("#").isdigit() and int(key.lstrip("#")) < b.batch_size:
        return int(key.lstrip("#"))
    known = ", ".join(i.label for i in b.images[:8])
    raise InputError(
        f"--image {key}: no such image in {b.source} (images: {known}{', ...' if b.batch_size > 8 else ''})"
    )
