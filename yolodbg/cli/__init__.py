"""The ``yolodbg`` command line: parse options, call the library, render. No loss math here.

``group`` holds the group (:data:`main`) and the error-to-exit-code handling, ``options`` what
every command spells the same way (a leaf module), and each other module one command (``scan``
and ``snapshot`` two related ones). The commands import only ``options`` and the library, never
each other; they are added to the group here. Heavy imports (torch, pycocotools) happen inside
the commands, so ``yolodbg --help`` is fast.
"""

from __future__ import annotations

from yolodbg.cli import audit, capture, compare, explain, recipes, scan, snapshot, validate
from yolodbg.cli.group import main

COMMANDS = (
    explain.explain,
    recipes.recipes,
    compare.compare,
    snapshot.snapshot,
    snapshot.check,
    scan.scan,
    scan.trend,
    capture.capture,
    validate.validate,
    audit.audit,
)

for command in COMMANDS:
    main.add_command(command)

__all__ = ["COMMANDS", "main"]
