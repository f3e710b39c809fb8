"""The ``yolodbg`` command group: its help, ``--version``, and yolodbg's errors turned into exit codes.

The commands live in their own modules and are added to :data:`main` in ``cli/__init__.py``.
"""

from __future__ import annotations

import click

from yolodbg import __version__
from yolodbg.cli.options import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, debug_option, is_debug


class ErrorExitGroup(click.Group):
    """Turns yolodbg's own errors into one line and an exit code (tracebacks only with --debug).

    Ctrl-C in any command is one line too, exit code 130; output files are written atomically
    (:mod:`yolodbg.atomic`), so an interrupted command leaves no partial file behind.
    """

    def invoke(self, ctx: click.Context):
        from yolodbg.errors import YolodbgError

        try:
            return super().invoke(ctx)
        except YolodbgError as e:
            if is_debug(ctx):
                raise
            click.echo(f"yolodbg: error: {_one_line(str(e))}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            if is_debug(ctx):
                raise
            click.echo("yolodbg: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except click.BadParameter as e:  # a bad option value: one line like yolodbg's own errors
            if is_debug(ctx) or isinstance(e, click.MissingParameter):  # missing: click's usage hint helps
                raise
            click.echo(f"yolodbg: error: {e.format_message()}", err=True)
            ctx.exit(EXIT_USAGE)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:  # a bug: say so in one line, keep the traceback for --debug
            if is_debug(ctx):
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


@click.group(
    cls=ErrorExitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
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

    \b
    Exit codes:
      0    ok
      1    a check failed (conservation, non-finite loss, logged loss, drift)
      2    bad input or usage (one line: the file, the field and the fix)
      3    internal error (a bug: rerun with --debug and report the traceback)
      130  interrupted (Ctrl-C)
    """
    ctx.ensure_object(dict)
