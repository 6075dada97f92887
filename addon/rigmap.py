"""Bone maps between Mimic's canonical humanoid and a user's armature: conventions as data, auto-detection, presets.

Pure Python on bone names and parents (no bpy), so it runs and is tested anywhere. A bone map is a plain
`dict[str, str]`: canonical joint name (rigs/humanoid.json) -> the armature's bone name. An armature is described by
`bones: Mapping[str, str | None]`, each bone name -> its parent's name (None for a root), as `armature_bones` reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from .errors import RigMapError

RIGS_DIR = Path(__file__).resolve().parent.parent / "rigs"
PRESET_FORMAT = "mimic_bone_map"
PRESET_VERSION = 1

# Match qualities, best first: the name as written (a convention's namespace may be absent: "Hips" = "mixamorig:Hips");
# the name without a namespace ("mixamorig7:", "Armature|") or a prefix most bones share ("Character1_"), any case;
# the same words and side in any case or spelling ("upper_arm.L" = "LeftUpperArm").
EXACT, STRIPPED, SIMILAR = 1.0, 0.95, 0.9
REQUIRED_WEIGHT, OPTIONAL_WEIGHT = 2.0, 1.0
# The 30 finger joints together weigh as much as one required joint (rigs/humanoid_bones.json), so a rig's fingers
# tell conventions apart a little but never outweigh its body.
# Bones typical of a convention that no joint maps to (CMU's LHipJoint, Mixamo's Spine1) tell apart conventions
# whose mapped names overlap; together they weigh as much as two required joints.
SIGNATURE_WEIGHT = 4.0

_SIDE_WORDS = {"l": "L", "left": "L", "r": "R", "right": "R"}
_SIDE_CHARS = {"左": "L", "右": "R"}
_TOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\dA-Za-z_]+")


@dataclass(frozen=True)
class Humanoid:
    """The canonical humanoid: joint names parents-first (`names` the body's, `fingers` both hands' after them,
    `joints` all), each joint's parent, which are required, the L/R pairs, each joint's aim child (the joint its bone
    points at) and the branch points checked by hierarchy; finger_weight: all fingers' weight in detection."""

    names: tuple[str, ...]
    parents: dict[str, str | None]
    offsets: dict[str, tuple[float, float, float]]
    ends: dict[str, tuple[float, float, float]]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    aim: dict[str, str]
    branch_points: dict[str, tuple[str, ...]]
    fingers: tuple[str, ...] = ()
    finger_weight: float = 0.0

    @property
    def joints(self) -> tuple[str, ...]:
        """Every joint a bone map may name, parents first: the body (`names`), then both hands' fingers."""
        return self.names + self.fingers

    def ancestors(self, name: str) -> list[str]:
        """Canonical ancestors of `name`, nearest first."""
        out: list[str] = []
        parent = self.parents[name]
        while parent is not None:
            out.append(parent)
            parent = self.parents[parent]
        return out

    def mirror(self, name: str) -> str | None:
        """The other side's joint of a left/right pair, None for a centre joint."""
        for left, right in self.pairs:
            if name == left:
                return right
            if name == right:
                return left
        return None


@dataclass(frozen=True)
class Convention:
    """One naming convention: for each canonical joint, candidate bone names in order of preference, and signature
    bones that only this convention has. A generated control rig's convention also names, for each control, the
    deform bone whose head marks the joint (`controls`), and the pose-bone custom properties that put those
    controls in charge (`settings`, e.g. Rigify's IK/FK switches set to FK)."""

    name: str
    label: str
    description: str
    priority: int
    bones: dict[str, tuple[str, ...]]
    signature: tuple[str, ...] = ()
    controls: dict[str, str] = field(default_factory=dict)
    settings: dict[str, float] = field(default_factory=dict)
    fingers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def candidates(self, joint: str) -> tuple[str, ...]:
        """Bone names for a body or finger joint, in order of preference."""
        return self.bones.get(joint) or self.fingers.get(joint, ())


@dataclass
class Detection:
    """Result of auto-detection. bone_map: canonical -> armature bone; score: 0..1 name match of the convention;
    by_name / filled: joints mapped by name / by hierarchy; missing_required / missing_optional: joints not mapped;
    scores: every convention's score; misplaced: joints whose bone was found by name but sits outside the hierarchy
    (e.g. a control rig whose controls hang on helper bones); finger_map: finger joint -> bone (optional joints found
    by name only, kept apart from bone_map, the body's; `full_map` joins them)."""

    convention: str
    label: str
    score: float
    bone_map: dict[str, str]
    by_name: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    missing_required: list[str] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    misplaced: dict[str, str] = field(default_factory=dict)
    finger_map: dict[str, str] = field(default_factory=dict)

    @property
    def full_map(self) -> dict[str, str]:
        """The body's and the fingers' bone map in one, what retargeting uses."""
        return {**self.bone_map, **self.finger_map}

    @property
    def is_complete(self) -> bool:
        """True when every required joint is mapped."""
        return not self.missing_required

    def message(self, armature_name: str = "The armature") -> str:
        """One line for the user: what was detected, or which required bones are missing and what to do."""
        if self.is_complete:
            human = load_humanoid()
            filled = sum(j in self.bone_map for j in self.filled)
            return (f"{armature_name}: {self.label} rig, {len(self.bone_map)} of {len(human.names)} bones mapped "
                    f"({filled} by hierarchy), {len(self.finger_map)} of {len(human.fingers)} finger bones.")
        missing = [f"{j} ('{self.misplaced[j]}' is not below its parent joint's bone)" if j in self.misplaced else j
                   for j in self.missing_required]
        return (f"{armature_name} is not a humanoid rig Mimic recognises: no bone found for "
                f"{', '.join(missing)}. Map these bones by hand in the Mimic panel's bone map, "
                f"or load a bone-map preset.")


@lru_cache(maxsize=1)
def load_humanoid() -> Humanoid:
    """rigs/humanoid.json (hierarchy, rest offsets) joined with rigs/humanoid_bones.json (required, pairs...) and
    both hands of rigs/hand.json below LeftHand / RightHand (Unity names, the right hand mirrored in X)."""
    rig = json.loads((RIGS_DIR / "humanoid.json").read_text(encoding="utf-8"))
    info = json.loads((RIGS_DIR / "humanoid_bones.json").read_text(encoding="utf-8"))
    joints = rig["joints"]
    parents = {j["name"]: j["parent"] for j in joints}
    offsets = {j["name"]: tuple(j["offset"]) for j in joints}
    ends = {j["name"]: tuple(j.get("end", (0.0, 0.0, 0.0))) for j in joints}
    pairs = [(a, b) for a, b in info["pairs"]]
    aim = dict(info["aim"])
    hand = json.loads((RIGS_DIR / f"{info['fingers']['skeleton']}.json").read_text(encoding="utf-8"))
    fingers: list[str] = []
    for side, sign in zip(info["fingers"]["sides"], (1.0, -1.0)):
        for j in hand["joints"]:
            name = side + j["name"]
            fingers.append(name)
            parents[name] = side + (j["parent"] or hand["parent"])
            offsets[name] = (sign * j["offset"][0], j["offset"][1], j["offset"][2])
            end = j.get("end", (0.0, 0.0, 0.0))
            ends[name] = (sign * end[0], end[1], end[2])
            if j["parent"] is not None:
                aim[side + j["parent"]] = name
    half = len(fingers) // 2
    pairs += list(zip(fingers[:half], fingers[half:]))
    return Humanoid(
        names=tuple(j["name"] for j in joints),
        parents=parents,
        offsets=offsets,
        ends=ends,
        required=tuple(info["required"]),
        optional=tuple(info["optional"]),
        pairs=tuple(pairs),
        aim=aim,
        branch_points={k: tuple(v) for k, v in info["branch_points"].items()},
        fingers=tuple(fingers),
        finger_weight=float(info["fingers"]["weight"]),
    )


@lru_cache(maxsize=1)
def load_conventions() -> dict[str, Convention]:
    """Every rigs/conventions/*.json, by name, in priority order (earlier wins a tie)."""
    out = []
    for path in sorted((RIGS_DIR / "conventions").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out.append(Convention(data["name"], data["label"], data["description"], int(data["priority"]),
                              {k: tuple(v) for k, v in data["bones"].items()}, tuple(data.get("signature", ())),
                              dict(data.get("controls", {})),
                              {k: float(v) for k, v in data.get("settings", {}).items()},
                              {k: tuple(v) for k, v in data.get("fingers", {}).items()}))
    return {c.name: c for c in sorted(out, key=lambda c: c.priority)}


def strip_namespace(name: str) -> str:
    """`mixamorig:Hips` -> `Hips`, `Armature|Hips` -> `Hips`."""
    return re.split(r"[:|]", name)[-1]


def name_key(name: str) -> tuple[str, str]:
    """(side, words) of a bone name, tolerant of case, separators and side spelling:
    `upper_arm.L`, `LeftUpperArm`, `UpperArm_l`, `Upper Arm Left` -> ("L", "upperarm");
    `左腕`, `腕.L` -> ("L", "腕")."""
    base = strip_namespace(name)
    side = ""
    if base[:1] in _SIDE_CHARS:
        side, base = _SIDE_CHARS[base[0]], base[1:]
    words: list[str] = []
    for token in _TOKEN.findall(base):
        low = token.lower()
        if low in _SIDE_WORDS:
            side = side or _SIDE_WORDS[low]
        else:
            words.append(low)
    return side, "".join(words)


def common_prefix(names: list[str]) -> str:
    """A prefix ending at a separator that at least 60 % of the bones share (e.g. `Character1_`, `DEF-`), or ''."""
    counts: dict[str, int] = {}
    for name in names:
        base = strip_namespace(name)
        for i, ch in enumerate(base[:-1]):
            if ch in "_-. ":
                counts[base[:i + 1]] = counts.get(base[:i + 1], 0) + 1
    need = max(3, 0.6 * len(names))
    best = [p for p, n in counts.items() if n >= need]
    return max(best, key=len) if best else ""


class _Index:
    """Lookup of an armature's bones by exact name, stripped name and name key."""

    def __init__(self, names: list[str]) -> None:
        prefix = common_prefix(names)
        self.exact = {n: n for n in names}
        self.plain = {n: n for n in names if strip_namespace(n) == n}
        self.stripped: dict[str, str] = {}
        self.keys: dict[tuple[str, str], str] = {}
        for n in names:
            variants = [strip_namespace(n)]
            if prefix and variants[0].startswith(prefix):
                variants.append(variants[0][len(prefix):])
            for v in variants:
                self.stripped.setdefault(v.lower(), n)
                self.keys.setdefault(name_key(v), n)

    def find(self, candidate: str) -> tuple[str, float] | None:
        """Best bone for a candidate name and the match quality, or None."""
        bare = strip_namespace(candidate)
        if candidate in self.exact or bare in self.plain:
            return self.exact.get(candidate) or self.plain[bare], EXACT
        if bare.lower() in self.stripped:
            return self.stripped[bare.lower()], STRIPPED
        key = name_key(candidate)
        if key[1] and key in self.keys:
            return self.keys[key], SIMILAR
        return None


def match_convention(bones: Mapping[str, str | None], convention: Convention) -> tuple[dict[str, str], float]:
    """Map canonical joints by name alone with one convention; returns (bone_map, score 0..1)."""
    human = load_humanoid()
    index = _Index(list(bones))
    bone_map: dict[str, str] = {}
    used: set[str] = set()
    got = total = 0.0
    finger = human.finger_weight / max(len(human.fingers), 1)
    for joint in human.joints:
        weight = REQUIRED_WEIGHT if joint in human.required else finger if joint in human.fingers else OPTIONAL_WEIGHT
        total += weight
        hits = [index.find(c) for c in convention.candidates(joint)]
        hits = [h for h in hits if h is not None and h[0] not in used]
        if hits:
            bone, quality = max(hits, key=lambda h: h[1])  # the earliest candidate among the best matches
            bone_map[joint] = bone
            used.add(bone)
            got += weight * quality
    if convention.signature:
        found = sum(index.find(s) is not None for s in convention.signature)
        got += SIGNATURE_WEIGHT * found / len(convention.signature)
        total += SIGNATURE_WEIGHT
    return bone_map, got / total


def _ancestors(bones: Mapping[str, str | None], name: str) -> list[str]:
    out: list[str] = []
    parent = bones.get(name)
    while parent is not None and parent in bones and parent not in out:
        out.append(parent)
        parent = bones.get(parent)
    return out


def _children(bones: Mapping[str, str | None]) -> dict[str, list[str]]:
    kids: dict[str, list[str]] = {n: [] for n in bones}
    for n, p in bones.items():
        if p is not None and p in kids:
            kids[p].append(n)
    return kids


def _lca(bones: Mapping[str, str | None], names: list[str]) -> str | None:
    """Lowest common ancestor-or-self of bones `names`."""
    chains = [[n] + _ancestors(bones, n) for n in names]
    common = set(chains[0]).intersection(*chains[1:])
    return next((n for n in chains[0] if n in common), None)


def mirror_name(name: str) -> list[str]:
    """Plausible other-side spellings of a bone name (`thigh_l` -> `thigh_r`, `LeftArm` -> `RightArm` ...)."""
    swaps = [(r"\.L\b", ".R"), (r"\.R\b", ".L"), (r"_l$", "_r"), (r"_r$", "_l"), (r"_L$", "_R"), (r"_R$", "_L"),
             ("Left", "Right"), ("Right", "Left"), ("left", "right"), ("right", "left"), ("左", "右"), ("右", "左"),
             (r"_L_", "_R_"), (r"_R_", "_L_"), (r"^L(?=[A-Z_])", "R"), (r"^R(?=[A-Z_])", "L")]
    out = []
    for pattern, repl in swaps:
        other = re.sub(pattern, repl, name)
        if other != name:
            out.append(other)
    return out


def _is_consistent(bones: Mapping[str, str | None], bone_map: dict[str, str], joint: str) -> bool:
    """The joint's bone lies strictly below the bone of its nearest mapped canonical ancestor. A finger is checked
    against its own finger's joints only: control rigs hang fingers on palm or tweak bones beside the hand control."""
    human = load_humanoid()
    fingers = set(human.fingers) if joint in human.fingers else set(human.joints)
    anc = next((a for a in human.ancestors(joint) if a in bone_map and a in fingers), None)
    return anc is None or bone_map[anc] in _ancestors(bones, bone_map[joint])


def fill_by_hierarchy(bones: Mapping[str, str | None], bone_map: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Repair a name-based map with the bone hierarchy: branch points (hips, chest) from where the limbs meet,
    drop joints that sit above their canonical parent, and fill missing joints from the other side's spelling or
    from the chain between mapped neighbours; finger joints only from the other side's spelling. Returns (new map,
    joints filled)."""
    human = load_humanoid()
    out = dict(bone_map)
    kids = _children(bones)
    filled: list[str] = []
    for joint, members in human.branch_points.items():
        mapped = [out[m] for m in members if m in out]
        lca = _lca(bones, mapped) if len(mapped) == len(members) else None
        current = out.get(joint)
        if lca is None or lca == current:
            continue
        if current is not None and human.parents[joint] is None and current in _ancestors(bones, lca):
            continue  # a root bone above where legs and spine meet (MMD's センター) drives them all: keep it
        above = next((out[a] for a in human.ancestors(joint) if a in out), None)
        if above is not None and above not in _ancestors(bones, lca):
            continue
        for other in [k for k, v in out.items() if v == lca]:
            del out[other]
        out[joint] = lca
        filled.append(joint)
    for joint in human.names:
        if joint in out and not _is_consistent(bones, out, joint):
            del out[joint]
    for joint in human.names:
        if joint in out:
            continue
        if _fill_from_mirror(bones, out, joint, filled):
            continue
        anc = next((a for a in human.ancestors(joint) if a in out), None)
        if anc is None:
            continue
        below = _first_mapped_along_aim(joint, out)
        if below is not None:
            chain = _ancestors(bones, out[below])
            if out[anc] not in chain:
                continue
            between = list(reversed(chain[:chain.index(out[anc])]))
            between = [b for b in between if b not in out.values()]
            if between:
                out[joint] = between[len(between) // 2]
                filled.append(joint)
        elif human.parents[joint] == anc:
            options = [c for c in kids.get(out[anc], []) if c not in out.values()]
            if options:
                out[joint] = max(options, key=lambda c: _subtree_size(kids, c))
                filled.append(joint)
    return _fill_fingers(bones, out, filled)


def _fill_fingers(bones: Mapping[str, str | None], out: dict[str, str], filled: list[str]
                  ) -> tuple[dict[str, str], list[str]]:
    """Fingers are found by name only (which palm bone is which finger is not in a hierarchy): drop those not below
    their finger's mapped joints, fill one side from the other side's spelling."""
    human = load_humanoid()
    for joint in human.fingers:
        if joint in out and not _is_consistent(bones, out, joint):
            del out[joint]
    for joint in human.fingers:
        if joint not in out:
            _fill_from_mirror(bones, out, joint, filled)
    return out, filled


def _fill_from_mirror(bones: Mapping[str, str | None], out: dict[str, str], joint: str, filled: list[str]) -> bool:
    """Map `joint` to the other side's bone name spelled for this side (LeftHand's 'hand.L' -> 'hand.R'), if that
    bone exists, is free and sits consistently in the hierarchy; True (and `joint` in `filled`) when it does."""
    other = load_humanoid().mirror(joint)
    if other not in out:
        return False
    for name in mirror_name(out[other]):
        if name in bones and name not in out.values():
            out[joint] = name
            if _is_consistent(bones, out, joint):
                filled.append(joint)
                return True
            del out[joint]
    return False


def _first_mapped_along_aim(joint: str, bone_map: dict[str, str]) -> str | None:
    human = load_humanoid()
    nxt = human.aim.get(joint)
    while nxt is not None:
        if nxt in bone_map:
            return nxt
        nxt = human.aim.get(nxt)
    return None


def _subtree_size(kids: dict[str, list[str]], name: str) -> int:
    return 1 + sum(_subtree_size(kids, c) for c in kids.get(name, []))


def detect(bones: Mapping[str, str | None]) -> Detection:
    """Score every convention on the bone names, take the best and fill what is missing by hierarchy."""
    human = load_humanoid()
    results = {name: match_convention(bones, conv) for name, conv in load_conventions().items()}
    scores = {name: round(score, 4) for name, (_, score) in results.items()}
    best = max(results, key=lambda n: results[n][1])  # dicts keep priority order, so ties go to the earlier one
    conv = load_conventions()[best]
    by_name = dict(results[best][0])
    full, filled = fill_by_hierarchy(bones, by_name) if by_name else ({}, [])
    bone_map = {j: b for j, b in full.items() if j not in human.fingers}
    return Detection(
        convention=best, label=conv.label, score=scores[best], bone_map=bone_map,
        by_name=[j for j in human.joints if j in by_name and by_name[j] == full.get(j)],
        filled=[j for j in human.joints if j in filled and j in full],
        missing_required=[j for j in human.required if j not in bone_map],
        missing_optional=[j for j in human.optional if j not in bone_map],
        scores=scores,
        misplaced={j: b for j, b in by_name.items() if j not in full},
        finger_map={j: b for j, b in full.items() if j in human.fingers},
    )


def validate_bone_map(bones: Mapping[str, str | None], bone_map: Mapping[str, str]) -> list[str]:
    """Problems with a (user-edited) bone map, one line each; empty when usable for retargeting."""
    human = load_humanoid()
    problems = [f"'{j}' is not a joint of the Mimic humanoid." for j in bone_map if j not in human.parents]
    problems += [f"{j} is mapped to '{b}', which the armature does not have." for j, b in bone_map.items()
                 if b and b not in bones]
    seen: dict[str, str] = {}
    for j, b in bone_map.items():
        if b and b in seen:
            problems.append(f"Bone '{b}' is mapped to both {seen[b]} and {j}.")
        seen.setdefault(b, j)
    missing = [j for j in human.required if not bone_map.get(j)]
    if missing:
        problems.append(f"No bone mapped for the required {', '.join(missing)}.")
    if not problems:
        clean = {j: b for j, b in bone_map.items() if b}
        problems += [f"{j} ('{clean[j]}') is not below the bone of its parent joint in the armature."
                     for j in human.joints if j in clean and not _is_consistent(bones, clean, j)]
    return problems


def armature_bones(armature: Any) -> dict[str, str | None]:
    """Bone name -> parent name of a Blender armature object or armature data (duck-typed: `.data.bones`, and
    `.pose.bones[...].constraints` on an object). A parent that copies another bone's transforms (a full-influence
    Copy Transforms, the last one that wins) counts as that bone, so the hierarchy shows how a control rig's
    controls drive each other: Rigify's upper_arm_fk.L hangs on ORG-shoulder.L, which follows the shoulder.L
    control."""
    data = getattr(armature, "data", armature)
    pose = getattr(armature, "pose", None)
    out: dict[str, str | None] = {}
    for b in data.bones:
        parent = b.parent.name if b.parent else None
        out[b.name] = _followed(pose, parent, armature) if pose is not None and parent is not None else parent
    return out


def _followed(pose: Any, name: str, armature: Any) -> str:
    """The bone whose transforms bone `name` copies in full (itself when none)."""
    copied = [c.subtarget for c in pose.bones[name].constraints
              if c.type == "COPY_TRANSFORMS" and c.enabled and c.influence >= 0.999 and c.target == armature
              and c.subtarget and c.subtarget != name]
    return copied[-1] if copied else name


def joint_bones(bone_map: Mapping[str, str], bones: Mapping[str, str | None]) -> dict[str, str]:
    """Canonical joint -> the bone whose rest head marks it: the deform bone a convention names for the mapped
    control (Rigify's torso control floats above the hips, whose joint is DEF-spine's head), else the mapped bone."""
    controls = {c: d for conv in load_conventions().values() for c, d in conv.controls.items()}
    return {j: controls[b] if controls.get(b) in bones else b for j, b in bone_map.items()}


def control_settings(bone_map: Mapping[str, str], bones: Mapping[str, str | None]) -> dict[str, float]:
    """Pose-bone custom properties (name -> value) that put the mapped controls in charge, from the conventions
    whose controls the map uses, with their deform bones in the armature (Rigify: IK_FK = 1, FK)."""
    out: dict[str, float] = {}
    for conv in load_conventions().values():
        if any(conv.controls.get(b) in bones for b in bone_map.values()):
            out.update(conv.settings)
    return out


def save_preset(path: str | Path, bone_map: Mapping[str, str], label: str = "",
                rig: tuple[str, str] | None = None) -> None:
    """Write a bone map as a JSON preset (temp file, then rename). rig: the (.blend path, armature object name) it
    was made for, so that batch `--rig PRESET` can load that character."""
    path = Path(path)
    human = load_humanoid()
    data: dict[str, Any] = {"format": PRESET_FORMAT, "version": PRESET_VERSION, "label": label or path.stem,
                            "bones": {j: bone_map[j] for j in human.joints if bone_map.get(j)}}
    if rig is not None:
        data["rig"] = {"blend": str(rig[0]), "object": rig[1]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_preset(path: str | Path) -> dict[str, str]:
    """Read a bone-map preset written by `save_preset`; RigMapError says what is wrong."""
    return {str(j): str(b) for j, b in _read_preset(Path(path))["bones"].items()}


def preset_rig(path: str | Path) -> tuple[str, str] | None:
    """The (.blend path, armature object name) a preset was saved for, or None."""
    rig = _read_preset(Path(path)).get("rig")
    return (str(rig["blend"]), str(rig["object"])) if isinstance(rig, dict) else None


def _read_preset(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RigMapError(f"Bone-map preset {path} does not exist. Check the path or save the preset first.") from None
    except (OSError, ValueError) as exc:
        raise RigMapError(f"{path} is not a bone-map preset ({exc}). Save it again from the Mimic panel.") from exc
    if not isinstance(data, dict) or data.get("format") != PRESET_FORMAT or not isinstance(data.get("bones"), dict):
        raise RigMapError(f"{path} is not a Mimic bone-map preset. Save it again from the Mimic panel.")
    if int(data.get("version", 0)) > PRESET_VERSION:
        raise RigMapError(f"{path} is a newer bone-map preset (version {data['version']}). Update Mimic.")
    human = load_humanoid()
    unknown = [j for j in data["bones"] if j not in human.parents]
    if unknown:
        raise RigMapError(f"{path} maps unknown joints {', '.join(unknown)}. Use the names of rigs/humanoid.json.")
    return data


def resolve_bone_map(bones: Mapping[str, str | None], bone_map: Mapping[str, str] | None = None,
                     armature_name: str = "The armature") -> dict[str, str]:
    """The bone map to use: `bone_map` checked against the armature, or auto-detected when None.
    RigMapError names the required bones that are missing or the problems of the given map."""
    if bone_map is None:
        found = detect(bones)
        if not found.is_complete:
            raise RigMapError(found.message(armature_name))
        return found.full_map
    clean = {j: b for j, b in bone_map.items() if b}
    problems = validate_bone_map(bones, clean)
    if problems:
        raise RigMapError(f"{armature_name}: the bone map cannot be used: {' '.join(problems)} "
                          f"Fix it in the Mimic panel's bone map or run auto-detection again.")
    return with_detected_fingers(bones, clean)


def with_detected_fingers(bones: Mapping[str, str | None], bone_map: Mapping[str, str]) -> dict[str, str]:
    """A map that names no finger joint (made before Mimic had fingers, or by a list of body joints) with the
    fingers auto-detection finds on bones the map does not use; a map that names any finger is kept as it is."""
    human = load_humanoid()
    out = dict(bone_map)
    if any(j in out for j in human.fingers):
        return out
    used = set(out.values())
    found = detect(bones).finger_map
    for joint in human.fingers:
        if joint in found and found[joint] not in used:
            out[joint] = found[joint]
            used.add(found[joint])
    return {j: b for j, b in out.items() if j not in human.fingers or _is_consistent(bones, out, j)}
