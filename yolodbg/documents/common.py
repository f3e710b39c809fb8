"""What every yolodbg.* document records of the software that made it."""

from __future__ import annotations

import platform

from yolodbg import __version__


def versions() -> dict[str, str]:
    """``versions``: yolodbg, torch and Python, as the explain, compare, scan and trend documents record."""
    import torch

    return {"yolodbg": __version__, "torch": torch.__version__, "python": platform.python_version()}
