"""Overlay label placement (render/labels.py): property tests on random boxes, plus what the overlay draws.

The rules: every label lies inside the picture and touches its own box; a label placed as free covers
no label placed before it (so when every label is free, no two overlap); a label is shortened or
overlaps others only when the placement had no free spot for it; and where there is room, every
label gets its full text on a free spot.
"""

from __future__ import annotations

import pytest
from helpers import batch, ultra_output
from hypothesis import given, settings
from hypothesis import strategies as st

from yolodbg import bundle
from yolodbg.explain import explain
from yolodbg.render import _draw, overlay
from yolodbg.render.labels import LabelSpec, clip_box, overlaps, place, spots, touches

CANVAS = st.tuples(st.integers(120, 900), st.integers(120, 900))


@st.composite
def scenes(draw, max_labels: int = 25):
    """A canvas and up to ``max_labels`` labels on random boxes (some partly outside the canvas),
    each with a full size and a shorter one, none larger than the canvas."""
    w, h = draw(CANVAS)
    n = draw(st.integers(0, max_labels))
    specs = []
    for _ in range(n):
        x1 = draw(st.floats(-50, w + 10, allow_nan=False))
        y1 = draw(st.floats(-50, h + 10, allow_nan=False))
        bw = draw(st.floats(0, w / 2, allow_nan=False))
        bh = draw(st.floats(0, h / 2, allow_nan=False))
        lh = draw(st.integers(8, 24))
        full = (float(draw(st.integers(20, min(220, w)))), float(lh))
        short = (float(min(full[0], draw(st.integers(12, 30)))), float(lh))
        specs.append(LabelSpec((x1, y1, x1 + bw, y1 + bh), (full, short), below=draw(st.booleans())))
    return (float(w), float(h)), specs


def _inside(rect, canvas) -> bool:
    return rect[0] >= 0 and rect[1] >= 0 and rect[2] <= canvas[0] and rect[3] <= canvas[1]


@settings(max_examples=150, deadline=None)
@given(scenes())
def test_labels_stay_inside_the_picture_and_touch_their_box(scene):
    canvas, specs = scene
    result = place(specs, canvas)
    assert len(result) == len(specs)
    for spec, spot in zip(specs, result, strict=True):
        assert _inside(spot.rect, canvas), (spot, canvas)
        assert touches(spot.rect, clip_box(spec.box, canvas)), (spec.box, spot)
        w, h = spec.sizes[spot.variant]  # the rectangle is the chosen text's size
        assert (spot.rect[2] - spot.rect[0], spot.rect[3] - spot.rect[1]) == pytest.approx((w, h))


@settings(max_examples=150, deadline=None)
@given(scenes())
def test_free_labels_overlap_no_earlier_label_and_others_had_no_choice(scene):
    canvas, specs = scene
    result = place(specs, canvas)
    for j, spot in enumerate(result):
        earlier = [r.rect for r in result[:j]]
        if spot.free:
            assert not any(overlaps(spot.rect, e) for e in earlier), j
        else:  # no spot of any variant was free when it was placed
            for size in specs[j].sizes:
                assert all(any(overlaps(s, e) for e in earlier) for s in spots(specs[j].box, size, canvas)), j
        for shorter in range(spot.variant):  # shortened only when the longer text had no free spot
            size = specs[j].sizes[shorter]
            assert all(any(overlaps(s, e) for e in earlier) for s in spots(specs[j].box, size, canvas)), j
    if all(r.free for r in result):
        rects = [r.rect for r in result]
        assert not any(overlaps(a, b) for i, a in enumerate(rects) for b in rects[i + 1 :])


@st.composite
def roomy_scenes(draw):
    """Boxes in their own cells of a grid, each cell with room for a full label above its box."""
    cols, rows = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    cw, ch = draw(st.integers(90, 200)), draw(st.integers(50, 120))
    specs = []
    for r in range(rows):
        for c in range(cols):
            lw, lh = draw(st.integers(20, cw - 10)), draw(st.integers(8, 20))
            x1 = c * cw + draw(st.integers(0, cw - lw))
            y1 = r * ch + lh + draw(st.integers(0, ch - lh - 10))
            bw = draw(st.integers(1, (c + 1) * cw - x1))
            bh = draw(st.integers(1, (r + 1) * ch - y1))
            specs.append(LabelSpec((x1, y1, x1 + bw, y1 + bh), ((lw, lh), (10, lh))))
    return (float(cols * cw), float(rows * ch)), specs


@settings(max_examples=100, deadline=None)
@given(roomy_scenes())
def test_where_there_is_room_every_label_is_full_and_free(scene):
    canvas, specs = scene
    result = place(specs, canvas)
    assert all(r.free and r.variant == 0 for r in result)
    rects = [r.rect for r in result]
    assert not any(overlaps(a, b) for i, a in enumerate(rects) for b in rects[i + 1 :])


def test_preference_order_and_avoided_boxes():
    canvas = (400.0, 300.0)
    box = (100.0, 100.0, 200.0, 150.0)
    first = spots(box, (50.0, 12.0), canvas)
    assert first[:3] == [
        (100, 88, 150, 100),
        (100, 150, 150, 162),
        (100, 100, 150, 112),
    ]  # above, below, inside
    assert spots(box, (50.0, 12.0), canvas, below=True)[:2] == [first[1], first[0]]
    # a box in the top-left corner: "above" is pushed inside the picture, still touching the box
    assert spots((0.0, 0.0, 30.0, 30.0), (50.0, 12.0), canvas)[0] == (0, 0, 50, 12)
    # a small box of another GT right above: the label keeps off it and goes below instead
    spec = LabelSpec(box, ((50.0, 12.0),))
    (spot,) = place([spec], canvas, avoid=[(1, (100.0, 85.0, 120.0, 99.0))])
    assert spot.rect == (100, 150, 150, 162) and spot.free
    (own,) = place([spec], canvas, avoid=[(0, (100.0, 85.0, 120.0, 99.0))])  # its own box is no obstacle
    assert own.rect == (100, 88, 150, 100)


def test_a_crowded_box_gets_the_short_text_before_overlapping():
    canvas = (200.0, 100.0)
    box = (60.0, 30.0, 140.0, 70.0)
    wide, full, short = (100.0, 40.0), (200.0, 40.0), (20.0, 40.0)
    specs = [LabelSpec(box, (wide,)), LabelSpec(box, (wide,)), LabelSpec(box, (full, short))]
    a, b, c = place(specs, canvas)
    assert a.rect == (60, 0, 160, 40) and b.rect == (60, 60, 160, 100)  # above, then below the box
    assert c.free and c.variant == 1 and c.rect == (40, 30, 60, 70)  # no room for 200 px: "#k" left of it
    (d,) = place([*specs[:2], LabelSpec(box, (full,))], canvas)[2:]
    assert not d.free and touches(d.rect, box)  # no shorter text to fall back on: it overlaps, by the least
    (e,) = place([LabelSpec(box, ((200.0, 100.0),))], canvas)
    assert e.rect == (0, 0, 200, 100) and e.free  # a label as large as the picture still lies inside it


def test_every_gt_of_a_crowded_image_is_labelled(monkeypatch):
    """Twelve overlapping GTs and two in the corners: each gets its own label (full or ``#k``), inside
    the picture, touching its box; the legend names the classes and lists the shortened labels."""
    rows = [(0, k % 3, 0.5, 0.5, 0.3 + 0.02 * k, 0.3 + 0.01 * k) for k in range(12)]
    rows += [(0, 2, 0.02, 0.02, 0.04, 0.04), (0, 1, 0.98, 0.98, 0.04, 0.04)]
    b = bundle.from_object(
        {"yolodbg": 1, "outputs": ultra_output(nc=3), "input_size": [128, 128], "targets": batch(rows)}
    )
    ex = explain(b)
    drawn, notes = [], []
    real_label, real_legend = _draw.label, _draw.legend
    monkeypatch.setattr(
        _draw, "label", lambda d, rect, text, *a: (drawn.append((rect, text)), real_label(d, rect, text, *a))
    )
    monkeypatch.setattr(_draw, "legend", lambda *a: (notes.extend(a[-1]), real_legend(*a))[1])
    img = overlay.render_overlay(ex, 0, names=["circle", "cross", "square"], top=0)
    gts = [g for g in ex.breakdown.gts if g.image_index == 0]
    assert len(gts) == 14
    for g in gts:
        mine = [
            (rect, text)
            for rect, text in drawn
            if text == f"#{g.gt_index}" or text.startswith(f"#{g.gt_index} ")
        ]
        assert len(mine) == 1, (g.gt_index, drawn)
        rect, _ = mine[0]
        box = clip_box(tuple(5 * v for v in g.box_xyxy), (640.0, 640.0))  # input 128 drawn at 640
        assert _inside(rect, (640, 640)) and touches(rect, box)
    assert img.width == 640
    assert notes[0] == "GTs per class: circle: 4 · cross: 5 · square: 5"
    short = [text for _, text in drawn if " " not in text]
    assert (len(notes) == 2) == bool(short)
    rects = [rect for rect, _ in drawn]
    overlapping = sum(overlaps(a, c) for i, a in enumerate(rects) for c in rects[i + 1 :])
    assert overlapping == 0 or short, "labels overlap although none was shortened first"


def test_class_label_is_the_name_or_the_index():
    assert overlay.class_label(1, ["circle", "square"]) == "square"
    assert overlay.class_label(5, ["circle"]) == "5" and overlay.class_label(0, None) == "0"
