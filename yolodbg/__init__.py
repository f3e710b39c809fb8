"""yolodbg: replay YOLO-family training losses to the float and show where they come from.

The package imports nothing heavy at the top level, so ``yolodbg --help`` stays fast; torch
is imported by the modules that need it.
"""

__version__ = "0.1.0"
