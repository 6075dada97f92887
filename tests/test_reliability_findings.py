"""Issue 15's findings that had no test of their own, each through the real CLI on a real damaged clip: a video track
whose timescale is 0, a clip with 20 % of its middle bytes zeroed, and SIGTERM while a temporary `.part` file exists
(beside the output, or in the detection cache). Exit codes and error types are compared as the README documents them,
by number and name."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DAMAGED_VIDEO = 14  # README: the video decodes only in part, or its timing is damaged

# Runs `python -m core ARGS...` with numpy's savez/savez_compressed wrapped: the first write into a `.part` file in
# folder argv[1] writes its bytes, prints "PART <path>" and then waits, so the test can signal while the temp exists.
_HOLD_IN_PART = """
import os, runpy, sys, time
import numpy as np
folder = os.path.realpath(sys.argv[1])
def hold(real):
    def write(file, *args, **kwargs):
        real(file, *args, **kwargs)
        name = os.path.realpath(getattr(file, "name", file))
        if ".part" in os.path.basename(name) and os.path.dirname(name) == folder:
            if hasattr(file, "flush"):
                file.flush()
            print("PART " + name, flush=True)
            time.sleep(120)
    return write
np.savez, np.savez_compressed = hold(np.savez), hold(np.savez_compressed)
sys.argv = ["core", *sys.argv[2:]]
runpy.run_module("core", run_name="__main__", alter_sys=True)
"""


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def stderr_of(folder: Path) -> str:
    return (folder / "stderr.txt").read_text()[-3000:]


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def person_clip(path: Path, source: Path, frames: int = 30) -> Path:
    """The first `frames` frames of `source` (a person, whole body) as a small 30 fps MPEG-4 file, moov at the end."""
    cap = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (270, 480))
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok
        writer.write(cv2.resize(frame, (270, 480)))
    writer.release()
    cap.release()
    return path


def _box(data: bytearray, names: tuple[bytes, ...]) -> int:
    """Offset of the nested box `names` (moov/trak/...) in an MP4 file."""
    offset = 0
    for depth, name in enumerate(names):
        while data[offset + 4 : offset + 8] != name:
            offset += struct.unpack(">I", data[offset : offset + 4])[0]
        if depth < len(names) - 1:
            offset += 8
    return offset


def set_timescale(path: Path, box: tuple[bytes, ...], value: int) -> None:
    """Overwrite the timescale (ticks per second) of a version-0 mdhd or mvhd box."""
    data = bytearray(path.read_bytes())
    offset = _box(data, box)
    assert data[offset + 8] == 0  # version 0: size, type, version+flags, created, modified, then the timescale
    data[offset + 20 : offset + 24] = struct.pack(">I", value)
    path.write_bytes(bytes(data))


MDHD = (b"moov", b"trak", b"mdia", b"mdhd")
MVHD = (b"moov", b"mvhd")


def test_a_video_track_with_timescale_0_is_a_damaged_video(tmp_path: Path, balance_clip: Path) -> None:
    """mdhd timescale 0: FFmpeg falls back to 1 tick a second, 0.002 fps; once converted silently to 1 frame."""
    clip = person_clip(tmp_path / "ts0.mp4", balance_clip)
    set_timescale(clip, MDHD, 0)
    proc = run_cli(clip, "-o", tmp_path / "t.npz", "--progress", "json")
    assert proc.returncode == DAMAGED_VIDEO, (proc.returncode, proc.stderr[-2000:])
    error = json_lines(proc.stdout)[-1]["error"]
    assert error["type"] == "DamagedVideo" and error["exit_code"] == DAMAGED_VIDEO
    assert "frames per second" in error["message"] and "Re-mux" in error["message"], error
    assert files_in(tmp_path) == ["ts0.mp4"]


def test_a_movie_header_with_timescale_0_still_reads_at_the_tracks_rate(tmp_path: Path, balance_clip: Path) -> None:
    """mvhd timescale 0 (the movie's, not the track's) does not touch the frame timing: a correct result, 30 fps."""
    from core.video import probe

    clip = person_clip(tmp_path / "mv0.mp4", balance_clip)
    set_timescale(clip, MVHD, 0)
    info = probe(clip)
    assert (info.fps, info.frame_count) == (30.0, 30)


@pytest.fixture(scope="module")
def zeroed_clip(tmp_path_factory: pytest.TempPathFactory, balance_clip: Path) -> Path:
    """The balance clip (100 frames, 60 fps) with bytes 40-60 % of the file zeroed: the container stays intact."""
    data = bytearray(balance_clip.read_bytes())
    start, end = int(0.4 * len(data)), int(0.6 * len(data))
    data[start:end] = bytes(end - start)
    path = tmp_path_factory.mktemp("zeroed") / "z.mp4"
    path.write_bytes(bytes(data))
    return path


def test_zeroed_middle_bytes_are_a_damaged_video(tmp_path: Path, zeroed_clip: Path) -> None:
    """Once: exit 0 with 44 of the 100 frames and no word. Now exit 14 naming the shortfall, nothing written."""
    proc = run_cli(zeroed_clip, "-o", tmp_path / "z.npz")
    assert proc.returncode == DAMAGED_VIDEO, (proc.returncode, proc.stderr[-2000:])
    (message,) = [line for line in proc.stderr.splitlines() if line.startswith("mimic: error:")]
    got, promised = map(int, re.search(r"\((\d+) of about (\d+) frames\)", message).groups())  # type: ignore[union-attr]
    assert promised == 100 and 0 < got < 90, message
    assert "damaged or truncated" in message and "--allow-partial" in message
    assert files_in(tmp_path) == []


def test_zeroed_middle_bytes_convert_in_part_with_allow_partial_and_a_warning(tmp_path: Path,
                                                                              zeroed_clip: Path) -> None:
    from core.common.motionfile import load_motion

    out = tmp_path / "z.npz"
    proc = run_cli(zeroed_clip, "-o", out, "--allow-partial", "--progress", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line["warning"] for line in json_lines(proc.stdout) if "warning" in line]
    (shortfall,) = [w for w in warnings if "damaged or truncated" in w]
    got = int(re.search(r"\((\d+) of about 100 frames\)", shortfall).group(1))  # type: ignore[union-attr]
    motion = load_motion(out)
    assert motion.num_frames == got < 90 and motion.fps == 60.0
    assert shortfall in motion.meta["source"]["decode_warnings"]
    assert np.isfinite(motion.rotations).all()


@pytest.mark.parametrize("where", ["output", "cache"])
def test_sigterm_while_a_part_file_exists_removes_it(tmp_path: Path, balance_clip: Path, where: str) -> None:
    """SIGTERM while the motion file's temp (beside the output) or the detection cache entry's temp is on disk,
    written but not yet renamed: exit 143, a JSON error line, and no file left. Once the run died by the signal
    (exit -15, no error line) and the .part stayed."""
    out_dir, cache = tmp_path / "out", tmp_path / "cache"
    out_dir.mkdir()
    hold_in = out_dir if where == "output" else cache / "detect"
    with (tmp_path / "stderr.txt").open("w") as err:  # a file, not a pipe nobody reads while the run goes on
        proc = subprocess.Popen([sys.executable, "-c", _HOLD_IN_PART, str(hold_in), str(balance_clip), "-o",
                                 str(out_dir / "x.npz"), "--end", "0.3", "--progress", "json"], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=err, env=dict(os.environ, MIMIC_CACHE_DIR=str(cache)))
    assert proc.stdout is not None
    part = None
    for line in proc.stdout:
        if line.startswith("PART "):
            part = Path(line.split(" ", 1)[1].strip())
            break
    assert part is not None and part.is_file() and part.stat().st_size > 0, (proc.wait(timeout=60),
                                                                             stderr_of(tmp_path))
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    stderr = stderr_of(tmp_path)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, files_in(tmp_path), stderr[-2000:])
    error = json_lines(stdout)[-1]["error"]
    assert error["type"] == "Interrupted" and error["exit_code"] == 143 and "Traceback" not in stderr
    assert files_in(out_dir) == []
    cached = files_in(cache)  # with "output", the detection entry was complete before the output's temp was written
    assert not any(".part" in name for name in cached), cached
    assert (cached == []) == (where == "cache"), cached


def test_a_joint_named_motion_does_not_end_the_hierarchy(tmp_path: Path) -> None:
    """Finding 6: `JOINT MOTION_tip` once broke the parser ("list index out of range"); only a line that is exactly
    MOTION ends the hierarchy."""
    from core.bvh import read_bvh

    path = tmp_path / "motion_joint.bvh"
    path.write_text("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition Zrotation "
                    "Xrotation Yrotation\n JOINT MOTION_tip\n {\n  OFFSET 0 1 0\n  CHANNELS 3 Zrotation Xrotation "
                    "Yrotation\n  End Site\n  {\n   OFFSET 0 1 0\n  }\n }\n}\nMOTION\nFrames: 3\nFrame Time: 0.04\n"
                    + "".join(f"0 {i} 0 0 0 0 0 0 0\n" for i in range(3)), encoding="utf-8")
    data = read_bvh(path)
    assert data.names == ["Hips", "MOTION_tip"] and data.parents.tolist() == [-1, 0]
    assert data.values.shape == (3, 9) and data.values[:, 1].tolist() == [0, 1, 2]


def test_the_training_loader_skips_a_bvh_whose_frame_time_is_0(tmp_path: Path) -> None:
    """Finding 6: a plain `Frame Time: 0` line once raised ZeroDivisionError out of the loader, ending training on one
    bad file. Now that file is skipped with a warning and the others load."""
    from core.bvh import write_bvh
    from core.common.motionfile import Motion
    from core.common.skeleton import humanoid
    from training.mocap import load_mocap

    folder = tmp_path / "mocap"
    folder.mkdir()
    sk = humanoid()
    rotations = np.tile([1.0, 0.0, 0.0, 0.0], (12, sk.num_joints, 1))
    root = np.stack([np.zeros(12), np.full(12, 0.95), np.linspace(0, 0.4, 12)], axis=1)
    write_bvh(folder / "good.bvh", Motion(skeleton=sk, fps=30.0, rotations=rotations, root_positions=root))
    text = (folder / "good.bvh").read_text()
    frame_time = next(line for line in text.splitlines() if line.startswith("Frame Time:"))
    (folder / "zero_time.bvh").write_text(text.replace(frame_time, "Frame Time: 0"))
    warnings: list[str] = []

    class Reporter:
        def stage(self, name: str, total: int) -> None: ...
        def update(self, frame: int) -> None: ...
        def done(self, **result: object) -> None: ...
        def error(self, payload: dict) -> None: ...
        def warn(self, message: str) -> None:
            warnings.append(message)

    data = load_mocap(folder, tmp_path / "cache", reporter=Reporter())
    assert data.names == ["good.bvh"] and len(data.keypoints) == 12
    assert len(warnings) == 1 and warnings[0].startswith("skipped zero_time.bvh") and "Frame Time" in warnings[0]
