"""Fuzzing every file Mimic reads: real files (a video cut from the sample clip, a motion file and a BVH converted
from it, a detection-cache entry) are truncated, zeroed, bit-flipped, stripped of keys, given wrong types, NaN,
infinities and huge counts. The contract for each of 500+ seeded mutations: a correct result or the project's own
error, never another exception, never a NaN in a result, an exported file or Blender, never a temporary file left."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.bvh import bvh_to_motion, read_bvh, write_bvh
from core.common import motionfile
from core.common.errors import BadBvhFile, BadMotionFile
from core.detect2d import _load, detect

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261202


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """One random byte-level defect: truncation, a zeroed span, flipped bytes, or a span cut out."""
    kind = rng.integers(4)
    n = len(data)
    if kind == 0:
        return data[: int(rng.integers(0, n))]
    a = int(rng.integers(0, n))
    b = min(n, a + int(rng.integers(1, max(2, n // 5))))
    if kind == 1:
        return data[:a] + bytes(b - a) + data[b:]
    if kind == 2:
        out = bytearray(data)
        for i in rng.integers(0, n, int(rng.integers(1, 40))):
            out[int(i)] ^= int(rng.integers(1, 256))
        return bytes(out)
    return data[:a] + data[b:]


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory, balance_clip: Path) -> dict[str, Path]:
    """A 24-frame 270x480 video cut from the sample clip, its detection-cache entry, motion file and BVH."""
    from core.pipeline import ConvertOptions, run

    folder = tmp_path_factory.mktemp("fuzz-real")
    video = folder / "small.mp4"
    cap = cv2.VideoCapture(str(balance_clip))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (270, 480))
    for _ in range(24):
        ok, frame = cap.read()
        assert ok
        writer.write(cv2.resize(frame, (270, 480)))
    writer.release()
    cap.release()
    cache = folder / "cache"
    detect(balance_clip, 0.0, 0.3, cache_dir=cache)
    motion = run(balance_clip, ConvertOptions(end_s=0.3, lifter="mediapipe"))
    motionfile.save_motion(motion, folder / "m.npz")
    write_bvh(folder / "m.bvh", motion)
    return {"video": video, "cache": next((cache / "detect").glob("*.npz")), "npz": folder / "m.npz",
            "bvh": folder / "m.bvh", "clip": balance_clip}


VIDEO_WORKER = """
import json, sys
from core.video import frames_of, probe
from core.common.errors import MimicError
for path in sys.argv[1:]:
    try:
        info = probe(path)
        count = sum(1 for _ in frames_of(info, 0.0, info.duration_s))
        result = f"ok {count}"
    except MimicError as err:
        result = f"error {type(err).__name__}"
    except Exception as err:  # the contract is broken: report it
        result = f"BROKEN {type(err).__name__}: {err}"
    print(json.dumps([path, result]), flush=True)
"""


def test_mutated_videos_decode_or_fail_with_our_error(tmp_path: Path, real_files: dict[str, Path]) -> None:
    """150 damaged videos decoded in a separate process (a crash in FFmpeg would show as a missing answer)."""
    rng = np.random.default_rng(SEED)
    data = real_files["video"].read_bytes()
    paths = []
    for i in range(150):
        path = tmp_path / f"v{i:03d}.mp4"
        path.write_bytes(mutate_bytes(data, rng))
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-c", VIDEO_WORKER, *paths], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    answers = dict(json.loads(line) for line in proc.stdout.splitlines())
    assert proc.returncode == 0 and len(answers) == len(paths), proc.stderr[-2000:]
    broken = {p: r for p, r in answers.items() if r.startswith("BROKEN")}
    assert not broken, broken
    kinds = {r.split()[0] + " " + (r.split()[1] if r.startswith("error") else "") for r in answers.values()}
    assert any(k.startswith("error DamagedVideo") for k in kinds), kinds  # truncation is among the mutations
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".mp4")) == []


def _archive_mutation(path: Path, rng: np.random.Generator) -> bytes:
    """A structurally valid .npz with one defect in its content: a key removed or renamed, an array of the wrong
    dtype or shape, NaN or inf, a meta value of the wrong type, or a huge count."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("meta_json")))
    key = str(rng.choice(sorted(arrays)))
    kind = int(rng.integers(8))
    if kind == 0:
        arrays.pop(key)
    elif kind == 1:
        arrays[key] = arrays[key].astype(np.int16) if arrays[key].dtype != bool else arrays[key].astype(np.float32)
    elif kind == 2 and arrays[key].size:
        arrays[key] = arrays[key].reshape(-1)[: max(1, arrays[key].size // 2)]
    elif kind == 3 and arrays[key].dtype.kind == "f" and arrays[key].size:
        bad = arrays[key].copy()
        bad.reshape(-1)[int(rng.integers(bad.size))] = rng.choice([np.nan, np.inf, -np.inf])
        arrays[key] = bad
    elif kind == 4:
        field = str(rng.choice(sorted(meta)))
        meta[field] = [None, "x", -1, [1, 2], {"a": 1}, 1e300][int(rng.integers(6))]
    elif kind == 5:
        meta["num_frames"] = int(10 ** int(rng.integers(5, 12)))
    elif kind == 6:
        meta = [meta]  # type: ignore[assignment]
    else:
        arrays[key] = np.array(["text"] * max(1, min(3, arrays[key].size)))
    buffer = io.BytesIO()
    np.savez(buffer, meta_json=np.array(json.dumps(meta)), **arrays)
    return buffer.getvalue()


def test_mutated_motion_files_load_finite_or_raise_bad_motion_file(tmp_path: Path,
                                                                   real_files: dict[str, Path]) -> None:
    """200 motion files: every one that loads is finite everywhere it must be and writes a finite BVH."""
    rng = np.random.default_rng(SEED + 1)
    data = real_files["npz"].read_bytes()
    loaded = refused = 0
    for i in range(200):
        path = tmp_path / f"m{i:03d}.npz"
        path.write_bytes(mutate_bytes(data, rng) if i % 2 else _archive_mutation(real_files["npz"], rng))
        try:
            motion = motionfile.load_motion(path)
        except BadMotionFile as err:
            assert str(path) in str(err)
            refused += 1
            continue
        loaded += 1
        assert np.all(np.isfinite(motion.rotations)) and np.all(np.isfinite(motion.root_positions))
        assert motion.fps > 0 and motion.num_frames >= 1
        write_bvh(tmp_path / f"m{i:03d}.bvh", motion)
        assert "nan" not in (tmp_path / f"m{i:03d}.bvh").read_text().lower()
    assert refused > 100 and loaded > 0  # both outcomes occur: the mutations reach the checks
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []


BVH_TOKENS = ["nan", "inf", "-inf", "0", "-5", "1e308", "MOTION", "{", "}", "JOINT", "End Site", "", "x"]


def _bvh_mutation(text: str, rng: np.random.Generator) -> str:
    """A text-level defect: a line dropped, repeated or cut, or a word replaced by a hostile token."""
    lines = text.splitlines()
    i = int(rng.integers(len(lines)))
    kind = int(rng.integers(4))
    if kind == 0:
        del lines[i]
    elif kind == 1:
        lines.insert(i, lines[i])
    elif kind == 2:
        lines = lines[:i]
    else:
        words = lines[i].split() or [""]
        words[int(rng.integers(len(words)))] = str(rng.choice(BVH_TOKENS))
        lines[i] = " ".join(words)
    return "\n".join(lines) + "\n"


def test_mutated_bvh_files_read_finite_or_raise_bad_bvh_file(tmp_path: Path, real_files: dict[str, Path]) -> None:
    rng = np.random.default_rng(SEED + 2)
    text = real_files["bvh"].read_text()
    raw = real_files["bvh"].read_bytes()
    refused = 0
    for i in range(150):
        path = tmp_path / f"b{i:03d}.bvh"
        if i % 3:
            path.write_text(_bvh_mutation(text, rng))
        else:
            path.write_bytes(mutate_bytes(raw, rng))
        try:
            motion = bvh_to_motion(read_bvh(path))
        except BadBvhFile as err:
            assert str(path) in str(err)
            refused += 1
            continue
        assert np.all(np.isfinite(motion.positions())), path.read_text()[:2000]
    assert refused > 50


def test_mutated_cache_entries_are_recomputed_never_used(tmp_path: Path, real_files: dict[str, Path]) -> None:
    """60 damaged cache entries: each is either still a valid entry or is deleted so the next run heals it."""
    from core.video import probe

    info = probe(real_files["clip"])
    with np.load(real_files["cache"]) as data:
        meta = json.loads(str(data["meta_json"]))
    settings = {k: meta["info"][k] for k in ("start_s", "end_s", "person", "pose", "mediapipe", "cache_format",
                                             "allow_partial")}
    good = _load(real_files["cache"], info, settings)
    assert good is not None and good.present.all()
    rng = np.random.default_rng(SEED + 3)
    data = real_files["cache"].read_bytes()
    for i in range(60):
        path = tmp_path / f"c{i:03d}.npz"
        path.write_bytes(mutate_bytes(data, rng) if i % 2 else _archive_mutation(real_files["cache"], rng))
        det = _load(path, info, settings)
        if det is None:
            assert not path.exists(), "a bad cache entry must be removed"
        else:
            assert det.present.any() and np.all(np.isfinite(det.image[det.present, :, :2]))
            assert det.fps > 0 and det.image.shape[0] == det.times.shape[0]


def test_all_nan_cache_entry_is_no_person_not_a_t_pose(tmp_path: Path, real_files: dict[str, Path]) -> None:
    from core.video import probe

    with np.load(real_files["cache"]) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["image"] = np.full_like(arrays["image"], np.nan)
    arrays["present"] = np.zeros_like(arrays["present"])
    path = tmp_path / "nan.npz"
    np.savez(path, **arrays)
    meta = json.loads(str(arrays["meta_json"]))
    settings = {k: meta["info"][k] for k in ("start_s", "end_s", "person", "pose", "mediapipe", "cache_format",
                                             "allow_partial")}
    assert _load(path, probe(real_files["clip"]), settings) is None and not path.exists()


def test_zip_members_that_are_not_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta_json.npy", b"not an array")
    with pytest.raises(BadMotionFile):
        motionfile.load_motion(path)


def test_mutated_motion_files_never_put_nan_into_blender(tmp_path: Path, real_files: dict[str, Path]) -> None:
    """The add-on's import path (the same reader) on 40 mutated files: refused, or keyed without a NaN."""
    bpy = pytest.importorskip("bpy")
    from addon.importer import import_motion

    bpy.ops.wm.read_factory_settings(use_empty=True)
    rng = np.random.default_rng(SEED + 4)
    keyed = 0
    for i in range(40):
        path = tmp_path / f"k{i:03d}.npz"
        path.write_bytes(_archive_mutation(real_files["npz"], rng))
        try:
            motion = motionfile.load_motion(path)
        except BadMotionFile:
            continue
        result = import_motion(bpy.context, motion, f"fuzz{i}")
        values = [kp.co[1] for fc in result.action.layers[0].strips[0].channelbags[0].fcurves
                  for kp in fc.keyframe_points]
        assert values and np.all(np.isfinite(values))
        keyed += 1
    assert keyed > 0
