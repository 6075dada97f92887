"""One exception type per failure the user can act on; each carries a fix-it hint and an exit code."""

from __future__ import annotations


class MimicError(Exception):
    """Base of every error Mimic reports to a user: `str(err)` is one line naming the problem and the fix."""

    exit_code: int = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip())

    def to_json(self) -> dict[str, object]:
        """The `error` object of the JSON-lines protocol."""
        return {"type": type(self).__name__, "message": str(self), "exit_code": self.exit_code}


class InputNotFound(MimicError):
    exit_code = 3


class NotAVideo(MimicError):
    exit_code = 4


class EmptyClip(MimicError):
    exit_code = 5


class BadRange(MimicError):
    exit_code = 6


class NoPersonFound(MimicError):
    exit_code = 7


class OutputExists(MimicError):
    exit_code = 8


class OutputNotWritable(MimicError):
    exit_code = 9


class UnsupportedOutput(MimicError):
    exit_code = 13


class BadMotionFile(MimicError):
    exit_code = 10


class BadBvhFile(MimicError):
    exit_code = 11


class WeightsMissing(MimicError):
    exit_code = 12


class DamagedVideo(MimicError):
    """The video decodes only in part (truncated, damaged) or its timestamps do not advance."""

    exit_code = 14


class BadRigData(MimicError):
    """A rig definition in rigs/ (or a weights file's layout) is missing or malformed."""

    exit_code = 15


class BackendUnavailable(MimicError):
    """What a batch runs on is missing: Ray not installed, a Ray cluster unreachable, no worker that can start
    (no Python with bpy for Blender-side formats, a broken environment)."""

    exit_code = 16


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal (SIGINT, SIGTERM, SIGHUP) or because the parent process went away; exit 128 + signal.
    A KeyboardInterrupt, not a MimicError, so that no `except MimicError` or `except Exception` swallows it."""

    def __init__(self, problem: str, fix: str = "", signum: int = 2) -> None:
        super().__init__(f"{problem} {fix}".strip())
        self.problem = problem
        self.fix = fix
        self.signum = signum
        self.exit_code = 128 + signum

    def to_json(self) -> dict[str, object]:
        """The `error` object of the JSON-lines protocol."""
        return {"type": type(self).__name__, "message": str(self), "exit_code": self.exit_code}
