"""Foot locking (core/foot_lock.py) on a synthetic walk whose planted feet slide, and its --foot-lock options."""

from __future__ import annotations

import numpy as np
import pytest

from core.common import rotations as quat
from core.common.motionfile import Motion
from core.common.skeleton import humanoid
from core.foot_lock import DEFAULT, MODES, foot_lock
from core.ik import keypoints_from_pose

FPS = 30.0
FRAMES = 90
SPEED = 0.6  # m/s: a planted foot carried along by the hips slides 20 mm a frame
LEGS = ((13, 14, 15), (17, 18, 19))  # Left/Right UpperLeg, LowerLeg, Foot in rigs/humanoid.json
CONTACTS = ((5, 30), (38, 62))  # left, right planted frames (inclusive)
REST_ANKLE = 0.08  # the ankle's height above the floor in the rest pose, metres


def _about_x(angle: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(angle / 2), np.sin(angle / 2), 0 * angle, 0 * angle], axis=-1)


def sliding_walk() -> Motion:
    """Hips moving forward at SPEED and turning left and right, with bent legs that never move relative to them
    (the feet glide and turn), a swaying upper body, the hips bobbing (a foot 1.5 cm into the floor at the lowest);
    floor Y = 0, contacts known."""
    sk = humanoid()
    t = np.arange(FRAMES) / FPS
    bend = np.radians(20.0) + np.radians(5.0) * np.sin(2 * np.pi * t)[:, None] * [1, -1]  # (F, 2) per leg
    rotations = quat.identity(FRAMES, sk.num_joints)
    for leg, (upper, lower, foot) in enumerate(LEGS):
        rotations[:, upper] = _about_x(-bend[:, leg])
        rotations[:, lower] = _about_x(2 * bend[:, leg])
        rotations[:, foot] = _about_x(-bend[:, leg])
    for joint, rate in ((1, 0.7), (2, 1.1), (6, 2.0), (7, 1.5), (10, 1.3), (4, 0.9)):
        axis = np.array([0.3, 1.0, 0.5]) / np.linalg.norm([0.3, 1.0, 0.5])
        half = 0.3 * np.sin(2 * np.pi * rate * t)[:, None] / 2
        rotations[:, joint] = np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)
    yaw = np.radians(6.0) * np.sin(2 * np.pi * t)  # the hips sway: every foot's heading swings with them
    rotations[:, 0] = np.stack([np.cos(yaw / 2), 0 * yaw, np.sin(yaw / 2), 0 * yaw], axis=-1)
    leg_height = 2 * 0.41 * np.cos(bend).max(axis=1)  # the straighter leg reaches the floor, the other floats
    root = np.stack([0 * t, REST_ANKLE + 0.05 + leg_height + 0.015 * np.sin(2 * np.pi * 1.3 * t), SPEED * t], 1)
    contacts = np.zeros((FRAMES, 2), dtype=bool)
    for leg, (start, end) in enumerate(CONTACTS):
        contacts[start:end + 1, leg] = True
    return Motion(skeleton=sk, fps=FPS, rotations=rotations, root_positions=root, contacts=contacts,
                  floor={"height_m": 0.0, "up": [0.0, 1.0, 0.0]})


def ankles(m: Motion) -> np.ndarray:
    return m.positions()[:, [leg[2] for leg in LEGS]]


def slide_mm(points: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """Horizontal motion mm/frame of each point (F, 3) between consecutive planted frames."""
    both = planted[1:] & planted[:-1]
    return 1000 * np.linalg.norm(np.diff(points[:, [0, 2]], axis=0), axis=-1)[both]


def knee_angles(m: Motion) -> tuple[np.ndarray, np.ndarray]:
    """Per leg (F, 2): the knee's bend in degrees and how far forward (+Z, m) the knee sits off the hip-ankle line."""
    pos = m.positions()
    bends, forward = [], []
    for upper, lower, foot in LEGS:
        thigh, shin = pos[:, lower] - pos[:, upper], pos[:, foot] - pos[:, lower]
        cos = np.sum(thigh * shin, -1) / np.linalg.norm(thigh, axis=-1) / np.linalg.norm(shin, axis=-1)
        bends.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
        line = pos[:, foot] - pos[:, upper]
        line /= np.linalg.norm(line, axis=-1, keepdims=True)
        off = thigh - np.sum(thigh * line, -1, keepdims=True) * line
        forward.append(off[:, 2])
    return np.stack(bends, 1), np.stack(forward, 1)


def test_auto_holds_planted_feet_still() -> None:
    walk = sliding_walk()
    before, out = ankles(walk), foot_lock(walk, "auto")
    after = ankles(out)
    for leg in range(2):
        assert slide_mm(before[:, leg], walk.contacts[:, leg]).mean() == pytest.approx(1000 * SPEED / FPS, rel=0.05)
        moved = slide_mm(after[:, leg], walk.contacts[:, leg])
        assert moved.max() < 2.0, (leg, moved.max())
    info = out.meta["foot_lock"]
    assert info["mode"] == "auto" and info["slide_before_mm"] > 19 and info["slide_after_mm"] < 0.5
    assert info["hips_lowered_frames"] > 0  # the long left contact ends out of reach: the hips go down, a little
    assert 0 < info["hips_lowered_max_m"] < 0.05
    # the toes stay put too: the planted foot keeps its heading, its tilt is the original's
    toes_in = keypoints_from_pose(walk.rotations, walk.root_positions, walk.skeleton)[:, [31, 32]]
    heel_toe = keypoints_from_pose(out.rotations, out.root_positions, out.skeleton)[:, [29, 31, 30, 32]]
    for leg in range(2):
        assert slide_mm(toes_in[:, leg], walk.contacts[:, leg]).max() > 20
        assert slide_mm(heel_toe[:, 2 * leg + 1], walk.contacts[:, leg]).max() < 2.0
    glob_in, glob_out = walk.skeleton.global_rotations(walk.rotations), out.skeleton.global_rotations(out.rotations)
    feet = [leg[2] for leg in LEGS]
    for axis in np.eye(3):  # a turn about the vertical only: every axis keeps its height
        assert np.allclose(quat.rotate(glob_in[:, feet], axis)[..., 1], quat.rotate(glob_out[:, feet], axis)[..., 1])
    # and stands on the floor: its lowest landmark 2 cm up, as core.ik grounds it
    left = walk.contacts[:, 0]
    assert np.allclose(heel_toe[left][:, :2, 1].min(1), 0.02, atol=1e-3)


def rolling_walk() -> Motion:
    """The sliding walk with the left foot rolling through its contact as a real step does: toes up 15 degrees at
    heel strike, flat in the middle, heel up 25 degrees at toe off."""
    walk = sliding_walk()
    start, end = CONTACTS[0]
    pitch = np.zeros(FRAMES)
    pitch[start:end + 1] = np.interp(np.arange(start, end + 1), [start, start + 8, end - 10, end],
                                     np.radians([15.0, 0.0, 0.0, -25.0]))
    rotations = walk.rotations.copy()
    rotations[:, LEGS[0][2]] = quat.multiply(rotations[:, LEGS[0][2]], _about_x(-pitch))
    return walk.with_channels(rotations=rotations)


def test_auto_holds_the_point_the_foot_rolls_about() -> None:
    """Heel strike to toe off: the heel stays put while the foot turns about it, then the toe while the heel lifts;
    the ankle itself moves (holding the ankle would slide the heel and then the toe), and nothing jumps where the toe
    takes over."""
    walk = rolling_walk()
    out = foot_lock(walk, "auto")
    heel, toe = (keypoints_from_pose(out.rotations, out.root_positions, out.skeleton)[:, k] for k in (29, 31))
    start, end = CONTACTS[0]
    toe_down = np.flatnonzero(heel[start:end + 1, 1] - toe[start:end + 1, 1] >= DEFAULT.pivot_margin_m)
    switch = start + int(toe_down[0])
    on_heel, on_toe = np.zeros(FRAMES, bool), np.zeros(FRAMES, bool)
    on_heel[start:switch], on_toe[switch:end + 1] = True, True
    assert on_heel.sum() > 10 and on_toe.sum() > 3
    assert slide_mm(heel, on_heel).max() < 0.5 and slide_mm(toe, on_toe).max() < 0.5
    assert slide_mm(ankles(out)[:, 0], on_heel | on_toe).max() > 2.0  # the ankle turns about them
    assert np.linalg.norm(np.diff(toe[switch - 1:switch + 1, [0, 2]], axis=0)) < 0.002  # no jump at the handover
    plain = foot_lock(walk, "auto", DEFAULT.__class__(pivot=False))  # the ankle held instead
    heel_plain = keypoints_from_pose(plain.rotations, plain.root_positions, plain.skeleton)[:, 29]
    assert slide_mm(heel_plain, on_heel).max() > 2.0


def test_auto_keeps_a_valid_plausible_motion() -> None:
    walk = sliding_walk()
    out = foot_lock(walk, "auto")
    q = out.rotations
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(out.root_positions))
    assert np.allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-9)
    step = np.degrees(2 * np.arccos(np.clip(np.sum(q[1:] * q[:-1], -1), -1, 1)))
    assert step.max() < 15.0  # continuous, same hemisphere frame to frame (a flip would read as ~360)
    bend, forward = knee_angles(out)
    assert bend.min() >= 0 and bend.max() < 120  # straight at most, never bent backwards or folded
    assert np.all(forward[bend > 3] > 0)  # the knees still point forward: no hyper-extension
    legs = [j for leg in LEGS for j in leg]
    others = [j for j in range(walk.skeleton.num_joints) if j not in legs]
    assert np.array_equal(out.rotations[:, others], walk.rotations[:, others])
    assert np.array_equal(out.root_positions[:, [0, 2]], walk.root_positions[:, [0, 2]])
    assert np.all(out.root_positions[:, 1] <= walk.root_positions[:, 1] + 1e-12)  # hips only ever go down


def test_auto_leaves_frames_away_from_contacts_alone() -> None:
    walk = sliding_walk()
    out = foot_lock(walk, "auto")
    ramp = int(round(DEFAULT.fade_s * FPS))
    same_root = np.isclose(out.root_positions[:, 1], walk.root_positions[:, 1], atol=1e-12)
    below = keypoints_from_pose(walk.rotations, walk.root_positions, walk.skeleton)[:, [29, 31, 30, 32], 1]
    free_checked = 0
    for leg, (start, end) in enumerate(CONTACTS):
        frames = np.arange(FRAMES)
        far = ((frames < start - ramp) | (frames > end + ramp)) & same_root
        far &= below[:, 2 * leg:2 * leg + 2].min(1) >= 0.02  # not pushed out of the floor
        assert far.sum() > 5
        assert np.array_equal(out.rotations[far][:, LEGS[leg]], walk.rotations[far][:, LEGS[leg]])
        free_checked += int(far.sum())
    assert free_checked > 15
    # near the original everywhere off contact: a foot moves no further than its corrections while planted
    shift = np.linalg.norm(ankles(out) - ankles(walk), axis=-1)
    for leg in range(2):
        planted = walk.contacts[:, leg]
        assert shift[~planted, leg].max() <= shift[planted, leg].max() + 0.02


def test_grounding_keeps_feet_on_the_floor_without_locking() -> None:
    walk = sliding_walk()
    before, out = ankles(walk), foot_lock(walk, "grounding")
    after = ankles(out)
    assert before[..., 1].min() < REST_ANKLE - 0.01  # the bobbing hips push the feet into the floor
    assert after[..., 1].min() >= REST_ANKLE - 1e-6
    assert np.allclose(after[..., [0, 2]], before[..., [0, 2]], atol=1e-9)  # horizontal slide unchanged
    for leg in range(2):
        assert slide_mm(after[:, leg], walk.contacts[:, leg]).mean() == pytest.approx(1000 * SPEED / FPS, rel=0.05)
        planted = walk.contacts[:, leg]
        assert np.allclose(after[planted, leg, 1], REST_ANKLE, atol=1e-6)  # flat planted feet at floor height
    assert out.meta["foot_lock"]["mode"] == "grounding"


def test_off_is_identical() -> None:
    walk = sliding_walk()
    out = foot_lock(walk, "off")
    assert np.array_equal(out.rotations, walk.rotations) and np.array_equal(out.root_positions, walk.root_positions)
    assert out.meta["foot_lock"] == {"mode": "off"}


def test_without_contacts_or_floor() -> None:
    walk = sliding_walk()
    bare = walk.with_channels(contacts=None)
    assert np.array_equal(foot_lock(bare).rotations, walk.rotations)
    assert foot_lock(bare).meta["foot_lock"]["skipped"] == "no contacts"
    floorless = walk.with_channels(floor=None)
    assert foot_lock(floorless, "grounding").meta["foot_lock"]["skipped"] == "no floor"
    locked = ankles(foot_lock(floorless, "auto"))  # auto still holds planted feet where they are on average
    assert slide_mm(locked[:, 0], walk.contacts[:, 0]).max() < 2.0
    with pytest.raises(ValueError, match="sticky"):
        foot_lock(walk, "sticky")


def test_feet_out_of_view_are_left_alone() -> None:
    """A clip from the waist up: the feet's confidence is low, so contacts and floor mean nothing there."""
    walk = sliding_walk()
    conf = np.ones((walk.num_frames, walk.skeleton.num_joints))
    feet = [walk.skeleton.index(n) for n in ("LeftLowerLeg", "LeftFoot", "RightLowerLeg", "RightFoot")]
    conf[:, feet] = 0.1
    out = foot_lock(walk.with_channels(confidence=conf), "auto")
    assert out.meta["foot_lock"]["skipped"] == "feet not in view" and np.array_equal(out.rotations, walk.rotations)
    conf[: walk.num_frames * 3 // 4, feet] = 1.0  # seen but for the last quarter: no locking there
    out = foot_lock(walk.with_channels(confidence=conf), "auto")
    last = slice(walk.num_frames * 3 // 4 + 20, None)  # past the fade; the floor still holds the feet up
    assert np.allclose(ankles(out)[last][..., [0, 2]], ankles(walk)[last][..., [0, 2]], atol=1e-3)


def test_foot_lock_options_parse(capsys: pytest.CaptureFixture[str]) -> None:
    from core.__main__ import build_parser
    from core.batch.__main__ import build_parser as batch_parser
    from core.pipeline import ConvertOptions

    assert ConvertOptions().foot_lock == "auto" and MODES == ("auto", "off", "grounding")
    assert build_parser().parse_args(["v.mp4"]).foot_lock == "auto"
    for mode in MODES:
        assert build_parser().parse_args(["v.mp4", "--foot-lock", mode]).foot_lock == mode
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["v.mp4", "--foot-lock", "sticky"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--foot-lock: invalid choice: 'sticky'" in err and "'grounding'" in err
    args = batch_parser().parse_args(["--input", "in", "--output", "out", "--foot-lock", "grounding"])
    assert args.foot_lock == "grounding"
