"""The batch's scheduler: hash each clip, skip what an earlier run did (--resume), hand the rest to the core stage's
workers and then, for Blender-side formats, to the Blender stage's; resubmit a clip whose worker died (up to
--retries times), and append each clip's record to the manifest as it finishes."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.batch import blender as blender_stage
from core.batch import manifest
from core.batch.clips import WORK_DIR, Clip, collisions, core_formats, find_clips, plan, split_formats
from core.batch.pool import LocalPool, Outcome, raise_unavailable, worker_env
from core.batch.progress import BatchProgress
from core.common.errors import BackendUnavailable, InputNotFound, OutputExists, OutputNotWritable
from core.pipeline import ConvertOptions

ROOT = Path(__file__).resolve().parent.parent.parent
HASH_THREADS = 4
READY_TIMEOUT_S = 600


class UsageError(ValueError):
    """A bad command line found after parsing (a format no stage writes): exit 2, like argparse's errors."""


@dataclass
class Config:
    """Everything one batch run needs (the parsed command line)."""

    input: Path
    output: Path
    formats: list[str]
    options: ConvertOptions = field(default_factory=ConvertOptions)
    workers: int | None = None
    retries: int = 2
    resume: bool = False
    overwrite: bool = False
    ray: str = ""
    blender: str = ""
    rig: str = ""
    use_gpu: bool = True
    progress: str = "auto"


@dataclass
class Summary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    manifest: Path | None = None


class Backend:
    """Where the stages run: local worker processes, or Ray actors. Pools are started on first use."""

    def __init__(self, cfg: Config, progress: BatchProgress) -> None:
        self.cfg, self.progress = cfg, progress
        self.ray: Any = None
        self.core: Any = None
        self.blender: Any = None
        if cfg.ray:
            from core.batch import ray_pool

            self.ray = ray_pool.connect(cfg.ray, cfg.workers if cfg.ray == "local" else None,
                                        ray_pool.worker_env(str(ROOT)))

    @property
    def name(self) -> str:
        return f"ray:{self.cfg.ray}" if self.ray is not None else "local"

    def default_workers(self) -> int:
        if self.cfg.workers:
            return self.cfg.workers
        if self.ray is not None:
            return max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        return os.cpu_count() or 1

    def core_pool(self, clips: int) -> Any:
        """The core stage's pool, started with min(workers, clips) workers."""
        if self.core is not None:
            return self.core
        size = max(1, min(self.default_workers(), clips))
        cpus = self.ray.cluster_resources().get("CPU", 1) if self.ray is not None else os.cpu_count() or 1
        threads = max(1, int(cpus) // size)  # workers side by side share the cores
        opts = {"lifter": self.cfg.options.lifter, "weights": self.cfg.options.weights, "threads": threads}
        unavailable = raise_unavailable("The conversion workers could not start",
                                        "Check that this Python runs `python -m core` (pip install -r "
                                        "requirements.txt).", BackendUnavailable)
        if self.ray is not None:
            from core.batch import ray_pool
            from core.batch.worker import ClipActor

            gpus = ray_pool.gpu_share(self.ray.cluster_resources().get("GPU", 0),
                                      self.cfg.use_gpu and ray_pool.cuda_on_cluster(self.ray), size)
            self.progress.warn(f"Ray: {size} core workers, {gpus:g} GPU each" +
                               (" (torch sees CUDA on the cluster)" if gpus else " (no CUDA on the cluster, or "
                                                                                 "--no-gpu)"))
            self.core = ray_pool.RayPool(self.ray, ClipActor, (opts,), size, {"num_cpus": 1, "num_gpus": gpus},
                                         unavailable)
        else:
            import json

            command = [sys.executable, "-m", "core.batch.worker", json.dumps(opts)]
            self.core = LocalPool(command, size, worker_env(), ROOT, unavailable)
        self.core.start()
        return self.core

    def blender_pool(self, formats: list[str]) -> Any:
        """The Blender stage's pool, started and ready (its ready message names the registry's formats)."""
        if self.blender is None:
            def unavailable(tail: list[str]) -> BackendUnavailable:
                return blender_stage.unavailable(formats, tail)

            if self.ray is not None:
                from core.batch import ray_pool

                options, count = ray_pool.blender_placement(self.ray, self.cfg.blender, formats)
                self.blender = ray_pool.RayPool(self.ray, blender_stage.BlenderActor, (self.cfg.blender, formats),
                                                count, options, unavailable)
            else:
                command = blender_stage.command(self.cfg.blender)
                if command is None:
                    raise unavailable([])
                self.blender = LocalPool(command, 1, worker_env(), ROOT, unavailable)
            self.blender.start()
        self.blender.wait_ready(READY_TIMEOUT_S)
        return self.blender

    def pools(self) -> list[Any]:
        return [p for p in (self.core, self.blender) if p is not None]

    def close(self) -> None:
        for pool in self.pools():
            pool.close()
        if self.ray is not None:
            self.ray.shutdown()


def _hash(path: Path) -> tuple[str, dict[str, Any] | None]:
    """(sha256 of the content, None) or ("", error) for a clip that cannot be read."""
    from core.detect2d import file_sha256

    try:
        return file_sha256(path), None
    except OSError as exc:
        error = InputNotFound(f"Cannot read {path}: {exc.strerror}.", "Check the file and its permissions.")
        return "", error.to_json()


class Batch:
    """One run: the clips' states, the queues of both stages and the manifest."""

    def __init__(self, cfg: Config, progress: BatchProgress) -> None:
        self.cfg, self.progress = cfg, progress
        paths = find_clips(cfg.input, cfg.output)
        if not paths:
            raise InputNotFound(f"No videos in {cfg.input}.", "Give a folder holding .mp4, .mov, .avi, .mkv or .webm "
                                "files (sub-folders are searched too).")
        self.core_formats, self.blender_formats = split_formats(cfg.formats, cfg.rig)
        self.clips = plan(paths, cfg.input, cfg.output, self.core_formats, self.blender_formats)
        self.settings = manifest.settings_hash(cfg.options, cfg.rig)
        self.summary = Summary(manifest=cfg.output / manifest.NAME)
        self.backend: Backend | None = None
        self.manifest: manifest.Manifest | None = None
        self.index: manifest.ResumeIndex | None = None
        self.workers = 1
        self.queue1: deque[Clip] = deque()
        self.queue2: deque[Clip] = deque()
        self.inflight: dict[str, Clip] = {}
        self.remaining = len(self.clips)

    def prepare(self) -> None:
        """Everything that can fail before a clip is touched: the backend, Blender's formats, the output folder,
        the manifest."""
        self.backend = Backend(self.cfg, self.progress)
        self.workers = self.backend.default_workers()
        if self.blender_formats:
            names = self.backend.blender_pool(self.blender_formats).info["names"]
            unknown = [f for f in self.blender_formats if f not in names]
            if unknown:
                known = [*core_formats(), *(n for n in names if n not in core_formats())]
                raise UsageError(f"--format: unknown {', '.join(unknown)}; use {', '.join(known)}")
        out = self.cfg.output
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritable(f"Cannot create the output folder {out}: {exc.strerror}.",
                                    "Choose a folder you can write to.") from None
        path = out / manifest.NAME
        if path.exists() and not (self.cfg.resume or self.cfg.overwrite):
            raise OutputExists(f"{out} holds an earlier batch ({manifest.NAME}).",
                               "Pass --resume to convert only what it has not done, or --overwrite to start again.")
        self.index = manifest.ResumeIndex(manifest.read(path), out) if self.cfg.resume else None
        try:
            self.manifest = manifest.Manifest(path, append=self.cfg.resume)
        except OSError as exc:
            raise OutputNotWritable(f"Cannot write {path}: {exc.strerror}.", "Choose a folder you can write to.") \
                from None

    def run(self) -> Summary:
        """Convert every clip (after prepare()); returns the counts."""
        assert self.backend is not None
        started = time.monotonic()
        self.progress.begin(clips=len(self.clips), workers=self.workers, backend=self.backend.name,
                            formats=self.cfg.formats, manifest=str(self.summary.manifest))
        bad = collisions(self.clips)
        hasher = ThreadPoolExecutor(HASH_THREADS)  # content hashes are read ahead while clips convert
        try:
            hashed = zip(self.clips, hasher.map(_hash, [c.path for c in self.clips]))
            while self.remaining:
                self._feed(hashed, bad)
                self._dispatch()
                for outcome in self._poll():
                    self._handle(outcome)
        finally:
            hasher.shutdown(wait=True, cancel_futures=True)
        self.summary.seconds = time.monotonic() - started
        done = self.summary.ok + self.summary.failed
        self.progress.end(seconds=round(self.summary.seconds, 2), manifest=str(self.summary.manifest),
                          clips_per_minute=round(60.0 * done / self.summary.seconds, 2) if self.summary.seconds else 0)
        return self.summary

    def _feed(self, hashed: Iterator[tuple[Clip, tuple[str, dict | None]]], bad: dict[str, dict]) -> None:
        """Take hashed clips until the core stage has a queue to work on: skip done ones, fail unreadable ones."""
        while len(self.queue1) < 2 * self.workers:
            item = next(hashed, None)
            if item is None:
                return
            clip, (sha, error) = item
            clip.sha256 = sha
            if clip.rel in bad or error is not None:
                self._finish(clip, "failed", bad.get(clip.rel) or error)
                continue
            earlier = self.index.find(sha, self.settings, self.cfg.formats) if self.index is not None else None
            if earlier is not None:
                self._record(clip, "skipped", frames=earlier.get("frames", 0), outputs=earlier["outputs"],
                             seconds=0.0, worker=None)
                continue
            self.queue1.append(clip)

    def _dispatch(self) -> None:
        """Give queued clips to free workers of each stage (a stage's pool starts when it first has a clip)."""
        assert self.backend is not None
        if self.queue1:
            pool = self.backend.core_pool(len(self.clips))
            while self.queue1 and pool.free():
                clip = self.queue1.popleft()
                clip.attempts += 1
                outputs = dict(clip.outputs)
                if clip.motion is not None:
                    outputs["npz"] = clip.motion
                task = {"clip": str(clip.path), "outputs": {f: str(p) for f, p in outputs.items()},
                        "options": asdict(self.cfg.options)}
                self.inflight[f"1:{clip.rel}"] = clip
                self.progress.started(clip.rel, "core", clip.attempts, pool.submit(f"1:{clip.rel}", task))
        if self.queue2:
            pool = self.backend.blender_pool(self.blender_formats)
            while self.queue2 and pool.free():
                clip = self.queue2.popleft()
                clip.attempts2 += 1
                task = {"motion": str(clip.motion), "clip": str(clip.path), "out_dir": str(clip.out_dir),
                        "formats": self.blender_formats, "rig": self.cfg.rig}
                self.inflight[f"2:{clip.rel}"] = clip
                self.progress.started(clip.rel, "blender", clip.attempts2, pool.submit(f"2:{clip.rel}", task))

    def _poll(self) -> list[Outcome]:
        """Finished tasks of every pool, waiting up to 0.1 s (also lets warming workers report ready)."""
        assert self.backend is not None
        pools = self.backend.pools()
        outcomes: list[Outcome] = []
        for i, pool in enumerate(pools):
            outcomes += pool.poll(0.1 if i == 0 and not outcomes else 0)
        return outcomes

    def _handle(self, outcome: Outcome) -> None:
        clip = self.inflight.pop(outcome.key)
        stage = outcome.key[0]
        worker = f"{outcome.worker.get('host', '?')}:{outcome.worker.get('pid', '?')}"
        if outcome.result is None:  # the worker died: the clip is not lost
            tries = clip.attempts if stage == "1" else clip.attempts2
            if tries <= self.cfg.retries:
                self.progress.warn(f"{clip.rel}: {outcome.error['message']} Resubmitting it (try "
                                   f"{tries + 1} of {self.cfg.retries + 1}).")
                (self.queue1 if stage == "1" else self.queue2).appendleft(clip)
            else:
                self._finish(clip, "failed", outcome.error, worker=worker)
            return
        result = outcome.result
        clip.seconds += result.get("seconds", 0.0)
        if result["status"] != "ok":
            self._finish(clip, "failed", result["error"], worker=worker)
            return
        clip.frames = result.get("frames", clip.frames)
        clip.written.update({f: p for f, p in result["outputs"].items() if f in self.cfg.formats})
        if stage == "1" and self.blender_formats:
            self.queue2.append(clip)
            return
        self._finish(clip, "ok", None, worker=worker)

    def _finish(self, clip: Clip, status: str, error: dict[str, Any] | None, worker: str | None = None) -> None:
        if clip.motion is not None and clip.motion.is_relative_to(self.cfg.output / WORK_DIR):
            clip.motion.unlink(missing_ok=True)
        outputs = {f: os.path.relpath(p, self.cfg.output) for f, p in clip.written.items()} if status == "ok" else {}
        self._record(clip, status, frames=clip.frames if status == "ok" else 0, outputs=outputs,
                     seconds=round(clip.seconds, 3), worker=worker, error=error)

    def _record(self, clip: Clip, status: str, frames: int, outputs: dict[str, str], seconds: float,
                worker: str | None, error: dict[str, Any] | None = None) -> None:
        """Append the clip's manifest line (outputs relative to the output folder) and count it."""
        assert self.manifest is not None
        record = self.manifest.write({
            "clip": clip.rel, "status": status, "frames": frames, "seconds": seconds, "error": error,
            "sha256": clip.sha256, "outputs": {f: Path(p).as_posix() for f, p in outputs.items()},
            "attempts": clip.attempts + clip.attempts2, "worker": worker, "settings": self.settings})
        setattr(self.summary, status, getattr(self.summary, status) + 1)
        self.remaining -= 1
        self.progress.finished(record, len(self.clips))

    def close(self) -> None:
        """Stop the workers (a clip in flight is abandoned: its atomic writes leave no file), remove the work folder
        and the temp files of workers that were killed."""
        if self.backend is not None:
            self.backend.close()
        folders = {c.out_dir for c in self.inflight.values()}
        folders |= {c.motion.parent for c in self.inflight.values() if c.motion is not None}
        _sweep(folders, wait=bool(folders) and self.backend is not None and self.backend.ray is not None)
        shutil.rmtree(self.cfg.output / WORK_DIR, ignore_errors=True)
        if self.manifest is not None:
            self.manifest.close()


def _sweep(folders: set[Path], wait: bool) -> None:
    """Delete the temp files that dead workers left in `folders`; `wait`: give killed Ray actors (whose death is
    asynchronous) up to 5 s to be gone first."""
    from core.common.atomic import sweep_orphans

    deadline = time.monotonic() + (5.0 if wait else 0.0)
    while True:
        for folder in folders:
            sweep_orphans(folder)
        left = [e for f in folders if f.is_dir() for e in f.iterdir() if e.name.startswith(".") and ".part" in e.name]
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def run_batch(cfg: Config) -> Summary:
    """Convert every clip of cfg.input; failures are manifest records, never exceptions. Raises MimicError (or
    UsageError) only when the batch cannot start, Interrupted when stopped by a signal."""
    progress = BatchProgress(cfg.progress)
    batch = Batch(cfg, progress)
    try:
        batch.prepare()
        return batch.run()
    finally:
        progress.close()
        batch.close()
