"""Task-aligned assignment on scenes small enough to check by hand (one level, stride 8, 4×4 cells)."""

from __future__ import annotations

import torch

from yolodbg.assigners.tal import TalParams, assign
from yolodbg.assigners.tal_reasons import tal_reasons

STRIDES = (8.0,)
# anchor centres of a 32×32 input at stride 8: x, y ∈ {4, 12, 20, 28}, row-major (y outer)
YS, XS = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
POINTS = torch.stack((XS.reshape(-1), YS.reshape(-1)), -1) * 8 + 4


def _run(gt_boxes, scores, pred, params=TalParams(), labels=None):
    """One image: gt_boxes (M, 4) px; scores (16,) score of class 0 per anchor; pred (16, 4) px."""
    m = len(gt_boxes)
    gt = torch.tensor(gt_boxes, dtype=torch.float32)[None]
    lab = torch.zeros(1, m, 1) if labels is None else torch.tensor(labels, dtype=torch.float32).view(1, m, 1)
    mask = (gt.sum(-1, keepdim=True) > 0).float()
    s = torch.stack((scores, torch.zeros(16)), -1)[None]  # 2 classes, only class 0 scored
    return assign(s, pred[None], POINTS, lab, gt, mask, STRIDES, params), gt, mask


def test_topk_keeps_the_best_scored_candidates():
    # GT [0, 0, 16, 16] holds anchors 0 (4,4), 1 (12,4), 4 (4,12), 5 (12,12); every prediction is the GT itself,
    # so CIoU = 1 and t = score^0.5: with topk 2 the anchors of scores 0.9 and 0.64 win
    scores = torch.full((16,), 0.01)
    scores[[0, 1, 4, 5]] = torch.tensor([0.25, 0.9, 0.64, 0.36])
    pred = torch.tensor([0.0, 0.0, 16.0, 16.0]).expand(16, 4)
    a, _, _ = _run([[0, 0, 16, 16]], scores, pred, TalParams(topk=2))
    assert a.candidates[0, 0].nonzero().flatten().tolist() == [0, 1, 4, 5]
    assert a.fg[0].nonzero().flatten().tolist() == [1, 4]
    # t̂ = t · max IoU / max t with t = √score: 1 for the best, √0.64 / √0.9 = 0.8 / 0.9487 for the second
    assert torch.allclose(a.target_weight[0, [1, 4]], torch.tensor([1.0, 0.8 / 0.9**0.5]), atol=1e-6)


def test_topk_13_adds_exactly_the_next_candidates():
    # GT covering the whole 32×32 input holds all 16 anchors; scores 16 distinct values
    scores = torch.linspace(0.2, 0.95, 16)
    pred = torch.tensor([0.0, 0.0, 32.0, 32.0]).expand(16, 4)
    a10, _, _ = _run([[0, 0, 32, 32]], scores, pred, TalParams(topk=10))
    a13, _, _ = _run([[0, 0, 32, 32]], scores, pred, TalParams(topk=13))
    assert a10.fg[0].nonzero().flatten().tolist() == list(range(6, 16))
    assert a13.fg[0].nonzero().flatten().tolist() == list(range(3, 16))


def test_shared_anchor_goes_to_the_gt_of_larger_ciou():
    # both GTs contain anchor 5 at (12, 12); its predicted box equals GT 1, so CIoU(GT 1) > CIoU(GT 0)
    pred = torch.tensor([8.0, 8.0, 24.0, 24.0]).expand(16, 4).clone()
    a, _, _ = _run([[0, 0, 16, 16], [8, 8, 24, 24]], torch.full((16,), 0.5), pred)
    assert int(a.gt_slot[0, 5]) == 1
    assert bool(a.selected[0, 0, 5]) and not bool(a.mask_pos[0, 0, 5])


def test_small_box_floor_creates_candidates():
    # a 4×4 box between anchor centres holds none; floored to 8 px (stride[0] for one level) it spans 11..19,
    # which holds the centre (12, 12) only
    scores = torch.full((16,), 0.5)
    pred = torch.tensor([13.0, 13.0, 17.0, 17.0]).expand(16, 4)
    a, gt, mask = _run([[13, 13, 17, 17]], scores, pred)
    assert a.candidates[0, 0].nonzero().flatten().tolist() == [5]
    reasons = tal_reasons(a, torch.tensor([[0]]), gt, POINTS, mask, topk=10)
    assert reasons[0].code == "floor_only"
    a0, gt, mask = _run([[13, 13, 17, 17]], scores, pred, TalParams(min_side=0.0))
    assert not bool(a0.candidates.any()) and not bool(a0.fg.any())
    assert tal_reasons(a0, torch.tensor([[0]]), gt, POINTS, mask, topk=10)[0].code == "no_anchor_inside"


def test_zero_metric_when_predictions_miss():
    # predictions far away: CIoU < 0 → clamped to 0 → every t is 0
    pred = torch.tensor([30.0, 30.0, 31.0, 31.0]).expand(16, 4)
    a, gt, mask = _run([[0, 0, 16, 16]], torch.full((16,), 0.5), pred)
    assert float(a.align_metric.max()) == 0.0
    assert tal_reasons(a, torch.tensor([[0]]), gt, POINTS, mask, topk=10)[0].code == "zero_metric"
    assert float(a.target_weight.sum()) == 0.0


def test_lost_conflict_names_the_winner():
    # GT 1 sits inside GT 0 and every prediction equals GT 1: GT 0's anchors all go to GT 1
    pred = torch.tensor([0.0, 0.0, 16.0, 16.0]).expand(16, 4)
    a, gt, mask = _run([[0, 0, 17, 17], [0, 0, 16, 16]], torch.full((16,), 0.5), pred)
    reasons = tal_reasons(a, torch.tensor([[0, 1]]), gt, POINTS, mask, topk=10)
    assert reasons[0].code == "lost_conflict" and reasons[0].other_gt == 1


def test_padding_and_empty_batches():
    a, _, _ = _run([[0, 0, 0, 0]], torch.full((16,), 0.5), torch.zeros(16, 4))
    assert not bool(a.fg.any())
    empty = assign(
        torch.rand(1, 16, 2),
        torch.rand(1, 16, 4),
        POINTS,
        torch.zeros(1, 0, 1),
        torch.zeros(1, 0, 4),
        torch.zeros(1, 0, 1),
        STRIDES,
    )
    assert empty.fg.shape == (1, 16) and not bool(empty.fg.any())


def test_topk2_keeps_one_positive_per_gt():
    scores = torch.linspace(0.2, 0.95, 16)
    pred = torch.tensor([0.0, 0.0, 32.0, 32.0]).expand(16, 4)
    a, _, _ = _run([[0, 0, 32, 32]], scores, pred, TalParams(topk=7, topk2=1))
    assert a.fg[0].nonzero().flatten().tolist() == [15]


def test_non_finite_scores_spread_as_in_ultralytics():
    """A NaN score inside a GT makes t̂ NaN; the dense product the framework uses spreads it alike."""
    import pytest

    pytest.importorskip("ultralytics")
    from ultralytics.utils.tal import TaskAlignedAssigner

    g = torch.Generator().manual_seed(0)
    scores = torch.rand(16, generator=g) * 0.8 + 0.1
    pred = torch.tensor([2.0, 2.0, 18.0, 18.0]).expand(16, 4).clone() + torch.rand(16, 4, generator=g)
    for bad in (float("nan"), float("inf")):
        s = scores.clone()
        s[5] = bad  # anchor (12, 12), inside both GTs
        gts = [[0, 0, 16, 16], [8, 8, 30, 30]]
        ours, gt, mask = _run(gts, s, pred, labels=[0, 1])
        ref = TaskAlignedAssigner(topk=10, num_classes=2, alpha=0.5, beta=6.0, stride=list(STRIDES))
        two = torch.stack((s, torch.zeros(16)), -1)[None]
        _, _, ref_scores, ref_fg, _ = ref(two, pred[None], POINTS, torch.tensor([[[0.0], [1.0]]]), gt, mask)
        assert not torch.isfinite(ref_scores).all()
        torch.testing.assert_close(ours.target_scores, ref_scores.float(), rtol=0, atol=0, equal_nan=True)
        assert torch.equal(ours.fg, ref_fg.bool())


def test_reason_counts_equal_the_dense_masks_on_random_crowded_scenes():
    """The reasons count candidates, selections, positives and losses from sparse pairs; check them densely."""
    import re

    g = torch.Generator().manual_seed(3)
    seen_reasons = 0
    for trial in range(30):
        m = 1 + trial % 6
        xy = torch.rand(m, 2, generator=g) * 28
        wh = torch.rand(m, 2, generator=g) * (4 + trial % 3 * 12)
        gt = torch.cat((xy, (xy + wh).clamp(max=32)), 1).tolist()
        scores = torch.rand(16, generator=g)
        scores[torch.rand(16, generator=g) < 0.2] = 0.0  # some zero metrics
        jitter = torch.randn(16, 4, generator=g) * 3
        pred = torch.tensor(gt[trial % m]).expand(16, 4) + jitter
        params = TalParams(topk=3 + trial % 4, topk2=1 if trial % 5 == 0 else None)
        a, gtt, mask = _run(gt, scores, pred, params)
        reasons = tal_reasons(a, torch.arange(m)[None], gtt, POINTS, mask, topk=params.topk)
        seen_reasons += len(reasons)
        dense = {
            "cand": a.candidates.sum(-1)[0].tolist(),
            "sel": a.selected.sum(-1)[0].tolist(),
            "pos": a.mask_pos.sum(-1)[0].tolist(),
            "lost": (a.selected & ~a.mask_pos).sum(-1)[0].tolist(),
        }
        for r, why in reasons.items():
            assert dense["pos"][r] < params.topk
            nums = [int(v) for v in re.findall(r"\b(\d+)\b", why.detail)]
            if why.code == "few_candidates":
                assert nums[0] == dense["cand"][r]
            elif why.code == "no_anchor_inside":
                assert dense["cand"][r] == 0
            elif why.code == "lost_conflict":
                assert nums[:2] == [dense["lost"][r], dense["sel"][r]]
            elif why.code == "topk2_filtered":
                assert nums[:2] == [dense["pos"][r], dense["sel"][r]]
        for r in range(m):
            if dense["pos"][r] < params.topk and bool(mask[0, r]):
                assert r in reasons or dense["cand"][r] >= params.topk, (trial, r, dense)
    assert seen_reasons, "no GT got a reason in any trial: the reason checks above saw nothing"


def test_decoded_rows_equal_the_full_decode_bit_for_bit():
    # the replay decodes only the anchors it reads; the framework decodes all of them: every row must agree
    from helpers import ultra_output

    from yolodbg.heads import ultralytics as head

    g = torch.Generator().manual_seed(3)
    for size, reg_max, scale in (((640, 640), 16, 1.0), ((224, 352), 16, 8.0), ((96, 160), 1, 3.0)):
        out = head.parse(ultra_output(bs=3, size=size, reg_max=reg_max, scale=scale), input_size=size)
        br = out.branches["main"]
        assert not br.pred_dist.is_contiguous()  # a view of the head's tensor, no copy
        full = head.decode_distances(br)
        n = full.shape[1]
        for k in (0, 1, 2, 15, 16, 17, 333, 3 * n):
            b = torch.randint(0, 3, (k,), generator=g)
            a = torch.randint(0, n, (k,), generator=g)
            rows = head.decode_rows(br, b, a)
            assert rows.shape == (k, 4) and torch.equal(rows, full[b, a]), (size, reg_max, k)


def test_replay_decodes_boxes_only_where_read():
    from helpers import batch, ultra_output

    from yolodbg.api import replay
    from yolodbg.heads import ultralytics as head
    from yolodbg.heads.lazy import LazyAnchorTensor

    outputs = ultra_output(bs=2, size=(128, 96), nc=3, seed=5)
    res = replay(outputs, batch([[0, 1, 0.5, 0.5, 0.4, 0.3], [1, 2, 0.3, 0.6, 0.2, 0.5]])).result
    boxes = res.pred_boxes
    assert isinstance(boxes, LazyAnchorTensor) and not boxes.is_materialized
    out = head.parse(outputs, input_size=(128, 96))
    points, stride = head.make_anchors(out, torch.float32)
    expected = head.dist_to_xyxy(head.decode_distances(out.branches["main"]), points) * stride
    b, a = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 5, 191, 100])
    assert torch.equal(boxes[b, a], expected[b, a]) and torch.equal(boxes[1, 7], expected[1, 7])
    assert not boxes.is_materialized
    assert torch.equal(boxes.materialize(), expected)


def test_candidates_from_grid_axes_equal_the_per_anchor_test():
    # the replay tests columns and rows once per level; every anchor must get the per-anchor answer,
    # edges on cell centres, sub-pixel and floored boxes included
    from helpers import ultra_output

    from yolodbg.assigners.tal import candidates_in_gts
    from yolodbg.heads import ultralytics as head

    g = torch.Generator().manual_seed(7)
    for size in ((640, 640), (96, 224), (160, 32)):
        out = head.parse(ultra_output(bs=2, size=size), input_size=size)
        points, stride = head.make_anchors(out, torch.float32)
        xy = torch.randint(0, max(size) // 4, (2, 40, 2), generator=g).float() * 4  # often on cell centres
        wh = torch.rand(2, 40, 2, generator=g) * torch.tensor([0.5, 20.0, 200.0]).repeat(14)[:40, None]
        boxes = torch.cat((xy, xy + wh), -1)
        mask = torch.ones(2, 40, 1)
        mask[1, 30:] = 0
        for min_side in (0.0, 16.0):
            expected = candidates_in_gts(points * stride, boxes, mask, min_side)
            got = candidates_in_gts(
                points * stride, boxes, mask, min_side, grid=head.anchor_axes(out, torch.float32)
            )
            assert torch.equal(got, expected), (size, min_side)
            assert expected.any() and not expected.all()
