"""Time the commands that compute nothing: the recipe catalogue, help, version, usage errors.

    python benchmarks/bench_startup.py [--runs 7]

Each command runs as ``python -m yolodbg ...`` in a fresh process (what a user types), ``--runs``
times; the median wall time is printed in seconds, with its ratio to ``python -c "import torch"``
measured the same way (what every command paid when the recipe modules imported torch). The
target is under 0.5 s per command. ``tests/test_startup.py`` checks, without timing, that none of
these commands imports torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5

COMMANDS = {
    "yolodbg recipes": ["-m", "yolodbg", "recipes"],
    "yolodbg recipes yolov8": ["-m", "yolodbg", "recipes", "yolov8"],
    "yolodbg recipes yolov9 (unknown)": ["-m", "yolodbg", "recipes", "yolov9"],
    "yolodbg --help": ["-m", "yolodbg", "--help"],
    "yolodbg --version": ["-m", "yolodbg", "--version"],
    "yolodbg explain --help": ["-m", "yolodbg", "explain", "--help"],
    "yolodbg explain --head yolov9 (unknown head)": ["-m", "yolodbg", "explain", "x.pt", "--head", "yolov9"],
    "yolodbg explain --imgsz abc (bad size)": ["-m", "yolodbg", "explain", "x.pt", "--imgsz", "abc"],
    "yolodbg explain (missing argument)": ["-m", "yolodbg", "explain"],
    "yolodbg explain --bogus (unknown option)": ["-m", "yolodbg", "explain", "--bogus"],
}
BASELINES = {
    "python (empty)": ["-c", "pass"],
    'python -c "import torch"': ["-c", "import torch"],
}


def median_seconds(args: list[str], runs: int) -> float:
    """Median wall time of ``python ARGS`` in a fresh process (output discarded, exit code ignored)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's yolodbg
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="runs per command (the median is reported)")
    args = ap.parse_args()
    base = {name: median_seconds(a, args.runs) for name, a in BASELINES.items()}
    torch_s = base['python -c "import torch"']
    width = max(map(len, [*COMMANDS, *BASELINES]))
    print(f"median of {args.runs} runs, seconds; ratio = time / (python -c 'import torch')")
    for name, seconds in base.items():
        print(f"{name:<{width}}  {seconds:6.3f} s  ratio {seconds / torch_s:5.2f}")
    worst = 0.0
    for name, a in COMMANDS.items():
        seconds = median_seconds(a, args.runs)
        worst = max(worst, seconds)
        flag = "" if seconds < TARGET_S else f"  (over {TARGET_S} s)"
        print(f"{name:<{width}}  {seconds:6.3f} s  ratio {seconds / torch_s:5.2f}{flag}")
    print(f"slowest command: {worst:.3f} s (target < {TARGET_S} s)")


if __name__ == "__main__":
    main()
