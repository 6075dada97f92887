"""Write files atomically: into a temp file beside the target, then rename, so no half-written output is ever left."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.common.errors import OutputExists, OutputNotWritable


def check_output(path: Path, overwrite: bool) -> None:
    """Fail early, before any work, if `path` cannot be written."""
    if path.exists() and not overwrite:
        raise OutputExists(f"Output {path} already exists.", "Pass --overwrite to replace it, or choose another path.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputNotWritable(f"Output folder {parent} does not exist.", "Create it or choose another output path.")
    try:  # os.access() says yes to root even on read-only mounts, so really try.
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError:
        raise OutputNotWritable(f"Output folder {parent} is not writable.", "Choose a folder you can write to.") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it onto `path`, on any error delete it."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent or ".")
    except OSError as exc:
        raise OutputNotWritable(f"Cannot write into {path.parent}: {exc.strerror}.", "Choose a folder you can write to.") from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's file-creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
