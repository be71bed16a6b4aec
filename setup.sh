#!/usr/bin/env bash
# Everything odplug needs on a fresh machine with Python 3.10+ and pip, into this folder:
#   .venv        odplug with the pinned TensorFlow toolchain, the object storage backends
#                (s3fs, gcsfs) and the test tools
#   .venv-tfjs   the tensorflowjs converter, which pins its own TensorFlow (tfjs exporter)
#   .venv-mediapipe  tflite-support and MediaPipe, which pin protobuf 3: the tflite exporter
#                writes each .tflite's metadata with it and runs the files in MediaPipe Tasks
#                (Python 3.10 or 3.11, the versions tflite-support has wheels for; it needs
#                Debian's libusb-1.0-0, installed here when this runs as root)
#   .venv-beam   Apache Beam for `data.import --engine beam` (Beam pins protobuf 6, odplug's
#                TensorFlow needs 7), with odplug's TensorFlow-free part installed --no-deps
#   plugins/tfjs/node_modules   @tensorflow/tfjs for running TF.js models in Node (needs npm)
# Chromium (for the TF.js web page test) is installed from Debian's packages when this runs
# as root on Debian/Ubuntu; elsewhere that one test is skipped and says why.
# Re-running is cheap: each step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
requirements=dockerfiles/requirements

if [ ! -x .venv/bin/python ]; then "$python" -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check \
    -r "$requirements/tf.txt" -r "$requirements/cloud.txt" -r "$requirements/test.txt" -e .

if [ ! -x .venv-tfjs/bin/python ]; then "$python" -m venv .venv-tfjs; fi
.venv-tfjs/bin/pip install -q --disable-pip-version-check -r "$requirements/tfjs.txt"

if [ ! -x .venv-beam/bin/python ]; then
    "$python" -m venv .venv-beam
    echo '*' > .venv-beam/.gitignore
fi
.venv-beam/bin/pip install -q --disable-pip-version-check -r "$requirements/beam.txt" \
    -r "$requirements/cloud.txt"
.venv-beam/bin/pip install -q --disable-pip-version-check --no-deps -e .

libraries=$(ldconfig -p 2>/dev/null || true)
if [[ $libraries != *libusb-1.0.so.0* ]] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends libusb-1.0-0 >/dev/null \
        || echo "setup: could not install libusb-1.0-0, which tflite-support needs" >&2
fi
if [ ! -x .venv-mediapipe/bin/python ]; then
    "${MEDIAPIPE_PYTHON:-$python}" -m venv .venv-mediapipe
    echo '*' > .venv-mediapipe/.gitignore
fi
imports='from tflite_support.metadata_writers import object_detector; import mediapipe.tasks.python.vision'
if ! .venv-mediapipe/bin/pip install -q --disable-pip-version-check -r "$requirements/mediapipe.txt" \
        || ! .venv-mediapipe/bin/python -c "$imports"; then
    echo "setup: .venv-mediapipe is not usable (tflite-support needs Python 3.10 or 3.11 and" \
         "libusb-1.0-0; set MEDIAPIPE_PYTHON to such a python and run setup.sh again):" \
         "TFLite exports fail until it is, or run them with ODPLUG_TFLITE_METADATA=off" >&2
fi

if command -v npm >/dev/null 2>&1; then
    npm ci --prefix plugins/tfjs --no-audit --no-fund --loglevel=error
else
    echo "setup: npm not found: TF.js models will not be verified in Node (install Node.js)" >&2
fi

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        || echo "setup: could not install chromium: the web page test will be skipped" >&2
fi
