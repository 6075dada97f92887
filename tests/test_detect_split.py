"""core.detect_split: one person's detection in two processes gives what one process gives (real MediaPipe on the
balance clip, the thresholds lowered so that its 1.7 s split), the child's half is only used when it follows the
same person, and a failed child's half is tracked here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import detect_split
from core.detect2d import detect


@pytest.fixture()
def short_split(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Split ranges of 1 s or more, with a 0.3 s overlap; returns the list of the same-person verdicts taken."""
    monkeypatch.setattr(detect_split, "MIN_RANGE_S", 1.0)
    monkeypatch.setattr(detect_split, "OVERLAP_S", 0.3)
    monkeypatch.setattr(detect_split, "CHILD_START_FRAMES", 0)
    verdicts: list[bool] = []
    same = detect_split._same_person

    def spy(*args):
        verdicts.append(same(*args))
        return verdicts[-1]

    monkeypatch.setattr(detect_split, "_same_person", spy)
    return verdicts


@pytest.fixture(scope="module")
def one_process(balance_clip: Path):
    mp = pytest.MonkeyPatch()
    mp.setenv("MIMIC_DETECT_PROCESSES", "1")
    try:
        return detect(balance_clip, cache_dir=False)
    finally:
        mp.undo()


def test_two_processes_give_what_one_gives(balance_clip: Path, one_process, short_split: list[bool]) -> None:
    two = detect(balance_clip, cache_dir=False)
    assert short_split == [True]  # the child's half was compared, and used
    assert np.array_equal(two.times, one_process.times) and np.array_equal(two.present, one_process.present)
    gap = np.linalg.norm(two.image[two.present, :, :2] - one_process.image[one_process.present, :, :2], axis=-1)
    # MediaPipe's smoothing restarts in the child: its first frames after the 0.3 s overlap differ a little
    assert np.median(gap) < 0.5 and np.percentile(gap, 95) < 0.005 * two.height, np.percentile(gap, 95)


def test_a_failed_child_is_replaced_by_this_process(balance_clip: Path, one_process, short_split: list[bool],
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(detect_split, "ROOT", tmp_path)  # `python -m core.detect_split` fails there
    two = detect(balance_clip, cache_dir=False)
    assert short_split == []  # nothing came back to compare
    assert np.array_equal(two.image, one_process.image, equal_nan=True)  # this tracker carried on: exactly one's


def test_another_person_in_the_overlap_is_refused() -> None:
    """_same_person on synthetic tracks: the same track, another place, and presence that disagrees."""
    rng = np.random.default_rng(0)
    times = [i / 30 for i in range(60)]
    image = np.zeros((60, 33, 3))
    image[..., :2] = 500 + rng.normal(0, 40, (33, 2))
    same = (times, image, image)
    assert detect_split._same_person(same, (times[30:], image[30:], image[30:]), split=1.5)
    moved = image.copy()
    moved[..., 0] += 300  # another person, beside the first
    assert not detect_split._same_person(same, (times[30:], moved[30:], moved[30:]), split=1.5)
    flicker = image.copy()
    flicker[30::2] = np.nan  # the child sees the person in every other frame only
    assert not detect_split._same_person(same, (times[30:], flicker[30:], flicker[30:]), split=1.5)
