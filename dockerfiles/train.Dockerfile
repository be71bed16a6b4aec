# The TensorFlow toolchain: data import, training, evaluation and the TFLite export (with its
# metadata, written by tflite-support in /opt/mediapipe beside MediaPipe Tasks, which runs it).
# Official TensorFlow GPU base: on a host with the NVIDIA container toolkit it trains on the
# GPU(s) (docker run --gpus all ...); without one the same image trains on the CPU.
#   docker build -f dockerfiles/train.Dockerfile -t odplug-train .
#   docker run --rm -it --gpus all -v "$PWD":/work odplug-train odplug model.train --records ...
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ODPLUG_MEDIAPIPE_PYTHON=/opt/mediapipe/bin/python

# libusb for tflite-support, which writes the TFLite metadata MediaPipe Tasks needs
RUN apt-get update \
    && apt-get install -y --no-install-recommends libusb-1.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/odplug
COPY dockerfiles/requirements/ dockerfiles/requirements/
COPY pyproject.toml README.md ./
COPY odplug/ odplug/
COPY plugins/ plugins/
# tflite-support and MediaPipe pin protobuf 3: an environment of their own (venv without its own
# pip, filled by this image's pip, so no ensurepip package is needed)
RUN python -m venv --without-pip /opt/mediapipe \
    && pip --python /opt/mediapipe/bin/python install -r dockerfiles/requirements/mediapipe.txt \
    && pip install -r dockerfiles/requirements/tf.txt -r dockerfiles/requirements/cloud.txt -r dockerfiles/requirements/test.txt \
    && pip install --no-deps -e . \
    && useradd --create-home --uid 1000 odplug

USER 1000
WORKDIR /work
VOLUME ["/work"]
CMD ["odplug", "--list"]
