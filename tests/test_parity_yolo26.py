"""Live parity of ``yolo26`` with Ultralytics ``E2ELoss`` (skipped when ultralytics is not installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("ultralytics")

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import yolo26_cases as Y
from test_golden_yolo26 import check_case


@pytest.mark.parametrize("spec", Y.SPECS, ids=[s[0] for s in Y.SPECS])
@pytest.mark.parametrize("seed", [1, 2])
def test_live_e2e_parity(spec, seed):
    outputs, targets, crit = Y.outputs_and_targets(spec, seed=seed)
    for epoch in spec[-1]:
        case = {"name": f"{spec[0]}_s{seed}_e{epoch}", "epoch": epoch, "outputs": outputs, "targets": targets}
        case["expected"] = Y.expected(outputs, targets, crit, epoch)
        check_case(case)
