# The TensorFlow toolchain image: data import, training and the TFLite export.
# Build from the repository root:
#   docker build -f dockerfiles/train.Dockerfile -t odplug-train .
# Run with the project mounted, as the original workflow did (add --gpus all on a GPU host):
#   docker run --rm -it -v "$PWD":/work -w /work odplug-train inv data.import --source ...
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /opt/odplug
COPY dockerfiles/requirements/ dockerfiles/requirements/
RUN pip install -r dockerfiles/requirements/tf.txt -r dockerfiles/requirements/test.txt
COPY pyproject.toml README.md ./
COPY odplug/ odplug/
COPY plugins/ plugins/
RUN pip install --no-deps .

RUN useradd --create-home --uid 1000 odplug
USER odplug
WORKDIR /work
CMD ["odplug", "--list"]
