"""Checks of command-line values shared by the core's CLI and the add-on's batch (argparse `type=` functions)."""

from __future__ import annotations

import argparse
import math

PERSON_WORDS = ("largest", "left", "right", "all")


def person(value: str) -> str | int:
    """A person choice: largest, left, right, all (every person) or an index counted from the left (0 = left-most)."""
    if value in PERSON_WORDS:
        return value
    try:
        index = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use largest, left, right, all or a person index (0 = left-most)") from None
    if index < 0:
        raise argparse.ArgumentTypeError("a person index counts from 0 (the left-most person)")
    return index


def non_negative(value: str) -> float:
    """A finite number of 0 or more (seconds, Hz)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be a finite number of 0 or more")
    return number
