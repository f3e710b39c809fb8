"""Where a fixture's numbers were computed: the torch version and the CPU kernels ATen picked.

Float results of reductions (sums, matrix products, softmax) depend on the kernel ATen dispatches to
(``torch.backends.cpu.get_cpu_capability()``: ``AVX512``, ``AVX2``, ``DEFAULT``, ...; forced with the
``ATEN_CPU_CAPABILITY`` environment variable), so the generators record it next to the torch version and
every golden failure message prints it for the fixture and for the machine running the test.
"""

from __future__ import annotations

import torch

UNKNOWN = "unknown (made before this field existed)"


def machine() -> dict[str, str]:
    """The running process: torch version and the CPU capability ATen dispatches to."""
    return {"torch": str(torch.__version__), "cpu_capability": str(torch.backends.cpu.get_cpu_capability())}


def of_fixture(meta: dict) -> dict[str, str]:
    """The same two fields from a fixture's metadata (``versions`` dict or the document itself)."""
    return {
        "torch": str(meta.get("torch", "unknown")),
        "cpu_capability": str(meta.get("cpu_capability", UNKNOWN)),
    }


def describe(meta: dict) -> str:
    """One line for failure messages: fixture vs this machine."""
    fx, me = of_fixture(meta), machine()
    return (
        f"fixture made with torch {fx['torch']}, CPU capability {fx['cpu_capability']}; "
        f"this run: torch {me['torch']}, CPU capability {me['cpu_capability']}"
    )
