"""The learned lifter: model shapes and receptive field, flip equivariance, determinism, the mocap landmark
correspondence, a training smoke test on a tiny BVH set, and the shipped weights on real video."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from core.bvh import write_bvh
from core.detections import Detections
from core.lift import get_lifter
from core.lift.layout import lifter_layout
from core.lift.model import TemporalModel, load_weights, save_weights
from core.lift.normalize import INPUT_CHANNELS, detections_to_inputs, flip_inputs, flip_pose
from core.lift.tcn import DEFAULT_WEIGHTS, TcnLifter, infer
from core.common.motionfile import Motion
from core.scipy_rotations import to_wxyz
from core.common.skeleton import humanoid
from core.common.errors import WeightsMissing
from training.metrics import align, mpjpe, pa_mpjpe
from training.mocap import bvh_keypoints, load_mocap
from training.train import (Augment, ChunkSampler, Synth, TrainConfig, balance_weights, motion_kind,
                            split_files, train)

LAYOUT = lifter_layout()


def walk_motion(frames: int = 90, speed: float = 1.2, phase: float = 0.0) -> Motion:
    """A crude walk on Mimic's humanoid: legs and arms swing, knees bend, the root travels along +Z."""
    sk = humanoid()
    t = np.arange(frames) / 30.0
    s = np.sin(2 * np.pi * 1.0 * t + phase)
    euler = np.zeros((frames, sk.num_joints, 3))
    euler[:, sk.index("LeftUpperLeg"), 0] = -0.4 * s
    euler[:, sk.index("RightUpperLeg"), 0] = 0.4 * s
    euler[:, sk.index("LeftLowerLeg"), 0] = 0.3 * (1 + s)
    euler[:, sk.index("RightLowerLeg"), 0] = 0.3 * (1 - s)
    euler[:, sk.index("LeftUpperArm"), 2] = -1.2
    euler[:, sk.index("RightUpperArm"), 2] = 1.2
    euler[:, sk.index("LeftUpperArm"), 0] = 0.3 * s
    euler[:, sk.index("RightUpperArm"), 0] = -0.3 * s
    euler[:, sk.index("Head"), 1] = 0.3 * s
    rot = to_wxyz(Rotation.from_euler("XYZ", euler.reshape(-1, 3))).reshape(frames, sk.num_joints, 4)
    root = np.stack([np.zeros(frames), np.full(frames, 0.95), speed * t], axis=1)
    return Motion(skeleton=sk, fps=30.0, rotations=rot, root_positions=root)


@pytest.fixture(scope="module")
def bvh_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mocap")
    for i, name in enumerate(["walk_a_001", "walk_b_001", "walk_held_001"]):
        write_bvh(folder / f"{name}.bvh", walk_motion(phase=i, speed=1.0 + 0.2 * i), units="m")
    return folder


@pytest.fixture(scope="module")
def shipped() -> TcnLifter:
    return TcnLifter()


def test_layout_is_23_mediapipe_landmarks_with_an_involutive_flip() -> None:
    assert LAYOUT.num_keypoints == 23
    assert LAYOUT.mediapipe_index.tolist() == [0, 7, 8, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 23, 24, 25, 26,
                                               27, 28, 29, 30, 31, 32]
    assert np.array_equal(LAYOUT.flip[LAYOUT.flip], np.arange(23))
    assert LAYOUT.names[LAYOUT.flip[LAYOUT.index("left_heel")]] == "right_heel"
    assert LAYOUT.flip[LAYOUT.index("nose")] == LAYOUT.index("nose")
    assert all(p < k for k, p in enumerate(LAYOUT.parents))


@pytest.mark.parametrize(("widths", "field"), [((3, 3, 3), 27), ((3, 3, 3, 3), 81), ((5, 3), 15)])
def test_model_output_shape_and_receptive_field(widths: tuple[int, ...], field: int) -> None:
    model = TemporalModel(num_keypoints=23, in_features=5, filter_widths=widths, channels=32, dropout=0.1)
    assert model.receptive_field() == field
    pose, traj = model(torch.zeros(2, field + 9, 23, 5))
    assert pose.shape == (2, 10, 23, 3) and traj.shape == (2, 10, 3)


def test_infer_pads_edges_so_every_frame_gets_an_output(shipped: TcnLifter) -> None:
    x = synthetic_inputs(17)
    pose, traj = infer(shipped.model, x, LAYOUT)
    assert pose.shape == (17, 23, 3) and traj.shape == (17, 3)
    assert np.all(np.isfinite(pose)) and np.all(np.isfinite(traj))


def synthetic_inputs(frames: int, seed: int = 0, noisy: bool = False) -> np.ndarray:
    """(F, 23, 3) lifter inputs of the synthetic walk seen through a random virtual camera."""
    world = torch.from_numpy(walk_keypoints(frames))[None]
    inputs, _, _ = Synth(LAYOUT, Augment())(world, torch.Generator().manual_seed(seed), augment=False, noisy=noisy)
    return inputs[0].numpy()


@lru_cache(maxsize=4)
def walk_keypoints(frames: int) -> np.ndarray:
    """(F, 23, 3) training keypoints of the synthetic walk, through a real BVH file and training.mocap."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "walk.bvh"
        write_bvh(path, walk_motion(frames), units="m")
        return bvh_keypoints(path)


def test_flip_averaged_inference_is_mirror_equivariant(shipped: TcnLifter) -> None:
    x = synthetic_inputs(60, noisy=True)
    pose, traj = infer(shipped.model, x, LAYOUT)
    pose_f, traj_f = infer(shipped.model, flip_inputs(x, LAYOUT), LAYOUT)
    np.testing.assert_allclose(pose_f, flip_pose(pose, LAYOUT), atol=1e-4)
    np.testing.assert_allclose(traj_f, flip_pose(traj, None), atol=1e-4)
    # Without the averaging the network alone is not exactly symmetric, so the test above is not vacuous.
    single, _ = infer(shipped.model, x, LAYOUT, flip=False)
    single_f, _ = infer(shipped.model, flip_inputs(x, LAYOUT), LAYOUT, flip=False)
    assert np.abs(single_f - flip_pose(single, LAYOUT)).max() > 1e-3


def test_inference_is_deterministic(shipped: TcnLifter) -> None:
    x = synthetic_inputs(45, seed=3, noisy=True)
    a = infer(shipped.model, x, LAYOUT)
    b = infer(TcnLifter().model, x, LAYOUT)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_detections_become_inputs_with_mediapipes_3d_as_a_hint() -> None:
    rng = np.random.default_rng(1)
    image = np.concatenate([rng.uniform(0, 720, (4, 33, 2)), rng.uniform(0.5, 1.0, (4, 33, 1))], axis=-1)
    world = rng.normal(scale=0.3, size=(4, 33, 3))
    image[1, 15, :2] = np.nan  # one landmark not found
    world[2, 0] = np.nan  # a frame with broken 3D
    image[3] = np.nan  # no person
    x = detections_to_inputs(image, world, 1280, 720, LAYOUT)
    hips = [LAYOUT.mediapipe_index[i] for i in LAYOUT.hips]
    np.testing.assert_allclose(x[0, :, 3:6], world[0, LAYOUT.mediapipe_index] - world[0, hips].mean(0), atol=1e-6)
    np.testing.assert_allclose(x[0, :, :2], image[0, LAYOUT.mediapipe_index, :2] / 1280 * 2 - [1.0, 0.5625],
                               atol=1e-6)
    assert np.all(x[1, LAYOUT.index("left_wrist"), :3] == 0) and x[1, 0, 6] == 1.0
    assert np.all(x[2, :, 3:] == 0) and np.all(x[2, :, 2] > 0)  # 2D kept, the broken 3D left out
    assert np.all(x[3] == 0)
    assert np.all(detections_to_inputs(image, None, 1280, 720, LAYOUT)[..., 3:] == 0)
    flipped = flip_inputs(x, LAYOUT)
    assert np.array_equal(flip_inputs(flipped, LAYOUT), x)
    left, right = LAYOUT.index("left_hip"), LAYOUT.index("right_hip")
    assert flipped[0, left, 3] == -x[0, right, 3] and flipped[0, left, 4] == x[0, right, 4]


def test_training_targets_are_in_camera_axes_and_pose_variation_keeps_limbs() -> None:
    world = torch.from_numpy(walk_keypoints(60))[None].expand(8, -1, -1, -1).float()
    synth = Synth(LAYOUT, Augment())
    inputs, pose, traj = synth(world, torch.Generator().manual_seed(5), augment=True, noisy=False)
    # The target projects onto the 2D input through one pinhole per clip: u is affine in x / depth.
    points = pose + traj[:, :, None]
    ratio = (points[..., 0] / -points[..., 2]).reshape(8, -1)
    u = inputs[..., 0].reshape(8, -1)
    for r, uu in zip(ratio, u):
        assert abs(np.corrcoef(r.numpy(), uu.numpy())[0, 1]) > 0.99999
    varied = synth.vary_pose(world, torch.Generator().manual_seed(2))
    bones = [(LAYOUT.index(a), LAYOUT.index(b)) for a, b in (("left_shoulder", "left_elbow"), ("left_elbow",
             "left_wrist"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"))]
    length = lambda w: torch.stack([(w[..., i, :] - w[..., j, :]).norm(dim=-1) for i, j in bones])  # noqa: E731
    torch.testing.assert_close(length(varied), length(world), atol=1e-5, rtol=0)
    assert (varied - world).norm(dim=-1).amax() > 0.1  # some limbs really moved


def test_hint_stand_in_is_the_pose_turned_to_the_optical_axis_when_noise_is_off() -> None:
    quiet = Augment(hint_depth_gain=(1.0, 1.0), hint_slow=(0.0, 0.0), hint_white=(0.0, 0.0), hint_scale=0.0,
                    hint_turn=0.0, hint_flip_p=0.0)
    pose = torch.from_numpy(walk_keypoints(30))[None].float()
    pose = pose - pose[:, :, list(LAYOUT.hips)].mean(2, keepdim=True)
    g = torch.Generator().manual_seed(0)
    on_axis = Synth(LAYOUT, quiet).hint(pose, torch.tensor([0.0, 0.0, -3.0]).expand(1, 30, 3), g)
    torch.testing.assert_close(on_axis, pose, atol=1e-5, rtol=0)
    aside = Synth(LAYOUT, quiet).hint(pose, torch.tensor([3.0, 0.0, -3.0]).expand(1, 30, 3), g)
    # 45 degrees off the axis to the right: seen from the ray, the body is turned by 45 degrees about Y.
    turned = pose @ torch.from_numpy(Rotation.from_euler("y", -45, degrees=True).as_matrix()).float()
    torch.testing.assert_close(aside, turned, atol=1e-5, rtol=0)
    noisy = Synth(LAYOUT, Augment()).hint(pose, torch.tensor([0.0, 0.0, -3.0]).expand(1, 30, 3), g)
    assert 0.01 < float((noisy - pose).norm(dim=-1).mean()) < 0.5


def test_mocap_landmarks_sit_where_mediapipe_puts_them(tmp_path: Path) -> None:
    motion = walk_motion()
    write_bvh(tmp_path / "m.bvh", motion, units="m")
    write_bvh(tmp_path / "cm.bvh", motion, units="cm")
    kp = bvh_keypoints(tmp_path / "m.bvh")
    np.testing.assert_allclose(bvh_keypoints(tmp_path / "cm.bvh"), kp, atol=1e-4)  # units judged from the legs
    joints = motion.positions()
    sk = motion.skeleton
    lhip, rhip = kp[:, LAYOUT.index("left_hip")], kp[:, LAYOUT.index("right_hip")]
    joint_width = np.linalg.norm(joints[:, sk.index("LeftUpperLeg")] - joints[:, sk.index("RightUpperLeg")], axis=-1)
    assert np.all(np.linalg.norm(lhip - rhip, axis=-1) > joint_width + 0.05)  # hip landmarks lie lateral
    assert np.all(lhip[:, 0] > rhip[:, 0])  # facing +Z, the left side is +X
    for side in ("left", "right"):
        heel, ankle = kp[:, LAYOUT.index(f"{side}_heel")], kp[:, LAYOUT.index(f"{side}_ankle")]
        toe = kp[:, LAYOUT.index(f"{side}_foot_index")]
        assert np.all(heel[:, 1] < ankle[:, 1] - 0.04) and np.all(toe[:, 2] > heel[:, 2] + 0.1)
    nose, lear, rear = (kp[:, LAYOUT.index(n)] for n in ("nose", "left_ear", "right_ear"))
    mid_ear = 0.5 * (lear + rear)
    forward = np.stack([np.sin(0.3 * np.sin(2 * np.pi * np.arange(90) / 30)), np.zeros(90),
                        np.cos(0.3 * np.sin(2 * np.pi * np.arange(90) / 30))], axis=1)
    # The nose follows the head's own turn (not just the body's), 8-12 cm in front of the ears.
    ahead = np.sum((nose - mid_ear) * forward, axis=-1)
    assert np.all((ahead > 0.07) & (ahead < 0.13))
    assert kp[:, :, 1].min() == pytest.approx(0.0, abs=0.03)  # floor at y = 0


def test_split_holds_out_whole_files_and_styles() -> None:
    names = [f"dataset-2_walk_{s}_{i:03d}.bvh" for s in ("normal", "youthful", "active") for i in range(1, 40)]
    train_idx, val_idx = split_files(names, ("youthful",))
    assert set(train_idx).isdisjoint(val_idx) and len(train_idx) + len(val_idx) == len(names)
    assert all("youthful" in names[i] for i in range(39, 78)) and set(range(39, 78)) <= set(val_idx)
    assert any("youthful" not in names[i] for i in val_idx)  # plus a fixed share of other files


def test_procrustes_alignment_ignores_similarity_transforms() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(5, 23, 3))
    moved = 1.3 * gt @ Rotation.from_rotvec([0.2, 1.0, -0.4]).as_matrix().T + 0.5
    assert pa_mpjpe(moved, gt) < 1e-9
    assert pa_mpjpe(gt + rng.normal(scale=0.1, size=gt.shape), gt) > 0.01
    # The benches' rigid variant keeps the size; a weight of 0 ignores a joint, even a NaN one.
    weight = np.ones(gt.shape[:2])
    assert mpjpe(align(moved, gt, weight, scale=False), gt) > 0.05
    assert mpjpe(align(moved / 1.3, gt, weight, scale=False), gt) < 1e-9
    broken = moved.copy()
    broken[:, 0] = np.nan
    weight[:, 0] = 0.0
    assert np.all(np.isnan(align(broken, gt, weight, scale=True)[:, 0]))
    assert mpjpe(align(broken, gt, weight, scale=True)[:, 1:], gt[:, 1:]) < 1e-9


def test_training_smoke_loss_falls_and_weights_load(bvh_set: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=bvh_set, out=tmp_path / "w.pt", cache=tmp_path / "cache", minutes=0.0, max_steps=80,
                      batch=16, chunk=8, filter_widths=(3, 3), channels=64, val_styles=("held",), eval_cameras=1,
                      log_every_s=1e9, checkpoint_every_s=1e9)
    results = train(cfg, log=lambda _: None)
    first = np.sum(results["losses_first"], axis=1).mean()
    last = np.sum(results["losses_last"], axis=1).mean()
    assert last < 0.7 * first
    assert results["files"] == 1 and np.isfinite(results["clean"]["mpjpe_mm"])
    model, meta = load_weights(cfg.out)
    assert model.receptive_field() == 9 and meta["keypoints"] == list(LAYOUT.names)
    assert meta["evaluation"]["clean"]["frames"] == 90
    assert load_mocap(bvh_set, tmp_path / "cache").keypoints.shape == (270, 23, 3)  # cached


def test_training_resumes_where_it_stopped(bvh_set: Path, tmp_path: Path) -> None:
    """An 80-step budget trained as a session of 30 steps, then --resume to the end, ends with the very weights of
    one uninterrupted run (model, optimiser, step and random generators all come back from the checkpoint); a
    damaged checkpoint says to start afresh."""
    def config(name: str, resume: bool, session_steps: int = 0) -> TrainConfig:
        return TrainConfig(data=bvh_set, out=tmp_path / f"{name}.pt", cache=tmp_path / "cache", minutes=0.0,
                           max_steps=80, batch=8, chunk=8, filter_widths=(3, 3), channels=32, val_styles=("held",),
                           eval_cameras=1, log_every_s=1e9, checkpoint_every_s=1e9, resume=resume, threads=1,
                           session_steps=session_steps)

    train(config("whole", False), log=lambda _: None)
    assert train(config("split", False, session_steps=30), log=lambda _: None) == {"paused": True, "steps": 30}
    assert config("split", False).checkpoint.is_file()
    logged: list[str] = []
    results = train(config("split", True), log=logged.append)
    assert any("resumed" in m and "step 30" in m for m in logged) and results["steps"] == 80
    whole, split = load_weights(tmp_path / "whole.pt")[0], load_weights(tmp_path / "split.pt")[0]
    for (name, a), b in zip(whole.state_dict().items(), split.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    config("split", True).checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMissing, match="start afresh"):
        train(config("split", True), log=lambda _: None)


def test_balanced_sampling_draws_rare_kinds_more_often(bvh_set: Path, tmp_path: Path) -> None:
    """Motion kinds come from file names; --balance 1 gives every kind the same share of chunks, 0 every frame."""
    assert motion_kind("dataset-1_bow_proud_001.bvh") == "bow" and motion_kind("131_01.bvh") == "131"
    assert motion_kind("walk_a_001.bvh") == "walk"
    data = load_mocap(bvh_set, tmp_path / "cache")
    data.names[0] = "bow_a_001.bvh"  # one file of three is now another kind
    for power, share in ((0.0, 1 / 3), (1.0, 1 / 2)):
        weights = balance_weights(data, power) if power else None
        sampler = ChunkSampler(data, 5, (1.0, 1.0), 0, weights)
        assert abs(sampler.file_p[0] - share) < 1e-9


def test_clips_are_lifted_at_their_own_rate_when_training_covered_it(shipped: TcnLifter) -> None:
    """Weights trained with playback speeds down to 0.45 take a 60 fps clip whole; weights trained down to 0.7 see
    it as two interleaved 30 fps phases; 24-30 fps clips are always whole, 240 fps ones always strided."""
    lifter = TcnLifter.__new__(TcnLifter)
    lifter.fps = 30.0
    lifter.slowest = 0.45
    assert [lifter.stride(f) for f in (24.0, 30.0, 50.0, 59.94, 60.0, 120.0, 240.0)] == [1, 1, 1, 1, 1, 2, 4]
    lifter.slowest = 0.7
    assert [lifter.stride(f) for f in (24.0, 30.0, 50.0, 60.0, 120.0)] == [1, 1, 2, 2, 3]
    assert shipped.stride(0.0) == 1 and shipped.slowest == shipped.meta["config"]["augment"]["speed"][0]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = TemporalModel(23, 5, (3, 3), 16).eval()
    save_weights(tmp_path / "m.pt", model, {"fps": 30.0})
    loaded, meta = load_weights(tmp_path / "m.pt")
    x = torch.randn(1, 20, 23, 5)
    assert torch.equal(model(x)[0], loaded(x)[0]) and meta == {"fps": 30.0}


def test_shipped_weights_match_the_code_and_lift_a_projected_walk(tmp_path: Path) -> None:
    """The shipped weights were trained for the layout, input channels and frame rate the code uses now, and through
    the runtime path (pixels → Detections → TcnLifter) they lift a walk seen by virtual cameras to within 25 cm MPJPE
    and follow its motion; a network of the same shape with random weights fails both bounds."""
    model, meta = load_weights(DEFAULT_WEIGHTS)
    assert DEFAULT_WEIGHTS.stat().st_size < 8_000_000 and meta["checkpoint"] is False
    assert meta["keypoints"] == list(LAYOUT.names) and model.config.num_keypoints == LAYOUT.num_keypoints
    assert model.config.in_features == INPUT_CHANNELS + 2  # add_centred appends the centred u, v
    assert tuple(meta["config"]["filter_widths"]) == model.config.filter_widths and model.receptive_field() == 81
    assert meta["fps"] == 30.0 and isinstance(get_lifter("tcn"), TcnLifter)
    world = torch.from_numpy(walk_keypoints(120))[None].float().expand(3, -1, -1, -1)
    inputs, pose, _ = Synth(LAYOUT, Augment())(world, torch.Generator().manual_seed(7), augment=False, noisy=False,
                                               hint=False)

    def errors(weights: Path) -> tuple[float, float]:
        """Mean over the cameras of (MPJPE m, error of the motion about the clip's mean pose / that motion's size)."""
        lifter, out = TcnLifter(weights, rays=None), []
        for x, truth in zip(inputs.numpy(), pose.numpy()):
            f = len(x)
            image = np.full((f, 33, 3), np.nan)
            image[:, LAYOUT.mediapipe_index] = np.concatenate([(x[..., :2] + [1.0, 0.5625]) * 640, x[..., 2:3]], -1)
            lifted = lifter.lift(Detections(times=np.arange(f) / 30.0, image=image, world=np.full((f, 33, 3), np.nan),
                                            present=np.ones(f, dtype=bool), width=1280, height=720, fps=30.0))
            pred = lifted.keypoints[:, LAYOUT.mediapipe_index] - lifted.info["trajectory"][:, None]
            motion, true_motion = pred - pred.mean(0), truth - truth.mean(0)
            out.append((mpjpe(pred, truth), mpjpe(motion, true_motion) / mpjpe(0 * true_motion, true_motion)))
        return tuple(np.mean(out, axis=0))

    shipped_mpjpe, shipped_motion = errors(DEFAULT_WEIGHTS)
    assert shipped_mpjpe < 0.25 and shipped_motion < 0.85  # measured 0.15 m and 0.65
    torch.manual_seed(0)
    save_weights(tmp_path / "random.pt", TemporalModel(**asdict(model.config)), {"keypoints": list(LAYOUT.names)})
    random_mpjpe, random_motion = errors(tmp_path / "random.pt")
    assert random_mpjpe > 0.25 and random_motion > 0.85  # measured 0.56-0.61 m and 1.3-1.4 over six seeds


def test_frames_without_a_person_are_nan_with_zero_confidence(shipped: TcnLifter) -> None:
    frames = 40
    image = np.zeros((frames, 33, 3))
    image[:, :, :2] = np.nan
    image[:, LAYOUT.mediapipe_index] = np.concatenate(
        [(synthetic_inputs(frames)[..., :2] + [1.0, 0.5625]) * 640, np.ones((frames, 23, 1))], axis=-1)
    present = np.arange(frames) % 10 < 7
    image[~present] = np.nan
    det = Detections(times=np.arange(frames) / 30.0, image=image, world=np.zeros((frames, 33, 3)), present=present,
                     width=1280, height=720, fps=30.0)
    lifted = shipped.lift(det)
    assert np.all(np.isnan(lifted.keypoints[~present])) and np.all(lifted.confidence[~present] == 0)
    assert np.all(np.isfinite(lifted.keypoints[present][:, LAYOUT.mediapipe_index]))
    assert np.all(lifted.confidence[present][:, LAYOUT.mediapipe_index] == 1.0)
    empty = shipped.lift(Detections(times=np.zeros(0), image=np.zeros((0, 33, 3)), world=np.zeros((0, 33, 3)),
                                    present=np.zeros(0, dtype=bool), width=1280, height=720, fps=30.0))
    assert empty.keypoints.shape == (0, 33, 3)
    nobody = shipped.lift(Detections(times=det.times, image=np.full_like(image, np.nan), world=det.world,
                                     present=np.zeros(frames, dtype=bool), width=1280, height=720, fps=30.0))
    assert np.all(np.isnan(nobody.keypoints)) and np.all(nobody.confidence == 0)


def test_lifts_real_video_into_an_upright_travelling_person(balance_clip: Path, shipped: TcnLifter) -> None:
    from core.detect2d import detect

    det = detect(balance_clip)
    lifted = shipped.lift(det)
    f = det.num_frames
    assert lifted.keypoints.shape == (f, 33, 3) and lifted.confidence.shape == (f, 33)
    assert lifted.lifter == "tcn" and lifted.info["stride"] == 1  # 60 fps: the weights were trained down to speed 0.45
    assert np.all(np.isnan(lifted.keypoints[:, 1])) and np.all(lifted.confidence[:, 1] == 0)  # eye: not predicted
    idx = LAYOUT.mediapipe_index
    kp = lifted.keypoints[det.present][:, idx]
    assert np.all(np.isfinite(kp))
    names = LAYOUT.names
    nose = kp[:, names.index("nose"), 1]
    standing = kp[:, [names.index("left_ankle"), names.index("right_ankle")], 1].min(1)  # he lifts one leg
    # Camera axes (this camera looks 22 degrees down) and a man leaning over his standing leg: head well above feet.
    assert np.all((nose - standing > 0.7) & (nose - standing < 2.0)) and np.median(nose - standing) > 1.0
    thigh = np.linalg.norm(kp[:, names.index("left_hip")] - kp[:, names.index("left_knee")], axis=-1)
    assert 0.3 < np.median(thigh) < 0.6
    assert np.all(lifted.info["trajectory"][det.present][:, 2] < -1.0)  # in front of the camera
    x = detections_to_inputs(det.image, det.world, det.width, det.height, LAYOUT)
    assert x.shape == (f, 23, INPUT_CHANNELS) and np.all(np.abs(x[det.present, :, 0]) < 1.5)
    assert np.all(x[det.present, :, 6] == 1.0)  # MediaPipe's 3D reaches the lifter on every frame with a person


class _Warnings:
    """A Reporter that keeps the warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def stage(self, name: str, total: int) -> None: pass
    def update(self, frame: int) -> None: pass
    def done(self, **result: object) -> None: pass
    def error(self, payload: dict) -> None: pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_a_bad_bvh_is_skipped_with_a_warning_and_a_damaged_cache_is_rebuilt(bvh_set: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mocap"
    folder.mkdir()
    for f in bvh_set.glob("*.bvh"):
        (folder / f.name).write_bytes(f.read_bytes())
    good = (folder / "walk_a_001.bvh").read_text()
    (folder / "zero_time.bvh").write_text(good.replace("Frame Time:", "Frame Time: 0 #"))  # once a ZeroDivisionError
    reporter = _Warnings()
    data = load_mocap(folder, tmp_path / "cache", reporter=reporter)
    assert data.names == ["walk_a_001.bvh", "walk_b_001.bvh", "walk_held_001.bvh"]
    assert len(reporter.warnings) == 1 and reporter.warnings[0].startswith("skipped zero_time.bvh")
    (entry,) = (tmp_path / "cache").glob("keypoints-*.npz")
    entry.write_bytes(entry.read_bytes()[:500])  # a truncated cache entry: rebuilt, never a traceback
    again = load_mocap(folder, tmp_path / "cache", reporter=reporter)
    assert np.array_equal(again.keypoints, data.keypoints) and "cache" in reporter.warnings[1]
    assert "is damaged; rebuilding it" in reporter.warnings[1]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [entry.name]  # no temp file left
