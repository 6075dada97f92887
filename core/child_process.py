"""A child Python process that takes half of a job and hands its arrays back as an .npz on stdout: the plumbing
shared by core/detect_split.py and core/hands_face_split.py.

A fresh interpreter (`python -m MODULE`), not multiprocessing, which re-runs a caller's unguarded script; in its own
session, so a Ctrl-C at the terminal stops only the parent, which then ends the child (`end`).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

TIMEOUT_S = 1800.0  # the longest the parent waits for the child once its own half is done


def start(module: str, args: list[str], cwd: Path, stdin: bool = False) -> subprocess.Popen[bytes]:
    """`python -m module *args` in `cwd`, stdout piped (and stdin, if asked), stderr discarded."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE if stdin else None, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def receive(child: subprocess.Popen[bytes], names: tuple[str, ...], timeout: float = TIMEOUT_S
            ) -> dict[str, np.ndarray] | None:
    """The arrays `names` (those present) of the .npz the child wrote, once it has exited 0; None if it failed."""
    assert child.stdout is not None
    try:
        data = child.stdout.read()
        if child.wait(timeout=timeout) != 0 or not data:
            return None
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in names if name in npz.files}
    except (OSError, ValueError, KeyError, EOFError, subprocess.TimeoutExpired):
        return None


def send(stream: Any, **arrays: Any) -> None:
    """The child's answer: `arrays` as an .npz on `stream` (its stdout's buffer)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    stream.write(buffer.getvalue())
    stream.flush()


def end(child: subprocess.Popen[bytes]) -> None:
    """Stop the child if it still runs, reap it and close its pipes."""
    if child.poll() is None:
        child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
