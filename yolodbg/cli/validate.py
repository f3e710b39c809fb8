"""``yolodbg validate``: check JSON documents yolodbg wrote against the contract shipped with it."""

from __future__ import annotations

import os
import sys

import click

from yolodbg.cli.options import EXIT_CHECK, EXIT_OK, EXIT_USAGE, debug_option, is_debug


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--expect",
    metavar="SCHEMA",
    help="Demand one kind of document, e.g. yolodbg.explain/1 (default: the one each file names).",
)
@debug_option
def validate(files, expect):
    """Check JSON documents against their schema and arithmetic.

    Each FILE (or '-' for stdin) is a document yolodbg wrote: explain/compare/scan/trend
    --json, a snapshot, a check --json report. Its "schema" field picks the JSON Schema
    shipped in yolodbg/schemas/; then the numbers are checked: every term's per-GT parts
    and background add back up to it (conservation), totals are their terms' sums, counts agree.

    \b
    Examples:
      yolodbg validate report.json
      yolodbg explain preds.pt --gt ann.json --json - | yolodbg validate -
      yolodbg validate --expect yolodbg.explain/1 out/*.json

    Exit codes: 0 every file valid · 1 a file breaks its contract (each problem is printed
    as FILE: FIELD: what is wrong) · 2 a file is unreadable, not JSON or of an unknown schema
    · 3 internal error (a bug) · 130 interrupted (Ctrl-C).
    """
    from yolodbg.validate import SCHEMA_FILES

    if expect is not None and expect not in SCHEMA_FILES:
        raise click.BadParameter(f"{expect!r} is not one of {', '.join(SCHEMA_FILES)}", param_hint="--expect")
    try:
        code = _validate_all(files, expect)
    except BrokenPipeError:  # `yolodbg validate ... | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_CHECK
    sys.exit(code)


def _validate_all(files, expect) -> int:
    """Validate each file in turn; the exit code is the worst outcome (2 unreadable > 1 invalid > 0)."""
    from yolodbg.errors import InputError
    from yolodbg.validate import validate_file

    code = EXIT_OK
    for name in files:
        label = "<stdin>" if name == "-" else name
        try:
            sid, problems = validate_file(name, expect)
        except InputError as e:
            if is_debug(click.get_current_context()):
                raise
            message = str(e) if str(e).startswith(f"{name}:") else f"{label}: {e}"
            click.echo(f"yolodbg: error: {message}", err=True)
            code = EXIT_USAGE
            continue
        for p in problems:
            click.echo(f"{label}: {p}")
        if problems:
            code = max(code, EXIT_CHECK)
        else:
            click.echo(f"{label}: ok ({sid})")
    return code
