"""mAP beside the loss: NMS, decode vs. Ultralytics, letterbox mapping, COCOeval pooling vs. pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ultra_output

from yolodbg import bundle, groundtruth
from yolodbg.evaluate.coco import CocoAccumulator, evaluate_bundle
from yolodbg.evaluate.decode import Detections, PostProcess, decode, nms, nms_image, to_original
from yolodbg.geometry import Letterbox

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "yolov8n_val.pt"


# ---------------------------------------------------------------------------------------- NMS


def test_nms_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 5], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # IoU(0, 1) = 90 / 110 = 0.82 > 0.7: suppressed; IoU(0, 2) = 50 / 100 = 0.5: kept; box 3 overlaps nothing
    assert nms(boxes, scores, 0.7).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.4).tolist() == [0, 3]  # 0.5 > 0.4 now suppresses box 2
    assert nms(boxes, scores, 0.7, max_keep=2).tolist() == [0, 2]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_nms_matches_torchvision():
    tv = pytest.importorskip("torchvision")
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(400, 2, generator=g) * 100
    wh = torch.rand(400, 2, generator=g) * 30 + 1
    boxes = torch.cat((xy, xy + wh), 1)
    scores = torch.rand(400, generator=g)
    for thr in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, thr).tolist() == tv.ops.nms(boxes, scores, thr).tolist()
    # 1500 boxes in 6 tight clusters: suppression reaches across many blocks of the walk
    centres = torch.rand(6, 2, generator=g) * 500
    xy = centres.repeat(250, 1) + torch.randn(1500, 2, generator=g) * 4
    wh = 40 + torch.randn(1500, 2, generator=g) * 3
    boxes = torch.cat((xy, xy + wh), 1)
    scores = torch.rand(1500, generator=g)
    for thr in (0.5, 0.7, 0.9):
        ref = tv.ops.nms(boxes, scores, thr)
        assert nms(boxes, scores, thr).tolist() == ref.tolist()
        assert nms(boxes, scores, thr, max_keep=20).tolist() == ref[:20].tolist()


def _greedy_reference(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    """Textbook greedy NMS over every pair, one box at a time (IoU as torchvision computes it)."""
    order = scores.argsort(descending=True, stable=True).tolist()
    b = boxes.numpy()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep: list[int] = []
    for i in order:
        ok = True
        for k in keep:
            w = max(min(b[k, 2], b[i, 2]) - max(b[k, 0], b[i, 0]), 0)
            h = max(min(b[k, 3], b[i, 3]) - max(b[k, 1], b[i, 1]), 0)
            inter = np.float32(w) * np.float32(h)
            with np.errstate(invalid="ignore", divide="ignore"):
                if inter / (area[k] + area[i] - inter) > np.float32(thr):
                    ok = False
                    break
        if ok:
            keep.append(i)
    return keep


NMS_CASES = ["many_classes", "clusters", "cross_offset", "one_class", "nan", "ties"]


@pytest.mark.parametrize("case", NMS_CASES)
def test_class_aware_nms_compares_within_classes_only_where_that_is_exact(case, monkeypatch):
    """``nms(..., labels=)`` keeps what the all-pairs walk keeps; the within-class path runs where
    classes provably cannot touch, and steps aside (None) where they can."""
    from yolodbg.evaluate import decode as _decode

    g = torch.Generator().manual_seed(NMS_CASES.index(case))
    n, nc = 400, 1 if case == "one_class" else 30
    xy = torch.rand(n, 2, generator=g) * 600
    wh = torch.rand(n, 2, generator=g) * 80 + 0.5
    if case == "clusters":  # heavy suppression inside each class, chains of it across the walk
        xy = (torch.rand(4, 2, generator=g) * 600).repeat(n // 4, 1) + torch.randn(n, 2, generator=g) * 3
        wh = 50 + torch.randn(n, 2, generator=g)
    if case == "cross_offset":  # boxes wider than the class offset: classes overlap after the offset
        wh[::7] = 9000.0
    box = torch.cat((xy, xy + wh), 1)
    if case == "nan":
        box[3] = float("nan")
    label = torch.randint(0, nc, (n,), generator=g)
    scores = torch.rand(n, generator=g)
    if case == "ties":
        scores = (scores * 8).round() / 8
    offset_boxes = box + label[:, None].to(box.dtype) * 7680.0
    taken = []
    real = _decode._nms_within_classes
    monkeypatch.setattr(_decode, "_nms_within_classes", lambda *a: _spy(real, a, taken))
    for thr in (0.3, 0.7):
        ref = _greedy_reference(offset_boxes, scores, thr)
        for max_keep in (None, 50):
            ours = nms(offset_boxes, scores, thr, max_keep, labels=label).tolist()
            assert ours == ref[:max_keep]
            assert ours == nms(offset_boxes, scores, thr, max_keep).tolist()  # the all-pairs walk
    fast = [r is not None for r in taken]
    if case in ("many_classes", "clusters", "ties"):
        assert all(fast)
    elif case in ("cross_offset", "nan"):  # classes may touch: every pair is compared
        assert not any(fast)
    else:  # one class: within budget only while the pairs are fewer than the block walk's
        assert fast == [True, False, True, False]


def test_count_above_compares_as_torch_does():
    """numpy's count equals torch's on the threshold's own float32 rounding and its neighbours."""
    from yolodbg.evaluate.decode import _count_above

    t32 = np.float32(0.001)
    edge = [t32, np.nextafter(t32, np.float32(0)), np.nextafter(t32, np.float32(1)), 0.001, 0.5, 0.0]
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        x = torch.tensor(edge * 7, dtype=dtype).view(6, 7)
        for view in (x, x.t(), x[:, ::2]):
            assert _count_above(view, 0.001) == int(torch.count_nonzero(view > 0.001))


def _spy(real, args, taken):
    r = real(*args)
    taken.append(r)
    return r


def test_nms_image_is_class_aware_and_multilabel():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    scores = torch.tensor([[0.9, 0.0005], [0.8, 0.6]])
    d = nms_image(boxes, scores, PostProcess())
    # rows above conf 0.001: (0, c0) 0.9, (1, c0) 0.8, (1, c1) 0.6; same box, same class -> (1, c0) suppressed
    assert d.scores.tolist() == pytest.approx([0.9, 0.6])
    assert d.labels.tolist() == [0, 1]
    single = nms_image(boxes, scores, PostProcess(multi_label=False))
    assert single.labels.tolist() == [0]  # best class only: both rows are class 0, one survives


@pytest.mark.parametrize("seed", range(8))
def test_best_rows_first_nms_equals_the_full_validator_nms(seed):
    """The best-rows NMS (in chunks) keeps exactly what nms_image keeps on all rows, in either layout."""
    from yolodbg.evaluate import decode as _decode
    from yolodbg.geometry import cxcywh_to_xyxy

    g = torch.Generator().manual_seed(seed)
    nc, n = (80, 3, 1, 20, 7, 80, 2, 5)[seed], (2100, 500, 300, 1200, 64, 400, 3000, 900)[seed]
    logits = torch.randn(nc, n, generator=g) * (1.0, 3.0)[seed % 2] - (7.0, 3.0, 0.0)[seed % 3]
    if seed % 2:  # tied scores: quantised logits and classes copied
        logits = (logits * 2).round() / 2
        logits[nc // 2 :] = logits[: nc - nc // 2].clone()
    scores = logits.sigmoid()
    xy = torch.rand(2, n, generator=g) * 300
    wh = torch.rand(2, n, generator=g) * (5.0, 60.0)[seed % 2] + 1
    if seed == 4:
        xy[:] = 100.0  # one location: everything overlaps
    boxes = torch.cat((xy, wh))  # (4, N) cxcywh
    for pp in (
        PostProcess(),
        PostProcess(max_det=7),
        PostProcess(iou=0.3, max_det=1000),
        PostProcess(max_nms=50),
    ):
        cand = (scores.amax(0) > pp.conf).nonzero().flatten()
        full = nms_image(cxcywh_to_xyxy(boxes[:, cand].t()), scores[:, cand].t(), pp)
        for layout in (scores, scores.t().contiguous().t()):  # the head's (nc, N), the replay's (N, nc)
            for chunk in (16, _decode.NMS_CHUNK):  # many rounds of growing k; the default
                old_chunk = _decode.NMS_CHUNK
                try:
                    _decode.NMS_CHUNK = chunk
                    ours = _decode._nms_best_rows(boxes, layout, pp)
                finally:
                    _decode.NMS_CHUNK = old_chunk
                assert torch.equal(ours.boxes, full.boxes)
                assert torch.equal(ours.scores, full.scores)
                assert torch.equal(ours.labels, full.labels)


# ------------------------------------------------------------------------------- letterbox mapping


def test_to_original_inverts_the_letterbox_and_clips():
    from yolodbg.groundtruth import Targets

    lb = Letterbox(0.5, 0.5, 10.0, 0.0)  # 200x100 original -> 100x50 content, 10 px padding at the top
    t = Targets(
        1,
        (70, 100),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 4),
        (),
        "test",
        letterboxes=(lb,),
        orig_sizes=((100, 200),),
    )
    d = Detections(
        torch.tensor([[10.0, 20.0, 30.0, 40.0], [-5.0, 0.0, 120.0, 69.0]]),
        torch.ones(2),
        torch.zeros(2, dtype=torch.long),
    )
    out = to_original([d], t)[0].boxes
    # (x - 0) / 0.5 and (y - 10) / 0.5; the second box leaves the image and is clipped to [0, 200] x [0, 100]
    assert out.tolist() == [[20.0, 20.0, 60.0, 60.0], [0.0, 0.0, 200.0, 100.0]]


# ------------------------------------------------------------------------- decode vs. Ultralytics


def _ultralytics_reference(outputs, nc, strides=(8.0, 16.0, 32.0)):
    pytest.importorskip("ultralytics")
    pytest.importorskip("torchvision")  # imported before the NMS clock starts (its time limit is 2 s)
    from ultralytics.nn.modules.head import Detect
    from ultralytics.utils.nms import non_max_suppression

    head = Detect(nc=nc, ch=(16, 32, 64)).eval()
    head.stride = torch.tensor(strides)
    with torch.no_grad():
        preds = head._inference(outputs)
        # no time limit: on this CPU its NMS takes seconds per image with 80 classes
        return non_max_suppression(preds, 0.001, 0.7, multi_label=True, max_det=300, nc=0, max_time_img=1e3)


def _compare(ours: list[Detections], ref: list[torch.Tensor]) -> None:
    assert len(ours) == len(ref)
    for d, r in zip(ours, ref, strict=True):
        assert len(d.scores) == len(r)
        torch.testing.assert_close(d.boxes, r[:, :4], rtol=0, atol=1e-4)
        torch.testing.assert_close(d.scores, r[:, 4], rtol=0, atol=0)
        assert d.labels.tolist() == r[:, 5].long().tolist()


@pytest.mark.parity
@pytest.mark.parametrize("nc", [3, 80])
def test_decode_matches_ultralytics_nms_synthetic(nc, monkeypatch):
    from yolodbg.evaluate import decode as _decode

    size = (96, 128) if nc == 3 else (256, 256)
    out = ultra_output(bs=2 if nc == 3 else 1, size=size, nc=nc, seed=5, scale=2.0)
    if nc == 80:  # ~2 % of (anchor, class) above conf: a few rows per class, NMS compares within classes
        out["scores"] = torch.randn(out["scores"].shape, generator=torch.Generator().manual_seed(1)) - 7.5
    within = []
    real = _decode._nms_within_classes
    monkeypatch.setattr(_decode, "_nms_within_classes", lambda *a: _spy(real, a, within))
    ref = _ultralytics_reference(out, nc)
    b = bundle.from_object({"yolodbg": 1, "head": "ultralytics", "outputs": out, "input_size": list(size)})
    ours = decode(b, None)
    assert ours and all(len(d.scores) == 300 for d in ours)  # many candidates: NMS and max_det both matter
    if nc == 80:
        assert within and all(r is not None for r in within)
    _compare(ours, ref)


@pytest.mark.parity
def test_decode_breaks_score_ties_as_ultralytics():
    """Equal scores (two classes of one anchor, many anchors): the kept order follows torch's sort."""
    out = ultra_output(bs=2, size=(160, 224), nc=5, seed=3, scale=2.0)
    out["scores"][:, 3] = out["scores"][:, 1]  # classes 1 and 3 tie on every anchor
    ref = _ultralytics_reference(out, 5)
    b = bundle.from_object({"yolodbg": 1, "head": "ultralytics", "outputs": out, "input_size": [160, 224]})
    ours = decode(b, None)
    assert any((d.labels == 3).any() and (d.labels == 1).any() for d in ours)
    _compare(ours, ref)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("bs", "size", "nc"), [(2, (128, 128), 80), (1, (64, 64), 16), (2, (96, 128), 3)])
def test_decode_on_the_replay_sigmoid_equals_the_head_decode(bs, size, nc, threads):
    """Detections from the replay's (B, N, nc) sigmoid equal those of the head's own sigmoid, bit for bit."""
    from helpers import batch

    from yolodbg.api import replay
    from yolodbg.evaluate.decode import _same_sigmoid
    from yolodbg.recipes.yolov8 import YoloV8

    out = ultra_output(bs=bs, size=size, nc=nc, seed=nc, scale=3.0)
    rows = [[i % bs, i % nc, 0.2 + 0.05 * i, 0.3 + 0.04 * i, 0.1 + 0.02 * i, 0.15] for i in range(6)]
    b = bundle.from_object({"yolodbg": 1, "head": "ultralytics", "outputs": out, "input_size": list(size)})
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        res = replay(out, batch(rows), input_size=size).result
        shared = _same_sigmoid(res.pred_scores, out["scores"])
        assert shared == (bs * nc * res.pred_scores.shape[1] % (64 * threads) == 0)
        ours, head = decode(b, res, recipe=YoloV8()), decode(b, None)
    finally:
        torch.set_num_threads(before)
    assert ours, "no image decoded"
    for d, h in zip(ours, head, strict=True):
        assert torch.equal(d.boxes, h.boxes) and torch.equal(d.scores, h.scores)
        assert torch.equal(d.labels, h.labels)
    if shared:  # the replay's probabilities are the head's, every element
        assert torch.equal(res.pred_scores.transpose(1, 2), out["scores"].sigmoid())


def _toy_own_scores():
    """A toy subclass of yolov8 (not registered) that declares its scores not the head's sigmoid."""
    from yolodbg.recipes.yolov8 import YoloV8

    class OwnScores(YoloV8):
        name = "toy-own-scores"
        scores_are_head_sigmoid = False

    return OwnScores


@pytest.mark.parametrize("declared", [True, False])
def test_the_decode_reuses_the_replay_scores_only_when_the_recipe_declares_them_the_heads(
    declared, monkeypatch
):
    """``Recipe.scores_are_head_sigmoid`` decides, not the recipe's name: a toy subclass of yolov8 that
    declares False gets the head's own sigmoid; yolov8 (True) hands its scores to the decode."""
    from helpers import batch

    from yolodbg.api import replay
    from yolodbg.heads import ultralytics as head
    from yolodbg.recipes.yolov8 import YoloV8

    recipe = YoloV8() if declared else _toy_own_scores()()
    assert recipe.scores_are_head_sigmoid is declared
    out = ultra_output(bs=2, size=(128, 128), nc=4, seed=4, scale=3.0)
    b = bundle.from_object({"yolodbg": 1, "head": "ultralytics", "outputs": out, "input_size": [128, 128]})
    res = replay(out, batch([[0, 1, 0.4, 0.4, 0.3, 0.3], [1, 2, 0.6, 0.5, 0.2, 0.4]]), recipe=recipe).result
    assert res.recipe == recipe.name
    seen = []
    real = head.inference

    def spy(bundle_, parsed=None, probs=None):
        seen.append(probs)
        return real(bundle_, parsed, probs)

    monkeypatch.setattr(head, "inference", spy)
    ours = decode(b, res, recipe=recipe)
    assert len(seen) == 1
    assert (seen[0] is res.pred_scores) is declared and (seen[0] is None) is not declared
    for d, h in zip(ours, decode(b, None), strict=True):  # the same detections either way
        assert torch.equal(d.boxes, h.boxes) and torch.equal(d.scores, h.scores)
        assert torch.equal(d.labels, h.labels)


@pytest.mark.parity
def test_decode_matches_ultralytics_on_the_sample_bundle():
    if not SAMPLE.exists():
        pytest.skip("sample_data/yolov8n_val.pt not generated yet")
    b = bundle.load(SAMPLE)
    ref = _ultralytics_reference(b.outputs, int(b.outputs["scores"].shape[1]), b.strides or (8.0, 16.0, 32.0))
    _compare(decode(b, None), ref)


@pytest.mark.parity
def test_end_to_end_selection_matches_ultralytics():
    pytest.importorskip("ultralytics")
    from ultralytics.nn.modules.head import Detect
    from ultralytics.utils.nms import non_max_suppression

    from yolodbg.evaluate.decode import _topk_e2e

    g = torch.Generator().manual_seed(1)
    boxes = torch.rand(2, 50, 4, generator=g) * 100
    scores = torch.rand(2, 50, 3, generator=g) ** 6
    head = Detect(nc=3, ch=(16, 32, 64), end2end=True).eval()
    head.max_det = 20
    ref = non_max_suppression(
        head.postprocess(torch.cat((boxes, scores), -1)), 0.001, 0.7, end2end=True, max_det=20
    )
    _compare(_topk_e2e(boxes, scores, PostProcess(max_det=20)), ref)


# ---------------------------------------------------------------- COCOeval: pooled vs. by hand


IMAGES = [
    {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
    {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100},
    {"id": 3, "file_name": "c.jpg", "width": 160, "height": 120},
]
ANNS = [  # (id, image, category, bbox xywh, iscrowd)
    (11, 1, 1, [10, 10, 40, 40], 0),
    (12, 1, 1, [100, 20, 50, 60], 0),
    (13, 1, 2, [0, 0, 20, 10], 0),
    (21, 2, 2, [30, 30, 40, 40], 0),
    (22, 2, 1, [60, 60, 10, 10], 1),  # crowd: ignored by COCOeval
    (31, 3, 2, [5, 5, 100, 100], 0),
]
DETS = [  # (image, category, bbox xywh, score)
    (1, 1, [10, 10, 40, 40], 0.9),  # = ann 11
    (1, 1, [0, 60, 30, 30], 0.8),  # false positive
    (1, 1, [102, 22, 50, 60], 0.7),  # ann 12, IoU 0.86
    (1, 2, [50, 50, 20, 10], 0.6),  # misses ann 13
    (2, 2, [30, 30, 40, 38], 0.95),  # ann 21, IoU 0.95
    (2, 1, [60, 60, 10, 10], 0.5),  # on the crowd box: ignored
    (3, 2, [20, 20, 100, 100], 0.4),  # ann 31, IoU 7225 / 12775 = 0.566
]


@pytest.fixture
def coco_case(tmp_path):
    doc = {
        "images": IMAGES,
        "annotations": [
            {"id": i, "image_id": im, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": crowd}
            for i, im, c, b, crowd in ANNS
        ],
        "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path


def _bundle_eval(path, image_ids, key, table=DETS, cats=(1, 2)):
    nc = len(cats)
    out = ultra_output(bs=len(image_ids), size=(64, 64), nc=nc)
    b = bundle.from_object(
        {
            "yolodbg": 1,
            "head": "ultralytics",
            "outputs": out,
            "input_size": [64, 64],
            "images": [{"image_id": i} for i in image_ids],
        }
    )
    targets = groundtruth.from_coco(path, b, (64, 64), nc)
    dets = []
    for i in image_ids:
        mine = [d for d in table if d[0] == i]
        mine.sort(key=lambda d: -d[3])
        boxes = torch.tensor(
            [[x, y, x + w, y + h] for _, _, (x, y, w, h), _ in mine], dtype=torch.float32
        ).reshape(-1, 4)
        dets.append(
            Detections(
                boxes,
                torch.tensor([d[3] for d in mine], dtype=torch.float64),
                torch.tensor([cats.index(d[1]) for d in mine], dtype=torch.long),
            )
        )
    return evaluate_bundle(b, targets, dets, path, nc, key), targets


def test_pooled_cocoeval_equals_pycocotools_by_hand(coco_case):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    acc = CocoAccumulator()
    first, t1 = _bundle_eval(coco_case, [2, 1], 0)  # bundles in any order, images in any order
    second, _ = _bundle_eval(coco_case, [3], 1)
    acc.add(second)
    acc.add(first)
    ours = acc.summary()

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_case))
        dt = gt.loadRes([{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in DETS])
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), ev.stats[:6], strict=True):
        expected = math.nan if value < 0 else value
        assert ours.stats[name] == pytest.approx(expected, nan_ok=True, abs=1e-12), name
    # class 0 (category 1): GTs 11, 12; detections 0.9 TP, 0.8 FP, 0.7 TP at IoU 0.5
    # precision envelope: recall 0.5 -> 1, recall 1 -> 2/3: AP50 = (51 · 1 + 50 · 2/3) / 101
    assert ours.per_class[0]["AP50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert ours.per_class[0]["AP"] == pytest.approx(float(ev.eval["precision"][:, :, 0, 0, -1].mean()))
    # detected (matched at IoU 0.5): 11 and 12 yes, 13 no (the class-2 detection misses it), 21 yes
    detected = {t1.ann_ids[r]: d for r, d in enumerate(first.detected)}
    assert detected == {11: True, 12: True, 13: False, 21: True}
    assert second.detected == [True]  # IoU 0.566 ≥ 0.5


def test_perfect_detections_from_bundle_targets_give_ap_one(make_batch):
    out = ultra_output(bs=2, size=(64, 64), nc=2)
    tg = make_batch([[0, 0, 0.5, 0.5, 0.5, 0.5], [1, 1, 0.25, 0.25, 0.25, 0.25]])
    b = bundle.from_object(
        {
            "yolodbg": 1,
            "head": "ultralytics",
            "outputs": out,
            "input_size": [64, 64],
            "targets": tg,
            "images": [{"orig_size": [128, 128], "scale": 0.5, "pad": [0, 0]}] * 2,
        }
    )
    targets = groundtruth.load_targets(None, b, (64, 64), 2)
    # GT 0: 32 px input box at (16, 16) -> 64 px at (32, 32) in the 128 px original
    dets = [
        Detections(torch.tensor([[32.0, 32.0, 96.0, 96.0]]), torch.tensor([0.9]), torch.tensor([0])),
        Detections(torch.tensor([[16.0, 16.0, 48.0, 48.0]]), torch.tensor([0.9]), torch.tensor([1])),
    ]
    be = evaluate_bundle(b, targets, dets, None, 2)
    acc = CocoAccumulator()
    acc.add(be)
    s = acc.summary()
    assert s.stats["AP"] == pytest.approx(1.0)
    assert be.detected == [True, True]
    assert be.det_iou == pytest.approx([1.0, 1.0])


def _by_hand(path, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dt = gt.loadRes([{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in dets])
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_pooled_cocoeval_equals_pycocotools_on_a_random_case(tmp_path):
    import random

    rng = random.Random(7)
    cats = (2, 5, 9)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 240} for i in range(1, 13)]
    anns, dets = [], []
    for im in images:
        for _ in range(rng.randint(0, 6)):
            w, h = (
                rng.choice([rng.uniform(4, 30), rng.uniform(30, 90), rng.uniform(90, 200)]),
                rng.uniform(4, 120),
            )
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            c = rng.choice(cats)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h * rng.uniform(0.5, 1.0),
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
            for _ in range(rng.randint(0, 3)):  # jittered hits, some with the wrong class
                j = [round(v + rng.uniform(-8, 8), 3) for v in (x, y)] + [round(w, 3), round(h, 3)]
                dets.append(
                    (im["id"], c if rng.random() < 0.8 else rng.choice(cats), j, round(rng.random(), 2))
                )
        for _ in range(rng.randint(0, 4)):  # false positives; scores rounded to 0.01: ties on purpose
            dets.append(
                (
                    im["id"],
                    rng.choice(cats),
                    [rng.uniform(0, 200), rng.uniform(0, 150), 40.0, 30.0],
                    round(rng.random(), 2),
                )
            )
    path = tmp_path / "rand.json"
    path.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": c} for c in cats]})
    )
    acc = CocoAccumulator()
    for key, ids in enumerate(([5, 1, 3], [12, 2], [4, 6, 7, 8], [11, 10, 9])):
        acc.add(_bundle_eval(path, ids, key, dets, cats)[0])
    ours = acc.summary()
    ev = _by_hand(path, dets)
    for name, value in zip(
        ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"), ev.stats, strict=False
    ):
        expected = math.nan if value < 0 else value
        assert ours.stats[name] == pytest.approx(expected, nan_ok=True, abs=1e-12), name
    for k in range(3):
        pr = ev.eval["precision"][:, :, k, 0, -1]
        assert ours.per_class[k]["AP"] == pytest.approx(float(pr[pr > -1].mean()), abs=1e-12)


def _evalimgs_by_hand(path, dets):
    """pycocotools' full ``COCOeval.evaluate`` on these detections: {(image, category): [entry per area]}."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dt = gt.loadRes(
            [{"image_id": i, "category_id": c, "bbox": b, "score": round(s, 5)} for i, c, b, s in dets]
        )
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
    p = ev.params
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    out = {}
    for k, cat in enumerate(p.catIds):
        for j, img in enumerate(p.imgIds):
            entries = [ev.evalImgs[(k * n_area + a) * n_img + j] for a in range(n_area)]
            if entries[0] is not None:
                out[img, cat] = entries
    return out


@pytest.mark.parametrize("seed", range(6))
def test_bundle_matches_equal_cocoeval_evaluate_entry_by_entry(tmp_path, seed):
    """Every (image, category, area) entry COCOeval.evaluate leaves equals what evaluate_bundle keeps.

    Scenes: crowd GTs, GT areas unlike their boxes, a category without GT, more than 100
    detections of one class in an image (maxDet), tied scores, zero-size boxes; coordinates in
    1/8 px and scores in 1/64 so the float32 boxes round to the same json values.
    """
    import random

    rng = random.Random(seed)
    cats = (3, 7, 8, 20)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 240} for i in range(1, 7)]
    anns, dets = [], []
    q = lambda v: round(v * 8) / 8  # noqa: E731
    for im in images:
        for _ in range(rng.randint(0, 7)):
            w, h = (
                q(rng.choice([rng.uniform(2, 30), rng.uniform(30, 100), rng.uniform(100, 200)])),
                q(rng.uniform(2, 120)),
            )
            x, y = q(rng.uniform(0, 320 - w)), q(rng.uniform(0, 240 - h))
            c = rng.choice(cats[:3])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h * rng.choice([1.0, rng.uniform(0.3, 1.0)]),
                    "iscrowd": int(rng.random() < 0.15),
                }
            )
            for _ in range(rng.randint(0, 4)):
                box = [
                    min(max(q(x + rng.uniform(-6, 6)), 0), 300),
                    min(max(q(y + rng.uniform(-6, 6)), 0), 200),
                    w,
                    h,
                ]
                dets.append(
                    (im["id"], c if rng.random() < 0.8 else rng.choice(cats), box, rng.randint(1, 63) / 64)
                )
        for side in (32.0, 96.0):  # areas on COCO's bucket limits (inclusive on both sides)
            dets.append((im["id"], rng.choice(cats), [q(rng.uniform(0, 200)), 8.0, side, side], 0.5))
        n_fp = rng.choice([0, 3, 30, 150])
        c_fp = rng.choice(cats)
        for _ in range(n_fp):  # one class flooded: beyond COCOeval's 100 detections
            w = q(rng.choice([0.0, rng.uniform(1, 60), rng.uniform(60, 150)]))
            box = [q(rng.uniform(0, 150)), q(rng.uniform(0, 100)), w, q(rng.uniform(0, 80))]
            dets.append(
                (im["id"], c_fp if rng.random() < 0.7 else rng.choice(cats), box, rng.randint(1, 63) / 64)
            )
    path = tmp_path / "rand.json"
    path.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": c} for c in cats]})
    )
    expected = _evalimgs_by_hand(path, dets)
    ids = [im["id"] for im in images]
    be, targets = _bundle_eval(path, ids, 0, dets, cats)
    seen = set()
    for img in ids:
        m = be.images[img]
        for k in m.ks:
            seen.add((img, cats[k]))
            for ours, theirs in zip(m.entries(k), expected[img, cats[k]], strict=True):
                assert ours["dtScores"].tolist() == list(theirs["dtScores"])
                assert (ours["dtMatches"] == (theirs["dtMatches"] > 0)).all()
                assert (ours["dtIgnore"] == (theirs["dtIgnore"] > 0)).all()
                assert ours["gtIgnore"].tolist() == [bool(v) for v in theirs["gtIgnore"]]
    assert seen and seen == set(expected)
    matched = {
        g
        for entries in expected.values()
        for g, m in zip(entries[0]["gtIds"], entries[0]["gtMatches"][0], strict=True)
        if m > 0
    }
    assert {targets.ann_ids[r] for r, d in enumerate(be.detected) if d} == matched & set(targets.ann_ids)
    assert any(be.detected) and not all(be.detected)
    assert be.num_dets == len(dets)


def test_round_like_python_on_halves_and_noise():
    import random

    from yolodbg.evaluate.coco import round_like_python

    rng = random.Random(1)
    values = [k / 2000 for k in range(-3000, 3000)]  # exact and near halves at 3 decimals
    values += [k / 64 for k in range(-500, 500)] + [rng.uniform(-1e4, 1e4) for _ in range(5000)]
    values += [v + d for v in values[:2000] for d in (1e-13, -1e-13)]
    for nd in (3, 5):
        ours = round_like_python(np.asarray(values), nd).tolist()
        assert ours == [round(v, nd) for v in values]


@pytest.mark.parametrize("seed", range(3))
def test_vectorised_accumulate_equals_pycocotools_accumulate(tmp_path, seed):
    """precision, recall and scores arrays equal pycocotools' accumulate run class by class, to the bit."""
    import random

    rng = random.Random(100 + seed)
    cats = (1, 2, 4, 9)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 240} for i in range(1, 11)]
    q = lambda v: round(v * 8) / 8  # noqa: E731
    anns, dets = [], []
    for im in images:
        for _ in range(rng.randint(0, 6)):
            w, h = q(rng.uniform(3, 150)), q(rng.uniform(3, 120))
            x, y = q(rng.uniform(0, 320 - w)), q(rng.uniform(0, 240 - h))
            c = rng.choice(cats[:3])
            crowd = int(rng.random() < 0.1)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
            for _ in range(rng.randint(0, 3)):
                dets.append(
                    (
                        im["id"],
                        c,
                        [q(x + rng.uniform(-5, 5)), q(y + rng.uniform(-5, 5)), w, h],
                        rng.randint(1, 40) / 40,
                    )
                )
        for _ in range(rng.choice([0, 5, 120])):
            dets.append(
                (
                    im["id"],
                    rng.choice(cats),
                    [q(rng.uniform(0, 250)), q(rng.uniform(0, 180)), 30.0, 20.0],
                    rng.randint(1, 40) / 40,
                )
            )
    path = tmp_path / "acc.json"
    path.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": c} for c in cats]})
    )
    acc = CocoAccumulator()
    ids = [im["id"] for im in images]
    for key, part in enumerate((ids[:4], ids[4:7], ids[7:])):
        acc.add(_bundle_eval(path, part, key, dets, cats)[0])
    for ours, theirs in zip(acc.arrays(), acc.arrays(reference=True), strict=True):
        assert ours.shape == theirs.shape
        assert np.array_equal(ours, theirs)
    assert (acc.arrays()[0] > 0).any()
    assert acc.summary() == acc.summary(reference=True)
