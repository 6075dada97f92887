"""The extension zip, built and validated with Blender's own extension tool (docs/ADDON.md, packaging): it holds the
add-on, the core with its weights and the rig data, and no training code, tests, benches, media or environments."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("blender_manifest.toml", "__init__.py", "addon/__init__.py", "core/__main__.py", "core/weights/lifter_tcn.pt",
          "core/weights/finger_correction.json",
          "rigs/humanoid.json", "requirements.txt")  # requirements.txt: what Set up core installs
NEEDED_FOLDERS = ("addon/", "core/", "rigs/")
FORBIDDEN_FOLDERS = ("training/", "tests/", "bench/", "tools/", "sample_clips/", ".venv/")
FORBIDDEN_SUFFIXES = (".npz", ".mp4", ".bvh")
FORBIDDEN_FILES = ("requirements-dev.txt", "requirements-cluster.txt")  # development and clusters, not Blender


def ext_tool() -> Path:
    """blender_ext.py, the tool behind `blender --command extension`, as bundled with the bpy wheel."""
    spec = importlib.util.find_spec("bpy")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py")) if spec else []
    assert found, "Blender's extension tool is missing: install the bpy wheel into .venv (make setup)."
    return found[-1]


def build(source: Path, out: Path) -> Path:
    """Build the extension zip from `source` into `out` and validate it; returns the zip's path."""
    out.mkdir(parents=True, exist_ok=True)
    run = lambda *args: subprocess.run([sys.executable, str(ext_tool()), *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    proc = run("build", "--source-dir", str(source), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (zip_path,) = out.glob("mimic-*.zip")
    proc = run("validate", str(zip_path))
    assert proc.returncode == 0 and "Success" in proc.stdout, proc.stdout + proc.stderr
    return zip_path


def imports_training(source: str) -> bool:
    """Whether Python `source` imports the training package (or anything in it)."""
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        if any(n == "training" or n.startswith("training.") for n in names):
            return True
    return False


def problems(zip_path: Path) -> list[str]:
    """What is wrong with the zip's contents: missing runtime files, training code or other forbidden files, and
    runtime modules that import training code."""
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        sources = {n: zf.read(n).decode("utf-8") for n in names if n.endswith(".py")}
    found = [f"missing {n}" for n in NEEDED if n not in names]
    found += [f"no {d}" for d in NEEDED_FOLDERS if not any(n.startswith(d) for n in names)]
    found += [f"holds {n}" for n in names if n.startswith(FORBIDDEN_FOLDERS) or n.endswith(FORBIDDEN_SUFFIXES)
              or n in FORBIDDEN_FILES]
    found += [f"{n} imports training" for n, src in sources.items() if imports_training(src)]
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(ROOT, tmp_path_factory.mktemp("dist"))


def test_zip_holds_the_runtime_and_no_training_code(built: Path) -> None:
    assert problems(built) == []
    names = zipfile.ZipFile(built).namelist()
    assert sum(n.startswith("core/") and n.endswith(".py") for n in names) > 10  # the core really is in it
    assert zipfile.ZipFile(built).getinfo("core/weights/lifter_tcn.pt").file_size > 1_000_000


def test_check_catches_training_code_when_the_manifest_lets_it_in(tmp_path: Path) -> None:
    """The same build from a copy whose manifest no longer excludes /training/: the check must object."""
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("addon", "core", "rigs", "training"):
        shutil.copytree(ROOT / folder, src / folder, ignore=skip)
    shutil.copy(ROOT / "__init__.py", src / "__init__.py")
    manifest = (ROOT / "blender_manifest.toml").read_text(encoding="utf-8")
    assert '"/training/",' in manifest
    (src / "blender_manifest.toml").write_text(manifest.replace('"/training/",', ""), encoding="utf-8")
    found = problems(build(src, tmp_path / "dist"))
    assert "holds training/train.py" in found and "training/train.py imports training" in found


def test_import_check_sees_every_form_of_import() -> None:
    assert imports_training("import training.train")
    assert imports_training("from training.metrics import align")
    assert imports_training("def f():\n    from training import mocap")
    assert not imports_training("from core.lift import training_data\nimport trainingwheels\nfrom . import training")
