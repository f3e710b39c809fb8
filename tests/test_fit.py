"""render/fit.py: columns chosen by width, never a cut value, one notation per column."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console, Group

from yolodbg.render import fit


def _text(renderables, width: int) -> str:
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(Group(*renderables))
    return console.export_text()


def _grid() -> fit.Grid:
    grid = fit.Grid(
        "GTs",
        [
            fit.Col("image", justify="left", key=True),
            fit.Col("loss"),
            fit.Col("box size", drop=2),
            fit.Col("share", drop=1),
            fit.Col("reason", justify="left"),
        ],
    )
    for i, (loss, reason) in enumerate([(0.5, "few_candidates"), (2e-5, "iscrowd_region"), (0.0, "")]):
        grid.row(str(i), *fit.numbers([loss]), "1234×5678", "12.5%", reason)
    return grid


def test_one_notation_per_column():
    assert fit.numbers([0.6556, 0.0123]) == ["0.6556", "0.0123"]
    assert fit.numbers([0.6556, 0.0017]) == ["0.65560", "0.00170"]  # more places, not scientific
    assert fit.numbers([0.0017, 8.4e-05]) == ["1.700e-03", "8.400e-05"]  # not 0.0017 above 8.4e-05
    assert fit.numbers([12000.0, 3.0], 2) == ["12000.00", "3.00"]
    assert fit.numbers([2e6, 3.0], 2) == ["2.000e+06", "3.000e+00"]
    assert fit.numbers([None, 0.0, -0.25], signed=True) == ["—", "0", "-0.2500"]
    assert fit.numbers([float("nan"), 1.0]) == ["nan", "1.0000"]


def test_the_largest_drop_goes_first_and_is_named():
    grid = _grid()
    full = fit.table_width(grid.cols)
    kept, dropped = fit.choose_columns(grid.cols, full - 1)
    assert [c.header for c in dropped] == ["box size"]
    kept, dropped = fit.choose_columns(grid.cols, full - 13)
    assert [c.header for c in dropped] == ["box size", "share"]
    assert [c.header for c in kept] == ["image", "loss", "reason"]
    text = _text(grid.render(full - 13), full - 13)
    note = " ".join(text.split("not shown at")[1].split())
    assert note == f"{full - 13} columns: box size, share (--wide shows them)"


def test_rendered_cells_are_never_cut():
    grid = _grid()
    for width in (30, 40, 60, 200):
        text = _text(grid.render(width), width)
        assert "…" not in text
        assert "iscrowd_region" in text and "2.000e-05" in text and "few_candidates" in text
        assert all(len(line.rstrip()) <= width for line in text.splitlines()), (width, text)


def test_essential_columns_that_do_not_fit_continue_under_the_key():
    cols = [fit.Col("level", justify="left", key=True, cells=["P3/8", "P4/16"])]
    cols += [fit.Col(f"term{i} fg", cells=["1.234e-05", "0.5"]) for i in range(6)]
    parts = fit.continue_columns(cols, 40)
    assert len(parts) > 1 and all(p[0].header == "level" for p in parts)
    assert all(fit.table_width(p) <= 40 for p in parts)
    assert [c.header for p in parts for c in p[1:]] == [c.header for c in cols[1:]]


def test_wide_keeps_every_column():
    grid = _grid()
    text = _text(grid.render(30, wide=True), fit.WIDE)
    assert "box size" in text and "share" in text and "not shown" not in text


def test_lines_never_break_a_part():
    parts = ["yolodbg", "snapshot", "sample_data/yolov8n_val.pt", "--gt", "sample_data/coco_val.json"]
    out = fit.lines(parts, 30, indent="    ", sep=" ")
    assert " ".join(" ".join(out).split()) == " ".join(parts)
    assert out[0] == "yolodbg snapshot" and all(line.startswith("    ") for line in out[1:])


def _notation(text: str) -> str:
    return "sci" if "e" in text else "fixed"


@given(st.lists(st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False)), min_size=1, max_size=20))
def test_a_column_never_mixes_fixed_and_scientific_notation(values):
    fmt = fit.number_format(values)
    kinds = {_notation(fmt(v)) for v in values if v is not None and v != 0}
    assert len(kinds) <= 1
    for v in values:
        if v is not None and v != 0:
            assert float(fmt(v)) == pytest.approx(v, rel=1e-2, abs=1e-6)


def test_number_format_examples():
    assert [fit.number_format([0.0022, 0.000975])(v) for v in (0.0022, 0.000975)] == ["0.002200", "0.000975"]
    assert [fit.number_format([0.5, 0.0123])(v) for v in (0.5, 0.0123)] == ["0.5000", "0.0123"]
    assert [fit.number_format([0.1, 4.3e-6])(v) for v in (0.1, 4.3e-6)] == ["1.000e-01", "4.300e-06"]
    assert fit.number_format([1.0])(0.0) == "0" and fit.number_format([1.0])(None) == "—"


def test_the_highest_rank_goes_first_and_rank_zero_never():
    cols = [fit.Col("a", ["x" * 10]), fit.Col("b", ["y" * 10], drop=2), fit.Col("c", ["z" * 10], drop=1)]
    kept, dropped = fit.choose_columns(cols, 22)
    assert [c.header for c in kept] == ["a", "c"] and [c.header for c in dropped] == ["b"]
    assert fit.table_width(kept) == 22  # two spaces between columns, nothing at the edges
    kept, dropped = fit.choose_columns(cols, 5)
    assert [c.header for c in kept] == ["a"]
    kept, dropped = fit.choose_columns(cols, fit.WIDE)
    assert len(kept) == 3 and not dropped


def _console(width: int) -> Console:
    return Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))


def test_show_fits_the_console_or_prints_the_wide_table_whole():
    narrow = _console(30)
    kept = fit.show(narrow, _grid())
    text = narrow.export_text()
    assert [c.header for c in kept] == ["image", "loss", "reason"]
    assert "not shown at 30 columns: box size, share" in " ".join(text.split())
    assert "…" not in text and all(len(line.rstrip()) <= 30 for line in text.splitlines())
    wide = _console(30)
    assert len(fit.show(wide, _grid(), wide=True)) == 5
    header = next(line for line in wide.export_text().splitlines() if line.startswith("image"))
    assert header.split() == ["image", "loss", "box", "size", "share", "reason"]  # whole, not cropped at 30


PINNED = [
    *(Path(__file__).parent / "report_widths").glob("*.txt"),
    *(Path(__file__).parent / "explain_layout" / "expected").glob("*.txt"),
]


@pytest.mark.parametrize("path", PINNED, ids=lambda p: p.name)
def test_every_report_draws_tables_one_way_plain_columns_without_rules(path):
    text = path.read_text(encoding="utf-8")
    assert not set(text) & set("━┃│╇┡┗┛┏┓─"), (
        f"{path.name}: a boxed table (every report uses render/fit.table)"
    )
    for line in text.splitlines():
        if line.lstrip().startswith("not shown at"):
            assert line.startswith("  not shown at ") and "columns: " in line
