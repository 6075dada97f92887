"""core.sides on synthetic landmark tracks: injected left/right swaps are undone exactly, clean tracks (limbs
crossing included) are left alone, and the dynamic programme finds the cheapest labelling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.detections import Detections
from core.common.rigs import landmark_mirror, landmark_names
from core.sides import best_labelling, fix_swaps, group_landmarks, relabel, step_costs

FPS = 30.0
BASE = {  # (half-width m, height m, forward m) of each landmark of a person standing with arms down, facing +Z
    "nose": (0.0, 1.60, 0.10), "eye_inner": (0.02, 1.65, 0.08), "eye": (0.035, 1.65, 0.075),
    "eye_outer": (0.05, 1.65, 0.07), "ear": (0.075, 1.62, 0.0), "mouth": (0.025, 1.55, 0.09),
    "shoulder": (0.18, 1.40, 0.0), "elbow": (0.22, 1.12, 0.0), "wrist": (0.24, 0.86, 0.02),
    "pinky": (0.25, 0.78, 0.03), "index": (0.24, 0.77, 0.05), "thumb": (0.22, 0.80, 0.06),
    "hip": (0.10, 0.92, 0.0), "knee": (0.11, 0.50, 0.02), "ankle": (0.11, 0.10, 0.0),
    "heel": (0.11, 0.05, -0.05), "foot_index": (0.11, 0.02, 0.13),
}


def track(frames: int = 120, cross_arms: bool = False, seed: int = 0) -> Detections:
    """A person turning and swinging arms and legs, filmed from the front: world (F, 33, 3) m, hip-centred, Mimic
    axes; image (F, 33, 3) orthographic pixels (300 px/m) with visibility 1; small noise."""
    rng = np.random.default_rng(seed)
    names = list(landmark_names())
    words = [n.split("_") for n in names]
    side = np.array([1.0 if "left" in w else -1.0 if "right" in w else 0.0 for w in words])
    part = ["_".join(x for x in w if x not in ("left", "right")) for w in words]
    base = np.array([BASE[p] for p in part]) * np.stack([side + (side == 0), np.ones(33), np.ones(33)], axis=1)
    t = np.arange(frames) / FPS
    pts = np.repeat(base[None], frames, axis=0)
    arm = np.isin(part, ("elbow", "wrist", "pinky", "index", "thumb"))
    leg = np.isin(part, ("knee", "ankle", "heel", "foot_index"))
    swing = 0.25 * np.sin(2 * np.pi * 1.0 * t)[:, None] * side[None]
    pts[:, arm, 2] += -swing[:, arm] * np.where(np.isin(np.array(part)[arm], ("elbow",)), 0.5, 1.0)
    pts[:, leg, 2] += swing[:, leg] * np.where(np.isin(np.array(part)[leg], ("knee",)), 0.5, 1.0)
    if cross_arms:  # hands move across the body to the other side and back (they cross in the image)
        across = 0.45 * (0.5 - 0.5 * np.cos(2 * np.pi * t / t[-1]))
        hand = np.isin(part, ("wrist", "pinky", "index", "thumb"))
        pts[:, hand, 0] -= across[:, None] * side[None, hand]
        pts[:, hand, 2] += 0.25
    pts -= pts[:, [names.index("left_hip"), names.index("right_hip")]].mean(1, keepdims=True)
    yaw = 0.7 * np.sin(2 * np.pi * 0.25 * t)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    world = np.stack([c * pts[..., 0] + s * pts[..., 2], pts[..., 1], -s * pts[..., 0] + c * pts[..., 2]], axis=-1)
    world += rng.normal(0, 0.005, world.shape)
    root = np.stack([640 + 60 * t, 360 + 5 * np.sin(2 * np.pi * t)], axis=1)
    xy = root[:, None] + 300 * world[..., :2] * np.array([1.0, -1.0]) + rng.normal(0, 0.5, world[..., :2].shape)
    image = np.concatenate([xy, np.ones((frames, 33, 1))], axis=-1)
    return Detections(times=t, image=image.astype(np.float32), world=world.astype(np.float32),
                      present=np.ones(frames, dtype=bool), width=1280, height=720, fps=FPS)


def swapped(det: Detections, runs: list[tuple[int, int]]) -> tuple[Detections, np.ndarray]:
    """`det` with MediaPipe-like swaps (labels exchanged, body turned to keep its handedness) on frames [a, b)."""
    flags = np.zeros(det.num_frames, dtype=bool)
    for a, b in runs:
        flags[a:b] = True
    return relabel(det, flags), flags


def test_mirror_pairs_come_from_the_rig() -> None:
    names = list(landmark_names())
    mirror = landmark_mirror()
    assert names[mirror[names.index("left_wrist")]] == "right_wrist"
    assert names[mirror[names.index("mouth_right")]] == "mouth_left"
    assert mirror[names.index("nose")] == names.index("nose")
    assert np.array_equal(mirror[mirror], np.arange(33))
    assert np.sum(mirror != np.arange(33)) == 32


@pytest.mark.parametrize("runs", [[(30, 45)], [(30, 45), (80, 84)], [(0, 10)], [(100, 120)], [(50, 51)]])
def test_injected_swaps_are_undone_exactly(runs: list[tuple[int, int]]) -> None:
    clean = track()
    det, injected = swapped(clean, runs)
    fixed, flags = fix_swaps(det)
    assert np.array_equal(flags, injected)
    np.testing.assert_allclose(fixed.image, clean.image, atol=1e-4)
    np.testing.assert_allclose(fixed.world, clean.world, atol=1e-6)


def test_swaps_across_frames_without_a_person() -> None:
    clean = track()
    det, injected = swapped(clean, [(40, 70)])
    det.present[[20, 55, 56]] = False
    det.image[[20, 55, 56]] = np.nan
    det.world[[20, 55, 56]] = np.nan
    _, flags = fix_swaps(det)
    assert np.array_equal(flags, injected & det.present)


@pytest.mark.parametrize("cross_arms", [False, True])
def test_clean_track_is_left_unchanged(cross_arms: bool) -> None:
    det = track(cross_arms=cross_arms)
    names = list(landmark_names())
    if cross_arms:  # the hands do cross in the image
        dx = det.image[:, names.index("left_wrist"), 0] - det.image[:, names.index("right_wrist"), 0]
        assert dx.max() > 0 > dx.min()
    fixed, flags = fix_swaps(det)
    assert not flags.any()
    assert fixed is det


def test_majority_labelling_is_kept_when_most_frames_are_swapped() -> None:
    clean = track()
    det, injected = swapped(clean, [(0, 40), (50, 120)])
    _, flags = fix_swaps(det)
    assert np.array_equal(flags, ~injected)  # the 10 unswapped frames are the minority: only they change


def test_dynamic_programme_finds_the_cheapest_labelling() -> None:
    det = track(frames=8, seed=3)
    rng = np.random.default_rng(1)
    for _ in range(20):
        image = det.image[:, :, :2] + rng.normal(0, 40, (8, 33, 2))
        world = det.world + rng.normal(0, 0.1, (8, 33, 3))
        costs = [step_costs(image, world, k) for k in (1, 2)]
        switch = float(np.median(costs[0][0]))

        def total(s: tuple[int, ...]) -> float:
            pairs = sum((costs[k - 1][0] if s[a] == s[a + k] else costs[k - 1][1] + (switch if k == 1 else 0))[a]
                        for k in (1, 2) for a in range(8 - k))
            return pairs + 1e-6 * switch * sum(s)

        best = min(itertools.product((0, 1), repeat=8), key=total)
        assert tuple(best_labelling(image, world, lags=2).astype(int)) == best


@pytest.mark.parametrize("runs", [[(30, 60)], [(30, 45), (60, 80)]])
def test_swaps_blended_over_frames_are_undone(runs: list[tuple[int, int]]) -> None:
    """MediaPipe's landmark smoothing blends a swap over a few frames: here a 5-frame moving average after the swap
    (comparing consecutive frames only gets this wrong); each frame should take the labelling that dominates it."""
    det, injected = swapped(track(), runs)
    kernel = np.ones(5) / 5
    blend = lambda x: np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, x)  # noqa: E731
    det.image[2:-2, :, :2] = blend(det.image[:, :, :2])[2:-2]
    det.world[2:-2] = blend(det.world)[2:-2]
    _, flags = fix_swaps(det)
    assert np.array_equal(flags, injected)


def test_the_body_relabelled_without_the_legs_when_only_its_labels_were_swapped() -> None:
    """Every label but the legs' exchanged on 15 frames: the body is put back exactly and the legs, whose own motion
    says nothing was swapped, are left as they were (a whole-body relabelling would swap them)."""
    clean = track()
    flags = np.zeros(clean.num_frames, dtype=bool)
    flags[30:45] = True
    legs, body = group_landmarks()
    fixed, found = fix_swaps(relabel(clean, flags, body))
    assert np.array_equal(found, flags)
    np.testing.assert_allclose(fixed.image, clean.image, atol=1e-4)
    np.testing.assert_allclose(fixed.world, clean.world, atol=1e-6)


def test_arms_alone_relabel_nothing() -> None:
    """The arms' labels exchanged (hands crossing abruptly): the whole-body programme would relabel frames, but
    neither the torso nor the legs confirm it, so nothing is relabelled and the rest of the body keeps its labels."""
    clean = track()
    flags = np.zeros(clean.num_frames, dtype=bool)
    flags[30:45] = True
    arms = np.array([landmark_names().index(f"{s}_{n}") for n in ("elbow", "wrist", "pinky", "index", "thumb")
                     for s in ("left", "right")])
    det = relabel(clean, flags, arms)
    assert best_labelling(det.image[:, :, :2], det.world).any()
    fixed, found = fix_swaps(det)
    assert not found.any() and fixed is det
