"""Left/right mirroring of named points: each name's counterpart on the other side, as index arrays.

Names follow MediaPipe (`left_wrist`, `mouth_left`: a `left`/`right` word between underscores) or Unity Humanoid
(`LeftHand`: a `Left`/`Right` prefix); a name without a side is its own counterpart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_WORDS = {"left": "right", "right": "left"}
_PREFIXES = {"Left": "Right", "Right": "Left"}


def counterpart(name: str) -> str:
    """The other side's name (`left_hip` <-> `right_hip`, `mouth_left` <-> `mouth_right`, `LeftFoot` <->
    `RightFoot`); itself on the midline."""
    if "_" in name or name.islower():
        return "_".join(_WORDS.get(w, w) for w in name.split("_"))
    for side, other in _PREFIXES.items():
        if name.startswith(side):
            return other + name[len(side):]
    return name


def mirror_index(names: Sequence[str]) -> np.ndarray:
    """(K,) int: for each of `names`, the index of its counterpart (itself on the midline)."""
    names = list(names)
    return np.array([names.index(counterpart(n)) if counterpart(n) in names else i for i, n in enumerate(names)],
                    dtype=np.int64)


def sides(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the left-side and of the right-side names, each (L,) int, in the order given."""
    left = [i for i, n in enumerate(names) if counterpart(n) != n and "left" in n.lower().split("_")[0]]
    right = [i for i, n in enumerate(names) if counterpart(n) != n and "right" in n.lower().split("_")[0]]
    return np.array(left, dtype=np.int64), np.array(right, dtype=np.int64)
