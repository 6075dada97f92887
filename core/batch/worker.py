"""The core stage of one clip, run in a worker that keeps the models loaded between clips: a local worker process
(`python -m core.batch.worker`, the JSON-lines protocol of core/batch/pool.py) or a Ray actor (`ClipActor`)."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from core.common.errors import Interrupted, MimicError, OutputNotWritable


def warm(options: dict[str, Any]) -> dict[str, Any]:
    """Load what every clip needs once: the imports, the lifter (kept: pipeline's get_lifter is memoised in this
    worker process) and MediaPipe's pose graph; options["threads"]: this worker's share of the cores for torch and
    OpenCV and whether a clip's detection may take a second process (workers side by side must not each use every
    core). Returns the worker's info (pid, host)."""
    import cv2
    import torch

    from core import lift, pipeline
    from core.detect2d import make_pose

    if options.get("threads"):
        torch.set_num_threads(int(options["threads"]))
        cv2.setNumThreads(int(options["threads"]))
        if int(options["threads"]) < 2:  # workers side by side already fill the cores: no second process per clip
            os.environ["MIMIC_DETECT_PROCESSES"] = os.environ["MIMIC_HANDS_FACE_PROCESSES"] = "1"

    if not hasattr(pipeline.get_lifter, "cache_info"):
        pipeline.get_lifter = functools.lru_cache(maxsize=4)(lift.get_lifter)
    weights = options.get("weights")
    pipeline.get_lifter(options.get("lifter", lift.DEFAULT_LIFTER), Path(weights) if weights else None)
    make_pose(False).close()
    return {"pid": os.getpid(), "host": socket.gethostname()}


def convert_task(task: dict[str, Any]) -> dict[str, Any]:
    """Convert task["clip"] with task["options"] (ConvertOptions fields) and write task["outputs"] (format -> path),
    each atomically. Returns {"status": "ok", "frames", "seconds", "outputs"} or {"status": "failed", "error"}: a
    broken clip is a result, never an exception (Interrupted passes through)."""
    from core import pipeline

    started = time.monotonic()
    outputs = {fmt: Path(p) for fmt, p in task["outputs"].items()}
    try:
        options = pipeline.ConvertOptions(**task["options"])
        motion = pipeline.run(Path(task["clip"]), options)
        for out in outputs.values():
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputNotWritable(f"Cannot create {out.parent}: {exc.strerror}.",
                                        "Choose an output folder you can write to.") from exc
            pipeline.write(motion, out, options.units)
        return {"status": "ok", "frames": motion.num_frames, "seconds": time.monotonic() - started,
                "outputs": {fmt: str(p) for fmt, p in outputs.items()}}
    except MimicError as err:
        error = err.to_json()
    except Exception as exc:  # a bug, not bad input: one clip's failure, with where it happened
        where = traceback.extract_tb(exc.__traceback__)[-1]
        error = {"type": "InternalError", "exit_code": 1,
                 "message": f"Internal error: {type(exc).__name__}: {exc} "
                            f"({Path(where.filename).name}:{where.lineno}). "
                            "Please report it."}
    return {"status": "failed", "error": error, "seconds": time.monotonic() - started}


class ClipActor:
    """The Ray actor of the core stage (wrapped with ray.remote by core/batch/ray_pool.py): warm once, then clips."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.info = warm(options)

    def ready(self) -> dict[str, Any]:
        return self.info

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        return convert_task(task)


def serve() -> int:
    """The local worker's loop: warm up with the options in argv[1] (JSON), then one task per line of stdin."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the driver decides

    def send(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    from core.common.signals import stop_on_signals

    try:
        with stop_on_signals():  # SIGTERM from the driver: the clip's atomic writes clean up, then exit
            options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
            send({"ready": warm(options)})
            for line in sys.stdin:
                send({"result": convert_task(json.loads(line))})
    except Interrupted as err:
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(serve())
