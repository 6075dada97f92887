"""Set up core (addon/setup_core.py) in real Blender (bpy 5.0.1) with the extension enabled: the environment is made in
a throwaway user folder ($BLENDER_USER_EXTENSIONS) from a local wheel folder, so no test needs the network or installs
torch. The wheel is built here by hand; it carries a .pth naming the development .venv's site-packages, which is
how `python -m core --version` finds numpy and scipy in the new environment (the one fake: the real requirements.txt
is what the button installs, measured separately, see docs/ADDON.md)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from conftest import LayoutRecorder  # noqa: E402
from test_addon import ADDON, REPO_MODULE, disable_extension, enable_extension, submodule  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FAKE = "mimic_fake_core"


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel `name`-`version` holding `files` (path in site-packages -> text), written by hand."""
    dist = f"{name}-{version}.dist-info"
    files = {**files, f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: mimic-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie waiting for a parent to reap it has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel folder with the fake core package and a requirements file naming it (requirements.txt's stand-in)."""
    folder = tmp_path_factory.mktemp("wheels")
    make_wheel(folder, FAKE, "1.0", {f"{FAKE}/__init__.py": "VERSION = '1.0'\n",
                                     f"{FAKE}.pth": sysconfig.get_paths()["purelib"] + "\n"})
    (folder / "requirements.txt").write_text(f"# test stand-in for requirements.txt\n{FAKE}==1.0\n")
    return folder


@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory):
    module = enable_extension(tmp_path_factory.mktemp("extensions"))
    yield module
    disable_extension()


@pytest.fixture
def sc(ext):
    """The enabled extension's own setup_core module."""
    return submodule(ext, "setup_core")


@pytest.fixture
def prefs(ext):
    prefs = bpy.context.preferences.addons[ADDON].preferences
    yield prefs
    prefs.wheel_folder = prefs.python_path = prefs.check_message = ""


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Blender's user extension folder, moved to a throwaway folder (Blender reads the variable on each call)."""
    folder = tmp_path / "user-extensions"
    monkeypatch.setenv("BLENDER_USER_EXTENSIONS", str(folder))
    monkeypatch.delenv("MIMIC_PYTHON", raising=False)
    return folder


def test_the_environment_lives_in_the_extension_user_folder(sc, user_folder: Path) -> None:
    assert sc.env_folder() == user_folder / ".user" / REPO_MODULE / "mimic" / "core_env"
    assert sc.installed_python() is None
    assert sc.base_python() == Path(sys.executable) and sc.python_version(Path(sys.executable)) == (3, 11)
    setup = sc.plan(sc.env_folder(), online_access=True)  # the real thing: the runtime file, from PyPI
    assert setup.requirements == ROOT / "requirements.txt" and setup.wheel_folder is None
    assert setup.pip_command()[1:] == ["-m", "pip", "install", "--progress-bar", "off", "--no-warn-script-location",
                                       "-r", str(ROOT / "requirements.txt")]
    # -r lines are followed: the runtime, + Ray and its 12 dependencies (cluster), + bpy, pytest and their 5 (dev)
    runtime = sc.count_requirements(ROOT / "requirements.txt")
    assert sc.count_requirements(ROOT / "requirements-cluster.txt") == runtime + 13
    assert sc.count_requirements(ROOT / "requirements-dev.txt") == runtime + 13 + 7
    assert not (user_folder / ".user").exists()  # planning creates nothing


def test_set_up_core_from_a_wheel_folder_then_lookup_and_check(ext, sc, prefs, wheels: Path,
                                                               user_folder: Path) -> None:
    prefs.wheel_folder = str(wheels)
    assert not bpy.app.online_access  # the wheel folder alone is enough
    assert bpy.ops.mimic.setup_core(requirements=str(wheels / "requirements.txt")) == {"FINISHED"}
    env = sc.env_folder()
    python = sc.env_python(env)
    job = sc.active()
    assert job.state.step == "done" and job.state.fraction == 1.0 and job.state.collected == 1
    assert sc.is_complete(env) and sc.installed_python() == python
    proc = subprocess.run([str(python), "-c", f"import sys, {FAKE}; print(sys.prefix, sys.version_info[:2])"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == [str(env), "(3,", "11)"], proc.stderr
    assert not proc.stderr
    print(f"set up in {job.elapsed_s:.1f} s")

    interpreter = submodule(ext, "interpreter")
    assert interpreter.find_python() == python  # found with no preference set
    prefs.check_message = ""
    assert bpy.ops.mimic.check_core() == {"FINISHED"}
    assert prefs.check_message == f"mimic 0.1.0 ({python})"

    assert bpy.ops.mimic.setup_core(requirements=str(wheels / "requirements.txt")) == {"FINISHED"}  # again: anew
    assert sc.installed_python() == python


def test_no_network_is_refused_with_how_to_allow_it(sc, prefs, user_folder: Path) -> None:
    assert not bpy.app.online_access
    with pytest.raises(RuntimeError, match=r"online access is off.*Preferences > System.*Wheel Folder"):
        bpy.ops.mimic.setup_core()
    assert "Allow Online Access" in prefs.check_message
    prefs.wheel_folder = str(user_folder / "nowhere")
    with pytest.raises(RuntimeError, match="wheel folder .* does not exist"):
        bpy.ops.mimic.setup_core()
    assert not user_folder.exists()


def test_too_little_disk_space_is_refused(sc, prefs, wheels: Path, user_folder: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    prefs.wheel_folder = str(wheels)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 10**8, 10**8))
    with pytest.raises(RuntimeError, match=r"needs about 2\.5 GB free .* only 0\.1 GB is free"):
        bpy.ops.mimic.setup_core(requirements=str(wheels / "requirements.txt"))
    assert not user_folder.exists()


def test_a_python_other_than_3_11_is_refused(sc, prefs, wheels: Path, user_folder: Path, tmp_path: Path) -> None:
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    prefs.wheel_folder = str(wheels)
    with pytest.raises(RuntimeError, match=r"needs Python 3\.11 .* is Python 3\.9"):
        bpy.ops.mimic.setup_core(requirements=str(wheels / "requirements.txt"), python=str(fake))
    assert not user_folder.exists()


def test_a_failing_pip_leaves_nothing(sc, prefs, wheels: Path, user_folder: Path, tmp_path: Path) -> None:
    missing = tmp_path / "requirements.txt"
    missing.write_text("mimic-not-in-the-wheel-folder==9.9\n")
    prefs.wheel_folder = str(wheels)
    with pytest.raises(RuntimeError, match="Installing the core's packages failed .*ERROR: .*mimic-not-in-the-wheel"):
        bpy.ops.mimic.setup_core(requirements=str(missing))
    assert not sc.env_folder().exists() and sc.installed_python() is None


def test_cancel_mid_install_kills_pip_and_leaves_no_folder(ext, sc, prefs, wheels: Path, user_folder: Path,
                                                           tmp_path: Path) -> None:
    """pip is building a local project whose build backend hangs (in pip's child process): Cancel kills both and
    removes the environment."""
    project = tmp_path / "slowpkg"
    project.mkdir()
    started = tmp_path / "backend.pid"
    (project / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "slow_backend"\n'
                                            'backend-path = ["."]\n[project]\nname = "slowpkg"\nversion = "1"\n')
    (project / "slow_backend.py").write_text(
        f"import os, time\n"
        f"def get_requires_for_build_wheel(config_settings=None):\n"
        f"    open({str(started)!r}, 'w').write(str(os.getpid()))\n"
        f"    time.sleep(600)\n    return []\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{project}\n")
    job = sc.start(sc.plan(sc.env_folder(), False, str(wheels), requirements=requirements))
    assert not bpy.ops.mimic.setup_core.poll()  # one at a time
    deadline = time.monotonic() + 120
    while not started.is_file() or not started.read_text():
        assert job.poll() and time.monotonic() < deadline, list(job.tail)
        time.sleep(0.05)
    env = sc.env_folder()
    assert sc.env_python(env).is_file() and job.state.step == "download" and "slowpkg" in job.state.label
    assert bpy.ops.mimic.cancel_setup_core() == {"FINISHED"}
    assert not job.poll() and job.state.step == "cancelled"
    assert not env.exists() and sc.installed_python() is None
    assert not alive(int(started.read_text()))  # pip's child (the build backend) is gone too
    with pytest.raises(submodule(ext, "errors").CoreSetupError, match="cancelled; nothing was left"):
        job.result()
    assert bpy.ops.mimic.setup_core.poll()


def test_pip_lines_become_progress(sc, tmp_path: Path) -> None:
    """pip's own lines (as pip 23 prints them) move the bar and name the package."""
    requirements = tmp_path / "r.txt"
    requirements.write_text("torch==2.13.0\nnumpy==1.26.4\n# comment\n")
    job = sc.SetupJob(sc.SetupPlan(Path(sys.executable), tmp_path / "env", requirements))
    seen = []
    for line in ("Collecting torch==2.13.0 (from -r r.txt (line 1))",
                 "  Downloading torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl (191.8 MB)",
                 "Collecting numpy==1.26.4 (from -r r.txt (line 2))",
                 "Installing collected packages: numpy, torch"):
        job._on_pip_line(line)
        seen.append((job.state.fraction, job.state.label))
    assert seen[0][1] == "Downloading torch (1/2)"
    assert seen[1][1] == "Downloading torch (191.8 MB)"
    assert seen[2][1] == "Downloading numpy (2/2)" and seen[2][0] == pytest.approx(0.75)
    assert job.state.step == "install" and "2 packages" in seen[3][1]
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


def test_preferences_draw_the_button_or_the_progress(ext, sc, prefs, user_folder: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    draw = type(prefs).draw
    calls: list = []
    draw(type("P", (), {"layout": LayoutRecorder(calls), "python_path": "", "check_message": ""})(), bpy.context)
    assert ("operator", ("mimic.setup_core",), {"icon": "IMPORT", "text": "Set up Core"}) in calls
    assert any(c[0] == "prop" and c[1][1] == "wheel_folder" for c in calls)

    running = type("Job", (), {"state": sc.SetupState(step="download", fraction=0.4, label="Downloading torch")})()
    monkeypatch.setattr(sc, "running", lambda: running)
    calls.clear()
    draw(type("P", (), {"layout": LayoutRecorder(calls), "python_path": "", "check_message": ""})(), bpy.context)
    assert ("progress", (), {"factor": 0.4, "type": "BAR", "text": "Downloading torch"}) in calls
    assert any(c[0] == "operator" and c[1] == ("mimic.cancel_setup_core",) for c in calls)
    assert not any(c[0] == "operator" and c[1] == ("mimic.setup_core",) for c in calls)
