"""Bone-map auto-detection on bone names and parents: every convention in rigs/, name variants, the MPFB2 rigs,
hierarchy filling, a non-humanoid armature, and presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from addon import rigmap

MPFB2_EXPECTED = {"default": "makehuman", "game_engine": "unreal", "mixamo": "mixamo", "cmu_mb": "cmu",
                  "human": "rigify"}


def convention_bones(convention: str, pick: int = 0, extras: bool = True) -> dict[str, str | None]:
    """An armature (bone -> parent) named by one convention: candidate `pick` (or the last one) for every joint,
    parented like the humanoid, plus finger and twist bones that no convention maps."""
    human = rigmap.load_humanoid()
    conv = rigmap.load_conventions()[convention]
    names = {j: conv.bones[j][min(pick, len(conv.bones[j]) - 1)] for j in human.names}
    bones: dict[str, str | None] = {}
    for j in human.names:
        parent = human.parents[j]
        bones[names[j]] = names[parent] if parent else None
    if extras:
        for j in ("LeftHand", "RightHand"):
            for f in range(3):
                bones[f"finger{f}_{j}"] = names[j]
        bones["hair_root"] = names["Head"]
    return bones


def mpfb2_bones(path: Path) -> dict[str, str | None]:
    data = json.loads(path.read_text(encoding="utf-8"))
    bones = data["bones"] if "bones" in data else data
    return {name: (b["parent"] or None) for name, b in bones.items()}


@pytest.mark.parametrize("convention", sorted(rigmap.load_conventions()))
def test_each_convention_is_detected_from_its_own_names(convention: str) -> None:
    conv = rigmap.load_conventions()[convention]
    for pick in range(max(len(v) for v in conv.bones.values())):
        bones = convention_bones(convention, pick)
        found = rigmap.detect(bones)
        assert found.convention == convention, (pick, found.scores)
        assert found.is_complete and not found.missing_optional
        expected = {j: conv.bones[j][min(pick, len(conv.bones[j]) - 1)] for j in conv.bones}
        assert found.bone_map == expected
        assert found.score >= 0.8


@pytest.mark.parametrize("rig, convention", sorted(MPFB2_EXPECTED.items()))
def test_mpfb2_rigs_are_detected(mpfb2_rigs: Path, rig: str, convention: str) -> None:
    bones = mpfb2_bones(mpfb2_rigs / f"rig.{rig}.json")
    found = rigmap.detect(bones)
    assert found.convention == convention, found.scores
    assert found.is_complete, found.message(rig)
    runner_up = sorted(found.scores.values())[-2]
    assert found.score - runner_up >= 0.05
    assert rigmap.validate_bone_map(bones, found.bone_map) == []


def test_mpfb2_rigify_metarig_chest_and_neck_come_from_the_hierarchy(mpfb2_rigs: Path) -> None:
    # MPFB2's metarig hangs the shoulders on spine.004 (Rigify's own on spine.003): the chest is where the arms
    # meet the spine and the neck is the next bone up, whatever the names say.
    found = rigmap.detect(mpfb2_bones(mpfb2_rigs / "rig.human.json"))
    assert found.bone_map["Chest"] == "spine.004"
    assert found.bone_map["Neck"] == "spine.005"
    assert found.bone_map["Hips"] == "spine" and found.bone_map["Head"] == "spine.006"
    assert set(found.filled) == {"Chest", "Neck"}


@pytest.mark.parametrize("rename, convention", [
    (lambda n: n.replace("mixamorig:", "mixamorig7:"), "mixamo"),
    (lambda n: n.replace("mixamorig:", ""), "mixamo"),
    (lambda n: "Armature|" + n.replace("mixamorig:", ""), "mixamo"),
])
def test_namespaces_are_tolerated(rename, convention: str) -> None:
    bones = {rename(b): (rename(p) if p else None) for b, p in convention_bones("mixamo").items()}
    found = rigmap.detect(bones)
    assert found.convention == convention and found.is_complete
    assert found.bone_map["LeftUpperArm"] == rename("mixamorig:LeftArm")


def test_side_spellings_case_and_shared_prefix_are_tolerated() -> None:
    # Unity names written as "Character1_upper_arm_l": prefix, snake case and a side suffix.
    def respell(name: str) -> str:
        side = "_l" if name.startswith("Left") else "_r" if name.startswith("Right") else ""
        core = name.removeprefix("Left").removeprefix("Right")
        snake = "".join("_" + c.lower() if c.isupper() else c for c in core).lstrip("_")
        return f"Character1_{snake}{side}"

    bones = {respell(b): (respell(p) if p else None) for b, p in convention_bones("unity", extras=False).items()}
    found = rigmap.detect(bones)
    assert found.convention == "unity" and found.is_complete
    assert found.bone_map["LeftUpperArm"] == "Character1_upper_arm_l"
    assert found.bone_map["RightFoot"] == "Character1_foot_r"


def test_name_key_spellings() -> None:
    same = ["upper_arm.L", "LeftUpperArm", "UpperArm_l", "Upper Arm Left", "mixamorig:LeftUpperArm", "upperarm-L"]
    assert {rigmap.name_key(n) for n in same} == {("L", "upperarm")}
    assert rigmap.name_key("左腕") == rigmap.name_key("腕.L") == ("L", "腕")
    assert rigmap.name_key("右ひざ") == ("R", "ひざ")
    assert rigmap.name_key("LHipJoint") == ("L", "hipjoint")
    assert rigmap.name_key("Leg") == ("", "leg")


def test_mmd_mmd_tools_spelling_is_detected() -> None:
    # mmd_tools renames 左足 to 足.L: same convention, found by name key.
    bones = convention_bones("mmd", pick=1)
    assert "足.L" in bones
    assert rigmap.detect(bones).convention == "mmd"


def test_vrm_and_unity_are_told_apart_by_case() -> None:
    assert rigmap.detect(convention_bones("vrm")).convention == "vrm"
    assert rigmap.detect(convention_bones("unity")).convention == "unity"
    assert rigmap.detect(convention_bones("vrm", pick=1)).bone_map["Hips"] == "J_Bip_C_Hips"


def test_missing_bones_are_filled_by_hierarchy() -> None:
    bones = convention_bones("mixamo")
    renamed = {"mixamorig:LeftForeArm": "elbow_thing", "mixamorig:RightHand": "paw", "mixamorig:Neck": "nck"}
    bones = {renamed.get(b, b): (renamed.get(p, p) if p else None) for b, p in bones.items()}
    found = rigmap.detect(bones)
    assert found.convention == "mixamo" and found.is_complete
    assert found.bone_map["LeftLowerArm"] == "elbow_thing"
    assert found.bone_map["RightHand"] == "paw"  # the child with the fingers
    assert found.bone_map["Neck"] == "nck"
    assert set(found.filled) == {"LeftLowerArm", "RightHand", "Neck"}


def test_missing_side_is_filled_from_the_other_sides_spelling() -> None:
    assert rigmap.mirror_name("thigh_l") == ["thigh_r"]
    assert "RightArm" in rigmap.mirror_name("LeftArm")
    assert "右足" in rigmap.mirror_name("左足")
    assert "J_Bip_R_Hand" in rigmap.mirror_name("J_Bip_L_Hand")
    bones = convention_bones("unreal", extras=False)
    renamed = {"lowerarm_l": "elbow_twist_l", "lowerarm_r": "elbow_twist_r", "hand_l": "paw_l", "hand_r": "paw_r"}
    bones = {renamed.get(b, b): (renamed.get(p, p) if p else None) for b, p in bones.items()}
    bones["paw_l_helper"] = "paw_l"
    found = rigmap.detect(bones)
    assert found.is_complete
    assert (found.bone_map["LeftHand"], found.bone_map["RightHand"]) == ("paw_l", "paw_r")
    assert (found.bone_map["LeftLowerArm"], found.bone_map["RightLowerArm"]) == ("elbow_twist_l", "elbow_twist_r")
    assert {"LeftHand", "RightHand", "LeftLowerArm", "RightLowerArm"} <= set(found.filled)


def test_non_humanoid_armature_says_which_required_bones_are_missing() -> None:
    bones: dict[str, str | None] = {"Bone": None}
    for i in range(1, 8):
        bones[f"Bone.{i:03d}"] = "Bone" if i == 1 else f"Bone.{i - 1:03d}"
    bones.update({"wing.L": "Bone.002", "wing.R": "Bone.002", "tail": "Bone"})
    found = rigmap.detect(bones)
    assert not found.is_complete
    assert found.missing_required == list(rigmap.load_humanoid().required)
    msg = found.message("Dragon")
    assert msg.startswith("Dragon is not a humanoid rig") and "Hips" in msg and "LeftFoot" in msg
    assert "bone map" in msg
    with pytest.raises(rigmap.RigMapError, match=r"Dragon is not a humanoid rig.*LeftUpperArm"):
        rigmap.resolve_bone_map(bones, None, "Dragon")


def test_partial_humanoid_names_only_the_missing_required_bones() -> None:
    bones = convention_bones("unreal")
    leg = ["thigh_r", "calf_r", "foot_r", "ball_r"]
    bones = {b: p for b, p in bones.items() if b not in leg}
    found = rigmap.detect(bones)
    assert found.convention == "unreal"
    assert found.missing_required == ["RightUpperLeg", "RightLowerLeg", "RightFoot"]
    assert found.missing_optional == ["RightToes"]
    assert "RightUpperLeg, RightLowerLeg, RightFoot" in found.message()


def test_validate_bone_map_reports_user_mistakes() -> None:
    bones = convention_bones("unity")
    good = rigmap.detect(bones).bone_map
    assert rigmap.validate_bone_map(bones, good) == []
    bad = dict(good, LeftHand="NoSuchBone", Tail="Hips", RightHand=good["LeftHand"])
    problems = " ".join(rigmap.validate_bone_map(bones, bad))
    assert "'NoSuchBone', which the armature does not have" in problems
    assert "'Tail' is not a joint" in problems
    swapped = dict(good, Spine=good["Head"], Head=good["Spine"])
    problems = rigmap.validate_bone_map(bones, swapped)
    assert any("Head ('Spine') is not below" in p for p in problems)
    with pytest.raises(rigmap.RigMapError, match="bone map cannot be used"):
        rigmap.resolve_bone_map(bones, swapped)


def test_presets_round_trip_and_reject_bad_files(tmp_path: Path) -> None:
    bone_map = rigmap.detect(convention_bones("mmd")).bone_map
    path = tmp_path / "presets" / "my_miku.json"
    rigmap.save_preset(path, bone_map, "My Miku")
    assert rigmap.load_preset(path) == bone_map
    assert json.loads(path.read_text(encoding="utf-8"))["label"] == "My Miku"
    assert "左足" in path.read_text(encoding="utf-8")
    with pytest.raises(rigmap.RigMapError, match="does not exist"):
        rigmap.load_preset(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{\"bones\": 3}")
    with pytest.raises(rigmap.RigMapError, match="not a Mimic bone-map preset"):
        rigmap.load_preset(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"format": "mimic_bone_map", "version": 1, "bones": {"Tail": "a"}}))
    with pytest.raises(rigmap.RigMapError, match="unknown joints Tail"):
        rigmap.load_preset(tmp_path / "y.json")


def test_control_rig_joints_are_marked_by_deform_bones_and_switched_to_fk() -> None:
    # A generated Rigify rig's torso control floats above the hips: the joint is where DEF-spine starts. Controls
    # without their deform bone in the armature (a rig named like Rigify's controls) mark the joint themselves.
    bones: dict[str, str | None] = {"root": None, "torso": "root", "DEF-spine": "root", "thigh_fk.L": "torso"}
    bone_map = {"Hips": "torso", "LeftUpperLeg": "thigh_fk.L"}
    assert rigmap.joint_bones(bone_map, bones) == {"Hips": "DEF-spine", "LeftUpperLeg": "thigh_fk.L"}
    assert rigmap.control_settings(bone_map, bones) == {"IK_FK": 1.0}
    deform = {"Hips": "DEF-spine", "LeftUpperLeg": "DEF-thigh.L"}
    assert rigmap.joint_bones(deform, bones) == deform
    assert rigmap.control_settings(deform, bones) == {}
    # Unreal names its head bone "head" like Rigify's head control: without Rigify's deform bones nothing changes.
    unreal = convention_bones("unreal")
    found = rigmap.detect(unreal).bone_map
    assert found["Head"] == "head"
    assert rigmap.joint_bones(found, unreal) == found and rigmap.control_settings(found, unreal) == {}
