"""Live capture throughput and latency (`python -m core live`), beside MediaPipe Pose alone on the same frames.

Usage: .venv/bin/python bench/live.py [CLIP] [--seconds S] [--repeat N] [--model full|lite] [--face]

Live: the CLI replays CLIP in real time (its own frame rate) with VMC sent to a UDP socket of this script, which
counts the bundles; prints poses per second (the core's done line, and as received), frames dropped, latency from
frame read to OSC send (median, p95). Reference: MediaPipe Pose alone, tracking mode, the same model, on the same
clip's frames decoded beforehand, one loop: per-frame time median / p95 and the rate it could sustain. Targets on
a 2-core machine: >= 25 fps sustained, median latency <= 80 ms. --face streams expressions too (Face Mesh on the
head; try it on bench/render_hands_face.py's face_0m6.mp4, whose face is close enough to find): printed with the
poses that carried them. The load average is printed before and after, as other work on the machine changes
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

CLIP = ROOT / "sample_clips" / "sports2d_walk.mp4"
TARGET_FPS, TARGET_MEDIAN_MS = 25.0, 80.0


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def run_live(clip: Path, seconds: float | None, model: str, face: bool = False) -> dict:
    """One live run with a UDP receiver here; the done line plus the received bundle count and rate."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    port = sock.getsockname()[1]
    arrivals: list[float] = []
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                sock.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            arrivals.append(time.perf_counter())

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    cmd = [sys.executable, "-m", "core", "live", "--video", str(clip), "--vmc", f"127.0.0.1:{port}",
           "--progress", "json", "--model", model]
    if seconds:
        cmd += ["--seconds", str(seconds)]
    if face:
        cmd += ["--face"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    stop.set()
    thread.join()
    sock.close()
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = next((line for line in lines if line.get("done")), None)
    if proc.returncode != 0 or done is None:
        raise SystemExit(f"live run failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    received = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    faces = sum(1 for line in lines if (line.get("pose") or {}).get("expressions") is not None)
    return {**done, "received": len(arrivals), "received_fps": received, "with_face": faces}


def mediapipe_alone(clip: Path, seconds: float | None, model: str) -> dict:
    """MediaPipe Pose per frame on frames decoded beforehand: per-frame ms median / p95, sustainable fps."""
    from core.live import FrameSource, make_live_pose
    from core.video import frames_of

    source = FrameSource(None, clip, seconds)  # the same range and decoding as the live run
    frames = [f.rgb for f in frames_of(source.info, *source._range, allow_partial=True)]
    pose = make_live_pose(model)
    for _ in range(2):
        pose.process(frames[0])
    pose.reset()
    times = []
    try:
        for rgb in frames:
            t0 = time.perf_counter()
            pose.process(rgb)
            times.append(time.perf_counter() - t0)
    finally:
        pose.close()
    ms = np.array(times) * 1000.0
    return {"frames": len(frames), "fps": 1000.0 / float(np.mean(ms)), "median": float(np.median(ms)),
            "p95": float(np.percentile(ms, 95)), "clip_fps": source.fps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=CLIP)
    parser.add_argument("--seconds", type=float, default=None, help="replay only this much of the clip")
    parser.add_argument("--repeat", type=int, default=1, help="live runs (each printed)")
    parser.add_argument("--model", default="full", choices=("full", "lite"))
    parser.add_argument("--face", action="store_true", help="stream expressions too (python -m core live --face)")
    args = parser.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")

    print(f"{args.clip.name}, model {args.model}{', face' if args.face else ''}; before: {load()}")
    for i in range(args.repeat):
        r = run_live(args.clip, args.seconds, args.model, args.face)
        lat = r["latency_ms"]
        ok = r["fps"] >= TARGET_FPS and (lat["median"] or 1e9) <= TARGET_MEDIAN_MS
        print(f"live #{i + 1}: {r['frames']} poses at {r['fps']:.1f} fps (received {r['received']} bundles at "
              f"{r['received_fps']:.1f}/s), dropped {r['dropped']}, no person {r['no_person']}, latency median "
              f"{lat['median']} ms, p95 {lat['p95']} ms  [{'meets' if ok else 'MISSES'} >= {TARGET_FPS:g} fps, "
              f"median <= {TARGET_MEDIAN_MS:g} ms]" + (f", {r['with_face']} with expressions" if args.face else ""))
    base = mediapipe_alone(args.clip, args.seconds, args.model)
    print(f"MediaPipe Pose alone (same frames, decoded beforehand): {base['frames']} frames, {base['median']:.1f} ms "
          f"median, {base['p95']:.1f} ms p95 per frame = {base['fps']:.1f} fps sustainable (clip: "
          f"{base['clip_fps']:g} fps)")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
