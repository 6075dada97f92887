"""Define a rendered training set: mocap files of the lifter's training split on the CC0 body, seen by random
phone-like cameras, so that MediaPipe's real outputs (its 2D and its 3D, with their real errors on a rendered body)
can be paired with the exact truth (training/rendered.py) and the lifter fine-tuned on them (training.train
--rendered).

    python -m training.render_set --clips 300 --out .cache/rendered_train      # writes set.json, copies the BVH
    python -m training.render_set --authored --clips 40 --seed 11                # set_authored.json
    nice -n 10 .venv/bin/python bench/render_validation.py --set .cache/rendered_train/set.json \\
        --out .cache/rendered_train                                             # renders; rerun to go on

The set reuses bench/validation_set.json's body, camera fit, light and contact rules, and declares "split": "train",
so the renderer refuses any file held out for validation (training.train.split_files). Clips are drawn round-robin
over the motion kinds (training.train.motion_kind) so rare kinds (bow, kick, dance) are not drowned by walks; each
gets one camera at a random azimuth around the body (0-360 degrees), distance, height and aim, portrait or
landscape, and random clothing colours. With --authored the set holds crouches and wide stances instead (keyed
by bench/render_validation.py's authored motions with parameters drawn per clip from AUTHORED_RANGES): no
training-split mocap crouches or stands wide. The validation set has one clip of each, with fixed parameters
inside those ranges, so after training on these its crouch and wide-stance figures are no longer out of the
training's reach (said where they are reported). Seeded: the same arguments write the same set. Rendering costs
0.15-0.25 s a frame on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from core.bvh import read_bvh
from core.common.atomic import atomic_path
from core.common.errors import BadBvhFile
from training.mocap import find_bvh_files
from training.train import motion_kind, split_files

ROOT = Path(__file__).resolve().parent.parent
VALIDATION_SET = ROOT / "bench" / "validation_set.json"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mocap"
DEFAULT_OUT = ROOT / ".cache" / "rendered_train"


def bvh_frames(path: Path) -> int:
    """The number of frames in a BVH file (core.bvh reads and checks it); 0 when it is malformed."""
    try:
        return len(read_bvh(path).values)
    except BadBvhFile as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 0


def pick_files(paths: list[Path], clips: int, rng: np.random.Generator) -> list[Path]:
    """`clips` training-split Bandai-Namco files (30 fps, the layout the renderer retargets), round-robin over
    motion kinds in a random order, files within a kind shuffled; a kind that runs out is skipped."""
    bandai = [p for p in paths if p.name.startswith("dataset-")]
    train, _ = split_files([p.name for p in bandai])
    by_kind: dict[str, list[Path]] = {}
    for i in train:
        by_kind.setdefault(motion_kind(bandai[i].name), []).append(bandai[i])
    queues = [list(rng.permutation(np.array(v, dtype=object))) for _, v in sorted(by_kind.items())]
    order = rng.permutation(len(queues))
    out: list[Path] = []
    while len(out) < clips and any(queues):
        for k in order:
            if queues[k] and len(out) < clips:
                out.append(queues[k].pop())
    return out


def random_camera(name: str, rng: np.random.Generator) -> dict:
    """A phone-like camera around the body (bench/validation_set.json's camera fields)."""
    portrait = rng.random() < 0.5
    return {"name": name, "azimuth": float(rng.uniform(-180.0, 180.0)), "distance": float(rng.uniform(2.5, 4.5)),
            "height": float(rng.uniform(0.6, 1.9)), "aim_height": float(rng.uniform(0.8, 1.1)),
            "width": 360 if portrait else 640, "height_px": 640 if portrait else 360}


def random_colours(rng: np.random.Generator) -> dict[str, list[float]]:
    """Clothing colours for one clip (skin, floor and sky stay the set's)."""
    return {k: [float(c) for c in rng.uniform(lo, hi, 3)]
            for k, lo, hi in (("shirt", 0.05, 0.8), ("trousers", 0.03, 0.5), ("shoes", 0.02, 0.3))}


# Ranges of the authored motions' parameters (bench/render_validation.authored_poses), drawn per clip.
AUTHORED_RANGES = {
    "crouch": {"stand_s": (0.2, 0.8), "down_s": (0.7, 1.6), "hold_s": (0.5, 1.5), "drop_m": (0.2, 0.5),
               "back_m": (0.03, 0.2), "pitch_deg": (10.0, 50.0), "arms_deg": (0.0, 90.0)},
    "wide_stance": {"half_width_m": (0.22, 0.45), "drop_m": (0.03, 0.25), "sway_m": (0.03, 0.15),
                    "period_s": (1.4, 3.2), "arms_deg": (0.0, 60.0), "yaw_deg": (0.0, 25.0)},
}


def make_authored_set(clips: int, frames: int, seed: int) -> dict:
    """The validation set's body and rules with `clips` authored motions (crouch and wide stance in turn; no
    training-split mocap has them), each with parameters drawn from AUTHORED_RANGES and its own camera."""
    rng = np.random.default_rng(seed)
    spec = _training_spec("authored crouches and wide stances")
    for i in range(clips):
        kind = ("crouch", "wide_stance")[i % 2]
        params = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in AUTHORED_RANGES[kind].items()}
        cam = random_camera(f"acam{i:03d}", rng)
        spec["cameras"].append(cam)
        spec["clips"].append({"name": f"a{i:03d}_{kind}", "kind": kind, "authored": kind, "params": params,
                              "start": 0, "frames": frames, "cameras": [cam["name"]], "side": 1,
                              "colours": random_colours(rng)})
    return spec


def _training_spec(what: str) -> dict:
    """bench/validation_set.json without its clips and cameras, marked as a training set."""
    spec = json.loads(VALIDATION_SET.read_text(encoding="utf-8"))
    spec["description"] = (f"Mimic's rendered training set (training/render_set.py): {what} on the CC0 body through "
                           "random phone-like cameras, for fine-tuning the lifter on MediaPipe's real outputs.")
    spec["split"] = "train"
    spec["clips"], spec["cameras"] = [], []
    return spec


def make_set(paths: list[Path], clips: int, frames: int, seed: int, mocap_out: Path) -> dict:
    """The set definition: the validation set's body and rules with `clips` training clips of up to `frames`
    frames each; the chosen BVH files are copied into mocap_out (where the renderer looks first)."""
    rng = np.random.default_rng(seed)
    spec = _training_spec("training-split mocap")
    mocap_out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(pick_files(paths, clips, rng)):
        total = bvh_frames(path)
        if total < 30:
            continue
        n = min(frames, total - 1)
        start = int(rng.integers(0, max(1, total - n)))
        cam = random_camera(f"cam{i:03d}", rng)
        spec["cameras"].append(cam)
        spec["clips"].append({"name": f"t{i:03d}_{motion_kind(path.name)}", "kind": motion_kind(path.name),
                              "archive": "", "file": path.name, "start": start, "frames": n,
                              "cameras": [cam["name"]], "side": 1, "colours": random_colours(rng)})
        if not (mocap_out / path.name).is_file():
            with atomic_path(mocap_out / path.name) as tmp:
                shutil.copyfile(path, tmp)
    return spec


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of mocap archives or BVH files")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "mocap", help="where archives are extracted")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--clips", type=int, default=80)
    p.add_argument("--frames", type=int, default=120, help="frames per clip (30 fps)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--authored", action="store_true",
                   help="authored crouches and wide stances instead of mocap (written to set_authored.json)")
    a = p.parse_args()
    if a.authored:
        spec = make_authored_set(a.clips, a.frames, a.seed)
    else:
        spec = make_set(find_bvh_files(a.data, a.cache), a.clips, a.frames, a.seed, a.out / "mocap")
    if not spec["clips"]:
        sys.exit(f"error: no training-split Bandai-Namco BVH files under {a.data}.")
    a.out.mkdir(parents=True, exist_ok=True)
    target = a.out / ("set_authored.json" if a.authored else "set.json")
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    kinds: dict[str, int] = {}
    for c in spec["clips"]:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    print(f"{target}: {len(spec['clips'])} clips, {sum(c['frames'] for c in spec['clips'])} frames; "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
