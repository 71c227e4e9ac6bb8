# Container recipe for the edgekit pipeline: the same pins as the lock file, CPU only.
# It is a dependency of the `environment` stage, so a changed recipe re-runs what depends on it.
# Build: docker build -t edgekit . ; Run: docker run --rm -v "$PWD":/work edgekit make repro
FROM python:3.11.7-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends git make gcc g++ cmake \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/edgekit
COPY pyproject.toml README.md ./
COPY requirements/lock.txt requirements/lock.txt
COPY edgekit edgekit
RUN python -m pip install --no-cache-dir pip==25.3 \
 && python -m pip install --no-cache-dir -c requirements/lock.txt -e ".[pipeline]"

WORKDIR /work
CMD ["edgekit", "doctor"]
