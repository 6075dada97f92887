"""Batch conversion of a folder of clips: `python -m core.batch` on all local cores, or on a Ray cluster with --ray
(Ray is imported only then). See docs/BATCH.md."""

from core.batch.driver import Config, Summary, run_batch

__all__ = ["Config", "Summary", "run_batch"]
