"""``yolodbg capture``: run an Ultralytics detection model on images and write prediction bundles."""

from __future__ import annotations

from pathlib import Path

import click

from yolodbg.cli.options import debug_option, gt_option, say_wrote
from yolodbg.option_values import MAX_PIXELS


@click.command()
@click.option(
    "--model",
    "model",
    required=True,
    metavar="WEIGHTS_OR_YAML",
    help="Ultralytics detection checkpoint (.pt) or model yaml (random weights, seed 0).",
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(path_type=Path),
    help="Folder of images (all of them, by name), or where the --gt json's files are.",
)
@gt_option("COCO json: which images (files next to it or in --images), their ids, categories and boxes.")
@click.option(
    "--imgsz",
    type=click.IntRange(min=32, max=MAX_PIXELS),
    default=640,
    show_default=True,
    help="Input size (the long side with --rect).",
)
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True, help="Images per bundle.")
@click.option(
    "--letterbox",
    type=click.Choice(["val", "predict"]),
    default="val",
    show_default=True,
    help="Ultralytics' validation dataloader (long side resized, other side rounded up) or its predictor.",
)
@click.option(
    "--rect",
    is_flag=True,
    help="Rectangular batches, as the trainer's validation builds them (rect=True): images sorted by aspect "
    "ratio, each batch padded to its own shape. Without it: square --imgsz inputs, as `yolo val` by default.",
)
@click.option(
    "--nc", type=click.IntRange(min=1), help="Classes of a yaml model (default: the --gt categories)."
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder (one bundle per batch: batch_0000.pt, ...) or a .pt file (all images in one batch).",
)
@debug_option
def capture(model, images_dir, gt, imgsz, batch, letterbox, rect, nc, out):
    """Run an Ultralytics detection model on images and save its raw head outputs as bundles.

    Images are letterboxed exactly as Ultralytics validation does; the model runs with
    BatchNorm in eval mode and the raw train-mode head output, without gradients. With --gt
    the bundles also hold image ids, category ids and the GT boxes, so `yolodbg explain`
    replays the loss Ultralytics' validator computes on the same batch. Existing files are
    never overwritten. Needs the extra: pip install 'yolodbg[ultralytics]'.

    \b
    Examples:
      yolodbg capture --model best.pt --gt data/val.json -o preds/
      yolodbg capture --model yolov8n.yaml --images data/val/ --imgsz 320 --batch 4 -o preds/
      yolodbg capture --model best.pt --gt data/val.json --rect -o preds/   # the val loss the trainer logs
      yolodbg explain preds/batch_0000.pt --plot plots/ --html report.html
    """
    from yolodbg.capture import capture_model
    from yolodbg.errors import InputError
    from yolodbg.paths import check_outputs, regular_file

    if images_dir is None and gt is None:
        raise InputError("capture: give --images DIR or --gt ANN.json (or both)")
    if Path(model).exists():  # a path (not a name Ultralytics ships): a FIFO would block its reader
        regular_file(model, "--model", "pass a .pt checkpoint or a model .yaml")
    if out.suffix == ".pt":  # checked before the model loads: a bad -o fails in a second
        check_outputs(("-o", out))
    else:
        check_outputs(folders=(("-o", out),))
    paths = capture_model(
        model, images_dir, gt, imgsz=imgsz, batch=batch, out=out, letterbox=letterbox, nc=nc, rect=rect
    )
    for path in paths:
        click.echo(str(path))
    say_wrote(out, f" ({len(paths)} bundle{'s' * (len(paths) != 1)})")
