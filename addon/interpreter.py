"""Find and check the external Python that runs the Mimic core (Blender's own Python never gets pip installs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from .errors import InterpreterError

#: The extension (repository) root: the folder holding core/, rigs/ and addon/; the core runs with this cwd.
EXTENSION_ROOT = Path(__file__).resolve().parent.parent
#: Environment variable that names the interpreter when no preference is set (batch runs, CI).
PYTHON_ENV = "MIMIC_PYTHON"

FIX_IT = (f"Press Set up core in Preferences > Add-ons > Mimic, or create it in a terminal with `python3.11 -m venv "
          f".venv && .venv/bin/pip install -r requirements.txt` in {EXTENSION_ROOT}, or set the path there.")


def venv_python(root: Path = EXTENSION_ROOT) -> Path:
    """Where the repository's virtual environment keeps its interpreter."""
    if sys.platform == "win32":
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"


def auto_python(root: Path = EXTENSION_ROOT) -> Path:
    """The interpreter used when none is named: the environment Set up core made, else the repo's .venv."""
    from .setup_core import installed_python

    return installed_python() or venv_python(root)


def find_python(preferred: str = "", root: Path = EXTENSION_ROOT) -> Path:
    """The interpreter to run the core: `preferred` if set, else $MIMIC_PYTHON, else the environment Set up core
    made (setup_core.py), else the repo's .venv."""
    for candidate, origin in ((preferred, "The Python set in the add-on preferences"),
                              (os.environ.get(PYTHON_ENV, ""), f"${PYTHON_ENV}")):
        if candidate:
            path = Path(os.path.expanduser(candidate))
            if not path.is_file():
                raise InterpreterError(f"{origin} ({path}) does not exist. {FIX_IT}")
            return path
    path = auto_python(root)
    if path.is_file():
        return path
    raise InterpreterError(f"No Python for the Mimic core: {path} does not exist. {FIX_IT}")


def core_version(python: Path, root: Path = EXTENSION_ROOT, timeout: float = 120.0) -> str:
    """Run `python -m core --version` in `root`; returns e.g. "mimic 0.1.0" or raises InterpreterError."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    try:
        proc = subprocess.run([str(python), "-m", "core", "--version"], cwd=root, env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InterpreterError(f"Cannot run {python}: {exc}. {FIX_IT}") from exc
    out = (proc.stdout or proc.stderr).strip()
    if proc.returncode != 0 or not out.startswith("mimic "):
        last = out.splitlines()[-1] if out else f"exit code {proc.returncode}"
        raise InterpreterError(f"{python} cannot run the Mimic core ({last}). {FIX_IT}")
    return out
