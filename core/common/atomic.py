"""Write files atomically: into a temp file beside the target, then rename, so no half-written output is ever left.

Temp files are named `.<name>.<pid>.<random>.part<suffix>`: one left by a process that was killed outright
(SIGKILL, power loss) is recognised by its dead pid and swept the next time anything is written beside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputExists, OutputNotWritable

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.(?:part|probe)(?:\..*)?$")


def check_output(path: Path, overwrite: bool) -> None:
    """Fail early, before any work, if `path` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputNotWritable(f"Output {path} is a folder.", "Give a file name, e.g. -o "
                                f"{path / 'motion.bvh'}.")
    if path.exists() and not overwrite:
        raise OutputExists(f"Output {path} already exists.", "Pass --overwrite to replace it, or choose another path.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputNotWritable(f"Output folder {parent} does not exist.", "Create it or choose another output path.")
    try:  # os.access() says yes to root even on read-only mounts, so really try.
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".probe", dir=parent)
    except OSError:
        raise OutputNotWritable(f"Output folder {parent} is not writable.", "Choose a folder you can write to.") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it onto `path`, on any error (signals included) delete it.
    Orphans of killed processes beside `path` are swept first."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    sweep_orphans(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part" + path.suffix, dir=folder)
    except OSError as exc:
        raise OutputNotWritable(f"Cannot write into {folder}: {exc.strerror}.", "Choose a folder you can write to.") \
            from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sweep_orphans(folder: Path) -> list[Path]:
    """Delete the temp files in `folder` whose writing process is gone; returns what was removed."""
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _TEMP.match(entry.name)
            if match and entry.is_file(follow_symlinks=False) and not _alive(int(match["pid"])):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    """True while process `pid` exists (it may belong to another user). On Windows os.kill would end the process,
    so there every pid counts as alive and nothing is swept."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _umask() -> int:
    """The process's file-creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
