// Runs one exported TF.js graph model in Node.js for odplug's verification, one image at a time.
//
// Usage: node runner.mjs <model folder> [<npm prefix> [<backend>]]   (the folder holds model.json,
// its shards and the odplug manifest.json; @tensorflow/tfjs is resolved from
// <npm prefix>/node_modules, by default the folder of this script, so an installed package can use
// a shared npm install; <backend> is "wasm", the default, or "cpu"). Everything TF.js prints goes
// to stderr so it cannot break the protocol on stdin/stdout.
//
// The protocol is framed binary, both ways: a 4-byte little-endian length, that many bytes of a
// JSON header, then header.bytes raw bytes (none when absent). Pixels and outputs travel as raw
// bytes: base64 + JSON for the pixels, JSON number arrays for the outputs and Int32Array.from
// made every verification call slower (docs/exports.md, "Measurements").
//   {"op": "describe"}  -> the graph model's real inputs and outputs, as TF.js sees them
//   {"op": "detect", "shape": [h, w, 3], "bytes": h*w*3} + the uint8 RGB pixels
//                       -> {"outputs": [{"name", "shape", "dtype", "bytes"}, ...]} + each output's
//                          data in that order (float32 or int32, little-endian), named by the
//                          manifest (the converter can lose output names in model.json)
// The first frame written is {"ok": true, "ready": true, "backend": ..., ...} once the model is
// loaded; when the wasm backend was asked for but cannot start, the model runs on "cpu" and the
// header says why in "fallback".
// wasm is @tensorflow/tfjs-backend-wasm: its .wasm binaries ship inside the npm package (no
// download at run time) and are read from that package's dist/ folder. In Node it runs on one
// thread (the package turns threads off in Node, tensorflow/tfjs#3830) with SIMD where the Node
// has it. cpu is tfjs's pure-JavaScript backend, over ten times slower (docs/exports.md).

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// One frame: length, JSON header, then the payload buffers (their total is header.bytes).
function send(header, payload = []) {
  const bytes = payload.reduce((total, part) => total + part.byteLength, 0);
  const json = Buffer.from(JSON.stringify(bytes ? { ...header, bytes } : header), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length, 0);
  process.stdout.write(Buffer.concat([length, json, ...payload]));
}

// The frames arriving on a stream, as {header, payload}; a frame may span many chunks.
async function* frames(stream) {
  let pending = [];
  let buffered = 0;
  let wanted = 4;  // bytes needed before the next step can be taken
  for await (const chunk of stream) {
    pending.push(chunk);
    buffered += chunk.length;
    while (buffered >= wanted) {
      const buffer = pending.length === 1 ? pending[0] : Buffer.concat(pending);
      pending = [buffer];
      const headerLength = buffer.readUInt32LE(0);
      if (buffered < 4 + headerLength) { wanted = 4 + headerLength; continue; }
      const header = JSON.parse(buffer.subarray(4, 4 + headerLength).toString("utf8"));
      const end = 4 + headerLength + (header.bytes ?? 0);
      if (buffered < end) { wanted = end; continue; }
      yield { header, payload: buffer.subarray(4 + headerLength, end) };
      pending = [buffer.subarray(end)];
      buffered -= end;
      wanted = 4;
    }
  }
}
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

const TYPED_ARRAYS = { Float32Array: "float32", Int32Array: "int32", Uint8Array: "uint8" };

async function detect(model, manifest, header, pixels) {
  const [height, width, channels] = header.shape;
  if (pixels.length !== height * width * channels) {
    throw new Error(`got ${pixels.length} bytes for an image of shape ${header.shape}`);
  }
  // A typed-array constructor converts natively; Int32Array.from iterates in JavaScript.
  const float = model.inputs[0].dtype === "float32";
  const input = tf.tensor(float ? new Float32Array(pixels) : new Int32Array(pixels),
    [1, height, width, channels], float ? "float32" : "int32");
  const names = manifest.outputs.map((output) => output.tensor);
  const results = await model.executeAsync({ [manifest.input.tensor]: input }, names);
  input.dispose();
  const outputs = [];
  const payload = [];
  for (const [index, output] of manifest.outputs.entries()) {
    const data = await results[index].data();
    // The typed array's own type, not the tensor's dtype: on the cpu backend a Cast to float32
    // can hand back the int32 data it was given (num_detections).
    const dtype = TYPED_ARRAYS[data.constructor.name];
    if (dtype === undefined) throw new Error(`output ${output.name}: cannot send ${data.constructor.name}`);
    outputs.push({ name: output.name, shape: results[index].shape, dtype, bytes: data.byteLength });
    payload.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }
  tf.dispose(results);
  return [{ outputs }, payload];
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
  for await (const { header, payload } of frames(process.stdin)) {
    try {
      if (header.op === "describe") send({ ok: true, ...describe(model) });
      else if (header.op === "detect") {
        const [reply, data] = await detect(model, manifest, header, payload);
        send({ ok: true, ...reply }, data);
      } else send({ ok: false, error: `unknown op ${JSON.stringify(header.op)}` });
    } catch (error) {
      send({ ok: false, error: error.message });
    }
  }
}

await main();
