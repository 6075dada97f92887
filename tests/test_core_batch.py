"""`python -m core.batch`: real worker processes, real Ray (a local instance with two workers), real MediaPipe on
1-second cuts of the sample clips, a broken file among them, workers killed mid-clip, a stop by signal, --resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import pytest

from core.bvh import read_bvh
from core.common.motionfile import load_motion
from test_batch import RIG_BLEND

ROOT = Path(__file__).resolve().parent.parent
#: (source clip, start second) of each cut; the walk is 30 fps (30 frames a cut), the balance 60 fps (60 frames).
CUTS = {"clip00": ("sports2d_walk", 1.0), "clip01": ("pose2sim_balance", 0.0), "clip02": ("sports2d_walk", 3.0),
        "clip03": ("pose2sim_balance", 0.5), "clip04": ("sports2d_walk", 5.0)}
FRAMES = {"sports2d_walk": 30, "pose2sim_balance": 60}
CACHE = Path()


def cut(src: Path, dst: Path, start_s: float, seconds: float = 1.0, scale: float = 0.5) -> Path:
    """`seconds` of `src` from `start_s`, scaled by `scale`, as an MP4 (the frame rate kept)."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.set(cv2.CAP_PROP_POS_FRAMES, round(start_s * fps))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) * scale) // 2 * 2,
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) * scale) // 2 * 2)
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for _ in range(round(seconds * fps)):
        ok, frame = cap.read()
        assert ok, f"{src} is shorter than {start_s + seconds} s"
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    writer.release()
    cap.release()
    return dst


def make_clips(folder: Path, names: dict[str, tuple[str, float]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (source, start) in names.items():
        cut(ROOT / "sample_clips" / f"{source}.mp4", folder / f"{name}.mp4", start)
    return folder


class Run:
    """A `python -m core.batch --progress json` subprocess and what it printed."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "MIMIC_CACHE_DIR": str(CACHE)}  # module fixtures start before conftest's isolation
        self.proc = subprocess.Popen([sys.executable, "-m", "core.batch", "--progress", "json", *args], cwd=ROOT,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []

    def lines(self) -> Any:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))
            yield self.events[-1]

    def finish(self, timeout: float = 240) -> tuple[int, str]:
        for _ in self.lines():
            pass
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        return self.proc.wait(timeout=timeout), stderr

    def starts(self) -> list[dict[str, Any]]:
        return [e["start"] for e in self.events if "start" in e]


def run_and_kill(victim: str, *args: str, sig: int = signal.SIGKILL, after_s: float = 0.2) -> tuple[Run, int, int, str]:
    """Run a batch; `after_s` after `victim` starts on a worker, send `sig` to that worker. Returns (run, exit code,
    the pid signalled, stderr)."""
    run = Run(*args)
    pid = 0
    for event in run.lines():
        if "start" in event and event["start"]["clip"] == victim and not pid:
            pid = event["start"]["worker"]["pid"]
            time.sleep(after_s)
            os.kill(pid, sig)
    rc, stderr = run.finish()
    assert pid, f"{victim} never started: {run.events} {stderr}"
    return run, rc, pid, stderr


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def leftovers(out: Path) -> list[Path]:
    """Temp files of atomic writes and the Blender stage's work folder: none may be left."""
    return [p for p in out.rglob(".*")]


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A detection cache of this module's own: a clip killed mid-task must not come back from a cache."""
    global CACHE
    CACHE = tmp_path_factory.mktemp("batch-cache")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_clips(tmp_path_factory.mktemp("clips"), CUTS)
    data = (folder / "clip00.mp4").read_bytes()
    (folder / "broken.mp4").write_bytes(data[:len(data) // 2])  # a copy cut short: its index (moov) is lost
    return folder


@pytest.fixture(scope="module")
def ray_batch(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, int, int, str]:
    """Six clips (one broken) on a local Ray instance with two workers; the worker converting clip02 is killed."""
    pytest.importorskip("ray")
    out = tmp_path_factory.mktemp("ray-out")
    run, rc, pid, stderr = run_and_kill("clip02.mp4", "--input", str(clips), "--output", str(out), "--format",
                                        "bvh,npz,vmd", "--ray", "local", "--workers", "2")
    return out, run, rc, pid, stderr


def test_ray_batch_converts_every_good_clip_despite_a_broken_file_and_a_killed_worker(
        ray_batch: tuple[Path, Run, int, int, str]) -> None:
    out, run, rc, killed, stderr = ray_batch
    assert rc == 1, stderr  # one clip failed
    assert run.events[0]["batch"]["backend"] == "ray:local" and run.events[0]["batch"]["workers"] == 2
    starts = run.starts()
    kill_at = next(i for i, s in enumerate(starts) if s["clip"] == "clip02.mp4")
    assert len({s["worker"]["pid"] for s in starts if s["attempt"] == 1}) >= 2  # two actors took clips
    assert killed not in {s["worker"]["pid"] for s in starts[kill_at + 1:]}
    assert len({s["worker"]["pid"] for s in starts}) <= 3  # the two actors and the killed one's replacement
    records = manifest(out)
    assert sorted(r["clip"] for r in records) == ["broken.mp4", *(f"{n}.mp4" for n in CUTS)]  # one line per clip
    by_clip = {r["clip"]: r for r in records}
    broken = by_clip.pop("broken.mp4")
    assert broken["status"] == "failed" and broken["frames"] == 0 and broken["outputs"] == {}
    assert broken["error"]["type"] == "NotAVideo" and broken["error"]["exit_code"] == 4
    for clip, r in by_clip.items():
        frames = FRAMES[CUTS[clip[:-4]][0]]
        assert r["status"] == "ok" and r["error"] is None, r
        assert r["frames"] == frames and 0 < r["seconds"] < 120
        assert r["outputs"] == {f: clip.replace(".mp4", f".{f}") for f in ("bvh", "npz", "vmd")}
        assert (out / r["outputs"]["vmd"]).read_bytes()[:25] == b"Vocaloid Motion Data 0002"
        assert read_bvh(out / r["outputs"]["bvh"]).num_frames == frames
        assert load_motion(out / r["outputs"]["npz"]).num_frames == frames
        assert len(r["sha256"]) == 64
    victim = by_clip["clip02.mp4"]
    assert victim["attempts"] == 2 and victim["worker"] != f"{victim['worker'].split(':')[0]}:{killed}"
    assert [s["attempt"] for s in run.starts() if s["clip"] == "clip02.mp4"] == [1, 2]
    died = [e["warning"] for e in run.events if "warning" in e and "clip02.mp4" in e["warning"]]
    assert len(died) == 1 and "died" in died[0] and "Resubmitting" in died[0], run.events
    assert all(r["attempts"] == 1 for c, r in by_clip.items() if c != "clip02.mp4")
    assert run.events[-1]["done"] is True and (run.events[-1]["ok"], run.events[-1]["failed"]) == (5, 1)
    assert leftovers(out) == []


def test_ray_resume_converts_nothing_twice_and_a_stopped_resume_leaves_nothing(
        ray_batch: tuple[Path, Run, int, int, str]) -> None:
    out, first, _, _, _ = ray_batch
    (out / "clip03.bvh").unlink()  # an output lost since: that clip must be done again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".bvh", ".npz", ".vmd")
              and p.stem != "clip03"}
    assert len(stamps) == 12
    clips = Path(first.proc.args[first.proc.args.index("--input") + 1])
    args = ("--input", str(clips), "--output", str(out), "--format", "bvh,npz,vmd", "--ray", "local", "--workers", "2",
            "--resume")
    shutil.rmtree(CACHE / "detect", ignore_errors=True)  # cached detections would finish clip03 before the stop
    stopped = Run(*args)  # SIGTERM while clip03 converts on a Ray actor
    for event in stopped.lines():
        if "start" in event and event["start"]["clip"] == "clip03.mp4":
            time.sleep(0.2)
            stopped.proc.send_signal(signal.SIGTERM)
    rc, stderr = stopped.finish()
    assert rc == 128 + signal.SIGTERM and "stopped (SIGTERM)" in stderr and "Traceback" not in stderr, stderr
    assert leftovers(out) == [] and not (out / "clip03.bvh").exists()
    seen = len(manifest(out))
    assert "clip03.mp4" not in {r["clip"] for r in manifest(out)[len(CUTS) + 1:]}
    run = Run(*args)
    rc, stderr = run.finish()
    assert rc == 1, stderr  # the broken file is tried again, and fails again
    assert sorted(s["clip"] for s in run.starts()) == ["broken.mp4", "clip03.mp4"]
    records = manifest(out)[seen:]  # this run's lines, appended
    status = {r["clip"]: r["status"] for r in records}
    assert status == {"broken.mp4": "failed", "clip00.mp4": "skipped", "clip01.mp4": "skipped",
                      "clip02.mp4": "skipped", "clip03.mp4": "ok", "clip04.mp4": "skipped"}
    skipped = [r for r in records if r["status"] == "skipped"]
    assert all(r["frames"] == FRAMES[CUTS[r["clip"][:-4]][0]] and r["outputs"] for r in skipped)
    assert read_bvh(out / "clip03.bvh").num_frames == 60
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.iterdir() if p.name in stamps)  # none rewritten


def test_local_batch_keeps_sub_folders_retargets_in_blender_stage_and_survives_a_killed_worker(tmp_path: Path) -> None:
    blend = tmp_path / "character.blend"  # an armature with longer shins than Mimic's (tests/test_batch.py)
    script = RIG_BLEND.format(root=str(ROOT), npz=str(tmp_path / "rest.npz"), blend=str(blend))
    made = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert blend.is_file(), made.stdout + made.stderr
    clips = make_clips(tmp_path / "in" / "day1", {"walk": ("sports2d_walk", 2.0), "balance": ("pose2sim_balance", 0.0)})
    out = tmp_path / "out"
    run, rc, killed, stderr = run_and_kill("day1/walk.mp4", "--input", str(clips.parent), "--output", str(out),
                                           "--format", "npz,bvh,fbx", "--rig", f"{blend}:Character")
    assert rc == 0, stderr
    assert run.events[0]["batch"]["backend"] == "local" and run.events[0]["batch"]["workers"] == os.cpu_count()
    records = {r["clip"]: r for r in manifest(out)}
    assert set(records) == {"day1/balance.mp4", "day1/walk.mp4"}
    for clip, r in records.items():
        stem, frames = clip[:-4], (30 if "walk" in clip else 60)
        assert r["status"] == "ok" and r["outputs"] == {f: f"{stem}.{f}" for f in ("npz", "bvh", "fbx")}
        assert r["frames"] == frames and load_motion(out / f"{stem}.npz").num_frames == frames
        assert (out / f"{stem}.fbx").read_bytes()[:18] == b"Kaydara FBX Binary"
        bvh = read_bvh(out / f"{stem}.bvh")  # written by Blender from the character, not by the core
        assert bvh.num_frames == frames and bvh.offsets[bvh.names.index("LeftLowerLeg"), 1] == pytest.approx(-0.5)
    assert records["day1/walk.mp4"]["attempts"] == 3  # two core tries (the first killed), one Blender stage
    stages = [(s["stage"], s["attempt"]) for s in run.starts() if s["clip"] == "day1/walk.mp4"]
    assert stages == [("core", 1), ("core", 2), ("blender", 1)]
    assert killed not in {s["worker"]["pid"] for s in run.starts() if s["attempt"] > 1 or s["stage"] == "blender"}
    assert leftovers(out) == []


def test_local_batch_stops_cleanly_on_sigterm_and_never_overwrites_an_earlier_batch(tmp_path: Path) -> None:
    clips = make_clips(tmp_path / "in", {"a": ("sports2d_walk", 1.0), "b": ("sports2d_walk", 4.0)})
    out = tmp_path / "out"
    run = Run("--input", str(clips), "--output", str(out), "--workers", "1")
    for event in run.lines():
        if "start" in event and event["start"]["clip"] == "b.mp4":
            time.sleep(0.2)  # b is being converted (detection alone takes longer)
            run.proc.send_signal(signal.SIGTERM)
    rc, stderr = run.finish()
    assert rc == 128 + signal.SIGTERM, stderr
    assert "stopped (SIGTERM)" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert [r["clip"] for r in manifest(out)] == ["a.mp4"] and not (out / "b.bvh").exists()
    assert leftovers(out) == []
    worker = next(st["worker"]["pid"] for st in run.starts() if st["clip"] == "b.mp4")
    assert not Path(f"/proc/{worker}").exists()  # the worker was stopped with the batch
    again = Run("--input", str(clips), "--output", str(out), "--workers", "1")
    rc, stderr = again.finish()
    assert rc == 8 and "--resume" in stderr  # an earlier batch is there: never overwritten by accident


def test_without_ray_installed_local_batch_imports_and_ray_is_a_clear_error(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "import core.batch, core.batch.driver, core.batch.worker, core.batch.pool\n"
            "from core.batch.__main__ import main\n"
            f"sys.exit(main(['--input', {str(ROOT / 'sample_clips')!r}, '--output', {str(tmp_path / 'o')!r}, "
            "'--ray', 'auto']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 16, proc.stderr
    assert "--ray needs Ray" in proc.stderr and "requirements-cluster.txt" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_unreachable_ray_cluster_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "core.batch", "--input", str(ROOT / "sample_clips"), "--output",
                           str(tmp_path / "o"), "--ray", "127.0.0.1:1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 16 and "Cannot reach the Ray cluster at '127.0.0.1:1'" in proc.stderr, proc.stderr
    assert time.monotonic() - started < 30
