"""YOLO26 / end-to-end (``E2ELoss``) parity cases, shared by the golden generator and the live parity test.

Scenes and models come from ``cases.py`` (the yolov8 harness). Each case records what Ultralytics 8.4.190
computes: both branches' items, the weighted objective at the case's epoch, and both assignments.
Only torch and its torch-only neighbours (``cases.py``, ``harness.py``, ``ties.py``) are imported
at module level; the comparison imports yolodbg inside its functions.
"""

from __future__ import annotations

import random

import cases as V8
import harness
import ties
import torch

FORMAT = "yolodbg.golden.yolo26/1"
ULTRALYTICS_VERSION = "8.4.190"
# Terms of both branches and the objective: relative 1e-5 like the yolov8 harness (``cases.py`` says why);
# the branch weights of the epoch schedule are plain arithmetic: absolute 1e-12.
TERM_RTOL = 1e-5
WEIGHT_ATOL = 1e-12


# name, yaml, nc, (H, W), scenes per image, fit steps, epochs to record
SPECS = [
    ("yolo26_random_160", "yolo26n.yaml", 3, (160, 160), ["standard:3", "standard:2"], 0, (0,)),
    ("yolo26_fitted_224x320", "yolo26n.yaml", 3, (224, 320), ["standard:4", "crowd:8"], 30, (0, 1, 37, 99)),
    ("yolo26_tiny_and_empty", "yolo26n.yaml", 2, (256, 256), ["tiny", "", "huge+border"], 20, (0,)),
    ("yolo26_no_gt", "yolo26n.yaml", 2, (96, 160), ["", ""], 0, (5,)),
    ("yolov10_dfl_160", "yolov10n.yaml", 2, (160, 160), ["standard:3+anchor_edges"], 10, (0, 50)),
]


def outputs_and_targets(spec, seed: int = 0):
    """Run the real model (from yaml) on synthetic images; returns (outputs, targets, criterion)."""
    c = V8
    name, cfg, nc, (h, w), scenes, fit, _ = spec
    rng = random.Random(f"{name}:{seed}")
    per_image = [c.make_scene(s, rng, h, w, nc) for s in scenes]
    targets = c.targets_from_boxes(per_image, h, w)
    model = c.build_model(cfg, nc, seed)
    images = c.make_images(per_image, h, w, nc, seed)
    if fit:
        c.fit_model(model, images, targets, fit)
    model.train()
    with torch.no_grad():
        out = model(images)
    outputs = {k: c.strip_outputs(out[k]) for k in ("one2many", "one2one")}
    return outputs, targets, model.init_criterion()


def expected(outputs, targets, crit, epoch: int) -> dict:
    """Ultralytics' numbers for both branches after ``epoch`` completed epochs."""
    crit.updates = 0
    crit.o2m, crit.o2o = crit.o2m_copy, crit.total - crit.o2m_copy
    for _ in range(epoch):
        crit.update()
    with torch.no_grad():
        loss, items = crit(outputs, targets)
        branches = {}
        for key, sub in (("one2many", crit.one2many), ("one2one", crit.one2one)):
            feats = outputs[key]
            (fg, gt_idx, *_), _, br_items = sub.get_assigned_targets_and_loss(feats, targets)
            branches[key] = {
                "items": [float(v) for v in br_items.values()],
                "fg": fg.clone(),
                "gt_idx": torch.where(fg, gt_idx.long(), torch.full_like(gt_idx.long(), -1)),
            }
    return {
        "items": [float(v) for v in items.values()],
        "objective": float(loss.sum()),
        "weights": [float(crit.o2m), float(crit.o2o)],
        "branches": branches,
    }


# ---------------------------------------------------------------------------------------------------------------
# Replay and comparison (torch and yolodbg only)
# ---------------------------------------------------------------------------------------------------------------


def load_golden(path) -> dict:
    return harness.load_fixture(path, FORMAT)


def replay_case(case: dict):
    """(yolodbg's replay of a case, what each branch's task-aligned ``assign`` returned and was called with)."""
    from yolodbg.api import replay
    from yolodbg.recipes import ultralytics_loss

    with ties.capture(ultralytics_loss, "assign", with_args=True) as calls:
        r = replay(case["outputs"], case["targets"], recipe="yolo26", params={"epoch": case["epoch"]})
    return r, calls


def _branch_assignments(r) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(branch, fg, GT slot among the image's GTs per anchor, -1 on background), in the order assigned."""
    res, local = r.result, r.targets.local_index()
    out = []
    for key, fg, gt_rows in (
        ("one2many", res.fg, res.gt_of_anchor),
        ("one2one", res.extra_assignments["one2one"]["fg"], res.extra_assignments["one2one"]["gt_of_anchor"]),
    ):
        got_idx = torch.full_like(gt_rows, -1)
        got_idx[gt_rows >= 0] = local[gt_rows[gt_rows >= 0]]
        out.append((key, fg, got_idx))
    return out


def _branch_differences(key: str, fg, got_idx, want: dict, explain, out: ties.Comparison) -> None:
    """One branch's assignment against the expected one: every anchor whose GT (or background) differs
    must be explained by a near-tie of yolodbg's own assignment."""
    if not torch.equal(fg, got_idx >= 0):
        out.problems.append(f"{key}: fg and assigned GT disagree")
    want_idx = torch.where(want["fg"], want["gt_idx"], torch.full_like(want["gt_idx"], -1))
    for d in harness.assignment_differences(got_idx, want_idx, explain):
        line = f"{key}: img{d.image} anchor {d.anchor} got GT {d.got} want GT {d.want} (-1: background)"
        if d.tie:
            out.ties.append(f"{line}: near-tie, {d.tie}")
        else:
            out.problems.append(line)


def _values_differ(label: str, got: list[float], want: list[float], out: ties.Comparison) -> None:
    if len(got) != len(want) or any(
        harness.rel_err(g, w) > TERM_RTOL for g, w in zip(got, want, strict=False)
    ):
        out.problems.append(f"{label}: got {got} want {want} (rel {TERM_RTOL:g})")


def compare_detailed(r, calls: list, exp: dict) -> ties.Comparison:
    """Every difference between a yolo26 replay (with its captured assignments) and an expected record.

    Both branches' assignments exactly, except near-ties (step C top-k, step D argmax, step E second
    top-k); the epoch's branch weights; then, unless a near-tie changed an assignment (the terms follow
    the tie-broken one: nothing more to compare), both branches' terms, the objective and conservation.
    """
    from yolodbg import breakdown

    out = ties.Comparison()
    res = r.result
    names = list(res.terms)
    if not (names[:2] == ["box", "cls"] and names[2:3] in (["l1"], ["dfl"])):
        out.problems.append(f"terms {names}, want box, cls and l1 or dfl")
    branches = _branch_assignments(r)
    if len(calls) != len(branches):
        out.problems.append(f"{len(calls)} task-aligned assignments, want one per branch")
    for (assignment, args, _), (key, fg, got_idx) in zip(calls, branches, strict=False):
        tal = args[7]  # the TalParams of this branch
        explain = ties.tal_explains(assignment, tal.topk, tal.topk2)
        _branch_differences(key, fg, got_idx, exp["branches"][key], explain, out)
    weights = [res.normalizers["o2m_weight"], res.normalizers["o2o_weight"]]
    if len(weights) != len(exp["weights"]) or any(
        abs(g - w) > WEIGHT_ATOL for g, w in zip(weights, exp["weights"], strict=True)
    ):
        out.problems.append(f"branch weights: got {weights} want {exp['weights']}")
    if out.problems or out.ties:
        return out
    _values_differ("terms", list(res.terms.values()), exp["items"], out)
    o2m = [res.extra_terms[f"o2m.{k}"] for k in names]
    _values_differ("one2many terms", o2m, exp["branches"]["one2many"]["items"], out)
    _values_differ("objective", [r.objective], [exp["objective"]], out)
    out.problems += [f"conservation: {v}" for v in breakdown.build(res, r.targets).violations]
    return out
