# syntax=docker/dockerfile:1.7
# One image for every segwarden service; the command picks the service:
#   docker run IMAGE segwarden serve consent|segmenter|audit
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/segwarden
# Dependencies first, from pyproject alone, so a code change does not reinstall them.
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/segwarden/bin/pip install -r /tmp/requirements.txt
COPY . /src
RUN /opt/segwarden/bin/pip install --no-deps /src \
    && /opt/segwarden/bin/segwarden --help > /dev/null

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 segwarden \
    && useradd --system --uid 10001 --gid segwarden --home-dir /var/lib/segwarden \
        --shell /usr/sbin/nologin segwarden \
    && install -d -o segwarden -g segwarden /var/lib/segwarden
COPY --from=build /opt/segwarden /opt/segwarden
COPY --chmod=0755 deploy/docker/probe.py /usr/local/bin/segwarden-probe
ENV PATH=/opt/segwarden/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/segwarden \
    MPLCONFIGDIR=/tmp/matplotlib \
    DATA_DIR=/var/lib/segwarden \
    BIND_HOST=0.0.0.0
WORKDIR /var/lib/segwarden
USER 10001:10001
VOLUME ["/var/lib/segwarden"]
EXPOSE 8001 8002 8003
CMD ["segwarden", "serve", "consent"]
