"""Local worker processes: long-lived subprocesses that each load the models once and then take one task at a time
over a JSON-lines pipe; a worker that dies loses no task (its task comes back as a death to resubmit) and is
replaced.

Worker protocol (stdout of the worker, one object per line): {"ready": {"pid", "host", ...}} once warm, then one
{"result": {...}} per task line read from stdin; end of stdin = exit.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.common.errors import MimicError

#: A pool gives up when this many workers in a row die before they are ready (a broken environment, not a clip).
MAX_FAILED_STARTS = 3
TAIL_LINES = 30
POLL_STEP_S = 0.01  # how often poll() looks for finished tasks while it waits


@dataclass
class Outcome:
    """A finished task: `result` is the worker's answer, or None when the worker died (then `error` says how)."""

    key: str
    result: dict[str, Any] | None
    worker: dict[str, Any]
    error: dict[str, Any] | None = None


def death(worker: dict[str, Any], how: str, tail: list[str], exit_code: int = 1) -> dict[str, Any]:
    """The `error` of a task whose worker died: type WorkerDied, what happened, the worker's last output."""
    last = " | ".join(line.strip() for line in tail[-3:] if line.strip())
    message = f"The worker {worker.get('host', '?')}:{worker.get('pid', '?')} died ({how})" + \
              (f"; its last output: {last}" if last else "") + "."
    return {"type": "WorkerDied", "message": message, "exit_code": exit_code}


def exit_description(returncode: int | None) -> tuple[str, int]:
    """('killed by SIGKILL', 137) or ('exit status 3', 3) for a finished process's return code."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}", 128 - returncode
    return f"exit status {returncode}", returncode or 1


class _Worker:
    """One subprocess, its reader threads and the task it holds."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, events: queue.Queue) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, env=env, cwd=cwd)
        self.info: dict[str, Any] = {"pid": self.proc.pid}
        self.ready = False
        self.key: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._stderr = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr.start()
        threading.Thread(target=self._read_stdout, args=(events,), daemon=True).start()

    def _read_stdout(self, events: queue.Queue) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                events.put((self, message))
        events.put((self, None))  # end of output: the worker is gone

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail.append(line)

    def send(self, message: dict[str, Any]) -> None:
        """Write one line to the worker; a worker that has just died is noticed by its reader, not here."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def died(self) -> dict[str, Any]:
        try:
            returncode = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            returncode = self.proc.wait()
        self._stderr.join(timeout=2)
        how, code = exit_description(returncode)
        return death(self.info, how, list(self.tail), code)


class LocalPool:
    """`size` workers running `command`; `unavailable(tail)` builds the error raised when workers cannot start."""

    def __init__(self, command: list[str], size: int, env: dict[str, str], cwd: Path,
                 unavailable: Any) -> None:
        self.command, self.size, self.env, self.cwd = command, size, env, cwd
        self.unavailable = unavailable
        self.events: queue.Queue = queue.Queue()
        self.workers: list[_Worker] = []
        self.info: dict[str, Any] | None = None  # the first ready message
        self._failed_starts = 0
        self._closing = False

    def start(self) -> None:
        while len(self.workers) < self.size:
            self.workers.append(_Worker(self.command, self.env, self.cwd, self.events))

    def free(self) -> int:
        return sum(w.ready and w.key is None for w in self.workers)

    def busy(self) -> int:
        return sum(w.key is not None for w in self.workers)

    def submit(self, key: str, task: dict[str, Any]) -> dict[str, Any]:
        """Give `task` to an idle ready worker (free() > 0); returns that worker's info (pid, host)."""
        worker = next(w for w in self.workers if w.ready and w.key is None)
        worker.key = key
        worker.send(task)
        return worker.info

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Block until one worker is ready; returns its ready message. Raises what `unavailable` builds."""
        deadline = time.monotonic() + timeout
        while self.info is None:
            if time.monotonic() > deadline:
                raise self.unavailable([f"no worker was ready after {timeout:.0f} s"])
            self.poll(min(1.0, max(0.0, deadline - time.monotonic())))
        return self.info

    def poll(self, timeout: float) -> list[Outcome]:
        """Finished tasks (results and deaths) after waiting up to `timeout` s for the first; replaces dead workers.

        The wait sleeps in POLL_STEP_S steps and never blocks in queue.get: that waits in threading.Condition.wait,
        where the exception a stop signal's handler raises can land between a lock's release and its re-acquire,
        and the queue's `with` then fails with "release unlocked lock" instead of the clean stop."""
        out: list[Outcome] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get_nowait()
                break
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return out
                time.sleep(min(POLL_STEP_S, remaining))
        while True:
            self._handle(*event, out)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return out

    def _handle(self, worker: _Worker, message: dict[str, Any] | None, out: list[Outcome]) -> None:
        if message is None:
            error = worker.died()
            if worker in self.workers:
                self.workers.remove(worker)
            if worker.key is not None:
                out.append(Outcome(worker.key, None, worker.info, error))
            if not worker.ready:
                self._failed_starts += 1
                if self._failed_starts >= MAX_FAILED_STARTS and not self._closing:
                    self.close()
                    raise self.unavailable(list(worker.tail))
            if not self._closing:
                self.start()
        elif "ready" in message:
            worker.ready = True
            worker.info = {**worker.info, **message["ready"]}
            self._failed_starts = 0
            self.info = self.info or worker.info
        elif "result" in message and worker.key is not None:
            out.append(Outcome(worker.key, message["result"], worker.info))
            worker.key = None

    def close(self) -> None:
        """Stop every worker: end of input first (a worker between tasks exits at once), then SIGTERM, then SIGKILL."""
        self._closing = True
        for w in self.workers:
            if w.proc.stdin is not None:
                try:
                    w.proc.stdin.close()
                except OSError:
                    pass
            if w.key is not None:
                w.proc.terminate()  # busy: stop the clip (its atomic writes remove their temp files)
        deadline = time.monotonic() + 10
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        self.workers.clear()


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of worker processes: this one, MediaPipe's and TensorFlow's C++ logging quiet."""
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return {**env, **(extra or {})}


def raise_unavailable(problem: str, fix: str, cls: type[MimicError]) -> Any:
    """A factory for LocalPool's `unavailable`: the error with the workers' last output appended to the problem."""
    def build(tail: list[str]) -> MimicError:
        last = " | ".join(line.strip() for line in tail[-4:] if line.strip())
        return cls(f"{problem}{': ' + last if last else ''}.", fix)
    return build
