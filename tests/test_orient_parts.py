"""core.orient_parts: the face mesh's head rotation (camera axes) put on the body's Head joint in the motion's world axes."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from core.common import rotations as quat
from core.common.motionfile import Motion
from core.common.skeleton import humanoid
from core.orient_parts import with_face_head

FRAMES = 5


def still(level_deg: float = 0.0) -> Motion:
    """The humanoid at rest, its neck bent 10° forward, levelled by `level_deg` about X as core.ik records it."""
    sk = humanoid()
    rot = np.tile([1.0, 0.0, 0.0, 0.0], (FRAMES, sk.num_joints, 1))
    rot[:, sk.index("Neck")] = Rotation.from_euler("x", 10, degrees=True).as_quat(scalar_first=True)
    level = Rotation.from_euler("x", level_deg, degrees=True).as_quat(scalar_first=True)
    return Motion(skeleton=sk, fps=30.0, rotations=rot, root_positions=np.zeros((FRAMES, 3)),
                  meta={"ik": {"level_wxyz": level.tolist()}})


def face_direction(motion: Motion) -> np.ndarray:
    """(F, 3) where the head's face (+Z at rest) points in the world."""
    glob = motion.skeleton.global_rotations(motion.rotations)[:, motion.skeleton.index("Head")]
    return quat.rotate(glob, np.array([0.0, 0.0, 1.0]))


def test_a_head_turned_to_the_persons_left_faces_plus_x() -> None:
    # camera axes: x right (the left of a person facing the camera), y down, z away; the face looks along -z at
    # rest; 30° toward the person's left turns it toward +x: about +y (down) by -30°... checked by the vector itself
    turn = Rotation.from_rotvec([0.0, np.radians(-30.0), 0.0])
    assert turn.apply([0.0, 0.0, -1.0])[0] > 0.4
    head = np.tile(turn.as_quat(scalar_first=True), (FRAMES, 1))
    out = with_face_head(still(), head, np.ones(FRAMES))
    d = face_direction(out)
    assert np.allclose(d, [np.sin(np.radians(30)), 0.0, np.cos(np.radians(30))], atol=1e-6)  # world, not the neck's
    assert np.allclose(out.rotations[:, :out.skeleton.index("Head")], still().rotations[:, :4])  # others untouched


def test_levelling_and_confidence() -> None:
    nod = Rotation.from_euler("x", 20, degrees=True)  # camera axes: the face looks down in the image (toward +y)
    assert nod.apply([0.0, 0.0, -1.0])[1] > 0.3
    head = np.tile(nod.as_quat(scalar_first=True), (FRAMES, 1))
    levelled = with_face_head(still(level_deg=-20.0), head, np.ones(FRAMES))
    assert np.allclose(face_direction(levelled), [0.0, 0.0, 1.0], atol=1e-6)  # levelling undoes the camera's pitch
    camera = with_face_head(still(), np.tile([1.0, 0.0, 0.0, 0.0], (FRAMES, 1)), np.ones(FRAMES))
    assert np.allclose(face_direction(camera), [0.0, 0.0, 1.0], atol=1e-6)  # a frontal face looks at the camera
    body = still()
    none = with_face_head(body, head, np.zeros(FRAMES))
    assert np.allclose(none.rotations, body.rotations)  # no face: the body's head
    half = with_face_head(body, head, np.full(FRAMES, 0.25))  # half of MIN_CONFIDENCE: half way
    angle = np.degrees(np.arccos(np.clip(face_direction(half) @ face_direction(body)[0], -1, 1)))
    assert np.allclose(angle, 5.0, atol=0.2)  # the body looks 10° down (its neck), the face 20°: half way


def test_palms_from_the_hand_landmarks() -> None:
    """A palm rotation of identity means the rest hand's coordinates read as camera axes: fingers to the image's
    right (+X), the palm's side (-Y at rest) up in the image (+Y in the world), the thumb away from the camera (-Z).
    Confidence 0 keeps the body's hand; the fingers (children) turn with the hand."""
    from core.orient_parts import with_palm_hands

    palm = np.tile([1.0, 0.0, 0.0, 0.0], (FRAMES, 2, 1))
    body = still()
    out = with_palm_hands(body, palm, np.array([[1.0, 0.0]] * FRAMES))
    glob = out.skeleton.global_rotations(out.rotations)
    left, right = out.skeleton.index("LeftHand"), out.skeleton.index("RightHand")
    assert np.allclose(quat.rotate(glob[:, left], np.array([1.0, 0.0, 0.0])), [1.0, 0.0, 0.0], atol=1e-9)
    assert np.allclose(quat.rotate(glob[:, left], np.array([0.0, -1.0, 0.0])), [0.0, 1.0, 0.0], atol=1e-9)
    assert np.allclose(quat.rotate(glob[:, left], np.array([0.0, 0.0, 1.0])), [0.0, 0.0, -1.0], atol=1e-9)
    assert np.allclose(out.rotations[:, right], body.rotations[:, right])  # confidence 0
