"""Batch throughput on a local Ray cluster: 20 clips (19 one-second cuts of the sample clips and one broken file),
converted with 1 and then 2 workers; in each run the worker converting one clip is killed mid-clip (the clip must
still complete). Then --resume on the 2-worker output, which must convert nothing but the broken file again.

Usage: .venv/bin/python bench/batch.py [--clips 20] [--scale 1.0] [--workers 1,2] [--keep DIR]

Prints, per worker count: clips per minute (clips finished / the batch's seconds, as `python -m core.batch` reports
them: from after joining Ray to the last clip, the workers' warm-up included; the wall time of the whole command,
Ray's start-up included, beside it), and checks the manifest:
every good clip `ok` with the right frame count, the broken one `failed`, the killed clip done on its second try.
Detection's cache is off (--no-cache), so each run does all the work. Needs requirements-cluster.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

SOURCES = [("sports2d_walk", 30), ("pose2sim_balance", 60)]  # (clip, frames in a 1-second cut)
VICTIM = "clip05.mp4"


def cut(src: Path, dst: Path, start_s: float, scale: float) -> int:
    """One second of `src` from `start_s`, scaled by `scale`, as MP4; returns its frame count."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    first = min(round(start_s * fps), total - round(fps))
    cap.set(cv2.CAP_PROP_POS_FRAMES, first)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) * scale) // 2 * 2,
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) * scale) // 2 * 2)
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    frames = 0
    for _ in range(round(fps)):
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(frame if scale == 1.0 else cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
        frames += 1
    writer.release()
    return frames


def make_clips(folder: Path, count: int, scale: float) -> dict[str, int]:
    """count - 1 cuts (clipNN.mp4, alternating sources and start times) and broken.mp4; returns clip -> frames."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = {}
    for i in range(count - 1):
        name, _ = SOURCES[i % 2]
        frames[f"clip{i:02d}.mp4"] = cut(ROOT / "sample_clips" / f"{name}.mp4", folder / f"clip{i:02d}.mp4",
                                         0.25 * (i // 2), scale)
    data = (folder / "clip00.mp4").read_bytes()
    (folder / "broken.mp4").write_bytes(data[:len(data) // 2])  # cut short: not a video
    return frames


def batch(clips: Path, out: Path, workers: int, *extra: str, kill: str = "") -> tuple[list[dict[str, Any]], float]:
    """Run `python -m core.batch --ray local`; SIGKILL the worker of `kill` 0.3 s after it starts (mid-clip).
    Returns the JSON events and the wall time."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "core.batch", "--input", str(clips), "--output", str(out),
                             "--format", "bvh,npz", "--ray", "local", "--workers", str(workers), "--no-cache",
                             "--progress", "json", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    events: list[dict[str, Any]] = []
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        events.append(json.loads(line))
        start = events[-1].get("start")
        if start and start["clip"] == kill and start["attempt"] == 1:
            time.sleep(0.3)
            os.kill(start["worker"]["pid"], signal.SIGKILL)
    stderr = proc.stderr.read()
    proc.wait()
    if not events or "done" not in events[-1]:
        sys.exit(f"the batch failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return events, time.monotonic() - started


def check(out: Path, frames: dict[str, int], events: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the manifest of a first run (nothing: [])."""
    records = {r["clip"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    problems = []
    if set(records) != {*frames, "broken.mp4"}:
        problems.append(f"clips in the manifest: {sorted(records)}")
    if records.get("broken.mp4", {}).get("status") != "failed":
        problems.append("broken.mp4 is not failed")
    for clip, n in frames.items():
        r = records.get(clip, {})
        written = all((out / p).is_file() for p in r.get("outputs", {}).values())
        if r.get("status") != "ok" or r.get("frames") != n or not written:
            problems.append(f"{clip}: {r}")
    victim = records.get(VICTIM, {})
    if victim.get("attempts") != 2 or not any("died" in e.get("warning", "") for e in events):
        problems.append(f"{VICTIM} was not resubmitted after its worker was killed: {victim}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--scale", type=float, default=1.0, help="scale of the cuts (1.0: the samples' resolution)")
    p.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    p.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mimic-bench-batch-"))
    frames = make_clips(work / "clips", args.clips, args.scale)
    print(f"{args.clips} clips ({len(frames)} one-second cuts at scale {args.scale:g}, {sum(frames.values())} "
          f"frames, and broken.mp4); {os.cpu_count()} CPU cores; worker running {VICTIM} killed in each run")
    ok = True
    for workers in (int(w) for w in args.workers.split(",")):
        out = work / f"out-{workers}"
        load = os.getloadavg()[0]  # other work on a shared machine shows here
        events, wall = batch(work / "clips", out, workers, kill=VICTIM)
        done = events[-1]
        problems = check(out, frames, events)
        ok &= not problems
        per_clip = [e["clip"]["seconds"] for e in events if "clip" in e and e["clip"]["status"] == "ok"]
        print(f"{workers} worker{'s' if workers > 1 else ' '}: {done['clips_per_minute']:6.2f} clips/min "
              f"({done['ok']} ok, {done['failed']} failed in {done['seconds']:.1f} s; {wall:.1f} s with Ray's "
              f"start-up; {sum(per_clip) / len(per_clip):.2f} s per clip on a worker; load average before "
              f"{load:.1f}) manifest {'correct' if not problems else 'WRONG: ' + '; '.join(problems)}")
        last = out
    events, wall = batch(work / "clips", last, 2, "--resume")
    redone = sorted({e["start"]["clip"] for e in events if "start" in e})
    ok &= redone == ["broken.mp4"]
    print(f"--resume: converted {redone or 'nothing'} again ({events[-1]['skipped']} skipped, {wall:.1f} s)")
    if args.keep is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
