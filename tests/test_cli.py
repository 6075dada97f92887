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
from core.common import errors
from core.common.errors import (BackendUnavailable, BadBvhFile, BadMotionFile, BadRange, BadRigData, DamagedVideo,
                               EmptyClip, InputNotFound, NoPersonFound, NotAVideo, OutputExists, OutputNotWritable,
                               UnsupportedOutput, WeightsMissing)
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


def start_and_wait_for_detection(args: list[str], **popen: object) -> subprocess.Popen[str]:
    """Start the CLI with JSON progress and return once detection is under way."""
    proc = subprocess.Popen([sys.executable, "-m", "core", *args, "--progress", "json"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # type: ignore[call-overload]
    assert proc.stdout is not None
    for line in proc.stdout:
        msg = json.loads(line)
        if msg.get("stage") == "detect" and msg.get("frame", 0) > 0:
            break
    return proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signals_stop_cleanly_without_output_or_temp_files(tmp_path: Path, walk_clip: Path,
                                                          monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    """Ctrl-C, SIGTERM and SIGHUP alike: exit 128 + signal, a JSON error line, nothing left in the output folder or
    in the detection cache (whose entry is written atomically as detection ends)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(cache))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = start_and_wait_for_detection([str(walk_clip), "-o", str(out_dir / "x.bvh")])
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    error = json_lines(stdout)[-1]["error"]
    assert error["type"] == "Interrupted" and error["exit_code"] == 128 + signum and "Traceback" not in stderr
    assert leftovers(out_dir) == []
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_watch_stdin_stops_the_core_when_its_parent_goes(tmp_path: Path, walk_clip: Path) -> None:
    """With --watch-stdin (what the Blender add-on passes), closing stdin mid-run stops the core, also when it
    inherited SIGINT as ignored (a process started with `&` from a script)."""
    out = tmp_path / "x.npz"
    proc = start_and_wait_for_detection(
        [str(walk_clip), "-o", str(out), "--no-cache", "--watch-stdin"], stdin=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    stdout = proc.stdout.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    error = json_lines(stdout)[-1]["error"]
    assert error["type"] == "Interrupted" and "has gone" in error["message"]
    assert leftovers(tmp_path) == []


def test_temp_files_of_killed_runs_are_swept(tmp_path: Path, balance_clip: Path) -> None:
    """A run killed outright (SIGKILL) leaves its temp file; the next write into that folder removes it, while a
    temp file of a process that still runs is kept."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".x.bvh.{int(dead.stdout)}.k3j9.part.bvh"
    alive = tmp_path / f".y.bvh.{proc.pid}.abcd.part.bvh"
    orphan.write_text("half")
    alive.write_text("in progress")
    try:
        result = run_cli(balance_clip, "-o", tmp_path / "x.bvh", "--end", "0.2", "--progress", "none")
        assert result.returncode == 0, result.stderr
        assert leftovers(tmp_path) == sorted([alive.name, "x.bvh"])
    finally:
        proc.kill()


def test_a_folder_given_as_the_video_is_named_a_folder(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "-o", tmp_path / "x.bvh")
    expect_error(proc, NotAVideo, tmp_path)
    assert "is a folder" in proc.stderr


def test_output_that_is_a_folder_fails_before_any_work(tmp_path: Path, balance_clip: Path) -> None:
    (tmp_path / "out.bvh").mkdir()
    proc = run_cli(balance_clip, "-o", tmp_path / "out.bvh", "--overwrite", "--progress", "json")
    assert proc.returncode == OutputNotWritable.exit_code and leftovers(tmp_path) == ["out.bvh"]
    lines = json_lines(proc.stdout)
    assert "is a folder" in lines[-1]["error"]["message"] and not any("stage" in line for line in lines)


@pytest.fixture(scope="module")
def truncated_clip(tmp_path_factory: pytest.TempPathFactory, walk_clip: Path) -> Path:
    """The first 1,190,491 bytes of the walking clip: the container still promises 230 frames, 60 decode."""
    path = tmp_path_factory.mktemp("damaged") / "cut.mp4"
    path.write_bytes(walk_clip.read_bytes()[:1190491])
    return path


def test_a_truncated_video_is_an_error_not_a_shorter_clip(tmp_path: Path, truncated_clip: Path) -> None:
    proc = run_cli(truncated_clip, "-o", tmp_path / "x.bvh")
    expect_error(proc, DamagedVideo, tmp_path)
    assert "--allow-partial" in proc.stderr and "60 of about 230 frames" in proc.stderr


def test_allow_partial_converts_what_decodes_and_says_so(tmp_path: Path, truncated_clip: Path) -> None:
    out = tmp_path / "x.npz"
    proc = run_cli(truncated_clip, "-o", out, "--allow-partial", "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    warnings = [line["warning"] for line in json_lines(proc.stdout) if "warning" in line]
    assert any("damaged or truncated" in w for w in warnings), warnings
    motion = load_motion(out)
    assert motion.num_frames == 60
    assert any("damaged or truncated" in w for w in motion.meta["source"]["decode_warnings"])


@pytest.fixture(scope="module")
def motion_npz(tmp_path_factory: pytest.TempPathFactory, balance_clip: Path) -> Path:
    out = tmp_path_factory.mktemp("reexport") / "m.npz"
    assert run_cli(balance_clip, "-o", out, "--end", "0.3", "--progress", "none").returncode == 0
    return out


def test_motion_files_and_bvh_are_written_again_without_detection(tmp_path: Path, motion_npz: Path) -> None:
    """.npz -> .bvh in centimetres -> .npz: the same motion (no detection runs: no 'detect' stage)."""
    bvh, back = tmp_path / "m.bvh", tmp_path / "back.npz"
    proc = run_cli(motion_npz, "-o", bvh, "--units", "cm", "--progress", "json")
    assert proc.returncode == 0 and not any(line.get("stage") == "detect" for line in json_lines(proc.stdout))
    assert run_cli(bvh, "-o", back, "--progress", "none").returncode == 0
    np.testing.assert_allclose(load_motion(back).positions(), load_motion(motion_npz).positions(), atol=1e-4)


def test_bad_motion_file_bvh_and_weights(tmp_path: Path, motion_npz: Path, balance_clip: Path) -> None:
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(motion_npz.read_bytes()[:200])
    expect_error(run_cli(bad_npz, "-o", tmp_path / "x.bvh"), BadMotionFile, tmp_path, ["bad.npz"])
    bad_bvh = tmp_path / "bad.bvh"
    bad_bvh.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\n"
                       "MOTION\nFrames: 1\nFrame Time: 0\n0 0 0\n")
    expect_error(run_cli(bad_bvh, "-o", tmp_path / "x.npz"), BadBvhFile, tmp_path, ["bad.bvh", "bad.npz"])
    expect_error(run_cli(balance_clip, "-o", tmp_path / "x.bvh", "--weights", bad_npz), WeightsMissing, tmp_path,
                 ["bad.bvh", "bad.npz"])


def test_damaged_rig_data(tmp_path: Path, balance_clip: Path) -> None:
    """An installation whose rigs/humanoid.json was damaged: BadRigData naming the file, not a traceback."""
    import shutil

    copy = tmp_path / "mimic"
    shutil.copytree(ROOT / "core", copy / "core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rigs", copy / "rigs")
    (copy / "rigs" / "humanoid.json").write_text('{"joints": [{"name": "Hips"}]}')
    proc = subprocess.run([sys.executable, "-m", "core", str(balance_clip), "-o", str(tmp_path / "x.bvh"), "--end",
                           "0.2"], cwd=copy, capture_output=True, text=True, timeout=300)
    expect_error(proc, BadRigData, tmp_path, ["mimic"])
    assert "humanoid.json" in proc.stderr


#: Every exit code of core/common/errors.py and the test above that triggers it from the command line.
COVERED = {InputNotFound: "test_missing_file", NotAVideo: "test_not_a_video", EmptyClip: "test_zero_length_clip",
           BadRange: "test_start_past_end", NoPersonFound: "test_no_person",
           OutputExists: "test_existing_output_is_kept_unless_overwrite",
           OutputNotWritable: "test_output_folder_missing_or_not_writable",
           UnsupportedOutput: "test_unknown_output_format", BadMotionFile: "test_bad_motion_file_bvh_and_weights",
           BadBvhFile: "test_bad_motion_file_bvh_and_weights", WeightsMissing: "test_bad_motion_file_bvh_and_weights",
           DamagedVideo: "test_a_truncated_video_is_an_error_not_a_shorter_clip", BadRigData: "test_damaged_rig_data",
           BackendUnavailable: "test_core_batch.py::test_unreachable_ray_cluster_fails_fast"}


def test_every_exit_code_is_triggered_from_the_command_line() -> None:
    """A new error type without a command-line test fails here (the signals' 128 + n are tested above)."""
    defined = {cls for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.MimicError) and cls is not errors.MimicError}
    assert defined == set(COVERED)
    assert len({cls.exit_code for cls in defined}) == len(defined), "two error types share an exit code"
    for test in COVERED.values():  # a test here, or "other_file.py::test" (the batch's command line)
        module, _, name = test.rpartition("::")
        if module:
            assert f"def {name}(" in (Path(__file__).parent / module).read_text(encoding="utf-8"), test
        else:
            assert callable(globals()[name])
