"""The Blender stage of a batch: a long-lived Blender Python (the bpy module, or a Blender binary) that exports
the core stage's motion files with the add-on's exporter registry (addon/exporters, through addon/batch.py's
export_clip). The core never imports bpy: the server below is run in that other process."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

from core.common.errors import BackendUnavailable

ROOT = Path(__file__).resolve().parent.parent.parent

#: Run by the Blender Python; argv[-1] is the repository root. Protocol: core/batch/pool.py. A task:
#: {"motion": npz, "clip": video path (its stem names the outputs), "out_dir", "formats", "rig": addon/batch.py's --rig
#: spec or ""}; each rig is loaded once per server.
SERVER = r'''
import json, os, signal, socket, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)
protocol = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.path.insert(0, sys.argv[-1])
from addon import batch, exporters
rigs = {}
def send(message):
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()
names = {fid: e.filename("{stem}") for fid, e in exporters.EXPORTERS.items()}
send({"ready": {"pid": os.getpid(), "host": socket.gethostname(), "names": names}})
for line in sys.stdin:
    task = json.loads(line)
    started = time.monotonic()
    try:
        clip = Path(task["clip"])
        Path(task["out_dir"]).mkdir(parents=True, exist_ok=True)
        outputs = batch.outputs_for(clip, Path(task["out_dir"]), task["formats"])
        spec = task.get("rig", "")
        if spec not in rigs:
            rigs[spec] = batch.Rig(spec)
        frames = batch.export_clip(Path(task["motion"]), clip, outputs, rigs[spec])
        result = {"status": "ok", "frames": frames, "outputs": {f: str(p) for f, p in outputs.items()}}
    except Exception as err:
        error = err.to_json() if hasattr(err, "to_json") else {
            "type": type(err).__name__, "message": str(err) or type(err).__name__, "exit_code": 1}
        result = {"status": "failed", "error": error}
    send({"result": {**result, "seconds": time.monotonic() - started}})
'''


def command(blender: str = "") -> list[str] | None:
    """The command that runs SERVER: `blender` (a Blender binary, or a Python with the bpy module), else this
    Python when it has bpy, else `blender` on the PATH; None when there is none."""
    if not blender:
        if importlib.util.find_spec("bpy") is not None:
            blender = sys.executable
        else:
            blender = shutil.which("blender") or ""
    if not blender:
        return None
    if "blender" in Path(blender).name.lower():
        return [blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python-expr", SERVER, "--",
                str(ROOT)]
    return [blender, "-c", SERVER, str(ROOT)]


def unavailable(formats: list[str], tail: list[str] | None = None) -> BackendUnavailable:
    """The error when no Blender worker can start for `formats`."""
    last = " | ".join(line.strip() for line in (tail or [])[-4:] if line.strip())
    return BackendUnavailable(
        f"Formats {', '.join(formats)} are written by Blender's exporters, and no Blender worker could start"
        f"{': ' + last if last else ''}.",
        "Install the bpy module (requirements-dev.txt) or pass --blender /path/to/blender; or ask only for core "
        "formats (bvh, npz).")


class BlenderActor:
    """The Ray actor of the Blender stage (wrapped with ray.remote by core/batch/ray_pool.py): one Blender server
    subprocess, restarted when it dies (the task it held comes back as {"died": error})."""

    def __init__(self, blender: str, formats: list[str]) -> None:
        from core.batch.pool import LocalPool, worker_env

        cmd = command(blender)
        if cmd is None:
            raise unavailable(formats)
        self.pool = LocalPool(cmd, 1, worker_env(), ROOT, lambda tail: unavailable(formats, tail))
        self.pool.start()
        self.info = self.pool.wait_ready(600)

    def ready(self) -> dict[str, Any]:
        return self.info

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        self.pool.wait_ready(600)
        while not self.pool.free():
            self.pool.poll(0.5)
        self.pool.submit("task", task)
        while True:
            for outcome in self.pool.poll(1.0):
                return outcome.result if outcome.result is not None else {"died": outcome.error}


def has_blender(blender: str) -> bool:
    """Whether this machine can run the Blender stage (Ray probes a node with it)."""
    return command(blender) is not None
