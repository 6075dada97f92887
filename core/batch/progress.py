"""Batch progress: a tqdm bar of clips on a terminal, or JSON lines on stdout (one per clip started and finished).

JSON lines, one object per line, flushed:
  {"batch": {"clips": 20, "workers": 2, "backend": "local", "formats": [...], "manifest": "/abs/manifest.jsonl"}}
  {"start": {"clip": "walk.mp4", "stage": "core"|"blender", "attempt": 1, "worker": {"pid": 123, "host": "n1"}}}
  {"warning": "..."}
  {"clip": {<the manifest record>}, "done": 3, "total": 20}
  {"done": true, "ok": 18, "failed": 1, "skipped": 1, "seconds": 80.2, "clips_per_minute": 14.2, "manifest": "..."}
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any


class BatchProgress:
    """mode: "bar" (tqdm on stderr), "json" (stdout), "none"; "auto" = bar on a terminal, else none."""

    def __init__(self, mode: str) -> None:
        self.quiet = mode == "none"  # "auto" off a terminal still prints failures and the summary on stderr
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "none"
        self.mode = mode
        self.bar: Any = None
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}
        self.out: IO[str] = sys.stdout
        self._saved_fd: int | None = None
        if mode == "json":
            self._own_stdout()

    def _own_stdout(self) -> None:
        """Keep stdout for the JSON lines only: they go to a duplicate of fd 1, and fd 1 itself (where Ray's and
        C++ libraries' messages are printed) is pointed at stderr until close()."""
        try:
            fd = sys.stdout.fileno()
            sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # stdout is not a file (captured): nothing else prints there
            return
        sys.stdout.flush()
        self._saved_fd = os.dup(fd)
        self.out = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8")
        os.dup2(sys.stderr.fileno(), fd)

    def _emit(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def begin(self, **info: Any) -> None:
        if self.mode == "json":
            self._emit({"batch": info})
        elif self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=info["clips"], unit="clip", desc="batch", dynamic_ncols=True, file=sys.stderr)

    def started(self, clip: str, stage: str, attempt: int, worker: dict[str, Any]) -> None:
        if self.mode == "json":
            self._emit({"start": {"clip": clip, "stage": stage, "attempt": attempt, "worker": worker}})

    def warn(self, message: str) -> None:
        if self.mode == "json":
            self._emit({"warning": message})
        elif self.bar is not None:
            self.bar.write(f"warning: {message}", file=sys.stderr)
        elif not self.quiet:
            print(f"warning: {message}", file=sys.stderr)

    def finished(self, record: dict[str, Any], total: int) -> None:
        self.counts[record["status"]] += 1
        done = sum(self.counts.values())
        if self.mode == "json":
            self._emit({"clip": record, "done": done, "total": total})
            return
        if self.bar is not None:
            self.bar.set_postfix(self.counts, refresh=False)
            self.bar.update(1)
        if record["status"] == "failed" and not self.quiet:
            line = f"failed: {record['clip']}: {record['error']['message']}"
            if self.bar is not None:
                self.bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr)

    def end(self, **summary: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode == "json":
            self._emit({"done": True, **self.counts, **summary})
        elif not self.quiet:
            print(f"{self.counts['ok']} converted, {self.counts['failed']} failed, {self.counts['skipped']} skipped "
                  f"in {summary['seconds']:.0f} s ({summary['clips_per_minute']:.1f} clips/min); manifest: "
                  f"{summary['manifest']}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._saved_fd is not None:
            sys.stdout.flush()
            os.dup2(self._saved_fd, sys.stdout.fileno())
            os.close(self._saved_fd)
            self._saved_fd = None
            self.out.close()
            self.out = sys.stdout
