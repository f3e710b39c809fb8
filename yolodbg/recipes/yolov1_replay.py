"""The ``yolov1`` recipe's replay: the YOLOv1 paper's sum-squared loss (the choices it states are in
:mod:`yolodbg.recipes.yolov1`).

Imported when the recipe runs (the class in :mod:`yolodbg.recipes.yolov1` imports no torch); it reads
the recipe it is given and never imports the recipe modules.

Each term is summed once in float32 (its logged value); the ledger holds the same per-element
values in float64: coord / conf_obj / cls on (image, responsible anchor, GT), conf_noobj on
(image, anchor, background). Anchor ``j*S*S + row*S + col`` is predictor j of cell (row, col).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from yolodbg.assigners import yolov1 as assigner
from yolodbg.bundle import Bundle
from yolodbg.groundtruth import Targets
from yolodbg.heads import yolov1 as head
from yolodbg.result import LossResult, Positives, TermLedger

if TYPE_CHECKING:
    from yolodbg.recipes.yolov1 import YoloV1

TERMS = ("coord", "conf_obj", "conf_noobj", "cls")


def sqrt_wh(v: Tensor, mode: str, eps: float) -> Tensor:
    """√ of predicted w or h, elementwise, under the chosen rule for negative values (see module doc).

    >>> sqrt_wh(torch.tensor([4.0, -4.0, 0.0]), "signed", 0.0).tolist()
    [2.0, -2.0, 0.0]
    >>> sqrt_wh(torch.tensor([4.0, -4.0]), "clamp", 0.0).tolist()
    [2.0, 0.0]
    """
    if mode == "signed":
        return torch.sign(v) * torch.sqrt(v.abs() + eps)
    if mode == "clamp":
        return torch.sqrt(v.clamp(min=0) + eps)
    if mode == "direct":
        return v
    return torch.sqrt(v + eps)


def element_terms(
    out: head.Yolov1Output, a: assigner.Yolov1Assignment, targets: Targets, p: dict
) -> tuple[dict[str, Tensor], Tensor]:
    """Unreduced, gain-weighted terms (float32) and the confidence targets ``(K,)`` of responsible predictors.

    ``coord``, ``conf_obj``, ``cls``: ``(K,)`` over the K GTs that hold their cell (row order);
    ``conf_noobj``: ``(B, N)``, zero on responsible predictors.
    """
    won = a.won.nonzero().flatten()
    b, r, c, s = targets.batch_idx[won], a.row[won], a.col[won], a.slot[won]
    box = out.boxes[b, r, c, s]  # (K, 4) raw x, y, w, h
    tgt = a.target[won]
    mode, eps = p["wh_sqrt"], p["wh_eps"]
    dx, dy = box[:, 0] - tgt[:, 0], box[:, 1] - tgt[:, 1]
    dw = sqrt_wh(box[:, 2], mode, eps) - tgt[:, 2].clamp(min=0).sqrt()
    dh = sqrt_wh(box[:, 3], mode, eps) - tgt[:, 3].clamp(min=0).sqrt()
    coord = p["gain.coord"] * (dx * dx + dy * dy + dw * dw + dh * dh)

    iou = a.responsible_iou[won].to(box.dtype)
    conf_t = iou if p["conf_target"] == "iou" else torch.ones_like(iou)
    conf_obj = p["gain.obj"] * (out.conf[b, r, c, s] - conf_t).pow(2)

    onehot = torch.nn.functional.one_hot(targets.cls[won], out.nc).to(box.dtype)
    cls = p["gain.cls"] * (out.cls[b, r, c] - onehot).pow(2).sum(-1)

    conf = head.flatten_predictors(out.conf.unsqueeze(-1)).squeeze(-1)  # (B, N)
    noobj = p["gain.noobj"] * torch.where(a.fg, torch.zeros_like(conf), conf * conf)
    return {"coord": coord, "conf_obj": conf_obj, "conf_noobj": noobj, "cls": cls}, conf_t


def run(recipe: YoloV1, raw: head.Yolov1Output, bundle: Bundle, targets: Targets) -> LossResult:
    """The paper's loss on a parsed output (upcast to float32 first), one sum per term."""
    warnings = list(targets.warnings)
    out = raw
    if raw.raw.dtype != torch.float32:
        warnings.append(f"outputs are {raw.raw.dtype}; replayed in float32")
        out = head.parse(raw.raw.float(), input_size=raw.input_size, nc=raw.nc, where=bundle.source)
    p = recipe.params
    pred = head.decode_cxcywh(out)
    if p["wh_sqrt"] == "direct":  # the head predicts √w, √h: the box it means has w = out²
        pred = torch.cat((pred[..., :2], pred[..., 2:] ** 2), -1)
    a = assigner.assign(pred, targets, out.input_size, p["assigner.conflict"], p["assigner.zero_iou"])
    elems, conf_t = element_terms(out, a, targets, p)
    bs = out.batch_size
    divisor = bs if p["normalize"] == "batch" else 1
    items = {t: elems[t].sum() / divisor for t in TERMS}  # float32, one sum per term
    objective = float(torch.stack([items[t] for t in TERMS]).sum())

    won = a.won.nonzero().flatten()
    img, anc = targets.batch_idx[won], a.anchor[won]
    ledger = _ledger(elems, divisor, won, img, anc, (bs, out.num_anchors))
    positives = _positives(out, a, won, img, anc)
    target_score = torch.zeros(bs, out.num_anchors)
    target_score[img, anc] = conf_t.detach().float()
    warnings += _input_warnings(out, a, targets, won, p["wh_sqrt"])
    return LossResult(
        recipe=recipe.name,
        params=dict(p),
        reproduces=recipe.reproduces,
        batch_size=bs,
        terms={t: float(v) for t, v in items.items()},
        objective=objective,
        ledger=ledger,
        positives=positives,
        anchors=head.anchors(out),
        pred_boxes=head.flatten_predictors(head.cxcywh_to_pixels_xyxy(pred, out.input_size)).detach(),
        pred_scores=_class_confidence(out),
        fg=a.fg,
        gt_of_anchor=a.gt_of_anchor,
        target_score=target_score,
        gt_reasons=assigner.reasons(a, targets),
        normalizers={"divisor": float(divisor)},
        notes=_notes(out, p, divisor),
        warnings=warnings,
        inputs=_raw_inputs(out),
    )


def _ledger(
    elems: dict[str, Tensor], divisor: int, won: Tensor, img: Tensor, anc: Tensor, shape: tuple[int, int]
) -> dict[str, TermLedger]:
    """Coordinate, object-confidence and class values on the responsible predictors of the GTs that
    won their cell; the no-object confidence dense on every predictor (background's)."""
    ledger = {
        t: TermLedger.sparse(elems[t].detach().double() / divisor, img, anc, won)
        for t in ("coord", "conf_obj", "cls")
    }
    ledger["conf_noobj"] = TermLedger.dense(
        elems["conf_noobj"].detach().double() / divisor, torch.full(shape, -1)
    )
    return ledger


def _positives(
    out: head.Yolov1Output, a: assigner.Yolov1Assignment, won: Tensor, img: Tensor, anc: Tensor
) -> Positives:
    """One positive per winning GT (its responsible predictor), flagged when its IoU is 0, the
    responsible choice fell back to RMSE, or the predicted box has a negative side."""
    iou = a.responsible_iou[won].double()
    box_won = out.boxes[img, a.row[won], a.col[won], a.slot[won]]
    return Positives(
        image=img,
        anchor=anc,
        gt=won,
        iou=iou,
        align=iou,
        weight=torch.ones(len(won), dtype=torch.float64),
        flags={
            "zero_iou": iou <= 0,
            "rmse_fallback": a.rmse_fallback[won],
            "negative_wh": (box_won[:, 2:] < 0).any(-1),
        },
    )


def _raw_inputs(out: head.Yolov1Output) -> dict[str, Tensor]:
    """The raw outputs per predictor, for the non-finite locator."""
    bs = out.batch_size
    return {
        "box output (x, y, w, h, conf)": head.flatten_predictors(
            out.raw[..., : out.nb * 5].reshape(bs, *out.grid, out.nb, 5)
        ),
        "class score": head.per_cell_to_anchors(out.cls, out.nb),
    }


def _class_confidence(out: head.Yolov1Output) -> Tensor:
    """``(B, N, C)`` YOLOv1's test-time class-specific confidence conf·p(c), both clamped to [0, 1] first
    (raw outputs can leave that range); ranks the background predictors in the breakdown."""
    conf = head.flatten_predictors(out.conf.detach().clamp(0, 1).unsqueeze(-1))
    return conf * head.per_cell_to_anchors(out.cls.detach().clamp(0, 1), out.nb)


def _input_warnings(
    out: head.Yolov1Output, a: assigner.Yolov1Assignment, targets: Targets, won: Tensor, mode: str
) -> list[str]:
    warnings = []
    outside = ((targets.bboxes[:, :2] < 0) | (targets.bboxes[:, :2] > 1)).any(-1)
    if bool(outside.any()):
        warnings.append(
            f"{int(outside.sum())} GT centres lie outside the input; they were put in the nearest border "
            "cell "
            f"(first: GT row {int(outside.nonzero()[0])})"
        )
    if (targets.bboxes[:, 2:] < 0).any():
        warnings.append("some GT widths/heights are negative; their √ target uses 0")
    if mode == "plain" and len(won):
        box = out.boxes[targets.batch_idx[won], a.row[won], a.col[won], a.slot[won]]
        n_neg = int((box[:, 2:] < 0).any(-1).sum())
        if n_neg:
            warnings.append(
                f"wh_sqrt=plain: {n_neg} responsible predictors have a negative w or h, so coord is NaN"
            )
    return warnings


def _notes(out: head.Yolov1Output, p: dict, divisor: int) -> list[str]:
    sh, sw = out.grid
    root = {
        "signed": "sign(w)·√(|w| + ε)",
        "clamp": "√(max(w, 0) + ε)",
        "plain": "√(w + ε)",
        "direct": "the output itself (the head predicts √w, √h; ε unused)",
    }[p["wh_sqrt"]]
    return [
        f"grid {sh}x{sw}, {out.nb} predictors per cell, {out.nc} classes ({out.layout_note}); anchor "
        f"j·{sh * sw} + row·{sw} + col is predictor j of cell (row, col)",
        f"objective = coord + conf_obj + conf_noobj + cls, each summed over the batch and divided by "
        f"{divisor}" + (" (the batch size)" if p["normalize"] == "batch" else " (the paper's plain sum)"),
        f"predicted √w, √h taken as {root} with ε = {p['wh_eps']:g}; GT √w, √h plain",
        "conf_noobj is background: every predictor responsible for no GT, including the other predictors of "
        "an object's cell; cls is counted once per object cell, on its responsible predictor",
        "confidence target = "
        + ("IoU of the responsible predictor with its GT (detached)" if p["conf_target"] == "iou" else "1"),
        "darknet's detection_layer back-propagates ½ of this loss per image (its delta is scale·(target − "
        "output)); with normalize=batch its objective is this one / 2",
    ]
