"""Facial expressions onto shape keys in real Blender (bpy 5.0.1) with the extension enabled: every naming convention
(VRM, VRoid Fcl_*, ARKit, MMD) keyed with the motion's weights at the right frames, first match wins, a key driven
twice takes the max, a character without shape keys gets a notice (the body still imports), the Face panel's mapping
edits change which key is driven and persist with the .blend, no NaN, and the FBX carrying the shape-key animation
when the mesh is exported with the armature."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import LayoutRecorder, clear_scene, enabled_extension  # noqa: E402
from core.common.hands import expression_names  # noqa: E402
from core.common.motionfile import Motion  # noqa: E402
from core.common.skeleton import humanoid  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPO_MODULE = "mimic_face_tests"
ADDON = f"bl_ext.{REPO_MODULE}.mimic"
FRAMES = 40
FRAME_START = 5
MAX_ERROR = 1e-3
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory):
    """The extension enabled from an empty file (a local extension repository linking to this checkout)."""
    with enabled_extension(tmp_path_factory.mktemp("extensions"), REPO_MODULE) as module:
        yield module
    if FIGURES:
        print("\nface figures:", {k: round(v, 6) for k, v in FIGURES.items()})


@pytest.fixture()
def face(ext):
    """The enabled extension's addon/face.py, on a scene emptied of objects, meshes, armatures and actions."""
    clear_scene()
    return importlib.import_module(f"{ext.__name__}.addon.face")


def expression_motion(frames: int = FRAMES) -> Motion:
    """A still humanoid whose 27 expression weights each follow their own wave in 0..1."""
    sk = humanoid()
    names = expression_names()
    t = np.arange(frames)[:, None] / frames
    e = np.arange(len(names))[None, :]
    weights = 0.5 + 0.5 * np.sin(2 * np.pi * t * (1 + e % 4) + 0.7 * e)
    rotations = np.zeros((frames, sk.num_joints, 4))
    rotations[..., 0] = 1.0
    root = np.tile([0.0, 0.95, 0.0], (frames, 1))
    return Motion(skeleton=sk, fps=30.0, rotations=rotations, root_positions=root, expressions=weights,
                  expression_names=names)


def weights_of(motion: Motion, expression: str) -> np.ndarray:
    return motion.expressions[:, motion.expression_names.index(expression)]


def make_mesh(name: str, keys: list[str], parent: bpy.types.Object | None = None,
              modifier: bpy.types.Object | None = None) -> bpy.types.Object:
    """A triangle mesh object with a basis and shape keys `keys` (each moving one vertex), parented / deformed."""
    data = bpy.data.meshes.new(name)
    data.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    if keys:
        obj.shape_key_add(name="Basis")
        for k, key in enumerate(keys):
            block = obj.shape_key_add(name=key)
            block.data[k % 3].co.z += 0.1
            block.value = 0.25
    obj.parent = parent
    if modifier is not None:
        obj.modifiers.new("Armature", "ARMATURE").object = modifier
    return obj


def make_character(keys: list[str], name: str = "Character") -> tuple[bpy.types.Object, bpy.types.Object]:
    """An armature with one face mesh child (parented and deformed by it) carrying shape keys `keys`."""
    arm = bpy.data.objects.new(name, bpy.data.armatures.new(name))
    bpy.context.scene.collection.objects.link(arm)
    return arm, make_mesh(f"{name}_Face", keys, parent=arm, modifier=arm)


def key_curves(mesh: bpy.types.Object) -> dict[str, bpy.types.FCurve]:
    """Shape-key name -> its F-curve in the active action of the mesh's shape keys."""
    anim = mesh.data.shape_keys.animation_data
    if anim is None or anim.action is None:
        return {}
    fcurves_module = importlib.import_module(f"{ADDON}.addon.fcurves")
    return {fc.data_path.split('"')[1]: fc for fc in fcurves_module.action_fcurves(anim.action, anim.action_slot)}


def assert_keyed(mesh: bpy.types.Object, key: str, expected: np.ndarray, frame_start: int = FRAME_START) -> None:
    """The shape key's F-curve has one key per motion frame at the right frames, evaluates to `expected`, and the
    evaluated scene shows those values."""
    fcurve = key_curves(mesh)[key]
    co = np.empty(2 * len(fcurve.keyframe_points))
    fcurve.keyframe_points.foreach_get("co", co)
    assert np.all(np.isfinite(co))
    np.testing.assert_array_equal(co[0::2], frame_start + np.arange(len(expected)))
    curve = np.array([fcurve.evaluate(frame_start + f) for f in range(len(expected))])
    assert np.abs(curve - expected).max() < MAX_ERROR
    block = mesh.data.shape_keys.key_blocks[key]
    for f in (0, len(expected) // 3, len(expected) - 1):
        bpy.context.scene.frame_set(frame_start + f)
        assert abs(block.value - expected[f]) < MAX_ERROR


CONVENTIONS = {  # shape keys on the face mesh -> the expressions they must carry
    "vrm": {"blink": "blink", "aa": "aa"},
    "vroid": {"Fcl_EYE_Close": "blink", "Fcl_MTH_A": "aa"},
    "arkit": {"eyeBlinkLeft": "eyeBlinkLeft", "jawOpen": "jawOpen"},
    "mmd": {"まばたき": "blink", "あ": "aa"},
    "vrm_other_case": {"BLINK": "blink", "Aa": "aa"},
}


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_each_convention_gets_the_motion_weights(face, convention: str) -> None:
    expected = CONVENTIONS[convention]
    arm, mesh = make_character([*expected, "unrelated"])
    motion = expression_motion()
    report = face.key_expressions(arm, motion, frame_start=FRAME_START, action_name="clip")
    assert report.notice == ""
    assert report.keyed == {mesh.name: list(expected)}
    assert [a.name for a in report.actions] == [f"clip_{mesh.name}"]
    assert set(key_curves(mesh)) == set(expected)  # "unrelated" is not driven
    for key, expression in expected.items():
        assert_keyed(mesh, key, weights_of(motion, expression))
    assert mesh.data.shape_keys.key_blocks["unrelated"].value == pytest.approx(0.25)  # left as it was
    assert "blink" not in report.unmatched or convention == "arkit"


def test_mesh_alone_and_list_of_meshes(face) -> None:
    motion = expression_motion()
    a = make_mesh("A", ["jawOpen"])
    b = make_mesh("B", ["Fcl_MTH_A"])
    report = face.key_expressions(a, motion, frame_start=1)
    assert report.keyed == {"A": ["jawOpen"]}
    report = face.key_expressions([a, b], motion, frame_start=1)
    assert report.keyed == {"A": ["jawOpen"], "B": ["Fcl_MTH_A"]}
    assert_keyed(b, "Fcl_MTH_A", weights_of(motion, "aa"), 1)
    assert_keyed(a, "jawOpen", weights_of(motion, "jawOpen"), 1)


def test_first_match_wins_and_a_key_driven_twice_takes_the_max(face) -> None:
    motion = expression_motion()
    arm, mesh = make_character(["Fcl_EYE_Close", "blink"])  # VRM's name comes first in the defaults
    report = face.key_expressions(arm, motion, frame_start=FRAME_START)
    assert report.keyed == {mesh.name: ["blink"]}
    assert_keyed(mesh, "blink", weights_of(motion, "blink"))
    report = face.key_expressions(arm, motion, {"blink": ["blink"], "blinkLeft": ["nothing", "BLINK"],
                                                "aa": ["Fcl_EYE_Close"]}, FRAME_START)
    assert report.keyed == {mesh.name: ["blink", "Fcl_EYE_Close"]}
    both = np.maximum(weights_of(motion, "blink"), weights_of(motion, "blinkLeft"))
    assert np.abs(both - weights_of(motion, "blink")).max() > 0.1  # the max really differs from either channel
    assert_keyed(mesh, "blink", both)
    assert_keyed(mesh, "Fcl_EYE_Close", weights_of(motion, "aa"))


def test_every_mesh_of_the_character_is_keyed(face) -> None:
    motion = expression_motion()
    arm, face_mesh = make_character(["Fcl_MTH_A", "Fcl_EYE_Close"])
    body = make_mesh("Body", [], parent=arm)
    lashes = make_mesh("Lashes", ["blink"], modifier=arm)  # deformed, not parented
    make_mesh("Elsewhere", ["blink"])  # someone else's
    assert {o.name for o in face.character_meshes(arm)} == {face_mesh.name, body.name, lashes.name}
    report = face.key_expressions(arm, motion, frame_start=FRAME_START)
    assert report.keyed == {face_mesh.name: ["Fcl_EYE_Close", "Fcl_MTH_A"], "Lashes": ["blink"]}
    assert len(report.actions) == 2
    assert_keyed(lashes, "blink", weights_of(motion, "blink"))
    assert_keyed(face_mesh, "Fcl_EYE_Close", weights_of(motion, "blink"))
    assert bpy.data.objects["Elsewhere"].data.shape_keys.animation_data is None
    assert face.character_of(face_mesh) == arm and face.character_of(lashes) == arm


def test_no_shape_keys_is_a_notice_and_the_body_still_imports(face, ext) -> None:
    motion = expression_motion()
    arm, _mesh = make_character([])
    actions = len(bpy.data.actions)
    report = face.key_expressions(arm, motion)
    assert report.count == 0 and report.actions == [] and len(bpy.data.actions) == actions
    assert "no shape keys" in report.notice and "\n" not in report.notice
    assert report.summary() == report.notice
    _arm, _other = make_character(["smile_custom"], name="Other")
    report = face.key_expressions(_arm, motion)
    assert "no shape keys matching" in report.notice and report.count == 0
    assert report.unmatched == list(motion.expression_names)

    importer = importlib.import_module(f"{ext.__name__}.addon.importer")
    result = importer.import_motion(bpy.context, motion, "clip")  # keys the face too: Mimic's armature has none
    assert any("no shape keys" in w for w in result.warnings), result.warnings
    assert result.armature.animation_data.action == result.action  # the body's animation is there
    assert face.key_expressions(arm, motion.with_channels(expressions=None, expression_names=())).notice


def test_nan_weights_are_keyed_as_zero(face) -> None:
    motion = expression_motion()
    weights = motion.expressions.copy()
    weights[3] = np.nan
    weights[4, 0] = 1.5
    motion = motion.with_channels(expressions=weights)
    arm, mesh = make_character(["blink", "aa"])
    face.key_expressions(arm, motion, frame_start=FRAME_START)
    expected = np.nan_to_num(weights[:, 0], nan=0.0).clip(0, 1)
    assert_keyed(mesh, "blink", expected)
    assert key_curves(mesh)["blink"].evaluate(FRAME_START + 3) == 0.0


def test_keying_again_keeps_the_previous_action(face) -> None:
    motion = expression_motion()
    arm, mesh = make_character(["blink"])
    first = face.key_expressions(arm, motion, action_name="one").actions[0]
    second = face.key_expressions(arm, motion, action_name="two").actions[0]
    assert mesh.data.shape_keys.animation_data.action == second
    assert first.use_fake_user and first.name in bpy.data.actions


def draw_face_panel(ext) -> list:
    face_ui = importlib.import_module(f"{ext.__name__}.addon.face_ui")
    calls: list = []
    face_ui.MIMIC_PT_face.draw(type("P", (), {"layout": LayoutRecorder(calls)})(), bpy.context)
    return calls


def row_icon(ext, settings, expression: str) -> str:
    """The icon the mapping list draws beside `expression`: matched, names that match nothing, or empty."""
    face_ui = importlib.import_module(f"{ext.__name__}.addon.face_ui")
    index = [item.expression for item in settings.mapping].index(expression)
    calls: list = []
    face_ui.MIMIC_UL_face_map.draw_item(None, bpy.context, LayoutRecorder(calls), settings, settings.mapping[index], 0,
                                        settings, "mapping_index", index)
    return next(c[2]["icon"] for c in calls if c[0] == "label")


def select(obj: bpy.types.Object) -> None:
    for other in bpy.context.view_layer.objects:
        other.select_set(False)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def test_panel_mapping_edits_change_the_driven_key(face, ext) -> None:
    assert ext.addon.face_ui.MIMIC_PT_face.is_registered
    assert ext.addon.face_ui.MIMIC_PT_face.bl_parent_id == "MIMIC_PT_main"
    motion = expression_motion()
    arm, mesh = make_character(["aa", "mouthOpen", "Fcl_EYE_Close"])
    select(mesh)  # the face mesh selected: its character is the armature
    settings = bpy.context.scene.mimic.face
    assert bpy.ops.mimic.face_match() == {"FINISHED"}
    assert settings.character == arm.name
    rows = {item.expression: item.shape_keys for item in settings.mapping}
    assert list(rows) == list(expression_names())
    assert rows["aa"] == "aa" and rows["blink"] == "Fcl_EYE_Close" and rows["jawOpen"] == ""
    assert face.stored_mapping(arm)["aa"] == ["aa"] and face.stored_mapping(arm)["ih"] == []
    calls = draw_face_panel(ext)
    assert "2 of 27 expressions drive 2 shape keys on 1 mesh." in [c[2].get("text") for c in calls if c[0] == "label"]
    assert any(c[0] == "template_list" and c[1][0] == "MIMIC_UL_face_map" for c in calls)
    assert row_icon(ext, settings, "aa") == "CHECKMARK" and row_icon(ext, settings, "ih") == "BLANK1"

    row = list(rows).index("aa")
    assert bpy.ops.mimic.face_pick(row=row, shape_key="mouthOpen") == {"FINISHED"}  # the search's choice
    settings.mapping[list(rows).index("ih")].shape_keys = "missing, AA"  # typed: the first name found wins
    assert face.stored_mapping(arm)["aa"] == ["mouthOpen"]
    assert face.stored_mapping(arm)["ih"] == ["missing", "AA"]
    assert row_icon(ext, settings, "ih") == "CHECKMARK"
    settings.mapping[list(rows).index("ou")].shape_keys = "missing"
    assert row_icon(ext, settings, "ou") == "ERROR"
    report = face.key_expressions(arm, motion, frame_start=FRAME_START)  # the importer's call: the saved mapping
    assert report.keyed == {mesh.name: ["Fcl_EYE_Close", "mouthOpen", "aa"]}
    assert_keyed(mesh, "mouthOpen", weights_of(motion, "aa"))
    assert_keyed(mesh, "aa", weights_of(motion, "ih"))
    settings.mapping[list(rows).index("blink")].shape_keys = ""
    report = face.key_expressions(arm, motion, frame_start=FRAME_START)
    assert "Fcl_EYE_Close" not in report.keyed[mesh.name] and "blink" in report.unmatched


def test_mapping_travels_with_the_blend(face, ext, tmp_path: Path) -> None:
    arm, _mesh = make_character(["aa", "jawOpen"])
    select(arm)
    bpy.ops.mimic.face_match()
    settings = bpy.context.scene.mimic.face
    settings.mapping[list(expression_names()).index("aa")].shape_keys = "jawOpen"
    path = tmp_path / "face.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    arm = bpy.data.objects["Character"]
    assert face.stored_mapping(arm)["aa"] == ["jawOpen"]
    assert face.mapping_for(arm)["aa"] == ["jawOpen"] and face.mapping_for(arm)["ih"] == []
    select(arm)
    assert bpy.ops.mimic.face_match(use_saved=True) == {"FINISHED"}
    rows = {item.expression: item.shape_keys for item in bpy.context.scene.mimic.face.mapping}
    assert rows["aa"] == "jawOpen"


def test_fbx_with_the_mesh_carries_the_shape_key_animation(face, ext, tmp_path: Path) -> None:
    """The FBX exporter (addon/exporters/fbx.py) writes the character's meshes whose shape keys are animated with
    that animation (a Solidify modifier, which would make Blender rebuild the mesh without shape keys, is left out),
    and a Mimic armature alone as before."""
    fbx = importlib.import_module(f"{ext.__name__}.addon.exporters.fbx")
    motion = expression_motion()
    arm, mesh = make_character(["blink", "Fcl_MTH_A"])
    mesh.modifiers.new("Solidify", "SOLIDIFY")
    face.key_expressions(arm, motion, frame_start=1)
    assert fbx.faces_of(arm) == [mesh]
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, motion.num_frames
    path = fbx.write(bpy.context, arm, tmp_path / "face.fbx")
    before = set(bpy.data.objects)
    bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)
    imported = next(o for o in bpy.data.objects if o not in before and o.type == "MESH")
    for key, expression in (("blink", "blink"), ("Fcl_MTH_A", "aa")):
        fcurve = key_curves(imported)[key]
        curve = np.array([fcurve.evaluate(1 + f) for f in range(motion.num_frames)])
        assert np.abs(curve - weights_of(motion, expression)).max() < MAX_ERROR
    plain, _ = make_character([], name="Plain")
    assert fbx.faces_of(plain) == []


def test_keying_is_vectorised(face) -> None:
    motion = expression_motion(10_000)
    arm, mesh = make_character(list(face.default_mapping()))  # every expression's own VRM / ARKit name
    start = time.perf_counter()
    report = face.key_expressions(arm, motion)
    FIGURES["key_27x10000_s"] = time.perf_counter() - start
    assert report.count == 27 and report.unmatched == []
    assert FIGURES["key_27x10000_s"] < 2.0
    assert_keyed(mesh, "jawOpen", weights_of(motion, "jawOpen"), 1)
