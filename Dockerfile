# syntax=docker/dockerfile:1
# Production image: runs against external Postgres and Redis (no embedded services).
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY server ./server
COPY actors ./actors
COPY workers ./workers
COPY loadtests ./loadtests
RUN pip install --no-cache-dir .

FROM node:20-slim AS assets
WORKDIR /static
COPY static/package.json static/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 REPLYHQ_ENV=production HOST=0.0.0.0 PORT=8000
RUN useradd --system --uid 10001 --home /app replyhq
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=replyhq static ./static
COPY --from=assets --chown=replyhq /static/node_modules ./static/node_modules
COPY --chown=replyhq server ./server
USER replyhq
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8000\")}/healthz', timeout=2)"
CMD ["python", "-m", "server", "run"]
