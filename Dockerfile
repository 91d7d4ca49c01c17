# The heatstream image: one image for every deployable (topics, worker, sink,
# simulator); docker-compose.yml picks the command. Built by `docker compose build`.

# --- build: heatstream and its dependencies in a virtualenv --------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A compiler only for dependencies that ship no wheel for this platform; it stays in
# this stage and never reaches the runtime image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/heatstream
ENV PATH=/opt/heatstream/bin:$PATH

WORKDIR /src
# .dockerignore keeps .env, .git, tests and caches out of the build context.
COPY . .
RUN pip install .

# The water-property table (heatstream.streams.water: IAPWS-95, about 1 s of CPU to
# compute) is computed here, once, instead of by every container at start.
ENV HEATSTREAM_CACHE_DIR=/opt/heatstream/cache
RUN python -c "from heatstream.streams.water import density_kg_m3; density_kg_m3(50.0)"

# --- runtime ------------------------------------------------------------------
# Same base image as the build stage, so the virtualenv's interpreter path is valid.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/heatstream/bin:$PATH \
    HEATSTREAM_CACHE_DIR=/opt/heatstream/cache

COPY --from=build /opt/heatstream /opt/heatstream

# An unprivileged user whose home is the working directory: a worker's local state
# (Faust table stores) lives there and is rebuilt from the changelog topics when a
# container is replaced, so it needs no volume (and scaled replicas share none).
RUN useradd --system --create-home --home-dir /var/lib/heatstream --uid 10001 heatstream
USER heatstream
WORKDIR /var/lib/heatstream

# Configuration comes from HEATSTREAM_* variables (see heatstream/settings.py).
CMD ["heatstream", "--help"]
