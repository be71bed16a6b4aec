// The demo page: runs the exported graph model on an image the user picks, or on a camera's
// frames, and draws the boxes. Everything it needs lies beside it (tf.min.js,
// tf-backend-wasm.min.js and its .wasm files, model.json, manifest.json); it fetches nothing from
// elsewhere. Query parameters: image=<url> runs on that image at once (used by the tests),
// camera=1 starts the camera at once (the tests' fake one), threshold=<0..1> sets the minimum
// score drawn, backend=<wasm|webgl|cpu> picks the TF.js backend.
// The default is wasm, the backend odplug verifies the model with in Node.js: over ten times
// faster than cpu in every browser, and the same numbers. webgl can be faster still on a real
// GPU but needs one, and computes in 16-bit floats where the GPU cannot render 32-bit ones; cpu
// is the fallback when wasm cannot start, for example on a page opened from file://, where the
// .wasm files cannot be fetched.
"use strict";

const DISPLAY_SIZE = 640;  // the longer side of the drawing, whatever the image size
const FPS_WINDOW = 10;  // frames/s over the last ten frames: follows a change, steady to read
const COLOURS = ["#ff00ff", "#00c8ff", "#ffb400", "#00d26e", "#ff3c3c", "#8c50ff", "#ff8cc8"];
const params = new URLSearchParams(window.location.search);
const canvas = document.getElementById("canvas");
const statusLine = document.getElementById("status");
const thresholdInput = document.getElementById("threshold");
const resultBlock = document.getElementById("result");
const video = document.getElementById("video");
const cameraButton = document.getElementById("camera");
const stopButton = document.getElementById("stop");
// One canvas for the model's input, kept: read back every frame in camera mode.
const scratch = document.createElement("canvas");
const scratchContext = scratch.getContext("2d", { willReadFrequently: true });
let model = null;
let manifest = null;
let lastImage = null;  // an image, or a canvas holding the camera frame the boxes belong to
let lastDetections = [];
let caption = "";  // what the status line says before the detection count
let camera = null;  // the running camera: its stream, frames done, and when each was done

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

function sizeOf(source) {
  // An image, a video and a canvas each name their size in pixels differently.
  return [source.naturalWidth || source.videoWidth || source.width,
    source.naturalHeight || source.videoHeight || source.height];
}

async function detect(source) {
  const [, height, width] = manifest.input.shape;
  scratch.width = width;
  scratch.height = height;
  scratchContext.drawImage(source, 0, 0, width, height);
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
  const [imageWidth, imageHeight] = sizeOf(image);
  const scale = DISPLAY_SIZE / Math.max(imageWidth, imageHeight);
  canvas.width = Math.round(imageWidth * scale);
  canvas.height = Math.round(imageHeight * scale);
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

function show(state) {
  const threshold = Number(thresholdInput.value);
  const shown = draw(lastImage, lastDetections, threshold);
  resultBlock.textContent = JSON.stringify({ threshold, detections: shown }, null, 1);
  setStatus(state, `${caption}${shown.length} of ${lastDetections.length} detections at score ≥ ` +
    `${threshold} (backend ${tf.getBackend()}${fallback})`);
}

async function run(url) {
  stopCamera("camera stopped");
  setStatus("running", "detecting…");
  lastImage = await loadImage(url);
  lastDetections = await detect(lastImage);
  caption = "";
  show("done");
}

function cameraUnavailable() {
  // Browsers offer getUserMedia to secure contexts only: https pages, and http from localhost
  // or 127.0.0.1, which is what `python3 -m http.server` in this folder gives.
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) return null;
  if (window.location.protocol === "file:") {
    return "no camera for a page opened from a file: serve this folder (python3 -m http.server)" +
      " and open http://127.0.0.1:8000/";
  }
  if (!window.isSecureContext) {
    return `no camera for plain http from ${window.location.host}: browsers offer the camera ` +
      "only to https pages and to http://localhost or http://127.0.0.1";
  }
  return "this browser offers no camera to web pages (no navigator.mediaDevices.getUserMedia)";
}

function cameraProblem(error) {
  // One line the user can act on, for each way getUserMedia is known to fail.
  switch (error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "camera refused: allow this page to use the camera (the camera icon in the " +
        "address bar, or the site settings), then press camera again";
    case "NotFoundError":
    case "OverconstrainedError":
      return "no camera found: connect one and press camera again, or choose an image";
    case "NotReadableError":
    case "AbortError":
      return "the camera cannot be read: another application may be using it";
    default:
      return `camera: ${error.name}: ${error.message}`;
  }
}

async function startCamera() {
  const unavailable = cameraUnavailable();
  if (unavailable) return setStatus("error", unavailable);
  if (camera) return;
  cameraButton.disabled = true;
  setStatus("starting", "asking for the camera…");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    cameraButton.disabled = false;
    return setStatus("error", cameraProblem(error));
  }
  const session = { stream, frames: 0, times: [], canvases: [newCanvas(), newCanvas()] };
  camera = session;
  for (const track of stream.getTracks()) {
    track.addEventListener("ended", () => stopCamera(
      "the camera stopped by itself (unplugged, or taken by another application)"));
  }
  video.srcObject = stream;
  stopButton.disabled = false;
  document.body.dataset.camera = "on";
  setStatus("camera", "camera on, waiting for its first frame…");
  try {
    await video.play();
    await cameraLoop(session);
  } catch (error) {
    stopCamera("camera stopped");
    setStatus("error", `error: ${error.message}`);
  }
}

function newCanvas() {
  return document.createElement("canvas");
}

function nextFrame() {
  // The camera's next frame where the browser can tell (requestVideoFrameCallback), so no frame
  // is run twice when the model is faster than the camera; else the next paint. Either way
  // the loop never starts an inference before the last one has finished.
  return new Promise((resolve) => {
    if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(() => resolve());
    else requestAnimationFrame(() => resolve());
  });
}

async function cameraLoop(session) {
  while (camera === session) {
    await nextFrame();
    if (camera !== session) return;
    if (video.readyState < video.HAVE_CURRENT_DATA) continue;
    // The model runs on a copy of the frame and the boxes are drawn over that copy: the video
    // moves on while the model runs. Two copies: the one shown stays whole while the next fills.
    const frame = session.canvases[session.frames % 2];
    [frame.width, frame.height] = sizeOf(video);
    frame.getContext("2d").drawImage(video, 0, 0);
    const detections = await detect(frame);
    if (camera !== session) return;
    lastImage = frame;
    lastDetections = detections;
    session.frames += 1;
    session.times = [...session.times, performance.now()].slice(-(FPS_WINDOW + 1));
    document.body.dataset.frames = String(session.frames);
    caption = `camera: ${cameraRate(session)}; `;
    show("camera");
  }
}

function cameraRate(session) {
  const { frames, times } = session;
  const seconds = (times[times.length - 1] - times[0]) / 1000;
  const rate = times.length > 1 && seconds > 0 ? ((times.length - 1) / seconds).toFixed(1) : "–";
  return `${frames} frame${frames === 1 ? "" : "s"}, ${rate} frames/s`;
}

function stopCamera(why) {
  // Stopping every track releases the camera: its light goes off and other apps may take it.
  const session = camera;
  if (!session) return;
  camera = null;
  for (const track of session.stream.getTracks()) track.stop();
  video.srcObject = null;
  document.body.dataset.camera = "off";
  cameraButton.disabled = false;
  stopButton.disabled = true;
  if (session.frames === 0) return setStatus("stopped", `${why} before its first frame`);
  caption = `${why} after ${cameraRate(session)}; `;
  show("stopped");
}

async function main() {
  if (params.has("threshold")) thresholdInput.value = params.get("threshold");
  try {
    await loadModel();
    setStatus("ready", `model loaded (${manifest.variant}); choose an image or start the camera`);
    document.getElementById("file").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) run(URL.createObjectURL(file)).catch((e) => setStatus("error", e.message));
    });
    cameraButton.addEventListener("click", startCamera);
    stopButton.addEventListener("click", () => stopCamera("camera stopped"));
    cameraButton.disabled = false;
    thresholdInput.addEventListener("change", () => {
      if (lastImage && !camera) show(caption ? "stopped" : "done");
    });
    if (params.has("image")) await run(params.get("image"));
    if (params.get("camera") === "1") await startCamera();
  } catch (error) {
    setStatus("error", `error: ${error.message}`);
  }
}

main();
