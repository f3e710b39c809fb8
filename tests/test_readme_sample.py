"""The README's sample ``explain`` output is what the CLI prints at 100 columns (numbers within kernel noise)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "cli_output_cases", Path(__file__).resolve().parent / "cli_outputs" / "cli_output_cases.py"
)
C = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(C)

BLOCK = re.compile(
    r"<!-- explain-sample:start[^>]*-->\n```text\n\$ (?P<cmd>[^\n]+)\n(?P<out>.*?)```\n<!-- explain-sample:end -->",
    re.S,
)


def _readme_sample() -> tuple[list[str], str]:
    m = BLOCK.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert m is not None, "README.md lost its <!-- explain-sample:start/end --> block"
    args = shlex.split(m.group("cmd"))
    assert args[0] == "yolodbg"
    return args[1:], m.group("out")


def test_readme_sample_matches_the_cli_at_100_columns():
    args, shown = _readme_sample()
    assert C.COLUMNS == 100
    run = C.run(args)
    assert run.startswith("exit 0\n--- stdout\n")
    printed = run.split("--- stdout\n", 1)[1].split("--- stderr\n", 1)[0]
    strip = lambda text: "\n".join(ln.rstrip() for ln in text.splitlines())  # noqa: E731
    problems = list(C.differences(strip(shown), strip(printed)))
    assert not problems, "update README.md's sample block:\n" + "\n".join(problems[:10])
