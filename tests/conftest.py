"""Shared fixtures: paths to the repo, the sample clips and the test rigs (fetched at set-up by tools/fetch_assets.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "sample_clips"
WALK_CLIP = SAMPLES / "sports2d_walk.mp4"
BALANCE_CLIP = SAMPLES / "pose2sim_balance.mp4"
MPFB2_RIGS = ROOT / ".cache" / "rigs" / "mpfb2"


class Recorder:
    """A Reporter that remembers what it was told."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, int]] = []
        self.frames: list[int] = []

    def stage(self, name: str, total: int) -> None:
        self.stages.append((name, total))

    def update(self, frame: int) -> None:
        self.frames.append(frame)

    def warn(self, message: str) -> None: ...
    def done(self, **result: Any) -> None: ...
    def error(self, payload: dict[str, Any]) -> None: ...


class LayoutRecorder:
    """Stands in for a Blender UILayout: records what a panel or the preferences draw, as (method, args, kwargs)."""

    def __init__(self, calls: list) -> None:
        self.calls = calls

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> LayoutRecorder:
            self.calls.append((name, args, kwargs))
            return LayoutRecorder(self.calls)
        return call


def _raise(exc: BaseException) -> None:
    raise exc


def enable_extension(repo_dir: Path, repo_module: str) -> Any:
    """Blender (bpy) from an empty file with this checkout enabled as a real extension, from a local repository
    `repo_module` in `repo_dir` (a link to the checkout); returns the enabled module."""
    import addon_utils
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    link = repo_dir / "mimic"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    repos = bpy.context.preferences.extensions.repos
    if repo_module not in {r.module for r in repos}:
        repos.new(name=repo_module, module=repo_module, custom_directory=str(repo_dir), source="USER")
    module = addon_utils.enable(f"bl_ext.{repo_module}.mimic", default_set=True, handle_error=_raise)
    assert module is not None
    return module


def disable_extension(repo_module: str) -> None:
    import addon_utils

    addon_utils.disable(f"bl_ext.{repo_module}.mimic", default_set=True, handle_error=_raise)


@contextlib.contextmanager
def enabled_extension(repo_dir: Path, repo_module: str) -> Iterator[Any]:
    """`enable_extension` for the length of a with block, disabled afterwards."""
    module = enable_extension(repo_dir, repo_module)
    try:
        yield module
    finally:
        disable_extension(repo_module)


def blank_video(path: Path, frames: int, value: int = 0) -> Path:
    """A 320×240, 30 fps MP4 of `frames` uniform frames (grey level `value`): a video with nobody in it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (320, 240))
    for _ in range(frames):
        writer.write(np.full((240, 320, 3), value, np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def walk_clip() -> Path:
    assert WALK_CLIP.is_file(), "sample clips missing: run `make setup` (tools/fetch_assets.py)"
    return WALK_CLIP


@pytest.fixture(scope="session")
def balance_clip() -> Path:
    assert BALANCE_CLIP.is_file(), "sample clips missing: run `make setup` (tools/fetch_assets.py)"
    return BALANCE_CLIP


@pytest.fixture(scope="session")
def sample_motion(tmp_path_factory: pytest.TempPathFactory, walk_clip: Path) -> Path:
    """The first 2 s of the sample clip converted by the CLI into a motion file (for checks of other formats)."""
    out = tmp_path_factory.mktemp("sample") / "walk.npz"
    proc = subprocess.run([sys.executable, "-m", "core", str(walk_clip), "-o", str(out), "--end", "2",
                           "--progress", "none"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def mpfb2_rigs() -> Path:
    assert MPFB2_RIGS.is_dir(), "test rigs missing: run `make setup` (tools/fetch_assets.py)"
    return MPFB2_RIGS


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session gets its own detection cache, so tests never see a developer's cache."""
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mimic-cache"))
