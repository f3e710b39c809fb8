"""Toy jobs for the executor protocol (``test_scan_executor``): they know nothing about bundles.

In a module of their own that imports only the standard library, so a spawned pool worker that
unpickles them starts quickly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_set_up = False  # set by setup_worker in the process it runs in


@dataclass(frozen=True)
class Square:
    """An int to (the int, its square, the process that computed it, whether that process was set up)."""

    def run(self, item: int) -> tuple[int, int, int, bool]:
        return item, item * item, os.getpid(), _set_up

    def setup_worker(self) -> None:
        global _set_up
        _set_up = True

    def lost(self, item: int, message: str) -> tuple[int, str, int]:
        return item, message, -1


@dataclass(frozen=True)
class Echo(Square):
    """Over the fake Ray's (seq, path) items: each item back, with the process."""

    def run(self, item: tuple[int, str]) -> tuple[tuple[int, str], str, int, bool]:
        return item, "ok", os.getpid(), _set_up
