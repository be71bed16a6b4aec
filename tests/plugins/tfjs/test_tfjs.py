"""The tfjs exporter on a tiny trained model: every variant converts, the float32 model gives the
reference SavedModel's detections in Node.js (on the wasm backend, and the same on the pure-JS
cpu one it falls back to), the manifest names the model's real tensors, the demo page draws
the same boxes in headless Chromium, and runs on Chromium's fake camera until stopped (or says
in one line why there is no camera), and a missing toolchain fails with one clear line (a
broken SavedModel never reaches the exporter: tests/core/test_contract.py).

Needs the converter environment (.venv-tfjs), Node.js with ``npm ci --prefix plugins/tfjs``,
and Chromium for the page; each test that lacks one is skipped saying which and how to get it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from odplug.errors import OdplugError
from odplug.model.contract import validate_detector
from odplug.trained import TrainedDetector
from odplug_builtins.tfjs import TfjsExporter
from odplug_builtins.tfjs.convert import REQUIREMENTS, converter_python
from odplug_builtins.tfjs.node import (
    BACKENDS,
    PREFIX_ENV,
    WASM_BINARIES,
    NodeDetector,
    node_binary,
    node_prefix,
    page_files,
    resize_uint8,
    tfjs_dist,
)
from tests.support.detectors import TinyRun, assert_same_detections, saved_model_copy

pytestmark = pytest.mark.slow  # the TF.js converter and Node runs: seconds each

SIZE = 96
IMAGE_PAGE = "index.html?image=test.png&threshold=0"
PALETTE = [(0xff, 0x00, 0xff), (0x00, 0xc8, 0xff), (0xff, 0xb4, 0x00)]  # app.js COLOURS[:3]


def _needs(check) -> None:  # type: ignore[no-untyped-def]
    try:
        check()
    except OdplugError as error:
        pytest.skip(f"tfjs toolchain missing: {error}")


@pytest.fixture(scope="module")
def records(tiny_run: TinyRun) -> Path:
    return tiny_run.records


@pytest.fixture(scope="module")
def saved_model(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny SavedModel, its NMS keeping every box.

    After 15 steps the class scores still sit at the focal-loss prior (about 0.01), under the
    trained 0.05 threshold, so the copy's detector.json lowers it to 0: every image then has
    dozens of detections to compare, in an order decided by scores a few 1e-6 apart.
    """
    _needs(converter_python)
    _needs(page_files)
    return saved_model_copy(tiny_run, tmp_path_factory.mktemp("tfjs-run") / "saved_model",
                            score_threshold=0.0)


@pytest.fixture(scope="module")
def trained(saved_model: Path) -> TrainedDetector:
    return validate_detector(saved_model)


@pytest.fixture(scope="module")
def exported(trained: TrainedDetector, tmp_path_factory: pytest.TempPathFactory) -> dict:
    models = TfjsExporter().export(trained, tmp_path_factory.mktemp("tfjs-out"),
                                   variants=("float32", "float16", "uint8"))
    assert {model.exporter for model in models} == {"tfjs"}
    return {model.variant: model for model in models}


@pytest.fixture(scope="module")
def reference(trained: TrainedDetector, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The TF.js-ready SavedModel run in TensorFlow: the same class-agnostic NMS."""
    from odplug.model.detector import SavedModelDetector
    from odplug_builtins.tfjs.graph import build_tfjs_saved_model

    staging = tmp_path_factory.mktemp("tfjs-reference") / "saved_model"
    build_tfjs_saved_model(trained, staging)
    detector = SavedModelDetector(staging)
    return lambda image: detector(resize_uint8(image, SIZE))


@pytest.fixture(scope="module")
def images(records: Path) -> list[np.ndarray]:
    from odplug.data.shards import shard_files
    from odplug.model.tfdata import record_dataset

    return [item["image"] for item in record_dataset(shard_files(records)).as_numpy_iterator()]


@pytest.fixture(scope="module")
def node_float32(exported: dict) -> Iterator[NodeDetector]:
    _needs(node_binary)
    with NodeDetector(exported["float32"].path) as detector:
        yield detector


def test_registered_with_its_variants(registry) -> None:  # type: ignore[no-untyped-def]
    exporter = registry.exporters["tfjs"]
    assert exporter.variants == ("float32", "float16", "uint8")
    assert registry.owner("exporters", "tfjs") == "tfjs"


def test_check_names_the_requirements_when_the_converter_is_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ODPLUG_TFJS_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(OdplugError, match=re.escape(REQUIREMENTS)):
        TfjsExporter().check()
    monkeypatch.delenv("ODPLUG_TFJS_PYTHON")
    monkeypatch.setattr("odplug_builtins.tfjs.convert.REPO", tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OdplugError, match=r"dockerfiles/requirements/tfjs\.txt.*tfjs image"):
        converter_python()


def test_missing_node_or_packages_name_the_command(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.delenv(PREFIX_ENV, raising=False)
    monkeypatch.setattr("odplug_builtins.tfjs.node.HERE", tmp_path)
    with pytest.raises(OdplugError, match=re.escape(f"npm ci --prefix {tmp_path}")):
        tfjs_dist()
    dist = tmp_path / "node_modules" / "@tensorflow" / "tfjs" / "dist"
    dist.mkdir(parents=True)
    (dist / "tf.min.js").touch()
    assert tfjs_dist() == dist
    with pytest.raises(OdplugError, match=r"@tensorflow/tfjs-backend-wasm npm package.*npm ci"):
        page_files()
    monkeypatch.setenv(PREFIX_ENV, str(tmp_path / "shared"))
    assert node_prefix() == tmp_path / "shared"
    with pytest.raises(OdplugError, match=re.escape(str(tmp_path / "shared" / "node_modules"))):
        tfjs_dist()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OdplugError, match="Node.js"):
        node_binary()


def test_every_variant_is_a_complete_folder(exported: dict) -> None:
    sizes = {}
    for variant, model in exported.items():
        names = {path.name for path in model.path.iterdir()}
        assert {"model.json", "manifest.json", "labels.json", "label_map.pbtxt", "index.html",
                "app.js", "tf.min.js", "tf-backend-wasm.min.js", *WASM_BINARIES} <= names, names
        manifest = json.loads(model.manifest.read_text())
        assert manifest["variant"] == variant
        assert all((model.path / shard).is_file() for shard in manifest["weights"])
        assert json.loads((model.path / "labels.json").read_text()) == {
            "1": "circle", "2": "square", "3": "triangle"}
        sizes[variant] = model.size_bytes
    assert sizes["uint8"] < sizes["float16"] < sizes["float32"], sizes
    assert not [p for p in exported["float32"].path.parent.iterdir() if p.name.startswith(".")]


def test_manifest_matches_the_model(exported: dict, node_float32: NodeDetector) -> None:
    model = exported["float32"]
    manifest = json.loads(model.manifest.read_text())
    signature = json.loads((model.path / "model.json").read_text())["signature"]
    real = signature["inputs"][manifest["input"]["name"]]
    assert real["name"] == manifest["input"]["tensor"] == "images:0"
    assert manifest["input"]["shape"] == [1, SIZE, SIZE, 3]
    assert real["dtype"] == "DT_UINT8" and manifest["input"]["dtype"] == "uint8"
    specs = list(signature["outputs"].values())
    assert {o["name"] for o in manifest["outputs"]} == {
        "detection_boxes", "detection_classes", "detection_scores", "num_detections"}
    for output in manifest["outputs"]:
        spec = specs[output["index"]]
        assert spec["name"] == output["tensor"]
        assert [int(d["size"]) for d in spec["tensorShape"]["dim"]] == output["shape"]
    shapes = {o["name"]: o["shape"] for o in manifest["outputs"]}
    assert shapes == {"detection_boxes": [1, 100, 4], "detection_classes": [1, 100],
                      "detection_scores": [1, 100], "num_detections": [1]}
    described = node_float32.describe()
    assert [i["name"] for i in described["inputs"]] == ["images"]
    assert described["inputs"][0]["dtype"] == manifest["input"]["tfjs_dtype"] == "int32"
    in_order = [o["name"] for o in described["outputs"]]
    for output in manifest["outputs"]:
        assert in_order[output["index"]] + ":0" == output["tensor"]


def test_float32_in_node_matches_the_reference(node_float32: NodeDetector, reference,  # type: ignore[no-untyped-def]
                                               images: list[np.ndarray]) -> None:
    assert len(images) >= 20
    for image in images:
        expected, got = reference(image), node_float32(image)
        assert len(expected.scores) > 10
        assert_same_detections((got.boxes, got.classes, got.scores),
                               (expected.boxes, expected.classes, expected.scores))


def test_runner_protocol_frames_and_bad_requests(node_float32: NodeDetector,
                                                 images: list[np.ndarray]) -> None:
    """The framed protocol (node.send_frame / runner.mjs): a detect frame, then bad requests,
    one of them a frame larger than one pipe chunk, each answered with one error line while
    the runner keeps going."""
    big = np.zeros((1024, 1024, 3), np.uint8)  # 3 MB: reaches Node in many 64 KB pipe chunks
    reply, payload = node_float32._ask({"op": "detect", "shape": [SIZE, SIZE, 3]},
                                       resize_uint8(big, SIZE).tobytes())
    assert [o["name"] for o in reply["outputs"]] == [
        "detection_boxes", "detection_classes", "detection_scores", "num_detections"]
    assert len(payload) == sum(o["bytes"] for o in reply["outputs"]) == 4 * (400 + 100 + 100 + 1)
    with pytest.raises(OdplugError, match=r"TF.js in Node.js: got 5 bytes for an image of "
                                          r"shape 2,2,3$"):
        node_float32._ask({"op": "detect", "shape": [2, 2, 3]}, b"\0" * 5)
    with pytest.raises(OdplugError, match=r'unknown op "detekt"'):
        node_float32._ask({"op": "detekt"}, big.tobytes())
    got, expected = node_float32(images[0]), node_float32(images[0])
    assert_same_detections((got.boxes, got.classes, got.scores),
                           (expected.boxes, expected.classes, expected.scores))


def test_a_runner_that_dies_mid_frame_is_one_clear_error() -> None:
    """A frame cut short (the Node process killed while writing) reads as "no more frames",
    which the detector reports with the runner's last stderr lines, not a JSON traceback."""
    import io
    import struct

    from odplug_builtins.tfjs.node import read_frame, send_frame

    stream = io.BytesIO()
    send_frame(stream, {"ok": True}, b"abc")
    whole = stream.getvalue()
    assert read_frame(io.BytesIO(whole)) == ({"ok": True, "bytes": 3}, b"abc")
    assert whole[:4] == struct.pack("<I", len(whole) - 4 - 3)
    for cut in (0, 2, 6, len(whole) - 1):
        assert read_frame(io.BytesIO(whole[:cut])) is None


def test_wasm_and_cpu_backends_find_the_same_detections(
        exported: dict, node_float32: NodeDetector, images: list[np.ndarray]) -> None:
    """Verification runs on wasm by default; the pure-JS cpu backend is the fallback, so both
    must give one answer, to the same tolerances as TF.js against TensorFlow."""
    assert node_float32.backend == "wasm", node_float32.ready
    with NodeDetector(exported["float32"].path, backend="cpu") as cpu:
        assert cpu.backend == "cpu"
        for image in images:
            got, expected = node_float32(image), cpu(image)
            assert_same_detections((got.boxes, got.classes, got.scores),
                                   (expected.boxes, expected.classes, expected.scores))


@pytest.mark.parametrize(("broken", "reason"), [
    ("package", "Cannot find module '@tensorflow/tfjs-backend-wasm'"),
    ("binaries", "no such file or directory"),
])
def test_wasm_that_cannot_start_falls_back_to_cpu_saying_so(
        exported: dict, node_float32: NodeDetector, images: list[np.ndarray], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, broken: str,
        reason: str) -> None:
    """An npm install without the wasm package (an older lock file, a shared prefix), or with
    the package but not its .wasm binaries: the model still runs, on cpu, and one warning line
    says why. (A failed ``setBackend("wasm")`` leaves TF.js naming wasm as its backend: the
    runner used to trust that and then failed on the first tensor.)"""
    scope = tmp_path / "node_modules" / "@tensorflow"
    scope.mkdir(parents=True)
    installed = node_prefix() / "node_modules" / "@tensorflow"
    for package in installed.iterdir():
        if package.name != "tfjs-backend-wasm":
            (scope / package.name).symlink_to(package.resolve())
        elif broken == "binaries":
            shutil.copytree(package, scope / package.name,
                            ignore=shutil.ignore_patterns("*.wasm"))
    monkeypatch.setenv(PREFIX_ENV, str(tmp_path))
    with caplog.at_level("WARNING", logger="odplug_builtins.tfjs.node"), \
            NodeDetector(exported["float32"].path) as detector:
        got = detector(images[0])
    assert detector.backend == "cpu"
    [record] = [r for r in caplog.records if r.name == "odplug_builtins.tfjs.node"]
    message = record.getMessage()
    assert "cpu backend" in message and reason in message and "npm ci" in message, message
    assert "\n" not in message
    expected = node_float32(images[0])
    assert_same_detections((got.boxes, got.classes, got.scores),
                           (expected.boxes, expected.classes, expected.scores))


def test_unknown_backend_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(OdplugError, match=r"unknown TF.js backend 'wsam'. Did you mean 'wasm'"):
        NodeDetector(tmp_path, backend="wsam")
    assert BACKENDS == ("wasm", "cpu")


def test_benchmark_times_both_backends_and_saves_what_it_prints(exported: dict,
                                                                  tmp_path: Path) -> None:
    from bench.tfjs import RESULTS_FILE, run

    printed: list[str] = []
    results = run(model=exported["float32"].path, images=2, runs=1, workdir=tmp_path,
                  echo=printed.append)
    assert json.loads((tmp_path / RESULTS_FILE).read_text()) == results
    assert set(results["median_ms_per_image"]) == {"wasm", "cpu"}
    assert all(ms > 0 for ms in results["median_ms_per_image"].values())
    assert results["first_image_max_score_difference"] < 1e-5
    assert "load average" in printed[-1] and "wasm" in printed[-1]
    with pytest.raises(OdplugError, match="no model.json"):
        run(model=tmp_path, workdir=tmp_path)


@pytest.mark.parametrize("variant", ["float16", "uint8"])
def test_quantized_variants_run_in_node(exported: dict, variant: str, reference,  # type: ignore[no-untyped-def]
                                        images: list[np.ndarray]) -> None:
    _needs(node_binary)
    with NodeDetector(exported[variant].path) as detector:
        got = detector(images[0])
    expected = reference(images[0])
    assert 0 < len(got.scores) <= 100 and got.boxes.shape == (len(got.scores), 4)
    assert set(got.classes.tolist()) <= {1, 2, 3}
    assert abs(float(got.scores.max()) - float(expected.scores.max())) < 0.01


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium for the page test: apt-get install -y chromium")


@pytest.fixture
def served(exported: dict, images: list[np.ndarray], tmp_path: Path) -> Iterator[str]:
    """The float32 folder plus test.png, over http on 127.0.0.1 (the page fetches its files, and
    the camera is offered to secure contexts only, which http from 127.0.0.1 is): the base URL."""
    from PIL import Image

    site = tmp_path / "site"
    shutil.copytree(exported["float32"].path, site)
    Image.fromarray(images[0]).save(site / "test.png")
    handler = partial(QuietHandler, directory=str(site))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/"
        server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_headless(profile), "--virtual-time-budget=60000", *extra, url],
                          capture_output=True, text=True, timeout=120, check=True)


def _page_result(url: str, profile: Path) -> tuple[str, list[dict]]:
    """The page's status line and the detections it lists, once it has run on the image."""
    dom = _browse(url, profile, "--dump-dom").stdout
    assert 'data-status="done"' in dom, dom[-2000:]
    status = re.search(r'<div id="status">(.*?)</div>', dom, re.S)
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert status and found, dom[-2000:]
    return html.unescape(status[1]), json.loads(html.unescape(found[1]))["detections"]


def _assert_page_matches(shown: list[dict], expected) -> None:  # type: ignore[no-untyped-def]
    assert len(shown) == len(expected.scores) > 10
    assert_same_detections(([d["box"] for d in shown], [d["id"] for d in shown],
                            [d["score"] for d in shown]),
                           (expected.boxes, expected.classes, expected.scores))


def test_page_draws_the_detections_in_chromium(served: str, node_float32: NodeDetector,
                                               images: list[np.ndarray], tmp_path: Path) -> None:
    from PIL import Image

    status, shown = _page_result(served + IMAGE_PAGE, tmp_path / "profile")
    assert status.endswith("(backend wasm)"), status
    _assert_page_matches(shown, node_float32(images[0]))

    shot = tmp_path / "page.png"
    _browse(served + IMAGE_PAGE, tmp_path / "profile", f"--screenshot={shot}",
            "--window-size=800,900")
    page = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    plain = np.asarray(Image.fromarray(images[0]).resize((640, 640))).astype(int)
    assert _palette_pixels(page) > _palette_pixels(plain) + 2000


def test_page_without_its_wasm_files_falls_back_to_cpu_saying_so(
        served: str, node_float32: NodeDetector, images: list[np.ndarray],
        tmp_path: Path) -> None:
    """A page copied without the .wasm binaries (or opened where they cannot be fetched)
    still draws the same detections, on cpu, and its status line says wasm was unavailable."""
    for name in WASM_BINARIES:
        (tmp_path / "site" / name).unlink()
    status, shown = _page_result(served + IMAGE_PAGE, tmp_path / "profile")
    assert status.endswith("(backend cpu (wasm unavailable))"), status
    _assert_page_matches(shown, node_float32(images[0]))


def _palette_pixels(pixels: np.ndarray) -> int:
    return sum(int((np.abs(pixels - colour).max(axis=-1) <= 3).sum()) for colour in PALETTE)



CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
PAGE_STATE = """({
  status: document.body.dataset.status, camera: document.body.dataset.camera,
  frames: Number(document.body.dataset.frames),
  text: document.getElementById("status").textContent,
  result: document.getElementById("result").textContent,
  disabled: ["camera", "stop"].map((id) => document.getElementById(id).disabled),
})"""
# Counts the model's inferences in flight, to show the camera loop never starts one before the
# last has finished (app.js's top-level bindings are globals to an evaluated expression).
COUNT_INFERENCES = """
  window.inFlight = 0; window.mostInFlight = 0;
  const execute = model.executeAsync.bind(model);
  model.executeAsync = async (...args) => {
    mostInFlight = Math.max(mostInFlight, ++inFlight);
    try { return await execute(...args); } finally { inFlight -= 1; }
  };"""
# Starts Chromium with the pipe ends on the fds 3 and 4 it reads and writes: no preexec_fn in
# this process, which serves the page from a thread, and no sh, whose dash reads only fds 0-9.
# (A copy first, as either end may already be fd 3 or 4; dup2 onto itself keeps close-on-exec.)
ON_FDS_3_AND_4 = """import os, sys
ends = [os.dup(int(fd)) for fd in sys.argv[1:3]]
for fd, end in zip((3, 4), ends):
    os.dup2(end, fd)
    os.set_inheritable(fd, True)
os.execvp(sys.argv[3], sys.argv[3:])"""
COUNTED = (r"(\d+) frames?, ([\d.]+) frames/s; (\d+) of (\d+) detections at score ≥ 0 "
           r"\(backend wasm\)")


def _headless(profile: Path) -> list[str]:
    return [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}"]


class DevTools:
    """A page in headless Chromium, driven over the DevTools protocol on a pipe
    (``--remote-debugging-pipe``: JSON messages ended by a NUL byte).

    The camera tests need it: ``--dump-dom`` under a virtual time budget dumps the page while
    getUserMedia is still pending (virtual time runs on while the browser opens a camera),
    where this waits for the page in real time, with a deadline.
    """

    def __init__(self, commands: int, answers: int) -> None:
        self.commands, self.answers = commands, answers
        self.pending = b""
        self.sent = 0
        self.session: str | None = None

    def call(self, method: str, timeout: float = 30, **params: object) -> dict:
        self.sent += 1
        message = {"id": self.sent, "method": method, "params": params,
                   **({"sessionId": self.session} if self.session else {})}
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self.pending:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.answers], [], [], left)[0]:
                    pytest.fail(f"Chromium did not answer {method} in {timeout} s")
                chunk = os.read(self.answers, 1 << 16)
                if not chunk:
                    pytest.fail(f"Chromium closed its DevTools pipe during {method}")
                self.pending += chunk
            raw, self.pending = self.pending.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self.sent:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]

    def evaluate(self, expression: str):  # type: ignore[no-untyped-def]
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert "exceptionDetails" not in result, (expression, result["exceptionDetails"])
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                pytest.fail(f"not {expression} in {timeout} s: {self.evaluate(PAGE_STATE)}")
            time.sleep(0.1)
        return value


@contextmanager
def _devtools(url: str, profile: Path, *extra: str) -> Iterator[DevTools]:
    """Chromium on ``url``, its page attached; closed on the way out."""
    theirs_in, ours_out = os.pipe()
    ours_in, theirs_out = os.pipe()
    browser = subprocess.Popen(
        [sys.executable, "-c", ON_FDS_3_AND_4, str(theirs_in), str(theirs_out),
         *_headless(profile), "--remote-debugging-pipe", *extra, url],
        pass_fds=(theirs_in, theirs_out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(theirs_in)
    os.close(theirs_out)
    page = DevTools(ours_out, ours_in)
    try:
        [target] = [t for t in page.call("Target.getTargets")["targetInfos"]
                    if t["type"] == "page"]
        page.session = page.call("Target.attachToTarget", targetId=target["targetId"],
                                 flatten=True)["sessionId"]
        yield page
        page.session = None
        page.call("Browser.close")
        browser.wait(timeout=30)
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait()
        os.close(ours_out)
        os.close(ours_in)


def _png(data_url: str) -> np.ndarray:
    from PIL import Image

    encoded = data_url.split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")).astype(int)


def test_page_runs_on_the_camera_one_frame_at_a_time_until_stopped(
        served: str, exported: dict, tmp_path: Path) -> None:
    """Chromium's fake camera (a moving test pattern) through the camera button: frames are
    counted with their rate (at most the camera's: no frame run twice), the last frame's
    detections listed as an image's are and drawn over that frame, one inference at a time,
    and stop releases the camera."""
    labels = json.loads((exported["float32"].path / "labels.json").read_text())
    with _devtools(served + "index.html?threshold=0", tmp_path / "profile", *CAMERA) as page:
        page.wait_for('document.body?.dataset.status === "ready"')
        page.evaluate(COUNT_INFERENCES)
        page.evaluate('document.getElementById("camera").click()')
        running = page.wait_for(f"Number(document.body.dataset.frames) >= 3 && {PAGE_STATE}")
        earlier = page.evaluate("lastImage.toDataURL()")
        track = "(window.track = video.srcObject.getVideoTracks()[0]).readyState"
        assert page.evaluate(track) == "live"
        camera_rate = page.evaluate("track.getSettings().frameRate")  # 20 for the fake one
        # Ten more: the rate is taken over the last ten frames.
        page.wait_for(f"Number(document.body.dataset.frames) >= {running['frames'] + 10}")
        page.evaluate('document.getElementById("stop").click()')
        stopped = page.evaluate(PAGE_STATE)
        frame, drawn = page.evaluate("[lastImage, canvas].map((c) => c.toDataURL())")
        assert page.evaluate("[track.readyState, video.srcObject, mostInFlight]") == [
            "ended", None, 1]
    assert (running["status"], running["camera"], running["disabled"]) == (
        "camera", "on", [True, False]), running
    assert re.fullmatch("camera: " + COUNTED, running["text"]), running["text"]
    assert (stopped["status"], stopped["camera"], stopped["disabled"]) == (
        "stopped", "off", [False, True]), stopped
    counted = re.fullmatch("camera stopped after " + COUNTED, stopped["text"])
    assert counted and int(counted[1]) == stopped["frames"] >= running["frames"], stopped["text"]
    assert 0 < float(counted[2]) < 1.5 * camera_rate  # no frame run twice, at a paint's 60/s
    result = json.loads(stopped["result"])
    detections = result["detections"]
    assert result["threshold"] == 0 and len(detections) == int(counted[3]) == int(counted[4]) > 0
    for found in detections:
        assert set(found) == {"id", "label", "score", "box"} and found["label"] == labels[
            str(found["id"])], found
        ymin, xmin, ymax, xmax = found["box"]
        assert 0 <= ymin <= ymax <= 1 and 0 <= xmin <= xmax <= 1, found
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections),
                                                       reverse=True)
    frame, drawn = _png(frame), _png(drawn)
    assert frame.shape == drawn.shape == (480, 640, 3)  # the fake camera's size, drawn whole
    assert np.abs(frame - _png(earlier)).max() > 100  # live frames of the moving test pattern
    assert _palette_pixels(drawn) > _palette_pixels(frame) + 2000


@pytest.mark.parametrize(("flags", "host", "message"), [
    (("--use-fake-device-for-media-stream", "--deny-permission-prompts"), "127.0.0.1",
     "camera refused: allow this page to use the camera"),
    (("--use-fake-device-for-media-stream=device-count=0", "--use-fake-ui-for-media-stream"),
     "127.0.0.1", "no camera found: connect one"),
    ((*CAMERA, "--host-resolver-rules=MAP camera.test 127.0.0.1"), "camera.test",
     "no camera for plain http from camera.test:"),
], ids=["refused", "absent", "plain-http"])
def test_page_without_a_camera_says_why_in_one_line(served: str, tmp_path: Path,
                                                    flags: tuple[str, ...], host: str,
                                                    message: str) -> None:
    """camera=1 starts the camera as the page opens; when there is none to have, the status
    line says why and what to do, and the camera button can be pressed again."""
    url = served.replace("127.0.0.1", host) + "index.html?camera=1"
    with _devtools(url, tmp_path / "profile", *flags) as page:
        state = page.wait_for(f'document.body?.dataset.status === "error" && {PAGE_STATE}')
    assert state["text"].startswith(message) and "\n" not in state["text"], state["text"]
    assert (state["camera"], state["disabled"]) == ("off", [False, True]), state


def test_model_predict_runs_a_tfjs_folder_by_its_path(exported: dict, images: list[np.ndarray],
                                                     node_float32: NodeDetector, registry,
                                                     tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``model.predict --model <tfjs folder>``: the tfjs exporter claims the folder by its
    manifest.json and runs it in Node, with the same detections as the verification's."""
    from PIL import Image

    from odplug.workflows.predict import predict

    Image.fromarray(images[0]).save(tmp_path / "photo.png")
    result = predict(exported["float32"].path, tmp_path / "photo.png", tmp_path / "out", 0.0,
                     registry)
    expected = node_float32(images[0])
    assert [d.score for d in result.images[0].detections] == pytest.approx(
        expected.scores.tolist(), abs=1e-5)
