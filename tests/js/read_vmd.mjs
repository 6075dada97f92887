// Read an MMD motion (.vmd) with another reader, mmd-parser (the parser three.js's MMDLoader used), and print JSON:
// the header, every bone key (name decoded from Shift-JIS, frame, position, quaternion x-y-z-w, the 64 interpolation
// bytes) as the file holds them (MMD's left-handed axes), the same keys after mmd-parser's own conversion to
// right-handed axes (parseVmd(buffer, true), what three.js played), and every morph key. A file mmd-parser refuses
// prints {"error": ...} and exits 1.
//
// Usage: node tests/js/read_vmd.mjs FILE.vmd
import { readFileSync } from "node:fs";
import { Parser } from "mmd-parser";

function bones(vmd) {
  return {
    names: vmd.motions.map((m) => m.boneName),
    frames: vmd.motions.map((m) => m.frameNum),
    positions: vmd.motions.map((m) => Array.from(m.position)),
    rotations: vmd.motions.map((m) => Array.from(m.rotation)),
  };
}

const bytes = readFileSync(process.argv[2]);
const buffer = () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
try {
  const left = new Parser().parseVmd(buffer());
  const right = new Parser().parseVmd(buffer(), true);
  const out = {
    metadata: left.metadata,
    bones: { ...bones(left), interpolation: left.motions.map((m) => Array.from(m.interpolation)) },
    bones_right_handed: bones(right),
    morphs: {
      names: left.morphs.map((m) => m.morphName),
      frames: left.morphs.map((m) => m.frameNum),
      weights: left.morphs.map((m) => m.weight),
    },
  };
  process.stdout.write(JSON.stringify(out));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String(err) }));
  process.exit(1);
}
