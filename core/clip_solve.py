"""The clip-level solve: one optimisation over the whole clip that refines the per-frame IK (core.ik.solve).

Unknowns: the root trajectory (F, 3), a rotation (axis-angle, F × J × 3) on top of each joint's IK rotation (the
toes stay as the IK leaves them), and the camera's pitch, roll and height relative to the IK's guess of it
(meta["ik"]: p_camera = level⁻¹ · (p_world - ground_offset)). The bone lengths are the IK's per-clip ones and stay
exact: the landmarks come from forward kinematics of the fixed offsets (core.ik.keypoints_from_pose's model).
Terms, each a weighted sum of squares per frame (weight 1/σ², ClipSolveSettings):

- 2D: every seen landmark projected through the pinhole camera (focal length fitted as core.lift.rays does) against
  the detection, the residual taken in metres at the landmark's depth, robust (Huber), weighted by visibility;
- 3D: the lifter's keypoints (motion.keypoints_3d) as a prior, compared in the camera's frame (a re-levelled floor
  does not tilt the lifter's pose): the pose about the mid-hip firmly, the mid-hip's place loosely (depth jitters);
- smoothness: every landmark's acceleration;
- joint limits: knees and elbows are hinges (the child bone stays in the hinge's plane and bends one way);
- contacts: each heel and toe, weighted by its contact probability (motion.contact_probability), does not move
  horizontally and stands at its rest height above the floor Y = 0; no heel or toe goes below that height;
- small priors on the rotation changes and the camera change.

Vectorised over frames (forward kinematics by tree depth), PyTorch autograd on one CPU thread, L-BFGS preconditioned
by the Gauss-Newton diagonal with a fixed budget of iterations, so the cost is bounded and linear in the clip's
length. Not scipy's least_squares with
jac_sparsity: its finite-difference Jacobian needs one cost evaluation per colour of the ~63-unknowns-per-frame,
5-frame-wide band (hundreds per iteration), against one forward and backward pass here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from core.common import rotations as quat
from core.common.motionfile import Motion

MODES = ("clip", "frame")
FIRST_STEP = 0.05  # the largest change (radians or metres) that L-BFGS's first step tries
FOOT_POINTS = ("left_heel", "left_foot_index", "right_heel", "right_foot_index")  # contact_probability's order
HIPS = ("left_hip", "right_hip")
HINGES = {"LeftLowerLeg": "knee", "RightLowerLeg": "knee", "LeftLowerArm": "elbow", "RightLowerArm": "elbow"}


@dataclass(frozen=True)
class ClipSolveSettings:
    """Each term's weight is 1/σ² of its residual; the σ's in metres unless named otherwise.

    sigma_2d_m: 2D reprojection error at the landmark's depth; huber_2d_m: where its loss turns linear (outliers);
    min_visibility: landmarks seen less well give no 2D term. sigma_pose_m: the lifter's pose about the mid-hip;
    sigma_place_m: the lifter's mid-hip position. accel_mps2: a landmark's typical acceleration (the second
    difference's σ is accel_mps2 / fps²). sigma_slide_m: a planted point's horizontal motion per frame;
    sigma_plant_m: a planted point's height off its rest height; sigma_floor_m: any heel or toe below that height.
    gate_contacts: weight the points by their probability only within their foot's contacts (motion.contacts;
    else everywhere: contacts found late still count). sigma_hinge: the lower leg's or forearm's unit direction
    off its hinge plane or bent the wrong way. sigma_delta_rad: each joint's change from the IK. sigma_camera_rad,
    sigma_camera_m: the camera's change of pitch and roll, of height. root_iterations, iterations: the budget of
    L-BFGS iterations (each evaluates the cost about once) of the first stage, which moves only the root and the
    camera (cheap: no kinematics), and of the second, which moves everything. threads: torch CPU threads.
    double: float64 (float32 is ~15 % faster and as good). camera: solve the camera's pitch, roll and height too
    (off where several people share one camera and floor: core.pipeline.run_people).
    """

    sigma_2d_m: float = 0.05
    huber_2d_m: float = 0.05
    min_visibility: float = 0.5
    sigma_pose_m: float = 0.05
    sigma_place_m: float = 0.3
    accel_mps2: float = 8.0
    sigma_slide_m: float = 0.001
    sigma_plant_m: float = 0.003
    sigma_floor_m: float = 0.005
    gate_contacts: bool = False
    sigma_hinge: float = 0.05
    sigma_delta_rad: float = 0.5
    sigma_camera_rad: float = 0.1
    sigma_camera_m: float = 0.2
    root_iterations: int = 30
    iterations: int = 60
    threads: int = 1
    double: bool = True
    camera: bool = True


DEFAULT = ClipSolveSettings()


def clip_solve(motion: Motion, image: np.ndarray, width: int, height: int,
               settings: ClipSolveSettings = DEFAULT) -> Motion:
    """`motion` (core.ik.solve's) refined over the whole clip against the 2D detections image (F, K, 3): x, y
    pixels and visibility (NaN where unseen) of a width × height video."""
    from core.lift.normalize import normalize_screen

    image = np.asarray(image, dtype=np.float64)
    uv = normalize_screen(image[..., :2], width, height)
    return refine(motion, uv, np.nan_to_num(image[..., 2]), settings=settings)


def refine(motion: Motion, uv: np.ndarray, visibility: np.ndarray, focal: float | None = None,
           settings: ClipSolveSettings = DEFAULT) -> Motion:
    """The clip solve (module docstring). uv: (F, K, 2) landmarks in normalised screen units (core.lift.normalize:
    right, down, origin at the image centre, half the width = 1); visibility: (F, K) 0..1; focal: in uv's units (None:
    fitted from the lifter's keypoints, motion.keypoints_3d). Returns the Motion with new rotations and root
    positions; meta["clip_solve"] holds the camera, iterations, seconds and each term before and after."""
    import torch

    frames = motion.num_frames
    if frames == 0:
        return motion
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        problem = _Problem(motion, np.asarray(uv, dtype=np.float64), np.asarray(visibility, dtype=np.float64),
                           focal, settings)
        variables = problem.zero()
        with torch.no_grad():
            before = problem.terms(*variables)
            still = problem.landmarks(problem.q_ik, problem.root_ik)
        for v in variables:
            v.requires_grad_(True)
        curvature = problem.curvature()
        moving, end = (variables, None) if settings.camera else (variables[:2], -3)
        counts = [_minimise(lambda: problem.terms(*variables, still=still), moving[1:], settings.root_iterations,
                            curvature[problem.delta_size:end]),
                  _minimise(lambda: problem.terms(*variables), moving, settings.iterations, curvature[:end])]
        with torch.no_grad():
            after = problem.terms(*variables)
            rotations, root = problem.pose(*variables)
        camera = variables[2].detach().numpy()
    finally:
        torch.set_num_threads(threads)
    rotations = quat.make_continuous(quat.normalize(rotations.numpy()))
    info = {"ran": True, "iterations": [c[0] for c in counts], "evaluations": [c[1] for c in counts],
            "seconds": round(time.perf_counter() - t0, 4), "focal": problem.focal,
            "camera": problem.camera(camera),
            "camera_change": {"pitch_deg": float(np.degrees(camera[0])), "roll_deg": float(np.degrees(camera[1])),
                              "height_m": float(camera[2])},
            "terms_before": {k: round(float(v), 4) for k, v in before.items()},
            "terms_after": {k: round(float(v), 4) for k, v in after.items()},
            "settings": asdict(settings)}
    return motion.with_channels(rotations=rotations, root_positions=root.numpy().astype(np.float64),
                                meta={**motion.meta, "clip_solve": info})


def _minimise(cost: Callable[[], dict[str, "torch.Tensor"]], variables: Sequence["torch.Tensor"],  # noqa: F821
              iterations: int, curvature: "torch.Tensor", history: int = 20) -> tuple[int, int]:  # noqa: F821
    """L-BFGS (two-loop recursion, backtracking Armijo line search) on the sum of cost()'s terms, moving
    `variables` in place, for at most `iterations` iterations; returns the iterations and cost evaluations it took.
    curvature: each variable's (flattened, in order) approximate second derivative, the initial inverse Hessian's
    diagonal (a hip turn moves every landmark, a wrist turn three). (torch.optim's L-BFGS would do, without the
    preconditioner, but importing it costs a second per process.)"""
    import torch

    def evaluate() -> tuple[float, torch.Tensor]:
        for v in variables:
            v.grad = None
        loss = sum(cost().values())
        loss.backward()
        return float(loss.detach()), torch.cat([v.grad.reshape(-1) for v in variables])

    def move(step: torch.Tensor) -> None:
        with torch.no_grad():
            start = 0
            for v in variables:
                v += step[start:start + v.numel()].view_as(v)
                start += v.numel()

    if iterations <= 0:
        return 0, 0
    loss, grad = evaluate()
    pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    evaluations, done = 1, 0
    for done in range(1, iterations + 1):
        d = -grad
        alphas = []
        for s_k, y_k, rho in reversed(pairs):
            a = rho * float(s_k @ d)
            d = d - a * y_k
            alphas.append(a)
        d = d / curvature
        if pairs:
            s_k, y_k, _ = pairs[-1]
            d = d * (float(s_k @ y_k) / float(y_k @ (y_k / curvature)))
        else:
            d = d * (FIRST_STEP / max(float(d.abs().max()), 1e-12))
        for (s_k, y_k, rho), a in zip(pairs, reversed(alphas)):
            d = d + s_k * (a - rho * float(y_k @ d))
        slope = float(grad @ d)
        if slope >= 0:  # not a descent direction: start again from the preconditioned gradient
            pairs.clear()
            d = -grad / curvature
            d = d * (FIRST_STEP / max(float(d.abs().max()), 1e-12))
            slope = float(grad @ d)
        t, moved = 1.0, 0.0
        for _ in range(12):
            move((t - moved) * d)
            moved = t
            new_loss, new_grad = evaluate()
            evaluations += 1
            if new_loss <= loss + 1e-4 * t * slope:
                break
            t *= 0.3
        else:
            move(-moved * d)
            break
        s_k, y_k = t * d, new_grad - grad
        sy = float(s_k @ y_k)
        if sy > 1e-10:
            pairs.append((s_k, y_k, 1.0 / sy))
            pairs = pairs[-history:]
        converged = abs(loss - new_loss) <= 1e-9 * max(abs(loss), 1.0)
        loss, grad = new_loss, new_grad
        if converged:
            break
    return done, evaluations


class _Problem:
    """One clip's data as tensors, the forward model and the terms."""

    def __init__(self, motion: Motion, uv: np.ndarray, visibility: np.ndarray, focal: float | None,
                 settings: ClipSolveSettings) -> None:
        import torch

        from core.ik import keypoints_from_pose, load_ik_rig
        from core.lift.rays import fit_focal

        self.settings = s = settings
        rig = load_ik_rig()
        sk = motion.skeleton
        frames, fps = motion.num_frames, float(motion.fps) or 30.0
        self.dtype = dtype = torch.float64 if s.double else torch.float32
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64)).to(dtype)  # noqa: E731
        self.frames = frames
        # the skeleton and the landmarks on it, in their joints' (world-aligned) rest frames
        rest = sk.rest_positions()
        landmarks = keypoints_from_pose(quat.identity(1, sk.num_joints), sk.offsets[:1], sk, rig)[0]
        self.lm_joint = torch.as_tensor(rig.landmark_joint)
        self.lm_offset = t(landmarks - rest[rig.landmark_joint])
        self.offsets = t(sk.offsets)
        depth = np.zeros(sk.num_joints, dtype=int)
        for j in range(1, sk.num_joints):
            depth[j] = depth[sk.parents[j]] + 1
        levels = [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]
        self.levels = [(torch.as_tensor(joints), torch.as_tensor(np.searchsorted(above, sk.parents[joints])))
                       for above, joints in zip(levels[:-1], levels[1:])]
        order = np.concatenate(levels)
        self.unorder = torch.as_tensor(np.argsort(order))
        # landmark = root + Σ over the joint's chain of (parent's world rotation · offset) + rotated landmark offset
        chain = np.zeros((len(rig.landmark_names), sk.num_joints))
        for k, j in enumerate(rig.landmark_joint):
            while j > 0:
                chain[k, j], j = 1.0, sk.parents[j]
        self.chain = t(chain)
        self.parent = torch.as_tensor(np.maximum(sk.parents, 0))
        fixed = {b["joint"] for b in rig.bones if b["solver"] == "fixed"}
        self.skeleton = sk
        self.free = [j for j, n in enumerate(sk.names) if n not in fixed]
        self.delta_size = frames * len(self.free) * 3
        slot = np.full(sk.num_joints, len(self.free))
        slot[self.free] = np.arange(len(self.free))
        self.slot = torch.as_tensor(slot)
        # the warm start
        self.q_ik = t(quat.normalize(motion.rotations))
        self.root_ik = t(motion.root_positions)
        # the camera: p_camera = level⁻¹ · (p_world - offset), as core.ik.solve grounded the lifter's camera axes
        ik = motion.meta.get("ik", {})
        level = np.asarray(ik.get("level_wxyz", [1.0, 0.0, 0.0, 0.0]), dtype=np.float64)
        self.ground = t(ik.get("ground_offset", [0.0, 0.0, 0.0]))
        self.level = quat.normalize(level)
        self.to_camera = t(_matrix(quat.inverse(self.level)))
        k = len(rig.landmark_names)
        kp = np.full((frames, k, 3), np.nan) if motion.keypoints_3d is None else \
            np.asarray(motion.keypoints_3d, dtype=np.float64)[:, :k]
        vis = np.clip(np.nan_to_num(visibility[:, :k]), 0.0, 1.0)
        uv = uv[:, :k]
        seen = (vis >= s.min_visibility) & np.all(np.isfinite(uv), axis=-1)
        if focal is None:
            focal = fit_focal((kp - self.ground.double().numpy()) @ self.to_camera.double().numpy().T, uv, seen)
        self.focal = float(focal) if focal is not None and np.isfinite(focal) and focal > 0 else None
        self.uv = t(np.nan_to_num(uv))
        self.w2d = t(np.where(seen, vis, 0.0) if self.focal else np.zeros(vis.shape))
        finite = np.all(np.isfinite(kp), axis=-1)
        self.kp = t(np.nan_to_num(kp) - self.ground.numpy())  # level · (the lifter's camera axes)
        self.w3d = t(np.where(finite, 0.2 + 0.8 * vis, 0.0))
        self.hips = [rig.landmark_names.index(n) for n in HIPS]
        hips_seen = finite[:, self.hips].all(axis=1)
        self.w_place = t(hips_seen.astype(np.float64))
        # contacts: the four foot points, each weighted by its contact probability (within its foot's contacts if
        # gate_contacts); none without contacts
        self.feet = [rig.landmark_names.index(n) for n in FOOT_POINTS]
        self.rest_height = t(landmarks[self.feet, 1])
        self.sole = float(landmarks[self.feet, 1].min())
        planted = np.zeros((frames, len(self.feet)))
        if motion.contacts is not None:
            foot = np.repeat(np.asarray(motion.contacts, dtype=np.float64)[:, :2], 2, axis=1)
            prob = np.ones_like(foot) if motion.contact_probability is None else \
                np.clip(np.nan_to_num(np.asarray(motion.contact_probability, dtype=np.float64)[:, :4]), 0, 1)
            planted = (foot if s.gate_contacts else 1.0) * prob
        self.planted = t(planted)
        self.held = t(np.minimum(planted[1:], planted[:-1]))
        # hinges: knees and elbows, by the child bone's direction in the joint's parent frame: no sideways
        # component (the hinge), and bent only one way (knees back, -Z; elbows forward, +Z)
        hinges = [(sk.index(n), kind) for n, kind in HINGES.items() if n in sk.names]
        self.hinge_joint = torch.as_tensor([j for j, _ in hinges], dtype=torch.long)
        self.hinge_bone = t([quat.unit(sk.offsets[sk.children(j)[0]]) for j, _ in hinges])
        self.hinge_side = t([[1.0, 0.0, 0.0] if kind == "knee" else [0.0, 1.0, 0.0] for _, kind in hinges])
        self.hinge_bend = t([[0.0, 0.0, -1.0] if kind == "knee" else [0.0, 0.0, 1.0] for _, kind in hinges])
        self.sigma_accel = s.accel_mps2 / fps ** 2

    def camera(self, change: np.ndarray) -> dict[str, object]:
        """The solved camera as meta["ik"] describes the IK's: p_camera = level⁻¹ · (p_world - ground_offset), and
        the focal length in normalised screen units (None if none could be fitted)."""
        import torch

        tilt = _qexp(torch.as_tensor([change[0], 0.0, change[1]], dtype=torch.float64)).numpy()
        level = quat.multiply(quat.inverse(tilt), self.level)
        return {"focal": self.focal, "level_wxyz": quat.canonical(level).tolist(),
                "ground_offset": (self.ground.numpy() + [0.0, change[2], 0.0]).tolist()}

    def zero(self) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:  # noqa: F821
        """The unknowns at the warm start: rotation deltas (F, J_free, 3), root change (F, 3), camera (3,)."""
        import torch

        return (torch.zeros(self.frames, len(self.free), 3, dtype=self.dtype),
                torch.zeros(self.frames, 3, dtype=self.dtype), torch.zeros(3, dtype=self.dtype))

    def local(self, delta: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
        """(F, J, 4) local rotations: the IK's times exp(delta) (fixed joints unchanged)."""
        import torch

        full = torch.cat([delta, torch.zeros_like(delta[:, :1])], dim=1)[:, self.slot]
        return _qmul(self.q_ik, _qexp(full))

    def pose(self, delta: "torch.Tensor", root: "torch.Tensor",  # noqa: F821
             camera: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:  # noqa: F821
        return self.local(delta), self.root_ik + root

    def curvature(self) -> "torch.Tensor":  # noqa: F821
        """The cost's approximate second derivative by each unknown at the warm start, flattened as the unknowns are
        (delta, root, camera): Gauss-Newton's diagonal, every landmark weighted by its terms' weights (the
        differences of the smoothness and sliding terms counted as they enter), lever arms from the pose."""
        import torch

        s, sk = self.settings, self.skeleton
        rotations = self.q_ik.double().numpy()
        joints = sk.forward_kinematics(rotations, self.root_ik.double().numpy())
        axes = quat.to_matrix(sk.global_rotations(rotations))  # (F, J, 3, 3): columns are the joints' axes
        lm = self.landmarks(self.q_ik, self.root_ik).double().numpy()
        lever = lm[:, :, None] - joints[:, None]  # (F, K, J, 3)
        along = np.einsum("fjci,fkjc->fkji", axes, lever)
        moved = np.sum(lever ** 2, -1)[..., None] - along ** 2  # |axis × lever|²
        weight = (2 * self.w2d.double().numpy() / s.sigma_2d_m ** 2 + self.w3d.double().numpy() / s.sigma_pose_m ** 2
                  + (6.0 if self.frames > 2 else 0.0) / self.sigma_accel ** 2)
        feet = np.zeros_like(weight)
        feet[:, self.feet] = 4 * self.planted.double().numpy() / s.sigma_slide_m ** 2 \
            + self.planted.double().numpy() / s.sigma_plant_m ** 2
        weight = weight + feet
        moving = self.chain.double().numpy().copy()
        moving[:, 0] = 1.0
        delta = np.einsum("fk,kj,fkji->fji", weight, moving, moved)[:, self.free] + 1.0 / s.sigma_delta_rad ** 2
        root = np.repeat(weight.sum(1)[:, None], 3, axis=1)
        distance = np.sum((lm - self.ground.double().numpy()) ** 2, -1)
        seen = 2 * self.w2d.double().numpy() / s.sigma_2d_m ** 2
        camera = np.array([np.sum(seen * distance) + 1 / s.sigma_camera_rad ** 2] * 2
                          + [np.sum(seen) + 1 / s.sigma_camera_m ** 2])
        flat = np.concatenate([delta.reshape(-1), root.reshape(-1), camera])
        return torch.as_tensor(np.maximum(flat, 1e-6)).to(self.dtype)

    def landmarks(self, q: "torch.Tensor", root: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
        """(F, K, 3) landmarks of the posed skeleton (forward kinematics by tree depth)."""
        import torch

        r = _qmat(q)
        g, levels = r[:, :1], [r[:, :1]]
        for joints, parents in self.levels:
            g = levels[-1][:, parents] @ r[:, joints]
            levels.append(g)
        g = torch.cat(levels, dim=1)[:, self.unorder]
        bones = (g[:, self.parent] @ self.offsets[:, :, None])[..., 0]
        return root[:, None] + self.chain @ bones + (g[:, self.lm_joint] @ self.lm_offset[:, :, None])[..., 0]

    def terms(self, delta: "torch.Tensor", root: "torch.Tensor", camera: "torch.Tensor",  # noqa: F821
              still: "torch.Tensor | None" = None) -> dict[str, "torch.Tensor"]:  # noqa: F821
        """Each term's weighted sum of squares per frame; still: the warm start's landmarks (F, K, 3) when only the
        root and the camera move (delta is then ignored)."""
        import torch

        s, n = self.settings, float(self.frames)
        if still is None:
            q, root_pos = self.pose(delta, root, camera)
            lm = self.landmarks(q, root_pos)
        else:
            q, lm = self.q_ik, still + root[:, None]
        out: dict[str, torch.Tensor] = {}
        # the landmarks as the solved camera sees them, turned back by the IK's level: comparable with the lifter's
        # keypoints, which the IK's camera saw (both p = level · p_camera)
        tilt = _qmat(_qexp(torch.stack([camera[0], camera[0] * 0, camera[1]])))
        seen = (lm - self.ground - torch.stack([camera[0] * 0, camera[2], camera[0] * 0])) @ tilt.T
        if self.focal is not None:  # 2D
            cam = seen @ self.to_camera.T
            z = torch.clamp(-cam[..., 2], min=0.1)
            proj = self.focal * torch.stack([cam[..., 0], -cam[..., 1]], dim=-1) / z[..., None]
            r = torch.sqrt(torch.sum(((proj - self.uv) * (z.detach() / self.focal)[..., None]) ** 2, -1) + 1e-12)
            h = s.huber_2d_m
            rho = torch.where(r < h, r ** 2, 2 * h * r - h ** 2)
            out["2d"] = torch.sum(self.w2d * rho) / s.sigma_2d_m ** 2 / n
        # 3D prior: the pose about the mid-hip, and the mid-hip's place
        mid, kp_mid = seen[:, self.hips].mean(1, keepdim=True), self.kp[:, self.hips].mean(1, keepdim=True)
        rel = (seen - mid) - (self.kp - kp_mid)
        out["3d_pose"] = torch.sum(self.w3d * torch.sum(rel ** 2, -1)) / s.sigma_pose_m ** 2 / n
        out["3d_place"] = torch.sum(self.w_place * torch.sum((mid - kp_mid)[:, 0] ** 2, -1)) / s.sigma_place_m ** 2 / n
        # smoothness
        if self.frames > 2:
            acc = lm[2:] - 2 * lm[1:-1] + lm[:-2]
            out["accel"] = torch.sum(acc ** 2) / self.sigma_accel ** 2 / n
        # contacts and floor
        feet = lm[:, self.feet]
        if self.frames > 1:
            slide = torch.sum((feet[1:, :, [0, 2]] - feet[:-1, :, [0, 2]]) ** 2, -1)
            out["slide"] = torch.sum(self.held * slide) / s.sigma_slide_m ** 2 / n
        out["plant"] = torch.sum(self.planted * (feet[..., 1] - self.rest_height) ** 2) / s.sigma_plant_m ** 2 / n
        out["floor"] = torch.sum(torch.relu(self.sole - feet[..., 1]) ** 2) / s.sigma_floor_m ** 2 / n
        # hinges
        bone = (_qmat(q[:, self.hinge_joint]) @ self.hinge_bone[:, :, None])[..., 0]
        limit = torch.sum(bone * self.hinge_side, -1) ** 2 + torch.relu(-torch.sum(bone * self.hinge_bend, -1)) ** 2
        out["hinge"] = torch.sum(limit) / s.sigma_hinge ** 2 / n
        # priors
        out["delta"] = torch.sum(delta ** 2) / s.sigma_delta_rad ** 2 / n
        out["camera"] = (torch.sum(camera[:2] ** 2) / s.sigma_camera_rad ** 2
                         + camera[2] ** 2 / s.sigma_camera_m ** 2) / n
        return out


def _matrix(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix of a unit quaternion (4,) w-x-y-z."""
    return quat.rotate(np.asarray(q)[None], np.eye(3)).T


def _product_table() -> np.ndarray:
    """(16, 4): a ⊗ b = vec(a bᵀ) @ table, the Hamilton product as one matrix product."""
    e = np.eye(4)
    return np.stack([quat.multiply(e[j], e[k]) for j in range(4) for k in range(4)])


def _matrix_table() -> np.ndarray:
    """(16, 9): the rotation matrix of a unit quaternion q is vec(q qᵀ) @ table (row-major 3 × 3), from the
    homogeneous quadratic form of the matrix."""
    def form(q: np.ndarray) -> np.ndarray:
        w, x, y, z = q
        return np.array([w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y),
                         2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x),
                         2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z])
    e = np.eye(4)
    table = np.zeros((4, 4, 9))
    for k in range(4):
        table[k, k] = form(e[k])
        for m in range(k + 1, 4):
            table[k, m] = table[m, k] = (form(e[k] + e[m]) - form(e[k]) - form(e[m])) / 2
    return table.reshape(16, 9)


_TABLES: dict[str, "torch.Tensor"] = {}  # noqa: F821


def _table(name: str, dtype: "torch.dtype") -> "torch.Tensor":  # noqa: F821
    import torch

    key = f"{name} {dtype}"
    if key not in _TABLES:
        _TABLES[key] = torch.as_tensor(_product_table() if name == "product" else _matrix_table()).to(dtype)
    return _TABLES[key]


def _outer(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    return (a[..., :, None] * b[..., None, :]).flatten(-2)


def _qmul(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """Hamilton products (..., 4) w-x-y-z."""
    import torch

    return _outer(*torch.broadcast_tensors(a, b)) @ _table("product", a.dtype)


def _qmat(q: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """Unit quaternions (..., 4) -> rotation matrices (..., 3, 3)."""
    return (_outer(q, q) @ _table("matrix", q.dtype)).unflatten(-1, (3, 3))


def _qexp(v: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """Axis-angle vectors (..., 3) radians -> unit quaternions (..., 4), smooth through zero."""
    import torch

    theta = torch.sqrt(torch.sum(v * v, -1, keepdim=True) + 1e-16)
    return torch.cat([torch.cos(theta / 2), torch.sin(theta / 2) / theta * v], dim=-1)
