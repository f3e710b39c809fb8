"""The CLI's output on the sample data is pinned (see ``tests/cli_outputs/cli_output_cases.py``): a refactoring
that changes a report, a message or an exit code fails here, naming the case and the line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "cli_output_cases", Path(__file__).resolve().parent / "cli_outputs" / "cli_output_cases.py"
)
C = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(C)


def test_every_case_is_recorded():
    recorded = {p.stem for p in C.EXPECTED.glob("*.txt")}
    assert recorded == set(C.CASES), "re-record with: python tests/cli_outputs/cli_output_cases.py --update"


@pytest.mark.parametrize("name", list(C.CASES))
def test_output_is_unchanged(name):
    expected = (C.EXPECTED / f"{name}.txt").read_text(encoding="utf-8")
    problems = list(C.differences(expected, C.run(C.CASES[name])))
    assert not problems, f"{name}: " + "\n".join(problems[:10])


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        ("total 0.6556 (30.8%)", "total 0.6555 (30.8%)", True),  # the last printed digit flipped
        ("total 0.6556", "total 0.6554", False),
        ('"box": 0.655612345', '"box": 0.655612349', True),  # within 1e-5 relative
        ('"box": 0.655612345', '"box": 0.655712345', False),
        ('"rel_diff": 3.6e-07', '"rel_diff": 6.3e-07', True),  # noise-level differences: absolute
        ('"abs": 0.0043645', '"abs": 0.0043745', False),
        ("27 GTs · 206 positive anchors", "27 GTs · 207 positive anchors", False),  # counts are exact
        ("why: few_candidates", "why: zero_metric", False),
        ("a\nb", "a", False),
    ],
)
def test_the_comparison_is_text_exact_and_number_tolerant(expected, actual, same):
    assert (not list(C.differences(expected, actual))) is same
