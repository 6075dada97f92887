"""The command line end to end: a real conversion with the JSON-lines protocol, and every bad input the user can
hit, each exiting non-zero with a one-line message and leaving no output (not even a temp file) behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.bvh import read_bvh
from core.common.errors import (BadRange, Cancelled, EmptyClip, InputNotFound, NoPersonFound, NotAVideo, OutputExists,
                         OutputNotWritable, UnsupportedOutput)
from core.common.motionfile import load_motion
from conftest import blank_video

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, walk_clip: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("cli") / "walk.npz"
    return run_cli(walk_clip, "-o", out, "--end", "1.0", "--progress", "json"), out


def test_json_protocol_and_motion_file(converted: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = converted
    assert proc.returncode == 0, proc.stderr
    lines = json_lines(proc.stdout)
    assert lines[0]["protocol"] == 1 and lines[0]["mimic"]
    stages = [line["stage"] for line in lines if "stage" in line]
    for stage in ("detect", "lift", "filter", "solve", "write"):
        assert stage in stages
    progress = [line for line in lines if line.get("stage") == "detect"]
    assert progress[-1]["frame"] == progress[-1]["total"] == 30
    assert lines[-1]["done"] is True and Path(lines[-1]["output"]) == out.resolve()
    motion = load_motion(out)
    assert motion.num_frames == 30 and motion.fps == pytest.approx(30.0)
    assert motion.rotations.shape == (30, 21, 4) and np.all(np.isfinite(motion.rotations))
    assert motion.keypoints_2d.shape == (30, 33, 3)
    assert leftovers(out.parent) == ["walk.npz"]


def test_bvh_output_has_clip_frame_count_and_time(tmp_path: Path, balance_clip: Path) -> None:
    out = tmp_path / "balance.bvh"
    proc = run_cli(balance_clip, "-o", out, "--end", "0.5", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    bvh = read_bvh(out)
    assert bvh.num_frames == 30 and bvh.frame_time == pytest.approx(1 / 60, rel=1e-4)
    assert bvh.names[0] == "Hips" and bvh.channels[1] == ["Zrotation", "Xrotation", "Yrotation"]


def expect_error(proc: subprocess.CompletedProcess[str], error: type, folder: Path | None = None,
                 before: list[str] | None = None) -> None:
    assert proc.returncode == error.exit_code, (proc.returncode, proc.stderr)
    message = [line for line in proc.stderr.splitlines() if line.startswith("mimic: error:")]
    assert len(message) == 1 and len(message[0]) > 30, proc.stderr
    if folder is not None:
        assert leftovers(folder) == (before or []), "an output or temp file was left behind"


def test_missing_file(tmp_path: Path) -> None:
    expect_error(run_cli(tmp_path / "nope.mp4", "-o", tmp_path / "x.bvh"), InputNotFound, tmp_path)


def test_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    expect_error(run_cli(fake, "-o", tmp_path / "x.bvh"), NotAVideo, tmp_path, ["notes.mp4"])


def test_zero_length_clip(tmp_path: Path) -> None:
    empty = blank_video(tmp_path / "empty.mp4", 0)
    expect_error(run_cli(empty, "-o", tmp_path / "x.bvh"), EmptyClip, tmp_path, ["empty.mp4"])


def test_no_person(tmp_path: Path) -> None:
    blank = blank_video(tmp_path / "blank.mp4", 15, value=90)
    expect_error(run_cli(blank, "-o", tmp_path / "x.bvh"), NoPersonFound, tmp_path, ["blank.mp4"])


def test_start_past_end(tmp_path: Path, balance_clip: Path) -> None:
    expect_error(run_cli(balance_clip, "-o", tmp_path / "x.bvh", "--start", "60"), BadRange, tmp_path)


def test_output_folder_missing_or_not_writable(tmp_path: Path, balance_clip: Path) -> None:
    expect_error(run_cli(balance_clip, "-o", tmp_path / "no" / "such" / "x.bvh"), OutputNotWritable, tmp_path)
    expect_error(run_cli(balance_clip, "-o", "/proc/mimic.bvh"), OutputNotWritable)


def test_numbers_must_be_finite_and_not_negative(tmp_path: Path, balance_clip: Path) -> None:
    for option, value in (("--cutoff", "nan"), ("--end", "-1"), ("--max-gap", "inf")):
        proc = run_cli(balance_clip, "-o", tmp_path / "x.bvh", option, value)
        assert proc.returncode == 2 and f"argument {option}" in proc.stderr, proc.stderr
    assert leftovers(tmp_path) == []


def test_output_gets_the_usual_file_mode(tmp_path: Path, balance_clip: Path) -> None:
    out = tmp_path / "x.bvh"
    assert run_cli(balance_clip, "-o", out, "--end", "0.2", "--progress", "none").returncode == 0
    assert out.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_unknown_output_format(tmp_path: Path, balance_clip: Path) -> None:
    expect_error(run_cli(balance_clip, "-o", tmp_path / "x.mp4"), UnsupportedOutput, tmp_path)


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, balance_clip: Path) -> None:
    out = tmp_path / "x.bvh"
    out.write_text("precious")
    expect_error(run_cli(balance_clip, "-o", out, "--end", "0.2"), OutputExists, tmp_path, ["x.bvh"])
    assert out.read_text() == "precious"
    proc = run_cli(balance_clip, "-o", out, "--end", "0.2", "--overwrite", "--progress", "none")
    assert proc.returncode == 0, proc.stderr
    assert read_bvh(out).num_frames == 12


def test_ctrl_c_exits_cleanly_without_output(tmp_path: Path, walk_clip: Path) -> None:
    out = tmp_path / "x.bvh"
    proc = subprocess.Popen([sys.executable, "-m", "core", str(walk_clip), "-o", str(out), "--no-cache",
                             "--progress", "json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # interrupt once detection is under way
        msg = json.loads(line)
        if msg.get("stage") == "detect" and msg.get("frame", 0) > 0:
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == Cancelled.exit_code, stderr
    assert json_lines(stdout)[-1]["error"]["type"] == "Cancelled"
    assert leftovers(tmp_path) == []


def test_watch_stdin_stops_the_core_when_its_parent_goes(tmp_path: Path, walk_clip: Path) -> None:
    """With --watch-stdin (what the Blender add-on passes), closing stdin mid-run stops the core like Ctrl-C."""
    out = tmp_path / "x.npz"
    proc = subprocess.Popen([sys.executable, "-m", "core", str(walk_clip), "-o", str(out), "--no-cache",
                             "--progress", "json", "--watch-stdin"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("stage") == "detect" and json.loads(line).get("frame", 0) > 0:
            break
    proc.stdin.close()
    stdout = proc.stdout.read()
    assert proc.wait(timeout=60) == Cancelled.exit_code
    assert json_lines(stdout)[-1]["error"]["type"] == "Cancelled"
    assert leftovers(tmp_path) == []

