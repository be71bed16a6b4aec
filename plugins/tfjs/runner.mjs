// Runs one exported TF.js graph model in Node.js for odplug's verification, one image at a time.
//
// Usage: node runner.mjs <model folder> [<npm prefix> [<backend>]]   (the folder holds model.json,
// its shards and the odplug manifest.json; @tensorflow/tfjs is resolved from
// <npm prefix>/node_modules, by default the folder of this script, so an installed package can use
// a shared npm install; <backend> is "wasm", the default, or "cpu"). Speaks JSON lines: each
// request on stdin is answered by one line on stdout; everything else TF.js prints goes to stderr
// so it cannot break the protocol.
//   {"op": "describe"}  -> the graph model's real inputs and outputs, as TF.js sees them
//   {"op": "detect", "shape": [h, w, 3], "data": "<base64 of the uint8 RGB pixels>"}
//                       -> {"outputs": {name: {"shape": [...], "data": [...]}}}, named by the
//                          manifest (the converter can lose output names in model.json)
// The first line written is {"ok": true, "ready": true, "backend": ..., ...} once the model is
// loaded; when the wasm backend was asked for but cannot start, the model runs on "cpu" and the
// line says why in "fallback".
// wasm is @tensorflow/tfjs-backend-wasm: its .wasm binaries ship inside the npm package (no
// download at run time) and are read from that package's dist/ folder. In Node it runs on one
// thread (the package turns threads off in Node, tensorflow/tfjs#3830) with SIMD where the Node
// has it. cpu is tfjs's pure-JavaScript backend, over ten times slower.

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

const send = (message) => process.stdout.write(JSON.stringify(message) + "\n");
console.log = (...args) => console.error(...args);
console.warn = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const prefix = process.argv[3] ?? path.dirname(fileURLToPath(import.meta.url));
const requireFromPrefix = createRequire(path.join(prefix, "package.json"));
const tf = await import(pathToFileURL(requireFromPrefix.resolve("@tensorflow/tfjs")).href);
const BACKENDS = ["wasm", "cpu"];

// The backend asked for, or cpu with the reason when wasm cannot start here.
async function startBackend(wanted) {
  if (!BACKENDS.includes(wanted)) throw new Error(`unknown backend ${JSON.stringify(wanted)}`);
  const reason = wanted === "wasm" ? await startWasm() : null;
  if (wanted === "wasm" && reason === null) return {};
  await tf.setBackend("cpu");  // after a failed setBackend("wasm"), getBackend() still says wasm
  return reason === null ? {} : { fallback: `wasm could not start: ${reason}` };
}

// null once the wasm backend runs, else why not, in one line. tfjs reports a backend that fails
// to initialise through console.warn (emscripten's own error first), not by throwing.
async function startWasm() {
  const warnings = [];
  const warn = console.warn;
  console.warn = (...args) => { warnings.push(args.join(" ")); warn(...args); };
  try {
    const wasmMain = requireFromPrefix.resolve("@tensorflow/tfjs-backend-wasm");
    const wasm = await import(pathToFileURL(wasmMain).href);
    wasm.setWasmPaths(path.dirname(wasmMain) + path.sep);
    if (await tf.setBackend("wasm")) return null;
    return (warnings[0] ?? "no reason given").split("\n")[0];
  } catch (error) {
    return error.message.split("\n")[0];  // Node adds the require stack below
  } finally {
    console.warn = warn;
  }
}

async function loadArtifacts(folder) {
  const modelJson = JSON.parse(await readFile(path.join(folder, "model.json"), "utf8"));
  const weightSpecs = [];
  const buffers = [];
  for (const group of modelJson.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const shard of group.paths) {
      buffers.push(await readFile(path.join(folder, shard)));
    }
  }
  const weightData = Buffer.concat(buffers);
  return {
    modelTopology: modelJson.modelTopology,
    format: modelJson.format,
    generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy,
    signature: modelJson.signature,
    userDefinedMetadata: modelJson.userDefinedMetadata,
    modelInitializer: modelJson.modelInitializer,
    weightSpecs,
    weightData: weightData.buffer.slice(
      weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
  };
}

const describe = (model) => ({
  inputs: model.inputs.map(({ name, shape, dtype }) => ({ name, shape, dtype })),
  outputs: model.outputs.map(({ name, shape, dtype }) => ({ name, shape, dtype })),
});

async function detect(model, manifest, request) {
  const pixels = Buffer.from(request.data, "base64");
  const [height, width, channels] = request.shape;
  if (pixels.length !== height * width * channels) {
    throw new Error(`got ${pixels.length} bytes for an image of shape ${request.shape}`);
  }
  const input = tf.tensor(Int32Array.from(pixels), [1, height, width, channels],
    model.inputs[0].dtype === "float32" ? "float32" : "int32");
  const names = manifest.outputs.map((output) => output.tensor);
  const results = await model.executeAsync({ [manifest.input.tensor]: input }, names);
  input.dispose();
  const outputs = {};
  for (const [index, output] of manifest.outputs.entries()) {
    outputs[output.name] = { shape: results[index].shape, data: Array.from(await results[index].data()) };
  }
  tf.dispose(results);
  return { outputs };
}

async function main() {
  const folder = process.argv[2];
  let model;
  let manifest;
  let started;
  try {
    started = await startBackend(process.argv[4] ?? "wasm");
    manifest = JSON.parse(await readFile(path.join(folder, "manifest.json"), "utf8"));
    model = await tf.loadGraphModel({ load: () => loadArtifacts(folder) });
  } catch (error) {
    send({ ok: false, error: `cannot load the TF.js model in ${folder}: ${error.message}` });
    process.exit(1);
  }
  send({ ok: true, ready: true, backend: tf.getBackend(), tfjs: tf.version.tfjs, ...started });
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    try {
      const request = JSON.parse(line);
      if (request.op === "describe") send({ ok: true, ...describe(model) });
      else if (request.op === "detect") send({ ok: true, ...(await detect(model, manifest, request)) });
      else send({ ok: false, error: `unknown op ${JSON.stringify(request.op)}` });
    } catch (error) {
      send({ ok: false, error: error.message });
    }
  }
}

await main();
