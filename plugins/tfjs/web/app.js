// The demo page: runs the exported graph model on an image the user picks and draws the boxes.
// Everything it needs lies beside it (tf.min.js, tf-backend-wasm.min.js and its .wasm files,
// model.json, manifest.json); it fetches nothing from elsewhere. Query parameters: image=<url>
// runs on that image at once (used by the tests), threshold=<0..1> sets the minimum score drawn,
// backend=<wasm|webgl|cpu> picks the TF.js backend.
// The default is wasm, the backend odplug verifies the model with in Node.js: over ten times
// faster than cpu in every browser, and the same numbers. webgl can be faster still on a real
// GPU but needs one, and computes in 16-bit floats where the GPU cannot render 32-bit ones; cpu
// is the fallback when wasm cannot start, for example on a page opened from file://, where the
// .wasm files cannot be fetched.
"use strict";

const DISPLAY_SIZE = 640;  // the longer side of the drawing, whatever the image size
const COLOURS = ["#ff00ff", "#00c8ff", "#ffb400", "#00d26e", "#ff3c3c", "#8c50ff", "#ff8cc8"];
const params = new URLSearchParams(window.location.search);
const canvas = document.getElementById("canvas");
const statusLine = document.getElementById("status");
const thresholdInput = document.getElementById("threshold");
const resultBlock = document.getElementById("result");
let model = null;
let manifest = null;
let lastImage = null;
let lastDetections = [];

function setStatus(state, text) {
  document.body.dataset.status = state;
  statusLine.textContent = text;
}

let fallback = "";

async function startBackend(wanted) {
  let started = false;
  try {
    started = await tf.setBackend(wanted);
  } catch (error) {
    console.warn(`backend ${wanted}: ${error.message}`);
  }
  if (!started) {
    fallback = ` (${wanted} unavailable)`;
    await tf.setBackend("cpu");
  }
  await tf.ready();
}

async function loadModel() {
  manifest = await (await fetch("manifest.json")).json();
  await startBackend(params.get("backend") || "wasm");
  model = await tf.loadGraphModel("model.json");
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`cannot read the image ${url}`));
    image.src = url;
  });
}

async function detect(image) {
  const [, height, width] = manifest.input.shape;
  const scratch = document.createElement("canvas");
  scratch.width = width;
  scratch.height = height;
  scratch.getContext("2d").drawImage(image, 0, 0, width, height);
  const input = tf.tidy(() => {
    const pixels = tf.browser.fromPixels(scratch).expandDims(0);
    return manifest.input.tfjs_dtype === "float32" ? pixels.toFloat() : pixels.toInt();
  });
  const names = manifest.outputs.map((output) => output.tensor);
  const results = await model.executeAsync({ [manifest.input.tensor]: input }, names);
  input.dispose();
  const byName = {};
  for (const [index, output] of manifest.outputs.entries()) {
    byName[output.name] = await results[index].data();
  }
  tf.dispose(results);
  const count = Math.round(byName.num_detections[0]);
  const detections = [];
  for (let i = 0; i < count; i++) {
    const id = Math.round(byName.detection_classes[i]);
    detections.push({
      id,
      label: manifest.labels[String(id)] || `class ${id}`,
      score: byName.detection_scores[i],
      box: Array.from(byName.detection_boxes.slice(4 * i, 4 * i + 4)),
    });
  }
  return detections;
}

function draw(image, detections, threshold) {
  const scale = DISPLAY_SIZE / Math.max(image.naturalWidth, image.naturalHeight);
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = Math.round(image.naturalHeight * scale);
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  const line = Math.max(2, Math.round(Math.min(canvas.width, canvas.height) / 150));
  context.lineWidth = line;
  const fontSize = Math.max(12, 4 * line);
  context.font = `${fontSize}px sans-serif`;
  context.textBaseline = "top";
  const shown = detections.filter((d) => d.score >= threshold);
  for (const d of shown) {
    const [ymin, xmin, ymax, xmax] = d.box;
    const x = xmin * canvas.width;
    const y = ymin * canvas.height;
    const colour = COLOURS[(d.id - 1 + COLOURS.length) % COLOURS.length];
    context.strokeStyle = colour;
    context.strokeRect(x, y, (xmax - xmin) * canvas.width, (ymax - ymin) * canvas.height);
    const text = `${d.label} ${d.score.toFixed(2)}`;
    const textHeight = fontSize + 4;
    context.fillStyle = colour;
    context.fillRect(x, Math.max(0, y - textHeight), context.measureText(text).width + 6, textHeight);
    context.fillStyle = "#000";
    context.fillText(text, x + 3, Math.max(0, y - textHeight) + 2);
  }
  return shown;
}

function show() {
  const threshold = Number(thresholdInput.value);
  const shown = draw(lastImage, lastDetections, threshold);
  resultBlock.textContent = JSON.stringify({ threshold, detections: shown }, null, 1);
  setStatus("done", `${shown.length} of ${lastDetections.length} detections at score ≥ ${threshold}` +
    ` (backend ${tf.getBackend()}${fallback})`);
}

async function run(url) {
  setStatus("running", "detecting…");
  lastImage = await loadImage(url);
  lastDetections = await detect(lastImage);
  show();
}

async function main() {
  if (params.has("threshold")) thresholdInput.value = params.get("threshold");
  try {
    await loadModel();
    setStatus("ready", `model loaded (${manifest.variant}); choose an image`);
    document.getElementById("file").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) run(URL.createObjectURL(file)).catch((e) => setStatus("error", e.message));
    });
    thresholdInput.addEventListener("change", () => { if (lastImage) show(); });
    if (params.has("image")) await run(params.get("image"));
  } catch (error) {
    setStatus("error", `error: ${error.message}`);
  }
}

main();
