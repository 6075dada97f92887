// Validate a glTF / GLB file (e.g. a .vrma) with the Khronos glTF-Validator and print its report as JSON.
//
// Usage: node tests/js/validate_gltf.mjs FILE
import { readFileSync } from "node:fs";
import validator from "gltf-validator";

const path = process.argv[2];
try {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(path)), {
    uri: path,
    maxIssues: 0,  // every issue
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri} not expected`)),
  });
  process.stdout.write(JSON.stringify(report));
} catch (err) {
  console.error(`validate_gltf.mjs: ${err?.stack ?? err}`);
  process.exit(1);
}
