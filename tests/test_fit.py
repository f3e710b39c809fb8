"""render/fit.py: columns chosen by width, never a cut value, one notation per column."""

from __future__ import annotations

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
    assert fit.numbers([0.6556, 0.0017]) == ["0.6556", "0.0017"]
    assert fit.numbers([0.0017, 8.4e-05]) == ["1.700e-03", "8.400e-05"]  # not 0.0017 above 8.4e-05
    assert fit.numbers([12000.0, 3.0], 2) == ["1.200e+04", "3.000e+00"]
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
