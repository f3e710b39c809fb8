"""The few exceptions yolodbg raises on purpose.

Every :class:`InputError` becomes a one-line message and exit code 2 in the CLI; a
:class:`CheckFailed` becomes exit code 1. Anything else is a bug and shows a traceback
only with ``--debug``.
"""

from __future__ import annotations


class YolodbgError(Exception):
    """Base class of the errors yolodbg raises on purpose."""

    exit_code = 2


class InputError(YolodbgError):
    """Bad input or usage: a message naming the file, the field and the fix (exit 2)."""


class BundleError(InputError):
    """A prediction bundle that cannot be read or does not match its head."""


class GroundTruthError(InputError):
    """Ground truth that cannot be read or does not fit the bundle."""


class RecipeError(InputError):
    """An unknown recipe, parameter or value."""


class CheckFailed(YolodbgError):
    """A check found a problem in the numbers (conservation violated, snapshot drift): exit 1."""

    exit_code = 1
