# The image every pod of the Kubernetes profile runs (workflow/profiles/kubernetes, `container-image:`):
# this package with its pinned torch, and the Snakemake that runs one job per pod, with the S3 storage plugin
# (the pods' only shared storage) and the Kubernetes executor plugin.
#
#   docker build -t ghcr.io/YOUR-ORG/ensemble:0.1.0 --build-arg GIT_COMMIT="$(git rev-parse HEAD)" .
#   docker push ghcr.io/YOUR-ORG/ensemble:0.1.0
#
# Base: python:3.11-slim rather than a CUDA image. On Linux x86-64, PyPI's torch wheel is the CUDA build and
# brings the CUDA runtime, cuBLAS and cuDNN along as pip packages (nvidia-*), so the image needs no CUDA
# toolkit: on a GPU node the NVIDIA container toolkit mounts the host's driver into the container (it must be
# new enough for the CUDA version torch was built with: `python -c "import torch; print(torch.version.cuda)"`).
# A CUDA base image would only add a second copy of the same libraries. The same image runs on CPU nodes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, in a layer of its own: by far the biggest download, and it changes only with its pin
# (the same pins as pyproject.toml).
RUN pip install torch==2.14.1 torchvision==0.29.1

# Each pod runs `python -m snakemake` with command-line flags written by the Snakemake that submitted it, so
# the pods' Snakemake and plugins must be the versions used where you run Snakemake: set these to match
# `snakemake --version` and `pip show snakemake-storage-plugin-s3 snakemake-executor-plugin-kubernetes` there.
ARG SNAKEMAKE_VERSION=9.27.1
ARG S3_PLUGIN_VERSION=0.3.6
ARG KUBERNETES_PLUGIN_VERSION=0.5.1
RUN pip install "snakemake==${SNAKEMAKE_VERSION}" \
        "snakemake-storage-plugin-s3==${S3_PLUGIN_VERSION}" \
        "snakemake-executor-plugin-kubernetes==${KUBERNETES_PLUGIN_VERSION}"

# The repository (less what .dockerignore leaves out), installed in place. Snakemake ships the workflow's
# files to each pod itself; the image supplies the `ensemble` package that its rules call.
WORKDIR /opt/ensemble
COPY . .
RUN pip install -e .

# The image has no .git, so the provenance rule records git_commit as null; the commit is on the image.
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="ensemble" \
      org.opencontainers.image.revision="${GIT_COMMIT}"

# Not root. The pods work in /workdir (an emptyDir volume the executor mounts, writable by any user); model
# caches ($TORCH_HOME, $HF_HOME) default to this user's home.
RUN useradd --create-home --uid 1000 ensemble
USER 1000

CMD ["python", "-m", "ensemble", "--help"]
