"""Headless batch (addon/batch.py) through the bpy module: real core subprocesses, real Blender exporters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.bvh import read_bvh
from core.common.motionfile import load_motion
from conftest import blank_video

ROOT = Path(__file__).resolve().parent.parent
RANGE = ("--start", "2.0", "--end", "2.5")  # half a second of the walking clip: quick, and people are in view


def run_batch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MIMIC_PYTHON"}
    return subprocess.run([sys.executable, "-m", "addon.batch", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, walk_clip: Path) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    (folder / "walk.mp4").symlink_to(walk_clip)
    blank_video(folder / "nobody.mp4", 90)  # 3 s: long enough for the range, nobody in it
    (folder / "notes.txt").write_text("not a clip")
    return folder


@pytest.fixture(scope="module")
def first_run(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("out")
    return run_batch("--input", str(clips), "--output", str(out), "--format", "bvh,fbx,npz", "--jobs", "2", *RANGE), out


def test_batch_converts_good_clip_reports_bad_one_and_fails(first_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = first_run
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["walk.bvh", "walk.fbx", "walk.npz"]
    table = proc.stdout[proc.stdout.index("clip "):]
    header, _, *rows = table.splitlines()
    assert header.split()[:5] == ["clip", "frames", "seconds", "outputs", "status"]
    walk = next(r for r in rows if r.startswith("walk.mp4"))
    nobody = next(r for r in rows if r.startswith("nobody.mp4"))
    motion = load_motion(out / "walk.npz")
    assert walk.split()[1] == str(motion.num_frames)
    assert "walk.bvh, walk.fbx, walk.npz" in walk and walk.rstrip().endswith("ok")
    assert "failed" in nobody and "person" in nobody.lower()
    assert "1 of 2 clips failed" in proc.stderr
    # Per-clip progress lines name the stages as the core reports them.
    assert "[1/2] nobody.mp4: detect" in proc.stdout
    assert "[2/2] walk.mp4: detect" in proc.stdout and "[2/2] walk.mp4: write" in proc.stdout
    # --jobs 2: the second clip's core starts before the first clip is finished.
    assert proc.stdout.index("[2/2] walk.mp4: started") < proc.stdout.index("[1/2] nobody.mp4: failed")
    # The BVH written through Blender's exporter is the motion file's animation, Y up, in metres.
    bvh = read_bvh(out / "walk.bvh")
    assert bvh.num_frames == motion.num_frames
    np.testing.assert_allclose(bvh.positions(), motion.positions(), atol=1e-3)
    assert (out / "walk.fbx").stat().st_size > 10_000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_batch_skips_up_to_date_clips_unless_overwrite(first_run: tuple[subprocess.CompletedProcess[str], Path],
                                                       clips: Path) -> None:
    _, out = first_run
    stamp = (out / "walk.bvh").stat().st_mtime_ns
    again = run_batch("--input", str(clips), "--output", str(out), "--format", "bvh,fbx", *RANGE)
    assert again.returncode == 1  # the bad clip still fails
    walk = next(r for r in again.stdout.splitlines() if r.startswith("walk.mp4"))
    assert "skipped: up to date" in walk
    assert (out / "walk.bvh").stat().st_mtime_ns == stamp

    single = run_batch("--input", str(clips / "walk.mp4"), "--output", str(out), "--format", "bvh", "--overwrite",
                       *RANGE)
    assert single.returncode == 0, single.stdout + single.stderr
    assert (out / "walk.bvh").stat().st_mtime_ns > stamp


def test_batch_as_blender_script_argv_and_errors(tmp_path: Path) -> None:
    """`blender -b --python addon/batch.py -- ...` runs the file as a script: arguments after `--`, exit codes."""
    proc = subprocess.run([sys.executable, str(ROOT / "addon" / "batch.py"), "--", "--input", str(tmp_path),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "No videos in" in proc.stderr
    bad_format = run_batch("--input", str(tmp_path), "--output", str(tmp_path), "--format", "obj")
    assert bad_format.returncode == 2 and "unknown obj" in bad_format.stderr


def test_batch_formats_are_the_registry_and_the_motion_file(first_run: tuple[subprocess.CompletedProcess[str], Path],
                                                          clips: Path, tmp_path: Path) -> None:
    """--format offers every exporter of addon/exporters plus npz, and writes each under the exporter's file name."""
    from addon.exporters import EXPORTERS

    assert {"bvh", "fbx", "glb", "unity_bvh", "unity_fbx"} <= set(EXPORTERS)
    bad = run_batch("--input", str(clips), "--output", str(tmp_path), "--format", "bvh,obj")
    assert bad.returncode == 2
    assert bad.stderr.split("unknown obj; use ")[1].strip().split(", ") == [*EXPORTERS, "npz"]
    out = tmp_path / "out"
    proc = run_batch("--input", str(clips / "walk.mp4"), "--output", str(out), "--format", "glb,unity_bvh,npz", *RANGE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["walk.glb", "walk.npz", "walk_unity_bvh.bvh"]
    assert (out / "walk.glb").read_bytes()[:4] == b"glTF"
    bvh = read_bvh(out / "walk_unity_bvh.bvh")
    assert bvh.names[0] == "Hips" and bvh.num_frames == load_motion(out / "walk.npz").num_frames


def test_batch_refuses_clips_whose_outputs_would_collide(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    blank_video(clips / "walk.mp4", 3)
    blank_video(clips / "walk.avi", 3)
    proc = run_batch("--input", str(clips), "--output", str(tmp_path / "out"), "--format", "bvh")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("also called 'walk'") == 2
    assert not list((tmp_path / "out").glob("*.bvh"))


RIG_BLEND = """
import sys
sys.path.insert(0, {root!r})
import bpy
import numpy as np
from addon.armature import create_armature
from core.common.motionfile import Motion, load_motion, save_motion
from core.common.rotations import identity as identity_wxyz
from core.common.skeleton import humanoid

sk = humanoid()
offsets = sk.offsets.copy()
offsets[[sk.index("LeftLowerLeg"), sk.index("RightLowerLeg")], 1] = -0.5  # longer shins than Mimic's default
sk = sk.with_offsets(offsets)
save_motion(Motion(skeleton=sk, fps=30.0, rotations=identity_wxyz(1, sk.num_joints),
                   root_positions=sk.offsets[:1]), {npz!r})
rig = create_armature(load_motion({npz!r}), "Character", bpy.context.scene.collection)
rig.scale = (1.2, 1.2, 1.2)
rig.location = (1.0, 2.0, 0.0)
bpy.data.libraries.write({blend!r}, {{rig}}, fake_user=True)
"""


def test_batch_retargets_onto_an_armature_in_a_blend(clips: Path, tmp_path: Path) -> None:
    """--rig FILE.blend:ARMATURE loads the character once and bakes each clip onto it (addon/retarget/)."""
    blend = tmp_path / "character.blend"
    script = RIG_BLEND.format(root=str(ROOT), npz=str(tmp_path / "rest.npz"), blend=str(blend))
    made = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert blend.is_file(), made.stdout + made.stderr
    out = tmp_path / "out"
    args = ("--input", str(clips / "walk.mp4"), "--output", str(out), "--format", "bvh", *RANGE)
    proc = run_batch(*args, "--rig", f"{blend}:Character")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bvh = read_bvh(out / "walk.bvh")
    assert bvh.names[0] == "Hips" and len(bvh.names) == 21
    assert bvh.offsets[bvh.names.index("LeftLowerLeg"), 1] == pytest.approx(-0.5, abs=1e-4)  # the rig's own shins
    assert np.ptp(bvh.positions()[:, 0], axis=0).max() > 0.01  # it moves

    missing = run_batch(*args, "--rig", f"{blend}:Nobody", "--overwrite")
    assert missing.returncode == 2 and "has no object 'Nobody'" in missing.stderr
    os.utime(blend)  # a newer rig makes the outputs stale
    again = run_batch(*args, "--rig", f"{blend}:Character")
    assert again.returncode == 0 and "skipped" not in again.stdout


def test_batch_refuses_a_missing_input_before_creating_anything(tmp_path: Path) -> None:
    proc = run_batch("--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [("--person", "tallest"), ("--cutoff", "nan"), ("--start", "-1"),
                                    ("--lifter", "magic")])
def test_batch_names_a_bad_option_instead_of_blaming_the_setup(tmp_path: Path, clips: Path,
                                                               option: tuple[str, str]) -> None:
    proc = run_batch("--input", str(clips), "--output", str(tmp_path / "out"), *option)
    assert proc.returncode == 2 and f"argument {option[0]}" in proc.stderr, proc.stderr
    assert "Check" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_batch_stops_cleanly_on_signals(tmp_path: Path, walk_clip: Path, signum: int) -> None:
    """Mid-conversion: no traceback, exit 128 + signal, its temporary folder and its core processes gone."""
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "walk.mp4").symlink_to(walk_clip)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MIMIC_PYTHON"} | {"TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-m", "addon.batch", "--input", str(folder), "--output",
                             str(tmp_path / "out"), "--format", "bvh"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "walk.mp4: detect" in line:
            break
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and "stopped" in stderr
    assert list(scratch.iterdir()) == [] and list((tmp_path / "out").iterdir()) == []
    cores = subprocess.run(["pgrep", "-f", f"core {folder / 'walk.mp4'}"], capture_output=True, text=True)
    assert cores.stdout.strip() == ""
