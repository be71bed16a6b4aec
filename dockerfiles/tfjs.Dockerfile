# The TensorFlow.js toolchain: odplug with the pinned TensorFlow, the tensorflowjs converter in
# a second environment (it pins its own, older TensorFlow), Node.js with @tensorflow/tfjs and its
# WebAssembly backend to verify the converted models, and Chromium for the web page check.
#   docker build -f dockerfiles/tfjs.Dockerfile -t odplug-tfjs .
#   docker run --rm -v "$PWD":/work odplug-tfjs odplug model.export --model runs/demo --to tfjs
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ODPLUG_TFJS_PYTHON=/opt/tfjs-converter/bin/python

RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm chromium \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/odplug
COPY dockerfiles/requirements/ dockerfiles/requirements/
COPY pyproject.toml README.md ./
COPY odplug/ odplug/
COPY plugins/ plugins/
RUN python -m venv /opt/tfjs-converter \
    && /opt/tfjs-converter/bin/pip install -r dockerfiles/requirements/tfjs.txt \
    && pip install -r dockerfiles/requirements/tf.txt -r dockerfiles/requirements/test.txt \
    && pip install --no-deps -e . \
    && npm ci --prefix plugins/tfjs \
    && useradd --create-home --uid 1000 odplug

USER 1000
WORKDIR /work
VOLUME ["/work"]
CMD ["odplug", "--list"]
