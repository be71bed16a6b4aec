# The Apache Beam worker for `data.import --engine beam` on a remote runner (Dataflow, Flink):
# each worker unpickles odplug's per-sample functions, so it needs odplug's TensorFlow-free
# dataset path, installed here --no-deps as setup.sh installs it into .venv-beam, beside the
# pinned beam.txt and the bucket backends of cloud.txt. The base is Beam's own Python SDK
# image of the same Beam version as beam.txt (Dataflow's rule for custom containers); its
# ENTRYPOINT, /opt/apache/beam/boot, starts the SDK worker and is kept as it is.
# The job is still launched from a checkout with .venv-beam (setup.sh): the driver runs in
# odplug's main environment, whose protobuf 7 this image cannot hold.
#   docker build -f dockerfiles/beam.Dockerfile -t REGISTRY/odplug-beam:TAG .
#   docker push REGISTRY/odplug-beam:TAG
# Dataflow:
#   odplug data.import --source gs://BUCKET/project --out gs://BUCKET/records --engine beam \
#     --beam-option runner=DataflowRunner --beam-option project=PROJECT \
#     --beam-option region=REGION --beam-option temp_location=gs://BUCKET/tmp \
#     --beam-option sdk_container_image=REGISTRY/odplug-beam:TAG
# Flink's portable runner (the task managers start this image with Docker):
#   odplug data.import --source s3://BUCKET/project --out s3://BUCKET/records --engine beam \
#     --beam-option runner=FlinkRunner --beam-option flink_master=JOBMANAGER:8081 \
#     --beam-option environment_type=DOCKER \
#     --beam-option environment_config=REGISTRY/odplug-beam:TAG
FROM apache/beam_python3.11_sdk:2.78.0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /opt/odplug
COPY dockerfiles/requirements/ dockerfiles/requirements/
COPY pyproject.toml README.md ./
COPY odplug/ odplug/
COPY plugins/ plugins/
RUN pip install -r dockerfiles/requirements/beam.txt -r dockerfiles/requirements/cloud.txt \
    && pip install --no-deps -e .
