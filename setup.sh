#!/usr/bin/env bash
# Everything odplug needs on a fresh machine with Python 3.10+ and pip, into this folder:
#   .venv        odplug with the pinned TensorFlow toolchain and the test tools
#   .venv-tfjs   the tensorflowjs converter, which pins its own TensorFlow (tfjs exporter)
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
    -r "$requirements/tf.txt" -r "$requirements/test.txt" -e .

if [ ! -x .venv-tfjs/bin/python ]; then "$python" -m venv .venv-tfjs; fi
.venv-tfjs/bin/pip install -q --disable-pip-version-check -r "$requirements/tfjs.txt"

if command -v npm >/dev/null 2>&1; then
    npm ci --prefix plugins/tfjs --no-audit --no-fund --loglevel=error
else
    echo "setup: npm not found: TF.js models will not be verified in Node (install Node.js)" >&2
fi

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        || echo "setup: could not install chromium: the web page test will be skipped" >&2
fi
