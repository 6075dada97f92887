"""Motion capture → training keypoints: any folder of BVH files (or .tar.xz/.tar.gz/.zip archives of them) becomes
the lifter's 23 MediaPipe landmarks per frame, in metres, Y up, floor at y = 0, resampled to one frame rate.

The landmarks are not the mocap joints: each is a joint plus an offset in a segment frame (rigs/lifter_layout.json,
"mocap"), e.g. MediaPipe's hip sits lateral of the hip joint centre, the heel and toe tip hang off the foot, the nose
and ears off the head. Segment frames come from joint positions where they can (body, foot) and from the joint's
own rotation, calibrated against the body per file, where positions cannot tell (head turn, forearm twist).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from core.bvh import read_bvh
from core.common.atomic import atomic_path
from core.common.errors import BadBvhFile, InputNotFound
from core.lift.layout import Layout, lifter_layout
from core.progress import NullReporter, Reporter

ARCHIVE_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar", ".zip")


@dataclass
class MocapSet:
    """Keypoints of many motion files, concatenated.

    keypoints: (N, K, 3) float32 metres, Y up, floor at 0. starts: (M + 1,) first frame of each file (and N).
    names: M file names (relative to the data folder). fps: the common frame rate.
    """

    keypoints: np.ndarray
    starts: np.ndarray
    names: list[str]
    fps: float

    def clip(self, i: int) -> np.ndarray:
        return self.keypoints[self.starts[i]:self.starts[i + 1]]

    def subset(self, files: list[int]) -> MocapSet:
        clips = [self.clip(i) for i in files]
        starts = np.concatenate([[0], np.cumsum([len(c) for c in clips])]).astype(np.int64)
        kp = np.concatenate(clips) if clips else np.zeros((0, *self.keypoints.shape[1:]), np.float32)
        return MocapSet(kp, starts, [self.names[i] for i in files], self.fps)


def find_bvh_files(data: Path, cache: Path) -> list[Path]:
    """All .bvh files under `data`, after extracting any archives there into `cache` (once)."""
    data = Path(data)
    if not data.exists():
        raise InputNotFound(f"Mocap folder {data} does not exist.", "Pass --data a folder of .bvh files or archives.")
    roots = [data]
    for arc in sorted(p for p in data.iterdir() if p.name.endswith(ARCHIVE_SUFFIXES)):
        dest = Path(cache) / "extracted" / arc.name.split(".")[0]
        marker = dest / ".extracted"
        if not marker.exists():
            dest.mkdir(parents=True, exist_ok=True)
            if arc.suffix == ".zip":
                with zipfile.ZipFile(arc) as zf:
                    zf.extractall(dest)
            else:
                with tarfile.open(arc) as tf:
                    tf.extractall(dest, filter="data")
            marker.write_text(arc.name, encoding="utf-8")
        roots.append(dest)
    files = sorted({p for r in roots for p in r.rglob("*.bvh")})
    if not files:
        raise InputNotFound(f"No .bvh files in {data}.", "Pass --data a folder of .bvh files or archives of them.")
    return files


def _family(names: list[str], layout: Layout) -> tuple[str, dict[str, dict[str, int]]]:
    """Which joint-naming family the skeleton uses and, per side, role -> joint index."""
    for fam, spec in layout.mocap["families"].items():
        roles: dict[str, dict[str, int]] = {}
        try:
            for side, tag in spec["sides"].items():
                roles[side] = {r: names.index(n.replace("{S}", tag)) for r, n in spec.items()
                               if r != "sides"}
        except ValueError:
            continue
        return fam, roles
    raise BadBvhFile(f"Unknown skeleton (joints {names[:6]}...).",
                     "Add its joint names as a family in rigs/lifter_layout.json under mocap.families.")


def _unit_scale(leg_file_units: float, mocap: dict) -> float:
    """Metres per file unit, judged from the leg length (thigh + shank) rather than trusting the file."""
    ref = mocap["reference_leg_m"]
    best = min(mocap["units_m"].values(), key=lambda u: abs(np.log(leg_file_units * u / ref)))
    leg = leg_file_units * best
    return best if 0.55 <= leg <= 1.15 else ref / leg_file_units


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _frame(x: np.ndarray, y_hint: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotation matrices with columns x, y, z: x exact, y = y_hint made orthogonal, z = x × y."""
    x = _normalize(x)
    y = _normalize(y_hint - np.sum(y_hint * x, -1, keepdims=True) * x)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def bvh_keypoints(path: Path, layout: Layout | None = None, fps: float = 30.0) -> np.ndarray:
    """(F, K, 3) lifter keypoints of one BVH file: metres, Y up, floor at y = 0, resampled to `fps`."""
    layout = layout or lifter_layout()
    data = read_bvh(path)
    pos, glob = data.forward()
    fam, roles = _family(data.names, layout)
    L, R = roles["left"], roles["right"]
    leg = np.median(np.linalg.norm(pos[:, L["hip"]] - pos[:, L["knee"]], axis=-1)
                    + np.linalg.norm(pos[:, L["knee"]] - pos[:, L["ankle"]], axis=-1))
    unit = _unit_scale(float(leg), layout.mocap)
    pos = pos * unit
    size = leg * unit / layout.mocap["reference_leg_m"]  # offsets scale with the subject

    pelvis = 0.5 * (pos[:, L["hip"]] + pos[:, R["hip"]])
    left = pos[:, L["shoulder"]] - pos[:, R["shoulder"]] + pos[:, L["hip"]] - pos[:, R["hip"]]
    up = pos[:, L["neck"]] - pelvis
    b = _frame(up, left)  # columns: up, left, up × left = backward
    body = np.stack([b[..., 1], b[..., 0], -b[..., 2]], axis=-1)  # columns: left, up, forward

    def calibrated(joint: int, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(F, 3, 3): the joint's rotation times a constant offset that makes it match `ref` on average."""
        sel = mask if mask.sum() >= 5 else np.ones_like(mask)
        offset = (glob[joint][sel].inv() * Rotation.from_matrix(ref[sel])).mean()
        return (glob[joint] * offset).as_matrix()

    frames: dict[tuple[str, str], np.ndarray] = {}
    every = np.ones(len(pos), dtype=bool)
    frames[("head", "left")] = frames[("head", "right")] = calibrated(L["head"], body, every)
    for side, J in (("left", L), ("right", R)):
        forearm = pos[:, J["wrist"]] - pos[:, J["elbow"]]
        # Hanging arm (wrist under elbow under shoulder): palm towards the thigh, index->pinky points backwards.
        hanging = (forearm[:, 1] < -0.7 * np.linalg.norm(forearm, axis=-1)) & (
            pos[:, J["elbow"], 1] < pos[:, J["shoulder"], 1])
        frames[("hand", side)] = calibrated(J["wrist"], _frame(forearm, -body[..., 2]), hanging)
        foot = _frame(pos[:, J["toe"]] - pos[:, J["ankle"]], pos[:, J["knee"]] - pos[:, J["ankle"]])
        frames[("foot", side)] = foot
        frames[("body", side)] = body

    out = np.zeros((len(pos), layout.num_keypoints, 3))
    for k, name in enumerate(layout.names):
        side, _, part = name.partition("_") if name.startswith(("left_", "right_")) else ("left", "", name)
        spec = layout.mocap["landmarks"][part]
        J = roles[side]
        off = np.array(spec["offset"], dtype=np.float64) * size
        if side == "right" and spec["frame"] in ("body", "head"):
            off[0] = -off[0]
        if side == "right" and spec["frame"] == "foot":
            off[2] = -off[2]
        out[:, k] = pos[:, J[spec["joint"]]] + frames[(spec["frame"], side)] @ off

    if np.mean(up[:, 2]) > np.mean(np.abs(up[:, 1])):  # Z-up file: turn to Y up
        out = out @ Rotation.from_euler("x", -90, degrees=True).as_matrix().T
    out[..., 1] -= np.percentile(out[..., 1].min(axis=1), 5)
    return _resample(out, data.fps, fps).astype(np.float32)


def _resample(x: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linear resampling along axis 0 from src_fps to dst_fps."""
    if abs(src_fps - dst_fps) < 1e-3 * dst_fps or len(x) < 2:
        return x
    t = np.arange(0.0, (len(x) - 1) / src_fps + 1e-9, 1.0 / dst_fps) * src_fps
    i0 = np.minimum(np.floor(t).astype(np.int64), len(x) - 2)
    w = (t - i0)[:, None, None]
    return x[i0] * (1.0 - w) + x[i0 + 1] * w


def load_mocap(data: Path, cache: Path, fps: float = 30.0, reporter: Reporter | None = None) -> MocapSet:
    """Keypoints of every BVH under `data`, computed once and cached in `cache` (keyed by files and layout)."""
    reporter = reporter or NullReporter()
    files = find_bvh_files(Path(data), Path(cache))
    layout_text = (Path(__file__).resolve().parent.parent / "rigs" / "lifter_layout.json").read_text("utf-8")
    key = hashlib.sha1(json.dumps([[f.name, f.stat().st_size] for f in files] + [layout_text, fps]).encode())
    npz = Path(cache) / f"keypoints-{key.hexdigest()[:16]}.npz"
    cached = _load_cached(npz, fps, reporter)
    if cached is not None:
        return cached
    layout = lifter_layout()
    clips, names = [], []
    reporter.stage("mocap", len(files))
    for i, f in enumerate(files):
        try:
            kp = bvh_keypoints(f, layout, fps)
        except BadBvhFile as exc:
            reporter.warn(f"skipped {f.name}: {exc}")
            continue
        if len(kp) >= 2:
            clips.append(kp)
            names.append(f.name)
        reporter.update(i + 1)
    starts = np.concatenate([[0], np.cumsum([len(c) for c in clips])]).astype(np.int64)
    out = MocapSet(np.concatenate(clips), starts, names, fps)
    npz.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, keypoints=out.keypoints, starts=starts, names=np.array(names), fps=fps)
    return out


def _load_cached(npz: Path, fps: float, reporter: Reporter) -> MocapSet | None:
    """The cached keypoints if `npz` holds a consistent, finite set at `fps`; a bad entry is deleted (and rebuilt)."""
    if not npz.exists():
        return None
    try:
        with np.load(npz, allow_pickle=False) as z:
            kp, starts, names, got_fps = z["keypoints"], z["starts"], [str(n) for n in z["names"]], float(z["fps"])
        ok = (kp.ndim == 3 and kp.shape[2] == 3 and np.isfinite(kp).all() and starts.ndim == 1
              and len(starts) == len(names) + 1 and starts[0] == 0 and starts[-1] == len(kp)
              and np.all(np.diff(starts) >= 2) and got_fps == fps)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        ok = False
    if ok:
        return MocapSet(kp, starts, names, got_fps)
    reporter.warn(f"the mocap cache {npz.name} is damaged; rebuilding it")
    npz.unlink(missing_ok=True)
    return None
