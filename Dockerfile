# One image for the hub and the workers (docs/deploy.md):
#   docker build -t jobq .
#   docker run --rm -p 127.0.0.1:5555:5555 jobq hub --zmq tcp://0.0.0.0:5555 --insecure ...
#   docker run --rm -e JOBQ_HUB=tcp://HUB:5555 -e JOBQ_TOKEN=... jobq worker --service echo
# Every flag has a JOBQ_* environment twin, and `--config FILE` reads them from a mounted TOML file.

# The dashboard's third-party files (uPlot, Swagger UI) are git-ignored: this stage fetches them
# with npm at the versions and sha512 integrity pinned in src/jobq/dashboard/vendor.json
# (tools/vendor_assets.py, as `make install` does). Only the files it keeps reach the image.
FROM node:20-bookworm-slim AS vendor
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY tools/vendor_assets.py tools/
COPY src/jobq/dashboard/vendor.json src/jobq/dashboard/
RUN python3 tools/vendor_assets.py

FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/jobq/src
COPY pyproject.toml README.md ./
COPY src ./src
COPY --from=vendor /build/src/jobq/dashboard/vendor ./src/jobq/dashboard/vendor
RUN pip install '.[redis]' \
    && useradd --system --create-home --home-dir /var/lib/jobq jobq \
    && rm -rf /opt/jobq/src

USER jobq
WORKDIR /var/lib/jobq
# 5555: ZeroMQ (native protocol and Majordomo); 8080: HTTP (REST, dashboard, /metrics);
# 50000-50001: the line protocols. Inside a container they must be bound to 0.0.0.0 to be reached.
EXPOSE 5555 8080 50000 50001
ENTRYPOINT ["jobq"]
CMD ["--help"]
