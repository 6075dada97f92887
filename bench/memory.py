"""Peak memory of the whole CLI on a short and a long clip: the summed RSS of its process tree (the core and the
detection child of core/detect_split.py), sampled every 0.2 s from /proc (Linux).

Usage: .venv/bin/python bench/memory.py [--minutes 1 20] [CLIP ...]

With no clip, makes 1080×1920 clips of the given lengths at 30 fps from the sample clip played back and forth
(bench/speed.py's ping_pong; a 20-minute clip is about 0.8 GB, in a temporary folder) and runs
`python -m core CLIP -o OUT.bvh --no-cache` on each. Prints each clip's peak and wall time, and the ratio of the
longest clip's peak to the shortest's (issue 14: within 1.5×). Measured with this sampler on 1- and 20-minute
1080p clips (30 fps): 1178 MB and 1245 MB, 1.06×, 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from speed import ping_pong  # noqa: E402

SOURCE = ROOT / "sample_clips" / "pose2sim_balance.mp4"
TARGET_RATIO = 1.5


def tree_rss_mb(pid: int) -> int:
    """Summed resident memory of `pid` and every process below it, MB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        proc = stack.pop()
        stack += children.get(proc, [])
        try:
            with open(f"/proc/{proc}/status") as fh:
                total += next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total // 1024


def peak(cmd: list[str]) -> tuple[int, float]:
    """Run `cmd`; its process tree's peak RSS (MB) and wall time (s)."""
    start, top = time.monotonic(), 0
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:
        top = max(top, tree_rss_mb(proc.pid))
        time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode})")
    return top, time.monotonic() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="*", type=Path, help="clips to run (default: made from the sample clip)")
    p.add_argument("--minutes", nargs="+", type=float, default=[1.0, 20.0], help="lengths of the made clips")
    a = p.parse_args()
    if not Path("/proc").is_dir():
        sys.exit("error: bench/memory.py reads /proc (Linux only).")
    with tempfile.TemporaryDirectory(prefix="mimic-memory-") as tmp:
        clips = a.clips or [ping_pong(SOURCE, int(m * 60 * 30), Path(tmp) / f"clip_{m:g}min.mp4", fps=30.0)
                            for m in a.minutes]
        peaks = []
        for clip in clips:
            mb, seconds = peak([sys.executable, "-m", "core", str(clip), "-o", str(Path(tmp) / "out.bvh"),
                                "--no-cache", "--overwrite", "--progress", "none"])
            peaks.append(mb)
            print(f"{clip.name}: peak {mb} MB, {seconds:.0f} s", flush=True)
    if len(peaks) > 1:
        print(f"longest / shortest peak: {peaks[-1] / peaks[0]:.2f} (target <= {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
