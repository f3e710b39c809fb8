"""Write ``tests/golden/yolo26_cases.pt`` from the real Ultralytics 8.4.190 ``E2ELoss``.

Run from the repository root in an environment with ultralytics 8.4.190 (and torchvision); an optional
argument writes elsewhere:
    python tests/golden/make_golden_yolo26.py [OUT.pt]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance
import yolo26_cases as Y


def main() -> None:
    import ultralytics

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cases = []
    for spec in Y.SPECS:
        outputs, targets, crit = Y.outputs_and_targets(spec)
        for epoch in spec[-1]:
            cases.append(
                {
                    "name": f"{spec[0]}_e{epoch}",
                    "epoch": epoch,
                    "outputs": outputs,
                    "targets": targets,
                    "expected": Y.expected(outputs, targets, crit, epoch),
                }
            )
            print(cases[-1]["name"], cases[-1]["expected"]["items"], cases[-1]["expected"]["objective"])
    doc = {
        "format": Y.FORMAT,
        "ultralytics": ultralytics.__version__,
        **provenance.machine(),
        "cases": cases,
    }
    default = Path(__file__).resolve().parent / "yolo26_cases.pt"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    torch.save(doc, path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
