"""What every command spells the same way: shared options, the bundle spec, ``--debug``, exit codes.

The leaf of :mod:`yolodbg.cli`: it imports nothing from the other command-line modules, and they
import from here and from the library only, never from each other. A command reads on its own,
and a new one is its module plus one line in ``cli/__init__.py``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from yolodbg import option_values

EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

RECIPE_METAVAR = "NAME[:k=v,..]"

# -- --debug ----------------------------------------------------------------------------------------


def is_debug(ctx: click.Context) -> bool:
    """Whether ``--debug`` was given (on the group or the command): then errors keep their traceback."""
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


# -- options several commands share (each command words its own help) ------------------------------


def gt_option(help_text: str, *, exists: bool = False):
    """``--gt``: a COCO json or a YOLO labels folder."""
    return click.option("--gt", type=click.Path(path_type=Path, exists=exists), help=help_text)


def recipe_option(help_text: str, *, multiple: bool = False, metavar: str = RECIPE_METAVAR):
    """``-r/--recipe``: one spec (parameter ``recipe_spec``) or, repeatable, several (``recipe_specs``)."""
    dest = "recipe_specs" if multiple else "recipe_spec"
    return click.option("-r", "--recipe", dest, multiple=multiple, metavar=metavar, help=help_text)


def json_option(what: str):
    """``--json FILE|-`` (parameter ``json_out``); ``what`` names the document, e.g. 'the yolodbg.scan/1 JSON'."""
    return click.option("--json", "json_out", metavar="FILE|-", help=f"Write {what} ('-' = stdout only).")


def say_wrote(target, detail: str = "") -> None:
    """``wrote FILE`` on stderr once a file output is in place (nothing for ``-``, which is stdout): every
    command says where its files went the same way, and stdout stays free for the report or the JSON."""
    if target is not None and str(target) != "-":
        click.echo(f"wrote {target}{detail}", err=True)


def names_option(f):
    """``--names FILE`` (parameter ``names_file``): class names for every table, overlay and JSON ``class_name``."""
    return click.option(
        "--names",
        "names_file",
        type=click.Path(path_type=Path, exists=True, dir_okay=False),
        metavar="FILE",
        help="Class names: a data.yaml (its names: list or mapping) or a text file, one name a line, in "
        "class-index order. Default: the COCO json's categories, else the bundle's meta.names.",
    )(f)


def top_option(help_text: str):
    """``--top N``: how many rows a table lists (default 15)."""
    return click.option("--top", type=click.IntRange(min=0), default=15, show_default=True, help=help_text)


def ray_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--ray`` (scan, trend, audit) takes 'local', 'auto', HOST:PORT or ray://...; anything else (a path,
    say) is a usage error."""
    if value is None or value in ("local", "auto") or value.startswith("ray://"):
        return value
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and not os.path.exists(value):
        return value
    raise click.BadParameter(
        f"{value!r} is not a Ray address; use local, auto, HOST:PORT or ray://HOST:10001"
    )


@contextmanager
def executor(address: str | None, workers: int, n_bundles: int):
    """(workers, RayPool or None) for a map over ``n_bundles`` bundles (scan, trend, audit): connects to
    Ray first, so a failure opens no output file."""
    from yolodbg.scan.run import auto_workers

    if address is None:
        yield auto_workers(workers, n_bundles), None
        return
    from yolodbg.scan.ray_pool import RayPool

    with RayPool(address) as pool:
        cpus = (
            pool.cpus()
        )  # in flight: 2 × this; capped like local workers, at the cluster's CPUs and bundles
        yield max(1, min(workers or cpus, cpus, n_bundles)), pool


def stderr():
    """A rich console on stderr (progress, warnings): stdout stays the report's or the JSON's."""
    from rich.console import Console

    return Console(stderr=True)


def finish_map(interrupted: bool, done: int, total: int, exit_for_doc: Callable[[], None]) -> None:
    """The end of a map over bundles (scan, audit), once its report is out: say how much a Ctrl-C left
    covered, exit as the document says (``exit_for_doc``: failures first), else 130 after a Ctrl-C."""
    if interrupted:
        stderr().print(f"interrupted: results cover {done} of {total} bundles", style="bold yellow")
    exit_for_doc()
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)


# -- the options that describe a bundle ---------------------------------------------------------------


@dataclass(frozen=True)
class BundleSpec:
    """The bundle options as given on the command line (text, kept as given: a snapshot records it).

    :func:`bundle_options` checks the number-valued ones (:meth:`check`) once click has parsed the
    whole command line and before the command runs: a bad ``--imgsz`` is a usage error, reported
    after click's own (a missing argument) and before the command reads any input or loads torch,
    in the same order whatever the order of the options.
    """

    head: str | None = None
    imgsz: str | None = None
    strides: str | None = None
    nc: int | None = None
    image_ids: str | None = None
    letterbox: str | None = None

    def check(self) -> None:
        """Refuse a malformed ``--imgsz`` or ``--strides`` (``click.BadParameter``: exit 2, one line)."""
        self.input_size()
        self.stride_values()

    def input_size(self) -> tuple[int, int] | None:
        """``--imgsz`` as (H, W) pixels."""
        return option_values.imgsz(self.imgsz)

    def stride_values(self) -> tuple[float, ...] | None:
        """``--strides`` as positive numbers."""
        return option_values.number_list(self.strides, "--strides")

    def image_id_list(self) -> tuple[str, ...] | None:
        """``--image-ids`` split at commas."""
        return tuple(v.strip() for v in self.image_ids.split(",")) if self.image_ids else None

    def load(self, path: Path):
        """The bundle at ``path``, with these options filling (and checked against) what it records."""
        from yolodbg import bundle

        ids = self.image_id_list()
        return bundle.load(
            path,
            head=self.head,
            input_size=self.input_size(),
            strides=self.stride_values(),
            image_ids=list(ids) if ids else None,
            nc=self.nc,
            letterbox=self.letterbox,
        )

    def recorded(self) -> dict[str, Any]:
        """The options as a snapshot records them (``letterbox`` only when given)."""
        options = {
            "head": self.head,
            "imgsz": self.imgsz,
            "strides": self.strides,
            "nc": self.nc,
            "image_ids": self.image_ids,
        }
        if self.letterbox is not None:  # only when given: older snapshots and readers know the five above
            options["letterbox"] = self.letterbox
        return options

    def or_recorded(self, options: dict[str, Any]) -> BundleSpec:
        """These options, each one not given taken from a snapshot's recorded ``options``."""
        return BundleSpec(
            head=self.head or options.get("head"),
            imgsz=self.imgsz or options.get("imgsz"),
            strides=self.strides or options.get("strides"),
            nc=self.nc or options.get("nc"),
            image_ids=self.image_ids or options.get("image_ids"),
            letterbox=self.letterbox or options.get("letterbox"),
        )


BUNDLE_FIELDS = ("head", "imgsz", "strides", "nc", "image_ids", "letterbox")


class HeadChoice(click.Choice):
    """``--head``: the registered head families (:mod:`yolodbg.heads`), read each time click needs them,
    so a family registered after the command line was built is offered too. The registry holds the
    families' declarations only (their torch code loads with a bundle): ``--help`` and an unknown
    ``--head`` load no torch."""

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
    """Options that describe a bundle, spelled the same in every command; ``f`` gets them as ``bundle_spec``."""

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
        spec = BundleSpec(**{name: kwargs.pop(name) for name in BUNDLE_FIELDS})
        spec.check()
        return f(*args, bundle_spec=spec, **kwargs)

    return wrapper


def wide_option(f):
    """``--wide``: every column of every table, however long the lines get (default: what fits)."""
    return click.option(
        "--wide",
        is_flag=True,
        help="Show every column, in lines as long as they need (default: the columns that fit the "
        "terminal, 80 through a pipe; the ones left out are named under each table).",
    )(f)


def map_options(f):
    """``--workers`` and ``--ray``: where the per-bundle map runs (scan, trend, audit)."""
    f = click.option(
        "--ray",
        "ray_address",
        metavar="ADDRESS",
        callback=ray_address,
        help="Map the bundles over a Ray cluster (optional extra: pip install 'yolodbg[ray]'): 'local' = a new "
        "Ray on this machine, 'auto' = the running cluster (or RAY_ADDRESS), HOST:PORT = a head node, "
        "ray://HOST:10001 = Ray Client. Paths must be visible to every node.",
    )(f)
    return click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=0,
        help="Local worker processes [default: one per CPU core, at most one per bundle and per GiB of free "
        "memory; 1 = this process only]; a larger number is capped at the CPU cores and the bundles. With "
        "--ray: tasks kept running [default and cap: the cluster's CPUs, at most one per bundle].",
    )(f)
