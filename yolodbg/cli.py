"""The ``yolodbg`` command line: parse options, call the library, render. No loss math here.

Heavy imports (torch, pycocotools) happen inside the commands, so ``yolodbg --help`` is fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from yolodbg import __version__

EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class _Group(click.Group):
    """Turns yolodbg's own errors into one line and an exit code (tracebacks only with --debug).

    Ctrl-C in any command is one line too, exit code 130; output files are written atomically
    (:mod:`yolodbg._atomic`), so an interrupted command leaves no partial file behind.
    """

    def invoke(self, ctx: click.Context):
        from yolodbg.errors import YolodbgError

        try:
            return super().invoke(ctx)
        except YolodbgError as e:
            if _debug(ctx):
                raise
            click.echo(f"yolodbg: error: {_one_line(str(e))}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("yolodbg: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except click.BadParameter as e:  # a bad option value: one line like yolodbg's own errors
            if _debug(ctx) or isinstance(e, click.MissingParameter):  # missing: click's usage hint helps
                raise
            click.echo(f"yolodbg: error: {e.format_message()}", err=True)
            ctx.exit(EXIT_USAGE)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:  # a bug: say so in one line, keep the traceback for --debug
            if _debug(ctx):
                raise
            click.echo(
                f"yolodbg: internal error: {type(e).__name__}: {e} (a bug in yolodbg; rerun with --debug and "
                "report the traceback)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


def _one_line(message: str) -> str:
    """An error message on one line, whatever value it quotes (a tensor's repr spans several)."""
    return " ".join(message.split())


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["debug"] = True
    return value


def debug_option(f):
    """``--debug`` on every command (and on the group): tracebacks instead of one-line errors."""
    return click.option(
        "--debug",
        is_flag=True,
        is_eager=True,
        expose_value=False,
        callback=_set_debug,
        help="Show tracebacks instead of one-line errors.",
    )(f)


def _int_list(text: str | None, option: str) -> tuple[float, ...] | None:
    from yolodbg import _options

    return _options.number_list(text, option)


def _imgsz(text: str | None) -> tuple[int, int] | None:
    from yolodbg import _options

    return _options.imgsz(text)


class HeadChoice(click.Choice):
    """``--head``: the registered head families (:mod:`yolodbg.heads`), read when click first needs them
    (importing the families loads torch, which a bare ``yolodbg --help`` does not need)."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self):
        from yolodbg import heads

        return heads.names()

    @choices.setter
    def choices(self, _value) -> None:
        """Set by ``click.Choice.__init__``; the registry is the one source."""


def bundle_options(f):
    """Options that describe a bundle, spelled the same in every command."""

    @click.option(
        "--head",
        type=HeadChoice(),
        help="Head family of a bare output (inferred when unambiguous).",
    )
    @click.option(
        "--imgsz", metavar="H[,W]", help="Network input size of a bare output, e.g. 640 or 384,640."
    )
    @click.option("--strides", metavar="S,S,..", help="Stride per level (default 8,16,32 or from --imgsz).")
    @click.option(
        "--nc", type=click.IntRange(min=1), help="Number of classes, where the output is ambiguous."
    )
    @click.option(
        "--image-ids",
        metavar="ID,ID,..",
        help="COCO image id (or file stem) of each batch element, for bundles without images[].",
    )
    @click.option(
        "--letterbox",
        type=click.Choice(["ultralytics", "yolov5", "yolox"]),
        help="Validation loader whose letterbox maps --gt boxes of images without scale/pad "
        "(default: the head's framework).",
    )
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def _load_bundle(path: Path, head, imgsz, strides, nc, image_ids, letterbox=None):
    from yolodbg import bundle

    ids = [v.strip() for v in image_ids.split(",")] if image_ids else None
    return bundle.load(
        path,
        head=head,
        input_size=_imgsz(imgsz),
        strides=_int_list(strides, "--strides"),
        image_ids=ids,
        nc=nc,
        letterbox=letterbox,
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="yolodbg")
@debug_option
@click.pass_context
def main(ctx: click.Context) -> None:
    """Why is my YOLO loss what it is?

    yolodbg replays a framework's label assignment and loss on a saved batch of raw head
    outputs, to the float, and shows which ground-truth boxes, which positive anchors and
    which background anchors make up every loss term.

    \b
    Examples:
      yolodbg explain sample_data/yolov8n_val.pt --gt sample_data/coco_val.json
      yolodbg explain batch.pt                      # GT from the bundle's own targets
      yolodbg explain batch.pt -r yolov8:assigner.topk=13 --json report.json
      yolodbg recipes yolov8

    Exit codes: 0 ok · 1 a check failed (e.g. conservation) · 2 bad input or usage.
    """
    ctx.ensure_object(dict)


@main.command()
@click.argument("preds", type=click.Path(path_type=Path))
@click.option(
    "--gt",
    type=click.Path(path_type=Path),
    help="COCO json or YOLO labels folder (default: the bundle's own targets).",
)
@click.option(
    "-r",
    "--recipe",
    "recipe_spec",
    metavar="NAME[:k=v,..]",
    help="Loss to replay (default: the head's recipe, e.g. yolov8). See `yolodbg recipes`.",
)
@click.option(
    "--image",
    "image",
    metavar="ID",
    help="Focus the tables on one image (COCO id, file name or batch index); numbers stay batch-wide.",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=15,
    show_default=True,
    help="Rows of the GT table and number of background anchors listed.",
)
@click.option(
    "--json", "json_out", metavar="FILE|-", help="Write the yolodbg.explain/1 JSON ('-' = stdout only)."
)
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
def explain(
    preds, gt, recipe_spec, image, top, json_out, head, imgsz, strides, nc, image_ids, letterbox, **pictures
):
    """Break one batch's loss down per GT box, per anchor and per term.

    PREDS is a prediction bundle (.pt): the raw train-mode head output of a batch, saved
    with yolodbg.bundle.save or plain torch.save (then use --head/--imgsz/--image-ids).

    \b
    Examples:
      yolodbg explain sample_data/yolov8n_val.pt --gt sample_data/coco_val.json
      yolodbg explain sample_data/yolov8n_train_step.pt          # replays a training step
      yolodbg explain preds.pt --gt labels/ --image 000123 --top 30
      yolodbg explain preds.pt --gt ann.json --json - | jq .terms
      yolodbg explain preds.pt --gt ann.json --plot plots/ --html report.html

    The summary shows each term as the trainer logs it, the GT table each box's share of
    it with a reason code when a box got no (or few) positive anchors, and the background
    table the anchors with no GT that cost the most, with a hint (missing_label?,
    class_swap?, duplicate, high_iou_negative).
    """
    from rich.console import Console

    from yolodbg.explain import explain as run_explain
    from yolodbg.paths import check_outputs
    from yolodbg.recipes import get_recipe
    from yolodbg.render import console as render
    from yolodbg.render import jsonout

    outputs = (("--json", json_out), ("--html", pictures["html_out"]))
    check_outputs(*outputs, folders=(("--plot", pictures["plot_dir"]),), inputs=(preds, gt))
    b = _load_bundle(preds, head, imgsz, strides, nc, image_ids, letterbox)
    recipe = get_recipe(recipe_spec) if recipe_spec else None
    ex = run_explain(b, gt, recipe, top=max(top, 1) if json_out else top)
    focus = _resolve_image(b, image) if image is not None else None
    if json_out:
        jsonout.write(jsonout.explain_doc(ex, focus), json_out)
    err = Console(stderr=True)
    if json_out != "-":
        render.render_explain(Console(), ex, top, focus)
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

    roots, names = overlay.image_roots(images_dir, gt), overlay.class_names(ex, gt)
    if plot_dir is not None:
        images = None if focus is None else [focus]
        paths = overlay.write_overlays(ex, plot_dir, roots=roots, names=names, images=images)
        err.print(f"wrote {len(paths)} overlay{'s' * (len(paths) != 1)} to {plot_dir}", highlight=False)
    if html_out is not None:
        err.print(f"wrote {html.write_html(ex, html_out, roots=roots, names=names)}", highlight=False)


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


@main.command()
@click.argument("name", required=False)
@debug_option
def recipes(name):
    """List recipes, their parameters and defaults, and what each reproduces.

    \b
    Examples:
      yolodbg recipes
      yolodbg recipes yolov8
    Variants are written NAME:key=value,key=value, e.g. yolov8:assigner.topk=13,gain.cls=1.0
    """
    from rich.console import Console
    from rich.table import Table

    from yolodbg.recipes import ALIASES, RECIPES, get_recipe

    console = Console()
    if name is None:
        table = Table(show_edge=False, header_style="bold")
        table.add_column("recipe", no_wrap=True)
        table.add_column("aliases", no_wrap=True)
        table.add_column("head")
        table.add_column("terms")
        table.add_column("reproduces")
        for key, cls in RECIPES.items():
            aliases = ", ".join(a for a, k in ALIASES.items() if k == key)
            table.add_row(key, aliases, ", ".join(cls.heads), ", ".join(cls.terms), cls.reproduces)
        console.print(table)
        console.print("Parameters of one recipe: yolodbg recipes NAME")
        return
    recipe = get_recipe(name)
    console.print(f"[bold]{recipe.name}[/] — {recipe.reproduces}")
    table = Table(show_edge=False, header_style="bold")
    table.add_column("key", no_wrap=True)
    table.add_column("default", no_wrap=True)
    table.add_column("meaning")
    for p in recipe.PARAMS:
        default = "auto" if p.default is None else str(p.default)
        table.add_row(p.key, default, p.describe())
    console.print(table)


def _register() -> None:
    """Add the commands that live in their own modules (they import from this one, so after ``main``)."""
    from yolodbg.cli_capture import capture
    from yolodbg.cli_compare import compare
    from yolodbg.cli_scan import scan, trend
    from yolodbg.cli_snapshot import check, snapshot
    from yolodbg.cli_validate import validate

    for command in (compare, snapshot, check, scan, trend, capture, validate):
        main.add_command(command)


_register()
