"""Set up the core's Python from inside Blender: a virtual environment in the extension's user folder holding the
runtime requirements (requirements.txt), made by a cancellable background job that never leaves a half-made one.

Plain Python (bpy is imported lazily, only to ask Blender for the user folder): the preferences' Set up core
operator checks with `plan()`, starts a `SetupJob` and follows it on a timer; tests drive the same functions.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import CoreSetupError
from .interpreter import EXTENSION_ROOT

#: The core's wheels (torch 2.13.0, mediapipe 0.10.21) are built for this Python; Blender 4.1 to 5.0 bundle it.
REQUIRED_PYTHON = (3, 11)
#: The environment's folder inside the extension's user folder (bpy.utils.extension_path_user).
ENV_FOLDER = "core_env"
#: Written last, on success only: an environment without it is half-made (a crash mid-install) and is never used.
COMPLETE_MARK = "mimic-setup.json"
REQUIREMENTS = EXTENSION_ROOT / "requirements.txt"
#: Free space Set up core asks for: the environment (1.88 GB measured, requirements.txt on Linux x86-64) plus the
#: wheels pip holds while it installs them (0.48 GB), with a little margin.
NEEDED_BYTES = 2_500_000_000
#: Share of the progress bar at the start of each step; pip's resolving and downloading takes most of it.
STEP_START = {"venv": 0.0, "download": 0.05, "install": 0.75, "verify": 0.95}
STEP_LABEL = {"venv": "Creating the environment", "download": "Downloading", "install": "Installing packages",
              "verify": "Checking the core"}


def env_python(env: Path) -> Path:
    """The interpreter inside the virtual environment `env` (Windows: Scripts\\python.exe)."""
    return env / "Scripts" / "python.exe" if sys.platform == "win32" else env / "bin" / "python"


def extension_package() -> str | None:
    """The extension's root package (bl_ext.<repo>.mimic), or None when the add-on was loaded some other way."""
    root = (__package__ or "").rpartition(".")[0]
    return root if root.startswith("bl_ext.") and root.count(".") == 2 else None


def env_folder() -> Path | None:
    """Where Set up core puts the environment: `core_env` in the extension's user folder, which survives updates
    of the extension (Blender clears the extension's own folder when it updates it). None outside an extension."""
    package = extension_package()
    if package is None:
        return None
    try:
        import bpy

        folder = bpy.utils.extension_path_user(package, path=ENV_FOLDER)
    except (ImportError, ValueError):
        return None
    return Path(folder) if folder else None


def is_complete(env: Path) -> bool:
    """Whether `env` is an environment Set up core finished (its mark is written last)."""
    return (env / COMPLETE_MARK).is_file() and env_python(env).is_file()


def installed_python() -> Path | None:
    """The interpreter of the environment Set up core made, if it finished; else None."""
    env = env_folder()
    return env_python(env) if env is not None and is_complete(env) else None


def base_python() -> Path:
    """The Python to create the environment with: Blender's bundled Python (sys.executable in Blender 2.91+; as a
    module, the Python running bpy), else the python{X.Y} beside Blender's sys.prefix."""
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python") and exe.is_file():
        return exe
    major, minor = sys.version_info[:2]
    names = ("python.exe",) if sys.platform == "win32" else (f"python{major}.{minor}", f"python{major}", "python")
    for name in names:
        candidate = Path(sys.prefix) / "bin" / name
        if candidate.is_file():
            return candidate
    raise CoreSetupError(f"Cannot find Blender's Python (looked for {sys.executable} and {Path(sys.prefix) / 'bin'}). "
                         "Create the core's environment in a terminal (README, Set-up) and set it in Preferences > "
                         "Add-ons > Mimic > Python.")


def _clean_env() -> dict[str, str]:
    """The environment for the subprocesses: Blender's Python settings must not leak into them."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONUNBUFFERED="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def python_version(python: Path) -> tuple[int, int]:
    """(major, minor) of the interpreter `python`, by running it; CoreSetupError if it does not run."""
    try:
        proc = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, env=_clean_env(), stdin=subprocess.DEVNULL)
        major, minor = proc.stdout.strip().split(".")
        return int(major), int(minor)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        raise CoreSetupError(f"Cannot run {python} to create the core's environment ({exc}). Create it in a "
                             "terminal (README, Set-up) and set it in Preferences > Add-ons > Mimic > Python.") from exc


def check_python(python: Path) -> None:
    """Refuse a Python other than REQUIRED_PYTHON: the core's pinned wheels exist for that version only."""
    version = python_version(python)
    if version != REQUIRED_PYTHON:
        need = "%d.%d" % REQUIRED_PYTHON
        raise CoreSetupError(f"Set up core needs Python {need} (the core's packages, torch 2.13 and mediapipe 0.10.21, "
                             f"are built for it), but {python} is Python {version[0]}.{version[1]}. Create the "
                             f"environment in a terminal with python{need} (`python{need} -m venv DIR && DIR/bin/pip "
                             "install -r requirements.txt`) and set DIR's python in Preferences > Add-ons > Mimic > "
                             "Python.")


def check_network(online_access: bool, wheel_folder: Path | None) -> None:
    """Downloading needs Blender's online access; a local wheel folder needs none."""
    if wheel_folder is None and not online_access:
        raise CoreSetupError("Set up core downloads the core's packages (about 0.5 GB) from the internet, but online "
                             "access is off. Allow it in Preferences > System > Network > Allow Online Access, or set "
                             "a Wheel Folder holding the packages (pip download -r requirements.txt -d DIR).")
    if wheel_folder is not None and not wheel_folder.is_dir():
        raise CoreSetupError(f"The wheel folder {wheel_folder} does not exist. Choose the folder holding the core's "
                             "wheels in Preferences > Add-ons > Mimic, or clear it to download them.")


def check_disk(env: Path, needed: int = NEEDED_BYTES) -> None:
    """Refuse when the drive holding `env` has less than `needed` bytes free."""
    existing = env
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise CoreSetupError(f"Set up core needs about {needed / 1e9:.1f} GB free for the core's environment in "
                             f"{env.parent}, but only {free / 1e9:.1f} GB is free there. Free some space and press "
                             "Set up core again.")


@dataclass(frozen=True)
class SetupPlan:
    """What one setup does: `python` (3.11) creates the environment `env`, whose pip installs `requirements`
    (from `wheel_folder` only, when set)."""

    python: Path
    env: Path
    requirements: Path
    wheel_folder: Path | None = None

    def venv_command(self) -> list[str]:
        return [str(self.python), "-m", "venv", str(self.env)]

    def pip_command(self) -> list[str]:
        local = ["--no-index", "--find-links", str(self.wheel_folder)] if self.wheel_folder is not None else []
        return [str(env_python(self.env)), "-m", "pip", "install", "--progress-bar", "off", "--no-warn-script-location",
                *local, "-r", str(self.requirements)]

    def verify_command(self) -> list[str]:
        return [str(env_python(self.env)), "-m", "core", "--version"]


def plan(env: Path | None, online_access: bool, wheel_folder: str = "", python: str | Path | None = None,
         requirements: str | Path | None = None) -> SetupPlan:
    """Check everything a setup needs, cheapest first, and return its plan; CoreSetupError names the problem."""
    if env is None:
        raise CoreSetupError("Set up core works when Mimic is installed as an extension (Blender 4.2+). Otherwise "
                             "create the core's environment in a terminal (README, Set-up).")
    folder = Path(os.path.expanduser(wheel_folder)) if wheel_folder else None
    check_network(online_access, folder)
    reqs = Path(requirements) if requirements else REQUIREMENTS
    if not reqs.is_file():
        raise CoreSetupError(f"{reqs} is missing: reinstall the Mimic extension.")
    base = Path(python) if python else base_python()
    check_python(base)
    check_disk(env)
    return SetupPlan(base, env, reqs, folder)


def count_requirements(requirements: Path) -> int:
    """How many packages a requirements file names (following `-r` includes): pip's progress is counted in these."""
    count = 0
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            count += count_requirements(requirements.parent / line.split(None, 1)[1])
        elif line and not line.startswith("-"):
            count += 1
    return max(count, 1)


@dataclass
class SetupState:
    """What the job has done so far. step: venv, download, install, verify, then done/failed/cancelled;
    fraction 0..1; label: what it is doing now (the package pip is on); message: the outcome, once finished."""

    step: str = "starting"
    fraction: float = 0.0
    label: str = "Starting"
    collected: int = 0
    message: str = ""
    version: str = ""


def _package_of(text: str) -> str:
    """The package name in pip's 'Collecting torch==2.13.0 (from -r ...)' or a wheel path/URL."""
    word = text.split()[0] if text.split() else text
    name = word.rstrip("/").rsplit("/", 1)[-1]
    for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "[", ";", "@"):
        name = name.split(sep, 1)[0]
    return name.split("-", 1)[0] if name.endswith(".whl") else name


class SetupJob:
    """One setup in a worker thread: venv, pip install, `python -m core --version`, then the mark. start(), then
    poll() until False (or wait()), then result(). cancel() kills the running step; on any failure or cancel the
    environment folder is removed before the job ends."""

    def __init__(self, plan: SetupPlan) -> None:
        self.plan = plan
        self.state = SetupState()
        self.tail: deque[str] = deque(maxlen=30)
        self._total = count_requirements(plan.requirements)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._cancelled = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="mimic-setup-core", daemon=True)
        self.started_s = 0.0
        self.elapsed_s = 0.0

    def start(self) -> SetupJob:
        self.started_s = time.monotonic()
        self._thread.start()
        return self

    def poll(self) -> bool:
        """True while the job runs."""
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends (cancelling it after `timeout` s) and return result()."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.cancel()
        return self.result()

    def cancel(self) -> None:
        """Stop now: kill the running step (and its children), wait until the folder is removed."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is not None:
            _kill(proc)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def result(self) -> str:
        """The core's version line ("mimic 0.1.0") of a finished setup; raises CoreSetupError otherwise."""
        if self.poll():
            raise RuntimeError("SetupJob.result() before the job ended")
        if self.state.step != "done":
            raise CoreSetupError(self.state.message)
        return self.state.version

    # --- the worker thread -----------------------------------------------------------------------------------

    def _work(self) -> None:
        env = self.plan.env
        try:
            _remove(env)  # a half-made leftover of a crash, or the environment being set up again
            self._step("venv", self.plan.venv_command())
            self._step("download", self.plan.pip_command(), self._on_pip_line)
            lines = self._step("verify", self.plan.verify_command(), cwd=EXTENSION_ROOT)
            version = next((line for line in lines if line.startswith("mimic ")), "")
            if not version:
                raise CoreSetupError(f"The new environment cannot run the Mimic core ({self._last()}). Press Set up "
                                     "core again; if it fails again, report it with this message.")
            self._write_mark(version)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, nothing half-made is left behind
            removed = _remove(env)
            st = self.state
            if self._cancelled:
                st.step, st.label = "cancelled", "Cancelled"
                st.message = "Set up core was cancelled; nothing was left behind."
            else:
                st.step, st.label = "failed", "Failed"
                st.message = str(exc) if isinstance(exc, CoreSetupError) else f"Set up core failed: {exc!r}."
            if not removed:
                st.message += f" Could not remove {env}: delete it by hand."
        else:
            st = self.state
            st.step, st.fraction, st.version, st.label = "done", 1.0, version, "Done"
            st.message = f"{version} ({env_python(env)})"
        finally:
            self.elapsed_s = time.monotonic() - self.started_s
            with self._lock:
                self._proc = None

    def _step(self, step: str, argv: list[str], on_line: Callable[[str], None] | None = None,
              cwd: Path | None = None) -> list[str]:
        """Run one step's subprocess, feeding its output lines to `on_line`; raise CoreSetupError if it fails."""
        st = self.state
        st.step, st.fraction, st.label = step, max(st.fraction, STEP_START[step]), STEP_LABEL[step]
        kwargs: dict[str, object] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True  # its own process group: cancel() kills pip and what pip started
        with self._lock:
            if self._cancelled:
                raise CoreSetupError("cancelled")
            try:
                proc = subprocess.Popen(argv, cwd=cwd, env=_clean_env(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        encoding="utf-8", errors="replace", bufsize=1, **kwargs)
            except OSError as exc:
                raise CoreSetupError(f"Cannot run {argv[0]} ({exc.strerror}).") from exc
            self._proc = proc
        lines: list[str] = []
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                lines.append(line)
                self.tail.append(line)
                if on_line is not None:
                    on_line(line)
        code = proc.wait()
        with self._lock:
            self._proc = None
            if self._cancelled:
                raise CoreSetupError("cancelled")
        if code != 0:
            what = {"venv": "Creating the environment", "download": "Installing the core's packages",
                    "verify": "Running the core"}[step]
            raise CoreSetupError(f"{what} failed ({self._last()}). Check the network or the wheel folder and press "
                                 "Set up core again.")
        return lines

    def _on_pip_line(self, line: str) -> None:
        """pip's output as progress: each package collected moves the bar; 'Installing collected packages' starts
        the (silent, long) unpacking."""
        st = self.state
        text = line.strip()
        for prefix in ("Collecting ", "Processing ", "Requirement already satisfied: "):
            if text.startswith(prefix):
                st.collected += 1
                st.label = f"{STEP_LABEL['download']} {_package_of(text[len(prefix):])} " \
                           f"({min(st.collected, self._total)}/{self._total})"
                span = STEP_START["install"] - STEP_START["download"]
                st.fraction = max(st.fraction, STEP_START["download"] + span * min(st.collected / self._total, 1.0))
                return
        if text.startswith("Downloading "):
            size = text.rsplit("(", 1)[-1].rstrip(")") if text.endswith(")") else ""
            name = _package_of(text[len("Downloading "):])
            st.label = f"{STEP_LABEL['download']} {name}" + (f" ({size})" if size else "")
        elif text.startswith("Installing collected packages:"):
            count = len(text.split(":", 1)[1].split(","))
            st.step, st.fraction = "install", max(st.fraction, STEP_START["install"])
            st.label = f"{STEP_LABEL['install']}: unpacking {count} packages (torch takes a while)"

    def _last(self) -> str:
        """The most telling output line: pip's last ERROR line, else the last line."""
        errors = [line for line in self.tail if line.startswith("ERROR")]
        last = errors[-1] if errors else (self.tail[-1] if self.tail else "no output")
        return last.strip()[-300:]

    def _write_mark(self, version: str) -> None:
        """The mark that makes the environment usable, written atomically (temp file renamed)."""
        mark = self.plan.env / COMPLETE_MARK
        tmp = mark.with_name(mark.name + ".tmp")
        tmp.write_text(json.dumps({"core": version, "requirements": str(self.plan.requirements),
                                   "python": "%d.%d" % REQUIRED_PYTHON}), encoding="utf-8")
        os.replace(tmp, mark)


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill `proc` and its process group (pip's children too)."""
    if proc.poll() is not None:
        return
    try:
        if sys.platform == "win32":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, timeout=30)
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError, subprocess.TimeoutExpired):
        pass


def _remove(env: Path) -> bool:
    """Remove the environment folder (read-only files too); True if it is gone."""
    def retry(func, path, _exc) -> None:  # read-only files (Windows): make writable, try again
        os.chmod(path, 0o700)
        func(path)

    for _ in range(3):  # a killed process may hold a file for a moment (Windows)
        if not env.exists() and not env.is_symlink():
            return True
        try:
            if env.is_symlink() or env.is_file():
                env.unlink()
            else:
                shutil.rmtree(env, onerror=retry)
        except OSError:
            time.sleep(0.5)
    return not env.exists()


#: The setup in progress or last finished (the preferences show it); one at a time.
_ACTIVE: dict[str, SetupJob] = {}


def start(setup: SetupPlan) -> SetupJob:
    """Start a setup unless one is running."""
    job = active()
    if job is not None and job.poll():
        raise CoreSetupError("Set up core is already running; wait for it or press Cancel.")
    _ACTIVE["job"] = SetupJob(setup).start()
    return _ACTIVE["job"]


def active() -> SetupJob | None:
    """The setup in progress, or the last one finished (for its message)."""
    return _ACTIVE.get("job")


def running() -> SetupJob | None:
    job = active()
    return job if job is not None and job.poll() else None


@atexit.register
def cancel_all() -> None:
    """Stop a running setup and remove its folder (Blender quitting, the add-on being disabled)."""
    job = running()
    if job is not None:
        job.cancel()
