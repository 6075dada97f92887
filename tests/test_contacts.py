"""core.contacts: per heel/toe contact probabilities, hysteresis, drifting floors, and a real mocap walk's contacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.common import rigs
from core.common.motionfile import CONTACT_POINTS
from core.contacts import ContactSettings, contact_probability, foot_contacts
from core.ik import load_ik_rig

ROOT = Path(__file__).resolve().parent.parent
FPS = 30.0
RIG = load_ik_rig()
NAMES = rigs.landmark_names()
WALK = ROOT / ".cache" / "validation" / "walk__three_quarter.npz"  # bench/render_validation.py: exact mocap truth


def standing_body(frames: int) -> np.ndarray:
    """(F, 33, 3) a 1.7 m tall column of landmarks standing at the origin (head at 1.7 m, feet at 0)."""
    kp = np.zeros((frames, 33, 3))
    kp[..., 1] = np.linspace(1.7, 0.0, 33)
    for k in (k for side in RIG.feet.values() for k in side):
        kp[:, k, 1] = 0.0
    return kp


def stepping(frames: int, drift_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A body whose left foot steps (up 30 cm and forward) in the first second of every two while the right one stays
    put; the whole body drifts up by drift_m over the clip, as lifted depth does. Returns keypoints and the lift."""
    t = np.arange(frames) / FPS
    kp = standing_body(frames)
    lift = np.clip(np.sin(np.pi * t), 0.0, None) * 0.3
    left = list(RIG.feet["left"])
    kp[:, left, 1] += lift[:, None]
    kp[:, left, 2] += (0.4 * np.floor(t / 2) + 0.4 * (1 - np.cos(np.pi * np.minimum(t % 2, 1))) / 2)[:, None]
    kp[..., 1] += np.linspace(0.0, drift_m, frames)[:, None]
    return kp, lift


def test_probabilities_are_per_contact_point_and_follow_the_step() -> None:
    kp, lift = stepping(120)
    prob = contact_probability(kp, FPS, RIG.feet)
    assert prob.shape == (120, len(CONTACT_POINTS)) and CONTACT_POINTS[0] == "left_heel"
    assert np.all((prob >= 0) & (prob <= 1))
    assert prob[:, 2:].min() > 0.9  # the right heel and toe never move
    assert prob[lift > 0.2, :2].max() < 0.1  # the left foot in the air (the height gate: 10 % of the stature)
    down = np.convolve(lift == 0, np.ones(9), mode="same") == 9
    assert prob[down, :2].min() > 0.9 and down.sum() > 30


def test_a_drifting_floor_keeps_the_planted_foot_planted() -> None:
    """Lifted depth drifts: the feet rise 30 cm over four seconds; a fixed height gate would lose the stance foot."""
    kp, lift = stepping(120, drift_m=0.3)
    contacts = foot_contacts(kp, FPS, RIG.feet)
    assert contacts[:, 1].all()
    assert not contacts[lift > 0.06, 0].any()
    down = np.convolve(lift == 0, np.ones(7), mode="same") == 7
    assert contacts[down, 0].all()


def test_hysteresis_does_not_flicker() -> None:
    """A probability wandering about one half, as noisy lifts give, switches a contact a few times, not every frame."""
    rng = np.random.default_rng(3)
    base = np.repeat([0.9, 0.2, 0.9], 40)
    prob = np.clip(base[:, None] + rng.normal(0.0, 0.15, (120, 4)), 0.0, 1.0)
    contacts = foot_contacts(np.zeros((120, 33, 3)), FPS, RIG.feet, probability=prob)
    switches = np.abs(np.diff(contacts.astype(int), axis=0)).sum(axis=0)
    assert np.all(switches == 2)
    plain = ContactSettings(enter_probability=0.5, exit_probability=0.5, min_frames=1)
    naive = foot_contacts(np.zeros((120, 33, 3)), FPS, RIG.feet, settings=plain, probability=prob)
    assert np.abs(np.diff(naive.astype(int), axis=0)).sum() > 8  # the same input without hysteresis flickers


@pytest.mark.skipif(not WALK.is_file(), reason="needs the rendered validation set (bench/render_validation.py)")
def test_contacts_of_a_mocap_walk_are_found_at_the_right_frames() -> None:
    """The held-out mocap walk's exact landmarks: every truly planted frame found, few extra (the truth's own rule is
    stricter: below 3 cm and slower than 0.15 m/s)."""
    truth = np.load(WALK)
    assert [str(n) for n in truth["contact_points"]] == [n.replace("_foot_index", "_toe")
                                                        for n in ("left_heel", "left_foot_index",
                                                                  "right_heel", "right_foot_index")]
    planted = truth["contacts"]
    feet = np.stack([planted[:, :2].any(1), planted[:, 2:].any(1)], axis=1)
    contacts = foot_contacts(truth["landmarks"], float(truth["fps"]), RIG.feet)
    recall = (contacts & feet).sum() / feet.sum()
    precision = (contacts & feet).sum() / contacts.sum()
    assert recall > 0.97 and precision > 0.6, (recall, precision)
    prob = contact_probability(truth["landmarks"], float(truth["fps"]), RIG.feet)
    assert prob[planted].mean() > 0.8 and prob[~planted].mean() < 0.6


def test_of_two_moving_feet_the_slower_one_is_planted() -> None:
    """Lifted depth makes a stance foot wobble at walking pace; beside a foot twice as fast it is still the planted one."""
    frames = 90
    kp = standing_body(frames)
    t = np.arange(frames) / FPS
    wobble = 0.08 * np.sin(2 * np.pi * 1.5 * t)  # ~0.75 m/s peak, no net travel
    kp[:, list(RIG.feet["right"]), 2] += wobble[:, None]
    kp[:, list(RIG.feet["left"]), 2] += 2 * wobble[:, None]
    contacts = foot_contacts(kp, FPS, RIG.feet)
    assert contacts[:, 1].mean() > 0.9 and contacts[:, 0].mean() < 0.5
    alone = foot_contacts(kp, FPS, RIG.feet, settings=ContactSettings(other_weight=0.0))
    assert alone[:, 0].mean() > contacts[:, 0].mean() + 0.2  # without the other foot both would pass
