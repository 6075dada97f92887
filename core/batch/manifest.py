"""The results manifest (`manifest.jsonl`): one JSON line per clip, appended and flushed as each clip finishes, and
the resume index built from it.

A line: {"clip": "sub/walk.mp4", "status": "ok"|"failed"|"skipped", "frames": 30, "seconds": 1.8,
"error": null | {"type", "message", "exit_code"}, "sha256": "<content hash>", "outputs": {"bvh": "sub/walk.bvh"},
"attempts": 1, "worker": "host:pid", "settings": "<options hash>", "time": "2026-12-02T21:00:00Z"}.
The file is an append-only log, not rewritten through atomic_path (that would copy it once per clip): a crash can
cut only its last line, which readers skip, and the next writer starts a new line first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from core.pipeline import ConvertOptions

NAME = "manifest.jsonl"
#: ConvertOptions fields that do not change the result (so a clip done with other values is still done).
NEUTRAL_OPTIONS = ("overwrite", "use_cache")


def settings_hash(options: ConvertOptions, rig: str = "") -> str:
    """A short hash of the options that change a clip's result (and the rig retargeted onto, if any): resume redoes
    a clip converted with other ones."""
    fields = {k: v for k, v in asdict(options).items() if k not in NEUTRAL_OPTIONS}
    if rig:
        fields["rig"] = rig
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read(path: Path) -> Iterator[dict[str, Any]]:
    """The manifest's records in order; a line that is not a JSON object (the last one, cut by a crash) is skipped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "clip" in record:
                    yield record
    except FileNotFoundError:
        return


class ResumeIndex:
    """What earlier runs converted, by content hash and settings: a clip is done when an `ok` record of the same
    content and settings lists an existing output for every format asked for (wherever those outputs are named)."""

    def __init__(self, records: Iterator[dict[str, Any]], output: Path) -> None:
        self.output = output
        self.done: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in records:
            if r.get("status") == "ok" and r.get("sha256"):
                self.done.setdefault((r["sha256"], r.get("settings", "")), []).append(r)

    def find(self, sha256: str, settings: str, formats: list[str]) -> dict[str, Any] | None:
        """The newest matching `ok` record, its outputs narrowed to `formats`, or None when the clip must be done."""
        for record in reversed(self.done.get((sha256, settings), [])):
            outputs = record.get("outputs") or {}
            if all(fmt in outputs and (self.output / outputs[fmt]).is_file() for fmt in formats):
                return {**record, "outputs": {fmt: outputs[fmt] for fmt in formats}}
        return None


class Manifest:
    """Appends records to `manifest.jsonl`, one flushed (and fsynced) line each."""

    def __init__(self, path: Path, append: bool) -> None:
        self.path = path
        self._file: IO[str] = open(path, "a" if append else "w", encoding="utf-8")
        if append and self._file.tell() and not _ends_with_newline(path):
            self._file.write("\n")  # the last line was cut by a crash: never glue the next record onto it

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append one record (with the time) and flush it to disk; returns it."""
        record = {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        return record

    def close(self) -> None:
        self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
