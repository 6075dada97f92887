"""The add-on's error types: one base, `MimicAddonError`, and one type per failure a user can act on.

`MimicAddonError` derives from the core's `MimicError`, so an operator catches every failure it can explain
(the core's, a bad motion file, the add-on's own) with one `except MimicError`; `str(err)` says what to do.
"""

from __future__ import annotations

from .common import errors

MimicError = errors.MimicError
BadMotionFile = errors.BadMotionFile


class MimicAddonError(MimicError):
    """Base of the add-on's own errors; the message is one line naming the problem and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class CoreError(MimicAddonError):
    """The core failed; `str()` is its one-line message (problem + fix)."""

    def __init__(self, message: str, kind: str = "CoreError", exit_code: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.exit_code = exit_code


class CoreCancelled(CoreError):
    """The user cancelled the conversion."""

    def __init__(self, message: str = "Cancelled; nothing was imported.") -> None:
        super().__init__(message, "Cancelled", 130)


class InterpreterError(MimicAddonError):
    """No usable Python for the core; the message says how to fix it."""


class CoreSetupError(MimicAddonError):
    """Set up core cannot run or failed (no network, too little disk space, wrong Python, pip's error)."""


class ExportError(MimicAddonError):
    """An export could not run; the message says why."""


class RetargetError(MimicAddonError):
    """Retargeting cannot run on this target (not an armature, NLA tweak mode, unusable bone map...)."""


class RigMapError(MimicAddonError):
    """The armature cannot be mapped onto the humanoid (required bones missing, or a bad bone map / preset)."""


class UnityCheckError(MimicAddonError):
    """An FBX breaks Unity Humanoid requirements; the message lists each problem and what to do."""
