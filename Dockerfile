# PenPay: the wheel and its locked dependencies in a venv, run as a non-root user.
#   docker build -t penpay:latest .
#   docker build --build-arg BASE_IMAGE=penpay-base:bookworm -t penpay:latest .   # a local base
# BASE_IMAGE is any Debian-like image with (or able to apt-get) Python 3.11+; both stages use it,
# so the venv's interpreter is at the same path in the final image. scripts/docker_stack.sh builds
# a base with debootstrap where no image registry is reachable.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
RUN python3 -c "import ensurepip, venv" 2>/dev/null || { apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*; }
# Dependencies first (their layer survives code changes): exactly the lock, checked by hash.
COPY requirements.lock /tmp/requirements.lock
RUN python3 -m venv /opt/penpay \
    && /opt/penpay/bin/pip install --no-cache-dir --disable-pip-version-check -q \
       --require-hashes -r /tmp/requirements.lock
COPY . /src
# The wheel: setup.py's hook generates the protobuf code and ships the migrations. Its build
# requirements (setuptools, grpcio-tools, googleapis-common-protos) are pinned in pyproject.toml
# and live only in pip's isolated build environment, never in /opt/penpay.
RUN python3 -m venv /opt/wheelbuild \
    && /opt/wheelbuild/bin/pip wheel --no-cache-dir --disable-pip-version-check -q --no-deps -w /dist /src \
    && /opt/penpay/bin/pip install --no-cache-dir --disable-pip-version-check -q --no-deps /dist/penpay-*.whl \
    && /opt/penpay/bin/pip check \
    && /opt/penpay/bin/python -m pip uninstall -y -q pip

FROM ${BASE_IMAGE}
# Python alone: no compilers, no pip, no build tools.
RUN python3 -c "import sys; assert sys.version_info >= (3, 11)" 2>/dev/null || { apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*; }
RUN useradd --no-log-init --uid 10001 --user-group --home-dir /var/lib/penpay --create-home penpay \
    && mkdir -p /var/lib/penpay/sim-daraja && chown -R penpay:penpay /var/lib/penpay
COPY --from=build /opt/penpay /opt/penpay
ENV PATH=/opt/penpay/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/penpay
ENTRYPOINT []
CMD ["penpay", "--help"]
