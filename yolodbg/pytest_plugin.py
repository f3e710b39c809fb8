"""pytest plugin (entry point ``pytest11``): adds ``--update-loss-snapshots``.

Imports nothing heavy: it only records the option for :mod:`yolodbg.testing`.
"""

from __future__ import annotations

update_requested = False


def pytest_addoption(parser):
    parser.getgroup("yolodbg").addoption(
        "--update-loss-snapshots",
        action="store_true",
        default=False,
        help="rewrite yolodbg loss snapshots instead of comparing (yolodbg.testing.assert_loss_snapshot)",
    )


def pytest_configure(config):
    global update_requested
    update_requested = bool(config.getoption("--update-loss-snapshots", default=False))
