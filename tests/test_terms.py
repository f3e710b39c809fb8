"""Unreduced loss terms on cases small enough to check by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from yolodbg import terms
from yolodbg.geometry import bbox_iou

LN2 = math.log(2)


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ------------------------------------------------------------------------------------------------ box terms


def test_iou_family_by_hand():
    a, b = t(0, 0, 2, 2), t(1, 1, 3, 3)
    # IoU = 1 / (4 + 4 − 1) = 1/7; enclosing box 3×3 = 9, union 7: GIoU = 1/7 − 2/9
    assert float(terms.one_minus_iou(a, b, "iou")) == pytest.approx(1 - 1 / 7, abs=1e-6)
    assert float(terms.one_minus_iou(a, b, "giou")) == pytest.approx(1 - (1 / 7 - 2 / 9), abs=1e-6)
    # DIoU: centres (1,1) and (2,2): ρ² = 2, enclosing diagonal c² = 9 + 9 = 18
    assert float(terms.one_minus_iou(a, b, "diou")) == pytest.approx(1 - (1 / 7 - 2 / 18), abs=1e-6)
    # equal aspect ratios: v = 0, so CIoU = DIoU
    assert float(terms.one_minus_iou(a, b, "ciou")) == pytest.approx(
        float(terms.one_minus_iou(a, b, "diou")), abs=1e-7
    )
    # the IoU comes from geometry.bbox_iou, untouched
    assert torch.equal(terms.one_minus_iou(a, b, "ciou"), 1.0 - bbox_iou(a, b, "ciou"))
    assert float(terms.one_minus_iou(a, a, "ciou")) == pytest.approx(0.0, abs=1e-6)


def test_ciou_term_exceeds_diou_term_exactly_when_aspect_ratios_differ():
    pred = t(0, 0, 2, 1)
    target = t(3, 0, 4, 2)  # disjoint; aspect 2:1 against 1:2
    # IoU 0. GIoU: enclosing [0,0,4,2] = 8, union 4 -> 1 − GIoU = 1 + 4/8 = 1.5
    # DIoU: centres (1, .5), (3.5, 1): ρ² = 6.25 + .25 = 6.5, c² = 16 + 4 = 20 -> 1 + .325 = 1.325
    # CIoU: v = 4/π² (atan(1/2) − atan(2))² = .167838, α = v / (1 − 0 + v) = .143716 -> + αv = .024121
    giou, diou, ciou = (float(terms.one_minus_iou(pred, target, k)) for k in ("giou", "diou", "ciou"))
    assert giou == pytest.approx(1.5, abs=1e-6)
    assert diou == pytest.approx(1.325, abs=1e-6)
    assert ciou == pytest.approx(1.325 + 0.024121, abs=1e-5)
    assert giou >= ciou > diou  # here GIoU's empty-area penalty is the largest
    # concentric nested boxes: the enclosing box is the union, so GIoU = IoU, while CIoU still pays for the
    # aspect ratio: "giou ≥ ciou" is not a law, "ciou ≥ diou" is
    outer, inner = t(0, 0, 4, 4), t(1, 0, 3, 4)
    assert float(terms.one_minus_iou(inner, outer, "giou")) == pytest.approx(0.5, abs=1e-6)
    assert float(terms.one_minus_iou(inner, outer, "ciou")) > float(terms.one_minus_iou(inner, outer, "giou"))
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 10
    p = torch.cat((xy, xy + torch.rand(200, 2, generator=g) * 5 + 0.1), 1)
    q = torch.cat((xy + 1, xy + 1 + torch.rand(200, 2, generator=g) * 5 + 0.1), 1)
    assert bool((terms.one_minus_iou(p, q, "ciou") >= terms.one_minus_iou(p, q, "diou")).all())
    assert bool((terms.one_minus_iou(p, q, "giou") >= terms.one_minus_iou(p, q, "iou") - 1e-7).all())


def test_siou_by_hand():
    a = t(0, 0, 2, 2)
    assert float(terms.siou_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    # shifted 1 along x: IoU = 2/6; angle α = 0 -> Λ = 1 − 2 sin²(−π/4) = 0, γ = 2;
    # enclosing 3×2: ρ_x = (1/3)², ρ_y = 0 -> Δ = 1 − e^(−2/9); same size -> Ω = 0
    want = 1 - 1 / 3 + (1 - math.exp(-2 / 9)) / 2  # 0.766299
    assert float(terms.siou_loss(a, t(1, 0, 3, 2))) == pytest.approx(want, abs=1e-6)
    # shifted (1, 1): α = 45° -> Λ = 1, γ = 1; ρ_x = ρ_y = 1/9 -> Δ = 2 (1 − e^(−1/9)); IoU = 1/7
    want = 1 - 1 / 7 + (1 - math.exp(-1 / 9))  # 0.962304
    assert float(terms.siou_loss(a, t(1, 1, 3, 3))) == pytest.approx(want, abs=1e-5)
    # concentric, width 2 against 4: IoU = 1/2, ω_w = 2/4 -> Ω = (1 − e^(−1/2))^4 = .023969, Δ = 0
    want = 0.5 + (1 - math.exp(-0.5)) ** 4 / 2  # 0.511985
    assert float(terms.siou_loss(t(1, 0, 3, 2), t(0, 0, 4, 2))) == pytest.approx(want, abs=1e-6)


def test_eiou_by_hand():
    a = t(0, 0, 2, 2)
    assert float(terms.eiou_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    # [0,0,2,2] vs [0,0,4,2]: IoU 1/2; ρ² = 1, c² = 16 + 4; (w − w_gt)² / C_w² = 4/16; heights equal
    assert float(terms.eiou_loss(a, t(0, 0, 4, 2))) == pytest.approx(1 - 0.5 + 1 / 20 + 4 / 16, abs=1e-6)


def test_coordinate_terms_by_hand():
    pred, target = t(0, 0, 4, 1), t(0.5, 0, 1, 3)
    # differences −0.5, 0, 3, −2
    assert terms.l1(pred, target).tolist() == [0.5, 0.0, 3.0, 2.0]
    assert terms.mse(pred, target).tolist() == [0.25, 0.0, 9.0, 4.0]
    # smooth L1, β = 1: 0.5·0.25 = .125 below β, |x| − .5 above
    assert terms.smooth_l1(pred, target, 1.0).tolist() == [0.125, 0.0, 2.5, 1.5]
    assert torch.equal(terms.smooth_l1(pred, target, 0.0), terms.l1(pred, target))  # β = 0 is L1
    # β = 4: everything below β: 0.5 x² / 4
    assert terms.smooth_l1(pred, target, 4.0).tolist() == pytest.approx([0.03125, 0.0, 1.125, 0.5])
    # sqrt-wh: (cx, cy, w, h) = (2, .5, 4, 1) against (.75, 1.5, .5, 3)
    got = terms.sqrt_wh_mse(pred, target).tolist()
    want = [1.25**2, 1.0, (2 - math.sqrt(0.5)) ** 2, (1 - math.sqrt(3)) ** 2]
    assert got == pytest.approx(want, abs=1e-6)
    # box_loss sums a coordinate term over the 4 coordinates
    assert float(terms.box_loss("l1", pred, target)) == 5.5
    assert float(terms.box_loss("smooth_l1", pred, target, beta=1.0)) == pytest.approx(4.125)
    assert float(terms.box_loss("mse", pred, target)) == 13.25
    with pytest.raises(ValueError, match=r"unknown box form 'nope'.*siou"):
        terms.box_loss("nope", pred, target)


@pytest.mark.parametrize("form", terms.BOX_FORMS)
def test_box_forms_shapes_empty_and_gradients(form):
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(3, 5, 2, generator=g) * 10
    pred = torch.cat((xy, xy + 1 + torch.rand(3, 5, 2, generator=g) * 4), -1).requires_grad_()
    target = pred.detach() + torch.rand(3, 5, 4, generator=g)
    out = terms.box_loss(form, pred, target)
    assert out.shape == (3, 5) and bool(torch.isfinite(out).all())
    out.sum().backward()
    assert pred.grad is not None and bool(torch.isfinite(pred.grad).all())
    empty = torch.zeros(0, 4, requires_grad=True)
    e = terms.box_loss(form, empty, torch.zeros(0, 4))
    assert e.shape == (0,) and float(e.detach().sum()) == 0.0
    e.sum().backward()
    assert empty.grad is not None and empty.grad.shape == (0, 4)
    # a perfect prediction costs (almost) nothing in every form
    assert float(terms.box_loss(form, target, target).abs().max()) < 1e-5


# ------------------------------------------------------------------------------------- class / objectness terms


def test_bce_and_ce_by_hand():
    # p = σ(0) = .5: BCE = ln 2 whatever the target
    assert terms.bce(t(0, 0), t(1, 0.3)).tolist() == pytest.approx([LN2, LN2])
    # CE over 2 classes with equal logits: −log(1/2) on the target class; an all-zero target costs 0
    ce = terms.ce(t(0, 0), t(1, 0))
    assert float(ce.sum()) == pytest.approx(LN2)
    assert float(terms.ce(t(3, -1), t(0, 0)).abs().sum()) == 0.0
    # soft target .5 on class 0 of logits (ln 3, 0): softmax (3/4, 1/4) -> −.5 ln(3/4)
    assert float(terms.ce(t(math.log(3), 0), t(0.5, 0)).sum()) == pytest.approx(-0.5 * math.log(0.75))


def test_focal_by_hand_and_identity_with_bce():
    # y = 1, logit 0: p_t = .5, (1 − p_t)² = .25, α_t = .25 -> .0625 ln 2
    assert float(terms.focal(t(0), t(1))) == pytest.approx(0.0625 * LN2)
    # y = 0: α_t = .75 -> .1875 ln 2
    assert float(terms.focal(t(0), t(0))) == pytest.approx(0.1875 * LN2)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 7, 3, generator=g) * 4
    y = (torch.rand(4, 7, 3, generator=g) > 0.7).float() * torch.rand(4, 7, 3, generator=g)
    assert torch.equal(terms.focal(x, y, gamma=0.0, alpha=-1.0), terms.bce(x, y))  # exactly, not approx
    assert bool((terms.focal(x, y) <= terms.bce(x, y)).all())  # γ > 0 and α_t ≤ 1 only shrink
    with pytest.raises(ValueError, match="alpha=2"):
        terms.focal(x, y, alpha=2.0)


def test_varifocal_by_hand():
    # positive q = .6 at p = .5: q · BCE = .6 ln 2; negative at p = .5: .75 · .5² · ln 2
    got = terms.varifocal(t(0, 0), t(0.6, 0))
    assert got.tolist() == pytest.approx([0.6 * LN2, 0.75 * 0.25 * LN2])
    # a confident negative (p = .9) is weighted by p^2: .75 · .81 · (−ln .1)
    x = math.log(9)  # σ(ln 9) = .9
    assert float(terms.varifocal(t(x), t(0))) == pytest.approx(0.75 * 0.81 * -math.log(0.1), rel=1e-5)
    # hard 0/1 targets with α = 1, γ = 0 weigh every element by 1: plain BCE
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(50, generator=g)
    y = (torch.rand(50, generator=g) > 0.5).float()
    assert torch.allclose(terms.varifocal(logits, y, gamma=0.0, alpha=1.0), terms.bce(logits, y))


def test_qfl_by_hand():
    # y = .6, p = .5: |.6 − .5|² · ln 2
    assert float(terms.qfl(t(0), t(0.6))) == pytest.approx(0.01 * LN2, rel=1e-5)
    # β = 0 is BCE with the soft target
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(30, generator=g), torch.rand(30, generator=g)
    assert torch.equal(terms.qfl(x, y, gamma=0.0), terms.bce(x, y))
    # a perfect soft prediction (p = y) costs nothing
    assert float(terms.qfl(torch.logit(y), y).abs().max()) < 1e-6


@pytest.mark.parametrize("form", terms.CLS_FORMS)
def test_cls_forms_defaults_shapes_and_empty(form):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 9, 4, generator=g).requires_grad_()
    y = (torch.rand(2, 9, 4, generator=g) > 0.8).float() * 0.7
    out = terms.cls_loss(form, x, y)
    assert out.shape == x.shape and bool((out >= -1e-7).all())
    out.sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    e = terms.cls_loss(form, torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4))
    assert e.shape == (0, 4)
    gamma, alpha = terms.CLS_DEFAULTS[form]
    if form == "focal":
        assert torch.equal(out, terms.focal(x, y, gamma, alpha))
    if form == "varifocal":
        assert torch.equal(out, terms.varifocal(x, y, gamma, alpha))
    with pytest.raises(ValueError, match="expected one of"):
        terms.cls_loss("softmax_focal", x, y)


# ------------------------------------------------------------------------------------------------ replay shortcuts


@pytest.mark.parametrize("scale", [1.0, 8.0, 40.0])
def test_foreground_rows_bce_is_bit_equal_to_the_dense_op(scale):
    """The replay's BCE (dense op on foreground rows only) equals torch's dense op element for element."""
    from yolodbg.recipes.ultralytics_loss import _bce

    g = torch.Generator().manual_seed(int(scale))
    x = torch.randn(3, 500, 7, generator=g) * scale - 2
    specials = [0.0, -0.0, 1e-30, -1e-30, 1e-45, 88.7, -88.7, 1e30, -1e30, 3.4e38, -3.4e38, 17.0, -17.0]
    x.view(-1)[: len(specials) + 3] = t(*specials, math.nan, math.inf, -math.inf)
    fg = torch.rand(3, 500, generator=g) < 0.1
    fg[0, :20] = True  # some specials on foreground rows, some on background
    target = torch.zeros_like(x)
    labels = torch.randint(0, 7, (int(fg.sum()),), generator=g)
    target[fg] = torch.nn.functional.one_hot(labels, 7).float() * torch.rand(len(labels), 1, generator=g)
    dense = torch.nn.functional.binary_cross_entropy_with_logits(x, target, reduction="none")
    mine = _bce(x, target, fg)
    same = (dense == mine) | (dense.isnan() & mine.isnan())
    assert bool(same.all()), x[~same][:5]
    assert torch.equal(torch.signbit(dense[~dense.isnan()]), torch.signbit(mine[~mine.isnan()]))
    assert dense.sum().item() == mine.sum().item() or math.isnan(dense.sum().item())


def test_log_sigmoid_rounds_alike_on_every_layout():
    """The shortcut above needs log_sigmoid's vectorised and scalar (tail) paths to agree, unlike sigmoid's."""
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(50_000, generator=g) * s for s in (1.0, 5.0, 30.0)])
    whole = torch.nn.functional.logsigmoid(x)
    pieces = torch.cat([torch.nn.functional.logsigmoid(c.clone()) for c in x.split(7)])  # all tails
    assert torch.equal(whole, pieces)
