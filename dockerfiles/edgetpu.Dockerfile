# The Edge TPU toolchain: TFLite export (its metadata written in /opt/mediapipe, which
# tflite-support needs for its protobuf 3) plus Coral's edgetpu_compiler (amd64 Linux only),
# which comes only from Coral's apt repository. Build it for linux/amd64 (the compiler has no
# other build), as below, also on an ARM host.
#   docker build --platform linux/amd64 -f dockerfiles/edgetpu.Dockerfile -t odplug-edgetpu .
#   docker run --rm -v "$PWD":/work odplug-edgetpu odplug model.export --model runs/demo --to edgetpu
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ODPLUG_MEDIAPIPE_PYTHON=/opt/mediapipe/bin/python

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gnupg libusb-1.0-0 \
    && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
       | gpg --dearmor -o /usr/share/keyrings/coral-edgetpu.gpg \
    && echo "deb [signed-by=/usr/share/keyrings/coral-edgetpu.gpg] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
       > /etc/apt/sources.list.d/coral-edgetpu.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends edgetpu-compiler \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/odplug
COPY dockerfiles/requirements/ dockerfiles/requirements/
COPY pyproject.toml README.md ./
COPY odplug/ odplug/
COPY plugins/ plugins/
RUN python -m venv /opt/mediapipe \
    && /opt/mediapipe/bin/pip install -r dockerfiles/requirements/mediapipe.txt \
    && pip install -r dockerfiles/requirements/tf.txt -r dockerfiles/requirements/test.txt \
    && pip install --no-deps -e . \
    && useradd --create-home --uid 1000 odplug

USER 1000
WORKDIR /work
VOLUME ["/work"]
CMD ["edgetpu_compiler", "--version"]
