// Read a VRM Animation (.vrma) with the real readers, three.js's GLTFLoader and @pixiv/three-vrm-animation, in Node
// (no DOM), and print JSON: the VRMAnimation's tracks as three-vrm-animation hands them to a VRM (humanoid rotations
// normalised to a T-pose rest with identity rotations, x-y-z-w; the hips translation; expression weights), and the
// clip played by three-vrm on a humanoid whose bones have other rest orientations than the file's: each bone's world
// position and world rotation relative to its rest at every key time.
//
// Usage: node tests/js/read_vrma.mjs FILE.vrma
import { readFileSync } from "node:fs";
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { VRMAnimationLoaderPlugin, createVRMAnimationClip } from "@pixiv/three-vrm-animation";
import { VRMHumanoid } from "@pixiv/three-vrm";

const quiet = console.warn;
const warnings = [];
console.warn = (...args) => warnings.push(args.join(" "));  // keep stdout pure JSON; warnings go in the report

function load(path) {
  const bytes = readFileSync(path);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const loader = new GLTFLoader();
  loader.register((parser) => new VRMAnimationLoaderPlugin(parser));
  return new Promise((resolve, reject) => loader.parse(buffer, "", resolve, reject));
}

function track(t) {
  return { times: Array.from(t.times), values: Array.from(t.values) };
}

// A pseudo-random rest orientation per bone (seeded), so the played humanoid's local axes differ from the file's.
let seed = 12345;
function random() {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
}

function character(gltf, humanBones) {
  // Raw bones at the file's rest world positions (its T-pose), each with its own rest rotation.
  const scene = new THREE.Scene();
  const raw = {};
  const world = {};
  gltf.scene.updateMatrixWorld(true);
  const nodeOf = {};
  for (const [name, bone] of Object.entries(humanBones)) nodeOf[bone.node] = name;
  const build = (threeNode, parentBone, parentObject) => {
    const index = gltf.parser.associations.get(threeNode)?.nodes;
    const name = nodeOf[index];
    let object = parentObject;
    let bone = parentBone;
    if (name !== undefined) {
      object = new THREE.Object3D();
      object.name = `raw_${name}`;
      const position = new THREE.Vector3().setFromMatrixPosition(threeNode.matrixWorld);
      const rotation = new THREE.Quaternion().setFromEuler(
        new THREE.Euler((random() - 0.5) * 2, (random() - 0.5) * 2, (random() - 0.5) * 2));
      const parentMatrix = parentObject.matrixWorld.clone();
      const local = new THREE.Matrix4().compose(position, rotation, new THREE.Vector3(1, 1, 1))
        .premultiply(parentMatrix.invert());
      local.decompose(object.position, object.quaternion, object.scale);
      parentObject.add(object);
      object.updateMatrixWorld(true);
      raw[name] = object;
      world[name] = rotation;
      bone = name;
    }
    for (const child of threeNode.children) build(child, bone, object);
  };
  scene.updateMatrixWorld(true);
  for (const child of gltf.scene.children) build(child, null, scene);
  const bones = Object.fromEntries(Object.entries(raw).map(([name, node]) => [name, { node }]));
  const humanoid = new VRMHumanoid(bones);
  scene.add(humanoid.normalizedHumanBonesRoot);
  return { scene, humanoid, raw, restWorld: world };
}

function play(gltf, animation, humanBones) {
  const { scene, humanoid, raw, restWorld } = character(gltf, humanBones);
  const vrm = { scene, humanoid, meta: { metaVersion: "1" }, expressionManager: null, lookAt: null };
  const clip = createVRMAnimationClip(animation, vrm);
  const mixer = new THREE.AnimationMixer(scene);
  const action = mixer.clipAction(clip);
  action.setLoop(THREE.LoopOnce, 1);  // the last key is the last frame, not the first one again
  action.clampWhenFinished = true;
  action.play();
  const times = Array.from(animation.humanoidTracks.rotation.get("hips")?.times ?? [0]);
  const out = { times, bones: {} };
  for (const name of Object.keys(raw)) out.bones[name] = { positions: [], rotations: [] };
  const position = new THREE.Vector3();
  const rotation = new THREE.Quaternion();
  for (const t of times) {
    mixer.setTime(t);
    humanoid.update();
    scene.updateMatrixWorld(true);
    for (const [name, node] of Object.entries(raw)) {
      node.getWorldPosition(position);
      node.getWorldQuaternion(rotation);
      rotation.multiply(restWorld[name].clone().invert());
      out.bones[name].positions.push(position.toArray());
      out.bones[name].rotations.push(rotation.toArray());
    }
  }
  return out;
}

const path = process.argv[2];
try {
  const gltf = await load(path);
  const animations = gltf.userData.vrmAnimations ?? [];
  if (animations.length === 0) throw new Error("three-vrm-animation found no VRM animation in the file");
  const animation = animations[0];
  const humanBones = gltf.parser.json.extensions.VRMC_vrm_animation.humanoid.humanBones;
  const result = {
    duration: animation.duration,
    restHipsPosition: animation.restHipsPosition.toArray(),
    rotation: Object.fromEntries([...animation.humanoidTracks.rotation].map(([k, t]) => [k, track(t)])),
    translation: Object.fromEntries([...animation.humanoidTracks.translation].map(([k, t]) => [k, track(t)])),
    expressions: Object.fromEntries([...animation.expressionTracks.preset, ...animation.expressionTracks.custom]
      .map(([k, t]) => [k, track(t)])),
    played: play(gltf, animation, humanBones),
    warnings,
  };
  process.stdout.write(JSON.stringify(result));
} catch (err) {
  quiet(`read_vrma.mjs: ${err?.stack ?? err}`);
  process.exit(1);
}
