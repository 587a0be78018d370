# The oneoff-runner service image: REST on 8000, MCP on 8001, `oneoff-runner serve`.
# Also the helper image of Kubernetes run pods (`python -m backends.kubernetes.pod_helper`).
# BASE_IMAGE: python:3.11-slim pinned by digest, so every build starts from the same base;
# docs/development.md says how the pin is checked and moved. Any image with Python 3.11 and
# pip on PATH will do (scripts/runner-image.sh builds one with debootstrap where Docker Hub
# is out of reach).
ARG BASE_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
FROM ${BASE_IMAGE} AS build
RUN pip install --no-cache-dir "uv>=0.9,<1"
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
# dependencies first, from the lock file, so code changes do not rebuild them
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY runner ./runner
COPY backends ./backends
COPY api_app.py mcp_app.py ./
RUN uv sync --frozen --no-dev --no-editable

FROM ${BASE_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin runner
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 RUNNER_HOST=0.0.0.0
USER 10001
EXPOSE 8000 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["oneoff-runner", "serve"]
